//! Unit tests of the store and the record writer (in-memory and temp-file databases).

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use std::sync::atomic::Ordering;

use super::*;
use crate::enrollment::{CertId, LeadSelector};
use crate::proto::coap::Code;
use crate::provision::Identities;
use crate::records::Step;
use crate::store::Store;
use crate::store::{IssuedIdentity, RecordWriter, BATCH_MAX};

fn group(id: Uuid, name: &str) -> GroupConfig {
    GroupConfig {
        id: id.to_string(),
        name: name.into(),
        owner: "acme".into(),
        certificate_chain: "-----BEGIN CERTIFICATE-----\n...".into(),
        lead_certificate: LeadSelector::Index(0),
        expired_certificates_allowed: false,
        allow_common_names: vec![],
        deny_common_names: vec![],
        hub_ids: vec![],
        pre_shared_key: None,
    }
}

fn record(key: CertId, device: Option<Uuid>) -> ProvisioningRecord {
    ProvisioningRecord {
        key: key.to_string(),
        common_name: "SN-1".into(),
        group: Uuid::nil(),
        device_id: device,
        identity_certificate: None,
        identity_not_after: None,
        token_provider: None,
        token_expires_at: None,
        steps: Default::default(),
        first_seen: "2025-01-01T00:00:00Z".into(),
        last_seen: "2025-01-01T00:00:00Z".into(),
    }
}

fn event(key: CertId, step: Step, code: Code) -> StepEvent {
    StepEvent {
        record: key,
        common_name: Some("SN-7".into()),
        group: Uuid::nil(),
        step,
        code,
        diagnostic: if code.is_error() {
            "nope".into()
        } else {
            String::new()
        },
        issued: None,
        token: None,
        at: OffsetDateTime::now_utc(),
    }
}

#[test]
fn groups_and_hubs_round_trip_and_delete() {
    let store = Store::in_memory().expect("store");
    assert!(store.path().is_none());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.put_group(&group(a, "a")).expect("put");
    store.put_group(&group(b, "b")).expect("put");
    store.put_group(&group(a, "a2")).expect("replace");
    let mut names: Vec<String> = store
        .groups()
        .expect("groups")
        .into_iter()
        .map(|g| g.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a2", "b"]);
    assert!(store.delete_group(&a).expect("delete"));
    assert!(!store.delete_group(&a).expect("delete again"));
    assert_eq!(store.groups().expect("groups").len(), 1);
    let mut bad = group(a, "bad");
    bad.id = "not-a-uuid".into();
    assert!(store.put_group(&bad).is_err());

    let hub = HubConfig {
        id: Uuid::new_v4().to_string().to_uppercase(),
        gateways: vec!["coaps+tcp://h:5684".into()],
        name: None,
        authorization: Some(crate::token::AuthorizationConfig::default()),
    };
    store.put_hub(&hub).expect("put hub");
    assert_eq!(store.hubs().expect("hubs"), vec![hub.clone()]);
    let id = Uuid::parse_str(&hub.id).expect("uuid");
    assert!(
        store.delete_hub(&id).expect("delete hub"),
        "keys are canonical"
    );
    assert!(store.hubs().expect("hubs").is_empty());
}

#[test]
fn records_page_in_key_order_and_resolve_by_device_id() {
    let store = Store::in_memory().expect("store");
    let device = Uuid::new_v4();
    let keys: Vec<CertId> = (1..=5u8).map(|i| CertId([i; 32])).collect();
    let batch: Vec<_> = keys
        .iter()
        .map(|k| record(*k, (k.0[0] == 3).then_some(device)))
        .collect();
    store.put_records(&batch).expect("put");
    assert_eq!(store.record_count().expect("count"), 5);
    let first = store.records(None, 2).expect("page");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].key, keys[0].to_string());
    let rest = store.records(Some(&first[1].key), 10).expect("next page");
    assert_eq!(
        rest.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        keys[2..].iter().map(|k| k.to_string()).collect::<Vec<_>>()
    );
    let by_key = store.record(&keys[2].to_string()).expect("by key");
    let by_id = store.record(&device.to_string()).expect("by id");
    let by_cn = store.record(&format!("uuid:{device}")).expect("by cn");
    assert!(by_key.is_some());
    assert_eq!(by_key, by_id);
    assert_eq!(by_id, by_cn);
    assert_eq!(store.record("garbage").expect("none"), None);
    assert_eq!(
        store.record(&Uuid::new_v4().to_string()).expect("none"),
        None
    );

    // The device id moves to another record: the index follows, the old one is dropped.
    let other = Uuid::new_v4();
    store
        .put_records(&[record(keys[2], Some(other))])
        .expect("re-provisioned");
    assert_eq!(store.record(&device.to_string()).expect("old id"), None);
    assert!(store.record(&other.to_string()).expect("new id").is_some());
}

