/* SPDX-License-Identifier: MIT */
/*
 * Driver-side virtio-net helper: the guest's half of a virtio-net device on top of
 * the core's driver-side queues.
 *
 * Layout of the caller's area, per queue pair, each piece 4 KiB aligned:
 *   rx ring | tx ring | tx indirect pool (optional) | rx buffers | tx buffers
 * Buffers are at a fixed stride so a buffer's guest address and host pointer follow
 * from its slot number; the slot number (plus one, never NULL) is the receive token.
 *
 * The device is untrusted. The core checks the used ring (ids in flight, lengths no
 * larger than what was posted); this file checks what it alone understands: the
 * receive header (a first buffer shorter than the header, num_buffers 0 or larger
 * than what is posted) and never reads past what the device reported as written.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"

#define ND_PAGE 4096u
#define ND_BUF_ALIGN 64u
/* Largest frame the spec lets a device deliver: Ethernet + IPv6 header + 64 KiB payload
 * (the device model's VIO_NET_MAX_FRAME_LEN; repeated so this file needs only the core). */
#define ND_MAX_FRAME 65589u
/* Largest buffer accepted: strides (rounded up) stay far from 32-bit overflow. */
#define ND_BUF_MAX (1u << 30)
/* Ethernet header plus one VLAN tag. */
#define ND_L2_OVERHEAD 18u
/* virtio-net GUEST_USO4 / GUEST_USO6 bit numbers (virtio 1.3); not in net_defs.h yet. */
#define ND_F_GUEST_USO4 54u
#define ND_F_GUEST_USO6 55u

struct nd_rxq {
    struct vio_drvq *q;
    struct vio_net_driver_queue_addr addr;
    uint64_t buf_gpa;   /* slot i at buf_gpa + i * stride */
    uint8_t *buf_host;
    uint16_t nbufs;
    uint16_t *free;     /* slots not with the device */
    uint16_t nfree;
    uint16_t *pslot;    /* used buffers of the frame being collected: slots, lengths */
    uint32_t *plen;
    uint16_t npend;
    uint16_t need;      /* num_buffers of that frame (0: no frame started) */
    void **ftok;        /* used buffers taken from the ring in a burst, not yet looked at: */
    uint32_t *flen;     /* tokens and lengths from fhead on, fcnt of them */
    uint16_t fhead, fcnt;
    uint16_t *held;     /* slots lent to the caller by recv_burst() */
    uint16_t nheld;
    struct vio_sg *sgv; /* scratch for posting buffers in a burst */
    void **tokv;
    uint8_t *reasm;     /* reassembly area of recv_burst() (mergeable buffers only) */
    vio_ctr frames, bytes, buffers, merged, oversize, bad_hdr, kicks;
};

struct nd_txq {
    struct vio_drvq *q;
    struct vio_net_driver_queue_addr addr;
    uint64_t buf_gpa;
    uint8_t *buf_host;
    uint16_t nbufs;
    uint16_t *free;
    uint16_t nfree;
    uint8_t *tags;      /* copy-buffer tokens are &tags[slot]: told apart from caller tokens */
    void **stash;       /* sg tokens collected but not yet handed to the caller: a ring of
                           queue-size entries (no more can be in flight) */
    uint16_t stash_mask, stash_head, stash_n;
    uint32_t inflight;    /* buffers of both kinds with the device */
    uint32_t sg_inflight; /* vio_net_driver_send_sg() buffers with the device */
    vio_ctr frames, bytes, completed, full, kicks;
};

struct vio_net_driver {
    unsigned npairs;
    uint16_t qsize;
    size_t hdr_size;
    bool mrg;
    uint32_t rx_buf_size, rx_stride;
    uint32_t tx_buf_size, tx_stride;
    void (*notify)(void *opaque, unsigned qidx);
    void *notify_opaque;
    struct vio_driver drv; /* attached transport (drv.ops NULL: none) */
    vio_log_fn log;
    void *log_opaque;
    struct nd_rxq *rx;
    struct nd_txq *tx;
};

