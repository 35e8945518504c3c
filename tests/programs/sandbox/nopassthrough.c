// Moat-only: the program sees Moat's kernel, not the host's. argv[1] is the number of a system
// call Moat does not implement; it must fail with ENOSYS (twice; the log names it once). The
// network is the sandbox's own: only loopback, no route out, no raw sockets.
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
int main(int argc, char **argv) {
    CHECK(argc == 2);
    CHECK(getpid() == 1);
    CHECK(syscall(SYS_gettid) == 1);
    CHECK(getppid() == 0);
    struct utsname u;
    CHECK(uname(&u) == 0);
    CHECK(strstr(u.release, "moat") != NULL);
    long nr = atol(argv[1]);
    CHECK_ERR(syscall(nr, 0, 0, 0, 0, 0, 0), ENOSYS);
    CHECK_ERR(syscall(nr, 0, 0, 0, 0, 0, 0), ENOSYS);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    CHECK(inet_pton(AF_INET, "192.0.2.1", &a.sin_addr) == 1);
    CHECK_ERR(connect(s, (struct sockaddr *)&a, sizeof a), ENETUNREACH);
    CHECK_ERR(sendto(socket(AF_INET, SOCK_DGRAM, 0), "x", 1, 0, (struct sockaddr *)&a, sizeof a),
              ENETUNREACH);
    CHECK_ERR(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), EPERM);
    printf("inside moat\n");
    return 0;
}
