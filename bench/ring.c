/* SPDX-License-Identifier: MIT */
/*
 * bench/ring: the price of safety on the split-ring data path.
 *
 * A driver thread (CPU 0) and a device thread (CPU 1) move 64-byte buffers,
 * one device-readable descriptor each (TX style: the driver writes the data,
 * the device reads it and returns it with used len 0), through a 256-entry
 * split ring. The same workload runs over
 *   (a) "ours": vio_drvq_* on the driver side, vio_queue_* on the device side;
 *   (b) "bare": a reference split ring written below with the same layout,
 *       the same C11 atomics and fences at the same points and the same
 *       driver free-list bookkeeping, but no validation at all: no bounds
 *       checks, no loop limit, no address translation (host = gpa + offset).
 * The ratio ours/bare is the price of validating everything the peer writes.
 *
 * Both sides busy-poll. Notifications are never delivered, but their
 * decisions are computed on every batch (kick_prepare on the driver side,
 * needs_notify on the device side), with event-idx on or off, and counted.
 *
 * The build machines swing ~2x from minute to minute, so each round runs
 * ours and bare back to back (order alternating per round) and the report
 * gives medians and the median of the per-round ratios.
 *
 * --single-thread runs both sides alternately in one thread for a fixed
 * buffer count; bench/ring-callgrind.sh uses it under callgrind to get
 * stable instructions per buffer.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "virtio/mem.h"
#include "virtio/queue.h"

#define QSIZE 256u
#define BUF_LEN 64u
#define GPA_BASE 0x40000000ull /* guest address of the block; host = gpa - GPA_BASE + block */
#define USED_ALIGN 64u         /* cache-line aligned used ring, as Linux does for virtio 1 */
#define MAX_BATCH QSIZE
#define TIMEOUT_S 60

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() do { } while (0)
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum impl { IMPL_OURS = 0, IMPL_BARE = 1 };
static const char *const impl_name[] = {"ours", "bare"};

/* ------------------------------------------------------------------------ */
/* Shared memory block: ring + data buffers, one guest region.              */

struct block {
    uint8_t *host;
    size_t len;
    size_t desc_off, avail_off, used_off, data_off;
    struct vio_mem *mem;
};

static int block_init(struct block *b)
{
    size_t avail_off = 16u * QSIZE;
    size_t avail_len = 2u * (3u + QSIZE);           /* flags, idx, ring[], used_event */
    size_t used_off = (avail_off + avail_len + USED_ALIGN - 1) & ~(size_t)(USED_ALIGN - 1);
    size_t used_len = 2u * 3u + 8u * QSIZE;          /* flags, idx, ring[], avail_event */
    size_t data_off = (used_off + used_len + 4095u) & ~(size_t)4095u;

    b->desc_off = 0;
    b->avail_off = avail_off;
    b->used_off = used_off;
    b->data_off = data_off;
    b->len = data_off + (size_t)QSIZE * BUF_LEN;
    b->host = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->host == MAP_FAILED)
        return -errno;
    /* Cross-check against the library's own layout helper (virtio 1: used ring cache aligned). */
    size_t ldrv = 0, ldev = 0;
    size_t ltotal = vio_split_ring_layout(QSIZE, USED_ALIGN, &ldrv, &ldev);
    if (ldrv != avail_off || ldev != used_off || ltotal != used_off + used_len)
        fprintf(stderr, "bench_ring: note: vio_split_ring_layout gives avail %zu used %zu total %zu, "
                        "bench uses %zu %zu %zu\n", ldrv, ldev, ltotal, avail_off, used_off,
                used_off + used_len);

    int rc = vio_mem_new(0, &b->mem);
    if (rc < 0)
        return rc;
    struct vio_mem_region r = {
        .guest_addr = GPA_BASE, .size = b->len, .user_addr = 0, .host_ptr = b->host,
    };
    return vio_mem_add(b->mem, &r);
}

static void block_fini(struct block *b)
{
    vio_mem_free(b->mem);
    if (b->host && b->host != MAP_FAILED)
        munmap(b->host, b->len);
}

static uint64_t gpa_of(size_t off)
{
    return GPA_BASE + off;
}

/* ------------------------------------------------------------------------ */
/* (b) The bare reference split ring. No validation anywhere, on purpose.   */

/* The ring indices are shared with the other thread: C11 atomics on them.
 * (uint16_t and _Atomic uint16_t have the same size and alignment here.) */
#define A16(p) ((_Atomic uint16_t *)(void *)(p))

struct bare_drv {
    alignas(64) struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t *used_event;  /* avail->ring[size] (written only by an enable_cb, unused here) */
    uint16_t *avail_event; /* after used->ring[size]: read by kick_prepare */
    uint16_t mask;
    bool evidx;
    uint16_t free_head;  /* driver-private free list, linked through next[] */
    uint16_t num_free;
    uint16_t avail_idx;  /* shadow of avail->idx (next slot to fill) */
    uint16_t published;  /* avail->idx as last published */
    uint16_t last_used;  /* next used entry to collect */
    uint16_t next[QSIZE];  /* free-list links, private copy of the chains */
    uint16_t ndesc[QSIZE]; /* descriptors per chain, by head */
    void *token[QSIZE];
};

