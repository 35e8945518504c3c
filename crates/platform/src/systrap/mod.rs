//! The systrap platform: application system calls and faults arrive as host signals handled
//! inside the stub, which hands them to the kernel through memory the two share. No ptrace.
//!
//! # How a system call travels
//! The stub process runs under [`systrap_filter`]: any system call issued outside the stub's
//! code page is skipped by the host, which raises `SIGSYS` (seccomp `SECCOMP_RET_TRAP`; with
//! Syscall User Dispatch on, the host raises it even before seccomp). The stub's handler runs
//! on the thread's own signal stack in its *slot* — pages of the memory file the kernel also
//! has mapped — so the signal frame the host writes there (general registers, FP/XSAVE state)
//! is directly readable by the kernel. The handler notes the signal and the frame in the
//! slot's header page, flips the header's state word to "trapped" and waits; the kernel's host
//! thread for that task sees the flip, reads the registers out of the frame, serves the call,
//! writes the registers back into the frame and flips the word to "run"; the handler returns
//! through `rt_sigreturn`, which loads the edited frame. Faults (`SIGSEGV`, `SIGBUS`, ...)
//! and the kernel's interrupt ([`INTERRUPT_SIGNAL`], sent with `tgkill`) travel the same way.
//! See [`stub`] for the handler and the header. Hot `mov $nr, %eax; syscall` sites skip the
//! signal: the kernel patches them into jumps to the stub's patched path ([`patch`]), which
//! leaves the same record in the slot, so the kernel side cannot tell the two apart except
//! for the FP state, which a patched trap saves only when the kernel asks.
//!
//! # Waiting
//! Each side waits for the other on the state word: it spins for a while when an answer is
//! likely soon, then sleeps with `FUTEX_WAIT` after setting the word's waiter bit, which tells
//! the other side to `FUTEX_WAKE` it. The kernel's spin budget adapts per thread (twice its
//! last wait, within bounds) and so does the budget it gives the stub (from how long the
//! kernel took to serve the last trap). A host thread and its stub thread are pinned to one
//! CPU, where nothing spins, or apart on two CPUs, spinning, as [`SystrapContext::observe`] decides
//! from what the pair sees (`MOAT_SYSTRAP_PIN=1` or `0` forces either). Nothing spins when
//! only one CPU is usable. [`stats`] counts the answers that came while spinning, the sleeps,
//! and the pins.
//!
//! # Changing the address space
//! The kernel changes a stub's mappings through the stub thread of the calling host thread,
//! which is parked in its handler whenever that host thread is not inside `switch`: it writes
//! a command (a system call and its arguments) into the header and flips the word to
//! "command"; the handler makes the call from the stub's page (the filter allows `mmap` of the
//! memory file, `munmap`, `mprotect`) and reports the result. New threads and copies of the
//! stub process (for fork and exec) are commands too: the handler maps the new slot and
//! `clone`s with exactly the flags the filter allows, and the child starts as a fresh stub
//! thread on its new slot (a copy first unmaps every slot it inherited: those are its
//! parent's threads'). Only the very first stub of a sandbox is forked from Moat, by one
//! long-lived "stub maker" thread: every stub process is that thread's child, so
//! `PR_SET_PDEATHSIG` kills them all when Moat dies, and nothing else does.
//!
//! # Trust
//! The slot's pages are writable by the application (it shares the stub's address space), so
//! everything the kernel reads there is checked before use: the frame's address must lie in
//! the slot's stack, the FP area's too, its sizes and XSAVE header must be sane, a state the
//! protocol does not expect is an error, a thread id or process id a command returns is
//! checked to be a thread of this stub or a child of Moat in the stubs' session before the
//! kernel signals or waits for it. Garbage becomes a [`PlatformError`] (the task or the
//! sandbox ends with a message), never a panic or an action on another host process.
//!
//! # Host system calls the kernel side makes
//! (for the kernel process's own seccomp allowlist): `futex` (`FUTEX_WAIT` with a timeout and
//! `FUTEX_WAKE`, on shared words of the memory file's mapping), `tgkill` (the interrupt
//! signal, and signal 0 to check a stub thread is alive), `waitid` (`WNOHANG|WNOWAIT`, to see a
//! stub process end without reaping it), `wait4` (reaping), `kill` (`SIGKILL` to a stub),
//! `getsid`, `getpid`, `gettid`, `fork` (in the stub maker thread only; the child then makes
//! the calls of [`factory`]), `clock_gettime`, `sched_getcpu`, `sched_getaffinity` and
//! `sched_setaffinity` (pinning), `getrusage(RUSAGE_THREAD)` (adaptive pinning, once per 64
//! round trips), `prctl(PR_SET_SYSCALL_USER_DISPATCH, OFF)` (once, to learn
//! whether the host has it), `openat`/`read` of `/proc/PID/task/TID/schedstat` (CPU time, as
//! ptrace does). The time-stamp counter (`rdtsc`) times the spins.
//!
//! **A seccomp filter on Moat itself** is inherited by the first stub, forked from Moat, and
//! by every copy of it; filters stack and the strictest action wins, so a kernel allowlist
//! that kills unknown calls would kill a stub at the application's first `openat` (seccomp's
//! `KILL` beats the stub filter's `TRAP`), where ptrace's `SYSEMU` skips application calls
//! before any filter runs. Either the first stub is forked before Moat confines itself (a
//! stub made early, that later address spaces are copies of), or Moat's own filter must
//! return `SECCOMP_RET_TRAP` (or allow) for what the stub filter traps, and allow the stub's
//! own calls (those of [`factory`] and of `stub.rs`).

mod factory;
pub mod patch;
mod stub;

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use moat_abi::Regs;
use moat_memory::{FileRange, MemoryFile};

use crate::host::{
    errno, gettid, is_fault, pin as pin_thread, pin_to_current_cpu, process_cpu_time,
};
use crate::{
    AddressSpace, AddressSpaceSeed, ArgIs, Context, HostSyscall, Interrupter, NewAddressSpace,
    Platform, PlatformError, Prot, ThreadSeed, Trap, STUB_AREA_BASE, STUB_BASE, STUB_LEN,
    STUB_SLOTS, STUB_SLOT_SIZE,
};
use stub::{
    BATCH_MAX, BATCH_PROTECT, CMD_CLONE_THREAD, CMD_FORK, CMD_XSAVE, F_DISPATCH, F_FSGSBASE,
    F_PATCH, H_BATCH, H_BATCH_ERR, H_BATCH_N, H_CMD, H_FLAGS, H_FSBASE, H_GSBASE, H_RESULT,
    H_SIGNO, H_SLEEPS, H_SPIN, H_SPIN_OK, H_STATE, H_UC, K_CMD, K_RUN, PATCH_FP, PATCH_FP_ROOM,
    PATCH_UC, STACK_OFF, ST_DONE, ST_TRAP, WAITER,
};

#[cfg(doc)]
use crate::seccomp::systrap_filter;

/// The signal that kicks a stub thread out of application code; its handler reports
/// [`Trap::Interrupted`]. `SIGUSR2` for the reasons the ptrace platform gives (not a fault,
/// not job control, merged when pending, sent by nobody else).
pub const INTERRUPT_SIGNAL: i32 = libc::SIGUSR2;

/// How long a futex sleep lasts before the kernel side checks the stub is still alive.
const LIVENESS_PERIOD: Duration = Duration::from_millis(50);
/// How long a stub thread may take to answer an interrupt or finish a command before the
/// kernel gives up on it (kills the stub): the application can block host signals in its
/// stub threads or scribble over the protocol; it then loses its process, not the sandbox.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// Bounds of the adaptive spin budgets, in nanoseconds; the stub's shortest spin is longer,
/// as a sleeping stub costs the kernel a `FUTEX_WAKE` and the stub a wake-up (15 µs or more
/// across CPUs here) while the kernel usually answers within a few microseconds.
const MIN_SPIN_NS: u64 = 1_000;
const MIN_STUB_SPIN_NS: u64 = 5_000;
/// Adaptive pinning (see [`SystrapContext::observe`]): a window is this many round trips; a
/// pair keeps its way of waiting for between these many windows before it tries the other.
const PIN_WINDOW: u32 = 64;
const MIN_HOLD: u32 = 16;
const MAX_HOLD: u32 = 128;
const DEFAULT_MAX_SPIN_NS: u64 = 50_000;

/// `ucontext` layout (x86-64): where the general registers start, the FP state pointer, the
/// signal mask, and how many bytes of it the kernel reads or writes.
const UC_GREGS: u64 = 40;
const UC_FPREGS: u64 = UC_GREGS + 23 * 8;
const UC_SIGMASK: u64 = 296;
const UC_LEN: u64 = UC_SIGMASK + 8;
/// `_fpx_sw_bytes` in the FXSAVE area, and the magic words of a signal frame's XSAVE area.
const FP_SW_BYTES: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const XSAVE_HEADER: usize = 512;
const XSAVE_MIN: usize = XSAVE_HEADER + 64;

/// User segment selectors of 64-bit code (the only mode stubs run applications in).
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;
/// The lowest non-canonical address: FS and GS bases must stay below.
const CANONICAL_END: u64 = 1 << 47;

