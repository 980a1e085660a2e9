//! The server as `dps-server run` runs it: device port and admin API bound, serving until the
//! shutdown future resolves, then draining. A library function so that the load generator can run
//! the very same thing in a child process (its own file-descriptor limit and memory, measured
//! apart from the generator's).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::server::{Server, ServerError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config does not make a working server.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// `""` or `" (admin API)"`.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin API is enabled without a token.
    #[error("the admin API needs a token: [admin] token_file or token, or DPS_ADMIN_TOKEN")]
    NoAdminToken,
}

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The device port.
    pub devices: SocketAddr,
    /// The admin API, when enabled.
    pub admin: Option<SocketAddr>,
}

/// The line the server prints for each bound port; scripts and the load generator read them.
pub fn bound_lines(bound: &Bound) -> Vec<String> {
    let mut lines = vec![format!("dps-server listening on {}", bound.devices)];
    if let Some(admin) = bound.admin {
        lines.push(format!("dps-server admin listening on {admin}"));
    }
    lines
}

/// Read a [`Bound`] back from the lines of [`bound_lines`] (other lines are ignored); `None`
/// until the device port's line has been seen.
pub fn parse_bound<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Bound> {
    let mut devices = None;
    let mut admin = None;
    for line in lines {
        if let Some(a) = line.strip_prefix("dps-server admin listening on ") {
            admin = a.trim().parse().ok();
        } else if let Some(a) = line.strip_prefix("dps-server listening on ") {
            devices = a.trim().parse().ok();
        }
    }
    Some(Bound {
        devices: devices?,
        admin,
    })
}

/// Listen with a backlog of 4096 instead of tokio's 1024: bursts of thousands of device connects
/// queue instead of being dropped (the kernel caps it at `net.core.somaxconn`).
pub async fn listen_deep(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    listen_with(addr, false).await
}

/// As [`listen_deep`]; with `shared_port`, `SO_REUSEPORT` too, so replicas of one DPS (on a
/// shared store) on one machine listen on the same port and the kernel spreads connections.
pub async fn listen_with(
    addr: &str,
    shared_port: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if shared_port {
            socket.set_reuseport(true)?;
        }
        match socket.bind(a).and_then(|()| socket.listen(4096)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the address resolves to nothing")))
}

/// Run the server of `config` (addresses overridden by `listen` / `admin_listen`); `on_bound` is
/// told where it listens; returns after `shutdown` resolves and open work has drained.
pub async fn run(
    config: &Config,
    listen: Option<String>,
    admin_listen: Option<String>,
    on_bound: impl FnOnce(&Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let server = Arc::new(Server::from_config(config)?);
    let section = config
        .file
        .server
        .as_ref()
        .ok_or(ServerError::NoServerSection)?;
    let addr = listen.unwrap_or_else(|| section.listen.clone());
    raise_open_file_limit();
    let (listener, devices) = bind_devices(&addr, server.store().is_shared()).await?;
    log_loaded(&server, devices);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_addr = admin_listen.or_else(|| config.file.admin.as_ref().map(|a| a.listen.clone()));
    let admin = match admin_addr {
        None => None,
        Some(addr) => Some(start_admin(config, &server, &addr, stopped(stop_rx.clone())).await?),
    };
    // On a shared store, changes made through any replica reach this one.
    let follower = crate::replica::follow(server.clone(), config.clone());
    on_bound(&Bound {
        devices,
        admin: admin.as_ref().map(|(bound, _)| *bound),
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // On a worker, not on the thread blocked on this future: a connection's task then starts on
    // the worker that accepted it, instead of every accept waking the blocked thread (two futex
    // calls and a context switch per connection) and that thread handing the task to a worker.
    if tokio::spawn(server.clone().run(listener, stopped(stop_rx)))
        .await
        .is_err()
    {
        tracing::error!("the device accept loop panicked");
    }
    if let Some((_, task)) = admin {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "admin API stopped with an error");
        }
    }
    if let Some(task) = follower {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Every device connection is a file descriptor: take the soft limit up to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// The device port's listener on `addr`, and the address it got; replicas on a shared store
/// (`shared`) share the port (one machine, several processes).
async fn bind_devices(
    addr: &str,
    shared: bool,
) -> Result<(tokio::net::TcpListener, SocketAddr), DaemonError> {
    let listen_err = |source| DaemonError::Listen {
        addr: addr.to_owned(),
        what: "",
        source,
    };
    let listener = listen_with(addr, shared).await.map_err(listen_err)?;
    let devices = listener.local_addr().map_err(listen_err)?;
    Ok((listener, devices))
}

/// What the server starts with: its store, groups and hubs, and the device port.
fn log_loaded(server: &Server, devices: SocketAddr) {
    tracing::info!(store = %server.store().location(), "store opened");
    tracing::info!(
        groups = server.arena().load().len(),
        hubs = server.provisioner().hubs().len(),
        "loaded enrollment groups"
    );
    tracing::info!(address = %devices, "device port listening (coaps+tcp)");
}

/// The admin API, listening on `addr` until `stop`: where it is bound, and its task. Access
/// tokens name it as their issuer unless `[admin] issuer` is set.
async fn start_admin(
    config: &Config,
    server: &Server,
    addr: &str,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), DaemonError> {
    let token = config.admin_token()?.ok_or(DaemonError::NoAdminToken)?;
    let listen_err = |source| DaemonError::Listen {
        addr: addr.to_owned(),
        what: " (admin API)",
        source,
    };
    let admin_listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_err)?;
    let admin_bound = admin_listener.local_addr().map_err(listen_err)?;
    if !admin_bound.ip().is_loopback() {
        tracing::warn!(address = %admin_bound, "the admin API listens beyond loopback");
    }
    tracing::info!(address = %admin_bound, "admin API listening (http)");
    let configured = config.file.admin.as_ref().and_then(|a| a.issuer.as_ref());
    if configured.is_none() {
        if admin_bound.ip().is_unspecified() {
            tracing::warn!(address = %admin_bound, "set [admin] issuer: access tokens name an unspecified address as their issuer");
        }
        server
            .provisioner()
            .tokens()
            .set_issuer(format!("http://{admin_bound}"));
    }
    let state = server.admin_state(config, token);
    let task = tokio::spawn(crate::admin::serve(admin_listener, state, stop));
    Ok((admin_bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_lines_read_back() {
        let bound = Bound {
            devices: "127.0.0.1:15684".parse().expect("addr"),
            admin: Some("127.0.0.1:8080".parse().expect("addr")),
        };
        let lines = bound_lines(&bound);
        let mut with_noise = vec!["something else"];
        with_noise.extend(lines.iter().map(String::as_str));
        assert_eq!(parse_bound(with_noise), Some(bound));
        assert_eq!(
            parse_bound(["dps-server admin listening on 1.2.3.4:5"]),
            None
        );
    }
}
