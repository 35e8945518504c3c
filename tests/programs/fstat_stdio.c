// fstat on stdio: stdout is a FIFO under the harness, stdin is /dev/null (a char device).
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
int main(void) {
    struct stat st;
    CHECK(fstat(1, &st) == 0);
    printf("stdout fifo: %d\n", S_ISFIFO(st.st_mode));
    CHECK(fstat(0, &st) == 0);
    printf("stdin chr: %d\n", S_ISCHR(st.st_mode));
    CHECK(fstatat(1, "", &st, AT_EMPTY_PATH) == 0);
    CHECK(S_ISFIFO(st.st_mode));
    CHECK_ERR(fstat(42, &st), EBADF);
    CHECK_ERR(fstat(1, BAD_PTR), EFAULT);
    CHECK_ERR(syscall(SYS_newfstatat, 1, "", &st, 0), ENOENT);
    CHECK_ERR(syscall(SYS_newfstatat, 1, "", &st, 0x40000000), EINVAL);
    return 0;
}