/// Counters of how waits ended, summed over every thread since Moat started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystrapStats {
    /// Traps and command results the kernel received.
    pub answers: u64,
    /// Kernel waits that ended while spinning.
    pub kernel_spins: u64,
    /// Kernel waits that went to sleep on the futex.
    pub kernel_sleeps: u64,
    /// Stub waits that ended without sleeping: the answer was there at once or came while
    /// spinning (as the stubs counted them; added up when each thread ends).
    pub stub_spins: u64,
    /// Stub waits that slept on the futex (idem).
    pub stub_sleeps: u64,
    /// Times a host thread and its stub thread were pinned to one CPU, or set apart again
    /// (adaptive pinning, see the module's documentation).
    pub pinned: u64,
    pub unpinned: u64,
    /// System calls that came through a patched site (no signal).
    pub patched: u64,
    /// Mappings and protections deferred to the stub thread's next hand-over instead of a
    /// command of their own (see [`SystrapAddressSpace`]'s `map` and `protect`).
    pub deferred: u64,
}

static ANSWERS: AtomicU64 = AtomicU64::new(0);
static KERNEL_SPINS: AtomicU64 = AtomicU64::new(0);
static KERNEL_SLEEPS: AtomicU64 = AtomicU64::new(0);
static STUB_SPINS: AtomicU64 = AtomicU64::new(0);
static STUB_SLEEPS: AtomicU64 = AtomicU64::new(0);
static PINNED: AtomicU64 = AtomicU64::new(0);
static UNPINNED: AtomicU64 = AtomicU64::new(0);
static PATCHED: AtomicU64 = AtomicU64::new(0);
static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// The wait counters so far (see [`SystrapStats`]).
pub fn stats() -> SystrapStats {
    SystrapStats {
        answers: ANSWERS.load(Ordering::Relaxed),
        kernel_spins: KERNEL_SPINS.load(Ordering::Relaxed),
        kernel_sleeps: KERNEL_SLEEPS.load(Ordering::Relaxed),
        stub_spins: STUB_SPINS.load(Ordering::Relaxed),
        stub_sleeps: STUB_SLEEPS.load(Ordering::Relaxed),
        pinned: PINNED.load(Ordering::Relaxed),
        unpinned: UNPINNED.load(Ordering::Relaxed),
        patched: PATCHED.load(Ordering::Relaxed),
        deferred: DEFERRED.load(Ordering::Relaxed),
    }
}

/// Whether a host thread and its stub thread share one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pinning {
    /// Each pair decides from what it sees (see [`Channel::observe`]).
    Adaptive,
    /// Always on one CPU, never spinning (as ptrace does).
    Always,
    /// Never pinned: always free to spin on two CPUs.
    Never,
}

/// How the platform waits and traps, fixed when it is created.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    pinning: Pinning,
    /// The CPUs Moat may use (its affinity when the platform was made): a pair that stops
    /// being pinned gets them back.
    cpus: [u64; 16],
    /// Turn on Syscall User Dispatch in stub threads (seccomp stays the boundary).
    dispatch: bool,
    /// The longest spin, in time-stamp counter ticks; 0 for none.
    max_spin: u64,
    /// Time-stamp counter ticks per microsecond, and per round of the stub's spin loop.
    ticks_per_us: u64,
    round_ticks: u64,
    /// The host lets user code use `rdfsbase` and friends.
    fsgsbase: bool,
    /// Patch `mov $nr, %eax; syscall` sites into jumps to the stub (see [`patch`]).
    patch: bool,
    /// The XSAVE area's size and the components XCR0 enables (a patched trap's FP state is
    /// saved by the stub in the layout a signal frame has).
    xsave_size: u32,
    xcr0: u64,
}

impl Tuning {
    fn from_env() -> Tuning {
        let flag = |name: &str| std::env::var(name).ok().map(|v| v != "0" && !v.is_empty());
        let mut cpus = [0u64; 16];
        // SAFETY: sched_getaffinity writes at most `size_of(cpus)` bytes into it.
        let got = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                std::mem::size_of_val(&cpus),
                cpus.as_mut_ptr(),
            )
        };
        let count = if got > 0 {
            cpus.iter().map(|w| w.count_ones() as usize).sum()
        } else {
            1
        };
        let pinning = match flag("MOAT_SYSTRAP_PIN") {
            _ if count < 2 => Pinning::Always,
            Some(true) => Pinning::Always,
            Some(false) => Pinning::Never,
            None => Pinning::Adaptive,
        };
        let dispatch = flag("MOAT_SYSTRAP_DISPATCH").unwrap_or(true) && dispatch_available();
        let max_spin_ns = std::env::var("MOAT_SYSTRAP_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_MAX_SPIN_NS, |us| us.saturating_mul(1000));
        let max_spin_ns = if pinning == Pinning::Always {
            0
        } else {
            max_spin_ns
        };
        let (ticks_per_us, round_ticks) = calibrate();
        // SAFETY: getauxval has no preconditions.
        let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
        let fsgsbase = hwcap2 & 2 != 0;
        let (xsave_size, xcr0) = xsave_layout();
        let patch = flag("MOAT_SYSTRAP_PATCH").unwrap_or(PATCH_BY_DEFAULT) && patching_supported();
        Tuning {
            pinning,
            cpus,
            dispatch,
            max_spin: max_spin_ns.saturating_mul(ticks_per_us) / 1000,
            ticks_per_us,
            round_ticks,
            fsgsbase,
            patch,
            xsave_size,
            xcr0,
        }
    }

    /// Header flags for a new slot.
    fn flags(&self) -> u64 {
        let mut flags = 0;
        if self.fsgsbase {
            flags |= F_FSGSBASE;
        }
        if self.dispatch {
            flags |= F_DISPATCH;
        }
        if self.patch {
            flags |= F_PATCH;
        }
        flags
    }

    /// The stub's spin budget (ticks) in rounds of its loop.
    fn stub_rounds(&self, ticks: u64) -> u64 {
        ticks / self.round_ticks.max(1)
    }

    /// `ns` in ticks.
    fn ticks(&self, ns: u64) -> u64 {
        ns.saturating_mul(self.ticks_per_us) / 1000
    }

    /// The next CPU after `cpu` (round) that Moat may use, if there is another.
    fn other_cpu(&self, cpu: usize) -> Option<usize> {
        let bits = self.cpus.len() * 64;
        (1..bits)
            .map(|i| (cpu + i) % bits)
            .find(|&c| self.cpus[c / 64] & (1 << (c % 64)) != 0)
    }

    /// Let host thread `tid` (0: the caller) run on every CPU Moat may use.
    fn unpin(&self, tid: libc::pid_t) {
        // SAFETY: sched_setaffinity only reads the mask we own.
        unsafe {
            libc::syscall(
                libc::SYS_sched_setaffinity,
                tid,
                std::mem::size_of_val(&self.cpus),
                self.cpus.as_ptr(),
            );
        }
    }
}

/// Whether sites are patched unless `MOAT_SYSTRAP_PATCH` says otherwise.
const PATCH_BY_DEFAULT: bool = true;

/// The patched path needs `rdgsbase` (the host enabled `FSGSBASE`), `lahf`/`sahf` in 64-bit
/// mode (all but the first x86-64 processors) and room for the XSAVE area in the slot.
fn patching_supported() -> bool {
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    let lahf = core::arch::x86_64::__cpuid(0x8000_0001).ecx & 1 != 0;
    let (size, _) = xsave_layout();
    hwcap2 & 2 != 0 && lahf && size != 0 && u64::from(size) + 4 <= PATCH_FP_ROOM
}

/// The size of the XSAVE area for the components XCR0 enables, and XCR0 (0, 0 without
/// XSAVE).
fn xsave_layout() -> (u32, u64) {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    const OSXSAVE: u32 = 1 << 27;
    if leaf1.ecx & OSXSAVE == 0 {
        return (0, 0);
    }
    // Leaf 0xd exists when the OS enabled XSAVE (OSXSAVE above).
    let leaf_d = core::arch::x86_64::__cpuid_count(0xd, 0);
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv(0) reads XCR0, allowed in user mode when OSXSAVE is set.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (leaf_d.ebx, u64::from(hi) << 32 | u64::from(lo))
}

/// The calling host thread's voluntary context switches so far (`getrusage(RUSAGE_THREAD)`).
fn voluntary_switches() -> u64 {
    // SAFETY: getrusage fills the rusage struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &raw mut usage) != 0 {
            return 0;
        }
        usage.ru_nvcsw as u64
    }
}

