// Extended attributes, as xattr(7) and getxattr(2) describe them: user attributes on a new
// file, the create/replace flags, size queries, and the errors.
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

int main(void) {
    int fd = open("f", O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    char buf[64];
    CHECK_ERR(getxattr("f", "user.a", buf, sizeof buf), ENODATA);
    CHECK(setxattr("f", "user.a", "hello", 5, 0) == 0);
    CHECK(getxattr("f", "user.a", NULL, 0) == 5);
    CHECK(getxattr("f", "user.a", buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_ERR(getxattr("f", "user.a", buf, 3), ERANGE);
    CHECK_ERR(setxattr("f", "user.a", "x", 1, XATTR_CREATE), EEXIST);
    CHECK_ERR(setxattr("f", "user.b", "x", 1, XATTR_REPLACE), ENODATA);
    CHECK(setxattr("f", "user.a", "bye", 3, XATTR_REPLACE) == 0);
    CHECK(fgetxattr(fd, "user.a", buf, sizeof buf) == 3 && memcmp(buf, "bye", 3) == 0);
    CHECK(fsetxattr(fd, "user.b", "", 0, XATTR_CREATE) == 0);
    CHECK(getxattr("f", "user.b", buf, sizeof buf) == 0);

    /* The list: NUL-terminated names; size 0 asks for the length. */
    ssize_t n = listxattr("f", NULL, 0);
    CHECK(n == (ssize_t)sizeof "user.a" + (ssize_t)sizeof "user.b");
    CHECK_ERR(listxattr("f", buf, 4), ERANGE);
    CHECK(flistxattr(fd, buf, sizeof buf) == n);
    int seen_a = 0, seen_b = 0;
    for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
        seen_a |= strcmp(p, "user.a") == 0;
        seen_b |= strcmp(p, "user.b") == 0;
    }
    CHECK(seen_a && seen_b);

    CHECK(removexattr("f", "user.a") == 0);
    CHECK_ERR(removexattr("f", "user.a"), ENODATA);
    CHECK(fremovexattr(fd, "user.b") == 0);
    CHECK(listxattr("f", buf, sizeof buf) == 0);

    /* Names: empty or longer than 255 is ERANGE; an unknown namespace is not supported. */
    char longname[300];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "user.", 5);
    longname[299] = 0;
    CHECK_ERR(setxattr("f", longname, "x", 1, 0), ERANGE);
    CHECK_ERR(getxattr("f", "", buf, sizeof buf), ERANGE);
    CHECK_ERR(setxattr("f", "bogus.a", "x", 1, 0), EOPNOTSUPP);
    CHECK_ERR(setxattr("f", "user.a", "x", 1, 4), EINVAL);
    static char big[70000];
    CHECK_ERR(setxattr("f", "user.a", big, sizeof big, 0), E2BIG);
    CHECK_ERR(getxattr("missing", "user.a", buf, sizeof buf), ENOENT);
    CHECK_ERR(fgetxattr(99, "user.a", buf, sizeof buf), EBADF);
    CHECK_ERR(getxattr("f", BAD_PTR, buf, sizeof buf), EFAULT);

    /* User attributes belong to files and directories only: not to a symlink itself. */
    CHECK(symlink("f", "l") == 0);
    CHECK_ERR(lsetxattr("l", "user.a", "x", 1, 0), EPERM);
    CHECK_ERR(lgetxattr("l", "user.a", buf, sizeof buf), ENODATA);
    CHECK(setxattr("l", "user.c", "via", 3, 0) == 0);
    CHECK(getxattr("f", "user.c", buf, sizeof buf) == 3);
    CHECK(mkdir("d", 0755) == 0 && setxattr("d", "user.d", "1", 1, 0) == 0);
    printf("xattrs ok\n");
    return 0;
}
