// mmap argument checking, as mmap(2) documents it.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    CHECK_ERR(mmap(NULL, 0, rw, pa, -1, 0), EINVAL);
    CHECK_ERR(mmap(NULL, 4096, rw, MAP_ANONYMOUS, -1, 0), EINVAL);
    CHECK_ERR(mmap((void *)0x10001000 + 1, 4096, rw, pa | MAP_FIXED, -1, 0), EINVAL);
    CHECK_ERR(mmap(NULL, 4096, rw, pa, -1, 123), EINVAL);
    CHECK_ERR(mmap(NULL, (size_t)-4096, rw, pa, -1, 0), ENOMEM);
    CHECK_ERR(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 77, 0), EBADF);
    /* MAP_SHARED_VALIDATE is for files: anonymous memory must be MAP_SHARED or MAP_PRIVATE. */
    CHECK_ERR(mmap(NULL, 4096, rw, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0), EINVAL);
    /* Unlike mprotect, mmap ignores protection bits it does not know. */
    void *odd = mmap(NULL, 4096, rw | 0x100, pa, -1, 0);
    CHECK(odd != MAP_FAILED && munmap(odd, 4096) == 0);
    /* A free hint is taken as is. */
    void *hint = (void *)0x300000000ul;
    void *h = mmap(hint, 4096, rw, pa, -1, 0);
    CHECK(h == hint && munmap(h, 4096) == 0);
    void *a = mmap((void *)0x20000000, 4096, rw, pa | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(a == (void *)0x20000000);
    CHECK_ERR(mmap(a, 4096, rw, pa | MAP_FIXED_NOREPLACE, -1, 0), EEXIST);
    void *b = mmap(a, 4096, rw, pa, -1, 0);
    CHECK(b != MAP_FAILED && b != a);
    void *c = mmap(a, 4096, rw, pa | MAP_FIXED, -1, 0);
    CHECK(c == a);
    CHECK_ERR(munmap((char *)a + 1, 4096), EINVAL);
    CHECK_ERR(munmap(a, 0), EINVAL);
    CHECK(munmap(a, 1) == 0);
    CHECK(munmap(a, 4096) == 0);
    printf("mmap errors ok\n");
    return 0;
}
