// Output much larger than a pipe's buffer arrives whole and in order: one 1 MiB write, a
// writev of several large pieces, and thousands of small buffered lines.
#include "check.h"
#include <sys/uio.h>
static char big[1 << 20];
int main(void) {
    for (size_t i = 0; i < sizeof big; i++) big[i] = 'a' + (i * 7 + i / 4096) % 26;
    for (size_t i = 99; i < sizeof big; i += 100) big[i] = '\n';
    CHECK(write(1, big, sizeof big) == sizeof big);
    struct iovec iov[4] = {{big, 300000}, {"\n--\n", 4}, {big + 5, 200000}, {"\n", 1}};
    CHECK(writev(1, iov, 4) == 500005);
    for (int i = 0; i < 20000; i++) printf("line %d %s\n", i, i % 3 ? "fizz" : "buzz");
    return 0;
}
