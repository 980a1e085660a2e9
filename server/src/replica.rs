//! A replica follows its shared store: every change another replica (or this one) commits —
//! enrollment groups, hubs, individual TPM enrollments, device ids' identities — is applied to
//! this server's arena, hubs, TPM enrollments and identities. The store announces changes as
//! they commit ([`Change`]); after every (re)connection to it, and on any announcement it cannot
//! read, everything is read again, so a lost announcement cannot leave a replica stale.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::config::Config;
use crate::server::{served, Server, ServerError};
use crate::store::Change;

/// What a burst of changes asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Work {
    /// Read everything again.
    resync: bool,
    /// Read groups, hubs and TPM enrollments again.
    config: bool,
    /// Read these device ids' identities again.
    devices: HashSet<Uuid>,
}

impl Work {
    fn add(&mut self, change: Change) {
        match change {
            Change::Resync => self.resync = true,
            Change::Config => self.config = true,
            Change::Identity(d) => {
                self.devices.insert(d);
            }
        }
    }
}

/// Follow `server`'s store when it is shared (`None` otherwise): a task that applies every
/// change until the server goes away.
pub fn follow(server: Arc<Server>, config: Config) -> Option<tokio::task::JoinHandle<()>> {
    let mut changes = server.store().changes()?;
    Some(tokio::spawn(async move {
        let config = Arc::new(config);
        while let Some(first) = changes.recv().await {
            let mut work = Work::default();
            work.add(first);
            while let Ok(next) = changes.try_recv() {
                work.add(next);
            }
            let (server, config) = (server.clone(), config.clone());
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || apply(&server, &config, &work)).await {
                Ok(Ok(())) => {
                    tracing::debug!(elapsed = ?started.elapsed(), "applied store changes")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot apply the shared store's changes")
                }
                Err(e) => tracing::error!(error = %e, "applying the shared store's changes failed"),
            }
        }
    }))
}

/// Apply one burst of changes (on a blocking thread: the store is read).
fn apply(server: &Server, config: &Config, work: &Work) -> Result<(), ServerError> {
    let store_err = |reason| ServerError::Store {
        location: server.store().location().to_owned(),
        reason,
    };
    if work.resync || work.config {
        reload(server, config)?;
    }
    let identities = server.provisioner().identities();
    if work.resync {
        identities.replace_from_store(server.store().identities().map_err(store_err)?);
        tracing::info!("resynchronised with the shared store");
        return Ok(());
    }
    for device in &work.devices {
        identities.set_from_store(
            *device,
            server.store().identity(*device).map_err(store_err)?,
        );
    }
    Ok(())
}

/// Serve the groups, hubs and TPM enrollments of the config and the store as they are now.
fn reload(server: &Server, config: &Config) -> Result<(), ServerError> {
    let now = served(config, server.store())?;
    server.arena().replace_all(now.groups)?;
    let provisioner = server.provisioner();
    let keep: HashSet<Uuid> = now.hubs.iter().map(|h| h.id).collect();
    for gone in provisioner.hubs().iter().filter(|h| !keep.contains(&h.id)) {
        provisioner.remove_hub(&gone.id);
    }
    for hub in now.hubs {
        provisioner.upsert_hub(hub);
    }
    server.attestor().enrollments().replace_all(now.tpm)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_changes_is_one_piece_of_work() {
        let mut work = Work::default();
        let d = Uuid::from_u128(3);
        for c in [Change::Identity(d), Change::Identity(d), Change::Config] {
            work.add(c);
        }
        assert!(work.config && !work.resync);
        assert_eq!(work.devices, HashSet::from([d]));
        work.add(Change::Resync);
        assert!(work.resync);
    }
}
