//! `/api/v1/tpm-enrollments`: individual TPM enrollments as [`TpmEnrollmentConfig`] JSON, the EK
//! as base64 of its TPM2B_PUBLIC (`endorsement_key`).
//!
//! Config-file enrollments are listed with `"static": true` and cannot be deleted (409). A new
//! enrollment is resolved as the config does (TPM2B_PUBLIC parsed strictly, must be a storage
//! key, optional `registration_id` checked), written to the store, then published.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{blocking, parse_id, AdminState, ApiError, ApiJson, St};
use crate::tpm::{TpmEnrollmentConfig, TpmEnrollments};

fn published(st: &AdminState) -> Result<&TpmEnrollments, ApiError> {
    st.tpm.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TPM enrollments are served only with a running server",
        )
    })
}

fn json(cfg: &TpmEnrollmentConfig, is_static: bool) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(cfg)
        .map_err(|e| ApiError::internal(format!("cannot encode TPM enrollment: {e}")))?;
    if let Value::Object(map) = &mut v {
        map.insert("static".into(), Value::Bool(is_static));
    }
    Ok(v)
}

/// `GET /api/v1/tpm-enrollments`: every published enrollment, by id.
pub(super) async fn list(State(s): State<St>) -> Result<Json<Vec<Value>>, ApiError> {
    blocking(&s, |st| {
        let mut all = published(st)?.list();
        all.sort_by_key(|e| e.def.id);
        all.iter()
            .map(|e| json(&e.to_config(), st.static_tpm_ids.contains(&e.def.id)))
            .collect::<Result<Vec<_>, _>>()
            .map(Json)
    })
    .await
}

/// `GET /api/v1/tpm-enrollments/{id}`.
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("TPM enrollment", &path?.0)?;
    blocking(&s, move |st| match published(st)?.by_id(&id) {
        Some(e) => json(&e.to_config(), st.static_tpm_ids.contains(&id)).map(Json),
        None => Err(ApiError::not_found(format!("no TPM enrollment {id}"))),
    })
    .await
}

/// `POST /api/v1/tpm-enrollments`: 201 with the enrollment (registration id filled in), 409 if
/// the id exists, 400 if the EK is invalid or already enrolled.
pub(super) async fn create(
    State(s): State<St>,
    ApiJson(cfg): ApiJson<TpmEnrollmentConfig>,
) -> Result<Response, ApiError> {
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        let tpm = published(st)?;
        if cfg.endorsement_key_file.is_some() {
            return Err(ApiError::bad_request(
                "endorsement_key (base64 TPM2B_PUBLIC) is required over the admin API; files are read only from the config file",
            ));
        }
        let e = cfg
            .resolve(std::path::Path::new(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let id = e.def.id;
        if tpm.by_id(&id).is_some() {
            return Err(ApiError::conflict(format!(
                "TPM enrollment {id} already exists"
            )));
        }
        if let Some(other) = tpm.get(&e.registration_id) {
            return Err(ApiError::bad_request(format!(
                "EK {} is already enrolled by {}",
                e.registration_id, other.def.id
            )));
        }
        let canonical = e.to_config();
        st.store.put_tpm_enrollment(&canonical)?;
        if let Err(err) = tpm.upsert(e) {
            if let Err(re) = st.store.delete_tpm_enrollment(&id) {
                tracing::error!(enrollment = %id, error = %re, "admin API: could not roll back a TPM enrollment");
            }
            return Err(ApiError::bad_request(err.to_string()));
        }
        tracing::info!(enrollment = %id, registration_id = ?canonical.registration_id, "admin API: TPM enrollment created");
        let mut resp = (StatusCode::CREATED, Json(json(&canonical, false)?)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tpm-enrollments/{id}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    })
    .await
}

/// `DELETE /api/v1/tpm-enrollments/{id}`: 204.
pub(super) async fn delete(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("TPM enrollment", &path?.0)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_tpm_ids.contains(&id) {
            return Err(ApiError::conflict(format!(
                "TPM enrollment {id} is defined in the config file; change it there"
            )));
        }
        let tpm = published(st)?;
        let stored = st.store.delete_tpm_enrollment(&id)?;
        let removed = tpm.remove(&id);
        if !stored && !removed {
            return Err(ApiError::not_found(format!("no TPM enrollment {id}")));
        }
        tracing::info!(enrollment = %id, "admin API: TPM enrollment deleted");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
