// open, creat, read, write, lseek, pread/pwrite, O_APPEND, O_TRUNC, O_EXCL, ftruncate, close_range.
#include "check.h"
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
int main(void) {
    int fd = open("f", O_RDWR | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "hello world", 11) == 11);
    CHECK(lseek(fd, 0, SEEK_CUR) == 11);
    CHECK(lseek(fd, 6, SEEK_SET) == 6);
    char buf[32] = {0};
    CHECK(read(fd, buf, sizeof buf) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(read(fd, buf, sizeof buf) == 0);
    CHECK(pwrite(fd, "W", 1, 6) == 1);
    CHECK(pread(fd, buf, 5, 6) == 5 && memcmp(buf, "World", 5) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 11);
    CHECK(lseek(fd, -5, SEEK_END) == 6);
    CHECK_ERR(lseek(fd, -100, SEEK_CUR), EINVAL);
    CHECK_ERR(lseek(fd, 0, 99), EINVAL);
    /* Writing past the end leaves a hole that reads as zeros. */
    CHECK(pwrite(fd, "!", 1, 20) == 1);
    CHECK(pread(fd, buf, 32, 0) == 21 && buf[15] == 0 && buf[20] == '!');
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 21 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == (0644 & ~umask(022)));
    CHECK(ftruncate(fd, 5) == 0 && fstat(fd, &st) == 0 && st.st_size == 5);
    CHECK(ftruncate(fd, 4096 * 3) == 0 && pread(fd, buf, 4, 4096 * 2) == 4 && buf[0] == 0);
    CHECK_ERR(ftruncate(fd, -1), EINVAL);
    CHECK(close(fd) == 0);

    CHECK_ERR(open("f", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);
    CHECK_ERR(open("missing", O_RDONLY), ENOENT);
    CHECK_ERR(open("f/x", O_RDONLY), ENOTDIR);
    CHECK_ERR(open("f", O_RDONLY | O_DIRECTORY), ENOTDIR);
    CHECK_ERR(open(".", O_RDWR), EISDIR);
    CHECK_ERR(open("new/", O_RDWR | O_CREAT, 0644), EISDIR);
    int ro = open("f", O_RDONLY);
    CHECK(ro >= 0);
    CHECK_ERR(write(ro, "x", 1), EBADF);
    CHECK_ERR(ftruncate(ro, 0), EINVAL);
    int ap = open("f", O_WRONLY | O_APPEND);
    CHECK(ap >= 0 && write(ap, "END", 3) == 3);
    CHECK(fstat(ap, &st) == 0 && st.st_size == 4096 * 3 + 3);
    CHECK((fcntl(ap, F_GETFL) & (O_APPEND | O_ACCMODE)) == (O_APPEND | O_WRONLY));
    CHECK_ERR(read(ap, buf, 1), EBADF);
    int tr = open("f", O_WRONLY | O_TRUNC);
    CHECK(tr >= 0 && fstat(tr, &st) == 0 && st.st_size == 0);
    int c = creat("g", 0600);
    CHECK(c >= 0 && write(c, "g", 1) == 1);
    int p = open("f", O_PATH);
    CHECK(p >= 0);
    CHECK_ERR(read(p, buf, 1), EBADF);
    CHECK(fstat(p, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(syscall(SYS_close_range, ro, ~0u, CLOSE_RANGE_CLOEXEC) == 0 && fcntl(ro, F_GETFD) == FD_CLOEXEC);
    CHECK(syscall(SYS_close_range, ro, ~0u, 0) == 0);
    CHECK_ERR(close(ro), EBADF);
    CHECK_ERR(close(p), EBADF);
    CHECK_ERR(syscall(SYS_close_range, 5, 4, 0), EINVAL);
    CHECK(unlink("f") == 0 && unlink("g") == 0);
    CHECK_ERR(unlink("f"), ENOENT);
    printf("files ok\n");
    return 0;
}
