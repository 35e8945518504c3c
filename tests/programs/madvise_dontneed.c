// MADV_DONTNEED on private anonymous memory: the pages read as zeros afterwards.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    char *p = mmap(NULL, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 0x5a, 8 * 4096);
    CHECK(madvise(p + 2 * 4096, 3 * 4096, MADV_DONTNEED) == 0);
    CHECK(p[2 * 4096 - 1] == 0x5a && p[2 * 4096] == 0 && p[5 * 4096 - 1] == 0 && p[5 * 4096] == 0x5a);
    CHECK(madvise(p, 4096, MADV_WILLNEED) == 0);
    CHECK(madvise(p, 4096, MADV_NORMAL) == 0);
    CHECK_ERR(madvise(p + 1, 4096, MADV_DONTNEED), EINVAL);
    CHECK_ERR(madvise(p, 4096, 12345), EINVAL);
    /* Punching holes needs shared memory. */
    CHECK_ERR(madvise(p, 4096, MADV_REMOVE), EINVAL);
    CHECK(madvise(p, 0, MADV_DONTNEED) == 0);
    CHECK(munmap(p + 4096, 4096) == 0);
    CHECK_ERR(madvise(p, 3 * 4096, MADV_DONTNEED), ENOMEM);
    CHECK(p[0] == 0);
    printf("madvise ok\n");
    return 0;
}