/// The time-stamp counter: the clock of the spin budgets (a few cycles to read, where the
/// system clock costs a vDSO call).
fn ticks() -> u64 {
    // SAFETY: rdtsc only reads the counter (the host lets user code read it on x86-64).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Time-stamp counter ticks per microsecond, and ticks per round of a `pause` spin loop
/// (measured once: best of three short runs).
fn calibrate() -> (u64, u64) {
    static CALIBRATION: OnceLock<(u64, u64)> = OnceLock::new();
    *CALIBRATION.get_or_init(|| {
        const ROUNDS: u64 = 2_000;
        let mut best = (0, u64::MAX);
        for _ in 0..3 {
            let (start, t0) = (Instant::now(), ticks());
            for _ in 0..ROUNDS {
                std::hint::spin_loop();
            }
            let (elapsed, t1) = (start.elapsed(), ticks());
            let ns = (elapsed.as_nanos() as u64).max(1);
            let spent = t1.wrapping_sub(t0);
            if spent / ROUNDS < best.1 {
                best = (spent.saturating_mul(1000) / ns, spent / ROUNDS);
            }
        }
        (best.0.max(1), best.1.max(1))
    })
}

/// Whether this host has Syscall User Dispatch (Linux 5.11): turning it off is harmless and
/// fails with `EINVAL` where the option is unknown.
/// Whether the host offers Syscall User Dispatch (Linux 5.11+).
pub fn dispatch_available() -> bool {
    // SAFETY: prctl on integers; PR_SYS_DISPATCH_OFF changes nothing when dispatch is off.
    unsafe {
        libc::prctl(
            crate::seccomp::PR_SET_SYSCALL_USER_DISPATCH as i32,
            0,
            0,
            0,
            0,
        ) == 0
    }
}

/// The systrap platform.
#[derive(Debug)]
pub struct SystrapPlatform {
    tuning: Tuning,
}

impl Default for SystrapPlatform {
    fn default() -> Self {
        SystrapPlatform::new()
    }
}

impl SystrapPlatform {
    /// The platform, tuned from the environment: `MOAT_SYSTRAP_PIN=1` pins each host thread
    /// with its stub thread and never spins, `MOAT_SYSTRAP_SPIN_US=N` bounds the spins (0: no
    /// spinning), `MOAT_SYSTRAP_DISPATCH=0` leaves Syscall User Dispatch off (seccomp alone
    /// traps), `MOAT_SYSTRAP_PATCH=0` patches no system call site (see [`patch`]).
    pub fn new() -> SystrapPlatform {
        SystrapPlatform {
            tuning: Tuning::from_env(),
        }
    }

    fn spawn(
        &self,
        memory: &Arc<MemoryFile>,
    ) -> Result<(SystrapAddressSpace, SystrapContext), PlatformError> {
        let range = memory
            .allocate(STUB_SLOT_SIZE)
            .map_err(|_| PlatformError::TooManyThreads)?;
        init_header(memory, range.offset, &self.tuning);
        let pid = match factory::make_stub(memory.fd(), range.offset) {
            Ok(pid) => pid,
            Err(e) => {
                memory.free(range);
                return Err(e);
            }
        };
        // From here on the stub's drop kills and reaps the process if anything fails.
        let stub = Arc::new(Stub::new(pid, pid, memory.clone(), self.tuning, range));
        let context = SystrapContext::start(&stub, 0, pid)?;
        Ok((SystrapAddressSpace { stub }, context))
    }
}

impl Platform for SystrapPlatform {
    fn name(&self) -> &'static str {
        "systrap"
    }

    fn host_syscalls(&self) -> &'static [HostSyscall] {
        HOST_SYSCALLS
    }

    fn new_address_space(
        &self,
        memory: &Arc<MemoryFile>,
    ) -> Result<NewAddressSpace, PlatformError> {
        let (aspace, context) = self.spawn(memory)?;
        Ok((Box::new(aspace), Box::new(context)))
    }
}

/// The systrap platform's section of the kernel's seccomp allowlist: what driving stubs
/// through shared memory costs in host calls, from the kernel (the task threads and the stub
/// maker) and from the stubs, which inherit the kernel's filter under their own.
const HOST_SYSCALLS: &[HostSyscall] = &[
    // Waiting on and waking the state words of the slots.
    HostSyscall::any(libc::SYS_futex),
    // Interrupts, existence checks and ends of stub threads and processes.
    HostSyscall::when(
        libc::SYS_tgkill,
        &[
            &[ArgIs::int(2, INTERRUPT_SIGNAL as u32)],
            &[ArgIs::int(2, libc::SIGKILL as u32)],
            &[ArgIs::int(2, 0)],
        ],
    ),
    HostSyscall::when(
        libc::SYS_kill,
        &[&[ArgIs::int(1, libc::SIGKILL as u32)], &[ArgIs::int(1, 0)]],
    ),
    HostSyscall::any(libc::SYS_waitid),
    HostSyscall::any(libc::SYS_wait4),
    HostSyscall::any(libc::SYS_getsid),
    HostSyscall::any(libc::SYS_getppid),
    // Pinning a task's host thread and its stub thread (adaptive: the thread's own voluntary
    // context switches tell whether it blocks).
    HostSyscall::when(
        libc::SYS_getrusage,
        &[&[ArgIs::int(0, libc::RUSAGE_THREAD as u32)]],
    ),
    HostSyscall::any(libc::SYS_getcpu),
    HostSyscall::any(libc::SYS_sched_getaffinity),
    HostSyscall::any(libc::SYS_sched_setaffinity),
    // CPU time: a stub process's CPU clock, a stub thread's schedstat (read-only opens
    // through the kernel's procfs fd).
    HostSyscall::any(libc::SYS_clock_gettime),
    HostSyscall::when(
        libc::SYS_openat,
        &[&[ArgIs::masked(
            2,
            (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) as u64,
            libc::O_RDONLY as u64,
        )]],
    ),
    // The stub maker forks the first stub (glibc's fork); inside stubs: a thread, a copy.
    HostSyscall::when(
        libc::SYS_clone,
        &[
            &[ArgIs::eq(
                0,
                (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64,
            )],
            &[ArgIs::eq(0, crate::seccomp::STUB_CLONE_FLAGS)],
            &[ArgIs::eq(0, crate::seccomp::STUB_FORK_FLAGS)],
        ],
    ),
    // A new stub's set-up before its own filter.
    HostSyscall::any(libc::SYS_setsid),
    HostSyscall::any(libc::SYS_dup2),
    HostSyscall::any(libc::SYS_close_range),
    HostSyscall::any(libc::SYS_rt_sigaction),
    HostSyscall::any(libc::SYS_seccomp),
    HostSyscall::when(
        libc::SYS_rseq,
        &[&[ArgIs::int(2, crate::host::RSEQ_FLAG_UNREGISTER)]],
    ),
    HostSyscall::when(
        libc::SYS_prctl,
        &[
            &[ArgIs::int(0, libc::PR_SET_PDEATHSIG as u32)],
            &[ArgIs::int(0, libc::PR_SET_NO_NEW_PRIVS as u32)],
            &[ArgIs::int(0, crate::seccomp::PR_SET_SYSCALL_USER_DISPATCH)],
        ],
    ),
    // The stub's own calls: thread start (its signal stack, the state word to clear at its
    // end, FS/GS bases without FSGSBASE), waits, returns from its handler, ends.
    HostSyscall::any(libc::SYS_sigaltstack),
    HostSyscall::any(libc::SYS_set_tid_address),
    HostSyscall::any(libc::SYS_arch_prctl),
    HostSyscall::any(libc::SYS_pause),
    HostSyscall::any(libc::SYS_exit),
];

/// Zero a slot's header and set what the stub reads before its first trap. The new thread
/// does not spin (`H_SPIN` 0): it may wait a while for its host thread, which needs a CPU.
fn init_header(memory: &MemoryFile, offset: u64, tuning: &Tuning) {
    memory.zero(offset, STACK_OFF);
    memory.write(offset + H_FLAGS, &tuning.flags().to_ne_bytes());
    memory
        .atomic_u32(offset + H_STATE)
        .store(K_RUN, Ordering::SeqCst);
}

/// A stub process's life, shared by everything that signals or waits for it.
struct Process {
    pid: libc::pid_t,
    /// Known dead (killed by us, or seen ended): nothing is sent to it any more.
    dead: AtomicBool,
}

impl Process {
    /// Kill the whole process (it is reaped when its [`Stub`] goes).
    fn kill(&self) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            // SAFETY: kill on our own child, which is not reaped before the Stub drops.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// `Err` if the process has ended (it stays unreaped: a zombie until the [`Stub`] goes).
    fn check(&self) -> Result<(), PlatformError> {
        // SAFETY: siginfo_t is plain data that waitid fills; the pid is our unreaped child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; WNOWAIT leaves the child waitable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &raw mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
            )
        };
        if r < 0 {
            let err = errno();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            self.dead.store(true, Ordering::SeqCst);
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: format!("cannot be waited for ({err})"),
            });
        }
        // SAFETY: waitid filled the CLD_* member of the union (or left it zero).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(());
        }
        self.dead.store(true, Ordering::SeqCst);
        let how = match info.si_code {
            libc::CLD_EXITED => format!("exited with status {status}"),
            _ if status == libc::SIGSYS => {
                "killed by signal 31 (SIGSYS: its seccomp filter refused a system call)".to_string()
            }
            _ => format!("killed by signal {status}"),
        };
        Err(PlatformError::StubDied { pid: self.pid, how })
    }
}

/// One stub process: shared by its address space, its contexts and its seeds; killed and
/// reaped when the last of them goes, and then its slots' memory is freed.
struct Stub {
    proc: Arc<Process>,
    /// The stubs' session (the first stub's pid): copies are checked to be in it.
    sid: libc::pid_t,
    memory: Arc<MemoryFile>,
    tuning: Tuning,
    slots: Mutex<Slots>,
    /// The channel of the stub thread each host thread (by `gettid`) drives.
    callers: Mutex<HashMap<libc::pid_t, Arc<Channel>>>,
    /// Contexts and seeds alive: the last context to go kills the process instead of asking
    /// its thread to exit.
    threads: AtomicUsize,
}

