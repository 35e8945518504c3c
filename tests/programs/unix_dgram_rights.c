// Unix datagram sockets by address (sendto/recvfrom with the sender's name, connect as a
// default destination and a filter, EPERM to a socket connected elsewhere, ECONNREFUSED to a
// closed one, disconnect with AF_UNSPEC, EMSGSIZE, a full queue's EAGAIN, sendmmsg/recvmmsg),
// and ancillary data: SCM_RIGHTS (files, pipes and sockets passed between processes, across
// a fork, MSG_CMSG_CLOEXEC, MSG_CTRUNC when the buffer is short, EBADF, stream reads stopping
// at passed fds) and SCM_CREDENTIALS with SO_PASSCRED.
#include "check.h"
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static socklen_t path_addr(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static int bound(int type, const char *path) {
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, path);
    int s = socket(AF_UNIX, type, 0);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, len) == 0);
    return s;
}

static void datagrams(void) {
    int a = bound(SOCK_DGRAM, "a"), b = bound(SOCK_DGRAM, "b");
    struct sockaddr_un to, from;
    socklen_t tolen = path_addr(&to, "b"), flen;
    char buf[64];
    CHECK(sendto(a, "one", 3, 0, (struct sockaddr *)&to, tolen) == 3);
    CHECK(sendto(a, "two!", 4, 0, (struct sockaddr *)&to, tolen) == 4);
    flen = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 3);
    CHECK(flen == path_addr(&to, "a") && strcmp(from.sun_path, "a") == 0);
    /* MSG_TRUNC: the rest of a datagram is dropped, and the flag returns the whole length. */
    CHECK(recv(b, buf, 2, MSG_TRUNC) == 4);
    CHECK_ERR(recv(b, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* An unbound sender is unnamed: the address length comes back 0. */
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    tolen = path_addr(&to, "b");
    CHECK(sendto(u, "anon", 4, 0, (struct sockaddr *)&to, tolen) == 4);
    flen = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 4 && flen == 0);
    CHECK_ERR(send(u, "x", 1, 0), ENOTCONN);
    /* connect: a default destination. */
    CHECK(connect(u, (struct sockaddr *)&to, tolen) == 0);
    CHECK(send(u, "via", 3, 0) == 3 && recv(b, buf, sizeof buf, 0) == 3);
    flen = sizeof from;
    CHECK(getpeername(u, (struct sockaddr *)&from, &flen) == 0 && strcmp(from.sun_path, "b") == 0);
    /* b connected to a: others may no longer send to it. */
    tolen = path_addr(&to, "a");
    CHECK(connect(b, (struct sockaddr *)&to, tolen) == 0);
    tolen = path_addr(&to, "b");
    CHECK_ERR(sendto(u, "x", 1, 0, (struct sockaddr *)&to, tolen), EPERM);
    CHECK(sendto(a, "ok", 2, 0, (struct sockaddr *)&to, tolen) == 2);
    CHECK(recv(b, buf, sizeof buf, 0) == 2);
    /* AF_UNSPEC disconnects. */
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    CHECK(connect(b, &unspec, sizeof unspec) == 0);
    flen = sizeof from;
    CHECK_ERR(getpeername(b, (struct sockaddr *)&from, &flen), ENOTCONN);
    CHECK(sendto(u, "back", 4, 0, (struct sockaddr *)&to, tolen) == 4);
    CHECK(recv(b, buf, sizeof buf, 0) == 4);
    /* Types must match; a closed socket refuses; too large a datagram never fits. */
    int st = bound(SOCK_STREAM, "st");
    tolen = path_addr(&to, "st");
    CHECK_ERR(sendto(a, "x", 1, 0, (struct sockaddr *)&to, tolen), EPROTOTYPE);
    close(st);
    close(b);
    tolen = path_addr(&to, "b");
    CHECK_ERR(sendto(a, "x", 1, 0, (struct sockaddr *)&to, tolen), ECONNREFUSED);
    CHECK_ERR(send(u, "x", 1, 0), ECONNREFUSED); /* the connected peer is gone */
    CHECK_ERR(send(u, "x", 1, 0), ENOTCONN);     /* ...and forgotten */
    static char big[300000];
    tolen = path_addr(&to, "a");
    CHECK_ERR(sendto(u, big, sizeof big, 0, (struct sockaddr *)&to, tolen), EMSGSIZE);
    /* A full queue: EAGAIN for a non-blocking sender. */
    int sent = 0;
    for (; sent < 100000; sent++) {
        if (sendto(u, "q", 1, MSG_DONTWAIT, (struct sockaddr *)&to, tolen) < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
    }
    CHECK(sent > 0 && sent < 100000);
    struct pollfd p = {.fd = a, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLIN);
    for (int i = 0; i < sent; i++)
        CHECK(recv(a, buf, sizeof buf, 0) == 1);
    CHECK_ERR(recv(a, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* sendmmsg/recvmmsg: several datagrams in one call. */
    struct mmsghdr msgs[3];
    struct iovec iovs[3];
    char bufs[3][8];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 3; i++) {
        snprintf(bufs[i], sizeof bufs[i], "m%d", i);
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = 2;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = tolen;
    }
    CHECK(sendmmsg(u, msgs, 3, 0) == 3);
    for (int i = 0; i < 3; i++)
        CHECK(msgs[i].msg_len == 2);
    memset(bufs, 0, sizeof bufs);
    for (int i = 0; i < 3; i++) {
        iovs[i].iov_len = sizeof bufs[i];
        msgs[i].msg_hdr.msg_name = NULL;
        msgs[i].msg_hdr.msg_namelen = 0;
    }
    CHECK(recvmmsg(a, msgs, 3, MSG_DONTWAIT, NULL) == 3);
    for (int i = 0; i < 3; i++)
        CHECK(msgs[i].msg_len == 2 && bufs[i][0] == 'm' && bufs[i][1] == '0' + i);
    CHECK_ERR(recvmmsg(a, msgs, 3, MSG_DONTWAIT, NULL), EAGAIN);
    close(u);
    close(a);
    unlink("a");
    unlink("b");
    unlink("st");
    printf("datagrams: names, connect, EPERM, ECONNREFUSED, AF_UNSPEC, EMSGSIZE, EAGAIN, mmsg\n");
}

/* Send `n` fds with `data` over `s`. */
static ssize_t send_fds(int s, const char *data, const int *fds, int n) {
    char control[CMSG_SPACE(sizeof(int) * 16)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        m.msg_control = control;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    return sendmsg(s, &m, 0);
}

/* Receive into `buf` and up to `max` fds (returned in `fds`, count in *n); `space` bytes of
 * control buffer. Returns the bytes read and sets *flags. */
static ssize_t recv_fds(int s, char *buf, size_t len, int *fds, int *n, size_t space, int rflags, int *flags) {
    char control[512];
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = space};
    ssize_t r = recvmsg(s, &m, rflags);
    *n = 0;
    if (r < 0)
        return r;
    *flags = m.msg_flags;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
        int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds + *n, CMSG_DATA(c), k * sizeof(int));
        *n += k;
    }
    return r;
}

