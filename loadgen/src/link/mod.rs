//! Link profiles: the network each simulated device sits behind (round-trip time, jitter,
//! bandwidth, loss), emulated in user space in the device's own socket I/O (`device::link`), so
//! that a fleet on LTE-M or NB-IoT brings the server the concurrency such a fleet brings in the
//! field, and works against a remote target too. Presets and figures: docs/link-profiles.md.
//!
//! Imports only [`crate::spec`]: the scenario checks links with it, the devices apply them.

pub mod model;
mod profile;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use profile::{
    format_bandwidth, parse_bandwidth, LinkError, LinkProfile, LinkSummary, PRESETS,
};

use crate::spec::DeviceClass;
use model::Rng;

/// Which classes of a run go through which link (classes absent: no emulation), and the seed of
/// their random draws.
#[derive(Debug, Clone, Default)]
pub struct LinkPlan {
    by_class: BTreeMap<DeviceClass, Arc<LinkProfile>>,
    seed: u64,
    /// Connections opened under this plan, so each draws its own delays.
    opened: Arc<AtomicU64>,
}

impl LinkPlan {
    /// No class emulated yet; draws seeded from `seed` (the fleet's).
    pub fn new(seed: u64) -> Self {
        LinkPlan {
            seed,
            ..LinkPlan::default()
        }
    }

    /// Devices of `class` go through `profile`.
    pub fn set(&mut self, class: DeviceClass, profile: LinkProfile) {
        self.by_class.insert(class, Arc::new(profile));
    }

    /// The link of `class`, if it has one.
    pub fn for_class(&self, class: DeviceClass) -> Option<&Arc<LinkProfile>> {
        self.by_class.get(&class)
    }

    /// No class is emulated: every device talks to the target directly.
    pub fn is_empty(&self) -> bool {
        self.by_class.is_empty()
    }

    /// Every emulated class and its link.
    pub fn iter(&self) -> impl Iterator<Item = (DeviceClass, &LinkProfile)> {
        self.by_class.iter().map(|(c, p)| (*c, p.as_ref()))
    }

    /// The random source of a new connection of device `index`: from the plan's seed, the device
    /// and the number of connections opened so far (the draws are reproducible in distribution;
    /// which connection gets which depends on the order they open in).
    pub fn rng(&self, index: usize) -> Rng {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        let mut mix = Rng::seeded(self.seed ^ (index as u64).rotate_left(32) ^ n);
        Rng::seeded(mix.next_u64())
    }
}
