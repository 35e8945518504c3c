// ICMP echo sockets ("ping sockets", SOCK_DGRAM + IPPROTO_ICMP/ICMPV6) over loopback:
// net.ipv4.ping_group_range, bind and its identifier conflicts (both families share one
// table), echo requests answered with the identifier rewritten to the bound or automatic
// one, the sequence and payload kept and a valid checksum; EINVAL for non-echo types and
// short messages, EDESTADDRREQ/EAFNOSUPPORT/EINVAL for addresses, ENETUNREACH beyond lo;
// connect/send/read, poll and epoll readiness, MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC,
// SO_RCVTIMEO, MSG_ERRQUEUE on an empty error queue, control messages (SO_TIMESTAMP,
// IP_TTL, IP_TOS, IPV6_HOPLIMIT, IPV6_TCLASS), /proc/net/icmp{,6}, and IPv6. Identifiers are never printed.
// native-netns: ping
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>

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

static unsigned sum16(const unsigned char *p, size_t n, unsigned sum) {
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (p[i] << 8) | p[i + 1];
    if (n & 1)
        sum += p[n - 1] << 8;
    return sum;
}

static int fold(unsigned sum) {
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* An ICMP message's checksum is right (it sums to 0xffff). */
static int icmp_ok(const unsigned char *p, size_t n) { return fold(sum16(p, n, 0)) == 0xffff; }

/* An ICMPv6 message from src to dst: the pseudo-header counts too. */
static int icmp6_ok(const unsigned char *p, size_t n, const struct in6_addr *src,
                    const struct in6_addr *dst) {
    unsigned sum = sum16(src->s6_addr, 16, 0);
    sum = sum16(dst->s6_addr, 16, sum);
    sum += (unsigned)(n >> 16) + (unsigned)(n & 0xffff) + 58;
    return fold(sum16(p, n, sum)) == 0xffff;
}

/* An echo request: type, identifier (to be overwritten), sequence, then `len` payload bytes
 * of a pattern, with a deliberately wrong checksum (the kernel computes it). */
static size_t request(unsigned char *buf, int type, int seq, size_t len) {
    buf[0] = type;
    buf[1] = 0;
    buf[2] = 0xde;
    buf[3] = 0xad;
    buf[4] = 0xff;
    buf[5] = 0xff;
    buf[6] = seq >> 8;
    buf[7] = seq & 0xff;
    for (size_t i = 0; i < len; i++)
        buf[8 + i] = (unsigned char)(i * 7 + seq);
    return 8 + len;
}

static int port_of(int s) {
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    if (a.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}

/* Whether /proc/net/icmp (or icmp6) has a line containing `what`. */
static int listed(const char *file, const char *what) {
    FILE *f = fopen(file, "r");
    CHECK(f != NULL);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f))
        found |= strstr(line, what) != NULL;
    fclose(f);
    return found;
}

static int readable(int s, int ms) {
    struct pollfd p = {.fd = s, .events = POLLIN | POLLOUT};
    CHECK(poll(&p, 1, ms) >= 0);
    return p.revents;
}

/* The reply to `req` (n bytes) came back right for identifier `id`. */
static void check_reply(const unsigned char *got, ssize_t r, const unsigned char *req, size_t n,
                        int reply_type, int id) {
    CHECK(r == (ssize_t)n);
    CHECK(got[0] == reply_type && got[1] == 0);
    CHECK(((got[4] << 8) | got[5]) == id);
    CHECK(got[6] == req[6] && got[7] == req[7]);
    CHECK(memcmp(got + 8, req + 8, n - 8) == 0);
}

static void group_range(void) {
    FILE *f = fopen("/proc/sys/net/ipv4/ping_group_range", "r");
    CHECK(f != NULL);
    char line[64] = {0};
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    CHECK(strcmp(line, "0\t2147483647\n") == 0);
    printf("ping_group_range admits every group\n");
}

