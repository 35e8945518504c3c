// signalfd (blocked signals read as records, poll wakes), POSIX timers (SIGEV_SIGNAL with a
// value, SIGEV_THREAD_ID, SIGEV_NONE, gettime, delete, errors) and pidfds (poll at exit,
// pidfd_send_signal, waitid(P_PIDFD)).
#include "check.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static void signalfds(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK(fd >= 0);
    struct signalfd_siginfo si[4];
    CHECK_ERR(read(fd, si, sizeof si), EAGAIN);
    CHECK_ERR(read(fd, si, 8), EINVAL);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    union sigval v = {.sival_int = 42};
    CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
    CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 1000) == 1 && p.revents == POLLIN);
    ssize_t n = read(fd, si, sizeof si);
    CHECK(n == 3 * (ssize_t)sizeof si[0]);
    CHECK(si[0].ssi_signo == SIGUSR1 && si[0].ssi_code == SI_USER && si[0].ssi_pid == (uint32_t)getpid());
    CHECK(si[1].ssi_signo == (uint32_t)SIGRTMIN && si[1].ssi_code == SI_QUEUE && si[1].ssi_int == 42);
    CHECK(si[2].ssi_signo == (uint32_t)SIGRTMIN);
    CHECK_ERR(read(fd, si, sizeof si), EAGAIN);
    /* A child's signal wakes a blocking poll. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    CHECK(poll(&p, 1, 5000) == 1 && read(fd, si, sizeof si) == sizeof si[0]);
    CHECK(si[0].ssi_signo == SIGUSR1 && si[0].ssi_pid == (uint32_t)pid);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    /* Changing the mask of an existing signalfd; a non-signalfd is EINVAL. */
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, SIGUSR2);
    CHECK(signalfd(fd, &only, 0) == fd);
    CHECK_ERR(signalfd(0, &only, 0), EINVAL);
    close(fd);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    printf("signalfd: records, queued real-time signals, poll, a new mask\n");
}

static void timers(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 1;
    ev.sigev_value.sival_int = 7;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
    struct itimerspec ten = {{0, 0}, {10, 0}}, cur;
    CHECK(timer_settime(t, 0, &ten, NULL) == 0);
    CHECK(timer_gettime(t, &cur) == 0 && (cur.it_value.tv_sec == 9 || cur.it_value.tv_sec == 10));
    struct itimerspec soon = {{0, 0}, {0, 10 * 1000 * 1000}};
    CHECK(timer_settime(t, 0, &soon, NULL) == 0);
    siginfo_t si;
    CHECK(sigwaitinfo(&set, &si) == SIGRTMIN + 1);
    CHECK(si.si_code == SI_TIMER && si.si_value.sival_int == 7);
    CHECK(timer_gettime(t, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    CHECK(timer_getoverrun(t) == 0);
    CHECK(timer_delete(t) == 0);
    CHECK_ERR(timer_delete(t), EINVAL);
    /* SIGEV_NONE: nothing is sent, the time still runs out. */
    ev.sigev_notify = SIGEV_NONE;
    CHECK(timer_create(CLOCK_REALTIME, &ev, &t) == 0);
    CHECK(timer_settime(t, 0, &soon, NULL) == 0);
    usleep(30000);
    struct timespec zero = {0, 0};
    CHECK_ERR(sigtimedwait(&set, &si, &zero), EAGAIN);
    CHECK(timer_gettime(t, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    CHECK(timer_delete(t) == 0);
    /* Errors. */
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = 0;
    CHECK_ERR(timer_create(CLOCK_MONOTONIC, &ev, &t), EINVAL);
    ev.sigev_signo = SIGRTMIN + 1;
    CHECK_ERR(timer_create(12345, &ev, &t), EINVAL);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    printf("timers: SIGEV_SIGNAL with a value, SIGEV_NONE, gettime, delete, EINVAL\n");
}

static void pidfds(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(p[1]);
        (void)read(p[0], &c, 1);
        _exit(5);
    }
    close(p[0]);
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK(fd >= 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
    struct pollfd pf = {fd, POLLIN, 0};
    CHECK(poll(&pf, 1, 0) == 0);
    close(p[1]); /* the child exits */
    CHECK(poll(&pf, 1, 5000) == 1 && pf.revents == POLLIN);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PIDFD, fd, &si, WEXITED) == 0 && si.si_pid == pid && si.si_status == 5);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0), ESRCH);
    close(fd);
    /* A signal through a pidfd. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    fd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK(fd >= 0);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 8), EINVAL);
    CHECK(syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    close(fd);
    CHECK_ERR(syscall(SYS_pidfd_open, pid, 0), ESRCH);
    CHECK_ERR(syscall(SYS_pidfd_open, getpid(), 1), EINVAL);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, 0, SIGTERM, NULL, 0), EBADF);
    printf("pidfd: readable at exit, waitid(P_PIDFD), pidfd_send_signal, ESRCH, EINVAL, EBADF\n");
}

int main(void) {
    signalfds();
    timers();
    pidfds();
    return 0;
}
