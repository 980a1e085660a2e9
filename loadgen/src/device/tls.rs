//! The device's TLS client: its manufacturer (or identity) certificate as client auth, the server
//! verified against the scenario's CA unless the scenario says devices skip that, and the alert a
//! refusal arrives as.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::spec::{KeyExchange, TlsVersion};

/// Accepts any server certificate but still checks the handshake signatures, like a device
/// configured without a server trust anchor.
#[derive(Debug)]
pub(crate) struct AcceptAnyServer(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why the devices' TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// rustls refused a setting or a certificate.
    #[error("TLS client: {0}")]
    Rustls(#[from] rustls::Error),
    /// The server verifier could not be built from the CA.
    #[error("server verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// What a device offers in its ClientHello beyond its certificate: pinned so that two servers are
/// compared on the same protocol version and key exchange, whatever each would prefer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Only this version; `None`: TLS 1.3 and 1.2.
    pub version: Option<TlsVersion>,
    /// The key-exchange group(s) offered.
    pub key_exchange: KeyExchange,
}

/// The aws-lc-rs provider, offering the groups of `key_exchange`.
fn provider(key_exchange: KeyExchange) -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::kx_group;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let only = match key_exchange {
        KeyExchange::Any => return provider,
        KeyExchange::X25519 => kx_group::X25519,
        KeyExchange::P256 => kx_group::SECP256R1,
        KeyExchange::P384 => kx_group::SECP384R1,
        KeyExchange::X25519Mlkem768 => kx_group::X25519MLKEM768,
    };
    provider.kx_groups = vec![only];
    provider
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// What every device session of a run shares in its TLS client: the provider, the versions and
/// the server verifier (its trust anchor parsed once). Building these per connection cost the
/// generator, which shares the machine with the server in most runs, CPU on every device.
#[derive(Debug)]
pub struct ClientBase {
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    verifier: Arc<dyn ServerCertVerifier>,
}

impl ClientBase {
    /// Devices that verify the server against `server_ca` (`None`: accept any server
    /// certificate) and offer `options`.
    pub fn new(
        server_ca: Option<&CertificateDer<'static>>,
        options: TlsOptions,
    ) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(provider(options.key_exchange));
        let versions: &'static [&'static rustls::SupportedProtocolVersion] = match options.version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::Tls13) => TLS13_ONLY,
            Some(TlsVersion::Tls12) => TLS12_ONLY,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match server_ca {
            None => Arc::new(AcceptAnyServer(provider.clone())),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.clone())?;
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()?
            }
        };
        Ok(ClientBase {
            provider,
            versions,
            verifier,
        })
    }
}

/// The client config of one device session: with `client` (chain, key) as its certificate, or
/// none (a TPM device, which attests inside the session).
pub fn client_config(
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    base: &ClientBase,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(base.provider.clone())
        .with_protocol_versions(base.versions)?
        .dangerous()
        .with_custom_certificate_verifier(base.verifier.clone());
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    // Every session is a fresh attestation; and the default session cache (256 slots) would cost
    // each device about 14 KiB.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The alert behind an I/O error from a TLS stream, if there is one.
pub fn alert_of(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

/// The alert a server sends for each rejection reason (rustls's mapping of certificate errors).
pub fn expected_alert(reason: dps_server::enrollment::RejectReason) -> &'static str {
    use dps_server::enrollment::RejectReason as R;
    match reason {
        R::NoPath => "UnknownCA",
        R::BadSignature => "DecryptError",
        R::Expired | R::NotYetValid => "CertificateExpired",
        R::BadEku => "UnsupportedCertificate",
        R::NoGroup | R::Denied | R::NotAllowed => "AccessDenied",
        R::Malformed => "BadCertificate",
        R::NotCa | R::PathLen => "CertificateUnknown",
    }
}
