//! The outstanding TPM challenge of one connection.
//!
//! A challenge lives in its connection's [`ChallengeSlot`], which the connection task owns: it is
//! bound to that connection by construction (another connection cannot see it, and it disappears
//! with the connection), single-use (taking it empties the slot whatever the outcome), and carries
//! its own deadline. A new challenge on the same connection replaces the previous one.

use std::time::{Duration, Instant};

use crate::enrollment::CertId;
use crate::profile::Profile;

use super::marshal::Public;

/// How long a challenge may be answered unless configured otherwise (`[tpm] challenge_ttl_ms`).
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(30);

/// A challenge issued to a connection: what the answer must prove and what it admits.
#[derive(Debug)]
pub struct Challenge {
    /// The nonce the quote's extraData must carry.
    pub(crate) nonce: [u8; 32],
    /// The credential the EK must recover (compared in constant time).
    pub(crate) secret: [u8; 32],
    /// The AK the quote must be signed with (the credential is bound to its name).
    pub(crate) ak: Public,
    /// The TPM's registration id.
    pub(crate) registration_id: String,
    /// Key of its provisioning record: SHA-256 of the EK TPM2B_PUBLIC.
    pub(crate) record: CertId,
    /// The enrollment (individual or group) that admitted the EK.
    pub(crate) profile: Profile,
    /// After this instant the challenge is void.
    pub(crate) expires: Instant,
}

/// Why no challenge could be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// None outstanding on this connection (never issued, already used, or issued elsewhere).
    #[error("no outstanding TPM challenge on this connection (replayed or never issued)")]
    None,
    /// It was not answered in time.
    #[error("the TPM challenge expired")]
    Expired,
}

/// At most one outstanding challenge of one connection.
#[derive(Debug, Default)]
pub struct ChallengeSlot {
    pending: Option<Challenge>,
}

impl ChallengeSlot {
    /// An empty slot (a new connection).
    pub fn new() -> Self {
        Self::default()
    }

    /// Hold `challenge`, replacing any previous one.
    pub fn issue(&mut self, challenge: Challenge) {
        self.pending = Some(challenge);
    }

    /// Whether a challenge is outstanding (expired or not).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Take the outstanding challenge at `now`: it is gone afterwards, answered or not.
    pub fn take(&mut self, now: Instant) -> Result<Challenge, ChallengeError> {
        let c = self.pending.take().ok_or(ChallengeError::None)?;
        if now > c.expires {
            return Err(ChallengeError::Expired);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::enrollment::TpmEnrollment;
    use crate::tpm::soft::{AkKind, EkKind, SoftTpm};
    use std::sync::Arc;

    fn challenge(expires: Instant) -> Challenge {
        let t = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
        let def = crate::enrollment::EnrollmentGroup::new("t", "o", Vec::new());
        Challenge {
            nonce: [1; 32],
            secret: [2; 32],
            ak: t.ak().public().clone(),
            registration_id: t.registration_id(),
            record: CertId::of(&t.ek().public().to_tpm2b()),
            profile: Profile::Individual(Arc::new(TpmEnrollment {
                registration_id: t.registration_id(),
                ek_public: t.ek().public().to_tpm2b(),
                def,
            })),
            expires,
        }
    }

    #[test]
    fn single_use() {
        let now = Instant::now();
        let mut slot = ChallengeSlot::new();
        assert_eq!(slot.take(now).err(), Some(ChallengeError::None));
        slot.issue(challenge(now + Duration::from_secs(30)));
        assert!(slot.is_pending());
        assert!(slot.take(now).is_ok());
        assert_eq!(slot.take(now).err(), Some(ChallengeError::None));
    }

    #[test]
    fn expires_and_is_gone_after_a_late_answer() {
        let now = Instant::now();
        let mut slot = ChallengeSlot::new();
        slot.issue(challenge(now + Duration::from_millis(10)));
        let late = now + Duration::from_millis(11);
        assert_eq!(slot.take(late).err(), Some(ChallengeError::Expired));
        assert_eq!(slot.take(now).err(), Some(ChallengeError::None));
    }
}
