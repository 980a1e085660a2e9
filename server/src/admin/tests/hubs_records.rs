//! Hubs and provisioning records over the API.

use super::*;

#[tokio::test]
async fn hubs_are_validated_and_referenced_ones_stay() {
    let f = fixture();
    let hub = Uuid::new_v4();
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"id": "x", "gateways": ["coaps+tcp://h:1"]}),
            "not a UUID",
        ),
        (
            json!({"id": hub.to_string(), "gateways": []}),
            "must not be empty",
        ),
        (json!({"id": hub.to_string()}), "must not be empty"),
        (
            json!({"id": hub.to_string(), "gateways": ["coaps+tcp://h:1", "https://h"]}),
            "https://h",
        ),
        (
            json!({"id": hub.to_string(), "gateways": ["coaps+tcp://"]}),
            "coaps+tcp://",
        ),
        (
            json!({"id": hub.to_string(), "gateways": ["coaps+tcp://h:1"],
                   "authorization": {"jwt": {"validity_s": 0}}}),
            "authorization.jwt.validity_s",
        ),
        (
            json!({"id": hub.to_string(), "gateways": ["coaps+tcp://h:1"],
                   "authorization": {"provider": "oauth2"}}),
            "authorization.oauth2",
        ),
    ];
    for (body, reason) in bad {
        let a = call(&f.app, Method::POST, "/api/v1/hubs", Some(body.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.error().contains(reason), "{reason}: {}", a.text);
    }
    let body =
        json!({"id": hub.to_string(), "gateways": ["coaps+tcp://hub.example:5684"], "name": "h"});
    let a = call(&f.app, Method::POST, "/api/v1/hubs", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = call(&f.app, Method::POST, "/api/v1/hubs", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::CONFLICT);

    let uri = format!("/api/v1/hubs/{hub}");
    let a = call(&f.app, Method::GET, &uri, None).await;
    assert_eq!(a.json(), body);
    let mut renamed = body.clone();
    renamed["name"] = json!("renamed");
    let a = call(&f.app, Method::PUT, &uri, Some(renamed)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        f.store.hubs().expect("hubs")[0].name.as_deref(),
        Some("renamed")
    );

    let list = call(&f.app, Method::GET, "/api/v1/hubs", None).await.json();
    assert_eq!(
        list[0],
        json!({"id": f.static_hub.to_string(), "static": true})
    );
    assert_eq!(list[1]["id"], hub.to_string());

    // A group uses it: it stays.
    let pki = Pki::new("Hubbed");
    let gid = Uuid::new_v4();
    let mut g = group_body(gid, "hubbed", &pki);
    g["hub_ids"] = json!([hub.to_string()]);
    let a = call(&f.app, Method::POST, "/api/v1/enrollment-groups", Some(g)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.error().contains(&gid.to_string()));

    // Static hubs cannot change.
    let s_uri = format!("/api/v1/hubs/{}", f.static_hub);
    let a = call(&f.app, Method::DELETE, &s_uri, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = call(
        &f.app,
        Method::PUT,
        &s_uri,
        Some(json!({"id": f.static_hub.to_string(), "gateways": ["coaps+tcp://x:1"]})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);

    let a = call(
        &f.app,
        Method::DELETE,
        &format!("/api/v1/enrollment-groups/{gid}"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = call(&f.app, Method::GET, &uri, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hub_keys_are_loaded_before_the_hub_is_stored_and_served_as_a_jwk_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Issued::self_signed(&CertSpec::ca("Identity")).expect("ca");
    let ca = crate::provision::IdentityCa::from_pem(&ca.pem(), &ca.key_pem()).expect("ca");
    let provisioner = Arc::new(
        crate::provision::Provisioner::new(
            ca,
            Vec::new(),
            crate::provision::DEFAULT_IDENTITY_VALIDITY,
        )
        .with_config_dir(dir.path()),
    );
    let store = Arc::new(MemStore::default());
    let app = router(AdminState {
        arena: Arc::new(Arena::with_groups(Vec::new()).expect("arena")),
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        token: TOKEN.into(),
        static_group_ids: HashSet::new(),
        static_hub_ids: HashSet::new(),
        provisioner: Some(provisioner.clone()),
        tpm: None,
        static_tpm_ids: HashSet::new(),
        records: None,
    });
    let hub = Uuid::new_v4();
    let body = json!({"id": hub.to_string(), "gateways": ["coaps+tcp://h:1"],
                      "authorization": {"jwt": {"signing_key": "hub.key"}}});
    let a = call(&app, Method::POST, "/api/v1/hubs", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.error().contains("hub.key"), "{}", a.text);
    assert!(
        store.hubs().expect("hubs").is_empty(),
        "refused, so not stored"
    );

    let pem = crate::token::jwt::SigningKey::generate_pem().expect("pem");
    std::fs::write(dir.path().join("hub.key"), &pem).expect("key");
    let a = call(&app, Method::POST, "/api/v1/hubs", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert!(provisioner.hub(&hub).is_some());
    let kid = crate::token::jwt::SigningKey::from_pem(pem.as_bytes())
        .expect("key")
        .kid()
        .to_owned();
    // No bearer token needed for the well-known documents.
    for (path, check) in [
        ("/.well-known/jwks.json", "keys"),
        ("/.well-known/openid-configuration", "jwks_uri"),
    ] {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert!(v.get(check).is_some(), "{path}: {v}");
        if check == "keys" {
            assert_eq!(v["keys"][0]["kid"], kid.as_str(), "{v}");
        } else {
            assert_eq!(v["issuer"], crate::token::DEFAULT_ISSUER);
        }
    }
    // Without a device server there are no keys to serve.
    let resp = fixture()
        .app
        .oneshot(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

fn record(n: u8) -> ProvisioningRecord {
    ProvisioningRecord {
        key: format!("sha256:{:064x}", n),
        common_name: format!("SN-{n}"),
        group: Uuid::nil(),
        device_id: Some(Uuid::from_u128(u128::from(n))),
        identity_certificate: None,
        identity_not_after: None,
        token_provider: None,
        token_expires_at: None,
        steps: BTreeMap::from([(
            Step::Time,
            StepResult {
                at: "2025-01-01T00:00:00Z".into(),
                code: "2.05".into(),
                diagnostic: String::new(),
            },
        )]),
        first_seen: "2025-01-01T00:00:00Z".into(),
        last_seen: "2025-01-01T00:00:01Z".into(),
    }
}

#[tokio::test]
async fn provisioning_records_are_listed_and_fetched() {
    let f = fixture();
    f.store
        .put_records(&[record(1), record(2), record(3)])
        .expect("records");
    let page = call(
        &f.app,
        Method::GET,
        "/api/v1/provisioning-records?limit=2",
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let page = page.json();
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["records"][0]["common_name"], "SN-1");
    let next = page["next"].as_str().expect("next").to_owned();
    assert_eq!(next, record(2).key);
    let page = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/provisioning-records?after={next}&limit=2"),
        None,
    )
    .await
    .json();
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1));
    assert!(page.get("next").is_none());
    let all = call(&f.app, Method::GET, "/api/v1/provisioning-records", None)
        .await
        .json();
    assert_eq!(all["records"].as_array().map(Vec::len), Some(3));

    for bad in ["limit=0", "limit=1001", "limit=abc", "colour=red"] {
        let a = call(
            &f.app,
            Method::GET,
            &format!("/api/v1/provisioning-records?{bad}"),
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.text);
        assert!(!a.error().is_empty());
    }

    let a = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/provisioning-records/{}", record(3).key),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let r: ProvisioningRecord = serde_json::from_value(a.json()).expect("record");
    assert_eq!(r, record(3));
    let a = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/provisioning-records/{}", Uuid::from_u128(2)),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["common_name"], "SN-2");
    let a = call(
        &f.app,
        Method::GET,
        "/api/v1/provisioning-records/sha256:00",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.error().contains("sha256:00"));
}
