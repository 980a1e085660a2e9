//! The identity CA: the certificate and key that sign device identity certificates, with the
//! PEM pieces of the credentials response prepared once at load time.

use rcgen::{CertificateParams, Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::error::ProvisionError;
use crate::pki::{chain_pem, pem_encode};

/// The CA that signs device identity certificates.
///
/// The certificate PEM may hold a chain: the signing CA first, then its issuers up to the root.
/// The identity chain sent to a device is the issued leaf followed by that chain; the device gets
/// all of it but the last certificate as its own chain and the last one as its trust anchor.
pub struct IdentityCa {
    issuer: Issuer<'static, KeyPair>,
    /// The signing CA certificate (the first of `chain`).
    signing: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    /// PEM of the loaded chain without its last certificate (empty when the signing CA is the
    /// root): what follows the leaf in the device's own chain.
    leaf_tail_pem: String,
    /// PEM of the last certificate of the identity chain (the device's trust anchor).
    root_pem: String,
    /// The earliest notAfter of the chain: issued certificates never outlive it.
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for IdentityCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCa")
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn internal(what: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Internal(format!("identity CA: {what}"))
}

impl IdentityCa {
    /// Loads the identity CA from its certificate PEM (the signing CA first, optionally followed
    /// by its issuers up to the root) and its private key PEM (PKCS#8, SEC1 or PKCS#1).
    ///
    /// Refuses a key that does not belong to the first certificate and a first certificate that
    /// is not a CA allowed to sign certificates.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ProvisionError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(format!("certificate PEM does not parse: {e}")))?;
        let Some(signing) = chain.first().cloned() else {
            return Err(internal("the certificate PEM holds no certificate"));
        };
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| internal(format!("private key does not parse: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&signing)
            .map_err(|e| internal(format!("certificate does not parse: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(internal("the private key does not match the certificate"));
        }
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| internal(format!("basicConstraints: {e}")))?
            .is_some_and(|bc| bc.value.ca);
        let cert_sign = cert
            .key_usage()
            .map_err(|e| internal(format!("keyUsage: {e}")))?
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !is_ca || !cert_sign {
            return Err(internal(
                "the certificate is not a CA certificate (needs cA=TRUE and keyCertSign)",
            ));
        }
        let mut not_after = cert.validity().not_after.to_datetime();
        for der in chain.iter().skip(1) {
            let (_, c) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| internal(format!("chain certificate does not parse: {e}")))?;
            not_after = not_after.min(c.validity().not_after.to_datetime());
        }
        let issuer = Issuer::from_ca_cert_der(&signing, key)
            .map_err(|e| internal(format!("cannot sign with this certificate: {e}")))?;
        // Identity chain = [leaf, chain[0], ..., chain[n-1]]: the device's own chain is everything
        // but chain[n-1], its trust anchor is chain[n-1].
        let (root, between) = match chain.split_last() {
            Some((root, rest)) => (root, rest),
            None => return Err(internal("the certificate PEM holds no certificate")),
        };
        Ok(Self {
            leaf_tail_pem: chain_pem(between),
            root_pem: pem_encode("CERTIFICATE", root),
            issuer,
            signing,
            chain,
            not_after,
        })
    }

    /// The signing CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.signing
    }

    /// The signing CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", self.cert_der())
    }

    /// The loaded chain, signing CA first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// PEM of the last certificate of the identity chain: the trust anchor given to devices.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The earliest notAfter of the chain; issued certificates end no later.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The device's own chain for an issued leaf: the leaf PEM followed by the chain without
    /// its last certificate.
    pub(super) fn device_chain_pem(&self, leaf: &CertificateDer<'_>) -> String {
        let mut pem = pem_encode("CERTIFICATE", leaf);
        pem.push_str(&self.leaf_tail_pem);
        pem
    }

    /// Signs `params` for `public_key`.
    pub(super) fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> Result<CertificateDer<'static>, rcgen::Error> {
        Ok(params.signed_by(public_key, &self.issuer)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertSpec, Issued};
    use crate::proto::body::{CredentialsRequest, Csr, ENCODING_PEM};
    use crate::provision::test_support::{csr_pem, group};
    use crate::provision::{Provisioner, DEFAULT_IDENTITY_VALIDITY};

    fn refused(cert_pem: &str, key_pem: &str) -> String {
        match IdentityCa::from_pem(cert_pem, key_pem) {
            Err(ProvisionError::Internal(m)) => m,
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn loads_a_root_ca() {
        let root = Issued::self_signed(&CertSpec::ca("Identity CA")).expect("ca");
        let ca = IdentityCa::from_pem(&root.pem(), &root.key_pem()).expect("load");
        assert_eq!(ca.cert_der(), root.der());
        assert_eq!(ca.cert_pem(), root.pem());
        assert_eq!(ca.root_pem(), root.pem());
        assert_eq!(ca.chain().len(), 1);
        let leaf = CertificateDer::from(vec![1u8, 2, 3]);
        assert_eq!(ca.device_chain_pem(&leaf), pem_encode("CERTIFICATE", &leaf));
    }

    #[test]
    fn refuses_bad_material() {
        let root = Issued::self_signed(&CertSpec::ca("Identity CA")).expect("ca");
        let other = Issued::self_signed(&CertSpec::ca("Other CA")).expect("ca");
        let device = root.issue(&CertSpec::device("device")).expect("device");
        assert!(refused("", &root.key_pem()).contains("no certificate"));
        assert!(refused("garbage", &root.key_pem()).contains("no certificate"));
        assert!(refused(&root.pem(), "garbage").contains("private key"));
        assert!(refused(&root.pem(), &other.key_pem()).contains("does not match"));
        assert!(refused(&device.pem(), &device.key_pem()).contains("not a CA"));
    }

    #[test]
    fn an_intermediate_identity_ca_sends_its_chain() {
        let root = Issued::self_signed(&CertSpec::ca("Identity Root")).expect("root");
        let now = OffsetDateTime::now_utc();
        let spec = CertSpec::ca("Identity Intermediate").valid_between(
            now - time::Duration::days(1),
            now + time::Duration::days(400),
        );
        let inter = root.issue(&spec).expect("intermediate");
        let pem = format!("{}{}", inter.pem(), root.pem());
        let ca = IdentityCa::from_pem(&pem, &inter.key_pem()).expect("load");
        assert_eq!(ca.cert_der(), inter.der());
        assert_eq!(ca.root_pem(), root.pem());

        let p = Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let key = rcgen::KeyPair::generate().expect("key");
        let req = CredentialsRequest {
            di: String::new(),
            csr: Csr {
                data: csr_pem(Some(&format!("uuid:{}", uuid::Uuid::new_v4())), &key),
                encoding: ENCODING_PEM.into(),
            },
        };
        let issued = p.credentials(&group("acme"), &req).expect("issued");
        let creds = &issued.response.creds;
        let chain = creds[0].publicdata.as_ref().map(|d| d.data.clone());
        assert_eq!(
            chain,
            Some(format!(
                "{}{}",
                pem_encode("CERTIFICATE", &issued.certificate),
                inter.pem()
            ))
        );
        assert_eq!(
            creds[1].publicdata.as_ref().map(|d| d.data.as_str()),
            Some(root.pem().as_str())
        );
        let (_, leaf) = x509_parser::parse_x509_certificate(&issued.certificate).expect("leaf");
        let (_, ic) = x509_parser::parse_x509_certificate(inter.der()).expect("inter");
        leaf.verify_signature(Some(ic.public_key()))
            .expect("signed by the intermediate");
        // The leaf does not outlive the intermediate.
        assert!(leaf.validity().not_after.to_datetime() <= ic.validity().not_after.to_datetime());
    }
}
