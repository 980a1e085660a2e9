//! Scale-out: several generators on one server, and one generator on several replicas.
//!
//! - Two segments of one scenario run at the same time against one remote DPS: neither deletes
//!   the fleet's set-up under the other (no false rejects), the set-up stays for whoever runs
//!   next (and a later unsegmented run, finding it identical, leaves it too), and the merge
//!   counts the server's rejections and TPM refusals once, equal to what the fleet expects; a
//!   segment with another build of the fleet is refused instead of replacing its groups.
//! - `[target] spawn = true, replicas = 2, store_url` on a throwaway PostgreSQL: every device
//!   provisioned, both replicas took connections (the shared device port spreads them).

use std::path::Path;

use dps_loadgen::scenario::Scenario;
use dps_loadgen::segment::Segment;
use dps_loadgen::{exit, merge, run_loaded};

mod common;
use common::{postgres, remote_server, write};

/// Fleet and executor of the shared-server scenario: valid devices, refused ones (rejections
/// the server counts) and TPMs (enrollments and 4.01 refusals), held a moment so that the two
/// segments' windows overlap.
const SHARED: &str = r#"
[fleet]
seed = 57
devices = 24
mix = { valid = 3, blacklisted = 1, unmatched = 1, tpm = 1, tpm_unenrolled = 1 }
[executor]
kind = "hold"
rate = 40.0
connect_concurrency = 4
hold = "2s"
ping_interval = "5s"
"#;

fn remote_scenario(server: &Path, addrs: (std::net::SocketAddr, std::net::SocketAddr)) -> String {
    let (devices, admin) = addrs;
    format!(
        "name = \"shared\"\nthresholds = [\"mismatches == 0\", \"errors == 0\"]\n[target]\n\
         address = \"{devices}\"\nadmin = \"http://{admin}\"\nadmin_token_file = \"{token}\"\n\
         server_ca = \"{ca}\"\n{SHARED}",
        token = server.join("admin-token").display(),
        ca = server.join("server-ca.pem").display(),
    )
}

