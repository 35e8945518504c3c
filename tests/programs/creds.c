// Credentials per credentials(7), setresuid(2) and capabilities(7): the set*id calls and the
// saved set-user-ID rules, setfsuid, setgroups, capget/capset consistent with the IDs, and
// credentials belonging to a thread. Privilege is dropped in forked children; the program
// expects to start as root (it only says so otherwise).
#include "check.h"
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

typedef unsigned long long u64;

#define ALL_CAPS ((1ULL << 41) - 1)
/* The capabilities a filesystem UID other than 0 takes away (capabilities(7)). */
#define FS_CAPS                                                                \
    (0x1fULL | 1ULL << CAP_LINUX_IMMUTABLE | 1ULL << CAP_MKNOD |                \
     1ULL << CAP_MAC_OVERRIDE)

struct caps {
    u64 eff, perm, inh;
};

static struct caps caps_of(int pid) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    struct caps c = {
        d[0].effective | (u64)d[1].effective << 32,
        d[0].permitted | (u64)d[1].permitted << 32,
        d[0].inheritable | (u64)d[1].inheritable << 32,
    };
    return c;
}

static void res_uid(uid_t r, uid_t e, uid_t s) {
    uid_t a, b, c;
    CHECK(syscall(SYS_getresuid, &a, &b, &c) == 0);
    if (a != r || b != e || c != s) {
        printf("FAIL: uids %u %u %u, want %u %u %u\n", a, b, c, r, e, s);
        exit(1);
    }
}

static void res_gid(gid_t r, gid_t e, gid_t s) {
    gid_t a, b, c;
    CHECK(syscall(SYS_getresgid, &a, &b, &c) == 0);
    if (a != r || b != e || c != s) {
        printf("FAIL: gids %u %u %u, want %u %u %u\n", a, b, c, r, e, s);
        exit(1);
    }
}

static struct caps root_caps;

/* The capability calls' version handling and errors. */
static void capability_calls(void) {
    struct __user_cap_header_struct h = {0x12345678, 0};
    struct __user_cap_data_struct d[2];
    /* An unknown version is answered with the preferred one. */
    CHECK(syscall(SYS_capget, &h, NULL) == 0);
    CHECK(h.version == _LINUX_CAPABILITY_VERSION_3);
    h.version = 0x12345678;
    CHECK_ERR(syscall(SYS_capget, &h, d), EINVAL);
    CHECK(h.version == _LINUX_CAPABILITY_VERSION_3);
    h.version = 1;
    CHECK_ERR(syscall(SYS_capset, &h, d), EINVAL);
    CHECK(h.version == _LINUX_CAPABILITY_VERSION_3);
    CHECK_ERR(syscall(SYS_capget, BAD_PTR, d), EFAULT);
    CHECK_ERR(syscall(SYS_capget, &h, BAD_PTR), EFAULT);
    h.pid = -1;
    CHECK_ERR(syscall(SYS_capget, &h, d), EINVAL);
    h.pid = gone_pid();
    CHECK_ERR(syscall(SYS_capget, &h, d), ESRCH);
    /* Version 1 reports the low 32 bits only. */
    struct __user_cap_header_struct h1 = {_LINUX_CAPABILITY_VERSION_1, 0};
    memset(d, 0xff, sizeof d);
    CHECK(syscall(SYS_capget, &h1, d) == 0);
    CHECK(d[0].effective == (unsigned)root_caps.eff);
    CHECK(d[1].effective == 0xffffffffu);
    /* Setting what one has is allowed; another thread's sets are not the caller's. */
    h.pid = 0;
    h.version = _LINUX_CAPABILITY_VERSION_3;
    CHECK(syscall(SYS_capget, &h, d) == 0);
    CHECK(syscall(SYS_capset, &h, d) == 0);
    CHECK_ERR(syscall(SYS_capset, &h, NULL), EFAULT);
    h.pid = getppid();
    CHECK_ERR(syscall(SYS_capset, &h, d), EPERM);
}

