// The floor of any signal-based system call trap on this machine (issue 5's "10x through the
// signal path"): raw getpid natively, and raw getpid trapped by Syscall User Dispatch (the
// cheapest way to turn a system call into a signal) into an in-process SIGSYS handler that
// answers it itself: no hand-over to another process, no dispatch, only the signal's delivery
// and rt_sigreturn. Best of 5 runs each. Build: gcc -O2 -o signal_floor signal_floor.c
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif
static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;
static void handler(int sig, siginfo_t *si, void *uc_) {
    (void)sig; (void)si;
    ucontext_t *uc = uc_;
    uc->uc_mcontext.gregs[REG_RAX] = 1234;
    selector = SYSCALL_DISPATCH_FILTER_ALLOW; /* so that rt_sigreturn passes */
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static long raw_getpid(void) { long r; __asm__ volatile("syscall" : "=a"(r) : "a"(39) : "rcx", "r11", "memory"); return r; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    double best = 1e18;
    for (int run = 0; run < 5; run++) {
        double t = now();
        for (int i = 0; i < n; i++) raw_getpid();
        t = (now() - t) / n;
        if (t < best) best = t;
    }
    printf("native getpid %.0f ns\n", best);
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    /* The handler lets its own rt_sigreturn through by switching the selector back. */
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) != 0) { perror("prctl"); return 1; }
    double best2 = 1e18;
    for (int run = 0; run < 5; run++) {
        double t = now();
        for (int i = 0; i < n / 10; i++) {
            selector = SYSCALL_DISPATCH_FILTER_BLOCK;
            long r = raw_getpid();
            selector = SYSCALL_DISPATCH_FILTER_ALLOW;
            if (r != 1234) { printf("not trapped: %ld\n", r); return 1; }
        }
        t = (now() - t) / (n / 10);
        if (t < best2) best2 = t;
    }
    printf("SUD SIGSYS trap, in-process handler %.0f ns (%.1fx native)\n", best2, best2 / best);
    return 0;
}
