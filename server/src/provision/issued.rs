//! What the credentials resource hands out: the issued identity certificate with its response,
//! and the EKU it carries. Kept out of `credentials` (which extends the provisioner) so that the
//! provisioning module can re-export it without the two importing each other.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::proto::body::CredentialsResponse;

/// OCF identity certificate EKU (1.3.6.1.4.1.44924.1.6).
pub const OCF_IDENTITY_EKU: [u64; 9] = [1, 3, 6, 1, 4, 1, 44924, 1, 6];

/// A signed identity certificate and the credentials response that carries it.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The device id, from the CN of the CSR.
    pub device_id: Uuid,
    /// The issued identity certificate.
    pub certificate: CertificateDer<'static>,
    /// Its expiry.
    pub not_after: OffsetDateTime,
    /// The response body.
    pub response: CredentialsResponse,
}
