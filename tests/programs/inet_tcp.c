// TCP over loopback, IPv4 and IPv6: bind (port 0, errors, conflicts with SO_REUSEADDR and
// SO_REUSEPORT, TIME_WAIT after an active close), listen/connect/accept and the names of
// both ends, ECONNREFUSED, non-blocking connect (EINPROGRESS, SO_ERROR, EALREADY/EISCONN), a
// full backlog, send/recv with MSG_PEEK/DONTWAIT/WAITALL, FIONREAD/SIOCOUTQ, shutdown and
// close as the peer sees them (EOF, EPIPE with SIGPIPE, ECONNRESET, SO_LINGER 0), poll and
// epoll readiness, dual-stack and IPV6_V6ONLY, options, a large transfer between processes
// with a checksum, sendfile to a socket, and /proc/net/tcp. Ports are chosen by the kernel
// (bind to port 0) and never printed.
// also-network: host
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

static struct sockaddr_in in4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
    return a;
}

static struct sockaddr_in6 in6(const char *ip, int port) {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    CHECK(inet_pton(AF_INET6, ip, &a.sin6_addr) == 1);
    return a;
}

/* Whether the host has IPv6 on loopback: some have it disabled, and the checks that need ::1
 * then run only under Moat (whose loopback always has it), printing the same either way. */
static int have_ipv6(void) {
    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

static int port_of(int s) {
    struct sockaddr_in6 a;
    socklen_t len = sizeof a;
    CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    return ntohs(a.sin6_port);
}

/* A socket with SO_REUSEADDR as asked, bound to ip:port. */
static int bound(const char *ip, int port, int reuse) {
    struct sockaddr_in a = in4(ip, port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    if (reuse)
        CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse) == 0);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    return s;
}

static int listener(int backlog) {
    int s = bound("127.0.0.1", 0, 0);
    CHECK(listen(s, backlog) == 0);
    return s;
}

static int connect_to(int port) {
    struct sockaddr_in a = in4("127.0.0.1", port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    return c;
}

/* A connected pair: client and the accepted server end. */
static void pair(int l, int *c, int *s) {
    *c = connect_to(port_of(l));
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
}

static short revents(int fd, int timeout) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    CHECK(poll(&p, 1, timeout) >= 0);
    return p.revents;
}

static int so_error(int s) {
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &len) == 0);
    return v;
}

/* A port nothing listens on: bound, read back, released. */
static int dead_port(void) {
    int s = bound("127.0.0.1", 0, 0);
    int port = port_of(s);
    close(s);
    return port;
}

