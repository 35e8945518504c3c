//! alarm, setitimer, getitimer: the process's real-time interval timer (`ITIMER_REAL`),
//! which sends `SIGALRM` from the kernel's timer service, and its CPU-time timers
//! (`ITIMER_VIRTUAL`, `ITIMER_PROF`: `SIGVTALRM`, `SIGPROF`). Moat counts all of a process's
//! CPU time as user time, so the two measure the same time; while one is armed the timer
//! service samples the process's CPU time every [`CPU_TICK`] (Linux's granularity is its
//! scheduler tick, 1-10 ms).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_abi::{Errno, SigInfo, Timeval};

use super::{int, SyscallResult};
use crate::process::{CpuTimer, Guard, RealTimer};
use crate::task::Task;

const ITIMER_REAL: i32 = 0;
const ITIMER_VIRTUAL: i32 = 1;
const ITIMER_PROF: i32 = 2;

fn to_timeval(d: Duration) -> Timeval {
    Timeval {
        tv_sec: d.as_secs() as i64,
        tv_usec: i64::from(d.subsec_micros()),
    }
}

/// The current setting: time left and interval.
fn current(task: &Task) -> (Duration, Duration) {
    let timer = task.handle.group.real_timer.guard();
    match &*timer {
        Some(t) => (
            task.kernel.timers.remaining(t.id).unwrap_or_default(),
            t.interval,
        ),
        None => (Duration::ZERO, Duration::ZERO),
    }
}

/// Replace the process's real timer; returns the old (left, interval).
fn set_real(task: &Task, value: Duration, interval: Duration) -> (Duration, Duration) {
    let group = task.handle.group.clone();
    let old = current(task);
    let mut slot = group.real_timer.guard();
    if let Some(t) = slot.take() {
        task.kernel.timers.cancel(t.id);
    }
    // A new generation makes a callback already running for the old timer a no-op.
    let generation = group.real_timer_generation.fetch_add(1, Ordering::SeqCst) + 1;
    if value.is_zero() {
        return old;
    }
    let kernel = Arc::downgrade(&task.kernel);
    let weak_group = Arc::downgrade(&group);
    let tgid = task.tgid;
    let callback = Box::new(move || {
        let (kernel, group) = (kernel.upgrade()?, weak_group.upgrade()?);
        if group.real_timer_generation.load(Ordering::SeqCst) != generation {
            return None;
        }
        let info = SigInfo {
            signo: libc::SIGALRM,
            code: moat_abi::SI_KERNEL,
            ..SigInfo::default()
        };
        crate::signal::send_to_process_locked(&kernel.tree.guard(), tgid, info);
        (!interval.is_zero()).then(|| Instant::now() + interval)
    });
    let id = task.kernel.timers.arm(Instant::now() + value, callback);
    *slot = Some(RealTimer { id, interval });
    old
}

/// How often an armed CPU-time timer's process is sampled (the scheduler tick of a Linux
/// built with HZ=250, as Debian's is).
const CPU_TICK: Duration = Duration::from_millis(4);

/// The signal a CPU-time timer sends (`idx` 0: `ITIMER_VIRTUAL`, 1: `ITIMER_PROF`).
fn cpu_signal(idx: usize) -> i32 {
    if idx == 0 {
        libc::SIGVTALRM
    } else {
        libc::SIGPROF
    }
}

/// The CPU time of process `tgid`: all its threads', those that exited included.
fn group_cpu(kernel: &crate::Kernel, tgid: i32) -> Option<Duration> {
    let (mm, exited) = {
        let tree = kernel.tree.guard();
        let node = tree.process(tgid)?;
        let exited = node.cpu_exited;
        let mm = node.threads.iter().find_map(|t| {
            let handle = tree.task(*t)?;
            let resources = handle.resources.guard();
            resources.as_ref().map(|r| r.mm.clone())
        })?;
        (mm, exited)
    };
    let aspace = mm.guard().cpu_time();
    Some(aspace.max(exited))
}