static void rights(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    /* A file and a pipe's write end go to a child, which uses both. */
    int file = open("shared", O_CREAT | O_RDWR | O_TRUNC, 0600);
    int pp[2];
    CHECK(file >= 0 && pipe(pp) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        close(file);
        close(pp[0]);
        close(pp[1]);
        char buf[16];
        int fds[4], n = 0, flags = 0;
        CHECK(recv_fds(sv[1], buf, sizeof buf, fds, &n, 512, MSG_CMSG_CLOEXEC, &flags) == 4);
        /* Linux echoes MSG_CMSG_CLOEXEC in msg_flags. */
        CHECK(n == 2 && flags == MSG_CMSG_CLOEXEC && memcmp(buf, "fds!", 4) == 0);
        CHECK(fcntl(fds[0], F_GETFD) == FD_CLOEXEC && fcntl(fds[1], F_GETFD) == FD_CLOEXEC);
        CHECK(write(fds[0], "via file", 8) == 8);
        CHECK(write(fds[1], "via pipe", 8) == 8);
        _exit(0);
    }
    int fds[2] = {file, pp[1]};
    CHECK(send_fds(sv[0], "fds!", fds, 2) == 4);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char buf[64];
    /* The same open file description: the child's write moved our offset. */
    CHECK(lseek(file, 0, SEEK_CUR) == 8);
    CHECK(pread(file, buf, sizeof buf, 0) == 8 && memcmp(buf, "via file", 8) == 0);
    CHECK(read(pp[0], buf, sizeof buf) == 8 && memcmp(buf, "via pipe", 8) == 0);
    /* Received fds are new numbers for the same files. */
    int got[4], n, flags;
    CHECK(send_fds(sv[0], "x", fds, 1) == 1);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, 512, 0, &flags) == 1 && n == 1);
    struct stat a, b;
    CHECK(fstat(got[0], &a) == 0 && fstat(file, &b) == 0 && a.st_ino == b.st_ino && got[0] != file);
    CHECK(fcntl(got[0], F_GETFD) == 0);
    close(got[0]);
    /* A control buffer with room for one fd of two: MSG_CTRUNC, the other is closed. */
    CHECK(send_fds(sv[0], "y", fds, 2) == 1);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, CMSG_LEN(sizeof(int)), 0, &flags) == 1);
    CHECK(n == 1 && (flags & MSG_CTRUNC));
    close(got[0]);
    /* No room at all. */
    CHECK(send_fds(sv[0], "z", fds, 1) == 1);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, 0, 0, &flags) == 1 && n == 0 && (flags & MSG_CTRUNC));
    /* A stream read merges writes but stops after the one that carried fds. */
    CHECK(write(sv[0], "plain", 5) == 5);
    CHECK(send_fds(sv[0], "withfd", fds, 1) == 6);
    CHECK(write(sv[0], "after", 5) == 5);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, 512, 0, &flags) == 11 && n == 1);
    CHECK(memcmp(buf, "plainwithfd", 11) == 0);
    close(got[0]);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, 512, 0, &flags) == 5 && n == 0);
    /* Bad fds are EBADF, and nothing is sent. */
    int bad[1] = {999};
    CHECK_ERR(send_fds(sv[0], "bad", bad, 1), EBADF);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* A socket can be passed too, and still works at the other end. */
    int inner[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, inner) == 0);
    CHECK(send_fds(sv[0], "s", &inner[1], 1) == 1);
    close(inner[1]);
    CHECK(recv_fds(sv[1], buf, sizeof buf, got, &n, 512, 0, &flags) == 1 && n == 1);
    CHECK(send(got[0], "inner", 5, 0) == 5 && recv(inner[0], buf, sizeof buf, 0) == 5);
    close(got[0]);
    close(inner[0]);
    /* Passed fds in a queue that is closed unread are released: the pipe sees EOF. */
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(send_fds(sv[0], "w", &q[1], 1) == 1);
    close(q[1]);
    close(sv[1]);
    close(sv[0]);
    CHECK(read(q[0], buf, sizeof buf) == 0);
    close(q[0]);
    close(file);
    close(pp[0]);
    close(pp[1]);
    unlink("shared");
    printf("SCM_RIGHTS: files, pipes, sockets, across fork, CLOEXEC, CTRUNC, EBADF, released\n");
}

