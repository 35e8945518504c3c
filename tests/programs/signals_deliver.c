// Signal delivery: handlers run with the right signal number and siginfo (SI_USER, SI_TKILL,
// SI_QUEUE, si_pid, si_uid, si_value) before kill/raise/tgkill return; the ucontext (saved
// mask, FP state); the mask inside a handler (own signal and sa_mask blocked, SA_NODEFER);
// nesting order; SA_RESETHAND; blocked signals pending and delivered on unblock (standard ones
// once, real-time ones queued in order); rt_sigsuspend; sigwaitinfo/sigtimedwait; SIGCHLD
// from an exiting child and SIG_IGN'd SIGCHLD reaping; sigaltstack with SA_ONSTACK; FP and SSE
// state kept across a handler that changes it, the handler starting with a clean one; kill of
// a process group; EINVAL and ESRCH.
#include "check.h"
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>

#define NOPID 0x3fffffff /* beyond any pid_max */

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* What the last handler saw, kept in volatile scalars: the compiler must not assume a call
 * like raise() leaves them alone. Signal sets are kept as bit masks (bit n-1 for signal n). */
static volatile int count[_NSIG];
static volatile int last_signo, last_code, last_pid, last_uid, last_value;
static volatile unsigned long saved_mask, handler_mask;
static volatile int had_context;

static unsigned long bits(const sigset_t *set) {
    unsigned long b = 0;
    for (int sig = 1; sig <= 64; sig++)
        if (sigismember(set, sig) == 1)
            b |= 1ul << (sig - 1);
    return b;
}
static int has(unsigned long mask, int sig) { return (mask >> (sig - 1)) & 1; }

