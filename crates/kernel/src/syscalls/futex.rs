//! futex: WAIT, WAKE and their bitset forms. The PI and requeue operations come with threads.

use std::time::{Duration, Instant};

use moat_abi::{syscalls::nr, Errno, Timespec};
use rustix::time::ClockId;

use super::{int, SyscallResult};
use crate::futex::WaitResult;
use crate::task::Task;

const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;
const FUTEX_WAIT_BITSET: i32 = 9;
const FUTEX_WAKE_BITSET: i32 = 10;
const FUTEX_PRIVATE_FLAG: i32 = 128;
const FUTEX_CLOCK_REALTIME: i32 = 256;
const BITSET_MATCH_ANY: u32 = u32::MAX;

/// Turn a futex timeout into a deadline: relative for `FUTEX_WAIT`, absolute on the chosen
/// clock for `FUTEX_WAIT_BITSET`.
fn deadline(
    task: &mut Task,
    addr: u64,
    absolute: bool,
    realtime: bool,
) -> Result<Option<Instant>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let t: Timespec = task.mm.read_obj(addr)?;
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    let requested = Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
    let wait = if absolute {
        let clock = if realtime {
            ClockId::Realtime
        } else {
            ClockId::Monotonic
        };
        let n = rustix::time::clock_gettime(clock);
        requested.saturating_sub(Duration::new(n.tv_sec as u64, n.tv_nsec as u32))
    } else {
        requested
    };
    Ok(Some(Instant::now() + wait))
}

pub fn futex(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (uaddr, op, val) = (a[0], int(a[1]), a[2] as u32);
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    if realtime && cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET {
        return Err(Errno::ENOSYS);
    }
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 || uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let deadline = deadline(task, a[3], cmd == FUTEX_WAIT_BITSET, realtime)?;
            // Fault in the word first so that a bad address is EFAULT, not EAGAIN.
            let _: u32 = task.mm.read_obj(uaddr)?;
            let kernel = task.kernel.clone();
            let mm = &mut task.mm;
            match kernel.futexes.wait((0, uaddr), bitset, deadline, || {
                mm.read_obj::<u32>(uaddr) == Ok(val)
            }) {
                WaitResult::Woken => Ok(0),
                WaitResult::TimedOut => Err(Errno::ETIMEDOUT),
                WaitResult::ValueChanged => Err(Errno::EAGAIN),
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 || uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let count = usize::try_from(int(a[2])).unwrap_or(0);
            Ok(task.kernel.futexes.wake((0, uaddr), bitset, count) as u64)
        }
        2..=8 | 11..=13 => {
            task.kernel.report_unimplemented(
                u64::from(nr::FUTEX) | ((cmd as u64) << 32),
                &format!("futex op {cmd}"),
            );
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}
