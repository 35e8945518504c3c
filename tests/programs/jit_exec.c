// Code written into anonymous memory runs once the page is made executable.
#include "check.h"
#include <sys/mman.h>
int main(void) {
    /* mov eax, 42; ret  then  lea eax, [rdi+rdi]; ret */
    static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3, 0x8d, 0x04, 0x3f, 0xc3};
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memcpy(p, code, sizeof code);
    CHECK(mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0);
    int (*answer)(void) = (int (*)(void))p;
    int (*twice)(int) = (int (*)(int))(p + 6);
    printf("answer %d, twice 21 is %d\n", answer(), twice(21));
    /* Rewrite it: writable again, new code, executable again. */
    CHECK(mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
    p[1] = 7;
    CHECK(mprotect(p, 4096, PROT_EXEC | PROT_READ) == 0);
    printf("answer now %d\n", answer());
    /* A mapping that is writable and executable at once works too. */
    unsigned char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(w != MAP_FAILED);
    memcpy(w, code, sizeof code);
    w[1] = 99;
    printf("rwx %d\n", ((int (*)(void))w)());
    return 0;
}
