//! The port budget of a run, checked before any device starts: the connections its devices hold
//! at once and the TIME_WAIT they leave behind, against the free ephemeral ports of the source
//! addresses they connect from. On IPv4 loopback the run picks as many fresh source addresses as
//! it needs (or refuses an explicit `[device] source_addresses` that is too few); toward any other
//! target the kernel picks the one source address, and a run that cannot fit is refused with what
//! there is.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ports;
use crate::spec::{DeviceClass, ExecutorSpec, FleetSpec};

/// How long a closed connection's port stays in TIME_WAIT on Linux (`TCP_TIMEWAIT_LEN`).
pub const TIME_WAIT: Duration = Duration::from_secs(60);
/// How soon the kernel may reuse a TIME_WAIT port for a new outgoing connection where
/// `net.ipv4.tcp_tw_reuse` allows it (its `tcp_tw_reuse_delay`, 1 s by default).
pub const TIME_WAIT_REUSE: Duration = Duration::from_secs(1);
/// Share of each loopback address's ports a run sized by the generator fills at its busiest:
/// the kernel finds a free port quickly while most are free.
const LOOPBACK_FILL: f64 = 0.8;
/// Most loopback source addresses a run uses (as `[device] source_addresses` allows).
pub const MAX_SOURCES: u64 = 250;
/// Above this share of the budget a run is let through with a warning.
const NEAR: f64 = 0.9;

/// The ports a run's devices take toward the target at its busiest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Connections open at once, at most.
    pub in_flight: u64,
    /// Connections that close during the run, each leaving a port in TIME_WAIT.
    pub closing: u64,
    /// Connections closing per second at the busiest (`None`: no rate, as in a closed loop).
    pub close_rate: Option<f64>,
    /// The TIME_WAIT figure is a real estimate (a rate, or a hold's known reconnects), not only
    /// an upper bound (a closed loop's every connection).
    pub exact: bool,
}

impl Demand {
    /// Ports in TIME_WAIT at the busiest, each held for `window`.
    pub fn time_wait(&self, window: Duration) -> u64 {
        match self.close_rate {
            Some(rate) => self
                .closing
                .min((rate * window.as_secs_f64()).ceil() as u64),
            None => self.closing,
        }
    }

    /// Ports the run takes at its busiest: in flight and in TIME_WAIT.
    pub fn needed(&self, window: Duration) -> u64 {
        self.in_flight.saturating_add(self.time_wait(window))
    }

    /// Ports without which the run certainly fails: all it takes when that is a real estimate,
    /// else the connections in flight.
    pub fn required(&self, window: Duration) -> u64 {
        if self.exact {
            self.needed(window)
        } else {
            self.in_flight
        }
    }
}

/// Connections one device of `class` opens: `identity` and `tpm_replayed_nonce` devices open a
/// second one after their first.
fn connections(class: DeviceClass) -> f64 {
    match class {
        DeviceClass::Identity | DeviceClass::TpmReplayedNonce => 2.0,
        _ => 1.0,
    }
}

