use super::config::{JwtConfig, OAuth2Config};
use super::*;

fn with_key_file(dir: &Path) -> AuthorizationConfig {
    std::fs::write(
        dir.join("token.key"),
        SigningKey::generate_pem().expect("pem"),
    )
    .expect("write key");
    AuthorizationConfig {
        jwt: Some(JwtConfig {
            signing_key: Some("token.key".into()),
            audience: Some("hub-api".into()),
            validity_s: 120,
        }),
        ..AuthorizationConfig::default()
    }
}

#[tokio::test]
async fn jwt_token_has_the_claims_of_the_device() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = with_key_file(dir.path());
    let authority = Authority::from_config(Some(&config), "h", dir.path()).expect("authority");
    let tokens = Tokens::new();
    tokens.set_issuer("http://127.0.0.1:1".into());
    let (hub, owner) = (Uuid::new_v4(), Uuid::new_v4());
    let issued = tokens
        .issue(&authority, hub, owner, "dev-1")
        .await
        .expect("token");
    let claims = jwt::unverified_claims(&issued.token).expect("claims");
    assert_eq!(claims["iss"], "http://127.0.0.1:1");
    assert_eq!(claims["aud"], "hub-api");
    assert_eq!(claims["https://plgd.dev/owner"], owner.to_string());
    assert_eq!(claims["https://plgd.dev/deviceId"], "dev-1");
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 120);
    assert!(Uuid::parse_str(claims["jti"].as_str().expect("jti")).is_ok());
    assert_eq!(issued.info.provider, ProviderKind::Jwt);
    assert_eq!(
        issued.info.expires_at.map(|t| t.unix_timestamp()),
        Some(exp)
    );
    assert_eq!(tokens.metrics().issued(ProviderKind::Jwt), (1, 0));
    // The JWK set holds the configured key once, and not the unused fallback.
    let jwks = tokens.jwks([&authority, &authority]);
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let header = issued.token.split('.').next().expect("header");
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["kid"], keys[0]["kid"]);
}

#[tokio::test]
async fn default_authority_signs_with_the_generated_key_and_aud_is_the_hub() {
    let tokens = Tokens::new();
    let authority = Authority::default();
    let hub = Uuid::new_v4();
    let issued = tokens
        .issue(&authority, hub, Uuid::new_v4(), "d")
        .await
        .expect("token");
    let claims = jwt::unverified_claims(&issued.token).expect("claims");
    assert_eq!(claims["aud"], hub.to_string());
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        3600
    );
    let jwks = tokens.jwks([&authority]);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    // Another server generates another key.
    assert_ne!(Tokens::new().jwks([&authority]), jwks);
}

#[test]
fn files_are_named_in_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = with_key_file(dir.path());
    if let Some(j) = config.jwt.as_mut() {
        j.signing_key = Some("missing.key".into());
    }
    let e = Authority::from_config(Some(&config), "h1", dir.path()).expect_err("missing");
    assert!(
        e.starts_with("h1: ") && e.contains("jwt.signing_key") && e.contains("missing.key"),
        "{e}"
    );
    std::fs::write(dir.path().join("bad.key"), "junk").expect("write");
    if let Some(j) = config.jwt.as_mut() {
        j.signing_key = Some("bad.key".into());
    }
    let e = Authority::from_config(Some(&config), "h1", dir.path()).expect_err("bad");
    assert!(e.contains("bad.key"), "{e}");
    // Validation runs first.
    if let Some(j) = config.jwt.as_mut() {
        j.validity_s = 0;
    }
    let e = Authority::from_config(Some(&config), "h1", dir.path()).expect_err("zero");
    assert!(e.contains("jwt.validity_s"), "{e}");
}

fn oauth2_config(url: &str) -> AuthorizationConfig {
    AuthorizationConfig {
        provider: ProviderKind::Oauth2,
        oauth2: Some(OAuth2Config {
            token_url: url.into(),
            client_id: "dps".into(),
            client_secret_file: "secret".into(),
            audience: None,
            scopes: vec![],
            client_auth: config::ClientAuth::ClientSecretBasic,
            ca_file: None,
            timeout_ms: 500,
            retry_after_s: 9,
        }),
        ..AuthorizationConfig::default()
    }
}

#[tokio::test]
async fn oauth2_failures_are_counted_by_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("secret"), "s3\n").expect("secret");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let config = oauth2_config(&format!("http://{addr}/token"));
    let authority = Authority::from_config(Some(&config), "h", dir.path()).expect("authority");
    assert_eq!(authority.retry_after_s(), 9);
    let tokens = Tokens::new();
    let e = tokens
        .issue(&authority, Uuid::new_v4(), Uuid::new_v4(), "d")
        .await
        .expect_err("unreachable");
    assert_eq!(e.label(), "unreachable");
    assert_eq!(
        tokens
            .metrics()
            .failures(ProviderKind::Oauth2, "unreachable"),
        1
    );
    assert_eq!(
        tokens.metrics().failures(ProviderKind::Jwt, "unreachable"),
        0
    );
    let mut text = String::new();
    tokens.metrics().write_prometheus(&mut text);
    assert!(
        text.contains("dps_token_failures_total{provider=\"oauth2\",reason=\"unreachable\"} 1"),
        "{text}"
    );
    assert!(text.contains("dps_tokens_issued_total{provider=\"jwt\",source=\"signed\"} 0"));
    // An oauth2 hub contributes no key to the JWK set.
    assert_eq!(tokens.jwks([&authority])["keys"], serde_json::json!([]));
}

#[test]
fn oauth2_secret_file_must_exist() {
    let dir = tempfile::tempdir().expect("tmp");
    let e = Authority::from_config(
        Some(&oauth2_config("http://127.0.0.1:9/t")),
        "h",
        dir.path(),
    )
    .expect_err("no secret");
    assert!(e.contains("oauth2.client_secret_file"), "{e}");
}
