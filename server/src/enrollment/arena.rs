//! The lock-free arena: every enrollment group and the indexes a handshake needs, published as one
//! immutable snapshot. A handshake loads one snapshot and never waits; the admin builds the next
//! snapshot beside it (persistent maps share structure, so one update costs O(log n), not O(n)) and
//! swaps it in atomically.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use uuid::Uuid;

use super::cert::{CertId, TrustedCert};
use super::group::{
    validate, EnrollmentGroup, GroupError, GroupErrorKind, LinkMemo, ValidatedGroup,
};
use super::link_cache::LinkCache;

/// One configured CA certificate in the arena and how many groups configure it.
#[derive(Debug, Clone)]
pub(crate) struct CertSlot {
    pub(crate) cert: Arc<TrustedCert>,
    /// Its issuer in the configured chains (`None` for a root).
    pub(crate) parent: Option<CertId>,
    refs: u32,
}

/// An immutable view of all groups and their indexes. Cheap to clone (structure is shared).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    generation: u64,
    pub(crate) groups: imbl::HashMap<Uuid, Arc<ValidatedGroup>>,
    /// Certificate identity → configured certificate.
    pub(crate) certs: imbl::HashMap<CertId, CertSlot>,
    /// Subject DN (raw DER) → configured certificates with that subject: the candidate issuers.
    pub(crate) by_subject: imbl::HashMap<Arc<[u8]>, Arc<[CertId]>>,
    /// Lead certificate → its group.
    pub(crate) leads: imbl::HashMap<CertId, Uuid>,
    /// Links among presented CA certificates verified under this snapshot (empty in a new one).
    pub(crate) links: Arc<LinkCache>,
}

impl Snapshot {
    /// Increases with every publish; caches keyed on the arena check it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// No groups at all.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// A group by id.
    pub fn group(&self, id: &Uuid) -> Option<&Arc<ValidatedGroup>> {
        self.groups.get(id)
    }

    /// Every group (unordered).
    pub fn groups(&self) -> impl Iterator<Item = &Arc<ValidatedGroup>> {
        self.groups.values()
    }

    /// Links held by the verified-link cache of this snapshot.
    pub fn cached_links(&self) -> usize {
        self.links.len()
    }

    /// Handshakes whose path this snapshot completed through cached links.
    pub fn link_cache_hits(&self) -> u64 {
        self.links.hits()
    }

    /// Was `child` already verified as signed by `parent` (or as a self-signed root when `parent`
    /// is `None`) when some published group was created?
    pub fn link_known(&self, child: CertId, parent: Option<CertId>) -> bool {
        self.certs.get(&child).is_some_and(|s| s.parent == parent)
    }

    /// Add a validated group, replacing a group with the same id. On error nothing changed.
    fn insert(&mut self, g: Arc<ValidatedGroup>) -> Result<(), GroupErrorKind> {
        if self.groups.contains_key(&g.def.id) {
            let mut next = self.clone();
            next.remove(&g.def.id);
            next.insert_new(g)?;
            *self = next;
            return Ok(());
        }
        self.insert_new(g)
    }

    /// Add a group whose id is not in the snapshot: all checks first, then the mutation.
    fn insert_new(&mut self, g: Arc<ValidatedGroup>) -> Result<(), GroupErrorKind> {
        let lead = g.lead();
        if let Some(other) = self.leads.get(&lead) {
            return Err(GroupErrorKind::DuplicateLead {
                lead,
                other: *other,
            });
        }
        for (i, cert) in g.certs.iter().enumerate() {
            let parent = g.parent_of(i);
            if let Some(slot) = self.certs.get(&cert.id) {
                if slot.parent != parent {
                    let cn = |id: Option<CertId>| match id {
                        None => "itself (root)".to_owned(),
                        Some(id) => self
                            .certs
                            .get(&id)
                            .and_then(|s| s.cert.common_name.clone())
                            .or_else(|| g.certs.get(i + 1).and_then(|c| c.common_name.clone()))
                            .unwrap_or_else(|| id.to_string()),
                    };
                    return Err(GroupErrorKind::ConflictingIssuer {
                        cert: cert.id,
                        name: cert.common_name.clone().unwrap_or_default(),
                        here: cn(parent),
                        there: cn(slot.parent),
                    });
                }
            }
        }
        for (i, cert) in g.certs.iter().enumerate() {
            self.add_cert(cert, g.parent_of(i));
        }
        self.leads.insert(lead, g.def.id);
        self.groups.insert(g.def.id, g);
        Ok(())
    }

    fn add_cert(&mut self, cert: &Arc<TrustedCert>, parent: Option<CertId>) {
        if let Some(slot) = self.certs.get_mut(&cert.id) {
            slot.refs += 1;
            return;
        }
        self.certs.insert(
            cert.id,
            CertSlot {
                cert: cert.clone(),
                parent,
                refs: 1,
            },
        );
        let key: Arc<[u8]> = cert.subject.as_ref().into();
        let ids: Arc<[CertId]> = match self.by_subject.get(&key) {
            Some(ids) => ids.iter().copied().chain([cert.id]).collect(),
            None => Arc::new([cert.id]),
        };
        self.by_subject.insert(key, ids);
    }

    fn drop_cert(&mut self, id: CertId) {
        let Some(slot) = self.certs.get_mut(&id) else {
            return;
        };
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let subject: Arc<[u8]> = slot.cert.subject.as_ref().into();
        self.certs.remove(&id);
        if let Some(ids) = self.by_subject.get(&subject) {
            let rest: Arc<[CertId]> = ids.iter().copied().filter(|c| *c != id).collect();
            if rest.is_empty() {
                self.by_subject.remove(&subject);
            } else {
                self.by_subject.insert(subject, rest);
            }
        }
    }

