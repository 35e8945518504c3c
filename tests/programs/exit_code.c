// expect: exit 42
// exit_group's status reaches the parent (the low 8 bits of it).
#include "check.h"
int main(void) {
    printf("exiting with 42\n");
    fflush(stdout);
    syscall(SYS_exit_group, 0x12a);
    return 0;
}
