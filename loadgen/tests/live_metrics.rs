//! Live metrics (`--metrics-listen`): a short embedded run scraped while it goes shows its
//! counters growing and well-formed histograms (read with an independent parser of the
//! Prometheus text format), and a scrape after the run agrees with its summary; bad requests get
//! 404/405. The Grafana dashboard names only metrics that the generator or the server expose.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use dps_loadgen::live::{self, LiveMetrics};
use dps_loadgen::scenario::Scenario;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 request: the status code, the Content-Type and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
}

/// The value of an unlabelled counter or gauge, or of the sample whose labels include `label`.
fn value(s: &Scrape, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples.iter().find_map(|x| {
        let labelled = label.is_none_or(|(k, v)| x.labels.get(k) == Some(v));
        if x.metric != metric || !labelled {
            return None;
        }
        match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        }
    })
}

/// Every histogram's buckets are cumulative and its `+Inf` bucket is its `_count`.
fn check_histograms(s: &Scrape) -> usize {
    let mut seen = 0;
    for x in &s.samples {
        let Value::Histogram(buckets) = &x.value else {
            continue;
        };
        let mut b = buckets.clone();
        b.sort_by(|a, c| a.less_than.total_cmp(&c.less_than));
        assert!(b.windows(2).all(|w| w[0].count <= w[1].count), "{b:?}");
        let phase = x.labels.get("phase").expect("phase label");
        let last = b.last().expect("buckets");
        assert!(last.less_than.is_infinite());
        let count = value(s, &format!("{}_count", x.metric), Some(("phase", phase)));
        assert_eq!(Some(last.count), count, "{phase}");
        seen += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_watched_live_and_its_last_scrape_is_its_summary() {
    let cache = tempfile::tempdir().expect("tmp");
    let loaded = Scenario::parse(
        r#"
[fleet]
seed = 31
devices = 60
mix = { valid = 3, blacklisted = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 30.0
max_lateness = "5s"
"#,
        "live.toml",
        "live",
    )
    .expect("scenario");
    let metrics = LiveMetrics::new();
    let server = live::serve("127.0.0.1:0".parse().expect("addr"), metrics.clone())
        .await
        .expect("bind");
    let addr = server.addr();
    assert_ne!(addr.port(), 0, "the bound port is known");
    let done = AtomicBool::new(false);
    let run = async {
        let out = dps_loadgen::run::run_observed(&loaded, cache.path(), &|_| {}, Some(&metrics))
            .await
            .expect("run");
        done.store(true, Ordering::Relaxed);
        out
    };
    let scrape = async {
        let mut completed = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let (status, _, body) = request(addr, "GET", "/metrics").await;
            assert_eq!(status, 200);
            let s = parse(&body);
            check_histograms(&s);
            completed
                .push(value(&s, "dpsloadgen_devices_completed_total", None).expect("completed"));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        completed
    };
    let (outcome, completed) = tokio::join!(run, scrape);
    let summary = &outcome.summary;
    assert!(completed.windows(2).all(|w| w[0] <= w[1]), "{completed:?}");
    // The schedule spans 2 s and a snapshot is published every 250 ms: some scrape saw the run
    // part-way (after its first device, before its last).
    let part_way = |v: &f64| *v > 0.0 && (*v as u64) < summary.devices;
    assert!(completed.iter().any(part_way), "{completed:?}");

    // The endpoint stays up until its server is dropped: the scrape after the run is its end.
    let (status, content_type, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let s = parse(&body);
    assert!(check_histograms(&s) >= 2);
    let counter = |m: &str| value(&s, m, None).map(|v| v as u64);
    assert_eq!(
        counter("dpsloadgen_devices_completed_total"),
        Some(summary.devices)
    );
    assert_eq!(
        counter("dpsloadgen_devices_started_total"),
        Some(summary.devices)
    );
    assert_eq!(
        counter("dpsloadgen_devices_provisioned_total"),
        Some(summary.provisioned)
    );
    assert_eq!(
        counter("dpsloadgen_mismatches_total"),
        Some(summary.mismatches)
    );
    assert_eq!(counter("dpsloadgen_in_flight"), Some(0));
    let blacklisted =
        summary.classes.values().map(|c| c.as_expected).sum::<u64>() - summary.provisioned;
    assert!(blacklisted > 0);
    assert_eq!(
        counter("dpsloadgen_devices_refused_as_expected_total"),
        Some(blacklisted)
    );
    let errors: u64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "dpsloadgen_errors_total")
        .filter_map(|x| match x.value {
            Value::Counter(v) => Some(v as u64),
            _ => None,
        })
        .sum();
    assert_eq!(errors, summary.errors);
    for (phase, q) in &summary.latency {
        let count = value(
            &s,
            "dpsloadgen_phase_duration_seconds_count",
            Some(("phase", phase.as_str())),
        );
        assert_eq!(count, Some(q.count as f64), "{phase}");
    }

    let (status, _, _) = request(addr, "GET", "/nothing-here").await;
    assert_eq!(status, 404);
    let (status, _, _) = request(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped: closed"
    );
}

/// Metric names of an exposition, each histogram's and summary's series included.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            out.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            if let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// The metric names in a PromQL expression: identifiers of our prefixes (labels and functions
/// have none of them).
fn expr_metrics(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["dps_", "dpsloadgen_", "process_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_dashboard_expression_names_an_exposed_metric() {
    let generator = live::render::render(&live::LiveView::default());
    let server = dps_server::metrics::Metrics::new().prometheus();
    let mut known = names(&generator);
    known.extend(names(&server));
    for name in live::render::NAMES {
        assert!(known.contains(name), "{name} is listed but not exposed");
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/dpsbench.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    assert!(dashboard["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(vars
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let metrics = expr_metrics(expr);
            assert!(!metrics.is_empty(), "{expr} names no metric");
            for m in metrics {
                assert!(known.contains(&m), "{expr}: {m} is exposed by neither side");
                let side = if m.starts_with("dpsloadgen_") {
                    "generator"
                } else {
                    "server"
                };
                *by_source.entry(side).or_default() += 1;
            }
        }
    }
    assert!(
        by_source.get("generator") >= Some(&5) && by_source.get("server") >= Some(&3),
        "{by_source:?}"
    );
}

/// The command line: `--metrics-listen 127.0.0.1:0` prints the bound address on stderr, and the
/// endpoint answers there while the run goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_bound_address_and_serves_there() {
    use tokio::io::AsyncBufReadExt as _;
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = tmp.path().join("cli.toml");
    std::fs::write(
        &scenario,
        "[fleet]\nseed = 32\ndevices = 60\nmix = { valid = 1 }\n\
         [executor]\nkind = \"constant-arrival-rate\"\nrate = 20.0\n",
    )
    .expect("scenario");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dps-loadgen"))
        .arg("run")
        .arg(&scenario)
        .args(["--quiet", "--metrics-listen", "127.0.0.1:0", "--results"])
        .arg(tmp.path().join("results"))
        .env("DPSBENCH_CACHE", tmp.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next_line()
            .await
            .expect("stderr")
            .expect("a metrics line");
        if let Some(rest) = line.strip_prefix("metrics: http://") {
            break rest.trim_end_matches("/metrics").parse().expect("address");
        }
    };
    assert_ne!(addr.port(), 0);
    // The endpoint is bound before the fleet is even built and the schedule spans 3 s.
    let (status, content_type, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let s = parse(&body);
    // Before the first device (fleet still building) or part-way: a valid exposition either way.
    assert!(value(&s, "dpsloadgen_devices_completed_total", None).is_some());
    check_histograms(&s);
    while lines.next_line().await.ok().flatten().is_some() {}
    let status = child.wait().await.expect("exit");
    assert_eq!(status.code(), Some(i32::from(dps_loadgen::exit::PASS)));
}
