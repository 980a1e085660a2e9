//! Enrollment groups over the API: creation admits devices, validation, conflicts, durability.

use super::*;

#[tokio::test]
async fn a_group_created_over_the_api_admits_its_devices() {
    let f = fixture();
    let pki = Pki::new("Factory");
    let device = pki.device("SN-1");
    assert_eq!(
        admits(&f.arena, &device),
        Verdict::Rejected(RejectReason::NoPath)
    );

    let id = Uuid::new_v4();
    let mut body = group_body(id, "factory", &pki);
    body["hub_ids"] = json!([f.static_hub.to_string().to_uppercase()]);
    body["deny_common_names"] = json!(["SN-13"]);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(
        a.headers[header::LOCATION],
        format!("/api/v1/enrollment-groups/{id}").as_str()
    );
    assert_eq!(
        a.json()["hub_ids"],
        json!([f.static_hub.to_string()]),
        "ids are canonical"
    );

    // Durable first, then published.
    let stored = f.store.groups().expect("groups");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id.to_string());
    assert!(stored[0]
        .certificate_chain
        .contains("-----BEGIN CERTIFICATE-----"));
    match admits(&f.arena, &device) {
        Verdict::Accepted(acc) => {
            assert_eq!(acc.group, id);
            assert_eq!(acc.common_name, "SN-1");
        }
        other => panic!("not admitted: {other:?}"),
    }
    assert_eq!(
        admits(&f.arena, &pki.device("SN-13")),
        Verdict::Rejected(RejectReason::Denied)
    );

    let list = call(&f.app, Method::GET, "/api/v1/enrollment-groups", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], f.static_group.to_string());
    assert_eq!(items[0]["static"], true);
    assert!(items[0]["certificate_chain"]
        .as_str()
        .is_some_and(|c| c.matches("-----BEGIN CERTIFICATE-----").count() == 2));
    assert_eq!(items[1]["id"], id.to_string());
    assert!(items[1].get("static").is_none());

    let one = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/enrollment-groups/{id}"),
        None,
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    let cfg: GroupConfig = serde_json::from_value(one.json()).expect("GroupConfig JSON");
    assert_eq!(cfg.name, "factory");
    assert_eq!(cfg.deny_common_names, ["SN-13"]);

    // Creating it again is a conflict.
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(id, "again", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(f.metrics.open_connections(), 0);
}

