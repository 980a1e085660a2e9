//! Validation of a parsed config file: every numeric key within its [`super::ranges`] range.

use super::ranges::{
    check, OutOfRange, BUSY_RETRY_AFTER_S, CHALLENGE_TTL_MS, CPU_SLOTS, FAILED_HANDSHAKES_BURST,
    FAILED_HANDSHAKES_PER_IP_PER_S, HANDSHAKE_TIMEOUT_MS, IDENTITY_VALIDITY_DAYS,
    INACTIVITY_TIMEOUT_MS, MAX_CONNECTIONS, MAX_MESSAGE_SIZE, MAX_REQUESTS_PER_SECOND,
    MAX_SILENT_CONNECTIONS, PENDING_HANDSHAKES_PER_IP, QUEUE_INTERVAL_MS, QUEUE_TARGET_MS,
    QUEUE_TIMEOUT_MS,
};
use super::{ConfigFile, LimitsSection};

impl LimitsSection {
    /// Every `[limits]` key within its range (the first one that is not is the error).
    pub fn validate(&self) -> Result<(), OutOfRange> {
        check(MAX_CONNECTIONS, u64::from(self.max_connections))?;
        check(HANDSHAKE_TIMEOUT_MS, self.handshake_timeout_ms)?;
        check(INACTIVITY_TIMEOUT_MS, self.inactivity_timeout_ms)?;
        check(MAX_MESSAGE_SIZE, u64::from(self.max_message_size))?;
        check(
            MAX_REQUESTS_PER_SECOND,
            u64::from(self.max_requests_per_second),
        )?;
        check(BUSY_RETRY_AFTER_S, u64::from(self.busy_retry_after_s))?;
        check(
            FAILED_HANDSHAKES_PER_IP_PER_S,
            u64::from(self.failed_handshakes_per_ip_per_s),
        )?;
        check(
            FAILED_HANDSHAKES_BURST,
            u64::from(self.failed_handshakes_burst),
        )?;
        check(
            PENDING_HANDSHAKES_PER_IP,
            u64::from(self.pending_handshakes_per_ip),
        )?;
        if let Some(slots) = self.cpu_slots {
            check(CPU_SLOTS, u64::from(slots))?;
        }
        check(QUEUE_TIMEOUT_MS, self.queue_timeout_ms)?;
        check(QUEUE_TARGET_MS, self.queue_target_ms)?;
        check(QUEUE_INTERVAL_MS, self.queue_interval_ms)?;
        check(
            MAX_SILENT_CONNECTIONS,
            u64::from(self.max_silent_connections),
        )
    }
}

impl ConfigFile {
    /// Every numeric key of the file within its range.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        if let Some(server) = &self.server {
            check(
                IDENTITY_VALIDITY_DAYS,
                u64::from(server.identity_validity_days),
            )?;
        }
        self.limits.validate()?;
        check(CHALLENGE_TTL_MS, self.tpm.challenge_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_identity_days;

    #[test]
    fn defaults_are_in_range() {
        ConfigFile::default().validate().expect("defaults");
        check(IDENTITY_VALIDITY_DAYS, u64::from(default_identity_days()))
            .expect("default identity validity");
    }

    #[test]
    fn zeros_that_serve_nobody_are_refused_with_their_key() {
        type Case = (fn(&mut LimitsSection), &'static str);
        let cases: [Case; 5] = [
            (|l| l.max_message_size = 0, "max_message_size"),
            (|l| l.inactivity_timeout_ms = 0, "inactivity_timeout_ms"),
            (|l| l.handshake_timeout_ms = 0, "handshake_timeout_ms"),
            (|l| l.max_connections = 0, "max_connections"),
            (|l| l.busy_retry_after_s = 0, "busy_retry_after_s"),
        ];
        for (set, key) in cases {
            let mut limits = LimitsSection::default();
            set(&mut limits);
            let err = limits.validate().expect_err(key);
            let msg = err.to_string();
            assert!(msg.contains(key) && msg.contains("allowed"), "{msg}");
        }
        let mut limits = LimitsSection {
            max_message_size: 1151,
            ..LimitsSection::default()
        };
        assert!(limits.validate().is_err(), "below the RFC 8323 base size");
        limits.max_message_size = 1152;
        limits.validate().expect("the base size");
    }

    #[test]
    fn zero_means_off_where_documented() {
        let limits = LimitsSection {
            max_requests_per_second: 0,
            failed_handshakes_per_ip_per_s: 0,
            pending_handshakes_per_ip: 0,
            ..LimitsSection::default()
        };
        limits.validate().expect("0 = off");
    }
}
