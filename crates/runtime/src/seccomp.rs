//! The seccomp allowlists of Moat's own processes, as data, and their installation.
//!
//! - The **kernel process**: [`KERNEL_COMMON`] (what the kernel, the memory file, Rust's
//!   standard library and glibc need whatever the platform) plus the platform's own section
//!   ([`moat_platform::Platform::host_syscalls`]: ptrace today, systrap next).
//! - The **gofer**: [`GOFER`], with the socket's fd number filled in.
//!
//! A call outside the list kills the whole process (`SECCOMP_RET_KILL_PROCESS`); debug builds
//! trap instead, so that a `SIGSYS` handler names the call before the process dies of it
//! ([`Refusal`]). `clone3` is refused with `ENOSYS` (a second, tiny filter): its flags sit in
//! memory the filter cannot read, and glibc then falls back to `clone`, whose flags it can.
//!
//! docs/SECURITY.md lists both allowlists as `moat seccomp-list` prints them (a test keeps
//! the two equal).

use std::collections::BTreeMap;

use moat_platform::{ArgIs, HostSyscall};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::RuntimeError;

const fn any(nr: i64) -> HostSyscall {
    HostSyscall::any(nr)
}

const fn when(nr: i64, alternatives: &'static [&'static [ArgIs]]) -> HostSyscall {
    HostSyscall::when(nr, alternatives)
}

/// The fd of the gofer's socket in the kernel process (see `launch::KERNEL_GOFER_FD`).
const KERNEL_GOFER_FD: u32 = crate::launch::KERNEL_GOFER_FD as u32;
/// The fd of the control socket to the front (see `launch::KERNEL_CONTROL_FD`).
const KERNEL_CONTROL_FD: u32 = crate::launch::KERNEL_CONTROL_FD as u32;

/// `TCGETS2`, which rustix's `tcgetattr` uses (not in the libc crate for x86-64).
const TCGETS2: u32 = 0x802c_542a;

/// The flags glibc's `pthread_create` passes to `clone` (when `clone3` is refused).
const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// The kernel process's allowlist, whatever the platform.
pub const KERNEL_COMMON: &[HostSyscall] = &[
    // I/O on the kernel's own fds: donated stdio and gofer files, the memory file, the
    // debug log, the pipe of forwarded host signals.
    any(libc::SYS_read),
    any(libc::SYS_write),
    any(libc::SYS_writev),
    any(libc::SYS_pread64),
    any(libc::SYS_pwrite64),
    any(libc::SYS_lseek),
    any(libc::SYS_close),
    any(libc::SYS_fstat),
    any(libc::SYS_fsync),
    any(libc::SYS_fdatasync),
    any(libc::SYS_ppoll),
    when(
        libc::SYS_fcntl,
        &[
            &[ArgIs::int(1, libc::F_GETFL as u32)],
            &[ArgIs::int(1, libc::F_GETFD as u32)],
            &[ArgIs::int(1, libc::F_DUPFD_CLOEXEC as u32)],
        ],
    ),
    // Terminal queries on donated stdio (isatty, the window size).
    when(
        libc::SYS_ioctl,
        &[
            &[ArgIs::int(1, libc::TCGETS as u32)],
            &[ArgIs::int(1, TCGETS2)],
            &[ArgIs::int(1, libc::TIOCGWINSZ as u32)],
        ],
    ),
    // The gofer connection and the front's control socket (signals, start, exec and its
    // stdio fds), and only they.
    when(
        libc::SYS_sendmsg,
        &[
            &[ArgIs::int(0, KERNEL_GOFER_FD)],
            &[ArgIs::int(0, KERNEL_CONTROL_FD)],
        ],
    ),
    when(
        libc::SYS_recvmsg,
        &[
            &[ArgIs::int(0, KERNEL_GOFER_FD)],
            &[ArgIs::int(0, KERNEL_CONTROL_FD)],
        ],
    ),
    when(libc::SYS_shutdown, &[&[ArgIs::int(0, KERNEL_GOFER_FD)]]),
    // Memory: the allocator, the memory file (sparse: holes punched back).
    any(libc::SYS_mmap),
    any(libc::SYS_munmap),
    any(libc::SYS_mprotect),
    any(libc::SYS_mremap),
    any(libc::SYS_madvise),
    any(libc::SYS_brk),
    any(libc::SYS_memfd_create),
    any(libc::SYS_ftruncate),
    any(libc::SYS_fallocate),
    // Host threads: one per task, the timer thread, the host-signal thread.
    when(libc::SYS_clone, &[&[ArgIs::eq(0, THREAD_CLONE_FLAGS)]]),
    any(libc::SYS_clone3),
    any(libc::SYS_set_robust_list),
    when(libc::SYS_rseq, &[&[ArgIs::int(2, 0)]]),
    any(libc::SYS_futex),
    any(libc::SYS_sched_yield),
    any(libc::SYS_sched_getaffinity),
    when(
        libc::SYS_prctl,
        &[&[ArgIs::int(0, libc::PR_SET_NAME as u32)]],
    ),
    any(libc::SYS_sigaltstack),
    any(libc::SYS_rt_sigprocmask),
    any(libc::SYS_rt_sigreturn),
    any(libc::SYS_restart_syscall),
    any(libc::SYS_gettid),
    any(libc::SYS_getpid),
    any(libc::SYS_exit),
    any(libc::SYS_exit_group),
    // The external interface's thread (`--network=sandbox`) is woken through an eventfd;
    // it reads and writes frames on its packet socket with `read`/`write` and waits in
    // `ppoll`, all above.
    when(
        libc::SYS_eventfd2,
        &[&[ArgIs::int(
            1,
            (libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) as u32,
        )]],
    ),
    // Time, entropy, the host's memory figures (sysinfo).
    any(libc::SYS_clock_gettime),
    any(libc::SYS_clock_getres),
    any(libc::SYS_clock_nanosleep),
    any(libc::SYS_getrandom),
    any(libc::SYS_sysinfo),
];

