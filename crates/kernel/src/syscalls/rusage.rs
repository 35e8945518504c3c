//! times, getrusage: the CPU time and memory a process and its children used.
//!
//! The host measures CPU time per stub thread without telling user from system time: all of
//! it is reported as user time, system time as 0 (application system calls run in Moat, on
//! Moat's threads, and are not charged to the application at all).

use std::sync::atomic::Ordering;
use std::time::Duration;

use moat_abi::Errno;

use super::{int, SyscallResult};
use crate::exit::duration_ticks;
use crate::process::Guard;
use crate::task::Task;

const RUSAGE_SELF: i32 = 0;
const RUSAGE_CHILDREN: i32 = -1;
const RUSAGE_THREAD: i32 = 1;

/// CPU time of the calling thread.
fn thread_cpu(task: &mut Task) -> Duration {
    task.context.cpu_time().unwrap_or_default()
}

/// CPU time of the caller's process: its exited threads' and its live ones'. The address
/// space counts every thread that ran in it, live or exited; the exited threads' times,
/// with the caller's own, bound it from below when the address space is younger than the
/// process (after an exec).
pub(crate) fn process_cpu(task: &mut Task) -> Duration {
    let own = thread_cpu(task);
    let exited = task
        .kernel
        .tree
        .guard()
        .process(task.tgid)
        .map_or(Duration::ZERO, |n| n.cpu_exited);
    let address_space = task.mm.guard().cpu_time();
    (exited + own).max(address_space)
}

/// CPU time of the caller's reaped children (and of theirs).
fn children_cpu(task: &Task) -> Duration {
    task.kernel
        .tree
        .guard()
        .process(task.tgid)
        .map_or(Duration::ZERO, |n| n.cpu_children)
}

/// `ru_maxrss` in KiB: the largest resident size of the process seen so far.
fn max_rss(task: &Task) -> u64 {
    let now = task.mm.guard().resident_size();
    let before = task.handle.group.maxrss.fetch_max(now, Ordering::SeqCst);
    before.max(now) / 1024
}

pub fn getrusage(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (cpu, maxrss) = match int(a[0]) {
        RUSAGE_SELF => (process_cpu(task), max_rss(task)),
        RUSAGE_THREAD => (thread_cpu(task), max_rss(task)),
        RUSAGE_CHILDREN => (children_cpu(task), 0),
        _ => return Err(Errno::EINVAL),
    };
    // `struct rusage`: ru_utime, ru_stime (timevals), then fourteen longs from ru_maxrss.
    let mut r = [0u64; 18];
    r[0] = cpu.as_secs();
    r[1] = u64::from(cpu.subsec_micros());
    r[4] = maxrss;
    task.mm.guard().write_obj(a[1], &r)?;
    Ok(0)
}

/// `times`: the process's and its reaped children's CPU time in clock ticks (100 Hz), and
/// the ticks since the sandbox started.
pub fn times(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != 0 {
        let tms = [
            duration_ticks(process_cpu(task)),
            0,
            duration_ticks(children_cpu(task)),
            0,
        ];
        task.mm.guard().write_obj(a[0], &tms)?;
    }
    Ok(duration_ticks(task.kernel.boot.elapsed()))
}
