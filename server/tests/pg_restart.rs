//! A replica outlives a PostgreSQL restart: it joins the change channel again and reads
//! everything again, so a change it was never told about is served, and its admin API and
//! record writer work on fresh connections. Its own test binary: the restart cuts every
//! connection of the cluster.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::replica::{http, init_on, start};
use common::server::{connect, request};
use dps_server::config::GroupConfig;
use dps_server::enrollment::LeadSelector;
use dps_server::init::ids;
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

fn chain(name: &str) -> (Issued, Issued, Issued) {
    let root = Issued::self_signed(&CertSpec::ca(format!("{name} Root"))).expect("root");
    let int = root
        .issue(&CertSpec::ca(format!("{name} Int")))
        .expect("int");
    let leaf = int
        .issue(&CertSpec::device(format!("{name}-SN-1")))
        .expect("leaf");
    (root, int, leaf)
}

fn group(name: &str, root: &Issued, int: &Issued) -> GroupConfig {
    GroupConfig {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        owner: "acme".into(),
        certificate_chain: chain_pem([int.der(), root.der()]),
        lead_certificate: LeadSelector::Index(0),
        expired_certificates_allowed: false,
        allow_common_names: vec![],
        deny_common_names: vec![],
        hub_ids: vec![ids::HUB.parse().expect("hub id")],
        pre_shared_key: None,
    }
}

async fn admitted(dir: &Path, addr: SocketAddr, int: &Issued, leaf: &Issued) -> bool {
    let auth = (vec![leaf.der().clone(), int.der().clone()], leaf.key_der());
    let Ok(tls) = connect(dir, addr, Some(auth)).await else {
        return false;
    };
    let mut dev = FramedIo::new(tls, 4096);
    let code = dev
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .ok()
        .map(|f| f.code);
    code == Some(Code::CONTENT)
}

async fn until_admitted(dir: &Path, addr: SocketAddr, int: &Issued, leaf: &Issued) -> Duration {
    let started = Instant::now();
    while !admitted(dir, addr, int, leaf).await {
        assert!(
            started.elapsed() < PATIENCE,
            "not served within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_resyncs_after_postgres_restarts() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let url = pg.database();
    let db = url.rsplit('/').next().expect("db").to_owned();
    init_on(dir, &url);
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("token");
    let token = token.trim();
    let replica = start(dir);
    let (root, int, leaf) = chain("Before");
    let before = serde_json::to_string(&group("before", &root, &int)).expect("json");
    let (code, body) = http(
        replica.admin,
        token,
        "POST",
        "/api/v1/enrollment-groups",
        Some(&before),
    );
    assert_eq!(code, 201, "{body}");
    until_admitted(dir, replica.device, &int, &leaf).await;

    // Written without an announcement, then PostgreSQL restarts under the replica.
    let (root2, int2, leaf2) = chain("Missed");
    let missed = group("missed", &root2, &int2);
    let json = serde_json::to_string(&missed).expect("json");
    pg.sql(
        &db,
        &format!(
            "INSERT INTO groups (id, value) VALUES ('{}', $json${json}$json$)",
            missed.id
        ),
    );
    assert!(
        !admitted(dir, replica.device, &int2, &leaf2).await,
        "not announced"
    );
    let restarted = Instant::now();
    pg.restart();
    until_admitted(dir, replica.device, &int2, &leaf2).await;
    println!(
        "resync: served {:?} after the restart began",
        restarted.elapsed()
    );

    // The pool's connections were cut too: the admin API works on fresh ones.
    let (root3, int3, leaf3) = chain("After");
    let after = serde_json::to_string(&group("after", &root3, &int3)).expect("json");
    let (code, body) = http(
        replica.admin,
        token,
        "POST",
        "/api/v1/enrollment-groups",
        Some(&after),
    );
    assert_eq!(code, 201, "{body}");
    until_admitted(dir, replica.device, &int3, &leaf3).await;
}
