//! exit, exit_group, the process ids, process groups and sessions, prctl, set_tid_address,
//! robust lists, rseq, arch_prctl.

use moat_abi::{Errno, ROBUST_LIST_HEAD_SIZE};
use moat_platform::USER_MAX;

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::{ExitStatus, Task};

pub fn exit(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // This thread ends; the process ends with it only if it was the last one.
    task.exiting = Some(ExitStatus::Exited(int(a[0]) & 0xff));
    Ok(0)
}

pub fn exit_group(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let status = ExitStatus::Exited(int(a[0]) & 0xff);
    task.handle.group.start_exit(status);
    let tree = task.kernel.tree.guard();
    for tid in tree
        .process(task.tgid)
        .map(|n| n.threads.clone())
        .unwrap_or_default()
    {
        if let Some(t) = tree.task(tid) {
            t.notify();
        }
    }
    drop(tree);
    task.exiting = Some(status);
    Ok(0)
}

pub fn getpid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(task.tgid as u64)
}

pub fn gettid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(task.tid as u64)
}

pub fn getppid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let tree = task.kernel.tree.guard();
    Ok(tree.process(task.tgid).map_or(0, |n| n.parent) as u64)
}

/// The process `pid` names for the process-group calls: 0 is the caller.
fn target(task: &Task, pid: i32) -> Result<i32, Errno> {
    match pid {
        0 => Ok(task.tgid),
        p if p < 0 => Err(Errno::EINVAL),
        p => Ok(p),
    }
}

pub fn getpgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = target(task, int(a[0])).map_err(|_| Errno::ESRCH)?;
    let tree = task.kernel.tree.guard();
    let node = tree.process(pid).ok_or(Errno::ESRCH)?;
    Ok(node.pgid as u64)
}

pub fn getpgrp(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    getpgid(task, &[0; 6])
}

pub fn getsid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = target(task, int(a[0])).map_err(|_| Errno::ESRCH)?;
    let tree = task.kernel.tree.guard();
    let node = tree.process(pid).ok_or(Errno::ESRCH)?;
    Ok(node.sid as u64)
}

/// `setpgid` as setpgid(2) rules it: the caller or one of its children not yet exec'd
/// (Moat does not track exec for this; children that exec'd are accepted), in the caller's
/// session, never a session leader; the group must exist in that session or be the target's
/// own pid.
pub fn setpgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = target(task, int(a[0]))?;
    let pgid = match int(a[1]) {
        0 => pid,
        p if p < 0 => return Err(Errno::EINVAL),
        p => p,
    };
    let mut tree = task.kernel.tree.guard();
    let me = tree.process(task.tgid).ok_or(Errno::ESRCH)?;
    let my_sid = me.sid;
    let node = tree.process(pid).ok_or(Errno::ESRCH)?;
    if pid != task.tgid && node.parent != task.tgid {
        return Err(Errno::ESRCH);
    }
    if pid != task.tgid && node.execed {
        return Err(Errno::EACCES);
    }
    if node.sid != my_sid {
        return Err(Errno::EPERM);
    }
    if node.sid == pid {
        return Err(Errno::EPERM);
    }
    if pgid != pid
        && !tree
            .processes
            .values()
            .any(|n| n.pgid == pgid && n.sid == my_sid && n.zombie.is_none())
    {
        return Err(Errno::EPERM);
    }
    if let Some(n) = tree.process_mut(pid) {
        n.pgid = pgid;
    }
    Ok(0)
}

pub fn setsid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let mut tree = task.kernel.tree.guard();
    let me = task.tgid;
    // A process group leader (or anyone whose pid names a group) cannot start a session.
    if tree.processes.values().any(|n| n.pgid == me) {
        return Err(Errno::EPERM);
    }
    let node = tree.process_mut(me).ok_or(Errno::ESRCH)?;
    node.sid = me;
    node.pgid = me;
    Ok(me as u64)
}

const PR_SET_PDEATHSIG: i32 = 1;
const PR_GET_PDEATHSIG: i32 = 2;
const PR_GET_DUMPABLE: i32 = 3;
const PR_SET_DUMPABLE: i32 = 4;
const PR_SET_NAME: i32 = 15;
const PR_GET_NAME: i32 = 16;
const PR_GET_KEEPCAPS: i32 = 7;
const PR_SET_KEEPCAPS: i32 = 8;
const PR_CAPBSET_READ: i32 = 23;
const PR_CAPBSET_DROP: i32 = 24;
const PR_GET_SECUREBITS: i32 = 27;
const PR_SET_SECUREBITS: i32 = 28;
const PR_CAP_AMBIENT: i32 = 47;
const PR_SET_NO_NEW_PRIVS: i32 = 38;
const PR_GET_NO_NEW_PRIVS: i32 = 39;
const PR_SET_CHILD_SUBREAPER: i32 = 36;
const PR_GET_CHILD_SUBREAPER: i32 = 37;

