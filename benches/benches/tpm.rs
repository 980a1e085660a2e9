//! TPM attestation costs on the server: software TPM2_MakeCredential for RSA-2048 and ECC P-256
//! EKs (fresh seed, OAEP or ephemeral ECDH, KDFs, AES-CFB, HMAC), quote verification for ECDSA
//! P-256 and RSASSA-2048 AKs, and the soft TPM's device side for reference.

#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm};
use dps_server::tpm::{make_credential, verify_quote};

fn tpm(c: &mut Criterion) {
    let mut g = c.benchmark_group("make_credential");
    g.throughput(Throughput::Elements(1));
    for (label, ek) in [("rsa2048", EkKind::Rsa2048), ("ecc_p256", EkKind::EccP256)] {
        let t = SoftTpm::generate(ek, AkKind::EccP256).expect("soft TPM");
        let name = t.ak().public().name();
        let secret = [0x11u8; 32];
        // What the server does per challenge, minus the request decoding.
        g.bench_function(label, |b| {
            b.iter(|| make_credential(t.ek().public(), &name, &secret).expect("make"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("verify_quote");
    g.throughput(Throughput::Elements(1));
    for (label, ak) in [
        ("ecdsa_p256", AkKind::EccP256),
        ("rsassa2048", AkKind::Rsa2048),
    ] {
        let t = SoftTpm::generate(EkKind::EccP256, ak).expect("soft TPM");
        let nonce = [0x22u8; 32];
        let (attest, sig) = t.quote(&nonce).expect("quote");
        g.bench_function(label, |b| {
            b.iter(|| verify_quote(t.ak().public(), &attest, &sig, &nonce).expect("verify"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("soft_tpm_device");
    g.throughput(Throughput::Elements(1));
    for (label, ek) in [("rsa2048", EkKind::Rsa2048), ("ecc_p256", EkKind::EccP256)] {
        let t = SoftTpm::generate(ek, AkKind::EccP256).expect("soft TPM");
        let made =
            make_credential(t.ek().public(), &t.ak().public().name(), &[1u8; 32]).expect("make");
        g.bench_function(format!("activate_credential_{label}"), |b| {
            b.iter(|| {
                t.activate_credential(&made.credential_blob, &made.encrypted_secret)
                    .expect("activate")
            })
        });
    }
    g.sample_size(10);
    g.bench_function("generate_ecc_ek_and_ak", |b| {
        b.iter(|| SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("generate"))
    });
    g.finish();
}

criterion_group!(benches, tpm);
criterion_main!(benches);
