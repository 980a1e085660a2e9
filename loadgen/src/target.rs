//! The server under load: embedded (started in-process on loopback with the fleet's set-up) or
//! remote (a running DPS whose admin API receives the fleet's hub and groups before the run and
//! loses them after). Either way the run ends with the server's own view: its handshake and
//! matching histograms and its rejection counts by reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dps_server::config::Config;
use dps_server::metrics::{HistogramSnapshot, HistogramSummary};
use dps_server::server::Server;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpSocket;

use crate::fleet::Fleet;
use crate::run::RunError;
use crate::scenario::Scenario;

mod admin_client;
pub use admin_client::AdminClient;

/// What the server says about the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerView {
    /// `embedded` or `remote`.
    pub kind: String,
    /// The server's histograms (µs): `handshake`, `matching`, `resource.<step>`. For a remote
    /// server they cover its whole life, not only this run.
    pub histograms: BTreeMap<String, HistogramSummary>,
    /// Rejections by reason during the run.
    pub rejections: BTreeMap<String, u64>,
    /// Device connections the server counted open at the hold executor's peak.
    pub open_connections_at_peak: Option<u64>,
    /// The server's peak resident memory, bytes: for an embedded server this is the whole
    /// process, generator included.
    pub peak_rss_bytes: Option<u64>,
}

/// A server to run against.
pub enum Target {
    /// In-process.
    Embedded {
        /// The server.
        server: Arc<Server>,
        /// Its accept loop.
        task: tokio::task::JoinHandle<()>,
        /// Ends the accept loop.
        stop: tokio::sync::oneshot::Sender<()>,
    },
    /// Elsewhere.
    Remote {
        /// Its admin API.
        admin: AdminClient,
        /// Rejection counters before the run.
        baseline: BTreeMap<String, u64>,
        /// Groups created for this run, deleted at the end.
        groups: Vec<String>,
    },
}

/// A started target: where devices connect and what they trust.
pub struct Started {
    /// The target.
    pub target: Target,
    /// The device port.
    pub addr: SocketAddr,
    /// The server's CA (devices verify the server with it), unless verification is skipped.
    pub server_ca: Option<CertificateDer<'static>>,
}

fn server_err(e: impl std::fmt::Display) -> RunError {
    RunError::Server(e.to_string())
}

/// Start (embedded) or prepare (remote) the target of `scenario` for `fleet`, whose server set-up
/// is in `fleet_dir`.
pub async fn start(
    scenario: &Scenario,
    fleet: &Fleet,
    fleet_dir: &std::path::Path,
) -> Result<Started, RunError> {
    let verify = !scenario.device.skip_server_verification;
    let Some(address) = &scenario.target.address else {
        let config = Config::load(&fleet_dir.join("config.toml")).map_err(server_err)?;
        let server = Arc::new(Server::from_config(&config).map_err(server_err)?);
        // A deep accept backlog: bursts of thousands of connects must queue, not be dropped.
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().map_err(server_err)?)?;
        let listener = socket.listen(4096)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().run(listener, async {
            let _ = stopped.await;
        }));
        return Ok(Started {
            target: Target::Embedded { server, task, stop },
            addr,
            server_ca: verify.then(|| fleet.server_ca.clone()),
        });
    };
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| server_err(format!("target.address {address}: {e}")))?
        .next()
        .ok_or_else(|| server_err(format!("target.address {address}: no address")))?;
    let server_ca = match (&scenario.target.server_ca, verify) {
        (Some(path), true) => Some(
            CertificateDer::from_pem_file(path)
                .map_err(|e| server_err(format!("target.server_ca {path}: {e}")))?,
        ),
        _ => None,
    };
    let url = scenario.target.admin.as_deref().unwrap_or_default();
    let token = match &scenario.target.admin_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| server_err(format!("target.admin_token_file {path}: {e}")))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let admin = AdminClient::new(url, token).map_err(server_err)?;
    admin
        .upsert("/api/v1/hubs", &fleet.hub.id, &fleet.hub)
        .await
        .map_err(server_err)?;
    let mut groups = Vec::new();
    for group in &fleet.server_groups {
        admin
            .upsert("/api/v1/enrollment-groups", &group.id, group)
            .await
            .map_err(server_err)?;
        groups.push(group.id.clone());
    }
    let baseline = admin.rejections().await.map_err(server_err)?;
    Ok(Started {
        target: Target::Remote {
            admin,
            baseline,
            groups,
        },
        addr,
        server_ca,
    })
}

impl Target {
    /// Device connections the server has open now (for the hold executor's peak).
    pub async fn open_connections(&self) -> Option<u64> {
        match self {
            Target::Embedded { server, .. } => Some(server.metrics().open_connections()),
            Target::Remote { admin, .. } => admin.gauge("dps_open_connections").await.ok(),
        }
    }

    /// Stop the embedded server, or clean up the remote one; either way, read its view.
    pub async fn finish(self) -> ServerView {
        match self {
            Target::Embedded { server, task, stop } => {
                let _ = stop.send(());
                let _ = task.await;
                let stats = &server.verifier().stats;
                ServerView {
                    kind: "embedded".into(),
                    histograms: server.metrics().histograms().histograms,
                    rejections: dps_server::enrollment::RejectReason::ALL
                        .iter()
                        .map(|r| (r.as_str().to_owned(), stats.rejected(*r)))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    open_connections_at_peak: None,
                    peak_rss_bytes: dps_server::metrics::resident_memory().map(|m| m.peak),
                }
            }
            Target::Remote {
                admin,
                baseline,
                groups,
            } => {
                let histograms = admin
                    .get_json::<HistogramSnapshot>("/api/v1/histograms")
                    .await
                    .map(|s| s.histograms)
                    .unwrap_or_default();
                let rejections = admin
                    .rejections()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        let before = baseline.get(&k).copied().unwrap_or(0);
                        (k, v.saturating_sub(before))
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                let peak_rss_bytes = admin
                    .gauge("dps_process_peak_resident_memory_bytes")
                    .await
                    .ok();
                for id in groups {
                    let _ = admin
                        .delete(&format!("/api/v1/enrollment-groups/{id}"))
                        .await;
                }
                ServerView {
                    kind: "remote".into(),
                    histograms,
                    rejections,
                    open_connections_at_peak: None,
                    peak_rss_bytes,
                }
            }
        }
    }
}
