//! Certificate generation with rcgen: the demo PKI of `init`, the load generator's fleets and every
//! test fixture are made here, so there is one way to build a CA, an intermediate or a device.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Errors from certificate generation (rcgen refused the parameters or the key).
#[derive(Debug, thiserror::Error)]
#[error("certificate generation failed: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// tcg-kp-EKCertificate (2.23.133.8.1): the extended key usage of TPM endorsement key
/// certificates (TCG EK Credential Profile).
pub const TCG_KP_EK_CERTIFICATE: &[u64] = &[2, 23, 133, 8, 1];

/// Key algorithm for a generated certificate; devices in the field use all of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// ECDSA over P-256 with SHA-256: the common device choice.
    #[default]
    EcdsaP256,
    /// ECDSA over P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlg {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// A fresh key pair of this algorithm.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(KeyPair::generate_for(self.rcgen())?)
    }
}

/// What goes into one certificate; the defaults make a valid certificate for the role.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name (the whole subject DN is `CN=<cn>` plus `O=<organization>` if set).
    pub common_name: String,
    /// Optional organization attribute, to make DNs that differ only outside the CN.
    pub organization: Option<String>,
    /// Key algorithm.
    pub key: KeyAlg,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// For CAs: the pathLenConstraint, `None` for unconstrained.
    pub path_len: Option<u8>,
    /// Mark the certificate as a CA (cA=TRUE). Defaults: true for roots/intermediates, false for leaves.
    pub is_ca: bool,
    /// Key usages; empty omits the extension.
    pub key_usages: Vec<KeyUsagePurpose>,
    /// Extended key usages; empty omits the extension.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Explicit serial number; random when `None`.
    pub serial: Option<u64>,
    /// Subject alternative names (DNS names and IP addresses of a server certificate).
    pub subject_alt_names: Vec<SanType>,
}

impl CertSpec {
    /// A CA certificate valid from a day ago for ten years, keyCertSign + cRLSign.
    pub fn ca(common_name: impl Into<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.into(),
            organization: None,
            key: KeyAlg::EcdsaP256,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(3650),
            path_len: None,
            is_ca: true,
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            extended_key_usages: Vec::new(),
            serial: None,
            subject_alt_names: Vec::new(),
        }
    }

    /// A device (manufacturer) certificate valid from a day ago for five years, clientAuth EKU.
    pub fn device(common_name: impl Into<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.into(),
            organization: None,
            key: KeyAlg::EcdsaP256,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(1825),
            path_len: None,
            is_ca: false,
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyAgreement,
            ],
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
            serial: None,
            subject_alt_names: Vec::new(),
        }
    }

    /// A TPM endorsement key certificate as TPM manufacturers issue them: not a CA, keyEncipherment
    /// and keyAgreement, EKU tcg-kp-EKCertificate, valid from a day ago for twenty years.
    pub fn endorsement_key(common_name: impl Into<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            key_usages: vec![
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::KeyAgreement,
            ],
            extended_key_usages: vec![ExtendedKeyUsagePurpose::Other(
                TCG_KP_EK_CERTIFICATE.to_vec(),
            )],
            not_after: now + Duration::days(7300),
            ..Self::device(common_name)
        }
    }

    /// Same spec with another validity window.
    pub fn valid_between(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Same spec with another key algorithm.
    pub fn with_key(mut self, key: KeyAlg) -> Self {
        self.key = key;
        self
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(org) = &self.organization {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = dn;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.is_ca = if self.is_ca {
            IsCa::Ca(match self.path_len {
                Some(n) => BasicConstraints::Constrained(n),
                None => BasicConstraints::Unconstrained,
            })
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = self.key_usages.clone();
        params.extended_key_usages = self.extended_key_usages.clone();
        params.subject_alt_names = self.subject_alt_names.clone();
        params.serial_number = self
            .serial
            .map(|s| SerialNumber::from_slice(&s.to_be_bytes()));
        params.use_authority_key_identifier_extension = true;
        params
    }
}

/// A certificate with its private key: a CA that can issue further certificates, or a device.
pub struct Issued {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("len", &self.der.len())
            .finish()
    }
}

impl Issued {
    /// A self-signed root.
    pub fn self_signed(spec: &CertSpec) -> Result<Self, PkiError> {
        Self::self_signed_with_key(spec, spec.key.generate()?)
    }

    /// A self-signed root for a given key (a renewed root keeps its key).
    pub fn self_signed_with_key(spec: &CertSpec, key: KeyPair) -> Result<Self, PkiError> {
        let params = spec.params();
        let der = params.self_signed(&key)?.der().clone();
        Ok(Self { params, key, der })
    }

    /// A certificate for `spec` signed by this one, with a fresh key.
    pub fn issue(&self, spec: &CertSpec) -> Result<Self, PkiError> {
        self.issue_with_key(spec, spec.key.generate()?)
    }

    /// A certificate for `spec` signed by this one, for a given key (several certificates sharing
    /// one key make large fixtures cheap to build).
    pub fn issue_with_key(&self, spec: &CertSpec, key: KeyPair) -> Result<Self, PkiError> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let params = spec.params();
        let der = params.signed_by(&key, &issuer)?.der().clone();
        Ok(Self { params, key, der })
    }

    /// A certificate for `spec` signed by this one, certifying a public key whose private part is
    /// elsewhere (`spki_der`, an X.509 SubjectPublicKeyInfo): a TPM's EK never leaves the TPM.
    pub fn issue_for_public_key(
        &self,
        spec: &CertSpec,
        spki_der: &[u8],
    ) -> Result<CertificateDer<'static>, PkiError> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        Ok(spec.params().signed_by(&public, &issuer)?.der().clone())
    }

    /// The certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// The private key, PKCS#8 DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The key pair (to sign CSRs or to reuse the key in another certificate).
    pub fn key(&self) -> &KeyPair {
        &self.key
    }
}

/// The CSR a device sends to the credentials resource: subject `CN=uuid:<device id>`, signed
/// with `key`, PEM.
pub fn device_csr(device_id: &uuid::Uuid, key: &KeyPair) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("uuid:{device_id}"));
    Ok(params.serialize_request(key)?.pem()?)
}

/// PEM-encode one DER object under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM-encode a chain of certificates, in order.
pub fn chain_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|c| pem_encode("CERTIFICATE", c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn pem_round_trips_through_the_pem_parser() {
        let root = Issued::self_signed(&CertSpec::ca("Root")).expect("root");
        let pem = root.pem();
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parse");
        assert_eq!(parsed, vec![root.der().clone()]);
    }

    #[test]
    fn issued_certificate_names_its_issuer() {
        let root = Issued::self_signed(&CertSpec::ca("Root")).expect("root");
        let dev = root.issue(&CertSpec::device("SN-1")).expect("device");
        let (_, cert) = x509_parser::parse_x509_certificate(dev.der()).expect("parse");
        let (_, rc) = x509_parser::parse_x509_certificate(root.der()).expect("parse");
        assert_eq!(cert.issuer().as_raw(), rc.subject().as_raw());
        assert!(!cert.is_ca());
    }
}
