//! `GET /api/v1/provisioning/acls`: the access control entries the device installs.

use super::{owner_uuid, Provisioner};
use crate::enrollment::EnrollmentGroup;
use crate::proto::body::{
    Ace, AceResource, AceSubject, AclsResponse, CONNTYPE_ANON_CLEAR, PERMISSION_ALL,
    PERMISSION_READ,
};

/// Resources the owner gets full access to, besides the wildcard.
pub const OWNER_HREFS: [&str; 6] = [
    "/CoapCloudConfResURI",
    "/oic/sec/sp",
    "/x.plgd.dev/time",
    "/oc/con",
    "/oc/swu",
    "/oic/mnt",
];

/// Resources anyone may read over an unauthenticated, unencrypted connection.
pub const ANON_CLEAR_HREFS: [&str; 5] = [
    "/oic/d",
    "/oic/p",
    "/oic/res",
    "/oic/sec/sdi",
    "/oic/sec/doxm",
];

/// Resources each hub gets full access to, besides the wildcard.
pub const HUB_HREFS: [&str; 4] = ["/oc/con", "/oc/swu", "/oic/mnt", "/x.plgd.dev/time"];

fn resources(hrefs: &[&str], wildcard: bool) -> Vec<AceResource> {
    let mut out: Vec<AceResource> = hrefs.iter().map(|h| AceResource::href(h)).collect();
    if wildcard {
        out.push(AceResource::wildcard());
    }
    out
}

fn uuid_subject(uuid: impl ToString) -> AceSubject {
    AceSubject::Uuid {
        uuid: uuid.to_string(),
    }
}

impl Provisioner {
    /// The group's ACL: the owner (full access), anonymous read of the discovery and security
    /// basics, and one full-access entry per hub id of the group, in that order.
    pub fn acls(&self, group: &EnrollmentGroup) -> AclsResponse {
        let mut aclist2 = Vec::with_capacity(2 + group.hub_ids.len());
        aclist2.push(Ace::new(
            PERMISSION_ALL,
            uuid_subject(owner_uuid(&group.owner)),
            resources(&OWNER_HREFS, true),
        ));
        aclist2.push(Ace::new(
            PERMISSION_READ,
            AceSubject::Conntype {
                conntype: CONNTYPE_ANON_CLEAR.to_owned(),
            },
            resources(&ANON_CLEAR_HREFS, false),
        ));
        for hub in &group.hub_ids {
            aclist2.push(Ace::new(
                PERMISSION_ALL,
                uuid_subject(hub),
                resources(&HUB_HREFS, true),
            ));
        }
        AclsResponse { aclist2 }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::body::to_json;
    use crate::provision::test_support::{group, provisioner};
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn href(h: &str) -> Value {
        json!({"href": h, "if": ["*"]})
    }

    #[test]
    fn acl_entries_are_exactly_the_spec_ones() {
        let (hub1, hub2) = (Uuid::new_v4(), Uuid::new_v4());
        let mut g = group("acme");
        g.hub_ids = vec![hub1, hub2];
        let owner = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"acme");
        let acls = provisioner(Vec::new()).acls(&g);
        let got: Value = serde_json::from_slice(&to_json(&acls).expect("encode")).expect("json");
        let wc = json!({"if": ["*"], "wc": "*"});
        let hub = |id: Uuid| {
            json!({
                "permission": 31,
                "resources": [href("/oc/con"), href("/oc/swu"), href("/oic/mnt"),
                              href("/x.plgd.dev/time"), wc],
                "subject": {"uuid": id.to_string()},
                "tag": "dps"
            })
        };
        let want = json!({"aclist2": [
            {
                "permission": 31,
                "resources": [href("/CoapCloudConfResURI"), href("/oic/sec/sp"),
                              href("/x.plgd.dev/time"), href("/oc/con"), href("/oc/swu"),
                              href("/oic/mnt"), wc],
                "subject": {"uuid": owner.to_string()},
                "tag": "dps"
            },
            {
                "permission": 2,
                "resources": [href("/oic/d"), href("/oic/p"), href("/oic/res"),
                              href("/oic/sec/sdi"), href("/oic/sec/doxm")],
                "subject": {"conntype": "anon-clear"},
                "tag": "dps"
            },
            hub(hub1),
            hub(hub2),
        ]});
        assert_eq!(got, want);
    }

    #[test]
    fn a_group_without_hubs_gets_owner_and_anonymous_entries_only() {
        let acls = provisioner(Vec::new()).acls(&group("acme"));
        assert_eq!(acls.aclist2.len(), 2);
    }

    #[test]
    fn ace_keys_are_in_spec_order_in_cbor() {
        let acls = provisioner(Vec::new()).acls(&group("acme"));
        let bytes = crate::proto::body::to_cbor(&acls.aclist2[0]).expect("cbor");
        let value: ciborium::Value = ciborium::de::from_reader(bytes.as_slice()).expect("decode");
        let keys: Vec<String> = value
            .as_map()
            .expect("map")
            .iter()
            .filter_map(|(k, _)| k.as_text().map(str::to_owned))
            .collect();
        assert_eq!(keys, ["permission", "resources", "subject", "tag"]);
    }
}
