//! The HTTP admin API, on its own port (loopback by default).
//!
//! - `GET /healthz` and `GET /metrics` (Prometheus text) need no credentials, nor do
//!   `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration` (the keys of the
//!   `jwt` access-token provider, see [`crate::token`]).
//! - Everything under `/api/v1/` needs `Authorization: Bearer <token>`, compared in constant time;
//!   without it the answer is 401 with `WWW-Authenticate: Bearer`.
//! - `/api/v1/enrollment-groups[/{id}]` and `/api/v1/hubs[/{id}]`: list, create (POST, 201), read,
//!   replace (PUT) and delete. Groups and hubs from the config file are read-only here (409).
//!   A change is written to the store first and published to the arena after, so an acknowledged
//!   change is durable.
//! - `/api/v1/tpm-enrollments[/{id}]`: individual TPM enrollments (list, create, read, delete),
//!   the EK as base64 TPM2B_PUBLIC; config-file ones are read-only.
//! - `/api/v1/identities/{device-id}`: who holds a device id (GET) and its release (DELETE).
//! - `/api/v1/provisioning-records[/{key-or-device-id}]` and `/api/v1/histograms`.
//!
//! Connections have a header-read timeout, a request deadline (408) and a cap ([`AdminLimits`]).
//! Bodies are JSON, at most 1 MiB (413 beyond). Every error is answered as `{"error": "<reason>"}`.
//! Store calls run on the blocking thread pool; changes are serialized by one admin write lock.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::enrollment::Arena;
use crate::metrics::Metrics;
use crate::records::{Persistence, StoreError};

mod groups;
mod hubs;
mod identities;
mod records;
mod serve;
#[cfg(test)]
mod tests;
mod tpm;
mod wellknown;

pub use serve::AdminLimits;

/// Largest request body accepted, bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Content type of `GET /metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin API works on.
pub struct AdminState {
    /// The enrollment groups being served; admin changes are published here.
    pub arena: Arc<Arena>,
    /// Durable storage of admin-managed groups and hubs, and the provisioning records.
    pub store: Arc<dyn Persistence>,
    /// Server metrics, exported by `/metrics` and `/api/v1/histograms`.
    pub metrics: Arc<Metrics>,
    /// The bearer token of `/api/v1/`. An empty token refuses every request.
    pub token: String,
    /// Groups defined in the config file: read-only over the API.
    pub static_group_ids: HashSet<Uuid>,
    /// Hubs defined in the config file: read-only over the API.
    pub static_hub_ids: HashSet<Uuid>,
    /// The running server's provisioner, which hands hubs to devices: hub changes made over the
    /// API are applied to it once stored. `None` when the API runs without a server (tests).
    pub provisioner: Option<Arc<crate::provision::Provisioner>>,
    /// The running server's individual TPM enrollments: changes made over the API are published
    /// here once stored. `None` when the API runs without a server (the TPM routes then answer 503).
    pub tpm: Option<Arc<crate::tpm::TpmEnrollments>>,
    /// Individual TPM enrollments defined in the config file: read-only over the API.
    pub static_tpm_ids: HashSet<Uuid>,
    /// The running server's record writer: a released device id is committed through it before
    /// the release is acknowledged. `None` without a server.
    pub records: Option<crate::store::RecordWriter>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("groups", &self.arena.load().len())
            .field("static_group_ids", &self.static_group_ids.len())
            .field("static_hub_ids", &self.static_hub_ids.len())
            .finish_non_exhaustive()
    }
}

/// The state the handlers share: the caller's state and the lock that serializes changes (so the
/// store and the arena see changes in the same order).
struct Shared {
    state: AdminState,
    writes: tokio::sync::Mutex<()>,
}

type St = Arc<Shared>;

/// The admin API's routes over `state`.
pub fn router(state: AdminState) -> Router {
    let shared: St = Arc::new(Shared {
        state,
        writes: tokio::sync::Mutex::new(()),
    });
    let api = Router::new()
        .route("/enrollment-groups", get(groups::list).post(groups::create))
        .route(
            "/enrollment-groups/{id}",
            get(groups::get).put(groups::replace).delete(groups::delete),
        )
        .route(
            "/tpm-enrollment-groups",
            get(groups::tpm_list).post(groups::tpm_create),
        )
        .route(
            "/tpm-enrollment-groups/{id}",
            get(groups::tpm_get)
                .put(groups::tpm_replace)
                .delete(groups::tpm_delete),
        )
        .route("/hubs", get(hubs::list).post(hubs::create))
        .route(
            "/hubs/{id}",
            get(hubs::get).put(hubs::replace).delete(hubs::delete),
        )
        .route("/tpm-enrollments", get(tpm::list).post(tpm::create))
        .route("/tpm-enrollments/{id}", get(tpm::get).delete(tpm::delete))
        .route(
            "/identities/{id}",
            get(identities::get).delete(identities::release),
        )
        .route("/provisioning-records", get(records::list))
        .route("/provisioning-records/{key}", get(records::get))
        .route("/histograms", get(histograms))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route(wellknown::JWKS_PATH, get(wellknown::jwks))
        .route(
            wellknown::OPENID_CONFIGURATION_PATH,
            get(wellknown::openid_configuration),
        )
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// Serve the admin API on `listener` until `shutdown` resolves; requests in flight then finish.
/// Connections get the default [`AdminLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, state, AdminLimits::default(), shutdown).await
}

/// [`serve()`] with explicit connection limits (header-read timeout, request deadline, cap).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    state: AdminState,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.metrics.clone();
    let on_refused = move || metrics.record_admin_refused();
    serve::serve_router(listener, router(state), limits, on_refused, shutdown).await
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "admin API: store failed");
        Self::internal(e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON body: over the size limit 413, otherwise anything that does not deserialize into `T`
/// is a 400 carrying the parser's message (line and column). The content type is not checked.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // An announced length over the limit is refused at once, not after reading up to the
        // limit (a client may announce a huge body and send it slowly).
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = announced.filter(|n| *n > BODY_LIMIT as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of {n} bytes exceeds the limit of {BODY_LIMIT} bytes"),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Run `f` (store calls, validation) on the blocking pool.
async fn blocking<T, F>(s: &St, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&AdminState) -> Result<T, ApiError> + Send + 'static,
{
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s.state))
        .await
        .map_err(|e| ApiError::internal(format!("admin task failed: {e}")))?
}

/// A path segment that must be a UUID.
fn parse_id(kind: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::bad_request(format!("{kind} id {raw:?} is not a UUID")))
}

/// The bearer token of an `Authorization` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Constant-time token check. Both sides are hashed first so that neither the content nor the
/// length of the expected token leaks through timing.
fn token_matches(expected: &str, given: &str) -> bool {
    use aws_lc_rs::digest::{digest, SHA256};
    if expected.is_empty() {
        return false;
    }
    let a = digest(&SHA256, expected.as_bytes());
    let b = digest(&SHA256, given.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

async fn require_token(State(s): State<St>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        None => ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token").into_response(),
        Some(t) if !token_matches(&s.state.token, t) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response()
        }
        Some(_) => next.run(req).await,
    }
}

async fn healthz(State(s): State<St>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "groups": s.state.arena.load().len() }))
}

async fn prometheus(State(s): State<St>) -> Response {
    let text = s.state.metrics.prometheus();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn histograms(State(s): State<St>) -> Json<crate::metrics::HistogramSnapshot> {
    Json(s.state.metrics.histograms())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