/* Sizes that follow from a config, shared by vio_net_driver_area_size() and _new(). */
struct nd_plan {
    unsigned npairs;
    uint16_t qsize, rx_bufs, tx_bufs, ind_max;
    size_t hdr_size;
    bool mrg, indirect;
    uint32_t rx_buf_size, rx_stride, tx_buf_size, tx_stride;
    uint64_t ring_bytes, ind_bytes, per_pair, total;
    size_t avail_off, used_off;
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static int plan(const struct vio_net_driver_config *cfg, struct nd_plan *p)
{
    if (!cfg || cfg->struct_size < sizeof(*cfg))
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    uint64_t f = cfg->features;
    if (vio_has_feature(f, VIO_F_RING_PACKED))
        return -ENOTSUP;
    p->npairs = cfg->queue_pairs ? cfg->queue_pairs : 1u;
    p->qsize = cfg->queue_size ? cfg->queue_size : 256u;
    if (!vio_is_pow2(p->qsize) || p->qsize > VIO_QUEUE_MAX_SIZE || p->npairs > 0x8000u)
        return -EINVAL;
    p->rx_bufs = cfg->rx_bufs ? cfg->rx_bufs : p->qsize;
    p->tx_bufs = cfg->tx_bufs ? cfg->tx_bufs : p->qsize;
    if (p->rx_bufs > p->qsize || p->tx_bufs > p->qsize)
        return -EINVAL;
    p->mrg = vio_has_feature(f, VIO_NET_F_MRG_RXBUF);
    /* virtio 1.x always carries num_buffers; a legacy device only with MRG_RXBUF. */
    p->hdr_size = (p->mrg || vio_has_feature(f, VIO_F_VERSION_1)) ? 12u : 10u;
    uint32_t mtu = cfg->mtu ? cfg->mtu : 1500u;

    bool guest_gso = vio_has_feature(f, VIO_NET_F_GUEST_TSO4) ||
                     vio_has_feature(f, VIO_NET_F_GUEST_TSO6) ||
                     vio_has_feature(f, VIO_NET_F_GUEST_UFO) ||
                     vio_has_feature(f, ND_F_GUEST_USO4) || vio_has_feature(f, ND_F_GUEST_USO6);
    if (cfg->rx_buf_size)
        p->rx_buf_size = cfg->rx_buf_size;
    else if (p->mrg)
        p->rx_buf_size = VIO_NET_DRIVER_MRG_RX_DEFAULT;
    else if (guest_gso)
        /* spec 5.1.6.3.1: at least 65562 bytes; a header plus the largest frame is a
         * little more and never too small. */
        p->rx_buf_size = (uint32_t)(p->hdr_size + ND_MAX_FRAME);
    else {
        uint32_t want = (uint32_t)p->hdr_size + ND_L2_OVERHEAD + mtu;
        p->rx_buf_size = want > VIO_NET_DRIVER_SMALL_RX_MIN ? want : VIO_NET_DRIVER_SMALL_RX_MIN;
    }
    if (p->rx_buf_size < p->hdr_size || p->rx_buf_size > ND_BUF_MAX)
        return -EINVAL;

    bool host_gso = vio_has_feature(f, VIO_NET_F_HOST_TSO4) ||
                    vio_has_feature(f, VIO_NET_F_HOST_TSO6) ||
                    vio_has_feature(f, VIO_NET_F_HOST_UFO) || vio_has_feature(f, VIO_NET_F_HOST_USO);
    if (cfg->tx_buf_size)
        p->tx_buf_size = cfg->tx_buf_size;
    else
        p->tx_buf_size = (uint32_t)p->hdr_size + (host_gso ? ND_MAX_FRAME : ND_L2_OVERHEAD + mtu);
    if (p->tx_buf_size <= p->hdr_size || p->tx_buf_size > ND_BUF_MAX)
        return -EINVAL;
    /* Page-sized (or larger) buffers stay page aligned, smaller ones cache-line aligned. */
    p->rx_stride = (uint32_t)round_up(p->rx_buf_size, p->rx_buf_size >= ND_PAGE ? ND_PAGE : ND_BUF_ALIGN);
    p->tx_stride = (uint32_t)round_up(p->tx_buf_size, p->tx_buf_size >= ND_PAGE ? ND_PAGE : ND_BUF_ALIGN);

    p->indirect = vio_has_feature(f, VIO_F_INDIRECT_DESC) && cfg->indirect_max > 0;
    p->ind_max = p->indirect ? cfg->indirect_max : 0;
    /* The used ring on its own cache line, as Linux lays out virtio 1 rings; for a legacy
     * device (no VERSION_1) on the next page, the legacy layout that the PCI legacy interface
     * fixes (and legacy MMIO accepts with QueueAlign 4096). */
    unsigned used_align = vio_has_feature(f, VIO_F_VERSION_1) ? 64u : ND_PAGE;
    p->ring_bytes = round_up(vio_split_ring_layout(p->qsize, used_align, &p->avail_off,
                                                   &p->used_off),
                             ND_PAGE);
    p->ind_bytes = p->indirect ? round_up(16ull * p->qsize * p->ind_max, ND_PAGE) : 0;
    p->per_pair = 2 * p->ring_bytes + p->ind_bytes +
                  round_up((uint64_t)p->rx_bufs * p->rx_stride, ND_PAGE) +
                  round_up((uint64_t)p->tx_bufs * p->tx_stride, ND_PAGE);
    p->total = p->per_pair * p->npairs;
    return 0;
}

uint64_t vio_net_driver_area_size(const struct vio_net_driver_config *cfg)
{
    struct nd_plan p;
    return plan(cfg, &p) == 0 ? p.total : 0;
}

void vio_net_driver_free(struct vio_net_driver *d)
{
    if (!d)
        return;
    for (unsigned i = 0; d->rx && i < d->npairs; i++) {
        vio_drvq_free(d->rx[i].q);
        free(d->rx[i].free);
        free(d->rx[i].pslot);
        free(d->rx[i].plen);
        free(d->rx[i].ftok);
        free(d->rx[i].flen);
        free(d->rx[i].held);
        free(d->rx[i].sgv);
        free(d->rx[i].tokv);
        free(d->rx[i].reasm);
    }
    for (unsigned i = 0; d->tx && i < d->npairs; i++) {
        vio_drvq_free(d->tx[i].q);
        free(d->tx[i].free);
        free(d->tx[i].tags);
        free(d->tx[i].stash);
    }
    free(d->rx);
    free(d->tx);
    free(d);
}

static int make_queue(const struct vio_net_driver_config *cfg, const struct nd_plan *p,
                      uint64_t ring, uint64_t ind_pool, unsigned qidx, struct vio_drvq **q,
                      struct vio_net_driver_queue_addr *addr)
{
    char name[24];
    snprintf(name, sizeof(name), "%s%u", (qidx & 1) ? "drv-tx" : "drv-rx", qidx / 2);
    addr->size = p->qsize;
    addr->desc = ring;
    addr->driver = ring + p->avail_off;
    addr->device = ring + p->used_off;
    struct vio_drvq_config dc = {
        .struct_size = sizeof(dc),
        .size = p->qsize,
        .index = (uint16_t)qidx,
        .name = name,
        .features = cfg->features,
        .mem = cfg->mem,
        .desc = addr->desc,
        .driver = addr->driver,
        .device = addr->device,
        .indirect_pool = ind_pool,
        .indirect_max = ind_pool ? p->ind_max : 0,
        .log = cfg->log,
        .log_opaque = cfg->log_opaque,
    };
    return vio_drvq_new(&dc, q);
}

int vio_net_driver_new(const struct vio_net_driver_config *cfg, struct vio_net_driver **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct nd_plan p;
    int r = plan(cfg, &p);
    if (r < 0)
        return r;
    if (!cfg->mem || (cfg->area & 15) || cfg->area_size < p.total)
        return -EINVAL;
    /* The whole area in one writable region: every buffer then has one host pointer. */
    uint8_t *host = vio_mem_ptr(cfg->mem, cfg->area, p.total, VIO_MEM_WRITE);
    if (!host)
        return -EFAULT;

    struct vio_net_driver *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->npairs = p.npairs;
    d->qsize = p.qsize;
    d->hdr_size = p.hdr_size;
    d->mrg = p.mrg;
    d->rx_buf_size = p.rx_buf_size;
    d->rx_stride = p.rx_stride;
    d->tx_buf_size = p.tx_buf_size;
    d->tx_stride = p.tx_stride;
    d->notify = cfg->notify;
    d->notify_opaque = cfg->notify_opaque;
    d->log = cfg->log;
    d->log_opaque = cfg->log_opaque;
    d->rx = calloc(p.npairs, sizeof(*d->rx));
    d->tx = calloc(p.npairs, sizeof(*d->tx));
    if (!d->rx || !d->tx) {
        r = -ENOMEM;
        goto fail;
    }

    /* The area may hold stale data from an earlier user: ring memory is zeroed by
     * vio_drvq_new(); buffers need not be. */
    for (unsigned i = 0; i < p.npairs; i++) {
        uint64_t base = cfg->area + (uint64_t)i * p.per_pair;
        uint64_t rx_ring = base, tx_ring = base + p.ring_bytes;
        uint64_t ind = p.indirect ? tx_ring + p.ring_bytes : 0;
        uint64_t rx_bufs = tx_ring + p.ring_bytes + p.ind_bytes;
        uint64_t tx_bufs = rx_bufs + round_up((uint64_t)p.rx_bufs * p.rx_stride, ND_PAGE);
        struct nd_rxq *rq = &d->rx[i];
        struct nd_txq *tq = &d->tx[i];
        r = make_queue(cfg, &p, rx_ring, 0, VIO_NET_DRIVER_RXQ(i), &rq->q, &rq->addr);
        if (r == 0)
            r = make_queue(cfg, &p, tx_ring, ind, VIO_NET_DRIVER_TXQ(i), &tq->q, &tq->addr);
        if (r < 0)
            goto fail;
        rq->buf_gpa = rx_bufs;
        rq->buf_host = host + (rx_bufs - cfg->area);
        rq->nbufs = p.rx_bufs;
        rq->free = calloc(p.rx_bufs, sizeof(*rq->free));
        rq->pslot = calloc(p.rx_bufs, sizeof(*rq->pslot));
        rq->plen = calloc(p.rx_bufs, sizeof(*rq->plen));
        rq->ftok = calloc(p.rx_bufs, sizeof(*rq->ftok));
        rq->flen = calloc(p.rx_bufs, sizeof(*rq->flen));
        rq->held = calloc(p.rx_bufs, sizeof(*rq->held));
        rq->sgv = calloc(p.rx_bufs, sizeof(*rq->sgv));
        rq->tokv = calloc(p.rx_bufs, sizeof(*rq->tokv));
        if (p.mrg)
            rq->reasm = malloc(ND_MAX_FRAME);
        tq->buf_gpa = tx_bufs;
        tq->buf_host = host + (tx_bufs - cfg->area);
        tq->nbufs = p.tx_bufs;
        tq->free = calloc(p.tx_bufs, sizeof(*tq->free));
        tq->tags = calloc(p.tx_bufs, 1);
        tq->stash = calloc(p.qsize, sizeof(*tq->stash));
        tq->stash_mask = (uint16_t)(p.qsize - 1);
        if (!rq->free || !rq->pslot || !rq->plen || !rq->ftok || !rq->flen || !rq->held ||
            !rq->sgv || !rq->tokv || (p.mrg && !rq->reasm) || !tq->free || !tq->tags || !tq->stash) {
            r = -ENOMEM;
            goto fail;
        }
        /* Free lists hand out low slots first (a stack popped from the top). */
        for (uint16_t k = 0; k < p.rx_bufs; k++)
            rq->free[k] = (uint16_t)(p.rx_bufs - 1 - k);
        rq->nfree = p.rx_bufs;
        for (uint16_t k = 0; k < p.tx_bufs; k++)
            tq->free[k] = (uint16_t)(p.tx_bufs - 1 - k);
        tq->nfree = p.tx_bufs;
    }
    vio_logf(d->log, d->log_opaque, VIO_LOG_INFO, "net-driver",
             "%u queue pair(s) of %u, rx buffers %u x %u bytes%s, tx buffers %u x %u bytes",
             d->npairs, d->qsize, p.rx_bufs, p.rx_buf_size, p.mrg ? " (mergeable)" : "",
             p.tx_bufs, p.tx_buf_size);
    *out = d;
    return 0;
fail:
    vio_net_driver_free(d);
    return r;
}

unsigned vio_net_driver_num_queues(const struct vio_net_driver *d)
{
    return d ? 2u * d->npairs : 0;
}

size_t vio_net_driver_hdr_size(const struct vio_net_driver *d)
{
    return d ? d->hdr_size : 0;
}

uint32_t vio_net_driver_rx_buf_size(const struct vio_net_driver *d)
{
    return d ? d->rx_buf_size : 0;
}

uint32_t vio_net_driver_tx_buf_size(const struct vio_net_driver *d)
{
    return d ? d->tx_buf_size : 0;
}

int vio_net_driver_queue_addr(const struct vio_net_driver *d, unsigned qidx,
                              struct vio_net_driver_queue_addr *out)
{
    if (!d || !out)
        return -EINVAL;
    if (qidx >= 2u * d->npairs)
        return -ERANGE;
    *out = (qidx & 1) ? d->tx[qidx / 2].addr : d->rx[qidx / 2].addr;
    return 0;
}

static struct vio_drvq *qof(const struct vio_net_driver *d, unsigned qidx)
{
    if (!d || qidx >= 2u * d->npairs)
        return NULL;
    return (qidx & 1) ? d->tx[qidx / 2].q : d->rx[qidx / 2].q;
}

struct vio_drvq *vio_net_driver_queue(struct vio_net_driver *d, unsigned qidx)
{
    return qof(d, qidx);
}

/* ------------------------------------------------------------------------ */
/* Transmit                                                                  */

/* Used entries taken from the core per call of vio_drvq_get_used_burst(). */
#define ND_COLLECT_BURST 64u

/* Collect every completion there is, a burst at a time; sg tokens go to the stash. Returns
 * how many were collected, or the core's error. */
static int tx_collect(struct nd_txq *t)
{
    void *toks[ND_COLLECT_BURST];
    int got = 0;
    for (;;) {
        int r = vio_drvq_get_used_burst(t->q, toks, NULL, ND_COLLECT_BURST);
        if (r <= 0)
            return r < 0 ? r : got;
        got += r;
        unsigned n = (unsigned)r;
        t->inflight -= n;
        vio_ctr_add(&t->completed, n);
        /* locals: the stores to fr[] are not assumed to alias them */
        uint16_t *fr = t->free;
        uint16_t nfree = t->nfree;
        const uintptr_t lo = (uintptr_t)t->tags, nb = t->nbufs;
        for (unsigned k = 0; k < n; k++) {
            void *tok = toks[k];
            /* copy-buffer tokens are &tags[slot]; anything else is a send_sg() token */
            uintptr_t off = (uintptr_t)tok - lo;
            if (__builtin_expect(off < nb, 1)) {
                fr[nfree++] = (uint16_t)off;
            } else {
                /* send_sg() keeps sg_inflight + stash_n <= queue size: no overflow. */
                t->sg_inflight--;
                t->stash[(uint16_t)(t->stash_head + t->stash_n) & t->stash_mask] = tok;
                t->stash_n++;
            }
        }
        t->nfree = nfree;
        if (n < ND_COLLECT_BURST)
            return got;
    }
}

static int tx_queue(struct vio_net_driver *d, unsigned qp, struct nd_txq **out)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    *out = &d->tx[qp];
    if (vio_drvq_is_broken((*out)->q))
        return -EIO;
    return 0;
}

