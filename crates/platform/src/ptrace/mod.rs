//! The ptrace platform: one stub process per address space, driven with `PTRACE_SYSEMU`.
//!
//! The stub is forked from Moat, immediately empties itself (see [`stub`]) and then runs only
//! application code. Each application system call stops the stub at syscall entry and is
//! skipped by the host (`SYSEMU`): the kernel serves it and writes the result into `rax`.
//! Faults arrive as signal-delivery stops. To change the stub's mappings the kernel injects
//! `mmap`/`munmap`/`mprotect` by pointing the stub at a `syscall; int3` gadget in its own page.
//!
//! ptrace binds a tracee to the host thread that traced it, so a stub must be created and
//! driven by the same host thread (the task's thread in the kernel).

mod stub;

use std::sync::Arc;

use moat_abi::Regs;
use moat_memory::MemoryFile;

use crate::seccomp::{stub_filter, STUB_MEMFD_FD};
use crate::{AddressSpace, Context, NewAddressSpace, Platform, PlatformError, Prot, Trap};

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
        let stub = Arc::new(Stub::spawn(memory)?);
        Ok((
            Box::new(PtraceAddressSpace { stub: stub.clone() }),
            Box::new(PtraceContext {
                stub,
                xstate_len: 0,
            }),
        ))
    }
}

const _: () = assert!(std::mem::size_of::<Regs>() == std::mem::size_of::<libc::user_regs_struct>());

/// A stub process, killed and reaped when dropped.
struct Stub {
    pid: libc::pid_t,
    /// Registers of the stub when it became ready: the template for injected calls
    /// (segment selectors, flags).
    template: Regs,
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
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
        };

        // First stop: the child's SIGSTOP after PTRACE_TRACEME.
        match stub.wait()? {
            WaitEvent::Signal(libc::SIGSTOP) => {}
            WaitEvent::Signal(sig) | WaitEvent::Syscall(sig) => {
                return Err(PlatformError::StubSetup(sig))
            }
        }
        let options = libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD;
        stub.ptrace(
            libc::PTRACE_SETOPTIONS,
            0,
            options as usize,
            "PTRACE_SETOPTIONS",
        )?;
        stub.ptrace(libc::PTRACE_CONT, 0, 0, "PTRACE_CONT")?;
        // Second stop: the int3 that ends the stub's set-up.
        match stub.wait()? {
            WaitEvent::Signal(libc::SIGTRAP) => {}
            WaitEvent::Signal(sig) | WaitEvent::Syscall(sig) => {
                return Err(PlatformError::StubSetup(sig))
            }
        }
        stub.template = stub.get_regs()?;
        Ok(stub)
    }

    fn ptrace(
        &self,
        request: libc::c_uint,
        addr: usize,
        data: usize,
        op: &'static str,
    ) -> Result<libc::c_long, PlatformError> {
        // SAFETY: callers pass requests whose `addr`/`data` are plain integers or point to
        // live, correctly sized buffers (see get_regs/set_regs/siginfo/xstate).
        let r = unsafe { libc::ptrace(request, self.pid, addr, data) };
        if r < 0 {
            return Err(PlatformError::Ptrace {
                op,
                pid: self.pid,
                source: errno(),
            });
        }
        Ok(r)
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

    /// Wait for the next stop of the stub.
    fn wait(&self) -> Result<WaitEvent, PlatformError> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-parameter.
            let r = unsafe { libc::waitpid(self.pid, &raw mut status, libc::__WALL) };
            if r == self.pid {
                break;
            }
            let err = errno();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(PlatformError::Ptrace {
                    op: "waitpid",
                    pid: self.pid,
                    source: err,
                });
            }
        }
        if libc::WIFEXITED(status) {
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: format!("exited with status {}", libc::WEXITSTATUS(status)),
            });
        }
        if libc::WIFSIGNALED(status) {
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: format!("killed by signal {}", libc::WTERMSIG(status)),
            });
        }
        let sig = libc::WSTOPSIG(status);
        if sig == libc::SIGTRAP | 0x80 {
            return Ok(WaitEvent::Syscall(sig));
        }
        Ok(WaitEvent::Signal(sig))
    }

    /// Run one system call inside the stub (from its gadget) and return its raw result.
    fn inject(&self, nr: i64, args: [u64; 6]) -> Result<i64, PlatformError> {
        let mut regs = self.template;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        regs.rip = stub::gadget_address();
        self.set_regs(&regs)?;
        self.ptrace(libc::PTRACE_CONT, 0, 0, "PTRACE_CONT")?;
        loop {
            match self.wait()? {
                WaitEvent::Signal(libc::SIGTRAP) => break,
                // A host signal sent to the stub while it ran our call: drop it, keep going.
                WaitEvent::Signal(sig) if !is_fault(sig) => {
                    self.ptrace(libc::PTRACE_CONT, 0, 0, "PTRACE_CONT")?;
                }
                WaitEvent::Signal(sig) | WaitEvent::Syscall(sig) => {
                    return Err(PlatformError::StubDied {
                        pid: self.pid,
                        how: format!("injected system call {nr} stopped with signal {sig}"),
                    });
                }
            }
        }
        Ok(self.get_regs()?.rax as i64)
    }

    fn inject_checked(
        &self,
        op: &'static str,
        nr: i64,
        args: [u64; 6],
    ) -> Result<i64, PlatformError> {
        let r = self.inject(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(PlatformError::Injected {
                op,
                errno: -r as i32,
            });
        }
        Ok(r)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child; the status is discarded.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
        }
    }
}