static void basics_v4(void) {
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    CHECK(s >= 0);
    int v;
    socklen_t vl = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &vl) == 0 && v == IPPROTO_ICMP);
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl) == 0 && v == SOCK_DGRAM);
    CHECK(port_of(s) == 0);

    struct sockaddr_in lo = in4("127.0.0.1", 0);
    unsigned char buf[256], got[256];
    size_t n = request(buf, ICMP_ECHO, 1, 56);
    // Not connected, no address.
    CHECK_ERR(send(s, buf, n, 0), EDESTADDRREQ);
    // Only echo requests, whole headers, code 0.
    buf[0] = ICMP_TIMESTAMP;
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo), EINVAL);
    buf[0] = ICMP_ECHO;
    buf[1] = 1;
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo), EINVAL);
    buf[1] = 0;
    CHECK_ERR(sendto(s, buf, 7, 0, (struct sockaddr *)&lo, sizeof lo), EINVAL);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo - 1), EINVAL);
    struct sockaddr_in6 six = in6("::1", 0);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&six, sizeof six), EAFNOSUPPORT);
    struct sockaddr_in far = in4("192.0.2.1", 0);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&far, sizeof far), ENETUNREACH);
    struct sockaddr_in bcast = in4("255.255.255.255", 0);
    // (No route to the broadcast address on lo alone.)
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&bcast, sizeof bcast), ENETUNREACH);
    // Those failures bound the socket already: sends bind automatically.
    int auto_id = port_of(s);
    CHECK(auto_id != 0);

    // An echo: the identifier is the socket's, the rest comes back as sent.
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo) == (ssize_t)n);
    CHECK(readable(s, 2000) & POLLIN);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t r = recvfrom(s, got, sizeof got, 0, (struct sockaddr *)&from, &fl);
    check_reply(got, r, buf, n, ICMP_ECHOREPLY, auto_id);
    CHECK(icmp_ok(got, r));
    CHECK(fl == sizeof from && from.sin_family == AF_INET && from.sin_port == 0);
    CHECK(from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    // Empty again.
    CHECK(readable(s, 0) == POLLOUT);
    CHECK_ERR(recv(s, got, sizeof got, MSG_DONTWAIT), EAGAIN);
    CHECK_ERR(recv(s, got, sizeof got, MSG_DONTWAIT | MSG_ERRQUEUE), EAGAIN);
    // Bound already.
    CHECK_ERR(bind(s, (struct sockaddr *)&lo, sizeof lo), EINVAL);

    // Another address of lo answers from itself; 0.0.0.0 is this host, through 127.0.0.1.
    struct sockaddr_in other = in4("127.0.0.9", 0);
    n = request(buf, ICMP_ECHO, 2, 0);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&other, sizeof other) == (ssize_t)n);
    fl = sizeof from;
    r = recvfrom(s, got, sizeof got, 0, (struct sockaddr *)&from, &fl);
    check_reply(got, r, buf, n, ICMP_ECHOREPLY, auto_id);
    CHECK(icmp_ok(got, r));
    CHECK(from.sin_addr.s_addr == other.sin_addr.s_addr);
    struct sockaddr_in any = in4("0.0.0.0", 0);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&any, sizeof any) == (ssize_t)n);
    fl = sizeof from;
    r = recvfrom(s, got, sizeof got, 0, (struct sockaddr *)&from, &fl);
    check_reply(got, r, buf, n, ICMP_ECHOREPLY, auto_id);
    CHECK(from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    close(s);
    printf("v4 echo: identifier, sequence, payload, checksum, errors\n");
}

