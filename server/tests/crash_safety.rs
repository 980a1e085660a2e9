//! Crash safety: `kill -9` of the `dps-server` binary at a random moment while admin clients change
//! enrollment groups concurrently and devices provision. After each restart the store opens, every
//! admin change that was acknowledged (2xx) is there — a change in flight at the kill may or may not
//! be — every provisioning record the admin API had shown before the kill is still there with at
//! least the steps it had, and:
//! - every identity certificate a device was answered 2.04 for is recognised when the device comes
//!   back with it, and its record names it (an identity is committed before it is answered);
//! - no device is locked out: a device whose credentials answer never came asks again (same device
//!   id, same key, as real clients do) and gets it.
//!
//! The other steps of a record are written in batches off the handshake path and may lose the last
//! batch window to a kill, so for them the test checks what was committed (visible over the admin
//! API). Rounds: `DPS_CRASH_ROUNDS` (default 3); the crash campaign of `results/crash.md` runs 50.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replica::{start, try_http, Replica as Server};
use common::server::{connect, credentials_request, identity_of, post, request};
use dps_server::enrollment::CertId;
use dps_server::init::{ids, init};
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::body::CloudConfigurationRequest;
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use uuid::Uuid;

/// HTTP/1.1 request; `Err` when the server is gone (connection refused or cut).
fn http(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let body = body.map(Value::to_string);
    try_http(addr, token, method, path, body.as_deref())
}

/// The state of one admin-managed group: present under a name, or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Present(String),
    Absent,
}

/// Per group id: the state of the last acknowledged change, and the state a change in flight
/// would leave (unknown whether it was applied when the server died).
#[derive(Debug, Clone)]
struct Ledger {
    acked: State,
    pending: Option<State>,
}

/// One manufacturer CA per group (unique lead certificates) under a shared root.
struct Pki {
    root: Issued,
}

impl Pki {
    fn chain_for(&self, n: usize) -> String {
        let int = self
            .root
            .issue(&CertSpec::ca(format!("Crash Int {n}")))
            .expect("int");
        chain_pem([int.der(), self.root.der()])
    }
}

fn group_body(id: &str, name: &str, chain: &str) -> Value {
    json!({"id": id, "name": name, "owner": "acme", "certificate_chain": chain})
}

/// One admin client: cycles create → replace → … → delete over its own group ids until the
/// server is gone. Returns its ledger.
fn admin_worker(
    admin: SocketAddr,
    token: String,
    groups: Vec<(String, String)>,
    acks: Arc<AtomicUsize>,
) -> HashMap<String, Ledger> {
    let mut ledger: HashMap<String, Ledger> = groups
        .iter()
        .map(|(id, _)| {
            (
                id.clone(),
                Ledger {
                    acked: State::Absent,
                    pending: None,
                },
            )
        })
        .collect();
    let mut version = 0usize;
    loop {
        for (id, chain) in &groups {
            version += 1;
            let entry = ledger.get_mut(id).expect("own id");
            let name = format!("crash-{id}-v{version}");
            // Per id: create, replace, replace, delete, create, ...
            let (method, path, body, next) = match (&entry.acked, version / groups.len() % 3) {
                (State::Absent, _) => (
                    "POST",
                    "/api/v1/enrollment-groups".to_owned(),
                    Some(group_body(id, &name, chain)),
                    State::Present(name),
                ),
                (State::Present(_), 2) => (
                    "DELETE",
                    format!("/api/v1/enrollment-groups/{id}"),
                    None,
                    State::Absent,
                ),
                (State::Present(_), _) => (
                    "PUT",
                    format!("/api/v1/enrollment-groups/{id}"),
                    Some(group_body(id, &name, chain)),
                    State::Present(name),
                ),
            };
            entry.pending = Some(next.clone());
            match http(admin, &token, method, &path, body.as_ref()) {
                Ok((code, text)) => {
                    assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
                    entry.acked = next;
                    entry.pending = None;
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => return ledger,
            }
        }
    }
}

/// All provisioning records the admin API lists: key → steps.
fn records(admin: SocketAddr, token: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/api/v1/provisioning-records?limit=1000".to_owned()
        } else {
            format!("/api/v1/provisioning-records?limit=1000&after={after}")
        };
        let (code, body) = http(admin, token, "GET", &path, None).expect("records");
        assert_eq!(code, 200, "{body}");
        let page: Value = serde_json::from_str(&body).expect("json");
        for r in page["records"].as_array().expect("records") {
            let steps = r["steps"]
                .as_object()
                .expect("steps")
                .keys()
                .cloned()
                .collect();
            out.insert(r["key"].as_str().expect("key").to_owned(), steps);
        }
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => return out,
        }
    }
}

