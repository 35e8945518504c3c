//! close, dup, dup2, dup3, fcntl, ioctl, fstat, newfstatat.

use std::sync::Arc;

use moat_abi::{syscalls::nr, Errno};

use super::{int, SyscallResult};
use crate::fs::{FileOwner, OpenFile};
use crate::process::Guard;
use crate::task::Task;

pub fn close(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().remove(int(a[0]))?;
    super::locks::closing(task, &file);
    Ok(0)
}

fn nofile(task: &Task) -> u64 {
    task.limit(libc::RLIMIT_NOFILE)
}

pub fn dup(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    let limit = nofile(task);
    Ok(task.files.guard().install(file, false, 0, limit)? as u64)
}

fn dup_to(task: &mut Task, old: i32, new: i32, cloexec: bool) -> SyscallResult {
    let file = task.files.guard().get(old)?;
    if new < 0 || new as u64 >= nofile(task) {
        return Err(Errno::EBADF);
    }
    task.files.guard().install_at(new, file, cloexec)?;
    Ok(new as u64)
}

pub fn dup2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (old, new) = (int(a[0]), int(a[1]));
    if old == new {
        // dup2 to itself only checks that the fd is open.
        task.files.guard().get(old)?;
        return Ok(new as u64);
    }
    dup_to(task, old, new, false)
}

pub fn dup3(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (old, new, flags) = (int(a[0]), int(a[1]), int(a[2]));
    if flags & !libc::O_CLOEXEC != 0 || old == new {
        return Err(Errno::EINVAL);
    }
    dup_to(task, old, new, flags & libc::O_CLOEXEC != 0)
}

// fcntl commands the libc crate does not name on this target.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;
// `struct f_owner_ex`'s kinds of owner.
const F_OWNER_TID: i32 = 0;
const F_OWNER_PID: i32 = 1;
const F_OWNER_PGRP: i32 = 2;

