//! The PostgreSQL store through the `Persistence` trait and the record writer: the same cases
//! run on the embedded store and on PostgreSQL (a throwaway cluster, a fresh database per test),
//! then what only the shared store has: versioned migrations, and two replicas taking one device
//! id at once.

mod common;

use std::sync::Arc;

use dps_server::config::{GroupConfig, HubConfig};
use dps_server::enrollment::{CertId, LeadSelector};
use dps_server::proto::coap::Code;
use dps_server::provision::{Identities, IdentityHolder};
use dps_server::records::{Persistence, ProvisioningRecord, Step};
use dps_server::store::{IssuedIdentity, RecordWriter, StepEvent, Store};
use time::OffsetDateTime;
use uuid::Uuid;

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

fn holder(record: u8, spki: u8) -> IdentityHolder {
    // Whole seconds, as the store keeps them.
    let now = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("now");
    IdentityHolder {
        owner: Uuid::from_u128(1),
        record: Some(CertId([record; 32])),
        certificate: CertId([spki.wrapping_add(100); 32]),
        spki: [spki; 32],
        group: Uuid::nil(),
        issued_at: now,
        not_after: now + time::Duration::days(1),
        name: format!("SN-{record}"),
    }
}

/// Groups, TPM groups and hubs: put, replace, list, delete, canonical keys.
fn groups_and_hubs_round_trip(store: &Store) {
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

    store
        .put_tpm_group(&group(a, "tpm"))
        .expect("put tpm group");
    assert_eq!(store.tpm_groups().expect("tpm groups")[0].name, "tpm");
    assert_eq!(store.groups().expect("groups").len(), 1, "kinds stay apart");
    assert!(store.delete_tpm_group(&a).expect("delete tpm group"));

    let hub = HubConfig {
        id: Uuid::new_v4().to_string().to_uppercase(),
        gateways: vec!["coaps+tcp://h:5684".into()],
        name: None,
        authorization: Some(dps_server::token::AuthorizationConfig::default()),
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

/// Records page in key order and resolve by key and by device id; the index follows a move.
fn records_page_and_resolve(store: &Store) {
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
    let other = Uuid::new_v4();
    store
        .put_records(&[record(keys[2], Some(other))])
        .expect("re-provisioned");
    assert_eq!(store.record(&device.to_string()).expect("old id"), None);
    assert!(store.record(&other.to_string()).expect("new id").is_some());
}

fn flush(writer: &RecordWriter) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(writer.flush())
        .expect("flush");
}

/// The writer merges steps into records, and persists identities even without their event.
fn writer_merges_steps_and_identities(store: Arc<Store>) {
    let identities = Arc::new(Identities::new());
    let writer = RecordWriter::start(store.clone(), identities.clone()).expect("writer");
    let (a, b) = (CertId([1; 32]), CertId([2; 32]));
    let device = Uuid::new_v4();
    for key in [a, b] {
        for (step, code) in [
            (Step::Time, Code::CONTENT),
            (Step::CloudConfiguration, Code::BAD_REQUEST),
            (Step::CloudConfiguration, Code::CHANGED),
        ] {
            assert!(writer.record_step(event(key, step, code)));
        }
    }
    let mut creds = event(a, Step::Credentials, Code::CHANGED);
    creds.issued = Some(IssuedIdentity {
        device_id: device,
        certificate: CertId([9; 32]),
        not_after: OffsetDateTime::now_utc() + time::Duration::days(1),
    });
    assert!(writer.record_step(creds));
    flush(&writer);
    let ra = store.record(&device.to_string()).expect("read").expect("a");
    assert_eq!(ra.key, a.to_string());
    assert_eq!(ra.steps.len(), 3);
    assert_eq!(ra.steps[&Step::CloudConfiguration].code, "2.04");
    assert_eq!(ra.identity_certificate, Some(CertId([9; 32]).to_string()));
    let rb = store.record(&b.to_string()).expect("read").expect("b");
    assert_eq!(rb.device_id, None);

    let other = Uuid::new_v4();
    let h = holder(4, 6);
    identities
        .grant(other, h.clone(), OffsetDateTime::now_utc(), false)
        .expect("grant");
    flush(&writer);
    let stored = store.identity(other).expect("identity");
    assert_eq!(stored, vec![h.clone()]);
    let r = store
        .record(&other.to_string())
        .expect("read")
        .expect("reconciled");
    assert_eq!(r.steps[&Step::Credentials].code, "2.04");
    assert_eq!(identities.release(&other), vec![h]);
    flush(&writer);
    assert!(store.identity(other).expect("released").is_empty());
}

fn all_cases(open: impl Fn() -> Store) {
    groups_and_hubs_round_trip(&open());
    records_page_and_resolve(&open());
    writer_merges_steps_and_identities(Arc::new(open()));
}

#[test]
fn the_embedded_store_passes_the_shared_cases() {
    all_cases(|| Store::in_memory().expect("store"));
}

#[test]
fn the_postgres_store_passes_the_shared_cases() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    all_cases(|| Store::connect(&pg.database()).expect("store"));
}

