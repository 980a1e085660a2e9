//! Admin API tests: the router driven with `tower::ServiceExt::oneshot` over an in-memory store.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use rustls_pki_types::UnixTime;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

use super::{router, AdminState};
use crate::config::{GroupConfig, HubConfig};
use crate::enrollment::{Arena, EnrollmentGroup, RejectReason, Verdict};
use crate::metrics::Metrics;
use crate::pki::{chain_pem, CertSpec, Issued};
use crate::records::{Persistence, ProvisioningRecord, Step, StepResult, StoreError};

mod connections;
mod groups;
mod hubs_records;

const TOKEN: &str = "s3cret-admin-token";

#[derive(Default)]
struct MemInner {
    groups: BTreeMap<Uuid, GroupConfig>,
    tpm_groups: BTreeMap<Uuid, GroupConfig>,
    hubs: BTreeMap<Uuid, HubConfig>,
    records: BTreeMap<String, ProvisioningRecord>,
}

/// A `Persistence` in memory; `fail_writes` makes every write fail.
#[derive(Default)]
struct MemStore {
    inner: Mutex<MemInner>,
    fail_writes: AtomicBool,
}

fn key(id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(id).map_err(|e| StoreError::Database(e.to_string()))
}

impl MemStore {
    fn inner(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().expect("store lock")
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(StoreError::Database("disk on fire".into()));
        }
        Ok(())
    }
}

impl Persistence for MemStore {
    fn put_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        self.writable()?;
        self.inner().groups.insert(key(&group.id)?, group.clone());
        Ok(())
    }
    fn delete_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.writable()?;
        Ok(self.inner().groups.remove(id).is_some())
    }
    fn groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        Ok(self.inner().groups.values().cloned().collect())
    }
    fn put_tpm_group(&self, group: &GroupConfig) -> Result<(), StoreError> {
        self.writable()?;
        self.inner()
            .tpm_groups
            .insert(key(&group.id)?, group.clone());
        Ok(())
    }
    fn delete_tpm_group(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.writable()?;
        Ok(self.inner().tpm_groups.remove(id).is_some())
    }
    fn tpm_groups(&self) -> Result<Vec<GroupConfig>, StoreError> {
        Ok(self.inner().tpm_groups.values().cloned().collect())
    }
    fn put_hub(&self, hub: &HubConfig) -> Result<(), StoreError> {
        self.writable()?;
        self.inner().hubs.insert(key(&hub.id)?, hub.clone());
        Ok(())
    }
    fn delete_hub(&self, id: &Uuid) -> Result<bool, StoreError> {
        self.writable()?;
        Ok(self.inner().hubs.remove(id).is_some())
    }
    fn hubs(&self) -> Result<Vec<HubConfig>, StoreError> {
        Ok(self.inner().hubs.values().cloned().collect())
    }
    fn records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProvisioningRecord>, StoreError> {
        Ok(self
            .inner()
            .records
            .values()
            .filter(|r| after.is_none_or(|a| r.key.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }
    fn record(&self, key_or_device_id: &str) -> Result<Option<ProvisioningRecord>, StoreError> {
        let inner = self.inner();
        if let Some(r) = inner.records.get(key_or_device_id) {
            return Ok(Some(r.clone()));
        }
        let Ok(id) = Uuid::parse_str(key_or_device_id) else {
            return Ok(None);
        };
        Ok(inner
            .records
            .values()
            .find(|r| r.device_id == Some(id))
            .cloned())
    }
    fn put_records(&self, records: &[ProvisioningRecord]) -> Result<(), StoreError> {
        self.writable()?;
        let mut inner = self.inner();
        for r in records {
            inner.records.insert(r.key.clone(), r.clone());
        }
        Ok(())
    }
}

/// A CA with one intermediate, and devices issued by the intermediate.
struct Pki {
    root: Issued,
    int: Issued,
}

impl Pki {
    fn new(name: &str) -> Self {
        let root = Issued::self_signed(&CertSpec::ca(format!("{name} Root"))).expect("root");
        let int = root
            .issue(&CertSpec::ca(format!("{name} Int")))
            .expect("int");
        Self { root, int }
    }

    fn chain_pem(&self) -> String {
        chain_pem([self.int.der(), self.root.der()])
    }

    fn device(&self, cn: &str) -> Issued {
        self.int.issue(&CertSpec::device(cn)).expect("device")
    }
}

struct Fixture {
    app: Router,
    arena: Arc<Arena>,
    store: Arc<MemStore>,
    metrics: Arc<Metrics>,
    static_group: Uuid,
    static_hub: Uuid,
}

fn fixture() -> Fixture {
    let static_pki = Pki::new("Static");
    let static_hub = Uuid::new_v4();
    let mut g = EnrollmentGroup::new(
        "static",
        "acme",
        vec![static_pki.int.der().clone(), static_pki.root.der().clone()],
    );
    g.hub_ids = vec![static_hub];
    let static_group = g.id;
    let arena = Arc::new(Arena::with_groups(vec![g]).expect("arena"));
    let store = Arc::new(MemStore::default());
    let metrics = Arc::new(Metrics::new());
    let app = router(AdminState {
        arena: arena.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        token: TOKEN.into(),
        static_group_ids: HashSet::from([static_group]),
        static_hub_ids: HashSet::from([static_hub]),
        provisioner: None,
        tpm: None,
        static_tpm_ids: HashSet::new(),
        records: None,
    });
    Fixture {
        app,
        arena,
        store,
        metrics,
        static_group,
        static_hub,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text))
            .to_owned()
    }
}