/* setgroups needs privilege, bounds its size and keeps the list sorted. */
static void groups(void) {
    gid_t list[4] = {5, 3, 9, 3};
    CHECK(setgroups(0, NULL) == 0);
    CHECK(getgroups(0, NULL) == 0);
    CHECK(setgroups(4, list) == 0);
    gid_t got[8];
    CHECK(getgroups(8, got) == 4);
    CHECK(got[0] == 3 && got[1] == 3 && got[2] == 5 && got[3] == 9);
    CHECK_ERR(syscall(SYS_setgroups, 65537, list), EINVAL);
    CHECK_ERR(syscall(SYS_setgroups, -1, list), EINVAL);
    CHECK_ERR(syscall(SYS_setgroups, 1, BAD_PTR), EFAULT);
    gid_t bad = (gid_t)-1;
    CHECK_ERR(syscall(SYS_setgroups, 1, &bad), EINVAL);
    CHECK(getgroups(8, got) == 4);
    CHECK(setresuid(1000, 1000, 1000) == 0);
    CHECK_ERR(syscall(SYS_setgroups, 0, NULL), EPERM);
    CHECK_ERR(syscall(SYS_setgroups, 65537, list), EPERM);
}

static char dir[64];

/* setfsuid returns the previous value; file access follows the filesystem UID, and the
 * filesystem capabilities with it. */
static void fsuid(void) {
    char path[96];
    snprintf(path, sizeof path, "%s/secret", dir);
    CHECK(setfsuid(-1) == 0);
    CHECK(setfsuid(1234) == 0);
    CHECK(setfsuid(-1) == 1234);
    struct caps c = caps_of(0);
    CHECK((root_caps.eff & ~c.eff) == (root_caps.eff & FS_CAPS));
    CHECK(c.perm == root_caps.perm);
    CHECK_ERR(open(path, O_RDONLY), EACCES);
    /* access() checks with the real IDs. */
    CHECK(access(path, R_OK) == 0);
    FILE *status = fopen("/proc/self/status", "r");
    CHECK(status != NULL);
    char line[256];
    int seen = 0;
    while (fgets(line, sizeof line, status))
        if (strncmp(line, "Uid:", 4) == 0)
            seen = strcmp(line, "Uid:\t0\t0\t0\t1234\n") == 0;
    fclose(status);
    CHECK(seen);
    CHECK(setfsuid(0) == 1234);
    CHECK(caps_of(0).eff == root_caps.eff);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    close(fd);
    CHECK(setfsgid(77) == 0);
    CHECK(setfsgid(-1) == 77);
    /* A change of the effective UID resets the filesystem UID. */
    CHECK(setfsuid(1234) == 0);
    CHECK(seteuid(0) == 0);
    CHECK(setfsuid(-1) == 0);
    /* Unprivileged, only the real, effective, saved or current filesystem UID. */
    CHECK(syscall(SYS_setresuid, 10, 20, 30) == 0);
    CHECK(setfsuid(30) == 20);
    CHECK(setfsuid(5) == 30);
    CHECK(setfsuid(10) == 30);
    CHECK(setfsuid(-1) == 10);
}

