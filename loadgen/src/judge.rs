//! One device's outcome against what its class expects: as expected, a verdict the server got
//! wrong (a false accept, a false reject, another wrong verdict), or an error that is no verdict
//! at all (a timeout, a reset, a 5.03, a strict check). Only the verdicts are mismatches: under
//! overload a valid device that times out says something about capacity, not about attestation.

use serde::{Deserialize, Serialize};

use crate::device::{self, Observed};
use crate::fleet::{Expected, Fleet};
use crate::scenario::DeviceMode;

/// What a device's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// What its class expects.
    AsExpected,
    /// A device that must be refused got in (provisioned, reconnected, or attested in
    /// handshake-only mode).
    FalseAccept,
    /// A device that must get in was refused with a verdict: a TLS alert, a TPM refusal, a 4.xx
    /// answer to a provisioning step.
    FalseReject,
    /// Another wrong verdict: refused for another reason (another alert, another TPM step or
    /// code, at a provisioning step instead of in the handshake), or let in with the wrong owner.
    WrongVerdict,
    /// No verdict: the attempt failed (timeout, connect, TLS, reset, busy, protocol, I/O, the
    /// device's own part) or the server sent what iotivity-lite's client would refuse.
    Error,
}

impl Judgement {
    /// A verdict other than the expected one (counted in `mismatches`).
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            Judgement::FalseAccept | Judgement::FalseReject | Judgement::WrongVerdict
        )
    }
}

/// Judge what a device `observed` against what its class `expected`.
pub fn judge(
    expected: &Expected,
    observed: &Observed,
    fleet: &Fleet,
    mode: DeviceMode,
) -> Judgement {
    use Judgement as J;
    if observed.is_error() {
        return J::Error;
    }
    let owner_of = |group: &str| fleet.groups.get(group).map(|g| g.owner_uuid.as_str());
    let got_in = matches!(
        observed,
        Observed::Provisioned { .. } | Observed::Reconnected { .. } | Observed::Attested
    );
    match expected {
        Expected::Accepted { group } | Expected::Reconnected { group } => {
            let reconnects = matches!(expected, Expected::Reconnected { .. });
            match observed {
                Observed::Provisioned { owner, .. } if !reconnects => {
                    verdict(owner_of(group) == Some(owner.as_str()))
                }
                Observed::Reconnected { owner, .. } if reconnects => {
                    verdict(owner_of(group) == Some(owner.as_str()))
                }
                Observed::Attested => verdict(mode.handshake_only()),
                Observed::Rejected { .. }
                | Observed::TpmRefused { .. }
                | Observed::Refused { .. } => J::FalseReject,
                _ => J::WrongVerdict,
            }
        }
        _ if got_in => J::FalseAccept,
        Expected::Rejected { reason } => match observed {
            Observed::Rejected { alert } => verdict(device::expected_alert(*reason) == alert),
            _ => J::WrongVerdict,
        },
        Expected::TpmRefused { step, code } => match observed {
            Observed::TpmRefused {
                step: seen_step,
                code: seen_code,
            } => verdict(step == seen_step && code == seen_code),
            _ => J::WrongVerdict,
        },
    }
}

fn verdict(right: bool) -> Judgement {
    if right {
        Judgement::AsExpected
    } else {
        Judgement::WrongVerdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{FailureKind, StrictCheck};
    use crate::fleet::tpm::TpmStep;
    use crate::fleet::GroupInfo;
    use dps_server::enrollment::RejectReason;
    use std::collections::BTreeMap;

    const OWNER: &str = "0b0f5d0e-7c4a-5d3e-9a51-6f1a2b3c4d5e";

    fn fleet() -> Fleet {
        Fleet {
            devices: Vec::new(),
            groups: BTreeMap::from([(
                "factory-a".to_owned(),
                GroupInfo {
                    name: "factory-a".into(),
                    owner_uuid: OWNER.into(),
                },
            )]),
            server_ca: rustls_pki_types::CertificateDer::from(Vec::new()),
            server_groups: Vec::new(),
            hub: dps_server::config::HubConfig {
                id: crate::fleet::HUB.into(),
                gateways: Vec::new(),
                name: None,
                authorization: None,
            },
            server_tpm_enrollments: Vec::new(),
            server_tpm_groups: Vec::new(),
        }
    }

    #[test]
    fn verdicts_are_told_apart_from_errors() {
        let fleet = fleet();
        let accepted = Expected::Accepted {
            group: "factory-a".into(),
        };
        let rejected = Expected::Rejected {
            reason: RejectReason::NoPath,
        };
        let tpm_refused = Expected::TpmRefused {
            step: TpmStep::Attest,
            code: "4.01".into(),
        };
        let provisioned = |owner: &str| Observed::Provisioned {
            owner: owner.into(),
            device_id: String::new(),
        };
        let alert = |a: &str| Observed::Rejected { alert: a.into() };
        let p = DeviceMode::Provision;
        use Judgement as J;
        for (expected, observed, mode, want) in [
            (&accepted, provisioned(OWNER), p, J::AsExpected),
            (&accepted, provisioned("someone-else"), p, J::WrongVerdict),
            (&accepted, alert("AccessDenied"), p, J::FalseReject),
            (
                &accepted,
                Observed::Refused {
                    phase: crate::metrics::Phase::Time,
                    code: "4.01".into(),
                },
                p,
                J::FalseReject,
            ),
            (
                &accepted,
                Observed::failed(FailureKind::Timeout, "timed out"),
                p,
                J::Error,
            ),
            (
                &accepted,
                Observed::failed(FailureKind::Busy, "5.03"),
                p,
                J::Error,
            ),
            (
                &accepted,
                Observed::Strict {
                    check: StrictCheck::ShortFrame,
                    detail: "5 bytes".into(),
                },
                p,
                J::Error,
            ),
            (
                &accepted,
                Observed::Attested,
                DeviceMode::HandshakeOnly,
                J::AsExpected,
            ),
            (&rejected, alert("UnknownCA"), p, J::AsExpected),
            (&rejected, alert("AccessDenied"), p, J::WrongVerdict),
            (&rejected, provisioned(OWNER), p, J::FalseAccept),
            (
                &rejected,
                Observed::Attested,
                DeviceMode::HandshakeOnly,
                J::FalseAccept,
            ),
            (
                &rejected,
                Observed::failed(FailureKind::Reset, "reset"),
                p,
                J::Error,
            ),
            (
                &tpm_refused,
                Observed::TpmRefused {
                    step: TpmStep::Attest,
                    code: "4.01".into(),
                },
                p,
                J::AsExpected,
            ),
            (
                &tpm_refused,
                Observed::TpmRefused {
                    step: TpmStep::Challenge,
                    code: "4.01".into(),
                },
                p,
                J::WrongVerdict,
            ),
            (&tpm_refused, provisioned(OWNER), p, J::FalseAccept),
        ] {
            assert_eq!(
                judge(expected, &observed, &fleet, mode),
                want,
                "{expected:?} / {observed:?}"
            );
        }
        assert!(J::FalseAccept.is_mismatch() && J::WrongVerdict.is_mismatch());
        assert!(!J::Error.is_mismatch() && !J::AsExpected.is_mismatch());
    }
}
