// Process groups and sessions: getpgid/getsid, inheritance across fork, setpgid (by the child
// itself and by its parent) with EPERM, ESRCH, EINVAL and EACCES after an exec; setsid and its
// EPERM for a group leader; waitpid(0) and waitpid(-pgid) choosing children by group. prctl:
// PR_SET_NAME/PR_GET_NAME per thread and in /proc/self/comm; PR_SET_PDEATHSIG (signalled by
// the dying parent, not inherited by fork) together with PR_SET_CHILD_SUBREAPER (the orphan
// becomes the subreaper's child, which then reaps it).
#include "check.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define NOPID 0x3fffffff /* beyond any pid_max */

static void exits_zero(pid_t pid) {
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Blocks until the other end of `fd` is written to or closed. */
static void await(int fd) {
    char c;
    CHECK(read(fd, &c, 1) >= 0);
}

static void ids(void) {
    pid_t pgrp = getpgrp(), sid = getsid(0);
    CHECK(pgrp > 0 && sid > 0);
    CHECK(getpgid(0) == pgrp && getpgid(getpid()) == pgrp && getsid(getpid()) == sid);
    CHECK_ERR(getpgid(NOPID), ESRCH);
    CHECK_ERR(getsid(NOPID), ESRCH);
    CHECK_ERR(setpgid(0, -1), EINVAL);
    CHECK_ERR(setpgid(NOPID, 0), ESRCH);
    CHECK_ERR(setpgid(-5, 0), EINVAL);
    /* A child starts in the parent's group and session. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(getpgrp() == pgrp && getsid(0) == sid ? 0 : 1);
    exits_zero(pid);
    printf("ids: getpgid, getsid, inherited by a child; ESRCH, EINVAL\n");
}

static void set_groups(void) {
    pid_t pgrp = getpgrp();
    int hold[2];
    CHECK(pipe(hold) == 0);
    /* A child makes itself a group leader; setsid then fails. Moving into a group that does
     * not exist in the session fails too. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK_ERR(setpgid(0, NOPID), EPERM);
        CHECK(setpgid(0, 0) == 0 && getpgrp() == getpid());
        CHECK_ERR(setsid(), EPERM);
        CHECK(setpgid(0, pgrp) == 0 && getpgrp() == pgrp); /* back, same session */
        _exit(0);
    }
    exits_zero(pid);
    /* The parent moves a (not yet exec'd) child between groups. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(hold[1]);
        await(hold[0]);
        _exit(0);
    }
    CHECK(setpgid(pid, pid) == 0 && getpgid(pid) == pid);
    CHECK(setpgid(pid, 0) == 0 && getpgid(pid) == pid); /* 0: the child's own pid */
    CHECK(setpgid(pid, pgrp) == 0 && getpgid(pid) == pgrp);
    close(hold[0]);
    close(hold[1]);
    exits_zero(pid);
    printf("setpgid: own group, back again, by the parent; EPERM for a missing group\n");

    /* setsid in a child: a new session and group led by it, then EPERM again; the parent
     * can no longer move it (another session). */
    int ready[2];
    CHECK(pipe(ready) == 0 && pipe(hold) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(hold[1]);
        close(ready[0]);
        pid_t me = getpid();
        CHECK(setsid() == me && getsid(0) == me && getpgrp() == me);
        CHECK_ERR(setsid(), EPERM);
        CHECK_ERR(setpgid(0, pgrp), EPERM);
        CHECK(write(ready[1], "s", 1) == 1);
        await(hold[0]);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    await(ready[0]);
    CHECK(getsid(pid) == pid && getpgid(pid) == pid);
    CHECK_ERR(setpgid(pid, pgrp), EPERM);
    CHECK_ERR(setpgid(pid, pid), EPERM);
    close(hold[1]);
    close(ready[0]);
    exits_zero(pid);
    printf("setsid: new session and group, EPERM for a leader and across sessions\n");

    /* After the child has exec'd, its parent may not change its group. */
    CHECK(pipe(ready) == 0 && pipe(hold) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        char rfd[16], hfd[16];
        snprintf(rfd, sizeof rfd, "%d", ready[1]);
        snprintf(hfd, sizeof hfd, "%d", hold[0]);
        char *args[] = {"waiter", "exec-waiter", rfd, hfd, NULL};
        execv("/proc/self/exe", args);
        _exit(99);
    }
    close(ready[1]);
    close(hold[0]);
    char c;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'u');
    CHECK_ERR(setpgid(pid, pid), EACCES);
    close(hold[1]);
    close(ready[0]);
    exits_zero(pid);
    printf("setpgid: EACCES once the child has exec'd\n");
}

static void wait_by_group(void) {
    pid_t same = fork();
    CHECK(same >= 0);
    if (same == 0)
        _exit(0);
    pid_t other = fork();
    CHECK(other >= 0);
    if (other == 0) {
        CHECK(setpgid(0, 0) == 0);
        _exit(0);
    }
    siginfo_t si;
    CHECK(waitid(P_PID, same, &si, WEXITED | WNOWAIT) == 0);
    CHECK(waitid(P_PID, other, &si, WEXITED | WNOWAIT) == 0);
    CHECK(getpgid(other) == other);
    int st;
    CHECK(waitpid(0, &st, WNOHANG) == same); /* only the child in our group */
    CHECK_ERR(waitpid(0, &st, WNOHANG), ECHILD);
    /* waitpid(-1) means any child: the check needs a group other than 1 (a pid-1 init's). */
    if (getpgrp() != 1)
        CHECK_ERR(waitpid(-getpgrp(), &st, WNOHANG), ECHILD);
    CHECK(waitpid(-other, &st, 0) == other && WIFEXITED(st));
    CHECK_ERR(waitid(P_PGID, other, &si, WEXITED), ECHILD);
    printf("waitpid(0) and waitpid(-pgid) choose children by group\n");
}

