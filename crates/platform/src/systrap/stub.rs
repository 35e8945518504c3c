//! The systrap stub's code: one page of position-independent instructions that a freshly
//! forked child copies to [`STUB_BASE`], and that every stub thread then runs when it traps.
//!
//! # Slots
//! Every stub thread owns a slot of [`STUB_SLOT_SIZE`] bytes in the stub area (slot `i` at
//! `STUB_AREA_BASE + i * STUB_SLOT_SIZE`), mapped from pages of the memory file that the
//! kernel also has mapped: the first page is the *header* the thread shares with the kernel
//! (offsets `H_*` below), the rest its signal stack (`sigaltstack`). A signal is delivered on
//! that stack, so the handler finds its slot by rounding its stack pointer down, and the
//! signal frame the host writes there — the application's registers, FP/XSAVE state included
//! — is itself in memory the kernel reads and writes.
//!
//! # The handler
//! Every catchable signal has the same handler (`SA_SIGINFO | SA_ONSTACK`, all signals blocked
//! while it runs): a system call trapped by seccomp (`SIGSYS`), a fault, the kernel's
//! interrupt, anything. It
//! 1. records the signal number, `si_code`, `si_addr`, the address of the `ucontext` and the FS
//!    and GS bases in the header;
//! 2. publishes `ST_TRAP` in the header's state word (waking the kernel with `FUTEX_WAKE` if the
//!    kernel said it sleeps, bit 31);
//! 3. waits for the kernel: spins for `H_SPIN` rounds, then sleeps with `FUTEX_WAIT` after
//!    setting bit 31;
//! 4. makes the mappings and protections the kernel deferred to this hand-over (`H_BATCH`),
//!    if any;
//! 5. on `K_CMD` runs the command in the header (a system call, or a new thread, or a copy of
//!    the process), stores the result, publishes `ST_DONE` and waits again;
//! 6. on `K_RUN` loads the FS and GS bases from the header and returns into application code
//!    with `rt_sigreturn` through the (kernel-edited) signal frame.
//!
//! The handler keeps what it trusts in registers: its slot (from its stack pointer) and the
//! frame's address (from the host). Everything else it reads from the header, which the
//! application can write too: at worst that makes the thread run one of the calls the filter
//! allows, which the application could make itself by jumping here.
//!
//! # The patched path
//! A system call site the kernel patched ([`super::patch`]) jumps, through its trampoline, to
//! `moat_systrap_patched` without any signal: it saves the flags (`lahf`/`seto`), checks that
//! the GS base is a slot (else it runs the trampoline's own `syscall`, which traps), stores
//! the registers in a `ucontext` at [`PATCH_UC`] (a signal frame's layout, so the kernel reads
//! it the same way), switches to a stack in the slot and joins the handler at the point where
//! it records the FS and GS bases; at `K_RUN` the handler's tail sees the patched `ucontext`
//! and, instead of `rt_sigreturn`, loads the registers (and the FP state, if the kernel had it
//! saved with `CMD_XSAVE`) and jumps back. Signals are not blocked on this path: the kernel's
//! interrupt landing there is folded into the trap (see `.Lmoat_pt_kicked`).
//!
//! # Thread start
//! A new thread (the first one, one made by `CMD_CLONE_THREAD`, or the only thread of a copy
//! made by `CMD_FORK`) starts at `thread_start` with its slot in `%r12` and Moat's pid in
//! `%r14`, every signal blocked and no stack: it points `sigaltstack` at its slot, makes its
//! state word its `clear_child_tid` (so that its end zeroes the word and wakes the kernel),
//! asks to be killed when Moat dies (`PR_SET_PDEATHSIG`; its parent is the platform's
//! stub-maker thread, which lives as long as Moat) and checks Moat is still its parent,
//! turns on Syscall User Dispatch if the header says so, unblocks signals, and executes
//! `int3`: the handler reports that trap, and the kernel's first switch gives the thread its
//! registers through `rt_sigreturn`.

use crate::seccomp::{
    PR_SET_PDEATHSIG, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, STUB_CLONE_FLAGS,
    STUB_FORK_FLAGS, STUB_MEMFD_FD,
};
use crate::{STUB_AREA_BASE, STUB_AREA_LEN, STUB_BASE, STUB_LEN, STUB_SLOTS, STUB_SLOT_SIZE};