int vio_net_driver_sendv(struct vio_net_driver *d, unsigned qp, const struct vio_net_hdr *hdr,
                         const struct iovec *iov, unsigned iovcnt)
{
    struct nd_txq *t;
    int r = tx_queue(d, qp, &t);
    if (r < 0)
        return r;
    if (iovcnt && !iov)
        return -EINVAL;
    size_t len = 0;
    for (unsigned k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len && !iov[k].iov_base)
            return -EINVAL;
        if (iov[k].iov_len > SIZE_MAX - len)
            return -EINVAL;
        len += iov[k].iov_len;
    }
    if (len == 0)
        return -EINVAL;
    if (len > d->tx_buf_size - d->hdr_size)
        return -EMSGSIZE;
    if (t->nfree == 0 || vio_drvq_num_free(t->q) == 0) {
        r = tx_collect(t);
        if (r < 0)
            return r;
        if (t->nfree == 0 || vio_drvq_num_free(t->q) == 0) {
            vio_ctr_add(&t->full, 1);
            return -ENOSPC;
        }
    }
    uint16_t slot = t->free[t->nfree - 1];
    uint8_t *b = t->buf_host + (size_t)slot * d->tx_stride;
    struct vio_net_hdr h;
    if (hdr)
        h = *hdr;
    else
        memset(&h, 0, sizeof(h));
    h.num_buffers = 0; /* spec 5.1.6.2: only meaningful on receive */
    memcpy(b, &h, d->hdr_size);
    size_t off = d->hdr_size;
    for (unsigned k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len)
            memcpy(b + off, iov[k].iov_base, iov[k].iov_len);
        off += iov[k].iov_len;
    }
    struct vio_sg sg = {t->buf_gpa + (uint64_t)slot * d->tx_stride, (uint32_t)off};
    r = vio_drvq_add(t->q, &sg, 1, 0, &t->tags[slot]);
    if (r < 0) {
        if (r == -ENOSPC)
            vio_ctr_add(&t->full, 1);
        return r;
    }
    t->nfree--;
    t->inflight++;
    vio_ctr_add(&t->frames, 1);
    vio_ctr_add(&t->bytes, len);
    return 0;
}

