//! uname, getrandom, sched_yield, sysinfo.

use moat_abi::{Errno, Sysinfo, Utsname};

use super::SyscallResult;
use crate::process::Guard;
use crate::task::Task;

/// The release Moat reports: a Linux version whose ABI Moat follows, marked as Moat's.
pub const RELEASE: &str = "6.6.0-moat";
pub const VERSION: &str = "#1 SMP Moat";

fn field(s: &str) -> [u8; 65] {
    let mut f = [0u8; 65];
    let n = s.len().min(64);
    f[..n].copy_from_slice(&s.as_bytes()[..n]);
    f
}

pub fn uname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let u = Utsname {
        sysname: field("Linux"),
        nodename: field(&task.kernel.hostname),
        release: field(RELEASE),
        version: field(VERSION),
        machine: field("x86_64"),
        domainname: field("(none)"),
    };
    task.mm.guard().write_obj(a[0], &u)?;
    Ok(0)
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