/// The demand of a scenario's fleet under its executor; a device gives up after `timeout`.
pub fn demand(fleet: &FleetSpec, executor: &ExecutorSpec, timeout: Duration) -> Demand {
    let weights: f64 = fleet.mix.values().map(|w| f64::from(*w)).sum();
    let per_device = if weights > 0.0 {
        fleet
            .mix
            .iter()
            .map(|(c, w)| connections(*c) * f64::from(*w))
            .sum::<f64>()
            / weights
    } else {
        1.0
    };
    let devices = fleet.devices as u64;
    let conns = |runs: u64| (runs as f64 * per_device).ceil() as u64;
    let open_model = |runs: u64, peak: f64, max_in_flight: usize| {
        let cap = if max_in_flight > 0 {
            max_in_flight as u64
        } else {
            (peak * timeout.as_secs_f64()).ceil() as u64
        };
        Demand {
            in_flight: cap.min(runs).max(1),
            closing: conns(runs),
            close_rate: Some(peak * per_device),
            exact: true,
        }
    };
    match executor {
        ExecutorSpec::ClosedLoop { concurrency } => Demand {
            in_flight: (*concurrency as u64).min(devices),
            closing: conns(devices),
            close_rate: None,
            exact: false,
        },
        ExecutorSpec::ConstantArrivalRate {
            rate,
            max_in_flight,
            ..
        } => open_model(devices, *rate, *max_in_flight),
        ExecutorSpec::RampingArrivalRate {
            start_rate,
            stages,
            max_in_flight,
            ..
        } => {
            // Starts are the area under the rate, which moves linearly from stage to stage.
            let mut from = start_rate.max(0.0);
            let mut runs = 0.0;
            let mut peak = from;
            for s in stages {
                let to = s.target.max(0.0);
                runs += (from + to) / 2.0 * s.duration.as_secs_f64();
                peak = peak.max(to);
                from = to;
            }
            open_model(runs.ceil() as u64, peak, *max_in_flight)
        }
        ExecutorSpec::Hold { .. } => Demand {
            // Every device stays connected; only the first sessions of two-connection devices
            // close.
            in_flight: devices,
            closing: conns(devices).saturating_sub(devices),
            close_rate: None,
            exact: true,
        },
    }
}

/// Where a run's devices connect from, and the budget that leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct PortPlan {
    /// Addresses devices bind to (device i uses `i % len`); empty: the kernel picks.
    pub sources: Vec<IpAddr>,
    /// When the kernel picks: the address it routes from toward the target.
    pub route_source: Option<IpAddr>,
    /// `net.ipv4.ip_local_port_range`.
    pub range: (u16, u16),
    /// Ports of one source address toward one target.
    pub per_address: u64,
    /// Free ports over the sources toward the target when planned.
    pub free: u64,
    /// Sockets from the sources toward the target when planned.
    pub in_use: u64,
    /// What the run takes.
    pub demand: Demand,
    /// How long a closed connection's port counts as taken.
    pub window: Duration,
    /// Warnings for the summary.
    pub notes: Vec<String>,
}

impl PortPlan {
    /// Ports the run takes at its busiest.
    pub fn needed(&self) -> u64 {
        self.demand.needed(self.window)
    }
}

/// Why a run cannot have the ports it needs.
#[derive(Debug, thiserror::Error)]
pub enum PortBudgetError {
    /// Too few free ports for what the scenario asks.
    #[error(
        "port budget: {key}: the run needs about {needed} ephemeral ports toward {target} at its \
         busiest ({detail}), but {have}; {advice}"
    )]
    TooFew {
        /// The scenario key to change.
        key: &'static str,
        /// The target.
        target: IpAddr,
        /// Ports needed.
        needed: u64,
        /// In flight and TIME_WAIT.
        detail: String,
        /// What there is.
        have: String,
        /// What to do.
        advice: String,
    },
    /// The kernel's port figures cannot be read.
    #[error("port budget: cannot read {what}: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// The scenario key that sets how many connections a run opens at once or per second.
fn load_key(executor: &ExecutorSpec) -> &'static str {
    match executor {
        ExecutorSpec::ClosedLoop { .. } => "executor.concurrency",
        ExecutorSpec::ConstantArrivalRate { .. } | ExecutorSpec::RampingArrivalRate { .. } => {
            "executor.rate"
        }
        ExecutorSpec::Hold { .. } => "fleet.devices",
    }
}

/// In flight and in TIME_WAIT, in words.
fn detail(d: &Demand, window: Duration) -> String {
    let tw = d.time_wait(window);
    match d.close_rate {
        Some(rate) if d.closing > tw => format!(
            "{} connections in flight + {tw} in TIME_WAIT: {rate:.0} closing/s × {} s",
            d.in_flight,
            window.as_secs()
        ),
        _ if d.exact => format!("{} connections in flight + {tw} in TIME_WAIT", d.in_flight),
        _ => format!(
            "{} connections in flight, and up to {tw} in TIME_WAIT if the run is over within {} s",
            d.in_flight,
            window.as_secs()
        ),
    }
}

