//! Segments (`run --segment I/N`) and `merge`: the segments' starts are disjoint and together the
//! scenario's (every executor); a small scenario run as 3 segments and merged counts what the
//! unsegmented run counts, its histograms are the segments' merged, its summary is schema-valid,
//! and its thresholds are judged on the merged run (a count threshold that every segment fails
//! holds on the merge), its storm numbers put back together. Merge refuses duplicates, gaps,
//! other scenarios and unsegmented runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dps_loadgen::executor::plan;
use dps_loadgen::fleet::{self, DeviceClass};
use dps_loadgen::merge::{self, MergeError};
use dps_loadgen::scenario::{ExecutorSpec, Scenario, Stage};
use dps_loadgen::segment::Segment;
use dps_loadgen::{exit, run_loaded};

const FLEET: &str = r#"
[fleet]
seed = 41
devices = 40
mix = { valid = 3, blacklisted = 1 }
"#;

fn executors() -> Vec<ExecutorSpec> {
    let lateness = Duration::from_secs(1);
    vec![
        ExecutorSpec::ClosedLoop { concurrency: 7 },
        ExecutorSpec::ConstantArrivalRate {
            rate: 50.0,
            max_in_flight: 0,
            max_lateness: lateness,
        },
        ExecutorSpec::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![Stage {
                target: 60.0,
                duration: Duration::from_secs(2),
            }],
            max_in_flight: 0,
            max_lateness: lateness,
        },
        ExecutorSpec::Hold {
            rate: 20.0,
            connect_concurrency: 5,
            hold: Duration::from_secs(1),
            ping_interval: Duration::from_secs(5),
        },
    ]
}

#[test]
fn segments_are_disjoint_and_together_the_whole_fleet_and_schedule() {
    let cache = tempfile::tempdir().expect("tmp");
    let text = format!("{FLEET}\n[executor]\nkind = \"closed-loop\"\nconcurrency = 7\n");
    let loaded = Scenario::parse(&text, "seg.toml", "seg").expect("scenario");
    let ready = fleet::cache::load_or_build(&loaded.scenario.fleet, cache.path()).expect("fleet");
    let devices = &ready.fleet.devices;
    let ids = |starts: &[(usize, f64)]| -> Vec<String> {
        starts
            .iter()
            .map(|(i, _)| devices[*i].common_name.clone())
            .collect()
    };
    for spec in executors() {
        let whole = plan(devices.len(), &spec, Segment::WHOLE);
        let count = 3;
        let parts: Vec<Vec<(usize, f64)>> = (1..=count)
            .map(|index| plan(devices.len(), &spec, Segment { index, count }))
            .collect();
        // Together: the whole schedule, start for start (offsets and devices).
        let mut joined: Vec<(usize, f64)> = parts.iter().flatten().copied().collect();
        joined.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut expected = whole.clone();
        expected.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        assert_eq!(joined, expected, "{spec:?}");
        if matches!(spec, ExecutorSpec::RampingArrivalRate { .. }) {
            // A ramp's starts cycle through the fleet: disjoint by start, not by device.
            continue;
        }
        let all: BTreeSet<String> = devices.iter().map(|d| d.common_name.clone()).collect();
        let mut union = BTreeSet::new();
        for part in &parts {
            for id in ids(part) {
                assert!(
                    union.insert(id.clone()),
                    "{id} is in two segments ({spec:?})"
                );
            }
        }
        assert_eq!(union, all, "{spec:?}");
    }
    // The same fleet index is the same device in every segment's fleet build.
    let again = tempfile::tempdir().expect("tmp");
    let rebuilt = fleet::cache::load_or_build(&loaded.scenario.fleet, again.path()).expect("fleet");
    let names = |f: &fleet::Fleet| -> Vec<(String, DeviceClass)> {
        f.devices
            .iter()
            .map(|d| (d.common_name.clone(), d.class))
            .collect()
    };
    assert_eq!(names(&rebuilt.fleet), names(&ready.fleet));
}

