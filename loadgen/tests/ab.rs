//! `ab` end to end against the embedded server: blocks interleaved A B, B A; every metric with a
//! ratio; the result validates against `ab.schema.json`; two fleets that differ are refused.

use std::path::Path;

use dps_loadgen::ab::{self, AbError};
use dps_loadgen::scenario::Scenario;

fn scenario(name: &str, devices: u32) -> String {
    format!(
        r#"
name = "{name}"
thresholds = ["mismatches == 0"]
[fleet]
seed = 9
devices = {devices}
mix = {{ valid = 1 }}
[executor]
kind = "closed-loop"
concurrency = 4
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_interleave_and_every_metric_gets_a_ratio() {
    let a = Scenario::parse(&scenario("a", 40), "a", "a").expect("a");
    let b = Scenario::parse(&scenario("b", 40), "b", "b").expect("b");
    let results = tempfile::tempdir().expect("tmp");
    let done = ab::run(&a, &b, 2, results.path(), &|_| {})
        .await
        .expect("ab");
    let s = &done.summary;
    assert_eq!(s.order, vec!["A", "B", "B", "A"]);
    assert_eq!(s.mismatches, 0);
    assert_eq!(s.metrics.len(), ab::METRICS.len());
    for m in &s.metrics {
        assert_eq!((m.a.len(), m.b.len()), (2, 2), "{m:?}");
        if m.metric.contains("cpu") && m.metric.starts_with("server") {
            // An embedded server has no CPU of its own to report.
            continue;
        }
        let r = m.ratio.unwrap_or_else(|| panic!("no ratio for {m:?}"));
        assert!(
            r.low <= r.ratio && r.ratio <= r.high && r.pairs == 2,
            "{m:?}"
        );
    }
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ab.schema.json"))
            .expect("schema"),
    )
    .expect("schema is JSON");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(done.dir.join("summary.json")).expect("summary"),
    )
    .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        std::fs::read_dir(done.dir.join("runs"))
            .expect("runs")
            .count(),
        4
    );
    // report.html: the ratio table, then the last block of each side side by side, offline.
    let page = std::fs::read_to_string(done.dir.join("report.html")).expect("report.html");
    dps_loadgen::report::html::check::balanced(&page).expect("balanced");
    dps_loadgen::report::html::check::no_external(&page).expect("offline");
    assert!(page.contains("B/A") && page.contains("provisioned_per_s"));
    assert_eq!(page.matches("<h2>Timeline</h2>").count(), 2);

    let other = Scenario::parse(&scenario("c", 41), "c", "c").expect("c");
    let refused = ab::run(&a, &other, 2, results.path(), &|_| {}).await;
    assert!(
        matches!(refused, Err(AbError::Fleets { .. })),
        "{refused:?}"
    );
}
