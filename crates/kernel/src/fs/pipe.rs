//! Pipes: a bounded byte queue with a read end and a write end (pipe(7)).
//!
//! The ends never block themselves: an empty read or a full write is `EAGAIN`, and the
//! system call layer sleeps on the pipe's wait queue unless the description is
//! `O_NONBLOCK`. Writes of at most `PIPE_BUF` bytes are atomic: they go in whole or wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use moat_abi::{Errno, Stat};

use super::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::wait::WaitQueue;

/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;
/// A new pipe's capacity (16 pages).
pub const DEFAULT_CAPACITY: usize = 65536;
/// The largest capacity an unprivileged process may set (`/proc/sys/fs/pipe-max-size`).
pub const MAX_CAPACITY: usize = 1 << 20;

/// Poll bits.
pub const POLLIN: u32 = 0x1;
pub const POLLOUT: u32 = 0x4;
pub const POLLERR: u32 = 0x8;
pub const POLLHUP: u32 = 0x10;
pub const POLLRDNORM: u32 = 0x40;
pub const POLLWRNORM: u32 = 0x100;

#[derive(Debug)]
struct State {
    data: VecDeque<u8>,
    /// Packet boundaries (`O_DIRECT` writers): lengths of the packets at the end of `data`'s
    /// packetized stretches, oldest first, with how many ordinary bytes precede each.
    packets: VecDeque<(usize, usize)>,
    capacity: usize,
    readers: usize,
    writers: usize,
    /// A writer has been attached at some time (a FIFO opened for reading before any
    /// writer is not at end of file).
    had_writer: bool,
}

/// The shared part of a pipe.
#[derive(Debug)]
pub struct Pipe {
    state: Mutex<State>,
    queue: WaitQueue,
    /// Identity for `fstat` (`st_ino`).
    ino: u64,
}

impl Pipe {
    pub fn new() -> Arc<Pipe> {
        static NEXT_INO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Arc::new(Pipe {
            state: Mutex::new(State {
                data: VecDeque::new(),
                packets: VecDeque::new(),
                capacity: DEFAULT_CAPACITY,
                readers: 0,
                writers: 0,
                had_writer: false,
            }),
            queue: WaitQueue::default(),
            ino: NEXT_INO.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// A new end of this pipe.
    pub fn end(self: &Arc<Pipe>, write: bool) -> PipeEnd {
        {
            let mut s = self.state.guard();
            if write {
                s.writers += 1;
                s.had_writer = true;
            } else {
                s.readers += 1;
            }
        }
        self.queue.notify();
        PipeEnd {
            pipe: self.clone(),
            write,
        }
    }
}

/// One end of a pipe, as an open file's operations.
#[derive(Debug)]
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    write: bool,
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        {
            let mut s = self.pipe.state.guard();
            if self.write {
                s.writers -= 1;
            } else {
                s.readers -= 1;
            }
        }
        self.pipe.queue.notify();
    }
}

/// `FIONREAD`.
const FIONREAD: u32 = 0x541b;
/// `F_SETPIPE_SZ`/`F_GETPIPE_SZ` come through `PipeEnd::set_capacity`/`capacity`.
impl PipeEnd {
    pub fn capacity(&self) -> usize {
        self.pipe.state.guard().capacity
    }

    /// `F_SETPIPE_SZ`: rounded up to a power-of-two number of pages; `EBUSY` if the data
    /// would not fit, `EPERM` past the maximum.
    pub fn set_capacity(&self, size: u64) -> Result<usize, Errno> {
        if size > MAX_CAPACITY as u64 {
            return Err(Errno::EPERM);
        }
        let pages = (size.max(1) as usize).div_ceil(4096).next_power_of_two();
        let cap = pages * 4096;
        let mut s = self.pipe.state.guard();
        if s.data.len() > cap {
            return Err(Errno::EBUSY);
        }
        s.capacity = cap;
        drop(s);
        self.pipe.queue.notify();
        Ok(cap)
    }
}

/// What `splice` needs of a pipe: its room, and its bytes without taking them (so that
/// bytes the other file refuses stay in the pipe, as Linux's splice leaves them).
impl PipeEnd {
    /// Free space for a writer; `EPIPE` when no reader is left.
    pub fn room(&self) -> Result<usize, Errno> {
        let s = self.pipe.state.guard();
        if s.readers == 0 {
            return Err(Errno::EPIPE);
        }
        Ok(s.capacity.saturating_sub(s.data.len()))
    }

