//! TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6) and its inverse, the
//! credential unwrapping half of TPM2_ActivateCredential (used by the soft TPM).
//!
//! The seed is protected to the EK: RSA-OAEP with the EK's nameAlg and label "IDENTITY\0", or for
//! an ECC EK an ephemeral ECDH whose shared x-coordinate goes through KDFe("IDENTITY"). From the
//! seed, KDFa("STORAGE", AK name) gives the AES key that CFB-encrypts the marshalled credential
//! with a zero IV, and KDFa("INTEGRITY") the HMAC key of the outer HMAC over encIdentity ‖ AK name.

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, PublicKeyComponents};
use aws_lc_rs::{constant_time, hmac};

use super::alg::HashAlg;
use super::kdf::{kdfa, kdfe};
use super::marshal::{attr, Curve, MarshalError, Public, PublicKey, Reader, Writer};

/// OAEP label and KDFe label of credential protection ("IDENTITY" with its NUL).
pub(crate) const IDENTITY_LABEL: &[u8] = b"IDENTITY\0";

/// TPM2_MakeCredential output, both marshalled as a TPM expects them in TPM2_ActivateCredential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT: outer HMAC and encrypted credential.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET: the seed protected to the EK.
    pub encrypted_secret: Vec<u8>,
}

/// Why a credential could not be made or recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The EK is not a restricted decryption key with a symmetric algorithm (a storage key).
    #[error("the EK is not a restricted decryption (storage) key with a symmetric algorithm")]
    NotStorageKey,
    /// The credential is longer than the EK's nameAlg digest.
    #[error("credential longer than the EK's name digest")]
    CredentialTooLong,
    /// The EK's public key is unusable (bad RSA key, ECC point not on the curve).
    #[error("the EK public key is unusable: {0}")]
    BadKey(&'static str),
    /// A cryptographic primitive failed.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
    /// A blob does not parse.
    #[error(transparent)]
    Marshal(#[from] MarshalError),
    /// The seed could not be recovered with this EK (wrong EK, tampered secret).
    #[error("the encrypted secret does not decrypt with this EK")]
    Seed,
    /// The outer HMAC does not verify (tampered blob, other EK, other object name).
    #[error("credential blob integrity check failed")]
    Integrity,
}

/// Make a credential for the object named `object_name` (the AK's name), protected to `ek`,
/// with a fresh random seed.
pub fn make_credential(
    ek: &Public,
    object_name: &[u8],
    credential: &[u8],
) -> Result<Credential, CredentialError> {
    check_storage_key(ek)?;
    if credential.len() > ek.name_alg.len() {
        return Err(CredentialError::CredentialTooLong);
    }
    let (seed, secret) = match &ek.key {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => rsa_seed(ek.name_alg, modulus, *exponent)?,
        PublicKey::Ecc { curve, x, y } => ecc_seed(ek.name_alg, *curve, x, y)?,
    };
    let credential_blob = protect(ek, &seed, object_name, credential)?;
    let mut w = Writer::default();
    w.tpm2b(&secret);
    Ok(Credential {
        credential_blob,
        encrypted_secret: w.0,
    })
}

pub(crate) fn check_storage_key(ek: &Public) -> Result<(), CredentialError> {
    if !ek.has(attr::RESTRICTED | attr::DECRYPT) || ek.has(attr::SIGN) || ek.symmetric.is_none() {
        return Err(CredentialError::NotStorageKey);
    }
    Ok(())
}

fn rsa_seed(
    name_alg: HashAlg,
    modulus: &[u8],
    exponent: u32,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let rng = SystemRandom::new();
    let mut seed = vec![0u8; name_alg.len()];
    rng.fill(&mut seed)
        .map_err(|_| CredentialError::Crypto("random seed"))?;
    let public: PublicEncryptingKey = PublicKeyComponents {
        n: modulus,
        e: PublicKey::rsa_exponent_bytes(exponent).as_slice(),
    }
    .try_into()
    .map_err(|_| CredentialError::BadKey("RSA public key"))?;
    let oaep =
        OaepPublicEncryptingKey::new(public).map_err(|_| CredentialError::BadKey("RSA-OAEP"))?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let n = oaep
        .encrypt(oaep_alg(name_alg), &seed, &mut out, Some(IDENTITY_LABEL))
        .map_err(|_| CredentialError::Crypto("RSA-OAEP encryption"))?
        .len();
    out.truncate(n);
    Ok((seed, out))
}

pub(crate) fn oaep_alg(h: HashAlg) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
    match h {
        HashAlg::Sha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        HashAlg::Sha384 => &aws_lc_rs::rsa::OAEP_SHA384_MGF1SHA384,
        HashAlg::Sha512 => &aws_lc_rs::rsa::OAEP_SHA512_MGF1SHA512,
    }
}

