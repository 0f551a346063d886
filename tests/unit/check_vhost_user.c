/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end transport (src/transport/vhost_user.c).
 *
 * A test front-end of our own (a unix socket, memfd guest memory, eventfds and
 * driver-side rings from the core) runs a QEMU-like session against the
 * transport bound to a fake device: a small ops table whose queue 0 is an RX
 * queue, queue 1 a TX queue and queue 2 a control queue. Everything runs on
 * one thread: the front-end writes a message, then pumps
 * vio_vhost_user_handle(), then reads the reply.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/vhost_user_internal.h"
#include "transport/vhost_user_msg.h"
#include "virtio/device.h"
#include "virtio/queue.h"
#include "virtio/status.h"
#include "virtio/vhost_user.h"

#define NQ 3u
#define QSZ 64u
#define MEM_SIZE (1u << 20)
#define GPA_BASE 0x40000000ull
#define BUF_LEN 256u
#define F_EVENT_IDX (1ull << VIO_F_EVENT_IDX)
#define F_VERSION_1 (1ull << VIO_F_VERSION_1)
#define F_PF (1ull << VU_F_PROTOCOL_FEATURES)
#define F_LOG_ALL (1ull << VU_F_LOG_ALL)
#define DEV_FEATURES (F_VERSION_1 | F_EVENT_IDX | (1ull << 5) /* a device bit */)

/* ------------------------------------------------------------------------ */
/* Log capture                                                               */

static int n_errors;
static char last_error[512];

static void test_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    (void)object;
    if (level == VIO_LOG_ERROR) {
        n_errors++;
        snprintf(last_error, sizeof(last_error), "%s", msg);
    }
    if (getenv("VU_TEST_VERBOSE"))
        fprintf(stderr, "[%d] %s: %s\n", level, object, msg);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* ------------------------------------------------------------------------ */
/* Fake device                                                               */

struct fdev {
    struct vio_device dev;
    struct vio_device_hooks hooks;
    bool bound;
    uint64_t negotiated;
    int set_features_calls, refuse_features;
    struct vio_queue *q[NQ];
    int starts, stops, resets;
    bool hold;               /* pop chains but do not complete them */
    uint16_t held[QSZ];
    unsigned nheld;
    uint16_t done[4 * QSZ];  /* heads completed, in order */
    unsigned ndone;
    uint8_t txbuf[4096];     /* bytes of TX chains */
    size_t txlen;
    uint8_t rxdata[64];      /* what an RX chain receives */
    size_t rxlen;
    uint8_t config[16];
};

static struct fdev *F(void *o)
{
    return o;
}

static uint32_t fd_device_id(void *o)
{
    (void)o;
    return VIO_DEVICE_ID_NET;
}
static uint64_t fd_features(void *o)
{
    (void)o;
    return DEV_FEATURES;
}
static uint32_t fd_config_size(void *o)
{
    (void)o;
    return 16;
}
static int fd_config_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    memcpy(buf, F(o)->config + off, len);
    return 0;
}
static int fd_config_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    if (off < 8)
        return -EPERM; /* the first 8 bytes are read-only */
    memcpy(F(o)->config + off, buf, len);
    return 0;
}
static unsigned fd_num_queues(void *o)
{
    (void)o;
    return NQ;
}
static int fd_queue_info(void *o, unsigned q, struct vio_device_queue_info *out)
{
    (void)o;
    static const char *const names[] = {"rx0", "tx0", "ctrl"};
    if (q >= NQ)
        return -ERANGE;
    out->max_size = 256;
    out->dir = q == 0 ? VIO_QUEUE_DIR_IN_ONLY : q == 1 ? VIO_QUEUE_DIR_OUT_ONLY : VIO_QUEUE_DIR_ANY;
    out->name = names[q];
    return 0;
}
static int fd_set_features(void *o, uint64_t f)
{
    F(o)->set_features_calls++;
    if (F(o)->refuse_features)
        return -ENOTSUP;
    F(o)->negotiated = f;
    return 0;
}
static int fd_queue_start(void *o, unsigned qi, struct vio_queue *q)
{
    if (F(o)->q[qi])
        return -EBUSY;
    F(o)->q[qi] = q;
    F(o)->starts++;
    return 0;
}
static void fd_queue_stop(void *o, unsigned qi)
{
    if (F(o)->q[qi])
        F(o)->stops++;
    F(o)->q[qi] = NULL;
}
static int fd_queue_notify(void *o, unsigned qi)
{
    struct fdev *d = o;
    struct vio_queue *q = d->q[qi];
    if (!q)
        return -EIO;
    int n = 0;
    for (;;) {
        struct vio_chain c;
        struct iovec iov[16];
        int rc = vio_queue_pop(q, &c, iov, 16);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return -EIO;
        n++;
        uint32_t len = 0;
        if (qi == 1) {
            for (unsigned k = 0; k < c.n_out; k++) {
                size_t l = iov[k].iov_len;
                if (d->txlen + l <= sizeof(d->txbuf)) {
                    memcpy(d->txbuf + d->txlen, iov[k].iov_base, l);
                    d->txlen += l;
                }
            }
        } else if (qi == 0) {
            size_t left = d->rxlen;
            for (unsigned k = c.n_out; k < c.n_out + c.n_in && left; k++) {
                size_t l = iov[k].iov_len < left ? iov[k].iov_len : left;
                memcpy(iov[k].iov_base, d->rxdata + (d->rxlen - left), l);
                left -= l;
                len += (uint32_t)l;
            }
        }
        if (d->hold) {
            d->held[d->nheld++ % QSZ] = c.head;
            continue;
        }
        vio_queue_push(q, c.head, len);
        d->done[d->ndone++ % (4 * QSZ)] = c.head;
    }
    if (vio_queue_needs_notify(q) && d->hooks.notify_queue)
        d->hooks.notify_queue(d->hooks.opaque, qi);
    return n;
}
static void fd_reset(void *o)
{
    struct fdev *d = o;
    d->resets++;
    for (unsigned i = 0; i < NQ; i++)
        d->q[i] = NULL;
    d->negotiated = 0;
}
static int fd_bind(void *o, const struct vio_device_hooks *h)
{
    struct fdev *d = o;
    if (h) {
        d->hooks = *h;
        d->bound = true;
    } else {
        memset(&d->hooks, 0, sizeof(d->hooks));
        d->bound = false;
    }
    return 0;
}

static const struct vio_device_ops fdev_ops = {
    .name = "fake",
    .device_id = fd_device_id,
    .features = fd_features,
    .config_size = fd_config_size,
    .config_read = fd_config_read,
    .config_write = fd_config_write,
    .num_queues = fd_num_queues,
    .queue_info = fd_queue_info,
    .set_features = fd_set_features,
    .queue_start = fd_queue_start,
    .queue_stop = fd_queue_stop,
    .queue_notify = fd_queue_notify,
    .reset = fd_reset,
    .bind = fd_bind,
};

static void fdev_init(struct fdev *d)
{
    memset(d, 0, sizeof(*d));
    d->dev.ops = &fdev_ops;
    d->dev.opaque = d;
    for (unsigned i = 0; i < sizeof(d->config); i++)
        d->config[i] = (uint8_t)(0xa0 + i);
}

/* ------------------------------------------------------------------------ */
/* Transport fixture                                                         */

static int n_pause, n_resume, pause_depth, max_depth;

static void t_pause(void *o)
{
    (void)o;
    n_pause++;
    pause_depth++;
    if (pause_depth > max_depth)
        max_depth = pause_depth;
}
static void t_resume(void *o)
{
    (void)o;
    n_resume++;
    pause_depth--;
}

static char sock_path[108];

static void make_path(const char *tag)
{
    snprintf(sock_path, sizeof(sock_path), "/tmp/vio-vu-%d-%s.sock", (int)getpid(), tag);
}

static struct vio_vhost_user *vu_server(struct fdev *d, const char *tag)
{
    /* counters are global: tests may run in one process (CK_FORK=no) */
    n_errors = 0;
    last_error[0] = 0;
    n_pause = n_resume = pause_depth = max_depth = 0;
    make_path(tag);
    struct vio_vhost_user_config c = {
        .struct_size = sizeof(c), .socket_path = sock_path, .dev = &d->dev, .log = test_log,
        .pause = t_pause, .resume = t_resume, .max_mem_slots = 16};
    struct vio_vhost_user *vu = NULL;
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), 0);
    ck_assert_ptr_nonnull(vu);
    ck_assert(d->bound);
    return vu;
}

/* ------------------------------------------------------------------------ */
/* Test front-end                                                            */

struct fe {
    int sock;
    int memfd;
    uint8_t *host;          /* our own mapping: the "user address" space */
    uint64_t gpa;
    size_t size;
    size_t bump;
    struct vio_mem *mem;    /* our driver-side view */
    int kick[NQ], call[NQ], err[NQ];
    struct vio_drvq *dq[NQ];
    uint64_t desc[NQ], avail[NQ], used[NQ];
    uint64_t pf;            /* protocol features we negotiated */
};

static uint64_t uva_of(struct fe *f, uint64_t gpa)
{
    return (uint64_t)(uintptr_t)f->host + (gpa - f->gpa);
}

static uint64_t fe_alloc(struct fe *f, size_t len, size_t align)
{
    f->bump = (f->bump + align - 1) & ~(align - 1);
    uint64_t g = f->gpa + f->bump;
    f->bump += len;
    ck_assert_uint_le(f->bump, f->size);
    return g;
}

