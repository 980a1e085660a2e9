//! The devices' TLS client as a run configures it: the server crate's device client
//! ([`dps_server::client`]) with the scenario's TLS version and key exchange, verifying the server
//! against the scenario's CA unless the scenario says devices skip that; and the alert a refusal
//! arrives as.

use std::sync::Arc;

use dps_server::client::{alert, ClientAuth, ClientError, DeviceTls, ServerTrust, TlsChoices};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::spec::{KeyExchange, TlsVersion};

/// Why the devices' TLS client could not be set up.
pub type TlsSetupError = ClientError;

/// What a device offers in its ClientHello beyond its certificate: pinned so that two servers are
/// compared on the same protocol version and key exchange, whatever each would prefer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Only this version; `None`: TLS 1.3 and 1.2.
    pub version: Option<TlsVersion>,
    /// The key-exchange group(s) offered.
    pub key_exchange: KeyExchange,
}

impl TlsOptions {
    /// The device client's choices for these options.
    fn choices(self) -> TlsChoices {
        use rustls::crypto::aws_lc_rs::kx_group;
        let versions = match self.version {
            None => rustls::DEFAULT_VERSIONS.to_vec(),
            Some(TlsVersion::Tls13) => vec![&rustls::version::TLS13],
            Some(TlsVersion::Tls12) => vec![&rustls::version::TLS12],
        };
        let kx_groups = match self.key_exchange {
            KeyExchange::Any => None,
            KeyExchange::X25519 => Some(vec![kx_group::X25519]),
            KeyExchange::P256 => Some(vec![kx_group::SECP256R1]),
            KeyExchange::P384 => Some(vec![kx_group::SECP384R1]),
            KeyExchange::X25519Mlkem768 => Some(vec![kx_group::X25519MLKEM768]),
        };
        TlsChoices {
            versions,
            kx_groups,
            cipher_suites: None,
        }
    }
}

/// What every device session of a run shares in its TLS client: the provider, the versions and
/// the server verifier (its trust anchor parsed once, the server's chain verified once per
/// distinct chain). Building these per connection cost the generator, which shares the machine
/// with the server in most runs, CPU on every device.
#[derive(Debug)]
pub struct ClientBase(DeviceTls);

impl ClientBase {
    /// Devices that verify the server against `server_ca` (`None`: accept any server
    /// certificate) and offer `options`.
    pub fn new(
        server_ca: Option<&CertificateDer<'static>>,
        options: TlsOptions,
    ) -> Result<Self, TlsSetupError> {
        let trust = match server_ca {
            None => ServerTrust::AnyServer,
            Some(ca) => ServerTrust::Ca(vec![ca.clone()]),
        };
        Ok(ClientBase(DeviceTls::new(trust, options.choices())?))
    }

    /// The connector of one device session: with `client` (chain, key) as its certificate, or
    /// none (a TPM device, which attests inside the session). The error is rustls's own words.
    pub fn connector(
        &self,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<tokio_rustls::TlsConnector, String> {
        let auth = match client {
            Some((chain, key)) => ClientAuth::Certificate(chain, key),
            None => ClientAuth::None,
        };
        match self.0.config(auth) {
            Ok(config) => Ok(tokio_rustls::TlsConnector::from(Arc::new(config))),
            Err(ClientError::Rustls(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The alert behind an I/O error from a TLS stream, if there is one (rustls's name for it).
pub fn alert_of(e: &std::io::Error) -> Option<String> {
    alert::received_alert(e).map(|alert| format!("{alert:?}"))
}

/// The alert a server sends for each rejection reason (the server's own table,
/// `dps_server::tls::refusal`).
pub fn expected_alert(reason: dps_server::enrollment::RejectReason) -> &'static str {
    alert::expected_alert(reason)
}
