//! TPM attestation (the "TPM nonce challenge" of the protocol spec): strict marshalling of the TPM
//! structures exchanged, TPM2_MakeCredential in software, quote verification, the per-connection
//! challenge, TPM enrollments (individual EKs and EK-certificate groups), and a soft TPM that plays
//! the device side for tests and the load generator.
//!
//! Server flow: [`Attestor::challenge`] checks the EK (enrolled individually, or its certificate
//! chain selects a TPM enrollment group) and the AK, makes a credential for the AK's name with a
//! fresh secret and returns it with a nonce; [`Attestor::attest`] takes the outstanding challenge
//! (single-use, bound to its connection, expiring) and checks secret, quote and signature.

pub mod alg;
mod attest;
pub mod challenge;
pub mod enrollment;
pub mod kdf;
pub mod make_credential;
pub mod marshal;
mod marshal_error;
pub mod quote;
pub mod soft;
#[cfg(feature = "tpm-sim")]
pub mod swtpm;

pub use attest::{AttestError, Attested, Attestor};
pub use challenge::{Challenge, ChallengeSlot, DEFAULT_CHALLENGE_TTL};
pub use enrollment::{TpmEnrollment, TpmEnrollmentConfig, TpmEnrollmentError, TpmEnrollments};
pub use make_credential::{make_credential, Credential, CredentialError};
pub use marshal::{Attest, MarshalError, Public, Signature};
pub use quote::{check_attestation_key, verify_quote, QuoteError};

/// The registration id of a TPM: SHA-256 over the marshalled EK TPM2B_PUBLIC, base32 (RFC 4648
/// alphabet, lower case as Azure DPS writes it) without padding. 52 characters.
pub fn registration_id(ek_public_tpm2b: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ek_public_tpm2b);
    data_encoding::BASE32_NOPAD
        .encode(digest.as_ref())
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn registration_id_is_lower_case_unpadded_base32_of_sha256() {
        // SHA-256("abc") = ba7816bf...; its base32 computed independently (Python's b32encode).
        assert_eq!(
            super::registration_id(b"abc"),
            "xj4bnp4pahh6uqkbidpf3lrceoyagyndsylxvhfucd7wd4qacwwq"
        );
        assert_eq!(super::registration_id(b"").len(), 52);
    }
}