static void fe_connect(struct fe *f)
{
    f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->sock, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(connect(f->sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void fe_init(struct fe *f, struct vio_vhost_user *vu)
{
    memset(f, 0, sizeof(*f));
    for (unsigned i = 0; i < NQ; i++)
        f->kick[i] = f->call[i] = f->err[i] = -1;
    fe_connect(f);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 0); /* accept */
    ck_assert(vio_vhost_user_connected(vu));
    f->size = MEM_SIZE;
    f->gpa = GPA_BASE;
    f->memfd = memfd_create("fe-mem", MFD_CLOEXEC);
    ck_assert_int_ge(f->memfd, 0);
    ck_assert_int_eq(ftruncate(f->memfd, (off_t)f->size), 0);
    f->host = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    ck_assert_ptr_ne(f->host, MAP_FAILED);
    ck_assert_int_eq(vio_mem_new(0, &f->mem), 0);
    struct vio_mem_region r = {.guest_addr = f->gpa, .size = f->size, .host_ptr = f->host};
    ck_assert_int_eq(vio_mem_add(f->mem, &r), 0);
    f->bump = 0x1000;
    for (unsigned i = 0; i < NQ; i++) {
        f->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f->err[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
}

static void fe_fini(struct fe *f)
{
    for (unsigned i = 0; i < NQ; i++) {
        vio_drvq_free(f->dq[i]);
        f->dq[i] = NULL;
        if (f->kick[i] >= 0)
            close(f->kick[i]);
        if (f->call[i] >= 0)
            close(f->call[i]);
        if (f->err[i] >= 0)
            close(f->err[i]);
    }
    vio_mem_free(f->mem);
    if (f->host)
        munmap(f->host, f->size);
    if (f->memfd >= 0)
        close(f->memfd);
    if (f->sock >= 0)
        close(f->sock);
    memset(f, 0, sizeof(*f));
    f->sock = f->memfd = -1;
}

/* Raw send: any header, any payload length, any fds. */
static int fe_send_raw(int sock, uint32_t req, uint32_t flags, uint32_t size, const void *payload,
                       size_t paylen, const int *fds, unsigned nfds)
{
    struct vu_hdr h = {.request = req, .flags = flags, .size = size};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, paylen}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = paylen ? 2 : 1};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                   const int *fds, unsigned nfds)
{
    return fe_send_raw(f->sock, req, VU_VERSION | flags, size, payload, size, fds, nfds);
}

/* Read one reply (waits up to a second). Returns 0 or -errno (-ECONNRESET on EOF). */
static int fe_recv(struct fe *f, struct vu_msg *m)
{
    struct pollfd p = {.fd = f->sock, .events = POLLIN};
    if (poll(&p, 1, 1000) <= 0)
        return -ETIMEDOUT;
    return vu_msg_recv(f->sock, m);
}

/* True if nothing is waiting on the socket. */
static bool fe_quiet(struct fe *f)
{
    struct pollfd p = {.fd = f->sock, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Send, let the transport handle it, and check it answered nothing. */
static void fe_do(struct fe *f, struct vio_vhost_user *vu, uint32_t req, const void *payload,
                  uint32_t size, const int *fds, unsigned nfds)
{
    ck_assert_int_eq(fe_send(f, req, 0, payload, size, fds, nfds), 0);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
    ck_assert_msg(fe_quiet(f), "unexpected reply to request %u", req);
}

/* Send a request that has a reply; return the reply. */
static void fe_rpc(struct fe *f, struct vio_vhost_user *vu, uint32_t req, const void *payload,
                   uint32_t size, struct vu_msg *reply)
{
    ck_assert_int_eq(fe_send(f, req, 0, payload, size, NULL, 0), 0);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
    ck_assert_int_eq(fe_recv(f, reply), 0);
    ck_assert_uint_eq(reply->hdr.request, req);
    ck_assert_uint_eq(reply->hdr.flags, VU_VERSION | VU_FLAG_REPLY);
}

static uint64_t fe_get_u64(struct fe *f, struct vio_vhost_user *vu, uint32_t req)
{
    struct vu_msg r;
    fe_rpc(f, vu, req, NULL, 0, &r);
    ck_assert_uint_eq(r.hdr.size, 8);
    vu_msg_close_fds(&r);
    return r.p.u64;
}

/* Send with NEED_REPLY and return the ack value. */
static uint64_t fe_ack(struct fe *f, struct vio_vhost_user *vu, uint32_t req, const void *payload,
                       uint32_t size, const int *fds, unsigned nfds)
{
    ck_assert_int_eq(fe_send(f, req, VU_FLAG_NEED_REPLY, payload, size, fds, nfds), 0);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
    struct vu_msg r;
    ck_assert_int_eq(fe_recv(f, &r), 0);
    ck_assert_uint_eq(r.hdr.request, req);
    ck_assert_uint_eq(r.hdr.size, 8);
    return r.p.u64;
}

static void fe_u64(struct fe *f, struct vio_vhost_user *vu, uint32_t req, uint64_t v)
{
    fe_do(f, vu, req, &v, 8, NULL, 0);
}

/* GET_FEATURES .. SET_FEATURES, QEMU's order. */
static void fe_handshake(struct fe *f, struct vio_vhost_user *vu, uint64_t pf, uint64_t features)
{
    uint64_t offered = fe_get_u64(f, vu, VU_GET_FEATURES);
    ck_assert_uint_eq(offered, DEV_FEATURES | F_PF | F_LOG_ALL);
    uint64_t pfo = fe_get_u64(f, vu, VU_GET_PROTOCOL_FEATURES);
    ck_assert_uint_eq(pf & ~pfo, 0);
    fe_u64(f, vu, VU_SET_PROTOCOL_FEATURES, pf);
    f->pf = pf;
    ck_assert_uint_eq(vio_vhost_user_protocol_features(vu), pf);
    fe_do(f, vu, VU_SET_OWNER, NULL, 0, NULL, 0);
    fe_u64(f, vu, VU_SET_FEATURES, features);
}

static void fe_mem_table(struct fe *f, struct vio_vhost_user *vu)
{
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = f->gpa, .size = f->size, .uva = uva_of(f, f->gpa),
                                .mmap_offset = 0};
    fe_do(f, vu, VU_SET_MEM_TABLE, &m, 8 + sizeof(struct vu_region), &f->memfd, 1);
}

/* Lay out ring i in guest memory and create our driver side of it. */
static void fe_ring_alloc(struct fe *f, unsigned i, uint64_t features)
{
    f->desc[i] = fe_alloc(f, 16 * QSZ, 16);
    f->avail[i] = fe_alloc(f, 6 + 2 * QSZ, 2);
    f->used[i] = fe_alloc(f, 6 + 8 * QSZ, 4);
    struct vio_drvq_config dc = {.struct_size = sizeof(dc), .size = QSZ, .index = (uint16_t)i,
                                 .features = features, .mem = f->mem, .desc = f->desc[i],
                                 .driver = f->avail[i], .device = f->used[i]};
    vio_drvq_free(f->dq[i]);
    ck_assert_int_eq(vio_drvq_new(&dc, &f->dq[i]), 0);
}

/* SET_VRING_NUM/BASE/ADDR/KICK/CALL/ERR for ring i. */
static void fe_ring_setup(struct fe *f, struct vio_vhost_user *vu, unsigned i, uint16_t base,
                          uint32_t addr_flags)
{
    struct vu_state s = {.index = i, .num = QSZ};
    fe_do(f, vu, VU_SET_VRING_NUM, &s, sizeof(s), NULL, 0);
    s.num = base;
    fe_do(f, vu, VU_SET_VRING_BASE, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = i, .flags = addr_flags, .desc = uva_of(f, f->desc[i]),
                        .used = uva_of(f, f->used[i]), .avail = uva_of(f, f->avail[i]),
                        .log = f->used[i]};
    fe_do(f, vu, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t v = i;
    fe_do(f, vu, VU_SET_VRING_CALL, &v, 8, &f->call[i], 1);
    fe_do(f, vu, VU_SET_VRING_ERR, &v, 8, &f->err[i], 1);
    fe_do(f, vu, VU_SET_VRING_KICK, &v, 8, &f->kick[i], 1);
}

static void fe_enable(struct fe *f, struct vio_vhost_user *vu, unsigned i, unsigned on)
{
    struct vu_state s = {.index = i, .num = on};
    fe_do(f, vu, VU_SET_VRING_ENABLE, &s, sizeof(s), NULL, 0);
}

/* Kick ring i as a guest would and let the back-end run (the watch fired). */
static int fe_kick(struct fe *f, struct vio_vhost_user *vu, unsigned i)
{
    eventfd_write(f->kick[i], 1);
    return vio_vhost_user_kick(vu, i);
}

static uint64_t eventfd_take(int fd)
{
    eventfd_t v = 0;
    if (eventfd_read(fd, &v) < 0)
        return 0;
    return v;
}

/* Put one TX buffer of n bytes with byte pattern b. */
static uint64_t fe_tx(struct fe *f, unsigned n, uint8_t b, uintptr_t token)
{
    uint64_t g = fe_alloc(f, n, 16);
    memset(f->host + (g - f->gpa), b, n);
    struct vio_sg sg = {.addr = g, .len = n};
    ck_assert_int_eq(vio_drvq_add(f->dq[1], &sg, 1, 0, (void *)token), 0);
    vio_drvq_enable_cb(f->dq[1]); /* EVENT_IDX: ask for the next used buffer's interrupt */
    vio_drvq_kick_prepare(f->dq[1]);
    return g;
}

static uint64_t fe_rx(struct fe *f, uintptr_t token)
{
    uint64_t g = fe_alloc(f, BUF_LEN, 16);
    struct vio_sg sg = {.addr = g, .len = BUF_LEN};
    ck_assert_int_eq(vio_drvq_add(f->dq[0], &sg, 0, 1, (void *)token), 0);
    vio_drvq_enable_cb(f->dq[0]);
    vio_drvq_kick_prepare(f->dq[0]);
    return g;
}

/* Full QEMU-like bring-up of rings 0 and 1. */
static void fe_bringup(struct fe *f, struct vio_vhost_user *vu, uint64_t pf)
{
    fe_handshake(f, vu, pf, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_mem_table(f, vu);
    for (unsigned i = 0; i < 2; i++) {
        fe_ring_alloc(f, i, F_VERSION_1 | F_EVENT_IDX);
        fe_ring_setup(f, vu, i, 0, 0);
        fe_enable(f, vu, i, 1);
    }
}

static void tx_roundtrip(struct fe *f, struct vio_vhost_user *vu, struct fdev *d, uint8_t pat)
{
    size_t before = d->txlen;
    fe_tx(f, 100, pat, 0x100 + pat);
    ck_assert_int_eq(fe_kick(f, vu, 1), 1);
    ck_assert_uint_eq(d->txlen, before + 100);
    for (size_t k = before; k < d->txlen; k++)
        ck_assert_uint_eq(d->txbuf[k], pat);
    void *tok;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(f->dq[1], &tok, &len), 0);
    ck_assert_ptr_eq(tok, (void *)(uintptr_t)(0x100 + pat));
    ck_assert_uint_ge(eventfd_take(f->call[1]), 1);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

START_TEST(test_handshake)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "hs");
    struct fe f;
    fe_init(&f, vu);
    uint64_t pf = fe_get_u64(&f, vu, VU_GET_PROTOCOL_FEATURES);
    /* the offer the issue asks for */
    const unsigned want[] = {VU_PF_MQ, VU_PF_LOG_SHMFD, VU_PF_RARP, VU_PF_REPLY_ACK, VU_PF_MTU,
                             VU_PF_BACKEND_REQ, VU_PF_CONFIG, VU_PF_INFLIGHT_SHMFD,
                             VU_PF_RESET_DEVICE, VU_PF_CONFIGURE_MEM_SLOTS, VU_PF_STATUS};
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(pf & (1ull << want[i]), "protocol feature %u not offered", want[i]);
    fe_handshake(&f, vu, pf, F_VERSION_1 | F_EVENT_IDX | F_PF);
    ck_assert_uint_eq(d.negotiated, F_VERSION_1 | F_EVENT_IDX);
    ck_assert_uint_eq(vio_vhost_user_features(vu), F_VERSION_1 | F_EVENT_IDX);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_QUEUE_NUM), NQ);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_MAX_MEM_SLOTS), 16);

    /* config space */
    struct vu_config c = {.offset = 4, .size = 8};
    struct vu_msg r;
    fe_rpc(&f, vu, VU_GET_CONFIG, &c, 12 + 8, &r);
    ck_assert_uint_eq(r.hdr.size, 20);
    ck_assert_uint_eq(r.p.config.offset, 4);
    ck_assert_mem_eq(r.p.config.payload, d.config + 4, 8);
    c = (struct vu_config){.offset = 12, .size = 4, .payload = {1, 2, 3, 4}};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_CONFIG, &c, 16, NULL, 0), 0);
    ck_assert_uint_eq(d.config[12], 1);
    c.offset = 0; /* read-only field: refused but not fatal */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_CONFIG, &c, 16, NULL, 0), 1);
    c = (struct vu_config){.offset = 12, .size = 8}; /* past the device's 16 bytes */
    fe_rpc(&f, vu, VU_GET_CONFIG, &c, 20, &r);
    ck_assert_uint_eq(r.hdr.size, 0);

    /* status */
    fe_u64(&f, vu, VU_SET_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_STATUS),
                      VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);

    /* REPLY_ACK on a request without a reply body */
    struct vu_state s = {.index = 0, .num = QSZ};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_VRING_NUM, &s, sizeof(s), NULL, 0), 0);
    ck_assert_uint_eq(fe_ack(&f, vu, VU_NET_SET_MTU, &(uint64_t){1500}, 8, NULL, 0), 0);
    ck_assert_int_eq(n_errors, 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ck_assert(!d.bound);
    ck_assert_int_eq(access(sock_path, F_OK), -1); /* socket file removed */
}
END_TEST

