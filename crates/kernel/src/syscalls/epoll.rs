//! epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2, and eventfd2.
//!
//! An epoll instance is a file holding its interest list. Entries refer to their file weakly:
//! as on Linux, an entry goes away when the last fd of its file description is closed.
//! Edge-triggered entries report again only after their file's wait queue has been notified
//! since the last report (each queue counts its notifications).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use moat_abi::{Errno, Stat, Timespec};

use super::poll::{file_readiness, wait_files, with_mask};
use super::{int, SyscallResult};
use crate::fs::pipe::{POLLERR, POLLHUP};
use crate::fs::{FileOps, OpenFile};
use crate::process::Guard;
use crate::task::Task;

const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CTL_MOD: i32 = 3;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLWAKEUP: u32 = 1 << 29;
const EPOLLONESHOT: u32 = 1 << 30;
const EPOLLET: u32 = 1 << 31;
/// `struct epoll_event` is packed on x86-64: 4 bytes of events, 8 of data.
const EVENT_SIZE: usize = 12;
/// `EP_MAX_EVENTS`.
const MAX_EVENTS: i32 = i32::MAX / EVENT_SIZE as i32;

struct Entry {
    file: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// EPOLLONESHOT fired: nothing is reported until EPOLL_CTL_MOD re-arms it.
    disabled: bool,
    /// The file's queue generation at the last edge-triggered report.
    seen: u64,
}

/// An epoll instance.
#[derive(Default)]
pub struct Epoll {
    /// Keyed by fd number and description identity, as Linux keys by (fd, file).
    entries: Mutex<BTreeMap<(i32, u64), Entry>>,
}

impl FileOps for Epoll {
    fn read(&self, _: &OpenFile, _: &mut [u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn write(&self, _: &OpenFile, _: &[u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::fs::anon_inode_stat())
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        // Readable when a wait would report something (level view, without consuming).
        let entries = self.entries.guard();
        let any = entries.values().any(|e| {
            !e.disabled
                && e.file.upgrade().is_some_and(|f| {
                    file_readiness(&f, e.events)
                        .is_ok_and(|r| r & (e.events | POLLERR | POLLHUP) != 0)
                })
        });
        if any {
            crate::fs::pipe::POLLIN | crate::fs::pipe::POLLRDNORM
        } else {
            0
        }
    }
}

impl Epoll {
    /// Collect up to `max` ready events; `None` if none.
    fn collect(&self, max: usize) -> Result<Option<Vec<(u32, u64)>>, Errno> {
        let mut entries = self.entries.guard();
        entries.retain(|_, e| e.file.strong_count() > 0);
        let mut out = Vec::new();
        for e in entries.values_mut() {
            if out.len() >= max {
                break;
            }
            if e.disabled {
                continue;
            }
            let Some(file) = e.file.upgrade() else {
                continue;
            };
            let ready = file_readiness(&file, e.events)? & (e.events | POLLERR | POLLHUP);
            if ready == 0 {
                continue;
            }
            if e.events & EPOLLET != 0 {
                let generation = file
                    .ops()
                    .wait_queue()
                    .map_or(0, crate::wait::WaitQueue::generation);
                if generation == e.seen {
                    continue;
                }
                e.seen = generation;
            }
            if e.events & EPOLLONESHOT != 0 {
                e.disabled = true;
            }
            out.push((ready, e.data));
        }
        Ok((!out.is_empty()).then_some(out))
    }

    fn files(&self) -> Vec<Arc<OpenFile>> {
        self.entries
            .guard()
            .values()
            .filter_map(|e| e.file.upgrade())
            .collect()
    }
}

pub fn epoll_create1(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[0]);
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    install(
        task,
        Box::new(Epoll::default()),
        flags & libc::EPOLL_CLOEXEC != 0,
    )
}

pub fn epoll_create(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if int(a[0]) <= 0 {
        return Err(Errno::EINVAL);
    }
    install(task, Box::new(Epoll::default()), false)
}

fn install(task: &mut Task, ops: Box<dyn FileOps>, cloexec: bool) -> SyscallResult {
    let file = Arc::new(OpenFile::new(ops, libc::O_RDWR as u32));
    let limit = task.limit(libc::RLIMIT_NOFILE);
    Ok(task.files.guard().install(file, cloexec, 0, limit)? as u64)
}

pub fn epoll_ctl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (epfd, op, fd) = (int(a[0]), int(a[1]), int(a[2]));
    let ep_file = task.file(epfd)?;
    let target = task.file(fd)?;
    let epoll = ep_file.ops_as::<Epoll>().ok_or(Errno::EINVAL)?;
    if fd == epfd {
        return Err(Errno::EINVAL);
    }
    // Files that never wait (regular files, directories) cannot be watched.
    if target.ops().wait_queue().is_none()
        && target.ops().host_fd().is_none()
        && target.ops_as::<Epoll>().is_none()
    {
        return Err(Errno::EPERM);
    }
    let event = if op == EPOLL_CTL_DEL {
        None
    } else {
        let mut raw = [0u8; EVENT_SIZE];
        task.mm.guard().read_bytes(a[3], &mut raw)?;
        let events = u32::from_le_bytes(raw[..4].try_into().map_err(|_| Errno::EFAULT)?);
        let data = u64::from_le_bytes(raw[4..].try_into().map_err(|_| Errno::EFAULT)?);
        Some((events & !EPOLLWAKEUP, data))
    };
    let key = (fd, target.id());
    let mut entries = epoll.entries.guard();
    entries.retain(|_, e| e.file.strong_count() > 0);
    match (op, event) {
        (EPOLL_CTL_ADD, Some((events, data))) => {
            if entries.contains_key(&key) {
                return Err(Errno::EEXIST);
            }
            entries.insert(
                key,
                Entry {
                    file: Arc::downgrade(&target),
                    events,
                    data,
                    disabled: false,
                    // A ready file reports once after being added, even edge-triggered.
                    seen: u64::MAX,
                },
            );
        }
        (EPOLL_CTL_MOD, Some((events, data))) => {
            let e = entries.get_mut(&key).ok_or(Errno::ENOENT)?;
            if events & EPOLLEXCLUSIVE != 0 || e.events & EPOLLEXCLUSIVE != 0 {
                return Err(Errno::EINVAL);
            }
            e.events = events;
            e.data = data;
            e.disabled = false;
            e.seen = u64::MAX;
        }
        (EPOLL_CTL_DEL, None) => {
            entries.remove(&key).ok_or(Errno::ENOENT)?;
        }
        _ => return Err(Errno::EINVAL),
    }
    Ok(0)
}

