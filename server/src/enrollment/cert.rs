//! Certificate identity and the facts about a configured CA certificate that authentication needs,
//! computed once when a group is configured rather than on every handshake.

use std::fmt;

use rustls_pki_types::{pem::PemObject, CertificateDer, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's identity: SHA-256 of its DER. Same subject DN with another key or other bytes is
/// another certificate; nothing is ever matched by name alone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertId(pub [u8; 32]);

impl CertId {
    /// The identity of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        CertId(out)
    }

    /// Parse the `sha256:<hex>` form used in configs and APIs.
    pub fn parse(s: &str) -> Option<Self> {
        let hex_part = s.strip_prefix("sha256:")?;
        let bytes = hex::decode(hex_part).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(CertId(arr))
    }
}

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(&self.0[..8]))
    }
}

/// Why certificate bytes could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertParseError {
    /// The PEM text holds no CERTIFICATE block, or a block is not valid base64.
    #[error("no PEM certificate found: {0}")]
    Pem(String),
    /// The DER is not an X.509 certificate.
    #[error("certificate #{index} is not valid X.509 DER: {reason}")]
    Der {
        /// Position in the input, 0-based.
        index: usize,
        /// What the parser said.
        reason: String,
    },
}

/// Read every CERTIFICATE block of a PEM text, in order. Other block types (keys) are skipped.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertParseError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertParseError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertParseError::Pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The subject CN of a parsed certificate (first CN attribute), if it has one in UTF-8.
pub(crate) fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// A CA certificate taken from a group's configured chain, with what per-handshake work reads.
#[derive(Debug)]
pub struct TrustedCert {
    /// Identity.
    pub id: CertId,
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Raw DER of the subject name; the key of the subject index.
    pub subject: Box<[u8]>,
    /// Raw DER of the issuer name.
    pub issuer: Box<[u8]>,
    /// Subject CN, for lead selection by name and for messages.
    pub common_name: Option<String>,
    /// Validity window, seconds since the epoch.
    pub not_before: u64,
    /// Validity window, seconds since the epoch.
    pub not_after: u64,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// keyUsage is present and lacks keyCertSign.
    pub lacks_cert_sign: bool,
    /// pathLenConstraint.
    pub path_len: Option<u32>,
    /// Subject equals issuer.
    pub self_issued: bool,
    /// The certificate as a webpki trust anchor, built once.
    pub(crate) anchor: TrustAnchor<'static>,
}

impl TrustedCert {
    /// Parse a configured certificate. Errors are the parser's words.
    pub fn parse(der: CertificateDer<'static>) -> Result<Self, String> {
        let (rest, cert) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| format!("{e:?}"))?
            .to_owned();
        let (is_ca, path_len) = match cert.basic_constraints().map_err(|e| e.to_string())? {
            Some(bc) => (bc.value.ca, bc.value.path_len_constraint),
            None => (false, None),
        };
        let lacks_cert_sign = match cert.key_usage().map_err(|e| e.to_string())? {
            Some(ku) => !ku.value.key_cert_sign(),
            None => false,
        };
        let validity = cert.validity();
        let id = CertId::of(&der);
        let subject: Box<[u8]> = cert.subject().as_raw().into();
        let issuer: Box<[u8]> = cert.issuer().as_raw().into();
        Ok(Self {
            id,
            self_issued: subject == issuer,
            subject,
            issuer,
            common_name: common_name(&cert),
            not_before: clamp_time(validity.not_before.timestamp()),
            not_after: clamp_time(validity.not_after.timestamp()),
            is_ca,
            lacks_cert_sign,
            path_len,
            anchor,
            der,
        })
    }

    /// Does this certificate's key verify the signature on `child`? Used only when a group is
    /// configured (per-handshake signatures go through webpki).
    pub(crate) fn signed(&self, child: &CertificateDer<'_>) -> Result<(), String> {
        verify_signed(&self.der, child)
    }

    /// `Some(reason)` when the certificate is outside its validity window at `now`.
    pub(crate) fn validity_at(&self, now: UnixTime) -> Option<super::RejectReason> {
        let t = now.as_secs();
        if t < self.not_before {
            Some(super::RejectReason::NotYetValid)
        } else if t > self.not_after {
            Some(super::RejectReason::Expired)
        } else {
            None
        }
    }

    /// A borrowed anchor, so per-handshake anchor lists copy no certificate bytes.
    pub(crate) fn anchor(&self) -> TrustAnchor<'_> {
        borrowed_anchor(&self.anchor)
    }
}

/// A trust anchor borrowing from `a` (no bytes copied).
pub(crate) fn borrowed_anchor<'a>(a: &'a TrustAnchor<'_>) -> TrustAnchor<'a> {
    TrustAnchor {
        subject: a.subject.as_ref().into(),
        subject_public_key_info: a.subject_public_key_info.as_ref().into(),
        name_constraints: a.name_constraints.as_ref().map(|n| n.as_ref().into()),
    }
}

/// Does the key of `issuer` verify the signature on `child`? (x509-parser over aws-lc-rs.)
pub(crate) fn verify_signed(issuer: &[u8], child: &[u8]) -> Result<(), String> {
    let (_, issuer) = X509Certificate::from_der(issuer).map_err(|e| e.to_string())?;
    let (_, child) = X509Certificate::from_der(child).map_err(|e| e.to_string())?;
    child
        .verify_signature(Some(issuer.public_key()))
        .map_err(|e| e.to_string())
}

/// Certificates before 1970 are treated as starting at 0.
pub(crate) fn clamp_time(ts: i64) -> u64 {
    u64::try_from(ts).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_id_round_trips_through_its_text_form() {
        let id = CertId::of(b"abc");
        assert_eq!(CertId::parse(&id.to_string()), Some(id));
        assert_eq!(CertId::parse("sha256:zz"), None);
        assert_eq!(CertId::parse("md5:00"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(TrustedCert::parse(CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        assert!(certs_from_pem(b"hello").is_err());
    }
}
