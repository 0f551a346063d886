/* SPDX-License-Identifier: MIT */
/*
 * vhost_net_guest_tool: the kernel vhost frontend (virtio/vhost.h, VIO_VHOST_KERNEL) against
 * the real Linux vhost_net + tun, inside the QEMU guest of tests/integration/vhost_net_guest.sh
 * (the build machines have no /dev/vhost-net). Linked statically with libvirtio.a.
 *
 * This program plays the hypervisor: it owns "guest memory" (an anonymous mapping whose
 * guest-physical base differs from its address here, so every buffer goes through the
 * kernel's memory-table translation), drives both rings itself with the core's driver-side
 * queues (queue.h, vio_drvq_*), and hands vhost-net the memory table, the rings, a kick / call
 * / err eventfd per ring and a tap fd (tap backend + vio_net_tap_vhost_fd()).
 *
 *  1. SET_OWNER, features (VERSION_1, MRG_RXBUF when offered), memory table, dirty-log base
 *     and fd, rings 0 (rx) and 1 (tx), NET_SET_BACKEND; then the tap gets 10.99.0.1/24 and
 *     goes up (IPv6 off, so the kernel sends nothing of its own).
 *  2. An ARP request for 10.99.0.1 from 02:00:00:00:00:02 / 10.99.0.2 goes out on the tx ring;
 *     the guest kernel's ARP reply arrives on the rx ring (call eventfd) and is compared byte
 *     by byte with the reply it must be. Then 3 ICMP echo requests; each echo reply is checked
 *     byte by byte (addresses, id, seq, payload) and its IP and ICMP checksums verified.
 *  3. The tap's rx_packets / tx_packets equal the frames sent / received on the rings.
 *  4. Both rings stopped (NET_SET_BACKEND -1): GET_VRING_BASE equals the avail entries used.
 *  5. Hostile: overlapping regions (refused by us before the ioctl; what the kernel says to
 *     the same table is printed), a region in kernel address space (the kernel refuses the
 *     table), a ring index the device lacks (the kernel refuses), a ring outside mapped memory
 *     (the kernel refuses NET_SET_BACKEND), a descriptor outside the memory table (the ring
 *     stops, the err eventfd fires, nothing reaches the tap); each error logged with its ioctl.
 *  6. IOTLB (when the kernel offers ACCESS_PLATFORM and IOTLB_MSG_V2): update + invalidate.
 *
 * Prints "PASS: what" / "FAIL: what" lines; exits 0 when no FAIL (the reason of the first FAIL
 * goes to /run/vio-reason for the guest's /init).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/vhost.h>

#include "virtio/mem.h"
#include "virtio/net_backend.h"
#include "virtio/queue.h"
#include "virtio/vhost.h"

#define TAPNAME "viovh0"
#define F_VERSION_1 32u
#define F_MRG_RXBUF 15u
#define F_ACCESS_PLATFORM 33u
#define HDR 12u              /* virtio_net_hdr_v1 */
#define QSIZE 256u
#define RXBUFS 64u
#define BUFSZ 2048u
#define MEMSZ (2u << 20)      /* 2 MiB of "guest memory" */
#define GPA_BASE 0x40000000ull /* its guest-physical address */
#define RING_OFF(i) ((size_t)(i) * 0x10000u)
#define RXBUF_OFF 0x40000u
#define TXBUF_OFF 0x100000u
#define WAIT_MS 15000

static const uint8_t our_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
static const uint8_t our_ip[4] = {10, 99, 0, 2};
static const uint8_t tap_ip[4] = {10, 99, 0, 1};

static int failures;
static char last_log[4096]; /* lines the frontend logged since log_clear() */

static void log_clear(void)
{
    last_log[0] = 0;
}

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "  libvirtio %s (%d): %s\n", object ? object : "-", level, msg);
    size_t n = strlen(last_log);
    snprintf(last_log + n, sizeof(last_log) - n, "%s\n", msg);
}

static void pass(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("PASS: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    printf("FAIL: %s\n", buf);
    fflush(stdout);
    if (failures++ == 0) {
        FILE *f = fopen("/run/vio-reason", "w");
        if (f) {
            fprintf(f, "vhost_net_guest_tool: %s\n", buf);
            fclose(f);
        }
    }
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            pass(__VA_ARGS__);                                                                     \
        else                                                                                       \
            fail(__VA_ARGS__);                                                                     \
    } while (0)

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
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

/* RFC 1071 checksum over @p len bytes (0 when the bytes already carry a valid checksum). */
static uint16_t csum(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)get16(p + i);
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static uint64_t read_stat(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", TAPNAME, name);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (!f || fscanf(f, "%llu", &v) != 1)
        v = ~0ull;
    if (f)
        fclose(f);
    return v;
}

static void write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (write(fd, s, strlen(s)) < 0)
        fprintf(stderr, "  %s: %s\n", path, strerror(errno));
    close(fd);
}

