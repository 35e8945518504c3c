// tee: bytes are copied from one pipe to another and stay in the first; at most what the
// output has room for; 0 once the input's writers are gone and it is empty; EAGAIN with
// SPLICE_F_NONBLOCK; a blocking tee waits for a writer; EPIPE (and SIGPIPE) without
// readers; EINVAL for non-pipes and for two ends of one pipe; EBADF for wrong modes.
#include "check.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

static int late[2];

static void *write_later(void *arg) {
    (void)arg;
    usleep(100 * 1000);
    CHECK(write(late[1], "late", 4) == 4);
    return NULL;
}

int main(void) {
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    CHECK(write(a[1], "hello world", 11) == 11);
    CHECK(tee(a[0], b[1], 5, 0) == 5);
    char buf[64] = {0};
    CHECK(read(b[0], buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    /* The input still holds everything. */
    CHECK(tee(a[0], b[1], 100, 0) == 11);
    CHECK(read(a[0], buf, sizeof buf) == 11 && memcmp(buf, "hello world", 11) == 0);
    CHECK(read(b[0], buf, sizeof buf) == 11 && memcmp(buf, "hello world", 11) == 0);

    /* Empty input: EAGAIN when asked not to wait; with no writer left, 0. */
    CHECK_ERR(tee(a[0], b[1], 10, SPLICE_F_NONBLOCK), EAGAIN);
    CHECK(tee(a[0], b[1], 0, 0) == 0);

    /* A full output: EAGAIN when asked not to wait; once drained, the copy goes in. */
    static char page[65536];
    memset(page, 'p', sizeof page);
    CHECK(fcntl(b[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(write(b[1], page, sizeof page) == sizeof page);
    CHECK(write(a[1], page, 200) == 200);
    CHECK_ERR(tee(a[0], b[1], 200, SPLICE_F_NONBLOCK), EAGAIN);
    CHECK(read(b[0], page, sizeof page) == sizeof page);
    CHECK(tee(a[0], b[1], 200, SPLICE_F_NONBLOCK) == 200);
    CHECK(read(b[0], page, sizeof page) == 200);
    CHECK(read(a[0], page, sizeof page) == 200);
    CHECK(fcntl(b[1], F_SETFL, 0) == 0);

    /* A blocking tee waits for a writer. */
    CHECK(pipe(late) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, write_later, NULL) == 0);
    CHECK(tee(late[0], b[1], 10, 0) == 4);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(read(b[0], buf, sizeof buf) == 4 && memcmp(buf, "late", 4) == 0);
    close(late[1]);
    CHECK(read(late[0], buf, sizeof buf) == 4);
    CHECK(tee(late[0], b[1], 10, 0) == 0);

    /* Errors. */
    CHECK(write(a[1], "x", 1) == 1);
    CHECK_ERR(tee(a[0], a[1], 1, 0), EINVAL);
    CHECK_ERR(tee(a[1], b[1], 1, 0), EBADF);
    CHECK_ERR(tee(a[0], b[0], 1, 0), EBADF);
    CHECK_ERR(tee(a[0], b[1], 1, 0x100), EINVAL);
    CHECK_ERR(tee(99, b[1], 1, 0), EBADF);
    int f = open("file", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(f >= 0);
    CHECK_ERR(tee(a[0], f, 1, 0), EINVAL);
    CHECK_ERR(tee(f, b[1], 1, 0), EINVAL);
    signal(SIGPIPE, SIG_IGN);
    close(b[0]);
    CHECK_ERR(tee(a[0], b[1], 1, 0), EPIPE);
    printf("tee ok\n");
    return 0;
}
