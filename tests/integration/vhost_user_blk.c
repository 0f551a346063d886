/* SPDX-License-Identifier: MIT */
/*
 * The device-generic proof of the vhost frontend (issue 13, "Tests against real peers" item 2):
 * the same frontend that serves virtio-net drives qemu-storage-daemon's vhost-user-blk export
 * (a libvhost-user back-end), with virtio-blk requests built on our driver-side queue
 * (vio_drvq_*). vhost_user_blk.sh starts the daemon on a raw image and runs this program:
 *
 *   vhost_user_blk --socket SOCK --image IMG [--serial S] [--indirect] [--adapter] [--queues N]
 *                  [--kill-pid PID --kill-at idle|inflight|reconnect|reconnect-inflight]
 *
 * Guest memory is one memfd, mapped here and handed to the back-end as an fd; its guest-physical
 * base differs from its address here, so a translation mistake on either side shows. One
 * request queue (or --queues N) of QSIZE; a request is the chain [struct virtio_blk_outhdr] [data ...] [status]
 * (virtio 1.2, 5.2.6). The checks:
 *
 *   features  VERSION_1, SEG_MAX, BLK_SIZE, FLUSH offered and taken (--indirect: also
 *             INDIRECT_DESC and EVENT_IDX, so every request goes through an indirect table and
 *             notifications are event-index ones); protocol features logged, CONFIG and
 *             REPLY_ACK required; INFLIGHT_SHMFD used when offered
 *   config    GET_CONFIG: capacity = image size / 512, blk_size 512, seg_max >= 3; SET_CONFIG of
 *             the write-cache byte reads back
 *   (a)       a pattern written to the image file with pwrite() reads back through six IN
 *             requests in flight at once (1 to 3 data descriptors, odd segment lengths, the
 *             first and last sectors)
 *   (b)       another pattern written through six OUT requests in flight (2 or 3 descriptors,
 *             apart in guest memory), then FLUSH; the whole image file is then read and must be
 *             the first pattern with exactly those ranges replaced; one range reads back
 *             through the device too
 *   (c)       GET_ID: status OK, a printable NUL-terminated serial (= --serial when given)
 *   (d)       IN at the capacity, OUT across the end, IN at a huge sector: IOERR; an unknown
 *             type: UNSUPP; the image is unchanged and a normal read still works after
 *   (e)       GET_VRING_BASE = the number of requests made
 *
 * --queues N (the export made with num-queues=N) spreads every batch over N request queues
 * (VIRTIO_BLK_F_MQ; a count net's queue pairs cannot express when odd), each with its own
 * ring, kick and call eventfd; (e) then holds per ring.
 *
 * --adapter runs the same requests with the frontend seen as a driver-seat transport
 * (vio_vhost_driver_*: vio_driver_negotiate(), config read, queue setup / enable, notify)
 * instead of the raw ring calls. --kill-pid makes this program SIGKILL the daemon (the script's
 * child) after (a), either between requests (idle: the next control call must fail) or with
 * requests in the ring and kicked (inflight: the wait must end with the back-end reported
 * gone); then every further call fails with an error and the program ends normally, exit 0.
 * With reconnect / reconnect-inflight the frontend has reconnect on: after the kill (between
 * requests, or with four requests stranded in the ring) the program records the resume point,
 * retries vio_vhost_reconnect() while the script starts a new daemon on the same socket and
 * image, and runs the stranded requests and steps (b)-(e) there.
 *
 * Each step prints one line "vhost_user_blk: ok: ..." or "FAIL ..." on stderr. Exit 0 pass,
 * 1 fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_blk.h>

#include "virtio/driver.h"
#include "virtio/mem.h"
#include "virtio/queue.h"
#include "virtio/status.h"
#include "virtio/vhost.h"

#define QSIZE 128u
#define MAXQ 4u                     /* request queues (--queues) */
#define RING_STRIDE (8u << 10)      /* ring i at RING_OFF + i * RING_STRIDE */
#define POOL_STRIDE (QSIZE * INDIRECT_MAX * 16u)
#define MEM_SIZE (8u << 20)
#define GPA_BASE 0x40000000ull      /* guest-physical base of the memfd (not its address here) */
#define RING_OFF 0u
#define POOL_OFF (64u << 10)        /* indirect tables: QSIZE * 8 * 16 bytes */
#define INDIRECT_MAX 8u
#define SLOT_OFF (1u << 20)
#define SLOT_SIZE (256u << 10)      /* header at +0, status at +64, data segment k at +(k+1)*64K */
#define NSLOTS 16u
#define SEG_MAX_LEN (64u << 10)
#define MAX_SEGS 3u
#define SECTOR 512u
#define WAIT_MS 10000
#define CFG_LEN 36u                 /* capacity .. num_queues: every field this test reads */

/* vhost-user protocol feature bit numbers (docs/interop/vhost-user.rst) */
enum {
    PF_MQ = 0,
    PF_REPLY_ACK = 3,
    PF_BACKEND_REQ = 5,
    PF_CONFIG = 9,
    PF_INFLIGHT_SHMFD = 12,
    PF_STATUS = 16
};
static const char *const pf_names[] = {
    "MQ", "LOG_SHMFD", "RARP", "REPLY_ACK", "NET_MTU", "BACKEND_REQ", "CROSS_ENDIAN",
    "CRYPTO_SESSION", "PAGEFAULT", "CONFIG", "BACKEND_SEND_FD", "HOST_NOTIFIER",
    "INFLIGHT_SHMFD", "RESET_DEVICE", "INBAND_NOTIFICATIONS", "CONFIGURE_MEM_SLOTS", "STATUS",
    "XEN_MMAP", "SHARED_OBJECT", "DEVICE_STATE"};

static const char *const blk_feature_names[64] = {
    [VIRTIO_BLK_F_SIZE_MAX] = "SIZE_MAX", [VIRTIO_BLK_F_SEG_MAX] = "SEG_MAX",
    [VIRTIO_BLK_F_GEOMETRY] = "GEOMETRY", [VIRTIO_BLK_F_RO] = "RO",
    [VIRTIO_BLK_F_BLK_SIZE] = "BLK_SIZE", [VIRTIO_BLK_F_FLUSH] = "FLUSH",
    [VIRTIO_BLK_F_TOPOLOGY] = "TOPOLOGY", [VIRTIO_BLK_F_CONFIG_WCE] = "CONFIG_WCE",
    [VIRTIO_BLK_F_MQ] = "MQ", [VIRTIO_BLK_F_DISCARD] = "DISCARD",
    [VIRTIO_BLK_F_WRITE_ZEROES] = "WRITE_ZEROES", [24] = "NOTIFY_ON_EMPTY",
    [26] = "LOG_ALL", [27] = "ANY_LAYOUT",
    [VIO_F_INDIRECT_DESC] = "INDIRECT_DESC", [VIO_F_EVENT_IDX] = "EVENT_IDX",
    [30] = "PROTOCOL_FEATURES", [VIO_F_VERSION_1] = "VERSION_1",
    [VIO_F_ACCESS_PLATFORM] = "ACCESS_PLATFORM", [VIO_F_RING_PACKED] = "RING_PACKED",
    [VIO_F_IN_ORDER] = "IN_ORDER"};