/// The stub area's slots: the memory-file range of each slot ever used, by index, whether
/// the stub has it mapped (a new thread there need not map it again: a fresh mapping would
/// cost a TLB shoot-down of the whole stub process), and the indices free for a new thread
/// (their old thread is known to have ended).
struct Slots {
    ranges: Vec<FileRange>,
    mapped: Vec<bool>,
    free: Vec<usize>,
}

impl Stub {
    fn new(
        pid: libc::pid_t,
        sid: libc::pid_t,
        memory: Arc<MemoryFile>,
        tuning: Tuning,
        slot0: FileRange,
    ) -> Stub {
        Stub {
            proc: Arc::new(Process {
                pid,
                dead: AtomicBool::new(false),
            }),
            sid,
            memory,
            tuning,
            slots: Mutex::new(Slots {
                ranges: vec![slot0],
                mapped: vec![true],
                free: Vec::new(),
            }),
            callers: Mutex::new(HashMap::new()),
            threads: AtomicUsize::new(1),
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.proc.pid
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn callers(&self) -> MutexGuard<'_, HashMap<libc::pid_t, Arc<Channel>>> {
        self.callers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel of the calling host thread's stub thread.
    fn caller(&self) -> Result<Arc<Channel>, PlatformError> {
        self.callers()
            .get(&gettid())
            .cloned()
            .ok_or(PlatformError::NotAttached)
    }

    /// A slot for a new thread, its header initialised: (index, memory-file range).
    fn take_slot(&self) -> Result<(usize, FileRange, bool), PlatformError> {
        let mut slots = self.slots();
        let (index, range) = match slots.free.pop() {
            Some(index) => (index, slots.ranges[index]),
            None => {
                if slots.ranges.len() as u64 >= STUB_SLOTS {
                    return Err(PlatformError::TooManyThreads);
                }
                let range = self
                    .memory
                    .allocate(STUB_SLOT_SIZE)
                    .map_err(|_| PlatformError::TooManyThreads)?;
                slots.ranges.push(range);
                slots.mapped.push(false);
                (slots.ranges.len() - 1, range)
            }
        };
        init_header(&self.memory, range.offset, &self.tuning);
        let mapped = slots.mapped[index];
        Ok((index, range, mapped))
    }

    /// Give back a slot whose thread is known to be gone (or never started), and say whether
    /// the stub has it mapped (a thread started there).
    fn release_slot(&self, index: usize, mapped: bool) {
        let mut slots = self.slots();
        slots.mapped[index] = mapped;
        slots.free.push(index);
    }

    /// A channel to slot `index`, whose thread is `tid`.
    fn channel(self: &Arc<Self>, index: usize, tid: libc::pid_t) -> Channel {
        let range = self.slots().ranges[index];
        let thread = Arc::new(StubThread {
            proc: self.proc.clone(),
            tid,
            life: Mutex::new(Life::Running),
            interrupts: AtomicU64::new(0),
        });
        Channel {
            memory: self.memory.clone(),
            index,
            addr: STUB_AREA_BASE + index as u64 * STUB_SLOT_SIZE,
            offset: range.offset,
            thread,
            spin: AtomicU64::new(self.tuning.max_spin),
            stub_spin: AtomicU64::new(self.tuning.max_spin),
            max_spin: AtomicU64::new(self.tuning.max_spin),
            pinned: AtomicBool::new(false),
            sleeps: AtomicU64::new(0),
            tuning: self.tuning,
            batch: Mutex::new(Vec::new()),
            batch_out: AtomicBool::new(false),
            batched: AtomicBool::new(false),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // Every context and seed is gone: kill what is left and reap it (it is the stub
        // maker's child; any thread of Moat may wait for it).
        // SAFETY: kill and waitpid on our own unreaped child; the status is discarded.
        unsafe {
            libc::kill(self.proc.pid, libc::SIGKILL);
            while libc::waitpid(self.proc.pid, std::ptr::null_mut(), libc::__WALL) < 0
                && errno().raw_os_error() == Some(libc::EINTR)
            {}
        }
        // The process and its mappings are gone: the slots' pages may be reused.
        let slots = std::mem::replace(
            &mut *self.slots(),
            Slots {
                ranges: Vec::new(),
                mapped: Vec::new(),
                free: Vec::new(),
            },
        );
        for range in slots.ranges {
            self.memory.free(range);
        }
    }
}

/// What may still be done with a stub thread's tid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Alive as far as we know: it may be signalled.
    Running,
    /// Being ended or ended: not to be signalled any more (its tid may be reused).
    Exiting,
}

/// One stub thread as other host threads see it: the handle that interrupts it.
struct StubThread {
    proc: Arc<Process>,
    tid: libc::pid_t,
    life: Mutex<Life>,
    /// Interrupts sent so far (a stub that ignores them is given up after a while).
    interrupts: AtomicU64,
}

impl StubThread {
    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn died(&self, how: impl Into<String>) -> PlatformError {
        PlatformError::StubDied {
            pid: self.tid,
            how: how.into(),
        }
    }

    fn protocol(&self, what: impl Into<String>) -> PlatformError {
        PlatformError::Protocol {
            pid: self.proc.pid,
            tid: self.tid,
            what: what.into(),
        }
    }

    /// `tgkill(pid, tid, sig)`: the host checks the thread belongs to our stub process.
    fn tgkill(&self, sig: i32) -> bool {
        // SAFETY: tgkill on integers; it fails (ESRCH) for a tid not in the stub's group.
        unsafe { libc::syscall(libc::SYS_tgkill, self.proc.pid, self.tid, sig) == 0 }
    }

    /// `Err` if the thread or its whole process has ended.
    fn check_alive(&self) -> Result<(), PlatformError> {
        self.proc.check()?;
        if !self.tgkill(0) && errno().raw_os_error() == Some(libc::ESRCH) {
            return Err(self.died("the thread has ended"));
        }
        Ok(())
    }
}

impl Interrupter for StubThread {
    fn interrupt(&self) {
        // Holding the lock keeps the thread from being marked exiting meanwhile; tgkill
        // refuses a tid that left the stub's thread group.
        let life = self.life();
        if *life == Life::Running && !self.proc.dead.load(Ordering::SeqCst) {
            self.interrupts.fetch_add(1, Ordering::SeqCst);
            self.tgkill(INTERRUPT_SIGNAL);
        }
    }
}

/// What the kernel waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Await {
    /// Application code runs: it may run for ever, but must answer an interrupt.
    App,
    /// A command or a thread's start: must be answered within [`ANSWER_LIMIT`].
    Answer,
}

/// The kernel's end of one stub thread's slot.
struct Channel {
    memory: Arc<MemoryFile>,
    index: usize,
    /// Where the slot is in the stub.
    addr: u64,
    /// Where the slot is in the memory file.
    offset: u64,
    thread: Arc<StubThread>,
    /// The kernel's spin budget (ticks), adapted per wait.
    spin: AtomicU64,
    /// The stub's spin budget (ticks), adapted from how long the kernel takes to answer.
    stub_spin: AtomicU64,
    /// The longest spin now: the tuning's, or 0 while pinned.
    max_spin: AtomicU64,
    /// Whether the host thread and the stub thread are pinned to one CPU.
    pinned: AtomicBool,
    /// Futex sleeps of the kernel side in `wait` (adaptive pinning tells them from the host
    /// thread's other voluntary context switches: blocking in the kernel).
    sleeps: AtomicU64,
    tuning: Tuning,
    /// Mappings deferred to the next hand-over (address, length, protection, offset): see
    /// [`SystrapAddressSpace::map`].
    batch: Mutex<Vec<[u64; 4]>>,
    /// A batch went with the last hand-over (its failures are looked at after the answer).
    batch_out: AtomicBool,
    /// `batch` is not empty: a round trip with nothing deferred touches no lock (only the
    /// host thread that drives the channel defers and posts, so `Relaxed` suffices).
    batched: AtomicBool,
}

impl Channel {
    fn state(&self) -> &AtomicU32 {
        self.memory.atomic_u32(self.offset + H_STATE)
    }

    fn read_u64(&self, at: u64) -> u64 {
        let mut b = [0u8; 8];
        self.memory.read(self.offset + at, &mut b);
        u64::from_ne_bytes(b)
    }

    fn write_u64(&self, at: u64, v: u64) {
        self.memory.write(self.offset + at, &v.to_ne_bytes());
    }

    /// Hand the turn to the stub: publish `value`, waking the stub if it sleeps. The
    /// deferred mappings go with it: the stub makes them before anything else.
    fn post(&self, value: u32) {
        self.write_batch();
        let old = self.state().swap(value, Ordering::SeqCst);
        if old & WAITER != 0 {
            futex_wake(self.state());
        }
    }

    /// Put the deferred mappings in the header for the stub to make at the next hand-over.
    fn write_batch(&self) {
        if !self.batched.load(Ordering::Relaxed) {
            return;
        }
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        self.batched.store(false, Ordering::Relaxed);
        if batch.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(batch.len() * 32);
        for entry in batch.iter() {
            for v in entry {
                buf.extend_from_slice(&v.to_ne_bytes());
            }
        }
        self.memory.write(self.offset + H_BATCH, &buf);
        self.write_u64(H_BATCH_N, batch.len() as u64);
        batch.clear();
        self.batch_out.store(true, Ordering::Relaxed);
    }

