//! poll, ppoll, select, pselect6: readiness of many files at once.
//!
//! Files in the kernel report readiness with `FileOps::poll` and wake sleepers through their
//! wait queue; donated host fds (stdio) are asked on the host. A wait sleeps on the task's
//! waker registered on every queue, so a signal or the sandbox's end interrupts it. While a
//! host fd is in the set, the wait also re-polls the host every few milliseconds (its
//! readiness cannot wake the task's waker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_abi::{Errno, Timespec, Timeval};
use rustix::event::{PollFd, PollFlags};

use super::{int, SyscallResult};
use crate::fs::pipe::{POLLERR, POLLHUP};
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::signal::UNBLOCKABLE;
use crate::task::Task;

/// `struct pollfd`: fd, events, revents.
const POLLFD_SIZE: u64 = 8;
const POLLNVAL: u32 = 0x20;
const POLLPRI: u32 = 0x2;
/// How often a wait that includes host fds looks at them again.
const HOST_REPOLL: Duration = Duration::from_millis(10);

/// One file of a readiness wait and the events asked for.
struct Watched {
    file: Option<Arc<OpenFile>>,
    events: u32,
}

/// Current readiness of every watched file (`POLLERR`/`POLLHUP` always count).
fn readiness(watched: &[Watched]) -> Result<Vec<u32>, Errno> {
    let mut out = vec![0u32; watched.len()];
    let mut host = Vec::new();
    let mut host_index = Vec::new();
    for (i, w) in watched.iter().enumerate() {
        let Some(file) = &w.file else {
            continue;
        };
        match file.ops().host_fd() {
            Some(fd) => {
                host.push(PollFd::from_borrowed_fd(
                    fd,
                    PollFlags::from_bits_truncate(w.events as u16),
                ));
                host_index.push(i);
            }
            None => out[i] = file.ops().poll(file) & (w.events | POLLERR | POLLHUP),
        }
    }
    if !host.is_empty() {
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut host, Some(&zero)) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno(e.raw_os_error())),
            }
        }
        for (p, &i) in host.iter().zip(&host_index) {
            out[i] = u32::from(p.revents().bits());
        }
    }
    Ok(out)
}

/// Sleep until `check` finds something among `files` or `deadline` passes (`Ok(None)`).
/// Interrupted by a signal: `ERESTARTNOHAND` (EINTR if a handler runs).
pub(crate) fn wait_files<R>(
    task: &mut Task,
    files: &[Arc<OpenFile>],
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Result<Option<R>, Errno>,
) -> Result<Option<R>, Errno> {
    let has_host = files.iter().any(|f| f.ops().host_fd().is_some());
    let queues: Vec<_> = files.iter().filter_map(|f| f.ops().wait_queue()).collect();
    loop {
        let slice = if has_host {
            let next = Instant::now() + HOST_REPOLL;
            Some(deadline.map_or(next, |d| d.min(next)))
        } else {
            deadline
        };
        match task.block_on(&queues, slice, |_| check()) {
            Ok(r) => return Ok(Some(r)),
            Err(Errno::ETIMEDOUT) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Ok(None);
            }
            Err(Errno::ETIMEDOUT) => {}
            Err(Errno::ERESTARTSYS) => return Err(Errno::ERESTARTNOHAND),
            Err(e) => return Err(e),
        }
    }
}

/// Wait until some watched file is ready or `deadline` passes; returns the readiness.
fn wait_ready(
    task: &mut Task,
    watched: &[Watched],
    deadline: Option<Instant>,
) -> Result<Vec<u32>, Errno> {
    let files: Vec<Arc<OpenFile>> = watched.iter().filter_map(|w| w.file.clone()).collect();
    let found = wait_files(task, &files, deadline, || {
        let ready = readiness(watched)?;
        Ok(ready.iter().any(|&r| r != 0).then_some(ready))
    })?;
    Ok(found.unwrap_or_else(|| vec![0; watched.len()]))
}