#define NAME "vhost_user_blk"

static int failures;
#define CHECK(c, ...)                                                                     \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, NAME ": FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);           \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            failures++;                                                                   \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- options and state ---- */
static const char *opt_socket, *opt_image, *opt_serial, *opt_kill_at;
static bool opt_indirect, opt_adapter;
static unsigned nq = 1;         /* request queues (--queues) */
static pid_t opt_kill_pid;

static uint8_t *mem;            /* the memfd mapping: guest memory */
static int mem_fd = -1;
static struct vio_mem *vmem;
static struct vio_vhost *vh;
static struct vio_vhost_driver *adapter;
static struct vio_driver drv;   /* adapter mode: the adapter as a driver-seat transport */
static struct vio_drvq *qs[MAXQ];
static int kick_fds[MAXQ] = {-1, -1, -1, -1}; /* raw mode: ours; adapter mode: the adapter's */
static int call_fds[MAXQ] = {-1, -1, -1, -1};
static unsigned requests_q[MAXQ], completed_q[MAXQ]; /* per queue: made available / used */
static uint64_t features;       /* negotiated */
static uint64_t capacity;       /* sectors */
static unsigned requests;       /* chains made available so far (for GET_VRING_BASE) */
static unsigned completed;      /* chains the device gave back (its used index) */
static int img_fd = -1;
static uint64_t img_size;
static int disconnected_events, reconnected_events;

static void on_event(void *opaque, enum vio_vhost_event ev)
{
    (void)opaque;
    say("event: %s", ev == VIO_VHOST_EV_DISCONNECTED  ? "DISCONNECTED"
                     : ev == VIO_VHOST_EV_RECONNECTED ? "RECONNECTED"
                                                      : "CONFIG_CHANGED");
    if (ev == VIO_VHOST_EV_DISCONNECTED)
        disconnected_events++;
    if (ev == VIO_VHOST_EV_RECONNECTED)
        reconnected_events++;
}

static void *gpa_ptr(uint64_t gpa)
{
    return mem + (gpa - GPA_BASE);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Deterministic content: byte @p off of pattern @p seed. */
static uint8_t pat(uint32_t seed, uint64_t off)
{
    uint64_t x = (off >> 3) * 0x9E3779B97F4A7C15ull ^ (uint64_t)seed * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint8_t)(x >> ((off & 7) * 8));
}

/* ---- requests ---- */
struct req {
    uint32_t type;
    uint64_t sector;
    unsigned nseg;              /* data segments */
    uint32_t seg[MAX_SEGS];     /* their lengths */
    uint8_t expect;             /* expected status */
    /* filled in */
    unsigned queue;             /* which request queue */
    unsigned slot;
    bool done;
    uint32_t used_len;
};

static uint64_t slot_gpa(unsigned slot)
{
    return GPA_BASE + SLOT_OFF + (uint64_t)slot * SLOT_SIZE;
}

static uint64_t seg_gpa(unsigned slot, unsigned k)
{
    return slot_gpa(slot) + (uint64_t)(k + 1) * SEG_MAX_LEN;
}

static uint32_t req_len(const struct req *r)
{
    uint32_t n = 0;
    for (unsigned k = 0; k < r->nseg; k++)
        n += r->seg[k];
    return n;
}

/* Copy between a request's (scattered) data segments and a linear buffer. */
static void req_copy(const struct req *r, uint8_t *lin, bool to_segs)
{
    uint32_t at = 0;
    for (unsigned k = 0; k < r->nseg; k++) {
        uint8_t *p = gpa_ptr(seg_gpa(r->slot, k));
        if (to_segs)
            memcpy(p, lin + at, r->seg[k]);
        else
            memcpy(lin + at, p, r->seg[k]);
        at += r->seg[k];
    }
}

static uint8_t *req_status(const struct req *r)
{
    return gpa_ptr(slot_gpa(r->slot) + 64);
}

/* Put request @p r (slot already chosen) in the ring: header, data, status. */
static int req_add(struct req *r)
{
    struct vio_sg sg[MAX_SEGS + 2];
    struct virtio_blk_outhdr *h = gpa_ptr(slot_gpa(r->slot));
    bool dev_writes = r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_GET_ID;
    unsigned n = 0;

    h->type = r->type;    /* little-endian host; VERSION_1 makes the header little-endian */
    h->ioprio = 0;
    h->sector = r->sector;
    *req_status(r) = 0xa5; /* no valid status: a request left untouched shows */
    r->done = false;
    r->used_len = 0;
    sg[n++] = (struct vio_sg){slot_gpa(r->slot), (uint32_t)sizeof(*h)};
    for (unsigned k = 0; k < r->nseg; k++)
        sg[n++] = (struct vio_sg){seg_gpa(r->slot, k), r->seg[k]};
    sg[n++] = (struct vio_sg){slot_gpa(r->slot) + 64, 1};
    unsigned n_out = dev_writes ? 1 : 1 + r->nseg;
    int rc = vio_drvq_add(qs[r->queue], sg, n_out, n - n_out, r);
    if (rc == 0) {
        requests++;
        requests_q[r->queue]++;
    }
    return rc;
}

