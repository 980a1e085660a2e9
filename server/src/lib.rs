//! dps-server: an IoT Device Provisioning Service (plgd-compatible) and the library the load
//! generator reuses. Start with [`enrollment`] (attestation), [`config`] and [`check_chain`].

pub mod accept;
pub mod admin;
pub mod check_chain;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod enrollment;
pub mod init;
pub mod metrics;
pub mod overload;
pub mod pki;
pub mod profile;
pub mod proto;
pub mod provision;
pub mod records;
pub mod replica;
pub mod server;
pub mod shed;
pub mod store;
pub mod tls;
pub mod token;
pub mod tpm;
