// copy_file_range: with and without offsets, short at end of file, and the errors of
// copy_file_range(2).
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void) {
    int in = open("in", O_CREAT | O_RDWR | O_TRUNC, 0644);
    int out = open("out", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(in >= 0 && out >= 0);
    CHECK(write(in, "abcdefghij", 10) == 10);
    loff_t oi = 2, oo = 0;
    CHECK(copy_file_range(in, &oi, out, &oo, 4, 0) == 4 && oi == 6 && oo == 4);
    CHECK(lseek(in, 0, SEEK_CUR) == 10 && lseek(out, 0, SEEK_CUR) == 0);
    /* Without offsets the files' positions are used and moved. */
    CHECK(lseek(in, 7, SEEK_SET) == 7 && lseek(out, 4, SEEK_SET) == 4);
    CHECK(copy_file_range(in, NULL, out, NULL, 100, 0) == 3);
    CHECK(lseek(in, 0, SEEK_CUR) == 10 && lseek(out, 0, SEEK_CUR) == 7);
    CHECK(copy_file_range(in, NULL, out, NULL, 100, 0) == 0);
    char buf[16] = {0};
    CHECK(pread(out, buf, sizeof buf, 0) == 7 && memcmp(buf, "cdefhij", 7) == 0);
    oi = 100;
    CHECK(copy_file_range(in, &oi, out, NULL, 5, 0) == 0);

    CHECK_ERR(copy_file_range(in, NULL, out, NULL, 1, 1), EINVAL);
    CHECK_ERR(copy_file_range(99, NULL, out, NULL, 1, 0), EBADF);
    int ro = open("out", O_RDONLY);
    CHECK_ERR(copy_file_range(in, NULL, ro, NULL, 1, 0), EBADF);
    int app = open("out", O_WRONLY | O_APPEND);
    CHECK_ERR(copy_file_range(in, NULL, app, NULL, 1, 0), EBADF);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_ERR(copy_file_range(dir, NULL, out, NULL, 1, 0), EISDIR);
    int null = open("/dev/null", O_RDWR);
    CHECK_ERR(copy_file_range(in, NULL, null, NULL, 1, 0), EINVAL);
    oi = -1;
    CHECK_ERR(copy_file_range(in, &oi, out, NULL, 1, 0), EOVERFLOW);
    oi = 0, oo = -1;
    CHECK_ERR(copy_file_range(in, &oi, out, &oo, 1, 0), EOVERFLOW);
    CHECK_ERR(copy_file_range(in, BAD_PTR, out, NULL, 1, 0), EFAULT);
    /* Overlapping ranges of one file. */
    oi = 0, oo = 2;
    CHECK_ERR(copy_file_range(in, &oi, in, &oo, 4, 0), EINVAL);
    oi = 0, oo = 20;
    CHECK(copy_file_range(in, &oi, in, &oo, 4, 0) == 4);
    printf("copy range ok\n");
    return 0;
}
