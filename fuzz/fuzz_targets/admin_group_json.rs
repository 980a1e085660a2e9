//! `POST /api/v1/enrollment-groups` with an arbitrary body, through the real admin router over an
//! in-memory store: never panics, never a 5xx; every refusal is 400 (or 409 for an existing id,
//! 413 over the size limit) with a non-empty `{"error": ...}`. A created group is deleted again so
//! every input starts from the same state.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use dps_fuzz::{groups, ADMIN_TOKEN};
use dps_server::admin::{router, AdminState};
use dps_server::enrollment::Arena;
use dps_server::metrics::Metrics;
use dps_server::store::Store;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Router,
    arena: Arc<Arena>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let groups = groups();
        let static_ids: HashSet<_> = groups.iter().map(|g| g.id).collect();
        let arena = Arc::new(Arena::with_groups(groups).expect("arena"));
        let app = router(AdminState {
            arena: arena.clone(),
            store: Arc::new(Store::in_memory().expect("store")),
            metrics: Arc::new(Metrics::new()),
            token: ADMIN_TOKEN.into(),
            static_group_ids: static_ids,
            static_hub_ids: HashSet::new(),
            provisioner: None,
            tpm: None,
            static_tpm_ids: HashSet::new(),
            records: None,
        });
        Harness { rt, app, arena }
    })
}

async fn send(app: &Router, method: Method, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let groups_before = h.arena.load().len();
    h.rt.block_on(async {
        let (status, body) = send(
            &h.app,
            Method::POST,
            "/api/v1/enrollment-groups",
            data.to_vec(),
        )
        .await;
        if status == StatusCode::CREATED {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("created group JSON");
            let id = v["id"].as_str().expect("id").to_owned();
            let (del, text) = send(
                &h.app,
                Method::DELETE,
                &format!("/api/v1/enrollment-groups/{id}"),
                Vec::new(),
            )
            .await;
            assert_eq!(
                del,
                StatusCode::NO_CONTENT,
                "{}",
                String::from_utf8_lossy(&text)
            );
            return;
        }
        assert!(
            matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::PAYLOAD_TOO_LARGE
            ),
            "unexpected status {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("error JSON");
        let reason = v["error"].as_str().expect("error field");
        assert!(!reason.trim().is_empty(), "empty reason");
    });
    assert_eq!(
        h.arena.load().len(),
        groups_before,
        "state leaked between inputs"
    );
});
