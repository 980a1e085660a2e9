//! The allowed range of every numeric config key: a value outside it is refused at load with the
//! key and the range, instead of starting a server that serves nobody (a zero timeout, a zero
//! message size) or answers every device with a misleading error (a zero identity validity).
//! The sections apply them in `super::validate`.

/// One numeric key and the values it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The key as written in the file, with its section (`[limits] max_message_size`).
    pub key: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
    /// What the bounds mean, for the message (e.g. "0 = unlimited").
    pub note: &'static str,
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "allowed {}..={}", self.min, self.max)?;
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

/// A value outside its key's range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} = {value} is out of range: {range}", range.key)]
pub struct OutOfRange {
    /// The key and its range.
    pub range: Range,
    /// The value found.
    pub value: u64,
}

const fn range(key: &'static str, min: u64, max: u64, note: &'static str) -> Range {
    Range {
        key,
        min,
        max,
        note,
    }
}

/// `[server] identity_validity_days`: at least a day, at most a century.
pub const IDENTITY_VALIDITY_DAYS: Range = range("[server] identity_validity_days", 1, 36_500, "");
/// `[limits] max_connections`.
pub const MAX_CONNECTIONS: Range = range("[limits] max_connections", 1, 10_000_000, "");
/// `[limits] handshake_timeout_ms`: 100 ms to 5 minutes.
pub const HANDSHAKE_TIMEOUT_MS: Range = range("[limits] handshake_timeout_ms", 100, 300_000, "");
/// `[limits] inactivity_timeout_ms`: 100 ms to a day.
pub const INACTIVITY_TIMEOUT_MS: Range =
    range("[limits] inactivity_timeout_ms", 100, 86_400_000, "");
/// `[limits] max_message_size`: at least the 1152 bytes every CoAP peer may assume before a CSM
/// (RFC 8323 §5.3.1), at most 16 MiB.
pub const MAX_MESSAGE_SIZE: Range = range(
    "[limits] max_message_size",
    crate::proto::coap::BASE_MAX_MESSAGE_SIZE as u64,
    16 * 1024 * 1024,
    "RFC 8323 base size to 16 MiB",
);
/// `[limits] max_requests_per_second`.
pub const MAX_REQUESTS_PER_SECOND: Range = range(
    "[limits] max_requests_per_second",
    0,
    u32::MAX as u64,
    "0 = unlimited",
);
/// `[limits] busy_retry_after_s`: the Max-Age of the busy 5.03, a second to a day.
pub const BUSY_RETRY_AFTER_S: Range = range("[limits] busy_retry_after_s", 1, 86_400, "");
/// `[limits] failed_handshakes_per_ip_per_s`.
pub const FAILED_HANDSHAKES_PER_IP_PER_S: Range = range(
    "[limits] failed_handshakes_per_ip_per_s",
    0,
    u32::MAX as u64,
    "0 = no shedding",
);
/// `[limits] failed_handshakes_burst`: a bucket holds at least one failure.
pub const FAILED_HANDSHAKES_BURST: Range =
    range("[limits] failed_handshakes_burst", 1, 10_000_000, "");
/// `[limits] pending_handshakes_per_ip`.
pub const PENDING_HANDSHAKES_PER_IP: Range = range(
    "[limits] pending_handshakes_per_ip",
    0,
    u32::MAX as u64,
    "0 = no cap",
);
/// `[limits] cpu_slots` (when given).
pub const CPU_SLOTS: Range = range("[limits] cpu_slots", 0, 65_536, "0 = no overload control");
/// `[limits] queue_timeout_ms`: 1 ms to a minute.
pub const QUEUE_TIMEOUT_MS: Range = range("[limits] queue_timeout_ms", 1, 60_000, "");
/// `[limits] queue_target_ms`: 1 ms to a minute.
pub const QUEUE_TARGET_MS: Range = range("[limits] queue_target_ms", 1, 60_000, "");
/// `[limits] queue_interval_ms`: 1 ms to a minute.
pub const QUEUE_INTERVAL_MS: Range = range("[limits] queue_interval_ms", 1, 60_000, "");
/// `[limits] max_silent_connections`.
pub const MAX_SILENT_CONNECTIONS: Range =
    range("[limits] max_silent_connections", 1, 10_000_000, "");
/// `[tpm] challenge_ttl_ms`: 100 ms to an hour.
pub const CHALLENGE_TTL_MS: Range = range("[tpm] challenge_ttl_ms", 100, 3_600_000, "");

/// `value` within `range`, else the error naming the key.
pub(super) fn check(range: Range, value: u64) -> Result<(), OutOfRange> {
    if (range.min..=range.max).contains(&value) {
        Ok(())
    } else {
        Err(OutOfRange { range, value })
    }
}
