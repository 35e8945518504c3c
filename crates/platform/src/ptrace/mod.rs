//! The ptrace platform: one stub process per address space, one stub thread per application
//! thread, each driven with `PTRACE_SYSEMU` by the host thread that runs its task.
//!
//! The stub is forked from Moat, immediately empties itself (see [`stub`]) and then runs only
//! application code. Each application system call stops its stub thread at syscall entry and is
//! skipped by the host (`SYSEMU`): the kernel serves it and writes the result into `rax`.
//! Faults arrive as signal-delivery stops. To change the stub's mappings the kernel injects
//! `mmap`/`munmap`/`mprotect` by pointing a stub thread at a `syscall; int3` gadget in its own
//! page.
//!
//! # Threads
//! ptrace binds a tracee to the host *thread* that traced it: only that thread may make
//! requests for it. So each host thread that runs a task traces a stub thread of its own:
//! - the first stub thread (the stub process's leader) is traced by the host thread that
//!   created the address space (`PTRACE_TRACEME` after the fork);
//! - [`AddressSpace::new_thread`] injects a `clone` through the caller's stub thread; the
//!   child waits in the stub page, untraced and with every signal blocked, until
//!   [`ThreadSeed::attach`] on another host thread seizes it (`PTRACE_SEIZE`,
//!   `PTRACE_INTERRUPT`);
//! - the stub process remembers which stub thread each host thread traces, and the address
//!   space injects its calls through the caller's;
//! - dropping a context makes its stub thread `exit` (a tracer thread that ends while still
//!   tracing kills the whole stub, `PTRACE_O_EXITKILL`); the last reference to the stub
//!   process kills and reaps it.
//!
//! # Waits
//! The host lets any thread of Moat collect the stops of a tracee traced by a sibling
//! thread. So every `waitpid` names one stub thread (with `__WALL`: stub threads are clones),
//! and only that thread's tracer waits for it: a wildcard wait would steal the events of
//! another host thread.
//!
//! # Interrupts
//! [`Interrupter::interrupt`] sends [`INTERRUPT_SIGNAL`] to the stub thread with `tgkill`;
//! it stops in a signal-delivery stop, `switch` returns [`Trap::Interrupted`] and the signal
//! is suppressed when the thread next resumes.

mod stub;

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use moat_abi::Regs;
use moat_memory::MemoryFile;

/// Where the kernel process reads stub threads' CPU time (moved to the host helpers).
pub use crate::host::set_proc_dir;
use crate::host::{
    errno, gettid, is_fault, pin, pin_to_current_cpu, process_cpu_time, thread_cpu_time,
    RSEQ_FLAG_UNREGISTER,
};
use crate::seccomp::{stub_filter, STUB_CLONE_FLAGS, STUB_FORK_FLAGS, STUB_MEMFD_FD};
use crate::{
    AddressSpace, ArgIs, Context, HostSyscall, Interrupter, NewAddressSpace, Platform,
    PlatformError, Prot, ThreadSeed, Trap,
};

/// The signal that kicks a stub thread out of application code.
///
/// `SIGUSR2` because it is:
/// - not a fault signal, so it cannot be mistaken for a [`Trap::Fault`];
/// - not a job-control signal: `SIGCONT` resumes a stopped process when it is *sent*, even
///   if the tracer then suppresses it, and the stop signals start group-stops;
/// - a standard signal: pending instances merge, so a burst of interrupts leaves at most one
///   pending per thread (at most one spurious [`Trap::Interrupted`]) and cannot exhaust
///   `RLIMIT_SIGPENDING` as queued real-time signals could;
/// - sent to the stub by nobody else (it has its own session; terminal signals go to Moat),
///   and if someone does, the result is a spurious interrupt, which is allowed.
///
/// It never reaches a stub thread untraced (its default action would kill the stub): a thread
/// is interrupted only while it is traced (its context marks it before it exits), and a new
/// thread waits for its tracer with every signal blocked.
pub const INTERRUPT_SIGNAL: i32 = libc::SIGUSR2;

/// Options of every stub thread's tracer: kill the stub if the tracer thread ends, tell
/// system-call stops from `SIGTRAP`s.
const TRACE_OPTIONS: libc::c_int = libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD;

/// The ptrace platform.
#[derive(Debug, Default)]
pub struct PtracePlatform;

impl Platform for PtracePlatform {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn new_address_space(
        &self,
        memory: &Arc<MemoryFile>,
    ) -> Result<NewAddressSpace, PlatformError> {
        let (aspace, context) = PtracePlatform::spawn(memory)?;
        Ok((Box::new(aspace), Box::new(context)))
    }

    fn host_syscalls(&self) -> &'static [HostSyscall] {
        HOST_SYSCALLS
    }
}

