/* SPDX-License-Identifier: MIT */
/*
 * net_e2e: end-to-end tests of the virtio-net data path with the Linux network stack.
 *
 * Our driver-side helper acts as the guest (with the tiny stack in net_guest.c), the
 * virtio-net device model and a backend (tap, AF_PACKET, loopback) carry its frames.
 * The network-namespace topologies are set up by the shell wrappers (net_tap.sh,
 * net_packet.sh); this program runs inside them.
 *
 *   net_e2e tap-ping    --ifname T --guest-ip G --host-ip H [--count N] [--stat-if I]
 *   net_e2e packet-ping --ifname V --guest-ip G --host-ip H [--count N] [--stat-if PEER]
 *       ARP, then N ICMP echo round trips guest -> kernel, then `ping -c N` kernel -> guest;
 *       counted on both ends (guest counters, the kernel's /proc/net/snmp ICMP counters,
 *       its neighbour table, and the interface statistics).
 *   net_e2e tap-tso|packet-tso --ifname T --guest-ip G --peer-ip P --peer-mac M
 *                              --peer-if I [--peer-netns NS] [--bytes B]
 *       one TCP frame of B bytes (default 65495: a 64 KiB IP packet) with GSO_TCPV4 metadata
 *       leaves the guest; a packet socket on the veth peer I counts MTU-sized segments with
 *       valid checksums whose payload, in sequence order, is what the guest sent.
 *   net_e2e tap-gro|packet-gro --ifname T --guest-ip G --host-ip H [--bytes B]
 *                              [--sender-netns NS] [--stat-if I]
 *       a kernel TCP sender (in this namespace, or in NS: then its traffic is received,
 *       GRO'd and forwarded by this namespace's kernel) streams B bytes (default 1 MiB) to the guest's
 *       one-connection TCP receiver; frames must arrive as GSO super-frames (gso_type TCPV4,
 *       longer than the MTU) in mergeable buffers, and the stream must match byte for byte
 *       (and by FNV-1a hash on both ends).
 *   net_e2e loopback [--frames N]
 *       N frames (default 10^6) of mixed sizes round the loopback backend, each checked.
 *
 * Exit status: 0 pass, 1 fail, 2 usage.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include "net_guest.h"
#include "net_local.h"
#include "virtio/net_backend.h"
#include "virtio/net_defs.h"
#include "virtio/status.h"

#define FEAT(b) vio_feature_bit(b)
#define TSO_PORT 5002
#define GRO_PORT 5001

static const uint8_t GUEST_MAC[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

struct opts {
    const char *ifname, *stat_if, *peer_if, *peer_netns, *sender_netns;
    uint32_t guest_ip, host_ip, peer_ip;
    uint8_t peer_mac[6];
    bool have_peer_mac;
    unsigned long count, bytes, frames;
    uint16_t mtu;
};

static int failures;

#define CHECK(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL: " __VA_ARGS__);                                                           \
            printf("  [%s]\n", #cond);                                                             \
        }                                                                                          \
    } while (0)

static uint32_t parse_ip(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        fprintf(stderr, "net_e2e: bad IPv4 address '%s'\n", s);
        exit(2);
    }
    return ntohl(a.s_addr);
}

static void parse_mac(const char *s, uint8_t m[6])
{
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
        fprintf(stderr, "net_e2e: bad MAC '%s'\n", s);
        exit(2);
    }
    for (int i = 0; i < 6; i++)
        m[i] = (uint8_t)v[i];
}

static int open_backend(const char *kind, const struct opts *o, struct vio_net_backend *be)
{
    struct vio_net_backend_config c = {
        .struct_size = sizeof(c),
        .ifname = o->ifname,
        .promisc = true,
        .log = vio_log_stderr,
    };
    int r;
    if (!strcmp(kind, "tap"))
        r = vio_net_tap_open(&c, be);
    else
        r = vio_net_packet_open(&c, be);
    if (r < 0)
        fprintf(stderr, "net_e2e: open %s backend on '%s': %s\n", kind, o->ifname ? o->ifname : "",
                strerror(-r));
    return r;
}

static int read_sys(const char *ifname, const char *attr, char *buf, size_t cap)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, attr);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    int r = fgets(buf, (int)cap, f) ? 0 : -EIO;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return r;
}

/*
 * The kernel applies carrier changes asynchronously (linkwatch, up to a second): a tap
 * gets its carrier when the backend attaches, and only then does a bridge port start
 * forwarding. Wait for both, so the first frames are not dropped.
 */