    /// Copy the first bytes into `buf` without taking them: 0 at end of file, `EAGAIN` when
    /// empty.
    pub fn peek(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let s = self.pipe.state.guard();
        if s.data.is_empty() {
            return if s.writers == 0 && s.had_writer {
                Ok(0)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = buf.len().min(s.data.len());
        for (dst, src) in buf.iter_mut().zip(s.data.iter()) {
            *dst = *src;
        }
        Ok(n)
    }

    /// Take `n` bytes a `peek` showed.
    pub fn consume(&self, file: &OpenFile, mut n: usize) {
        let mut scratch = [0u8; 4096];
        while n > 0 {
            let k = n.min(scratch.len());
            match self.read(file, &mut scratch[..k], None) {
                Ok(0) | Err(_) => break,
                Ok(got) => n -= got,
            }
        }
    }

    /// Whether `other` is an end of the same pipe.
    pub fn same_pipe(&self, other: &PipeEnd) -> bool {
        Arc::ptr_eq(&self.pipe, &other.pipe)
    }
}

impl FileOps for PipeEnd {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let mut s = self.pipe.state.guard();
        if s.data.is_empty() {
            return if s.writers == 0 && s.had_writer {
                Ok(0)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        // Ordinary bytes up to the next packet, then at most that one packet (a short read
        // of a packet discards its rest, as Linux's packet mode does).
        let (plain, packet) = s.packets.front().copied().unwrap_or((s.data.len(), 0));
        let n = buf.len().min(plain + packet);
        for (dst, src) in buf.iter_mut().zip(s.data.drain(..n)) {
            *dst = src;
        }
        if packet > 0 {
            if n > plain {
                let rest = plain + packet - n;
                s.data.drain(..rest);
                s.packets.pop_front();
            } else if let Some(front) = s.packets.front_mut() {
                front.0 -= n;
            }
        }
        drop(s);
        self.pipe.queue.notify();
        Ok(n)
    }

    fn write(&self, file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let packetized = file.flags() & libc::O_DIRECT as u32 != 0;
        let mut s = self.pipe.state.guard();
        if s.readers == 0 {
            return Err(Errno::EPIPE);
        }
        let room = s.capacity.saturating_sub(s.data.len());
        if room == 0 || (buf.len() <= PIPE_BUF && room < buf.len()) {
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(room);
        if packetized {
            // One packet per page written, as Linux's pipe buffers.
            for chunk in buf[..n].chunks(PIPE_BUF) {
                let queued: usize = s.packets.iter().map(|(p, k)| p + k).sum();
                let plain = s.data.len() - queued;
                s.packets.push_back((plain, chunk.len()));
                s.data.extend(chunk);
            }
        } else {
            s.data.extend(&buf[..n]);
        }
        drop(s);
        self.pipe.queue.notify();
        Ok(n)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        match request {
            FIONREAD => {
                let n = self.pipe.state.guard().data.len() as i32;
                mm.write_obj(arg, &n)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            st_dev: 0xc,
            st_ino: self.pipe.ino,
            st_nlink: 1,
            st_mode: libc::S_IFIFO | 0o600,
            st_blksize: 4096,
            ..Stat::default()
        })
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let s = self.pipe.state.guard();
        if self.write {
            let mut r = 0;
            if s.capacity - s.data.len() >= PIPE_BUF.min(s.capacity) {
                r |= POLLOUT | POLLWRNORM;
            }
            if s.readers == 0 {
                r |= POLLERR;
            }
            r
        } else {
            let mut r = 0;
            if !s.data.is_empty() {
                r |= POLLIN | POLLRDNORM;
            }
            if s.writers == 0 && s.had_writer {
                r |= POLLHUP;
            }
            r
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pipe.queue)
    }
}
