//! The device's certificate signing request: PEM decoding, the device id in its subject, and
//! the key it certifies.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use uuid::Uuid;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519, OID_X509_COMMON_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::error::ProvisionError;
use super::registry::SpkiHash;

fn bad(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::BadRequest(msg.into())
}

/// Prefix of the CN of a device CSR.
const CN_PREFIX: &str = "uuid:";

/// The keys and signatures a CSR may use: what the CSR's self-signature can be verified with
/// (x509-parser over aws-lc-rs, as rcgen verifies it).
pub(super) const SUPPORTED_KEYS: &str = "ECDSA P-256 or P-384 (SHA-256/384), Ed25519, \
     RSA 2048..8192 bits (PKCS#1 v1.5 SHA-256/384/512)";

/// RSA modulus sizes the signature check accepts.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A CSR that parsed and names a device.
pub(super) struct DeviceCsr {
    /// The CSR, DER.
    pub(super) der: Vec<u8>,
    /// The device id of the subject CN.
    pub(super) device_id: Uuid,
    /// The DER SubjectPublicKeyInfo.
    pub(super) spki: Vec<u8>,
}

impl DeviceCsr {
    /// Decodes the PEM and checks the subject; the signature is checked when signing.
    pub(super) fn parse(pem: &str) -> Result<Self, ProvisionError> {
        // iotivity-lite hands over a C buffer; tolerate its terminator.
        let pem = pem.trim_end_matches('\0');
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| bad("csr data is not a PEM certificate request"))?;
        let (_, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|_| bad("csr does not parse as a PKCS#10 certificate request"))?;
        let info = &csr.certification_request_info;
        let device_id = device_id_from_subject(&info.subject)?;
        check_algorithms(&info.subject_pki, &csr.signature_algorithm.algorithm)?;
        Ok(Self {
            spki: info.subject_pki.raw.to_vec(),
            device_id,
            der: der.to_vec(),
        })
    }

    /// The subject of the identity certificate: exactly `CN=uuid:<device id>`, built from the
    /// device id rather than copied from the CSR.
    pub(super) fn subject(&self) -> rcgen::DistinguishedName {
        let mut name = rcgen::DistinguishedName::new();
        name.push(
            rcgen::DnType::CommonName,
            format!("{CN_PREFIX}{}", self.device_id.hyphenated()),
        );
        name
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub(super) fn spki_hash(&self) -> SpkiHash {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

/// Refuses a CSR whose key or signature algorithm the self-signature check cannot verify, saying
/// which ones it can (instead of a misleading "signature does not verify").
fn check_algorithms(
    spki: &SubjectPublicKeyInfo<'_>,
    signature: &Oid<'_>,
) -> Result<(), ProvisionError> {
    let key = &spki.algorithm.algorithm;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let unsupported = |what: &str| {
        bad(format!(
            "csr {what} is not supported; supported: {SUPPORTED_KEYS}"
        ))
    };
    let ecdsa_signature =
        *signature == OID_SIG_ECDSA_WITH_SHA256 || *signature == OID_SIG_ECDSA_WITH_SHA384;
    let rsa_signature = *signature == OID_PKCS1_SHA256WITHRSA
        || *signature == OID_PKCS1_SHA384WITHRSA
        || *signature == OID_PKCS1_SHA512WITHRSA;
    if *key == OID_KEY_TYPE_EC_PUBLIC_KEY {
        if !matches!(&curve, Some(c) if *c == OID_EC_P256 || *c == OID_NIST_EC_P384) {
            let shown = curve.map_or_else(|| "absent".to_owned(), |c| curve_name(&c));
            return Err(unsupported(&format!("EC key on curve {shown}")));
        }
        if !ecdsa_signature {
            return Err(unsupported(&format!(
                "signature algorithm {signature} for an EC key"
            )));
        }
    } else if *key == OID_SIG_ED25519 {
        if *signature != OID_SIG_ED25519 {
            return Err(unsupported(&format!(
                "signature algorithm {signature} for an Ed25519 key"
            )));
        }
    } else if *key == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(bad("csr RSA public key does not parse")),
        };
        if !RSA_BITS.contains(&bits) {
            return Err(unsupported(&format!("RSA key of {bits} bits")));
        }
        if !rsa_signature {
            return Err(unsupported(&format!(
                "signature algorithm {signature} for an RSA key"
            )));
        }
    } else {
        return Err(unsupported(&format!("key algorithm {key}")));
    }
    Ok(())
}

