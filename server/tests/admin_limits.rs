//! Admin API hardening (issue 7, part 6): loopback by default, request size limits that hold for
//! bodies without a Content-Length too, and every invalid input answered 400 with a reason — over
//! the public router with the real (in-memory) store.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use dps_server::admin::{router, AdminState, BODY_LIMIT};
use dps_server::config::Config;
use dps_server::enrollment::{Arena, CertId, EnrollmentGroup};
use dps_server::metrics::Metrics;
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

const TOKEN: &str = "limits-token";

struct Fixture {
    app: Router,
    static_lead: CertId,
    static_chain: String,
    chain: String,
}

fn fixture() -> Fixture {
    let root = Issued::self_signed(&CertSpec::ca("Limits Root")).expect("root");
    let int = root.issue(&CertSpec::ca("Limits Int")).expect("int");
    let g = EnrollmentGroup::new(
        "static",
        "acme",
        vec![int.der().clone(), root.der().clone()],
    );
    let static_id = g.id;
    let arena = Arc::new(Arena::with_groups(vec![g]).expect("arena"));
    let other_root = Issued::self_signed(&CertSpec::ca("Limits Other Root")).expect("root");
    let other_int = other_root
        .issue(&CertSpec::ca("Limits Other Int"))
        .expect("int");
    let app = router(AdminState {
        arena,
        store: Arc::new(Store::in_memory().expect("store")),
        metrics: Arc::new(Metrics::new()),
        token: TOKEN.into(),
        static_group_ids: HashSet::from([static_id]),
        static_hub_ids: HashSet::new(),
        provisioner: None,
        tpm: None,
        static_tpm_ids: HashSet::new(),
        records: None,
    });
    Fixture {
        app,
        static_lead: CertId::of(int.der()),
        static_chain: chain_pem([int.der(), root.der()]),
        chain: chain_pem([other_int.der(), other_root.der()]),
    }
}

async fn send(app: &Router, method: Method, uri: &str, body: Body) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(body)
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn reason(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no JSON error reason in {text:?}"))
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_while_reading() {
    let f = fixture();
    // No Content-Length header: the limit is enforced while the body is read.
    for (method, uri) in [
        (Method::POST, "/api/v1/enrollment-groups"),
        (Method::POST, "/api/v1/hubs"),
        (
            Method::PUT,
            "/api/v1/enrollment-groups/8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01",
        ),
        (
            Method::PUT,
            "/api/v1/hubs/8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01",
        ),
    ] {
        let body = Body::from(vec![b' '; BODY_LIMIT + 1]);
        let (status, text) = send(&f.app, method, uri, body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {text}");
        assert!(!reason(&text).is_empty());
    }
    // Exactly at the limit is read (and judged for what it says, not for its size).
    let mut body = json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
        "certificate_chain": f.chain.clone()})
    .to_string();
    body.push_str(&" ".repeat(BODY_LIMIT - body.len()));
    let (status, text) = send(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Body::from(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let f = fixture();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, f.app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/enrollment-groups HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        64 * BODY_LIMIT
    );
    s.write_all(head.as_bytes()).await.expect("send head");
    // Read the response only (the server need not wait for, nor drain, the announced body).
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |r: &[u8]| {
        let text = String::from_utf8_lossy(r);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>())
            })
            .and_then(Result::ok);
        len.is_some_and(|n| body.len() >= n)
    };
    // A liveness guard, not a timing assertion: without the early refusal the server waits for
    // the announced body forever.
    let read = async {
        while !complete(&resp) {
            let n = s.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "connection closed before a whole response: {:?}",
                String::from_utf8_lossy(&resp)
            );
            resp.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the server answers without waiting for the announced body");
    drop(s);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(!reason(body).is_empty(), "{resp}");
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}

