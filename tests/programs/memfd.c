// memfd_create: an anonymous file to read, write, truncate and map privately; flags and
// name checks as memfd_create(2) gives them.
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

int main(void) {
    int fd = memfd_create("scratch", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
    CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 && st.st_nlink == 0);
    CHECK(write(fd, "hello", 5) == 5);
    CHECK(ftruncate(fd, 8192) == 0 && fstat(fd, &st) == 0 && st.st_size == 8192);
    char buf[8] = {0};
    CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED && memcmp(p, "hello", 5) == 0 && p[8191] == 0);
    CHECK(munmap(p, 8192) == 0);
    int two = memfd_create("scratch", 0);
    CHECK(two >= 0 && two != fd && fcntl(two, F_GETFD) == 0);
    CHECK(fstat(two, &st) == 0 && st.st_size == 0);

    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[250] = 0;
    CHECK_ERR(memfd_create(longname, 0), EINVAL);
    longname[249] = 0;
    int ok = memfd_create(longname, 0);
    CHECK(ok >= 0);
    CHECK_ERR(memfd_create("x", 0x100), EINVAL);
    CHECK_ERR(memfd_create(BAD_PTR, 0), EFAULT);
    printf("memfd ok\n");
    return 0;
}
