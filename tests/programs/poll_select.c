// Readiness: poll, ppoll, select and pselect on pipes (readable after a write, POLLHUP once the
// writers are gone, POLLERR on a write end without readers, POLLNVAL, timeouts of 0 and 20 ms,
// the signal mask of ppoll/pselect); epoll level-triggered, EPOLLET, EPOLLONESHOT, EPOLLHUP,
// registrations following the open file description, and epoll_ctl's errors; eventfd
// (counter, EFD_SEMAPHORE, EAGAIN, overflow); timerfd (settime/gettime, expirations,
// non-blocking EAGAIN).
#include "check.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/timerfd.h>
#include <time.h>

static long long mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static short revents(int fd, short events) {
    struct pollfd p = {fd, events, 0};
    CHECK(poll(&p, 1, 0) >= 0);
    return p.revents;
}

static volatile int usr1;
static void on_usr1(int sig) {
    (void)sig;
    usr1++;
}

static void poll_pipes(void) {
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0);
    CHECK(revents(p[0], POLLIN) == 0);
    CHECK(revents(p[1], POLLOUT) == POLLOUT);
    CHECK(revents(p[1], POLLIN) == 0); /* only what was asked for (and errors) is reported */
    long long t0 = mono_ns();
    struct pollfd pf = {p[0], POLLIN, 0};
    CHECK(poll(&pf, 1, 20) == 0 && pf.revents == 0);
    CHECK(mono_ns() - t0 >= 20 * 1000 * 1000);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(revents(p[0], POLLIN) == POLLIN);
    CHECK(revents(p[0], POLLIN | POLLRDNORM) == (POLLIN | POLLRDNORM));
    /* Writers gone: POLLHUP, with POLLIN while data remains, even if not asked for. */
    close(p[1]);
    CHECK(revents(p[0], POLLIN) == (POLLIN | POLLHUP));
    CHECK(revents(p[0], 0) == POLLHUP);
    CHECK(read(p[0], buf, sizeof buf) == 1);
    CHECK(revents(p[0], POLLIN) == POLLHUP);
    close(p[0]);
    /* Readers gone: the write end reports POLLERR (and is still writable, to EPIPE). */
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK(revents(p[1], POLLOUT) == (POLLOUT | POLLERR));
    /* Closed and negative descriptors. */
    struct pollfd set[3] = {{p[1], POLLOUT, 0}, {-1, POLLIN, 0}, {p[1] + 100, POLLIN, 0}};
    CHECK(poll(set, 3, 0) == 2);
    CHECK(set[0].revents == (POLLOUT | POLLERR) && set[1].revents == 0 && set[2].revents == POLLNVAL);
    close(p[1]);
    CHECK_ERR(syscall(SYS_poll, BAD_PTR, 1, 0), EFAULT);
    CHECK_ERR(syscall(SYS_poll, set, 1 << 30, 0), EINVAL); /* more than RLIMIT_NOFILE */
    printf("poll: POLLIN, POLLOUT, POLLHUP, POLLERR, POLLNVAL, timeouts\n");

    /* ppoll: the mask it installs lets a pending signal in, then it is blocked again. */
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    sigset_t block, none, cur;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigemptyset(&none);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    CHECK(pipe(p) == 0);
    struct pollfd q = {p[0], POLLIN, 0};
    struct timespec zero = {0, 0}, ten = {10, 0};
    CHECK(ppoll(&q, 1, &zero, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0 && usr1 == 0);
    CHECK_ERR(ppoll(&q, 1, &ten, &none), EINTR);
    CHECK(usr1 == 1);
    CHECK(sigprocmask(SIG_SETMASK, NULL, &cur) == 0 && sigismember(&cur, SIGUSR1));
    /* With the signal still blocked in ppoll's mask, readiness wins. */
    CHECK(write(p[1], "y", 1) == 1);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(ppoll(&q, 1, &ten, &block) == 1 && q.revents == POLLIN && usr1 == 1);
    CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0 && usr1 == 2);
    printf("ppoll: temporary mask, EINTR\n");

    /* select: sets are rewritten to the ready descriptors, the timeout to the time left. */
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_SET(p[0], &rd);
    FD_SET(p[1], &wr);
    struct timeval tv = {5, 0};
    CHECK(select(p[1] + 1, &rd, &wr, NULL, &tv) == 2 && FD_ISSET(p[0], &rd) && FD_ISSET(p[1], &wr));
    CHECK(read(p[0], buf, sizeof buf) == 1);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    tv.tv_sec = 0;
    tv.tv_usec = 20000;
    t0 = mono_ns();
    CHECK(select(p[0] + 1, &rd, NULL, NULL, &tv) == 0 && !FD_ISSET(p[0], &rd));
    CHECK(mono_ns() - t0 >= 20 * 1000 * 1000);
    CHECK(tv.tv_sec == 0 && tv.tv_usec == 0);
    FD_ZERO(&rd);
    FD_SET(p[1] + 10, &rd);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    CHECK_ERR(select(p[1] + 11, &rd, NULL, NULL, &tv), EBADF);
    CHECK_ERR(select(-1, NULL, NULL, NULL, &tv), EINVAL);
    tv.tv_sec = -1;
    CHECK_ERR(select(0, NULL, NULL, NULL, &tv), EINVAL);
    /* pselect: the same temporary mask as ppoll. */
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    CHECK_ERR(pselect(p[0] + 1, &rd, NULL, NULL, &ten, &none), EINTR);
    CHECK(usr1 == 3);
    CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0);
    close(p[1]);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    CHECK(pselect(p[0] + 1, &rd, NULL, NULL, &ten, NULL) == 1 && FD_ISSET(p[0], &rd)); /* EOF */
    close(p[0]);
    printf("select/pselect: ready sets, time left, EBADF, EINVAL, temporary mask\n");
}