/// The readiness of one file for `events` (host fds asked on the host).
pub(crate) fn file_readiness(file: &Arc<OpenFile>, events: u32) -> Result<u32, Errno> {
    let w = [Watched {
        file: Some(file.clone()),
        events,
    }];
    Ok(readiness(&w)?[0])
}

fn do_poll(task: &mut Task, fds_addr: u64, nfds: u64, timeout: Option<Duration>) -> SyscallResult {
    if nfds > task.limit(libc::RLIMIT_NOFILE) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; (nfds * POLLFD_SIZE) as usize];
    task.mm.guard().read_bytes(fds_addr, &mut raw)?;
    let mut invalid = vec![false; nfds as usize];
    let watched: Vec<Watched> = raw
        .chunks(8)
        .enumerate()
        .map(|(i, c)| {
            let fd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let events = u32::from(u16::from_le_bytes([c[4], c[5]]));
            let file = if fd < 0 {
                None
            } else {
                match task.files.guard().get(fd) {
                    Ok(f) => Some(f),
                    Err(_) => {
                        invalid[i] = true;
                        None
                    }
                }
            };
            Watched { file, events }
        })
        .collect();
    let ready_now = readiness(&watched)?;
    let any_now = ready_now.iter().any(|&r| r != 0) || invalid.iter().any(|&b| b);
    let ready = if any_now || timeout == Some(Duration::ZERO) {
        ready_now
    } else {
        wait_ready(task, &watched, timeout.map(|t| Instant::now() + t))?
    };
    let mut count = 0;
    for (i, r) in ready.iter().enumerate() {
        let r = if invalid[i] { POLLNVAL } else { *r };
        if r != 0 {
            count += 1;
        }
        raw[i * 8 + 6..i * 8 + 8].copy_from_slice(&(r as u16).to_le_bytes());
    }
    task.mm.guard().write_bytes(fds_addr, &raw)?;
    Ok(count)
}

pub fn poll(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let ms = a[2] as i32;
    let timeout = (ms >= 0).then(|| Duration::from_millis(ms as u64));
    do_poll(task, a[0], a[1], timeout)
}

/// A timeout given as a `timespec` (`None` for a null pointer).
fn timespec_timeout(task: &Task, addr: u64) -> Result<Option<Duration>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let t: Timespec = task.mm.guard().read_obj(addr)?;
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}

/// Run `f` with the signal mask at `mask_addr` in force (ppoll, pselect6): the old mask comes
/// back afterwards, or after the handler of a signal that interrupted the wait.
pub(crate) fn with_mask(
    task: &mut Task,
    mask_addr: u64,
    f: impl FnOnce(&mut Task) -> SyscallResult,
) -> SyscallResult {
    if mask_addr == 0 {
        return f(task);
    }
    let set: u64 = task.mm.guard().read_obj(mask_addr)?;
    let old = std::mem::replace(&mut task.handle.signals.guard().mask, set & !UNBLOCKABLE);
    let r = f(task);
    match r {
        Err(e) if e.is_restart() => task.saved_mask = Some(old),
        _ => task.handle.signals.guard().mask = old,
    }
    r
}

pub fn ppoll(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = timespec_timeout(task, a[2])?;
    if a[3] != 0 && a[4] != 8 {
        return Err(Errno::EINVAL);
    }
    let (fds, nfds) = (a[0], a[1]);
    let start = Instant::now();
    let r = with_mask(task, a[3], |task| do_poll(task, fds, nfds, timeout));
    write_time_left(task, a[2], timeout, start)?;
    r
}

/// The raw `ppoll` and `pselect6` report the time left through their timeout argument
/// (glibc's `select` relies on it).
fn write_time_left(
    task: &Task,
    addr: u64,
    timeout: Option<Duration>,
    start: Instant,
) -> Result<(), Errno> {
    if let (Some(t), true) = (timeout, addr != 0) {
        let left = t.saturating_sub(start.elapsed());
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        task.mm.guard().write_obj(addr, &ts)?;
    }
    Ok(())
}