/// How many objects the admin API lists at `path`.
async fn listed(client: &dps_loadgen::target::AdminClient, path: &str) -> usize {
    let v: serde_json::Value = client.get_json(path).await.expect("list");
    v.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_share_one_remote_server_and_merge_counts_it_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server_dir = tmp.path().join("dps");
    let addrs = remote_server(&server_dir).await;
    let text = remote_scenario(&server_dir, addrs);
    let loaded = Scenario::parse(&text, "shared.toml", "shared").expect("scenario");
    let segment = |index| {
        let mut l = loaded.clone();
        l.segment = Some(Segment { index, count: 2 });
        l
    };
    let (one, two) = (segment(1), segment(2));
    let (out1, out2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    let (a, b) = tokio::join!(
        run_loaded(&one, Some(&out1), &|_| {}, None),
        run_loaded(&two, Some(&out2), &|_| {}, None)
    );
    let dirs: Vec<_> = [a, b]
        .into_iter()
        .map(|done| {
            let done = done.expect("segment");
            let s = &done.outcome.summary;
            assert_eq!(done.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
            assert_eq!((s.false_rejects, s.errors), (0, 0));
            assert!(
                s.server_counters.is_some(),
                "a remote segment records the counters"
            );
            done.results_dir.expect("written")
        })
        .collect();
    let merged = merge::merge(&dirs, &tmp.path().join("merged")).expect("merge");
    let m = &merged.outcome.summary;
    assert_eq!(m.mismatches, 0, "{:#?}", m.mismatch_examples);
    assert!(m.expected_rejections.values().sum::<u64>() > 0);
    assert_eq!(m.server_rejections, m.expected_rejections, "counted once");
    assert!(m.expected_tpm_refusals > 0);
    assert_eq!(m.server_tpm_refusals, Some(m.expected_tpm_refusals));
    assert!(m.server_counters.is_none());

    // The set-up is left for the others: init's two groups and the fleet's.
    let token = std::fs::read_to_string(server_dir.join("admin-token")).expect("token");
    let client = dps_loadgen::target::AdminClient::new(
        &format!("http://{}", addrs.1),
        Some(token.trim().to_owned()),
    )
    .expect("client");
    let groups = listed(&client, "/api/v1/enrollment-groups").await;
    assert!(groups > 2, "the fleet's groups were deleted: {groups}");
    let tpm = listed(&client, "/api/v1/tpm-enrollments").await;
    assert!(tpm > 0, "the fleet's TPM enrollments were deleted");
    // An unsegmented run finds them identical: it did not create them, so it leaves them.
    let done = run_loaded(&loaded, None, &|_| {}, None).await.expect("run");
    assert_eq!(done.exit_code, exit::PASS);
    assert_eq!(listed(&client, "/api/v1/enrollment-groups").await, groups);
    assert_eq!(listed(&client, "/api/v1/tpm-enrollments").await, tpm);
    // A segment with another build of the fleet (its own keys) is refused rather than replacing
    // the groups the other segments' devices use.
    let other_cache = tempfile::tempdir().expect("tmp");
    let refused = dps_loadgen::run::run_with_cache(&segment(1), other_cache.path(), &|_| {})
        .await
        .expect_err("a different fleet build is refused");
    assert!(
        refused.to_string().contains("one build of the fleet"),
        "{refused}"
    );
    assert_eq!(listed(&client, "/api/v1/enrollment-groups").await, groups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spawned_replicas_on_postgresql_share_the_devices() {
    let Some(cluster) = postgres::cluster() else {
        return; // skipped, printed (fails instead under DPS_REQUIRE_POSTGRES)
    };
    // The test binary is not dps-loadgen: point the spawn at the real one.
    std::env::set_var("DPS_LOADGEN_SERVER_EXE", env!("CARGO_BIN_EXE_dps-loadgen"));
    let tmp = tempfile::tempdir().expect("tmp");
    let url = cluster.database();
    let scenario = write(
        tmp.path(),
        "replicas.toml",
        &format!(
            r#"name = "replicas"
thresholds = ["mismatches == 0", "errors == 0"]
[target]
spawn = true
replicas = 2
store_url = "{url}"
[fleet]
seed = 58
devices = 60
mix = {{ valid = 1 }}
[executor]
kind = "closed-loop"
concurrency = 8
"#
        ),
    );
    let done = dps_loadgen::run_scenario(&scenario, None, &|_| {})
        .await
        .expect("run");
    let s = &done.outcome.summary;
    assert_eq!(done.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    assert_eq!(s.provisioned, 60, "every device provisioned");
    assert_eq!(s.server_replicas.len(), 2, "{:?}", s.server_replicas);
    for r in &s.server_replicas {
        assert!(
            r.handshakes_accepted > 0,
            "a replica took no device: {:?}",
            s.server_replicas
        );
    }
    let total: u64 = s
        .server_replicas
        .iter()
        .map(|r| r.handshakes_accepted)
        .sum();
    assert_eq!(total, s.handshakes, "{:?}", s.server_replicas);
    // Every identity the devices were given is in the shared database, once.
    let db = url.rsplit('/').next().expect("db name");
    let ids = cluster.sql(db, "SELECT count(*) FROM identities");
    assert_eq!(ids.trim(), "60", "device ids held in PostgreSQL");
    let records = cluster.sql(
        db,
        "SELECT count(*), count(DISTINCT value::json->>'device_id') FROM records",
    );
    assert_eq!(
        records.trim(),
        "60|60",
        "one record per device, no device id twice"
    );
    // Id by id: each device id the devices were answered is the one their record holds.
    let answered = &done.outcome.identities;
    assert_eq!(answered.len(), 60, "{answered:?}");
    let stored = cluster.sql(
        db,
        "SELECT string_agg(value::json->>'device_id', ',' ORDER BY value::json->>'device_id') \
         FROM records",
    );
    let mut ids: Vec<&str> = answered.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        stored.trim(),
        ids.join(","),
        "the answered ids are the stored ones"
    );
}
