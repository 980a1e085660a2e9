//! A thread that watches the run from the side while devices run: this process's CPU, the
//! spawned server's and the whole machine's once a second, and the ports toward the target from
//! the run's source addresses as often as their cost allows (at most once a second, and at the
//! end). Its own CPU (reading `/proc/net/tcp` costs the kernel a walk of its socket hash) is
//! measured on its thread and left out of the generator's figure.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cpu::{self, CpuTimes};
use super::ports;

/// How often the sampler looks.
const EVERY: Duration = Duration::from_secs(1);
/// Reading the sockets costs the kernel a walk of its socket hash (tens of milliseconds with tens
/// of thousands of sockets): the next reading waits at least this many times as long as the last
/// one took, so that the sampler stays within about 2 % of a core.
const PORTS_SPACING: u32 = 50;

/// What the sampler watches.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The target's device port.
    pub target: SocketAddr,
    /// The run's source addresses (empty: the kernel picks; then every local address counts).
    pub sources: Vec<IpAddr>,
    /// The spawned server's process, if any.
    pub server_pid: Option<u32>,
}

/// Ports toward the target from the run's sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSamples {
    /// Sockets when the devices started.
    pub at_start: u64,
    /// Most at once.
    pub peak: u64,
    /// Most from one source address.
    pub peak_per_address: u64,
    /// Most in TIME_WAIT.
    pub peak_time_wait: u64,
    /// Readings taken.
    pub samples: u64,
}

impl PortSamples {
    fn add(&mut self, (all, per_address, time_wait): (u64, u64, u64)) {
        self.peak = self.peak.max(all);
        self.peak_per_address = self.peak_per_address.max(per_address);
        self.peak_time_wait = self.peak_time_wait.max(time_wait);
        self.samples += 1;
    }
}

/// CPU of one process over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSamples {
    /// Spent over the run.
    pub spent: CpuTimes,
    /// Cores used in the busiest second.
    pub peak_cores: f64,
}

/// One second as the sampler saw it, for the run's timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampledSecond {
    /// The second of the run the reading closes (0: the first second).
    pub t_s: u64,
    /// Cores this process used over that second (with an embedded server: server and generator).
    pub process_cores: Option<f64>,
    /// This process's resident memory at the reading, bytes.
    pub process_rss_bytes: Option<u64>,
    /// Cores the spawned server used over that second.
    pub server_cores: Option<f64>,
    /// The spawned server's resident memory at the reading, bytes.
    pub server_rss_bytes: Option<u64>,
}

/// What the sampler saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampled {
    /// From start to stop.
    pub wall: Duration,
    /// This process, less the sampler's own thread (`None` when unreadable).
    pub process: Option<CpuSamples>,
    /// The sampler's own CPU, left out of `process`.
    pub sampler: CpuTimes,
    /// The spawned server (`None` when there is none or it cannot be read).
    pub server: Option<CpuSamples>,
    /// Busy time of the whole machine's CPUs, every process and the kernel (`None`: unreadable).
    pub machine: Option<Duration>,
    /// Ports toward the target.
    pub ports: PortSamples,
    /// Each second's readings.
    pub seconds: Vec<SampledSecond>,
}

/// A running sampler; [`Sampler::stop`] ends it.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Sampled>,
}

/// One reading.
struct Reading {
    at: Instant,
    process: Option<CpuTimes>,
    server: Option<CpuTimes>,
    machine: Option<Duration>,
}

fn read(watch: &Watch, sampler: CpuTimes) -> Reading {
    Reading {
        at: Instant::now(),
        process: cpu::this_process().ok().map(|p| p.without(&sampler)),
        server: watch.server_pid.and_then(|pid| cpu::of_process(pid).ok()),
        machine: cpu::machine_busy().ok(),
    }
}

fn ports_now(watch: &Watch) -> Option<(u64, u64, u64)> {
    let seen = ports::toward(watch.target.ip(), Some(watch.target.port())).ok()?;
    Some(seen.over(&watch.sources))
}

/// Cores used between two readings of one process.
fn cores(a: Option<CpuTimes>, b: Option<CpuTimes>, secs: f64) -> Option<f64> {
    Some(b?.since(&a?).total().as_secs_f64() / secs.max(1e-9))
}

/// The second that ends with reading `now` (the one before was `last`).
fn second_of(
    watch: &Watch,
    first: &Reading,
    last: &Reading,
    now: &Reading,
    secs: f64,
) -> SampledSecond {
    let end = now.at.duration_since(first.at).as_secs_f64();
    SampledSecond {
        t_s: (end - 0.5).max(0.0) as u64,
        process_cores: cores(last.process, now.process, secs),
        process_rss_bytes: cpu::resident_bytes(None),
        server_cores: cores(last.server, now.server, secs),
        server_rss_bytes: watch
            .server_pid
            .and_then(|pid| cpu::resident_bytes(Some(pid))),
    }
}

