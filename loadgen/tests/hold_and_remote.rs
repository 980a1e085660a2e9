//! The hold executor keeps every accepted device connected at once (and the server counts them),
//! and a remote target gets the fleet's groups over its admin API, judges the devices, and loses
//! the groups again afterwards.

use dps_loadgen::fleet::DeviceClass;
use dps_loadgen::metrics::Phase;
use dps_loadgen::{exit, run_scenario};

mod common;
use common::{remote_server, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_keeps_every_accepted_device_connected_together_on_a_spawned_server() {
    // The test binary is not dps-loadgen: point the spawn at the real one.
    std::env::set_var("DPS_LOADGEN_SERVER_EXE", env!("CARGO_BIN_EXE_dps-loadgen"));
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = write(
        dir.path(),
        "hold.toml",
        r#"name = "hold-small"
thresholds = ["mismatches == 0", "errors == 0"]
[target]
spawn = true
[fleet]
seed = 21
devices = 40
mix = { valid = 6, truncated = 1, identity = 1, tpm = 2 }
[executor]
kind = "hold"
connect_concurrency = 8
hold = "1500ms"
ping_interval = "400ms"
[device]
source_addresses = 3
"#,
    );
    let finished = run_scenario(&scenario, Some(&dir.path().join("results")), &|_| {})
        .await
        .expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    let refused = s
        .classes
        .get(&DeviceClass::Truncated)
        .map_or(0, |c| c.devices);
    let accepted = s.devices - refused;
    let hold = s.hold.as_ref().expect("hold summary");
    assert_eq!(
        hold.held_peak, accepted,
        "every accepted device held at once"
    );
    assert_eq!(
        hold.server_open_connections,
        Some(accepted),
        "the server counts the same connections"
    );
    // Pings while holding (about 3 each), and the last one at release.
    let pings = s.latency[&Phase::Ping].count;
    assert!(
        pings >= 2 * accepted,
        "{pings} pings for {accepted} devices"
    );
    assert_eq!(s.provisioned, accepted);
    assert_eq!(s.server.kind, "spawned");
    assert_eq!(s.server_rejections, s.expected_rejections);
    assert!(
        s.server.peak_rss_bytes.is_some_and(|b| b > 0),
        "the spawned server's own memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_target_gets_the_fleet_groups_and_loses_them_after() {
    let dir = tempfile::tempdir().expect("tmp");
    let server_dir = dir.path().join("dps");
    let (devices, admin) = remote_server(&server_dir).await;
    let scenario = write(
        dir.path(),
        "remote.toml",
        &format!(
            r#"name = "remote-small"
thresholds = ["mismatches == 0", "errors == 0"]
[target]
address = "{devices}"
admin = "http://{admin}"
admin_token_file = "{token}"
server_ca = "{ca}"
[fleet]
seed = 22
devices = 30
mix = {{ valid = 3, unmatched = 1, blacklisted = 1, identity = 1, tpm = 2, tpm_wrong_ek = 1, tpm_replayed_nonce = 1, tpm_unenrolled = 1 }}
[executor]
kind = "closed-loop"
concurrency = 4
"#,
            token = server_dir.join("admin-token").display(),
            ca = server_dir.join("server-ca.pem").display(),
        ),
    );
    let finished = run_scenario(&scenario, None, &|_| {}).await.expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    assert_eq!(s.server.kind, "remote");
    assert_eq!(s.server_rejections, s.expected_rejections);
    // The soft TPMs of the fleet's vendor attested into the TPM group created over the admin API.
    let tpm_class = s.classes.get(&DeviceClass::Tpm).expect("tpm devices");
    assert!(
        tpm_class
            .observed
            .keys()
            .any(|o| o.starts_with("provisioned:") && !o.ends_with("tpm-individual")),
        "no TPM attested through its vendor's group: {:?}",
        tpm_class.observed
    );
    // The TPM enrollments went over the admin API and the server counted the refusals.
    assert!(s.expected_tpm_refusals > 0);
    assert_eq!(s.server_tpm_refusals, Some(s.expected_tpm_refusals));
    assert!(s.server.latency["handshake"].count >= s.provisioned);
    assert!(s.server.peak_rss_bytes.is_some_and(|b| b > 0));

    // Only init's own groups are left.
    let token = std::fs::read_to_string(server_dir.join("admin-token")).expect("token");
    let client = dps_loadgen::target::AdminClient::new(
        &format!("http://{admin}"),
        Some(token.trim().to_owned()),
    )
    .expect("client");
    let groups: serde_json::Value = client
        .get_json("/api/v1/enrollment-groups")
        .await
        .expect("list");
    let listed = groups.as_array().map_or(0, Vec::len);
    assert_eq!(listed, 2, "{groups}");
    let tpm: serde_json::Value = client
        .get_json("/api/v1/tpm-enrollments")
        .await
        .expect("list");
    assert_eq!(tpm.as_array().map_or(0, Vec::len), 0, "{tpm}");
    let tpm_groups: serde_json::Value = client
        .get_json("/api/v1/tpm-enrollment-groups")
        .await
        .expect("list");
    assert_eq!(tpm_groups.as_array().map_or(0, Vec::len), 0, "{tpm_groups}");
}

#[tokio::test]
async fn a_hold_beyond_the_open_file_limit_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    // Far beyond any hard limit (fs.nr_open is at most 2^30): refused before the fleet is built,
    // which at this size would take hours.
    let scenario = write(
        dir.path(),
        "hold-huge.toml",
        r#"name = "hold-huge"
[target]
spawn = true
[fleet]
seed = 22
devices = 2000000000
mix = { valid = 1 }
[executor]
kind = "hold"
hold = "1s"
"#,
    );
    let err = match run_scenario(&scenario, None, &|_| {}).await {
        Ok(_) => panic!("a hold of two billion devices ran"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), exit::ABORTED);
    let text = err.to_string();
    assert!(text.contains("open files"), "{text}");
    assert!(text.contains("2000000000 devices"), "{text}");
}
