//! `[device] retry`: what a device does after an attempt that ended in an error (a timeout, a
//! reset, a 5.03): nothing (`none`, the default), iotivity-lite's plgd DPS client's schedule
//! (`iotivity`), or exponential backoff with full jitter (`exponential`). Written either as a name
//! (`retry = "iotivity"`) or as a table with the policy's parameters
//! (`retry = { policy = "exponential", base = "100ms", cap = "10s", max_attempts = 6 }`).
//! What each policy does is in [`crate::device`]'s retry module and `docs/retry.md`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A retry policy by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPolicy {
    /// One attempt: an error is the device's outcome.
    #[default]
    None,
    /// iotivity-lite's plgd DPS client: per-attempt timeouts 10, 20, 40, 80, 120 s; after a
    /// failure other than a timeout, a delay drawn from [timeout/2, timeout); after a timeout, at
    /// once; Max-Age not honoured.
    Iotivity,
    /// Exponential backoff with full jitter: before attempt n+1, a delay drawn from
    /// [0, min(cap, base * 2^(n-1))).
    Exponential,
}

impl RetryPolicy {
    /// The name in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryPolicy::None => "none",
            RetryPolicy::Iotivity => "iotivity",
            RetryPolicy::Exponential => "exponential",
        }
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[device] retry` as written: the policy and, optionally, its parameters (unset ones take the
/// policy's defaults; a parameter the policy does not have is refused when the scenario loads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryTable {
    /// Which policy.
    pub policy: RetryPolicy,
    /// Attempts in all, the first one included (`iotivity`: default 5, one pass through its
    /// schedule; `exponential`: default 6).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// `iotivity`: the per-attempt timeouts in seconds, as `plgd_dps_set_retry_configuration`
    /// takes them (1 to 8 values, each 1..=255); default `[10, 20, 40, 80, 120]`.
    #[serde(default)]
    pub timeouts_s: Option<Vec<u32>>,
    /// `exponential`: the first backoff ceiling, e.g. "100ms" (default 100 ms).
    #[serde(default, with = "humantime_serde")]
    pub base: Option<Duration>,
    /// `exponential`: the largest backoff ceiling, e.g. "10s" (default 10 s).
    #[serde(default, with = "humantime_serde")]
    pub cap: Option<Duration>,
    /// Wait at least the Max-Age of a 5.03 before the next attempt (`exponential`: default true;
    /// `iotivity`: default false, as the real client).
    #[serde(default)]
    pub honor_max_age: Option<bool>,
}

/// `[device] retry`: a policy name or a [`RetryTable`]; absent: `none`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RetrySpec(pub RetryTable);

impl RetrySpec {
    /// The policy.
    pub fn policy(&self) -> RetryPolicy {
        self.0.policy
    }
}

impl<'de> Deserialize<'de> for RetrySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = RetrySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a retry policy (\"none\", \"iotivity\", \"exponential\") or a table with \
                     `policy` and its parameters",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RetrySpec, E> {
                let policy = RetryPolicy::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RetrySpec(RetryTable {
                    policy,
                    ..RetryTable::default()
                }))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RetrySpec, M::Error> {
                RetryTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RetrySpec)
            }
        }
        d.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        retry: RetrySpec,
    }

    #[test]
    fn a_name_or_a_table() {
        let h: Holder = toml::from_str("retry = \"iotivity\"").expect("name");
        assert_eq!(h.retry.policy(), RetryPolicy::Iotivity);
        assert_eq!(h.retry.0.max_attempts, None);
        let h: Holder = toml::from_str(
            "retry = { policy = \"exponential\", base = \"50ms\", cap = \"2s\", max_attempts = 4 }",
        )
        .expect("table");
        assert_eq!(h.retry.policy(), RetryPolicy::Exponential);
        assert_eq!(h.retry.0.base, Some(Duration::from_millis(50)));
        assert_eq!(h.retry.0.cap, Some(Duration::from_secs(2)));
        assert_eq!(h.retry.0.max_attempts, Some(4));
        let e = toml::from_str::<Holder>("retry = \"sometimes\"").expect_err("unknown name");
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = toml::from_str::<Holder>("retry = { policy = \"none\", bogus = 1 }")
            .expect_err("unknown key");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = toml::from_str::<Holder>("retry = 3").expect_err("a number");
        assert!(e.to_string().contains("retry policy"), "{e}");
    }
}
