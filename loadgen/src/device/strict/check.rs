//! What a strict check is: which of the real client's checks failed ([`StrictCheck`]), what
//! failed it ([`Violation`]), and the clock the client judges validity by ([`DpsClock`]).

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The shortest frame the real client can read. security/oc_tls.c `tls_read_application_data_tcp`
/// asks TLS for `OC_TCP_DEFAULT_RECEIVE_SIZE` (api/oc_tcp_internal.h: the 2-byte header plus up to
/// 4 extended-length bytes) before `coap_tcp_get_packet_size` tells it the frame's length; a
/// shorter frame is only complete once bytes of the next one arrive, and then the length it
/// computes is already behind what it has read, so the frame is never delivered.
pub const MIN_FRAME_LEN: usize = 6;

/// Which of the real client's checks something the server sent failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrictCheck {
    /// A frame (the first one: the CSM) shorter than [`MIN_FRAME_LEN`] bytes.
    ShortFrame,
    /// The time answer: no RFC 3339 `time` string.
    Time,
    /// The ownership answer: not exactly one `devowneruuid` string.
    Ownership,
    /// The cloud-configuration answer: a required key missing or mistyped, a value too long, an
    /// `sid` that does not parse.
    CloudConfiguration,
    /// The cloud-configuration answer has no `at`, or an empty one.
    AccessToken,
    /// The credentials answer: a credential the client cannot apply, or no identity certificate
    /// and trust anchor tagged `dps`.
    Credentials,
    /// The identity certificate's public key is not the key of the device's CSR.
    IdentityKey,
    /// The identity certificate's CN does not name the device (`uuid:<device id>`).
    IdentityCn,
    /// A certificate of the identity chain or the trust anchor is not yet valid, or valid for
    /// less than an hour more.
    CertificateValidity,
    /// The ACL answer: an ACE or resource the client cannot apply.
    Acls,
}

impl StrictCheck {
    /// Every check, in flow order.
    pub const ALL: [StrictCheck; 10] = [
        StrictCheck::ShortFrame,
        StrictCheck::Time,
        StrictCheck::Ownership,
        StrictCheck::CloudConfiguration,
        StrictCheck::AccessToken,
        StrictCheck::Credentials,
        StrictCheck::IdentityKey,
        StrictCheck::IdentityCn,
        StrictCheck::CertificateValidity,
        StrictCheck::Acls,
    ];

    /// The name in summaries (`strict:<name>` outcomes, `strict_failures` keys).
    pub fn as_str(self) -> &'static str {
        match self {
            StrictCheck::ShortFrame => "short_frame",
            StrictCheck::Time => "time",
            StrictCheck::Ownership => "ownership",
            StrictCheck::CloudConfiguration => "cloud_configuration",
            StrictCheck::AccessToken => "access_token",
            StrictCheck::Credentials => "credentials",
            StrictCheck::IdentityKey => "identity_key",
            StrictCheck::IdentityCn => "identity_cn",
            StrictCheck::CertificateValidity => "certificate_validity",
            StrictCheck::Acls => "acls",
        }
    }
}

impl fmt::Display for StrictCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check and what exactly failed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check.
    pub check: StrictCheck,
    /// What the server sent that failed it.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(check: StrictCheck, detail: impl Into<String>) -> Self {
        Violation {
            check,
            detail: detail.into(),
        }
    }
}

/// The device's clock once it has the server's time: plgd_dps_time.c `dps_time` uses the system
/// clock unless the server's time (kept running by api/plgd/plgd_time.c) is more than an hour
/// ahead of it (`dps_system_time_is_synchronized`), in which case the server's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DpsClock {
    server: OffsetDateTime,
    received: Instant,
}

impl DpsClock {
    /// The server said it was `server` just now.
    pub(crate) fn new(server: OffsetDateTime) -> Self {
        DpsClock {
            server,
            received: Instant::now(),
        }
    }

    /// `dps_time()`.
    pub(crate) fn now(&self) -> OffsetDateTime {
        let system = OffsetDateTime::now_utc();
        let plgd = self.server + self.received.elapsed();
        if system > plgd || plgd - system <= time::Duration::hours(1) {
            system
        } else {
            plgd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_the_server_only_when_it_is_over_an_hour_ahead() {
        let system = OffsetDateTime::now_utc();
        let behind = DpsClock::new(system - time::Duration::days(3)).now();
        assert!((behind - system).abs() < time::Duration::minutes(1));
        let slightly_ahead = DpsClock::new(system + time::Duration::minutes(50)).now();
        assert!((slightly_ahead - system).abs() < time::Duration::minutes(1));
        let far_ahead = DpsClock::new(system + time::Duration::hours(5)).now();
        assert!(far_ahead - system > time::Duration::hours(4));
    }

    #[test]
    fn names_are_unique() {
        let names: std::collections::BTreeSet<_> =
            StrictCheck::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), StrictCheck::ALL.len());
    }
}
