//! The `generator` section of `summary.json`: what the run measured about its own generator (CPU
//! of each side, start lateness, dropped starts, time in connect(), ports) put together from the
//! meters; [`super::verdict`] judges who limited the run.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::budget::PortPlan;
use super::floor::{multiple, Floor};
use super::meter::Starts;
use super::sampler::{CpuSamples, Sampled};
use crate::metrics::Quantiles;

/// Who limited the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// The generator could not offer the scenario's load: the figures are the generator's.
    Generator,
    /// The target could not keep up while the generator could.
    Target,
    /// No sign that either side was at its limit.
    None,
}

impl LimitedBy {
    /// The name in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedBy::Generator => "generator",
            LimitedBy::Target => "target",
            LimitedBy::None => "none",
        }
    }
}

/// The `generator` section of the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorSummary {
    /// Who limited the run: `generator`, `target` or `none` (no sign that either did).
    pub limited_by: LimitedBy,
    /// Why, in plain words.
    pub reasons: Vec<String>,
    /// What the figures cannot tell, and warnings from the port budget.
    pub notes: Vec<String>,
    /// CPU of each side.
    pub cpu: CpuSummary,
    /// How late scheduled devices started (µs; `None` without a schedule, as in a closed loop).
    pub start_lateness: Option<Quantiles>,
    /// Started devices that began more than 25 ms late ([`super::meter::LATE`]).
    pub late_starts: u64,
    /// Starts dropped for being later than `max_lateness`.
    pub dropped_late: u64,
    /// Starts dropped at the generator's own `max_in_flight`.
    pub dropped_in_flight: u64,
    /// Time spent opening TCP connections.
    pub connect: ConnectSummary,
    /// Ephemeral ports toward the target.
    pub ports: PortSummary,
}

/// CPU of the generator's process and of a spawned server over the device phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuSummary {
    /// Wall time measured over, seconds.
    pub wall_s: f64,
    /// CPUs this process may run on.
    pub cores: u64,
    /// The generator's runtime worker threads.
    pub worker_threads: u64,
    /// This process (`None` if unreadable); with an embedded server, server and generator together.
    pub process: Option<SideCpu>,
    /// `process` includes the embedded server's work (the two cannot be told apart).
    pub process_includes_server: bool,
    /// The spawned server's process (`None` unless spawned).
    pub server: Option<SideCpu>,
    /// Average cores the whole machine used: every process and the kernel (`None`: unreadable).
    pub machine_cores_used: Option<f64>,
    /// Of them, cores other processes took: the machine less this process and a spawned server.
    pub others_cores_used: Option<f64>,
    /// CPU of the sampler that took these figures, seconds, left out of `process`.
    pub sampler_s: f64,
    /// The public-key floor of one provisioning and each side's CPU per provisioned device as a
    /// multiple of it (`None` when it was not measured).
    pub floor: Option<FloorFigures>,
}

/// The floor ([`super::floor`]) and how far above it each side ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorFigures {
    /// The floor as measured on this machine at the start of the run.
    #[serde(flatten)]
    pub floor: Floor,
    /// The spawned server's CPU per provisioned device over its floor (`None` unless spawned).
    pub server_multiple: Option<f64>,
    /// This process's CPU per provisioned device over the generator's floor (`None` with an
    /// embedded server, whose work it includes).
    pub generator_multiple: Option<f64>,
    /// With an embedded server: this process's CPU per provisioned device over both floors
    /// together (`None` otherwise).
    pub process_multiple: Option<f64>,
}

/// CPU of one process over the device phase.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SideCpu {
    /// User time, seconds.
    pub user_s: f64,
    /// System time, seconds.
    pub system_s: f64,
    /// Average cores used (CPU seconds / wall seconds).
    pub cores_used: f64,
    /// Cores used in the busiest second.
    pub peak_cores_used: f64,
    /// CPU per provisioned device, ms (`None` when none was provisioned).
    pub ms_per_provisioned: Option<f64>,
    /// CPU per completed handshake, ms (`None` when none completed).
    pub ms_per_handshake: Option<f64>,
}

/// Time spent opening TCP connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectSummary {
    /// Connections opened.
    pub connects: u64,
    /// Sum of the devices' `tcp` phase (wall time from socket to connected), seconds.
    pub tcp_sum_s: f64,
    /// p99 of the `tcp` phase, µs.
    pub tcp_p99_us: u64,
    /// Time this process's threads spent inside the socket, bind and connect calls, seconds.
    pub busy_s: f64,
    /// `busy_s` as a share of the process's CPU time.
    pub busy_share: Option<f64>,
}

/// Ephemeral ports toward the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortSummary {
    /// `net.ipv4.ip_local_port_range`.
    pub range: [u16; 2],
    /// Ports of one source address toward one target.
    pub per_address: u64,
    /// Source addresses the devices were bound to (empty: the kernel picked).
    pub sources: Vec<IpAddr>,
    /// When the kernel picked: the address it routes from.
    pub route_source: Option<IpAddr>,
    /// Planned: connections in flight at once, at most.
    pub in_flight: u64,
    /// Planned: ports in TIME_WAIT at the busiest.
    pub time_wait: u64,
    /// How long a closed connection's port counted as taken, seconds.
    pub time_wait_window_s: u64,
    /// Planned: ports needed at the busiest (`in_flight` + `time_wait`).
    pub needed: u64,
    /// Free ports over the sources when planned.
    pub free_at_start: u64,
    /// Sockets from the sources toward the target as the devices started.
    pub in_use_at_start: u64,
    /// Most sockets from the sources toward the target at once (sampled each second).
    pub peak_in_use: u64,
    /// Most from one source address.
    pub peak_in_use_per_address: u64,
    /// Most in TIME_WAIT.
    pub peak_time_wait: u64,
}

