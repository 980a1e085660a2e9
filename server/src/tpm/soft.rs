//! A software TPM: the device side of the TPM nonce challenge, for tests and the load generator.
//!
//! It holds an EK (RSA-2048 or ECC P-256, the TCG EK Credential Profile's default templates) and
//! an AK (a restricted signing key), implements TPM2_ActivateCredential (Part 3 §12.5: recover
//! the seed with the EK, check the outer HMAC, decrypt the credential) and TPM2_Quote (a
//! TPMS_ATTEST carrying the nonce, signed by the AK), and turns a challenge response into the
//! attest request. Keys live in memory; a `SoftTpm` is `Send + Sync` and cheap to share.
//!
//! ```
//! use dps_server::proto::body::TpmChallengeResponse;
//! use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm, SoftTpmError};
//!
//! // The second request, from the server's answer to the first.
//! fn answer(tpm: &SoftTpm, response: &TpmChallengeResponse) -> Result<(), SoftTpmError> {
//!     let _attest = tpm.attest_request(response)?; // POST /api/v1/provisioning/tpm/attest
//!     Ok(())
//! }
//!
//! let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256)?;
//! let _request = tpm.challenge_request(); // POST /api/v1/provisioning/tpm/challenge
//! # Ok::<(), SoftTpmError>(())
//! ```

use std::time::Instant;

use aws_lc_rs::agreement::{self, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};

use super::alg::{HashAlg, TPM_GENERATED_VALUE};
use super::make_credential::{
    check_storage_key, ecc_seed_from_z, ecdh_alg, oaep_alg, unprotect, CredentialError,
    IDENTITY_LABEL,
};
use super::marshal::{
    attr, Attest, ClockInfo, Curve, PcrSelection, Public, PublicKey, Reader, Scheme, Signature,
    SymDef,
};
use crate::proto::body::{TpmAttestRequest, TpmChallengeRequest, TpmChallengeResponse};

/// authPolicy of the TCG default EK templates: PolicySecret(TPM_RH_ENDORSEMENT).
pub const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// objectAttributes of the default EK templates: fixedTPM, fixedParent, sensitiveDataOrigin,
/// adminWithPolicy, restricted, decrypt (0x000300b2).
pub const EK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::ADMIN_WITH_POLICY
    | attr::RESTRICTED
    | attr::DECRYPT;

/// objectAttributes of an attestation key: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, restricted, sign (0x00050072).
pub const AK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::USER_WITH_AUTH
    | attr::RESTRICTED
    | attr::SIGN;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, 65-byte point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why the soft TPM could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SoftTpmError {
    /// Key generation or signing failed in the crypto library.
    #[error("soft TPM crypto failure: {0}")]
    Crypto(&'static str),
    /// ActivateCredential refused the blob (wrong EK, tampered blob, other AK name).
    #[error("ActivateCredential: {0}")]
    Credential(#[from] CredentialError),
}

/// The EK key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkKind {
    /// RSA 2048 (template L-1). Key generation takes tens of milliseconds.
    Rsa2048,
    /// ECC NIST P-256 (template L-2). Cheap to generate: the choice for large fleets.
    EccP256,
}

/// The AK key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AkKind {
    /// ECDSA P-256 with SHA-256.
    EccP256,
    /// RSASSA-PKCS1-v1_5 2048 with SHA-256.
    Rsa2048,
}

enum EkPrivate {
    Rsa(PrivateDecryptingKey),
    Ecc(agreement::PrivateKey),
}

/// A software endorsement key.
pub struct SoftEk {
    public: Public,
    private: EkPrivate,
    spki: Vec<u8>,
}

impl std::fmt::Debug for SoftEk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftEk")
            .field("public", &self.public)
            .finish()
    }
}

impl SoftEk {
    /// Generate an EK of `kind` in the default EK template.
    pub fn generate(kind: EkKind) -> Result<Self, SoftTpmError> {
        let crypto = SoftTpmError::Crypto;
        match kind {
            EkKind::Rsa2048 => Self::from_rsa(
                PrivateDecryptingKey::generate(KeySize::Rsa2048)
                    .map_err(|_| crypto("RSA key generation"))?,
            ),
            EkKind::EccP256 => Self::from_ecc(
                agreement::PrivateKey::generate(&agreement::ECDH_P256)
                    .map_err(|_| crypto("ECC key generation"))?,
            ),
        }
    }

