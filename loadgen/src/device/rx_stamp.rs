//! When the kernel received what a device reads: its socket asks for software receive timestamps
//! (`SO_TIMESTAMPING`), and each read returns, beside the bytes, the time the last of them reached
//! the socket — the instant a packet capture on the same host sees them. The difference to the
//! moment the device's task read them is the generator's own delay (its worker was busy with other
//! devices, or the host did not run it), which [`ReadDelayMeter`] adds up so that the device's
//! ledger can take it out of the server-facing phases.

use std::io;
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage, TimestampingFlag,
    Timestamps,
};
use tokio::net::TcpStream;

/// Ask the kernel to stamp what `socket` receives; `false` if it refused (the reads then carry no
/// time, and no delay is taken out). The first socket of the system to ask turns stamping on a
/// moment later (the kernel defers it): data arriving before then is unstamped, as is any read
/// whose data the kernel did not stamp.
pub fn enable(socket: &TcpStream) -> bool {
    let flags = TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE;
    setsockopt(socket, sockopt::Timestamping, &flags).is_ok()
}

/// One non-blocking read into `dst`: the byte count and, when the kernel stamped the data, its
/// wall-clock time of arrival.
pub fn recv(socket: &TcpStream, dst: &mut [u8]) -> io::Result<(usize, Option<Duration>)> {
    let mut iov = [io::IoSliceMut::new(dst)];
    let mut space = nix::cmsg_space!(Timestamps);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampsns(t) = c {
                let d = Duration::from(t.system);
                if !d.is_zero() {
                    stamp = Some(d);
                }
            }
        }
    }
    Ok((msg.bytes, stamp))
}

/// The monotonic instant of a wall-clock `stamp` (since the Unix epoch), seen at `now`: no later
/// than `now` (a clock step cannot put an arrival in the future).
pub fn arrival(stamp: Duration, now: Instant) -> Instant {
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    now.checked_sub(wall.saturating_sub(stamp)).unwrap_or(now)
}

/// The generator's read delay of one connection so far: the sum, over the reads the device waited
/// for, of the time from the data's arrival (or from when the device began to wait, if later) to
/// the read. Shared between the socket and the device's ledger.
#[derive(Debug, Clone, Default)]
pub struct ReadDelayMeter(Arc<AtomicU64>);

impl ReadDelayMeter {
    /// Add `d`.
    pub fn add(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_read_carries_the_time_its_data_arrived() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        assert!(enable(&client), "software receive timestamps on loopback");
        // The first socket of the system to ask turns the kernel's stamping on a moment later
        // (a deferred work item): until then data arrives unstamped.
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.write_all(b"hello").await.expect("write");
        let sent = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock");
        // Let the data sit in the socket: the read comes well after the arrival.
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.readable().await.expect("readable");
        let mut buf = [0u8; 16];
        let (n, stamp) = recv(&client, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"hello");
        let stamp = stamp.expect("stamped");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock");
        assert!(
            stamp + Duration::from_millis(20) <= now,
            "arrived ({stamp:?}) before the 30 ms wait, read at {now:?}"
        );
        assert!(
            stamp + Duration::from_millis(5) >= sent,
            "not before it was sent"
        );
        let at = arrival(stamp, Instant::now());
        assert!(at.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn the_meter_adds_up() {
        let m = ReadDelayMeter::default();
        let shared = m.clone();
        shared.add(Duration::from_micros(150));
        m.add(Duration::from_micros(50));
        assert_eq!(m.total(), Duration::from_micros(200));
    }
}
