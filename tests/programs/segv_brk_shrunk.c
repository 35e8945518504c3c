// expect: signal 11
// Shrinking the break unmaps the pages above it: touching them again faults.
#include "check.h"
int main(void) {
    char *start = (char *)syscall(SYS_brk, 0);
    char *top = start + 16 * 4096;
    CHECK((char *)syscall(SYS_brk, top) == top);
    volatile char *high = top - 4096;
    *high = 1;
    CHECK((char *)syscall(SYS_brk, start) == start);
    printf("break back at its start\n");
    fflush(stdout);
    return *high;
}
