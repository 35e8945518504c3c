//! The stub's code: a few position-independent instructions that a freshly forked child
//! copies to [`STUB_BASE`], then uses to confine and empty itself.
//!
//! Entry (still at the copy inside Moat's own text, `rdi` = the seccomp `sock_fprog`):
//! 0. clear the parent-death signal (see below);
//! 1. map an anonymous page at `STUB_BASE`, copy this code there, make it read+exec, jump to it;
//! 2. install the seccomp filter, unmap everything below `STUB_BASE`, and trap (`int3`): the
//!    stub is ready, owning nothing but this page and the memory file's fd;
//! 3. from then on the kernel injects system calls by pointing `rip` at the gadget
//!    ([`gadget_address`]: `syscall; int3`) with `PTRACE_CONT`;
//! 4. new threads come from a `clone` injected at the clone gadget ([`clone_gadget_address`]):
//!    the parent (`rax` != 0: the child's tid, or an error) traps on `int3` as after any
//!    injected call, the child (`rax` == 0) loops on `pause` without touching the stack until
//!    a host thread seizes it and gives it registers of its own.
//!
//! If a step fails the stub executes `ud2`, which the kernel sees as `SIGILL` during set-up.
//!
//! The parent-death signal: the forked child sets `PR_SET_PDEATHSIG` to `SIGKILL` so that it
//! cannot outlive Moat while it is set up and not yet traced with `PTRACE_O_EXITKILL`. But the
//! "parent" the host watches is the *thread* that forked, and once the address space has
//! several threads that host thread may end (its task exited) while other host threads still
//! run the stub. So the stub code clears the signal first thing: it only runs after the
//! tracer has set `PTRACE_O_EXITKILL`, which from then on kills the stub if Moat dies.

use crate::{STUB_BASE, STUB_LEN};

core::arch::global_asm!(
    ".pushsection .text.moat_stub, \"ax\"",
    ".p2align 12",
    ".globl moat_stub_start",
    "moat_stub_start:",
    "    mov %rdi, %r12",
    // prctl(PR_SET_PDEATHSIG, 0)
    "    mov $157, %eax",
    "    mov $1, %edi",
    "    xor %esi, %esi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz 9f",
    // mmap(STUB_BASE, STUB_LEN, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
    "    mov $9, %eax",
    "    movabs ${base}, %rdi",
    "    mov ${len}, %esi",
    "    mov $3, %edx",
    "    mov $0x32, %r10d",
    "    mov $-1, %r8",
    "    xor %r9d, %r9d",
    "    syscall",
    "    movabs ${base}, %rdi",
    "    cmp %rdi, %rax",
    "    jne 9f",
    "    lea moat_stub_start(%rip), %rsi",
    "    mov $(moat_stub_end - moat_stub_start), %ecx",
    "    rep movsb",
    // mprotect(STUB_BASE, STUB_LEN, PROT_READ|PROT_EXEC)
    "    mov $10, %eax",
    "    movabs ${base}, %rdi",
    "    mov ${len}, %esi",
    "    mov $5, %edx",
    "    syscall",
    "    test %rax, %rax",
    "    jnz 9f",
    "    movabs ${base} + (2f - moat_stub_start), %rax",
    "    jmp *%rax",
    "2:",
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, fprog)
    "    mov $317, %eax",
    "    mov $1, %edi",
    "    xor %esi, %esi",
    "    mov %r12, %rdx",
    "    syscall",
    "    test %rax, %rax",
    "    jnz 9f",
    // munmap(0, STUB_BASE): drop every mapping inherited from Moat.
    "    mov $11, %eax",
    "    xor %edi, %edi",
    "    movabs ${base}, %rsi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz 9f",
    "    int3",
    ".globl moat_stub_gadget",
    "moat_stub_gadget:",
    "    syscall",
    "    int3",
    ".globl moat_stub_clone_gadget",
    "moat_stub_clone_gadget:",
    "    syscall",
    "    test %rax, %rax",
    "    jz 3f",
    "    int3",
    // The new thread: wait for a host thread to seize it. Its signals are all blocked (the
    // kernel blocks them in the parent around the clone), so only ptrace wakes it.
    "3:",
    "    mov $34, %eax",
    "    syscall",
    "    jmp 3b",
    "9:",
    "    ud2",
    ".globl moat_stub_end",
    "moat_stub_end:",
    ".popsection",
    base = const STUB_BASE,
    len = const STUB_LEN,
    options(att_syntax)
);

// SAFETY: the four labels are defined by the `global_asm!` above, in this crate; Moat only
// takes their addresses (safe), never reads through them as `u8`.
unsafe extern "C" {
    static moat_stub_start: u8;
    static moat_stub_gadget: u8;
    static moat_stub_clone_gadget: u8;
    static moat_stub_end: u8;
}

/// Address of the stub's entry in Moat's own text (where the child jumps after fork).
pub fn entry() -> usize {
    &raw const moat_stub_start as usize
}

/// Offset of the `syscall; int3` gadget from the start of the stub.
pub fn gadget_offset() -> u64 {
    (&raw const moat_stub_gadget as usize - &raw const moat_stub_start as usize) as u64
}

/// Size of the stub's code; it must fit its page.
pub fn code_len() -> u64 {
    (&raw const moat_stub_end as usize - &raw const moat_stub_start as usize) as u64
}

/// The address the injected system calls start at.
pub fn gadget_address() -> u64 {
    STUB_BASE + gadget_offset()
}

/// The address an injected `clone` starts at: `syscall`, then `int3` in the parent and the
/// waiting loop in the child.
pub fn clone_gadget_address() -> u64 {
    STUB_BASE
        + (&raw const moat_stub_clone_gadget as usize - &raw const moat_stub_start as usize) as u64
}

const _: () = assert!(STUB_LEN == 0x1000);
