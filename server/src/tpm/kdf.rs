//! The two TPM key derivation functions (TPM 2.0 Part 1 §11.4.10): KDFa, the SP 800-108 counter
//! mode HMAC KDF, and KDFe, the SP 800-56A concatenation KDF. Labels are written with their
//! terminating NUL, as the reference implementation and every TSS do.

use aws_lc_rs::{digest, hmac};

use super::alg::HashAlg;

/// KDFa(hash, key, label, contextU, contextV, bits): HMAC(key, \[i\]₃₂ ‖ label ‖ 00 ‖ contextU ‖
/// contextV ‖ \[bits\]₃₂) for i = 1, 2, … concatenated and cut to `bits / 8` bytes.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let want = (bits as usize).div_ceil(8);
    let key = hmac::Key::new(hash.hmac_alg(), key);
    let mut out = Vec::with_capacity(want + hash.len());
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(want);
    out
}

/// KDFe(hash, Z, label, partyUInfo, partyVInfo, bits): H(\[i\]₃₂ ‖ Z ‖ label ‖ 00 ‖ partyUInfo ‖
/// partyVInfo) for i = 1, 2, … concatenated and cut to `bits / 8` bytes.
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let want = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(want + hash.len());
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = digest::Context::new(hash.digest_alg());
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(party_u);
        ctx.update(party_v);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(want);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KDFa written out by hand for one block: the construction, not a copy of the code path.
    #[test]
    fn kdfa_first_block_is_the_hmac_of_the_spec_layout() {
        let key = b"seed-seed-seed-seed-seed-seed-32";
        let got = kdfa(HashAlg::Sha256, key, "STORAGE", b"name", b"", 128);
        let mut msg = Vec::new();
        msg.extend_from_slice(&1u32.to_be_bytes());
        msg.extend_from_slice(b"STORAGE\0name");
        msg.extend_from_slice(&128u32.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &msg);
        assert_eq!(got, tag.as_ref()[..16]);
    }

    #[test]
    fn kdfa_longer_than_one_block_uses_the_counter() {
        let a = kdfa(HashAlg::Sha256, b"k", "INTEGRITY", b"", b"", 512);
        assert_eq!(a.len(), 64);
        let mut msg = Vec::new();
        msg.extend_from_slice(&2u32.to_be_bytes());
        msg.extend_from_slice(b"INTEGRITY\0");
        msg.extend_from_slice(&512u32.to_be_bytes());
        let second = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), &msg);
        assert_eq!(&a[32..], second.as_ref());
        assert_ne!(a[..32], a[32..]);
    }

    #[test]
    fn kdfe_is_the_concatenation_kdf() {
        let got = kdfe(HashAlg::Sha256, b"zz", "IDENTITY", b"u", b"v", 256);
        let want = digest::digest(&digest::SHA256, b"\x00\x00\x00\x01zzIDENTITY\0uv");
        assert_eq!(got, want.as_ref());
        let long = kdfe(HashAlg::Sha384, b"zz", "IDENTITY", b"u", b"v", 8 * 50);
        assert_eq!(long.len(), 50);
    }
}
