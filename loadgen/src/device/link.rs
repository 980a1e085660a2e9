//! A device's socket through its link profile ([`crate::link`]), in user space: what the device
//! writes reaches the server `rtt / 2 ± jitter` later (after serialisation at the uplink's
//! bandwidth, and one RTO later when a segment is lost), what the server sends reaches the device
//! as late by the downlink's figures, and the TCP connect itself costs one round trip
//! ([`connect_delay`](crate::link::model::connect_delay)). The device's TLS client runs over it,
//! so every round trip of TLS and CoAP pays the link's.
//!
//! Cost: no task and no thread per device. Each direction is a FIFO of timed chunks with one
//! timer, driven by the device's own polls (its task reads after every write in this protocol,
//! and a read moves pending writes along too); without a profile the stream is the socket itself
//! behind one branch. Written bytes are accepted at once (up to [`MAX_IN_FLIGHT`] in flight), as
//! a kernel's socket buffer would; `flush` does not wait for them to arrive, `shutdown` does.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::link::model::{Direction, Rng, Way};
use crate::link::LinkProfile;

/// Bytes a direction holds before it pushes back (a socket buffer's worth).
pub const MAX_IN_FLIGHT: usize = 64 * 1024;
/// Bytes taken from the socket per read.
const READ_CHUNK: usize = 4096;

/// A device's connection: the socket itself, or the socket through a link profile.
#[derive(Debug)]
pub struct LinkStream<S = TcpStream> {
    io: S,
    link: Option<Box<Emulation>>,
}

/// What the link holds in flight, and its two timers.
#[derive(Debug)]
struct Emulation {
    rng: Rng,
    up: Direction,
    down: Direction,
    /// Written by the device, not yet at the server.
    outgoing: VecDeque<Outgoing>,
    outgoing_bytes: usize,
    /// Read from the socket, not yet at the device.
    incoming: VecDeque<Incoming>,
    incoming_bytes: usize,
    up_timer: Timer,
    down_timer: Timer,
    /// The socket refused a write that was due: the device's next write, flush or shutdown fails.
    write_error: Option<io::Error>,
    /// The socket has ended (or failed): nothing more is read from it.
    read_closed: bool,
}

#[derive(Debug)]
struct Outgoing {
    due: Instant,
    bytes: Vec<u8>,
    sent: usize,
}

#[derive(Debug)]
struct Incoming {
    due: Instant,
    what: Arrival,
}

#[derive(Debug)]
enum Arrival {
    /// Bytes, and how many the device has taken.
    Bytes(Vec<u8>, usize),
    /// The server ended the stream.
    End,
    /// The socket failed (a reset, say).
    Failed(Option<io::Error>),
}

impl<S> LinkStream<S> {
    /// The socket itself: no emulation, no overhead beyond one branch per call.
    pub fn direct(io: S) -> Self {
        LinkStream { io, link: None }
    }

    /// The socket through `profile`, its random draws from `rng`.
    pub fn emulated(io: S, profile: &LinkProfile, rng: Rng) -> Self {
        LinkStream {
            io,
            link: Some(Box::new(Emulation {
                rng,
                up: Direction::new(profile, Way::Up),
                down: Direction::new(profile, Way::Down),
                outgoing: VecDeque::new(),
                outgoing_bytes: 0,
                incoming: VecDeque::new(),
                incoming_bytes: 0,
                up_timer: Timer::new(),
                down_timer: Timer::new(),
                write_error: None,
                read_closed: false,
            })),
        }
    }

    /// Goes through a link profile.
    pub fn is_emulated(&self) -> bool {
        self.link.is_some()
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

/// How late this process's link timers get their chunks going after their deadline,
/// nanoseconds (a moving average over every link's timers): see [`Timer::wait`].
static TIMER_LATENESS_NS: AtomicU64 = AtomicU64::new(0);
/// The most a chunk is released ahead of its time to make up for that lateness.
const MAX_LEAD: Duration = Duration::from_millis(5);

/// One direction's timer.
#[derive(Debug)]
struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// Set for a chunk that was not yet due: the task waits for this timer.
    armed: bool,
}

impl Timer {
    fn new() -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: false,
        }
    }

    /// Waits for `due`: `true` once it has come, `false` with the task to be woken then.
    ///
    /// Tokio's timer rounds a deadline up to its next millisecond tick and the task runs a little
    /// after that, so a plain sleep of 20 ms takes about 21.4 ms on the project machine: each
    /// trip of a 40 ms link would be 1-2 ms long, every round trip some 4 % more than nominal.
    /// So the timers aim early by their own measured lateness (a moving average of how long
    /// after its deadline each one got its chunk going), and chunks go on their time on average.
    fn wait(&mut self, due: Instant, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        if self.armed && self.sleep.deadline() <= now {
            // Woken for this deadline (or polled after it): learn how late.
            self.armed = false;
            learn_lateness(now - self.sleep.deadline());
            return true;
        }
        let lead = Duration::from_nanos(TIMER_LATENESS_NS.load(Ordering::Relaxed)).min(MAX_LEAD);
        let release = due.checked_sub(lead).unwrap_or(due);
        if release <= now {
            self.armed = false;
            return true;
        }
        if self.sleep.deadline() != release {
            self.sleep.as_mut().reset(release);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return true;
        }
        self.armed = true;
        false
    }
}

