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
mod identity;
mod ownership;
mod registry;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

#[cfg(doc)]
use crate::enrollment::EnrollmentGroup;

pub use credentials::{IssuedCredentials, OCF_IDENTITY_EKU};
pub use identity::IdentityCa;

use registry::IssuedRegistry;

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
}

/// Why a provisioning request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The request is invalid: answer 4.00 with this diagnostic.
    #[error("{0}")]
    BadRequest(String),
    /// The enrollment group has no usable hub: answer 4.00 with this diagnostic.
    #[error("{0}")]
    NoHub(String),
    /// A server-side failure: answer 5.00 with this diagnostic.
    #[error("{0}")]
    Internal(String),
}

impl ProvisionError {
    /// The short diagnostic for the error payload.
    pub fn diagnostic(&self) -> &str {
        match self {
            ProvisionError::BadRequest(m)
            | ProvisionError::NoHub(m)
            | ProvisionError::Internal(m) => m,
        }
    }

    /// Whether the device is at fault (4.00) rather than the server (5.00).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ProvisionError::Internal(_))
    }
}

/// The owner UUID of a group owner: the owner itself if it parses as a UUID, else
/// UUIDv5 in the URL namespace over the owner's bytes.
pub fn owner_uuid(owner: &str) -> Uuid {
    Uuid::try_parse(owner).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_URL, owner.as_bytes()))
}

/// Answers the provisioning resources; one instance is shared by all connections (`Arc`).
pub struct Provisioner {
    identity_ca: IdentityCa,
    hubs: HashMap<Uuid, Hub>,
    identity_validity: Duration,
    issued: IssuedRegistry,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("identity_ca", &self.identity_ca)
            .field("hubs", &self.hubs.len())
            .field("identity_validity", &self.identity_validity)
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// A provisioner signing identity certificates with `identity_ca`, valid for
    /// `identity_validity` (devices refuse certificates valid for an hour or less; see
    /// [`DEFAULT_IDENTITY_VALIDITY`]). When two hubs share an id, the first one wins.
    pub fn new(identity_ca: IdentityCa, hubs: Vec<Hub>, identity_validity: Duration) -> Self {
        let mut by_id = HashMap::with_capacity(hubs.len());
        for hub in hubs {
            by_id.entry(hub.id).or_insert(hub);
        }
        Self {
            identity_ca,
            hubs: by_id,
            identity_validity,
            issued: IssuedRegistry::default(),
        }
    }

    /// The identity CA.
    pub fn identity_ca(&self) -> &IdentityCa {
        &self.identity_ca
    }

    /// The configured hub with this id.
    pub fn hub(&self, id: &Uuid) -> Option<&Hub> {
        self.hubs.get(id)
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
        let hub = |name: &str| Hub {
            id,
            name: name.into(),
            gateways: vec!["coaps+tcp://a:5684".into()],
        };
        let p = test_support::provisioner(vec![hub("first"), hub("second")]);
        assert_eq!(p.hub(&id).map(|h| h.name.as_str()), Some("first"));
    }
}
