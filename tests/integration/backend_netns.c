/* SPDX-License-Identifier: MIT */
/*
 * Integration test of the tap and AF_PACKET backends against the Linux network
 * stack. Runs inside a network namespace created by backend_netns.sh (never in the
 * host's): the program plays a guest (MAC 52:54:00:12:34:56) speaking ARP, ICMP,
 * UDP and a little TCP through a backend, and the kernel on the other side of the
 * tap / veth answers.
 *
 *   backend_netns tap            ARP + ping over a 2-queue tap, counted on both ends;
 *                                attach to an existing multi-queue tap; short rx buffer
 *   backend_netns tap-offload    TUNSETOFFLOAD from negotiated features: partial
 *                                checksums both ways, TSO both ways
 *   backend_netns packet         AF_PACKET on veth0 (2 queue pairs, fanout,
 *                                promiscuous): ARP + ping counted on both ends,
 *                                checksum and TSO handling
 *   backend_netns tap-vanish     link down/up, then the tap is deleted under the backend
 *   backend_netns packet-vanish  same for a veth pair under AF_PACKET
 *
 * Exit 0 pass, 1 fail, 77 skip (printed reason).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "virtio/net_backend.h"
#include "virtio/net_defs.h"

#define FEAT(b) ((uint64_t)1 << (b))

/* ------------------------------------------------------------------------ */
/* test plumbing */

static const char *g_test = "?";

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__, g_test, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("[%s] ", g_test);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

static void sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    CHECK(rc == 0, "command failed (%d): %s", rc, cmd);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t counter(const char *ifname, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, name);
    FILE *f = fopen(path, "r");
    CHECK(f, "open %s: %s", path, strerror(errno));
    unsigned long long v = 0;
    CHECK(fscanf(f, "%llu", &v) == 1, "read %s", path);
    fclose(f);
    return v;
}

/* dev->flags from sysfs: unlike SIOCGIFFLAGS it includes the reference-counted
 * IFF_PROMISC / IFF_ALLMULTI that packet socket memberships set. */
static unsigned iface_flags(const char *ifname)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/net/%s/flags", ifname);
    FILE *f = fopen(path, "r");
    CHECK(f, "open %s: %s", path, strerror(errno));
    unsigned v = 0;
    CHECK(fscanf(f, "%x", &v) == 1, "read %s", path);
    fclose(f);
    return v;
}

/* Log callback that counts messages per level and echoes them. */
struct log_count {
    unsigned n[4];
};

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    struct log_count *lc = opaque;
    if (level >= 0 && level <= 3)
        lc->n[level]++;
    printf("  log(%d) %s: %s\n", level, object, msg);
}

/* ------------------------------------------------------------------------ */
/* packets */

static uint32_t csum_add(uint32_t s, const uint8_t *p, size_t len)
{
    for (; len > 1; p += 2, len -= 2)
        s += (uint32_t)p[0] << 8 | p[1];
    if (len)
        s += (uint32_t)p[0] << 8;
    return s;
}

static uint16_t csum_fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* Sum of the IPv4 pseudo header for an L4 segment of @p l4len bytes. */
static uint32_t pseudo_sum(const uint8_t *ip, uint8_t proto, size_t l4len)
{
    return csum_add(0, ip + 12, 8) + proto + (uint32_t)l4len;
}

struct guest {
    const char *name;
    struct vio_net_backend *b;
    uint8_t mac[6];
    uint8_t peer_mac[6];
    uint8_t ip[4];
    uint8_t peer_ip[4];
    unsigned tx;      /* frames sent */
    unsigned rx;      /* frames received */
    uint16_t ip_id;
    struct vio_net_hdr hdr; /* of the last received frame */
    uint8_t frame[70000];   /* the last received frame */
    size_t len;
    uint8_t out[70000];     /* frame under construction */
};

static size_t eth(struct guest *g, uint8_t *f, const uint8_t *dst, uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, g->mac, 6);
    put16(f + 12, type);
    return 14;
}

/* IPv4 header at f + 14; returns the offset of the L4 header. */
static size_t ipv4(struct guest *g, uint8_t *f, uint8_t proto, size_t l4len)
{
    uint8_t *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4len));
    put16(ip + 4, g->ip_id++);
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = proto;
    memcpy(ip + 12, g->ip, 4);
    memcpy(ip + 16, g->peer_ip, 4);
    put16(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, 20)));
    return 34;
}

static void send_frame(struct guest *g, unsigned qp, const struct vio_net_hdr *h, const uint8_t *f,
                       size_t len)
{
    struct iovec iov[2] = {{(void *)f, len < 20 ? len : 20}, {(void *)(f + 20), 0}};
    if (len > 20)
        iov[1].iov_len = len - 20; /* two iovecs: exercise the gather path */
    int rc;
    uint64_t t0 = now_ms();
    while ((rc = vio_net_backend_tx(g->b, qp, h, iov, 2)) == -EAGAIN && now_ms() - t0 < 1000) {
        struct pollfd p = {.fd = vio_net_backend_tx_fd(g->b, qp), .events = POLLOUT};
        poll(&p, 1, 10);
    }
    CHECK(rc == 0, "tx on queue pair %u: %d (%s)", qp, rc, strerror(-rc));
    g->tx++;
}

/* Receives one frame from any queue pair into g->frame; false on timeout. */
static bool recv_frame(struct guest *g, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    unsigned nqp = g->b->queue_pairs;
    for (;;) {
        for (unsigned q = 0; q < nqp; q++) {
            struct iovec iov[2] = {{g->frame, 100}, {g->frame + 100, sizeof(g->frame) - 100}};
            ssize_t n = vio_net_backend_rx(g->b, q, &g->hdr, iov, 2);
            if (n == -EAGAIN)
                continue;
            CHECK(n > 0, "rx on queue pair %u: %zd (%s)", q, n, strerror((int)-n));
            CHECK(le16toh(g->hdr.num_buffers) == 1, "num_buffers %u", le16toh(g->hdr.num_buffers));
            g->len = (size_t)n;
            g->rx++;
            return true;
        }
        uint64_t now = now_ms();
        if (now >= deadline)
            return false;
        struct pollfd p[8];
        for (unsigned q = 0; q < nqp && q < 8; q++)
            p[q] = (struct pollfd){.fd = vio_net_backend_rx_fd(g->b, q), .events = POLLIN};
        poll(p, nqp < 8 ? nqp : 8, (int)(deadline - now));
    }
}

