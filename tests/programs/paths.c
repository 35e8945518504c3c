// Path resolution: "..", "/..", dirfd-relative and absolute paths, long names, statx agreeing with stat.
#include "check.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
int main(void) {
    CHECK(mkdir("p", 0755) == 0 && mkdir("p/q", 0755) == 0);
    CHECK(close(open("p/q/file", O_CREAT | O_WRONLY, 0644)) == 0);
    struct stat a, b, file;
    CHECK(stat("p/q/../q/./file", &a) == 0 && stat("p/q/file", &file) == 0 && a.st_ino == file.st_ino);
    CHECK(stat("/..", &a) == 0 && stat("/", &b) == 0 && a.st_ino == b.st_ino);
    CHECK(stat("/../../..", &a) == 0 && a.st_ino == b.st_ino);
    int dir = open("p", O_RDONLY | O_DIRECTORY);
    CHECK(dir >= 0);
    CHECK(fstatat(dir, "q/file", &a, 0) == 0 && a.st_ino == file.st_ino);
    int f = openat(dir, "q/file", O_RDONLY);
    CHECK(f >= 0);
    CHECK_ERR(openat(f, "x", O_RDONLY), ENOTDIR);
    CHECK_ERR(openat(99, "x", O_RDONLY), EBADF);
    CHECK(openat(99, "/", O_RDONLY) >= 0);
    CHECK(mkdirat(dir, "r", 0755) == 0 && unlinkat(dir, "r", AT_REMOVEDIR) == 0);
    CHECK_ERR(unlinkat(dir, "q", 0), EISDIR);
    CHECK_ERR(unlinkat(dir, "q", 0x1234), EINVAL);
    char name[300];
    memset(name, 'n', sizeof name);
    name[256] = 0;
    CHECK_ERR(open(name, O_RDONLY | O_CREAT, 0644), ENAMETOOLONG);
    name[255] = 0;
    CHECK_ERR(open(name, O_RDONLY), ENOENT);
    static char huge[PATH_MAX + 10];
    memset(huge, 'a', sizeof huge - 1);
    CHECK_ERR(stat(huge, &a), ENAMETOOLONG);
    CHECK_ERR(stat("", &a), ENOENT);
    CHECK(fstatat(f, "", &a, AT_EMPTY_PATH) == 0 && a.st_ino == file.st_ino);
    struct statx sx;
    CHECK(statx(AT_FDCWD, "p/q/file", 0, STATX_BASIC_STATS, &sx) == 0);
    CHECK(sx.stx_ino == file.st_ino && sx.stx_size == 0 && S_ISREG(sx.stx_mode) && (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS);
    CHECK(sx.stx_nlink == 1 && sx.stx_mtime.tv_sec == file.st_mtime);
    CHECK_ERR(statx(AT_FDCWD, "p", 0x12345678, STATX_BASIC_STATS, &sx), EINVAL);
    CHECK(unlink("p/q/file") == 0 && rmdir("p/q") == 0 && rmdir("p") == 0);
    printf("paths ok\n");
    return 0;
}
