// Unix stream and seqpacket sockets by address: bind (pathname, abstract, autobind) and its
// errors, the socket file it leaves, listen/connect/accept4 with the backlog and its EAGAIN,
// names of both ends, SO_PEERCRED, ECONNREFUSED/ENOENT/EPROTOTYPE/EISCONN, data before
// accept, shutdown and close as the peer sees them (EOF, EPIPE, ECONNRESET, POLLRDHUP,
// POLLHUP), poll and epoll readiness, a large transfer between processes with a checksum,
// seqpacket boundaries and MSG_TRUNC, and FIONREAD.
#include "check.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
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

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

/* A listening socket of `type` bound at `path`. */
static int listener(int type, const char *path, int backlog) {
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, path);
    int s = socket(AF_UNIX, type, 0);
    CHECK(s >= 0);
    CHECK(bind(s, (struct sockaddr *)&a, len) == 0);
    CHECK(listen(s, backlog) == 0);
    return s;
}

static int connect_to(int type, const char *path) {
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, path);
    int c = socket(AF_UNIX, type, 0);
    CHECK(c >= 0);
    CHECK(connect(c, (struct sockaddr *)&a, len) == 0);
    return c;
}

static short revents(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    CHECK(poll(&p, 1, 0) >= 0);
    return p.revents;
}

static void binding(void) {
    struct sockaddr_un a, got;
    socklen_t len = path_addr(&a, "sock"), glen;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(s >= 0);
    /* Unbound: the name is just the family. */
    glen = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &glen) == 0 && glen == 2 && got.sun_family == AF_UNIX);
    CHECK_ERR(getpeername(s, (struct sockaddr *)&got, &glen), ENOTCONN);
    mode_t old = umask(022);
    CHECK(bind(s, (struct sockaddr *)&a, len) == 0);
    umask(old);
    glen = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == len && strcmp(got.sun_path, "sock") == 0);
    struct stat st;
    CHECK(stat("sock", &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0755);
    CHECK_ERR(open("sock", O_RDONLY), ENXIO);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, len), EADDRINUSE); /* the name comes first */
    struct sockaddr_un b;
    socklen_t blen = path_addr(&b, "sock2");
    CHECK_ERR(bind(s, (struct sockaddr *)&b, blen), EINVAL); /* already bound */
    CHECK_ERR(stat("sock2", &st), ENOENT);
    blen = abstract_addr(&b, "other");
    CHECK_ERR(bind(s, (struct sockaddr *)&b, blen), EINVAL);
    int t = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(t >= 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&a, len), EADDRINUSE); /* the file exists */
    CHECK_ERR(bind(t, (struct sockaddr *)&a, 1), EINVAL);
    CHECK_ERR(bind(t, (struct sockaddr *)&a, sizeof a + 1), EINVAL);
    a.sun_family = AF_INET;
    CHECK_ERR(bind(t, (struct sockaddr *)&a, len), EINVAL);
    CHECK_ERR(bind(t, BAD_PTR, len), EFAULT);
    path_addr(&a, "nodir/sock");
    CHECK_ERR(bind(t, (struct sockaddr *)&a, len + 6), ENOENT);
    /* Abstract names live in no directory and may contain anything. */
    len = abstract_addr(&a, "moat-test");
    a.sun_path[11] = 'x'; /* "\0moat-test\0x": a NUL inside the name */
    len += 2;
    CHECK(bind(t, (struct sockaddr *)&a, len) == 0);
    glen = sizeof got;
    CHECK(getsockname(t, (struct sockaddr *)&got, &glen) == 0 && glen == len);
    CHECK(memcmp(&got, &a, len) == 0);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(bind(u, (struct sockaddr *)&a, len), EADDRINUSE);
    /* A shorter name is another name. */
    CHECK(bind(u, (struct sockaddr *)&a, len - 2) == 0);
    close(u);
    /* Abstract names are per socket type. */
    u = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(u, (struct sockaddr *)&a, len) == 0);
    close(u);
    /* Autobind: an address of just the family picks a fresh abstract name of 5 hex digits. */
    u = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(u, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path)) == 0);
    glen = sizeof got;
    CHECK(getsockname(u, (struct sockaddr *)&got, &glen) == 0 && glen == 8 && got.sun_path[0] == 0);
    for (int i = 1; i < 6; i++)
        CHECK(strchr("0123456789abcdef", got.sun_path[i]) != NULL);
    close(u);
    close(t);
    close(s);
    /* Closing leaves the file, and its name stays taken until unlinked. */
    len = path_addr(&a, "sock");
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, len), EADDRINUSE);
    CHECK_ERR(connect(s, (struct sockaddr *)&a, len), ECONNREFUSED);
    CHECK(unlink("sock") == 0);
    CHECK_ERR(connect(s, (struct sockaddr *)&a, len), ENOENT);
    CHECK(bind(s, (struct sockaddr *)&a, len) == 0);
    close(s);
    CHECK(unlink("sock") == 0);
    printf("bind: paths, abstract names, autobind, the socket file, errors\n");
}