    /// Defer a mapping or protection to the next hand-over; `false` if the batch is full.
    fn defer_map(&self, entry: [u64; 4]) -> bool {
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        if batch.len() as u64 >= BATCH_MAX {
            return false;
        }
        batch.push(entry);
        self.batched.store(true, Ordering::Relaxed);
        true
    }

    /// After an answer: log a deferred mapping the stub could not make (the range stays as
    /// it was, and an access there faults and maps it again).
    fn check_batch(&self) {
        if !self.batch_out.load(Ordering::Relaxed) {
            return;
        }
        self.batch_out.store(false, Ordering::Relaxed);
        let r = self.read_u64(H_BATCH_ERR) as i64;
        if r != 0 {
            self.write_u64(H_BATCH_ERR, 0);
            tracing::warn!(
                "a deferred mapping failed in stub thread {}: {r}",
                self.thread.tid
            );
        }
    }

    /// Wait for the stub's turn; returns what it published (`ST_TRAP`, `ST_DONE`), or 0 if
    /// the thread ended (the host zeroes the word at a thread's end).
    fn wait(&self, what: Await) -> Result<u32, PlatformError> {
        let word = self.state();
        let tuning = &self.tuning;
        let started = ticks();
        let answered = |s: u32| {
            ANSWERS.fetch_add(1, Ordering::Relaxed);
            self.check_batch();
            let took = ticks().wrapping_sub(started);
            let max = self.max_spin.load(Ordering::Relaxed);
            let next = next_budget(took, tuning.ticks(MIN_SPIN_NS), max);
            self.spin.store(next, Ordering::Relaxed);
            s & 0xff
        };
        let budget = self.spin.load(Ordering::Relaxed);
        if budget > 0 {
            let mut rounds = 0u32;
            loop {
                let s = word.load(Ordering::Acquire);
                if s & K_RUN == 0 {
                    KERNEL_SPINS.fetch_add(1, Ordering::Relaxed);
                    return Ok(answered(s));
                }
                std::hint::spin_loop();
                rounds = rounds.wrapping_add(1);
                if rounds % 16 == 0 && ticks().wrapping_sub(started) >= budget {
                    break;
                }
            }
        }
        let interrupts = self.thread.interrupts.load(Ordering::SeqCst);
        let slept = Instant::now();
        let mut kicked: Option<Instant> = None;
        loop {
            let s = word.load(Ordering::Acquire);
            if s & K_RUN == 0 {
                return Ok(answered(s));
            }
            if s & WAITER == 0
                && word
                    .compare_exchange(s, s | WAITER, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            KERNEL_SLEEPS.fetch_add(1, Ordering::Relaxed);
            self.sleeps.fetch_add(1, Ordering::Relaxed);
            if futex_wait(word, s | WAITER, LIVENESS_PERIOD) {
                continue;
            }
            // A quiet period: is the stub still there, and still answering?
            self.thread.check_alive()?;
            let overdue = match what {
                Await::Answer => slept.elapsed() >= ANSWER_LIMIT,
                Await::App => {
                    self.thread.interrupts.load(Ordering::SeqCst) != interrupts
                        && kicked.get_or_insert_with(Instant::now).elapsed() >= ANSWER_LIMIT
                }
            };
            if overdue {
                self.thread.proc.kill();
                return Err(self.thread.protocol(match what {
                    Await::Answer => "no answer from the stub thread (killed)",
                    Await::App => "the stub thread ignores interrupts (killed)",
                }));
            }
        }
    }

    /// Run a command in the parked stub thread and return the raw result.
    fn command(&self, cmd: u64, args: [u64; 6]) -> Result<i64, PlatformError> {
        if self.thread.proc.dead.load(Ordering::SeqCst) {
            return Err(self.thread.died("the stub was killed"));
        }
        let mut buf = [0u8; 56];
        buf[..8].copy_from_slice(&cmd.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            buf[8 + 8 * i..16 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        self.memory.write(self.offset + H_CMD, &buf);
        self.post(K_CMD);
        match self.wait(Await::Answer)? {
            ST_DONE => Ok(self.read_u64(H_RESULT) as i64),
            0 => Err(self.thread.died("the thread ended during a command")),
            s => Err(self
                .thread
                .protocol(format!("answered a command with state {s:#x}"))),
        }
    }

    /// A checked system call through the stub thread.
    fn syscall(&self, op: &'static str, nr: i64, args: [u64; 6]) -> Result<i64, PlatformError> {
        let r = self.command(nr as u64, args)?;
        if (-4095..0).contains(&r) {
            return Err(PlatformError::Injected {
                op,
                errno: -r as i32,
            });
        }
        Ok(r)
    }

    /// Let the stub spin about as long as the kernel took to answer, within bounds.
    fn adapt_stub_spin(&self, served: u64) {
        let tuning = &self.tuning;
        let least = tuning.ticks(MIN_STUB_SPIN_NS);
        let next = next_budget(served, least, self.max_spin.load(Ordering::Relaxed));
        if next != self.stub_spin.swap(next, Ordering::Relaxed) {
            self.write_u64(H_SPIN, tuning.stub_rounds(next));
        }
    }

    /// Pin the calling host thread and the stub thread to the CPU the host thread runs on
    /// (and stop spinning), or apart on two (and spin again; with `Pinning::Never`, free on
    /// Moat's CPUs).
    fn set_pinned(&self, pin: bool) {
        let tid = self.thread.tid;
        if pin {
            if let Some(cpu) = pin_to_current_cpu() {
                pin_thread(tid, cpu);
            }
            self.max_spin.store(0, Ordering::Relaxed);
            self.spin.store(0, Ordering::Relaxed);
            self.stub_spin.store(0, Ordering::Relaxed);
            self.write_u64(H_SPIN, 0);
        } else {
            // Adaptive pairs go apart explicitly: freed together, the two would go on sharing
            // one CPU (spinning!) until the host's load balancer moved one, which can take
            // milliseconds.
            let apart = (self.tuning.pinning == Pinning::Adaptive)
                .then(pin_to_current_cpu)
                .flatten()
                .and_then(|cpu| self.tuning.other_cpu(cpu));
            match apart {
                Some(cpu) => pin_thread(tid, cpu),
                None => {
                    self.tuning.unpin(0);
                    self.tuning.unpin(tid);
                }
            }
            let max = self.tuning.max_spin;
            self.max_spin.store(max, Ordering::Relaxed);
            self.spin.store(max, Ordering::Relaxed);
            self.stub_spin.store(max, Ordering::Relaxed);
            self.write_u64(H_SPIN, self.tuning.stub_rounds(max));
        }
        if self.pinned.swap(pin, Ordering::Relaxed) != pin {
            if pin { &PINNED } else { &UNPINNED }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Add the stub's own wait counters to the totals (at the thread's end).
    fn collect_stub_stats(&self) {
        STUB_SPINS.fetch_add(self.read_u64(H_SPIN_OK), Ordering::Relaxed);
        STUB_SLEEPS.fetch_add(self.read_u64(H_SLEEPS), Ordering::Relaxed);
    }
}

/// The next spin budget after an answer that took `took` (all in ticks): twice that, within
/// `[least, max]`, so that the next answer like it is caught spinning; an answer that took
/// longer than the longest spin is not worth spinning for (the shortest spin still catches a
/// quick one, and so finds out when answers get quick again).
fn next_budget(took: u64, least: u64, max: u64) -> u64 {
    let least = least.min(max);
    if took > max {
        least
    } else {
        took.saturating_mul(2).clamp(least, max)
    }
}

/// `FUTEX_WAIT` on a shared word until woken or `timeout`; `false` on timeout.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: the word lives in our mapping of the memory file for the duration of the call;
    // the timespec is ours. Not FUTEX_PRIVATE: the stub waits on the same page.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &raw const ts,
            0,
            0,
        )
    };
    !(r < 0 && errno().raw_os_error() == Some(libc::ETIMEDOUT))
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: as for futex_wait; waking has no memory effects.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1, 0, 0, 0);
    }
}

/// A stub process's address space.
struct SystrapAddressSpace {
    stub: Arc<Stub>,
}

