//! The embedded store behind a running server: provisioning records of the full flow, what
//! survives a restart (records, issued identities, admin-managed groups), and start-up errors.

mod common;

use common::server::*;
use common::Manufacturer;
use dps_server::config::{Config, GroupConfig};
use dps_server::enrollment::{CertId, LeadSelector};
use dps_server::init::{ids, init};
use dps_server::pki::chain_pem;
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use dps_server::records::{Persistence, Step};
use dps_server::server::Server;
use dps_server::store::Store;

fn config(dir: &std::path::Path) -> Config {
    Config::load(&dir.join("config.toml")).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_flow_leaves_a_record_with_all_five_steps() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let device = provision(dir.path(), running.addr, demo_device(dir.path())).await;
    running.server.records().flush().await.expect("flush");

    let store = running.server.store();
    let record = store
        .record(&device.device_id.to_string())
        .expect("read")
        .expect("record by device id");
    let leaf = demo_device(dir.path()).0[0].clone();
    assert_eq!(record.key, CertId::of(&leaf).to_string());
    assert_eq!(
        store.record(&record.key).expect("read"),
        Some(record.clone())
    );
    assert_eq!(record.common_name, "ACME-SN-000001");
    assert_eq!(record.group.to_string(), ids::FACTORY_A);
    assert_eq!(record.device_id, Some(device.device_id));
    assert_eq!(
        record.identity_certificate,
        Some(CertId::of(&device.identity).to_string())
    );
    assert!(record.identity_not_after.is_some());
    let codes: Vec<(Step, &str)> = record
        .steps
        .iter()
        .map(|(s, r)| (*s, r.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            (Step::Time, "2.05"),
            (Step::Ownership, "2.05"),
            (Step::CloudConfiguration, "2.04"),
            (Step::Credentials, "2.04"),
            (Step::Acls, "2.05"),
        ]
    );
    assert!(record.steps.values().all(|s| s.diagnostic.is_empty()));
    assert_eq!(
        running
            .server
            .records()
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // A failed step is recorded with its code and diagnostic.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(
            &request(Code::POST, 9, "/api/v1/provisioning/credentials")
                .with_content_format(60)
                .with_payload(vec![0xff]),
        )
        .await
        .expect("answer");
    assert_eq!(resp.code, Code::BAD_REQUEST);
    running.server.records().flush().await.expect("flush");
    let record = store.record(&record.key).expect("read").expect("record");
    let creds = &record.steps[&Step::Credentials];
    assert_eq!(creds.code, "4.00");
    assert!(!creds.diagnostic.is_empty());
    assert_eq!(store.record_count().expect("count"), 1);
    drop(dev);
    running.stop().await;
}

/// A manufacturer (Root → Int1 → Int2) admitted by an admin-managed group led by Int1.
fn stored_group(m: &Manufacturer) -> GroupConfig {
    GroupConfig {
        id: uuid::Uuid::new_v4().to_string(),
        name: "stored-factory".into(),
        owner: ids::OWNER.into(),
        certificate_chain: chain_pem([m.int1.der(), m.root.der()]),
        lead_certificate: LeadSelector::Index(0),
        expired_certificates_allowed: false,
        allow_common_names: vec![],
        deny_common_names: vec![],
        hub_ids: vec![ids::HUB.into()],
        pre_shared_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_identities_and_stored_groups_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let config = config(dir.path());
    let running = start_with(&config).await;
    assert_eq!(
        running.server.store().path(),
        Some(dir.path().join("dps.redb").as_path())
    );
    let device = provision(dir.path(), running.addr, demo_device(dir.path())).await;
    running.stop().await; // graceful: drains and flushes

    // An operator tool (or the admin API) adds a group while the server is down.
    let m = Manufacturer::new("Stored");
    let group = stored_group(&m);
    {
        let store = Store::open(&dir.path().join("dps.redb")).expect("open");
        store.put_group(&group).expect("put group");
    }

    let running = start_with(&config).await;
    let store = running.server.store();
    let record = store
        .record(&device.device_id.to_string())
        .expect("read")
        .expect("record survived");
    assert_eq!(record.steps.len(), 5);
    assert_eq!(
        record.identity_certificate,
        Some(CertId::of(&device.identity).to_string())
    );
    let group_id = uuid::Uuid::parse_str(&group.id).expect("uuid");
    assert!(running.server.arena().load().group(&group_id).is_some());

    // A device of the stored group is admitted.
    let sn = m.device("STORED-SN-1");
    let tls = connect(
        dir.path(),
        running.addr,
        Some((vec![sn.der().clone(), m.int2.der().clone()], sn.key_der())),
    )
    .await
    .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(resp.code, Code::CONTENT);
    drop(dev);

    // The issued identity is still known: the identity certificate reconnects...
    let tls = connect(dir.path(), running.addr, Some(device.identity_auth()))
        .await
        .expect("identity handshake after restart");
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(&request(Code::GET, 1, "/api/v1/provisioning/ownership"))
        .await
        .expect("ownership");
    assert_eq!(resp.code, Code::CONTENT);
    drop(dev);
    // ...and the device id still belongs to its key: the manufacturer session cannot move it
    // to another key while the certificate is valid.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    let other_key = rcgen::KeyPair::generate().expect("key");
    let resp = dev
        .exchange(&post(
            1,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device.device_id, &other_key),
        ))
        .await
        .expect("credentials");
    assert_eq!(resp.code, Code::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&resp.payload).contains("another key"));
    drop(dev);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_group_with_a_configured_id_is_a_start_up_error() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let mut group = stored_group(&Manufacturer::new("Clash"));
    group.id = ids::FACTORY_A.into();
    group.name = "clashing".into();
    Store::open(&dir.path().join("dps.redb"))
        .expect("open")
        .put_group(&group)
        .expect("put");
    let err = Server::from_config(&config(dir.path())).expect_err("duplicate id");
    let msg = err.to_string();
    assert!(
        msg.contains(ids::FACTORY_A) && msg.contains("clashing") && msg.contains("factory-a"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_store_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let path = dir.path().join("dps.redb");

    // Not a database at all.
    std::fs::write(&path, vec![0xa5; 64 * 1024]).expect("write");
    let err = Server::from_config(&config(dir.path())).expect_err("garbage store");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // A real database whose header was overwritten.
    std::fs::remove_file(&path).expect("rm");
    drop(Store::open(&path).expect("create"));
    let mut bytes = std::fs::read(&path).expect("read");
    for b in bytes.iter_mut().take(512) {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = Server::from_config(&config(dir.path())).expect_err("damaged store");
    assert!(err.to_string().contains("dps.redb"), "{err}");

    // A store path that is a directory.
    std::fs::remove_file(&path).expect("rm");
    std::fs::create_dir(&path).expect("mkdir");
    let err = Server::from_config(&config(dir.path())).expect_err("directory");
    assert!(err.to_string().contains("dps.redb"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_store_is_configurable() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let mut config = config(dir.path());
    config.file.store.path = ":memory:".into();
    let running = start_with(&config).await;
    assert!(running.server.store().path().is_none());
    let device = provision(dir.path(), running.addr, demo_device(dir.path())).await;
    running.server.records().flush().await.expect("flush");
    assert!(running
        .server
        .store()
        .record(&device.device_id.to_string())
        .expect("read")
        .is_some());
    running.stop().await;
    assert!(!dir.path().join("dps.redb").exists());
}
