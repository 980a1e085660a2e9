//! The server's counts of a merged run. Segments with a server of their own (embedded, spawned)
//! each counted only their devices: summed. Segments sharing one remote server each read the
//! whole server, every segment's devices in it: summed they would be N times too high. Such a
//! segment records the server's absolute counters before and after it
//! ([`crate::target::ServerCounters`]); per server, the merge takes the earliest reading and the
//! latest (the counters only grow) and counts the difference once.

use std::collections::BTreeMap;

use super::part::Part;
use crate::target::{CounterSet, ReplicaFigures};

/// The server's counts of the merged run.
#[derive(Debug, Default, PartialEq)]
pub struct ServerCounts {
    /// Rejections by reason.
    pub rejections: BTreeMap<String, u64>,
    /// TPM requests refused with 4.01; `None` when a segment could not tell.
    pub tpm_refusals: Option<u64>,
    /// Connection closes by reason; `None` when a segment could not tell.
    pub closes: Option<BTreeMap<String, u64>>,
    /// Whether some segments shared a remote server (their counts are then the merge's to
    /// cross-check: they did not).
    pub shared: bool,
}

/// The server counts of `parts`, each shared server counted once.
pub fn counts(parts: &[Part]) -> ServerCounts {
    let mut shared: BTreeMap<&str, (CounterSet, CounterSet)> = BTreeMap::new();
    let mut own = CounterSet::default();
    let (mut tpm_known, mut closes_known) = (true, true);
    for p in parts {
        let s = &p.summary;
        if let Some(c) = &s.server_counters {
            let e = shared
                .entry(c.server.as_str())
                .or_insert_with(|| (c.before.clone(), c.after.clone()));
            *e = (e.0.extreme(&c.before, true), e.1.extreme(&c.after, false));
            continue;
        }
        let closes = s.storm.as_ref().and_then(|st| st.server_closes.clone());
        tpm_known &= s.server_tpm_refusals.is_some();
        closes_known &= closes.is_some();
        own = own.plus(&CounterSet {
            rejections: s.server_rejections.clone(),
            closes: closes.unwrap_or_default(),
            tpm_refusals: s.server_tpm_refusals.unwrap_or(0),
        });
    }
    let is_shared = !shared.is_empty();
    let total = shared
        .values()
        .fold(own, |sum, (before, after)| sum.plus(&after.since(before)));
    ServerCounts {
        rejections: total.rejections,
        tpm_refusals: tpm_known.then_some(total.tpm_refusals),
        closes: closes_known.then_some(total.closes),
        shared: is_shared,
    }
}

/// The server's open connections at the hold's peak: per shared server the highest a segment
/// saw (each saw all of them), summed over servers and the segments' own servers.
pub fn open_at_peak(parts: &[Part]) -> Option<u64> {
    let mut shared: BTreeMap<&str, u64> = BTreeMap::new();
    let mut own = 0;
    for p in parts {
        let open = p.summary.hold.as_ref()?.server_open_connections?;
        match &p.summary.server_counters {
            Some(c) => {
                let e = shared.entry(c.server.as_str()).or_insert(0);
                *e = (*e).max(open);
            }
            None => own += open,
        }
    }
    Some(own + shared.values().sum::<u64>())
}

/// Each replica's figures over the segments: per admin API, the latest (highest) handshake count
/// and peak memory any segment read (segments sharing replicas read the same processes).
pub fn replicas(parts: &[Part]) -> Vec<ReplicaFigures> {
    let mut by_admin: BTreeMap<&str, ReplicaFigures> = BTreeMap::new();
    for r in parts.iter().flat_map(|p| &p.summary.server_replicas) {
        let e = by_admin
            .entry(r.admin.as_str())
            .or_insert_with(|| r.clone());
        e.handshakes_accepted = e.handshakes_accepted.max(r.handshakes_accepted);
        e.peak_rss_bytes = e.peak_rss_bytes.max(r.peak_rss_bytes);
    }
    by_admin.into_values().collect()
}