START_TEST(test_refused_features)
{
    struct fdev d;
    fdev_init(&d);
    d.refuse_features = 1;
    struct vio_vhost_user *vu = vu_server(&d, "rf");
    struct fe f;
    fe_init(&f, vu);
    fe_u64(&f, vu, VU_SET_PROTOCOL_FEATURES, 1ull << VU_PF_REPLY_ACK | 1ull << VU_PF_STATUS);
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_FEATURES, &(uint64_t){F_VERSION_1}, 8, NULL, 0), 1);
    fe_u64(&f, vu, VU_SET_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
    /* the driver re-reads FEATURES_OK and learns the device said no */
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_STATUS), VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
    ck_assert(vio_vhost_user_connected(vu));
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_data_path)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "dp");
    struct fe f;
    fe_init(&f, vu);
    fe_handshake(&f, vu, 1ull << VU_PF_REPLY_ACK, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_mem_table(&f, vu);
    ck_assert_uint_eq(vu_mapped_regions(vu), 1);

    /* the front-end writes into its memfd, the back-end's mapping sees it: checked
     * through a TX chain below */
    for (unsigned i = 0; i < 2; i++) {
        fe_ring_alloc(&f, i, F_VERSION_1 | F_EVENT_IDX);
        fe_ring_setup(&f, vu, i, 0, 0);
    }
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(qs.started);
    ck_assert(!qs.enabled); /* PROTOCOL_FEATURES: rings start disabled */
    ck_assert(!qs.running);
    ck_assert_int_eq(d.starts, 0);
    fe_tx(&f, 100, 0x5a, 1);
    ck_assert_int_eq(fe_kick(&f, vu, 1), 0); /* drained, not processed */
    ck_assert_uint_eq(d.txlen, 0);
    fe_enable(&f, vu, 1, 1);
    fe_enable(&f, vu, 0, 1);
    ck_assert_int_eq(d.starts, 2);
    /* enabling re-kicked the ring so the chain made available while disabled is seen */
    ck_assert_uint_eq(eventfd_take(f.kick[1]), 1);
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 1);
    ck_assert_uint_eq(d.txlen, 100);
    ck_assert_uint_eq(d.txbuf[0], 0x5a);
    ck_assert_uint_eq(eventfd_take(f.call[1]), 1);
    void *tok;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(f.dq[1], &tok, &len), 0);
    tx_roundtrip(&f, vu, &d, 0x33);

    /* RX: the device writes into a guest buffer */
    memcpy(d.rxdata, "hello, guest", 12);
    d.rxlen = 12;
    uint64_t g = fe_rx(&f, 7);
    ck_assert_int_eq(fe_kick(&f, vu, 0), 1);
    ck_assert_int_eq(vio_drvq_get_used(f.dq[0], &tok, &len), 0);
    ck_assert_uint_eq(len, 12);
    ck_assert_mem_eq(f.host + (g - f.gpa), "hello, guest", 12);
    ck_assert_uint_ge(eventfd_take(f.call[0]), 1);

    /* GET_VRING_BASE stops the ring and returns its index */
    int stops = d.stops;
    struct vu_state s = {.index = 1};
    struct vu_msg r;
    fe_rpc(&f, vu, VU_GET_VRING_BASE, &s, sizeof(s), &r);
    ck_assert_uint_eq(r.hdr.size, sizeof(struct vu_state));
    ck_assert_uint_eq(r.p.state.index, 1);
    ck_assert_uint_eq(r.p.state.num, 2);
    ck_assert_int_eq(d.stops, stops + 1);
    ck_assert_ptr_null(d.q[1]);
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(!qs.started);
    ck_assert_int_eq(qs.kick_fd, -1);
    /* a chain made available while stopped is not processed */
    fe_tx(&f, 10, 0x11, 3);
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 0);
    ck_assert_uint_eq(d.txlen, 200);

    /* SET_VRING_BASE restart continues where it stopped */
    fe_ring_setup(&f, vu, 1, 2, 0);
    fe_enable(&f, vu, 1, 1);
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 1);
    ck_assert_uint_eq(d.txlen, 210);
    ck_assert_int_eq(vio_drvq_get_used(f.dq[1], &tok, &len), 0);
    ck_assert_ptr_eq(tok, (void *)3);
    /* a call fd swapped at run time raises one (possibly spurious) notification */
    eventfd_take(f.call[1]);
    uint64_t v = 1;
    fe_do(&f, vu, VU_SET_VRING_CALL, &v, 8, &f.call[1], 1);
    ck_assert_uint_eq(eventfd_take(f.call[1]), 1);
    tx_roundtrip(&f, vu, &d, 0x44);
    /* disabling stops the device's processing, the ring stays started */
    fe_enable(&f, vu, 1, 0);
    ck_assert_ptr_null(d.q[1]);
    ck_assert_int_eq(pause_depth, 0);
    ck_assert_int_eq(max_depth, 1);
    ck_assert_int_eq(n_pause, n_resume);
    ck_assert_int_eq(n_errors, 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_no_protocol_features_polling)
{
    /* Without PROTOCOL_FEATURES rings are enabled when they start; a no-fd kick means
     * the application polls. */
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "poll");
    struct fe f;
    fe_init(&f, vu);
    fe_do(&f, vu, VU_SET_OWNER, NULL, 0, NULL, 0);
    fe_u64(&f, vu, VU_SET_FEATURES, F_VERSION_1);
    fe_mem_table(&f, vu);
    fe_ring_alloc(&f, 1, F_VERSION_1);
    struct vu_state s = {.index = 1, .num = QSZ};
    fe_do(&f, vu, VU_SET_VRING_NUM, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = 1, .desc = uva_of(&f, f.desc[1]), .used = uva_of(&f, f.used[1]),
                        .avail = uva_of(&f, f.avail[1])};
    fe_do(&f, vu, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t v = 1 | VU_VRING_NOFD;
    fe_do(&f, vu, VU_SET_VRING_CALL, &v, 8, NULL, 0);
    fe_do(&f, vu, VU_SET_VRING_KICK, &v, 8, NULL, 0);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(qs.started && qs.enabled && qs.running && qs.polling);
    fe_tx(&f, 64, 0x77, 9);
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 1);
    ck_assert_uint_eq(d.txlen, 64);
    /* watches: control socket only (no kick fds); dispatch routes by id */
    struct vio_device_watch w[8];
    ck_assert_int_eq(vio_vhost_user_watches(vu, w, 8), 1);
    ck_assert_uint_eq(w[0].id, VIO_VU_WATCH_CONTROL);
    ck_assert_int_eq(w[0].fd, vio_vhost_user_fd(vu));
    fe_tx(&f, 64, 0x78, 10);
    ck_assert_int_eq(vio_vhost_user_dispatch(vu, VIO_VU_WATCH_KICK(1), VIO_WATCH_IN), 1);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_dirty_log)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "log");
    struct fe f;
    fe_init(&f, vu);
    fe_bringup(&f, vu, 1ull << VU_PF_LOG_SHMFD | 1ull << VU_PF_REPLY_ACK);
    /* log covering guest-physical 0 .. GPA_BASE + MEM_SIZE, 1 bit per 4 KiB page */
    uint64_t log_size = (GPA_BASE + MEM_SIZE) / 4096 / 8;
    int lfd = memfd_create("log", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(lfd, (off_t)log_size), 0);
    uint8_t *log = mmap(NULL, log_size, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
    struct vu_log l = {.size = log_size, .offset = 0};
    ck_assert_int_eq(fe_send(&f, VU_SET_LOG_BASE, 0, &l, sizeof(l), &lfd, 1), 0);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
    struct vu_msg r;
    ck_assert_int_eq(fe_recv(&f, &r), 0); /* QEMU waits for this reply */
    ck_assert_uint_eq(r.hdr.request, VU_SET_LOG_BASE);
    int pauses = n_pause;
    /* QEMU turns logging on with SET_FEATURES | LOG_ALL and VHOST_VRING_F_LOG per ring */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_FEATURES,
                             &(uint64_t){F_VERSION_1 | F_EVENT_IDX | F_PF | F_LOG_ALL}, 8, NULL, 0),
                      0);
    ck_assert_int_eq(n_pause, pauses + 1);
    struct vu_addr a = {.index = 1, .flags = 1u << VU_VRING_F_LOG,
                        .desc = uva_of(&f, f.desc[1]), .used = uva_of(&f, f.used[1]),
                        .avail = uva_of(&f, f.avail[1]), .log = f.used[1]};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
    ck_assert_int_eq(d.set_features_calls, 1); /* LOG_ALL is not a device feature change */
    tx_roundtrip(&f, vu, &d, 0x21);
    uint64_t pg = f.used[1] / 4096;
    ck_assert_msg(log[pg / 8] & (1u << (pg % 8)), "used ring page not logged");
    /* logging off again */
    memset(log, 0, log_size);
    fe_u64(&f, vu, VU_SET_FEATURES, F_VERSION_1 | F_EVENT_IDX | F_PF);
    tx_roundtrip(&f, vu, &d, 0x22);
    ck_assert_uint_eq(log[pg / 8], 0);
    munmap(log, log_size);
    close(lfd);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_mem_slots)
{
    /* CONFIGURE_MEM_SLOTS: ADD_MEM_REG / REM_MEM_REG; removing the region under running
     * rings stops them (failed, NEEDS_RESET), never a crash. */
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "slots");
    struct fe f;
    fe_init(&f, vu);
    uint64_t pf = 1ull << VU_PF_CONFIGURE_MEM_SLOTS | 1ull << VU_PF_REPLY_ACK |
                  1ull << VU_PF_STATUS;
    fe_handshake(&f, vu, pf, F_VERSION_1 | F_EVENT_IDX | F_PF);
    /* two regions: the rings' (from fe) and a second memfd */
    struct vu_mem_single m1 = {.r = {.gpa = f.gpa, .size = f.size, .uva = uva_of(&f, f.gpa)}};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_ADD_MEM_REG, &m1, sizeof(m1), &f.memfd, 1), 0);
    int m2fd = memfd_create("m2", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(m2fd, 0x200000), 0);
    struct vu_mem_single m2 = {.r = {.gpa = 0x80000000ull, .size = 0x100000,
                                     .uva = 0x7000000000ull, .mmap_offset = 0x100000}};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_ADD_MEM_REG, &m2, sizeof(m2), &m2fd, 1), 0);
    ck_assert_uint_eq(vu_mapped_regions(vu), 2);
    /* QEMU multiqueue: every queue pair's vhost device adds the same RAM again */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_ADD_MEM_REG, &m1, sizeof(m1), &f.memfd, 1), 0);
    ck_assert_uint_eq(vu_mapped_regions(vu), 2);
    ck_assert(vio_vhost_user_connected(vu));
    for (unsigned i = 0; i < 2; i++) {
        fe_ring_alloc(&f, i, F_VERSION_1 | F_EVENT_IDX);
        fe_ring_setup(&f, vu, i, 0, 0);
        fe_enable(&f, vu, i, 1);
    }
    tx_roundtrip(&f, vu, &d, 0x61);
    /* removing an unrelated region keeps the rings running (REM may carry an fd) */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_REM_MEM_REG, &m2, sizeof(m2), &m2fd, 1), 0);
    ck_assert_uint_eq(vu_mapped_regions(vu), 1);
    tx_roundtrip(&f, vu, &d, 0x62);
    /* unknown region: refused, not fatal */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_REM_MEM_REG, &m2, sizeof(m2), NULL, 0), 1);
    /* the doubly added region: the first removal only uncounts it, rings keep running */
    ck_assert_uint_eq(fe_ack(&f, vu, VU_REM_MEM_REG, &m1, sizeof(m1), NULL, 0), 0);
    ck_assert_uint_eq(vu_mapped_regions(vu), 1);
    tx_roundtrip(&f, vu, &d, 0x63);
    int errs = n_errors;
    ck_assert_uint_eq(fe_ack(&f, vu, VU_REM_MEM_REG, &m1, sizeof(m1), NULL, 0), 0);
    ck_assert_int_gt(n_errors, errs); /* each ring reported */
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(qs.failed && !qs.started && !qs.running);
    ck_assert_ptr_null(d.q[1]);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_STATUS) & VIO_S_NEEDS_RESET, VIO_S_NEEDS_RESET);
    ck_assert_uint_ge(eventfd_take(f.err[1]), 1);
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 0);
    ck_assert(vio_vhost_user_connected(vu));
    close(m2fd);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_mem_table_swap)
{
    /* A new table under running rings: regions that stay keep their mapping, the rings
     * are re-pointed, data keeps flowing. */
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "swap");
    struct fe f;
    fe_init(&f, vu);
    fe_bringup(&f, vu, 1ull << VU_PF_REPLY_ACK);
    tx_roundtrip(&f, vu, &d, 0x01);
    int m2fd = memfd_create("m2", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(m2fd, 0x100000), 0);
    struct vu_mem m = {.nregions = 2};
    m.r[0] = (struct vu_region){.gpa = 0x1000000, .size = 0x100000, .uva = 0x6000000000ull};
    m.r[1] = (struct vu_region){.gpa = f.gpa, .size = f.size, .uva = uva_of(&f, f.gpa)};
    int fds[2] = {m2fd, f.memfd};
    int pauses = n_pause;
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_MEM_TABLE, &m, 8 + 2 * sizeof(struct vu_region), fds, 2),
                      0);
    ck_assert_int_eq(n_pause, pauses + 1);
    ck_assert_uint_eq(vu_mapped_regions(vu), 2);
    tx_roundtrip(&f, vu, &d, 0x02);
    /* a table that moves the rings' guest-physical addresses stops them */
    m.nregions = 1;
    m.r[0] = (struct vu_region){.gpa = f.gpa + 0x10000000, .size = f.size,
                                .uva = uva_of(&f, f.gpa)};
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_MEM_TABLE, &m, 8 + sizeof(struct vu_region), &f.memfd, 1),
                      0);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(qs.failed);
    close(m2fd);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_mem_table_fast)
{
    /* SET_MEM_TABLE never touches guest pages: an 8 GiB (sparse) guest maps as fast as a
     * small one. */
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "fast");
    struct fe f;
    fe_init(&f, vu);
    fe_handshake(&f, vu, 0, F_VERSION_1 | F_PF);
    int big = memfd_create("big", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(big, 8ll << 30), 0);
    double best = 1e9;
    for (int k = 0; k < 3; k++) {
        struct vu_mem m = {.nregions = 2};
        m.r[0] = (struct vu_region){.gpa = 0, .size = 4ull << 30, .uva = 0x100000000000ull};
        m.r[1] = (struct vu_region){.gpa = 4ull << 30, .size = 4ull << 30,
                                    .uva = 0x100100000000ull, .mmap_offset = 4ull << 30};
        int fds[2] = {big, big};
        ck_assert_int_eq(fe_send(&f, VU_SET_MEM_TABLE, 0, &m, 8 + 2 * sizeof(struct vu_region),
                                 fds, 2), 0);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms < best)
            best = ms;
        /* alternate so the mappings are not simply reused */
        m.r[0].mmap_offset = 4ull << 30;
        m.r[1].mmap_offset = 0;
        ck_assert_int_eq(fe_send(&f, VU_SET_MEM_TABLE, 0, &m, 8 + 2 * sizeof(struct vu_region),
                                 fds, 2), 0);
        ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
    }
    fprintf(stderr, "check_vhost_user: SET_MEM_TABLE of 8 GiB took %.3f ms (best of 3)\n", best);
    ck_assert_msg(best < 5.0, "SET_MEM_TABLE took %.3f ms", best);
    ck_assert_int_eq(n_errors, 0);
    close(big);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