    /// The EK whose private key is `pkcs8` (as [`SoftEk::to_pkcs8`] wrote it): a fleet of soft
    /// TPMs kept on disk comes back with the same EKs, hence the same enrollments.
    pub fn from_pkcs8(kind: EkKind, pkcs8: &[u8]) -> Result<Self, SoftTpmError> {
        let rejected = |_| SoftTpmError::Crypto("EK private key does not parse");
        match kind {
            EkKind::Rsa2048 => {
                Self::from_rsa(PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(rejected)?)
            }
            EkKind::EccP256 => Self::from_ecc(
                agreement::PrivateKey::from_private_key_der(&agreement::ECDH_P256, pkcs8)
                    .map_err(rejected)?,
            ),
        }
    }

    /// The private key, PKCS#8 DER.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, SoftTpmError> {
        let der: Result<Pkcs8V1Der<'static>, _> = match &self.private {
            EkPrivate::Rsa(key) => key.as_der(),
            EkPrivate::Ecc(key) => key.as_der(),
        };
        der.map(|d| d.as_ref().to_vec())
            .map_err(|_| SoftTpmError::Crypto("EK private key encoding"))
    }

    /// The key type.
    pub fn kind(&self) -> EkKind {
        match self.private {
            EkPrivate::Rsa(_) => EkKind::Rsa2048,
            EkPrivate::Ecc(_) => EkKind::EccP256,
        }
    }

    fn from_rsa(key: PrivateDecryptingKey) -> Result<Self, SoftTpmError> {
        let crypto = SoftTpmError::Crypto;
        if key.key_size_bits() != 2048 {
            return Err(crypto("the RSA EK template is 2048 bits"));
        }
        let spki = key
            .public_key()
            .as_der()
            .map_err(|_| crypto("RSA public key"))?
            .as_ref()
            .to_vec();
        let parsed = rsa::PublicKey::from_der(&spki).map_err(|_| crypto("RSA public key"))?;
        let c = rsa::PublicKeyComponents::<Vec<u8>>::from(&parsed);
        let exponent = if c.e == [1, 0, 1] { 0 } else { be_u32(&c.e) };
        let public = Public::new(
            HashAlg::Sha256,
            EK_ATTRIBUTES,
            EK_POLICY.to_vec(),
            Some(SymDef { key_bits: 128 }),
            Scheme::Null,
            PublicKey::Rsa {
                bits: 2048,
                exponent,
                modulus: c.n,
            },
        );
        Ok(Self {
            public,
            private: EkPrivate::Rsa(key),
            spki,
        })
    }

    fn from_ecc(key: agreement::PrivateKey) -> Result<Self, SoftTpmError> {
        let point = key
            .compute_public_key()
            .map_err(|_| SoftTpmError::Crypto("ECC public key"))?;
        let point = point.as_ref();
        let public = Public::new(
            HashAlg::Sha256,
            EK_ATTRIBUTES,
            EK_POLICY.to_vec(),
            Some(SymDef { key_bits: 128 }),
            Scheme::Null,
            PublicKey::Ecc {
                curve: Curve::NistP256,
                x: point[1..33].to_vec(),
                y: point[33..65].to_vec(),
            },
        );
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        Ok(Self {
            public,
            private: EkPrivate::Ecc(key),
            spki,
        })
    }

    /// The EK's public area.
    pub fn public(&self) -> &Public {
        &self.public
    }

    /// The EK's public key as an X.509 SubjectPublicKeyInfo (DER), to issue an EK certificate.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// TPM2_ActivateCredential's credential recovery for the object named `object_name`.
    pub fn activate(
        &self,
        object_name: &[u8],
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, CredentialError> {
        check_storage_key(&self.public)?;
        let mut r = Reader::new(encrypted_secret, "TPM2B_ENCRYPTED_SECRET");
        let secret = r.tpm2b(usize::from(u16::MAX), "TPM2B_ENCRYPTED_SECRET size")?;
        r.finish()?;
        let name_alg = self.public.name_alg;
        let seed = match (&self.private, &self.public.key) {
            (EkPrivate::Rsa(key), _) => {
                let oaep = OaepPrivateDecryptingKey::new(key.clone())
                    .map_err(|_| CredentialError::Crypto("RSA-OAEP key"))?;
                let mut out = vec![0u8; oaep.min_output_size()];
                let seed = oaep
                    .decrypt(oaep_alg(name_alg), secret, &mut out, Some(IDENTITY_LABEL))
                    .map_err(|_| CredentialError::Seed)?;
                seed.to_vec()
            }
            (EkPrivate::Ecc(key), PublicKey::Ecc { curve, x: ek_x, .. }) => {
                let mut r = Reader::new(secret, "TPMS_ECC_POINT");
                let n = curve.coordinate_len();
                let ex = r.tpm2b(n, "ECC x longer than the curve")?;
                let ey = r.tpm2b(n, "ECC y longer than the curve")?;
                r.finish()?;
                let point = PublicKey::sec1_point(*curve, ex, ey).ok_or(CredentialError::Seed)?;
                agreement::agree(
                    key,
                    UnparsedPublicKey::new(ecdh_alg(*curve), &point),
                    CredentialError::Seed,
                    |z| Ok(ecc_seed_from_z(name_alg, z, ex, ek_x)),
                )?
            }
            (EkPrivate::Ecc(_), PublicKey::Rsa { .. }) => {
                return Err(CredentialError::BadKey("EK key type"))
            }
        };
        unprotect(&self.public, &seed, object_name, credential_blob)
    }
}

