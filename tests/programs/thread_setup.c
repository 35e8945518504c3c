// The calls libc makes for its first thread: set_tid_address, robust lists, arch_prctl.
#include "check.h"
#include <asm/prctl.h>
static int tid_word;
struct robust_head { void *next; long offset; void *pending; } head = {&head, 0, NULL};
int main(void) {
    CHECK(syscall(SYS_set_tid_address, &tid_word) == syscall(SYS_gettid));
    CHECK(syscall(SYS_set_robust_list, &head, sizeof head) == 0);
    CHECK_ERR(syscall(SYS_set_robust_list, &head, sizeof head + 1), EINVAL);
    void *got;
    size_t len;
    CHECK(syscall(SYS_get_robust_list, 0, &got, &len) == 0);
    CHECK(got == &head && len == sizeof head);
    CHECK_ERR(syscall(SYS_get_robust_list, 0, BAD_PTR, &len), EFAULT);
    CHECK_ERR(syscall(SYS_get_robust_list, 999999, &got, &len), ESRCH);

    unsigned long fs, gs, probe = 0;
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) == 0 && fs != 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, 0x1234000) == 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &probe) == 0 && probe == 0x1234000);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, gs) == 0);
    /* Setting FS to its own value keeps libc's thread pointer intact. */
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_FS, fs) == 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &probe) == 0 && probe == fs);
    CHECK_ERR(syscall(SYS_arch_prctl, ARCH_GET_FS, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_arch_prctl, ARCH_SET_FS, 0xffff800000000000ul), EPERM);
    CHECK_ERR(syscall(SYS_arch_prctl, 0x9999, 0), EINVAL);
    CHECK(syscall(SYS_arch_prctl, 0x1011 /* ARCH_GET_CPUID */, 0) == 1);
    printf("thread setup ok\n");
    return 0;
}
