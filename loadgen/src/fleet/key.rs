//! A fleet's identity: the key of its `[fleet]` section, under which the cache keeps it and from
//! which the ids of its groups and enrollments are derived (stable across reruns).

use crate::spec::FleetSpec;

/// Version of the on-disk format and of the generator: bump it when either changes, so that old
/// entries are regenerated instead of misread.
pub const FORMAT: u32 = 4;

/// The cache key of a `[fleet]` section: FNV-1a over the format version and every field that
/// shapes the fleet (not the `cache` switch).
pub fn key(spec: &FleetSpec) -> String {
    let shape = serde_json::json!({
        "format": FORMAT,
        "seed": spec.seed,
        "devices": spec.devices,
        "key": spec.key,
        "mix": spec.mix,
    });
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shape.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// An id stable per fleet and `what`: a rerun against a remote server replaces its own groups, and
/// fleets of other seeds get other ids.
pub(crate) fn stable_id(fleet_key: &str, what: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("dpsbench/fleet/{fleet_key}/{what}").as_bytes(),
    )
    .to_string()
}