START_TEST(test_inflight_crash)
{
    /* A back-end dies with chains popped but not completed; a new one resumes from the
     * inflight region and completes exactly those chains, once, before any new ones. */
    int fds_before = count_fds();
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "infl");
    struct fe f;
    fe_init(&f, vu);
    uint64_t pf = 1ull << VU_PF_INFLIGHT_SHMFD | 1ull << VU_PF_REPLY_ACK;
    fe_handshake(&f, vu, pf, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_mem_table(&f, vu);
    struct vu_inflight in = {.num_queues = 2, .queue_size = QSZ};
    struct vu_msg r;
    fe_rpc(&f, vu, VU_GET_INFLIGHT_FD, &in, sizeof(in), &r);
    ck_assert_uint_eq(r.hdr.size, sizeof(struct vu_inflight));
    ck_assert_uint_eq(r.nfds, 1);
    int ifd = r.fds[0];
    uint64_t isize = r.p.inflight.mmap_size;
    ck_assert_uint_ge(isize, 2 * vio_queue_inflight_size(QSZ));
    struct stat st;
    ck_assert_int_eq(fstat(ifd, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, isize);
    in.mmap_size = isize;
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
    for (unsigned i = 0; i < 2; i++) {
        fe_ring_alloc(&f, i, F_VERSION_1 | F_EVENT_IDX);
        fe_ring_setup(&f, vu, i, 0, 0);
        fe_enable(&f, vu, i, 1);
    }
    /* two chains complete, then three are popped and held */
    tx_roundtrip(&f, vu, &d, 0x10);
    tx_roundtrip(&f, vu, &d, 0x11);
    d.hold = true;
    for (unsigned k = 0; k < 3; k++)
        fe_tx(&f, 32, (uint8_t)(0x20 + k), 0x200 + k);
    ck_assert_int_eq(fe_kick(&f, vu, 1), 3);
    ck_assert_uint_eq(d.nheld, 3);
    uint16_t held[3] = {d.held[0], d.held[1], d.held[2]};
    /* crash: the back-end goes away without completing them */
    vio_vhost_user_free(vu);
    struct vu_msg eof;
    ck_assert_int_eq(fe_recv(&f, &eof), -ECONNRESET);
    close(f.sock);

    /* QEMU reconnects: GET_VRING_BASE failed, so it restores the base from the used
     * index (2) and hands back the inflight fd. Two more chains arrive meanwhile. */
    fe_tx(&f, 32, 0x30, 0x300);
    fe_tx(&f, 32, 0x31, 0x301);
    fdev_init(&d);
    vu = vu_server(&d, "infl");
    fe_connect(&f);
    ck_assert_int_eq(vio_vhost_user_handle(vu), 0);
    fe_handshake(&f, vu, pf, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_mem_table(&f, vu);
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
    for (unsigned i = 0; i < 2; i++) {
        struct vu_state s = {.index = i, .num = QSZ};
        fe_do(&f, vu, VU_SET_VRING_NUM, &s, sizeof(s), NULL, 0);
        s.num = i == 1 ? 2 : 0;
        fe_do(&f, vu, VU_SET_VRING_BASE, &s, sizeof(s), NULL, 0);
        struct vu_addr a = {.index = i, .desc = uva_of(&f, f.desc[i]),
                            .used = uva_of(&f, f.used[i]), .avail = uva_of(&f, f.avail[i])};
        fe_do(&f, vu, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
        uint64_t v = i;
        fe_do(&f, vu, VU_SET_VRING_CALL, &v, 8, &f.call[i], 1);
        fe_do(&f, vu, VU_SET_VRING_KICK, &v, 8, &f.kick[i], 1);
        fe_enable(&f, vu, i, 1);
    }
    d.hold = false;
    d.ndone = 0;
    ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 5);
    ck_assert_uint_eq(d.ndone, 5);
    /* the held chains first, in their original order, each once; then the new ones */
    for (unsigned k = 0; k < 3; k++)
        ck_assert_uint_eq(d.done[k], held[k]);
    void *tok;
    uint32_t len;
    uintptr_t seen[8];
    unsigned n = 0;
    while (vio_drvq_get_used(f.dq[1], &tok, &len) == 0)
        seen[n++] = (uintptr_t)tok;
    ck_assert_uint_eq(n, 5);
    const uintptr_t want[5] = {0x200, 0x201, 0x202, 0x300, 0x301};
    for (unsigned k = 0; k < 5; k++)
        ck_assert_uint_eq(seen[k], want[k]);
    tx_roundtrip(&f, vu, &d, 0x40);
    close(ifd);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

START_TEST(test_client_reconnect)
{
    struct fdev d;
    fdev_init(&d);
    make_path("cli");
    unlink(sock_path);
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = sock_path,
                                      .client = true, .reconnect_ms = 10, .dev = &d.dev,
                                      .log = test_log};
    struct vio_vhost_user *vu;
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), 0); /* nobody listens yet: not an error */
    ck_assert(!vio_vhost_user_connected(vu));
    ck_assert_int_eq(vio_vhost_user_fd(vu), -1);
    ck_assert_int_ge(vio_vhost_user_timeout_ms(vu), 0);
    ck_assert_int_eq(vio_vhost_user_handle(vu), -ENOTCONN);

    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(ls, 1), 0);
    for (int round = 0; round < 2; round++) {
        int got = 0;
        for (int k = 0; k < 200 && !got; k++) {
            int t = vio_vhost_user_timeout_ms(vu);
            ck_assert_int_ge(t, 0);
            ck_assert_int_le(t, 10);
            usleep((useconds_t)t * 1000);
            got = vio_vhost_user_tick(vu);
        }
        ck_assert_int_eq(got, 1);
        ck_assert(vio_vhost_user_connected(vu));
        ck_assert_int_eq(vio_vhost_user_timeout_ms(vu), -1);
        struct fe f;
        memset(&f, 0, sizeof(f));
        f.sock = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        ck_assert_int_ge(f.sock, 0);
        f.memfd = -1;
        ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_FEATURES), DEV_FEATURES | F_PF | F_LOG_ALL);
        close(f.sock); /* QEMU restarts */
        ck_assert_int_eq(vio_vhost_user_handle(vu), -ECONNRESET);
        ck_assert(!vio_vhost_user_connected(vu));
        ck_assert_int_ge(vio_vhost_user_timeout_ms(vu), 0);
    }
    close(ls);
    unlink(sock_path);
    vio_vhost_user_free(vu);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The request table                                                         */

