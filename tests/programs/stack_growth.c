// The main thread's stack grows on demand well past its first pages (up to RLIMIT_STACK),
// whether it is reached frame by frame or by one large frame touched from its far end.
#include "check.h"
#include <sys/resource.h>
static unsigned long __attribute__((noinline)) deep(int depth) {
    volatile char frame[1024];
    frame[0] = (char)(depth & 0x7f);
    frame[1023] = 1;
    unsigned long below = depth == 0 ? 0 : deep(depth - 1);
    return below + (unsigned long)frame[0] + (unsigned long)frame[1023];
}
int main(void) {
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_STACK, &rl) == 0);
    CHECK(rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (6u << 20));
    /* About 2 MiB of stack, a kilobyte and a bit per frame. */
    printf("recursion sum %lu\n", deep(2000));
    volatile char big[3 << 20];
    for (size_t i = 0; i < sizeof big; i += 4096) big[i] = (char)(i >> 12);
    unsigned long sum = 0;
    for (size_t i = 0; i < sizeof big; i += 4096) sum += (unsigned char)big[i];
    printf("big frame sum %lu\n", sum);
    return 0;
}
