//! Helpers shared by the path-taking system calls: reading a path from application memory
//! and resolving it relative to a directory fd.

use moat_abi::Errno;

use crate::process::Guard;
use crate::task::Task;
use crate::vfs::lookup::PATH_MAX;
use crate::vfs::{permitted, FileKind, VfsPath, MAY_EXEC, MAY_WRITE};

/// Read a path argument: `ENAMETOOLONG` past `PATH_MAX`, `EFAULT` for a bad pointer.
pub fn read_path(task: &mut Task, addr: u64) -> Result<Vec<u8>, Errno> {
    task.mm.guard().read_cstring(addr, PATH_MAX)
}

/// Resolve `path` relative to `dirfd` (`ENOENT` for an empty path).
pub fn resolve_at(task: &Task, dirfd: i32, path: &[u8], follow: bool) -> Result<VfsPath, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = if path[0] == b'/' {
        task.fs.guard().cwd.clone()
    } else {
        task.start_dir(dirfd)?
    };
    task.resolver().path(&start, path, follow)
}

/// Resolve the parent directory of `path` relative to `dirfd`, and its last name.
pub fn resolve_parent(
    task: &Task,
    dirfd: i32,
    path: &[u8],
) -> Result<(VfsPath, Vec<u8>, bool), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = if path[0] == b'/' {
        task.fs.guard().cwd.clone()
    } else {
        task.start_dir(dirfd)?
    };
    task.resolver().parent(&start, path)
}

/// A path or, with `AT_EMPTY_PATH` and an empty path, the file open at `dirfd` itself.
pub enum Target {
    Path(VfsPath),
    /// A file outside the tree (a donated host fd).
    File(std::sync::Arc<crate::fs::OpenFile>),
}

/// Resolve the `*at(dirfd, path, flags)` pattern with `AT_EMPTY_PATH` and
/// `AT_SYMLINK_NOFOLLOW`.
pub fn target_at(
    task: &mut Task,
    dirfd: i32,
    path_addr: u64,
    flags: i32,
    follow_default: bool,
) -> Result<Target, Errno> {
    let path = read_path(task, path_addr)?;
    if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if dirfd == libc::AT_FDCWD {
            return Ok(Target::Path(task.fs.guard().cwd.clone()));
        }
        let file = task.files.guard().get(dirfd)?;
        return Ok(match file.path() {
            Some(p) => Target::Path(p.clone()),
            None => Target::File(file),
        });
    }
    let follow = follow_default && flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    Ok(Target::Path(resolve_at(task, dirfd, &path, follow)?))
}

/// Changes under `path` need a writable mount.
pub fn writable_mount(path: &VfsPath) -> Result<(), Errno> {
    if path.mount.read_only {
        return Err(Errno::EROFS);
    }
    Ok(())
}

/// May the task add or remove names in `dir`? (write and search permission, writable mount)
pub fn may_modify_dir(task: &Task, dir: &VfsPath) -> Result<(), Errno> {
    let st = dir.inode().stat()?;
    if FileKind::from_mode(st.st_mode) != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    if !permitted(&st, &task.creds, MAY_WRITE | MAY_EXEC) {
        return Err(Errno::EACCES);
    }
    writable_mount(dir)
}

/// The sticky-bit rule: in a sticky directory only the owner of the file or the directory
/// (or root) may remove or rename it.
pub fn may_delete(task: &Task, dir: &VfsPath, child: &VfsPath) -> Result<(), Errno> {
    may_modify_dir(task, dir)?;
    let d = dir.inode().stat()?;
    if d.st_mode & libc::S_ISVTX != 0 && !task.creds.has(crate::capability::Cap::Fowner) {
        let c = child.inode().stat()?;
        if task.creds.fsuid != c.st_uid && task.creds.fsuid != d.st_uid {
            return Err(Errno::EPERM);
        }
    }
    Ok(())
}
