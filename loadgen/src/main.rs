//! The `dps-loadgen` command line: a thin layer over [`dps_loadgen::run_scenario`].

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod verify_capture;

#[derive(Parser)]
#[command(
    name = "dps-loadgen",
    version,
    about = "Load generator for IoT Device Provisioning Services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (embedded server unless it names a target) and write its reports.
    /// Exit codes: 0 pass, 99 threshold or expectation failed, 2 bad scenario, 3 aborted.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Where result directories go.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress line, even on a terminal.
        #[arg(long)]
        quiet: bool,
        /// Serve live metrics (Prometheus text, `GET /metrics`) on this address while the run
        /// goes, e.g. 127.0.0.1:9464 (port 0: any free port); the bound address is printed on
        /// stderr as `metrics: http://ADDR/metrics`.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Run only the I-th of N disjoint parts of the scenario (1-based; every N-th start of
        /// its schedule, concurrency split), for N generators that together run it; join their
        /// result directories with `merge`.
        #[arg(long, value_name = "I/N")]
        segment: Option<dps_loadgen::segment::Segment>,
    },
    /// Merge the result directories of a scenario's segments (`run --segment I/N`, each of 1..N
    /// once) into one result, as a single run's: counters summed, histograms merged, timelines
    /// aligned on their start times, the thresholds judged on the merged run. Exit codes as
    /// `run`'s: 0 pass, 99 a threshold failed or a mismatch, 2 the directories are not the
    /// segments of one scenario, 3 the result could not be written.
    Merge {
        /// The segments' result directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged result directory (created if needed).
        #[arg(long)]
        results: PathBuf,
    },
    /// Run the DPS as `dps-server run` does (used for `[target] spawn`: the fleet's server in its
    /// own process).
    #[command(hide = true)]
    ServerRun {
        /// The server config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Device port address.
        #[arg(long)]
        listen: Option<String>,
        /// Admin API address.
        #[arg(long)]
        admin_listen: Option<String>,
        /// Store file, overriding `[store] path`.
        #[arg(long)]
        store: Option<String>,
        /// Overrides of `[limits]` (a scenario's `[server_limits]`, as JSON).
        #[arg(long)]
        limits_json: Option<String>,
    },
    /// Write a scenario's fleet (from the cache, generated if needed) as files for servers the
    /// load generator does not start: our server's config.toml with its certificates and keys,
    /// and for a peer TLS server the fleet's trust anchors (client-ca.pem), server-ca.pem, a
    /// valid device (device.pem/.key), a device of an unknown CA (stranger.pem/.key) and
    /// peer.json. Exit codes: 0 done, 2 bad scenario, 3 failed.
    ExportFleet {
        /// The scenario whose [fleet] to export.
        scenario: PathBuf,
        /// The directory to write (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure the public-key floor of one provisioning per side on this machine (the operations
    /// no implementation can avoid, with the provider in use) and print it as JSON: what a run's
    /// `generator.cpu.floor` reads each side's CPU per device against. Exit codes: 0 done, 2 bad
    /// scenario, 3 the provider failed.
    Floor {
        /// Take the key exchange and device key type from this scenario (default: X25519, P-256).
        scenario: Option<PathBuf>,
        /// Rounds per operation; the fastest round counts.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rounds: u32,
        /// Operations per round.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
    },
    /// Find the highest constant arrival rate at which every SLO holds: steps of the scenario at
    /// constant rates (its executor and thresholds replaced), doubling then bisection, each
    /// step's warm-up left out. Writes `<results>/<scenario>-capacity-<time>/` (summary.json with
    /// `capacity_per_s`, summary.md, steps.svg, steps/). Exit codes: 0 a capacity was found and
    /// every gate held, 99 a gate failed or no rate held, 2 bad scenario or arguments, 3 aborted.
    Capacity(CapacityArgs),
    /// A/B of two scenarios with the same fleet (two server builds or two configurations): short
    /// blocks run interleaved (A B, B A, ...), each metric reported as B/A with a 95 % interval,
    /// so a small change is told from the noise of a shared machine. Writes
    /// `<results>/<A>-vs-<B>-ab-<time>/` (summary.json, summary.md, runs/). Exit codes: 0 done, 2
    /// bad scenario, 3 aborted.
    Ab {
        /// Scenario A (the baseline).
        a: PathBuf,
        /// Scenario B.
        b: PathBuf,
        /// Pairs of blocks (each block one run of its scenario).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=100))]
        pairs: u32,
        /// Where the result directory goes.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Check a run's figures against a packet capture of it (tcpdump's pcap or tshark's pcapng):
    /// its connections.csv joined 1:1 with the capture's connections, SYN to the device's FIN and
    /// SYN to the server's first TLS record compared (p50 and p99 within 5 % or 0.2 ms). Exit
    /// codes: 0 they agree, 99 they do not, 2 unreadable input.
    VerifyCapture {
        /// The run's result directory (with connections.csv).
        results: PathBuf,
        /// The capture (e.g. `tcpdump -i lo -w run.pcap port 15684` during the run).
        capture: PathBuf,
        /// Print the comparison as JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Print the deltas between two runs (B relative to A): a summary.json or a result directory each.
    /// Also writes compare.md and report.html (both runs side by side) into a new directory.
    Compare {
        /// The baseline run.
        a: PathBuf,
        /// The run to compare with it.
        b: PathBuf,
        /// Where the comparison's result directory goes.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
}

/// `dps-loadgen capacity`'s arguments.
#[derive(clap::Args)]
struct CapacityArgs {
    /// The scenario: its fleet, target and device behaviour.
    scenario: PathBuf,
    /// An SLO every step must meet, in threshold syntax (`p99(total) < 50ms`, `errors < 0.1%`);
    /// repeat for several. `mismatches == 0` is always added.
    #[arg(long = "slo", required = true)]
    slos: Vec<String>,
    /// The first rate tried, per second.
    #[arg(long, default_value_t = 100.0)]
    start_rate: f64,
    /// No rate above this is tried, per second.
    #[arg(long, default_value_t = 5000.0)]
    max_rate: f64,
    /// Stop when the bracket is at most this percentage of its upper end.
    #[arg(long, default_value_t = 5.0)]
    resolution_pct: f64,
    /// At most this many steps (repetitions included).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=200))]
    max_steps: u32,
    /// Warm-up of each step, not counted (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = humantime_serde::re::humantime::parse_duration)]
    warmup: std::time::Duration,
    /// Measured part of each step (e.g. 8s).
    #[arg(long, default_value = "8s", value_parser = humantime_serde::re::humantime::parse_duration)]
    step: std::time::Duration,
    /// A gate on the result, e.g. `capacity >= 600/s`; repeat for several.
    #[arg(long = "threshold")]
    gates: Vec<String>,
    /// A capacity result directory to gate against (with --max-drop).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// How far below the baseline's capacity this one may be.
    #[arg(long, default_value = "10%")]
    max_drop: String,
    /// Where the result directory goes.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Serve each step's live metrics (as `run --metrics-listen`) on this address; the counters
    /// start again at every step.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// `capacity`: the search through [`dps_loadgen::capacity::search`], a line per step on stderr,
/// the summary on stdout.
fn capacity(args: CapacityArgs) -> ExitCode {
    use dps_loadgen::capacity::{self, CapacityGate, CapacitySpec, SearchSpec, StepSpec};
    let bad = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(dps_loadgen::exit::BAD_SCENARIO)
    };
    let base = match dps_loadgen::scenario::Scenario::load(&args.scenario) {
        Ok(l) => l,
        Err(e) => return bad(&e),
    };
    let slos = match args
        .slos
        .iter()
        .map(|t| t.parse().map_err(|e| format!("--slo {t:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return bad(&e),
    };
    let mut gates = match args
        .gates
        .iter()
        .map(|g| g.parse::<CapacityGate>())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(g) => g,
        Err(e) => return bad(&e),
    };
    if let Some(dir) = &args.baseline {
        match CapacityGate::baseline(dir, &args.max_drop) {
            Ok(g) => gates.push(g),
            Err(e) => return bad(&e),
        }
    }
    let rates_ok = args.start_rate >= 1.0 && args.max_rate >= args.start_rate;
    let resolution_ok = args.resolution_pct > 0.0 && args.resolution_pct < 100.0;
    if !rates_ok || !resolution_ok || args.step.is_zero() {
        return bad(
            &"need 1 <= --start-rate <= --max-rate, 0 < --resolution-pct < 100, --step > 0",
        );
    }
    let spec = CapacitySpec {
        slos,
        search: SearchSpec {
            start_rate: args.start_rate,
            max_rate: args.max_rate,
            resolution: args.resolution_pct / 100.0,
            max_steps: args.max_steps as usize,
            ..SearchSpec::default()
        },
        step: StepSpec {
            warmup: args.warmup,
            measure: args.step,
            ..StepSpec::default()
        },
        gates,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(dps_loadgen::exit::ABORTED);
        }
    };
    let progress = |line: &str| eprintln!("{line}");
    let searched = runtime.block_on(async {
        let (live, _server) = live_endpoint(args.metrics_listen)
            .await
            .map_err(|e| e.to_string())?;
        let live = live.as_deref();
        capacity::search_observed(&base, &spec, &args.results, &progress, live)
            .await
            .map_err(|e| e.to_string())
    });
    match searched {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}", capacity::report::markdown(&done.summary));
            let _ = writeln!(out, "\nresults: {}", done.dir.display());
            ExitCode::from(if done.summary.passed {
                dps_loadgen::exit::PASS
            } else {
                dps_loadgen::exit::THRESHOLD_FAILED
            })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
    }
}

/// `ab`: the interleaved blocks through [`dps_loadgen::ab::run`], a line per block on stderr, the
/// table on stdout.
fn ab(
    a: &std::path::Path,
    b: &std::path::Path,
    pairs: usize,
    results: &std::path::Path,
) -> ExitCode {
    let load = |p: &std::path::Path| dps_loadgen::scenario::Scenario::load(p);
    let (a, b) = match (load(a), load(b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(dps_loadgen::exit::BAD_SCENARIO);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(dps_loadgen::exit::ABORTED);
        }
    };
    let progress = |line: &str| eprintln!("{line}");
    match runtime.block_on(dps_loadgen::ab::run(&a, &b, pairs, results, &progress)) {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}", dps_loadgen::ab::report::markdown(&done.summary));
            let _ = writeln!(out, "\nresults: {}", done.dir.display());
            ExitCode::SUCCESS
        }
        Err(e @ dps_loadgen::ab::AbError::Fleets { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::BAD_SCENARIO)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
    }
}

/// The live display on a terminal: devices done of scheduled, with rate, p99, mismatches (false
/// accepts, false rejects), errors and failed attempts.
fn live_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(0),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The spawned server: logs (warnings) on stderr, its ports on stdout, until killed.
fn server_run(
    config: &std::path::Path,
    listen: Option<String>,
    admin_listen: Option<String>,
    store: Option<String>,
    limits_json: Option<String>,
) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            let mut config = dps_server::config::Config::load(config).map_err(|e| e.to_string())?;
            if let Some(store) = store {
                config.file.store.path = store;
            }
            if let Some(json) = limits_json {
                let limits: dps_loadgen::scenario::LimitsOverride =
                    serde_json::from_str(&json).map_err(|e| format!("--limits-json: {e}"))?;
                limits.apply(&mut config.file.limits);
            }
            rt.block_on(dps_server::daemon::run(
                &config,
                listen,
                admin_listen,
                |bound| {
                    for line in dps_server::daemon::bound_lines(bound) {
                        println!("{line}");
                    }
                },
                std::future::pending(),
            ))
            .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
    }
}