struct bare_dev {
    alignas(64) struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t *used_event;  /* read by needs_notify */
    uint16_t *avail_event; /* (written only by an enable_notify, unused here) */
    uintptr_t host_off;  /* host pointer = gpa + host_off */
    uint16_t mask;
    bool evidx;
    uint16_t last_avail; /* next avail entry to pop */
    uint16_t avail_seen; /* avail->idx as last read */
    uint16_t used_idx;   /* shadow of used->idx */
    uint16_t signalled;  /* used idx at the last notify decision */
    bool signalled_valid;
};

static void bare_init(struct block *b, bool evidx, struct bare_drv *d, struct bare_dev *v)
{
    memset(b->host, 0, b->data_off);
    memset(d, 0, sizeof(*d));
    memset(v, 0, sizeof(*v));
    d->desc = v->desc = (struct vring_desc *)(void *)(b->host + b->desc_off);
    d->avail = v->avail = (struct vring_avail *)(void *)(b->host + b->avail_off);
    d->used = v->used = (struct vring_used *)(void *)(b->host + b->used_off);
    d->used_event = v->used_event = (uint16_t *)(void *)(b->host + b->avail_off + 4 + 2 * QSIZE);
    d->avail_event = v->avail_event = (uint16_t *)(void *)(b->host + b->used_off + 4 + 8 * QSIZE);
    d->mask = v->mask = QSIZE - 1;
    d->evidx = v->evidx = evidx;
    d->num_free = QSIZE;
    for (unsigned i = 0; i < QSIZE; i++)
        d->next[i] = (uint16_t)(i + 1);
    v->host_off = (uintptr_t)b->host - (uintptr_t)GPA_BASE;
}

/* driver: expose one buffer (single descriptor or a chain), not yet visible */
ALWAYS_INLINE int bare_add(struct bare_drv *d, const struct vio_sg *sg, unsigned n_out,
                           unsigned n_in, void *token)
{
    unsigned n = n_out + n_in;
    if (d->num_free < n)
        return -ENOSPC;
    uint16_t head = d->free_head, i = head;
    for (unsigned k = 0; k < n; k++) {
        struct vring_desc *desc = &d->desc[i];
        desc->addr = sg[k].addr;
        desc->len = sg[k].len;
        desc->flags = (uint16_t)((k >= n_out ? VRING_DESC_F_WRITE : 0) |
                                 (k + 1 < n ? VRING_DESC_F_NEXT : 0));
        desc->next = d->next[i];
        i = d->next[i];
    }
    d->free_head = i;
    d->num_free = (uint16_t)(d->num_free - n);
    d->ndesc[head] = (uint16_t)n;
    d->token[head] = token;
    d->avail->ring[d->avail_idx & d->mask] = head;
    d->avail_idx++;
    return 0;
}

/* driver: publish what was added; does the device want a kick? */
ALWAYS_INLINE bool bare_kick_prepare(struct bare_drv *d)
{
    uint16_t new_idx = d->avail_idx, old = d->published;
    if (old == new_idx)
        return false;
    d->published = new_idx;
    /* release: descriptors and avail ring entries before the index (pairs with the
     * device's acquire load of avail->idx) */
    atomic_store_explicit(A16(&d->avail->idx), new_idx, memory_order_release);
    /* full fence: the index store before the event/flags load (pairs with the device's
     * fence between writing avail_event and re-reading avail->idx) */
    atomic_thread_fence(memory_order_seq_cst);
    if (d->evidx)
        return vring_need_event(atomic_load_explicit(A16(d->avail_event), memory_order_relaxed),
                                new_idx, old);
    return !(atomic_load_explicit(A16(&d->used->flags), memory_order_relaxed) &
             VRING_USED_F_NO_NOTIFY);
}

/* driver: collect one used buffer */
ALWAYS_INLINE int bare_get_used(struct bare_drv *d, void **token, uint32_t *len)
{
    /* acquire: the used entry after the index (pairs with the device's release store) */
    if (d->last_used == atomic_load_explicit(A16(&d->used->idx), memory_order_acquire))
        return -EAGAIN;
    struct vring_used_elem *e = &d->used->ring[d->last_used & d->mask];
    uint16_t id = (uint16_t)e->id;
    *len = e->len;
    *token = d->token[id];
    /* return the chain to the free list: walk it through the private next[] */
    uint16_t i = id, n = d->ndesc[id];
    for (uint16_t k = 1; k < n; k++)
        i = d->next[i];
    d->next[i] = d->free_head;
    d->free_head = id;
    d->num_free = (uint16_t)(d->num_free + n);
    d->last_used++;
    return 0;
}

/* device: take the next chain; readable iovecs first (no checks, no cap) */
ALWAYS_INLINE int bare_pop(struct bare_dev *v, struct vio_chain *c, struct iovec *iov)
{
    if (v->last_avail == v->avail_seen) {
        /* acquire: ring entries and descriptors after the index (pairs with the driver's
         * release store) */
        v->avail_seen = atomic_load_explicit(A16(&v->avail->idx), memory_order_acquire);
        if (v->last_avail == v->avail_seen)
            return -EAGAIN;
    }
    uint16_t head = v->avail->ring[v->last_avail & v->mask], i = head;
    unsigned n = 0, n_out = 0;
    uint32_t out_len = 0, in_len = 0;
    for (;;) {
        const struct vring_desc *d = &v->desc[i];
        iov[n].iov_base = (void *)(uintptr_t)(d->addr + v->host_off);
        iov[n].iov_len = d->len;
        n++;
        if (d->flags & VRING_DESC_F_WRITE) {
            in_len += d->len;
        } else {
            n_out++;
            out_len += d->len;
        }
        if (!(d->flags & VRING_DESC_F_NEXT))
            break;
        i = d->next;
    }
    v->last_avail++;
    c->head = head;
    c->ndesc = (uint16_t)n;
    c->n_out = n_out;
    c->n_in = n - n_out;
    c->out_len = out_len;
    c->in_len = in_len;
    return 0;
}