static void basics(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0);
    struct sockaddr_in a = in4("127.0.0.1", 0), got;
    socklen_t len = sizeof got;
    CHECK(getsockname(l, (struct sockaddr *)&got, &len) == 0);
    CHECK(len == sizeof got && got.sin_port == 0 && got.sin_addr.s_addr == 0);
    CHECK_ERR(getpeername(l, (struct sockaddr *)&got, &len), ENOTCONN);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    int port = port_of(l);
    CHECK(port >= 1024);
    CHECK(listen(l, 4) == 0);
    int v;
    len = sizeof v;
    CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 1);

    int c = connect_to(port);
    struct sockaddr_in cname, peer;
    len = sizeof cname;
    CHECK(getsockname(c, (struct sockaddr *)&cname, &len) == 0);
    CHECK(cname.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(cname.sin_port) >= 1024);
    len = sizeof peer;
    CHECK(getpeername(c, (struct sockaddr *)&peer, &len) == 0 && ntohs(peer.sin_port) == port);
    len = sizeof peer;
    int s = accept(l, (struct sockaddr *)&peer, &len);
    CHECK(s >= 0 && len == sizeof peer);
    CHECK(peer.sin_port == cname.sin_port && peer.sin_addr.s_addr == cname.sin_addr.s_addr);
    CHECK(port_of(s) == port);

    CHECK(send(c, "hello", 5, 0) == 5);
    CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 5);
    char buf[64];
    CHECK(recv(s, buf, sizeof buf, MSG_PEEK) == 5);
    CHECK(recv(s, buf, 2, 0) == 2 && memcmp(buf, "he", 2) == 0);
    CHECK(recv(s, buf, sizeof buf, 0) == 3 && memcmp(buf, "llo", 3) == 0);
    CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    CHECK(ioctl(c, SIOCOUTQ, &v) == 0 && v == 0);
    CHECK(write(s, "x", 1) == 1 && read(c, buf, 1) == 1 && buf[0] == 'x');
    CHECK_ERR(ioctl(l, FIONREAD, &v), EINVAL);

    /* Errors of sockets in the wrong state. */
    CHECK_ERR(listen(c, 1), EINVAL);
    CHECK_ERR(connect(l, (struct sockaddr *)&a, sizeof a), EISCONN);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), EISCONN);
    CHECK_ERR(accept(c, NULL, NULL), EINVAL);
    CHECK_ERR(bind(c, (struct sockaddr *)&a, sizeof a), EINVAL);
    CHECK_ERR(recv(l, buf, 1, 0), ENOTCONN);
    CHECK_ERR(shutdown(c, 7), EINVAL);
    int u = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(recv(u, buf, 1, 0), ENOTCONN);
    CHECK_ERR(send(u, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK_ERR(accept(u, NULL, NULL), EINVAL);
    CHECK(revents(u, 0) == (POLLOUT | POLLHUP));
    CHECK_ERR(shutdown(u, SHUT_RDWR), ENOTCONN);
    CHECK(revents(u, 0) == (POLLIN | POLLOUT | POLLHUP | POLLRDHUP));
    close(u);
    close(c);
    close(s);
    close(l);
    printf("basics ok\n");
}

static void bind_errors(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = in4("127.0.0.1", 0);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a - 1), EINVAL);
    a.sin_family = AF_INET6;
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EAFNOSUPPORT);
    a.sin_family = AF_UNSPEC;
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EAFNOSUPPORT);
    a = in4("10.255.255.1", 0);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EADDRNOTAVAIL);
    a = in4("0.0.0.0", 0);
    a.sin_family = AF_UNSPEC; /* AF_UNSPEC with INADDR_ANY is taken as AF_INET */
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    a = in4("127.0.0.1", 0);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EINVAL);
    close(s);
    /* Any address of 127/8 is local, and each is its own. */
    s = bound("127.0.0.2", 0, 0);
    int port = port_of(s);
    int t = bound("127.0.0.3", port, 0);
    a = in4("127.0.0.2", port);
    int u = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(u, (struct sockaddr *)&a, sizeof a), EADDRINUSE);
    a = in4("0.0.0.0", port);
    CHECK_ERR(bind(u, (struct sockaddr *)&a, sizeof a), EADDRINUSE);
    close(u);
    close(t);
    close(s);
    printf("bind errors ok\n");
}

