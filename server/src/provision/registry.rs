//! Which key each device identity currently holds, so that a device id cannot be taken over by
//! another key while its identity certificate is still valid.
//!
//! In memory for now; the type is private so that moving it to the persistent store only
//! touches this file.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;
use uuid::Uuid;

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo.
pub(super) type SpkiHash = [u8; 32];

/// (owner UUID, device UUID).
type Identity = (Uuid, Uuid);

/// The key and expiry of the last certificate issued for one identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holder {
    spki: SpkiHash,
    not_after: OffsetDateTime,
}

/// The identity is held by another key until the given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeldByAnotherKey {
    /// When the other key's certificate expires.
    pub(super) until: OffsetDateTime,
}

/// A granted claim; hand it back to [`IssuedRegistry::release`] if the certificate is not issued.
#[derive(Debug)]
#[must_use = "release the claim if the certificate is not issued"]
pub(super) struct Claim {
    identity: Identity,
    granted: Holder,
    previous: Option<Holder>,
}

/// The registry of issued identities, shared by all connections.
#[derive(Debug, Default)]
pub(super) struct IssuedRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    holders: HashMap<Identity, Holder>,
    /// Size at which expired entries are next swept (amortized O(1) per insert).
    sweep_at: usize,
}

/// Smallest map size worth sweeping.
const MIN_SWEEP: usize = 1024;

impl IssuedRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `device` of `owner` gets a certificate for the key `spki` valid until
    /// `not_after`, unless a certificate for another key is still valid at `now`. Re-issuing to
    /// the same key (renewal) is granted.
    pub(super) fn claim(
        &self,
        owner: Uuid,
        device: Uuid,
        spki: SpkiHash,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Claim, HeldByAnotherKey> {
        let identity = (owner, device);
        let granted = Holder { spki, not_after };
        let mut inner = self.lock();
        let previous = inner.holders.get(&identity).copied();
        if let Some(held) = previous {
            if held.spki != spki && held.not_after > now {
                return Err(HeldByAnotherKey {
                    until: held.not_after,
                });
            }
        }
        inner.holders.insert(identity, granted);
        if inner.holders.len() >= inner.sweep_at.max(MIN_SWEEP) {
            inner.holders.retain(|_, h| h.not_after > now);
            inner.sweep_at = inner.holders.len().saturating_mul(2);
        }
        Ok(Claim {
            identity,
            granted,
            previous,
        })
    }

    /// Undoes a claim whose certificate was not issued, unless a later claim replaced it.
    pub(super) fn release(&self, claim: Claim) {
        let mut inner = self.lock();
        if inner.holders.get(&claim.identity) != Some(&claim.granted) {
            return;
        }
        match claim.previous {
            Some(previous) => inner.holders.insert(claim.identity, previous),
            None => inner.holders.remove(&claim.identity),
        };
    }

    /// Number of identities recorded (expired ones may linger until the next sweep).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().holders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn ids() -> (Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn another_key_is_refused_while_valid_then_granted() {
        let r = IssuedRegistry::default();
        let (owner, dev) = ids();
        let now = OffsetDateTime::now_utc();
        let until = now + Duration::days(1);
        let claim = r.claim(owner, dev, [1; 32], until, now);
        assert!(claim.is_ok());
        assert_eq!(
            r.claim(owner, dev, [2; 32], until, now).err(),
            Some(HeldByAnotherKey { until })
        );
        // Renewal to the same key.
        assert!(r.claim(owner, dev, [1; 32], until, now).is_ok());
        // Another owner, same device id.
        assert!(r.claim(Uuid::new_v4(), dev, [2; 32], until, now).is_ok());
        // Once the first certificate expired, a new key may take the id.
        let later = until + Duration::seconds(1);
        assert!(r
            .claim(owner, dev, [2; 32], later + Duration::days(1), later)
            .is_ok());
    }

    #[test]
    fn release_restores_the_previous_holder() {
        let r = IssuedRegistry::default();
        let (owner, dev) = ids();
        let now = OffsetDateTime::now_utc();
        let first = now + Duration::days(1);
        let _kept = r.claim(owner, dev, [1; 32], first, now);
        let renewal = r.claim(owner, dev, [1; 32], first + Duration::days(1), now);
        let Ok(renewal) = renewal else {
            panic!("renewal refused")
        };
        r.release(renewal);
        // The first holder is back: a second key is still refused until `first`.
        assert_eq!(
            r.claim(owner, dev, [2; 32], first, now).err(),
            Some(HeldByAnotherKey { until: first })
        );
        let (o2, d2) = ids();
        let Ok(fresh) = r.claim(o2, d2, [3; 32], first, now) else {
            panic!("fresh claim refused")
        };
        r.release(fresh);
        assert!(r.claim(o2, d2, [4; 32], first, now).is_ok());
    }

    #[test]
    fn expired_entries_are_swept() {
        let r = IssuedRegistry::default();
        let now = OffsetDateTime::now_utc();
        let short = now + Duration::seconds(10);
        for _ in 0..MIN_SWEEP - 1 {
            let (o, d) = ids();
            let _ = r.claim(o, d, [0; 32], short, now);
        }
        assert_eq!(r.len(), MIN_SWEEP - 1);
        let later = short + Duration::seconds(1);
        let (o, d) = ids();
        let _ = r.claim(o, d, [0; 32], later + Duration::days(1), later);
        assert_eq!(r.len(), 1);
    }
}
