//! `dps-server init DIR`: a working demo set-up in one command, so a new user can try the server
//! (and `check-chain`) before they have a PKI of their own.

use std::path::{Path, PathBuf};

use rcgen::{ExtendedKeyUsagePurpose, SanType};

use crate::config::{
    AdminSection, ConfigFile, GroupConfig, HubConfig, LimitsSection, ServerSection, StoreSection,
};
use crate::enrollment::LeadSelector;
use crate::pki::{chain_pem, CertSpec, Issued, PkiError};
use crate::token::config::JwtConfig;
use crate::token::jwt::SigningKey;
use crate::token::AuthorizationConfig;

/// The access-token signing key `init` writes (P-256, PKCS#8 PEM), relative to the config.
pub const TOKEN_SIGNING_KEY: &str = "token-signing.key";

/// Why the demo set-up could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory already holds a config and `force` was not given.
    #[error("{0} already exists (pass --force to overwrite)")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A name rcgen refused.
    #[error("certificate name: {0}")]
    Name(#[from] rcgen::Error),
    /// The system random generator failed.
    #[error("no randomness for the admin token or the token signing key")]
    Random,
    /// The config could not be serialized.
    #[error("cannot serialize the config: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// Ids of the demo set-up, fixed so docs and scripts can refer to them.
pub mod ids {
    /// The demo hub.
    pub const HUB: &str = "3a6bb6a7-3c42-4c7e-9d52-1f0d6c7a3f10";
    /// Group "factory-a", led by the Factory A CA (the production line's issuer).
    pub const FACTORY_A: &str = "8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01";
    /// Group "acme-any", represented by the manufacturer root.
    pub const ACME_ANY: &str = "8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a02";
    /// The demo owner.
    pub const OWNER: &str = "1b1e5c2a-6f0e-4c59-8f3a-7f6c2b1e9d00";
}

/// What `init` wrote.
#[derive(Debug)]
pub struct InitReport {
    /// The config file.
    pub config: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// The files `init` writes, in the order written, under one directory.
struct Out<'a> {
    dir: &'a Path,
    files: Vec<PathBuf>,
}

impl Out<'_> {
    /// Write `contents` to `name` under the directory, creating its parent directories.
    fn write(&mut self, name: &str, contents: &str) -> Result<(), InitError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InitError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| InitError::Io {
            path: path.clone(),
            source,
        })?;
        self.files.push(path);
        Ok(())
    }
}

/// Write the demo PKI and config into `dir`.
pub fn init(dir: &Path, force: bool) -> Result<InitReport, InitError> {
    let config = dir.join("config.toml");
    if config.exists() && !force {
        return Err(InitError::Exists(config));
    }
    let mut out = Out {
        dir,
        files: Vec::new(),
    };
    write_server_pki(&mut out)?;
    write_identity_ca(&mut out)?;
    write_manufacturer(&mut out)?;
    // The key the demo hub's `jwt` provider signs the devices' access tokens with.
    let signing_key = SigningKey::generate_pem().map_err(|_| InitError::Random)?;
    out.write(TOKEN_SIGNING_KEY, &signing_key)?;
    let text = format!(
        "# dpsbench demo config, written by `dps-server init`.\n\
         # Paths are relative to this file. Regenerate with `dps-server init {} --force`.\n\n{}",
        dir.display(),
        toml::to_string_pretty(&demo_config())?
    );
    let mut token = [0u8; 24];
    aws_lc_rs::rand::fill(&mut token).map_err(|_| InitError::Random)?;
    out.write("admin-token", &format!("{}\n", hex::encode(token)))?;
    out.write("config.toml", &text)?;
    Ok(InitReport {
        config,
        files: out.files,
    })
}

/// The DPS's own server certificate, and the CA devices use to verify it.
fn write_server_pki(out: &mut Out<'_>) -> Result<(), InitError> {
    let server_ca = Issued::self_signed(&CertSpec::ca("dpsbench demo server CA"))?;
    let mut server_spec = CertSpec::device("localhost");
    server_spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_spec.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    let server = server_ca.issue(&server_spec)?;
    out.write("server-ca.pem", &server_ca.pem())?;
    out.write("server.pem", &chain_pem([server.der(), server_ca.der()]))?;
    out.write("server.key", &server.key_pem())
}

/// The identity CA that signs the devices' identity certificates.
fn write_identity_ca(out: &mut Out<'_>) -> Result<(), InitError> {
    let identity_ca = Issued::self_signed(&CertSpec::ca("dpsbench demo identity CA"))?;
    out.write("identity-ca.pem", &identity_ca.pem())?;
    out.write("identity-ca.key", &identity_ca.key_pem())
}

