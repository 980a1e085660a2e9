//! Shared pieces of the TPM structure targets: fixed keys and quotes under `fixtures/tpm/` (made
//! once by `make-seeds tpm-fixtures` from the soft TPM, committed, so a crash input reproduces
//! against the same keys), and oracles computed independently of the server's crypto library:
//! whether a point is on its NIST curve, and which ECDSA signatures a known one stands for.
//!
//! The fixtures are checked when first loaded (both quotes verify, the curve constants describe
//! their generators, the malleated ECDSA signature verifies), so a wrong constant or a stale
//! fixture fails every run at once instead of producing false findings.

use std::path::PathBuf;
use std::sync::OnceLock;

use dps_server::tpm::marshal::{Curve, HashAlg, PublicKey, Scheme, Signature};
use dps_server::tpm::quote::verify_signature;
use dps_server::tpm::soft::{AkKind, SoftAk};
use dps_server::tpm::{verify_quote, Public};
use num_bigint::BigUint;

/// The nonce of both fixture quotes (their extraData).
pub const NONCE: [u8; 32] = *b"dpsbench-fuzz-quote-nonce-000001";

/// The directory of the TPM fixtures.
pub fn tpm_fixtures_dir() -> PathBuf {
    crate::fixtures_dir().join("tpm")
}

/// The bytes of one TPM fixture file.
pub fn tpm_fixture(name: &str) -> Vec<u8> {
    let path = tpm_fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `cargo run --example make-seeds -- tpm-fixtures` in fuzz/)",
            path.display()
        )
    })
}

/// A TPM2_Quote as the device sends it.
#[derive(Debug, Clone)]
pub struct Quote {
    /// The marshalled TPMS_ATTEST (extraData = [`NONCE`]).
    pub attest: Vec<u8>,
    /// The marshalled TPMT_SIGNATURE over `attest`.
    pub signature: Vec<u8>,
}

/// The fixed AKs and their quotes.
#[derive(Debug)]
pub struct Fixtures {
    /// RSA-2048 AK, scheme RSASSA/SHA-256 (the soft TPM's).
    pub ak_rsa: Public,
    /// The same RSA key with scheme NULL (any RSA scheme and hash may be tried).
    pub ak_rsa_null: Public,
    /// ECC P-256 AK, scheme ECDSA/SHA-256 (the soft TPM's).
    pub ak_ecc: Public,
    /// The same ECC key with scheme NULL.
    pub ak_ecc_null: Public,
    /// The private half of `ak_ecc`, to sign fuzzed attestation data.
    pub ak_ecc_key: SoftAk,
    /// A quote over [`NONCE`] by `ak_rsa`.
    pub quote_rsa: Quote,
    /// A quote over [`NONCE`] by `ak_ecc`.
    pub quote_ecc: Quote,
}

fn with_null_scheme(p: &Public) -> Public {
    Public::new(
        p.name_alg,
        p.attributes,
        p.auth_policy.clone(),
        p.symmetric,
        Scheme::Null,
        p.key.clone(),
    )
}

/// The fixtures, loaded and checked once per process.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let public = |name: &str| Public::from_tpm2b(&tpm_fixture(name)).expect("fixture AK");
        let quote = |kind: &str| Quote {
            attest: tpm_fixture(&format!("quote-{kind}.attest")),
            signature: tpm_fixture(&format!("quote-{kind}.sig")),
        };
        let ak_rsa = public("ak-rsa.tpm2b");
        let ak_ecc = public("ak-ecc.tpm2b");
        let ak_ecc_key = SoftAk::from_pkcs8(AkKind::EccP256, &tpm_fixture("ak-ecc.pk8"))
            .expect("fixture AK private key");
        assert_eq!(
            ak_ecc_key.public(),
            &ak_ecc,
            "ak-ecc.pk8 is the key of ak-ecc.tpm2b"
        );
        let f = Fixtures {
            ak_rsa_null: with_null_scheme(&ak_rsa),
            ak_ecc_null: with_null_scheme(&ak_ecc),
            ak_rsa,
            ak_ecc,
            ak_ecc_key,
            quote_rsa: quote("rsa"),
            quote_ecc: quote("ecc"),
        };
        self_check(&f);
        f
    })
}

fn self_check(f: &Fixtures) {
    for (ak, q) in [
        (&f.ak_rsa, &f.quote_rsa),
        (&f.ak_rsa_null, &f.quote_rsa),
        (&f.ak_ecc, &f.quote_ecc),
        (&f.ak_ecc_null, &f.quote_ecc),
    ] {
        let a = verify_quote(ak, &q.attest, &q.signature, &NONCE).expect("fixture quote verifies");
        assert_eq!(a.extra_data, NONCE);
    }
    for curve in [Curve::NistP256, Curve::NistP384] {
        let c = CurveConsts::of(curve);
        let (gx, gy) = (c.gx.to_bytes_be(), c.gy.to_bytes_be());
        assert!(
            on_curve(curve, &gx, &gy),
            "generator of {curve:?} on its curve"
        );
        assert!(!on_curve(curve, &gx, &c.gx.to_bytes_be()));
    }
    let PublicKey::Ecc { curve, x, y } = &f.ak_ecc.key else {
        panic!("ak-ecc is an ECC key")
    };
    assert!(on_curve(*curve, x, y), "ak-ecc's point is on the curve");
    // The oracle of the signature target: value comparisons are unambiguous only if the known
    // values have no leading zero byte (make-seeds picks such signatures).
    let Ok(Signature::Rsassa { sig, .. }) = Signature::parse(&f.quote_rsa.signature) else {
        panic!("quote-rsa.sig is RSASSA")
    };
    assert_ne!(sig[0], 0, "quote-rsa.sig has no leading zero byte");
    let Ok(Signature::Ecdsa { hash, r, s }) = Signature::parse(&f.quote_ecc.signature) else {
        panic!("quote-ecc.sig is ECDSA")
    };
    let neg = p256_negate_scalar(&s);
    assert!(
        r[0] != 0 && s[0] != 0 && neg[0] != 0,
        "quote-ecc.sig: r, s, n-s have no leading zero byte"
    );
    // (r, n - s) is the other valid signature with the same r: checks the order constant.
    let malleated = Signature::Ecdsa { hash, r, s: neg };
    verify_signature(&f.ak_ecc, &f.quote_ecc.attest, &malleated)
        .expect("(r, n-s) verifies: the P-256 order constant is right");
}