fn verify(admin: SocketAddr, token: &str, ledger: &mut HashMap<String, Ledger>) {
    for (id, l) in ledger.iter_mut() {
        let (code, body) = http(
            admin,
            token,
            "GET",
            &format!("/api/v1/enrollment-groups/{id}"),
            None,
        )
        .expect("get group");
        let seen = match code {
            200 => State::Present(
                serde_json::from_str::<Value>(&body).expect("json")["name"]
                    .as_str()
                    .expect("name")
                    .to_owned(),
            ),
            404 => State::Absent,
            other => panic!("GET group {id}: {other} {body}"),
        };
        let allowed = seen == l.acked || l.pending.as_ref() == Some(&seen);
        assert!(
            allowed,
            "group {id}: acknowledged {:?} (in flight {:?}) but the store has {seen:?}",
            l.acked, l.pending
        );
        // What is there now is the truth for the next round.
        l.acked = seen;
        l.pending = None;
    }
}

/// What the server told one device: it asked for credentials for `device_id` with `key`, and, when
/// the answer was 2.04, the identity certificate it got.
struct Attempt {
    auth: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    device_id: Uuid,
    key: Arc<rcgen::KeyPair>,
    identity: Option<CertificateDer<'static>>,
}

/// Time, ownership, cloud configuration, credentials and ACLs for the device `auth`, asking for
/// `device_id` with `key`; the attempt (and its identity once answered) goes into `log` as soon as
/// it is known. An error when the server went away or refused.
async fn provision_tracked(
    dir: &Path,
    addr: SocketAddr,
    auth: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    device_id: Uuid,
    key: Arc<rcgen::KeyPair>,
    log: &Mutex<Vec<Attempt>>,
) -> Result<(), String> {
    let tls = connect(dir, addr, Some((auth.0.clone(), auth.1.clone_key())))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut dev = FramedIo::new(tls, 64 * 1024);
    for (token, path) in [
        (1, "/x.plgd.dev/time"),
        (2, "/api/v1/provisioning/ownership"),
    ] {
        let resp = dev
            .exchange(&request(Code::GET, token, path))
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if resp.code != Code::CONTENT {
            return Err(format!("{path}: {}", resp.code));
        }
    }
    let cloud = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    let resp = dev
        .exchange(&post(3, "/api/v1/provisioning/cloud-configuration", &cloud))
        .await
        .map_err(|e| format!("cloud: {e}"))?;
    if resp.code != Code::CHANGED {
        return Err(format!("cloud: {}", resp.code));
    }
    let index = {
        let mut log = log.lock().expect("log");
        log.push(Attempt {
            auth,
            device_id,
            key: key.clone(),
            identity: None,
        });
        log.len() - 1
    };
    let resp = dev
        .exchange(&post(
            4,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device_id, &key),
        ))
        .await
        .map_err(|e| format!("credentials: {e}"))?;
    if resp.code != Code::CHANGED {
        return Err(format!(
            "credentials: {} {}",
            resp.code,
            String::from_utf8_lossy(&resp.payload)
        ));
    }
    log.lock().expect("log")[index].identity = Some(identity_of(&resp));
    dev.exchange(&request(Code::GET, 5, "/api/v1/provisioning/acls"))
        .await
        .map_err(|e| format!("acls: {e}"))?;
    Ok(())
}

