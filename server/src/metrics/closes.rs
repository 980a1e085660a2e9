//! Why device connections ended: a fixed set of reasons, each counted, so that every close the
//! server makes (or sees) shows up in `dps_connections_closed_total{reason}` and none is silent.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a device connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The device closed the stream, or sent Release / Abort.
    DeviceClosed,
    /// Nothing arrived within the inactivity timeout.
    Idle,
    /// A request was answered with an error code; the connection closes after it.
    ErrorResponse,
    /// Bad framing, a CSM the server must abort, or a transport error after the handshake.
    ProtocolError,
    /// The TLS handshake failed for another reason than attestation.
    HandshakeFailed,
    /// The TLS handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// Attestation refused the device's chain (in the handshake, or when judged after it).
    Rejected,
    /// The device's enrollment group was removed between its handshake and its first request
    /// (the first request is answered 4.01 with a diagnostic).
    GroupRemoved,
    /// Closed at accept: its address spent its failed-handshake budget or has too many
    /// handshakes in progress.
    Shed,
    /// Beyond `max_connections`: answered 5.03 with Max-Age, then closed.
    Busy,
    /// Beyond `max_connections` and the busy budget: closed at accept without an answer.
    Overflow,
    /// Still open when the shutdown drain timed out.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in the order they are exported.
    pub const ALL: [CloseReason; 12] = [
        CloseReason::DeviceClosed,
        CloseReason::Idle,
        CloseReason::ErrorResponse,
        CloseReason::ProtocolError,
        CloseReason::HandshakeFailed,
        CloseReason::HandshakeTimeout,
        CloseReason::Rejected,
        CloseReason::GroupRemoved,
        CloseReason::Shed,
        CloseReason::Busy,
        CloseReason::Overflow,
        CloseReason::Shutdown,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::DeviceClosed => "device_closed",
            CloseReason::Idle => "idle",
            CloseReason::ErrorResponse => "error_response",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Rejected => "rejected",
            CloseReason::GroupRemoved => "group_removed",
            CloseReason::Shed => "shed",
            CloseReason::Busy => "busy",
            CloseReason::Overflow => "overflow",
            CloseReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter per [`CloseReason`].
#[derive(Debug, Default)]
pub struct CloseCounters([AtomicU64; CloseReason::ALL.len()]);

impl CloseCounters {
    /// Count `n` connections closed for `reason`.
    pub fn add(&self, reason: CloseReason, n: u64) {
        if let Some(c) = self.0.get(reason.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Connections closed for `reason` so far.
    pub fn get(&self, reason: CloseReason) -> u64 {
        self.0
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Connections closed for any reason so far.
    pub fn total(&self) -> u64 {
        CloseReason::ALL.iter().map(|r| self.get(*r)).sum()
    }

    /// `dps_connections_closed_total` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        super::prometheus::header(
            out,
            "dps_connections_closed_total",
            "Device connections closed, by reason (every close has one).",
            "counter",
        );
        for r in CloseReason::ALL {
            let _ = writeln!(
                out,
                "dps_connections_closed_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.get(r)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_label() {
        let c = CloseCounters::default();
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            c.add(*r, i as u64 + 1);
        }
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(c.get(*r), i as u64 + 1, "{r}");
        }
        let mut out = String::new();
        c.render(&mut out);
        assert!(out.contains("dps_connections_closed_total{reason=\"group_removed\"} 8"));
        let labels: std::collections::HashSet<_> =
            CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), CloseReason::ALL.len());
    }
}
