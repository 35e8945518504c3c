// The system call round trip: N getpid calls, reporting nanoseconds per call on stdout.
// By default through glibc's generic syscall() (its `syscall` instruction takes the number
// from a register, so no platform can patch it: the trap path); with a second argument
// `site`, through glibc's getpid() wrapper, which is `mov $39, %eax; syscall` (the common
// site Moat's systrap platform patches into a jump). glibc caches no pid since 2.25.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int site = argc > 2 && strcmp(argv[2], "site") == 0;
    struct timespec a, b;
    syscall(SYS_getpid);
    getpid();
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (site)
        for (long i = 0; i < n; i++)
            getpid();
    else
        for (long i = 0; i < n; i++)
            syscall(SYS_getpid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.1f\n", ns / n);
    return 0;
}
