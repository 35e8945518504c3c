// sched_getaffinity reports at least one CPU and checks its size; sched_yield succeeds.
#include "check.h"
#include <sched.h>
int main(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
    CHECK(n > 0 && n % 8 == 0);
    CHECK(CPU_COUNT(&set) >= 1);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 3, &set), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 12, &set), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 0, &set), EINVAL);
    /* Our own pid names us; pids that name nobody are ESRCH, even negative ones. */
    cpu_set_t again;
    CPU_ZERO(&again);
    CHECK(syscall(SYS_sched_getaffinity, getpid(), sizeof again, &again) == n);
    CHECK(CPU_EQUAL(&set, &again));
    CHECK_ERR(syscall(SYS_sched_getaffinity, -1, sizeof set, &set), ESRCH);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, sizeof set, BAD_PTR), EFAULT);
    CHECK(sched_yield() == 0);
    printf("affinity ok\n");
    return 0;
}
