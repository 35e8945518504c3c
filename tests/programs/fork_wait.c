// fork and the wait family: exit codes and the status macros, children killed by signals,
// WNOHANG while a child runs, WNOWAIT, waitid's siginfo, ECHILD and EINVAL, getppid in the
// child, and an orphan's parent changing when its parent dies.
#include "check.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* A child that must not leave a core file in the working directory. */
static void no_core(void) {
    struct rlimit r = {0, 0};
    CHECK(setrlimit(RLIMIT_CORE, &r) == 0);
}

static pid_t child_exiting(int code) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(code);
    return pid;
}

int main(void) {
    pid_t me = getpid();
    int st;
    siginfo_t si;

    /* No children at all. */
    CHECK_ERR(waitpid(-1, &st, 0), ECHILD);
    CHECK_ERR(waitpid(-1, &st, WNOHANG), ECHILD);
    CHECK_ERR(wait4(-1, &st, 0, NULL), ECHILD);
    CHECK_ERR(waitid(P_ALL, 0, &si, WEXITED), ECHILD);
    CHECK_ERR(waitpid(me, &st, 0), ECHILD); /* oneself is not one's child */
    /* Bad options are refused before the search for children. */
    CHECK_ERR(wait4(-1, &st, 0x100, NULL), EINVAL);
    CHECK_ERR(wait4(-1, &st, WEXITED, NULL), EINVAL); /* waitid's flag, not wait4's */
    CHECK_ERR(waitid(P_ALL, 0, &si, 0), EINVAL);      /* none of WEXITED/WSTOPPED/WCONTINUED */
    CHECK_ERR(waitid(P_ALL, 0, &si, WEXITED | 0x100), EINVAL);
    CHECK_ERR(waitid((idtype_t)77, 0, &si, WEXITED), EINVAL);
    printf("no children: ECHILD, bad options: EINVAL\n");

    /* Exit codes: only the low 8 bits survive, and the raw status is code << 8. */
    static const int codes[] = {0, 1, 42, 127, 255, 256 + 7};
    for (unsigned i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        pid_t pid = child_exiting(codes[i]);
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && !WIFSIGNALED(st) && !WIFSTOPPED(st));
        CHECK(WEXITSTATUS(st) == (codes[i] & 0xff));
        CHECK(st == (codes[i] & 0xff) << 8);
    }
    printf("exit codes: low 8 bits, status = code << 8\n");

    /* getppid in the child is the parent's pid; the child sees its own new pid. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(getppid() == me && getpid() != me ? 0 : 1);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("child: getppid is the parent\n");

    /* Children killed by signals: SIGKILL from itself, SIGSEGV from raise, a real fault. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    CHECK(wait4(pid, &st, 0, NULL) == pid);
    CHECK(WIFSIGNALED(st) && !WIFEXITED(st) && WTERMSIG(st) == SIGKILL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        no_core();
        raise(SIGSEGV);
        _exit(1);
    }
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        no_core();
        int *volatile bad = (int *)16;
        *bad = 1;
        _exit(1);
    }
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        raise(SIGTERM);
        _exit(1);
    }
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && !WCOREDUMP(st));
    printf("killed children: WIFSIGNALED, WTERMSIG\n");

    /* WNOHANG while the child runs (it waits on a pipe), then WNOWAIT, then the reaping wait. */
    int gate[2];
    CHECK(pipe(gate) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(gate[1]);
        _exit(read(gate[0], &c, 1) == 0 ? 5 : 6);
    }
    close(gate[0]);
    CHECK(waitpid(pid, &st, WNOHANG) == 0);
    CHECK(waitpid(-1, &st, WNOHANG) == 0);
    memset(&si, 0x55, sizeof si);
    CHECK(waitid(P_PID, pid, &si, WEXITED | WNOHANG) == 0);
    CHECK(si.si_pid == 0 && si.si_signo == 0); /* Linux zeroes them when nobody is waitable */
    CHECK(kill(pid, 0) == 0);
    close(gate[1]); /* EOF: the child exits 5 */
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, pid, &si, WEXITED | WNOWAIT) == 0);
    CHECK(si.si_signo == SIGCHLD && si.si_code == CLD_EXITED && si.si_status == 5);
    CHECK(si.si_pid == pid && si.si_uid == getuid());
    CHECK(kill(pid, 0) == 0); /* a zombie still has its pid */
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_ALL, 0, &si, WEXITED) == 0); /* WNOWAIT left it waitable */
    CHECK(si.si_pid == pid && si.si_code == CLD_EXITED && si.si_status == 5);
    CHECK_ERR(waitpid(pid, &st, WNOHANG), ECHILD);
    printf("WNOHANG while running: 0; WNOWAIT keeps the zombie; waitid CLD_EXITED\n");

    /* waitid for a killed child: CLD_KILLED and the signal in si_status. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, pid, &si, WEXITED) == 0);
    CHECK(si.si_signo == SIGCHLD && si.si_code == CLD_KILLED && si.si_status == SIGKILL);
    CHECK(si.si_pid == pid);
    printf("waitid: CLD_KILLED, si_status SIGKILL\n");

    /* Several children reaped by wait(): each pid exactly once with its own code. */
    pid_t kids[3];
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        kids[i] = child_exiting(10 + i);
    for (int n = 0; n < 3; n++) {
        pid_t got = wait(&st);
        int i = 0;
        while (i < 3 && kids[i] != got)
            i++;
        CHECK(i < 3 && !seen[i] && WIFEXITED(st) && WEXITSTATUS(st) == 10 + i);
        seen[i] = 1;
    }
    CHECK_ERR(wait(&st), ECHILD);
    printf("wait(): three children, each once\n");

    /* An orphan: the grandchild sees its parent, lets it die, and then sees another parent
     * (which one depends on the system: init or a subreaper, so only the change is checked). */
    int report[2];
    CHECK(pipe(report) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pid_t parent = getpid();
        int hold[2];
        close(report[0]);
        CHECK(pipe(hold) == 0);
        pid_t g = fork();
        CHECK(g >= 0);
        if (g == 0) {
            close(hold[0]);
            const char *verdict = "orphan: getppid before its parent died is wrong\n";
            if (getppid() == parent) {
                close(hold[1]); /* the parent reads EOF and exits */
                verdict = "orphan: parent never changed\n";
                for (int i = 0; i < 10000; i++) {
                    if (getppid() != parent) {
                        verdict = "orphan: reparented after its parent died\n";
                        break;
                    }
                    struct timespec ms = {0, 1000 * 1000};
                    nanosleep(&ms, NULL);
                }
            }
            CHECK(write(report[1], verdict, strlen(verdict)) == (ssize_t)strlen(verdict));
            _exit(0);
        }
        close(hold[1]);
        close(report[1]);
        char c;
        _exit(read(hold[0], &c, 1) == 0 ? 0 : 1);
    }
    close(report[1]);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char buf[128];
    size_t total = 0;
    ssize_t n;
    while ((n = read(report[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    printf("%s", buf);
    CHECK(strcmp(buf, "orphan: reparented after its parent died\n") == 0);
    return 0;
}
