//! The summary of a run (`summary.json`, schema `loadgen/summary.schema.json`): the collected
//! devices, the server's own view cross-checked against what the fleet expects, the attackers'
//! reports, and the thresholds judged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attack::{self, AttackKind};
use crate::collect::{Attempts, ClassCounts, Collector, Second};
use crate::device::trace::ConnectionRecord;
use crate::device::{FailureKind, StrictCheck};
use crate::fidelity::Fidelity;
use crate::fleet::DeviceClass;
use crate::link::LinkSummary;
use crate::metrics::{Phase, Quantiles, Recorder};
use crate::saturation::{self, GeneratorSummary};
use crate::scenario::{DeviceMode, Loaded, RetryPolicy, ServerKind};
use crate::segment::SegmentInfo;
use crate::storm::{self, Storm};
use crate::target::{ReplicaFigures, ServerCounters, ServerView};
use crate::threshold::{Metric, RateOf, Threshold};

/// One threshold's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// As written.
    pub threshold: String,
    /// The measured value (µs for latencies, per second for rates).
    pub actual: f64,
    /// Held.
    pub passed: bool,
}

/// The server's side of the run, in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSummary {
    /// `embedded`, `spawned`, `remote` or `tls-only`.
    pub kind: ServerKind,
    /// The server's own latency (µs) by histogram: `handshake` (TLS with attestation),
    /// `matching` (authenticate + select), `resource.<step>`. A remote server's cover its life.
    pub latency: BTreeMap<String, Quantiles>,
    /// The server's peak resident memory, bytes (remote only; an embedded server shares the
    /// generator's process, see [`Summary::peak_rss_bytes`]).
    pub peak_rss_bytes: Option<u64>,
}

/// The hold executor's measurements, taken while every device was holding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldSummary {
    /// Most devices holding at once (client view).
    pub held_peak: u64,
    /// Device connections the server counted open then.
    pub server_open_connections: Option<u64>,
    /// Seconds from the first connect until every device was through its flow.
    pub connect_s: f64,
    /// This process's resident memory before the first connect, bytes.
    pub rss_before_bytes: Option<u64>,
    /// This process's resident memory with every device holding, bytes (embedded: server and
    /// generator together).
    pub rss_held_bytes: Option<u64>,
    /// (held − before) / held devices: what one held connection costs this process.
    pub bytes_per_connection: Option<u64>,
}

/// Devices under attack, beside devices before it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackSummary {
    /// Each `[[attack]]`.
    pub attackers: Vec<attack::AttackReport>,
    /// p99 of the total latency of devices scheduled before the first attack started, µs.
    pub p99_total_before_us: u64,
    /// p99 of the total latency of devices scheduled while attackers were active, µs.
    pub p99_total_during_us: u64,
    /// during / before (0 when either side has no devices).
    pub p99_ratio: f64,
    /// Devices scheduled before / during.
    pub devices_before: u64,
    /// Devices scheduled while attackers were active.
    pub devices_during: u64,
    /// Time the server took to close everything after the run, ms.
    pub settle_ms: u64,
}

