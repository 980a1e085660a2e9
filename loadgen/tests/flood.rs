//! Attackers beside devices: every attacker kind is closed by the server, devices still get
//! exactly their outcomes, and the server holds no connection once everyone has left.

use dps_loadgen::{exit, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_closed_and_devices_still_get_their_outcomes() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("flood-small.toml");
    std::fs::write(
        &path,
        r#"name = "flood-small"
thresholds = ["mismatches == 0", "errors == 0", "leftover_connections == 0"]
[server_limits]
handshake_timeout_ms = 400
inactivity_timeout_ms = 400
failed_handshakes_per_ip_per_s = 5
failed_handshakes_burst = 10
[fleet]
seed = 31
devices = 120
mix = { valid = 8, truncated = 1, unmatched = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 40.0
[device]
timeout = "10s"
[[attack]]
kind = "idle-tcp"
connections = 30
start = "500ms"
duration = "2s"
[[attack]]
kind = "half-frame"
connections = 10
start = "500ms"
duration = "2s"
[[attack]]
kind = "oversized"
connections = 10
start = "500ms"
duration = "2s"
[[attack]]
kind = "handshake-storm"
connections = 2
start = "500ms"
duration = "2s"
"#,
    )
    .expect("write");
    let finished = run_scenario(&path, None, &|_| {}).await.expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    let attack = s.attack.as_ref().expect("attack summary");
    assert_eq!(attack.attackers.len(), 4);
    for a in &attack.attackers {
        assert!(a.opened > 0, "{a:?}");
        // Every connection the attackers held was closed by the server before they gave up:
        // timeouts (idle, half frame), an immediate refusal (oversized), alerts or shedding (storm).
        assert_eq!(a.closed_by_server, a.opened, "{a:?}");
    }
    let storm = attack
        .attackers
        .iter()
        .find(|a| a.kind == "handshake-storm")
        .expect("storm");
    assert!(
        storm.attempted > 10,
        "the storm keeps coming back: {storm:?}"
    );
    let oversized = attack
        .attackers
        .iter()
        .find(|a| a.kind == "oversized")
        .expect("oversized");
    assert!(
        oversized.p50_close_ms < 400,
        "refused at once, not by a timeout: {oversized:?}"
    );
    assert!(attack.devices_during > 0 && attack.devices_before > 0);
    assert_eq!(s.leftover_connections, Some(0));
}