/// `F_SETOWN` takes any id the sandbox knows (a thread, process, group or session), as
/// Linux's `find_vpid`; 0 clears the owner.
fn check_owner_exists(task: &Task, pid: i32) -> Result<(), Errno> {
    if pid == 0 {
        return Ok(());
    }
    let tree = task.kernel.tree.guard();
    let known = tree.tasks.contains_key(&pid)
        || tree.processes.contains_key(&pid)
        || tree
            .processes
            .values()
            .any(|n| n.pgid == pid || n.sid == pid);
    if known {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

pub fn fcntl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let fd = int(a[0]);
    let file = task.files.guard().get(fd)?;
    match int(a[1]) {
        cmd @ (libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) => {
            let min = int(a[2]);
            if min < 0 || min as u64 >= nofile(task) {
                return Err(Errno::EINVAL);
            }
            let limit = nofile(task);
            Ok(task
                .files
                .guard()
                .install(file, cmd == libc::F_DUPFD_CLOEXEC, min, limit)? as u64)
        }
        libc::F_GETFD => Ok(u64::from(task.files.guard().cloexec(fd)?)),
        libc::F_SETFD => {
            task.files
                .guard()
                .set_cloexec(fd, int(a[2]) & libc::FD_CLOEXEC != 0)?;
            Ok(0)
        }
        libc::F_GETFL => Ok(u64::from(file.flags())),
        libc::F_SETFL => {
            file.set_status_flags(int(a[2]) as u32);
            Ok(0)
        }
        cmd @ (libc::F_GETLK
        | libc::F_SETLK
        | libc::F_SETLKW
        | libc::F_OFD_GETLK
        | libc::F_OFD_SETLK
        | libc::F_OFD_SETLKW) => super::locks::record_lock(task, fd, cmd, a[2]),
        libc::F_GETPIPE_SZ => Ok(file
            .ops_as::<crate::fs::pipe::PipeEnd>()
            .ok_or(Errno::EBADF)?
            .capacity() as u64),
        libc::F_SETPIPE_SZ => {
            let pipe = file
                .ops_as::<crate::fs::pipe::PipeEnd>()
                .ok_or(Errno::EBADF)?;
            Ok(pipe.set_capacity(u64::from(a[2] as u32))? as u64)
        }
        libc::F_GETOWN => {
            // A process group owner reads back negated; the result is a plain int.
            let owner = file.owner();
            let v = if owner.kind == F_OWNER_PGRP {
                -owner.pid
            } else {
                owner.pid
            };
            Ok(v as i64 as u64)
        }
        libc::F_SETOWN => {
            let who = int(a[2]);
            if who == i32::MIN {
                return Err(Errno::EINVAL);
            }
            let owner = if who < 0 {
                FileOwner {
                    kind: F_OWNER_PGRP,
                    pid: -who,
                }
            } else {
                FileOwner {
                    kind: F_OWNER_PID,
                    pid: who,
                }
            };
            check_owner_exists(task, owner.pid)?;
            file.set_owner(owner);
            Ok(0)
        }
        F_GETOWN_EX => {
            let owner = file.owner();
            let mut out = [0u8; 8];
            out[..4].copy_from_slice(&owner.kind.to_le_bytes());
            out[4..].copy_from_slice(&owner.pid.to_le_bytes());
            task.mm.guard().write_bytes(a[2], &out)?;
            Ok(0)
        }
        F_SETOWN_EX => {
            let raw: [u8; 8] = task.mm.guard().read_obj(a[2])?;
            let kind = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let pid = i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            if !(F_OWNER_TID..=F_OWNER_PGRP).contains(&kind) || pid < 0 {
                return Err(Errno::EINVAL);
            }
            check_owner_exists(task, pid)?;
            file.set_owner(FileOwner { kind, pid });
            Ok(0)
        }
        F_GETSIG => Ok(file.io_signal() as u64),
        F_SETSIG => {
            let signal = u64::from(int(a[2]) as u32);
            if signal > 64 {
                return Err(Errno::EINVAL);
            }
            file.set_io_signal(signal as i32);
            Ok(0)
        }
        cmd @ (libc::F_SETLEASE
        | libc::F_GETLEASE
        | libc::F_NOTIFY
        | libc::F_ADD_SEALS
        | libc::F_GET_SEALS) => {
            task.kernel.report_unimplemented(
                u64::from(nr::FCNTL) | (u64::from(cmd as u32) << 32),
                &format!("fcntl cmd {cmd}"),
            );
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `ioctl` requests every file answers (Linux's `do_vfs_ioctl`), before the file's own.
const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;
const FIONBIO: u32 = 0x5421;
const FIOASYNC: u32 = 0x5452;

pub fn ioctl(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let fd = int(a[0]);
    let file = task.files.guard().get(fd)?;
    let request = a[1] as u32;
    match request {
        FIOCLEX | FIONCLEX => {
            task.files.guard().set_cloexec(fd, request == FIOCLEX)?;
            Ok(0)
        }
        FIONBIO | FIOASYNC => {
            let on: i32 = task.mm.guard().read_obj(a[2])?;
            let bit = if request == FIONBIO {
                libc::O_NONBLOCK
            } else {
                libc::O_ASYNC
            } as u32;
            let flags = if on != 0 {
                file.flags() | bit
            } else {
                file.flags() & !bit
            };
            file.set_status_flags(flags);
            Ok(0)
        }
        _ => {
            // Terminal calls about sessions and process groups need the caller.
            let caller = super::open::session_of(task);
            let arg_value = match request {
                // TIOCSPGRP's argument points at the group; TIOCSCTTY's is a value.
                0x5410 => u64::from(task.mm.guard().read_obj::<u32>(a[2])?),
                _ => a[2],
            };
            // Changing a terminal's settings from a background group: SIGTTOU.
            if matches!(
                request,
                0x5402..=0x5404 | 0x5410 | 0x5414 | 0x402c_542b..=0x402c_542d
            ) {
                crate::fs::pty::job_control(task, &file, crate::fs::pty::Access::Configure)?;
            }
            let kernel = task.kernel.clone();
            let in_session = |pgrp: i32, sid: i32| {
                let tree = kernel.tree.guard();
                tree.processes
                    .values()
                    .any(|n| n.pgid == pgrp && n.sid == sid && n.zombie.is_none())
            };
            if let Some(r) =
                crate::fs::pty::session_ioctl(&file, request, arg_value, caller, in_session)
            {
                if let Some(v) = r? {
                    task.mm.guard().write_obj(a[2], &v)?;
                }
                return Ok(0);
            }
            if request == TIOCGPTPEER {
                if let Some(peer) = crate::fs::pty::open_peer(&file) {
                    let flags = int(a[2]) as u32;
                    let status = (flags & (libc::O_ACCMODE | libc::O_NONBLOCK) as u32)
                        | libc::O_LARGEFILE as u32;
                    let limit = nofile(task);
                    let peer = Arc::new(OpenFile::new(peer?, status));
                    let cloexec = flags & libc::O_CLOEXEC as u32 != 0;
                    return Ok(task.files.guard().install(peer, cloexec, 0, limit)? as u64);
                }
            }
            file.ops().ioctl(&file, &mut task.mm.guard(), request, a[2])
        }
    }
}

/// `TIOCGPTPEER`: a pty master opens its terminal end as a new fd.
const TIOCGPTPEER: u32 = 0x5441;

/// `pipe2`: a new pipe, its read end at `fds[0]` and its write end at `fds[1]`.
pub fn pipe2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[1]);
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    // Check the destination first: a bad pointer must not leak two fds.
    task.mm.guard().check_access(a[0], 8, true)?;
    let pipe = crate::fs::pipe::Pipe::new();
    let status = (flags & (libc::O_NONBLOCK | libc::O_DIRECT)) as u32;
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let reader = Arc::new(OpenFile::new(
        Box::new(pipe.end(false)),
        libc::O_RDONLY as u32 | status,
    ));
    let writer = Arc::new(OpenFile::new(
        Box::new(pipe.end(true)),
        libc::O_WRONLY as u32 | status,
    ));
    let limit = nofile(task);
    let mut files = task.files.guard();
    let r = files.install(reader, cloexec, 0, limit)?;
    let w = match files.install(writer, cloexec, 0, limit) {
        Ok(w) => w,
        Err(e) => {
            let _ = files.remove(r);
            return Err(e);
        }
    };
    drop(files);
    task.mm.guard().write_obj(a[0], &[r, w])?;
    Ok(0)
}

pub fn pipe(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    pipe2(task, &[a[0], 0, 0, 0, 0, 0])
}
