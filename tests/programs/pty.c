// Pseudo-terminals: posix_openpt/grantpt/unlockpt/ptsname, the locked slave (EIO), default
// termios, canonical input with echo and line editing (erase, kill, end of file), output
// processing (\n -> \r\n), raw mode, window size, ^C to the foreground process group of a
// session whose controlling terminal it is (TIOCSCTTY, tcgetpgrp, /dev/tty), and hang-ups.
#include "check.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

/* Read what is there within a short wait (the other end's output). */
static int drain(int fd, char *buf, int len) {
    int total = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (total < len && poll(&p, 1, 100) == 1 && (p.revents & POLLIN)) {
        int n = read(fd, buf + total, len - total);
        if (n <= 0)
            break;
        total += n;
    }
    buf[total] = 0;
    return total;
}

static int open_pair(int *slave) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0);
    char *name = ptsname(m);
    CHECK(name != NULL && strncmp(name, "/dev/pts/", 9) == 0);
    CHECK(open(name, O_RDWR | O_NOCTTY) < 0 && errno == EIO); /* still locked */
    CHECK(grantpt(m) == 0 && unlockpt(m) == 0);
    *slave = open(name, O_RDWR | O_NOCTTY);
    CHECK(*slave >= 0 && isatty(*slave) && isatty(m));
    struct stat st;
    CHECK(fstat(*slave, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 136);
    return m;
}

static void basics(void) {
    int s, m = open_pair(&s);
    struct termios t;
    CHECK(tcgetattr(s, &t) == 0);
    CHECK((t.c_lflag & (ICANON | ECHO | ISIG)) == (ICANON | ECHO | ISIG));
    CHECK((t.c_oflag & (OPOST | ONLCR)) == (OPOST | ONLCR) && (t.c_iflag & ICRNL));
    CHECK(t.c_cc[VINTR] == 3 && t.c_cc[VEOF] == 4 && t.c_cc[VERASE] == 0177);
    char buf[256];
    /* Canonical: nothing until the line ends; \r becomes \n; echo comes back \r\n. */
    CHECK(write(m, "hel", 3) == 3);
    CHECK(fcntl(s, F_SETFL, O_NONBLOCK) == 0);
    CHECK(read(s, buf, sizeof buf) < 0 && errno == EAGAIN);
    CHECK(write(m, "lo\r", 3) == 3);
    CHECK(read(s, buf, sizeof buf) == 6 && memcmp(buf, "hello\n", 6) == 0);
    CHECK(drain(m, buf, 255) == 7 && strcmp(buf, "hello\r\n") == 0);
    /* Erase and kill edit the line; the echo shows it. */
    CHECK(write(m, "abx\177c\n", 6) == 6);
    CHECK(read(s, buf, sizeof buf) == 4 && memcmp(buf, "abc\n", 4) == 0);
    CHECK(drain(m, buf, 255) > 0 && strstr(buf, "\b \b") != NULL);
    CHECK(write(m, "gone\025kept\n", 10) == 10);
    CHECK(read(s, buf, sizeof buf) == 5 && memcmp(buf, "kept\n", 5) == 0);
    drain(m, buf, 255);
    /* End of file: a pending line is returned without it, an empty one reads 0. */
    CHECK(write(m, "xy\004", 3) == 3);
    CHECK(read(s, buf, sizeof buf) == 2 && memcmp(buf, "xy", 2) == 0);
    CHECK(write(m, "\004", 1) == 1);
    CHECK(read(s, buf, sizeof buf) == 0);
    drain(m, buf, 255);
    /* Output: \n becomes \r\n on its way to the master. */
    CHECK(write(s, "out\n", 4) == 4);
    CHECK(drain(m, buf, 255) == 5 && strcmp(buf, "out\r\n") == 0);
    /* Raw mode: bytes as they come, no echo, no output processing. */
    cfmakeraw(&t);
    CHECK(tcsetattr(s, TCSANOW, &t) == 0);
    CHECK(write(m, "\r\003", 2) == 2);
    CHECK(read(s, buf, sizeof buf) == 2 && buf[0] == '\r' && buf[1] == 3);
    CHECK(write(s, "a\n", 2) == 2 && drain(m, buf, 255) == 2 && strcmp(buf, "a\n") == 0);
    /* Window size. */
    struct winsize w = {.ws_row = 24, .ws_col = 80}, got;
    CHECK(ioctl(m, TIOCSWINSZ, &w) == 0 && ioctl(s, TIOCGWINSZ, &got) == 0);
    CHECK(got.ws_row == 24 && got.ws_col == 80);
    int n = -1;
    CHECK(ioctl(s, TIOCGPTN, &n) < 0 && errno == ENOTTY);
    CHECK(ioctl(m, TIOCGPTN, &n) == 0 && n >= 0);
    /* Closing every terminal end: the master reads EIO. */
    close(s);
    CHECK(read(m, buf, sizeof buf) < 0 && errno == EIO);
    close(m);
    printf("pty: locked until unlockpt, termios defaults, canonical editing, EOF, ONLCR, raw, winsize, EIO\n");
}

static void controlling(void) {
    int s, m = open_pair(&s);
    char *name = ptsname(m);
    int ready[2];
    CHECK(pipe(ready) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(m);
        close(ready[0]);
        CHECK(setsid() == getpid());
        int t = open(name, O_RDWR); /* a session leader without one: it becomes ours */
        CHECK(t >= 0);
        CHECK(tcgetpgrp(t) == getpid() && tcgetsid(t) == getpid());
        int tty = open("/dev/tty", O_RDWR);
        CHECK(tty >= 0);
        struct stat a;
        CHECK(fstat(tty, &a) == 0 && a.st_rdev == makedev(5, 0));
        CHECK(write(tty, "via tty\n", 8) == 8);
        /* A background group of the session: reading is SIGTTIN (stops it by default), or
         * EIO while that is ignored; writing is allowed without TOSTOP. */
        pid_t bg = fork();
        CHECK(bg >= 0);
        if (bg == 0) {
            CHECK(setpgid(0, 0) == 0);
            char c;
            signal(SIGTTIN, SIG_IGN);
            CHECK(read(t, &c, 1) < 0 && errno == EIO);
            CHECK(write(t, "", 0) == 0);
            signal(SIGTTIN, SIG_DFL);
            read(t, &c, 1); /* stopped here by SIGTTIN */
            _exit(3);
        }
        int bst;
        CHECK(waitpid(bg, &bst, WUNTRACED) == bg && WIFSTOPPED(bst) && WSTOPSIG(bst) == SIGTTIN);
        CHECK(kill(bg, SIGKILL) == 0 && waitpid(bg, &bst, 0) == bg);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
        CHECK(write(ready[1], "r", 1) == 1);
        int sig = 0;
        CHECK(sigwait(&set, &sig) == 0 && sig == SIGINT);
        _exit(0);
    }
    close(ready[1]);
    char c, buf[64];
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK(drain(m, buf, 63) == 9 && strcmp(buf, "via tty\r\n") == 0);
    /* We are in another session: not our controlling terminal. */
    CHECK(tcgetpgrp(s) < 0 && errno == ENOTTY);
    CHECK(open("/dev/tty", O_RDWR) < 0 && errno == ENXIO);
    CHECK(write(m, "\003", 1) == 1); /* ^C */
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(s);
    close(m);
    printf("controlling terminal: acquired on open by a session leader, /dev/tty, ^C to the foreground group, SIGTTIN for the background\n");
}

int main(void) {
    basics();
    controlling();
    return 0;
}
