//! The record writer's queue: connections push events, the writer thread takes them in batches.
//!
//! A `std::sync::mpsc` channel wakes its receiver for every message, so a writer waiting out its
//! batch window was woken (two futex calls, a context switch) for each of a device's five steps.
//! This queue wakes the writer only when it has to act: a first event while it is idle, an
//! urgent message (a durable step or a flush: somebody waits on the commit), a full batch, or the
//! close. Every other push is a push under an uncontended lock, no system call.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What the writer thread is doing, as producers need to know it to decide whether to wake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Waiting for anything at all.
    Idle,
    /// Waiting out its batch window: only an urgent message or a full batch wakes it.
    Window,
    /// Committing: it looks at the queue again when done, nobody needs to wake it.
    Busy,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushError {
    /// The queue holds its capacity.
    Full,
    /// The writer has stopped.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    /// Urgent items queued (not yet taken).
    urgent: usize,
    closed: bool,
    writer: Writer,
}

/// A multi-producer, single-consumer queue that batches its consumer's wake-ups.
pub(super) struct BatchQueue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    capacity: usize,
    batch_max: usize,
}

impl<T> BatchQueue<T> {
    /// A queue of at most `capacity` ordinary items, taken at most `batch_max` at a time.
    pub(super) fn new(capacity: usize, batch_max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                urgent: 0,
                closed: false,
                writer: Writer::Busy,
            }),
            wake: Condvar::new(),
            capacity,
            batch_max: batch_max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue an ordinary item (it may wait out the batch window); refused when full or closed.
    pub(super) fn push(&self, item: T) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.items.len() >= self.capacity {
            return Err(PushError::Full);
        }
        state.items.push_back(item);
        let wake = match state.writer {
            Writer::Idle => true,
            Writer::Window => state.items.len() >= self.batch_max,
            Writer::Busy => false,
        };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Queue an item somebody waits on: never refused for room (each waiter holds one, so they
    /// are bounded by the connections), and the writer commits without waiting out its window.
    pub(super) fn push_urgent(&self, item: T) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        state.items.push_back(item);
        state.urgent += 1;
        let wake = state.writer != Writer::Busy;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// No more pushes; the consumer takes what is left, then gets `None`.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The next batch, for the one consumer: waits for a first item, then until `window` has
    /// passed, an urgent item is queued, the batch is full or the queue is closed, and takes up
    /// to `batch_max` items counted by `counts`, with `is_urgent` telling which were urgent.
    /// `None` once the queue is closed and empty.
    pub(super) fn next_batch(
        &self,
        window: Duration,
        counts: impl Fn(&T) -> bool,
        is_urgent: impl Fn(&T) -> bool,
    ) -> Option<Vec<T>> {
        let mut state = self.lock();
        while state.items.is_empty() && !state.closed {
            state.writer = Writer::Idle;
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.items.is_empty() {
            state.writer = Writer::Busy;
            return None;
        }
        let deadline = Instant::now() + window;
        while state.urgent == 0 && state.items.len() < self.batch_max && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.writer = Writer::Window;
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.writer = Writer::Busy;
        let mut batch = Vec::new();
        let mut counted = 0;
        while counted < self.batch_max {
            let Some(item) = state.items.pop_front() else {
                break;
            };
            counted += usize::from(counts(&item));
            if is_urgent(&item) {
                state.urgent = state.urgent.saturating_sub(1);
            }
            batch.push(item);
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Arc;

    fn take(q: &BatchQueue<u32>, window: Duration) -> Option<Vec<u32>> {
        q.next_batch(window, |_| true, |n| *n >= 100)
    }

    #[test]
    fn ordinary_items_are_refused_beyond_capacity_urgent_ones_are_not() {
        let q = BatchQueue::new(2, 8);
        assert_eq!(q.push(1), Ok(()));
        assert_eq!(q.push(2), Ok(()));
        assert_eq!(q.push(3), Err(PushError::Full));
        assert_eq!(q.push_urgent(100), Ok(()));
        // An urgent item cuts the window short: this returns at once, not after an hour.
        assert_eq!(take(&q, Duration::from_secs(3600)), Some(vec![1, 2, 100]));
        q.close();
        assert_eq!(q.push(4), Err(PushError::Closed));
        assert_eq!(q.push_urgent(101), Err(PushError::Closed));
        assert_eq!(take(&q, Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_batch_holds_at_most_batch_max_counted_items_in_order() {
        let q = BatchQueue::new(100, 3);
        for n in 0..7 {
            q.push(n).unwrap();
        }
        let window = Duration::from_secs(3600);
        // Full batches do not wait out the window.
        assert_eq!(take(&q, window), Some(vec![0, 1, 2]));
        assert_eq!(take(&q, window), Some(vec![3, 4, 5]));
        q.close();
        // Closed: what is left comes out without waiting, then the end.
        assert_eq!(take(&q, window), Some(vec![6]));
        assert_eq!(take(&q, window), None);
    }

    #[test]
    fn the_consumer_waits_for_a_first_item_and_is_woken_by_it() {
        let q = Arc::new(BatchQueue::new(10, 4));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || take(&q, Duration::ZERO))
        };
        q.push(7).unwrap();
        assert_eq!(consumer.join().unwrap(), Some(vec![7]));
    }

    #[test]
    fn an_urgent_item_wakes_a_consumer_waiting_out_its_window() {
        let q = Arc::new(BatchQueue::new(10, 4));
        q.push(1).unwrap();
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || take(&q, Duration::from_secs(3600)))
        };
        q.push_urgent(100).unwrap();
        assert_eq!(consumer.join().unwrap(), Some(vec![1, 100]));
    }
}