/// `prctl`: the options programs use to name themselves and manage their children.
pub fn prctl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match int(a[0]) {
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            // The name is read up to 16 bytes, NUL or not.
            let mut got = 0;
            while got < 15 {
                let mut b = [0u8; 1];
                task.mm.guard().read_bytes(a[1] + got as u64, &mut b)?;
                if b[0] == 0 {
                    break;
                }
                name[got] = b[0];
                got += 1;
            }
            *task.handle.name.guard() = name[..got].to_vec();
            Ok(0)
        }
        PR_GET_NAME => {
            let mut name = [0u8; 16];
            let cur = task.handle.name.guard().clone();
            name[..cur.len()].copy_from_slice(&cur);
            task.mm.guard().write_bytes(a[1], &name)?;
            Ok(0)
        }
        PR_SET_PDEATHSIG => {
            let sig = a[1];
            if sig > moat_abi::NSIG {
                return Err(Errno::EINVAL);
            }
            *task.handle.pdeathsig.guard() = sig as i32;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            let sig = *task.handle.pdeathsig.guard();
            task.mm.guard().write_obj(a[1], &sig)?;
            Ok(0)
        }
        PR_GET_DUMPABLE => Ok(1),
        PR_SET_DUMPABLE if a[1] <= 1 => Ok(0),
        PR_SET_DUMPABLE => Err(Errno::EINVAL),
        PR_SET_NO_NEW_PRIVS if a[1] == 1 && a[2] == 0 && a[3] == 0 && a[4] == 0 => {
            // Moat grants no privileges on exec anyway (no setuid binaries take effect).
            task.handle
                .no_new_privs
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS if a[1] == 0 && a[2] == 0 && a[3] == 0 && a[4] == 0 => Ok(u64::from(
            task.handle
                .no_new_privs
                .load(std::sync::atomic::Ordering::Relaxed),
        )),
        PR_SET_NO_NEW_PRIVS | PR_GET_NO_NEW_PRIVS => Err(Errno::EINVAL),
        PR_SET_CHILD_SUBREAPER => {
            let mut tree = task.kernel.tree.guard();
            if let Some(n) = tree.process_mut(task.tgid) {
                n.subreaper = a[1] != 0;
            }
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            let v = task
                .kernel
                .tree
                .guard()
                .process(task.tgid)
                .is_some_and(|n| n.subreaper) as i32;
            task.mm.guard().write_obj(a[1], &v)?;
            Ok(0)
        }
        PR_GET_KEEPCAPS | PR_SET_KEEPCAPS | PR_CAPBSET_READ | PR_CAPBSET_DROP
        | PR_GET_SECUREBITS | PR_SET_SECUREBITS | PR_CAP_AMBIENT => capability_prctl(task, a),
        option => {
            task.kernel.report_unimplemented(
                u64::from(moat_abi::syscalls::nr::PRCTL) | ((option as u64) << 32),
                &format!("prctl option {option}"),
            );
            Err(Errno::EINVAL)
        }
    }
}

const PR_CAP_AMBIENT_IS_SET: u64 = 1;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_LOWER: u64 = 3;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;

