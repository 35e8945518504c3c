// The id calls agree with each other and with getgroups; uname has Linux's shape.
#include "check.h"
#include <sys/utsname.h>
int main(void) {
    CHECK(getuid() == geteuid());
    CHECK(getgid() == getegid());
    CHECK(syscall(SYS_gettid) == syscall(SYS_getpid));
    CHECK(syscall(SYS_getppid) >= 0);
    int n = getgroups(0, NULL);
    CHECK(n >= 0);
    gid_t groups[256];
    CHECK(getgroups(256, groups) == n);
    if (n > 1) CHECK_ERR(getgroups(n - 1, groups), EINVAL);
    CHECK_ERR(syscall(SYS_getgroups, -1, groups), EINVAL);
    struct utsname u;
    CHECK(uname(&u) == 0);
    CHECK(strcmp(u.sysname, "Linux") == 0);
    CHECK(strcmp(u.machine, "x86_64") == 0);
    CHECK(strlen(u.release) > 0 && strlen(u.nodename) > 0);
    CHECK_ERR(syscall(SYS_uname, NULL), EFAULT);
    printf("identity ok\n");
    return 0;
}
