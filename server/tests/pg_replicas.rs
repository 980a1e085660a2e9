//! Replicas of one DPS on a PostgreSQL store (`[store] url`): `dps-server run` processes on one
//! database. A change made through one replica's admin API reaches the other (the time it took
//! is printed; the contract is 1 s), a replica whose change channel was cut reads everything
//! again, two replicas asked for one device id with two keys at once give it to one (the other
//! answers 4.00, as a single server does), and what a replica answered survives its `kill -9`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::replica::{http, init_on, start, start_on};
use common::server::{connect, credentials_request, demo_device, identity_of, post, request};
use dps_server::config::GroupConfig;
use dps_server::enrollment::{CertId, LeadSelector};
use dps_server::init::ids;
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::FramedIo;
use uuid::Uuid;

/// Longest any change may take to show (a failure bound, far above the 1 s contract).
const PATIENCE: Duration = Duration::from_secs(10);

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .expect("token")
        .trim()
        .to_owned()
}

/// A manufacturer of its own: Root → Int → one device.
struct Maker {
    root: Issued,
    int: Issued,
    leaf: Issued,
}

fn maker(name: &str) -> Maker {
    let root = Issued::self_signed(&CertSpec::ca(format!("{name} Root"))).expect("root");
    let int = root
        .issue(&CertSpec::ca(format!("{name} Int")))
        .expect("int");
    let leaf = int
        .issue(&CertSpec::device(format!("{name}-SN-1")))
        .expect("leaf");
    Maker { root, int, leaf }
}

fn group_json(id: Uuid, m: &Maker) -> String {
    serde_json::json!({
        "id": id.to_string(),
        "name": format!("group-{id}"),
        "owner": "acme",
        "certificate_chain": chain_pem([m.int.der(), m.root.der()]),
        "hub_ids": [ids::HUB],
    })
    .to_string()
}

/// The answer code of the maker's device asking for the time, `None` when refused in the
/// handshake.
async fn time_code(dir: &Path, addr: SocketAddr, m: &Maker) -> Option<Code> {
    let auth = (
        vec![m.leaf.der().clone(), m.int.der().clone()],
        m.leaf.key_der(),
    );
    let tls = connect(dir, addr, Some(auth)).await.ok()?;
    let mut dev = FramedIo::new(tls, 4096);
    dev.exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .ok()
        .map(|f| f.code)
}