impl Sampler {
    /// Take the first reading now (CPU, and the ports in use as the devices start), then one a
    /// second on a thread of its own.
    pub fn start(watch: Watch) -> std::io::Result<Sampler> {
        let first = read(&watch, CpuTimes::default());
        let mut ports = PortSamples::default();
        if let Some(now) = ports_now(&watch) {
            ports.at_start = now.0;
            ports.add(now);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dps-loadgen-sampler".into())
            .spawn(move || run(&watch, first, ports, &stopped))?;
        Ok(Sampler { stop, thread })
    }

    /// Take the last reading and return what was seen.
    pub fn stop(self) -> Sampled {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

fn run(
    watch: &Watch,
    first: Reading,
    mut ports: PortSamples,
    stopped: &mpsc::Receiver<()>,
) -> Sampled {
    let own = cpu::this_thread().unwrap_or_default();
    let mut last = Reading {
        process: first.process,
        server: first.server,
        machine: first.machine,
        at: first.at,
    };
    let (mut peak_process, mut peak_server) = (0.0_f64, 0.0_f64);
    let mut seconds = Vec::new();
    let mut next_ports = Instant::now();
    loop {
        let done = !matches!(
            stopped.recv_timeout(EVERY),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if done || Instant::now() >= next_ports {
            let t = Instant::now();
            if let Some(now) = ports_now(watch) {
                ports.add(now);
            }
            next_ports = t + EVERY.max(t.elapsed() * PORTS_SPACING);
        }
        let spent = cpu::this_thread().unwrap_or_default().since(&own);
        let now = read(watch, spent);
        let secs = now.at.duration_since(last.at).as_secs_f64();
        // A last, short interval says little about a rate.
        if secs >= 0.5 {
            if let Some(c) = cores(last.process, now.process, secs) {
                peak_process = peak_process.max(c);
            }
            if let Some(c) = cores(last.server, now.server, secs) {
                peak_server = peak_server.max(c);
            }
            seconds.push(second_of(watch, &first, &last, &now, secs));
        }
        if done {
            let side = |a: Option<CpuTimes>, b: Option<CpuTimes>, peak: f64| {
                Some(CpuSamples {
                    spent: b?.since(&a?),
                    peak_cores: peak,
                })
            };
            return Sampled {
                wall: now.at.duration_since(first.at),
                process: side(first.process, now.process, peak_process),
                sampler: spent,
                server: side(first.server, now.server, peak_server),
                machine: now
                    .machine
                    .zip(first.machine)
                    .map(|(b, a)| b.saturating_sub(a)),
                ports,
                seconds,
            };
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sampler_sees_cpu_and_ports_of_the_run() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let target = listener.local_addr().expect("addr");
        let source = ports::loopback_sources(1, &ports::Toward::default(), ports::run_seed())[0];
        let sampler = Sampler::start(Watch {
            target,
            sources: vec![source],
            server_pid: Some(std::process::id()),
        })
        .expect("sampler");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind");
        let stream = socket.connect(target).await.expect("connect");
        // At least 1.2 s and 600 ms of this thread's CPU, however busy the machine is.
        let start = Instant::now();
        let cpu_start = cpu::thread_clock();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(1_200)
            || cpu::thread_clock().saturating_sub(cpu_start) < Duration::from_millis(600)
        {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let seen = sampler.stop();
        drop(stream);
        assert!(seen.wall >= Duration::from_millis(1_200));
        let process = seen.process.expect("process CPU");
        assert!(
            process.spent.total() >= Duration::from_millis(600),
            "{process:?}"
        );
        assert!(process.peak_cores > 0.1, "{process:?}");
        // This process stands in for a server process here.
        assert!(seen.server.expect("server").spent.total() > Duration::ZERO);
        // The machine was at least as busy as this process.
        let machine = seen.machine.expect("machine");
        assert!(
            machine + Duration::from_millis(100) >= process.spent.total(),
            "{machine:?}"
        );
        assert_eq!(seen.ports.at_start, 0);
        assert_eq!((seen.ports.peak, seen.ports.peak_per_address), (1, 1));
        assert!(seen.ports.samples >= 2);
        let second = seen.seconds.first().expect("a second");
        assert_eq!(second.t_s, 0);
        assert!(second.server_rss_bytes.is_some_and(|b| b > 0), "{second:?}");
        assert!(second.process_cores.is_some(), "{second:?}");
    }
}