impl AddressSpace for SystrapAddressSpace {
    fn map(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        file_offset: u64,
    ) -> Result<(), PlatformError> {
        let caller = self.stub.caller()?;
        // The only thread of its stub: the mapping can wait for this thread's next hand-over
        // (a return to the application, or a command), which makes it first. No other
        // thread runs application code in this address space meanwhile, and every other
        // change of it is a command of this thread, so the order holds. A mapping that then
        // fails leaves the range as it was: the access faults, and the fault maps it again.
        if self.stub.threads.load(Ordering::SeqCst) == 1
            && caller.defer_map([addr, len, u64::from(prot.0), file_offset])
        {
            DEFERRED.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let fd = crate::seccomp::STUB_MEMFD_FD as u64;
        let r = caller.syscall(
            "mmap",
            libc::SYS_mmap,
            [addr, len, u64::from(prot.0), flags, fd, file_offset],
        )?;
        if r as u64 != addr {
            return Err(PlatformError::Injected {
                op: "mmap",
                errno: libc::EFAULT,
            });
        }
        Ok(())
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.stub
            .caller()?
            .syscall("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        Ok(())
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        let caller = self.stub.caller()?;
        // Deferred as a mapping is (see `map`): with one thread, nothing runs in the address
        // space before the hand-over that makes it. A protection the host refuses then ends
        // the stub thread (its process, as it is the only one) rather than leave memory more
        // accessible than the kernel's tables say.
        if self.stub.threads.load(Ordering::SeqCst) == 1
            && caller.defer_map([addr, len, u64::from(prot.0) | BATCH_PROTECT << 32, 0])
        {
            DEFERRED.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        caller.syscall(
            "mprotect",
            libc::SYS_mprotect,
            [addr, len, u64::from(prot.0), 0, 0, 0],
        )?;
        Ok(())
    }

    fn new_thread(&mut self) -> Result<Box<dyn ThreadSeed>, PlatformError> {
        Ok(Box::new(self.new_seed()?))
    }

    fn fork(&mut self) -> Result<Option<Box<dyn AddressSpaceSeed>>, PlatformError> {
        let caller = self.stub.caller()?;
        let memory = &self.stub.memory;
        let range = memory
            .allocate(STUB_SLOT_SIZE)
            .map_err(|_| PlatformError::TooManyThreads)?;
        init_header(memory, range.offset, &self.stub.tuning);
        // SAFETY: getpid has no preconditions.
        let moat = unsafe { libc::getpid() };
        let r = match caller.command(
            CMD_FORK,
            [STUB_AREA_BASE, range.offset, moat as u64, 0, 0, 0],
        ) {
            Ok(r) => r,
            Err(e) => {
                // The copy may exist and map the range: leave the pages to it.
                return Err(e);
            }
        };
        if (-4095..0).contains(&r) {
            memory.free(range);
            return Err(PlatformError::Injected {
                op: "clone",
                errno: -r as i32,
            });
        }
        let pid = r as libc::pid_t;
        if r <= 0 || i64::from(pid) != r || !is_stub_copy(pid, self.stub.sid) {
            // Not a copy we made: never signal or wait for it; its pages stay allocated, as
            // something may map them.
            return Err(caller
                .thread
                .protocol(format!("a fork command returned {r}, not a new stub")));
        }
        let stub = Arc::new(Stub::new(
            pid,
            self.stub.sid,
            memory.clone(),
            self.stub.tuning,
            range,
        ));
        Ok(Some(Box::new(SystrapForkSeed { stub: Some(stub) })))
    }

    fn cpu_time(&self) -> Result<Duration, PlatformError> {
        process_cpu_time(self.stub.pid())
    }
}

impl SystrapAddressSpace {
    fn new_seed(&mut self) -> Result<SystrapSeed, PlatformError> {
        let caller = self.stub.caller()?;
        let (index, range, mapped) = self.stub.take_slot()?;
        let addr = STUB_AREA_BASE + index as u64 * STUB_SLOT_SIZE;
        // SAFETY: getpid has no preconditions.
        let moat = unsafe { libc::getpid() };
        let r = caller.command(
            CMD_CLONE_THREAD,
            [addr, range.offset, moat as u64, u64::from(mapped), 0, 0],
        )?;
        if (-4095..0).contains(&r) {
            // Mapped or not, mapping it again is right.
            self.stub.release_slot(index, false);
            return Err(PlatformError::Injected {
                op: "clone",
                errno: -r as i32,
            });
        }
        let tid = r as libc::pid_t;
        let channel = self.stub.channel(index, tid);
        if r <= 0 || i64::from(tid) != r || !channel.thread.tgkill(0) {
            // Not a thread of this stub: the slot may be in use by something, keep it out.
            return Err(caller
                .thread
                .protocol(format!("a clone command returned {r}, not a new thread")));
        }
        self.stub.threads.fetch_add(1, Ordering::SeqCst);
        Ok(SystrapSeed {
            stub: self.stub.clone(),
            channel: Some(channel),
        })
    }
}

/// Whether `pid` is a stub process we may signal and reap: an unreaped child of Moat in
/// the stubs' session.
fn is_stub_copy(pid: libc::pid_t, sid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data waitid fills; WNOWAIT leaves any child waitable, and
    // waitid fails (ECHILD) for a process that is not our child.
    let ours = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
        ) == 0
    };
    // SAFETY: getsid on an integer.
    ours && unsafe { libc::getsid(pid) } == sid
}

/// A copy of a stub process made by [`AddressSpace::fork`], starting on its own.
struct SystrapForkSeed {
    stub: Option<Arc<Stub>>,
}

impl AddressSpaceSeed for SystrapForkSeed {
    fn attach(mut self: Box<Self>) -> Result<NewAddressSpace, PlatformError> {
        let stub = self.stub.take().expect("a seed is attached once");
        let context = SystrapContext::start(&stub, 0, stub.pid())?;
        Ok((Box::new(SystrapAddressSpace { stub }), Box::new(context)))
    }
}

/// A thread started by [`AddressSpace::new_thread`], on its way to its first trap.
struct SystrapSeed {
    stub: Arc<Stub>,
    channel: Option<Channel>,
}

impl ThreadSeed for SystrapSeed {
    fn attach(mut self: Box<Self>) -> Result<Box<dyn Context>, PlatformError> {
        let channel = self.channel.take().expect("a seed is attached once");
        Ok(Box::new(SystrapContext::attach(&self.stub, channel, true)?))
    }
}

impl Drop for SystrapSeed {
    fn drop(&mut self) {
        // Never attached: attach it here (the dropping host thread may drive a thread of
        // its own in this address space: leave that one registered), and let the context's
        // drop end the thread.
        if let Some(channel) = self.channel.take() {
            if let Err(e) = SystrapContext::attach(&self.stub, channel, false) {
                tracing::warn!("ending an unattached stub thread: {e}");
            }
        }
    }
}

/// One stub thread, driven by the host thread that created or attached it.
struct SystrapContext {
    stub: Arc<Stub>,
    channel: Arc<Channel>,
    /// The host thread this context is registered for (`Stub::callers`).
    host_tid: libc::pid_t,
    /// Where (in the slot) the current signal frame's `ucontext` is: checked at each trap.
    uc: u64,
    /// Segment selectors the kernel keeps in `Regs` (a signal frame has no room for them).
    selectors: [u64; 4],
    /// When the last trap arrived, in ticks (to adapt the stub's spin).
    trapped_at: u64,
    /// The frame's general registers (and `cs..ss`) and the FS and GS bases as the trap left
    /// them: a return writes back only what the kernel changed.
    frame: [u64; 19],
    bases: [u64; 2],
    /// Whether this context still counts in `Stub::threads` and owns its thread.
    live: bool,
    /// The last trap came through a patched site (no signal frame: the FP registers are still
    /// live in the stub thread until `CMD_XSAVE` saves them, `fp_saved`).
    patched: bool,
    fp_saved: bool,
    schedstat: Option<File>,
    adapt: Adapt,
}

/// Adaptive pinning's state (see [`SystrapContext::observe`]).
struct Adapt {
    /// Round trips so far in this window, and when it started (ticks).
    window: u32,
    start: u64,
    /// The host thread's voluntary context switches and the channel's futex sleeps when the
    /// window started.
    switches: u64,
    sleeps: u64,
    /// Windows to keep the current way before trying the other, and how many are left.
    hold: u32,
    left: u32,
    /// This window tries the other way.
    trying: bool,
    /// The mean round trip (ticks) of the last window apart, and pinned.
    mean: [u64; 2],
}

impl SystrapContext {
    /// The context of the first thread of a stub (new, or a copy): slot `index`, thread `tid`.
    fn start(
        stub: &Arc<Stub>,
        index: usize,
        tid: libc::pid_t,
    ) -> Result<SystrapContext, PlatformError> {
        let channel = stub.channel(index, tid);
        SystrapContext::attach(stub, channel, true)
    }

    /// Wait for the thread's first trap, and make the calling host thread its driver (the
    /// one whose address space calls go through it) if `register`.
    fn attach(
        stub: &Arc<Stub>,
        channel: Channel,
        register: bool,
    ) -> Result<SystrapContext, PlatformError> {
        // A host thread inherits its creator's pin, a stub thread its parent's: start the
        // pair as the tuning says (adaptive pairs start pinned, see `Channel::observe`).
        channel.set_pinned(stub.tuning.pinning != Pinning::Never);
        let channel = Arc::new(channel);
        let mut context = SystrapContext {
            stub: stub.clone(),
            channel: channel.clone(),
            host_tid: gettid(),
            uc: 0,
            selectors: [0; 4],
            trapped_at: ticks(),
            frame: [0; 19],
            bases: [0; 2],
            live: true,
            patched: false,
            fp_saved: false,
            schedstat: None,
            adapt: Adapt {
                window: 0,
                start: ticks(),
                switches: voluntary_switches(),
                sleeps: 0,
                hold: MIN_HOLD,
                left: MIN_HOLD,
                trying: false,
                mean: [0; 2],
            },
        };
        // From here on the context's drop ends the thread if anything fails.
        match channel.wait(Await::Answer)? {
            ST_TRAP => {}
            0 => return Err(channel.thread.died("the thread ended as it started")),
            s => {
                return Err(channel
                    .thread
                    .protocol(format!("started with state {s:#x}")))
            }
        }
        let mut regs = Regs::default();
        context.take_trap(&mut regs)?;
        if !(STUB_BASE..STUB_BASE + STUB_LEN).contains(&regs.rip) {
            return Err(channel
                .thread
                .protocol(format!("first trap at {:#x}, outside the stub", regs.rip)));
        }
        // One context per address space per host thread: a second would replace the first.
        if register {
            stub.callers().insert(context.host_tid, channel);
        }
        Ok(context)
    }

