//! The server under load: embedded (started in-process on loopback with the fleet's set-up) or
//! remote (a running DPS whose admin API receives the fleet's hub and groups before the run and
//! loses what the run created after it; a segment of several keeps them: see `target/remote.rs`). Either way the run ends with the server's own view: its handshake and
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
mod remote;
mod replicas;
pub use admin_client::{AdminClient, AdminError, Ensured};
pub use remote::{CounterSet, ReplicaFigures, ServerCounters};

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
    /// A remote server's absolute counters before and after the run (`merge` counts the runs of
    /// N segments sharing it once); `None` for the fleet's own servers.
    #[serde(default)]
    pub counters: Option<ServerCounters>,
    /// Each replica's own figures when the target has several (empty otherwise).
    #[serde(default)]
    pub replicas: Vec<ReplicaFigures>,
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
        /// A remote target's other replicas' admin APIs (`[target] replica_admins`): their
        /// counters are added to `admin`'s.
        others: Vec<AdminClient>,
        /// The counters of `admin` and `others` before the run.
        before: CounterSet,
        /// What this run set up on a remote server and removes at the end (not on a spawned
        /// one, which is killed).
        setup: Box<remote::SetUp>,
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
            replica_admins,
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
            let others = replica_admins
                .iter()
                .map(|url| AdminClient::new(url, token.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            // Several generators share this server: none may remove the set-up under the others.
            let keep = loaded.segment.is_some_and(|s| s.count > 1);
            let admin = AdminClient::new(admin, token)?;
            let target = remote((admin, others), fleet, keep).await?;
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
    let before = remote::read(&admin).await?;
    let target = Target::Remote {
        admin,
        others: Vec::new(),
        before,
        setup: Box::default(),
        child: Some(Box::new(child)),
        replicas: set.others,
    };
    Ok((target, bound.devices))
}

/// A running DPS: the fleet's hub, groups and TPM enrollments set up over its admin API (left
/// in place when `keep`: several generators share it), its counters read from it and `others`.
async fn remote(
    (admin, others): (AdminClient, Vec<AdminClient>),
    fleet: &Fleet,
    keep: bool,
) -> Result<Target, TargetError> {
    let setup = remote::set_up(&admin, fleet, keep).await?;
    let mut all = vec![&admin];
    all.extend(others.iter());
    let before = remote::read_all(&all)
        .await
        .ok_or(TargetError::Spawned("counters could not be read"))?;
    let mut target = Target::Remote {
        before,
        admin,
        others,
        setup: Box::new(setup),
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
                setup,
                child,
                ..
            } => {
                for e in enrollments {
                    let collection = "/api/v1/tpm-enrollments";
                    let ensured = if setup.keep {
                        admin.create_or_same(collection, &e.id, e).await?
                    } else {
                        admin.replace(collection, &e.id, e).await?
                    };
                    if child.is_none() {
                        setup.note(ensured, format!("{collection}/{}", e.id), Some(&e.id));
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
            Target::Remote {
                admin,
                others,
                replicas,
                ..
            } => {
                let mut open = admin.gauge("dps_open_connections").await.ok()?;
                let more = others.iter().chain(replicas.iter().map(|r| r.admin()));
                for a in more {
                    open += a.gauge("dps_open_connections").await.ok()?;
                }
                Some(open)
            }
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
                counters: None,
                replicas: Vec::new(),
            },
            Target::Embedded { server, task, stop } => {
                let _ = stop.send(());
                let _ = task.await;
                embedded_view(&server)
            }
            Target::Remote {
                admin,
                others,
                before,
                setup,
                child,
                replicas,
            } => {
                let kind = if child.is_some() {
                    ServerKind::Spawned
                } else {
                    ServerKind::Remote
                };
                let view = remote_view((&admin, &others), kind, &before, &replicas).await;
                remote::clean_up(&admin, *setup).await;
                if let Some(mut child) = child {
                    let _ = child.kill().await;
                }
                replicas::stop(replicas).await;
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
        counters: None,
        replicas: Vec::new(),
    }
}

/// What a remote server (with `others`, its other replicas) or the spawned replicas counted
/// during the run.
async fn remote_view(
    (admin, others): (&AdminClient, &[AdminClient]),
    kind: ServerKind,
    before: &CounterSet,
    replicas: &[replicas::Replica],
) -> ServerView {
    let mut all = vec![admin];
    all.extend(others.iter());
    let after = remote::read_all(&all).await;
    let mut every = all.clone();
    every.extend(replicas.iter().map(|r| r.admin()));
    // The spawned replicas besides the first are fresh processes: all they counted is the run's.
    let fresh = replicas::counters(replicas).await;
    let grown = after.as_ref().map(|a| a.since(before).plus(&fresh));
    let histograms = admin
        .get_json::<HistogramSnapshot>("/api/v1/histograms")
        .await
        .map(|s| s.histograms)
        .unwrap_or_default();
    let peak_rss_bytes = admin
        .gauge("dps_process_peak_resident_memory_bytes")
        .await
        .ok();
    let counters = after
        .filter(|_| kind == ServerKind::Remote)
        .map(|after| ServerCounters {
            server: remote::server_key(&all),
            before: before.clone(),
            after,
        });
    ServerView {
        kind,
        histograms,
        rejections: grown
            .as_ref()
            .map(|g| g.rejections.clone())
            .unwrap_or_default(),
        tpm_refusals: grown.as_ref().map(|g| g.tpm_refusals),
        open_connections_at_peak: None,
        peak_rss_bytes,
        closes: grown.map(|g| g.closes),
        counters,
        replicas: remote::replica_figures(&every).await,
    }
}