/* release: the used entries before the index (pairs with the driver's acquire load);
 * forget the last notify decision if the index ran past it (event-idx wrap rule) */
ALWAYS_INLINE void bare_publish_used(struct bare_dev *v, uint16_t old)
{
    atomic_store_explicit(A16(&v->used->idx), v->used_idx, memory_order_release);
    if ((int16_t)(v->used_idx - v->signalled) < (uint16_t)(v->used_idx - old))
        v->signalled_valid = false;
}

ALWAYS_INLINE void bare_push(struct bare_dev *v, uint16_t head, uint32_t len)
{
    uint16_t old = v->used_idx;
    struct vring_used_elem *e = &v->used->ring[old & v->mask];
    e->id = head;
    e->len = len;
    v->used_idx = (uint16_t)(old + 1);
    bare_publish_used(v, old);
}

ALWAYS_INLINE void bare_push_batch(struct bare_dev *v, const struct vio_used_elem *el, unsigned n)
{
    uint16_t old = v->used_idx, idx = old;
    for (unsigned k = 0; k < n; k++, idx++) {
        struct vring_used_elem *e = &v->used->ring[idx & v->mask];
        e->id = el[k].id;
        e->len = el[k].len;
    }
    v->used_idx = idx;
    bare_publish_used(v, old);
}

ALWAYS_INLINE bool bare_needs_notify(struct bare_dev *v)
{
    /* full fence: the used index store before reading the driver's flags / used_event
     * (pairs with the driver's fence between writing used_event and re-reading used->idx) */
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t old = v->signalled, new_idx = v->used_idx;
    bool valid = v->signalled_valid;
    v->signalled = new_idx;
    v->signalled_valid = true;
    if (valid && old == new_idx)
        return false;
    if (v->evidx)
        return !valid ||
               vring_need_event(atomic_load_explicit(A16(v->used_event), memory_order_relaxed),
                                new_idx, old);
    return !(atomic_load_explicit(A16(&v->avail->flags), memory_order_relaxed) &
             VRING_AVAIL_F_NO_INTERRUPT);
}

/* ------------------------------------------------------------------------ */
/* One measurement's state; both implementations behind inline switches     */
/* that fold away because `impl` is a compile-time constant in each copy.   */

struct run {
    struct block *b;
    unsigned batch;
    bool evidx;
    uint64_t total;    /* buffer cap per measurement */
    double seconds;    /* time cap per measurement (threaded mode) */
    int cpu_drv, cpu_dev;
    /* ours */
    struct vio_drvq *dq;
    struct vio_queue *vq;
    /* bare */
    struct bare_drv *bd;
    struct bare_dev *bv;
    /* control */
    atomic_int ready;
    atomic_bool go;
    atomic_bool stop;  /* timeout or failure: both loops bail out */
    alignas(64) _Atomic uint64_t final; /* buffers the device must serve (set by the driver) */
    /* results */
    alignas(64) double ns;
    uint64_t kicks, drv_done;
    int drv_err;
    alignas(64) uint64_t calls, sink, dev_done;
    int dev_err;
};

ALWAYS_INLINE int drv_add(struct run *r, const int impl, const struct vio_sg *sg, void *tok)
{
    return impl == IMPL_OURS ? vio_drvq_add(r->dq, sg, 1, 0, tok) : bare_add(r->bd, sg, 1, 0, tok);
}
ALWAYS_INLINE bool drv_kick_prepare(struct run *r, const int impl)
{
    return impl == IMPL_OURS ? vio_drvq_kick_prepare(r->dq) : bare_kick_prepare(r->bd);
}
ALWAYS_INLINE int drv_get_used(struct run *r, const int impl, void **tok, uint32_t *len)
{
    return impl == IMPL_OURS ? vio_drvq_get_used(r->dq, tok, len) : bare_get_used(r->bd, tok, len);
}
ALWAYS_INLINE int dev_pop(struct run *r, const int impl, struct vio_chain *c, struct iovec *iov,
                          unsigned cap)
{
    return impl == IMPL_OURS ? vio_queue_pop(r->vq, c, iov, cap) : bare_pop(r->bv, c, iov);
}
ALWAYS_INLINE int dev_push(struct run *r, const int impl, uint16_t head, uint32_t len)
{
    if (impl == IMPL_OURS)
        return vio_queue_push(r->vq, head, len);
    bare_push(r->bv, head, len);
    return 0;
}
ALWAYS_INLINE int dev_push_batch(struct run *r, const int impl, const struct vio_used_elem *e,
                                 unsigned n)
{
    if (impl == IMPL_OURS)
        return vio_queue_push_batch(r->vq, e, n);
    bare_push_batch(r->bv, e, n);
    return 0;
}
ALWAYS_INLINE bool dev_needs_notify(struct run *r, const int impl)
{
    return impl == IMPL_OURS ? vio_queue_needs_notify(r->vq) : bare_needs_notify(r->bv);
}

/* Driver-side harness state (identical for both implementations): a stack of
 * free data buffers, the in-flight count, and the sequence number written into
 * each buffer so the device side can prove it read what was sent. */