    fn thread(&self) -> &StubThread {
        &self.channel.thread
    }

    /// Adaptive pinning, once per round trip.
    ///
    /// A host thread and its stub thread either share one CPU, where neither spins and a
    /// hand-over is a same-CPU wake-up (as under ptrace), or run apart on two CPUs, each
    /// spinning for the other. Which is faster depends on the thread and on the machine: a
    /// `getpid` loop takes about 2.3 µs a round trip apart against 4.4 µs pinned on an idle
    /// machine, but 10 µs apart when other processes keep the CPUs busy; a futex ping-pong
    /// between two threads takes 9-13 µs pinned against 17-60 µs apart. So the pair measures:
    /// it keeps its way for `hold` windows of [`PIN_WINDOW`] round trips, then tries the other
    /// way for one window, and keeps that one only if its mean round trip was at least 25%
    /// shorter; `hold` doubles (up to [`MAX_HOLD`]) each time the try loses and is back to
    /// [`MIN_HOLD`] when it wins. A pair whose host thread blocked in the kernel in more than
    /// one round trip out of eight during a window (like the ping-pong: its voluntary context
    /// switches, less its futex sleeps waiting for the stub) never tries apart, and goes back
    /// to pinned if apart: spinning can only lose there, and a noisy try could keep it apart.
    /// A pair apart goes back as soon as a window takes longer than a pinned one would (a
    /// quarter more while trying, twice as long after), so that a try on a loaded machine
    /// costs little. A pair starts pinned: most threads and processes live short, and pinned
    /// is never far from the best.
    fn observe(&mut self) {
        if self.stub.tuning.pinning != Pinning::Adaptive {
            return;
        }
        let a = &mut self.adapt;
        a.window += 1;
        let pinned = self.channel.pinned.load(Ordering::Relaxed);
        if !pinned && a.mean[1] != 0 {
            // Apart, the pair can lose much more than it can win (on a loaded machine one
            // side may wait a whole scheduler tick for its CPU at every round trip): as soon
            // as this window has taken longer than a pinned one would (a quarter more for a
            // try, twice as long otherwise), go back.
            let elapsed = ticks().wrapping_sub(a.start);
            let limit = a.mean[1].saturating_mul(u64::from(PIN_WINDOW));
            let limit = if a.trying {
                limit.saturating_mul(5) / 4
            } else {
                limit.saturating_mul(2)
            };
            if elapsed > limit {
                tracing::debug!(
                    "stub thread {}: apart is slow ({} round trips in {} µs): pinned",
                    self.channel.thread.tid,
                    a.window,
                    elapsed / self.stub.tuning.ticks_per_us.max(1)
                );
                a.trying = false;
                a.hold = (a.hold * 2).min(MAX_HOLD);
                a.left = a.hold;
                a.window = 0;
                a.start = ticks();
                a.switches = voluntary_switches();
                a.sleeps = self.channel.sleeps.load(Ordering::Relaxed);
                self.channel.set_pinned(true);
                return;
            }
        }
        if a.window < PIN_WINDOW {
            return;
        }
        let now = ticks();
        let mean = now.wrapping_sub(a.start) / u64::from(PIN_WINDOW);
        // Did the host thread block in the kernel (a voluntary context switch that was not
        // one of our futex sleeps) in more than one round trip out of eight?
        let (switches, sleeps) = (
            voluntary_switches(),
            self.channel.sleeps.load(Ordering::Relaxed),
        );
        let blocked = switches
            .saturating_sub(a.switches)
            .saturating_sub(sleeps.wrapping_sub(a.sleeps));
        let blocking = blocked * 8 > u64::from(PIN_WINDOW);
        (a.window, a.start, a.switches, a.sleeps) = (0, now, switches, sleeps);
        a.mean[usize::from(pinned)] = mean;
        let switch = if a.trying {
            // The window that tried this way is over: keep it if it was clearly faster (and
            // if apart, did not block).
            a.trying = false;
            let before = a.mean[usize::from(!pinned)];
            let keep = (pinned || !blocking) && mean.saturating_mul(4) < before.saturating_mul(3);
            a.hold = if keep {
                MIN_HOLD
            } else {
                (a.hold * 2).min(MAX_HOLD)
            };
            a.left = a.hold;
            !keep
        } else if blocking && !pinned {
            // Apart, but the kernel blocks: spinning can only lose.
            a.left = a.hold;
            true
        } else if a.left <= 1 {
            // A pair that blocks in the kernel cannot gain by spinning: only try pinned then.
            a.left = a.hold;
            a.trying = !pinned || !blocking;
            a.trying
        } else {
            a.left -= 1;
            false
        };
        if switch {
            tracing::debug!(
                "stub thread {}: {} ns a round trip {}: {}",
                self.channel.thread.tid,
                mean * 1000 / self.stub.tuning.ticks_per_us.max(1),
                if pinned { "pinned" } else { "apart" },
                if a.trying {
                    "trying the other way"
                } else {
                    "going back"
                }
            );
            self.channel.set_pinned(!pinned);
        }
    }