/// The ptrace platform's section of the kernel's seccomp allowlist: what driving stubs
/// costs in host calls, from the kernel and from the stubs (which inherit the kernel's
/// filter under their own, `seccomp.rs`).
const HOST_SYSCALLS: &[HostSyscall] = &[
    // Driving stubs: requests, stops, the interrupt signal, killing a stub.
    HostSyscall::any(libc::SYS_ptrace),
    HostSyscall::any(libc::SYS_wait4),
    // SIGKILL ends a stub, SIGSTOP is a new stub's first stop.
    HostSyscall::when(
        libc::SYS_kill,
        &[
            &[ArgIs::int(1, libc::SIGKILL as u32)],
            &[ArgIs::int(1, libc::SIGSTOP as u32)],
        ],
    ),
    HostSyscall::when(
        libc::SYS_tgkill,
        &[
            &[ArgIs::int(2, INTERRUPT_SIGNAL as u32)],
            &[ArgIs::int(2, libc::SIGKILL as u32)],
        ],
    ),
    // A new stub: fork (glibc's flags), and in the child the set-up before its filter.
    HostSyscall::when(
        libc::SYS_clone,
        &[
            &[ArgIs::eq(
                0,
                (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64,
            )],
            // Inside a stub: a thread, or a copy of the stub (its own filter checks more).
            &[ArgIs::eq(0, STUB_CLONE_FLAGS)],
            &[ArgIs::eq(0, STUB_FORK_FLAGS)],
        ],
    ),
    HostSyscall::any(libc::SYS_getppid),
    HostSyscall::any(libc::SYS_setsid),
    HostSyscall::any(libc::SYS_dup2),
    HostSyscall::any(libc::SYS_close_range),
    HostSyscall::when(libc::SYS_rseq, &[&[ArgIs::int(2, RSEQ_FLAG_UNREGISTER)]]),
    HostSyscall::any(libc::SYS_seccomp),
    HostSyscall::when(
        libc::SYS_prctl,
        &[
            &[ArgIs::int(0, libc::PR_SET_PDEATHSIG as u32)],
            &[ArgIs::int(0, libc::PR_SET_NO_NEW_PRIVS as u32)],
        ],
    ),
    // The stub's own calls: injected map changes, a new thread's wait, a thread's end.
    HostSyscall::any(libc::SYS_pause),
    HostSyscall::any(libc::SYS_exit),
    // Pinning a tracer and its stub to one CPU.
    HostSyscall::any(libc::SYS_getcpu),
    HostSyscall::any(libc::SYS_sched_setaffinity),
    // CPU time: the stub process's CPU clock, a stub thread's schedstat.
    HostSyscall::any(libc::SYS_clock_gettime),
    // Read-only opens (of schedstat files, through the procfs fd).
    HostSyscall::when(
        libc::SYS_openat,
        &[&[ArgIs::masked(
            2,
            (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) as u64,
            libc::O_RDONLY as u64,
        )]],
    ),
    HostSyscall::any(libc::SYS_pread64),
];

impl PtracePlatform {
    fn spawn(memory: &MemoryFile) -> Result<(PtraceAddressSpace, PtraceContext), PlatformError> {
        let stub = Arc::new(Stub::spawn(memory)?);
        let leader = stub.leader.clone();
        let context = PtraceContext::new(stub.clone(), leader);
        Ok((PtraceAddressSpace { stub }, context))
    }
}

const _: () = assert!(std::mem::size_of::<Regs>() == std::mem::size_of::<libc::user_regs_struct>());

/// Whether a ptrace request failed because the thread is gone (or going): the host answers
/// `ESRCH` for a tracee that is not stopped, and ours are always stopped unless killed.
fn is_gone(e: &PlatformError) -> bool {
    matches!(e, PlatformError::Ptrace { source, .. } if source.raw_os_error() == Some(libc::ESRCH))
}

/// A stub process: shared by its address space, its contexts and its seeds; killed and
/// reaped when the last of them goes.
struct Stub {
    pid: libc::pid_t,
    /// Registers of the stub when it became ready: the template for injected calls
    /// (segment selectors, flags).
    template: Regs,
    /// The process leader, the first thread. Reaped here, when the process goes (a leader
    /// that exits before the other threads stays a zombie until they are gone), unless the
    /// whole stub died and its tracer's wait reaped it.
    leader: Arc<StubThread>,
    /// Which stub thread each host thread (by `gettid`) traces.
    tracees: Mutex<HashMap<libc::pid_t, Arc<StubThread>>>,
}

/// What may still be done with a stub thread's tid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Traced and alive (as far as we know): it may be signalled.
    Running,
    /// Being ended or ended, not yet reaped: not to be signalled any more.
    Exiting,
    /// Reaped: its tid may belong to someone else now.
    Reaped,
}

/// One stub thread, as seen from the host thread that traces it (every ptrace request and
/// wait below must come from that host thread), and the handle other host threads use to
/// interrupt it.
struct StubThread {
    /// The stub process (thread group) it belongs to.
    pid: libc::pid_t,
    tid: libc::pid_t,
    life: Mutex<Life>,
}

enum WaitEvent {
    /// A syscall-entry stop (`SIGTRAP|0x80`).
    Syscall,
    /// A signal-delivery stop with this signal (or, for the leader, a group-stop, which
    /// looks the same and is handled the same: resume without the signal).
    Signal(i32),
    /// A `PTRACE_EVENT_*` stop (`PTRACE_EVENT_STOP` after `PTRACE_INTERRUPT` or in a
    /// group-stop, `PTRACE_EVENT_EXIT`).
    Event(i32),
    /// The thread exited or was killed, and this wait reaped it.
    Gone(String),
}

