//! The device's certificate signing request: PEM decoding, the device id in its subject, and
//! the key it certifies.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use uuid::Uuid;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::registry::SpkiHash;
use super::ProvisionError;

fn bad(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::BadRequest(msg.into())
}

/// Prefix of the CN of a device CSR.
const CN_PREFIX: &str = "uuid:";

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
        Ok(Self {
            spki: info.subject_pki.raw.to_vec(),
            device_id,
            der: der.to_vec(),
        })
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub(super) fn spki_hash(&self) -> SpkiHash {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

/// The device UUID of a subject that has exactly one CN, `uuid:<lowercase 8-4-4-4-12 UUID>`.
/// Other attributes are kept in the certificate and otherwise ignored.
fn device_id_from_subject(
    subject: &x509_parser::x509::X509Name<'_>,
) -> Result<Uuid, ProvisionError> {
    let mut cns = subject.iter_common_name();
    let (Some(cn), None) = (cns.next(), cns.next()) else {
        return Err(bad(
            "csr subject must have exactly one CN, uuid:<device uuid>",
        ));
    };
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
