// Scheduling per sched(7): CPU affinity round-trips and is intersected with the allowed CPUs,
// per thread and inherited; policies and priority ranges; SCHED_RESET_ON_FORK; nice values
// with getpriority's raw 20-nice encoding; getcpu within the affinity; membarrier commands.
// Privileged changes are checked against what capget says (a container's root may lack
// CAP_SYS_NICE); unprivileged ones in children that dropped root. No CPU numbers are printed.
#include "check.h"
#include <linux/capability.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif
#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static int has_cap(int cap) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    return (d[cap / 32].effective >> (cap % 32)) & 1;
}

/* Drop root for good, with no real-time or nice allowance. */
static void drop_root(uid_t uid) {
    struct rlimit zero = {0, 0};
    CHECK(setrlimit(RLIMIT_RTPRIO, &zero) == 0);
    CHECK(setrlimit(RLIMIT_NICE, &zero) == 0);
    CHECK(syscall(SYS_setresgid, 65534, 65534, 65534) == 0);
    CHECK(syscall(SYS_setresuid, uid, uid, uid) == 0);
}

static cpu_set_t allowed;
static int first_cpu;

static void getaff(cpu_set_t *set) {
    CPU_ZERO(set);
    CHECK(syscall(SYS_sched_getaffinity, 0, sizeof *set, set) > 0);
}

static void *pin_thread(void *arg) {
    (void)arg;
    cpu_set_t one, got;
    CPU_ZERO(&one);
    CPU_SET(first_cpu, &one);
    CHECK(syscall(SYS_sched_setaffinity, 0, sizeof one, &one) == 0);
    getaff(&got);
    CHECK(CPU_EQUAL(&got, &one));
    return NULL;
}

static void affinity(void) {
    cpu_set_t one, got;
    CPU_ZERO(&one);
    CPU_SET(first_cpu, &one);
    CHECK(syscall(SYS_sched_setaffinity, 0, sizeof one, &one) == 0);
    getaff(&got);
    CHECK(CPU_EQUAL(&got, &one));
    unsigned cpu = 9999, node = 9999;
    CHECK(syscall(SYS_getcpu, &cpu, &node, NULL) == 0);
    CHECK(cpu == (unsigned)first_cpu && node < 9999);
    FILE *status = fopen("/proc/self/status", "r");
    CHECK(status != NULL);
    char line[256], want[64];
    snprintf(want, sizeof want, "Cpus_allowed_list:\t%d\n", first_cpu);
    int seen = 0;
    while (fgets(line, sizeof line, status))
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) seen = strcmp(line, want) == 0;
    fclose(status);
    CHECK(seen);
    /* A child inherits the mask. */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        getaff(&got);
        CHECK(CPU_EQUAL(&got, &one));
        CHECK(syscall(SYS_sched_setaffinity, 0, sizeof allowed, &allowed) == 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    getaff(&got);
    CHECK(CPU_EQUAL(&got, &one));
    /* Every bit set: the allowed CPUs, at least those the program started with. */
    unsigned char all[128];
    memset(all, 0xff, sizeof all);
    CHECK(syscall(SYS_sched_setaffinity, 0, sizeof all, all) == 0);
    getaff(&got);
    cpu_set_t both;
    CPU_AND(&both, &got, &allowed);
    CHECK(CPU_EQUAL(&both, &allowed));
    /* Only CPUs that do not exist. */
    unsigned char none[128] = {0};
    none[127] = 0x80;
    CHECK_ERR(syscall(SYS_sched_setaffinity, 0, sizeof none, none), EINVAL);
    CHECK_ERR(syscall(SYS_sched_setaffinity, 0, 0, &one), EINVAL);
    CHECK_ERR(syscall(SYS_sched_setaffinity, 0, sizeof one, BAD_PTR), EFAULT);
    pid_t gone = gone_pid();
    CHECK_ERR(syscall(SYS_sched_setaffinity, gone, sizeof one, &one), ESRCH);
    /* The mask is read before the task is looked up. */
    CHECK_ERR(syscall(SYS_sched_setaffinity, gone, sizeof one, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_sched_getaffinity, gone, sizeof got, &got), ESRCH);
    CHECK_ERR(syscall(SYS_sched_getaffinity, gone, 3, &got), EINVAL);
    CHECK(syscall(SYS_getcpu, NULL, NULL, NULL) == 0);
    CHECK_ERR(syscall(SYS_getcpu, BAD_PTR, NULL, NULL), EFAULT);
    CHECK_ERR(syscall(SYS_getcpu, &cpu, BAD_PTR, NULL), EFAULT);
    /* Affinity belongs to a thread. */
    CHECK(syscall(SYS_sched_setaffinity, 0, sizeof allowed, &allowed) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pin_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    getaff(&got);
    CHECK(CPU_EQUAL(&got, &allowed));
    /* Someone else's process needs privilege. */
    pid_t parent = getpid();
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        drop_root(54321);
        CHECK_ERR(syscall(SYS_sched_setaffinity, parent, sizeof one, &one), EPERM);
        CHECK(syscall(SYS_sched_getaffinity, parent, sizeof got, &got) > 0);
        CHECK(syscall(SYS_sched_setaffinity, 0, sizeof one, &one) == 0);
        _exit(0);
    }
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
}

