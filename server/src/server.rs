//! The device-port accept loop: `Server::run(listener, shutdown)` so tests hand in a listener on
//! `127.0.0.1:0` and a shutdown future. One semaphore permit per connection, explicit handshake
//! and inactivity timeouts, graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use crate::config::{Config, LimitsSection};
use crate::connection::{self, ConnectionLimits, DeviceSession, RequestRate};
use crate::enrollment::{Arena, GroupError, Verdict};
use crate::provision::{Hub, IdentityCa, ProvisionError, Provisioner};
use crate::tls::{self, AttestationVerifier, TlsConfigError};

/// How long shutdown waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not be set up from its config.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `[server]` is missing.
    #[error("the config has no [server] section (see `dps-server init`)")]
    NoServerSection,
    /// A file named by the config could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An enrollment group is invalid.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A hub is invalid.
    #[error("hub {0}")]
    Hub(String),
    /// The identity CA is unusable.
    #[error("identity CA: {0}")]
    Identity(#[from] ProvisionError),
    /// rustls refused the configuration.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// A configured DPS, ready to serve listeners.
pub struct Server {
    arena: Arc<Arena>,
    verifier: Arc<AttestationVerifier>,
    acceptor: TlsAcceptor,
    provisioner: Arc<Provisioner>,
    limits: LimitsSection,
    rate: RequestRate,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .finish()
    }
}

fn read(config: &Config, relative: &str) -> Result<Vec<u8>, ServerError> {
    let path = config.resolve(relative);
    std::fs::read(&path).map_err(|e| ServerError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Server {
    /// Build the server a config describes: groups into the arena, TLS identity, identity CA, hubs.
    pub fn from_config(config: &Config) -> Result<Self, ServerError> {
        let section = config
            .file
            .server
            .as_ref()
            .ok_or(ServerError::NoServerSection)?;
        let bad = |file: &str, reason: String| ServerError::File {
            path: config.resolve(file).display().to_string(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(&read(config, &section.certificate)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&section.certificate, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad(&section.certificate, "no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(config, &section.key)?)
            .map_err(|e| bad(&section.key, e.to_string()))?;
        let text = |file: &str| {
            read(config, file)
                .and_then(|b| String::from_utf8(b).map_err(|_| bad(file, "not UTF-8 PEM".into())))
        };
        let identity_ca = IdentityCa::from_pem(
            &text(&section.identity_ca_certificate)?,
            &text(&section.identity_ca_key)?,
        )?;
        let hubs = config
            .file
            .hub
            .iter()
            .map(|h| {
                let id = Uuid::parse_str(&h.id)
                    .map_err(|_| ServerError::Hub(format!("{:?}: id is not a UUID", h.id)))?;
                Ok(Hub {
                    id,
                    name: h.name.clone().unwrap_or_default(),
                    gateways: h.gateways.clone(),
                })
            })
            .collect::<Result<Vec<_>, ServerError>>()?;
        for g in &config.groups {
            if let Some(missing) = g
                .hub_ids
                .iter()
                .find(|id| !hubs.iter().any(|h| h.id == **id))
            {
                return Err(ServerError::Hub(format!(
                    "{missing} named by enrollment group {:?} is not configured",
                    g.name
                )));
            }
        }
        let arena = Arc::new(Arena::with_groups(config.groups.clone())?);
        let validity = Duration::from_secs(u64::from(section.identity_validity_days) * 86_400);
        let provisioner = Arc::new(Provisioner::new(identity_ca, hubs, validity));
        Self::new(arena, chain, key, provisioner, config.file.limits)
    }

    /// A server over an existing arena and provisioner.
    pub fn new(
        arena: Arc<Arena>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provisioner: Arc<Provisioner>,
        limits: LimitsSection,
    ) -> Result<Self, ServerError> {
        let verifier = Arc::new(AttestationVerifier::new(arena.clone()));
        let config = tls::server_config(verifier.clone(), chain, key)?;
        Ok(Self {
            arena,
            verifier,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            provisioner,
            rate: RequestRate::new(limits.max_requests_per_second),
            limits,
        })
    }

    /// The enrollment groups being served (admin updates go here).
    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Attestation outcome counters.
    pub fn verifier(&self) -> &Arc<AttestationVerifier> {
        &self.verifier
    }

    /// Accept devices on `listener` until `shutdown` resolves, then stop accepting and wait (a
    /// bounded time) for open connections to finish.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let max = self.limits.max_connections.max(1);
        let permits = Arc::new(Semaphore::new(max as usize));
        // Connections beyond the limit are told to come back (5.03 + Max-Age) rather than queued;
        // beyond this second, smaller budget they are closed at once.
        let overflow = Arc::new(Semaphore::new((max as usize / 10).clamp(1, 1024)));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                let Ok(permit) = overflow.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit and overflow reached; closing");
                    continue;
                };
                let server = self.clone();
                tokio::spawn(async move {
                    server.refuse_busy(stream).await;
                    drop(permit);
                });
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                server.serve_connection(stream, peer).await;
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(max))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: connections still open after the drain timeout");
        }
    }

    async fn refuse_busy(&self, stream: tokio::net::TcpStream) {
        let handshake = Duration::from_millis(self.limits.handshake_timeout_ms);
        if let Ok(Ok(tls)) = tokio::time::timeout(handshake, self.acceptor.accept(stream)).await {
            connection::refuse_busy(
                tls,
                self.limits.busy_retry_after_s,
                self.limits.max_message_size as usize,
            )
            .await;
        }
    }

    async fn serve_connection(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let handshake = Duration::from_millis(self.limits.handshake_timeout_ms);
        let tls = match tokio::time::timeout(handshake, self.acceptor.accept(stream)).await {
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Ok(Ok(tls)) => tls,
        };
        let device = match tls.get_ref().1.peer_certificates() {
            None => None,
            Some(certs) => match self.verifier.verdict_for(certs) {
                Verdict::Accepted(a) => match self.arena.load().group(&a.group) {
                    Some(group) => Some(DeviceSession {
                        group: group.clone(),
                        common_name: a.common_name,
                    }),
                    None => return, // the group was deleted during the handshake
                },
                Verdict::Rejected(_) => return,
            },
        };
        let limits = ConnectionLimits {
            max_message_size: self.limits.max_message_size as usize,
            inactivity_timeout: Duration::from_millis(self.limits.inactivity_timeout_ms),
        };
        let ending = connection::serve(tls, device, &self.provisioner, limits, &self.rate).await;
        tracing::debug!(%peer, ?ending, "connection ended");
    }
}
