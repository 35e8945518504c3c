//! timer_create, timer_settime, timer_gettime, timer_getoverrun, timer_delete: POSIX
//! per-process timers that signal a process or one of its threads (or nothing) at expiry,
//! served by the kernel's timer service.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use moat_abi::{Errno, SigInfo, Timespec};
use rustix::time::ClockId;

use super::{int, SyscallResult};
use crate::process::{Guard, ThreadGroup};
use crate::task::Task;
use crate::timer::TimerId;
use crate::Kernel;

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD_ID: i32 = 4;
const TIMER_ABSTIME: i32 = 1;

/// What an expiry sends: SIGEV_SIGNAL, SIGEV_THREAD_ID or SIGEV_NONE, with the signal, the
/// value and the thread.
#[derive(Clone, Copy)]
struct Delivery {
    notify: i32,
    signo: i32,
    value: u64,
    thread: i32,
}

/// One POSIX timer.
pub struct PosixTimer {
    clock: ClockId,
    delivery: Delivery,
    pub armed: Option<TimerId>,
    next: Option<Instant>,
    interval: Duration,
    /// Expirations missed while the previous signal was still pending, and the count the last
    /// delivered signal carried (`timer_getoverrun`).
    overrun: Arc<AtomicI32>,
    /// Retires the callbacks of a setting that was replaced.
    generation: Arc<AtomicU64>,
}

/// `struct sigevent`: sigev_value (8), sigev_signo (4), sigev_notify (4), then the union
/// whose first int is the thread id.
fn read_sigevent(task: &Task, addr: u64) -> Result<(u64, i32, i32, i32), Errno> {
    let raw: [u64; 3] = task.mm.guard().read_obj(addr)?;
    Ok((
        raw[0],
        raw[1] as u32 as i32,
        (raw[1] >> 32) as u32 as i32,
        raw[2] as u32 as i32,
    ))
}

