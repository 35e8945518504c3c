//! uname, sethostname, setdomainname, getrandom, sched_yield, sysinfo.

use moat_abi::{Errno, Sysinfo, Utsname};

use super::SyscallResult;
use crate::process::Guard;
use crate::task::Task;

/// The release Moat reports: a Linux version whose ABI Moat follows, marked as Moat's.
pub const RELEASE: &str = "6.6.0-moat";
pub const VERSION: &str = "#1 SMP Moat";

/// The longest host or domain name (`__NEW_UTS_LEN`).
const UTS_LEN: usize = 64;

/// The sandbox's names: its own UTS namespace, as a container's.
#[derive(Clone, Debug)]
pub struct Uts {
    pub hostname: Vec<u8>,
    pub domainname: Vec<u8>,
}

impl Uts {
    pub fn new(hostname: &[u8]) -> Uts {
        Uts {
            hostname: hostname[..hostname.len().min(UTS_LEN)].to_vec(),
            domainname: b"(none)".to_vec(),
        }
    }
}

fn field(s: &[u8]) -> [u8; 65] {
    let mut f = [0u8; 65];
    let n = s.len().min(UTS_LEN);
    f[..n].copy_from_slice(&s[..n]);
    f
}

pub fn uname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let u = {
        let uts = task.kernel.uts.guard();
        Utsname {
            sysname: field(b"Linux"),
            nodename: field(&uts.hostname),
            release: field(RELEASE.as_bytes()),
            version: field(VERSION.as_bytes()),
            machine: field(b"x86_64"),
            domainname: field(&uts.domainname),
        }
    };
    task.mm.guard().write_obj(a[0], &u)?;
    Ok(0)
}

/// `sethostname`/`setdomainname`: `CAP_SYS_ADMIN` first (`EPERM`), then a length of 0 to 64
/// (`EINVAL`), then the bytes (`EFAULT`), as Linux checks them.
fn set_name(task: &mut Task, a: &[u64; 6], field: fn(&mut Uts) -> &mut Vec<u8>) -> SyscallResult {
    if !task.creds.has(crate::capability::Cap::SysAdmin) {
        return Err(Errno::EPERM);
    }
    let len = super::int(a[1]);
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= UTS_LEN)
        .ok_or(Errno::EINVAL)?;
    let mut name = vec![0u8; len];
    task.mm.guard().read_bytes(a[0], &mut name)?;
    *field(&mut task.kernel.uts.guard()) = name;
    Ok(0)
}

pub fn sethostname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_name(task, a, |u| &mut u.hostname)
}

pub fn setdomainname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_name(task, a, |u| &mut u.domainname)
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

pub fn getrandom(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (addr, len, flags) = (a[0], a[1], a[2] as u32 as u64);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE
    {
        return Err(Errno::EINVAL);
    }
    let len = len.min(i32::MAX as u64);
    let mut done = 0u64;
    let mut buf = vec![0u8; len.min(1 << 16) as usize];
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        crate::fill_random(&mut buf[..n]);
        if let Err(e) = task.mm.guard().write_bytes(addr + done, &buf[..n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n as u64;
    }
    Ok(done)
}

pub fn sched_yield(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    std::thread::yield_now();
    Ok(0)
}

/// `sysinfo`: the sandbox's uptime and process count, the host's memory figures bounded by
/// the sandbox's memory limit, no load.
pub fn sysinfo(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let host = rustix::system::sysinfo();
    let unit = u64::from(host.mem_unit.max(1));
    let (totalram, freeram) = crate::oom::memory_figures(
        Some(&task.kernel.memory),
        host.totalram * unit,
        host.freeram * unit,
    );
    let info = Sysinfo {
        uptime: i64::try_from(task.kernel.boot.elapsed().as_secs()).unwrap_or(i64::MAX),
        totalram,
        freeram,
        sharedram: host.sharedram * unit,
        bufferram: host.bufferram * unit,
        totalswap: host.totalswap * unit,
        freeswap: host.freeswap * unit,
        procs: 1,
        mem_unit: 1,
        ..Sysinfo::default()
    };
    task.mm.guard().write_obj(a[0], &info)?;
    Ok(0)
}
