//! The `dps-server` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dps_server::check_chain::{check_chain, CheckOutput};
use rustls_pki_types::UnixTime;

#[derive(Parser)]
#[command(
    name = "dps-server",
    version,
    about = "IoT Device Provisioning Service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a working demo set-up (PKI, config, a demo device) into DIR.
    Init {
        /// Target directory (created if missing).
        dir: PathBuf,
        /// Overwrite an existing set-up.
        #[arg(long)]
        force: bool,
    },
    /// Start the DPS: the device port (CoAP over TLS over TCP) serves until SIGTERM or Ctrl-C.
    Run {
        /// The server config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Device port address, overriding `[server] listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Admin API address, overriding `[admin] listen` (and enabling the admin API).
        #[arg(long)]
        admin_listen: Option<String>,
    },
    /// Judge a device chain against a config exactly as the server would (no TLS, so possession of
    /// the key is not checked). Prints one JSON object; exit 0 accepted, 3 rejected, 2 bad input.
    CheckChain {
        /// The server config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The device chain, PEM, leaf first.
        #[arg(long)]
        chain: PathBuf,
        /// Judge at this time (RFC 3339) instead of now.
        #[arg(long, value_parser = parse_time)]
        at: Option<UnixTime>,
    },
}

fn parse_time(s: &str) -> Result<UnixTime, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time: {e}"))?;
    let secs = u64::try_from(t.unix_timestamp()).map_err(|_| "time before 1970".to_owned())?;
    Ok(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

async fn run(
    config: PathBuf,
    listen: Option<String>,
    admin_listen: Option<String>,
) -> anyhow::Result<()> {
    let config = dps_server::config::Config::load(&config)?;
    dps_server::daemon::run(
        &config,
        listen,
        admin_listen,
        |bound| {
            for line in dps_server::daemon::bound_lines(bound) {
                println!("{line}");
            }
        },
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            listen,
            admin_listen,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, listen, admin_listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Init { dir, force } => match dps_server::init::init(&dir, force) {
            Ok(report) => {
                println!(
                    "wrote {} files; config: {}",
                    report.files.len(),
                    report.config.display()
                );
                println!(
                    "try: dps-server check-chain --config {} --chain {}",
                    report.config.display(),
                    dir.join("device-chain.pem").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckChain { config, chain, at } => {
            let at = at.unwrap_or_else(UnixTime::now);
            match check_chain(&config, &chain, at) {
                Ok(verdict) => {
                    let out = CheckOutput::from(&verdict);
                    match serde_json::to_string(&out) {
                        Ok(line) => println!("{line}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    }
                    ExitCode::from(out.exit_code() as u8)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