/* Every protocol feature the transport offers comes from a table row (plus REPLY_ACK, the
 * dispatcher's), and the offer is exactly what it was when it was a hand-kept mask. */
START_TEST(test_table_offer)
{
    uint64_t from_rows = 1ull << VU_PF_REPLY_ACK;
    unsigned rows = 0;
    for (uint32_t r = 0; r < VU_REQUEST_MAX + 8; r++) {
        const struct vu_req_info *ri = vu_req_info(r);
        if (!ri)
            continue;
        rows++;
        ck_assert_msg(r < VU_REQUEST_MAX, "row for request %u", r);
        ck_assert_ptr_nonnull(ri->name);
        ck_assert_msg(ri->handle != NULL, "%s has no handler", ri->name);
        ck_assert_msg(!ri->gated || ri->pf >= 0, "%s gated by no feature", ri->name);
        ck_assert_msg(ri->fds != VU_FD_ONE || ri->fd_name, "%s: unnamed fd", ri->name);
        if (ri->pf >= 0)
            from_rows |= 1ull << ri->pf;
    }
    ck_assert_uint_eq(rows, 31);
    const uint64_t want = 1ull << VU_PF_MQ | 1ull << VU_PF_LOG_SHMFD | 1ull << VU_PF_RARP |
                          1ull << VU_PF_REPLY_ACK | 1ull << VU_PF_MTU |
                          1ull << VU_PF_BACKEND_REQ | 1ull << VU_PF_CONFIG |
                          1ull << VU_PF_INFLIGHT_SHMFD | 1ull << VU_PF_RESET_DEVICE |
                          1ull << VU_PF_CONFIGURE_MEM_SLOTS | 1ull << VU_PF_STATUS;
    ck_assert_uint_eq(from_rows, want);
    ck_assert_uint_eq(vu_protocol_features(), want);

    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "offer");
    struct fe f;
    fe_init(&f, vu);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_PROTOCOL_FEATURES), want);
    fe_fini(&f);
    vio_vhost_user_free(vu);

    /* withheld features are not offered, and their requests are refused */
    make_path("offer2");
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = sock_path,
                                      .dev = &d.dev, .log = test_log,
                                      .protocol_features_disable = 1ull << VU_PF_STATUS};
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), 0);
    fe_init(&f, vu);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_PROTOCOL_FEATURES), want & ~(1ull << VU_PF_STATUS));
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

/* Each gated request is refused until its protocol feature is negotiated; then the gate no
 * longer stops it. The list is written here independently of the table. */
static const struct {
    uint32_t req;
    unsigned pf;
} gated_reqs[] = {
    {VU_SEND_RARP, VU_PF_RARP},
    {VU_NET_SET_MTU, VU_PF_MTU},
    {VU_SET_BACKEND_REQ_FD, VU_PF_BACKEND_REQ},
    {VU_GET_CONFIG, VU_PF_CONFIG},
    {VU_SET_CONFIG, VU_PF_CONFIG},
    {VU_GET_INFLIGHT_FD, VU_PF_INFLIGHT_SHMFD},
    {VU_SET_INFLIGHT_FD, VU_PF_INFLIGHT_SHMFD},
    {VU_RESET_DEVICE, VU_PF_RESET_DEVICE},
    {VU_GET_MAX_MEM_SLOTS, VU_PF_CONFIGURE_MEM_SLOTS},
    {VU_ADD_MEM_REG, VU_PF_CONFIGURE_MEM_SLOTS},
    {VU_REM_MEM_REG, VU_PF_CONFIGURE_MEM_SLOTS},
    {VU_SET_STATUS, VU_PF_STATUS},
    {VU_GET_STATUS, VU_PF_STATUS},
};
#define N_GATED ((int)(sizeof(gated_reqs) / sizeof(gated_reqs[0])))

START_TEST(test_table_gate)
{
    struct vu_msg m;
    memset(&m, 0, sizeof(m));
    m.hdr.request = gated_reqs[_i].req;
    m.hdr.flags = VU_VERSION;
    struct vu_validate_ctx ctx = {.num_queues = NQ, .max_queue_size = QSZ,
                                  .protocol_features = ~(1ull << gated_reqs[_i].pf)};
    char why[192] = "";
    ck_assert_int_eq(vu_msg_validate(&m, &ctx, why, sizeof(why)), -EPROTO);
    char want[64];
    snprintf(want, sizeof(want), "protocol feature %u not negotiated", gated_reqs[_i].pf);
    ck_assert_msg(strstr(why, want), "%s", why);
    ctx.protocol_features = 1ull << gated_reqs[_i].pf;
    why[0] = 0;
    vu_msg_validate(&m, &ctx, why, sizeof(why)); /* may fail on its payload, not the gate */
    ck_assert_msg(!strstr(why, "not negotiated"), "%s", why);
}
END_TEST

