// nanosleep and clock_nanosleep sleep at least as long as asked; bad requests fail.
#include "check.h"
#include <time.h>
static long long ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(void) {
    long long t0 = ns();
    struct timespec req = {0, 20 * 1000 * 1000};
    CHECK(syscall(SYS_nanosleep, &req, NULL) == 0);
    CHECK(ns() - t0 >= 20 * 1000 * 1000);
    t0 = ns();
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) == 0);
    CHECK(ns() - t0 >= 20 * 1000 * 1000);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    now.tv_nsec += 10 * 1000 * 1000;
    if (now.tv_nsec >= 1000000000) { now.tv_sec++; now.tv_nsec -= 1000000000; }
    CHECK(clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &now, NULL) == 0);
    struct timespec after;
    clock_gettime(CLOCK_REALTIME, &after);
    CHECK(after.tv_sec > now.tv_sec || (after.tv_sec == now.tv_sec && after.tv_nsec >= now.tv_nsec));
    struct timespec bad = {0, 1000000000};
    CHECK_ERR(syscall(SYS_nanosleep, &bad, NULL), EINVAL);
    bad.tv_sec = -1; bad.tv_nsec = 0;
    CHECK_ERR(syscall(SYS_nanosleep, &bad, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_nanosleep, BAD_PTR, NULL), EFAULT);
    CHECK(clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &req, NULL) == EINVAL);
    CHECK(clock_nanosleep(99, 0, &req, NULL) == EINVAL);
    printf("sleeping ok\n");
    return 0;
}
