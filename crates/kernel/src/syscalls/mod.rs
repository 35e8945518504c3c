//! The system call table: number -> handler, with each call's argument shapes (for `--strace`)
//! and how complete it is (for docs/COMPATIBILITY.md). One file per area; a newcomer finds any
//! call's code by its name in the table below.

mod attrs;
mod clone;
mod creds;
pub(crate) mod epoll;
pub(crate) mod exec;
mod fd;
mod fs_context;
mod futex;
mod itimer;
mod kcmp;
mod locks;
mod mm;
pub(crate) mod names;
pub(crate) mod open;
pub(crate) mod path;
mod poll;
pub(crate) mod posix_timer;
mod process;
mod read_write;
mod resource;
mod rusage;
pub mod sched;
mod signal;
mod signalfd;
mod socket;
mod stat;
mod sync;
pub(crate) mod system;
mod time;
mod timerfd;
mod wait;
mod xattr;

use moat_abi::syscalls::nr;
use moat_abi::Errno;

use crate::process::Guard;
use crate::strace::Arg::{self, Hex, InBuf, Int, OutBuf, Ptr, Str, Uint};
use crate::task::Task;

/// What a handler returns: the value for `rax`, or an errno.
pub type SyscallResult = Result<u64, Errno>;

/// A system call handler.
pub type Handler = fn(&mut Task, &[u64; 6]) -> SyscallResult;

/// How much of a system call Moat implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Full,
    /// Implemented, with the stated gaps.
    Partial(&'static str),
}

/// One row of the table.
#[derive(Debug)]
pub struct SyscallInfo {
    pub handler: Handler,
    pub args: &'static [Arg],
    pub support: Support,
}

const FULL: Support = Support::Full;

macro_rules! syscall_table {
    ($($nr:ident => $handler:path, [$($arg:expr),*], $support:expr;)*) => {
        /// The table entry for system call `nr`, if Moat implements it.
        pub fn lookup(number: u64) -> Option<&'static SyscallInfo> {
            let number = u32::try_from(number).ok()?;
            $(
                if number == nr::$nr {
                    static INFO: SyscallInfo = SyscallInfo { handler: $handler, args: &[$($arg),*], support: $support };
                    return Some(&INFO);
                }
            )*
            None
        }
    };
}

