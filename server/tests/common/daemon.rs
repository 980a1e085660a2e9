//! `dps-server run` in-process (device port and admin API on 127.0.0.1:0), a device that asks
//! for its cloud configuration, and a plain HTTP/1.1 GET for the admin API.

use std::net::SocketAddr;
use std::path::Path;

use dps_server::config::Config;
use dps_server::daemon::{self, Bound};
use dps_server::proto::body::CloudConfigurationRequest;
use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::FramedIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::server::{connect, demo_device, post};

/// A running daemon; dropping `stop` (or sending on it) shuts it down.
pub struct Daemon {
    pub bound: Bound,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.bound.admin.expect("admin API bound")
    }

    /// Stop and wait for the drain.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("daemon task");
    }
}

/// Run the config at `path` with both ports on 127.0.0.1:0.
pub async fn run(path: &Path) -> Daemon {
    let config = Config::load(path).expect("config");
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        daemon::run(
            &config,
            Some("127.0.0.1:0".into()),
            Some("127.0.0.1:0".into()),
            move |b| {
                let _ = bound_tx.send(*b);
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
        .expect("daemon runs");
    });
    let bound = bound_rx.await.expect("daemon bound its ports");
    Daemon { bound, stop, task }
}

/// The demo device of `dir` (an `init` set-up) asks for its cloud configuration with `di`; the
/// answer frame.
pub async fn cloud_configuration(dir: &Path, devices: SocketAddr, di: &str) -> Frame {
    let tls = connect(dir, devices, Some(demo_device(dir)))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    let csm = dev.read_frame().await.expect("read").expect("csm");
    assert_eq!(csm.code, Code::CSM);
    dev.exchange(&post(
        3,
        "/api/v1/provisioning/cloud-configuration",
        &CloudConfigurationRequest {
            di: di.into(),
            selected_gateway: None,
        },
    ))
    .await
    .expect("cloud configuration answered")
}

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`), with an optional bearer token: status
/// and body.
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
