//! What the DPS persists besides its config: enrollment groups and hubs managed over the admin API,
//! and one provisioning record per device. The [`Persistence`] trait is what the admin API and the
//! server need; the embedded store implements it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{GroupConfig, HubConfig};

/// A provisioning step, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// GET /x.plgd.dev/time
    Time,
    /// GET /api/v1/provisioning/ownership
    Ownership,
    /// POST /api/v1/provisioning/cloud-configuration
    CloudConfiguration,
    /// POST /api/v1/provisioning/credentials
    Credentials,
    /// GET /api/v1/provisioning/acls
    Acls,
}

impl Step {
    /// The step a resource path stands for.
    pub fn for_path(path: &str) -> Option<Step> {
        Some(match path {
            "/x.plgd.dev/time" => Step::Time,
            "/api/v1/provisioning/ownership" => Step::Ownership,
            "/api/v1/provisioning/cloud-configuration" => Step::CloudConfiguration,
            "/api/v1/provisioning/credentials" => Step::Credentials,
            "/api/v1/provisioning/acls" => Step::Acls,
            _ => return None,
        })
    }
}

/// The outcome of the latest attempt at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// When, RFC 3339.
    pub at: String,
    /// The CoAP response code, e.g. "2.05" or "4.00".
    pub code: String,
    /// The diagnostic of an error response.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diagnostic: String,
}

/// One device's provisioning history. Keyed by the SHA-256 fingerprint of its manufacturer
/// certificate (`sha256:<hex>`), the one identity a device has before it gets a device id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningRecord {
    /// `sha256:<hex>` of the manufacturer (leaf) certificate.
    pub key: String,
    /// The manufacturer certificate's CN.
    pub common_name: String,
    /// The enrollment group the device was admitted into.
    pub group: Uuid,
    /// The device id from the CSR of the credentials step, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Uuid>,
    /// `sha256:<hex>` of the identity certificate issued last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_certificate: Option<String>,
    /// Its expiry, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_not_after: Option<String>,
    /// The authorization provider (`jwt` or `oauth2`) that issued the access token of the latest
    /// successful cloud configuration (the token itself is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_provider: Option<String>,
    /// That token's expiry, RFC 3339, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
    /// Latest result per step.
    pub steps: BTreeMap<Step, StepResult>,
    /// First connection, RFC 3339.
    pub first_seen: String,
    /// Latest step, RFC 3339.
    pub last_seen: String,
}

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A shared store refused an identity: another replica took the device id (or gave it
    /// another key) meanwhile. The device is answered 4.00, as a single server answers it.
    #[error("{0}")]
    Refused(String),
    /// The database reported an error (I/O, corruption, transaction).
    #[error("store: {0}")]
    Database(String),
    /// A stored value could not be decoded.
    #[error("store: corrupt value under {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Durable state used by the admin API and the server. Writes return once they are durable.
pub trait Persistence: Send + Sync {
    /// Insert or replace an admin-managed group (chain as inline PEM).
    fn put_group(&self, group: &GroupConfig) -> Result<(), StoreError>;
    /// Delete a group; `false` if absent.
    fn delete_group(&self, id: &Uuid) -> Result<bool, StoreError>;
    /// Every admin-managed group.
    fn groups(&self) -> Result<Vec<GroupConfig>, StoreError>;
    /// Insert or replace an admin-managed TPM enrollment group.
    fn put_tpm_group(&self, group: &GroupConfig) -> Result<(), StoreError>;
    /// Delete a TPM enrollment group; `false` if absent.
    fn delete_tpm_group(&self, id: &Uuid) -> Result<bool, StoreError>;
    /// Every admin-managed TPM enrollment group.
    fn tpm_groups(&self) -> Result<Vec<GroupConfig>, StoreError>;
    /// Insert or replace a hub.
    fn put_hub(&self, hub: &HubConfig) -> Result<(), StoreError>;
    /// Delete a hub; `false` if absent.
    fn delete_hub(&self, id: &Uuid) -> Result<bool, StoreError>;
    /// Every admin-managed hub.
    fn hubs(&self) -> Result<Vec<HubConfig>, StoreError>;
    /// Records in key order, starting after `after`, at most `limit`.
    fn records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProvisioningRecord>, StoreError>;
    /// One record, by its key (`sha256:<hex>` of the manufacturer certificate) or by device id.
    fn record(&self, key_or_device_id: &str) -> Result<Option<ProvisioningRecord>, StoreError>;
    /// Write records (a batch; one transaction).
    fn put_records(&self, records: &[ProvisioningRecord]) -> Result<(), StoreError>;
    /// Insert or replace an admin-managed individual TPM enrollment (EK inline). Stores that do
    /// not keep TPM enrollments refuse.
    fn put_tpm_enrollment(
        &self,
        _enrollment: &crate::tpm::TpmEnrollmentConfig,
    ) -> Result<(), StoreError> {
        Err(StoreError::Database(
            "this store does not keep TPM enrollments".into(),
        ))
    }
    /// Delete an individual TPM enrollment; `false` if absent.
    fn delete_tpm_enrollment(&self, _id: &Uuid) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Every admin-managed individual TPM enrollment.
    fn tpm_enrollments(&self) -> Result<Vec<crate::tpm::TpmEnrollmentConfig>, StoreError> {
        Ok(Vec::new())
    }
}
