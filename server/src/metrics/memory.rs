//! The process's resident memory, read from `/proc` for `/metrics`.

use serde::{Deserialize, Serialize};

/// Resident memory of this process, from `/proc/self/status` (Linux): what one connection costs is
/// read off it under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentMemory {
    /// Bytes resident now (`VmRSS`).
    pub current: u64,
    /// Highest resident bytes so far (`VmHWM`).
    pub peak: u64,
}

/// This process's [`ResidentMemory`]; `None` where `/proc` does not tell.
pub fn resident_memory() -> Option<ResidentMemory> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    Some(ResidentMemory {
        current: kib("VmRSS:")?.saturating_mul(1024),
        peak: kib("VmHWM:")?.saturating_mul(1024),
    })
}
