//! `/api/v1/enrollment-groups`: groups as [`GroupConfig`] JSON with the chain as inline PEM.
//!
//! Config-file groups are listed with `"static": true` and cannot be changed here (409). A new or
//! replaced group is validated as the config does ([`GroupConfig::resolve`], then the full chain and
//! lead checks and the lead's uniqueness against the published groups), written to the store, and
//! only then published to the arena. Should publishing still fail (a conflict only the arena sees),
//! the store is put back as it was and the answer is 400.

use std::path::Path;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use uuid::Uuid;

use super::{blocking, parse_id, AdminState, ApiError, ApiJson, St};
use crate::config::GroupConfig;
use crate::enrollment::{
    validate, CertId, EnrollmentGroup, GroupError, GroupErrorKind, LinkMemo, Snapshot, TrustedCert,
};
use crate::pki::chain_pem;

/// A group definition as [`GroupConfig`], with the chain as inline PEM.
pub(super) fn group_config(def: &EnrollmentGroup) -> GroupConfig {
    GroupConfig {
        id: def.id.to_string(),
        name: def.name.clone(),
        owner: def.owner.clone(),
        certificate_chain: chain_pem(&def.chain),
        lead_certificate: def.lead.clone(),
        expired_certificates_allowed: def.expired_certificates_allowed,
        allow_common_names: def.allow_common_names.clone(),
        deny_common_names: def.deny_common_names.clone(),
        hub_ids: def.hub_ids.iter().map(Uuid::to_string).collect(),
        pre_shared_key: def.pre_shared_key.clone(),
    }
}

/// The JSON of a group; config-file groups carry `"static": true`.
fn group_json(cfg: &GroupConfig, is_static: bool) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(cfg)
        .map_err(|e| ApiError::internal(format!("cannot encode group: {e}")))?;
    if is_static {
        if let Value::Object(map) = &mut v {
            map.insert("static".into(), Value::Bool(true));
        }
    }
    Ok(v)
}

/// Skips signature checks of links the published groups already verified; parses everything else.
struct PublishedLinks<'a>(&'a Snapshot);

impl LinkMemo for PublishedLinks<'_> {
    fn known(&self, child: CertId, parent: Option<CertId>) -> bool {
        self.0.link_known(child, parent)
    }
    fn verified(&self, _child: CertId, _parent: Option<CertId>) {}
    fn parsed(&self, _id: CertId) -> Option<Arc<TrustedCert>> {
        None
    }
    fn remember(&self, _cert: &Arc<TrustedCert>) {}
}

