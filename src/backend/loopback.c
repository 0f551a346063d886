/* SPDX-License-Identifier: MIT */
/*
 * Loopback backend: what queue pair q transmits, queue pair q receives.
 *
 * Each queue pair owns a ring of ring_frames preallocated slots (a header plus up to
 * LB_FRAME_MAX bytes of frame). tx copies the frame into the next free slot, rx copies
 * the oldest slot out, rx_view lends it (only tx writes a slot). A full ring makes tx return
 * -EAGAIN, or with drop_when_full read the frame into a scratch buffer and drop it (counted).
 * Nothing is allocated after open.
 *
 * Where a slot's bytes live: a frame of up to LB_SMALL bytes goes to the slot's place in a
 * compact area (LB_SMALL bytes a slot, 2 MiB aligned and advised for transparent huge
 * pages), a larger one to its place in the big area (LB_FRAME_MAX a slot, faulted in only
 * where used). Small frames thus cost one TLB entry for the whole ring instead of one page
 * per slot. And when the ring runs empty the next frame goes to slot 0 again, so a steady
 * trickle of bursts keeps reusing the same few slots (lines and pages still in the caches)
 * instead of walking the whole ring.
 *
 * Concurrency: a queue pair is both the producer (its tx) and the consumer (its rx),
 * and the backend interface says the caller serializes calls on one queue pair, so
 * the ring indices need no lock and no atomics. Different queue pairs share nothing
 * mutable except the negotiated feature word, which is an atomic.
 *
 * Readiness without a syscall per frame: rx_fd is an eventfd whose counter is
 * non-zero exactly while the ring holds frames. tx writes 1 only on the
 * empty -> non-empty transition; rx reads (which zeroes the counter) only on the
 * non-empty -> empty transition. Because both transitions happen on the same
 * (serialized) queue pair, the counter and the ring never disagree between calls.
 *
 * In polling mode (set_polling, for a caller that calls rx and tx in a loop anyway) neither
 * eventfd is touched; leaving it brings both in line with the ring again.
 *
 * tx_fd is a second eventfd that polls writable exactly while the ring has room:
 * when tx finds the ring full it writes 0xfffffffffffffffe (the eventfd maximum),
 * which makes the fd non-writable; the first rx that frees a slot reads it back to 0.
 * Again one syscall per full <-> not-full transition, none per frame.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/util.h"
#include "virtio/net_backend.h"

/* Largest frame a slot holds: 64 KiB of payload plus room for link-layer headers. */
#define LB_FRAME_MAX (65536u + 64u)
/* Upper bound on ring_frames: 32768 slots of 64 KiB is 2 GiB of (lazily faulted) memory. */
#define LB_RING_MAX 32768u
/* Frames up to this size live in the compact area (see the file comment). */
#define LB_SMALL 2048u
#define LB_HUGE_ALIGN (2u << 20)
/* Writing this makes an eventfd's counter reach its maximum: POLLOUT clears. */
#define LB_EFD_FULL UINT64_C(0xfffffffffffffffe)

struct lb_slot {
    struct vio_net_hdr hdr;
    uint32_t len;
};

struct lb_qp {
    struct lb_slot *meta; /* ring_frames headers and lengths */
    uint8_t *data;        /* ring_frames * LB_FRAME_MAX bytes, slot i at i * LB_FRAME_MAX */
    size_t data_bytes;
    uint8_t *small;       /* ring_frames * LB_SMALL bytes, slot i at i * LB_SMALL */
    void *small_map;      /* the mapping holding it (aligned inside) */
    size_t small_map_bytes;
    unsigned head;        /* oldest queued slot */
    unsigned count;       /* queued slots */
    bool tx_blocked;      /* tx_efd is currently held non-writable */
    bool polling;         /* set_polling: the eventfds are left alone (synced when it ends) */
    bool rx_signalled;    /* rx_efd's counter is non-zero */
    int rx_efd;
    int tx_efd;
    uint8_t *scratch;     /* drop_when_full: where a dropped frame is read to */
    _Atomic uint64_t full_drops;
};

