// chmod/fchmod/fchmodat, chown to oneself, access, utimensat, truncate, umask on creation.
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
int main(void) {
    umask(022);
    int fd = open("f", O_RDWR | O_CREAT, 0666);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(chmod("f", 0600) == 0 && stat("f", &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK(fchmod(fd, 04711) == 0 && fstat(fd, &st) == 0 && (st.st_mode & 07777) == 04711);
    CHECK(fchmodat(AT_FDCWD, "f", 0640, 0) == 0 && stat("f", &st) == 0 && (st.st_mode & 0777) == 0640);
    CHECK_ERR(chmod("missing", 0600), ENOENT);
    CHECK(chown("f", getuid(), getgid()) == 0);
    CHECK(fchown(fd, -1, -1) == 0);
    CHECK(lchown("f", -1, getgid()) == 0);
    CHECK(access("f", F_OK) == 0 && access("f", R_OK | W_OK) == 0);
    CHECK_ERR(access("missing", F_OK), ENOENT);
    CHECK_ERR(access("f", 8), EINVAL);
    CHECK(faccessat(AT_FDCWD, "f", R_OK, AT_EACCESS) == 0);
    CHECK(mkdir("d", 0777) == 0 && stat("d", &st) == 0 && (st.st_mode & 0777) == 0755);

    struct timespec times[2] = {{1000000000, 5}, {1234567890, 123456789}};
    CHECK(utimensat(AT_FDCWD, "f", times, 0) == 0);
    CHECK(stat("f", &st) == 0 && st.st_mtime == 1234567890 && st.st_mtim.tv_nsec == 123456789 && st.st_atime == 1000000000);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    CHECK(utimensat(AT_FDCWD, "f", omit, 0) == 0);
    CHECK(stat("f", &st) == 0 && st.st_atime == 1000000000 && st.st_mtime > 1234567890);
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    CHECK_ERR(utimensat(AT_FDCWD, "f", bad, 0), EINVAL);
    CHECK(futimens(fd, NULL) == 0);
    CHECK(truncate("f", 100) == 0 && stat("f", &st) == 0 && st.st_size == 100);
    CHECK_ERR(truncate("d", 0), EISDIR);
    CHECK_ERR(truncate("f", -1), EINVAL);
    CHECK(close(fd) == 0 && unlink("f") == 0 && rmdir("d") == 0);
    printf("attrs ok\n");
    return 0;
}
