//! TPM2B_PUBLIC / TPMT_PUBLIC from arbitrary bytes: the EK and AK public areas of the TPM
//! challenge arrive straight from the network and are parsed before anything is known about the
//! device, so this parser is the first thing an attacker reaches.
//!
//! The same bytes are parsed both as a TPM2B_PUBLIC and as a bare TPMT_PUBLIC. Never a panic, and:
//! the TPM2B parse is exactly "size equals the rest, not empty, then the TPMT parse of the rest";
//! whatever parses keeps its bytes, marshals back to them, re-parses to the same value, and
//! rebuilding it from its fields gives the same bytes (one encoding per value); every field holds
//! what the parser promises (key sizes, exponent, coordinate lengths, scheme fits the key type);
//! the name is nameAlg followed by nameAlg's digest of exactly those bytes. Then the public area
//! goes where the server sends it: `check_attestation_key` accepts it exactly when the AK
//! attributes are set, and as an AK it verifies a fixture quote only if it carries the key that
//! signed it; software MakeCredential refuses it unless it is a storage key, and for an ECC EK
//! succeeds exactly when the point is on the curve (checked with plain big-integer arithmetic),
//! producing blobs of the layout a TPM expects.
#![no_main]

use dps_fuzz::tpm::{self as fx, NONCE};
use dps_server::tpm::alg;
use dps_server::tpm::marshal::{attr, HashAlg, PublicKey, Scheme};
use dps_server::tpm::{
    check_attestation_key, make_credential, verify_quote, CredentialError, Public, QuoteError,
};
use libfuzzer_sys::fuzz_target;

/// The AK-ness `check_attestation_key` must decide: restricted signing key bound to its TPM.
fn is_attestation_key(p: &Public) -> bool {
    p.has(attr::RESTRICTED | attr::SIGN | attr::FIXED_TPM | attr::FIXED_PARENT)
        && !p.has(attr::DECRYPT)
}