/* ---- the "guest": memory and two driver-side rings ---------------------------------------- */

struct ring {
    struct vio_drvq *q;
    uint64_t desc, avail, used; /* guest-physical */
    int kick, call, err;
};

struct guest {
    uint8_t *mem; /* MEMSZ bytes at GPA_BASE */
    struct vio_mem *map;
    struct ring r[2]; /* 0 rx, 1 tx */
    uint64_t features;
    unsigned tx_sent, rx_got, rx_other;
};

static uint64_t uva(const struct guest *g, uint64_t gpa)
{
    return (uint64_t)(uintptr_t)g->mem + (gpa - GPA_BASE);
}

static int guest_init(struct guest *g)
{
    memset(g, 0, sizeof(*g));
    g->mem = mmap(NULL, MEMSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                  -1, 0);
    if (g->mem == MAP_FAILED)
        return -errno;
    int rc = vio_mem_new(4, &g->map);
    if (rc)
        return rc;
    struct vio_mem_region mr = {.guest_addr = GPA_BASE, .size = MEMSZ,
                                .user_addr = (uint64_t)(uintptr_t)g->mem, .host_ptr = g->mem};
    return vio_mem_add(g->map, &mr);
}

static int ring_init(struct guest *g, unsigned i)
{
    struct ring *r = &g->r[i];
    size_t doff, uoff;
    vio_split_ring_layout(QSIZE, 4, &doff, &uoff);
    r->desc = GPA_BASE + RING_OFF(i);
    r->avail = r->desc + doff;
    r->used = r->desc + uoff;
    struct vio_drvq_config c = {.struct_size = sizeof(c), .size = QSIZE, .index = (uint16_t)i,
                                .name = i ? "tx" : "rx", .features = g->features, .mem = g->map,
                                .desc = r->desc, .driver = r->avail, .device = r->used,
                                .log = log_cb};
    int rc = vio_drvq_new(&c, &r->q);
    if (rc)
        return rc;
    r->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return r->kick < 0 || r->call < 0 || r->err < 0 ? -errno : 0;
}

static void ring_fini(struct ring *r)
{
    vio_drvq_free(r->q);
    r->q = NULL;
    for (int *fd = &r->kick; fd <= &r->err; fd++)
        if (*fd >= 0)
            close(*fd);
}

static void kick(struct ring *r)
{
    if (vio_drvq_kick_prepare(r->q)) {
        uint64_t one = 1;
        if (write(r->kick, &one, sizeof(one)) != sizeof(one))
            fprintf(stderr, "  kick: %s\n", strerror(errno));
    }
}

static bool drain_fd(int fd)
{
    uint64_t v;
    return read(fd, &v, sizeof(v)) == sizeof(v);
}

/* Hands vhost ring @p i: num, base 0, addresses, kick, call, err. */
static int vhost_ring(struct vio_vhost *v, struct guest *g, unsigned i)
{
    struct ring *r = &g->r[i];
    struct vio_vhost_vring_addr a = {.desc = uva(g, r->desc), .avail = uva(g, r->avail),
                                     .used = uva(g, r->used), .log_guest_addr = r->used};
    int rc;
    if ((rc = vio_vhost_set_vring_num(v, i, QSIZE)) || (rc = vio_vhost_set_vring_base(v, i, 0)) ||
        (rc = vio_vhost_set_vring_addr(v, i, &a)) || (rc = vio_vhost_set_vring_kick(v, i, r->kick)) ||
        (rc = vio_vhost_set_vring_call(v, i, r->call)) || (rc = vio_vhost_set_vring_err(v, i, r->err)))
        return rc;
    return 0;
}

static int post_rx(struct guest *g, unsigned slot)
{
    struct vio_sg sg = {.addr = GPA_BASE + RXBUF_OFF + (uint64_t)slot * BUFSZ, .len = BUFSZ};
    return vio_drvq_add(g->r[0].q, &sg, 0, 1, (void *)(uintptr_t)(slot + 1));
}

/* Sends one frame from tx slot (tx_sent % 64): zeroed header + frame in one descriptor. */
static int send_frame(struct guest *g, const uint8_t *frame, size_t len)
{
    unsigned slot = g->tx_sent % 64u;
    uint64_t gpa = GPA_BASE + TXBUF_OFF + (uint64_t)slot * BUFSZ;
    uint8_t *p = g->mem + (gpa - GPA_BASE);
    memset(p, 0, HDR);
    memcpy(p + HDR, frame, len);
    struct vio_sg sg = {.addr = gpa, .len = (uint32_t)(HDR + len)};
    int rc = vio_drvq_add(g->r[1].q, &sg, 1, 0, (void *)(uintptr_t)(slot + 1));
    if (rc)
        return rc;
    g->tx_sent++;
    kick(&g->r[1]);
    return 0;
}