int vio_net_driver_send(struct vio_net_driver *d, unsigned qp, const struct vio_net_hdr *hdr,
                        const void *frame, size_t len)
{
    if (!frame || !len)
        return -EINVAL;
    struct iovec iov = {(void *)(uintptr_t)frame, len};
    return vio_net_driver_sendv(d, qp, hdr, &iov, 1);
}

int vio_net_driver_send_sg(struct vio_net_driver *d, unsigned qp, const struct vio_sg *sg,
                           unsigned n, void *token)
{
    struct nd_txq *t;
    int r = tx_queue(d, qp, &t);
    if (r < 0)
        return r;
    if (!sg || !n || !token)
        return -EINVAL;
    uint64_t total = 0;
    for (unsigned k = 0; k < n; k++)
        total += sg[k].len;
    if (total <= d->hdr_size)
        return -EINVAL;
    /* Tokens either sit with the device or in the stash until the caller reclaims them;
     * the stash has room for one queue's worth. */
    if (t->sg_inflight + t->stash_n >= d->qsize) {
        vio_ctr_add(&t->full, 1);
        return -ENOSPC;
    }
    r = vio_drvq_add(t->q, sg, n, 0, token);
    if (r == -ENOSPC) {
        /* Descriptors come back with completions: collect and try once more. */
        r = tx_collect(t);
        if (r < 0)
            return r;
        r = vio_drvq_add(t->q, sg, n, 0, token);
    }
    if (r < 0) {
        if (r == -ENOSPC)
            vio_ctr_add(&t->full, 1);
        return r;
    }
    t->inflight++;
    t->sg_inflight++;
    vio_ctr_add(&t->frames, 1);
    vio_ctr_add(&t->bytes, total - d->hdr_size);
    return 0;
}

