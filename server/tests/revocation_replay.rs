//! Revocation and replay through the device port (issue 11, findings 1 and 3):
//! - a device whose name a group's deny list gains, or its allow list loses, is refused with its
//!   identity certificate as with its manufacturer certificate; so is a TPM whose individual
//!   enrollment is removed, or whose registration id a TPM group's deny list gains;
//! - a device id belongs to the manufacturer identity that first obtained it: another device
//!   sending a captured CSR for it is refused and the owner keeps it, until an operator releases
//!   the id over the admin API.

mod common;

use common::server::*;
use common::tpm::{anonymous, attest, challenge, setup, TpmVendor, INDIVIDUAL, TPM_GROUP};
use dps_server::config::Config;
use dps_server::enrollment::{CertId, EnrollmentGroup, RejectReason};
use dps_server::init::{ids, init};
use dps_server::pki::{CertSpec, Issued};
use dps_server::proto::body::{TpmAttestResponse, TpmChallengeResponse};
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use dps_server::records::Persistence;
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm};
use uuid::Uuid;

/// A manufacturer CA of the test's own, served as an enrollment group of the demo owner and hub.
fn factory(running: &Running) -> (Issued, EnrollmentGroup) {
    let ca = Issued::self_signed(&CertSpec::ca("Revocation Test Factory")).expect("ca");
    let mut group = EnrollmentGroup::new("revocation", "acme", vec![ca.der().clone()]);
    group.hub_ids = vec![ids::HUB.parse().expect("hub id")];
    running.server.arena().upsert(group.clone()).expect("group");
    (ca, group)
}

fn auth_of(
    leaf: &Issued,
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    (vec![leaf.der().clone()], leaf.key_der())
}

/// Whether a device with the identity certificate of `p` gets its time answered.
async fn identity_admitted(dir: &std::path::Path, running: &Running, p: &Provisioned) -> bool {
    let Ok(tls) = connect(dir, running.addr, Some(p.identity_auth())).await else {
        return false;
    };
    let mut dev = FramedIo::new(tls, 64 * 1024);
    matches!(
        dev.exchange(&request(Code::GET, 7, "/x.plgd.dev/time")).await,
        Ok(f) if f.code == Code::CONTENT
    )
}

