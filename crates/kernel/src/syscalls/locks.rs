//! flock and the fcntl record-lock commands (F_GETLK/F_SETLK/F_SETLKW and their OFD forms),
//! over the table in `fs/locks.rs`.
//!
//! The sandbox has one process for now, so a wait could only ever be for a lock this process
//! itself holds through another description: Linux would block forever; Moat answers `EDEADLK`
//! instead of hanging (until tasks can block and be woken, issue 4).

use moat_abi::{Errno, Flock};

use super::{int, SyscallResult};
use crate::fs::locks::{self, Family, Lock, Owner};
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::task::Task;

const LOCK_SH: i32 = 1;
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
const LOCK_UN: i32 = 8;
const LOCK_MAND: i32 = 32;

/// The identity locks are keyed by.
fn file_id(file: &OpenFile) -> Result<(u64, u64), Errno> {
    let st = file.stat()?;
    Ok((st.st_dev, st.st_ino))
}

pub fn flock(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let op = int(a[1]);
    // LOCK_MAND (Samba's mandatory share modes) is accepted and ignored, as Linux does.
    if op & LOCK_MAND != 0 {
        return Ok(0);
    }
    let write = match op & !LOCK_NB {
        LOCK_SH => false,
        LOCK_EX => true,
        LOCK_UN => false,
        _ => return Err(Errno::EINVAL),
    };
    let lock = Lock {
        owner: Owner::Description(file.id()),
        family: Family::Flock,
        write,
        start: 0,
        end: u64::MAX,
    };
    match locks::set(file_id(&file)?, lock, op & !LOCK_NB == LOCK_UN) {
        Err(Errno::EAGAIN) if op & LOCK_NB == 0 => Err(Errno::EDEADLK),
        // flock says EWOULDBLOCK, which is EAGAIN.
        other => other.map(|()| 0),
    }
}

/// The byte range `[start, end]` a `struct flock` names (`end` = `u64::MAX` for "to the end").
fn range(file: &OpenFile, f: &Flock) -> Result<(u64, u64), Errno> {
    let base = match i32::from(f.l_whence) {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => file.seek(0, libc::SEEK_CUR)? as i64,
        libc::SEEK_END => file.stat()?.st_size,
        _ => return Err(Errno::EINVAL),
    };
    let start = base.checked_add(f.l_start).ok_or(Errno::EOVERFLOW)?;
    let (start, end) = match f.l_len {
        0 => (start, None),
        len if len > 0 => (
            start,
            Some(start.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?),
        ),
        len => (
            start.checked_add(len).ok_or(Errno::EINVAL)?,
            Some(start - 1),
        ),
    };
    if start < 0 {
        return Err(Errno::EINVAL);
    }
    Ok((start as u64, end.map_or(u64::MAX, |e| e as u64)))
}

/// F_GETLK, F_SETLK, F_SETLKW and the OFD forms (`ofd`).
pub fn record_lock(task: &mut Task, fd: i32, cmd: i32, addr: u64) -> SyscallResult {
    let file = task.files.guard().get(fd)?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let ofd = matches!(
        cmd,
        libc::F_OFD_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    );
    let get = matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK);
    let wait = matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW);
    let mut f: Flock = task.mm.guard().read_obj(addr)?;
    let kind = i32::from(f.l_type);
    if ![libc::F_RDLCK, libc::F_WRLCK, libc::F_UNLCK].contains(&kind) {
        return Err(Errno::EINVAL);
    }
    // OFD locks have no owning process: l_pid must be 0 on the way in.
    if ofd && f.l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, end) = range(&file, &f)?;
    let owner = if ofd {
        Owner::Description(file.id())
    } else {
        Owner::Process(task.tgid)
    };
    let lock = Lock {
        owner,
        family: Family::Record,
        write: kind == libc::F_WRLCK,
        start,
        end,
    };
    let id = file_id(&file)?;
    if get {
        if kind == libc::F_UNLCK {
            return Err(Errno::EINVAL);
        }
        match locks::conflict(id, &lock) {
            None => f.l_type = libc::F_UNLCK as i16,
            Some(held) => {
                f.l_type = if held.write {
                    libc::F_WRLCK
                } else {
                    libc::F_RDLCK
                } as i16;
                f.l_whence = libc::SEEK_SET as i16;
                f.l_start = held.start as i64;
                f.l_len = if held.end == u64::MAX {
                    0
                } else {
                    (held.end - held.start + 1) as i64
                };
                f.l_pid = match held.owner {
                    Owner::Process(pid) => pid,
                    Owner::Description(_) => -1,
                };
            }
        }
        task.mm.guard().write_obj(addr, &f)?;
        return Ok(0);
    }
    if (kind == libc::F_RDLCK && !file.readable()) || (kind == libc::F_WRLCK && !file.writable()) {
        return Err(Errno::EBADF);
    }
    match locks::set(id, lock, kind == libc::F_UNLCK) {
        Err(Errno::EAGAIN) if wait => Err(Errno::EDEADLK),
        other => other.map(|()| 0),
    }
}

/// `close` drops the process's POSIX locks on that file, whichever fd took them.
pub fn closing(task: &Task, file: &OpenFile) {
    if !locks::any() {
        return;
    }
    if let Ok(id) = file_id(file) {
        locks::release(Owner::Process(task.tgid), Some(id));
    }
}
