//! Calls that add, remove and rename names: mkdir(at), rmdir, unlink(at), rename(at, at2),
//! link(at), symlink(at), readlink(at), mknod(at).

use moat_abi::Errno;

use super::path::{may_delete, may_modify_dir, read_path, resolve_at, resolve_parent};
use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;
use crate::vfs::{FileKind, NewNode, VfsPath, RENAME_EXCHANGE, RENAME_NOREPLACE};

/// Create `name` in `dir` after the checks every creating call shares.
pub(crate) fn create_in(
    task: &Task,
    dir: &VfsPath,
    name: &[u8],
    node: &NewNode,
) -> Result<(), Errno> {
    if name == b"." || name == b".." {
        return Err(Errno::EEXIST);
    }
    match dir.dentry.child(name) {
        Ok(_) => return Err(Errno::EEXIST),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    may_modify_dir(task, dir)?;
    let inode = dir
        .inode()
        .create(name, node, task.creds.euid, task.creds.egid)?;
    dir.dentry.add_child(name, inode);
    Ok(())
}

fn mkdir_at(task: &mut Task, dirfd: i32, path_addr: u64, mode: u32) -> SyscallResult {
    let path = read_path(task, path_addr)?;
    let (dir, name, _) = resolve_parent(task, dirfd, &path)?;
    let node = NewNode::Directory {
        mode: mode & !task.fs.guard().umask & 0o1777,
    };
    create_in(task, &dir, &name, &node)?;
    Ok(0)
}

pub fn mkdir(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    mkdir_at(task, libc::AT_FDCWD, a[0], a[1] as u32)
}

pub fn mkdirat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    mkdir_at(task, int(a[0]), a[1], a[2] as u32)
}

fn mknod_at(task: &mut Task, dirfd: i32, path_addr: u64, mode: u32, dev: u64) -> SyscallResult {
    let path = read_path(task, path_addr)?;
    let (dir, name, trailing) = resolve_parent(task, dirfd, &path)?;
    if trailing {
        return Err(Errno::ENOENT);
    }
    let kind = mode & libc::S_IFMT;
    let node = match kind {
        0 | libc::S_IFREG => NewNode::File {
            mode: mode & !task.fs.guard().umask & 0o7777,
        },
        libc::S_IFIFO | libc::S_IFSOCK => NewNode::Special {
            mode: kind | (mode & !task.fs.guard().umask & 0o7777),
            rdev: 0,
        },
        libc::S_IFCHR | libc::S_IFBLK => {
            if !task.creds.has(crate::capability::Cap::Mknod) {
                return Err(Errno::EPERM);
            }
            NewNode::Special {
                mode: kind | (mode & !task.fs.guard().umask & 0o7777),
                rdev: dev,
            }
        }
        libc::S_IFDIR => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    create_in(task, &dir, &name, &node)?;
    Ok(0)
}

pub fn mknod(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    mknod_at(task, libc::AT_FDCWD, a[0], a[1] as u32, a[2])
}

pub fn mknodat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    mknod_at(task, int(a[0]), a[1], a[2] as u32, a[3])
}

fn symlink_at(task: &mut Task, target_addr: u64, dirfd: i32, path_addr: u64) -> SyscallResult {
    let target = read_path(task, target_addr)?;
    let path = read_path(task, path_addr)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let (dir, name, trailing) = resolve_parent(task, dirfd, &path)?;
    if trailing {
        return Err(Errno::ENOENT);
    }
    create_in(task, &dir, &name, &NewNode::Symlink { target })?;
    Ok(0)
}

pub fn symlink(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    symlink_at(task, a[0], libc::AT_FDCWD, a[1])
}

pub fn symlinkat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    symlink_at(task, a[0], int(a[1]), a[2])
}

fn readlink_at(task: &mut Task, dirfd: i32, path_addr: u64, buf: u64, size: u64) -> SyscallResult {
    if int(size) <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(task, path_addr)?;
    let target = if path.is_empty() {
        // readlinkat(fd, "") reads the symlink an O_PATH fd names.
        task.files
            .guard()
            .get(dirfd)?
            .path()
            .ok_or(Errno::ENOENT)?
            .clone()
    } else {
        resolve_at(task, dirfd, &path, false)?
    };
    let link = target.inode().readlink()?;
    let n = link.len().min(size as usize);
    task.mm.guard().write_bytes(buf, &link[..n])?;
    Ok(n as u64)
}

pub fn readlink(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    readlink_at(task, libc::AT_FDCWD, a[0], a[1], a[2])
}

pub fn readlinkat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    readlink_at(task, int(a[0]), a[1], a[2], a[3])
}

fn unlink_at(task: &mut Task, dirfd: i32, path_addr: u64, remove_dir: bool) -> SyscallResult {
    let path = read_path(task, path_addr)?;
    let (dir, name, trailing) = resolve_parent(task, dirfd, &path)?;
    match name.as_slice() {
        b"." => {
            return Err(if remove_dir {
                Errno::EINVAL
            } else {
                Errno::EISDIR
            })
        }
        b".." => {
            return Err(if remove_dir {
                Errno::ENOTEMPTY
            } else {
                Errno::EISDIR
            })
        }
        _ => {}
    }
    let child = VfsPath {
        mount: dir.mount.clone(),
        dentry: dir.dentry.child(&name)?,
    };
    if child.dentry.mounted().is_some() {
        return Err(Errno::EBUSY);
    }
    let kind = child.inode().kind();
    if !remove_dir && trailing && kind != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    if remove_dir && kind != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    if !remove_dir && kind == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    may_delete(task, &dir, &child)?;
    dir.inode().unlink(&name, remove_dir)?;
    dir.dentry.remove_child(&name);
    Ok(0)
}