struct drv_state {
    uint64_t limit, added, done, kicks, seq;
    unsigned nfree;
    uint16_t freebuf[QSIZE];
};

static void drv_state_init(struct drv_state *s, uint64_t limit)
{
    memset(s, 0, sizeof(*s));
    s->limit = limit;
    s->nfree = QSIZE;
    for (unsigned i = 0; i < QSIZE; i++)
        s->freebuf[i] = (uint16_t)(QSIZE - 1 - i);
}

/* Add one batch if a whole batch fits, then publish it. Returns buffers added or < 0. */
ALWAYS_INLINE int drv_fill(struct run *r, const int impl, struct drv_state *s)
{
    uint64_t left = s->limit - s->added;
    if (left == 0 || QSIZE - (s->added - s->done) < r->batch)
        return 0;
    unsigned n = left < r->batch ? (unsigned)left : r->batch;
    uint8_t *data = r->b->host + r->b->data_off;
    if (impl == IMPL_OURS && r->batch > 1) {
        /* batched sides use the engine's burst add (one call per batch) */
        struct vio_sg sgs[MAX_BATCH];
        void *toks[MAX_BATCH];
        for (unsigned k = 0; k < n; k++) {
            uint16_t slot = s->freebuf[--s->nfree];
            uint64_t *w = (uint64_t *)(void *)(data + (size_t)slot * BUF_LEN);
            w[0] = s->seq;
            w[BUF_LEN / 8 - 1] = s->seq;
            s->seq++;
            sgs[k].addr = gpa_of(r->b->data_off + (size_t)slot * BUF_LEN);
            sgs[k].len = BUF_LEN;
            toks[k] = (void *)(uintptr_t)(slot + 1u);
        }
        int rc = vio_drvq_add_burst(r->dq, sgs, n, false, toks);
        if (rc < 0)
            return rc;
        if ((unsigned)rc != n)
            return -EBADMSG; /* the harness only adds what fits */
        s->added += n;
        if (drv_kick_prepare(r, impl))
            s->kicks++;
        return (int)n;
    }
    for (unsigned k = 0; k < n; k++) {
        uint16_t slot = s->freebuf[--s->nfree];
        uint64_t *w = (uint64_t *)(void *)(data + (size_t)slot * BUF_LEN);
        w[0] = s->seq;
        w[BUF_LEN / 8 - 1] = s->seq;
        s->seq++;
        struct vio_sg sg = {gpa_of(r->b->data_off + (size_t)slot * BUF_LEN), BUF_LEN};
        int rc = drv_add(r, impl, &sg, (void *)(uintptr_t)(slot + 1u));
        if (rc < 0)
            return rc;
    }
    s->added += n;
    if (drv_kick_prepare(r, impl))
        s->kicks++;
    return (int)n;
}

/* Collect every used buffer there is. Returns buffers collected or < 0. */
ALWAYS_INLINE int drv_collect(struct run *r, const int impl, struct drv_state *s)
{
    int got = 0;
    if (impl == IMPL_OURS && r->batch > 1) {
        /* batched sides use the engine's burst collect (one call per batch) */
        void *toks[MAX_BATCH];
        uint32_t lens[MAX_BATCH];
        for (;;) {
            int n = vio_drvq_get_used_burst(r->dq, toks, lens, MAX_BATCH);
            if (n < 0)
                return n;
            for (int k = 0; k < n; k++) {
                uintptr_t slot = (uintptr_t)toks[k] - 1u;
                if (slot >= QSIZE || lens[k] != 0 || s->nfree >= QSIZE)
                    return -EBADMSG;
                s->freebuf[s->nfree++] = (uint16_t)slot;
            }
            got += n;
            if ((unsigned)n < MAX_BATCH)
                break;
        }
        s->done += (uint64_t)got;
        return got;
    }
    for (;;) {
        void *tok;
        uint32_t len;
        int rc = drv_get_used(r, impl, &tok, &len);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return rc;
        uintptr_t slot = (uintptr_t)tok - 1u;
        if (slot >= QSIZE || len != 0 || s->nfree >= QSIZE)
            return -EBADMSG;
        s->freebuf[s->nfree++] = (uint16_t)slot;
        got++;
    }
    s->done += (uint64_t)got;
    return got;
}

struct dev_state {
    uint64_t done, calls, sink;
    struct vio_used_elem el[MAX_BATCH];
    struct iovec iov[4];
};

/* Pop up to a batch, read each buffer, push them used, decide on an interrupt. */
ALWAYS_INLINE int dev_serve(struct run *r, const int impl, struct dev_state *s)
{
    unsigned n = 0;
    if (impl == IMPL_OURS && r->batch > 1) {
        /* batched sides use the engine's burst pop (one call per batch) */
        struct vio_chain ch[MAX_BATCH];
        struct iovec iv[MAX_BATCH];
        int got = vio_queue_pop_burst(r->vq, ch, r->batch, iv, MAX_BATCH);
        if (got == -EAGAIN)
            return 0;
        if (got < 0)
            return got;
        for (int k = 0; k < got; k++) {
            const uint64_t *w = (const uint64_t *)iv[k].iov_base;
            s->sink += w[0] + w[BUF_LEN / 8 - 1];
            s->el[k].id = ch[k].head;
            s->el[k].len = 0;
        }
        n = (unsigned)got;
        int rc = dev_push_batch(r, impl, s->el, n);
        if (rc < 0)
            return rc;
        s->done += n;
        if (dev_needs_notify(r, impl))
            s->calls++;
        return (int)n;
    }
    while (n < r->batch) {
        struct vio_chain c;
        int rc = dev_pop(r, impl, &c, s->iov, 4);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return rc;
        const uint64_t *w = (const uint64_t *)s->iov[0].iov_base;
        s->sink += w[0] + w[BUF_LEN / 8 - 1];
        s->el[n].id = c.head;
        s->el[n].len = 0;
        n++;
    }
    if (n == 0)
        return 0;
    int rc = r->batch == 1 ? dev_push(r, impl, (uint16_t)s->el[0].id, 0)
                           : dev_push_batch(r, impl, s->el, n);
    if (rc < 0)
        return rc;
    s->done += n;
    if (dev_needs_notify(r, impl))
        s->calls++;
    return (int)n;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static bool pin_warned;

static void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0 && !pin_warned) {
        pin_warned = true;
        fprintf(stderr, "bench_ring: warning: cannot pin to CPU %d (%s); running unpinned\n", cpu,
                strerror(rc));
    }
}

