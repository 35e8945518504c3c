// mremap: shrink in place, grow in place, move with MREMAP_MAYMOVE keeping contents, errors.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    char *p = mmap(NULL, 4 * 4096, rw, pa, -1, 0);
    CHECK(p != MAP_FAILED);
    for (int i = 0; i < 4 * 4096; i++) p[i] = (char)i;
    CHECK(mremap(p, 4 * 4096, 2 * 4096, 0) == p);
    CHECK(p[4096 + 7] == (char)(4096 + 7));
    /* Grow back in place into the room just freed: the regrown pages are fresh zeros. */
    CHECK(mremap(p, 2 * 4096, 3 * 4096, 0) == p);
    CHECK(p[2 * 4096] == 0 && p[4096 + 7] == (char)(4096 + 7));
    CHECK(mremap(p, 3 * 4096, 2 * 4096, 0) == p);
    /* Duplicating with old_size 0 is only for shared mappings. */
    CHECK_ERR(mremap(p, 0, 4096, MREMAP_MAYMOVE), EINVAL);
    /* Block growth in place with a mapping right after. */
    char *wall = mmap(p + 2 * 4096, 4096, rw, pa | MAP_FIXED, -1, 0);
    CHECK(wall == p + 2 * 4096);
    CHECK_ERR(mremap(p, 2 * 4096, 8 * 4096, 0), ENOMEM);
    char *q = mremap(p, 2 * 4096, 8 * 4096, MREMAP_MAYMOVE);
    CHECK(q != MAP_FAILED && q != p);
    for (int i = 0; i < 2 * 4096; i++) CHECK(q[i] == (char)i);
    CHECK(q[7 * 4096] == 0);
    q[7 * 4096] = 1;
    char *target = mmap(NULL, 8 * 4096, PROT_NONE, pa, -1, 0);
    CHECK(target != MAP_FAILED);
    char *r = mremap(q, 8 * 4096, 8 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    CHECK(r == target && r[7 * 4096] == 1 && r[5] == 5);
    CHECK_ERR(mremap(r + 1, 4096, 4096, 0), EINVAL);
    CHECK_ERR(mremap(r, 4096, 0, 0), EINVAL);
    CHECK_ERR(mremap(r, 4096, 4096, 0x100), EINVAL);
    CHECK_ERR(mremap(r, 4096, 8192, MREMAP_FIXED, target), EINVAL);
    CHECK_ERR(mremap((void *)0x7100000, 4096, 8192, MREMAP_MAYMOVE), EFAULT);
    printf("mremap ok\n");
    return 0;
}
