// expect: signal 11
// Reading memory after munmap faults.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[0] = 1;
    CHECK(munmap((void *)p, 4096) == 0);
    printf("unmapped\n");
    fflush(stdout);
    return p[0];
}