static void wait_iface_ready(struct guest *g, const char *ifname)
{
    uint64_t deadline = ng_now_ms() + 5000;
    char st[64];
    for (;;) {
        bool up = read_sys(ifname, "operstate", st, sizeof(st)) == 0 &&
                  (!strcmp(st, "up") || !strcmp(st, "unknown"));
        bool fwd = read_sys(ifname, "brport/state", st, sizeof(st)) != 0 || !strcmp(st, "3");
        if ((up && fwd) || ng_now_ms() > deadline)
            break;
        ng_pump(g, 20);
    }
}

/* Wait for @p pid without blocking; true once it has exited (status in *st). */
static bool child_done(pid_t pid, int *st)
{
    return waitpid(pid, st, WNOHANG) == pid;
}

static void kill_child(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Kernel-side counters                                                      */

struct icmp_snmp {
    long long in_echos, in_echo_reps, out_echos, out_echo_reps;
};

static int read_icmp_snmp(struct icmp_snmp *s)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f)
        return -errno;
    char names[4096], vals[4096];
    int r = -ENOENT;
    while (fgets(names, sizeof(names), f)) {
        if (strncmp(names, "Icmp: ", 6) != 0)
            continue;
        if (!fgets(vals, sizeof(vals), f))
            break;
        char *sn, *sv;
        char *n = strtok_r(names + 6, " \n", &sn);
        char *v = strtok_r(vals + 6, " \n", &sv);
        memset(s, 0, sizeof(*s));
        while (n && v) {
            long long x = atoll(v);
            if (!strcmp(n, "InEchos"))
                s->in_echos = x;
            else if (!strcmp(n, "InEchoReps"))
                s->in_echo_reps = x;
            else if (!strcmp(n, "OutEchos"))
                s->out_echos = x;
            else if (!strcmp(n, "OutEchoReps"))
                s->out_echo_reps = x;
            n = strtok_r(NULL, " \n", &sn);
            v = strtok_r(NULL, " \n", &sv);
        }
        r = 0;
        break;
    }
    fclose(f);
    return r;
}

