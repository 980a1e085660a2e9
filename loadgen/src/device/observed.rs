//! What a device saw: its outcome ([`Observed`]), and when it failed, the kind of failure
//! ([`FailureKind`]), told from the error itself rather than from its message.

use std::time::{Duration, Instant};

use dps_server::proto::coap::{option, Code, Frame};
use dps_server::proto::stream::StreamError;
use serde::{Deserialize, Serialize};

use super::session::SessionError;
use super::strict::{StrictCheck, Violation};
use super::tls;
use crate::fleet::tpm::TpmStep;
use crate::metrics::Phase;

/// Why a device failed (beyond a refusal its class may expect and iotivity-lite's checks), by
/// name in the summary's `failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The device's deadline (`[device] timeout`) passed, or a Ping went unanswered.
    Timeout,
    /// The TCP connect failed (refused, unreachable, no local port).
    Connect,
    /// The TLS handshake failed without an alert from the server.
    Tls,
    /// The server closed or reset the connection before the device was done (including a
    /// Release or Abort, and a stream that ended inside a frame).
    Reset,
    /// The server answered 5.03 Service Unavailable (with Max-Age: come back later).
    Busy,
    /// The server answered something the device did not expect: another code, a body the spec
    /// does not allow, a frame that is not CoAP.
    Protocol,
    /// Another I/O error on an open connection.
    Io,
    /// The device could not do its own part (its TLS client, a key, a CSR, its TPM).
    Device,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Timeout,
        FailureKind::Connect,
        FailureKind::Tls,
        FailureKind::Reset,
        FailureKind::Busy,
        FailureKind::Protocol,
        FailureKind::Io,
        FailureKind::Device,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Tls => "tls",
            FailureKind::Reset => "reset",
            FailureKind::Busy => "busy",
            FailureKind::Protocol => "protocol",
            FailureKind::Io => "io",
            FailureKind::Device => "device",
        }
    }

    /// The kind of an I/O error on an open connection.
    pub fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                FailureKind::Reset
            }
            K::TimedOut => FailureKind::Timeout,
            _ => FailureKind::Io,
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a device saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "observed", rename_all = "snake_case")]
pub enum Observed {
    /// The whole flow succeeded; the owner it was given.
    Provisioned {
        /// `devowneruuid` from the ownership resource.
        owner: String,
        /// The device id its identity certificate was issued for (empty where not known).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        device_id: String,
    },
    /// The whole flow succeeded, and again over a session authenticated by the identity
    /// certificate it was issued, with the same owner both times.
    Reconnected {
        /// `devowneruuid` from the ownership resource.
        owner: String,
        /// The device id its identity certificate was issued for (empty where not known).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        device_id: String,
    },
    /// Handshake-only mode: the handshake was accepted (a TPM device: its attestation).
    Attested,
    /// A TPM device was refused at this step with this CoAP code, and the server then closed the
    /// connection.
    TpmRefused {
        /// The step.
        step: TpmStep,
        /// The CoAP code, `c.dd`.
        code: String,
    },
    /// The server refused the handshake with this TLS alert.
    Rejected {
        /// The alert description (rustls's name, e.g. `UnknownCA`).
        alert: String,
    },
    /// The server sent something iotivity-lite's real client would refuse (a frame too short to
    /// read, an answer missing what the client requires): the check it failed.
    Strict {
        /// The check.
        check: StrictCheck,
        /// What exactly failed it.
        detail: String,
    },
    /// The server answered a provisioning step with a 4.xx code: a refusal with a verdict above
    /// TLS (e.g. 4.01 for a device whose group was removed during its handshake).
    Refused {
        /// The step.
        phase: Phase,
        /// The CoAP code, `c.dd`.
        code: String,
    },
    /// Anything else: timeout, reset, I/O error, unexpected response, a held connection lost.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// What happened.
        error: String,
        /// A 5.03's Max-Age, seconds: when the server asked the device to come back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_s: Option<u64>,
    },
}

impl Observed {
    /// Provisioned (once, or again after reconnecting).
    pub fn provisioned(&self) -> bool {
        matches!(
            self,
            Observed::Provisioned { .. } | Observed::Reconnected { .. }
        )
    }

    /// A failure of `kind`.
    pub fn failed(kind: FailureKind, error: impl Into<String>) -> Self {
        Observed::Failed {
            kind,
            error: error.into(),
            max_age_s: None,
        }
    }

    /// An error rather than a verdict or a success: a failure of any kind, or one of
    /// iotivity-lite's checks. Only errors are worth another attempt.
    pub fn is_error(&self) -> bool {
        matches!(self, Observed::Failed { .. } | Observed::Strict { .. })
    }

    /// The error's name in reports: its failure kind, or `strict`; `None` for a verdict or a
    /// success.
    pub fn error_label(&self) -> Option<&'static str> {
        match self {
            Observed::Failed { kind, .. } => Some(kind.as_str()),
            Observed::Strict { .. } => Some("strict"),
            _ => None,
        }
    }

    /// The Max-Age of the 5.03 this device was answered, if it was.
    pub fn max_age(&self) -> Option<Duration> {
        match self {
            Observed::Failed {
                max_age_s: Some(s), ..
            } => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }

    /// The server answered what the device did not expect.
    pub fn protocol(error: impl Into<String>) -> Self {
        Self::failed(FailureKind::Protocol, error)
    }

    /// The device could not do its own part.
    pub fn device(error: impl Into<String>) -> Self {
        Self::failed(FailureKind::Device, error)
    }

    /// The server answered `resp` at `phase` where another code was due: busy (5.03, with its
    /// Max-Age), a refusal (4.xx), or a protocol failure.
    pub fn unexpected_answer(phase: Phase, resp: &Frame) -> Self {
        let body = String::from_utf8_lossy(&resp.payload);
        if resp.code == Code::SERVICE_UNAVAILABLE {
            let max_age_s = resp.uint_option(option::MAX_AGE);
            let retry = max_age_s.map_or_else(String::new, |s| format!(" (Max-Age {s} s)"));
            return Observed::Failed {
                kind: FailureKind::Busy,
                error: format!("{phase}: {}{retry} {body}", resp.code),
                max_age_s,
            };
        }
        if resp.code.class() == 4 {
            return Observed::Refused {
                phase,
                code: resp.code.to_string(),
            };
        }
        Self::protocol(format!("{phase}: {} {body}", resp.code))
    }
}