#[tokio::test]
async fn every_invalid_input_is_a_400_with_a_reason() {
    let f = fixture();
    let id = Uuid::new_v4().to_string();
    let good = |extra: Value| {
        let mut v = json!({"id": id, "name": "n", "owner": "o", "certificate_chain": f.chain});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v.to_string()
    };
    let groups = "/api/v1/enrollment-groups";
    let cases: Vec<(Method, String, Vec<u8>, &str)> = vec![
        (Method::POST, groups.into(), Vec::new(), "invalid JSON"),
        (Method::POST, groups.into(), b"[]".to_vec(), "invalid JSON"),
        (Method::POST, groups.into(), b"{\"id\": 5}".to_vec(), "invalid JSON"),
        (Method::POST, groups.into(), vec![0xff, 0xfe, 0x00], "invalid JSON"),
        (Method::POST, groups.into(), b"nul\0l".to_vec(), "invalid JSON"),
        (
            Method::POST,
            groups.into(),
            good(json!({"certificate_chain": "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"})).into_bytes(),
            "PEM",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"certificate_chain": "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"})).into_bytes(),
            "does not parse",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"lead_certificate": "sha256:00"})).into_bytes(),
            "fingerprint",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"lead_certificate": -1})).into_bytes(),
            "invalid JSON",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"pre_shared_key": "short"})).into_bytes(),
            "16 bytes",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"allow_common_names": "everyone"})).into_bytes(),
            "invalid JSON",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"hub_ids": ["not-a-uuid"]})).into_bytes(),
            "not a UUID",
        ),
        (
            Method::POST,
            groups.into(),
            good(json!({"name": "   "})).into_bytes(),
            "name must not be empty",
        ),
        (
            Method::GET,
            format!("{groups}/not-a-uuid"),
            Vec::new(),
            "not a UUID",
        ),
        (
            Method::PUT,
            format!("{groups}/not-a-uuid"),
            good(json!({})).into_bytes(),
            "not a UUID",
        ),
        (
            Method::DELETE,
            format!("{groups}/{}", "x".repeat(5000)),
            Vec::new(),
            "not a UUID",
        ),
        (
            Method::POST,
            "/api/v1/hubs".into(),
            json!({"id": "h", "gateways": ["coaps+tcp://h:1"]}).to_string().into_bytes(),
            "not a UUID",
        ),
        (
            Method::POST,
            "/api/v1/hubs".into(),
            json!({"id": Uuid::new_v4().to_string(), "gateways": ["http://h:1"]}).to_string().into_bytes(),
            "gateway",
        ),
        (
            Method::POST,
            "/api/v1/hubs".into(),
            json!({"id": Uuid::new_v4().to_string(), "gateways": []}).to_string().into_bytes(),
            "must not be empty",
        ),
        (
            Method::GET,
            "/api/v1/provisioning-records?limit=0".into(),
            Vec::new(),
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/provisioning-records?limit=many".into(),
            Vec::new(),
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/provisioning-records?colour=red".into(),
            Vec::new(),
            "colour",
        ),
    ];
    let total = cases.len();
    let mut wrong = Vec::new();
    for (method, uri, body, needle) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let (status, text) = send(&f.app, method.clone(), &uri, Body::from(body)).await;
        let ok = status == StatusCode::BAD_REQUEST
            && serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(|r| r.contains(needle)))
                .unwrap_or(false);
        if !ok {
            wrong.push(format!(
                "{method} {uri} {shown:?}: {status} {text} (wanted 400 with {needle:?})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {total}:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // A lead certificate that is another group's lead: 400 naming it.
    let (status, text) = send(
        &f.app,
        Method::POST,
        groups,
        Body::from(
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
                "certificate_chain": f.chain, "lead_certificate": 1})
            .to_string(),
        ),
    )
    .await;
    // (Lead 1 is the other root: fine.) Now a second group with the same lead.
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, text) = send(
        &f.app,
        Method::POST,
        groups,
        Body::from(
            json!({"id": Uuid::new_v4().to_string(), "name": "n2", "owner": "o",
                "certificate_chain": f.chain, "lead_certificate": 1})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(reason(&text).contains("already the lead"), "{text}");
    // Also when the other group is a config-file group.
    let (status, text) = send(
        &f.app,
        Method::POST,
        groups,
        Body::from(
            json!({"id": Uuid::new_v4().to_string(), "name": "n3", "owner": "o",
                "certificate_chain": f.static_chain, "lead_certificate": f.static_lead.to_string()})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(reason(&text).contains("already the lead"), "{text}");
}

#[test]
fn the_admin_api_listens_on_loopback_by_default() {
    let c =
        Config::parse("[admin]\ntoken = \"t\"\n", Path::new("/etc/dps/c.toml")).expect("config");
    let listen = &c.file.admin.as_ref().expect("admin section").listen;
    let addr: std::net::SocketAddr = listen.parse().expect("an address");
    assert!(addr.ip().is_loopback(), "{listen}");
    // Without an [admin] section there is no admin API at all.
    let c = Config::parse("", Path::new("/etc/dps/c.toml")).expect("config");
    assert!(c.file.admin.is_none());
    // The demo set-up written by `init` keeps it on loopback too.
    let dir = tempfile::tempdir().expect("tmp");
    dps_server::init::init(dir.path(), false).expect("init");
    let c = Config::load(&dir.path().join("config.toml")).expect("config");
    let listen = &c.file.admin.as_ref().expect("admin section").listen;
    let addr: std::net::SocketAddr = listen.parse().expect("an address");
    assert!(addr.ip().is_loopback(), "{listen}");
}
