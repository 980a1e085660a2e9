//! The `oauth2` access-token provider against a real OpenID provider: the certified `oidc-provider`
//! npm package, started with node from server/tests/oidc/ (client-credentials grant, JWT access
//! tokens carrying the owner and device id the DPS sends as form values). Checks that the token
//! reaches the device, is cached per owner and device (the provider sees one request), and that a
//! stopped or silent provider gives the device 5.03 with Max-Age well within the handshake
//! timeout instead of a hang.
//!
//! Skips (with a message) only when `node` is missing. The package is taken from
//! server/tests/oidc/node_modules when `.ci/run` installed it there, else `npm ci` installs it
//! once under the cargo target directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::daemon::{cloud_configuration, http_get, run};
use common::server::decoded;
use dps_server::config::ConfigFile;
use dps_server::init::{ids, init};
use dps_server::proto::body::CloudConfigurationResponse;
use dps_server::proto::coap::{option, Code};
use dps_server::token::config::{ClientAuth, OAuth2Config};
use dps_server::token::{AuthorizationConfig, ProviderKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT_ID: &str = "dps";
const CLIENT_SECRET: &str = "fixture-secret-0123456789";
const AUDIENCE: &str = "https://hub.dpsbench.test";
/// The device port's default handshake timeout: a token failure must be answered well before.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The directory holding provider.mjs with `oidc-provider` installed beside it.
fn fixture_dir() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if source
        .join("node_modules/oidc-provider/package.json")
        .exists()
    {
        return source;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-fixture");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    for f in ["package.json", "package-lock.json", "provider.mjs"] {
        std::fs::copy(source.join(f), dir.join(f)).expect("copy fixture");
    }
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (node is installed, so npm should be)");
        assert!(
            status.success(),
            "npm ci of the oidc-provider fixture failed"
        );
    }
    dir
}

/// A running provider: its issuer and the number of token requests it has seen.
struct Provider {
    child: tokio::process::Child,
    issuer: String,
    requests: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(dir: &Path) -> Self {
        let mut child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read")
                    .expect("provider exited");
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return issuer.to_owned();
                }
            }
        })
        .await
        .expect("the provider listens within 60 s");
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "token request" {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Self {
            child,
            issuer,
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill the provider");
    }
}

/// `dps-server init` in `dir`, its hub switched to the oauth2 provider at `token_url`.
fn oauth2_setup(dir: &Path, token_url: &str, timeout_ms: u64) -> PathBuf {
    init(dir, false).expect("init");
    std::fs::write(dir.join("oidc-secret"), format!("{CLIENT_SECRET}\n")).expect("secret");
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let mut file: ConfigFile = toml::from_str(&text).expect("parse");
    file.hub[0].authorization = Some(AuthorizationConfig {
        provider: ProviderKind::Oauth2,
        oauth2: Some(OAuth2Config {
            token_url: token_url.into(),
            client_id: CLIENT_ID.into(),
            client_secret_file: "oidc-secret".into(),
            audience: Some(AUDIENCE.into()),
            scopes: vec!["hub".into()],
            client_auth: ClientAuth::ClientSecretBasic,
            ca_file: None,
            timeout_ms,
            retry_after_s: 17,
        }),
        ..AuthorizationConfig::default()
    });
    std::fs::write(&path, toml::to_string(&file).expect("serialize")).expect("write");
    path
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&B64.decode(payload).expect("base64url")).expect("JSON")
}

