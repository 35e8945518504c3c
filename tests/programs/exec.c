// execve: the program runs itself again (through /proc/self/exe) and checks what an exec keeps
// and what it drops: argv and envp exactly as passed, the pid, close-on-exec descriptors closed
// and the others kept, handled signals reset to the default, ignored ones still ignored, the
// mask and pending signals kept, the alternate signal stack dropped. Also an exec from a
// non-main thread (the process keeps its pid), #! scripts, and the errors: ENOENT, EACCES,
// ENOEXEC, ETXTBSY, E2BIG, EFAULT.
#include "check.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

#define SELF "/proc/self/exe"
#define REPORT_FD 11 /* kept across the exec: the exec'd image reports its pid through it */

static void handler(int sig) { (void)sig; }

static void write_file(const char *path, const char *text, size_t len, mode_t mode) {
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
    CHECK(fd >= 0);
    CHECK(write(fd, text, len) == (ssize_t)len);
    CHECK(close(fd) == 0);
}

/* The exec'd image, first mode: check everything the parent set up before the exec. */
static int after_exec(int argc, char **argv) {
    CHECK(argc == 5);
    CHECK(strcmp(argv[0], "renamed-argv0") == 0 && strcmp(argv[2], "two words") == 0);
    CHECK(strcmp(argv[3], "") == 0 && strcmp(argv[4], "last") == 0 && argv[5] == NULL);
    CHECK(environ[0] && strcmp(environ[0], "FOO=bar") == 0);
    CHECK(environ[1] && strcmp(environ[1], "EMPTY=") == 0 && environ[2] == NULL);
    CHECK(strcmp(getenv("EMPTY"), "") == 0 && getenv("PATH") == NULL);
    /* Descriptors: 10, 12 and 13 were close-on-exec, 11 was not. */
    CHECK_ERR(fcntl(10, F_GETFD), EBADF);
    CHECK_ERR(fcntl(12, F_GETFD), EBADF);
    CHECK_ERR(fcntl(13, F_GETFD), EBADF);
    CHECK(fcntl(REPORT_FD, F_GETFD) == 0);
    struct stat st;
    CHECK(fstat(REPORT_FD, &st) == 0 && S_ISFIFO(st.st_mode));
    /* Dispositions: handled -> default, ignored stays ignored, default stays default. */
    struct sigaction sa;
    CHECK(sigaction(SIGUSR1, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    CHECK(sigaction(SIGUSR2, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN);
    CHECK(sigaction(SIGHUP, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    /* The mask and the pending set survive. */
    sigset_t set;
    CHECK(sigprocmask(SIG_SETMASK, NULL, &set) == 0);
    CHECK(sigismember(&set, SIGTERM) && !sigismember(&set, SIGUSR1));
    CHECK(sigpending(&set) == 0 && sigismember(&set, SIGTERM));
    /* The alternate signal stack does not. */
    stack_t ss;
    CHECK(sigaltstack(NULL, &ss) == 0 && ss.ss_flags == SS_DISABLE);
    pid_t me = getpid();
    CHECK(write(REPORT_FD, &me, sizeof me) == sizeof me);
    return 0;
}

/* The exec'd image, second mode: exec'd by a non-main thread; argv[2] is the expected pid. */
static int after_thread_exec(char **argv) {
    CHECK(getpid() == atoi(argv[2]));
    CHECK(syscall(SYS_gettid) == getpid()); /* the only thread, with the process's id */
    return 0;
}

static void *exec_from_thread(void *arg) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d", getpid());
    char *args[] = {"x", "thread-exec", pid, NULL};
    char *env[] = {NULL};
    execve(SELF, args, env);
    (void)arg;
    printf("FAIL: execve from a thread: errno %d\n", errno);
    fflush(stdout);
    _exit(1);
}

static void exec_keeps_and_drops(void) {
    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe2(q, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(dup3(q[1], 10, O_CLOEXEC) == 10);
        CHECK(dup2(p[1], REPORT_FD) == REPORT_FD);
        CHECK(fcntl(REPORT_FD, F_DUPFD_CLOEXEC, 12) == 12);
        CHECK(dup3(REPORT_FD, 13, O_CLOEXEC) == 13);
        close(p[0]);
        close(p[1]);
        close(q[0]);
        close(q[1]);
        struct sigaction sa = {0};
        sa.sa_handler = handler;
        CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
        CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
        CHECK(raise(SIGTERM) == 0); /* stays pending */
        static char alt[65536];
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
        CHECK(sigaltstack(&ss, NULL) == 0);
        char *args[] = {"renamed-argv0", "after-exec", "two words", "", "last", NULL};
        char *env[] = {"FOO=bar", "EMPTY=", NULL};
        execve(SELF, args, env);
        CHECK(!"execve returned");
    }
    close(p[1]);
    /* q's write end was close-on-exec in the child: q reads EOF once the child has exec'd. */
    close(q[1]);
    char c;
    CHECK(read(q[0], &c, 1) == 0);
    close(q[0]);
    pid_t reported = 0;
    CHECK(read(p[0], &reported, sizeof reported) == sizeof reported);
    close(p[0]);
    CHECK(reported == pid); /* the same process */
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("exec: argv, envp, pid, fds, dispositions, mask, pending, altstack\n");

    /* A non-main thread execs: the process keeps its pid and is left with one thread. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, exec_from_thread, NULL) == 0);
        for (;;)
            pause(); /* ended by the exec */
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("exec from a non-main thread: same pid, one thread\n");
}

static void scripts(void) {
    const char script[] = "#!/bin/sh\nprintf '%s|' \"$0\" \"$@\"\nexit 7\n";
    write_file("script.sh", script, sizeof script - 1, 0755);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(dup2(p[1], 1) == 1);
        close(p[0]);
        close(p[1]);
        char *args[] = {"ignored-argv0", "a", "b c", NULL};
        char *env[] = {NULL};
        execve("./script.sh", args, env);
        _exit(99);
    }
    close(p[1]);
    char buf[256];
    size_t total = 0;
    ssize_t n;
    while ((n = read(p[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    close(p[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7);
    /* The interpreter gets the script's path in place of argv[0]. */
    CHECK(strcmp(buf, "./script.sh|a|b c|") == 0);
    printf("#! script: %s exit 7\n", buf);
}

static void errors(void) {
    char *args[] = {"x", NULL};
    char *env[] = {NULL};
    CHECK_ERR(execve("./does-not-exist", args, env), ENOENT);
    CHECK_ERR(execve("no-such-dir/x", args, env), ENOENT);
    CHECK_ERR(execve("", args, env), ENOENT);
    write_file("not-executable", "#!/bin/sh\n", 10, 0644);
    CHECK_ERR(execve("./not-executable", args, env), EACCES);
    CHECK_ERR(execve(".", args, env), EACCES); /* a directory */
    CHECK_ERR(execve("./not-executable/x", args, env), ENOTDIR);
    write_file("garbage", "\x01\x02garbage\n", 10, 0755);
    CHECK_ERR(execve("./garbage", args, env), ENOEXEC);
    write_file("empty", "", 0, 0755);
    CHECK_ERR(execve("./empty", args, env), ENOEXEC);
    write_file("bad-interp", "#!/no/such/interpreter\n", 23, 0755);
    CHECK_ERR(execve("./bad-interp", args, env), ENOENT);
    /* A file open for writing cannot be executed. */
    int fd = open("busy", O_CREAT | O_WRONLY | O_TRUNC, 0755);
    CHECK(fd >= 0 && write(fd, "#!/bin/sh\n", 10) == 10);
    CHECK_ERR(execve("./busy", args, env), ETXTBSY);
    close(fd);
    CHECK_ERR(syscall(SYS_execve, BAD_PTR, args, env), EFAULT);
    char *bad_args[] = {"x", BAD_PTR, NULL};
    CHECK_ERR(syscall(SYS_execve, SELF, bad_args, env), EFAULT);
    CHECK_ERR(syscall(SYS_execve, SELF, BAD_PTR, env), EFAULT);
    CHECK_ERR(syscall(SYS_execve, SELF, args, BAD_PTR), EFAULT);
    printf("exec errors: ENOENT, EACCES, ENOTDIR, ENOEXEC, ETXTBSY, EFAULT\n");

    /* E2BIG: one string longer than MAX_ARG_STRLEN (32 pages), strings totalling more than
     * the 6 MiB Linux ever allows, and more pointers than fit. */
    size_t len = 200000;
    char *huge = malloc(len + 1);
    CHECK(huge != NULL);
    memset(huge, 'x', len);
    huge[len] = 0;
    char *one[] = {"x", huge, NULL};
    CHECK_ERR(execve(SELF, one, env), E2BIG);
    char *env_one[] = {huge, NULL};
    CHECK_ERR(execve(SELF, args, env_one), E2BIG);
    huge[120000] = 0;
    char **many = calloc(65, sizeof *many);
    CHECK(many != NULL);
    for (int i = 0; i < 64; i++)
        many[i] = huge; /* 64 x 120000 bytes */
    CHECK_ERR(execve(SELF, many, env), E2BIG);
    size_t count = 1 << 20;
    char **pointers = calloc(count + 1, sizeof *pointers);
    CHECK(pointers != NULL);
    for (size_t i = 0; i < count; i++)
        pointers[i] = "";
    CHECK_ERR(execve(SELF, pointers, env), E2BIG);
    free(pointers);
    free(many);
    free(huge);
    printf("exec errors: E2BIG\n");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "after-exec") == 0)
        return after_exec(argc, argv);
    if (argc > 2 && strcmp(argv[1], "thread-exec") == 0)
        return after_thread_exec(argv);
    CHECK(argc == 1);
    exec_keeps_and_drops();
    scripts();
    errors();
    return 0;
}
