//! Rows of the PostgreSQL store decoded into the model, and identities encoded into rows.

use uuid::Uuid;

use super::names::pg_err;
use crate::provision::{holders_from_json, holders_to_json, IdentityHolder};
use crate::records::{ProvisioningRecord, StoreError};
use crate::store::codec::{corrupt, decode};

/// Decode `(key, value)` rows of the records table.
pub(crate) fn decode_records(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<ProvisioningRecord>, StoreError> {
    rows.iter()
        .map(|row| {
            let key: String = row.try_get(0).map_err(pg_err)?;
            let value: String = row.try_get(1).map_err(pg_err)?;
            decode(&key, &value)
        })
        .collect()
}

/// Decode `(device_id, holders)` rows of the identities table.
pub(crate) fn decode_identities(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<(Uuid, Vec<IdentityHolder>)>, StoreError> {
    rows.iter()
        .map(|row| {
            let device: String = row.try_get(0).map_err(pg_err)?;
            let holders: String = row.try_get(1).map_err(pg_err)?;
            let id = Uuid::parse_str(&device).map_err(|e| corrupt(&device, e))?;
            let holders = holders_from_json(&holders).map_err(|e| corrupt(&device, e))?;
            Ok((id, holders))
        })
        .collect()
}

/// `(device id, holders JSON or None to delete)` of each entry.
pub(crate) fn identity_rows(
    identities: &[(Uuid, Vec<IdentityHolder>)],
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    identities
        .iter()
        .map(|(device, holders)| {
            let json = if holders.is_empty() {
                None
            } else {
                Some(holders_to_json(holders).map_err(pg_err)?)
            };
            Ok((device.to_string(), json))
        })
        .collect()
}