impl StubThread {
    fn new(pid: libc::pid_t, tid: libc::pid_t) -> StubThread {
        StubThread {
            pid,
            tid,
            life: Mutex::new(Life::Running),
        }
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_leader(&self) -> bool {
        self.tid == self.pid
    }

    fn ptrace(
        &self,
        request: libc::c_uint,
        addr: usize,
        data: usize,
        op: &'static str,
    ) -> Result<libc::c_long, PlatformError> {
        // SAFETY: callers pass requests whose `addr`/`data` are plain integers or point to
        // live, correctly sized buffers (see get_regs/set_regs/set_sigmask/siginfo/xstate).
        let r = unsafe { libc::ptrace(request, self.tid, addr, data) };
        if r < 0 {
            return Err(PlatformError::Ptrace {
                op,
                pid: self.tid,
                source: errno(),
            });
        }
        Ok(r)
    }

    /// Resume the thread with `request` (`PTRACE_CONT`, `PTRACE_SYSEMU`), suppressing the
    /// signal it stopped with, if any.
    fn resume(&self, request: libc::c_uint, op: &'static str) -> Result<(), PlatformError> {
        self.ptrace(request, 0, 0, op)?;
        Ok(())
    }

    fn get_regs(&self) -> Result<Regs, PlatformError> {
        let mut regs = Regs::default();
        self.ptrace(
            libc::PTRACE_GETREGS,
            0,
            (&raw mut regs) as usize,
            "PTRACE_GETREGS",
        )?;
        Ok(regs)
    }

    fn set_regs(&self, regs: &Regs) -> Result<(), PlatformError> {
        self.ptrace(
            libc::PTRACE_SETREGS,
            0,
            std::ptr::from_ref(regs) as usize,
            "PTRACE_SETREGS",
        )?;
        Ok(())
    }

    /// Set the thread's host signal mask (bit `n - 1` blocks signal `n`).
    fn set_sigmask(&self, mask: u64) -> Result<(), PlatformError> {
        self.ptrace(
            libc::PTRACE_SETSIGMASK,
            std::mem::size_of::<u64>(),
            (&raw const mask) as usize,
            "PTRACE_SETSIGMASK",
        )?;
        Ok(())
    }

    /// Wait for the next stop (or the end) of this thread, and only this thread.
    fn wait(&self) -> Result<WaitEvent, PlatformError> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-parameter.
            let r = unsafe { libc::waitpid(self.tid, &raw mut status, libc::__WALL) };
            if r == self.tid {
                break;
            }
            let err = errno();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(PlatformError::Ptrace {
                    op: "waitpid",
                    pid: self.tid,
                    source: err,
                });
            }
        }
        let how = if libc::WIFEXITED(status) {
            format!("exited with status {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            let sig = libc::WSTOPSIG(status);
            let event = status >> 16;
            return Ok(if event != 0 {
                WaitEvent::Event(event)
            } else if sig == libc::SIGTRAP | 0x80 {
                WaitEvent::Syscall
            } else {
                WaitEvent::Signal(sig)
            });
        };
        *self.life() = Life::Reaped;
        Ok(WaitEvent::Gone(how))
    }

    fn died(&self, how: String) -> PlatformError {
        PlatformError::StubDied { pid: self.tid, how }
    }

    /// Run one system call in this thread from the gadget at `at` and return its raw result.
    fn inject(
        &self,
        template: &Regs,
        at: u64,
        nr: i64,
        args: [u64; 6],
    ) -> Result<i64, PlatformError> {
        let mut regs = *template;
        regs.rax = nr as u64;
        // Not in a system call: the host must not "restart" one when the thread resumes.
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        regs.rip = at;
        self.set_regs(&regs)?;
        self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?;
        loop {
            match self.wait()? {
                WaitEvent::Signal(libc::SIGTRAP) => break,
                // A host signal sent to the stub (an interrupt among them: the kernel looks at
                // its state before running application code again) or a group-stop while it
                // ran our call: drop it, keep going.
                WaitEvent::Signal(sig) if !is_fault(sig) => {
                    self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?;
                }
                WaitEvent::Event(_) => self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?,
                WaitEvent::Gone(how) => return Err(self.died(how)),
                WaitEvent::Signal(sig) => {
                    return Err(self.died(format!(
                        "injected system call {nr} stopped with signal {sig}"
                    )));
                }
                WaitEvent::Syscall => {
                    return Err(self.died(format!(
                        "injected system call {nr} stopped at a system call"
                    )));
                }
            }
        }
        Ok(self.get_regs()?.rax as i64)
    }

    fn inject_checked(
        &self,
        template: &Regs,
        op: &'static str,
        nr: i64,
        args: [u64; 6],
    ) -> Result<i64, PlatformError> {
        let r = self.inject(template, stub::gadget_address(), nr, args)?;
        check_injected(op, r)
    }

    /// Seize a new thread waiting in the stub's loop and stop it (`PTRACE_EVENT_STOP`).
    fn seize(&self, template: &Regs) -> Result<(), PlatformError> {
        self.ptrace(
            libc::PTRACE_SEIZE,
            0,
            TRACE_OPTIONS as usize,
            "PTRACE_SEIZE",
        )?;
        let stopped = (|| {
            self.ptrace(libc::PTRACE_INTERRUPT, 0, 0, "PTRACE_INTERRUPT")?;
            loop {
                match self.wait()? {
                    WaitEvent::Event(libc::PTRACE_EVENT_STOP) => return Ok(()),
                    WaitEvent::Gone(how) => return Err(self.died(how)),
                    // Only a SIGSTOP from the host can stop it before (every other signal
                    // is blocked); suppress it, the interrupt stays pending.
                    _ => self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?,
                }
            }
        })();
        if stopped.is_err() {
            // Traced by us in an unknown state: end it now rather than have our exit kill
            // the whole stub.
            let _ = self.exit(template);
        }
        stopped
    }

    /// Make the thread exit (injecting `exit` with registers from `template`) and reap it.
    ///
    /// The leader is not reaped here: the host reports its end only once every other
    /// thread is gone, so waiting for it could take as long as the whole process. It is
    /// detached at its exit instead (`PTRACE_EVENT_EXIT`) and left as a zombie for
    /// [`Stub`]'s drop. If the thread is already dead this only reaps it (a non-leader that
    /// died in its tracer's hands is not released until its tracer waits for it).
    fn exit(&self, template: &Regs) -> Result<(), PlatformError> {
        {
            let mut life = self.life();
            if *life == Life::Reaped {
                return Ok(());
            }
            *life = Life::Exiting;
        }
        loop {
            match self.exit_traced(template) {
                // Not stopped: killed (with the whole stub), so its end is on its way; or,
                // after an earlier failure, still running, and now stopped again: retry.
                Err(e) if is_gone(&e) && !self.is_leader() => {
                    if let WaitEvent::Gone(_) = self.wait()? {
                        return Ok(());
                    }
                }
                // The leader's end is not reported while other threads live: leave it.
                Err(e) if is_gone(&e) => return Ok(()),
                other => return other,
            }
        }
    }

    fn exit_traced(&self, template: &Regs) -> Result<(), PlatformError> {
        let leader = self.is_leader();
        if leader {
            self.ptrace(
                libc::PTRACE_SETOPTIONS,
                0,
                (TRACE_OPTIONS | libc::PTRACE_O_TRACEEXIT) as usize,
                "PTRACE_SETOPTIONS",
            )?;
        }
        let mut regs = *template;
        regs.rax = libc::SYS_exit as u64;
        regs.rdi = 0;
        regs.orig_rax = u64::MAX;
        regs.rip = stub::gadget_address();
        self.set_regs(&regs)?;
        self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?;
        loop {
            match self.wait()? {
                WaitEvent::Gone(_) => return Ok(()),
                WaitEvent::Event(libc::PTRACE_EVENT_EXIT) if leader => {
                    // Untraced from here on, it finishes exiting; our own exit can no longer
                    // take the stub down with it.
                    self.ptrace(libc::PTRACE_DETACH, 0, 0, "PTRACE_DETACH")?;
                    return Ok(());
                }
                // Host signals (an interrupt sent before we marked the thread) and stops:
                // suppress, go on exiting.
                _ => self.resume(libc::PTRACE_CONT, "PTRACE_CONT")?,
            }
        }
    }
}

