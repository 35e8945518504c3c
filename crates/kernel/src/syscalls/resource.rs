//! prlimit64, getrlimit, setrlimit: the sandbox's own resource limits.

use moat_abi::{Errno, Rlimit};

use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;
use crate::RLIMIT_COUNT;

/// `fs.nr_open`: the highest `RLIMIT_NOFILE` Linux accepts by default.
const NR_OPEN: u64 = 1 << 20;

fn resource(r: u64) -> Result<usize, Errno> {
    let r = r as u32 as usize;
    if r >= RLIMIT_COUNT {
        return Err(Errno::EINVAL);
    }
    Ok(r)
}

/// Get and/or set one limit, with Linux's checks and their order.
fn do_prlimit(task: &mut Task, res: usize, new: Option<Rlimit>, old_addr: u64) -> SyscallResult {
    if let Some(n) = new {
        if n.cur > n.max {
            return Err(Errno::EINVAL);
        }
        if res == libc::RLIMIT_NOFILE as usize && n.max > NR_OPEN {
            return Err(Errno::EPERM);
        }
    }
    let old = task.limits()[res];
    if old_addr != 0 {
        task.mm.guard().write_obj(old_addr, &old)?;
    }
    if let Some(n) = new {
        // Raising the hard limit needs CAP_SYS_RESOURCE.
        if n.max > old.max && !task.creds.has(crate::capability::Cap::SysResource) {
            return Err(Errno::EPERM);
        }
        task.limits()[res] = n;
        match res as u32 {
            libc::RLIMIT_AS => task.mm.guard().limit_as = n.cur,
            libc::RLIMIT_DATA => task.mm.guard().limit_data = n.cur,
            _ => {}
        }
    }
    Ok(0)
}

pub fn prlimit64(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    if pid != 0 && pid != task.tgid {
        return Err(Errno::ESRCH);
    }
    let res = resource(a[1])?;
    let new = if a[2] != 0 {
        Some(task.mm.guard().read_obj::<Rlimit>(a[2])?)
    } else {
        None
    };
    do_prlimit(task, res, new, a[3])
}

pub fn getrlimit(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let res = resource(a[0])?;
    let old = task.limits()[res];
    task.mm.guard().write_obj(a[1], &old)?;
    Ok(0)
}

pub fn setrlimit(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let res = resource(a[0])?;
    let new: Rlimit = task.mm.guard().read_obj(a[1])?;
    do_prlimit(task, res, Some(new), 0)
}
