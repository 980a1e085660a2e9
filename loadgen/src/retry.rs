//! Retry policies, resolved from `[device] retry` (defaults filled in, nonsense refused with the
//! key), and their schedules as pure functions of what an attempt ended in: how long the next
//! attempt may take and how long to wait before it, or that the device gives up. The device's run
//! ([`crate::device`]) drives them; `docs/retry.md` says where each rule comes from.
//!
//! - `none`: one attempt.
//! - `iotivity` (iotivity-lite's plgd DPS client, `plgd_dps_retry.c` and its callers): attempt
//!   timeouts from a list (default 10, 20, 40, 80, 120 s), one index into it per device that moves
//!   on after each failed attempt and wraps around at its end; an attempt that got an answer to a
//!   provisioning step first resets the index (the client resets its retry counter on every
//!   successful step). After a timeout the next attempt starts at once; after another failure,
//!   after a delay drawn from [t/2, t) with t the failed attempt's timeout. Max-Age is not
//!   honoured unless the scenario says so.
//! - `exponential` (AWS's "Exponential Backoff and Jitter", full jitter): before attempt n+1, a
//!   delay drawn from [0, min(cap, base * 2^(n-1))); with `honor_max_age` (default) at least the
//!   5.03's Max-Age. Every attempt has `[device] timeout`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::spec::{DeviceClass, DeviceSpec, RetryPolicy, RetrySpec, RetryTable};

/// iotivity-lite's default retry configuration (`dps_retry_init`): per-attempt timeouts, seconds.
pub const IOTIVITY_TIMEOUTS_S: [u32; 5] = [10, 20, 40, 80, 120];
/// At most this many timeouts (`PLGD_DPS_MAX_RETRY_VALUES_SIZE`).
pub const IOTIVITY_MAX_TIMEOUTS: usize = 8;
/// Default attempts of `iotivity`: one pass through its schedule (the real client starts over
/// and never gives up; a run has to end).
pub const IOTIVITY_DEFAULT_ATTEMPTS: u32 = 5;
/// Default attempts of `exponential`.
pub const EXPONENTIAL_DEFAULT_ATTEMPTS: u32 = 6;
/// Default first backoff ceiling of `exponential`.
pub const EXPONENTIAL_DEFAULT_BASE: Duration = Duration::from_millis(100);
/// Default largest backoff ceiling of `exponential`.
pub const EXPONENTIAL_DEFAULT_CAP: Duration = Duration::from_secs(10);
/// More attempts than this per device is a mistake, not a policy.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// A policy with its parameters settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// One attempt, with this deadline.
    None {
        /// `[device] timeout`.
        timeout: Duration,
    },
    /// iotivity-lite's schedule.
    Iotivity {
        /// Per-attempt timeouts, in schedule order.
        timeouts: Vec<Duration>,
        /// Attempts in all.
        max_attempts: u32,
        /// Wait at least a 5.03's Max-Age.
        honor_max_age: bool,
    },
    /// Exponential backoff, full jitter.
    Exponential {
        /// First backoff ceiling.
        base: Duration,
        /// Largest backoff ceiling.
        cap: Duration,
        /// Attempts in all.
        max_attempts: u32,
        /// Wait at least a 5.03's Max-Age.
        honor_max_age: bool,
        /// Every attempt's deadline (`[device] timeout`).
        timeout: Duration,
    },
}

impl Policy {
    /// Its name.
    pub fn name(&self) -> RetryPolicy {
        match self {
            Policy::None { .. } => RetryPolicy::None,
            Policy::Iotivity { .. } => RetryPolicy::Iotivity,
            Policy::Exponential { .. } => RetryPolicy::Exponential,
        }
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        match self {
            Policy::None { .. } => 1,
            Policy::Iotivity { max_attempts, .. } | Policy::Exponential { max_attempts, .. } => {
                *max_attempts
            }
        }
    }
}

/// Every class's policy and the scenario's deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPlan {
    /// `[device] retry`.
    pub default: Policy,
    /// `[device] retry_by_class`.
    pub by_class: BTreeMap<DeviceClass, Policy>,
    /// `[device] retry_deadline`, from the device's first scheduled start.
    pub deadline: Option<Duration>,
}

