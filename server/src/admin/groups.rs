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
    validate, Attestation, CertId, EnrollmentGroup, GroupError, GroupErrorKind, LinkMemo, Snapshot,
    TrustedCert, ValidatedGroup,
};
use crate::pki::chain_pem;
use crate::records::StoreError;

/// What the two group collections differ in: `/enrollment-groups` holds X.509 groups,
/// `/tpm-enrollment-groups` TPM groups (selected by EK certificate chain). Same JSON, same rules.
fn noun(kind: Attestation) -> &'static str {
    match kind {
        Attestation::X509 => "enrollment group",
        Attestation::Tpm => "TPM enrollment group",
    }
}

fn collection(kind: Attestation) -> &'static str {
    match kind {
        Attestation::X509 => "/api/v1/enrollment-groups",
        Attestation::Tpm => "/api/v1/tpm-enrollment-groups",
    }
}

fn put_stored(st: &AdminState, kind: Attestation, cfg: &GroupConfig) -> Result<(), StoreError> {
    match kind {
        Attestation::X509 => st.store.put_group(cfg),
        Attestation::Tpm => st.store.put_tpm_group(cfg),
    }
}

fn delete_stored(st: &AdminState, kind: Attestation, id: &Uuid) -> Result<bool, StoreError> {
    match kind {
        Attestation::X509 => st.store.delete_group(id),
        Attestation::Tpm => st.store.delete_tpm_group(id),
    }
}

fn all_stored(st: &AdminState, kind: Attestation) -> Result<Vec<GroupConfig>, ApiError> {
    Ok(match kind {
        Attestation::X509 => st.store.groups()?,
        Attestation::Tpm => st.store.tpm_groups()?,
    })
}

/// A published group of this kind.
fn published(st: &AdminState, kind: Attestation, id: &Uuid) -> Option<Arc<ValidatedGroup>> {
    st.arena
        .load()
        .group(id)
        .filter(|g| g.def.attestation == kind)
        .cloned()
}

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
    kind: Attestation,
) -> Result<(EnrollmentGroup, GroupConfig), ApiError> {
    // The same test the config loader applies: anything else would be read as a file path.
    if !cfg.certificate_chain.contains("-----BEGIN") {
        return Err(ApiError::bad_request(
            "certificate_chain must be inline PEM over the admin API (file paths are read only from the config file)",
        ));
    }
    let def = cfg
        .resolve_as(Path::new(""), kind)
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
                "{} {:?} ({}): hub {missing} is not configured",
                noun(kind),
                def.name,
                def.id
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
    let kind = def.attestation;
    put_stored(st, kind, cfg)?;
    if let Err(e) = st.arena.upsert(def) {
        let restored = match &previous {
            Some(old) => put_stored(st, kind, old),
            None => delete_stored(st, kind, &id).map(|_| ()),
        };
        if let Err(re) = restored {
            tracing::error!(group = %id, error = %re, "admin API: could not roll back a group the arena refused");
        }
        return Err(ApiError::bad_request(e.to_string()));
    }
    Ok(())
}

/// A stored group that is not in the arena (e.g. refused when the server started).
fn stored_group(
    st: &AdminState,
    kind: Attestation,
    id: Uuid,
) -> Result<Option<GroupConfig>, ApiError> {
    Ok(all_stored(st, kind)?
        .into_iter()
        .find(|g| Uuid::parse_str(&g.id).is_ok_and(|x| x == id)))
}

fn static_conflict(kind: Attestation, id: Uuid) -> ApiError {
    ApiError::conflict(format!(
        "{} {id} is defined in the config file; change it there",
        noun(kind)
    ))
}

fn created(kind: Attestation, id: Uuid, body: Value) -> Response {
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{id}", collection(kind))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `GET /api/v1/enrollment-groups` (and `/tpm-enrollment-groups`): config-file groups (from the
/// arena), then stored groups.
async fn list_of(s: St, kind: Attestation) -> Result<Json<Vec<Value>>, ApiError> {
    blocking(&s, move |st| {
        let snapshot = st.arena.snapshot();
        let mut statics: Vec<_> = snapshot
            .groups()
            .filter(|g| st.static_group_ids.contains(&g.def.id) && g.def.attestation == kind)
            .collect();
        statics.sort_by_key(|g| g.def.id);
        let mut out = statics
            .into_iter()
            .map(|g| group_json(&group_config(&g.def), true))
            .collect::<Result<Vec<_>, _>>()?;
        for g in all_stored(st, kind)? {
            if Uuid::parse_str(&g.id).is_ok_and(|id| st.static_group_ids.contains(&id)) {
                continue;
            }
            out.push(group_json(&g, false)?);
        }
        Ok(Json(out))
    })
    .await
}

/// `GET .../{id}`.
async fn get_of(s: St, kind: Attestation, raw_id: String) -> Result<Json<Value>, ApiError> {
    let id = parse_id(noun(kind), &raw_id)?;
    blocking(&s, move |st| {
        let is_static = st.static_group_ids.contains(&id);
        if let Some(g) = published(st, kind, &id) {
            return group_json(&group_config(&g.def), is_static).map(Json);
        }
        match stored_group(st, kind, id)? {
            Some(cfg) => group_json(&cfg, false).map(Json),
            None => Err(ApiError::not_found(format!("no {} {id}", noun(kind)))),
        }
    })
    .await
}

/// `POST`: 201 with the group, 409 if the id exists (as a group of either kind).
async fn create_of(s: St, kind: Attestation, cfg: GroupConfig) -> Result<Response, ApiError> {
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if let Ok(id) = Uuid::parse_str(&cfg.id) {
            if st.static_group_ids.contains(&id) {
                return Err(static_conflict(kind, id));
            }
            if st.arena.load().group(&id).is_some() {
                return Err(ApiError::conflict(format!(
                    "group {id} already exists; PUT {}/{id} replaces a {}",
                    collection(kind),
                    noun(kind)
                )));
            }
        }
        let (def, cfg) = prepare(st, cfg, kind)?;
        let id = def.id;
        commit(st, def, &cfg, None)?;
        tracing::info!(group = %id, name = %cfg.name, kind = noun(kind), "admin API: group created");
        Ok(created(kind, id, group_json(&cfg, false)?))
    })
    .await
}

