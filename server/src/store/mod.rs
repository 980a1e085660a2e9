//! The embedded store: admin-managed groups and hubs, provisioning records and issued identities
//! in one redb database (pure Rust, ACID, crash-safe). Every write is one transaction, durable
//! when it returns.
//!
//! Tables (all values JSON text):
//!
//! | table | key | value |
//! |---|---|---|
//! | `groups` | group id (UUID) | [`GroupConfig`](crate::config::GroupConfig), chain as inline PEM |
//! | `hubs` | hub id (UUID) | [`HubConfig`](crate::config::HubConfig) |
//! | `records` | `sha256:<hex>` of the manufacturer leaf | [`ProvisioningRecord`](crate::records::ProvisioningRecord) |
//! | `devices` | device id (UUID) | record key (plain text) |
//! | `identities` | device id (UUID) | the [`IdentityHolder`](crate::provision::IdentityHolder)s of that device id |
//!
//! Provisioning records are written by the [`RecordWriter`] in batches, off the handshake path.
//!
//! With `[store] url` the same tables live in PostgreSQL (`pg`), shared by several replicas:
//! versioned migrations, a connection pool, changes announced with NOTIFY and followed with
//! LISTEN ([`Change`]), and a device id taken by one replica refused to the other.

mod backend;
mod codec;
mod db;
mod event;
mod pg;
mod queue;
mod writer;

pub use backend::Store;
pub use event::{IdentityOutcome, IssuedIdentity, StepEvent};
pub use pg::Change;
pub use writer::{RecordWriter, WriterStats, BATCH_MAX, BATCH_WINDOW, QUEUE_CAPACITY};
