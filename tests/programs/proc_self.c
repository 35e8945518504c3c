// /proc (and /sys) as a program reads them about itself: the executable, command line, name, status
// and the system files whose values other calls also report.
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/utsname.h>

static size_t slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf + total, size - 1 - total)) > 0)
        total += n;
    CHECK(n == 0);
    buf[total] = 0;
    close(fd);
    return total;
}

int main(int argc, char **argv) {
    static char buf[1 << 16];
    char exe[4096], want[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    CHECK(realpath(argv[0], want) != NULL && strcmp(exe, want) == 0);

    /* cmdline: the arguments, each ended by a NUL. */
    size_t len = slurp("/proc/self/cmdline", buf, sizeof buf);
    size_t expect = 0;
    for (int i = 0; i < argc; i++) {
        CHECK(strcmp(buf + expect, argv[i]) == 0);
        expect += strlen(argv[i]) + 1;
    }
    CHECK(len == expect);

    /* comm: the executable's name, cut to 15 bytes, and a newline. */
    const char *base = strrchr(want, '/') + 1;
    size_t cut = strlen(base) < 15 ? strlen(base) : 15;
    slurp("/proc/self/comm", buf, sizeof buf);
    CHECK(strncmp(buf, base, cut) == 0 && buf[cut] == '\n' && buf[cut + 1] == 0);

    char line[64];
    slurp("/proc/self/status", buf, sizeof buf);
    snprintf(line, sizeof line, "\nPid:\t%d\n", getpid());
    CHECK(strstr(buf, line) != NULL);
    snprintf(line, sizeof line, "\nUid:\t%d\t%d\t", getuid(), geteuid());
    CHECK(strstr(buf, line) != NULL);

    /* /proc/self is a symlink to the process's own directory. */
    n = readlink("/proc/self", line, sizeof line - 1);
    CHECK(n > 0);
    line[n] = 0;
    CHECK(atoi(line) == getpid());

    struct utsname u;
    CHECK(uname(&u) == 0);
    slurp("/proc/sys/kernel/osrelease", buf, sizeof buf);
    CHECK(strncmp(buf, u.release, strlen(u.release)) == 0);
    slurp("/proc/sys/kernel/hostname", buf, sizeof buf);
    CHECK(strncmp(buf, u.nodename, strlen(u.nodename)) == 0);

    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    slurp("/proc/cpuinfo", buf, sizeof buf);
    int cpus = 0;
    for (char *p = buf; (p = strstr(p, "processor\t")) != NULL; p++)
        cpus++;
    CHECK(cpus == CPU_COUNT(&set));
    /* sysfs lists the online CPUs as a range list; at least those we may run on. */
    slurp("/sys/devices/system/cpu/online", buf, sizeof buf);
    CHECK(buf[0] == '0' && buf[strlen(buf) - 1] == '\n');
    CHECK(sysconf(_SC_NPROCESSORS_ONLN) >= CPU_COUNT(&set));
    slurp("/proc/meminfo", buf, sizeof buf);
    CHECK(strncmp(buf, "MemTotal:", 9) == 0);

    /* procfs files are not writable, and names that do not exist are ENOENT. */
    int w = open("/proc/self/cmdline", O_WRONLY);
    if (geteuid() == 0) {
        CHECK(w >= 0); /* root passes the mode check; the file has no write operation */
        CHECK_ERR(write(w, "x", 1), EINVAL);
    } else {
        CHECK(w == -1 && errno == EACCES);
    }
    CHECK_ERR(open("/proc/self/no-such-file", O_RDONLY), ENOENT);
    printf("proc ok\n");
    return 0;
}
