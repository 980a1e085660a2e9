use super::*;
use crate::tpm::soft::{AkKind, EkKind, SoftTpm};

fn tpms() -> Vec<SoftTpm> {
    vec![
        SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm"),
        SoftTpm::generate(EkKind::Rsa2048, AkKind::Rsa2048).expect("soft tpm"),
    ]
}

#[test]
fn public_areas_round_trip_byte_for_byte() {
    for t in tpms() {
        for p in [t.ek().public(), t.ak().public()] {
            let bytes = p.to_tpm2b();
            let parsed = Public::from_tpm2b(&bytes).expect("parses");
            assert_eq!(parsed.to_tpm2b(), bytes);
            assert_eq!(parsed.tpmt(), &bytes[2..]);
            let name = parsed.name();
            assert_eq!(&name[..2], &[0x00, 0x0b]);
            assert_eq!(name.len(), 34);
        }
    }
}

#[test]
fn every_truncation_and_any_trailing_byte_is_an_error() {
    let t = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm");
    let bytes = t.ek().public().to_tpm2b();
    for n in 0..bytes.len() {
        assert!(
            Public::from_tpm2b(&bytes[..n]).is_err(),
            "prefix of {n} bytes"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Public::from_tpm2b(&long),
        Err(MarshalError::Trailing {
            what: "TPM2B_PUBLIC",
            extra: 1
        })
    );
    // Outer size one larger than the content: the inner structure is short by one.
    let mut inner_long = bytes.clone();
    inner_long[1] += 1;
    inner_long.push(0);
    assert!(matches!(
        Public::from_tpm2b(&inner_long),
        Err(MarshalError::Trailing {
            what: "TPMT_PUBLIC",
            ..
        })
    ));
}

#[test]
fn no_single_byte_change_panics_and_most_are_refused_or_change_the_name() {
    for t in tpms() {
        let bytes = t.ek().public().to_tpm2b();
        let name = t.ek().public().name();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                if let Ok(p) = Public::from_tpm2b(&b) {
                    assert_ne!(p.name(), name, "byte {i} changed without changing the name");
                }
            }
        }
        let t2 = t.quote(&[5u8; 32]).expect("quote");
        for i in 0..t2.0.len() {
            let mut b = t2.0.clone();
            b[i] ^= 0xff;
            let _ = Attest::parse(&b);
        }
        for i in 0..t2.1.len() {
            let mut b = t2.1.clone();
            b[i] ^= 0xff;
            let _ = Signature::parse(&b);
        }
    }
}

#[test]
fn unsupported_algorithms_are_named() {
    let t = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm");
    let bytes = t.ek().public().to_tpm2b();
    // nameAlg SHA-1.
    let mut sha1 = bytes.clone();
    sha1[4..6].copy_from_slice(&alg::SHA1.to_be_bytes());
    assert_eq!(
        Public::from_tpm2b(&sha1),
        Err(MarshalError::Unsupported {
            what: "hash algorithm",
            value: 4
        })
    );
    // type KEYEDHASH.
    let mut keyed = bytes.clone();
    keyed[2..4].copy_from_slice(&0x0008u16.to_be_bytes());
    assert!(matches!(
        Public::from_tpm2b(&keyed),
        Err(MarshalError::Unsupported {
            what: "public area type",
            ..
        })
    ));
}

/// `p` (an RSA public) with its modulus replaced.
fn with_modulus(p: &Public, modulus: Vec<u8>) -> Public {
    Public::new(
        p.name_alg,
        p.attributes,
        p.auth_policy.clone(),
        p.symmetric,
        p.scheme,
        PublicKey::Rsa {
            bits: 2048,
            exponent: 0,
            modulus,
        },
    )
}

#[test]
fn rsa_modulus_must_have_key_bits() {
    let t = SoftTpm::generate(EkKind::Rsa2048, AkKind::EccP256).expect("soft tpm");
    let p = t.ek().public();
    let PublicKey::Rsa { modulus, .. } = &p.key else {
        panic!("rsa")
    };
    // A byte short.
    let short = with_modulus(p, modulus[1..].to_vec());
    assert!(matches!(
        Public::from_tpm2b(&short.to_tpm2b()),
        Err(MarshalError::Invalid(_))
    ));
    // The right length, but a 2045-bit value (found by the tpm_public fuzz target).
    let mut low = modulus.clone();
    low[0] = 0x17;
    assert!(matches!(
        Public::from_tpm2b(&with_modulus(p, low).to_tpm2b()),
        Err(MarshalError::Invalid(_))
    ));
    assert!(Public::from_tpm2b(&p.to_tpm2b()).is_ok());
}

#[test]
fn attest_and_signature_round_trip_and_refuse_other_types() {
    let t = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft tpm");
    let (attest, sig) = t.quote(&[7u8; 32]).expect("quote");
    let parsed = Attest::parse(&attest).expect("attest");
    assert_eq!(parsed.marshal(), attest);
    assert_eq!(parsed.magic, alg::TPM_GENERATED_VALUE);
    let s = Signature::parse(&sig).expect("signature");
    assert_eq!(s.marshal(), sig);
    let mut certify = attest.clone();
    certify[4..6].copy_from_slice(&0x8017u16.to_be_bytes()); // TPM_ST_ATTEST_CERTIFY
    assert!(matches!(
        Attest::parse(&certify),
        Err(MarshalError::Unsupported { .. })
    ));
    let mut hmac_sig = sig.clone();
    hmac_sig[0..2].copy_from_slice(&0x0005u16.to_be_bytes()); // TPM_ALG_HMAC
    assert!(matches!(
        Signature::parse(&hmac_sig),
        Err(MarshalError::Unsupported { .. })
    ));
    for n in 0..attest.len() {
        assert!(Attest::parse(&attest[..n]).is_err());
    }
}
