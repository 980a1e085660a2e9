//! `[[attack]]`: hostile traffic beside the devices (what each kind does: [`crate::attack`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an attacker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// TCP only, no TLS.
    IdleTcp,
    /// TLS, half a CoAP frame, silence.
    HalfFrame,
    /// TLS, a length field beyond any limit.
    Oversized,
    /// Refused handshakes, back to back.
    HandshakeStorm,
}

impl AttackKind {
    /// The kebab-case name, as in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            AttackKind::IdleTcp => "idle-tcp",
            AttackKind::HalfFrame => "half-frame",
            AttackKind::Oversized => "oversized",
            AttackKind::HandshakeStorm => "handshake-storm",
        }
    }
}

/// Compares by name, as the attack report's string used to be compared.
impl PartialEq<&str> for AttackKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[attack]]`: one kind of hostile traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// What the attackers do.
    pub kind: AttackKind,
    /// Attacker connections at once.
    pub connections: usize,
    /// When they start, from the start of the devices, e.g. "5s".
    #[serde(default, with = "humantime_serde")]
    pub start: Duration,
    /// How long they keep at it, e.g. "20s".
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// New attacker connections per second while building up; 0 = all at once.
    #[serde(default)]
    pub rate: f64,
}
