//! The stub's seccomp filter, built by hand because it must match the instruction pointer
//! (seccompiler cannot). A system call is allowed only if it is issued from the stub's own
//! code page and is one of:
//! - `mmap` of the memory file (fd [`STUB_MEMFD_FD`]), `munmap`, `mprotect`: the kernel's
//!   changes to the address space;
//! - `clone` with exactly [`STUB_CLONE_FLAGS`] (a new thread in the same address space; its
//!   other arguments do not matter: no flag uses them, and the child only ever runs the stub's
//!   waiting loop until a host thread seizes it);
//! - `pause`, the loop a new thread waits in;
//! - `exit`, by which a thread ends (`exit_group` is not allowed: the process ends only when
//!   Moat kills it).
//!
//! Anything else kills the whole stub process.
//!
//! Under ptrace the application's own system calls never reach this filter (`PTRACE_SYSEMU`
//! skips them first); the filter is what is left if the application escaped the tracer. The
//! allowed calls give such code nothing: a thread it could start only loops in `pause`.
//!
//! The systrap platform's filter ([`systrap_filter`]) is the same idea with one change: a call
//! from *outside* the stub's code page is not killed but trapped (`SECCOMP_RET_TRAP`: the host
//! skips it and raises `SIGSYS`, whose handler in the stub hands it to the kernel). What the
//! stub page may call is what its signal handler and thread start need; see that function.

