//! TPMS_ATTEST from arbitrary bytes, parsed alone and verified as the quote of the TPM attest
//! request: the attestation data is what the AK signature covers and carries the challenge nonce,
//! so a parser or verifier that can be confused here decides whether a device is admitted.
//!
//! Input: one mode byte, then the attestation bytes. Never a panic, and: whatever parses marshals
//! back to exactly those bytes and re-parses to the same value, within the parser's size limits.
//! `verify_quote` with a fixture AK and that AK's real signature over its own fixture quote
//! (mode bit 0 picks the ECC or the RSA AK) fails with exactly the error the bytes call for: the
//! parse error, bad magic, or a bad signature, and succeeds only for the very bytes that were
//! signed (then a different nonce is a nonce mismatch). With mode bit 1, well-formed TPM-generated
//! data is signed with the fixture ECC AK's private key: it must then verify with the nonce it
//! carries and with no other (one byte shorter or longer, or one bit different).
#![no_main]

use dps_fuzz::tpm::{self as fx, NONCE};
use dps_server::tpm::alg::TPM_GENERATED_VALUE;
use dps_server::tpm::{verify_quote, Attest, QuoteError};
use libfuzzer_sys::fuzz_target;

fn check_parsed(a: &Attest, bytes: &[u8]) {
    assert_eq!(a.marshal(), bytes, "marshals back to its bytes");
    assert_eq!(Attest::parse(&a.marshal()).as_ref(), Ok(a));
    assert_eq!(
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        a.magic
    );
    assert!(a.qualified_signer.len() <= 2 + 64);
    assert!(a.extra_data.len() <= 64);
    assert!(a.pcr_digest.len() <= 64);
    assert!(a.pcr_select.len() <= 16);
    assert!(a.pcr_select.iter().all(|s| s.select.len() <= 4));
}

/// Nonces that differ from `nonce` by as little as possible.
fn near_misses(nonce: &[u8]) -> Vec<Vec<u8>> {
    let mut longer = nonce.to_vec();
    longer.push(0);
    let mut out = vec![longer];
    if let Some((_, head)) = nonce.split_last() {
        out.push(head.to_vec());
        let mut flipped = nonce.to_vec();
        flipped[nonce.len() - 1] ^= 1;
        out.push(flipped);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let parsed = Attest::parse(bytes);
    if let Ok(a) = &parsed {
        check_parsed(a, bytes);
    }

    let f = fx::fixtures();
    let (ak, quote) = if mode & 1 == 0 {
        (&f.ak_ecc, &f.quote_ecc)
    } else {
        (&f.ak_rsa, &f.quote_rsa)
    };
    let got = verify_quote(ak, bytes, &quote.signature, &NONCE);
    match &parsed {
        Err(e) => assert_eq!(got, Err(QuoteError::Marshal(e.clone()))),
        Ok(a) if a.magic != TPM_GENERATED_VALUE => assert_eq!(got, Err(QuoteError::BadMagic)),
        Ok(a) if bytes == quote.attest.as_slice() => {
            assert_eq!(got.as_ref(), Ok(a), "the fixture quote verifies");
            for nonce in near_misses(&NONCE) {
                assert_eq!(
                    verify_quote(ak, bytes, &quote.signature, &nonce),
                    Err(QuoteError::NonceMismatch)
                );
            }
        }
        Ok(_) => assert_eq!(got, Err(QuoteError::BadSignature), "verified unsigned data"),
    }

    if mode & 2 != 0 {
        let Ok(a) = &parsed else { return };
        if a.magic != TPM_GENERATED_VALUE {
            return;
        }
        let sig = f.ak_ecc_key.sign(bytes).expect("the soft AK signs");
        assert_eq!(
            verify_quote(&f.ak_ecc, bytes, &sig, &a.extra_data).as_ref(),
            Ok(a),
            "a signed quote verifies with the nonce it carries"
        );
        for nonce in near_misses(&a.extra_data) {
            assert_eq!(
                verify_quote(&f.ak_ecc, bytes, &sig, &nonce),
                Err(QuoteError::NonceMismatch)
            );
        }
    }
});