#[tokio::test]
async fn invalid_groups_are_refused_with_the_reason() {
    let f = fixture();
    let pki = Pki::new("Bad");
    let device = pki.device("SN-9");
    let uri = "/api/v1/enrollment-groups";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "leafy", "owner": "o",
                   "certificate_chain": chain_pem([device.der(), pki.int.der(), pki.root.der()])}),
            "not a CA certificate",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "gap", "owner": "o",
                   "certificate_chain": pki.int.pem()}),
            "self-signed root",
        ),
        (
            json!({"id": "not-a-uuid", "name": "n", "owner": "o", "certificate_chain": pki.chain_pem()}),
            "not a UUID",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
                   "certificate_chain": "/etc/passwd"}),
            "inline PEM",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "",
                   "certificate_chain": pki.chain_pem()}),
            "owner must not be empty",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
                   "certificate_chain": pki.chain_pem(), "lead_certificate": 7}),
            "lead_certificate 7",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
                   "certificate_chain": pki.chain_pem(), "hub_ids": [Uuid::new_v4().to_string()]}),
            "is not configured",
        ),
        (
            json!({"id": Uuid::new_v4().to_string(), "name": "n", "owner": "o",
                   "certificate_chain": pki.chain_pem(), "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"name": "n"}), "missing field `id`"),
    ];
    for (body, reason) in cases {
        let a = call(&f.app, Method::POST, uri, Some(body.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        assert!(a.error().contains(reason), "{reason:?} not in {}", a.text);
    }
    let a = send(
        &f.app,
        Method::POST,
        uri,
        Some(&format!("Bearer {TOKEN}")),
        Body::from("{\"id\": "),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("line 1 column"), "{}", a.text);
    assert!(f.store.groups().expect("groups").is_empty());
    assert_eq!(f.arena.load().len(), 1);
}

#[tokio::test]
async fn a_duplicate_lead_is_refused() {
    let f = fixture();
    let pki = Pki::new("Dup");
    let first = Uuid::new_v4();
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(first, "first", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(Uuid::new_v4(), "second", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(
        a.error().contains("already the lead certificate of group"),
        "{}",
        a.text
    );
    assert!(a.error().contains(&first.to_string()), "{}", a.text);
    // The same chain with another lead is fine.
    let mut body = group_body(Uuid::new_v4(), "by-root", &pki);
    body["lead_certificate"] = json!(1);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(f.store.groups().expect("groups").len(), 2);
    assert_eq!(f.arena.load().len(), 3);
}

#[tokio::test]
async fn a_conflict_only_the_arena_sees_rolls_the_store_back() {
    let f = fixture();
    // Two self-signed roots with one key and subject: each verifies the other's signature, so
    // [a] and [a, b] are both valid chains, but they give `a` different issuers.
    let spec = CertSpec::ca("Twin Root");
    let a_root = Issued::self_signed(&spec).expect("a");
    let key = rcgen::KeyPair::from_pem(&a_root.key_pem()).expect("key");
    let b_root = Issued::self_signed_with_key(&spec, key).expect("b");
    let first = json!({"id": Uuid::new_v4().to_string(), "name": "a", "owner": "o",
                       "certificate_chain": a_root.pem()});
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(first),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let second = json!({"id": Uuid::new_v4().to_string(), "name": "b", "owner": "o",
                        "certificate_chain": chain_pem([a_root.der(), b_root.der()]),
                        "lead_certificate": 1});
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(second),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.error().contains("cross-signed"), "{}", a.text);
    assert_eq!(f.store.groups().expect("groups").len(), 1, "rolled back");
    assert_eq!(f.arena.load().len(), 2);
}

#[tokio::test]
async fn a_failing_store_publishes_nothing() {
    let f = fixture();
    let pki = Pki::new("Lost");
    f.store.fail_writes.store(true, Ordering::Relaxed);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(Uuid::new_v4(), "lost", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text);
    assert!(a.error().contains("disk on fire"));
    assert_eq!(f.arena.load().len(), 1);
    assert!(matches!(
        admits(&f.arena, &pki.device("SN-1")),
        Verdict::Rejected(_)
    ));
}

#[tokio::test]
async fn static_groups_are_read_only() {
    let f = fixture();
    let pki = Pki::new("Other");
    let uri = format!("/api/v1/enrollment-groups/{}", f.static_group);
    let a = call(&f.app, Method::GET, &uri, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["static"], true);
    assert_eq!(a.json()["name"], "static");
    let a = call(
        &f.app,
        Method::PUT,
        &uri,
        Some(group_body(f.static_group, "renamed", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.error().contains("config file"));
    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(f.static_group, "again", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(f.arena.load().len(), 1);
    assert!(f.arena.load().group(&f.static_group).is_some());
}

#[tokio::test]
async fn stored_groups_are_replaced_and_deleted() {
    let f = fixture();
    let pki = Pki::new("Mutable");
    let device = pki.device("SN-5");
    let id = Uuid::new_v4();
    let uri = format!("/api/v1/enrollment-groups/{id}");
    let a = call(
        &f.app,
        Method::PUT,
        &uri,
        Some(group_body(id, "nope", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/enrollment-groups",
        Some(group_body(id, "m", &pki)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(matches!(admits(&f.arena, &device), Verdict::Accepted(_)));

    let mut body = group_body(id, "m2", &pki);
    body["deny_common_names"] = json!(["SN-5"]);
    let a = call(&f.app, Method::PUT, &uri, Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["name"], "m2");
    assert_eq!(
        admits(&f.arena, &device),
        Verdict::Rejected(RejectReason::Denied)
    );
    assert_eq!(f.store.groups().expect("groups")[0].name, "m2");

    body["id"] = json!(Uuid::new_v4().to_string());
    let a = call(&f.app, Method::PUT, &uri, Some(body)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("differs"), "{}", a.text);

    let a = call(
        &f.app,
        Method::GET,
        "/api/v1/enrollment-groups/not-a-uuid",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("not a UUID"));

    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(f.store.groups().expect("groups").is_empty());
    assert_eq!(
        admits(&f.arena, &device),
        Verdict::Rejected(RejectReason::NoPath)
    );
    let a = call(&f.app, Method::GET, &uri, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.error().contains(&id.to_string()));
    let a = call(&f.app, Method::DELETE, &uri, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
