//! The pictures and `report.html` of issue 15: a short embedded run writes `timeline.svg` beside
//! `latency.svg` and a self-contained `report.html` (balanced markup, every section, the charts
//! inlined, no external address), its timeline has the new per-second fields, `compare` writes a
//! page with both runs side by side, and a scenario name full of markup is escaped (one run for
//! all of it: the machine is shared). With
//! `DPS_BROWSER_TEST=1` (set by `.ci/run`) both pages are also opened offline in headless
//! Chromium by `tests/browser/check.mjs`, which must pass.

use std::path::{Path, PathBuf};

use dps_loadgen::report::html::{self, check};
use dps_loadgen::{exit, run_scenario};

const RAMP: &str = r#"
thresholds = ["mismatches == 0", "p99(total) < 30s"]
[fleet]
seed = 15
devices = 120
mix = { valid = 8, blacklisted = 1, forged = 1, identity = 1 }
[executor]
kind = "ramping-arrival-rate"
start_rate = 10.0
max_lateness = "2s"
stages = [{ target = 60.0, duration = "2s" }, { target = 60.0, duration = "1s" }]
[device]
timeout = "20s"
"#;

fn write_scenario(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("name = \"{name}\"\n{RAMP}")).expect("write scenario");
    path
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A page is balanced, offline, and holds `sections` and at least `charts` inlined SVGs.
fn assert_page(page: &str, sections: &[&str], charts: usize) {
    check::balanced(page).expect("balanced markup");
    check::no_external(page).expect("no external address");
    for s in sections {
        assert!(page.contains(&format!("<h2>{s}</h2>")), "section {s}");
    }
    assert!(page.matches("<svg").count() >= charts, "charts");
    assert!(!page.contains("<script"), "no script");
}

fn timeline_has_the_new_fields(s: &dps_loadgen::summary::Summary) {
    let t = &s.timeline;
    assert!(t.len() >= 3, "{t:?}");
    let offered: u64 = t.iter().map(|x| x.offered).sum();
    assert_eq!(offered, s.devices + s.dropped, "{t:?}");
    let completed: u64 = t.iter().map(|x| x.completed).sum();
    assert_eq!(completed, s.devices);
    // The ramp offers more at its end than at its start.
    assert!(t[2].offered > t[0].offered, "{t:?}");
    assert_eq!(t.last().map(|x| x.in_flight), Some(0));
    let busy = t.iter().filter(|x| x.completed > 0);
    for x in busy {
        assert!(
            x.p50_total_us > 0 && x.p50_total_us <= x.p99_total_us,
            "{x:?}"
        );
        assert!(
            x.p50_handshake_us > 0 && x.p50_handshake_us <= x.p99_handshake_us,
            "{x:?}"
        );
    }
    // Embedded: the server's figures are this process's, sampled once a second.
    assert!(
        t.iter().any(|x| x.server_rss_bytes.is_some_and(|b| b > 0)),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|x| x.server_cpu_percent.is_some_and(|c| c > 0.0)),
        "{t:?}"
    );
}

/// Open `pages` (min charts, path) in headless Chromium through the node checker.
fn browser_check(pages: &[(usize, &Path)], shots: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "DPS_BROWSER_TEST=1 needs `npm ci --prefix loadgen/tests/browser`"
    );
    let mut cmd = std::process::Command::new("node");
    cmd.arg(dir.join("check.mjs")).arg(shots);
    for (charts, page) in pages {
        cmd.arg(format!("{charts}:{}", page.display()));
    }
    let out = cmd.output().expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser check failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_and_a_comparison_write_self_contained_reports() {
    let tmp = tempfile::tempdir().expect("tmp");
    let results = tmp.path().join("results");
    let path = write_scenario(tmp.path(), "report-ramp");
    let finished = run_scenario(&path, Some(&results), &|_| {})
        .await
        .expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    timeline_has_the_new_fields(s);
    markup_is_escaped(s.clone());
    let dir = finished.results_dir.clone().expect("results dir");
    let timeline = read(&dir, "timeline.svg");
    assert!(timeline.starts_with("<svg") && timeline.contains("in flight"));
    let page = read(&dir, "report.html");
    let sections = [
        "Verdict",
        "Thresholds",
        "Classes and outcomes",
        "Timeline",
        "Percentiles",
        "Generator and bottleneck",
        "The server&#39;s view",
    ];
    assert_page(&page, &sections, 2);
    assert!(page.contains("p99(total) &lt; 30s") && page.contains("blacklisted"));

    let compared = dps_loadgen::compare::write(&results, (&dir, s), (&dir.join("summary.json"), s))
        .expect("compare report");
    let pair = read(&compared, "report.html");
    assert_page(&pair, &["B against A", "Timeline"], 4);
    assert_eq!(pair.matches("<h2>Timeline</h2>").count(), 2, "both runs");
    assert!(pair.contains("provisioned/s"));
    assert!(compared.join("compare.md").is_file());

    if std::env::var("DPS_BROWSER_TEST").as_deref() == Ok("1") {
        let shots = std::env::var_os("DPS_BROWSER_SHOTS")
            .map_or_else(|| tmp.path().join("shots"), PathBuf::from);
        browser_check(
            &[
                (2, &dir.join("report.html")),
                (4, &compared.join("report.html")),
            ],
            &shots,
        );
    }
}

/// A scenario name, a threshold and an example full of markup come out as text.
fn markup_is_escaped(mut s: dps_loadgen::summary::Summary) {
    s.scenario = "<script>alert(1)</script>".into();
    s.mismatch_examples
        .push("\"><img src=x onerror=alert(2)>".into());
    if let Some(t) = s.thresholds.first_mut() {
        t.threshold = "<b>bold</b> & co".into();
    }
    let timeline = dps_loadgen::report::html::pair::timeline_svg(&s).expect("svg");
    let page = html::run::page(
        &s,
        &html::run::Pictures {
            timeline: Some(&timeline),
            latency: None,
        },
    );
    assert_page(&page, &["Verdict", "Timeline"], 1);
    assert!(!page.contains("<img") && !page.contains("<b>"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"));
}
