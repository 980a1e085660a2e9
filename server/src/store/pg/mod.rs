//! The PostgreSQL store (`[store] url`): the same tables as the embedded one, in a database that
//! several DPS replicas share. The [`Persistence`](crate::records::Persistence) trait is
//! synchronous (its callers run on blocking threads: the record writer's thread, the admin API's
//! blocking pool), so every call is run on this store's own small tokio runtime and waited for
//! on the calling thread; no tokio worker of the server waits on the network.
//!
//! Every change made through the admin API or the record writer is announced on the
//! `dps_changes` channel (NOTIFY, delivered on commit); [`listen`] follows it for the replica.

mod batch;
mod listen;
mod migrations;
mod names;
mod ops;
mod pool;
mod rows;

pub use listen::Change;
pub(crate) use pool::Pg;
