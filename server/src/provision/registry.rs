//! Issued identities: which identity certificate (and key) each device id holds, per owner.
//!
//! Three rules rest on it:
//! - a device id belongs to the manufacturer identity (the fingerprint of its manufacturer
//!   certificate, or of a TPM's EK) that first obtained it, until an operator releases it over
//!   the admin API: another identity asking for it is refused, and the refusal changes nothing;
//! - a device id cannot move to another key while its certificate is still valid (per owner),
//!   except by the device itself over an identity session (it proved possession of the current
//!   identity key, so rotating it is a renewal); a device that lost its answer asks again with the
//!   same key, as real clients (iotivity-lite keeps one key pair) do;
//! - a device presenting an identity certificate is recognised only if that certificate is the
//!   one issued last for its device id, and only while its enrollment's allow / deny lists still
//!   admit the name it attested with (kept here as [`IdentityHolder::name`]).
//!
//! The map lives in memory for the handshake hot path; it is filled from the store at start-up,
//! and every change is marked dirty so the record writer persists it with its next batch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrollment::CertId;

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo.
pub type SpkiHash = [u8; 32];

/// The identity certificate issued last to one device id for one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The name the enrollment's allow / deny lists judge: the manufacturer certificate's CN, or
    /// a TPM's registration id. Checked again whenever the device reconnects with the identity
    /// certificate, so revoking the name revokes the identity too. Empty when unknown.
    pub name: String,
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
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
            name: h.name.clone(),
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
                name: s.name,
            })
        })
        .collect()
}

/// Why a device id cannot be granted to a requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdHeld {
    /// The id belongs to another manufacturer identity (or TPM EK) until an operator releases it.
    #[error("is held by another manufacturer identity until an operator releases it")]
    ByAnotherIdentity,
    /// The id is held by another key (for this owner) until the given time.
    #[error("already has an identity certificate for another key, valid until {until}")]
    ByAnotherKey {
        /// When the other key's certificate expires.
        until: OffsetDateTime,
    },
}

/// The issued identities, shared by the provisioner (issuing), the TLS verifier (recognising
/// identity certificates) and the record writer (persisting changes).
#[derive(Debug, Default)]
pub struct Identities {
    by_device: RwLock<HashMap<Uuid, Vec<IdentityHolder>>>,
    dirty: Mutex<HashSet<Uuid>>,
    /// Per changed device id, its holders as last read from or written to the store: a shared
    /// store refuses a change when another replica changed them meanwhile.
    base: Mutex<HashMap<Uuid, Vec<IdentityHolder>>>,
    /// Whether `base` is kept: only a shared store's writer reads it ([`Identities::track_bases`]),
    /// so the embedded store's claims neither copy holders nor grow the map.
    tracks_bases: AtomicBool,
}

