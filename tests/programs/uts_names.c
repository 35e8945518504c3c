// sethostname(2) and setdomainname(2): uname and /proc/sys/kernel show the new names; the
// errors in Linux's order (CAP_SYS_ADMIN, then the length, then the buffer). Natively the
// program first moves into a UTS namespace of its own (so the host keeps its name); under Moat
// the sandbox is its own already.
#include "check.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/utsname.h>

static void read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, size - 1);
    CHECK(n > 0);
    buf[n] = 0;
    close(fd);
}

/* Drop CAP_SYS_ADMIN from the effective set. */
static void drop_sys_admin(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    d[0].effective &= ~(1u << CAP_SYS_ADMIN);
    CHECK(syscall(SYS_capset, &h, d) == 0);
}

static void unprivileged(void) {
    drop_sys_admin();
    CHECK_ERR(sethostname("x", 1), EPERM);
    /* The capability is checked before the length and the buffer. */
    CHECK_ERR(syscall(SYS_sethostname, "x", 100), EPERM);
    CHECK_ERR(syscall(SYS_setdomainname, BAD_PTR, 3), EPERM);
}

int main(void) {
    struct utsname u;
    CHECK(uname(&u) == 0);
    if (getuid() != 0) {
        printf("not root: nothing checked\n");
        return 0;
    }
    if (strstr(u.release, "moat") == NULL)
        CHECK(unshare(CLONE_NEWUTS) == 0);

    CHECK(sethostname("box-1", 5) == 0);
    CHECK(setdomainname("example.test", 12) == 0);
    CHECK(uname(&u) == 0);
    CHECK(strcmp(u.nodename, "box-1") == 0);
    CHECK(strcmp(u.domainname, "example.test") == 0);
    char buf[128];
    read_file("/proc/sys/kernel/hostname", buf, sizeof buf);
    CHECK(strcmp(buf, "box-1\n") == 0);
    read_file("/proc/sys/kernel/domainname", buf, sizeof buf);
    CHECK(strcmp(buf, "example.test\n") == 0);
    char name[80];
    CHECK(gethostname(name, sizeof name) == 0 && strcmp(name, "box-1") == 0);

    /* The length counts bytes, with no terminator needed; 64 is the most. */
    char long_name[65];
    memset(long_name, 'a', sizeof long_name);
    CHECK(sethostname(long_name, 64) == 0);
    CHECK(uname(&u) == 0);
    CHECK(strlen(u.nodename) == 64);
    CHECK_ERR(syscall(SYS_sethostname, long_name, 65), EINVAL);
    CHECK_ERR(syscall(SYS_sethostname, "x", -1), EINVAL);
    CHECK_ERR(syscall(SYS_sethostname, BAD_PTR, 3), EFAULT);
    /* An empty name is allowed. */
    CHECK(sethostname("", 0) == 0);
    CHECK(uname(&u) == 0 && u.nodename[0] == 0);

    in_child(unprivileged);
    printf("host and domain names checked\n");
    return 0;
}
