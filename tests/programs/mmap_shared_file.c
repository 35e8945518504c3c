// MAP_SHARED mappings of files in memory (tmpfs, memfd, /dev/shm): the mapping and the file's
// read/write see the same bytes, across fork; pages past the end are SIGBUS until the file
// grows; a POSIX semaphore in shared memory works between processes.
#include "check.h"
#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/wait.h>

static void coherent(int fd, const char *what) {
    CHECK(ftruncate(fd, 8192) == 0);
    char *map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(map != MAP_FAILED);
    /* Through the mapping, seen by read. */
    memcpy(map + 4096, "mapped", 6);
    char buf[16] = {0};
    CHECK(pread(fd, buf, 6, 4096) == 6 && memcmp(buf, "mapped", 6) == 0);
    /* Through write, seen by the mapping. */
    CHECK(pwrite(fd, "written", 7, 100) == 7);
    CHECK(memcmp(map + 100, "written", 7) == 0);
    /* A child's writes through the mapping reach the parent's mapping and the file. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        memcpy(map + 200, "child", 5);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(memcmp(map + 200, "child", 5) == 0);
    CHECK(pread(fd, buf, 5, 200) == 5 && memcmp(buf, "child", 5) == 0);
    CHECK(msync(map, 8192, MS_SYNC) == 0);
    /* A second mapping of the same file shares the pages too. */
    char *again = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096);
    CHECK(again != MAP_FAILED && memcmp(again, "mapped", 6) == 0);
    CHECK(munmap(again, 4096) == 0 && munmap(map, 8192) == 0);
    /* The data outlives the mapping. */
    CHECK(pread(fd, buf, 6, 4096) == 6 && memcmp(buf, "mapped", 6) == 0);
    printf("%s: mapping, read/write and a child's writes agree\n", what);
}

int main(void) {
    int fd = open("shared.bin", O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    coherent(fd, "file");
    close(fd);

    fd = (int)syscall(SYS_memfd_create, "moat", 0);
    CHECK(fd >= 0);
    coherent(fd, "memfd");
    close(fd);

    fd = open("/dev/shm/moat-test", O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    coherent(fd, "/dev/shm");
    CHECK(unlink("/dev/shm/moat-test") == 0);
    close(fd);

    /* A process-shared semaphore in a shared file mapping hands a token to a child. */
    fd = open("sem.bin", O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, sizeof(sem_t)) == 0);
    sem_t *sem = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(sem != MAP_FAILED && sem_init(sem, 1, 0) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(sem_wait(sem) == 0 ? 0 : 1);
    CHECK(sem_post(sem) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("sem_t in a shared file mapping: posted by the parent, taken by the child\n");
    return 0;
}