    /// Remove a group; returns it if it was there.
    fn remove(&mut self, id: &Uuid) -> Option<Arc<ValidatedGroup>> {
        let g = self.groups.remove(id)?;
        self.leads.remove(&g.lead());
        for cert in &g.certs {
            self.drop_cert(cert.id);
        }
        Some(g)
    }
}

/// Links verified and certificates parsed during one load, shared by the validating threads.
#[derive(Default)]
struct BatchMemo<'a> {
    published: Option<&'a Snapshot>,
    verified: Mutex<HashSet<(CertId, Option<CertId>)>>,
    parsed: Mutex<HashMap<CertId, Arc<TrustedCert>>>,
}

impl<'a> BatchMemo<'a> {
    fn over(published: &'a Snapshot) -> Self {
        Self {
            published: Some(published),
            ..Self::default()
        }
    }
}

impl LinkMemo for BatchMemo<'_> {
    fn known(&self, child: CertId, parent: Option<CertId>) -> bool {
        self.published.is_some_and(|p| p.link_known(child, parent))
            || self
                .verified
                .lock()
                .map(|s| s.contains(&(child, parent)))
                .unwrap_or(false)
    }
    fn verified(&self, child: CertId, parent: Option<CertId>) {
        if let Ok(mut s) = self.verified.lock() {
            s.insert((child, parent));
        }
    }
    fn parsed(&self, id: CertId) -> Option<Arc<TrustedCert>> {
        if let Some(slot) = self.published.and_then(|p| p.certs.get(&id)) {
            return Some(slot.cert.clone());
        }
        self.parsed.lock().ok()?.get(&id).cloned()
    }
    fn remember(&self, cert: &Arc<TrustedCert>) {
        if let Ok(mut m) = self.parsed.lock() {
            m.insert(cert.id, cert.clone());
        }
    }
}

/// The published set of enrollment groups. Readers call [`Arena::load`]; writers are serialized
/// among themselves but never block readers.
#[derive(Debug, Default)]
pub struct Arena {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
}

impl Arena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// An arena holding `groups`, all validated; the first invalid group is reported.
    pub fn with_groups(groups: Vec<EnrollmentGroup>) -> Result<Self, GroupError> {
        let arena = Self::new();
        arena.replace_all(groups)?;
        Ok(arena)
    }

    /// The current snapshot, for one handshake. Wait-free; hold it only for the handshake.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for holders that outlive a handshake.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        // A writer that panicked left no partial state (snapshots are built aside), so a poisoned
        // lock is safe to take over.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, mut next: Snapshot, prev: &Snapshot) {
        next.generation = prev.generation + 1;
        // Links learnt under the old snapshot may lead to groups or certificates this one lacks.
        next.links = Arc::new(LinkCache::default());
        self.current.store(Arc::new(next));
    }

    /// Insert a group, or replace the group with the same id. Validation (signature checks) runs
    /// before the writer lock is taken.
    pub fn upsert(&self, def: EnrollmentGroup) -> Result<(), GroupError> {
        let published = self.load();
        let memo = BatchMemo::over(&published);
        let g = Arc::new(validate(def, &memo)?);
        let _w = self.lock_writer();
        let prev = self.current.load_full();
        let mut next = (*prev).clone();
        next.insert(g.clone())
            .map_err(|kind| GroupError::new(&g.def, kind))?;
        self.publish(next, &prev);
        Ok(())
    }

    /// Delete a group; `false` if there was none with this id.
    pub fn remove(&self, id: &Uuid) -> bool {
        let _w = self.lock_writer();
        let prev = self.current.load_full();
        let mut next = (*prev).clone();
        if next.remove(id).is_none() {
            return false;
        }
        self.publish(next, &prev);
        true
    }

    /// Replace every group at once (config reload, bulk load). Validation runs on all cores; each
    /// distinct CA link is verified once. All or nothing: on error the arena is unchanged.
    pub fn replace_all(&self, defs: Vec<EnrollmentGroup>) -> Result<(), GroupError> {
        let mut seen = HashSet::with_capacity(defs.len());
        for def in &defs {
            if !seen.insert(def.id) {
                return Err(GroupError::new(def, GroupErrorKind::DuplicateId));
            }
        }
        let published = self.snapshot();
        let validated = validate_all(defs, &published)?;
        let mut next = Snapshot::default();
        for g in validated {
            next.insert(g.clone())
                .map_err(|kind| GroupError::new(&g.def, kind))?;
        }
        let _w = self.lock_writer();
        let prev = self.current.load_full();
        self.publish(next, &prev);
        Ok(())
    }
}

fn validate_all(
    defs: Vec<EnrollmentGroup>,
    published: &Snapshot,
) -> Result<Vec<Arc<ValidatedGroup>>, GroupError> {
    let memo = BatchMemo::over(published);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(defs.len().max(1));
    if threads <= 1 || defs.len() < 64 {
        return defs
            .into_iter()
            .map(|d| validate(d, &memo).map(Arc::new))
            .collect();
    }
    let chunk = defs.len().div_ceil(threads);
    let mut parts: Vec<Vec<EnrollmentGroup>> = Vec::with_capacity(threads);
    let mut it = defs.into_iter();
    loop {
        let part: Vec<_> = it.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let results: Vec<Result<Vec<Arc<ValidatedGroup>>, GroupError>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let memo = &memo;
                s.spawn(move || {
                    part.into_iter()
                        .map(|d| validate(d, memo).map(Arc::new))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