static void conflicts(void) {
    /* SO_REUSEADDR: both may bind, only one may listen, a listener blocks new binds. */
    int a = bound("127.0.0.1", 0, 1);
    int port = port_of(a);
    int b = bound("127.0.0.1", port, 1);
    CHECK(listen(a, 1) == 0);
    CHECK_ERR(listen(b, 1), EADDRINUSE);
    struct sockaddr_in addr = in4("0.0.0.0", port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    CHECK(setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    CHECK_ERR(bind(c, (struct sockaddr *)&addr, sizeof addr), EADDRINUSE);
    close(c);
    close(b);
    close(a);

    /* SO_REUSEPORT: several listeners on one port. */
    a = socket(AF_INET, SOCK_STREAM, 0);
    b = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(setsockopt(a, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
    CHECK(setsockopt(b, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
    addr = in4("127.0.0.1", 0);
    CHECK(bind(a, (struct sockaddr *)&addr, sizeof addr) == 0);
    addr = in4("127.0.0.1", port_of(a));
    CHECK(bind(b, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(a, 1) == 0 && listen(b, 1) == 0);
    close(a);
    close(b);

    /* An active close leaves TIME_WAIT: it blocks a bind unless both sides reuse. */
    for (int reuse = 0; reuse < 2; reuse++) {
        int l = bound("127.0.0.1", 0, reuse);
        port = port_of(l);
        CHECK(listen(l, 1) == 0);
        int cl = connect_to(port);
        int s = accept(l, NULL, NULL);
        close(l);
        close(s); /* the server closes first */
        char x;
        CHECK(recv(cl, &x, 1, 0) == 0);
        close(cl);
        addr = in4("127.0.0.1", port);
        int n = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_ERR(bind(n, (struct sockaddr *)&addr, sizeof addr), EADDRINUSE);
        close(n);
        n = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(setsockopt(n, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
        if (reuse) {
            CHECK(bind(n, (struct sockaddr *)&addr, sizeof addr) == 0);
            CHECK(listen(n, 1) == 0);
        } else {
            CHECK_ERR(bind(n, (struct sockaddr *)&addr, sizeof addr), EADDRINUSE);
        }
        close(n);
    }
    /* An accepted connection keeps its listener's port. */
    int l = listener(1);
    port = port_of(l);
    int cl, s;
    pair(l, &cl, &s);
    close(l);
    addr = in4("127.0.0.1", port);
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(c, (struct sockaddr *)&addr, sizeof addr), EADDRINUSE);
    close(c);
    close(s);
    close(cl);
    printf("conflicts ok\n");
}

static void connecting(void) {
    /* Nothing listens: refused, and the socket may try again. */
    int port = dead_port();
    struct sockaddr_in a = in4("127.0.0.1", port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), ECONNREFUSED);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), ECONNREFUSED);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a - 1), EINVAL);
    a.sin_family = AF_INET6;
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), EAFNOSUPPORT);
    close(c);

    /* Non-blocking and refused: EINPROGRESS, then the error once. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    a = in4("127.0.0.1", port);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), EINPROGRESS);
    CHECK(revents(c, 1000) & POLLERR);
    CHECK(so_error(c) == ECONNREFUSED);
    CHECK(so_error(c) == 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), ECONNABORTED);
    close(c);

    /* Non-blocking and accepted. */
    int l = listener(0);
    a = in4("127.0.0.1", port_of(l));
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), EINPROGRESS);
    CHECK(revents(c, 1000) == POLLOUT);
    CHECK(so_error(c) == 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), EISCONN);
    CHECK(revents(l, 0) == POLLIN);

    /* The backlog (listen 0: one connection) is full: the next waits. */
    int d = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(d, (struct sockaddr *)&a, sizeof a), EINPROGRESS);
    CHECK(revents(d, 50) == 0);
    CHECK_ERR(connect(d, (struct sockaddr *)&a, sizeof a), EALREADY);
    CHECK_ERR(send(d, "x", 1, 0), EAGAIN);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    /* Room again: the waiting connection is made (Linux: when its SYN is retried). */
    CHECK(revents(d, 5000) == POLLOUT);
    CHECK(connect(d, (struct sockaddr *)&a, sizeof a) == 0);
    int s2 = accept(l, NULL, NULL);
    CHECK(s2 >= 0);
    CHECK(send(d, "y", 1, 0) == 1);
    char x;
    CHECK(recv(s2, &x, 1, 0) == 1 && x == 'y');
    close(s2);
    close(s);
    close(d);
    close(c);

    /* A client may send before it is accepted; accept4 sets the new file's flags. */
    c = connect_to(port_of(l));
    CHECK(send(c, "early", 5, 0) == 5);
    s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) && (fcntl(s, F_GETFD) & FD_CLOEXEC));
    char buf[8];
    CHECK(recv(s, buf, sizeof buf, 0) == 5);
    CHECK_ERR(accept4(l, NULL, NULL, 0x1234), EINVAL);
    close(s);
    close(c);

    /* Closing a listener resets the connections it had not accepted. */
    c = connect_to(port_of(l));
    close(l);
    CHECK_ERR(recv(c, buf, 1, 0), ECONNRESET);
    close(c);

    /* Connecting to INADDR_ANY reaches this host; to another 127/8 address, its own. */
    l = bound("0.0.0.0", 0, 0);
    CHECK(listen(l, 2) == 0);
    a = in4("0.0.0.0", port_of(l));
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    CHECK(getpeername(c, (struct sockaddr *)&peer, &len) == 0);
    CHECK(peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    a = in4("127.0.0.9", port_of(l));
    d = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(d, (struct sockaddr *)&a, sizeof a) == 0);
    close(accept(l, NULL, NULL));
    s = accept(l, NULL, NULL);
    len = sizeof peer;
    CHECK(getsockname(s, (struct sockaddr *)&peer, &len) == 0);
    CHECK(peer.sin_addr.s_addr == htonl(0x7f000009));
    close(s);
    close(d);
    close(c);
    close(l);
    printf("connecting ok\n");
}

