//! The `dps-server run` binary with its admin API, as an operator uses it: 401 without the token,
//! 400 with the reason for an invalid group, a group added over the API admits its devices on the
//! next connection, and after a restart (SIGTERM, start again) the group and the provisioning
//! records are still there.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::server::{connect, request};
use dps_server::init::{ids, init};
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;

struct Running {
    child: Child,
    device: SocketAddr,
    admin: SocketAddr,
}

fn start(dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-server"))
        .args(["run", "--config"])
        .arg(dir.join("config.toml"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dps-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = |prefix: &str| -> SocketAddr {
        let line = lines.next().expect("a line").expect("utf8");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
            .trim()
            .parse()
            .expect("address")
    };
    let device = addr("dps-server listening on ");
    let admin = addr("dps-server admin listening on ");
    Running {
        child,
        device,
        admin,
    }
}

impl Running {
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    }
}

/// A minimal HTTP/1.1 client: (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn device_time_code(
    dir: &Path,
    addr: SocketAddr,
    chain: &Issued,
    leaf: &Issued,
) -> Option<Code> {
    let auth = (
        vec![leaf.der().clone(), chain.der().clone()],
        leaf.key_der(),
    );
    let tls = connect(dir, addr, Some(auth)).await.ok()?;
    let mut dev = FramedIo::new(tls, 4096);
    dev.exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .ok()
        .map(|f| f.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_groups_survive_a_restart_and_admit_devices() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    init(dir, false).expect("init");
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("token");
    let token = token.trim();
    let server = start(dir);

    assert_eq!(http(server.admin, "GET", "/healthz", None, None).0, 200);
    let (code, _) = http(server.admin, "GET", "/api/v1/enrollment-groups", None, None);
    assert_eq!(code, 401);
    let (code, _) = http(
        server.admin,
        "GET",
        "/api/v1/enrollment-groups",
        Some("wrong"),
        None,
    );
    assert_eq!(code, 401);

    // A new manufacturer: Root → Int → devices. The group configures [Int, Root].
    let root = Issued::self_signed(&CertSpec::ca("Admin Test Root")).expect("root");
    let int = root.issue(&CertSpec::ca("Admin Test Int")).expect("int");
    let leaf = int.issue(&CertSpec::device("ADMIN-SN-1")).expect("leaf");
    let group_id = "0d6f1c4e-1111-4a55-9a1e-0f6f3c3c1a99";
    let group = |chain: String| {
        serde_json::json!({
            "id": group_id,
            "name": "admin-made",
            "owner": "acme",
            "certificate_chain": chain,
            "hub_ids": [ids::HUB],
        })
        .to_string()
    };

    // Before the group exists the device has no path.
    assert_ne!(
        device_time_code(dir, server.device, &int, &leaf).await,
        Some(Code::CONTENT)
    );

    // Invalid: chain in the wrong order → 400 with the reason.
    let (code, body) = http(
        server.admin,
        "POST",
        "/api/v1/enrollment-groups",
        Some(token),
        Some(&group(chain_pem([root.der(), int.der()]))),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not signed by"), "{body}");

    let (code, body) = http(
        server.admin,
        "POST",
        "/api/v1/enrollment-groups",
        Some(token),
        Some(&group(chain_pem([int.der(), root.der()]))),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        device_time_code(dir, server.device, &int, &leaf).await,
        Some(Code::CONTENT)
    );

    // The step reaches the store (batched writes) and the admin API lists it.
    let mut listed = false;
    for _ in 0..50 {
        let (code, body) = http(
            server.admin,
            "GET",
            "/api/v1/provisioning-records",
            Some(token),
            None,
        );
        assert_eq!(code, 200, "{body}");
        if body.contains("ADMIN-SN-1") {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed, "the record of the device is listed");
    let (code, metrics) = http(server.admin, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("dps_rejections_total{reason=\"no_path\"} 1"),
        "{metrics}"
    );
    server.stop();

    // Restart: the group and the record are still there, and the device is still admitted.
    let server = start(dir);
    let (code, body) = http(
        server.admin,
        "GET",
        &format!("/api/v1/enrollment-groups/{group_id}"),
        Some(token),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("admin-made"), "{body}");
    let (code, body) = http(
        server.admin,
        "GET",
        "/api/v1/provisioning-records",
        Some(token),
        None,
    );
    assert_eq!(code, 200);
    assert!(body.contains("ADMIN-SN-1"), "{body}");
    assert_eq!(
        device_time_code(dir, server.device, &int, &leaf).await,
        Some(Code::CONTENT)
    );

    // Deleting it over the API refuses the device again.
    let (code, body) = http(
        server.admin,
        "DELETE",
        &format!("/api/v1/enrollment-groups/{group_id}"),
        Some(token),
        None,
    );
    assert_eq!(code, 204, "{body}");
    assert_ne!(
        device_time_code(dir, server.device, &int, &leaf).await,
        Some(Code::CONTENT)
    );
    server.stop();
}