/// A readable name for an EC curve OID (the common ones), else the dotted OID.
fn curve_name(oid: &Oid<'_>) -> String {
    match oid.to_id_string().as_str() {
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => other.to_owned(),
    }
}

/// The device UUID of a subject that is exactly `CN=uuid:<lowercase 8-4-4-4-12 UUID>`: one RDN
/// holding one attribute, the CN. Anything else (an `O=` beside it, a second CN) is refused, so
/// nothing the device chose but its id reaches the identity certificate.
fn device_id_from_subject(
    subject: &x509_parser::x509::X509Name<'_>,
) -> Result<Uuid, ProvisionError> {
    let exactly = "csr subject must be exactly CN=uuid:<device uuid> (one attribute, nothing else)";
    let mut rdns = subject.iter();
    let (Some(rdn), None) = (rdns.next(), rdns.next()) else {
        return Err(bad(exactly));
    };
    let mut attributes = rdn.iter();
    let (Some(cn), None) = (attributes.next(), attributes.next()) else {
        return Err(bad(exactly));
    };
    if *cn.attr_type() != OID_X509_COMMON_NAME {
        return Err(bad(exactly));
    }
    let cn = cn
        .as_str()
        .map_err(|_| bad("csr subject CN is not a text string"))?;
    let wrong = || {
        let shown: String = cn.chars().take(64).collect();
        bad(format!(
            "csr subject CN {shown:?} is not uuid:<lowercase 8-4-4-4-12 uuid>"
        ))
    };
    let text = cn.strip_prefix(CN_PREFIX).ok_or_else(wrong)?;
    let id = Uuid::try_parse(text).map_err(|_| wrong())?;
    // Only the canonical lowercase hyphenated form (no upper case, braces, urn: or simple form).
    if id.hyphenated().to_string() != text {
        return Err(wrong());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn csr(key: &KeyPair, attributes: &[(DnType, String)]) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in attributes {
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        params
            .serialize_request(key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn refusal(pem: &str) -> String {
        match DeviceCsr::parse(pem) {
            Err(ProvisionError::BadRequest(msg)) => msg,
            Err(other) => panic!("not a 4.00: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn the_subject_is_exactly_one_cn() {
        let key = KeyPair::generate().expect("key");
        let id = Uuid::new_v4();
        let cn = (DnType::CommonName, format!("uuid:{id}"));
        let parsed = DeviceCsr::parse(&csr(&key, std::slice::from_ref(&cn))).expect("plain");
        assert_eq!(parsed.device_id, id);
        let subject = parsed.subject();
        assert_eq!(subject.iter().count(), 1);
        let extra = [cn.clone(), (DnType::OrganizationName, "evil".into())];
        assert!(refusal(&csr(&key, &extra)).contains("exactly CN=uuid:"));
        let before = [(DnType::OrganizationName, "evil".into()), cn.clone()];
        assert!(refusal(&csr(&key, &before)).contains("exactly CN=uuid:"));
        let only_o = [(DnType::OrganizationName, format!("uuid:{id}"))];
        assert!(refusal(&csr(&key, &only_o)).contains("exactly CN=uuid:"));
        assert!(refusal(&csr(&key, &[])).contains("exactly CN=uuid:"));
    }

    #[test]
    fn unsupported_keys_are_named_with_the_supported_ones() {
        let cn = [(DnType::CommonName, format!("uuid:{}", Uuid::new_v4()))];
        let p521 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("P-521");
        let msg = refusal(&csr(&p521, &cn));
        assert!(
            msg.contains("P-521") && msg.contains(SUPPORTED_KEYS),
            "{msg}"
        );
        assert!(!msg.contains("does not verify"), "{msg}");
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).expect("key");
            DeviceCsr::parse(&csr(&key, &cn)).expect("supported");
        }
    }
}
