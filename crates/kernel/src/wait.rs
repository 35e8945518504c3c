//! Blocking: how a task sleeps in the kernel until something it waits for happens, and how
//! whatever it waits for (a pipe, a child's exit, a signal) wakes it.
//!
//! Every task has one [`Waker`]. A blocking system call registers the task's waker on the
//! [`WaitQueue`]s of the objects it waits for, checks its condition, and sleeps on the waker;
//! a change to an object notifies its queue. Registering before checking means a notification
//! can never fall between the check and the sleep (the waker remembers it). Signals and the end
//! of the sandbox wake the waker directly, which is what makes every wait interruptible.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task's alarm clock: set by whoever has news for it, consumed by the task's sleep.
#[derive(Debug, Default)]
pub struct Waker {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Waker {
    /// Wake the task (or make its next sleep return at once).
    pub fn wake(&self) {
        *lock(&self.woken) = true;
        self.cond.notify_one();
    }

    /// Sleep until woken or until `deadline`; `false` if the deadline passed first.
    pub fn sleep(&self, deadline: Option<Instant>) -> bool {
        let mut woken = lock(&self.woken);
        loop {
            if *woken {
                *woken = false;
                return true;
            }
            match deadline {
                None => {
                    woken = self
                        .cond
                        .wait(woken)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    woken = self
                        .cond
                        .wait_timeout(woken, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Forget a pending wake-up (before starting a fresh wait).
    pub fn clear(&self) {
        *lock(&self.woken) = false;
    }
}

/// The tasks waiting for one object.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: Mutex<Vec<Arc<Waker>>>,
    /// Counts notifications: edge-triggered epoll reports a file again only after a new one.
    generation: std::sync::atomic::AtomicU64,
}

impl WaitQueue {
    /// Wake every waiter (they re-check their conditions).
    pub fn notify(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for w in lock(&self.waiters).iter() {
            w.wake();
        }
    }

    /// How many notifications there have been.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Add `waker` until the returned guard is dropped.
    pub fn register(&self, waker: &Arc<Waker>) -> Registration<'_> {
        lock(&self.waiters).push(waker.clone());
        Registration {
            queue: self,
            waker: waker.clone(),
        }
    }

    fn unregister(&self, waker: &Arc<Waker>) {
        let mut waiters = lock(&self.waiters);
        if let Some(i) = waiters.iter().position(|w| Arc::ptr_eq(w, waker)) {
            waiters.swap_remove(i);
        }
    }
}

/// A waker's place on a queue; leaving the scope leaves the queue.
pub struct Registration<'a> {
    queue: &'a WaitQueue,
    waker: Arc<Waker>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.queue.unregister(&self.waker);
    }
}

/// A registration that owns a reference to its queue (for waits on objects reached through
/// an `Arc`, such as files during `poll`).
pub struct OwnedRegistration {
    queue: Arc<dyn AsRef<WaitQueue> + Send + Sync>,
    waker: Arc<Waker>,
}

impl OwnedRegistration {
    pub fn new(queue: Arc<dyn AsRef<WaitQueue> + Send + Sync>, waker: &Arc<Waker>) -> Self {
        lock(&(*queue).as_ref().waiters).push(waker.clone());
        Self {
            queue,
            waker: waker.clone(),
        }
    }
}

impl Drop for OwnedRegistration {
    fn drop(&mut self) {
        (*self.queue).as_ref().unregister(&self.waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wake_before_the_sleep_is_not_lost() {
        let w = Arc::new(Waker::default());
        let q = WaitQueue::default();
        let _r = q.register(&w);
        q.notify();
        assert!(w.sleep(Some(Instant::now() + Duration::from_secs(5))));
    }

    #[test]
    fn sleep_times_out_and_unregisters() {
        let w = Arc::new(Waker::default());
        let q = WaitQueue::default();
        {
            let _r = q.register(&w);
            assert!(!w.sleep(Some(Instant::now() + Duration::from_millis(10))));
        }
        assert!(lock(&q.waiters).is_empty());
    }

    #[test]
    fn another_thread_wakes_the_sleeper() {
        let w = Arc::new(Waker::default());
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w2.wake();
        });
        assert!(w.sleep(None));
        t.join().unwrap();
    }
}
