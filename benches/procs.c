// Process, thread and IPC costs: `procs OP N` performs OP N times and prints microseconds
// per operation. OP is one of:
//   fork-wait     fork, the child exits at once, the parent waits for it
//   fork-exec     fork, the child execs /bin/true, the parent waits
//   thread        pthread_create + pthread_join of a thread that returns at once
//   pipe-pingpong one byte back and forth between two processes over two pipes (a round trip)
//   futex-pingpong a futex handed back and forth between two threads (a round trip)
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void *nothing(void *arg) { return arg; }

static atomic_int word;
static long rounds;

static void futex_wait(int val) {
    while (atomic_load(&word) == val)
        syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_set(int val) {
    atomic_store(&word, val);
    syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The partner thread: answers every 1 with a 0. */
static void *partner(void *arg) {
    for (long i = 0; i < rounds; i++) {
        futex_wait(0);
        futex_set(0);
    }
    return arg;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: procs OP N\n");
        return 2;
    }
    const char *op = argv[1];
    long n = atol(argv[2]);
    int status;
    double start = now_us();
    if (!strcmp(op, "fork-wait")) {
        for (long i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0)
                _exit(0);
            if (p < 0 || waitpid(p, &status, 0) != p)
                return 1;
        }
    } else if (!strcmp(op, "fork-exec")) {
        for (long i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
            }
            if (p < 0 || waitpid(p, &status, 0) != p || status != 0)
                return 1;
        }
    } else if (!strcmp(op, "thread")) {
        for (long i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, nothing, NULL) || pthread_join(t, NULL))
                return 1;
        }
    } else if (!strcmp(op, "pipe-pingpong")) {
        int there[2], back[2];
        char c = 'x';
        if (pipe(there) || pipe(back))
            return 1;
        pid_t p = fork();
        if (p == 0) {
            for (long i = 0; i < n; i++)
                if (read(there[0], &c, 1) != 1 || write(back[1], &c, 1) != 1)
                    _exit(1);
            _exit(0);
        }
        start = now_us();
        for (long i = 0; i < n; i++)
            if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
                return 1;
        waitpid(p, &status, 0);
    } else if (!strcmp(op, "futex-pingpong")) {
        pthread_t t;
        rounds = n;
        if (pthread_create(&t, NULL, partner, NULL))
            return 1;
        start = now_us();
        for (long i = 0; i < n; i++) {
            futex_set(1);
            futex_wait(1);
        }
        pthread_join(t, NULL);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    printf("%.1f\n", (now_us() - start) / n);
    return 0;
}
