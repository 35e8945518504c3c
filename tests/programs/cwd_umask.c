// getcwd returns an absolute path and its length; umask returns the previous mask.
#include "check.h"
#include <sys/stat.h>
int main(void) {
    char buf[4096];
    long n = syscall(SYS_getcwd, buf, sizeof buf);
    CHECK(n > 1 && buf[0] == '/' && (long)strlen(buf) + 1 == n);
    CHECK_ERR(syscall(SYS_getcwd, buf, 1), ERANGE);
    CHECK_ERR(syscall(SYS_getcwd, buf, 0), ERANGE);
    CHECK_ERR(syscall(SYS_getcwd, buf, n - 1), ERANGE);
    CHECK(syscall(SYS_getcwd, buf, n) == n);
    CHECK_ERR(syscall(SYS_getcwd, BAD_PTR, sizeof buf), EFAULT);
    mode_t old = umask(027);
    CHECK(umask(old) == 027);
    CHECK(umask(0777 | 07000) == old);
    CHECK(umask(old) == 0777);
    printf("cwd and umask ok\n");
    return 0;
}