/* Frees the tx buffers vhost used. */
static void reap_tx(struct guest *g)
{
    void *tok;
    uint32_t len;
    drain_fd(g->r[1].call);
    while (vio_drvq_get_used(g->r[1].q, &tok, &len) == 0) {
    }
}

typedef bool (*frame_fn)(struct guest *g, const uint8_t *f, size_t len, void *ctx);

/* Receives frames until @p fn returns true for one or @p ms pass; every frame received is
 * counted, its buffer posted again. Returns true when @p fn accepted a frame. */
static bool receive_until(struct guest *g, frame_fn fn, void *ctx, int ms)
{
    long end = now_ms() + ms;
    bool done = false;
    while (!done) {
        void *tok;
        uint32_t len;
        int rc;
        while (!done && (rc = vio_drvq_get_used(g->r[0].q, &tok, &len)) == 0) {
            unsigned slot = (unsigned)((uintptr_t)tok - 1);
            const uint8_t *b = g->mem + RXBUF_OFF + (size_t)slot * BUFSZ;
            g->rx_got++;
            if (len < HDR || len > BUFSZ) {
                fail("rx buffer %u: used length %u", slot, len);
            } else {
                uint16_t nb = (uint16_t)(b[10] | b[11] << 8);
                if (vio_has_feature(g->features, F_MRG_RXBUF) && nb != 1)
                    fail("rx frame: num_buffers %u in the header, want 1", nb);
                if (fn(g, b + HDR, len - HDR, ctx))
                    done = true;
                else
                    g->rx_other++;
            }
            post_rx(g, slot);
            kick(&g->r[0]);
        }
        if (done)
            break;
        if (vio_drvq_is_broken(g->r[0].q)) {
            fail("rx ring broken: %s", vio_violation_name(vio_drvq_violation(g->r[0].q)));
            break;
        }
        long left = end - now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = g->r[0].call, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) > 0)
            drain_fd(g->r[0].call);
        reap_tx(g);
    }
    reap_tx(g);
    return done;
}

/* ---- frames ----------------------------------------------------------------------------------- */

static size_t build_arp_request(uint8_t *f)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, our_mac, 6);
    put16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 1);
    memcpy(a + 8, our_mac, 6);
    memcpy(a + 14, our_ip, 4);
    memset(a + 18, 0, 6);
    memcpy(a + 24, tap_ip, 4);
    return 42;
}

struct expect {
    uint8_t frame[256];
    size_t len;
    const char *what;
};

static void expect_arp_reply(struct expect *e, const uint8_t tap_mac[6])
{
    uint8_t *f = e->frame;
    memcpy(f, our_mac, 6);
    memcpy(f + 6, tap_mac, 6);
    put16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 2);
    memcpy(a + 8, tap_mac, 6);
    memcpy(a + 14, tap_ip, 4);
    memcpy(a + 18, our_mac, 6);
    memcpy(a + 24, our_ip, 4);
    e->len = 42;
    e->what = "ARP reply";
}

static void dump(const char *what, const uint8_t *f, size_t len)
{
    fprintf(stderr, "  %s (%zu bytes):", what, len);
    for (size_t i = 0; i < len && i < 98; i++)
        fprintf(stderr, "%s%02x", i % 16 ? " " : "\n   ", f[i]);
    fprintf(stderr, "\n");
}

/* The ARP reply: every byte as expected. */
static bool match_arp(struct guest *g, const uint8_t *f, size_t len, void *ctx)
{
    (void)g;
    struct expect *e = ctx;
    if (len >= 14 && get16(f + 12) == 0x0806 && len >= 22 && get16(f + 20) == 2) {
        if (len == e->len && memcmp(f, e->frame, len) == 0)
            return true;
        dump("ARP reply differs, got", f, len);
        dump("want", e->frame, e->len);
        fail("ARP reply not byte-identical to the expected one");
        return true; /* it was the reply: stop waiting */
    }
    dump("other frame while waiting for the ARP reply", f, len < 64 ? len : 64);
    return false;
}

/* Any frame: counted by receive_until(), shown, never the one waited for. */
static bool match_none(struct guest *g, const uint8_t *f, size_t len, void *ctx)
{
    (void)g;
    (void)ctx;
    dump("late frame", f, len < 64 ? len : 64);
    return false;
}

#define ICMP_ID 0x5643
#define ICMP_PAYLOAD 56u

