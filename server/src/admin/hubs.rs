//! `/api/v1/hubs`: admin-managed hubs as [`HubConfig`] JSON.
//!
//! Config-file hubs are known here by id only: they are listed as `{"id": …, "static": true}` and
//! cannot be changed (409). A hub that an enrollment group names cannot be deleted (409).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use uuid::Uuid;

use super::{blocking, parse_id, AdminState, ApiError, ApiJson, St};
use crate::config::HubConfig;
use crate::provision::Hub;

/// The scheme every gateway URI must have.
const GATEWAY_SCHEME: &str = "coaps+tcp://";

/// Check a hub from a request body; returns its id and the config to persist (canonical id).
fn prepare(mut hub: HubConfig) -> Result<(Uuid, HubConfig), ApiError> {
    let id = Uuid::parse_str(&hub.id)
        .map_err(|_| ApiError::bad_request(format!("hub id {:?} is not a UUID", hub.id)))?;
    hub.id = id.to_string();
    if hub.gateways.is_empty() {
        return Err(ApiError::bad_request(format!(
            "hub {id}: gateways must not be empty"
        )));
    }
    if let Some(bad) = hub
        .gateways
        .iter()
        .find(|g| !g.starts_with(GATEWAY_SCHEME) || g.len() == GATEWAY_SCHEME.len())
    {
        return Err(ApiError::bad_request(format!(
            "hub {id}: gateway {bad:?} is not a {GATEWAY_SCHEME}host:port URI"
        )));
    }
    if let Some(a) = &hub.authorization {
        a.validate(&hub.id)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok((id, hub))
}

fn stored_hub(st: &AdminState, id: Uuid) -> Result<Option<HubConfig>, ApiError> {
    Ok(st
        .store
        .hubs()?
        .into_iter()
        .find(|h| Uuid::parse_str(&h.id).is_ok_and(|x| x == id)))
}

fn static_json(id: Uuid) -> Value {
    serde_json::json!({ "id": id.to_string(), "static": true })
}

fn hub_json(hub: &HubConfig) -> Result<Value, ApiError> {
    serde_json::to_value(hub).map_err(|e| ApiError::internal(format!("cannot encode hub: {e}")))
}

/// The hub as the running server will serve it, its authorization files (signing key, client
/// secret; relative to the config file) read: built before the hub is stored, so that a hub the
/// server cannot use is refused (400) rather than stored. `None` without a running server.
fn runtime_hub(st: &AdminState, hub: &HubConfig) -> Result<Option<Hub>, ApiError> {
    st.provisioner
        .as_ref()
        .map(|p| {
            p.hub_from_config(hub)
                .map_err(|e| ApiError::bad_request(format!("hub {e}")))
        })
        .transpose()
}

/// Hand a stored hub to the running server, so devices get it on their next cloud configuration.
fn apply(st: &AdminState, hub: Option<Hub>) {
    if let (Some(p), Some(hub)) = (&st.provisioner, hub) {
        p.upsert_hub(hub);
    }
}

fn static_conflict(id: Uuid) -> ApiError {
    ApiError::conflict(format!(
        "hub {id} is defined in the config file; change it there"
    ))
}

/// `GET /api/v1/hubs`: config-file hubs (ids only), then stored hubs.
pub(super) async fn list(State(s): State<St>) -> Result<Json<Vec<Value>>, ApiError> {
    blocking(&s, |st| {
        let mut statics: Vec<_> = st.static_hub_ids.iter().copied().collect();
        statics.sort();
        let mut out: Vec<_> = statics.into_iter().map(static_json).collect();
        for h in st.store.hubs()? {
            if Uuid::parse_str(&h.id).is_ok_and(|id| st.static_hub_ids.contains(&id)) {
                continue;
            }
            out.push(hub_json(&h)?);
        }
        Ok(Json(out))
    })
    .await
}

/// `GET /api/v1/hubs/{id}`.
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("hub", &path?.0)?;
    blocking(&s, move |st| {
        if st.static_hub_ids.contains(&id) {
            return Ok(Json(static_json(id)));
        }
        match stored_hub(st, id)? {
            Some(h) => hub_json(&h).map(Json),
            None => Err(ApiError::not_found(format!("no hub {id}"))),
        }
    })
    .await
}

/// `POST /api/v1/hubs`: 201 with the hub, 409 if the id exists.
pub(super) async fn create(
    State(s): State<St>,
    ApiJson(hub): ApiJson<HubConfig>,
) -> Result<Response, ApiError> {
    let (id, hub) = prepare(hub)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_hub_ids.contains(&id) {
            return Err(static_conflict(id));
        }
        if stored_hub(st, id)?.is_some() {
            return Err(ApiError::conflict(format!(
                "hub {id} already exists; PUT /api/v1/hubs/{id} replaces it"
            )));
        }
        let runtime = runtime_hub(st, &hub)?;
        st.store.put_hub(&hub)?;
        apply(st, runtime);
        tracing::info!(hub = %id, "admin API: hub created");
        let mut resp = (StatusCode::CREATED, Json(hub_json(&hub)?)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/hubs/{id}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    })
    .await
}

/// `PUT /api/v1/hubs/{id}`: replace an existing admin-managed hub.
pub(super) async fn replace(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
    ApiJson(hub): ApiJson<HubConfig>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("hub", &path?.0)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_hub_ids.contains(&id) {
            return Err(static_conflict(id));
        }
        if stored_hub(st, id)?.is_none() {
            return Err(ApiError::not_found(format!("no hub {id}")));
        }
        let (body_id, hub) = prepare(hub)?;
        if body_id != id {
            return Err(ApiError::bad_request(format!(
                "the body's id {body_id} differs from the id in the path ({id})"
            )));
        }
        let runtime = runtime_hub(st, &hub)?;
        st.store.put_hub(&hub)?;
        apply(st, runtime);
        tracing::info!(hub = %id, "admin API: hub replaced");
        hub_json(&hub).map(Json)
    })
    .await
}

/// `DELETE /api/v1/hubs/{id}`: 204; 409 while an enrollment group names the hub.
pub(super) async fn delete(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("hub", &path?.0)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_hub_ids.contains(&id) {
            return Err(static_conflict(id));
        }
        let snapshot = st.arena.snapshot();
        if let Some(g) = snapshot.groups().find(|g| g.def.hub_ids.contains(&id)) {
            return Err(ApiError::conflict(format!(
                "hub {id} is used by enrollment group {:?} ({}); remove it there first",
                g.def.name, g.def.id
            )));
        }
        if !st.store.delete_hub(&id)? {
            return Err(ApiError::not_found(format!("no hub {id}")));
        }
        if let Some(p) = &st.provisioner {
            p.remove_hub(&id);
        }
        tracing::info!(hub = %id, "admin API: hub deleted");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
