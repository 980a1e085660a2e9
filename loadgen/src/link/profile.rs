//! Link profiles in numbers: the presets (figures and sources in docs/link-profiles.md), and a
//! scenario's `link` resolved into one and checked, with the offending key named.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{LinkSpec, LinkTable};

/// The presets by name, for error messages and docs.
pub const PRESETS: [&str; 3] = ["lan", "lte-m", "nb-iot"];

/// The longest round trip a link may have: beyond this no device flow finishes.
const MAX_RTT: Duration = Duration::from_secs(60);
/// Slowest and fastest bandwidth accepted, bit/s.
const BANDWIDTH_RANGE: (u64, u64) = (1_000, 100_000_000_000);
/// Highest loss probability accepted: beyond it TCP barely works at all.
const MAX_LOSS: f64 = 0.5;
/// Linux's minimum retransmission timeout (`TCP_RTO_MIN`, 200 ms).
const MIN_RTO: Duration = Duration::from_millis(200);

/// A resolved link: what a device's connection goes through.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkProfile {
    /// The preset's name, or the table's label.
    pub name: String,
    /// Round-trip time (half each way).
    pub rtt: Duration,
    /// Largest deviation of a one-way delay either way (uniform), at most `rtt / 2`.
    pub jitter: Duration,
    /// Device-to-server bandwidth, bit/s; `None`: unlimited.
    pub uplink_bps: Option<u64>,
    /// Server-to-device bandwidth, bit/s; `None`: unlimited.
    pub downlink_bps: Option<u64>,
    /// Probability that a TCP segment is lost (and retransmitted one RTO later).
    pub loss: f64,
}

/// Why a `link` cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    /// The key inside the link table at fault (`rtt`, `bandwidth`, ...); `None`: the link itself.
    pub key: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

fn refuse<T>(key: Option<&'static str>, message: impl Into<String>) -> Result<T, LinkError> {
    Err(LinkError {
        key,
        message: message.into(),
    })
}

impl LinkProfile {
    /// A preset by name (`lan`, `lte-m`, `nb-iot`).
    pub fn preset(name: &str) -> Option<LinkProfile> {
        let ms = Duration::from_millis;
        let (rtt, jitter, up, down, loss) = match name {
            // Switched Ethernet on one site: sub-millisecond RTT, gigabit, no loss.
            "lan" => (
                Duration::from_micros(500),
                Duration::from_micros(100),
                1_000_000_000,
                1_000_000_000,
                0.0,
            ),
            // LTE Cat-M1 in normal coverage: ~100 ms end to end, half-duplex FDD peak rates.
            "lte-m" => (ms(100), ms(20), 375_000, 300_000, 0.001),
            // NB-IoT Cat-NB1: close to a second per round trip, tens of kbit/s.
            "nb-iot" => (ms(800), ms(300), 62_500, 26_000, 0.01),
            _ => return None,
        };
        Some(LinkProfile {
            name: name.to_owned(),
            rtt,
            jitter,
            uplink_bps: Some(up),
            downlink_bps: Some(down),
            loss,
        })
    }

    /// A scenario's `link`, checked; `Ok(None)` for `"none"` (no emulation).
    pub fn resolve(spec: &LinkSpec) -> Result<Option<LinkProfile>, LinkError> {
        match spec {
            LinkSpec::Preset(name) if name == "none" => Ok(None),
            LinkSpec::Preset(name) => match LinkProfile::preset(name) {
                Some(p) => Ok(Some(p)),
                None => refuse(None, unknown_preset(name)),
            },
            LinkSpec::Custom(table) => Self::from_table(table).map(Some),
        }
    }

