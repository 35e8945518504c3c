// arch_prctl(ARCH_SET_FS) really moves the thread pointer: %fs:0 reads through the new base,
// and the original base is restored. Raw syscalls in inline assembly keep libc (and errno,
// which lives behind %fs) out of the window where FS points elsewhere.
#include "check.h"
#include <asm/prctl.h>
static long raw_arch_prctl(long code, unsigned long arg) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "0"((long)SYS_arch_prctl), "D"(code), "S"(arg) : "rcx", "r11", "memory");
    return ret;
}
static unsigned long read_fs0(void) {
    unsigned long v;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(v));
    return v;
}
static unsigned long read_fs8(void) {
    unsigned long v;
    __asm__ volatile("mov %%fs:8, %0" : "=r"(v));
    return v;
}
/* A stand-in thread control block: word 0 points to itself, as glibc's does; the stack
 * protector's canary (at %fs:0x28) is copied so that compiled code stays happy. */
static unsigned long fake[64] __attribute__((aligned(64)));
int main(void) {
    unsigned long orig = 0, now = 0, seen0, seen8, back = 0;
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &orig) == 0 && orig != 0);
    CHECK(read_fs0() == orig);
    memcpy(fake, (void *)orig, sizeof fake);
    fake[0] = (unsigned long)fake;
    fake[1] = 0x5eed;
    long set = raw_arch_prctl(ARCH_SET_FS, (unsigned long)fake);
    seen0 = read_fs0();
    seen8 = read_fs8();
    long get = raw_arch_prctl(ARCH_GET_FS, (unsigned long)&now);
    long restore = raw_arch_prctl(ARCH_SET_FS, orig);
    CHECK(set == 0 && get == 0 && restore == 0);
    CHECK(now == (unsigned long)fake);
    CHECK(seen0 == (unsigned long)fake && seen8 == 0x5eed);
    CHECK(read_fs0() == orig);
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &back) == 0 && back == orig);
    /* GS is free for the program: set, read back through %gs, restore. */
    unsigned long gs = 0, gsv;
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)fake) == 0);
    __asm__ volatile("mov %%gs:8, %0" : "=r"(gsv));
    CHECK(gsv == 0x5eed);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, gs) == 0);
    /* Non-canonical bases are refused and change nothing. */
    CHECK_ERR(syscall(SYS_arch_prctl, ARCH_SET_FS, 0x0000800000000000ul), EPERM);
    CHECK_ERR(syscall(SYS_arch_prctl, ARCH_SET_GS, 0x8000000000000000ul), EPERM);
    CHECK(read_fs0() == orig);
    printf("fs base ok\n");
    return 0;
}
