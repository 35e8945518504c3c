// write, writev, pwrite on stdout (a pipe under the harness) and their errors.
#include "check.h"
#include <sys/uio.h>
int main(void) {
    CHECK(write(1, "one\n", 4) == 4);
    CHECK(write(1, "", 0) == 0);
    struct iovec iov[3] = {{"tw", 2}, {"o", 1}, {"\n", 1}};
    CHECK(writev(1, iov, 3) == 4);
    struct iovec empty[2] = {{NULL, 0}, {"three\n", 6}};
    CHECK(writev(1, empty, 2) == 6);
    CHECK_ERR(syscall(SYS_write, 1, BAD_PTR, 10), EFAULT);
    CHECK_ERR(write(99, "x", 1), EBADF);
    CHECK_ERR(write(-1, "x", 1), EBADF);
    CHECK_ERR(syscall(SYS_writev, 1, iov, -1), EINVAL);
    CHECK_ERR(syscall(SYS_writev, 1, iov, 1025), EINVAL);
    CHECK_ERR(syscall(SYS_writev, 1, BAD_PTR, 1), EFAULT);
    CHECK(syscall(SYS_writev, 1, BAD_PTR, 0) == 0);
    /* The iovecs are all checked before anything is written: "LEAK" must never appear. */
    char tail[8];
    struct iovec huge[2] = {{"LEAK\n", 5}, {tail, (size_t)-1}};
    CHECK_ERR(syscall(SYS_writev, 1, huge, 2), EINVAL);
    CHECK_ERR(pwrite(1, "x", 1, 0), ESPIPE);
    CHECK_ERR(pwrite(1, "x", 1, -1), EINVAL);
    /* ESPIPE comes before the access-mode check: reading the write end of a pipe. */
    char b4[4];
    CHECK_ERR(pread(1, b4, 1, 0), ESPIPE);
    printf("done\n");
    return 0;
}