/// Poll until the device is admitted (`want`) or not; how long it took.
async fn until_admitted(dir: &Path, addr: SocketAddr, m: &Maker, want: bool) -> Duration {
    let started = Instant::now();
    loop {
        let admitted = time_code(dir, addr, m).await == Some(Code::CONTENT);
        if admitted == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the change did not reach the replica in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_added_through_one_replica_admits_its_devices_on_the_other() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    init_on(dir, &pg.database());
    let token = token(dir);
    let (a, b) = (start(dir), start(dir));
    let m = maker("Replicated");
    assert_ne!(time_code(dir, b.device, &m).await, Some(Code::CONTENT));

    let id = Uuid::new_v4();
    let posted = Instant::now();
    let (code, body) = http(
        a.admin,
        &token,
        "POST",
        "/api/v1/enrollment-groups",
        Some(&group_json(id, &m)),
    );
    assert_eq!(code, 201, "{body}");
    until_admitted(dir, b.device, &m, true).await;
    println!(
        "propagation: group added on replica A admits its device on replica B after {:?}",
        posted.elapsed()
    );
    let (code, body) = http(
        b.admin,
        &token,
        "GET",
        &format!("/api/v1/enrollment-groups/{id}"),
        None,
    );
    assert_eq!(code, 200, "{body}");

    let deleted = Instant::now();
    let (code, body) = http(
        b.admin,
        &token,
        "DELETE",
        &format!("/api/v1/enrollment-groups/{id}"),
        None,
    );
    assert_eq!(code, 204, "{body}");
    until_admitted(dir, a.device, &m, false).await;
    println!(
        "propagation: group deleted on replica B refuses its device on replica A after {:?}",
        deleted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_change_channel_was_cut_reads_everything_again() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let url = pg.database();
    let db = url.rsplit('/').next().expect("db").to_owned();
    init_on(dir, &url);
    let replica = start(dir);
    // An announced change first: once it is served, the replica has joined the channel and
    // applied what it read on joining.
    let announced = maker("Announced");
    let (code, body) = http(
        replica.admin,
        &token(dir),
        "POST",
        "/api/v1/enrollment-groups",
        Some(&group_json(Uuid::new_v4(), &announced)),
    );
    assert_eq!(code, 201, "{body}");
    until_admitted(dir, replica.device, &announced, true).await;
    let m = maker("Unannounced");
    // A change the replica is never told about (written without NOTIFY: a lost announcement).
    let group = GroupConfig {
        id: Uuid::new_v4().to_string(),
        name: "unannounced".into(),
        owner: "acme".into(),
        certificate_chain: chain_pem([m.int.der(), m.root.der()]),
        lead_certificate: LeadSelector::Index(0),
        expired_certificates_allowed: false,
        allow_common_names: vec![],
        deny_common_names: vec![],
        hub_ids: vec![ids::HUB.parse().expect("hub id")],
        pre_shared_key: None,
    };
    let json = serde_json::to_string(&group).expect("json");
    pg.sql(
        &db,
        &format!(
            "INSERT INTO groups (id, value) VALUES ('{}', $json${json}$json$)",
            group.id
        ),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        time_code(dir, replica.device, &m).await,
        Some(Code::CONTENT),
        "not announced"
    );
    // Cut the replica's LISTEN connection: it connects again and resynchronises.
    let cut = pg.sql(
        &db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    assert_eq!(cut.trim(), "1", "one LISTEN backend");
    let took = until_admitted(dir, replica.device, &m, true).await;
    println!("resync: a change missed while the channel was cut is served {took:?} after the cut");
}

async fn ask_credentials(
    dir: &Path,
    addr: SocketAddr,
    device: Uuid,
    key: &rcgen::KeyPair,
) -> Frame {
    let tls = connect(dir, addr, Some(demo_device(dir)))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    dev.exchange(&post(
        1,
        "/api/v1/provisioning/credentials",
        &credentials_request(&device, key),
    ))
    .await
    .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_asked_for_one_device_id_with_two_keys_at_once_give_it_to_one() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let url = pg.database();
    let db = url.rsplit('/').next().expect("db").to_owned();
    init_on(dir, &url);
    let (a, b) = (start(dir), start(dir));
    for round in 0..5 {
        let device = Uuid::new_v4();
        let (ka, kb) = (
            rcgen::KeyPair::generate().expect("key"),
            rcgen::KeyPair::generate().expect("key"),
        );
        let (fa, fb) = tokio::join!(
            ask_credentials(dir, a.device, device, &ka),
            ask_credentials(dir, b.device, device, &kb)
        );
        let codes = [fa.code, fb.code];
        let won = codes.iter().filter(|c| **c == Code::CHANGED).count();
        assert_eq!(won, 1, "round {round}: exactly one wins: {codes:?}");
        assert!(
            codes.contains(&Code::BAD_REQUEST),
            "round {round}: the other is refused 4.00: {codes:?}"
        );
        let winner = if fa.code == Code::CHANGED { &fa } else { &fb };
        let cert = CertId::of(&identity_of(winner)).to_string();
        let holders = pg.sql(
            &db,
            &format!("SELECT holders FROM identities WHERE device_id = '{device}'"),
        );
        assert!(
            holders.contains(&cert),
            "round {round}: the database holds the winner's certificate"
        );
        assert_eq!(
            holders.matches("\"certificate\"").count(),
            1,
            "one live identity key: {holders}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_replica_answered_is_in_the_database_after_its_kill_9() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let url = pg.database();
    let db = url.rsplit('/').next().expect("db").to_owned();
    init_on(dir, &url);
    let (a, b) = (start(dir), start(dir));
    let device = Uuid::new_v4();
    let key = rcgen::KeyPair::generate().expect("key");
    let answer = ask_credentials(dir, a.device, device, &key).await;
    assert_eq!(answer.code, Code::CHANGED);
    let cert = CertId::of(&identity_of(&answer)).to_string();
    a.kill_9();
    let holders = pg.sql(
        &db,
        &format!("SELECT holders FROM identities WHERE device_id = '{device}'"),
    );
    assert!(
        holders.contains(&cert),
        "the identity is stored: {holders:?}"
    );
    let record = pg.sql(
        &db,
        &format!("SELECT r.value FROM devices d JOIN records r ON r.key = d.key WHERE d.device_id = '{device}'"),
    );
    assert!(record.contains(&cert), "its record names it: {record:?}");
    // The other replica knows the id is taken: another key is refused, the same key is not.
    let other = rcgen::KeyPair::generate().expect("key");
    assert_eq!(
        ask_credentials(dir, b.device, device, &other).await.code,
        Code::BAD_REQUEST
    );
    assert_eq!(
        ask_credentials(dir, b.device, device, &key).await.code,
        Code::CHANGED
    );
}

/// `dps_handshakes_total` of one replica, from its metrics.
fn handshakes(admin: SocketAddr, token: &str) -> u64 {
    let (code, metrics) = http(admin, token, "GET", "/metrics", None);
    assert_eq!(code, 200);
    metrics
        .lines()
        .filter(|l| l.starts_with("dps_handshakes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_machine_share_the_device_port() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    init_on(dir, &pg.database());
    let token = token(dir);
    let a = start(dir);
    let b = start_on(dir, &a.device.to_string());
    assert_eq!(a.device, b.device, "one device port");
    let m = maker("Shared");
    let (code, body) = http(
        a.admin,
        &token,
        "POST",
        "/api/v1/enrollment-groups",
        Some(&group_json(Uuid::new_v4(), &m)),
    );
    assert_eq!(code, 201, "{body}");
    until_admitted(dir, a.device, &m, true).await;
    // The kernel spreads connections by their source port: over 40, both replicas serve.
    for _ in 0..40 {
        time_code(dir, a.device, &m).await;
    }
    let (na, nb) = (handshakes(a.admin, &token), handshakes(b.admin, &token));
    println!("shared port: replica A completed {na} handshakes, replica B {nb}");
    assert!(
        na > 0 && nb > 0,
        "both replicas serve the shared port: {na} / {nb}"
    );
}
