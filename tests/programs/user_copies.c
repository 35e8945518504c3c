// Buffers the kernel must not use: a PROT_NONE page cannot be read, a PROT_READ page cannot be
// written, and an address in the kernel half is refused before anything else happens.
#include "check.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#define KERNEL_PTR ((void *)0xffff888000000000ul)
int main(void) {
    char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(none != MAP_FAILED && ro != MAP_FAILED);
    static const char text[] = "written from a read-only page\n";
    memcpy(ro, text, sizeof text - 1);
    CHECK(mprotect(ro, 4096, PROT_READ) == 0);

    /* The kernel reads these buffers: PROT_NONE fails, PROT_READ is enough. */
    CHECK_ERR(syscall(SYS_write, 1, none, 8), EFAULT);
    CHECK_ERR(syscall(SYS_write, 1, KERNEL_PTR, 8), EFAULT);
    struct iovec iov[2] = {{none, 4}, {"never ", 6}};
    CHECK_ERR(syscall(SYS_writev, 1, iov, 2), EFAULT);
    CHECK_ERR(syscall(SYS_writev, 1, none, 1), EFAULT);
    CHECK(write(1, ro, sizeof text - 1) == sizeof text - 1);
    struct timespec *req = (struct timespec *)none;
    CHECK_ERR(syscall(SYS_nanosleep, req, NULL), EFAULT);
    CHECK_ERR(syscall(SYS_setrlimit, RLIMIT_CORE, none), EFAULT);
    CHECK_ERR(syscall(SYS_rt_sigprocmask, SIG_BLOCK, none, NULL, 8), EFAULT);

    /* The kernel writes these: PROT_READ is not enough. */
    CHECK_ERR(syscall(SYS_read, 0, KERNEL_PTR, 8), EFAULT);
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_REALTIME, ro), EFAULT);
    CHECK_ERR(syscall(SYS_clock_getres, CLOCK_MONOTONIC, ro), EFAULT);
    CHECK_ERR(syscall(SYS_gettimeofday, ro, NULL), EFAULT);
    CHECK_ERR(syscall(SYS_time, ro), EFAULT);
    CHECK_ERR(syscall(SYS_uname, ro), EFAULT);
    CHECK_ERR(syscall(SYS_uname, none), EFAULT);
    CHECK_ERR(syscall(SYS_fstat, 1, ro), EFAULT);
    CHECK_ERR(syscall(SYS_getrandom, ro, 16, 0), EFAULT);
    CHECK_ERR(syscall(SYS_getcwd, ro, 4096), EFAULT);
    CHECK_ERR(syscall(SYS_getrlimit, RLIMIT_NOFILE, ro), EFAULT);
    CHECK_ERR(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, ro), EFAULT);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 128, ro), EFAULT);
    CHECK_ERR(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, ro, 8), EFAULT);
    CHECK_ERR(syscall(SYS_rt_sigaction, SIGUSR1, NULL, ro, 8), EFAULT);
    CHECK_ERR(syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, ro), EFAULT);
    if (getgroups(0, NULL) > 0) CHECK_ERR(syscall(SYS_getgroups, 16, ro), EFAULT);
    /* A buffer that starts writable and runs into a read-only page. */
    char *two = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED && mprotect(two + 4096, 4096, PROT_READ) == 0);
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_REALTIME, two + 4096 - 8), EFAULT);
    CHECK_ERR(syscall(SYS_uname, two + 4096 - 100), EFAULT);
    CHECK(syscall(SYS_clock_gettime, CLOCK_REALTIME, two + 4096 - 16) == 0);
    /* Nothing was written into the read-only pages. */
    CHECK(memcmp(ro, text, sizeof text - 1) == 0);
    for (int i = sizeof text - 1; i < 4096; i++) CHECK(ro[i] == 0);
    for (int i = 0; i < 4096; i++) CHECK(two[4096 + i] == 0);
    printf("user copies ok\n");
    return 0;
}
