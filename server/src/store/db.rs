//! The redb database behind [`Store`]: the tables, their JSON values, and every transaction
//! (the record writer's batches included).

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use uuid::Uuid;

use super::codec::{corrupt, decode, encode, store_err, uuid_key};
use super::event::{self, StepEvent};
use crate::config::{GroupConfig, HubConfig};
use crate::provision::{holders_from_json, holders_to_json, IdentityHolder};
use crate::records::{Persistence, ProvisioningRecord, StoreError};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const GROUPS: TableDefinition<&str, &str> = TableDefinition::new("groups");
/// TPM enrollment groups (same JSON as `groups`; kept apart so each kind reads back as itself).
const TPM_GROUPS: TableDefinition<&str, &str> = TableDefinition::new("tpm_groups");
const HUBS: TableDefinition<&str, &str> = TableDefinition::new("hubs");
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");
const DEVICES: TableDefinition<&str, &str> = TableDefinition::new("devices");
const IDENTITIES: TableDefinition<&str, &str> = TableDefinition::new("identities");
const TPM_ENROLLMENTS: TableDefinition<&str, &str> = TableDefinition::new("tpm_enrollments");

/// Version of the table layout, kept under `meta/schema`.
const SCHEMA: &str = "1";

/// redb's page cache (its default is 1 GiB): records are written far more than read back, and a
/// server holding tens of thousands of connections should not spend its memory caching them.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The embedded database of one DPS.
pub(super) struct Redb {
    db: Database,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Redb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redb").field("path", &self.path).finish()
    }
}

impl Redb {
    /// Open the database file at `path`, creating it (and its tables) if missing. Fails on a file
    /// that is not a redb database, is corrupt, or is open in another process.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| store_err(format!("cannot open the database: {e}")))?;
        Self::init(db, Some(path.to_owned()))
    }

    /// A store that lives in memory only (tests, `path = ":memory:"`).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(store_err)?;
        Self::init(db, None)
    }

    fn init(db: Database, path: Option<PathBuf>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(store_err)?;
        {
            let mut meta = txn.open_table(META).map_err(store_err)?;
            let schema = meta
                .get("schema")
                .map_err(store_err)?
                .map(|v| v.value().to_owned());
            match schema.as_deref() {
                None => {
                    meta.insert("schema", SCHEMA).map_err(store_err)?;
                }
                Some(SCHEMA) => {}
                Some(other) => {
                    return Err(store_err(format!(
                        "unsupported store schema {other:?} (this server reads {SCHEMA:?})"
                    )))
                }
            }
            for table in [
                GROUPS,
                TPM_GROUPS,
                HUBS,
                RECORDS,
                DEVICES,
                IDENTITIES,
                TPM_ENROLLMENTS,
            ] {
                txn.open_table(table).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        Ok(Self { db, path })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of provisioning records.
    pub fn record_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RECORDS).map_err(store_err)?;
        table.len().map_err(store_err)
    }

    /// Every stored device id with its identity holders (to fill the in-memory map at start-up).
    pub fn identities(&self) -> Result<Vec<(Uuid, Vec<IdentityHolder>)>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(IDENTITIES).map_err(store_err)?;
        let records = txn.open_table(RECORDS).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            let device = Uuid::parse_str(k.value()).map_err(|e| corrupt(k.value(), e))?;
            let mut holders = holders_from_json(v.value()).map_err(|e| corrupt(k.value(), e))?;
            // Holders stored before they kept the attested name: take it from their record.
            for holder in holders.iter_mut().filter(|h| h.name.is_empty()) {
                if let Some(record) = holder.record {
                    if let Some(r) = read_record(&records, &record.to_string())? {
                        holder.name = r.common_name;
                    }
                }
            }
            out.push((device, holders));
        }
        Ok(out)
    }

    /// Write the identity holders of these device ids (an empty list deletes the entry).
    pub fn put_identities(
        &self,
        identities: &[(Uuid, Vec<IdentityHolder>)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(IDENTITIES).map_err(store_err)?;
            write_identities(&mut table, identities)?;
        }
        txn.commit().map_err(store_err)
    }

    /// One batch of the record writer, in one transaction: every event merged into its record
    /// (read-modify-write), the dirty identities written, and records brought in line with
    /// identities whose credentials event was lost.
    pub(super) fn commit_batch(
        &self,
        events: &[StepEvent],
        identities: &[(Uuid, Vec<IdentityHolder>)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(store_err)?;
            let mut devices = txn.open_table(DEVICES).map_err(store_err)?;
            let mut ids = txn.open_table(IDENTITIES).map_err(store_err)?;
            let mut touched = Touched::default();
            for event in events {
                let slot = touched.slot(&records, event.record.to_string())?;
                slot.now = Some(event::merge(slot.now.take(), event));
                slot.changed = true;
            }
            for (device, holders) in identities {
                for holder in holders {
                    let Some(record) = holder.record else {
                        continue;
                    };
                    let slot = touched.slot(&records, record.to_string())?;
                    if let Some(next) = event::reconcile(slot.now.as_ref(), *device, holder) {
                        slot.now = Some(next);
                        slot.changed = true;
                    }
                }
            }
            write_identities(&mut ids, identities)?;
            for key in touched.order {
                if let Some(Slot {
                    before,
                    now: Some(now),
                    changed: true,
                }) = touched.slots.remove(&key)
                {
                    write_record(&mut records, &mut devices, before.as_ref(), &now)?;
                }
            }
        }
        txn.commit().map_err(store_err)
    }
}

