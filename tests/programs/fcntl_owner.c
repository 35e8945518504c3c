// fcntl's I/O-signal owner (nginx sets it on its channel sockets before forking workers):
// F_SETOWN/F_GETOWN for a process and a process group, F_SETOWN_EX/F_GETOWN_EX, F_SETSIG/
// F_GETSIG, per open file description (shared by dup, not by a second socket), and errors.
#include "check.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
int main(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t me = getpid();
    CHECK(fcntl(sv[0], F_GETOWN) == 0);
    struct f_owner_ex ex = {.type = -1, .pid = -1};
    CHECK(fcntl(sv[0], F_GETOWN_EX, &ex) == 0);
    CHECK(ex.pid == 0);
    CHECK(fcntl(sv[0], F_SETOWN, me) == 0);
    CHECK(fcntl(sv[0], F_GETOWN) == me);
    CHECK(fcntl(sv[0], F_GETOWN_EX, &ex) == 0);
    CHECK(ex.type == F_OWNER_PID && ex.pid == me);
    /* A dup shares the description, so its owner; the other end has its own. */
    int d = dup(sv[0]);
    CHECK(fcntl(d, F_GETOWN) == me);
    CHECK(fcntl(sv[1], F_GETOWN) == 0);
    /* A process group is given and reported negated. */
    pid_t pgrp = getpgrp();
    CHECK(fcntl(sv[1], F_SETOWN, -pgrp) == 0);
    CHECK(fcntl(sv[1], F_GETOWN) == -pgrp);
    CHECK(fcntl(sv[1], F_GETOWN_EX, &ex) == 0);
    CHECK(ex.type == F_OWNER_PGRP && ex.pid == pgrp);
    /* A thread, through F_SETOWN_EX. */
    ex.type = F_OWNER_TID;
    ex.pid = (pid_t)syscall(SYS_gettid);
    CHECK(fcntl(sv[1], F_SETOWN_EX, &ex) == 0);
    struct f_owner_ex back;
    CHECK(fcntl(sv[1], F_GETOWN_EX, &back) == 0);
    CHECK(back.type == F_OWNER_TID && back.pid == ex.pid);
    /* 0 clears the owner. */
    CHECK(fcntl(sv[0], F_SETOWN, 0) == 0);
    CHECK(fcntl(d, F_GETOWN) == 0);
    /* Errors: nobody with that pid, a bad owner kind, a bad pointer. */
    pid_t gone = gone_pid();
    CHECK_ERR(fcntl(sv[0], F_SETOWN, gone), ESRCH);
    ex.type = 7;
    ex.pid = me;
    CHECK_ERR(fcntl(sv[0], F_SETOWN_EX, &ex), EINVAL);
    CHECK_ERR(fcntl(sv[0], F_GETOWN_EX, BAD_PTR), EFAULT);
    CHECK_ERR(fcntl(sv[0], F_SETOWN_EX, BAD_PTR), EFAULT);
    /* The I/O signal: 0 (SIGIO) by default, any valid number, nothing past the last. */
    CHECK(fcntl(sv[0], F_GETSIG) == 0);
    CHECK(fcntl(sv[0], F_SETSIG, SIGRTMIN + 1) == 0);
    CHECK(fcntl(d, F_GETSIG) == SIGRTMIN + 1);
    CHECK(fcntl(sv[0], F_SETSIG, 0) == 0 && fcntl(sv[0], F_GETSIG) == 0);
    CHECK_ERR(fcntl(sv[0], F_SETSIG, 65), EINVAL);
    CHECK_ERR(fcntl(sv[0], F_SETSIG, -1), EINVAL);
    printf("fcntl owner ok\n");
    return 0;
}
