//! The server under load: embedded (started in-process on loopback with the fleet's set-up) or
//! remote (a running DPS whose admin API receives the fleet's hub and groups before the run and
//! loses them after). Either way the run ends with the server's own view: its handshake and
//! matching histograms, its rejection counts by reason and its count of refused TPM requests.
//! A TLS-only target (`[target] tls_only`, e.g. nginx as a peer) is only an address: nothing is
//! set up on it and it has no view of its own.
//!
//! TPM enrollments: the fleet's individual TPM enrollments and its TPM enrollment group are in the
//! embedded (and spawned) server's config; a remote target gets them over
//! `/api/v1/tpm-enrollments` and `/api/v1/tpm-enrollment-groups` and loses them after the run.
//! The swtpm devices' EKs are enrolled at run time ([`Target::enroll_tpm`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dps_server::config::Config;
use dps_server::metrics::{HistogramSnapshot, HistogramSummary};
use dps_server::server::Server;
use dps_server::tpm::TpmEnrollmentConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpSocket;

use crate::fleet::Fleet;
use crate::scenario::{Loaded, ServerKind, TargetKind};

mod admin_client;
mod replicas;
pub use admin_client::{AdminClient, AdminError};

/// Why the target could not be started, prepared or told about the run's TPMs.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The fleet's server config could not be loaded.
    #[error("the fleet's server config: {0}")]
    Config(#[from] dps_server::config::ConfigError),
    /// The embedded server could not be built from it.
    #[error("the embedded server: {0}")]
    Server(#[from] dps_server::server::ServerError),
    /// The server process could not be started, or did not come up as it should.
    #[error(transparent)]
    Spawn(#[from] replicas::SpawnError),
    /// The spawned server did not come up as it should.
    #[error("the spawned server {0}")]
    Spawned(&'static str),
    /// `target.address` does not resolve.
    #[error("target.address {address}: {why}")]
    Address {
        /// As written.
        address: String,
        /// The resolver's answer.
        why: String,
    },
    /// A file the scenario names cannot be read (`target.server_ca`, `target.admin_token_file`).
    #[error("{key} {path}: {why}")]
    File {
        /// The scenario key.
        key: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The run's store path is not UTF-8 (the server's config takes a string).
    #[error("store path {0} is not UTF-8")]
    StorePath(std::path::PathBuf),
    /// The scenario's limits could not be handed to a spawned server.
    #[error("server limits: {0}")]
    Limits(#[from] serde_json::Error),
    /// The admin API refused or failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A TPM enrollment could not be published on the embedded server.
    #[error("TPM enrollment: {0}")]
    Enrollment(#[from] dps_server::tpm::TpmEnrollmentError),
    /// TPM enrollments were asked of a target without any.
    #[error("a TLS-only target has no TPM enrollments")]
    NoEnrollments,
    /// Local I/O (sockets, files).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What the server says about the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    /// `embedded`, `spawned`, `remote` or `tls-only`.
    pub kind: ServerKind,
    /// The server's histograms (µs): `handshake`, `matching`, `resource.<step>`. For a remote
    /// server they cover its whole life, not only this run.
    pub histograms: BTreeMap<String, HistogramSummary>,
    /// Rejections by reason during the run.
    pub rejections: BTreeMap<String, u64>,
    /// TPM requests (challenge, attest) the server refused with 4.01 during the run: its
    /// `dps_requests_total{resource="other",code="4.01"}`, where only TPM refusals land in a
    /// load-generator run. `None` when it could not be read.
    pub tpm_refusals: Option<u64>,
    /// Device connections the server counted open at the hold executor's peak.
    pub open_connections_at_peak: Option<u64>,
    /// The server's peak resident memory, bytes (remote only: an embedded server shares the
    /// generator's process, whose peak the summary reports).
    pub peak_rss_bytes: Option<u64>,
    /// Device connections the server closed during the run, by reason (its
    /// `dps_connections_closed_total`: `shed`, `busy`, `overflow`, ...); `None` when it could not
    /// be read.
    #[serde(default)]
    pub closes: Option<BTreeMap<String, u64>>,
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
    /// Elsewhere: a running server, or one spawned for the run.
    Remote {
        /// Its admin API.
        admin: AdminClient,
        /// Rejection counters before the run.
        baseline: BTreeMap<String, u64>,
        /// TPM 4.01 answers before the run.
        tpm_baseline: u64,
        /// Connection closes by reason before the run.
        closes_baseline: BTreeMap<String, u64>,
        /// Groups (X.509 and TPM) created for this run, by resource path; deleted at the end.
        groups: Vec<String>,
        /// TPM enrollments created for this run, deleted at the end (not on a spawned server).
        tpm_enrollments: Vec<String>,
        /// The server process, when this run spawned it (killed at the end).
        child: Option<Box<tokio::process::Child>>,
        /// The other replicas this run spawned (`[target] replicas`): their counters are added
        /// to the first one's; killed at the end.
        replicas: Vec<replicas::Replica>,
    },
    /// A TLS server that is not driven by the load generator: no set-up, no counters.
    TlsOnly,
}

/// The address the fleet's own server (embedded or spawned) listens on, a loopback port of it.
pub const OWN_SERVER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

/// A started target: where devices connect and what they trust.
pub struct Started {
    /// The target.
    pub target: Target,
    /// The device port.
    pub addr: SocketAddr,
    /// The server's CA (devices verify the server with it), unless verification is skipped.
    pub server_ca: Option<CertificateDer<'static>>,
}

/// The run's own store file: on disk as a real DPS keeps it (an in-memory store would count every
/// provisioning record against the process's memory), fresh for every run.
fn store_path(store_dir: &std::path::Path) -> Result<String, TargetError> {
    let path = store_dir.join("dps.redb");
    match path.to_str() {
        Some(s) => Ok(s.to_owned()),
        None => Err(TargetError::StorePath(path)),
    }
}

/// Start (embedded or spawned) or prepare (remote) the target of `loaded` for `fleet`, whose
/// server set-up is in `fleet_dir`.
pub async fn start(
    loaded: &Loaded,
    fleet: &Fleet,
    fleet_dir: &std::path::Path,
    store_dir: &std::path::Path,
) -> Result<Started, TargetError> {
    let scenario = &loaded.scenario;
    let own_ca = (!scenario.device.skip_server_verification).then(|| fleet.server_ca.clone());
    match &loaded.target {
        TargetKind::Embedded => {
            let (target, addr) = embedded(loaded, fleet_dir, store_dir).await?;
            Ok(Started {
                target,
                addr,
                server_ca: own_ca,
            })
        }
        TargetKind::Spawned => {
            let (target, addr) = spawned(loaded, fleet_dir, store_dir).await?;
            Ok(Started {
                target,
                addr,
                server_ca: own_ca,
            })
        }
        TargetKind::TlsOnly { address, server_ca } => Ok(Started {
            target: Target::TlsOnly,
            addr: resolve(address).await?,
            server_ca: read_ca(server_ca.as_deref())?,
        }),
        TargetKind::Remote {
            address,
            admin,
            admin_token_file,
            server_ca,
        } => {
            let addr = resolve(address).await?;
            let server_ca = read_ca(server_ca.as_deref())?;
            let token = match admin_token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| TargetError::File {
                            key: "target.admin_token_file",
                            path: path.clone(),
                            why: e.to_string(),
                        })?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            };
            let target = remote(AdminClient::new(admin, token)?, fleet).await?;
            Ok(Started {
                target,
                addr,
                server_ca,
            })
        }
    }
}

/// The fleet's server in this process, on a loopback port.
async fn embedded(
    loaded: &Loaded,
    fleet_dir: &std::path::Path,
    store_dir: &std::path::Path,
) -> Result<(Target, SocketAddr), TargetError> {
    let mut config = Config::load(&fleet_dir.join("config.toml"))?;
    config.file.store.path = store_path(store_dir)?;
    loaded.scenario.server_limits.apply(&mut config.file.limits);
    let server = Arc::new(Server::from_config(&config)?);
    // A deep accept backlog: bursts of thousands of connects must queue, not be dropped.
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((OWN_SERVER_IP, 0)))?;
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.clone().run(listener, async {
        let _ = stopped.await;
    }));
    Ok((Target::Embedded { server, task, stop }, addr))
}

/// The fleet's server in a child process, read over its admin API.
async fn spawned(
    loaded: &Loaded,
    fleet_dir: &std::path::Path,
    store_dir: &std::path::Path,
) -> Result<(Target, SocketAddr), TargetError> {
    let limits = serde_json::to_string(&loaded.scenario.server_limits)?;
    let spec = &loaded.scenario.target;
    let store = store_path(store_dir)?;
    let token = std::fs::read_to_string(fleet_dir.join("admin-token"))?;
    let set = replicas::spawn(
        OWN_SERVER_IP,
        spec,
        fleet_dir,
        &store,
        &limits,
        token.trim(),
    )
    .await?;
    let (child, bound) = (set.first, set.bound);
    let admin_addr = bound
        .admin
        .ok_or(TargetError::Spawned("has no admin API"))?;
    let admin = AdminClient::new(&format!("http://{admin_addr}"), Some(token.trim().into()))?;
    let baseline = admin.rejections().await?;
    let tpm_baseline = admin.requests("other", TPM_REFUSED).await?;
    let closes_baseline = admin.closes().await?;
    let target = Target::Remote {
        admin,
        baseline,
        tpm_baseline,
        closes_baseline,
        groups: Vec::new(),
        tpm_enrollments: Vec::new(),
        child: Some(Box::new(child)),
        replicas: set.others,
    };
    Ok((target, bound.devices))
}

/// A running DPS: the fleet's hub, groups and TPM enrollments created over its admin API.
async fn remote(admin: AdminClient, fleet: &Fleet) -> Result<Target, TargetError> {
    admin
        .upsert("/api/v1/hubs", &fleet.hub.id, &fleet.hub)
        .await?;
    let mut groups = Vec::new();
    let collections = [
        ("/api/v1/enrollment-groups", &fleet.server_groups),
        ("/api/v1/tpm-enrollment-groups", &fleet.server_tpm_groups),
    ];
    for (collection, fleet_groups) in collections {
        for group in fleet_groups {
            admin.upsert(collection, &group.id, group).await?;
            groups.push(format!("{collection}/{}", group.id));
        }
    }
    let mut target = Target::Remote {
        baseline: admin.rejections().await?,
        tpm_baseline: admin.requests("other", TPM_REFUSED).await?,
        closes_baseline: admin.closes().await?,
        admin,
        groups,
        tpm_enrollments: Vec::new(),
        child: None,
        replicas: Vec::new(),
    };
    target.enroll_tpm(&fleet.server_tpm_enrollments).await?;
    Ok(target)
}

/// The first address `address` (`host:port`) resolves to.
pub async fn resolve(address: &str) -> Result<SocketAddr, TargetError> {
    let fail = |why: String| TargetError::Address {
        address: address.to_owned(),
        why,
    };
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))
}

