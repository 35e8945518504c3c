// ITIMER_VIRTUAL and ITIMER_PROF: armed timers read back (left no more than set plus a tick,
// the interval as set), setitimer returns the old setting, CPU-bound work brings SIGVTALRM and
// SIGPROF again and again with an interval, sleeping brings none, and disarming stops them.
#include "check.h"
#include <signal.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t vt, prof;
static void on_vt(int s) { (void)s; vt++; }
static void on_prof(int s) { (void)s; prof++; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Burn CPU until `cond` holds or 10 s pass; returns whether it held. */
static int spin_until(volatile sig_atomic_t *counter, int want) {
    double end = now() + 10;
    volatile unsigned long x = 0;
    while (*counter < want && now() < end)
        for (int i = 0; i < 100000; i++)
            x += i;
    return *counter >= want;
}

int main(void) {
    CHECK(signal(SIGVTALRM, on_vt) != SIG_ERR && signal(SIGPROF, on_prof) != SIG_ERR);
    struct itimerval set = {{0, 20000}, {0, 30000}}, got, old;
    CHECK(setitimer(ITIMER_VIRTUAL, &set, &old) == 0);
    CHECK(old.it_value.tv_sec == 0 && old.it_value.tv_usec == 0);
    CHECK(getitimer(ITIMER_VIRTUAL, &got) == 0);
    CHECK(got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 20000);
    /* Linux adds a scheduler tick (1-10 ms) to the value so it never fires early. */
    CHECK(got.it_value.tv_sec == 0 && got.it_value.tv_usec > 0 && got.it_value.tv_usec <= 40000);
    CHECK(spin_until(&vt, 3));

    /* Sleeping uses no CPU time: the timer stays quiet. */
    struct itimerval off = {{0, 0}, {0, 0}};
    set.it_interval.tv_usec = 0;
    set.it_value.tv_usec = 50000;
    CHECK(setitimer(ITIMER_VIRTUAL, &set, &old) == 0);
    CHECK(old.it_interval.tv_usec == 20000);
    int before = vt;
    usleep(200 * 1000);
    CHECK(vt == before);
    CHECK(setitimer(ITIMER_VIRTUAL, &off, &old) == 0);
    CHECK(old.it_value.tv_usec > 0 && old.it_interval.tv_usec == 0);
    CHECK(getitimer(ITIMER_VIRTUAL, &got) == 0 && got.it_value.tv_usec == 0 && got.it_value.tv_sec == 0);

    struct itimerval p = {{0, 10000}, {0, 10000}};
    CHECK(setitimer(ITIMER_PROF, &p, NULL) == 0);
    CHECK(spin_until(&prof, 4));
    CHECK(setitimer(ITIMER_PROF, &off, NULL) == 0);
    /* Disarmed: no more signals (one already on its way may still arrive). */
    int after = prof;
    double end = now() + 0.3;
    volatile unsigned long x = 0;
    while (now() < end)
        x++;
    CHECK(prof <= after + 1);

    /* Bad values. */
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    CHECK_ERR(setitimer(ITIMER_PROF, &bad, NULL), EINVAL);
    CHECK_ERR(setitimer(7, &p, NULL), EINVAL);
    CHECK_ERR(getitimer(7, &got), EINVAL);
    printf("cpu timers ok\n");
    return 0;
}