/// After a restart: every identity answered before the kill reconnects and is on record, and
/// every device left without an answer provisions again (same device id and key). Returns
/// (identities checked, devices re-provisioned).
async fn verify_devices(
    dir: &Path,
    server: &Server,
    token: &str,
    attempts: Vec<Attempt>,
) -> (usize, usize) {
    let (mut recognised, mut again) = (0, 0);
    for a in attempts {
        match a.identity {
            Some(identity) => {
                let auth = (vec![identity.clone()], common::server::key_der(&a.key));
                let tls = connect(dir, server.device, Some(auth))
                    .await
                    .expect("identity handshake");
                let mut dev = FramedIo::new(tls, 64 * 1024);
                let resp = dev
                    .exchange(&request(Code::GET, 9, "/x.plgd.dev/time"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "device {} was answered 2.04 before the kill; its identity is refused: {e}",
                            a.device_id
                        )
                    });
                assert_eq!(resp.code, Code::CONTENT);
                let (code, body) = http(
                    server.admin,
                    token,
                    "GET",
                    &format!("/api/v1/provisioning-records/{}", a.device_id),
                    None,
                )
                .expect("record");
                assert_eq!(code, 200, "record of {}: {body}", a.device_id);
                let record: Value = serde_json::from_str(&body).expect("json");
                assert_eq!(
                    record["identity_certificate"].as_str(),
                    Some(CertId::of(&identity).to_string().as_str()),
                    "device {}: the record does not name the certificate it was answered",
                    a.device_id
                );
                recognised += 1;
            }
            None => {
                let log = Mutex::new(Vec::new());
                provision_tracked(dir, server.device, a.auth, a.device_id, a.key, &log)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("device {} is locked out after the kill: {e}", a.device_id)
                    });
                again += 1;
            }
        }
    }
    (recognised, again)
}

