// futex between threads and processes: WAIT/WAKE with exact wake counts, ETIMEDOUT for
// relative and absolute (CLOCK_MONOTONIC and CLOCK_REALTIME) timeouts, EAGAIN on a value
// mismatch, WAIT_BITSET/WAKE_BITSET selection, REQUEUE and CMP_REQUEUE, WAKE_OP with its
// operations and comparisons, and a shared futex on MAP_SHARED memory across fork (which a
// private wake does not reach).
//
// Wake counts are exact because the test first makes sure the waiters are asleep: a
// CMP_REQUEUE with no wakes moves the sleepers to a parking word and says how many it moved,
// and a second one moves them back, waking nobody.
#include "check.h"
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static long futex(volatile int *uaddr, int op, int val, long timeout_or_val2, volatile int *uaddr2,
                  int val3) {
    return syscall(SYS_futex, uaddr, op, val, timeout_or_val2, uaddr2, val3);
}

/* Returns once `n` waiters sleep on `word` (whose value is `val`). `park` must be a word no
 * one waits on; `priv` is 0 or FUTEX_PRIVATE_FLAG, as the waiters used. */
static void await_sleepers(volatile int *word, int val, int n, volatile int *park, int priv) {
    long counted = 0;
    for (int tries = 0; counted < n && tries < 20000; tries++) {
        long r = futex(word, FUTEX_CMP_REQUEUE | priv, 0, INT_MAX, park, val);
        CHECK(r >= 0);
        counted += r;
        if (counted < n) {
            struct timespec t = {0, 500 * 1000};
            nanosleep(&t, NULL);
        }
    }
    CHECK(counted == n);
    CHECK(futex(park, FUTEX_CMP_REQUEUE | priv, 0, INT_MAX, word, *park) == n);
}

static volatile int parking;

struct waiter {
    volatile int *word;
    int val;
    unsigned bitset; /* 0: FUTEX_WAIT_PRIVATE, else FUTEX_WAIT_BITSET_PRIVATE */
    long result;
    int err;
    pthread_t thread;
};

static void *wait_once(void *arg) {
    struct waiter *w = arg;
    errno = 0;
    if (w->bitset)
        w->result = futex(w->word, FUTEX_WAIT_BITSET_PRIVATE, w->val, 0, NULL, w->bitset);
    else
        w->result = futex(w->word, FUTEX_WAIT_PRIVATE, w->val, 0, NULL, 0);
    w->err = errno;
    return NULL;
}

static void start(struct waiter *w, volatile int *word, int val, unsigned bitset) {
    w->word = word;
    w->val = val;
    w->bitset = bitset;
    w->result = -2;
    CHECK(pthread_create(&w->thread, NULL, wait_once, w) == 0);
}

static void woken(struct waiter *w) {
    CHECK(pthread_join(w->thread, NULL) == 0);
    CHECK(w->result == 0);
}

static long long mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void wait_wake(void) {
    static volatile int a;
    struct waiter w[5];
    start(&w[0], &a, 0, 0);
    await_sleepers(&a, 0, 1, &parking, FUTEX_PRIVATE_FLAG);
    a = 1;
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0) == 1);
    woken(&w[0]);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0) == 0);
    /* Five sleepers: wake 2, then the other 3, then nobody. */
    a = 0;
    for (int i = 0; i < 5; i++)
        start(&w[i], &a, 0, 0);
    await_sleepers(&a, 0, 5, &parking, FUTEX_PRIVATE_FLAG);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 2, 0, NULL, 0) == 2);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 3);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 0);
    for (int i = 0; i < 5; i++)
        woken(&w[i]);
    printf("WAIT/WAKE: exact wake counts\n");
}

static void timeouts(void) {
    static volatile int a = 3;
    CHECK_ERR(futex(&a, FUTEX_WAIT_PRIVATE, 4, 0, NULL, 0), EAGAIN);
    struct timespec rel = {0, 20 * 1000 * 1000};
    long long t0 = mono_ns();
    CHECK_ERR(futex(&a, FUTEX_WAIT_PRIVATE, 3, (long)&rel, NULL, 0), ETIMEDOUT);
    CHECK(mono_ns() - t0 >= 20 * 1000 * 1000);
    /* WAIT_BITSET takes an absolute time, CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME. */
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 30 * 1000 * 1000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    CHECK_ERR(futex(&a, FUTEX_WAIT_BITSET_PRIVATE, 3, (long)&abs, NULL, FUTEX_BITSET_MATCH_ANY), ETIMEDOUT);
    CHECK(mono_ns() >= abs.tv_sec * 1000000000LL + abs.tv_nsec);
    struct timespec real, after;
    clock_gettime(CLOCK_REALTIME, &real);
    real.tv_nsec += 10 * 1000 * 1000;
    if (real.tv_nsec >= 1000000000) {
        real.tv_sec++;
        real.tv_nsec -= 1000000000;
    }
    CHECK_ERR(futex(&a, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 3, (long)&real, NULL,
                    FUTEX_BITSET_MATCH_ANY),
              ETIMEDOUT);
    clock_gettime(CLOCK_REALTIME, &after);
    CHECK(after.tv_sec > real.tv_sec || (after.tv_sec == real.tv_sec && after.tv_nsec >= real.tv_nsec));
    /* A deadline already past: at once. The value is still checked first. */
    struct timespec past = {1, 0};
    CHECK_ERR(futex(&a, FUTEX_WAIT_BITSET_PRIVATE, 3, (long)&past, NULL, FUTEX_BITSET_MATCH_ANY), ETIMEDOUT);
    CHECK_ERR(futex(&a, FUTEX_WAIT_BITSET_PRIVATE, 2, (long)&past, NULL, FUTEX_BITSET_MATCH_ANY), EAGAIN);
    printf("timeouts: relative, absolute monotonic and realtime; EAGAIN\n");
}

