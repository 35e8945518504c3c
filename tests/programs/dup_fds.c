// dup, dup2, dup3, close: lowest free fd, shared descriptions, FD_CLOEXEC, errors; the ioctls
// every fd answers (FIOCLEX, FIONCLEX, FIONBIO).
#include "check.h"
#include <fcntl.h>
#include <sys/ioctl.h>
int main(void) {
    int a = dup(1);
    CHECK(a == 3);
    CHECK(write(a, "via dup\n", 8) == 8);
    CHECK(fcntl(a, F_GETFD) == 0);
    CHECK(dup2(1, 10) == 10);
    CHECK(write(10, "via dup2\n", 9) == 9);
    CHECK(dup2(10, 10) == 10);
    CHECK_ERR(dup2(55, 55), EBADF);
    CHECK(dup3(1, 11, O_CLOEXEC) == 11);
    CHECK(fcntl(11, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(dup3(1, 1, 0), EINVAL);
    CHECK_ERR(dup3(1, 12, O_NONBLOCK), EINVAL);
    CHECK_ERR(dup3(77, 12, 0), EBADF);
    CHECK_ERR(dup2(1, -1), EBADF);
    CHECK(close(a) == 0);
    CHECK_ERR(close(a), EBADF);
    CHECK(dup(1) == 3);
    CHECK_ERR(close(99), EBADF);
    CHECK_ERR(dup(-1), EBADF);
    /* Status flags live in the shared description; FD_CLOEXEC belongs to each fd. */
    CHECK(fcntl(3, F_SETFL, O_NONBLOCK) == 0);
    CHECK(fcntl(1, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(3, F_SETFL, 0) == 0 && !(fcntl(1, F_GETFL) & O_NONBLOCK));
    CHECK(fcntl(3, F_SETFD, 3) == 0 && fcntl(3, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(1, F_GETFD) == 0);
    /* dup2 onto an open fd closes it first and clears its FD_CLOEXEC. */
    CHECK(dup2(1, 11) == 11 && fcntl(11, F_GETFD) == 0);
    /* dup3 compares the two fds before it checks either. */
    CHECK_ERR(dup3(-1, -1, 0), EINVAL);
    CHECK_ERR(dup2(-1, -1), EBADF);
    CHECK(close(10) == 0 && close(11) == 0 && close(3) == 0);
    /* ioctls that act on the fd or its description, whatever the file. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(ioctl(p[0], FIOCLEX) == 0 && fcntl(p[0], F_GETFD) == FD_CLOEXEC);
    CHECK(ioctl(p[0], FIONCLEX) == 0 && fcntl(p[0], F_GETFD) == 0);
    int on = 1, off = 0;
    CHECK(ioctl(p[0], FIONBIO, &on) == 0 && (fcntl(p[0], F_GETFL) & O_NONBLOCK));
    char c;
    CHECK_ERR(read(p[0], &c, 1), EAGAIN);
    CHECK(ioctl(p[0], FIONBIO, &off) == 0 && !(fcntl(p[0], F_GETFL) & O_NONBLOCK));
    CHECK_ERR(ioctl(p[0], FIONBIO, BAD_PTR), EFAULT);
    CHECK_ERR(ioctl(99, FIOCLEX), EBADF);
    close(p[0]);
    close(p[1]);
    printf("dup ok\n");
    return 0;
}