pub fn unlink(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    unlink_at(task, libc::AT_FDCWD, a[0], false)
}

pub fn rmdir(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    unlink_at(task, libc::AT_FDCWD, a[0], true)
}

pub fn unlinkat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[2]);
    if flags & !libc::AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    unlink_at(task, int(a[0]), a[1], flags & libc::AT_REMOVEDIR != 0)
}

/// Whether `ancestor` is `path` or one of its parents (a directory cannot move into itself).
fn is_ancestor(ancestor: &VfsPath, path: &VfsPath) -> bool {
    let mut d = Some(path.dentry.clone());
    while let Some(cur) = d {
        if std::sync::Arc::ptr_eq(&cur, &ancestor.dentry) {
            return true;
        }
        d = cur.parent();
    }
    false
}

fn rename_at(
    task: &mut Task,
    olddirfd: i32,
    old_addr: u64,
    newdirfd: i32,
    new_addr: u64,
    flags: u32,
) -> SyscallResult {
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | 4) != 0
        || (flags & RENAME_NOREPLACE != 0 && flags & RENAME_EXCHANGE != 0)
    {
        return Err(Errno::EINVAL);
    }
    if flags & 4 != 0 {
        // RENAME_WHITEOUT is for overlay filesystems' own use.
        return Err(Errno::EINVAL);
    }
    let old_path = read_path(task, old_addr)?;
    let new_path = read_path(task, new_addr)?;
    let (old_dir, old_name, _) = resolve_parent(task, olddirfd, &old_path)?;
    let (new_dir, new_name, _) = resolve_parent(task, newdirfd, &new_path)?;
    for n in [&old_name, &new_name] {
        if n.as_slice() == b"." || n.as_slice() == b".." {
            return Err(Errno::EBUSY);
        }
    }
    if !std::sync::Arc::ptr_eq(&old_dir.mount, &new_dir.mount) {
        return Err(Errno::EXDEV);
    }
    let source = VfsPath {
        mount: old_dir.mount.clone(),
        dentry: old_dir.dentry.child(&old_name)?,
    };
    let dest = match new_dir.dentry.child(&new_name) {
        Ok(d) => Some(VfsPath {
            mount: new_dir.mount.clone(),
            dentry: d,
        }),
        Err(Errno::ENOENT) if flags & RENAME_EXCHANGE == 0 => None,
        Err(e) => return Err(e),
    };
    if source.dentry.mounted().is_some()
        || dest.as_ref().is_some_and(|d| d.dentry.mounted().is_some())
    {
        return Err(Errno::EBUSY);
    }
    if source.inode().kind() == FileKind::Directory && is_ancestor(&source, &new_dir) {
        return Err(Errno::EINVAL);
    }
    if let Some(d) = &dest {
        if flags & RENAME_EXCHANGE != 0
            && d.inode().kind() == FileKind::Directory
            && is_ancestor(d, &old_dir)
        {
            return Err(Errno::EINVAL);
        }
    }
    may_delete(task, &old_dir, &source)?;
    match &dest {
        Some(d) => may_delete(task, &new_dir, d)?,
        None => may_modify_dir(task, &new_dir)?,
    }
    old_dir
        .inode()
        .rename(&old_name, &new_dir.inode(), &new_name, flags)?;
    if flags & RENAME_EXCHANGE != 0 {
        old_dir
            .dentry
            .exchange_child(&old_name, &new_dir.dentry, &new_name);
    } else {
        old_dir
            .dentry
            .move_child(&old_name, &new_dir.dentry, &new_name);
    }
    Ok(0)
}

pub fn rename(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    rename_at(task, libc::AT_FDCWD, a[0], libc::AT_FDCWD, a[1], 0)
}

pub fn renameat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    rename_at(task, int(a[0]), a[1], int(a[2]), a[3], 0)
}

pub fn renameat2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    rename_at(task, int(a[0]), a[1], int(a[2]), a[3], a[4] as u32)
}

fn link_at(
    task: &mut Task,
    olddirfd: i32,
    old_addr: u64,
    newdirfd: i32,
    new_addr: u64,
    flags: i32,
) -> SyscallResult {
    if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old_path = read_path(task, old_addr)?;
    let source = if old_path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        task.files
            .guard()
            .get(olddirfd)?
            .path()
            .ok_or(Errno::ENOENT)?
            .clone()
    } else {
        resolve_at(
            task,
            olddirfd,
            &old_path,
            flags & libc::AT_SYMLINK_FOLLOW != 0,
        )?
    };
    let new_path = read_path(task, new_addr)?;
    let (dir, name, trailing) = resolve_parent(task, newdirfd, &new_path)?;
    if trailing || name == b"." || name == b".." {
        return Err(Errno::EEXIST);
    }
    if source.inode().kind() == FileKind::Directory {
        return Err(Errno::EPERM);
    }
    if !std::sync::Arc::ptr_eq(&source.mount, &dir.mount) {
        return Err(Errno::EXDEV);
    }
    match dir.dentry.child(&name) {
        Ok(_) => return Err(Errno::EEXIST),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    may_modify_dir(task, &dir)?;
    let inode = source.inode();
    dir.inode().link(&name, &inode)?;
    dir.dentry.add_child(&name, inode);
    Ok(0)
}

pub fn link(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    link_at(task, libc::AT_FDCWD, a[0], libc::AT_FDCWD, a[1], 0)
}

pub fn linkat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    link_at(task, int(a[0]), a[1], int(a[2]), a[3], int(a[4]))
}