static size_t build_icmp(uint8_t *f, const uint8_t dst_mac[6], uint16_t seq, bool reply,
                         const uint8_t *src_ip, const uint8_t *dst_ip, const uint8_t *src_mac,
                         uint16_t ip_id, uint8_t ttl)
{
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, src_mac, 6);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + 8 + ICMP_PAYLOAD));
    put16(ip + 4, ip_id);
    put16(ip + 6, 0x4000); /* DF, as Linux sets on echo requests (and mirrors to replies) */
    ip[8] = ttl;
    ip[9] = 1;
    memcpy(ip + 12, src_ip, 4);
    memcpy(ip + 16, dst_ip, 4);
    put16(ip + 10, csum(ip, 20));
    uint8_t *ic = ip + 20;
    ic[0] = reply ? 0 : 8;
    ic[1] = 0;
    put16(ic + 2, 0);
    put16(ic + 4, ICMP_ID);
    put16(ic + 6, seq);
    for (unsigned i = 0; i < ICMP_PAYLOAD; i++)
        ic[8 + i] = (uint8_t)(seq * 31u + i * 7u + 0x20u);
    put16(ic + 2, csum(ic, 8 + ICMP_PAYLOAD));
    return 14 + 20 + 8 + ICMP_PAYLOAD;
}

struct icmp_expect {
    const uint8_t *tap_mac;
    uint16_t seq;
    bool ok;
};

/* An echo reply for seq: Ethernet addresses, IPv4 addresses and protocol, valid IP and ICMP
 * checksums, type 0 code 0, id, seq and the payload byte for byte. The IP id and TTL are the
 * kernel's choice and not compared. */
static bool match_icmp(struct guest *g, const uint8_t *f, size_t len, void *ctx)
{
    (void)g;
    struct icmp_expect *x = ctx;
    if (len < 14 + 20 || get16(f + 12) != 0x0800 || f[14 + 9] != 1) {
        dump("other frame while waiting for an echo reply", f, len < 64 ? len : 64);
        return false;
    }
    uint8_t want[256];
    const uint8_t *ip = f + 14;
    size_t wl = build_icmp(want, our_mac, x->seq, true, tap_ip, our_ip, x->tap_mac,
                           get16(ip + 4), ip[8]);
    /* the flags field is the kernel's too (it copies DF from the request in practice) */
    want[14 + 6] = ip[6];
    want[14 + 7] = ip[7];
    put16(want + 14 + 10, 0);
    put16(want + 14 + 10, csum(want + 14, 20));
    x->ok = len == wl && memcmp(f, want, wl) == 0 && csum(ip, 20) == 0 &&
            csum(ip + 20, len - 34) == 0;
    if (!x->ok) {
        dump("echo reply differs, got", f, len);
        dump("want", want, wl);
    }
    return true;
}

/* ---- tap setup -------------------------------------------------------------------------------- */

