// kcmp: a dup'd fd and a forked child's copy are the same open file, a re-opened file is
// not; threads share the address space, fd table, filesystem context and signal handlers,
// a forked child none of them, a CLONE_FILES child its fd table; ESRCH, EBADF, EINVAL.
#include "check.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static long kcmp(pid_t a, pid_t b, int type, unsigned long x, unsigned long y) {
    return syscall(SYS_kcmp, a, b, type, x, y);
}

static volatile pid_t thread_tid;
static volatile int done;
static void *thread(void *arg) {
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    while (!done)
        usleep(1000);
    return NULL;
}

static int child_main(void *arg) {
    (void)arg;
    pause();
    return 0;
}

int main(void) {
    pid_t me = getpid();
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    int copy = dup(fd), other = open("f", O_RDONLY);
    CHECK(kcmp(me, me, KCMP_FILE, fd, copy) == 0);
    long r = kcmp(me, me, KCMP_FILE, fd, other);
    CHECK(r == 1 || r == 2);
    CHECK(kcmp(me, me, KCMP_FILE, other, fd) == 3 - r);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
    while (!thread_tid)
        usleep(1000);
    for (int type = KCMP_VM; type <= KCMP_SIGHAND; type++)
        CHECK(kcmp(me, thread_tid, type, 0, 0) == 0);

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    CHECK(kcmp(me, child, KCMP_FILE, fd, fd) == 0);
    for (int type = KCMP_VM; type <= KCMP_SIGHAND; type++) {
        r = kcmp(me, child, type, 0, 0);
        CHECK(r == 1 || r == 2);
    }
    static char stack[64 * 1024];
    pid_t sharer = clone(child_main, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL);
    CHECK(sharer > 0);
    CHECK(kcmp(me, sharer, KCMP_FILES, 0, 0) == 0);
    r = kcmp(me, sharer, KCMP_VM, 0, 0);
    CHECK(r == 1 || r == 2);

    CHECK_ERR(kcmp(me, me, KCMP_FILE, fd, 999), EBADF);
    CHECK_ERR(kcmp(me, gone_pid(), KCMP_VM, 0, 0), ESRCH);
    CHECK_ERR(kcmp(me, me, 99, 0, 0), EINVAL);
    kill(child, SIGKILL);
    kill(sharer, SIGKILL);
    CHECK(waitpid(child, NULL, 0) == child && waitpid(sharer, NULL, 0) == sharer);
    done = 1;
    CHECK(pthread_join(t, NULL) == 0);
    printf("kcmp ok\n");
    return 0;
}