syscall_table! {
    READ => read_write::read, [Int, OutBuf, Uint], FULL;
    WRITE => read_write::write, [Int, InBuf, Uint], FULL;
    CLOSE => fd::close, [Int], FULL;
    OPEN => open::open, [Str, Hex, Hex], FULL;
    STAT => stat::stat, [Str, Ptr], FULL;
    FSTAT => stat::fstat, [Int, Ptr], FULL;
    LSTAT => stat::lstat, [Str, Ptr], FULL;
    POLL => poll::poll, [Ptr, Uint, Int], FULL;
    SELECT => poll::select, [Int, Ptr, Ptr, Ptr, Ptr], FULL;
    PSELECT6 => poll::pselect6, [Int, Ptr, Ptr, Ptr, Ptr, Ptr], FULL;
    LSEEK => open::lseek, [Int, Int, Int], FULL;
    MMAP => mm::mmap, [Ptr, Uint, Hex, Hex, Int, Hex], Support::Partial("writable MAP_SHARED of host files only on writable volumes (a page cache written back at fsync and close)");
    MPROTECT => mm::mprotect, [Ptr, Uint, Hex], FULL;
    MUNMAP => mm::munmap, [Ptr, Uint], FULL;
    BRK => mm::brk, [Ptr], FULL;
    RT_SIGACTION => signal::rt_sigaction, [Int, Ptr, Ptr, Uint], FULL;
    RT_SIGRETURN => signal::rt_sigreturn, [], FULL;
    RT_SIGPENDING => signal::rt_sigpending, [Ptr, Uint], FULL;
    RT_SIGTIMEDWAIT => signal::rt_sigtimedwait, [Ptr, Ptr, Ptr, Uint], FULL;
    RT_SIGQUEUEINFO => signal::rt_sigqueueinfo, [Int, Int, Ptr], FULL;
    RT_SIGSUSPEND => signal::rt_sigsuspend, [Ptr, Uint], FULL;
    RT_TGSIGQUEUEINFO => signal::rt_tgsigqueueinfo, [Int, Int, Int, Ptr], FULL;
    PAUSE => signal::pause, [], FULL;
    ALARM => itimer::alarm, [Uint], FULL;
    GETITIMER => itimer::getitimer, [Int, Ptr], Support::Partial("ITIMER_VIRTUAL and ITIMER_PROF both count all CPU time (Moat has no system time), sampled every 4 ms");
    SETITIMER => itimer::setitimer, [Int, Ptr, Ptr], Support::Partial("ITIMER_VIRTUAL and ITIMER_PROF both count all CPU time (Moat has no system time), sampled every 4 ms");
    KILL => signal::kill, [Int, Int], FULL;
    TKILL => signal::tkill, [Int, Int], FULL;
    TGKILL => signal::tgkill, [Int, Int, Int], FULL;
    SETPGID => process::setpgid, [Int, Int], FULL;
    GETPGID => process::getpgid, [Int], FULL;
    GETPGRP => process::getpgrp, [], FULL;
    SETSID => process::setsid, [], FULL;
    GETSID => process::getsid, [Int], FULL;
    PRCTL => process::prctl, [Int, Hex, Hex, Hex, Hex], Support::Partial("PR_SET/GET_NAME, PDEATHSIG, DUMPABLE, NO_NEW_PRIVS, CHILD_SUBREAPER, KEEPCAPS, SECUREBITS, CAPBSET_READ/DROP, CAP_AMBIENT");
    RT_SIGPROCMASK => signal::rt_sigprocmask, [Int, Ptr, Ptr, Uint], FULL;
    IOCTL => fd::ioctl, [Int, Hex, Hex], Support::Partial("terminal, FIO* and socket requests (FIONREAD, SIOCOUTQ, SIOCGIF* for lo); no others");
    PREAD64 => read_write::pread64, [Int, OutBuf, Uint, Int], FULL;
    PWRITE64 => read_write::pwrite64, [Int, InBuf, Uint, Int], FULL;
    READV => read_write::readv, [Int, Ptr, Int], FULL;
    WRITEV => read_write::writev, [Int, Ptr, Int], FULL;
    PREADV => read_write::preadv, [Int, Ptr, Int, Int, Int], FULL;
    PWRITEV => read_write::pwritev, [Int, Ptr, Int, Int, Int], FULL;
    PREADV2 => read_write::preadv2, [Int, Ptr, Int, Int, Int, Hex], FULL;
    PWRITEV2 => read_write::pwritev2, [Int, Ptr, Int, Int, Int, Hex], FULL;
    SCHED_YIELD => system::sched_yield, [], FULL;
    SCHED_SETPARAM => sched::sched_setparam, [Int, Ptr], Support::Partial("recorded and reported; the host schedules every thread as SCHED_OTHER");
    SCHED_GETPARAM => sched::sched_getparam, [Int, Ptr], FULL;
    SCHED_SETSCHEDULER => sched::sched_setscheduler, [Int, Int, Ptr], Support::Partial("recorded and reported; the host schedules every thread as SCHED_OTHER");
    SCHED_GETSCHEDULER => sched::sched_getscheduler, [Int], FULL;
    SCHED_GET_PRIORITY_MAX => sched::sched_get_priority_max, [Int], FULL;
    SCHED_GET_PRIORITY_MIN => sched::sched_get_priority_min, [Int], FULL;
    SCHED_RR_GET_INTERVAL => sched::sched_rr_get_interval, [Int, Ptr], Support::Partial("a fixed 100 ms quantum (0 under SCHED_FIFO)");
    GETPRIORITY => sched::getpriority, [Int, Int], FULL;
    SETPRIORITY => sched::setpriority, [Int, Int, Int], Support::Partial("recorded and reported; the host's nice value is unchanged");
    GETCPU => sched::getcpu, [Ptr, Ptr, Ptr], Support::Partial("the first CPU of the thread's affinity, not the one it last ran on; node 0");
    MEMBARRIER => sched::membarrier, [Int, Hex, Int], Support::Partial("no SYNC_CORE or RSEQ commands");
    MSYNC => mm::msync, [Ptr, Uint, Hex], FULL;
    MREMAP => mm::mremap, [Ptr, Uint, Uint, Hex, Ptr], Support::Partial("no MREMAP_DONTUNMAP; no duplicating with old_size 0");
    MADVISE => mm::madvise, [Ptr, Uint, Int], Support::Partial("MADV_DONTNEED/FREE discard; other advice accepted as hints");
    DUP => fd::dup, [Int], FULL;
    PIPE => fd::pipe, [Ptr], FULL;
    PIPE2 => fd::pipe2, [Ptr, Hex], FULL;
    DUP2 => fd::dup2, [Int, Int], FULL;
    NANOSLEEP => time::nanosleep, [Ptr, Ptr], Support::Partial("restarted after a stop or an ignored signal with the full time");
    GETPID => process::getpid, [], FULL;
    EXIT => process::exit, [Int], FULL;
    CLONE => clone::clone, [Hex, Ptr, Ptr, Ptr, Ptr], Support::Partial("no namespaces (EPERM), no CLONE_PIDFD");
    CLONE3 => clone::clone3, [Ptr, Uint], Support::Partial("no namespaces (EPERM), no CLONE_PIDFD, no set_tid");
    FORK => clone::fork, [], FULL;
    VFORK => clone::vfork, [], FULL;
    UNSHARE => clone::unshare, [Hex], Support::Partial("fd table and filesystem context; no namespaces (EPERM)");
    EXECVE => exec::execve, [Str, Ptr, Ptr], FULL;
    EXECVEAT => exec::execveat, [Int, Str, Ptr, Ptr, Hex], FULL;
    WAIT4 => wait::wait4, [Int, Ptr, Hex, Ptr], FULL;
    WAITID => wait::waitid, [Int, Int, Ptr, Hex, Ptr], FULL;
    UNAME => system::uname, [Ptr], FULL;
    SETHOSTNAME => system::sethostname, [Ptr, Int], FULL;
    SETDOMAINNAME => system::setdomainname, [Ptr, Int], FULL;
    FCNTL => fd::fcntl, [Int, Int, Hex], Support::Partial("F_DUPFD(_CLOEXEC), F_GETFD/SETFD, F_GETFL/SETFL, locks, pipe size, F_SETOWN(_EX)/F_SETSIG recorded but no SIGIO is sent; no leases, notify, seals");
    ACCESS => attrs::access, [Str, Hex], FULL;
    TRUNCATE => attrs::truncate, [Str, Int], FULL;
    FTRUNCATE => attrs::ftruncate, [Int, Int], FULL;
    GETDENTS64 => open::getdents64, [Int, Ptr, Uint], FULL;
    GETCWD => fs_context::getcwd, [Ptr, Uint], FULL;
    CHDIR => fs_context::chdir, [Str], FULL;
    FCHDIR => fs_context::fchdir, [Int], FULL;
    RENAME => names::rename, [Str, Str], FULL;
    MKDIR => names::mkdir, [Str, Hex], FULL;
    RMDIR => names::rmdir, [Str], FULL;
    CREAT => open::creat, [Str, Hex], FULL;
    LINK => names::link, [Str, Str], FULL;
    UNLINK => names::unlink, [Str], FULL;
    SYMLINK => names::symlink, [Str, Str], FULL;
    READLINK => names::readlink, [Str, Ptr, Uint], FULL;
    UTIME => attrs::utime, [Str, Ptr], FULL;
    MEMFD_CREATE => open::memfd_create, [Str, Hex], Support::Partial("reads, writes, ftruncate and private mappings; no writable shared mappings or seals yet");
    COPY_FILE_RANGE => read_write::copy_file_range, [Int, Ptr, Int, Ptr, Uint, Hex], FULL;
    FLOCK => locks::flock, [Int, Hex], FULL;
    FALLOCATE => attrs::fallocate, [Int, Hex, Int, Int], Support::Partial("allocate (extends the size) and punch hole; collapse, insert, zero and unshare ranges are EOPNOTSUPP");
    FUTIMESAT => attrs::futimesat, [Int, Str, Ptr], FULL;
    SIGALTSTACK => signal::sigaltstack, [Ptr, Ptr], FULL;
    SYSINFO => system::sysinfo, [Ptr], FULL;
    SENDFILE => read_write::sendfile, [Int, Int, Ptr, Uint], FULL;
    SPLICE => read_write::splice, [Int, Ptr, Int, Ptr, Uint, Hex], Support::Partial("copies through the kernel rather than moving pages; vmsplice is not implemented");
    TEE => read_write::tee, [Int, Int, Uint, Hex], FULL;
    FSYNC => sync::fsync, [Int], FULL;
    FDATASYNC => sync::fdatasync, [Int], FULL;
    SYNC => sync::sync, [], FULL;
    SYNCFS => sync::syncfs, [Int], FULL;
    SYNC_FILE_RANGE => sync::sync_file_range, [Int, Int, Int, Hex], FULL;
    FADVISE64 => sync::fadvise64, [Int, Int, Int, Int], FULL;
    READAHEAD => sync::readahead, [Int, Int, Uint], FULL;
    SETXATTR => xattr::setxattr, [Str, Str, Ptr, Uint, Hex], FULL;
    LSETXATTR => xattr::lsetxattr, [Str, Str, Ptr, Uint, Hex], FULL;
    FSETXATTR => xattr::fsetxattr, [Int, Str, Ptr, Uint, Hex], FULL;
    GETXATTR => xattr::getxattr, [Str, Str, Ptr, Uint], FULL;
    LGETXATTR => xattr::lgetxattr, [Str, Str, Ptr, Uint], FULL;
    FGETXATTR => xattr::fgetxattr, [Int, Str, Ptr, Uint], FULL;
    LISTXATTR => xattr::listxattr, [Str, Ptr, Uint], FULL;
    LLISTXATTR => xattr::llistxattr, [Str, Ptr, Uint], FULL;
    FLISTXATTR => xattr::flistxattr, [Int, Ptr, Uint], FULL;
    REMOVEXATTR => xattr::removexattr, [Str, Str], FULL;
    LREMOVEXATTR => xattr::lremovexattr, [Str, Str], FULL;
    FREMOVEXATTR => xattr::fremovexattr, [Int, Str], FULL;
    CHMOD => attrs::chmod, [Str, Hex], FULL;
    FCHMOD => attrs::fchmod, [Int, Hex], FULL;
    CHOWN => attrs::chown, [Str, Int, Int], FULL;
    FCHOWN => attrs::fchown, [Int, Int, Int], FULL;
    LCHOWN => attrs::lchown, [Str, Int, Int], FULL;
    MKNOD => names::mknod, [Str, Hex, Hex], FULL;
    STATFS => stat::statfs, [Str, Ptr], Support::Partial("synthetic numbers");
    FSTATFS => stat::fstatfs, [Int, Ptr], Support::Partial("synthetic numbers");
    CHROOT => fs_context::chroot, [Str], FULL;
    UTIMES => attrs::utimes, [Str, Ptr], FULL;
    GETTIMEOFDAY => time::gettimeofday, [Ptr, Ptr], FULL;
    GETRLIMIT => resource::getrlimit, [Int, Ptr], FULL;
    GETRUSAGE => rusage::getrusage, [Int, Ptr], Support::Partial("CPU time is all user time; ru_maxrss as sampled by the calls, 0 for children; no fault, I/O or switch counts");
    TIMES => rusage::times, [Ptr], Support::Partial("CPU time is all user time; ticks count from the sandbox's start");
    GETUID => creds::getuid, [], FULL;
    GETGID => creds::getgid, [], FULL;
    GETEUID => creds::geteuid, [], FULL;
    GETEGID => creds::getegid, [], FULL;
    GETPPID => process::getppid, [], FULL;
    GETGROUPS => creds::getgroups, [Int, Ptr], FULL;
    SETUID => creds::setuid, [Int], FULL;
    SETGID => creds::setgid, [Int], FULL;
    SETREUID => creds::setreuid, [Int, Int], FULL;
    SETREGID => creds::setregid, [Int, Int], FULL;
    SETRESUID => creds::setresuid, [Int, Int, Int], FULL;
    SETRESGID => creds::setresgid, [Int, Int, Int], FULL;
    GETRESUID => creds::getresuid, [Ptr, Ptr, Ptr], FULL;
    GETRESGID => creds::getresgid, [Ptr, Ptr, Ptr], FULL;
    SETFSUID => creds::setfsuid, [Int], Support::Partial("file permission checks use it; new files' owners and owner-only operations still use the effective ID");
    SETFSGID => creds::setfsgid, [Int], Support::Partial("file permission checks use it; new files' owners and owner-only operations still use the effective ID");
    SETGROUPS => creds::setgroups, [Int, Ptr], FULL;
    CAPGET => creds::capget, [Ptr, Ptr], FULL;
    CAPSET => creds::capset, [Ptr, Ptr], Support::Partial("per-thread sets by Linux's rules; file capabilities and set-user-ID bits take no effect on execve");
    UMASK => fs_context::umask, [Hex], FULL;
    SETRLIMIT => resource::setrlimit, [Int, Ptr], FULL;
    ARCH_PRCTL => process::arch_prctl, [Hex, Hex], Support::Partial("no CPUID faulting, no AMX permission requests");
    GETTID => process::gettid, [], FULL;
    TIME => time::time, [Ptr], FULL;
    FUTEX => futex::futex, [Ptr, Hex, Int, Ptr, Ptr, Hex], Support::Partial("PI futexes are locks without priority inheritance (the host schedules every thread alike); no WAIT_REQUEUE_PI/CMP_REQUEUE_PI");
    SCHED_SETAFFINITY => sched::sched_setaffinity, [Int, Uint, Ptr], Support::Partial("recorded and reported; the host may run the thread on any of the sandbox's CPUs");
    SCHED_GETAFFINITY => sched::sched_getaffinity, [Int, Uint, Ptr], FULL;
    SET_TID_ADDRESS => process::set_tid_address, [Ptr], FULL;
    CLOCK_GETTIME => time::clock_gettime, [Int, Ptr], Support::Partial("no clocks of other processes");
    CLOCK_GETRES => time::clock_getres, [Int, Ptr], FULL;
    CLOCK_NANOSLEEP => time::clock_nanosleep, [Int, Hex, Ptr, Ptr], FULL;
    EXIT_GROUP => process::exit_group, [Int], FULL;
    NEWFSTATAT => stat::newfstatat, [Int, Str, Ptr, Hex], FULL;
    OPENAT => open::openat, [Int, Str, Hex, Hex], Support::Partial("no O_TMPFILE");
    MKDIRAT => names::mkdirat, [Int, Str, Hex], FULL;
    MKNODAT => names::mknodat, [Int, Str, Hex, Hex], FULL;
    FCHOWNAT => attrs::fchownat, [Int, Str, Int, Int, Hex], FULL;
    UNLINKAT => names::unlinkat, [Int, Str, Hex], FULL;
    RENAMEAT => names::renameat, [Int, Str, Int, Str], FULL;
    LINKAT => names::linkat, [Int, Str, Int, Str, Hex], FULL;
    SYMLINKAT => names::symlinkat, [Str, Int, Str], FULL;
    READLINKAT => names::readlinkat, [Int, Str, Ptr, Uint], FULL;
    FCHMODAT => attrs::fchmodat, [Int, Str, Hex], FULL;
    FACCESSAT => attrs::faccessat, [Int, Str, Hex], FULL;
    UTIMENSAT => attrs::utimensat, [Int, Str, Ptr, Hex], FULL;
    RENAMEAT2 => names::renameat2, [Int, Str, Int, Str, Hex], Support::Partial("no RENAME_WHITEOUT");
    EPOLL_CREATE => epoll::epoll_create, [Int], FULL;
    EPOLL_CREATE1 => epoll::epoll_create1, [Hex], FULL;
    EPOLL_CTL => epoll::epoll_ctl, [Int, Int, Int, Ptr], FULL;
    EPOLL_WAIT => epoll::epoll_wait, [Int, Ptr, Int, Int], FULL;
    EPOLL_PWAIT => epoll::epoll_pwait, [Int, Ptr, Int, Int, Ptr, Uint], FULL;
    EPOLL_PWAIT2 => epoll::epoll_pwait2, [Int, Ptr, Int, Ptr, Ptr, Uint], FULL;
    SOCKET => socket::socket, [Int, Hex, Int], Support::Partial("AF_UNIX; AF_INET and AF_INET6 TCP and UDP on the sandbox's loopback, or host sockets with --network=host; ICMP echo (ping) sockets, answered by the sandbox's own stack on loopback or through its interface (EACCES with --network=host); AF_NETLINK NETLINK_ROUTE (interface and address dumps); no packet or raw sockets");
    SOCKETPAIR => socket::socketpair, [Int, Hex, Int, Ptr], FULL;
    BIND => socket::bind, [Int, Ptr, Uint], FULL;
    LISTEN => socket::listen, [Int, Int], FULL;
    CONNECT => socket::connect, [Int, Ptr, Uint], FULL;
    ACCEPT => socket::accept, [Int, Ptr, Ptr], FULL;
    ACCEPT4 => socket::accept4, [Int, Ptr, Ptr, Hex], FULL;
    SENDTO => socket::sendto, [Int, InBuf, Uint, Hex, Ptr, Uint], Support::Partial("no MSG_OOB (TCP urgent data)");
    RECVFROM => socket::recvfrom, [Int, OutBuf, Uint, Hex, Ptr, Ptr], Support::Partial("no MSG_OOB");
    SENDMSG => socket::sendmsg, [Int, Ptr, Hex], Support::Partial("no MSG_OOB");
    RECVMSG => socket::recvmsg, [Int, Ptr, Hex], Support::Partial("no MSG_OOB; SO_TIMESTAMP(NS), IP_TTL/IP_TOS and IPV6_HOPLIMIT/IPV6_TCLASS on ping sockets only; no IP_PKTINFO; MSG_ERRQUEUE finds an empty queue");
    SENDMMSG => socket::sendmmsg, [Int, Ptr, Uint, Hex], FULL;
    RECVMMSG => socket::recvmmsg, [Int, Ptr, Uint, Hex, Ptr], FULL;
    SHUTDOWN => socket::shutdown, [Int, Int], FULL;
    GETSOCKOPT => socket::getsockopt, [Int, Int, Int, Ptr, Ptr], Support::Partial("SOL_SOCKET; IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP (TCP_INFO basic fields) and IPPROTO_UDP options of inet sockets");
    SETSOCKOPT => socket::setsockopt, [Int, Int, Int, Ptr, Uint], Support::Partial("as getsockopt; TCP/IP tuning (TTL, TOS, keepalive, Nagle, multicast) is recorded with Linux's checks, not applied to loopback");
    GETSOCKNAME => socket::getsockname, [Int, Ptr, Ptr], FULL;
    GETPEERNAME => socket::getpeername, [Int, Ptr, Ptr], FULL;
    SIGNALFD => signalfd::signalfd, [Int, Ptr, Uint], FULL;
    SIGNALFD4 => signalfd::signalfd4, [Int, Ptr, Uint, Hex], FULL;
    PIDFD_OPEN => signalfd::pidfd_open, [Int, Hex], FULL;
    KCMP => kcmp::kcmp, [Int, Int, Int, Int, Int], Support::Partial("KCMP_EPOLL_TFD is EOPNOTSUPP");
    PIDFD_SEND_SIGNAL => signalfd::pidfd_send_signal, [Int, Int, Ptr, Hex], FULL;
    TIMER_CREATE => posix_timer::timer_create, [Int, Ptr, Ptr], Support::Partial("no timers on CPU-time clocks (EOPNOTSUPP)");
    TIMER_SETTIME => posix_timer::timer_settime, [Int, Hex, Ptr, Ptr], FULL;
    TIMER_GETTIME => posix_timer::timer_gettime, [Int, Ptr], FULL;
    TIMER_GETOVERRUN => posix_timer::timer_getoverrun, [Int], FULL;
    TIMER_DELETE => posix_timer::timer_delete, [Int], FULL;
    TIMERFD_CREATE => timerfd::timerfd_create, [Int, Hex], FULL;
    TIMERFD_SETTIME => timerfd::timerfd_settime, [Int, Hex, Ptr, Ptr], FULL;
    TIMERFD_GETTIME => timerfd::timerfd_gettime, [Int, Ptr], FULL;
    EVENTFD => epoll::eventfd, [Uint], FULL;
    EVENTFD2 => epoll::eventfd2, [Uint, Hex], FULL;
    PPOLL => poll::ppoll, [Ptr, Uint, Ptr, Ptr, Uint], FULL;
    STATX => stat::statx, [Int, Str, Hex, Hex, Ptr], FULL;
    CLOSE_RANGE => open::close_range, [Uint, Uint, Hex], FULL;
    FACCESSAT2 => attrs::faccessat2, [Int, Str, Hex, Hex], FULL;
    FCHMODAT2 => attrs::fchmodat2, [Int, Str, Hex, Hex], FULL;
    SET_ROBUST_LIST => process::set_robust_list, [Ptr, Uint], FULL;
    GET_ROBUST_LIST => process::get_robust_list, [Int, Ptr, Ptr], FULL;
    DUP3 => fd::dup3, [Int, Int, Hex], FULL;
    PRLIMIT64 => resource::prlimit64, [Int, Int, Ptr, Ptr], FULL;
    GETRANDOM => system::getrandom, [Ptr, Uint, Hex], FULL;
    RSEQ => process::rseq, [Ptr, Uint, Hex, Hex], Support::Partial("returns ENOSYS by design: libc then runs without rseq");
}