/// What a session error at `step` means for the device: the server's alert, a frame the real
/// client cannot read, or a failure of its kind.
pub fn stream_failure(step: &str, e: &SessionError) -> Observed {
    let kind = match e {
        SessionError::Stream(StreamError::Io(io)) => {
            if let Some(alert) = tls::alert_of(io) {
                return Observed::Rejected { alert };
            }
            FailureKind::of_io(io)
        }
        SessionError::ShortFrame { .. } => {
            return Observed::Strict {
                check: StrictCheck::ShortFrame,
                detail: format!("{step}: {e}"),
            }
        }
        SessionError::Stream(StreamError::Truncated(_)) | SessionError::Released(_) => {
            FailureKind::Reset
        }
        SessionError::Stream(StreamError::Codec(_)) => FailureKind::Protocol,
    };
    Observed::failed(kind, format!("{step}: {e}"))
}

impl From<Violation> for Observed {
    fn from(v: Violation) -> Self {
        Observed::Strict {
            check: v.check,
            detail: v.detail,
        }
    }
}

/// One device's run: all its attempts.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    /// What it saw on its last attempt.
    pub observed: Observed,
    /// Measured phases, of every attempt (each attempt's `Total` from its own start, the first
    /// one's from the scheduled start).
    pub phases: Vec<(Phase, Duration)>,
    /// When the device was through its flow (before any hold): its place on the run's timeline.
    pub through: Instant,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// From the device's first scheduled start until it was through (every attempt and wait).
    pub since_scheduled: Duration,
    /// Every attempt that ended in an error, by [`Observed::error_label`] (the last one too).
    pub attempt_errors: Vec<&'static str>,
}

impl DeviceRun {
    /// The generator's lateness of the device's first attempt: from its scheduled start until
    /// it began to connect (`None`: nothing was recorded).
    pub fn lateness(&self) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == Phase::Lateness)
            .map(|(_, d)| *d)
    }

    /// A run of one attempt that ended in `observed` (tests, and devices that never start).
    pub fn single(observed: Observed, phases: Vec<(Phase, Duration)>) -> Self {
        let attempt_errors = observed.error_label().into_iter().collect();
        Self {
            observed,
            phases,
            through: Instant::now(),
            attempts: 1,
            since_scheduled: Duration::ZERO,
            attempt_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_kinds_not_messages() {
        let io = |k| SessionError::Stream(StreamError::Io(std::io::Error::from(k)));
        let kind = |e: &SessionError| match stream_failure("time", e) {
            Observed::Failed { kind, .. } => Some(kind),
            _ => None,
        };
        use std::io::ErrorKind as K;
        assert_eq!(kind(&io(K::ConnectionReset)), Some(FailureKind::Reset));
        assert_eq!(kind(&io(K::UnexpectedEof)), Some(FailureKind::Reset));
        assert_eq!(kind(&io(K::PermissionDenied)), Some(FailureKind::Io));
        let truncated = SessionError::Stream(StreamError::Truncated(3));
        assert_eq!(kind(&truncated), Some(FailureKind::Reset));
        let released = SessionError::Released("bye".into());
        assert_eq!(kind(&released), Some(FailureKind::Reset));
        let short = SessionError::ShortFrame {
            nth: "first",
            code: Code::CSM,
            len: 5,
        };
        assert!(matches!(
            stream_failure("handshake", &short),
            Observed::Strict {
                check: StrictCheck::ShortFrame,
                ..
            }
        ));

        let busy =
            Frame::response(Code::SERVICE_UNAVAILABLE, &[1]).with_uint_option(option::MAX_AGE, 3);
        match Observed::unexpected_answer(Phase::Credentials, &busy) {
            Observed::Failed {
                kind,
                error,
                max_age_s,
            } => {
                assert_eq!(kind, FailureKind::Busy);
                assert!(error.contains("Max-Age 3 s"), "{error}");
                assert_eq!(max_age_s, Some(3));
            }
            other => panic!("{other:?}"),
        }
        let refused = Frame::response(Code::new(4, 1), &[1]);
        assert_eq!(
            Observed::unexpected_answer(Phase::Time, &refused),
            Observed::Refused {
                phase: Phase::Time,
                code: "4.01".into()
            }
        );
        let wrong = Frame::response(Code::new(5, 0), &[1]);
        assert!(matches!(
            Observed::unexpected_answer(Phase::Time, &wrong),
            Observed::Failed {
                kind: FailureKind::Protocol,
                ..
            }
        ));
        let busy = Observed::unexpected_answer(Phase::Time, &busy);
        assert_eq!(busy.max_age(), Some(Duration::from_secs(3)));
        assert_eq!(busy.error_label(), Some("busy"));
        assert!(busy.is_error());
        assert!(!Observed::Attested.is_error());
        assert_eq!(
            serde_json::to_value(FailureKind::Timeout).expect("json"),
            "timeout"
        );
        for k in FailureKind::ALL {
            assert_eq!(
                serde_json::to_value(k).expect("json"),
                serde_json::Value::from(k.as_str())
            );
        }
    }
}