static void bitsets(void) {
    static volatile int a;
    struct waiter w[2];
    start(&w[0], &a, 0, 0x1);
    start(&w[1], &a, 0, 0x6);
    await_sleepers(&a, 0, 2, &parking, FUTEX_PRIVATE_FLAG);
    CHECK(futex(&a, FUTEX_WAKE_BITSET_PRIVATE, 10, 0, NULL, 0x8) == 0);
    CHECK(futex(&a, FUTEX_WAKE_BITSET_PRIVATE, 10, 0, NULL, 0x4) == 1);
    woken(&w[1]);
    CHECK(futex(&a, FUTEX_WAKE_BITSET_PRIVATE, 10, 0, NULL, 0x2) == 0);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 1); /* plain WAKE matches any */
    woken(&w[0]);
    CHECK_ERR(futex(&a, FUTEX_WAKE_BITSET_PRIVATE, 1, 0, NULL, 0), EINVAL);
    printf("bitsets: WAKE_BITSET wakes only matching waiters\n");
}

static void requeue(void) {
    static volatile int a, b;
    struct waiter w[4];
    for (int i = 0; i < 4; i++)
        start(&w[i], &a, 0, 0);
    await_sleepers(&a, 0, 4, &parking, FUTEX_PRIVATE_FLAG);
    CHECK_ERR(futex(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, 2, &b, 1), EAGAIN); /* a is not 1 */
    CHECK_ERR(futex(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, -1, &b, 0), EINVAL);
    /* Wake one, move two to b: three in all; one is left on a. */
    CHECK(futex(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, 2, &b, 0) == 3);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 1);
    CHECK(futex(&b, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0) == 1);
    /* FUTEX_REQUEUE does not compare: move the last one back to a, then wake it there. */
    CHECK(futex(&b, FUTEX_REQUEUE_PRIVATE, 0, 5, &a, 12345) == 1);
    CHECK(futex(&b, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 0);
    CHECK(futex(&a, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 1);
    for (int i = 0; i < 4; i++)
        woken(&w[i]);
    printf("requeue: CMP_REQUEUE counts woken plus moved, REQUEUE, EAGAIN, EINVAL\n");
}

static void wake_op(void) {
    static volatile int a, b;
    struct waiter wa, wb;
    /* b is 1: ADD 5 makes it 6, and since the old value 1 > 0 the waiter on b wakes too. */
    b = 1;
    start(&wa, &a, 0, 0);
    start(&wb, &b, 1, 0);
    await_sleepers(&a, 0, 1, &parking, FUTEX_PRIVATE_FLAG);
    await_sleepers(&b, 1, 1, &parking, FUTEX_PRIVATE_FLAG);
    CHECK(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b, FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_GT, 0)) == 2);
    CHECK(b == 6);
    woken(&wa);
    woken(&wb);
    /* b is 0: SET 9, old value 0 is not 1, so only the waiter on a wakes. */
    b = 0;
    start(&wa, &a, 0, 0);
    start(&wb, &b, 0, 0);
    await_sleepers(&a, 0, 1, &parking, FUTEX_PRIVATE_FLAG);
    await_sleepers(&b, 0, 1, &parking, FUTEX_PRIVATE_FLAG);
    CHECK(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b, FUTEX_OP(FUTEX_OP_SET, 9, FUTEX_OP_CMP_EQ, 1)) == 1);
    CHECK(b == 9);
    woken(&wa);
    CHECK(futex(&b, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0) == 1);
    woken(&wb);
    /* The other operations, with nobody to wake. */
    b = 0;
    CHECK(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b,
                FUTEX_OP((FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT), 4, FUTEX_OP_CMP_NE, 0)) == 0);
    CHECK(b == 16);
    b = 0xff;
    CHECK(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b, FUTEX_OP(FUTEX_OP_ANDN, 0x0f, FUTEX_OP_CMP_LT, 0)) == 0);
    CHECK(b == 0xf0);
    CHECK(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b, FUTEX_OP(FUTEX_OP_XOR, 0xff, FUTEX_OP_CMP_GE, 0)) == 0);
    CHECK(b == 0x0f);
    CHECK_ERR(futex(&a, FUTEX_WAKE_OP_PRIVATE, 1, 1, &b, FUTEX_OP(7, 1, FUTEX_OP_CMP_EQ, 0)), ENOSYS);
    CHECK(b == 0x0f);
    printf("WAKE_OP: ADD, SET, OR with shift, ANDN, XOR; the compare picks the second wake\n");
}

static void across_fork(void) {
    volatile int *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(w != MAP_FAILED);
    w[0] = 0;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        long r = futex(&w[0], FUTEX_WAIT, 0, 0, NULL, 0);
        _exit(r == 0 && w[0] == 1 ? 0 : 1);
    }
    await_sleepers(&w[0], 0, 1, &w[1], 0);
    /* A private wake names this process's own address space, not the shared page. */
    CHECK(futex(&w[0], FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0) == 0);
    w[0] = 1;
    CHECK(futex(&w[0], FUTEX_WAKE, 1, 0, NULL, 0) == 1);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("shared futex across fork: woken by a shared wake, not a private one\n");
}

int main(void) {
    wait_wake();
    timeouts();
    bitsets();
    requeue();
    wake_op();
    across_fork();
    return 0;
}