static void policy_is(int policy, int priority) {
    CHECK(syscall(SYS_sched_getscheduler, 0) == policy);
    struct sched_param p = {-1};
    CHECK(syscall(SYS_sched_getparam, 0, &p) == 0);
    CHECK(p.sched_priority == priority);
}

static void set_policy(int policy, int priority, int err) {
    struct sched_param p = {priority};
    if (err)
        CHECK_ERR(syscall(SYS_sched_setscheduler, 0, policy, &p), err);
    else
        CHECK(syscall(SYS_sched_setscheduler, 0, policy, &p) == 0);
}

static void rr_interval(long min_ns, long max_ns) {
    struct timespec ts = {-1, -1};
    CHECK(syscall(SYS_sched_rr_get_interval, 0, &ts) == 0);
    CHECK(ts.tv_sec == 0 && ts.tv_nsec >= min_ns && ts.tv_nsec <= max_ns);
}

/* Real-time policies as root (when root may use them). */
static void realtime(void) {
    struct sched_param p = {10};
    long r = syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &p);
    if (!has_cap(CAP_SYS_NICE)) {
        CHECK(r == -1 && errno == EPERM);
        return;
    }
    /* A cgroup without real-time runtime refuses even root. */
    if (r != 0) {
        CHECK(errno == EPERM);
        return;
    }
    policy_is(SCHED_FIFO, 10);
    rr_interval(0, 0);
    struct sched_param q = {20};
    CHECK(syscall(SYS_sched_setparam, 0, &q) == 0);
    policy_is(SCHED_FIFO, 20);
    q.sched_priority = 0;
    CHECK_ERR(syscall(SYS_sched_setparam, 0, &q), EINVAL);
    set_policy(SCHED_RR | SCHED_RESET_ON_FORK, 5, 0);
    CHECK(syscall(SYS_sched_getscheduler, 0) == (SCHED_RR | SCHED_RESET_ON_FORK));
    rr_interval(1, 999999999);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        policy_is(SCHED_OTHER, 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    set_policy(SCHED_OTHER, 0, 0);
    policy_is(SCHED_OTHER, 0);
}

static void unprivileged_policies(void) {
    pid_t parent = getppid();
    drop_root(54321);
    set_policy(SCHED_FIFO, 1, EPERM);
    set_policy(SCHED_RR, 1, EPERM);
    set_policy(SCHED_BATCH, 0, 0);
    policy_is(SCHED_BATCH, 0);
    /* Only privilege clears SCHED_RESET_ON_FORK. */
    set_policy(SCHED_OTHER | SCHED_RESET_ON_FORK, 0, 0);
    CHECK(syscall(SYS_sched_getscheduler, 0) == SCHED_RESET_ON_FORK);
    set_policy(SCHED_OTHER, 0, EPERM);
    set_policy(SCHED_IDLE | SCHED_RESET_ON_FORK, 0, 0);
    /* Leaving SCHED_IDLE is asking for a nice value RLIMIT_NICE does not allow. */
    set_policy(SCHED_BATCH | SCHED_RESET_ON_FORK, 0, EPERM);
    struct sched_param p = {0};
    CHECK_ERR(syscall(SYS_sched_setscheduler, parent, SCHED_BATCH, &p), EPERM);
    CHECK(syscall(SYS_sched_getscheduler, parent) == SCHED_OTHER);
}

static void idle_and_back(void) {
    set_policy(SCHED_BATCH, 0, 0);
    policy_is(SCHED_BATCH, 0);
    set_policy(SCHED_IDLE, 0, 0);
    policy_is(SCHED_IDLE, 0);
    struct sched_param p = {0};
    long r = syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &p);
    if (has_cap(CAP_SYS_NICE))
        CHECK(r == 0);
    else
        CHECK(r == -1 && errno == EPERM);
}

