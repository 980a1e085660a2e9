//! What a device session is provisioned by: an enrollment group or an individual TPM enrollment.
//! Its own module so that the TPM attestation ([`crate::tpm`]) can name it without importing the
//! connection handler that drives it (re-exported there as `connection::Profile`).

use std::sync::Arc;

use crate::enrollment::{EnrollmentGroup, ValidatedGroup};
use crate::tpm::enrollment::TpmEnrollment;

/// What a session is provisioned by: the enrollment group its certificate chain (TLS, or a TPM's
/// EK certificate chain) selected, or an individual TPM enrollment.
#[derive(Debug, Clone)]
pub enum Profile {
    /// An enrollment group from the arena (X.509 or TPM).
    Group(Arc<ValidatedGroup>),
    /// An individual TPM enrollment.
    Individual(Arc<TpmEnrollment>),
}

impl Profile {
    /// The provisioning parameters: id, owner, hubs, pre-shared key.
    pub fn def(&self) -> &EnrollmentGroup {
        match self {
            Profile::Group(g) => &g.def,
            Profile::Individual(e) => &e.def,
        }
    }
}
