// getrandom fills buffers (never all zeros), honours its flags, and reports bad arguments.
#include "check.h"
#include <sys/random.h>
int main(void) {
    unsigned char a[256], b[256];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK(getrandom(a, sizeof a, 0) == sizeof a);
    CHECK(getrandom(b, sizeof b, GRND_NONBLOCK) == sizeof b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(getrandom(a, 0, 0) == 0);
    CHECK(getrandom(a, 16, GRND_INSECURE) == 16);
    static unsigned char big[1 << 20];
    CHECK(getrandom(big, sizeof big, 0) == sizeof big);
    CHECK_ERR(getrandom(a, 16, 0x80), EINVAL);
    CHECK_ERR(getrandom(a, 16, GRND_RANDOM | GRND_INSECURE), EINVAL);
    CHECK_ERR(syscall(SYS_getrandom, BAD_PTR, 16, 0), EFAULT);
    printf("random ok\n");
    return 0;
}