    fn from_table(t: &LinkTable) -> Result<LinkProfile, LinkError> {
        let base = match &t.preset {
            Some(name) => match LinkProfile::preset(name) {
                Some(p) => p,
                None => return refuse(Some("preset"), unknown_preset(name)),
            },
            None => LinkProfile {
                name: "custom".into(),
                rtt: Duration::ZERO,
                jitter: Duration::ZERO,
                uplink_bps: None,
                downlink_bps: None,
                loss: 0.0,
            },
        };
        let bandwidth = |key: &'static str, text: &Option<String>| match text {
            Some(text) => parse_bandwidth(text)
                .map(Some)
                .map_err(|message| LinkError {
                    key: Some(key),
                    message,
                }),
            None => Ok(None),
        };
        let both = bandwidth("bandwidth", &t.bandwidth)?;
        let uplink = bandwidth("uplink", &t.uplink)?;
        let downlink = bandwidth("downlink", &t.downlink)?;
        let name = match (&t.name, &t.preset) {
            (Some(name), _) if name.trim().is_empty() => {
                return refuse(Some("name"), "must not be empty")
            }
            (Some(name), _) => name.clone(),
            (None, Some(preset)) => format!("{preset}+custom"),
            (None, None) => "custom".into(),
        };
        let p = LinkProfile {
            name,
            rtt: t.rtt.unwrap_or(base.rtt),
            jitter: t.jitter.unwrap_or(base.jitter),
            uplink_bps: uplink.or(both).or(base.uplink_bps),
            downlink_bps: downlink.or(both).or(base.downlink_bps),
            loss: t.loss.unwrap_or(base.loss),
        };
        p.check()?;
        Ok(p)
    }

    /// Values that make sense together.
    fn check(&self) -> Result<(), LinkError> {
        if self.rtt > MAX_RTT {
            return refuse(
                Some("rtt"),
                format!("{:?} is absurd: at most {MAX_RTT:?}", self.rtt),
            );
        }
        if self.jitter > self.rtt / 2 {
            return refuse(
                Some("jitter"),
                format!(
                    "{:?} is more than half the rtt ({:?}): a one-way delay would go below zero",
                    self.jitter, self.rtt
                ),
            );
        }
        if !(0.0..=MAX_LOSS).contains(&self.loss) {
            return refuse(
                Some("loss"),
                format!(
                    "{} must be a probability from 0 to {MAX_LOSS} (0.01 = 1 % of segments)",
                    self.loss
                ),
            );
        }
        Ok(())
    }

    /// One-way delay before jitter: half the round trip.
    pub fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    /// The retransmission timeout of a lost data segment: Linux's estimate once it has measured
    /// the path (RFC 6298: SRTT + 4 × RTTVAR, here rtt + 4 × jitter), at least 200 ms.
    pub fn rto(&self) -> Duration {
        (self.rtt + self.jitter * 4).max(MIN_RTO)
    }

    /// The least time `round_trips` round trips take over this link (no serialisation, jitter
    /// or loss): a device deadline shorter than its flow's is refused with a clear error.
    pub fn least_time(&self, round_trips: u32) -> Duration {
        self.rtt * round_trips
    }

    /// How the summary reports it.
    pub fn summary(&self) -> LinkSummary {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        LinkSummary {
            name: self.name.clone(),
            rtt_ms: ms(self.rtt),
            jitter_ms: ms(self.jitter),
            uplink_bps: self.uplink_bps,
            downlink_bps: self.downlink_bps,
            loss: self.loss,
            rto_ms: ms(self.rto()),
        }
    }
}

/// A class's link in `summary.json` (`links.<class>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSummary {
    /// Preset name or the table's label.
    pub name: String,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Largest one-way deviation, ms.
    pub jitter_ms: f64,
    /// Device-to-server bandwidth, bit/s (`null`: unlimited).
    pub uplink_bps: Option<u64>,
    /// Server-to-device bandwidth, bit/s (`null`: unlimited).
    pub downlink_bps: Option<u64>,
    /// Probability a segment is lost.
    pub loss: f64,
    /// Retransmission timeout a lost segment costs, ms.
    pub rto_ms: f64,
}

impl std::fmt::Display for LinkSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bw = |b: Option<u64>| b.map_or_else(|| "unlimited".to_owned(), format_bandwidth);
        write!(
            f,
            "{} (rtt {} ms ± {} ms, up {}, down {}, loss {} %)",
            self.name,
            self.rtt_ms,
            self.jitter_ms,
            bw(self.uplink_bps),
            bw(self.downlink_bps),
            self.loss * 100.0
        )
    }
}

fn unknown_preset(name: &str) -> String {
    format!(
        "unknown link preset {name:?}; presets: {}, or \"none\" (no emulation)",
        PRESETS.join(", ")
    )
}