/* The reply rule of SET_LOG_BASE: a status reply exactly when LOG_SHMFD is negotiated. */
START_TEST(test_table_reply_rule)
{
    for (int shm = 0; shm < 2; shm++) {
        struct fdev d;
        fdev_init(&d);
        struct vio_vhost_user *vu = vu_server(&d, "reply");
        struct fe f;
        fe_init(&f, vu);
        fe_bringup(&f, vu, shm ? 1ull << VU_PF_LOG_SHMFD : 0);
        int lfd = memfd_create("log", MFD_CLOEXEC);
        ck_assert_int_eq(ftruncate(lfd, 4096), 0);
        struct vu_log l = {.size = 4096};
        ck_assert_int_eq(fe_send(&f, VU_SET_LOG_BASE, 0, &l, sizeof(l), &lfd, 1), 0);
        ck_assert_int_eq(vio_vhost_user_handle(vu), 1);
        if (shm) {
            struct vu_msg r;
            ck_assert_int_eq(fe_recv(&f, &r), 0);
            ck_assert_uint_eq(r.hdr.request, VU_SET_LOG_BASE);
            ck_assert_uint_eq(r.hdr.size, 8);
            ck_assert_uint_eq(r.p.u64, 0);
        }
        ck_assert(fe_quiet(&f));
        close(lfd);
        fe_fini(&f);
        vio_vhost_user_free(vu);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Status and resets                                                         */

#define PF_ST (1ull << VU_PF_STATUS | 1ull << VU_PF_REPLY_ACK | 1ull << VU_PF_RESET_DEVICE)

static uint64_t fe_set_status(struct fe *f, struct vio_vhost_user *vu, uint8_t s)
{
    return fe_ack(f, vu, VU_SET_STATUS, &(uint64_t){s}, 8, NULL, 0);
}

/* QEMU's order: SET_FEATURES, FEATURES_OK alone, later ACKNOWLEDGE | DRIVER | DRIVER_OK; the
 * status rules that are not about order still hold; status 0 resets the device once. */
START_TEST(test_status_machine)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "st");
    struct fe f;
    fe_init(&f, vu);
    fe_bringup(&f, vu, PF_ST);
    tx_roundtrip(&f, vu, &d, 0x11);
    const uint8_t A = VIO_S_ACKNOWLEDGE, D = VIO_S_DRIVER, FO = VIO_S_FEATURES_OK,
                  DO = VIO_S_DRIVER_OK, NR = VIO_S_NEEDS_RESET;
    ck_assert_uint_eq(fe_set_status(&f, vu, FO), 0);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_STATUS), FO);
    ck_assert_uint_eq(fe_set_status(&f, vu, FO | A | D | DO), 0);
    ck_assert_uint_eq(vio_vhost_user_status(vu), FO | A | D | DO);
    /* QEMU repeats SET_FEATURES with the same virtio bits (dirty logging): fine; other bits
     * after FEATURES_OK: refused */
    uint64_t feat = F_VERSION_1 | F_EVENT_IDX | F_PF;
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_FEATURES, &feat, 8, NULL, 0), 0);
    feat = F_VERSION_1 | F_PF;
    ck_assert_uint_eq(fe_ack(&f, vu, VU_SET_FEATURES, &feat, 8, NULL, 0), 1);
    ck_assert_uint_eq(vio_vhost_user_features(vu), F_VERSION_1 | F_EVENT_IDX);
    /* clearing a bit without a reset, or setting the device's bit: refused, unchanged */
    ck_assert_uint_eq(fe_set_status(&f, vu, FO | A | D), 1);
    ck_assert_uint_eq(fe_set_status(&f, vu, FO | A | D | DO | NR), 1);
    ck_assert_uint_eq(vio_vhost_user_status(vu), FO | A | D | DO);
    ck_assert(vio_vhost_user_connected(vu));
    int resets = d.resets;
    /* status 0: the rings stop, the device is reset once, the features are forgotten */
    ck_assert_uint_eq(fe_set_status(&f, vu, 0), 0);
    ck_assert_int_eq(d.resets, resets + 1);
    ck_assert_ptr_null(d.q[1]);
    ck_assert_uint_eq(vio_vhost_user_status(vu), 0);
    ck_assert_uint_eq(vio_vhost_user_features(vu), 0);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(!qs.started && qs.size == QSZ); /* setup kept */
    /* QEMU sends status 0 before GET_VRING_BASE: the ring's index is still there */
    struct vu_state vs = {.index = 1};
    struct vu_msg r;
    fe_rpc(&f, vu, VU_GET_VRING_BASE, &vs, sizeof(vs), &r);
    ck_assert_uint_eq(r.p.state.num, 1); /* the one TX chain consumed above */
    ck_assert_uint_eq(fe_set_status(&f, vu, 0), 0); /* already reset: nothing more */
    ck_assert_int_eq(d.resets, resets + 1);
    /* FEATURES_OK without features the device took stays clear */
    ck_assert_uint_eq(fe_set_status(&f, vu, A | D | FO), 1);
    ck_assert_uint_eq(vio_vhost_user_status(vu), A | D);
    ck_assert_uint_eq(fe_set_status(&f, vu, 0), 0);
    ck_assert_int_eq(d.resets, resets + 2);
    /* and the session comes back */
    fe_u64(&f, vu, VU_SET_FEATURES, F_VERSION_1 | F_EVENT_IDX | F_PF);
    ck_assert_uint_eq(fe_set_status(&f, vu, FO), 0);
    fe_ring_alloc(&f, 1, F_VERSION_1 | F_EVENT_IDX);
    fe_ring_setup(&f, vu, 1, 0, 0);
    fe_enable(&f, vu, 1, 1);
    tx_roundtrip(&f, vu, &d, 0x12);
    ck_assert_int_eq(n_errors, 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

/* A ring that breaks sets NEEDS_RESET in the one status machine; the front-end may echo it. */
START_TEST(test_status_needs_reset)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "nr");
    struct fe f;
    fe_init(&f, vu);
    fe_handshake(&f, vu, PF_ST, F_VERSION_1 | F_EVENT_IDX | F_PF);
    ck_assert_uint_eq(fe_set_status(&f, vu, VIO_S_FEATURES_OK), 0);
    ck_assert(d.hooks.needs_reset);
    d.hooks.needs_reset(d.hooks.opaque); /* the device says a queue broke */
    uint8_t s = (uint8_t)fe_get_u64(&f, vu, VU_GET_STATUS);
    ck_assert_uint_eq(s, VIO_S_FEATURES_OK | VIO_S_NEEDS_RESET);
    ck_assert_uint_eq(fe_set_status(&f, vu, s | VIO_S_ACKNOWLEDGE), 0); /* read-modify-write */
    ck_assert_uint_eq(vio_vhost_user_status(vu),
                      VIO_S_FEATURES_OK | VIO_S_NEEDS_RESET | VIO_S_ACKNOWLEDGE);
    ck_assert_uint_eq(fe_set_status(&f, vu, 0), 0);
    ck_assert_uint_eq(vio_vhost_user_status(vu), 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

/* RESET_DEVICE forgets the rings and the status; RESET_OWNER only stops the rings. */
START_TEST(test_resets)
{
    struct fdev d;
    fdev_init(&d);
    struct vio_vhost_user *vu = vu_server(&d, "rst");
    struct fe f;
    fe_init(&f, vu);
    fe_bringup(&f, vu, PF_ST);
    ck_assert_uint_eq(fe_set_status(&f, vu, VIO_S_FEATURES_OK), 0);
    int resets = d.resets;
    struct vio_vhost_user_queue_state qs;

    fe_do(&f, vu, VU_RESET_OWNER, NULL, 0, NULL, 0);
    ck_assert_int_eq(d.resets, resets); /* not a device reset */
    ck_assert_ptr_null(d.q[1]);
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(!qs.started && qs.size == QSZ && qs.kick_fd == -1);
    ck_assert_uint_eq(vio_vhost_user_status(vu), VIO_S_FEATURES_OK);
    ck_assert_uint_eq(vio_vhost_user_features(vu), F_VERSION_1 | F_EVENT_IDX);

    ck_assert_uint_eq(fe_ack(&f, vu, VU_RESET_DEVICE, NULL, 0, NULL, 0), 0);
    ck_assert_int_eq(d.resets, resets + 1);
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
    ck_assert(!qs.started && qs.size == 0 && !qs.enabled);
    ck_assert_uint_eq(vio_vhost_user_status(vu), 0);
    ck_assert_uint_eq(vio_vhost_user_features(vu), 0);
    ck_assert_uint_eq(vio_vhost_user_protocol_features(vu), PF_ST); /* kept */
    ck_assert_uint_eq(vu_mapped_regions(vu), 1);                   /* kept */
    /* the session goes on from SET_FEATURES */
    fe_u64(&f, vu, VU_SET_FEATURES, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_ring_alloc(&f, 1, F_VERSION_1 | F_EVENT_IDX);
    fe_ring_setup(&f, vu, 1, 0, 0);
    fe_enable(&f, vu, 1, 1);
    tx_roundtrip(&f, vu, &d, 0x21);
    ck_assert_int_eq(n_errors, 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The socket path (server mode)                                             */

static int try_new(struct fdev *d, const char *path, uint32_t mode, struct vio_vhost_user **out)
{
    n_errors = 0;
    last_error[0] = 0;
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = path,
                                      .dev = &d->dev, .log = test_log, .socket_mode = mode};
    *out = NULL;
    return vio_vhost_user_new(&c, out);
}

static bool can_connect(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    bool ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(s);
    return ok;
}

/* Accept the connection a refused second server made to probe the path, and see it close. */
static void drain_probe(struct vio_vhost_user *vu)
{
    ck_assert_int_eq(vio_vhost_user_handle(vu), 0);
    ck_assert(vio_vhost_user_connected(vu));
    ck_assert_int_eq(vio_vhost_user_handle(vu), -ECONNRESET);
    ck_assert(!vio_vhost_user_connected(vu));
}

START_TEST(test_path_second_server)
{
    struct fdev d1, d2;
    fdev_init(&d1);
    fdev_init(&d2);
    struct vio_vhost_user *a = vu_server(&d1, "two"), *b;
    struct stat before, after;
    ck_assert_int_eq(lstat(sock_path, &before), 0);
    ck_assert_int_eq(try_new(&d2, sock_path, 0, &b), -EADDRINUSE);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(last_error, sock_path) && strstr(last_error, "live socket"), "%s",
                  last_error);
    ck_assert(!d2.bound);
    ck_assert_int_eq(lstat(sock_path, &after), 0);
    ck_assert_uint_eq(after.st_ino, before.st_ino); /* the first server's socket, untouched */
    /* the first server is still reachable and serves a session */
    drain_probe(a);
    struct fe f;
    fe_init(&f, a);
    fe_bringup(&f, a, 0);
    tx_roundtrip(&f, a, &d1, 0x31);
    fe_fini(&f);
    vio_vhost_user_free(a);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
}
END_TEST

START_TEST(test_path_stale_replaced)
{
    struct fdev d;
    fdev_init(&d);
    make_path("stale");
    unlink(sock_path);
    /* a socket file nobody listens on: a back-end that died without cleaning up */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
    struct stat old, now;
    ck_assert_int_eq(lstat(sock_path, &old), 0);
    ck_assert(!can_connect(sock_path));
    struct vio_vhost_user *vu;
    ck_assert_int_eq(try_new(&d, sock_path, 0, &vu), 0);
    ck_assert_int_eq(lstat(sock_path, &now), 0);
    ck_assert(S_ISSOCK(now.st_mode));
    ck_assert_uint_ne(now.st_ino, old.st_ino);
    struct fe f;
    fe_init(&f, vu);
    fe_bringup(&f, vu, 0);
    tx_roundtrip(&f, vu, &d, 0x32);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
}
END_TEST

START_TEST(test_path_not_a_socket)
{
    struct fdev d;
    fdev_init(&d);
    make_path("file");
    int fd = open(sock_path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "keep", 4), 4);
    close(fd);
    struct vio_vhost_user *vu;
    ck_assert_int_eq(try_new(&d, sock_path, 0, &vu), -EEXIST);
    ck_assert_msg(strstr(last_error, sock_path) &&
                      strstr(last_error, "exists and is not a socket"),
                  "%s", last_error);
    struct stat st;
    ck_assert_int_eq(lstat(sock_path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_size, 4);
    ck_assert(!d.bound);
    unlink(sock_path);
    /* a directory is not a socket either */
    ck_assert_int_eq(mkdir(sock_path, 0700), 0);
    ck_assert_int_eq(try_new(&d, sock_path, 0, &vu), -EEXIST);
    rmdir(sock_path);
}
END_TEST

/* The first object's free does not delete a socket that replaced its own. */
START_TEST(test_path_free_keeps_other)
{
    struct fdev d1, d2;
    fdev_init(&d1);
    fdev_init(&d2);
    struct vio_vhost_user *a = vu_server(&d1, "swap"), *b;
    ck_assert_int_eq(unlink(sock_path), 0); /* someone removed it ... */
    ck_assert_int_eq(try_new(&d2, sock_path, 0, &b), 0); /* ... and another back-end took it */
    struct stat st_b, st;
    ck_assert_int_eq(lstat(sock_path, &st_b), 0);
    vio_vhost_user_free(a);
    ck_assert_int_eq(lstat(sock_path, &st), 0);
    ck_assert_uint_eq(st.st_ino, st_b.st_ino);
    ck_assert(can_connect(sock_path));
    ck_assert_int_eq(vio_vhost_user_handle(b), 0); /* accept */
    ck_assert_int_eq(vio_vhost_user_handle(b), -ECONNRESET);
    vio_vhost_user_free(b);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
}
END_TEST

/* No private directory is left next to the socket. */
static int leftovers(const char *dir)
{
    DIR *dp = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (!strncmp(e->d_name, ".vio-vu-", 8))
            n++;
    if (dp)
        closedir(dp);
    return n;
}

START_TEST(test_socket_mode)
{
    struct fdev d;
    fdev_init(&d);
    char dir[] = "/tmp/vio-vu-mode-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chmod(dir, 0700), 0); /* searchable whatever the umask */
    char path[108];
    snprintf(path, sizeof(path), "%s/vu.sock", dir);
    /* as permissive as it gets, and as strict as the daemon's (which would leave a private
     * directory unsearchable if the transport relied on the umask) */
    static const mode_t umasks[] = {0, 0177};
    static const struct {
        uint32_t cfg, want;
    } modes[] = {{0, 0600}, {0660, 0660}, {0666, 0666}, {0700, 0700}};
    mode_t old = umask(0);
    for (unsigned i = 0; i < 2 * sizeof(modes) / sizeof(modes[0]); i++) {
        umask(umasks[i & 1]);
        struct vio_vhost_user *vu;
        ck_assert_int_eq(try_new(&d, path, modes[i / 2].cfg, &vu), 0);
        struct stat st;
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_msg((st.st_mode & 07777) == modes[i / 2].want, "mode 0%o, expected 0%o",
                      (unsigned)(st.st_mode & 07777), modes[i / 2].want);
        ck_assert_int_eq(leftovers(dir), 0);
        ck_assert(can_connect(path));
        ck_assert_int_eq(vio_vhost_user_handle(vu), 0);
        ck_assert_int_eq(vio_vhost_user_handle(vu), -ECONNRESET);
        vio_vhost_user_free(vu);
        ck_assert_int_eq(access(path, F_OK), -1);
    }
    umask(old);
    struct vio_vhost_user *vu;
    ck_assert_int_eq(try_new(&d, path, 01777, &vu), -EINVAL);
    ck_assert_int_eq(try_new(&d, path, 04600, &vu), -EINVAL);
    ck_assert(!d.bound);
    /* a caller built before socket_mode existed: the field is not read, 0600 applies */
    struct vio_vhost_user_config c = {.struct_size = offsetof(struct vio_vhost_user_config,
                                                              socket_mode),
                                      .socket_path = path, .dev = &d.dev, .log = test_log,
                                      .socket_mode = 0xffff};
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), 0);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    vio_vhost_user_free(vu);
    c.struct_size -= 8;
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), -EINVAL);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* The daemon's umask (0177) must not leave the private directory unsearchable for its owner.
 * Root ignores directory permissions, so the server runs as an unprivileged user here. */
