//! chmod, fchmod(at/at2), chown, fchown(at), lchown, truncate, ftruncate, utimensat, utimes,
//! access, faccessat(2): changing and checking a file's attributes.

use moat_abi::{Errno, Timespec, Timeval};

use super::path::{read_path, resolve_at, target_at, writable_mount, Target};
use super::{int, SyscallResult};
use crate::capability::Cap;
use crate::process::Guard;
use crate::task::Task;
use crate::vfs::{permitted, FileKind, SetAttr, VfsPath, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::Credentials;

fn path_of(target: Target) -> Result<VfsPath, Errno> {
    match target {
        Target::Path(p) => Ok(p),
        // Donated host files cannot be changed from inside the sandbox.
        Target::File(_) => Err(Errno::EPERM),
    }
}

/// Whether the caller owns the file (by its filesystem UID) or holds `CAP_FOWNER`: Linux's
/// `inode_owner_or_capable`.
fn is_owner(creds: &Credentials, path: &VfsPath) -> Result<bool, Errno> {
    Ok(creds.has(Cap::Fowner) || creds.fsuid == path.inode().stat()?.st_uid)
}

/// Whether the caller is in group `gid` (its filesystem GID or a supplementary group).
fn in_group(creds: &Credentials, gid: u32) -> bool {
    creds.fsgid == gid || creds.groups.contains(&gid)
}

fn chmod_path(task: &Task, path: &VfsPath, mode: u32) -> SyscallResult {
    if !is_owner(&task.creds, path)? {
        return Err(Errno::EPERM);
    }
    writable_mount(path)?;
    let st = path.inode().stat()?;
    let mut mode = mode & 0o7777;
    // Without membership in the file's group (or CAP_FSETID), the set-group-ID bit is
    // dropped.
    if !task.creds.has(Cap::Fsetid) && !in_group(&task.creds, st.st_gid) {
        mode &= !libc::S_ISGID;
    }
    path.inode().setattr(&SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    })?;
    Ok(0)
}

pub fn chmod(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, libc::AT_FDCWD, &p, true)?;
    chmod_path(task, &path, a[1] as u32)
}

pub fn fchmod(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let path = file.path().ok_or(Errno::EPERM)?.clone();
    chmod_path(task, &path, a[1] as u32)
}

pub fn fchmodat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = path_of(target_at(task, int(a[0]), a[1], 0, true)?)?;
    chmod_path(task, &path, a[2] as u32)
}

pub fn fchmodat2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[3]);
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_of(target_at(task, int(a[0]), a[1], flags, true)?)?;
    if path.inode().kind() == FileKind::Symlink {
        // Linux does not change a symlink's mode.
        return Err(Errno::EOPNOTSUPP);
    }
    chmod_path(task, &path, a[2] as u32)
}

fn chown_path(task: &Task, path: &VfsPath, uid: u32, gid: u32) -> SyscallResult {
    let st = path.inode().stat()?;
    let uid = (uid != u32::MAX).then_some(uid);
    let gid = (gid != u32::MAX).then_some(gid);
    // The owner may "change" the owner to itself and the group to one it is in;
    // CAP_CHOWN may do anything.
    if !task.creds.has(Cap::Chown) {
        let owner = task.creds.fsuid == st.st_uid;
        let uid_ok = uid.is_none_or(|u| u == st.st_uid && owner);
        let gid_ok = gid.is_none_or(|g| owner && (in_group(&task.creds, g) || g == st.st_gid));
        if !uid_ok || !gid_ok {
            return Err(Errno::EPERM);
        }
    }
    writable_mount(path)?;
    path.inode().setattr(&SetAttr {
        uid,
        gid,
        ..SetAttr::default()
    })?;
    Ok(0)
}

pub fn chown(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, libc::AT_FDCWD, &p, true)?;
    chown_path(task, &path, a[1] as u32, a[2] as u32)
}

pub fn lchown(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, libc::AT_FDCWD, &p, false)?;
    chown_path(task, &path, a[1] as u32, a[2] as u32)
}

pub fn fchown(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let path = file.path().ok_or(Errno::EPERM)?.clone();
    chown_path(task, &path, a[1] as u32, a[2] as u32)
}

