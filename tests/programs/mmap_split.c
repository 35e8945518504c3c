// munmap and mprotect in the middle of a mapping split it; the other parts keep their data.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    for (int i = 0; i < 3; i++) p[i * 4096] = 'a' + i;
    CHECK(munmap(p + 4096, 4096) == 0);
    CHECK(p[0] == 'a' && p[2 * 4096] == 'c');
    p[1] = 'x';
    p[2 * 4096 + 1] = 'y';
    CHECK(mprotect(p + 4096, 4096, PROT_READ) == -1 && errno == ENOMEM);
    CHECK(mprotect(p, 4096, PROT_READ) == 0);
    CHECK(p[0] == 'a' && p[1] == 'x');
    CHECK(mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
    p[2] = 'z';
    char *q = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(q != MAP_FAILED);
    CHECK(mprotect(q + 4096, 2 * 4096, PROT_NONE) == 0);
    CHECK(mprotect(q, 4 * 4096, PROT_READ | PROT_WRITE) == 0);
    q[4096 * 2] = 1;
    CHECK_ERR(mprotect(q + 1, 4096, PROT_READ), EINVAL);
    CHECK_ERR(mprotect(q, 4096, 0x100), EINVAL);
    CHECK_ERR(mprotect(q, 4096, PROT_READ | PROT_GROWSDOWN), EINVAL);
    CHECK_ERR(mprotect(q, 4096, PROT_READ | PROT_GROWSUP), EINVAL);
    /* MAP_FIXED over the middle of a mapping replaces just that page, with zeros. */
    memset(q, 'q', 4 * 4096);
    CHECK(mmap(q + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == q + 4096);
    CHECK(q[4095] == 'q' && q[4096] == 0 && q[2 * 4096 - 1] == 0 && q[2 * 4096] == 'q');
    CHECK(mprotect(q, 0, PROT_READ) == 0);
    CHECK_ERR(mprotect((void *)0x7000000, 4096, PROT_READ), ENOMEM);
    printf("split ok: %c %c %c\n", p[0], p[2 * 4096], p[2 * 4096 + 1]);
    return 0;
}
