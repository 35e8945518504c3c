// The loopback interface as programs discover it: getifaddrs (netlink RTM_GETLINK and
// RTM_GETADDR dumps), if_nametoindex/if_indextoname, the SIOCGIF* ioctls (on an inet and a
// unix socket), a raw netlink request for one link, and /proc/net/dev. Only `lo` is looked
// at: the host running the native side may have more interfaces.
#include "check.h"
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static void addresses(void) {
    struct ifaddrs *all;
    CHECK(getifaddrs(&all) == 0);
    int v4 = 0, v6 = 0, link = 0;
    for (struct ifaddrs *p = all; p; p = p->ifa_next) {
        if (strcmp(p->ifa_name, "lo") != 0)
            continue;
        CHECK((p->ifa_flags & (IFF_UP | IFF_LOOPBACK | IFF_RUNNING)) == (IFF_UP | IFF_LOOPBACK | IFF_RUNNING));
        if (!p->ifa_addr)
            continue;
        char host[64];
        switch (p->ifa_addr->sa_family) {
        case AF_INET:
            CHECK(getnameinfo(p->ifa_addr, sizeof(struct sockaddr_in), host, sizeof host, NULL, 0, NI_NUMERICHOST) == 0);
            CHECK(strcmp(host, "127.0.0.1") == 0);
            CHECK(((struct sockaddr_in *)p->ifa_netmask)->sin_addr.s_addr == htonl(0xff000000));
            v4++;
            break;
        case AF_INET6:
            CHECK(getnameinfo(p->ifa_addr, sizeof(struct sockaddr_in6), host, sizeof host, NULL, 0, NI_NUMERICHOST) == 0);
            CHECK(strcmp(host, "::1") == 0);
            v6++;
            break;
        case AF_PACKET:
            link++;
            break;
        }
    }
    freeifaddrs(all);
    /* Whether an unfiltered address dump includes IPv6 varies between kernel versions. */
    CHECK(v6 <= 1);
    printf("lo: %d link, %d IPv4 address\n", link, v4);
}

static void names(void) {
    CHECK(if_nametoindex("lo") == 1);
    char name[IF_NAMESIZE];
    CHECK(if_indextoname(1, name) != NULL && strcmp(name, "lo") == 0);
    CHECK(if_nametoindex("no-such-if0") == 0);
    printf("lo is interface 1\n");
}

static void ioctls(int s) {
    struct ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &r) == 0);
    CHECK((r.ifr_flags & (IFF_UP | IFF_LOOPBACK | IFF_RUNNING)) == (IFF_UP | IFF_LOOPBACK | IFF_RUNNING));
    CHECK(ioctl(s, SIOCGIFMTU, &r) == 0 && r.ifr_mtu == 65536);
    CHECK(ioctl(s, SIOCGIFINDEX, &r) == 0 && r.ifr_ifindex == 1);
    r.ifr_ifindex = 1;
    CHECK(ioctl(s, SIOCGIFNAME, &r) == 0 && strcmp(r.ifr_name, "lo") == 0);
    strcpy(r.ifr_name, "no-such-if0");
    CHECK_ERR(ioctl(s, SIOCGIFFLAGS, &r), ENODEV);
}

static void ifreqs(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    ioctls(s);
    struct ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFADDR, &r) == 0);
    CHECK(((struct sockaddr_in *)&r.ifr_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(ioctl(s, SIOCGIFNETMASK, &r) == 0);
    CHECK(((struct sockaddr_in *)&r.ifr_netmask)->sin_addr.s_addr == htonl(0xff000000));
    /* SIOCGIFCONF: the IPv4 interfaces; lo among them. */
    struct ifreq list[16];
    struct ifconf conf = {.ifc_len = sizeof list, .ifc_req = list};
    CHECK(ioctl(s, SIOCGIFCONF, &conf) == 0 && conf.ifc_len > 0);
    int found = 0;
    for (int i = 0; i < conf.ifc_len / (int)sizeof(struct ifreq); i++)
        found |= strcmp(list[i].ifr_name, "lo") == 0;
    CHECK(found);
    close(s);
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    ioctls(u);
    close(u);
    printf("ifreq ioctls ok\n");
}

static void netlink(void) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    CHECK(s >= 0);
    struct sockaddr_nl me = {.nl_family = AF_NETLINK};
    CHECK(bind(s, (struct sockaddr *)&me, sizeof me) == 0);
    socklen_t len = sizeof me;
    CHECK(getsockname(s, (struct sockaddr *)&me, &len) == 0 && len == sizeof me && me.nl_pid != 0);
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 42},
        .i = {.ifi_family = AF_UNSPEC, .ifi_index = 1},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    CHECK(sendto(s, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) == sizeof req);
    static char buf[8192];
    struct sockaddr_nl from;
    len = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    CHECK(n > 0 && from.nl_pid == 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    CHECK(NLMSG_OK(h, (size_t)n) && h->nlmsg_type == RTM_NEWLINK && h->nlmsg_seq == 42);
    CHECK(h->nlmsg_pid == me.nl_pid);
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    CHECK(ifi->ifi_index == 1 && (ifi->ifi_flags & IFF_LOOPBACK));
    int named = 0;
    int alen = IFLA_PAYLOAD(h);
    for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen))
        if (a->rta_type == IFLA_IFNAME)
            named = strcmp(RTA_DATA(a), "lo") == 0;
    CHECK(named);
    close(s);
    printf("netlink RTM_GETLINK ok\n");
}

static void proc_net_dev(void) {
    FILE *f = fopen("/proc/net/dev", "r");
    CHECK(f != NULL);
    char line[512];
    int lo = 0;
    while (fgets(line, sizeof line, f))
        lo |= strncmp(line + strspn(line, " "), "lo:", 3) == 0;
    fclose(f);
    CHECK(lo);
    printf("/proc/net/dev lists lo\n");
}

int main(void) {
    addresses();
    names();
    ifreqs();
    netlink();
    proc_net_dev();
    return 0;
}
