//! getcwd, umask: the per-process filesystem context.

use moat_abi::Errno;

use super::SyscallResult;
use crate::task::Task;

pub fn getcwd(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let mut path = task.cwd.clone();
    path.push(0);
    if (a[1] as usize) < path.len() {
        return Err(Errno::ERANGE);
    }
    task.mm.write_bytes(a[0], &path)?;
    Ok(path.len() as u64)
}

pub fn umask(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = task.umask;
    task.umask = (a[0] as u32) & 0o777;
    Ok(u64::from(old))
}
