//! `dps-loadgen verify-capture`: the command around [`dps_loadgen::capture`].

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use dps_loadgen::capture;
use dps_loadgen::exit;

/// Compare the run in `results` with `capture_file` and print the comparison.
pub fn main(results: &Path, capture_file: &Path, json: bool) -> ExitCode {
    let compared = match capture::verify(results, capture_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("verify-capture: {e}");
            return ExitCode::from(exit::BAD_SCENARIO);
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&compared).unwrap_or_default() + "\n"
    } else {
        let beside = capture::summary_beside_wire(results, &compared).unwrap_or_default();
        format!("{}\n{beside}", capture::markdown(&compared))
    };
    let _ = write!(std::io::stdout().lock(), "{text}");
    if compared.agrees() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::THRESHOLD_FAILED)
    }
}
