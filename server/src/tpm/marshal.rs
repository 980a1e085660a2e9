//! Strict TPM 2.0 marshalling of the few structures the attestation exchanges (TPM 2.0 Part 2):
//! TPM2B_PUBLIC / TPMT_PUBLIC (RSA and ECC keys), TPMS_ATTEST of a quote and TPMT_SIGNATURE.
//!
//! Everything arrives from the network, so every length is bounds-checked, every size field must
//! match what it sizes exactly, unknown algorithms and trailing bytes are errors, and nothing here
//! can panic on input. Parsed structures marshal back to the same bytes (tested), which is what the
//! soft TPM uses to produce them.

use super::alg;
pub use super::alg::HashAlg;
pub use super::marshal_error::MarshalError;

/// Largest digest-sized buffer (TPMU_HA: SHA-512).
pub const MAX_DIGEST: usize = 64;
/// Largest RSA modulus accepted (4096 bits).
const MAX_RSA_BYTES: usize = 512;
/// Largest TPM2B_NAME: a hash algorithm id and a SHA-512 digest.
const MAX_NAME: usize = 2 + MAX_DIGEST;
/// Largest authPolicy / TPM2B_DIGEST.
const MAX_POLICY: usize = MAX_DIGEST;
/// TPML_PCR_SELECTION holds at most one selection per bank.
const MAX_PCR_BANKS: u32 = 16;
/// A selection bitmap covers at most 32 PCRs here (PCR_SELECT_MAX of common TPMs is 3).
const MAX_PCR_SELECT: usize = 4;

/// A cursor over network bytes that never reads past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Read `buf`, naming it `what` in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], MarshalError> {
        if self.buf.len() < n {
            return Err(MarshalError::Truncated(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, MarshalError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, MarshalError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, MarshalError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, MarshalError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// A TPM2B: a big-endian u16 size and that many bytes, at most `max`.
    pub(crate) fn tpm2b(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], MarshalError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(MarshalError::Invalid(what));
        }
        self.bytes(n)
    }

    /// Every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), MarshalError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(MarshalError::Trailing {
                what: self.what,
                extra,
            }),
        }
    }
}

/// Appends TPM wire encodings to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A TPM2B; callers only pass buffers bounded far below 64 KiB (keys, digests, blobs).
    pub(crate) fn tpm2b(&mut self, b: &[u8]) -> &mut Self {
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.u16(n);
        self.raw(&b[..usize::from(n)])
    }
}

/// TPMA_OBJECT bits the attestation checks or the soft TPM sets.
pub mod attr {
    /// The key cannot be duplicated out of its TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The key cannot be re-parented.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// The TPM generated the key's private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// The auth value may authorize use.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// Admin actions need the policy.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// A restricted key: signs only TPM-generated data, or decrypts only TPM-formatted blobs.
    pub const RESTRICTED: u32 = 1 << 16;
    /// A decryption key.
    pub const DECRYPT: u32 = 1 << 17;
    /// A signing key.
    pub const SIGN: u32 = 1 << 18;
}

/// TPMT_SYM_DEF_OBJECT when not NULL: the symmetric algorithm of a storage key (the EK's protects
/// credentials). Only AES in CFB mode is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// AES key size: 128 or 256.
    pub key_bits: u16,
}

/// A key's scheme (TPMT_RSA_SCHEME / TPMT_ECC_SCHEME), restricted to what attestation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TPM_ALG_NULL: any scheme the key type allows, chosen per operation.
    Null,
    /// RSASSA-PKCS1-v1_5 with this hash.
    Rsassa(HashAlg),
    /// RSASSA-PSS with this hash.
    Rsapss(HashAlg),
    /// ECDSA with this hash.
    Ecdsa(HashAlg),
}

/// TPM_ECC_CURVE values this server handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (TPM_ECC_NIST_P256).
    NistP256,
    /// NIST P-384 (TPM_ECC_NIST_P384).
    NistP384,
}

