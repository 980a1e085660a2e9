//! The names the PostgreSQL store's parts share: the change channel and its payloads, and how
//! a driver error becomes a store error.

use crate::records::StoreError;

/// The channel every change is announced on.
pub(crate) const CHANNEL: &str = "dps_changes";
/// The payload announcing a change of groups, hubs or TPM enrollments.
pub(crate) const CONFIG_CHANGED: &str = "config";
/// The prefix of the payload announcing a change of one device id's identities.
pub(crate) const IDENTITY_CHANGED: &str = "identity:";

/// A driver or pool error as a store error.
pub(crate) fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}
