//! CPU time, user and system: of this process (getrusage, microseconds), of the calling thread (to
//! leave the sampler's own cost out, and around each poll of a connect), of another process such
//! as the spawned server (from `/proc/<pid>/stat`, in clock ticks), and of the whole machine
//! (`/proc/stat`: what other processes took). What a run spent per provisioned device, and whether a side
//! ran out of cores, are read from these.

use std::time::Duration;

use nix::sys::resource::{getrusage, Usage, UsageWho};

/// User and system CPU time of a process or thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// In user mode.
    pub user: Duration,
    /// In the kernel on its behalf (system calls such as connect, page faults).
    pub system: Duration,
}

impl CpuTimes {
    /// User plus system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time spent since `earlier` (never negative).
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// This time less `part` (never negative): the process without its sampler thread.
    pub fn without(&self, part: &CpuTimes) -> CpuTimes {
        self.since(part)
    }
}

fn of_usage(u: &Usage) -> CpuTimes {
    let d = |t: nix::sys::time::TimeVal| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
        Duration::from_secs(secs) + Duration::from_micros(micros)
    };
    CpuTimes {
        user: d(u.user_time()),
        system: d(u.system_time()),
    }
}

/// This process, all its threads (with an embedded server: the server's too).
pub fn this_process() -> std::io::Result<CpuTimes> {
    Ok(of_usage(&getrusage(UsageWho::RUSAGE_SELF)?))
}

/// The calling thread only.
pub fn this_thread() -> std::io::Result<CpuTimes> {
    Ok(of_usage(&getrusage(UsageWho::RUSAGE_THREAD)?))
}

/// Another process of this machine, all its threads, from `/proc/<pid>/stat`.
pub fn of_process(pid: u32) -> std::io::Result<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text, clock_ticks()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no utime and stime"),
        )
    })
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in `ticks` per second. The
/// command name (field 2) is in parentheses and may hold spaces and parentheses itself, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str, ticks: u64) -> Option<CpuTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let d = |t: u64| Duration::from_secs_f64(t as f64 / ticks as f64);
    Some(CpuTimes {
        user: d(utime),
        system: d(stime),
    })
}

/// Resident memory of a process (`None`: this one), bytes, from `VmRSS` in `/proc/<pid>/status`:
/// the server's memory second by second in the run's timeline.
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    parse_vm_rss(&std::fs::read_to_string(path).ok()?)
}

/// The `VmRSS:   1234 kB` line of a `/proc/<pid>/status`, in bytes.
fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// CPU time of the calling thread from its clock (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds): cheap
/// enough to read around each poll of a connect.
pub fn thread_clock() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// Time the machine's CPUs spent busy (anything but idle and I/O wait), all processes and the
/// kernel together, from the first line of `/proc/stat`.
pub fn machine_busy() -> std::io::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_machine(&text, clock_ticks()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/stat: no cpu line")
    })
}

/// Busy time of the `cpu` line: user, nice, system, irq, softirq and steal (idle and iowait
/// left out; guest time is already in user).
fn parse_machine(text: &str, ticks: u64) -> Option<Duration> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|i| f.get(*i).copied().unwrap_or(0))
        .sum();
    Some(Duration::from_secs_f64(busy as f64 / ticks as f64))
}

/// Clock ticks per second of `/proc` figures (`USER_HZ`, 100 on Linux).
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// CPUs this process may run on (its affinity and cgroup quota), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_vm_rss_line() {
        let status = "Name:\tdps-server\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(2 * 1024 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(resident_bytes(None).is_some_and(|b| b > 0));
    }

    #[test]
    fn stat_lines_are_read_past_odd_command_names() {
        let line = "4242 (dps (loadgen) x) S 1 4242 4242 0 -1 4194560 2716 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        let t = parse_stat(line, 100).expect("parsed");
        assert_eq!(t.user, Duration::from_millis(2500));
        assert_eq!(t.system, Duration::from_millis(750));
        assert!(parse_stat("4242 (short) S 1 2", 100).is_none());
        let stat = "cpu  100 50 30 900 20 5 5 10 0 0\ncpu0 50 25 15 450 10 2 3 5 0 0\n";
        assert_eq!(parse_machine(stat, 100), Some(Duration::from_secs(2)));
        assert_eq!(parse_machine("intr 1 2 3", 100), None);
    }

    #[test]
    fn this_process_and_a_child_are_measured() {
        // Burn a little CPU so the figures cannot all be zero.
        let before = this_process().expect("getrusage");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = this_process().expect("getrusage");
        assert!(after.since(&before).total() > Duration::ZERO);
        assert!(this_thread().expect("thread").total() <= after.total());
        let me = of_process(std::process::id()).expect("/proc/self");
        assert!(me.total() <= after.total() + Duration::from_millis(20));
        assert!(of_process(u32::MAX).is_err());
        assert!(machine_busy().expect("/proc/stat") > Duration::ZERO);
        let t = thread_clock();
        assert!(
            t > Duration::ZERO
                && t <= this_thread().expect("thread").total() + Duration::from_millis(20)
        );
        assert!(cores() >= 1);
    }
}
