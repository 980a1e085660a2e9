//! Cross-validation against implementations nobody here wrote: swtpm (a real TPM 2.0 in software,
//! driven through tpm2-tss) and tpm2-tools' `tpm2_makecredential -T none` (OpenSSL-based).
//! A credential made by the server is activated by TPM2_ActivateCredential in swtpm; credentials
//! made by swtpm and by tpm2-tools are recovered by the soft TPM; swtpm's quotes verify; and a
//! swtpm-backed device goes through the server's challenge. Needs the `tpm-sim` feature (and
//! swtpm + tpm2-tools installed, as `.ci/run` does).
#![cfg(feature = "tpm-sim")]

mod common;

use common::server::*;
use common::tpm::*;
use dps_server::proto::body::{OwnershipResponse, TpmAttestResponse, TpmChallengeResponse};
use dps_server::proto::coap::Code;
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm};
use dps_server::tpm::swtpm::{Swtpm, SwtpmDevice};
use dps_server::tpm::{make_credential, verify_quote, Public, QuoteError};

fn device(swtpm: &Swtpm, kind: EkKind) -> SwtpmDevice {
    SwtpmDevice::create(swtpm.context().expect("ESAPI context"), kind).expect("EK and AK")
}

#[test]
fn server_credentials_are_activated_by_swtpm_for_rsa_and_ecc_eks() {
    let swtpm = Swtpm::start().expect("swtpm");
    for kind in [EkKind::Rsa2048, EkKind::EccP256] {
        let mut dev = device(&swtpm, kind);
        // Our strict parser reads the TPM's structures and computes the TPM's AK name.
        let ek = Public::from_tpm2b(dev.ek_public()).expect("swtpm EK parses");
        let ak = Public::from_tpm2b(dev.ak_public()).expect("swtpm AK parses");
        assert_eq!(ak.name(), dev.ak_name(), "name = nameAlg || H(TPMT_PUBLIC)");
        assert_eq!(ek.to_tpm2b(), dev.ek_public(), "re-marshals byte for byte");
        dps_server::tpm::check_attestation_key(&ak).expect("tss-esapi AK is an attestation key");

        let secret = [0x5au8; 32];
        let made = make_credential(&ek, &ak.name(), &secret).expect("make credential");
        let got = dev
            .activate_credential(&made.credential_blob, &made.encrypted_secret)
            .expect("TPM2_ActivateCredential accepts our blob");
        assert_eq!(got, secret, "{kind:?}");

        // A tampered blob is refused by the real TPM too.
        let mut blob = made.credential_blob.clone();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert!(dev
            .activate_credential(&blob, &made.encrypted_secret)
            .is_err());
    }
}

#[test]
fn a_seed_in_the_ek_template_gives_distinct_eks_that_come_back_identically() {
    let swtpm = Swtpm::start().expect("swtpm");
    // One ESAPI connection at a time: each device is dropped before the next connects.
    let create = |seed: Option<&[u8; 32]>| {
        SwtpmDevice::create_with_ek_seed(
            swtpm.context().expect("ESAPI context"),
            EkKind::EccP256,
            seed,
        )
        .expect("EK and AK")
    };
    let default_ek = create(None).ek_public().to_vec();
    let one = create(Some(&[1; 32])).ek_public().to_vec();
    let two = create(Some(&[2; 32])).ek_public().to_vec();
    assert_ne!(one, default_ek);
    assert_ne!(one, two);
    let mut again = create(Some(&[1; 32]));
    assert_eq!(again.ek_public(), one.as_slice(), "same seed, same EK");
    // Otherwise the default template: the server takes it as an EK.
    let ek = Public::from_tpm2b(&one).expect("EK parses");
    let default = Public::from_tpm2b(&default_ek).expect("EK parses");
    assert_eq!(
        (ek.attributes, &ek.auth_policy, ek.symmetric),
        (default.attributes, &default.auth_policy, default.symmetric)
    );
    // A credential made for the first creation's EK is activated by the re-created one.
    let ak = Public::from_tpm2b(again.ak_public()).expect("AK");
    let made = make_credential(&ek, &ak.name(), &[9; 32]).expect("make credential");
    let got = again
        .activate_credential(&made.credential_blob, &made.encrypted_secret)
        .expect("activate with the re-created EK");
    assert_eq!(got, [9; 32]);
}