/// Serve the system call the current task trapped with, writing the result into `rax`.
pub fn dispatch(task: &mut Task) {
    let number = task.regs.orig_rax;
    let args = task.regs.syscall_args();
    // A patched site's trap is a `syscall` (its fallback traps as an ordinary one): no need
    // to read the two bytes before the return address under the memory manager's lock.
    let int80 = !task.context.patched_trap() && is_int80(task);
    let info = if int80 { None } else { lookup(number) };
    let result = match info {
        Some(info) => (info.handler)(task, &args),
        None if int80 => {
            task.kernel
                .report_unimplemented(u64::MAX, "int 0x80 (32-bit system calls)");
            Err(Errno::ENOSYS)
        }
        None => {
            let name = moat_abi::syscall_name(number).unwrap_or("unknown");
            task.kernel.report_unimplemented(number, name);
            Err(Errno::ENOSYS)
        }
    };
    task.regs.rax = match result {
        Ok(v) => v,
        // Interrupted by a signal: delivery decides between a restart and EINTR.
        Err(e) if e.is_restart() => {
            task.restart = Some(e);
            Errno::EINTR.as_return()
        }
        Err(e) => e.as_return(),
    };
    if task.kernel.strace {
        let name = moat_abi::syscall_name(number)
            .map_or_else(|| format!("syscall_{number}"), str::to_string);
        let kinds: &[Arg] = info.map_or(&[Hex, Hex, Hex, Hex, Hex, Hex], |i| i.args);
        let line =
            crate::strace::format(&mut task.mm.guard(), task.tid, &name, kinds, &args, result);
        eprintln!("{line}");
    }
}

/// Whether the trap came from `int $0x80` (the 32-bit ABI, whose numbers mean other calls)
/// rather than `syscall`: the two bytes before the return address tell.
fn is_int80(task: &mut Task) -> bool {
    let mut insn = [0u8; 2];
    task.regs
        .rip
        .checked_sub(2)
        .is_some_and(|at| task.mm.guard().read_bytes(at, &mut insn).is_ok())
        && insn == [0xcd, 0x80]
}

/// Arguments as C `int`s (the upper half of the register is ignored, as Linux does).
pub(crate) fn int(a: u64) -> i32 {
    a as u32 as i32
}