/// The gofer's allowlist. `SOCKET_FD` in a condition stands for the fd of its socket.
pub const GOFER: &[HostSyscall] = &[
    // The socket to the kernel.
    when(libc::SYS_sendmsg, &[&[ArgIs::int(0, SOCKET_FD)]]),
    when(libc::SYS_recvmsg, &[&[ArgIs::int(0, SOCKET_FD)]]),
    any(libc::SYS_ppoll),
    // Files, by fd and one name at a time; `open` of `/proc/self/fd/N` to reopen a file.
    any(libc::SYS_openat),
    any(libc::SYS_open),
    any(libc::SYS_close),
    any(libc::SYS_newfstatat),
    any(libc::SYS_fstatfs),
    any(libc::SYS_getdents64),
    any(libc::SYS_lseek),
    any(libc::SYS_readlinkat),
    any(libc::SYS_mkdirat),
    any(libc::SYS_mknodat),
    any(libc::SYS_symlinkat),
    any(libc::SYS_linkat),
    any(libc::SYS_unlinkat),
    any(libc::SYS_renameat2),
    any(libc::SYS_ftruncate),
    any(libc::SYS_fchmod),
    any(libc::SYS_fchmodat),
    any(libc::SYS_fchownat),
    any(libc::SYS_utimensat),
    any(libc::SYS_getxattr),
    any(libc::SYS_setxattr),
    any(libc::SYS_listxattr),
    any(libc::SYS_removexattr),
    when(
        libc::SYS_fcntl,
        &[
            &[ArgIs::int(1, libc::F_GETFL as u32)],
            &[ArgIs::int(1, libc::F_GETFD as u32)],
            &[ArgIs::int(1, libc::F_DUPFD_CLOEXEC as u32)],
        ],
    ),
    // Its own messages on stderr, memory, the end.
    any(libc::SYS_write),
    any(libc::SYS_mmap),
    any(libc::SYS_munmap),
    any(libc::SYS_mremap),
    any(libc::SYS_madvise),
    any(libc::SYS_brk),
    any(libc::SYS_futex),
    any(libc::SYS_getrandom),
    any(libc::SYS_sigaltstack),
    any(libc::SYS_rt_sigprocmask),
    any(libc::SYS_rt_sigreturn),
    any(libc::SYS_gettid),
    any(libc::SYS_getpid),
    any(libc::SYS_exit),
    any(libc::SYS_exit_group),
];

