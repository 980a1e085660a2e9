//! The PostgreSQL store's reads and writes: the [`Persistence`] calls and the identities of the
//! start-up and the resync. Each write is one transaction; the admin API's announce themselves
//! on [`CHANNEL`](super::CHANNEL) in that transaction, so a replica hears of a change only once
//! it is committed.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::batch;
use super::names::{pg_err, CHANNEL, CONFIG_CHANGED};
use super::pool::Pg;
use super::rows::{decode_identities, decode_records, identity_rows};
use crate::config::{GroupConfig, HubConfig};
use crate::provision::IdentityHolder;
use crate::records::{Persistence, ProvisioningRecord, StoreError};
use crate::store::codec::{decode, encode, uuid_key};
use crate::tpm::TpmEnrollmentConfig;

const GROUPS: &str = "groups";
const TPM_GROUPS: &str = "tpm_groups";
const HUBS: &str = "hubs";
const TPM_ENROLLMENTS: &str = "tpm_enrollments";

async fn put(pool: Pool, table: &'static str, id: String, value: String) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pg_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let sql = format!(
        "INSERT INTO {table} (id, value) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value"
    );
    tx.execute(&sql, &[&id, &value]).await.map_err(pg_err)?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &CONFIG_CHANGED])
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

async fn delete(pool: Pool, table: &'static str, id: String) -> Result<bool, StoreError> {
    let mut client = pool.get().await.map_err(pg_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let sql = format!("DELETE FROM {table} WHERE id = $1");
    let removed = tx.execute(&sql, &[&id]).await.map_err(pg_err)? > 0;
    if removed {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &CONFIG_CHANGED])
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(removed)
}

async fn all<T: serde::de::DeserializeOwned>(
    pool: Pool,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    let client = pool.get().await.map_err(pg_err)?;
    let sql = format!("SELECT id, value FROM {table} ORDER BY id");
    let rows = client.query(&sql, &[]).await.map_err(pg_err)?;
    rows.iter()
        .map(|row| {
            let (id, value): (String, String) = (
                row.try_get(0).map_err(pg_err)?,
                row.try_get(1).map_err(pg_err)?,
            );
            decode(&id, &value)
        })
        .collect()
}

