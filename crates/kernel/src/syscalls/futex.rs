//! futex: WAIT, WAKE, their bitset forms, REQUEUE, CMP_REQUEUE, WAKE_OP, and the
//! priority-inheritance locks (LOCK_PI, LOCK_PI2, TRYLOCK_PI, UNLOCK_PI) as locks: owner tid
//! in the word, FUTEX_WAITERS, hand-over to the first waiter, EDEADLK/EPERM/ESRCH as Linux.
//! There is no priority to inherit: the host schedules every thread alike.

use std::time::{Duration, Instant};

use moat_abi::{syscalls::nr, Errno, Timespec};
use rustix::time::ClockId;

use super::{int, SyscallResult};
use crate::futex::FutexKey;
use crate::process::Guard;
use crate::task::Task;

const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;
const FUTEX_REQUEUE: i32 = 3;
const FUTEX_CMP_REQUEUE: i32 = 4;
const FUTEX_WAKE_OP: i32 = 5;

/// `FUTEX_WAKE_OP`'s encoded operation: `op:4 cmp:4 oparg:12 cmparg:12`.
struct WakeOp {
    op: u32,
    shift: bool,
    oparg: u32,
    cmp: u32,
    cmparg: u32,
}

impl WakeOp {
    fn decode(v: u32) -> Result<WakeOp, Errno> {
        let sign12 = |x: u32| ((x << 20) as i32 >> 20) as u32;
        let w = WakeOp {
            op: (v >> 28) & 7,
            shift: v & (8 << 28) != 0,
            cmp: (v >> 24) & 15,
            oparg: sign12((v >> 12) & 0xfff),
            cmparg: sign12(v & 0xfff),
        };
        if w.op > 4 || w.cmp > 5 {
            return Err(Errno::ENOSYS);
        }
        Ok(w)
    }

    fn apply(&self, old: u32) -> u32 {
        // FUTEX_OP_OPARG_SHIFT: the argument is a shift count (Linux masks it to 0..31).
        let arg = if self.shift {
            1u32 << (self.oparg & 31)
        } else {
            self.oparg
        };
        match self.op {
            0 => arg,                   // SET
            1 => old.wrapping_add(arg), // ADD
            2 => old | arg,             // OR
            3 => old & !arg,            // ANDN
            _ => old ^ arg,             // XOR
        }
    }

