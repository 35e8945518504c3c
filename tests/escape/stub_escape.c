/* Moat-only (crates/moat/tests/stub_escape.rs): what an application trying to escape would
 * do. The stub's code page (the top page of the address space) is readable and executable by
 * the application, and the stub's seccomp filter lets its own system calls through when they
 * are issued from that page. This program finds every `syscall` instruction there and jumps to
 * each one with the registers of a raw host system call that would leave a trace on the host:
 * creating the file argv[1], creating the directory argv[2]; and a getpid, which would answer
 * with a host pid. Each attempt runs in a child process; whatever happens to the child (killed
 * when the filter refuses the call, or the call served by Moat inside the sandbox and the
 * stub's code then trapping or looping until an alarm), the host must see nothing: the test
 * checks the two paths do not exist on the host afterwards.
 *
 * argv: HOST_FILE HOST_DIR */
#include "check.h"
#include <fcntl.h>
#include <sys/time.h>
#include <sys/wait.h>

#define STUB_PAGE 0x7fffffffe000UL
#define MAX_SITES 12

/* Jump to `site` with a system call's registers set; never returns. */
static void __attribute__((noreturn))
jump(unsigned long site, long nr, long a0, long a1, long a2, long a3) {
    __asm__ volatile("mov %[a3], %%r10\n\t"
                     "jmp *%[site]"
                     :
                     : "a"(nr), "D"(a0), "S"(a1), "d"(a2), [a3] "r"(a3),
                       [site] "r"(site)
                     : "r10", "memory");
    __builtin_unreachable();
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    const unsigned char *page = (const unsigned char *)STUB_PAGE;
    int sites = 0, killed = 0, other = 0;
    for (int i = 0; i + 1 < 4096 && sites < MAX_SITES; i++) {
        if (page[i] != 0x0f || page[i + 1] != 0x05)
            continue;
        sites++;
        for (int which = 0; which < 3; which++) {
            fflush(stdout);
            pid_t pid = fork();
            CHECK(pid >= 0);
            if (pid == 0) {
                /* Whatever the stub's code does after the call, end within 200 ms. */
                struct itimerval t = {.it_value = {.tv_usec = 200000}};
                setitimer(ITIMER_REAL, &t, NULL);
                unsigned long site = STUB_PAGE + i;
                if (which == 0)
                    jump(site, SYS_openat, AT_FDCWD, (long)argv[1],
                         O_CREAT | O_WRONLY, 0600);
                if (which == 1)
                    jump(site, SYS_mkdirat, AT_FDCWD, (long)argv[2], 0700, 0);
                jump(site, SYS_getpid, 0, 0, 0, 0);
            }
            int status;
            CHECK(waitpid(pid, &status, 0) == pid);
            if (WIFSIGNALED(status))
                killed++;
            else
                other++;
        }
    }
    CHECK(sites > 0);
    printf("%d sites, %d attempts killed, %d ended otherwise\n", sites, killed,
           other);
    return 0;
}
