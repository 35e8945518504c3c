// unshare(2): a thread's own copy of the fd table (CLONE_FILES) and of the filesystem context
// (CLONE_FS); CLONE_THREAD/SIGHAND/VM only with nothing to unshare (one thread); new
// namespaces need CAP_SYS_ADMIN (dropped here, so EPERM natively too); unknown flags EINVAL.
#include "check.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>

static int thread_fd = -1;
static char thread_cwd[256];

static void *private_files_and_fs(void *arg) {
    (void)arg;
    CHECK(unshare(CLONE_FILES) == 0);
    thread_fd = open("/dev/null", O_RDONLY);
    CHECK(thread_fd >= 0);
    CHECK(unshare(CLONE_FS) == 0);
    CHECK(chdir("/") == 0);
    CHECK(getcwd(thread_cwd, sizeof thread_cwd) != NULL);
    /* With another thread alive, the thread group cannot be unshared. */
    CHECK_ERR(unshare(CLONE_THREAD), EINVAL);
    CHECK_ERR(unshare(CLONE_VM), EINVAL);
    CHECK_ERR(unshare(CLONE_SIGHAND), EINVAL);
    return NULL;
}

static void *shared_files(void *arg) {
    (void)arg;
    thread_fd = open("/dev/null", O_RDONLY);
    CHECK(thread_fd >= 0);
    return NULL;
}

static void drop_sys_admin(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    d[0].effective &= ~(1u << CAP_SYS_ADMIN);
    d[0].permitted &= ~(1u << CAP_SYS_ADMIN);
    CHECK(syscall(SYS_capset, &h, d) == 0);
}

int main(void) {
    char cwd[256];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(strcmp(cwd, "/") != 0);

    /* Without unshare, a thread's new fd is the process's. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, shared_files, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(fcntl(thread_fd, F_GETFD) == 0);
    close(thread_fd);

    /* After unshare, neither its fds nor its working directory are the process's. */
    CHECK(pthread_create(&t, NULL, private_files_and_fs, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(strcmp(thread_cwd, "/") == 0);
    errno = 0;
    CHECK(fcntl(thread_fd, F_GETFD) == -1 && errno == EBADF);
    char now[256];
    CHECK(getcwd(now, sizeof now) != NULL && strcmp(now, cwd) == 0);

    /* Single-threaded again: nothing to unshare, so these succeed. (A joined thread may
     * still be leaving the thread group for a moment after pthread_join returns, on Linux
     * too: its tid is cleared before it leaves, so give it a little time.) */
    CHECK(unshare(0) == 0);
    int tries = 0;
    while (unshare(CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) != 0 && errno == EINVAL &&
           ++tries < 1000)
        usleep(1000);
    CHECK(tries < 1000);
    CHECK(unshare(CLONE_FILES | CLONE_FS | CLONE_SYSVSEM) == 0);
    CHECK(access(".", F_OK) == 0);

    CHECK_ERR(unshare(CLONE_SETTLS), EINVAL);
    CHECK_ERR(unshare(CLONE_VFORK), EINVAL);
    if (getuid() == 0)
        drop_sys_admin();
    CHECK_ERR(unshare(CLONE_NEWUTS), EPERM);
    CHECK_ERR(unshare(CLONE_NEWNET), EPERM);
    CHECK_ERR(unshare(CLONE_NEWNS), EPERM);
    printf("unshare checked\n");
    return 0;
}
