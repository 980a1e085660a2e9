//! Individual TPM enrollments over the admin API: created with the EK as base64 TPM2B_PUBLIC,
//! published at once (the TPM attests on its next connection), kept in the store across a
//! restart, and deleted; invalid EKs and duplicates are refused.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use common::server::*;
use common::tpm::*;
use dps_server::config::Config;
use dps_server::proto::coap::Code;
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(
    running: &Running,
    config: &Config,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let app = dps_server::admin::router(running.server.admin_state(config, "t0ken".into()));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer t0ken")
        .header("content-type", "application/json")
        .body(match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let resp = app.oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_enrollments_over_the_admin_api() {
    let dir = tempfile::tempdir().expect("tmp");
    let configured = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    setup(
        dir.path(),
        &configured.ek().public().to_tpm2b(),
        &TpmVendor::new("Acme"),
        30_000,
    );
    let config = Config::load(&dir.path().join("config.toml")).expect("config");
    let running = start_with(&config).await;

    let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    let id = "5e1f0000-0000-4000-8000-0000000000b7";
    let ek = base64::engine::general_purpose::STANDARD.encode(tpm.ek().public().to_tpm2b());
    let body = serde_json::json!({
        "id": id, "name": "via-api", "owner": "api-owner", "endorsement_key": ek,
        "hub_ids": [dps_server::init::ids::HUB],
    });
    let (status, created) = call(
        &running,
        &config,
        "POST",
        "/api/v1/tpm-enrollments",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["registration_id"], tpm.registration_id());
    let (status, _) = call(
        &running,
        &config,
        "POST",
        "/api/v1/tpm-enrollments",
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The same EK under another id, and a key that is not an EK: 400.
    let (status, _) = call(&running, &config, "POST", "/api/v1/tpm-enrollments", Some(serde_json::json!({
        "id": "5e1f0000-0000-4000-8000-0000000000b8", "name": "twin", "owner": "o", "endorsement_key": ek,
    }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let ak = base64::engine::general_purpose::STANDARD.encode(tpm.ak().public().to_tpm2b());
    let (status, err) = call(&running, &config, "POST", "/api/v1/tpm-enrollments", Some(serde_json::json!({
        "id": "5e1f0000-0000-4000-8000-0000000000b9", "name": "ak", "owner": "o", "endorsement_key": ak,
    }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    // Listed with the configured one (static).
    let (status, list) = call(&running, &config, "GET", "/api/v1/tpm-enrollments", None).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .any(|e| e["id"] == INDIVIDUAL && e["static"] == true));
    let (status, _) = call(
        &running,
        &config,
        "DELETE",
        &format!("/api/v1/tpm-enrollments/{INDIVIDUAL}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Published at once: the TPM attests.
    let mut dev = anonymous(dir.path(), running.addr).await;
    let done = attested(&mut dev, &tpm).await;
    assert_eq!(done.registration_id, tpm.registration_id());
    drop(dev);
    running.stop().await;

    // Still there after a restart (from the store), then deleted.
    let running = start_with(&config).await;
    assert!(running
        .server
        .attestor()
        .enrollments()
        .get(&tpm.registration_id())
        .is_some());
    let (status, _) = call(
        &running,
        &config,
        "DELETE",
        &format!("/api/v1/tpm-enrollments/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut dev = anonymous(dir.path(), running.addr).await;
    let resp = challenge(&mut dev, &tpm.challenge_request()).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED);
    drop(dev);
    running.stop().await;
    let running = start_with(&config).await;
    assert!(running
        .server
        .attestor()
        .enrollments()
        .get(&tpm.registration_id())
        .is_none());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_enrollment_groups_over_the_admin_api() {
    let dir = tempfile::tempdir().expect("tmp");
    let configured = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    setup(
        dir.path(),
        &configured.ek().public().to_tpm2b(),
        &TpmVendor::new("Acme"),
        30_000,
    );
    let config = Config::load(&dir.path().join("config.toml")).expect("config");
    let running = start_with(&config).await;

    // A second TPM vendor, enrolled over the API.
    let globex = TpmVendor::new("Globex");
    let id = "5e1f0000-0000-4000-8000-0000000000c1";
    let chain = dps_server::pki::chain_pem([globex.int.der(), globex.root.der()]);
    let body = serde_json::json!({
        "id": id, "name": "globex-tpms", "owner": "globex-owner",
        "certificate_chain": chain, "hub_ids": [dps_server::init::ids::HUB],
    });
    let uri = "/api/v1/tpm-enrollment-groups";
    let (status, created) = call(&running, &config, "POST", uri, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = call(&running, &config, "POST", uri, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Listed with the configured TPM group, and not among the X.509 groups.
    let (_, list) = call(&running, &config, "GET", uri, None).await;
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert!(ids.contains(&id) && ids.contains(&TPM_GROUP), "{ids:?}");
    let (_, x509) = call(&running, &config, "GET", "/api/v1/enrollment-groups", None).await;
    assert!(
        !x509.to_string().contains(id) && !x509.to_string().contains(TPM_GROUP),
        "{x509}"
    );
    let (status, _) = call(
        &running,
        &config,
        "GET",
        &format!("/api/v1/enrollment-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the X.509 route does not see it"
    );

    // A Globex TPM attests into it at once, and again after a restart (from the store).
    let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
    let cert = globex.ek_certificate(&tpm);
    let tpm = tpm.with_ek_certificate(cert, vec![]);
    let mut dev = anonymous(dir.path(), running.addr).await;
    let done = attested(&mut dev, &tpm).await;
    assert_eq!(done.group, id);
    drop(dev);
    running.stop().await;
    let running = start_with(&config).await;
    let mut dev = anonymous(dir.path(), running.addr).await;
    let done = attested(&mut dev, &tpm).await;
    assert_eq!(done.group, id, "after a restart");
    drop(dev);

    // Deleted: Globex TPMs are refused again.
    let (status, _) = call(&running, &config, "DELETE", &format!("{uri}/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut dev = anonymous(dir.path(), running.addr).await;
    let resp = challenge(&mut dev, &tpm.challenge_request()).await;
    assert_eq!(resp.code, Code::UNAUTHORIZED);
    running.stop().await;
}