/// The fd sets of `select`: read, write, except, each a bitmap of `nfds` bits (or absent).
fn do_select(
    task: &mut Task,
    nfds: u64,
    sets: [u64; 3],
    timeout: Option<Duration>,
) -> SyscallResult {
    let nfds = usize::try_from(int(nfds)).map_err(|_| Errno::EINVAL)?;
    if nfds as u64 > task.limit(libc::RLIMIT_NOFILE).max(1024) {
        return Err(Errno::EINVAL);
    }
    let bytes = nfds.div_ceil(64) * 8;
    let mut maps = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
    for (map, &addr) in maps.iter_mut().zip(&sets) {
        if addr != 0 {
            task.mm.guard().read_bytes(addr, map)?;
        }
    }
    let bit = |map: &[u8], fd: usize| map[fd / 8] & (1 << (fd % 8)) != 0;
    let mut watched = Vec::new();
    let mut fds = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if bit(&maps[0], fd) {
            events |= crate::fs::pipe::POLLIN;
        }
        if bit(&maps[1], fd) {
            events |= crate::fs::pipe::POLLOUT;
        }
        if bit(&maps[2], fd) {
            events |= POLLPRI;
        }
        if events == 0 {
            continue;
        }
        let file = task.files.guard().get(fd as i32)?;
        watched.push(Watched {
            file: Some(file),
            events,
        });
        fds.push(fd);
    }
    let ready_now = readiness(&watched)?;
    let ready = if ready_now.iter().any(|&r| r != 0) || timeout == Some(Duration::ZERO) {
        ready_now
    } else {
        wait_ready(task, &watched, timeout.map(|t| Instant::now() + t))?
    };
    let mut out = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
    let mut count = 0;
    for ((w, &fd), &r) in watched.iter().zip(&fds).zip(&ready) {
        let checks = [
            (0, crate::fs::pipe::POLLIN | POLLHUP | POLLERR),
            (1, crate::fs::pipe::POLLOUT | POLLERR),
            (2, POLLPRI),
        ];
        for (set, mask) in checks {
            if bit(&maps[set], fd) && r & mask != 0 && w.events != 0 {
                out[set][fd / 8] |= 1 << (fd % 8);
                count += 1;
            }
        }
    }
    for (map, &addr) in out.iter().zip(&sets) {
        if addr != 0 {
            task.mm.guard().write_bytes(addr, map)?;
        }
    }
    Ok(count)
}

pub fn select(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = if a[4] == 0 {
        None
    } else {
        let tv: Timeval = task.mm.guard().read_obj(a[4])?;
        if tv.tv_sec < 0 || !(0..1_000_000).contains(&tv.tv_usec) {
            return Err(Errno::EINVAL);
        }
        Some(Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))
    };
    let start = Instant::now();
    let r = do_select(task, a[0], [a[1], a[2], a[3]], timeout);
    if let (Some(t), true) = (timeout, a[4] != 0) {
        // Linux's select reports the time left.
        let left = t.saturating_sub(start.elapsed());
        let tv = Timeval {
            tv_sec: left.as_secs() as i64,
            tv_usec: i64::from(left.subsec_micros()),
        };
        task.mm.guard().write_obj(a[4], &tv)?;
    }
    r
}

pub fn pselect6(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = timespec_timeout(task, a[4])?;
    // The sixth argument points to { const sigset_t *ss; size_t ss_len; }.
    let mask_addr = if a[5] == 0 {
        0
    } else {
        let ptr: u64 = task.mm.guard().read_obj(a[5])?;
        let len: u64 = task.mm.guard().read_obj(a[5] + 8)?;
        if ptr != 0 && len != 8 {
            return Err(Errno::EINVAL);
        }
        ptr
    };
    let (nfds, sets) = (a[0], [a[1], a[2], a[3]]);
    let start = Instant::now();
    let r = with_mask(task, mask_addr, |task| do_select(task, nfds, sets, timeout));
    write_time_left(task, a[4], timeout, start)?;
    r
}