/* True when the kernel's ARP table maps @p ip to @p mac. */
static bool kernel_knows(uint32_t ip, const uint8_t mac[6])
{
    FILE *f = fopen("/proc/net/arp", "r");
    if (!f)
        return false;
    char line[256], want_ip[32], want_mac[32];
    struct in_addr a = {htonl(ip)};
    inet_ntop(AF_INET, &a, want_ip, sizeof(want_ip));
    snprintf(want_mac, sizeof(want_mac), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
             mac[3], mac[4], mac[5]);
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        char ipb[64], hw[64], mb[64];
        if (sscanf(line, "%63s %63s %*s %63s", ipb, hw, mb) == 3 && !strcmp(ipb, want_ip) &&
            !strcasecmp(mb, want_mac))
            found = true;
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------------------ */
/* ping: ARP + ICMP both ways                                                */

static int run_ping(const char *kind, const struct opts *o)
{
    struct vio_net_backend be = {0};
    if (open_backend(kind, o, &be) < 0)
        return 1;
    static struct guest g;
    uint64_t want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX) | FEAT(VIO_NET_F_CSUM) |
                    FEAT(VIO_NET_F_GUEST_CSUM);
    if (ng_open(&g, &be, want, GUEST_MAC, o->guest_ip, o->host_ip, o->mtu) < 0) {
        vio_net_backend_destroy(&be);
        return 1;
    }
    wait_iface_ready(&g, o->ifname);
    const char *sif = o->stat_if ? o->stat_if : o->ifname;
    long long rx0 = ng_if_stat(sif, "rx_packets"), tx0 = ng_if_stat(sif, "tx_packets");
    struct icmp_snmp k0 = {0}, k1 = {0};
    read_icmp_snmp(&k0);

    /* guest -> kernel */
    CHECK(ng_arp_resolve(&g, 5000) == 0, "%s: no ARP reply from the kernel\n", kind);
    unsigned long n = o->count;
    for (unsigned long i = 0; i < n && g.have_peer_mac; i++) {
        ng_ping_send(&g, 0x7e57, (uint16_t)(i + 1), 56 + i % 200);
        uint64_t deadline = ng_now_ms() + 2000;
        while (g.st.echo_rep_rx + g.st.echo_rep_bad < i + 1 && ng_now_ms() < deadline)
            ng_pump(&g, 20);
    }
    CHECK(g.st.echo_rep_rx == n, "%s: %lu of %lu echo replies\n", kind, g.st.echo_rep_rx, n);
    CHECK(g.st.echo_rep_bad == 0, "%s: %lu echo replies with wrong data\n", kind,
          g.st.echo_rep_bad);

    /* kernel -> guest: the real ping(8) */
    char cnt[32], ip[32];
    snprintf(cnt, sizeof(cnt), "%lu", n);
    struct in_addr a = {htonl(o->guest_ip)};
    inet_ntop(AF_INET, &a, ip, sizeof(ip));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("ping", "ping", "-q", "-n", "-c", cnt, "-i", "0.2", "-w", "20", ip, (char *)NULL);
        perror("exec ping");
        _exit(127);
    }
    int st = -1;
    uint64_t deadline = ng_now_ms() + 30000;
    while (!child_done(pid, &st) && ng_now_ms() < deadline)
        ng_pump(&g, 20);
    if (ng_now_ms() >= deadline) {
        kill_child(pid);
        st = -1;
    }
    CHECK(st == 0, "%s: ping(8) of the guest failed (status %d)\n", kind, st);
    for (int i = 0; i < 10; i++)
        ng_pump(&g, 20);

    read_icmp_snmp(&k1);
    long long rx1 = ng_if_stat(sif, "rx_packets"), tx1 = ng_if_stat(sif, "tx_packets");
    ng_print_stats(&g, kind);
    struct vio_net_driver_stats ds;
    vio_net_driver_get_stats(g.nl.drv, 0, &ds);
    printf("%s: kernel icmp: in echo %lld, out echo reply %lld, out echo %lld, in echo reply %lld\n",
           kind, k1.in_echos - k0.in_echos, k1.out_echo_reps - k0.out_echo_reps,
           k1.out_echos - k0.out_echos, k1.in_echo_reps - k0.in_echo_reps);
    printf("%s: %s rx_packets +%lld (guest sent %lu), tx_packets +%lld (guest received %lu)\n",
           kind, sif, rx1 - rx0, g.st.tx_frames, tx1 - tx0, g.st.rx_frames);
    /* both ends agree */
    CHECK(k1.in_echos - k0.in_echos == (long long)g.st.echo_req_tx,
          "%s: kernel saw %lld echo requests, guest sent %lu\n", kind, k1.in_echos - k0.in_echos,
          g.st.echo_req_tx);
    CHECK(k1.out_echo_reps - k0.out_echo_reps == (long long)g.st.echo_rep_rx,
          "%s: kernel sent %lld echo replies, guest got %lu\n", kind,
          k1.out_echo_reps - k0.out_echo_reps, g.st.echo_rep_rx);
    CHECK(k1.out_echos - k0.out_echos >= (long long)n &&
              k1.out_echos - k0.out_echos == (long long)g.st.echo_req_rx,
          "%s: kernel sent %lld echo requests, guest got %lu\n", kind, k1.out_echos - k0.out_echos,
          g.st.echo_req_rx);
    CHECK(k1.in_echo_reps - k0.in_echo_reps == (long long)g.st.echo_rep_tx,
          "%s: kernel got %lld echo replies, guest sent %lu\n", kind,
          k1.in_echo_reps - k0.in_echo_reps, g.st.echo_rep_tx);
    CHECK(g.st.arp_rep_rx >= 1, "%s: guest got no ARP reply\n", kind);
    CHECK(kernel_knows(o->guest_ip, GUEST_MAC), "%s: kernel ARP table lacks the guest\n", kind);
    CHECK(rx1 - rx0 >= (long long)g.st.tx_frames, "%s: %s received fewer frames than sent\n", kind,
          sif);
    CHECK(tx1 - tx0 >= (long long)g.st.rx_frames, "%s: guest received more than %s sent\n", kind,
          sif);
    CHECK(ds.tx_frames == g.st.tx_frames && ds.rx_frames == g.st.rx_frames,
          "%s: driver counters disagree with the guest's\n", kind);
    CHECK(g.st.csum_bad == 0, "%s: %lu bad checksums\n", kind, g.st.csum_bad);
    CHECK(!g.nl.needs_reset, "%s: the device asked for a reset\n", kind);
    ng_close(&g);
    vio_net_backend_destroy(&be);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* TSO: one 64 KiB frame out, MTU-sized segments counted on the veth peer     */