int vio_net_driver_tx_reclaim(struct vio_net_driver *d, unsigned qp, void **tokens, unsigned cap)
{
    if (!d || (!tokens && cap))
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    struct nd_txq *t = &d->tx[qp];
    int r = tx_collect(t);
    unsigned n = 0;
    while (n < cap && t->stash_n) {
        tokens[n++] = t->stash[t->stash_head];
        t->stash_head = (uint16_t)((t->stash_head + 1) & t->stash_mask);
        t->stash_n--;
    }
    if (r < 0 && n == 0)
        return r;
    return (int)n;
}

int vio_net_driver_tx_get(struct vio_net_driver *d, unsigned qp, struct vio_net_driver_txbuf *bufs,
                          unsigned n)
{
    if (!d || (n && !bufs))
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    /* A broken queue shows when completions are collected, else in tx_commit(): no
     * separate check on this path (it runs on every poll of a busy sender). */
    struct nd_txq *t = &d->tx[qp];
    int r;
    unsigned room = t->nfree, dfree = vio_drvq_num_free(t->q);
    if (dfree < room)
        room = dfree;
    if (room < n) {
        if ((r = tx_collect(t)) < 0)
            return r; /* -EIO for a broken queue */
        room = t->nfree;
        dfree = vio_drvq_num_free(t->q);
        if (dfree < room)
            room = dfree;
        if (room < n) {
            n = room;
            if (n == 0)
                vio_ctr_add(&t->full, 1);
        }
    }
    const uint32_t cap = d->tx_buf_size - (uint32_t)d->hdr_size;
    const uint16_t *top = &t->free[t->nfree - 1];
    for (unsigned k = 0; k < n; k++) {
        uint16_t slot = top[-(ptrdiff_t)k];
        bufs[k].frame = t->buf_host + (size_t)slot * d->tx_stride + d->hdr_size;
        bufs[k].cap = cap;
        bufs[k].id = slot;
    }
    return (int)n;
}

int vio_net_driver_tx_commit(struct vio_net_driver *d, unsigned qp,
                             const struct vio_net_driver_txbuf *bufs, const uint32_t *lens,
                             unsigned n, const struct vio_net_hdr *hdr)
{
    struct nd_txq *t;
    int r = tx_queue(d, qp, &t);
    if (r < 0)
        return r;
    if (n && (!bufs || !lens))
        return -EINVAL;
    if (n > t->nfree)
        return -EINVAL;
    /* Everything checked before anything is queued: the buffers must be the next free
     * ones (the driver uses its own addresses for them, never the caller's pointers). */
    const uint32_t cap = d->tx_buf_size - (uint32_t)d->hdr_size;
    const uint16_t *top = &t->free[t->nfree - 1];
    uint64_t bytes = 0;
    for (unsigned k = 0; k < n; k++) {
        if (bufs[k].id != top[-(ptrdiff_t)k] || lens[k] == 0)
            return -EINVAL;
        if (lens[k] > cap)
            return -EMSGSIZE;
        bytes += lens[k];
    }
    if (vio_drvq_num_free(t->q) < n) {
        vio_ctr_add(&t->full, 1);
        return -ENOSPC;
    }
    struct vio_net_hdr h;
    if (hdr)
        h = *hdr;
    else
        memset(&h, 0, sizeof(h));
    h.num_buffers = 0; /* spec 5.1.6.2: only meaningful on receive */
    const uint32_t hs = (uint32_t)d->hdr_size;
    const bool h12 = hs == sizeof(h);
    /* locals: the header stores (bytes) are not assumed to alias them */
    uint8_t *const host = t->buf_host;
    uint8_t *const tags = t->tags;
    const uint64_t gpa = t->buf_gpa;
    const size_t stride = d->tx_stride;
    struct vio_sg sg[ND_COLLECT_BURST];
    void *tok[ND_COLLECT_BURST];
    for (unsigned done = 0; done < n;) {
        unsigned m = n - done < ND_COLLECT_BURST ? n - done : ND_COLLECT_BURST;
        for (unsigned k = 0; k < m; k++) {
            uint16_t slot = bufs[done + k].id;
            size_t off = (size_t)slot * stride;
            uint8_t *b = host + off;
            if (h12)
                memcpy(b, &h, sizeof(h));
            else
                memcpy(b, &h, 10);
            sg[k].addr = gpa + off;
            sg[k].len = hs + lens[done + k];
            tok[k] = &tags[slot];
        }
        r = vio_drvq_add_burst(t->q, sg, m, false, tok);
        if (r < 0 || (unsigned)r != m) {
            /* cannot happen (room and arguments checked): keep the books right */
            unsigned got = r > 0 ? (unsigned)r : 0;
            done += got;
            t->nfree = (uint16_t)(t->nfree - done);
            t->inflight += done;
            vio_ctr_add(&t->frames, done);
            return r < 0 ? r : -EIO;
        }
        done += m;
    }
    t->nfree = (uint16_t)(t->nfree - n);
    t->inflight += n;
    vio_ctr_add(&t->frames, n);
    vio_ctr_add(&t->bytes, bytes);
    return (int)n;
}

unsigned vio_net_driver_tx_inflight(const struct vio_net_driver *d, unsigned qp)
{
    if (!d || qp >= d->npairs)
        return 0;
    return d->tx[qp].inflight;
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                   */

static int rx_queue(struct vio_net_driver *d, unsigned qp, struct nd_rxq **out)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    *out = &d->rx[qp];
    if (vio_drvq_is_broken((*out)->q))
        return -EIO;
    return 0;
}

/* Post receive buffers @p slots[0 .. n) in one burst of ring additions; on a broken queue
 * the ones not posted go back to the free list. Returns the number posted or -EIO. */
