//! The device side of the protocol, for whatever drives this server as devices do: the load
//! generator, the benches and this crate's integration tests (feature `client`). One copy of what
//! each of them used to write for itself.
//!
//! One job per file, each importing only the ones above it: `accept_any` and `verify_cache` (the
//! two ways a device verifies the server beyond the plain CA check), `config` (the rustls client
//! configuration), `alert` (the refusal a received alert stands for, from
//! [`crate::tls::refusal`]), `connect` (TCP from a chosen source address), `coap` (request frames
//! and reading an answer), `provision` (the provisioning steps over a session).

pub mod accept_any;
pub mod alert;
pub mod coap;
pub mod config;
pub mod connect;
pub mod provision;
pub mod verify_cache;

pub use config::{ClientAuth, DeviceTls, ServerTrust, TlsChoices};

/// Why the device client could not be set up or could not build a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rustls refused a setting, a certificate or a key.
    #[error("TLS client: {0}")]
    Rustls(#[from] rustls::Error),
    /// The server verifier could not be built from the CA.
    #[error("server verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    /// A request body could not be encoded.
    #[error("request body: {0}")]
    Body(#[from] crate::proto::body::BodyError),
    /// The certificate signing request could not be made.
    #[error("CSR: {0}")]
    Csr(#[from] crate::pki::PkiError),
}
