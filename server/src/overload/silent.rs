//! Connections that have not sent a byte yet. They take no connection place (`max_connections`)
//! until their ClientHello arrives, and there may be at most `max_silent_connections` of them:
//! when a new one comes and the pool is full, the oldest silent one is evicted (reset). So silent
//! half-open connections, however many, cannot shut real devices out — a device's ClientHello
//! follows its connect at once, a silent one is the likeliest to be an attacker or a dead peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct SilentPool {
    inner: Arc<Mutex<State>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// By arrival: the first key is the oldest.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One connection's place in the pool; leaves it when dropped.
#[derive(Debug)]
pub struct SilentPlace {
    pool: SilentPool,
    id: u64,
    /// Resolves when the connection is evicted for a newer one.
    pub evicted: oneshot::Receiver<()>,
}

impl Drop for SilentPlace {
    fn drop(&mut self) {
        self.pool.lock().waiting.remove(&self.id);
    }
}

impl SilentPool {
    /// A pool of at most `capacity` silent connections (at least one).
    pub fn new(capacity: usize) -> Self {
        SilentPool {
            inner: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection; evicts the oldest silent one when full (it returns whether
    /// one was).
    pub fn enter(&self) -> (SilentPlace, bool) {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let mut evicted = false;
        while state.waiting.len() >= self.capacity {
            let Some((_, oldest)) = state.waiting.pop_first() else {
                break;
            };
            evicted |= oldest.send(()).is_ok();
        }
        let id = state.next;
        state.next += 1;
        state.waiting.insert(id, tx);
        drop(state);
        (
            SilentPlace {
                pool: self.clone(),
                id,
                evicted: rx,
            },
            evicted,
        )
    }

    /// Connections silent now.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// No connection is silent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_oldest_silent_connection_makes_room_for_a_new_one() {
        let pool = SilentPool::new(2);
        let (mut a, ea) = pool.enter();
        let (mut b, eb) = pool.enter();
        assert!(!ea && !eb);
        let (mut c, ec) = pool.enter();
        assert!(ec, "a full pool evicts");
        assert!(a.evicted.try_recv().is_ok(), "the oldest is told");
        assert!(b.evicted.try_recv().is_err());
        assert!(c.evicted.try_recv().is_err());
        assert_eq!(pool.len(), 2);
        drop(b);
        assert_eq!(
            pool.len(),
            1,
            "a connection that spoke (or left) leaves the pool"
        );
        drop(a);
        assert_eq!(pool.len(), 1, "an evicted place is already gone");
    }
}
