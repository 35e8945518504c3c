// expect: signal 11
// A fault kills the program even when SIGSEGV is ignored and blocked: the kernel forces it.
#include "check.h"
#include <signal.h>
int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSEGV);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    printf("ignored and blocked\n");
    fflush(stdout);
    volatile int *volatile null = NULL;
    *null = 1;
    printf("survived\n");
    return 0;
}