static void wait_go(struct run *r)
{
    atomic_fetch_add(&r->ready, 1);
    while (!atomic_load_explicit(&r->go, memory_order_acquire))
        cpu_relax();
}

ALWAYS_INLINE void *driver_loop(struct run *r, const int impl)
{
    struct drv_state s;
    drv_state_init(&s, r->total);
    pin_self(r->cpu_drv);
    wait_go(r);
    double t0 = now_ns(), t_end = t0 + r->seconds * 1e9;
    unsigned iter = 0;
    bool capped = false;
    while (s.done < s.limit) {
        /* time cap: stop adding, tell the device how many buffers there will be */
        if (!capped && (++iter & 63) == 0 && now_ns() > t_end) {
            capped = true;
            s.limit = s.added;
            atomic_store_explicit(&r->final, s.limit, memory_order_relaxed);
        }
        int a = drv_fill(r, impl, &s);
        int c = drv_collect(r, impl, &s);
        if (a < 0 || c < 0) {
            r->drv_err = a < 0 ? a : c;
            atomic_store(&r->stop, true);
            break;
        }
        if (a == 0 && c == 0) {
            if (atomic_load_explicit(&r->stop, memory_order_relaxed))
                break;
            cpu_relax();
        }
    }
    r->ns = now_ns() - t0;
    r->kicks = s.kicks;
    r->drv_done = s.done;
    return NULL;
}

ALWAYS_INLINE void *device_loop(struct run *r, const int impl)
{
    struct dev_state s;
    memset(&s, 0, sizeof(s));
    pin_self(r->cpu_dev);
    wait_go(r);
    while (s.done < atomic_load_explicit(&r->final, memory_order_relaxed)) {
        int n = dev_serve(r, impl, &s);
        if (n < 0) {
            r->dev_err = n;
            atomic_store(&r->stop, true);
            break;
        }
        if (n == 0) {
            if (atomic_load_explicit(&r->stop, memory_order_relaxed))
                break;
            cpu_relax();
        }
    }
    r->calls = s.calls;
    r->sink = s.sink;
    r->dev_done = s.done;
    return NULL;
}

static void *driver_ours(void *p) { return driver_loop(p, IMPL_OURS); }
static void *driver_bare(void *p) { return driver_loop(p, IMPL_BARE); }
static void *device_ours(void *p) { return device_loop(p, IMPL_OURS); }
static void *device_bare(void *p) { return device_loop(p, IMPL_BARE); }

/* Both sides alternately in one thread (for callgrind): fill, serve, collect. */
static int single_ours(struct run *r, struct drv_state *d, struct dev_state *v)
{
    while (d->done < d->limit) {
        int a = drv_fill(r, IMPL_OURS, d);
        int s = dev_serve(r, IMPL_OURS, v);
        int c = drv_collect(r, IMPL_OURS, d);
        if (a < 0 || s < 0 || c < 0)
            return a < 0 ? a : s < 0 ? s : c;
        if (a == 0 && s == 0 && c == 0)
            return -EDEADLK;
    }
    return 0;
}

