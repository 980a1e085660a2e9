//! dps-loadgen: the load generator. Its device fleets, executors and reports land with the load
//! generator issue; until then this binary only says so, so scripts fail loudly instead of
//! silently measuring nothing.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "dps-loadgen {}: the load generator is not built yet; use `dps-server check-chain` \
         (see README.md) to exercise the attestation core.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
