// ioctl on stdio: not terminals under the harness (ENOTTY), FIONBIO toggles O_NONBLOCK.
#include "check.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
int main(void) {
    struct termios t;
    struct winsize w;
    CHECK_ERR(ioctl(1, TCGETS, &t), ENOTTY);
    CHECK_ERR(ioctl(1, TIOCGWINSZ, &w), ENOTTY);
    CHECK(isatty(1) == 0);
    int on = 1, off = 0;
    CHECK(ioctl(1, FIONBIO, &on) == 0);
    CHECK(fcntl(1, F_GETFL) & O_NONBLOCK);
    CHECK(ioctl(1, FIONBIO, &off) == 0);
    CHECK(!(fcntl(1, F_GETFL) & O_NONBLOCK));
    CHECK_ERR(ioctl(1, FIONBIO, BAD_PTR), EFAULT);
    CHECK_ERR(ioctl(99, FIONBIO, &on), EBADF);
    printf("ioctl ok\n");
    return 0;
}
