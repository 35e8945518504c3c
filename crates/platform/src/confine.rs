//! The few host calls that confining Moat's own processes needs and that no safe wrapper
//! offers; the confinement itself (namespaces set-up, pivot_root, capabilities, seccomp) is
//! `crates/runtime`, in safe Rust.
//!
//! - [`spawn`]: start a program in new namespaces. A new pid namespace only ever holds
//!   *children* of the process that asks for it, and `std::process::Command` cannot pass
//!   `clone` flags, so this is a `clone` with namespace flags followed by `execve`, with only
//!   async-signal-safe calls in between (the caller may have other threads).
//! - [`make_tree_read_only`]: `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)` on a detached
//!   mount tree (rustix has no `mount_setattr`): a bind of the host's root is read-only all the
//!   way down, submounts included.
//! - [`report_seccomp_traps`]: a `SIGSYS` handler that names the host system call a seccomp
//!   filter refused (`SECCOMP_RET_TRAP`), then dies of `SIGSYS` as a kill would.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// What [`spawn`] starts.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// The program (`/proc/self/exe` to re-execute Moat).
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    /// `CLONE_NEW*` flags.
    pub namespaces: i32,
    /// With `CLONE_NEWUSER`: the host uid and gid that become 0 in the new user namespace
    /// (written by the child itself before `execve`, so that it keeps its capabilities there).
    pub map_root_to: Option<(u32, u32)>,
    /// fds the child gets, at these numbers; fds 0-2 not named here are inherited as they
    /// are, every other fd is closed.
    pub fds: Vec<(BorrowedFd<'a>, i32)>,
}

/// The child's set-up, prepared before `clone` (the child must not allocate).
struct Prepared {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    uid_map: CString,
    gid_map: CString,
}

/// Start `what` as a child in the namespaces it names; returns its host pid. The child dies
/// with the calling thread (`PR_SET_PDEATHSIG`), starts a session of its own (terminal
/// signals reach only the caller) and has an empty signal mask and default signal actions.
pub fn spawn(what: &Spawn<'_>) -> std::io::Result<libc::pid_t> {
    let argv_ptrs = what
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs = what
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (uid, gid) = what.map_root_to.unwrap_or((0, 0));
    let prepared = Prepared {
        argv: argv_ptrs,
        envp: envp_ptrs,
        uid_map: CString::new(format!("0 {uid} 1\n")).expect("no NUL in numbers"),
        gid_map: CString::new(format!("0 {gid} 1\n")).expect("no NUL in numbers"),
    };
    let fds: Vec<(i32, i32)> = what
        .fds
        .iter()
        .map(|(fd, to)| (fd.as_raw_fd(), *to))
        .collect();
    // Above every target and every source, so that moving one fd never overwrites another.
    let spare = fds.iter().map(|&(a, b)| a.max(b)).max().unwrap_or(2).max(2) + 1;
    let flags = (what.namespaces as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child gets a copy of our
    // memory and runs only `child`, which makes raw system calls on the prepared data and
    // ends in execve or _exit, never returning into Rust.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly cloned child; see `child`.
        unsafe {
            child(
                what.program,
                &prepared,
                what.map_root_to.is_some(),
                &fds,
                spare,
            )
        }
    }
    Ok(pid as libc::pid_t)
}

/// Write `text` to the file at `path` with raw calls; false on any failure.
///
/// # Safety
/// Async-signal-safe; both pointers must be valid C strings.
unsafe fn write_file(path: &CStr, text: &CStr) -> bool {
    // SAFETY: raw system calls on valid C strings and our own fd.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let len = text.to_bytes().len();
        let ok = libc::write(fd, text.as_ptr().cast(), len) == len as isize;
        libc::close(fd);
        ok
    }
}

/// The cloned child: map ids, arrange fds, reset signals, `execve`.
///
/// # Safety
/// Only in the child of `spawn`'s clone: raw system calls only, no allocation, no locks.
// SAFETY: an `unsafe fn` because its contract cannot be checked by the compiler; the only
// caller is the child branch of `spawn`.
unsafe fn child(
    program: &CStr,
    prepared: &Prepared,
    map_ids: bool,
    fds: &[(i32, i32)],
    spare: i32,
) -> ! {
    // SAFETY: raw, async-signal-safe system calls on integers, on memory prepared before the
    // clone (C strings and pointer arrays that end with NULL), and on a zeroed sigaction.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if map_ids {
            // Before execve: a process whose uid is unmapped loses its capabilities there.
            if !write_file(c"/proc/self/setgroups", c"deny")
                || !write_file(c"/proc/self/uid_map", &prepared.uid_map)
                || !write_file(c"/proc/self/gid_map", &prepared.gid_map)
            {
                libc::_exit(121);
            }
        }
        libc::setsid();
        // Two steps: every source to a spare number, then each to its target.
        let mut moved = [0i32; 16];
        if fds.len() > moved.len() {
            libc::_exit(122);
        }
        for (i, &(from, _)) in fds.iter().enumerate() {
            moved[i] = libc::fcntl(from, libc::F_DUPFD, spare);
            if moved[i] < 0 {
                libc::_exit(122);
            }
        }
        for (i, &(_, to)) in fds.iter().enumerate() {
            if libc::dup2(moved[i], to) < 0 {
                libc::_exit(122);
            }
        }
        let highest = fds.iter().map(|&(_, to)| to).max().unwrap_or(2).max(2);
        libc::syscall(libc::SYS_close_range, highest + 1, u32::MAX, 0);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        for signo in 1..libc::SIGRTMIN() {
            if signo != libc::SIGKILL && signo != libc::SIGSTOP {
                libc::signal(signo, libc::SIG_DFL);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        libc::execve(
            program.as_ptr(),
            prepared.argv.as_ptr(),
            prepared.envp.as_ptr(),
        );
        libc::_exit(127);
    }
}

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const AT_RECURSIVE: u32 = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 1;
const MOUNT_ATTR_NOSUID: u64 = 2;
const MOUNT_ATTR_NODEV: u64 = 4;