#[test]
fn the_writer_merges_steps_into_records_in_batches() {
    let store = Arc::new(Store::in_memory().expect("store"));
    let identities = Arc::new(Identities::new());
    let writer = RecordWriter::start(store.clone(), identities).expect("writer");
    // Stall the writer until every event is queued, so the batch count is deterministic.
    let txn = store
        .embedded()
        .expect("embedded")
        .db
        .begin_write()
        .expect("write");
    let (a, b) = (CertId([1; 32]), CertId([2; 32]));
    let device = Uuid::new_v4();
    for key in [a, b] {
        for (step, code) in [
            (Step::Time, Code::CONTENT),
            (Step::Ownership, Code::CONTENT),
            (Step::CloudConfiguration, Code::BAD_REQUEST),
            (Step::CloudConfiguration, Code::CHANGED),
            (Step::Acls, Code::CONTENT),
        ] {
            assert!(writer.record_step(event(key, step, code)));
        }
    }
    let mut creds = event(a, Step::Credentials, Code::CHANGED);
    creds.common_name = None; // an identity session keeps the manufacturer CN
    creds.issued = Some(IssuedIdentity {
        device_id: device,
        certificate: CertId([9; 32]),
        not_after: OffsetDateTime::now_utc() + time::Duration::days(1),
    });
    assert!(writer.record_step(creds));
    let failed = event(b, Step::Credentials, Code::BAD_REQUEST);
    assert!(writer.record_step(failed));
    drop(txn);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(writer.flush())
        .expect("flush");
    let stats = writer.stats();
    assert_eq!(stats.written.load(Ordering::Relaxed), 12);
    // The batch the writer was stalled on, and the rest.
    assert!(stats.batches.load(Ordering::Relaxed) <= 2, "{stats:?}");

    let ra = store.record(&device.to_string()).expect("read").expect("a");
    assert_eq!(ra.key, a.to_string());
    assert_eq!(ra.common_name, "SN-7");
    assert_eq!(ra.steps.len(), 5);
    assert_eq!(ra.steps[&Step::CloudConfiguration].code, "2.04");
    assert!(ra.steps[&Step::CloudConfiguration].diagnostic.is_empty());
    assert_eq!(ra.identity_certificate, Some(CertId([9; 32]).to_string()));
    assert!(ra.identity_not_after.is_some());
    assert!(ra.first_seen <= ra.last_seen);
    let rb = store.record(&b.to_string()).expect("read").expect("b");
    assert_eq!(rb.device_id, None);
    assert_eq!(rb.steps[&Step::Credentials].code, "4.00");
    assert_eq!(rb.steps[&Step::Credentials].diagnostic, "nope");
}

#[test]
fn issued_identities_are_persisted_even_without_their_event() {
    let store = Arc::new(Store::in_memory().expect("store"));
    let identities = Arc::new(Identities::new());
    let writer = RecordWriter::start(store.clone(), identities.clone()).expect("writer");
    let (device, key) = (Uuid::new_v4(), CertId([4; 32]));
    let now = OffsetDateTime::now_utc();
    let holder = crate::provision::IdentityHolder {
        owner: Uuid::new_v4(),
        record: Some(key),
        certificate: CertId([5; 32]),
        spki: [6; 32],
        group: Uuid::nil(),
        issued_at: now,
        not_after: now + time::Duration::days(1),
        name: "SN-4".into(),
    };
    identities
        .grant(device, holder.clone(), now, false)
        .expect("grant");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(writer.flush())
        .expect("flush");
    let stored = store.identities().expect("identities");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, device);
    assert_eq!(stored[0].1[0].certificate, holder.certificate);
    let r = store
        .record(&device.to_string())
        .expect("read")
        .expect("reconciled");
    assert_eq!(r.key, key.to_string());
    assert_eq!(r.steps[&Step::Credentials].code, "2.04");
    assert_eq!(r.identity_certificate, Some(holder.certificate.to_string()));
}