pub(crate) fn ecdh_alg(c: Curve) -> &'static agreement::Algorithm {
    match c {
        Curve::NistP256 => &agreement::ECDH_P256,
        Curve::NistP384 => &agreement::ECDH_P384,
    }
}

/// An ephemeral ECDH against the EK's point; the seed is KDFe(Z, "IDENTITY", Qe.x, Qek.x) and
/// the encrypted secret is the marshalled ephemeral point (TPMS_ECC_POINT).
fn ecc_seed(
    name_alg: HashAlg,
    curve: Curve,
    x: &[u8],
    y: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let rng = SystemRandom::new();
    let alg = ecdh_alg(curve);
    let peer = PublicKey::sec1_point(curve, x, y).ok_or(CredentialError::BadKey("ECC point"))?;
    let ephemeral = EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| CredentialError::Crypto("ECDH key"))?;
    let public = ephemeral
        .compute_public_key()
        .map_err(|_| CredentialError::Crypto("ECDH public key"))?;
    let n = curve.coordinate_len();
    let point = public.as_ref();
    let (ex, ey) = (&point[1..1 + n], &point[1 + n..]);
    let seed = agreement::agree_ephemeral(
        ephemeral,
        UnparsedPublicKey::new(alg, &peer),
        CredentialError::BadKey("ECC point not on the curve"),
        |z| Ok(ecc_seed_from_z(name_alg, z, ex, x)),
    )?;
    let mut w = Writer::default();
    w.tpm2b(ex).tpm2b(ey);
    Ok((seed, w.0))
}

/// The seed of an ECC-protected credential: KDFe(nameAlg, Z, "IDENTITY", Qe.x, Qek.x).
pub(crate) fn ecc_seed_from_z(
    name_alg: HashAlg,
    z: &[u8],
    ephemeral_x: &[u8],
    ek_x: &[u8],
) -> Vec<u8> {
    let label = "IDENTITY";
    let bits = u32::try_from(name_alg.len() * 8).unwrap_or(256);
    kdfe(name_alg, z, label, ephemeral_x, ek_x, bits)
}

fn aes_key(
    ek: &Public,
    seed: &[u8],
    object_name: &[u8],
) -> Result<UnboundCipherKey, CredentialError> {
    let sym = ek.symmetric.ok_or(CredentialError::NotStorageKey)?;
    let key = kdfa(
        ek.name_alg,
        seed,
        "STORAGE",
        object_name,
        &[],
        u32::from(sym.key_bits),
    );
    let alg = if sym.key_bits == 256 {
        &AES_256
    } else {
        &AES_128
    };
    UnboundCipherKey::new(alg, &key).map_err(|_| CredentialError::Crypto("AES key"))
}

fn hmac_key(ek: &Public, seed: &[u8]) -> hmac::Key {
    let bits = u32::try_from(ek.name_alg.len() * 8).unwrap_or(256);
    let key = kdfa(ek.name_alg, seed, "INTEGRITY", &[], &[], bits);
    hmac::Key::new(ek.name_alg.hmac_alg(), &key)
}

fn outer_hmac(ek: &Public, seed: &[u8], enc_identity: &[u8], object_name: &[u8]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(&hmac_key(ek, seed));
    ctx.update(enc_identity);
    ctx.update(object_name);
    ctx.sign().as_ref().to_vec()
}

/// The TPM2B_ID_OBJECT carrying `credential` under `seed`.
pub(crate) fn protect(
    ek: &Public,
    seed: &[u8],
    object_name: &[u8],
    credential: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let mut enc_identity = Writer::default();
    enc_identity.tpm2b(credential);
    let mut enc_identity = enc_identity.0;
    EncryptingKey::cfb128(aes_key(ek, seed, object_name)?)
        .and_then(|k| {
            k.less_safe_encrypt(
                &mut enc_identity,
                EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
            )
        })
        .map_err(|_| CredentialError::Crypto("AES-CFB encryption"))?;
    let integrity = outer_hmac(ek, seed, &enc_identity, object_name);
    let mut inner = Writer::default();
    inner.tpm2b(&integrity).raw(&enc_identity);
    let mut blob = Writer::default();
    blob.tpm2b(&inner.0);
    Ok(blob.0)
}

