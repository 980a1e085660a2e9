//! `[target]` and `[server_limits]`: where the server is, and what a scenario changes of the
//! limits of the fleet's own server.

use serde::{Deserialize, Serialize};

/// `[target]`: where the server is. Absent (or without `address`): an embedded server on
/// loopback, set up for the fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Run the fleet's server in a child process instead of in-process: the same server, with its
    /// own file-descriptor limit (tens of thousands of connections need one per end) and its own
    /// memory, measured apart from the generator's. Read over its admin API like a remote one.
    #[serde(default)]
    pub spawn: bool,
    /// With `spawn`: the `dps-loadgen` executable the server runs in (default this one, or
    /// `$DPS_LOADGEN_SERVER_EXE`), so that `ab` can compare two server builds on one fleet.
    #[serde(default)]
    pub server_exe: Option<String>,
    /// With `spawn`: how many `dps-server run` replicas to start (default 1). More than one
    /// needs `store_url`: the replicas share that PostgreSQL database and the device port
    /// (`SO_REUSEPORT`, the kernel spreads the devices); each has its own admin API.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// With `spawn`: the spawned server's store is this PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB`, its `[store] url`) instead of a fresh embedded file.
    #[serde(default)]
    pub store_url: Option<String>,
    /// Device port of a running server (`host:port`); absent = embedded server.
    #[serde(default)]
    pub address: Option<String>,
    /// Its admin API (`http://host:port`): the fleet's hub and groups are set up there before
    /// the run (an identical one left as it is) and what the run created is deleted after it
    /// (not by a segment of several, which share them), and the server's histograms and
    /// rejection counters are read from it. Required with `address`.
    #[serde(default)]
    pub admin: Option<String>,
    /// With `admin`: the admin APIs of the target's other replicas (`http://host:port` each, same
    /// token), when `address` is a device port several replicas share. Their counters
    /// (rejections, closes, TPM refusals, open connections) are added to `admin`'s; the fleet is
    /// set up through `admin` alone (the replicas share its store).
    #[serde(default)]
    pub replica_admins: Vec<String>,
    /// File holding the admin bearer token (as `dps-server init` writes it).
    #[serde(default)]
    pub admin_token_file: Option<String>,
    /// PEM of the CA the server certificate chains to (devices verify the server with it);
    /// required unless `device.skip_server_verification`.
    #[serde(default)]
    pub server_ca: Option<String>,
    /// `address` is a TLS server that is not driven by the load generator (a peer such as nginx
    /// configured with the fleet's trust anchors, or a DPS already configured with the fleet's
    /// groups): it has no admin API and nothing is created on it, so only `valid` devices run,
    /// handshake only, and a device reads the verdict from how the server ends the connection
    /// (see [`crate::device`]). This is what lets one executor measure our server and a peer the
    /// same way.
    #[serde(default)]
    pub tls_only: bool,
}

/// `[server_limits]`: what a scenario may change of the server's `[limits]`; unset keys keep the
/// server's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Connections served at once.
    pub max_connections: Option<u32>,
    /// TLS handshake deadline, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// Idle connections close after this, ms.
    pub inactivity_timeout_ms: Option<u64>,
    /// Largest CoAP message, bytes.
    pub max_message_size: Option<u32>,
    /// Provisioning requests per second (0 = unlimited).
    pub max_requests_per_second: Option<u32>,
    /// Failed handshakes per second per source address before shedding (0 = off).
    pub failed_handshakes_per_ip_per_s: Option<u32>,
    /// Burst of the failed-handshake budget.
    pub failed_handshakes_burst: Option<u32>,
    /// Handshakes in progress at once per source address (0 = no cap).
    pub pending_handshakes_per_ip: Option<u32>,
    /// Max-Age (seconds) of the 5.03 answered beyond `max_connections`.
    pub busy_retry_after_s: Option<u32>,
    /// Handshake steps at once (0 = the server's overload control off, to see what it buys).
    pub cpu_slots: Option<u32>,
    /// Longest CPU-queue wait of a new connection's first flight, ms.
    pub queue_timeout_ms: Option<u64>,
    /// The same once the queue is congested, ms.
    pub queue_target_ms: Option<u64>,
    /// How long the queue stays non-empty before it counts as congested, ms.
    pub queue_interval_ms: Option<u64>,
    /// Connections that sent nothing yet before the oldest is evicted.
    pub max_silent_connections: Option<u32>,
}

impl LimitsOverride {
    /// Apply to a server's limits.
    pub fn apply(&self, l: &mut dps_server::config::LimitsSection) {
        if let Some(v) = self.max_connections {
            l.max_connections = v;
        }
        if let Some(v) = self.handshake_timeout_ms {
            l.handshake_timeout_ms = v;
        }
        if let Some(v) = self.inactivity_timeout_ms {
            l.inactivity_timeout_ms = v;
        }
        if let Some(v) = self.max_message_size {
            l.max_message_size = v;
        }
        if let Some(v) = self.max_requests_per_second {
            l.max_requests_per_second = v;
        }
        if let Some(v) = self.failed_handshakes_per_ip_per_s {
            l.failed_handshakes_per_ip_per_s = v;
        }
        if let Some(v) = self.failed_handshakes_burst {
            l.failed_handshakes_burst = v;
        }
        if let Some(v) = self.pending_handshakes_per_ip {
            l.pending_handshakes_per_ip = v;
        }
        if let Some(v) = self.busy_retry_after_s {
            l.busy_retry_after_s = v;
        }
        if let Some(v) = self.cpu_slots {
            l.cpu_slots = Some(v);
        }
        if let Some(v) = self.queue_timeout_ms {
            l.queue_timeout_ms = v;
        }
        if let Some(v) = self.queue_target_ms {
            l.queue_target_ms = v;
        }
        if let Some(v) = self.queue_interval_ms {
            l.queue_interval_ms = v;
        }
        if let Some(v) = self.max_silent_connections {
            l.max_silent_connections = v;
        }
    }

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