/// Placeholder for the gofer socket's fd in [`GOFER`]'s conditions (no real fd has it).
pub const SOCKET_FD: u32 = 0xffff_fff0;

/// Calls refused with `ENOSYS` rather than allowed or killed.
const REFUSED_WITH_ENOSYS: &[i64] = &[libc::SYS_clone3];

/// What a call outside the allowlist does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `SECCOMP_RET_KILL_PROCESS`: the process dies of `SIGSYS` at once.
    Kill,
    /// `SECCOMP_RET_TRAP`: a `SIGSYS` handler names the call, then the process dies of it.
    Trap,
    /// `SECCOMP_RET_LOG`: allowed, and logged by the host (its audit log, `dmesg`): for
    /// finding the calls a new platform or feature makes. Not a confinement.
    Log,
}

impl Refusal {
    /// The refusal of this build: debug builds name the call.
    pub fn default_for_build() -> Refusal {
        if cfg!(debug_assertions) {
            Refusal::Trap
        } else {
            Refusal::Kill
        }
    }
}

/// `SOCK_NONBLOCK | SOCK_CLOEXEC`: the only flags the kernel's host sockets are made with.
const HOST_SOCKET_FLAGS: u32 = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32;
/// The queue sizes a host socket answers for the application: `FIONREAD`, `SIOCOUTQ`
/// (`TIOCOUTQ`), `SIOCOUTQNSD`.
const FIONREAD: u32 = 0x541b;
const TIOCOUTQ: u32 = 0x5411;
const SIOCOUTQNSD: u32 = 0x894b;

/// The section of the kernel's allowlist installed only with `--network=host`: the calls it
/// makes on the host sockets it owns for the application (`net/host.rs` in the kernel), and
/// its host epoll. `socket` is limited to TCP and UDP over IPv4 and IPv6 (protocol 0),
/// non-blocking and close-on-exec; everything else takes any fd (host socket fds are not
/// known in advance). The kernel's only other sockets are its connections to the gofer and
/// to the front, whose peers check every message whatever the kernel does to them.
pub const KERNEL_HOST_NETWORK: &[HostSyscall] = &[
    when(
        libc::SYS_socket,
        &[
            &[
                ArgIs::int(0, libc::AF_INET as u32),
                ArgIs::int(1, libc::SOCK_STREAM as u32 | HOST_SOCKET_FLAGS),
                ArgIs::int(2, 0),
            ],
            &[
                ArgIs::int(0, libc::AF_INET as u32),
                ArgIs::int(1, libc::SOCK_DGRAM as u32 | HOST_SOCKET_FLAGS),
                ArgIs::int(2, 0),
            ],
            &[
                ArgIs::int(0, libc::AF_INET6 as u32),
                ArgIs::int(1, libc::SOCK_STREAM as u32 | HOST_SOCKET_FLAGS),
                ArgIs::int(2, 0),
            ],
            &[
                ArgIs::int(0, libc::AF_INET6 as u32),
                ArgIs::int(1, libc::SOCK_DGRAM as u32 | HOST_SOCKET_FLAGS),
                ArgIs::int(2, 0),
            ],
        ],
    ),
    any(libc::SYS_bind),
    any(libc::SYS_listen),
    when(libc::SYS_accept4, &[&[ArgIs::int(3, HOST_SOCKET_FLAGS)]]),
    any(libc::SYS_connect),
    any(libc::SYS_sendto),
    any(libc::SYS_recvfrom),
    any(libc::SYS_shutdown),
    any(libc::SYS_setsockopt),
    any(libc::SYS_getsockopt),
    any(libc::SYS_getsockname),
    any(libc::SYS_getpeername),
    when(
        libc::SYS_ioctl,
        &[
            &[ArgIs::int(1, FIONREAD)],
            &[ArgIs::int(1, TIOCOUTQ)],
            &[ArgIs::int(1, SIOCOUTQNSD)],
        ],
    ),
    // Readiness: one host epoll, watched by a thread of the kernel's.
    any(libc::SYS_epoll_create1),
    any(libc::SYS_epoll_ctl),
    any(libc::SYS_epoll_pwait),
];