impl Interrupter for StubThread {
    fn interrupt(&self) {
        // Holding the lock keeps the thread from being marked exiting meanwhile: it is traced,
        // so the signal can only stop it. (A thread is marked reaped just after the wait that
        // reaped it; until the whole stub is reaped its leader keeps the stub's tgid, so a tid
        // reused in that instant belongs to another thread group and tgkill refuses it.)
        let life = self.life();
        if *life == Life::Running {
            // SAFETY: tgkill on integers; at worst it fails (ESRCH if the thread just died).
            unsafe {
                libc::syscall(libc::SYS_tgkill, self.pid, self.tid, INTERRUPT_SIGNAL);
            }
        }
    }
}

fn check_injected(op: &'static str, r: i64) -> Result<i64, PlatformError> {
    if (-4095..0).contains(&r) {
        return Err(PlatformError::Injected {
            op,
            errno: -r as i32,
        });
    }
    Ok(r)
}

impl Stub {
    fn spawn(memory: &MemoryFile) -> Result<Stub, PlatformError> {
        assert!(
            stub::code_len() <= crate::STUB_LEN,
            "stub code outgrew its page"
        );
        // Everything the child needs is prepared before fork: it must not allocate.
        let filter = stub_filter();
        let fprog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        let memfd = memory.fd();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let entry = stub::entry();

        // Tracer and stub never run at the same time; on one CPU each switch is a local
        // wake-up (about 5 us) instead of a cross-CPU one (about 15 us on these machines).
        pin_to_current_cpu();
        // SAFETY: the child only makes async-signal-safe raw system calls and then jumps into
        // the stub code, never returning into Rust (see `child`).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(PlatformError::StubCreate(errno()));
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child; `fprog` and `filter` live on in our copy
            // of the parent's memory until the stub has installed the filter.
            unsafe { child(parent, memfd, entry, &raw const fprog) }
        }
        let mut stub = Stub {
            pid,
            template: Regs::default(),
            leader: Arc::new(StubThread::new(pid, pid)),
            tracees: Mutex::new(HashMap::new()),
        };
        let leader = stub.leader.clone();

        // First stop: the child's SIGSTOP after PTRACE_TRACEME.
        match leader.wait()? {
            WaitEvent::Signal(libc::SIGSTOP) => {}
            WaitEvent::Signal(sig) => return Err(PlatformError::StubSetup(sig)),
            WaitEvent::Syscall | WaitEvent::Event(_) => {
                return Err(PlatformError::StubSetup(libc::SIGTRAP))
            }
            WaitEvent::Gone(how) => return Err(leader.died(how)),
        }
        leader.ptrace(
            libc::PTRACE_SETOPTIONS,
            0,
            TRACE_OPTIONS as usize,
            "PTRACE_SETOPTIONS",
        )?;
        // From here on the stub dies with this host thread (EXITKILL); its code starts by
        // clearing the parent-death signal (see `stub`).
        leader.resume(libc::PTRACE_CONT, "PTRACE_CONT")?;
        // Second stop: the int3 that ends the stub's set-up.
        match leader.wait()? {
            WaitEvent::Signal(libc::SIGTRAP) => {}
            WaitEvent::Signal(sig) => return Err(PlatformError::StubSetup(sig)),
            WaitEvent::Syscall | WaitEvent::Event(_) => {
                return Err(PlatformError::StubSetup(libc::SIGTRAP))
            }
            WaitEvent::Gone(how) => return Err(leader.died(how)),
        }
        stub.template = leader.get_regs()?;
        Ok(stub)
    }

    /// The stub thread traced by the calling host thread.
    fn caller(&self) -> Result<Arc<StubThread>, PlatformError> {
        self.tracees()
            .get(&gettid())
            .cloned()
            .ok_or(PlatformError::NotAttached)
    }

    fn tracees(&self) -> MutexGuard<'_, HashMap<libc::pid_t, Arc<StubThread>>> {
        self.tracees.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if *self.leader.life() == Life::Reaped {
            // Every thread is gone and the pid may be someone else's.
            return;
        }
        // Every context and seed is gone, so every other thread has exited and been reaped
        // (or was never traced): the leader (perhaps already a zombie) is all that is left.
        // SAFETY: kill and waitpid on our own child (its parent is one of Moat's threads,
        // which all may wait for it); the status is discarded.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL) < 0
                && errno().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

/// The forked child: confine what must be set from outside, ask to be traced, then jump into
/// the stub code, which never returns.
///
/// # Safety
/// Must only be called in a freshly forked child. Only raw system calls are made: no
/// allocation, no locks.
// SAFETY: an `unsafe fn` because its contract (above) cannot be checked by the compiler; the
// only caller is the fork branch in `new_address_space`.
unsafe fn child(
    parent: libc::pid_t,
    memfd: i32,
    entry: usize,
    fprog: *const libc::sock_fprog,
) -> ! {
    // SAFETY: plain system calls on integers and on our own empty signal set.
    unsafe {
        // Die with the host thread that forked us until the tracer has set
        // PTRACE_O_EXITKILL (Moat might die during the set-up); the stub code clears it as it
        // starts, so that the stub outlives this host thread (see `stub`).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        // Its own session: the terminal's signals (^C) go to Moat, never to the stub.
        libc::setsid();
        if libc::dup2(memfd, STUB_MEMFD_FD) < 0 {
            libc::_exit(2);
        }
        libc::syscall(libc::SYS_close_range, 0, STUB_MEMFD_FD - 1, 0);
        libc::syscall(libc::SYS_close_range, STUB_MEMFD_FD + 1, u32::MAX, 0);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            libc::_exit(3);
        }
        // glibc registered an rseq area for this thread; the host kernel would fault writing
        // it once the stub has unmapped Moat's memory, so unregister it first.
        if !crate::host::unregister_rseq() {
            libc::_exit(5);
        }
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            libc::_exit(4);
        }
        libc::kill(libc::getpid(), libc::SIGSTOP);
        core::arch::asm!("jmp {entry}", entry = in(reg) entry, in("rdi") fprog, options(noreturn));
    }
}

/// A stub's address space.
struct PtraceAddressSpace {
    stub: Arc<Stub>,
}

