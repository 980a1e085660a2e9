//! The server's TOML config: loading, resolving relative paths against the config file, and
//! validation with errors that name the offending entry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::enrollment::{
    certs_from_pem, Attestation, EnrollmentGroup, GroupError, GroupErrorKind, LeadSelector,
};
use crate::token::{AuthorizationConfig, AuthorizationError};
use crate::tpm::enrollment::{TpmEnrollment, TpmEnrollmentConfig, TpmEnrollmentError};

pub mod ranges;
mod validate;
pub use ranges::OutOfRange;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown / mistyped keys (the message carries line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A group's `certificate_chain` file could not be read or holds no certificate.
    #[error("enrollment group {group}: certificate_chain {source_desc}: {reason}")]
    Chain {
        /// Which group.
        group: String,
        /// The file or "inline PEM".
        source_desc: String,
        /// Why.
        reason: String,
    },
    /// A group is invalid.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// An individual TPM enrollment is invalid.
    #[error(transparent)]
    TpmEnrollment(#[from] TpmEnrollmentError),
    /// A numeric key is outside its allowed range (the message names the key and the range).
    #[error("{path}: {source}")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Which key, its value and its range.
        source: OutOfRange,
    },
    /// A hub's `[hub.authorization]` is unusable.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
}

/// One `[[enrollment_group]]` table as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// UUID.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Owner (a UUID or any string).
    pub owner: String,
    /// Path relative to the config file, or inline PEM.
    pub certificate_chain: String,
    /// Index, `sha256:<hex>` or a CN unique in the chain; default 0.
    #[serde(default)]
    pub lead_certificate: LeadSelector,
    /// Accept device leaves outside their validity window.
    #[serde(default)]
    pub expired_certificates_allowed: bool,
    /// Device CNs admitted (empty: everyone).
    #[serde(default)]
    pub allow_common_names: Vec<String>,
    /// Device CNs refused.
    #[serde(default)]
    pub deny_common_names: Vec<String>,
    /// Hubs (UUIDs).
    #[serde(default)]
    pub hub_ids: Vec<String>,
    /// Optional pre-shared key (at least 16 bytes).
    #[serde(default)]
    pub pre_shared_key: Option<String>,
}

/// One `[[hub]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// UUID.
    pub id: String,
    /// Gateway URIs handed to devices (`coaps+tcp://host:port`).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Human name.
    #[serde(default)]
    pub name: Option<String>,
    /// `[hub.authorization]`: how its devices' access tokens are issued (absent: provider `jwt`
    /// with every default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationConfig>,
}

/// `[server]`: the device port. Paths are relative to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Device port address (CoAP over TLS over TCP); default `127.0.0.1:15684`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Server certificate chain, PEM, leaf first.
    pub certificate: String,
    /// Server private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key: String,
    /// CA certificate that signs device identity certificates, PEM.
    pub identity_ca_certificate: String,
    /// Its private key, PEM.
    pub identity_ca_key: String,
    /// Validity of issued identity certificates, days (1..=36500).
    #[serde(default = "default_identity_days")]
    pub identity_validity_days: u32,
}

fn default_listen() -> String {
    "127.0.0.1:15684".into()
}

fn default_identity_days() -> u32 {
    365
}