typedef bool (*frame_pred)(struct guest *g, const void *arg);

static bool wait_frame(struct guest *g, frame_pred pred, const void *arg, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return false;
        if (!recv_frame(g, (int)(deadline - now)))
            return false;
        if (pred(g, arg))
            return true;
    }
}

/* Drains everything until the line has been quiet for @p quiet_ms. */
static void drain(struct guest *g, int quiet_ms)
{
    while (recv_frame(g, quiet_ms)) {
    }
}

static bool is_ipv4(const struct guest *g, uint8_t proto)
{
    return g->len >= 34 && get16(g->frame + 12) == 0x0800 && (g->frame[14] >> 4) == 4 &&
           g->frame[23] == proto && memcmp(g->frame + 26, g->peer_ip, 4) == 0 &&
           memcmp(g->frame + 30, g->ip, 4) == 0;
}

static size_t l4_off(const struct guest *g)
{
    return 14 + (size_t)(g->frame[14] & 0xf) * 4;
}

/* ---- ARP ---- */

static bool is_arp_reply(struct guest *g, const void *arg)
{
    (void)arg;
    const uint8_t *f = g->frame;
    return g->len >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2 &&
           memcmp(f + 28, g->peer_ip, 4) == 0 && memcmp(f + 32, g->mac, 6) == 0 &&
           memcmp(f + 38, g->ip, 4) == 0;
}

static void arp_resolve(struct guest *g, unsigned qp)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t *f = g->out;
    memset(f, 0, 60);
    eth(g, f, bcast, 0x0806);
    put16(f + 14, 1);      /* Ethernet */
    put16(f + 16, 0x0800); /* IPv4 */
    f[18] = 6;
    f[19] = 4;
    put16(f + 20, 1); /* request */
    memcpy(f + 22, g->mac, 6);
    memcpy(f + 28, g->ip, 4);
    memcpy(f + 38, g->peer_ip, 4);
    send_frame(g, qp, NULL, f, 60);
    CHECK(wait_frame(g, is_arp_reply, NULL, 3000), "no ARP reply from %u.%u.%u.%u", g->peer_ip[0],
          g->peer_ip[1], g->peer_ip[2], g->peer_ip[3]);
    memcpy(g->peer_mac, g->frame + 22, 6);
    note("ARP: %u.%u.%u.%u is at %02x:%02x:%02x:%02x:%02x:%02x", g->peer_ip[0], g->peer_ip[1],
         g->peer_ip[2], g->peer_ip[3], g->peer_mac[0], g->peer_mac[1], g->peer_mac[2],
         g->peer_mac[3], g->peer_mac[4], g->peer_mac[5]);
}

/* A tagged frame sent into the kernel side of the link: the receiving side strips
 * 802.1Q tags into skb metadata before packet sockets see the frame, so this checks
 * that AF_PACKET puts the tag back where it was. */
static const uint8_t *tagged_want;
static size_t tagged_len;

static bool is_tagged_frame(struct guest *g, const void *arg)
{
    (void)arg;
    return g->len == tagged_len && memcmp(g->frame, tagged_want, tagged_len) == 0;
}

static void vlan_frame_check(struct guest *g, const char *kif)
{
    uint8_t f[200];
    memcpy(f, g->mac, 6);
    memcpy(f + 6, (uint8_t[]){0x02, 0, 0, 0, 0, 0x99}, 6);
    put16(f + 12, 0x8100);
    put16(f + 14, (3u << 13) | 100u); /* priority 3, VLAN 100 */
    put16(f + 16, 0x88b5);            /* local experimental ethertype */
    for (size_t i = 18; i < sizeof(f); i++)
        f[i] = (uint8_t)(i * 3);
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, "packet socket: %s", strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(kif),
                              .sll_halen = 6};
    memcpy(sll.sll_addr, g->mac, 6);
    CHECK(sendto(s, f, sizeof(f), 0, (struct sockaddr *)&sll, sizeof(sll)) == (ssize_t)sizeof(f),
          "inject: %s", strerror(errno));
    close(s);
    tagged_want = f;
    tagged_len = sizeof(f);
    CHECK(wait_frame(g, is_tagged_frame, NULL, 3000), "tagged frame not received intact");
    note("802.1Q-tagged frame received with its tag in place");
}

/* ---- ICMP ---- */

struct echo_match {
    uint16_t id, seq;
    size_t payload;
};

static bool is_echo_reply(struct guest *g, const void *arg)
{
    const struct echo_match *m = arg;
    if (!is_ipv4(g, 1))
        return false;
    size_t o = l4_off(g);
    const uint8_t *ic = g->frame + o;
    if (g->len < o + 8 + m->payload || ic[0] != 0 || get16(ic + 4) != m->id ||
        get16(ic + 6) != m->seq)
        return false;
    for (size_t i = 0; i < m->payload; i++)
        CHECK(ic[8 + i] == (uint8_t)(i + m->seq), "echo payload byte %zu", i);
    uint16_t ipsum = csum_fold(csum_add(0, g->frame + 14, 20));
    CHECK(ipsum == 0xffff, "IP header checksum of the reply");
    size_t iplen = get16(g->frame + 16);
    CHECK(csum_fold(csum_add(0, ic, iplen - 20)) == 0xffff, "ICMP checksum of the reply");
    return true;
}

static void ping(struct guest *g, unsigned qp, uint16_t seq, size_t payload)
{
    uint8_t *f = g->out;
    size_t o = eth(g, f, g->peer_mac, 0x0800);
    o = ipv4(g, f, 1, 8 + payload);
    uint8_t *ic = f + o;
    ic[0] = 8;
    ic[1] = 0;
    put16(ic + 2, 0);
    put16(ic + 4, 0x1234);
    put16(ic + 6, seq);
    for (size_t i = 0; i < payload; i++)
        ic[8 + i] = (uint8_t)(i + seq);
    put16(ic + 2, (uint16_t)~csum_fold(csum_add(0, ic, 8 + payload)));
    send_frame(g, qp, NULL, f, o + 8 + payload);
}