impl Curve {
    /// The TPM_ECC_CURVE id.
    pub fn id(self) -> u16 {
        match self {
            Curve::NistP256 => alg::ECC_NIST_P256,
            Curve::NistP384 => alg::ECC_NIST_P384,
        }
    }

    /// Size of a coordinate in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::NistP256 => 32,
            Curve::NistP384 => 48,
        }
    }

    fn from_id(id: u16) -> Result<Self, MarshalError> {
        match id {
            alg::ECC_NIST_P256 => Ok(Curve::NistP256),
            alg::ECC_NIST_P384 => Ok(Curve::NistP384),
            v => Err(MarshalError::Unsupported {
                what: "ECC curve",
                value: u32::from(v),
            }),
        }
    }
}

/// The public key material (TPMU_PUBLIC_PARMS key part and TPMU_PUBLIC_ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key.
    Rsa {
        /// keyBits: 2048, 3072 or 4096.
        bits: u16,
        /// The exponent as marshalled (0 means 65537).
        exponent: u32,
        /// The modulus, big-endian, exactly `bits / 8` bytes with the top bit set.
        modulus: Vec<u8>,
    },
    /// An ECC key (KDF scheme NULL).
    Ecc {
        /// The curve.
        curve: Curve,
        /// x coordinate, big-endian.
        x: Vec<u8>,
        /// y coordinate, big-endian.
        y: Vec<u8>,
    },
}

impl PublicKey {
    /// The RSA public exponent, big-endian (0 in the structure means 65537).
    pub fn rsa_exponent_bytes(exponent: u32) -> Vec<u8> {
        let e = if exponent == 0 { 65_537 } else { exponent };
        let b = e.to_be_bytes();
        let first = b.iter().position(|x| *x != 0).unwrap_or(3);
        b[first..].to_vec()
    }

    /// An ECC point as SEC1 uncompressed bytes (`04 || x || y`, coordinates left-padded).
    pub fn sec1_point(curve: Curve, x: &[u8], y: &[u8]) -> Option<Vec<u8>> {
        let n = curve.coordinate_len();
        if x.len() > n || y.len() > n {
            return None;
        }
        let mut out = vec![0u8; 1 + 2 * n];
        out[0] = 4;
        out[1 + n - x.len()..1 + n].copy_from_slice(x);
        out[1 + 2 * n - y.len()..].copy_from_slice(y);
        Some(out)
    }
}

/// A TPMT_PUBLIC of an RSA or ECC key, parsed strictly, with the bytes it was parsed from (the
/// object's name is a hash over exactly those bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// nameAlg.
    pub name_alg: HashAlg,
    /// objectAttributes (TPMA_OBJECT; see [`attr`]).
    pub attributes: u32,
    /// authPolicy.
    pub auth_policy: Vec<u8>,
    /// The symmetric definition (storage keys such as the EK); `None` = TPM_ALG_NULL.
    pub symmetric: Option<SymDef>,
    /// The key's scheme.
    pub scheme: Scheme,
    /// Key material.
    pub key: PublicKey,
    tpmt: Vec<u8>,
}

impl Public {
    /// Build a public area (the soft TPM's keys); it is marshalled at once.
    pub fn new(
        name_alg: HashAlg,
        attributes: u32,
        auth_policy: Vec<u8>,
        symmetric: Option<SymDef>,
        scheme: Scheme,
        key: PublicKey,
    ) -> Self {
        let mut p = Self {
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
            tpmt: Vec::new(),
        };
        p.tpmt = p.marshal_tpmt();
        p
    }

