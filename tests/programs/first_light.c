// expect: exit 42
// The "done when" program: brk, mmap, mprotect, getrandom, clock_gettime, exit 42.
#include "check.h"
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
int main(void) {
    char *b = sbrk(0);
    CHECK(brk(b + 8192) == 0);
    b[8191] = 'x';
    char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    strcpy(m, "hello");
    CHECK(mprotect(m, 4096, PROT_READ) == 0);
    CHECK(strcmp(m, "hello") == 0);
    unsigned char r[32] = {0};
    CHECK(getrandom(r, sizeof r, 0) == sizeof r);
    int nonzero = 0;
    for (size_t i = 0; i < sizeof r; i++) nonzero |= r[i];
    CHECK(nonzero);
    struct timespec a, c;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &c) == 0);
    CHECK(c.tv_sec > a.tv_sec || (c.tv_sec == a.tv_sec && c.tv_nsec >= a.tv_nsec));
    printf("first light ok\n");
    return 42;
}
