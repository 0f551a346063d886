/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the vhost-user message layer and transport state machine
 * (src/transport/vhost_user_msg.c, src/transport/vhost_user.c).
 *
 * Input layout (short input simply ends early):
 *   4 bytes header   b0: validator context queue count - 1 (low 3 bits) and max queue size
 *                        exponent (high 4 bits, 2^e, at least 1);
 *                    b1..b3: validator context protocol features (bits 0..23)
 *   records          op(1), then by op >> 6:
 *     0 message      fdspec(1) len(2) bytes[len]: a wire message for vu_msg_parse(); fdspec
 *                    low nibble = number of fds (0..8), high nibble = their kind (0 the guest
 *                    memfd, 1 eventfds, 2 /dev/null, 3 alternating memfd / eventfd)
 *     1 kick         ring (op & 63) % 3 is kicked (vio_vhost_user_kick)
 *     2 memory write offset(4) len(2) bytes[len] written into the guest memfd (rings, buffers)
 *     3 getters      vio_vhost_user_watches() / queue_state() / status()
 *
 * Each message goes through two checks:
 *   A. vu_msg_parse() + vu_msg_validate() with the fuzzed context. Oracle: a message the
 *      validator accepts satisfies the table's invariants, re-derived here independently
 *      (indices below the queue count, region counts / payload size / fd count consistent,
 *      regions neither empty, wrapping nor overlapping, config ranges inside 256 bytes ...).
 *   B. The same message, with real fds of the chosen kind, is handed to the transport's
 *      dispatcher (vu_dispatch_msg) on a live session bound to a small fake device, so the
 *      state machine (memory maps, rings, inflight, logging, resets) is fuzzed too. Replies
 *      are drained (fds in them closed) after every message. When the session ends the
 *      rest of the input only goes through A.
 * At the end of every input the transport is freed and the number of open fds must be what
 * it was before (no fd leaks on any path); ASan/UBSan catch the rest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/vhost_user_internal.h"
#include "transport/vhost_user_msg.h"
#include "virtio/device.h"
#include "virtio/queue.h"
#include "virtio/vhost_user.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define GUEST_SIZE (1u << 20)
#define NQ 3u

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_vhost_user_msg: " __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                                                \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static int g_memfd = -1;
static int g_verbose;

static void fz_log(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (g_verbose)
        fprintf(stderr, "[%d] %s: %s\n", level, obj, msg);
}

/* ------------------------------------------------------------------------ */
/* Fake device: rx0 (in), tx0 (out), ctrl (any); pops and completes everything */

struct fdev {
    struct vio_device dev;
    struct vio_device_hooks hooks;
    struct vio_queue *q[NQ];
};

