//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`, without a bearer
//! token: a hub configured with the DPS as its token authority discovers the keys that verify the
//! `jwt` provider's access tokens here, as it would from an OpenID provider.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{ApiError, St};

/// Path of the JWK set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the discovery document.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

fn provisioner(s: &St) -> Result<&crate::provision::Provisioner, ApiError> {
    s.state.provisioner.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no device server runs with this admin API",
        )
    })
}

/// The public keys of every `jwt` hub, `{"keys": [JWK…]}`.
pub(super) async fn jwks(State(s): State<St>) -> Result<Json<Value>, ApiError> {
    Ok(Json(provisioner(&s)?.jwks()))
}

/// `issuer` (the `iss` of DPS-signed tokens) and `jwks_uri` below it.
pub(super) async fn openid_configuration(State(s): State<St>) -> Result<Json<Value>, ApiError> {
    let issuer = provisioner(&s)?.tokens().issuer();
    let jwks_uri = format!("{}{JWKS_PATH}", issuer.trim_end_matches('/'));
    Ok(Json(serde_json::json!({
        "issuer": issuer.as_str(),
        "jwks_uri": jwks_uri,
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
    })))
}
