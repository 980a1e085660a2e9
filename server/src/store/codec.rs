//! The encoding both stores share: every value is JSON text, every id a canonical UUID string.

use uuid::Uuid;

use crate::records::StoreError;

pub(super) fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(super) fn corrupt(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(key, e))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(store_err)
}

/// The canonical key of an id that must be a UUID.
pub(super) fn uuid_key(kind: &str, id: &str) -> Result<String, StoreError> {
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| store_err(format!("{kind} id {id:?} is not a UUID")))
}