/// A device id changed here and not yet stored: its holders now, and as the store had them when
/// this server last saw it (`None`: unknown, write as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyIdentity {
    /// The device id.
    pub device: Uuid,
    /// Its holders here (empty: released).
    pub holders: Vec<IdentityHolder>,
    /// Its holders as the store had them before this server changed them.
    pub base: Option<Vec<IdentityHolder>>,
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
            base: Mutex::default(),
            tracks_bases: AtomicBool::new(false),
        }
    }

    /// Keep, per changed device id, its holders as the store had them: the writer of a shared
    /// store calls this before any change, to detect another replica's change meanwhile.
    pub fn track_bases(&self) {
        self.tracks_bases.store(true, Ordering::Relaxed);
    }

    /// Whether bases are kept ([`Identities::track_bases`]).
    pub fn tracks_bases(&self) -> bool {
        self.tracks_bases.load(Ordering::Relaxed)
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
            .cloned()
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

    /// Whether `owner` may get a certificate for `device` and the claim's key at `now`: refused
    /// when another manufacturer identity holds the id, and while a certificate for another key
    /// is still valid unless the claim is `renewing` (the session is the device itself,
    /// authenticated with its identity certificate).
    pub fn check(
        &self,
        owner: Uuid,
        device: &Uuid,
        request: &Claim<'_>,
        now: OffsetDateTime,
    ) -> Result<(), IdHeld> {
        let map = self
            .by_device
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        check_in(map.get(device).map(Vec::as_slice), owner, request, now)
    }

    /// Record `holder` as the certificate issued last to `device` for its owner, after checking
    /// the rule of [`Identities::check`] again (another session may have won meanwhile). A holder
    /// without a name takes the name of the one it replaces (a renewal over an identity session).
    pub fn grant(
        &self,
        device: Uuid,
        mut holder: IdentityHolder,
        now: OffsetDateTime,
        renewing: bool,
    ) -> Result<(), IdHeld> {
        {
            let mut map = self
                .by_device
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let holders = map.entry(device).or_default();
            let before = self.tracks_bases().then(|| holders.clone());
            let claim = Claim {
                record: holder.record,
                spki: &holder.spki,
                renewing,
            };
            let checked = check_in(Some(holders), holder.owner, &claim, now);
            if let Err(e) = checked {
                if holders.is_empty() {
                    map.remove(&device);
                }
                return Err(e);
            }
            if holder.name.is_empty() {
                if let Some(previous) = holders
                    .iter()
                    .find(|h| h.record.is_some() && h.record == holder.record)
                {
                    holder.name.clone_from(&previous.name);
                }
            }
            match holders.iter_mut().find(|h| h.owner == holder.owner) {
                Some(h) => *h = holder,
                None => holders.push(holder),
            }
            if let Some(before) = before {
                self.keep_base(device, before);
            }
            // Dirty before the lock is released, so a store update cannot overwrite it.
            self.mark_dirty([device]);
        }
        Ok(())
    }

    /// Release `device`: forget every holder, so any manufacturer identity may obtain the id again
    /// and its identity certificates are no longer recognised. Returns the holders it had (empty
    /// when it had none); the change is marked dirty for the record writer.
    pub fn release(&self, device: &Uuid) -> Vec<IdentityHolder> {
        let mut map = self
            .by_device
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let released = map.remove(device).unwrap_or_default();
        if !released.is_empty() {
            if self.tracks_bases() {
                self.keep_base(*device, released.clone());
            }
            self.mark_dirty([*device]);
        }
        released
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

    /// The dirty device ids with their holders and bases; they are clean afterwards (the bases
    /// stay until [`Identities::stored`]).
    pub fn take_dirty_with_base(&self) -> Vec<DirtyIdentity> {
        let dirty = self.take_dirty();
        let base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        dirty
            .into_iter()
            .map(|(device, holders)| DirtyIdentity {
                base: base.get(&device).cloned(),
                device,
                holders,
            })
            .collect()
    }

    /// These holders are now what the store has for `device`: the base of a later change.
    pub fn stored(&self, device: Uuid, holders: &[IdentityHolder]) {
        let dirty = self.is_dirty(&device);
        let mut base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        if dirty {
            base.insert(device, holders.to_vec());
        } else {
            base.remove(&device);
        }
    }

    /// Take the store's holders of `device` (a change another replica made, or the winner of a
    /// race this server lost), unless a change made here is still waiting to be stored.
    pub fn set_from_store(&self, device: Uuid, holders: Vec<IdentityHolder>) {
        let mut map = self
            .by_device
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_dirty(&device) {
            return;
        }
        self.base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&device);
        if holders.is_empty() {
            map.remove(&device);
        } else {
            map.insert(device, holders);
        }
    }

    /// Take every holder the store has (a full resync), keeping the changes made here that are
    /// still waiting to be stored.
    pub fn replace_from_store(&self, entries: Vec<(Uuid, Vec<IdentityHolder>)>) {
        let mut fresh: HashMap<Uuid, Vec<IdentityHolder>> = entries.into_iter().collect();
        let mut map = self
            .by_device
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        for device in dirty.iter() {
            match map.get(device) {
                Some(h) => fresh.insert(*device, h.clone()),
                None => fresh.remove(device),
            };
        }
        *map = fresh;
    }

    fn is_dirty(&self, device: &Uuid) -> bool {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(device)
    }

    fn keep_base(&self, device: Uuid, before: Vec<IdentityHolder>) {
        self.base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(device)
            .or_insert(before);
    }

    /// Mark device ids dirty again (their write failed).
    pub fn mark_dirty(&self, devices: impl IntoIterator<Item = Uuid>) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(devices);
    }
}