/// The server CA at `path`, if devices verify the server.
fn read_ca(path: Option<&str>) -> Result<Option<CertificateDer<'static>>, TargetError> {
    path.map(|path| {
        CertificateDer::from_pem_file(path).map_err(|e| TargetError::File {
            key: "target.server_ca",
            path: path.to_owned(),
            why: e.to_string(),
        })
    })
    .transpose()
}

/// The code of a refused TPM request, as the server's counters label it.
const TPM_REFUSED: &str = "4.01";

impl Target {
    /// Enroll these TPMs individually: into the embedded server's published enrollments, or over
    /// the admin API (a remote target loses them after the run).
    pub async fn enroll_tpm(
        &mut self,
        enrollments: &[TpmEnrollmentConfig],
    ) -> Result<(), TargetError> {
        match self {
            Target::Embedded { server, .. } => {
                let published = server.attestor().enrollments();
                for e in enrollments {
                    published.upsert(e.resolve(std::path::Path::new(""))?)?;
                }
            }
            Target::Remote {
                admin,
                tpm_enrollments,
                child,
                ..
            } => {
                for e in enrollments {
                    admin.replace("/api/v1/tpm-enrollments", &e.id, e).await?;
                    if child.is_none() {
                        tpm_enrollments.push(e.id.clone());
                    }
                }
            }
            Target::TlsOnly if enrollments.is_empty() => {}
            Target::TlsOnly => return Err(TargetError::NoEnrollments),
        }
        Ok(())
    }

