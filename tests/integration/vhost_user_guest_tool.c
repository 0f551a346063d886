/* SPDX-License-Identifier: MIT */
/*
 * vhost_user_guest_tool: the bits of ethtool a busybox guest lacks.
 *
 *   vu-tool channels IFACE [N]   show (and with N set) the combined channel count
 *                                (ethtool -l / ethtool -L IFACE combined N)
 *   vu-tool udp ADDR PORT COUNT CPU
 *                                pinned to CPU, send COUNT 256-byte UDP datagrams to
 *                                ADDR:PORT (an echo server), at most 32 unanswered at a time,
 *                                and count the echoes; exit 0 when at least half came back.
 *                                Sent from a pinned process, a datagram leaves on the
 *                                transmit queue XPS maps to that CPU (virtio_net maps CPU i
 *                                to queue i), and a multi-queue tap sends the echo back on
 *                                the queue the flow arrived on.
 *   vu-tool stats IFACE          the driver's own counters on one line, NAME=VALUE
 *                                (ethtool -S; virtio_net counts kicks per queue there)
 *
 * Built static by the integration tests and put into the guest's initramfs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int ethtool(int s, const char *ifname, void *cmd)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    ifr.ifr_data = cmd;
    return ioctl(s, SIOCETHTOOL, &ifr);
}

static int channels(const char *ifname, const char *want)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
    if (ethtool(s, ifname, &ch) < 0) {
        fprintf(stderr, "ETHTOOL_GCHANNELS %s: %s\n", ifname, strerror(errno));
        return 1;
    }
    printf("%s: combined %u (max %u)\n", ifname, ch.combined_count, ch.max_combined);
    if (!want)
        return 0;
    unsigned n = (unsigned)strtoul(want, NULL, 0);
    if (n == 0 || n > ch.max_combined) {
        fprintf(stderr, "%s: cannot set %u combined channels (max %u)\n", ifname, n,
                ch.max_combined);
        return 1;
    }
    ch.cmd = ETHTOOL_SCHANNELS;
    ch.combined_count = n;
    if (ethtool(s, ifname, &ch) < 0) {
        fprintf(stderr, "ETHTOOL_SCHANNELS %s combined %u: %s\n", ifname, n, strerror(errno));
        return 1;
    }
    struct ethtool_channels now = {.cmd = ETHTOOL_GCHANNELS};
    if (ethtool(s, ifname, &now) < 0 || now.combined_count != n) {
        fprintf(stderr, "%s: combined is %u after setting %u\n", ifname, now.combined_count, n);
        return 1;
    }
    printf("%s: combined set to %u\n", ifname, n);
    close(s);
    return 0;
}

static int udp(const char *addr, const char *port, const char *count, const char *cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(cpu), &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        perror("sched_setaffinity");
        return 1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", addr);
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("udp socket");
        return 1;
    }
    long n = atol(count), sent = 0, got = 0, skipped = 0;
    char buf[256];
    memset(buf, 0x5a, sizeof(buf));
    while (sent < n) {
        if (sent - got - skipped < 32) {
            if (send(s, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf))
                sent++;
            continue;
        }
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) {
            skipped += 16; /* echoes lost: move the window on */
            continue;
        }
        while (recv(s, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            got++;
    }
    struct pollfd p = {.fd = s, .events = POLLIN};
    while (got < sent && poll(&p, 1, 500) > 0)
        while (recv(s, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            got++;
    printf("udp port=%s cpu=%s sent=%ld echoed=%ld\n", port, cpu, sent, got);
    close(s);
    return got * 2 >= n ? 0 : 1;
}

static int stats(const char *ifname)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    struct {
        struct ethtool_sset_info hdr;
        uint32_t len;
    } si = {.hdr = {.cmd = ETHTOOL_GSSET_INFO, .sset_mask = 1ull << ETH_SS_STATS}};
    if (ethtool(s, ifname, &si) < 0 || !(si.hdr.sset_mask & (1ull << ETH_SS_STATS))) {
        fprintf(stderr, "ETHTOOL_GSSET_INFO %s: %s\n", ifname, strerror(errno));
        close(s);
        return 1;
    }
    uint32_t n = si.len;
    struct ethtool_gstrings *names = calloc(1, sizeof(*names) + (size_t)n * ETH_GSTRING_LEN);
    struct ethtool_stats *vals = calloc(1, sizeof(*vals) + (size_t)n * sizeof(uint64_t));
    int rc = 1;
    if (!names || !vals)
        goto out;
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_STATS;
    names->len = n;
    vals->cmd = ETHTOOL_GSTATS;
    vals->n_stats = n;
    if (ethtool(s, ifname, names) < 0 || ethtool(s, ifname, vals) < 0) {
        fprintf(stderr, "ETHTOOL_GSTRINGS/GSTATS %s: %s\n", ifname, strerror(errno));
        goto out;
    }
    for (uint32_t i = 0; i < n && i < vals->n_stats; i++) {
        char name[ETH_GSTRING_LEN + 1];
        memcpy(name, names->data + (size_t)i * ETH_GSTRING_LEN, ETH_GSTRING_LEN);
        name[ETH_GSTRING_LEN] = 0;
        printf("%s%s=%llu", i ? " " : "", name, (unsigned long long)vals->data[i]);
    }
    printf("\n");
    rc = 0;
out:
    free(names);
    free(vals);
    close(s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "stats") == 0)
        return stats(argv[2]);
    if (argc >= 6 && strcmp(argv[1], "udp") == 0)
        return udp(argv[2], argv[3], argv[4], argv[5]);
    if (argc >= 3 && strcmp(argv[1], "channels") == 0)
        return channels(argv[2], argc >= 4 ? argv[3] : NULL);
    fprintf(stderr, "usage: %s channels IFACE [N] | udp ADDR PORT COUNT CPU | stats IFACE\n", argv[0]);
    return 2;
}
