//! Facts about the host that a sandbox inherits: resource limits, the CPU mask, what the
//! auxiliary vector says about the CPU, the umask.

use moat_abi::Rlimit;
use moat_kernel::capability::CapSets;
use moat_kernel::{AuxFacts, Credentials, RLIMIT_COUNT};

/// This process's resource limits, in Linux's `RLIMIT_*` order.
pub fn limits() -> [Rlimit; RLIMIT_COUNT] {
    use rustix::process::Resource as R;
    let resources = [
        R::Cpu,
        R::Fsize,
        R::Data,
        R::Stack,
        R::Core,
        R::Rss,
        R::Nproc,
        R::Nofile,
        R::Memlock,
        R::As,
        R::Locks,
        R::Sigpending,
        R::Msgqueue,
        R::Nice,
        R::Rtprio,
        R::Rttime,
    ];
    let mut limits = [Rlimit::default(); RLIMIT_COUNT];
    for (i, r) in resources.into_iter().enumerate() {
        let l = rustix::process::getrlimit(r);
        limits[i] = Rlimit {
            cur: l.current.unwrap_or(u64::MAX),
            max: l.maximum.unwrap_or(u64::MAX),
        };
    }
    limits
}

/// The CPUs this process may run on, as Linux's cpumask bytes (whole 64-bit words).
pub fn cpu_mask() -> Vec<u8> {
    let set = rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| {
        let mut s = rustix::thread::CpuSet::new();
        s.set(0);
        s
    });
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&i| set.is_set(i))
        .collect();
    let highest = cpus.last().copied().unwrap_or(0);
    let mut mask = vec![0u8; (highest / 64 + 1) * 8];
    for c in cpus {
        mask[c / 8] |= 1 << (c % 8);
    }
    mask
}

/// What every exec's auxiliary vector says about the CPU, and the ids of `creds`.
pub fn aux(creds: &Credentials) -> AuxFacts {
    let (hwcap, hwcap2) = rustix::param::linux_hwcap();
    AuxFacts {
        hwcap: hwcap as u64,
        hwcap2: hwcap2 as u64,
        minsigstksz: rustix::param::linux_minsigstksz() as u64,
        uid: creds.uid,
        euid: creds.euid,
        gid: creds.gid,
        egid: creds.egid,
    }
}

/// This process's umask (read by setting and restoring it).
pub fn umask() -> u32 {
    let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(umask);
    umask.as_raw_mode()
}

/// The capability sets of the calling thread, read from `/proc/thread-self/status` (its
/// `CapInh`, `CapPrm`, `CapEff`, `CapBnd` and `CapAmb` lines): `moat do` gives the program the
/// sets its caller has, as running it directly would. Where the file cannot be read, the sets
/// Linux gives a new process of those IDs.
pub fn capabilities(uid: u32, euid: u32) -> CapSets {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(":\t"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .map(|v| v & moat_kernel::capability::ALL_CAPS)
    };
    match (
        field("CapInh"),
        field("CapPrm"),
        field("CapEff"),
        field("CapBnd"),
        field("CapAmb"),
    ) {
        (Some(inheritable), Some(permitted), Some(effective), Some(bounding), Some(ambient)) => {
            CapSets {
                effective,
                permitted,
                inheritable,
                bounding,
                ambient,
            }
        }
        _ => CapSets::for_ids(uid, euid),
    }
}
