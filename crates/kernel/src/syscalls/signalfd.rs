//! signalfd, signalfd4, pidfd_open, pidfd_send_signal: signals and processes as files.

use std::sync::Arc;

use moat_abi::{Errno, SigInfo, SIGSET_SIZE};

use super::{int, SyscallResult};
use crate::fs::pidfd::PidFd;
use crate::fs::signalfd::SignalFd;
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::signal::UNBLOCKABLE;
use crate::task::Task;

fn install(task: &mut Task, file: OpenFile, cloexec: bool) -> SyscallResult {
    let limit = task.limit(libc::RLIMIT_NOFILE);
    Ok(task
        .files
        .guard()
        .install(Arc::new(file), cloexec, 0, limit)? as u64)
}

pub fn signalfd4(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, flags) = (int(a[0]), int(a[3]));
    if a[2] != SIGSET_SIZE || flags & !(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    // SIGKILL and SIGSTOP cannot be read: they are silently left out.
    let mask: u64 = task.mm.guard().read_obj::<u64>(a[1])? & !UNBLOCKABLE;
    if fd != -1 {
        let file = task.file(fd)?;
        let sfd = file.ops_as::<SignalFd>().ok_or(Errno::EINVAL)?;
        sfd.set_mask(mask);
        return Ok(fd as u64);
    }
    let ops = SignalFd::new(
        Arc::downgrade(&task.kernel),
        task.handle.group.clone(),
        mask,
    );
    let file = OpenFile::new(
        Box::new(ops),
        libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK) as u32,
    );
    install(task, file, flags & libc::SFD_CLOEXEC != 0)
}

pub fn signalfd(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    signalfd4(task, &[a[0], a[1], a[2], 0, 0, 0])
}

const PIDFD_NONBLOCK: i32 = libc::O_NONBLOCK;

pub fn pidfd_open(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (pid, flags) = (int(a[0]), int(a[1]));
    if flags & !PIDFD_NONBLOCK != 0 || pid <= 0 {
        return Err(Errno::EINVAL);
    }
    let group = {
        let tree = task.kernel.tree.guard();
        match tree.process(pid) {
            Some(node) => node.group.clone(),
            // A thread that is not its process's leader cannot be named this way.
            None if tree.task(pid).is_some() => return Err(Errno::EINVAL),
            None => return Err(Errno::ESRCH),
        }
    };
    let file = OpenFile::new(
        Box::new(PidFd { group }),
        libc::O_RDWR as u32 | (flags & PIDFD_NONBLOCK) as u32,
    );
    // pidfds are always close-on-exec.
    install(task, file, true)
}

/// The process a pidfd names (`EBADF` for another kind of file).
pub(crate) fn pidfd_process(task: &Task, fd: i32) -> Result<i32, Errno> {
    let file = task.file(fd)?;
    let pidfd = file.ops_as::<PidFd>().ok_or(Errno::EBADF)?;
    Ok(pidfd.group.tgid)
}

pub fn pidfd_send_signal(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, sig, flags) = (int(a[0]), int(a[1]), a[3]);
    // PIDFD_SIGNAL_THREAD, _THREAD_GROUP, _PROCESS_GROUP: at most one.
    if flags & !7 != 0 || flags.count_ones() > 1 {
        return Err(Errno::EINVAL);
    }
    let file = task.file(fd)?;
    let group = file.ops_as::<PidFd>().ok_or(Errno::EBADF)?.group.clone();
    if !(0..=64).contains(&sig) {
        return Err(Errno::EINVAL);
    }
    if group.dead.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Errno::ESRCH);
    }
    let info = if a[2] == 0 {
        SigInfo::from_process(sig, moat_abi::SI_USER, task.tgid, task.creds.uid)
    } else {
        let mut info: SigInfo = task.mm.guard().read_obj(a[2])?;
        // Another process may not pretend to be the kernel or kill().
        if group.tgid != task.tgid && (info.code >= 0 || info.code == moat_abi::SI_TKILL) {
            return Err(Errno::EPERM);
        }
        if info.signo != sig {
            return Err(Errno::EINVAL);
        }
        info.signo = sig;
        info
    };
    if sig == 0 {
        return Ok(0);
    }
    let tree = task.kernel.tree.guard();
    let sent = match flags {
        // The process's main thread (a pidfd names a thread-group leader).
        1 => crate::signal::send_to_thread_locked(&tree, group.tgid, info),
        4 => {
            let pgid = tree.process(group.tgid).map_or(0, |n| n.pgid);
            let members = tree.group_members(pgid);
            for p in &members {
                crate::signal::send_to_process_locked(&tree, *p, info);
            }
            !members.is_empty()
        }
        _ => crate::signal::send_to_process_locked(&tree, group.tgid, info),
    };
    if sent {
        Ok(0)
    } else {
        Err(Errno::ESRCH)
    }
}