impl RetryPlan {
    /// A single attempt with `timeout` for everyone.
    pub fn none(timeout: Duration) -> Self {
        Self {
            default: Policy::None { timeout },
            by_class: BTreeMap::new(),
            deadline: None,
        }
    }

    /// The policy of a device of `class`.
    pub fn policy(&self, class: DeviceClass) -> &Policy {
        self.by_class.get(&class).unwrap_or(&self.default)
    }

    /// Settle `[device]`'s retry keys; a value that makes no sense is refused with its key.
    pub fn resolve(device: &DeviceSpec) -> Result<Self, (String, String)> {
        if device.timeout.is_zero() {
            return Err(("device.timeout".into(), "must be above 0".into()));
        }
        let default = resolve_one(&device.retry, device.timeout, "device.retry")?;
        let by_class = device
            .retry_by_class
            .iter()
            .map(|(class, spec)| {
                let key = format!("device.retry_by_class.{}", class.as_str());
                resolve_one(spec, device.timeout, &key).map(|p| (*class, p))
            })
            .collect::<Result<_, _>>()?;
        if device.retry_deadline.is_some_and(|d| d.is_zero()) {
            return Err(("device.retry_deadline".into(), "must be above 0".into()));
        }
        Ok(Self {
            default,
            by_class,
            deadline: device.retry_deadline,
        })
    }
}

fn refuse<T>(key: &str, field: &str, why: &str) -> Result<T, (String, String)> {
    Err((format!("{key}.{field}"), why.to_owned()))
}

