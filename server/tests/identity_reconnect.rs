//! A device presenting the identity certificate this DPS issued is recognised as its provisioned
//! device (group from its record), may renew its credentials, and cannot act as another device;
//! identity certificates that are not the one on record are refused at the handshake.

mod common;

use std::sync::atomic::Ordering;

use common::server::*;
use dps_server::enrollment::{CertId, RejectReason};
use dps_server::init::{ids, init};
use dps_server::proto::body::{AclsResponse, CloudConfigurationRequest, OwnershipResponse};
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use dps_server::records::{Persistence, Step};
use rustls_pki_types::CertificateDer;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_certificate_reconnects_renews_and_stays_its_own_device() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let device = provision(dir.path(), running.addr, demo_device(dir.path())).await;
    let stats = &running.server.verifier().stats;
    assert_eq!(stats.identity_accepted.load(Ordering::Relaxed), 0);

    // Reconnect with the identity certificate: every resource works, in the record's group.
    let tls = connect(dir.path(), running.addr, Some(device.identity_auth()))
        .await
        .expect("identity handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    let resp = dev
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(resp.code, Code::CONTENT);
    assert_eq!(stats.identity_accepted.load(Ordering::Relaxed), 1);
    let own: OwnershipResponse = decoded(
        &dev.exchange(&request(Code::GET, 2, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership"),
        Code::CONTENT,
    );
    assert_eq!(own.devowneruuid, ids::OWNER);
    let resp = dev
        .exchange(&post(
            3,
            "/api/v1/provisioning/cloud-configuration",
            &CloudConfigurationRequest {
                di: device.device_id.to_string(),
                selected_gateway: None,
            },
        ))
        .await
        .expect("cloud");
    assert_eq!(resp.code, Code::CHANGED);
    let acls: AclsResponse = decoded(
        &dev.exchange(&request(Code::GET, 4, "/api/v1/provisioning/acls"))
            .await
            .expect("acls"),
        Code::CONTENT,
    );
    assert_eq!(acls.aclist2.len(), 3, "owner, anon-clear, the group's hub");

    // Renewal with a new key for its own device id.
    let new_key = rcgen::KeyPair::generate().expect("key");
    let resp = dev
        .exchange(&post(
            5,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device.device_id, &new_key),
        ))
        .await
        .expect("renewal");
    let renewed = identity_of(&resp);
    assert_ne!(renewed, device.identity);
    drop(dev);

    running.server.records().flush().await.expect("flush");
    let record = running
        .server
        .store()
        .record(&device.device_id.to_string())
        .expect("read")
        .expect("record");
    assert_eq!(
        record.identity_certificate,
        Some(CertId::of(&renewed).to_string()),
        "the renewal replaced the record's identity certificate"
    );
    assert_eq!(record.common_name, "ACME-SN-000001", "manufacturer CN kept");
    assert_eq!(record.steps[&Step::Credentials].code, "2.04");
    assert_eq!(record.group.to_string(), ids::FACTORY_A);

    // The superseded certificate no longer gets a session.
    assert!(handshake_refused(dir.path(), running.addr, device.identity_auth()).await);

    // The renewed one does, but it cannot get a certificate for another device id.
    let renewed_auth = || (vec![renewed.clone()], key_der(&new_key));
    let tls = connect(dir.path(), running.addr, Some(renewed_auth()))
        .await
        .expect("renewed identity handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    let other = Uuid::new_v4();
    let resp = dev
        .exchange(&post(
            1,
            "/api/v1/provisioning/credentials",
            &credentials_request(&other, &new_key),
        ))
        .await
        .expect("foreign credentials");
    assert_eq!(resp.code, Code::FORBIDDEN);
    let diagnostic = String::from_utf8_lossy(&resp.payload);
    assert!(diagnostic.contains(&other.to_string()), "{diagnostic}");

    // A renewal with the same key is fine too.
    let tls = connect(dir.path(), running.addr, Some(renewed_auth()))
        .await
        .expect("renewed identity handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    let resp = dev
        .exchange(&post(
            1,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device.device_id, &new_key),
        ))
        .await
        .expect("same-key renewal");
    let _ = identity_of(&resp);
    drop(dev);
    running.stop().await;
}

/// An identity certificate for `cn` signed with the identity CA of the init directory (as if
/// the DPS had issued it, but never recorded).
fn forged_identity(dir: &std::path::Path, cn: &str) -> (CertificateDer<'static>, rcgen::KeyPair) {
    let ca_pem = std::fs::read_to_string(dir.join("identity-ca.pem")).expect("ca");
    let ca_key = std::fs::read_to_string(dir.join("identity-ca.key")).expect("ca key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca_pem,
        rcgen::KeyPair::from_pem(&ca_key).expect("ca key pem"),
    )
    .expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    (cert.der().clone(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_certificates_not_on_record_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let device = provision(dir.path(), running.addr, demo_device(dir.path())).await;
    let stats = &running.server.verifier().stats;
    let no_path = stats.rejected(RejectReason::NoPath);

    // Signed by the identity CA for another device id, never issued by the DPS.
    let (cert, key) = forged_identity(dir.path(), &format!("uuid:{}", Uuid::new_v4()));
    assert!(handshake_refused(dir.path(), running.addr, (vec![cert], key_der(&key))).await);
    // Signed by the identity CA for the provisioned device id, but not the certificate on
    // record (another key, another certificate).
    let (cert, key) = forged_identity(dir.path(), &format!("uuid:{}", device.device_id));
    assert!(handshake_refused(dir.path(), running.addr, (vec![cert], key_der(&key))).await);
    // Not even a device id.
    let (cert, key) = forged_identity(dir.path(), "ACME-SN-000001");
    assert!(handshake_refused(dir.path(), running.addr, (vec![cert], key_der(&key))).await);
    assert_eq!(stats.rejected(RejectReason::NoPath), no_path + 3);
    assert_eq!(stats.identity_accepted.load(Ordering::Relaxed), 0);

    // The genuine one still works.
    let tls = connect(dir.path(), running.addr, Some(device.identity_auth()))
        .await
        .expect("identity handshake");
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(resp.code, Code::CONTENT);

    // Once its group is gone, the identity certificate has no group either.
    assert!(running
        .server
        .arena()
        .remove(&ids::FACTORY_A.parse().expect("uuid")));
    assert!(handshake_refused(dir.path(), running.addr, device.identity_auth()).await);
    assert_eq!(stats.rejected(RejectReason::NoGroup), 1);
    drop(dev);
    running.stop().await;
}
