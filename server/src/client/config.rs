//! The device's rustls client configuration: its chain and key as client authentication (or none,
//! for a TPM device, which attests inside the session), the server verified against a CA or not
//! at all, and the TLS versions, key-exchange groups and suites it offers. The provider is
//! aws-lc-rs, the one the server uses; session resumption is off, as every session is a fresh
//! attestation.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::accept_any::AcceptAnyServer;
use super::error::ClientError;
use super::verify_cache::CachingVerifier;

/// How a device verifies the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Against these CA certificates as trust anchors; each distinct server chain is verified once
    /// ([`CachingVerifier`]).
    Ca(Vec<CertificateDer<'static>>),
    /// Any server certificate ([`AcceptAnyServer`]); the handshake signatures are still checked.
    AnyServer,
}

/// What a device offers in its ClientHello beyond its certificate.
#[derive(Debug, Clone)]
pub struct TlsChoices {
    /// The protocol versions, preferred first.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// The key-exchange groups; `None`: the provider's.
    pub kx_groups: Option<Vec<&'static dyn SupportedKxGroup>>,
    /// The cipher suites; `None`: the provider's.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
}

impl Default for TlsChoices {
    /// TLS 1.3 and 1.2, the provider's groups and suites.
    fn default() -> Self {
        TlsChoices {
            versions: rustls::DEFAULT_VERSIONS.to_vec(),
            kx_groups: None,
            cipher_suites: None,
        }
    }
}

/// What a device presents as its client certificate.
#[derive(Debug)]
pub enum ClientAuth {
    /// Nothing (a TPM device).
    None,
    /// This chain (leaf first) and the leaf's key; rustls checks that they belong together.
    Certificate(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    /// This chain as it is (any bytes), signing with this key whether or not it is the leaf's: for
    /// tests that present garbage or a mismatched chain.
    Presenting(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

/// What every device session of a run shares in its TLS client: provider, versions and server
/// verifier (its trust anchors parsed once, its verified chains remembered). A session's
/// configuration is this one plus its client certificate ([`DeviceTls::config`]).
#[derive(Debug)]
pub struct DeviceTls {
    base: ClientConfig,
    verifier: Arc<dyn ServerCertVerifier>,
}

impl DeviceTls {
    /// Devices that verify the server as `trust` says and offer `choices`.
    pub fn new(trust: ServerTrust, choices: TlsChoices) -> Result<Self, ClientError> {
        let provider = Arc::new(provider(&choices));
        let verifier: Arc<dyn ServerCertVerifier> = match trust {
            ServerTrust::AnyServer => Arc::new(AcceptAnyServer(provider.clone())),
            ServerTrust::Ca(cas) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots.add(ca)?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()?;
                Arc::new(CachingVerifier::new(webpki))
            }
        };
        Self::build(provider, &choices, verifier)
    }

    /// Devices that verify the server with `verifier` and offer `choices`.
    pub fn with_verifier(
        verifier: Arc<dyn ServerCertVerifier>,
        choices: TlsChoices,
    ) -> Result<Self, ClientError> {
        Self::build(Arc::new(provider(&choices)), &choices, verifier)
    }

    fn build(
        provider: Arc<CryptoProvider>,
        choices: &TlsChoices,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<Self, ClientError> {
        let mut base = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&choices.versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        // Every session is a fresh attestation; and the default session cache (256 slots) would
        // cost each device about 14 KiB.
        base.resumption = rustls::client::Resumption::disabled();
        Ok(DeviceTls { base, verifier })
    }

    /// The crypto provider the devices use.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        self.base.crypto_provider()
    }

    /// The server verifier every configuration of these devices shares.
    pub fn verifier(&self) -> &Arc<dyn ServerCertVerifier> {
        &self.verifier
    }

    /// The configuration of one device session, presenting `auth`.
    pub fn config(&self, auth: ClientAuth) -> Result<ClientConfig, ClientError> {
        let mut config = self.base.clone();
        // Each session compresses its own certificate, if the server asks for that.
        config.cert_compression_cache = Arc::default();
        let key = match auth {
            ClientAuth::None => return Ok(config),
            ClientAuth::Certificate(chain, key) => {
                rustls::sign::CertifiedKey::from_der(chain, key, self.provider())?
            }
            ClientAuth::Presenting(chain, key) => {
                let signing = self.provider().key_provider.load_private_key(key)?;
                rustls::sign::CertifiedKey::new(chain, signing)
            }
        };
        config.client_auth_cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
        Ok(config)
    }

    /// [`DeviceTls::config`] as a connector.
    pub fn connector(&self, auth: ClientAuth) -> Result<tokio_rustls::TlsConnector, ClientError> {
        Ok(tokio_rustls::TlsConnector::from(Arc::new(
            self.config(auth)?,
        )))
    }
}

/// aws-lc-rs with the groups and suites of `choices`.
fn provider(choices: &TlsChoices) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(groups) = &choices.kx_groups {
        provider.kx_groups = groups.clone();
    }
    if let Some(suites) = &choices.cipher_suites {
        provider.cipher_suites = suites.clone();
    }
    provider
}