fn resolve_one(spec: &RetrySpec, timeout: Duration, key: &str) -> Result<Policy, (String, String)> {
    let t: &RetryTable = &spec.0;
    let not_for = |field: &str| {
        refuse::<Policy>(
            key,
            field,
            &format!("the {} policy has no such parameter", t.policy),
        )
    };
    let attempts = |default: u32| match t.max_attempts {
        None => Ok(default),
        Some(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => Ok(n),
        Some(_) => refuse(
            key,
            "max_attempts",
            &format!("must be 1..={MAX_ATTEMPTS_LIMIT}"),
        ),
    };
    match t.policy {
        RetryPolicy::None => {
            for (set, field) in [
                (t.max_attempts.is_some(), "max_attempts"),
                (t.timeouts_s.is_some(), "timeouts_s"),
                (t.base.is_some(), "base"),
                (t.cap.is_some(), "cap"),
                (t.honor_max_age.is_some(), "honor_max_age"),
            ] {
                if set {
                    return not_for(field);
                }
            }
            Ok(Policy::None { timeout })
        }
        RetryPolicy::Iotivity => {
            if t.base.is_some() {
                return not_for("base");
            }
            if t.cap.is_some() {
                return not_for("cap");
            }
            let seconds = t
                .timeouts_s
                .clone()
                .unwrap_or_else(|| IOTIVITY_TIMEOUTS_S.to_vec());
            if seconds.is_empty()
                || seconds.len() > IOTIVITY_MAX_TIMEOUTS
                || seconds.iter().any(|s| !(1..=255).contains(s))
            {
                return refuse(
                    key,
                    "timeouts_s",
                    &format!(
                        "1 to {IOTIVITY_MAX_TIMEOUTS} values, each 1..=255 seconds \
                         (as plgd_dps_set_retry_configuration takes them)"
                    ),
                );
            }
            Ok(Policy::Iotivity {
                timeouts: seconds
                    .into_iter()
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .collect(),
                max_attempts: attempts(IOTIVITY_DEFAULT_ATTEMPTS)?,
                honor_max_age: t.honor_max_age.unwrap_or(false),
            })
        }
        RetryPolicy::Exponential => {
            if t.timeouts_s.is_some() {
                return not_for("timeouts_s");
            }
            let base = t.base.unwrap_or(EXPONENTIAL_DEFAULT_BASE);
            let cap = t.cap.unwrap_or(EXPONENTIAL_DEFAULT_CAP.max(base));
            if base.is_zero() {
                return refuse(key, "base", "must be above 0");
            }
            if cap < base {
                return refuse(key, "cap", "must be at least base");
            }
            if cap > Duration::from_secs(3600) {
                return refuse(key, "cap", "must be at most 1h");
            }
            Ok(Policy::Exponential {
                base,
                cap,
                max_attempts: attempts(EXPONENTIAL_DEFAULT_ATTEMPTS)?,
                honor_max_age: t.honor_max_age.unwrap_or(true),
                timeout,
            })
        }
    }
}

/// A device's own jitter source (SplitMix64): seeded per device, so runs are reproducible and
/// devices are not in step with each other.
#[derive(Debug, Clone)]
pub struct Jitter(crate::rng::Rng);

impl Jitter {
    /// The jitter of device `index`.
    pub fn for_device(index: usize) -> Self {
        Self(crate::rng::Rng::seeded(
            (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A duration drawn uniformly from [lo, hi) (`lo` when the range is empty), to the µs.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from(hi.saturating_sub(lo).as_micros()).unwrap_or(u64::MAX);
        if span == 0 {
            return lo;
        }
        lo + Duration::from_micros(self.next_u64() % span)
    }
}

/// How an attempt that the policy may retry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Its deadline passed.
    Timeout,
    /// 5.03, with the Max-Age the server gave.
    Busy {
        /// Max-Age.
        max_age: Option<Duration>,
    },
    /// Any other error (reset, connect, TLS, protocol, I/O, a strict check).
    Other,
}

/// What the device does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait `delay`, then attempt again with `timeout`.
    Retry {
        /// Before the next attempt.
        delay: Duration,
        /// The next attempt's deadline.
        timeout: Duration,
    },
    /// No more attempts.
    GiveUp,
}

/// One device's way through its policy: which attempt is next and, for `iotivity`, where in its
/// list of timeouts it is.
#[derive(Debug, Clone)]
pub struct Schedule<'a> {
    policy: &'a Policy,
    deadline: Option<Duration>,
    attempts: u32,
    index: usize,
}

impl<'a> Schedule<'a> {
    /// A device about to make its first attempt.
    pub fn new(policy: &'a Policy, deadline: Option<Duration>) -> Self {
        Self {
            policy,
            deadline,
            attempts: 0,
            index: 0,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The first attempt's deadline (within the scenario's deadline).
    pub fn first_timeout(&self) -> Duration {
        let t = self.timeout_at(0);
        self.deadline.map_or(t, |d| t.min(d))
    }

    /// The policy's deadline for an attempt at `index` of its schedule.
    fn timeout_at(&self, index: usize) -> Duration {
        match self.policy {
            Policy::None { timeout } | Policy::Exponential { timeout, .. } => *timeout,
            Policy::Iotivity { timeouts, .. } => timeouts
                .get(index % timeouts.len().max(1))
                .copied()
                .unwrap_or(Duration::from_secs(10)),
        }
    }

    /// An attempt started: count it.
    pub fn started(&mut self) {
        self.attempts += 1;
    }

    /// The attempt just made failed with `end`; `progressed` says whether it got an answer to a
    /// provisioning step first; `elapsed` is the time since the device's first scheduled start.
    /// The next attempt, or that the device gives up.
    pub fn after_failure(
        &mut self,
        end: AttemptEnd,
        progressed: bool,
        elapsed: Duration,
        jitter: &mut Jitter,
    ) -> Next {
        if self.attempts >= self.policy.max_attempts() {
            return Next::GiveUp;
        }
        let (delay, honor_max_age) = match self.policy {
            Policy::None { .. } => return Next::GiveUp,
            Policy::Iotivity {
                timeouts,
                honor_max_age,
                ..
            } => {
                // A successful step reset the client's counter (dps_retry_reset) before this
                // failure; the failure then moves it on (dps_retry_increment), wrapping around at
                // the end of the list (dps_schedule_action resets it).
                if progressed {
                    self.index = 0;
                }
                let failed_timeout = self.timeout_at(self.index);
                self.index = (self.index + 1) % timeouts.len().max(1);
                let delay = match end {
                    // dps_provisioning_handle_failure: a timed-out request is retried at once.
                    AttemptEnd::Timeout => Duration::ZERO,
                    // get_delay_from_timeout: timeout/2 + random [0, timeout/2).
                    _ => jitter.between(failed_timeout / 2, failed_timeout),
                };
                (delay, *honor_max_age)
            }
            Policy::Exponential {
                base,
                cap,
                honor_max_age,
                ..
            } => {
                // min(cap, base * 2^(n-1)) after attempt n.
                let doublings = self.attempts.saturating_sub(1);
                let ceiling = if doublings >= 31 {
                    *cap
                } else {
                    base.saturating_mul(1u32 << doublings).min(*cap)
                };
                (jitter.between(Duration::ZERO, ceiling), *honor_max_age)
            }
        };
        let delay = match end {
            AttemptEnd::Busy {
                max_age: Some(max_age),
            } if honor_max_age => delay.max(max_age),
            _ => delay,
        };
        let mut timeout = self.timeout_at(self.index);
        if let Some(deadline) = self.deadline {
            let starts = elapsed.saturating_add(delay);
            if starts >= deadline {
                return Next::GiveUp;
            }
            timeout = timeout.min(deadline - starts);
        }
        Next::Retry { delay, timeout }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn iotivity() -> Policy {
        Policy::Iotivity {
            timeouts: IOTIVITY_TIMEOUTS_S
                .iter()
                .map(|t| s(u64::from(*t)))
                .collect(),
            max_attempts: 12,
            honor_max_age: false,
        }
    }

    /// Run `schedule` through failed attempts ending in `end`, collecting (delay, timeout).
    fn walk(schedule: &mut Schedule<'_>, end: AttemptEnd, progressed: bool) -> Vec<Next> {
        let mut jitter = Jitter::for_device(7);
        let mut out = Vec::new();
        loop {
            schedule.started();
            let next = schedule.after_failure(end, progressed, Duration::ZERO, &mut jitter);
            out.push(next);
            if next == Next::GiveUp {
                return out;
            }
        }
    }

    #[test]
    fn iotivity_follows_its_timeouts_with_half_to_full_delays_and_wraps_around() {
        let policy = iotivity();
        let mut schedule = Schedule::new(&policy, None);
        assert_eq!(schedule.first_timeout(), s(10));
        let seen = walk(&mut schedule, AttemptEnd::Other, false);
        // 12 attempts: 11 retries, then it gives up.
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[11], Next::GiveUp);
        let expected_timeouts = [20, 40, 80, 120, 10, 20, 40, 80, 120, 10, 20];
        let failed_timeouts = [10, 20, 40, 80, 120, 10, 20, 40, 80, 120, 10];
        for (i, next) in seen[..11].iter().enumerate() {
            let Next::Retry { delay, timeout } = *next else {
                panic!("{i}: {next:?}");
            };
            assert_eq!(timeout, s(expected_timeouts[i]), "attempt {}", i + 2);
            let failed = s(failed_timeouts[i]);
            assert!(
                delay >= failed / 2 && delay < failed,
                "attempt {}: delay {delay:?} for a failed timeout of {failed:?}",
                i + 2
            );
        }
    }

    #[test]
    fn iotivity_retries_a_timeout_at_once_and_restarts_its_schedule_after_progress() {
        let policy = iotivity();
        let mut schedule = Schedule::new(&policy, None);
        let seen = walk(&mut schedule, AttemptEnd::Timeout, false);
        assert!(seen[..11]
            .iter()
            .all(|n| matches!(n, Next::Retry { delay, .. } if delay.is_zero())));
        // An attempt that got through a step resets the counter: the next timeout is always the
        // second of the list, the delay drawn from the first.
        let mut schedule = Schedule::new(&policy, None);
        let seen = walk(&mut schedule, AttemptEnd::Other, true);
        for next in &seen[..11] {
            let Next::Retry { delay, timeout } = *next else {
                panic!("{next:?}");
            };
            assert_eq!(timeout, s(20));
            assert!(delay >= s(5) && delay < s(10), "{delay:?}");
        }
    }

    #[test]
    fn iotivity_ignores_max_age_unless_told() {
        let policy = iotivity();
        let busy = AttemptEnd::Busy {
            max_age: Some(s(30)),
        };
        let mut jitter = Jitter::for_device(1);
        let mut schedule = Schedule::new(&policy, None);
        schedule.started();
        let Next::Retry { delay, .. } =
            schedule.after_failure(busy, false, Duration::ZERO, &mut jitter)
        else {
            panic!("gave up");
        };
        assert!(delay < s(10), "{delay:?}");
        let honoring = Policy::Iotivity {
            timeouts: vec![s(10)],
            max_attempts: 3,
            honor_max_age: true,
        };
        let mut schedule = Schedule::new(&honoring, None);
        schedule.started();
        let next = schedule.after_failure(busy, false, Duration::ZERO, &mut jitter);
        assert_eq!(
            next,
            Next::Retry {
                delay: s(30),
                timeout: s(10)
            }
        );
    }

    #[test]
    fn exponential_has_full_jitter_under_a_doubling_capped_ceiling() {
        let policy = Policy::Exponential {
            base: Duration::from_millis(100),
            cap: s(1),
            max_attempts: 8,
            honor_max_age: true,
            timeout: s(3),
        };
        // Many devices: each retry's delays stay under its ceiling and spread over it.
        let ceilings_ms = [100u64, 200, 400, 800, 1000, 1000, 1000];
        let mut max_seen = [Duration::ZERO; 7];
        let mut min_seen = [Duration::MAX; 7];
        for device in 0..400 {
            let mut schedule = Schedule::new(&policy, None);
            let mut jitter = Jitter::for_device(device);
            for k in 0..7 {
                schedule.started();
                let next =
                    schedule.after_failure(AttemptEnd::Other, false, Duration::ZERO, &mut jitter);
                let Next::Retry { delay, timeout } = next else {
                    panic!("device {device}: gave up after {} attempts", k + 1);
                };
                assert_eq!(timeout, s(3));
                assert!(
                    delay < Duration::from_millis(ceilings_ms[k]),
                    "{k}: {delay:?}"
                );
                max_seen[k] = max_seen[k].max(delay);
                min_seen[k] = min_seen[k].min(delay);
            }
            schedule.started();
            assert_eq!(
                schedule.after_failure(AttemptEnd::Other, false, Duration::ZERO, &mut jitter),
                Next::GiveUp,
                "8 attempts in all"
            );
        }
        for k in 0..7 {
            let ceiling = Duration::from_millis(ceilings_ms[k]);
            assert!(max_seen[k] > ceiling * 9 / 10, "{k}: max {:?}", max_seen[k]);
            assert!(min_seen[k] < ceiling / 10, "{k}: min {:?}", min_seen[k]);
        }
    }

    #[test]
    fn exponential_waits_at_least_max_age_when_it_honours_it() {
        let mut policy = Policy::Exponential {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
            max_attempts: 3,
            honor_max_age: true,
            timeout: s(1),
        };
        let busy = AttemptEnd::Busy {
            max_age: Some(s(2)),
        };
        let mut jitter = Jitter::for_device(3);
        let mut schedule = Schedule::new(&policy, None);
        schedule.started();
        let next = schedule.after_failure(busy, false, Duration::ZERO, &mut jitter);
        assert!(
            matches!(next, Next::Retry { delay, .. } if delay == s(2)),
            "{next:?}"
        );
        if let Policy::Exponential { honor_max_age, .. } = &mut policy {
            *honor_max_age = false;
        }
        let mut schedule = Schedule::new(&policy, None);
        schedule.started();
        let next = schedule.after_failure(busy, false, Duration::ZERO, &mut jitter);
        assert!(
            matches!(next, Next::Retry { delay, .. } if delay < Duration::from_millis(10)),
            "{next:?}"
        );
    }

    #[test]
    fn none_gives_up_at_once_and_the_deadline_bounds_everyone() {
        let none = Policy::None { timeout: s(5) };
        let mut schedule = Schedule::new(&none, None);
        assert_eq!(
            walk(&mut schedule, AttemptEnd::Timeout, false),
            [Next::GiveUp]
        );
        assert_eq!(schedule.attempts(), 1);

        let policy = iotivity();
        let mut jitter = Jitter::for_device(9);
        let mut schedule = Schedule::new(&policy, Some(s(25)));
        assert_eq!(schedule.first_timeout(), s(10));
        schedule.started();
        // A timeout at 10 s: the next attempt starts at once, its 20 s cut to the 15 s left.
        assert_eq!(
            schedule.after_failure(AttemptEnd::Timeout, false, s(10), &mut jitter),
            Next::Retry {
                delay: Duration::ZERO,
                timeout: s(15)
            }
        );
        schedule.started();
        // Past the deadline: no attempt is started.
        assert_eq!(
            schedule.after_failure(AttemptEnd::Timeout, false, s(25), &mut jitter),
            Next::GiveUp
        );
        let mut schedule = Schedule::new(&policy, Some(s(3)));
        assert_eq!(schedule.first_timeout(), s(3));
        schedule.started();
        // A delay of 5..10 s would start the next attempt after the deadline.
        assert_eq!(
            schedule.after_failure(AttemptEnd::Other, false, s(1), &mut jitter),
            Next::GiveUp
        );
    }

    #[test]
    fn resolving_fills_defaults_and_names_the_bad_key() {
        let parse = |toml_text: &str| {
            let spec: DeviceSpec = toml::from_str(toml_text).expect("device spec");
            RetryPlan::resolve(&spec)
        };
        let plan = parse("").expect("no retry");
        assert_eq!(plan.default, Policy::None { timeout: s(10) });
        let plan =
            parse("retry = \"iotivity\"\nretry_by_class = { tpm = \"none\" }").expect("iotivity");
        assert_eq!(plan.default, iotivity_with(IOTIVITY_DEFAULT_ATTEMPTS));
        assert_eq!(
            plan.policy(DeviceClass::Tpm),
            &Policy::None { timeout: s(10) }
        );
        assert_eq!(plan.policy(DeviceClass::Valid).max_attempts(), 5);
        let plan = parse("timeout = \"2s\"\nretry = \"exponential\"").expect("exponential");
        assert_eq!(
            plan.default,
            Policy::Exponential {
                base: EXPONENTIAL_DEFAULT_BASE,
                cap: EXPONENTIAL_DEFAULT_CAP,
                max_attempts: EXPONENTIAL_DEFAULT_ATTEMPTS,
                honor_max_age: true,
                timeout: s(2),
            }
        );
        for (text, key) in [
            ("timeout = \"0s\"", "device.timeout"),
            (
                "retry = { policy = \"exponential\", max_attempts = 0 }",
                "device.retry.max_attempts",
            ),
            (
                "retry = { policy = \"exponential\", base = \"0s\" }",
                "device.retry.base",
            ),
            (
                "retry = { policy = \"exponential\", base = \"2s\", cap = \"1s\" }",
                "device.retry.cap",
            ),
            (
                "retry = { policy = \"iotivity\", timeouts_s = [] }",
                "device.retry.timeouts_s",
            ),
            (
                "retry = { policy = \"iotivity\", timeouts_s = [10, 0] }",
                "device.retry.timeouts_s",
            ),
            (
                "retry = { policy = \"iotivity\", base = \"1s\" }",
                "device.retry.base",
            ),
            (
                "retry = { policy = \"none\", max_attempts = 3 }",
                "device.retry.max_attempts",
            ),
            (
                "retry_by_class = { valid = { policy = \"exponential\", max_attempts = 100000 } }",
                "device.retry_by_class.valid.max_attempts",
            ),
            ("retry_deadline = \"0s\"", "device.retry_deadline"),
        ] {
            let (seen, why) = parse(text).expect_err(text);
            assert_eq!(seen, key, "{text}: {why}");
        }
    }

    fn iotivity_with(max_attempts: u32) -> Policy {
        Policy::Iotivity {
            timeouts: IOTIVITY_TIMEOUTS_S
                .iter()
                .map(|t| s(u64::from(*t)))
                .collect(),
            max_attempts,
            honor_max_age: false,
        }
    }
}
