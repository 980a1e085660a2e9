//! Each device connection as the generator saw it, for comparison with a packet capture
//! (`dps-loadgen verify-capture`): its source address and port, when it began to connect (just
//! before the SYN), when the server's first bytes reached its socket (the kernel's receive time,
//! [`rx_stamp`]) and when the device read them, and when the device closed it (its FIN). Written
//! as the results' `connections.csv`. The socket also meters the generator's read delay
//! ([`ReadDelayMeter`]) for the device's ledger.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::rx_stamp::{self, ReadDelayMeter};

/// Connections a run records at most (about 80 bytes each); beyond, they are counted as left out.
pub const MAX_RECORDED: usize = 200_000;

/// The header line of `connections.csv`.
pub const CSV_HEADER: &str =
    "device,source,target,syn_unix_us,first_server_data_us,closed_us,first_server_data_read_us";

/// One device connection. Times after the SYN in µs, of this process's monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The device's index in the fleet.
    pub device: usize,
    /// The device's address and port.
    pub source: SocketAddr,
    /// The server's.
    pub target: SocketAddr,
    /// Wall-clock time of the connect, µs since the Unix epoch (to align with a capture).
    pub syn_unix_us: i64,
    /// From the connect to the arrival of the server's first bytes at the device's socket (the
    /// kernel's receive time; when the kernel gave none, when they were read). `None`: the server
    /// sent nothing.
    pub first_server_data_us: Option<u64>,
    /// From the connect to the device's close.
    pub closed_us: u64,
    /// From the connect to when the device read the server's first bytes: later than
    /// `first_server_data_us` by the generator's own delay.
    pub first_server_data_read_us: Option<u64>,
}

impl ConnectionRecord {
    /// The record as a `connections.csv` line (without the newline).
    pub fn csv_line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(String::new, |us| us.to_string());
        format!(
            "{},{},{},{},{},{},{}",
            self.device,
            self.source,
            self.target,
            self.syn_unix_us,
            opt(self.first_server_data_us),
            self.closed_us,
            opt(self.first_server_data_read_us)
        )
    }

    /// A `connections.csv` line back into a record.
    pub fn parse_csv(line: &str) -> Option<Self> {
        let mut f = line.trim().split(',');
        let mut next = || f.next();
        let record = ConnectionRecord {
            device: next()?.parse().ok()?,
            source: next()?.parse().ok()?,
            target: next()?.parse().ok()?,
            syn_unix_us: next()?.parse().ok()?,
            first_server_data_us: match next()? {
                "" => None,
                us => Some(us.parse().ok()?),
            },
            closed_us: next()?.parse().ok()?,
            // Absent from the files of earlier versions.
            first_server_data_read_us: match next() {
                None | Some("") => None,
                Some(us) => Some(us.parse().ok()?),
            },
        };
        next().is_none().then_some(record)
    }
}

/// Where a run's connections are recorded.
#[derive(Debug)]
pub struct ConnectionLog {
    /// The monotonic clock's origin, and the wall clock then (µs since the epoch).
    origin: (Instant, i64),
    records: Mutex<Vec<ConnectionRecord>>,
    left_out: AtomicU64,
}

impl Default for ConnectionLog {
    fn default() -> Self {
        let wall = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        ConnectionLog {
            origin: (Instant::now(), i64::try_from(wall).unwrap_or(0)),
            records: Mutex::new(Vec::new()),
            left_out: AtomicU64::new(0),
        }
    }
}