/// Header: the state word, the futex both sides wait on.
pub(super) const H_STATE: u64 = 0x00;
/// Header, written by the stub at a trap: signal number (u32), `si_code` (i32), `si_addr`,
/// address of the `ucontext`, FS base, GS base.
pub(super) const H_SIGNO: u64 = 0x08;
pub(super) const H_UC: u64 = 0x18;
pub(super) const H_FSBASE: u64 = 0x20;
pub(super) const H_GSBASE: u64 = 0x28;
/// Header, written by the kernel: the command (a system call number, or `CMD_*`) and its six
/// arguments; the stub writes the raw result.
pub(super) const H_CMD: u64 = 0x40;
pub(super) const H_ARGS: u64 = 0x48;
pub(super) const H_RESULT: u64 = 0x78;
/// Header, written by the kernel: how many rounds the stub spins before it sleeps, and
/// `F_*` flags.
pub(super) const H_SPIN: u64 = 0x80;
pub(super) const H_FLAGS: u64 = 0x88;
/// Header, patched sites (see [`super::patch`]): the stub sets `H_FPSAVED` when it has saved
/// the FP/XSAVE state of a patched trap for the kernel (and then loads it back on return);
/// a signal that lands in the patched path sets `H_KICKED` (an interrupt to report later).
pub(super) const H_FPSAVED: u64 = 0x90;
pub(super) const H_KICKED: u64 = 0x98;
/// Header, written by the kernel: how many deferred mappings and protections wait in
/// `H_BATCH` (the stub makes them, in order, before it runs a command or returns to the
/// application, and zeroes the count); `H_BATCH_ERR`: the stub stores there the result of
/// the last mapping that failed.
pub(super) const H_BATCH_N: u64 = 0xa0;
pub(super) const H_BATCH_ERR: u64 = 0xa8;
/// Header: the deferred changes, [`BATCH_MAX`] entries of (address, length, protection |
/// operation << 32, memory-file offset): operation 0 is an `mmap(MAP_SHARED | MAP_FIXED)`
/// of the memory file, [`BATCH_PROTECT`] an `mprotect` (which ends the thread if it fails).
pub(super) const H_BATCH: u64 = 0x200;
pub(super) const BATCH_MAX: u64 = 64;
pub(super) const BATCH_PROTECT: u64 = 1;
/// Header, counted by the stub (statistics only): waits that ended while spinning, sleeps.
pub(super) const H_SPIN_OK: u64 = 0xc0;
pub(super) const H_SLEEPS: u64 = 0xc8;
/// Header, scratch for the thread start: its `stack_t`, an empty signal mask.
const H_SS: u64 = 0x100;
const H_MASK: u64 = 0x120;
const _: () = assert!(H_MASK + 8 <= H_BATCH && H_BATCH + BATCH_MAX * 32 <= STACK_OFF);
/// Where the signal stack starts in a slot.
pub(super) const STACK_OFF: u64 = 0x1000;
/// A patched trap's state, at the bottom of the signal stack (signal frames are written from
/// its top, and the patched path's own stack is in between): the FP/XSAVE area (saved only
/// when the kernel asks, `CMD_XSAVE`), then a `ucontext` laid out as a signal frame's, so the
/// kernel reads and writes the registers of either kind of trap the same way.
pub(super) const PATCH_FP: u64 = STACK_OFF;
pub(super) const PATCH_FP_ROOM: u64 = 0x2c00;
pub(super) const PATCH_UC: u64 = PATCH_FP + PATCH_FP_ROOM;
/// The patched path's stack: from here down to just above the `ucontext`.
const PATCH_STACK: u64 = 0x8000;
const PATCH_STACK_LOW: u64 = PATCH_UC + 0x180;

/// States of the state word. The stub publishes `ST_*` (the kernel's turn), the kernel `K_*`
/// (the stub's turn); 0 is what the host writes when the thread ends (`clear_child_tid`).
pub(super) const ST_TRAP: u32 = 0x01;
pub(super) const ST_DONE: u32 = 0x02;
pub(super) const K_RUN: u32 = 0x10;
pub(super) const K_CMD: u32 = 0x11;
/// Set in the state word by the side that sleeps on it, so that the other side wakes it.
pub(super) const WAITER: u32 = 0x8000_0000;

/// Commands other than a plain system call (whose number is the command). `CMD_CLONE_THREAD`:
/// arguments the new slot's address, its offset in the memory file, Moat's pid, and whether
/// the slot is mapped already; `CMD_FORK`: the copy's slot, its offset, Moat's pid.
pub(super) const CMD_CLONE_THREAD: u64 = 0x1_0000;
pub(super) const CMD_FORK: u64 = 0x1_0001;
/// `CMD_XSAVE`: save the FP/XSAVE state of a patched trap at `PATCH_FP` (the thread is in
/// the patched path, its FP registers still the application's).
pub(super) const CMD_XSAVE: u64 = 0x1_0002;

/// `H_FLAGS`: use the `rdfsbase` family (the host enabled `FSGSBASE`), else `arch_prctl`.
pub(super) const F_FSGSBASE: u64 = 1;
/// `H_FLAGS`: a new thread turns on Syscall User Dispatch for everything outside the page.
pub(super) const F_DISPATCH: u64 = 2;
/// `H_FLAGS`: patched sites are on: a new thread points its GS base at its slot, which is
/// how the patched path finds the slot without a system call.
pub(super) const F_PATCH: u64 = 4;