enum AkPrivate {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A software attestation key.
pub struct SoftAk {
    public: Public,
    private: AkPrivate,
}

impl std::fmt::Debug for SoftAk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftAk")
            .field("public", &self.public)
            .finish()
    }
}

impl SoftAk {
    /// Generate a restricted signing key of `kind`.
    pub fn generate(kind: AkKind) -> Result<Self, SoftTpmError> {
        let crypto = SoftTpmError::Crypto;
        match kind {
            AkKind::EccP256 => Ok(Self::from_ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| crypto("ECDSA key generation"))?,
            )),
            AkKind::Rsa2048 => Ok(Self::from_rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| crypto("RSA key generation"))?,
            )),
        }
    }

    /// The AK whose private key is `pkcs8` (as [`SoftAk::to_pkcs8`] wrote it).
    pub fn from_pkcs8(kind: AkKind, pkcs8: &[u8]) -> Result<Self, SoftTpmError> {
        let rejected = |_| SoftTpmError::Crypto("AK private key does not parse");
        match kind {
            AkKind::EccP256 => Ok(Self::from_ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(rejected)?,
            )),
            AkKind::Rsa2048 => {
                let key = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                if key.public_modulus_len() != 256 {
                    return Err(SoftTpmError::Crypto("the RSA AK is 2048 bits"));
                }
                Ok(Self::from_rsa(key))
            }
        }
    }

    /// The private key, PKCS#8 DER.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, SoftTpmError> {
        let encoding = |_| SoftTpmError::Crypto("AK private key encoding");
        match &self.private {
            AkPrivate::Ecdsa(key) => Ok(key.to_pkcs8v1().map_err(encoding)?.as_ref().to_vec()),
            AkPrivate::Rsa(key) => {
                let der: Pkcs8V1Der<'static> = key.as_der().map_err(encoding)?;
                Ok(der.as_ref().to_vec())
            }
        }
    }

    /// The key type.
    pub fn kind(&self) -> AkKind {
        match self.private {
            AkPrivate::Ecdsa(_) => AkKind::EccP256,
            AkPrivate::Rsa(_) => AkKind::Rsa2048,
        }
    }

    fn from_ecdsa(key: EcdsaKeyPair) -> Self {
        let point = key.public_key().as_ref();
        let public = Public::new(
            HashAlg::Sha256,
            AK_ATTRIBUTES,
            Vec::new(),
            None,
            Scheme::Ecdsa(HashAlg::Sha256),
            PublicKey::Ecc {
                curve: Curve::NistP256,
                x: point[1..33].to_vec(),
                y: point[33..65].to_vec(),
            },
        );
        Self {
            public,
            private: AkPrivate::Ecdsa(key),
        }
    }

    fn from_rsa(key: RsaKeyPair) -> Self {
        let c = rsa::PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let exponent = if c.e == [1, 0, 1] { 0 } else { be_u32(&c.e) };
        let public = Public::new(
            HashAlg::Sha256,
            AK_ATTRIBUTES,
            Vec::new(),
            None,
            Scheme::Rsassa(HashAlg::Sha256),
            PublicKey::Rsa {
                bits: 2048,
                exponent,
                modulus: c.n,
            },
        );
        Self {
            public,
            private: AkPrivate::Rsa(key),
        }
    }

    /// The AK's public area.
    pub fn public(&self) -> &Public {
        &self.public
    }

    /// Sign `message` (a marshalled TPMS_ATTEST) in the AK's scheme: a marshalled TPMT_SIGNATURE.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SoftTpmError> {
        let rng = SystemRandom::new();
        let sig = match &self.private {
            AkPrivate::Ecdsa(key) => {
                let sig = key
                    .sign(&rng, message)
                    .map_err(|_| SoftTpmError::Crypto("ECDSA signature"))?;
                let (r, s) = sig.as_ref().split_at(32);
                Signature::Ecdsa {
                    hash: HashAlg::Sha256,
                    r: r.to_vec(),
                    s: s.to_vec(),
                }
            }
            AkPrivate::Rsa(key) => {
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SoftTpmError::Crypto("RSA signature"))?;
                Signature::Rsassa {
                    hash: HashAlg::Sha256,
                    sig,
                }
            }
        };
        Ok(sig.marshal())
    }
}

