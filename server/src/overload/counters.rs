//! What overload control did, for `/metrics`: connections shed by reason, how long steps waited
//! for a CPU place, and the handshake signatures made (the public-key operations a refusal is
//! meant to save, so tests and operators can count them).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a connection was shed (closed with a reset, before its handshake's public-key work).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// Its address spent its failed-handshake budget.
    FailureBudget,
    /// Its address already had `pending_handshakes_per_ip` handshakes in progress.
    PendingPerAddress,
    /// Its first flight waited longer than the CPU gate's queue allows.
    QueueTimeout,
    /// It had sent nothing yet and its place was given to a newer connection
    /// (`max_silent_connections` reached).
    SilentEvicted,
}

impl ShedReason {
    /// Every reason, in the order they are exported.
    pub const ALL: [ShedReason; 4] = [
        ShedReason::FailureBudget,
        ShedReason::PendingPerAddress,
        ShedReason::QueueTimeout,
        ShedReason::SilentEvicted,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ShedReason::FailureBudget => "failure_budget",
            ShedReason::PendingPerAddress => "pending_per_address",
            ShedReason::QueueTimeout => "queue_timeout",
            ShedReason::SilentEvicted => "silent_evicted",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The counters; share as `Arc<OverloadCounters>`.
#[derive(Debug, Default)]
pub struct OverloadCounters {
    shed: [AtomicU64; ShedReason::ALL.len()],
    waits: AtomicU64,
    wait_us: AtomicU64,
    signatures: AtomicU64,
}

impl OverloadCounters {
    /// A connection was shed for `reason`.
    pub fn shed(&self, reason: ShedReason) {
        if let Some(c) = self.shed.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections shed for `reason` so far.
    pub fn shed_count(&self, reason: ShedReason) -> u64 {
        self.shed
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Connections shed for any reason so far.
    pub fn shed_total(&self) -> u64 {
        self.shed.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// A step got its CPU place after waiting `waited` in the queue.
    pub fn waited(&self, waited: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.wait_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The server signed a handshake (TLS 1.3 CertificateVerify, TLS 1.2 ServerKeyExchange).
    pub fn signed(&self) {
        self.signatures.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshake signatures made so far.
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text of these counters.
    pub fn render(&self, out: &mut String) {
        let header = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        header(
            out,
            "dps_shed_total",
            "Connections shed before any public-key work, by reason.",
            "counter",
        );
        for reason in ShedReason::ALL {
            let _ = writeln!(
                out,
                "dps_shed_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.shed_count(reason)
            );
        }
        header(
            out,
            "dps_cpu_queue_wait_seconds",
            "Time handshake steps waited for a CPU place (steps that waited at all).",
            "summary",
        );
        let _ = writeln!(
            out,
            "dps_cpu_queue_wait_seconds_sum {}",
            self.wait_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "dps_cpu_queue_wait_seconds_count {}",
            self.waits.load(Ordering::Relaxed)
        );
        header(
            out,
            "dps_handshake_signatures_total",
            "Signatures the server made in TLS handshakes (its costliest public-key operation).",
            "counter",
        );
        let _ = writeln!(out, "dps_handshake_signatures_total {}", self.signatures());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exported() {
        let c = OverloadCounters::default();
        c.shed(ShedReason::QueueTimeout);
        c.shed(ShedReason::QueueTimeout);
        c.shed(ShedReason::SilentEvicted);
        c.signed();
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains("dps_shed_total{reason=\"queue_timeout\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("dps_shed_total{reason=\"silent_evicted\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("dps_shed_total{reason=\"failure_budget\"} 0"),
            "{out}"
        );
        assert!(out.contains("dps_handshake_signatures_total 1"), "{out}");
        assert_eq!(c.shed_total(), 3);
    }
}
