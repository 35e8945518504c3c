//! How application code runs and how its traps reach the kernel.
//!
//! A platform gives the kernel address spaces (into which ranges of the memory file are
//! mapped) and thread contexts (which run application code until it traps: a system call, a
//! fault, a signal). The kernel never learns how: [`ptrace`] (`PTRACE_SYSEMU`) or [`systrap`]
//! (seccomp `SECCOMP_RET_TRAP` and a signal handler in the stub, talking to the kernel through
//! shared memory).
//!
//! This crate talks to the host (fork, ptrace, seccomp, signal handlers and mmap in stubs): it
//! is one of the three places where `unsafe` is allowed, each block with a `// SAFETY:`
//! comment.

use std::sync::Arc;

pub use moat_abi::Regs;
use moat_memory::MemoryFile;

pub mod confine;
mod host;
pub mod host_socket;
pub mod packet;
pub mod ptrace;
mod seccomp;
pub mod systrap;

/// The highest address (exclusive) the host lets a process map with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Where every stub keeps its code page: the top page of the address space, so applications
/// see one contiguous range `[USER_MIN, USER_MAX)` below it.
pub const STUB_BASE: u64 = TASK_SIZE - STUB_LEN;
/// Size of the stub's code region.
pub const STUB_LEN: u64 = 0x1000;
/// Size of one thread's slot in the stub area (systrap: the page the thread shares with the
/// kernel, then its signal stack). A power of two, so that a stub thread finds its slot from
/// its stack pointer.
pub const STUB_SLOT_SIZE: u64 = 0x1_0000;
/// How many slots the stub area holds: at most this many threads per address space (systrap).
pub const STUB_SLOTS: u64 = 8192;
/// The stub area, below the stub's code page: systrap's per-thread slots. Reserved on every
/// platform, so that applications see the same address space whichever runs them.
pub const STUB_AREA_BASE: u64 = (STUB_BASE - STUB_SLOTS * STUB_SLOT_SIZE) & !(STUB_SLOT_SIZE - 1);
/// Size of the stub area.
pub const STUB_AREA_LEN: u64 = STUB_SLOTS * STUB_SLOT_SIZE;
/// Lowest address an application may map (Linux's default `vm.mmap_min_addr`).
pub const USER_MIN: u64 = 0x10000;
/// One past the highest address an application may map: the stub area starts there.
pub const USER_MAX: u64 = STUB_AREA_BASE;

const _: () = assert!(STUB_AREA_BASE + STUB_AREA_LEN <= STUB_BASE);
const _: () = assert!(STUB_SLOT_SIZE.is_power_of_two());

/// Memory protection of a mapping, as `PROT_*` bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot(pub u32);

impl Prot {
    pub const NONE: Prot = Prot(0);
    pub const READ: Prot = Prot(1);
    pub const WRITE: Prot = Prot(2);
    pub const EXEC: Prot = Prot(4);

