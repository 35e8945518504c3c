// expect: signal 11
// munmap of the middle page of three leaves a hole: the outer pages keep their data, the hole faults.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    volatile char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[0] = 'a';
    p[4096] = 'b';
    p[2 * 4096] = 'c';
    CHECK(munmap((void *)(p + 4096), 4096) == 0);
    CHECK(p[0] == 'a' && p[2 * 4096] == 'c');
    printf("outer pages intact\n");
    fflush(stdout);
    return p[4096];
}