static void ping_round_trips(struct guest *g, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        unsigned qp = i % g->b->queue_pairs;
        struct echo_match m = {.id = 0x1234, .seq = (uint16_t)i, .payload = 56 + i * 100};
        ping(g, qp, m.seq, m.payload);
        CHECK(wait_frame(g, is_echo_reply, &m, 3000), "no echo reply for seq %u", i);
    }
    note("%u echo requests answered", count);
}

/*
 * Compares what the guest counted with the kernel's counters of @p kif (the
 * kernel-side interface): frames the guest sent = kernel rx_packets, frames the guest
 * received = kernel tx_packets. Waits until the kernel side has been quiet so late
 * frames (ARP probes) are counted on both ends.
 */
static void check_counters(struct guest *g, const char *kif, uint64_t krx0, uint64_t ktx0,
                           unsigned gtx0, unsigned grx0)
{
    uint64_t ktx = 0;
    for (int tries = 0; tries < 20; tries++) {
        uint64_t before = counter(kif, "tx_packets");
        drain(g, 200);
        ktx = counter(kif, "tx_packets");
        if (ktx == before)
            break;
    }
    uint64_t krx = counter(kif, "rx_packets");
    note("guest sent %u, %s received %llu; %s sent %llu, guest received %u", g->tx - gtx0, kif,
         (unsigned long long)(krx - krx0), kif, (unsigned long long)(ktx - ktx0), g->rx - grx0);
    CHECK(krx - krx0 == g->tx - gtx0, "kernel rx_packets %llu != guest tx %u",
          (unsigned long long)(krx - krx0), g->tx - gtx0);
    CHECK(ktx - ktx0 == g->rx - grx0, "kernel tx_packets %llu != guest rx %u",
          (unsigned long long)(ktx - ktx0), g->rx - grx0);
}

/* ---- UDP ---- */

static size_t udp_frame(struct guest *g, uint16_t sport, uint16_t dport, const uint8_t *payload,
                        size_t plen, bool partial, struct vio_net_hdr *h)
{
    uint8_t *f = g->out;
    eth(g, f, g->peer_mac, 0x0800);
    size_t o = ipv4(g, f, 17, 8 + plen);
    uint8_t *u = f + o;
    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(8 + plen));
    put16(u + 6, 0);
    memcpy(u + 8, payload, plen);
    uint32_t ps = pseudo_sum(f + 14, 17, 8 + plen);
    memset(h, 0, sizeof(*h));
    if (partial) {
        /* device completes it: the field holds the folded pseudo-header sum */
        put16(u + 6, csum_fold(ps));
        h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
        h->csum_start = htole16((uint16_t)o);
        h->csum_offset = htole16(6);
    } else {
        uint16_t c = (uint16_t)~csum_fold(csum_add(ps, u, 8 + plen));
        put16(u + 6, c ? c : 0xffff);
    }
    return o + 8 + plen;
}

static int udp_socket(struct guest *g, uint16_t port)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    memcpy(&a.sin_addr, g->peer_ip, 4);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind udp: %s", strerror(errno));
    return s;
}

static ssize_t udp_recv(int s, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return recv(s, buf, cap, MSG_DONTWAIT);
}

static unsigned long long snmp_udp(const char *field)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    CHECK(f, "open /proc/net/snmp");
    char names[1024], values[1024];
    unsigned long long result = ~0ull;
    while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
        if (strncmp(names, "Udp:", 4) != 0)
            continue;
        char *sn, *sv;
        char *n = strtok_r(names, " \n", &sn), *v = strtok_r(values, " \n", &sv);
        while (n && v) {
            if (strcmp(n, field) == 0)
                result = strtoull(v, NULL, 10);
            n = strtok_r(NULL, " \n", &sn);
            v = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    CHECK(result != ~0ull, "Udp %s not in /proc/net/snmp", field);
    return result;
}

/* Guest -> kernel UDP: a partial checksum the backend's kernel completes is accepted,
 * a wrong full checksum is dropped (so the kernel does check), a right one accepted. */
static void udp_tx_checks(struct guest *g)
{
    uint8_t payload[300], got[400];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    int s = udp_socket(g, 5001);
    struct vio_net_hdr h;

    size_t len = udp_frame(g, 4000, 5001, payload, sizeof(payload), true, &h);
    send_frame(g, 0, &h, g->out, len);
    ssize_t n = udp_recv(s, got, sizeof(got), 2000);
    CHECK(n == (ssize_t)sizeof(payload) && memcmp(got, payload, sizeof(payload)) == 0,
          "partial-checksum UDP datagram not delivered intact (%zd)", n);
    note("NEEDS_CSUM UDP datagram accepted by the kernel");

    unsigned long long err0 = snmp_udp("InCsumErrors");
    len = udp_frame(g, 4000, 5001, payload, sizeof(payload), false, &h);
    g->out[len - 1] ^= 0x5a; /* corrupt the payload after checksumming */
    send_frame(g, 0, &h, g->out, len);
    CHECK(udp_recv(s, got, sizeof(got), 300) < 0, "corrupted datagram delivered");
    CHECK(snmp_udp("InCsumErrors") == err0 + 1, "kernel did not count the bad checksum");

    len = udp_frame(g, 4000, 5001, payload, sizeof(payload), false, &h);
    send_frame(g, 0, &h, g->out, len);
    n = udp_recv(s, got, sizeof(got), 2000);
    CHECK(n == (ssize_t)sizeof(payload), "fully checksummed datagram not delivered");
    note("kernel verifies checksums: bad one dropped (InCsumErrors +1), good one delivered");
    close(s);
}

struct udp_match {
    uint16_t dport;
};

static bool is_udp_to(struct guest *g, const void *arg)
{
    const struct udp_match *m = arg;
    return is_ipv4(g, 17) && get16(g->frame + l4_off(g) + 2) == m->dport;
}

