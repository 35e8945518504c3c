// fork copies private memory (copy-on-write): the child's writes to its stack, heap, globals
// and an 8 MiB private mapping (touched sparsely, some pages never touched before the fork)
// are invisible to the parent and the parent's to the child; MAP_SHARED|MAP_ANONYMOUS memory
// is shared both ways; MADV_DONTNEED on a private page zeroes only the caller's copy, and on
// shared anonymous memory drops nothing.
#include "check.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define BIG (8ul << 20)
#define PAGE 4096ul

static int global = 100;
static int zeroed_global; /* .bss */

/* Pipes: to_child and to_parent carry one byte per step of the dance. */
static int to_child[2], to_parent[2];
static void send_to(int fd) { CHECK(write(fd, "x", 1) == 1); }
static void await(int fd) {
    char c;
    CHECK(read(fd, &c, 1) == 1);
}

/* The byte the private region holds at page `i` for generation `gen`. */
static unsigned char mark(size_t i, int gen) { return (unsigned char)(i * 7 + gen * 31 + 1); }

int main(void) {
    volatile int on_stack = 200;
    int *heap = malloc(1000 * sizeof(int));
    CHECK(heap != NULL);
    for (int i = 0; i < 1000; i++)
        heap[i] = i;
    unsigned char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(big != MAP_FAILED);
    /* Touch every 16th page; the others stay never-faulted. */
    for (size_t i = 0; i < BIG / PAGE; i += 16)
        big[i * PAGE + 5] = mark(i, 0);
    int *shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    shared[0] = 1;
    shared[PAGE / sizeof(int)] = 77;
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* The child sees the parent's values from before the fork... */
        CHECK(on_stack == 200 && global == 100 && zeroed_global == 0 && heap[999] == 999);
        CHECK(big[16 * PAGE + 5] == mark(16, 0) && big[PAGE + 5] == 0);
        /* ...and changes its own copies, including pages never touched before. */
        on_stack = 201;
        global = 101;
        zeroed_global = 1;
        heap[999] = -1;
        for (size_t i = 0; i < BIG / PAGE; i += 16)
            big[i * PAGE + 5] = mark(i, 1);
        big[3 * PAGE] = 0xc1; /* never touched by anyone before */
        CHECK(shared[0] == 1);
        shared[0] = 2;
        send_to(to_parent[1]);
        await(to_child[0]); /* the parent has checked and written its own values */
        CHECK(on_stack == 201 && global == 101 && zeroed_global == 1 && heap[999] == -1);
        for (size_t i = 0; i < BIG / PAGE; i += 16)
            CHECK(big[i * PAGE + 5] == mark(i, 1));
        CHECK(big[3 * PAGE] == 0xc1 && big[5 * PAGE] == 0);
        CHECK(shared[0] == 3); /* the parent's write to shared memory */
        /* MADV_DONTNEED: a private anonymous page reads back as zeroes (in this process). */
        CHECK(madvise(big + 16 * PAGE, PAGE, MADV_DONTNEED) == 0);
        CHECK(big[16 * PAGE + 5] == 0);
        /* Shared anonymous memory keeps its contents: only the mapping of it is dropped. */
        CHECK(madvise((char *)shared + PAGE, PAGE, MADV_DONTNEED) == 0);
        CHECK(shared[PAGE / sizeof(int)] == 77);
        shared[PAGE / sizeof(int)] = 78;
        send_to(to_parent[1]);
        _exit(0);
    }
    await(to_parent[0]); /* the child has written its copies */
    CHECK(on_stack == 200 && global == 100 && zeroed_global == 0 && heap[999] == 999);
    for (size_t i = 0; i < BIG / PAGE; i += 16)
        CHECK(big[i * PAGE + 5] == mark(i, 0));
    CHECK(big[3 * PAGE] == 0);
    CHECK(shared[0] == 2);
    printf("child's private writes invisible to the parent, shared write seen\n");
    /* Now the parent writes, including a page the child has never touched. */
    on_stack = 202;
    global = 102;
    heap[999] = -2;
    for (size_t i = 0; i < BIG / PAGE; i += 32)
        big[i * PAGE + 5] = mark(i, 2);
    big[5 * PAGE] = 0xb5;
    shared[0] = 3;
    send_to(to_child[1]);
    await(to_parent[0]); /* the child has checked, and used MADV_DONTNEED */
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("parent's private writes invisible to the child, shared write seen\n");
    /* The child's MADV_DONTNEED did not touch the parent's copy of that page. */
    CHECK(big[16 * PAGE + 5] == mark(16, 0));
    CHECK(shared[PAGE / sizeof(int)] == 78);
    CHECK(on_stack == 202 && global == 102 && heap[999] == -2 && big[5 * PAGE] == 0xb5);
    /* And in the parent too, MADV_DONTNEED zeroes the private page (every 32nd was rewritten). */
    CHECK(madvise(big + 32 * PAGE, PAGE, MADV_DONTNEED) == 0);
    CHECK(big[32 * PAGE + 5] == 0 && big[48 * PAGE + 5] == mark(48, 0));
    printf("MADV_DONTNEED: private page zeroed for the caller only, shared page kept\n");
    return 0;
}