static void closing(void) {
    signal(SIGPIPE, on_sigpipe);
    int l = listener(4);
    int c, s;
    char buf[16];

    /* Half close: the peer reads the data, then end of file, and may still answer. */
    pair(l, &c, &s);
    CHECK(send(c, "abc", 3, 0) == 3);
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(revents(c, 0) == POLLOUT);
    CHECK(revents(s, 1000) == (POLLIN | POLLOUT | POLLRDHUP));
    CHECK(recv(s, buf, sizeof buf, 0) == 3);
    CHECK(recv(s, buf, sizeof buf, 0) == 0);
    CHECK(send(s, "back", 4, 0) == 4);
    CHECK(recv(c, buf, sizeof buf, 0) == 4);
    sigpipes = 0;
    CHECK_ERR(send(c, "x", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpipes == 1);
    CHECK(shutdown(s, SHUT_WR) == 0);
    CHECK(revents(c, 1000) == (POLLIN | POLLOUT | POLLHUP | POLLRDHUP));
    CHECK(revents(s, 0) == (POLLIN | POLLOUT | POLLHUP | POLLRDHUP));
    close(c);
    close(s);

    /* SHUT_RD: reads end, but what the peer sends still arrives. */
    pair(l, &c, &s);
    CHECK(shutdown(c, SHUT_RD) == 0);
    CHECK(revents(c, 0) == (POLLIN | POLLOUT | POLLRDHUP));
    CHECK(recv(c, buf, sizeof buf, 0) == 0);
    CHECK(send(s, "zz", 2, 0) == 2);
    CHECK(revents(s, 0) == POLLOUT);
    CHECK(recv(c, buf, sizeof buf, 0) == 2);
    close(c);
    close(s);

    /* Closed with unread data: the peer is reset (data it had still reads first). */
    pair(l, &c, &s);
    CHECK(send(s, "mine", 4, 0) == 4);
    CHECK(send(c, "unread", 6, 0) == 6);
    close(s);
    CHECK(revents(c, 1000) == (POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP));
    CHECK(recv(c, buf, sizeof buf, 0) == 4);
    CHECK_ERR(recv(c, buf, sizeof buf, 0), ECONNRESET);
    CHECK(recv(c, buf, sizeof buf, 0) == 0);
    sigpipes = 0;
    CHECK_ERR(send(c, "x", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    CHECK_ERR(getpeername(c, (struct sockaddr *)buf, &(socklen_t){sizeof buf}), ENOTCONN);
    close(c);

    /* SO_LINGER {1, 0}: close resets. */
    pair(l, &c, &s);
    struct linger lg = {1, 0};
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    socklen_t len = sizeof lg;
    CHECK(getsockopt(s, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff == 1);
    CHECK(send(s, "data", 4, 0) == 4);
    close(s);
    CHECK(recv(c, buf, sizeof buf, 0) == 4);
    CHECK_ERR(recv(c, buf, sizeof buf, 0), ECONNRESET);
    close(c);

    /* Orderly close, then the other side writes: the orphan answers with a reset. */
    pair(l, &c, &s);
    close(s);
    CHECK(recv(c, buf, sizeof buf, 0) == 0);
    CHECK(revents(c, 0) == (POLLIN | POLLOUT | POLLRDHUP));
    CHECK(send(c, "x", 1, 0) == 1);
    CHECK(revents(c, 1000) & POLLERR);
    sigpipes = 0;
    CHECK_ERR(send(c, "x", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    close(c);

    /* connect(AF_UNSPEC) aborts a connection. */
    pair(l, &c, &s);
    struct sockaddr un = {.sa_family = AF_UNSPEC};
    CHECK(connect(c, &un, sizeof un) == 0);
    CHECK_ERR(recv(s, buf, sizeof buf, 0), ECONNRESET);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), ECONNRESET);
    close(c);
    close(s);
    close(l);
    signal(SIGPIPE, SIG_DFL);
    printf("closing ok\n");
}

static void readiness(void) {
    int l = listener(4);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l}, out[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    int c = connect_to(port_of(l));
    CHECK(epoll_wait(ep, out, 4, 1000) == 1 && out[0].data.fd == l);
    int s = accept(l, NULL, NULL);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.fd = s;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    CHECK(send(c, "1", 1, 0) == 1);
    CHECK(epoll_wait(ep, out, 4, 1000) == 1 && out[0].events == EPOLLIN);
    CHECK(epoll_wait(ep, out, 4, 0) == 0); /* edge-triggered: once */
    CHECK(send(c, "2", 1, 0) == 1);
    CHECK(epoll_wait(ep, out, 4, 1000) == 1);
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(epoll_wait(ep, out, 4, 1000) == 1 && out[0].events == (EPOLLIN | EPOLLRDHUP));
    close(ep);
    CHECK(revents(c, 0) == POLLOUT);

    /* A writer fills the connection, poll stops saying POLLOUT, a reader brings it back. */
    int fl = fcntl(c, F_GETFL);
    close(s);
    close(c);
    c = connect_to(port_of(l));
    s = accept(l, NULL, NULL);
    fl = fcntl(c, F_GETFL);
    CHECK(fcntl(c, F_SETFL, fl | O_NONBLOCK) == 0);
    static char chunk[65536];
    long sent = 0;
    for (;;) {
        ssize_t n = send(c, chunk, sizeof chunk, 0);
        if (n < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        sent += n;
    }
    CHECK(sent > 0);
    CHECK(revents(c, 0) == 0);
    int unsent;
    CHECK(ioctl(c, SIOCOUTQ, &unsent) == 0);
    long got = 0;
    while (got < sent) {
        ssize_t n = recv(s, chunk, sizeof chunk, 0);
        CHECK(n > 0);
        got += n;
    }
    CHECK(revents(c, 1000) == POLLOUT);
    CHECK(revents(s, 0) == POLLOUT);
    close(c);
    close(s);
    close(l);
    printf("readiness ok\n");
}

static void ipv6(void) {
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    int v;
    socklen_t len = sizeof v;
    CHECK(getsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len) == 0 && v == 0);
    struct sockaddr_in6 a = in6("::", 0), got;
    CHECK_ERR(bind(l, (struct sockaddr *)&a, 23), EINVAL);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK_ERR(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)), EINVAL);
    CHECK(listen(l, 4) == 0);
    int port = port_of(l);

    /* A dual-stack listener takes IPv4, and names it IPv4-mapped. */
    int c4 = connect_to(port);
    len = sizeof got;
    int s = accept(l, (struct sockaddr *)&got, &len);
    CHECK(s >= 0 && len == sizeof got && got.sin6_family == AF_INET6);
    CHECK(IN6_IS_ADDR_V4MAPPED(&got.sin6_addr));
    len = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &len) == 0 && IN6_IS_ADDR_V4MAPPED(&got.sin6_addr));
    close(s);
    close(c4);
    /* Which also blocks the IPv4 port. */
    struct sockaddr_in b4 = in4("127.0.0.1", port);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&b4, sizeof b4), EADDRINUSE);
    close(t);

    int c;
    if (have_ipv6()) {
        c = socket(AF_INET6, SOCK_STREAM, 0);
        a = in6("::1", port);
        CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
        len = sizeof got;
        CHECK(getsockname(c, (struct sockaddr *)&got, &len) == 0 && IN6_IS_ADDR_LOOPBACK(&got.sin6_addr));
        s = accept(l, NULL, NULL);
        CHECK(send(c, "six", 3, 0) == 3);
        char buf[8];
        CHECK(recv(s, buf, sizeof buf, 0) == 3);
        close(s);
        close(c);
    }
    close(l);

    /* IPV6_V6ONLY: IPv4 is not taken, and its port stays free for an IPv4 socket. */
    l = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)) == 0);
    a = in6("::", 0);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    port = port_of(l);
    c4 = socket(AF_INET, SOCK_STREAM, 0);
    b4 = in4("127.0.0.1", port);
    CHECK_ERR(connect(c4, (struct sockaddr *)&b4, sizeof b4), ECONNREFUSED);
    close(c4);
    t = bound("0.0.0.0", port, 0);
    close(t);
    c = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(setsockopt(c, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)) == 0);
    a = in6("::ffff:127.0.0.1", port);
    CHECK_ERR(connect(c, (struct sockaddr *)&a, sizeof a), ENETUNREACH);
    CHECK_ERR(bind(c, (struct sockaddr *)&a, sizeof a), EINVAL);
    close(c);
    close(l);

    /* Address checks of an IPv6 socket. */
    c = socket(AF_INET6, SOCK_STREAM, 0);
    a = in6("::2", 0);
    CHECK_ERR(bind(c, (struct sockaddr *)&a, sizeof a), EADDRNOTAVAIL);
    a = in6("fe80::1", 0);
    CHECK_ERR(bind(c, (struct sockaddr *)&a, sizeof a), EINVAL);
    a = in6("::1", 0);
    a.sin6_family = AF_INET;
    CHECK_ERR(bind(c, (struct sockaddr *)&a, sizeof a), EAFNOSUPPORT);
    CHECK_ERR(connect(c, (struct sockaddr *)&b4, sizeof b4), EINVAL);
    a = in6("::ffff:127.0.0.1", 0);
    CHECK(bind(c, (struct sockaddr *)&a, sizeof a) == 0);
    len = sizeof got;
    CHECK(getsockname(c, (struct sockaddr *)&got, &len) == 0 && IN6_IS_ADDR_V4MAPPED(&got.sin6_addr));
    close(c);
    printf("ipv6 ok\n");
}

