//! The CPU gate: a few places for the server's CPU-heavy steps (the handshake's two flights, where
//! its key exchange, signature and chain verification happen), given out by priority, with a
//! queue whose wait is bounded (Facebook's "controlled delay" with adaptive LIFO).
//!
//! Why: past the knee, every accepted connection started its handshake at once, each took longer
//! than its device would wait, and goodput fell to a tenth. Here a connection that has already
//! cost a flight ([`Class::Continuing`]) goes before one that has not ([`Class::Fresh`]); a fresh
//! one waits at most `queue_timeout` while the queue has been empty lately, and only
//! `queue_target` once it has stayed non-empty for `queue_interval` — then the newest go first, as
//! the oldest are the likeliest to have given up. A fresh connection that waits too long is shed
//! before any public-key operation was spent on it.
//!
//! A place is held only while a step runs (one poll of its task), never across a round trip to the
//! device: the earlier attempt that held places for the whole handshake made overload worse.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::counters::{OverloadCounters, ShedReason};

/// Which queue a step waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A connection whose handshake the server has already worked on: finishing it is goodput.
    Continuing,
    /// A new connection's first flight: nothing spent on it yet, so it is the one to shed.
    Fresh,
}

/// The gate's settings (`[limits]` `cpu_slots`, `queue_target_ms`, `queue_interval_ms`,
/// `queue_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    /// Steps running at once; 0 turns the gate off (every step runs at once, nothing is shed).
    pub slots: usize,
    /// Longest wait of a fresh step while the queue has been empty within `interval`.
    pub timeout: Duration,
    /// Longest wait of a fresh step once the queue has stayed non-empty for `interval`.
    pub target: Duration,
    /// How long the queue must stay non-empty to count as congested.
    pub interval: Duration,
}

impl GateSettings {
    /// Slots for a machine with `cores` cores: two per core, so a core never idles while a step
    /// waits for its task to be scheduled.
    pub fn slots_for(cores: usize) -> usize {
        cores.max(1) * 2
    }
}

struct Waiter {
    since: Instant,
    grant: oneshot::Sender<()>,
}

struct State {
    running: usize,
    continuing: VecDeque<Waiter>,
    fresh: VecDeque<Waiter>,
    /// The last time the fresh queue was empty.
    last_empty: Instant,
    /// Handshakes begun (first flight granted) and not yet over.
    open: usize,
    /// How many may be open at once ([`OpenLimit`]).
    limit: OpenLimit,
}

/// The adaptive limit on open handshakes (a gradient limiter, as Netflix's concurrency-limits):
/// while handshakes take about as long as the fastest seen lately, the limit grows; once they
/// take over twice that (the CPU — the server's or the devices' — is saturated and every
/// handshake in progress slows the others), it shrinks in proportion. Fresh connections beyond it
/// wait in the queue and are shed there. The durations are the server's view of a handshake
/// (first flight to done), round trips included, so the limit follows the link as well: 200 ms
/// handshakes over LTE-M are the no-load figure there, not overload.
#[derive(Debug, Clone, Copy)]
pub struct OpenLimit {
    limit: f64,
    floor: f64,
    /// Smoothed handshake duration, seconds.
    smoothed: f64,
    /// The fastest lately, seconds (drifts up toward `smoothed`, so an old minimum fades).
    fastest: f64,
}

/// Handshakes slower than this multiple of the fastest lately mean saturation.
const TOLERANCE: f64 = 2.0;
/// The most handshakes ever open at once (memory, not CPU, bounds it beyond).
const CEILING: f64 = 100_000.0;

impl OpenLimit {
    fn new(slots: usize) -> Self {
        // Never fewer than a few handshakes per place: each waits on a round trip most of its time.
        let floor = (slots.max(1) * 8).max(32) as f64;
        OpenLimit {
            limit: (floor * 4.0).min(CEILING),
            floor,
            smoothed: 0.0,
            fastest: 0.0,
        }
    }

    /// Open handshakes allowed now.
    pub fn get(&self) -> usize {
        self.limit as usize
    }

