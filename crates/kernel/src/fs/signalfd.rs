//! signalfd: reading the calling thread's pending signals as a file (signalfd(2)). The
//! signals must be blocked to stay pending; a read dequeues them as `signalfd_siginfo`
//! records, and every signal sent to the process wakes the file's readers and pollers.

use std::sync::{Arc, Mutex, Weak};

use moat_abi::{Errno, SigInfo, Stat};

use super::pipe::{POLLIN, POLLRDNORM};
use super::{FileOps, OpenFile};
use crate::process::{Guard, TaskHandle, ThreadGroup};
use crate::wait::WaitQueue;
use crate::Kernel;

/// Size of `struct signalfd_siginfo`.
pub const RECORD: usize = 128;

pub struct SignalFd {
    mask: Mutex<u64>,
    kernel: Weak<Kernel>,
    /// The creating process: its signal queue wakes waiters.
    group: Arc<ThreadGroup>,
}

impl SignalFd {
    pub fn new(kernel: Weak<Kernel>, group: Arc<ThreadGroup>, mask: u64) -> SignalFd {
        SignalFd {
            mask: Mutex::new(mask),
            kernel,
            group,
        }
    }

    pub fn set_mask(&self, mask: u64) {
        *self.mask.guard() = mask;
        self.group.signal_events.notify();
    }

    /// The task reading: the one this host thread runs.
    fn reader(&self) -> Option<Arc<TaskHandle>> {
        let kernel = self.kernel.upgrade()?;
        let (_, tid) = crate::process::current();
        let tree = kernel.tree.guard();
        tree.task(tid).cloned()
    }

    fn take(&self, reader: &TaskHandle) -> Option<SigInfo> {
        let mask = *self.mask.guard();
        if let Some(info) = reader.signals.guard().pending.take(!mask) {
            return Some(info);
        }
        reader.group.signals.guard().pending.take(!mask)
    }

    fn pending(&self, reader: &TaskHandle) -> bool {
        let mask = *self.mask.guard();
        reader.signals.guard().pending.set & mask != 0
            || reader.group.signals.guard().pending.set & mask != 0
    }
}

/// A `signalfd_siginfo` record from a queued `siginfo`.
fn record(info: &SigInfo) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    put_u32(&mut r, 0, info.signo as u32);
    put_u32(&mut r, 4, info.errno as u32);
    put_u32(&mut r, 8, info.code as u32);
    let low = info.fields[0] as u32;
    let high = (info.fields[0] >> 32) as u32;
    let faults = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
    ];
    if info.code > 0 && faults.contains(&info.signo) {
        r[72..80].copy_from_slice(&info.fields[0].to_le_bytes()); // ssi_addr
    } else if info.code == moat_abi::SI_TIMER {
        put_u32(&mut r, 28, high); // ssi_overrun
        put_u32(&mut r, 20, low); // ssi_tid (the timer id)
        r[44..48].copy_from_slice(&(info.fields[1] as u32).to_le_bytes()); // ssi_int
        r[48..56].copy_from_slice(&info.fields[1].to_le_bytes()); // ssi_ptr
    } else {
        put_u32(&mut r, 12, low); // ssi_pid
        put_u32(&mut r, 16, high); // ssi_uid
        if info.signo == libc::SIGCHLD {
            put_u32(&mut r, 40, info.fields[1] as u32); // ssi_status
            r[56..64].copy_from_slice(&info.fields[2].to_le_bytes()); // ssi_utime
            r[64..72].copy_from_slice(&info.fields[3].to_le_bytes()); // ssi_stime
        } else {
            r[44..48].copy_from_slice(&(info.fields[1] as u32).to_le_bytes()); // ssi_int
            r[48..56].copy_from_slice(&info.fields[1].to_le_bytes()); // ssi_ptr
        }
    }
    r
}

fn put_u32(r: &mut [u8; RECORD], at: usize, v: u32) {
    r[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl FileOps for SignalFd {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < RECORD {
            return Err(Errno::EINVAL);
        }
        let reader = self.reader().ok_or(Errno::EAGAIN)?;
        let mut done = 0;
        while done + RECORD <= buf.len() {
            let Some(info) = self.take(&reader) else {
                break;
            };
            buf[done..done + RECORD].copy_from_slice(&record(&info));
            done += RECORD;
        }
        if done == 0 {
            return Err(Errno::EAGAIN);
        }
        Ok(done)
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
        match self.reader() {
            Some(r) if self.pending(&r) => POLLIN | POLLRDNORM,
            _ => 0,
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.group.signal_events)
    }
}
