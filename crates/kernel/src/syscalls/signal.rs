//! The signal system calls: dispositions, the mask, sending (kill, tgkill, sigqueue), waiting
//! (sigsuspend, sigtimedwait, pause), the alternate stack and sigreturn. Delivery itself is in
//! `crate::signal`.

use std::time::{Duration, Instant};

use moat_abi::{Errno, SigAction, SigInfo, StackT, Timespec, NSIG, SIGSET_SIZE};

use crate::process::{sigbit, ProcessTree};
use crate::signal::{send_to_process_locked, send_to_thread_locked, SIG_DFL, SIG_IGN, UNBLOCKABLE};
use crate::Credentials;

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;

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

/// A signal number from an argument: `EINVAL` unless 1..=64.
fn signal_number(arg: u64) -> Result<i32, Errno> {
    let sig = int(arg);
    if sig < 1 || sig as u64 > NSIG {
        return Err(Errno::EINVAL);
    }
    Ok(sig)
}

pub fn rt_sigaction(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[3] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let sig = signal_number(a[0])?;
    let new = if a[1] != 0 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut act: SigAction = task.mm.guard().read_obj(a[1])?;
        act.mask &= !UNBLOCKABLE;
        // Flags this kernel does not know are dropped, not refused: that is how programs
        // probe for support (SA_UNSUPPORTED must read back clear).
        act.flags &= KNOWN_SA_FLAGS;
        Some(act)
    } else {
        None
    };
    let slot = (sig - 1) as usize;
    let old = task.handle.group.signals.guard().actions[slot];
    if a[2] != 0 {
        task.mm.guard().write_obj(a[2], &old)?;
    }
    if let Some(act) = new {
        let mut group = task.handle.group.signals.guard();
        group.actions[slot] = act;
        // Setting a signal to be ignored discards what is pending of it (POSIX).
        let ignore = act.handler == SIG_IGN
            || (act.handler == SIG_DFL
                && crate::signal::default_action(sig) == crate::signal::DefaultAction::Ignore);
        if ignore {
            group.pending.discard(sigbit(sig));
            drop(group);
            let tree = task.kernel.tree.guard();
            for t in tree
                .process(task.tgid)
                .map(|n| n.threads.clone())
                .unwrap_or_default()
            {
                if let Some(h) = tree.task(t) {
                    h.signals.guard().pending.discard(sigbit(sig));
                }
            }
        }
    }
    Ok(0)
}

