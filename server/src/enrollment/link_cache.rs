//! The verified-link cache: "presented CA certificate A (exact DER) was validly signed by B", for
//! links among CA certificates only, learnt from full path validations.
//!
//! Most devices of a group present the same intermediates, so after the first device the
//! signature over each shared intermediate need not be checked again. What the cache records is
//! only what a successful webpki path build established and what cannot change while the
//! snapshot stands: the signature, that A is a CA usable for the purpose (cA, keyCertSign, EKU),
//! and who signed it. Everything that can change is still checked on every use: validity at now,
//! pathLenConstraint against the path below, presence of every presented link (a gap still
//! fails). The device leaf and its proof of possession are never cached. A chain under a CA with
//! name constraints is never cached (they constrain the leaf, which webpki must then see whole).
//!
//! One cache belongs to one arena snapshot: a publish starts an empty one, so a removed group
//! can never be reached through a remembered link. Size is bounded per shard; a full shard is
//! cleared (entries are cheap to relearn).
//!
//! Beside the links, the cache memoises what is a pure function of a certificate's exact DER for
//! the certificates met on every handshake of a group (configured certificates sent along, and
//! presented CA certificates whose link was cached): their identity (SHA-256) and trust anchor.
//! It holds copies of those DERs, bounded per shard like the links; an entry is returned only
//! for byte-identical DER, so a warm handshake sees exactly the values a cold one computes.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls_pki_types::{CertificateDer, TrustAnchor};

use super::cert::CertId;

/// Who signed a cached presented CA certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// A configured certificate of the snapshot (the end of the presented part of the path).
    Configured(CertId),
    /// Another presented CA certificate (which must be presented again, and cached, to be used).
    Presented(CertId),
}

/// What is static about a presented CA certificate (same DER, same facts): kept with its link so
/// a cached certificate is not parsed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaFacts {
    /// basicConstraints cA.
    pub is_ca: bool,
    /// pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage present without keyCertSign.
    pub lacks_cert_sign: bool,
    /// Validity window, seconds since the epoch.
    pub not_before: u64,
    /// Validity window, seconds since the epoch.
    pub not_after: u64,
}

/// A cached link: who signed the certificate, and its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The verified signer.
    pub parent: Parent,
    /// The certificate's static facts.
    pub facts: CaFacts,
}

/// What the cached link was validated for: the EKU check on intermediates depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    /// TLS client authentication.
    Tls,
    /// TPM EK certificates.
    Ek,
}

const SHARDS: usize = 16;

/// Entries per shard (so at most 16 × 4,096 links, a few MiB).
const SHARD_CAPACITY: usize = 4096;

/// Bytes at the end of a certificate (its signature) that key the known-certificate memo.
const KNOWN_TAIL: usize = 64;

/// What is derived from a known certificate's exact DER alone (pure functions of the bytes, so
/// the memo can never be stale): its identity and its webpki trust anchor.
#[derive(Debug, Clone)]
pub struct Known {
    /// SHA-256 of the DER, exactly [`CertId::of`].
    pub id: CertId,
    /// `webpki::anchor_from_trusted_cert` of the DER, when it was computed and succeeded.
    pub anchor: Option<Arc<TrustAnchor<'static>>>,
}

/// Memo of [`Known`] by exact DER, for the certificates the server meets on every handshake of a
/// group: configured certificates sent along, and presented CA certificates with a cached link.
/// Only those are ever entered (never an arbitrary presented certificate), so its size is bounded
/// like the links. A lookup hashes the last [`KNOWN_TAIL`] bytes (the signature) under a secret
/// key and then compares the whole DER, so an entry is only ever returned for the same bytes.
struct KnownCerts {
    keys: RandomState,
    shards: [Mutex<KnownShard>; SHARDS],
}

/// Entries by keyed hash of the tail; each bucket holds the exact DER of every entry in it.
type KnownShard = HashMap<u64, Vec<(Box<[u8]>, Known)>>;

impl KnownCerts {
    fn slot(&self, der: &[u8]) -> (u64, &Mutex<KnownShard>) {
        let tail = der
            .get(der.len().saturating_sub(KNOWN_TAIL)..)
            .unwrap_or(der);
        let h = self.keys.hash_one((der.len(), tail));
        // `h % SHARDS < SHARDS` by construction.
        (h, &self.shards[(h % SHARDS as u64) as usize])
    }

    fn get(&self, der: &[u8]) -> Option<Known> {
        let (h, shard) = self.slot(der);
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard
            .get(&h)?
            .iter()
            .find(|(d, _)| **d == *der)
            .map(|(_, k)| k.clone())
    }

