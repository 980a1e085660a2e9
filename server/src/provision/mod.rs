//! Transport-independent provisioning logic: what the server answers on each device resource of
//! the protocol spec once a session has matched an enrollment group.
//!
//! The connection loop decodes a request body, calls the [`Provisioner`] method of the resource
//! with the session's [`EnrollmentGroup`], encodes the result in the Accepted format and maps a
//! [`ProvisionError`] to its CoAP code. One module per resource:
//!
//! | resource | method |
//! |---|---|
//! | `GET /x.plgd.dev/time` | [`Provisioner::time`] |
//! | `GET /api/v1/provisioning/ownership` | [`Provisioner::ownership`] |
//! | `POST /api/v1/provisioning/cloud-configuration` | [`Provisioner::cloud_configuration`] |
//! | `POST /api/v1/provisioning/credentials` | [`Provisioner::credentials`] |
//! | `GET /api/v1/provisioning/acls` | [`Provisioner::acls`] |

mod acls;
mod clock;
mod cloud_configuration;
mod credentials;
mod csr;
mod error;
mod identity;
mod issued;
mod ownership;
mod registry;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::config::HubConfig;
use crate::enrollment::CertId;
#[cfg(doc)]
use crate::enrollment::EnrollmentGroup;
use crate::token::{Authority, Tokens};

pub use error::ProvisionError;
pub use identity::IdentityCa;
pub use issued::{IssuedCredentials, OCF_IDENTITY_EKU};
pub use registry::{
    admits, holders_from_json, holders_to_json, Claim, DirtyIdentity, IdHeld, Identities,
    IdentityHolder, SpkiHash,
};

/// Validity of device identity certificates callers use unless configured otherwise: 365 days.
pub const DEFAULT_IDENTITY_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A hub (plgd cloud) devices are provisioned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// Hub id, sent to the device as `sid` and as the id of each server entry.
    pub id: Uuid,
    /// Human name (logs only).
    pub name: String,
    /// Gateway URIs, `coaps+tcp://host:port`; the first is the default.
    pub gateways: Vec<String>,
    /// Issues the access tokens of the hub's devices.
    pub authorization: Arc<Authority>,
}

impl Hub {
    /// A hub whose tokens come from the default provider (`jwt`, the server's generated key).
    pub fn new(id: Uuid, name: impl Into<String>, gateways: Vec<String>) -> Self {
        Self {
            id,
            name: name.into(),
            gateways,
            authorization: Arc::new(Authority::default()),
        }
    }

    /// A `[[hub]]` table (or a stored hub) as a hub, with the files of its authorization section
    /// read relative to `base`; the error names the bad id or file.
    pub fn from_config(h: &HubConfig, base: &Path) -> Result<Self, String> {
        let id = Uuid::parse_str(&h.id).map_err(|_| format!("{:?}: id is not a UUID", h.id))?;
        let authorization = Authority::from_config(h.authorization.as_ref(), &h.id, base)?;
        Ok(Hub {
            id,
            name: h.name.clone().unwrap_or_default(),
            gateways: h.gateways.clone(),
            authorization: Arc::new(authorization),
        })
    }
}

/// Who asks for credentials, besides the group its session is in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// The device's provisioning record (fingerprint of its manufacturer certificate), if known.
    pub record: Option<CertId>,
    /// Set when the session authenticated with the identity certificate this DPS issued: the
    /// device id it holds. Such a session may renew credentials (with the same or a new key) for
    /// this device id only.
    pub identity: Option<Uuid>,
    /// The name the enrollment's allow / deny lists judged (manufacturer CN or TPM registration
    /// id); `None` for an identity session, whose holder keeps the name it attested with.
    pub name: Option<String>,
}

/// The owner UUID of a group owner: the owner itself if it parses as a UUID, else
/// UUIDv5 in the URL namespace over the owner's bytes.
pub fn owner_uuid(owner: &str) -> Uuid {
    Uuid::try_parse(owner).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_URL, owner.as_bytes()))
}

/// Answers the provisioning resources; one instance is shared by all connections (`Arc`).
pub struct Provisioner {
    identity_ca: IdentityCa,
    /// Hubs by id; replaced as a whole on every admin update, read without locking.
    hubs: ArcSwap<HashMap<Uuid, Hub>>,
    identity_validity: Duration,
    issued: Arc<Identities>,
    tokens: Tokens,
    /// Files named by hubs (signing keys, client secrets) are relative to it.
    config_dir: PathBuf,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("identity_ca", &self.identity_ca)
            .field("hubs", &self.hubs.load().len())
            .field("identity_validity", &self.identity_validity)
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// A provisioner signing identity certificates with `identity_ca`, valid for
    /// `identity_validity` (devices refuse certificates valid for an hour or less; see
    /// [`DEFAULT_IDENTITY_VALIDITY`]). When two hubs share an id, the first one wins.
    pub fn new(identity_ca: IdentityCa, hubs: Vec<Hub>, identity_validity: Duration) -> Self {
        Self::with_identities(
            identity_ca,
            hubs,
            identity_validity,
            Arc::new(Identities::new()),
        )
    }