    /// A handshake was over after `took`, with `open` handshakes open.
    fn completed(&mut self, took: Duration, open: usize) {
        let d = took.as_secs_f64().max(1e-6);
        if self.smoothed == 0.0 {
            (self.smoothed, self.fastest) = (d, d);
        }
        self.smoothed += (d - self.smoothed) * 0.05;
        // The long-run baseline (Gradient2's "long RTT"): a slow average, so the limit reacts to
        // handshakes getting slower than they have been, not to the queueing of a busy but
        // healthy server.
        self.fastest += (self.smoothed - self.fastest) * 0.002;
        let gradient = (TOLERANCE * self.fastest / self.smoothed).clamp(0.5, 1.0);
        // Grow only when the limit is being used: an idle server's limit stays where it is.
        let growth = if (open as f64) * 2.0 >= self.limit {
            self.limit.sqrt().min(4.0)
        } else {
            0.0
        };
        self.limit = (self.limit * gradient + growth).clamp(self.floor, CEILING);
    }
}

struct Inner {
    settings: GateSettings,
    state: Mutex<State>,
    counters: Arc<OverloadCounters>,
}

/// The gate; cheap to clone.
#[derive(Clone)]
pub struct CpuGate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CpuGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuGate")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A place in the gate; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Option<CpuGate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

/// A fresh step waited longer than the queue allows: shed it, nothing has been spent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shed: waited longer than the queue allows for a CPU place")]
pub struct Shed;

impl CpuGate {
    /// A gate with these settings, counting into `counters`.
    pub fn new(settings: GateSettings, counters: Arc<OverloadCounters>) -> Self {
        CpuGate {
            inner: Arc::new(Inner {
                settings,
                state: Mutex::new(State {
                    running: 0,
                    continuing: VecDeque::new(),
                    fresh: VecDeque::new(),
                    last_empty: Instant::now(),
                    open: 0,
                    limit: OpenLimit::new(settings.slots),
                }),
                counters,
            }),
        }
    }

