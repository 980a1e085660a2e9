//! Why a server could not be set up from its config: one error type for the config, the store,
//! the TLS identity and the enrollment it serves.

use uuid::Uuid;

use crate::config::{ConfigError, OutOfRange};
use crate::enrollment::GroupError;
use crate::provision::ProvisionError;
use crate::records::StoreError;
use crate::tls::{IdentityAnchorError, TlsConfigError};
use crate::tpm::TpmEnrollmentError;

/// Why the server could not be set up from its config.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `[server]` is missing.
    #[error("the config has no [server] section (see `dps-server init`)")]
    NoServerSection,
    /// A file named by the config could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An enrollment group is invalid.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A hub is invalid.
    #[error("hub {0}")]
    Hub(String),
    /// The identity CA is unusable.
    #[error("identity CA: {0}")]
    Identity(#[from] ProvisionError),
    /// rustls refused the configuration.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The identity CA cannot anchor identity certificates.
    #[error(transparent)]
    IdentityAnchor(#[from] IdentityAnchorError),
    /// The store could not be opened or read.
    #[error("store {location}: {reason}")]
    Store {
        /// The database file (or `:memory:`).
        location: String,
        /// Why.
        reason: StoreError,
    },
    /// A stored (admin-managed) group could not be resolved.
    #[error("store {location}: {reason}")]
    StoredGroup {
        /// The database file.
        location: String,
        /// Why.
        reason: ConfigError,
    },
    /// An individual TPM enrollment is invalid or conflicts with another.
    #[error(transparent)]
    TpmEnrollment(#[from] TpmEnrollmentError),
    /// A numeric setting is outside its allowed range (a config changed after it was loaded).
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// The store's directory does not exist (it is not created: a typo should not start a server
    /// on an empty store somewhere else).
    #[error("store {path}: directory {dir} does not exist")]
    StoreDirectory {
        /// The database file.
        path: String,
        /// Its missing directory.
        dir: String,
    },
    /// A stored group or hub has the id of one in the config.
    #[error("{kind} {id}: {stored} in the store has the same id as {configured} in the config")]
    DuplicateId {
        /// "enrollment group" or "hub".
        kind: &'static str,
        /// The shared id.
        id: Uuid,
        /// The stored one (its name).
        stored: String,
        /// The configured one (its name).
        configured: String,
    },
}
