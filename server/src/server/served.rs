//! What a server serves: the config's enrollment groups, hubs and TPM enrollments merged with the
//! store's (at start-up, and again when a shared store changed), a stored id equal to a
//! configured one refused.

use std::path::Path;

use super::error::ServerError;
use crate::config::Config;
use crate::enrollment::{Attestation, EnrollmentGroup};
use crate::provision::Hub;
use crate::records::Persistence;
use crate::store::Store;
use crate::tpm::TpmEnrollment;

/// Groups and hubs of the config and of the store, together; a stored id equal to a configured
/// one is an error naming both.
fn merged_groups_and_hubs(
    config: &Config,
    store: &Store,
    location: &str,
) -> Result<(Vec<EnrollmentGroup>, Vec<Hub>), ServerError> {
    let hubs = merged_hubs(config, store, location)?;
    for g in &config.groups {
        if let Some(missing) = g
            .hub_ids
            .iter()
            .find(|id| !hubs.iter().any(|h| h.id == **id))
        {
            return Err(ServerError::Hub(format!(
                "{missing} named by enrollment group {:?} is not configured",
                g.name
            )));
        }
    }
    let groups = merged_groups(config, store, location, &hubs)?;
    Ok((groups, hubs))
}

/// The configured hubs, then the stored ones (none with a configured one's id).
fn merged_hubs(config: &Config, store: &Store, location: &str) -> Result<Vec<Hub>, ServerError> {
    let base = config_dir(config);
    let mut hubs = config
        .file
        .hub
        .iter()
        .map(|h| Hub::from_config(h, base).map_err(ServerError::Hub))
        .collect::<Result<Vec<_>, ServerError>>()?;
    let configured_hubs = hubs.len();
    let stored_hubs = store.hubs().map_err(|reason| ServerError::Store {
        location: location.to_owned(),
        reason,
    })?;
    for stored in stored_hubs {
        let hub = Hub::from_config(&stored, base)
            .map_err(|e| ServerError::Hub(format!("in the store: {e}")))?;
        if let Some(c) = hubs[..configured_hubs].iter().find(|c| c.id == hub.id) {
            return Err(ServerError::DuplicateId {
                kind: "hub",
                id: hub.id,
                stored: format!("{:?}", hub.name),
                configured: format!("{:?}", c.name),
            });
        }
        hubs.push(hub);
    }
    Ok(hubs)
}

/// The configured enrollment groups, then the stored X.509 and TPM ones (none with a configured
/// one's id; a stored group may name a hub since removed, which is only warned about).
fn merged_groups(
    config: &Config,
    store: &Store,
    location: &str,
    hubs: &[Hub],
) -> Result<Vec<EnrollmentGroup>, ServerError> {
    let store_err = |reason| ServerError::Store {
        location: location.to_owned(),
        reason,
    };
    let mut groups = config.groups.clone();
    let base = config.path.parent().unwrap_or(Path::new("."));
    let stored_groups = store
        .groups()
        .map_err(store_err)?
        .into_iter()
        .map(|g| (g, Attestation::X509))
        .chain(
            store
                .tpm_groups()
                .map_err(store_err)?
                .into_iter()
                .map(|g| (g, Attestation::Tpm)),
        );
    for (stored, kind) in stored_groups {
        let group = stored
            .resolve_as(base, kind)
            .map_err(|reason| ServerError::StoredGroup {
                location: location.to_owned(),
                reason,
            })?;
        if let Some(c) = config.groups.iter().find(|c| c.id == group.id) {
            return Err(ServerError::DuplicateId {
                kind: "enrollment group",
                id: group.id,
                stored: format!("{:?}", group.name),
                configured: format!("{:?}", c.name),
            });
        }
        // The admin API may have removed a hub a stored group still names: serve the group
        // without it rather than refuse to start.
        for missing in group
            .hub_ids
            .iter()
            .filter(|id| !hubs.iter().any(|h| h.id == **id))
        {
            tracing::warn!(group = %group.id, hub = %missing, "stored enrollment group names a hub that does not exist");
        }
        groups.push(group);
    }
    Ok(groups)
}

/// What a server serves: the config's groups, hubs and individual TPM enrollments with the
/// store's.
pub(crate) struct Served {
    /// Enrollment groups (X.509 and TPM).
    pub groups: Vec<EnrollmentGroup>,
    /// Hubs.
    pub hubs: Vec<Hub>,
    /// Individual TPM enrollments.
    pub tpm: Vec<TpmEnrollment>,
}

/// The config's groups, hubs and TPM enrollments with the store's (at start-up, and again when
/// a shared store changed).
pub(crate) fn served(config: &Config, store: &Store) -> Result<Served, ServerError> {
    let location = store.location();
    let store_err = |reason| ServerError::Store {
        location: location.to_owned(),
        reason,
    };
    let (groups, hubs) = merged_groups_and_hubs(config, store, location)?;
    let mut tpm = config.tpm_enrollments.clone();
    for stored in store.tpm_enrollments().map_err(store_err)? {
        let e = stored.resolve(Path::new(""))?;
        if let Some(c) = tpm.iter().find(|c| c.def.id == e.def.id) {
            return Err(ServerError::DuplicateId {
                kind: "TPM enrollment",
                id: e.def.id,
                stored: format!("{:?}", e.def.name),
                configured: format!("{:?}", c.def.name),
            });
        }
        tpm.push(e);
    }
    Ok(Served { groups, hubs, tpm })
}

/// The directory the config's relative paths start from.
pub(super) fn config_dir(config: &Config) -> &Path {
    config.path.parent().unwrap_or(Path::new("."))
}
