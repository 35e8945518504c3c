// args: first second-arg 3 --flag=x
// argv arrives intact; the auxiliary vector has Linux's shape for a static executable.
#include "check.h"
#include <elf.h>
#include <sys/auxv.h>
int main(int argc, char **argv, char **envp) {
    CHECK(argc == 5 && argv[argc] == NULL);
    for (int i = 1; i < argc; i++) printf("argv[%d] = %s\n", i, argv[i]);
    /* The environment follows argv's terminating NULL, as the ABI lays the stack out. */
    CHECK(envp == argv + argc + 1);
    CHECK(getauxval(AT_PAGESZ) == 4096);
    CHECK(getauxval(AT_PHDR) != 0 && getauxval(AT_PHENT) == sizeof(Elf64_Phdr) && getauxval(AT_PHNUM) > 0);
    CHECK(getauxval(AT_ENTRY) != 0);
    CHECK(getauxval(AT_BASE) == 0);
    CHECK(getauxval(AT_UID) == (unsigned long)getuid() && getauxval(AT_EUID) == (unsigned long)geteuid());
    CHECK(getauxval(AT_GID) == (unsigned long)getgid() && getauxval(AT_EGID) == (unsigned long)getegid());
    CHECK(getauxval(AT_SECURE) == 0);
    CHECK(getauxval(AT_CLKTCK) == 100);
    const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
    CHECK(random != NULL);
    int nonzero = 0;
    for (int i = 0; i < 16; i++) nonzero |= random[i];
    CHECK(nonzero);
    const char *platform = (const char *)getauxval(AT_PLATFORM);
    CHECK(platform != NULL && strcmp(platform, "x86_64") == 0);
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    CHECK(execfn != NULL && strcmp(execfn, argv[0]) == 0);
    /* The program headers AT_PHDR names describe this executable: one covers main. */
    const Elf64_Phdr *ph = (const Elf64_Phdr *)getauxval(AT_PHDR);
    int found = 0;
    for (unsigned long i = 0; i < getauxval(AT_PHNUM); i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) && ph[i].p_vaddr <= (unsigned long)main &&
            (unsigned long)main < ph[i].p_vaddr + ph[i].p_memsz)
            found = 1;
    CHECK(found);
    printf("auxv ok\n");
    return 0;
}