impl AddressSpace for PtraceAddressSpace {
    fn map(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        file_offset: u64,
    ) -> Result<(), PlatformError> {
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let r = self.stub.caller()?.inject_checked(
            &self.stub.template,
            "mmap",
            libc::SYS_mmap,
            [
                addr,
                len,
                u64::from(prot.0),
                flags,
                STUB_MEMFD_FD as u64,
                file_offset,
            ],
        )?;
        debug_assert_eq!(r as u64, addr);
        Ok(())
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.stub.caller()?.inject_checked(
            &self.stub.template,
            "munmap",
            libc::SYS_munmap,
            [addr, len, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.stub.caller()?.inject_checked(
            &self.stub.template,
            "mprotect",
            libc::SYS_mprotect,
            [addr, len, u64::from(prot.0), 0, 0, 0],
        )?;
        Ok(())
    }

    fn new_thread(&mut self) -> Result<Box<dyn ThreadSeed>, PlatformError> {
        Ok(Box::new(self.new_seed()?))
    }

    fn fork(&mut self) -> Result<Option<Box<dyn crate::AddressSpaceSeed>>, PlatformError> {
        let pid = self.clone_stub(STUB_FORK_FLAGS)?;
        Ok(Some(Box::new(ForkSeed {
            pid: Some(pid),
            template: self.stub.template,
        })))
    }

    fn cpu_time(&self) -> Result<Duration, PlatformError> {
        process_cpu_time(self.stub.pid)
    }
}

impl PtraceAddressSpace {
    fn new_seed(&mut self) -> Result<PtraceSeed, PlatformError> {
        let tid = self.clone_stub(STUB_CLONE_FLAGS)?;
        Ok(PtraceSeed {
            stub: self.stub.clone(),
            tid: Some(tid),
        })
    }

    /// Inject `clone(flags)` at the clone gadget through the caller's stub thread: the child
    /// (a thread, or a copy of the stub process) waits in the gadget's loop, every signal
    /// blocked, until a host thread seizes it. Returns its tid.
    fn clone_stub(&mut self, flags: u64) -> Result<libc::pid_t, PlatformError> {
        let parent = self.stub.caller()?;
        // The child inherits the parent's signal mask: block everything around the clone so
        // that it waits with every signal blocked. Untraced, it must not take any: the
        // default action of most would kill the stub, and the handlers it inherited from Moat
        // point into memory the stub no longer has. Signals meanwhile sent to the parent
        // stay pending until its mask is restored.
        parent.set_sigmask(!0)?;
        let cloned = parent.inject(
            &self.stub.template,
            stub::clone_gadget_address(),
            libc::SYS_clone,
            [flags, 0, 0, 0, 0, 0],
        );
        let restored = parent.set_sigmask(0);
        let tid = check_injected("clone", cloned?)? as libc::pid_t;
        if let Err(e) = restored {
            // The child waits untraced: end it rather than leave it behind.
            // SAFETY: tgkill on a thread we just created; SIGKILL ends its whole process
            // only for a copy of the stub, which is what we want then too.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    if flags == STUB_FORK_FLAGS {
                        tid
                    } else {
                        self.stub.pid
                    },
                    tid,
                    libc::SIGKILL,
                );
            }
            return Err(e);
        }
        Ok(tid)
    }
}

/// A copy of a stub process made by [`AddressSpace::fork`], waiting in the clone gadget's
/// loop until its task's host thread attaches.
struct ForkSeed {
    /// The new stub process, until it is attached.
    pid: Option<libc::pid_t>,
    template: Regs,
}

impl crate::AddressSpaceSeed for ForkSeed {
    fn attach(mut self: Box<Self>) -> Result<NewAddressSpace, PlatformError> {
        let pid = self.pid.take().expect("a seed is attached once");
        let leader = Arc::new(StubThread::new(pid, pid));
        let stub = Arc::new(Stub {
            pid,
            template: self.template,
            leader: leader.clone(),
            tracees: Mutex::new(HashMap::new()),
        });
        // From here on the stub's drop kills and reaps the process if anything fails.
        leader.seize(&stub.template)?;
        if let Some(cpu) = pin_to_current_cpu() {
            pin(pid, cpu);
        }
        let context = PtraceContext::new(stub.clone(), leader);
        context.thread.set_sigmask(0)?;
        Ok((Box::new(PtraceAddressSpace { stub }), Box::new(context)))
    }
}

impl Drop for ForkSeed {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // Never attached: the copy is our child (CLONE_PARENT), end and reap it.
            // SAFETY: kill and waitpid on our own child; the status is discarded.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                while libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) < 0
                    && errno().raw_os_error() == Some(libc::EINTR)
                {}
            }
        }
    }
}

/// A stub thread started by [`AddressSpace::new_thread`], waiting in the stub's loop.
struct PtraceSeed {
    stub: Arc<Stub>,
    /// The new thread, until it is attached.
    tid: Option<libc::pid_t>,
}

impl PtraceSeed {
    /// Seize the thread and stop it (the calling host thread becomes its tracer).
    fn seize(&mut self) -> Result<Option<Arc<StubThread>>, PlatformError> {
        let Some(tid) = self.tid.take() else {
            return Ok(None);
        };
        let thread = Arc::new(StubThread::new(self.stub.pid, tid));
        thread.seize(&self.stub.template)?;
        Ok(Some(thread))
    }
}

impl ThreadSeed for PtraceSeed {
    fn attach(mut self: Box<Self>) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(self.attach_context()?))
    }
}

impl PtraceSeed {
    fn attach_context(&mut self) -> Result<PtraceContext, PlatformError> {
        let thread = self.seize()?.expect("a seed is attached once");
        // Run next to the host thread, like the first thread (see `Stub::spawn`).
        if let Some(cpu) = pin_to_current_cpu() {
            pin(thread.tid, cpu);
        }
        // From here on the context's drop ends the thread if anything fails.
        let context = PtraceContext::new(self.stub.clone(), thread);
        // Unblock its signals: an interrupt must stop it (see `new_thread`).
        context.thread.set_sigmask(0)?;
        Ok(context)
    }
}

impl Drop for PtraceSeed {
    fn drop(&mut self) {
        // Never attached: attach it here just long enough to end it.
        match self.seize() {
            Ok(Some(thread)) => {
                if let Err(e) = thread.exit(&self.stub.template) {
                    tracing::warn!("ending unattached stub thread {}: {e}", thread.tid);
                }
            }
            Ok(None) => {}
            // Gone with the whole stub (it was untraced: the host reaps it itself).
            Err(e) if is_gone(&e) => {}
            Err(e) => tracing::warn!("ending an unattached stub thread: {e}"),
        }
    }
}

