//! Config file text: parsing never panics, and the groups of a config that parses are validated
//! by the arena exactly as `run` and `check-chain` do (refusal is fine, a panic is not).
#![no_main]

use std::path::Path;

use dps_server::config::{Config, ConfigFile};
use dps_server::enrollment::Arena;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Chains given as file paths are read from disk; keep the fuzzer away from absolute paths
    // (/dev/zero would be read forever). Relative ones resolve under a directory that does not
    // exist.
    if let Ok(file) = toml::from_str::<ConfigFile>(text) {
        if file.enrollment_group.iter().any(|g| {
            !g.certificate_chain.contains("-----BEGIN")
                && !g.certificate_chain.is_empty()
                && (g.certificate_chain.starts_with('/') || g.certificate_chain.contains(".."))
        }) {
            return;
        }
    }
    let Ok(config) = Config::parse(text, Path::new("/nonexistent-dps-fuzz/config.toml")) else {
        return;
    };
    let _ = config.store_location();
    let _ = Arena::with_groups(config.groups);
});
