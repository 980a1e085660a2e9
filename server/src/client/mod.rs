//! The device side of the protocol, for whatever drives this server as devices do: the load
//! generator, the benches and this crate's integration tests (feature `client`). One copy of what
//! each of them used to write for itself.
//!
//! One job per file, each importing only the ones above it: `error`, `accept_any` and `verify_cache` (the
//! two ways a device verifies the server beyond the plain CA check), `config` (the rustls client
//! configuration), `alert` (the refusal a received alert stands for, from
//! [`crate::tls::refusal`]), `connect` (TCP from a chosen source address), `coap` (request frames
//! and reading an answer), `provision` (the provisioning steps over a session).

pub mod accept_any;
pub mod alert;
pub mod coap;
pub mod config;
pub mod connect;
mod error;
pub mod provision;
pub mod verify_cache;

pub use config::{ClientAuth, DeviceTls, ServerTrust, TlsChoices};
pub use error::ClientError;