static int wait_events(int ep, struct epoll_event *ev, int max) { return epoll_wait(ep, ev, max, 0); }

static void epoll(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0 && fcntl(ep, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(epoll_create1(1), EINVAL);
    CHECK_ERR(epoll_create(0), EINVAL);
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ull}, out[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
    CHECK(wait_events(ep, out, 4) == 0);
    /* Level-triggered: reported as long as the data is there. */
    CHECK(write(p[1], "ab", 2) == 2);
    CHECK(wait_events(ep, out, 4) == 1 && out[0].events == EPOLLIN);
    CHECK(out[0].data.u64 == 0x1122334455667788ull);
    CHECK(wait_events(ep, out, 4) == 1);
    CHECK(read(p[0], buf, 2) == 2);
    CHECK(wait_events(ep, out, 4) == 0);
    /* Edge-triggered: once per new write. */
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 2;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    CHECK(write(p[1], "c", 1) == 1);
    CHECK(wait_events(ep, out, 4) == 1 && out[0].data.u64 == 2);
    CHECK(wait_events(ep, out, 4) == 0);
    CHECK(write(p[1], "d", 1) == 1);
    CHECK(wait_events(ep, out, 4) == 1);
    CHECK(wait_events(ep, out, 4) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 2);
    /* One-shot: reported once, then disabled until re-armed with MOD. */
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = 3;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    CHECK(write(p[1], "e", 1) == 1);
    CHECK(wait_events(ep, out, 4) == 1 && out[0].data.u64 == 3);
    CHECK(wait_events(ep, out, 4) == 0);
    CHECK(write(p[1], "f", 1) == 1);
    CHECK(wait_events(ep, out, 4) == 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    CHECK(wait_events(ep, out, 4) == 1);
    CHECK(read(p[0], buf, sizeof buf) == 2);
    /* The write end too, and EPOLLHUP on the read end once the writer is gone. */
    ev.events = EPOLLIN;
    ev.data.u64 = 4;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    struct epoll_event wev = {.events = EPOLLOUT, .data.u64 = 5};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &wev) == 0);
    CHECK(wait_events(ep, out, 4) == 1 && out[0].data.u64 == 5 && out[0].events == EPOLLOUT);
    close(p[1]); /* also drops its registration: the last reference to that description */
    CHECK(wait_events(ep, out, 4) == 1 && out[0].data.u64 == 4 && out[0].events == EPOLLHUP);
    close(p[0]);
    CHECK(wait_events(ep, out, 4) == 0);
    printf("epoll: level, edge, one-shot, EPOLLOUT, EPOLLHUP\n");

    /* A registration belongs to the open file description: a dup keeps it alive. */
    CHECK(pipe(p) == 0);
    ev.events = EPOLLIN;
    ev.data.u64 = 6;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
    int dup_fd = dup(p[0]);
    close(p[0]);
    CHECK(write(p[1], "g", 1) == 1);
    CHECK(wait_events(ep, out, 4) == 1 && out[0].data.u64 == 6);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), EBADF); /* that number is closed */
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, dup_fd, NULL), ENOENT); /* registered under p[0] */
    close(dup_fd);
    CHECK(wait_events(ep, out, 4) == 0);

    /* Errors. */
    CHECK(pipe(p) == 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), EEXIST);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev), ENOENT);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL), ENOENT);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[1] + 100, &ev), EBADF);
    CHECK_ERR(epoll_ctl(p[1] + 100, EPOLL_CTL_ADD, p[0], &ev), EBADF);
    CHECK_ERR(epoll_ctl(p[1], EPOLL_CTL_ADD, p[0], &ev), EINVAL); /* not an epoll fd */
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), EINVAL);     /* itself */
    CHECK_ERR(epoll_ctl(ep, 99, p[0], &ev), EINVAL);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], BAD_PTR), EFAULT);
    int file = open("regular", O_CREAT | O_RDWR, 0644);
    CHECK(file >= 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, file, &ev), EPERM); /* files are always ready */
    close(file);
    CHECK_ERR(epoll_wait(ep, out, 0, 0), EINVAL);
    CHECK_ERR(epoll_wait(p[0], out, 4, 0), EINVAL);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), ENOENT);
    close(p[0]);
    close(p[1]);
    close(ep);
    printf("epoll: registrations follow the description; EEXIST, ENOENT, EBADF, EINVAL, EPERM\n");
}

