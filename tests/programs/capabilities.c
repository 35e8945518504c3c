// Capability sets per capabilities(7), capset(2) and prctl(2): single capabilities dropped and
// raised again within the permitted set, the checks that consult them (file permissions, chown,
// kill, setuid), the bounding and ambient sets, SECBIT_KEEP_CAPS and the securebits, the sets
// across setuid and across execve, and /proc/self/status. Each case runs in a forked child that
// starts as root with root's full sets (the program says so otherwise). The sets are compared
// with those the program started with: a host's root, and Moat's (which withholds CAP_NET_RAW),
// may lack some capabilities.
// args: start
#include "check.h"
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

typedef unsigned long long u64;

struct sets {
    u64 eff, perm, inh;
};

static struct sets get(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    struct sets s = {
        d[0].effective | (u64)d[1].effective << 32,
        d[0].permitted | (u64)d[1].permitted << 32,
        d[0].inheritable | (u64)d[1].inheritable << 32,
    };
    return s;
}

static long set(struct sets s) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(unsigned)s.eff, (unsigned)s.perm, (unsigned)s.inh},
        {(unsigned)(s.eff >> 32), (unsigned)(s.perm >> 32),
         (unsigned)(s.inh >> 32)},
    };
    return syscall(SYS_capset, &h, d);
}

#define BIT(c) (1ULL << (c))

/* A /proc/self/status capability line, as a number. */
static u64 status(const char *name) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n > 0);
    close(fd);
    buf[n] = 0;
    char key[32];
    snprintf(key, sizeof key, "\n%s:\t", name);
    char *p = strstr(buf, key);
    CHECK(p != NULL);
    return strtoull(p + strlen(key), NULL, 16);
}

static u64 all;

/* A root-owned file only its owner may read, in the run's own working directory. */
static void make_private_file(void) {
    int fd = open("private", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, "x", 1) == 1);
    close(fd);
    CHECK(chown("private", 4242, 4242) == 0);
}

/* Dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the effective set only: another
 * user's 0600 file is closed; raising them back from the permitted set opens it. */
static void effective_drop_and_raise(void) {
    struct sets s = get();
    CHECK(s.eff == all && s.perm == all && s.inh == 0);
    s.eff &= ~(BIT(CAP_DAC_OVERRIDE) | BIT(CAP_DAC_READ_SEARCH));
    CHECK(set(s) == 0);
    CHECK(get().eff == s.eff);
    CHECK(status("CapEff") == s.eff && status("CapPrm") == all);
    CHECK_ERR(open("private", O_RDONLY), EACCES);
    /* CAP_DAC_READ_SEARCH alone reads, but does not write. */
    s.eff |= BIT(CAP_DAC_READ_SEARCH);
    CHECK(set(s) == 0);
    int fd = open("private", O_RDONLY);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(open("private", O_WRONLY), EACCES);
    s.eff = all;
    CHECK(set(s) == 0);
    fd = open("private", O_RDWR);
    CHECK(fd >= 0);
    close(fd);
}

/* A capability dropped from the permitted set cannot come back; chown and kill need theirs. */
static void permitted_drop_is_final(void) {
    struct sets s = get();
    s.eff &= ~(BIT(CAP_CHOWN) | BIT(CAP_KILL));
    s.perm &= ~(BIT(CAP_CHOWN) | BIT(CAP_KILL));
    CHECK(set(s) == 0);
    CHECK_ERR(chown("private", 0, 0), EPERM);
    /* Signalling a process of another user needs CAP_KILL. */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t other = fork();
    CHECK(other >= 0);
    if (other == 0) {
        CHECK(setresuid(4242, 4242, 4242) == 0);
        char c;
        (void)read(p[0], &c, 1);
        _exit(0);
    }
    /* Wait until the child has become uid 4242 (its /proc status says so). */
    for (;;) {
        char path[64], buf[2048];
        snprintf(path, sizeof path, "/proc/%d/status", other);
        int fd = open(path, O_RDONLY);
        CHECK(fd >= 0);
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        CHECK(n > 0);
        buf[n] = 0;
        if (strstr(buf, "\nUid:\t4242"))
            break;
        usleep(1000);
    }
    CHECK_ERR(kill(other, 0), EPERM);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(waitpid(other, NULL, 0) == other);
    /* Raising either back is refused, in the permitted set or the effective one. */
    struct sets back = s;
    back.perm |= BIT(CAP_CHOWN);
    CHECK_ERR(set(back), EPERM);
    back = s;
    back.eff |= BIT(CAP_KILL);
    CHECK_ERR(set(back), EPERM);
    /* The inheritable set may take only what is permitted (no CAP_SETPCAP here). */
    back = s;
    back.eff &= ~BIT(CAP_SETPCAP);
    CHECK(set(back) == 0);
    back.inh = BIT(CAP_CHOWN);
    CHECK_ERR(set(back), EPERM);
    back.inh = BIT(CAP_SYS_TIME);
    CHECK(set(back) == 0);
    CHECK(get().inh == BIT(CAP_SYS_TIME));
}

