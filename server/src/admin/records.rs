//! `/api/v1/provisioning-records`: one record per device, in key order, paged.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{blocking, ApiError, St};
use crate::records::ProvisioningRecord;

/// Records per page unless `limit` says otherwise.
pub(super) const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`.
pub(super) const MAX_LIMIT: usize = 1000;

/// The query of a list request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Start after this key.
    after: Option<String>,
    /// Page size, 1..=1000.
    limit: Option<usize>,
}

/// One page: the records and, when the page is full, the key to pass as `after` for the next.
#[derive(Debug, Serialize)]
pub(super) struct Page {
    records: Vec<ProvisioningRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /api/v1/provisioning-records?after=<key>&limit=<n>`.
pub(super) async fn list(
    State(s): State<St>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )));
    }
    blocking(&s, move |st| {
        let records = st.store.records(q.after.as_deref(), limit)?;
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| r.key.clone()))
            .flatten();
        Ok(Json(Page { records, next }))
    })
    .await
}

/// `GET /api/v1/provisioning-records/{key-or-device-id}`.
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<ProvisioningRecord>, ApiError> {
    let key = path?.0;
    blocking(&s, move |st| match st.store.record(&key)? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(format!(
            "no provisioning record for {key:?}"
        ))),
    })
    .await
}
