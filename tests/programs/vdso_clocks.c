// The vDSO: AT_SYSINFO_EHDR names an ELF image exporting __vdso_clock_gettime,
// __vdso_gettimeofday, __vdso_time and __vdso_getcpu (version LINUX_2.6), mapped as [vdso] in
// /proc/self/maps. Its clocks agree with the system calls (no going back between the two,
// either way), never go backwards, and a sleep until an absolute time ends at or after it.
#include "check.h"
#include <elf.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

/* Look a symbol up in the vDSO's dynamic symbol table (through DT_HASH or DT_GNU_HASH's
 * symbol count is more than we need: walk the table up to the string table). */
static void *vdso_sym(const char *name) {
    const unsigned char *base = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    long load = 0;
    const Elf64_Dyn *dyn = NULL;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0)
            load = (long)base - (long)ph[i].p_vaddr;
        if (ph[i].p_type == PT_DYNAMIC)
            dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
    }
    CHECK(dyn != NULL);
    const Elf64_Sym *syms = NULL;
    const char *strs = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB)
            syms = (const Elf64_Sym *)(dyn->d_un.d_ptr + load);
        if (dyn->d_tag == DT_STRTAB)
            strs = (const char *)(dyn->d_un.d_ptr + load);
    }
    CHECK(syms != NULL && strs != NULL && (const char *)syms < strs);
    for (const Elf64_Sym *s = syms; (const char *)s < strs; s++)
        if (s->st_name && strcmp(strs + s->st_name, name) == 0 && s->st_shndx != SHN_UNDEF)
            return (void *)(s->st_value + load);
    return NULL;
}

int main(void) {
    CHECK(getauxval(AT_SYSINFO_EHDR) != 0);
    const unsigned char *base = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
    CHECK(memcmp(base, ELFMAG, SELFMAG) == 0);
    int (*vgettime)(clockid_t, struct timespec *) = vdso_sym("__vdso_clock_gettime");
    int (*vgettimeofday)(struct timeval *, void *) = vdso_sym("__vdso_gettimeofday");
    time_t (*vtime)(time_t *) = vdso_sym("__vdso_time");
    long (*vgetcpu)(unsigned *, unsigned *, void *) = vdso_sym("__vdso_getcpu");
    CHECK(vgettime && vgettimeofday && vtime && vgetcpu);
    printf("vdso: an ELF image with clock_gettime, gettimeofday, time, getcpu\n");

    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, maps))
        if (strstr(line, "[vdso]") && strstr(line, "r-xp"))
            found = 1;
    fclose(maps);
    CHECK(found);
    printf("vdso: mapped as [vdso], read and execute\n");

    /* Never backwards, by the vDSO and between it and the system call. */
    clockid_t clocks[] = {CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME};
    for (int c = 0; c < 3; c++) {
        struct timespec a, b, s;
        for (int i = 0; i < 20000; i++) {
            CHECK(vgettime(clocks[c], &a) == 0);
            CHECK(vgettime(clocks[c], &b) == 0);
            CHECK(ns(b) >= ns(a));
        }
        for (int i = 0; i < 200; i++) {
            CHECK(vgettime(clocks[c], &a) == 0);
            CHECK(syscall(SYS_clock_gettime, clocks[c], &s) == 0);
            CHECK(vgettime(clocks[c], &b) == 0);
            CHECK(ns(s) >= ns(a) && ns(b) >= ns(s));
            CHECK(ns(b) - ns(a) < 1000000000LL);
        }
    }
    printf("clocks: monotonic in the vDSO and against the system call\n");

    /* The other calls agree with clock_gettime. */
    struct timespec r;
    struct timeval tv;
    CHECK(vgettime(CLOCK_REALTIME, &r) == 0 && vgettimeofday(&tv, NULL) == 0);
    long long diff = tv.tv_sec * 1000000LL + tv.tv_usec - ns(r) / 1000;
    CHECK(diff >= 0 && diff < 1000000);
    time_t t1 = 0, t0 = vtime(&t1);
    /* time() may read the coarse clock, a tick behind: it can still show the last second. */
    CHECK(t0 == t1 && t0 >= r.tv_sec - 1 && t0 - r.tv_sec <= 1);
    CHECK(vgettime(12345, &r) == -EINVAL); /* a bad clock goes to the kernel: -errno */
    unsigned cpu = 99, node = 99, scpu = 98, snode = 98;
    CHECK(vgetcpu(&cpu, &node, NULL) == 0 && syscall(SYS_getcpu, &scpu, &snode, NULL) == 0);
    CHECK(node == snode && cpu < CPU_SETSIZE);
    printf("gettimeofday, time, getcpu agree; bad clocks are EINVAL\n");

    /* Sleeping until an absolute time ends at or after it, by the vDSO's clock. */
    for (int i = 0; i < 20; i++) {
        struct timespec now, until, after;
        CHECK(clock_gettime(CLOCK_MONOTONIC, &now) == 0);
        long long target = ns(now) + 1000000; /* 1 ms */
        until.tv_sec = target / 1000000000LL;
        until.tv_nsec = target % 1000000000LL;
        CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
        CHECK(clock_gettime(CLOCK_MONOTONIC, &after) == 0 && ns(after) >= target);
        CHECK(clock_gettime(CLOCK_REALTIME, &now) == 0);
        target = ns(now) + 1000000;
        until.tv_sec = target / 1000000000LL;
        until.tv_nsec = target % 1000000000LL;
        CHECK(clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL) == 0);
        CHECK(clock_gettime(CLOCK_REALTIME, &after) == 0 && ns(after) >= target);
    }
    printf("absolute sleeps end at or after their time\n");
    return 0;
}