/* setuid without CAP_SETUID is refused although the IDs are root's. */
static void setuid_needs_cap_setuid(void) {
    struct sets s = get();
    s.eff &= ~BIT(CAP_SETUID);
    CHECK(set(s) == 0);
    CHECK_ERR(setuid(1000), EPERM);
    CHECK(setgid(1000) == 0);
    s.eff &= ~BIT(CAP_SETGID);
    CHECK(set(s) == 0);
    CHECK_ERR(setgid(2000), EPERM);
    gid_t g = 5;
    CHECK_ERR(setgroups(1, &g), EPERM);
}

/* The bounding set: read, drop (with CAP_SETPCAP), and what a root exec gets from it. */
static void bounding_set(void) {
    CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_TIME) == 1);
    CHECK_ERR(prctl(PR_CAPBSET_READ, 64), EINVAL);
    CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_TIME) == 0);
    CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_TIME) == 0);
    CHECK(status("CapBnd") == (all & ~BIT(CAP_SYS_TIME)));
    CHECK_ERR(prctl(PR_CAPBSET_DROP, 64), EINVAL);
    /* Still permitted and effective until an exec. */
    CHECK(get().eff == all);
    struct sets s = get();
    s.eff &= ~BIT(CAP_SETPCAP);
    CHECK(set(s) == 0);
    CHECK_ERR(prctl(PR_CAPBSET_DROP, CAP_CHOWN), EPERM);
}

/* SECBIT_KEEP_CAPS: leaving root keeps the permitted set (not the effective one), and the
 * kept capabilities can be made effective again; without it everything goes. */
static void keep_caps(void) {
    CHECK(prctl(PR_GET_KEEPCAPS) == 0);
    CHECK_ERR(prctl(PR_SET_KEEPCAPS, 2), EINVAL);
    CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0);
    CHECK(prctl(PR_GET_KEEPCAPS) == 1);
    CHECK(prctl(PR_GET_SECUREBITS) == SECBIT_KEEP_CAPS);
    CHECK(setresuid(1000, 1000, 1000) == 0);
    struct sets s = get();
    CHECK(s.perm == all && s.eff == 0);
    CHECK(status("CapPrm") == all && status("CapEff") == 0);
    /* Now uid 1000 reads uid 4242's 0600 file, with CAP_DAC_OVERRIDE made effective. */
    CHECK_ERR(open("private", O_RDONLY), EACCES);
    s.eff = BIT(CAP_DAC_OVERRIDE);
    CHECK(set(s) == 0);
    int fd = open("private", O_RDONLY);
    CHECK(fd >= 0);
    close(fd);
    /* CAP_SETUID made effective lets uid 1000 become root again. */
    s.eff = BIT(CAP_SETUID);
    CHECK(set(s) == 0);
    CHECK(setuid(0) == 0);
    CHECK(getuid() == 0 && geteuid() == 0);
    /* The effective UID's return to 0 fills the effective set from the permitted one. */
    CHECK(get().eff == all);
}

static void keep_caps_off(void) {
    CHECK(setresuid(1000, 1000, 1000) == 0);
    struct sets s = get();
    CHECK(s.perm == 0 && s.eff == 0);
}

/* Only the effective UID moving away from 0 clears just the effective set; its return
 * restores it from the permitted set. */
static void effective_uid_only(void) {
    CHECK(setresuid(-1, 1000, -1) == 0);
    struct sets s = get();
    CHECK(s.perm == all && s.eff == 0);
    CHECK(setresuid(-1, 0, -1) == 0);
    CHECK(get().eff == all);
}

/* SECBIT_NO_SETUID_FIXUP: the sets stay as they are across a change of IDs. Locked bits
 * cannot change; unknown bits are refused; all of it needs CAP_SETPCAP. */
