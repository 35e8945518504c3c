// `mov $nr, %eax; syscall` sites (the kind Moat's systrap platform patches into jumps) run
// from many threads at once while other threads send them signals: every call returns the
// right result, and a call leaves every register but %rax, %rcx and %r11 as it was — the
// argument registers, the callee-saved ones, %r8-%r10, the arithmetic flags, vector
// registers — and the 128-byte red zone below the stack pointer untouched. Also an
// application GS base (which the patched path must not trust) and Linux's initial GS base.
#include "check.h"
#include <asm/prctl.h>
#include <sys/mman.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define THREADS 6
#define ROUNDS 3000

/* probe(): fill every register and the red zone with patterns, `mov $39, %eax; syscall`
 * (getpid), and compare everything afterwards. Returns a bit mask of what changed; the
 * result of the call lands in probe_result, the flags (lahf/seto) in probe_flags. */
__thread long probe_result, probe_flags;
long probe(void);
__asm__(".text\n"
        ".globl probe\n"
        "probe:\n"
        "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
        "  mov $0x1111111111, %rbx\n"
        "  mov $0x2222222222, %rbp\n"
        "  mov $0x3333333333, %r12\n"
        "  mov $0x4444444444, %r13\n"
        "  mov $0x5555555555, %r14\n"
        "  mov $0x6666666666, %r15\n"
        "  mov $0x7777777777, %rdi\n"
        "  mov $0x8888888888, %rsi\n"
        "  mov $0x9999999999, %rdx\n"
        "  mov $0xaaaaaaaaaa, %r8\n"
        "  mov $0xbbbbbbbbbb, %r9\n"
        "  mov $0xcccccccccc, %r10\n"
        "  movq %rbx, %xmm0\n  movq %rbp, %xmm1\n  movq %r12, %xmm8\n  movq %r13, %xmm15\n"
        /* The red zone: 16 words below %rsp. */
        "  mov $-16, %rcx\n"
        "1:\n"
        "  lea 0x10203(%rcx), %rax\n"
        "  mov %rax, (%rsp,%rcx,8)\n"
        "  inc %rcx\n"
        "  jnz 1b\n"
        /* Flags: OF and SF (0x7f + 1), then CF. */
        "  mov $0x7f, %al\n"
        "  add $1, %al\n"
        "  stc\n"
        "  mov $39, %eax\n"
        "  syscall\n"
        "  mov %rax, %r11\n"
        "  lahf\n"
        "  seto %al\n"
        "  movzwl %ax, %eax\n"
        "  mov %rax, %fs:probe_flags@tpoff\n"
        "  mov %r11, %fs:probe_result@tpoff\n"
        "  xor %eax, %eax\n"
        "  mov $0x1111111111, %rcx\n  cmp %rcx, %rbx\n  je 2f\n  or $1, %eax\n2:\n"
        "  mov $0x2222222222, %rcx\n  cmp %rcx, %rbp\n  je 2f\n  or $2, %eax\n2:\n"
        "  mov $0x3333333333, %rcx\n  cmp %rcx, %r12\n  je 2f\n  or $4, %eax\n2:\n"
        "  mov $0x4444444444, %rcx\n  cmp %rcx, %r13\n  je 2f\n  or $8, %eax\n2:\n"
        "  mov $0x5555555555, %rcx\n  cmp %rcx, %r14\n  je 2f\n  or $16, %eax\n2:\n"
        "  mov $0x6666666666, %rcx\n  cmp %rcx, %r15\n  je 2f\n  or $32, %eax\n2:\n"
        "  mov $0x7777777777, %rcx\n  cmp %rcx, %rdi\n  je 2f\n  or $64, %eax\n2:\n"
        "  mov $0x8888888888, %rcx\n  cmp %rcx, %rsi\n  je 2f\n  or $128, %eax\n2:\n"
        "  mov $0x9999999999, %rcx\n  cmp %rcx, %rdx\n  je 2f\n  or $256, %eax\n2:\n"
        "  mov $0xaaaaaaaaaa, %rcx\n  cmp %rcx, %r8\n  je 2f\n  or $512, %eax\n2:\n"
        "  mov $0xbbbbbbbbbb, %rcx\n  cmp %rcx, %r9\n  je 2f\n  or $1024, %eax\n2:\n"
        "  mov $0xcccccccccc, %rcx\n  cmp %rcx, %r10\n  je 2f\n  or $2048, %eax\n2:\n"
        "  movq %xmm0, %rcx\n  cmp %rcx, %rbx\n  je 2f\n  or $4096, %eax\n2:\n"
        "  movq %xmm1, %rcx\n  cmp %rcx, %rbp\n  je 2f\n  or $8192, %eax\n2:\n"
        "  movq %xmm8, %rcx\n  cmp %rcx, %r12\n  je 2f\n  or $16384, %eax\n2:\n"
        "  movq %xmm15, %rcx\n  cmp %rcx, %r13\n  je 2f\n  or $32768, %eax\n2:\n"
        "  mov $-16, %rcx\n"
        "3:\n"
        "  lea 0x10203(%rcx), %rdx\n"
        "  cmp %rdx, (%rsp,%rcx,8)\n"
        "  je 4f\n"
        "  or $65536, %eax\n"
        "4:\n"
        "  inc %rcx\n"
        "  jnz 3b\n"
        "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
        "  ret\n");

