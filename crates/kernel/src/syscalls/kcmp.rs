//! kcmp: whether two tasks share a kernel object (an open file, the address space, the fd
//! table, the filesystem context, the signal handlers), as checkpoint/restore tools ask.
//!
//! Linux orders distinct objects by their (obfuscated) addresses; Moat orders them by the
//! addresses of its own objects, which say as little about the kernel as Linux's do.

use std::sync::Arc;

use moat_abi::Errno;

use super::{int, SyscallResult};
use crate::process::{Guard, TaskHandle};
use crate::task::Task;

const KCMP_FILE: i32 = 0;
const KCMP_VM: i32 = 1;
const KCMP_FILES: i32 = 2;
const KCMP_FS: i32 = 3;
const KCMP_SIGHAND: i32 = 4;
const KCMP_IO: i32 = 5;
const KCMP_SYSVSEM: i32 = 6;
const KCMP_EPOLL_TFD: i32 = 7;

/// Linux's answer: 0 equal, 1 less, 2 greater.
fn order(a: usize, b: usize) -> u64 {
    match a.cmp(&b) {
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Less => 1,
        std::cmp::Ordering::Greater => 2,
    }
}

/// The task `pid` names, if the caller may inspect it (`PTRACE_MODE_READ`: the same user
/// through and through, or a privileged caller).
fn inspectable(task: &Task, pid: i32) -> Result<Arc<TaskHandle>, Errno> {
    let handle = task
        .kernel
        .tree
        .guard()
        .task(pid)
        .cloned()
        .ok_or(Errno::ESRCH)?;
    let c = &task.creds;
    let t = handle.creds.guard().clone();
    let same_user = [t.uid, t.euid, t.suid].iter().all(|&u| u == c.uid)
        && [t.gid, t.egid, t.sgid].iter().all(|&g| g == c.gid);
    if !same_user && !c.has(crate::capability::Cap::SysPtrace) {
        return Err(Errno::EPERM);
    }
    Ok(handle)
}

pub fn kcmp(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (pid1, pid2, kind) = (int(a[0]), int(a[1]), int(a[2]));
    let (h1, h2) = (inspectable(task, pid1)?, inspectable(task, pid2)?);
    let resources = |h: &TaskHandle| h.resources.guard().clone().ok_or(Errno::ESRCH);
    let (r1, r2) = (resources(&h1)?, resources(&h2)?);
    let addr = |p: *const ()| p as usize;
    match kind {
        KCMP_FILE => {
            let file = |r: &crate::process::TaskResources, fd: u64| {
                r.files
                    .guard()
                    .get(int(fd))
                    .map(|f| addr(Arc::as_ptr(&f).cast()))
            };
            let (f1, f2) = (file(&r1, a[3])?, file(&r2, a[4])?);
            Ok(order(f1, f2))
        }
        KCMP_VM => Ok(order(
            addr(Arc::as_ptr(&r1.mm).cast()),
            addr(Arc::as_ptr(&r2.mm).cast()),
        )),
        KCMP_FILES => Ok(order(
            addr(Arc::as_ptr(&r1.files).cast()),
            addr(Arc::as_ptr(&r2.files).cast()),
        )),
        KCMP_FS => Ok(order(
            addr(Arc::as_ptr(&r1.fs).cast()),
            addr(Arc::as_ptr(&r2.fs).cast()),
        )),
        // Signal handlers are shared exactly by the threads of a process here.
        KCMP_SIGHAND => Ok(order(
            addr(Arc::as_ptr(&h1.group).cast()),
            addr(Arc::as_ptr(&h2.group).cast()),
        )),
        // No I/O contexts or System V semaphore undo lists exist: every task's is the same
        // absent one, as Linux answers for tasks that have none.
        KCMP_IO | KCMP_SYSVSEM => Ok(0),
        KCMP_EPOLL_TFD => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}
