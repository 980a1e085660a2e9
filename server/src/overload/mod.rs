//! Overload control on the device port: goodput close to capacity at any offered load.
//!
//! - [`silent`]: connections that have not spoken take no connection place, and the oldest of
//!   them make room for new ones.
//! - [`gate`]: a few CPU places for the handshake's heavy steps, continuing handshakes first,
//!   a bounded queue (controlled delay, adaptive LIFO) that sheds fresh connections before any
//!   public-key work.
//! - [`gated_io`]: the stream wrapper that puts each handshake flight through the gate.
//! - [`counters`]: what was shed and why, queue waits, handshake signatures, for `/metrics`.

pub mod counters;
pub mod gate;
pub mod gated_io;
pub mod silent;

pub use counters::{OverloadCounters, ShedReason};
pub use gate::{Class, CpuGate, GateSettings, Shed};
pub use gated_io::{is_shed, GatedIo};
pub use silent::SilentPool;
