// brk: grow, write, shrink, regrow reads zeros; a break below the start is refused.
#include "check.h"
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
    char *m = malloc(1 << 20);
    CHECK(m != NULL);
    memset(m, 1, 1 << 20);
    free(m);
    printf("brk ok\n");
    return 0;
}
