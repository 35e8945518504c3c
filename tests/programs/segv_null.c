// expect: signal 11
// A write to address 0 kills the program with SIGSEGV.
#include "check.h"
int main(void) {
    printf("before\n");
    fflush(stdout);
    *(volatile int *)0 = 1;
    printf("after\n");
    return 0;
}
