// UDP over loopback, IPv4 and IPv6: bind and its conflicts, sendto/recvfrom with the
// sender's address, MSG_PEEK/MSG_TRUNC, zero-length datagrams, EMSGSIZE past the largest
// payload, connect as default destination and source filter, AF_UNSPEC disconnect,
// ECONNREFUSED from a port nobody holds (reported once, to a connected sender), a full
// receive buffer dropping datagrams, shutdown, poll, SO_RCVTIMEO, a blocking receive woken
// by another process, dual-stack delivery and errors. Ports are never printed.
// also-network: host
#include "check.h"
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

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

static int udp_bound(const char *ip) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    struct sockaddr_in a = in4(ip, 0);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    return s;
}

static short revents(int fd, int timeout) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    CHECK(poll(&p, 1, timeout) >= 0);
    return p.revents;
}

static void datagrams(void) {
    int r = udp_bound("127.0.0.1");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(revents(s, 0) == POLLOUT);
    int v;
    socklen_t len = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0 && v == 212992);
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_DGRAM);
    CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &len) == 0 && v == IPPROTO_UDP);
    struct sockaddr_in to = in4("127.0.0.1", port_of(r)), from;
    CHECK(sendto(s, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(port_of(s) >= 1024); /* the send bound it */
    CHECK(revents(r, 1000) == (POLLIN | POLLOUT));
    CHECK(ioctl(r, FIONREAD, &v) == 0 && v == 5);
    char buf[70000];
    CHECK(recv(r, buf, sizeof buf, MSG_PEEK) == 5);
    len = sizeof from;
    CHECK(recvfrom(r, buf, 3, MSG_TRUNC, (struct sockaddr *)&from, &len) == 5);
    CHECK(len == sizeof from && ntohs(from.sin_port) == port_of(s));
    CHECK(from.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && memcmp(buf, "hel", 3) == 0);
    CHECK_ERR(recv(r, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* Message boundaries, a truncated one flagged by recvmsg. */
    CHECK(sendto(s, "one", 3, 0, (struct sockaddr *)&to, sizeof to) == 3);
    CHECK(sendto(s, "", 0, 0, (struct sockaddr *)&to, sizeof to) == 0);
    CHECK(sendto(s, "three", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(revents(r, 1000) & POLLIN);
    CHECK(recv(r, buf, sizeof buf, 0) == 3);
    CHECK(recv(r, buf, sizeof buf, 0) == 0);
    struct iovec iov = {.iov_base = buf, .iov_len = 2};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(r, &mh, 0) == 2 && (mh.msg_flags & MSG_TRUNC) && mh.msg_namelen == sizeof from);

    /* The largest IPv4 payload. */
    CHECK(sendto(s, buf, 65507, 0, (struct sockaddr *)&to, sizeof to) == 65507);
    CHECK_ERR(sendto(s, buf, 65508, 0, (struct sockaddr *)&to, sizeof to), EMSGSIZE);
    CHECK(recv(r, buf, sizeof buf, 0) == 65507);

    /* Address errors. */
    CHECK_ERR(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof to - 1), EINVAL);
    struct sockaddr_in6 six = in6("::1", port_of(r));
    CHECK_ERR(sendto(s, "x", 1, 0, (struct sockaddr *)&six, sizeof six), EAFNOSUPPORT);
    CHECK_ERR(send(s, "x", 1, 0), EDESTADDRREQ);
    struct sockaddr_in bcast = in4("255.255.255.255", port_of(r));
    CHECK_ERR(sendto(s, "x", 1, 0, (struct sockaddr *)&bcast, sizeof bcast), EACCES);
    struct sockaddr_in any = in4("0.0.0.0", port_of(r));
    CHECK(sendto(s, "any", 3, 0, (struct sockaddr *)&any, sizeof any) == 3);
    CHECK(revents(r, 1000) & POLLIN);
    CHECK(recv(r, buf, sizeof buf, 0) == 3);
    CHECK_ERR(listen(s, 1), EOPNOTSUPP);
    CHECK_ERR(accept(s, NULL, NULL), EOPNOTSUPP);
    CHECK_ERR(sendto(s, "x", 1, MSG_OOB, (struct sockaddr *)&to, sizeof to), EOPNOTSUPP);
    close(s);
    close(r);
    printf("datagrams ok\n");
}

static void binding(void) {
    int a = udp_bound("127.0.0.1");
    struct sockaddr_in same = in4("127.0.0.1", port_of(a));
    int b = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_ERR(bind(b, (struct sockaddr *)&same, sizeof same), EADDRINUSE);
    close(b);
    close(a);
    /* SO_REUSEADDR on both: they share the port. */
    int one = 1;
    a = socket(AF_INET, SOCK_DGRAM, 0);
    b = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(setsockopt(a, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    CHECK(setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    struct sockaddr_in addr = in4("127.0.0.1", 0);
    CHECK(bind(a, (struct sockaddr *)&addr, sizeof addr) == 0);
    addr.sin_port = htons(port_of(a));
    CHECK(bind(b, (struct sockaddr *)&addr, sizeof addr) == 0);
    close(a);
    close(b);
    /* An unbound socket names the wildcard, port 0. */
    a = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(port_of(a) == 0);
    addr = in4("10.255.255.1", 0);
    CHECK_ERR(bind(a, (struct sockaddr *)&addr, sizeof addr), EADDRNOTAVAIL);
    close(a);
    printf("binding ok\n");
}

static void connected(void) {
    int r = udp_bound("127.0.0.1");
    struct sockaddr_in to = in4("127.0.0.1", port_of(r)), name;
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0);
    socklen_t len = sizeof name;
    CHECK(getsockname(c, (struct sockaddr *)&name, &len) == 0);
    CHECK(name.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && name.sin_port != 0);
    len = sizeof name;
    CHECK(getpeername(c, (struct sockaddr *)&name, &len) == 0 && ntohs(name.sin_port) == port_of(r));
    CHECK(send(c, "ab", 2, 0) == 2 && write(c, "cd", 2) == 2);
    char buf[16];
    CHECK(revents(r, 1000) & POLLIN);
    CHECK(recv(r, buf, sizeof buf, 0) == 2 && recv(r, buf, sizeof buf, 0) == 2);

    /* A connected socket takes datagrams only from its peer. */
    struct sockaddr_in caddr;
    len = sizeof caddr;
    CHECK(getsockname(c, (struct sockaddr *)&caddr, &len) == 0);
    int o = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sendto(o, "other", 5, 0, (struct sockaddr *)&caddr, sizeof caddr) == 5);
    CHECK(sendto(r, "peer", 4, 0, (struct sockaddr *)&caddr, sizeof caddr) == 4);
    CHECK(revents(c, 1000) & POLLIN);
    CHECK(recv(c, buf, sizeof buf, 0) == 4 && memcmp(buf, "peer", 4) == 0);
    CHECK(revents(c, 50) == POLLOUT);
    CHECK(revents(o, 0) == POLLOUT); /* an unconnected sender hears no error */
    close(o);

    /* Disconnect: the peer, and the port the connect chose, are forgotten. */
    struct sockaddr un = {.sa_family = AF_UNSPEC};
    CHECK(connect(c, &un, sizeof un) == 0);
    CHECK(port_of(c) == 0);
    len = sizeof name;
    CHECK_ERR(getpeername(c, (struct sockaddr *)&name, &len), ENOTCONN);
    CHECK_ERR(send(c, "x", 1, 0), EDESTADDRREQ);
    CHECK_ERR(connect(c, &un, 1), EINVAL);
    close(c);

    /* Nothing holds the port: a connected sender hears ECONNREFUSED once. */
    int d = udp_bound("127.0.0.1");
    struct sockaddr_in dead = in4("127.0.0.1", port_of(d));
    close(d);
    c = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(connect(c, (struct sockaddr *)&dead, sizeof dead) == 0);
    CHECK(send(c, "x", 1, 0) == 1);
    CHECK(revents(c, 1000) == (POLLOUT | POLLERR));
    CHECK_ERR(send(c, "x", 1, 0), ECONNREFUSED);
    CHECK(send(c, "x", 1, 0) == 1);
    CHECK(revents(c, 1000) & POLLERR);
    CHECK_ERR(recv(c, buf, sizeof buf, MSG_DONTWAIT), ECONNREFUSED);
    CHECK_ERR(recv(c, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* To another address than its peer: no error comes back. */
    CHECK(sendto(c, "x", 1, 0, (struct sockaddr *)&to, sizeof to) == 1);
    CHECK(revents(r, 1000) & POLLIN);
    CHECK(revents(c, 0) == POLLOUT);
    close(c);
    /* Nor to an unconnected sender. */
    o = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sendto(o, "x", 1, 0, (struct sockaddr *)&dead, sizeof dead) == 1);
    CHECK(revents(o, 50) == POLLOUT);
    CHECK(sendto(o, "x", 1, 0, (struct sockaddr *)&dead, sizeof dead) == 1);
    close(o);
    close(r);
    printf("connected ok\n");
}

static void limits(void) {
    /* A small receive buffer: the queue fills and further datagrams are dropped. */
    int r = udp_bound("127.0.0.1");
    CHECK(setsockopt(r, SOL_SOCKET, SO_RCVBUF, &(int){4096}, sizeof(int)) == 0);
    int v;
    socklen_t len = sizeof v;
    CHECK(getsockopt(r, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0 && v == 8192);
    struct sockaddr_in to = in4("127.0.0.1", port_of(r));
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    static char buf[1000];
    for (int i = 0; i < 100; i++)
        CHECK(sendto(s, buf, sizeof buf, 0, (struct sockaddr *)&to, sizeof to) == sizeof buf);
    int got = 0;
    while (recv(r, buf, sizeof buf, MSG_DONTWAIT) == sizeof buf)
        got++;
    CHECK(got > 0 && got < 100);
    printf("a full buffer drops datagrams\n");

    /* A receive time-out. */
    struct timeval tv = {0, 20000};
    CHECK(setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    CHECK_ERR(recv(r, buf, sizeof buf, 0), EAGAIN);

    /* Shutdown of an unconnected socket: ENOTCONN, yet reads end. */
    CHECK_ERR(shutdown(r, SHUT_RD), ENOTCONN);
    CHECK(revents(r, 0) == (POLLIN | POLLOUT | POLLRDHUP));
    CHECK(recv(r, buf, sizeof buf, 0) == 0);
    close(s);
    close(r);
    printf("limits ok\n");
}

static void across_processes(void) {
    int r = udp_bound("127.0.0.1");
    int port = port_of(r);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(20000);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = in4("127.0.0.1", port);
        for (int i = 0; i < 50; i++) {
            char msg[32];
            int n = snprintf(msg, sizeof msg, "message %d", i);
            CHECK(sendto(s, msg, n, 0, (struct sockaddr *)&to, sizeof to) == n);
        }
        _exit(0);
    }
    char buf[64];
    for (int i = 0; i < 50; i++) {
        ssize_t n = recv(r, buf, sizeof buf - 1, 0); /* blocks until the child sends */
        CHECK(n > 0);
        buf[n] = 0;
        char want[32];
        snprintf(want, sizeof want, "message %d", i);
        CHECK(strcmp(buf, want) == 0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(r);
    printf("across processes ok\n");
}

static void ipv6(void) {
    int r6 = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a = in6("::", 0), from;
    CHECK(bind(r6, (struct sockaddr *)&a, sizeof a) == 0);
    int port = port_of(r6);
    /* IPv4 reaches a dual-stack socket, and is named IPv4-mapped. */
    int s4 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to4 = in4("127.0.0.1", port);
    CHECK(sendto(s4, "v4", 2, 0, (struct sockaddr *)&to4, sizeof to4) == 2);
    char buf[70000];
    socklen_t len = sizeof from;
    CHECK(revents(r6, 1000) & POLLIN);
    CHECK(recvfrom(r6, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) == 2);
    CHECK(len == sizeof from && from.sin6_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&from.sin6_addr));
    CHECK(ntohs(from.sin6_port) == port_of(s4));
    /* An IPv6 socket answers to the mapped address, over IPv4. */
    CHECK(sendto(r6, "back", 4, 0, (struct sockaddr *)&from, len) == 4);
    struct sockaddr_in from4;
    len = sizeof from4;
    CHECK(revents(s4, 1000) & POLLIN);
    CHECK(recvfrom(s4, buf, sizeof buf, 0, (struct sockaddr *)&from4, &len) == 4);
    CHECK(len == sizeof from4 && from4.sin_family == AF_INET && ntohs(from4.sin_port) == port);

    int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
    if (have_ipv6()) {
        struct sockaddr_in6 to6 = in6("::1", port);
        CHECK(sendto(s6, buf, 65527, 0, (struct sockaddr *)&to6, sizeof to6) == 65527);
        CHECK_ERR(sendto(s6, buf, 65528, 0, (struct sockaddr *)&to6, sizeof to6), EMSGSIZE);
        CHECK(revents(r6, 1000) & POLLIN);
        len = sizeof from;
        CHECK(recvfrom(r6, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) == 65527);
        CHECK(IN6_IS_ADDR_LOOPBACK(&from.sin6_addr));
    }
    struct sockaddr_in6 mapped = in6("::ffff:127.0.0.1", port);
    CHECK_ERR(sendto(s6, buf, 65508, 0, (struct sockaddr *)&mapped, sizeof mapped), EMSGSIZE);

    /* IPV6_V6ONLY keeps to IPv6. */
    int o = socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK(setsockopt(o, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)) == 0);
    CHECK_ERR(sendto(o, "x", 1, 0, (struct sockaddr *)&mapped, sizeof mapped), ENETUNREACH);
    close(o);
    close(s6);
    close(s4);
    close(r6);
    printf("ipv6 ok\n");
}

int main(void) {
    datagrams();
    binding();
    connected();
    limits();
    across_processes();
    ipv6();
    return 0;
}
