// expect: signal 11
// Writing a PROT_READ page faults, even though the page was populated first.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[0] = 1;
    CHECK(mprotect((void *)p, 4096, PROT_READ) == 0);
    CHECK(p[0] == 1);
    printf("read-only now\n");
    fflush(stdout);
    p[0] = 2;
    return 0;
}