fn clock(id: i32) -> Result<ClockId, Errno> {
    match id {
        libc::CLOCK_REALTIME | 8 => Ok(ClockId::Realtime),
        libc::CLOCK_MONOTONIC => Ok(ClockId::Monotonic),
        libc::CLOCK_BOOTTIME | 9 => Ok(ClockId::Boottime),
        // Timers on CPU-time clocks need CPU accounting Moat does not do yet.
        libc::CLOCK_PROCESS_CPUTIME_ID | libc::CLOCK_THREAD_CPUTIME_ID => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}

pub fn timer_create(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let clock = clock(int(a[0]))?;
    let (value, signo, notify, thread) = if a[1] == 0 {
        (0, libc::SIGALRM, SIGEV_SIGNAL, 0)
    } else {
        read_sigevent(task, a[1])?
    };
    match notify {
        SIGEV_NONE => {}
        SIGEV_SIGNAL | SIGEV_THREAD_ID => {
            if !(1..=64).contains(&signo) {
                return Err(Errno::EINVAL);
            }
            if notify == SIGEV_THREAD_ID {
                let tree = task.kernel.tree.guard();
                let ok = tree.task(thread).is_some_and(|t| t.group.tgid == task.tgid);
                if !ok {
                    return Err(Errno::EINVAL);
                }
            }
        }
        _ => return Err(Errno::EINVAL),
    }
    // Check the destination before creating anything.
    task.mm.guard().check_access(a[2], 4, true)?;
    let mut timers = task.handle.group.posix_timers.guard();
    let id = (0..i32::MAX)
        .find(|i| !timers.contains_key(i))
        .ok_or(Errno::EAGAIN)?;
    timers.insert(
        id,
        PosixTimer {
            clock,
            delivery: Delivery {
                notify,
                signo,
                // With a NULL sigevent, the value is the timer id.
                value: if a[1] == 0 { id as u64 } else { value },
                thread,
            },
            armed: None,
            next: None,
            interval: Duration::ZERO,
            overrun: Arc::new(AtomicI32::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
        },
    );
    drop(timers);
    task.mm.guard().write_obj(a[2], &id)?;
    Ok(0)
}

fn duration(t: &Timespec) -> Result<Duration, Errno> {
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// (time left, interval) of a timer.
fn current(t: &PosixTimer) -> (Duration, Duration) {
    let left = t.next.map_or(Duration::ZERO, |n| {
        n.saturating_duration_since(Instant::now())
    });
    (left, t.interval)
}

/// Fire: signal the process or thread, or count an overrun if its last signal is still
/// pending (a timer has one signal in flight at most).
fn fire(kernel: &Kernel, group: &ThreadGroup, id: i32, d: Delivery, overrun: &AtomicI32) {
    let Delivery {
        notify,
        signo,
        value,
        thread,
    } = d;
    if notify == SIGEV_NONE {
        return;
    }
    let tree = kernel.tree.guard();
    let is_ours = |i: &SigInfo| i.code == moat_abi::SI_TIMER && i.fields[0] as u32 as i32 == id;
    let queued = if notify == SIGEV_THREAD_ID {
        tree.task(thread)
            .is_some_and(|t| t.signals.guard().pending.queue.iter().any(is_ours))
    } else {
        group.signals.guard().pending.queue.iter().any(is_ours)
    };
    if queued {
        let _ = overrun.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
            Some(o.saturating_add(1))
        });
        return;
    }
    let mut info = SigInfo {
        signo,
        code: moat_abi::SI_TIMER,
        ..SigInfo::default()
    };
    let missed = overrun.swap(0, Ordering::SeqCst);
    info.fields[0] = u64::from(id as u32) | (u64::from(missed as u32) << 32);
    info.fields[1] = value;
    if notify == SIGEV_THREAD_ID {
        crate::signal::send_to_thread_locked(&tree, thread, info);
    } else {
        crate::signal::send_to_process_locked(&tree, group.tgid, info);
    }
}

pub fn timer_settime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (id, flags) = (int(a[0]), int(a[1]));
    let spec: [Timespec; 2] = task.mm.guard().read_obj(a[2])?;
    let (interval, value) = (duration(&spec[0])?, duration(&spec[1])?);
    let group = task.handle.group.clone();
    let mut timers = group.posix_timers.guard();
    let timer = timers.get_mut(&id).ok_or(Errno::EINVAL)?;
    let old = current(timer);
    if let Some(armed) = timer.armed.take() {
        task.kernel.timers.cancel(armed);
    }
    let generation = timer.generation.fetch_add(1, Ordering::SeqCst) + 1;
    timer.interval = interval;
    timer.next = if value.is_zero() {
        None
    } else if flags & TIMER_ABSTIME != 0 {
        let now = rustix::time::clock_gettime(timer.clock);
        let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        Some(Instant::now() + value.saturating_sub(now))
    } else {
        Some(Instant::now() + value)
    };
    if let Some(at) = timer.next {
        let kernel: Weak<Kernel> = Arc::downgrade(&task.kernel);
        let weak_group = Arc::downgrade(&group);
        let delivery = timer.delivery;
        let (overrun, gen) = (timer.overrun.clone(), timer.generation.clone());
        let callback = Box::new(move || {
            let (kernel, group) = (kernel.upgrade()?, weak_group.upgrade()?);
            if gen.load(Ordering::SeqCst) != generation {
                return None;
            }
            fire(&kernel, &group, id, delivery, &overrun);
            let next = (!interval.is_zero()).then(|| Instant::now() + interval);
            if let Some(t) = group.posix_timers.guard().get_mut(&id) {
                if t.generation.load(Ordering::SeqCst) == generation {
                    t.next = next;
                }
            }
            next
        });
        timer.armed = Some(task.kernel.timers.arm(at, callback));
    }
    drop(timers);
    if a[3] != 0 {
        task.mm
            .guard()
            .write_obj(a[3], &[timespec(old.1), timespec(old.0)])?;
    }
    Ok(0)
}

pub fn timer_gettime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let id = int(a[0]);
    let (left, interval) = {
        let timers = task.handle.group.posix_timers.guard();
        current(timers.get(&id).ok_or(Errno::EINVAL)?)
    };
    task.mm
        .guard()
        .write_obj(a[1], &[timespec(interval), timespec(left)])?;
    Ok(0)
}

pub fn timer_getoverrun(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timers = task.handle.group.posix_timers.guard();
    let t = timers.get(&int(a[0])).ok_or(Errno::EINVAL)?;
    Ok(t.overrun.load(Ordering::SeqCst) as u64)
}

pub fn timer_delete(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let t = task
        .handle
        .group
        .posix_timers
        .guard()
        .remove(&int(a[0]))
        .ok_or(Errno::EINVAL)?;
    t.generation.fetch_add(1, Ordering::SeqCst);
    if let Some(armed) = t.armed {
        task.kernel.timers.cancel(armed);
    }
    Ok(0)
}