struct seg_count {
    unsigned long segs, bytes, max_frame, csum_ok, csum_bad, ooo, other;
    uint64_t fnv;
    int err;
};

static int enter_netns(const char *name)
{
    if (!name)
        return 0;
    char path[256];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Child: count TCP segments to TSO_PORT on @p ifname until @p want payload bytes. */
static void seg_counter(const struct opts *o, uint32_t src_ip, unsigned long want, int ready_fd,
                        int res_fd)
{
    struct seg_count c = {.fnv = NG_FNV_INIT};
    int s = -1;
    if ((c.err = enter_netns(o->peer_netns)) < 0)
        goto out;
    s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (s < 0) {
        c.err = -errno;
        goto out;
    }
    int big = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex(o->peer_if)};
    if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        c.err = -ENODEV;
        goto out;
    }
    char ok = 'R';
    if (write(ready_fd, &ok, 1) != 1)
        _exit(3);
    static uint8_t f[70000];
    uint32_t next = 1; /* the guest's sequence numbers start at stream offset + 1 */
    uint64_t deadline = ng_now_ms() + 15000;
    while (c.bytes < want && ng_now_ms() < deadline) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s, f, sizeof(f), MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (n < 0 || from.sll_pkttype == PACKET_OUTGOING)
            continue;
        size_t len = (size_t)n;
        if (len < 14 + 40 || f[12] != 0x08 || f[13] != 0x00 || f[14 + 9] != 6) {
            c.other++;
            continue;
        }
        const uint8_t *ip = f + 14;
        size_t ihl = (size_t)(ip[0] & 15) * 4, tot = (size_t)(ip[2] << 8 | ip[3]);
        const uint8_t *th = ip + ihl;
        if (tot > len - 14 || tot < ihl + 20 || (th[2] << 8 | th[3]) != TSO_PORT) {
            c.other++;
            continue;
        }
        uint32_t saddr = (uint32_t)ip[12] << 24 | (uint32_t)ip[13] << 16 | (uint32_t)ip[14] << 8 | ip[15];
        if (saddr != src_ip) {
            c.other++;
            continue;
        }
        size_t thl = (size_t)(th[12] >> 4) * 4;
        size_t l4 = tot - ihl, dlen = l4 - thl;
        c.segs++;
        if (len > c.max_frame)
            c.max_frame = len;
        uint32_t ps = ng_pseudo_sum(saddr,
                                    (uint32_t)ip[16] << 24 | (uint32_t)ip[17] << 16 |
                                        (uint32_t)ip[18] << 8 | ip[19],
                                    6, (uint32_t)l4);
        if (ng_csum_fold(ng_csum_add(ps, th, l4)) == 0xffff)
            c.csum_ok++;
        else
            c.csum_bad++;
        uint32_t seq = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 | th[7];
        if (seq != next) {
            c.ooo++;
            continue;
        }
        c.fnv = ng_fnv(c.fnv, th + thl, dlen);
        c.bytes += dlen;
        next += (uint32_t)dlen;
    }