    /// The process id of a server this run spawned (its CPU is read from `/proc`).
    pub fn server_pid(&self) -> Option<u32> {
        match self {
            Target::Remote {
                child: Some(child), ..
            } => child.id(),
            _ => None,
        }
    }

    /// Device connections the server has open now (for the hold executor's peak).
    pub async fn open_connections(&self) -> Option<u64> {
        match self {
            Target::Embedded { server, .. } => Some(server.metrics().open_connections()),
            Target::Remote { admin, .. } => admin.gauge("dps_open_connections").await.ok(),
            Target::TlsOnly => None,
        }
    }

    /// Stop the embedded server, or clean up the remote one; either way, read its view.
    pub async fn finish(self) -> ServerView {
        match self {
            Target::TlsOnly => ServerView {
                kind: ServerKind::TlsOnly,
                histograms: BTreeMap::new(),
                rejections: BTreeMap::new(),
                tpm_refusals: None,
                open_connections_at_peak: None,
                peak_rss_bytes: None,
                closes: None,
            },
            Target::Embedded { server, task, stop } => {
                let _ = stop.send(());
                let _ = task.await;
                embedded_view(&server)
            }
            Target::Remote {
                admin,
                baseline,
                tpm_baseline,
                closes_baseline,
                groups,
                tpm_enrollments,
                child,
                replicas,
            } => {
                let kind = if child.is_some() {
                    ServerKind::Spawned
                } else {
                    ServerKind::Remote
                };
                let before = Baselines {
                    rejections: &baseline,
                    tpm_refusals: tpm_baseline,
                    closes: &closes_baseline,
                };
                let view = remote_view(&admin, kind, before, &replicas).await;
                clean_up_remote(&admin, (groups, tpm_enrollments), child, replicas).await;
                view
            }
        }
    }
}