/// Plan the source addresses of a run toward `target` (port 0: not known yet, as for the fleet's
/// own server before it starts) and check its budget. `requested` is `[device] source_addresses`
/// (0: as many as the run needs); `seed` draws the loopback base.
pub fn plan(
    target: SocketAddr,
    requested: u8,
    demand: Demand,
    executor: &ExecutorSpec,
    seed: u64,
) -> Result<PortPlan, PortBudgetError> {
    let kernel = Kernel::read(target)?;
    let ip = target.ip().to_canonical();
    let side = if matches!(ip, IpAddr::V4(v4) if v4.is_loopback()) {
        let load = Load {
            ip,
            demand: &demand,
            executor,
        };
        loopback_side(&kernel, &load, requested, seed)?
    } else {
        routed_side(&kernel, target, ip, executor)?
    };
    checked(kernel, side, demand, ip)
}

/// The kernel's port figures a plan starts from.
struct Kernel {
    range: (u16, u16),
    per_address: u64,
    /// Connections toward the target now, by source address.
    busy: ports::Toward,
    range_text: String,
}

impl Kernel {
    /// The ephemeral port range and the connections toward `target` (its port, if known).
    fn read(target: SocketAddr) -> Result<Self, PortBudgetError> {
        let range = ports::local_port_range().map_err(|source| PortBudgetError::Io {
            what: "net.ipv4.ip_local_port_range",
            source,
        })?;
        let port = (target.port() != 0).then_some(target.port());
        let busy = ports::toward(target.ip(), port).map_err(|source| PortBudgetError::Io {
            what: "/proc/net/tcp",
            source,
        })?;
        Ok(Kernel {
            range,
            per_address: ports::range_size(range),
            busy,
            range_text: format!("ip_local_port_range {}–{}", range.0, range.1),
        })
    }
}

/// What a run asks of the ports: toward which address, how many, set by which key.
struct Load<'a> {
    ip: IpAddr,
    demand: &'a Demand,
    executor: &'a ExecutorSpec,
}

/// Where the run's connections come from, what that leaves free, and what to change if too little.
struct Side {
    sources: Vec<IpAddr>,
    route_source: Option<IpAddr>,
    free: u64,
    in_use: u64,
    window: Duration,
    key: &'static str,
    advice: String,
    notes: Vec<String>,
}

/// Toward IPv4 loopback we choose the addresses: enough of them that no port is ever wanted twice
/// within TIME_WAIT, so the kernel never has to search for one.
fn loopback_side(
    kernel: &Kernel,
    load: &Load<'_>,
    requested: u8,
    seed: u64,
) -> Result<Side, PortBudgetError> {
    let window = TIME_WAIT;
    let needed = load.demand.needed(window);
    let per_address = kernel.per_address;
    let n = if requested > 0 {
        u64::from(requested)
    } else {
        let n = (needed as f64 / (per_address as f64 * LOOPBACK_FILL)).ceil() as u64;
        if n > MAX_SOURCES {
            return Err(PortBudgetError::TooFew {
                key: load_key(load.executor),
                target: load.ip,
                needed,
                detail: detail(load.demand, window),
                have: format!(
                    "{MAX_SOURCES} loopback source addresses have {} ({})",
                    MAX_SOURCES * per_address,
                    kernel.range_text
                ),
                advice: "split the run (--segment) or lower the load".into(),
            });
        }
        n.max(1)
    };
    let sources = ports::loopback_sources(usize::try_from(n).unwrap_or(0), &kernel.busy, seed);
    let enough = (needed as f64 / (per_address as f64 * LOOPBACK_FILL))
        .ceil()
        .max(1.0);
    Ok(Side {
        free: sources.len() as u64 * per_address,
        sources,
        route_source: None,
        in_use: 0,
        window,
        key: "device.source_addresses",
        advice: format!("set source_addresses = {enough} or more, or 0 to let the run choose"),
        notes: Vec::new(),
    })
}

