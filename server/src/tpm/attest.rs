//! The server side of the TPM nonce challenge: who may be challenged, what the challenge is, and
//! what a correct answer proves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::constant_time;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::challenge::{Challenge, ChallengeError, ChallengeSlot};
use super::enrollment::{certificate_certifies, TpmEnrollments};
use super::make_credential::{check_storage_key, make_credential};
use super::marshal::Public;
use super::quote::{check_attestation_key, verify_quote, QuoteError};
use crate::enrollment::{Arena, CertId, Verdict};
use crate::profile::Profile;
use crate::proto::body::{TpmAttestRequest, TpmChallengeRequest, TpmChallengeResponse};
use crate::proto::coap::Code;

/// Why a challenge was not issued or an answer not accepted. [`AttestError::code`] is the CoAP
/// answer; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// A structure in the request does not parse, or the EK is not a storage key (4.00).
    #[error("bad TPM request: {0}")]
    Malformed(String),
    /// No individual enrollment has this EK and no EK certificate selected a TPM enrollment
    /// group (4.01).
    #[error("TPM not enrolled: {0}")]
    Unenrolled(String),
    /// The AK cannot attest (4.01).
    #[error(transparent)]
    AttestationKey(QuoteError),
    /// No live challenge on this connection: never issued, already answered, expired (4.01).
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The secret is not the credential (wrong EK, tampered blob, other AK) (4.01).
    #[error("the activated secret is wrong")]
    WrongSecret,
    /// The quote does not verify (4.01).
    #[error(transparent)]
    Quote(QuoteError),
    /// The server failed (5.00).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AttestError {
    /// The CoAP response code.
    pub fn code(&self) -> Code {
        match self {
            AttestError::Malformed(_) => Code::BAD_REQUEST,
            AttestError::Internal(_) => Code::INTERNAL,
            _ => Code::UNAUTHORIZED,
        }
    }

    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            AttestError::Malformed(_) => "malformed",
            AttestError::Unenrolled(_) => "unenrolled",
            AttestError::AttestationKey(_) => "bad_ak",
            AttestError::Challenge(ChallengeError::None) => "no_challenge",
            AttestError::Challenge(ChallengeError::Expired) => "expired",
            AttestError::WrongSecret => "wrong_secret",
            AttestError::Quote(QuoteError::NonceMismatch) => "nonce_mismatch",
            AttestError::Quote(_) => "bad_quote",
            AttestError::Internal(_) => "internal",
        }
    }
}

/// A TPM that answered its challenge.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Its registration id.
    pub registration_id: String,
    /// Its provisioning record's key (SHA-256 of the EK TPM2B_PUBLIC).
    pub record: CertId,
    /// What admitted it; the session is provisioned by this.
    pub profile: Profile,
}

/// Issues challenges and checks answers, against the published TPM enrollment groups (in the
/// arena) and individual TPM enrollments.
#[derive(Debug)]
pub struct Attestor {
    arena: Arc<Arena>,
    enrollments: Arc<TpmEnrollments>,
    ttl: Duration,
    rng: SystemRandom,
}

impl Attestor {
    /// An attestor over `arena` and `enrollments`; challenges live `ttl`.
    pub fn new(arena: Arc<Arena>, enrollments: Arc<TpmEnrollments>, ttl: Duration) -> Self {
        Self {
            arena,
            enrollments,
            ttl,
            rng: SystemRandom::new(),
        }
    }

    /// The individual TPM enrollments (admin updates go here).
    pub fn enrollments(&self) -> &Arc<TpmEnrollments> {
        &self.enrollments
    }

    /// How long a challenge lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Admit the EK, check the AK, make a credential bound to the AK's name and put the challenge
    /// into `slot` (replacing an older one).
    pub fn challenge(
        &self,
        req: &TpmChallengeRequest,
        slot: &mut ChallengeSlot,
    ) -> Result<TpmChallengeResponse, AttestError> {
        let malformed =
            |what: &str, e: &dyn std::fmt::Display| AttestError::Malformed(format!("{what}: {e}"));
        let ek = Public::from_tpm2b(&req.ek_public).map_err(|e| malformed("ekPublic", &e))?;
        check_storage_key(&ek).map_err(|e| malformed("ekPublic", &e))?;
        let ak = Public::from_tpm2b(&req.ak_public).map_err(|e| malformed("akPublic", &e))?;
        let registration_id = super::registration_id(&req.ek_public);
        let profile = self.admit(req, &ek, &registration_id)?;
        check_attestation_key(&ak).map_err(AttestError::AttestationKey)?;
        let mut secret = [0u8; 32];
        let mut nonce = [0u8; 32];
        self.rng
            .fill(&mut secret)
            .and_then(|()| self.rng.fill(&mut nonce))
            .map_err(|_| AttestError::Internal("random".into()))?;
        // Every accepted nameAlg has a digest of at least 32 bytes, the credential's size.
        let credential =
            make_credential(&ek, &ak.name(), &secret).map_err(|e| malformed("ekPublic", &e))?;
        slot.issue(Challenge {
            nonce,
            secret,
            ak,
            registration_id,
            record: CertId::of(&req.ek_public),
            profile,
            expires: Instant::now() + self.ttl,
        });
        Ok(TpmChallengeResponse {
            credential_blob: credential.credential_blob,
            encrypted_secret: credential.encrypted_secret,
            nonce: nonce.to_vec(),
        })
    }

    /// The enrollment that admits this EK: an individual enrollment of its registration id first,
    /// else the TPM enrollment group its certificate chain selects.
    fn admit(
        &self,
        req: &TpmChallengeRequest,
        ek: &Public,
        registration_id: &str,
    ) -> Result<Profile, AttestError> {
        if let Some(e) = self.enrollments.get(registration_id) {
            return Ok(Profile::Individual(e));
        }
        let Some(cert) = &req.ek_certificate else {
            return Err(AttestError::Unenrolled(format!(
                "no enrollment for registration id {registration_id} and no EK certificate"
            )));
        };
        if !certificate_certifies(cert, ek) {
            return Err(AttestError::Unenrolled(
                "the EK certificate does not certify ekPublic".into(),
            ));
        }
        let chain: Vec<CertificateDer<'_>> = std::iter::once(cert)
            .chain(req.ek_chain.iter())
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let snapshot = self.arena.load();
        match snapshot.authenticate_ek(&chain, UnixTime::now(), registration_id) {
            Verdict::Accepted(a) => snapshot
                .group(&a.group)
                .cloned()
                .map(Profile::Group)
                .ok_or_else(|| AttestError::Unenrolled("group removed".into())),
            Verdict::Rejected(reason) => Err(AttestError::Unenrolled(format!(
                "EK certificate chain rejected: {reason}"
            ))),
        }
    }

    /// Check an answer against the connection's outstanding challenge, which is used up.
    pub fn attest(
        &self,
        req: &TpmAttestRequest,
        slot: &mut ChallengeSlot,
    ) -> Result<Attested, AttestError> {
        let challenge = slot.take(Instant::now())?;
        constant_time::verify_slices_are_equal(&req.secret, &challenge.secret)
            .map_err(|_| AttestError::WrongSecret)?;
        verify_quote(&challenge.ak, &req.quote, &req.signature, &challenge.nonce)
            .map_err(AttestError::Quote)?;
        Ok(Attested {
            registration_id: challenge.registration_id,
            record: challenge.record,
            profile: challenge.profile,
        })
    }
}
