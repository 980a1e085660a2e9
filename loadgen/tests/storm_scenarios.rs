//! The shipped storm scenarios, shrunk to a smoke test's size (the lead measures them at full
//! size): `power-on.toml` and `overload.toml` load, keep their retry policy and thresholds, and
//! run end to end against a spawned server with a storm section in the summary.

use std::path::Path;

use dps_loadgen::scenario::{RetryPolicy, Scenario};
use dps_loadgen::{exit, run};

/// The shipped scenario `name`, with `edit` applied to its TOML.
fn shipped(name: &str, edit: impl FnOnce(&mut toml::Table)) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("scenario");
    // As shipped, it loads.
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut doc: toml::Table = toml::from_str(&text).expect("toml");
    edit(&mut doc);
    toml::to_string(&doc).expect("toml")
}

fn table<'a>(doc: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    doc.get_mut(key)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("[{key}]"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_on_and_overload_run_small() {
    // The test binary is not dps-loadgen: point the spawn at the real one.
    std::env::set_var("DPS_LOADGEN_SERVER_EXE", env!("CARGO_BIN_EXE_dps-loadgen"));
    let power_on = shipped("power-on.toml", |doc| {
        table(doc, "fleet").insert("devices".into(), 150.into());
        // 150 devices within half a second.
        table(doc, "executor").insert("rate".into(), 300.0.into());
    });
    let overload = shipped("overload.toml", |doc| {
        table(doc, "fleet").insert("devices".into(), 100.into());
        let executor = table(doc, "executor");
        executor.insert("start_rate".into(), 50.0.into());
        let stages: toml::Value =
            toml::from_str::<toml::Table>("s = [{ target = 150.0, duration = \"1s\" }]")
                .expect("stages")["s"]
                .clone();
        executor.insert("stages".into(), stages);
    });
    for (name, text) in [("power-on", power_on), ("overload", overload)] {
        let cache = tempfile::tempdir().expect("tmp");
        let loaded = Scenario::parse(&text, &format!("{name}.toml"), name).expect("scenario");
        assert_eq!(loaded.retry.default.name(), RetryPolicy::Iotivity, "{name}");
        let outcome = run::run_with_cache(&loaded, cache.path(), &|_| {})
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = &outcome.summary;
        assert_eq!(s.server.kind, "spawned", "{name}");
        assert_eq!(
            (s.mismatches, s.false_accepts, s.false_rejects),
            (0, 0, 0),
            "{name}: {:#?}",
            s.mismatch_examples
        );
        let storm = s.storm.as_ref().expect("storm");
        assert_eq!(storm.must_get_in, s.devices, "{name}");
        assert_eq!(storm.got_in, s.provisioned, "{name}");
        assert!(storm.server_closes.is_some(), "{name}: read over /metrics");
        assert_eq!(s.retry_policy, RetryPolicy::Iotivity);
        let verdicts = [
            "mismatches == 0",
            "false_accepts == 0",
            "false_rejects == 0",
        ];
        for t in &s.thresholds {
            if verdicts.contains(&t.threshold.as_str()) {
                assert!(t.passed, "{name}: {t:?}");
            }
        }
        if name == "power-on" {
            // Small enough for the server: every device in, the time-to-99 % bound held.
            assert_eq!(s.provisioned, s.devices, "{:#?}", s.mismatch_examples);
            assert!(
                storm.time_to_99_us.is_some() && storm.recovered,
                "{storm:?}"
            );
            assert_eq!(dps_loadgen::exit_code(s), exit::PASS, "{:#?}", s.thresholds);
        }
    }
}