/// Make every mount of the tree `tree` (an `open_tree` fd) read-only, `nosuid`, `nodev` and
/// private.
pub fn make_tree_read_only(tree: &OwnedFd) -> std::io::Result<()> {
    set_tree_attributes(
        tree,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
}

/// Make every mount of the tree `tree` `nosuid`, `nodev` and private (a writable volume).
pub fn make_tree_nosuid(tree: &OwnedFd) -> std::io::Result<()> {
    set_tree_attributes(tree, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
}

/// Set `attrs` on every mount of `tree`, and make them private: a clone of a shared mount
/// stays in its peer group, so detaching a mount below it (the gofer detaches the host's
/// kernel filesystems) would detach the host's own copy too — every `ip netns` namespace
/// file under a shared `/run/netns`, for one.
fn set_tree_attributes(tree: &OwnedFd, attrs: u64) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size` bytes of `attr`, which lives on our stack; the
    // path is an empty C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where the `_sigsys` member of `siginfo_t` keeps the system call number.
const SI_SYSCALL_OFFSET: usize = 24;

/// Install a `SIGSYS` handler for a filter whose refusal is `SECCOMP_RET_TRAP`: it writes
/// "`moat: <who>: disallowed host system call N (name) with ARGS`" on stderr, then the process dies of
/// `SIGSYS` before the handler returns, so the refused call never completes. `who` must be `'static`: the handler reads it.
pub fn report_seccomp_traps(who: &'static CStr) -> std::io::Result<()> {
    WHO.store(
        who.as_ptr().cast_mut(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // SAFETY: a zeroed sigaction is valid; we fill in the handler and flags; sigaction copies it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&raw mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

static WHO: std::sync::atomic::AtomicPtr<libc::c_char> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigsys(_signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the host passes a valid siginfo for SIGSYS, whose `_sigsys` member holds the
    // call number at SI_SYSCALL_OFFSET, and a valid ucontext (SA_SIGINFO); the handler only formats into a stack buffer (no
    // allocation, no locks) and makes the async-signal-safe calls write and reboot (refused).
    unsafe {
        let nr = info
            .cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned();
        let mut line = [0u8; 320];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            for &b in bytes {
                if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
            }
        };
        put(b"moat: ");
        let who = WHO.load(std::sync::atomic::Ordering::Relaxed);
        if who.is_null() {
            put(b"sandbox");
        } else {
            put(CStr::from_ptr(who).to_bytes());
        }
        put(b": disallowed host system call ");
        let number = |mut n: u64, base: u64, out: &mut [u8; 20]| -> usize {
            let mut d = out.len();
            loop {
                d -= 1;
                out[d] = b"0123456789abcdef"[(n % base) as usize];
                n /= base;
                if n == 0 {
                    return d;
                }
            }
        };
        let mut digits = [0u8; 20];
        let d = number(u64::from(nr.unsigned_abs()), 10, &mut digits);
        put(&digits[d..]);
        if let Some(name) = moat_abi::syscall_name(u64::from(nr.unsigned_abs())) {
            put(b" (");
            put(name.as_bytes());
            put(b")");
        }
        // The arguments, from the registers the call was made with.
        let gregs = &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        put(b" with");
        for reg in [
            libc::REG_RDI,
            libc::REG_RSI,
            libc::REG_RDX,
            libc::REG_R10,
            libc::REG_R8,
            libc::REG_R9,
        ] {
            put(b" 0x");
            let d = number(gregs[reg as usize] as u64, 16, &mut digits);
            put(&digits[d..]);
        }
        put(b"\n");
        libc::write(2, line.as_ptr().cast(), len);
        // Die of SIGSYS. Raising it would not do: Moat's processes are the init of their pid
        // namespace, which ignores signals it has no handler for (the action is the default
        // again, SA_RESETHAND). A second refused call makes the host *force* a SIGSYS, which
        // kills even an init. `reboot` is in no allowlist, and without CAP_SYS_BOOT and with
        // these arguments (no magic numbers) it would fail anyway.
        libc::syscall(libc::SYS_reboot, 0, 0, 0, 0);
    }
}

static INHERITED_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Take ownership of fds a spawner placed at fixed numbers above 2 (see [`Spawn::fds`]):
/// `Some` for each that is open. Only the first call takes anything (later ones get `None`s),
/// so no fd is owned twice; call it at the start of `main`, before anything else opens fds.
pub fn take_inherited_fds(numbers: &[i32]) -> Vec<Option<OwnedFd>> {
    use std::os::fd::FromRawFd;
    if INHERITED_TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return numbers.iter().map(|_| None).collect();
    }
    numbers
        .iter()
        .map(|&n| {
            // SAFETY: F_GETFD only asks whether `n` is open.
            let open = n > 2 && unsafe { libc::fcntl(n, libc::F_GETFD) } >= 0;
            // SAFETY: the fd is open, and by this function's contract (called once, at the
            // start of main) it was inherited across execve and nothing in this process owns
            // it yet.
            open.then(|| unsafe { OwnedFd::from_raw_fd(n) })
        })
        .collect()
}