static int get_int(int s, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(s, level, name, &v, &len) == 0 && len == sizeof v);
    return v;
}

static void options(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(get_int(s, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
    CHECK(get_int(s, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP);
    CHECK(get_int(s, SOL_SOCKET, SO_DOMAIN) == AF_INET);
    CHECK(get_int(s, SOL_SOCKET, SO_RCVBUF) == 131072);
    CHECK(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &(int){10000}, sizeof(int)) == 0);
    CHECK(get_int(s, SOL_SOCKET, SO_SNDBUF) == 20000);
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &(int){1}, sizeof(int)) == 0);
    CHECK(get_int(s, SOL_SOCKET, SO_RCVBUF) == 2304);
    CHECK(get_int(s, SOL_SOCKET, SO_KEEPALIVE) == 0);
    CHECK(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &(int){5}, sizeof(int)) == 0);
    CHECK(get_int(s, SOL_SOCKET, SO_KEEPALIVE) == 1);
    CHECK(get_int(s, IPPROTO_TCP, TCP_NODELAY) == 0);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int)) == 0);
    CHECK(get_int(s, IPPROTO_TCP, TCP_NODELAY) == 1);
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &(int){1}, 2), EINVAL);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_CORK, &(int){1}, sizeof(int)) == 0);
    CHECK(get_int(s, IPPROTO_TCP, TCP_CORK) == 1);
    CHECK(get_int(s, IPPROTO_TCP, TCP_KEEPIDLE) == 7200);
    CHECK(get_int(s, IPPROTO_TCP, TCP_KEEPINTVL) == 75);
    CHECK(get_int(s, IPPROTO_TCP, TCP_KEEPCNT) == 9);
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &(int){0}, sizeof(int)), EINVAL);
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &(int){128}, sizeof(int)), EINVAL);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &(int){30}, sizeof(int)) == 0);
    CHECK(get_int(s, IPPROTO_TCP, TCP_KEEPIDLE) == 30);
    CHECK(get_int(s, IPPROTO_TCP, TCP_MAXSEG) == 536);
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_MAXSEG, &(int){10}, sizeof(int)), EINVAL);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &(int){0}, sizeof(int)) == 0);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_DEFER_ACCEPT, &(int){5}, sizeof(int)) == 0);
    CHECK(get_int(s, IPPROTO_TCP, TCP_DEFER_ACCEPT) == 7);
    CHECK(get_int(s, IPPROTO_IP, IP_TTL) == 64);
    CHECK(setsockopt(s, IPPROTO_IP, IP_TOS, &(int){0x13}, sizeof(int)) == 0);
    CHECK(get_int(s, IPPROTO_IP, IP_TOS) == 0x10);
    CHECK_ERR(setsockopt(s, IPPROTO_IP, IP_TTL, &(int){256}, sizeof(int)), EINVAL);
    int v;
    socklen_t len = sizeof v;
    CHECK_ERR(getsockopt(s, IPPROTO_IP, IP_MTU, &v, &len), ENOTCONN);
    CHECK_ERR(getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), EOPNOTSUPP);
    CHECK_ERR(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)), ENOPROTOOPT);
    CHECK_ERR(getsockopt(s, IPPROTO_UDP, 1, &v, &len), EOPNOTSUPP);
    CHECK_ERR(getsockopt(s, IPPROTO_TCP, 99, &v, &len), ENOPROTOOPT);
    CHECK_ERR(setsockopt(s, SOL_SOCKET, SO_TYPE, &(int){1}, sizeof(int)), ENOPROTOOPT);
    len = -1;
    CHECK_ERR(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &len), EINVAL);
    len = 2;
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && len == 2);
    struct tcp_info ti;
    len = sizeof ti;
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE);

    int l = listener(1);
    len = sizeof ti;
    CHECK(getsockopt(l, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_LISTEN);
    int c, a;
    pair(l, &c, &a);
    len = sizeof ti;
    CHECK(getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_ESTABLISHED);
    CHECK(get_int(c, IPPROTO_IP, IP_MTU) >= 65535);
    CHECK(get_int(a, IPPROTO_TCP, TCP_DEFER_ACCEPT) == 0);
    CHECK(shutdown(c, SHUT_WR) == 0);
    char x;
    CHECK(recv(a, &x, 1, 0) == 0);
    len = sizeof ti;
    CHECK(getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && (ti.tcpi_state == TCP_FIN_WAIT1 || ti.tcpi_state == TCP_FIN_WAIT2));
    len = sizeof ti;
    CHECK(getsockopt(a, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE_WAIT);
    close(c);
    close(a);
    close(l);
    close(s);
    printf("options ok\n");
}

/* A deterministic byte stream: xorshift. */
static unsigned char stream_byte(unsigned long long *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (unsigned char)*x;
}

static void transfer(void) {
    enum { TOTAL = 8 << 20 };
    int l = listener(1);
    int port = port_of(l);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int c = connect_to(port);
        static unsigned char buf[100000];
        unsigned long long x = 88172645463325252ULL;
        long sent = 0;
        int size = 1;
        while (sent < TOTAL) {
            int n = size < TOTAL - sent ? size : (int)(TOTAL - sent);
            for (int i = 0; i < n; i++)
                buf[i] = stream_byte(&x);
            CHECK(send(c, buf, n, 0) == n);
            sent += n;
            size = size * 7 % 99991 + 1;
        }
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    static unsigned char buf[70000];
    unsigned long long x = 88172645463325252ULL;
    long got = 0;
    int bad = 0;
    /* Read with MSG_WAITALL in fixed pieces: each but the last fills up. */
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, MSG_WAITALL);
        CHECK(n >= 0);
        if (n == 0)
            break;
        CHECK(n == sizeof buf || got + n == TOTAL);
        for (ssize_t i = 0; i < n; i++)
            bad |= buf[i] != stream_byte(&x);
        got += n;
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(got == TOTAL && !bad);
    close(s);
    close(l);
    printf("transfer of %d MiB ok\n", TOTAL >> 20);
}

