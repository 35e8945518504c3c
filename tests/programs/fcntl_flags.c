// fcntl: F_GETFL access mode, F_SETFL status flags, F_DUPFD(_CLOEXEC) minimums, errors.
#include "check.h"
#include <fcntl.h>
#include <sys/resource.h>
int main(void) {
    int fl = fcntl(1, F_GETFL);
    CHECK(fl >= 0);
    CHECK((fl & O_ACCMODE) == O_WRONLY || (fl & O_ACCMODE) == O_RDWR);
    CHECK(fcntl(1, F_SETFL, fl | O_NONBLOCK) == 0);
    CHECK(fcntl(1, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(1, F_SETFL, fl) == 0);
    CHECK(!(fcntl(1, F_GETFL) & O_NONBLOCK));
    /* F_SETFL leaves the access mode and the creation flags alone. */
    CHECK(fcntl(1, F_SETFL, O_RDONLY | O_APPEND | O_CREAT | O_TRUNC | O_EXCL) == 0);
    CHECK((fcntl(1, F_GETFL) & (O_ACCMODE | O_APPEND | O_CREAT | O_TRUNC | O_EXCL)) == ((fl & O_ACCMODE) | O_APPEND));
    CHECK(fcntl(1, F_SETFL, fl) == 0 && fcntl(1, F_GETFL) == fl);
    int d = fcntl(1, F_DUPFD, 20);
    CHECK(d == 20);
    CHECK(fcntl(1, F_DUPFD, 20) == 21);
    int c = fcntl(1, F_DUPFD_CLOEXEC, 5);
    CHECK(c == 5);
    CHECK(fcntl(c, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(c, F_SETFD, 0) == 0 && fcntl(c, F_GETFD) == 0);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK_ERR(fcntl(1, F_DUPFD, (int)rl.rlim_cur), EINVAL);
    CHECK_ERR(fcntl(1, F_DUPFD, -1), EINVAL);
    CHECK_ERR(fcntl(99, F_GETFD), EBADF);
    CHECK_ERR(fcntl(1, 9999), EINVAL);
    printf("fcntl ok\n");
    return 0;
}