static void connecting(void) {
    struct sockaddr_un a, got;
    socklen_t len, glen;
    int l = listener(SOCK_STREAM, "srv", 2);
    int one = -1;
    socklen_t olen = sizeof one;
    CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &one, &olen) == 0 && one == 1);
    CHECK_ERR(listen(socket(AF_UNIX, SOCK_STREAM, 0), 1), EINVAL); /* not bound */
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    len = path_addr(&a, "dgram");
    CHECK(bind(d, (struct sockaddr *)&a, len) == 0);
    CHECK_ERR(listen(d, 1), EOPNOTSUPP);
    CHECK_ERR(accept(d, NULL, NULL), EOPNOTSUPP);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), EPROTOTYPE);
    CHECK_ERR(accept(c, NULL, NULL), EINVAL); /* not listening */
    /* Not a socket, and nothing there. */
    CHECK(close(open("plain", O_CREAT | O_WRONLY, 0600)) == 0);
    len = path_addr(&a, "plain");
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), ECONNREFUSED);
    len = path_addr(&a, "missing");
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), ENOENT);
    len = abstract_addr(&a, "nobody-here");
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), ECONNREFUSED);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, 2), EINVAL);
    /* Nothing pending yet: a non-blocking accept says EAGAIN. */
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
    CHECK_ERR(accept(l, NULL, NULL), EAGAIN);
    CHECK((revents(l) & (POLLIN | POLLOUT)) == 0);
    /* The client is connected at once and may write before the accept. */
    len = path_addr(&a, "srv");
    CHECK(connect(c, (struct sockaddr *)&a, len) == 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), EISCONN);
    CHECK(write(c, "early", 5) == 5);
    CHECK(revents(l) & POLLIN);
    glen = sizeof got;
    CHECK(getpeername(c, (struct sockaddr *)&got, &glen) == 0 && glen == len && strcmp(got.sun_path, "srv") == 0);
    glen = sizeof got;
    CHECK(getsockname(c, (struct sockaddr *)&got, &glen) == 0 && glen == 2);
    glen = sizeof got;
    int s = accept4(l, (struct sockaddr *)&got, &glen, SOCK_CLOEXEC | SOCK_NONBLOCK);
    CHECK(s >= 0 && glen == 2); /* the client is unnamed */
    CHECK(fcntl(s, F_GETFD) == FD_CLOEXEC && (fcntl(s, F_GETFL) & O_NONBLOCK));
    CHECK_ERR(accept4(l, NULL, NULL, 0x1234), EINVAL);
    glen = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &glen) == 0 && glen == len && strcmp(got.sun_path, "srv") == 0);
    char buf[64];
    CHECK(read(s, buf, sizeof buf) == 5 && memcmp(buf, "early", 5) == 0);
    CHECK_ERR(read(s, buf, sizeof buf), EAGAIN);
    CHECK(write(s, "reply", 5) == 5 && read(c, buf, sizeof buf) == 5 && memcmp(buf, "reply", 5) == 0);
    /* Peer credentials: each end sees the other's process. */
    struct ucred cr;
    olen = sizeof cr;
    CHECK(getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &olen) == 0 && olen == sizeof cr);
    CHECK(cr.pid == getpid() && cr.uid == geteuid() && cr.gid == getegid());
    CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &olen) == 0 && cr.pid == getpid());
    one = -1;
    olen = sizeof one;
    CHECK(getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &one, &olen) == 0 && one == 0);
    close(s);
    close(c);
    /* A bound client is named to the server. */
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    len = path_addr(&a, "client");
    CHECK(bind(c, (struct sockaddr *)&a, len) == 0);
    len = path_addr(&a, "srv");
    CHECK(connect(c, (struct sockaddr *)&a, len) == 0);
    glen = sizeof got;
    s = accept(l, (struct sockaddr *)&got, &glen);
    CHECK(s >= 0 && glen == path_addr(&a, "client") && strcmp(got.sun_path, "client") == 0);
    close(s);
    close(c);
    /* The backlog: Linux admits backlog+1 connections, then a non-blocking connect waits
     * no more (EAGAIN). */
    int cs[3];
    len = path_addr(&a, "srv");
    for (int i = 0; i < 3; i++) {
        cs[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(connect(cs[i], (struct sockaddr *)&a, len) == 0);
    }
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), EAGAIN);
    /* A blocking connect waits until an accept makes room. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int b = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(b, (struct sockaddr *)&a, len) == 0);
        CHECK(write(b, "B", 1) == 1);
        _exit(0);
    }
    usleep(50 * 1000);
    for (int i = 0; i < 3; i++) {
        s = accept(l, NULL, NULL);
        CHECK(s >= 0);
        close(s);
        close(cs[i]);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(fcntl(l, F_SETFL, 0) == 0);
    s = accept(l, NULL, NULL);
    CHECK(s >= 0 && read(s, buf, 1) == 1 && buf[0] == 'B');
    close(s);
    close(c);
    /* Closing the listener resets the connections still waiting in its backlog. */
    c = connect_to(SOCK_STREAM, "srv");
    close(l);
    CHECK_ERR(read(c, buf, sizeof buf), ECONNRESET);
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);
    len = path_addr(&a, "srv");
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, len), ECONNREFUSED);
    close(c);
    close(d);
    unlink("srv");
    unlink("client");
    unlink("dgram");
    printf("connect/accept: names, credentials, backlog, errors, reset by a closed listener\n");
}

