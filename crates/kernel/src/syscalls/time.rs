//! clock_gettime, clock_getres, gettimeofday, time, nanosleep, clock_nanosleep.
//!
//! The sandbox reads the host's clocks (the kernel's own time source); CPU-time clocks are
//! the application's own CPU time, as the platform measures it.

use std::time::{Duration, Instant};

use moat_abi::{Errno, Timespec, Timeval, Timezone};
use rustix::time::ClockId;

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;

/// A clock the application can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    Host(ClockId),
    /// International Atomic Time (rustix names it only as a dynamic clock).
    Tai,
    /// CPU time of the calling process or thread (one thread per process for now).
    ProcessCpu,
    ThreadCpu,
}

fn clock(task: &Task, id: i32) -> Result<Clock, Errno> {
    Ok(match id {
        libc::CLOCK_REALTIME => Clock::Host(ClockId::Realtime),
        libc::CLOCK_MONOTONIC => Clock::Host(ClockId::Monotonic),
        libc::CLOCK_PROCESS_CPUTIME_ID => Clock::ProcessCpu,
        libc::CLOCK_THREAD_CPUTIME_ID => Clock::ThreadCpu,
        libc::CLOCK_MONOTONIC_RAW => Clock::Host(ClockId::MonotonicRaw),
        libc::CLOCK_REALTIME_COARSE => Clock::Host(ClockId::RealtimeCoarse),
        libc::CLOCK_MONOTONIC_COARSE => Clock::Host(ClockId::MonotonicCoarse),
        libc::CLOCK_BOOTTIME => Clock::Host(ClockId::Boottime),
        libc::CLOCK_REALTIME_ALARM => Clock::Host(ClockId::Realtime),
        libc::CLOCK_BOOTTIME_ALARM => Clock::Host(ClockId::Boottime),
        libc::CLOCK_TAI => Clock::Tai,
        // CPU clocks of a pid or tid: `(~pid << 3) | type`, type 3 being fd-based clocks.
        id if id < 0 && id & 3 != 3 => {
            let pid = !(id >> 3);
            let per_thread = id & 4 != 0;
            let mine = if per_thread {
                pid == 0 || pid == task.tid
            } else {
                pid == 0 || pid == task.tgid
            };
            if !mine {
                return Err(Errno::EINVAL);
            }
            if per_thread {
                Clock::ThreadCpu
            } else {
                Clock::ProcessCpu
            }
        }
        _ => return Err(Errno::EINVAL),
    })
}

fn to_timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

fn tai_now() -> Timespec {
    let t = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Tai)
        .unwrap_or_else(|_| rustix::time::clock_gettime(ClockId::Realtime));
    Timespec {
        tv_sec: t.tv_sec,
        tv_nsec: t.tv_nsec,
    }
}

fn now(task: &mut Task, c: Clock) -> Result<Timespec, Errno> {
    // The clocks the vDSO serves come from its line here too, so that a program sees one
    // clock whichever way it asks.
    let line = match c {
        Clock::Host(ClockId::Monotonic | ClockId::MonotonicCoarse) => {
            Some(crate::vdso::LineClock::Monotonic)
        }
        Clock::Host(ClockId::Realtime | ClockId::RealtimeCoarse) => {
            Some(crate::vdso::LineClock::Realtime)
        }
        Clock::Host(ClockId::Boottime) => Some(crate::vdso::LineClock::Boottime),
        _ => None,
    };
    if let Some(t) = line.and_then(|l| task.kernel.vdso.now(l)) {
        return Ok(t);
    }
    match c {
        Clock::Host(id) => {
            let t = rustix::time::clock_gettime(id);
            Ok(Timespec {
                tv_sec: t.tv_sec,
                tv_nsec: t.tv_nsec,
            })
        }
        Clock::Tai => Ok(tai_now()),
        Clock::ProcessCpu | Clock::ThreadCpu => task
            .context
            .cpu_time()
            .map(to_timespec)
            .map_err(|_| Errno::EINVAL),
    }
}

pub fn clock_gettime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let c = clock(task, int(a[0]))?;
    let t = now(task, c)?;
    task.mm.guard().write_obj(a[1], &t)?;
    Ok(0)
}

