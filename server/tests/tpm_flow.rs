//! The TPM nonce challenge against the real server over TLS without a client certificate: soft
//! TPMs enrolled individually and through an EK-certificate group get through challenge and
//! attest and are then provisioned like X.509 devices; every adversarial case gets its refusal.

mod common;

use common::server::*;
use common::tpm::*;
use dps_server::proto::body::{
    AclsResponse, CloudConfigurationRequest, CloudConfigurationResponse, OwnershipResponse,
    TpmAttestResponse, TpmChallengeResponse,
};
use dps_server::proto::coap::Code;
use dps_server::records::Persistence;
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm};

fn soft(ek: EkKind, ak: AkKind) -> SoftTpm {
    SoftTpm::generate(ek, ak).expect("soft TPM")
}

struct Fixture {
    dir: tempfile::TempDir,
    running: Running,
    enrolled: SoftTpm,
    vendor: TpmVendor,
}

async fn fixture(ttl_ms: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let enrolled = soft(EkKind::EccP256, AkKind::EccP256);
    let vendor = TpmVendor::new("Acme");
    setup(
        dir.path(),
        &enrolled.ek().public().to_tpm2b(),
        &vendor,
        ttl_ms,
    );
    let running = start(dir.path()).await;
    Fixture {
        dir,
        running,
        enrolled,
        vendor,
    }
}