static void ends(void) {
    char buf[64];
    int fresh = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(revents(fresh) == (POLLOUT | POLLHUP));
    CHECK_ERR(read(fresh, buf, 1), EINVAL);
    CHECK_ERR(send(fresh, "x", 1, MSG_NOSIGNAL), ENOTCONN);
    CHECK(shutdown(fresh, SHUT_RDWR) == 0); /* unix sockets allow it unconnected */
    close(fresh);
    int l = listener(SOCK_STREAM, "ends", 4);
    int c = connect_to(SOCK_STREAM, "ends");
    int s = accept(l, NULL, NULL);
    CHECK(revents(c) == POLLOUT);
    /* Half-close: the other end reads what was sent, then EOF, and may still write. */
    CHECK(write(c, "bye", 3) == 3 && shutdown(c, SHUT_WR) == 0);
    CHECK(revents(s) == (POLLIN | POLLOUT | POLLRDHUP));
    CHECK(read(s, buf, sizeof buf) == 3 && read(s, buf, sizeof buf) == 0);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(write(s, "still", 5) == 5 && read(c, buf, sizeof buf) == 5);
    CHECK_ERR(shutdown(c, 7), EINVAL);
    /* A closed peer: EOF and POLLHUP; writing is EPIPE and SIGPIPE. */
    close(s);
    CHECK(revents(c) == (POLLIN | POLLOUT | POLLHUP | POLLRDHUP));
    CHECK(read(c, buf, sizeof buf) == 0);
    signal(SIGPIPE, SIG_IGN);
    CHECK_ERR(write(c, "x", 1), EPIPE);
    signal(SIGPIPE, SIG_DFL);
    close(c);
    /* Closing with unread data resets the peer once; then it reads EOF. */
    c = connect_to(SOCK_STREAM, "ends");
    s = accept(l, NULL, NULL);
    CHECK(write(c, "unread", 6) == 6);
    close(s);
    CHECK(revents(c) & POLLERR);
    int err = -1;
    socklen_t elen = sizeof err;
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == ECONNRESET);
    err = -1;
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0);
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);
    /* FIONREAD counts the bytes waiting. */
    c = connect_to(SOCK_STREAM, "ends");
    s = accept(l, NULL, NULL);
    CHECK(write(c, "12345", 5) == 5 && write(c, "678", 3) == 3);
    int n = -1;
    CHECK(ioctl(s, FIONREAD, &n) == 0 && n == 8);
    /* MSG_PEEK leaves the data, MSG_DONTWAIT does not wait, MSG_WAITALL fills the buffer. */
    CHECK(recv(s, buf, 4, MSG_PEEK) == 4 && memcmp(buf, "1234", 4) == 0);
    CHECK(recv(s, buf, sizeof buf, 0) == 8 && memcmp(buf, "12345678", 8) == 0);
    CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 4; i++) {
            usleep(10 * 1000);
            CHECK(write(c, "ab", 2) == 2);
        }
        _exit(0);
    }
    CHECK(recv(s, buf, 8, MSG_WAITALL) == 8 && memcmp(buf, "abababab", 8) == 0);
    CHECK(waitpid(pid, NULL, 0) == pid);
    close(s);
    close(c);
    close(l);
    unlink("ends");
    printf("ends: half-close, EOF, EPIPE, ECONNRESET, poll bits, FIONREAD, PEEK/DONTWAIT/WAITALL\n");
}

