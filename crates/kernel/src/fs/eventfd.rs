//! eventfd: a 64-bit counter as a file (eventfd(2)), for wake-ups between threads and
//! processes.

use std::sync::Mutex;

use moat_abi::{Errno, Stat};

use super::pipe::{POLLERR, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{FileOps, OpenFile};
use crate::process::Guard;
use crate::wait::WaitQueue;

/// The counter never reaches this value (a write that would is refused or waits).
const MAX: u64 = u64::MAX - 1;

#[derive(Debug)]
pub struct EventFd {
    counter: Mutex<u64>,
    /// `EFD_SEMAPHORE`: reads take one at a time.
    semaphore: bool,
    queue: WaitQueue,
}

impl EventFd {
    pub fn new(initial: u64, semaphore: bool) -> EventFd {
        EventFd {
            counter: Mutex::new(initial),
            semaphore,
            queue: WaitQueue::default(),
        }
    }
}

impl FileOps for EventFd {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut c = self.counter.guard();
        if *c == 0 {
            return Err(Errno::EAGAIN);
        }
        let value = if self.semaphore { 1 } else { *c };
        *c -= value;
        drop(c);
        buf[..8].copy_from_slice(&value.to_ne_bytes());
        self.queue.notify();
        Ok(8)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[..8]);
        let value = u64::from_ne_bytes(b);
        if value == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let mut c = self.counter.guard();
        if MAX - *c < value {
            return Err(Errno::EAGAIN);
        }
        *c += value;
        drop(c);
        self.queue.notify();
        Ok(8)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_inode_stat())
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let c = *self.counter.guard();
        let mut r = 0;
        if c > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if c < MAX {
            r |= POLLOUT | POLLWRNORM;
        }
        if c == u64::MAX {
            r |= POLLERR;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }
}
