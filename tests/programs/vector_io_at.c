// preadv/pwritev/preadv2/pwritev2: scattered and gathered I/O at an offset leaves the file
// position alone; offset -1 of the v2 calls uses and advances it; RWF_APPEND writes at the
// end; the errors for negative offsets, streams, unknown flags, bad iovecs and access modes.
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#ifndef RWF_APPEND
#define RWF_APPEND 0x10
#endif

static long raw_preadv2(int fd, const struct iovec *iov, int n, long off, int flags) {
    return syscall(SYS_preadv2, fd, iov, n, off, 0L, flags);
}
static long raw_pwritev2(int fd, const struct iovec *iov, int n, long off, int flags) {
    return syscall(SYS_pwritev2, fd, iov, n, off, 0L, flags);
}

int main(void) {
    int fd = open("file", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789abcdef", 16) == 16);
    CHECK(lseek(fd, 3, SEEK_SET) == 3);

    char a[4], b[5];
    struct iovec in[2] = {{a, sizeof a}, {b, sizeof b}};
    CHECK(preadv(fd, in, 2, 6) == 9);
    CHECK(memcmp(a, "6789", 4) == 0 && memcmp(b, "abcde", 5) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 3);
    /* At the end of the file: short, then nothing. */
    CHECK(preadv(fd, in, 2, 12) == 4 && memcmp(a, "cdef", 4) == 0);
    CHECK(preadv(fd, in, 2, 16) == 0);

    struct iovec out[3] = {{"AB", 2}, {"", 0}, {"CDE", 3}};
    CHECK(pwritev(fd, out, 3, 1) == 5);
    CHECK(lseek(fd, 0, SEEK_CUR) == 3);
    char all[32] = {0};
    CHECK(pread(fd, all, sizeof all, 0) == 16 && memcmp(all, "0ABCDE6789abcdef", 16) == 0);
    /* Past the end: the gap reads as zeros. */
    CHECK(pwritev(fd, out, 1, 20) == 2);
    CHECK(pread(fd, all, sizeof all, 14) == 8 && all[2] == 0 && memcmp(all + 6, "AB", 2) == 0);

    /* The v2 calls: -1 is the file's position, which then moves. */
    CHECK(raw_preadv2(fd, in, 1, -1, 0) == 4 && memcmp(a, "CDE6", 4) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 7);
    CHECK(raw_preadv2(fd, in, 1, 0, 0) == 4 && memcmp(a, "0ABC", 4) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 7);
    struct iovec xy = {"xy", 2};
    CHECK(raw_pwritev2(fd, &xy, 1, -1, 0) == 2 && lseek(fd, 0, SEEK_CUR) == 9);
    CHECK(raw_pwritev2(fd, &xy, 1, 0, RWF_APPEND) == 2);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 24);
    CHECK(pread(fd, all, 2, 22) == 2 && memcmp(all, "xy", 2) == 0);
    CHECK(raw_pwritev2(fd, &xy, 1, 0, RWF_DSYNC) == 2);
    CHECK(pread(fd, all, 2, 0) == 2 && memcmp(all, "xy", 2) == 0);

    /* Errors. */
    CHECK_ERR(preadv(fd, in, 2, -5), EINVAL);
    CHECK_ERR(pwritev(fd, out, 1, -5), EINVAL);
    CHECK_ERR(raw_preadv2(fd, in, 1, -2, 0), EINVAL);
    CHECK_ERR(raw_preadv2(fd, in, 1, 0, 0x40000000), EOPNOTSUPP);
    CHECK_ERR(raw_pwritev2(fd, &xy, 1, 0, 0x40000000), EOPNOTSUPP);
    CHECK_ERR(syscall(SYS_preadv, fd, in, -1, 0L, 0L), EINVAL);
    CHECK_ERR(syscall(SYS_preadv, fd, in, 1025, 0L, 0L), EINVAL);
    struct iovec bad = {BAD_PTR, 4};
    CHECK_ERR(preadv(fd, &bad, 1, 0), EFAULT);
    CHECK_ERR(preadv(99, in, 1, 0), EBADF);
    int ro = open("file", O_RDONLY);
    CHECK(ro >= 0);
    CHECK_ERR(pwritev(ro, out, 1, 0), EBADF);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(preadv(p[0], in, 1, 0), ESPIPE);
    CHECK_ERR(pwritev(p[1], out, 1, 0), ESPIPE);
    /* A pipe is fine at offset -1 with the v2 calls. */
    CHECK(raw_pwritev2(p[1], out, 3, -1, 0) == 5);
    CHECK(raw_preadv2(p[0], in, 2, -1, 0) == 5 && memcmp(a, "ABCD", 4) == 0 && b[0] == 'E');
    printf("positioned vector io ok\n");
    return 0;
}
