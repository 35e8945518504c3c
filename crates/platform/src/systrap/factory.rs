//! The stub maker: one host thread, alive as long as Moat, that forks every sandbox's first
//! stub process.
//!
//! A stub asks the host to kill it when its parent dies (`PR_SET_PDEATHSIG`), so that no stub
//! outlives Moat without ptrace's `PTRACE_O_EXITKILL`. The host's "parent" is the *thread*
//! that forked (and for copies made with `CLONE_PARENT`, that same thread): were it a task's
//! host thread, the stubs would die with that task. So one thread that never ends forks them
//! all; the host delivers the signal only when Moat's whole process goes.
//!
//! The forked child confines what must be set from outside (its session, its fds, no new
//! privileges, rseq off, every catchable signal handled by the stub's handler on its signal
//! stack, every signal blocked) and jumps into the stub code ([`super::stub`]), which never
//! returns.

use std::os::fd::RawFd;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::host::errno;
use crate::seccomp::{systrap_filter, STUB_MEMFD_FD};
use crate::{PlatformError, STUB_LEN};

use super::stub;

struct Request {
    memfd: RawFd,
    slot_offset: u64,
    reply: mpsc::Sender<Result<libc::pid_t, PlatformError>>,
}

/// Fork a stub whose first thread will use the slot at `slot_offset` of the memory file
/// `memfd`; returns its pid. The stub then starts on its own (see [`super::stub`]).
pub(super) fn make_stub(memfd: RawFd, slot_offset: u64) -> Result<libc::pid_t, PlatformError> {
    static MAKER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let maker = MAKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name("moat-stub-maker".into())
            .spawn(move || {
                for request in rx {
                    let r = fork_stub(request.memfd, request.slot_offset);
                    let _ = request.reply.send(r);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the stub maker thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let gone = || PlatformError::StubCreate(std::io::Error::other("the stub maker thread is gone"));
    maker
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Request {
            memfd,
            slot_offset,
            reply,
        })
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// The kernel's `struct sigaction` (what `rt_sigaction` takes).
#[repr(C)]
struct KernelSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

const SA_SIGINFO: u64 = 4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;

fn fork_stub(memfd: RawFd, slot_offset: u64) -> Result<libc::pid_t, PlatformError> {
    assert!(stub::code_len() <= STUB_LEN, "stub code outgrew its page");
    // Everything the child needs is prepared before fork: it must not allocate.
    let filter = systrap_filter();
    let fprog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    let action = KernelSigaction {
        handler: stub::handler_address(),
        flags: SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
        restorer: stub::restorer_address(),
        mask: !0,
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let entry = stub::entry();
    // SAFETY: the child only makes async-signal-safe raw system calls and then jumps into
    // the stub code, never returning into Rust (see `child`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(PlatformError::StubCreate(errno()));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; `fprog`, `filter` and `action` live on in
        // our copy of the parent's memory until the stub has installed them.
        unsafe { child(parent, memfd, slot_offset, entry, &raw const fprog, &action) }
    }
    Ok(pid)
}

/// The forked child.
///
/// # Safety
/// Must only be called in a freshly forked child. Only raw system calls are made: no
/// allocation, no locks.
// SAFETY: an `unsafe fn` because its contract (above) cannot be checked by the compiler; the
// only caller is the fork branch in `fork_stub`.
unsafe fn child(
    parent: libc::pid_t,
    memfd: RawFd,
    slot_offset: u64,
    entry: usize,
    fprog: *const libc::sock_fprog,
    action: &KernelSigaction,
) -> ! {
    // SAFETY: plain system calls on integers and on data we own.
    unsafe {
        // Nothing may be delivered before the thread has its signal stack (the stub code
        // unblocks signals once it has).
        let all: u64 = !0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const all,
            0usize,
            8usize,
        );
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
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            libc::_exit(3);
        }
        if !crate::host::unregister_rseq() {
            libc::_exit(5);
        }
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let r = libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::from_ref(action),
                0usize,
                8usize,
            );
            if r != 0 {
                libc::_exit(6);
            }
        }
        core::arch::asm!(
            "jmp {entry}",
            entry = in(reg) entry,
            in("rdi") fprog,
            in("rsi") slot_offset,
            in("rdx") parent as u64,
            options(noreturn)
        );
    }
}