/// What a run produced; serialized as `summary.json` (schema: `loadgen/summary.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// Wall time of the device phase, seconds.
    pub duration_s: f64,
    /// The fleet came from the on-disk cache.
    pub fleet_reused: bool,
    /// Device runs scheduled (the fleet size, or the ramp's starts, which cycle through the fleet).
    pub devices: u64,
    /// Device runs of the warm-up (scheduled before `Loaded::measure_from`): run, not counted in
    /// `devices` or anywhere else; `duration_s` and the rates leave the warm-up out too.
    #[serde(default)]
    pub warmup_devices: u64,
    /// Devices that ran to completion as expected with the full flow.
    pub provisioned: u64,
    /// Devices whose handshake completed (accepted or refused as expected).
    pub handshakes: u64,
    /// Devices that got a wrong verdict: `false_accepts` + `false_rejects` + other wrong
    /// verdicts (refused for another reason, the wrong owner), and a server whose own counts
    /// contradict the fleet's. Errors are not mismatches.
    pub mismatches: u64,
    /// Of the mismatches, devices that got in though their class must be refused.
    #[serde(default)]
    pub false_accepts: u64,
    /// Of the mismatches, devices refused with a verdict (a TLS alert, a TPM refusal, a 4.xx
    /// answer) though their class must get in.
    #[serde(default)]
    pub false_rejects: u64,
    /// Devices that ended in an error rather than a verdict (timeouts, connect, resets, busy,
    /// protocol, I/O, strict checks), by kind in `failures` and `strict_failures`.
    pub errors: u64,
    /// Of the errors, devices that failed one of iotivity-lite's checks on what the server sent
    /// (a frame too short for the real client to read, an answer it would refuse), by check.
    #[serde(default)]
    pub strict_failures: BTreeMap<StrictCheck, u64>,
    /// Of the errors, the other devices by kind of failure (timeout, reset, busy, ...).
    #[serde(default)]
    pub failures: BTreeMap<FailureKind, u64>,
    /// What the devices did: the whole flow, handshake only, or TLS only.
    #[serde(default)]
    pub device_mode: DeviceMode,
    /// The link profile each class went through (classes absent: none, directly to the target).
    #[serde(default)]
    pub links: BTreeMap<DeviceClass, LinkSummary>,
    /// Scheduled starts dropped (open model only).
    pub dropped: u64,
    /// Provisioned per second.
    pub provisioned_per_s: f64,
    /// Handshakes per second.
    pub handshakes_per_s: f64,
    /// Client-side latency per phase.
    pub latency: BTreeMap<Phase, Quantiles>,
    /// The server's view.
    pub server: ServerSummary,
    /// Per class.
    pub classes: BTreeMap<DeviceClass, ClassCounts>,
    /// Server-side rejection counters by reason, for cross-checking.
    pub server_rejections: BTreeMap<String, u64>,
    /// Rejections the fleet expects by reason.
    pub expected_rejections: BTreeMap<String, u64>,
    /// TPM requests the server refused with 4.01 (its own counter), for cross-checking; `None`
    /// when it could not be read.
    #[serde(default)]
    pub server_tpm_refusals: Option<u64>,
    /// TPM refusals with 4.01 the fleet expects.
    #[serde(default)]
    pub expected_tpm_refusals: u64,
    /// A remote server's absolute counters before and after the run: what `merge` counts N
    /// segments sharing one server by, once. Absent for the fleet's own servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_counters: Option<ServerCounters>,
    /// Each replica's own figures (accepted handshakes, peak memory) when the target has
    /// several; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_replicas: Vec<ReplicaFigures>,
    /// A few mismatching devices, for diagnosis.
    pub mismatch_examples: Vec<String>,
    /// The retry policy of devices without a per-class one.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// The devices' attempts.
    #[serde(default)]
    pub attempts: Attempts,
    /// How the fleet came through: time to 50/90/99/100 % got in, goodput, recovery, busy answers
    /// and the server's shed counts.
    #[serde(default)]
    pub storm: Option<Storm>,
    /// Per second of the run (by completion time): to read a ramp's knee.
    pub timeline: Vec<Second>,
    /// Highest provisioned/s over any 3 consecutive seconds (the final, draining second left out):
    /// the throughput at saturation when the executor ramps past it.
    pub peak_provisioned_per_s: f64,
    /// Hold executor only.
    pub hold: Option<HoldSummary>,
    /// `[[attack]]` only: what the attackers saw and how the devices fared.
    pub attack: Option<AttackSummary>,
    /// Device connections the server still had open once devices and attackers were gone
    /// (after up to 30 s of grace); `None` if the server cannot tell.
    pub leftover_connections: Option<u64>,
    /// The open-file limit the run had.
    pub open_files_limit: u64,
    /// This process's peak resident memory, bytes (with an embedded server: both together).
    pub peak_rss_bytes: Option<u64>,
    /// The generator's own saturation (CPU of each side, start lateness, connect time, ports) and
    /// who limited the run; `None` in summaries written before it existed.
    #[serde(default)]
    pub generator: Option<GeneratorSummary>,
    /// A segmented run (`--segment I/N`): which part of which scenario it ran, for `merge`;
    /// absent from an unsegmented (or merged) run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentInfo>,
    /// The generator's own share of the devices' latency (its lateness against the total),
    /// whether every device's phases added up, and the connections recorded for
    /// `dps-loadgen verify-capture`; `None` in summaries written before it existed.
    #[serde(default)]
    pub fidelity: Option<Fidelity>,
    /// Thresholds and their verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// All thresholds held.
    pub passed: bool,
}

