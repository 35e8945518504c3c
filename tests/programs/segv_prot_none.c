// expect: signal 11
// mprotect(PROT_NONE) on the middle of a mapping: its neighbours stay usable, the middle faults.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    volatile char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[4096] = 'b';
    CHECK(mprotect((void *)(p + 4096), 4096, PROT_NONE) == 0);
    p[0] = 'a';
    p[2 * 4096] = 'c';
    CHECK(p[0] == 'a' && p[2 * 4096] == 'c');
    printf("neighbours usable\n");
    fflush(stdout);
    return p[4096];
}
