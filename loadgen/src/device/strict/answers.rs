//! The real client's checks on the time, ownership, cloud-configuration and ACL answers.

use time::OffsetDateTime;

use super::check::{StrictCheck, Violation};
use super::rep::{oc_uuid_parses, string, Object, Rep};

/// `OC_MAX_STRING_LENGTH` (util/oc_secure_string_internal.h): api/cloud/oc_cloud.c
/// `oc_cloud_provision_conf_resource` refuses a server, token or provider this long or longer.
const MAX_STRING_LENGTH: usize = 4096;

/// api/plgd/plgd_time.c `dev_time_parse_fetch_response`: a `time` string that
/// `oc_clock_parse_time_rfc3339_v1` parses. The server's time, for [`super::check::DpsClock`].
pub(crate) fn time(root: &Object) -> Result<OffsetDateTime, Violation> {
    let v = |d: String| Violation::new(StrictCheck::Time, d);
    let text = string(root, "time").ok_or_else(|| v("no `time` string".into()))?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| v(format!("`time` is not RFC 3339: {text:?}")))
}

/// plgd_dps_provision_owner.c `dps_handle_get_owner_response`: every property is the
/// `devowneruuid` string ("unexpected property" otherwise), and it is there. The owner.
pub(crate) fn ownership(root: &Object) -> Result<String, Violation> {
    let v = |d: String| Violation::new(StrictCheck::Ownership, d);
    let mut owner = None;
    for (name, value) in root {
        match value {
            Rep::String(s) if name == "devowneruuid" => owner = Some(s.clone()),
            other => {
                return Err(v(format!(
                    "unexpected property {name:?} ({})",
                    other.type_name()
                )))
            }
        }
    }
    owner.ok_or_else(|| v("owner not found: no `devowneruuid` string".into()))
}

/// What a cloud-configuration answer gave the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloudConfiguration {
    /// `cis`.
    pub(crate) cis: String,
    /// `sid`.
    pub(crate) sid: String,
}

/// plgd_dps_provision_cloud.c `dps_register_cloud_fill_data`: `at`, `apn`, `cis` and `sid` are
/// strings ("key(at) missing" first); `dps_handle_set_cloud_response` hands them to
/// api/cloud/oc_cloud.c `oc_cloud_provision_conf_resource`, which refuses values of
/// `OC_MAX_STRING_LENGTH` or more and an `sid` that `oc_str_to_uuid_v1` cannot parse; and
/// `dps_has_cloud_configuration` counts the device configured only with a non-empty token
/// (`cloud_set_cloudconf` keeps no empty one), so an empty `at` leaves it unprovisioned.
pub(crate) fn cloud_configuration(root: &Object) -> Result<CloudConfiguration, Violation> {
    let cc = |d: String| Violation::new(StrictCheck::CloudConfiguration, d);
    let at = string(root, "at").ok_or_else(|| {
        Violation::new(
            StrictCheck::AccessToken,
            "key(at) missing: no `at` string in the cloud-configuration answer",
        )
    })?;
    let mut values = [("at", at), ("apn", ""), ("cis", ""), ("sid", "")];
    for (key, value) in values.iter_mut().skip(1) {
        *value = string(root, key).ok_or_else(|| cc(format!("key({key}) missing")))?;
    }
    let [_, (_, apn), (_, cis), (_, sid)] = values;
    for (key, value) in [("at", at), ("apn", apn), ("cis", cis)] {
        if value.len() >= MAX_STRING_LENGTH {
            return Err(cc(format!("`{key}` of {} bytes", value.len())));
        }
    }
    if !sid.is_empty() && !oc_uuid_parses(sid) {
        return Err(cc(format!("invalid sid({sid})")));
    }
    if at.is_empty() {
        return Err(Violation::new(
            StrictCheck::AccessToken,
            "`at` is empty: the device keeps no access token and is not configured",
        ));
    }
    Ok(CloudConfiguration {
        cis: cis.to_owned(),
        sid: sid.to_owned(),
    })
}

/// security/oc_acl.c `oc_sec_decode_acl` as `dps_handle_get_acls_response` calls it (the device in
/// RFPRO): no `rowneruuid`, and every ACE of every object array decodes. The number of ACEs.
pub(crate) fn acls(root: &Object) -> Result<usize, Violation> {
    let v = |d: String| Violation::new(StrictCheck::Acls, d);
    let mut aces = 0;
    for (name, value) in root {
        match value {
            Rep::String(_) if name == "rowneruuid" => {
                return Err(v("oc_acl: Cannot set rowneruuid in RFNOP/RFPRO".into()))
            }
            Rep::ObjectArray(list) => {
                for (i, ace) in list.iter().enumerate() {
                    decode_ace(ace).map_err(|e| v(format!("{name}[{i}]: {e}")))?;
                }
                aces += list.len();
            }
            _ => {}
        }
    }
    Ok(aces)
}

