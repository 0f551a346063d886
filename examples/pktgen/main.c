/* SPDX-License-Identifier: MIT */
/*
 * vio-pktgen: a virtio-user style traffic generator on the driver side of our rings.
 *
 * It plays the guest and the hypervisor at once: its "guest RAM" is a memfd (shareable with a
 * vhost-user backend), the virtio-net driver is the library's vio_net_driver, and the device is a
 * vhost backend reached through the vhost frontend (virtio/vhost.h): a vhost-user socket (DPDK's
 * net_vhost, Open vSwitch, vio-vhost-user-net) or the kernel's /dev/vhost-net with a tap.
 *
 * Every frame carries, after the Ethernet header, a header of its own (magic, origin queue,
 * epoch, length, a check word over sequence number and time, sequence number, CLOCK_MONOTONIC
 * transmit time) and a payload pattern of its origin queue. Frames are written in place into
 * the driver's transmit buffers once and then only patched (sequence, time, check word).
 * What comes back is verified where it lies in the receive buffers (magic, length, check word,
 * payload: three words of every frame, all of every 16th; sequence per origin queue: a
 * reflector such as DPDK's io forwarding returns a queue's frames in order), and
 * the round trip goes into a log-linear histogram (p50 / p99 / p99.9). The rings are busy-polled;
 * with --rate the program sleeps between bursts, woken early by the receive queues' call eventfds.
 *
 * Uses the installed public headers only. See docs/examples.md and --help.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE, clock_nanosleep under -std=c11 */
#endif
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include <virtio/common.h>
#include <virtio/driver.h>
#include <virtio/mem.h>
#include <virtio/net_backend.h>
#include <virtio/net_defs.h>
#include <virtio/net_driver.h>
#include <virtio/status.h>
#include <virtio/vhost.h>

#define PROG "vio-pktgen"

#define GPA_BASE 0x100000000ull   /* where the memfd sits in "guest-physical" space */
#define MAX_PAIRS 64u
#define MIN_FRAME 60u             /* Ethernet minimum without FCS */
#define MAX_FRAME 9216u
#define MAX_BURST 512u
#define ETH_HLEN_ 14u
#define PG_ETHERTYPE 0x88b5u      /* IEEE local experimental */
#define PG_MAGIC 0x50474956u      /* "VIGP" little-endian on the wire */
#define PG_HDR_LEN 32u            /* our header after the Ethernet header */
#define PG_OFF (ETH_HLEN_ + PG_HDR_LEN)
#define PAT_PERIOD 256u

/* ---- latency histogram: log-linear, 16 sub-buckets per power of two (<= 6.25 % error) ---- */
#define HIST_SUB_BITS 4u
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64u * HIST_SUB)

struct hist {
    uint64_t n;
    uint64_t min, max;
    uint64_t b[HIST_BUCKETS];
};

static inline unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (msb - HIST_SUB_BITS + 1u) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1u));
}

/* the middle of bucket @i (its exact value below HIST_SUB) */
static uint64_t hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned msb = i / HIST_SUB - 1u + HIST_SUB_BITS;
    unsigned shift = msb - HIST_SUB_BITS;
    uint64_t low = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
    return low + (((uint64_t)1 << shift) >> 1);
}

static inline void hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    if (h->n++ == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *to, const struct hist *from)
{
    if (!from->n)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        to->b[i] += from->b[i];
    if (to->n == 0 || from->min < to->min)
        to->min = from->min;
    if (from->max > to->max)
        to->max = from->max;
    to->n += from->n;
}

/* the value at quantile @q (0..1), clamped to the exact min / max; 0 for an empty histogram */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- options ---- */

struct opts {
    const char *vu_path;
    bool server;
    bool vhost_net;
    const char *tap;
    const char *vhost_dev;
    unsigned size;
    uint64_t count;       /* 0 = no limit */
    double duration;      /* seconds; 0 = no limit */
    uint64_t rate;        /* frames per second in total; 0 = as fast as possible */
    unsigned queues;
    unsigned burst;
    unsigned queue_size;
    bool json;
    bool quiet;
    bool reconnect;
    double reconnect_timeout;
    uint64_t mem_size;
    bool rx_only;
    bool tx_only;
    bool setup_only;
    bool no_mrg;
    double timeout;       /* connect / accept */
    double drain;         /* seconds to wait for frames in flight at the end */
    int verbosity;
};

/* ---- per queue pair state ---- */

struct qstate {
    /* transmit */
    uint64_t tx;          /* frames handed to the ring */
    uint64_t tx_full;     /* bursts cut short by a full ring */
    uint64_t next_seq;
    /* receive */
    uint64_t rx;          /* frames received (ours and foreign) */
    uint64_t rx_verified;
    uint64_t rx_stale;    /* frames of an earlier epoch (sent before a reconnect) */
    uint64_t rx_foreign;  /* not our ethertype: someone else's frame */
    uint64_t bad_magic, bad_len, bad_payload, bad_queue, out_of_order, duplicate;
    uint64_t gaps;        /* frames skipped in the sequence (lost on the way) */
    /* polling */
    unsigned rx_last;     /* frames the last receive poll returned */
    bool tx_wait;         /* the last transmit poll found the ring full */
    uint8_t tx_skip;      /* transmit polls skipped while waiting */
};

/* sequence tracking per origin queue (a reflector may return a frame on another queue) */
struct seqtrack {
    uint64_t expect;
    bool have;
};

struct app {
    struct opts o;
    /* memory */
    int memfd;
    void *map;
    uint64_t map_size;
    struct vio_mem *mem;
    /* frontend */
    struct vio_vhost *vhost;
    struct vio_vhost_driver *vdrv;
    struct vio_driver drv;
    struct vio_net_driver *nd;
    int tapfd;
    uint64_t features;
    uint64_t pfeatures;
    bool have_pf;
    unsigned rings;
    /* state */
    struct qstate q[MAX_PAIRS];
    uint32_t *tmpl[MAX_PAIRS]; /* per transmit buffer id: epoch + 1 its template was written for */
    /* burst scratch (here, not on the stack: no stack probing per call) */
    struct vio_net_driver_txbuf txb[MAX_BURST];
    uint32_t txlens[MAX_BURST];
    struct vio_net_driver_rxfrm rxf[2 * MAX_BURST];
    uint64_t now;         /* the last time read by a burst */
    struct seqtrack st[MAX_PAIRS];
    uint16_t epoch;
    unsigned reconnects;
    bool lost;            /* the backend vanished (and was not reconnected) */
    bool broken;          /* a ring broke */
    struct hist lat, lat_iv;
    uint64_t t_start;
    double setup_ms, connect_ms;
    uint8_t src[6], dst[6];
};

static volatile sig_atomic_t g_stop;
static atomic_bool g_disconnected;

/* a period-256 permutation of byte values: payload byte i of a frame of queue pair q is
 * pat[pat_base(q) + i] */
static uint8_t pat[PAT_PERIOD + MAX_FRAME];

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_vhost_event(void *opaque, enum vio_vhost_event ev)
{
    (void)opaque;
    if (ev == VIO_VHOST_EV_DISCONNECTED)
        atomic_store(&g_disconnected, true);
}

static int g_verbosity = VIO_LOG_WARN;

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    if (level <= g_verbosity)
        fprintf(stderr, PROG ": %s: %s\n", object ? object : "", msg);
}

/* ---- little-endian helpers for our header ---- */
/* little-endian fields at any alignment: one load or store each */
static inline void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/*
 * Our header after the Ethernet header (all little-endian):
 *   0 magic u32, 4 origin queue u16, 6 epoch u16, 8 frame length u32,
 *   12 check word u32 (pg_check(sequence, transmit time)), 16 sequence u64,
 *   24 transmit time (CLOCK_MONOTONIC ns) u64
 * then the payload: byte i is pat[pat_base(origin queue) + i].
 */

