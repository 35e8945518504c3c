//! rt_sigaction, rt_sigprocmask: signal dispositions and the blocked mask are recorded;
//! delivery arrives with the process and signal work.

use moat_abi::{Errno, SigAction, StackT, NSIG, SIGSET_SIZE};

use super::{int, SyscallResult};
use crate::task::Task;

/// SIGKILL and SIGSTOP can be neither caught nor blocked.
const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

/// The `sa_flags` bits Linux keeps on x86-64 (`UAPI_SA_FLAGS`).
const KNOWN_SA_FLAGS: u64 = 0x1 // SA_NOCLDSTOP
    | 0x2 // SA_NOCLDWAIT
    | 0x4 // SA_SIGINFO
    | 0x800 // SA_EXPOSE_TAGBITS
    | 0x0400_0000 // SA_RESTORER
    | 0x0800_0000 // SA_ONSTACK
    | 0x1000_0000 // SA_RESTART
    | 0x4000_0000 // SA_NODEFER
    | 0x8000_0000; // SA_RESETHAND

pub fn rt_sigaction(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let sig = int(a[0]);
    if a[3] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    if sig < 1 || sig as u64 > NSIG {
        return Err(Errno::EINVAL);
    }
    let new = if a[1] != 0 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut act: SigAction = task.mm.read_obj(a[1])?;
        act.mask &= !UNBLOCKABLE;
        // Flags this kernel does not know are dropped, not refused: that is how programs
        // probe for support (SA_UNSUPPORTED must read back clear).
        act.flags &= KNOWN_SA_FLAGS;
        Some(act)
    } else {
        None
    };
    let slot = (sig - 1) as usize;
    let old = task.signals.actions[slot];
    if a[2] != 0 {
        task.mm.write_obj(a[2], &old)?;
    }
    if let Some(act) = new {
        task.signals.actions[slot] = act;
    }
    Ok(0)
}

pub fn rt_sigprocmask(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[3] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let old = task.signals.mask;
    if a[1] != 0 {
        let set: u64 = task.mm.read_obj(a[1])?;
        let mask = match int(a[0]) {
            libc::SIG_BLOCK => old | set,
            libc::SIG_UNBLOCK => old & !set,
            libc::SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        task.signals.mask = mask & !UNBLOCKABLE;
    }
    if a[2] != 0 {
        task.mm.write_obj(a[2], &old)?;
    }
    Ok(0)
}

/// `stack_t` flags.
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;
const SS_AUTODISARM: u32 = 1 << 31;
/// The smallest alternate stack Linux accepts (`MINSIGSTKSZ`).
const MINSIGSTKSZ: u64 = 2048;

/// `sigaltstack`: recorded for signal delivery (issue 4). While no handler runs, the task is
/// never on the alternate stack, so `SS_ONSTACK` is never reported and `EPERM` never arises.
pub fn sigaltstack(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = task.signals.altstack;
    if a[0] != 0 {
        let StackT {
            ss_sp: sp,
            ss_flags,
            ss_size: size,
            ..
        } = task.mm.read_obj(a[0])?;
        let flags = ss_flags as u32;
        let mode = flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE {
            return Err(Errno::EINVAL);
        }
        task.signals.altstack = if mode == SS_DISABLE {
            crate::task::AltStack::default()
        } else {
            if size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            crate::task::AltStack {
                base: sp,
                size,
                autodisarm: flags & SS_AUTODISARM != 0,
            }
        };
    }
    if a[1] != 0 {
        let mut flags = if old.size == 0 { SS_DISABLE } else { 0 };
        if old.autodisarm {
            flags |= SS_AUTODISARM;
        }
        let old = StackT {
            ss_sp: old.base,
            ss_flags: flags as i32,
            pad: 0,
            ss_size: old.size,
        };
        task.mm.write_obj(a[1], &old)?;
    }
    Ok(0)
}