    fn compare(&self, old: u32) -> bool {
        let (a, b) = (old as i32, self.cmparg as i32);
        match self.cmp {
            0 => a == b,
            1 => a != b,
            2 => a < b,
            3 => a <= b,
            4 => a > b,
            _ => a >= b,
        }
    }
}
const FUTEX_LOCK_PI: i32 = 6;
const FUTEX_UNLOCK_PI: i32 = 7;
const FUTEX_TRYLOCK_PI: i32 = 8;
const FUTEX_LOCK_PI2: i32 = 13;
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
    let t: Timespec = task.mm().read_obj(addr)?;
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
    let private = op & FUTEX_PRIVATE_FLAG != 0;
    if realtime && cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET && cmd != FUTEX_LOCK_PI2 {
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
            wait(task, uaddr, val, bitset, deadline, private)
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
            let key = futex_key(task, uaddr, private);
            Ok(task.kernel.futexes.wake(key, bitset, count) as u64)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            let (uaddr2, expected) = (a[4], a[5] as u32);
            if uaddr % 4 != 0 || uaddr2 % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let wake = usize::try_from(int(a[2])).map_err(|_| Errno::EINVAL)?;
            // The fourth argument is the requeue count here, not a timeout.
            let requeue = usize::try_from(int(a[3])).map_err(|_| Errno::EINVAL)?;
            let (from, to) = (
                futex_key(task, uaddr, private),
                futex_key(task, uaddr2, private),
            );
            let mm = task.mm.clone();
            let check = || {
                cmd == FUTEX_REQUEUE
                    || mm
                        .guard()
                        .read_obj::<u32>(uaddr)
                        .is_ok_and(|v| v == expected)
            };
            if cmd == FUTEX_CMP_REQUEUE {
                let _: u32 = task.mm().read_obj(uaddr)?;
            }
            task.kernel
                .futexes
                .requeue(from, to, wake, requeue, check)
                .map(|n| n as u64)
                .ok_or(Errno::EAGAIN)
        }
        FUTEX_WAKE_OP => {
            let (uaddr2, encoded) = (a[4], a[5] as u32);
            if uaddr % 4 != 0 || uaddr2 % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let n1 = usize::try_from(int(a[2])).unwrap_or(0);
            // The fourth argument is the second wake count here.
            let n2 = usize::try_from(int(a[3])).unwrap_or(0);
            let op = WakeOp::decode(encoded)?;
            let (k1, k2) = (
                futex_key(task, uaddr, private),
                futex_key(task, uaddr2, private),
            );
            let mm = task.mm.clone();
            let woken = task.kernel.futexes.wake_op(k1, n1, k2, n2, || {
                let old = mm.guard().atomic_update_u32(uaddr2, |v| op.apply(v))?;
                Ok(op.compare(old))
            })?;
            Ok(woken as u64)
        }
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_TRYLOCK_PI => {
            if uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            // LOCK_PI's timeout is absolute on CLOCK_REALTIME; LOCK_PI2's on CLOCK_MONOTONIC
            // unless FUTEX_CLOCK_REALTIME. TRYLOCK_PI never waits.
            let deadline = if cmd == FUTEX_TRYLOCK_PI {
                None
            } else {
                deadline(task, a[3], true, cmd == FUTEX_LOCK_PI || realtime)?
            };
            lock_pi(task, uaddr, deadline, cmd == FUTEX_TRYLOCK_PI, private)
        }
        FUTEX_UNLOCK_PI => {
            if uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            unlock_pi(task, uaddr, private)
        }
        11 | 12 => {
            task.kernel.report_unimplemented(
                u64::from(nr::FUTEX) | ((cmd as u64) << 32),
                &format!("futex op {cmd}"),
            );
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The key of the futex at `addr`: private futexes belong to the address space.
fn futex_key(task: &Task, addr: u64, private: bool) -> FutexKey {
    if private {
        crate::futex::key_for(task, addr)
    } else {
        crate::futex::shared_key_for(task, addr)
    }
}

/// Sleep while the word at `uaddr` holds `val`, until woken, timed out or interrupted.
fn wait(
    task: &mut Task,
    uaddr: u64,
    val: u32,
    bitset: u32,
    deadline: Option<Instant>,
    private: bool,
) -> SyscallResult {
    // Fault in the word first so that a bad address is EFAULT, not EAGAIN.
    let _: u32 = task.mm().read_obj(uaddr)?;
    let key = futex_key(task, uaddr, private);
    let kernel = task.kernel.clone();
    let waker = task.handle.waker.clone();
    waker.clear();
    let mm = task.mm.clone();
    let Some(waiter) = kernel.futexes.enqueue(key, bitset, &waker, || {
        mm.guard().read_obj::<u32>(uaddr) == Ok(val)
    }) else {
        return Err(Errno::EAGAIN);
    };
    loop {
        if waiter.woken() {
            return Ok(0);
        }
        if task.handle.interrupted() {
            return if kernel.futexes.dequeue(key, &waiter) {
                Ok(0)
            } else {
                Err(Errno::ERESTARTSYS)
            };
        }
        if !waker.sleep(deadline) {
            return if kernel.futexes.dequeue(key, &waiter) {
                Ok(0)
            } else {
                Err(Errno::ETIMEDOUT)
            };
        }
    }
}

/// `FUTEX_LOCK_PI`: take the lock whose word holds its owner's tid (0: free), or queue behind
/// its holder, setting `FUTEX_WAITERS` so that the holder's unlock comes to the kernel.
fn lock_pi(
    task: &mut Task,
    uaddr: u64,
    deadline: Option<Instant>,
    trylock: bool,
    private: bool,
) -> SyscallResult {
    use crate::futex::{PiAttempt, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS};
    // Fault the word in (and make it the caller's to write): a bad address is EFAULT.
    let _: u32 = task.mm().read_obj(uaddr)?;
    let key = futex_key(task, uaddr, private);
    let tid = task.tid as u32;
    let kernel = task.kernel.clone();
    let waker = task.handle.waker.clone();
    loop {
        waker.clear();
        let mm = task.mm.clone();
        let queued = kernel.futexes.pi_lock(key, tid, &waker, |has_waiters| {
            let waiters = if has_waiters { FUTEX_WAITERS } else { 0 };
            let old = mm
                .guard()
                .atomic_update_u32(uaddr, |v| match v & FUTEX_TID_MASK {
                    0 => (v & FUTEX_OWNER_DIED) | tid | waiters,
                    owner if owner == tid || trylock => v,
                    _ => v | FUTEX_WAITERS,
                })?;
            match old & FUTEX_TID_MASK {
                0 => Ok(PiAttempt::Acquired),
                owner if owner == tid => Err(Errno::EDEADLK),
                _ if trylock => Err(Errno::EAGAIN),
                owner => Ok(PiAttempt::Wait(owner)),
            }
        })?;
        let Some((waiter, owner)) = queued else {
            return Ok(0);
        };
        // The holder must be a thread of the sandbox (Linux looks it up the same way).
        if kernel.tree.guard().task(owner as i32).is_none() {
            if kernel.futexes.pi_dequeue(key, &waiter) {
                return Ok(0);
            }
            return Err(Errno::ESRCH);
        }
        loop {
            if waiter.handed() {
                return Ok(0);
            }
            if waiter.woken() {
                // Its holder died: try again.
                if kernel.futexes.pi_dequeue(key, &waiter) {
                    return Ok(0);
                }
                break;
            }
            if task.handle.interrupted() {
                return if kernel.futexes.pi_dequeue(key, &waiter) {
                    Ok(0)
                } else {
                    // Linux restarts a PI lock even when a handler runs.
                    Err(Errno::ERESTARTNOINTR)
                };
            }
            if !waker.sleep(deadline) {
                return if kernel.futexes.pi_dequeue(key, &waiter) {
                    Ok(0)
                } else {
                    Err(Errno::ETIMEDOUT)
                };
            }
        }
    }
}

/// `FUTEX_UNLOCK_PI`: only the holder may unlock (`EPERM`); the lock goes to the first
/// waiter (its tid in the word, with `FUTEX_WAITERS` if others wait), or becomes free.
fn unlock_pi(task: &mut Task, uaddr: u64, private: bool) -> SyscallResult {
    use crate::futex::{FUTEX_TID_MASK, FUTEX_WAITERS};
    let _: u32 = task.mm().read_obj(uaddr)?;
    let key = futex_key(task, uaddr, private);
    let tid = task.tid as u32;
    let mm = task.mm.clone();
    task.kernel.futexes.pi_unlock(key, |next| {
        let new = match next {
            Some((next_tid, more)) => next_tid | if more { FUTEX_WAITERS } else { 0 },
            None => 0,
        };
        let old =
            mm.guard().atomic_update_u32(
                uaddr,
                |v| {
                    if v & FUTEX_TID_MASK == tid {
                        new
                    } else {
                        v
                    }
                },
            )?;
        if old & FUTEX_TID_MASK == tid {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    })?;
    Ok(0)
}