/* A site with arguments and a result that depends on them: lseek(fd, off, SEEK_SET). */
static long site_lseek(long fd, long off) {
    long r;
    __asm__ volatile("mov $8, %%eax\n\tsyscall"
                     : "=a"(r)
                     : "D"(fd), "S"(off), "d"(0L)
                     : "rcx", "r11", "memory");
    return r;
}

static long site_getpid(void) {
    long r;
    __asm__ volatile("mov $39, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

static pid_t pid;
static atomic_long handled;
static __thread volatile int my_handled;
static atomic_int stop, done;
static int fds[THREADS];

static void on_signal(int sig) {
    (void)sig;
    /* The handler makes a patched call itself and clobbers vector registers. */
    if (site_getpid() == pid) {
        atomic_fetch_add(&handled, 1);
        my_handled++;
    }
    __asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm8, %%xmm8\n\t"
                     "pxor %%xmm15, %%xmm15" ::: "xmm0", "xmm1", "xmm8", "xmm15");
}

static void *hammer(void *arg) {
    long i = (long)arg;
    /* Until this thread has also handled a few signals in between. */
    for (int r = 0; r < ROUNDS || my_handled < 3; r++) {
        long bad = probe();
        if (bad != 0 || probe_result != pid) {
            printf("FAIL thread %ld round %d: changed %#lx, result %ld\n", i, r, bad, probe_result);
            exit(1);
        }
        /* OF, SF, AF and CF set (0x7f + 1, stc): %ah has SF, AF, CF; %al = OF. */
        if ((probe_flags & 0xd5ff) != 0x9101) {
            printf("FAIL thread %ld: flags %#lx\n", i, probe_flags);
            exit(1);
        }
        long off = i * 100000 + r;
        long got = site_lseek(fds[i], off);
        if (got != off) {
            printf("FAIL thread %ld: lseek to %ld gave %ld\n", i, off, got);
            exit(1);
        }
    }
    atomic_fetch_add(&done, 1);
    return NULL;
}

static pthread_t workers[THREADS];

static void *signaller(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        for (int i = 0; i < THREADS; i++)
            pthread_kill(workers[i], SIGUSR1);
        usleep(200);
    }
    return NULL;
}

int main(void) {
    pid = getpid();
    unsigned long gs = 1;
    /* Linux starts threads with a zero GS base. */
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0);
    CHECK(gs == 0);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    for (int i = 0; i < THREADS; i++) {
        fds[i] = memfd_create("patched_sites", 0);
        CHECK(fds[i] >= 0);
    }
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&workers[i], NULL, hammer, (void *)i) == 0);
    pthread_t sig;
    CHECK(pthread_create(&sig, NULL, signaller, NULL) == 0);
    /* The workers are joined only once nothing signals them any more. */
    while (atomic_load(&done) < THREADS)
        usleep(1000);
    atomic_store(&stop, 1);
    CHECK(pthread_join(sig, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(workers[i], NULL) == 0);
    printf("%d threads x %d rounds: registers, red zone, flags and results kept\n", THREADS, ROUNDS);
    printf("signal handlers made calls too: %s\n", atomic_load(&handled) > 0 ? "yes" : "no");

    /* The application's own GS base: calls still work, and it reads back. */
    static unsigned long mine[64];
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)mine) == 0);
    for (int r = 0; r < 1000; r++) {
        CHECK(probe() == 0);
        CHECK(probe_result == pid);
        CHECK(site_getpid() == pid);
    }
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0);
    CHECK(gs == (unsigned long)mine);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL) == 0);
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) == 0);
    CHECK(gs == 0);
    for (int r = 0; r < 1000; r++)
        CHECK(probe() == 0 && probe_result == pid);
    printf("with an application GS base too\n");
    return 0;
}