/* ---- feature names (for the log) ---- */

static void feature_names(char *buf, size_t cap, uint64_t f, bool protocol)
{
    static const char *const vn[64] = {
        [0] = "CSUM", [1] = "GUEST_CSUM", [2] = "CTRL_GUEST_OFFLOADS", [3] = "MTU", [5] = "MAC",
        [7] = "GUEST_TSO4", [8] = "GUEST_TSO6", [9] = "GUEST_ECN", [10] = "GUEST_UFO",
        [11] = "HOST_TSO4", [12] = "HOST_TSO6", [13] = "HOST_ECN", [14] = "HOST_UFO",
        [15] = "MRG_RXBUF", [16] = "STATUS", [17] = "CTRL_VQ", [18] = "CTRL_RX",
        [19] = "CTRL_VLAN", [20] = "CTRL_RX_EXTRA", [21] = "GUEST_ANNOUNCE", [22] = "MQ",
        [23] = "CTRL_MAC_ADDR", [24] = "NOTIFY_ON_EMPTY", [27] = "ANY_LAYOUT",
        [28] = "INDIRECT_DESC", [29] = "EVENT_IDX", [30] = "PROTOCOL_FEATURES",
        [32] = "VERSION_1", [33] = "ACCESS_PLATFORM", [34] = "RING_PACKED", [35] = "IN_ORDER",
        [36] = "ORDER_PLATFORM", [37] = "SR_IOV", [38] = "NOTIFICATION_DATA",
        [40] = "RING_RESET", [56] = "HOST_USO", [57] = "HASH_REPORT", [61] = "RSS",
        [62] = "RSC_EXT", [63] = "STANDBY",
    };
    static const char *const pn[64] = {
        [0] = "MQ", [1] = "LOG_SHMFD", [2] = "RARP", [3] = "REPLY_ACK", [4] = "NET_MTU",
        [5] = "BACKEND_REQ", [6] = "CROSS_ENDIAN", [7] = "CRYPTO_SESSION", [8] = "PAGEFAULT",
        [9] = "CONFIG", [10] = "BACKEND_SEND_FD", [11] = "HOST_NOTIFIER",
        [12] = "INFLIGHT_SHMFD", [13] = "RESET_DEVICE", [14] = "INBAND_NOTIFICATIONS",
        [15] = "CONFIGURE_MEM_SLOTS", [16] = "STATUS", [17] = "XEN_MMAP",
        [18] = "SHARED_OBJECT", [19] = "DEVICE_STATE",
    };
    const char *const *names = protocol ? pn : vn;
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned b = 0; b < 64; b++) {
        if (!vio_has_feature(f, b))
            continue;
        int w = names[b] ? snprintf(buf + used, cap - used, "%s%s", used ? " " : "", names[b])
                         : snprintf(buf + used, cap - used, "%sbit%u", used ? " " : "", b);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
}

/* ---- setup ---- */

static int fail(const char *what, int r)
{
    fprintf(stderr, PROG ": %s: %s\n", what, strerror(r < 0 ? -r : r));
    return r < 0 ? r : -r;
}

static int open_tap(const char *name, int *out)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int hdr = 12; /* virtio_net_hdr_v1 / mrg_rxbuf header: the only one we negotiate */
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    /* bring the link up: vhost-net moves nothing through a tap that is down */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        struct ifreq fl;
        memset(&fl, 0, sizeof(fl));
        snprintf(fl.ifr_name, sizeof(fl.ifr_name), "%s", ifr.ifr_name);
        if (ioctl(s, SIOCGIFFLAGS, &fl) == 0 && !(fl.ifr_flags & IFF_UP)) {
            fl.ifr_flags |= IFF_UP;
            (void)ioctl(s, SIOCSIFFLAGS, &fl);
        }
        close(s);
    }
    *out = fd;
    return 0;
}

static struct vio_net_driver_config net_config(const struct app *a)
{
    struct vio_net_driver_config nc = {
        .struct_size = sizeof(nc),
        .features = a->features,
        .queue_pairs = (uint16_t)a->o.queues,
        .queue_size = (uint16_t)a->o.queue_size,
        .mtu = (uint16_t)(a->o.size > 1514 ? a->o.size - ETH_HLEN_ : 1500),
        .log = log_cb,
    };
    return nc;
}

static int setup_memory(struct app *a)
{
    /* the area the net driver needs, sized with the richest features we may negotiate */
    struct app probe = *a;
    probe.features = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX);
    if (!a->o.no_mrg)
        probe.features |= vio_feature_bit(VIO_NET_F_MRG_RXBUF);
    struct vio_net_driver_config nc = net_config(&probe);
    uint64_t need = vio_net_driver_area_size(&nc);
    struct vio_net_driver_config nc2 = nc;
    nc2.features &= ~vio_feature_bit(VIO_NET_F_MRG_RXBUF);
    uint64_t need2 = vio_net_driver_area_size(&nc2);
    if (need2 > need)
        need = need2;
    if (need == 0)
        return fail("vio_net_driver_area_size (bad ring parameters)", -EINVAL);
    uint64_t size = (need + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    if (a->o.mem_size > size)
        size = (a->o.mem_size + 4095) & ~4095ull;
    a->memfd = memfd_create("vio-pktgen", MFD_CLOEXEC);
    if (a->memfd < 0)
        return fail("memfd_create", -errno);
    if (ftruncate(a->memfd, (off_t)size) < 0)
        return fail("ftruncate of the memfd", -errno);
    a->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, a->memfd, 0);
    if (a->map == MAP_FAILED) {
        a->map = NULL;
        return fail("mmap of the memfd", -errno);
    }
    a->map_size = size;
    struct vio_mem_region r = {
        .guest_addr = GPA_BASE,
        .size = size,
        .user_addr = (uint64_t)(uintptr_t)a->map,
        .host_ptr = a->map,
    };
    int e = vio_mem_new(0, &a->mem);
    if (e == 0)
        e = vio_mem_add(a->mem, &r);
    if (e < 0)
        return fail("guest memory map", e);
    return 0;
}