static uint64_t fd_features(void *o)
{
    (void)o;
    return (1ull << 32) | (1ull << 29) | (1ull << 28) | (1ull << 35) | (1ull << 5);
}
static uint32_t fd_config_size(void *o)
{
    (void)o;
    return 12;
}
static int fd_config_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    (void)o;
    memset(buf, (int)off, len);
    return 0;
}
static int fd_config_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    (void)o;
    (void)buf;
    (void)len;
    return off < 6 ? -EPERM : 0;
}
static unsigned fd_num_queues(void *o)
{
    (void)o;
    return NQ;
}
static int fd_queue_info(void *o, unsigned q, struct vio_device_queue_info *out)
{
    (void)o;
    if (q >= NQ)
        return -ERANGE;
    out->max_size = 1024;
    out->dir = q == 0 ? VIO_QUEUE_DIR_IN_ONLY : q == 1 ? VIO_QUEUE_DIR_OUT_ONLY : VIO_QUEUE_DIR_ANY;
    out->name = q == 0 ? "rx0" : q == 1 ? "tx0" : "ctrl";
    return 0;
}
static int fd_set_features(void *o, uint64_t f)
{
    (void)o;
    return (f & (1ull << 5)) && (f & (1ull << 35)) ? -ENOTSUP : 0; /* some combination refused */
}
static int fd_queue_start(void *o, unsigned qi, struct vio_queue *q)
{
    struct fdev *d = o;
    CHECK(qi < NQ && q && vio_queue_ready(q), "queue_start(%u) on a queue that is not set up", qi);
    if (d->q[qi])
        return -EBUSY;
    d->q[qi] = q;
    return 0;
}
static void fd_queue_stop(void *o, unsigned qi)
{
    ((struct fdev *)o)->q[qi] = NULL;
}
static int fd_queue_notify(void *o, unsigned qi)
{
    struct fdev *d = o;
    struct vio_queue *q = d->q[qi];
    if (!q)
        return -EIO;
    int n = 0;
    for (int k = 0; k < 64; k++) {
        struct vio_chain c;
        struct iovec iov[8];
        int rc = vio_queue_pop(q, &c, iov, 8);
        if (rc == -ENOBUFS)
            break;
        if (rc < 0)
            break;
        uint32_t len = 0;
        for (unsigned i = c.n_out; i < c.n_out + c.n_in; i++) {
            memset(iov[i].iov_base, 0xab, iov[i].iov_len > 64 ? 64 : iov[i].iov_len);
            len += iov[i].iov_len > 64 ? 64 : (uint32_t)iov[i].iov_len;
        }
        volatile uint8_t sink = 0;
        for (unsigned i = 0; i < c.n_out; i++)
            if (iov[i].iov_len)
                sink ^= ((uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
        (void)sink;
        vio_queue_push(q, c.head, len);
        n++;
    }
    if (vio_queue_needs_notify(q) && d->hooks.notify_queue)
        d->hooks.notify_queue(d->hooks.opaque, qi);
    return n;
}
static void fd_reset(void *o)
{
    struct fdev *d = o;
    for (unsigned i = 0; i < NQ; i++)
        d->q[i] = NULL;
}
static int fd_bind(void *o, const struct vio_device_hooks *h)
{
    struct fdev *d = o;
    if (h)
        d->hooks = *h;
    else
        memset(&d->hooks, 0, sizeof(d->hooks));
    return 0;
}

static const struct vio_device_ops fdev_ops = {
    .name = "fuzz", .features = fd_features, .config_size = fd_config_size,
    .config_read = fd_config_read, .config_write = fd_config_write,
    .num_queues = fd_num_queues, .queue_info = fd_queue_info, .set_features = fd_set_features,
    .queue_start = fd_queue_start, .queue_stop = fd_queue_stop, .queue_notify = fd_queue_notify,
    .reset = fd_reset, .bind = fd_bind,
};

/* ------------------------------------------------------------------------ */
/* Oracle A: what an accepted message must satisfy                           */

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static void check_accepted(const struct vu_msg *m, const struct vu_validate_ctx *ctx)
{
    const struct vu_req_info *ri = vu_req_info(m->hdr.request);
    CHECK(ri, "accepted request %u without a table row", m->hdr.request);
    CHECK((m->hdr.flags & 3) == 1 && !(m->hdr.flags & ~(3u | VU_FLAG_NEED_REPLY)),
          "%s accepted with flags 0x%x", ri->name, m->hdr.flags);
    CHECK(!ri->gated || (ri->pf >= 0 && (ctx->protocol_features >> ri->pf) & 1),
          "%s accepted without protocol feature %d", ri->name, ri->pf);
    CHECK(ri->handle, "%s: a table row without a handler", ri->name);
    CHECK(m->hdr.size <= sizeof(m->p), "%s: size %u", ri->name, m->hdr.size);
    const union vu_payload *p = &m->p;
    unsigned allowed = ri->fds == VU_FD_NONE ? 0u : 1u; /* PER_REGION: below */
    if (ri->fds == VU_FD_ONE)
        CHECK(m->nfds == 1, "%s accepted with %u fds, needs one", ri->name, m->nfds);
    switch (ri->kind) {
    case VU_P_NONE:
        CHECK(m->hdr.size == 0 || (m->hdr.size == 8 && p->u64 == 0), "%s: size %u", ri->name,
              m->hdr.size);
        break;
    case VU_P_U64:
        CHECK(m->hdr.size == 8, "%s: size %u", ri->name, m->hdr.size);
        break;
    case VU_P_STATE:
        CHECK(m->hdr.size == 8 && p->state.index < ctx->num_queues, "%s: size %u index %u",
              ri->name, m->hdr.size, p->state.index);
        break;
    case VU_P_ADDR:
        CHECK(m->hdr.size == 40 && p->addr.index < ctx->num_queues, "%s: index %u", ri->name,
              p->addr.index);
        break;
    case VU_P_VRING_FD: {
        CHECK(m->hdr.size == 8, "%s: size", ri->name);
        CHECK((p->u64 & 0xff) < ctx->num_queues, "%s: index %llu", ri->name,
              (unsigned long long)(p->u64 & 0xff));
        bool nofd = p->u64 & VU_VRING_NOFD;
        CHECK(m->nfds == (nofd ? 0u : 1u), "%s: %u fds, nofd %d", ri->name, m->nfds, nofd);
        break;
    }
    case VU_P_MEM: {
        uint32_t n = p->mem.nregions;
        CHECK(n >= 1 && n <= VU_MAX_MEM_REGIONS, "%s: %u regions", ri->name, n);
        CHECK(m->hdr.size == 8 + 32 * n, "%s: size %u for %u regions", ri->name, m->hdr.size, n);
        CHECK(m->nfds == n, "%s: %u fds for %u regions", ri->name, m->nfds, n);
        allowed = n;
        for (uint32_t i = 0; i < n; i++) {
            const struct vu_region *a = &p->mem.r[i];
            CHECK(a->size > 0, "%s: empty region", ri->name);
            CHECK((unsigned __int128)a->gpa + a->size <= (unsigned __int128)1 << 64 &&
                      (unsigned __int128)a->uva + a->size <= (unsigned __int128)1 << 64,
                  "%s: region %u wraps", ri->name, i);
            for (uint32_t j = 0; j < i; j++) {
                const struct vu_region *b = &p->mem.r[j];
                unsigned __int128 ae = (unsigned __int128)a->gpa + a->size;
                unsigned __int128 be = (unsigned __int128)b->gpa + b->size;
                CHECK(ae <= b->gpa || be <= a->gpa, "%s: regions %u and %u overlap", ri->name, j,
                      i);
            }
        }
        break;
    }
    case VU_P_MEM_SINGLE:
        CHECK(m->hdr.size == 40 && p->mem1.r.size > 0, "%s: size", ri->name);
        if (m->hdr.request == VU_ADD_MEM_REG)
            CHECK(m->nfds == 1, "%s: %u fds", ri->name, m->nfds);
        break;
    case VU_P_LOG:
        CHECK(m->hdr.size == 16 && m->nfds == 1 && p->log.size > 0, "%s", ri->name);
        break;
    case VU_P_CONFIG:
        CHECK(p->config.size <= VU_MAX_CONFIG && m->hdr.size == 12 + p->config.size &&
                  p->config.offset + (uint64_t)p->config.size <= VU_MAX_CONFIG,
              "%s: offset %u size %u payload %u", ri->name, p->config.offset, p->config.size,
              m->hdr.size);
        break;
    case VU_P_INFLIGHT:
        CHECK(p->inflight.num_queues >= 1 && p->inflight.num_queues <= ctx->num_queues &&
                  pow2(p->inflight.queue_size) &&
                  p->inflight.queue_size <= ctx->max_queue_size,
              "%s: %u queues of %u", ri->name, p->inflight.num_queues, p->inflight.queue_size);
        if (m->hdr.request == VU_SET_INFLIGHT_FD)
            CHECK(m->nfds == 1 && p->inflight.mmap_size > 0, "%s", ri->name);
        break;
    default:
        CHECK(0, "%s: unknown payload kind %u", ri->name, ri->kind);
    }
    CHECK(m->nfds <= allowed, "%s: %u fds accepted, %u allowed", ri->name, m->nfds, allowed);
    if (m->hdr.request == VU_SET_LOG_FD || m->hdr.request == VU_SET_BACKEND_REQ_FD ||
        m->hdr.request == VU_SET_LOG_BASE)
        CHECK(m->nfds == 1, "%s accepted with %u fds", ri->name, m->nfds);
    if (m->hdr.request == VU_SET_VRING_ENABLE)
        CHECK(p->state.num <= 1, "enable value %u", p->state.num);
    if (m->hdr.request == VU_SET_STATUS)
        CHECK(p->u64 <= 0xff, "status 0x%llx", (unsigned long long)p->u64);
    if (m->hdr.request == VU_NET_SET_MTU)
        CHECK(p->u64 >= 68 && p->u64 <= 65535, "mtu %llu", (unsigned long long)p->u64);
    if (m->hdr.request == VU_SET_VRING_NUM)
        CHECK(pow2(p->state.num) && p->state.num <= ctx->max_queue_size, "ring size %u",
              p->state.num);
    if (m->hdr.request == VU_SET_VRING_BASE)
        CHECK(p->state.num <= 0xffff, "base %u", p->state.num);
}

/* ------------------------------------------------------------------------ */
/* Session driver                                                            */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Read and discard every reply waiting on the front-end's end, closing fds in them. */
static void drain(int sock)
{
    for (;;) {
        uint8_t buf[4096];
        union {
            char c[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {buf, sizeof(buf)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.c,
                            .msg_controllen = sizeof(ctl.c)};
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0)
            return;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[VU_MAX_FDS];
            memcpy(fds, CMSG_DATA(c), k * sizeof(int));
            for (size_t i = 0; i < k; i++)
                close(fds[i]);
        }
    }
}

static int make_fd(unsigned kind, unsigned i)
{
    if (kind == 3)
        kind = i & 1;
    switch (kind) {
    case 0:
        return dup(g_memfd);
    case 1:
        return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    default:
        return open("/dev/null", O_RDWR | O_CLOEXEC);
    }
}

struct input {
    const uint8_t *p;
    size_t left;
};

static uint64_t take(struct input *in, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && in->left > 0; i++, in->p++, in->left--)
        v |= (uint64_t)in->p[0] << (8 * i);
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_verbose = getenv("FUZZ_VERBOSE") != NULL;
    g_memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
    if (g_memfd < 0 || ftruncate(g_memfd, GUEST_SIZE) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_memfd < 0)
        LLVMFuzzerInitialize(NULL, NULL);
    struct input in = {data, size};
    struct vu_validate_ctx fctx;
    uint8_t b0 = (uint8_t)take(&in, 1);
    fctx.num_queues = (b0 & 7u) + 1;
    unsigned e = b0 >> 4;
    fctx.max_queue_size = (uint16_t)(1u << (e > 15 ? 15 : e));
    fctx.protocol_features = take(&in, 3);

    /* fresh guest memory content for every input */
    static uint8_t zero[4096];
    for (size_t off = 0; off < GUEST_SIZE; off += sizeof(zero))
        if (pwrite(g_memfd, zero, sizeof(zero), (off_t)off) < 0)
            abort();

    int fds_before = count_fds();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct fdev dev;
    memset(&dev, 0, sizeof(dev));
    dev.dev.ops = &fdev_ops;
    dev.dev.opaque = &dev;
    struct vio_vhost_user_config cfg = {.struct_size = sizeof(cfg), .use_fd = true, .fd = sv[0],
                                        .dev = &dev.dev, .max_queue_size = 1024,
                                        .max_mem_slots = 8, .log = fz_log};
    struct vio_vhost_user *vu = NULL;
    if (vio_vhost_user_new(&cfg, &vu) < 0)
        abort();

    while (in.left > 0) {
        uint8_t op = (uint8_t)take(&in, 1);
        switch (op >> 6) {
        case 0: {
            uint8_t fdspec = (uint8_t)take(&in, 1);
            size_t len = (size_t)take(&in, 2);
            if (len > in.left)
                len = in.left;
            struct vu_msg m;
            memset(&m, 0, sizeof(m));
            int r = vu_msg_parse(in.p, len, &m);
            in.p += len;
            in.left -= len;
            if (r < 0)
                break;
            CHECK((size_t)r == sizeof(struct vu_hdr) + m.hdr.size && (size_t)r <= len,
                  "parse consumed %d of %zu", r, len);
            unsigned nfds = fdspec & 15u;
            if (nfds > VU_MAX_FDS)
                nfds = VU_MAX_FDS;
            /* A: validation against the fuzzed context (fd values do not matter) */
            m.nfds = nfds;
            for (unsigned i = 0; i < VU_MAX_FDS; i++)
                m.fds[i] = -1;
            char why[256];
            if (vu_msg_validate(&m, &fctx, why, sizeof(why)) == 0)
                check_accepted(&m, &fctx);
            /* B: the live session, with real fds */
            if (!vio_vhost_user_connected(vu))
                break;
            for (unsigned i = 0; i < nfds; i++)
                m.fds[i] = make_fd(fdspec >> 4, i);
            struct vu_validate_ctx rctx;
            vu_validate_ctx(vu, &rctx);
            bool ok = vu_msg_validate(&m, &rctx, NULL, 0) == 0;
            int d = vu_dispatch_msg(vu, &m);
            CHECK(!ok || d == 0 || d == -EPROTO, "dispatch returned %d", d);
            CHECK(ok || d == -EPROTO, "refused message returned %d", d);
            for (unsigned i = 0; i < VU_MAX_FDS; i++)
                CHECK(m.fds[i] == -1 || i >= m.nfds, "fd slot %u left open", i);
            drain(sv[1]);
            break;
        }
        case 1:
            if (vio_vhost_user_connected(vu))
                vio_vhost_user_kick(vu, (op & 63u) % NQ);
            drain(sv[1]);
            break;
        case 2: {
            uint32_t off = (uint32_t)take(&in, 4) % GUEST_SIZE;
            size_t len = (size_t)take(&in, 2);
            if (len > in.left)
                len = in.left;
            if (len > GUEST_SIZE - off)
                len = GUEST_SIZE - off;
            if (len && pwrite(g_memfd, in.p, len, off) < 0)
                abort();
            in.p += len;
            in.left -= len;
            break;
        }
        default: {
            struct vio_device_watch w[16];
            int n = vio_vhost_user_watches(vu, w, 16);
            CHECK(n >= 0 && n <= 1 + (int)NQ, "%d watches", n);
            for (int i = 0; i < n && i < 16; i++)
                CHECK(w[i].fd >= 0 && w[i].events, "bad watch");
            struct vio_vhost_user_queue_state qs;
            CHECK(vio_vhost_user_queue_state(vu, (op & 63u) % NQ, &qs) == 0, "queue_state");
            CHECK(!qs.running || (qs.started && qs.enabled), "running but not started/enabled");
            (void)vio_vhost_user_status(vu);
            break;
        }
        }
    }
    vio_vhost_user_free(vu);
    close(sv[1]);
    int fds_after = count_fds();
    CHECK(fds_after == fds_before, "fd leak: %d open before, %d after", fds_before, fds_after);
    return 0;
}
