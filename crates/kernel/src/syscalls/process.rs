//! exit, exit_group, the process ids, set_tid_address, robust lists, rseq, arch_prctl.

use moat_abi::{Errno, ROBUST_LIST_HEAD_SIZE};
use moat_platform::USER_MAX;

use super::{int, SyscallResult};
use crate::task::{ExitStatus, Task};

pub fn exit(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // The last (only) thread of the process: the process exits.
    task.exit = Some(ExitStatus::Exited(int(a[0]) & 0xff));
    Ok(0)
}

pub fn exit_group(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.exit = Some(ExitStatus::Exited(int(a[0]) & 0xff));
    Ok(0)
}

pub fn getpid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(task.tgid as u64)
}

pub fn gettid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(task.tid as u64)
}

pub fn getppid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(task.ppid as u64)
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
    task.mm.write_obj(a[1], &task.robust_list.0)?;
    task.mm.write_obj(a[2], &task.robust_list.1)?;
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
            task.mm.write_obj(a[1], &v)?;
            Ok(0)
        }
        ARCH_GET_GS => {
            let v = task.regs.gs_base;
            task.mm.write_obj(a[1], &v)?;
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
