//! The device-port accept loop: `Server::run(listener, shutdown)` so tests hand in a listener on
//! `127.0.0.1:0` and a shutdown future. One semaphore permit per connection, explicit handshake
//! and inactivity timeouts, graceful drain on shutdown (which ends by flushing the provisioning
//! records).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use crate::config::{Config, LimitsSection, StoreLocation};
use crate::connection::{self, ConnectionLimits, DeviceSession, Profile, RequestRate};
use crate::enrollment::{Arena, CertId};
use crate::metrics::{CloseReason, Metrics};
use crate::overload::{Class, CpuGate, GateSettings, GatedIo, ShedReason, SilentPool};
use crate::proto::coap::Code;
use crate::provision::{Identities, IdentityCa, Provisioner};
use crate::store::{RecordWriter, Store};
use crate::tls::{self, AttestationVerifier};
use crate::tpm::{Attestor, TpmEnrollment, TpmEnrollments, DEFAULT_CHALLENGE_TTL};

mod error;
mod served;

pub use error::ServerError;
use served::config_dir;
pub(crate) use served::{served, Served};

/// How long shutdown waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A configured DPS, ready to serve listeners.
pub struct Server {
    arena: Arc<Arena>,
    verifier: Arc<AttestationVerifier>,
    acceptor: TlsAcceptor,
    provisioner: Arc<Provisioner>,
    attestor: Attestor,
    limits: LimitsSection,
    rate: RequestRate,
    failures: crate::shed::FailureBudget,
    pending: crate::shed::PendingHandshakes,
    gate: Option<CpuGate>,
    silent: SilentPool,
    store: Arc<Store>,
    records: RecordWriter,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("store", &self.store)
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
        // Loaded configs were checked; a config changed since (tests, scenario overrides) is too.
        config.file.validate()?;
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
        let location = config.store_location();
        let shown = location.to_string();
        let store_err = |reason| ServerError::Store {
            location: shown.clone(),
            reason,
        };
        if let StoreLocation::File(path) = &location {
            if let Some(dir) = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
            {
                return Err(ServerError::StoreDirectory {
                    path: path.display().to_string(),
                    dir: dir.display().to_string(),
                });
            }
        }
        let store = Arc::new(Store::open_location(&location).map_err(store_err)?);
        let Served { groups, hubs, tpm } = served(config, &store)?;
        let arena = Arc::new(Arena::with_groups(groups)?);
        let identities = Arc::new(Identities::from_entries(
            store.identities().map_err(store_err)?,
        ));
        let validity = Duration::from_secs(u64::from(section.identity_validity_days) * 86_400);
        let provisioner = Provisioner::with_identities(identity_ca, hubs, validity, identities)
            .with_config_dir(config_dir(config));
        if let Some(issuer) = config.file.admin.as_ref().and_then(|a| a.issuer.clone()) {
            provisioner.tokens().set_issuer(issuer);
        }
        let provisioner = Arc::new(provisioner);
        let ttl = Duration::from_millis(config.file.tpm.challenge_ttl_ms);
        Self::new(arena, chain, key, provisioner, config.file.limits, store)?.with_tpm(tpm, ttl)
    }

    /// Serve the TPM nonce challenge with these individual enrollments and challenge lifetime
    /// (by default: no individual enrollment, TPM enrollment groups only, 30 s).
    pub fn with_tpm(
        mut self,
        enrollments: Vec<TpmEnrollment>,
        challenge_ttl: Duration,
    ) -> Result<Self, ServerError> {
        let published = self.attestor.enrollments().clone();
        published.replace_all(enrollments)?;
        self.attestor = Attestor::new(self.arena.clone(), published, challenge_ttl);
        Ok(self)
    }

    /// The TPM attestor: individual TPM enrollments (admin updates go here), challenge lifetime.
    pub fn attestor(&self) -> &Attestor {
        &self.attestor
    }

    /// A server over an existing arena, provisioner and store. Identity certificates signed by
    /// the provisioner's identity CA are recognised through the provisioner's issued identities,
    /// which the record writer persists into `store`.
    pub fn new(
        arena: Arc<Arena>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provisioner: Arc<Provisioner>,
        limits: LimitsSection,
        store: Arc<Store>,
    ) -> Result<Self, ServerError> {
        limits.validate()?;
        let metrics =
            Arc::new(Metrics::new().with_token_metrics(provisioner.tokens().metrics().clone()));
        let tpm = Arc::new(TpmEnrollments::new());
        let verifier = Arc::new(
            AttestationVerifier::new(arena.clone())
                .with_metrics(metrics.clone())
                .with_tpm_enrollments(tpm.clone())
                .with_identities(
                    provisioner.identity_ca().chain(),
                    provisioner.identities().clone(),
                )?,
        );
        let config = tls::server_config_counting(
            verifier.clone(),
            chain,
            key,
            Some(metrics.overload().clone()),
        )?;
        let slots = match limits.cpu_slots {
            Some(n) => n as usize,
            None => GateSettings::slots_for(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        };
        let gate = (slots > 0).then(|| {
            CpuGate::new(
                GateSettings {
                    slots,
                    timeout: Duration::from_millis(limits.queue_timeout_ms),
                    target: Duration::from_millis(limits.queue_target_ms),
                    interval: Duration::from_millis(limits.queue_interval_ms),
                },
                metrics.overload().clone(),
            )
        });
        let records = RecordWriter::start(store.clone(), provisioner.identities().clone())
            .map_err(|reason| ServerError::Store {
                location: store.location().to_owned(),
                reason,
            })?;
        let attestor = Attestor::new(arena.clone(), tpm, DEFAULT_CHALLENGE_TTL);
        Ok(Self {
            attestor,
            arena,
            verifier,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            provisioner,
            rate: RequestRate::new(limits.max_requests_per_second),
            failures: crate::shed::FailureBudget::new(
                limits.failed_handshakes_per_ip_per_s,
                limits.failed_handshakes_burst,
            ),
            pending: crate::shed::PendingHandshakes::new(limits.pending_handshakes_per_ip),
            gate,
            silent: SilentPool::new(limits.max_silent_connections as usize),
            limits,
            store,
            records,
            metrics,
        })
    }

    /// The admin API's state for this server: config-file groups and hubs are read-only there.
    pub fn admin_state(&self, config: &Config, token: String) -> crate::admin::AdminState {
        crate::admin::AdminState {
            arena: self.arena.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            token,
            static_group_ids: config.groups.iter().map(|g| g.id).collect(),
            static_hub_ids: config
                .file
                .hub
                .iter()
                .filter_map(|h| Uuid::parse_str(&h.id).ok())
                .collect(),
            provisioner: Some(self.provisioner.clone()),
            tpm: Some(self.attestor.enrollments().clone()),
            static_tpm_ids: config.tpm_enrollments.iter().map(|e| e.def.id).collect(),
            records: Some(self.records.clone()),
        }
    }

    /// Server-side measurements (Prometheus text, HdrHistograms for the load generator).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The enrollment groups being served (admin updates go here).
    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// The store: admin-managed groups and hubs, provisioning records.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The provisioner: identity CA, hubs (admin hub updates go here), issued identities.
    pub fn provisioner(&self) -> &Arc<Provisioner> {
        &self.provisioner
    }

    /// The background writer of provisioning records (`flush` to wait for them).
    pub fn records(&self) -> &RecordWriter {
        &self.records
    }

    /// Attestation outcome counters.
    pub fn verifier(&self) -> &Arc<AttestationVerifier> {
        &self.verifier
    }

    /// Accept devices on `listener` until `shutdown` resolves, then stop accepting, wait (a
    /// bounded time) for open connections to finish, and flush the provisioning records.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let max = self.limits.max_connections.max(1);
        let permits = Arc::new(Semaphore::new(max as usize));
        // Connections beyond the limit are told to come back (5.03 + Max-Age) rather than queued;
        // beyond this second, smaller budget they are closed at once.
        let overflow = Arc::new(Semaphore::new((max as usize / 10).clamp(1, 1024)));
        let acceptor = match crate::accept::Acceptor::new(listener) {
            Ok(acceptor) => acceptor,
            Err(e) => {
                tracing::error!(error = %e, "cannot poll the device listener");
                return;
            }
        };
        // Tells connections still silent (no place taken, so the drain does not wait for them)
        // that the server is going.
        let (going, gone) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (pending, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = acceptor.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if !self.failures.admits(peer.ip()) {
                // Its failed handshakes spent its budget: no TLS work for it until it refills.
                self.shed(ShedReason::FailureBudget);
                self.metrics.record_close(CloseReason::Shed);
                pending.reset();
                continue;
            }
            let stream = match pending.admit() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register an accepted connection");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let (permits, overflow, gone) = (permits.clone(), overflow.clone(), gone.clone());
            tokio::spawn(async move {
                let (reason, permit) = server.greet(stream, peer, permits, overflow, gone).await;
                server.closed(peer, reason);
                // The server goes before the permit, so a finished drain holds no clone.
                drop(server);
                drop(permit);
            });
        }
        let _ = going.send(true);
        drop(acceptor);
        if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(max))
            .await
            .is_err()
        {
            let open = u64::from(max).saturating_sub(permits.available_permits() as u64);
            tracing::warn!(
                open,
                "shutdown: connections still open after the drain timeout"
            );
            self.metrics.closes().add(CloseReason::Shutdown, open);
        }
        if let Err(e) = self.records.flush().await {
            tracing::error!(error = %e, "shutdown: provisioning records not flushed");
        }
    }

    /// A new connection until its first byte (silent: no connection place, evictable), then with
    /// a connection place (or, beyond `max_connections`, told to come back), served. Returns the
    /// place it held, for the caller to give back last.
    async fn greet(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        permits: Arc<Semaphore>,
        overflow: Arc<Semaphore>,
        mut gone: tokio::sync::watch::Receiver<bool>,
    ) -> (CloseReason, Option<tokio::sync::OwnedSemaphorePermit>) {
        let (mut place, _) = self.silent.enter();
        let handshake = Duration::from_millis(self.limits.handshake_timeout_ms);
        tokio::select! {
            // A connection whose first bytes are there has spoken, even if its eviction came
            // too: in a storm its task may run only after a newer connection took its place.
            biased;
            spoke = stream.readable() => {
                if spoke.is_err() {
                    return (CloseReason::HandshakeFailed, None);
                }
            }
            _ = &mut place.evicted => {
                if !has_spoken(&stream) {
                    // A newer connection needed its place; it had said nothing.
                    self.shed(ShedReason::SilentEvicted);
                    close_at_once(stream);
                    return (CloseReason::Shed, None);
                }
            }
            _ = tokio::time::sleep(handshake) => {
                self.metrics.record_handshake_failure();
                return (CloseReason::HandshakeTimeout, None);
            }
            _ = gone.wait_for(|going| *going) => return (CloseReason::Shutdown, None),
        }
        drop(place);
        match permits.try_acquire_owned() {
            Ok(permit) => {
                let reason = self.serve_connection(stream, peer).await;
                (reason, Some(permit))
            }
            Err(_) => match overflow.try_acquire_owned() {
                Ok(permit) => {
                    let reason = self.refuse_busy(stream).await;
                    (reason, Some(permit))
                }
                Err(_) => {
                    tracing::warn!(%peer, "connection limit and overflow reached; closing");
                    (CloseReason::Overflow, None)
                }
            },
        }
    }

    /// A connection shed before any public-key work, for `reason`.
    fn shed(&self, reason: ShedReason) {
        self.metrics.record_shed();
        self.metrics.overload().shed(reason);
    }

    /// The stream as the handshake reads it: each flight through the CPU gate.
    fn gated(&self, stream: tokio::net::TcpStream) -> GatedIo {
        GatedIo::new(stream, self.gate.clone(), Class::Fresh)
    }

    /// Count and log the end of a device connection.
    fn closed(&self, peer: std::net::SocketAddr, reason: CloseReason) {
        self.metrics.record_close(reason);
        match reason {
            // Closes a device cannot tell from a normal end: said where operators look.
            CloseReason::GroupRemoved | CloseReason::Shutdown => {
                tracing::info!(%peer, %reason, "connection closed");
            }
            _ => tracing::debug!(%peer, %reason, "connection closed"),
        }
    }

    /// A TLS handshake's outcome as the reason of a connection that ends with it.
    fn handshake_failed(&self, peer: std::net::SocketAddr, e: &std::io::Error) -> CloseReason {
        if crate::overload::is_shed(e) {
            // Waited too long for a CPU place: the server's doing, not the device's.
            self.metrics.record_shed();
            return CloseReason::Shed;
        }
        self.failures.failed(peer.ip());
        // Attestation refusals are counted by reason in the verifier; count the rest.
        let refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
        tracing::debug!(%peer, error = %e, "TLS handshake failed");
        if refused {
            CloseReason::Rejected
        } else {
            self.metrics.record_handshake_failure();
            CloseReason::HandshakeFailed
        }
    }

    async fn refuse_busy(&self, stream: tokio::net::TcpStream) -> CloseReason {
        let handshake = Duration::from_millis(self.limits.handshake_timeout_ms);
        let peer = stream.peer_addr();
        let gated = self.gated(stream);
        match tokio::time::timeout(handshake, self.acceptor.accept(gated)).await {
            Err(_) => CloseReason::HandshakeTimeout,
            Ok(Err(e)) => match peer {
                Ok(peer) => self.handshake_failed(peer, &e),
                Err(_) => CloseReason::HandshakeFailed,
            },
            Ok(Ok(mut tls)) => {
                tls.get_mut().0.open();
                connection::refuse_busy(
                    tls,
                    self.limits.busy_retry_after_s,
                    self.limits.max_message_size as usize,
                )
                .await;
                CloseReason::Busy
            }
        }
    }

    /// The session of an attested connection: its group as the handshake selected it; if that
    /// group is gone by now (deleted, or deleted and re-created meanwhile), the chain is judged
    /// again against the groups of now. `Err` says why there is none (reason and diagnostic).
    fn session_for(
        &self,
        certs: &[rustls_pki_types::CertificateDer<'_>],
    ) -> Result<DeviceSession, (CloseReason, String)> {
        let admission = self.verifier.admission_for(certs).map_err(|reason| {
            (
                CloseReason::Rejected,
                format!("device chain rejected: {reason}"),
            )
        })?;
        let profile_of = |id: &Uuid| match self.arena.load().group(id).cloned() {
            Some(group) => Some(Profile::Group(group)),
            // A TPM's identity certificate may belong to an individual enrollment.
            None => self
                .attestor
                .enrollments()
                .by_id(id)
                .map(Profile::Individual),
        };
        let (admission, profile) = match profile_of(&admission.accepted.group) {
            Some(profile) => (admission, profile),
            None => {
                let removed = admission.accepted.group;
                let gone = || {
                    (
                        CloseReason::GroupRemoved,
                        format!("enrollment group {removed} was removed during the handshake"),
                    )
                };
                let again = self
                    .verifier
                    .judge(certs, rustls_pki_types::UnixTime::now())
                    .map_err(|_| gone())?;
                let profile = profile_of(&again.accepted.group).ok_or_else(gone)?;
                (again, profile)
            }
        };
        let leaf = match (admission.identity, certs.first()) {
            (Some(identity), _) => identity.record,
            (None, Some(leaf)) => CertId::of(leaf),
            (None, None) => return Err((CloseReason::Rejected, "no client certificate".into())),
        };
        Ok(DeviceSession {
            profile,
            common_name: admission.accepted.common_name,
            leaf,
            device_id: admission.identity.map(|i| i.device_id),
        })
    }

    async fn serve_connection(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> CloseReason {
        let Some(place) = self.pending.enter(peer.ip()) else {
            // Its address already has as many handshakes in progress as it may.
            self.shed(ShedReason::PendingPerAddress);
            close_at_once(stream);
            return CloseReason::Shed;
        };
        let _open = self.metrics.connection_guard();
        let handshake = Duration::from_millis(self.limits.handshake_timeout_ms);
        let started = std::time::Instant::now();
        // Boxed: the handshake's state is large and needed once; the connection task should not
        // carry room for it while it serves (or idles) afterwards.
        let accept = Box::pin(self.acceptor.accept(self.gated(stream)));
        let tls = match tokio::time::timeout(handshake, accept).await {
            Err(_) => {
                self.metrics.record_handshake_failure();
                self.failures.failed(peer.ip());
                tracing::debug!(%peer, "TLS handshake timed out");
                return CloseReason::HandshakeTimeout;
            }
            Ok(Err(e)) => return self.handshake_failed(peer, &e),
            Ok(Ok(mut tls)) => {
                tls.get_mut().0.open();
                tls
            }
        };
        drop(place);
        self.metrics.record_handshake(started.elapsed());
        let max_message_size = self.limits.max_message_size as usize;
        let device = match tls.get_ref().1.peer_certificates() {
            None => None,
            Some(certs) => match self.session_for(certs) {
                Ok(session) => Some(session),
                Err((reason, diagnostic)) => {
                    tracing::info!(%peer, %reason, %diagnostic, "attested connection cannot be served");
                    connection::refuse(tls, max_message_size, Code::UNAUTHORIZED, &diagnostic)
                        .await;
                    return reason;
                }
            },
        };
        let limits = ConnectionLimits {
            max_message_size,
            inactivity_timeout: Duration::from_millis(self.limits.inactivity_timeout_ms),
        };
        let ending = connection::serve(
            tls,
            device,
            &self.provisioner,
            &self.attestor,
            limits,
            &self.rate,
            &self.records,
            &self.metrics,
        )
        .await;
        tracing::debug!(%peer, ?ending, "connection ended");
        ending.reason()
    }
}

/// Closes a shed connection with a reset (`SO_LINGER` 0): no FIN handshake and no TIME_WAIT entry
/// for a connection that never got a byte, so a storm of them costs the kernel as little as it can.
fn close_at_once(stream: tokio::net::TcpStream) {
    // A socket that cannot take the option is closed normally.
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Bytes are waiting in `stream` (its first flight arrived, whether or not its task has seen the
/// readiness yet): a non-blocking peek of one byte.
fn has_spoken(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(rustix::net::recv(stream, &mut byte[..], flags), Ok((_, n)) if n > 0)
}