/* A log of handler entries and exits, for nesting order. */
static volatile char trace[64];
static volatile int trace_len;
static void note(char c) {
    if (trace_len < (int)sizeof trace - 1)
        trace[trace_len++] = c;
}
static int traced(const char *want) {
    size_t n = strlen(want);
    if ((size_t)trace_len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (trace[i] != want[i])
            return 0;
    return 1;
}

static void info_handler(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    sigset_t now;
    count[sig]++;
    last_signo = si->si_signo;
    last_code = si->si_code;
    last_pid = si->si_pid;
    last_uid = si->si_uid;
    last_value = si->si_value.sival_int;
    had_context = uc != NULL && uc->uc_mcontext.fpregs != NULL && uc->uc_mcontext.gregs[REG_RIP] != 0;
    saved_mask = bits(&uc->uc_sigmask);
    sigprocmask(SIG_SETMASK, NULL, &now);
    handler_mask = bits(&now);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags, const int *also_block) {
    struct sigaction sa = {0};
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    for (; also_block && *also_block; also_block++)
        sigaddset(&sa.sa_mask, *also_block);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static sigset_t only(int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    return s;
}

static void senders(void) {
    install(SIGUSR1, info_handler, 0, NULL);
    pid_t me = getpid();
    CHECK(kill(me, SIGUSR1) == 0);
    CHECK(count[SIGUSR1] == 1); /* delivered before kill returned */
    CHECK(last_signo == SIGUSR1 && last_code == SI_USER);
    CHECK(last_pid == me && last_uid == getuid() && had_context);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(count[SIGUSR1] == 2 && last_code == SI_TKILL && last_pid == me);
    CHECK(syscall(SYS_tgkill, me, gettid_(), SIGUSR1) == 0);
    CHECK(count[SIGUSR1] == 3 && last_code == SI_TKILL && last_pid == me);
    CHECK(syscall(SYS_tkill, gettid_(), SIGUSR1) == 0);
    CHECK(count[SIGUSR1] == 4 && last_code == SI_TKILL);
    union sigval v = {.sival_int = 1234};
    CHECK(sigqueue(me, SIGUSR1, v) == 0);
    CHECK(count[SIGUSR1] == 5 && last_code == SI_QUEUE && last_pid == me);
    CHECK(last_value == 1234);
    CHECK(kill(me, 0) == 0 && count[SIGUSR1] == 5); /* signal 0 only checks */
    printf("senders: SI_USER, SI_TKILL, SI_QUEUE, delivered before the call returns\n");
}

static void masks(void) {
    /* Inside a handler: its own signal and sa_mask are blocked; the saved mask is the one
     * from before; afterwards the mask is back. */
    const int hup[] = {SIGHUP, 0};
    install(SIGUSR1, info_handler, 0, hup);
    sigset_t before = only(SIGUSR2), now;
    CHECK(sigprocmask(SIG_SETMASK, &before, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(has(saved_mask, SIGUSR2) && !has(saved_mask, SIGUSR1));
    CHECK(!has(saved_mask, SIGHUP));
    CHECK(has(handler_mask, SIGUSR1) && has(handler_mask, SIGUSR2));
    CHECK(has(handler_mask, SIGHUP));
    CHECK(sigprocmask(SIG_SETMASK, NULL, &now) == 0);
    CHECK(sigismember(&now, SIGUSR2) && !sigismember(&now, SIGUSR1) && !sigismember(&now, SIGHUP));
    /* SA_NODEFER: the handler's own signal stays unblocked. */
    install(SIGUSR1, info_handler, SA_NODEFER, NULL);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(!has(handler_mask, SIGUSR1) && has(handler_mask, SIGUSR2));
    sigemptyset(&now);
    CHECK(sigprocmask(SIG_SETMASK, &now, NULL) == 0);
    printf("masks: own signal and sa_mask blocked in the handler, SA_NODEFER, restored after\n");
}

static volatile int reraise; /* the SIGUSR1 handler raises SIGUSR1 again, once */
static void nesting_handler(int sig, siginfo_t *si, void *uc) {
    (void)si;
    (void)uc;
    note(sig == SIGUSR1 ? '(' : '[');
    if (sig == SIGUSR1 && reraise) {
        reraise = 0;
        raise(SIGUSR1);
    }
    note(sig == SIGUSR1 ? ')' : ']');
}

static void nesting(void) {
    /* Default: the raise inside the handler waits for the handler to return. */
    install(SIGUSR1, nesting_handler, 0, NULL);
    trace_len = 0;
    reraise = 1;
    CHECK(raise(SIGUSR1) == 0);
    CHECK(traced("()()"));
    /* SA_NODEFER: it runs at once, nested. */
    install(SIGUSR1, nesting_handler, SA_NODEFER, NULL);
    trace_len = 0;
    reraise = 1;
    CHECK(raise(SIGUSR1) == 0);
    CHECK(traced("(())"));
    /* Two signals pending when unblocked together: the lower-numbered is delivered first, and
     * if its handler does not block the other, the other's frame goes on top at once, so its
     * handler runs (and returns) first. With the other in sa_mask, they run in order. */
    install(SIGUSR1, nesting_handler, 0, NULL);
    install(SIGUSR2, nesting_handler, 0, NULL);
    sigset_t both = only(SIGUSR1), none;
    sigaddset(&both, SIGUSR2);
    sigemptyset(&none);
    CHECK(sigprocmask(SIG_BLOCK, &both, NULL) == 0);
    trace_len = 0;
    CHECK(raise(SIGUSR2) == 0 && raise(SIGUSR1) == 0 && trace_len == 0);
    CHECK(sigprocmask(SIG_SETMASK, &none, NULL) == 0);
    CHECK(traced("[]()"));
    const int usr2[] = {SIGUSR2, 0};
    install(SIGUSR1, nesting_handler, 0, usr2);
    CHECK(sigprocmask(SIG_BLOCK, &both, NULL) == 0);
    trace_len = 0;
    CHECK(raise(SIGUSR2) == 0 && raise(SIGUSR1) == 0 && trace_len == 0);
    CHECK(sigprocmask(SIG_SETMASK, &none, NULL) == 0);
    CHECK(traced("()[]"));
    printf("nesting: deferred by default, nested with SA_NODEFER, pending pair order\n");
}

static void *volatile disposition_in_handler;
static void resethand_handler(int sig, siginfo_t *si, void *uc) {
    struct sigaction sa;
    (void)si;
    (void)uc;
    sigaction(sig, NULL, &sa);
    disposition_in_handler = (void *)sa.sa_handler;
    count[sig]++;
}

static void resethand(void) {
    install(SIGUSR2, resethand_handler, SA_RESETHAND, NULL);
    count[SIGUSR2] = 0;
    CHECK(raise(SIGUSR2) == 0);
    CHECK(count[SIGUSR2] == 1 && disposition_in_handler == (void *)SIG_DFL);
    struct sigaction sa;
    CHECK(sigaction(SIGUSR2, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    printf("SA_RESETHAND: default again on entry\n");
}

static volatile int rt_values[8];
static volatile int rt_count;
static void rt_handler(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if (rt_count < 8)
        rt_values[rt_count] = si->si_value.sival_int;
    rt_count++;
}

static void pending(void) {
    install(SIGUSR1, info_handler, 0, NULL);
    sigset_t set = only(SIGUSR1), got;
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    count[SIGUSR1] = 0;
    CHECK(kill(getpid(), SIGUSR1) == 0 && kill(getpid(), SIGUSR1) == 0);
    CHECK(count[SIGUSR1] == 0);
    CHECK(sigpending(&got) == 0 && sigismember(&got, SIGUSR1) && !sigismember(&got, SIGUSR2));
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(count[SIGUSR1] == 1); /* standard signals do not queue */
    CHECK(sigpending(&got) == 0 && !sigismember(&got, SIGUSR1));
    /* Real-time signals queue, and arrive in the order sent. */
    int rt = SIGRTMIN + 2;
    install(rt, rt_handler, 0, NULL);
    set = only(rt);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    for (int i = 1; i <= 3; i++) {
        union sigval v = {.sival_int = i * 11};
        CHECK(sigqueue(getpid(), rt, v) == 0);
    }
    CHECK(rt_count == 0);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(rt_count == 3 && rt_values[0] == 11 && rt_values[1] == 22 && rt_values[2] == 33);
    printf("pending: standard signals once, real-time ones queued in order\n");
}

static void suspend_and_wait(void) {
    install(SIGUSR1, info_handler, 0, NULL);
    sigset_t set = only(SIGUSR1), none, cur;
    sigemptyset(&none);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    count[SIGUSR1] = 0;
    CHECK(raise(SIGUSR1) == 0 && count[SIGUSR1] == 0);
    CHECK_ERR(sigsuspend(&none), EINTR);
    CHECK(count[SIGUSR1] == 1);
    /* The handler's frame saved the mask from before sigsuspend; it is back afterwards. */
    CHECK(has(saved_mask, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, NULL, &cur) == 0 && sigismember(&cur, SIGUSR1));
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);

    /* sigwaitinfo takes a blocked signal without running the handler. */
    install(SIGUSR2, info_handler, 0, NULL);
    count[SIGUSR2] = 0;
    set = only(SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    union sigval v = {.sival_int = 77};
    CHECK(sigqueue(getpid(), SIGUSR2, v) == 0);
    siginfo_t si;
    CHECK(sigwaitinfo(&set, &si) == SIGUSR2);
    CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == 77 && si.si_pid == getpid());
    CHECK(count[SIGUSR2] == 0);
    struct timespec zero = {0, 0}, short_wait = {0, 20 * 1000 * 1000}, bad = {0, 1000000000};
    CHECK_ERR(sigtimedwait(&set, &si, &zero), EAGAIN);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_ERR(sigtimedwait(&set, &si, &short_wait), EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) >= 20 * 1000 * 1000);
    CHECK_ERR(sigtimedwait(&set, &si, &bad), EINVAL);
    CHECK(raise(SIGUSR2) == 0);
    /* glibc's wrappers fold SI_TKILL into SI_USER; the system call itself does not. */
    CHECK(syscall(SYS_rt_sigtimedwait, &set, &si, &zero, 8) == SIGUSR2 && si.si_code == SI_TKILL);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0 && count[SIGUSR2] == 0);
    printf("sigsuspend: EINTR, mask restored; sigwaitinfo/sigtimedwait: EAGAIN, EINVAL\n");
}

static void sigchld(void) {
    sigset_t set = only(SIGCHLD);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(3);
    siginfo_t si;
    CHECK(sigwaitinfo(&set, &si) == SIGCHLD);
    CHECK(si.si_code == CLD_EXITED && si.si_pid == pid && si.si_status == 3);
    CHECK(si.si_uid == getuid());
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 3);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    /* With SIGCHLD ignored, children are reaped by the kernel: wait finds none. */
    CHECK(signal(SIGCHLD, SIG_IGN) != SIG_ERR);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK_ERR(waitpid(pid, &st, 0), ECHILD);
    CHECK(signal(SIGCHLD, SIG_DFL) != SIG_ERR);
    printf("SIGCHLD: CLD_EXITED with pid and status; ignored SIGCHLD reaps\n");
}

static char altstack[256 * 1024];
static volatile uintptr_t local_address;
static volatile int onstack_flags, eperm_inside;
static void altstack_handler(int sig, siginfo_t *si, void *uc) {
    volatile char local;
    stack_t cur, other = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    (void)sig;
    (void)si;
    (void)uc;
    local_address = (uintptr_t)&local;
    sigaltstack(NULL, &cur);
    onstack_flags = cur.ss_flags;
    errno = 0;
    eperm_inside = sigaltstack(&other, NULL) == -1 && errno == EPERM;
}

static int on_altstack(uintptr_t a) {
    return a >= (uintptr_t)altstack && a < (uintptr_t)altstack + sizeof altstack;
}

static void alternate_stack(void) {
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0}, cur;
    CHECK(sigaltstack(NULL, &cur) == 0 && cur.ss_flags == SS_DISABLE);
    CHECK(sigaltstack(&ss, NULL) == 0);
    CHECK(sigaltstack(NULL, &cur) == 0 && cur.ss_flags == 0);
    CHECK(cur.ss_sp == altstack && cur.ss_size == sizeof altstack);
    install(SIGUSR1, altstack_handler, SA_ONSTACK, NULL);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(on_altstack(local_address) && onstack_flags == SS_ONSTACK && eperm_inside);
    /* Without SA_ONSTACK the handler runs on the normal stack. */
    install(SIGUSR1, altstack_handler, 0, NULL);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(!on_altstack(local_address) && onstack_flags == 0 && !eperm_inside);
    /* Disabled: SA_ONSTACK falls back to the normal stack. */
    stack_t off = {.ss_flags = SS_DISABLE};
    CHECK(sigaltstack(&off, NULL) == 0);
    install(SIGUSR1, altstack_handler, SA_ONSTACK, NULL);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(!on_altstack(local_address) && onstack_flags == SS_DISABLE);
    stack_t tiny = {.ss_sp = altstack, .ss_size = 1024, .ss_flags = 0};
    CHECK_ERR(sigaltstack(&tiny, NULL), ENOMEM);
    stack_t badflags = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0x1234};
    CHECK_ERR(sigaltstack(&badflags, NULL), EINVAL);
    CHECK_ERR(sigaltstack(BAD_PTR, NULL), EFAULT);
    printf("sigaltstack: SA_ONSTACK runs there, SS_ONSTACK, EPERM inside, ENOMEM, EINVAL\n");
}