pub fn fchownat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[4]);
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_of(target_at(task, int(a[0]), a[1], flags, true)?)?;
    chown_path(task, &path, a[2] as u32, a[3] as u32)
}

fn truncate_path(path: &VfsPath, len: u64) -> SyscallResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let st = path.inode().stat()?;
    match FileKind::from_mode(st.st_mode) {
        FileKind::Directory => return Err(Errno::EISDIR),
        FileKind::Regular => {}
        _ => return Err(Errno::EINVAL),
    }
    path.inode().setattr(&SetAttr {
        size: Some(len),
        ..SetAttr::default()
    })?;
    Ok(0)
}

pub fn truncate(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, libc::AT_FDCWD, &p, true)?;
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if path.inode().kind() == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    if !permitted(&path.inode().stat()?, &task.creds, MAY_WRITE) {
        return Err(Errno::EACCES);
    }
    writable_mount(&path)?;
    truncate_path(&path, a[1])
}

pub fn ftruncate(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    if !file.writable() {
        return Err(Errno::EINVAL);
    }
    let path = file.path().ok_or(Errno::EINVAL)?.clone();
    truncate_path(&path, a[1])
}

/// `fallocate` modes.
const FALLOC_FL_KEEP_SIZE: u64 = 1;
const FALLOC_FL_PUNCH_HOLE: u64 = 2;

/// `fallocate`: Moat's files have no blocks to reserve, so allocating is extending the size
/// (unless `FALLOC_FL_KEEP_SIZE`), and punching a hole writes zeros over the range. Other
/// modes (collapse, insert, zero range, unshare) are `EOPNOTSUPP`, as on filesystems that lack
/// them. Checks in Linux's order.
pub fn fallocate(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    let (mode, offset, len) = (a[1], a[2] as i64, a[3] as i64);
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if mode & FALLOC_FL_PUNCH_HOLE != 0 && mode & FALLOC_FL_KEEP_SIZE == 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if file.is_path_only() || !file.writable() {
        return Err(Errno::EBADF);
    }
    let st = file.stat()?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => return Err(Errno::ESPIPE),
        libc::S_IFDIR => return Err(Errno::EISDIR),
        libc::S_IFREG => {}
        _ => return Err(Errno::ENODEV),
    }
    // Past the largest file size (`MAX_LFS_FILESIZE`, i64::MAX) is EFBIG.
    let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
    let path = file.path().ok_or(Errno::ENODEV)?.clone();
    if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        // Zeros over the part of the range inside the file; the size never changes.
        let stop = end.min(st.st_size);
        let zeros = vec![0u8; 1 << 16];
        let mut at = offset;
        while at < stop {
            let n = usize::try_from(stop - at)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            let written = file.write_at(&zeros[..n], at as u64)?;
            if written == 0 {
                return Err(Errno::EIO);
            }
            at += written as i64;
        }
        return Ok(0);
    }
    if mode & FALLOC_FL_KEEP_SIZE == 0 && end > st.st_size {
        path.inode().setattr(&SetAttr {
            size: Some(end as u64),
            ..SetAttr::default()
        })?;
    }
    Ok(0)
}

const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// Apply `[atime, mtime]` (`None` = both now) with utimensat's permission rules.
fn set_times(task: &Task, path: &VfsPath, times: Option<[Timespec; 2]>) -> SyscallResult {
    let now = crate::fs::tmpfs::now();
    let mut explicit = false;
    let mut pick = |t: &Timespec| -> Result<Option<(i64, i64)>, Errno> {
        match t.tv_nsec {
            UTIME_OMIT => Ok(None),
            UTIME_NOW => Ok(Some(now)),
            n if (0..1_000_000_000).contains(&n) => {
                explicit = true;
                Ok(Some((t.tv_sec, n)))
            }
            _ => Err(Errno::EINVAL),
        }
    };
    let (atime, mtime) = match times {
        None => (Some(now), Some(now)),
        Some([a, m]) => (pick(&a)?, pick(&m)?),
    };
    if atime.is_none() && mtime.is_none() {
        return Ok(0);
    }
    let st = path.inode().stat()?;
    let owner = task.creds.has(Cap::Fowner) || task.creds.fsuid == st.st_uid;
    if explicit && !owner {
        return Err(Errno::EPERM);
    }
    if !explicit && !owner && !permitted(&st, &task.creds, MAY_WRITE) {
        return Err(Errno::EACCES);
    }
    writable_mount(path)?;
    path.inode().setattr(&SetAttr {
        atime,
        mtime,
        ..SetAttr::default()
    })?;
    Ok(0)
}

