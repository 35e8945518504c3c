// mmap of a file: private copies see the file's bytes; writing them leaves the file alone;
// offsets, the zero tail of the last page, and the errors for unsuitable fds.
#include "check.h"
#include <fcntl.h>
#include <sys/mman.h>
int main(void) {
    int fd = open("data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char page[4096];
    for (int i = 0; i < 3; i++) {
        memset(page, 'a' + i, sizeof page);
        CHECK(write(fd, page, sizeof page) == sizeof page);
    }
    CHECK(write(fd, "tail", 4) == 4);
    char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    CHECK(p[0] == 'a' && p[4096] == 'b' && p[8191] == 'b' && p[8192] == 'c');
    CHECK(memcmp(p + 3 * 4096, "tail", 4) == 0 && p[3 * 4096 + 4] == 0 && p[4 * 4096 - 1] == 0);
    p[0] = 'X';
    char c;
    CHECK(pread(fd, &c, 1, 0) == 1 && c == 'a');
    char *q = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 2 * 4096);
    CHECK(q != MAP_FAILED && q[0] == 'c' && q[4095] == 'c');
    char *s = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096);
    CHECK(s != MAP_FAILED && s[10] == 'b');
    char *n = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE, fd, 0);
    CHECK(n != MAP_FAILED);
    CHECK(mprotect(n, 4096, PROT_READ) == 0 && n[1] == 'a');
    /* Replacing part of an anonymous reservation with a file, as ld.so does. */
    char *r = mmap(NULL, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(r != MAP_FAILED);
    CHECK(mmap(r + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 4096) == r + 4096);
    CHECK(r[4096] == 'b');
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 1), EINVAL);
    int wo = open("data", O_WRONLY);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, wo, 0), EACCES);
    int ro = open("data", O_RDONLY);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0), EACCES);
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0) != MAP_FAILED);
    int path = open("data", O_PATH);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, path, 0), EBADF);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, dir, 0), ENODEV);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 99, 0), EBADF);
    CHECK(unlink("data") == 0);
    /* The mapping outlives the name. */
    CHECK(q[1] == 'c');
    printf("file mappings ok\n");
    return 0;
}