    fn learn(&self, der: &[u8], known: Known) {
        let (h, shard) = self.slot(der);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= SHARD_CAPACITY && !shard.contains_key(&h) {
            shard.clear();
        }
        let bucket = shard.entry(h).or_default();
        match bucket.iter_mut().find(|(d, _)| **d == *der) {
            Some((_, k)) => {
                if k.anchor.is_none() {
                    k.anchor = known.anchor;
                }
            }
            None => bucket.push((der.into(), known)),
        }
    }
}

/// Bounded, sharded map of verified links; see the module documentation.
pub struct LinkCache {
    shards: [Mutex<HashMap<(CertId, LinkPurpose), Link>>; SHARDS],
    known: KnownCerts,
    hits: AtomicU64,
}

impl Default for LinkCache {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            known: KnownCerts {
                keys: RandomState::new(),
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            },
            hits: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LinkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl LinkCache {
    fn shard(&self, id: &CertId) -> &Mutex<HashMap<(CertId, LinkPurpose), Link>> {
        let i = usize::from(id.0[0]) % SHARDS;
        // `i < SHARDS` by construction.
        &self.shards[i]
    }

    /// The verified link of `child` for `purpose`, if known.
    pub fn get(&self, child: &CertId, purpose: LinkPurpose) -> Option<Link> {
        let shard = self.shard(child).lock().unwrap_or_else(|p| p.into_inner());
        shard.get(&(*child, purpose)).copied()
    }

    /// Remember that `child` was verified as signed by `parent` for `purpose`.
    pub fn remember(&self, child: CertId, purpose: LinkPurpose, link: Link) {
        let mut shard = self.shard(&child).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= SHARD_CAPACITY && !shard.contains_key(&(child, purpose)) {
            shard.clear();
        }
        shard.insert((child, purpose), link);
    }

    /// The identity (and anchor, if known) of a certificate met before, by its exact DER; `None`
    /// for any other certificate. Saves hashing (and parsing) it again on every handshake.
    pub fn known(&self, der: &[u8]) -> Option<Known> {
        self.known.get(der)
    }

    /// Remember the identity of a configured certificate that was sent along (`der` must be the
    /// bytes `id` was computed from).
    pub fn learn_configured(&self, der: &[u8], id: CertId) {
        debug_assert_eq!(CertId::of(der), id);
        self.known.learn(der, Known { id, anchor: None });
    }

    /// Remember the identity and trust anchor of a presented CA certificate whose link was
    /// cached (`der` must be the bytes `id` was computed from).
    pub fn learn_presented(&self, der: &[u8], id: CertId) {
        debug_assert_eq!(CertId::of(der), id);
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der))
            .ok()
            .map(|a| Arc::new(a.to_owned()));
        self.known.learn(der, Known { id, anchor });
    }

    /// Count a path that was completed through cached links.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Paths completed through cached links so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Links held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> CertId {
        let mut b = [0u8; 32];
        b[..2].copy_from_slice(&n.to_be_bytes());
        b[2] = 7;
        CertId(b)
    }

    fn link(parent: Parent) -> Link {
        Link {
            parent,
            facts: CaFacts {
                is_ca: true,
                path_len: None,
                lacks_cert_sign: false,
                not_before: 0,
                not_after: u64::MAX,
            },
        }
    }

    #[test]
    fn remembers_per_purpose_and_stays_bounded() {
        let cache = LinkCache::default();
        cache.remember(id(1), LinkPurpose::Tls, link(Parent::Configured(id(2))));
        assert_eq!(
            cache.get(&id(1), LinkPurpose::Tls).map(|l| l.parent),
            Some(Parent::Configured(id(2)))
        );
        assert_eq!(cache.get(&id(1), LinkPurpose::Ek), None);
        // Flood one shard (same first byte): it never holds more than its capacity.
        for n in 0..(SHARD_CAPACITY as u16 * 2) {
            let mut b = [0u8; 32];
            b[1..3].copy_from_slice(&n.to_be_bytes());
            cache.remember(CertId(b), LinkPurpose::Tls, link(Parent::Presented(id(3))));
        }
        assert!(cache.len() <= SHARD_CAPACITY * 2, "{}", cache.len());
    }

    #[test]
    fn knows_certificates_only_by_their_exact_bytes() {
        let cache = LinkCache::default();
        let der = vec![7u8; 300];
        let mut other = der.clone();
        other[0] = 8; // same tail, other bytes
        assert!(cache.known(&der).is_none());
        cache.learn_configured(&der, CertId::of(&der));
        let k = cache.known(&der).map(|k| k.id);
        assert_eq!(k, Some(CertId::of(&der)));
        assert!(cache.known(&other).is_none());
        cache.learn_configured(&other, CertId::of(&other));
        assert_eq!(cache.known(&other).map(|k| k.id), Some(CertId::of(&other)));
        assert_eq!(cache.known(&der).map(|k| k.id), Some(CertId::of(&der)));
        assert!(cache.known(&der[..299]).is_none());
    }
}
