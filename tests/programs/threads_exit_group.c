// expect: exit 3
// exit_group from a non-main thread ends the whole process with its code, while the main
// thread is blocked in pthread_join and a third thread is blocked in a futex wait.
#include "check.h"
#include <linux/futex.h>
#include <pthread.h>

static volatile int never;
static volatile int sleeper_ready;

static void *sleeper(void *arg) {
    (void)arg;
    sleeper_ready = 1;
    syscall(SYS_futex, &sleeper_ready, FUTEX_WAKE, 1, NULL, NULL, 0);
    for (;;)
        syscall(SYS_futex, &never, FUTEX_WAIT, 0, NULL, NULL, 0);
    return NULL;
}

static void *ender(void *arg) {
    (void)arg;
    printf("thread calls exit_group(3)\n");
    fflush(stdout);
    syscall(SYS_exit_group, 3);
    printf("FAIL: exit_group returned\n");
    return NULL;
}

int main(void) {
    pthread_t s, e;
    CHECK(pthread_create(&s, NULL, sleeper, NULL) == 0);
    while (!sleeper_ready)
        syscall(SYS_futex, &sleeper_ready, FUTEX_WAIT, 0, NULL, NULL, 0);
    printf("main joins\n");
    fflush(stdout);
    CHECK(pthread_create(&e, NULL, ender, NULL) == 0);
    pthread_join(s, NULL);
    printf("FAIL: join returned\n");
    return 0;
}