out:
    if (write(res_fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
        _exit(3);
    _exit(c.err ? 2 : 0);
}

static int run_tso(const char *kind, const struct opts *o)
{
    if (!o->have_peer_mac || !o->peer_if || !o->peer_ip) {
        fprintf(stderr, "net_e2e %s: needs --peer-mac, --peer-ip and --peer-if\n", kind);
        return 2;
    }
    unsigned long payload = o->bytes ? o->bytes : 65495;
    uint16_t mss = (uint16_t)(o->mtu - 40);
    int ready[2], res[2];
    if (pipe(ready) < 0 || pipe(res) < 0)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(res[0]);
        seg_counter(o, o->guest_ip, payload, ready[1], res[1]);
    }
    close(ready[1]);
    close(res[1]);
    char c;
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    if (poll(&p, 1, 5000) != 1 || read(ready[0], &c, 1) != 1) {
        printf("FAIL: %s: the segment counter did not start\n", kind);
        kill_child(pid);
        return 1;
    }

    struct vio_net_backend be = {0};
    if (open_backend(kind, o, &be) < 0) {
        kill_child(pid);
        return 1;
    }
    static struct guest g;
    uint64_t want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX) | FEAT(VIO_NET_F_CSUM) |
                    FEAT(VIO_NET_F_GUEST_CSUM) | FEAT(VIO_NET_F_HOST_TSO4);
    if (ng_open(&g, &be, want, GUEST_MAC, o->guest_ip, o->peer_ip, o->mtu) < 0) {
        kill_child(pid);
        vio_net_backend_destroy(&be);
        return 1;
    }
    wait_iface_ready(&g, o->ifname);
    CHECK(vio_has_feature(g.nl.features, VIO_NET_F_HOST_TSO4),
          "%s: HOST_TSO4 not negotiated (backend offers 0x%llx)\n", kind,
          (unsigned long long)vio_net_backend_features(&be));
    struct vio_net_hdr h;
    size_t len = ng_build_tcp(&g, g.tx, &h, o->peer_mac, o->peer_ip, 40000, TSO_PORT, 0, payload,
                              mss);
    uint64_t fnv = ng_fnv(NG_FNV_INIT, g.tx + 54, payload);
    long long srx0 = o->stat_if ? ng_if_stat(o->stat_if, "rx_packets") : -1;
    int r = ng_send(&g, &h, g.tx, len);
    CHECK(r == 0, "%s: send of the TSO frame: %s\n", kind, strerror(-r));
    int st = -1;
    uint64_t deadline = ng_now_ms() + 20000;
    while (!child_done(pid, &st) && ng_now_ms() < deadline)
        ng_pump(&g, 20);
    if (ng_now_ms() >= deadline) {
        kill_child(pid);
        st = -1;
    }
    struct seg_count sc = {0};
    if (read(res[0], &sc, sizeof(sc)) != (ssize_t)sizeof(sc))
        sc.err = -EIO;
    close(ready[0]);
    close(res[0]);
    long long srx1 = o->stat_if ? ng_if_stat(o->stat_if, "rx_packets") : -1;

    unsigned long want_segs = (payload + mss - 1) / mss;
    struct vio_net_queue_stats ts;
    vio_net_dev_get_stats(g.nl.nd, 1, &ts);
    printf("%s: guest sent a TSO frame of %zu bytes (gso_size %u, payload %lu) and %lu other(s); "
           "device tx0 packets %llu bytes %llu\n",
           kind, len, mss, payload, g.st.tx_frames - 1, (unsigned long long)ts.packets,
           (unsigned long long)ts.bytes);
    printf("%s: peer %s counted %lu segments (want %lu), %lu payload bytes, largest frame %lu, "
           "checksums ok %lu bad %lu, out of order %lu, other frames %lu\n",
           kind, o->peer_if, sc.segs, want_segs, sc.bytes, sc.max_frame, sc.csum_ok, sc.csum_bad,
           sc.ooo, sc.other);
    if (o->stat_if)
        printf("%s: %s rx_packets +%lld\n", kind, o->stat_if, srx1 - srx0);
    CHECK(st == 0 && sc.err == 0, "%s: counter failed (status %d, err %d)\n", kind, st, sc.err);
    /* besides the TSO frame, the guest may have answered ARP (the peer's RST needs it) */
    CHECK(ts.packets == g.st.tx_frames && ts.bytes >= len,
          "%s: device sent %llu frames, the guest %lu\n", kind, (unsigned long long)ts.packets,
          g.st.tx_frames);
    CHECK(sc.segs == want_segs, "%s: %lu segments, want %lu\n", kind, sc.segs, want_segs);
    CHECK(sc.bytes == payload, "%s: %lu payload bytes, want %lu\n", kind, sc.bytes, payload);
    CHECK(sc.max_frame <= 14u + o->mtu, "%s: a segment of %lu bytes exceeds the MTU\n", kind,
          sc.max_frame);
    CHECK(sc.fnv == fnv, "%s: payload hash differs (peer %016llx, guest %016llx)\n", kind,
          (unsigned long long)sc.fnv, (unsigned long long)fnv);
    CHECK(sc.csum_bad == 0, "%s: %lu segments with bad TCP checksums\n", kind, sc.csum_bad);
    CHECK(!g.nl.needs_reset, "%s: the device asked for a reset\n", kind);
    ng_close(&g);
    vio_net_backend_destroy(&be);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* GRO/GSO in: a kernel TCP sender streams to the guest                       */