fn diag(f: &dps_server::proto::coap::Frame) -> String {
    String::from_utf8_lossy(&f.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individually_enrolled_tpm_attests_then_provisions_like_an_x509_device() {
    let f = fixture(30_000).await;
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;

    // Nothing but the TPM resources before attestation.
    let resp = dev
        .exchange(&request(Code::GET, 1, "/api/v1/provisioning/ownership"))
        .await
        .expect("ownership");
    assert_eq!(resp.code, Code::FORBIDDEN, "{}", diag(&resp));
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;

    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut dev, &f.enrolled.challenge_request()).await,
        Code::CHANGED,
    );
    assert_eq!(ch.nonce.len(), 32);
    let answer = f.enrolled.attest_request(&ch).expect("soft TPM answers");
    let done: TpmAttestResponse = decoded(&attest(&mut dev, &answer).await, Code::CHANGED);
    assert_eq!(done.registration_id, f.enrolled.registration_id());
    assert_eq!(done.group, "", "an individual enrollment names no group");

    let own: OwnershipResponse = decoded(
        &dev.exchange(&request(Code::GET, 2, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership"),
        Code::CONTENT,
    );
    let expected_owner = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"tpm-owner");
    assert_eq!(own.devowneruuid, expected_owner.to_string());
    let device_id = uuid::Uuid::new_v4();
    let cloud: CloudConfigurationResponse = decoded(
        &dev.exchange(&post(
            3,
            "/api/v1/provisioning/cloud-configuration",
            &CloudConfigurationRequest {
                di: device_id.to_string(),
                selected_gateway: None,
            },
        ))
        .await
        .expect("cloud"),
        Code::CHANGED,
    );
    assert_eq!(cloud.sid, dps_server::init::ids::HUB);
    let key = rcgen::KeyPair::generate().expect("key");
    let resp = dev
        .exchange(&post(
            4,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device_id, &key),
        ))
        .await
        .expect("credentials");
    let identity = identity_of(&resp);
    let acls: AclsResponse = decoded(
        &dev.exchange(&request(Code::GET, 5, "/api/v1/provisioning/acls"))
            .await
            .expect("acls"),
        Code::CONTENT,
    );
    assert!(!acls.aclist2.is_empty());

    // Later the device comes back with the identity certificate it was issued.
    let back = Provisioned {
        device_id,
        key,
        identity,
    };
    let tls = connect(f.dir.path(), f.running.addr, Some(back.identity_auth()))
        .await
        .expect("identity handshake");
    let mut again = dps_server::proto::stream::FramedIo::new(tls, 64 * 1024);
    let own: OwnershipResponse = decoded(
        &again
            .exchange(&request(Code::GET, 6, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership again"),
        Code::CONTENT,
    );
    assert_eq!(own.devowneruuid, expected_owner.to_string());

    // The record is keyed by the EK and names the enrollment.
    f.running.server.records().flush().await.expect("flush");
    let key = dps_server::enrollment::CertId::of(&f.enrolled.ek().public().to_tpm2b());
    let record = f
        .running
        .server
        .store()
        .record(&key.to_string())
        .expect("store")
        .expect("record of the TPM");
    assert_eq!(record.group.to_string(), INDIVIDUAL);
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_ek_and_rsa_ak_attest_through_the_ek_certificate_group() {
    let f = fixture(30_000).await;
    let tpm = soft(EkKind::Rsa2048, AkKind::Rsa2048);
    let tpm = {
        let cert = f.vendor.ek_certificate(&tpm);
        tpm.with_ek_certificate(cert, vec![])
    };
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let done = attested(&mut dev, &tpm).await;
    assert_eq!(done.group, TPM_GROUP);
    assert_eq!(done.registration_id, tpm.registration_id());
    let own: OwnershipResponse = decoded(
        &dev.exchange(&request(Code::GET, 2, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership"),
        Code::CONTENT,
    );
    let fleet_owner = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"tpm-fleet-owner");
    assert_eq!(own.devowneruuid, fleet_owner.to_string());
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenrolled_and_foreign_eks_are_refused_with_4_01() {
    let f = fixture(30_000).await;
    // No enrollment, no certificate.
    let stranger = soft(EkKind::EccP256, AkKind::EccP256);
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let resp = challenge(&mut dev, &stranger.challenge_request()).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(closed(&mut dev).await, "the server closes after an error");

    // A certificate from another vendor.
    let other = TpmVendor::new("Other");
    let cert = other.ek_certificate(&stranger);
    let stranger = stranger.with_ek_certificate(cert, vec![]);
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let resp = challenge(&mut dev, &stranger.challenge_request()).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));

    // A valid EK certificate of the vendor, but for another EK than the one presented.
    let other_tpm = soft(EkKind::EccP256, AkKind::EccP256);
    let cert = f.vendor.ek_certificate(&other_tpm);
    let mut req = stranger.challenge_request();
    req.ek_certificate = Some(cert);
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let resp = challenge(&mut dev, &req).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(diag(&resp).contains("does not certify"), "{}", diag(&resp));

    // The demo device's X.509 chain selects an X.509 group: not a TPM group.
    let x509 = pem_certs(&f.dir.path().join("device-chain.pem"));
    let mut req = stranger.challenge_request();
    req.ek_certificate = Some(x509[0].to_vec());
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let resp = challenge(&mut dev, &req).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));

    // Garbage instead of a TPM2B_PUBLIC: 4.00.
    let mut req = f.enrolled.challenge_request();
    req.ek_public = vec![0, 3, 1, 2, 3];
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let resp = challenge(&mut dev, &req).await;
    assert_eq!(resp.code, Code::BAD_REQUEST, "{}", diag(&resp));
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ek_and_tampered_blob_cannot_produce_the_secret() {
    let f = fixture(30_000).await;
    // An impostor presents the enrolled EK's public key without holding its private key.
    let impostor = soft(EkKind::EccP256, AkKind::EccP256);
    let mut req = impostor.challenge_request();
    req.ek_public = f.enrolled.ek().public().to_tpm2b();
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let ch: TpmChallengeResponse = decoded(&challenge(&mut dev, &req).await, Code::CHANGED);
    assert!(impostor
        .activate_credential(&ch.credential_blob, &ch.encrypted_secret)
        .is_err());
    let (quote, signature) = impostor.quote(&ch.nonce).expect("quote");
    let guess = dps_server::proto::body::TpmAttestRequest {
        secret: vec![0x42; 32],
        quote,
        signature,
    };
    let resp = attest(&mut dev, &guess).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(diag(&resp).contains("secret"), "{}", diag(&resp));

    // The blob tampered on the way: ActivateCredential refuses it, and a made-up secret fails.
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let mut ch: TpmChallengeResponse = decoded(
        &challenge(&mut dev, &f.enrolled.challenge_request()).await,
        Code::CHANGED,
    );
    let last = ch.credential_blob.len() - 1;
    ch.credential_blob[last] ^= 1;
    assert!(f.enrolled.attest_request(&ch).is_err());
    let (quote, signature) = f.enrolled.quote(&ch.nonce).expect("quote");
    let resp = attest(
        &mut dev,
        &dps_server::proto::body::TpmAttestRequest {
            secret: vec![0; 32],
            quote,
            signature,
        },
    )
    .await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_single_use_and_bound_to_their_connection() {
    let f = fixture(30_000).await;
    let tpm = &f.enrolled;
    // A good exchange on connection 1.
    let mut one = anonymous(f.dir.path(), f.running.addr).await;
    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut one, &tpm.challenge_request()).await,
        Code::CHANGED,
    );
    let answer = tpm.attest_request(&ch).expect("answer");
    assert_eq!(attest(&mut one, &answer).await.code, Code::CHANGED);
    // Attesting again on the same connection: the challenge is used up.
    let resp = attest(&mut one, &answer).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));

    // Replaying the old answer to a fresh challenge on connection 2.
    let mut two = anonymous(f.dir.path(), f.running.addr).await;
    let _: TpmChallengeResponse = decoded(
        &challenge(&mut two, &tpm.challenge_request()).await,
        Code::CHANGED,
    );
    let resp = attest(&mut two, &answer).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));

    // A challenge issued on connection 3 answered on connection 4 (which has none).
    let mut three = anonymous(f.dir.path(), f.running.addr).await;
    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut three, &tpm.challenge_request()).await,
        Code::CHANGED,
    );
    let mut four = anonymous(f.dir.path(), f.running.addr).await;
    let resp = attest(&mut four, &tpm.attest_request(&ch).expect("answer")).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(diag(&resp).contains("no outstanding"), "{}", diag(&resp));
    // Still forbidden to provision on connection 3 before it attests.
    let resp = three
        .exchange(&request(Code::GET, 9, "/api/v1/provisioning/acls"))
        .await
        .expect("acls");
    assert_eq!(resp.code, Code::FORBIDDEN, "{}", diag(&resp));
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_by_another_ak_is_refused() {
    let f = fixture(30_000).await;
    let other = soft(EkKind::EccP256, AkKind::EccP256);
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut dev, &f.enrolled.challenge_request()).await,
        Code::CHANGED,
    );
    let secret = f
        .enrolled
        .activate_credential(&ch.credential_blob, &ch.encrypted_secret)
        .expect("activate");
    let (quote, signature) = other.quote(&ch.nonce).expect("quote by another AK");
    let resp = attest(
        &mut dev,
        &dps_server::proto::body::TpmAttestRequest {
            secret,
            quote,
            signature,
        },
    )
    .await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(diag(&resp).contains("signature"), "{}", diag(&resp));
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let f = fixture(150).await;
    let mut dev = anonymous(f.dir.path(), f.running.addr).await;
    let ch: TpmChallengeResponse = decoded(
        &challenge(&mut dev, &f.enrolled.challenge_request()).await,
        Code::CHANGED,
    );
    let answer = f.enrolled.attest_request(&ch).expect("answer");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let resp = attest(&mut dev, &answer).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED, "{}", diag(&resp));
    assert!(diag(&resp).contains("expired"), "{}", diag(&resp));
    f.running.stop().await;
}
