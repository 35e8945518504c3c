// A real shell: /bin/sh -c runs a pipeline of dynamically linked programs
// (seq 1 100000 | sort -rn | head -1) whose output comes back through a pipe; the shell's exit
// status, death by signal, environment and stdin reach it as they should.
#include "check.h"
#include <signal.h>
#include <sys/wait.h>

/* Runs `/bin/sh -c script` with `env`, feeding it `input` (if any) and collecting its stdout
 * into out. Returns the wait status. */
static int sh(const char *script, char *const env[], const char *input, char *out, size_t size) {
    int o[2], in[2];
    CHECK(pipe(o) == 0 && pipe(in) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(dup2(o[1], 1) == 1 && dup2(in[0], 0) == 0);
        close(o[0]);
        close(o[1]);
        close(in[0]);
        close(in[1]);
        char *const args[] = {"sh", "-c", (char *)script, NULL};
        execve("/bin/sh", args, env);
        _exit(127);
    }
    close(o[1]);
    close(in[0]);
    if (input)
        CHECK(write(in[1], input, strlen(input)) == (ssize_t)strlen(input));
    close(in[1]);
    size_t total = 0;
    ssize_t n;
    while ((n = read(o[0], out + total, size - 1 - total)) > 0)
        total += n;
    CHECK(n == 0);
    out[total] = 0;
    close(o[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

int main(void) {
    char out[4096];
    char *const env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "GREETING=hello there", NULL};
    /* The default SIGPIPE disposition, as a shell expects: sort may be cut off by head. */
    signal(SIGPIPE, SIG_DFL);
    int st = sh("seq 1 100000 | sort -rn | head -1", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strcmp(out, "100000\n") == 0);
    printf("pipeline: %s", out);

    st = sh("seq 1 100000 | wc -l; seq 1 100000 | sort -n | tail -n 1", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strcmp(out, "100000\n100000\n") == 0);

    st = sh("printf '%s\\n' \"$GREETING\"", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strcmp(out, "hello there\n") == 0);
    printf("environment: %s", out);

    st = sh("sort", env, "pear\napple\nfig\n", out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strcmp(out, "apple\nfig\npear\n") == 0);
    printf("stdin through sort: %s", out);

    st = sh("exit 3", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    st = sh("kill -TERM $$", env, NULL, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    st = sh("false | true", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* a pipeline's status is its last command's */
    st = sh("no-such-command-anywhere 2>/dev/null", env, NULL, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 127);
    printf("exit statuses: 3, SIGTERM, last of a pipeline, 127 for a missing command\n");
    return 0;
}