static char thread_comm[32];
static void *rename_thread(void *arg) {
    (void)arg;
    CHECK(prctl(PR_SET_NAME, "worker-thread") == 0);
    char name[16];
    CHECK(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "worker-thread") == 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, thread_comm, sizeof thread_comm - 1);
    CHECK(n > 0);
    thread_comm[n] = 0;
    close(fd);
    return NULL;
}

static void read_comm(char *buf, size_t size) {
    int fd = open("/proc/self/comm", O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, size - 1);
    CHECK(n > 0);
    buf[n] = 0;
    close(fd);
}

static void names(void) {
    char name[16], comm[32];
    CHECK(prctl(PR_SET_NAME, "moat-name-test") == 0);
    CHECK(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "moat-name-test") == 0);
    read_comm(comm, sizeof comm);
    CHECK(strcmp(comm, "moat-name-test\n") == 0);
    /* Longer names are cut to 15 bytes. */
    CHECK(prctl(PR_SET_NAME, "a-very-long-process-name") == 0);
    CHECK(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "a-very-long-pro") == 0);
    read_comm(comm, sizeof comm);
    CHECK(strcmp(comm, "a-very-long-pro\n") == 0);
    /* Names are per thread. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, rename_thread, NULL) == 0 && pthread_join(t, NULL) == 0);
    CHECK(strcmp(thread_comm, "worker-thread\n") == 0);
    CHECK(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "a-very-long-pro") == 0);
    /* A child inherits the name. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "a-very-long-pro") == 0 ? 0 : 1);
    exits_zero(pid);
    CHECK_ERR(prctl(PR_SET_NAME, BAD_PTR), EFAULT);
    printf("PR_SET_NAME: PR_GET_NAME, /proc/self/comm, 15 bytes, per thread, inherited\n");
}

/* main (a subreaper) -> parent -> orphan. The orphan asks for SIGUSR1 when its parent dies,
 * lets it die, takes the signal (sent by the dying parent), and finds main is its parent now;
 * main reaps it. */
static void death_signal_and_subreaper(void) {
    int on = -1;
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &on) == 0 && on == 0);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &on) == 0 && on == 1);
    CHECK_ERR(prctl(PR_SET_PDEATHSIG, 65), EINVAL);
    pid_t top = getpid();
    int report[2];
    CHECK(pipe(report) == 0);
    pid_t parent = fork();
    CHECK(parent >= 0);
    if (parent == 0) {
        close(report[0]);
        int hold[2];
        CHECK(pipe(hold) == 0);
        pid_t me = getpid();
        pid_t orphan = fork();
        CHECK(orphan >= 0);
        if (orphan == 0) {
            close(hold[0]);
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGUSR1);
            CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
            CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR1) == 0);
            int sig = 0;
            CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == SIGUSR1);
            CHECK(getppid() == me); /* the parent is still there: it waits for hold */
            /* Not inherited by a child. */
            pid_t kid = fork();
            CHECK(kid >= 0);
            if (kid == 0)
                _exit(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == 0 ? 0 : 1);
            exits_zero(kid);
            pid_t orphan_me = getpid();
            CHECK(write(report[1], &orphan_me, sizeof orphan_me) == sizeof orphan_me);
            close(hold[1]); /* the parent exits */
            siginfo_t si;
            CHECK(sigwaitinfo(&set, &si) == SIGUSR1);
            CHECK(si.si_code == SI_USER && si.si_pid == me);
            CHECK(getppid() == top);
            _exit(0);
        }
        close(hold[1]);
        await(hold[0]);
        _exit(0);
    }
    close(report[1]);
    pid_t orphan = 0;
    CHECK(read(report[0], &orphan, sizeof orphan) == sizeof orphan);
    close(report[0]);
    exits_zero(parent);
    exits_zero(orphan); /* reparented to us, so ours to reap */
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0);
    printf("PR_SET_PDEATHSIG and PR_SET_CHILD_SUBREAPER: signalled, reparented, reaped\n");
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "exec-waiter") == 0) {
        int ready = atoi(argv[2]), hold = atoi(argv[3]);
        CHECK(write(ready, "u", 1) == 1);
        await(hold);
        return 0;
    }
    CHECK(argc == 1);
    /* The session we were started in may belong to another pid namespace (getsid then says 0,
     * as in a CI container), so the checks run in a child that leads a session of its own. */
    pid_t leader = fork();
    CHECK(leader >= 0);
    if (leader > 0) {
        int st;
        CHECK(waitpid(leader, &st, 0) == leader);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    CHECK(setsid() == getpid());
    ids();
    set_groups();
    wait_by_group();
    death_signal_and_subreaper();
    names();
    return 0;
}