/// Left-pad `b` with zeros to `n` bytes; `None` if it is longer.
pub fn left_pad(b: &[u8], n: usize) -> Option<Vec<u8>> {
    let pad = n.checked_sub(b.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(b);
    Some(out)
}

struct CurveConsts {
    p: BigUint,
    b: BigUint,
    n: BigUint,
    gx: BigUint,
    gy: BigUint,
}

fn hex(s: &str) -> BigUint {
    BigUint::parse_bytes(s.as_bytes(), 16).expect("hex constant")
}

impl CurveConsts {
    /// FIPS 186-4 D.1.2.3 and D.1.2.4 (a = p - 3 for both).
    fn of(curve: Curve) -> &'static CurveConsts {
        static P256: OnceLock<CurveConsts> = OnceLock::new();
        static P384: OnceLock<CurveConsts> = OnceLock::new();
        match curve {
            Curve::NistP256 => P256.get_or_init(|| CurveConsts {
                p: hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
                b: hex("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b"),
                n: hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
                gx: hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
                gy: hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"),
            }),
            Curve::NistP384 => P384.get_or_init(|| CurveConsts {
                p: hex(concat!(
                    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe",
                    "ffffffff0000000000000000ffffffff"
                )),
                b: hex(concat!(
                    "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a",
                    "c656398d8a2ed19d2a85c8edd3ec2aef"
                )),
                n: hex(concat!(
                    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf",
                    "581a0db248b0a77aecec196accc52973"
                )),
                gx: hex(concat!(
                    "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38",
                    "5502f25dbf55296c3a545e3872760ab7"
                )),
                gy: hex(concat!(
                    "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0",
                    "0a60b1ce1d7e819d7a431d7c90ea0e5f"
                )),
            }),
        }
    }
}

/// Whether the affine point (x, y), big-endian of any length, is on `curve`:
/// 0 <= x, y < p and y^2 = x^3 - 3x + b (mod p). Plain big-integer arithmetic, not the server's
/// crypto library.
pub fn on_curve(curve: Curve, x: &[u8], y: &[u8]) -> bool {
    let c = CurveConsts::of(curve);
    let (x, y) = (BigUint::from_bytes_be(x), BigUint::from_bytes_be(y));
    if x >= c.p || y >= c.p {
        return false;
    }
    let lhs = (&y * &y) % &c.p;
    let rhs = ((&x * &x % &c.p) * &x + &c.b + (&c.p - 3u32) * &x) % &c.p;
    lhs == rhs
}

/// The base point of `curve` (a valid public key: the one whose private key is 1), as fixed-width
/// big-endian coordinates.
pub fn generator(curve: Curve) -> (Vec<u8>, Vec<u8>) {
    let c = CurveConsts::of(curve);
    let n = curve.coordinate_len();
    (
        left_pad(&c.gx.to_bytes_be(), n).expect("coordinate"),
        left_pad(&c.gy.to_bytes_be(), n).expect("coordinate"),
    )
}

/// n - s for a P-256 scalar s (big-endian, 0 < s < n), as 32 bytes.
pub fn p256_negate_scalar(s: &[u8]) -> Vec<u8> {
    let n = &CurveConsts::of(Curve::NistP256).n;
    let v = n - (BigUint::from_bytes_be(s) % n);
    left_pad(&v.to_bytes_be(), 32).expect("below the order")
}

/// The same key material (RSA modulus and exponent, or ECC curve and point), whatever the rest of
/// the public area says.
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    match (a, b) {
        (
            PublicKey::Rsa {
                exponent: ea,
                modulus: ma,
                ..
            },
            PublicKey::Rsa {
                exponent: eb,
                modulus: mb,
                ..
            },
        ) => ma == mb && PublicKey::rsa_exponent_bytes(*ea) == PublicKey::rsa_exponent_bytes(*eb),
        (
            PublicKey::Ecc {
                curve: ca,
                x: xa,
                y: ya,
            },
            PublicKey::Ecc {
                curve: cb,
                x: xb,
                y: yb,
            },
        ) => {
            let n = ca.coordinate_len();
            ca == cb && left_pad(xa, n) == left_pad(xb, n) && left_pad(ya, n) == left_pad(yb, n)
        }
        _ => false,
    }
}

/// The scheme a signature was made with, as an AK's scheme field would name it.
pub fn signature_scheme(sig: &Signature) -> Scheme {
    match sig {
        Signature::Rsassa { hash, .. } => Scheme::Rsassa(*hash),
        Signature::Rsapss { hash, .. } => Scheme::Rsapss(*hash),
        Signature::Ecdsa { hash, .. } => Scheme::Ecdsa(*hash),
    }
}

/// The hash of a signature.
pub fn signature_hash(sig: &Signature) -> HashAlg {
    match sig {
        Signature::Rsassa { hash, .. }
        | Signature::Rsapss { hash, .. }
        | Signature::Ecdsa { hash, .. } => *hash,
    }
}
