//! The sandbox's timer service: one host thread that fires callbacks at deadlines, for the
//! timers that deliver signals without anyone waiting (`alarm`, `setitimer`, POSIX timers).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::process::Guard;

/// What fires: returns the next deadline for a periodic timer.
pub type Callback = Box<dyn FnMut() -> Option<Instant> + Send>;

#[derive(Default)]
struct State {
    /// (deadline, id) -> callback.
    queue: BTreeMap<(Instant, u64), Callback>,
    /// id -> current deadline, for cancelling.
    deadlines: BTreeMap<u64, Instant>,
    next_id: u64,
    running: bool,
}

/// Deadlines and their callbacks, served by one thread started on first use.
#[derive(Default)]
pub struct Timers {
    state: Mutex<State>,
    cond: Condvar,
}

/// Names an armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(u64);

impl Timers {
    /// Fire `callback` at `at` (and again at whatever deadline it returns).
    pub fn arm(self: &Arc<Self>, at: Instant, callback: Callback) -> TimerId {
        let mut s = self.state.guard();
        s.next_id += 1;
        let id = s.next_id;
        s.queue.insert((at, id), callback);
        s.deadlines.insert(id, at);
        if !s.running {
            s.running = true;
            let me = Arc::downgrade(self);
            let _ = std::thread::Builder::new()
                .name("moat-timers".into())
                .spawn(move || Self::serve(&me));
        }
        drop(s);
        self.cond.notify_one();
        TimerId(id)
    }

    /// Disarm; returns the time that was left, if the timer was still armed.
    pub fn cancel(&self, id: TimerId) -> Option<Duration> {
        let mut s = self.state.guard();
        let at = s.deadlines.remove(&id.0)?;
        s.queue.remove(&(at, id.0));
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Time left on an armed timer.
    pub fn remaining(&self, id: TimerId) -> Option<Duration> {
        let s = self.state.guard();
        s.deadlines
            .get(&id.0)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn serve(me: &std::sync::Weak<Timers>) {
        loop {
            let Some(timers) = me.upgrade() else {
                return;
            };
            let mut s = timers.state.guard();
            let now = Instant::now();
            let due = s.queue.keys().next().copied().filter(|(at, _)| *at <= now);
            if let Some(key) = due {
                let mut callback = s.queue.remove(&key).expect("key just seen");
                s.deadlines.remove(&key.1);
                drop(s);
                let next = callback();
                let mut s = timers.state.guard();
                if let Some(at) = next {
                    s.queue.insert((at, key.1), callback);
                    s.deadlines.insert(key.1, at);
                }
                continue;
            }
            let wait = s
                .queue
                .keys()
                .next()
                .map_or(Duration::from_secs(1), |(at, _)| *at - now);
            // Wake at least once a second to notice the sandbox has gone (weak reference).
            let _ = timers
                .cond
                .wait_timeout(s, wait.min(Duration::from_secs(1)))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}
