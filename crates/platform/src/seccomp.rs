//! The stub's seccomp filter, built by hand because it must match the instruction pointer
//! (seccompiler cannot): a system call is allowed only if it is `mmap` of the memory file,
//! `munmap` or `mprotect`, issued from the stub's own code page. Anything else kills the stub.
//!
//! Under ptrace the application's own system calls never reach this filter (`PTRACE_SYSEMU`
//! skips them first); the filter is what is left if the application escaped the tracer.

use crate::{STUB_BASE, STUB_LEN};

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_W | BPF_ABS` (BPF_LD and BPF_W are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
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

/// The fd number the memory file has inside every stub.
pub const STUB_MEMFD_FD: i32 = 3;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The stub filter program. Jump offsets count instructions after the jump.
pub fn stub_filter() -> Vec<libc::sock_filter> {
    let stub_end = STUB_BASE + STUB_LEN;
    let (base_lo, base_hi) = (STUB_BASE as u32, (STUB_BASE >> 32) as u32);
    let end_lo = stub_end as u32;
    debug_assert_eq!(
        stub_end >> 32,
        STUB_BASE >> 32,
        "stub must not straddle a 4 GiB line"
    );
    let prog = vec![
        /* 0 */ stmt(BPF_LD_W_ABS, OFF_ARCH),
        /* 1 */ jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 0, 15), // -> 17 kill
        /* 2 */ stmt(BPF_LD_W_ABS, OFF_IP_HI),
        /* 3 */ jump(BPF_JMP_JEQ_K, base_hi, 0, 13), // -> 17 kill
        /* 4 */ stmt(BPF_LD_W_ABS, OFF_IP_LO),
        /* 5 */ jump(BPF_JMP_JGE_K, base_lo, 0, 11), // below the stub -> 17 kill
        /* 6 */ jump(BPF_JMP_JGE_K, end_lo, 10, 0), // past the stub -> 17 kill
        /* 7 */ stmt(BPF_LD_W_ABS, OFF_NR),
        /* 8 */ jump(BPF_JMP_JEQ_K, libc::SYS_munmap as u32, 7, 0), // -> 16 allow
        /* 9 */ jump(BPF_JMP_JEQ_K, libc::SYS_mprotect as u32, 6, 0), // -> 16 allow
        /* 10 */ jump(BPF_JMP_JEQ_K, libc::SYS_mmap as u32, 0, 6), // -> 17 kill
        /* 11 */ stmt(BPF_LD_W_ABS, off_arg_lo(4)),
        /* 12 */ jump(BPF_JMP_JEQ_K, STUB_MEMFD_FD as u32, 0, 4), // -> 17 kill
        /* 13 */ stmt(BPF_LD_W_ABS, off_arg_lo(4) + 4),
        /* 14 */ jump(BPF_JMP_JEQ_K, 0, 1, 2), // -> 16 allow / 17 kill
        /* 15 */ stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        /* 16 */ stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        /* 17 */ stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
    ];
    prog
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

    fn data(nr: i64, ip: u64, arg4: u64) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
        d[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
        d[8..16].copy_from_slice(&ip.to_ne_bytes());
        d[48..56].copy_from_slice(&arg4.to_ne_bytes());
        d
    }

    #[test]
    fn filter_allows_only_stub_memory_calls() {
        let p = stub_filter();
        let ip = STUB_BASE + 0x40;
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
        assert_eq!(
            run(&p, &data(libc::SYS_munmap, 0x40_0000, 0)),
            SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, &data(libc::SYS_munmap, STUB_BASE - 1, 0)),
            SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, &data(libc::SYS_munmap, STUB_BASE + STUB_LEN, 0)),
            SECCOMP_RET_KILL_PROCESS
        );
        let mut wrong_arch = data(libc::SYS_munmap, ip, 0);
        wrong_arch[4..8].copy_from_slice(&0x4000_0003u32.to_ne_bytes());
        assert_eq!(run(&p, &wrong_arch), SECCOMP_RET_KILL_PROCESS);
    }
}