    /// Read the trap the stub reported into `regs` (the frame checked first).
    fn take_trap(&mut self, regs: &mut Regs) -> Result<Trap, PlatformError> {
        let ch = &self.channel;
        self.trapped_at = ticks();
        let mut head = [0u8; 0x28];
        ch.memory.read(ch.offset + H_SIGNO, &mut head);
        let u32_at = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_ne_bytes(head[at..at + 8].try_into().expect("8"));
        let signo = u32_at(0) as i32;
        let code = u32_at(4) as i32;
        let addr = u64_at(8);
        let uc_addr = u64_at((H_UC - H_SIGNO) as usize);
        let fs_base = u64_at((H_FSBASE - H_SIGNO) as usize);
        let gs_base = u64_at((H_GSBASE - H_SIGNO) as usize);
        let uc = uc_addr.wrapping_sub(ch.addr);
        if !(STACK_OFF..=STUB_SLOT_SIZE - UC_LEN).contains(&uc) || uc % 8 != 0 {
            return Err(self
                .thread()
                .protocol(format!("signal frame at {uc_addr:#x}, outside its stack")));
        }
        self.uc = uc;
        self.patched = uc == PATCH_UC;
        self.fp_saved = false;
        if self.patched {
            PATCHED.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = [0u8; 19 * 8];
        ch.memory.read(ch.offset + uc + UC_GREGS, &mut g);
        for (i, word) in self.frame.iter_mut().enumerate() {
            *word = u64::from_ne_bytes(g[8 * i..8 * i + 8].try_into().expect("8"));
        }
        self.bases = [fs_base, gs_base];
        // With patching, the GS base is the slot's address unless the application set one:
        // the application sees 0 there, as it would on Linux.
        let gs_base = if self.stub.tuning.patch && gs_base == ch.addr {
            0
        } else {
            gs_base
        };
        let r = |i: usize| self.frame[i];
        let csgsfs = r(18);
        *regs = Regs {
            r8: r(0),
            r9: r(1),
            r10: r(2),
            r11: r(3),
            r12: r(4),
            r13: r(5),
            r14: r(6),
            r15: r(7),
            rdi: r(8),
            rsi: r(9),
            rbp: r(10),
            rbx: r(11),
            rdx: r(12),
            rax: r(13),
            rcx: r(14),
            rsp: r(15),
            rip: r(16),
            eflags: r(17),
            cs: csgsfs & 0xffff,
            ss: csgsfs >> 48,
            fs_base,
            gs_base,
            ds: self.selectors[0],
            es: self.selectors[1],
            fs: self.selectors[2],
            gs: self.selectors[3],
            orig_rax: u64::MAX,
        };
        const SYS_SECCOMP: i32 = 1;
        const SYS_USER_DISPATCH: i32 = 2;
        Ok(match (signo, code) {
            (libc::SIGSYS, SYS_SECCOMP | SYS_USER_DISPATCH) => {
                // The host rolled `rax` back to the system call number.
                regs.orig_rax = regs.rax;
                Trap::Syscall
            }
            (s, c) if is_fault(s) && c > 0 => Trap::Fault {
                signo: s,
                code: c,
                addr,
            },
            // The interrupt, or a signal someone on the host sent the stub.
            _ => Trap::Interrupted,
        })
    }

    /// Write `regs` into the signal frame the thread returns through.
    fn put_regs(&mut self, regs: &Regs) -> Result<(), PlatformError> {
        if regs.fs_base >= CANONICAL_END || regs.gs_base >= CANONICAL_END {
            return Err(PlatformError::Injected {
                op: "setting the FS or GS base",
                errno: libc::EPERM,
            });
        }
        let ch = &self.channel;
        let gregs = [
            regs.r8,
            regs.r9,
            regs.r10,
            regs.r11,
            regs.r12,
            regs.r13,
            regs.r14,
            regs.r15,
            regs.rdi,
            regs.rsi,
            regs.rbp,
            regs.rbx,
            regs.rdx,
            regs.rax,
            regs.rcx,
            regs.rsp,
            regs.rip,
            regs.eflags,
            // cs, gs, fs, ss: always 64-bit user segments.
            USER_CS | (USER_SS << 48),
        ];
        // Only what changed since the trap: every line written here is a line the stub's CPU
        // must fetch back for rt_sigreturn. (The frame's signal mask, nothing blocked when
        // the host wrote it, is left as it is: the application could block host signals in
        // its stub threads anyway, and the interrupt watchdog in `wait` copes with that.)
        for (i, (&new, old)) in gregs.iter().zip(self.frame.iter_mut()).enumerate() {
            if new != *old {
                ch.write_u64(self.uc + UC_GREGS + 8 * i as u64, new);
                *old = new;
            }
        }
        let gs_base = if self.stub.tuning.patch && regs.gs_base == 0 {
            ch.addr
        } else {
            regs.gs_base
        };
        let bases = [regs.fs_base, gs_base];
        if bases != self.bases {
            ch.write_u64(H_FSBASE, bases[0]);
            ch.write_u64(H_GSBASE, bases[1]);
            self.bases = bases;
        }
        self.selectors = [regs.ds, regs.es, regs.fs, regs.gs];
        Ok(())
    }

    /// A patched trap's FP state is still in the stub thread's registers: have the stub save
    /// it (once per trap) where a signal frame would have it, with the software bytes and
    /// magic a signal frame has, so that the rest reads and writes it the same way.
    fn save_patched_fp(&mut self) -> Result<(), PlatformError> {
        if !self.patched || self.fp_saved {
            return Ok(());
        }
        let ch = &self.channel;
        let (size, xcr0) = (self.stub.tuning.xsave_size, self.stub.tuning.xcr0);
        // XSAVE leaves the header's reserved bytes as they were; XRSTOR wants them zero.
        ch.memory
            .zero(ch.offset + PATCH_FP + XSAVE_HEADER as u64, 64);
        let r = ch.command(CMD_XSAVE, [0; 6])?;
        if r != 0 {
            return Err(self.thread().protocol(format!("xsave answered {r}")));
        }
        let mut sw = [0u8; 24];
        sw[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_ne_bytes());
        sw[4..8].copy_from_slice(&(size + 4).to_ne_bytes());
        sw[8..16].copy_from_slice(&xcr0.to_ne_bytes());
        sw[16..20].copy_from_slice(&size.to_ne_bytes());
        ch.memory
            .write(ch.offset + PATCH_FP + FP_SW_BYTES as u64, &sw);
        ch.memory.write(
            ch.offset + PATCH_FP + u64::from(size),
            &FP_XSTATE_MAGIC2.to_ne_bytes(),
        );
        self.fp_saved = true;
        Ok(())
    }

    /// Where the frame's XSAVE area is (offset in the slot), its size, and the features
    /// it holds; a frame with a legacy FXSAVE area only says (offset, 512, x87|SSE).
    fn fp_area(&self) -> Result<(u64, usize, u64), PlatformError> {
        let ch = &self.channel;
        let fp_addr = ch.read_u64(self.uc + UC_FPREGS);
        let fp = fp_addr.wrapping_sub(ch.addr);
        if fp < STACK_OFF || fp > STUB_SLOT_SIZE - XSAVE_HEADER as u64 || fp % 16 != 0 {
            return Err(self
                .thread()
                .protocol(format!("FP state at {fp_addr:#x}, outside its stack")));
        }
        let mut sw = [0u8; 24];
        ch.memory.read(ch.offset + fp + FP_SW_BYTES as u64, &mut sw);
        let magic1 = u32::from_ne_bytes(sw[0..4].try_into().expect("4"));
        let extended = u32::from_ne_bytes(sw[4..8].try_into().expect("4")) as usize;
        let features = u64::from_ne_bytes(sw[8..16].try_into().expect("8"));
        let size = u32::from_ne_bytes(sw[16..20].try_into().expect("4")) as usize;
        let fits = fp + size as u64 + 4 <= STUB_SLOT_SIZE;
        let magic2 = fits && {
            let mut m = [0u8; 4];
            ch.memory.read(ch.offset + fp + size as u64, &mut m);
            u32::from_ne_bytes(m) == FP_XSTATE_MAGIC2
        };
        if magic1 == FP_XSTATE_MAGIC1
            && magic2
            && size >= XSAVE_MIN
            && extended == size + 4
            && features & 3 == 3
            && fits
            && fp % 64 == 0
        {
            Ok((fp, size, features))
        } else {
            Ok((fp, XSAVE_HEADER, 3))
        }
    }
}

impl Context for SystrapContext {
    fn switch(&mut self, regs: &mut Regs) -> Result<Trap, PlatformError> {
        if self.stub.proc.dead.load(Ordering::SeqCst) {
            return Err(self.thread().died("the stub was killed"));
        }
        self.put_regs(regs)?;
        self.channel
            .adapt_stub_spin(ticks().wrapping_sub(self.trapped_at));
        self.channel.post(K_RUN);
        let answer = self.channel.wait(Await::App)?;
        self.observe();
        match answer {
            ST_TRAP => self.take_trap(regs),
            0 => Err(self.thread().died("the thread has ended")),
            s => Err(self
                .thread()
                .protocol(format!("left application code with state {s:#x}"))),
        }
    }

    fn cpu_time(&mut self) -> Result<Duration, PlatformError> {
        let (pid, tid) = (self.stub.pid(), self.thread().tid);
        crate::host::thread_cpu_time(&mut self.schedstat, pid, tid)
    }

    fn fp_state(&mut self) -> Result<Vec<u8>, PlatformError> {
        self.save_patched_fp()?;
        let (fp, size, features) = self.fp_area()?;
        let mut buf = vec![0u8; size];
        self.channel.memory.read(self.channel.offset + fp, &mut buf);
        if size > XSAVE_HEADER {
            // The ptrace layout the kernel expects: XCR0 where the frame has its sw bytes.
            buf[FP_SW_BYTES..XSAVE_HEADER].fill(0);
            buf[FP_SW_BYTES..FP_SW_BYTES + 8].copy_from_slice(&features.to_ne_bytes());
        }
        Ok(buf)
    }

    fn set_fp_state(&mut self, state: &[u8]) -> Result<(), PlatformError> {
        self.save_patched_fp()?;
        let (fp, size, features) = self.fp_area()?;
        let ch = &self.channel;
        if state.len() < XSAVE_HEADER {
            return Err(PlatformError::InvalidFpState("shorter than an FXSAVE area"));
        }
        // MXCSR must not set bits the CPU reserves (XRSTOR would fault).
        let mut mask = [0u8; 4];
        ch.memory.read(ch.offset + fp + 28, &mut mask);
        let mask = match u32::from_ne_bytes(mask) {
            0 => 0xffbf,
            m => m,
        };
        let mxcsr = u32::from_ne_bytes(state[24..28].try_into().expect("4"));
        if mxcsr & !mask != 0 {
            return Err(PlatformError::InvalidFpState("reserved MXCSR bits"));
        }
        ch.memory.write(ch.offset + fp, &state[..FP_SW_BYTES]);
        if size > XSAVE_HEADER {
            if state.len() < XSAVE_MIN {
                return Err(PlatformError::InvalidFpState("no XSAVE header"));
            }
            let word = |at: usize| u64::from_ne_bytes(state[at..at + 8].try_into().expect("8"));
            if word(XSAVE_HEADER) & !features != 0 {
                return Err(PlatformError::InvalidFpState("unknown XSAVE components"));
            }
            if state[XSAVE_HEADER + 8..XSAVE_MIN].iter().any(|&b| b != 0) {
                return Err(PlatformError::InvalidFpState("XSAVE header reserved bytes"));
            }
            let n = state.len().min(size);
            ch.memory.write(
                ch.offset + fp + XSAVE_HEADER as u64,
                &state[XSAVE_HEADER..n],
            );
        }
        Ok(())
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.channel.thread.clone()
    }

    fn patchable_trap(&self) -> bool {
        self.stub.tuning.patch && !self.patched
    }

    fn patched_trap(&self) -> bool {
        self.patched
    }
}

impl Drop for SystrapContext {
    /// End the stub thread; the address space lives on for the other threads.
    fn drop(&mut self) {
        {
            let mut callers = self.stub.callers();
            if callers
                .get(&self.host_tid)
                .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
            {
                callers.remove(&self.host_tid);
            }
        }
        if !self.live {
            return;
        }
        self.live = false;
        let ch = &self.channel;
        ch.collect_stub_stats();
        *ch.thread.life() = Life::Exiting;
        if self.stub.threads.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last thread: the process has nothing left to run.
            self.stub.proc.kill();
            return;
        }
        // exit(0) from the handler; the host zeroes the state word as the thread goes.
        match ch.command(libc::SYS_exit as u64, [0; 6]) {
            Err(PlatformError::StubDied { .. }) if !self.stub.proc.dead.load(Ordering::SeqCst) => {
                self.stub.release_slot(ch.index, true);
            }
            Err(PlatformError::StubDied { .. }) => {}
            Err(e) => tracing::warn!("ending stub thread {}: {e}", ch.thread.tid),
            Ok(r) => tracing::warn!(
                "stub thread {} did not exit (exit returned {r})",
                ch.thread.tid
            ),
        }
    }
}

#[cfg(test)]
mod tests;