/// Fold one timer's lateness into the average (1/16 of each new sample).
fn learn_lateness(late: Duration) {
    let late = u64::try_from(late.min(MAX_LEAD).as_nanos()).unwrap_or(u64::MAX);
    let old = TIMER_LATENESS_NS.load(Ordering::Relaxed);
    TIMER_LATENESS_NS.store(old - old / 16 + late / 16, Ordering::Relaxed);
}

impl Emulation {
    /// Hand the socket every written chunk whose time has come; arm the uplink timer for the
    /// next one.
    fn send_due<S: AsyncWrite + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>) {
        while let Some(head) = self.outgoing.front_mut() {
            if !self.up_timer.wait(head.due, cx) {
                return;
            }
            let written = Pin::new(&mut *io).poll_write(cx, &head.bytes[head.sent..]);
            match written {
                Poll::Pending => return,
                Poll::Ready(Ok(0)) => return self.fail_writes(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    head.sent += n;
                    self.outgoing_bytes -= n;
                    if head.sent == head.bytes.len() {
                        self.outgoing.pop_front();
                    }
                }
                Poll::Ready(Err(e)) => return self.fail_writes(e),
            }
        }
    }

    fn fail_writes(&mut self, e: io::Error) {
        self.outgoing.clear();
        self.outgoing_bytes = 0;
        self.write_error = Some(e);
    }

    /// Take what the socket has into the downlink FIFO, each chunk stamped with its arrival.
    fn receive<S: AsyncRead + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>) {
        while !self.read_closed && self.incoming_bytes < MAX_IN_FLIGHT {
            let mut scratch = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut scratch);
            let what = match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Arrival::End,
                Poll::Ready(Ok(())) => Arrival::Bytes(buf.filled().to_vec(), 0),
                Poll::Ready(Err(e)) => Arrival::Failed(Some(e)),
            };
            let len = match &what {
                Arrival::Bytes(b, _) => b.len(),
                Arrival::End | Arrival::Failed(_) => {
                    self.read_closed = true;
                    0
                }
            };
            let due = self.down.schedule(Instant::now(), len, &mut self.rng);
            self.incoming_bytes += len;
            self.incoming.push_back(Incoming { due, what });
        }
    }

    /// Give the device what has arrived; arm the downlink timer for what has not.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(head) = self.incoming.front_mut() else {
            // Empty: the socket was polled and will wake the task, or it has ended (after an
            // error was delivered, later reads see the end).
            return if self.read_closed {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        };
        if !self.down_timer.wait(head.due, cx) {
            return Poll::Pending;
        }
        match &mut head.what {
            Arrival::Bytes(bytes, taken) => {
                let n = buf.remaining().min(bytes.len() - *taken);
                buf.put_slice(&bytes[*taken..*taken + n]);
                *taken += n;
                self.incoming_bytes -= n;
                if *taken == bytes.len() {
                    self.incoming.pop_front();
                }
                Poll::Ready(Ok(()))
            }
            // Stays queued: every later read sees the end too.
            Arrival::End => Poll::Ready(Ok(())),
            Arrival::Failed(e) => {
                let e = e
                    .take()
                    .unwrap_or_else(|| io::ErrorKind::ConnectionReset.into());
                self.incoming.pop_front();
                Poll::Ready(Err(e))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for LinkStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(link) = this.link.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // A device waits for answers by reading: its writes move on meanwhile.
        link.send_due(&mut this.io, cx);
        link.receive(&mut this.io, cx);
        link.deliver(buf, cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LinkStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(link) = this.link.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        link.send_due(&mut this.io, cx);
        if let Some(e) = link.write_error.take() {
            return Poll::Ready(Err(e));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if link.outgoing_bytes >= MAX_IN_FLIGHT {
            // Full: `send_due` armed the timer or the socket for the head, which wakes the task.
            return Poll::Pending;
        }
        let n = buf.len().min(MAX_IN_FLIGHT - link.outgoing_bytes);
        let due = link.up.schedule(Instant::now(), n, &mut link.rng);
        link.outgoing.push_back(Outgoing {
            due,
            bytes: buf[..n].to_vec(),
            sent: 0,
        });
        link.outgoing_bytes += n;
        // Arms the timer for it (or sends it, on a zero-delay link).
        link.send_due(&mut this.io, cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(link) = this.link.as_deref_mut() {
            link.send_due(&mut this.io, cx);
            if let Some(e) = link.write_error.take() {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(link) = this.link.as_deref_mut() {
            // The FIN follows the data still on its way.
            link.send_due(&mut this.io, cx);
            if let Some(e) = link.write_error.take() {
                return Poll::Ready(Err(e));
            }
            if !link.outgoing.is_empty() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn profile(rtt_ms: u64, bps: Option<u64>) -> LinkProfile {
        LinkProfile {
            name: "test".into(),
            rtt: Duration::from_millis(rtt_ms),
            jitter: Duration::ZERO,
            uplink_bps: bps,
            downlink_bps: bps,
            loss: 0.0,
        }
    }

    /// A device end through `p` and the server's plain end, on tokio's paused clock.
    fn pair(p: &LinkProfile) -> (LinkStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (device, server) = tokio::io::duplex(1 << 20);
        (LinkStream::emulated(device, p, Rng::seeded(1)), server)
    }

    #[tokio::test(start_paused = true)]
    async fn each_way_takes_half_the_rtt_and_a_request_answer_the_whole() {
        let (mut device, mut server) = pair(&profile(40, None));
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 5];
            server.read_exact(&mut buf).await.expect("request");
            let arrived = Instant::now();
            server.write_all(b"world").await.expect("answer");
            (arrived, server)
        });
        let start = Instant::now();
        device.write_all(b"hello").await.expect("write");
        device
            .flush()
            .await
            .expect("flush does not wait for the link");
        assert_eq!(Instant::now(), start);
        let mut answer = [0u8; 5];
        device.read_exact(&mut answer).await.expect("answer");
        assert_eq!(&answer, b"world");
        let (arrived, _server) = echo.await.expect("echo");
        // Tokio's timer has millisecond ticks: a trip ends within about a millisecond of its time.
        let near = |got: Duration, want: u64| {
            got + Duration::from_millis(1) >= Duration::from_millis(want)
                && got <= Duration::from_millis(want + 1)
        };
        assert!(near(arrived - start, 20), "{:?}", arrived - start);
        assert!(near(start.elapsed(), 40), "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_data_is_serialised_by_the_bandwidth_and_arrives_in_order() {
        // 100 KiB at 1 Mbit/s: 71 segments, (102400 + 71 × 40) × 8 bits ≈ 842 ms, plus 5 ms.
        let (mut device, mut server) = pair(&profile(10, Some(1_000_000)));
        let data: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; sent.len()];
            server.read_exact(&mut got).await.expect("read");
            (got == sent, Instant::now())
        });
        device.write_all(&data).await.expect("write");
        // Shutdown waits until everything is at the server.
        device.shutdown().await.expect("shutdown");
        let (same, done) = reader.await.expect("reader");
        assert!(same, "bytes reordered or lost");
        let took = done - start;
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_millis(900),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_end_of_stream_arrives_after_its_data() {
        let (mut device, mut server) = pair(&profile(100, None));
        server.write_all(b"bye").await.expect("write");
        drop(server);
        let start = Instant::now();
        let mut all = Vec::new();
        device.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"bye");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(49) && took <= Duration::from_millis(51),
            "{took:?}"
        );
        // And stays ended.
        let mut more = [0u8; 4];
        assert_eq!(device.read(&mut more).await.expect("eof"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_profile_the_stream_is_the_socket() {
        let (device, mut server) = tokio::io::duplex(64);
        let mut device = LinkStream::direct(device);
        assert!(!device.is_emulated());
        let start = Instant::now();
        device.write_all(b"now").await.expect("write");
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!((&buf, start.elapsed()), (b"now", Duration::ZERO));
    }
}