/// The current setting of CPU-time timer `idx`: time left and interval.
fn current_cpu(task: &mut Task, idx: usize) -> (Duration, Duration) {
    let now = super::rusage::process_cpu(task);
    let timers = task.handle.group.cpu_timers.guard();
    timers.timers[idx].map_or((Duration::ZERO, Duration::ZERO), |t| {
        // An expiry just passed but not yet seen by the sampler reads as the least time.
        let left = t.expires.saturating_sub(now).max(Duration::from_micros(1));
        (left, t.interval)
    })
}

/// Replace CPU-time timer `idx`; returns the old (left, interval).
fn set_cpu(
    task: &mut Task,
    idx: usize,
    value: Duration,
    interval: Duration,
) -> (Duration, Duration) {
    let old = current_cpu(task, idx);
    let now = super::rusage::process_cpu(task);
    let group = task.handle.group.clone();
    let mut timers = group.cpu_timers.guard();
    // Like Linux, a tick more than asked, so that the timer never fires early.
    timers.timers[idx] = (!value.is_zero()).then_some(CpuTimer {
        expires: now + value + CPU_TICK,
        interval,
    });
    if timers.timers.iter().any(Option::is_some) && !timers.polling {
        timers.polling = true;
        let kernel = Arc::downgrade(&task.kernel);
        let weak_group = Arc::downgrade(&group);
        let tgid = task.tgid;
        let callback = Box::new(move || {
            let (kernel, group) = (kernel.upgrade()?, weak_group.upgrade()?);
            let cpu = group_cpu(&kernel, tgid);
            let mut timers = group.cpu_timers.guard();
            let Some(cpu) = cpu else {
                timers.polling = false;
                return None;
            };
            for idx in 0..2 {
                let Some(t) = timers.timers[idx].as_mut() else {
                    continue;
                };
                if cpu < t.expires {
                    continue;
                }
                let info = SigInfo {
                    signo: cpu_signal(idx),
                    code: moat_abi::SI_KERNEL,
                    ..SigInfo::default()
                };
                crate::signal::send_to_process_locked(&kernel.tree.guard(), tgid, info);
                if t.interval.is_zero() {
                    timers.timers[idx] = None;
                } else {
                    // One signal however far behind the sampler fell (Linux counts no
                    // overruns for these either).
                    while t.expires <= cpu {
                        t.expires += t.interval;
                    }
                }
            }
            if timers.timers.iter().all(Option::is_none) {
                timers.polling = false;
                return None;
            }
            Some(Instant::now() + CPU_TICK)
        });
        task.kernel.timers.arm(Instant::now() + CPU_TICK, callback);
    }
    old
}

pub fn alarm(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let secs = u64::from(a[0] as u32);
    let (left, _) = set_real(task, Duration::from_secs(secs), Duration::ZERO);
    // alarm reports whole seconds left, rounding up a partial one.
    let mut s = left.as_secs();
    if left.subsec_nanos() > 0 || (s == 0 && !left.is_zero()) {
        s += 1;
    }
    Ok(s)
}

pub fn getitimer(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let which = int(a[0]);
    let (left, interval) = match which {
        ITIMER_REAL => current(task),
        ITIMER_VIRTUAL | ITIMER_PROF => current_cpu(task, which as usize - 1),
        _ => return Err(Errno::EINVAL),
    };
    task.mm
        .guard()
        .write_obj(a[1], &[to_timeval(interval), to_timeval(left)])?;
    Ok(0)
}

pub fn setitimer(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let which = int(a[0]);
    let new: [Timeval; 2] = if a[1] == 0 {
        [Timeval::default(), Timeval::default()]
    } else {
        task.mm.guard().read_obj(a[1])?
    };
    let dur = |tv: &Timeval| -> Result<Duration, Errno> {
        if tv.tv_sec < 0 || !(0..1_000_000).contains(&tv.tv_usec) {
            return Err(Errno::EINVAL);
        }
        Ok(Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))
    };
    let (interval, value) = (dur(&new[0])?, dur(&new[1])?);
    let old = match which {
        ITIMER_REAL => set_real(task, value, interval),
        ITIMER_VIRTUAL | ITIMER_PROF => set_cpu(task, which as usize - 1, value, interval),
        _ => return Err(Errno::EINVAL),
    };
    if a[2] != 0 {
        task.mm
            .guard()
            .write_obj(a[2], &[to_timeval(old.1), to_timeval(old.0)])?;
    }
    Ok(0)
}