static int single_bare(struct run *r, struct drv_state *d, struct dev_state *v)
{
    while (d->done < d->limit) {
        int a = drv_fill(r, IMPL_BARE, d);
        int s = dev_serve(r, IMPL_BARE, v);
        int c = drv_collect(r, IMPL_BARE, d);
        if (a < 0 || s < 0 || c < 0)
            return a < 0 ? a : s < 0 ? s : c;
        if (a == 0 && s == 0 && c == 0)
            return -EDEADLK;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Setup / teardown of one measurement                                      */

static struct bare_drv g_bd;
static struct bare_dev g_bv;

static int run_setup(struct run *r, int impl)
{
    struct block *b = r->b;
    r->dq = NULL;
    r->vq = NULL;
    if (impl == IMPL_BARE) {
        bare_init(b, r->evidx, &g_bd, &g_bv);
        r->bd = &g_bd;
        r->bv = &g_bv;
        return 0;
    }
    memset(b->host, 0, b->data_off);
    uint64_t features = vio_feature_bit(VIRTIO_F_VERSION_1);
    if (r->evidx)
        features |= vio_feature_bit(VIRTIO_RING_F_EVENT_IDX);
    struct vio_drvq_config dc = {
        .struct_size = sizeof(dc),
        .size = QSIZE,
        .name = "bench-drv",
        .features = features,
        .mem = b->mem,
        .desc = gpa_of(b->desc_off),
        .driver = gpa_of(b->avail_off),
        .device = gpa_of(b->used_off),
        .log = vio_log_stderr,
    };
    int rc = vio_drvq_new(&dc, &r->dq);
    if (rc < 0) {
        fprintf(stderr, "bench_ring: vio_drvq_new: %s\n", strerror(-rc));
        return rc;
    }
    struct vio_queue_config qc = {
        .struct_size = sizeof(qc),
        .max_size = QSIZE,
        .name = "bench-dev",
        .dir = VIO_QUEUE_DIR_OUT_ONLY,
        .log = vio_log_stderr,
    };
    rc = vio_queue_new(&qc, &r->vq);
    if (rc < 0) {
        fprintf(stderr, "bench_ring: vio_queue_new: %s\n", strerror(-rc));
        return rc;
    }
    rc = vio_queue_setup(r->vq, b->mem, QSIZE, features, dc.desc, dc.driver, dc.device);
    if (rc < 0)
        fprintf(stderr, "bench_ring: vio_queue_setup: %s\n", strerror(-rc));
    return rc;
}

static void run_teardown(struct run *r)
{
    vio_drvq_free(r->dq);
    vio_queue_free(r->vq);
    r->dq = NULL;
    r->vq = NULL;
}

/* every buffer carries its sequence number twice: the device's sum is fixed */
static int run_check(uint64_t n, uint64_t dev_done, uint64_t sink)
{
    uint64_t want = n ? n * (n - 1) : 0; /* 2 * sum(0 .. n-1) */
    if (dev_done != n || sink != want) {
        fprintf(stderr, "bench_ring: data check failed: device saw %" PRIu64 " of %" PRIu64
                        " buffers, checksum %" PRIu64 " want %" PRIu64 "\n",
                dev_done, n, sink, want);
        return -EBADMSG;
    }
    return 0;
}

struct sample {
    uint64_t buffers;
    double ns_per_buf, mbps, kicks_per_buf, calls_per_buf;
};

static int measure_threads(struct run *r, int impl, struct sample *out)
{
    int rc = run_setup(r, impl);
    if (rc < 0) {
        run_teardown(r);
        return rc;
    }
    atomic_store(&r->ready, 0);
    atomic_store(&r->go, false);
    atomic_store(&r->stop, false);
    atomic_store(&r->final, r->total);
    r->drv_err = r->dev_err = 0;
    pthread_t td, tv;
    if (pthread_create(&tv, NULL, impl == IMPL_OURS ? device_ours : device_bare, r) != 0 ||
        pthread_create(&td, NULL, impl == IMPL_OURS ? driver_ours : driver_bare, r) != 0) {
        fprintf(stderr, "bench_ring: pthread_create failed\n");
        exit(1);
    }
    while (atomic_load(&r->ready) < 2)
        cpu_relax();
    atomic_store_explicit(&r->go, true, memory_order_release);
    /* watchdog: a stuck engine must not hang the benchmark */
    double deadline = now_ns() + TIMEOUT_S * 1e9;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_timedjoin_np(td, NULL, &ts) == 0)
            break;
        if (now_ns() > deadline && !atomic_load(&r->stop)) {
            fprintf(stderr, "bench_ring: %s run timed out after %d s (stuck ring?)\n",
                    impl_name[impl], TIMEOUT_S);
            atomic_store(&r->stop, true);
        }
    }
    atomic_store(&r->stop, true); /* the device may still wait for more if the driver bailed */
    pthread_join(tv, NULL);
    run_teardown(r);
    if (r->drv_err || r->dev_err) {
        fprintf(stderr, "bench_ring: %s run failed: driver %s, device %s\n", impl_name[impl],
                r->drv_err ? strerror(-r->drv_err) : "ok", r->dev_err ? strerror(-r->dev_err) : "ok");
        return -EIO;
    }
    uint64_t n = atomic_load(&r->final);
    if (r->drv_done != n || n == 0)
        return -ETIMEDOUT;
    rc = run_check(n, r->dev_done, r->sink);
    if (rc < 0)
        return rc;
    out->buffers = n;
    out->ns_per_buf = r->ns / (double)n;
    out->mbps = 1e3 / out->ns_per_buf;
    out->kicks_per_buf = (double)r->kicks / (double)n;
    out->calls_per_buf = (double)r->calls / (double)n;
    return 0;
}

