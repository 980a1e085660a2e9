//! A running DPS as the target: the fleet's hub, groups and TPM enrollments set up over its admin
//! API, its counters read before and after the run (from every replica named), and what the run
//! set up removed again, unless it is one of several generators sharing the server.
//!
//! **N generators, one server.** `dps-loadgen run --segment I/N` on N machines against one DPS
//! (or one set of replicas) all set up the same fleet on it. Setting up is idempotent: an object
//! that is there already and identical is left alone. A different one is replaced by an
//! unsegmented run (a regenerated fleet) but refused by a segment: two segments with different
//! builds of the fleet (each generated its own keys) would otherwise replace each other's groups
//! and refuse each other's devices. Nothing a segmented run set up is deleted at its end: the
//! first segment to finish would otherwise delete the groups under the devices of the others
//! (their devices then refused, counted as false rejects). The set-up stays on the server, named
//! on stderr, for whoever runs next or removes it. An unsegmented run deletes only what it
//! created or replaced.
//!
//! **Counters.** Each segment's view of a shared server covers every segment's devices, so a
//! segment neither cross-checks the server's rejections against its own fleet share nor waits
//! for the server's connections to drain; it records the server's absolute counters before and
//! after it ([`ServerCounters`]), and `merge` takes the difference over the union of the
//! segments' windows: the whole run's, counted once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::admin_client::{AdminClient, AdminError, Ensured};
use crate::fleet::Fleet;

/// The code of a refused TPM request, as the server's counters label it.
const TPM_REFUSED: &str = "4.01";

/// A server's counters at one moment (absolute values, summed over its replicas).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterSet {
    /// `dps_rejections_total` by reason.
    pub rejections: BTreeMap<String, u64>,
    /// `dps_connections_closed_total` by reason.
    pub closes: BTreeMap<String, u64>,
    /// TPM requests answered 4.01.
    pub tpm_refusals: u64,
}

/// A remote server's counters before and after one run, so that `merge` can count the runs of N
/// segments on that server once (from the earliest reading to the latest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Which server: its admin API URLs, sorted and joined with `,` (the same in every segment
    /// of one scenario pointed at it).
    pub server: String,
    /// Before the run's devices.
    pub before: CounterSet,
    /// After them.
    pub after: CounterSet,
}

/// One replica's own figures, when the target has several (spawned `replicas`, or a remote
/// target's `replica_admins`): how the kernel spread the devices, and each one's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaFigures {
    /// Its admin API, `http://host:port`.
    pub admin: String,
    /// Handshakes it accepted since it started (`dps_handshakes_total{outcome="accepted"}`).
    pub handshakes_accepted: u64,
    /// Its peak resident memory, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Each replica's figures; empty for a single server (its figures are the view's own).
pub async fn replica_figures(admins: &[&AdminClient]) -> Vec<ReplicaFigures> {
    if admins.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for a in admins {
        out.push(ReplicaFigures {
            admin: a.url(),
            handshakes_accepted: a
                .requests_sample("dps_handshakes_total{outcome=\"accepted\"}")
                .await
                .unwrap_or(0),
            peak_rss_bytes: a.gauge("dps_process_peak_resident_memory_bytes").await.ok(),
        });
    }
    out
}

impl CounterSet {
    /// `self` plus `other`, key by key.
    pub fn plus(mut self, other: &CounterSet) -> CounterSet {
        add_into(&mut self.rejections, &other.rejections);
        add_into(&mut self.closes, &other.closes);
        self.tpm_refusals += other.tpm_refusals;
        self
    }

    /// How much each count grew from `before` (counts that did not grow are left out).
    pub fn since(&self, before: &CounterSet) -> CounterSet {
        CounterSet {
            rejections: since(&self.rejections, &before.rejections),
            closes: since(&self.closes, &before.closes),
            tpm_refusals: self.tpm_refusals.saturating_sub(before.tpm_refusals),
        }
    }