static int rx_post_slots(struct vio_net_driver *d, struct nd_rxq *rq, const uint16_t *slots,
                         unsigned n)
{
    if (n == 0)
        return 0;
    for (unsigned k = 0; k < n; k++) {
        rq->sgv[k].addr = rq->buf_gpa + (uint64_t)slots[k] * d->rx_stride;
        rq->sgv[k].len = d->rx_buf_size;
        rq->tokv[k] = (void *)(uintptr_t)(slots[k] + 1u);
    }
    int r = vio_drvq_add_burst(rq->q, rq->sgv, n, true, rq->tokv);
    unsigned done = r > 0 ? (unsigned)r : 0;
    /* cannot fall short on a healthy queue: one descriptor per buffer, nbufs <= size */
    for (unsigned k = done; k < n; k++)
        rq->free[rq->nfree++] = slots[k];
    return r < 0 ? r : (int)done;
}

/* Post the buffers lent by recv_burst() again. */
static int rx_release_held(struct vio_net_driver *d, struct nd_rxq *rq)
{
    unsigned n = rq->nheld;
    rq->nheld = 0;
    return rx_post_slots(d, rq, rq->held, n);
}

int vio_net_driver_rx_fill(struct vio_net_driver *d, unsigned qp)
{
    struct nd_rxq *rq;
    int r = rx_queue(d, qp, &rq);
    if (r < 0)
        return r;
    r = rx_release_held(d, rq);
    if (r < 0)
        return r;
    int posted = r;
    unsigned n = rq->nfree;
    rq->nfree = 0;
    /* the free stack from its top: low slots first */
    for (unsigned k = 0; k < n; k++)
        rq->held[k] = rq->free[n - 1 - k];
    r = rx_post_slots(d, rq, rq->held, n);
    if (r < 0)
        return r;
    return posted + r;
}

/* Give the collected buffers of the current frame back to the device. */
static void rx_repost(struct vio_net_driver *d, struct nd_rxq *rq)
{
    (void)rx_post_slots(d, rq, rq->pslot, rq->npend);
    rq->npend = 0;
    rq->need = 0;
}

/* The buffers of the current frame go to the caller's held list (posted at release). */
static void rx_hold_pend(struct nd_rxq *rq)
{
    for (uint16_t k = 0; k < rq->npend; k++)
        rq->held[rq->nheld++] = rq->pslot[k];
    rq->npend = 0;
    rq->need = 0;
}

/* The next used buffer: from the burst taken earlier, else a new burst from the ring.
 * Returns 0, -EAGAIN (none used) or -EIO (the queue is broken). */
__attribute__((always_inline)) static inline int rx_next(struct nd_rxq *rq, uint16_t *slot,
                                                        uint32_t *len)
{
    if (rq->fcnt == 0) {
        int r = vio_drvq_get_used_burst(rq->q, rq->ftok, rq->flen, rq->nbufs);
        if (r <= 0)
            return r == 0 ? -EAGAIN : -EIO; /* a ring violation: the queue is broken */
        rq->fhead = 0;
        rq->fcnt = (uint16_t)r;
    }
    /* Tokens are ours (the core only returns tokens that were in flight). */
    *slot = (uint16_t)((uintptr_t)rq->ftok[rq->fhead] - 1u);
    *len = rq->flen[rq->fhead];
    rq->fhead++;
    rq->fcnt--;
    return 0;
}

/* A first buffer the device got wrong (too short when @p nb is 0, else a bad num_buffers):
 * logged and counted; the caller drops the frame. */
__attribute__((cold, noinline)) static int rx_bad(struct vio_net_driver *d, struct nd_rxq *rq,
                                                  unsigned qp, uint32_t len, uint16_t nb)
{
    if (nb == 0 && len < d->hdr_size)
        vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, "net-driver",
                 "rx%u: device returned %u bytes, less than a header", qp, len);
    else
        vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, "net-driver",
                 "rx%u: num_buffers %u (posted %u)", qp, nb, rq->nbufs);
    vio_ctr_add(&rq->bad_hdr, 1);
    return -EPROTO;
}

/* Take the next used buffer into the current frame and check what the device wrote in a
 * first buffer. Returns 0 (taken; the frame is complete when npend == need), -EAGAIN,
 * -EPROTO (bad first buffer: the caller drops the frame) or -EIO. */
__attribute__((always_inline)) static inline int rx_take(struct vio_net_driver *d,
                                                        struct nd_rxq *rq, unsigned qp)
{
    uint16_t slot;
    uint32_t len;
    int r = rx_next(rq, &slot, &len);
    if (r < 0)
        return r;
    rq->pslot[rq->npend] = slot;
    rq->plen[rq->npend] = len;
    rq->npend++;
    if (rq->npend > 1)
        return 0;
    if (len < d->hdr_size)
        return rx_bad(d, rq, qp, len, 0);
    uint16_t nb = 1;
    if (d->mrg) {
        /* read once: the device may still write the buffer */
        const uint8_t *f = rq->buf_host + (size_t)slot * d->rx_stride;
        uint16_t raw;
        memcpy(&raw, f + offsetof(struct vio_net_hdr, num_buffers), sizeof(raw));
        nb = le16toh(raw);
    }
    /* The device can only use buffers it was given: more than are posted is a lie that
     * would make us wait forever. */
    if (nb == 0 || nb > rq->nbufs)
        return rx_bad(d, rq, qp, len, nb);
    rq->need = nb;
    return 0;
}