/// Pin the calling thread to the CPU it runs on; a stub forked afterwards inherits the pin.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is plain data we own.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

enum WaitEvent {
    /// A syscall-entry stop (`SIGTRAP|0x80`).
    Syscall(i32),
    /// A signal-delivery stop with this signal.
    Signal(i32),
}

fn is_fault(sig: i32) -> bool {
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
const RSEQ_FLAG_UNREGISTER: u32 = 1;
const RSEQ_SIG: u32 = 0x5305_3053;

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
        if __rseq_size != 0 {
            let tp: usize;
            core::arch::asm!("mov %fs:0, {}", out(reg) tp, options(att_syntax, nostack, readonly));
            let area = tp.wrapping_add_signed(__rseq_offset);
            let unregistered = [__rseq_size, 32].iter().any(|&len| {
                libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0
            });
            if !unregistered {
                libc::_exit(5);
            }
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
        let r = self.stub.inject_checked(
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
        self.stub
            .inject_checked("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        Ok(())
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.stub.inject_checked(
            "mprotect",
            libc::SYS_mprotect,
            [addr, len, u64::from(prot.0), 0, 0, 0],
        )?;
        Ok(())
    }
}

/// The stub's (single, for now) thread.
struct PtraceContext {
    stub: Arc<Stub>,
    /// Size of the XSAVE area the host reports, learned on first use.
    xstate_len: usize,
}

const NT_X86_XSTATE: usize = 0x202;

impl Context for PtraceContext {
    fn switch(&mut self, regs: &mut Regs) -> Result<Trap, PlatformError> {
        let stub = &self.stub;
        stub.set_regs(regs)?;
        stub.ptrace(libc::PTRACE_SYSEMU, 0, 0, "PTRACE_SYSEMU")?;
        loop {
            match stub.wait()? {
                WaitEvent::Syscall(_) => {
                    *regs = stub.get_regs()?;
                    return Ok(Trap::Syscall);
                }
                WaitEvent::Signal(sig) if is_fault(sig) => {
                    // SAFETY: siginfo_t is plain data; PTRACE_GETSIGINFO fills it.
                    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    stub.ptrace(
                        libc::PTRACE_GETSIGINFO,
                        0,
                        (&raw mut info) as usize,
                        "PTRACE_GETSIGINFO",
                    )?;
                    *regs = stub.get_regs()?;
                    // SAFETY: for the fault signals the union holds the `si_addr` member.
                    let addr = unsafe { info.si_addr() } as u64;
                    return Ok(Trap::Fault {
                        signo: sig,
                        code: info.si_code,
                        addr,
                    });
                }
                // Any other host signal (someone on the host signalled the stub): the
                // application receives signals only from Moat, so drop it.
                WaitEvent::Signal(_) => {
                    stub.ptrace(libc::PTRACE_SYSEMU, 0, 0, "PTRACE_SYSEMU")?;
                }
            }
        }
    }

    fn cpu_time(&mut self) -> Result<std::time::Duration, PlatformError> {
        // The host's CPU clock of the stub process: `(~pid << 3) | CPUCLOCK_SCHED`.
        let clock = (!self.stub.pid << 3) | 2;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`.
        if unsafe { libc::clock_gettime(clock, &raw mut ts) } < 0 {
            return Err(PlatformError::Ptrace {
                op: "clock_gettime",
                pid: self.stub.pid,
                source: errno(),
            });
        }
        Ok(std::time::Duration::new(
            ts.tv_sec as u64,
            ts.tv_nsec as u32,
        ))
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
        self.stub.ptrace(
            libc::PTRACE_GETREGSET,
            NT_X86_XSTATE,
            (&raw mut iov) as usize,
            "PTRACE_GETREGSET",
        )?;
        self.xstate_len = iov.iov_len;
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    fn interrupter(&self) -> Arc<dyn crate::Interrupter> {
        struct Nothing;
        impl crate::Interrupter for Nothing {
            fn interrupt(&self) {}
        }
        Arc::new(Nothing)
    }

    fn set_fp_state(&mut self, state: &[u8]) -> Result<(), PlatformError> {
        let mut iov = libc::iovec {
            iov_base: state.as_ptr().cast_mut().cast(),
            iov_len: state.len(),
        };
        self.stub.ptrace(
            libc::PTRACE_SETREGSET,
            NT_X86_XSTATE,
            (&raw mut iov) as usize,
            "PTRACE_SETREGSET",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