static void bind_v4(void) {
    // An identifier chosen with bind; ping sockets are made with SO_REUSEADDR on and share
    // identifiers, but one that turned it off shares with nobody.
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    CHECK(s >= 0);
    int v = 0, zero = 0;
    socklen_t vl = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, &vl) == 0 && v == 1);
    struct sockaddr_in a = in4("127.0.0.1", 0);
    int id = 0;
    for (int tries = 0; tries < 50; tries++) {
        a.sin_port = htons(20000 + (getpid() * 13 + tries * 101) % 30000);
        if (bind(s, (struct sockaddr *)&a, sizeof a) == 0) {
            id = ntohs(a.sin_port);
            break;
        }
        CHECK(errno == EADDRINUSE);
    }
    CHECK(id != 0);
    CHECK(port_of(s) == id);
    char row[64];
    snprintf(row, sizeof row, ": 0100007F:%04X 00000000:0000 07 ", id);
    CHECK(listed("/proc/net/icmp", row));
    int t = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    CHECK(t >= 0);
    CHECK(setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero) == 0);
    struct sockaddr_in b = in4("0.0.0.0", id);
    CHECK_ERR(bind(t, (struct sockaddr *)&b, sizeof b), EADDRINUSE);
    // IPv6 ping sockets draw from the same identifiers.
    int s6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
    CHECK(s6 >= 0);
    CHECK(setsockopt(s6, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero) == 0);
    struct sockaddr_in6 b6 = in6("::", id);
    CHECK_ERR(bind(s6, (struct sockaddr *)&b6, sizeof b6), EADDRINUSE);
    close(s6);
    // Addresses bind checks: not the sandbox's, wrong family, short.
    struct sockaddr_in far = in4("192.0.2.1", 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&far, sizeof far), EADDRNOTAVAIL);
    CHECK_ERR(bind(t, (struct sockaddr *)&a, sizeof a - 1), EINVAL);
    struct sockaddr_in6 wrong = in6("::1", 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&wrong, sizeof wrong), EAFNOSUPPORT);
    // Unlike UDP, not a multicast or broadcast address.
    struct sockaddr_in mc = in4("224.0.0.1", 0), bc = in4("255.255.255.255", 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&mc, sizeof mc), EADDRNOTAVAIL);
    CHECK_ERR(bind(t, (struct sockaddr *)&bc, sizeof bc), EADDRNOTAVAIL);

    unsigned char buf[128], got[128];
    size_t n = request(buf, ICMP_ECHO, 300, 20);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&a, sizeof a) == (ssize_t)n);
    ssize_t r = recv(s, got, sizeof got, 0);
    check_reply(got, r, buf, n, ICMP_ECHOREPLY, id);
    CHECK(icmp_ok(got, r));
    // The reply went to the socket holding the identifier, not to the other one.
    CHECK(readable(t, 0) == POLLOUT);
    close(t);

    // connect: send and write need no address; the peer is named; read takes a reply.
    struct sockaddr_in peer = in4("127.0.0.2", 7);
    CHECK(connect(s, (struct sockaddr *)&peer, sizeof peer) == 0);
    struct sockaddr_in p;
    socklen_t pl = sizeof p;
    CHECK(getpeername(s, (struct sockaddr *)&p, &pl) == 0);
    CHECK(p.sin_addr.s_addr == peer.sin_addr.s_addr && p.sin_port == htons(7));
    CHECK(port_of(s) == id);
    snprintf(row, sizeof row, ": 0100007F:%04X 0200007F:0007 01 ", id);
    CHECK(listed("/proc/net/icmp", row));
    n = request(buf, ICMP_ECHO, 301, 3);
    CHECK(write(s, buf, n) == (ssize_t)n);
    CHECK(read(s, got, sizeof got) == (ssize_t)n);
    check_reply(got, n, buf, n, ICMP_ECHOREPLY, id);
    CHECK(send(s, buf, n, 0) == (ssize_t)n);

    // epoll sees the reply; MSG_PEEK leaves it; a short buffer truncates it.
    int ep = epoll_create1(0);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
    CHECK(epoll_wait(ep, &ev, 1, 2000) == 1 && (ev.events & EPOLLIN));
    CHECK(recv(s, got, sizeof got, MSG_PEEK) == (ssize_t)n);
    // Unlike UDP's, a ping socket's MSG_TRUNC still returns what was copied.
    CHECK(recv(s, got, 4, MSG_PEEK | MSG_TRUNC) == 4);
    unsigned char small[4];
    struct iovec iov = {.iov_base = small, .iov_len = sizeof small};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(s, &m, 0) == 4);
    CHECK(m.msg_flags & MSG_TRUNC);
    CHECK(small[0] == ICMP_ECHOREPLY);
    CHECK(epoll_wait(ep, &ev, 1, 0) == 0);
    close(ep);

    // SO_RCVTIMEO bounds a blocking receive.
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    CHECK_ERR(recv(s, got, sizeof got, 0), EAGAIN);
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    CHECK(ms >= 90);

    // AF_UNSPEC disconnects; the bound identifier stays.
    struct sockaddr un = {.sa_family = AF_UNSPEC};
    CHECK(connect(s, &un, sizeof un) == 0);
    CHECK_ERR(getpeername(s, (struct sockaddr *)&p, &pl), ENOTCONN);
    CHECK(port_of(s) == id);
    CHECK_ERR(send(s, buf, n, 0), EDESTADDRREQ);
    close(s);

    // Two sockets that keep SO_REUSEADDR share an identifier, of either family.
    int x = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), y = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    int z = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
    CHECK(x >= 0 && y >= 0 && z >= 0);
    CHECK(bind(x, (struct sockaddr *)&b, sizeof b) == 0);
    CHECK(bind(y, (struct sockaddr *)&b, sizeof b) == 0);
    CHECK(bind(z, (struct sockaddr *)&b6, sizeof b6) == 0);
    close(x);
    close(y);
    close(z);
    printf("v4 bind, connect, readiness, peek, truncation, time-out\n");
}