ssize_t vio_net_driver_recv(struct vio_net_driver *d, unsigned qp, struct vio_net_hdr *hdr,
                            void *buf, size_t cap)
{
    struct nd_rxq *rq;
    int r = rx_queue(d, qp, &rq);
    if (r < 0)
        return r;
    if (rq->nheld)
        (void)rx_release_held(d, rq);
    /* Collect the buffers of one frame: the first names how many there are. */
    while (rq->need == 0 || rq->npend < rq->need) {
        r = rx_take(d, rq, qp);
        if (r == -EAGAIN)
            return -EAGAIN;
        if (r == -EPROTO) {
            vio_ctr_add(&rq->buffers, 1);
            rx_repost(d, rq);
            return -EPROTO;
        }
        if (r < 0)
            return -EIO;
        vio_ctr_add(&rq->buffers, 1);
    }

    /* All buffers are here: copy out, header first. */
    const uint8_t *first = rq->buf_host + (size_t)rq->pslot[0] * d->rx_stride;
    if (hdr) {
        memset(hdr, 0, sizeof(*hdr));
        memcpy(hdr, first, d->hdr_size);
        if (d->hdr_size < sizeof(*hdr))
            hdr->num_buffers = htole16(1);
    }
    size_t total = 0;
    for (uint16_t k = 0; k < rq->npend; k++)
        total += rq->plen[k];
    total -= d->hdr_size;
    if (buf && total > cap) {
        vio_ctr_add(&rq->oversize, 1);
        rx_repost(d, rq);
        return -EMSGSIZE;
    }
    if (buf) {
        size_t off = 0;
        for (uint16_t k = 0; k < rq->npend; k++) {
            const uint8_t *src = rq->buf_host + (size_t)rq->pslot[k] * d->rx_stride;
            size_t l = rq->plen[k];
            if (k == 0) {
                src += d->hdr_size;
                l -= d->hdr_size;
            }
            memcpy((uint8_t *)buf + off, src, l);
            off += l;
        }
    }
    if (rq->npend > 1)
        vio_ctr_add(&rq->merged, 1);
    vio_ctr_add(&rq->frames, 1);
    vio_ctr_add(&rq->bytes, total);
    rx_repost(d, rq);
    return (ssize_t)total;
}

/* The burst proper: buffers taken from the ring are waiting in rq->ftok (or a frame is
 * half-collected). */
__attribute__((noinline)) static int rx_burst_slow(struct vio_net_driver *d, struct nd_rxq *rq,
                                                   unsigned qp,
                                                   struct vio_net_driver_rxfrm *frames,
                                                   unsigned max)
{
    int r;
    const size_t hs = d->hdr_size;
    unsigned n = 0, bufs = 0;
    uint64_t bytes = 0;
    bool reasm_used = false;
    int err = 0;
    while (n < max) {
        if (rq->npend == 0) {
            /* The common case first: frames in one buffer each, handed out without the
             * pending-frame bookkeeping (the ring state in locals: the frames written are
             * not assumed to alias it). Anything else goes the general way below. */
            if (rq->fcnt == 0) {
                r = vio_drvq_get_used_burst(rq->q, rq->ftok, rq->flen, rq->nbufs);
                if (r <= 0) {
                    if (r < 0)
                        err = -EIO;
                    break;
                }
                rq->fhead = 0;
                rq->fcnt = (uint16_t)r;
            }
            uint16_t fh = rq->fhead, fc = rq->fcnt, nh = rq->nheld;
            void *const *ftok = rq->ftok;
            const uint32_t *flen = rq->flen;
            uint16_t *held = rq->held;
            uint8_t *const base = rq->buf_host;
            const size_t stride = d->rx_stride;
            const bool mrg = d->mrg;
            unsigned k = n;
            while (fc && k < max) {
                uint16_t slot = (uint16_t)((uintptr_t)ftok[fh] - 1u);
                uint32_t len = flen[fh];
                const uint8_t *first = base + (size_t)slot * stride;
                uint16_t nb = 1;
                if (mrg && len >= hs) {
                    uint16_t raw; /* read once: the device may still write the buffer */
                    memcpy(&raw, first + offsetof(struct vio_net_hdr, num_buffers), sizeof(raw));
                    nb = le16toh(raw);
                }
                if (__builtin_expect(len < hs || nb != 1, 0))
                    break;
                fh++;
                fc--;
                uint32_t l = len - (uint32_t)hs;
                frames[k++] = (struct vio_net_driver_rxfrm){first + hs, l, 1, first};
                bytes += l;
                held[nh++] = slot;
            }
            bufs += k - n;
            n = k;
            rq->fhead = fh;
            rq->fcnt = fc;
            rq->nheld = nh;
            if (fc == 0 || n >= max)
                continue;
        }
        if (rq->need == 0 || rq->npend < rq->need) {
            r = rx_take(d, rq, qp);
            if (r == -EAGAIN)
                break;
            if (r == -EPROTO) {
                bufs++;
                rx_hold_pend(rq); /* dropped: posted again with the others */
                continue;
            }
            if (r < 0) {
                err = -EIO;
                break;
            }
            bufs++;
            if (rq->npend < rq->need)
                continue;
        }
        /* a complete frame */
        const uint8_t *first = rq->buf_host + (size_t)rq->pslot[0] * d->rx_stride;
        if (__builtin_expect(rq->npend == 1, 1)) {
            uint32_t l = rq->plen[0] - (uint32_t)hs;
            frames[n++] = (struct vio_net_driver_rxfrm){first + hs, l, 1, first};
            bytes += l;
            rq->held[rq->nheld++] = rq->pslot[0];
            rq->npend = 0;
            rq->need = 0;
            continue;
        }
        if (reasm_used)
            break; /* one reassembled frame per burst: this one waits for the next call */
        uint64_t total = 0;
        for (uint16_t k = 0; k < rq->npend; k++)
            total += rq->plen[k];
        total -= hs;
        if (total > ND_MAX_FRAME) {
            vio_ctr_add(&rq->oversize, 1);
            rx_hold_pend(rq);
            continue;
        }
        size_t off = 0;
        for (uint16_t k = 0; k < rq->npend; k++) {
            const uint8_t *src = rq->buf_host + (size_t)rq->pslot[k] * d->rx_stride;
            size_t l = rq->plen[k];
            if (k == 0) {
                src += hs;
                l -= hs;
            }
            memcpy(rq->reasm + off, src, l);
            off += l;
        }
        frames[n++] = (struct vio_net_driver_rxfrm){rq->reasm, (uint32_t)total, rq->npend, first};
        bytes += total;
        vio_ctr_add(&rq->merged, 1);
        reasm_used = true;
        rx_hold_pend(rq);
    }
    vio_ctr_add(&rq->buffers, bufs);
    if (n) {
        vio_ctr_add(&rq->frames, n);
        vio_ctr_add(&rq->bytes, bytes);
    }
    return n ? (int)n : err;
}

