//! Ephemeral ports: the sockets of this network namespace toward a target, read from
//! `/proc/net/tcp` and `/proc/net/tcp6` (every state, TIME_WAIT included), counted per local
//! address; the kernel's port range; the loopback source addresses a run spreads its devices over;
//! and `IP_BIND_ADDRESS_NO_PORT` on a device socket.
//!
//! A connection's local port must be unique per 4-tuple, so what limits a generator is the ports
//! of one source address toward one target: about 28,000 with the default range, and a closed
//! connection's port stays taken for the 60 s of TIME_WAIT on the side that closed first (the
//! device, as a real one does). A run on loopback therefore binds its devices to addresses of
//! 127.0.0.0/8 that have no socket toward the target at all, picked from a random base for each
//! run, so a previous run's TIME_WAIT never lies in its way; `IP_BIND_ADDRESS_NO_PORT` defers the
//! port choice from bind() to connect(), where the kernel knows the whole 4-tuple (a port bound
//! at bind() time would be reserved against every destination).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::BufRead as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The `st` of a socket in TIME_WAIT in `/proc/net/tcp`.
pub const TIME_WAIT: u8 = 0x06;

/// One socket of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Kernel TCP state (`01` ESTABLISHED ... `06` TIME_WAIT ... `0A` LISTEN).
    pub state: u8,
}

/// An address as the kernel prints it: a 32-bit word (IPv4) or four (IPv6) in host byte order,
/// hex, then `:` and the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// One line of `/proc/net/tcp{,6}` (`None` for the header or anything unexpected).
pub fn parse_line(line: &str) -> Option<TcpEntry> {
    let mut f = line.split_whitespace();
    let _slot = f.next()?;
    let local = parse_addr(f.next()?)?;
    let remote = parse_addr(f.next()?)?;
    let state = u8::from_str_radix(f.next()?, 16).ok()?;
    Some(TcpEntry {
        local,
        remote,
        state,
    })
}

/// Sockets toward one target, per local address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toward {
    /// Sockets (any state) per local address.
    pub by_local: HashMap<IpAddr, u64>,
    /// Of them, in TIME_WAIT, per local address.
    pub time_wait: HashMap<IpAddr, u64>,
}

impl Toward {
    /// Sockets from `local`.
    pub fn from(&self, local: &IpAddr) -> u64 {
        self.by_local.get(local).copied().unwrap_or(0)
    }

    /// Over the addresses `locals` (all of them when empty): sockets in all, the most from one
    /// address, and those in TIME_WAIT.
    pub fn over(&self, locals: &[IpAddr]) -> (u64, u64, u64) {
        let pick = |m: &HashMap<IpAddr, u64>| -> Vec<u64> {
            if locals.is_empty() {
                m.values().copied().collect()
            } else {
                locals
                    .iter()
                    .map(|a| m.get(a).copied().unwrap_or(0))
                    .collect()
            }
        };
        let all = pick(&self.by_local);
        let tw = pick(&self.time_wait);
        (
            all.iter().sum(),
            all.iter().copied().max().unwrap_or(0),
            tw.iter().sum(),
        )
    }

    /// Count one socket if it goes to `ip` (and `port`, when given).
    fn count(&mut self, e: &TcpEntry, ip: IpAddr, port: Option<u16>) {
        if e.remote.ip() != ip || port.is_some_and(|p| p != e.remote.port()) {
            return;
        }
        *self.by_local.entry(e.local.ip()).or_default() += 1;
        if e.state == TIME_WAIT {
            *self.time_wait.entry(e.local.ip()).or_default() += 1;
        }
    }
}

/// The sockets of this network namespace toward `ip` (and `port`, when given), from the file of
/// its family only: the kernel walks its whole socket hash for each file (about 10 ms even when
/// empty), and devices connect to an IPv4 target over IPv4 sockets (an IPv4-mapped socket of a
/// dual-stack program toward it is not counted).
pub fn toward(ip: IpAddr, port: Option<u16>) -> std::io::Result<Toward> {
    let ip = ip.to_canonical();
    let mut out = Toward::default();
    let file = match ip {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        // No IPv6 in this kernel or namespace: no socket toward an IPv6 target.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ip.is_ipv6() => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, f);
    let mut line = String::with_capacity(200);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if let Some(e) = parse_line(&line) {
            out.count(&e, ip, port);
        }
    }
    Ok(out)
}

/// The kernel's ephemeral port range, `net.ipv4.ip_local_port_range` (it applies to IPv6 too).
pub fn local_port_range() -> std::io::Result<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    parse_range(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("ip_local_port_range: {text:?}"),
        )
    })
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut f = text.split_whitespace();
    let lo: u16 = f.next()?.parse().ok()?;
    let hi: u16 = f.next()?.parse().ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// Ports in a range.
pub fn range_size((lo, hi): (u16, u16)) -> u64 {
    u64::from(hi.saturating_sub(lo)) + 1
}

/// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 on for loopback only; `None` when unreadable.
pub fn tw_reuse() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first address of the range loopback sources are picked from (127.1.0.0: below it are
/// 127.0.0.1, the usual listeners and the attackers' 127.0.0.200 and up).
const LOOPBACK_FIRST: u32 = 0x7f01_0000;
/// One past the last (127.255.0.0).
const LOOPBACK_END: u32 = 0x7fff_0000;

/// A random number for this run (std's per-process random hash keys, the time and the process).
pub fn run_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// `n` loopback source addresses for a run: consecutive addresses from a base drawn from `seed`
/// in 127.1.0.0–127.254.255.255, skipping those ending in .0 or .255 and any that `busy` has a
/// socket from (a previous run's TIME_WAIT toward the same target, or another run in progress).
pub fn loopback_sources(n: usize, busy: &Toward, seed: u64) -> Vec<IpAddr> {
    let span = u64::from(LOOPBACK_END - LOOPBACK_FIRST);
    let mut at = LOOPBACK_FIRST + u32::try_from(seed % span).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    // At most one pass over the range (it has ~16 million addresses; n is at most a few hundred).
    for _ in 0..span {
        if out.len() == n {
            break;
        }
        if at >= LOOPBACK_END {
            at = LOOPBACK_FIRST;
        }
        let ip = IpAddr::V4(Ipv4Addr::from(at));
        let last = at & 0xff;
        if last != 0 && last != 255 && busy.from(&ip) == 0 {
            out.push(ip);
        }
        at += 1;
    }
    out
}

/// The source address the kernel would pick for a connection to `target` (a UDP socket
/// connected to it, which sends nothing).
pub fn route_source(target: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_parsed_in_both_families() {
        let v4 = "   3: 0100007F:E1A2 0100007F:3D64 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
        let e = parse_line(v4).expect("v4 line");
        assert_eq!(e.local, "127.0.0.1:57762".parse().expect("addr"));
        assert_eq!(e.remote, "127.0.0.1:15716".parse().expect("addr"));
        assert_eq!(e.state, TIME_WAIT);
        // ::ffff:127.3.2.1 port 443 to ::1 port 80, as tcp6 prints them on a little-endian host.
        let word = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let mapped = format!(
            "{}{}{}{}",
            word([0, 0, 0, 0]),
            word([0, 0, 0, 0]),
            word([0, 0, 0xff, 0xff]),
            word([127, 3, 2, 1])
        );
        let one = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0, 1])
        );
        let v6 = format!("  0: {mapped}:01BB {one}:0050 01 0:0 0:0 0 0 0 1");
        let e = parse_line(&v6).expect("v6 line");
        assert_eq!(e.local, "127.3.2.1:443".parse().expect("addr"));
        assert_eq!(e.remote, "[::1]:80".parse().expect("addr"));
        assert!(parse_line("  sl  local_address rem_address   st tx_queue").is_none());
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("9 8"), None);
        assert_eq!(range_size((32768, 60999)), 28232);
    }

    #[test]
    fn sockets_are_counted_per_local_address_toward_the_target() {
        let target: IpAddr = "127.0.0.1".parse().expect("ip");
        let entry = |local: &str, remote: &str, state: u8| TcpEntry {
            local: local.parse().expect("local"),
            remote: remote.parse().expect("remote"),
            state,
        };
        let mut t = Toward::default();
        for e in [
            entry("127.9.0.1:40000", "127.0.0.1:15684", 1),
            entry("127.9.0.1:40001", "127.0.0.1:15684", TIME_WAIT),
            entry("127.9.0.2:40000", "127.0.0.1:15684", TIME_WAIT),
            entry("127.9.0.2:40002", "127.0.0.1:9999", 1),
            // The server's side of a connection goes to the device, not the target.
            entry("127.0.0.1:15684", "127.9.0.1:40000", 1),
        ] {
            t.count(&e, target, Some(15684));
        }
        let a: IpAddr = "127.9.0.1".parse().expect("ip");
        let b: IpAddr = "127.9.0.2".parse().expect("ip");
        assert_eq!((t.from(&a), t.from(&b)), (2, 1));
        assert_eq!(t.over(&[a, b]), (3, 2, 2));
        assert_eq!(t.over(&[b]), (1, 1, 1));
        assert_eq!(t.over(&[]), (3, 2, 2));
        // Busy addresses are skipped, and the same seed gives the same addresses.
        let s = loopback_sources(3, &Toward::default(), 41);
        assert_eq!(s.len(), 3);
        let mut busy = Toward::default();
        busy.by_local.insert(s[1], 5);
        let again = loopback_sources(3, &busy, 41);
        assert_eq!(again[0], s[0]);
        assert!(!again.contains(&s[1]));
        assert!(again.iter().all(|ip| match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 127 && v4.octets()[1] >= 1 && v4.octets()[3] != 0,
            IpAddr::V6(_) => false,
        }));
        // The range wraps around at its end.
        let wrapped = loopback_sources(
            2,
            &Toward::default(),
            u64::from(LOOPBACK_END - LOOPBACK_FIRST - 2),
        );
        assert_eq!(wrapped[1], IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1)));
    }

    #[tokio::test]
    async fn live_sockets_are_seen_and_no_port_binding_works() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let target = listener.local_addr().expect("addr");
        let source: IpAddr = loopback_sources(1, &Toward::default(), run_seed())[0];
        let socket = dps_server::client::connect::bound_socket(source).expect("bound socket");
        // The port is chosen at connect time, not at bind time.
        assert_eq!(socket.local_addr().expect("local").port(), 0);
        let stream = socket.connect(target).await.expect("connect");
        assert_eq!(stream.local_addr().expect("local").ip(), source);
        let seen = toward(target.ip(), Some(target.port())).expect("/proc/net/tcp");
        assert_eq!(seen.from(&source), 1);
        let (lo, hi) = local_port_range().expect("range");
        assert!(lo <= hi);
        assert_eq!(route_source(target).expect("route"), target.ip());
    }
}