/// One stub thread, driven by the host thread that created or attached it.
struct PtraceContext {
    stub: Arc<Stub>,
    thread: Arc<StubThread>,
    /// The host thread tracing `thread`.
    host_tid: libc::pid_t,
    /// Size of the XSAVE area the host reports, learned on first use.
    xstate_len: usize,
    /// `/proc/<pid>/task/<tid>/schedstat`, opened on first use.
    schedstat: Option<File>,
}

const NT_X86_XSTATE: usize = 0x202;

impl PtraceContext {
    /// A context for `thread`, traced by the calling host thread: register it so that the
    /// address space injects this host thread's calls through it.
    fn new(stub: Arc<Stub>, thread: Arc<StubThread>) -> PtraceContext {
        let host_tid = gettid();
        // One context per address space per host thread: a second would replace the first.
        stub.tracees().insert(host_tid, thread.clone());
        PtraceContext {
            stub,
            thread,
            host_tid,
            xstate_len: 0,
            schedstat: None,
        }
    }
}

impl Context for PtraceContext {
    fn switch(&mut self, regs: &mut Regs) -> Result<Trap, PlatformError> {
        let thread = &self.thread;
        thread.set_regs(regs)?;
        thread.resume(libc::PTRACE_SYSEMU, "PTRACE_SYSEMU")?;
        loop {
            match thread.wait()? {
                WaitEvent::Syscall => {
                    *regs = thread.get_regs()?;
                    return Ok(Trap::Syscall);
                }
                WaitEvent::Signal(INTERRUPT_SIGNAL) => {
                    // Suppressed by the next resume, whichever it is.
                    *regs = thread.get_regs()?;
                    return Ok(Trap::Interrupted);
                }
                WaitEvent::Signal(sig) if is_fault(sig) => {
                    // SAFETY: siginfo_t is plain data; PTRACE_GETSIGINFO fills it.
                    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    thread.ptrace(
                        libc::PTRACE_GETSIGINFO,
                        0,
                        (&raw mut info) as usize,
                        "PTRACE_GETSIGINFO",
                    )?;
                    *regs = thread.get_regs()?;
                    // SAFETY: for the fault signals the union holds the `si_addr` member.
                    let addr = unsafe { info.si_addr() } as u64;
                    return Ok(Trap::Fault {
                        signo: sig,
                        code: info.si_code,
                        addr,
                    });
                }
                // Any other host signal (someone on the host signalled the stub), or a
                // group-stop: the application receives signals only from Moat, so drop it.
                WaitEvent::Signal(_) | WaitEvent::Event(_) => {
                    thread.resume(libc::PTRACE_SYSEMU, "PTRACE_SYSEMU")?;
                }
                WaitEvent::Gone(how) => return Err(thread.died(how)),
            }
        }
    }

    fn cpu_time(&mut self) -> Result<Duration, PlatformError> {
        thread_cpu_time(&mut self.schedstat, self.stub.pid, self.thread.tid)
    }

