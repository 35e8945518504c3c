// Hardware faults become signals with exact siginfo and context: SIGSEGV with si_addr and
// SEGV_MAPERR / SEGV_ACCERR (reads, writes, instruction fetches) or SI_KERNEL for a
// non-canonical address, SIGBUS (BUS_ADRERR) past the end of a mapped file, SIGFPE
// (FPE_INTDIV) for division by zero and overflow, SIGILL (ILL_ILLOPN) for ud2, SIGTRAP
// (SI_KERNEL, continuing after the int3). The handler recovers with siglongjmp, which
// restores the mask. A fault while SIGSEGV is blocked, or inside the SIGSEGV handler, kills.
#include "check.h"
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>

/* Faulting instructions at known addresses. */
asm(".text\n"
    ".globl load_byte\nload_byte:\n"
    "  movb (%rdi), %al\n  ret\n"
    ".globl store_byte\nstore_byte:\n"
    "  movb $1, (%rdi)\n  ret\n"
    ".globl divide\ndivide:\n"
    "  movl %edi, %eax\n  cltd\n"
    ".globl divide_insn\ndivide_insn:\n"
    "  idivl %esi\n  ret\n"
    ".globl undefined_insn\nundefined_insn:\n"
    "  ud2\n  ret\n"
    ".globl breakpoint\nbreakpoint:\n"
    "  int3\n"
    ".globl after_breakpoint\nafter_breakpoint:\n"
    "  ret\n"
    ".globl breakpoint_long\nbreakpoint_long:\n"
    "  int $3\n"
    ".globl after_breakpoint_long\nafter_breakpoint_long:\n"
    "  ret\n");
extern char load_byte(volatile void *p);
extern void store_byte(volatile void *p);
extern int divide(int a, int b);
extern void undefined_insn(void), breakpoint(void), breakpoint_long(void);
extern char divide_insn[], after_breakpoint[], after_breakpoint_long[];

#define TRAP_DE 0
#define TRAP_BP 3
#define TRAP_UD 6
#define TRAP_GP 13
#define TRAP_PF 14
#define PF_WRITE 2
#define PF_USER 4

static sigjmp_buf env;
static volatile int got_sig, got_code, got_trapno, got_err, faults;
static volatile uintptr_t got_addr, got_rip;

static void handler(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = (uintptr_t)si->si_addr;
    got_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    got_trapno = (int)uc->uc_mcontext.gregs[REG_TRAPNO];
    got_err = (int)uc->uc_mcontext.gregs[REG_ERR];
    faults++;
    if (sig != SIGTRAP)
        siglongjmp(env, 1);
}

/* Runs `stmt`, which must fault; the handler jumps back here. */
#define FAULTS(stmt)                                                                \
    do {                                                                            \
        got_sig = 0;                                                                \
        if (sigsetjmp(env, 1) == 0) {                                               \
            stmt;                                                                   \
            CHECK(!"no fault");                                                     \
        }                                                                           \
    } while (0)

static void mask_is_clear(void) {
    sigset_t cur;
    CHECK(sigprocmask(SIG_SETMASK, NULL, &cur) == 0);
    CHECK(!sigismember(&cur, SIGSEGV) && !sigismember(&cur, SIGBUS) && !sigismember(&cur, SIGFPE));
    CHECK(!sigismember(&cur, SIGILL));
}

static void segv(void) {
    /* All pages are mapped up front: a later mmap could land in the unmapped one. */
    char *page = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    char *gone = page, *readonly = page + 4096, *none = page + 2 * 4096, *code = page + 3 * 4096;
    CHECK(munmap(gone, 4096) == 0);
    CHECK(mprotect(readonly, 4096, PROT_READ) == 0 && mprotect(none, 4096, PROT_NONE) == 0);

    FAULTS(load_byte(gone + 123));
    CHECK(got_sig == SIGSEGV && got_code == SEGV_MAPERR && got_addr == (uintptr_t)gone + 123);
    CHECK(got_rip == (uintptr_t)load_byte && got_trapno == TRAP_PF);
    CHECK((got_err & PF_USER) && !(got_err & PF_WRITE));
    mask_is_clear();

    FAULTS(store_byte(readonly + 4000));
    CHECK(got_sig == SIGSEGV && got_code == SEGV_ACCERR && got_addr == (uintptr_t)readonly + 4000);
    CHECK(got_rip == (uintptr_t)store_byte && got_trapno == TRAP_PF && (got_err & PF_WRITE));
    CHECK(load_byte(readonly + 4000) == 0); /* reading it is fine */

    FAULTS(load_byte(none + 1));
    CHECK(got_sig == SIGSEGV && got_code == SEGV_ACCERR && got_addr == (uintptr_t)none + 1);
    FAULTS(store_byte(none));
    CHECK(got_sig == SIGSEGV && got_code == SEGV_ACCERR && got_addr == (uintptr_t)none);

    FAULTS(load_byte((void *)16));
    CHECK(got_sig == SIGSEGV && got_code == SEGV_MAPERR && got_addr == 16);

    /* A non-canonical address is a general protection fault: no address is reported. */
    FAULTS(load_byte((void *)0x8000000000000000ul));
    CHECK(got_sig == SIGSEGV && got_code == SI_KERNEL && got_addr == 0 && got_trapno == TRAP_GP);
    mask_is_clear();
    printf("SIGSEGV: MAPERR and ACCERR with the exact address, SI_KERNEL for a GP fault\n");

    /* Instruction fetches: from a page that is not executable, and from no page at all. */
    code[0] = (char)0xc3; /* ret */
    void (*fn)(void) = (void (*)(void))code;
    FAULTS(fn());
    CHECK(got_sig == SIGSEGV && got_code == SEGV_ACCERR && got_addr == (uintptr_t)code);
    CHECK(got_rip == (uintptr_t)code);
    CHECK(mprotect(code, 4096, PROT_READ | PROT_EXEC) == 0);
    fn(); /* now it runs */
    fn = (void (*)(void))(gone + 64);
    FAULTS(fn());
    CHECK(got_sig == SIGSEGV && got_code == SEGV_MAPERR && got_addr == (uintptr_t)gone + 64);
    CHECK(got_rip == (uintptr_t)gone + 64);
    printf("SIGSEGV: instruction fetch from a non-executable and an unmapped page\n");

    /* Sent rather than caused: the code says who sent it. */
    FAULTS(raise(SIGSEGV));
    CHECK(got_sig == SIGSEGV && got_code == SI_TKILL);
    FAULTS(kill(getpid(), SIGSEGV));
    CHECK(got_sig == SIGSEGV && got_code == SI_USER);
    printf("SIGSEGV: SI_TKILL and SI_USER when sent\n");
}