/// `[limits]`: protection of the device port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Connections served at once; further ones are closed at accept.
    pub max_connections: u32,
    /// TLS handshake deadline, milliseconds.
    pub handshake_timeout_ms: u64,
    /// Close a connection idle this long, milliseconds (plgd: 20 s).
    pub inactivity_timeout_ms: u64,
    /// Largest CoAP message accepted, bytes.
    pub max_message_size: u32,
    /// Provisioning requests per second served by the whole server; beyond it devices get 5.03
    /// with Max-Age 1. 0 = unlimited.
    pub max_requests_per_second: u32,
    /// Max-Age (seconds) of the 5.03 answered to connections beyond `max_connections`.
    pub busy_retry_after_s: u32,
    /// Failed handshakes per second a source address may cost before its new connections are
    /// closed at accept (token bucket, refilled at this rate); 0 = no shedding. Devices that pass
    /// attestation never spend from it.
    pub failed_handshakes_per_ip_per_s: u32,
    /// Bucket size of `failed_handshakes_per_ip_per_s`: failures allowed in a burst.
    pub failed_handshakes_burst: u32,
    /// Handshakes in progress at once per source address; further connections from it are closed
    /// at accept until one finishes. 0 = no cap.
    pub pending_handshakes_per_ip: u32,
    /// Handshake steps (a flight's key exchange, signature, chain check) run at once; the rest
    /// wait in the CPU queue, continuing handshakes first. Absent: two per core. 0 turns overload
    /// control off (every handshake starts at once, nothing is shed by the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_slots: Option<u32>,
    /// Longest wait of a new connection's first flight in the CPU queue while the queue has been
    /// empty within `queue_interval_ms`; beyond it the connection is reset (nothing spent on it).
    pub queue_timeout_ms: u64,
    /// Longest wait of a new connection's first flight once the queue has stayed non-empty for
    /// `queue_interval_ms` (then the newest are served first: adaptive LIFO).
    pub queue_target_ms: u64,
    /// How long the CPU queue must stay non-empty to count as congested.
    pub queue_interval_ms: u64,
    /// Connections that have not sent a byte yet (they take no `max_connections` place); a new
    /// one beyond this evicts the oldest silent one.
    pub max_silent_connections: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout_ms: 10_000,
            inactivity_timeout_ms: 20_000,
            max_message_size: 16 * 1024,
            max_requests_per_second: 0,
            busy_retry_after_s: 5,
            failed_handshakes_per_ip_per_s: 0,
            failed_handshakes_burst: 100,
            pending_handshakes_per_ip: 1_024,
            cpu_slots: None,
            queue_timeout_ms: 500,
            queue_target_ms: 10,
            queue_interval_ms: 100,
            max_silent_connections: 10_000,
        }
    }
}

/// Value of `[store] path` that keeps the store in memory (nothing survives a restart).
pub const IN_MEMORY_STORE: &str = ":memory:";

/// `[admin]`: the HTTP admin API (groups, hubs, records, metrics). Loopback by default; every
/// `/api/v1/` request needs `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address; default `127.0.0.1:15685`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// File holding the bearer token (relative to the config file); wins over `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// The bearer token inline (prefer `token_file` or the `DPS_ADMIN_TOKEN` environment variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The URL hubs reach this API under (`iss` of DPS-signed access tokens, base of the
    /// `jwks_uri`); default `http://` and the bound address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:15685".into()
}

/// `[store]`: the database holding admin-managed groups and hubs and the provisioning records.
/// Optional; the default is the embedded `dps.redb` beside the config file. With `url`, a
/// PostgreSQL database that several `dps-server run` processes (replicas) share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Database file, relative to the config file, or `":memory:"` for an in-memory store.
    #[serde(default = "default_store_path")]
    pub path: String,
    /// `postgres://USER@HOST:PORT/DB`: a shared PostgreSQL store instead of the embedded one
    /// (`path` is then ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn default_store_path() -> String {
    "dps.redb".into()
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            url: None,
        }
    }
}

/// Where the store lives, resolved against the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// In memory (`path = ":memory:"`).
    InMemory,
    /// A database file.
    File(PathBuf),
    /// A PostgreSQL database (`[store] url`), shared by replicas.
    Postgres(String),
}

/// A database URL with its password (if any) masked, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::InMemory => f.write_str(IN_MEMORY_STORE),
            StoreLocation::File(p) => write!(f, "{}", p.display()),
            StoreLocation::Postgres(url) => f.write_str(&redacted_url(url)),
        }
    }
}

/// The config file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The device port; required by `run`, not by `check-chain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSection>,
    /// Limits of the device port.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The embedded store.
    #[serde(default)]
    pub store: StoreSection,
    /// The admin API; off unless configured (or `run --admin-listen` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSection>,
    /// Hubs devices are provisioned to.
    #[serde(default)]
    pub hub: Vec<HubConfig>,
    /// Enrollment groups.
    #[serde(default)]
    pub enrollment_group: Vec<GroupConfig>,
    /// TPM enrollment groups: the same tables, whose chain is a TPM manufacturer CA chain that
    /// EK certificates chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpm_enrollment_group: Vec<GroupConfig>,
    /// Individual TPM enrollments (one EK each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpm_enrollment: Vec<TpmEnrollmentConfig>,
    /// TPM attestation settings.
    #[serde(default, skip_serializing_if = "TpmSection::is_default")]
    pub tpm: TpmSection,
}

/// `[tpm]`: the TPM nonce challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmSection {
    /// How long a challenge may be answered, milliseconds (default 30 000).
    pub challenge_ttl_ms: u64,
}

impl TpmSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for TpmSection {
    fn default() -> Self {
        Self {
            challenge_ttl_ms: 30_000,
        }
    }
}

