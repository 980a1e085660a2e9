//! `/api/v1/identities/{device-id}`: which manufacturer identity holds a device id, and its
//! release by an operator.
//!
//! A device id belongs to the manufacturer identity (manufacturer certificate or TPM EK) that
//! first obtained it; no other identity can get it. `DELETE` releases it: its identity
//! certificates are no longer recognised and any identity may obtain the id again. The release
//! is committed before it is acknowledged.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::{parse_id, AdminState, ApiError, St};
use crate::provision::{IdentityHolder, Provisioner};

/// One holder of a device id, as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct HolderView {
    owner: String,
    /// `sha256:<hex>` of the manufacturer certificate (or TPM EK): the provisioning record.
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    /// The attested name (manufacturer CN or TPM registration id).
    name: String,
    /// `sha256:<hex>` of the identity certificate issued last.
    certificate: String,
    group: String,
    issued_at: String,
    not_after: String,
}

impl From<&IdentityHolder> for HolderView {
    fn from(h: &IdentityHolder) -> Self {
        let time = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            owner: h.owner.to_string(),
            record: h.record.map(|r| r.to_string()),
            name: h.name.clone(),
            certificate: h.certificate.to_string(),
            group: h.group.to_string(),
            issued_at: time(h.issued_at),
            not_after: time(h.not_after),
        }
    }
}

fn provisioner(st: &AdminState) -> Result<&Provisioner, ApiError> {
    st.provisioner.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "identities are served only with a running server",
        )
    })
}

/// `GET /api/v1/identities/{device-id}`: the holders of a device id (one per owner).
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Vec<HolderView>>, ApiError> {
    let id = parse_id("device", &path?.0)?;
    let holders = provisioner(&s.state)?.identities().holders(&id);
    if holders.is_empty() {
        return Err(ApiError::not_found(format!("device id {id} is not held")));
    }
    Ok(Json(holders.iter().map(HolderView::from).collect()))
}

/// `DELETE /api/v1/identities/{device-id}`: release the id (204), committed before the answer;
/// 404 when nobody holds it.
pub(super) async fn release(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("device", &path?.0)?;
    let _write = s.writes.lock().await;
    let released = provisioner(&s.state)?.identities().release(&id);
    if released.is_empty() {
        return Err(ApiError::not_found(format!("device id {id} is not held")));
    }
    let Some(records) = &s.state.records else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "identities are stored only with a running server",
        ));
    };
    records.flush().await?;
    tracing::info!(device = %id, holders = released.len(), "device id released by an operator");
    Ok(StatusCode::NO_CONTENT)
}