static void policies(void) {
    policy_is(SCHED_OTHER, 0);
    int rt[] = {SCHED_FIFO, SCHED_RR};
    for (int i = 0; i < 2; i++) {
        CHECK(syscall(SYS_sched_get_priority_max, rt[i]) == 99);
        CHECK(syscall(SYS_sched_get_priority_min, rt[i]) == 1);
    }
    int fair[] = {SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, 6 /* SCHED_DEADLINE */};
    for (int i = 0; i < 4; i++) {
        CHECK(syscall(SYS_sched_get_priority_max, fair[i]) == 0);
        CHECK(syscall(SYS_sched_get_priority_min, fair[i]) == 0);
    }
    int bad[] = {-1, 4, 1000, SCHED_FIFO | SCHED_RESET_ON_FORK};
    for (int i = 0; i < 4; i++) {
        CHECK_ERR(syscall(SYS_sched_get_priority_max, bad[i]), EINVAL);
        CHECK_ERR(syscall(SYS_sched_get_priority_min, bad[i]), EINVAL);
    }
    set_policy(SCHED_OTHER, 1, EINVAL);
    set_policy(SCHED_BATCH, 1, EINVAL);
    set_policy(SCHED_FIFO, 0, EINVAL);
    set_policy(SCHED_FIFO, 100, EINVAL);
    set_policy(SCHED_RR, -1, EINVAL);
    set_policy(-1, 0, EINVAL);
    set_policy(4, 0, EINVAL);
    set_policy(6, 0, EINVAL);
    struct sched_param p = {0};
    CHECK_ERR(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_sched_setscheduler, -1, SCHED_OTHER, &p), EINVAL);
    pid_t gone = gone_pid();
    CHECK_ERR(syscall(SYS_sched_setscheduler, gone, SCHED_OTHER, &p), ESRCH);
    CHECK_ERR(syscall(SYS_sched_getscheduler, gone), ESRCH);
    CHECK_ERR(syscall(SYS_sched_getscheduler, -1), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getparam, 0, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getparam, -1, &p), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getparam, gone, &p), ESRCH);
    CHECK_ERR(syscall(SYS_sched_getparam, 0, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_sched_setparam, 0, NULL), EINVAL);
    CHECK(syscall(SYS_sched_setparam, 0, &p) == 0);
    p.sched_priority = 5;
    CHECK_ERR(syscall(SYS_sched_setparam, 0, &p), EINVAL);
    struct timespec ts;
    CHECK(syscall(SYS_sched_rr_get_interval, 0, &ts) == 0);
    CHECK(ts.tv_sec == 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000);
    CHECK_ERR(syscall(SYS_sched_rr_get_interval, 0, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_sched_rr_get_interval, -1, &ts), EINVAL);
    CHECK_ERR(syscall(SYS_sched_rr_get_interval, gone, &ts), ESRCH);
    in_child(idle_and_back);
    in_child(realtime);
    in_child(unprivileged_policies);
    policy_is(SCHED_OTHER, 0);
}

static int nice_of(int which, int who) {
    long raw = syscall(SYS_getpriority, which, who);
    CHECK(raw >= 1 && raw <= 40);
    return 20 - (int)raw;
}

static void *renice_thread(void *arg) {
    (void)arg;
    CHECK(setpriority(PRIO_PROCESS, syscall(SYS_gettid), 19) == 0);
    CHECK(nice_of(PRIO_PROCESS, 0) == 19);
    return NULL;
}