static int notify(unsigned i)
{
    if (opt_adapter)
        return vio_driver_notify(&drv, i);
    uint64_t one = 1;
    return write(kick_fds[i], &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

/* Publish what was added on every queue; kick those whose device asks for it. */
static int kick(void)
{
    for (unsigned i = 0; i < nq; i++) {
        if (!vio_drvq_kick_prepare(qs[i]))
            continue;
        int rc = notify(i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Collect used buffers until every request in @p r[0..n) is done: the call eventfd is the
 * interrupt, the frontend's fd reports a vanished back-end.
 * @retval 0 all done; -ETIMEDOUT; -ENOTCONN (or the frontend's error) the back-end is gone;
 *         -EPROTO / -EIO the device broke a ring rule
 */
static int wait_done(struct req *r, unsigned n, int timeout_ms)
{
    unsigned pending = 0;
    long deadline = now_ms() + timeout_ms;
    for (unsigned i = 0; i < n; i++)
        pending += !r[i].done;
    while (pending) {
        bool got = false;
        for (unsigned i = 0; i < nq; i++) {
            void *tok;
            uint32_t len;
            int rc = vio_drvq_get_used(qs[i], &tok, &len);
            if (rc == -EAGAIN)
                continue;
            if (rc < 0)
                return rc;
            struct req *d = tok;
            if (d < r || d >= r + n || d->done || d->queue != i) {
                say("used token %p on queue %u is not a request of this batch there", tok, i);
                return -EPROTO;
            }
            d->done = true;
            d->used_len = len;
            completed++;
            completed_q[i]++;
            pending--;
            got = true;
        }
        if (got)
            continue;
        bool more = false;
        for (unsigned i = 0; i < nq; i++)
            more |= vio_drvq_enable_cb(qs[i]);
        if (more)
            continue;
        long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p[MAXQ + 1];
        for (unsigned i = 0; i < nq; i++)
            p[i] = (struct pollfd){.fd = call_fds[i], .events = POLLIN};
        p[nq] = (struct pollfd){.fd = vio_vhost_fd(vh), .events = POLLIN};
        unsigned np = p[nq].fd >= 0 ? nq + 1 : nq;
        int rc = poll(p, (nfds_t)np, (int)left);
        if (rc < 0 && errno != EINTR)
            return -errno;
        for (unsigned i = 0; rc > 0 && i < nq; i++) {
            uint64_t cnt;
            if ((p[i].revents & POLLIN) && read(call_fds[i], &cnt, sizeof(cnt)) < 0 &&
                errno != EAGAIN)
                return -errno;
        }
        if (np > nq && p[nq].revents) {
            rc = vio_vhost_handle(vh);
            if (rc < 0)
                return rc;
            if (!vio_vhost_connected(vh))
                return -ENOTCONN;
        }
        for (unsigned i = 0; i < nq; i++)
            vio_drvq_disable_cb(qs[i]);
    }
    return 0;
}

/* Make the requests r[0..n) (slots 0..n-1), kick once, wait, check every status. */
static int run_batch(struct req *r, unsigned n, const char *what)
{
    for (unsigned i = 0; i < n; i++) {
        r[i].slot = i;
        r[i].queue = i % nq;
        int rc = req_add(&r[i]);
        if (rc < 0) {
            say("FAIL %s: vio_drvq_add request %u: %d (%s)", what, i, rc, strerror(-rc));
            return rc;
        }
    }
    int rc = kick();
    if (rc < 0) {
        say("FAIL %s: kick: %d (%s)", what, rc, strerror(-rc));
        return rc;
    }
    rc = wait_done(r, n, WAIT_MS);
    if (rc < 0) {
        say("FAIL %s: waiting for %u requests: %d (%s)", what, n, rc, strerror(-rc));
        return rc;
    }
    for (unsigned i = 0; i < n; i++) {
        uint8_t st = *req_status(&r[i]);
        if (st != r[i].expect) {
            say("FAIL %s: request %u (type %u sector %" PRIu64 " %u bytes) status %u, want %u",
                what, i, r[i].type, r[i].sector, req_len(&r[i]), st, r[i].expect);
            return -EIO;
        }
        /* The device writes the data (IN) and the status byte: used len says so. */
        if (st == VIRTIO_BLK_S_OK && r[i].type == VIRTIO_BLK_T_IN &&
            r[i].used_len != req_len(&r[i]) + 1) {
            say("FAIL %s: request %u used len %u, want %u", what, i, r[i].used_len,
                req_len(&r[i]) + 1);
            return -EIO;
        }
        if (st == VIRTIO_BLK_S_OK && (r[i].type == VIRTIO_BLK_T_OUT ||
                                      r[i].type == VIRTIO_BLK_T_FLUSH) && r[i].used_len != 1) {
            say("FAIL %s: request %u used len %u, want 1", what, i, r[i].used_len);
            return -EIO;
        }
    }
    return 0;
}

/* Compare a request's data with what the disk must hold at its offset: @p want (the whole
 * expected image) or, when NULL, pattern @p seed. */
static bool req_matches_in(const struct req *r, uint32_t seed, const uint8_t *want)
{
    uint32_t len = req_len(r);
    uint8_t *lin = malloc(len);
    bool ok = lin != NULL;
    if (ok) {
        req_copy(r, lin, false);
        uint64_t base = r->sector * SECTOR;
        for (uint32_t i = 0; i < len; i++) {
            uint8_t w = want ? want[base + i] : pat(seed, base + i);
            if (lin[i] != w) {
                say("data mismatch: sector %" PRIu64 " byte %u: got 0x%02x, want 0x%02x",
                    r->sector, i, lin[i], w);
                ok = false;
                break;
            }
        }
    }
    free(lin);
    return ok;
}

static bool req_matches(const struct req *r, uint32_t seed)
{
    return req_matches_in(r, seed, NULL);
}

static void req_fill(const struct req *r, uint32_t seed)
{
    uint32_t len = req_len(r);
    uint8_t *lin = malloc(len);
    if (!lin)
        abort(); /* our own allocation, not peer input */
    for (uint32_t i = 0; i < len; i++)
        lin[i] = pat(seed, r->sector * SECTOR + i);
    req_copy(r, lin, true);
    free(lin);
}

/* ---- setup ---- */
static int memory_new(void)
{
    mem_fd = memfd_create("vhost-user-blk-guest", MFD_CLOEXEC);
    if (mem_fd < 0 || ftruncate(mem_fd, MEM_SIZE) < 0)
        return -errno;
    mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
    if (mem == MAP_FAILED) {
        mem = NULL;
        return -errno;
    }
    int rc = vio_mem_new(4, &vmem);
    if (rc < 0)
        return rc;
    struct vio_mem_region r = {.guest_addr = GPA_BASE, .size = MEM_SIZE,
                               .user_addr = (uint64_t)(uintptr_t)mem, .host_ptr = mem};
    return vio_mem_add(vmem, &r);
}

static struct vio_vhost_mem_region vhost_region(void)
{
    return (struct vio_vhost_mem_region){.guest_addr = GPA_BASE, .size = MEM_SIZE,
                                         .user_addr = (uint64_t)(uintptr_t)mem, .fd = mem_fd,
                                         .fd_offset = 0};
}

static uint64_t wanted_features(void)
{
    uint64_t w = 1ull << VIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_SEG_MAX |
                 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
    if (opt_indirect)
        w |= 1ull << VIO_F_INDIRECT_DESC | 1ull << VIO_F_EVENT_IDX;
    if (nq > 1)
        w |= 1ull << VIRTIO_BLK_F_MQ;
    return w;
}

static void log_features(const char *what, uint64_t f)
{
    char buf[512];
    size_t at = 0;
    buf[0] = 0;
    for (unsigned b = 0; b < 64; b++) {
        if (!(f >> b & 1))
            continue;
        int k = blk_feature_names[b]
                    ? snprintf(buf + at, sizeof(buf) - at, " %s", blk_feature_names[b])
                    : snprintf(buf + at, sizeof(buf) - at, " bit%u", b);
        if (k > 0 && (size_t)k < sizeof(buf) - at)
            at += (size_t)k;
    }
    say("%s: 0x%" PRIx64 ":%s", what, f, buf);
}

static void log_protocol_features(uint64_t pf)
{
    char buf[512];
    size_t at = 0;
    buf[0] = 0;
    for (unsigned b = 0; b < 64; b++) {
        if (!(pf >> b & 1))
            continue;
        int k = b < sizeof(pf_names) / sizeof(pf_names[0])
                    ? snprintf(buf + at, sizeof(buf) - at, " %s", pf_names[b])
                    : snprintf(buf + at, sizeof(buf) - at, " bit%u", b);
        if (k > 0 && (size_t)k < sizeof(buf) - at)
            at += (size_t)k;
    }
    say("protocol features negotiated: 0x%" PRIx64 ":%s", pf, buf);
}

/* Ring i's guest addresses. */
static void ring_gpas(unsigned i, uint64_t *desc, uint64_t *avail, uint64_t *used)
{
    size_t doff, uoff;
    vio_split_ring_layout(QSIZE, 4, &doff, &uoff);
    *desc = GPA_BASE + RING_OFF + (uint64_t)i * RING_STRIDE;
    *avail = *desc + doff;
    *used = *desc + uoff;
}

static int queue_new(unsigned i)
{
    size_t doff, uoff;
    size_t total = vio_split_ring_layout(QSIZE, 4, &doff, &uoff);
    if (total > RING_STRIDE || MAXQ * RING_STRIDE > POOL_OFF)
        return -ENOSPC;
    struct vio_drvq_config c = {
        .struct_size = sizeof(c), .size = QSIZE, .index = (uint16_t)i, .name = "blk-req",
        .features = features, .mem = vmem,
        .indirect_pool = (features >> VIO_F_INDIRECT_DESC & 1)
                             ? GPA_BASE + POOL_OFF + (uint64_t)i * POOL_STRIDE : 0,
        .indirect_max = INDIRECT_MAX, .log = vio_log_stderr};
    ring_gpas(i, &c.desc, &c.driver, &c.device);
    return vio_drvq_new(&c, &qs[i]);
}

/* The raw ring calls (the vhost order of vhost.h). */
static int setup_raw(struct virtio_blk_config *cfg)
{
    uint64_t offered, pf = 0;
    int rc;

    CHECK((rc = vio_vhost_set_owner(vh)) == 0, "SET_OWNER: %d", rc);
    CHECK((rc = vio_vhost_get_features(vh, &offered)) == 0, "GET_FEATURES: %d", rc);
    log_features("device features offered", offered);
    CHECK((offered & wanted_features()) == wanted_features(),
          "the export lacks features we need: offered 0x%" PRIx64 " wanted 0x%" PRIx64, offered,
          wanted_features());
    CHECK(!(offered >> VIRTIO_BLK_F_RO & 1), "writable=on but the export offers RO");
    features = offered & wanted_features();
    CHECK((rc = vio_vhost_get_protocol_features(vh, &pf)) == 0, "protocol features: %d", rc);
    log_protocol_features(pf);
    CHECK(pf >> PF_CONFIG & 1, "CONFIG not negotiated (libvhost-user offers it for blk)");
    CHECK(pf >> PF_REPLY_ACK & 1, "REPLY_ACK not negotiated (libvhost-user always offers it)");

    memset(cfg, 0, sizeof(*cfg));
    CHECK((rc = vio_vhost_get_config(vh, 0, cfg, CFG_LEN)) == 0, "GET_CONFIG: %d", rc);

    CHECK((rc = vio_vhost_set_features(vh, features)) == 0, "SET_FEATURES: %d", rc);
    log_features("features negotiated", features);

    if (!(pf >> PF_INFLIGHT_SHMFD & 1))
        say("INFLIGHT_SHMFD not negotiated (this export does not offer it): no inflight area");
    if (pf >> PF_INFLIGHT_SHMFD & 1) {
        int ifd = -1;
        uint64_t isize = 0;
        rc = vio_vhost_get_inflight(vh, 1, QSIZE, &ifd, &isize);
        if (rc == -ENOTSUP) {
            say("INFLIGHT_SHMFD offered, the frontend does not do it (-ENOTSUP): skipped");
        } else {
            CHECK(rc == 0, "GET_INFLIGHT_FD: %d", rc);
            CHECK(ifd >= 0 && isize >= vio_queue_inflight_size(QSIZE),
                  "inflight area fd %d size %" PRIu64 ", want >= %zu", ifd, isize,
                  vio_queue_inflight_size(QSIZE));
            rc = vio_vhost_set_inflight(vh, ifd, isize, 1, QSIZE);
            close(ifd);
            CHECK(rc == 0, "SET_INFLIGHT_FD: %d", rc);
            say("ok: inflight area of %" PRIu64 " bytes taken and handed back", isize);
        }
    }

    struct vio_vhost_mem_region reg = vhost_region();
    CHECK((rc = vio_vhost_set_mem_table(vh, &reg, 1)) == 0, "SET_MEM_TABLE: %d", rc);

    for (unsigned i = 0; i < nq; i++) {
        uint64_t d, av, u;
        CHECK((rc = queue_new(i)) == 0, "vio_drvq_new %u: %d", i, rc);
        ring_gpas(i, &d, &av, &u);
        /* the frontend takes this process's addresses, the ring holds guest ones */
        struct vio_vhost_vring_addr a = {.desc = (uint64_t)(uintptr_t)gpa_ptr(d),
                                         .avail = (uint64_t)(uintptr_t)gpa_ptr(av),
                                         .used = (uint64_t)(uintptr_t)gpa_ptr(u),
                                         .log_guest_addr = u};
        kick_fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        call_fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        CHECK(kick_fds[i] >= 0 && call_fds[i] >= 0, "eventfd: %s", strerror(errno));
        CHECK((rc = vio_vhost_set_vring_num(vh, i, QSIZE)) == 0, "SET_VRING_NUM: %d", rc);
        CHECK((rc = vio_vhost_set_vring_addr(vh, i, &a)) == 0, "SET_VRING_ADDR: %d", rc);
        CHECK((rc = vio_vhost_set_vring_base(vh, i, 0)) == 0, "SET_VRING_BASE: %d", rc);
        CHECK((rc = vio_vhost_set_vring_call(vh, i, call_fds[i])) == 0, "SET_VRING_CALL: %d",
              rc);
        CHECK((rc = vio_vhost_set_vring_kick(vh, i, kick_fds[i])) == 0, "SET_VRING_KICK: %d",
              rc);
        CHECK((rc = vio_vhost_set_vring_enable(vh, i, true)) == 0, "SET_VRING_ENABLE: %d", rc);
    }
    return 0;
out:
    return -1;
}

/* The driver adapter: the frontend as a driver-seat transport, set up like any virtio device. */
static int setup_adapter(struct virtio_blk_config *cfg)
{
    uint64_t offered = 0, pf = 0;
    int rc;

    /* The vhost order starts with SET_OWNER; the adapter leaves it to the application. */
    CHECK((rc = vio_vhost_set_owner(vh)) == 0, "SET_OWNER: %d", rc);
    struct vio_vhost_mem_region reg = vhost_region();
    struct vio_vhost_driver_config dc = {
        .struct_size = sizeof(dc), .vhost = vh, .regions = &reg, .num_regions = 1,
        .num_queues = nq, .max_queue_size = QSIZE, .net_backend_fd = -1, .log = vio_log_stderr};
    CHECK((rc = vio_vhost_driver_new(&dc, &adapter)) == 0, "vio_vhost_driver_new: %d", rc);
    drv = vio_vhost_driver_get(adapter);
    CHECK((rc = vio_driver_get_features(&drv, &offered)) == 0, "get_features: %d", rc);
    log_features("device features offered (adapter)", offered);
    CHECK((offered & wanted_features()) == wanted_features(),
          "the export lacks features we need: offered 0x%" PRIx64, offered);
    CHECK((rc = vio_driver_negotiate(&drv, wanted_features(), &features)) == 0,
          "vio_driver_negotiate: %d", rc);
    CHECK(features == wanted_features(), "negotiated 0x%" PRIx64 ", want 0x%" PRIx64, features,
          wanted_features());
    log_features("features negotiated (adapter)", features);
    CHECK((rc = vio_vhost_get_protocol_features(vh, &pf)) == 0, "protocol features: %d", rc);
    log_protocol_features(pf);
    CHECK(pf >> PF_CONFIG & 1, "CONFIG not negotiated");

    memset(cfg, 0, sizeof(*cfg));
    CHECK((rc = vio_driver_config_read(&drv, 0, cfg, CFG_LEN)) == 0, "config read: %d", rc);
    /* A read of one field at its offset must agree with the whole read (libvhost-user's
     * GET_CONFIG ignores the offset: the adapter must not pass a field offset through). */
    uint32_t blk_size = 0;
    CHECK((rc = vio_driver_config_read(&drv, offsetof(struct virtio_blk_config, blk_size),
                                       &blk_size, 4)) == 0, "config read blk_size: %d", rc);
    if (blk_size != cfg->blk_size) {
        /* A failure, but not one that stops the rest of the adapter run. */
        say("FAIL: config read of blk_size alone (offset %zu) gives %u, the whole read %u: "
            "libvhost-user answers GET_CONFIG from offset 0 whatever the message says, so a "
            "frontend must ask for [0, off + len) and slice (as QEMU does)",
            offsetof(struct virtio_blk_config, blk_size), blk_size, cfg->blk_size);
        failures++;
    } else {
        say("ok: a config field read alone agrees with the whole structure");
    }

    CHECK(vio_driver_num_queues(&drv) == (int)nq, "num_queues %d, want %u",
          vio_driver_num_queues(&drv), nq);
    for (unsigned i = 0; i < nq; i++) {
        int max = vio_driver_queue_max_size(&drv, i);
        CHECK(max >= (int)QSIZE, "queue %u max size %d", i, max);
        CHECK((rc = queue_new(i)) == 0, "vio_drvq_new %u: %d", i, rc);
        struct vio_driver_queue dq = {.size = QSIZE};
        ring_gpas(i, &dq.desc, &dq.driver, &dq.device);
        CHECK((rc = vio_driver_queue_setup(&drv, i, &dq)) == 0, "queue_setup %u: %d", i, rc);
        CHECK((rc = vio_driver_queue_enable(&drv, i)) == 0, "queue_enable %u: %d", i, rc);
        kick_fds[i] = vio_vhost_driver_kick_fd(adapter, i);
        call_fds[i] = vio_vhost_driver_call_fd(adapter, i);
        CHECK(kick_fds[i] >= 0 && call_fds[i] >= 0, "adapter eventfds %d %d", kick_fds[i],
              call_fds[i]);
    }
    uint8_t st = 0;
    CHECK((rc = vio_driver_get_status(&drv, &st)) == 0, "get_status: %d", rc);
    CHECK((rc = vio_driver_set_status(&drv, st | VIO_S_DRIVER_OK)) == 0, "DRIVER_OK: %d", rc);
    return 0;
out:
    return -1;
}

/* ---- the kill cases ---- */
static bool gone_errno(int rc)
{
    return rc == -ENOTCONN || rc == -EPIPE || rc == -ECONNRESET;
}

/* Wait (bounded) until the frontend's fd shows the closed socket, without handling it. */
static void wait_hangup(void)
{
    int fd = vio_vhost_fd(vh);
    if (fd < 0) {
        usleep(300000);
        return;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    (void)poll(&p, 1, 3000);
}

/*
 * Handle what the frontend's fd shows until it reports the back-end gone (bounded). The
 * daemon's fds close one by one as it dies: the request channel may close before the socket.
 */
static int wait_gone(void)
{
    long deadline = now_ms() + 5000;
    int rc;
    while ((rc = vio_vhost_handle(vh)) == 0 && now_ms() < deadline) {
        int fd = vio_vhost_fd(vh);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (fd < 0 || poll(&p, 1, 100) < 0)
            usleep(100000);
    }
    return rc;
}

static int kill_case(void)
{
    int rc;
    unsigned base = 0;
    struct req r[4];

    say("killing qemu-storage-daemon (pid %d) %s", (int)opt_kill_pid,
        strcmp(opt_kill_at, "idle") == 0 ? "between requests" : "with requests in flight");
    if (strcmp(opt_kill_at, "inflight") == 0) {
        for (unsigned i = 0; i < 4; i++) {
            r[i] = (struct req){.type = VIRTIO_BLK_T_IN, .sector = 64 + 8 * i, .nseg = 1,
                                .seg = {4096}, .expect = VIRTIO_BLK_S_OK, .slot = i,
                                .queue = i % nq};
            CHECK((rc = req_add(&r[i])) == 0, "vio_drvq_add: %d", rc);
        }
        CHECK(kill(opt_kill_pid, SIGKILL) == 0, "kill: %s", strerror(errno));
        /* Kick only once the daemon is gone (its socket closed): it must not take them. */
        wait_hangup();
        CHECK((rc = kick()) == 0, "kick: %d", rc);
        rc = wait_done(r, 4, WAIT_MS);
        CHECK(gone_errno(rc), "waiting with the back-end killed returned %d (%s), want "
              "-ENOTCONN / -EPIPE / -ECONNRESET", rc, strerror(-rc));
        say("ok: the wait for 4 requests in flight ended with %d (%s)", rc, strerror(-rc));
    } else {
        CHECK(kill(opt_kill_pid, SIGKILL) == 0, "kill: %s", strerror(errno));
        wait_hangup();
    }
    rc = vio_vhost_get_vring_base(vh, 0, &base);
    CHECK(gone_errno(rc), "GET_VRING_BASE after the kill returned %d (%s)", rc, strerror(-rc));
    say("ok: GET_VRING_BASE after the kill: %d (%s)", rc, strerror(-rc));
    /* Everything after fails the same way; nothing hangs, nothing crashes. */
    uint64_t f;
    rc = vio_vhost_get_features(vh, &f);
    CHECK(rc < 0, "GET_FEATURES on a dead back-end returned %d", rc);
    say("ok: GET_FEATURES after the kill: %d (%s)", rc, strerror(-rc));
    rc = vio_vhost_set_vring_enable(vh, 0, false);
    CHECK(rc < 0, "SET_VRING_ENABLE on a dead back-end returned %d", rc);
    rc = vio_vhost_handle(vh);
    CHECK(rc == -ENOTCONN || rc == 0, "vio_vhost_handle after the kill: %d", rc);
    CHECK(!vio_vhost_connected(vh), "vio_vhost_connected() still true after the kill");
    say("ok: vio_vhost_connected() false, %d DISCONNECTED event(s)", disconnected_events);
    CHECK(disconnected_events == 1, "DISCONNECTED reported %d times, want once",
          disconnected_events);
    return 0;
out:
    return -1;
}

/*
 * --kill-at reconnect / reconnect-inflight: kill the daemon between requests (or with four
 * requests in the ring and kicked); the script starts a new one on the same socket and image.
 * Tell the frontend where the ring resumes, the device's used index (as QEMU does for a
 * back-end without an inflight area: what was made available but not used is processed
 * again), then retry vio_vhost_reconnect() until the new daemon listens: the frontend re-sends
 * owner, features, protocol features, memory table and the ring. The stranded requests are
 * kicked again and must complete on the new daemon; steps (b)-(e) of main follow there.
 */
static int reconnect_case(bool inflight)
{
    int rc;
    unsigned base;
    struct req r[4];

    say("killing qemu-storage-daemon (pid %d) %s; reconnecting to the next one",
        (int)opt_kill_pid, inflight ? "with 4 requests in flight" : "between requests");
    if (inflight) {
        for (unsigned i = 0; i < 4; i++) {
            r[i] = (struct req){.type = VIRTIO_BLK_T_IN, .sector = 64 + 24 * i, .nseg = 2,
                                .seg = {2048, 2048}, .expect = VIRTIO_BLK_S_OK, .slot = i,
                                .queue = i % nq};
            CHECK((rc = req_add(&r[i])) == 0, "vio_drvq_add: %d", rc);
        }
        CHECK(kill(opt_kill_pid, SIGKILL) == 0, "kill: %s", strerror(errno));
        /* Kick only once the daemon is gone (its socket closed): it must not take them. */
        wait_hangup();
        CHECK((rc = kick()) == 0, "kick: %d", rc);
        rc = wait_done(r, 4, WAIT_MS);
        CHECK(rc == -ENOTCONN, "waiting with the back-end killed: %d, want -ENOTCONN", rc);
    } else {
        CHECK(kill(opt_kill_pid, SIGKILL) == 0, "kill: %s", strerror(errno));
        rc = wait_gone();
        CHECK(rc == -ENOTCONN, "vio_vhost_handle after the kill: %d, want -ENOTCONN", rc);
    }
    CHECK(!vio_vhost_connected(vh) && disconnected_events == 1,
          "connected %d, %d DISCONNECTED events", vio_vhost_connected(vh), disconnected_events);
    rc = vio_vhost_get_vring_base(vh, 0, &base);
    CHECK(rc == -ENOTCONN, "GET_VRING_BASE while gone: %d, want -ENOTCONN", rc);
    for (unsigned i = 0; i < nq; i++)
        CHECK((rc = vio_vhost_set_vring_base(vh, i, completed_q[i] & 0xffffu)) == 0,
              "recording the resume point of ring %u while gone: %d", i, rc);
    long deadline = now_ms() + 20000;
    unsigned tries = 0;
    for (;;) {
        tries++;
        rc = vio_vhost_reconnect(vh);
        if (rc == 0)
            break;
        CHECK(rc == -ECONNREFUSED || rc == -ENOENT || rc == -ETIMEDOUT || rc == -ENOTCONN ||
                  rc == -ECONNRESET || rc == -EPIPE,
              "vio_vhost_reconnect: %d (%s)", rc, strerror(-rc));
        CHECK(now_ms() < deadline, "no new daemon within 20 s (last: %s)", strerror(-rc));
        usleep(100000);
    }
    CHECK(vio_vhost_connected(vh), "not connected after a successful reconnect");
    CHECK(reconnected_events == 1, "RECONNECTED reported %d times", reconnected_events);
    say("ok: reconnected after %u attempt(s), state re-sent, the ring%s resume%s at the used "
        "index (%u in all)", tries, nq > 1 ? "s" : "", nq > 1 ? "" : "s", completed);
    /* Configuration comes from the new daemon: the same image, the same capacity. */
    struct virtio_blk_config c;
    memset(&c, 0, sizeof(c));
    CHECK((rc = vio_vhost_get_config(vh, 0, &c, CFG_LEN)) == 0, "GET_CONFIG: %d", rc);
    CHECK(c.capacity == capacity, "capacity %llu after the reconnect, was %" PRIu64,
          (unsigned long long)c.capacity, capacity);
    if (inflight) {
        /* Nothing new to publish, so kick_prepare() would say no: kick by hand. */
        for (unsigned i = 0; i < nq; i++)
            CHECK((rc = notify(i)) == 0, "kick %u: %d", i, rc);
        CHECK((rc = wait_done(r, 4, WAIT_MS)) == 0, "the stranded requests: %d (%s)", rc,
              strerror(-rc));
        for (unsigned i = 0; i < 4; i++) {
            CHECK(*req_status(&r[i]) == VIRTIO_BLK_S_OK, "stranded request %u status %u", i,
                  *req_status(&r[i]));
            CHECK(req_matches(&r[i], 1), "stranded request %u: wrong data", i);
        }
        say("ok: the 4 requests stranded by the kill completed on the new daemon, data right");
    }
    return 0;
out:
    return -1;
}

/* ---- main ---- */
static void usage(void)
{
    fprintf(stderr, "usage: vhost_user_blk --socket SOCK --image IMG [--serial S] [--indirect] "
                    "[--adapter] [--queues 1-4]\n"
                    "       [--kill-pid PID --kill-at idle|inflight|reconnect|"
                    "reconnect-inflight]\n");
}

static int parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--socket") == 0 && v)
            opt_socket = argv[++i];
        else if (strcmp(a, "--image") == 0 && v)
            opt_image = argv[++i];
        else if (strcmp(a, "--serial") == 0 && v)
            opt_serial = argv[++i];
        else if (strcmp(a, "--kill-pid") == 0 && v)
            opt_kill_pid = (pid_t)atoi(argv[++i]);
        else if (strcmp(a, "--kill-at") == 0 && v)
            opt_kill_at = argv[++i];
        else if (strcmp(a, "--indirect") == 0)
            opt_indirect = true;
        else if (strcmp(a, "--adapter") == 0)
            opt_adapter = true;
        else if (strcmp(a, "--queues") == 0 && v)
            nq = (unsigned)atoi(argv[++i]);
        else
            return -1;
    }
    if (!opt_socket || !opt_image || (opt_kill_pid > 0) != (opt_kill_at != NULL) || nq < 1 ||
        nq > MAXQ)
        return -1;
    if (opt_kill_at && strcmp(opt_kill_at, "idle") != 0 &&
        strcmp(opt_kill_at, "inflight") != 0 && strcmp(opt_kill_at, "reconnect") != 0 &&
        strcmp(opt_kill_at, "reconnect-inflight") != 0)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    int rc;
    struct virtio_blk_config cfg;
    uint8_t *image = NULL;   /* what the image file must hold */
    uint8_t *file = NULL;

    if (parse(argc, argv) < 0) {
        usage();
        return 2;
    }
    say("mode: %s, %s descriptors, %u request queue%s%s%s",
        opt_adapter ? "driver adapter" : "raw ring calls", opt_indirect ? "indirect" : "direct",
        nq, nq > 1 ? "s" : "", opt_kill_at ? ", back-end killed: " : "",
        opt_kill_at ? opt_kill_at : "");

    /* The image: pattern 1 everywhere, written here with pwrite() (the daemon has the file
     * open without O_DIRECT: its reads see the page cache we write). */
    img_fd = open(opt_image, O_RDWR | O_CLOEXEC);
    CHECK(img_fd >= 0, "open %s: %s", opt_image, strerror(errno));
    struct stat sb;
    CHECK(fstat(img_fd, &sb) == 0 && sb.st_size > 0 && sb.st_size % SECTOR == 0,
          "image size %lld", (long long)sb.st_size);
    img_size = (uint64_t)sb.st_size;
    image = malloc(img_size);
    file = malloc(img_size);
    CHECK(image && file, "out of memory");
    for (uint64_t i = 0; i < img_size; i++)
        image[i] = pat(1, i);
    CHECK(pwrite(img_fd, image, img_size, 0) == (ssize_t)img_size, "pwrite: %s",
          strerror(errno));

    CHECK((rc = memory_new()) == 0, "guest memory: %d", rc);

    struct vio_vhost_user_frontend_config fc = {
        .struct_size = sizeof(fc), .path = opt_socket, .server = false, .timeout_ms = 5000,
        .num_queues = nq, .event = on_event, .log = vio_log_stderr,
        .reconnect = opt_kill_at && strncmp(opt_kill_at, "reconnect", 9) == 0};
    CHECK((rc = vio_vhost_user_connect(&fc, &vh)) == 0, "vio_vhost_user_connect(%s): %d (%s)",
          opt_socket, rc, strerror(-rc));
    CHECK(vio_vhost_kind(vh) == VIO_VHOST_USER, "kind %d", (int)vio_vhost_kind(vh));
    unsigned rings = 0;
    rc = vio_vhost_get_queue_num(vh, &rings);
    if (rc == 0)
        say("back-end queues (GET_QUEUE_NUM): %u", rings);
    else
        say("GET_QUEUE_NUM: %d (%s)", rc, strerror(-rc));
    say("ok: connected to %s", opt_socket);

    if (opt_adapter)
        CHECK(setup_adapter(&cfg) == 0, "setup through the driver adapter");
    else
        CHECK(setup_raw(&cfg) == 0, "setup through the raw ring calls");

    capacity = cfg.capacity;
    say("config: capacity %" PRIu64 " sectors, blk_size %u, seg_max %u, size_max %u, "
        "num_queues %u, writeback %u",
        (uint64_t)cfg.capacity, cfg.blk_size, cfg.seg_max, cfg.size_max, cfg.num_queues,
        cfg.wce);
    CHECK(capacity == img_size / SECTOR, "capacity %" PRIu64 ", image %" PRIu64 " / 512 = %" PRIu64,
          capacity, img_size, img_size / SECTOR);
    CHECK(cfg.blk_size == SECTOR, "blk_size %u, want 512 (the export's default)", cfg.blk_size);
    CHECK(cfg.seg_max >= MAX_SEGS, "seg_max %u < %u", cfg.seg_max, MAX_SEGS);
    CHECK(nq == 1 || cfg.num_queues == nq, "num_queues %u, the export was made with %u",
          cfg.num_queues, nq);
    say("ok: GET_CONFIG: capacity = image size / 512, blk_size, seg_max");
    /* libvhost-user counts virtqueues in GET_QUEUE_NUM, and the frontend passes it on as is */
    CHECK(rc != 0 || rings == cfg.num_queues, "GET_QUEUE_NUM %u, config num_queues %u", rings,
          cfg.num_queues);

    if (!opt_adapter) {
        /* SET_CONFIG: the one writable field of virtio-blk, the write-cache mode. */
        uint8_t wce = 1, back = 0;
        unsigned off = offsetof(struct virtio_blk_config, wce);
        CHECK((rc = vio_vhost_set_config(vh, off, &wce, 1)) == 0, "SET_CONFIG wce: %d", rc);
        CHECK((rc = vio_vhost_get_config(vh, 0, &cfg, CFG_LEN)) == 0, "GET_CONFIG: %d", rc);
        back = cfg.wce;
        CHECK(back == 1, "writeback reads %u after SET_CONFIG 1", back);
        wce = 0;
        CHECK((rc = vio_vhost_set_config(vh, off, &wce, 1)) == 0, "SET_CONFIG wce: %d", rc);
        CHECK((rc = vio_vhost_get_config(vh, 0, &cfg, CFG_LEN)) == 0, "GET_CONFIG: %d", rc);
        CHECK(cfg.wce == 0, "writeback reads %u after SET_CONFIG 0", cfg.wce);
        say("ok: SET_CONFIG of the write-cache byte reads back (1, then 0)");
    }

    /* (a) the file's pattern through IN requests, six in flight. */
    {
        struct req r[] = {
            {VIRTIO_BLK_T_IN, 0, 1, {4096}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_IN, 9, 1, {512}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_IN, 100, 2, {32768, 32768}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_IN, 1000, 3, {700, 1860, 1024}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_IN, capacity - 1, 1, {512}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_IN, capacity - 16, 2, {4096, 4096}, VIRTIO_BLK_S_OK},
        };
        unsigned n = sizeof(r) / sizeof(r[0]);
        CHECK(run_batch(r, n, "(a) read") == 0, "(a) read");
        for (unsigned i = 0; i < n; i++)
            CHECK(req_matches(&r[i], 1), "(a) request %u: data differs from the file", i);
        say("ok: (a) %u IN requests in flight read the file's pattern back (1-3 segments, "
            "first and last sectors)", n);
    }

    if (opt_kill_at && strncmp(opt_kill_at, "reconnect", 9) == 0) {
        CHECK(reconnect_case(strcmp(opt_kill_at, "reconnect-inflight") == 0) == 0,
              "reconnect case");
    } else if (opt_kill_at) {
        CHECK(kill_case() == 0, "kill case");
        say("PASS: the back-end was killed, every call after reported it, no crash");
        goto out;
    }

    /* (b) OUT requests, FLUSH, then the file itself. */
    {
        struct req w[] = {
            {VIRTIO_BLK_T_OUT, 2048, 2, {1536, 2560}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_OUT, 2056, 3, {512, 4096, 3584}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_OUT, 3000, 2, {32768, 32768}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_OUT, 1, 1, {512}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_OUT, capacity - 8, 2, {2048, 2048}, VIRTIO_BLK_S_OK},
            {VIRTIO_BLK_T_OUT, 4000, 3, {4096, 4096, 4096}, VIRTIO_BLK_S_OK},
        };
        unsigned n = sizeof(w) / sizeof(w[0]);
        for (unsigned i = 0; i < n; i++) {
            w[i].slot = i;
            req_fill(&w[i], 2);
            for (uint32_t b = 0; b < req_len(&w[i]); b++)
                image[w[i].sector * SECTOR + b] = pat(2, w[i].sector * SECTOR + b);
        }
        CHECK(run_batch(w, n, "(b) write") == 0, "(b) write");
        struct req fl[] = {{VIRTIO_BLK_T_FLUSH, 0, 0, {0}, VIRTIO_BLK_S_OK}};
        CHECK(run_batch(fl, 1, "(b) flush") == 0, "(b) flush");
        CHECK(pread(img_fd, file, img_size, 0) == (ssize_t)img_size, "pread: %s",
              strerror(errno));
        for (uint64_t i = 0; i < img_size; i++)
            CHECK(file[i] == image[i], "(b) image byte %" PRIu64 " (sector %" PRIu64
                  ") is 0x%02x, want 0x%02x", i, i / SECTOR, file[i], image[i]);
        /* One written range through the device again. */
        struct req rb[] = {{VIRTIO_BLK_T_IN, 2056, 2, {6144, 2048}, VIRTIO_BLK_S_OK}};
        CHECK(run_batch(rb, 1, "(b) read back") == 0, "(b) read back");
        CHECK(req_matches(&rb[0], 2), "(b) the written range reads back different");
        say("ok: (b) %u OUT requests in flight (2-3 segments apart in memory) + FLUSH: the "
            "image file holds exactly them, and they read back", n);
    }

    /* (c) GET_ID */
    {
        struct req g[] = {{VIRTIO_BLK_T_GET_ID, 0, 1, {VIRTIO_BLK_ID_BYTES}, VIRTIO_BLK_S_OK}};
        g[0].slot = 0;
        memset(gpa_ptr(seg_gpa(0, 0)), 0xee, VIRTIO_BLK_ID_BYTES);
        CHECK(run_batch(g, 1, "(c) GET_ID") == 0, "(c) GET_ID");
        char id[VIRTIO_BLK_ID_BYTES + 1];
        memcpy(id, gpa_ptr(seg_gpa(0, 0)), VIRTIO_BLK_ID_BYTES);
        id[VIRTIO_BLK_ID_BYTES] = 0; /* a 20-byte serial has no NUL (spec 5.2.6) */
        size_t len = strlen(id);
        CHECK(len > 0, "empty serial");
        for (size_t i = 0; i < len; i++)
            CHECK(id[i] >= 0x20 && id[i] < 0x7f, "serial byte %zu is 0x%02x", i,
                  (unsigned char)id[i]);
        if (opt_serial)
            CHECK(strcmp(id, opt_serial) == 0, "serial '%s', want '%s'", id, opt_serial);
        say("ok: (c) GET_ID: serial '%s'", id);
    }

    /* (d) beyond the capacity and an unknown request type */
    {
        struct req e[] = {
            {VIRTIO_BLK_T_IN, capacity, 1, {512}, VIRTIO_BLK_S_IOERR},
            {VIRTIO_BLK_T_OUT, capacity - 1, 1, {1024}, VIRTIO_BLK_S_IOERR},
            {VIRTIO_BLK_T_IN, 0x00ffffffffffffffull, 1, {512}, VIRTIO_BLK_S_IOERR},
            {0x7777u, 0, 1, {512}, VIRTIO_BLK_S_UNSUPP},
        };
        unsigned n = sizeof(e) / sizeof(e[0]);
        for (unsigned i = 0; i < n; i++) {
            e[i].slot = i;
            req_fill(&e[i], 3);
        }
        CHECK(run_batch(e, n, "(d) out of range") == 0, "(d) out of range");
        struct stat sb2;
        CHECK(fstat(img_fd, &sb2) == 0 && (uint64_t)sb2.st_size == img_size,
              "the image changed size: %lld", (long long)sb2.st_size);
        CHECK(pread(img_fd, file, img_size, 0) == (ssize_t)img_size, "pread: %s",
              strerror(errno));
        CHECK(memcmp(file, image, img_size) == 0, "a refused request changed the image");
        struct req ok[] = {{VIRTIO_BLK_T_IN, capacity - 8, 1, {4096}, VIRTIO_BLK_S_OK}};
        CHECK(run_batch(ok, 1, "(d) read after") == 0, "(d) read after");
        CHECK(req_matches_in(&ok[0], 0, image), "(d) read after: wrong data");
        say("ok: (d) IN at the capacity, OUT across the end, IN at a huge sector: IOERR; "
            "unknown type: UNSUPP; image unchanged; the next read works");
    }

    /* (e) where the back-end stopped = what we made available */
    for (unsigned i = 0; i < nq; i++) {
        unsigned base = 0;
        CHECK((rc = vio_vhost_get_vring_base(vh, i, &base)) == 0, "GET_VRING_BASE %u: %d", i,
              rc);
        CHECK(base == (requests_q[i] & 0xffffu), "GET_VRING_BASE %u: %u, requests made there %u",
              i, base, requests_q[i]);
        say("ok: (e) ring %u: GET_VRING_BASE = %u = requests made there", i, base);
        CHECK(!vio_drvq_is_broken(qs[i]), "queue %u is broken: %s", i,
              vio_violation_name(vio_drvq_violation(qs[i])));
    }
    if (failures == 0)
        say("PASS: %u virtio-blk requests through the vhost frontend", requests);

out:
    vio_vhost_driver_free(adapter);
    for (unsigned i = 0; i < MAXQ; i++) {
        vio_drvq_free(qs[i]);
        if (!opt_adapter && kick_fds[i] >= 0)
            close(kick_fds[i]);
        if (!opt_adapter && call_fds[i] >= 0)
            close(call_fds[i]);
    }
    vio_vhost_free(vh);
    vio_mem_free(vmem);
    if (mem)
        munmap(mem, MEM_SIZE);
    if (mem_fd >= 0)
        close(mem_fd);
    if (img_fd >= 0)
        close(img_fd);
    free(image);
    free(file);
    return failures ? 1 : 0;
}