/* Kernel -> guest UDP. With GUEST_CSUM the kernel may leave the checksum partial
 * (NEEDS_CSUM, which we complete here); without it the frame must arrive with a
 * complete checksum and no flags. Returns the header flags seen. */
static unsigned udp_rx_check(struct guest *g, bool guest_csum)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, "socket");
    uint8_t payload[777];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i ^ 0x3c);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(6000)};
    memcpy(&a.sin_addr, g->ip, 4);
    CHECK(sendto(s, payload, sizeof(payload), 0, (struct sockaddr *)&a, sizeof(a)) ==
              (ssize_t)sizeof(payload),
          "sendto: %s", strerror(errno));
    struct udp_match m = {6000};
    CHECK(wait_frame(g, is_udp_to, &m, 3000), "UDP datagram from the kernel not received");
    close(s);
    size_t o = l4_off(g);
    uint8_t *u = g->frame + o;
    CHECK(g->len >= o + 8 + sizeof(payload) &&
              memcmp(u + 8, payload, sizeof(payload)) == 0,
          "UDP payload");
    unsigned flags = g->hdr.flags;
    if (!guest_csum)
        CHECK(flags == 0, "flags %#x without GUEST_CSUM", flags);
    if (flags & VIO_NET_HDR_F_NEEDS_CSUM) {
        unsigned cs = le16toh(g->hdr.csum_start), co = le16toh(g->hdr.csum_offset);
        CHECK(cs == o && co == 6, "csum_start %u csum_offset %u", cs, co);
        uint16_t c = (uint16_t)~csum_fold(csum_add(0, g->frame + cs, g->len - cs));
        put16(g->frame + cs + co, c ? c : 0xffff);
    }
    uint32_t sum = pseudo_sum(g->frame + 14, 17, 8 + sizeof(payload));
    CHECK(csum_fold(csum_add(sum, u, 8 + sizeof(payload))) == 0xffff, "UDP checksum wrong");
    note("kernel -> guest UDP, GUEST_CSUM %s: flags %#x, checksum verified", guest_csum ? "on" : "off",
         flags);
    return flags;
}

/* ---- TCP ---- */

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

static size_t tcp_frame(struct guest *g, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                        uint8_t flags, const uint8_t *payload, size_t plen, bool mss,
                        struct vio_net_hdr *h, uint16_t gso_size)
{
    uint8_t *f = g->out;
    size_t thl = mss ? 24 : 20;
    eth(g, f, g->peer_mac, 0x0800);
    size_t o = ipv4(g, f, 6, thl + plen);
    uint8_t *t = f + o;
    memset(t, 0, thl);
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, seq);
    put32(t + 8, ack);
    t[12] = (uint8_t)((thl / 4) << 4);
    t[13] = flags;
    put16(t + 14, 65535);
    if (mss) {
        t[20] = 2;
        t[21] = 4;
        put16(t + 22, 1460);
    }
    if (plen)
        memcpy(t + thl, payload, plen);
    uint32_t ps = pseudo_sum(f + 14, 6, thl + plen);
    memset(h, 0, sizeof(*h));
    if (gso_size) {
        put16(t + 16, csum_fold(ps));
        h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
        h->gso_type = VIO_NET_HDR_GSO_TCPV4;
        h->gso_size = htole16(gso_size);
        h->hdr_len = htole16((uint16_t)(o + thl));
        h->csum_start = htole16((uint16_t)o);
        h->csum_offset = htole16(16);
    } else {
        put16(t + 16, (uint16_t)~csum_fold(csum_add(ps, t, thl + plen)));
    }
    return o + thl + plen;
}

struct tcp_match {
    uint16_t sport, dport;
    uint8_t flags_set;
};

static bool is_tcp(struct guest *g, const void *arg)
{
    const struct tcp_match *m = arg;
    if (!is_ipv4(g, 6))
        return false;
    const uint8_t *t = g->frame + l4_off(g);
    return get16(t) == m->sport && get16(t + 2) == m->dport &&
           (t[13] & m->flags_set) == m->flags_set;
}

static uint8_t stream_byte(size_t i)
{
    return (uint8_t)(i * 31 + (i >> 8));
}

/*
 * Kernel -> guest TCP stream: the kernel connects to the guest, the guest answers
 * the handshake and ACKs every segment. Returns how many GSO super-frames arrived.
 */
