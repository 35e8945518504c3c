//! Extended attributes: getxattr, setxattr, listxattr, removexattr and their `l` (do not
//! follow a final symlink) and `f` (by fd) forms, with xattr(7)'s rules on names, sizes and
//! permissions.

use moat_abi::Errno;

use super::path::{read_path, resolve_at};
use super::{int, SyscallResult};
use crate::capability::Cap;
use crate::fs::tmpfs::{XATTR_CREATE, XATTR_REPLACE};
use crate::process::Guard;
use crate::task::Task;
use crate::vfs::{permitted, FileKind, VfsPath, MAY_READ, MAY_WRITE};

/// Longest attribute name (`XATTR_NAME_MAX`).
const NAME_MAX: usize = 255;
/// Largest attribute value, and largest name list (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const SIZE_MAX: u64 = 65536;

/// How the file is named: a path (following the last symlink or not), or an fd.
enum Target {
    Path { follow: bool },
    Fd,
}

/// The file an xattr call acts on.
fn target(task: &mut Task, arg: u64, how: &Target) -> Result<VfsPath, Errno> {
    match how {
        Target::Path { follow } => {
            let path = read_path(task, arg)?;
            resolve_at(task, libc::AT_FDCWD, &path, *follow)
        }
        Target::Fd => {
            let file = task.files.guard().get(int(arg))?;
            if file.is_path_only() {
                return Err(Errno::EBADF);
            }
            file.path().cloned().ok_or(Errno::EOPNOTSUPP)
        }
    }
}

/// Read an attribute name: `ERANGE` if empty or longer than `XATTR_NAME_MAX`.
fn read_name(task: &mut Task, addr: u64) -> Result<Vec<u8>, Errno> {
    let name = task
        .mm
        .guard()
        .read_cstring(addr, NAME_MAX + 1)
        .map_err(|e| match e {
            Errno::ENAMETOOLONG => Errno::ERANGE,
            e => e,
        })?;
    if name.is_empty() {
        return Err(Errno::ERANGE);
    }
    Ok(name)
}

/// xattr(7)'s access rules: known namespaces only; `trusted.` needs privilege; `user.` only on
/// regular files and directories, with the file's read or write permission.
fn check_access(task: &Task, at: &VfsPath, name: &[u8], write: bool) -> Result<(), Errno> {
    let st = at.inode().stat()?;
    if write && at.mount.read_only {
        return Err(Errno::EROFS);
    }
    if name.starts_with(b"trusted.") {
        if !task.creds.has(Cap::SysAdmin) {
            return Err(if write { Errno::EPERM } else { Errno::ENODATA });
        }
    } else if name.starts_with(b"user.") {
        let kind = FileKind::from_mode(st.st_mode);
        if kind != FileKind::Regular && kind != FileKind::Directory {
            return Err(if write { Errno::EPERM } else { Errno::ENODATA });
        }
        if !permitted(&st, &task.creds, if write { MAY_WRITE } else { MAY_READ }) {
            return Err(Errno::EACCES);
        }
    } else if name.starts_with(b"security.") || name.starts_with(b"system.") {
        if write && !task.creds.has(Cap::Fowner) && task.creds.fsuid != st.st_uid {
            return Err(Errno::EPERM);
        }
    } else {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// Copy `data` out the way the get and list calls do: size 0 asks for the size only,
/// a buffer too small is `ERANGE`.
fn copy_out(task: &mut Task, buf: u64, size: u64, data: &[u8]) -> SyscallResult {
    let size = size.min(SIZE_MAX);
    if size == 0 {
        return Ok(data.len() as u64);
    }
    if data.len() as u64 > size {
        return Err(Errno::ERANGE);
    }
    task.mm.guard().write_bytes(buf, data)?;
    Ok(data.len() as u64)
}

fn get(task: &mut Task, a: &[u64; 6], how: &Target) -> SyscallResult {
    let at = target(task, a[0], how)?;
    let name = read_name(task, a[1])?;
    check_access(task, &at, &name, false)?;
    let value = at.inode().get_xattr(&name)?;
    copy_out(task, a[2], a[3], &value)
}

fn set(task: &mut Task, a: &[u64; 6], how: &Target) -> SyscallResult {
    let flags = int(a[4]) as u32;
    if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    let at = target(task, a[0], how)?;
    let name = read_name(task, a[1])?;
    if a[3] > SIZE_MAX {
        return Err(Errno::E2BIG);
    }
    let mut value = vec![0u8; a[3] as usize];
    task.mm.guard().read_bytes(a[2], &mut value)?;
    check_access(task, &at, &name, true)?;
    at.inode().set_xattr(&name, &value, flags)?;
    Ok(0)
}

fn list(task: &mut Task, a: &[u64; 6], how: &Target) -> SyscallResult {
    let at = target(task, a[0], how)?;
    let privileged = task.creds.has(Cap::SysAdmin);
    let mut out = Vec::new();
    for name in at.inode().list_xattr()? {
        // Unprivileged callers do not see trusted attributes.
        if name.starts_with(b"trusted.") && !privileged {
            continue;
        }
        out.extend_from_slice(&name);
        out.push(0);
    }
    copy_out(task, a[1], a[2], &out)
}

fn remove(task: &mut Task, a: &[u64; 6], how: &Target) -> SyscallResult {
    let at = target(task, a[0], how)?;
    let name = read_name(task, a[1])?;
    check_access(task, &at, &name, true)?;
    at.inode().remove_xattr(&name)?;
    Ok(0)
}

const FOLLOW: Target = Target::Path { follow: true };
const NOFOLLOW: Target = Target::Path { follow: false };

pub fn getxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(task, a, &FOLLOW)
}

pub fn lgetxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(task, a, &NOFOLLOW)
}

pub fn fgetxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(task, a, &Target::Fd)
}

pub fn setxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(task, a, &FOLLOW)
}

pub fn lsetxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(task, a, &NOFOLLOW)
}

pub fn fsetxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(task, a, &Target::Fd)
}

pub fn listxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(task, a, &FOLLOW)
}

pub fn llistxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(task, a, &NOFOLLOW)
}

pub fn flistxattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(task, a, &Target::Fd)
}

pub fn removexattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(task, a, &FOLLOW)
}

pub fn lremovexattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(task, a, &NOFOLLOW)
}

pub fn fremovexattr(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(task, a, &Target::Fd)
}
