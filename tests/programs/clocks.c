// clock_gettime, clock_getres, gettimeofday, time: values consistent, clocks monotonic, errors.
#include "check.h"
#include <sys/time.h>
#include <time.h>
int main(void) {
    struct timespec a, b, res;
    int clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID,
                    CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME, CLOCK_TAI};
    for (size_t i = 0; i < sizeof clocks / sizeof *clocks; i++) {
        CHECK(syscall(SYS_clock_gettime, clocks[i], &a) == 0);
        CHECK(syscall(SYS_clock_gettime, clocks[i], &b) == 0);
        CHECK(b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
        CHECK(a.tv_nsec >= 0 && a.tv_nsec < 1000000000);
        CHECK(syscall(SYS_clock_getres, clocks[i], &res) == 0);
        CHECK(res.tv_sec == 0 && res.tv_nsec > 0);
        CHECK(syscall(SYS_clock_getres, clocks[i], NULL) == 0);
    }
    CHECK(syscall(SYS_clock_getres, CLOCK_MONOTONIC, &res) == 0 && res.tv_nsec == 1);
    CHECK_ERR(syscall(SYS_clock_gettime, 10, &a), EINVAL);
    CHECK_ERR(syscall(SYS_clock_gettime, 100, &a), EINVAL);
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_clock_getres, 100, &res), EINVAL);
    /* A CPU clock of our own process, as clock_getcpuclockid(0) names it. */
    clockid_t cpu;
    CHECK(clock_getcpuclockid(0, &cpu) == 0);
    CHECK(clock_gettime(cpu, &a) == 0);
    struct timeval tv;
    struct timezone tz;
    CHECK(syscall(SYS_gettimeofday, &tv, &tz) == 0);
    CHECK(syscall(SYS_gettimeofday, NULL, NULL) == 0);
    CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    time_t t1 = syscall(SYS_time, NULL), t2;
    CHECK(syscall(SYS_time, &t2) >= t1 && t2 >= t1 && t2 - tv.tv_sec <= 2);
    CHECK_ERR(syscall(SYS_gettimeofday, BAD_PTR, NULL), EFAULT);
    CHECK_ERR(syscall(SYS_time, BAD_PTR), EFAULT);
    printf("clocks ok\n");
    return 0;
}
