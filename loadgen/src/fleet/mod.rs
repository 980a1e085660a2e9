//! The simulated fleet: a manufacturer PKI, the enrollment groups of the embedded server, and
//! devices of every class, each with its own key and certificate and the outcome it must get.
//!
//! Topology (all under one manufacturer root R):
//! - `factory-a` = [IntA, R], lead IntA, deny list = the `blacklisted` CNs. Valid devices sit under
//!   IntA (present `[leaf]`) or under Line1 ← IntA (present `[leaf, Line1]`).
//! - `factory-b` = [IntB, R], lead IntB.
//! - `legacy` = [IntL, R], lead IntL, expired manufacturer certificates allowed.
//! - `premium` = [IntP, R], lead IntP, allow list = the CNs of the valid premium devices.
//! - IntS ← R is configured nowhere: its devices authenticate through R but meet no lead.
//!
//! TPM classes attest without a client certificate through the TPM nonce challenge; their
//! enrollments are described in [`tpm`].
//!
//! Class assignment and names follow the seed; keys are fresh randomness, so a fleet is reproduced
//! exactly by the on-disk cache ([`cache`]), which a rerun with the same `[fleet]` reuses.

mod build;
pub mod cache;
pub mod export;
mod key;
mod model;
mod pki;
pub mod tpm;

pub use crate::spec::DeviceClass;
pub use build::build;
pub use model::{Credentials, Device, Expected, Fleet, FleetError, GroupInfo, HUB};