struct lb {
    unsigned nqp;
    unsigned ring_frames;
    bool mac_swap;
    bool drop_full;
    uint64_t features;
    _Atomic uint64_t negotiated;
    atomic_bool warned_gso;
    atomic_bool warned_csum;
    vio_log_fn log;
    void *log_opaque;
    struct lb_qp qp[];
};

static uint64_t lb_feature_mask(void)
{
    uint64_t f = 0;
    static const unsigned bits[] = {
        VIRTIO_NET_F_CSUM,      VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN,   VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN,
        VIRTIO_NET_F_GUEST_UFO,
#ifdef VIRTIO_NET_F_HOST_USO
        VIRTIO_NET_F_HOST_USO,
#endif
#if defined(VIRTIO_NET_F_GUEST_USO4) && defined(VIRTIO_NET_F_GUEST_USO6)
        VIRTIO_NET_F_GUEST_USO4, VIRTIO_NET_F_GUEST_USO6,
#endif
    };
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        f |= vio_feature_bit(bits[i]);
    return f;
}

static uint64_t lb_features(void *opaque)
{
    return ((struct lb *)opaque)->features;
}

static int lb_configure(void *opaque, uint64_t negotiated)
{
    struct lb *lb = opaque;
    atomic_store_explicit(&lb->negotiated, negotiated & lb->features, memory_order_relaxed);
    return 0;
}

/* Where slot @p idx keeps a frame of @p len bytes. */
static uint8_t *lb_slot_data(struct lb_qp *q, unsigned idx, size_t len)
{
    if (len <= LB_SMALL)
        return q->small + (size_t)idx * LB_SMALL;
    return q->data + (size_t)idx * LB_FRAME_MAX;
}

/* Reads (zeroes) an eventfd counter; only called when the counter is known non-zero. */
static void lb_efd_clear(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r; /* cannot fail: the counter is non-zero and the fd valid */
}

/* Adds @p v to an eventfd counter; only called when the counter is known to be 0. */
static void lb_efd_set(int fd, uint64_t v)
{
    ssize_t r = write(fd, &v, sizeof(v));
    (void)r; /* cannot fail: 0 + v never exceeds the eventfd maximum */
}

/* Drops the head slot, keeping both eventfds in step with the ring (see the file comment). */
static void lb_pop(struct lb_qp *q, unsigned ring_frames)
{
    q->head = q->head + 1 == ring_frames ? 0 : q->head + 1;
    if (--q->count == 0)
        q->head = 0; /* empty: the next frame reuses slot 0 (see the file comment) */
    if (q->polling)
        return; /* the caller polls: eventfds synced by lb_set_polling(off) */
    if (q->count == 0 && q->rx_signalled) {
        lb_efd_clear(q->rx_efd); /* non-empty -> empty: rx_fd stops polling readable */
        q->rx_signalled = false;
    }
    if (q->tx_blocked) {
        q->tx_blocked = false;
        lb_efd_clear(q->tx_efd); /* full -> not full: tx_fd polls writable again */
    }
}

/*
 * Makes the head slot fit what the driver negotiated: completes a partial checksum
 * when GUEST_CSUM is off, and drops GSO frames of a type the driver cannot receive
 * (segmenting them is out of scope). Returns the head slot or NULL when empty.
 */
__attribute__((noinline)) static struct lb_slot *lb_head_slow(struct lb *lb, struct lb_qp *q)
{
    uint64_t neg = atomic_load_explicit(&lb->negotiated, memory_order_relaxed);
    while (q->count) {
        struct lb_slot *s = &q->meta[q->head];
        if (!vio_be_gso_allowed(s->hdr.gso_type, neg)) {
            if (vio_be_once(&lb->warned_gso))
                vio_logf(lb->log, lb->log_opaque, VIO_LOG_WARN, "loopback",
                         "dropping GSO frames (type %u) the driver did not negotiate",
                         s->hdr.gso_type);
            lb_pop(q, lb->ring_frames);
            continue;
        }
        if (!vio_has_feature(neg, VIRTIO_NET_F_GUEST_CSUM)) {
            if ((s->hdr.flags & VIO_NET_HDR_F_NEEDS_CSUM) &&
                vio_be_csum_complete(lb_slot_data(q, q->head, s->len), s->len,
                                     le16toh(s->hdr.csum_start),
                                     le16toh(s->hdr.csum_offset)) < 0) {
                if (vio_be_once(&lb->warned_csum))
                    vio_logf(lb->log, lb->log_opaque, VIO_LOG_WARN, "loopback",
                             "dropping frames whose csum_start/csum_offset lie outside them");
                lb_pop(q, lb->ring_frames);
                continue;
            }
            s->hdr.flags = 0;
        }
        return s;
    }
    return NULL;
}