static void eventfds(void) {
    uint64_t v;
    int fd = eventfd(3, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(fd >= 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
    CHECK(revents(fd, POLLIN | POLLOUT) == (POLLIN | POLLOUT));
    CHECK(read(fd, &v, sizeof v) == 8 && v == 3);
    CHECK_ERR(read(fd, &v, sizeof v), EAGAIN);
    CHECK(revents(fd, POLLIN | POLLOUT) == POLLOUT);
    v = 5;
    CHECK(write(fd, &v, 8) == 8 && write(fd, &v, 8) == 8);
    CHECK(read(fd, &v, sizeof v) == 8 && v == 10);
    CHECK_ERR(read(fd, &v, 4), EINVAL);
    v = UINT64_MAX;
    CHECK_ERR(write(fd, &v, 8), EINVAL);
    CHECK_ERR(write(fd, &v, 4), EINVAL);
    /* The counter holds at most 2^64 - 2. */
    v = UINT64_MAX - 1;
    CHECK(write(fd, &v, 8) == 8);
    CHECK(revents(fd, POLLIN | POLLOUT) == POLLIN);
    v = 1;
    CHECK_ERR(write(fd, &v, 8), EAGAIN);
    CHECK(read(fd, &v, sizeof v) == 8 && v == UINT64_MAX - 1);
    close(fd);
    /* EFD_SEMAPHORE: each read takes one. */
    fd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    CHECK(fd >= 0);
    for (int i = 0; i < 3; i++)
        CHECK(read(fd, &v, sizeof v) == 8 && v == 1);
    CHECK_ERR(read(fd, &v, sizeof v), EAGAIN);
    close(fd);
    CHECK_ERR(eventfd(0, 0x12345), EINVAL);
    printf("eventfd: counter, semaphore, EAGAIN, overflow, EINVAL\n");
}

static void timerfds(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(fd >= 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
    uint64_t n;
    struct itimerspec cur, old;
    CHECK_ERR(read(fd, &n, sizeof n), EAGAIN); /* not armed */
    CHECK(timerfd_gettime(fd, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    /* gettime reports the time left (a long timer, so that it cannot expire meanwhile). */
    struct itimerspec ten = {{0, 0}, {10, 0}};
    CHECK(timerfd_settime(fd, 0, &ten, NULL) == 0);
    CHECK(timerfd_gettime(fd, &cur) == 0);
    CHECK(cur.it_value.tv_sec == 9 || (cur.it_value.tv_sec == 10 && cur.it_value.tv_nsec == 0));
    CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 0);
    /* One-shot, 10 ms: replaces the setting. */
    struct itimerspec once = {{0, 0}, {0, 10 * 1000 * 1000}};
    long long t0 = mono_ns();
    CHECK(timerfd_settime(fd, 0, &once, &old) == 0);
    CHECK(old.it_value.tv_sec == 9 || (old.it_value.tv_sec == 10 && old.it_value.tv_nsec == 0));
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 5000) == 1 && p.revents == POLLIN);
    CHECK(mono_ns() - t0 >= 10 * 1000 * 1000);
    CHECK_ERR(read(fd, &n, 4), EINVAL);
    CHECK(read(fd, &n, sizeof n) == 8 && n == 1);
    CHECK_ERR(read(fd, &n, sizeof n), EAGAIN);
    CHECK(timerfd_gettime(fd, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    /* Periodic; reading takes all the expirations so far; disarming reports the old setting. */
    struct itimerspec every = {{0, 5 * 1000 * 1000}, {0, 5 * 1000 * 1000}}, off = {{0, 0}, {0, 0}};
    CHECK(timerfd_settime(fd, 0, &every, NULL) == 0);
    CHECK(poll(&p, 1, 5000) == 1);
    CHECK(read(fd, &n, sizeof n) == 8 && n >= 1);
    CHECK(timerfd_settime(fd, 0, &off, &old) == 0);
    CHECK(old.it_interval.tv_sec == 0 && old.it_interval.tv_nsec == 5 * 1000 * 1000);
    CHECK_ERR(read(fd, &n, sizeof n), EAGAIN);
    /* An absolute time already past expires at once. */
    struct itimerspec past = {{0, 0}, {0, 1}};
    CHECK(timerfd_settime(fd, TFD_TIMER_ABSTIME, &past, NULL) == 0);
    CHECK(poll(&p, 1, 5000) == 1 && read(fd, &n, sizeof n) == 8 && n == 1);
    close(fd);
    /* A blocking read waits for the expiry. */
    fd = timerfd_create(CLOCK_MONOTONIC, 0);
    CHECK(fd >= 0);
    t0 = mono_ns();
    CHECK(timerfd_settime(fd, 0, &once, NULL) == 0);
    CHECK(read(fd, &n, sizeof n) == 8 && n == 1);
    CHECK(mono_ns() - t0 >= 10 * 1000 * 1000);
    struct itimerspec bad = {{0, 0}, {0, 1000000000}};
    CHECK_ERR(timerfd_settime(fd, 0, &bad, NULL), EINVAL);
    CHECK_ERR(timerfd_settime(fd, 0x100, &once, NULL), EINVAL);
    close(fd);
    CHECK_ERR(timerfd_create(12345, 0), EINVAL);
    CHECK_ERR(timerfd_create(CLOCK_MONOTONIC, 0x1), EINVAL);
    printf("timerfd: one-shot, periodic, absolute, gettime, EAGAIN, EINVAL\n");
}

int main(void) {
    poll_pipes();
    epoll();
    eventfds();
    timerfds();
    return 0;
}