/// A loaded config: groups resolved into the model (PEM read, ids parsed), not yet validated
/// against each other (the arena does that when they are published).
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The raw tables.
    pub file: ConfigFile,
    /// Groups in file order: `[[enrollment_group]]` then `[[tpm_enrollment_group]]`.
    pub groups: Vec<EnrollmentGroup>,
    /// Individual TPM enrollments in file order.
    pub tpm_enrollments: Vec<TpmEnrollment>,
}

impl Config {
    /// The admin bearer token: `token_file`, else `token`, else `$DPS_ADMIN_TOKEN`. Surrounding
    /// whitespace is trimmed; an empty token is no token.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        let admin = self.file.admin.as_ref();
        let from_file = match admin.and_then(|a| a.token_file.as_ref()) {
            Some(f) => {
                let path = self.resolve(f);
                Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| ConfigError::Io { path, source })?,
                )
            }
            None => None,
        };
        let token = from_file
            .or_else(|| admin.and_then(|a| a.token.clone()))
            .or_else(|| std::env::var("DPS_ADMIN_TOKEN").ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(token)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(relative)
    }

    /// Where `[store] url` or `path` points, a path resolved against the config file's directory.
    pub fn store_location(&self) -> StoreLocation {
        if let Some(url) = &self.file.store.url {
            return StoreLocation::Postgres(url.clone());
        }
        let path = &self.file.store.path;
        if path == IN_MEMORY_STORE {
            StoreLocation::InMemory
        } else {
            StoreLocation::File(self.resolve(path))
        }
    }

    /// Read and resolve a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse config text; relative paths resolve against the directory of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        file.validate().map_err(|source| ConfigError::OutOfRange {
            path: path.to_owned(),
            source,
        })?;
        for hub in &file.hub {
            if let Some(a) = &hub.authorization {
                a.validate(&hub.id)?;
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let x509 = file
            .enrollment_group
            .iter()
            .enumerate()
            .map(|(i, g)| resolve_group(i, g, base, Attestation::X509));
        let tpm = file
            .tpm_enrollment_group
            .iter()
            .enumerate()
            .map(|(i, g)| resolve_group(i, g, base, Attestation::Tpm));
        let groups = x509.chain(tpm).collect::<Result<_, _>>()?;
        let tpm_enrollments = file
            .tpm_enrollment
            .iter()
            .map(|e| e.resolve(base))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            file,
            groups,
            tpm_enrollments,
        })
    }
}

impl GroupConfig {
    /// Resolve an admin-managed group (stored with its chain as inline PEM) into the model; a
    /// relative chain path resolves against `base`.
    pub fn resolve(&self, base: &Path) -> Result<EnrollmentGroup, ConfigError> {
        self.resolve_as(base, Attestation::X509)
    }

    /// [`GroupConfig::resolve`] for a group of the given kind (TPM groups share the table shape).
    pub fn resolve_as(
        &self,
        base: &Path,
        attestation: Attestation,
    ) -> Result<EnrollmentGroup, ConfigError> {
        resolve_group_labelled(
            format!("{:?} ({})", self.name, self.id),
            self,
            base,
            attestation,
        )
    }
}

fn resolve_group(
    index: usize,
    g: &GroupConfig,
    base: &Path,
    attestation: Attestation,
) -> Result<EnrollmentGroup, ConfigError> {
    let table = match attestation {
        Attestation::X509 => "",
        Attestation::Tpm => "TPM ",
    };
    resolve_group_labelled(
        format!("{table}#{index} {:?} ({})", g.name, g.id),
        g,
        base,
        attestation,
    )
}