/// `ucontext` offsets of the general registers (`REG_*` of `<sys/ucontext.h>`, 8 bytes each
/// from offset 40) and of the FP state pointer.
const G: u64 = 40;
const R8: u64 = G;
const R9: u64 = G + 8;
const R10: u64 = G + 2 * 8;
const R11: u64 = G + 3 * 8;
const R12: u64 = G + 4 * 8;
const R13: u64 = G + 5 * 8;
const R14: u64 = G + 6 * 8;
const R15: u64 = G + 7 * 8;
const RDI: u64 = G + 8 * 8;
const RSI: u64 = G + 9 * 8;
const RBP: u64 = G + 10 * 8;
const RBX: u64 = G + 11 * 8;
const RDX: u64 = G + 12 * 8;
const RAX: u64 = G + 13 * 8;
const RCX: u64 = G + 14 * 8;
const RSP: u64 = G + 15 * 8;
const RIP: u64 = G + 16 * 8;
const EFL: u64 = G + 17 * 8;
const CSGSFS: u64 = G + 18 * 8;
const FPREGS: u64 = G + 23 * 8;
/// `cs` 0x33 and `ss` 0x2b, as the host writes them in a 64-bit signal frame.
const USER_CSGSFS: u64 = 0x33 | (0x2b << 48);
/// The arithmetic flags `lahf`/`seto` save: CF, PF, AF, ZF, SF (AH's bits) and OF.
const AH_FLAGS: u64 = 0xd5;
const OF_FLAG: u64 = 0x800;

const MAP_SHARED_FIXED: u32 = (libc::MAP_SHARED | libc::MAP_FIXED) as u32;

