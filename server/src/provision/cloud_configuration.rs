//! `POST /api/v1/provisioning/cloud-configuration`: which hub the device connects to.

use std::collections::HashMap;

use uuid::Uuid;

use super::error::ProvisionError;
use super::{owner_uuid, Hub, Provisioner};
use crate::enrollment::EnrollmentGroup;
use crate::proto::body::{CloudConfigurationRequest, CloudConfigurationResponse, CloudServer};
use crate::token::TokenInfo;

/// Authorization provider name sent as `apn` (the device requires the key).
pub const AUTHORIZATION_PROVIDER: &str = "plgd";

impl Provisioner {
    /// The hub for `group`: the one the request's `selectedGateway.id` names if it is one of the
    /// group's usable hubs, else the group's first usable hub. A hub is usable when it is
    /// configured and has at least one gateway.
    fn select_hub<'h>(
        hubs: &'h HashMap<Uuid, Hub>,
        group: &EnrollmentGroup,
        req: &CloudConfigurationRequest,
    ) -> Result<&'h Hub, ProvisionError> {
        let usable = |id: &Uuid| hubs.get(id).filter(|hub| !hub.gateways.is_empty());
        let selected = req
            .selected_gateway
            .as_ref()
            .and_then(|g| Uuid::try_parse(&g.id).ok())
            .filter(|id| group.hub_ids.contains(id))
            .and_then(|id| usable(&id));
        selected
            .or_else(|| group.hub_ids.iter().find_map(usable))
            .ok_or_else(|| {
                ProvisionError::NoHub(format!(
                    "enrollment group {:?} has no configured hub with a gateway",
                    group.name
                ))
            })
    }

    /// The cloud configuration: the selected hub's id as `sid`, the requested gateway as `cis`
    /// if it is one of that hub's gateways (else the hub's first), every gateway of the hub as an
    /// alternative server, and an access token from the hub's authorization provider for the
    /// group's owner and the request's `di` as `at` (with what the record keeps about it). A
    /// provider failure is [`ProvisionError::Unavailable`].
    pub async fn cloud_configuration(
        &self,
        group: &EnrollmentGroup,
        req: &CloudConfigurationRequest,
    ) -> Result<(CloudConfigurationResponse, TokenInfo), ProvisionError> {
        // The hub is copied out so that no snapshot guard is held while the token is awaited.
        let hub = Self::select_hub(&self.hubs.load(), group, req)?.clone();
        let hub = &hub;
        let requested = req
            .selected_gateway
            .as_ref()
            .map(|g| g.uri.as_str())
            .filter(|uri| hub.gateways.iter().any(|g| g == uri));
        let cis = match requested.or_else(|| hub.gateways.first().map(String::as_str)) {
            Some(uri) => uri.to_owned(),
            None => {
                return Err(ProvisionError::NoHub(format!(
                    "hub {} has no gateway",
                    hub.id
                )))
            }
        };
        let authority = &hub.authorization;
        let issued = self
            .tokens
            .issue(authority, hub.id, owner_uuid(&group.owner), &req.di)
            .await
            .map_err(|e| ProvisionError::Unavailable {
                retry_after_s: authority.retry_after_s(),
                reason: format!("no access token from hub {}: {e}", hub.id),
            })?;
        let sid = hub.id.to_string();
        let response = CloudConfigurationResponse {
            apn: AUTHORIZATION_PROVIDER.to_owned(),
            cis,
            at: issued.token,
            servers: hub
                .gateways
                .iter()
                .map(|uri| CloudServer {
                    id: sid.clone(),
                    uri: uri.clone(),
                })
                .collect(),
            sid,
        };
        Ok((response, issued.info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::body::{to_cbor, SelectedGateway};
    use crate::provision::test_support::{group, provisioner};

    fn hub(gateways: &[&str]) -> Hub {
        Hub::new(
            Uuid::new_v4(),
            "hub",
            gateways.iter().map(|g| g.to_string()).collect(),
        )
    }

    /// The configuration alone (the token is checked where it matters).
    async fn config(
        p: &Provisioner,
        g: &EnrollmentGroup,
        req: &CloudConfigurationRequest,
    ) -> Result<CloudConfigurationResponse, ProvisionError> {
        p.cloud_configuration(g, req).await.map(|(resp, _)| resp)
    }

    fn request(selected: Option<(&Uuid, &str)>) -> CloudConfigurationRequest {
        CloudConfigurationRequest {
            di: Uuid::new_v4().to_string(),
            selected_gateway: selected.map(|(id, uri)| SelectedGateway {
                id: id.to_string(),
                uri: uri.into(),
            }),
        }
    }

    #[tokio::test]
    async fn first_configured_hub_of_the_group_is_the_default() {
        let (a, b) = (
            hub(&["coaps+tcp://a:5684", "coaps+tcp://a2:5684"]),
            hub(&["coaps+tcp://b:5684"]),
        );
        let (a_id, b_id) = (a.id, b.id);
        let p = provisioner(vec![a, b]);
        let mut g = group("acme");
        g.hub_ids = vec![Uuid::new_v4(), a_id, b_id];
        let resp = config(&p, &g, &request(None)).await.expect("config");
        assert_eq!(resp.apn, "plgd");
        assert_eq!(resp.sid, a_id.to_string());
        assert_eq!(resp.cis, "coaps+tcp://a:5684");
        assert!(!resp.at.is_empty());
        let servers: Vec<_> = resp
            .servers
            .iter()
            .map(|s| (s.id.clone(), s.uri.clone()))
            .collect();
        assert_eq!(
            servers,
            [
                (a_id.to_string(), "coaps+tcp://a:5684".to_owned()),
                (a_id.to_string(), "coaps+tcp://a2:5684".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn selected_gateway_is_honoured_only_for_a_hub_of_the_group() {
        let (a, b, c) = (
            hub(&["coaps+tcp://a:5684"]),
            hub(&["coaps+tcp://b:5684", "coaps+tcp://b2:5684"]),
            hub(&["coaps+tcp://c:5684"]),
        );
        let (a_id, b_id, c_id) = (a.id, b.id, c.id);
        let p = provisioner(vec![a, b, c]);
        let mut g = group("acme");
        g.hub_ids = vec![a_id, b_id];

        let resp = config(&p, &g, &request(Some((&b_id, "coaps+tcp://b2:5684"))))
            .await
            .expect("config");
        assert_eq!(
            (resp.sid.as_str(), resp.cis.as_str()),
            (b_id.to_string().as_str(), "coaps+tcp://b2:5684")
        );

        // A uri that is not one of the hub's gateways falls back to its first gateway.
        let resp = config(&p, &g, &request(Some((&b_id, "coaps+tcp://evil:5684"))))
            .await
            .expect("config");
        assert_eq!(resp.cis, "coaps+tcp://b:5684");

        // A configured hub that is not one of the group's is ignored.
        let resp = config(&p, &g, &request(Some((&c_id, "coaps+tcp://c:5684"))))
            .await
            .expect("config");
        assert_eq!(resp.sid, a_id.to_string());
        assert_eq!(resp.cis, "coaps+tcp://a:5684");

        // So is an id that is not a UUID.
        let mut req = request(Some((&b_id, "coaps+tcp://b:5684")));
        if let Some(sel) = req.selected_gateway.as_mut() {
            sel.id = "not-a-uuid".into();
        }
        assert_eq!(
            config(&p, &g, &req).await.expect("config").sid,
            a_id.to_string()
        );
    }

    #[tokio::test]
    async fn no_usable_hub_is_no_hub() {
        let empty = hub(&[]);
        let empty_id = empty.id;
        let p = provisioner(vec![empty]);
        let mut g = group("acme");
        assert!(matches!(
            config(&p, &g, &request(None)).await,
            Err(ProvisionError::NoHub(_))
        ));
        g.hub_ids = vec![Uuid::new_v4()];
        assert!(matches!(
            config(&p, &g, &request(None)).await,
            Err(ProvisionError::NoHub(_))
        ));
        g.hub_ids = vec![empty_id];
        let selected = request(Some((&empty_id, "coaps+tcp://x:5684")));
        assert!(matches!(
            config(&p, &g, &selected).await,
            Err(ProvisionError::NoHub(_))
        ));
    }

    #[tokio::test]
    async fn response_keys_are_in_spec_order() {
        let a = hub(&["coaps+tcp://a:5684"]);
        let a_id = a.id;
        let p = provisioner(vec![a]);
        let mut g = group("acme");
        g.hub_ids = vec![a_id];
        let resp = config(&p, &g, &request(None)).await.expect("config");
        let bytes = to_cbor(&resp).expect("cbor");
        let value: ciborium::Value = ciborium::de::from_reader(bytes.as_slice()).expect("decode");
        let keys: Vec<String> = value
            .as_map()
            .expect("map")
            .iter()
            .filter_map(|(k, _)| k.as_text().map(str::to_owned))
            .collect();
        assert_eq!(keys, ["apn", "cis", "at", "sid", "x.org.iotivity.servers"]);
    }

    #[tokio::test]
    async fn token_names_the_owner_uuid_and_the_requested_device() {
        let a = hub(&["coaps+tcp://a:5684"]);
        let a_id = a.id;
        let p = provisioner(vec![a]);
        let mut g = group("acme");
        g.hub_ids = vec![a_id];
        let req = request(None);
        let (resp, info) = p.cloud_configuration(&g, &req).await.expect("config");
        let claims = crate::token::jwt::unverified_claims(&resp.at).expect("a JWT");
        assert_eq!(
            claims["https://plgd.dev/owner"],
            owner_uuid("acme").to_string()
        );
        assert_eq!(claims["https://plgd.dev/deviceId"], req.di);
        assert_eq!(claims["aud"], a_id.to_string());
        assert_eq!(info.provider, crate::token::ProviderKind::Jwt);
        assert_eq!(
            info.expires_at.map(|t| t.unix_timestamp()),
            claims["exp"].as_i64()
        );
    }

    #[tokio::test]
    async fn provider_failure_is_unavailable_with_the_hub_retry_delay() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("secret"), "s").expect("secret");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/token", closed.local_addr().expect("addr"));
        drop(closed);
        let config: crate::config::HubConfig = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4().to_string(),
            "gateways": ["coaps+tcp://a:5684"],
            "authorization": {"provider": "oauth2", "oauth2": {
                "token_url": url, "client_id": "dps", "client_secret_file": "secret",
                "retry_after_s": 42,
            }},
        }))
        .expect("hub json");
        let a = Hub::from_config(&config, dir.path()).expect("hub");
        let a_id = a.id;
        let p = provisioner(vec![a]);
        let mut g = group("acme");
        g.hub_ids = vec![a_id];
        match p.cloud_configuration(&g, &request(None)).await {
            Err(ProvisionError::Unavailable {
                retry_after_s,
                reason,
            }) => {
                assert_eq!(retry_after_s, 42);
                assert!(reason.contains("unreachable"), "{reason}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
