//! The generator's view of itself (issue 14): the `generator` section of a short run is present and
//! sane; a run where the generator is the bottleneck says so; a run whose ports cannot fit is
//! refused before any device starts (before its fleet is even built); and a second run right after
//! a first keeps clear of the first one's TIME_WAIT sockets.

use std::net::IpAddr;
use std::path::Path;

use dps_loadgen::saturation::{ports, GeneratorSummary, LimitedBy};
use dps_loadgen::scenario::Scenario;
use dps_loadgen::{exit, run_scenario};

/// One run at a time in this file: the verdicts depend on the machine not being shared with
/// another run of the same test binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scenario(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("name = \"{name}\"\n{body}")).expect("write scenario");
    path
}

fn generator(finished: &dps_loadgen::Finished) -> &GeneratorSummary {
    finished
        .outcome
        .summary
        .generator
        .as_ref()
        .expect("a generator section")
}

fn schema_errors(dir: &Path) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("summary.schema.json"))
            .expect("schema"),
    )
    .expect("schema is JSON");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
            .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    // The section is required: a summary without it does not validate.
    let mut without = json.clone();
    without.as_object_mut().expect("object").remove("generator");
    assert!(!validator.is_valid(&without));
    let mut wrong = json;
    wrong["generator"]["limited_by"] = serde_json::json!("nobody");
    assert!(!validator.is_valid(&wrong));
    errors
}