static unsigned tcp_stream_to_guest(struct guest *g, size_t total)
{
    const uint16_t gport = 7000;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(gport)};
    memcpy(&a.sin_addr, g->ip, 4);
    CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == EINPROGRESS, "connect");

    /* the kernel picks the source port: match on the destination only */
    bool got = false;
    uint64_t deadline = now_ms() + 3000;
    while (!got && now_ms() < deadline) {
        CHECK(recv_frame(g, 3000), "no SYN from the kernel");
        if (is_ipv4(g, 6)) {
            const uint8_t *t = g->frame + l4_off(g);
            got = get16(t + 2) == gport && (t[13] & TCP_SYN);
        }
    }
    CHECK(got, "no SYN");
    const uint8_t *t = g->frame + l4_off(g);
    uint16_t kport = get16(t);
    uint32_t kseq = get32(t + 4);
    uint32_t gseq = 0x10000;
    struct vio_net_hdr h;
    size_t len = tcp_frame(g, gport, kport, gseq, kseq + 1, TCP_SYN | TCP_ACK, NULL, 0, true, &h, 0);
    send_frame(g, 0, &h, g->out, len);
    gseq++;
    struct pollfd p = {.fd = s, .events = POLLOUT};
    CHECK(poll(&p, 1, 3000) == 1, "connect did not complete");
    int soerr = -1;
    socklen_t sl = sizeof(soerr);
    getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    CHECK(soerr == 0, "connect: %s", strerror(soerr));

    static uint8_t data[1 << 20];
    CHECK(total <= sizeof(data), "stream too long");
    for (size_t i = 0; i < total; i++)
        data[i] = stream_byte(i);
    size_t sent = 0, rcvd = 0;
    uint32_t expect = kseq + 1;
    unsigned gso = 0;
    size_t biggest = 0;
    deadline = now_ms() + 10000;
    while (rcvd < total) {
        CHECK(now_ms() < deadline, "stream stalled at %zu of %zu bytes", rcvd, total);
        if (sent < total) {
            ssize_t n = send(s, data + sent, total - sent, MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
        }
        if (!recv_frame(g, 200))
            continue;
        struct tcp_match m = {kport, gport, 0};
        if (!is_tcp(g, &m))
            continue;
        size_t o = l4_off(g);
        const uint8_t *tt = g->frame + o;
        size_t thl = (size_t)(tt[12] >> 4) * 4;
        size_t iplen = get16(g->frame + 16);
        size_t plen = iplen - (o - 14) - thl;
        uint32_t seq = get32(tt + 4);
        if (plen == 0 || seq != expect)
            continue; /* pure ACKs, retransmissions */
        CHECK(o + thl + plen <= g->len, "TCP segment longer than the frame");
        for (size_t i = 0; i < plen; i++)
            CHECK(g->frame[o + thl + i] == stream_byte(rcvd + i), "stream byte %zu", rcvd + i);
        if (g->hdr.gso_type != VIO_NET_HDR_GSO_NONE) {
            CHECK((g->hdr.gso_type & 0x7f) == VIO_NET_HDR_GSO_TCPV4, "gso_type %u", g->hdr.gso_type);
            CHECK(le16toh(g->hdr.gso_size) > 0 && le16toh(g->hdr.gso_size) <= 1460, "gso_size %u",
                  le16toh(g->hdr.gso_size));
            gso++;
        }
        if (g->len > biggest)
            biggest = g->len;
        rcvd += plen;
        expect += (uint32_t)plen;
        len = tcp_frame(g, gport, kport, gseq, expect, TCP_ACK, NULL, 0, false, &h, 0);
        send_frame(g, 0, &h, g->out, len);
    }
    /* reset rather than close, so the kernel stops talking to us */
    len = tcp_frame(g, gport, kport, gseq, expect, TCP_RST | TCP_ACK, NULL, 0, false, &h, 0);
    send_frame(g, 0, &h, g->out, len);
    close(s);
    note("kernel -> guest TCP: %zu bytes intact, %u GSO frames, largest frame %zu bytes", total, gso,
         biggest);
    return gso;
}

/* Guest -> kernel TCP: handshake with a kernel listener, then one TSO super-frame
 * (NEEDS_CSUM + GSO_TCPV4) that the kernel must segment / accept as is. */