/// `"375kbit"`, `"1.5 Mbit/s"`, `"1Gbit"`: bits per second with an SI prefix. Bytes (`kB`,
/// `kbps`, which tc reads as kilobytes) are refused rather than guessed.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let multiplier: f64 = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "" => {
            return Err(format!(
                "{text:?} has no unit: write bits per second as \"375kbit\", \"2Mbit\" or \"1Gbit\""
            ))
        }
        _ => {
            return Err(format!(
                "{text:?}: the unit must be bit, kbit, Mbit or Gbit (bits per second; byte units \
                 such as kbps are ambiguous)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number followed by a unit, e.g. \"375kbit\""))?;
    let bps = value * multiplier;
    let (lo, hi) = BANDWIDTH_RANGE;
    if !(bps >= lo as f64 && bps <= hi as f64) {
        return Err(format!(
            "{text:?} is out of range: from 1kbit to 100Gbit (zero bandwidth would never deliver)"
        ));
    }
    Ok(bps.round() as u64)
}

/// `375000` → `"375 kbit/s"`.
pub fn format_bandwidth(bps: u64) -> String {
    let (value, unit) = match bps {
        b if b >= 1_000_000_000 => (b as f64 / 1e9, "Gbit/s"),
        b if b >= 1_000_000 => (b as f64 / 1e6, "Mbit/s"),
        b if b >= 1_000 => (b as f64 / 1e3, "kbit/s"),
        b => (b as f64, "bit/s"),
    };
    format!("{value} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Option<LinkProfile>, LinkError> {
        #[derive(Deserialize)]
        struct W {
            link: LinkSpec,
        }
        let w: W = toml::from_str(&format!("link = {text}")).expect("toml");
        LinkProfile::resolve(&w.link)
    }

    #[test]
    fn bandwidths_are_bits_per_second_with_si_prefixes() {
        assert_eq!(parse_bandwidth("375kbit"), Ok(375_000));
        assert_eq!(parse_bandwidth("1.5 Mbit/s"), Ok(1_500_000));
        assert_eq!(parse_bandwidth("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("62.5kbit"), Ok(62_500));
        for bad in [
            "0kbit", "0.1bit", "375", "375kbps", "375kB", "fast", "200Gbit", "",
        ] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
        assert_eq!(format_bandwidth(375_000), "375 kbit/s");
        assert_eq!(format_bandwidth(1_500_000), "1.5 Mbit/s");
    }

    #[test]
    fn presets_and_tables_resolve_and_bad_values_name_their_key() {
        let lte = table("\"lte-m\"").expect("preset").expect("emulated");
        assert_eq!(lte.rtt, Duration::from_millis(100));
        assert_eq!(lte.uplink_bps, Some(375_000));
        assert_eq!(table("\"none\""), Ok(None));
        for name in PRESETS {
            let p = LinkProfile::preset(name).expect("preset");
            p.check().expect("presets are valid");
        }
        let custom = table(
            r#"{ rtt = "120ms", jitter = "20ms", bandwidth = "375kbit", downlink = "300kbit", loss = 0.01 }"#,
        )
        .expect("table")
        .expect("emulated");
        assert_eq!(custom.name, "custom");
        assert_eq!(custom.rtt, Duration::from_millis(120));
        assert_eq!(
            (custom.uplink_bps, custom.downlink_bps),
            (Some(375_000), Some(300_000))
        );
        let on_preset = table(r#"{ preset = "nb-iot", loss = 0.05 }"#)
            .expect("table")
            .expect("emulated");
        assert_eq!(on_preset.name, "nb-iot+custom");
        assert_eq!(on_preset.rtt, Duration::from_millis(800));
        assert_eq!(on_preset.loss, 0.05);
        // RTO: rtt + 4 jitter, at least 200 ms.
        assert_eq!(custom.rto(), Duration::from_millis(200));
        assert_eq!(on_preset.rto(), Duration::from_millis(2000));

        let key = |text: &str| table(text).expect_err(text).key;
        assert_eq!(key("\"5g\""), None);
        assert!(table("\"5g\"").expect_err("5g").message.contains("lte-m"));
        assert_eq!(key(r#"{ bandwidth = "0kbit" }"#), Some("bandwidth"));
        assert_eq!(key(r#"{ uplink = "10" }"#), Some("uplink"));
        assert_eq!(key(r#"{ rtt = "40ms", jitter = "30ms" }"#), Some("jitter"));
        assert_eq!(key(r#"{ rtt = "2min" }"#), Some("rtt"));
        assert_eq!(key(r#"{ loss = 0.9 }"#), Some("loss"));
        assert_eq!(key(r#"{ loss = -0.1 }"#), Some("loss"));
        assert_eq!(key(r#"{ preset = "dsl" }"#), Some("preset"));
        assert_eq!(key(r#"{ name = " " }"#), Some("name"));
    }
}