fn do_wait(
    task: &mut Task,
    epfd: i32,
    events_addr: u64,
    max: i32,
    timeout: Option<Duration>,
) -> SyscallResult {
    if max <= 0 || max > MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let ep_file = task.file(epfd)?;
    let epoll = ep_file.ops_as::<Epoll>().ok_or(Errno::EINVAL)?;
    task.mm
        .guard()
        .check_access(events_addr, max as u64 * EVENT_SIZE as u64, true)?;
    let max = max as usize;
    let found = match epoll.collect(max)? {
        Some(f) => Some(f),
        None if timeout == Some(Duration::ZERO) => None,
        None => {
            let files = epoll.files();
            let deadline = timeout.map(|t| Instant::now() + t);
            wait_files(task, &files, deadline, || epoll.collect(max))?
        }
    };
    let found = found.unwrap_or_default();
    let mut raw = Vec::with_capacity(found.len() * EVENT_SIZE);
    for (events, data) in &found {
        raw.extend_from_slice(&events.to_le_bytes());
        raw.extend_from_slice(&data.to_le_bytes());
    }
    task.mm.guard().write_bytes(events_addr, &raw)?;
    Ok(found.len() as u64)
}

fn ms_timeout(arg: u64) -> Option<Duration> {
    let ms = int(arg);
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

pub fn epoll_wait(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_wait(task, int(a[0]), a[1], int(a[2]), ms_timeout(a[3]))
}

pub fn epoll_pwait(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[4] != 0 && a[5] != 8 {
        return Err(Errno::EINVAL);
    }
    let (epfd, events, max, timeout) = (int(a[0]), a[1], int(a[2]), ms_timeout(a[3]));
    with_mask(task, a[4], |task| do_wait(task, epfd, events, max, timeout))
}

pub fn epoll_pwait2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[4] != 0 && a[5] != 8 {
        return Err(Errno::EINVAL);
    }
    let timeout = if a[3] == 0 {
        None
    } else {
        let t: Timespec = task.mm.guard().read_obj(a[3])?;
        if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
            return Err(Errno::EINVAL);
        }
        Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    };
    let (epfd, events, max) = (int(a[0]), a[1], int(a[2]));
    with_mask(task, a[4], |task| do_wait(task, epfd, events, max, timeout))
}

const EFD_SEMAPHORE: i32 = 1;

pub fn eventfd2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[1]);
    if flags & !(EFD_SEMAPHORE | libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let ops = crate::fs::eventfd::EventFd::new(u64::from(a[0] as u32), flags & EFD_SEMAPHORE != 0);
    let file = Arc::new(OpenFile::new(
        Box::new(ops),
        libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK) as u32,
    ));
    let limit = task.limit(libc::RLIMIT_NOFILE);
    Ok(task
        .files
        .guard()
        .install(file, flags & libc::O_CLOEXEC != 0, 0, limit)? as u64)
}

pub fn eventfd(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    eventfd2(task, &[a[0], 0, 0, 0, 0, 0])
}