    /// Parse a marshalled TPM2B_PUBLIC (size, then TPMT_PUBLIC; nothing after it).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, MarshalError> {
        let mut r = Reader::new(bytes, "TPM2B_PUBLIC");
        let inner = r.tpm2b(usize::from(u16::MAX), "TPM2B_PUBLIC size")?;
        r.finish()?;
        if inner.is_empty() {
            return Err(MarshalError::Invalid("TPM2B_PUBLIC is empty"));
        }
        Self::from_tpmt(inner)
    }

    /// Parse a marshalled TPMT_PUBLIC (nothing after it).
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, MarshalError> {
        let mut r = Reader::new(bytes, "TPMT_PUBLIC");
        let kind = r.u16()?;
        let name_alg = HashAlg::from_id(r.u16()?)?;
        let attributes = r.u32()?;
        let auth_policy = r
            .tpm2b(MAX_POLICY, "authPolicy longer than a digest")?
            .to_vec();
        let symmetric = read_sym_def(&mut r)?;
        let (scheme, key) = match kind {
            alg::RSA => {
                let scheme = read_scheme(&mut r, true)?;
                let bits = r.u16()?;
                let exponent = r.u32()?;
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(MarshalError::Unsupported {
                        what: "RSA keyBits",
                        value: u32::from(bits),
                    });
                }
                if exponent == 1 || (exponent != 0 && exponent % 2 == 0) {
                    return Err(MarshalError::Invalid(
                        "RSA exponent is not an odd number > 1",
                    ));
                }
                let modulus = r.tpm2b(MAX_RSA_BYTES, "RSA modulus too long")?.to_vec();
                // keyBits bits exactly: the top bit of the first byte is set (a TPM's RSA key
                // generation guarantees it; 0x17... would be a 2045-bit modulus).
                if modulus.len() != usize::from(bits / 8)
                    || modulus.first().is_none_or(|b| b & 0x80 == 0)
                {
                    return Err(MarshalError::Invalid(
                        "RSA modulus does not have keyBits bits",
                    ));
                }
                (
                    scheme,
                    PublicKey::Rsa {
                        bits,
                        exponent,
                        modulus,
                    },
                )
            }
            alg::ECC => {
                let scheme = read_scheme(&mut r, false)?;
                let curve = Curve::from_id(r.u16()?)?;
                let kdf = r.u16()?;
                if kdf != alg::NULL {
                    return Err(MarshalError::Unsupported {
                        what: "ECC KDF scheme",
                        value: u32::from(kdf),
                    });
                }
                let n = curve.coordinate_len();
                let x = r.tpm2b(n, "ECC x longer than the curve")?.to_vec();
                let y = r.tpm2b(n, "ECC y longer than the curve")?.to_vec();
                if x.is_empty() || y.is_empty() {
                    return Err(MarshalError::Invalid("ECC point coordinate is empty"));
                }
                (scheme, PublicKey::Ecc { curve, x, y })
            }
            v => {
                return Err(MarshalError::Unsupported {
                    what: "public area type",
                    value: u32::from(v),
                })
            }
        };
        r.finish()?;
        Ok(Self {
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
            tpmt: bytes.to_vec(),
        })
    }

    /// The marshalled TPMT_PUBLIC (as received, or as built).
    pub fn tpmt(&self) -> &[u8] {
        &self.tpmt
    }

    /// The marshalled TPM2B_PUBLIC.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.tpm2b(&self.tpmt);
        w.0
    }

    /// The object's name: nameAlg (big-endian u16) followed by nameAlg's digest of the TPMT_PUBLIC.
    pub fn name(&self) -> Vec<u8> {
        let mut out = self.name_alg.id().to_be_bytes().to_vec();
        out.extend_from_slice(&self.name_alg.digest(&self.tpmt));
        out
    }

    /// All of `bits` are set in the attributes.
    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }

    fn marshal_tpmt(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let kind = match self.key {
            PublicKey::Rsa { .. } => alg::RSA,
            PublicKey::Ecc { .. } => alg::ECC,
        };
        w.u16(kind)
            .u16(self.name_alg.id())
            .u32(self.attributes)
            .tpm2b(&self.auth_policy);
        match self.symmetric {
            None => w.u16(alg::NULL),
            Some(s) => w.u16(alg::AES).u16(s.key_bits).u16(alg::CFB),
        };
        match self.scheme {
            Scheme::Null => w.u16(alg::NULL),
            Scheme::Rsassa(h) => w.u16(alg::RSASSA).u16(h.id()),
            Scheme::Rsapss(h) => w.u16(alg::RSAPSS).u16(h.id()),
            Scheme::Ecdsa(h) => w.u16(alg::ECDSA).u16(h.id()),
        };
        match &self.key {
            PublicKey::Rsa {
                bits,
                exponent,
                modulus,
            } => {
                w.u16(*bits).u32(*exponent).tpm2b(modulus);
            }
            PublicKey::Ecc { curve, x, y } => {
                w.u16(curve.id()).u16(alg::NULL).tpm2b(x).tpm2b(y);
            }
        }
        w.0
    }
}