/// `PUT .../{id}`: replace an existing admin-managed group of this kind.
async fn replace_of(
    s: St,
    kind: Attestation,
    raw_id: String,
    cfg: GroupConfig,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(noun(kind), &raw_id)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_group_ids.contains(&id) {
            return Err(static_conflict(kind, id));
        }
        let previous = match published(st, kind, &id) {
            Some(g) => Some(group_config(&g.def)),
            None => stored_group(st, kind, id)?,
        };
        let Some(previous) = previous else {
            return Err(ApiError::not_found(format!("no {} {id}", noun(kind))));
        };
        if Uuid::parse_str(&cfg.id).ok() != Some(id) {
            return Err(ApiError::bad_request(format!(
                "the body's id {:?} differs from the id in the path ({id})",
                cfg.id
            )));
        }
        let (def, cfg) = prepare(st, cfg, kind)?;
        commit(st, def, &cfg, Some(previous))?;
        tracing::info!(group = %id, name = %cfg.name, kind = noun(kind), "admin API: group replaced");
        group_json(&cfg, false).map(Json)
    })
    .await
}

/// `DELETE .../{id}`: 204.
async fn delete_of(s: St, kind: Attestation, raw_id: String) -> Result<StatusCode, ApiError> {
    let id = parse_id(noun(kind), &raw_id)?;
    let _w = s.writes.lock().await;
    blocking(&s, move |st| {
        if st.static_group_ids.contains(&id) {
            return Err(static_conflict(kind, id));
        }
        let stored = delete_stored(st, kind, &id)?;
        let published = published(st, kind, &id).is_some() && st.arena.remove(&id);
        if !stored && !published {
            return Err(ApiError::not_found(format!("no {} {id}", noun(kind))));
        }
        tracing::info!(group = %id, kind = noun(kind), "admin API: group deleted");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `GET /api/v1/enrollment-groups`.
pub(super) async fn list(State(s): State<St>) -> Result<Json<Vec<Value>>, ApiError> {
    list_of(s, Attestation::X509).await
}

/// `GET /api/v1/enrollment-groups/{id}`.
pub(super) async fn get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    get_of(s, Attestation::X509, path?.0).await
}

/// `POST /api/v1/enrollment-groups`.
pub(super) async fn create(
    State(s): State<St>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Response, ApiError> {
    create_of(s, Attestation::X509, cfg).await
}

/// `PUT /api/v1/enrollment-groups/{id}`.
pub(super) async fn replace(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Json<Value>, ApiError> {
    replace_of(s, Attestation::X509, path?.0, cfg).await
}

/// `DELETE /api/v1/enrollment-groups/{id}`.
pub(super) async fn delete(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    delete_of(s, Attestation::X509, path?.0).await
}

/// `GET /api/v1/tpm-enrollment-groups`.
pub(super) async fn tpm_list(State(s): State<St>) -> Result<Json<Vec<Value>>, ApiError> {
    list_of(s, Attestation::Tpm).await
}

/// `GET /api/v1/tpm-enrollment-groups/{id}`.
pub(super) async fn tpm_get(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    get_of(s, Attestation::Tpm, path?.0).await
}

/// `POST /api/v1/tpm-enrollment-groups`.
pub(super) async fn tpm_create(
    State(s): State<St>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Response, ApiError> {
    create_of(s, Attestation::Tpm, cfg).await
}

/// `PUT /api/v1/tpm-enrollment-groups/{id}`.
pub(super) async fn tpm_replace(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
    ApiJson(cfg): ApiJson<GroupConfig>,
) -> Result<Json<Value>, ApiError> {
    replace_of(s, Attestation::Tpm, path?.0, cfg).await
}

/// `DELETE /api/v1/tpm-enrollment-groups/{id}`.
pub(super) async fn tpm_delete(
    State(s): State<St>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    delete_of(s, Attestation::Tpm, path?.0).await
}