/// The kernel process's allowlist for `platform`: the common part, the platform's section,
/// and with `--network=host` the host-network section.
pub fn kernel_allowlist(
    platform: &dyn moat_platform::Platform,
    network: moat_kernel::NetworkMode,
) -> Vec<HostSyscall> {
    let host = if network == moat_kernel::NetworkMode::Host {
        KERNEL_HOST_NETWORK
    } else {
        &[]
    };
    KERNEL_COMMON
        .iter()
        .chain(platform.host_syscalls())
        .chain(host)
        .copied()
        .collect()
}

/// The gofer's allowlist with its socket's fd.
pub fn gofer_allowlist() -> Vec<HostSyscall> {
    GOFER.to_vec()
}

/// Merge entries of one call: any-arguments wins, otherwise the alternatives add up.
fn merged(list: &[HostSyscall], socket_fd: u32) -> BTreeMap<i64, Option<Vec<Vec<ArgIs>>>> {
    let mut calls: BTreeMap<i64, Option<Vec<Vec<ArgIs>>>> = BTreeMap::new();
    for entry in list {
        let alternatives: Option<Vec<Vec<ArgIs>>> = if entry.when.is_empty() {
            None
        } else {
            Some(
                entry
                    .when
                    .iter()
                    .map(|all| {
                        all.iter()
                            .map(|c| ArgIs {
                                value: if c.value == u64::from(SOCKET_FD) {
                                    u64::from(socket_fd)
                                } else {
                                    c.value
                                },
                                ..*c
                            })
                            .collect()
                    })
                    .collect(),
            )
        };
        match calls.entry(i64::from(entry.nr)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(alternatives);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let merged = match (o.get_mut().take(), alternatives) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
                *o.get_mut() = merged;
            }
        }
    }
    calls
}

fn condition(c: &ArgIs) -> Result<SeccompCondition, RuntimeError> {
    let op = if c.mask == u64::MAX {
        SeccompCmpOp::Eq
    } else {
        SeccompCmpOp::MaskedEq(c.mask)
    };
    SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, c.value)
        .map_err(|e| RuntimeError::Seccomp(e.to_string()))
}

/// Compile `list` into the allowlist filter and the `ENOSYS` filter.
pub fn compile(
    list: &[HostSyscall],
    refusal: Refusal,
    socket_fd: u32,
) -> Result<Vec<BpfProgram>, RuntimeError> {
    let err = |e: seccompiler::BackendError| RuntimeError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, alternatives) in merged(list, socket_fd) {
        let chain = match alternatives {
            None => Vec::new(),
            Some(alternatives) => alternatives
                .iter()
                .map(|all| {
                    let conditions = all.iter().map(condition).collect::<Result<_, _>>()?;
                    SeccompRule::new(conditions).map_err(err)
                })
                .collect::<Result<_, _>>()?,
        };
        rules.insert(nr, chain);
    }
    let mismatch = match refusal {
        Refusal::Kill => SeccompAction::KillProcess,
        Refusal::Trap => SeccompAction::Trap,
        Refusal::Log => SeccompAction::Log,
    };
    let allow = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(err)?;
    let enosys = SeccompFilter::new(
        REFUSED_WITH_ENOSYS
            .iter()
            .map(|&nr| (nr, Vec::new()))
            .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .map_err(err)?;
    // The allowlist goes last: once it is in, installing another filter is refused.
    Ok(vec![
        BpfProgram::try_from(enosys).map_err(err)?,
        BpfProgram::try_from(allow).map_err(err)?,
    ])
}

