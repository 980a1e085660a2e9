//! Devices refused transiently get in after retries: an embedded server with room for one
//! connection at a time (the next one is answered 5.03 with Max-Age 1 s, the rest are closed at
//! accept), devices with exponential backoff that honours Max-Age. Every device ends provisioned,
//! some after several attempts, and the summary (valid against its schema) says how many and why.

use std::path::Path;

use dps_loadgen::metrics::Phase;
use dps_loadgen::scenario::{RetryPolicy, Scenario};
use dps_loadgen::{exit, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_refused_for_lack_of_room_provision_after_retries() {
    let cache = tempfile::tempdir().expect("tmp");
    let loaded = Scenario::parse(
        r#"
thresholds = ["mismatches == 0", "errors == 0", "provisioned >= 100%", "max(attempts) >= 2", "time_to(100%) < 14s", "recovered == 1"]
[server_limits]
max_connections = 1
busy_retry_after_s = 1
[fleet]
seed = 23
devices = 12
mix = { valid = 1 }
[executor]
kind = "closed-loop"
concurrency = 6
[device]
timeout = "5s"
retry = { policy = "exponential", base = "20ms", cap = "200ms", max_attempts = 60 }
retry_deadline = "13s"
"#,
        "retries.toml",
        "retries",
    )
    .expect("scenario");
    let outcome = run::run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect("run");
    let s = &outcome.summary;
    assert_eq!(
        (s.provisioned, s.errors, s.mismatches),
        (12, 0, 0),
        "{:#?}",
        s.mismatch_examples
    );
    assert_eq!(s.retry_policy, RetryPolicy::Exponential);
    let a = &s.attempts;
    assert!(a.total > 12 && a.retried_devices > 0, "{a:?}");
    assert_eq!(a.per_device.values().sum::<u64>(), 12);
    assert_eq!(
        a.per_device.get(&1).copied().unwrap_or(0) + a.retried_devices,
        12
    );
    // The failed attempts were the server's lack of room: a 5.03 or a close at accept.
    let failed: u64 = a.errors.values().sum();
    assert_eq!(failed, a.total - 12, "{a:?}");
    assert!(
        a.errors
            .keys()
            .all(|k| ["busy", "reset", "tls", "connect"].contains(&k.as_str())),
        "{a:?}"
    );
    // A device answered 5.03 waited its Max-Age (1 s) before trying again.
    let after = &s.latency[&Phase::ProvisionedAfterRetries];
    assert_eq!(after.count, 12);
    if a.errors.contains_key("busy") {
        assert!(after.max_us >= 1_000_000, "{after:?}");
    }
    // Per-attempt phases: one TCP connect per attempt that got that far, one Total per attempt.
    assert_eq!(s.latency[&Phase::Total].count, a.total);
    let storm = s.storm.as_ref().expect("storm");
    assert_eq!((storm.must_get_in, storm.got_in), (12, 12));
    assert!(storm.time_to_50_us <= storm.time_to_100_us);
    assert_eq!(
        storm.busy_answers,
        a.errors.get("busy").copied().unwrap_or(0)
    );
    let closes = storm
        .server_closes
        .as_ref()
        .expect("embedded server's closes");
    assert!(
        closes.get("busy").copied().unwrap_or(0) + closes.get("overflow").copied().unwrap_or(0) > 0,
        "{closes:?}"
    );
    assert!(s.passed, "{:#?}", s.thresholds);
    assert_eq!(dps_loadgen::exit_code(s), exit::PASS);
    let class = &s.classes[&dps_loadgen::fleet::DeviceClass::Valid];
    assert_eq!(class.attempts, a.total);
    assert!(class.max_attempts >= 2);

    // The summary with retries and the storm section is what the schema describes.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("summary.schema.json"))
            .expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let json = serde_json::to_value(s).expect("json");
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(json["retry_policy"], "exponential");
    assert!(json["attempts"]["per_device"]["1"].is_u64() || !a.per_device.contains_key(&1));
    let mut broken = json.clone();
    broken["attempts"]["errors"] = serde_json::json!({ "slow": 1 });
    assert!(!validator.is_valid(&broken));
    let md = dps_loadgen::report::markdown(s);
    assert!(md.contains("Retries (exponential)"), "{md}");
    assert!(md.contains("Fleet: 12 of 12 devices"), "{md}");
}