fn rejected(running: &Running, reason: RejectReason) -> u64 {
    running.server.verifier().stats.rejected(reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_refused_whatever_certificate_it_presents() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let (ca, mut group) = factory(&running);
    let leaf = ca.issue(&CertSpec::device("SN-REVOKED")).expect("leaf");
    let other = ca.issue(&CertSpec::device("SN-OTHER")).expect("leaf");
    let p = provision(dir.path(), running.addr, auth_of(&leaf)).await;
    let q = provision(dir.path(), running.addr, auth_of(&other)).await;
    assert!(identity_admitted(dir.path(), &running, &p).await);

    // Denied by CN: the manufacturer certificate and the identity certificate both refused;
    // another device of the group is not affected.
    group.deny_common_names = vec!["SN-REVOKED".into()];
    running.server.arena().upsert(group.clone()).expect("deny");
    let denied = rejected(&running, RejectReason::Denied);
    assert!(handshake_refused(dir.path(), running.addr, auth_of(&leaf)).await);
    assert!(!identity_admitted(dir.path(), &running, &p).await);
    assert_eq!(rejected(&running, RejectReason::Denied), denied + 2);
    assert!(identity_admitted(dir.path(), &running, &q).await);

    // No longer on a non-empty allow list: refused as not allowed.
    group.deny_common_names.clear();
    group.allow_common_names = vec!["SN-OTHER".into()];
    running.server.arena().upsert(group.clone()).expect("allow");
    let not_allowed = rejected(&running, RejectReason::NotAllowed);
    assert!(!identity_admitted(dir.path(), &running, &p).await);
    assert_eq!(
        rejected(&running, RejectReason::NotAllowed),
        not_allowed + 1
    );
    assert!(identity_admitted(dir.path(), &running, &q).await);

    // Reinstated: its identity works again (the refusal changed nothing on record).
    group.allow_common_names.clear();
    running
        .server
        .arena()
        .upsert(group.clone())
        .expect("reinstate");
    assert!(identity_admitted(dir.path(), &running, &p).await);

    // The names survive a restart (they are stored with the identity).
    running.server.records().flush().await.expect("flush");
    running.stop().await;
    let running = start(dir.path()).await;
    group.deny_common_names = vec!["SN-REVOKED".into()];
    running.server.arena().upsert(group).expect("deny again");
    assert!(!identity_admitted(dir.path(), &running, &p).await);
    assert!(identity_admitted(dir.path(), &running, &q).await);
    running.stop().await;
}

/// Attest `tpm` on a fresh anonymous connection and provision it; the identity it was issued.
async fn provision_tpm(
    dir: &std::path::Path,
    running: &Running,
    tpm: &SoftTpm,
    ek_certificate: Option<Vec<u8>>,
) -> Provisioned {
    let mut dev = anonymous(dir, running.addr).await;
    let mut req = tpm.challenge_request();
    req.ek_certificate = ek_certificate;
    let ch: TpmChallengeResponse = decoded(&challenge(&mut dev, &req).await, Code::CHANGED);
    let answer = tpm.attest_request(&ch).expect("answer");
    let _: TpmAttestResponse = decoded(&attest(&mut dev, &answer).await, Code::CHANGED);
    let device_id = Uuid::new_v4();
    let key = rcgen::KeyPair::generate().expect("key");
    let resp = dev
        .exchange(&post(
            4,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device_id, &key),
        ))
        .await
        .expect("credentials");
    Provisioned {
        device_id,
        key,
        identity: identity_of(&resp),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tpm_is_refused_with_its_identity_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let individual = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    let fleet = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    let vendor = TpmVendor::new("Revoke");
    setup(
        dir.path(),
        &individual.ek().public().to_tpm2b(),
        &vendor,
        30_000,
    );
    let running = start(dir.path()).await;
    let p = provision_tpm(dir.path(), &running, &individual, None).await;
    let q = provision_tpm(
        dir.path(),
        &running,
        &fleet,
        Some(vendor.ek_certificate(&fleet)),
    )
    .await;
    assert!(identity_admitted(dir.path(), &running, &p).await);
    assert!(identity_admitted(dir.path(), &running, &q).await);

    // The TPM group's deny list gains the fleet TPM's registration id.
    let tpm_group: Uuid = TPM_GROUP.parse().expect("id");
    let mut def = running
        .server
        .arena()
        .load()
        .group(&tpm_group)
        .expect("tpm group")
        .def
        .clone();
    def.deny_common_names = vec![fleet.registration_id()];
    running.server.arena().upsert(def).expect("deny");
    assert!(!identity_admitted(dir.path(), &running, &q).await);
    assert!(identity_admitted(dir.path(), &running, &p).await);

    // The individual enrollment is removed.
    let enrollments = running.server.attestor().enrollments().clone();
    let keep: Vec<_> = enrollments
        .list()
        .into_iter()
        .filter(|e| e.def.id.to_string() != INDIVIDUAL)
        .map(|e| (*e).clone())
        .collect();
    enrollments.replace_all(keep).expect("remove");
    let no_group = rejected(&running, RejectReason::NoGroup);
    assert!(!identity_admitted(dir.path(), &running, &p).await);
    assert_eq!(rejected(&running, RejectReason::NoGroup), no_group + 1);
    running.stop().await;
}

/// DELETE over the admin API of the running server; the status code.
async fn admin_delete(running: &Running, dir: &std::path::Path, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Config::load(&dir.join("config.toml")).expect("config");
    let state = running.server.admin_state(&config, "t0ken".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(dps_server::admin::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin");
    let req = format!("DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer t0ken\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let _ = stop.send(());
    let _ = serving.await;
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

/// The answer to a credentials request for `device_id` with `key`, on a new session of `leaf`.
async fn ask_credentials(
    dir: &std::path::Path,
    running: &Running,
    leaf: &Issued,
    device_id: &Uuid,
    key: &rcgen::KeyPair,
) -> dps_server::proto::coap::Frame {
    let tls = connect(dir, running.addr, Some(auth_of(leaf)))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    dev.exchange(&post(
        4,
        "/api/v1/provisioning/credentials",
        &credentials_request(device_id, key),
    ))
    .await
    .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_csr_cannot_take_over_a_device_id_until_it_is_released() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let (ca, _) = factory(&running);
    let owner_leaf = ca.issue(&CertSpec::device("SN-OWNER")).expect("leaf");
    let thief_leaf = ca.issue(&CertSpec::device("SN-THIEF")).expect("leaf");
    let b = provision(dir.path(), running.addr, auth_of(&owner_leaf)).await;

    // A sends B's captured CSR (B's id, B's key): refused, and nothing changes for B.
    let resp = ask_credentials(dir.path(), &running, &thief_leaf, &b.device_id, &b.key).await;
    assert_eq!(resp.code, Code::BAD_REQUEST);
    let diagnostic = String::from_utf8_lossy(&resp.payload);
    assert!(
        diagnostic.contains("another manufacturer identity"),
        "{diagnostic}"
    );
    // With a key of its own, too.
    let own_key = rcgen::KeyPair::generate().expect("key");
    let resp = ask_credentials(dir.path(), &running, &thief_leaf, &b.device_id, &own_key).await;
    assert_eq!(resp.code, Code::BAD_REQUEST);
    assert!(
        identity_admitted(dir.path(), &running, &b).await,
        "B keeps its identity"
    );
    running.server.records().flush().await.expect("flush");
    let store = running.server.store();
    let owner_record = store
        .record(&b.device_id.to_string())
        .expect("store")
        .expect("B's record");
    assert_eq!(owner_record.key, CertId::of(owner_leaf.der()).to_string());
    let thief_record = store
        .record(&CertId::of(thief_leaf.der()).to_string())
        .expect("store")
        .expect("A's record");
    assert_eq!(thief_record.device_id, None, "a refusal gives A no id");

    // The owner itself may come back without its identity (a lost answer) and ask again with
    // its key (as real clients do); another key is refused while its certificate is valid.
    let resp = ask_credentials(dir.path(), &running, &owner_leaf, &b.device_id, &own_key).await;
    assert_eq!(resp.code, Code::BAD_REQUEST);
    let renewed = ask_credentials(dir.path(), &running, &owner_leaf, &b.device_id, &b.key).await;
    let key = rcgen::KeyPair::from_pem(&b.key.serialize_pem()).expect("key");
    let renewed = Provisioned {
        device_id: b.device_id,
        key,
        identity: identity_of(&renewed),
    };
    assert!(identity_admitted(dir.path(), &running, &renewed).await);
    assert!(
        !identity_admitted(dir.path(), &running, &b).await,
        "superseded"
    );

    // Released by an operator: the id is free, its identity certificates are not recognised.
    let path = format!("/api/v1/identities/{}", b.device_id);
    assert_eq!(admin_delete(&running, dir.path(), &path).await, 204);
    assert_eq!(admin_delete(&running, dir.path(), &path).await, 404);
    assert!(!identity_admitted(dir.path(), &running, &renewed).await);
    let taken = ask_credentials(dir.path(), &running, &thief_leaf, &b.device_id, &own_key).await;
    let a = Provisioned {
        device_id: b.device_id,
        key: own_key,
        identity: identity_of(&taken),
    };
    assert!(identity_admitted(dir.path(), &running, &a).await);
    running.stop().await;
}
