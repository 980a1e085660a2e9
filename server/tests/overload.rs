//! Overload control on the device port, over real sockets: a connection shed by the CPU queue
//! costs the server no handshake signature, and silent half-open connections — more of them than
//! `max_connections` — neither take connection places nor shut devices out.

mod common;

use std::time::Duration;

use common::server::*;
use dps_server::config::Config;
use dps_server::init::init;
use dps_server::overload::ShedReason;
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn demo_config(dir: &std::path::Path, set: impl FnOnce(&mut Config)) -> Config {
    init(dir, false).expect("init");
    let mut config = Config::load(&dir.join("config.toml")).expect("config");
    set(&mut config);
    config
}

fn device_connector(dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    let (chain, key) = demo_device(dir);
    device_tls(dir, dps_server::client::TlsChoices::default())
        .connector(dps_server::client::ClientAuth::Certificate(chain, key))
        .expect("client cert")
}

/// One request on a fresh session: the device was served.
async fn served(dir: &std::path::Path, addr: std::net::SocketAddr) -> bool {
    let Ok(tls) = connect(dir, addr, Some(demo_device(dir))).await else {
        return false;
    };
    let mut io = FramedIo::new(tls, 64 * 1024);
    matches!(
        io.exchange(&request(Code::GET, 1, "/x.plgd.dev/time")).await,
        Ok(answer) if answer.code == Code::CONTENT
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_shed_by_the_cpu_queue_costs_no_signature() {
    const DEVICES: usize = 120;
    let dir = tempfile::tempdir().expect("tmp");
    // One CPU place and a queue that lets a first flight wait 1 ms at most: most of a burst of
    // simultaneous ClientHellos is shed.
    let config = demo_config(dir.path(), |c| {
        c.file.limits.cpu_slots = Some(1);
        c.file.limits.queue_timeout_ms = 1;
        c.file.limits.queue_target_ms = 1;
        c.file.limits.queue_interval_ms = 1;
        c.file.limits.pending_handshakes_per_ip = 0;
    });
    let running = start_with(&config).await;
    let connector = device_connector(dir.path());
    // Every TCP connection first, then every ClientHello at once.
    let mut tcps = Vec::new();
    for _ in 0..DEVICES {
        tcps.push(TcpStream::connect(running.addr).await.expect("tcp"));
    }
    let mut handshakes = Vec::new();
    for tcp in tcps {
        let connector = connector.clone();
        handshakes.push(tokio::spawn(async move {
            let name = ServerName::try_from("localhost").expect("name");
            connector.connect(name, tcp).await.is_ok()
        }));
    }
    let mut completed = 0u64;
    for h in handshakes {
        completed += u64::from(h.await.expect("join"));
    }
    let overload = running.server.metrics().overload().clone();
    let shed = overload.shed_count(ShedReason::QueueTimeout);
    let signatures = overload.signatures();
    running.stop().await;
    assert!(
        shed > 0,
        "a burst of {DEVICES} against one CPU place sheds some"
    );
    assert!(completed > 0, "and serves some");
    // Each connection was either shed before its first flight or signed exactly once.
    assert_eq!(
        signatures + shed,
        DEVICES as u64,
        "signatures {signatures}, shed {shed}, completed {completed}"
    );
    assert!(signatures >= completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_beyond_max_connections_do_not_shut_devices_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = demo_config(dir.path(), |c| c.file.limits.max_connections = 10);
    let running = start_with(&config).await;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(running.addr).await.expect("tcp"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        assert!(
            served(dir.path(), running.addr).await,
            "a device is served beside 40 silent connections with max_connections 10"
        );
    }
    drop(silent);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_silent_connections_make_room_for_new_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = demo_config(dir.path(), |c| c.file.limits.max_silent_connections = 10);
    let running = start_with(&config).await;
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(running.addr).await.expect("tcp"));
        // Accepted in order, so "oldest" is well defined.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(served(dir.path(), running.addr).await, "a device gets in");
    let mut closed = 0;
    let mut closed_first = 0;
    for (i, s) in silent.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        let ended = matches!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        );
        closed += u32::from(ended);
        closed_first += u32::from(ended && i < 20);
    }
    let evicted = running
        .server
        .metrics()
        .overload()
        .shed_count(ShedReason::SilentEvicted);
    running.stop().await;
    // 30 silent + the device's connection through a pool of 10: 21 evicted, the oldest first.
    assert!(closed >= 20, "closed {closed}");
    assert_eq!(closed_first, 20, "the 20 oldest were evicted");
    assert!(evicted >= 20, "evicted {evicted}");
}
