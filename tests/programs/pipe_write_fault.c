// A write to a pipe (stdout under the harness) whose buffer faults part-way fails with EFAULT
// and writes nothing, when it is shorter than a page: Linux copies into the pipe's page first.
#include "check.h"
#include <sys/mman.h>
#include <sys/uio.h>
int main(void) {
    char *two = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED);
    char *edge = two + 4096 - 6;
    memcpy(edge, "first\n", 6);
    CHECK(mprotect(two + 4096, 4096, PROT_NONE) == 0);
    CHECK_ERR(syscall(SYS_write, 1, edge, 16), EFAULT);
    struct iovec iov[3] = {{"second", 6}, {"\n", 1}, {two + 4096, 4}};
    CHECK_ERR(syscall(SYS_writev, 1, iov, 3), EFAULT);
    /* The same buffers, stopping before the fault, are written whole. */
    CHECK(syscall(SYS_write, 1, edge, 6) == 6);
    CHECK(syscall(SYS_writev, 1, iov, 2) == 7);
    printf("pipe write fault ok\n");
    return 0;
}