#[test]
fn migrations_apply_on_an_empty_database_once_and_a_newer_schema_is_refused() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let url = pg.database();
    let db = url.rsplit('/').next().expect("db name").to_owned();
    let first = Store::connect(&url).expect("migrated");
    first
        .put_group(&group(Uuid::new_v4(), "kept"))
        .expect("put");
    drop(first);
    let again = Store::connect(&url).expect("restart: nothing to do");
    assert_eq!(again.groups().expect("groups").len(), 1, "data kept");
    assert_eq!(
        pg.sql(
            &db,
            "SELECT string_agg(version::text, ',') FROM dps_schema_migrations"
        )
        .trim(),
        "1"
    );
    pg.sql(
        &db,
        "INSERT INTO dps_schema_migrations (version) VALUES (999)",
    );
    let err = Store::connect(&url).expect_err("newer schema");
    assert!(err.to_string().contains("999"), "{err}");
}

#[test]
fn two_replicas_taking_one_device_id_with_two_keys_one_wins_the_other_is_refused() {
    let Some(pg) = common::postgres::cluster() else {
        return;
    };
    let url = pg.database();
    let device = Uuid::new_v4();
    let replicas: Vec<_> = (0..2)
        .map(|i| {
            let store = Arc::new(Store::connect(&url).expect("store"));
            let ids = Arc::new(Identities::new());
            let writer = RecordWriter::start(store.clone(), ids.clone()).expect("writer");
            // Each replica's own map admits its claim: neither has seen the other's.
            ids.grant(
                device,
                holder(10 + i, 20 + i),
                OffsetDateTime::now_utc(),
                false,
            )
            .expect("granted in memory");
            (store, ids, writer, i)
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .iter()
            .map(|(_, _, writer, i)| {
                let mut e = event(CertId([10 + *i; 32]), Step::Credentials, Code::CHANGED);
                e.issued = Some(IssuedIdentity {
                    device_id: device,
                    certificate: CertId([120 + *i; 32]),
                    not_after: OffsetDateTime::now_utc() + time::Duration::days(1),
                });
                s.spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(writer.record_durable(e))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "exactly one wins: {results:?}");
    let lost = 1 - won[0];
    assert!(
        matches!(
            results[lost],
            Err(dps_server::records::StoreError::Refused(_))
        ),
        "{results:?}"
    );
    let winner = holder(10 + won[0] as u8, 20 + won[0] as u8);
    let (store, loser_ids, _, _) = &replicas[lost];
    assert_eq!(
        store.identity(device).expect("stored"),
        vec![winner.clone()]
    );
    assert_eq!(
        loser_ids.holders(&device),
        vec![winner],
        "the loser learned the winner"
    );
    let lost_record = store
        .record(&CertId([10 + lost as u8; 32]).to_string())
        .expect("read")
        .expect("record");
    assert_eq!(lost_record.steps[&Step::Credentials].code, "4.00");
    assert_eq!(lost_record.device_id, None);
    let by_id = store
        .record(&device.to_string())
        .expect("read")
        .expect("winner's record");
    assert_eq!(by_id.key, CertId([10 + won[0] as u8; 32]).to_string());
}