int vio_net_driver_recv_burst(struct vio_net_driver *d, unsigned qp,
                              struct vio_net_driver_rxfrm *frames, unsigned max)
{
    if (!d || (max && !frames))
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    /* A broken queue shows in the core's answers (-EIO): no separate check. */
    struct nd_rxq *rq = &d->rx[qp];
    int r;
    if (rq->nheld && (r = rx_release_held(d, rq)) < 0)
        return r;
    if (rq->fcnt == 0 && rq->npend == 0) {
        /* nothing half-done: an empty poll is one core call (kept small: no spills) */
        r = vio_drvq_get_used_burst(rq->q, rq->ftok, rq->flen, rq->nbufs);
        if (r <= 0)
            return r == 0 ? 0 : -EIO;
        rq->fhead = 0;
        rq->fcnt = (uint16_t)r;
    }
    return rx_burst_slow(d, rq, qp, frames, max);
}

int vio_net_driver_rx_release(struct vio_net_driver *d, unsigned qp)
{
    struct nd_rxq *rq;
    int r = rx_queue(d, qp, &rq);
    if (r < 0)
        return r;
    return rx_release_held(d, rq);
}

/* ------------------------------------------------------------------------ */
/* Notifications                                                             */

bool vio_net_driver_kick_prepare(struct vio_net_driver *d, unsigned qidx)
{
    struct vio_drvq *q = qof(d, qidx);
    if (!q || !vio_drvq_kick_prepare(q))
        return false;
    vio_ctr_add((qidx & 1) ? &d->tx[qidx / 2].kicks : &d->rx[qidx / 2].kicks, 1);
    return true;
}

int vio_net_driver_kick(struct vio_net_driver *d, unsigned qidx)
{
    if (!d)
        return -EINVAL;
    if (qidx >= 2u * d->npairs)
        return -ERANGE;
    if (!vio_net_driver_kick_prepare(d, qidx))
        return 0;
    if (d->drv.ops) {
        int r = vio_driver_notify(&d->drv, qidx);
        return r < 0 ? r : 1;
    }
    if (!d->notify)
        return -ENOTSUP;
    d->notify(d->notify_opaque, qidx);
    return 1;
}

int vio_net_driver_attach(struct vio_net_driver *d, const struct vio_driver *drv)
{
    if (!d || !drv || !drv->ops)
        return -EINVAL;
    unsigned nq = 2u * d->npairs;
    int n = vio_driver_num_queues(drv);
    if (n < 0)
        return n;
    /* virtio-net: a control queue, when present, comes after the pairs we use */
    if ((unsigned)n < nq) {
        vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, "net-driver",
                 "device has %d queues, %u needed", n, nq);
        return -ERANGE;
    }
    for (unsigned i = 0; i < nq; i++) {
        const struct vio_net_driver_queue_addr *a = (i & 1) ? &d->tx[i / 2].addr : &d->rx[i / 2].addr;
        int max = vio_driver_queue_max_size(drv, i);
        if (max < 0)
            return max;
        if ((unsigned)max < a->size) {
            vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, "net-driver",
                     "queue %u: device maximum %d below %u", i, max, a->size);
            return -ERANGE;
        }
        struct vio_driver_queue q = {.size = a->size, .desc = a->desc, .driver = a->driver,
                                     .device = a->device};
        int r = vio_driver_queue_setup(drv, i, &q);
        if (r == 0)
            r = vio_driver_queue_enable(drv, i);
        if (r < 0)
            return r;
    }
    uint8_t st;
    int r = vio_driver_get_status(drv, &st);
    if (r < 0)
        return r;
    bool legacy = drv->ops->flags & VIO_DRIVER_LEGACY; /* no FEATURES_OK step there */
    if ((!legacy && !(st & VIO_S_FEATURES_OK)) || (st & (VIO_S_FAILED | VIO_S_NEEDS_RESET)))
        return -EPROTO;
    if ((r = vio_driver_set_status(drv, (uint8_t)(st | VIO_S_DRIVER_OK))) < 0)
        return r;
    if ((r = vio_driver_get_status(drv, &st)) < 0)
        return r;
    if (!(st & VIO_S_DRIVER_OK) || (st & VIO_S_NEEDS_RESET))
        return -EPROTO;
    d->drv = *drv;
    return 0;
}

bool vio_net_driver_enable_cb(struct vio_net_driver *d, unsigned qidx)
{
    struct vio_drvq *q = qof(d, qidx);
    return q ? vio_drvq_enable_cb(q) : false;
}

void vio_net_driver_disable_cb(struct vio_net_driver *d, unsigned qidx)
{
    struct vio_drvq *q = qof(d, qidx);
    if (q)
        vio_drvq_disable_cb(q);
}

bool vio_net_driver_is_broken(const struct vio_net_driver *d, unsigned qidx)
{
    struct vio_drvq *q = qof(d, qidx);
    return q && vio_drvq_is_broken(q);
}

int vio_net_driver_get_stats(const struct vio_net_driver *d, unsigned qp,
                             struct vio_net_driver_stats *out)
{
    if (!d || !out)
        return -EINVAL;
    if (qp >= d->npairs)
        return -ERANGE;
    const struct nd_rxq *rq = &d->rx[qp];
    const struct nd_txq *t = &d->tx[qp];
#define LD(c) vio_ctr_get(&(c))
    *out = (struct vio_net_driver_stats){
        .tx_frames = LD(t->frames),
        .tx_bytes = LD(t->bytes),
        .tx_completed = LD(t->completed),
        .tx_full = LD(t->full),
        .rx_frames = LD(rq->frames),
        .rx_bytes = LD(rq->bytes),
        .rx_buffers = LD(rq->buffers),
        .rx_merged = LD(rq->merged),
        .rx_oversize = LD(rq->oversize),
        .rx_bad_hdr = LD(rq->bad_hdr),
        .kicks = LD(t->kicks) + LD(rq->kicks),
    };
#undef LD
    return 0;
}
