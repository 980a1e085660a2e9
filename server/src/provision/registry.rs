//! Issued identities: which identity certificate (and key) each device id holds, per owner.
//!
//! Two rules rest on it: a device id cannot be taken over by another key while its identity
//! certificate is still valid (for the same owner), and a device presenting an identity
//! certificate is recognised only if that certificate is the one issued last for its device id.
//! The map lives in memory for the handshake hot path; it is filled from the store at start-up,
//! and every change is marked dirty so the record writer persists it with its next batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrollment::CertId;

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo.
pub type SpkiHash = [u8; 32];

/// The identity certificate issued last to one device id for one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityHolder {
    /// The owner UUID of the group it was issued under.
    pub owner: Uuid,
    /// The device's provisioning record (fingerprint of its manufacturer certificate), when the
    /// certificate was issued over a server session.
    pub record: Option<CertId>,
    /// Fingerprint of the identity certificate.
    pub certificate: CertId,
    /// SHA-256 of the certified key's SubjectPublicKeyInfo.
    pub spki: SpkiHash,
    /// The enrollment group the device was in when it was issued.
    pub group: Uuid,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// Its expiry.
    pub not_after: OffsetDateTime,
}

/// The stored (JSON) form of an [`IdentityHolder`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredHolder {
    owner: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    certificate: String,
    spki: String,
    group: Uuid,
    issued_at: i64,
    not_after: i64,
}

/// Encode the holders of one device id as JSON.
pub fn holders_to_json(holders: &[IdentityHolder]) -> Result<String, String> {
    let stored: Vec<StoredHolder> = holders
        .iter()
        .map(|h| StoredHolder {
            owner: h.owner,
            record: h.record.map(|r| r.to_string()),
            certificate: h.certificate.to_string(),
            spki: hex::encode(h.spki),
            group: h.group,
            issued_at: h.issued_at.unix_timestamp(),
            not_after: h.not_after.unix_timestamp(),
        })
        .collect();
    serde_json::to_string(&stored).map_err(|e| e.to_string())
}

/// Decode the holders of one device id from JSON.
pub fn holders_from_json(text: &str) -> Result<Vec<IdentityHolder>, String> {
    let stored: Vec<StoredHolder> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let time = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|e| e.to_string());
    stored
        .into_iter()
        .map(|s| {
            let record = match s.record {
                Some(r) => Some(CertId::parse(&r).ok_or("record is not sha256:<hex>")?),
                None => None,
            };
            let spki: SpkiHash = hex::decode(&s.spki)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("spki is not 32 bytes of hex")?;
            Ok(IdentityHolder {
                owner: s.owner,
                record,
                certificate: CertId::parse(&s.certificate)
                    .ok_or("certificate is not sha256:<hex>")?,
                spki,
                group: s.group,
                issued_at: time(s.issued_at)?,
                not_after: time(s.not_after)?,
            })
        })
        .collect()
}

/// The device id is held by another key (for this owner) until the given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldByAnotherKey {
    /// When the other key's certificate expires.
    pub until: OffsetDateTime,
}

/// The issued identities, shared by the provisioner (issuing), the TLS verifier (recognising
/// identity certificates) and the record writer (persisting changes).
#[derive(Debug, Default)]
pub struct Identities {
    by_device: RwLock<HashMap<Uuid, Vec<IdentityHolder>>>,
    dirty: Mutex<HashSet<Uuid>>,
}

impl Identities {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map filled with stored holders (nothing dirty).
    pub fn from_entries(entries: impl IntoIterator<Item = (Uuid, Vec<IdentityHolder>)>) -> Self {
        Self {
            by_device: RwLock::new(entries.into_iter().collect()),
            dirty: Mutex::default(),
        }
    }

    /// The holder of `device` whose identity certificate is `certificate`, if that certificate is
    /// the one issued last for the device id under its owner.
    pub fn find(&self, device: &Uuid, certificate: &CertId) -> Option<IdentityHolder> {
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(device)?
            .iter()
            .find(|h| h.certificate == *certificate)
            .copied()
    }

    /// Every holder of `device` (one per owner).
    pub fn holders(&self, device: &Uuid) -> Vec<IdentityHolder> {
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(device).cloned().unwrap_or_default()
    }

    /// Number of holders.
    pub fn len(&self) -> usize {
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.values().map(Vec::len).sum()
    }

    /// No holder at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `owner` may get a certificate for `device` and the key `spki` at `now`: refused
    /// while a certificate for another key is still valid, unless `renewing` (the session is the
    /// device itself, authenticated with its identity certificate).
    pub fn check(
        &self,
        owner: Uuid,
        device: &Uuid,
        spki: &SpkiHash,
        now: OffsetDateTime,
        renewing: bool,
    ) -> Result<(), HeldByAnotherKey> {
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        check_in(
            map.get(device).map(Vec::as_slice),
            owner,
            spki,
            now,
            renewing,
        )
    }