static void credentials(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    int on = 1, got = -1;
    socklen_t len = sizeof got;
    CHECK(getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &got, &len) == 0 && got == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
    CHECK(getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &got, &len) == 0 && got == 1);
    /* The kernel attaches the sender's credentials. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(send(sv[0], "c", 1, 0) == 1);
        _exit(0);
    }
    CHECK(waitpid(pid, NULL, 0) == pid);
    char buf[8], control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    CHECK(recvmsg(sv[1], &m, 0) == 1);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS);
    CHECK(c->cmsg_len == CMSG_LEN(sizeof(struct ucred)));
    struct ucred cr;
    memcpy(&cr, CMSG_DATA(c), sizeof cr);
    CHECK(cr.pid == pid && cr.uid == getuid() && cr.gid == getgid());
    /* Explicit credentials that are the sender's own are accepted. */
    struct ucred mine = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    m.msg_controllen = sizeof control;
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof mine);
    memcpy(CMSG_DATA(c), &mine, sizeof mine);
    iov.iov_len = 1;
    CHECK(sendmsg(sv[0], &m, 0) == 1);
    m.msg_controllen = sizeof control;
    iov.iov_len = sizeof buf;
    CHECK(recvmsg(sv[1], &m, 0) == 1);
    c = CMSG_FIRSTHDR(&m);
    memcpy(&cr, CMSG_DATA(c), sizeof cr);
    CHECK(cr.pid == getpid() && cr.uid == getuid());
    /* Without SO_PASSCRED nothing is attached. */
    on = 0;
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
    CHECK(send(sv[0], "d", 1, 0) == 1);
    m.msg_controllen = sizeof control;
    CHECK(recvmsg(sv[1], &m, 0) == 1 && m.msg_controllen == 0);
    /* A malformed control message is EINVAL. */
    m.msg_controllen = sizeof control;
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_len = 4;
    iov.iov_len = 1;
    CHECK_ERR(sendmsg(sv[0], &m, 0), EINVAL);
    close(sv[0]);
    close(sv[1]);
    printf("SCM_CREDENTIALS: attached with SO_PASSCRED, explicit own credentials, EINVAL\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0); /* children that fail must not repeat our output */
    datagrams();
    rights();
    credentials();
    return 0;
}
