// Advisory locks in one process: flock locks belong to open file descriptions, POSIX record
// locks to the process (never conflicting with itself, dropped by closing any fd of the file),
// OFD locks to descriptions; POSIX and OFD locks conflict with each other.
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <sys/file.h>

static struct flock range(short type, off_t start, off_t len) {
    struct flock f = {0};
    f.l_type = type;
    f.l_whence = SEEK_SET;
    f.l_start = start;
    f.l_len = len;
    return f;
}

int main(void) {
    int a = open("f", O_CREAT | O_RDWR | O_TRUNC, 0644), b = open("f", O_RDWR);
    CHECK(a >= 0 && b >= 0);
    /* flock: descriptions conflict, shared locks share, dup shares the description's lock. */
    CHECK(flock(a, LOCK_EX) == 0);
    CHECK_ERR(flock(b, LOCK_EX | LOCK_NB), EWOULDBLOCK);
    CHECK_ERR(flock(b, LOCK_SH | LOCK_NB), EWOULDBLOCK);
    int a2 = dup(a);
    CHECK(flock(a2, LOCK_EX | LOCK_NB) == 0);
    CHECK(flock(a, LOCK_UN) == 0);
    CHECK(flock(b, LOCK_SH | LOCK_NB) == 0);
    CHECK(flock(a, LOCK_SH | LOCK_NB) == 0);
    CHECK_ERR(flock(a, LOCK_EX | LOCK_NB), EWOULDBLOCK);
    int c = open("f", O_RDONLY);
    CHECK(flock(c, LOCK_SH | LOCK_NB) == 0);
    CHECK(close(c) == 0);
    CHECK(flock(b, LOCK_UN) == 0 && flock(a, LOCK_EX | LOCK_NB) == 0);
    CHECK(flock(a, LOCK_UN) == 0);
    CHECK_ERR(flock(a, 0), EINVAL);
    CHECK_ERR(flock(a, LOCK_SH | LOCK_EX), EINVAL);
    CHECK_ERR(flock(99, LOCK_SH), EBADF);

    /* POSIX locks: the process never conflicts with itself. */
    struct flock f = range(F_WRLCK, 0, 100);
    CHECK(fcntl(a, F_SETLK, &f) == 0);
    f = range(F_WRLCK, 50, 10);
    CHECK(fcntl(b, F_GETLK, &f) == 0 && f.l_type == F_UNLCK);
    CHECK(fcntl(b, F_SETLK, &f) == 0);
    /* An OFD lock of another description sees the process's lock, with its pid. */
    f = range(F_RDLCK, 10, 1);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0);
    CHECK(f.l_type == F_WRLCK && f.l_pid == getpid() && f.l_start <= 10);
    f = range(F_RDLCK, 10, 1);
    CHECK_ERR(fcntl(b, F_OFD_SETLK, &f), EAGAIN);
    /* Closing any fd of the file drops the process's POSIX locks. */
    int d = open("f", O_RDONLY);
    CHECK(close(d) == 0);
    f = range(F_WRLCK, 0, 0);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0 && f.l_type == F_UNLCK);

    /* OFD locks: descriptions conflict; F_OFD_GETLK reports l_pid -1 and the range. */
    f = range(F_WRLCK, 0, 10);
    CHECK(fcntl(a, F_OFD_SETLK, &f) == 0);
    f = range(F_RDLCK, 5, 1);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0);
    CHECK(f.l_type == F_WRLCK && f.l_start == 0 && f.l_len == 10 && f.l_pid == -1);
    f = range(F_RDLCK, 20, 10);
    CHECK(fcntl(b, F_OFD_SETLK, &f) == 0);
    f = range(F_WRLCK, 0, 5);
    CHECK_ERR(fcntl(b, F_SETLK, &f), EAGAIN); /* a POSIX lock against an OFD lock */
    f = range(F_WRLCK, 0, 5);
    CHECK(fcntl(b, F_GETLK, &f) == 0 && f.l_type == F_WRLCK && f.l_pid == -1);
    /* Unlocking the middle leaves two pieces. */
    f = range(F_UNLCK, 3, 4);
    CHECK(fcntl(a, F_OFD_SETLK, &f) == 0);
    f = range(F_WRLCK, 3, 4);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0 && f.l_type == F_UNLCK);
    f = range(F_WRLCK, 8, 1);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0 && f.l_type == F_WRLCK && f.l_start == 7 && f.l_len == 3);
    /* The last close of a description drops its OFD locks. */
    CHECK(close(a) == 0 && close(a2) == 0);
    f = range(F_WRLCK, 0, 10);
    CHECK(fcntl(b, F_OFD_GETLK, &f) == 0 && f.l_type == F_UNLCK);

    /* Errors. */
    int ro = open("f", O_RDONLY);
    f = range(F_WRLCK, 0, 1);
    CHECK_ERR(fcntl(ro, F_SETLK, &f), EBADF);
    f = range(7, 0, 1);
    CHECK_ERR(fcntl(b, F_SETLK, &f), EINVAL);
    f = range(F_RDLCK, -5, 1);
    CHECK_ERR(fcntl(b, F_SETLK, &f), EINVAL);
    f = range(F_RDLCK, 0, 1);
    f.l_whence = 9;
    CHECK_ERR(fcntl(b, F_SETLK, &f), EINVAL);
    f = range(F_RDLCK, 0, 1);
    f.l_pid = 5;
    CHECK_ERR(fcntl(b, F_OFD_SETLK, &f), EINVAL);
    f = range(F_UNLCK, 0, 1);
    CHECK_ERR(fcntl(b, F_GETLK, &f), EINVAL);
    CHECK_ERR(fcntl(b, F_SETLK, BAD_PTR), EFAULT);
    printf("locks ok\n");
    return 0;
}
