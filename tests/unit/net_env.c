/* SPDX-License-Identifier: MIT */
/* Test environment for the virtio-net suites (see net_env.h). */
#include "net_env.h"

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const uint8_t ENV_MAC[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
bool env_view_all;
static const uint8_t PEER_MAC[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

#define GBASE 0x100000ull
#define GSIZE (64ull << 20)

/* ------------------------------------------------------------------------ */
/* Fake backend */

static size_t iov_total(const struct iovec *iov, unsigned n)
{
    size_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

static uint64_t fb_features(void *o)
{
    return ((struct fake_be *)o)->features;
}

static int fb_configure(void *o, uint64_t neg)
{
    struct fake_be *fb = o;
    fb->configured = neg;
    fb->configure_calls++;
    return 0;
}

/* The frames rx_view lent on @p qp (all with ENV_MAXQP) are no longer the device's: poison
 * them, so that a copy made after this point shows, and free them (ASan sees a late read). */
static void fb_unlend(struct fake_be *fb, unsigned qp)
{
    unsigned k = 0;
    for (unsigned i = 0; i < fb->nlent; i++) {
        struct fb_lent *l = &fb->lent[i];
        if (qp != ENV_MAXQP && l->qp != qp) {
            fb->lent[k++] = *l;
            continue;
        }
        memset(l->data, 0xdd, l->len ? l->len : 1);
        free(l->data);
    }
    fb->nlent = k;
}

static int fb_tx(void *o, unsigned qp, const struct vio_net_hdr *hdr, const struct iovec *iov,
                 unsigned iovcnt)
{
    struct fake_be *fb = o;
    fb->tx_calls++;
    fb_unlend(fb, qp);
    if (fb->tx_fail && fb->tx_fail_count) {
        if (fb->tx_fail_count > 0)
            fb->tx_fail_count--;
        return fb->tx_fail;
    }
    ck_assert_uint_lt(fb->ntx, FB_TXCAP);
    struct fb_frame *f = &fb->tx[fb->ntx++];
    f->qp = qp;
    f->hdr = *hdr;
    f->len = iov_total(iov, iovcnt);
    f->data = malloc(f->len ? f->len : 1);
    ck_assert_ptr_nonnull(f->data);
    size_t off = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        ck_assert_uint_gt(iov[i].iov_len, 0); /* the device never passes empty iovecs */
        memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return 0;
}

static ssize_t fb_rx_peek(void *o, unsigned qp)
{
    struct fake_be *fb = o;
    if (fb->rx_fail)
        return fb->rx_fail;
    if (fb->rx_head[qp] == fb->rx_tail[qp])
        return -EAGAIN;
    return (ssize_t)fb->rx[qp][fb->rx_head[qp] % FB_RXCAP].len;
}

static ssize_t fb_rx(void *o, unsigned qp, struct vio_net_hdr *hdr, const struct iovec *iov,
                     unsigned iovcnt)
{
    struct fake_be *fb = o;
    fb->rx_calls++;
    if (fb->rx_fail)
        return fb->rx_fail;
    if (fb->rx_head[qp] == fb->rx_tail[qp])
        return -EAGAIN;
    struct fb_frame *f = &fb->rx[qp][fb->rx_head[qp]++ % FB_RXCAP];
    size_t cap = iov_total(iov, iovcnt);
    ssize_t ret;
    if (f->len > cap) {
        ret = -EMSGSIZE; /* like a truncated read: the frame is gone */
    } else {
        size_t off = 0;
        for (unsigned i = 0; i < iovcnt && off < f->len; i++) {
            size_t m = f->len - off < iov[i].iov_len ? f->len - off : iov[i].iov_len;
            memcpy(iov[i].iov_base, f->data + off, m);
            off += m;
        }
        *hdr = f->hdr;
        ret = (ssize_t)f->len;
    }
    free(f->data);
    f->data = NULL;
    return ret;
}

static ssize_t fb_rx_view(void *o, unsigned qp, struct vio_net_hdr *hdr, const void **data,
                          size_t cap)
{
    struct fake_be *fb = o;
    fb->rx_calls++;
    if (fb->rx_fail)
        return fb->rx_fail;
    if (fb->rx_head[qp] == fb->rx_tail[qp])
        return -EAGAIN;
    struct fb_frame *f = &fb->rx[qp][fb->rx_head[qp]++ % FB_RXCAP];
    if (f->len > cap) {
        free(f->data);
        f->data = NULL;
        return -EMSGSIZE;
    }
    ck_assert_uint_lt(fb->nlent, ENV_MAXQP * FB_RXCAP);
    fb->lent[fb->nlent++] = (struct fb_lent){qp, f->data, f->len};
    fb->views++;
    *data = f->data;
    f->data = NULL;
    if (hdr)
        *hdr = f->hdr;
    return (ssize_t)f->len;
}

static int fb_rx_fd(void *o, unsigned qp)
{
    return ((struct fake_be *)o)->no_fds ? -1 : 100 + (int)qp;
}

static int fb_tx_fd(void *o, unsigned qp)
{
    return ((struct fake_be *)o)->no_fds ? -1 : 200 + (int)qp;
}

static int fb_set_rx_mode(void *o, unsigned flags)
{
    struct fake_be *fb = o;
    fb->rx_mode = flags;
    fb->rx_mode_calls++;
    return 0;
}

static const struct vio_net_backend_ops fb_ops_peek = {
    .name = "fake",
    .features = fb_features,
    .configure = fb_configure,
    .tx = fb_tx,
    .rx_peek = fb_rx_peek,
    .rx = fb_rx,
    .rx_fd = fb_rx_fd,
    .tx_fd = fb_tx_fd,
    .set_rx_mode = fb_set_rx_mode,
};

static const struct vio_net_backend_ops fb_ops_nopeek = {
    .name = "fake",
    .features = fb_features,
    .configure = fb_configure,
    .tx = fb_tx,
    .rx = fb_rx,
    .rx_fd = fb_rx_fd,
    .tx_fd = fb_tx_fd,
    .set_rx_mode = fb_set_rx_mode,
};

static const struct vio_net_backend_ops fb_ops_peek_view = {
    .name = "fake-view",
    .features = fb_features,
    .configure = fb_configure,
    .tx = fb_tx,
    .rx_peek = fb_rx_peek,
    .rx = fb_rx,
    .rx_view = fb_rx_view,
    .rx_fd = fb_rx_fd,
    .tx_fd = fb_tx_fd,
    .set_rx_mode = fb_set_rx_mode,
};

static const struct vio_net_backend_ops fb_ops_nopeek_view = {
    .name = "fake-view",
    .features = fb_features,
    .configure = fb_configure,
    .tx = fb_tx,
    .rx = fb_rx,
    .rx_view = fb_rx_view,
    .rx_fd = fb_rx_fd,
    .tx_fd = fb_tx_fd,
    .set_rx_mode = fb_set_rx_mode,
};

void fb_push_rx(struct env *e, unsigned qp, const struct vio_net_hdr *h, const void *data,
                size_t len)
{
    struct fake_be *fb = &e->fb;
    ck_assert_uint_lt(fb->rx_tail[qp] - fb->rx_head[qp], FB_RXCAP);
    struct fb_frame *f = &fb->rx[qp][fb->rx_tail[qp]++ % FB_RXCAP];
    memset(f, 0, sizeof(*f));
    f->qp = qp;
    if (h)
        f->hdr = *h;
    f->len = len;
    f->data = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(f->data);
    memcpy(f->data, data, len);
}

unsigned fb_rx_pending(const struct env *e, unsigned qp)
{
    return e->fb.rx_tail[qp] - e->fb.rx_head[qp];
}

/* ------------------------------------------------------------------------ */
/* Hooks */

static void hk_notify(void *o, unsigned qidx)
{
    struct hookrec *h = o;
    ck_assert_uint_lt(qidx, ENV_MAXQ);
    h->notify[qidx]++;
}

static void hk_cfg(void *o)
{
    ((struct hookrec *)o)->cfg_changed++;
}

static void hk_reset(void *o)
{
    ((struct hookrec *)o)->needs_reset++;
}

static void hk_watch(void *o, int fd, unsigned events, uint32_t id)
{
    struct hookrec *h = o;
    ck_assert_uint_lt(id, 2 * ENV_MAXQP);
    h->set_watch_calls++;
    h->watch[id] = events;
    h->watch_fd[id] = fd;
}

static void env_log(void *o, int level, const char *object, const char *msg)
{
    struct hookrec *h = o;
    (void)object;
    (void)msg;
    if (level == VIO_LOG_ERROR)
        h->log_err++;
    else if (level == VIO_LOG_WARN)
        h->log_warn++;
}

/* ------------------------------------------------------------------------ */
/* Environment */

void env_open(struct env *e, const struct env_opts *o)
{
    static const struct env_opts def = {0};
    if (!o)
        o = &def;
    memset(e, 0, sizeof(*e));
    ck_assert_int_eq(arena_init_simple(&e->a, GBASE, GSIZE), 0);
    unsigned pairs = o->pairs ? o->pairs : 1;
    ck_assert_uint_le(pairs, ENV_MAXQP);
    e->pairs = pairs;
    e->fb.features = o->be_features;
    e->fb.no_fds = o->no_fds;
    bool view = o->view || env_view_all;
    e->be.ops = o->ops    ? o->ops
                : o->peek ? (view ? &fb_ops_peek_view : &fb_ops_peek)
                          : (view ? &fb_ops_nopeek_view : &fb_ops_nopeek);
    e->be.opaque = o->ops ? o->ops_opaque : &e->fb;
    e->be.queue_pairs = pairs;

    struct vio_net_dev_config cfg = {
        .struct_size = sizeof(cfg),
        .backend = &e->be,
        .mac_valid = !o->no_mac,
        .mtu = o->mtu,
        .queue_size = o->qsize,
        .link_down = o->link_down,
        .iov_max = o->iov_max,
        .log = env_log,
        .log_opaque = &e->hk,
    };
    memcpy(cfg.mac, ENV_MAC, 6);
    ck_assert_int_eq(vio_net_dev_new(&cfg, &e->nd), 0);
    e->dev = vio_net_dev_device(e->nd);
    ck_assert_ptr_nonnull(e->dev);
    for (unsigned i = 0; i < 2 * ENV_MAXQP; i++)
        e->hk.watch_fd[i] = -1;
    struct vio_device_hooks hooks = {
        .struct_size = sizeof(hooks),
        .opaque = &e->hk,
        .notify_queue = hk_notify,
        .config_changed = hk_cfg,
        .needs_reset = hk_reset,
        .set_watch = hk_watch,
    };
    ck_assert_int_eq(vio_device_bind(e->dev, &hooks), 0);

    e->feats = vio_device_features(e->dev) & ~o->refuse;
    ck_assert_int_eq(vio_device_set_features(e->dev, e->feats), 0);
    ck_assert_uint_eq(vio_net_dev_features(e->nd), e->feats);

    bool mq = vio_has_feature(e->feats, VIO_NET_F_MQ);
    unsigned used_pairs = mq ? pairs : 1;
    e->nq = 2 * used_pairs + (vio_has_feature(e->feats, VIO_NET_F_CTRL_VQ) ? 1 : 0);
    e->ctrl = 2 * used_pairs;
    for (unsigned i = 0; i < e->nq; i++) {
        struct vio_device_queue_info qi;
        ck_assert_int_eq(vio_device_queue_info(e->dev, i, &qi), 0);
        uint16_t size = qi.max_size;
        ck_assert_int_eq(arena_drvq_config(&e->a, &e->dc[i], size, e->feats, 0), 0);
        e->dc[i].index = (uint16_t)i;
        ck_assert_int_eq(vio_drvq_new(&e->dc[i], &e->drv[i]), 0);
        struct vio_queue_config qc = {
            .struct_size = sizeof(qc),
            .max_size = qi.max_size,
            .index = (uint16_t)i,
            .name = qi.name,
            .dir = qi.dir,
        };
        ck_assert_int_eq(vio_queue_new(&qc, &e->q[i]), 0);
        ck_assert_int_eq(vio_queue_setup(e->q[i], e->a.mem, size, e->feats, e->dc[i].desc,
                                         e->dc[i].driver, e->dc[i].device),
                         0);
        ck_assert_int_eq(vio_device_queue_start(e->dev, i, e->q[i]), 0);
    }
}

void env_close(struct env *e)
{
    if (e->dev)
        vio_device_reset(e->dev);
    for (unsigned i = 0; i < ENV_MAXQ; i++) {
        vio_queue_free(e->q[i]);
        vio_drvq_free(e->drv[i]);
    }
    vio_net_dev_free(e->nd);
    for (unsigned i = 0; i < e->fb.ntx; i++)
        free(e->fb.tx[i].data);
    fb_unlend(&e->fb, ENV_MAXQP);
    for (unsigned qp = 0; qp < ENV_MAXQP; qp++)
        for (unsigned k = e->fb.rx_head[qp]; k != e->fb.rx_tail[qp]; k++)
            free(e->fb.rx[qp][k % FB_RXCAP].data);
    arena_fini(&e->a);
    memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------------ */
/* Guest side */

static void *add_buf(struct env *e, unsigned qidx, uint64_t gpa, uint32_t len, unsigned nseg,
                     const uint32_t *cuts, unsigned ncuts, bool writable)
{
    struct vio_sg sg[64];
    unsigned n = 0;
    uint32_t off = 0;
    if (cuts) {
        for (unsigned k = 0; k < ncuts && off < len; k++) {
            uint32_t l = cuts[k] < len - off ? cuts[k] : len - off;
            sg[n++] = (struct vio_sg){gpa + off, l};
            off += l;
        }
    } else if (nseg > 1) {
        uint32_t step = len / nseg;
        for (unsigned k = 0; k + 1 < nseg; k++) {
            sg[n++] = (struct vio_sg){gpa + off, step};
            off += step;
        }
    }
    if (off < len)
        sg[n++] = (struct vio_sg){gpa + off, len - off};
    ck_assert_uint_lt(e->nbufs[qidx], ENV_MAXBUF);
    unsigned idx = e->nbufs[qidx]++;
    e->bufs[qidx][idx] = (struct gbuf){gpa, len};
    void *token = (void *)(uintptr_t)(idx + 1);
    ck_assert_int_eq(vio_drvq_add(e->drv[qidx], sg, writable ? 0 : n, writable ? n : 0, token), 0);
    return token;
}

void *guest_tx(struct env *e, unsigned qp, const struct vio_net_hdr *h, const void *frame,
               size_t len, const uint32_t *cuts, unsigned ncuts)
{
    unsigned qidx = 2 * qp + 1;
    uint32_t total = (uint32_t)(VIO_NET_HDR_SIZE + len);
    uint64_t gpa = arena_alloc(&e->a, total, 16);
    ck_assert_uint_ne(gpa, 0);
    struct vio_net_hdr zero = {0};
    ck_assert_int_eq(arena_write(&e->a, gpa, h ? h : &zero, VIO_NET_HDR_SIZE), 0);
    if (len)
        ck_assert_int_eq(arena_write(&e->a, gpa + VIO_NET_HDR_SIZE, frame, len), 0);
    void *t = add_buf(e, qidx, gpa, total, 1, cuts, ncuts, false);
    e->tx_kick_wanted = vio_drvq_kick_prepare(e->drv[qidx]);
    return t;
}

int guest_kick(struct env *e, unsigned qidx)
{
    vio_drvq_kick_prepare(e->drv[qidx]);
    return vio_device_queue_notify(e->dev, qidx);
}

unsigned guest_reap(struct env *e, unsigned qidx, uint32_t *lens, unsigned cap)
{
    unsigned n = 0;
    void *tok;
    uint32_t len;
    while (vio_drvq_get_used(e->drv[qidx], &tok, &len) == 0) {
        unsigned idx = (unsigned)(uintptr_t)tok - 1;
        ck_assert_uint_lt(idx, e->nbufs[qidx]);
        ck_assert_uint_le(len, e->bufs[qidx][idx].len);
        if (lens && n < cap)
            lens[n] = len;
        n++;
    }
    ck_assert(!vio_drvq_is_broken(e->drv[qidx]));
    return n;
}

void guest_post_rx(struct env *e, unsigned qp, unsigned n, uint32_t len, unsigned nseg)
{
    unsigned qidx = 2 * qp;
    for (unsigned k = 0; k < n; k++) {
        uint64_t gpa = arena_alloc(&e->a, len, 16);
        ck_assert_uint_ne(gpa, 0);
        arena_fill(&e->a, gpa, 0x5a, len);
        add_buf(e, qidx, gpa, len, nseg, NULL, 0, true);
    }
    vio_drvq_kick_prepare(e->drv[qidx]);
}

unsigned guest_rx_frame(struct env *e, unsigned qp, struct vio_net_hdr *h, uint8_t *out,
                        size_t cap, size_t *len)
{
    unsigned qidx = 2 * qp;
    void *tok;
    uint32_t ulen;
    if (vio_drvq_get_used(e->drv[qidx], &tok, &ulen) != 0)
        return 0;
    struct gbuf *b = &e->bufs[qidx][(uintptr_t)tok - 1];
    ck_assert_uint_ge(ulen, VIO_NET_HDR_SIZE);
    ck_assert_int_eq(arena_read(&e->a, b->gpa, h, VIO_NET_HDR_SIZE), 0);
    unsigned nb = le16toh(h->num_buffers);
    ck_assert_uint_ge(nb, 1);
    size_t off = ulen - VIO_NET_HDR_SIZE;
    ck_assert_uint_le(off, cap);
    ck_assert_int_eq(arena_read(&e->a, b->gpa + VIO_NET_HDR_SIZE, out, off), 0);
    for (unsigned k = 1; k < nb; k++) {
        /* every buffer but the last is used completely (spec) */
        ck_assert_uint_eq(ulen, b->len);
        ck_assert_int_eq(vio_drvq_get_used(e->drv[qidx], &tok, &ulen), 0);
        b = &e->bufs[qidx][(uintptr_t)tok - 1];
        ck_assert_uint_le(off + ulen, cap);
        ck_assert_int_eq(arena_read(&e->a, b->gpa, out + off, ulen), 0);
        off += ulen;
    }
    *len = off;
    return nb;
}

uint8_t guest_ctrl(struct env *e, uint8_t cls, uint8_t cmd, const void *data, size_t dlen)
{
    unsigned qidx = e->ctrl;
    uint64_t gpa = arena_alloc(&e->a, 2 + dlen + 1, 16);
    ck_assert_uint_ne(gpa, 0);
    uint8_t ch[2] = {cls, cmd};
    arena_write(&e->a, gpa, ch, 2);
    if (dlen)
        arena_write(&e->a, gpa + 2, data, dlen);
    uint8_t ack = 0xEE;
    arena_write(&e->a, gpa + 2 + dlen, &ack, 1);
    struct vio_sg sg[3];
    unsigned n = 0;
    sg[n++] = (struct vio_sg){gpa, 2};
    if (dlen)
        sg[n++] = (struct vio_sg){gpa + 2, (uint32_t)dlen};
    sg[n++] = (struct vio_sg){gpa + 2 + dlen, 1};
    ck_assert_uint_lt(e->nbufs[qidx], ENV_MAXBUF);
    unsigned idx = e->nbufs[qidx]++;
    e->bufs[qidx][idx] = (struct gbuf){gpa + 2 + dlen, 1};
    ck_assert_int_eq(vio_drvq_add(e->drv[qidx], sg, n - 1, 1, (void *)(uintptr_t)(idx + 1)), 0);
    ck_assert_int_ge(guest_kick(e, qidx), 1);
    void *tok;
    uint32_t len;
    if (vio_drvq_get_used(e->drv[qidx], &tok, &len) != 0)
        return 0xEE;
    ck_assert_uint_eq(len, 1);
    arena_read(&e->a, gpa + 2 + dlen, &ack, 1);
    return ack;
}

size_t make_frame(uint8_t *buf, size_t len, const uint8_t *dst, uint16_t ethertype, uint16_t vid,
                  unsigned seed)
{
    ck_assert_uint_ge(len, ethertype == 0x8100 ? 18 : 14);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, PEER_MAC, 6);
    size_t off = 12;
    if (ethertype == 0x8100) {
        buf[12] = 0x81;
        buf[13] = 0x00;
        buf[14] = (uint8_t)(vid >> 8);
        buf[15] = (uint8_t)vid;
        off = 16;
        ethertype = 0x0800;
    }
    buf[off] = (uint8_t)(ethertype >> 8);
    buf[off + 1] = (uint8_t)ethertype;
    for (size_t i = off + 2; i < len; i++)
        buf[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
    return len;
}

struct vio_net_queue_stats env_stats(struct env *e, unsigned qidx)
{
    struct vio_net_queue_stats s;
    ck_assert_int_eq(vio_net_dev_get_stats(e->nd, qidx, &s), 0);
    return s;
}
