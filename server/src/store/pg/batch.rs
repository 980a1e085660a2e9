//! One batch of the record writer on PostgreSQL, in one transaction: the rows it touches locked
//! (advisory locks in hash order, so two replicas' batches cannot deadlock over them), the device
//! ids changed here judged against what the database has (another replica may have taken one
//! meanwhile: then the change is refused, as a single server refuses it), the events merged into
//! their records, and every written device id announced.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use uuid::Uuid;

use super::names::{pg_err, CHANNEL, IDENTITY_CHANGED};
use super::pool::Pg;
use super::rows::{decode_identities, decode_records, identity_rows};
use crate::proto::coap::Code;
use crate::provision::{
    admits, holders_from_json, holders_to_json, Claim, DirtyIdentity, IdentityHolder,
};
use crate::records::{ProvisioningRecord, StoreError};
use crate::store::codec::encode;
use crate::store::event::{self, IdentityOutcome, StepEvent};

/// Take the transaction's advisory locks on `keys`, in hash order.
pub(crate) async fn lock(tx: &Transaction<'_>, keys: &[String]) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(h) FROM \
         (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k) AS s \
         ORDER BY h",
        &[&keys],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// The stored records among `keys`.
pub(crate) async fn read_records(
    tx: &Transaction<'_>,
    keys: &[String],
) -> Result<HashMap<String, ProvisioningRecord>, StoreError> {
    let rows = tx
        .query(
            "SELECT key, value FROM records WHERE key = ANY($1::text[])",
            &[&keys],
        )
        .await
        .map_err(pg_err)?;
    Ok(decode_records(&rows)?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect())
}

/// Write records (each with its stored version) and keep the device-id index in line.
pub(crate) async fn write_records(
    tx: &Transaction<'_>,
    records: &[(Option<ProvisioningRecord>, ProvisioningRecord)],
) -> Result<(), StoreError> {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let (mut gone_ids, mut gone_keys) = (Vec::new(), Vec::new());
    let mut devices: HashMap<String, String> = HashMap::new();
    for (before, now) in records {
        keys.push(now.key.clone());
        values.push(encode(now)?);
        if let Some(old) = before.as_ref().and_then(|b| b.device_id) {
            if Some(old) != now.device_id {
                gone_ids.push(old.to_string());
                gone_keys.push(now.key.clone());
            }
        }
        if let Some(device) = now.device_id {
            devices.insert(device.to_string(), now.key.clone());
        }
    }
    tx.execute(
        "DELETE FROM devices d USING unnest($1::text[], $2::text[]) AS x(device_id, key) \
         WHERE d.device_id = x.device_id AND d.key = x.key",
        &[&gone_ids, &gone_keys],
    )
    .await
    .map_err(pg_err)?;
    let (ids, pointed): (Vec<String>, Vec<String>) = devices.into_iter().unzip();
    tx.execute(
        "INSERT INTO devices (device_id, key) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (device_id) DO UPDATE SET key = EXCLUDED.key",
        &[&ids, &pointed],
    )
    .await
    .map_err(pg_err)?;
    tx.execute(
        "INSERT INTO records (key, value) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&keys, &values],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Write `(device id, holders JSON or None to delete)` rows and announce each.
pub(crate) async fn write_identities(
    tx: &Transaction<'_>,
    rows: &[(String, Option<String>)],
) -> Result<(), StoreError> {
    let deleted: Vec<&String> = rows
        .iter()
        .filter(|(_, h)| h.is_none())
        .map(|(d, _)| d)
        .collect();
    let (ids, holders): (Vec<&String>, Vec<&String>) = rows
        .iter()
        .filter_map(|(d, h)| h.as_ref().map(|h| (d, h)))
        .unzip();
    let all: Vec<&String> = rows.iter().map(|(d, _)| d).collect();
    tx.execute(
        "DELETE FROM identities WHERE device_id = ANY($1::text[])",
        &[&deleted],
    )
    .await
    .map_err(pg_err)?;
    tx.execute(
        "INSERT INTO identities (device_id, holders) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (device_id) DO UPDATE SET holders = EXCLUDED.holders",
        &[&ids, &holders],
    )
    .await
    .map_err(pg_err)?;
    tx.execute(
        "SELECT pg_notify($1, $2 || d) FROM unnest($3::text[]) AS d",
        &[&CHANNEL, &IDENTITY_CHANGED, &all],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Judge one device id changed here against the holders the database has now: written as is
/// when nobody else changed it since this server last saw it (or it is a release), merged when
/// the other change still admits this one, refused otherwise.
fn judge(
    dirty: &DirtyIdentity,
    stored: Vec<IdentityHolder>,
    now: OffsetDateTime,
) -> IdentityOutcome {
    let outcome = |holders, refused| IdentityOutcome {
        device: dirty.device,
        holders,
        refused,
    };
    let base = dirty.base.as_deref().map(as_stored);
    let unchanged = base.as_ref().is_none_or(|base| *base == stored);
    if dirty.holders.is_empty() || unchanged {
        return outcome(dirty.holders.clone(), false);
    }
    let base = base.unwrap_or_default();
    let mut merged = stored.clone();
    for mine in as_stored(&dirty.holders)
        .iter()
        .filter(|h| !base.contains(h))
    {
        let claim = Claim {
            record: mine.record,
            spki: &mine.spki,
            renewing: false,
        };
        if admits(&stored, mine.owner, &claim, now).is_err() {
            return outcome(stored, true);
        }
        match merged.iter_mut().find(|h| h.owner == mine.owner) {
            Some(h) => *h = mine.clone(),
            None => merged.push(mine.clone()),
        }
    }
    outcome(merged, false)
}

/// Holders as the store keeps them (times in whole seconds), to compare with stored ones.
fn as_stored(holders: &[IdentityHolder]) -> Vec<IdentityHolder> {
    holders_to_json(holders)
        .and_then(|json| holders_from_json(&json))
        .unwrap_or_else(|_| holders.to_vec())
}

/// The event a refused credentials step is recorded as: 4.00, nothing issued.
fn refused(event: &StepEvent) -> StepEvent {
    let mut e = event.clone();
    if let Some(issued) = e.issued.take() {
        e.code = Code::BAD_REQUEST;
        e.diagnostic = format!(
            "device uuid:{} was taken meanwhile through another replica",
            issued.device_id
        );
    }
    e
}

/// The records touched by the events and the written identities, merged.
fn merged_records(
    before: &HashMap<String, ProvisioningRecord>,
    events: &[StepEvent],
    outcomes: &[IdentityOutcome],
) -> Vec<(Option<ProvisioningRecord>, ProvisioningRecord)> {
    let mut now: HashMap<String, ProvisioningRecord> = HashMap::new();
    let mut order = Vec::new();
    let refused_ids: HashSet<Uuid> = outcomes
        .iter()
        .filter(|o| o.refused)
        .map(|o| o.device)
        .collect();
    for e in events {
        let e = match &e.issued {
            Some(i) if refused_ids.contains(&i.device_id) => refused(e),
            _ => e.clone(),
        };
        let key = e.record.to_string();
        let current = now.remove(&key).or_else(|| before.get(&key).cloned());
        if !order.contains(&key) {
            order.push(key.clone());
        }
        now.insert(key, event::merge(current, &e));
    }
    for o in outcomes.iter().filter(|o| !o.refused) {
        for holder in &o.holders {
            let Some(record) = holder.record else {
                continue;
            };
            let key = record.to_string();
            let current = now.get(&key).or_else(|| before.get(&key));
            if let Some(next) = event::reconcile(current, o.device, holder) {
                if !order.contains(&key) {
                    order.push(key.clone());
                }
                now.insert(key, next);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| now.remove(&k).map(|r| (before.get(&k).cloned(), r)))
        .collect()
}

/// Every key a batch locks: its records and its device ids.
fn lock_keys(events: &[StepEvent], dirty: &[DirtyIdentity]) -> Vec<String> {
    let records = events.iter().map(|e| e.record.to_string()).chain(
        dirty
            .iter()
            .flat_map(|d| d.holders.iter().chain(d.base.iter().flatten()))
            .filter_map(|h| h.record.map(|r| r.to_string())),
    );
    let devices = dirty
        .iter()
        .map(|d| format!("{IDENTITY_CHANGED}{}", d.device));
    records
        .map(|r| format!("record:{r}"))
        .chain(devices)
        .collect()
}

async fn commit(
    pool: deadpool_postgres::Pool,
    events: Vec<StepEvent>,
    dirty: Vec<DirtyIdentity>,
) -> Result<Vec<IdentityOutcome>, StoreError> {
    let mut client = pool.get().await.map_err(pg_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    lock(&tx, &lock_keys(&events, &dirty)).await?;
    let ids: Vec<String> = dirty.iter().map(|d| d.device.to_string()).collect();
    let rows = tx
        .query(
            "SELECT device_id, holders FROM identities WHERE device_id = ANY($1::text[])",
            &[&ids],
        )
        .await
        .map_err(pg_err)?;
    let mut stored: HashMap<Uuid, Vec<IdentityHolder>> =
        decode_identities(&rows)?.into_iter().collect();
    let now = OffsetDateTime::now_utc();
    let outcomes: Vec<IdentityOutcome> = dirty
        .iter()
        .map(|d| judge(d, stored.remove(&d.device).unwrap_or_default(), now))
        .collect();
    let mut keys: Vec<String> = events.iter().map(|e| e.record.to_string()).collect();
    keys.extend(
        outcomes
            .iter()
            .flat_map(|o| o.holders.iter())
            .filter_map(|h| h.record.map(|r| r.to_string())),
    );
    let before = read_records(&tx, &keys).await?;
    write_records(&tx, &merged_records(&before, &events, &outcomes)).await?;
    let written: Vec<(Uuid, Vec<IdentityHolder>)> = outcomes
        .iter()
        .filter(|o| !o.refused)
        .map(|o| (o.device, o.holders.clone()))
        .collect();
    write_identities(&tx, &identity_rows(&written)?).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(outcomes)
}

impl Pg {
    /// Commit one batch of the record writer; what became of each changed device id.
    pub(crate) fn commit_batch(
        &self,
        events: &[StepEvent],
        dirty: Vec<DirtyIdentity>,
    ) -> Result<Vec<IdentityOutcome>, StoreError> {
        self.run(commit(self.pool(), events.to_vec(), dirty))
    }
}
