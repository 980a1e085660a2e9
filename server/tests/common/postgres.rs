//! A throwaway PostgreSQL cluster for the tests of the PostgreSQL store: one per test binary (in
//! a temporary directory, on a free loopback port, `fsync=on`), a fresh database per test. As root
//! the cluster runs as the `postgres` user (PostgreSQL refuses to run as root). A watcher stops
//! the cluster and removes its directory once the test binary has exited.
//!
//! Without PostgreSQL's binaries a test is skipped with a printed message, unless
//! `DPS_REQUIRE_POSTGRES` is set (as in CI), where it fails instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A running cluster.
pub struct Cluster {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// Run commands as this user (`None`: as ourselves).
    pub user: Option<&'static str>,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory holding `initdb` and `pg_ctl`: `DPS_PG_BIN`, Debian's newest
/// `/usr/lib/postgresql/*/bin`, or the one on `PATH`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DPS_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = debian.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// A command of the cluster's binaries (`initdb`, `pg_ctl`, `psql`...), as its user.
    pub fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Run `program args` and fail the test with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SQL through psql on `db`; its unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-AXqt",
                "-c",
                sql,
            ],
        )
    }

    /// A fresh, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "dps_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Restart the cluster (fast shutdown: every connection is cut).
    pub fn restart(&self) {
        let data = self.data.display().to_string();
        // With its log file again: otherwise the new server would hold this call's output pipe.
        let log = self.data.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-w", "-m", "fast", "-l", &log, "restart"],
        );
    }

    fn start() -> Option<Cluster> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("DPS_REQUIRE_POSTGRES").is_none(),
                "DPS_REQUIRE_POSTGRES is set but PostgreSQL's initdb/pg_ctl were not found \
                 (apt-get install postgresql, or set DPS_PG_BIN)"
            );
            eprintln!(
                "SKIPPED: PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql); \
                 set DPS_REQUIRE_POSTGRES=1 to fail instead"
            );
            return None;
        };
        let user = is_root().then_some("postgres");
        let data = std::env::temp_dir().join(format!("dps-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("cluster directory");
        if let Some(user) = user {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} {}", data.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = Cluster {
            bin,
            data,
            port,
            user,
        };
        cluster.init();
        Some(cluster)
    }

    fn init(&self) {
        let data = self.data.display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on \
             -c synchronous_commit=on -c max_connections=200",
            self.port, data
        );
        let log = Path::new(&data).join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-w", "-l", &log, "-o", &options, "start"],
        );
        self.watch();
    }

    /// Stop the cluster and remove its directory once this process has exited.
    // The watcher must outlive this process, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    fn watch(&self) {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        let stop = match self.user {
            Some(user) => format!("runuser -u {user} -- {pg_ctl} -D {data} -m immediate stop"),
            None => format!("{pg_ctl} -D {data} -m immediate stop"),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {data}",
            pid = std::process::id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cluster watcher");
    }
}

/// The test binary's cluster, started on first use; `None` (a skip, printed) without
/// PostgreSQL's binaries.
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER.get_or_init(Cluster::start).as_ref()
}
