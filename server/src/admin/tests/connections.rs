//! Slow and greedy clients on a real socket: header-read timeout, request deadline, connection cap.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{fixture, spawn_served};
use crate::admin::AdminLimits;

/// Short limits, so a test sees them expire; `wait` is far longer than any of them.
fn short(max_connections: usize) -> AdminLimits {
    AdminLimits {
        header_read: Duration::from_millis(300),
        request: Duration::from_millis(300),
        max_connections,
        drain: Duration::from_secs(1),
    }
}

/// Upper bound on waiting for the server to act; a server without the limit never does.
const WAIT: Duration = Duration::from_secs(10);

/// Everything the server sends until it closes the connection (or resets it).
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {WAIT:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    read_until_closed(&mut s).await
}

#[tokio::test]
async fn silent_and_trickling_clients_are_disconnected() {
    let f = fixture();
    let (addr, tx, _server) = spawn_served(&f, short(16)).await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Sends half a request head, then stalls.
    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // A kept-alive connection that goes idle after one answer.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");

    assert!(read_until_closed(&mut silent).await.is_empty());
    let trickled = read_until_closed(&mut trickle).await;
    assert!(!trickled.contains("200 OK"), "{trickled}");
    read_until_closed(&mut idle).await;
    // The server still answers.
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
    tx.send(()).expect("stop");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let f = fixture();
    let (addr, tx, _server) = spawn_served(&f, short(16)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/hubs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        super::TOKEN
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let out = read_until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("\"error\""), "{out}");
    assert!(f.store.inner().hubs.is_empty(), "nothing was stored");
    tx.send(()).expect("stop");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_counted() {
    let f = fixture();
    let limits = AdminLimits {
        header_read: Duration::from_secs(30),
        ..short(2)
    };
    let (addr, tx, _server) = spawn_served(&f, limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The two places are taken once the server has accepted both; poll until it refuses.
    let mut refused = false;
    for _ in 0..100 {
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        if read_until_closed(&mut extra).await.is_empty() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "a third connection was served beside two held ones"
    );
    assert!(f.metrics.admin_refused() >= 1);
    assert!(f
        .metrics
        .prometheus()
        .contains("dps_admin_connections_refused_total"));
    // Places come back when the holders leave.
    drop(held);
    let mut answered = false;
    for _ in 0..100 {
        if healthz(addr).await.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "places were not given back");
    tx.send(()).expect("stop");
}