pub fn rt_sigprocmask(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[3] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let old = task.handle.signals.guard().mask;
    if a[1] != 0 {
        let set: u64 = task.mm.guard().read_obj(a[1])?;
        let mask = match int(a[0]) {
            libc::SIG_BLOCK => old | set,
            libc::SIG_UNBLOCK => old & !set,
            libc::SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        task.handle.signals.guard().mask = mask & !UNBLOCKABLE;
    }
    if a[2] != 0 {
        task.mm.guard().write_obj(a[2], &old)?;
    }
    Ok(0)
}

/// May the caller signal a process with these credentials (kill(2): `CAP_KILL`, or the
/// sender's real or effective uid is the target's real or saved uid)?
fn may_signal(task: &Task, target: &Credentials) -> bool {
    let me = &task.creds;
    me.has(crate::capability::Cap::Kill)
        || me.uid == target.uid
        || me.uid == target.suid
        || me.euid == target.uid
        || me.euid == target.suid
}

/// Send `info` to process `pid` after the permission check; `Ok(false)` if it does not exist.
fn signal_process(task: &Task, tree: &ProcessTree, pid: i32, info: SigInfo) -> Result<bool, Errno> {
    let Some(node) = tree.process(pid) else {
        return Ok(false);
    };
    let creds = node
        .threads
        .iter()
        .next()
        .and_then(|t| tree.task(*t))
        .map(|h| h.creds.guard().clone());
    if let Some(c) = creds {
        if !may_signal(task, &c) {
            return Err(Errno::EPERM);
        }
    }
    if info.signo != 0 {
        send_to_process_locked(tree, pid, info);
    }
    Ok(true)
}

pub fn kill(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    let sig = int(a[1]);
    if sig != 0 {
        signal_number(a[1])?;
    }
    let info = SigInfo::from_process(sig, moat_abi::SI_USER, task.tgid, task.creds.uid);
    let tree = task.kernel.tree.guard();
    let targets: Vec<i32> = match pid {
        p if p > 0 => vec![p],
        0 => {
            let pgid = tree.process(task.tgid).map_or(0, |n| n.pgid);
            tree.group_members(pgid)
        }
        -1 => tree
            .processes
            .iter()
            .filter(|(&p, n)| p != 1 && p != task.tgid && n.zombie.is_none())
            .map(|(&p, _)| p)
            .collect(),
        // i32::MIN has no positive counterpart: no such group.
        p => tree.group_members(p.checked_neg().ok_or(Errno::ESRCH)?),
    };
    let (mut found, mut denied) = (false, false);
    for p in targets {
        match signal_process(task, &tree, p, info) {
            Ok(true) => found = true,
            Ok(false) => {}
            Err(_) => denied = true,
        }
    }
    match (found, denied) {
        (true, _) => Ok(0),
        (false, true) => Err(Errno::EPERM),
        (false, false) => Err(Errno::ESRCH),
    }
}

/// `tgkill`/`tkill`: one thread (of process `tgid`, if given).
fn signal_thread(task: &Task, tgid: Option<i32>, tid: i32, info: SigInfo) -> SyscallResult {
    if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
        return Err(Errno::EINVAL);
    }
    let tree = task.kernel.tree.guard();
    let target = tree.task(tid).ok_or(Errno::ESRCH)?;
    if tgid.is_some_and(|g| g != target.group.tgid) {
        return Err(Errno::ESRCH);
    }
    let creds = target.creds.guard().clone();
    if !may_signal(task, &creds) {
        return Err(Errno::EPERM);
    }
    if info.signo != 0 {
        send_to_thread_locked(&tree, tid, info);
    }
    Ok(0)
}

pub fn tgkill(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let sig = int(a[2]);
    if sig != 0 {
        signal_number(a[2])?;
    }
    let info = SigInfo::from_process(sig, moat_abi::SI_TKILL, task.tgid, task.creds.uid);
    signal_thread(task, Some(int(a[0])), int(a[1]), info)
}

pub fn tkill(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let sig = int(a[1]);
    if sig != 0 {
        signal_number(a[1])?;
    }
    let info = SigInfo::from_process(sig, moat_abi::SI_TKILL, task.tgid, task.creds.uid);
    signal_thread(task, None, int(a[0]), info)
}

/// The siginfo a program passes to `rt_sigqueueinfo`: it may not pretend to be the kernel
/// (or `kill`) when signalling another process.
fn queued_info(task: &mut Task, sig: i32, addr: u64, to_self: bool) -> Result<SigInfo, Errno> {
    let mut info: SigInfo = task.mm.guard().read_obj(addr)?;
    if !to_self && (info.code >= 0 || info.code == moat_abi::SI_TKILL) {
        return Err(Errno::EPERM);
    }
    info.signo = sig;
    Ok(info)
}

pub fn rt_sigqueueinfo(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    let sig = signal_number(a[1])?;
    let info = queued_info(task, sig, a[2], pid == task.tgid)?;
    let tree = task.kernel.tree.guard();
    if signal_process(task, &tree, pid, info)? {
        Ok(0)
    } else {
        Err(Errno::ESRCH)
    }
}

pub fn rt_tgsigqueueinfo(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (tgid, tid) = (int(a[0]), int(a[1]));
    let sig = signal_number(a[2])?;
    let info = queued_info(task, sig, a[3], tgid == task.tgid)?;
    signal_thread(task, Some(tgid), tid, info)
}

