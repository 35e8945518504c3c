//! Futex wait queues, keyed by address space and address.
//!
//! A waiter checks the futex word and enqueues itself under the table lock, so a waker that
//! changes the word and then calls `wake` can never miss it (the futex contract).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Identifies a futex: the address space (for private futexes) and the address.
pub type FutexKey = (u64, u64);

#[derive(Default)]
struct Waiter {
    woken: Mutex<bool>,
    cond: Condvar,
    bitset: u32,
}

/// All futex waiters of a sandbox.
#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<FutexKey, Vec<Arc<Waiter>>>>,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitResult {
    Woken,
    TimedOut,
    /// The futex word did not hold the expected value.
    ValueChanged,
}

impl FutexTable {
    /// Block while `still_expected()` holds (checked under the lock), until woken or `deadline`.
    pub fn wait(
        &self,
        key: FutexKey,
        bitset: u32,
        deadline: Option<Instant>,
        still_expected: impl FnOnce() -> bool,
    ) -> WaitResult {
        let waiter = Arc::new(Waiter {
            bitset,
            ..Waiter::default()
        });
        {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !still_expected() {
                return WaitResult::ValueChanged;
            }
            queues.entry(key).or_default().push(waiter.clone());
        }
        let mut woken = waiter
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*woken {
            match deadline {
                None => {
                    woken = waiter
                        .cond
                        .wait(woken)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    woken = waiter
                        .cond
                        .wait_timeout(woken, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
        }
        if *woken {
            return WaitResult::Woken;
        }
        drop(woken);
        // Timed out: leave the queue (unless a waker took us off it meanwhile).
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(q) = queues.get_mut(&key) {
            q.retain(|w| !Arc::ptr_eq(w, &waiter));
            if q.is_empty() {
                queues.remove(&key);
            }
        }
        if *waiter
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            WaitResult::Woken
        } else {
            WaitResult::TimedOut
        }
    }

    /// Wake up to `count` waiters whose bitset intersects `bitset`; returns how many.
    pub fn wake(&self, key: FutexKey, bitset: u32, count: usize) -> usize {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(q) = queues.get_mut(&key) else {
            return 0;
        };
        let mut n = 0;
        q.retain(|w| {
            if n < count && w.bitset & bitset != 0 {
                *w.woken
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
                w.cond.notify_one();
                n += 1;
                false
            } else {
                true
            }
        });
        if q.is_empty() {
            queues.remove(&key);
        }
        n
    }
}