fn read_sym_def(r: &mut Reader<'_>) -> Result<Option<SymDef>, MarshalError> {
    match r.u16()? {
        alg::NULL => Ok(None),
        alg::AES => {
            let key_bits = r.u16()?;
            let mode = r.u16()?;
            if !matches!(key_bits, 128 | 256) {
                return Err(MarshalError::Unsupported {
                    what: "AES keyBits",
                    value: u32::from(key_bits),
                });
            }
            if mode != alg::CFB {
                return Err(MarshalError::Unsupported {
                    what: "symmetric mode (only CFB)",
                    value: u32::from(mode),
                });
            }
            Ok(Some(SymDef { key_bits }))
        }
        v => Err(MarshalError::Unsupported {
            what: "symmetric algorithm",
            value: u32::from(v),
        }),
    }
}

fn read_scheme(r: &mut Reader<'_>, rsa: bool) -> Result<Scheme, MarshalError> {
    let id = r.u16()?;
    let scheme = match (id, rsa) {
        (alg::NULL, _) => return Ok(Scheme::Null),
        (alg::RSASSA, true) => Scheme::Rsassa(HashAlg::from_id(r.u16()?)?),
        (alg::RSAPSS, true) => Scheme::Rsapss(HashAlg::from_id(r.u16()?)?),
        (alg::ECDSA, false) => Scheme::Ecdsa(HashAlg::from_id(r.u16()?)?),
        (v, _) => {
            return Err(MarshalError::Unsupported {
                what: "key scheme",
                value: u32::from(v),
            })
        }
    };
    Ok(scheme)
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    /// TPM resets.
    pub reset_count: u32,
    /// TPM restarts.
    pub restart_count: u32,
    /// Whether the clock is known not to have been rolled back.
    pub safe: bool,
}

/// One TPMS_PCR_SELECTION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's hash algorithm id.
    pub hash: u16,
    /// The selection bitmap.
    pub select: Vec<u8>,
}

/// A TPMS_ATTEST whose type is TPM_ST_ATTEST_QUOTE, parsed strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// Must be TPM_GENERATED_VALUE for TPM-produced data.
    pub magic: u32,
    /// Qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// Caller-provided data: the nonce.
    pub extra_data: Vec<u8>,
    /// Clock state.
    pub clock_info: ClockInfo,
    /// Firmware version.
    pub firmware_version: u64,
    /// The PCRs quoted.
    pub pcr_select: Vec<PcrSelection>,
    /// Digest of the selected PCRs.
    pub pcr_digest: Vec<u8>,
}