static void tcp_tso_to_kernel(struct guest *g, size_t plen)
{
    const uint16_t kport = 7001, gport = 40001;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(ls >= 0, "socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(kport)};
    memcpy(&a.sin_addr, g->peer_ip, 4);
    CHECK(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
    CHECK(listen(ls, 1) == 0, "listen");

    uint32_t gseq = 0x20000;
    struct vio_net_hdr h;
    size_t len = tcp_frame(g, gport, kport, gseq, 0, TCP_SYN, NULL, 0, true, &h, 0);
    send_frame(g, 0, &h, g->out, len);
    struct tcp_match m = {kport, gport, TCP_SYN | TCP_ACK};
    CHECK(wait_frame(g, is_tcp, &m, 3000), "no SYN-ACK from the kernel");
    const uint8_t *t = g->frame + l4_off(g);
    uint32_t kseq = get32(t + 4) + 1;
    gseq++;
    len = tcp_frame(g, gport, kport, gseq, kseq, TCP_ACK, NULL, 0, false, &h, 0);
    send_frame(g, 0, &h, g->out, len);
    struct pollfd p = {.fd = ls, .events = POLLIN};
    CHECK(poll(&p, 1, 3000) == 1, "no connection to accept");
    int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CHECK(c >= 0, "accept: %s", strerror(errno));

    static uint8_t data[60000], got[60000];
    CHECK(plen <= sizeof(data), "too long");
    for (size_t i = 0; i < plen; i++)
        data[i] = stream_byte(i + 5);
    len = tcp_frame(g, gport, kport, gseq, kseq, TCP_ACK | TCP_PSH, data, plen, false, &h, 1448);
    send_frame(g, 0, &h, g->out, len);
    size_t rcvd = 0;
    uint64_t deadline = now_ms() + 5000;
    while (rcvd < plen && now_ms() < deadline) {
        p = (struct pollfd){.fd = c, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        ssize_t n = recv(c, got + rcvd, plen - rcvd, MSG_DONTWAIT);
        CHECK(n > 0 || (n < 0 && errno == EAGAIN), "recv: %zd %s", n, strerror(errno));
        if (n > 0)
            rcvd += (size_t)n;
    }
    CHECK(rcvd == plen, "kernel received %zu of %zu bytes of the TSO frame", rcvd, plen);
    CHECK(memcmp(got, data, plen) == 0, "TSO payload corrupted");
    len = tcp_frame(g, gport, kport, gseq + (uint32_t)plen, kseq, TCP_RST | TCP_ACK, NULL, 0, false,
                    &h, 0);
    send_frame(g, 0, &h, g->out, len);
    close(c);
    close(ls);
    note("guest -> kernel TSO frame (%zu bytes, gso_size 1448) delivered intact", plen);
}

/* ------------------------------------------------------------------------ */
/* tests */

static void guest_init(struct guest *g, struct vio_net_backend *b, uint8_t net)
{
    memset(g, 0, sizeof(*g));
    g->b = b;
    memcpy(g->mac, (uint8_t[]){0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, 6);
    memcpy(g->ip, (uint8_t[]){10, net, 0, 2}, 4);
    memcpy(g->peer_ip, (uint8_t[]){10, net, 0, 1}, 4);
    g->ip_id = 1;
}

static struct vio_net_backend_config base_cfg(const char *ifname, unsigned qps, struct log_count *lc)
{
    struct vio_net_backend_config c = {
        .struct_size = sizeof(c),
        .ifname = ifname,
        .queue_pairs = qps,
        .log = log_cb,
        .log_opaque = lc,
    };
    return c;
}

static void tap_setup_kernel_side(const char *ifname, uint8_t net)
{
    sh("ip addr add 10.%u.0.1/24 dev %s && ip link set %s up", net, ifname, ifname);
}

static struct guest G; /* large: keep off the stack */

static int test_tap(void)
{
    struct log_count lc = {0};
    struct vio_net_backend b = {0};
    struct vio_net_backend_config c = base_cfg("viotap0", 2, &lc);

    /* config errors are reported, not crashed on */
    struct vio_net_backend_config bad = c;
    bad.ifname = "an-interface-name-too-long";
    CHECK(vio_net_tap_open(&bad, &b) == -EINVAL, "long name");
    bad = c;
    bad.struct_size = 0;
    CHECK(vio_net_tap_open(&bad, &b) == -EINVAL, "struct_size 0");
    CHECK(vio_net_tap_open(&c, NULL) == -EINVAL, "NULL out");

    int rc = vio_net_tap_open(&c, &b);
    CHECK(rc == 0, "vio_net_tap_open: %s", strerror(-rc));
    CHECK(strcmp(vio_net_tap_ifname(&b), "viotap0") == 0, "ifname %s", vio_net_tap_ifname(&b));
    CHECK(b.queue_pairs == 2, "queue pairs");
    CHECK(vio_net_backend_rx_fd(&b, 0) != vio_net_backend_rx_fd(&b, 1), "one fd per queue pair");
    CHECK(vio_net_backend_rx_fd(&b, 0) == vio_net_backend_tx_fd(&b, 0), "rx_fd == tx_fd");
    CHECK(vio_net_backend_rx_peek(&b, 0) == -ENOTSUP, "tap has no rx_peek");
    uint64_t f = vio_net_backend_features(&b);
    note("features %#llx", (unsigned long long)f);
    static const unsigned want[] = {VIO_NET_F_CSUM,       VIO_NET_F_GUEST_CSUM, VIO_NET_F_HOST_TSO4,
                                    VIO_NET_F_HOST_TSO6,  VIO_NET_F_GUEST_TSO4, VIO_NET_F_GUEST_TSO6,
                                    VIO_NET_F_HOST_ECN,   VIO_NET_F_GUEST_ECN};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        CHECK(f & FEAT(want[i]), "feature bit %u missing", want[i]);
    CHECK(!(f & FEAT(VIO_NET_F_MRG_RXBUF)), "not an offload");
    CHECK(vio_net_backend_link_status(&b) == 0, "link up before ip link set up");
    CHECK(vio_net_backend_set_rx_mode(&b, VIO_NET_RX_PROMISC) == 0, "set_rx_mode");

    tap_setup_kernel_side("viotap0", 77);
    CHECK(vio_net_backend_link_status(&b) == 1, "link not up");

    struct guest *g = &G;
    guest_init(g, &b, 77);
    uint64_t krx0 = counter("viotap0", "rx_packets"), ktx0 = counter("viotap0", "tx_packets");
    arp_resolve(g, 0);
    ping_round_trips(g, 10);
    check_counters(g, "viotap0", krx0, ktx0, 0, 0);

    /* a frame larger than the rx buffers: -EMSGSIZE, and the next one is fine */
    ping(g, 0, 100, 1400);
    struct pollfd p[2] = {{.fd = vio_net_backend_rx_fd(&b, 0), .events = POLLIN},
                          {.fd = vio_net_backend_rx_fd(&b, 1), .events = POLLIN}};
    CHECK(poll(p, 2, 3000) > 0, "no reply to the large ping");
    unsigned q = (p[0].revents & POLLIN) ? 0 : 1;
    uint8_t small[200];
    struct iovec iov = {small, sizeof(small)};
    struct vio_net_hdr h;
    ssize_t n = vio_net_backend_rx(&b, q, &h, &iov, 1);
    CHECK(n == -EMSGSIZE, "short buffer: %zd", n);
    struct echo_match m = {0x1234, 101, 300};
    ping(g, 1, 101, 300);
    CHECK(wait_frame(g, is_echo_reply, &m, 3000), "no reply after the truncated frame");
    note("short rx buffer: -EMSGSIZE, next frame fine");

    /* rx/tx argument checks */
    CHECK(vio_net_backend_tx(&b, 2, NULL, &iov, 1) == -EINVAL, "qp out of range");
    CHECK(vio_net_backend_rx(&b, 2, NULL, &iov, 1) == -EINVAL, "qp out of range");
    CHECK(vio_net_backend_tx(&b, 0, NULL, &iov, 1024) == -EINVAL, "too many iovecs");
    iov.iov_len = 6;
    CHECK(vio_net_backend_tx(&b, 0, NULL, &iov, 1) == -EINVAL, "runt frame");
    CHECK(lc.n[VIO_LOG_ERROR] == 0, "unexpected error logs");
    vio_net_backend_destroy(&b);

    /* attach to an existing, persistent multi-queue tap with one and two queue pairs */
    sh("ip tuntap add dev viotap1 mode tap multi_queue vnet_hdr");
    for (unsigned qps = 1; qps <= 2; qps++) {
        c = base_cfg("viotap1", qps, &lc);
        rc = vio_net_tap_open(&c, &b);
        CHECK(rc == 0, "attach with %u queue pair(s): %s", qps, strerror(-rc));
        CHECK(strcmp(vio_net_tap_ifname(&b), "viotap1") == 0, "attached name");
        vio_net_backend_destroy(&b);
    }
    CHECK(if_nametoindex("viotap1") != 0, "persistent tap removed by destroy");
    note("attached to a persistent multi-queue tap with 1 and 2 queue pairs");

    /* the kernel picks the name */
    c = base_cfg(NULL, 1, &lc);
    rc = vio_net_tap_open(&c, &b);
    CHECK(rc == 0, "unnamed open: %s", strerror(-rc));
    char picked[IFNAMSIZ];
    snprintf(picked, sizeof(picked), "%s", vio_net_tap_ifname(&b));
    CHECK(strncmp(picked, "tap", 3) == 0 && if_nametoindex(picked) != 0, "picked %s", picked);
    vio_net_backend_destroy(&b);
    CHECK(if_nametoindex(picked) == 0, "non-persistent %s survived destroy", picked);
    note("kernel-named %s created and removed with the backend", picked);
    return 0;
}

static void guest_offload_suite(struct guest *g, const char *what)
{
    uint64_t all = vio_net_backend_features(g->b);
    uint64_t tx_csum = FEAT(VIO_NET_F_CSUM) | FEAT(VIO_NET_F_HOST_TSO4);
    int rc = vio_net_backend_configure(g->b, tx_csum); /* no GUEST_* offloads */
    CHECK(rc == 0, "configure: %d", rc);
    udp_tx_checks(g);
    udp_rx_check(g, false);

    rc = vio_net_backend_configure(g->b, all);
    CHECK(rc == 0, "configure all: %d", rc);
    udp_rx_check(g, true);
    unsigned gso = tcp_stream_to_guest(g, 200000);
    CHECK(gso > 0, "%s: no GSO frame reached the guest with GUEST_TSO4 negotiated", what);

    /* GUEST_CSUM only: no GSO frames may reach the guest */
    rc = vio_net_backend_configure(g->b, tx_csum | FEAT(VIO_NET_F_GUEST_CSUM));
    CHECK(rc == 0, "configure csum: %d", rc);
    tcp_tso_to_kernel(g, 20000);
}

static int test_tap_offload(void)
{
    struct log_count lc = {0};
    struct vio_net_backend b = {0};
    struct vio_net_backend_config c = base_cfg("viotap2", 1, &lc);
    int rc = vio_net_tap_open(&c, &b);
    CHECK(rc == 0, "vio_net_tap_open: %s", strerror(-rc));
    tap_setup_kernel_side("viotap2", 77);
    struct guest *g = &G;
    guest_init(g, &b, 77);
    arp_resolve(g, 0);
    guest_offload_suite(g, "tap");

    /* without GUEST_TSO4 the kernel segments for us: a stream arrives without GSO */
    rc = vio_net_backend_configure(&b, FEAT(VIO_NET_F_GUEST_CSUM));
    CHECK(rc == 0, "configure");
    CHECK(tcp_stream_to_guest(g, 100000) == 0, "GSO frames despite GUEST_TSO4 off");
    CHECK(lc.n[VIO_LOG_ERROR] == 0, "unexpected error logs");
    vio_net_backend_destroy(&b);
    return 0;
}

static void veth_setup(void)
{
    sh("ip link add veth0 type veth peer name veth1");
    sh("ip addr add 10.78.0.1/24 dev veth1 && ip link set veth1 up && ip link set veth0 up");
}

static int test_packet(void)
{
    struct log_count lc = {0};
    struct vio_net_backend b = {0};
    veth_setup();

    struct vio_net_backend_config c = base_cfg("nosuchif0", 1, &lc);
    CHECK(vio_net_packet_open(&c, &b) == -ENODEV, "missing interface");
    c.ifname = NULL;
    CHECK(vio_net_packet_open(&c, &b) == -EINVAL, "no interface name");
    CHECK(lc.n[VIO_LOG_ERROR] == 1, "open failure not logged");
    memset(&lc, 0, sizeof(lc));

    c = base_cfg("veth0", 2, &lc);
    c.promisc = true;
    c.ring_frames = 64;
    int rc = vio_net_packet_open(&c, &b);
    CHECK(rc == 0, "vio_net_packet_open: %s", strerror(-rc));
    CHECK(b.queue_pairs == 2, "queue pairs");
    CHECK(vio_net_tap_ifname(&b) == NULL, "not a tap");
    CHECK(iface_flags("veth0") & IFF_PROMISC, "veth0 not promiscuous");
    CHECK(vio_net_backend_link_status(&b) == 1, "link");
    CHECK(vio_net_backend_rx_peek(&b, 0) == -EAGAIN, "empty ring");
    uint64_t f = vio_net_backend_features(&b);
    note("features %#llx", (unsigned long long)f);
    CHECK((f & FEAT(VIO_NET_F_CSUM)) && (f & FEAT(VIO_NET_F_GUEST_CSUM)) &&
              (f & FEAT(VIO_NET_F_HOST_TSO4)) && (f & FEAT(VIO_NET_F_GUEST_TSO4)),
          "offload features");

    struct guest *g = &G;
    guest_init(g, &b, 78);
    uint64_t krx0 = counter("veth1", "rx_packets"), ktx0 = counter("veth1", "tx_packets");
    arp_resolve(g, 1);
    ping_round_trips(g, 10);
    check_counters(g, "veth1", krx0, ktx0, 0, 0);

    /* rx_peek predicts rx */
    struct echo_match m = {0x1234, 200, 500};
    ping(g, 0, 200, 500);
    struct pollfd pf[2] = {{.fd = vio_net_backend_rx_fd(&b, 0), .events = POLLIN},
                           {.fd = vio_net_backend_rx_fd(&b, 1), .events = POLLIN}};
    CHECK(poll(pf, 2, 3000) > 0, "no reply");
    unsigned q = (pf[0].revents & POLLIN) ? 0 : 1;
    ssize_t peek = vio_net_backend_rx_peek(&b, q);
    CHECK(peek == 14 + 20 + 8 + 500, "rx_peek %zd", peek);
    CHECK(vio_net_backend_rx_peek(&b, q) == peek, "peek consumed the frame");
    uint8_t small[100];
    struct iovec iov = {small, sizeof(small)};
    CHECK(vio_net_backend_rx(&b, q, NULL, &iov, 1) == -EMSGSIZE, "short buffer");
    ping(g, 0, 200, 500);
    CHECK(wait_frame(g, is_echo_reply, &m, 3000), "reply after -EMSGSIZE");
    note("rx_peek gave %zd, short buffer -EMSGSIZE", peek);

    /* VLAN: tag re-inserted on rx */
    vlan_frame_check(g, "veth1");

    /* receive modes */
    CHECK(vio_net_backend_set_rx_mode(&b, VIO_NET_RX_ALLMULTI) == 0, "allmulti");
    CHECK(iface_flags("veth0") & IFF_ALLMULTI, "veth0 not allmulti");
    CHECK(iface_flags("veth0") & IFF_PROMISC, "cfg->promisc must stay");
    CHECK(vio_net_backend_set_rx_mode(&b, 0) == 0, "mode 0");
    CHECK(!(iface_flags("veth0") & IFF_ALLMULTI), "allmulti not dropped");
    CHECK(vio_net_backend_set_rx_mode(&b, 0x80) == -EINVAL, "bad flags");

    guest_offload_suite(g, "af_packet");

    CHECK(lc.n[VIO_LOG_ERROR] == 0, "unexpected error logs");
    vio_net_backend_destroy(&b);
    CHECK(!(iface_flags("veth0") & IFF_PROMISC), "promiscuous mode not released");

    /* single queue pair, not promiscuous: frames to the guest MAC still arrive (veth
     * hands every frame to packet sockets) */
    c = base_cfg("veth0", 1, &lc);
    rc = vio_net_packet_open(&c, &b);
    CHECK(rc == 0, "reopen: %s", strerror(-rc));
    CHECK(!(iface_flags("veth0") & IFF_PROMISC), "promiscuous without cfg->promisc");
    guest_init(g, &b, 78);
    arp_resolve(g, 0);
    ping_round_trips(g, 3);
    vio_net_backend_destroy(&b);
    return 0;
}

/* Shared by both vanish tests: link down is not a vanish; deletion is, logged once. */
static void vanish_checks(struct guest *g, struct log_count *lc, const char *del_cmd,
                          const char *down_cmd, const char *up_cmd, bool rx_first)
{
    struct vio_net_backend *b = g->b;
    arp_resolve(g, 0);
    ping_round_trips(g, 2);

    sh("%s", down_cmd);
    CHECK(vio_net_backend_link_status(b) == 0, "link status while down");
    uint8_t buf[2048];
    memset(buf, 0xff, 6); /* a broadcast frame */
    memcpy(buf + 6, g->mac, 6);
    memset(buf + 12, 0x88, 48);
    struct iovec iov = {buf, 60};
    int rc = vio_net_backend_tx(b, 0, NULL, &iov, 1);
    CHECK(rc == -ENETDOWN, "tx while down: %d", rc);
    iov.iov_len = sizeof(buf);
    ssize_t n = vio_net_backend_rx(b, 0, NULL, &iov, 1);
    CHECK(n == -EAGAIN, "rx while down: %zd", n);
    sh("%s", up_cmd);
    for (int i = 0; i < 50 && vio_net_backend_link_status(b) != 1; i++)
        usleep(20000);
    CHECK(vio_net_backend_link_status(b) == 1, "link status after up");
    arp_resolve(g, 0);
    ping_round_trips(g, 2);
    CHECK(lc->n[VIO_LOG_ERROR] == 0, "link down/up logged as an error");
    note("link down: tx -ENETDOWN, rx -EAGAIN, link_status 0; up again: traffic flows");

    drain(g, 100);
    sh("%s", del_cmd);
    iov.iov_len = 60;
    for (int i = 0; i < 100; i++) {
        if (rx_first || i > 0) {
            n = vio_net_backend_rx(b, 0, NULL, &iov, 1);
            CHECK(n == -ENODEV, "rx after delete (%d): %zd", i, n);
        }
        rc = vio_net_backend_tx(b, 0, NULL, &iov, 1);
        CHECK(rc == -ENODEV, "tx after delete (%d): %d", i, rc);
        if (b->queue_pairs > 1)
            CHECK(vio_net_backend_tx(b, 1, NULL, &iov, 1) == -ENODEV, "tx on queue pair 1");
    }
    CHECK(vio_net_backend_link_status(b) == 0, "link status after delete");
    CHECK(vio_net_backend_configure(b, 0) == -ENODEV || vio_net_backend_configure(b, 0) == 0,
          "configure after delete");
    CHECK(lc->n[VIO_LOG_ERROR] == 1, "vanish logged %u times, want once", lc->n[VIO_LOG_ERROR]);
    note("interface deleted: tx/rx -ENODEV, link_status 0, logged once");
}

static int test_tap_vanish(void)
{
    struct log_count lc = {0};
    struct vio_net_backend b = {0};
    for (int rx_first = 0; rx_first < 2; rx_first++) {
        memset(&lc, 0, sizeof(lc));
        struct vio_net_backend_config c = base_cfg("viotap3", 2, &lc);
        int rc = vio_net_tap_open(&c, &b);
        CHECK(rc == 0, "vio_net_tap_open: %s", strerror(-rc));
        tap_setup_kernel_side("viotap3", 77);
        guest_init(&G, &b, 77);
        vanish_checks(&G, &lc, "ip link del viotap3", "ip link set viotap3 down",
                      "ip link set viotap3 up", rx_first);
        vio_net_backend_destroy(&b);
    }
    return 0;
}

static int test_packet_vanish(void)
{
    struct log_count lc = {0};
    struct vio_net_backend b = {0};
    for (int rx_first = 0; rx_first < 2; rx_first++) {
        memset(&lc, 0, sizeof(lc));
        veth_setup();
        struct vio_net_backend_config c = base_cfg("veth0", 2, &lc);
        int rc = vio_net_packet_open(&c, &b);
        CHECK(rc == 0, "vio_net_packet_open: %s", strerror(-rc));
        guest_init(&G, &b, 78);
        vanish_checks(&G, &lc, "ip link del veth1", "ip link set veth0 down", "ip link set veth0 up",
                      rx_first);
        vio_net_backend_destroy(&b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } tests[] = {
        {"tap", test_tap},
        {"tap-offload", test_tap_offload},
        {"packet", test_packet},
        {"tap-vanish", test_tap_vanish},
        {"packet-vanish", test_packet_vanish},
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s tap|tap-offload|packet|tap-vanish|packet-vanish\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (strcmp(argv[1], tests[i].name) == 0) {
            g_test = tests[i].name;
            int rc = tests[i].fn();
            if (rc == 0)
                note("PASS");
            return rc;
        }
    }
    fprintf(stderr, "unknown test %s\n", argv[1]);
    return 2;
}