/// A finished run: the summary and the raw histograms.
#[derive(Debug)]
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// Client-side histograms.
    pub recorder: Recorder,
    /// The server's histograms (mergeable serializations).
    pub server: ServerView,
    /// Every device connection the run recorded, for the results' `connections.csv`.
    pub connections: Vec<ConnectionRecord>,
    /// When each device that had to get in did, from the first scheduled start, sorted (the
    /// storm numbers' input; `histograms.txt` keeps it as `storm.got_in`, for `merge`).
    pub got_in: Vec<Duration>,
    /// The device id each provisioned device was issued (fleet index, id), for the results'
    /// `identities.csv`.
    pub identities: Vec<(usize, String)>,
}

/// What the run knows besides the collected devices.
#[derive(Debug)]
pub struct Facts {
    /// When the device phase started.
    pub started_at: time::OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// Runs scheduled.
    pub total: u64,
    /// Starts dropped.
    pub dropped: u64,
    /// The fleet came from the cache.
    pub fleet_reused: bool,
    /// Hold executor only.
    pub hold: Option<HoldSummary>,
    /// The open-file limit of the run.
    pub open_files_limit: u64,
    /// The attackers' reports.
    pub attacks: Vec<attack::AttackReport>,
    /// Server connections still open once everything was gone, and how long that took to settle.
    pub leftover: Option<(u64, Duration)>,
    /// What the run measured about its generator (`None` if its sampler could not start).
    pub generator: Option<saturation::Measured>,
    /// The device connections recorded, and how many were left out beyond the log's cap.
    pub connections: (Vec<ConnectionRecord>, u64),
}

/// The summary of a run: the collected devices and `facts`, cross-checked against the server's
/// own `server` view, its thresholds judged.
pub fn summarize(loaded: &Loaded, mut c: Collector, server: ServerView, mut f: Facts) -> Outcome {
    // Rates are of the measured part of the device phase (all of it unless a warm-up was set).
    let secs = measured_secs(loaded, &f);
    let devices_per_s = c.done.saturating_sub(c.warmup) as f64 / secs;
    let connections = std::mem::take(&mut f.connections.0);
    let derived = Derived::of(&mut c, &server, &mut f, (secs, connections.len() as u64));
    let got_in_at = std::mem::take(&mut c.got_in_at);
    let mut identities = std::mem::take(&mut c.identities);
    identities.sort_unstable();
    let (mut summary, recorder) = assemble(loaded, c, &server, f, derived);
    if shares_server(loaded) {
        // The server's counts cover every segment's devices: `merge` checks them, once.
        if let Some(g) = summary.generator.as_mut() {
            g.notes.push(
                "segment of a shared remote server: its rejection counts cover every segment's \
                 devices, so they are cross-checked by `merge`, not here"
                    .into(),
            );
        }
    } else {
        cross_check(&mut summary);
    }
    let judged = judge(
        &summary,
        &recorder,
        (&got_in_at, devices_per_s),
        &loaded.thresholds,
    );
    summary.thresholds = judged;
    summary.passed = summary.thresholds.iter().all(|t| t.passed);
    Outcome {
        summary,
        recorder,
        server,
        connections,
        got_in: got_in_at,
        identities,
    }
}

/// Whether this run is one of several segments on one remote server (whose view then covers
/// the other segments' devices too).
pub fn shares_server(loaded: &Loaded) -> bool {
    loaded.segment.is_some_and(|s| s.count > 1)
        && matches!(loaded.target, crate::scenario::TargetKind::Remote { .. })
}

/// The length of the measured part of the device phase, in seconds (never zero, so rates stay
/// finite).
fn measured_secs(loaded: &Loaded, f: &Facts) -> f64 {
    f.duration
        .saturating_sub(loaded.measure_from)
        .as_secs_f64()
        .max(1e-9)
}