/// Check and decrypt a TPM2B_ID_OBJECT with `seed`: the credential, or why not.
pub(crate) fn unprotect(
    ek: &Public,
    seed: &[u8],
    object_name: &[u8],
    credential_blob: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let mut r = Reader::new(credential_blob, "TPM2B_ID_OBJECT");
    let inner = r.tpm2b(usize::from(u16::MAX), "TPM2B_ID_OBJECT size")?;
    r.finish()?;
    let mut r = Reader::new(inner, "TPMS_ID_OBJECT");
    let integrity = r.tpm2b(ek.name_alg.len(), "integrityHMAC longer than the digest")?;
    let enc_identity = r.bytes(inner.len().saturating_sub(2 + integrity.len()))?;
    r.finish()?;
    let expected = outer_hmac(ek, seed, enc_identity, object_name);
    constant_time::verify_slices_are_equal(&expected, integrity)
        .map_err(|_| CredentialError::Integrity)?;
    let mut plain = enc_identity.to_vec();
    let plain = DecryptingKey::cfb128(aes_key(ek, seed, object_name)?)
        .and_then(|k| {
            k.decrypt(
                &mut plain,
                DecryptionContext::Iv128(FixedLength::from([0u8; 16])),
            )
            .map(|p| p.to_vec())
        })
        .map_err(|_| CredentialError::Crypto("AES-CFB decryption"))?;
    let mut r = Reader::new(&plain, "credential");
    let credential = r.tpm2b(ek.name_alg.len(), "credential longer than the digest")?;
    let credential = credential.to_vec();
    r.finish()?;
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::soft::{AkKind, EkKind, SoftTpm};

    fn roundtrip(ek: EkKind) {
        let tpm = SoftTpm::generate(ek, AkKind::EccP256).expect("soft tpm");
        let ak_name = tpm.ak().public().name();
        let made = make_credential(
            tpm.ek().public(),
            &ak_name,
            b"0123456789abcdef0123456789abcdef",
        )
        .expect("make credential");
        let got = tpm
            .ek()
            .activate(&ak_name, &made.credential_blob, &made.encrypted_secret)
            .expect("activate");
        assert_eq!(got, b"0123456789abcdef0123456789abcdef");
        // Bound to the object name: another name fails the integrity check.
        let mut other = ak_name.clone();
        other[5] ^= 1;
        assert_eq!(
            tpm.ek()
                .activate(&other, &made.credential_blob, &made.encrypted_secret),
            Err(CredentialError::Integrity)
        );
        // A flipped bit anywhere in encIdentity or the HMAC fails too.
        for i in [4, made.credential_blob.len() - 1] {
            let mut blob = made.credential_blob.clone();
            blob[i] ^= 0x80;
            assert_eq!(
                tpm.ek().activate(&ak_name, &blob, &made.encrypted_secret),
                Err(CredentialError::Integrity)
            );
        }
        // A different EK cannot recover it.
        let stranger = SoftTpm::generate(ek, AkKind::EccP256).expect("soft tpm");
        assert!(stranger
            .ek()
            .activate(&ak_name, &made.credential_blob, &made.encrypted_secret)
            .is_err());
    }

    #[test]
    fn rsa_ek_credentials_round_trip_and_are_bound() {
        roundtrip(EkKind::Rsa2048);
    }

    #[test]
    fn ecc_ek_credentials_round_trip_and_are_bound() {
        roundtrip(EkKind::EccP256);
    }

    #[test]
    fn blob_layout_is_size_hmac_then_encrypted_tpm2b() {
        let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm");
        let secret = [7u8; 32];
        let made =
            make_credential(tpm.ek().public(), &tpm.ak().public().name(), &secret).expect("make");
        let b = &made.credential_blob;
        // TPM2B_ID_OBJECT size, TPM2B_DIGEST(32) HMAC, then encIdentity = 2 + 32 bytes.
        assert_eq!(u16::from_be_bytes([b[0], b[1]]) as usize, b.len() - 2);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 32);
        assert_eq!(b.len(), 2 + 2 + 32 + 2 + 32);
        // ECC: TPM2B_ENCRYPTED_SECRET holding TPMS_ECC_POINT (two 32-byte coordinates).
        let s = &made.encrypted_secret;
        assert_eq!(s.len(), 2 + 2 + 32 + 2 + 32);
        assert_ne!(made.credential_blob[36..], secret[..]);
    }

    #[test]
    fn refuses_signing_keys_and_long_credentials() {
        let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm");
        let name = tpm.ak().public().name();
        assert_eq!(
            make_credential(tpm.ak().public(), &name, b"x"),
            Err(CredentialError::NotStorageKey)
        );
        assert_eq!(
            make_credential(tpm.ek().public(), &name, &[0u8; 33]),
            Err(CredentialError::CredentialTooLong)
        );
    }
}
