// getrusage and times: CPU time grows with work, counts the process's other threads, and the
// children once reaped (wait4's rusage is what RUSAGE_CHILDREN gains, grandchildren
// included); times() agrees with getrusage in clock ticks and its return value follows
// elapsed time; ru_maxrss grows with touched memory and never shrinks. Bounds, not values.
#include "check.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>

static long long us(const struct timeval *tv) {
    return tv->tv_sec * 1000000LL + tv->tv_usec;
}

/* CPU microseconds (user and system) of a getrusage target. */
static long long cpu_us(int who) {
    struct rusage r;
    CHECK(getrusage(who, &r) == 0);
    CHECK(r.ru_utime.tv_usec >= 0 && r.ru_utime.tv_usec < 1000000);
    CHECK(r.ru_stime.tv_usec >= 0 && r.ru_stime.tv_usec < 1000000);
    return us(&r.ru_utime) + us(&r.ru_stime);
}

static long maxrss(int who) {
    struct rusage r;
    CHECK(getrusage(who, &r) == 0);
    return r.ru_maxrss;
}

static long long thread_cpu_us(void) {
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static volatile unsigned long sink;

/* Spend `ms` milliseconds of this thread's CPU time. */
static void burn(int ms) {
    long long until = thread_cpu_us() + ms * 1000LL;
    while (thread_cpu_us() < until)
        for (int i = 0; i < 10000; i++) sink += i;
}

static int ready[2], release[2];

static void *worker(void *arg) {
    (void)arg;
    burn(100);
    char c = 'x';
    CHECK(write(ready[1], &c, 1) == 1);
    CHECK(read(release[0], &c, 1) == 1);
    return NULL;
}

static long long ticks_us(clock_t t) {
    return (long long)t * 1000000LL / sysconf(_SC_CLK_TCK);
}

int main(void) {
    CHECK(sysconf(_SC_CLK_TCK) == 100);

    /* The process's time grows with the work of its thread. */
    long long self0 = cpu_us(RUSAGE_SELF);
    burn(50);
    long long thread1 = cpu_us(RUSAGE_THREAD);
    long long self1 = cpu_us(RUSAGE_SELF);
    CHECK(self1 >= self0 + 45000);
    CHECK(thread1 <= self1);
    printf("self time grows\n");

    /* Another live thread's time counts for the process, not for this thread. */
    CHECK(pipe(ready) == 0 && pipe(release) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    long long mine = cpu_us(RUSAGE_THREAD);
    long long self2 = cpu_us(RUSAGE_SELF);
    CHECK(self2 >= self1 + 95000);
    CHECK(mine < self2 - 90000);
    CHECK(write(release[1], "x", 1) == 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(cpu_us(RUSAGE_SELF) >= self2);
    printf("threads counted\n");

    /* Children count once reaped, with their own reaped children. */
    long long children0 = cpu_us(RUSAGE_CHILDREN);
    CHECK(children0 == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        burn(30);
        pid_t grandchild = fork();
        CHECK(grandchild >= 0);
        if (grandchild == 0) {
            burn(40);
            _exit(0);
        }
        CHECK(waitpid(grandchild, NULL, 0) == grandchild);
        CHECK(cpu_us(RUSAGE_CHILDREN) >= 38000);
        _exit(0);
    }
    /* Not yet reaped: nothing counts. */
    CHECK(waitid(P_PID, pid, &(siginfo_t){0}, WEXITED | WNOWAIT) == 0);
    CHECK(cpu_us(RUSAGE_CHILDREN) == 0);
    struct rusage ru;
    int st;
    CHECK(wait4(pid, &st, 0, &ru) == pid && st == 0);
    long long reaped = us(&ru.ru_utime) + us(&ru.ru_stime);
    CHECK(reaped >= 68000);
    long long children1 = cpu_us(RUSAGE_CHILDREN);
    CHECK(children1 - children0 >= reaped - 1000 && children1 - children0 <= reaped + 1000);
    CHECK(cpu_us(RUSAGE_SELF) < self2 + 60000);
    printf("children counted\n");

    /* times() in clock ticks, between the getrusage readings around it. */
    long long before = cpu_us(RUSAGE_SELF);
    struct tms tms;
    clock_t t0 = times(&tms);
    long long after = cpu_us(RUSAGE_SELF);
    long long tms_self = ticks_us(tms.tms_utime + tms.tms_stime);
    CHECK(tms_self >= before - 20000 && tms_self <= after + 20000);
    long long tms_children = ticks_us(tms.tms_cutime + tms.tms_cstime);
    CHECK(tms_children >= children1 - 20000 && tms_children <= children1 + 20000);
    struct timespec nap = {0, 50000000};
    CHECK(nanosleep(&nap, NULL) == 0);
    long t1 = syscall(SYS_times, NULL);
    CHECK(t1 - (long)t0 >= 4 && t1 - (long)t0 < 1000);
    CHECK_ERR(syscall(SYS_times, BAD_PTR), EFAULT);
    printf("times agrees\n");

    /* ru_maxrss, in KiB, grows with touched memory and stays at its peak. */
    long rss0 = maxrss(RUSAGE_SELF);
    CHECK(rss0 > 0);
    CHECK(maxrss(RUSAGE_THREAD) > 0);
    size_t len = 16 << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    for (size_t i = 0; i < len; i += 4096) p[i] = 1;
    long rss1 = maxrss(RUSAGE_SELF);
    CHECK(rss1 >= rss0 + 8192);
    CHECK(munmap(p, len) == 0);
    CHECK(maxrss(RUSAGE_SELF) >= rss1);
    printf("maxrss grows\n");

    CHECK_ERR(getrusage(2, &ru), EINVAL);
    CHECK_ERR(getrusage(-2, &ru), EINVAL);
    CHECK_ERR(syscall(SYS_getrusage, RUSAGE_SELF, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_getrusage, RUSAGE_CHILDREN, NULL), EFAULT);
    printf("rusage ok\n");
    return 0;
}