/// Install `list` on every thread of the calling process (`SECCOMP_FILTER_FLAG_TSYNC`), with
/// NO_NEW_PRIVS; `who` names the process in a trap's report.
pub fn install(
    list: &[HostSyscall],
    refusal: Refusal,
    socket_fd: u32,
    who: &'static std::ffi::CStr,
) -> Result<(), RuntimeError> {
    let programs = compile(list, refusal, socket_fd)?;
    // rustix reads the auxiliary vector (page size, clock ticks, hwcaps) on first use with
    // prctl(PR_GET_AUXV), which the lists do not allow: read it now.
    let _ = (rustix::param::page_size(), rustix::param::linux_hwcap());
    if refusal == Refusal::Trap {
        moat_platform::confine::report_seccomp_traps(who)
            .map_err(|e| RuntimeError::Seccomp(format!("SIGSYS handler: {e}")))?;
    }
    for program in &programs {
        seccompiler::apply_filter_all_threads(program)
            .map_err(|e| RuntimeError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

/// The allowlist as text, one call per line: `NUMBER NAME` and its argument conditions.
pub fn listing(list: &[HostSyscall]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (nr, alternatives) in merged(list, SOCKET_FD) {
        let name = moat_abi::syscall_name(nr as u64).unwrap_or("?");
        let _ = write!(out, "{nr:>3} {name}");
        if REFUSED_WITH_ENOSYS.contains(&nr) {
            out.push_str(": always fails with ENOSYS\n");
            continue;
        }
        if let Some(alternatives) = alternatives {
            let text: Vec<String> = alternatives
                .iter()
                .map(|all| {
                    all.iter()
                        .map(|c| {
                            let value = if c.value == u64::from(SOCKET_FD) {
                                "socket".to_string()
                            } else {
                                format!("{:#x}", c.value)
                            };
                            if c.mask == u64::MAX || c.mask == 0xffff_ffff {
                                format!("arg{} == {value}", c.index)
                            } else {
                                format!("arg{} & {:#x} == {value}", c.index, c.mask)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" && ")
                })
                .collect();
            let _ = write!(out, ": {}", text.join(" || "));
        }
        out.push('\n');
    }
    out
}

/// How many distinct calls `list` lets through to the host (`clone3` never gets there).
pub fn count(list: &[HostSyscall]) -> usize {
    merged(list, SOCKET_FD)
        .keys()
        .filter(|nr| !REFUSED_WITH_ENOSYS.contains(nr))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_compile_and_leave_out_what_escapes_need() {
        let platform = moat_platform::by_name("ptrace").unwrap();
        let kernel = kernel_allowlist(platform.as_ref(), moat_kernel::NetworkMode::Sandbox);
        let none = kernel_allowlist(platform.as_ref(), moat_kernel::NetworkMode::None);
        for list in [&kernel, &none, &gofer_allowlist()] {
            for refusal in [Refusal::Kill, Refusal::Trap, Refusal::Log] {
                assert_eq!(compile(list, refusal, 3).unwrap().len(), 2);
            }
            let allowed = merged(list, 3);
            for nr in [
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_execve,
                libc::SYS_mount,
                libc::SYS_unshare,
                libc::SYS_setns,
                libc::SYS_bpf,
                libc::SYS_init_module,
                libc::SYS_process_vm_writev,
                libc::SYS_open_by_handle_at,
                libc::SYS_keyctl,
                libc::SYS_reboot,
            ] {
                assert!(!allowed.contains_key(&nr), "{nr}");
            }
        }
        // The gofer neither traces nor signals anything.
        let gofer = merged(&gofer_allowlist(), 3);
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_clone,
        ] {
            assert!(!gofer.contains_key(&nr), "{nr}");
        }
        // Host networking adds socket calls, and nothing else that escapes need.
        let host = kernel_allowlist(platform.as_ref(), moat_kernel::NetworkMode::Host);
        assert_eq!(compile(&host, Refusal::Kill, 3).unwrap().len(), 2);
        let allowed = merged(&host, 3);
        for nr in [
            libc::SYS_execve,
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_socketpair,
            libc::SYS_process_vm_writev,
        ] {
            assert!(!allowed.contains_key(&nr), "{nr}");
        }
        // `socket` only for TCP and UDP over IPv4 and IPv6: never raw, packet or netlink.
        let socket = allowed[&libc::SYS_socket]
            .as_ref()
            .expect("argument checks");
        assert_eq!(socket.len(), 4);
        for alternative in socket {
            assert!(alternative.contains(&ArgIs::int(2, 0)));
            assert!(alternative.iter().any(|c| c.index == 0
                && [libc::AF_INET as u64, libc::AF_INET6 as u64].contains(&c.value)));
        }
        // Its socket's number replaces the placeholder.
        assert!(listing(&gofer_allowlist()).contains("sendmsg: arg0 == socket"));
        assert_eq!(
            gofer[&libc::SYS_sendmsg],
            Some(vec![vec![ArgIs::int(0, 3)]])
        );
    }
}