/* The control messages iputils ping asks for. */
static void control_v4(void) {
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    CHECK(s >= 0);
    int one = 1;
    CHECK(setsockopt(s, SOL_IP, IP_RECVERR, &one, sizeof one) == 0);
    CHECK(setsockopt(s, SOL_IP, IP_RECVTTL, &one, sizeof one) == 0);
    CHECK(setsockopt(s, SOL_IP, IP_RETOPTS, &one, sizeof one) == 0);
    CHECK(setsockopt(s, SOL_SOCKET, SO_TIMESTAMP, &one, sizeof one) == 0);
    // The reply carries the request's TOS back.
    int tos = 0x10;
    CHECK(setsockopt(s, SOL_IP, IP_TOS, &tos, sizeof tos) == 0);
    CHECK(setsockopt(s, SOL_IP, IP_RECVTOS, &one, sizeof one) == 0);
    struct sockaddr_in lo = in4("127.0.0.1", 0);
    unsigned char buf[128], got[128];
    size_t n = request(buf, ICMP_ECHO, 9, 48);
    struct timeval before, after;
    gettimeofday(&before, NULL);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo) == (ssize_t)n);
    union {
        char buf[256];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = got, .iov_len = sizeof got};
    struct sockaddr_in from;
    struct msghdr m = {.msg_name = &from,
                       .msg_namelen = sizeof from,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
    ssize_t r = recvmsg(s, &m, 0);
    gettimeofday(&after, NULL);
    check_reply(got, r, buf, n, ICMP_ECHOREPLY, port_of(s));
    CHECK(m.msg_flags == 0);
    int seen = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMP) {
            CHECK(seen == 0);
            struct timeval tv;
            memcpy(&tv, CMSG_DATA(c), sizeof tv);
            CHECK(timercmp(&tv, &before, >=) && timercmp(&tv, &after, <=));
            seen |= 1;
        } else if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_TTL) {
            CHECK(c->cmsg_len == CMSG_LEN(sizeof(int)));
            int ttl;
            memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
            CHECK(ttl == 64);
            CHECK(seen == 1);
            seen |= 2;
        } else if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_TOS) {
            CHECK(c->cmsg_len == CMSG_LEN(1) && *CMSG_DATA(c) == 0x10);
            CHECK(seen == 3);
            seen |= 4;
        } else {
            CHECK(!"an unexpected control message");
        }
    }
    CHECK(seen == 7);
    close(s);
    printf("v4 control messages: timestamp, ttl, tos\n");
}