/// `export-fleet`: the scenario's fleet as files (see [`dps_loadgen::fleet::export`]); prints
/// what it wrote as JSON.
fn floor(scenario: Option<&std::path::Path>, rounds: usize, batch: usize) -> ExitCode {
    use dps_loadgen::saturation::floor;
    let (kx, key) = match scenario.map(dps_loadgen::scenario::Scenario::load) {
        None => Default::default(),
        Some(Ok(l)) => (l.scenario.device.key_exchange, l.scenario.fleet.key),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(dps_loadgen::exit::BAD_SCENARIO);
        }
    };
    match floor::measure(&floor::plan(kx, key), rounds, batch) {
        Ok(f) => {
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&f).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
    }
}

fn export_fleet(scenario: &std::path::Path, out: &std::path::Path) -> ExitCode {
    let loaded = match dps_loadgen::scenario::Scenario::load(scenario) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(dps_loadgen::exit::BAD_SCENARIO);
        }
    };
    let spec = &loaded.scenario.fleet;
    let exported =
        dps_loadgen::fleet::cache::load_or_build(spec, &dps_loadgen::fleet::cache::cache_root())
            .and_then(|ready| dps_loadgen::fleet::export::export(&ready, spec.key, out));
    match exported {
        Ok(e) => {
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string(&e).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
    }
}

