// read and readv from stdin (/dev/null under the harness): end of file, and the errors.
#include "check.h"
#include <sys/uio.h>
int main(void) {
    char buf[16];
    CHECK(read(0, buf, sizeof buf) == 0);
    CHECK(read(0, buf, 0) == 0);
    struct iovec iov[2] = {{buf, 4}, {buf + 4, 4}};
    CHECK(readv(0, iov, 2) == 0);
    CHECK_ERR(read(99, buf, 1), EBADF);
    CHECK_ERR(syscall(SYS_readv, 0, iov, -1), EINVAL);
    CHECK_ERR(syscall(SYS_readv, 0, BAD_PTR, 1), EFAULT);
    CHECK_ERR(pread(0, buf, 1, -5), EINVAL);
    /* /dev/null is not a pipe: positioned reads work (at end of file), and a positioned
     * write to the read-only stdin fails on the access mode, not with ESPIPE. */
    CHECK(pread(0, buf, 1, 0) == 0);
    CHECK(pread(0, buf, 1, 1000) == 0);
    CHECK_ERR(pwrite(0, buf, 1, 0), EBADF);
    CHECK(syscall(SYS_readv, 0, BAD_PTR, 0) == 0);
    CHECK_ERR(pread(99, buf, 1, -5), EINVAL);
    CHECK_ERR(pread(99, buf, 1, 0), EBADF);
    printf("eof ok\n");
    return 0;
}
