// Priority-inheritance futexes as locks: LOCK_PI takes a free word (it then holds the
// caller's tid), EDEADLK for the holder, TRYLOCK_PI EAGAIN when held, a timed LOCK_PI
// ETIMEDOUT, ESRCH for a holder that does not exist, UNLOCK_PI EPERM for others and a
// hand-over to the waiter; PTHREAD_PRIO_INHERIT mutexes count right under contention, and a
// robust one whose holder died is EOWNERDEAD.
#include "check.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

static long futex(uint32_t *w, int op, const struct timespec *t) {
    return syscall(SYS_futex, w, op, 0, t, NULL, 0);
}
static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static uint32_t word;
static volatile int holder_ready, release_now, waiter_got;
static uint32_t waiter_tid;

static void *holder(void *arg) {
    (void)arg;
    CHECK(futex(&word, FUTEX_LOCK_PI, NULL) == 0);
    holder_ready = 1;
    while (!release_now)
        usleep(1000);
    CHECK(futex(&word, FUTEX_UNLOCK_PI, NULL) == 0);
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    waiter_tid = (uint32_t)gettid_();
    CHECK(futex(&word, FUTEX_LOCK_PI, NULL) == 0);
    CHECK((word & FUTEX_TID_MASK) == waiter_tid);
    waiter_got = 1;
    CHECK(futex(&word, FUTEX_UNLOCK_PI, NULL) == 0);
    return NULL;
}

static pthread_mutex_t pi_mutex;
static long counter;
static void *hammer(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        CHECK(pthread_mutex_lock(&pi_mutex) == 0);
        counter++;
        CHECK(pthread_mutex_unlock(&pi_mutex) == 0);
    }
    return NULL;
}

static pthread_mutex_t robust;
static void *die_holding(void *arg) {
    (void)arg;
    CHECK(pthread_mutex_lock(&robust) == 0);
    return NULL;
}

int main(void) {
    /* Free: taken with the caller's tid; again: EDEADLK; unlocked: free. */
    CHECK(futex(&word, FUTEX_LOCK_PI_PRIVATE, NULL) == 0);
    CHECK(word == (uint32_t)gettid_());
    CHECK_ERR(futex(&word, FUTEX_LOCK_PI_PRIVATE, NULL), EDEADLK);
    CHECK_ERR(futex(&word, FUTEX_TRYLOCK_PI, NULL), EDEADLK);
    CHECK(futex(&word, FUTEX_UNLOCK_PI, NULL) == 0 && word == 0);
    CHECK_ERR(futex(&word, FUTEX_UNLOCK_PI, NULL), EPERM);
    CHECK(futex(&word, FUTEX_TRYLOCK_PI, NULL) == 0 && word == (uint32_t)gettid_());
    CHECK(futex(&word, FUTEX_UNLOCK_PI, NULL) == 0);

    /* Held by another thread. */
    pthread_t h, w;
    CHECK(pthread_create(&h, NULL, holder, NULL) == 0);
    while (!holder_ready)
        usleep(1000);
    CHECK_ERR(futex(&word, FUTEX_TRYLOCK_PI, NULL), EAGAIN);
    CHECK_ERR(futex(&word, FUTEX_UNLOCK_PI, NULL), EPERM);
    struct timespec t;
    CHECK(clock_gettime(CLOCK_REALTIME, &t) == 0);
    t.tv_nsec += 50 * 1000 * 1000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    CHECK_ERR(futex(&word, FUTEX_LOCK_PI, &t), ETIMEDOUT);
    CHECK(word & FUTEX_WAITERS);
    /* A waiter queued behind the holder gets the lock handed over at unlock. */
    CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
    usleep(100 * 1000);
    CHECK(!waiter_got);
    release_now = 1;
    CHECK(pthread_join(h, NULL) == 0 && pthread_join(w, NULL) == 0);
    CHECK(waiter_got && word == 0);

    /* A holder that does not exist. */
    word = 0x3ffffffe;
    CHECK_ERR(futex(&word, FUTEX_LOCK_PI, NULL), ESRCH);
    word = 0;
    CHECK_ERR(syscall(SYS_futex, (char *)&word + 1, FUTEX_LOCK_PI, 0, NULL, NULL, 0), EINVAL);
    CHECK_ERR(futex(BAD_PTR, FUTEX_LOCK_PI, NULL), EINVAL);
    CHECK_ERR(futex((uint32_t *)8, FUTEX_LOCK_PI, NULL), EFAULT);

    /* PTHREAD_PRIO_INHERIT mutexes under contention. */
    pthread_mutexattr_t attr;
    CHECK(pthread_mutexattr_init(&attr) == 0);
    CHECK(pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT) == 0);
    CHECK(pthread_mutex_init(&pi_mutex, &attr) == 0);
    pthread_t ts[8];
    for (int i = 0; i < 8; i++)
        CHECK(pthread_create(&ts[i], NULL, hammer, NULL) == 0);
    for (int i = 0; i < 8; i++)
        CHECK(pthread_join(ts[i], NULL) == 0);
    CHECK(counter == 8 * 20000);

    /* A robust PI mutex whose holder exited holding it. */
    CHECK(pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0);
    CHECK(pthread_mutex_init(&robust, &attr) == 0);
    pthread_t d;
    CHECK(pthread_create(&d, NULL, die_holding, NULL) == 0);
    CHECK(pthread_join(d, NULL) == 0);
    CHECK(pthread_mutex_lock(&robust) == EOWNERDEAD);
    CHECK(pthread_mutex_consistent(&robust) == 0);
    CHECK(pthread_mutex_unlock(&robust) == 0);
    CHECK(pthread_mutex_lock(&robust) == 0);
    printf("pi futexes ok\n");
    return 0;
}