static void v6(void) {
    int s = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
    CHECK(s >= 0);
    int v;
    socklen_t vl = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &vl) == 0 && v == IPPROTO_ICMPV6);
    int one = 1;
    CHECK(setsockopt(s, SOL_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof one) == 0);
    CHECK(setsockopt(s, SOL_IPV6, IPV6_RECVERR, &one, sizeof one) == 0);
    int tclass = 0x20;
    CHECK(setsockopt(s, SOL_IPV6, IPV6_TCLASS, &tclass, sizeof tclass) == 0);
    CHECK(setsockopt(s, SOL_IPV6, IPV6_RECVTCLASS, &one, sizeof one) == 0);
    struct sockaddr_in6 lo = in6("::1", 0);
    unsigned char buf[256], got[256];
    size_t n = request(buf, 128, 5, 100);
    // Only echo requests; the whole sockaddr_in6; never an IPv4 destination.
    buf[0] = 8;
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo), EINVAL);
    buf[0] = 128;
    CHECK_ERR(sendto(s, buf, 4, 0, (struct sockaddr *)&lo, sizeof lo), EINVAL);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&lo, 24), EINVAL);
    struct sockaddr_in6 mapped = in6("::ffff:127.0.0.1", 0);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&mapped, sizeof mapped), EINVAL);
    struct sockaddr_in four = in4("127.0.0.1", 0);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&four, sizeof lo), EAFNOSUPPORT);
    struct sockaddr_in6 far = in6("2001:db8::1", 0);
    CHECK_ERR(sendto(s, buf, n, 0, (struct sockaddr *)&far, sizeof far), ENETUNREACH);

    // iputils ping puts the protocol number in sin6_port: it means nothing.
    lo.sin6_port = htons(58);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof lo) == (ssize_t)n);
    int id = port_of(s);
    CHECK(id != 0);
    CHECK(readable(s, 2000) & POLLIN);
    union {
        char buf[256];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = got, .iov_len = sizeof got};
    struct sockaddr_in6 from;
    struct msghdr m = {.msg_name = &from,
                       .msg_namelen = sizeof from,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
    ssize_t r = recvmsg(s, &m, 0);
    check_reply(got, r, buf, n, 129, id);
    CHECK(icmp6_ok(got, r, &lo.sin6_addr, &lo.sin6_addr));
    CHECK(m.msg_namelen == sizeof from && from.sin6_family == AF_INET6 && from.sin6_port == 0);
    CHECK(IN6_IS_ADDR_LOOPBACK(&from.sin6_addr) && from.sin6_scope_id == 0);
    int hops = -1, got_tclass = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        CHECK(c->cmsg_level == SOL_IPV6);
        if (c->cmsg_type == IPV6_HOPLIMIT) {
            CHECK(got_tclass == -1);
            memcpy(&hops, CMSG_DATA(c), sizeof hops);
        } else {
            CHECK(c->cmsg_type == IPV6_TCLASS);
            memcpy(&got_tclass, CMSG_DATA(c), sizeof got_tclass);
        }
    }
    CHECK(hops == 64 && got_tclass == 0x20);
    CHECK_ERR(recv(s, got, sizeof got, MSG_DONTWAIT), EAGAIN);

    // bind: multicast and mapped addresses are refused; a bound identifier is used.
    int t = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
    CHECK(t >= 0);
    struct sockaddr_in6 mc = in6("ff02::1", 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&mc, sizeof mc), EINVAL);
    CHECK_ERR(bind(t, (struct sockaddr *)&mapped, sizeof mapped), EINVAL);
    struct sockaddr_in6 b = in6("::1", id);
    int zero = 0;
    CHECK(setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero) == 0);
    CHECK_ERR(bind(t, (struct sockaddr *)&b, sizeof b), EADDRINUSE);
    close(s);
    CHECK(bind(t, (struct sockaddr *)&b, sizeof b) == 0);
    CHECK(port_of(t) == id);
    char row[80];
    snprintf(row, sizeof row, ": 00000000000000000000000001000000:%04X ", id);
    CHECK(listed("/proc/net/icmp6", row));
    CHECK(connect(t, (struct sockaddr *)&lo, sizeof lo) == 0);
    n = request(buf, 128, 6, 1);
    CHECK(send(t, buf, n, 0) == (ssize_t)n);
    r = recv(t, got, sizeof got, 0);
    check_reply(got, r, buf, n, 129, id);
    CHECK(icmp6_ok(got, r, &lo.sin6_addr, &lo.sin6_addr));
    close(t);
    printf("v6 echo: identifier, sequence, payload, checksum, hop limit, class, errors\n");
}

int main(void) {
    group_range();
    basics_v4();
    bind_v4();
    control_v4();
    v6();
    return 0;
}
