//! TPMT_SIGNATURE from arbitrary bytes, parsed and verified as the signature of a quote: the one
//! check that ties the attestation data to the AK, so it must neither panic nor accept anything
//! a fuzzer can make.
//!
//! Input: one mode byte picking the AK (the fixture ECC or RSA AK, with its own scheme or with
//! scheme NULL, so every scheme and hash reaches the crypto), then the signature bytes. Never a
//! panic, and: whatever parses marshals back to exactly those bytes and re-parses to the same
//! value, within the parser's size limits. `verify_signature` over that AK's fixture quote fails
//! with a scheme mismatch exactly when the signature's type, scheme or hash cannot be the AK's;
//! otherwise it succeeds only for the fixture signature itself (for ECDSA also (r, n - s), the
//! one other signature with the same r, which needs no private key), and says "bad signature"
//! for everything else. `verify_quote` on the same bytes gives the parse error or the same
//! verdict.
#![no_main]

use dps_fuzz::tpm::{self as fx, left_pad, NONCE};
use dps_server::tpm::marshal::{Curve, HashAlg, PublicKey, Scheme, Signature};
use dps_server::tpm::quote::verify_signature;
use dps_server::tpm::{verify_quote, Public, QuoteError};
use libfuzzer_sys::fuzz_target;

fn check_parsed(s: &Signature, bytes: &[u8]) {
    assert_eq!(s.marshal(), bytes, "marshals back to its bytes");
    assert_eq!(Signature::parse(&s.marshal()).as_ref(), Ok(s));
    match s {
        Signature::Rsassa { sig, .. } | Signature::Rsapss { sig, .. } => assert!(sig.len() <= 512),
        Signature::Ecdsa { r, s, .. } => assert!(r.len() <= 64 && s.len() <= 64),
    }
}

/// What verification must say.
#[derive(Debug, PartialEq)]
enum Expect {
    SchemeMismatch,
    Valid,
    BadSignature,
}

fn expect(ak: &Public, known: &Signature, sig: &Signature) -> Expect {
    if ak.scheme != Scheme::Null && ak.scheme != fx::signature_scheme(sig) {
        return Expect::SchemeMismatch;
    }
    match (&ak.key, sig, known) {
        (
            PublicKey::Rsa { modulus, .. },
            Signature::Rsassa { hash, sig },
            Signature::Rsassa {
                hash: known_hash,
                sig: known_sig,
            },
        ) => {
            if hash == known_hash && left_pad(sig, modulus.len()).as_ref() == Some(known_sig) {
                Expect::Valid
            } else {
                Expect::BadSignature
            }
        }
        (PublicKey::Rsa { .. }, Signature::Rsapss { .. }, _) => Expect::BadSignature,
        (
            PublicKey::Ecc { curve, .. },
            Signature::Ecdsa { hash, r, s },
            Signature::Ecdsa {
                hash: known_hash,
                r: r0,
                s: s0,
            },
        ) => {
            assert_eq!(*curve, Curve::NistP256, "fixture AK");
            if *hash != HashAlg::Sha256 {
                return Expect::SchemeMismatch;
            }
            let (r, s) = (left_pad(r, 32), left_pad(s, 32));
            let same_r = r.as_ref() == Some(r0);
            let s_ok = s.as_ref() == Some(s0) || s == Some(fx::p256_negate_scalar(s0));
            if hash == known_hash && same_r && s_ok {
                Expect::Valid
            } else {
                Expect::BadSignature
            }
        }
        _ => Expect::SchemeMismatch,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let parsed = Signature::parse(bytes);
    if let Ok(s) = &parsed {
        check_parsed(s, bytes);
    }

    let f = fx::fixtures();
    let (ak, quote) = match mode % 4 {
        0 => (&f.ak_ecc, &f.quote_ecc),
        1 => (&f.ak_ecc_null, &f.quote_ecc),
        2 => (&f.ak_rsa, &f.quote_rsa),
        _ => (&f.ak_rsa_null, &f.quote_rsa),
    };
    let via_quote = verify_quote(ak, &quote.attest, bytes, &NONCE);
    let sig = match parsed {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(via_quote, Err(QuoteError::Marshal(e)));
            return;
        }
    };
    let known = Signature::parse(&quote.signature).expect("fixture signature");
    let got = verify_signature(ak, &quote.attest, &sig);
    match expect(ak, &known, &sig) {
        Expect::SchemeMismatch => {
            assert!(matches!(got, Err(QuoteError::SchemeMismatch(_))), "{got:?}")
        }
        Expect::Valid => assert_eq!(got, Ok(())),
        Expect::BadSignature => assert_eq!(got, Err(QuoteError::BadSignature)),
    }
    assert_eq!(
        via_quote.map(|a| a.marshal()),
        got.map(|()| quote.attest.clone())
    );
});
