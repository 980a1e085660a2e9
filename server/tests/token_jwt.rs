//! The `jwt` access-token provider end to end: `dps-server init`'s set-up served in-process, the
//! demo device's cloud configuration carries a token that verifies against the key fetched from
//! the admin port's `/.well-known/jwks.json` (no bearer token), names the owner and the device,
//! and whose issuer's discovery document points at that JWK set.

mod common;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::daemon::{cloud_configuration, http_get, run};
use common::server::decoded;
use dps_server::init::{ids, init};
use dps_server::proto::body::CloudConfigurationResponse;
use dps_server::proto::coap::Code;
use serde_json::Value;

fn json_part(b64: &str) -> Value {
    serde_json::from_slice(&B64.decode(b64).expect("base64url")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_token_verifies_against_the_served_jwk_set() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let daemon = run(&dir.path().join("config.toml")).await;
    let admin = daemon.admin();

    let di = uuid::Uuid::new_v4().to_string();
    let cloud: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), daemon.bound.devices, &di).await,
        Code::CHANGED,
    );
    assert!(!cloud.at.is_empty(), "the device needs a token");
    let parts: Vec<&str> = cloud.at.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let (header, claims) = (json_part(parts[0]), json_part(parts[1]));
    assert_eq!(header["alg"], "ES256");

    // Discovery, then the key set it names, both without a bearer token.
    let (status, body) = http_get(admin, "/.well-known/openid-configuration", None).await;
    assert_eq!(status, 200, "{body}");
    let discovery: Value = serde_json::from_str(&body).expect("discovery JSON");
    let issuer = format!("http://{admin}");
    assert_eq!(discovery["issuer"], issuer.as_str());
    let jwks_uri = format!("{issuer}/.well-known/jwks.json");
    assert_eq!(discovery["jwks_uri"], jwks_uri.as_str());
    let path = jwks_uri.strip_prefix(&issuer).expect("below the issuer");
    let (status, body) = http_get(admin, path, None).await;
    assert_eq!(status, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).expect("JWK set");
    let keys = jwks["keys"].as_array().expect("keys");
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );

    let mut point = vec![0x04];
    for c in ["x", "y"] {
        point.extend(B64.decode(jwk[c].as_str().expect(c)).expect("coordinate"));
    }
    let (signed, signature) = cloud.at.rsplit_once('.').expect("signature");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &B64.decode(signature).expect("b64"))
        .expect("the token verifies against the served key");

    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], ids::HUB);
    assert_eq!(claims["https://plgd.dev/owner"], ids::OWNER);
    assert_eq!(claims["https://plgd.dev/deviceId"], di.as_str());
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    assert!(matches!((iat, exp), (Some(i), Some(e)) if e > i));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // Another device gets another token id.
    let other: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), daemon.bound.devices, &di).await,
        Code::CHANGED,
    );
    let other_claims = json_part(other.at.split('.').nth(1).expect("payload"));
    assert_ne!(other_claims["jti"], claims["jti"]);

    let (_, metrics) = http_get(admin, "/metrics", None).await;
    assert!(
        metrics.contains("dps_tokens_issued_total{provider=\"jwt\",source=\"signed\"} 2"),
        "{metrics}"
    );

    // The record names the provider and the expiry, never the token.
    let token = std::fs::read_to_string(dir.path().join("admin-token")).expect("admin token");
    let mut record = String::new();
    for _ in 0..100 {
        let (status, body) =
            http_get(admin, "/api/v1/provisioning-records", Some(token.trim())).await;
        assert_eq!(status, 200, "{body}");
        if body.contains("token_provider") {
            record = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let records: Value = serde_json::from_str(&record).expect("records JSON");
    let first = records
        .as_array()
        .or_else(|| records["records"].as_array())
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or_else(|| panic!("a record in {record}"));
    assert_eq!(first["token_provider"], "jwt");
    let expires = time::OffsetDateTime::from_unix_timestamp(exp.expect("exp")).expect("exp");
    let written = first["token_expires_at"].as_str().expect("expiry");
    let written =
        time::OffsetDateTime::parse(written, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    assert!(
        (written - expires).whole_seconds().abs() <= 1,
        "{written} vs {expires}"
    );
    assert!(!record.contains(&cloud.at) && !record.contains(&other.at));
    daemon.stop().await;
}
