//! Small host helpers shared by the platforms: thread ids, CPU clocks, CPU pinning, and what
//! a freshly forked stub must undo before it drops Moat's memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::PlatformError;

pub(crate) fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// The calling host thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time of a whole host process (all its threads, the exited ones included).
pub(crate) fn process_cpu_time(pid: libc::pid_t) -> Result<Duration, PlatformError> {
    // The host's CPU clock of another process: `(~pid << 3) | CPUCLOCK_SCHED`.
    let clock = (!pid << 3) | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(clock, &raw mut ts) } < 0 {
        return Err(PlatformError::Ptrace {
            op: "clock_gettime",
            pid,
            source: errno(),
        });
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// A stub thread's CPU time, from the host's scheduler statistics.
///
/// The host's per-thread CPU clocks (`(~tid << 3) | CPUCLOCK_PERTHREAD_MASK (4) |
/// CPUCLOCK_SCHED (2)`) only answer for threads of the caller's own process (EINVAL
/// otherwise), so the scheduler's own count is read from `/proc` instead: the first field
/// of `schedstat` is the same `sum_exec_runtime`, in nanoseconds. `file` caches the open
/// file between calls.
/// The host's `/proc` for a kernel process that has none in its root (see [`set_proc_dir`]).
static PROC_DIR: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Read stub threads' scheduler statistics through `dir`, a procfs directory opened before
/// the kernel process was confined (its root is then empty). Without it, `/proc` is used.
/// Only the first call counts.
pub fn set_proc_dir(dir: std::os::fd::OwnedFd) {
    let _ = PROC_DIR.set(dir);
}

/// Open `PID/task/TID/schedstat` of the host's (or the kernel's pid namespace's) procfs.
fn open_schedstat(pid: libc::pid_t, tid: libc::pid_t) -> std::io::Result<File> {
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    let fd = match PROC_DIR.get() {
        Some(dir) => rustix::fs::openat(
            dir,
            format!("{pid}/task/{tid}/schedstat"),
            flags,
            rustix::fs::Mode::empty(),
        )?,
        None => rustix::fs::open(
            format!("/proc/{pid}/task/{tid}/schedstat"),
            flags,
            rustix::fs::Mode::empty(),
        )?,
    };
    Ok(File::from(fd))
}

pub(crate) fn thread_cpu_time(
    file: &mut Option<File>,
    pid: libc::pid_t,
    tid: libc::pid_t,
) -> Result<Duration, PlatformError> {
    let read = |file: &mut Option<File>| -> Result<Duration, std::io::Error> {
        let file = match file {
            Some(file) => file,
            None => file.insert(open_schedstat(pid, tid)?),
        };
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0)?;
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|text| text.split_ascii_whitespace().next())
            .and_then(|ns| ns.parse().ok())
            .map(Duration::from_nanos)
            .ok_or_else(|| std::io::Error::other("unexpected schedstat format"))
    };
    match read(file) {
        Ok(time) => Ok(time),
        // A host without scheduler statistics (or without /proc): the whole stub's time
        // is the best there is (exact while the address space has one thread).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => process_cpu_time(pid),
        Err(source) => Err(PlatformError::Ptrace {
            op: "reading schedstat",
            pid: tid,
            source,
        }),
    }
}

/// Pin the calling thread to the CPU it runs on (a stub forked afterwards inherits the pin);
/// returns that CPU.
pub(crate) fn pin_to_current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return None;
    }
    pin(0, cpu as usize);
    Some(cpu as usize)
}

/// Pin host thread `tid` (0: the caller) to `cpu`; best effort, as a pin only saves time.
pub(crate) fn pin(tid: libc::pid_t, cpu: usize) {
    // SAFETY: the cpu_set_t is plain data we own; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// Whether a signal is one the host raises for a faulting instruction.
pub(crate) fn is_fault(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP
    )
}

// SAFETY: glibc (>= 2.35) defines these two symbols with exactly these types: where its rseq
// area sits relative to the thread pointer, and its size. They are only read in the child.
unsafe extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}
pub(crate) const RSEQ_FLAG_UNREGISTER: u32 = 1;
const RSEQ_SIG: u32 = 0x5305_3053;

/// Unregister glibc's rseq area of the calling thread: the host would fault updating it
/// once a stub has unmapped Moat's memory. Returns whether that worked (or there was none).
///
/// # Safety
/// Meant for a freshly forked child about to drop Moat's memory: it makes raw system calls
/// only, but leaves glibc believing rseq is registered.
pub(crate) unsafe fn unregister_rseq() -> bool {
    // SAFETY: reading two glibc constants; the thread pointer read is a plain load of the TCB
    // self-pointer; rseq on integers.
    unsafe {
        if __rseq_size == 0 {
            return true;
        }
        let tp: usize;
        core::arch::asm!("mov %fs:0, {}", out(reg) tp, options(att_syntax, nostack, readonly));
        let area = tp.wrapping_add_signed(__rseq_offset);
        [__rseq_size, 32].iter().any(|&len| {
            libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0
        })
    }
}
