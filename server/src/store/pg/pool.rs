//! [`Pg`]: the connection pool and the runtime that drives it; every call waits on the calling
//! (blocking) thread for its future on that runtime.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::names::pg_err;
use super::{listen, migrations};
use crate::records::StoreError;

/// Connections in the pool: the record writer holds one per batch, the admin API a few.
const POOL_SIZE: usize = 8;
/// Longest a caller waits for a pooled connection, or a new connection to be made.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of connections to one PostgreSQL database, driven by its own runtime.
pub(crate) struct Pg {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    config: tokio_postgres::Config,
    url: String,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("url", &crate::config::redacted_url(&self.url))
            .finish()
    }
}

impl Drop for Pg {
    /// The runtime may be dropped from async code (a test's server going away): shut it down
    /// without waiting for it.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pg {
    /// Connect to `url`, check the connection, and bring the schema up to date.
    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| pg_err(format!("bad PostgreSQL URL: {e}")))?;
        config
            .connect_timeout(POOL_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("dps-server");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dps-postgres")
            .enable_all()
            .build()
            .map_err(|e| pg_err(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _entered = handle.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(POOL_TIMEOUT))
                .create_timeout(Some(POOL_TIMEOUT))
                .build()
                .map_err(pg_err)?
        };
        let pg = Self {
            runtime: Some(runtime),
            handle,
            pool,
            config,
            url: url.to_owned(),
        };
        let pool = pg.pool.clone();
        pg.run(async move { migrations::apply(&pool).await })?;
        Ok(pg)
    }

    /// Run `fut` on the store's runtime and wait for it on this thread.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| pg_err("the PostgreSQL runtime has stopped"))?
    }

    /// A pooled connection's handle for the operations.
    pub(crate) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Follow the change channel on a dedicated connection (reconnecting as needed); the
    /// receiver gets [`listen::Change::Resync`] after every (re)connection.
    pub(crate) fn changes(&self) -> tokio::sync::mpsc::UnboundedReceiver<listen::Change> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.handle.spawn(listen::follow(self.config.clone(), tx));
        rx
    }
}