async fn records_after(
    pool: Pool,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<ProvisioningRecord>, StoreError> {
    let client = pool.get().await.map_err(pg_err)?;
    let rows = client
        .query(
            "SELECT key, value FROM records WHERE $1::text IS NULL OR key > $1 \
             ORDER BY key LIMIT $2",
            &[&after, &limit],
        )
        .await
        .map_err(pg_err)?;
    decode_records(&rows)
}

async fn record_by(
    pool: Pool,
    key_or_device_id: String,
) -> Result<Option<ProvisioningRecord>, StoreError> {
    let client = pool.get().await.map_err(pg_err)?;
    let rows = if key_or_device_id.starts_with("sha256:") {
        client
            .query(
                "SELECT key, value FROM records WHERE key = $1",
                &[&key_or_device_id],
            )
            .await
    } else {
        let id = key_or_device_id
            .strip_prefix("uuid:")
            .unwrap_or(&key_or_device_id);
        let Ok(device) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        client
            .query(
                "SELECT r.key, r.value FROM devices d JOIN records r ON r.key = d.key \
                 WHERE d.device_id = $1",
                &[&device.to_string()],
            )
            .await
    }
    .map_err(pg_err)?;
    Ok(decode_records(&rows)?.pop())
}

impl Pg {
    /// Number of provisioning records.
    pub(crate) fn record_count(&self) -> Result<u64, StoreError> {
        let pool = self.pool();
        self.run(async move {
            let client = pool.get().await.map_err(pg_err)?;
            let row = client
                .query_one("SELECT count(*) FROM records", &[])
                .await
                .map_err(pg_err)?;
            let n: i64 = row.try_get(0).map_err(pg_err)?;
            Ok(u64::try_from(n).unwrap_or_default())
        })
    }

    /// Every stored device id with its holders.
    pub(crate) fn identities(&self) -> Result<Vec<(Uuid, Vec<IdentityHolder>)>, StoreError> {
        let pool = self.pool();
        self.run(async move {
            let client = pool.get().await.map_err(pg_err)?;
            let rows = client
                .query("SELECT device_id, holders FROM identities", &[])
                .await
                .map_err(pg_err)?;
            decode_identities(&rows)
        })
    }

    /// The stored holders of one device id (empty when none).
    pub(crate) fn identity(&self, device: Uuid) -> Result<Vec<IdentityHolder>, StoreError> {
        let pool = self.pool();
        self.run(async move {
            let client = pool.get().await.map_err(pg_err)?;
            let rows = client
                .query(
                    "SELECT device_id, holders FROM identities WHERE device_id = $1",
                    &[&device.to_string()],
                )
                .await
                .map_err(pg_err)?;
            Ok(decode_identities(&rows)?
                .pop()
                .map(|(_, h)| h)
                .unwrap_or_default())
        })
    }

    /// Write the holders of these device ids as they are (an empty list deletes the entry).
    pub(crate) fn put_identities(
        &self,
        identities: &[(Uuid, Vec<IdentityHolder>)],
    ) -> Result<(), StoreError> {
        let rows = identity_rows(identities)?;
        let pool = self.pool();
        self.run(async move {
            let mut client = pool.get().await.map_err(pg_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            batch::write_identities(&tx, &rows).await?;
            tx.commit().await.map_err(pg_err)
        })
    }
}

impl Persistence for Pg {
    fn put_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        let id = uuid_key("group", &group.id)?;
        let value = encode(group)?;
        self.run(put(self.pool(), GROUPS, id, value))
    }

    fn delete_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.run(delete(self.pool(), GROUPS, id.to_string()))
    }

    fn groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        self.run(all(self.pool(), GROUPS))
    }

    fn put_tpm_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        let id = uuid_key("TPM enrollment group", &group.id)?;
        let value = encode(group)?;
        self.run(put(self.pool(), TPM_GROUPS, id, value))
    }

    fn delete_tpm_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.run(delete(self.pool(), TPM_GROUPS, id.to_string()))
    }

    fn tpm_groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        self.run(all(self.pool(), TPM_GROUPS))
    }

    fn put_hub(&self, hub: &HubConfig) -> Result<(), StoreError> {
        let id = uuid_key("hub", &hub.id)?;
        let value = encode(hub)?;
        self.run(put(self.pool(), HUBS, id, value))
    }

    fn delete_hub(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.run(delete(self.pool(), HUBS, id.to_string()))
    }

    fn hubs(&self) -> Result<Vec<HubConfig>, StoreError> {
        self.run(all(self.pool(), HUBS))
    }

    fn records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProvisioningRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(records_after(self.pool(), after.map(str::to_owned), limit))
    }

    fn record(&self, key_or_device_id: &str) -> Result<Option<ProvisioningRecord>, StoreError> {
        self.run(record_by(self.pool(), key_or_device_id.to_owned()))
    }

    fn put_records(&self, records: &[ProvisioningRecord]) -> Result<(), StoreError> {
        let records = records.to_vec();
        let pool = self.pool();
        self.run(async move {
            let mut client = pool.get().await.map_err(pg_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
            // The record writer's batches lock the same names.
            let locks: Vec<String> = keys.iter().map(|k| format!("record:{k}")).collect();
            batch::lock(&tx, &locks).await?;
            let before = batch::read_records(&tx, &keys).await?;
            let pairs = records
                .into_iter()
                .map(|r| (before.get(&r.key).cloned(), r))
                .collect::<Vec<_>>();
            batch::write_records(&tx, &pairs).await?;
            tx.commit().await.map_err(pg_err)
        })
    }

    fn put_tpm_enrollment(&self, enrollment: &TpmEnrollmentConfig) -> Result<(), StoreError> {
        let id = uuid_key("TPM enrollment", &enrollment.id)?;
        let value = encode(enrollment)?;
        self.run(put(self.pool(), TPM_ENROLLMENTS, id, value))
    }

    fn delete_tpm_enrollment(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.run(delete(self.pool(), TPM_ENROLLMENTS, id.to_string()))
    }

    fn tpm_enrollments(&self) -> Result<Vec<TpmEnrollmentConfig>, StoreError> {
        self.run(all(self.pool(), TPM_ENROLLMENTS))
    }
}
