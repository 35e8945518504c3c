// fallocate: allocating extends the size unless FALLOC_FL_KEEP_SIZE; punching a hole reads
// back as zeros and keeps the size; the errors fallocate(2) lists.
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void) {
    int fd = open("f", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fallocate(fd, 0, 0, 10000) == 0 && fstat(fd, &st) == 0 && st.st_size == 10000);
    CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 50000) == 0 && fstat(fd, &st) == 0 && st.st_size == 10000);
    CHECK(fallocate(fd, 0, 100, 100) == 0 && fstat(fd, &st) == 0 && st.st_size == 10000);
    char buf[10000];
    memset(buf, 'a', sizeof buf);
    CHECK(pwrite(fd, buf, sizeof buf, 0) == sizeof buf);
    CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10000);
    CHECK(pread(fd, buf, sizeof buf, 0) == sizeof buf);
    CHECK(buf[4095] == 'a' && buf[4096] == 0 && buf[8191] == 0 && buf[8192] == 'a');
    /* A hole past the end changes nothing. */
    CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 20000, 4096) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10000);

    CHECK_ERR(fallocate(fd, 0, -1, 10), EINVAL);
    CHECK_ERR(fallocate(fd, 0, 0, 0), EINVAL);
    CHECK_ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10), EOPNOTSUPP);
    CHECK_ERR(fallocate(fd, 0, 0x7fffffffffffffffL, 10), EFBIG);
    CHECK_ERR(fallocate(99, 0, 0, 10), EBADF);
    int ro = open("f", O_RDONLY);
    CHECK_ERR(fallocate(ro, 0, 0, 10), EBADF);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_ERR(fallocate(dir, 0, 0, 10), EBADF);
    int null = open("/dev/null", O_WRONLY);
    CHECK_ERR(fallocate(null, 0, 0, 10), ENODEV);
    printf("fallocate ok\n");
    return 0;
}