async fn send(app: &Router, method: Method, uri: &str, auth: Option<&str>, body: Body) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).expect("utf-8"),
    }
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
    send(app, method, uri, Some(&format!("Bearer {TOKEN}")), body).await
}

fn group_body(id: Uuid, name: &str, pki: &Pki) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "owner": "acme",
        "certificate_chain": pki.chain_pem(),
    })
}

fn admits(arena: &Arena, device: &Issued) -> Verdict {
    arena
        .load()
        .authenticate(std::slice::from_ref(device.der()), UnixTime::now())
}

#[tokio::test]
async fn healthz_and_metrics_need_no_token() {
    let f = fixture();
    f.metrics.record_rejection(RejectReason::Denied);
    let a = send(&f.app, Method::GET, "/healthz", None, Body::empty()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ok", "groups": 1}));
    let a = send(&f.app, Method::GET, "/metrics", None, Body::empty()).await;
    assert_eq!(a.status, StatusCode::OK);
    let ct = a.headers[header::CONTENT_TYPE].to_str().expect("ascii");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(a
        .text
        .contains("dps_rejections_total{reason=\"denied\"} 1\n"));
    assert!(a
        .text
        .contains("dps_rejections_total{reason=\"no_path\"} 0\n"));
}

#[tokio::test]
async fn api_requires_the_bearer_token() {
    let f = fixture();
    for (auth, reason) in [
        (None, "missing"),
        (Some("Bearer wrong".to_owned()), "invalid"),
        (Some(format!("Bearer {TOKEN}x")), "invalid"),
        (Some(format!("Basic {TOKEN}")), "missing"),
        (Some("Bearer ".to_owned()), "missing"),
    ] {
        for uri in [
            "/api/v1/enrollment-groups",
            "/api/v1/histograms",
            "/api/v1/provisioning-records",
            "/api/v1/nonexistent",
        ] {
            let a = send(&f.app, Method::GET, uri, auth.as_deref(), Body::empty()).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
            assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
            assert!(a.error().contains(reason), "{}", a.text);
        }
    }
    let a = call(&f.app, Method::GET, "/api/v1/enrollment-groups", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &f.app,
        Method::GET,
        "/api/v1/hubs",
        Some(&format!("bearer  {TOKEN}")),
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "scheme is case-insensitive");
}

#[tokio::test]
async fn an_empty_token_refuses_everyone() {
    let app = router(AdminState {
        arena: Arc::new(Arena::new()),
        store: Arc::new(MemStore::default()),
        metrics: Arc::new(Metrics::new()),
        token: String::new(),
        static_group_ids: HashSet::new(),
        static_hub_ids: HashSet::new(),
        provisioner: None,
        tpm: None,
        static_tpm_ids: HashSet::new(),
        records: None,
    });
    let a = send(
        &app,
        Method::GET,
        "/api/v1/hubs",
        Some("Bearer "),
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let f = fixture();
    let big = format!("{{\"id\": \"{}\"}}", " ".repeat(2 * 1024 * 1024));
    let auth = format!("Bearer {TOKEN}");
    for uri in ["/api/v1/enrollment-groups", "/api/v1/hubs"] {
        let a = send(
            &f.app,
            Method::POST,
            uri,
            Some(&auth),
            Body::from(big.clone()),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {}", a.text);
        assert!(!a.error().is_empty());
    }
}

#[tokio::test]
async fn histograms_are_served_to_the_token_holder() {
    let f = fixture();
    f.metrics
        .record_handshake(std::time::Duration::from_millis(2));
    let a = send(
        &f.app,
        Method::GET,
        "/api/v1/histograms",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(&f.app, Method::GET, "/api/v1/histograms", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let snap: crate::metrics::HistogramSnapshot = serde_json::from_str(&a.text).expect("snapshot");
    let h = crate::metrics::decode_histogram(&snap.histograms["handshake"].hdr).expect("decode");
    assert_eq!(h.len(), 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let f = fixture();
    let a = send(&f.app, Method::GET, "/nope", None, Body::empty()).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.error().is_empty());
    let a = call(&f.app, Method::GET, "/api/v1/nope", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.error().is_empty());
    let a = call(&f.app, Method::PATCH, "/api/v1/hubs", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!a.error().is_empty());
    let a = send(&f.app, Method::POST, "/healthz", None, Body::empty()).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// The admin API served on a loopback socket with `limits`, until the returned sender fires.
async fn spawn_served(
    f: &Fixture,
    limits: super::AdminLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AdminState {
        arena: f.arena.clone(),
        store: f.store.clone(),
        metrics: f.metrics.clone(),
        token: TOKEN.into(),
        static_group_ids: HashSet::new(),
        static_hub_ids: HashSet::new(),
        provisioner: None,
        tpm: None,
        static_tpm_ids: HashSet::new(),
        records: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve_with_limits(
        listener,
        state,
        limits,
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx, server)
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_shuts_down() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let f = fixture();
    let (addr, tx, server) = spawn_served(&f, super::AdminLimits::default()).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"groups\":1"), "{out}");
    tx.send(()).expect("signal");
    let res = tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("stops")
        .expect("join");
    assert!(res.is_ok());
}
