// splice between a pipe and a file or a TCP socket, and between two pipes: the checks Linux
// makes (EINVAL, ESPIPE, EBADF), offsets given and updated, SPLICE_F_NONBLOCK on an empty
// pipe, end of file, and a file sent to a socket through a pipe while another process reads
// it (the socket's buffer fills, so the splice must wait for room).
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

static unsigned char byte_at(long i) { return (unsigned char)(i * 2654435761u >> 13); }

static void tcp_pair(int *c, int *s) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(*c, (struct sockaddr *)&a, sizeof a) == 0);
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

int main(void) {
    enum { SIZE = 2 << 20 };
    int f = open("data", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0);
    static unsigned char buf[SIZE];
    for (long i = 0; i < SIZE; i++)
        buf[i] = byte_at(i);
    CHECK(write(f, buf, SIZE) == SIZE);

    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    loff_t off = 10;
    /* Errors. */
    CHECK_ERR(splice(f, NULL, f, NULL, 10, 0), EINVAL);
    CHECK_ERR(splice(p[0], NULL, p[1], NULL, 10, 0), EINVAL);
    CHECK_ERR(splice(p[0], &off, f, NULL, 10, 0), ESPIPE);
    CHECK_ERR(splice(f, NULL, p[1], &off, 10, 0), ESPIPE);
    CHECK_ERR(splice(p[1], NULL, f, NULL, 10, 0), EBADF);
    CHECK_ERR(splice(f, NULL, p[1], NULL, 10, 0x100), EINVAL);
    CHECK_ERR(splice(p[0], NULL, f, NULL, 10, SPLICE_F_NONBLOCK), EAGAIN);

    /* File to pipe at an offset (updated, the file's position untouched), pipe to pipe,
     * pipe to file. */
    CHECK(lseek(f, 0, SEEK_SET) == 0);
    CHECK(splice(f, &off, p[1], NULL, 100, 0) == 100 && off == 110);
    CHECK(lseek(f, 0, SEEK_CUR) == 0);
    CHECK(splice(p[0], NULL, q[1], NULL, 60, 0) == 60);
    int g = open("copy", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(splice(q[0], NULL, g, NULL, 1000, 0) == 60);
    CHECK(splice(p[0], NULL, g, NULL, 1000, 0) == 40);
    unsigned char back[100];
    CHECK(pread(g, back, sizeof back, 0) == 100);
    for (int i = 0; i < 100; i++)
        CHECK(back[i] == byte_at(10 + i));
    close(g);
    /* A pipe with no writer left is at end of file. */
    close(q[1]);
    CHECK(splice(q[0], NULL, p[1], NULL, 10, 0) == 0);
    close(q[0]);
    printf("pipes and files ok\n");

    /* A file to a socket through a pipe, while another process reads and checks it. */
    int c, s;
    tcp_pair(&c, &s);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(c);
        static unsigned char in[65536];
        long got = 0;
        int bad = 0;
        for (;;) {
            ssize_t n = read(s, in, sizeof in);
            CHECK(n >= 0);
            if (n == 0)
                break;
            for (ssize_t i = 0; i < n; i++)
                bad |= in[i] != byte_at(got + i);
            got += n;
        }
        _exit(got == SIZE && !bad ? 0 : 1);
    }
    close(s);
    CHECK(lseek(f, 0, SEEK_SET) == 0);
    long moved = 0;
    while (moved < SIZE) {
        ssize_t in = splice(f, NULL, p[1], NULL, SIZE - moved, SPLICE_F_MORE);
        CHECK(in > 0);
        for (ssize_t left = in; left > 0;) {
            ssize_t out = splice(p[0], NULL, c, NULL, left, SPLICE_F_MORE);
            CHECK(out > 0);
            left -= out;
        }
        moved += in;
    }
    close(c);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("file to socket through a pipe: %d MiB ok\n", SIZE >> 20);

    /* A socket into a pipe. */
    tcp_pair(&c, &s);
    CHECK(write(c, "from the socket", 15) == 15);
    CHECK(splice(s, NULL, p[1], NULL, 100, 0) == 15);
    char text[16] = {0};
    CHECK(read(p[0], text, sizeof text) == 15 && strcmp(text, "from the socket") == 0);
    close(c);
    CHECK(splice(s, NULL, p[1], NULL, 100, 0) == 0);
    close(s);
    printf("socket to pipe ok\n");
    return 0;
}