#[test]
fn acknowledged_admin_changes_identities_and_committed_records_survive_kill_9() {
    let rounds: usize = std::env::var("DPS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    const WORKERS: usize = 3;
    const GROUPS_PER_WORKER: usize = 4;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    init(dir, false).expect("init");
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("token");
    let token = token.trim().to_owned();
    let pki = Pki {
        root: Issued::self_signed(&CertSpec::ca("Crash Root")).expect("root"),
    };
    // Devices provision under a group of their own, made once and never touched by the workers.
    let dev_root = Issued::self_signed(&CertSpec::ca("Crash Devices Root")).expect("root");
    let dev_int = dev_root
        .issue(&CertSpec::ca("Crash Devices Int"))
        .expect("int");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut ledger: HashMap<String, Ledger> = HashMap::new();
    let mut committed_records: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n = 0usize;
    let mut server = start(dir);
    let (code, body) = http(
        server.admin,
        &token,
        "POST",
        "/api/v1/enrollment-groups",
        Some(
            &json!({"id": "0c0ffee0-0000-4000-8000-000000000001", "name": "devices",
            "owner": "acme", "hub_ids": [ids::HUB],
            "certificate_chain": chain_pem([dev_int.der(), dev_root.der()])}),
        ),
    )
    .expect("create devices group");
    assert_eq!(code, 201, "{body}");

    let (mut recognised, mut reprovisioned) = (0, 0);
    for round in 0..rounds {
        let acks = Arc::new(AtomicUsize::new(0));
        let provisioned = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let groups: Vec<(String, String)> = (0..GROUPS_PER_WORKER)
                    .map(|_| {
                        n += 1;
                        (uuid::Uuid::new_v4().to_string(), pki.chain_for(n))
                    })
                    .collect();
                let (admin, token, acks) = (server.admin, token.clone(), acks.clone());
                std::thread::spawn(move || admin_worker(admin, token, groups, acks))
            })
            .collect();
        // Devices provision concurrently, each with a manufacturer certificate of its own (one
        // record each), until the server dies.
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let devices = {
            let (addr, provisioned, attempts) =
                (server.device, provisioned.clone(), attempts.clone());
            let leaves: Vec<Issued> = (0..200)
                .map(|i| {
                    dev_int
                        .issue(&CertSpec::device(format!("CRASH-{round}-{i}")))
                        .expect("leaf")
                })
                .collect();
            let dir = dir.to_owned();
            rt.spawn(async move {
                // Four at a time, so that several credentials answers are in flight at the kill.
                let mut flows = tokio::task::JoinSet::new();
                for leaf in leaves {
                    // A flow fails once the server is gone; that ends the loop.
                    if flows.len() >= 4 && !matches!(flows.join_next().await, Some(Ok(Ok(())))) {
                        break;
                    }
                    let auth = (vec![leaf.der().clone()], leaf.key_der());
                    let (dir, attempts, provisioned) =
                        (dir.clone(), attempts.clone(), provisioned.clone());
                    flows.spawn(async move {
                        let (id, key) = (
                            Uuid::new_v4(),
                            Arc::new(rcgen::KeyPair::generate().expect("key")),
                        );
                        provision_tracked(&dir, addr, auth, id, key, &attempts).await?;
                        provisioned.fetch_add(1, Ordering::Relaxed);
                        Ok::<(), String>(())
                    });
                }
                while flows.join_next().await.is_some() {}
            })
        };

        // Kill once enough has happened (a progress condition; the deadline only guards a hang).
        let deadline = Instant::now() + Duration::from_secs(120);
        // A random moment: a random number of admin changes and provisioned devices first.
        let dice = Uuid::new_v4().as_u128();
        let wanted = 20 + (dice % 120) as usize;
        let wanted_devices = 2 + ((dice >> 8) % 40) as usize;
        while acks.load(Ordering::Relaxed) < wanted
            || provisioned.load(Ordering::Relaxed) < wanted_devices
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: no progress ({} acks, {} provisioned)",
                acks.load(Ordering::Relaxed),
                provisioned.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // And at least one batch of records committed (they are written after the answers).
        let before = loop {
            let listed = records(server.admin, &token);
            if !listed.is_empty() {
                break listed;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no record committed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(((dice >> 16) % 30) as u64));
        server.kill_9();
        for w in workers {
            ledger.extend(w.join().expect("admin worker"));
        }
        let _ = rt.block_on(devices);

        server = start(dir);
        let (code, _) = http(server.admin, &token, "GET", "/healthz", None).expect("healthz");
        assert_eq!(code, 200);
        verify(server.admin, &token, &mut ledger);
        let attempts = std::mem::take(&mut *attempts.lock().expect("attempts"));
        let (r, a) = rt.block_on(verify_devices(dir, &server, &token, attempts));
        recognised += r;
        reprovisioned += a;
        committed_records.extend(before);
        let after = records(server.admin, &token);
        for (key, steps) in &committed_records {
            let now = after.get(key).unwrap_or_else(|| {
                panic!("round {round}: record {key} was listed before the kill and is gone")
            });
            for s in steps {
                assert!(now.contains(s), "round {round}: record {key} lost step {s}");
            }
        }
    }
    assert!(ledger.len() >= rounds * WORKERS * GROUPS_PER_WORKER);
    let present = ledger
        .values()
        .filter(|l| matches!(l.acked, State::Present(_)))
        .count();
    eprintln!(
        "crash safety: {} groups tracked over {rounds} kill -9 rounds ({present} present at the end), {} records, {recognised} identities answered before a kill all recognised after it, {reprovisioned} devices interrupted before their answer all provisioned again",
        ledger.len(),
        committed_records.len()
    );
    assert!(recognised > 0, "no identity was answered before a kill");
    drop(server);
}