    /// The settings it was made with.
    pub fn settings(&self) -> GateSettings {
        self.inner.settings
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one step of `class`: at once when one is free, else after waiting in its
    /// queue. A fresh step that waits past its deadline gets [`Shed`]; a continuing one waits
    /// until a place frees (its connection's handshake timeout bounds that).
    pub async fn enter(&self, class: Class) -> Result<Slot, Shed> {
        let settings = self.inner.settings;
        if settings.slots == 0 {
            return Ok(Slot { gate: None });
        }
        let (rx, deadline) = {
            let mut state = self.state();
            let now = Instant::now();
            if Self::take_now(&mut state, settings, class, now) {
                return Ok(Slot {
                    gate: Some(self.clone()),
                });
            }
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter {
                since: now,
                grant: tx,
            };
            let deadline = match class {
                Class::Continuing => {
                    state.continuing.push_back(waiter);
                    None
                }
                Class::Fresh => {
                    let congested =
                        now.saturating_duration_since(state.last_empty) >= settings.interval;
                    state.fresh.push_back(waiter);
                    Some(if congested {
                        settings.target
                    } else {
                        settings.timeout
                    })
                }
            };
            (rx, deadline)
        };
        let mut ticket = Ticket {
            rx: Some(rx),
            gate: self,
            class,
        };
        let granted = match deadline {
            None => ticket.wait().await,
            Some(deadline) => tokio::time::timeout(deadline, ticket.wait())
                .await
                .unwrap_or(false),
        };
        if granted {
            ticket.rx = None;
            Ok(Slot {
                gate: Some(self.clone()),
            })
        } else {
            self.inner.counters.shed(ShedReason::QueueTimeout);
            Err(Shed)
        }
    }

    /// A place at once, without waiting and without allocating, if one is free for `class`
    /// (the common case below saturation); `None`: [`CpuGate::enter`] must queue.
    pub fn try_enter(&self, class: Class) -> Option<Slot> {
        let settings = self.inner.settings;
        if settings.slots == 0 {
            return Some(Slot { gate: None });
        }
        let mut state = self.state();
        Self::take_now(&mut state, settings, class, Instant::now()).then(|| Slot {
            gate: Some(self.clone()),
        })
    }

    /// Takes a place for `class` if one is free and nobody is ahead.
    fn take_now(state: &mut State, settings: GateSettings, class: Class, now: Instant) -> bool {
        // Waiters that gave up stay queued until a grant skips them; none may hold a newcomer
        // back while nothing is running to trigger that grant.
        // (They time out oldest first, so trimming both ends finds them; O(1) amortized.)
        while state.fresh.front().is_some_and(|w| w.grant.is_closed()) {
            state.fresh.pop_front();
        }
        while state.fresh.back().is_some_and(|w| w.grant.is_closed()) {
            state.fresh.pop_back();
        }
        if state.fresh.is_empty() {
            state.last_empty = now;
        }
        // Waiters exist only while every place is taken (`release` hands places on until then),
        // so a free place means nobody is ahead.
        let room = match class {
            Class::Continuing => true,
            Class::Fresh => state.fresh.is_empty() && state.open < state.limit.get(),
        };
        if state.running < settings.slots && room {
            state.running += 1;
            if class == Class::Fresh {
                state.open += 1;
            }
            return true;
        }
        false
    }

    fn release(&self) {
        let mut state = self.state();
        state.running = state.running.saturating_sub(1);
        self.dispatch(&mut state);
    }

    /// A handshake begun by a fresh grant is over (done after `took`, or failed: `None`).
    pub(crate) fn handshake_over(&self, took: Option<Duration>) {
        let mut state = self.state();
        state.open = state.open.saturating_sub(1);
        if let Some(took) = took {
            let open = state.open;
            state.limit.completed(took, open);
        }
        self.dispatch(&mut state);
    }

    /// Hands free places to waiters: continuing steps first; a fresh one only while fewer
    /// handshakes are open than the limit, the oldest while the queue is short-lived, the newest
    /// once it is congested (adaptive LIFO).
    fn dispatch(&self, state: &mut State) {
        let settings = self.inner.settings;
        while state.running < settings.slots {
            let now = Instant::now();
            let (waiter, fresh) = match state.continuing.pop_front() {
                Some(w) => (w, false),
                None => {
                    if state.open >= state.limit.get() {
                        return;
                    }
                    let congested =
                        now.saturating_duration_since(state.last_empty) >= settings.interval;
                    let next = if congested {
                        state.fresh.pop_back()
                    } else {
                        state.fresh.pop_front()
                    };
                    if state.fresh.is_empty() {
                        state.last_empty = now;
                    }
                    match next {
                        Some(w) => (w, true),
                        None => return,
                    }
                }
            };
            // A waiter that gave up (its deadline passed) has dropped its receiver.
            if waiter.grant.send(()).is_ok() {
                state.running += 1;
                if fresh {
                    state.open += 1;
                }
                self.inner
                    .counters
                    .waited(now.saturating_duration_since(waiter.since));
            }
        }
    }

    /// Open handshakes and their current limit.
    pub fn open_handshakes(&self) -> (usize, usize) {
        let state = self.state();
        (state.open, state.limit.get())
    }

    /// Steps running now and steps waiting (continuing, fresh).
    pub fn load(&self) -> (usize, usize, usize) {
        let state = self.state();
        (state.running, state.continuing.len(), state.fresh.len())
    }
}

/// A waiting step's receiver. If it is dropped after a place was granted to it but before it
/// took it (its deadline raced the grant, or its task was cancelled), the place goes back.
struct Ticket<'a> {
    rx: Option<oneshot::Receiver<()>>,
    gate: &'a CpuGate,
    class: Class,
}

