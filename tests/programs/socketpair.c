// Connected unix socket pairs: streams (both directions, shutdown, EOF, EPIPE with and without
// MSG_NOSIGNAL, non-blocking EAGAIN, MSG_PEEK, MSG_WAITALL across a fork), datagrams and
// seqpackets (message boundaries, MSG_TRUNC), sendmsg/recvmsg with iovecs, socket options and
// names, and the errors.
#include "check.h"
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

static void streams(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    char buf[64];
    CHECK(write(sv[0], "ping", 4) == 4 && read(sv[1], buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(send(sv[1], "pong", 4, 0) == 4 && recv(sv[0], buf, sizeof buf, 0) == 4 && memcmp(buf, "pong", 4) == 0);
    /* Peeking leaves the data; a stream merges writes. */
    CHECK(write(sv[0], "ab", 2) == 2 && write(sv[0], "cd", 2) == 2);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_PEEK) == 4 && recv(sv[1], buf, sizeof buf, 0) == 4);
    CHECK(memcmp(buf, "abcd", 4) == 0);
    /* Nothing there: EAGAIN when asked not to wait. */
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    struct pollfd p = {sv[1], POLLIN | POLLOUT, 0};
    CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLOUT);
    /* shutdown(SHUT_WR): the peer reads end of file; this side may still read. */
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN));
    CHECK(write(sv[1], "x", 1) == 1 && read(sv[0], buf, 1) == 1);
    CHECK_ERR(send(sv[0], "y", 1, MSG_NOSIGNAL), EPIPE);
    CHECK_ERR(shutdown(sv[0], 7), EINVAL);
    close(sv[0]);
    /* The peer is gone: EPIPE, and SIGPIPE unless MSG_NOSIGNAL. */
    CHECK_ERR(send(sv[1], "z", 1, MSG_NOSIGNAL), EPIPE);
    signal(SIGPIPE, SIG_IGN);
    CHECK_ERR(write(sv[1], "z", 1), EPIPE);
    signal(SIGPIPE, SIG_DFL);
    close(sv[1]);
    printf("stream: both ways, peek, EAGAIN, shutdown, EOF, EPIPE\n");
}

static void across_fork(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        for (int i = 0; i < 100; i++)
            if (write(sv[1], "0123456789", 10) != 10)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    static char big[1000];
    CHECK(recv(sv[0], big, sizeof big, MSG_WAITALL) == sizeof big);
    CHECK(big[0] == '0' && big[999] == '9');
    CHECK(read(sv[0], big, 1) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(sv[0]);
    printf("stream across fork: MSG_WAITALL gathers 1000 bytes, then EOF\n");
}

static void messages(int type, const char *name) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK(send(sv[0], "one", 3, 0) == 3 && send(sv[0], "second", 6, 0) == 6);
    char buf[16];
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 3 && memcmp(buf, "one", 3) == 0);
    /* A short read of a message drops its rest; MSG_TRUNC reports the whole length. */
    CHECK(recv(sv[1], buf, 3, MSG_TRUNC) == 6 && memcmp(buf, "sec", 3) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, 0), EAGAIN);
    /* recvmsg says MSG_TRUNC in msg_flags. */
    CHECK(send(sv[0], "abcdef", 6, 0) == 6);
    struct iovec iov = {buf, 2};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    CHECK(recvmsg(sv[1], &m, 0) == 2 && (m.msg_flags & MSG_TRUNC));
    int type_got;
    socklen_t len = sizeof type_got;
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type_got, &len) == 0 && type_got == type && len == 4);
    close(sv[0]);
    /* Peer closed: end of file for a seqpacket reader; a datagram socket just has nothing. */
    if (type == SOCK_SEQPACKET)
        CHECK(recv(sv[1], buf, sizeof buf, 0) == 0);
    else
        CHECK_ERR(recv(sv[1], buf, sizeof buf, 0), EAGAIN);
    close(sv[1]);
    printf("%s: message boundaries, truncation, SO_TYPE, the peer's close\n", name);
}

static void scatter_gather(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct iovec out[2] = {{"hello ", 6}, {"world", 5}};
    struct msghdr m = {0};
    m.msg_iov = out;
    m.msg_iovlen = 2;
    CHECK(sendmsg(sv[0], &m, 0) == 11);
    char a[4], b[16] = {0};
    struct iovec in[2] = {{a, 4}, {b, sizeof b}};
    struct msghdr r = {0};
    r.msg_iov = in;
    r.msg_iovlen = 2;
    CHECK(recvmsg(sv[1], &r, 0) == 11 && memcmp(a, "hell", 4) == 0 && strcmp(b, "o world") == 0);
    CHECK(r.msg_flags == 0 && r.msg_controllen == 0);
    struct sockaddr_un addr;
    socklen_t alen = sizeof addr;
    CHECK(getsockname(sv[0], (struct sockaddr *)&addr, &alen) == 0 && alen == sizeof(sa_family_t));
    CHECK(addr.sun_family == AF_UNIX);
    alen = sizeof addr;
    CHECK(getpeername(sv[0], (struct sockaddr *)&addr, &alen) == 0 && alen == sizeof(sa_family_t));
    close(sv[0]);
    close(sv[1]);
    printf("sendmsg/recvmsg: iovecs both ways; unnamed addresses\n");
}

static void errors(void) {
    int sv[2];
    CHECK_ERR(socketpair(AF_INET, SOCK_STREAM, 0, sv), EOPNOTSUPP);
    CHECK_ERR(socketpair(AF_UNIX, SOCK_RDM, 0, sv), ESOCKTNOSUPPORT);
    CHECK_ERR(socketpair(AF_UNIX, 99, 0, sv), EINVAL);
    CHECK_ERR(socketpair(AF_UNIX, SOCK_STREAM, 5, sv), EPROTONOSUPPORT);
    CHECK_ERR(syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, BAD_PTR), EFAULT);
    int p[2];
    CHECK(pipe(p) == 0);
    char c;
    CHECK_ERR(recv(p[0], &c, 1, MSG_DONTWAIT), ENOTSOCK);
    CHECK_ERR(shutdown(p[0], SHUT_RD), ENOTSOCK);
    printf("errors: EOPNOTSUPP, ESOCKTNOSUPPORT, EPROTONOSUPPORT, EFAULT, ENOTSOCK\n");
}

int main(void) {
    streams();
    across_fork();
    messages(SOCK_DGRAM, "dgram");
    messages(SOCK_SEQPACKET, "seqpacket");
    scatter_gather();
    errors();
    return 0;
}
