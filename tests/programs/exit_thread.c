// expect: exit 7
// exit() of the only thread ends the process with its status.
#include "check.h"
int main(void) {
    printf("exit via SYS_exit\n");
    fflush(stdout);
    syscall(SYS_exit, 7);
    return 0;
}
