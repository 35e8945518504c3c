// symlink, readlink, lstat vs stat, hard links, rename (replace, NOREPLACE, EXCHANGE), ELOOP.
#include "check.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && close(fd) == 0);
}
static void expect(const char *path, const char *text) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == (ssize_t)strlen(text) && close(fd) == 0);
    CHECK(strcmp(buf, text) == 0);
}
int main(void) {
    put("a", "A");
    CHECK(symlink("a", "s") == 0);
    CHECK_ERR(symlink("a", "s"), EEXIST);
    char buf[64];
    CHECK(readlink("s", buf, sizeof buf) == 1 && buf[0] == 'a');
    CHECK(readlink("s", buf, 0) == -1 && errno == EINVAL);
    CHECK_ERR(readlink("a", buf, sizeof buf), EINVAL);
    struct stat st, lst;
    CHECK(stat("s", &st) == 0 && lstat("s", &lst) == 0);
    CHECK(S_ISREG(st.st_mode) && S_ISLNK(lst.st_mode) && lst.st_size == 1);
    expect("s", "A");
    CHECK(symlink("loop2", "loop1") == 0 && symlink("loop1", "loop2") == 0);
    CHECK_ERR(open("loop1", O_RDONLY), ELOOP);
    CHECK_ERR(open("s", O_RDONLY | O_NOFOLLOW), ELOOP);
    CHECK_ERR(stat("a/", &st), ENOTDIR);
    CHECK(symlink("nowhere", "dangling") == 0);
    CHECK_ERR(stat("dangling", &st), ENOENT);
    CHECK(lstat("dangling", &st) == 0);

    CHECK(link("a", "h") == 0);
    CHECK(stat("a", &st) == 0 && st.st_nlink == 2);
    CHECK(stat("h", &lst) == 0 && lst.st_ino == st.st_ino);
    CHECK_ERR(link("a", "h"), EEXIST);
    CHECK(mkdir("dir", 0755) == 0);
    CHECK_ERR(link("dir", "dir2"), EPERM);
    CHECK(unlink("h") == 0 && stat("a", &st) == 0 && st.st_nlink == 1);

    put("b", "B");
    CHECK(rename("a", "b") == 0);
    expect("b", "A");
    CHECK_ERR(stat("a", &st), ENOENT);
    put("c", "C");
    CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, "c", AT_FDCWD, "b", RENAME_NOREPLACE), EEXIST);
    CHECK(syscall(SYS_renameat2, AT_FDCWD, "c", AT_FDCWD, "b", RENAME_EXCHANGE) == 0);
    expect("b", "C");
    expect("c", "A");
    CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, "c", AT_FDCWD, "zz", RENAME_EXCHANGE), ENOENT);
    CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, "c", AT_FDCWD, "b", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
    CHECK(mkdir("dir/sub", 0755) == 0);
    CHECK_ERR(rename("dir", "dir/sub/x"), EINVAL);
    CHECK_ERR(rename("c", "dir"), EISDIR);
    CHECK_ERR(rename("dir", "c"), ENOTDIR);
    CHECK(mkdir("empty", 0755) == 0);
    CHECK(rename("empty", "dir/sub") == 0);
    CHECK_ERR(rename("dir", "dir/sub/.."), EBUSY);
    CHECK(mkdir("full", 0755) == 0 && mkdir("full/x", 0755) == 0);
    CHECK_ERR(rename("dir", "full"), ENOTEMPTY);
    CHECK(rename("c", "c") == 0);
    CHECK_ERR(rename("missing", "q"), ENOENT);
    CHECK(rename("c", "dir/moved") == 0);
    expect("dir/moved", "A");
    CHECK(unlink("dir/moved") == 0 && rmdir("dir/sub") == 0 && rmdir("dir") == 0 && rmdir("full/x") == 0 && rmdir("full") == 0);
    CHECK(unlink("b") == 0 && unlink("s") == 0 && unlink("loop1") == 0 && unlink("loop2") == 0 && unlink("dangling") == 0);
    /* O_CREAT through a dangling symlink creates its target; O_EXCL refuses the link itself,
     * O_NOFOLLOW does not follow it. */
    CHECK(symlink("made-by-link", "dangling") == 0);
    CHECK_ERR(open("dangling", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
    CHECK_ERR(open("dangling", O_CREAT | O_NOFOLLOW | O_WRONLY, 0644), ELOOP);
    int made = open("dangling", O_CREAT | O_WRONLY, 0644);
    CHECK(made >= 0 && close(made) == 0);
    CHECK(lstat("made-by-link", &st) == 0 && S_ISREG(st.st_mode));
    CHECK(symlink("no-such-dir/x", "dangling2") == 0);
    CHECK_ERR(open("dangling2", O_CREAT | O_WRONLY, 0644), ENOENT);
    printf("links ok\n");
    return 0;
}
