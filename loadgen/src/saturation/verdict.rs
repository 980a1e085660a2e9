//! Who limited a run: the generator, the target, or neither as far as the figures show.
//!
//! The generator limited a run when it could not offer the load the scenario asks for, so that
//! the figures describe the generator rather than the target: its process ran out of the cores it
//! can use (or, server spawned on the same machine, the machine's cores were busy and the
//! generator took at least the server's share of them), its starts ran behind the schedule or
//! were dropped for lateness, connect() ate a large share of its CPU (a port search, as behind a
//! previous run's TIME_WAIT), or a source address ran near its port budget. Starts dropped at the
//! scenario's own `max_in_flight` count too, unless the target shows its own limit, which then
//! explains why devices stayed in flight. The target limited a run when, the generator being
//! healthy, devices timed out, were answered 5.03 or were reset, or a spawned server used most of
//! a busy machine. An embedded server shares the generator's process and threads: that CPU cannot
//! be split, so it is a note, not a verdict.

use super::figures::{GeneratorSummary, LimitedBy, Measured, Outcomes};
use super::meter;

/// Share of its usable cores above which a process counts as out of CPU.
pub const CPU_BUSY: f64 = 0.9;
/// Late starts (over [`meter::LATE`]) that show the schedule was not kept: more than 1 % of the
/// starts (p99 beyond it), and at least this many, so that the few starts one stall of the machine
/// delays do not count.
pub const LATE_STARTS: u64 = 10;
/// Share of the generator's CPU spent inside connect calls above which connecting is its
/// bottleneck (a healthy loopback connect costs a few percent of a provisioning).
pub const CONNECT_SHARE: f64 = 0.2;
/// Share of the machine's cores other processes took above which a run was not on a quiet
/// machine.
pub const OTHERS_BUSY: f64 = 0.25;
/// Share of one source address's ports in use above which the port budget is the limit.
pub const PORTS_NEAR: f64 = 0.9;

/// A verdict and its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Who.
    pub limited_by: LimitedBy,
    /// Why.
    pub reasons: Vec<String>,
    /// What the figures cannot tell.
    pub notes: Vec<String>,
}

/// `d` in whole microseconds, saturating.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds as milliseconds, in words.
fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// Judge the figures of `s`, measured as `m`, with the devices' outcomes `o`.
pub fn judge(s: &GeneratorSummary, m: &Measured, o: &Outcomes) -> Judged {
    let cores = m.cores.max(1) as f64;
    let machine = Machine {
        cores,
        usable: m.workers.clamp(1, m.cores.max(1)) as f64,
        others: others_busy(s, cores),
    };
    let mut f = Findings::default();
    if let Some(o) = &machine.others {
        f.notes
            .push(format!("{o}: these are not a quiet machine's figures"));
    }
    f.cpu(s, m, &machine);
    f.schedule(s, m, &machine);
    f.connect_and_ports(s);
    let troubled = o.timeouts + o.busy + o.resets;
    if troubled > 0 {
        f.target.push(format!(
            "{troubled} devices timed out ({}), were answered 5.03 ({}) or had their \
             connection closed or reset ({}) by the target",
            o.timeouts, o.busy, o.resets
        ));
    }
    f.verdict(s, machine.usable, m.embedded)
}

/// The machine a run was judged on: its cores, those the generator can use, and other
/// processes' CPU when they took enough of it to matter.
struct Machine {
    cores: f64,
    usable: f64,
    others: Option<String>,
}

/// Other processes' CPU, in words, when they took enough of the machine to matter.
fn others_busy(s: &GeneratorSummary, cores: f64) -> Option<String> {
    s.cpu
        .others_cores_used
        .filter(|x| *x >= OTHERS_BUSY * cores)
        .map(|x| format!("other processes on the machine took {x:.2} of its {cores} cores"))
}

