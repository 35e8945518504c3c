// Pipes: pipe2 flags, non-blocking EAGAIN when empty or full, partial non-blocking writes,
// EOF once the writers are gone, EPIPE and SIGPIPE (ignored, blocked, default in a child),
// the pipe size (F_GETPIPE_SZ/F_SETPIPE_SZ), FIONREAD, O_DIRECT packets, a 1000-round
// ping-pong between parent and child, and PIPE_BUF atomicity with several writer children.
#include "check.h"
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#define WRITERS 4
#define RECORDS 64

static void flags_and_errors(void) {
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    CHECK(fcntl(p[0], F_GETFD) == FD_CLOEXEC && fcntl(p[1], F_GETFD) == FD_CLOEXEC);
    int fl0 = fcntl(p[0], F_GETFL), fl1 = fcntl(p[1], F_GETFL);
    CHECK((fl0 & O_ACCMODE) == O_RDONLY && (fl1 & O_ACCMODE) == O_WRONLY);
    CHECK((fl0 & O_NONBLOCK) && (fl1 & O_NONBLOCK));
    close(p[0]);
    close(p[1]);
    CHECK(pipe2(p, 0) == 0);
    CHECK(fcntl(p[0], F_GETFD) == 0 && !(fcntl(p[1], F_GETFL) & O_NONBLOCK));
    /* Each end works in one direction only. */
    char c = 'x';
    CHECK_ERR(write(p[0], &c, 1), EBADF);
    CHECK_ERR(read(p[1], &c, 1), EBADF);
    CHECK_ERR(lseek(p[0], 0, SEEK_SET), ESPIPE);
    CHECK_ERR(pwrite(p[1], &c, 1, 0), ESPIPE);
    close(p[0]);
    close(p[1]);
    CHECK_ERR(pipe2(p, O_APPEND), EINVAL);
    CHECK_ERR(syscall(SYS_pipe2, BAD_PTR, 0), EFAULT);
    printf("pipe2: flags, directions, errors\n");
}

static void nonblocking_and_size(void) {
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    char buf[4096];
    memset(buf, 'a', sizeof buf);
    CHECK_ERR(read(p[0], buf, 1), EAGAIN); /* empty, a writer exists */
    CHECK(fcntl(p[0], F_GETPIPE_SZ) == 65536 && fcntl(p[1], F_GETPIPE_SZ) == 65536);
    /* Fill it with page-sized writes: exactly 64 KiB fit, then even one byte must wait. */
    long total = 0;
    ssize_t n;
    while ((n = write(p[1], buf, sizeof buf)) > 0)
        total += n;
    CHECK(n == -1 && errno == EAGAIN && total == 65536);
    CHECK_ERR(write(p[1], buf, 1), EAGAIN);
    int avail = -1;
    CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 65536);
    /* Shrinking below what it holds is refused. */
    CHECK_ERR(fcntl(p[1], F_SETPIPE_SZ, 4096), EBUSY);
    while (read(p[0], buf, sizeof buf) > 0) {
    }
    CHECK(errno == EAGAIN);
    /* A non-blocking write larger than the pipe writes what fits. */
    static char large[100000];
    CHECK(write(p[1], large, sizeof large) == 65536);
    while (read(p[0], buf, sizeof buf) > 0) {
    }
    /* Sizes are rounded up to a power-of-two number of pages, at least one page. */
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 100000) == 131072);
    CHECK(fcntl(p[0], F_GETPIPE_SZ) == 131072);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 0) == 4096);
    CHECK(write(p[1], buf, 4096) == 4096);
    CHECK_ERR(write(p[1], buf, 1), EAGAIN);
    CHECK(read(p[0], buf, sizeof buf) == 4096);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 65536) == 65536);
    CHECK_ERR(fcntl(1 + p[1] + 10, F_GETPIPE_SZ), EBADF);
    int file = open("plain", O_CREAT | O_RDWR, 0644);
    CHECK(file >= 0);
    CHECK_ERR(fcntl(file, F_GETPIPE_SZ), EBADF); /* not a pipe */
    close(file);
    /* FIONREAD counts bytes, across writes. */
    CHECK(write(p[1], "hello", 5) == 5 && write(p[1], " world", 6) == 6);
    CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 11);
    CHECK(read(p[0], buf, 3) == 3);
    CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 8);
    /* EOF: remaining data first, then 0, even non-blocking. */
    close(p[1]);
    CHECK(read(p[0], buf, sizeof buf) == 8 && memcmp(buf, "lo world", 8) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    close(p[0]);
    printf("non-blocking: EAGAIN empty and full, 64 KiB default, F_SETPIPE_SZ, FIONREAD, EOF\n");
}

