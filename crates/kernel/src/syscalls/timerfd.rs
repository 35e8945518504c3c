//! timerfd_create, timerfd_settime, timerfd_gettime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_abi::{Errno, Timespec};
use rustix::time::ClockId;

use super::{int, SyscallResult};
use crate::fs::timerfd::TimerFd;
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::task::Task;

const TFD_TIMER_ABSTIME: i32 = 1;
const TFD_TIMER_CANCEL_ON_SET: i32 = 2;
const CLOCK_REALTIME_ALARM: i32 = 8;
const CLOCK_BOOTTIME_ALARM: i32 = 9;

/// The host clock a timerfd counts on (the alarm clocks cannot wake a sandbox's machine:
/// they count like their ordinary clocks).
fn clock(id: i32) -> Result<ClockId, Errno> {
    Ok(match id {
        libc::CLOCK_REALTIME | CLOCK_REALTIME_ALARM => ClockId::Realtime,
        libc::CLOCK_MONOTONIC => ClockId::Monotonic,
        libc::CLOCK_BOOTTIME | CLOCK_BOOTTIME_ALARM => ClockId::Boottime,
        _ => return Err(Errno::EINVAL),
    })
}

pub fn timerfd_create(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[1]);
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let ops = TimerFd::new(task.kernel.timers.clone(), clock(int(a[0]))?);
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

pub fn timerfd_settime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[1]);
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = task.file(int(a[0]))?;
    let timer = file.ops_as::<TimerFd>().ok_or(Errno::EINVAL)?;
    // struct itimerspec: interval, then value.
    let spec: [Timespec; 2] = task.mm.guard().read_obj(a[2])?;
    let (interval, value) = (duration(&spec[0])?, duration(&spec[1])?);
    let first = if value.is_zero() {
        None
    } else if flags & TFD_TIMER_ABSTIME != 0 {
        let now = rustix::time::clock_gettime(timer.clock());
        let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        Some(Instant::now() + value.saturating_sub(now))
    } else {
        Some(Instant::now() + value)
    };
    let (left, old_interval) = timer.set(first, interval);
    if a[3] != 0 {
        task.mm
            .guard()
            .write_obj(a[3], &[timespec(old_interval), timespec(left)])?;
    }
    Ok(0)
}

pub fn timerfd_gettime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.file(int(a[0]))?;
    let timer = file.ops_as::<TimerFd>().ok_or(Errno::EINVAL)?;
    let (left, interval) = timer.get();
    task.mm
        .guard()
        .write_obj(a[1], &[timespec(interval), timespec(left)])?;
    Ok(0)
}
