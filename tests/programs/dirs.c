// mkdir, rmdir, getdents64 (sorted listing), chdir/fchdir/getcwd, and their errors.
#include "check.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }
static void list(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        char kind = e->d_type == DT_DIR ? 'd' : e->d_type == DT_REG ? 'f' : e->d_type == DT_LNK ? 'l' : '?';
        names[n] = malloc(300);
        snprintf(names[n], 300, "%c %s", kind, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) printf("  %s\n", names[i]);
}
int main(void) {
    char top[4096];
    CHECK(getcwd(top, sizeof top) != NULL);
    CHECK(mkdir("d", 0755) == 0);
    CHECK_ERR(mkdir("d", 0755), EEXIST);
    CHECK_ERR(mkdir("nope/x", 0755), ENOENT);
    CHECK(mkdir("d/sub", 0700) == 0);
    CHECK(close(open("d/file", O_CREAT | O_WRONLY, 0644)) == 0);
    CHECK(symlink("file", "d/link") == 0);
    printf("listing of d:\n");
    list("d");
    CHECK_ERR(rmdir("d"), ENOTEMPTY);
    CHECK_ERR(rmdir("d/file"), ENOTDIR);
    CHECK_ERR(unlink("d/sub"), EISDIR);
    CHECK_ERR(rmdir("."), EINVAL);
    CHECK_ERR(mkdir("d/file/x", 0755), ENOTDIR);
    CHECK(chdir("d/sub") == 0);
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(strncmp(cwd, top, strlen(top)) == 0 && strcmp(cwd + strlen(top), "/d/sub") == 0);
    CHECK(chdir("..") == 0);
    CHECK(getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd + strlen(top), "/d") == 0);
    int fd = open(top, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0 && fchdir(fd) == 0);
    CHECK(getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, top) == 0);
    CHECK_ERR(chdir("d/file"), ENOTDIR);
    CHECK_ERR(chdir("d/missing"), ENOENT);
    int ffd = open("d/file", O_RDONLY);
    CHECK_ERR(fchdir(ffd), ENOTDIR);
    char buf[64];
    CHECK_ERR(syscall(SYS_getdents64, ffd, buf, sizeof buf), ENOTDIR);
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK_ERR(syscall(SYS_getdents64, dfd, buf, 10), EINVAL);
    CHECK_ERR(read(dfd, buf, 1), EISDIR);
    /* Rewinding a directory lists it again. */
    int total = 0;
    long n;
    char big[4096];
    while ((n = syscall(SYS_getdents64, dfd, big, sizeof big)) > 0) total += n;
    CHECK(n == 0 && total > 0);
    CHECK(lseek(dfd, 0, SEEK_SET) == 0 && syscall(SYS_getdents64, dfd, big, sizeof big) == total);
    CHECK(unlink("d/link") == 0 && unlink("d/file") == 0 && rmdir("d/sub") == 0 && rmdir("d") == 0);
    CHECK_ERR(rmdir("d"), ENOENT);
    printf("dirs ok\n");
    return 0;
}
