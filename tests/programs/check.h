/* Shared helpers for the differential test programs: each program checks its own
 * expectations and exits 1 at the first that fails, naming the line. */
#ifndef MOAT_CHECK_H
#define MOAT_CHECK_H
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL %s:%d: %s (errno %d)\n", __FILE__, __LINE__, #cond,   \
                   errno);                                                     \
            fflush(stdout);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* A raw system call must fail with exactly this errno. */
#define CHECK_ERR(call, err)                                                   \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (long)(call);                                                \
        if (r_ != -1 || errno != (err)) {                                      \
            printf("FAIL %s:%d: %s returned %ld errno %d, want -1 errno %d\n", \
                   __FILE__, __LINE__, #call, r_, errno, (err));               \
            fflush(stdout);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define BAD_PTR ((void *)1)

#include <sys/wait.h>

/* Run `f` in a forked child, which must exit 0. */
static inline void in_child(void (*f)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        f();
        exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A pid that no process has any more (a reaped child's). */
static inline pid_t gone_pid(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK(waitpid(pid, NULL, 0) == pid);
    return pid;
}
#endif
