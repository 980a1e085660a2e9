//! TCP from a chosen source address: devices spread over many loopback (or local) addresses so
//! that tens of thousands of connections to one server port do not run out of source ports.

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// A socket bound to `source` whose port is left to connect(), where the kernel picks one unique
/// for the whole 4-tuple (`IP_BIND_ADDRESS_NO_PORT`): a port bound at bind() time is reserved
/// against every destination, and finding a free one gets slow when the address's ports are
/// mostly taken.
pub fn bound_socket(source: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    bind_address_no_port(&socket)?;
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket)
}

/// Set `IP_BIND_ADDRESS_NO_PORT` on `socket` (see [`bound_socket`]).
pub fn bind_address_no_port(socket: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )?;
    Ok(())
}

/// TCP connect to `addr` from `source` ([`bound_socket`]), or from whatever address the OS picks.
pub async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    match source {
        None => TcpStream::connect(addr).await,
        Some(source) => bound_socket(source)?.connect(addr).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_source_gets_its_port_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr");
        let source: IpAddr = [127, 0, 0, 1].into();
        let socket = bound_socket(source).expect("socket");
        assert_eq!(socket.local_addr().expect("local").port(), 0);
        let stream = socket.connect(target).await.expect("connect");
        assert_eq!(stream.local_addr().expect("local").ip(), source);
        let plain = connect_from(None, target).await.expect("connect");
        assert_eq!(plain.peer_addr().expect("peer"), target);
    }
}