/// Who asks for a device id's certificate.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The requester's manufacturer identity (provisioning record key), when known.
    pub record: Option<CertId>,
    /// The key the certificate would certify.
    pub spki: &'a SpkiHash,
    /// The session is the device itself, authenticated with its identity certificate.
    pub renewing: bool,
}

/// The rule of [`Identities::check`] judged against `holders` (a shared store's, which another
/// replica may have changed): whether `owner` may take the claim's device id and key at `now`.
pub fn admits(
    holders: &[IdentityHolder],
    owner: Uuid,
    claim: &Claim<'_>,
    now: OffsetDateTime,
) -> Result<(), IdHeld> {
    check_in(Some(holders), owner, claim, now)
}

fn check_in(
    holders: Option<&[IdentityHolder]>,
    owner: Uuid,
    claim: &Claim<'_>,
    now: OffsetDateTime,
) -> Result<(), IdHeld> {
    let holders = holders.unwrap_or_default();
    if let Some(record) = claim.record {
        // The id is bound to the manufacturer identity that obtained it, whatever the owner or
        // the key, and whether or not its certificate is still valid.
        if holders
            .iter()
            .any(|h| h.record.is_some_and(|r| r != record))
        {
            return Err(IdHeld::ByAnotherIdentity);
        }
    }
    if claim.renewing {
        return Ok(());
    }
    match holders.iter().find(|h| h.owner == owner) {
        Some(held) if held.spki != *claim.spki && held.not_after > now => {
            Err(IdHeld::ByAnotherKey {
                until: held.not_after,
            })
        }
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
            record: None,
            certificate: CertId([spki; 32]),
            spki: [spki; 32],
            group: Uuid::nil(),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            not_after,
            name: String::new(),
        }
    }

    fn held_by(record: u8, owner: Uuid, spki: u8, not_after: OffsetDateTime) -> IdentityHolder {
        IdentityHolder {
            record: Some(CertId([record; 32])),
            name: format!("SN-{record}"),
            ..holder(owner, spki, not_after)
        }
    }

    fn claim(record: Option<u8>, spki: &SpkiHash) -> Claim<'_> {
        Claim {
            record: record.map(|r| CertId([r; 32])),
            spki,
            renewing: false,
        }
    }

    #[test]
    fn without_a_known_identity_another_key_is_refused_while_valid_then_granted() {
        let r = Identities::new();
        let (owner, dev) = (Uuid::new_v4(), Uuid::new_v4());
        let now = OffsetDateTime::now_utc();
        let until = now + Duration::days(1);
        assert!(r.grant(dev, holder(owner, 1, until), now, false).is_ok());
        assert_eq!(
            r.grant(dev, holder(owner, 2, until), now, false),
            Err(IdHeld::ByAnotherKey { until })
        );
        assert_eq!(
            r.check(owner, &dev, &claim(None, &[2; 32]), now),
            Err(IdHeld::ByAnotherKey { until })
        );
        // The device itself (identity session) may move to a new key.
        let renewing = Claim {
            renewing: true,
            ..claim(None, &[2; 32])
        };
        assert!(r.check(owner, &dev, &renewing, now).is_ok());
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
    fn a_device_id_belongs_to_the_identity_that_obtained_it_until_released() {
        let r = Identities::new();
        let (owner, dev) = (Uuid::new_v4(), Uuid::new_v4());
        let now = OffsetDateTime::now_utc();
        let until = now + Duration::days(1);
        assert!(r
            .grant(dev, held_by(1, owner, 10, until), now, false)
            .is_ok());
        // Another manufacturer identity, even with the very same key (a replayed CSR), another
        // owner, or after the certificate expired: refused, and the holder is untouched.
        for (record_owner, at) in [
            (owner, now),
            (Uuid::new_v4(), now),
            (owner, until + Duration::days(1)),
        ] {
            assert_eq!(
                r.grant(dev, held_by(2, record_owner, 10, until), at, false),
                Err(IdHeld::ByAnotherIdentity)
            );
            assert_eq!(
                r.check(record_owner, &dev, &claim(Some(2), &[10; 32]), at),
                Err(IdHeld::ByAnotherIdentity)
            );
        }
        assert_eq!(r.holders(&dev), vec![held_by(1, owner, 10, until)]);
        // Its own manufacturer identity: the same key again, but not another one while valid ...
        assert!(r
            .grant(dev, held_by(1, owner, 10, until), now, false)
            .is_ok());
        assert_eq!(
            r.grant(dev, held_by(1, owner, 11, until), now, false),
            Err(IdHeld::ByAnotherKey { until })
        );
        // ... except over its identity session; a nameless renewal keeps the attested name.
        let mut renewal = held_by(1, owner, 11, until);
        renewal.name.clear();
        assert!(r.grant(dev, renewal, now, true).is_ok());
        assert_eq!(r.holders(&dev)[0].name, "SN-1");
        assert!(r.find(&dev, &CertId([10; 32])).is_none(), "superseded");
        // Released by an operator: the id is free for another identity.
        assert_eq!(r.release(&dev).len(), 1);
        assert!(r.release(&dev).is_empty());
        assert!(r.find(&dev, &CertId([11; 32])).is_none());
        assert!(r
            .grant(dev, held_by(2, owner, 12, until), now, false)
            .is_ok());
        assert!(r.take_dirty().iter().any(|(d, _)| *d == dev));
        // A refused id that had no holder leaves no entry behind.
        let fresh = Uuid::new_v4();
        assert!(r
            .grant(fresh, held_by(3, owner, 13, until), now, false)
            .is_ok());
        assert_eq!(r.release(&fresh).len(), 1);
        assert!(r.holders(&fresh).is_empty());
    }

    #[test]
    fn dirty_ids_are_taken_once_and_holders_round_trip_through_json() {
        let r = Identities::new();
        let dev = Uuid::new_v4();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        let h = held_by(4, Uuid::new_v4(), 4, now + Duration::days(1));
        assert!(r.grant(dev, h.clone(), now, false).is_ok());
        let dirty = r.take_dirty();
        assert_eq!(dirty, vec![(dev, vec![h.clone()])]);
        assert!(r.take_dirty().is_empty());
        let json = holders_to_json(&dirty[0].1).expect("json");
        assert_eq!(holders_from_json(&json).expect("decode"), vec![h.clone()]);
        assert!(holders_from_json("[{\"owner\": 1}]").is_err());
        // Holders stored before names were kept decode with an empty name.
        let mut nameless = h.clone();
        nameless.name.clear();
        let old = holders_to_json(std::slice::from_ref(&nameless)).expect("json");
        assert!(!old.contains("name"));
        assert_eq!(holders_from_json(&old).expect("decode"), vec![nameless]);
        let loaded = Identities::from_entries(dirty);
        assert_eq!(loaded.find(&dev, &h.certificate), Some(h));
        assert!(loaded.take_dirty().is_empty());
    }

    #[test]
    fn bases_are_kept_only_for_a_shared_store() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        let until = now + Duration::days(1);
        let embedded = Identities::new();
        let dev = Uuid::new_v4();
        assert!(embedded
            .grant(dev, held_by(5, Uuid::new_v4(), 5, until), now, false)
            .is_ok());
        let dirty = embedded.take_dirty_with_base();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].base, None, "the embedded store keeps no base");

        let shared = Identities::new();
        shared.track_bases();
        assert!(shared
            .grant(dev, held_by(6, Uuid::new_v4(), 6, until), now, false)
            .is_ok());
        let dirty = shared.take_dirty_with_base();
        assert_eq!(
            dirty[0].base,
            Some(Vec::new()),
            "the store had no holder before"
        );
    }
}
