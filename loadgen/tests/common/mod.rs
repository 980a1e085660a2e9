//! Helpers shared by the load generator's integration tests: a scenario file written, a DPS run
//! as an operator runs it (init's set-up, admin API), and (through the server crate's own copy,
//! not duplicated here) a throwaway PostgreSQL cluster.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::sync::Arc;

#[path = "../../../server/tests/common/postgres.rs"]
pub mod postgres;

/// `text` written to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// A DPS as an operator runs it: `init`'s demo set-up, with the admin API.
pub async fn remote_server(dir: &Path) -> (std::net::SocketAddr, std::net::SocketAddr) {
    dps_server::init::init(dir, false).expect("init");
    let config = dps_server::config::Config::load(&dir.join("config.toml")).expect("config");
    let server = Arc::new(dps_server::server::Server::from_config(&config).expect("server"));
    let devices = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addrs = (
        devices.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let token = config
        .admin_token()
        .expect("token")
        .expect("init writes one");
    let state = server.admin_state(&config, token);
    tokio::spawn(dps_server::admin::serve(
        admin,
        state,
        std::future::pending(),
    ));
    tokio::spawn(server.run(devices, std::future::pending()));
    addrs
}