impl Ticket<'_> {
    async fn wait(&mut self) -> bool {
        match self.rx.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                if self.class == Class::Fresh {
                    self.gate.handshake_over(None);
                }
                self.gate.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn gate(slots: usize, timeout_ms: u64, target_ms: u64, interval_ms: u64) -> CpuGate {
        CpuGate::new(
            GateSettings {
                slots,
                timeout: Duration::from_millis(timeout_ms),
                target: Duration::from_millis(target_ms),
                interval: Duration::from_millis(interval_ms),
            },
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn places_are_capped_and_come_back() {
        let g = gate(2, 1_000, 10, 100);
        let a = g.enter(Class::Fresh).await.expect("a");
        let _b = g.enter(Class::Fresh).await.expect("b");
        assert_eq!(g.load().0, 2);
        let g2 = g.clone();
        let third = tokio::spawn(async move { g2.enter(Class::Fresh).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(g.load(), (2, 0, 1), "third waits");
        drop(a);
        third
            .await
            .expect("join")
            .expect("third gets the freed place");
        assert_eq!(
            g.load(),
            (1, 0, 0),
            "the third's place came back when it dropped it"
        );
    }

    #[tokio::test]
    async fn a_fresh_step_that_waits_past_its_deadline_is_shed_and_counted() {
        let g = gate(1, 50, 5, 100);
        let held = g.enter(Class::Fresh).await.expect("held");
        let started = Instant::now();
        assert_eq!(g.enter(Class::Fresh).await.map(|_| ()), Err(Shed));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(g.inner.counters.shed_count(ShedReason::QueueTimeout), 1);
        drop(held);
        assert_eq!(g.load(), (0, 0, 0), "the shed waiter left no place taken");
        let _again = g.enter(Class::Fresh).await.expect("free again");
    }

    #[tokio::test]
    async fn continuing_steps_go_before_fresh_ones_and_are_never_shed() {
        let g = gate(1, 5_000, 5_000, 10_000);
        let held = g.enter(Class::Fresh).await.expect("held");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, class) in [("fresh", Class::Fresh), ("continuing", Class::Continuing)] {
            let (g, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = g.enter(class).await.expect("granted");
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("join");
        }
        assert_eq!(*order.lock().unwrap(), ["continuing", "fresh"]);
    }

    #[tokio::test]
    async fn a_congested_queue_serves_the_newest_fresh_step_first() {
        // interval 0: the queue counts as congested as soon as it is non-empty.
        let g = gate(1, 5_000, 5_000, 0);
        let held = g.enter(Class::Fresh).await.expect("held");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["old", "new"] {
            let (g, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = g.enter(Class::Fresh).await.expect("granted");
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("join");
        }
        assert_eq!(*order.lock().unwrap(), ["new", "old"]);
    }

    #[test]
    fn the_open_limit_grows_while_handshakes_are_fast_and_shrinks_when_they_slow() {
        let mut l = OpenLimit::new(4);
        let start = l.get();
        for _ in 0..200 {
            l.completed(Duration::from_millis(2), l.get());
        }
        let grown = l.get();
        assert!(grown > start, "{start} -> {grown}");
        for _ in 0..200 {
            l.completed(Duration::from_millis(2), 0);
        }
        assert_eq!(l.get(), grown, "an unused limit does not grow");
        for _ in 0..200 {
            l.completed(Duration::from_millis(40), l.get());
        }
        let shrunk = l.get();
        assert!(shrunk < grown / 4, "{grown} -> {shrunk}");
        assert!(shrunk >= 32, "never below the floor");
    }

    #[tokio::test]
    async fn fresh_steps_wait_while_the_open_handshakes_are_at_their_limit() {
        let g = gate(64, 5_000, 5_000, 10_000);
        let limit = g.open_handshakes().1;
        for _ in 0..limit {
            // Each step ends at once; its handshake stays open.
            drop(g.enter(Class::Fresh).await.expect("within the limit"));
        }
        assert_eq!(
            g.open_handshakes().0,
            limit,
            "places back, handshakes still open"
        );
        let g2 = g.clone();
        let next = tokio::spawn(async move { g2.enter(Class::Fresh).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(g.load().2, 1, "waits for a handshake to end");
        let _continuing = g.enter(Class::Continuing).await.expect("continuing passes");
        g.handshake_over(Some(Duration::from_millis(1)));
        next.await.expect("join").expect("admitted once one ended");
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_hold_a_newcomer_back() {
        let g = gate(64, 20, 20, 10_000);
        let limit = g.open_handshakes().1;
        for _ in 0..limit {
            drop(g.enter(Class::Fresh).await.expect("within the limit"));
        }
        assert_eq!(
            g.enter(Class::Fresh).await.map(|_| ()),
            Err(Shed),
            "at the limit"
        );
        for _ in 0..limit {
            // Ended by failure: no duration, and nothing is running to dispatch afterwards.
            let mut state = g.state();
            state.open -= 1;
        }
        g.enter(Class::Fresh)
            .await
            .expect("the dead waiter is skipped, the newcomer admitted at once");
    }

    #[tokio::test]
    async fn zero_slots_turns_the_gate_off() {
        let g = gate(0, 1, 1, 1);
        let slots: Vec<_> = futures_join(&g, 100).await;
        assert_eq!(slots.len(), 100);
        assert_eq!(g.load(), (0, 0, 0));
    }

    async fn futures_join(g: &CpuGate, n: usize) -> Vec<Slot> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(g.enter(Class::Fresh).await.expect("off: always granted"));
        }
        out
    }
}