static void bus(void) {
    int fd = open("short-file", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
    char *map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(map != MAP_FAILED);
    CHECK(load_byte(map + 4095) == 0);
    FAULTS(load_byte(map + 4096 + 7));
    CHECK(got_sig == SIGBUS && got_code == BUS_ADRERR && got_addr == (uintptr_t)map + 4096 + 7);
    FAULTS(store_byte(map + 8191));
    CHECK(got_sig == SIGBUS && got_code == BUS_ADRERR && got_addr == (uintptr_t)map + 8191);
    /* Growing the file makes the page valid. */
    CHECK(ftruncate(fd, 8192) == 0);
    store_byte(map + 8191);
    CHECK(load_byte(map + 8191) == 1);
    close(fd);
    mask_is_clear();
    printf("SIGBUS: BUS_ADRERR past the end of a mapped file\n");
}

static void fpe_ill_trap(void) {
    FAULTS(divide(1, 0));
    CHECK(got_sig == SIGFPE && got_code == FPE_INTDIV && got_addr == (uintptr_t)divide_insn);
    CHECK(got_rip == (uintptr_t)divide_insn && got_trapno == TRAP_DE);
    FAULTS(divide(INT_MIN, -1)); /* the quotient overflows: the same exception */
    CHECK(got_sig == SIGFPE && got_code == FPE_INTDIV && got_addr == (uintptr_t)divide_insn);
    CHECK(divide(7, 2) == 3);
    printf("SIGFPE: FPE_INTDIV at the divide, for zero and for overflow\n");

    FAULTS(undefined_insn());
    CHECK(got_sig == SIGILL && got_code == ILL_ILLOPN && got_addr == (uintptr_t)undefined_insn);
    CHECK(got_rip == (uintptr_t)undefined_insn && got_trapno == TRAP_UD);
    mask_is_clear();
    printf("SIGILL: ILL_ILLOPN at the ud2\n");

    /* int3 traps after the instruction; the handler returns and execution goes on. */
    faults = 0;
    breakpoint();
    CHECK(faults == 1 && got_sig == SIGTRAP && got_code == SI_KERNEL && got_trapno == TRAP_BP);
    CHECK(got_rip == (uintptr_t)after_breakpoint);
    breakpoint_long();
    CHECK(faults == 2 && got_sig == SIGTRAP && got_code == SI_KERNEL);
    CHECK(got_rip == (uintptr_t)after_breakpoint_long);
    printf("SIGTRAP: SI_KERNEL, resumes after int3 and int $3\n");
}

/* Faults that cannot be handled kill the process: run them in children. */
static void fatal(void) {
    for (int how = 0; how < 2; how++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            struct rlimit none = {0, 0};
            setrlimit(RLIMIT_CORE, &none);
            if (how == 0) {
                /* A blocked SIGSEGV cannot hold back a fault. */
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGSEGV);
                sigprocmask(SIG_BLOCK, &set, NULL);
                load_byte((void *)16);
            } else {
                /* A fault inside the SIGSEGV handler, where SIGSEGV is blocked. */
                struct sigaction sa = {0};
                sa.sa_handler = (void (*)(int))(uintptr_t)16; /* the handler itself faults */
                sigaction(SIGSEGV, &sa, NULL);
                load_byte((void *)16);
            }
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    }
    printf("fatal: a fault with SIGSEGV blocked, and one in the handler, kill\n");
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        CHECK(sigaction(sigs[i], &sa, NULL) == 0);
    segv();
    bus();
    fpe_ill_trap();
    fatal();
    return 0;
}
