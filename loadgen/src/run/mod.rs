//! A whole run, composed from the layers below: the fleet (from the cache or generated), the
//! target ([`crate::target`]), the devices' shared context, the scenario's executor and attackers,
//! every finished device collected ([`crate::collect`]), and the summary
//! ([`crate::summary`]) with the server's own view beside the client's.

#[cfg(feature = "tpm-sim")]
mod swtpm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::collect::Collector;
use crate::device::{self, DeviceContext};
use crate::fleet::{self, Fleet};
use crate::live::LiveMetrics;
use crate::metrics::Phase;
use crate::saturation::budget::{self, PortPlan};
use crate::saturation::floor;
use crate::saturation::sampler::{Sampler, Watch};
use crate::saturation::{cpu, ports, Measured};
use crate::scenario::{ExecutorSpec, Loaded, TargetKind};
use crate::summary::{summarize, Facts};
pub use crate::summary::{
    AttackSummary, HoldSummary, Outcome, ServerSummary, Summary, ThresholdResult,
};
use crate::target::{self, Target, TargetError};
use crate::{attack, executor, system};

/// Why a run could not be carried out (as opposed to a run whose thresholds failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The fleet could not be generated.
    #[error("fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
    /// The server could not be started or prepared.
    #[error("server: {0}")]
    Target(#[from] TargetError),
    /// The devices' TLS client could not be set up.
    #[error(transparent)]
    Tls(#[from] device::tls::TlsSetupError),
    /// The swtpm devices could not be prepared.
    #[cfg(feature = "tpm-sim")]
    #[error(transparent)]
    Swtpm(#[from] swtpm::SwtpmError),
    /// The run's devices cannot have the ephemeral ports they need: refused before any starts.
    #[error(transparent)]
    PortBudget(#[from] crate::saturation::PortBudgetError),
    /// Local I/O (temp dir, sockets).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The machine cannot give a hold of this size the file descriptors it needs: refused before
    /// any device starts, instead of failing part-way with "too many open files".
    #[error(
        "holding {devices} devices needs {needed} open files per process, but this process may \
         open at most {limit} (hard limit {hard}); raise the hard limit (`ulimit -Hn`, systemd \
         LimitNOFILE, or a root shell with CAP_SYS_RESOURCE) or hold fewer devices"
    )]
    OpenFiles {
        /// Devices the hold executor would keep connected at once.
        devices: usize,
        /// Descriptors that takes in this process (and in a spawned server).
        needed: u64,
        /// The soft limit after raising it.
        limit: u64,
        /// The hard limit.
        hard: u64,
    },
}

/// What the live display shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Runs finished.
    pub done: u64,
    /// Runs scheduled.
    pub total: u64,
    /// Provisioned as expected.
    pub provisioned: u64,
    /// Wrong verdicts.
    pub mismatches: u64,
    /// Of the mismatches, devices let in that must be refused.
    pub false_accepts: u64,
    /// Of the mismatches, devices refused that must get in.
    pub false_rejects: u64,
    /// Devices that ended in an error (no verdict).
    pub errors: u64,
    /// Attempts that ended in an error so far (retried ones included).
    pub failed_attempts: u64,
    /// Devices holding now (hold executor).
    pub held: u64,
    /// Client-side p99 of the handshake so far, µs.
    pub p99_handshake_us: u64,
    /// Since the first start.
    pub elapsed: Duration,
}

