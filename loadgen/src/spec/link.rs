//! `link = ...` in `[device]` and `[device.class.<class>]`: the network a simulated device sits
//! behind, as written: a preset's name (`"lte-m"`) or a table of parameters. Checking the values
//! and resolving presets is [`crate::link`]'s job.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A device's link as written: `link = "lte-m"` or `link = { rtt = "120ms", ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LinkSpec {
    /// A preset by name (`lan`, `lte-m`, `nb-iot`), or `none` for no emulation.
    Preset(String),
    /// Parameters, optionally on top of a preset.
    Custom(LinkTable),
}

/// `link = { rtt = "120ms", jitter = "20ms", bandwidth = "375kbit", loss = 0.01 }`. Every key is
/// optional: absent ones come from `preset`, else zero (no delay, unlimited bandwidth, no loss).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTable {
    /// Start from this preset and change only the keys given.
    #[serde(default)]
    pub preset: Option<String>,
    /// The label in the summary; default the preset's name with `+custom`, or `custom`.
    #[serde(default)]
    pub name: Option<String>,
    /// Round-trip time, e.g. `"120ms"`: half of it on the way out, half on the way back.
    #[serde(default, with = "humantime_serde")]
    pub rtt: Option<Duration>,
    /// Each one-way delay varies uniformly by up to this much either way, one draw per burst
    /// (at most rtt / 2).
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
    /// Both directions' bandwidth, e.g. `"375kbit"` (bit, kbit, Mbit, Gbit per second).
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// Device-to-server bandwidth; overrides `bandwidth` for that direction.
    #[serde(default)]
    pub uplink: Option<String>,
    /// Server-to-device bandwidth; overrides `bandwidth` for that direction.
    #[serde(default)]
    pub downlink: Option<String>,
    /// Probability that a TCP segment is lost (0 to 0.5); a lost segment arrives one
    /// retransmission timeout late (see docs/link-profiles.md).
    #[serde(default)]
    pub loss: Option<f64>,
}

/// Hand-written so that a string is a preset and a table keeps `deny_unknown_fields`' message
/// ("unknown field `rtx`, expected one of ..."), which an untagged enum would swallow.
impl<'de> Deserialize<'de> for LinkSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = LinkSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a link preset (\"lan\", \"lte-m\", \"nb-iot\", \"none\") or a table such as \
                     { rtt = \"120ms\", jitter = \"20ms\", bandwidth = \"375kbit\", loss = 0.01 }",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<LinkSpec, E> {
                Ok(LinkSpec::Preset(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LinkSpec, A::Error> {
                LinkTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(LinkSpec::Custom)
            }
        }
        d.deserialize_any(Either)
    }
}