/// security/oc_ace.c `oc_sec_decode_ace` (`ace_decode_property`): only these properties, with
/// these types; then `oc_sec_decode_ace_resources`.
fn decode_ace(ace: &Object) -> Result<(), String> {
    for (name, value) in ace {
        match (name.as_str(), value) {
            ("permission", Rep::Int(p)) if *p > i64::from(u16::MAX) => {
                return Err(format!("permission value({p}) is invalid"))
            }
            ("aceid", Rep::Int(id)) if *id > i64::from(i32::MAX) => {
                return Err(format!("aceid value({id}) is invalid"))
            }
            ("permission" | "aceid", Rep::Int(_)) | ("tag" | "href", Rep::String(_)) => {}
            ("subject", Rep::Object(subject)) => decode_subject(subject)?,
            ("resources", Rep::ObjectArray(resources)) => {
                for (i, res) in resources.iter().enumerate() {
                    decode_resource(res).map_err(|e| format!("resources[{i}]: {e}"))?;
                }
            }
            // "empty array or nil are valid, other types are not".
            ("resources", Rep::Nil) => {}
            _ => {
                return Err(format!(
                    "unknown property (name={name}, type={})",
                    value.type_name()
                ))
            }
        }
    }
    Ok(())
}

/// security/oc_ace.c `ace_decode_subject`: string properties `uuid`, `role`, `authority`,
/// `conntype` only; a valid `uuid` alone, or a `role` (with an optional `authority`), or a known
/// `conntype`.
fn decode_subject(subject: &Object) -> Result<(), String> {
    let (mut uuid, mut role, mut authority, mut conntype) = (None, None, None, None);
    for (name, value) in subject {
        let slot = match name.as_str() {
            "uuid" => &mut uuid,
            "role" => &mut role,
            "authority" => &mut authority,
            "conntype" => &mut conntype,
            _ => return Err(format!("subject: unknown property (name={name})")),
        };
        match value {
            Rep::String(s) => *slot = Some(s.as_str()),
            other => {
                return Err(format!(
                    "subject: unknown property (name={name}, type={})",
                    other.type_name()
                ))
            }
        }
    }
    let has_role = role.is_some() || authority.is_some();
    if let Some(u) = uuid {
        if has_role || conntype.is_some() {
            return Err("subject: uuid cannot be used with role or conntype".into());
        }
        if !oc_uuid_parses(u) {
            return Err(format!("subject: uuid({u}) is invalid"));
        }
        return Ok(());
    }
    if has_role {
        if role.is_none() {
            return Err("subject: role is missing".into());
        }
        if conntype.is_some() {
            return Err("subject: conntype cannot be used with role".into());
        }
        return Ok(());
    }
    match conntype {
        // oc_ace_connection_type_from_string.
        Some("auth-crypt" | "anon-clear") => Ok(()),
        Some(c) => Err(format!("subject: conntype({c}) is invalid")),
        None => Err("subject is missing".into()),
    }
}

