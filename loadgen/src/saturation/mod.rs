//! The generator's own limits, so that a run says when the generator, not the target, limited
//! it: CPU of this process and of a spawned server ([`cpu`]), the ephemeral ports toward the target
//! and the loopback source addresses a run spreads over ([`ports`]), the port budget checked before
//! any device starts ([`budget`]), the meters the devices and executor feed ([`meter`]), a sampler
//! thread that watches CPU and ports during the run ([`sampler`]), the public-key floor a side's CPU
//! per device is read against ([`floor`]), and the summary's `generator`
//! section with its verdict ([`figures`], [`verdict`]).
//!
//! A low layer: it imports only [`crate::spec`] and [`crate::metrics`], so that the devices (which
//! bind their sockets as [`ports`] says and feed [`meter::ConnectMeter`]) and the executor (which
//! feeds [`meter::StartMeter`]) can use it.

pub mod budget;
pub mod cpu;
pub mod figures;
pub mod floor;
pub mod meter;
pub mod ports;
pub mod sampler;
pub mod verdict;

pub use budget::{PortBudgetError, PortPlan};
pub use figures::{FloorFigures, GeneratorSummary, LimitedBy, Measured, Outcomes};
pub use floor::Floor;
pub use meter::{ConnectMeter, StartMeter};

/// The summary's `generator` section: the figures of `m` with the devices' outcomes `o`, judged.
pub fn summarize(m: &Measured, o: &Outcomes) -> GeneratorSummary {
    let mut summary = figures::figures(m, o);
    let judged = verdict::judge(&summary, m, o);
    summary.limited_by = judged.limited_by;
    summary.reasons = judged.reasons;
    summary.notes.extend(judged.notes);
    summary
}