pub fn utimensat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (dirfd, flags) = (int(a[0]), int(a[3]));
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let times = if a[2] == 0 {
        None
    } else {
        let mut mm = task.mm.guard();
        Some([
            mm.read_obj::<Timespec>(a[2])?,
            mm.read_obj::<Timespec>(a[2] + 16)?,
        ])
    };
    let path = if a[1] == 0 {
        // A NULL path means the file open at dirfd (Linux's futimens).
        task.files
            .guard()
            .get(dirfd)?
            .path()
            .ok_or(Errno::EPERM)?
            .clone()
    } else {
        path_of(target_at(task, dirfd, a[1], flags, true)?)?
    };
    set_times(task, &path, times)
}

pub fn utimes(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    timeval_times_at(task, libc::AT_FDCWD, a[0], a[1])
}

/// `futimesat`: `utimes` relative to a directory fd.
pub fn futimesat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    timeval_times_at(task, int(a[0]), a[1], a[2])
}

/// `utime`: whole seconds from a `struct utimbuf { actime; modtime; }`.
pub fn utime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, libc::AT_FDCWD, &p, true)?;
    let times = if a[1] == 0 {
        None
    } else {
        let at = |sec: i64| Timespec {
            tv_sec: sec,
            tv_nsec: 0,
        };
        let mut mm = task.mm.guard();
        Some([at(mm.read_obj(a[1])?), at(mm.read_obj(a[1] + 8)?)])
    };
    set_times(task, &path, times)
}

fn timeval_times_at(task: &mut Task, dirfd: i32, path_addr: u64, tv_addr: u64) -> SyscallResult {
    let a = [path_addr, tv_addr, 0, 0, 0, 0];
    let p = read_path(task, a[0])?;
    let path = resolve_at(task, dirfd, &p, true)?;
    let times = if a[1] == 0 {
        None
    } else {
        let to_ts = |t: Timeval| -> Result<Timespec, Errno> {
            if !(0..1_000_000).contains(&t.tv_usec) {
                return Err(Errno::EINVAL);
            }
            Ok(Timespec {
                tv_sec: t.tv_sec,
                tv_nsec: t.tv_usec * 1000,
            })
        };
        let mut mm = task.mm.guard();
        Some([to_ts(mm.read_obj(a[1])?)?, to_ts(mm.read_obj(a[1] + 16)?)?])
    };
    set_times(task, &path, times)
}

const AT_EACCESS: i32 = 0x200;

fn access_at(task: &mut Task, dirfd: i32, path_addr: u64, mode: u32, flags: i32) -> SyscallResult {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & !(AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = target_at(task, dirfd, path_addr, flags, true)?;
    let Target::Path(path) = target else {
        return Ok(0);
    };
    if mode == 0 {
        return Ok(0);
    }
    // access() checks with the real ids unless AT_EACCESS asks for the effective ones.
    let mut creds = task.creds.clone();
    if flags & AT_EACCESS == 0 {
        creds.euid = creds.uid;
        creds.egid = creds.gid;
        creds.fsuid = creds.uid;
        creds.fsgid = creds.gid;
    }
    let mut mask = 0;
    if mode & 4 != 0 {
        mask |= MAY_READ;
    }
    if mode & 2 != 0 {
        mask |= MAY_WRITE;
    }
    if mode & 1 != 0 {
        mask |= MAY_EXEC;
    }
    if !permitted(&path.inode().stat()?, &creds, mask) {
        return Err(Errno::EACCES);
    }
    if mask & MAY_WRITE != 0 && path.inode().kind() != FileKind::CharDevice {
        writable_mount(&path)?;
    }
    Ok(0)
}

pub fn access(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    access_at(task, libc::AT_FDCWD, a[0], a[1] as u32, 0)
}

pub fn faccessat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    access_at(task, int(a[0]), a[1], a[2] as u32, 0)
}

pub fn faccessat2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    access_at(task, int(a[0]), a[1], a[2] as u32, int(a[3]))
}