static int measure_single(struct run *r, int impl, struct sample *out)
{
    int rc = run_setup(r, impl);
    if (rc < 0) {
        run_teardown(r);
        return rc;
    }
    static struct drv_state d;
    static struct dev_state v;
    drv_state_init(&d, r->total);
    memset(&v, 0, sizeof(v));
    double t0 = now_ns();
    rc = impl == IMPL_OURS ? single_ours(r, &d, &v) : single_bare(r, &d, &v);
    double ns = now_ns() - t0;
    run_teardown(r);
    if (rc < 0) {
        fprintf(stderr, "bench_ring: %s single-thread run failed: %s\n", impl_name[impl],
                strerror(-rc));
        return rc;
    }
    if ((rc = run_check(r->total, v.done, v.sink)) < 0)
        return rc;
    double t = r->total ? (double)r->total : 1.0;
    out->ns_per_buf = ns / t;
    out->mbps = out->ns_per_buf > 0 ? 1e3 / out->ns_per_buf : 0;
    out->kicks_per_buf = (double)d.kicks / t;
    out->calls_per_buf = (double)v.calls / t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Command line, rounds, report                                             */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
    double t[64];
    memcpy(t, v, n * sizeof(*t));
    qsort(t, n, sizeof(*t), cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_ring [options]\n"
        "Driver thread and device thread move 64-byte device-readable single-descriptor buffers\n"
        "through a 256-entry split ring: (a) libvirtio's engine, (b) a bare unvalidated reference\n"
        "ring in the same run, alternating, several rounds; prints medians and RESULT lines.\n"
        "\n"
        "  --rounds N        rounds (each runs ours and bare once per case), 1..63 (default 7)\n"
        "  --buffers N       buffer cap per measurement (default 100000000); with --single-thread\n"
        "                    the exact count (default 1000000, 0 = setup only)\n"
        "  --seconds S       time cap per threaded measurement, 0.01..10 (default 0.3)\n"
        "  --batch N         only this batch size, 1..256 (default: 1 and 32)\n"
        "  --evidx on|off    only event-idx on or off (default: both)\n"
        "  --only ours|bare  run one implementation only (no ratio)\n"
        "  --cpus D,V        CPUs for the driver and device threads (default 0,1)\n"
        "  --single-thread   run both sides alternately in one thread, once per case\n"
        "                    (for callgrind: see bench/ring-callgrind.sh)\n"
        "  -h, --help        this text\n");
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_ring: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try --help)\n");
    return 2;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void case_name(char *buf, size_t n, unsigned batch, bool evidx)
{
    snprintf(buf, n, "b%u_%s", batch, evidx ? "evidx" : "noevidx");
}