/// The parts of a summary that are computed from the collector and facts before the summary is
/// assembled, kept together so `assemble` only has to place them.
struct Derived {
    secs: f64,
    attack: Option<AttackSummary>,
    generator: Option<GeneratorSummary>,
    fidelity: Fidelity,
    storm: Storm,
    timeline: Vec<Second>,
    peak_provisioned_per_s: f64,
}

impl Derived {
    /// Derives the parts in the order the summary has always computed them (the storm analysis
    /// mutates the collector, so what follows it sees its effect). `measured` is the measured
    /// seconds and the number of device connections recorded.
    fn of(c: &mut Collector, server: &ServerView, f: &mut Facts, measured: (f64, u64)) -> Self {
        let (secs, recorded) = measured;
        let attack = attack_summary(c, std::mem::take(&mut f.attacks), f.leftover);
        let fidelity = Fidelity::of(&c.recorder, c.unbalanced, (recorded, f.connections.1));
        let generator = generator_summary(c, f.generator.as_ref(), &fidelity);
        let storm = storm::storm(c, f.dropped, server.closes.clone());
        let timeline = timeline(c, f.generator.as_ref());
        let peak_provisioned_per_s = c.timeline.peak(3);
        Derived {
            secs,
            attack,
            generator,
            fidelity,
            storm,
            timeline,
            peak_provisioned_per_s,
        }
    }
}

/// The generator's own summary (if its sampler ran), with the fidelity note appended to it.
fn generator_summary(
    c: &Collector,
    measured: Option<&saturation::Measured>,
    fidelity: &Fidelity,
) -> Option<GeneratorSummary> {
    let failed = |k: FailureKind| c.failures.get(&k).copied().unwrap_or(0);
    let outcomes = saturation::Outcomes {
        provisioned: c.provisioned,
        handshakes: c.handshakes,
        tcp: c.recorder.phases.get(&Phase::Tcp).map(Quantiles::of),
        timeouts: failed(FailureKind::Timeout),
        busy: failed(FailureKind::Busy),
        resets: failed(FailureKind::Reset),
    };
    let mut generator = measured.map(|m| saturation::summarize(m, &outcomes));
    if let (Some(g), Some(note)) = (generator.as_mut(), fidelity.note()) {
        g.notes.push(note);
    }
    generator
}

/// The per-second timeline, joined with the generator's own per-second measurements when it
/// has them.
fn timeline(c: &Collector, measured: Option<&saturation::Measured>) -> Vec<Second> {
    match measured {
        Some(m) => {
            c.timeline
                .seconds_with(&m.starts.dropped_per_second, &m.sampled.seconds, m.embedded)
        }
        None => c.timeline.seconds(),
    }
}

/// Places the collected counts, the facts, the server's view and the derived parts into a
/// summary (thresholds not yet judged); hands the recorder back for judging.
fn assemble(
    loaded: &Loaded,
    c: Collector,
    server: &ServerView,
    f: Facts,
    d: Derived,
) -> (Summary, Recorder) {
    let secs = d.secs;
    let summary = Summary {
        schema_version: 2,
        scenario: loaded.scenario.name.clone(),
        started_at: f
            .started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        duration_s: secs,
        fleet_reused: f.fleet_reused,
        devices: f.total.saturating_sub(c.warmup),
        warmup_devices: c.warmup,
        provisioned: c.provisioned,
        handshakes: c.handshakes,
        mismatches: c.mismatches,
        false_accepts: c.false_accepts,
        false_rejects: c.false_rejects,
        errors: c.errors,
        strict_failures: c.strict_failures,
        failures: c.failures,
        device_mode: loaded.mode,
        links: loaded
            .links
            .iter()
            .map(|(class, link)| (class, link.summary()))
            .collect(),
        dropped: f.dropped,
        provisioned_per_s: c.provisioned as f64 / secs,
        handshakes_per_s: c.handshakes as f64 / secs,
        latency: c
            .recorder
            .phases
            .iter()
            .map(|(p, h)| (*p, Quantiles::of(h)))
            .collect(),
        server: server_summary(server),
        classes: c.classes,
        server_rejections: server.rejections.clone(),
        expected_rejections: c.expected_rejections,
        server_tpm_refusals: server.tpm_refusals,
        expected_tpm_refusals: c.expected_tpm_refusals,
        server_counters: server.counters.clone(),
        server_replicas: server.replicas.clone(),
        mismatch_examples: c.examples,
        retry_policy: loaded.retry.default.name(),
        attempts: c.attempts,
        storm: Some(d.storm),
        timeline: d.timeline,
        peak_provisioned_per_s: d.peak_provisioned_per_s,
        hold: f.hold,
        attack: d.attack,
        leftover_connections: f.leftover.map(|(n, _)| n),
        open_files_limit: f.open_files_limit,
        peak_rss_bytes: dps_server::metrics::resident_memory().map(|m| m.peak),
        generator: d.generator,
        segment: loaded.segment.map(|s| SegmentInfo {
            index: s.index,
            count: s.count,
            scenario_hash: crate::segment::scenario_hash(&loaded.scenario),
        }),
        fidelity: Some(d.fidelity),
        thresholds: Vec::new(),
        passed: true,
    };
    (summary, c.recorder)
}

