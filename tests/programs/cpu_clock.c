// The CPU-time clocks count the program's own computation: spinning until the thread clock has
// advanced 20 ms advances the process clock as much, and neither runs ahead of the wall clock.
#include "check.h"
#include <time.h>
static long long ns(clockid_t c) {
    struct timespec t;
    CHECK(clock_gettime(c, &t) == 0);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(void) {
    const long long want = 20 * 1000 * 1000, give_up = 5 * 1000000000LL;
    long long p0 = ns(CLOCK_PROCESS_CPUTIME_ID), t0 = ns(CLOCK_THREAD_CPUTIME_ID), w0 = ns(CLOCK_MONOTONIC);
    volatile unsigned long spin = 0;
    /* Wall time caps the loop, so clocks that never move end it too (and fail below). */
    while (ns(CLOCK_THREAD_CPUTIME_ID) - t0 < want && ns(CLOCK_MONOTONIC) - w0 < give_up)
        for (int i = 0; i < 10000; i++) spin++;
    long long t = ns(CLOCK_THREAD_CPUTIME_ID) - t0, p = ns(CLOCK_PROCESS_CPUTIME_ID) - p0;
    long long w = ns(CLOCK_MONOTONIC) - w0;
    printf("thread cpu advanced: %d\n", t >= want);
    printf("process cpu advanced: %d\n", p >= want);
    CHECK(t >= want && p >= t - 1000000);
    CHECK(p <= w + 1000000 && t <= w + 1000000);
    return 0;
}