/* epoll: readable after a write, writable again once a full buffer drains. */
static void readiness(void) {
    int l = listener(SOCK_STREAM, "ready", 1);
    int c = connect_to(SOCK_STREAM, "ready");
    int s = accept(l, NULL, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = c};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0);
    ev.events = EPOLLIN;
    ev.data.fd = s;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
    struct epoll_event got[4];
    CHECK(epoll_wait(ep, got, 4, 0) == 1 && got[0].data.fd == c && got[0].events == EPOLLOUT);
    CHECK(epoll_wait(ep, got, 4, 0) == 0); /* edge-triggered: reported once */
    /* Fill the client's direction. */
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0);
    static char chunk[65536];
    long sent = 0;
    for (;;) {
        ssize_t w = write(c, chunk, sizeof chunk);
        if (w < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        sent += w;
    }
    CHECK(sent > 0);
    CHECK((revents(c) & POLLOUT) == 0);
    CHECK(epoll_wait(ep, got, 4, 0) == 1 && got[0].data.fd == s && got[0].events == EPOLLIN);
    /* Drain from another process while we wait for room. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(20 * 1000);
        long left = sent;
        while (left > 0) {
            ssize_t r = read(s, chunk, sizeof chunk);
            CHECK(r > 0);
            left -= r;
        }
        _exit(0);
    }
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0);
    int n = epoll_wait(ep, got, 4, 5000);
    CHECK(n == 1 && got[0].data.fd == c && (got[0].events & EPOLLOUT));
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(ep);
    close(s);
    close(c);
    close(l);
    unlink("ready");
    printf("readiness: epoll in, edge-triggered out, out again after draining\n");
}

/* 16 MiB from a child to its parent through a stream, checksummed on both sides. */
static void transfer(void) {
    int l = listener(SOCK_STREAM, "bulk", 1);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int c = connect_to(SOCK_STREAM, "bulk");
        static unsigned char block[100003];
        unsigned long sum = 0, x = 12345;
        for (int i = 0; i < 168; i++) {
            for (size_t j = 0; j < sizeof block; j++) {
                x = x * 6364136223846793005UL + 1442695040888963407UL;
                block[j] = x >> 56;
                sum = sum * 31 + block[j];
            }
            size_t off = 0;
            while (off < sizeof block) {
                ssize_t w = write(c, block + off, sizeof block - off);
                CHECK(w > 0);
                off += w;
            }
        }
        CHECK(write(c, &sum, 0) == 0);
        CHECK(shutdown(c, SHUT_WR) == 0);
        unsigned long theirs = 0;
        CHECK(read(c, &theirs, sizeof theirs) == sizeof theirs);
        _exit(theirs == sum ? 0 : 1);
    }
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    static unsigned char buf[70000];
    unsigned long sum = 0, total = 0;
    for (;;) {
        ssize_t r = read(s, buf, sizeof buf);
        CHECK(r >= 0);
        if (r == 0)
            break;
        for (ssize_t j = 0; j < r; j++)
            sum = sum * 31 + buf[j];
        total += r;
    }
    CHECK(total == 168UL * 100003);
    CHECK(write(s, &sum, sizeof sum) == sizeof sum);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(s);
    close(l);
    unlink("bulk");
    printf("transfer: %lu bytes between processes, checksums agree\n", total);
}

static void seqpacket(void) {
    int l = listener(SOCK_SEQPACKET, "seq", 1);
    int c = connect_to(SOCK_SEQPACKET, "seq");
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    char buf[64];
    CHECK(send(c, "first", 5, 0) == 5 && send(c, "second", 6, 0) == 6 && send(c, "", 0, 0) == 0);
    CHECK(recv(s, buf, sizeof buf, 0) == 5);
    struct iovec iov = {.iov_base = buf, .iov_len = 3};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(s, &m, 0) == 3 && (m.msg_flags & MSG_TRUNC) && memcmp(buf, "sec", 3) == 0);
    CHECK(recv(s, buf, sizeof buf, 0) == 0); /* the empty message */
    CHECK(send(c, "third", 5, 0) == 5);
    CHECK(recv(s, buf, 2, MSG_TRUNC) == 5);
    /* An unconnected seqpacket socket. */
    int u = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK_ERR(send(u, "x", 1, MSG_NOSIGNAL), ENOTCONN);
    CHECK_ERR(recv(u, buf, 1, 0), ENOTCONN);
    close(u);
    close(c);
    CHECK(recv(s, buf, sizeof buf, 0) == 0);
    CHECK_ERR(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
    close(s);
    close(l);
    unlink("seq");
    printf("seqpacket: boundaries, empty messages, MSG_TRUNC, EOF, EPIPE, ENOTCONN\n");
}

int main(void) {
    binding();
    connecting();
    ends();
    readiness();
    transfer();
    seqpacket();
    return 0;
}