static int setup_frontend(struct app *a)
{
    int e;
    uint64_t t0 = mono_ns();
    if (a->o.vhost_net) {
        e = open_tap(a->o.tap, &a->tapfd);
        if (e < 0) {
            char what[128];
            snprintf(what, sizeof(what), "open tap '%s'%s", a->o.tap,
                     e == -EPERM || e == -EACCES ? " (needs CAP_NET_ADMIN)"
                     : e == -ENOENT ? " (no /dev/net/tun: modprobe tun)" : "");
            return fail(what, e);
        }
        struct vio_vhost_kernel_config kc = {
            .struct_size = sizeof(kc),
            .path = a->o.vhost_dev,
            .fd = -1,
            .log = log_cb,
        };
        e = vio_vhost_kernel_open(&kc, &a->vhost);
        if (e < 0) {
            char what[600];
            snprintf(what, sizeof(what), "open the vhost device %s",
                     a->o.vhost_dev ? a->o.vhost_dev : "/dev/vhost-net");
            return fail(what, e);
        }
    } else {
        struct vio_vhost_user_frontend_config uc = {
            .struct_size = sizeof(uc),
            .path = a->o.vu_path,
            .server = a->o.server,
            .timeout_ms = (int)(a->o.timeout * 1000.0),
            .num_queues = a->rings,
            .reconnect = a->o.reconnect,
            .event = on_vhost_event,
            .event_opaque = a,
            .log = log_cb,
        };
        /* [pktgen-connect] */
        e = vio_vhost_user_connect(&uc, &a->vhost);
        /* [pktgen-connect] */
        if (e < 0) {
            char what[600];
            snprintf(what, sizeof(what), "%s vhost-user backend at %s", a->o.server ? "accept a" : "connect to the",
                     a->o.vu_path);
            return fail(what, e);
        }
        a->have_pf = vio_vhost_get_protocol_features(a->vhost, &a->pfeatures) == 0;
    }
    a->connect_ms = (double)(mono_ns() - t0) / 1e6;

    /* [pktgen-adapter] */
    struct vio_vhost_mem_region reg = {
        .guest_addr = GPA_BASE,
        .size = a->map_size,
        .user_addr = (uint64_t)(uintptr_t)a->map,
        .fd = a->memfd,
        .fd_offset = 0,
    };
    struct vio_vhost_driver_config dc = {
        .struct_size = sizeof(dc),
        .vhost = a->vhost,
        .regions = &reg,
        .num_regions = 1,
        .num_queues = a->rings,
        .max_queue_size = (uint16_t)a->o.queue_size,
        .net_backend_fd = a->o.vhost_net ? a->tapfd : -1,
        .log = log_cb,
    };
    e = vio_vhost_driver_new(&dc, &a->vdrv);
    if (e < 0)
        return fail("vio_vhost_driver_new", e);
    a->drv = vio_vhost_driver_get(a->vdrv);
    /* [pktgen-adapter] */

    /* [pktgen-driver] */
    uint64_t wanted = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX);
    if (!a->o.no_mrg)
        wanted |= vio_feature_bit(VIO_NET_F_MRG_RXBUF);
    /* More than one pair: MQ, as DPDK's virtio_user does. The control queue stays the
     * frontend's (ours has none: every pair is on), so CTRL_VQ is not taken; the backend
     * learns which rings run from SET_VRING_ENABLE. */
    if (a->o.queues > 1 && !a->o.vhost_net)
        wanted |= vio_feature_bit(VIO_NET_F_MQ);
    e = vio_driver_negotiate(&a->drv, wanted, &a->features);
    if (e < 0)
        return fail("feature negotiation (vio_driver_negotiate)", e);

    struct vio_net_driver_config nc = net_config(a);
    nc.mem = a->mem;
    nc.area = GPA_BASE;
    nc.area_size = a->map_size;
    e = vio_net_driver_new(&nc, &a->nd);
    if (e < 0)
        return fail("vio_net_driver_new", e);
    e = vio_net_driver_attach(a->nd, &a->drv);
    if (e < 0)
        return fail("vio_net_driver_attach (queue setup, DRIVER_OK)", e);
    for (unsigned qp = 0; qp < a->o.queues; qp++) {
        e = vio_net_driver_rx_fill(a->nd, qp);
        if (e < 0)
            return fail("vio_net_driver_rx_fill", e);
        (void)vio_net_driver_kick(a->nd, VIO_NET_DRIVER_RXQ(qp));
    }
    /* [pktgen-driver] */
    a->setup_ms = (double)(mono_ns() - t0) / 1e6;

    char fn[512], pn[512];
    feature_names(fn, sizeof(fn), a->features, false);
    if (!a->o.quiet || a->o.setup_only) {
        fprintf(stderr, PROG ": features 0x%" PRIx64 " (%s)\n", a->features, fn);
        if (a->have_pf) {
            feature_names(pn, sizeof(pn), a->pfeatures, true);
            fprintf(stderr, PROG ": protocol features 0x%" PRIx64 " (%s)\n", a->pfeatures, pn);
        }
        fprintf(stderr,
                PROG ": setup: connected in %.3f ms, all %u queues ready in %.3f ms "
                "(memory %" PRIu64 " MiB, queue size %u)\n",
                a->connect_ms, a->rings, a->setup_ms, a->map_size >> 20, a->o.queue_size);
    }
    return 0;
}

static void teardown(struct app *a)
{
    for (unsigned qp = 0; qp < MAX_PAIRS; qp++) {
        free(a->tmpl[qp]);
        a->tmpl[qp] = NULL;
    }
    vio_net_driver_free(a->nd);
    a->nd = NULL;
    vio_vhost_driver_free(a->vdrv);
    a->vdrv = NULL;
    vio_vhost_free(a->vhost);
    a->vhost = NULL;
    if (a->tapfd >= 0)
        close(a->tapfd);
    a->tapfd = -1;
    vio_mem_free(a->mem);
    a->mem = NULL;
    if (a->map)
        munmap(a->map, a->map_size);
    a->map = NULL;
    if (a->memfd >= 0)
        close(a->memfd);
    a->memfd = -1;
}

/* ---- data path ---- */

/* The check word of a frame: binds its sequence number and transmit time together, so a
 * corrupted header field is caught without reading the payload. */
static inline uint32_t pg_check(uint64_t seq, uint64_t tx_ns)
{
    /* a one-bit change in either field changes the fold, and the odd multiplier is a
     * bijection: every such change changes the word */
    uint64_t x = seq ^ (tx_ns << 1 | tx_ns >> 63);
    return ((uint32_t)x ^ (uint32_t)(x >> 32)) * 0x9e3779b1u ^ PG_MAGIC;
}

/* The payload of queue pair @origin's frames: payload byte i is pat[pat_base(origin) + i]. */
static inline unsigned pat_base(unsigned origin)
{
    return (origin * 37u + 11u) % PAT_PERIOD;
}

/* Write the parts of a frame of pair @qp that never change in an epoch (Ethernet header,
 * our header but for check word / sequence / time, payload) into transmit buffer @f. */
static void write_template(const struct app *a, unsigned qp, uint8_t *f)
{
    const unsigned size = a->o.size;
    memcpy(f, a->dst, 6);
    memcpy(f + 6, a->src, 6);
    f[5] = (uint8_t)(f[5] + qp);
    f[11] = (uint8_t)(f[11] + qp);
    f[12] = (uint8_t)(PG_ETHERTYPE >> 8);
    f[13] = (uint8_t)PG_ETHERTYPE;
    uint8_t *ph = f + ETH_HLEN_;
    put32(ph, PG_MAGIC);
    put16(ph + 4, (uint16_t)qp);
    put16(ph + 6, a->epoch);
    put32(ph + 8, size);
    memcpy(f + PG_OFF, &pat[pat_base(qp)], size - PG_OFF);
}

/* Queue up to @n frames on pair @qp at time @now; returns how many. The frames are written
 * in place into the driver's transmit buffers (vio_net_driver_tx_get / _commit): a buffer
 * gets the whole frame the first time it is used in an epoch (its template), afterwards
 * only the check word, the sequence number and the transmit time. */