    pub fn readable(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn writable(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn executable(self) -> bool {
        self.0 & 4 != 0
    }
    #[must_use]
    pub fn without_write(self) -> Prot {
        Prot(self.0 & !2)
    }
}

/// Why application code stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// A system call: the number is in `regs.orig_rax`, the arguments in the ABI registers,
    /// and the instruction pointer already points past the `syscall` instruction.
    Syscall,
    /// A synchronous fault (`SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP`), with the
    /// `si_code` and faulting address the host reported; `regs.rip` is the faulting instruction.
    Fault { signo: i32, code: i32, addr: u64 },
    /// Another host thread interrupted the thread ([`Interrupter::interrupt`]); may be
    /// spurious.
    Interrupted,
}

/// Kicks a thread out of application code from another host thread, so that `switch`
/// returns [`Trap::Interrupted`]; harmless if the thread is not running.
///
/// An interrupt is a kick, not a message: publish the reason first, then interrupt. An
/// interrupt that lands while the thread is not running application code is either dropped
/// or makes the next `switch` return a spurious [`Trap::Interrupted`], so the task must look
/// at its state between announcing that it will switch and switching. Interrupting a thread
/// that has exited does nothing.
pub trait Interrupter: Send + Sync {
    fn interrupt(&self);
}

/// Failures of the platform itself (not of the application).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("creating a stub process: {0}")]
    StubCreate(#[source] std::io::Error),
    #[error("stub set-up failed: it stopped with signal {0}")]
    StubSetup(i32),
    #[error("{op} on stub {pid}: {source}")]
    Ptrace {
        op: &'static str,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("the stub process {pid} died ({how})")]
    StubDied { pid: i32, how: String },
    #[error("{op} in the stub failed with errno {errno}")]
    Injected { op: &'static str, errno: i32 },
    /// The calling host thread drives no thread of this address space (ptrace: it traces no
    /// stub thread of it), so it cannot change it.
    #[error("this host thread has no thread in the address space")]
    NotAttached,
    /// A systrap stub thread left something the kernel cannot accept in the memory it shares
    /// with the kernel (the application can write there: a broken or hostile program).
    #[error("stub thread {tid} of stub {pid} broke the systrap protocol: {what}")]
    Protocol { pid: i32, tid: i32, what: String },
    /// Floating-point state the host would refuse to load (bad XSAVE header, reserved MXCSR
    /// bits, wrong size).
    #[error("invalid floating-point state: {0}")]
    InvalidFpState(&'static str),
    /// The address space has no free thread slot left (systrap: [`STUB_SLOTS`]).
    #[error("too many threads in one address space")]
    TooManyThreads,
    /// A host call the platform makes on its own behalf failed.
    #[error("{op}: {source}")]
    Host {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A new address space and the context of its first thread.
pub type NewAddressSpace = (Box<dyn AddressSpace>, Box<dyn Context>);

/// A platform: a way to run application code.
pub trait Platform: Send + Sync {
    /// The name users select it by (`--platform NAME`).
    fn name(&self) -> &'static str;

    /// Create an empty address space and a context for its first thread.
    ///
    /// With ptrace, the calling host thread becomes the driver of the first context (create
    /// it on the host thread that will run the task); further threads come from
    /// [`AddressSpace::new_thread`].
    fn new_address_space(&self, memory: &Arc<MemoryFile>)
        -> Result<NewAddressSpace, PlatformError>;

    /// The host system calls this platform makes from Moat's kernel process (and from its
    /// stubs, which inherit the kernel's seccomp filter under their own), beyond the
    /// platform-independent set the runtime allows: its section of the kernel's allowlist.
    fn host_syscalls(&self) -> &'static [HostSyscall];
}

/// One entry of a seccomp allowlist: a host system call, and the argument values it may
/// have. `when` lists alternatives, each a conjunction of [`ArgIs`]; empty means any
/// arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSyscall {
    pub nr: u32,
    pub when: &'static [&'static [ArgIs]],
}

impl HostSyscall {
    /// Allowed with any arguments.
    pub const fn any(nr: i64) -> HostSyscall {
        HostSyscall {
            nr: nr as u32,
            when: &[],
        }
    }

    /// Allowed when the arguments match one of `when`.
    pub const fn when(nr: i64, when: &'static [&'static [ArgIs]]) -> HostSyscall {
        HostSyscall {
            nr: nr as u32,
            when,
        }
    }
}

/// A condition on one argument of a system call: `(args[index] & mask) == value`, on all
/// 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgIs {
    pub index: u8,
    pub mask: u64,
    pub value: u64,
}

impl ArgIs {
    /// Argument `index` equals `value`.
    pub const fn eq(index: u8, value: u64) -> ArgIs {
        ArgIs {
            index,
            mask: u64::MAX,
            value,
        }
    }

    /// Argument `index`, a C `int` (the host ignores the upper half of its register),
    /// equals `value`.
    pub const fn int(index: u8, value: u32) -> ArgIs {
        ArgIs {
            index,
            mask: 0xffff_ffff,
            value: value as u64,
        }
    }

    /// The bits of `mask` in argument `index` equal those of `value`.
    pub const fn masked(index: u8, mask: u64, value: u64) -> ArgIs {
        ArgIs { index, mask, value }
    }
}

/// An application address space: what the application's page tables contain.
///
/// Several host threads may share one address space (one per application thread); the
/// kernel serializes the calls (`&mut self`). With ptrace, every call is carried out by the
/// stub thread of the *calling* host thread, so it must own a context in this address space
/// (created by [`Platform::new_address_space`] or [`ThreadSeed::attach`], not yet dropped);
/// otherwise the call fails with [`PlatformError::NotAttached`].
pub trait AddressSpace: Send {
    /// Map `len` bytes of the memory file at `file_offset` at `addr` (replacing anything there).
    fn map(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        file_offset: u64,
    ) -> Result<(), PlatformError>;
    /// Remove whatever is mapped in `[addr, addr+len)`.
    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError>;
    /// Change the protection of a fully mapped range.
    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError>;
    /// Start a new thread in this address space; attach it with [`ThreadSeed::attach`] on
    /// the host thread that will run it. The new thread runs no application code until its
    /// context's first `switch`. (The default, for address spaces that run no code, such as
    /// test doubles, fails.)
    fn new_thread(&mut self) -> Result<Box<dyn ThreadSeed>, PlatformError> {
        Err(PlatformError::NotAttached)
    }
    /// Start a copy of this address space — every mapping as it is now — for another host
    /// thread to attach (`fork`: the kernel's tables are copied and re-protected first, so the
    /// copy is exactly what they say). `None` when the platform cannot; the caller then makes
    /// a fresh address space and maps everything.
    fn fork(&mut self) -> Result<Option<Box<dyn AddressSpaceSeed>>, PlatformError> {
        Ok(None)
    }
    /// CPU time consumed by every thread that ever ran in this address space, the exited
    /// ones included (ptrace: the whole stub process). (The default, for address spaces that
    /// run no code, is zero.)
    fn cpu_time(&self) -> Result<std::time::Duration, PlatformError> {
        Ok(std::time::Duration::ZERO)
    }
}

/// One application thread's execution context.
///
/// Dropping a context ends its thread; the address space lives on for the others (with
/// ptrace the stub thread exits and is reaped, and the last reference to the stub process
/// kills it). A context must be used *and dropped* on the host thread that created or
/// attached it: ptrace binds a tracee to its tracer thread, and a tracer thread that exits
/// while still tracing kills the whole stub process.
pub trait Context: Send {
    /// Run application code with `regs` until it traps; `regs` then holds the thread's state.
    fn switch(&mut self, regs: &mut Regs) -> Result<Trap, PlatformError>;
    /// CPU time this thread has consumed running application code.
    fn cpu_time(&mut self) -> Result<std::time::Duration, PlatformError>;
    /// The thread's floating-point and vector state, in the `XSAVE` layout.
    fn fp_state(&mut self) -> Result<Vec<u8>, PlatformError>;
    /// Replace the thread's floating-point and vector state (`XSAVE` layout).
    fn set_fp_state(&mut self, state: &[u8]) -> Result<(), PlatformError>;
    /// A handle other host threads use to interrupt this thread.
    fn interrupter(&self) -> Arc<dyn Interrupter>;
    /// Whether the last trap was a system call that came the slow way (a signal) and the
    /// kernel may patch its `mov $nr, %eax; syscall` site into a jump to the platform's
    /// trampolines (systrap, see [`systrap::patch`]); the other platforms run sites as they
    /// are.
    fn patchable_trap(&self) -> bool {
        false
    }

    /// Whether the last trap came through a patched system call site (systrap): a `syscall`
    /// of the 64-bit ABI, never `int $0x80`, so the kernel need not look at the instruction.
    fn patched_trap(&self) -> bool {
        false
    }
}

/// A thread started in an existing address space, waiting to be attached by the host thread
/// that will run it.
///
/// Dropping a seed without attaching it ends the thread (with ptrace the dropping host
/// thread attaches it just long enough to make it exit).
pub trait ThreadSeed: Send {
    /// Become the driver of this thread: call on the host thread that will run it.
    fn attach(self: Box<Self>) -> Result<Box<dyn Context>, PlatformError>;
}

/// A copy of an address space made by [`AddressSpace::fork`], waiting to be attached by the
/// host thread that will run it.
pub trait AddressSpaceSeed: Send {
    fn attach(self: Box<Self>) -> Result<NewAddressSpace, PlatformError>;
}

/// The platforms this build offers, by name.
pub fn by_name(name: &str) -> Option<Arc<dyn Platform>> {
    match name {
        "ptrace" => Some(Arc::new(ptrace::PtracePlatform)),
        "systrap" => Some(Arc::new(systrap::SystrapPlatform::new())),
        _ => None,
    }
}

/// Names accepted by [`by_name`].
pub const PLATFORMS: &[&str] = &["ptrace", "systrap"];

/// The CPU's time-stamp counter, read after earlier instructions complete (`lfence; rdtsc`):
/// the clock Moat's vDSO reads in the application, so the kernel reads the same one.
pub fn read_tsc() -> u64 {
    // SAFETY: `lfence` and `rdtsc` only read processor state; x86-64 Linux leaves `rdtsc`
    // enabled in user mode unless a process asks otherwise (PR_SET_TSC), which Moat never does.
    unsafe {
        std::arch::x86_64::_mm_lfence();
        std::arch::x86_64::_rdtsc()
    }
}