#[test]
fn swtpm_credentials_are_recovered_by_the_soft_tpm() {
    let swtpm = Swtpm::start().expect("swtpm");
    let mut dev = device(&swtpm, EkKind::EccP256);
    for kind in [EkKind::Rsa2048, EkKind::EccP256] {
        let soft = SoftTpm::generate(kind, AkKind::EccP256).expect("soft TPM");
        let secret = [0xc3u8; 32];
        let (blob, encrypted) = dev
            .make_credential_for(
                &soft.ek().public().to_tpm2b(),
                &soft.ak().public().name(),
                &secret,
            )
            .expect("TPM2_MakeCredential");
        let got = soft
            .activate_credential(&blob, &encrypted)
            .expect("soft ActivateCredential of a TPM-made blob");
        assert_eq!(got, secret, "{kind:?}");
    }
}

#[test]
fn swtpm_quotes_verify_and_bind_the_nonce() {
    let swtpm = Swtpm::start().expect("swtpm");
    for kind in [EkKind::EccP256, EkKind::Rsa2048] {
        let mut dev = device(&swtpm, kind);
        let ak = Public::from_tpm2b(dev.ak_public()).expect("AK");
        let nonce = [7u8; 32];
        let (attest, signature) = dev.quote(&nonce).expect("TPM2_Quote");
        let parsed = verify_quote(&ak, &attest, &signature, &nonce).expect("quote verifies");
        assert_eq!(parsed.extra_data, nonce);
        assert_eq!(
            verify_quote(&ak, &attest, &signature, &[8u8; 32]),
            Err(QuoteError::NonceMismatch)
        );
        let other = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("soft");
        assert!(verify_quote(other.ak().public(), &attest, &signature, &nonce).is_err());
    }
}

/// `tpm2_makecredential -T none` output: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET.
fn tpm2_tools_credential(soft: &SoftTpm, secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tmp");
    let ek = dir.path().join("ek.pub");
    let sec = dir.path().join("secret.bin");
    let out = dir.path().join("cred.out");
    std::fs::write(&ek, soft.ek().public().to_tpm2b()).expect("write EK");
    std::fs::write(&sec, secret).expect("write secret");
    let status = std::process::Command::new("tpm2_makecredential")
        .args(["-T", "none", "-u"])
        .arg(&ek)
        .arg("-s")
        .arg(&sec)
        .arg("-n")
        .arg(hex::encode(soft.ak().public().name()))
        .arg("-o")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("tpm2_makecredential is installed (tpm2-tools)");
    assert!(status.success(), "tpm2_makecredential failed");
    let b = std::fs::read(&out).expect("output");
    assert_eq!(&b[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let n = usize::from(u16::from_be_bytes([b[8], b[9]]));
    let (blob, secret) = b[8..].split_at(2 + n);
    (blob.to_vec(), secret.to_vec())
}

#[test]
fn tpm2_makecredential_output_is_recovered_by_the_soft_tpm() {
    let soft = SoftTpm::generate(EkKind::Rsa2048, AkKind::EccP256).expect("soft TPM");
    let secret = *b"credential made by tpm2-tools!!!";
    let (blob, encrypted) = tpm2_tools_credential(&soft, &secret);
    // Same layout as ours: sizes of the HMAC, encIdentity and the OAEP-encrypted seed.
    let ours =
        make_credential(soft.ek().public(), &soft.ak().public().name(), &secret).expect("ours");
    assert_eq!(blob.len(), ours.credential_blob.len());
    assert_eq!(encrypted.len(), ours.encrypted_secret.len());
    assert_eq!(blob[..4], ours.credential_blob[..4]);
    assert_eq!(
        soft.activate_credential(&blob, &encrypted)
            .expect("activate"),
        secret
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swtpm_device_attests_to_the_server() {
    let swtpm = Swtpm::start().expect("swtpm");
    let mut tpm = device(&swtpm, EkKind::Rsa2048);
    let dir = tempfile::tempdir().expect("tmp");
    setup(dir.path(), tpm.ek_public(), &TpmVendor::new("Acme"), 30_000);
    let running = start(dir.path()).await;
    let mut dev = anonymous(dir.path(), running.addr).await;
    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut dev, &tpm.challenge_request()).await,
        Code::CHANGED,
    );
    let answer = tpm.attest_request(&ch).expect("swtpm answers");
    let done: TpmAttestResponse = decoded(&attest(&mut dev, &answer).await, Code::CHANGED);
    assert_eq!(
        done.registration_id,
        dps_server::tpm::registration_id(tpm.ek_public())
    );
    let _: OwnershipResponse = decoded(
        &dev.exchange(&request(Code::GET, 2, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership"),
        Code::CONTENT,
    );
    running.stop().await;
}
