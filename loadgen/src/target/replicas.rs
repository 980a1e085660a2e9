//! The spawned target's processes: one `dps-loadgen server-run` (the fleet's server), or with
//! `[target] replicas = N` and `store_url`, N of them on one PostgreSQL database sharing the
//! device port (`SO_REUSEPORT`: the kernel spreads the devices over them), each with its own
//! admin API. The run reads the first replica's histograms and adds every replica's counters.

use std::path::{Path, PathBuf};

use tokio::process::Child;

use super::admin_client::{AdminClient, AdminError};
use super::remote::CounterSet;
use crate::spec::TargetSpec;

/// Longest wait for a spawned server to report its ports.
const SPAWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the spawned target could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The server process could not be started.
    #[error("cannot spawn the server: {0}")]
    Spawn(#[from] std::io::Error),
    /// The spawned server did not come up as it should.
    #[error("the spawned server {0}")]
    Spawned(&'static str),
    /// `[target] replicas` and `store_url` do not fit together.
    #[error("[target] {0}")]
    Replicas(&'static str),
    /// A replica's admin API failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// One more replica: its admin API and its process.
pub struct Replica {
    admin: AdminClient,
    child: Box<Child>,
}

/// The spawned processes: the first (the run's server) and the others.
pub struct Spawned {
    /// The first replica.
    pub first: Child,
    /// Where the first one listens (the device port every replica shares).
    pub bound: dps_server::daemon::Bound,
    /// The other replicas.
    pub others: Vec<Replica>,
}

/// The executable a spawned server runs: the scenario's `[target] server_exe`, else
/// `$DPS_LOADGEN_SERVER_EXE` (a `dps-loadgen` binary; tests set it), else this executable.
fn server_exe(scenario_exe: Option<&str>) -> Result<PathBuf, SpawnError> {
    if let Some(exe) = scenario_exe {
        return Ok(exe.into());
    }
    match std::env::var_os("DPS_LOADGEN_SERVER_EXE") {
        Some(p) if !p.is_empty() => Ok(p.into()),
        _ => Ok(std::env::current_exe()?),
    }
}

/// Start one server process (`dps-loadgen server-run`) and wait for its ports.
async fn spawn_server(
    exe: Option<&str>,
    config: &Path,
    listen: &str,
    store: &str,
    limits_json: &str,
) -> Result<(Child, dps_server::daemon::Bound), SpawnError> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(server_exe(exe)?)
        .arg("server-run")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(listen)
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--store", store])
        .args(["--limits-json", limits_json])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or(SpawnError::Spawned("has no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let bound = tokio::time::timeout(SPAWN_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
            if let Some(b) = dps_server::daemon::parse_bound(seen.iter().map(String::as_str)) {
                if b.admin.is_some() {
                    return Some(b);
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or(SpawnError::Spawned("exited or did not report its ports"))?;
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, bound))
}

/// The fleet's config with `[store] url`, beside it (its relative paths stay valid); removed
/// once every replica has read it.
fn shared_store_config(fleet_dir: &Path, url: &str) -> Result<PathBuf, SpawnError> {
    let text = std::fs::read_to_string(fleet_dir.join("config.toml"))?;
    let mut value: toml::Table = text
        .parse()
        .map_err(|_| SpawnError::Spawned("config is not TOML"))?;
    let store = value
        .entry("store")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(store) = store.as_table_mut() else {
        return Err(SpawnError::Spawned(
            "config has a [store] that is not a table",
        ));
    };
    store.insert("url".into(), toml::Value::String(url.to_owned()));
    let path = fleet_dir.join(format!("config.shared-store.{}.toml", std::process::id()));
    let text =
        toml::to_string(&value).map_err(|_| SpawnError::Spawned("config cannot be written"))?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Start the spawned target of `spec` on `own` (a loopback address): one server, or `replicas`
/// on `store_url`.
pub async fn spawn(
    own: std::net::Ipv4Addr,
    spec: &TargetSpec,
    fleet_dir: &Path,
    store: &str,
    limits_json: &str,
    token: &str,
) -> Result<Spawned, SpawnError> {
    let n = spec.replicas.unwrap_or(1);
    if n == 0 {
        return Err(SpawnError::Replicas("replicas must be at least 1"));
    }
    if n > 1 && spec.store_url.is_none() {
        return Err(SpawnError::Replicas(
            "replicas > 1 needs store_url (a shared PostgreSQL store)",
        ));
    }
    let exe = spec.server_exe.as_deref();
    let config = match &spec.store_url {
        Some(url) => shared_store_config(fleet_dir, url)?,
        None => fleet_dir.join("config.toml"),
    };
    let started = spawn_all(exe, &config, (own, n), store, limits_json, token).await;
    if spec.store_url.is_some() {
        let _ = std::fs::remove_file(&config);
    }
    started
}

async fn spawn_all(
    exe: Option<&str>,
    config: &Path,
    (own, n): (std::net::Ipv4Addr, u32),
    store: &str,
    limits_json: &str,
    token: &str,
) -> Result<Spawned, SpawnError> {
    let (first, bound) = spawn_server(exe, config, &format!("{own}:0"), store, limits_json).await?;
    let shared = bound.devices.to_string();
    let mut others = Vec::new();
    for _ in 1..n {
        let (child, b) = spawn_server(exe, config, &shared, store, limits_json).await?;
        let admin = b.admin.ok_or(SpawnError::Spawned("has no admin API"))?;
        others.push(Replica {
            admin: AdminClient::new(&format!("http://{admin}"), Some(token.to_owned()))?,
            child: Box::new(child),
        });
    }
    Ok(Spawned {
        first,
        bound,
        others,
    })
}

/// What the other replicas counted (fresh processes: everything is this run's); a replica that
/// cannot be read counts nothing.
pub async fn counters(replicas: &[Replica]) -> CounterSet {
    let mut c = CounterSet::default();
    for r in replicas {
        c = c.plus(&super::remote::read(&r.admin).await.unwrap_or_default());
    }
    c
}

impl Replica {
    /// Its admin API.
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }
}

/// Stop the other replicas.
pub async fn stop(replicas: Vec<Replica>) {
    for mut r in replicas {
        let _ = r.child.kill().await;
    }
}