/// Turn a request body into a validated definition, and the config to persist (ids in canonical
/// form). Everything here is a 400.
fn prepare(
    st: &AdminState,
    mut cfg: GroupConfig,
) -> Result<(EnrollmentGroup, GroupConfig), ApiError> {
    // The same test the config loader applies: anything else would be read as a file path.
    if !cfg.certificate_chain.contains("-----BEGIN") {
        return Err(ApiError::bad_request(
            "certificate_chain must be inline PEM over the admin API (file paths are read only from the config file)",
        ));
    }
    let def = cfg
        .resolve(Path::new(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    cfg.id = def.id.to_string();
    cfg.hub_ids = def.hub_ids.iter().map(Uuid::to_string).collect();
    if !def.hub_ids.is_empty() {
        let stored = st.store.hubs()?;
        let known = |id: &Uuid| {
            st.static_hub_ids.contains(id)
                || stored
                    .iter()
                    .any(|h| Uuid::parse_str(&h.id).is_ok_and(|x| x == *id))
        };
        if let Some(missing) = def.hub_ids.iter().find(|id| !known(id)) {
            return Err(ApiError::bad_request(format!(
                "enrollment group {:?} ({}): hub {missing} is not configured",
                def.name, def.id
            )));
        }
    }
    let snapshot = st.arena.snapshot();
    let validated = validate(def, &PublishedLinks(&snapshot))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let lead = validated.lead();
    if let Some(other) = snapshot.leads.get(&lead) {
        if *other != validated.def.id {
            let e = GroupError::new(
                &validated.def,
                GroupErrorKind::DuplicateLead {
                    lead,
                    other: *other,
                },
            );
            return Err(ApiError::bad_request(e.to_string()));
        }
    }
    Ok((validated.def, cfg))
}

/// Persist `cfg`, then publish `def`; if publishing fails, restore the store to `previous`.
fn commit(
    st: &AdminState,
    def: EnrollmentGroup,
    cfg: &GroupConfig,
    previous: Option<GroupConfig>,
) -> Result<(), ApiError> {
    let id = def.id;
    st.store.put_group(cfg)?;
    if let Err(e) = st.arena.upsert(def) {
        let restored = match &previous {
            Some(old) => st.store.put_group(old),
            None => st.store.delete_group(&id).map(|_| ()),
        };
        if let Err(re) = restored {
            tracing::error!(group = %id, error = %re, "admin API: could not roll back a group the arena refused");
        }
        return Err(ApiError::bad_request(e.to_string()));
    }
    Ok(())
}

/// A stored group that is not in the arena (e.g. refused when the server started).
fn stored_group(st: &AdminState, id: Uuid) -> Result<Option<GroupConfig>, ApiError> {
    Ok(st
        .store
        .groups()?
        .into_iter()
        .find(|g| Uuid::parse_str(&g.id).is_ok_and(|x| x == id)))
}

fn static_conflict(id: Uuid) -> ApiError {
    ApiError::conflict(format!(
        "enrollment group {id} is defined in the config file; change it there"
    ))
}

fn created(id: Uuid, body: Value) -> Response {
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/enrollment-groups/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `GET /api/v1/enrollment-groups`: config-file groups (from the arena), then stored groups.
pub(super) async fn list(State(s): State<St>) -> Result<Json<Vec<Value>>, ApiError> {
    blocking(&s, |st| {
        let snapshot = st.arena.snapshot();
        let mut statics: Vec<_> = snapshot
            .groups()
            .filter(|g| st.static_group_ids.contains(&g.def.id))
            .collect();
        statics.sort_by_key(|g| g.def.id);
        let mut out = statics
            .into_iter()
            .map(|g| group_json(&group_config(&g.def), true))
            .collect::<Result<Vec<_>, _>>()?;
        for g in st.store.groups()? {
            if Uuid::parse_str(&g.id).is_ok_and(|id| st.static_group_ids.contains(&id)) {
                continue;
            }
            out.push(group_json(&g, false)?);
        }
        Ok(Json(out))
    })
    .await
}

/// `GET /api/v1/enrollment-groups/{id}`.
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("enrollment group", &path?.0)?;
    blocking(&s, move |st| {
        let is_static = st.static_group_ids.contains(&id);
        if let Some(g) = st.arena.load().group(&id) {
            return group_json(&group_config(&g.def), is_static).map(Json);
        }
        match stored_group(st, id)? {
            Some(cfg) => group_json(&cfg, false).map(Json),
            None => Err(ApiError::not_found(format!("no enrollment group {id}"))),
        }
    })
    .await
}

/// `POST /api/v1/enrollment-groups`: 201 with the group, 409 if the id exists.
pub(super) async fn create(
    State(s): State<St>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Response, ApiError> {
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if let Ok(id) = Uuid::parse_str(&cfg.id) {
            if st.static_group_ids.contains(&id) {
                return Err(static_conflict(id));
            }
            if st.arena.load().group(&id).is_some() {
                return Err(ApiError::conflict(format!(
                    "enrollment group {id} already exists; PUT /api/v1/enrollment-groups/{id} replaces it"
                )));
            }
        }
        let (def, cfg) = prepare(st, cfg)?;
        let id = def.id;
        commit(st, def, &cfg, None)?;
        tracing::info!(group = %id, name = %cfg.name, "admin API: enrollment group created");
        Ok(created(id, group_json(&cfg, false)?))
    })
    .await
}

/// `PUT /api/v1/enrollment-groups/{id}`: replace an existing admin-managed group.
pub(super) async fn replace(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("enrollment group", &path?.0)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_group_ids.contains(&id) {
            return Err(static_conflict(id));
        }
        let previous = match st.arena.load().group(&id) {
            Some(g) => Some(group_config(&g.def)),
            None => stored_group(st, id)?,
        };
        let Some(previous) = previous else {
            return Err(ApiError::not_found(format!("no enrollment group {id}")));
        };
        if Uuid::parse_str(&cfg.id).ok() != Some(id) {
            return Err(ApiError::bad_request(format!(
                "the body's id {:?} differs from the id in the path ({id})",
                cfg.id
            )));
        }
        let (def, cfg) = prepare(st, cfg)?;
        commit(st, def, &cfg, Some(previous))?;
        tracing::info!(group = %id, name = %cfg.name, "admin API: enrollment group replaced");
        group_json(&cfg, false).map(Json)
    })
    .await
}

/// `DELETE /api/v1/enrollment-groups/{id}`: 204.
pub(super) async fn delete(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("enrollment group", &path?.0)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_group_ids.contains(&id) {
            return Err(static_conflict(id));
        }
        let stored = st.store.delete_group(&id)?;
        let published = st.arena.remove(&id);
        if !stored && !published {
            return Err(ApiError::not_found(format!("no enrollment group {id}")));
        }
        tracing::info!(group = %id, "admin API: enrollment group deleted");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
