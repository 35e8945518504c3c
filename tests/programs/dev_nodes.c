// /dev/null, /dev/zero, /dev/full, /dev/urandom behave as their man pages say.
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
int main(void) {
    char buf[64];
    int null = open("/dev/null", O_RDWR);
    CHECK(null >= 0 && read(null, buf, sizeof buf) == 0 && write(null, "x", 1) == 1);
    struct stat st;
    CHECK(fstat(null, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
    int zero = open("/dev/zero", O_RDONLY);
    memset(buf, 1, sizeof buf);
    CHECK(zero >= 0 && read(zero, buf, sizeof buf) == sizeof buf && buf[0] == 0 && buf[63] == 0);
    CHECK(lseek(zero, 12345, SEEK_SET) >= 0);
    int full = open("/dev/full", O_WRONLY);
    CHECK_ERR(write(full, "x", 1), ENOSPC);
    int rnd = open("/dev/urandom", O_RDONLY);
    unsigned char r1[32] = {0}, r2[32] = {0};
    CHECK(rnd >= 0 && read(rnd, r1, 32) == 32 && read(rnd, r2, 32) == 32 && memcmp(r1, r2, 32) != 0);
    CHECK(stat("/dev/random", &st) == 0 && minor(st.st_rdev) == 8);
    char link[64];
    CHECK(readlink("/dev/stdout", link, sizeof link) > 0);
    printf("devices ok\n");
    return 0;
}
