// prlimit64/getrlimit/setrlimit round trips and errors (values of the host are not printed).
#include "check.h"
#include <sys/resource.h>
int main(void) {
    struct rlimit rl, back;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(rl.rlim_cur <= rl.rlim_max);
    struct rlimit lower = {64, rl.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &lower) == 0);
    CHECK(getrlimit(RLIMIT_NOFILE, &back) == 0 && back.rlim_cur == 64);
    /* fds at or above the soft limit are refused now. */
    CHECK_ERR(dup2(1, 64), EBADF);
    CHECK(dup2(1, 63) == 63);
    struct rlimit old;
    CHECK(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &rl, &old) == 0);
    CHECK(old.rlim_cur == 64);
    struct rlimit bad = {10, 5};
    CHECK_ERR(setrlimit(RLIMIT_NOFILE, &bad), EINVAL);
    CHECK_ERR(getrlimit(99, &rl), EINVAL);
    for (int r = 0; r < RLIM_NLIMITS; r++) CHECK(getrlimit(r, &back) == 0 && back.rlim_cur <= back.rlim_max);
    CHECK_ERR(getrlimit(RLIM_NLIMITS, &back), EINVAL);
    CHECK(syscall(SYS_prlimit64, getpid(), RLIMIT_NOFILE, NULL, &back) == 0 && back.rlim_cur == rl.rlim_cur);
    CHECK_ERR(syscall(SYS_prlimit64, -1, RLIMIT_NOFILE, NULL, &back), ESRCH);
    CHECK_ERR(syscall(SYS_prlimit64, 0, 99, NULL, &rl), EINVAL);
    CHECK_ERR(syscall(SYS_prlimit64, 0, RLIMIT_CORE, BAD_PTR, NULL), EFAULT);
    CHECK_ERR(getrlimit(RLIMIT_STACK, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_prlimit64, 999999, RLIMIT_CORE, NULL, &rl), ESRCH);
    struct rlimit as;
    CHECK(getrlimit(RLIMIT_AS, &as) == 0);
    printf("rlimits ok\n");
    return 0;
}
