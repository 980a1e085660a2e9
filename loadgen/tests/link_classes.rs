//! Every device class through link profiles: refusals, TPM attestation, identity reconnects and
//! held devices' Pings all pay the link, and the shipped `scenarios/cellular.toml` parses with the
//! links it documents. (The accuracy of the delays is `link_profile.rs`'s.)

use dps_loadgen::fleet::DeviceClass;
use dps_loadgen::metrics::Phase;
use dps_loadgen::run::run_with_cache;
use dps_loadgen::scenario::Scenario;

/// Every kind of device runs its whole protocol through a link and gets its outcome: refusals
/// (TLS alerts), TPM attestation, identity reconnects; a TPM class on its own slower link; and
/// under the hold executor, pings over the link pay its round trip too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_gets_its_outcome_over_cellular_links_and_held_devices_ping_over_them() {
    let cache = tempfile::tempdir().expect("cache");
    // (The seed matters: a fleet whose valid devices miss `premium` leaves its allow list empty,
    // which admits everyone, `not_allowed` devices included.)
    let text = r#"
thresholds = ["mismatches == 0", "errors == 0"]
[fleet]
seed = 17
devices = 42
mix = { valid = 8, truncated = 2, unmatched = 2, no_group = 2, blacklisted = 2, not_allowed = 2, expired = 2, forged = 2, bad_eku = 2, identity = 3, tpm = 3, tpm_wrong_ek = 2, tpm_replayed_nonce = 2, tpm_tampered_blob = 2, tpm_unenrolled = 2 }
[executor]
kind = "closed-loop"
concurrency = 20
[device]
link = "lte-m"
[device.class.tpm]
link = { preset = "lte-m", rtt = "150ms", name = "lte-m-far" }
"#;
    let loaded = Scenario::parse(text, "cellular.toml", "cellular").expect("scenario");
    let s = run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect("run")
        .summary;
    assert!(
        s.passed && s.mismatches == 0,
        "{:?} {:?}",
        s.thresholds,
        s.mismatch_examples
    );
    for (class, c) in &s.classes {
        assert_eq!(c.as_expected, c.devices, "{class:?}: {:?}", c.observed);
    }
    assert!(
        s.classes.keys().all(|c| s.links.contains_key(c)),
        "every class had a link: {:?}",
        s.links.keys()
    );
    assert_eq!(s.links[&DeviceClass::Valid].name, "lte-m");
    assert_eq!(s.links[&DeviceClass::Tpm].name, "lte-m-far");
    assert_eq!(s.links[&DeviceClass::Tpm].uplink_bps, Some(375_000));
    // Every connect paid at least LTE-M's round trip less its jitter both ways.
    let tcp = &s.latency[&Phase::Tcp];
    assert!(tcp.p50_us >= 60_000, "{tcp:?}");

    let held = r#"
thresholds = ["mismatches == 0", "errors == 0"]
[fleet]
seed = 19
devices = 6
mix = { valid = 1 }
[executor]
kind = "hold"
connect_concurrency = 6
hold = "1s"
ping_interval = "300ms"
[device]
link = { rtt = "60ms" }
"#;
    let loaded = Scenario::parse(held, "held.toml", "held").expect("scenario");
    let s = run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect("run")
        .summary;
    assert!(s.passed, "{:?} {:?}", s.thresholds, s.mismatch_examples);
    assert_eq!(s.hold.as_ref().map(|h| h.held_peak), Some(6));
    let ping = &s.latency[&Phase::Ping];
    assert!(ping.count >= 6, "{ping:?}");
    assert!(
        ping.p50_us >= 54_000 && ping.p50_us <= 70_000,
        "a Ping is one 60 ms round trip: {ping:?}"
    );
}

/// The shipped example parses with the links it documents.
#[test]
fn the_cellular_scenario_puts_x509_devices_on_lte_m_and_tpms_on_nb_iot() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/cellular.toml");
    let loaded = Scenario::load(&path).expect("scenarios/cellular.toml");
    let name = |c: DeviceClass| loaded.links.for_class(c).map(|p| p.name.as_str());
    assert_eq!(name(DeviceClass::Valid), Some("lte-m"));
    assert_eq!(name(DeviceClass::Identity), Some("lte-m"));
    assert_eq!(name(DeviceClass::Tpm), Some("nb-iot"));
}