/// security/oc_ace.c `ace_decode_resource`: string `href`, string `wc` of `*`, `+` or `-`
/// (`oc_ace_wildcard_from_string`), string array `if`; nothing else.
fn decode_resource(res: &Object) -> Result<(), String> {
    for (name, value) in res {
        match (name.as_str(), value) {
            ("href", Rep::String(_)) | ("if", Rep::StringArray(_)) => {}
            ("wc", Rep::String(wc)) if matches!(wc.as_str(), "*" | "+" | "-") => {}
            ("wc", Rep::String(wc)) => return Err(format!("wildcard({wc}) is invalid")),
            _ => {
                return Err(format!(
                    "unknown property (name={name}, type={})",
                    value.type_name()
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn root(entries: Vec<(&str, Value)>) -> Object {
        let map = Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        );
        super::super::parse_root(&dps_server::proto::body::to_cbor(&map).expect("encode"))
            .expect("parses")
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn check_of<T: std::fmt::Debug>(r: Result<T, Violation>) -> StrictCheck {
        r.expect_err("refused").check
    }

    #[test]
    fn time_needs_an_rfc3339_string() {
        assert!(time(&root(vec![(
            "time",
            text("2025-06-01T12:00:00.123456789Z")
        )]))
        .is_ok());
        assert_eq!(check_of(time(&root(vec![]))), StrictCheck::Time);
        assert_eq!(
            check_of(time(&root(vec![("time", text("yesterday"))]))),
            StrictCheck::Time
        );
        let as_int = root(vec![("time", Value::Integer(1.into()))]);
        assert_eq!(check_of(time(&as_int)), StrictCheck::Time);
    }

    #[test]
    fn ownership_is_exactly_one_owner_string() {
        let owner = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
        assert_eq!(
            ownership(&root(vec![("devowneruuid", text(owner))])),
            Ok(owner.to_owned())
        );
        let extra = root(vec![("devowneruuid", text(owner)), ("x", text("y"))]);
        assert_eq!(check_of(ownership(&extra)), StrictCheck::Ownership);
        assert_eq!(check_of(ownership(&root(vec![]))), StrictCheck::Ownership);
        let bytes = root(vec![("devowneruuid", Value::Bytes(vec![1]))]);
        assert_eq!(check_of(ownership(&bytes)), StrictCheck::Ownership);
    }

    fn cloud(at: Option<Value>, sid: &str) -> Object {
        let mut entries = vec![
            ("apn", text("")),
            ("cis", text("coaps+tcp://hub.example:5684")),
            ("sid", text(sid)),
        ];
        if let Some(at) = at {
            entries.push(("at", at));
        }
        root(entries)
    }

    #[test]
    fn cloud_configuration_needs_a_non_empty_token_and_every_key() {
        let sid = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
        let ok = cloud_configuration(&cloud(Some(text("token")), sid)).expect("accepted");
        assert_eq!(ok.sid, sid);
        for at in [None, Some(text("")), Some(Value::Bytes(b"token".to_vec()))] {
            assert_eq!(
                check_of(cloud_configuration(&cloud(at.clone(), sid))),
                StrictCheck::AccessToken,
                "{at:?}"
            );
        }
        let no_apn = root(vec![
            ("at", text("t")),
            ("cis", text("c")),
            ("sid", text(sid)),
        ]);
        assert_eq!(
            check_of(cloud_configuration(&no_apn)),
            StrictCheck::CloudConfiguration
        );
        assert_eq!(
            check_of(cloud_configuration(&cloud(Some(text("t")), "hub-1"))),
            StrictCheck::CloudConfiguration
        );
        let long = "x".repeat(MAX_STRING_LENGTH);
        assert_eq!(
            check_of(cloud_configuration(&cloud(Some(text(&long)), sid))),
            StrictCheck::CloudConfiguration
        );
        assert!(
            cloud_configuration(&cloud(Some(text("t")), "")).is_ok(),
            "an empty sid is the default one"
        );
    }

    fn ace(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
    }

    fn acl(aces: Vec<Value>) -> Object {
        root(vec![("aclist2", Value::Array(aces))])
    }

    fn good_ace() -> Vec<(&'static str, Value)> {
        vec![
            ("permission", Value::Integer(31.into())),
            (
                "resources",
                Value::Array(vec![
                    ace(vec![
                        ("href", text("/oic/d")),
                        ("if", Value::Array(vec![text("*")])),
                    ]),
                    ace(vec![
                        ("wc", text("*")),
                        ("if", Value::Array(vec![text("*")])),
                    ]),
                ]),
            ),
            (
                "subject",
                ace(vec![("uuid", text("3fa85f64-5717-4562-b3fc-2c963f66afa6"))]),
            ),
            ("tag", text("dps")),
        ]
    }

    #[test]
    fn acls_decode_as_the_real_client_decodes_them() {
        let anon = vec![
            ("permission", Value::Integer(2.into())),
            ("resources", Value::Array(vec![])),
            ("subject", ace(vec![("conntype", text("anon-clear"))])),
        ];
        assert_eq!(acls(&acl(vec![ace(good_ace()), ace(anon)])), Ok(2));
        let mut bad = Vec::new();
        let mut extra = good_ace();
        extra.push(("rowneruuid", text("3fa85f64-5717-4562-b3fc-2c963f66afa6")));
        bad.push(acl(vec![ace(extra)]));
        let mut big = good_ace();
        big[0].1 = Value::Integer(70_000.into());
        bad.push(acl(vec![ace(big)]));
        let mut wc = good_ace();
        wc[1].1 = Value::Array(vec![ace(vec![("wc", text("all"))])]);
        bad.push(acl(vec![ace(wc)]));
        let mut no_if = good_ace();
        no_if[1].1 = Value::Array(vec![ace(vec![
            ("href", text("/a")),
            ("if", Value::Array(vec![])),
        ])]);
        bad.push(acl(vec![ace(no_if)]));
        let mut both = good_ace();
        both[2].1 = ace(vec![
            ("uuid", text("3fa85f64-5717-4562-b3fc-2c963f66afa6")),
            ("conntype", text("anon-clear")),
        ]);
        bad.push(acl(vec![ace(both)]));
        let mut conn = good_ace();
        conn[2].1 = ace(vec![("conntype", text("anon"))]);
        bad.push(acl(vec![ace(conn)]));
        let mut empty_subject = good_ace();
        empty_subject[2].1 = ace(vec![]);
        bad.push(acl(vec![ace(empty_subject)]));
        bad.push(root(vec![
            ("aclist2", Value::Array(vec![ace(good_ace())])),
            ("rowneruuid", text("3fa85f64-5717-4562-b3fc-2c963f66afa6")),
        ]));
        for (i, body) in bad.iter().enumerate() {
            assert_eq!(check_of(acls(body)), StrictCheck::Acls, "case {i}");
        }
    }
}
