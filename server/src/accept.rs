//! The device port's accept: `accept4` straight into non-blocking sockets that are registered with
//! the runtime only once admitted.
//!
//! tokio's `TcpListener::accept` registers every accepted socket with the reactor (an `epoll_ctl`
//! each way). A connection shed at accept — an address over its failed-handshake budget, in a
//! handshake storm tens of thousands of times a second — never needs that: here it costs
//! `accept4`, one `setsockopt` (linger 0, so the close is a reset and leaves no TIME_WAIT) and
//! `close`.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::net::{SocketAddrAny, SocketFlags};
use tokio::io::unix::AsyncFd;

/// One accepted connection, not yet registered with the runtime.
#[derive(Debug)]
pub struct Pending {
    fd: OwnedFd,
}

impl Pending {
    /// Admits it: a tokio stream (registered with the reactor).
    pub fn admit(self) -> std::io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::from_std(std::net::TcpStream::from(self.fd))
    }

    /// Refuses it with a reset: no FIN exchange and no TIME_WAIT entry for a connection that
    /// never got a byte.
    pub fn reset(self) {
        // A socket that cannot take the option is closed normally.
        let _ = rustix::net::sockopt::set_socket_linger(&self.fd, Some(std::time::Duration::ZERO));
    }
}

/// The listening socket, polled for readiness by the runtime.
#[derive(Debug)]
pub struct Acceptor {
    listener: AsyncFd<std::net::TcpListener>,
}

impl Acceptor {
    /// Takes over a tokio listener.
    pub fn new(listener: tokio::net::TcpListener) -> std::io::Result<Self> {
        let listener = listener.into_std()?;
        listener.set_nonblocking(true)?;
        // `AsyncFd::new` is deprecated because a `T` that merely borrows its descriptor could close
        // it while still registered. Here `T` is a `std::net::TcpListener`, which owns the
        // descriptor and is only dropped by the `AsyncFd` itself, after it deregisters it; the
        // safe replacement (`register`) is an `unsafe fn`, and unsafe code is forbidden here.
        #[allow(deprecated)]
        let listener = AsyncFd::new(listener)?;
        Ok(Acceptor { listener })
    }

    /// The next connection and its peer address.
    pub async fn accept(&self) -> std::io::Result<(Pending, SocketAddr)> {
        loop {
            let mut ready = self.listener.readable().await?;
            let accepted = ready.try_io(|listener| {
                rustix::net::acceptfrom_with(
                    listener.get_ref(),
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                )
                .map_err(std::io::Error::from)
            });
            let Ok(result) = accepted else {
                // Not ready after all: readiness was cleared, wait again.
                continue;
            };
            let (fd, peer) = match result {
                Ok(pair) => pair,
                // That one connection is gone (reset while queued) or the call was interrupted:
                // nothing wrong with the listener, take the next one at once.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let peer = peer
                .and_then(|p: SocketAddrAny| SocketAddr::try_from(p).ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "peer is not an IP address",
                    )
                });
            match peer {
                Ok(peer) => return Ok((Pending { fd }, peer)),
                // Not a TCP/IP peer (cannot happen on an IP listener): drop it and go on.
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn admitted_connections_carry_bytes_and_reset_ones_are_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = Acceptor::new(listener).unwrap();

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (pending, peer) = acceptor.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let mut server = pending.admit().unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (pending, _) = acceptor.accept().await.unwrap();
        pending.reset();
        let mut buf = [0u8; 1];
        let read = refused.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "a reset, not an orderly close: {read:?}"
        );
    }
}