/// One record during a batch: as stored before it, and as merged so far.
#[derive(Default)]
struct Slot {
    before: Option<ProvisioningRecord>,
    now: Option<ProvisioningRecord>,
    changed: bool,
}

/// The records a batch touches, each read once, in first-touch order.
#[derive(Default)]
struct Touched {
    slots: HashMap<String, Slot>,
    order: Vec<String>,
}

impl Touched {
    fn slot(
        &mut self,
        records: &impl ReadableTable<&'static str, &'static str>,
        key: String,
    ) -> Result<&mut Slot, StoreError> {
        if !self.slots.contains_key(&key) {
            let before = read_record(records, &key)?;
            self.order.push(key.clone());
            self.slots.insert(
                key.clone(),
                Slot {
                    now: before.clone(),
                    before,
                    changed: false,
                },
            );
        }
        self.slots
            .get_mut(&key)
            .ok_or_else(|| store_err("batch bookkeeping lost a record"))
    }
}

fn read_record(
    records: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> Result<Option<ProvisioningRecord>, StoreError> {
    match records.get(key).map_err(store_err)? {
        Some(v) => decode(key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// Write a record and keep the device-id index in line with it.
fn write_record(
    records: &mut Table<'_, &'static str, &'static str>,
    devices: &mut Table<'_, &'static str, &'static str>,
    before: Option<&ProvisioningRecord>,
    record: &ProvisioningRecord,
) -> Result<(), StoreError> {
    if let Some(old) = before.and_then(|b| b.device_id) {
        if Some(old) != record.device_id {
            let old = old.to_string();
            let points_here = devices
                .get(old.as_str())
                .map_err(store_err)?
                .is_some_and(|v| v.value() == record.key);
            if points_here {
                devices.remove(old.as_str()).map_err(store_err)?;
            }
        }
    }
    if let Some(device) = record.device_id {
        devices
            .insert(device.to_string().as_str(), record.key.as_str())
            .map_err(store_err)?;
    }
    records
        .insert(record.key.as_str(), encode(record)?.as_str())
        .map_err(store_err)?;
    Ok(())
}

fn write_identities(
    table: &mut Table<'_, &'static str, &'static str>,
    identities: &[(Uuid, Vec<IdentityHolder>)],
) -> Result<(), StoreError> {
    for (device, holders) in identities {
        let key = device.to_string();
        if holders.is_empty() {
            table.remove(key.as_str()).map_err(store_err)?;
        } else {
            let json = holders_to_json(holders).map_err(store_err)?;
            table
                .insert(key.as_str(), json.as_str())
                .map_err(store_err)?;
        }
    }
    Ok(())
}

impl Persistence for Redb {
    fn put_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        let key = uuid_key("group", &group.id)?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(GROUPS).map_err(store_err)?;
            table
                .insert(key.as_str(), encode(group)?.as_str())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn delete_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        delete(&self.db, GROUPS, id)
    }

    fn groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        all(&self.db, GROUPS)
    }

    fn put_tpm_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        let key = uuid_key("TPM enrollment group", &group.id)?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(TPM_GROUPS).map_err(store_err)?;
            table
                .insert(key.as_str(), encode(group)?.as_str())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn delete_tpm_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        delete(&self.db, TPM_GROUPS, id)
    }

    fn tpm_groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        all(&self.db, TPM_GROUPS)
    }

    fn put_hub(&self, hub: &HubConfig) -> Result<(), StoreError> {
        let key = uuid_key("hub", &hub.id)?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(HUBS).map_err(store_err)?;
            table
                .insert(key.as_str(), encode(hub)?.as_str())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn delete_hub(&self, id: &Uuid) -> Result<bool, StoreError> {
        delete(&self.db, HUBS, id)
    }

    fn hubs(&self) -> Result<Vec<HubConfig>, StoreError> {
        all(&self.db, HUBS)
    }

    fn put_tpm_enrollment(
        &self,
        enrollment: &crate::tpm::TpmEnrollmentConfig,
    ) -> Result<(), StoreError> {
        let key = uuid_key("TPM enrollment", &enrollment.id)?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(TPM_ENROLLMENTS).map_err(store_err)?;
            table
                .insert(key.as_str(), encode(enrollment)?.as_str())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn delete_tpm_enrollment(&self, id: &Uuid) -> Result<bool, StoreError> {
        delete(&self.db, TPM_ENROLLMENTS, id)
    }

    fn tpm_enrollments(&self) -> Result<Vec<crate::tpm::TpmEnrollmentConfig>, StoreError> {
        all(&self.db, TPM_ENROLLMENTS)
    }

    fn records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProvisioningRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RECORDS).map_err(store_err)?;
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in table
            .range::<&str>((start, Bound::Unbounded))
            .map_err(store_err)?
            .take(limit)
        {
            let (k, v) = entry.map_err(store_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn record(&self, key_or_device_id: &str) -> Result<Option<ProvisioningRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let records = txn.open_table(RECORDS).map_err(store_err)?;
        if key_or_device_id.starts_with("sha256:") {
            return read_record(&records, key_or_device_id);
        }
        let id = key_or_device_id
            .strip_prefix("uuid:")
            .unwrap_or(key_or_device_id);
        let Ok(device) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        let devices = txn.open_table(DEVICES).map_err(store_err)?;
        let key = match devices
            .get(device.to_string().as_str())
            .map_err(store_err)?
        {
            Some(k) => k.value().to_owned(),
            None => return Ok(None),
        };
        read_record(&records, &key)
    }

    fn put_records(&self, batch: &[ProvisioningRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(store_err)?;
            let mut devices = txn.open_table(DEVICES).map_err(store_err)?;
            for record in batch {
                let before = read_record(&records, &record.key)?;
                write_record(&mut records, &mut devices, before.as_ref(), record)?;
            }
        }
        txn.commit().map_err(store_err)
    }
}

fn delete(
    database: &Database,
    table: TableDefinition<&str, &str>,
    id: &Uuid,
) -> Result<bool, StoreError> {
    let txn = database.begin_write().map_err(store_err)?;
    let removed = {
        let mut t = txn.open_table(table).map_err(store_err)?;
        let removed = t
            .remove(id.to_string().as_str())
            .map_err(store_err)?
            .is_some();
        removed
    };
    txn.commit().map_err(store_err)?;
    Ok(removed)
}

fn all<T: serde::de::DeserializeOwned>(
    database: &Database,
    table: TableDefinition<&str, &str>,
) -> Result<Vec<T>, StoreError> {
    let txn = database.begin_read().map_err(store_err)?;
    let t = txn.open_table(table).map_err(store_err)?;
    let mut out = Vec::new();
    for entry in t.iter().map_err(store_err)? {
        let (k, v) = entry.map_err(store_err)?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
