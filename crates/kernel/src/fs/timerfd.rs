//! timerfd: a timer read as a file (timerfd_create(2)). Reading returns the number of
//! expirations since the last read; the kernel's timer service notifies the file's wait queue
//! at each expiry so `read`, `poll` and `epoll` sleepers wake.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_abi::{Errno, Stat};

use super::pipe::{POLLIN, POLLRDNORM};
use super::{FileOps, OpenFile};
use crate::process::Guard;
use crate::timer::{TimerId, Timers};
use crate::wait::WaitQueue;

#[derive(Default)]
struct Setting {
    /// The next expiry, while armed.
    next: Option<Instant>,
    interval: Duration,
    /// Expirations counted but not read yet.
    unread: u64,
    /// The timer service's entry that wakes readers at `next`.
    alarm: Option<TimerId>,
}

struct Shared {
    setting: Mutex<Setting>,
    queue: WaitQueue,
}

impl Setting {
    /// Bring the expiration count up to now.
    fn catch_up(&mut self) {
        let s = self;
        let now = Instant::now();
        let Some(next) = s.next else {
            return;
        };
        if now < next {
            return;
        }
        if s.interval.is_zero() {
            s.unread += 1;
            s.next = None;
        } else {
            let late = now - next;
            let periods = (late.as_nanos() / s.interval.as_nanos()) as u64;
            s.unread += periods + 1;
            s.next = Some(next + s.interval * u32::try_from(periods + 1).unwrap_or(u32::MAX));
        }
    }
}

/// A timerfd's operations.
pub struct TimerFd {
    shared: Arc<Shared>,
    timers: Arc<Timers>,
    /// The clock absolute settings are read against.
    clock: rustix::time::ClockId,
}

impl TimerFd {
    pub fn new(timers: Arc<Timers>, clock: rustix::time::ClockId) -> TimerFd {
        TimerFd {
            clock,
            shared: Arc::new(Shared {
                setting: Mutex::new(Setting::default()),
                queue: WaitQueue::default(),
            }),
            timers,
        }
    }

    /// The clock of `TFD_TIMER_ABSTIME` settings.
    pub fn clock(&self) -> rustix::time::ClockId {
        self.clock
    }

    /// (time left, interval) of the current setting.
    pub fn get(&self) -> (Duration, Duration) {
        let mut s = self.shared.setting.guard();
        s.catch_up();
        let left = s.next.map_or(Duration::ZERO, |n| {
            n.saturating_duration_since(Instant::now())
        });
        (left, s.interval)
    }

    /// Arm at `first` (or disarm with `None`) with `interval`; returns the old setting.
    pub fn set(&self, first: Option<Instant>, interval: Duration) -> (Duration, Duration) {
        let old = self.get();
        let mut s = self.shared.setting.guard();
        if let Some(id) = s.alarm.take() {
            self.timers.cancel(id);
        }
        s.unread = 0;
        s.next = first;
        s.interval = interval;
        if let Some(at) = first {
            let weak = Arc::downgrade(&self.shared);
            let alarm = self.timers.arm(
                at,
                Box::new(move || {
                    let shared = weak.upgrade()?;
                    shared.queue.notify();
                    let s = shared.setting.guard();
                    (!s.interval.is_zero()).then(|| Instant::now() + s.interval)
                }),
            );
            s.alarm = Some(alarm);
        }
        drop(s);
        self.shared.queue.notify();
        old
    }
}

impl Drop for TimerFd {
    fn drop(&mut self) {
        if let Some(id) = self.shared.setting.guard().alarm.take() {
            self.timers.cancel(id);
        }
    }
}

impl FileOps for TimerFd {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut s = self.shared.setting.guard();
        s.catch_up();
        if s.unread == 0 {
            return Err(Errno::EAGAIN);
        }
        buf[..8].copy_from_slice(&s.unread.to_ne_bytes());
        s.unread = 0;
        Ok(8)
    }

    fn write(&self, _file: &OpenFile, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_inode_stat())
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let mut s = self.shared.setting.guard();
        s.catch_up();
        if s.unread > 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.shared.queue)
    }
}
