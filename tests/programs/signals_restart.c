// Interrupted system calls: a blocking pipe read fails with EINTR when the handler lacks
// SA_RESTART and restarts transparently with it (and so does wait4); nanosleep,
// clock_nanosleep and poll fail with EINTR even with SA_RESTART, nanosleep reporting the
// time left; alarm() and ITIMER_REAL (one-shot and periodic) deliver SIGALRM from the kernel.
//
// No sleeps decide the outcome: a helper child sends the signal again every 20 ms until told
// to stop, so the call is interrupted even if the first signal lands before it blocks; where a
// call must restart, the writer child sends its signals, waits until each has been handled,
// and only then writes.
#include "check.h"
#include <poll.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static volatile int handled;
static int ack_fd = -1; /* when set, the handler writes a byte there */

static void handler(int sig) {
    (void)sig;
    handled++;
    if (ack_fd >= 0) {
        int saved = errno;
        (void)!write(ack_fd, "h", 1);
        errno = saved;
    }
}

static void install(int restart) {
    struct sigaction sa = {0};
    sa.sa_handler = handler;
    sa.sa_flags = restart ? SA_RESTART : 0;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

/* A child that sends SIGUSR1 to us every 20 ms (for at most 10 s) until we close *stop. */
static pid_t start_pinger(int *stop) {
    int s[2];
    CHECK(pipe(s) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(s[1]);
        struct pollfd pfd = {s[0], POLLIN, 0};
        for (int i = 0; i < 500; i++) {
            kill(parent, SIGUSR1);
            if (poll(&pfd, 1, 20) != 0)
                break;
        }
        _exit(0);
    }
    close(s[0]);
    *stop = s[1];
    return pid;
}

static void stop_pinger(pid_t pid, int stop) {
    close(stop);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }
static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ns(&t);
}

static void pipe_read(void) {
    int p[2], stop;
    char buf[16];
    CHECK(pipe(p) == 0);
    /* Without SA_RESTART: EINTR. The pipe has a writer (us), so the read would block forever. */
    install(0);
    handled = 0;
    pid_t pinger = start_pinger(&stop);
    CHECK_ERR(read(p[0], buf, sizeof buf), EINTR);
    stop_pinger(pinger, stop);
    CHECK(handled >= 1);
    printf("read without SA_RESTART: EINTR\n");

    /* With SA_RESTART: the child signals three times, waiting for each handler to run, then
     * writes; the read returns the data as if nothing had happened. */
    install(1);
    handled = 0;
    int ack[2];
    CHECK(pipe(ack) == 0);
    ack_fd = ack[1];
    pid_t parent = getpid();
    pid_t writer = fork();
    CHECK(writer >= 0);
    if (writer == 0) {
        close(p[0]);
        close(ack[1]);
        char c;
        for (int i = 0; i < 3; i++) {
            CHECK(kill(parent, SIGUSR1) == 0);
            CHECK(read(ack[0], &c, 1) == 1);
        }
        CHECK(write(p[1], "data", 4) == 4);
        _exit(0);
    }
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "data", 4) == 0);
    CHECK(handled == 3);
    int st;
    CHECK(waitpid(writer, &st, 0) == writer && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("read with SA_RESTART: restarted, data after 3 handled signals\n");

    /* wait4 restarts too: the child we wait for signals us three times before exiting. */
    handled = 0;
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(ack[1]);
        char c;
        for (int i = 0; i < 3; i++) {
            CHECK(kill(parent, SIGUSR1) == 0);
            CHECK(read(ack[0], &c, 1) == 1);
        }
        _exit(9);
    }
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 9);
    CHECK(handled == 3);
    ack_fd = -1;
    close(ack[0]);
    close(ack[1]);
    close(p[0]);
    close(p[1]);
    printf("wait4 with SA_RESTART: restarted\n");
}

