//! [`Store`]: the durable state of one DPS, in the embedded redb database or in a PostgreSQL
//! database that several replicas share. Callers see one type; each call goes to the backend
//! the config names.

use std::path::Path;

use uuid::Uuid;

use super::db::Redb;
use super::event::{IdentityOutcome, StepEvent};
use super::pg::{Change, Pg};
use crate::config::{GroupConfig, HubConfig, StoreLocation};
use crate::provision::{DirtyIdentity, IdentityHolder};
use crate::records::{Persistence, ProvisioningRecord, StoreError};
use crate::tpm::TpmEnrollmentConfig;

enum Backend {
    Redb(Redb),
    Pg(Box<Pg>),
}

/// The durable state of one DPS: admin-managed groups, hubs and TPM enrollments, provisioning
/// records and issued identities.
pub struct Store {
    backend: Backend,
    location: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

impl Store {
    /// Open the embedded database file at `path`, creating it (and its tables) if missing.
    /// Fails on a file that is not a redb database, is corrupt, or is open in another process.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Redb(Redb::open(path)?),
            location: path.display().to_string(),
        })
    }

    /// An embedded store that lives in memory only (tests, `path = ":memory:"`).
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Redb(Redb::in_memory()?),
            location: crate::config::IN_MEMORY_STORE.to_owned(),
        })
    }

    /// Connect to a PostgreSQL database (`postgres://USER@HOST:PORT/DB`) and bring its schema
    /// up to date; replicas share it.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Pg(Box::new(Pg::connect(url)?)),
            location: crate::config::redacted_url(url),
        })
    }

    /// Open the store a config names.
    pub fn open_location(location: &StoreLocation) -> Result<Self, StoreError> {
        match location {
            StoreLocation::InMemory => Self::in_memory(),
            StoreLocation::File(path) => Self::open(path),
            StoreLocation::Postgres(url) => Self::connect(url),
        }
    }

    /// The embedded database file (`None` in memory or on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Redb(r) => r.path(),
            Backend::Pg(_) => None,
        }
    }

    /// Where the store is, for logs and errors (a URL without its password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Several servers share this store (PostgreSQL): they follow its [`Store::changes`].
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// The changes made by any server on a shared store, `None` on an embedded one. Each call
    /// follows the store on a connection of its own.
    pub fn changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        match &self.backend {
            Backend::Redb(_) => None,
            Backend::Pg(p) => Some(p.changes()),
        }
    }

    /// Number of provisioning records.
    pub fn record_count(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(r) => r.record_count(),
            Backend::Pg(p) => p.record_count(),
        }
    }

    /// Every stored device id with its identity holders (to fill the in-memory map at start-up).
    pub fn identities(&self) -> Result<Vec<(Uuid, Vec<IdentityHolder>)>, StoreError> {
        match &self.backend {
            Backend::Redb(r) => r.identities(),
            Backend::Pg(p) => p.identities(),
        }
    }

    /// The stored identity holders of one device id (empty when none).
    pub fn identity(&self, device: Uuid) -> Result<Vec<IdentityHolder>, StoreError> {
        match &self.backend {
            Backend::Redb(r) => Ok(r
                .identities()?
                .into_iter()
                .find(|(d, _)| *d == device)
                .map(|(_, h)| h)
                .unwrap_or_default()),
            Backend::Pg(p) => p.identity(device),
        }
    }

    /// Write the identity holders of these device ids (an empty list deletes the entry).
    pub fn put_identities(
        &self,
        identities: &[(Uuid, Vec<IdentityHolder>)],
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(r) => r.put_identities(identities),
            Backend::Pg(p) => p.put_identities(identities),
        }
    }

    /// One batch of the record writer: the events merged into their records and the changed
    /// device ids written, in one transaction. On a shared store a device id another replica
    /// took meanwhile is refused (its outcome says so, and its credentials event is recorded as
    /// refused).
    pub(super) fn commit_batch(
        &self,
        events: &[StepEvent],
        dirty: Vec<DirtyIdentity>,
    ) -> Result<Vec<IdentityOutcome>, StoreError> {
        match &self.backend {
            Backend::Redb(r) => {
                let pairs: Vec<_> = dirty.into_iter().map(|d| (d.device, d.holders)).collect();
                r.commit_batch(events, &pairs)?;
                Ok(pairs
                    .into_iter()
                    .map(|(device, holders)| IdentityOutcome {
                        device,
                        holders,
                        refused: false,
                    })
                    .collect())
            }
            Backend::Pg(p) => p.commit_batch(events, dirty),
        }
    }

    /// The embedded database, for the store's own tests.
    #[cfg(test)]
    pub(super) fn embedded(&self) -> Option<&Redb> {
        match &self.backend {
            Backend::Redb(r) => Some(r),
            Backend::Pg(_) => None,
        }
    }

    fn persistence(&self) -> &dyn Persistence {
        match &self.backend {
            Backend::Redb(r) => r,
            Backend::Pg(p) => p.as_ref(),
        }
    }
}

impl Persistence for Store {
    fn put_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        self.persistence().put_group(group)
    }
    fn delete_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.persistence().delete_group(id)
    }
    fn groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        self.persistence().groups()
    }
    fn put_tpm_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        self.persistence().put_tpm_group(group)
    }
    fn delete_tpm_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.persistence().delete_tpm_group(id)
    }
    fn tpm_groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        self.persistence().tpm_groups()
    }
    fn put_hub(&self, hub: &HubConfig) -> Result<(), StoreError> {
        self.persistence().put_hub(hub)
    }
    fn delete_hub(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.persistence().delete_hub(id)
    }
    fn hubs(&self) -> Result<Vec<HubConfig>, StoreError> {
        self.persistence().hubs()
    }
    fn records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProvisioningRecord>, StoreError> {
        self.persistence().records(after, limit)
    }
    fn record(&self, key_or_device_id: &str) -> Result<Option<ProvisioningRecord>, StoreError> {
        self.persistence().record(key_or_device_id)
    }
    fn put_records(&self, records: &[ProvisioningRecord]) -> Result<(), StoreError> {
        self.persistence().put_records(records)
    }
    fn put_tpm_enrollment(&self, enrollment: &TpmEnrollmentConfig) -> Result<(), StoreError> {
        self.persistence().put_tpm_enrollment(enrollment)
    }
    fn delete_tpm_enrollment(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.persistence().delete_tpm_enrollment(id)
    }
    fn tpm_enrollments(&self) -> Result<Vec<TpmEnrollmentConfig>, StoreError> {
        self.persistence().tpm_enrollments()
    }
}