/// `run`: the scenario loaded (its segment only, with `--segment`), the live metrics endpoint
/// bound (if asked for; it lives until the run's reports are written), the run.
async fn run_live(
    scenario: &std::path::Path,
    results: &std::path::Path,
    progress: &(dyn Fn(&dps_loadgen::run::Progress) + Sync),
    (metrics_listen, segment): (
        Option<std::net::SocketAddr>,
        Option<dps_loadgen::segment::Segment>,
    ),
) -> Result<dps_loadgen::Finished, dps_loadgen::Error> {
    let mut loaded = dps_loadgen::scenario::Scenario::load(scenario)?;
    loaded.segment = segment;
    let (live, _server) = live_endpoint(metrics_listen).await?;
    dps_loadgen::run_loaded(&loaded, Some(results), progress, live.as_deref()).await
}

/// With `--metrics-listen ADDR`: the live metrics and their endpoint, its bound address printed on
/// stderr (the endpoint lives as long as the returned server).
async fn live_endpoint(
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<
    (
        Option<std::sync::Arc<dps_loadgen::live::LiveMetrics>>,
        Option<dps_loadgen::live::LiveServer>,
    ),
    dps_loadgen::Error,
> {
    let Some(addr) = metrics_listen else {
        return Ok((None, None));
    };
    let live = dps_loadgen::live::LiveMetrics::new();
    let server = dps_loadgen::live::serve(addr, live.clone())
        .await
        .map_err(|source| dps_loadgen::Error::MetricsListen { addr, source })?;
    eprintln!("metrics: http://{}/metrics", server.addr());
    Ok((Some(live), Some(server)))
}

/// `merge`: the segments' results merged (see [`dps_loadgen::merge`]), the summary on stdout.
fn merge(dirs: &[PathBuf], results: &std::path::Path) -> ExitCode {
    use dps_loadgen::merge::MergeError;
    match dps_loadgen::merge::merge(dirs, results) {
        Ok(merged) => {
            let mut out = std::io::stdout().lock();
            let summary = &merged.outcome.summary;
            let _ = write!(out, "{}", dps_loadgen::report::markdown(summary));
            let _ = writeln!(out, "\nresults: {}", merged.dir.display());
            ExitCode::from(dps_loadgen::exit_code(summary))
        }
        Err(e @ MergeError::Write { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::ABORTED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::BAD_SCENARIO)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            scenario,
            results,
            quiet,
            metrics_listen,
            segment,
        } => run(&scenario, &results, quiet, (metrics_listen, segment)),
        Command::Merge { dirs, results } => merge(&dirs, &results),
        Command::ServerRun {
            config,
            listen,
            admin_listen,
            store,
            limits_json,
        } => server_run(&config, listen, admin_listen, store, limits_json),
        Command::ExportFleet { scenario, out } => export_fleet(&scenario, &out),
        Command::Floor {
            scenario,
            rounds,
            batch,
        } => floor(scenario.as_deref(), rounds as usize, batch as usize),
        Command::Capacity(args) => capacity(args),
        Command::VerifyCapture {
            results,
            capture,
            json,
        } => verify_capture::main(&results, &capture, json),
        Command::Ab {
            a,
            b,
            pairs,
            results,
        } => ab(&a, &b, pairs as usize, &results),
        Command::Compare { a, b, results } => compare(&a, &b, &results),
    }
}

/// `compare`: two runs' summaries side by side on stdout, the HTML report written beside.
fn compare(a: &std::path::Path, b: &std::path::Path, results: &std::path::Path) -> ExitCode {
    match (dps_loadgen::compare::load(a), dps_loadgen::compare::load(b)) {
        (Ok(sa), Ok(sb)) => {
            let _ = write!(
                std::io::stdout().lock(),
                "{}",
                dps_loadgen::compare::compare(&sa, &sb)
            );
            match dps_loadgen::compare::write(results, (a, &sa), (b, &sb)) {
                Ok(dir) => eprintln!("report: {}", dir.join("report.html").display()),
                Err(e) => eprintln!("warning: no report written: {e}"),
            }
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(dps_loadgen::exit::BAD_SCENARIO)
        }
    }
}

/// The live metrics address and the segment of a `run`.
type Watch = (
    Option<std::net::SocketAddr>,
    Option<dps_loadgen::segment::Segment>,
);

/// `run`: the scenario run with a live bar on a terminal (unless `quiet`), its summary on stdout.
fn run(
    scenario: &std::path::Path,
    results: &std::path::Path,
    quiet: bool,
    watch: Watch,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(dps_loadgen::exit::ABORTED);
        }
    };
    let live = !quiet && std::io::stderr().is_terminal();
    let bar = live.then(live_bar);
    let shown = bar.clone();
    let progress = move |p: &dps_loadgen::run::Progress| {
        if let Some(bar) = &shown {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(progress_message(p));
        }
    };
    let (scenario, results) = (scenario.to_owned(), results.to_owned());
    // On a worker, not on this thread: the run's own task (collecting every device's result) then
    // runs where the devices do, instead of each result waking the thread blocked here.
    let running =
        runtime.spawn(async move { run_live(&scenario, &results, &progress, watch).await });
    let outcome = match runtime.block_on(running) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: the run's task failed: {e}");
            return ExitCode::from(dps_loadgen::exit::ABORTED);
        }
    };
    match outcome {
        Ok(finished) => {
            if let Some(bar) = &bar {
                bar.finish();
            }
            print_finished(&finished);
            ExitCode::from(finished.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The live bar's message: rate, p99, mismatches, errors, failed attempts and devices held.
fn progress_message(p: &dps_loadgen::run::Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(1e-3);
    let held = if p.held > 0 {
        format!(", {} held", p.held)
    } else {
        String::new()
    };
    format!(
        "{:.0} provisioned/s, p99 handshake {:.1} ms, {} mismatches ({} false accepts, \
         {} false rejects), {} errors, {} failed attempts{held}",
        p.provisioned as f64 / secs,
        p.p99_handshake_us as f64 / 1000.0,
        p.mismatches,
        p.false_accepts,
        p.false_rejects,
        p.errors,
        p.failed_attempts,
    )
}

/// A finished run's summary, results directory and verdict line on stdout.
fn print_finished(finished: &dps_loadgen::Finished) {
    // A closed stdout (e.g. piped into `head`) must not turn a finished run into a crash.
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "{}",
        dps_loadgen::report::markdown(&finished.outcome.summary)
    );
    if let Some(dir) = &finished.results_dir {
        let _ = writeln!(out, "\nresults: {}", dir.display());
    }
    // Last, so that it is what a reader sees: who limited the run.
    if let Some(line) = dps_loadgen::report::verdict_line(&finished.outcome.summary) {
        let _ = writeln!(out, "\n{line}");
    }
}
