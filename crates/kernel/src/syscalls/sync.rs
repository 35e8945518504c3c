//! fsync, fdatasync, sync, syncfs, sync_file_range, and the caching hints fadvise64 and
//! readahead. Moat's own filesystems live in memory, so syncing them is immediate; a file of
//! a volume or a donated host fd syncs the host file.

use moat_abi::Errno;

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;

pub fn fsync(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    file.ops().sync()?;
    Ok(0)
}

/// Moat's files have no metadata that could lag behind their data.
pub fn fdatasync(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    fsync(task, a)
}

pub fn sync(_task: &mut Task, _a: &[u64; 6]) -> SyscallResult {
    Ok(0)
}

pub fn syncfs(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    file_type(task, a[0])?;
    Ok(0)
}

/// The `S_IFMT` bits of an open file.
fn file_type(task: &Task, fd: u64) -> Result<u32, Errno> {
    let file = task.files.guard().get(int(fd))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    Ok(file.stat()?.st_mode & libc::S_IFMT)
}

pub fn sync_file_range(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let kind = file_type(task, a[0])?;
    let (offset, nbytes, flags) = (a[1] as i64, a[2] as i64, a[3]);
    // SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER
    if flags & !7 != 0 || offset < 0 || nbytes < 0 || offset.checked_add(nbytes).is_none() {
        return Err(Errno::EINVAL);
    }
    if !matches!(
        kind,
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK | libc::S_IFLNK
    ) {
        return Err(Errno::ESPIPE);
    }
    Ok(0)
}

/// `posix_fadvise`: a hint, checked and then honoured by doing nothing (Moat has no page
/// cache to read ahead into or drop).
pub fn fadvise64(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let kind = file_type(task, a[0])?;
    if matches!(kind, libc::S_IFIFO | libc::S_IFSOCK) {
        return Err(Errno::ESPIPE);
    }
    // POSIX_FADV_NORMAL..=POSIX_FADV_NOREUSE
    if a[3] > 5 || (a[2] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// `readahead`: only regular files have pages to read ahead.
pub fn readahead(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if !file.readable() {
        return Err(Errno::EBADF);
    }
    if file.stat()?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}