/// Run a loaded scenario; `progress` is called a few times a second and at the end.
pub async fn run(
    loaded: &Loaded,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome, RunError> {
    run_with_cache(loaded, &fleet::cache::cache_root(), progress).await
}

/// [`run`] with the fleet cache under `cache_root` (a test's own, so that a server it set up from
/// the same cached fleet knows the run's devices).
pub async fn run_with_cache(
    loaded: &Loaded,
    cache_root: &std::path::Path,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome, RunError> {
    run_observed(loaded, cache_root, progress, None).await
}

/// [`run_with_cache`], publishing live metrics into `live` (if given) a few times a second and
/// once more when the last device is in (`--metrics-listen`, [`crate::live`]).
pub async fn run_observed(
    loaded: &Loaded,
    cache_root: &std::path::Path,
    progress: &(dyn Fn(&Progress) + Sync),
    live: Option<&LiveMetrics>,
) -> Result<Outcome, RunError> {
    let scenario = &loaded.scenario;
    let open_files_limit = open_files(loaded)?;
    let plan = port_plan(loaded).await?;
    let ready = fleet::cache::load_or_build(&scenario.fleet, cache_root)?;
    let fleet = Arc::new(ready.fleet);
    let store_dir = tempfile::tempdir()?;
    // Mutable for the swtpm devices' enrollments (feature tpm-sim).
    #[cfg_attr(not(feature = "tpm-sim"), allow(unused_mut))]
    let mut started = target::start(loaded, &fleet, ready.dir.path(), store_dir.path()).await?;
    #[cfg(feature = "tpm-sim")]
    let swtpm = swtpm::prepare(&fleet, &scenario.executor, &mut started.target).await?;
    let ctx = DeviceContext {
        addr: started.addr,
        mode: loaded.mode,
        tls: Arc::new(device::tls::ClientBase::new(
            started.server_ca.as_ref(),
            device::tls::TlsOptions {
                version: scenario.device.tls_version,
                key_exchange: scenario.device.key_exchange,
            },
        )?),
        timeout: scenario.device.timeout,
        retry: Arc::new(loaded.retry.clone()),
        sources: plan.sources.clone(),
        connects: Arc::default(),
        connections: Some(Arc::default()),
        links: loaded.links.clone(),
        hold: None,
        #[cfg(feature = "tpm-sim")]
        swtpm: swtpm.clone(),
    };
    let server_target = started.target;
    let watch = (progress, live);
    let (c, mut facts) = drive(loaded, &fleet, ctx, &server_target, plan, watch).await;
    // A server other segments still use does not drain when this one is done.
    if !crate::summary::shares_server(loaded) {
        facts.leftover = settle(&server_target).await;
    }
    facts.fleet_reused = ready.reused;
    facts.open_files_limit = open_files_limit;
    let server = server_target.finish().await;
    #[cfg(feature = "tpm-sim")]
    if let Some(pool) = swtpm {
        pool.shutdown().await;
    }
    Ok(summarize(loaded, c, server, facts))
}

/// The run's source addresses and port budget, worked out before the fleet is even built: the
/// fleet's own server listens on [`target::OWN_SERVER_IP`] (its port is not known yet, and no
/// socket goes to it yet); another target is resolved here.
async fn port_plan(loaded: &Loaded) -> Result<PortPlan, RunError> {
    let s = &loaded.scenario;
    let target = match &loaded.target {
        TargetKind::Embedded | TargetKind::Spawned => {
            std::net::SocketAddr::from((target::OWN_SERVER_IP, 0))
        }
        TargetKind::Remote { address, .. } | TargetKind::TlsOnly { address, .. } => {
            target::resolve(address).await?
        }
    };
    let demand = budget::demand(&s.fleet, &s.executor, s.device.timeout);
    let seed = ports::run_seed();
    Ok(budget::plan(
        target,
        s.device.source_addresses,
        demand,
        &s.executor,
        seed,
    )?)
}

/// Raise the open-file limit for the run; a hold that cannot have the descriptors it needs is
/// refused before the fleet is even built. The soft limit the run has.
fn open_files(loaded: &Loaded) -> Result<u64, RunError> {
    let scenario = &loaded.scenario;
    // An in-process server holds the other end of every connection; a spawned one has its own.
    let embedded = loaded.target == TargetKind::Embedded;
    // A segment holds only its share of the fleet (every N-th device).
    let devices = loaded
        .segment
        .unwrap_or_default()
        .share(scenario.fleet.devices);
    let needed = system::descriptors_for(devices, embedded);
    let limit = system::raise_open_files(needed)?;
    if matches!(scenario.executor, ExecutorSpec::Hold { .. }) && needed > limit.soft {
        // Every device stays connected at once (and a spawned server needs as many, under the
        // same hard limit).
        return Err(RunError::OpenFiles {
            devices,
            needed,
            limit: limit.soft,
            hard: limit.hard,
        });
    }
    Ok(limit.soft)
}

/// The public-key floor of the scenario's devices, measured before the device phase (so its CPU
/// is not the run's) on a blocking thread; `None` if the provider failed (logged).
async fn measure_floor(scenario: &crate::spec::Scenario) -> Option<crate::saturation::Floor> {
    let (kx, key) = (scenario.device.key_exchange, scenario.fleet.key);
    let tpm = scenario.fleet.mix.iter().any(|(c, w)| *w > 0 && c.is_tpm());
    let measured = tokio::task::spawn_blocking(move || floor::measure_for_run(kx, key)).await;
    match measured {
        Ok(Ok(mut f)) => {
            if tpm {
                f.notes.push(
                    "the fleet has TPM devices: their flow's costs differ from this X.509 floor"
                        .into(),
                );
            }
            Some(f)
        }
        Ok(Err(e)) => {
            eprintln!("the floor was not measured: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Who watches a run as it goes: the progress callback and the live metrics (if served).
type Watchers<'a> = (&'a (dyn Fn(&Progress) + Sync), Option<&'a LiveMetrics>);

/// The device phase: the executor and attackers started, every finished device collected, the
/// hold measured while all devices hold, until the last run and attacker are done.
async fn drive(
    loaded: &Loaded,
    fleet: &Arc<Fleet>,
    ctx: DeviceContext,
    server_target: &Target,
    plan: PortPlan,
    watchers: Watchers<'_>,
) -> (Collector, Facts) {
    let scenario = &loaded.scenario;
    let floor = measure_floor(scenario).await;
    let rss_before = dps_server::metrics::resident_memory();
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let device_addr = ctx.addr;
    let connects = ctx.connects.clone();
    let connections = ctx.connections.clone();
    let sampler = start_sampler(&ctx, &plan, server_target);
    let segment = loaded.segment.unwrap_or_default();
    let mut exec = executor::start(fleet.clone(), ctx, &scenario.executor, segment);
    let attacks = start_attacks(scenario, device_addr, started);
    let mut c = Collector::with_attack_window(attack_window(&attacks));
    c.measure_from = loaded.measure_from;
    let clock = (started, rss_before);
    let hold = collect(
        loaded,
        fleet,
        (&mut exec, &mut c),
        server_target,
        clock,
        watchers,
    )
    .await;
    let (progress, live) = watchers;
    progress(&snapshot(&c, exec.total, 0, started));
    let duration = started.elapsed();
    if let Some(live) = live {
        live.publish(&crate::live::view(&c, &exec, &scenario.executor, duration));
    }
    let generator = sampler.map(|sampler| measured(sampler, &exec, &connects, plan, loaded, floor));
    let attack_reports = finish_attacks(attacks).await;
    let facts = Facts {
        started_at,
        duration,
        total: exec.total,
        dropped: exec.dropped.load(std::sync::atomic::Ordering::Relaxed),
        fleet_reused: false,
        hold,
        open_files_limit: 0,
        attacks: attack_reports,
        leftover: None,
        generator,
        connections: connections.map(|log| log.take()).unwrap_or_default(),
    };
    (c, facts)
}

/// The generator's sampler, watching the devices' sources (or the planned route's one) and the
/// server; `None` if it could not start.
fn start_sampler(ctx: &DeviceContext, plan: &PortPlan, server_target: &Target) -> Option<Sampler> {
    Sampler::start(Watch {
        target: ctx.addr,
        sources: plan
            .route_source
            .map_or_else(|| ctx.sources.clone(), |src| vec![src]),
        server_pid: server_target.server_pid(),
    })
    .ok()
}

/// The scenario's attackers, each started from its own source address.
fn start_attacks(
    scenario: &crate::spec::Scenario,
    device_addr: std::net::SocketAddr,
    started: Instant,
) -> Vec<attack::Running> {
    scenario
        .attack
        .iter()
        .enumerate()
        .map(|(i, a)| {
            attack::start(
                a,
                device_addr,
                attack::source_address(&device_addr, i),
                started,
            )
        })
        .collect()
}

/// The span from the first attacker's start to the last one's end (`None` without attackers).
fn attack_window(attacks: &[attack::Running]) -> Option<(Duration, Duration)> {
    attacks
        .iter()
        .map(attack::Running::window)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
}

/// Every attacker's report, once each has finished.
async fn finish_attacks(attacks: Vec<attack::Running>) -> Vec<attack::AttackReport> {
    let mut attack_reports = Vec::with_capacity(attacks.len());
    for a in attacks {
        attack_reports.push(a.finish().await);
    }
    attack_reports
}

/// When the device phase started, and the process's memory then.
type Clock = (Instant, Option<dps_server::metrics::ResidentMemory>);

/// Every finished device recorded into the collector until the executor is done, progress and
/// live metrics published every 250 ms; the hold's summary, if all devices came to hold.
async fn collect(
    loaded: &Loaded,
    fleet: &Arc<Fleet>,
    (exec, c): (&mut executor::Started, &mut Collector),
    server_target: &Target,
    (started, rss_before): Clock,
    (progress, live): Watchers<'_>,
) -> Option<HoldSummary> {
    let mut last_progress = Instant::now();
    let mut hold_summary = None;
    let mut all_held = exec.all_held.take();
    let held_now = |e: &executor::Started| e.hold.as_ref().map_or(0, |h| h.held());
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            next = exec.results.recv() => {
                let Some((i, run)) = next else { break };
                if let Some(dev) = fleet.devices.get(i) {
                    let at = run.through.saturating_duration_since(started);
                    c.record(dev, &run, fleet, loaded.mode, at);
                }
            }
            Ok(()) = async { all_held.as_mut().expect("guarded").await }, if all_held.is_some() => {
                all_held = None;
                hold_summary = Some(hold(exec, server_target, started, rss_before).await);
            }
            _ = ticker.tick() => {}
        }
        if last_progress.elapsed() >= Duration::from_millis(250) {
            progress(&snapshot(c, exec.total, held_now(exec), started));
            if let Some(live) = live {
                live.publish(&crate::live::view(
                    c,
                    exec,
                    &loaded.scenario.executor,
                    started.elapsed(),
                ));
            }
            last_progress = Instant::now();
        }
    }
    hold_summary
}

/// The progress so far, for the progress callback.
fn snapshot(c: &Collector, total: u64, held: u64, started: Instant) -> Progress {
    Progress {
        done: c.done,
        total,
        provisioned: c.provisioned,
        mismatches: c.mismatches,
        false_accepts: c.false_accepts,
        false_rejects: c.false_rejects,
        errors: c.errors,
        failed_attempts: c.attempts.errors.values().sum(),
        held,
        p99_handshake_us: c.recorder.quantile(Phase::Handshake, 0.99),
        elapsed: started.elapsed(),
    }
}

/// The hold measured the moment all devices hold: connections on both sides, time to connect,
/// and the memory each connection costs.
async fn hold(
    exec: &executor::Started,
    server_target: &Target,
    started: Instant,
    rss_before: Option<dps_server::metrics::ResidentMemory>,
) -> HoldSummary {
    let held = exec.hold.as_ref().map_or(0, |h| h.held());
    let rss = dps_server::metrics::resident_memory();
    let server_open = server_target.open_connections().await;
    HoldSummary {
        held_peak: exec.hold.as_ref().map_or(0, |h| h.peak()),
        server_open_connections: server_open,
        connect_s: started.elapsed().as_secs_f64(),
        rss_before_bytes: rss_before.map(|m| m.current),
        rss_held_bytes: rss.map(|m| m.current),
        bytes_per_connection: match (rss_before, rss) {
            (Some(b), Some(a)) if held > 0 => Some(a.current.saturating_sub(b.current) / held),
            _ => None,
        },
    }
}

/// What the generator measured about itself over the run, from its stopped sampler.
fn measured(
    sampler: Sampler,
    exec: &executor::Started,
    connects: &crate::saturation::ConnectMeter,
    plan: PortPlan,
    loaded: &Loaded,
    floor: Option<crate::saturation::Floor>,
) -> Measured {
    let (max_in_flight, max_lateness) = arrival_limits(&loaded.scenario.executor);
    Measured {
        sampled: sampler.stop(),
        starts: exec.starts.starts(),
        connect_busy: (connects.busy(), connects.calls()),
        plan,
        workers: tokio::runtime::Handle::current().metrics().num_workers(),
        cores: cpu::cores(),
        embedded: loaded.target == TargetKind::Embedded,
        max_in_flight,
        max_lateness,
        floor,
    }
}

/// An arrival-rate executor's in-flight cap and lateness limit (`None` for other executors).
fn arrival_limits(spec: &ExecutorSpec) -> (Option<usize>, Option<Duration>) {
    match spec {
        ExecutorSpec::ConstantArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        }
        | ExecutorSpec::RampingArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        } => (Some(*max_in_flight), Some(*max_lateness)),
        _ => (None, None),
    }
}

/// How long the server gets to close what devices and attackers left behind.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until the server has no device connection open (or [`SETTLE_TIMEOUT`] passes): the
/// connections still open then, and how long it took.
async fn settle(target: &Target) -> Option<(u64, Duration)> {
    let since = Instant::now();
    loop {
        let open = target.open_connections().await?;
        if open == 0 || since.elapsed() >= SETTLE_TIMEOUT {
            return Some((open, since.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A TLS-only run end to end against our own server set up from the exported fleet (as
    /// `benches/peer-nginx.sh` does): every device is accepted, and the server's own count says
    /// it verified each one (the run itself only sees the handshakes complete).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_only_run_against_a_server_set_up_from_the_exported_fleet() {
        let cache = tempfile::tempdir().expect("tempdir");
        let exported = tempfile::tempdir().expect("tempdir");
        let scenario = |address: &str| {
            format!(
                r#"
[target]
address = "{address}"
server_ca = "{}"
tls_only = true
[fleet]
seed = 5
devices = 12
mix = {{ valid = 1 }}
[executor]
kind = "closed-loop"
concurrency = 3
[device]
handshake_only = true
tls_version = "1.3"
key_exchange = "x25519"
"#,
                exported.path().join("server-ca.pem").display()
            )
        };
        let spec = Scenario::parse(&scenario("127.0.0.1:1"), "x.toml", "x")
            .expect("scenario")
            .scenario
            .fleet;
        let ready = fleet::cache::load_or_build(&spec, cache.path()).expect("fleet");
        fleet::export::export(&ready, spec.key, exported.path()).expect("export");
        drop(ready);

        let config =
            dps_server::config::Config::load(&exported.path().join("config.toml")).expect("config");
        let server = Arc::new(dps_server::server::Server::from_config(&config).expect("server"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().run(listener, async {
            let _ = stopped.await;
        }));

        let loaded =
            Scenario::parse(&scenario(&addr.to_string()), "x.toml", "x").expect("scenario");
        let outcome = run_with_cache(&loaded, cache.path(), &|_| {})
            .await
            .expect("run");
        let s = &outcome.summary;
        assert!(
            s.fleet_reused,
            "the run must use the fleet the server was set up with"
        );
        assert_eq!((s.handshakes, s.mismatches, s.errors), (12, 0, 0), "{s:?}");
        assert_eq!(s.server.kind.as_str(), "tls-only");
        assert_eq!(server.metrics().handshakes_accepted(), 12);
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../summary.schema.json")).expect("schema");
        let json = serde_json::to_value(s).expect("summary json");
        let validator = jsonschema::validator_for(&schema).expect("valid schema");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(json["device_mode"], "tls_only");
        assert_eq!(json["server"]["kind"], "tls-only");
        assert_eq!(json["failures"], serde_json::json!({}));
        let mut unknown = json.clone();
        unknown["failures"] = serde_json::json!({ "slow": 1 });
        assert!(!validator.is_valid(&unknown), "unknown failure kinds fail");
        let _ = stop.send(());
        let _ = task.await;
    }
}
