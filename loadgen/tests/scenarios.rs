//! Small scenarios run in-process against the embedded server: every class gets exactly its
//! expected outcome, the summary validates against the published schema, and a failing threshold
//! exits 99.

use std::path::Path;

use dps_loadgen::fleet::DeviceClass;
use dps_loadgen::{exit, run_scenario};

fn write_scenario(
    dir: &Path,
    name: &str,
    extra_thresholds: &str,
    executor: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
thresholds = ["mismatches == 0", "errors == 0"{extra_thresholds}]

[fleet]
seed = 3
devices = 150
mix = {{ valid = 10, truncated = 10, unmatched = 10, no_group = 10, blacklisted = 10, not_allowed = 10, expired = 10, forged = 10, bad_eku = 10, identity = 10, tpm = 10, tpm_wrong_ek = 6, tpm_replayed_nonce = 6, tpm_tampered_blob = 6, tpm_unenrolled = 6 }}

[executor]
{executor}
"#
        ),
    )
    .expect("write scenario");
    path
}

fn schema() -> serde_json::Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("summary.schema.json"))
            .expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_gets_its_outcome_and_the_summary_matches_the_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = write_scenario(
        dir.path(),
        "classes",
        "",
        "kind = \"closed-loop\"\nconcurrency = 8",
    );
    let results = dir.path().join("results");
    let finished = run_scenario(&scenario, Some(&results), &|_| {})
        .await
        .expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    assert_eq!(s.devices, 150);
    assert_eq!(s.mismatches, 0);
    // swtpm devices need the tpm-sim build: tests/tpm_swtpm.rs runs them.
    for class in DeviceClass::ALL
        .into_iter()
        .filter(|c| *c != DeviceClass::TpmSwtpm)
    {
        let c = s
            .classes
            .get(&class)
            .unwrap_or_else(|| panic!("no device of class {class:?}"));
        assert_eq!(c.as_expected, c.devices, "{class:?}: {:?}", c.observed);
    }
    assert_eq!(s.server_rejections, s.expected_rejections);
    assert!(s.provisioned > 0 && s.provisioned < s.devices);
    // Soft TPMs attested through both kinds of enrollment, then provisioned; every adversarial
    // TPM got its 4.01, and the server counted exactly those.
    let tpm = &s.classes[&DeviceClass::Tpm];
    let individual = tpm.observed.get("provisioned:tpm-individual").copied();
    let group = tpm.observed.get("provisioned:tpm-vendor").copied();
    assert!(
        individual.is_some() && group.is_some(),
        "{:?}",
        tpm.observed
    );
    for (class, label) in [
        (DeviceClass::TpmWrongEk, "tpm_refused:attest:4.01"),
        (DeviceClass::TpmReplayedNonce, "tpm_refused:attest:4.01"),
        (DeviceClass::TpmTamperedBlob, "tpm_refused:attest:4.01"),
        (DeviceClass::TpmUnenrolled, "tpm_refused:challenge:4.01"),
    ] {
        let c = &s.classes[&class];
        assert_eq!(c.observed.get(label), Some(&c.devices), "{class:?}");
    }
    let refused: u64 = [
        DeviceClass::TpmWrongEk,
        DeviceClass::TpmReplayedNonce,
        DeviceClass::TpmTamperedBlob,
        DeviceClass::TpmUnenrolled,
    ]
    .iter()
    .map(|c| s.classes[c].devices)
    .sum();
    assert_eq!(s.expected_tpm_refusals, refused);
    assert_eq!(s.server_tpm_refusals, Some(refused));
    // Replayed-nonce devices challenge twice (two connections), the others once.
    let replayed = s.classes[&DeviceClass::TpmReplayedNonce].devices;
    let tpm_devices: u64 = [
        DeviceClass::Tpm,
        DeviceClass::TpmWrongEk,
        DeviceClass::TpmReplayedNonce,
        DeviceClass::TpmTamperedBlob,
        DeviceClass::TpmUnenrolled,
    ]
    .iter()
    .map(|c| s.classes[c].devices)
    .sum();
    let challenges = s.latency[&dps_loadgen::metrics::Phase::TpmChallenge].count;
    assert_eq!(challenges, tpm_devices + replayed);
    // Identity devices reconnected with the certificate they were issued.
    let identity = &s.classes[&DeviceClass::Identity];
    assert_eq!(
        identity.observed.get("reconnected:factory-b"),
        Some(&identity.devices)
    );
    let reconnects = s.latency[&dps_loadgen::metrics::Phase::IdentityHandshake].count;
    assert_eq!(reconnects, identity.devices);
    // Every millisecond accounted for: on every device, lateness, the device's own work and the
    // server-facing phases add up to the total exactly; one lateness and one device sample per
    // attempt; every connection (identity and replayed-nonce devices open two) recorded.
    let fidelity = s.fidelity.as_ref().expect("fidelity");
    assert_eq!(fidelity.unbalanced_devices, 0, "{fidelity:?}");
    use dps_loadgen::metrics::Phase;
    for phase in [Phase::Lateness, Phase::Device, Phase::Total] {
        assert_eq!(s.latency[&phase].count, 150, "{phase}");
    }
    assert_eq!(
        fidelity.connections_recorded,
        150 + identity.devices + replayed,
        "{fidelity:?}"
    );
    // The server's own view sits beside the client's: one handshake histogram sample per
    // accepted or refused manufacturer handshake at least.
    assert_eq!(s.server.kind, "embedded");
    let server_handshakes = s.server.latency["handshake"].count;
    assert!(server_handshakes >= s.provisioned, "{server_handshakes}");
    assert!(s.server.latency["matching"].count >= s.provisioned);

    let dir = finished.results_dir.expect("results dir");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
            .expect("json");
    let validator = jsonschema::validator_for(&schema()).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let md = std::fs::read_to_string(dir.join("summary.md")).expect("md");
    assert!(md.contains("| server histogram |"), "{md}");
    for beside in ["report.html", "timeline.svg", "latency.svg"] {
        assert!(
            md.contains(&format!("]({beside})")) && dir.join(beside).exists(),
            "summary.md links {beside}, which is there"
        );
    }
    let raw = std::fs::read_to_string(dir.join("histograms.txt")).expect("raw");
    assert!(raw.contains("\nhandshake ") || raw.starts_with("handshake "));
    assert!(
        raw.contains("\nserver.handshake "),
        "server histograms kept raw"
    );
    let csv = std::fs::read_to_string(dir.join("connections.csv")).expect("connections.csv");
    let rows: Vec<_> = csv
        .lines()
        .skip(1)
        .map(|l| dps_loadgen::device::trace::ConnectionRecord::parse_csv(l).expect("a record"))
        .collect();
    assert_eq!(rows.len() as u64, fidelity.connections_recorded);
    assert!(
        rows.iter().all(|r| r.first_server_data_us.is_some()),
        "{csv}"
    );
    assert!(
        rows.iter()
            .all(|r| r.first_server_data_read_us >= r.first_server_data_us),
        "the server's first bytes are read once they have arrived, not before: {csv}"
    );
    let ids = std::fs::read_to_string(dir.join("identities.csv")).expect("identities.csv");
    let mut lines = ids.lines();
    assert_eq!(lines.next(), Some("device,device_id"));
    let issued: std::collections::BTreeSet<&str> = lines
        .map(|l| {
            let (_, id) = l.split_once(',').expect("device,device_id");
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{l}");
            id
        })
        .collect();
    assert_eq!(
        issued.len() as u64,
        s.provisioned,
        "one distinct device id per provisioned device: {ids}"
    );
    let svg = std::fs::read_to_string(dir.join("latency.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("server matching"));

    // `compare` reads what `run` wrote.
    let again = dps_loadgen::compare::load(&dir).expect("summary reads back");
    assert_eq!(again.devices, 150);
    let table = dps_loadgen::compare::compare(&again, &again);
    assert!(table.contains("| mismatches | 0.0 | 0.0 | ±0 |"), "{table}");
    assert!(
        table.contains("| false accepts | 0.0 | 0.0 | ±0 |"),
        "{table}"
    );
    assert!(
        table.contains("| attempts per device | 1.0 | 1.0 |"),
        "{table}"
    );
    // Without retries every device made one attempt, and the storm section is there.
    assert_eq!((s.attempts.total, s.attempts.max), (150, 1));
    let storm = s.storm.as_ref().expect("storm");
    assert_eq!(storm.must_get_in, s.provisioned);
    assert_eq!(storm.got_in, s.provisioned);

    // The schema is not a rubber stamp: a summary missing a field or with a wrong type fails.
    let mut broken = json.clone();
    broken.as_object_mut().expect("object").remove("mismatches");
    assert!(!validator.is_valid(&broken));
    let mut broken = json.clone();
    broken["latency"]["handshake"]["p99_us"] = serde_json::json!("fast");
    assert!(!validator.is_valid(&broken));
    // Failure kinds and the device mode are reported by name, and only known names validate.
    assert_eq!(json["device_mode"], "provision");
    assert!(json["failures"].is_object(), "{}", json["failures"]);
    let mut broken = json.clone();
    broken["failures"] = serde_json::json!({ "slow": 1 });
    assert!(!validator.is_valid(&broken));
    let mut broken = json;
    broken["device_mode"] = serde_json::json!("handshake");
    assert!(!validator.is_valid(&broken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_threshold_exits_99() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = write_scenario(
        dir.path(),
        "too-strict",
        ", \"p50(handshake) < 1us\"",
        "kind = \"constant-arrival-rate\"\nrate = 200.0",
    );
    let finished = run_scenario(&scenario, None, &|_| {}).await.expect("run");
    assert_eq!(finished.exit_code, exit::THRESHOLD_FAILED);
    let t = finished
        .outcome
        .summary
        .thresholds
        .iter()
        .find(|t| t.threshold.contains("1us"))
        .expect("threshold");
    assert!(!t.passed);
    assert_eq!(
        finished.outcome.summary.mismatches, 0,
        "only the threshold failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_scenario_is_refused_before_running() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[fleet]\ndevices = 0\nmix = { valid = 1 }\n[executor]\nkind = \"closed-loop\"\nconcurrency = 1\n").expect("write");
    let err = run_scenario(&path, None, &|_| {})
        .await
        .expect_err("refused");
    assert_eq!(err.exit_code(), exit::BAD_SCENARIO);
    assert!(err.to_string().contains("fleet.devices"), "{err}");
}

#[test]
fn shipped_scenarios_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in [
        "quickstart.toml",
        "ci-smoke.toml",
        "knee.toml",
        "power-on.toml",
        "overload.toml",
        "fidelity.toml",
        "tpm-mix.toml",
        "report-example.toml",
    ] {
        if name == "tpm-mix.toml" && !cfg!(feature = "tpm-sim") {
            let e = dps_loadgen::scenario::Scenario::load(&root.join(name))
                .expect_err("tpm-mix needs the tpm-sim build");
            assert!(e.to_string().contains("tpm-sim"), "{e}");
            continue;
        }
        dps_loadgen::scenario::Scenario::load(&root.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
