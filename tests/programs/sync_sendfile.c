// fsync and friends, the caching hints, sendfile, sigaltstack, sysinfo and utime, with the
// errors their man pages give.
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <utime.h>
#include <sys/time.h>

int main(void) {
    int fd = open("data", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789", 10) == 10);
    CHECK(fsync(fd) == 0 && fdatasync(fd) == 0);
    sync();
    CHECK(syncfs(fd) == 0);
    CHECK_ERR(fsync(99), EBADF);
    int null = open("/dev/null", O_WRONLY);
    CHECK_ERR(fsync(null), EINVAL);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(fsync(dir) == 0);
    CHECK(sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0);
    CHECK_ERR(sync_file_range(fd, 0, 0, 8), EINVAL);
    CHECK_ERR(sync_file_range(fd, -1, 0, 0), EINVAL);
    CHECK_ERR(sync_file_range(null, 0, 0, 0), ESPIPE);
    CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) == 0);
    CHECK(posix_fadvise(fd, 0, 0, 99) == EINVAL);
    CHECK(posix_fadvise(99, 0, 0, POSIX_FADV_NORMAL) == EBADF);
    CHECK(readahead(fd, 0, 4096) == 0);
    CHECK_ERR(readahead(dir, 0, 4096), EINVAL);

    /* sendfile with an offset: the input's position does not move, *offset does. */
    int out = open("copy", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(out >= 0);
    off_t off = 2;
    CHECK(sendfile(out, fd, &off, 5) == 5 && off == 7);
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    /* Without one, from (and moving) the input's position; short at end of file. */
    CHECK(lseek(fd, 8, SEEK_SET) == 8);
    CHECK(sendfile(out, fd, NULL, 100) == 2 && lseek(fd, 0, SEEK_CUR) == 10);
    CHECK(sendfile(out, fd, NULL, 100) == 0);
    char buf[16] = {0};
    CHECK(pread(out, buf, sizeof buf, 0) == 7 && memcmp(buf, "2345689", 7) == 0);
    off = -1;
    CHECK_ERR(sendfile(out, fd, &off, 1), EINVAL);
    CHECK_ERR(sendfile(out, 99, NULL, 1), EBADF);
    CHECK_ERR(sendfile(99, fd, NULL, 1), EBADF);
    CHECK_ERR(sendfile(out, fd, BAD_PTR, 1), EFAULT);
    int app = open("copy", O_WRONLY | O_APPEND);
    CHECK_ERR(sendfile(app, fd, NULL, 1), EINVAL);

    /* sigaltstack: none at first; too small is ENOMEM; bad flags EINVAL; SS_DISABLE clears. */
    stack_t old, ss;
    CHECK(sigaltstack(NULL, &old) == 0 && old.ss_flags == SS_DISABLE && old.ss_size == 0);
    static char stack[65536];
    ss.ss_sp = stack; ss.ss_size = 1024; ss.ss_flags = 0;
    CHECK_ERR(sigaltstack(&ss, NULL), ENOMEM);
    ss.ss_size = sizeof stack; ss.ss_flags = 77;
    CHECK_ERR(sigaltstack(&ss, NULL), EINVAL);
    ss.ss_flags = 0;
    CHECK(sigaltstack(&ss, NULL) == 0);
    CHECK(sigaltstack(NULL, &old) == 0 && old.ss_sp == stack && old.ss_size == sizeof stack && old.ss_flags == 0);
    ss.ss_flags = SS_DISABLE;
    CHECK(sigaltstack(&ss, &old) == 0 && old.ss_sp == stack);
    CHECK(sigaltstack(NULL, &old) == 0 && old.ss_flags == SS_DISABLE);
    CHECK_ERR(sigaltstack(BAD_PTR, NULL), EFAULT);

    struct sysinfo si;
    CHECK(sysinfo(&si) == 0 && si.totalram > 0 && si.mem_unit >= 1 && si.procs >= 1);
    CHECK(si.freeram <= si.totalram);
    CHECK_ERR(sysinfo(BAD_PTR), EFAULT);

    /* utime and futimesat set whole-second and microsecond times. */
    struct utimbuf ub = {1000000000, 1000000001};
    struct stat st;
    CHECK(utime("data", &ub) == 0 && stat("data", &st) == 0);
    CHECK(st.st_atime == 1000000000 && st.st_mtime == 1000000001 && st.st_mtim.tv_nsec == 0);
    struct timeval tv[2] = {{5, 6}, {7, 8}};
    CHECK(futimesat(AT_FDCWD, "data", tv) == 0 && stat("data", &st) == 0);
    CHECK(st.st_mtime == 7 && st.st_mtim.tv_nsec == 8000);
    CHECK_ERR(utime("missing", &ub), ENOENT);
    printf("sync sendfile ok\n");
    return 0;
}