static void securebits(void) {
    CHECK_ERR(prctl(PR_SET_SECUREBITS, 1 << 12), EPERM);
    CHECK(prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS_LOCKED) == 0);
    CHECK_ERR(prctl(PR_SET_KEEPCAPS, 1), EPERM);
    CHECK_ERR(prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP), EPERM);
    CHECK(setresuid(1000, 1000, 1000) == 0);
    CHECK(get().eff == all);
    CHECK(status("CapEff") == all);
    CHECK(prctl(PR_GET_SECUREBITS) ==
          (SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS_LOCKED));
}

/* The ambient set: raise needs permitted and inheritable; lowering the inheritable set
 * through capset takes it out; IS_SET and CLEAR_ALL. */
static void ambient(void) {
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 0);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0), EPERM);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 64, 0, 0), EINVAL);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, 9, CAP_NET_BIND_SERVICE, 0, 0), EINVAL);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 1, 0, 0), EINVAL);
    struct sets s = get();
    s.inh = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL);
    CHECK(set(s) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 1);
    CHECK(status("CapAmb") == (BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL)));
    s.inh = BIT(CAP_NET_BIND_SERVICE);
    CHECK(set(s) == 0);
    CHECK(status("CapAmb") == BIT(CAP_NET_BIND_SERVICE));
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_NET_BIND_SERVICE, 0, 0) == 0);
    CHECK(status("CapAmb") == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0);
    CHECK(status("CapAmb") == 0);
}

/* Run this program again with `how` and return its exit status. */
static int reexec(const char *how) {
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "capabilities", how, (char *)NULL);
        _exit(99);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Across execve: a user keeps only its ambient set (permitted and effective); root gets its
 * bounding set back whatever it dropped, unless NO_NEW_PRIVS holds it to what it had. */
static void exec_sets(void) {
    /* A user with CAP_NET_BIND_SERVICE ambient. */
    CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0);
    CHECK(setresuid(1000, 1000, 1000) == 0);
    struct sets s = get();
    s.inh = BIT(CAP_NET_BIND_SERVICE);
    s.eff = 0;
    CHECK(set(s) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0);
    CHECK(reexec("ambient-user") == 0);
}

static void exec_root(void) {
    /* Root dropped most of its sets; an exec gives back the bounding set... */
    struct sets s = {BIT(CAP_KILL), BIT(CAP_KILL), 0};
    CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN) == 0);
    CHECK(set(s) == 0);
    CHECK(reexec("root-full") == 0);
    /* ...unless NO_NEW_PRIVS is set. */
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(reexec("root-kept") == 0);
}

static int after_exec(const char *how) {
    struct sets s = get();
    if (strcmp(how, "ambient-user") == 0) {
        CHECK(getuid() == 1000);
        CHECK(s.perm == BIT(CAP_NET_BIND_SERVICE));
        CHECK(s.eff == BIT(CAP_NET_BIND_SERVICE));
        CHECK(s.inh == BIT(CAP_NET_BIND_SERVICE));
        CHECK(status("CapAmb") == BIT(CAP_NET_BIND_SERVICE));
        /* KEEP_CAPS does not survive execve. */
        CHECK(prctl(PR_GET_KEEPCAPS) == 0);
        return 0;
    }
    if (strcmp(how, "root-full") == 0) {
        /* The bounding set, which lacks CAP_SYS_ADMIN now. */
        u64 bounding = status("CapBnd");
        CHECK((bounding & BIT(CAP_SYS_ADMIN)) == 0 && (bounding & BIT(CAP_KILL)));
        CHECK(s.perm == bounding);
        CHECK(s.eff == s.perm);
        return 0;
    }
    if (strcmp(how, "root-kept") == 0) {
        CHECK(s.perm == BIT(CAP_KILL) && s.eff == BIT(CAP_KILL));
        return 0;
    }
    return 3;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "start") != 0)
        return after_exec(argv[1]);
    if (getuid() != 0) {
        printf("not root: nothing checked\n");
        return 0;
    }
    /* Root's sets as this program got them (a host's root may lack some). */
    all = get().eff;
    CHECK(all != 0 && get().perm == all && status("CapBnd") == all);
    make_private_file();
    in_child(effective_drop_and_raise);
    in_child(permitted_drop_is_final);
    in_child(setuid_needs_cap_setuid);
    in_child(bounding_set);
    in_child(keep_caps);
    in_child(keep_caps_off);
    in_child(effective_uid_only);
    in_child(securebits);
    in_child(ambient);
    in_child(exec_sets);
    in_child(exec_root);
    printf("capability sets checked\n");
    return 0;
}