core::arch::global_asm!(
    ".pushsection .text.moat_systrap, \"ax\"",
    ".p2align 12",
    ".globl moat_systrap_start",
    "moat_systrap_start:",
    // Entry from the forked child, still in Moat's text: %rdi = the seccomp sock_fprog,
    // %rsi = slot 0's offset in the memory file, %rdx = Moat's pid; every signal blocked.
    "    mov %rdi, %r15",
    "    mov %rsi, %r13",
    "    mov %rdx, %r14",
    // mmap(STUB_BASE, STUB_LEN, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)
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
    "    jne .Lmoat_st_setup_failed",
    "    lea moat_systrap_start(%rip), %rsi",
    "    mov $(moat_systrap_end - moat_systrap_start), %ecx",
    "    rep movsb",
    // mprotect(STUB_BASE, STUB_LEN, PROT_READ|PROT_EXEC)
    "    mov $10, %eax",
    "    movabs ${base}, %rdi",
    "    mov ${len}, %esi",
    "    mov $5, %edx",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_setup_failed",
    "    movabs ${base} + (.Lmoat_st_moved - moat_systrap_start), %rax",
    "    jmp *%rax",
    ".Lmoat_st_moved:",
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, fprog)
    "    mov $317, %eax",
    "    mov $1, %edi",
    "    xor %esi, %esi",
    "    mov %r15, %rdx",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_setup_failed",
    // munmap(0, STUB_BASE): drop every mapping inherited from Moat.
    "    mov $11, %eax",
    "    xor %edi, %edi",
    "    movabs ${base}, %rsi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    "    movabs ${area}, %r12",
    "    jmp .Lmoat_st_map_slot",
    ".Lmoat_st_setup_failed:",
    "    ud2",
    //
    // The signal handler: %rdi = signal, %rsi = siginfo, %rdx = ucontext, on the slot's stack.
    ".globl moat_systrap_handler",
    "moat_systrap_handler:",
    "    mov %rsp, %rbx",
    "    and $-{slot_size}, %rbx",
    // A signal someone sent (si_code <= 0: the kernel's interrupt) that landed in the patched
    // path, which is already on its way to the kernel or back from it, is not a trap of its
    // own: see `.Lmoat_pt_kicked`. Faults (si_code > 0) are reported as usual.
    "    cmpl $0, 8(%rsi)",
    "    jg .Lmoat_st_trap",
    "    mov {g_rip}(%rdx), %rax",
    "    lea .Lmoat_pt_critical(%rip), %rcx",
    "    cmp %rcx, %rax",
    "    jb 1f",
    "    lea .Lmoat_pt_end(%rip), %rcx",
    "    cmp %rcx, %rax",
    "    jae 1f",
    // In the last steps of a return to the application: report the interrupt instead.
    "    lea .Lmoat_pt_kicked(%rip), %rax",
    "    mov %rax, {g_rip}(%rdx)",
    "    mov %rbx, {g_rbx}(%rdx)",
    "    lea {pstack}(%rbx), %rax",
    "    mov %rax, {g_rsp}(%rdx)",
    "    jmp .Lmoat_st_sigreturn_rdx",
    "1:",
    "    lea moat_systrap_patched(%rip), %rcx",
    "    cmp %rcx, %rax",
    "    jb 2f",
    "    lea .Lmoat_pt_end(%rip), %rcx",
    "    cmp %rcx, %rax",
    "    jb .Lmoat_st_kick_later",
    "2:",
    // On the patched path's stack (its wait or a command): idem.
    "    mov {g_rsp}(%rdx), %rax",
    "    sub %rbx, %rax",
    "    cmp ${pstack}, %rax",
    "    ja .Lmoat_st_trap",
    "    cmp ${pstack_low}, %rax",
    "    jb .Lmoat_st_trap",
    // Before the kernel's answer the kernel sees the interrupt's news itself; after it, the
    // return path finds `H_KICKED` and reports an interrupt (perhaps a spurious one).
    ".Lmoat_st_kick_later:",
    "    movq $1, {h_kicked}(%rbx)",
    ".Lmoat_st_sigreturn_rdx:",
    "    mov %rdx, %rsp",
    "    mov $15, %eax",
    "    syscall",
    "    ud2",
    ".Lmoat_st_trap:",
    "    mov %rdx, %r15",
    "    mov %edi, {h_signo}(%rbx)",
    "    mov 8(%rsi), %eax",
    "    mov %eax, {h_signo}+4(%rbx)",
    "    mov 16(%rsi), %rax",
    "    mov %rax, {h_signo}+8(%rbx)",
    "    mov %rdx, {h_uc}(%rbx)",
    // Shared with the patched path from here: %rbx = the slot, %r15 = the `ucontext`.
    ".Lmoat_st_bases:",
    "    testq ${f_fsgsbase}, {h_flags}(%rbx)",
    "    jz 1f",
    "    rdfsbase %rax",
    "    mov %rax, {h_fsbase}(%rbx)",
    "    rdgsbase %rax",
    "    mov %rax, {h_gsbase}(%rbx)",
    "    jmp 2f",
    "1:",
    // arch_prctl(ARCH_GET_FS, &fsbase), arch_prctl(ARCH_GET_GS, &gsbase)
    "    mov $158, %eax",
    "    mov $0x1003, %edi",
    "    lea {h_fsbase}(%rbx), %rsi",
    "    syscall",
    "    mov $158, %eax",
    "    mov $0x1004, %edi",
    "    lea {h_gsbase}(%rbx), %rsi",
    "    syscall",
    "2:",
    // Keep the bases the application had: most resumptions leave them alone.
    "    pushq {h_fsbase}(%rbx)",
    "    pushq {h_gsbase}(%rbx)",
    "    mov ${st_trap}, %eax",
    // Publish the state in %eax; wake the kernel if it sleeps.
    ".Lmoat_st_report:",
    "    xchg %eax, {h_state}(%rbx)",
    "    test %eax, %eax",
    "    jns .Lmoat_st_wait",
    // futex(&state, FUTEX_WAKE, 1)
    "    mov $202, %eax",
    "    lea {h_state}(%rbx), %rdi",
    "    mov $1, %esi",
    "    mov $1, %edx",
    "    syscall",
    ".Lmoat_st_wait:",
    "    mov {h_spin}(%rbx), %rcx",
    "3:",
    "    mov {h_state}(%rbx), %eax",
    "    test ${k_bit}, %eax",
    "    jnz 4f",
    "    test %rcx, %rcx",
    "    jz .Lmoat_st_sleep",
    "    dec %rcx",
    "    pause",
    "    jmp 3b",
    "4:",
    "    incq {h_spin_ok}(%rbx)",
    "    jmp .Lmoat_st_go",
    ".Lmoat_st_sleep:",
    "    mov {h_state}(%rbx), %eax",
    "    test ${k_bit}, %eax",
    "    jnz .Lmoat_st_go",
    "    mov %eax, %edx",
    "    or ${waiter}, %edx",
    "    lock cmpxchg %edx, {h_state}(%rbx)",
    "    jne .Lmoat_st_sleep",
    "    incq {h_sleeps}(%rbx)",
    // futex(&state, FUTEX_WAIT, state | WAITER, NULL): every signal is blocked, so only
    // the kernel's wake (or a spurious one) ends it.
    "    mov $202, %eax",
    "    lea {h_state}(%rbx), %rdi",
    "    xor %esi, %esi",
    "    xor %r10d, %r10d",
    "    syscall",
    "    jmp .Lmoat_st_sleep",
    ".Lmoat_st_go:",
    "    and $0xff, %eax",
    // Deferred changes of the address space first (the kernel asked for them before this
    // command or return), in order: mmap(addr, len, prot, MAP_SHARED|MAP_FIXED, memfd,
    // offset), or mprotect(addr, len, prot) when the entry's operation (the upper half of
    // its protection word) says so.
    "    mov {h_batch_n}(%rbx), %r12",
    "    test %r12, %r12",
    "    jz .Lmoat_st_dispatch",
    "    movq $0, {h_batch_n}(%rbx)",
    "    mov %eax, %r14d",
    "    cmp ${batch_max}, %r12",
    "    jbe 1f",
    "    mov ${batch_max}, %r12d",
    "1:",
    "    lea {h_batch}(%rbx), %r13",
    "2:",
    "    mov (%r13), %rdi",
    "    mov 8(%r13), %rsi",
    "    mov 16(%r13), %edx",
    "    cmpl $0, 20(%r13)",
    "    jne 4f",
    "    mov $9, %eax",
    "    mov ${map_shared_fixed}, %r10d",
    "    mov ${memfd}, %r8d",
    "    mov 24(%r13), %r9",
    "    syscall",
    "    cmp (%r13), %rax",
    "    je 3f",
    "    mov %rax, {h_batch_err}(%rbx)",
    "    jmp 3f",
    // A protection the host refused would leave memory more accessible than the kernel's
    // tables say (a copy-on-write page writable): the thread ends instead (fail closed).
    "4:",
    "    mov $10, %eax",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    "3:",
    "    add $32, %r13",
    "    dec %r12",
    "    jnz 2b",
    "    mov %r14d, %eax",
    ".Lmoat_st_dispatch:",
    "    cmp ${k_cmd}, %eax",
    "    je .Lmoat_st_command",
    // K_RUN (or anything else): back to the application, with the kernel's FS and GS bases
    // if they changed.
    "    mov {h_fsbase}(%rbx), %rax",
    "    cmp 8(%rsp), %rax",
    "    jne 7f",
    "    mov {h_gsbase}(%rbx), %rax",
    "    cmp (%rsp), %rax",
    "    je 6f",
    "7:",
    "    testq ${f_fsgsbase}, {h_flags}(%rbx)",
    "    jz 5f",
    "    mov {h_fsbase}(%rbx), %rax",
    "    wrfsbase %rax",
    "    mov {h_gsbase}(%rbx), %rax",
    "    wrgsbase %rax",
    "    jmp 6f",
    "5:",
    // arch_prctl(ARCH_SET_FS, fsbase), arch_prctl(ARCH_SET_GS, gsbase)
    "    mov $158, %eax",
    "    mov $0x1002, %edi",
    "    mov {h_fsbase}(%rbx), %rsi",
    "    syscall",
    "    mov $158, %eax",
    "    mov $0x1001, %edi",
    "    mov {h_gsbase}(%rbx), %rsi",
    "    syscall",
    "6:",
    "    lea {puc}(%rbx), %rax",
    "    cmp %rax, %r15",
    "    je .Lmoat_pt_return",
    // rt_sigreturn with the frame the host wrote (and the kernel edited).
    "    mov %r15, %rsp",
    "    mov $15, %eax",
    "    syscall",
    "    ud2",
    //
    ".Lmoat_st_command:",
    "    mov {h_cmd}(%rbx), %rax",
    "    cmp ${cmd_clone}, %rax",
    "    je .Lmoat_st_clone",
    "    cmp ${cmd_fork}, %rax",
    "    je .Lmoat_st_fork",
    "    cmp ${cmd_xsave}, %rax",
    "    je .Lmoat_st_xsave",
    "    mov {h_args}(%rbx), %rdi",
    "    mov {h_args}+8(%rbx), %rsi",
    "    mov {h_args}+16(%rbx), %rdx",
    "    mov {h_args}+24(%rbx), %r10",
    "    mov {h_args}+32(%rbx), %r8",
    "    mov {h_args}+40(%rbx), %r9",
    "    syscall",
    ".Lmoat_st_done:",
    "    mov %rax, {h_result}(%rbx)",
    "    mov ${st_done}, %eax",
    "    jmp .Lmoat_st_report",
    // Save the FP/XSAVE state of a patched trap (every component XCR0 enables; the kernel
    // zeroed the XSAVE header and writes the software bytes a signal frame would have).
    ".Lmoat_st_xsave:",
    "    mov $-1, %eax",
    "    mov $-1, %edx",
    "    xsave64 {pfp}(%rbx)",
    "    movq $1, {h_fpsaved}(%rbx)",
    "    xor %eax, %eax",
    "    jmp .Lmoat_st_done",
    // A new thread: map its slot (shared with this one by CLONE_VM), then clone.
    ".Lmoat_st_clone:",
    "    mov {h_args}(%rbx), %r12",
    "    mov {h_args}+8(%rbx), %r13",
    "    mov {h_args}+16(%rbx), %r14",
    // Unless the slot is still mapped from an earlier thread: mmap(slot, STUB_SLOT_SIZE,
    // PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, memfd, offset)
    "    cmpq $0, {h_args}+24(%rbx)",
    "    jne 9f",
    "    mov $9, %eax",
    "    mov %r12, %rdi",
    "    mov ${slot_size}, %esi",
    "    mov $3, %edx",
    "    mov ${map_shared_fixed}, %r10d",
    "    mov ${memfd}, %r8d",
    "    mov %r13, %r9",
    "    syscall",
    "    cmp %r12, %rax",
    "    jne .Lmoat_st_done",
    "9:",
    "    mov $56, %eax",
    "    mov ${clone_flags}, %edi",
    "    xor %esi, %esi",
    "    xor %edx, %edx",
    "    xor %r10d, %r10d",
    "    xor %r8d, %r8d",
    "    syscall",
    "    test %rax, %rax",
    "    jz .Lmoat_st_thread_start",
    "    jmp .Lmoat_st_done",
    // A copy of this process, whose only thread maps a slot of its own.
    ".Lmoat_st_fork:",
    "    mov {h_args}(%rbx), %r12",
    "    mov {h_args}+8(%rbx), %r13",
    "    mov {h_args}+16(%rbx), %r14",
    "    mov $56, %eax",
    "    mov ${fork_flags}, %edi",
    "    xor %esi, %esi",
    "    xor %edx, %edx",
    "    xor %r10d, %r10d",
    "    xor %r8d, %r8d",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_done",
    // The copy: it must not touch its parent's slots (they are the parent's threads' pages,
    // its own stack among them), so registers only until they are gone.
    "    mov $11, %eax",
    "    movabs ${area}, %rdi",
    "    mov ${area_len}, %esi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    // Map the slot at %r12 from offset %r13 (the first thread and a copy's).
    ".Lmoat_st_map_slot:",
    "    mov $9, %eax",
    "    mov %r12, %rdi",
    "    mov ${slot_size}, %esi",
    "    mov $3, %edx",
    "    mov ${map_shared_fixed}, %r10d",
    "    mov ${memfd}, %r8d",
    "    mov %r13, %r9",
    "    syscall",
    "    cmp %r12, %rax",
    "    jne .Lmoat_st_exit",
    //
    // Thread start: %r12 = the slot, %r14 = Moat's pid; every signal blocked.
    ".Lmoat_st_thread_start:",
    "    xor %esp, %esp",
    "    lea {stack_off}(%r12), %rax",
    "    mov %rax, {h_ss}(%r12)",
    "    movq $0, {h_ss}+8(%r12)",
    "    movq ${stack_len}, {h_ss}+16(%r12)",
    // sigaltstack(&ss, NULL)
    "    mov $131, %eax",
    "    lea {h_ss}(%r12), %rdi",
    "    xor %esi, %esi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    // arch_prctl(ARCH_SET_GS, slot) when sites are patched: how the patched path finds it.
    "    testq ${f_patch}, {h_flags}(%r12)",
    "    jz 10f",
    "    mov $158, %eax",
    "    mov $0x1001, %edi",
    "    mov %r12, %rsi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    "10:",
    // set_tid_address(&state)
    "    mov $218, %eax",
    "    lea {h_state}(%r12), %rdi",
    "    syscall",
    // prctl(PR_SET_PDEATHSIG, SIGKILL)
    "    mov $157, %eax",
    "    mov ${pdeathsig}, %edi",
    "    mov $9, %esi",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    // getppid() == Moat: else Moat died before the death signal was armed.
    "    mov $110, %eax",
    "    syscall",
    "    cmp %r14, %rax",
    "    jne .Lmoat_st_exit",
    "    testq ${f_dispatch}, {h_flags}(%r12)",
    "    jz 8f",
    // prctl(PR_SET_SYSCALL_USER_DISPATCH, ON, STUB_BASE, STUB_LEN, NULL)
    "    mov $157, %eax",
    "    mov ${sud}, %edi",
    "    mov ${sud_on}, %esi",
    "    movabs ${base}, %rdx",
    "    mov ${len}, %r10d",
    "    xor %r8d, %r8d",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    "8:",
    // rt_sigprocmask(SIG_SETMASK, &empty, NULL, 8)
    "    movq $0, {h_mask}(%r12)",
    "    mov $14, %eax",
    "    mov $2, %edi",
    "    lea {h_mask}(%r12), %rsi",
    "    xor %edx, %edx",
    "    mov $8, %r10d",
    "    syscall",
    "    test %rax, %rax",
    "    jnz .Lmoat_st_exit",
    // Ready: the handler reports this trap and waits for the first switch.
    "    int3",
    "    ud2",
    ".Lmoat_st_exit:",
    "    mov $60, %eax",
    "    mov $1, %edi",
    "    syscall",
    "    ud2",
    //
    //
    // The patched path (see `super::patch`). A patched site jumped to its trampoline, which
    // jumped here with %eax = the system call's number and %rcx = the trampoline's fallback
    // (whose `movabs` holds the return address); the flags and every other register are the
    // application's. Nothing here touches the application's stack.
    ".globl moat_systrap_patched",
    "moat_systrap_patched:",
    "    mov %eax, %r11d",
    "    lahf",
    "    seto %al",
    "    movzwl %ax, %eax",
    // The flags are in %ax: now free to change them. %r11 = number << 16 | flags.
    "    shl $16, %r11",
    "    or %rax, %r11",
    // The GS base must be a slot (Moat sets it; the application may have changed it).
    "    rdgsbase %rax",
    "    test $0xffff, %eax",
    "    jnz .Lmoat_pt_fallback",
    "    shr $16, %rax",
    "    sub ${area_hi}, %rax",
    "    cmp ${slots}, %rax",
    "    jae .Lmoat_pt_fallback",
    "    rdgsbase %rax",
    "    mov %rbx, {puc}+{g_rbx}(%rax)",
    "    mov %rax, %rbx",
    "    mov %r8, {puc}+{g_r8}(%rbx)",
    "    mov %r9, {puc}+{g_r9}(%rbx)",
    "    mov %r10, {puc}+{g_r10}(%rbx)",
    "    mov %r12, {puc}+{g_r12}(%rbx)",
    "    mov %r13, {puc}+{g_r13}(%rbx)",
    "    mov %r14, {puc}+{g_r14}(%rbx)",
    "    mov %r15, {puc}+{g_r15}(%rbx)",
    "    mov %rdi, {puc}+{g_rdi}(%rbx)",
    "    mov %rsi, {puc}+{g_rsi}(%rbx)",
    "    mov %rbp, {puc}+{g_rbp}(%rbx)",
    "    mov %rdx, {puc}+{g_rdx}(%rbx)",
    "    mov %rsp, {puc}+{g_rsp}(%rbx)",
    "    lea {pstack}(%rbx), %rsp",
    "    mov %r11, %rax",
    "    shr $16, %rax",
    "    mov %rax, {puc}+{g_rax}(%rbx)",
    // The return address: where `syscall` would have returned, and left in %rcx.
    "    mov 9(%rcx), %rax",
    "    mov %rax, {puc}+{g_rip}(%rbx)",
    "    mov %rax, {puc}+{g_rcx}(%rbx)",
    // The flags: the current ones with the application's arithmetic flags put back (%r11
    // after `syscall` holds them too).
    "    pushfq",
    "    pop %rax",
    "    and ${not_arith}, %rax",
    "    mov %r11, %rdx",
    "    shr $8, %rdx",
    "    and ${ah_flags}, %edx",
    "    or %rdx, %rax",
    "    test $1, %r11b",
    "    jz 1f",
    "    or ${of_flag}, %rax",
    "1:",
    "    mov %rax, {puc}+{g_efl}(%rbx)",
    "    mov %rax, {puc}+{g_r11}(%rbx)",
    "    movabs ${csgsfs}, %rax",
    "    mov %rax, {puc}+{g_csgsfs}(%rbx)",
    "    lea {pfp}(%rbx), %rax",
    "    mov %rax, {puc}+{fpregs}(%rbx)",
    "    movq $0, {h_fpsaved}(%rbx)",
    "    movq $0, {h_kicked}(%rbx)",
    // Report it as Syscall User Dispatch would: SIGSYS, SYS_USER_DISPATCH.
    "    movl $31, {h_signo}(%rbx)",
    "    movl $2, {h_signo}+4(%rbx)",
    "    movq $0, {h_signo}+8(%rbx)",
    "    lea {puc}(%rbx), %r15",
    "    mov %r15, {h_uc}(%rbx)",
    "    jmp .Lmoat_st_bases",
    // Not Moat's GS base: run the trampoline's own `mov $nr, %eax; syscall`, which traps.
    // The flags back first: OF (cleared by `test`, or set by 0x7f + 1), then the others
    // from %ah, which `sahf` loads without touching OF.
    ".Lmoat_pt_fallback:",
    "    mov %r11, %rax",
    "    test $1, %al",
    "    jz 1f",
    "    mov $0x7f, %al",
    "    add $1, %al",
    "1:",
    "    sahf",
    "    jmp *%rcx",
    // Back from the kernel (K_RUN), the bases set: load its FP state if it was saved, then
    // every register from the `ucontext` the kernel edited.
    ".Lmoat_pt_return:",
    "    cmpq $0, {h_fpsaved}(%rbx)",
    "    je 1f",
    "    mov $-1, %eax",
    "    mov $-1, %edx",
    "    xrstor64 {pfp}(%rbx)",
    "1:",
    // From here to the end an interrupt cannot wait for the next trap (the thread is about
    // to run application code): the handler sends it to `.Lmoat_pt_kicked`.
    ".Lmoat_pt_critical:",
    "    cmpq $0, {h_kicked}(%rbx)",
    "    jne .Lmoat_pt_kicked",
    "    pushq {puc}+{g_efl}(%rbx)",
    "    popfq",
    "    mov {puc}+{g_r8}(%rbx), %r8",
    "    mov {puc}+{g_r9}(%rbx), %r9",
    "    mov {puc}+{g_r10}(%rbx), %r10",
    "    mov {puc}+{g_r12}(%rbx), %r12",
    "    mov {puc}+{g_r13}(%rbx), %r13",
    "    mov {puc}+{g_r14}(%rbx), %r14",
    "    mov {puc}+{g_r15}(%rbx), %r15",
    "    mov {puc}+{g_rdi}(%rbx), %rdi",
    "    mov {puc}+{g_rsi}(%rbx), %rsi",
    "    mov {puc}+{g_rbp}(%rbx), %rbp",
    "    mov {puc}+{g_rdx}(%rbx), %rdx",
    "    mov {puc}+{g_rax}(%rbx), %rax",
    // As `sysret`: %rcx = the return address, %r11 = the flags.
    "    mov {puc}+{g_rip}(%rbx), %rcx",
    "    mov {puc}+{g_efl}(%rbx), %r11",
    "    mov {puc}+{g_rsp}(%rbx), %rsp",
    "    mov {puc}+{g_rbx}(%rbx), %rbx",
    "    jmp *%rcx",
    ".Lmoat_pt_end:",
    // An interrupt landed on the way back (or while waiting, after which the kernel may
    // already have answered): report it as an interrupt trap whose registers are those the
    // kernel last wrote (%rbx = the slot, the stack ours; the handler saw to both).
    ".Lmoat_pt_kicked:",
    "    lea {pstack}(%rbx), %rsp",
    "    lea {puc}(%rbx), %r15",
    "    movq $0, {h_kicked}(%rbx)",
    "    movq $0, {h_fpsaved}(%rbx)",
    "    movl ${intsig}, {h_signo}(%rbx)",
    "    movl $0, {h_signo}+4(%rbx)",
    "    movq $0, {h_signo}+8(%rbx)",
    "    mov %r15, {h_uc}(%rbx)",
    "    jmp .Lmoat_st_bases",
    //
    ".globl moat_systrap_restorer",
    "moat_systrap_restorer:",
    "    mov $15, %eax",
    "    syscall",
    "    ud2",
    ".globl moat_systrap_end",
    "moat_systrap_end:",
    ".popsection",
    base = const STUB_BASE,
    len = const STUB_LEN,
    area = const STUB_AREA_BASE,
    area_len = const STUB_AREA_LEN,
    slot_size = const STUB_SLOT_SIZE,
    stack_off = const STACK_OFF,
    stack_len = const STUB_SLOT_SIZE - STACK_OFF,
    h_state = const H_STATE,
    h_signo = const H_SIGNO,
    h_uc = const H_UC,
    h_fsbase = const H_FSBASE,
    h_gsbase = const H_GSBASE,
    h_cmd = const H_CMD,
    h_args = const H_ARGS,
    h_result = const H_RESULT,
    h_spin = const H_SPIN,
    h_flags = const H_FLAGS,
    h_spin_ok = const H_SPIN_OK,
    h_sleeps = const H_SLEEPS,
    h_ss = const H_SS,
    h_mask = const H_MASK,
    h_batch_n = const H_BATCH_N,
    h_batch_err = const H_BATCH_ERR,
    h_batch = const H_BATCH,
    batch_max = const BATCH_MAX,
    st_trap = const ST_TRAP,
    st_done = const ST_DONE,
    k_bit = const K_RUN,
    k_cmd = const K_CMD,
    waiter = const WAITER,
    cmd_clone = const CMD_CLONE_THREAD,
    cmd_fork = const CMD_FORK,
    f_fsgsbase = const F_FSGSBASE,
    f_dispatch = const F_DISPATCH,
    clone_flags = const STUB_CLONE_FLAGS,
    fork_flags = const STUB_FORK_FLAGS,
    pdeathsig = const PR_SET_PDEATHSIG,
    sud = const PR_SET_SYSCALL_USER_DISPATCH,
    sud_on = const PR_SYS_DISPATCH_ON,
    map_shared_fixed = const MAP_SHARED_FIXED,
    cmd_xsave = const CMD_XSAVE,
    f_patch = const F_PATCH,
    h_fpsaved = const H_FPSAVED,
    h_kicked = const H_KICKED,
    pfp = const PATCH_FP,
    puc = const PATCH_UC,
    pstack = const PATCH_STACK,
    pstack_low = const PATCH_STACK_LOW,
    area_hi = const STUB_AREA_BASE >> 16,
    slots = const STUB_SLOTS,
    intsig = const super::INTERRUPT_SIGNAL,
    not_arith = const !(AH_FLAGS | OF_FLAG) as i32,
    ah_flags = const AH_FLAGS,
    of_flag = const OF_FLAG,
    csgsfs = const USER_CSGSFS,
    g_csgsfs = const CSGSFS,
    g_r8 = const R8,
    g_r9 = const R9,
    g_r10 = const R10,
    g_r11 = const R11,
    g_r12 = const R12,
    g_r13 = const R13,
    g_r14 = const R14,
    g_r15 = const R15,
    g_rdi = const RDI,
    g_rsi = const RSI,
    g_rbp = const RBP,
    g_rbx = const RBX,
    g_rdx = const RDX,
    g_rax = const RAX,
    g_rcx = const RCX,
    g_rsp = const RSP,
    g_rip = const RIP,
    g_efl = const EFL,
    fpregs = const FPREGS,
    memfd = const STUB_MEMFD_FD,
    options(att_syntax)
);