/// What MakeCredential needs: a restricted decryption key with a symmetric algorithm.
fn is_storage_key(p: &Public) -> bool {
    p.has(attr::RESTRICTED | attr::DECRYPT) && !p.has(attr::SIGN) && p.symmetric.is_some()
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A parsed public area against the TPMT_PUBLIC bytes it came from.
fn check_parsed(p: &Public, tpmt: &[u8]) {
    assert_eq!(p.tpmt(), tpmt, "keeps the bytes it was parsed from");
    let tpm2b = p.to_tpm2b();
    assert_eq!(usize::from(be16(&tpm2b)), tpmt.len());
    assert_eq!(&tpm2b[2..], tpmt);
    assert_eq!(Public::from_tpm2b(&tpm2b).as_ref(), Ok(p), "re-parses");
    let rebuilt = Public::new(
        p.name_alg,
        p.attributes,
        p.auth_policy.clone(),
        p.symmetric,
        p.scheme,
        p.key.clone(),
    );
    assert_eq!(&rebuilt, p, "its fields marshal to the same bytes");

    // The header as on the wire, and what the parser promises about each field.
    assert_eq!(be16(&tpmt[2..]), p.name_alg.id());
    assert_eq!(
        u32::from_be_bytes([tpmt[4], tpmt[5], tpmt[6], tpmt[7]]),
        p.attributes
    );
    assert!(p.auth_policy.len() <= 64);
    if let Some(s) = p.symmetric {
        assert!(matches!(s.key_bits, 128 | 256));
    }
    match &p.key {
        PublicKey::Rsa {
            bits,
            exponent,
            modulus,
        } => {
            assert_eq!(be16(tpmt), alg::RSA);
            assert!(matches!(bits, 2048 | 3072 | 4096));
            assert_eq!(modulus.len(), usize::from(*bits / 8));
            assert_ne!(modulus[0], 0);
            assert!(*exponent == 0 || (*exponent > 1 && exponent % 2 == 1));
            assert!(matches!(
                p.scheme,
                Scheme::Null | Scheme::Rsassa(_) | Scheme::Rsapss(_)
            ));
        }
        PublicKey::Ecc { curve, x, y } => {
            assert_eq!(be16(tpmt), alg::ECC);
            let n = curve.coordinate_len();
            assert!((1..=n).contains(&x.len()) && (1..=n).contains(&y.len()));
            assert!(matches!(p.scheme, Scheme::Null | Scheme::Ecdsa(_)));
        }
    }

    let name = p.name();
    assert_eq!(name, p.name(), "the name is deterministic");
    assert_eq!(name.len(), 2 + p.name_alg.len());
    assert_eq!(&name[..2], &tpmt[2..4]);
    let name_alg = HashAlg::from_id(be16(&tpmt[2..])).expect("nameAlg was accepted");
    assert_eq!(
        name[2..],
        name_alg.digest(tpmt),
        "the name digests the bytes"
    );

    check_as_ak(p);
    check_as_ek(p);
}

fn check_as_ak(p: &Public) {
    let verdict = check_attestation_key(p);
    assert_eq!(verdict.is_ok(), is_attestation_key(p), "{verdict:?}");
    if let Err(e) = verdict {
        assert!(matches!(e, QuoteError::NotAttestationKey(_)));
        return;
    }
    // A quote verifies with an AK exactly when it holds the signer's key and allows its scheme.
    let f = fx::fixtures();
    for (signer, q) in [(&f.ak_rsa, &f.quote_rsa), (&f.ak_ecc, &f.quote_ecc)] {
        let got = verify_quote(p, &q.attest, &q.signature, &NONCE);
        let should = fx::same_key(&p.key, &signer.key)
            && (p.scheme == Scheme::Null || p.scheme == signer.scheme);
        assert_eq!(got.is_ok(), should, "{got:?}");
    }
}

fn check_as_ek(p: &Public) {
    let f = fx::fixtures();
    let object_name = f.ak_ecc.name();
    let secret = [0x5e; 32];
    let made = make_credential(p, &object_name, &secret);
    if !is_storage_key(p) {
        assert_eq!(made, Err(CredentialError::NotStorageKey));
        return;
    }
    assert_eq!(
        make_credential(p, &object_name, &vec![0; p.name_alg.len() + 1]),
        Err(CredentialError::CredentialTooLong)
    );
    let made = match (&p.key, made) {
        (PublicKey::Ecc { curve, x, y }, made) => {
            let on_curve = fx::on_curve(*curve, x, y);
            let made = match made {
                Ok(c) => c,
                Err(e) => {
                    assert!(!on_curve, "refused a point on the curve: {e}");
                    assert!(matches!(e, CredentialError::BadKey(_)), "{e:?}");
                    return;
                }
            };
            assert!(on_curve, "made a credential for a point off the curve");
            // TPM2B_ENCRYPTED_SECRET holding TPMS_ECC_POINT: the ephemeral key, on the curve.
            let n = curve.coordinate_len();
            let s = &made.encrypted_secret;
            assert_eq!(s.len(), 2 + 2 + n + 2 + n);
            assert_eq!(usize::from(be16(s)), s.len() - 2);
            assert_eq!(usize::from(be16(&s[2..])), n);
            assert_eq!(usize::from(be16(&s[4 + n..])), n);
            assert!(fx::on_curve(*curve, &s[4..4 + n], &s[6 + n..]));
            made
        }
        (PublicKey::Rsa { modulus, .. }, made) => {
            let made = match made {
                Ok(c) => c,
                Err(e) => {
                    assert!(
                        matches!(e, CredentialError::BadKey(_) | CredentialError::Crypto(_)),
                        "{e:?}"
                    );
                    return;
                }
            };
            // TPM2B_ENCRYPTED_SECRET holding the OAEP ciphertext: modulus-sized.
            let s = &made.encrypted_secret;
            assert_eq!(usize::from(be16(s)), modulus.len());
            assert_eq!(s.len(), 2 + modulus.len());
            made
        }
    };
    // TPM2B_ID_OBJECT: size, TPM2B_DIGEST integrityHMAC (nameAlg-sized), encIdentity (the
    // credential as a TPM2B, CFB-encrypted: same length).
    let b = &made.credential_blob;
    let h = p.name_alg.len();
    assert_eq!(b.len(), 2 + 2 + h + 2 + secret.len());
    assert_eq!(usize::from(be16(b)), b.len() - 2);
    assert_eq!(usize::from(be16(&b[2..])), h);
}

fuzz_target!(|data: &[u8]| {
    let as_tpmt = Public::from_tpmt(data);
    let as_tpm2b = Public::from_tpm2b(data);
    let framed = match data {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
            Some(rest).filter(|r| !r.is_empty())
        }
        _ => None,
    };
    match framed {
        Some(rest) => assert_eq!(as_tpm2b, Public::from_tpmt(rest)),
        None => assert!(as_tpm2b.is_err(), "parsed a TPM2B_PUBLIC with a wrong size"),
    }
    if let Ok(p) = &as_tpmt {
        check_parsed(p, data);
    }
    if let (Ok(p), Some(rest)) = (&as_tpm2b, framed) {
        check_parsed(p, rest);
    }
});