fn be_u32(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
}

/// A soft TPM: an EK, an AK, and a clock for its quotes.
#[derive(Debug)]
pub struct SoftTpm {
    ek: SoftEk,
    ak: SoftAk,
    started: Instant,
    ek_certificate: Option<Vec<u8>>,
    ek_chain: Vec<Vec<u8>>,
}

impl SoftTpm {
    /// A TPM with a fresh EK and AK.
    pub fn generate(ek: EkKind, ak: AkKind) -> Result<Self, SoftTpmError> {
        Ok(Self::from_keys(
            SoftEk::generate(ek)?,
            SoftAk::generate(ak)?,
        ))
    }

    /// A TPM from existing keys (e.g. an EK shared by adversarial variants).
    pub fn from_keys(ek: SoftEk, ak: SoftAk) -> Self {
        Self {
            ek,
            ak,
            started: Instant::now(),
            ek_certificate: None,
            ek_chain: Vec::new(),
        }
    }

    /// Present `certificate` (DER) and its intermediates `chain` (DER, leaf-most first) in the
    /// challenge request: what a TPM enrollment group needs.
    pub fn with_ek_certificate(mut self, certificate: Vec<u8>, chain: Vec<Vec<u8>>) -> Self {
        self.ek_certificate = Some(certificate);
        self.ek_chain = chain;
        self
    }

    /// The endorsement key.
    pub fn ek(&self) -> &SoftEk {
        &self.ek
    }

    /// The attestation key.
    pub fn ak(&self) -> &SoftAk {
        &self.ak
    }

    /// The registration id the DPS derives from this EK.
    pub fn registration_id(&self) -> String {
        super::registration_id(&self.ek.public.to_tpm2b())
    }