    /// As [`Provisioner::new`], over issued identities loaded from the store (and shared with
    /// the TLS verifier and the record writer).
    pub fn with_identities(
        identity_ca: IdentityCa,
        hubs: Vec<Hub>,
        identity_validity: Duration,
        identities: Arc<Identities>,
    ) -> Self {
        let mut by_id = HashMap::with_capacity(hubs.len());
        for hub in hubs {
            by_id.entry(hub.id).or_insert(hub);
        }
        Self {
            identity_ca,
            hubs: ArcSwap::from_pointee(by_id),
            identity_validity,
            issued: identities,
            tokens: Tokens::new(),
            config_dir: PathBuf::from("."),
        }
    }

    /// Resolve the files named by hubs added later ([`Provisioner::hub_from_config`]) against
    /// `dir` (the config file's directory).
    pub fn with_config_dir(mut self, dir: &Path) -> Self {
        self.config_dir = dir.to_owned();
        self
    }

    /// A hub table (from the admin API) as a hub, its files resolved against the config's
    /// directory.
    pub fn hub_from_config(&self, h: &HubConfig) -> Result<Hub, String> {
        Hub::from_config(h, &self.config_dir)
    }

    /// Token issuing: issuer, generated key, counters.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The public keys of every `jwt` hub, as a JWK set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        let hubs = self.hubs.load();
        self.tokens.jwks(hubs.values().map(|h| &*h.authorization))
    }

    /// The identity CA.
    pub fn identity_ca(&self) -> &IdentityCa {
        &self.identity_ca
    }

    /// The issued identities.
    pub fn identities(&self) -> &Arc<Identities> {
        &self.issued
    }

    /// The configured hub with this id.
    pub fn hub(&self, id: &Uuid) -> Option<Hub> {
        self.hubs.load().get(id).cloned()
    }

    /// Every hub, ordered by id.
    pub fn hubs(&self) -> Vec<Hub> {
        let mut hubs: Vec<Hub> = self.hubs.load().values().cloned().collect();
        hubs.sort_by_key(|h| h.id);
        hubs
    }

    /// Add a hub, or replace the hub with the same id. Sessions already answering keep the hubs
    /// they loaded; later requests see the new set.
    pub fn upsert_hub(&self, hub: Hub) {
        self.hubs.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(hub.id, hub.clone());
            next
        });
    }

    /// Remove a hub; `false` if there was none with this id. Groups naming it simply no longer
    /// get it (a group left without a usable hub answers cloud-configuration with 4.00).
    pub fn remove_hub(&self, id: &Uuid) -> bool {
        let mut removed = false;
        self.hubs.rcu(|current| {
            let mut next = HashMap::clone(current);
            removed = next.remove(id).is_some();
            next
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_uuid_keeps_a_uuid_owner() {
        let id = Uuid::new_v4();
        assert_eq!(owner_uuid(&id.to_string()), id);
    }

    #[test]
    fn owner_uuid_hashes_other_owners_into_the_url_namespace() {
        let got = owner_uuid("acme");
        assert_eq!(got, Uuid::new_v5(&Uuid::NAMESPACE_URL, b"acme"));
        assert_eq!(got.get_version_num(), 5);
        assert_ne!(owner_uuid("acme"), owner_uuid("Acme"));
        // An upper-case UUID is still a UUID (as for Go's uuid.Parse).
        let id = Uuid::new_v4();
        assert_eq!(owner_uuid(&id.to_string().to_uppercase()), id);
    }

    #[test]
    fn errors_map_to_their_class_and_diagnostic() {
        assert!(ProvisionError::BadRequest("x".into()).is_client_error());
        assert!(ProvisionError::NoHub("y".into()).is_client_error());
        let e = ProvisionError::Internal("z".into());
        assert!(!e.is_client_error());
        assert_eq!(e.diagnostic(), "z");
        assert_eq!(e.to_string(), "z");
    }

    #[test]
    fn provisioner_is_send_and_sync() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Provisioner>();
    }

    #[test]
    fn first_hub_wins_on_duplicate_ids() {
        let id = Uuid::new_v4();
        let hub = |name: &str| Hub::new(id, name, vec!["coaps+tcp://a:5684".into()]);
        let p = test_support::provisioner(vec![hub("first"), hub("second")]);
        assert_eq!(p.hub(&id).map(|h| h.name), Some("first".to_owned()));
    }

    #[test]
    fn hubs_are_added_replaced_and_removed_at_run_time() {
        let p = test_support::provisioner(Vec::new());
        let id = Uuid::new_v4();
        let hub = |name: &str| Hub::new(id, name, vec!["coaps+tcp://a:5684".into()]);
        assert!(p.hubs().is_empty());
        p.upsert_hub(hub("one"));
        p.upsert_hub(hub("two"));
        assert_eq!(p.hubs(), vec![hub("two")]);
        assert!(p.remove_hub(&id));
        assert!(!p.remove_hub(&id));
        assert!(p.hub(&id).is_none());
        let mut bad = HubConfig {
            id: "nope".into(),
            gateways: vec![],
            name: None,
            authorization: None,
        };
        assert!(p.hub_from_config(&bad).is_err_and(|e| e.contains("nope")));
        bad.id = id.to_string();
        bad.authorization = Some(crate::token::AuthorizationConfig {
            provider: crate::token::ProviderKind::Oauth2,
            ..Default::default()
        });
        assert!(p
            .hub_from_config(&bad)
            .is_err_and(|e| e.contains("authorization.oauth2")));
    }
}