static void packets(void) {
    int p[2];
    CHECK(pipe2(p, O_DIRECT) == 0);
    CHECK(write(p[1], "0123456789", 10) == 10);
    CHECK(write(p[1], "abcdefghijklmnopqrst", 20) == 20);
    char buf[100];
    CHECK(read(p[0], buf, sizeof buf) == 10 && memcmp(buf, "0123456789", 10) == 0);
    /* A short read of a packet discards its rest. */
    CHECK(read(p[0], buf, 5) == 5 && memcmp(buf, "abcde", 5) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(read(p[0], buf, sizeof buf) == 1 && buf[0] == 'x');
    close(p[0]);
    close(p[1]);
    printf("O_DIRECT: one read per packet\n");
}

static void broken_pipe(void) {
    int p[2];
    char c = 'x';
    /* Ignored SIGPIPE: EPIPE. */
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
    CHECK_ERR(write(p[1], &c, 1), EPIPE);
    /* Blocked SIGPIPE: EPIPE, and the signal is left pending, sent by the writer itself. */
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    CHECK_ERR(write(p[1], &c, 1), EPIPE);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE));
    siginfo_t si;
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&set, &si, &zero) == SIGPIPE);
    CHECK(si.si_code == SI_USER && si.si_pid == getpid());
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    close(p[1]);
    /* Default SIGPIPE: the writer (a child) is killed. */
    CHECK(pipe(p) == 0);
    close(p[0]);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        (void)write(p[1], &c, 1);
        _exit(1);
    }
    close(p[1]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE);
    printf("no readers: EPIPE when ignored or blocked, killed by SIGPIPE by default\n");
}

static void ping_pong(void) {
    int down[2], up[2];
    CHECK(pipe(down) == 0 && pipe(up) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        unsigned v;
        ssize_t n;
        while ((n = read(down[0], &v, sizeof v)) == sizeof v) {
            v++;
            CHECK(write(up[1], &v, sizeof v) == sizeof v);
        }
        _exit(n == 0 ? 0 : 1);
    }
    close(down[0]);
    close(up[1]);
    unsigned v = 0;
    for (int i = 0; i < 1000; i++) {
        unsigned sent = v + 1;
        CHECK(write(down[1], &sent, sizeof sent) == sizeof sent);
        CHECK(read(up[0], &v, sizeof v) == sizeof v && v == sent + 1);
    }
    close(down[1]);
    char c;
    CHECK(read(up[0], &c, 1) == 0); /* the child has gone */
    close(up[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("ping-pong: 1000 rounds, final %u\n", v);
}

/* WRITERS children each write RECORDS records of PIPE_BUF bytes; writes of at most PIPE_BUF
 * bytes are atomic, so the reader, reading in odd-sized pieces, finds whole records, each
 * writer's in order. */
static void atomic_records(void) {
    CHECK(PIPE_BUF == 4096);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        kids[w] = fork();
        CHECK(kids[w] >= 0);
        if (kids[w] == 0) {
            close(p[0]);
            unsigned char rec[PIPE_BUF];
            for (int r = 0; r < RECORDS; r++) {
                rec[0] = (unsigned char)w;
                rec[1] = (unsigned char)r;
                memset(rec + 2, (w * 64 + r) & 0xff, sizeof rec - 2);
                CHECK(write(p[1], rec, sizeof rec) == sizeof rec);
            }
            _exit(0);
        }
    }
    close(p[1]);
    static unsigned char stream[WRITERS * RECORDS * PIPE_BUF + 1];
    size_t total = 0;
    ssize_t n;
    while ((n = read(p[0], stream + total, total + 1000 <= sizeof stream ? 1000 : sizeof stream - total)) > 0)
        total += n;
    CHECK(n == 0 && total == WRITERS * RECORDS * PIPE_BUF);
    close(p[0]);
    int next[WRITERS] = {0};
    for (size_t off = 0; off < total; off += PIPE_BUF) {
        unsigned char *rec = stream + off;
        int w = rec[0], r = rec[1];
        CHECK(w < WRITERS && r == next[w]);
        next[w]++;
        for (size_t i = 2; i < PIPE_BUF; i++)
            CHECK(rec[i] == ((w * 64 + r) & 0xff));
    }
    for (int w = 0; w < WRITERS; w++) {
        int st;
        CHECK(next[w] == RECORDS);
        CHECK(waitpid(kids[w], &st, 0) == kids[w] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    printf("PIPE_BUF: %d writers x %d records, none interleaved\n", WRITERS, RECORDS);
}

int main(void) {
    flags_and_errors();
    nonblocking_and_size();
    packets();
    broken_pipe();
    ping_pong();
    atomic_records();
    return 0;
}