use crate::{STUB_BASE, STUB_LEN};

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_W | BPF_ABS` (BPF_LD and BPF_W are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;
const fn off_arg_lo(n: u32) -> u32 {
    16 + 8 * n
}
const fn off_arg_hi(n: u32) -> u32 {
    off_arg_lo(n) + 4
}

/// The fd number the memory file has inside every stub.
pub const STUB_MEMFD_FD: i32 = 3;

/// The only `clone` the stub may make: a thread sharing everything a thread shares (memory,
/// fs information, fd table, signal handlers, thread group, System V semaphore undo list).
pub const STUB_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// The only other `clone` the stub may make: a copy of the stub process (a forked address
/// space) whose parent is Moat, as the stub's own is (`CLONE_PARENT`), with no exit signal.
pub const STUB_FORK_FLAGS: u64 = libc::CLONE_PARENT as u64;

// The filter compares the low halves and requires zero high halves.
const _: () = assert!(STUB_CLONE_FLAGS >> 32 == 0 && STUB_FORK_FLAGS >> 32 == 0);

/// Where a jump goes: the next instruction or a label.
#[derive(Clone, Copy)]
enum To {
    Next,
    L(&'static str),
}

/// One instruction of the filter before jump offsets are known, or a label.
enum Ins {
    Load(u32),
    Jeq(u32, To, To),
    Jge(u32, To, To),
    Ret(u32),
    Label(&'static str),
}

/// Resolve labels into the relative jump offsets classic BPF wants (counted in instructions
/// after the jump, forward only, at most 255).
fn assemble(prog: &[Ins]) -> Vec<libc::sock_filter> {
    let mut labels = Vec::new();
    let mut pc = 0usize;
    for ins in prog {
        match ins {
            Ins::Label(name) => labels.push((*name, pc)),
            _ => pc += 1,
        }
    }
    let target = |to: To, pc: usize| -> u8 {
        let at = match to {
            To::Next => return 0,
            To::L(name) => {
                labels
                    .iter()
                    .find(|(l, _)| *l == name)
                    .unwrap_or_else(|| panic!("no label {name}"))
                    .1
            }
        };
        let off = at
            .checked_sub(pc + 1)
            .expect("classic BPF jumps forward only");
        u8::try_from(off).expect("jump too far for classic BPF")
    };
    let mut out = Vec::new();
    for ins in prog {
        let pc = out.len();
        let (code, k, jt, jf) = match *ins {
            Ins::Label(_) => continue,
            Ins::Load(off) => (BPF_LD_W_ABS, off, 0, 0),
            Ins::Jeq(k, t, f) => (BPF_JMP_JEQ_K, k, target(t, pc), target(f, pc)),
            Ins::Jge(k, t, f) => (BPF_JMP_JGE_K, k, target(t, pc), target(f, pc)),
            Ins::Ret(k) => (BPF_RET_K, k, 0, 0),
        };
        out.push(libc::sock_filter { code, jt, jf, k });
    }
    out
}

/// The stub filter program.
pub fn stub_filter() -> Vec<libc::sock_filter> {
    use Ins::{Jeq, Jge, Label, Load, Ret};
    use To::{Next, L};
    let stub_end = STUB_BASE + STUB_LEN;
    let (base_lo, base_hi) = (STUB_BASE as u32, (STUB_BASE >> 32) as u32);
    let end_lo = stub_end as u32;
    debug_assert_eq!(
        stub_end >> 32,
        STUB_BASE >> 32,
        "stub must not straddle a 4 GiB line"
    );
    let nr = |n: i64| n as u32;
    assemble(&[
        Load(OFF_ARCH),
        Jeq(AUDIT_ARCH_X86_64, Next, L("kill")),
        // The instruction pointer must be inside the stub page.
        Load(OFF_IP_HI),
        Jeq(base_hi, Next, L("kill")),
        Load(OFF_IP_LO),
        Jge(base_lo, Next, L("kill")),
        Jge(end_lo, L("kill"), Next),
        Load(OFF_NR),
        Jeq(nr(libc::SYS_munmap), L("allow"), Next),
        Jeq(nr(libc::SYS_mprotect), L("allow"), Next),
        Jeq(nr(libc::SYS_pause), L("allow"), Next),
        Jeq(nr(libc::SYS_exit), L("allow"), Next),
        Jeq(nr(libc::SYS_clone), L("clone"), Next),
        Jeq(nr(libc::SYS_mmap), Next, L("kill")),
        // mmap: only of the memory file.
        Load(off_arg_lo(4)),
        Jeq(STUB_MEMFD_FD as u32, Next, L("kill")),
        Load(off_arg_hi(4)),
        Jeq(0, L("allow"), L("kill")),
        Label("clone"),
        Load(off_arg_hi(0)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_lo(0)),
        Jeq(STUB_CLONE_FLAGS as u32, L("allow"), Next),
        Jeq(STUB_FORK_FLAGS as u32, L("allow"), L("kill")),
        Label("allow"),
        Ret(SECCOMP_RET_ALLOW),
        Label("kill"),
        Ret(SECCOMP_RET_KILL_PROCESS),
    ])
}

/// `prctl` options the systrap stub uses (linux/prctl.h).
pub const PR_SET_PDEATHSIG: u32 = 1;
pub const PR_SET_SYSCALL_USER_DISPATCH: u32 = 59;
/// `PR_SYS_DISPATCH_ON` (now `PR_SYS_DISPATCH_EXCLUSIVE_ON`).
pub const PR_SYS_DISPATCH_ON: u32 = 1;
const FUTEX_WAIT: u32 = 0;
const FUTEX_WAKE: u32 = 1;
/// `arch_prctl` codes: `ARCH_SET_GS`, `ARCH_SET_FS`, `ARCH_GET_FS`, `ARCH_GET_GS`.
const ARCH_FS_GS: [u32; 4] = [0x1001, 0x1002, 0x1003, 0x1004];

/// The systrap stub's filter.
///
/// A system call from outside the stub's code page is trapped (`SECCOMP_RET_TRAP`): the
/// host skips it and raises `SIGSYS`, which the stub's handler reports to the kernel. From
/// inside the code page, only these are allowed, and anything else kills the stub process:
/// - `rt_sigreturn`: the handler's way back into application code;
/// - `futex`, only `FUTEX_WAIT` and `FUTEX_WAKE` (shared, no flags): waiting for the kernel on
///   the thread's shared page and waking it;
/// - `mmap` of the memory file (fd [`STUB_MEMFD_FD`]), `munmap`, `mprotect`: the kernel's
///   commands that change the address space, and a thread mapping its own slot;
/// - `clone` with exactly [`STUB_CLONE_FLAGS`] (a thread) or [`STUB_FORK_FLAGS`] (a copy of the
///   stub for a fork or exec);
/// - `exit` (a thread ends; never `exit_group`), and for a new thread's start:
///   `sigaltstack`, `set_tid_address`, `rt_sigprocmask`, `getppid`, `prctl` only as
///   `PR_SET_PDEATHSIG` with `SIGKILL` or as `PR_SET_SYSCALL_USER_DISPATCH` turned on for
///   exactly the stub's code page;
/// - `arch_prctl` to get or set the FS and GS bases (for hosts without `FSGSBASE`).
///
/// Every one of these acts only on the calling stub process (its own threads, signal state,
/// and mappings of the memory file); see docs/SECURITY.md for what that leaves to a program
/// that jumps into the stub's code itself. 32-bit system calls (another audit arch) kill.
pub fn systrap_filter() -> Vec<libc::sock_filter> {
    use Ins::{Jeq, Jge, Label, Load, Ret};
    use To::{Next, L};
    let stub_end = STUB_BASE + STUB_LEN;
    let (base_lo, base_hi) = (STUB_BASE as u32, (STUB_BASE >> 32) as u32);
    let end_lo = stub_end as u32;
    debug_assert_eq!(stub_end >> 32, STUB_BASE >> 32);
    let nr = |n: i64| n as u32;
    assemble(&[
        Load(OFF_ARCH),
        Jeq(AUDIT_ARCH_X86_64, Next, L("kill")),
        // Outside the stub page: the application's own call, for the kernel.
        Load(OFF_IP_HI),
        Jeq(base_hi, Next, L("trap")),
        Load(OFF_IP_LO),
        Jge(base_lo, Next, L("trap")),
        Jge(end_lo, L("trap"), Next),
        Load(OFF_NR),
        Jeq(nr(libc::SYS_rt_sigreturn), L("allow"), Next),
        Jeq(nr(libc::SYS_futex), L("futex"), Next),
        Jeq(nr(libc::SYS_munmap), L("allow"), Next),
        Jeq(nr(libc::SYS_mprotect), L("allow"), Next),
        Jeq(nr(libc::SYS_exit), L("allow"), Next),
        Jeq(nr(libc::SYS_sigaltstack), L("allow"), Next),
        Jeq(nr(libc::SYS_set_tid_address), L("allow"), Next),
        Jeq(nr(libc::SYS_rt_sigprocmask), L("allow"), Next),
        Jeq(nr(libc::SYS_getppid), L("allow"), Next),
        Jeq(nr(libc::SYS_clone), L("clone"), Next),
        Jeq(nr(libc::SYS_prctl), L("prctl"), Next),
        Jeq(nr(libc::SYS_arch_prctl), L("arch_prctl"), Next),
        Jeq(nr(libc::SYS_mmap), Next, L("kill")),
        // mmap: only of the memory file.
        Load(off_arg_lo(4)),
        Jeq(STUB_MEMFD_FD as u32, Next, L("kill")),
        Load(off_arg_hi(4)),
        Jeq(0, L("allow"), L("kill")),
        Label("futex"),
        Load(off_arg_hi(1)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_lo(1)),
        Jeq(FUTEX_WAIT, L("allow"), Next),
        Jeq(FUTEX_WAKE, L("allow"), L("kill")),
        Label("clone"),
        Load(off_arg_hi(0)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_lo(0)),
        Jeq(STUB_CLONE_FLAGS as u32, L("allow"), Next),
        Jeq(STUB_FORK_FLAGS as u32, L("allow"), L("kill")),
        Label("prctl"),
        Load(off_arg_hi(0)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_hi(1)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_lo(0)),
        Jeq(PR_SET_PDEATHSIG, Next, L("dispatch")),
        Load(off_arg_lo(1)),
        Jeq(libc::SIGKILL as u32, L("allow"), L("kill")),
        Label("dispatch"),
        Jeq(PR_SET_SYSCALL_USER_DISPATCH, Next, L("kill")),
        Load(off_arg_lo(1)),
        Jeq(PR_SYS_DISPATCH_ON, Next, L("kill")),
        Load(off_arg_lo(2)),
        Jeq(base_lo, Next, L("kill")),
        Load(off_arg_hi(2)),
        Jeq(base_hi, Next, L("kill")),
        Load(off_arg_lo(3)),
        Jeq(STUB_LEN as u32, Next, L("kill")),
        Load(off_arg_hi(3)),
        Jeq(0, Next, L("kill")),
        // No selector byte: nothing in the application's memory can turn dispatch off.
        Load(off_arg_lo(4)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_hi(4)),
        Jeq(0, L("allow"), L("kill")),
        Label("arch_prctl"),
        Load(off_arg_hi(0)),
        Jeq(0, Next, L("kill")),
        Load(off_arg_lo(0)),
        Jeq(ARCH_FS_GS[0], L("allow"), Next),
        Jeq(ARCH_FS_GS[1], L("allow"), Next),
        Jeq(ARCH_FS_GS[2], L("allow"), Next),
        Jeq(ARCH_FS_GS[3], L("allow"), L("kill")),
        Label("allow"),
        Ret(SECCOMP_RET_ALLOW),
        Label("trap"),
        Ret(SECCOMP_RET_TRAP),
        Label("kill"),
        Ret(SECCOMP_RET_KILL_PROCESS),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter, enough to check the jump arithmetic of the filter.
    fn run(prog: &[libc::sock_filter], data: &[u8; 64]) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            match ins.code {
                BPF_LD_W_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                BPF_JMP_JEQ_K | BPF_JMP_JGE_K => {
                    let taken = if ins.code == BPF_JMP_JEQ_K {
                        acc == ins.k
                    } else {
                        acc >= ins.k
                    };
                    pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
                }
                BPF_RET_K => return ins.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    /// `seccomp_data` for system call `nr` at `ip` with arguments `args`.
    fn call(nr: i64, ip: u64, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
        d[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
        d[8..16].copy_from_slice(&ip.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        d
    }

    /// `seccomp_data` with only the fifth argument (mmap's fd) set.
    fn data(nr: i64, ip: u64, arg4: u64) -> [u8; 64] {
        call(nr, ip, [0, 0, 0, 0, arg4, 0])
    }

    const IP: u64 = STUB_BASE + 0x40;
    const OUTSIDE: [u64; 3] = [0x40_0000, STUB_BASE - 1, STUB_BASE + STUB_LEN];

    #[test]
    fn filter_allows_only_stub_memory_calls() {
        let p = stub_filter();
        let ip = IP;
        assert_eq!(run(&p, &data(libc::SYS_munmap, ip, 0)), SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, &data(libc::SYS_mprotect, ip, 0)), SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, &data(libc::SYS_mmap, ip, 3)), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&p, &data(libc::SYS_mmap, ip, 4)),
            SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, &data(libc::SYS_mmap, ip, 3 | (1 << 32))),
            SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, &data(libc::SYS_getpid, ip, 0)),
            SECCOMP_RET_KILL_PROCESS
        );
        for ip in OUTSIDE {
            assert_eq!(
                run(&p, &data(libc::SYS_munmap, ip, 0)),
                SECCOMP_RET_KILL_PROCESS
            );
        }
        let mut wrong_arch = data(libc::SYS_munmap, ip, 0);
        wrong_arch[4..8].copy_from_slice(&0x4000_0003u32.to_ne_bytes());
        assert_eq!(run(&p, &wrong_arch), SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn filter_allows_thread_calls_from_the_stub_only() {
        let p = stub_filter();
        let clone = |ip, flags| run(&p, &call(libc::SYS_clone, ip, [flags, 0, 0, 0, 0, 0]));
        assert_eq!(clone(IP, STUB_CLONE_FLAGS), SECCOMP_RET_ALLOW);
        assert_eq!(clone(IP, STUB_FORK_FLAGS), SECCOMP_RET_ALLOW);
        for ip in OUTSIDE {
            assert_eq!(clone(ip, STUB_FORK_FLAGS), SECCOMP_RET_KILL_PROCESS);
        }
        for flags in [
            STUB_FORK_FLAGS | libc::SIGCHLD as u64,
            STUB_FORK_FLAGS | libc::CLONE_VM as u64,
            STUB_FORK_FLAGS | (1 << 32),
        ] {
            assert_eq!(clone(IP, flags), SECCOMP_RET_KILL_PROCESS, "{flags:#x}");
        }
        for nr in [libc::SYS_pause, libc::SYS_exit] {
            assert_eq!(run(&p, &data(nr, IP, 0)), SECCOMP_RET_ALLOW);
        }
        for ip in OUTSIDE {
            assert_eq!(clone(ip, STUB_CLONE_FLAGS), SECCOMP_RET_KILL_PROCESS);
            for nr in [libc::SYS_pause, libc::SYS_exit] {
                assert_eq!(run(&p, &data(nr, ip, 0)), SECCOMP_RET_KILL_PROCESS);
            }
        }
        // Any other clone: a process (no CLONE_THREAD), a thread with extras, flags hidden
        // in the upper half, or no flags at all.
        let sigchld = libc::SIGCHLD as u64;
        let settls = libc::CLONE_SETTLS as u64;
        let vm_only = libc::CLONE_VM as u64;
        for flags in [
            sigchld,
            STUB_CLONE_FLAGS & !(libc::CLONE_THREAD as u64),
            STUB_CLONE_FLAGS | settls,
            STUB_CLONE_FLAGS | (1 << 32),
            vm_only,
            0,
        ] {
            assert_eq!(clone(IP, flags), SECCOMP_RET_KILL_PROCESS, "{flags:#x}");
        }
        // Neighbours of the allowed calls stay forbidden.
        for nr in [
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_exit_group,
            libc::SYS_rt_sigprocmask,
            libc::SYS_prctl,
        ] {
            assert_eq!(run(&p, &data(nr, IP, 0)), SECCOMP_RET_KILL_PROCESS, "{nr}");
        }
    }

    #[test]
    fn systrap_filter_traps_the_application_and_confines_the_stub() {
        let p = systrap_filter();
        // Every call from outside the stub page is trapped, whatever it is.
        for ip in OUTSIDE {
            for nr in [
                libc::SYS_getpid,
                libc::SYS_openat,
                libc::SYS_rt_sigreturn,
                libc::SYS_munmap,
                libc::SYS_exit_group,
                libc::SYS_clone,
                0x4000_0000 | libc::SYS_getpid,
                999,
            ] {
                assert_eq!(
                    run(&p, &data(nr, ip, 3)),
                    SECCOMP_RET_TRAP,
                    "{nr} at {ip:#x}"
                );
            }
        }
        // Another architecture (int 0x80 from 64-bit code) is killed, even outside.
        let mut i386 = data(libc::SYS_getpid, OUTSIDE[0], 0);
        i386[4..8].copy_from_slice(&0x4000_0003u32.to_ne_bytes());
        assert_eq!(run(&p, &i386), SECCOMP_RET_KILL_PROCESS);
        // From the stub page: the stub's own few calls.
        for nr in [
            libc::SYS_rt_sigreturn,
            libc::SYS_munmap,
            libc::SYS_mprotect,
            libc::SYS_exit,
            libc::SYS_sigaltstack,
            libc::SYS_set_tid_address,
            libc::SYS_rt_sigprocmask,
            libc::SYS_getppid,
        ] {
            assert_eq!(run(&p, &data(nr, IP, 0)), SECCOMP_RET_ALLOW, "{nr}");
        }
        assert_eq!(run(&p, &data(libc::SYS_mmap, IP, 3)), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&p, &data(libc::SYS_mmap, IP, 4)),
            SECCOMP_RET_KILL_PROCESS
        );
        let futex = |op| run(&p, &call(libc::SYS_futex, IP, [0, op, 0, 0, 0, 0]));
        assert_eq!(futex(0), SECCOMP_RET_ALLOW);
        assert_eq!(futex(1), SECCOMP_RET_ALLOW);
        for op in [128, 129, 2, 5, 9, 1 << 32] {
            assert_eq!(futex(op), SECCOMP_RET_KILL_PROCESS, "futex op {op:#x}");
        }
        let clone = |flags| run(&p, &call(libc::SYS_clone, IP, [flags, 0, 0, 0, 0, 0]));
        assert_eq!(clone(STUB_CLONE_FLAGS), SECCOMP_RET_ALLOW);
        assert_eq!(clone(STUB_FORK_FLAGS), SECCOMP_RET_ALLOW);
        assert_eq!(clone(libc::SIGCHLD as u64), SECCOMP_RET_KILL_PROCESS);
        let prctl = |args| run(&p, &call(libc::SYS_prctl, IP, args));
        assert_eq!(prctl([1, 9, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(prctl([1, 0, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(
            prctl([1, 9 | (1 << 32), 0, 0, 0, 0]),
            SECCOMP_RET_KILL_PROCESS
        );
        let sud = [59, 1, STUB_BASE, STUB_LEN, 0, 0];
        assert_eq!(prctl(sud), SECCOMP_RET_ALLOW);
        for (i, bad) in [
            (1, 0),
            (2, 0x40_0000),
            (3, STUB_LEN * 2),
            (4, 0x1000),
            (2, STUB_BASE | (1 << 63)),
        ] {
            let mut args = sud;
            args[i] = bad;
            assert_eq!(prctl(args), SECCOMP_RET_KILL_PROCESS, "{args:x?}");
        }
        for option in [4, 22, 38, 0x5969_7377] {
            assert_eq!(prctl([option, 0, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        }
        let arch_prctl = |code| run(&p, &call(libc::SYS_arch_prctl, IP, [code, 0, 0, 0, 0, 0]));
        for code in 0x1001..=0x1004 {
            assert_eq!(arch_prctl(code), SECCOMP_RET_ALLOW);
        }
        assert_eq!(arch_prctl(0x1012), SECCOMP_RET_KILL_PROCESS);
        for nr in [
            libc::SYS_getpid,
            libc::SYS_openat,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_execve,
            libc::SYS_exit_group,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_ptrace,
            libc::SYS_seccomp,
            libc::SYS_rt_sigaction,
            libc::SYS_pause,
            libc::SYS_socket,
        ] {
            assert_eq!(run(&p, &data(nr, IP, 3)), SECCOMP_RET_KILL_PROCESS, "{nr}");
        }
    }
}
