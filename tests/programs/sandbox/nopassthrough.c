// Moat-only: the program sees Moat's kernel, not the host's. argv[1] is the number of a system
// call Moat does not implement; it must fail with ENOSYS (twice; the log names it once).
#include "check.h"
#include <sys/utsname.h>
int main(int argc, char **argv) {
    CHECK(argc == 2);
    CHECK(getpid() == 1);
    CHECK(syscall(SYS_gettid) == 1);
    CHECK(getppid() == 0);
    struct utsname u;
    CHECK(uname(&u) == 0);
    CHECK(strstr(u.release, "moat") != NULL);
    long nr = atol(argv[1]);
    CHECK_ERR(syscall(nr, 0, 0, 0, 0, 0, 0), ENOSYS);
    CHECK_ERR(syscall(nr, 0, 0, 0, 0, 0, 0), ENOSYS);
    printf("inside moat\n");
    return 0;
}
