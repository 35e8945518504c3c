// File operation costs in one directory: `fileops DIR OP N` performs OP N times and prints
// nanoseconds per operation. OP is one of: open-close, stat, read-4k, read-1m, write-4k,
// write-1m. The file is made (and, for reads, filled) before the clock starts.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: fileops DIR OP N\n");
        return 2;
    }
    const char *op = argv[2];
    long n = atol(argv[3]);
    char path[4096];
    snprintf(path, sizeof path, "%s/fileops.%d", argv[1], getpid());
    size_t size = strstr(op, "1m") ? 1 << 20 : 4096;
    char *buf = malloc(size);
    memset(buf, 'x', size);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, size) != (ssize_t)size) {
        perror(path);
        return 1;
    }
    struct stat st;
    double start = now_ns();
    for (long i = 0; i < n; i++) {
        if (!strcmp(op, "open-close")) {
            int f = open(path, O_RDONLY);
            if (f < 0 || close(f) != 0) return 1;
        } else if (!strcmp(op, "stat")) {
            if (stat(path, &st) != 0) return 1;
        } else if (!strncmp(op, "read", 4)) {
            if (pread(fd, buf, size, 0) != (ssize_t)size) return 1;
        } else if (!strncmp(op, "write", 5)) {
            if (pwrite(fd, buf, size, 0) != (ssize_t)size) return 1;
        } else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
    }
    double per = (now_ns() - start) / n;
    close(fd);
    unlink(path);
    printf("%.1f\n", per);
    return 0;
}