/// The server's side, its histograms reduced to quantiles.
fn server_summary(server: &ServerView) -> ServerSummary {
    let latency = server
        .histograms
        .iter()
        .filter_map(|(name, h)| {
            let hist = dps_server::metrics::decode_histogram(&h.hdr).ok()?;
            Some((name.clone(), Quantiles::of(&hist)))
        })
        .collect();
    ServerSummary {
        kind: server.kind,
        latency,
        peak_rss_bytes: server.peak_rss_bytes,
    }
}

/// The server's own counts against the fleet's expectations; a difference is a mismatch.
pub fn cross_check(summary: &mut Summary) {
    // The server's own count of rejections by reason must equal what the runs expect: per-device
    // checks see only the TLS alert, this sees the exact reason. (A run that timed out client-side
    // may still have been judged by the server, so the check holds only without errors.)
    // A handshake storm's refusals are the server's too (reason no_path: its CA is unknown);
    // each storm handshake that ended in a close may or may not have reached attestation (a shed
    // connection never does), so no_path may exceed the devices' count by at most that many.
    let storm: u64 = summary
        .attack
        .iter()
        .flat_map(|a| &a.attackers)
        .filter(|r| r.kind == AttackKind::HandshakeStorm)
        .map(|r| r.attempted)
        .sum();
    let mut server_rejections = summary.server_rejections.clone();
    if storm > 0 {
        if let Some(n) = server_rejections.get_mut("no_path") {
            let expected = summary
                .expected_rejections
                .get("no_path")
                .copied()
                .unwrap_or(0);
            if *n >= expected && *n <= expected + storm {
                *n = expected;
            }
        }
        server_rejections.retain(|_, n| *n > 0);
    }
    if summary.errors == 0 && server_rejections != summary.expected_rejections {
        summary.mismatches += 1;
        summary.mismatch_examples.push(format!(
            "server rejections {:?} differ from the fleet's expected {:?}",
            summary.server_rejections, summary.expected_rejections
        ));
    }
    // Likewise every refused TPM device got exactly one 4.01 from the server (its own count of
    // TPM requests answered so; a TPM device's other requests are not in it).
    if summary.errors == 0
        && summary
            .server_tpm_refusals
            .is_some_and(|n| n != summary.expected_tpm_refusals)
    {
        summary.mismatches += 1;
        summary.mismatch_examples.push(format!(
            "server TPM refusals (4.01) {:?} differ from the fleet's expected {}",
            summary.server_tpm_refusals, summary.expected_tpm_refusals
        ));
    }
}

/// `thresholds` judged on `summary` and its histograms; `got_in_at` (when each device that had
/// to get in did, sorted; empty: `time_to` thresholds cannot be told and fail) and the rate of
/// finished runs per second. Also what `merge` judges a merged run with.
pub fn judge(
    summary: &Summary,
    recorder: &Recorder,
    (got_in_at, devices_per_s): (&[Duration], f64),
    thresholds: &[Threshold],
) -> Vec<ThresholdResult> {
    let run = Run {
        summary,
        recorder,
        got_in_at,
        devices_per_s,
    };
    thresholds.iter().map(|t| run.judge(t)).collect()
}

