//! The device's TCP stream as the TLS handshake reads it: bytes that arrive are handed to rustls
//! only once the connection holds a place in the [`CpuGate`], so the gate covers exactly the
//! CPU-heavy processing of each flight and none of the round trips between them.
//!
//! rustls processes a flight synchronously right after reading it and then writes its answer;
//! the place is taken when the flight's bytes are there and given back at the next write, or when
//! the stream has nothing more to read (the flight is done and the device's turn has come).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::gate::{Class, CpuGate, Shed, Slot};

type Entering = Pin<Box<dyn Future<Output = Result<Slot, Shed>> + Send>>;

/// A TCP stream whose handshake reads wait for a CPU place; after [`GatedIo::open`] it is a
/// plain stream.
pub struct GatedIo {
    io: TcpStream,
    gate: Option<CpuGate>,
    class: Class,
    slot: Option<Slot>,
    entering: Option<Entering>,
    staged: Vec<u8>,
    staged_from: usize,
    /// Set when this connection's first flight was granted: the handshake counts as open in the
    /// gate until [`GatedIo::open`] (done) or drop (failed).
    opened: Option<(CpuGate, std::time::Instant)>,
}

impl Drop for GatedIo {
    fn drop(&mut self) {
        if let Some((gate, _)) = self.opened.take() {
            gate.handshake_over(None);
        }
    }
}

impl std::fmt::Debug for GatedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedIo")
            .field("gated", &self.gate.is_some())
            .field("holds_place", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

/// Bytes read ahead while waiting for a place (a ClientHello fits; the rest follows later).
const STAGE: usize = 4096;

impl GatedIo {
    /// Gates `io`'s reads through `gate`; its first flight waits as `first` (fresh for a new
    /// connection), later ones as continuing.
    pub fn new(io: TcpStream, gate: Option<CpuGate>, first: Class) -> Self {
        GatedIo {
            io,
            gate,
            class: first,
            slot: None,
            entering: None,
            staged: Vec::new(),
            staged_from: 0,
            opened: None,
        }
    }

    /// The handshake is over: give back any place and pass bytes straight through from now on.
    pub fn open(&mut self) {
        if let Some((gate, since)) = self.opened.take() {
            gate.handshake_over(Some(since.elapsed()));
        }
        self.gate = None;
        self.slot = None;
        self.entering = None;
    }

    /// The TCP stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.io
    }

    fn release(&mut self) {
        self.slot = None;
    }

    /// The server answers: its work on the connection has begun, so later flights continue it
    /// (a ClientHello that trickles in parts stays fresh, and sheddable, until then).
    fn answered(&mut self) {
        self.slot = None;
        self.class = Class::Continuing;
    }

    fn drain_staged(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let rest = &self.staged[self.staged_from..];
        if rest.is_empty() {
            return false;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.staged_from += n;
        if self.staged_from == self.staged.len() {
            self.staged.clear();
            self.staged_from = 0;
        }
        true
    }
}

impl AsyncRead for GatedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let Some(gate) = this.gate.clone() else {
            if this.drain_staged(buf) {
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        if this.slot.is_some() {
            if this.drain_staged(buf) {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            return match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Pending => {
                    // The flight is processed and the device's turn has come.
                    this.release();
                    Poll::Pending
                }
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    this.release();
                    Poll::Ready(Ok(()))
                }
                other => other,
            };
        }
        if this.staged.is_empty() {
            let mut stage = [0u8; STAGE];
            let mut stage_buf = ReadBuf::new(&mut stage);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut stage_buf))?;
            if stage_buf.filled().is_empty() {
                // End of stream: nothing to process, nothing to gate.
                return Poll::Ready(Ok(()));
            }
            this.staged.extend_from_slice(stage_buf.filled());
            this.staged_from = 0;
        }
        // A handshake already open (a ClientHello that came in parts) holds its place among the
        // open ones: its later parts continue it.
        let class = if this.opened.is_some() {
            Class::Continuing
        } else {
            this.class
        };
        // Below saturation a place is free at once: no future to box.
        let granted = match this.entering {
            None => gate.try_enter(class).map(Ok),
            Some(_) => None,
        };
        let result = match granted {
            Some(result) => result,
            None => {
                let entering = this.entering.get_or_insert_with(|| {
                    let gate = gate.clone();
                    Box::pin(async move { gate.enter(class).await })
                });
                ready!(entering.as_mut().poll(cx))
            }
        };
        match result {
            Ok(slot) => {
                this.entering = None;
                if class == Class::Fresh && this.opened.is_none() {
                    this.opened = Some((gate.clone(), std::time::Instant::now()));
                }
                this.slot = Some(slot);
                this.drain_staged(buf);
                Poll::Ready(Ok(()))
            }
            Err(shed) => {
                this.entering = None;
                // Closed with a reset: no FIN exchange, no TIME_WAIT, nothing more spent on it.
                let _ = this.io.set_zero_linger();
                Poll::Ready(Err(std::io::Error::other(shed)))
            }
        }
    }
}

impl AsyncWrite for GatedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.answered();
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.answered();
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.release();
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.release();
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Was this I/O error the gate shedding the connection?
pub fn is_shed(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Shed>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::gate::GateSettings;
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.unwrap(), s.unwrap().0)
    }

    fn gate(slots: usize) -> CpuGate {
        CpuGate::new(
            GateSettings {
                slots,
                timeout: Duration::from_millis(100),
                target: Duration::from_millis(100),
                interval: Duration::from_secs(10),
            },
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn a_read_takes_a_place_until_the_answer_is_written() {
        let g = gate(1);
        let (mut client, server) = pair().await;
        let mut io = GatedIo::new(server, Some(g.clone()), Class::Fresh);
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(g.load().0, 1, "held while the flight is processed");
        io.write_all(b"answer").await.unwrap();
        assert_eq!(g.load().0, 0, "given back with the answer");
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
    }

    #[tokio::test]
    async fn a_flight_that_waits_too_long_is_shed_with_an_error_the_server_recognises() {
        let g = gate(1);
        let _held = g.enter(Class::Fresh).await.unwrap();
        let (mut client, server) = pair().await;
        let mut io = GatedIo::new(server, Some(g.clone()), Class::Fresh);
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let e = io.read(&mut buf).await.expect_err("shed");
        assert!(is_shed(&e), "{e}");
        drop(io);
        // The reset reaches the client as an error or an end of stream, never as data.
        let got = client.read(&mut buf).await;
        assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    }

    #[tokio::test]
    async fn an_open_stream_passes_bytes_without_the_gate() {
        let g = gate(1);
        let _held = g.enter(Class::Fresh).await.unwrap();
        let (mut client, server) = pair().await;
        let mut io = GatedIo::new(server, Some(g.clone()), Class::Fresh);
        io.open();
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(g.load().0, 1, "only the test's own place");
    }
}