START_TEST(test_socket_umask_unprivileged)
{
    if (getuid() != 0) {
        /* already unprivileged: the same check in this process */
        struct fdev d;
        fdev_init(&d);
        make_path("umask");
        mode_t old = umask(0177);
        struct vio_vhost_user *vu;
        ck_assert_int_eq(try_new(&d, sock_path, 0, &vu), 0);
        umask(old);
        vio_vhost_user_free(vu);
        return;
    }
    make_path("umask");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct fdev d;
        fdev_init(&d);
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(10);
        umask(0177);
        struct vio_vhost_user *vu;
        int rc = try_new(&d, sock_path, 0660, &vu);
        if (rc < 0)
            _exit(20 + (-rc & 63));
        struct stat st;
        int ok = lstat(sock_path, &st) == 0 && (st.st_mode & 0777) == 0660 && can_connect(sock_path);
        vio_vhost_user_free(vu);
        _exit(ok ? 0 : 11);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(access(sock_path, F_OK), -1);
}
END_TEST

/* A path that fits a sockaddr_un while the private directory beside it would not. */
START_TEST(test_socket_mode_long_path)
{
    struct fdev d;
    fdev_init(&d);
    char dir[108];
    /* 100 characters of directory, "/s1" for the socket: 103 fit, the temporary path does not */
    int n = snprintf(dir, sizeof(dir), "/tmp/vio-vu-%d-", (int)getpid());
    memset(dir + n, 'x', 100 - (size_t)n);
    dir[100] = 0;
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(chmod(dir, 0700), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/s1", dir);
    ck_assert_uint_lt(strlen(path), sizeof(((struct sockaddr_un *)0)->sun_path));
    mode_t old = umask(0);
    struct vio_vhost_user *vu;
    ck_assert_int_eq(try_new(&d, path, 0640, &vu), 0);
    umask(old);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0640);
    ck_assert_int_eq(leftovers(dir), 0);
    ck_assert(can_connect(path));
    vio_vhost_user_free(vu);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Defaults for the device: queue count in the front-end's unit, control queue at the front-end */

static unsigned fq_frontend_queue_num(void *o)
{
    (void)o;
    return 7;
}
/* A model that drops its control queue when the front-end keeps it (as virtio-net does). */
static unsigned fq_num_queues(void *o)
{
    return F(o)->hooks.flags & VIO_DEVICE_BIND_FRONTEND_CTRL ? 2 : NQ;
}

START_TEST(test_frontend_defaults)
{
    struct vio_device_ops ops = fdev_ops;
    ops.frontend_queue_num = fq_frontend_queue_num;
    ops.num_queues = fq_num_queues;
    struct fdev d;
    fdev_init(&d);
    d.dev.ops = &ops;
    struct vio_vhost_user *vu = vu_server(&d, "fq");
    ck_assert_uint_eq(d.hooks.flags, VIO_DEVICE_BIND_FRONTEND_CTRL); /* reached the bind op */
    struct fe f;
    fe_init(&f, vu);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_QUEUE_NUM), 7);
    /* the rings follow the queue count the model has once bound */
    struct vu_validate_ctx ctx;
    vu_validate_ctx(vu, &ctx);
    ck_assert_uint_eq(ctx.num_queues, 2);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(vu, 2, &qs), -ERANGE);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ck_assert(!d.bound);

    /* an explicit queue_num wins; a model without the op reports its queue count */
    make_path("fq2");
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = sock_path,
                                      .dev = &d.dev, .log = test_log, .queue_num = 5};
    ck_assert_int_eq(vio_vhost_user_new(&c, &vu), 0);
    fe_init(&f, vu);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_QUEUE_NUM), 5);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ops.frontend_queue_num = NULL;
    vu = vu_server(&d, "fq3");
    fe_init(&f, vu);
    ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_QUEUE_NUM), 2);
    fe_fini(&f);
    vio_vhost_user_free(vu);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Hostile front-ends                                                        */

enum hostile_expect { EXPECT_DROP, EXPECT_RING_FAILED };

struct hostile {
    const char *name;
    enum hostile_expect expect;
    const char *log_has; /* substring of the error logged */
    void (*send)(struct fe *f);
};