/// The scenario: the fleet, a constant rate, a count threshold with `limit` provisioned.
fn scenario(limit: u64) -> dps_loadgen::scenario::Loaded {
    let text = format!(
        "name = \"segments\"\nthresholds = [\"mismatches == 0\", \"provisioned >= {limit}\"]\n{FLEET}\n\
         [executor]\nkind = \"constant-arrival-rate\"\nrate = 80.0\nmax_lateness = \"5s\"\n"
    );
    Scenario::parse(&text, "segments.toml", "segments").expect("scenario")
}

fn only_dir(parent: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .expect("results")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_segments_merge_into_the_run_of_the_whole_scenario() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = scenario(0);
    let ready = fleet::cache::load_or_build(&base.scenario.fleet, &fleet::cache::cache_root())
        .expect("fleet");
    let valid = |seg: Segment| {
        plan(40, &base.scenario.executor, seg)
            .iter()
            .filter(|(i, _)| ready.fleet.devices[*i].class == DeviceClass::Valid)
            .count() as u64
    };
    // A count every segment falls short of and the whole scenario reaches.
    let limit = valid(Segment::WHOLE);
    assert!((1..=3).all(|index| valid(Segment { index, count: 3 }) < limit));
    drop(ready);
    let loaded = scenario(limit);

    let whole = run_loaded(&loaded, Some(&tmp.path().join("whole")), &|_| {}, None)
        .await
        .expect("whole run");
    assert_eq!(
        whole.exit_code,
        exit::PASS,
        "{:#?}",
        whole.outcome.summary.thresholds
    );
    let mut dirs = Vec::new();
    for index in 1..=3 {
        let mut seg = loaded.clone();
        seg.segment = Some(Segment { index, count: 3 });
        let out = tmp.path().join(format!("seg{index}"));
        let done = run_loaded(&seg, Some(&out), &|_| {}, None)
            .await
            .expect("segment");
        assert_eq!(
            done.exit_code,
            exit::THRESHOLD_FAILED,
            "segment {index} alone is short"
        );
        assert_eq!(done.outcome.summary.mismatches, 0);
        dirs.push(only_dir(&out));
    }
    let out = tmp.path().join("merged");
    let merged = merge::merge(&dirs, &out).expect("merge");
    let m = &merged.outcome.summary;
    let w = &whole.outcome.summary;
    assert!(m.passed, "judged on the merged run: {:#?}", m.thresholds);
    assert_eq!(dps_loadgen::exit_code(m), exit::PASS);
    let counts = |s: &dps_loadgen::summary::Summary| {
        (
            s.devices,
            s.provisioned,
            s.handshakes,
            s.mismatches,
            s.errors,
            s.attempts.total,
        )
    };
    assert_eq!(counts(m), counts(w));
    assert_eq!(m.expected_rejections, w.expected_rejections);
    assert_eq!(m.server_rejections, w.server_rejections);
    for (class, c) in &w.classes {
        assert_eq!(m.classes[class].devices, c.devices, "{class:?}");
        assert_eq!(m.classes[class].as_expected, c.as_expected, "{class:?}");
    }
    let per_phase = |s: &dps_loadgen::summary::Summary| -> Vec<(String, u64)> {
        s.latency
            .iter()
            .map(|(p, q)| (p.to_string(), q.count))
            .collect()
    };
    assert_eq!(per_phase(m), per_phase(w));
    let completed: u64 = m.timeline.iter().map(|s| s.completed).sum();
    assert_eq!(completed, m.devices);
    // The storm numbers come back from the segments' arrival times.
    let (ms, ws) = (
        m.storm.as_ref().expect("merged storm"),
        w.storm.as_ref().expect("storm"),
    );
    assert_eq!(
        (ms.must_get_in, ms.got_in, ms.busy_answers, ms.timeouts),
        (ws.must_get_in, ws.got_in, ws.busy_answers, ws.timeouts)
    );
    assert!(ms.time_to_100_us.is_some() && ms.time_to_99_us.is_some());
    assert_eq!(merged.outcome.got_in.len() as u64, ms.got_in);

    // What was written: the merged histograms are exactly the segments' added together.
    let parts: Vec<merge::Part> = dirs.iter().map(|d| merge::read(d).expect("part")).collect();
    let written = merge::read(&out).expect("merged dir reads back");
    let added = merge::merge_histograms(parts.iter().map(|p| &p.phases));
    assert_eq!(written.phases, added);
    for (phase, h) in &written.phases {
        let sum: u64 = parts
            .iter()
            .filter_map(|p| p.phases.get(phase))
            .map(|h| h.len())
            .sum();
        assert_eq!(h.len(), sum, "{phase}");
        assert_eq!(m.latency[phase].p99_us, h.value_at_quantile(0.99));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/summary.schema.json"))
            .expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(out.join("summary.md").exists() && out.join("latency.svg").exists());

    refusals(&dirs, &only_dir(&tmp.path().join("whole")), tmp.path());
}

/// Merge refuses a segment twice, a missing one, an unsegmented run and another scenario's.
fn refusals(dirs: &[PathBuf], whole: &Path, tmp: &Path) {
    let out = tmp.join("refused");
    let twice = [dirs[0].clone(), dirs[0].clone(), dirs[1].clone()];
    assert!(matches!(
        merge::merge(&twice, &out),
        Err(MergeError::Duplicate { index: 1, .. })
    ));
    let gap = [dirs[0].clone(), dirs[2].clone()];
    match merge::merge(&gap, &out) {
        Err(MergeError::Missing { missing, count: 3 }) => assert_eq!(missing, [2]),
        other => panic!("{other:?}"),
    }
    let plain = [whole.to_owned(), dirs[1].clone()];
    assert!(matches!(
        merge::merge(&plain, &out),
        Err(MergeError::NotSegment(_))
    ));
    let other = tmp.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::copy(dirs[2].join("histograms.txt"), other.join("histograms.txt")).expect("copy");
    let text = std::fs::read_to_string(dirs[2].join("summary.json")).expect("summary");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["segment"]["scenario_hash"] = "0123456789abcdef".into();
    std::fs::write(other.join("summary.json"), v.to_string()).expect("write");
    let mixed = [dirs[0].clone(), dirs[1].clone(), other];
    assert!(matches!(
        merge::merge(&mixed, &out),
        Err(MergeError::Mismatch { .. })
    ));
    assert!(!out.exists(), "nothing is written when a merge is refused");
}

/// The command line: a bad `--segment` and a merge of what is not a segment are refused (exit 2)
/// before anything runs or is written.
#[test]
fn the_cli_refuses_a_bad_segment_and_a_merge_of_no_segments() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exe = env!("CARGO_BIN_EXE_dps-loadgen");
    let code = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(exe)
            .args(args)
            .env("DPSBENCH_CACHE", tmp.path().join("cache"))
            .output()
            .expect("run")
            .status
            .code()
    };
    let scenario = tmp.path().join("s.toml");
    std::fs::write(
        &scenario,
        format!("{FLEET}\n[executor]\nkind = \"closed-loop\"\nconcurrency = 2\n"),
    )
    .expect("scenario");
    let out = tmp.path().join("out");
    for bad in ["0/3", "4/3", "x"] {
        let args = [
            "run".as_ref(),
            scenario.as_os_str(),
            "--segment".as_ref(),
            bad.as_ref(),
        ];
        assert_eq!(code(&args), Some(i32::from(exit::BAD_SCENARIO)), "{bad}");
    }
    let missing = tmp.path().join("no-such-run");
    let args = [
        "merge".as_ref(),
        missing.as_os_str(),
        "--results".as_ref(),
        out.as_os_str(),
    ];
    assert_eq!(code(&args), Some(i32::from(exit::BAD_SCENARIO)));
    assert!(!out.exists());
}
