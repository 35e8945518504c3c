// expect: signal 11
// After mremap moves a mapping, the data is at the new address and the old one faults.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    volatile char *p = mmap(NULL, 2 * 4096, rw, pa, -1, 0);
    CHECK(p != MAP_FAILED);
    p[0] = 'x';
    p[4096] = 'y';
    char *target = mmap(NULL, 2 * 4096, PROT_NONE, pa, -1, 0);
    CHECK(target != MAP_FAILED);
    volatile char *q = mremap((void *)p, 2 * 4096, 2 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    CHECK(q == target && q[0] == 'x' && q[4096] == 'y');
    printf("moved\n");
    fflush(stdout);
    return p[0];
}