/// What a run measured about its generator.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The sampler's figures.
    pub sampled: Sampled,
    /// Starts against the schedule.
    pub starts: Starts,
    /// Time inside connect calls, and how many.
    pub connect_busy: (Duration, u64),
    /// The port plan the run started with.
    pub plan: PortPlan,
    /// The generator's runtime worker threads.
    pub workers: usize,
    /// CPUs this process may run on.
    pub cores: usize,
    /// The server runs in this process.
    pub embedded: bool,
    /// The open model's cap on devices in flight (0: none; `None`: not an open model).
    pub max_in_flight: Option<usize>,
    /// The open model's `max_lateness`.
    pub max_lateness: Option<Duration>,
    /// The floor measured before the device phase (`None`: not measured).
    pub floor: Option<Floor>,
}

/// What the collected devices say, for the figures and the verdict.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcomes {
    /// Provisioned as expected.
    pub provisioned: u64,
    /// Handshakes completed as expected.
    pub handshakes: u64,
    /// The `tcp` phase over all devices.
    pub tcp: Option<Quantiles>,
    /// Devices that timed out.
    pub timeouts: u64,
    /// Devices answered 5.03.
    pub busy: u64,
    /// Devices whose connection the target closed or reset.
    pub resets: u64,
}

fn side(c: &CpuSamples, wall: f64, o: &Outcomes) -> SideCpu {
    let total_ms = c.spent.total().as_secs_f64() * 1000.0;
    let per = |n: u64| (n > 0).then(|| total_ms / n as f64);
    SideCpu {
        user_s: c.spent.user.as_secs_f64(),
        system_s: c.spent.system.as_secs_f64(),
        cores_used: c.spent.total().as_secs_f64() / wall.max(1e-9),
        peak_cores_used: c.peak_cores,
        ms_per_provisioned: per(o.provisioned),
        ms_per_handshake: per(o.handshakes),
    }
}

fn floor_figures(
    floor: Floor,
    process: Option<SideCpu>,
    server: Option<SideCpu>,
    embedded: bool,
) -> FloorFigures {
    let per = |s: Option<SideCpu>| s.and_then(|s| s.ms_per_provisioned);
    FloorFigures {
        server_multiple: multiple(per(server), floor.server.ms),
        generator_multiple: (!embedded)
            .then(|| multiple(per(process), floor.generator.ms))
            .flatten(),
        process_multiple: embedded
            .then(|| multiple(per(process), floor.server.ms + floor.generator.ms))
            .flatten(),
        floor,
    }
}

/// The `generator` section's figures from the run's measurements and its devices' outcomes,
/// not yet judged (`limited_by` none, no reasons): [`super::summarize`] judges them.
pub fn figures(m: &Measured, o: &Outcomes) -> GeneratorSummary {
    let wall = m.sampled.wall.as_secs_f64();
    let process = m.sampled.process.as_ref().map(|c| side(c, wall, o));
    let server = m.sampled.server.as_ref().map(|c| side(c, wall, o));
    let process_cpu = m.sampled.process.map(|c| c.spent.total().as_secs_f64());
    let machine = m.sampled.machine.map(|d| d.as_secs_f64() / wall.max(1e-9));
    let busy_s = m.connect_busy.0.as_secs_f64();
    let connect = ConnectSummary {
        connects: m.connect_busy.1,
        tcp_sum_s: o
            .tcp
            .map_or(0.0, |q| q.mean_us * q.count as f64 / 1_000_000.0),
        tcp_p99_us: o.tcp.map_or(0, |q| q.p99_us),
        busy_s,
        busy_share: process_cpu.filter(|c| *c > 0.0).map(|c| busy_s / c),
    };
    let p = &m.plan;
    let ports = PortSummary {
        range: [p.range.0, p.range.1],
        per_address: p.per_address,
        sources: p.sources.clone(),
        route_source: p.route_source,
        in_flight: p.demand.in_flight,
        time_wait: p.demand.time_wait(p.window),
        time_wait_window_s: p.window.as_secs(),
        needed: p.needed(),
        free_at_start: p.free,
        in_use_at_start: m.sampled.ports.at_start,
        peak_in_use: m.sampled.ports.peak,
        peak_in_use_per_address: m.sampled.ports.peak_per_address,
        peak_time_wait: m.sampled.ports.peak_time_wait,
    };
    GeneratorSummary {
        limited_by: LimitedBy::None,
        reasons: Vec::new(),
        notes: p.notes.clone(),
        cpu: CpuSummary {
            wall_s: wall,
            cores: m.cores as u64,
            worker_threads: m.workers as u64,
            process,
            process_includes_server: m.embedded,
            server,
            machine_cores_used: machine,
            others_cores_used: machine.map(|all| {
                let ours = process.map_or(0.0, |p| p.cores_used)
                    + server.map_or(0.0, |p| p.cores_used)
                    + m.sampled.sampler.total().as_secs_f64() / wall.max(1e-9);
                (all - ours).max(0.0)
            }),
            sampler_s: m.sampled.sampler.total().as_secs_f64(),
            floor: m
                .floor
                .clone()
                .map(|floor| floor_figures(floor, process, server, m.embedded)),
        },
        start_lateness: m.starts.lateness,
        late_starts: m.starts.late,
        dropped_late: m.starts.dropped_late,
        dropped_in_flight: m.starts.dropped_in_flight,
        connect,
        ports,
    }
}