static unsigned tx_burst(struct app *a, unsigned qp, unsigned n)
{
    struct qstate *s = &a->q[qp];
    struct vio_net_driver_txbuf *b = a->txb;
    uint32_t *lens = a->txlens;
    if (n > MAX_BURST)
        n = MAX_BURST;
    int g = vio_net_driver_tx_get(a->nd, qp, b, n);
    if (g <= 0) {
        if (g == 0) {
            s->tx_full++;
        } else {
            if (g != -EIO && g != -EPROTO)
                fprintf(stderr, PROG ": send on queue pair %u: %s\n", qp, strerror(-g));
            a->broken = true;
        }
        return 0;
    }
    const unsigned size = a->o.size;
    if (b[0].cap < size) {
        fprintf(stderr, PROG ": transmit buffers of %u bytes, frames of %u\n", b[0].cap, size);
        a->broken = true;
        return 0;
    }
    const uint64_t now = mono_ns(); /* the transmit time: read only when there is room */
    a->now = now;
    uint32_t *key = a->tmpl[qp];
    const uint32_t cur = (uint32_t)a->epoch + 1u;
    uint64_t seq = s->next_seq;
    for (int k = 0; k < g; k++) {
        uint8_t *f = b[k].frame;
        if (__builtin_expect(key[b[k].id] != cur, 0)) {
            write_template(a, qp, f);
            key[b[k].id] = cur;
        }
        uint8_t *ph = f + ETH_HLEN_;
        put32(ph + 12, pg_check(seq, now));
        put64(ph + 16, seq);
        put64(ph + 24, now);
        lens[k] = size;
        seq++;
    }
    int c = vio_net_driver_tx_commit(a->nd, qp, b, lens, (unsigned)g, NULL);
    if (c < 0) {
        fprintf(stderr, PROG ": send on queue pair %u: %s\n", qp, strerror(-c));
        a->broken = true;
        return 0;
    }
    s->next_seq = seq;
    s->tx += (unsigned)c;
    (void)vio_net_driver_kick(a->nd, VIO_NET_DRIVER_TXQ(qp));
    return (unsigned)c;
}

/* Payload check: three words on every frame, the whole payload on every PG_FULL_CHECK-th
 * sequence number (see docs/examples.md). */
#define PG_FULL_CHECK 16u

static inline bool payload_ok(const uint8_t *p, const uint8_t *want, size_t n, uint64_t seq)
{
    if (seq % PG_FULL_CHECK == 0 || n < 8)
        return memcmp(p, want, n) == 0;
    uint64_t x, y, diff;
    size_t mid = (n / 2) & ~(size_t)7;
    memcpy(&x, p, 8);
    memcpy(&y, want, 8);
    diff = x ^ y;
    memcpy(&x, p + mid, 8);
    memcpy(&y, want + mid, 8);
    diff |= x ^ y;
    memcpy(&x, p + n - 8, 8);
    memcpy(&y, want + n - 8, 8);
    diff |= x ^ y;
    return diff == 0;
}

static void verify(struct app *a, struct qstate *s, const uint8_t *f, size_t len, uint64_t now)
{
    if (len < ETH_HLEN_ || f[12] != (uint8_t)(PG_ETHERTYPE >> 8) || f[13] != (uint8_t)PG_ETHERTYPE) {
        s->rx_foreign++;
        return;
    }
    if (len < PG_OFF) {
        s->bad_len++;
        return;
    }
    const uint8_t *ph = f + ETH_HLEN_;
    if (get32(ph) != PG_MAGIC) {
        s->bad_magic++;
        return;
    }
    if (get32(ph + 8) != len) {
        s->bad_len++;
        return;
    }
    uint64_t seq = get64(ph + 16);
    uint64_t tx_ns = get64(ph + 24);
    if (get32(ph + 12) != pg_check(seq, tx_ns)) {
        s->bad_payload++; /* sequence or time corrupted */
        return;
    }
    unsigned origin = get16(ph + 4);
    if (origin >= MAX_PAIRS) {
        s->bad_queue++;
        return;
    }
    if (!payload_ok(f + PG_OFF, &pat[pat_base(origin)], len - PG_OFF, seq)) {
        s->bad_payload++;
        return;
    }
    if (get16(ph + 6) != a->epoch) {
        /* sent before the last reconnect (the restarted backend took the ring from its used
         * index on, so frames in flight then may come twice or out of order): intact, counted
         * apart, not timed */
        s->rx_stale++;
        return;
    }
    struct seqtrack *t = &a->st[origin];
    if (!t->have) {
        t->have = true;
    } else if (seq > t->expect) {
        s->gaps += seq - t->expect;
    } else if (seq < t->expect) {
        if (seq + 1 == t->expect)
            s->duplicate++;
        else
            s->out_of_order++;
        return;
    }
    t->expect = seq + 1;
    s->rx_verified++;
    uint64_t d = now >= tx_ns ? now - tx_ns : 0;
    hist_add(&a->lat_iv, d);
}

/* Receive up to @max frames on pair @qp, verified where they lie in the receive buffers
 * (vio_net_driver_recv_burst, zero copy); returns how many. */
static unsigned rx_burst(struct app *a, unsigned qp, unsigned max)
{
    struct qstate *s = &a->q[qp];
    struct vio_net_driver_rxfrm *fr = a->rxf;
    if (max > 2 * MAX_BURST)
        max = 2 * MAX_BURST;
    int n = vio_net_driver_recv_burst(a->nd, qp, fr, max);
    if (n <= 0) {
        if (n < 0)
            a->broken = true; /* -EIO: a ring violation */
        return 0;
    }
    uint64_t now = mono_ns();
    a->now = now;
    s->rx += (unsigned)n;
    for (int k = 0; k < n; k++)
        verify(a, s, fr[k].data, fr[k].len, now); /* from the ethertype on: macswap is fine */
    (void)vio_net_driver_rx_release(a->nd, qp);
    (void)vio_net_driver_kick(a->nd, VIO_NET_DRIVER_RXQ(qp));
    return (unsigned)n;
}

/* ---- totals and reports ---- */

struct totals {
    uint64_t tx, tx_full, rx, verified, stale, foreign, dropped, errors, gaps;
    uint64_t bad_magic, bad_len, bad_payload, out_of_order, duplicate;
};

static struct totals totals(const struct app *a)
{
    struct totals t;
    memset(&t, 0, sizeof(t));
    for (unsigned i = 0; i < a->o.queues; i++) {
        const struct qstate *s = &a->q[i];
        t.tx += s->tx;
        t.tx_full += s->tx_full;
        t.rx += s->rx;
        t.verified += s->rx_verified;
        t.stale += s->rx_stale;
        t.foreign += s->rx_foreign;
        struct vio_net_driver_stats ds; /* frames the driver dropped (bad header, oversize) */
        if (a->nd && vio_net_driver_get_stats(a->nd, i, &ds) == 0)
            t.dropped += ds.rx_bad_hdr + ds.rx_oversize;
        t.gaps += s->gaps;
        t.bad_magic += s->bad_magic;
        t.bad_len += s->bad_len;
        t.bad_payload += s->bad_payload + s->bad_queue;
        t.out_of_order += s->out_of_order;
        t.duplicate += s->duplicate;
    }
    t.errors = t.bad_magic + t.bad_len + t.bad_payload + t.out_of_order + t.duplicate + t.dropped;
    return t;
}

static void print_interval(struct app *a, const struct totals *prev, const struct totals *cur,
                           double secs, double at)
{
    double txp = (double)(cur->tx - prev->tx) / secs, rxp = (double)(cur->rx - prev->rx) / secs;
    printf("[%6.1fs] tx %10.0f pps (%6.3f Mpps)  rx %10.0f pps (%6.3f Mpps)  drops %" PRIu64
           "  errors %" PRIu64,
           at, txp, txp / 1e6, rxp, rxp / 1e6, cur->gaps - prev->gaps, cur->errors - prev->errors);
    if (a->lat_iv.n)
        printf("  lat p50 %.1f us p99 %.1f us", (double)hist_quantile(&a->lat_iv, 0.5) / 1e3,
               (double)hist_quantile(&a->lat_iv, 0.99) / 1e3);
    printf("\n");
    fflush(stdout);
}

static void fold_interval(struct app *a)
{
    hist_merge(&a->lat, &a->lat_iv);
    memset(&a->lat_iv, 0, sizeof(a->lat_iv));
}

/* ---- reconnect ---- */

