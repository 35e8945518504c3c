// System call sites in code the program writes itself (what a JIT does), which Moat's
// systrap platform may patch once they have run: rewriting the code with another number
// makes the new call; a jump straight to the `syscall` instruction of a site that has run
// makes the call in %eax; moving the code (mremap), forking, and mapping over the low
// addresses Moat uses for its trampolines all keep every site working.
#include "check.h"
#include <sys/mman.h>
#include <sys/wait.h>

/* mov $nr, %eax; syscall; ret */
static void emit(unsigned char *p, unsigned nr) {
    p[0] = 0xb8;
    memcpy(p + 1, &nr, 4);
    p[5] = 0x0f;
    p[6] = 0x05;
    p[7] = 0xc3;
}

static long run(unsigned char *code) {
    long r;
    __asm__ volatile("call *%1" : "=a"(r) : "r"(code) : "rcx", "r11", "memory");
    return r;
}

/* Call code+5 (the `syscall`) with %eax = nr. */
static long run_mid(unsigned char *code, long nr) {
    long r;
    __asm__ volatile("call *%1" : "=a"(r) : "r"(code + 5), "a"(nr) : "rcx", "r11", "memory");
    return r;
}

int main(void) {
    long pid = getpid(), ppid = getppid();
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    emit(p, SYS_getpid);
    CHECK(mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0);
    for (int i = 0; i < 100; i++)
        CHECK(run(p) == pid);
    /* Into the middle of the site: its `syscall`, with another number. */
    for (int i = 0; i < 100; i++) {
        CHECK(run_mid(p, SYS_getppid) == ppid);
        CHECK(run(p) == pid);
    }
    printf("a written site and a jump to its syscall\n");

    /* Writable again: the program reads its own bytes back, then writes another number. */
    CHECK(mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
    unsigned char want[8];
    emit(want, SYS_getpid);
    CHECK(memcmp(p, want, 8) == 0);
    emit(p, SYS_getppid);
    CHECK(mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0);
    for (int i = 0; i < 100; i++)
        CHECK(run(p) == ppid);
    printf("rewritten: the new call is made\n");

    /* Writable and executable at once: rewritten in place, only the number. */
    unsigned char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(w != MAP_FAILED);
    emit(w, SYS_getpid);
    for (int i = 0; i < 100; i++)
        CHECK(run(w) == pid);
    unsigned nr = SYS_getppid;
    memcpy(w + 1, &nr, 4);
    for (int i = 0; i < 100; i++)
        CHECK(run(w) == ppid);
    printf("rwx: rewritten in place\n");

    /* Moved: the code runs at its new address. */
    void *dst = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(dst != MAP_FAILED);
    unsigned char *q = mremap(p, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    CHECK(q == dst);
    for (int i = 0; i < 100; i++)
        CHECK(run(q) == ppid);
    printf("moved\n");

    /* A child runs the same sites. */
    fflush(stdout);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        /* Discarding the low addresses (nothing there natively: the result is not looked
         * at) must not break the sites either. */
        madvise((void *)0x60000, 0x100000, MADV_DONTNEED);
        for (int i = 0; i < 100; i++)
            if (run(q) != pid || run(w) != pid || run_mid(q, SYS_getpid) != getpid())
                _exit(1);
        _exit(0);
    }
    int st;
    CHECK(waitpid(child, &st, 0) == child);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("forked\n");

    /* The low addresses (where Moat keeps its trampolines) mapped by the program itself:
     * the sites that ran before still work, and so does the C library. */
    unsigned char *low = mmap((void *)0x50000, 0x200000, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(low == (void *)0x50000);
    memset(low, 0xcc, 0x200000);
    for (int i = 0; i < 100; i++) {
        CHECK(run(q) == ppid);
        CHECK(run_mid(q, SYS_getpid) == pid);
        CHECK(getppid() == ppid);
    }
    CHECK(munmap(low, 0x200000) == 0);
    for (int i = 0; i < 100; i++)
        CHECK(run(q) == ppid && getpid() == pid);
    printf("over the low addresses\n");
    return 0;
}
