// futex with one thread: mismatched value, timeouts, waking nobody, bad operations.
#include "check.h"
#include <linux/futex.h>
#include <time.h>
static int word = 5;
int main(void) {
    struct timespec t = {0, 10 * 1000 * 1000};
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT, 4, NULL, NULL, 0), EAGAIN);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 5, &t, NULL, 0), ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec) >= 10 * 1000 * 1000);
    CHECK(syscall(SYS_futex, &word, FUTEX_WAKE, 1, NULL, NULL, 0) == 0);
    CHECK(syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0) == 0);
    struct timespec past = {0, 0};
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 5, &past, NULL, ~0u), ETIMEDOUT);
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT_BITSET, 5, &t, NULL, 0), EINVAL);
    CHECK_ERR(syscall(SYS_futex, (char *)&word + 1, FUTEX_WAIT, 5, &t, NULL, 0), EINVAL);
    CHECK_ERR(syscall(SYS_futex, BAD_PTR - 1 + 4096, FUTEX_WAIT, 5, &t, NULL, 0), EFAULT);
    struct timespec bad = {0, -1};
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT, 5, &bad, NULL, 0), EINVAL);
    CHECK_ERR(syscall(SYS_futex, &word, 99, 0, NULL, NULL, 0), ENOSYS);
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, NULL, NULL, 0), ENOSYS);
    printf("futex ok\n");
    return 0;
}