static void h_bad_size(struct fe *f)
{
    uint32_t v = 1;
    fe_send(f, VU_SET_FEATURES, 0, &v, 4, NULL, 0);
}
static void h_payload_too_big(struct fe *f)
{
    static uint8_t junk[1024];
    fe_send_raw(f->sock, VU_SET_FEATURES, VU_VERSION, sizeof(junk), junk, sizeof(junk), NULL, 0);
}
static void h_truncated(struct fe *f)
{
    uint64_t v = 1;
    fe_send_raw(f->sock, VU_SET_FEATURES, VU_VERSION, 8, &v, 4, NULL, 0);
    shutdown(f->sock, SHUT_WR);
}
static void h_fd_on_owner(struct fe *f)
{
    fe_send(f, VU_SET_OWNER, 0, NULL, 0, &f->kick[0], 1);
}
static void h_too_many_fds(struct fe *f)
{
    int fds[12];
    for (int i = 0; i < 12; i++)
        fds[i] = f->kick[0];
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = f->gpa, .size = f->size, .uva = uva_of(f, f->gpa)};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + sizeof(struct vu_region), fds, 12);
}
static void h_wrong_fd_count(struct fe *f)
{
    struct vu_mem m = {.nregions = 2};
    m.r[0] = (struct vu_region){.gpa = f->gpa, .size = 0x1000, .uva = uva_of(f, f->gpa)};
    m.r[1] = (struct vu_region){.gpa = f->gpa + 0x1000, .size = 0x1000,
                                .uva = uva_of(f, f->gpa) + 0x1000, .mmap_offset = 0x1000};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + 2 * sizeof(struct vu_region), &f->memfd, 1);
}
static void h_overlap(struct fe *f)
{
    struct vu_mem m = {.nregions = 2};
    m.r[0] = (struct vu_region){.gpa = f->gpa, .size = 0x2000, .uva = 0x10000000};
    m.r[1] = (struct vu_region){.gpa = f->gpa + 0x1000, .size = 0x2000, .uva = 0x20000000};
    int fds[2] = {f->memfd, f->memfd};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + 2 * sizeof(struct vu_region), fds, 2);
}
static void h_uva_overlap(struct fe *f)
{
    struct vu_mem m = {.nregions = 2};
    m.r[0] = (struct vu_region){.gpa = 0, .size = 0x2000, .uva = 0x10000000};
    m.r[1] = (struct vu_region){.gpa = 0x100000, .size = 0x2000, .uva = 0x10001000};
    int fds[2] = {f->memfd, f->memfd};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + 2 * sizeof(struct vu_region), fds, 2);
}
static void h_wrap(struct fe *f)
{
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = UINT64_MAX - 0xfff, .size = 0x2000, .uva = 0x10000000};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + sizeof(struct vu_region), &f->memfd, 1);
}
static void h_past_eof(struct fe *f)
{
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = 0, .size = 64ull << 20, .uva = 0x10000000};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + sizeof(struct vu_region), &f->memfd, 1);
}
static void h_misaligned_region(struct fe *f)
{
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = 0, .size = 0x10000, .uva = 0x10000000, .mmap_offset = 8};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + sizeof(struct vu_region), &f->memfd, 1);
}
static void h_misaligned_inflight(struct fe *f)
{
    struct vu_inflight in = {.mmap_size = 0x1000, .mmap_offset = 8, .num_queues = 1,
                             .queue_size = QSZ};
    fe_send(f, VU_SET_INFLIGHT_FD, 0, &in, sizeof(in), &f->memfd, 1);
}
static void h_not_a_file(struct fe *f)
{
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = 0, .size = 0x1000, .uva = 0x10000000};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8 + sizeof(struct vu_region), &f->kick[0], 1);
}
static void h_zero_regions(struct fe *f)
{
    struct vu_mem m = {.nregions = 0};
    fe_send(f, VU_SET_MEM_TABLE, 0, &m, 8, NULL, 0);
}
static void h_index_range(struct fe *f)
{
    struct vu_state s = {.index = NQ, .num = QSZ};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
}
static void h_kick_index_range(struct fe *f)
{
    uint64_t v = 200;
    fe_send(f, VU_SET_VRING_KICK, 0, &v, 8, &f->kick[0], 1);
}
static void h_num_not_pow2(struct fe *f)
{
    struct vu_state s = {.index = 0, .num = 100};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
}
static void h_num_too_big(struct fe *f)
{
    struct vu_state s = {.index = 0, .num = 65536};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
}
static void h_base_range(struct fe *f)
{
    struct vu_state s = {.index = 0, .num = 0x10000};
    fe_send(f, VU_SET_VRING_BASE, 0, &s, sizeof(s), NULL, 0);
}
static void h_unknown(struct fe *f)
{
    fe_send(f, 99, 0, NULL, 0, NULL, 0);
}
static void h_bad_version(struct fe *f)
{
    fe_send_raw(f->sock, VU_GET_FEATURES, 2, 0, NULL, 0, NULL, 0);
}
static void h_reply_flag(struct fe *f)
{
    fe_send_raw(f->sock, VU_GET_FEATURES, VU_VERSION | VU_FLAG_REPLY, 0, NULL, 0, NULL, 0);
}
static void h_gated(struct fe *f)
{
    uint64_t v = 0x0000123456789abcull;
    fe_send(f, VU_SEND_RARP, 0, &v, 8, NULL, 0); /* RARP not negotiated */
}
static void h_unoffered_feature(struct fe *f)
{
    uint64_t v = F_VERSION_1 | (1ull << 40);
    fe_send(f, VU_SET_FEATURES, 0, &v, 8, NULL, 0);
}
static void h_unoffered_pf(struct fe *f)
{
    uint64_t v = 1ull << 14; /* INBAND_NOTIFICATIONS: not offered */
    fe_send(f, VU_SET_PROTOCOL_FEATURES, 0, &v, 8, NULL, 0);
}
static void h_nofd_with_fd(struct fe *f)
{
    uint64_t v = 0 | VU_VRING_NOFD;
    fe_send(f, VU_SET_VRING_CALL, 0, &v, 8, &f->call[0], 1);
}
static void h_kick_without_fd(struct fe *f)
{
    uint64_t v = 0;
    fe_send(f, VU_SET_VRING_KICK, 0, &v, 8, NULL, 0);
}
static void h_addr_flags(struct fe *f)
{
    struct vu_addr a = {.index = 0, .flags = 0x80};
    fe_send(f, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
}
static void h_config_size(struct fe *f)
{
    struct vu_config c = {.offset = 0, .size = 300};
    fe_send(f, VU_GET_CONFIG, 0, &c, 12 + 8, NULL, 0);
}
static void h_log_base_no_fd(struct fe *f)
{
    struct vu_log l = {.size = 4096};
    fe_send(f, VU_SET_LOG_BASE, 0, &l, sizeof(l), NULL, 0);
}
static void h_status_range(struct fe *f)
{
    uint64_t v = 0x1ff;
    fe_send(f, VU_SET_STATUS, 0, &v, 8, NULL, 0);
}
/* Rings outside guest memory: the ring fails, the connection stays. */
static void h_ring_outside(struct fe *f)
{
    struct vu_state s = {.index = 1, .num = QSZ};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = 1, .desc = 0xdead0000, .used = 0xdead8000, .avail = 0xdeadc000};
    fe_send(f, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
    uint64_t v = 1;
    fe_send(f, VU_SET_VRING_ERR, 0, &v, 8, &f->err[1], 1);
    fe_send(f, VU_SET_VRING_KICK, 0, &v, 8, &f->kick[1], 1);
}
static void h_ring_straddles(struct fe *f)
{
    /* the used ring runs past the end of the region */
    struct vu_state s = {.index = 1, .num = QSZ};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = 1, .desc = uva_of(f, f->gpa), .avail = uva_of(f, f->gpa + 0x1000),
                        .used = uva_of(f, f->gpa + f->size - 16)};
    fe_send(f, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
    uint64_t v = 1;
    fe_send(f, VU_SET_VRING_ERR, 0, &v, 8, &f->err[1], 1);
    fe_send(f, VU_SET_VRING_KICK, 0, &v, 8, &f->kick[1], 1);
}
static void h_ring_misaligned(struct fe *f)
{
    struct vu_state s = {.index = 1, .num = QSZ};
    fe_send(f, VU_SET_VRING_NUM, 0, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = 1, .desc = uva_of(f, f->gpa + 0x2001),
                        .avail = uva_of(f, f->gpa + 0x4000), .used = uva_of(f, f->gpa + 0x5000)};
    fe_send(f, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
    uint64_t v = 1;
    fe_send(f, VU_SET_VRING_ERR, 0, &v, 8, &f->err[1], 1);
    fe_send(f, VU_SET_VRING_KICK, 0, &v, 8, &f->kick[1], 1);
}

static const struct hostile hostile[] = {
    {"bad size", EXPECT_DROP, "SET_FEATURES: payload size 4", h_bad_size},
    {"payload too big", EXPECT_DROP, "receive failed", h_payload_too_big},
    {"truncated", EXPECT_DROP, "receive failed", h_truncated},
    {"fd on SET_OWNER", EXPECT_DROP, "SET_OWNER: 1 fds, at most 0", h_fd_on_owner},
    {"too many fds", EXPECT_DROP, "receive failed", h_too_many_fds},
    {"wrong fd count", EXPECT_DROP, "SET_MEM_TABLE: 1 fds for 2 regions", h_wrong_fd_count},
    {"overlapping regions", EXPECT_DROP, "overlap", h_overlap},
    {"overlapping user ranges", EXPECT_DROP, "overlaps another region", h_uva_overlap},
    {"wrapping region", EXPECT_DROP, "wraps", h_wrap},
    {"region past end of file", EXPECT_DROP, "runs past the end", h_past_eof},
    {"region fd not a file", EXPECT_DROP, "not a regular file", h_not_a_file},
    {"region misaligned in its file", EXPECT_DROP, "not aligned alike", h_misaligned_region},
    {"inflight misaligned in its file", EXPECT_DROP, "mmap_offset 0x8 not a multiple",
     h_misaligned_inflight},
    {"zero regions", EXPECT_DROP, "0 regions", h_zero_regions},
    {"queue index", EXPECT_DROP, "SET_VRING_NUM: queue 3 out of range", h_index_range},
    {"kick index", EXPECT_DROP, "SET_VRING_KICK: queue 200 out of range", h_kick_index_range},
    {"size not power of 2", EXPECT_DROP, "SET_VRING_NUM: size 100", h_num_not_pow2},
    {"size too big", EXPECT_DROP, "SET_VRING_NUM: size 65536", h_num_too_big},
    {"base beyond 16 bits", EXPECT_DROP, "SET_VRING_BASE: base 65536", h_base_range},
    {"unknown request", EXPECT_DROP, "unknown or unsupported request 99", h_unknown},
    {"bad version", EXPECT_DROP, "version 2", h_bad_version},
    {"reply flag", EXPECT_DROP, "GET_FEATURES: flags 0x5", h_reply_flag},
    {"gated request", EXPECT_DROP, "SEND_RARP: protocol feature 2 not negotiated", h_gated},
    {"unoffered feature", EXPECT_DROP, "not offered", h_unoffered_feature},
    {"unoffered protocol feature", EXPECT_DROP, "not offered", h_unoffered_pf},
    {"no-fd flag with an fd", EXPECT_DROP, "SET_VRING_CALL: 1 fds with no-fd flag 1", h_nofd_with_fd},
    {"kick without fd", EXPECT_DROP, "SET_VRING_KICK: 0 fds with no-fd flag 0", h_kick_without_fd},
    {"address flags", EXPECT_DROP, "SET_VRING_ADDR: unknown flags", h_addr_flags},
    {"config size", EXPECT_DROP, "GET_CONFIG: config size 300", h_config_size},
    {"log base without fd", EXPECT_DROP, "SET_LOG_BASE: needs the log fd", h_log_base_no_fd},
    {"status beyond 8 bits", EXPECT_DROP, "SET_STATUS", h_status_range},
    {"ring outside memory", EXPECT_RING_FAILED, "not inside guest memory", h_ring_outside},
    {"ring straddles region end", EXPECT_RING_FAILED, "not inside guest memory", h_ring_straddles},
    {"ring misaligned", EXPECT_RING_FAILED, "ring setup refused", h_ring_misaligned},
};
#define N_HOSTILE ((int)(sizeof(hostile) / sizeof(hostile[0])))

START_TEST(test_hostile)
{
    const struct hostile *h = &hostile[_i];
    struct fdev d;
    fdev_init(&d);
    int fds_before = count_fds();
    struct vio_vhost_user *vu = vu_server(&d, "hostile");
    int fds_idle = count_fds();
    struct fe f;
    fe_init(&f, vu);
    fe_handshake(&f, vu, 1ull << VU_PF_REPLY_ACK | 1ull << VU_PF_STATUS | 1ull << VU_PF_CONFIG |
                 1ull << VU_PF_INFLIGHT_SHMFD, F_VERSION_1 | F_EVENT_IDX | F_PF);
    fe_mem_table(&f, vu);
    n_errors = 0;
    last_error[0] = 0;
    h->send(&f);
    int rc = 0, k;
    for (k = 0; k < 8 && vio_vhost_user_connected(vu); k++) {
        rc = vio_vhost_user_handle(vu);
        if (rc <= 0)
            break;
    }
    ck_assert_int_ge(n_errors, 1);
    ck_assert_msg(strstr(last_error, h->log_has), "%s: logged \"%s\", expected \"%s\"", h->name,
                  last_error, h->log_has);
    if (h->expect == EXPECT_DROP) {
        ck_assert_msg(rc < 0, "%s: handle returned %d", h->name, rc);
        ck_assert(!vio_vhost_user_connected(vu));
        struct vu_msg eof;
        ck_assert_int_eq(fe_recv(&f, &eof), -ECONNRESET);
        ck_assert_int_eq(d.resets, 1); /* the device went back to power-on state */
        ck_assert_ptr_null(d.q[0]);
        ck_assert_ptr_null(d.q[1]);
    } else {
        ck_assert(vio_vhost_user_connected(vu));
        struct vio_vhost_user_queue_state qs;
        ck_assert_int_eq(vio_vhost_user_queue_state(vu, 1, &qs), 0);
        ck_assert(qs.failed && !qs.started && !qs.running);
        ck_assert_uint_ge(eventfd_take(f.err[1]), 1);
        ck_assert_uint_eq(fe_get_u64(&f, vu, VU_GET_STATUS) & VIO_S_NEEDS_RESET,
                          VIO_S_NEEDS_RESET);
        ck_assert_int_eq(vio_vhost_user_kick(vu, 1), 0);
        /* the ring can be set up properly again on the same connection */
        fe_ring_alloc(&f, 1, F_VERSION_1 | F_EVENT_IDX);
        fe_ring_setup(&f, vu, 1, 0, 0);
        fe_enable(&f, vu, 1, 1);
        tx_roundtrip(&f, vu, &d, 0x99);
    }
    ck_assert_int_eq(n_pause, n_resume);
    fe_fini(&f);
    if (vio_vhost_user_connected(vu))
        ck_assert_int_eq(vio_vhost_user_handle(vu), -ECONNRESET);
    /* nothing the hostile session sent is still open */
    ck_assert_int_eq(count_fds(), fds_idle);

    /* the next, honest front-end gets a working session on the same object */
    n_errors = 0;
    fe_init(&f, vu);
    fe_bringup(&f, vu, 1ull << VU_PF_REPLY_ACK);
    tx_roundtrip(&f, vu, &d, 0x42);
    ck_assert_int_eq(n_errors, 0);
    fe_fini(&f);
    vio_vhost_user_free(vu);
    ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

static Suite *vhost_user_suite(void)
{
    Suite *s = suite_create("vhost_user");
    TCase *tc = tcase_create("session");
    tcase_add_test(tc, test_handshake);
    tcase_add_test(tc, test_refused_features);
    tcase_add_test(tc, test_data_path);
    tcase_add_test(tc, test_no_protocol_features_polling);
    tcase_add_test(tc, test_dirty_log);
    suite_add_tcase(s, tc);
    tc = tcase_create("memory");
    tcase_add_test(tc, test_mem_slots);
    tcase_add_test(tc, test_mem_table_swap);
    tcase_add_test(tc, test_mem_table_fast);
    suite_add_tcase(s, tc);
    tc = tcase_create("recovery");
    tcase_add_test(tc, test_inflight_crash);
    tcase_add_test(tc, test_client_reconnect);
    suite_add_tcase(s, tc);
    tc = tcase_create("table");
    tcase_add_test(tc, test_table_offer);
    tcase_add_loop_test(tc, test_table_gate, 0, N_GATED);
    tcase_add_test(tc, test_table_reply_rule);
    suite_add_tcase(s, tc);
    tc = tcase_create("status");
    tcase_add_test(tc, test_status_machine);
    tcase_add_test(tc, test_status_needs_reset);
    tcase_add_test(tc, test_resets);
    suite_add_tcase(s, tc);
    tc = tcase_create("path");
    tcase_add_test(tc, test_path_second_server);
    tcase_add_test(tc, test_path_stale_replaced);
    tcase_add_test(tc, test_path_not_a_socket);
    tcase_add_test(tc, test_path_free_keeps_other);
    tcase_add_test(tc, test_socket_mode);
    tcase_add_test(tc, test_socket_mode_long_path);
    tcase_add_test(tc, test_socket_umask_unprivileged);
    tcase_add_test(tc, test_frontend_defaults);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_loop_test(tc, test_hostile, 0, N_HOSTILE);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(vhost_user_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