    /// Record `holder` as the certificate issued last to `device` for its owner, after checking
    /// the rule of [`Identities::check`] again (another session may have won meanwhile).
    pub fn grant(
        &self,
        device: Uuid,
        holder: IdentityHolder,
        now: OffsetDateTime,
        renewing: bool,
    ) -> Result<(), HeldByAnotherKey> {
        {
            let mut map = self
                .by_device
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let holders = map.entry(device).or_default();
            check_in(Some(holders), holder.owner, &holder.spki, now, renewing)?;
            match holders.iter_mut().find(|h| h.owner == holder.owner) {
                Some(h) => *h = holder,
                None => holders.push(holder),
            }
        }
        self.mark_dirty([device]);
        Ok(())
    }

    /// The dirty device ids with their current holders; they are clean afterwards.
    pub fn take_dirty(&self) -> Vec<(Uuid, Vec<IdentityHolder>)> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        if dirty.is_empty() {
            return Vec::new();
        }
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        dirty
            .into_iter()
            .map(|d| (d, map.get(&d).cloned().unwrap_or_default()))
            .collect()
    }

    /// Mark device ids dirty again (their write failed).
    pub fn mark_dirty(&self, devices: impl IntoIterator<Item = Uuid>) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(devices);
    }
}

fn check_in(
    holders: Option<&[IdentityHolder]>,
    owner: Uuid,
    spki: &SpkiHash,
    now: OffsetDateTime,
    renewing: bool,
) -> Result<(), HeldByAnotherKey> {
    if renewing {
        return Ok(());
    }
    match holders.and_then(|hs| hs.iter().find(|h| h.owner == owner)) {
        Some(held) if held.spki != *spki && held.not_after > now => Err(HeldByAnotherKey {
            until: held.not_after,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn holder(owner: Uuid, spki: u8, not_after: OffsetDateTime) -> IdentityHolder {
        IdentityHolder {
            owner,
            record: Some(CertId([9; 32])),
            certificate: CertId([spki; 32]),
            spki: [spki; 32],
            group: Uuid::nil(),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            not_after,
        }
    }

    #[test]
    fn another_key_is_refused_while_valid_then_granted() {
        let r = Identities::new();
        let (owner, dev) = (Uuid::new_v4(), Uuid::new_v4());
        let now = OffsetDateTime::now_utc();
        let until = now + Duration::days(1);
        assert!(r.grant(dev, holder(owner, 1, until), now, false).is_ok());
        assert_eq!(
            r.grant(dev, holder(owner, 2, until), now, false),
            Err(HeldByAnotherKey { until })
        );
        assert_eq!(
            r.check(owner, &dev, &[2; 32], now, false),
            Err(HeldByAnotherKey { until })
        );
        // The device itself (identity session) may move to a new key.
        assert!(r.check(owner, &dev, &[2; 32], now, true).is_ok());
        // Renewal to the same key.
        assert!(r.grant(dev, holder(owner, 1, until), now, false).is_ok());
        // Another owner, same device id: both are held.
        assert!(r
            .grant(dev, holder(Uuid::new_v4(), 2, until), now, false)
            .is_ok());
        assert_eq!(r.len(), 2);
        // Once the first certificate expired, a new key may take the id.
        let later = until + Duration::seconds(1);
        assert!(r
            .grant(
                dev,
                holder(owner, 3, later + Duration::days(1)),
                later,
                false
            )
            .is_ok());
        assert!(r.find(&dev, &CertId([3; 32])).is_some());
        assert!(r.find(&dev, &CertId([1; 32])).is_none(), "superseded");
    }

    #[test]
    fn dirty_ids_are_taken_once_and_holders_round_trip_through_json() {
        let r = Identities::new();
        let dev = Uuid::new_v4();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        let h = holder(Uuid::new_v4(), 4, now + Duration::days(1));
        assert!(r.grant(dev, h, now, false).is_ok());
        let dirty = r.take_dirty();
        assert_eq!(dirty, vec![(dev, vec![h])]);
        assert!(r.take_dirty().is_empty());
        let json = holders_to_json(&dirty[0].1).expect("json");
        assert_eq!(holders_from_json(&json).expect("decode"), vec![h]);
        assert!(holders_from_json("[{\"owner\": 1}]").is_err());
        let loaded = Identities::from_entries(dirty);
        assert_eq!(loaded.find(&dev, &h.certificate), Some(h));
        assert!(loaded.take_dirty().is_empty());
    }
}