/* FP state: the handler starts with a clean MXCSR and x87 control word, scribbles on every
 * xmm register and changes the rounding modes; the interrupted code keeps its registers and
 * its modes. */
static volatile unsigned handler_mxcsr;
static volatile unsigned short handler_fcw;
static void fp_handler(int sig) {
    unsigned m;
    unsigned short cw;
    (void)sig;
    asm volatile("stmxcsr %0" : "=m"(m));
    asm volatile("fnstcw %0" : "=m"(cw));
    handler_mxcsr = m;
    handler_fcw = cw;
    unsigned up = (m & ~0x6000u) | 0x4000u;
    unsigned short cw_up = (cw & ~0x0c00) | 0x0800;
    asm volatile("ldmxcsr %0" ::"m"(up));
    asm volatile("fldcw %0" ::"m"(cw_up));
    asm volatile("pcmpeqd %%xmm0, %%xmm0\n\t"
                 "movdqa %%xmm0, %%xmm1\n\tmovdqa %%xmm0, %%xmm2\n\tmovdqa %%xmm0, %%xmm3\n\t"
                 "movdqa %%xmm0, %%xmm4\n\tmovdqa %%xmm0, %%xmm5\n\tmovdqa %%xmm0, %%xmm6\n\t"
                 "movdqa %%xmm0, %%xmm7\n\tmovdqa %%xmm0, %%xmm8\n\tmovdqa %%xmm0, %%xmm9\n\t"
                 "movdqa %%xmm0, %%xmm10\n\tmovdqa %%xmm0, %%xmm11\n\tmovdqa %%xmm0, %%xmm12\n\t"
                 "movdqa %%xmm0, %%xmm13\n\tmovdqa %%xmm0, %%xmm14\n\tmovdqa %%xmm0, %%xmm15\n\t"
                 "fldpi\n\tfldpi\n\tfmulp\n\tfstp %%st(0)" ::
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st");
    volatile double d = 1.0;
    for (int i = 0; i < 10; i++)
        d = d * 3.3 + 0.1;
}

static void fp_state(void) {
    struct sigaction sa = {0};
    sa.sa_handler = fp_handler;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    unsigned mxcsr0, mxcsr1;
    unsigned short fcw0, fcw1;
    asm volatile("stmxcsr %0" : "=m"(mxcsr0));
    asm volatile("fnstcw %0" : "=m"(fcw0));
    CHECK(mxcsr0 == 0x1f80 && fcw0 == 0x37f);
    unsigned mxcsr_rz = mxcsr0 | 0x6000;               /* round toward zero */
    unsigned short fcw_down = (fcw0 & ~0x0c00) | 0x0400; /* round down */
    asm volatile("ldmxcsr %0" ::"m"(mxcsr_rz));
    asm volatile("fldcw %0" ::"m"(fcw_down));
    /* Sixteen distinct 128-bit values live in xmm0-15 across the tgkill system call, on whose
     * return the handler runs. */
    static uint64_t in[32], out[32];
    for (int i = 0; i < 32; i++)
        in[i] = 0x0123456789abcdefull * (i + 1);
    long ret;
    asm volatile("movdqu 0(%[in]), %%xmm0\n\tmovdqu 16(%[in]), %%xmm1\n\t"
                 "movdqu 32(%[in]), %%xmm2\n\tmovdqu 48(%[in]), %%xmm3\n\t"
                 "movdqu 64(%[in]), %%xmm4\n\tmovdqu 80(%[in]), %%xmm5\n\t"
                 "movdqu 96(%[in]), %%xmm6\n\tmovdqu 112(%[in]), %%xmm7\n\t"
                 "movdqu 128(%[in]), %%xmm8\n\tmovdqu 144(%[in]), %%xmm9\n\t"
                 "movdqu 160(%[in]), %%xmm10\n\tmovdqu 176(%[in]), %%xmm11\n\t"
                 "movdqu 192(%[in]), %%xmm12\n\tmovdqu 208(%[in]), %%xmm13\n\t"
                 "movdqu 224(%[in]), %%xmm14\n\tmovdqu 240(%[in]), %%xmm15\n\t"
                 "syscall\n\t"
                 "movdqu %%xmm0, 0(%[out])\n\tmovdqu %%xmm1, 16(%[out])\n\t"
                 "movdqu %%xmm2, 32(%[out])\n\tmovdqu %%xmm3, 48(%[out])\n\t"
                 "movdqu %%xmm4, 64(%[out])\n\tmovdqu %%xmm5, 80(%[out])\n\t"
                 "movdqu %%xmm6, 96(%[out])\n\tmovdqu %%xmm7, 112(%[out])\n\t"
                 "movdqu %%xmm8, 128(%[out])\n\tmovdqu %%xmm9, 144(%[out])\n\t"
                 "movdqu %%xmm10, 160(%[out])\n\tmovdqu %%xmm11, 176(%[out])\n\t"
                 "movdqu %%xmm12, 192(%[out])\n\tmovdqu %%xmm13, 208(%[out])\n\t"
                 "movdqu %%xmm14, 224(%[out])\n\tmovdqu %%xmm15, 240(%[out])"
                 : "=a"(ret)
                 : "0"((long)SYS_tgkill), "D"((long)getpid()), "S"((long)gettid_()),
                   "d"((long)SIGUSR1), [in] "r"(in), [out] "r"(out)
                 : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
                   "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                   "xmm15");
    asm volatile("stmxcsr %0" : "=m"(mxcsr1));
    asm volatile("fnstcw %0" : "=m"(fcw1));
    asm volatile("ldmxcsr %0" ::"m"(mxcsr0));
    asm volatile("fldcw %0" ::"m"(fcw0));
    CHECK(ret == 0);
    CHECK(memcmp(in, out, sizeof in) == 0);
    CHECK(mxcsr1 == mxcsr_rz && fcw1 == fcw_down);
    CHECK(handler_mxcsr == 0x1f80 && handler_fcw == 0x37f);
    printf("FP state: xmm0-15, MXCSR and x87 control kept; handler starts clean\n");
}

/* kill(0, ...) reaches the caller's whole group, kill(-pgid, ...) another group, and no one
 * outside it. Every member blocks the signals and takes them with sigwaitinfo. */
static int took(int sig, pid_t from) {
    sigset_t set = only(sig);
    siginfo_t si;
    return sigwaitinfo(&set, &si) == sig && si.si_code == SI_USER && si.si_pid == from;
}

static void process_group(void) {
    pid_t top = getpid();
    sigset_t both = only(SIGUSR1), pend;
    sigaddset(&both, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &both, NULL) == 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t leader = fork();
    CHECK(leader >= 0);
    if (leader == 0) {
        close(ready[0]);
        CHECK(setpgid(0, 0) == 0);
        pid_t me = getpid(), members[2];
        for (int i = 0; i < 2; i++) {
            members[i] = fork();
            CHECK(members[i] >= 0);
            if (members[i] == 0)
                _exit(took(SIGUSR1, me) && took(SIGUSR2, top) ? 0 : 1);
        }
        CHECK(kill(0, SIGUSR1) == 0);
        CHECK(took(SIGUSR1, me));
        CHECK(write(ready[1], "r", 1) == 1);
        CHECK(took(SIGUSR2, top));
        for (int i = 0; i < 2; i++) {
            int st;
            CHECK(waitpid(members[i], &st, 0) == members[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        _exit(0);
    }
    close(ready[1]);
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK(kill(-leader, SIGUSR2) == 0);
    int st;
    CHECK(waitpid(leader, &st, 0) == leader && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Neither signal reached the parent, which is in another group. */
    CHECK(sigpending(&pend) == 0 && !sigismember(&pend, SIGUSR1) && !sigismember(&pend, SIGUSR2));
    CHECK(sigprocmask(SIG_UNBLOCK, &both, NULL) == 0);
    printf("process groups: kill(0) and kill(-pgid) reach every member\n");
}

static void errors(void) {
    pid_t me = getpid(), tid = gettid_();
    CHECK_ERR(kill(me, 65), EINVAL);
    CHECK_ERR(kill(me, -1), EINVAL);
    CHECK_ERR(syscall(SYS_tgkill, me, tid, 65), EINVAL);
    CHECK_ERR(syscall(SYS_tgkill, 0, tid, SIGUSR1), EINVAL);
    CHECK_ERR(syscall(SYS_tgkill, me, 0, SIGUSR1), EINVAL);
    CHECK_ERR(syscall(SYS_tgkill, me, -5, SIGUSR1), EINVAL);
    CHECK_ERR(syscall(SYS_tkill, 0, SIGUSR1), EINVAL);
    union sigval v = {0};
    CHECK_ERR(sigqueue(me, 65, v), EINVAL);
    CHECK_ERR(kill(NOPID, 0), ESRCH);
    CHECK_ERR(kill(-NOPID, 0), ESRCH);
    CHECK_ERR(kill(INT_MIN, 0), ESRCH);
    CHECK_ERR(syscall(SYS_tgkill, me, NOPID, 0), ESRCH);
    CHECK_ERR(syscall(SYS_tgkill, NOPID, tid, 0), ESRCH);
    CHECK_ERR(syscall(SYS_tkill, NOPID, 0), ESRCH);
    CHECK_ERR(sigqueue(NOPID, SIGUSR1, v), ESRCH);
    printf("errors: EINVAL for bad signals and ids, ESRCH for missing ones\n");
}

int main(void) {
    senders();
    masks();
    nesting();
    resethand();
    pending();
    suspend_and_wait();
    sigchld();
    alternate_stack();
    fp_state();
    process_group();
    errors();
    return 0;
}
