//! TPM_ALG_ID, TPM_ECC_CURVE and TPM_ST values (TPM 2.0 Part 2) and the hash algorithms a name,
//! a KDF or a signature may use here.

use aws_lc_rs::{digest, hmac};

use super::marshal_error::MarshalError;

/// TPM_ALG_RSA.
pub const RSA: u16 = 0x0001;
/// TPM_ALG_SHA1 (recognised only to be refused).
pub const SHA1: u16 = 0x0004;
/// TPM_ALG_AES.
pub const AES: u16 = 0x0006;
/// TPM_ALG_SHA256.
pub const SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384.
pub const SHA384: u16 = 0x000C;
/// TPM_ALG_SHA512.
pub const SHA512: u16 = 0x000D;
/// TPM_ALG_NULL.
pub const NULL: u16 = 0x0010;
/// TPM_ALG_RSASSA.
pub const RSASSA: u16 = 0x0014;
/// TPM_ALG_RSAPSS.
pub const RSAPSS: u16 = 0x0016;
/// TPM_ALG_ECDSA.
pub const ECDSA: u16 = 0x0018;
/// TPM_ALG_ECC.
pub const ECC: u16 = 0x0023;
/// TPM_ALG_CFB.
pub const CFB: u16 = 0x0043;
/// TPM_ECC_NIST_P256.
pub const ECC_NIST_P256: u16 = 0x0003;
/// TPM_ECC_NIST_P384.
pub const ECC_NIST_P384: u16 = 0x0004;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_GENERATED_VALUE: the magic of every TPMS_ATTEST the TPM produced.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

/// A hash algorithm usable as nameAlg, KDF hash or signature hash. SHA-1 is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Parse a TPM_ALG_ID.
    pub fn from_id(id: u16) -> Result<Self, MarshalError> {
        match id {
            SHA256 => Ok(HashAlg::Sha256),
            SHA384 => Ok(HashAlg::Sha384),
            SHA512 => Ok(HashAlg::Sha512),
            v => Err(MarshalError::Unsupported {
                what: "hash algorithm",
                value: u32::from(v),
            }),
        }
    }

    /// The TPM_ALG_ID.
    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha256 => SHA256,
            HashAlg::Sha384 => SHA384,
            HashAlg::Sha512 => SHA512,
        }
    }

    /// Digest size in bytes.
    pub fn len(self) -> usize {
        self.digest_alg().output_len()
    }

    /// Never empty (clippy's `len` companion).
    pub fn is_empty(self) -> bool {
        false
    }

    pub(crate) fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        }
    }

    pub(crate) fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            HashAlg::Sha256 => hmac::HMAC_SHA256,
            HashAlg::Sha384 => hmac::HMAC_SHA384,
            HashAlg::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }
}