static void send_file(void) {
    enum { SIZE = 3 << 20 };
    int f = open("payload", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0);
    static unsigned char buf[SIZE];
    unsigned long long x = 1234567;
    for (int i = 0; i < SIZE; i++)
        buf[i] = stream_byte(&x);
    CHECK(write(f, buf, SIZE) == SIZE);
    int l = listener(1);
    int c, s;
    pair(l, &c, &s);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(c);
        unsigned long long y = 1234567;
        long got = 0;
        int bad = 0;
        static unsigned char in[65536];
        for (;;) {
            ssize_t n = read(s, in, sizeof in);
            CHECK(n >= 0);
            if (n == 0)
                break;
            for (ssize_t i = 0; i < n; i++)
                bad |= in[i] != stream_byte(&y);
            got += n;
        }
        _exit(got == SIZE && !bad ? 0 : 1);
    }
    close(s);
    off_t off = 0;
    long sent = 0;
    while (sent < SIZE) {
        ssize_t n = sendfile(c, f, &off, SIZE - sent);
        CHECK(n > 0);
        sent += n;
    }
    CHECK(off == SIZE);
    close(c);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(f);
    close(l);
    printf("sendfile ok\n");
}

static void proc_net(void) {
    int l = listener(1);
    char want[64];
    snprintf(want, sizeof want, ":%04X 00000000:0000 0A", port_of(l));
    FILE *f = fopen("/proc/net/tcp", "r");
    CHECK(f != NULL);
    char line[512];
    int header = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "local_address rem_address"))
            header = 1;
        if (strstr(line, want))
            found = 1;
    }
    fclose(f);
    CHECK(header && found);
    close(l);
    printf("/proc/net/tcp ok\n");
}

int main(void) {
    basics();
    bind_errors();
    conflicts();
    connecting();
    closing();
    readiness();
    ipv6();
    options();
    transfer();
    send_file();
    proc_net();
    return 0;
}