/// What thresholds are judged against.
struct Run<'a> {
    summary: &'a Summary,
    recorder: &'a Recorder,
    /// When each device that had to get in did, sorted.
    got_in_at: &'a [Duration],
    /// Runs finished per second.
    devices_per_s: f64,
}

impl Run<'_> {
    /// The verdict of `t`: its metric's value (a percentage of the devices for a percent limit).
    fn judge(&self, t: &Threshold) -> ThresholdResult {
        let mut actual = self.metric(t.metric);
        if t.percent {
            actual = 100.0 * actual / (self.summary.devices.max(1) as f64);
        }
        ThresholdResult {
            threshold: t.text.clone(),
            actual,
            passed: t.op.holds(actual, t.limit),
        }
    }

    /// The value a threshold on `metric` is judged by (NaN when the run cannot tell: it fails).
    fn metric(&self, metric: Metric) -> f64 {
        let s = self.summary;
        let micros = |d: Duration| d.as_micros() as f64;
        match metric {
            Metric::Mismatches => s.mismatches as f64,
            Metric::FalseAccepts => s.false_accepts as f64,
            Metric::FalseRejects => s.false_rejects as f64,
            Metric::Errors => s.errors as f64,
            Metric::ErrorsOf { error: "strict" } => s.strict_failures.values().sum::<u64>() as f64,
            Metric::ErrorsOf { error: kind } => s
                .failures
                .iter()
                .filter(|(k, _)| k.as_str() == kind)
                .map(|(_, n)| *n)
                .sum::<u64>() as f64,
            Metric::Provisioned => s.provisioned as f64,
            Metric::Dropped => s.dropped as f64,
            Metric::AttackP99Ratio => s.attack.as_ref().map_or(f64::NAN, |a| a.p99_ratio),
            Metric::LeftoverConnections => s.leftover_connections.map_or(f64::NAN, |n| n as f64),
            Metric::Quantile { quantile, phase } => self.recorder.quantile(phase, quantile) as f64,
            Metric::TimeTo { fraction } => {
                let must = s.storm.as_ref().map_or(0, |st| st.must_get_in);
                storm::time_to(self.got_in_at, must, fraction).map_or(f64::NAN, micros)
            }
            Metric::Attempts { quantile } => attempts_quantile(&s.attempts, quantile),
            Metric::TroughRatio => s
                .storm
                .as_ref()
                .and_then(|st| st.trough_ratio)
                .unwrap_or(f64::NAN),
            Metric::Recovered => s
                .storm
                .as_ref()
                .map_or(f64::NAN, |st| f64::from(u8::from(st.recovered))),
            Metric::Rate {
                what: RateOf::Provisioned,
            } => s.provisioned_per_s,
            Metric::Rate {
                what: RateOf::Handshakes,
            } => s.handshakes_per_s,
            Metric::Rate {
                what: RateOf::Devices,
            } => self.devices_per_s,
            Metric::Rate {
                what: RateOf::Goodput,
            } => s
                .storm
                .as_ref()
                .map_or(f64::NAN, |st| st.goodput_while_arriving_per_s),
        }
    }
}

/// The attempts per device at `quantile` (the smallest count with at least that share of the
/// devices at or below it); NaN without devices.
fn attempts_quantile(a: &Attempts, quantile: f64) -> f64 {
    let devices: u64 = a.per_device.values().sum();
    if devices == 0 {
        return f64::NAN;
    }
    let needed = ((quantile * devices as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (attempts, n) in &a.per_device {
        seen += n;
        if seen >= needed {
            return f64::from(*attempts);
        }
    }
    a.max as f64
}

fn attack_summary(
    c: &Collector,
    attackers: Vec<attack::AttackReport>,
    leftover: Option<(u64, Duration)>,
) -> Option<AttackSummary> {
    let (before, during) = (c.before_attack.as_ref()?, c.during_attack.as_ref()?);
    let p99 = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        }
    };
    let (b, d) = (p99(before), p99(during));
    Some(AttackSummary {
        attackers,
        p99_total_before_us: b,
        p99_total_during_us: d,
        p99_ratio: if b == 0 || d == 0 {
            0.0
        } else {
            d as f64 / b as f64
        },
        devices_before: before.len(),
        devices_during: during.len(),
        settle_ms: leftover.map_or(0, |(_, t)| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    })
}
