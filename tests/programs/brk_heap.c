// brk: grow, write, shrink, regrow reads zeros; a break below the start or into a mapping is refused.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    char *start = (char *)syscall(SYS_brk, 0);
    CHECK(start != NULL);
    char *top = (char *)syscall(SYS_brk, start + 100000);
    CHECK(top == start + 100000);
    memset(start, 0x77, 100000);
    CHECK((char *)syscall(SYS_brk, start + 10) == start + 10);
    CHECK((char *)syscall(SYS_brk, start + 100000) == start + 100000);
    CHECK(start[4096] == 0 && start[99999] == 0);
    CHECK(start[5] == 0x77);
    CHECK((char *)syscall(SYS_brk, start - 4096 * 1024) == start + 100000);
    /* A mapping in the way stops the break: brk answers the old one. */
    char *wall = (char *)(((unsigned long)start + (1 << 20)) & ~4095ul);
    CHECK(mmap(wall, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == wall);
    CHECK((char *)syscall(SYS_brk, wall + 4096) == start + 100000);
    /* ... and it keeps one page clear below the next mapping. */
    CHECK((char *)syscall(SYS_brk, wall - 1) == start + 100000);
    CHECK((char *)syscall(SYS_brk, wall - 4096) == wall - 4096);
    CHECK(munmap(wall, 4096) == 0);
    CHECK((char *)syscall(SYS_brk, start + 100000) == start + 100000);
    char *m = malloc(1 << 20);
    CHECK(m != NULL);
    memset(m, 1, 1 << 20);
    free(m);
    printf("brk ok\n");
    return 0;
}