/// The `prctl` options on the caller's capabilities (prctl(2), capabilities(7)): the bounding
/// set, the ambient set, `SECBIT_KEEP_CAPS` and the securebits.
fn capability_prctl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::capability::{
        Cap, CAP_LAST_CAP, SECBIT_KEEP_CAPS, SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE,
        SECURE_ALL_BITS, SECURE_ALL_LOCKS,
    };
    let valid = |cap: u64| cap <= u64::from(CAP_LAST_CAP);
    let bit = |cap: u64| 1u64 << cap;
    let mut new = task.creds.clone();
    match int(a[0]) {
        PR_GET_KEEPCAPS => return Ok(u64::from(new.securebits & SECBIT_KEEP_CAPS != 0)),
        PR_SET_KEEPCAPS => {
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            if new.securebits & SECBIT_KEEP_CAPS_LOCKED != 0 {
                return Err(Errno::EPERM);
            }
            new.securebits &= !SECBIT_KEEP_CAPS;
            if a[1] == 1 {
                new.securebits |= SECBIT_KEEP_CAPS;
            }
        }
        PR_CAPBSET_READ if valid(a[1]) => return Ok(u64::from(new.caps.bounding & bit(a[1]) != 0)),
        PR_CAPBSET_READ => return Err(Errno::EINVAL),
        PR_CAPBSET_DROP => {
            if !new.has(Cap::Setpcap) {
                return Err(Errno::EPERM);
            }
            if !valid(a[1]) {
                return Err(Errno::EINVAL);
            }
            new.caps.bounding &= !bit(a[1]);
        }
        PR_GET_SECUREBITS => return Ok(u64::from(new.securebits)),
        PR_SET_SECUREBITS => {
            let (old, wanted) = (u64::from(new.securebits), a[1]);
            let locks = u64::from(SECURE_ALL_LOCKS);
            // A locked flag cannot change, a lock cannot be lifted, unknown bits are refused,
            // and all of it needs CAP_SETPCAP.
            if ((old & locks) >> 1) & (old ^ wanted) != 0
                || old & locks & !wanted != 0
                || wanted & !u64::from(SECURE_ALL_BITS | SECURE_ALL_LOCKS) != 0
                || !new.has(Cap::Setpcap)
            {
                return Err(Errno::EPERM);
            }
            new.securebits = wanted as u32;
        }
        _ => {
            // PR_CAP_AMBIENT.
            if a[1] == PR_CAP_AMBIENT_CLEAR_ALL {
                if a[2] | a[3] | a[4] != 0 {
                    return Err(Errno::EINVAL);
                }
                new.caps.ambient = 0;
            } else {
                if !valid(a[2]) || a[3] | a[4] != 0 {
                    return Err(Errno::EINVAL);
                }
                let cap = bit(a[2]);
                match a[1] {
                    PR_CAP_AMBIENT_IS_SET => return Ok(u64::from(new.caps.ambient & cap != 0)),
                    PR_CAP_AMBIENT_RAISE => {
                        if new.caps.permitted & new.caps.inheritable & cap == 0
                            || new.securebits & SECBIT_NO_CAP_AMBIENT_RAISE != 0
                        {
                            return Err(Errno::EPERM);
                        }
                        new.caps.ambient |= cap;
                    }
                    PR_CAP_AMBIENT_LOWER => new.caps.ambient &= !cap,
                    _ => return Err(Errno::EINVAL),
                }
            }
        }
    }
    crate::syscalls::creds::commit(task, new);
    Ok(0)
}

pub fn set_tid_address(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.clear_child_tid = a[0];
    Ok(task.tid as u64)
}

pub fn set_robust_list(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[1] != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    task.robust_list = (a[0], a[1]);
    Ok(0)
}

pub fn get_robust_list(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    if pid != 0 && pid != task.tid {
        return Err(Errno::ESRCH);
    }
    task.mm.guard().write_obj(a[1], &task.robust_list.0)?;
    task.mm.guard().write_obj(a[2], &task.robust_list.1)?;
    Ok(0)
}

/// Restartable sequences need the kernel to rewrite the thread's state on preemption; Moat
/// does not offer them, and libc runs without them when registration fails.
pub fn rseq(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Err(Errno::ENOSYS)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;
const ARCH_GET_CPUID: u64 = 0x1011;
const ARCH_SET_CPUID: u64 = 0x1012;

pub fn arch_prctl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match a[0] {
        ARCH_SET_FS | ARCH_SET_GS => {
            if a[1] >= USER_MAX {
                return Err(Errno::EPERM);
            }
            if a[0] == ARCH_SET_FS {
                task.regs.fs_base = a[1];
            } else {
                task.regs.gs_base = a[1];
            }
            Ok(0)
        }
        ARCH_GET_FS => {
            let v = task.regs.fs_base;
            task.mm.guard().write_obj(a[1], &v)?;
            Ok(0)
        }
        ARCH_GET_GS => {
            let v = task.regs.gs_base;
            task.mm.guard().write_obj(a[1], &v)?;
            Ok(0)
        }
        // CPUID is always enabled: the application runs on the real CPU.
        ARCH_GET_CPUID => Ok(1),
        ARCH_SET_CPUID if a[1] != 0 => Ok(0),
        // CPUID faulting is not offered (many hosts, VMs in particular, lack it too).
        ARCH_SET_CPUID => Err(Errno::ENODEV),
        _ => Err(Errno::EINVAL),
    }
}