static void sleeps(void) {
    install(1); /* SA_RESTART does not apply to sleeps or poll */
    int stop;
    handled = 0;
    struct timespec ten = {10, 0}, rem = {-1, -1};
    long long t0 = now_ns();
    pid_t pinger = start_pinger(&stop);
    CHECK_ERR(nanosleep(&ten, &rem), EINTR);
    long long elapsed = now_ns() - t0;
    stop_pinger(pinger, stop);
    CHECK(handled >= 1);
    /* The time left plus the time slept is at least the 10 s asked for. Linux counts the time
     * left to the timer's latest expiry, which includes the thread's timer slack (50 us by
     * default), so the time left may exceed 10 s by that much when interrupted at once. */
    CHECK(rem.tv_sec >= 0 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000);
    CHECK(ns(&rem) > 5000000000LL && ns(&rem) < 10500000000LL);
    CHECK(ns(&rem) + elapsed >= 10000000000LL && ns(&rem) + elapsed < 11000000000LL);
    printf("nanosleep: EINTR with SA_RESTART, time left reported\n");

    /* clock_nanosleep returns the error rather than setting errno. */
    pinger = start_pinger(&stop);
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &ten, &rem) == EINTR);
    stop_pinger(pinger, stop);
    CHECK(ns(&rem) > 5000000000LL && ns(&rem) < 10500000000LL);
    /* With TIMER_ABSTIME nothing is written to the remaining time. */
    struct timespec deadline, untouched = {123, 456};
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 10;
    pinger = start_pinger(&stop);
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, &untouched) == EINTR);
    stop_pinger(pinger, stop);
    CHECK(untouched.tv_sec == 123 && untouched.tv_nsec == 456);
    printf("clock_nanosleep: EINTR returned, relative and absolute\n");

    int p[2];
    CHECK(pipe(p) == 0);
    struct pollfd pfd = {p[0], POLLIN, 0};
    pinger = start_pinger(&stop);
    CHECK_ERR(poll(&pfd, 1, -1), EINTR);
    stop_pinger(pinger, stop);
    close(p[0]);
    close(p[1]);
    printf("poll: EINTR with SA_RESTART\n");
}

static void alarms(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    /* alarm returns the seconds left of the previous alarm, rounded, and shares the timer
     * with ITIMER_REAL. */
    CHECK(alarm(10) == 0);
    struct itimerval it;
    CHECK(getitimer(ITIMER_REAL, &it) == 0);
    CHECK(it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == 0);
    long long left = it.it_value.tv_sec * 1000000LL + it.it_value.tv_usec;
    CHECK(left > 9000000 && left <= 10000000);
    CHECK(alarm(0) == 10);
    CHECK(getitimer(ITIMER_REAL, &it) == 0 && it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0);
    /* A 1 s alarm: SIGALRM from the kernel, not before the second is up. */
    long long t0 = now_ns();
    CHECK(alarm(1) == 0);
    siginfo_t si;
    CHECK(sigwaitinfo(&set, &si) == SIGALRM && si.si_code == SI_KERNEL);
    CHECK(now_ns() - t0 >= 1000000000LL);
    printf("alarm: remaining seconds, SIGALRM with SI_KERNEL after 1 s\n");

    /* ITIMER_REAL, 20 ms periodic: three expirations, then disarmed. */
    struct itimerval period = {{0, 20000}, {0, 20000}}, off = {{0, 0}, {0, 0}}, old;
    t0 = now_ns();
    CHECK(setitimer(ITIMER_REAL, &period, NULL) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(sigwaitinfo(&set, &si) == SIGALRM && si.si_code == SI_KERNEL);
    CHECK(now_ns() - t0 >= 60000000LL);
    CHECK(getitimer(ITIMER_REAL, &it) == 0);
    CHECK(it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == 20000);
    CHECK(it.it_value.tv_sec == 0 && it.it_value.tv_usec <= 20000);
    CHECK(setitimer(ITIMER_REAL, &off, &old) == 0);
    CHECK(old.it_interval.tv_sec == 0 && old.it_interval.tv_usec == 20000);
    CHECK(getitimer(ITIMER_REAL, &it) == 0 && it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, &si, &zero) == SIGALRM) {
    } /* an expiry may have come in between */
    CHECK(errno == EAGAIN);
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    CHECK_ERR(setitimer(ITIMER_REAL, &bad, NULL), EINVAL);
    CHECK_ERR(setitimer((__itimer_which_t)5, &period, NULL), EINVAL);
    CHECK_ERR(getitimer((__itimer_which_t)5, &it), EINVAL);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    printf("setitimer: periodic ITIMER_REAL, getitimer, disarm, EINVAL\n");
}

int main(void) {
    pipe_read();
    sleeps();
    alarms();
    return 0;
}