pub fn clock_getres(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let c = clock(task, int(a[0]))?;
    let res = match c {
        Clock::Host(id) => {
            let r = rustix::time::clock_getres(id);
            Timespec {
                tv_sec: r.tv_sec,
                tv_nsec: r.tv_nsec,
            }
        }
        Clock::Tai | Clock::ProcessCpu | Clock::ThreadCpu => Timespec {
            tv_sec: 0,
            tv_nsec: 1,
        },
    };
    if a[1] != 0 {
        task.mm.guard().write_obj(a[1], &res)?;
    }
    Ok(0)
}

/// `CLOCK_REALTIME` now, from the vDSO's line once there is one.
fn realtime(task: &Task) -> Timespec {
    task.kernel
        .vdso
        .now(crate::vdso::LineClock::Realtime)
        .unwrap_or_else(|| {
            let t = rustix::time::clock_gettime(ClockId::Realtime);
            Timespec {
                tv_sec: t.tv_sec,
                tv_nsec: t.tv_nsec,
            }
        })
}

pub fn gettimeofday(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != 0 {
        let t = realtime(task);
        let tv = Timeval {
            tv_sec: t.tv_sec,
            tv_usec: t.tv_nsec / 1000,
        };
        task.mm.guard().write_obj(a[0], &tv)?;
    }
    if a[1] != 0 {
        task.mm.guard().write_obj(a[1], &Timezone::default())?;
    }
    Ok(0)
}

pub fn time(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let secs = realtime(task).tv_sec;
    if a[0] != 0 {
        task.mm.guard().write_obj(a[0], &secs)?;
    }
    Ok(secs as u64)
}

fn read_timespec(task: &mut Task, addr: u64) -> Result<Timespec, Errno> {
    let t: Timespec = task.mm.guard().read_obj(addr)?;
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(t)
}

/// Sleep for `t`; interrupted, write the time left at `rem` (if not null) and let the signal
/// decide: `EINTR` if a handler runs, a restart otherwise.
fn sleep_relative(task: &mut Task, t: Timespec, rem: u64) -> SyscallResult {
    let deadline = Instant::now() + Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
    match task.sleep_until(deadline) {
        Ok(()) => Ok(0),
        Err(_) => {
            if rem != 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                let ts = Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                task.mm.guard().write_obj(rem, &ts)?;
            }
            Err(Errno::ERESTARTNOHAND)
        }
    }
}

pub fn nanosleep(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let t = read_timespec(task, a[0])?;
    sleep_relative(task, t, a[1])
}

pub fn clock_nanosleep(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let mut tai_offset = 0i64;
    let id = match int(a[0]) {
        libc::CLOCK_REALTIME => ClockId::Realtime,
        libc::CLOCK_TAI => {
            // Sleep on the realtime clock, shifted by the current TAI-UTC offset.
            tai_offset = tai_now().tv_sec - rustix::time::clock_gettime(ClockId::Realtime).tv_sec;
            ClockId::Realtime
        }
        libc::CLOCK_MONOTONIC => ClockId::Monotonic,
        libc::CLOCK_BOOTTIME => ClockId::Boottime,
        libc::CLOCK_THREAD_CPUTIME_ID => return Err(Errno::EINVAL),
        libc::CLOCK_PROCESS_CPUTIME_ID => {
            task.kernel.report_unimplemented(
                u64::from(moat_abi::syscalls::nr::CLOCK_NANOSLEEP) | (1 << 32),
                "clock_nanosleep on a CPU clock",
            );
            return Err(Errno::ENOSYS);
        }
        libc::CLOCK_MONOTONIC_RAW | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_MONOTONIC_COARSE => {
            return Err(Errno::EOPNOTSUPP)
        }
        _ => return Err(Errno::EINVAL),
    };
    let t = read_timespec(task, a[2])?;
    if int(a[1]) & libc::TIMER_ABSTIME != 0 {
        let target = rustix::time::Timespec {
            tv_sec: t.tv_sec - tai_offset,
            tv_nsec: t.tv_nsec,
        };
        let now = rustix::time::clock_gettime(id);
        let left = (target.tv_sec - now.tv_sec) as i128 * 1_000_000_000
            + (target.tv_nsec - now.tv_nsec) as i128;
        if left > 0 {
            let deadline = Instant::now() + Duration::from_nanos(left.min(u64::MAX as i128) as u64);
            // An absolute sleep restarts exactly, whatever interrupted it.
            task.sleep_until(deadline)
                .map_err(|_| Errno::ERESTARTNOHAND)?;
        }
        Ok(0)
    } else {
        sleep_relative(task, t, a[3])
    }
}