/// What the figures showed, by whom it limits: the generator, its own in-flight cap, the target.
#[derive(Default)]
struct Findings {
    generator: Vec<String>,
    cap_drops: Vec<String>,
    target: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    /// The generator's process out of cores, or the machine's cores busy (and whose share).
    fn cpu(&mut self, s: &GeneratorSummary, m: &Measured, machine: &Machine) {
        let Some(p) = &s.cpu.process else {
            return;
        };
        let (cores, usable) = (machine.cores, machine.usable);
        if m.embedded {
            self.notes.push(format!(
                "this process's CPU ({:.2} of {cores} cores on average, {:.2} in the busiest \
                 second) is the embedded server's and the generator's together; run with \
                 [target] spawn = true to tell them apart",
                p.cores_used, p.peak_cores_used
            ));
        } else if p.cores_used >= CPU_BUSY * usable {
            self.generator.push(format!(
                "its process used {:.2} cores of the {usable} it can use ({} worker threads, \
                 {cores} CPUs)",
                p.cores_used, m.workers
            ));
        }
        if let Some(server) = &s.cpu.server {
            if p.cores_used + server.cores_used >= CPU_BUSY * cores {
                self.machine_busy(p.cores_used, server.cores_used, cores);
            }
        }
    }

    /// The machine's cores were busy: the generator's fault if it took at least the server's share.
    fn machine_busy(&mut self, generator: f64, server: f64, cores: f64) {
        let both = format!(
            "the machine's {cores} cores were busy ({generator:.2} for the generator, \
             {server:.2} for the server)"
        );
        if generator >= server {
            self.generator.push(format!(
                "{both}: the generator took at least the server's share, which the server could \
                 otherwise have used"
            ));
        } else {
            self.target
                .push(format!("{both}: the server used most of them"));
        }
    }

    /// Starts behind the schedule, dropped for lateness, or dropped at the in-flight cap.
    fn schedule(&mut self, s: &GeneratorSummary, m: &Measured, machine: &Machine) {
        if let Some(late) = &s.start_lateness {
            if late.p99_us > micros(meter::LATE) && s.late_starts >= LATE_STARTS {
                self.generator.push(format!(
                    "device starts ran behind the schedule: {} of {} more than {} late, p99 {} \
                     (max {}){}",
                    s.late_starts,
                    late.count,
                    ms(micros(meter::LATE)),
                    ms(late.p99_us),
                    ms(late.max_us),
                    match (&machine.others, m.embedded) {
                        (Some(o), _) => format!("; {o}"),
                        (None, true) => {
                            "; the embedded server's work runs on the same threads".into()
                        }
                        (None, false) => String::new(),
                    }
                ));
            }
        }
        if s.dropped_late > 0 {
            self.generator.push(format!(
                "{} starts dropped for being more than {} late",
                s.dropped_late,
                m.max_lateness
                    .map_or_else(|| "max_lateness".into(), |d| format!("{d:?}"))
            ));
        }
        if s.dropped_in_flight > 0 {
            self.cap_drops.push(format!(
                "{} starts dropped at the generator's own cap of {} devices in flight \
                 (executor.max_in_flight)",
                s.dropped_in_flight,
                m.max_in_flight.unwrap_or(0)
            ));
        }
    }

    /// connect() eating the generator's CPU, or a source address near its port budget.
    fn connect_and_ports(&mut self, s: &GeneratorSummary) {
        if let Some(share) = s.connect.busy_share {
            if share > CONNECT_SHARE {
                self.generator.push(format!(
                    "connect() took {:.2} s, {:.0} % of the generator's CPU",
                    s.connect.busy_s,
                    share * 100.0
                ));
            }
        }
        let ports = &s.ports;
        if ports.peak_in_use_per_address as f64 >= PORTS_NEAR * ports.per_address as f64 {
            self.generator.push(format!(
                "a source address had {} of its {} ports toward the target in use",
                ports.peak_in_use_per_address, ports.per_address
            ));
        }
    }

