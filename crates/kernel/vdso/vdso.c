/* Moat's vDSO: the time calls a program makes most often, answered in its own address space
 * from a data page the kernel keeps current (vdso.h), so they never trap. Anything this code
 * cannot answer (another clock, a time zone, the kernel not ready) is a real system call,
 * which Moat's kernel serves like any other.
 *
 * Built freestanding into a small shared object (build.rs) whose layout in memory equals its
 * layout in the file: the kernel copies it into pages and maps it as it is. */
#include "vdso.h"
#include <stddef.h>
#include <time.h>
#include <sys/time.h>
#include <sys/syscall.h>

extern const char __ehdr_start[] __attribute__((visibility("hidden")));

/* The data page is the page below our ELF header. (The empty asm hides the arithmetic from
 * the compiler's object-bounds reasoning: the page is not part of __ehdr_start's object.) */
static inline const volatile struct moat_vvar *vvar(void) {
    const char *base = __ehdr_start;
    __asm__("" : "+r"(base));
    return (const volatile struct moat_vvar *)(base - 4096);
}

static inline long sys2(long nr, long a, long b) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline long sys3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

/* The C library expects -errno back, as from the system call itself. */

static inline uint64_t rdtsc_ordered(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* Nanoseconds of `clock` now; 0 if this code does not serve that clock. */
static int clock_ns(clockid_t clock, uint64_t *ns) {
    const volatile struct moat_vvar *v = vvar();
    uint32_t seq;
    uint64_t base, tsc_base, mult, tsc;
    for (;;) {
        seq = v->seq;
        __asm__ volatile("" ::: "memory");
        if (seq & 1)
            continue;
        if (!v->ready)
            return 0;
        switch (clock) {
        case CLOCK_MONOTONIC:
        case CLOCK_MONOTONIC_COARSE:
            base = v->monotonic_ns;
            break;
        case CLOCK_REALTIME:
        case CLOCK_REALTIME_COARSE:
            base = v->realtime_ns;
            break;
        case CLOCK_BOOTTIME:
            base = v->boottime_ns;
            break;
        default:
            return 0;
        }
        tsc_base = v->tsc_base;
        mult = v->mult;
        tsc = rdtsc_ordered();
        __asm__ volatile("" ::: "memory");
        if (v->seq == seq)
            break;
    }
    uint64_t delta = tsc > tsc_base ? tsc - tsc_base : 0;
    *ns = base + (uint64_t)(((unsigned __int128)delta * mult) >> 32);
    return 1;
}

int __vdso_clock_gettime(clockid_t clock, struct timespec *ts) {
    uint64_t ns;
    if (!clock_ns(clock, &ns))
        return (int)sys2(SYS_clock_gettime, clock, (long)ts);
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
    return 0;
}

int __vdso_gettimeofday(struct timeval *tv, struct timezone *tz) {
    uint64_t ns;
    if (tz != NULL || !clock_ns(CLOCK_REALTIME, &ns))
        return (int)sys2(SYS_gettimeofday, (long)tv, (long)tz);
    if (tv != NULL) {
        tv->tv_sec = (time_t)(ns / 1000000000u);
        tv->tv_usec = (suseconds_t)(ns % 1000000000u / 1000u);
    }
    return 0;
}

time_t __vdso_time(time_t *t) {
    uint64_t ns;
    if (!clock_ns(CLOCK_REALTIME, &ns))
        return (time_t)sys2(SYS_time, (long)t, 0);
    time_t s = (time_t)(ns / 1000000000u);
    if (t != NULL)
        *t = s;
    return s;
}

/* The CPU a thread runs on is the kernel's answer (it follows the sandbox's own affinity
 * masks, not the host's CPU numbers), so getcpu always asks it. */
long __vdso_getcpu(unsigned *cpu, unsigned *node, void *cache) {
    return sys3(SYS_getcpu, (long)cpu, (long)node, (long)cache);
}

int clock_gettime(clockid_t, struct timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
time_t time(time_t *) __attribute__((weak, alias("__vdso_time")));
long getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