/* The usual frame (no offload) needs nothing done: found without the slow path's register
 * saves. */
static inline struct lb_slot *lb_head(struct lb *lb, struct lb_qp *q)
{
    if (q->count) {
        struct lb_slot *s = &q->meta[q->head];
        if (s->hdr.gso_type == VIO_NET_HDR_GSO_NONE && s->hdr.flags == 0)
            return s;
    }
    return lb_head_slow(lb, q);
}

static int lb_tx(void *opaque, unsigned qpi, const struct vio_net_hdr *hdr, const struct iovec *iov,
                 unsigned iovcnt)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp || (iovcnt && !iov))
        return -EINVAL;
    struct lb_qp *q = &lb->qp[qpi];
    ssize_t len = iovcnt == 1 ? (ssize_t)iov[0].iov_len : vio_iov_len(iov, iovcnt);
    if (len < 0)
        return (int)len;
    if (len == 0)
        return -EINVAL;
    if ((size_t)len > LB_FRAME_MAX)
        return -EMSGSIZE;
    if (q->count == lb->ring_frames) {
        if (lb->drop_full) {
            vio_iov_read_at(iov, iovcnt, 0, q->scratch, (size_t)len);
            atomic_store_explicit(&q->full_drops,
                                  atomic_load_explicit(&q->full_drops, memory_order_relaxed) + 1,
                                  memory_order_relaxed); /* one writer: the pair's tx side */
            return 0;
        }
        if (!q->tx_blocked && !q->polling) {
            lb_efd_set(q->tx_efd, LB_EFD_FULL); /* not full -> full: tx_fd stops polling writable */
            q->tx_blocked = true;
        }
        return -EAGAIN;
    }
    unsigned idx = q->head + q->count;
    if (idx >= lb->ring_frames)
        idx -= lb->ring_frames;
    struct lb_slot *s = &q->meta[idx];
    uint8_t *d = lb_slot_data(q, idx, (size_t)len);
    if (iovcnt == 1)
        memcpy(d, iov[0].iov_base, (size_t)len); /* the usual frame: one buffer */
    else
        vio_iov_read_at(iov, iovcnt, 0, d, (size_t)len);
    if (hdr)
        s->hdr = *hdr;
    else
        memset(&s->hdr, 0, sizeof(s->hdr));
    s->len = (uint32_t)len;
    if (lb->mac_swap && len >= 12) {
        uint8_t tmp[6];
        memcpy(tmp, d, 6);
        memcpy(d, d + 6, 6);
        memcpy(d + 6, tmp, 6);
    }
    if (q->count++ == 0 && !q->polling && !q->rx_signalled) {
        lb_efd_set(q->rx_efd, 1); /* empty -> non-empty: rx_fd polls readable */
        q->rx_signalled = true;
    }
    return 0;
}

static ssize_t lb_rx_peek(void *opaque, unsigned qpi)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp)
        return -EINVAL;
    struct lb_slot *s = lb_head(lb, &lb->qp[qpi]);
    return s ? (ssize_t)s->len : -EAGAIN;
}

/* Takes the head frame for a reader that can hold @p cap bytes: its slot data through @p data
 * (valid until the slot is written again, i.e. until the next tx) and its header. */
