//! getuid, geteuid, getgid, getegid, getgroups.

use moat_abi::Errno;

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;

pub fn getuid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.uid))
}

pub fn geteuid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.euid))
}

pub fn getgid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.gid))
}

pub fn getegid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.egid))
}

pub fn getgroups(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let size = int(a[0]);
    let count = task.creds.groups.len();
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(count as u64);
    }
    if (size as usize) < count {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = task
        .creds
        .groups
        .iter()
        .flat_map(|g| g.to_ne_bytes())
        .collect();
    task.mm.guard().write_bytes(a[1], &bytes)?;
    Ok(count as u64)
}