/// The device is told to come back later, quickly: 5.03 with the configured Max-Age.
fn assert_unavailable(frame: &dps_server::proto::coap::Frame, took: Duration) {
    assert_eq!(
        frame.code,
        Code::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&frame.payload)
    );
    assert_eq!(frame.uint_option(option::MAX_AGE), Some(17));
    assert!(took < HANDSHAKE_TIMEOUT, "answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_real_openid_provider_and_are_cached() {
    if !node_available() {
        eprintln!("SKIPPED token_oauth2: `node` is not installed, so the OpenID provider fixture cannot run");
        return;
    }
    let fixture = tokio::task::spawn_blocking(fixture_dir)
        .await
        .expect("install");
    let provider = Provider::start(&fixture).await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = oauth2_setup(dir.path(), &format!("{}/token", provider.issuer), 2000);
    let daemon = run(&config).await;
    let devices = daemon.bound.devices;

    let di = uuid::Uuid::new_v4().to_string();
    let first: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), devices, &di).await,
        Code::CHANGED,
    );
    let c = claims(&first.at);
    assert_eq!(c["iss"], provider.issuer.as_str());
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["https://plgd.dev/owner"], ids::OWNER);
    assert_eq!(c["https://plgd.dev/deviceId"], di.as_str());
    assert_eq!(provider.requests(), 1);

    // The same owner and device again, on a new connection: the cached token.
    let again: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), devices, &di).await,
        Code::CHANGED,
    );
    assert_eq!(again.at, first.at);
    assert_eq!(provider.requests(), 1, "served from the cache");

    // Another device id is another token.
    let other_di = uuid::Uuid::new_v4().to_string();
    let other: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), devices, &other_di).await,
        Code::CHANGED,
    );
    assert_eq!(
        claims(&other.at)["https://plgd.dev/deviceId"],
        other_di.as_str()
    );
    assert_eq!(provider.requests(), 2);

    // The provider stops: cached tokens still serve, a new device is told to come back.
    provider.stop().await;
    let cached: CloudConfigurationResponse = decoded(
        &cloud_configuration(dir.path(), devices, &di).await,
        Code::CHANGED,
    );
    assert_eq!(cached.at, first.at);
    let started = Instant::now();
    let refused = cloud_configuration(dir.path(), devices, &uuid::Uuid::new_v4().to_string()).await;
    assert_unavailable(&refused, started.elapsed());

    let (_, metrics) = http_get(daemon.admin(), "/metrics", None).await;
    for line in [
        "dps_tokens_issued_total{provider=\"oauth2\",source=\"endpoint\"} 2",
        "dps_tokens_issued_total{provider=\"oauth2\",source=\"cache\"} 2",
        "dps_token_failures_total{provider=\"oauth2\",reason=\"unreachable\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_token_endpoint_gives_5_03_after_the_deadline_not_a_hang() {
    // No provider needed: a port that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/token", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tmp");
    let config = oauth2_setup(dir.path(), &url, 1000);
    let daemon = run(&config).await;

    let slow_done = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let (slow, (time, slow_done_first)) = tokio::join!(
        async {
            let frame = cloud_configuration(dir.path(), daemon.bound.devices, "slow-device").await;
            slow_done.store(true, Ordering::SeqCst);
            frame
        },
        // Another device's request on another connection is not held up behind it.
        async {
            let tls = common::server::connect(
                dir.path(),
                daemon.bound.devices,
                Some(common::server::demo_device(dir.path())),
            )
            .await
            .expect("handshake");
            let mut dev = dps_server::proto::stream::FramedIo::new(tls, 64 * 1024);
            let _csm = dev.read_frame().await.expect("read").expect("csm");
            let frame = dev
                .exchange(&common::server::request(Code::GET, 1, "/x.plgd.dev/time"))
                .await
                .expect("time");
            (frame.code, slow_done.load(Ordering::SeqCst))
        }
    );
    assert_unavailable(&slow, started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the deadline was waited for"
    );
    assert_eq!(time, Code::CONTENT);
    assert!(
        !slow_done_first,
        "the other device was answered while the token request was pending"
    );
    let (_, metrics) = http_get(daemon.admin(), "/metrics", None).await;
    assert!(
        metrics.contains("dps_token_failures_total{provider=\"oauth2\",reason=\"timeout\"} 1"),
        "{metrics}"
    );
    drop(silent);
    daemon.stop().await;
}