/// Toward any other address the route's source address is the one: its free ports are the budget,
/// TIME_WAIT as short as `tcp_tw_reuse` makes it.
fn routed_side(
    kernel: &Kernel,
    target: SocketAddr,
    ip: IpAddr,
    executor: &ExecutorSpec,
) -> Result<Side, PortBudgetError> {
    let probe = SocketAddr::new(target.ip(), target.port().max(1));
    let src = ports::route_source(probe).map_err(|source| PortBudgetError::Io {
        what: "the route to the target",
        source,
    })?;
    let reuse = ports::tw_reuse();
    let window = match reuse {
        Some(1) => TIME_WAIT_REUSE,
        Some(2) if ip.is_loopback() => TIME_WAIT_REUSE,
        _ => TIME_WAIT,
    };
    let in_use = kernel.busy.from(&src);
    let key = load_key(executor);
    let advice = format!(
        "lower {key}, widen net.ipv4.ip_local_port_range{}",
        if window == TIME_WAIT {
            ", or set net.ipv4.tcp_tw_reuse = 1 (ports in TIME_WAIT reused after 1 s)"
        } else {
            ""
        }
    );
    let mut notes = Vec::new();
    if window == TIME_WAIT_REUSE {
        notes.push(format!(
            "net.ipv4.tcp_tw_reuse = {}: ports in TIME_WAIT counted for {} s, as the kernel \
             reuses them for new connections after that",
            reuse.unwrap_or(0),
            window.as_secs()
        ));
    }
    Ok(Side {
        sources: Vec::new(),
        route_source: Some(src),
        free: kernel.per_address.saturating_sub(in_use),
        in_use,
        window,
        key,
        advice,
        notes,
    })
}

/// What the side has, in words.
fn have_text(side: &Side, range_text: &str) -> String {
    let (free, in_use) = (side.free, side.in_use);
    match side.route_source {
        Some(src) => {
            format!("source address {src} has {free} free ({range_text}, {in_use} in use)")
        }
        None => format!(
            "{} source address{} {} {free} ({range_text})",
            side.sources.len(),
            if side.sources.len() == 1 { "" } else { "es" },
            if side.sources.len() == 1 {
                "has"
            } else {
                "have"
            },
        ),
    }
}