/* Dropping root with a saved 0, getting it back, then dropping it for good. */
static void drop_and_regain(void) {
    CHECK(setresgid(65534, 65534, 65534) == 0);
    res_gid(65534, 65534, 65534);
    CHECK(setresuid(1000, 1000, 0) == 0);
    res_uid(1000, 1000, 0);
    struct caps c = caps_of(0);
    CHECK(c.eff == 0 && c.perm == root_caps.perm && c.inh == 0);
    /* The parent's sets are readable. */
    CHECK(caps_of(getppid()).perm == root_caps.perm);
    CHECK(seteuid(0) == 0);
    res_uid(1000, 0, 0);
    CHECK(caps_of(0).eff == root_caps.perm);
    CHECK(syscall(SYS_setresuid, -1, 1000, -1) == 0);
    /* Unprivileged setuid to the saved ID changes only the effective one. */
    CHECK(setuid(0) == 0);
    res_uid(1000, 0, 0);
    /* Privileged setuid changes all three: root is gone. */
    CHECK(setuid(1000) == 0);
    res_uid(1000, 1000, 1000);
    c = caps_of(0);
    CHECK(c.eff == 0 && c.perm == 0 && c.inh == 0);
    /* Without capabilities nothing can be raised. */
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{0}};
    d[0].effective = d[0].permitted = 1u << CAP_CHOWN;
    CHECK_ERR(syscall(SYS_capset, &h, d), EPERM);
    d[0].effective = 1u << CAP_CHOWN;
    d[0].permitted = 0;
    CHECK_ERR(syscall(SYS_capset, &h, d), EPERM);
    memset(d, 0, sizeof d);
    CHECK(syscall(SYS_capset, &h, d) == 0);
    CHECK_ERR(syscall(SYS_setuid, 0), EPERM);
    CHECK_ERR(syscall(SYS_setresuid, 0, -1, -1), EPERM);
    CHECK_ERR(syscall(SYS_setreuid, -1, 0), EPERM);
    CHECK_ERR(syscall(SYS_setgid, 0), EPERM);
    CHECK_ERR(syscall(SYS_setuid, -1), EINVAL);
    CHECK(syscall(SYS_setuid, 1000) == 0);
    CHECK(syscall(SYS_setresuid, -1, -1, -1) == 0);
    res_uid(1000, 1000, 1000);
    CHECK_ERR(syscall(SYS_getresuid, BAD_PTR, BAD_PTR, BAD_PTR), EFAULT);
}

/* The saved-ID rules of setreuid, setuid and setresuid without privilege. */
static void saved_uid_rules(void) {
    CHECK(syscall(SYS_setresuid, 1, 2, 3) == 0);
    res_uid(1, 2, 3);
    /* The effective UID moves away from the real one: the saved one follows it. */
    CHECK(syscall(SYS_setreuid, -1, 3) == 0);
    res_uid(1, 3, 3);
    CHECK_ERR(syscall(SYS_setresuid, 1, 2, 3), EPERM);
    /* Back to the real one: the saved one stays. */
    CHECK(syscall(SYS_setreuid, -1, 1) == 0);
    res_uid(1, 1, 3);
    CHECK(syscall(SYS_setuid, 3) == 0);
    res_uid(1, 3, 3);
    CHECK_ERR(syscall(SYS_setuid, 2), EPERM);
    /* Setting the real UID makes the saved one the new effective one. */
    CHECK(syscall(SYS_setreuid, 3, 1) == 0);
    res_uid(3, 1, 1);
    CHECK_ERR(syscall(SYS_setreuid, 7, -1), EPERM);
    CHECK_ERR(syscall(SYS_setreuid, -1, 7), EPERM);
    CHECK(syscall(SYS_setresuid, 1, 3, -1) == 0);
    res_uid(1, 3, 1);
    CHECK_ERR(syscall(SYS_setresuid, -1, -1, 2), EPERM);
}

static void saved_gid_rules(void) {
    CHECK(syscall(SYS_setresgid, 10, 20, 30) == 0);
    CHECK(syscall(SYS_setgid, 40) == 0);
    res_gid(40, 40, 40);
    CHECK(syscall(SYS_setresgid, 10, 20, 30) == 0);
    CHECK(syscall(SYS_setresuid, 100, 100, 100) == 0);
    res_gid(10, 20, 30);
    CHECK(syscall(SYS_setregid, 20, 10) == 0);
    res_gid(20, 10, 10);
    CHECK_ERR(syscall(SYS_setregid, 30, -1), EPERM);
    CHECK(syscall(SYS_setgid, 20) == 0);
    res_gid(20, 20, 10);
    CHECK_ERR(syscall(SYS_setgid, 30), EPERM);
    CHECK(syscall(SYS_setresgid, 10, -1, 20) == 0);
    res_gid(10, 20, 20);
    CHECK_ERR(syscall(SYS_setresgid, 30, -1, -1), EPERM);
    CHECK_ERR(syscall(SYS_getresgid, NULL, NULL, NULL), EFAULT);
}