static ssize_t lb_take(struct lb *lb, struct lb_qp *q, struct vio_net_hdr *hdr, const uint8_t **data,
                       size_t cap)
{
    struct lb_slot *s = lb_head(lb, q);
    if (!s)
        return -EAGAIN;
    size_t len = s->len;
    if (len > cap) {
        lb_pop(q, lb->ring_frames);
        return -EMSGSIZE;
    }
    *data = lb_slot_data(q, q->head, len);
    if (hdr) {
        *hdr = s->hdr;
        hdr->num_buffers = htole16(1);
    }
    lb_pop(q, lb->ring_frames);
    return (ssize_t)len;
}

static ssize_t lb_rx(void *opaque, unsigned qpi, struct vio_net_hdr *hdr, const struct iovec *iov,
                     unsigned iovcnt)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp || (iovcnt && !iov))
        return -EINVAL;
    ssize_t cap = vio_iov_len(iov, iovcnt);
    if (cap < 0)
        return cap;
    const uint8_t *data;
    ssize_t len = lb_take(lb, &lb->qp[qpi], hdr, &data, (size_t)cap);
    if (len > 0)
        vio_iov_write_at(iov, iovcnt, 0, data, (size_t)len);
    return len;
}

/* The slot is not written again before the next tx on this pair (only tx fills slots), which
 * is the validity rx_view promises. */
static ssize_t lb_rx_view(void *opaque, unsigned qpi, struct vio_net_hdr *hdr, const void **data,
                          size_t cap)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp || !data)
        return -EINVAL;
    const uint8_t *d;
    ssize_t len = lb_take(lb, &lb->qp[qpi], hdr, &d, cap);
    if (len >= 0)
        *data = d;
    return len;
}

/* Empties the ring (device reset): rx_fd stops polling readable, tx_fd polls writable. */
static void lb_flush(void *opaque, unsigned qpi)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp)
        return;
    struct lb_qp *q = &lb->qp[qpi];
    while (q->count)
        lb_pop(q, lb->ring_frames); /* the last one puts head back at slot 0 */
}

/* Polling mode: no eventfd system call per burst. Leaving it makes both fds agree with the
 * ring again (readable while it holds frames, writable while it has room). */
static void lb_set_polling(void *opaque, unsigned qpi, bool on)
{
    struct lb *lb = opaque;
    if (qpi >= lb->nqp)
        return;
    struct lb_qp *q = &lb->qp[qpi];
    q->polling = on;
    if (on)
        return;
    if (q->count && !q->rx_signalled) {
        lb_efd_set(q->rx_efd, 1);
        q->rx_signalled = true;
    } else if (!q->count && q->rx_signalled) {
        lb_efd_clear(q->rx_efd);
        q->rx_signalled = false;
    }
    if (q->tx_blocked && q->count < lb->ring_frames) {
        q->tx_blocked = false;
        lb_efd_clear(q->tx_efd);
    } else if (!q->tx_blocked && q->count == lb->ring_frames) {
        lb_efd_set(q->tx_efd, LB_EFD_FULL);
        q->tx_blocked = true;
    }
}

static int lb_rx_fd(void *opaque, unsigned qpi)
{
    struct lb *lb = opaque;
    return qpi < lb->nqp ? lb->qp[qpi].rx_efd : -1;
}

static int lb_tx_fd(void *opaque, unsigned qpi)
{
    struct lb *lb = opaque;
    return qpi < lb->nqp ? lb->qp[qpi].tx_efd : -1;
}

static int lb_link_status(void *opaque)
{
    (void)opaque;
    return 1;
}

static void lb_destroy(void *opaque)
{
    struct lb *lb = opaque;
    if (!lb)
        return;
    for (unsigned i = 0; i < lb->nqp; i++) {
        struct lb_qp *q = &lb->qp[i];
        if (q->data)
            munmap(q->data, q->data_bytes);
        if (q->small_map)
            munmap(q->small_map, q->small_map_bytes);
        free(q->meta);
        free(q->scratch);
        if (q->rx_efd >= 0)
            close(q->rx_efd);
        if (q->tx_efd >= 0)
            close(q->tx_efd);
    }
    free(lb);
}

/* The compact area: whole 2 MiB units, 2 MiB aligned, so transparent huge pages can back
 * it where the system allows them (madvise mode); 4 KiB pages otherwise. */