/// The plan, if the side has the ports the demand needs (a note when it is close).
fn checked(
    kernel: Kernel,
    mut side: Side,
    demand: Demand,
    ip: IpAddr,
) -> Result<PortPlan, PortBudgetError> {
    let window = side.window;
    let needed = demand.needed(window);
    let have = have_text(&side, &kernel.range_text);
    if demand.required(window) > side.free {
        return Err(PortBudgetError::TooFew {
            key: side.key,
            target: ip,
            needed,
            detail: detail(&demand, window),
            have,
            advice: side.advice,
        });
    }
    if needed as f64 > side.free as f64 * NEAR {
        side.notes.push(format!(
            "ports close to the budget: about {needed} needed ({}), {have}",
            detail(&demand, window)
        ));
    }
    Ok(PortPlan {
        sources: side.sources,
        route_source: side.route_source,
        range: kernel.range,
        per_address: kernel.per_address,
        free: side.free,
        in_use: side.in_use,
        demand,
        window,
        notes: side.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{KeyType, Stage};

    fn fleet(devices: usize, mix: &[(DeviceClass, u32)]) -> FleetSpec {
        FleetSpec {
            seed: 1,
            devices,
            key: KeyType::P256,
            mix: mix.iter().copied().collect(),
            cache: false,
        }
    }

    #[test]
    fn demand_follows_the_executor() {
        let valid = fleet(10_000, &[(DeviceClass::Valid, 1)]);
        let car = ExecutorSpec::ConstantArrivalRate {
            rate: 400.0,
            max_in_flight: 0,
            max_lateness: Duration::from_secs(1),
        };
        let d = demand(&valid, &car, Duration::from_secs(10));
        assert_eq!((d.in_flight, d.closing), (4_000, 10_000));
        assert_eq!(d.time_wait(TIME_WAIT), 10_000);
        assert_eq!(d.time_wait(TIME_WAIT_REUSE), 400);
        assert_eq!(d.needed(TIME_WAIT), 14_000);
        // Identity devices open two connections each.
        let half = fleet(
            1_000,
            &[(DeviceClass::Valid, 1), (DeviceClass::Identity, 1)],
        );
        let hold = ExecutorSpec::Hold {
            rate: 0.0,
            connect_concurrency: 10,
            hold: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
        };
        let d = demand(&half, &hold, Duration::from_secs(10));
        assert_eq!((d.in_flight, d.closing, d.exact), (1_000, 500, true));
        let closed = ExecutorSpec::ClosedLoop { concurrency: 64 };
        let d = demand(&valid, &closed, Duration::from_secs(10));
        assert_eq!((d.in_flight, d.required(TIME_WAIT)), (64, 64));
        assert_eq!(d.needed(TIME_WAIT), 10_064);
        let ramp = ExecutorSpec::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![Stage {
                target: 100.0,
                duration: Duration::from_secs(10),
            }],
            max_in_flight: 50,
            max_lateness: Duration::from_secs(1),
        };
        let d = demand(&valid, &ramp, Duration::from_secs(10));
        assert_eq!((d.in_flight, d.closing), (50, 500));
        assert_eq!(d.close_rate, Some(100.0));
    }

    #[test]
    fn loopback_runs_get_enough_fresh_addresses_or_a_clear_refusal() {
        let target: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let hold = ExecutorSpec::Hold {
            rate: 0.0,
            connect_concurrency: 10,
            hold: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
        };
        let big = demand(
            &fleet(100_000, &[(DeviceClass::Valid, 1)]),
            &hold,
            Duration::from_secs(10),
        );
        let p = plan(target, 0, big, &hold, 7).expect("auto");
        assert!(p.sources.len() >= 4, "{:?}", p.sources);
        assert!(p.free >= 100_000 && p.route_source.is_none());
        let e = plan(target, 1, big, &hold, 7).expect_err("one address is too few");
        let text = e.to_string();
        assert!(
            text.contains("device.source_addresses") && text.contains("100000"),
            "{text}"
        );
        let small = demand(
            &fleet(100, &[(DeviceClass::Valid, 1)]),
            &hold,
            Duration::from_secs(10),
        );
        let p = plan(target, 0, small, &hold, 7).expect("small");
        assert_eq!(p.sources.len(), 1);
        let p = plan(target, 3, small, &hold, 7).expect("as asked");
        assert_eq!(p.sources.len(), 3);
    }

    #[test]
    fn other_targets_are_checked_against_the_one_source_address() {
        // ::1 is not IPv4 loopback: the kernel picks the source, one address's ports.
        let target: SocketAddr = "[::1]:15684".parse().expect("addr");
        let car = ExecutorSpec::ConstantArrivalRate {
            rate: 5_000.0,
            max_in_flight: 40_000,
            max_lateness: Duration::from_secs(1),
        };
        let d = demand(
            &fleet(200_000, &[(DeviceClass::Valid, 1)]),
            &car,
            Duration::from_secs(10),
        );
        let e = plan(target, 0, d, &car, 1).expect_err("40,000 in flight cannot fit");
        let text = e.to_string();
        assert!(
            text.contains("executor.rate") && text.contains("source address ::1"),
            "{text}"
        );
        let light = demand(
            &fleet(100, &[(DeviceClass::Valid, 1)]),
            &car,
            Duration::from_secs(10),
        );
        let p = plan(target, 0, light, &car, 1).expect("fits");
        assert!(p.sources.is_empty());
        assert_eq!(p.route_source, Some("::1".parse().expect("ip")));
    }
}