/* The used index of ring @idx as the backend last wrote it (what a restarted backend must
 * resume from: every buffer after it is still the device's). */
static unsigned used_idx(struct app *a, unsigned idx)
{
    struct vio_net_driver_queue_addr qa;
    if (vio_net_driver_queue_addr(a->nd, idx, &qa) < 0 || qa.device < GPA_BASE ||
        qa.device - GPA_BASE + 4 > a->map_size)
        return 0;
    const volatile uint8_t *p = (const uint8_t *)a->map + (qa.device - GPA_BASE) + 2;
    atomic_thread_fence(memory_order_acquire);
    return (unsigned)(p[0] | (p[1] << 8));
}

static bool backend_gone(struct app *a)
{
    if (atomic_load(&g_disconnected))
        return true;
    int fd = vio_vhost_fd(a->vhost);
    if (fd >= 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0) {
            int e = vio_vhost_handle(a->vhost);
            if (e == -ENOTCONN)
                return true;
        }
    }
    return !vio_vhost_connected(a->vhost);
}

/* 0 reconnected, -errno gave up */
static int reconnect(struct app *a, double at, uint64_t run_end)
{
    printf("[%6.1fs] backend vanished: %s\n", at,
           a->o.reconnect ? "reconnecting" : "stopping (no --reconnect)");
    fflush(stdout);
    fprintf(stderr, PROG ": the vhost backend vanished at %.1f s%s\n", at,
            a->o.reconnect ? "; reconnecting" : "");
    if (!a->o.reconnect)
        return -ENOTCONN;
    for (unsigned i = 0; i < a->rings; i++)
        (void)vio_vhost_set_vring_base(a->vhost, i, used_idx(a, i));
    uint64_t t0 = mono_ns(), deadline = t0 + (uint64_t)(a->o.reconnect_timeout * 1e9);
    if (run_end && run_end < deadline)
        deadline = run_end; /* the run ends meanwhile: no point in waiting longer */
    int e;
    for (;;) {
        e = vio_vhost_reconnect(a->vhost);
        if (e == 0 || e == -ENOTSUP || g_stop || mono_ns() >= deadline)
            break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (e < 0) {
        fprintf(stderr, PROG ": reconnect: %s\n", strerror(-e));
        return e;
    }
    atomic_store(&g_disconnected, false);
    a->reconnects++;
    a->epoch++;
    for (unsigned i = 0; i < MAX_PAIRS; i++)
        a->st[i].have = false;
    for (unsigned qp = 0; qp < a->o.queues; qp++) {
        (void)vio_driver_notify(&a->drv, VIO_NET_DRIVER_RXQ(qp));
        (void)vio_driver_notify(&a->drv, VIO_NET_DRIVER_TXQ(qp));
    }
    double ms = (double)(mono_ns() - t0) / 1e6;
    struct totals t = totals(a);
    printf("[%6.1fs] reconnected after %.0f ms (reconnect %u, verified so far %" PRIu64
           "): traffic resumes\n",
           (double)(mono_ns() - a->t_start) / 1e9, ms, a->reconnects, t.verified);
    fflush(stdout);
    fprintf(stderr, PROG ": reconnected after %.0f ms\n", ms);
    return 0;
}

/* ---- rate-mode sleep: wait for a receive call eventfd or the deadline ---- */

static void rate_wait(struct app *a, uint64_t until)
{
    struct pollfd pfd[MAX_PAIRS];
    unsigned n = 0;
    bool pending = false;
    for (unsigned qp = 0; qp < a->o.queues; qp++) {
        int fd = vio_vhost_driver_call_fd(a->vdrv, VIO_NET_DRIVER_RXQ(qp));
        if (fd < 0)
            continue;
        if (vio_net_driver_enable_cb(a->nd, VIO_NET_DRIVER_RXQ(qp)))
            pending = true;
        pfd[n].fd = fd;
        pfd[n].events = POLLIN;
        n++;
    }
    uint64_t now = mono_ns();
    if (!pending && until > now) {
        if (n) {
            struct timespec ts = {(time_t)((until - now) / 1000000000ull),
                                  (long)((until - now) % 1000000000ull)};
            if (ppoll(pfd, n, &ts, NULL) > 0) {
                uint64_t v;
                for (unsigned i = 0; i < n; i++)
                    if (pfd[i].revents & POLLIN)
                        (void)!read(pfd[i].fd, &v, sizeof(v));
            }
        } else {
            struct timespec ts = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
    }
    for (unsigned qp = 0; qp < a->o.queues; qp++)
        vio_net_driver_disable_cb(a->nd, VIO_NET_DRIVER_RXQ(qp));
}

/* ---- the run ---- */

/* After the run: wait for the frames in flight (they come back within a few ring trips);
 * returns how long it took. Out of line: bench/frontend-callgrind.sh leaves it out of the
 * data path's count. */
__attribute__((noinline)) static uint64_t pg_drain(struct app *a, uint64_t t_end)
{
    const unsigned nq = a->o.queues;
    uint64_t deadline = t_end + (uint64_t)(a->o.drain * 1e9), last_progress = t_end;
    for (;;) {
        /* the time before the poll: a verdict of "nothing for 500 ms" always rests on a
         * poll made after those 500 ms, even when this process was not running */
        uint64_t t = mono_ns();
        unsigned got = 0;
        for (unsigned qp = 0; qp < nq; qp++) {
            got += rx_burst(a, qp, 256);
            (void)vio_net_driver_tx_reclaim(a->nd, qp, NULL, 0);
        }
        if (got) {
            last_progress = mono_ns();
            continue;
        }
        struct totals c = totals(a);
        /* patient: on a loaded machine a backend thread may not run for tens of ms */
        if (c.rx - c.foreign >= c.tx || t >= deadline || a->broken ||
            (t > last_progress && t - last_progress > 500000000ull) ||
            (c.rx == 0 && t - t_end > 500000000ull))
            break;
    }
    return mono_ns() - t_end;
}

__attribute__((noinline)) static int pg_run(struct app *a)
{
    const unsigned nq = a->o.queues;
    const uint64_t dur_ns = a->o.duration > 0 ? (uint64_t)(a->o.duration * 1e9) : 0;
    const double rate_q = a->o.rate ? (double)a->o.rate / nq : 0;
    uint64_t sent_total = 0;
    struct totals prev;
    memset(&prev, 0, sizeof(prev));

    for (unsigned i = 0; i < a->rings; i++)
        vio_net_driver_disable_cb(a->nd, i);
    for (unsigned qp = 0; qp < nq; qp++) {
        a->tmpl[qp] = calloc(a->o.queue_size, sizeof(*a->tmpl[qp]));
        if (!a->tmpl[qp]) {
            (void)fail("allocating the frame template table", -ENOMEM);
            return 1;
        }
    }
    /* our own frames start at sequence 0: frames lost before the first one that comes back
     * are gaps too (another sender's frames, --rx-only, set the start at their first) */
    for (unsigned qp = 0; qp < nq && !a->o.rx_only; qp++)
        a->st[qp] = (struct seqtrack){.expect = 0, .have = true};

    a->t_start = mono_ns();
    uint64_t now = a->t_start, next_check = now + 1000000, next_report = now + 1000000000ull;
    uint64_t last_report = now;
    uint64_t rate_base = now; /* the rate's time origin (moved on after a reconnect) */
    uint64_t rate_sent0[MAX_PAIRS] = {0};
    bool sending = !a->o.rx_only;
    unsigned idle = 0;
    int rc = 0;

    for (;;) {
        unsigned work = 0;
        uint64_t wake = UINT64_MAX;
        for (unsigned qp = 0; qp < nq && sending; qp++) {
            unsigned n = a->o.burst;
            if (a->o.count && sent_total + n > a->o.count)
                n = (unsigned)(a->o.count - sent_total);
            if (rate_q > 0) {
                uint64_t due = (uint64_t)((double)(now - rate_base) * rate_q / 1e9) + 1;
                uint64_t done = a->q[qp].tx - rate_sent0[qp];
                uint64_t allowed = due > done ? due - done : 0;
                if (allowed < n) {
                    /* wait for a burst's worth (or a millisecond's worth at low rates) */
                    uint64_t want = a->o.burst;
                    double per_ms = rate_q / 1000.0;
                    if ((double)want > per_ms)
                        want = per_ms < 1 ? 1 : (uint64_t)per_ms;
                    if (allowed < want && allowed < n) {
                        uint64_t t = rate_base + (uint64_t)((double)(done + want) * 1e9 / rate_q);
                        if (t < wake)
                            wake = t;
                        n = 0;
                    } else {
                        n = (unsigned)allowed;
                    }
                }
            }
            struct qstate *qs = &a->q[qp];
            /* A full ring frees up when the backend completes frames, which (when frames
             * come back) shows as received frames first: after a full ring, poll the
             * transmit queue again when something was received, else every 8th pass. */
            if (n && qs->tx_wait && !qs->rx_last && (++qs->tx_skip & 7u))
                n = 0;
            if (n) {
                unsigned s = tx_burst(a, qp, n);
                qs->tx_wait = s == 0 && !a->o.tx_only;
                sent_total += s;
                work += s;
            }
        }
        for (unsigned qp = 0; qp < nq && !a->o.tx_only; qp++) {
            unsigned r = rx_burst(a, qp, a->o.burst * 2u);
            a->q[qp].rx_last = r;
            work += r;
        }
        if (a->broken) {
            fprintf(stderr, PROG ": a ring broke (the backend violated the ring rules)\n");
            rc = 1;
            break;
        }
        /* the clock: a busy pass read it already; an empty pass reads it every 32nd time
         * (an empty pass is short: the 1 ms checks below stay on time) */
        if (work && rate_q <= 0) {
            now = a->now;
            idle = 0;
        } else if (rate_q > 0 || ++idle >= 32 || g_stop) {
            now = mono_ns();
            idle = 0;
        }
        if (now >= next_check || g_stop) {
            next_check = now + 1000000;
            if (g_stop)
                break;
            if (!a->o.vhost_net && backend_gone(a)) {
                fold_interval(a);
                if (reconnect(a, (double)(now - a->t_start) / 1e9,
                              dur_ns ? a->t_start + dur_ns : 0) < 0) {
                    a->lost = true;
                    rc = 1;
                    break;
                }
                now = mono_ns();
                rate_base = now;
                for (unsigned qp = 0; qp < nq; qp++)
                    rate_sent0[qp] = a->q[qp].tx;
                next_check = now + 1000000;
            }
            if (dur_ns && now - a->t_start >= dur_ns)
                break;
            if (now >= next_report) {
                struct totals cur = totals(a);
                if (!a->o.quiet)
                    print_interval(a, &prev, &cur, (double)(now - last_report) / 1e9,
                                   (double)(now - a->t_start) / 1e9);
                fold_interval(a);
                prev = cur;
                last_report = now;
                next_report += 1000000000ull;
                if (next_report <= now)
                    next_report = now + 1000000000ull;
            }
        }
        if (a->o.count && sent_total >= a->o.count)
            sending = false;
        if (!sending && a->o.count && !a->o.rx_only)
            break; /* count reached: drain below */
        if (wake != UINT64_MAX && work == 0) {
            uint64_t until = wake < next_check ? wake : next_check;
            rate_wait(a, until);
            now = mono_ns();
        } else if (a->o.rx_only && work == 0) {
            /* nothing to send: sleep on the receive interrupts while nothing arrives */
            rate_wait(a, next_check);
            now = mono_ns();
        }
    }
    uint64_t t_end = mono_ns();

    /* drain: frames still in flight come back within a few ring trips */
    uint64_t drain_ns = 0, unconsumed = 0;
    if (!a->lost && !a->broken && !a->o.rx_only && !a->o.tx_only)
        drain_ns = pg_drain(a, t_end);
    /* transmitted frames the backend never took (still in the ring): part of the drops */
    for (unsigned qp = 0; qp < nq && !a->lost; qp++)
        unconsumed += vio_net_driver_tx_inflight(a->nd, qp);
    fold_interval(a);
    double secs = (double)(t_end - a->t_start) / 1e9;
    struct totals t = totals(a);
    bool reflected = t.rx - t.foreign > 0;
    uint64_t drops = reflected && t.tx > t.verified + t.stale + t.errors
                         ? t.tx - t.verified - t.stale - t.errors
                         : 0;
    double txm = secs > 0 ? (double)t.tx / secs / 1e6 : 0;
    double rxm = secs > 0 ? (double)(t.rx - t.foreign) / secs / 1e6 : 0;

    if (!reflected && t.tx > 0 && !a->o.rx_only && !a->o.tx_only)
        fprintf(stderr, PROG ": no frames came back: the peer does not reflect (%" PRIu64
                        " frames sent)\n", t.tx);
    if (!a->o.json) {
        printf("summary: %.2f s, %u B frames, %u queue pair(s): tx %" PRIu64 " (%.3f Mpps), rx %" PRIu64
               " (%.3f Mpps), verified %" PRIu64 ", stale %" PRIu64 ", foreign %" PRIu64
               ", drops %" PRIu64 ", errors %" PRIu64 " (magic %" PRIu64 ", length %" PRIu64
               ", payload %" PRIu64 ", out of order %" PRIu64 ", duplicate %" PRIu64
               ", driver drops %" PRIu64 "), tx ring full %" PRIu64 ", reconnects %u\n",
               secs, a->o.size, nq, t.tx, txm, t.rx, rxm, t.verified, t.stale, t.foreign, drops,
               t.errors, t.bad_magic, t.bad_len, t.bad_payload, t.out_of_order, t.duplicate,
               t.dropped, t.tx_full, a->reconnects);
        if (a->lat.n)
            printf("latency: min %.2f us, p50 %.2f us, p99 %.2f us, p99.9 %.2f us, max %.2f us (%" PRIu64
                   " samples)\n",
                   (double)a->lat.min / 1e3, (double)hist_quantile(&a->lat, 0.5) / 1e3,
                   (double)hist_quantile(&a->lat, 0.99) / 1e3,
                   (double)hist_quantile(&a->lat, 0.999) / 1e3, (double)a->lat.max / 1e3, a->lat.n);
        if (!reflected && !a->o.rx_only && !a->o.tx_only)
            printf("no frames came back: the peer does not reflect; %" PRIu64 " frames sent\n", t.tx);
    } else {
        printf("{\"tool\":\"vio-pktgen\",\"backend\":\"%s\",\"size\":%u,\"queues\":%u,"
               "\"duration_s\":%.3f,\"tx_packets\":%" PRIu64 ",\"rx_packets\":%" PRIu64
               ",\"rx_verified\":%" PRIu64 ",\"rx_stale\":%" PRIu64 ",\"rx_foreign\":%" PRIu64
               ",\"tx_mpps\":%.4f,\"rx_mpps\":%.4f,\"drops\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"bad_magic\":%" PRIu64 ",\"bad_length\":%" PRIu64 ",\"bad_payload\":%" PRIu64
               ",\"out_of_order\":%" PRIu64 ",\"duplicate\":%" PRIu64 ",\"driver_drops\":%" PRIu64
               ",\"seq_gaps\":%" PRIu64 ",\"tx_unconsumed\":%" PRIu64 ",\"drain_ms\":%.1f,\"tx_ring_full\":%" PRIu64 ",\"reflected\":%s,\"reconnects\":%u,\"backend_lost\":%s,"
               "\"lat_samples\":%" PRIu64 ",\"lat_min_us\":%.3f,\"lat_p50_us\":%.3f,"
               "\"lat_p99_us\":%.3f,\"lat_p999_us\":%.3f,\"lat_max_us\":%.3f,"
               "\"features\":\"0x%" PRIx64 "\",\"protocol_features\":\"0x%" PRIx64 "\","
               "\"connect_ms\":%.3f,\"setup_ms\":%.3f,\"mem_bytes\":%" PRIu64 "}\n",
               a->o.vhost_net ? "vhost-net" : "vhost-user", a->o.size, nq, secs, t.tx,
               t.rx - t.foreign, t.verified, t.stale, t.foreign, txm, rxm, drops, t.errors,
               t.bad_magic, t.bad_len, t.bad_payload, t.out_of_order, t.duplicate, t.dropped,
               t.gaps, unconsumed, (double)drain_ns / 1e6, t.tx_full, reflected ? "true" : "false", a->reconnects, a->lost ? "true" : "false",
               a->lat.n, (double)a->lat.min / 1e3, (double)hist_quantile(&a->lat, 0.5) / 1e3,
               (double)hist_quantile(&a->lat, 0.99) / 1e3,
               (double)hist_quantile(&a->lat, 0.999) / 1e3, (double)a->lat.max / 1e3, a->features,
               a->pfeatures, a->connect_ms, a->setup_ms, a->map_size);
    }
    fflush(stdout);
    if (rc == 0 && t.errors)
        rc = 3;
    return rc;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f,
"usage: vio-pktgen --vhost-user PATH [--server] | --vhost-net --tap NAME  [options]\n"
"\n"
"A virtio-user style traffic generator: it drives a virtio-net device whose rings a vhost\n"
"backend serves, sends frames that carry a sequence number, a timestamp and a payload\n"
"pattern, verifies the frames that come back and measures their round trip.\n"
"\n"
"Backend (exactly one):\n"
"      --vhost-user PATH   a vhost-user net backend's unix socket (DPDK net_vhost, Open\n"
"                          vSwitch dpdkvhostuser, vio-vhost-user-net)\n"
"      --server            listen at PATH and accept the backend (its client mode)\n"
"      --vhost-net         the kernel's vhost-net (/dev/vhost-net) ...\n"
"      --tap NAME          ... moving frames to and from tap NAME (created if needed)\n"
"      --vhost-dev PATH    the vhost character device (default /dev/vhost-net)\n"
"Traffic:\n"
"  -s, --size BYTES        Ethernet frame size without FCS, %u..%u (default 64)\n"
"  -n, --count N           stop after N frames (in total)\n"
"  -d, --duration SECONDS  stop after this long (default 5 unless --count is given)\n"
"  -r, --rate PPS          frames per second in total (default 0: as fast as possible);\n"
"                          between bursts the program sleeps on the receive interrupts\n"
"  -q, --queues N          queue pairs, frames spread evenly (default 1, max %u)\n"
"  -b, --burst N           frames per burst and queue (default 32, max %u)\n"
"      --queue-size N      ring size (power of 2, 64..1024, default 256)\n"
"      --no-mrg-rxbuf      do not negotiate VIRTIO_NET_F_MRG_RXBUF\n"
"      --rx-only           send nothing: count and verify what arrives (a second\n"
"                          vio-pktgen's frames through a switch)\n"
"      --tx-only           receive nothing (the backend drops what it cannot return):\n"
"                          the transmit rate alone, as DPDK testpmd's txonly\n"
"Connection:\n"
"      --reconnect         when the backend vanishes, say so, reconnect (re-sending the\n"
"                          state) and resume; without it the run ends with exit status 1\n"
"      --reconnect-timeout SECONDS  give up reconnecting after this long (default 30)\n"
"      --timeout SECONDS   connect / accept and every reply (default 10)\n"
"      --mem-size BYTES    application memory to share (memfd, never touched beyond the\n"
"                          rings and buffers; K/M/G suffixes), e.g. 64G\n"
"      --setup-only        connect, bring every queue up, print the setup time, exit\n"
"Output:\n"
"      --json              the summary is one JSON object on the last line of stdout\n"
"      --quiet             no per-second lines and no setup lines\n"
"  -v, --verbose           the library's log messages too (info level)\n"
"  -h, --help              this text\n"
"\n"
"Every second: tx and rx frames per second, drops (frames missing from a queue's sequence)\n"
"and errors; then a summary: counts, Mpps, drops, errors and round-trip latency\n"
"(p50 / p99 / p99.9). Errors are frames that came back wrong: bad magic, length or payload,\n"
"out of order or duplicated. Only bytes after the MAC addresses are verified (macswap).\n"
"A peer that returns nothing is reported as one that does not reflect.\n"
"JSON keys: tx_packets rx_packets rx_verified rx_stale tx_mpps rx_mpps drops errors\n"
"lat_p50_us lat_p99_us lat_p999_us reflected reconnects features protocol_features\n"
"setup_ms connect_ms and more.\n"
"Exit status: 0 done, 1 setup failed or the backend was lost, 2 bad command line,\n"
"3 frames came back wrong (errors > 0). SIGINT / SIGTERM end the run with the summary.\n",
            MIN_FRAME, MAX_FRAME, MAX_PAIRS, MAX_BURST);
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, PROG ": " __VA_ARGS__);                                                    \
        fprintf(stderr, " (see --help)\n");                                                        \
        return -1;                                                                                 \
    } while (0)

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, bool suffix)
{
    char *end;
    if (!s || !*s || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (suffix && *end) {
        unsigned sh = 0;
        switch (*end) {
        case 'k': case 'K': sh = 10; break;
        case 'm': case 'M': sh = 20; break;
        case 'g': case 'G': sh = 30; break;
        case 't': case 'T': sh = 40; break;
        default: return -1;
        }
        end++;
        if (v > (UINT64_MAX >> sh))
            return -1;
        v <<= sh;
    }
    if (*end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_secs(const char *s, double min, double max, double *out)
{
    char *end;
    if (!s || !*s || s[0] == '-')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_VU = 256, O_SERVER, O_VNET, O_TAP, O_VDEV, O_QSIZE, O_NOMRG, O_RXONLY, O_TXONLY, O_RECONN,
           O_RECONN_TO, O_TIMEOUT, O_MEM, O_SETUP, O_JSON, O_QUIET };
    static const struct option lo[] = {
        {"vhost-user", required_argument, NULL, O_VU},
        {"server", no_argument, NULL, O_SERVER},
        {"vhost-net", no_argument, NULL, O_VNET},
        {"tap", required_argument, NULL, O_TAP},
        {"vhost-dev", required_argument, NULL, O_VDEV},
        {"size", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"queues", required_argument, NULL, 'q'},
        {"burst", required_argument, NULL, 'b'},
        {"queue-size", required_argument, NULL, O_QSIZE},
        {"no-mrg-rxbuf", no_argument, NULL, O_NOMRG},
        {"rx-only", no_argument, NULL, O_RXONLY},
        {"tx-only", no_argument, NULL, O_TXONLY},
        {"reconnect", no_argument, NULL, O_RECONN},
        {"reconnect-timeout", required_argument, NULL, O_RECONN_TO},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"mem-size", required_argument, NULL, O_MEM},
        {"setup-only", no_argument, NULL, O_SETUP},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    bool dur_given = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":s:n:d:r:q:b:vh", lo, NULL)) != -1) {
        switch (c) {
        case O_VU: o->vu_path = optarg; break;
        case O_SERVER: o->server = true; break;
        case O_VNET: o->vhost_net = true; break;
        case O_TAP:
            if (!*optarg || strlen(optarg) >= IFNAMSIZ)
                BAD("--tap wants an interface name of 1..%u characters, not '%s'", IFNAMSIZ - 1, optarg);
            o->tap = optarg;
            break;
        case O_VDEV: o->vhost_dev = optarg; break;
        case 's':
            if (parse_u64(optarg, MIN_FRAME, MAX_FRAME, &v, false))
                BAD("--size wants %u..%u bytes, not '%s'", MIN_FRAME, MAX_FRAME, optarg);
            o->size = (unsigned)v;
            break;
        case 'n':
            if (parse_u64(optarg, 1, UINT64_MAX / 2, &v, false))
                BAD("--count wants a number of frames >= 1, not '%s'", optarg);
            o->count = v;
            break;
        case 'd':
            if (parse_secs(optarg, 0.001, 31536000, &o->duration))
                BAD("--duration wants seconds (0.001..31536000), not '%s'", optarg);
            dur_given = true;
            break;
        case 'r':
            if (parse_u64(optarg, 0, 1000000000ull, &v, false))
                BAD("--rate wants frames per second (0..1000000000, 0: unlimited), not '%s'", optarg);
            o->rate = v;
            break;
        case 'q':
            if (parse_u64(optarg, 1, MAX_PAIRS, &v, false))
                BAD("--queues wants 1..%u queue pairs, not '%s'", MAX_PAIRS, optarg);
            o->queues = (unsigned)v;
            break;
        case 'b':
            if (parse_u64(optarg, 1, MAX_BURST, &v, false))
                BAD("--burst wants 1..%u frames, not '%s'", MAX_BURST, optarg);
            o->burst = (unsigned)v;
            break;
        case O_QSIZE:
            if (parse_u64(optarg, 64, 1024, &v, false) || (v & (v - 1)))
                BAD("--queue-size wants a power of 2 in 64..1024, not '%s'", optarg);
            o->queue_size = (unsigned)v;
            break;
        case O_NOMRG: o->no_mrg = true; break;
        case O_RXONLY: o->rx_only = true; break;
        case O_TXONLY: o->tx_only = true; break;
        case O_RECONN: o->reconnect = true; break;
        case O_RECONN_TO:
            if (parse_secs(optarg, 0.1, 86400, &o->reconnect_timeout))
                BAD("--reconnect-timeout wants seconds (0.1..86400), not '%s'", optarg);
            break;
        case O_TIMEOUT:
            if (parse_secs(optarg, 0.01, 3600, &o->timeout))
                BAD("--timeout wants seconds (0.01..3600), not '%s'", optarg);
            break;
        case O_MEM:
            if (parse_u64(optarg, 1, 1ull << 46, &v, true))
                BAD("--mem-size wants bytes with an optional K/M/G/T suffix (up to 64T), not '%s'",
                    optarg);
            o->mem_size = v;
            break;
        case O_SETUP: o->setup_only = true; break;
        case O_JSON: o->json = true; break;
        case O_QUIET: o->quiet = true; break;
        case 'v': o->verbosity = VIO_LOG_INFO; break;
        case 'h': usage(stdout); exit(0);
        case ':':
            if (strncmp(argv[optind - 1], "--", 2) == 0)
                BAD("option '%s' needs a value", argv[optind - 1]);
            BAD("option '-%c' needs a value", optopt);
        default: {
            const char *a = argv[optind - 1];
            if (!optopt)
                BAD("unknown or ambiguous option '%s'", a);
            size_t len = strcspn(a, "=");
            for (const struct option *l = lo; l->name; l++)
                if (l->val == optopt && l->has_arg == no_argument && a[len] == '=' &&
                    strncmp(a, "--", 2) == 0 && strlen(l->name) == len - 2 &&
                    strncmp(a + 2, l->name, len - 2) == 0)
                    BAD("option '--%s' takes no value", l->name);
            BAD("unknown option '-%c'", optopt);
        }
        }
    }
    if (optind < argc)
        BAD("unexpected argument '%s'", argv[optind]);
    if (!!o->vu_path + (int)o->vhost_net != 1)
        BAD("give exactly one of --vhost-user PATH and --vhost-net --tap NAME");
    if (o->vu_path && (!*o->vu_path || strlen(o->vu_path) >= 108))
        BAD("--vhost-user wants a socket path of 1..107 characters");
    if (o->vhost_net && !o->tap)
        BAD("--vhost-net needs --tap NAME");
    if (o->tap && !o->vhost_net)
        BAD("--tap goes with --vhost-net");
    if (o->server && !o->vu_path)
        BAD("--server goes with --vhost-user");
    if (o->vhost_net && o->queues > 1)
        BAD("--vhost-net drives one queue pair (one tap fd): --queues must be 1");
    if (o->vhost_net && o->reconnect)
        BAD("--reconnect is for a vhost-user backend");
    if (o->rx_only && (o->count || o->rate))
        BAD("--rx-only sends nothing: it takes neither --count nor --rate");
    if (o->rx_only && o->tx_only)
        BAD("--rx-only and --tx-only exclude each other");
    if (o->burst > o->queue_size)
        BAD("--burst (%u) cannot exceed --queue-size (%u)", o->burst, o->queue_size);
    if (!dur_given && !o->count)
        o->duration = 5;
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app; /* the histograms are large: not on the stack */
    struct app *a = &app;
    a->o = (struct opts){
        .size = 64,
        .queues = 1,
        .burst = 32,
        .queue_size = 256,
        .reconnect_timeout = 30,
        .timeout = 10,
        .drain = 2.0,
        .verbosity = VIO_LOG_WARN,
    };
    a->memfd = -1;
    a->tapfd = -1;
    if (parse_args(argc, argv, &a->o) < 0)
        return 2;
    g_verbosity = a->o.quiet ? VIO_LOG_ERROR : a->o.verbosity;
    a->rings = 2 * a->o.queues;
    static const uint8_t src[6] = {0x02, 0x50, 0x47, 0x00, 0x00, 0x01};
    static const uint8_t dst[6] = {0x02, 0x50, 0x47, 0x00, 0x01, 0x01};
    memcpy(a->src, src, 6);
    memcpy(a->dst, dst, 6);
    for (unsigned i = 0; i < sizeof(pat); i++)
        pat[i] = (uint8_t)((i % PAT_PERIOD) * 167u + 13u);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a vanished backend must not kill us through a socket write */

    int rc = 1;
    if (setup_memory(a) == 0 && setup_frontend(a) == 0) {
        if (a->o.setup_only) {
            if (a->o.json)
                printf("{\"tool\":\"vio-pktgen\",\"backend\":\"%s\",\"queues\":%u,\"mem_bytes\":%" PRIu64
                       ",\"connect_ms\":%.3f,\"setup_ms\":%.3f,\"features\":\"0x%" PRIx64
                       "\",\"protocol_features\":\"0x%" PRIx64 "\"}\n",
                       a->o.vhost_net ? "vhost-net" : "vhost-user", a->o.queues, a->map_size,
                       a->connect_ms, a->setup_ms, a->features, a->pfeatures);
            else
                printf("setup: all %u queues ready in %.3f ms (connect %.3f ms, memory %" PRIu64
                       " bytes)\n",
                       a->rings, a->setup_ms, a->connect_ms, a->map_size);
            rc = 0;
        } else {
            rc = pg_run(a);
        }
    }
    teardown(a);
    return rc;
}