    fn fp_state(&mut self) -> Result<Vec<u8>, PlatformError> {
        let mut buf = vec![
            0u8;
            if self.xstate_len == 0 {
                64 * 1024
            } else {
                self.xstate_len
            }
        ];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        self.thread.ptrace(
            libc::PTRACE_GETREGSET,
            NT_X86_XSTATE,
            (&raw mut iov) as usize,
            "PTRACE_GETREGSET",
        )?;
        self.xstate_len = iov.iov_len;
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    fn set_fp_state(&mut self, state: &[u8]) -> Result<(), PlatformError> {
        let mut iov = libc::iovec {
            iov_base: state.as_ptr().cast_mut().cast(),
            iov_len: state.len(),
        };
        self.thread.ptrace(
            libc::PTRACE_SETREGSET,
            NT_X86_XSTATE,
            (&raw mut iov) as usize,
            "PTRACE_SETREGSET",
        )?;
        Ok(())
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.thread.clone()
    }
}

impl Drop for PtraceContext {
    /// End the stub thread (see [`StubThread::exit`]); the address space lives on for the
    /// other threads.
    fn drop(&mut self) {
        {
            let mut tracees = self.stub.tracees();
            if tracees
                .get(&self.host_tid)
                .is_some_and(|t| Arc::ptr_eq(t, &self.thread))
            {
                tracees.remove(&self.host_tid);
            }
        }
        if gettid() != self.host_tid {
            // Only the tracer can end it; waiting from here could block for ever.
            tracing::error!(
                "context of stub thread {} dropped on host thread {} instead of {}: \
                 the stub dies when its tracer ends",
                self.thread.tid,
                gettid(),
                self.host_tid
            );
            let mut life = self.thread.life();
            if *life == Life::Running {
                *life = Life::Exiting;
            }
            return;
        }
        if let Err(e) = self.thread.exit(&self.stub.template) {
            tracing::warn!("ending stub thread {}: {e}", self.thread.tid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Instant;

    const CODE: u64 = 0x40_0000;
    const DATA: u64 = 0x50_0000;
    const RX: Prot = Prot(Prot::READ.0 | Prot::EXEC.0);
    const RW: Prot = Prot(Prot::READ.0 | Prot::WRITE.0);

    fn user_regs(rip: u64) -> Regs {
        let mut regs = Regs {
            rip,
            ..Regs::default()
        };
        regs.cs = 0x33;
        regs.ss = 0x2b;
        regs.eflags = 0x202;
        regs
    }

    /// A page of the memory file holding `bytes` at `at`.
    fn page(memory: &MemoryFile, at: u64, bytes: &[u8]) -> u64 {
        let range = memory.allocate(4096).unwrap();
        memory.write(range.offset + at, bytes);
        range.offset
    }

    fn read_u64(memory: &MemoryFile, offset: u64) -> u64 {
        let mut buf = [0u8; 8];
        memory.read(offset, &mut buf);
        u64::from_ne_bytes(buf)
    }

    /// The host's start time of process `pid` (field 22 of its stat), to tell it from a
    /// later process with the same pid.
    fn start_time(pid: libc::pid_t) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        after_name.split(' ').nth(19)?.parse().ok()
    }

    fn assert_process_gone(pid: libc::pid_t, started: Option<u64>) {
        assert!(started.is_some());
        assert_ne!(
            start_time(pid),
            started,
            "stub {pid} outlived its last user"
        );
    }

    fn thread_exists(pid: libc::pid_t, tid: libc::pid_t) -> bool {
        std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
    }

    /// Build a tiny program in the memory file, map it into a fresh stub and run it:
    /// `mov $39, %eax; syscall; mov (%rbx), %rax; ud2` — a system call, then a fault.
    #[test]
    fn stub_runs_code_and_traps() {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = PtracePlatform.new_address_space(&memory).unwrap();
        let code = memory.allocate(4096).unwrap();
        memory.write(
            code.offset,
            &[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x48, 0x8b, 0x03, 0x0f, 0x0b],
        );
        aspace
            .map(
                0x40_0000,
                4096,
                Prot(Prot::READ.0 | Prot::EXEC.0),
                code.offset,
            )
            .unwrap();

        let mut regs = Regs {
            rip: 0x40_0000,
            rbx: 0x1234_0000,
            ..Regs::default()
        };
        regs.cs = 0x33;
        regs.ss = 0x2b;
        regs.eflags = 0x202;
        assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
        assert_eq!(regs.orig_rax, 39);
        assert_eq!(regs.rip, 0x40_0007);
        regs.rax = 77;
        let trap = ctx.switch(&mut regs).unwrap();
        assert_eq!(
            trap,
            Trap::Fault {
                signo: libc::SIGSEGV,
                code: 1,
                addr: 0x1234_0000
            }
        );
        assert_eq!(
            regs.rax, 77,
            "the syscall result must be what the kernel wrote"
        );
        assert!(!ctx.fp_state().unwrap().is_empty());
    }

    /// `addq $1, (%rbx); mov $39, %eax; syscall` at offset 0, `mov (%rdx), %rsi;
    /// mov $186, %eax; syscall` at offset 0x20.
    const COUNTER: &[u8] = &[0x48, 0x83, 0x03, 0x01, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
    const READER: &[u8] = &[0x48, 0x8b, 0x32, 0xb8, 186, 0, 0, 0, 0x0f, 0x05];

    fn count(ctx: &mut dyn Context, counter: u64, rounds: u64) {
        for _ in 0..rounds {
            let mut regs = user_regs(CODE);
            regs.rbx = counter;
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
            assert_eq!(regs.orig_rax, 39);
            assert_eq!(regs.rip, CODE + COUNTER.len() as u64);
            assert_eq!(regs.rbx, counter);
        }
    }

    /// A copy of an address space (`fork`) runs on another host thread with every mapping
    /// the original had, and the two are independent afterwards.
    #[test]
    fn forked_copy_keeps_the_mappings() {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = PtracePlatform.new_address_space(&memory).unwrap();
        let code = memory.allocate(4096).unwrap();
        // `mov $39, %eax; syscall`.
        memory.write(code.offset, &[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
        aspace
            .map(
                0x40_0000,
                4096,
                Prot(Prot::READ.0 | Prot::EXEC.0),
                code.offset,
            )
            .unwrap();
        let seed = aspace
            .fork()
            .unwrap()
            .expect("ptrace copies address spaces");
        let child = std::thread::spawn(move || {
            let (mut copy, mut copy_ctx) = seed.attach().unwrap();
            let mut regs = user_regs(0x40_0000);
            assert_eq!(
                copy_ctx.switch(&mut regs).unwrap(),
                Trap::Syscall,
                "code inherited"
            );
            // Unmapping in the copy leaves the original alone.
            copy.unmap(0x40_0000, 4096).unwrap();
            let mut regs = user_regs(0x40_0000);
            assert!(matches!(
                copy_ctx.switch(&mut regs).unwrap(),
                Trap::Fault {
                    signo: libc::SIGSEGV,
                    ..
                }
            ));
        });
        child.join().unwrap();
        let mut regs = user_regs(0x40_0000);
        assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    }

    /// Two host threads run two stub threads of one address space at the same time; the
    /// second maps memory through its own stub thread, then ends while the first goes on.
    #[test]
    fn threads_share_an_address_space() {
        const ROUNDS: u64 = 500;
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = PtracePlatform::spawn(&memory).unwrap();
        let pid = aspace.stub.pid;
        let started = start_time(pid);
        let mut code = COUNTER.to_vec();
        code.resize(0x20, 0x90);
        code.extend_from_slice(READER);
        aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
        let data = page(&memory, 0, &[]);
        aspace.map(DATA, 4096, RW, data).unwrap();

        let t0 = Instant::now();
        let mut seed = aspace.new_seed().unwrap();
        let cloned = t0.elapsed();
        let tid = seed.tid.unwrap();
        assert!(thread_exists(pid, tid));

        let aspace = Arc::new(Mutex::new(aspace));
        let barrier = Arc::new(Barrier::new(2));
        let second = std::thread::spawn({
            let (aspace, barrier, memory) = (aspace.clone(), barrier.clone(), memory.clone());
            move || {
                let t1 = Instant::now();
                let mut ctx = seed.attach_context().unwrap();
                let attached = t1.elapsed();
                assert_eq!(ctx.thread.tid, tid);
                barrier.wait();
                // Both threads count at the same time, each in its own word.
                count(&mut ctx, DATA + 8, ROUNDS);
                barrier.wait();
                // A mapping made through this host thread's own stub thread...
                let other = page(&memory, 0, &0x5eed_u64.to_ne_bytes());
                aspace
                    .lock()
                    .unwrap()
                    .map(DATA + 0x1000, 4096, RW, other)
                    .unwrap();
                // ...seen by this thread, which also reads what the first thread wrote.
                let mut regs = user_regs(CODE + 0x20);
                regs.rdx = DATA + 0x1000;
                assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
                assert_eq!((regs.orig_rax, regs.rsi), (186, 0x5eed));
                regs = user_regs(CODE + 0x20);
                regs.rdx = DATA;
                assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
                assert_eq!(regs.rsi, ROUNDS);
                assert!(ctx.cpu_time().unwrap() > Duration::ZERO);
                drop(ctx);
                // Without a context, this host thread cannot change the address space.
                let err = aspace.lock().unwrap().unmap(DATA, 4096).unwrap_err();
                assert!(matches!(err, PlatformError::NotAttached), "{err}");
                attached
            }
        });
        barrier.wait();
        count(&mut ctx, DATA, ROUNDS);
        barrier.wait();
        let attached = second.join().unwrap();
        eprintln!("new_thread took {cloned:?}, attach {attached:?}");

        assert_eq!(read_u64(&memory, data), ROUNDS);
        assert_eq!(read_u64(&memory, data + 8), ROUNDS);
        assert!(
            !thread_exists(pid, tid),
            "the second stub thread must be gone"
        );
        // The first thread goes on, and its host thread still changes the address space.
        aspace.lock().unwrap().unmap(DATA + 0x1000, 4096).unwrap();
        count(&mut ctx, DATA, 1);
        assert_eq!(read_u64(&memory, data), ROUNDS + 1);
        assert!(aspace.lock().unwrap().cpu_time().unwrap() >= ctx.cpu_time().unwrap());

        drop(ctx);
        drop(aspace);
        assert_process_gone(pid, started);
    }

    /// The host thread that created the address space ends (its task exited) while a thread
    /// attached elsewhere goes on: neither the parent-death signal nor `EXITKILL` may take
    /// the stub with it.
    #[test]
    fn first_thread_and_its_host_thread_end_first() {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (aspace, seed, pid) = std::thread::spawn({
            let memory = memory.clone();
            move || {
                let (mut aspace, mut ctx) = PtracePlatform::spawn(&memory).unwrap();
                aspace
                    .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
                    .unwrap();
                aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
                count(&mut ctx, DATA, 1);
                let seed = aspace.new_seed().unwrap();
                let pid = aspace.stub.pid;
                drop(ctx);
                (aspace, seed, pid)
            }
        })
        .join()
        .unwrap();
        let started = start_time(pid);
        let mut aspace = aspace;
        let mut ctx = Box::new(seed).attach().unwrap();
        // The leader has exited (it finishes on its own, untraced, and stays a zombie until
        // the process ends).
        let leader_state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"));
            let stat = stat.unwrap();
            stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while leader_state() != 'Z' {
            assert!(Instant::now() < deadline, "leader state {}", leader_state());
            std::thread::sleep(Duration::from_millis(1));
        }
        aspace
            .map(DATA + 0x1000, 4096, RW, page(&memory, 0, &[]))
            .unwrap();
        count(&mut *ctx, DATA + 0x1000, 3);
        count(&mut *ctx, DATA, 1);
        drop(aspace);
        count(&mut *ctx, DATA, 1);
        drop(ctx);
        assert_process_gone(pid, started);
    }

    /// The stub is killed from outside while two host threads drive it: their contexts fail
    /// and are dropped without hanging, in either order, and nothing is left.
    #[test]
    fn killed_stub_is_cleaned_up() {
        for leader_first in [false, true] {
            let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
            let (mut aspace, mut ctx) = PtracePlatform::spawn(&memory).unwrap();
            aspace
                .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
                .unwrap();
            aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
            let pid = aspace.stub.pid;
            let started = start_time(pid);
            let mut seed = aspace.new_seed().unwrap();
            let (attached_tx, attached_rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let second = std::thread::spawn(move || {
                let mut ctx = seed.attach_context().unwrap();
                count(&mut ctx, DATA + 8, 1);
                attached_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                assert!(ctx.switch(&mut user_regs(CODE)).is_err());
            });
            attached_rx.recv().unwrap();
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if leader_first {
                drop(ctx);
                go_tx.send(()).unwrap();
                second.join().unwrap();
            } else {
                go_tx.send(()).unwrap();
                second.join().unwrap();
                assert!(ctx.switch(&mut user_regs(CODE)).is_err());
                drop(ctx);
            }
            drop(aspace);
            assert_process_gone(pid, started);
        }
    }

    /// A seed dropped without being attached ends its thread.
    #[test]
    fn unattached_seed_ends_its_thread() {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = PtracePlatform::spawn(&memory).unwrap();
        aspace
            .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
            .unwrap();
        aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
        let pid = aspace.stub.pid;
        let seed = aspace.new_seed().unwrap();
        let tasks = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .count()
        };
        assert_eq!(tasks(), 2);
        // The new thread waits with every signal blocked (but the two that cannot be); its
        // parent's mask is empty again.
        let blocked = |tid: libc::pid_t| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"));
            let status = status.unwrap();
            let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let stop_and_kill = (1u64 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));
        assert_eq!(blocked(seed.tid.unwrap()) | stop_and_kill, u64::MAX);
        assert_eq!(blocked(pid), 0);
        drop(seed);
        assert_eq!(tasks(), 1);
        count(&mut ctx, DATA, 2);
    }

    /// A thread spinning in application code is kicked out by another host thread;
    /// interrupting it while stopped or after its end is harmless.
    #[test]
    fn interrupter_stops_a_spinning_thread() {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = PtracePlatform.new_address_space(&memory).unwrap();
        // `jmp .` at CODE, `mov $39, %eax; syscall` at CODE + 0x10.
        let mut code = vec![0xeb, 0xfe];
        code.resize(0x10, 0x90);
        code.extend_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
        aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
        let interrupter = ctx.interrupter();
        let cpu_before = ctx.cpu_time().unwrap();

        let mut round_trips = Vec::new();
        for _ in 0..5 {
            let sent = Arc::new(Mutex::new(None));
            let kicker = std::thread::spawn({
                let (interrupter, sent) = (interrupter.clone(), sent.clone());
                move || {
                    std::thread::sleep(Duration::from_millis(20));
                    *sent.lock().unwrap() = Some(Instant::now());
                    interrupter.interrupt();
                }
            });
            let mut regs = user_regs(CODE);
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Interrupted);
            let back = Instant::now();
            kicker.join().unwrap();
            assert_eq!(regs.rip, CODE, "still in the loop");
            round_trips.push(back - sent.lock().unwrap().unwrap());
        }
        eprintln!("interrupt round trips: {round_trips:?}");
        // The spinning counts as the thread's CPU time (how much depends on the host's load).
        assert!(ctx.cpu_time().unwrap() > cpu_before);

        // Interrupted while stopped: at most one spurious interrupt, then on as usual.
        interrupter.interrupt();
        interrupter.interrupt();
        let mut spurious = 0;
        let mut regs = user_regs(CODE + 0x10);
        loop {
            match ctx.switch(&mut regs).unwrap() {
                Trap::Interrupted => spurious += 1,
                Trap::Syscall => break,
                trap @ Trap::Fault { .. } => panic!("{trap:?}"),
            }
        }
        assert!(spurious <= 1);
        assert_eq!(regs.orig_rax, 39);

        drop(ctx);
        interrupter.interrupt();
        drop(aspace);
        interrupter.interrupt();
    }
}