    /// TPM2_ActivateCredential with the AK as the activated object.
    pub fn activate_credential(
        &self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, CredentialError> {
        self.ek
            .activate(&self.ak.public.name(), credential_blob, encrypted_secret)
    }

    /// TPM2_Quote over no PCRs with `nonce` as qualifying data: (TPMS_ATTEST, TPMT_SIGNATURE).
    pub fn quote(&self, nonce: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SoftTpmError> {
        let attest = Attest {
            magic: TPM_GENERATED_VALUE,
            qualified_signer: self.ak.public.name(),
            extra_data: nonce.to_vec(),
            clock_info: ClockInfo {
                clock: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2024_0001,
            pcr_select: vec![PcrSelection {
                hash: HashAlg::Sha256.id(),
                select: vec![0, 0, 0],
            }],
            pcr_digest: HashAlg::Sha256.digest(&[]),
        }
        .marshal();
        let signature = self.ak.sign(&attest)?;
        Ok((attest, signature))
    }

    /// The body of `POST /api/v1/provisioning/tpm/challenge`.
    pub fn challenge_request(&self) -> TpmChallengeRequest {
        TpmChallengeRequest {
            ek_public: self.ek.public.to_tpm2b(),
            ek_certificate: self.ek_certificate.clone(),
            ek_chain: self.ek_chain.clone(),
            ak_public: self.ak.public.to_tpm2b(),
        }
    }

    /// The body of `POST /api/v1/provisioning/tpm/attest` answering `challenge`: the activated
    /// secret and a quote over the nonce.
    pub fn attest_request(
        &self,
        challenge: &TpmChallengeResponse,
    ) -> Result<TpmAttestRequest, SoftTpmError> {
        let secret =
            self.activate_credential(&challenge.credential_blob, &challenge.encrypted_secret)?;
        let (quote, signature) = self.quote(&challenge.nonce)?;
        Ok(TpmAttestRequest {
            secret,
            quote,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_default_templates_and_round_trip() {
        for (ek, ak) in [
            (EkKind::Rsa2048, AkKind::Rsa2048),
            (EkKind::EccP256, AkKind::EccP256),
        ] {
            let t = SoftTpm::generate(ek, ak).expect("generate");
            let ek_bytes = t.ek().public().to_tpm2b();
            let parsed = Public::from_tpm2b(&ek_bytes).expect("EK parses");
            assert_eq!(&parsed, t.ek().public());
            assert_eq!(parsed.attributes, 0x0003_00b2);
            let ak_bytes = t.ak().public().to_tpm2b();
            let parsed = Public::from_tpm2b(&ak_bytes).expect("AK parses");
            assert_eq!(parsed.attributes, 0x0005_0072);
            assert_eq!(parsed.name(), t.ak().public().name());
            // RSA EK template: 2 + 2+2+4 + 2+32 + 6 + 2 + 2+4 + 2+256.
            if ek == EkKind::Rsa2048 {
                assert_eq!(ek_bytes.len(), 2 + 314);
            } else {
                assert_eq!(ek_bytes.len(), 2 + 122);
            }
        }
    }

    #[test]
    fn keys_round_trip_through_pkcs8() {
        for (ek, ak) in [
            (EkKind::Rsa2048, AkKind::Rsa2048),
            (EkKind::EccP256, AkKind::EccP256),
        ] {
            let t = SoftTpm::generate(ek, ak).expect("generate");
            let ek_der = t.ek().to_pkcs8().expect("EK encodes");
            let ak_der = t.ak().to_pkcs8().expect("AK encodes");
            let back = SoftTpm::from_keys(
                SoftEk::from_pkcs8(t.ek().kind(), &ek_der).expect("EK decodes"),
                SoftAk::from_pkcs8(t.ak().kind(), &ak_der).expect("AK decodes"),
            );
            assert_eq!((back.ek().kind(), back.ak().kind()), (ek, ak));
            assert_eq!(back.ek().public(), t.ek().public());
            assert_eq!(back.ek().spki_der(), t.ek().spki_der());
            assert_eq!(back.ak().public(), t.ak().public());
            assert_eq!(back.registration_id(), t.registration_id());
            // The restored EK activates what is made for the original, for the restored AK.
            let made =
                crate::tpm::make_credential(t.ek().public(), &back.ak().public().name(), &[7; 32])
                    .expect("make credential");
            assert_eq!(
                back.activate_credential(&made.credential_blob, &made.encrypted_secret)
                    .expect("activate"),
                vec![7; 32]
            );
        }
        assert!(SoftEk::from_pkcs8(EkKind::EccP256, b"junk").is_err());
        let rsa_ek = SoftEk::generate(EkKind::Rsa2048).expect("rsa");
        let der = rsa_ek.to_pkcs8().expect("der");
        assert!(
            SoftEk::from_pkcs8(EkKind::EccP256, &der).is_err(),
            "kind is checked"
        );
    }

    #[test]
    fn spki_matches_the_public_area() {
        let ek = SoftEk::generate(EkKind::EccP256).expect("ek");
        let PublicKey::Ecc { x, y, .. } = &ek.public().key else {
            panic!("ecc")
        };
        assert_eq!(&ek.spki_der()[27..59], x.as_slice());
        assert_eq!(&ek.spki_der()[59..], y.as_slice());
        use x509_parser::prelude::FromDer;
        let (_, spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(ek.spki_der()).expect("spki");
        assert_eq!(spki.subject_public_key.data.len(), 65);
    }
}