/// The manufacturer: Root → Factory A → Line 1 → devices; the two groups' chains and the demo
/// device.
fn write_manufacturer(out: &mut Out<'_>) -> Result<(), InitError> {
    let root = Issued::self_signed(&CertSpec::ca("ACME Manufacturer Root CA"))?;
    let factory = root.issue(&CertSpec::ca("ACME Factory A CA"))?;
    let line = factory.issue(&CertSpec::ca("ACME Factory A Line 1 CA"))?;
    let device = line.issue(&CertSpec::device("ACME-SN-000001"))?;
    out.write("manufacturer/root.pem", &root.pem())?;
    out.write("manufacturer/root.key", &root.key_pem())?;
    out.write("manufacturer/factory-a.pem", &factory.pem())?;
    out.write("manufacturer/factory-a.key", &factory.key_pem())?;
    out.write("manufacturer/line-1.pem", &line.pem())?;
    out.write("manufacturer/line-1.key", &line.key_pem())?;
    out.write(
        "groups/factory-a.pem",
        &chain_pem([factory.der(), root.der()]),
    )?;
    out.write("groups/acme-any.pem", &root.pem())?;
    // The group chain stops at Factory A, so the device must send Line 1 after its leaf.
    out.write("device-chain.pem", &chain_pem([device.der(), line.der()]))?;
    out.write("device.key", &device.key_pem())
}

/// The demo config: the files written above, one hub signing `jwt` tokens, two groups.
fn demo_config() -> ConfigFile {
    ConfigFile {
        server: Some(ServerSection {
            listen: "127.0.0.1:15684".into(),
            certificate: "server.pem".into(),
            key: "server.key".into(),
            identity_ca_certificate: "identity-ca.pem".into(),
            identity_ca_key: "identity-ca.key".into(),
            identity_validity_days: 365,
        }),
        limits: LimitsSection::default(),
        store: StoreSection::default(),
        admin: Some(AdminSection {
            listen: "127.0.0.1:15685".into(),
            token_file: Some("admin-token".into()),
            token: None,
            issuer: None,
        }),
        hub: vec![demo_hub()],
        enrollment_group: demo_groups(),
        ..ConfigFile::default()
    }
}

/// The demo hub, whose `jwt` provider signs with the key `init` wrote.
fn demo_hub() -> HubConfig {
    HubConfig {
        id: ids::HUB.into(),
        gateways: vec!["coaps+tcp://127.0.0.1:5684".into()],
        name: Some("demo hub".into()),
        authorization: Some(AuthorizationConfig {
            jwt: Some(JwtConfig {
                signing_key: Some(TOKEN_SIGNING_KEY.into()),
                ..JwtConfig::default()
            }),
            ..AuthorizationConfig::default()
        }),
    }
}

/// "factory-a" (led by the Factory A CA, one denied CN) and "acme-any" (the
/// manufacturer root, expired leaves allowed).
fn demo_groups() -> Vec<GroupConfig> {
    vec![
        GroupConfig {
            id: ids::FACTORY_A.into(),
            name: "factory-a".into(),
            owner: ids::OWNER.into(),
            certificate_chain: "groups/factory-a.pem".into(),
            lead_certificate: LeadSelector::Index(0),
            expired_certificates_allowed: false,
            allow_common_names: vec![],
            deny_common_names: vec!["ACME-SN-000013".into()],
            hub_ids: vec![ids::HUB.into()],
            pre_shared_key: None,
        },
        GroupConfig {
            id: ids::ACME_ANY.into(),
            name: "acme-any".into(),
            owner: ids::OWNER.into(),
            certificate_chain: "groups/acme-any.pem".into(),
            lead_certificate: LeadSelector::Index(0),
            expired_certificates_allowed: true,
            allow_common_names: vec![],
            deny_common_names: vec![],
            hub_ids: vec![ids::HUB.into()],
            pre_shared_key: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::enrollment::Arena;
    use rustls_pki_types::UnixTime;

    #[test]
    fn demo_device_is_admitted_into_factory_a() {
        let dir = tempfile::tempdir().expect("tmp");
        let report = init(dir.path(), false).expect("init");
        let config = Config::load(&report.config).expect("config loads");
        let arena = Arena::with_groups(config.groups.clone()).expect("groups valid");
        let pem = std::fs::read(dir.path().join("device-chain.pem")).expect("chain");
        let chain = crate::enrollment::certs_from_pem(&pem).expect("pem");
        let v = arena.load().authenticate(&chain, UnixTime::now());
        assert_eq!(
            v.group().map(|g| g.to_string()).as_deref(),
            Some(ids::FACTORY_A)
        );
        // Without Line 1 the device has a gap.
        let leaf_only = &chain[..1];
        assert!(arena
            .load()
            .authenticate(leaf_only, UnixTime::now())
            .group()
            .is_none());
        assert_eq!(
            config.store_location(),
            crate::config::StoreLocation::File(dir.path().join("dps.redb"))
        );
        let text = std::fs::read_to_string(&report.config).expect("config text");
        assert!(
            text.contains("[store]") && text.contains("dps.redb"),
            "{text}"
        );
        // The hub signs its devices' tokens with the key init wrote.
        let hub = &config.file.hub[0];
        let auth = hub.authorization.as_ref().expect("[hub.authorization]");
        assert_eq!(auth.provider, crate::token::ProviderKind::Jwt);
        assert!(text.contains("[hub.authorization.jwt]"), "{text}");
        let built = crate::provision::Hub::from_config(hub, dir.path()).expect("hub builds");
        let pem = std::fs::read(dir.path().join(TOKEN_SIGNING_KEY)).expect("key file");
        let kid = SigningKey::from_pem(&pem)
            .expect("P-256 key")
            .kid()
            .to_owned();
        let jwks = crate::token::Tokens::new().jwks([&*built.authorization]);
        assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
        assert!(matches!(init(dir.path(), false), Err(InitError::Exists(_))));
        init(dir.path(), true).expect("force overwrites");
    }
}