/* A change of the effective IDs clears the parent-death signal. */
static void pdeathsig(void) {
    int sig = -1;
    CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR1) == 0);
    CHECK(syscall(SYS_setresuid, -1, 0, -1) == 0);
    CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == SIGUSR1);
    CHECK(syscall(SYS_setresuid, -1, 5, -1) == 0);
    CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == 0);
}

static int to_main[2], to_thread[2];

static void *raw_thread(void *arg) {
    (void)arg;
    CHECK(syscall(SYS_setresuid, 7, 7, 7) == 0);
    res_uid(7, 7, 7);
    return NULL;
}

static void *waiting_thread(void *arg) {
    (void)arg;
    char c;
    CHECK(read(to_thread[0], &c, 1) == 1);
    uid_t e = syscall(SYS_geteuid);
    CHECK(write(to_main[1], &e, sizeof e) == sizeof e);
    return NULL;
}

/* The raw call changes only the calling thread; libc's setresuid changes every thread. */
static void threads(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, raw_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    res_uid(0, 0, 0);
    CHECK(pipe(to_main) == 0 && pipe(to_thread) == 0);
    CHECK(pthread_create(&t, NULL, waiting_thread, NULL) == 0);
    CHECK(setresuid(2000, 2000, 0) == 0);
    CHECK(write(to_thread[1], "x", 1) == 1);
    uid_t e = 0;
    CHECK(read(to_main[0], &e, sizeof e) == sizeof e);
    CHECK(e == 2000);
    CHECK(pthread_join(t, NULL) == 0);
}

/* The exec'd image: exec made the saved and filesystem IDs the effective ones (the
 * filesystem UID stays 0 before the exec so that the program's path is searchable). */
static int after_exec(void) {
    res_uid(1000, 0, 0);
    res_gid(5, 6, 6);
    FILE *status = fopen("/proc/self/status", "r");
    CHECK(status != NULL);
    char line[256];
    int seen = 0;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, "Uid:", 4) == 0)
            seen += strcmp(line, "Uid:\t1000\t0\t0\t0\n") == 0;
        if (strncmp(line, "Gid:", 4) == 0)
            seen += strcmp(line, "Gid:\t5\t6\t6\t6\n") == 0;
    }
    fclose(status);
    CHECK(seen == 2);
    return 0;
}

static void exec_resets_saved(void) {
    CHECK(syscall(SYS_setresgid, 5, 6, 7) == 0);
    CHECK(setfsgid(9) == 6);
    CHECK(syscall(SYS_setresuid, 1000, 0, 1000) == 0);
    char *args[] = {"creds", "after-exec", NULL};
    char *env[] = {NULL};
    execve("/proc/self/exe", args, env);
    CHECK(!"execve returned");
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "after-exec") == 0) return after_exec();
    if (geteuid() != 0) {
        printf("not root: skipped\n");
        return 0;
    }
    res_uid(0, 0, 0);
    res_gid(0, 0, 0);
    root_caps = caps_of(0);
    CHECK(root_caps.eff == root_caps.perm && root_caps.inh == 0);
    CHECK((root_caps.perm & ~ALL_CAPS) == 0);
    CHECK(root_caps.eff & 1ULL << CAP_SETUID && root_caps.eff & 1ULL << CAP_SETGID);
    CHECK(caps_of(getpid()).perm == root_caps.perm);
    in_child(capability_calls);
    printf("capget and capset checked\n");

    in_child(groups);
    printf("setgroups checked\n");

    strcpy(dir, "/tmp/moat-creds-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chmod(dir, 0755) == 0);
    char path[96];
    snprintf(path, sizeof path, "%s/secret", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    in_child(fsuid);
    CHECK(unlink(path) == 0 && rmdir(dir) == 0);
    printf("setfsuid checked\n");

    in_child(drop_and_regain);
    printf("root dropped and regained through the saved UID\n");
    in_child(saved_uid_rules);
    in_child(saved_gid_rules);
    printf("saved ID rules checked\n");
    in_child(exec_resets_saved);
    printf("exec makes the saved IDs the effective ones\n");
    in_child(pdeathsig);
    in_child(threads);
    printf("credentials are per thread\n");
    res_uid(0, 0, 0);
    return 0;
}