static int tap_up(uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    int rc = 0;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAPNAME);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, tap_ip, 4);
    if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
        rc = -errno;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0xffffff00u);
    if (!rc && ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
        rc = -errno;
    if (!rc && ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        rc = -errno;
    ifr.ifr_flags |= IFF_UP;
    if (!rc && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        rc = -errno;
    if (!rc && ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
        rc = -errno;
    if (!rc)
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    close(s);
    return rc;
}

static struct vio_vhost *open_vhost(void)
{
    struct vio_vhost_kernel_config c = {.struct_size = sizeof(c), .path = NULL, .fd = -1,
                                        .log = log_cb};
    struct vio_vhost *v = NULL;
    int rc = vio_vhost_kernel_open(&c, &v);
    if (rc) {
        fail("vio_vhost_kernel_open(/dev/vhost-net): %s", strerror(-rc));
        return NULL;
    }
    return v;
}

/* ---- 5. hostile tables and rings -------------------------------------------------------------- */

static bool log_has(const char *s)
{
    return strstr(last_log, s) != NULL;
}

static void hostile(struct guest *g, int tapfd, uint64_t features)
{
    struct vio_vhost *v = open_vhost();
    if (!v)
        return;
    int rc = vio_vhost_set_owner(v);
    CHECK(rc == 0, "hostile device: VHOST_SET_OWNER on a second /dev/vhost-net");
    if (vio_vhost_set_features(v, features) != 0)
        fail("hostile device: VHOST_SET_FEATURES");

    /* (a) overlapping regions: refused before the ioctl */
    struct vio_vhost_mem_region ov[2] = {
        {.guest_addr = GPA_BASE, .size = MEMSZ, .user_addr = uva(g, GPA_BASE), .fd = -1},
        {.guest_addr = GPA_BASE + MEMSZ / 2, .size = MEMSZ / 2,
         .user_addr = uva(g, GPA_BASE), .fd = -1}};
    log_clear();
    rc = vio_vhost_set_mem_table(v, ov, 2);
    CHECK(rc == -EINVAL && log_has("overlap"),
          "overlapping memory regions refused before the ioctl (%d, logged: %s)", rc,
          log_has("overlap") ? "overlap" : "nothing");
    /* what the kernel itself does with that table, for the record (not asserted) */
    {
        union {
            struct vhost_memory m;
            unsigned char b[sizeof(struct vhost_memory) + 2 * sizeof(struct vhost_memory_region)];
        } u;
        memset(&u, 0, sizeof(u));
        u.m.nregions = 2;
        for (unsigned i = 0; i < 2; i++) {
            u.m.regions[i].guest_phys_addr = ov[i].guest_addr;
            u.m.regions[i].memory_size = ov[i].size;
            u.m.regions[i].userspace_addr = ov[i].user_addr;
        }
        int raw = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
        int r = raw < 0 || ioctl(raw, VHOST_SET_OWNER, NULL) < 0 ? -errno
                : ioctl(raw, VHOST_SET_MEM_TABLE, &u.m) < 0      ? -errno
                                                                 : 0;
        printf("INFO: the kernel, given the same overlapping table by a raw ioctl: %s\n",
               r ? strerror(-r) : "accepted it (the frontend's own check is what refuses it)");
        if (raw >= 0)
            close(raw);
    }

    /* (b) a region in kernel address space. The kernel checks a table against the rings
     * that run: with none running it takes the table, and refuses the ring that would use
     * it; with one running it refuses the table. */
    struct vio_vhost_mem_region kern = {.guest_addr = GPA_BASE, .size = MEMSZ,
                                        .user_addr = 0xffff888000000000ull, .fd = -1};
    struct vio_vhost_mem_region good = {.guest_addr = GPA_BASE, .size = MEMSZ,
                                        .user_addr = uva(g, GPA_BASE), .fd = -1};
    /* ring 1's addresses: the (now idle) tx ring memory of the first device */
    size_t doff, uoff;
    vio_split_ring_layout(QSIZE, 4, &doff, &uoff);
    uint64_t r1 = GPA_BASE + RING_OFF(1);
    memset(g->mem + RING_OFF(1), 0, uoff + 6 + 8 * QSIZE); /* empty: nothing to send again */
    struct vio_vhost_vring_addr ra = {.desc = uva(g, r1), .avail = uva(g, r1 + doff),
                                      .used = uva(g, r1 + uoff)};
    int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vio_vhost_set_vring_num(v, 1, QSIZE) || vio_vhost_set_vring_base(v, 1, 0) ||
        vio_vhost_set_vring_addr(v, 1, &ra) || vio_vhost_set_vring_kick(v, 1, kfd))
        fail("hostile device: ring 1 setup");
    log_clear();
    int t1 = vio_vhost_set_mem_table(v, &kern, 1);
    int s1 = t1 ? t1 : vio_vhost_net_set_backend(v, 1, tapfd);
    printf("INFO: table with a kernel-address region, no ring running: SET_MEM_TABLE %s, "
           "then NET_SET_BACKEND %s\n", t1 ? strerror(-t1) : "accepted",
           t1 ? "not tried" : (s1 ? strerror(-s1) : "accepted"));
    CHECK(s1 < 0 && (log_has("VHOST_SET_MEM_TABLE(1 region): ") ||
                     log_has("VHOST_NET_SET_BACKEND(ring 1): ")),
          "memory region at a kernel address: the ring that would use it is refused by the "
          "kernel (%s), logged with the ioctl's name", strerror(-s1));
    if (s1 == 0)
        vio_vhost_net_set_backend(v, 1, -1);
    int t2 = vio_vhost_set_mem_table(v, &good, 1);
    int s2 = t2 ? t2 : vio_vhost_net_set_backend(v, 1, tapfd);
    CHECK(t2 == 0 && s2 == 0, "the same device takes a good table and starts ring 1 afterwards");
    log_clear();
    int t3 = vio_vhost_set_mem_table(v, &kern, 1);
    CHECK(t3 < 0 && log_has("VHOST_SET_MEM_TABLE(1 region): "),
          "memory region at a kernel address refused by the kernel while a ring runs: logged as "
          "\"VHOST_SET_MEM_TABLE(1 region): %s\"", strerror(-t3));
    vio_vhost_net_set_backend(v, 1, -1);
    close(kfd);

    /* (c) a ring the device does not have (vhost-net has 2) */
    log_clear();
    rc = vio_vhost_set_vring_num(v, 2, QSIZE);
    CHECK(rc < 0 && log_has("VHOST_SET_VRING_NUM(ring 2): "),
          "ring index 2 refused by the kernel: %s (logged with the ioctl's name)", strerror(-rc));

    /* (d) a ring outside mapped memory: accepted as an address, refused when the ring starts */
    uint8_t *hole = mmap(NULL, 0x10000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hole == MAP_FAILED) {
        fail("mmap: %s", strerror(errno));
    } else {
        munmap(hole, 0x10000);
        uint64_t h = (uint64_t)(uintptr_t)hole;
        struct vio_vhost_vring_addr a = {.desc = h, .avail = h + 0x1000, .used = h + 0x2000};
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        log_clear();
        int r1 = vio_vhost_set_vring_num(v, 1, QSIZE);
        int r2 = r1 ? r1 : vio_vhost_set_vring_addr(v, 1, &a);
        int r3 = r2 ? r2 : vio_vhost_set_vring_kick(v, 1, efd);
        int r4 = r3 ? r3 : vio_vhost_net_set_backend(v, 1, tapfd);
        CHECK(r4 < 0 && log_has("VHOST_NET_SET_BACKEND(ring 1): "),
              "ring in unmapped memory refused by the kernel when it starts: %s, logged as "
              "\"VHOST_NET_SET_BACKEND(ring 1): %s\"", strerror(-r4), strerror(-r4));
        if (r4 == 0)
            vio_vhost_net_set_backend(v, 1, -1);
        close(efd);
    }
    vio_vhost_free(v);

    /* (e) a descriptor outside the memory table: the ring stops, the err eventfd fires */
    v = open_vhost();
    if (!v)
        return;
    struct guest h;
    memcpy(&h, g, sizeof(h)); /* same memory and map, fresh rings */
    h.tx_sent = 0;
    int rc1 = vio_vhost_set_owner(v);
    if (rc1 || vio_vhost_set_features(v, features) || vio_vhost_set_mem_table(v, &good, 1) ||
        ring_init(&h, 1) || vhost_ring(v, &h, 1)) {
        fail("hostile device (e): setup failed");
        vio_vhost_free(v);
        return;
    }
    uint64_t before = read_stat("rx_packets");
    if (vio_vhost_net_set_backend(v, 1, tapfd) != 0) {
        fail("hostile device (e): VHOST_NET_SET_BACKEND");
    } else {
        struct vio_sg sg = {.addr = GPA_BASE + 16 * MEMSZ, .len = 100};
        vio_drvq_add(h.r[1].q, &sg, 1, 0, (void *)1);
        kick(&h.r[1]);
        struct pollfd pfd = {.fd = h.r[1].err, .events = POLLIN};
        int pr = poll(&pfd, 1, WAIT_MS);
        void *tok;
        uint32_t len;
        int used = vio_drvq_get_used(h.r[1].q, &tok, &len);
        CHECK(pr == 1 && used == -EAGAIN && read_stat("rx_packets") == before,
              "descriptor outside the memory table: the kernel signalled the err eventfd (%s), "
              "used nothing (%s) and the tap got nothing (rx_packets %llu -> %llu)",
              pr == 1 ? "yes" : "no", used == -EAGAIN ? "yes" : "no",
              (unsigned long long)before, (unsigned long long)read_stat("rx_packets"));
        vio_vhost_net_set_backend(v, 1, -1);
        unsigned base = 99;
        rc = vio_vhost_get_vring_base(v, 1, &base);
        CHECK(rc == 0 && base == 0, "GET_VRING_BASE of the stopped ring: %u (nothing consumed)",
              base);
    }
    ring_fini(&h.r[1]);
    vio_vhost_free(v);
}

/* ---- 6. IOTLB --------------------------------------------------------------------------------- */

static void iotlb(struct guest *g, uint64_t offered)
{
    struct vio_vhost *v = open_vhost();
    if (!v)
        return;
    uint64_t bf = 0;
    int rc = vio_vhost_set_owner(v);
    if (rc == 0)
        rc = vio_vhost_get_backend_features(v, &bf);
    if (rc) {
        fail("IOTLB: VHOST_SET_OWNER / VHOST_GET_BACKEND_FEATURES: %s", strerror(-rc));
        vio_vhost_free(v);
        return;
    }
    if (!(bf & (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2)) ||
        !vio_has_feature(offered, F_ACCESS_PLATFORM)) {
        printf("INFO: IOTLB not tested: backend features %#llx, ACCESS_PLATFORM %s\n",
               (unsigned long long)bf, vio_has_feature(offered, F_ACCESS_PLATFORM) ? "yes" : "no");
        vio_vhost_free(v);
        return;
    }
    log_clear();
    rc = vio_vhost_iotlb_update(v, 0x100000, 4096, uva(g, GPA_BASE), 3);
    CHECK(rc == -ENOTSUP && log_has("IOTLB_MSG_V2 was not negotiated"),
          "IOTLB update refused before IOTLB_MSG_V2 is negotiated");
    rc = vio_vhost_set_backend_features(v, 1ull << VHOST_BACKEND_F_IOTLB_MSG_V2);
    CHECK(rc == 0, "VHOST_SET_BACKEND_FEATURES(IOTLB_MSG_V2) (offered %#llx)",
          (unsigned long long)bf);
    rc = vio_vhost_set_features(v, vio_feature_bit(F_VERSION_1) | vio_feature_bit(F_ACCESS_PLATFORM));
    CHECK(rc == 0, "VHOST_SET_FEATURES(VERSION_1 | ACCESS_PLATFORM)");
    int u = vio_vhost_iotlb_update(v, 0x100000, 4096, uva(g, GPA_BASE), 3);
    int iv = vio_vhost_iotlb_update(v, 0x100000, 4096, 0, 0);
    CHECK(u == 0 && iv == 0, "IOTLB update and invalidate written as vhost_msg_v2 (%d, %d)", u, iv);
    log_clear();
    rc = vio_vhost_iotlb_update(v, 0x100000, 4096, uva(g, GPA_BASE), 4);
    CHECK(rc == -EINVAL && log_has("IOTLB update: bad arguments"), "IOTLB perm 4 refused");
    vio_vhost_free(v);
}

/* ---- main --------------------------------------------------------------------------------------- */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* No IPv6 on the tap: its router solicitations and MLD reports would be frames of the
     * kernel's own on our rx ring. */
    write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");

    struct guest g;
    int rc = guest_init(&g);
    if (rc) {
        fail("guest memory: %s", strerror(-rc));
        return 1;
    }
    struct vio_net_backend tap = {0};
    struct vio_net_backend_config tc = {.struct_size = sizeof(tc), .ifname = TAPNAME,
                                        .queue_pairs = 1, .log = log_cb};
    rc = vio_net_tap_open(&tc, &tap);
    if (rc) {
        fail("vio_net_tap_open(%s): %s", TAPNAME, strerror(-rc));
        return 1;
    }
    int bad = vio_net_tap_vhost_fd(&tap, 0, 11);
    int bad_qp = vio_net_tap_vhost_fd(&tap, 1, 12);
    CHECK(bad == -EINVAL && bad_qp == -EINVAL,
          "vio_net_tap_vhost_fd refuses header length 11 and queue pair 1");
    int tapfd = vio_net_tap_vhost_fd(&tap, 0, HDR);
    CHECK(tapfd >= 0, "vio_net_tap_vhost_fd(%s, qp 0, 12) = fd %d", TAPNAME, tapfd);
    if (tapfd < 0)
        return 1;

    struct vio_vhost *v = open_vhost();
    if (!v)
        return 1;
    CHECK(vio_vhost_kind(v) == VIO_VHOST_KERNEL, "vio_vhost_kernel_open(/dev/vhost-net)");
    rc = vio_vhost_set_owner(v);
    CHECK(rc == 0, "VHOST_SET_OWNER");
    uint64_t offered = 0;
    rc = vio_vhost_get_features(v, &offered);
    CHECK(rc == 0 && vio_has_feature(offered, F_VERSION_1), "VHOST_GET_FEATURES: %#llx",
          (unsigned long long)offered);
    log_clear();
    rc = vio_vhost_set_features(v, offered | vio_feature_bit(63));
    CHECK(rc == -EINVAL && log_has("were not offered"), "a feature bit not offered is refused");
    g.features = vio_feature_bit(F_VERSION_1);
    if (vio_has_feature(offered, F_MRG_RXBUF))
        g.features |= vio_feature_bit(F_MRG_RXBUF);
    rc = vio_vhost_set_features(v, g.features);
    CHECK(rc == 0, "VHOST_SET_FEATURES %#llx (VERSION_1%s)", (unsigned long long)g.features,
          vio_has_feature(g.features, F_MRG_RXBUF) ? " | MRG_RXBUF" : "");
    struct vio_vhost_mem_region mr = {.guest_addr = GPA_BASE, .size = MEMSZ,
                                      .user_addr = uva(&g, GPA_BASE), .fd = -1};
    rc = vio_vhost_set_mem_table(v, &mr, 1);
    CHECK(rc == 0, "VHOST_SET_MEM_TABLE: gpa %#llx size %u at uva %p", (unsigned long long)GPA_BASE,
          MEMSZ, (void *)g.mem);
    static uint64_t logbits[MEMSZ / 4096 / 64 + 1];
    int logfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int l1 = vio_vhost_set_log_base(v, (uint64_t)(uintptr_t)logbits, -1, sizeof(logbits));
    int l2 = vio_vhost_set_log_fd(v, logfd);
    CHECK(l1 == 0 && l2 == 0, "VHOST_SET_LOG_BASE and VHOST_SET_LOG_FD accepted (%d, %d)", l1, l2);
    vio_vhost_set_log_fd(v, -1);
    for (unsigned i = 0; i < 2; i++) {
        rc = ring_init(&g, i);
        if (rc) {
            fail("driver ring %u: %s", i, strerror(-rc));
            return 1;
        }
        rc = vhost_ring(v, &g, i);
        CHECK(rc == 0, "ring %u: VHOST_SET_VRING_NUM/BASE/ADDR/KICK/CALL/ERR", i);
    }
    CHECK(vio_vhost_set_vring_enable(v, 0, true) == -ENOTSUP, "set_vring_enable: -ENOTSUP");
    for (unsigned s = 0; s < RXBUFS; s++)
        post_rx(&g, s);
    kick(&g.r[0]);
    int b0 = vio_vhost_net_set_backend(v, 0, tapfd);
    int b1 = vio_vhost_net_set_backend(v, 1, tapfd);
    CHECK(b0 == 0 && b1 == 0, "VHOST_NET_SET_BACKEND rx and tx with the tap fd");
    uint8_t tap_mac[6];
    rc = tap_up(tap_mac);
    CHECK(rc == 0, "%s up with 10.99.0.1/24, MAC %02x:%02x:%02x:%02x:%02x:%02x", TAPNAME,
          tap_mac[0], tap_mac[1], tap_mac[2], tap_mac[3], tap_mac[4], tap_mac[5]);
    if (b0 || b1 || rc)
        return 1;
    uint64_t rx0 = read_stat("rx_packets"), tx0 = read_stat("tx_packets");

    /* 2. ARP */
    uint8_t frame[256];
    struct expect e;
    expect_arp_reply(&e, tap_mac);
    size_t fl = build_arp_request(frame);
    rc = send_frame(&g, frame, fl);
    bool got = rc == 0 && receive_until(&g, match_arp, &e, WAIT_MS);
    CHECK(got, "ARP request sent on the tx ring; the kernel's ARP reply came back on the rx ring, "
               "byte-identical (42 bytes)");

    /* ICMP echo, 3 times */
    unsigned ok = 0;
    for (uint16_t seq = 1; seq <= 3; seq++) {
        fl = build_icmp(frame, tap_mac, seq, false, our_ip, tap_ip, our_mac, (uint16_t)(0x100 + seq),
                        64);
        struct icmp_expect x = {.tap_mac = tap_mac, .seq = seq};
        if (send_frame(&g, frame, fl) == 0 && receive_until(&g, match_icmp, &x, WAIT_MS) && x.ok)
            ok++;
        else
            fail("ICMP echo seq %u: no matching reply", seq);
    }
    CHECK(ok == 3, "3 ICMP echo replies (id %#x, seq 1..3, %u-byte payload) verified byte by "
                   "byte, IP and ICMP checksums valid", ICMP_ID, ICMP_PAYLOAD);
    /* 4 (first half). stop both rings (anything the kernel sent until then is on the rx ring: collect
     * it), then read where vhost stopped */
    b0 = vio_vhost_net_set_backend(v, 0, -1);
    b1 = vio_vhost_net_set_backend(v, 1, -1);
    receive_until(&g, match_none, NULL, 0);

    /* 3. counters (final: the rings are stopped) */
    uint64_t rx1 = read_stat("rx_packets"), tx1 = read_stat("tx_packets");
    CHECK(rx1 - rx0 == g.tx_sent, "tap rx_packets +%llu == frames sent on the tx ring (%u)",
          (unsigned long long)(rx1 - rx0), g.tx_sent);
    CHECK(tx1 - tx0 == g.rx_got, "tap tx_packets +%llu == frames received on the rx ring (%u, %u "
                                 "of them not ARP/ICMP replies)",
          (unsigned long long)(tx1 - tx0), g.rx_got, g.rx_other);

    unsigned base0 = 0, base1 = 0;
    int g0 = vio_vhost_get_vring_base(v, 0, &base0);
    int g1 = vio_vhost_get_vring_base(v, 1, &base1);
    CHECK(b0 == 0 && b1 == 0 && g0 == 0 && g1 == 0 && base1 == g.tx_sent && base0 == g.rx_got,
          "rings stopped: GET_VRING_BASE tx %u (sent %u), rx %u (received %u)", base1, g.tx_sent,
          base0, g.rx_got);
    log_clear();
    unsigned b2;
    rc = vio_vhost_get_vring_base(v, 2, &b2);
    CHECK(rc < 0 && log_has("VHOST_GET_VRING_BASE(ring 2): "),
          "GET_VRING_BASE of ring 2 refused by the kernel: %s", strerror(-rc));
    rc = vio_vhost_reset(v);
    CHECK(rc == 0, "VHOST_RESET_OWNER");
    vio_vhost_free(v);
    ring_fini(&g.r[0]);
    ring_fini(&g.r[1]);

    /* 5, 6 */
    hostile(&g, tapfd, g.features);
    iotlb(&g, offered);

    vio_net_backend_destroy(&tap);
    vio_mem_free(g.map);
    munmap(g.mem, MEMSZ);
    if (logfd >= 0)
        close(logfd);
    printf("vhost_net_guest_tool: %s (%d failure%s)\n", failures ? "FAILED" : "all passed",
           failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
