//! Enrollment groups and X.509 attestation: the group model, the lock-free arena that publishes
//! them, and authentication + selection as `docs/enrollment.md` defines them.

mod arena;
mod authenticate;
mod cert;
mod group;
mod link_cache;
mod presented;
mod verdict;

pub use arena::{Arena, Snapshot};
pub use cert::{certs_from_pem, CertId, CertParseError, TrustedCert};
pub use group::{
    validate, Attestation, EnrollmentGroup, GroupError, GroupErrorKind, LeadSelector, LinkMemo,
    ValidatedGroup,
};
pub use verdict::{Accepted, RejectReason, UnknownReason, Verdict};