    /// Each count's lowest (`low`) or highest value of `self` and `other`: the earliest or the
    /// latest reading of monotonic counters.
    pub fn extreme(&self, other: &CounterSet, low: bool) -> CounterSet {
        let pick = |a: u64, b: u64| if low { a.min(b) } else { a.max(b) };
        let merge = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .map(|k| {
                    let (x, y) = (a.get(k).copied(), b.get(k).copied());
                    let v = match (x, y) {
                        (Some(x), Some(y)) => pick(x, y),
                        // A reason a reading lacks had not been counted yet: 0 then.
                        (x, y) => pick(x.unwrap_or(0), y.unwrap_or(0)),
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        CounterSet {
            rejections: merge(&self.rejections, &other.rejections),
            closes: merge(&self.closes, &other.closes),
            tpm_refusals: pick(self.tpm_refusals, other.tpm_refusals),
        }
    }
}

/// `b` added into `a`, key by key (zero counts dropped).
fn add_into(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
    a.retain(|_, n| *n > 0);
}

/// The counts that grew since `before`, by how much.
fn since(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// One admin API's counters now (one `/metrics` read).
pub async fn read(admin: &AdminClient) -> Result<CounterSet, AdminError> {
    let (rejections, closes, tpm_refusals) = admin.counters(TPM_REFUSED).await?;
    Ok(CounterSet {
        rejections,
        closes,
        tpm_refusals,
    })
}

/// The counters of `admins` added up; `None` if one cannot be read.
pub async fn read_all(admins: &[&AdminClient]) -> Option<CounterSet> {
    let mut sum = CounterSet::default();
    for a in admins {
        sum = sum.plus(&read(a).await.ok()?);
    }
    Some(sum)
}

/// The name `merge` knows a server by: its admin URLs, sorted.
pub fn server_key(admins: &[&AdminClient]) -> String {
    let mut urls: Vec<String> = admins.iter().map(|a| a.url()).collect();
    urls.sort();
    urls.join(",")
}

/// What a run set up on a remote server and must remove at its end (resource paths).
#[derive(Debug, Default)]
pub struct SetUp {
    /// Groups (X.509 and TPM) this run created or replaced.
    pub groups: Vec<String>,
    /// TPM enrollments this run created or replaced (ids).
    pub tpm_enrollments: Vec<String>,
    /// Left in place for the other generators (a segmented run): nothing is deleted.
    pub keep: bool,
    /// Objects left in place, by resource path (for the message at the end).
    pub kept: Vec<String>,
}

impl SetUp {
    /// Note one object this run set up at `path` (`id` for a TPM enrollment).
    pub fn note(&mut self, ensured: Ensured, path: String, tpm_id: Option<&str>) {
        if self.keep {
            self.kept.push(path);
            return;
        }
        if ensured == Ensured::Unchanged {
            return;
        }
        match tpm_id {
            Some(id) => self.tpm_enrollments.push(id.to_owned()),
            None => self.groups.push(path),
        }
    }
}

/// The fleet's hub and groups set up on `admin`; what this run must remove later.
pub async fn set_up(admin: &AdminClient, fleet: &Fleet, keep: bool) -> Result<SetUp, AdminError> {
    let mut setup = SetUp {
        keep,
        ..SetUp::default()
    };
    let ensured = put(admin, keep, "/api/v1/hubs", &fleet.hub.id, &fleet.hub).await?;
    if keep {
        setup.note(ensured, format!("/api/v1/hubs/{}", fleet.hub.id), None);
    }
    let collections = [
        ("/api/v1/enrollment-groups", &fleet.server_groups),
        ("/api/v1/tpm-enrollment-groups", &fleet.server_tpm_groups),
    ];
    for (collection, fleet_groups) in collections {
        for group in fleet_groups {
            let ensured = put(admin, keep, collection, &group.id, group).await?;
            setup.note(ensured, format!("{collection}/{}", group.id), None);
        }
    }
    Ok(setup)
}

/// Set up one object: replacing a different one, or (`shared`: other generators use it) refusing.
async fn put<T: Serialize>(
    admin: &AdminClient,
    shared: bool,
    collection: &str,
    id: &str,
    value: &T,
) -> Result<Ensured, AdminError> {
    if shared {
        admin.create_or_same(collection, id, value).await
    } else {
        admin.upsert(collection, id, value).await
    }
}

/// Remove what this run set up (a segmented run's set-up is left and named on stderr).
pub async fn clean_up(admin: &AdminClient, setup: SetUp) {
    if setup.keep {
        if !setup.kept.is_empty() {
            eprintln!(
                "segmented run: the fleet's set-up is left on {} for the other segments \
                 ({} objects: {}); DELETE them over the admin API when every segment is done",
                admin.url(),
                setup.kept.len(),
                setup.kept.join(" ")
            );
        }
        return;
    }
    for path in setup.groups {
        let _ = admin.delete(&path).await;
    }
    for id in setup.tpm_enrollments {
        let _ = admin.delete(&format!("/api/v1/tpm-enrollments/{id}")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rej: &[(&str, u64)], tpm: u64) -> CounterSet {
        CounterSet {
            rejections: rej.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            closes: BTreeMap::new(),
            tpm_refusals: tpm,
        }
    }

    #[test]
    fn counters_subtract_and_take_extremes_key_by_key() {
        let before = set(&[("no_path", 3)], 1);
        let after = set(&[("no_path", 10), ("denied", 2)], 4);
        let d = after.since(&before);
        assert_eq!(d, set(&[("no_path", 7), ("denied", 2)], 3));
        let low = before.extreme(&after, true);
        assert_eq!(low, set(&[("no_path", 3), ("denied", 0)], 1));
        let high = before.extreme(&after, false);
        assert_eq!(high, set(&[("no_path", 10), ("denied", 2)], 4));
        assert_eq!(
            before.plus(&after),
            set(&[("no_path", 13), ("denied", 2)], 5)
        );
    }

    #[test]
    fn a_kept_set_up_deletes_nothing_and_an_unchanged_object_is_not_ours() {
        let mut own = SetUp::default();
        own.note(Ensured::Created, "/g/a".into(), None);
        own.note(Ensured::Unchanged, "/g/b".into(), None);
        own.note(Ensured::Replaced, "/t/c".into(), Some("c"));
        assert_eq!(
            (own.groups, own.tpm_enrollments),
            (vec!["/g/a".to_owned()], vec!["c".to_owned()])
        );
        let mut kept = SetUp {
            keep: true,
            ..SetUp::default()
        };
        kept.note(Ensured::Created, "/g/a".into(), None);
        assert!(kept.groups.is_empty());
        assert_eq!(kept.kept, vec!["/g/a".to_owned()]);
    }
}
