//! The Linux x86-64 application binary interface, as data: system call numbers and names,
//! errno values, and the layouts of the structures that cross the user/kernel boundary.
//!
//! No logic lives here. Structures derive `zerocopy` traits so the kernel can copy them to
//! and from application memory without `unsafe`.

#![forbid(unsafe_code)]

pub mod errno;
pub mod syscalls;

pub use errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Look up a system call's name by number.
pub fn syscall_name(nr: u64) -> Option<&'static str> {
    let nr = u32::try_from(nr).ok()?;
    syscalls::SYSCALLS
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .map(|i| syscalls::SYSCALLS[i].1)
}

/// The general-purpose registers of an x86-64 thread, laid out as Linux's `user_regs_struct`
/// (what `PTRACE_GETREGS` returns), so a platform can move them in one copy.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The system call number at a syscall trap (`rax` holds the return value slot).
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl Regs {
    /// The six system call arguments in ABI order (rdi, rsi, rdx, r10, r8, r9).
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// `struct timespec`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

/// `struct timeval`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Timeval {
    pub tv_sec: i64,
    pub tv_usec: i64,
}

/// `struct timezone` (obsolete, but `gettimeofday` still fills it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Timezone {
    pub tz_minuteswest: i32,
    pub tz_dsttime: i32,
}

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Iovec {
    pub base: u64,
    pub len: u64,
}

/// `struct rlimit` (and `struct rlimit64`: identical on x86-64).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

/// `struct new_utsname`: six fields of 65 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Utsname {
    pub sysname: [u8; 65],
    pub nodename: [u8; 65],
    pub release: [u8; 65],
    pub version: [u8; 65],
    pub machine: [u8; 65],
    pub domainname: [u8; 65],
}

/// `stack_t` for `sigaltstack`. Padding is explicit so every byte has a name.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct StackT {
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub pad: u32,
    pub ss_size: u64,
}

/// `struct flock` for the fcntl record-lock commands.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Flock {
    pub l_type: i16,
    pub l_whence: i16,
    pub pad0: u32,
    pub l_start: i64,
    pub l_len: i64,
    pub l_pid: i32,
    pub pad1: u32,
}

/// `struct sysinfo` on x86-64.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Sysinfo {
    pub uptime: i64,
    pub loads: [u64; 3],
    pub totalram: u64,
    pub freeram: u64,
    pub sharedram: u64,
    pub bufferram: u64,
    pub totalswap: u64,
    pub freeswap: u64,
    pub procs: u16,
    pub pad0: u16,
    pub pad1: u32,
    pub totalhigh: u64,
    pub freehigh: u64,
    pub mem_unit: u32,
    pub pad2: u32,
}

/// The kernel's `struct sigaction` for `rt_sigaction` on x86-64 (not glibc's layout).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `siginfo_t`: 128 bytes; which of the union's fields are meaningful depends on the signal
/// and `si_code`, so the union is kept as words with accessors for the common shapes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    pub pad: i32,
    /// The union, from offset 16.
    pub fields: [u64; 14],
}

/// `si_code` values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_QUEUE: i32 = -1;
pub const SI_TIMER: i32 = -2;
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;
pub const CLD_STOPPED: i32 = 5;
pub const CLD_CONTINUED: i32 = 6;

impl SigInfo {
    /// A signal sent by a process (`kill`, `tkill`: `si_pid`, `si_uid`).
    pub fn from_process(signo: i32, code: i32, pid: i32, uid: u32) -> SigInfo {
        let mut info = SigInfo {
            signo,
            code,
            ..SigInfo::default()
        };
        info.fields[0] = u64::from(pid as u32) | (u64::from(uid) << 32);
        info
    }

    /// A synchronous fault at `addr`.
    pub fn fault(signo: i32, code: i32, addr: u64) -> SigInfo {
        let mut info = SigInfo {
            signo,
            code,
            ..SigInfo::default()
        };
        info.fields[0] = addr;
        info
    }

    /// `SIGCHLD` about a child: pid, uid, status, user and system time (clock ticks).
    pub fn child(code: i32, pid: i32, uid: u32, status: i32, utime: u64, stime: u64) -> SigInfo {
        let mut info = SigInfo {
            signo: 17,
            code,
            ..SigInfo::default()
        };
        info.fields[0] = u64::from(pid as u32) | (u64::from(uid) << 32);
        info.fields[1] = u64::from(status as u32);
        info.fields[2] = utime;
        info.fields[3] = stime;
        info
    }

    /// `si_pid` of the process-shaped union.
    pub fn pid(&self) -> i32 {
        self.fields[0] as u32 as i32
    }
}

/// x86-64 `struct stat` as `fstat`/`newfstatat` return it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_nlink: u64,
    pub st_mode: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub pad0: u32,
    pub st_rdev: u64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime: i64,
    pub st_atime_nsec: i64,
    pub st_mtime: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime: i64,
    pub st_ctime_nsec: i64,
    pub reserved: [i64; 3],
}

/// `struct winsize` (`TIOCGWINSZ`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Winsize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}

/// The kernel's `struct termios` (`TCGETS`): 36 bytes, 19 control characters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Termios {
    pub c_iflag: u32,
    pub c_oflag: u32,
    pub c_cflag: u32,
    pub c_lflag: u32,
    pub c_line: u8,
    pub c_cc: [u8; 19],
}

/// `struct robust_list_head` is three words; `set_robust_list` checks the size against it.
pub const ROBUST_LIST_HEAD_SIZE: u64 = 24;

/// Highest signal number on Linux (`_NSIG`).
pub const NSIG: u64 = 64;
/// Size in bytes of the kernel's signal set (`sizeof(kernel_sigset_t)`).
pub const SIGSET_SIZE: u64 = 8;

/// Page size of x86-64.
pub const PAGE_SIZE: u64 = 4096;