fn resolve_group_labelled(
    label: String,
    g: &GroupConfig,
    base: &Path,
    attestation: Attestation,
) -> Result<EnrollmentGroup, ConfigError> {
    let bad = |kind| {
        ConfigError::Group(GroupError {
            group: label.clone(),
            kind,
        })
    };
    let id = Uuid::parse_str(&g.id).map_err(|_| bad(GroupErrorKind::BadId(g.id.clone())))?;
    let hub_ids = g
        .hub_ids
        .iter()
        .map(|h| Uuid::parse_str(h).map_err(|_| bad(GroupErrorKind::BadId(h.clone()))))
        .collect::<Result<_, _>>()?;
    let (pem, source_desc) = if g.certificate_chain.contains("-----BEGIN") {
        (
            g.certificate_chain.clone().into_bytes(),
            "inline PEM".to_owned(),
        )
    } else {
        let p = base.join(&g.certificate_chain);
        let bytes = std::fs::read(&p).map_err(|e| ConfigError::Chain {
            group: label.clone(),
            source_desc: p.display().to_string(),
            reason: e.to_string(),
        })?;
        (bytes, p.display().to_string())
    };
    let chain = certs_from_pem(&pem).map_err(|e| ConfigError::Chain {
        group: label.clone(),
        source_desc,
        reason: e.to_string(),
    })?;
    Ok(EnrollmentGroup {
        id,
        name: g.name.clone(),
        owner: g.owner.clone(),
        chain,
        lead: g.lead_certificate.clone(),
        expired_certificates_allowed: g.expired_certificates_allowed,
        allow_common_names: g.allow_common_names.clone(),
        deny_common_names: g.deny_common_names.clone(),
        hub_ids,
        pre_shared_key: g.pre_shared_key.clone(),
        attestation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let err = Config::parse(
            "[[enrollment_group]]\nid = \"x\"\nname = \"a\"\nowner = \"o\"\ncertificate_chain = \"c.pem\"\ncolour = \"red\"\n",
            Path::new("/tmp/c.toml"),
        )
        .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("colour") && msg.contains("line 6"), "{msg}");
    }

    #[test]
    fn bad_uuid_names_the_group() {
        let err = Config::parse(
            "[[enrollment_group]]\nid = \"not-a-uuid\"\nname = \"factory\"\nowner = \"o\"\ncertificate_chain = \"c.pem\"\n",
            Path::new("/tmp/c.toml"),
        )
        .expect_err("bad id");
        let msg = err.to_string();
        assert!(
            msg.contains("factory") && msg.contains("not a UUID"),
            "{msg}"
        );
    }

    #[test]
    fn missing_chain_file_names_the_file() {
        let err = Config::parse(
            "[[enrollment_group]]\nid = \"8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01\"\nname = \"f\"\nowner = \"o\"\ncertificate_chain = \"nope.pem\"\n",
            Path::new("/nonexistent/c.toml"),
        )
        .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/nope.pem"), "{err}");
    }

    #[test]
    fn zero_token_validity_is_refused_at_load_with_key_and_range() {
        let err = Config::parse(
            "[[hub]]\nid = \"3a6bb6a7-3c42-4c7e-9d52-1f0d6c7a3f10\"\n[hub.authorization.jwt]\nvalidity_s = 0\n",
            Path::new("/tmp/c.toml"),
        )
        .expect_err("zero validity");
        let msg = err.to_string();
        assert!(
            msg.contains("authorization.jwt.validity_s")
                && msg.contains("3a6bb6a7-3c42-4c7e-9d52-1f0d6c7a3f10")
                && msg.contains("allowed 1..="),
            "{msg}"
        );
        let ok = Config::parse(
            "[[hub]]\nid = \"3a6bb6a7-3c42-4c7e-9d52-1f0d6c7a3f10\"\n[hub.authorization]\nprovider = \"jwt\"\n",
            Path::new("/tmp/c.toml"),
        )
        .expect("jwt with defaults");
        assert!(ok.file.hub[0].authorization.is_some());
    }

    #[test]
    fn store_defaults_to_dps_redb_beside_the_config() {
        let c = Config::parse("", Path::new("/etc/dps/c.toml")).expect("empty config");
        assert_eq!(
            c.store_location(),
            StoreLocation::File(PathBuf::from("/etc/dps/dps.redb"))
        );
        let c = Config::parse(
            "[store]\npath = \":memory:\"\n",
            Path::new("/etc/dps/c.toml"),
        )
        .expect("in memory");
        assert_eq!(c.store_location(), StoreLocation::InMemory);
        let c = Config::parse(
            "[store]\npath = \"db/x.redb\"\n",
            Path::new("/etc/dps/c.toml"),
        )
        .expect("relative");
        assert_eq!(
            c.store_location(),
            StoreLocation::File(PathBuf::from("/etc/dps/db/x.redb"))
        );
        assert!(Config::parse("[store]\nfile = \"x\"\n", Path::new("/c.toml")).is_err());
        let c = Config::parse(
            "[store]\nurl = \"postgres://dps:secret@db:5432/dps\"\n",
            Path::new("/etc/dps/config.toml"),
        )
        .expect("config");
        let url = "postgres://dps:secret@db:5432/dps".to_owned();
        assert_eq!(c.store_location(), StoreLocation::Postgres(url));
        assert_eq!(
            c.store_location().to_string(),
            "postgres://dps:***@db:5432/dps"
        );
    }
}
