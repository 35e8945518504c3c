// Private file mappings share the file's pages until written (Moat's page cache): a write
// gives the writer its own copy (the file, other mappings and a forked child keep theirs),
// MADV_DONTNEED brings the file's bytes back, mremap keeps mapping the same file offsets,
// /proc/self/maps shows each mapping's file offset and inode, a program's own segments too,
// and a file rewritten by the sandbox is mapped afresh.
#include "check.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { PG = 4096, NPAGES = 8 };

static void fill(const char *name) {
    int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char page[PG];
    for (int i = 0; i < NPAGES; i++) {
        memset(page, 'A' + i, sizeof page);
        CHECK(write(fd, page, sizeof page) == sizeof page);
    }
    CHECK(close(fd) == 0);
}

/* The offset and inode /proc/self/maps shows for the mapping that contains `addr`. */
static int maps_entry(void *addr, unsigned long *offset, unsigned long *ino) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8], dev[16];
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, offset, dev, ino) == 6 &&
            (unsigned long)addr >= lo && (unsigned long)addr < hi) {
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void check_file(const char *name) {
    fill(name);
    int fd = open(name, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);

    char *a = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *b = mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE, fd, 2 * PG);
    CHECK(a != MAP_FAILED && b != MAP_FAILED);
    for (int i = 0; i < NPAGES; i++)
        CHECK(a[i * PG] == 'A' + i && a[i * PG + PG - 1] == 'A' + i);
    CHECK(b[0] == 'C' && b[3 * PG] == 'F');

    unsigned long off, ino;
    CHECK(maps_entry(b + PG, &off, &ino) && off == 2 * PG && ino == st.st_ino);

    /* A write is the writer's alone. */
    a[2 * PG] = 'x';
    char c;
    CHECK(pread(fd, &c, 1, 2 * PG) == 1 && c == 'C');
    CHECK(b[0] == 'C');

    /* A forked child sees the parent's copy; its own writes stay its own. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (a[2 * PG] != 'x' || a[3 * PG] != 'D')
            _exit(1);
        a[3 * PG] = 'y';
        a[2 * PG] = 'z';
        _exit(b[PG] == 'D' ? 0 : 2);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(a[2 * PG] == 'x' && a[3 * PG] == 'D');

    /* Dropping a written page brings back the file's bytes, not zeros. */
    CHECK(madvise(a + 2 * PG, PG, MADV_DONTNEED) == 0);
    CHECK(a[2 * PG] == 'C' && a[2 * PG + 1] == 'C');

    /* Moved and grown, the mapping maps the same file offsets (pages never touched
       before included). */
    char *m = mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE, fd, 4 * PG);
    CHECK(m != MAP_FAILED);
    char *moved = mremap(m, 2 * PG, 4 * PG, MREMAP_MAYMOVE);
    CHECK(moved != MAP_FAILED);
    CHECK(moved[0] == 'E' && moved[PG] == 'F' && moved[2 * PG] == 'G' && moved[3 * PG] == 'H');
    CHECK(maps_entry(moved + 3 * PG, &off, &ino) && off == 4 * PG && ino == st.st_ino);

    /* A part unmapped from the middle leaves both sides mapping their own offsets. */
    CHECK(munmap(a + 4 * PG, PG) == 0);
    CHECK(a[3 * PG] == 'D' && a[5 * PG] == 'F');
    CHECK(maps_entry(a + 5 * PG, &off, &ino) && off == 5 * PG);

    /* The file rewritten in place: a new mapping sees the new bytes. */
    char page[PG];
    memset(page, 'q', sizeof page);
    CHECK(pwrite(fd, page, sizeof page, 6 * PG) == PG);
    char *n = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 6 * PG);
    CHECK(n != MAP_FAILED && n[0] == 'q' && n[PG - 1] == 'q');

    CHECK(munmap(a, NPAGES * PG) == 0 && munmap(b, 4 * PG) == 0);
    CHECK(munmap(moved, 4 * PG) == 0 && munmap(n, PG) == 0);
    CHECK(close(fd) == 0);
    CHECK(unlink(name) == 0);
}

int main(int argc, char **argv) {
    (void)argc;
    /* On a directory of the host served by the gofer (the working directory), and on
       the sandbox's own /tmp. */
    check_file("data");
    check_file("/tmp/moat-mmap-private-cache");

    /* The program's own segments are file mappings of it, at their file offsets. */
    unsigned long off, ino;
    struct stat self;
    CHECK(stat("/proc/self/exe", &self) == 0);
    CHECK(maps_entry((void *)&main, &off, &ino) && ino == self.st_ino);
    CHECK(off % PG == 0 && off > 0);

    /* A read-only file of the root, written privately: the file stays as it was. */
    int fd = open(argv[0], O_RDONLY);
    CHECK(fd >= 0);
    char *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED && memcmp(p, "\177ELF", 4) == 0);
    p[1] = 'X';
    char head[4];
    CHECK(pread(fd, head, 4, 0) == 4 && memcmp(head, "\177ELF", 4) == 0);
    printf("private file mappings ok\n");
    return 0;
}