static void nice_root(void) {
    int base = nice_of(PRIO_PROCESS, 0);
    errno = 0;
    CHECK(getpriority(PRIO_PROCESS, 0) == base && errno == 0);
    /* Nice is per thread. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, renice_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(nice_of(PRIO_PROCESS, 0) == base);
    CHECK(setpgid(0, 0) == 0);
    CHECK(setpriority(PRIO_PGRP, 0, 19) == 0);
    CHECK(nice_of(PRIO_PGRP, 0) == 19);
    CHECK(nice_of(PRIO_PGRP, getpid()) == 19);
    CHECK(nice_of(PRIO_PROCESS, getpid()) == 19);
    /* Out of range values are clamped. */
    CHECK(setpriority(PRIO_PROCESS, 0, 100) == 0);
    CHECK(nice_of(PRIO_PROCESS, 0) == 19);
    long r = syscall(SYS_setpriority, PRIO_PROCESS, 0, -100);
    if (has_cap(CAP_SYS_NICE)) {
        CHECK(r == 0);
        CHECK(nice_of(PRIO_PROCESS, 0) == -20);
        CHECK(syscall(SYS_getpriority, PRIO_PROCESS, 0) == 40);
    } else {
        CHECK(r == -1 && errno == EACCES);
    }
    /* A child inherits its nice value. */
    CHECK(setpriority(PRIO_PROCESS, 0, 7) == 0 || errno == EACCES);
    int now = nice_of(PRIO_PROCESS, 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(nice_of(PRIO_PROCESS, 0) == now);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    pid_t gone = gone_pid();
    CHECK_ERR(syscall(SYS_getpriority, PRIO_PROCESS, gone), ESRCH);
    CHECK_ERR(syscall(SYS_setpriority, PRIO_PROCESS, gone, 5), ESRCH);
    CHECK_ERR(syscall(SYS_getpriority, PRIO_PGRP, gone), ESRCH);
    CHECK_ERR(syscall(SYS_getpriority, PRIO_PROCESS, -1), ESRCH);
    CHECK_ERR(syscall(SYS_getpriority, 3, 0), EINVAL);
    CHECK_ERR(syscall(SYS_getpriority, -1, 0), EINVAL);
    CHECK_ERR(syscall(SYS_setpriority, 3, 0, 0), EINVAL);
}

static void nice_unprivileged(void) {
    pid_t parent = getppid();
    int parent_nice = nice_of(PRIO_PROCESS, parent);
    drop_root(54321);
    CHECK(setpriority(PRIO_PROCESS, 0, 15) == 0 || nice_of(PRIO_PROCESS, 0) > 15);
    CHECK(setpriority(PRIO_USER, 0, 19) == 0);
    CHECK(nice_of(PRIO_USER, 0) == 19);
    CHECK(nice_of(PRIO_USER, 54321) == 19);
    CHECK(nice_of(PRIO_PROCESS, 0) == 19);
    CHECK_ERR(syscall(SYS_getpriority, PRIO_USER, 54322), ESRCH);
    /* Lowering nice needs RLIMIT_NICE or privilege. */
    CHECK_ERR(syscall(SYS_setpriority, PRIO_PROCESS, 0, 18), EACCES);
    CHECK(setpriority(PRIO_PROCESS, 0, 19) == 0);
    /* Another user's process: readable, not changeable. */
    CHECK(nice_of(PRIO_PROCESS, parent) == parent_nice);
    CHECK_ERR(syscall(SYS_setpriority, PRIO_PROCESS, parent, 19), EPERM);
}

static volatile int spin_stop;

static void *spinner(void *arg) {
    (void)arg;
    while (!spin_stop) {
    }
    return NULL;
}

static void membarriers(void) {
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    CHECK(q > 0);
    CHECK(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    CHECK(q & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
    CHECK(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED);
    CHECK_ERR(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0), EPERM);
    if (q & MEMBARRIER_CMD_GET_REGISTRATIONS)
        CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0);
    if (q & MEMBARRIER_CMD_GET_REGISTRATIONS)
        CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0) ==
              MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
    /* With other threads running. */
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, spinner, NULL) == 0);
    for (int i = 0; i < 20; i++) {
        CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0);
        CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0);
    }
    if (q & MEMBARRIER_CMD_GLOBAL)
        CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0);
    spin_stop = 1;
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0);
    CHECK_ERR(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 1, 0), EINVAL);
    CHECK_ERR(syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 1, 0), EINVAL);
    CHECK_ERR(syscall(SYS_membarrier, 1 << 20, 0, 0), EINVAL);
    CHECK_ERR(syscall(SYS_membarrier, -1, 0, 0), EINVAL);
}

int main(void) {
    getaff(&allowed);
    CHECK(CPU_COUNT(&allowed) >= 1);
    for (first_cpu = 0; !CPU_ISSET(first_cpu, &allowed); first_cpu++) {
    }
    unsigned cpu = 9999;
    CHECK(syscall(SYS_getcpu, &cpu, NULL, NULL) == 0);
    CHECK(cpu < CPU_SETSIZE && CPU_ISSET(cpu, &allowed));
    if (geteuid() != 0) {
        printf("not root: skipped\n");
        return 0;
    }
    in_child(affinity);
    printf("affinity round-trips\n");
    policies();
    printf("policies and priorities checked\n");
    in_child(nice_root);
    in_child(nice_unprivileged);
    printf("nice values checked\n");
    in_child(membarriers);
    printf("membarrier checked\n");
    return 0;
}
