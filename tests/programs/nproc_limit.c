// RLIMIT_NPROC: a user with a limit of N processes may fork until it has N, then EAGAIN; a
// privileged process is not held to it (run as root, the test first becomes an unusual user).
#include "check.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(void) {
    fflush(stdout);
    pid_t leader = fork();
    CHECK(leader >= 0);
    if (leader == 0) {
        struct rlimit r = {5, 5};
        CHECK(setrlimit(RLIMIT_NPROC, &r) == 0);
        /* Privileged: the limit does not apply yet (this child is the first of the user). */
        CHECK(setuid(54321) == 0);
        pid_t kids[8];
        int n = 0;
        for (; n < 8; n++) {
            kids[n] = fork();
            if (kids[n] == 0) {
                pause();
                _exit(0);
            }
            if (kids[n] < 0)
                break;
        }
        int err = errno;
        for (int i = 0; i < n; i++) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
        /* Itself and 4 children make 5: the fifth fork fails. */
        printf("forked %d, then errno %s\n", n, err == EAGAIN ? "EAGAIN" : "other");
        fflush(stdout);
        _exit(n == 4 && err == EAGAIN ? 0 : 1);
    }
    int st;
    CHECK(waitpid(leader, &st, 0) == leader && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}