/// The embedded server's view, read once its accept loop has stopped.
fn embedded_view(server: &Server) -> ServerView {
    let stats = &server.verifier().stats;
    ServerView {
        kind: ServerKind::Embedded,
        histograms: server.metrics().histograms().histograms,
        rejections: dps_server::enrollment::RejectReason::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), stats.rejected(*r)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        tpm_refusals: Some(
            server
                .metrics()
                .requests(None, dps_server::proto::coap::Code::UNAUTHORIZED),
        ),
        open_connections_at_peak: None,
        // One process: the summary's own peak covers both.
        peak_rss_bytes: None,
        closes: Some(
            dps_server::metrics::CloseReason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), server.metrics().closes().get(*r)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        ),
    }
}

/// A remote server's counters before the run, subtracted from its counters after it.
struct Baselines<'a> {
    rejections: &'a BTreeMap<String, u64>,
    tpm_refusals: u64,
    closes: &'a BTreeMap<String, u64>,
}

/// What a remote server (and the replicas this run spawned) counted during the run.
async fn remote_view(
    admin: &AdminClient,
    kind: ServerKind,
    before: Baselines<'_>,
    replicas: &[replicas::Replica],
) -> ServerView {
    let others = replicas::counters(replicas).await;
    let closes = admin
        .closes()
        .await
        .ok()
        .map(|now| since(now, before.closes));
    let closes = closes.map(|c| replicas::add(c, &others.closes));
    let tpm_refusals = admin
        .requests("other", TPM_REFUSED)
        .await
        .ok()
        .map(|n| n.saturating_sub(before.tpm_refusals) + others.tpm_refusals);
    let histograms = admin
        .get_json::<HistogramSnapshot>("/api/v1/histograms")
        .await
        .map(|s| s.histograms)
        .unwrap_or_default();
    let rejections = since(
        admin.rejections().await.unwrap_or_default(),
        before.rejections,
    );
    let rejections = replicas::add(rejections, &others.rejections);
    let peak_rss_bytes = admin
        .gauge("dps_process_peak_resident_memory_bytes")
        .await
        .ok();
    ServerView {
        kind,
        histograms,
        rejections,
        tpm_refusals,
        open_connections_at_peak: None,
        peak_rss_bytes,
        closes,
    }
}

/// The counts that grew since `before`, by how much (counts that did not grow are left out).
fn since(now: BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.into_iter()
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, v.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The run's groups and TPM enrollments deleted from a remote server, the server (if spawned)
/// and its replicas killed.
async fn clean_up_remote(
    admin: &AdminClient,
    (groups, tpm_enrollments): (Vec<String>, Vec<String>),
    child: Option<Box<tokio::process::Child>>,
    replicas: Vec<replicas::Replica>,
) {
    for path in groups {
        let _ = admin.delete(&path).await;
    }
    for id in tpm_enrollments {
        let _ = admin.delete(&format!("/api/v1/tpm-enrollments/{id}")).await;
    }
    if let Some(mut child) = child {
        // Its store is in memory: nothing to flush.
        let _ = child.kill().await;
    }
    replicas::stop(replicas).await;
}
