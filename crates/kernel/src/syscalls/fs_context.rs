//! getcwd, chdir, fchdir, chroot, umask: the per-process filesystem context.

use moat_abi::Errno;

use super::path::{read_path, resolve_at};
use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;
use crate::vfs::{permitted, FileKind, VfsPath, MAY_EXEC};

pub fn getcwd(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let fs = task.fs.guard().clone();
    let mut path = fs.cwd.absolute(&fs.root);
    if fs.cwd.dentry.is_deleted() {
        path.extend_from_slice(b" (deleted)");
    }
    path.push(0);
    if (a[1] as usize) < path.len() {
        return Err(Errno::ERANGE);
    }
    task.mm.guard().write_bytes(a[0], &path)?;
    Ok(path.len() as u64)
}

fn enter(task: &Task, path: &VfsPath) -> Result<(), Errno> {
    let st = path.inode().stat()?;
    if FileKind::from_mode(st.st_mode) != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    if !permitted(&st, &task.creds, MAY_EXEC) {
        return Err(Errno::EACCES);
    }
    Ok(())
}

pub fn chdir(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = read_path(task, a[0])?;
    let target = resolve_at(task, libc::AT_FDCWD, &path, true)?;
    enter(task, &target)?;
    task.fs.guard().cwd = target;
    Ok(0)
}

pub fn fchdir(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    let target = file.path().ok_or(Errno::ENOTDIR)?.clone();
    enter(task, &target)?;
    task.fs.guard().cwd = target;
    Ok(0)
}

pub fn chroot(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = read_path(task, a[0])?;
    let target = resolve_at(task, libc::AT_FDCWD, &path, true)?;
    enter(task, &target)?;
    if !task.creds.has(crate::capability::Cap::SysChroot) {
        return Err(Errno::EPERM);
    }
    task.fs.guard().root = target;
    Ok(0)
}

pub fn umask(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = task.fs.guard().umask;
    task.fs.guard().umask = (a[0] as u32) & 0o777;
    Ok(u64::from(old))
}