// SAFETY: the labels are defined by the `global_asm!` above, in this crate; Moat only takes
// their addresses (safe), never reads through them as `u8`.
unsafe extern "C" {
    static moat_systrap_start: u8;
    static moat_systrap_handler: u8;
    static moat_systrap_restorer: u8;
    static moat_systrap_patched: u8;
    static moat_systrap_end: u8;
}

fn offset_of(label: *const u8) -> u64 {
    (label as usize - &raw const moat_systrap_start as usize) as u64
}

/// Address of the stub's entry in Moat's own text (where the forked child jumps).
pub(super) fn entry() -> usize {
    &raw const moat_systrap_start as usize
}

/// Size of the stub's code; it must fit its page.
pub(super) fn code_len() -> u64 {
    offset_of(&raw const moat_systrap_end)
}

/// The handler's address in the stub.
pub(super) fn handler_address() -> u64 {
    STUB_BASE + offset_of(&raw const moat_systrap_handler)
}

/// The `rt_sigreturn` trampoline's address in the stub (`SA_RESTORER` is mandatory on
/// x86-64; the handler returns by itself, so this is never used).
pub(super) fn restorer_address() -> u64 {
    STUB_BASE + offset_of(&raw const moat_systrap_restorer)
}

/// The patched path's entry in the stub (where every trampoline jumps).
pub(super) fn patched_entry_address() -> u64 {
    STUB_BASE + offset_of(&raw const moat_systrap_patched)
}

const _: () = assert!(STUB_LEN == 0x1000);
const _: () = assert!(STUB_AREA_BASE >> 16 < 1 << 31 && STUB_AREA_BASE % 0x1_0000 == 0);
const _: () = assert!(STUB_SLOT_SIZE == 0x1_0000);
const _: () = assert!(PATCH_UC + 0x130 < PATCH_STACK_LOW && PATCH_FP % 64 == 0);
const _: () = assert!(STUB_AREA_LEN < 1 << 31 && STUB_SLOT_SIZE < 1 << 31);