#[test]
fn a_full_queue_drops_events_instead_of_blocking_and_dropping_the_writer_commits() {
    let store = Arc::new(Store::in_memory().expect("store"));
    // Declared before the transaction, so that on a failed assertion the transaction is dropped
    // (unwinding, reverse order) before the writer is joined.
    let writer = RecordWriter::start_with_capacity(store.clone(), Arc::new(Identities::new()), 4)
        .expect("writer");
    // Hold the write lock so the writer thread stalls on its first batch: it takes at most one
    // batch (BATCH_MAX events) plus the queue (4), the rest must be dropped.
    let txn = store
        .embedded()
        .expect("embedded")
        .db
        .begin_write()
        .expect("write");
    let key = CertId([8; 32]);
    let sent = 4 * BATCH_MAX as u64;
    let mut accepted = 0u64;
    for _ in 0..sent {
        if writer.record_step(event(key, Step::Time, Code::CONTENT)) {
            accepted += 1;
        }
    }
    let stats = writer.stats();
    assert!(accepted <= BATCH_MAX as u64 + 5, "{stats:?}");
    assert_eq!(stats.dropped.load(Ordering::Relaxed), sent - accepted);
    assert_eq!(stats.queued.load(Ordering::Relaxed), accepted);
    drop(txn);
    // Dropping the last handle commits what was queued and joins the thread.
    drop(writer);
    let r = store
        .record(&key.to_string())
        .expect("read")
        .expect("record");
    assert_eq!(r.steps[&Step::Time].code, "2.05");
}

#[test]
fn a_file_store_survives_reopening_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("dps.redb");
    let id = Uuid::new_v4();
    {
        let store = Store::open(&path).expect("create");
        assert_eq!(store.path(), Some(path.as_path()));
        store.put_group(&group(id, "kept")).expect("put");
        // Open twice at once: an error, not a panic.
        assert!(Store::open(&path).is_err());
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.groups().expect("groups")[0].name, "kept");
    drop(store);

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
    let err = Store::open(&garbage).expect_err("garbage is refused");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
}

#[test]
fn cloud_configuration_records_the_token_provider_and_expiry_and_old_records_decode() {
    let key = CertId([3; 32]);
    let mut cloud = event(key, Step::CloudConfiguration, Code::CHANGED);
    let expires = OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time");
    cloud.token = Some(crate::token::TokenInfo {
        provider: crate::token::ProviderKind::Oauth2,
        expires_at: Some(expires),
    });
    let merged = super::event::merge(None, &cloud);
    assert_eq!(merged.token_provider.as_deref(), Some("oauth2"));
    assert_eq!(
        merged.token_expires_at.as_deref(),
        Some("2030-03-17T17:46:40Z")
    );
    // A later step without a token keeps what the record knows.
    let acls = super::event::merge(Some(merged), &event(key, Step::Acls, Code::CONTENT));
    assert_eq!(acls.token_provider.as_deref(), Some("oauth2"));
    let json = serde_json::to_value(&acls).expect("json");
    assert!(json.get("at").is_none() && !json.to_string().contains("eyJ"));
    // A record stored before these fields existed still decodes.
    let mut old = serde_json::to_value(record(key, None)).expect("json");
    if let Some(map) = old.as_object_mut() {
        map.remove("token_provider");
        map.remove("token_expires_at");
    }
    let decoded: ProvisioningRecord = serde_json::from_value(old).expect("old record");
    assert_eq!(decoded.token_provider, None);
}