int main(int argc, char **argv)
{
    uint64_t rounds = 7, buffers = 100000000, batch_only = 0;
    double seconds = 0.3;
    int evidx_only = -1, only = -1, cpu_drv = 0, cpu_dev = 1;
    bool single = false, buffers_set = false;
    static const struct option opts[] = {
        {"rounds", required_argument, NULL, 'r'},  {"buffers", required_argument, NULL, 'n'},
        {"batch", required_argument, NULL, 'b'},   {"evidx", required_argument, NULL, 'e'},
        {"only", required_argument, NULL, 'o'},    {"cpus", required_argument, NULL, 'c'},
        {"single-thread", no_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {"seconds", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            if (!parse_u64(optarg, 1, 63, &rounds))
                return bad("--rounds wants 1..63, got '%s'", optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, 0, UINT64_C(1) << 40, &buffers))
                return bad("--buffers wants a count, got '%s'", optarg);
            buffers_set = true;
            break;
        case 'b':
            if (!parse_u64(optarg, 1, MAX_BATCH, &batch_only))
                return bad("--batch wants 1..256, got '%s'", optarg);
            break;
        case 'e':
            if (strcmp(optarg, "on") == 0)
                evidx_only = 1;
            else if (strcmp(optarg, "off") == 0)
                evidx_only = 0;
            else
                return bad("--evidx wants on or off, got '%s'", optarg);
            break;
        case 'o':
            if (strcmp(optarg, "ours") == 0)
                only = IMPL_OURS;
            else if (strcmp(optarg, "bare") == 0)
                only = IMPL_BARE;
            else
                return bad("--only wants ours or bare, got '%s'", optarg);
            break;
        case 'c': {
            int a, b, used = 0;
            if (sscanf(optarg, "%d,%d%n", &a, &b, &used) != 2 || optarg[used] || a < 0 || b < 0 ||
                a >= CPU_SETSIZE || b >= CPU_SETSIZE)
                return bad("--cpus wants two CPU numbers D,V, got '%s'", optarg);
            cpu_drv = a;
            cpu_dev = b;
            break;
        }
        case 's':
            single = true;
            break;
        case 't': {
            char *end;
            errno = 0;
            seconds = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(seconds >= 0.01 && seconds <= 10))
                return bad("--seconds wants 0.01..10, got '%s'", optarg);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            return bad("unknown option or missing argument: '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("unexpected argument '%s'", argv[optind]);
    if (single && !buffers_set)
        buffers = 1000000;
    if (buffers == 0 && !single)
        return bad("--buffers 0 needs --single-thread%s", "");

    unsigned batches[2] = {1, 32}, nb = 2;
    if (batch_only) {
        batches[0] = (unsigned)batch_only;
        nb = 1;
    }
    bool evs[2] = {true, false};
    unsigned ne = 2;
    if (evidx_only >= 0) {
        evs[0] = evidx_only;
        ne = 1;
    }
    unsigned ncase = nb * ne;

    struct block blk = {0};
    int rc = block_init(&blk);
    if (rc < 0) {
        fprintf(stderr, "bench_ring: cannot set up guest memory: %s\n", strerror(-rc));
        return 1;
    }
    static struct run r;
    r.b = &blk;
    r.total = buffers;
    r.seconds = seconds;
    r.cpu_drv = cpu_drv;
    r.cpu_dev = cpu_dev;

    if (single) {
        for (unsigned ci = 0; ci < ncase; ci++) {
            r.batch = batches[ci / ne];
            r.evidx = evs[ci % ne];
            char cn[32];
            case_name(cn, sizeof(cn), r.batch, r.evidx);
            for (int impl = 0; impl < 2; impl++) {
                if (only >= 0 && impl != only)
                    continue;
                struct sample s;
                if (measure_single(&r, impl, &s) < 0)
                    return 1;
                if (buffers == 0)
                    printf("single-thread %-4s %-11s setup only\n", impl_name[impl], cn);
                else
                    printf("single-thread %-4s %-11s %" PRIu64 " buffers  %.1f ns/buf  "
                           "kicks/buf %.3f  irqs/buf %.3f\n", impl_name[impl], cn, buffers,
                           s.ns_per_buf, s.kicks_per_buf, s.calls_per_buf);
            }
        }
        block_fini(&blk);
        return 0;
    }

    printf("bench_ring: queue %u, %u-byte device-readable buffers (1 descriptor), each run "
           "%.2f s or %" PRIu64 " buffers, %" PRIu64 " rounds, driver CPU %d, device CPU %d, "
           "busy polling\n", QSIZE, BUF_LEN, seconds, buffers, rounds, cpu_drv, cpu_dev);
    fflush(stdout);

    static struct sample res[4][2][64];
    static double ratio[4][64];
    for (unsigned rd = 0; rd < rounds; rd++) {
        for (unsigned ci = 0; ci < ncase; ci++) {
            r.batch = batches[ci / ne];
            r.evidx = evs[ci % ne];
            char cn[32];
            case_name(cn, sizeof(cn), r.batch, r.evidx);
            int order[2] = {IMPL_OURS, IMPL_BARE};
            if (rd % 2) {
                order[0] = IMPL_BARE;
                order[1] = IMPL_OURS;
            }
            for (int k = 0; k < 2; k++) {
                int impl = order[k];
                if (only >= 0 && impl != only)
                    continue;
                if (measure_threads(&r, impl, &res[ci][impl][rd]) < 0)
                    return 1;
            }
            if (only < 0) {
                ratio[ci][rd] = res[ci][IMPL_OURS][rd].mbps / res[ci][IMPL_BARE][rd].mbps;
                printf("round %u %-11s ours %7.2f Mbuf/s  bare %7.2f Mbuf/s  ratio %.3f\n", rd + 1,
                       cn, res[ci][IMPL_OURS][rd].mbps, res[ci][IMPL_BARE][rd].mbps, ratio[ci][rd]);
            } else {
                printf("round %u %-11s %s %7.2f Mbuf/s\n", rd + 1, cn, impl_name[only],
                       res[ci][only][rd].mbps);
            }
            fflush(stdout);
        }
    }

    printf("\n%-11s | %9s %8s | %9s %8s | %6s %6s %6s | %-11s | %-11s\n", "case", "ours Mb/s",
           "ns/buf", "bare Mb/s", "ns/buf", "ratio", "min", "max", "kicks/buf", "irqs/buf");
    printf("%-11s | %18s | %18s | %20s | %-11s | %-11s\n", "", "(median)", "(median)",
           "(median of rounds)", "ours/bare", "ours/bare");
    double med[4][2][2], mratio[4];
    for (unsigned ci = 0; ci < ncase; ci++) {
        char cn[32];
        case_name(cn, sizeof(cn), batches[ci / ne], evs[ci % ne]);
        double k[2] = {0, 0}, c[2] = {0, 0};
        for (int impl = 0; impl < 2; impl++) {
            if (only >= 0 && impl != only)
                continue;
            double m[64], n[64];
            for (unsigned rd = 0; rd < rounds; rd++) {
                m[rd] = res[ci][impl][rd].mbps;
                n[rd] = res[ci][impl][rd].ns_per_buf;
                k[impl] += res[ci][impl][rd].kicks_per_buf / (double)rounds;
                c[impl] += res[ci][impl][rd].calls_per_buf / (double)rounds;
            }
            med[ci][impl][0] = median(m, (unsigned)rounds);
            med[ci][impl][1] = median(n, (unsigned)rounds);
        }
        double lo = 0, hi = 0;
        if (only < 0) {
            mratio[ci] = median(ratio[ci], (unsigned)rounds);
            lo = hi = ratio[ci][0];
            for (unsigned rd = 1; rd < rounds; rd++) {
                lo = ratio[ci][rd] < lo ? ratio[ci][rd] : lo;
                hi = ratio[ci][rd] > hi ? ratio[ci][rd] : hi;
            }
        }
        if (only < 0)
            printf("%-11s | %9.2f %8.1f | %9.2f %8.1f | %6.3f %6.3f %6.3f | %.3f/%.3f | %.3f/%.3f\n",
                   cn, med[ci][0][0], med[ci][0][1], med[ci][1][0], med[ci][1][1], mratio[ci], lo,
                   hi, k[0], k[1], c[0], c[1]);
        else
            printf("%-11s | %s %9.2f Mbuf/s %8.1f ns/buf | kicks/buf %.3f irqs/buf %.3f\n", cn,
                   impl_name[only], med[ci][only][0], med[ci][only][1], k[only], c[only]);
    }
    printf("(kicks/irqs per buffer: notification decisions that said \"notify\", averaged over rounds)\n\n");
    for (unsigned ci = 0; ci < ncase; ci++) {
        char cn[32];
        case_name(cn, sizeof(cn), batches[ci / ne], evs[ci % ne]);
        for (int impl = 0; impl < 2; impl++) {
            if (only >= 0 && impl != only)
                continue;
            printf("RESULT ring/%s_%s %.1f Mbuf/s\n", impl_name[impl], cn, med[ci][impl][0]);
            printf("RESULT ring/%s_%s_ns %.1f ns/buf\n", impl_name[impl], cn, med[ci][impl][1]);
        }
        if (only < 0)
            printf("RESULT ring/ratio_%s %.2f ratio\n", cn, mratio[ci]);
    }
    block_fini(&blk);
    return 0;
}
