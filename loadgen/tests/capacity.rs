//! `capacity` end to end against the embedded server: a search whose SLOs hold up to the maximum
//! reports the maximum and passes its gate; one whose SLO cannot hold reports no capacity and
//! fails; both result directories validate against `capacity.schema.json` and hold the step
//! chart and every step's own reports.

use std::path::Path;
use std::time::Duration;

use dps_loadgen::capacity::{self, Bound, CapacityGate, CapacitySpec, SearchSpec, StepSpec};
use dps_loadgen::scenario::Scenario;

const SCENARIO: &str = r#"
name = "cap"
thresholds = ["mismatches == 0"]
[fleet]
seed = 5
devices = 40
mix = { valid = 1 }
[executor]
kind = "closed-loop"
concurrency = 4
[device]
timeout = "10s"
"#;

fn schema_errors(dir: &Path) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("capacity.schema.json"),
        )
        .expect("schema"),
    )
    .expect("schema is JSON");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"),
    )
    .expect("summary is JSON");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    validator.iter_errors(&doc).map(|e| e.to_string()).collect()
}

fn spec(slo: &str, max_rate: f64, max_steps: usize, gates: Vec<CapacityGate>) -> CapacitySpec {
    CapacitySpec {
        slos: vec![slo.parse().expect("slo")],
        search: SearchSpec {
            start_rate: 20.0,
            max_rate,
            max_steps,
            ..SearchSpec::default()
        },
        step: StepSpec {
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(1),
            ..StepSpec::default()
        },
        gates,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_its_bound_writes_its_reports_and_gates() {
    let base = Scenario::parse(SCENARIO, "test", "cap").expect("scenario");
    let results = tempfile::tempdir().expect("tmp");
    let gate: CapacityGate = "capacity >= 30/s".parse().expect("gate");
    let done = capacity::search(
        &base,
        &spec("p99(total) < 10s", 40.0, 6, vec![gate]),
        results.path(),
        &|_| {},
    )
    .await
    .expect("search");
    let s = &done.summary;
    let rates: Vec<f64> = s.steps.iter().map(|r| r.rate_per_s).collect();
    assert_eq!(rates, vec![20.0, 40.0], "{s:#?}");
    assert_eq!(
        (s.capacity_per_s, s.bound),
        (40.0, Bound::MaxRate),
        "{s:#?}"
    );
    assert!(s.passed && s.thresholds.len() == 1 && s.thresholds[0].passed);
    assert_eq!(s.slos, vec!["p99(total) < 10s", "mismatches == 0"]);
    for step in &s.steps {
        // 1.5 s at the rate, the first 0.5 s left out: about a rate's worth of devices counted.
        assert!(
            step.devices > 0 && step.devices <= (step.rate_per_s * 1.2) as u64,
            "{step:?}"
        );
        assert_eq!((step.errors, step.mismatches), (0, 0), "{step:?}");
    }
    assert_eq!(schema_errors(&done.dir), Vec::<String>::new());
    assert!(std::fs::read_to_string(done.dir.join("steps.svg"))
        .expect("steps.svg")
        .starts_with("<svg"));
    let page = std::fs::read_to_string(done.dir.join("report.html")).expect("report.html");
    dps_loadgen::report::html::check::balanced(&page).expect("balanced");
    dps_loadgen::report::html::check::no_external(&page).expect("offline");
    assert!(page.contains("<h2>Steps</h2>") && page.contains("<svg"));
    assert_eq!(
        std::fs::read_dir(done.dir.join("steps"))
            .expect("steps")
            .count(),
        2
    );

    // An SLO no step can meet: no capacity; the first rate's failure is confirmed by a second
    // run, then the search bisects below it.
    let done = capacity::search(
        &base,
        &spec("p99(total) < 1us", 40.0, 3, Vec::new()),
        results.path(),
        &|_| {},
    )
    .await
    .expect("search");
    let s = &done.summary;
    let rates: Vec<f64> = s.steps.iter().map(|r| r.rate_per_s).collect();
    assert_eq!(rates, vec![20.0, 20.0, 10.0], "{s:#?}");
    assert_eq!(s.capacity_per_s, 0.0);
    assert!(!s.passed);
    assert_eq!(schema_errors(&done.dir), Vec::<String>::new());

    // A baseline gate reads the first search's result.
    let first = std::fs::read_dir(results.path())
        .expect("results")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p.join("summary.json"))
                .is_ok_and(|t| t.contains("\"capacity_per_s\": 40.0"))
        })
        .expect("the first search's directory");
    let gate = CapacityGate::baseline(&first, "10%").expect("baseline");
    assert!(gate.judge(36.0).passed && !gate.judge(35.0).passed);
}