const LIGHT: &str = r#"
thresholds = ["mismatches == 0", "errors == 0", "dropped == 0"]
[fleet]
seed = 14
devices = 100
mix = { valid = 9, identity = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 50.0
max_lateness = "2s"
[device]
timeout = "20s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_run_measures_the_generator_and_does_not_blame_it() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = scenario(dir.path(), "light", LIGHT);
    let results = dir.path().join("results");
    let finished = run_scenario(&path, Some(&results), &|_| {})
        .await
        .expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    let g = generator(&finished);
    assert_ne!(g.limited_by, LimitedBy::Generator, "{:?}", g.reasons);
    assert!(!g.reasons.is_empty());
    // CPU: this process (server included: it is embedded) spent some, per device a finite figure.
    assert!(g.cpu.process_includes_server && g.cpu.server.is_none());
    let cpu = g.cpu.process.expect("process CPU");
    assert!(cpu.user_s + cpu.system_s > 0.0, "{cpu:?}");
    let per = cpu.ms_per_provisioned.expect("per provisioned");
    assert!(per.is_finite() && per > 0.0, "{per}");
    assert!(cpu.cores_used > 0.0 && cpu.cores_used <= g.cpu.cores as f64 + 0.5);
    assert!(g.cpu.wall_s > 1.0 && g.cpu.worker_threads == 2);
    // Starts were scheduled and measured; none dropped.
    let late = g.start_lateness.expect("lateness");
    assert_eq!(late.count, 100);
    assert_eq!((g.dropped_late, g.dropped_in_flight), (0, 0));
    // 100 devices, the identity ones reconnecting: every connection timed.
    let identity = s.classes[&dps_loadgen::fleet::DeviceClass::Identity].devices;
    assert!(identity > 0);
    assert_eq!(g.connect.connects, 100 + identity);
    assert!(g.connect.busy_s > 0.0 && g.connect.tcp_sum_s >= g.connect.busy_s * 0.5);
    // Ports: fresh loopback addresses outside 127.0.0.0/24, nothing toward the target at the
    // start, and the devices' own TIME_WAIT seen by the end.
    assert!(!g.ports.sources.is_empty());
    for ip in &g.ports.sources {
        let IpAddr::V4(v4) = ip else { panic!("{ip}") };
        assert!(v4.octets()[0] == 127 && v4.octets()[1] >= 1, "{ip}");
    }
    assert_eq!(g.ports.in_use_at_start, 0);
    assert!(
        g.ports.peak_in_use > 0 && g.ports.peak_time_wait > 0,
        "{:?}",
        g.ports
    );
    assert!(g.ports.needed >= 100 + identity && g.ports.free_at_start >= g.ports.needed);

    let dir = finished.results_dir.as_ref().expect("results");
    let errors = schema_errors(dir);
    assert!(errors.is_empty(), "{errors:#?}");
    let md = std::fs::read_to_string(dir.join("summary.md")).expect("md");
    assert!(
        md.contains("| this process (generator and embedded server) |"),
        "{md}"
    );
    let line = dps_loadgen::report::verdict_line(s).expect("verdict line");
    assert!(!line.contains("the generator, not the target"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_that_cannot_offer_the_load_says_so() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    // 300 starts in 0.15 s, but the generator lets only one device run at a time.
    let path = scenario(
        dir.path(),
        "capped",
        r#"
[fleet]
seed = 15
devices = 300
mix = { valid = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 2000.0
max_in_flight = 1
[device]
handshake_only = true
"#,
    );
    let results = dir.path().join("results");
    let finished = run_scenario(&path, Some(&results), &|_| {})
        .await
        .expect("run");
    let s = &finished.outcome.summary;
    let g = generator(&finished);
    assert!(
        g.dropped_in_flight > 0 && g.dropped_in_flight == s.dropped,
        "{g:?}"
    );
    assert_eq!(g.limited_by, LimitedBy::Generator, "{:?}", g.reasons);
    assert!(
        g.reasons.iter().any(|r| r.contains("max_in_flight")),
        "{:?}",
        g.reasons
    );
    let line = dps_loadgen::report::verdict_line(s).expect("verdict line");
    assert!(
        line.starts_with("the generator, not the target, limited this run: "),
        "{line}"
    );
    let md = std::fs::read_to_string(
        finished
            .results_dir
            .as_ref()
            .expect("dir")
            .join("summary.md"),
    )
    .expect("md");
    assert!(
        md.contains("The generator, not the target, limited this run:"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_ports_cannot_fit_is_refused_before_its_fleet_is_built() {
    let cache = tempfile::tempdir().expect("tmp");
    // 1,000 devices a second from one source address, which has about 28,000 ports: 10,000 in
    // flight (10 s timeout) and 40,000 in TIME_WAIT (every device of the run within 60 s).
    let loaded = Scenario::parse(
        r#"
[fleet]
devices = 40000
mix = { valid = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 1000.0
[device]
timeout = "10s"
source_addresses = 1
"#,
        "ports.toml",
        "ports",
    )
    .expect("the scenario itself is valid");
    let err = dps_loadgen::run::run_with_cache(&loaded, cache.path(), &|_| {})
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("port budget")
            && text.contains("device.source_addresses")
            && text.contains("50000 ephemeral ports")
            && text.contains("40000 in TIME_WAIT"),
        "{text}"
    );
    assert_eq!(dps_loadgen::Error::from(err).exit_code(), exit::ABORTED);
    let built = std::fs::read_dir(cache.path()).expect("cache").count();
    assert_eq!(built, 0, "no fleet may be built for a refused run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_keeps_clear_of_the_first_runs_time_wait() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let body = r#"
[fleet]
seed = 16
devices = 200
mix = { valid = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 200.0
max_lateness = "2s"
[device]
handshake_only = true
"#;
    let path = scenario(dir.path(), "twice", body);
    let first = run_scenario(&path, None, &|_| {}).await.expect("first");
    let a = generator(&first).clone();
    // The first run's devices closed first: their ports wait in TIME_WAIT, from its sources.
    let toward = ports::toward("127.0.0.1".parse().expect("ip"), None).expect("/proc/net/tcp");
    let left: u64 = a
        .ports
        .sources
        .iter()
        .map(|ip| toward.time_wait.get(ip).copied().unwrap_or(0))
        .sum();
    assert!(
        left >= 100,
        "{left} TIME_WAIT sockets left by the first run"
    );
    let second = run_scenario(&path, None, &|_| {}).await.expect("second");
    let b = generator(&second);
    assert!(
        b.ports
            .sources
            .iter()
            .all(|ip| !a.ports.sources.contains(ip)),
        "{:?} vs {:?}",
        a.ports.sources,
        b.ports.sources
    );
    assert!(
        b.ports.sources.iter().all(|ip| toward.from(ip) == 0),
        "the second run's sources had sockets toward the target"
    );
    assert_eq!(b.ports.in_use_at_start, 0);
    for (g, run) in [(&a, &first), (b, &second)] {
        assert_eq!(run.outcome.summary.handshakes, 200, "{:?}", g.reasons);
        assert_eq!(g.connect.connects, 200);
    }
    // Connecting did not get dearer (a generous margin: per connect, not above 5× plus 1 ms).
    let per = |g: &GeneratorSummary| g.connect.busy_s / g.connect.connects as f64;
    assert!(per(b) <= 5.0 * per(&a) + 0.001, "{} vs {}", per(b), per(&a));
}