impl Attest {
    /// Parse a marshalled TPMS_ATTEST; anything other than a quote is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, MarshalError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        let magic = r.u32()?;
        let kind = r.u16()?;
        if kind != alg::ST_ATTEST_QUOTE {
            return Err(MarshalError::Unsupported {
                what: "attestation type (only a quote)",
                value: u32::from(kind),
            });
        }
        let qualified_signer = r.tpm2b(MAX_NAME, "qualifiedSigner too long")?.to_vec();
        let extra_data = r.tpm2b(MAX_DIGEST, "extraData too long")?.to_vec();
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(MarshalError::Invalid("clockInfo.safe is not YES or NO")),
        };
        let firmware_version = r.u64()?;
        let count = r.u32()?;
        if count > MAX_PCR_BANKS {
            return Err(MarshalError::Invalid("too many PCR selections"));
        }
        let mut pcr_select = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let hash = r.u16()?;
            let size = usize::from(r.u8()?);
            if size > MAX_PCR_SELECT {
                return Err(MarshalError::Invalid("PCR selection bitmap too long"));
            }
            pcr_select.push(PcrSelection {
                hash,
                select: r.bytes(size)?.to_vec(),
            });
        }
        let pcr_digest = r.tpm2b(MAX_DIGEST, "pcrDigest too long")?.to_vec();
        r.finish()?;
        Ok(Self {
            magic,
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// Marshal as TPMS_ATTEST (type quote).
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.magic)
            .u16(alg::ST_ATTEST_QUOTE)
            .tpm2b(&self.qualified_signer)
            .tpm2b(&self.extra_data)
            .u64(self.clock_info.clock)
            .u32(self.clock_info.reset_count)
            .u32(self.clock_info.restart_count)
            .u8(u8::from(self.clock_info.safe))
            .u64(self.firmware_version)
            .u32(u32::try_from(self.pcr_select.len()).unwrap_or(0));
        for s in &self.pcr_select {
            w.u16(s.hash)
                .u8(u8::try_from(s.select.len()).unwrap_or(0))
                .raw(&s.select);
        }
        w.tpm2b(&self.pcr_digest);
        w.0
    }
}

/// A TPMT_SIGNATURE of an RSA or ECDSA key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// RSASSA-PKCS1-v1_5.
    Rsassa {
        /// Hash of the signed data.
        hash: HashAlg,
        /// The signature, modulus-sized.
        sig: Vec<u8>,
    },
    /// RSASSA-PSS.
    Rsapss {
        /// Hash of the signed data.
        hash: HashAlg,
        /// The signature, modulus-sized.
        sig: Vec<u8>,
    },
    /// ECDSA.
    Ecdsa {
        /// Hash of the signed data.
        hash: HashAlg,
        /// r, big-endian.
        r: Vec<u8>,
        /// s, big-endian.
        s: Vec<u8>,
    },
}

impl Signature {
    /// Parse a marshalled TPMT_SIGNATURE (nothing after it).
    pub fn parse(bytes: &[u8]) -> Result<Self, MarshalError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let sig_alg = r.u16()?;
        let sig = match sig_alg {
            alg::RSASSA | alg::RSAPSS => {
                let hash = HashAlg::from_id(r.u16()?)?;
                let sig = r.tpm2b(MAX_RSA_BYTES, "RSA signature too long")?.to_vec();
                if sig_alg == alg::RSASSA {
                    Signature::Rsassa { hash, sig }
                } else {
                    Signature::Rsapss { hash, sig }
                }
            }
            alg::ECDSA => {
                let hash = HashAlg::from_id(r.u16()?)?;
                let rr = r.tpm2b(MAX_DIGEST, "ECDSA r too long")?.to_vec();
                let s = r.tpm2b(MAX_DIGEST, "ECDSA s too long")?.to_vec();
                Signature::Ecdsa { hash, r: rr, s }
            }
            v => {
                return Err(MarshalError::Unsupported {
                    what: "signature algorithm",
                    value: u32::from(v),
                })
            }
        };
        r.finish()?;
        Ok(sig)
    }

    /// Marshal as TPMT_SIGNATURE.
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Signature::Rsassa { hash, sig } => w.u16(alg::RSASSA).u16(hash.id()).tpm2b(sig),
            Signature::Rsapss { hash, sig } => w.u16(alg::RSAPSS).u16(hash.id()).tpm2b(sig),
            Signature::Ecdsa { hash, r, s } => w.u16(alg::ECDSA).u16(hash.id()).tpm2b(r).tpm2b(s),
        };
        w.0
    }
}

#[cfg(test)]
#[path = "marshal_tests.rs"]
mod tests;