impl ConnectionLog {
    fn add(&self, record: ConnectionRecord) {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() < MAX_RECORDED {
            records.push(record);
        } else {
            self.left_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wall-clock µs of `at`.
    fn unix_us(&self, at: Instant) -> i64 {
        let since = i64::try_from(at.saturating_duration_since(self.origin.0).as_micros());
        self.origin.1.saturating_add(since.unwrap_or(i64::MAX))
    }

    /// The connections recorded so far (in the order they closed), and how many were left out.
    pub fn take(&self) -> (Vec<ConnectionRecord>, u64) {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            std::mem::take(&mut *records),
            self.left_out.load(Ordering::Relaxed),
        )
    }
}

/// `connections.csv`: the header and one line per record.
pub fn to_csv(records: &[ConnectionRecord]) -> String {
    let mut out = String::with_capacity(64 * (records.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in records {
        out.push_str(&r.csv_line());
        out.push('\n');
    }
    out
}

/// What a traced socket knows until it closes.
#[derive(Debug)]
struct Trace {
    log: Arc<ConnectionLog>,
    device: usize,
    source: SocketAddr,
    target: SocketAddr,
    syn: Instant,
}

/// When the server's first bytes arrived and were read.
#[derive(Debug, Clone, Copy)]
struct FirstData {
    arrived: Instant,
    read: Instant,
}

/// A device's socket, recorded in the run's [`ConnectionLog`] when it closes (if the run keeps
/// one), its reads stamped with the kernel's receive time and the generator's delay in reading
/// them metered.
#[derive(Debug)]
pub struct Traced {
    io: TcpStream,
    trace: Option<Box<Trace>>,
    /// The kernel stamps what this socket receives.
    stamped: bool,
    /// The device has waited for data since then (its last read found none).
    waiting_since: Option<Instant>,
    first: Option<FirstData>,
    delay: ReadDelayMeter,
}

impl Traced {
    /// `io`, connected from `syn` on; recorded in `log` (if any) as `device`'s.
    pub fn new(
        io: TcpStream,
        syn: Instant,
        device: usize,
        log: Option<&Arc<ConnectionLog>>,
    ) -> Self {
        let trace = log.and_then(|log| {
            Some(Box::new(Trace {
                log: log.clone(),
                device,
                source: io.local_addr().ok()?,
                target: io.peer_addr().ok()?,
                syn,
            }))
        });
        Traced {
            stamped: rx_stamp::enable(&io),
            io,
            trace,
            waiting_since: None,
            first: None,
            delay: ReadDelayMeter::default(),
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.io
    }

    /// The generator's read delay on this connection, as it grows.
    pub fn read_delay(&self) -> ReadDelayMeter {
        self.delay.clone()
    }

    /// `n` bytes were read now, stamped `stamp` by the kernel: the first data's times, and the
    /// delay if the device was waiting for them.
    fn on_read(&mut self, n: usize, stamp: Option<Duration>) {
        let waited = self.waiting_since.take();
        if n == 0 {
            return;
        }
        let now = Instant::now();
        let arrived = stamp.map(|s| rx_stamp::arrival(s, now));
        if let (Some(since), Some(arrived)) = (waited, arrived) {
            self.delay
                .add(now.saturating_duration_since(arrived.max(since)));
        }
        if self.first.is_none() {
            self.first = Some(FirstData {
                arrived: arrived.unwrap_or(now),
                read: now,
            });
        }
    }

    /// A read of the kernel-stamped socket.
    fn poll_read_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match self.io.poll_read_ready(cx) {
                Poll::Pending => {
                    self.waiting_since.get_or_insert_with(Instant::now);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let dst = buf.initialize_unfilled();
            // The kernel stamps a read with the arrival of the last packet it took from: the
            // first read takes one byte, so that its stamp is the arrival of the server's first
            // packet (as a capture sees it), not of a later one read with it.
            let dst = if self.first.is_none() {
                &mut dst[..1]
            } else {
                dst
            };
            let io = &self.io;
            match io.try_io(Interest::READABLE, || rx_stamp::recv(io, dst)) {
                Ok((n, stamp)) => {
                    buf.advance(n);
                    self.on_read(n, stamp);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Drop for Traced {
    fn drop(&mut self) {
        // The socket closes right after this (its FIN).
        let Some(t) = self.trace.take() else { return };
        let closed = Instant::now();
        let since_syn = |at: Instant| micros(at.saturating_duration_since(t.syn));
        t.log.add(ConnectionRecord {
            device: t.device,
            source: t.source,
            target: t.target,
            syn_unix_us: t.log.unix_us(t.syn),
            first_server_data_us: self.first.map(|f| since_syn(f.arrived)),
            closed_us: since_syn(closed),
            first_server_data_read_us: self.first.map(|f| since_syn(f.read)),
        });
    }
}

impl AsyncRead for Traced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stamped {
            return this.poll_read_stamped(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                this.waiting_since.get_or_insert_with(Instant::now);
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                this.on_read(buf.filled().len() - before, None);
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for Traced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn records_round_trip_through_csv() {
        let r = ConnectionRecord {
            device: 7,
            source: "127.0.0.2:40000".parse().expect("addr"),
            target: "127.0.0.1:15684".parse().expect("addr"),
            syn_unix_us: 1_700_000_000_000_000,
            first_server_data_us: Some(412),
            closed_us: 1804,
            first_server_data_read_us: Some(455),
        };
        assert_eq!(ConnectionRecord::parse_csv(&r.csv_line()), Some(r.clone()));
        let silent = ConnectionRecord {
            first_server_data_us: None,
            first_server_data_read_us: None,
            ..r.clone()
        };
        assert_eq!(
            ConnectionRecord::parse_csv(&silent.csv_line()),
            Some(silent)
        );
        let old = "7,127.0.0.2:40000,127.0.0.1:15684,1700000000000000,412,1804";
        assert_eq!(
            ConnectionRecord::parse_csv(old),
            Some(ConnectionRecord {
                first_server_data_read_us: None,
                ..r
            }),
            "a file of the version before the read column"
        );
        assert_eq!(ConnectionRecord::parse_csv("1,2,3"), None);
        assert_eq!(ConnectionRecord::parse_csv(CSV_HEADER), None);
    }

    #[tokio::test]
    async fn a_traced_socket_records_its_connection_when_it_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(b"hello").await.expect("write");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let log = Arc::new(ConnectionLog::default());
        let syn = Instant::now();
        let tcp = TcpStream::connect(target).await.expect("connect");
        let source = tcp.local_addr().expect("addr");
        let mut traced = Traced::new(tcp, syn, 3, Some(&log));
        let mut buf = [0u8; 5];
        traced.read_exact(&mut buf).await.expect("read");
        assert!(log.take().0.is_empty(), "recorded only once closed");
        drop(traced);
        server.await.expect("server");
        let (records, left_out) = log.take();
        assert_eq!(left_out, 0);
        let [r] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!((r.device, r.source, r.target), (3, source, target));
        let first = r
            .first_server_data_us
            .expect("the server's bytes were read");
        let read = r.first_server_data_read_us.expect("and read");
        assert!(first <= read && read <= r.closed_us, "{r:?}");
    }
}