pub fn rt_sigpending(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[1] > SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let (mask, own) = {
        let s = task.handle.signals.guard();
        (s.mask, s.pending.set)
    };
    let shared = task.handle.group.signals.guard().pending.set;
    let pending = (own | shared) & mask;
    let bytes = pending.to_le_bytes();
    task.mm.guard().write_bytes(a[0], &bytes[..a[1] as usize])?;
    Ok(0)
}

/// `rt_sigsuspend`: replace the mask and sleep until a signal is delivered; the old mask
/// comes back when the handler returns.
pub fn rt_sigsuspend(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[1] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let set: u64 = task.mm.guard().read_obj(a[0])?;
    let old = {
        let mut s = task.handle.signals.guard();
        let old = s.mask;
        s.mask = set & !UNBLOCKABLE;
        old
    };
    task.saved_mask = Some(old);
    let _ = task.block_on(&[], None, |_| Ok(None::<()>));
    Err(Errno::ERESTARTNOHAND)
}

pub fn pause(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let _ = task.block_on(&[], None, |_| Ok(None::<()>));
    Err(Errno::ERESTARTNOHAND)
}

/// `rt_sigtimedwait`: take a signal of `set` from the pending ones, waiting up to the timeout.
pub fn rt_sigtimedwait(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[3] != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let set: u64 = task.mm.guard().read_obj(a[0])?;
    let set = set & !UNBLOCKABLE;
    let deadline = if a[2] != 0 {
        let ts: Timespec = task.mm.guard().read_obj(a[2])?;
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            return Err(Errno::EINVAL);
        }
        Some(Instant::now() + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    } else {
        None
    };
    // While waiting, the signals of `set` wake the task (even blocked ones, which stay
    // blocked); they are dequeued here rather than delivered.
    task.handle.signals.guard().waiting = set;
    let r = task.block_on(&[], deadline, |t| Ok(t.dequeue_signal(!set)));
    task.handle.signals.guard().waiting = 0;
    let info = match r {
        Ok(info) => info,
        Err(Errno::ETIMEDOUT) => return Err(Errno::EAGAIN),
        Err(Errno::ERESTARTSYS) => return Err(Errno::EINTR),
        Err(e) => return Err(e),
    };
    if a[1] != 0 {
        task.mm.guard().write_obj(a[1], &info)?;
    }
    Ok(info.signo as u64)
}

pub fn rt_sigreturn(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    task.sigreturn()
}

/// `stack_t` flags.
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;
const SS_AUTODISARM: u32 = 1 << 31;
/// The smallest alternate stack Linux accepts (`MINSIGSTKSZ`).
const MINSIGSTKSZ: u64 = 2048;

/// `sigaltstack`: the stack handlers with `SA_ONSTACK` run on. It cannot change while the
/// thread runs on it (`EPERM`).
pub fn sigaltstack(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = task.altstack;
    let on_stack = old.contains(task.regs.rsp);
    if a[0] != 0 {
        if on_stack {
            return Err(Errno::EPERM);
        }
        let StackT {
            ss_sp: sp,
            ss_flags,
            ss_size: size,
            ..
        } = task.mm.guard().read_obj(a[0])?;
        let flags = ss_flags as u32;
        let mode = flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE {
            return Err(Errno::EINVAL);
        }
        task.altstack = if mode == SS_DISABLE {
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
        let mut flags = if on_stack {
            SS_ONSTACK
        } else if old.size == 0 {
            SS_DISABLE
        } else {
            0
        };
        if old.autodisarm {
            flags |= SS_AUTODISARM;
        }
        let old = StackT {
            ss_sp: old.base,
            ss_flags: flags as i32,
            pad: 0,
            ss_size: old.size,
        };
        task.mm.guard().write_obj(a[1], &old)?;
    }
    Ok(0)
}
