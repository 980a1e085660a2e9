//! What a device's outcome is counted as, end to end: a server that lets in a device that must be
//! refused gives false accepts, one that refuses a device that must get in gives a false reject
//! (both mismatches, the run fails); a device that runs out of time is an error of kind timeout,
//! retried as its policy says, and no mismatch (the run fails only through a threshold on it).

use std::path::Path;
use std::time::Duration;

use dps_loadgen::fleet::{self, DeviceClass, Expected};
use dps_loadgen::scenario::Scenario;
use dps_loadgen::{exit, run};

/// Edit the `[[enrollment_group]]` tables of the cached fleet's server config.
fn edit_groups(config: &Path, edit: impl Fn(&str, &mut toml::Table)) {
    let text = std::fs::read_to_string(config).expect("config");
    let mut doc: toml::Table = toml::from_str(&text).expect("config toml");
    let groups = doc
        .get_mut("enrollment_group")
        .and_then(toml::Value::as_array_mut)
        .expect("enrollment groups");
    for group in groups {
        let table = group.as_table_mut().expect("group table");
        let name = table
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        edit(&name, table);
    }
    std::fs::write(config, toml::to_string(&doc).expect("toml")).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lets_in_the_denied_and_denies_a_valid_device_is_caught() {
    let cache = tempfile::tempdir().expect("tmp");
    let loaded = Scenario::parse(
        r#"
thresholds = ["errors == 0"]
[fleet]
seed = 21
devices = 24
mix = { valid = 3, blacklisted = 1 }
[executor]
kind = "closed-loop"
concurrency = 4
"#,
        "outcomes.toml",
        "outcomes",
    )
    .expect("scenario");
    // The fleet's server, as the cache holds it, with its deny list moved: the blacklisted CNs
    // are let through, and one valid device of factory-a is denied instead.
    let ready = fleet::cache::load_or_build(&loaded.scenario.fleet, cache.path()).expect("fleet");
    let victim = ready
        .fleet
        .devices
        .iter()
        .find(|d| {
            d.class == DeviceClass::Valid
                && matches!(&d.expected, Expected::Accepted { group } if group == "factory-a")
        })
        .expect("a valid device of factory-a")
        .common_name
        .clone();
    let blacklisted = ready
        .fleet
        .devices
        .iter()
        .filter(|d| d.class == DeviceClass::Blacklisted)
        .count() as u64;
    assert!(blacklisted > 0);
    edit_groups(&ready.dir.path().join("config.toml"), |name, group| {
        let deny = if name == "factory-a" {
            vec![toml::Value::from(victim.as_str())]
        } else {
            Vec::new()
        };
        group.insert("deny_common_names".into(), toml::Value::Array(deny));
    });
    drop(ready);

    let outcome = run::run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect("run");
    let s = &outcome.summary;
    assert!(s.fleet_reused, "the run must use the edited server set-up");
    assert_eq!(s.false_accepts, blacklisted, "{:#?}", s.mismatch_examples);
    assert_eq!(s.false_rejects, 1, "{:#?}", s.mismatch_examples);
    assert_eq!(s.errors, 0, "{:#?}", s.mismatch_examples);
    // The verdict counters are mismatches (and the server's rejection counts no longer match
    // what the fleet expects, one more).
    assert!(
        s.mismatches > s.false_accepts + s.false_rejects,
        "{}",
        s.mismatches
    );
    let denied = &s.classes[&DeviceClass::Blacklisted];
    assert_eq!((denied.false_accepts, denied.as_expected), (blacklisted, 0));
    assert!(
        denied
            .observed
            .keys()
            .all(|k| k.starts_with("provisioned:")),
        "{:?}",
        denied.observed
    );
    let valid = &s.classes[&DeviceClass::Valid];
    assert_eq!(valid.false_rejects, 1);
    assert_eq!(valid.observed.get("rejected:AccessDenied"), Some(&1));
    // Every threshold held, and still the run fails: a wrong verdict always does.
    assert!(s.passed);
    assert_eq!(dps_loadgen::exit_code(s), exit::THRESHOLD_FAILED);
}

/// A listener that accepts connections and never says a word.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_runs_out_of_time_is_an_error_retried_and_no_mismatch() {
    let cache = tempfile::tempdir().expect("tmp");
    let (addr, server) = silent_server().await;
    let loaded = Scenario::parse(
        &format!(
            r#"
thresholds = ["mismatches == 0", "false_rejects == 0", "errors(timeout) == 0", "errors < 50%", "max(attempts) == 3"]
[target]
address = "{addr}"
tls_only = true
[fleet]
seed = 22
devices = 4
mix = {{ valid = 1 }}
[executor]
kind = "closed-loop"
concurrency = 4
[device]
handshake_only = true
skip_server_verification = true
timeout = "300ms"
retry = {{ policy = "exponential", base = "10ms", cap = "50ms", max_attempts = 3 }}
"#
        ),
        "silent.toml",
        "silent",
    )
    .expect("scenario");
    let started = std::time::Instant::now();
    let outcome = run::run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect("run");
    server.abort();
    let s = &outcome.summary;
    assert_eq!((s.errors, s.mismatches, s.false_rejects), (4, 0, 0));
    assert_eq!(
        s.failures.get(&dps_loadgen::device::FailureKind::Timeout),
        Some(&4)
    );
    // Three attempts each, every one of them timed out, one after the other.
    assert_eq!((s.attempts.total, s.attempts.max), (12, 3));
    assert_eq!(s.attempts.errors.get("timeout"), Some(&12));
    assert_eq!(s.storm.as_ref().map(|st| st.timeouts), Some(12));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(s.classes[&DeviceClass::Valid].attempts, 12);
    let verdicts: Vec<(&str, bool)> = s
        .thresholds
        .iter()
        .map(|t| (t.threshold.as_str(), t.passed))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("mismatches == 0", true),
            ("false_rejects == 0", true),
            ("errors(timeout) == 0", false),
            ("errors < 50%", false),
            ("max(attempts) == 3", true),
        ]
    );
    let percent = s.thresholds.iter().find(|t| t.threshold == "errors < 50%");
    assert_eq!(percent.map(|t| t.actual), Some(100.0));
    // Only the threshold on errors fails the run.
    assert_eq!(dps_loadgen::exit_code(s), exit::THRESHOLD_FAILED);
    let mut without = s.clone();
    without.passed = true;
    assert_eq!(dps_loadgen::exit_code(&without), exit::PASS);
}