static int lb_map_small(struct lb_qp *q, unsigned ring_frames)
{
    size_t need = (size_t)ring_frames * LB_SMALL;
    size_t len = (need + LB_HUGE_ALIGN - 1) / LB_HUGE_ALIGN * LB_HUGE_ALIGN;
    size_t map_len = len + LB_HUGE_ALIGN;
    void *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    q->small_map = m;
    q->small_map_bytes = map_len;
    uintptr_t a = ((uintptr_t)m + LB_HUGE_ALIGN - 1) & ~(uintptr_t)(LB_HUGE_ALIGN - 1);
    q->small = (uint8_t *)a;
#ifdef MADV_HUGEPAGE
    (void)madvise(q->small, len, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
    return 0;
}

static const struct vio_net_backend_ops lb_ops = {
    .name = "loopback",
    .features = lb_features,
    .configure = lb_configure,
    .tx = lb_tx,
    .rx_peek = lb_rx_peek,
    .rx = lb_rx,
    .rx_fd = lb_rx_fd,
    .tx_fd = lb_tx_fd,
    .set_rx_mode = NULL,
    .link_status = lb_link_status,
    .destroy = lb_destroy,
    .flush = lb_flush,
    .set_polling = lb_set_polling,
    .rx_view = lb_rx_view,
};

int vio_net_loopback_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out)
{
    struct vio_net_backend_config c;
    if (!out)
        return -EINVAL;
    int err = vio_be_load_config(cfg, &c);
    if (err)
        return err;
    if (c.ring_frames > LB_RING_MAX)
        return -EINVAL;

    struct lb *lb = calloc(1, sizeof(*lb) + (size_t)c.queue_pairs * sizeof(lb->qp[0]));
    if (!lb)
        return -ENOMEM;
    lb->nqp = c.queue_pairs;
    lb->ring_frames = c.ring_frames;
    lb->mac_swap = c.mac_swap;
    lb->drop_full = c.drop_when_full;
    lb->log = c.log;
    lb->log_opaque = c.log_opaque;
    lb->features = lb_feature_mask();
    /* Until configure() says otherwise, hand frames back exactly as they were sent. */
    atomic_init(&lb->negotiated, lb->features);
    for (unsigned i = 0; i < lb->nqp; i++)
        lb->qp[i].rx_efd = lb->qp[i].tx_efd = -1;

    for (unsigned i = 0; i < lb->nqp; i++) {
        struct lb_qp *q = &lb->qp[i];
        q->meta = calloc(lb->ring_frames, sizeof(q->meta[0]));
        if (!q->meta) {
            err = -ENOMEM;
            goto fail;
        }
        /* Anonymous mapping: reserved now, faulted in on first use of each slot, so a
         * ring that never fills does not cost its full size in RAM. */
        q->data_bytes = (size_t)lb->ring_frames * LB_FRAME_MAX;
        void *m = mmap(NULL, q->data_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            err = -ENOMEM;
            goto fail;
        }
        q->data = m;
        err = lb_map_small(q, lb->ring_frames);
        if (err)
            goto fail;
        if (lb->drop_full && !(q->scratch = malloc(LB_FRAME_MAX))) {
            err = -ENOMEM;
            goto fail;
        }
        q->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->rx_efd < 0) {
            err = -errno;
            goto fail;
        }
        q->tx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->tx_efd < 0) {
            err = -errno;
            goto fail;
        }
    }
    out->ops = &lb_ops;
    out->opaque = lb;
    out->queue_pairs = lb->nqp;
    return 0;

fail:
    vio_logf(c.log, c.log_opaque, VIO_LOG_ERROR, "loopback", "open failed: %s", strerror(-err));
    lb_destroy(lb);
    return err;
}

uint64_t vio_net_loopback_full_drops(const struct vio_net_backend *b, unsigned qp)
{
    if (!b || b->ops != &lb_ops || !b->opaque)
        return 0;
    const struct lb *lb = b->opaque;
    if (qp >= lb->nqp)
        return 0;
    return atomic_load_explicit(&lb->qp[qp].full_drops, memory_order_relaxed);
}
