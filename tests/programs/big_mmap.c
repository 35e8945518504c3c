// A 256 MiB anonymous mapping: only touched pages cost memory; reads of untouched pages are 0.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    size_t len = 256u << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    unsigned long sum = 0;
    for (size_t off = 0; off < len; off += 3 << 20) {
        sum += p[off];
        p[off] = 1;
    }
    CHECK(sum == 0);
    for (size_t off = 0; off < len; off += 3 << 20) sum += p[off];
    printf("touched %lu pages\n", sum);
    CHECK(munmap(p, len) == 0);
    return 0;
}
