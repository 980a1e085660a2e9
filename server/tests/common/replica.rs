//! `dps-server run` as a child process, each on its own loopback ports, driven over its admin API
//! with a minimal HTTP/1.1 client: the crash tests' server (kill -9 and restart on one store), and
//! replicas of one DPS on one PostgreSQL database.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `dps-server init` in `dir`, with `[store] url` instead of the embedded store.
pub fn init_on(dir: &Path, url: &str) {
    dps_server::init::init(dir, false).expect("init");
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let text = text.replace("path = \"dps.redb\"", &format!("url = \"{url}\""));
    assert!(text.contains(url), "the store section was rewritten");
    std::fs::write(&path, text).expect("config written");
}

/// One running replica.
pub struct Replica {
    pub child: Child,
    pub device: SocketAddr,
    pub admin: SocketAddr,
}

/// Start a replica on `dir`'s config; returns once both ports listen.
pub fn start(dir: &Path) -> Replica {
    start_on(dir, "127.0.0.1:0")
}

/// As [`start`], with the device port on `listen` (another replica's, to share it).
pub fn start_on(dir: &Path, listen: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-server"))
        .args(["run", "--config"])
        .arg(dir.join("config.toml"))
        .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dps-server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addr = |prefix: &str| -> SocketAddr {
        let line = lines
            .next()
            .expect("the replica prints its addresses (did the store open?)")
            .expect("utf8");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
            .trim()
            .parse()
            .expect("address")
    };
    let device = addr("dps-server listening on ");
    let admin = addr("dps-server admin listening on ");
    Replica {
        child,
        device,
        admin,
    }
}

impl Replica {
    /// `kill -9`.
    pub fn kill_9(mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    /// A failing test must not leave a replica running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin API request with the bearer token: status and body.
pub fn http(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    try_http(addr, token, method, path, body).expect("admin request")
}

/// As [`http`]; `Err` when the server is gone (connection refused or cut), as a crash test needs.
pub fn try_http(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {resp:?}")))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