    /// The generator limited the run if it shows a limit of its own; else the target if it does
    /// (cap drops then explained by it); else the cap drops are the generator's; else nobody.
    fn verdict(mut self, s: &GeneratorSummary, usable: f64, embedded: bool) -> Judged {
        let (limited_by, reasons) = if !self.generator.is_empty() {
            self.generator.extend(self.cap_drops);
            (LimitedBy::Generator, self.generator)
        } else if !self.target.is_empty() {
            self.target.extend(self.cap_drops);
            (LimitedBy::Target, self.target)
        } else if !self.cap_drops.is_empty() {
            (LimitedBy::Generator, self.cap_drops)
        } else {
            (LimitedBy::None, vec![healthy(s, usable, embedded)])
        };
        Judged {
            limited_by,
            reasons,
            notes: self.notes,
        }
    }
}

/// The figures of a run that shows no limit, in one sentence.
fn healthy(s: &GeneratorSummary, usable: f64, embedded: bool) -> String {
    let cpu = s.cpu.process.map_or_else(
        || "CPU not known".to_owned(),
        |p| {
            format!(
                "{} used {:.2} of {usable} usable cores",
                if embedded {
                    "process (server included)"
                } else {
                    "generator"
                },
                p.cores_used
            )
        },
    );
    let late = s.start_lateness.map_or_else(
        || "no schedule (closed loop)".to_owned(),
        |l| format!("start lateness p99 {}", ms(l.p99_us)),
    );
    let connect = s.connect.busy_share.map_or_else(
        || "connect() share not known".to_owned(),
        |x| format!("connect() {:.1} % of its CPU", x * 100.0),
    );
    format!(
        "no sign that either side was at its limit: {cpu}, {late}, no dropped starts, \
         {connect}, at most {} of {} ports in use per source address",
        s.ports.peak_in_use_per_address, s.ports.per_address
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Quantiles;
    use crate::saturation::budget::{Demand, PortPlan};
    use crate::saturation::cpu::CpuTimes;
    use crate::saturation::meter::Starts;
    use crate::saturation::sampler::{CpuSamples, PortSamples, Sampled};
    use crate::saturation::summarize;
    use std::time::Duration;

    fn cpu(secs: f64) -> Option<CpuSamples> {
        Some(CpuSamples {
            spent: CpuTimes {
                user: Duration::from_secs_f64(secs * 0.6),
                system: Duration::from_secs_f64(secs * 0.4),
            },
            peak_cores: secs / 10.0,
        })
    }

    fn measured(process: f64, server: Option<f64>, starts: Starts) -> Measured {
        Measured {
            sampled: Sampled {
                wall: Duration::from_secs(10),
                process: cpu(process),
                sampler: CpuTimes::default(),
                server: server.and_then(cpu),
                machine: None,
                ports: PortSamples {
                    at_start: 0,
                    peak: 900,
                    peak_per_address: 900,
                    peak_time_wait: 800,
                    samples: 10,
                },
                seconds: Vec::new(),
            },
            starts,
            connect_busy: (Duration::from_millis(200), 4_000),
            plan: PortPlan {
                sources: Vec::new(),
                route_source: None,
                range: (32768, 60999),
                per_address: 28232,
                free: 28232,
                in_use: 0,
                demand: Demand {
                    in_flight: 100,
                    closing: 4_000,
                    close_rate: Some(400.0),
                    exact: true,
                },
                window: Duration::from_secs(60),
                notes: Vec::new(),
            },
            workers: 2,
            cores: 2,
            embedded: server.is_none(),
            max_in_flight: Some(4),
            max_lateness: Some(Duration::from_secs(1)),
            floor: None,
        }
    }

    fn late(p99_ms: u64) -> Option<Quantiles> {
        Some(Quantiles {
            count: 4_000,
            mean_us: 500.0,
            p50_us: 400,
            p90_us: 800,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000,
            max_us: p99_ms * 2000,
        })
    }

    fn outcomes() -> Outcomes {
        Outcomes {
            provisioned: 4_000,
            handshakes: 4_000,
            ..Outcomes::default()
        }
    }

    fn starts(p99_ms: u64, late_drops: u64, cap_drops: u64) -> Starts {
        Starts {
            lateness: late(p99_ms),
            late: if p99_ms > 25 { 60 } else { 0 },
            dropped_late: late_drops,
            dropped_in_flight: cap_drops,
            dropped_per_second: vec![late_drops + cap_drops],
        }
    }

    #[test]
    fn a_light_run_is_limited_by_nobody() {
        let s = summarize(&measured(4.0, None, starts(1, 0, 0)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::None, "{:?}", s.reasons);
        assert!(s.reasons[0].contains("no sign"), "{:?}", s.reasons);
        assert!(s.notes.iter().any(|n| n.contains("embedded server")));
        let p = s.cpu.process.expect("cpu");
        assert!((p.ms_per_provisioned.expect("per device") - 1.0).abs() < 1e-9);
        assert!((p.cores_used - 0.4).abs() < 1e-9);
        assert!((s.connect.busy_share.expect("share") - 0.05).abs() < 1e-9);
    }

    #[test]
    fn lateness_drops_cpu_connect_and_ports_point_at_the_generator() {
        let by = |m: &Measured, o: &Outcomes| summarize(m, o);
        let mut busy_machine = measured(4.0, None, starts(80, 0, 0));
        busy_machine.sampled.machine = Some(Duration::from_secs(16));
        let s = by(&busy_machine, &outcomes());
        assert!(
            s.reasons[0].contains("other processes on the machine took 1.20 of its 2 cores"),
            "{:?}",
            s.reasons
        );
        assert_eq!(
            s.cpu.others_cores_used.map(|x| (x * 100.0).round()),
            Some(120.0)
        );
        let s = by(&measured(4.0, None, starts(80, 0, 0)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::Generator);
        assert!(
            s.reasons[0].contains("behind the schedule"),
            "{:?}",
            s.reasons
        );
        // A few starts delayed by one stall are not a schedule missed.
        let mut stalled = starts(80, 0, 0);
        stalled.late = 3;
        assert_eq!(
            by(&measured(4.0, None, stalled), &outcomes()).limited_by,
            LimitedBy::None
        );
        let s = by(&measured(4.0, None, starts(1, 12, 0)), &outcomes());
        assert!(
            s.reasons[0].contains("12 starts dropped"),
            "{:?}",
            s.reasons
        );
        // A spawned server: the generator's own process at 1.9 of 2 cores.
        let s = by(&measured(19.0, Some(1.0), starts(1, 0, 0)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::Generator);
        assert!(s.reasons[0].contains("1.90 cores"), "{:?}", s.reasons);
        // A busy machine where the generator takes more than the server.
        let s = by(&measured(10.0, Some(9.0), starts(1, 0, 0)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::Generator, "{:?}", s.reasons);
        let mut m = measured(4.0, None, starts(1, 0, 0));
        m.connect_busy.0 = Duration::from_secs(2);
        let s = by(&m, &outcomes());
        assert!(s.reasons[0].contains("connect()"), "{:?}", s.reasons);
        let mut m = measured(4.0, None, starts(1, 0, 0));
        m.sampled.ports.peak_per_address = 27_000;
        assert_eq!(by(&m, &outcomes()).limited_by, LimitedBy::Generator);
    }

    #[test]
    fn the_target_limits_when_the_generator_is_healthy() {
        let busy = Outcomes {
            timeouts: 3,
            busy: 2,
            ..outcomes()
        };
        let s = summarize(&measured(4.0, None, starts(1, 0, 5)), &busy);
        assert_eq!(s.limited_by, LimitedBy::Target);
        assert!(
            s.reasons[0].contains("5 devices timed out"),
            "{:?}",
            s.reasons
        );
        // The cap drops are explained by the target, and still reported.
        assert!(s.reasons[1].contains("max_in_flight"), "{:?}", s.reasons);
        // Without a target limit, drops at the generator's own cap are the generator's.
        let s = summarize(&measured(4.0, None, starts(1, 0, 5)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::Generator);
        // A busy machine where the server takes most.
        let s = summarize(&measured(6.0, Some(13.0), starts(1, 0, 0)), &outcomes());
        assert_eq!(s.limited_by, LimitedBy::Target, "{:?}", s.reasons);
        assert_eq!(LimitedBy::Target.as_str(), "target");
    }
}