static void tcp_sender(uint32_t dst, uint16_t port, unsigned long bytes, int res_fd)
{
    uint64_t fnv = NG_FNV_INIT;
    int err = 0;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(dst)};
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        goto out;
    }
    static uint8_t buf[65536];
    unsigned long off = 0;
    while (off < bytes) {
        size_t n = bytes - off < sizeof(buf) ? bytes - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = ng_pattern(off + i);
        size_t done = 0;
        while (done < n) {
            ssize_t w = write(s, buf + done, n - done);
            if (w < 0) {
                err = -errno;
                goto out;
            }
            done += (size_t)w;
        }
        fnv = ng_fnv(fnv, buf, n);
        off += n;
    }
    shutdown(s, SHUT_WR);
    char c;
    if (read(s, &c, 1) < 0) /* the guest's FIN: EOF */
        err = -errno;
out:
    if (s >= 0)
        close(s);
    uint64_t msg[2] = {fnv, (uint64_t)(int64_t)err};
    if (write(res_fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
        _exit(3);
    _exit(err ? 1 : 0);
}

static int run_gro(const char *kind, const struct opts *o)
{
    unsigned long bytes = o->bytes ? o->bytes : (1ul << 20);
    struct vio_net_backend be = {0};
    if (open_backend(kind, o, &be) < 0)
        return 1;
    static struct guest g;
    uint64_t want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX) | FEAT(VIO_NET_F_CSUM) |
                    FEAT(VIO_NET_F_GUEST_CSUM) | FEAT(VIO_NET_F_GUEST_TSO4) |
                    FEAT(VIO_NET_F_GUEST_TSO6) | FEAT(VIO_NET_F_GUEST_ECN) |
                    FEAT(VIO_NET_F_HOST_TSO4);
    if (ng_open(&g, &be, want, GUEST_MAC, o->guest_ip, o->host_ip, o->mtu) < 0) {
        vio_net_backend_destroy(&be);
        return 1;
    }
    wait_iface_ready(&g, o->ifname);
    CHECK(vio_has_feature(g.nl.features, VIO_NET_F_GUEST_TSO4),
          "%s: GUEST_TSO4 not negotiated (backend offers 0x%llx)\n", kind,
          (unsigned long long)vio_net_backend_features(&be));
    ng_tcp_listen(&g, GRO_PORT);
    CHECK(ng_arp_resolve(&g, 5000) == 0, "%s: no ARP reply from the kernel\n", kind);
    long long srx0 = o->stat_if ? ng_if_stat(o->stat_if, "rx_packets") : -1;
    int res[2];
    if (pipe(res) < 0)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(res[0]);
        if (enter_netns(o->sender_netns) < 0) {
            uint64_t msg[2] = {0, (uint64_t)(int64_t)-ENOENT};
            if (write(res[1], msg, sizeof(msg)) < 0)
                _exit(3);
            _exit(1);
        }
        tcp_sender(o->guest_ip, GRO_PORT, bytes, res[1]);
    }
    close(res[1]);
    int st = -1;
    bool exited = false;
    uint64_t t0 = ng_now_ms(), deadline = t0 + 30000;
    while (ng_now_ms() < deadline && !(exited && g.tcp.done)) {
        ng_pump(&g, 10);
        if (!exited)
            exited = child_done(pid, &st);
    }
    uint64_t ms = ng_now_ms() - t0;
    if (!exited) {
        kill_child(pid);
        st = -1;
    }
    uint64_t msg[2] = {0, 0};
    if (read(res[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
        msg[1] = (uint64_t)-EIO;
    close(res[0]);
    for (int i = 0; i < 5; i++)
        ng_pump(&g, 10);

    ng_print_stats(&g, kind);
    if (o->stat_if)
        printf("%s: %s received %lld packets on the way in (the kernel's receive side; fewer "
               "than the stream's MSS-sized segments when GRO merged them)\n",
               kind, o->stat_if, ng_if_stat(o->stat_if, "rx_packets") - srx0);
    printf("%s: tcp: %llu of %lu bytes in %llu ms, %lu segments, dup %lu, gaps %lu, bad data %lu; "
           "hash guest %016llx sender %016llx\n",
           kind, (unsigned long long)g.tcp.bytes, bytes, (unsigned long long)ms, g.st.tcp_segs,
           g.st.tcp_dup, g.st.tcp_ooo, g.st.tcp_bad_data, (unsigned long long)g.tcp.fnv,
           (unsigned long long)msg[0]);
    CHECK(st == 0 && (int64_t)msg[1] == 0, "%s: sender failed (status %d, err %lld)\n", kind, st,
          (long long)(int64_t)msg[1]);
    CHECK(g.tcp.bytes == bytes, "%s: received %llu bytes, want %lu\n", kind,
          (unsigned long long)g.tcp.bytes, bytes);
    CHECK(g.st.tcp_bad_data == 0, "%s: stream content differs\n", kind);
    CHECK(g.tcp.fnv == msg[0], "%s: stream hash differs\n", kind);
    CHECK(g.st.gso_frames > 0, "%s: no frame arrived with GSO metadata\n", kind);
    CHECK(g.st.max_frame > 14u + o->mtu, "%s: no frame larger than the MTU (largest %lu)\n", kind,
          g.st.max_frame);
    CHECK(g.st.multi_buf_frames > 0, "%s: no frame spanned several mergeable buffers\n", kind);
    CHECK(g.st.csum_bad == 0, "%s: %lu bad checksums\n", kind, g.st.csum_bad);
    CHECK(!g.nl.needs_reset, "%s: the device asked for a reset\n", kind);
    ng_close(&g);
    vio_net_backend_destroy(&be);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* loopback: many frames with payload check                                  */

static size_t lb_len(unsigned long seq)
{
    /* mostly small, some full-size, some jumbo-ish (several mergeable buffers) */
    unsigned k = (unsigned)((seq * 2654435761u) >> 24) & 0xffu;
    if (k < 160)
        return 60 + k;
    if (k < 240)
        return 1514;
    return 1514 + (size_t)(seq % 7000);
}

/* Frame payloads are windows of one pseudo-random block, at an offset that depends on the
 * sequence number: cheap to make and to check with memcmp, different for every frame. */
static uint8_t lb_block[8192 + 9100]; /* offset < 8192, frame < 9100 */

static void lb_fill(uint8_t *f, unsigned long seq, size_t len)
{
    memcpy(f, GUEST_MAC, 6);
    memset(f + 6, 0x02, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    memcpy(f + 14, &seq, sizeof(seq));
    size_t hdr = 14 + sizeof(seq);
    if (len > hdr)
        memcpy(f + hdr, lb_block + (seq * 977u) % 8192u, len - hdr);
}

static int run_loopback(const struct opts *o)
{
    unsigned long total = o->frames ? o->frames : 1000000ul;
    for (size_t i = 0; i < sizeof(lb_block); i++)
        lb_block[i] = ng_pattern(i * 7919u);
    struct vio_net_backend be = {0};
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .ring_frames = 512};
    if (vio_net_loopback_open(&bc, &be) < 0)
        return 1;
    struct net_local nl;
    struct net_local_config c = {
        .be = &be,
        .want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX) | FEAT(VIO_NET_F_MTU),
        .mtu = 9000,
        .queue_size = 256,
        .log = vio_log_stderr,
    };
    memcpy(c.mac, GUEST_MAC, 6);
    if (net_local_open(&nl, &c) < 0)
        return 1;
    net_local_refill(&nl);
    static uint8_t f[9100], gbuf[9100];
    unsigned long sent = 0, got = 0, bad = 0, merged = 0;
    uint64_t t0 = ng_now_ms(), deadline = t0 + 120000;
    while (got < total && ng_now_ms() < deadline) {
        unsigned batch = 0;
        while (sent < total && sent - got < 200 && batch < 32) {
            size_t len = lb_len(sent);
            lb_fill(f, sent, len);
            if (vio_net_driver_send(nl.drv, 0, NULL, f, len) < 0)
                break;
            sent++;
            batch++;
        }
        vio_net_driver_kick(nl.drv, VIO_NET_DRIVER_TXQ(0));
        net_local_poll(&nl, 0);
        for (;;) {
            struct vio_net_hdr h;
            ssize_t n = vio_net_driver_recv(nl.drv, 0, &h, gbuf, sizeof(gbuf));
            if (n == -EAGAIN)
                break;
            size_t want = lb_len(got);
            lb_fill(f, got, want);
            if (n != (ssize_t)want || memcmp(f, gbuf, want) != 0) {
                if (bad++ < 5)
                    printf("FAIL: loopback: frame %lu: got %zd bytes, want %zu\n", got, n, want);
            }
            if (le16toh(h.num_buffers) > 1)
                merged++;
            got++;
        }
        vio_net_driver_kick(nl.drv, VIO_NET_DRIVER_RXQ(0));
        vio_net_driver_tx_reclaim(nl.drv, 0, NULL, 0);
    }
    uint64_t ms = ng_now_ms() - t0;
    printf("loopback: %lu frames sent, %lu received and checked (%lu over several buffers), %lu "
           "bad, %.2f Mframes/s\n",
           sent, got, merged, bad, ms ? (double)got / (double)ms / 1000.0 : 0.0);
    CHECK(got == total, "loopback: %lu of %lu frames came back\n", got, total);
    CHECK(bad == 0, "loopback: %lu frames wrong\n", bad);
    CHECK(merged > 0, "loopback: no frame used several mergeable buffers\n");
    CHECK(!nl.needs_reset, "loopback: the device asked for a reset\n");
    net_local_close(&nl);
    vio_net_backend_destroy(&be);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: net_e2e tap-ping|packet-ping|tap-tso|packet-tso|tap-gro|packet-gro|loopback "
               "[options]\n"
               "  --ifname IF --guest-ip A --host-ip A --peer-ip A --peer-mac M --peer-if IF\n"
               "  --peer-netns NS --sender-netns NS --stat-if IF --count N --bytes N --frames N\n"
               "  --mtu N\n"
               "(see the comment at the top of tests/integration/net_e2e.c)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    struct opts o = {.count = 10, .mtu = 1500};
    static const struct option lo[] = {
        {"ifname", required_argument, NULL, 'i'},    {"guest-ip", required_argument, NULL, 'g'},
        {"host-ip", required_argument, NULL, 'H'},   {"peer-ip", required_argument, NULL, 'p'},
        {"peer-mac", required_argument, NULL, 'm'},  {"peer-if", required_argument, NULL, 'P'},
        {"peer-netns", required_argument, NULL, 'n'}, {"stat-if", required_argument, NULL, 's'},
        {"sender-netns", required_argument, NULL, 'S'},
        {"count", required_argument, NULL, 'c'},     {"bytes", required_argument, NULL, 'b'},
        {"frames", required_argument, NULL, 'f'},    {"mtu", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
    };
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'i': o.ifname = optarg; break;
        case 'g': o.guest_ip = parse_ip(optarg); break;
        case 'H': o.host_ip = parse_ip(optarg); break;
        case 'p': o.peer_ip = parse_ip(optarg); break;
        case 'm': parse_mac(optarg, o.peer_mac); o.have_peer_mac = true; break;
        case 'P': o.peer_if = optarg; break;
        case 'n': o.peer_netns = optarg; break;
        case 'S': o.sender_netns = optarg; break;
        case 's': o.stat_if = optarg; break;
        case 'c': o.count = strtoul(optarg, NULL, 0); break;
        case 'b': o.bytes = strtoul(optarg, NULL, 0); break;
        case 'f': o.frames = strtoul(optarg, NULL, 0); break;
        case 'M': o.mtu = (uint16_t)strtoul(optarg, NULL, 0); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    int rc;
    if (!strcmp(cmd, "loopback"))
        rc = run_loopback(&o);
    else {
        const char *kind = !strncmp(cmd, "tap-", 4) ? "tap" : !strncmp(cmd, "packet-", 7) ? "packet" : NULL;
        const char *what = kind ? cmd + strlen(kind) + 1 : "";
        if (!kind || !o.ifname || !o.guest_ip) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(what, "ping"))
            rc = run_ping(kind, &o);
        else if (!strcmp(what, "tso"))
            rc = run_tso(kind, &o);
        else if (!strcmp(what, "gro"))
            rc = run_gro(kind, &o);
        else {
            usage(stderr);
            return 2;
        }
    }
    printf("%s: %s\n", cmd, rc == 0 ? "PASS" : "FAIL");
    return rc;
}
