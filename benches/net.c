// Loopback networking between two processes: `net OP N` prints one number. OP is one of:
//   tcp-stream  N MiB sent over a TCP connection in 64 KiB writes: MiB per second
//   tcp-rr      N one-byte requests and one-byte answers over TCP (TCP_NODELAY): µs per round trip
//   udp-rr      the same with UDP datagrams: µs per round trip
//   unix-rr     the same over a unix stream socket pair: µs per round trip
// The server binds port 0 on 127.0.0.1 and the client reads the port back, so runs never
// collide.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A socket of `type` bound to 127.0.0.1 on a port the kernel picks. */
static int bound(int type, struct sockaddr_in *addr) {
    int s = socket(AF_INET, type, 0);
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)addr, sizeof *addr) || getsockname(s, (struct sockaddr *)addr, &len))
        die("bind");
    return s;
}

/* A connected TCP pair: the client's end in *c, the server's in *s. */
static void tcp_pair(int *c, int *s) {
    struct sockaddr_in addr;
    int l = bound(SOCK_STREAM, &addr);
    if (listen(l, 1))
        die("listen");
    *c = socket(AF_INET, SOCK_STREAM, 0);
    if (*c < 0 || connect(*c, (struct sockaddr *)&addr, sizeof addr))
        die("connect");
    *s = accept(l, NULL, NULL);
    if (*s < 0)
        die("accept");
    close(l);
    int one = 1;
    setsockopt(*c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The echoing side of a ping-pong: answer n one-byte messages, then exit. */
static void echo(int fd, long n) {
    char c;
    for (long i = 0; i < n; i++)
        if (read(fd, &c, 1) != 1 || write(fd, &c, 1) != 1)
            _exit(1);
    _exit(0);
}

/* Time n round trips on fd, whose other end `echo`es in process `child`. */
static double ping(int fd, long n, pid_t child) {
    char c = 'x';
    double start = now_us();
    for (long i = 0; i < n; i++)
        if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
            die("ping");
    double us = (now_us() - start) / n;
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))
        die("echo");
    return us;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: net OP N\n");
        return 2;
    }
    const char *op = argv[1];
    long n = atol(argv[2]);
    if (!strcmp(op, "tcp-stream")) {
        int c, s;
        tcp_pair(&c, &s);
        static char buf[65536];
        long total = n << 20;
        pid_t p = fork();
        if (p == 0) {
            close(s);
            for (long sent = 0; sent < total;) {
                ssize_t w = write(c, buf, sizeof buf);
                if (w <= 0)
                    _exit(1);
                sent += w;
            }
            _exit(0);
        }
        close(c);
        double start = now_us();
        long got = 0;
        for (;;) {
            ssize_t r = read(s, buf, sizeof buf);
            if (r < 0)
                die("read");
            if (r == 0)
                break;
            got += r;
        }
        double secs = (now_us() - start) / 1e6;
        int st;
        if (got != total || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st))
            die("stream");
        printf("%.1f\n", n / secs);
    } else if (!strcmp(op, "tcp-rr")) {
        int c, s;
        tcp_pair(&c, &s);
        pid_t p = fork();
        if (p == 0) {
            close(c);
            echo(s, n);
        }
        close(s);
        printf("%.1f\n", ping(c, n, p));
    } else if (!strcmp(op, "udp-rr")) {
        struct sockaddr_in sa, ca;
        int s = bound(SOCK_DGRAM, &sa);
        int c = bound(SOCK_DGRAM, &ca);
        if (connect(c, (struct sockaddr *)&sa, sizeof sa) || connect(s, (struct sockaddr *)&ca, sizeof ca))
            die("connect");
        pid_t p = fork();
        if (p == 0) {
            close(c);
            echo(s, n);
        }
        close(s);
        printf("%.1f\n", ping(c, n, p));
    } else if (!strcmp(op, "unix-rr")) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
            die("socketpair");
        pid_t p = fork();
        if (p == 0) {
            close(sv[0]);
            echo(sv[1], n);
        }
        close(sv[1]);
        printf("%.1f\n", ping(sv[0], n, p));
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    return 0;
}
