//! A packet capture (pcap from tcpdump, pcapng from tshark or dumpcap) read into the device
//! connections it shows: for each connection to one of the run's targets, when the device's SYN,
//! the server's first data (its first TLS record) and the device's FIN (or reset) passed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use super::error::CaptureError;

/// One connection on the wire, times since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireConnection {
    /// The device's SYN.
    pub syn: Duration,
    /// The first server segment with data.
    pub first_server_data: Option<Duration>,
    /// The device's first FIN or RST (or the server's RST, after which the device sends
    /// nothing).
    pub device_end: Option<Duration>,
}

/// The connections of a capture by (device, server) address, each list in SYN order.
pub type WireConnections = BTreeMap<(SocketAddr, SocketAddr), Vec<WireConnection>>;

/// What one TCP segment says.
#[derive(Debug, Clone, Copy)]
struct Segment {
    at: Duration,
    src: SocketAddr,
    dst: SocketAddr,
    syn: bool,
    ack: bool,
    end: bool,
    reset: bool,
    data: bool,
}

/// Read `capture` (pcap or pcapng, told by its magic number), keeping the connections to
/// `targets`.
pub fn read(
    capture: &[u8],
    targets: &BTreeSet<SocketAddr>,
) -> Result<WireConnections, CaptureError> {
    let mut conns = WireConnections::new();
    let mut add = |s: Segment| track(&mut conns, targets, s);
    match capture.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(capture, &mut add)?,
        Some(_) => read_pcap(capture, &mut add)?,
        None => return Err(CaptureError::Format("the capture is empty".into())),
    }
    Ok(conns)
}

fn read_pcap(capture: impl Read, add: &mut impl FnMut(Segment)) -> Result<(), CaptureError> {
    let mut reader = PcapReader::new(capture).map_err(format_error)?;
    let link = reader.header().datalink;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(format_error)?;
        if let Some(s) = segment(link, packet.timestamp, &packet.data) {
            add(s);
        }
    }
    Ok(())
}

fn read_pcapng(capture: impl Read, add: &mut impl FnMut(Segment)) -> Result<(), CaptureError> {
    let mut reader = PcapNgReader::new(capture).map_err(format_error)?;
    // Per interface: its link type and the length of its time unit, ns.
    let mut interfaces: Vec<(DataLink, u128)> = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.map_err(format_error)? {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let unit = idb.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(unit_ns(*r)),
                    _ => None,
                });
                interfaces.push((idb.linktype, unit.unwrap_or(1000)));
            }
            Block::EnhancedPacket(epb) => {
                let Some((link, unit)) = usize::try_from(epb.interface_id)
                    .ok()
                    .and_then(|i| interfaces.get(i))
                else {
                    continue;
                };
                // The reader takes the raw count for nanoseconds; it is in the interface's unit.
                let at = epb.timestamp.as_nanos().saturating_mul(*unit);
                let at = Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX));
                if let Some(s) = segment(*link, at, &epb.data) {
                    add(s);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// An interface's time unit in ns from its `if_tsresol` (a power of ten, or of two with the
/// high bit set); units finer than a nanosecond count as one.
fn unit_ns(resol: u8) -> u128 {
    let exp = u32::from(resol & 0x7f);
    if resol & 0x80 == 0 {
        10u128.checked_pow(9u32.saturating_sub(exp)).unwrap_or(1)
    } else {
        (1_000_000_000u128 >> exp.min(127)).max(1)
    }
}

fn format_error(e: pcap_file::PcapError) -> CaptureError {
    CaptureError::Format(e.to_string())
}

/// The TCP segment in a frame of `link`, if it is one.
fn segment(link: DataLink, at: Duration, frame: &[u8]) -> Option<Segment> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(frame),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(frame),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(frame),
        // BSD loopback: a 4-byte address family, then the IP packet.
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(frame.get(4..)?),
        _ => return None,
    }
    .ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    let TransportSlice::Tcp(tcp) = sliced.transport? else {
        return None;
    };
    Some(Segment {
        at,
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        end: tcp.fin() || tcp.rst(),
        reset: tcp.rst(),
        data: !tcp.payload().is_empty(),
    })
}

/// Fold one segment into the connections to `targets`.
fn track(conns: &mut WireConnections, targets: &BTreeSet<SocketAddr>, s: Segment) {
    if targets.contains(&s.dst) {
        let list = conns.entry((s.src, s.dst)).or_default();
        if s.syn && !s.ack {
            // A retransmitted SYN is the same connection.
            if list.last().is_none_or(|c| c.device_end.is_some()) {
                list.push(WireConnection {
                    syn: s.at,
                    first_server_data: None,
                    device_end: None,
                });
            }
        } else if s.end {
            if let Some(c) = list.last_mut() {
                c.device_end.get_or_insert(s.at);
            }
        }
    } else if targets.contains(&s.src) && (s.data || s.reset) {
        if let Some(c) = conns.get_mut(&(s.dst, s.src)).and_then(|l| l.last_mut()) {
            if s.data {
                c.first_server_data.get_or_insert(s.at);
            }
            // A connection the server reset ends there: the device sends nothing after.
            if s.reset {
                c.device_end.get_or_insert(s.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ms: u64, src: &str, dst: &str, flags: &str, data: bool) -> Segment {
        Segment {
            at: Duration::from_millis(ms),
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            syn: flags.contains('S'),
            ack: flags.contains('A'),
            end: flags.contains('F') || flags.contains('R'),
            reset: flags.contains('R'),
            data,
        }
    }

    #[test]
    fn connections_are_followed_from_syn_to_the_devices_fin() {
        let (dev, srv) = ("127.0.0.2:40000", "127.0.0.1:15684");
        let targets = BTreeSet::from([srv.parse().expect("addr")]);
        let mut conns = WireConnections::new();
        for s in [
            seg(10, dev, srv, "S", false),
            seg(10, dev, srv, "S", false), // retransmitted
            seg(11, srv, dev, "SA", false),
            seg(11, dev, srv, "A", true),
            seg(13, srv, dev, "A", true),
            seg(14, srv, dev, "A", true),
            seg(15, srv, dev, "FA", false),
            seg(17, dev, srv, "FA", false),
            seg(30, dev, srv, "S", false), // the port again, a new connection
            seg(31, srv, dev, "RA", false), // reset by the server
            seg(32, dev, srv, "R", false),
            seg(40, "127.0.0.2:1", "127.0.0.1:2", "S", false), // not to the target
        ] {
            track(&mut conns, &targets, s);
        }
        assert_eq!(conns.len(), 1);
        let list = &conns[&(dev.parse().expect("a"), srv.parse().expect("a"))];
        let ms = Duration::from_millis;
        assert_eq!(
            list.as_slice(),
            [
                WireConnection {
                    syn: ms(10),
                    first_server_data: Some(ms(13)),
                    device_end: Some(ms(17))
                },
                WireConnection {
                    syn: ms(30),
                    first_server_data: None,
                    device_end: Some(ms(31))
                }
            ]
        );
    }

    #[test]
    fn pcapng_time_units_follow_if_tsresol() {
        assert_eq!(unit_ns(6), 1000);
        assert_eq!(unit_ns(9), 1);
        assert_eq!(unit_ns(3), 1_000_000);
        assert_eq!(unit_ns(12), 1);
        assert_eq!(unit_ns(0x80 | 10), 976_562);
    }
}
