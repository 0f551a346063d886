/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue engine: device side (vio_queue_*) and driver side (vio_drvq_*).
 *
 * Spec references are to the virtio 1.2 "Split Virtqueues" section
 * (split-ring.tex). Barrier pairs are labelled [Pn] on both sides:
 *
 *  [P1] driver: release store of avail->idx      device: acquire load of avail->idx
 *  [P2] device: release store of used->idx       driver: acquire load of used->idx
 *  [P3] driver: kick_prepare publishes avail->idx, full fence, reads avail_event / used->flags
 *       device: enable_notify writes avail_event / used->flags, full fence, re-reads avail->idx
 *  [P4] device: needs_notify after publishing used->idx, full fence, reads used_event / avail->flags
 *       driver: enable_cb writes used_event / avail->flags, full fence, re-reads used->idx
 *
 * Everything the driver (device side) or the device (driver side) writes is
 * read once into a local and validated before use. A violation marks the
 * queue broken; it never crashes and never touches memory outside the map.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem_internal.h"
#include "core/ring_access.h"
#include "core/util.h"
#include <linux/virtio_config.h>
#include "virtio/queue.h"

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */

static const char *const viol_names[VIO_VIOL__COUNT] = {
    [VIO_VIOL_NONE] = "none",
    [VIO_VIOL_AVAIL_IDX] = "avail-idx-jump",
    [VIO_VIOL_HEAD_RANGE] = "head-out-of-range",
    [VIO_VIOL_NEXT_RANGE] = "next-out-of-range",
    [VIO_VIOL_CHAIN_LOOP] = "chain-loop",
    [VIO_VIOL_INDIRECT_LEN] = "indirect-table-length",
    [VIO_VIOL_INDIRECT_NESTED] = "indirect-nested",
    [VIO_VIOL_INDIRECT_NEXT] = "indirect-with-next",
    [VIO_VIOL_INDIRECT_FEATURE] = "indirect-not-negotiated",
    [VIO_VIOL_TOTAL_LEN] = "chain-over-4GiB",
    [VIO_VIOL_ADDRESS] = "address-outside-memory",
    [VIO_VIOL_ORDER] = "readable-after-writable",
    [VIO_VIOL_DIRECTION] = "wrong-direction",
    [VIO_VIOL_USED_IDX] = "used-idx-jump",
    [VIO_VIOL_USED_ID] = "used-id-not-in-flight",
    [VIO_VIOL_USED_LEN] = "used-len-too-large",
    [VIO_VIOL_RING_ADDRESS] = "ring-outside-memory",
};

const char *vio_violation_name(enum vio_violation v)
{
    if ((unsigned)v >= VIO_VIOL__COUNT)
        return "unknown";
    return viol_names[v];
}

/* errno reported at the moment a rule is broken (afterwards: -EIO). */
static int viol_errno(enum vio_violation v)
{
    return (v == VIO_VIOL_ADDRESS || v == VIO_VIOL_RING_ADDRESS) ? -EFAULT : -EPROTO;
}

static void set_name(char *dst, size_t cap, const char *name, const char *prefix, unsigned index)
{
    if (name && *name)
        snprintf(dst, cap, "%s", name);
    else
        snprintf(dst, cap, "%s%u", prefix, index);
}

size_t vio_split_ring_layout(uint16_t size, size_t align, size_t *driver_off, size_t *device_off)
{
    if (align == 0)
        align = 1;
    size_t desc = 16u * (size_t)size;
    size_t avail = 6u + 2u * (size_t)size; /* flags, idx, ring[size], used_event */
    size_t used_off = (desc + avail + align - 1) / align * align;
    size_t used = 6u + 8u * (size_t)size; /* flags, idx, ring[size], avail_event */
    if (driver_off)
        *driver_off = desc;
    if (device_off)
        *device_off = used_off;
    return used_off + used;
}

/* avail->ring[num] is used_event; used->ring[num] is avail_event (spec 2.7.10). */
static inline uint16_t *avail_used_event(struct vring_avail *a, uint16_t num)
{
    return &a->ring[num];
}

static inline uint16_t *used_avail_event(struct vring_used *u, uint16_t num)
{
    return (uint16_t *)&u->ring[num];
}

/* ------------------------------------------------------------------------ */
/* Device side                                                               */

/* vhost-user inflight region, split layout (docs/interop/vhost-user.rst,
 * "Inflight I/O tracking"); shared with the frontend, so untrusted. */
struct vio_inflight_desc {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};

struct vio_inflight_split {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
    struct vio_inflight_desc desc[];
};

struct vio_resubmit {
    uint64_t counter;
    uint16_t head;
};

struct vio_queue {
    /* configuration */
    uint16_t max_size;
    uint16_t index;
    enum vio_queue_dir dir;
    char name[32];
    vio_log_fn log;
    void *log_opaque;
    void (*on_broken)(void *, struct vio_queue *, enum vio_violation);
    void *broken_opaque;

    /* ring, valid while num != 0 */
    const struct vio_mem *mem;
    uint16_t num;
    uint16_t mask;
    bool event_idx;
    bool indirect;
    bool in_order;
    bool kicks_off;          /* used->flags holds NO_NOTIFY (we wrote it; the driver never does) */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;

    /* indices */
    uint16_t last_avail;     /* next avail slot the device reads */
    uint16_t shadow_avail;   /* avail->idx as last read (validated) */
    uint16_t used_idx;       /* next used slot; equals used->idx once published */
    uint16_t signalled_used; /* used idx at the last needs_notify() */
    bool signalled_used_valid;
    uint32_t inflight;       /* chains popped and not yet pushed */

    /* inflight tracking (vhost-user INFLIGHT_SHMFD), NULL when off */
    struct vio_inflight_split *infl;
    uint64_t infl_counter;
    struct vio_resubmit *resubmit; /* max_size entries, allocated at creation */
    uint16_t resubmit_n, resubmit_pos;
    uint16_t resubmit_base; /* last_avail when the resubmit list was built */

    /* last region a buffer hit (invalidated by the map's generation) */
    struct vio_mem_hint hint;

    /* dirty page log (LOG_ALL), NULL when off */
    void *log_bitmap;
    uint64_t log_len;
    uint64_t log_used_gpa;

    bool broken;
    enum vio_violation why;
};

/* Zeroed memory that starts and ends on a cache-line boundary. The device's and the driver's
 * state are used by different threads: allocated next to each other by plain calloc, the
 * tail of one and the head of the other could share a line that then bounces between the
 * two cores on every operation. */
static void *cl_calloc(size_t n, size_t size)
{
    if (size && n > (SIZE_MAX - 63) / size)
        return NULL;
    size_t total = (n * size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, total ? total : 64);
    if (p)
        memset(p, 0, total ? total : 64);
    return p;
}

int vio_queue_new(const struct vio_queue_config *cfg, struct vio_queue **out)
{
    if (!cfg || !out || cfg->struct_size < sizeof(*cfg))
        return -EINVAL;
    if (!vio_is_pow2(cfg->max_size) || cfg->max_size > VIO_QUEUE_MAX_SIZE)
        return -EINVAL;
    if (cfg->dir > VIO_QUEUE_DIR_IN_ONLY)
        return -EINVAL;
    struct vio_queue *q = cl_calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->max_size = cfg->max_size;
    q->index = cfg->index;
    q->dir = cfg->dir;
    set_name(q->name, sizeof(q->name), cfg->name, "vq", cfg->index);
    q->log = cfg->log;
    q->log_opaque = cfg->log_opaque;
    q->on_broken = cfg->on_broken;
    q->broken_opaque = cfg->broken_opaque;
    q->resubmit = cl_calloc(cfg->max_size, sizeof(*q->resubmit));
    if (!q->resubmit) {
        free(q);
        return -ENOMEM;
    }
    *out = q;
    return 0;
}

void vio_queue_free(struct vio_queue *q)
{
    if (!q)
        return;
    free(q->resubmit);
    free(q);
}

struct vio_drvq;
static int q_violation(struct vio_queue *q, enum vio_violation why, const char *detail);
static int d_violation(struct vio_drvq *q, enum vio_violation why, const char *detail);

/* Cold path for both sides: format the detail and break the queue. Kept out
 * of line so the hot callers carry no buffer and no formatting code. */
__attribute__((cold, noinline, format(printf, 4, 5))) static int
violationf(struct vio_queue *dq, struct vio_drvq *drv, enum vio_violation why, const char *fmt, ...)
{
    char detail[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return dq ? q_violation(dq, why, detail) : d_violation(drv, why, detail);
}
#define q_violationf(q, why, ...) violationf((q), NULL, (why), __VA_ARGS__)
#define d_violationf(q, why, ...) violationf(NULL, (q), (why), __VA_ARGS__)

/* Both sides: make the queue broken (sticky) and log the rule, once.
 * Returns true the first time. */
static bool break_once(bool *broken, enum vio_violation *slot, enum vio_violation why,
                       vio_log_fn log, void *opaque, const char *name, unsigned index,
                       const char *peer, const char *detail)
{
    if (*broken)
        return false;
    *broken = true;
    *slot = why;
    vio_logf(log, opaque, VIO_LOG_ERROR, name,
             "queue %s (index %u) broken by the %s: %s (%s); stopping the queue until reset", name,
             index, peer, vio_violation_name(why), detail);
    return true;
}

/* Device side: break, log, and tell the owner (transport sets NEEDS_RESET). */
static int q_violation(struct vio_queue *q, enum vio_violation why, const char *detail)
{
    if (break_once(&q->broken, &q->why, why, q->log, q->log_opaque, q->name, q->index, "driver",
                   detail) &&
        q->on_broken)
        q->on_broken(q->broken_opaque, q, why);
    return viol_errno(why);
}

static int q_map_rings(struct vio_queue *q, const struct vio_mem *mem)
{
    uint16_t num = q->num;
    /* Alignment rules of spec 2.7 (desc 16, avail 2, used 4). */
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
        return -EFAULT;
    void *d = vio_mem_ptr(mem, q->desc_gpa, 16u * (uint64_t)num, VIO_MEM_READ);
    /* the device reads the avail ring, including used_event */
    void *a = vio_mem_ptr(mem, q->avail_gpa, 6u + 2u * (uint64_t)num, VIO_MEM_READ);
    /* the device writes the used ring, including avail_event */
    void *u = vio_mem_ptr(mem, q->used_gpa, 6u + 8u * (uint64_t)num, VIO_MEM_WRITE);
    if (!d || !a || !u)
        return -EFAULT;
    /* The host mapping must keep the ring's alignment too (a region's host
     * pointer can be offset arbitrarily, e.g. by a vhost-user mmap_offset). */
    if (((uintptr_t)d & 15) || ((uintptr_t)a & 1) || ((uintptr_t)u & 3))
        return -EFAULT;
    q->mem = mem;
    q->desc = d;
    q->avail = a;
    q->used = u;
    return 0;
}

int vio_queue_setup(struct vio_queue *q, const struct vio_mem *mem, uint16_t size, uint64_t features,
                    uint64_t desc, uint64_t driver, uint64_t device)
{
    if (!q || !mem)
        return -EINVAL;
    if (!vio_is_pow2(size) || size > q->max_size)
        return -EINVAL;
    if (vio_has_feature(features, VIRTIO_F_RING_PACKED))
        return -EINVAL; /* packed layout: not implemented yet */
    vio_queue_reset(q);
    q->num = size;
    q->mask = (uint16_t)(size - 1);
    q->event_idx = vio_has_feature(features, VIRTIO_RING_F_EVENT_IDX);
    q->indirect = vio_has_feature(features, VIRTIO_RING_F_INDIRECT_DESC);
    q->in_order = vio_has_feature(features, VIRTIO_F_IN_ORDER);
    q->desc_gpa = desc;
    q->avail_gpa = driver;
    q->used_gpa = device;
    if (q_map_rings(q, mem) < 0) {
        char detail[96];
        snprintf(detail, sizeof(detail), "desc 0x%llx avail 0x%llx used 0x%llx size %u",
                 (unsigned long long)desc, (unsigned long long)driver,
                 (unsigned long long)device, size);
        q_violation(q, VIO_VIOL_RING_ADDRESS, detail);
        return -EFAULT;
    }
    q->used_idx = vio_ld16(&q->used->idx);
    q->last_avail = q->used_idx;
    q->shadow_avail = q->used_idx;
    /* A fresh ring: nothing is owed to the driver, so the used idx is an
     * exact "last signalled" point. (After vio_queue_set_last_avail() it is
     * not: a previous instance may have owed an interrupt.) */
    q->signalled_used = q->used_idx;
    q->signalled_used_valid = true;
    return 0;
}

void vio_queue_reset(struct vio_queue *q)
{
    if (!q)
        return;
    q->mem = NULL;
    q->num = 0;
    q->mask = 0;
    q->desc = NULL;
    q->avail = NULL;
    q->used = NULL;
    q->last_avail = q->shadow_avail = q->used_idx = 0;
    q->signalled_used = 0;
    q->signalled_used_valid = false;
    q->kicks_off = false;
    q->inflight = 0;
    q->infl = NULL;
    q->infl_counter = 0;
    q->resubmit_n = q->resubmit_pos = 0;
    q->log_bitmap = NULL;
    q->log_len = 0;
    q->broken = false;
    q->why = VIO_VIOL_NONE;
}

bool vio_queue_ready(const struct vio_queue *q)
{
    return q && q->num && !q->broken;
}

int vio_queue_remap(struct vio_queue *q, const struct vio_mem *mem)
{
    if (!q || !mem || !q->num)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    if (q_map_rings(q, mem) < 0) {
        /* The old mapping may be unmapped right after this: forget it. */
        q->desc = NULL;
        q->avail = NULL;
        q->used = NULL;
        return q_violation(q, VIO_VIOL_RING_ADDRESS, "ring not mapped after memory change");
    }
    return 0;
}

/* Read the driver's avail idx ([P1] acquire) and check it moved at most
 * queue-size entries past what the device consumed (spec 2.7.13.3 / rust-vmm
 * rule: more would mean the driver overwrote entries not yet consumed). */
static int q_refresh_avail(struct vio_queue *q)
{
    uint16_t idx = vio_ld_acq16(&q->avail->idx);
    if ((uint16_t)(idx - q->last_avail) > q->num)
        return q_violationf(q, VIO_VIOL_AVAIL_IDX, "avail idx %u, last seen %u, size %u", idx,
                            q->last_avail, q->num);
    q->shadow_avail = idx;
    return 0;
}

static void q_complete(struct vio_queue *q, uint16_t head, uint32_t len);

/* Read descriptor @i of an indirect table that is not contiguous in host
 * memory (it spans two regions): copy its 16 bytes piecewise. */
static int read_desc_scattered(const struct vio_mem *mem, uint64_t table, uint32_t i,
                               struct vio_desc_local *out)
{
    struct iovec iov[16]; /* 16 bytes span at most 16 regions */
    int n = vio_mem_translate(mem, table + 16u * (uint64_t)i, 16, VIO_MEM_READ, iov, 16);
    if (n < 0)
        return n;
    struct vring_desc raw;
    uint8_t *p = (uint8_t *)&raw;
    for (int k = 0; k < n; k++) {
        /* volatile byte copy: read the peer's bytes exactly once */
        const volatile uint8_t *s = iov[k].iov_base;
        for (size_t b = 0; b < iov[k].iov_len; b++)
            *p++ = s[b];
    }
    *out = vio_read_desc(&raw);
    return 0;
}

/* A descriptor table being walked: the ring's own, or an indirect one. */
struct desc_table {
    const struct vring_desc *host; /* NULL: not in one aligned host span, read piecewise */
    uint64_t gpa;                  /* guest address (used when host is NULL) */
    uint32_t size;                 /* entries */
};

/* The length rule of an indirect table (spec 2.7.5.3.1): whole descriptors, at least one,
 * and at most twice the largest queue (the bound rust-vmm and Linux use). */
static inline bool indirect_len_ok(uint32_t len)
{
    return len && !(len & 15) && len / 16 <= VIO_QUEUE_MAX_SIZE * 2u;
}

/* Enter the indirect table @p d names (its length checked by indirect_len_ok()). The driver
 * picks the address: a table inside one region whose host pointer is aligned for struct
 * vring_desc is read in place; otherwise (it may still be mapped across adjacent regions, or
 * misaligned) each entry is read piecewise and checked as it is read (an unmapped byte is an
 * address violation). */
static inline void desc_table_enter(const struct vio_mem *mem, const struct vio_desc_local *d,
                                    struct desc_table *t)
{
    const void *p = vio_mem_ptr(mem, d->addr, d->len, VIO_MEM_READ);
    t->host = (p && ((uintptr_t)p & (_Alignof(struct vring_desc) - 1)) == 0) ? p : NULL;
    t->gpa = d->addr;
    t->size = d->len / 16;
}

/* Read entry @p i (< t->size) of a table exactly once. Returns 0 or -errno (unmapped). */
static inline int desc_table_read(const struct vio_mem *mem, const struct desc_table *t,
                                  uint32_t i, struct vio_desc_local *d)
{
    if (t->host) {
        *d = vio_read_desc(&t->host[i]);
        return 0;
    }
    return read_desc_scattered(mem, t->gpa, i, d);
}

/* An avail entry (or a resubmitted chain) was consumed: advance and count it in flight. */
static inline void q_pop_advance(struct vio_queue *q, bool resubmitted)
{
    if (resubmitted)
        q->resubmit_pos++;
    else
        q->last_avail++;
    q->inflight++;
}

/* A chain was taken: advance, count it in flight, record it for inflight tracking. */
static inline void q_pop_commit(struct vio_queue *q, uint16_t head, bool resubmitted)
{
    q_pop_advance(q, resubmitted);
    if (q->infl) {
        /* Record the chain before the device acts on it. */
        struct vio_inflight_desc *rd = &q->infl->desc[head];
        rd->counter = ++q->infl_counter;
        atomic_store_explicit((_Atomic uint8_t *)&rd->inflight, 1, memory_order_release);
    }
}

/* The full validated chain walk of the chain at @p head (the head's range, chains, indirect
 * tables, spanning buffers): every rule a chain can break is checked here and only here. Out
 * of line: the fast path, q_pop_single(), stays small. */
__attribute__((noinline)) static int q_pop_walk(struct vio_queue *q, uint16_t head, bool resubmitted,
                                                struct vio_chain *chain, struct iovec *iov,
                                                unsigned iov_cap)
{
    /* Not a chain at all: nothing to give back (spec 2.7.6: heads index the table). */
    if (head >= q->num)
        return q_violationf(q, VIO_VIOL_HEAD_RANGE, "head %u, size %u", head, q->num);
    const uint64_t mem_gen = vio_mem_gen(q->mem);
    struct desc_table table = {.host = q->desc, .gpa = q->desc_gpa, .size = q->num};
    uint32_t i = head;
    uint32_t hops = 0;      /* descriptors visited in the current table */
    uint32_t ring_desc = 0; /* descriptors of the ring's own table this chain uses */
    bool in_indirect = false;
    bool seen_write = false;
    uint64_t out_len = 0, in_len = 0;
    unsigned niov = 0, n_out = 0;
    enum vio_violation why = VIO_VIOL_NONE;
    char detail[96]; /* written only on a violation path */

    for (;;) {
        /* Hop counter: a chain can visit each descriptor of its table at
         * most once, so more hops than entries means a loop (spec 2.7.5.3.1). */
        if (++hops > table.size) {
            why = VIO_VIOL_CHAIN_LOOP;
            snprintf(detail, sizeof(detail), "head %u: more than %u descriptors", head, table.size);
            break;
        }
        struct vio_desc_local d;
        if (desc_table_read(q->mem, &table, i, &d) < 0) {
            why = VIO_VIOL_ADDRESS;
            snprintf(detail, sizeof(detail), "head %u: indirect table unreadable", head);
            break;
        }
        if (!in_indirect)
            ring_desc++;

        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (!q->indirect) {
                why = VIO_VIOL_INDIRECT_FEATURE;
            } else if (in_indirect) {
                why = VIO_VIOL_INDIRECT_NESTED; /* spec 2.7.5.3.1: no nested tables */
            } else if (d.flags & VRING_DESC_F_NEXT) {
                why = VIO_VIOL_INDIRECT_NEXT; /* spec: INDIRECT and NEXT together */
            } else if (!indirect_len_ok(d.len)) {
                why = VIO_VIOL_INDIRECT_LEN;
            }
            if (why != VIO_VIOL_NONE) {
                snprintf(detail, sizeof(detail), "head %u desc %u: flags 0x%x len %u", head, i,
                         d.flags, d.len);
                break;
            }
            desc_table_enter(q->mem, &d, &table);
            in_indirect = true;
            i = 0;
            hops = 0;
            continue;
        }

        bool wr = d.flags & VRING_DESC_F_WRITE;
        if (wr) {
            if (q->dir == VIO_QUEUE_DIR_OUT_ONLY)
                why = VIO_VIOL_DIRECTION;
            seen_write = true;
        } else if (seen_write) {
            why = VIO_VIOL_ORDER; /* spec 2.7.4: device-writable after device-readable only */
        } else if (q->dir == VIO_QUEUE_DIR_IN_ONLY) {
            why = VIO_VIOL_DIRECTION;
        }
        if (why != VIO_VIOL_NONE) {
            snprintf(detail, sizeof(detail), "head %u desc %u: %s descriptor", head, i,
                     wr ? "writable" : "readable");
            break;
        }
        if (wr)
            in_len += d.len;
        else
            out_len += d.len;
        if (out_len + in_len > UINT32_MAX) {
            why = VIO_VIOL_TOTAL_LEN;
            snprintf(detail, sizeof(detail), "head %u: total length over 4 GiB", head);
            break;
        }
        if (d.len) {
            if (niov >= iov_cap)
                return -ENOBUFS; /* caller's array too small; nothing consumed */
            int n;
            if (vio_mem_hint_translate(&q->hint, mem_gen, d.addr, d.len, wr, &iov[niov])) {
                n = 1;
            } else {
                n = vio_mem_translate(q->mem, d.addr, d.len, wr ? VIO_MEM_WRITE : VIO_MEM_READ,
                                      iov + niov, iov_cap - niov);
                if (n > 0)
                    vio_mem_hint_fill(q->mem, d.addr + d.len - 1, &q->hint);
            }
            if (n == -ENOBUFS)
                return -ENOBUFS;
            if (n < 0) {
                why = VIO_VIOL_ADDRESS;
                snprintf(detail, sizeof(detail), "head %u desc %u: 0x%llx+%u not mapped%s", head, i,
                         (unsigned long long)d.addr, d.len, wr ? " writable" : "");
                break;
            }
            niov += (unsigned)n;
            if (!wr)
                n_out = niov;
        }
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        if (d.next >= table.size) {
            why = VIO_VIOL_NEXT_RANGE;
            snprintf(detail, sizeof(detail), "head %u desc %u: next %u, table size %u", head, i,
                     d.next, table.size);
            break;
        }
        i = d.next;
    }

    if (why != VIO_VIOL_NONE) {
        /* Give the malformed chain back with length 0 so the driver can
         * reclaim it, then stop the queue. */
        q_pop_advance(q, resubmitted);
        q_complete(q, head, 0);
        return q_violation(q, why, detail);
    }

    q_pop_commit(q, head, resubmitted);
    chain->head = head;
    chain->ndesc = (uint16_t)ring_desc;
    chain->n_out = n_out;
    chain->n_in = niov - n_out;
    chain->out_len = (uint32_t)out_len;
    chain->in_len = (uint32_t)in_len;
    return 0;
}

/* The fast path, shared by the single and the burst pops: a chain that is one direct
 * descriptor with a non-zero length, in the queue's direction, whose buffer lies in the region
 * the previous buffer hit, is taken without the walk (one iovec at @p iov). It raises nothing:
 * for anything else (a head out of range included) it returns false having changed nothing,
 * and q_pop_walk() then reads and checks the chain itself, with every rule. */
__attribute__((always_inline)) static inline bool
q_pop_single(struct vio_queue *q, uint16_t head, bool resubmitted, uint64_t mem_gen,
             struct vio_chain *chain, struct iovec *iov)
{
    if (head >= q->num)
        return false;
    struct vio_desc_local d = vio_read_desc(&q->desc[head]);
    bool wr = d.flags & VRING_DESC_F_WRITE;
    if ((d.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) || !d.len ||
        q->dir == (wr ? VIO_QUEUE_DIR_OUT_ONLY : VIO_QUEUE_DIR_IN_ONLY) ||
        !vio_mem_hint_translate(&q->hint, mem_gen, d.addr, d.len, wr, iov))
        return false;
    q_pop_commit(q, head, resubmitted);
    chain->head = head;
    chain->ndesc = 1;
    chain->n_out = wr ? 0 : 1;
    chain->n_in = wr ? 1 : 0;
    chain->out_len = wr ? 0 : d.len;
    chain->in_len = wr ? d.len : 0;
    return true;
}

/* Pop one chain (the caller checked the arguments and that the queue runs).
 * Shared by the single and the burst entry points. */
__attribute__((always_inline)) static inline int q_pop_one(struct vio_queue *q, struct vio_chain *chain,
                                                           struct iovec *iov, unsigned iov_cap)
{
    /* A driver cannot legitimately make more chains available than the queue
     * holds: with num chains held by the device it has no free descriptor left,
     * so more means it republished heads still in flight. */
    if (q->inflight >= q->num) {
        if (q->last_avail == q->shadow_avail) {
            int r = q_refresh_avail(q);
            if (r < 0)
                return r;
            if (q->last_avail == q->shadow_avail)
                return -EAGAIN;
        }
        return q_violationf(q, VIO_VIOL_AVAIL_IDX,
                            "more than %u chains in flight: heads reused while in flight", q->num);
    }
    uint16_t head;
    bool resubmitted = q->resubmit_pos < q->resubmit_n;
    if (resubmitted) {
        /* A previous instance's chains in flight come first (inflight tracking). */
        head = q->resubmit[q->resubmit_pos].head;
    } else {
        if (q->last_avail == q->shadow_avail) {
            int r = q_refresh_avail(q);
            if (r < 0)
                return r;
            if (q->last_avail == q->shadow_avail)
                return -EAGAIN;
        }
        /* The ring entry was written before the driver's release of avail->idx [P1]. */
        head = vio_ld16(&q->avail->ring[q->last_avail & q->mask]);
    }
    if (iov_cap && q_pop_single(q, head, resubmitted, vio_mem_gen(q->mem), chain, iov))
        return 0;
    return q_pop_walk(q, head, resubmitted, chain, iov, iov_cap);
}

int vio_queue_pop(struct vio_queue *q, struct vio_chain *chain, struct iovec *iov, unsigned iov_cap)
{
    if (!q || !chain || (!iov && iov_cap))
        return -EINVAL;
    if (!q->num || q->broken)
        return -EIO;
    return q_pop_one(q, chain, iov, iov_cap);
}

int vio_queue_pop_burst(struct vio_queue *q, struct vio_chain *chains, unsigned max,
                        struct iovec *iov, unsigned iov_cap)
{
    if (!q || (max && (!chains || !iov)))
        return -EINVAL;
    if (!q->num || q->broken)
        return -EIO;
    unsigned n = 0, used = 0;
    int why = -EAGAIN;
    if (max > 1 && q->resubmit_pos >= q->resubmit_n) {
        /* Burst fast path: the chains the driver published, as far as they fit in the
         * queue's room and in @p iov, taken by q_pop_single() as q_pop_one() takes them.
         * What q_pop_one() checks before that holds for the whole burst: the avail idx is
         * read once, and ready <= room keeps every pop under the in-flight limit. The first
         * chain q_pop_single() declines ends the fast path; q_pop_one() below takes it (and
         * raises whatever rule it breaks). */
        if (q->last_avail == q->shadow_avail) {
            int r = q_refresh_avail(q);
            if (r < 0)
                return r;
        }
        unsigned ready = (uint16_t)(q->shadow_avail - q->last_avail);
        unsigned room = q->inflight < q->num ? q->num - q->inflight : 0;
        if (ready > room)
            ready = room;
        if (ready > max)
            ready = max;
        if (ready > iov_cap)
            ready = iov_cap;
        const uint64_t mem_gen = vio_mem_gen(q->mem);
        const uint16_t mask = q->mask, num = q->num;
        const uint16_t *ring = q->avail->ring;
        const struct vring_desc *desc = q->desc;
        /* Start every descriptor's transfer before the first is checked: each check
         * depends on its descriptor, so read one by one they would wait for the driver's
         * core a few at a time. */
        for (unsigned k = 0; k < ready; k++) {
            uint16_t h = vio_ld16(&ring[(uint16_t)(q->last_avail + k) & mask]);
            if (h < num)
                __builtin_prefetch(&desc[h]);
        }
        while (n < ready) {
            /* The ring entry was written before the driver's release of avail->idx [P1]. */
            uint16_t head = vio_ld16(&ring[q->last_avail & mask]);
            if (!q_pop_single(q, head, false, mem_gen, &chains[n], &iov[n]))
                break;
            n++;
        }
        used = n;
    }
    while (n < max) {
        int r = q_pop_one(q, &chains[n], iov + used, iov_cap - used);
        if (r < 0) {
            /* -EAGAIN: nothing more; -ENOBUFS: the rest of the array is too small (nothing
             * consumed); a violation: collected chains first, the next call sees -EIO */
            why = r;
            break;
        }
        used += chains[n].n_out + chains[n].n_in;
        n++;
    }
    /* Report the stopping reason only when nothing was taken: never pop again here (a
     * chain arriving meanwhile would be consumed and lost). */
    return n ? (int)n : (max ? why : 0);
}

int vio_queue_rewind(struct vio_queue *q, uint16_t n)
{
    if (!q || !q->num)
        return -EINVAL;
    if (n > q->inflight)
        return -EINVAL;
    /* Pops were: resubmitted chains first, then ring chains; undo from the end. */
    uint16_t from_ring = n;
    if (q->resubmit_pos) {
        uint16_t ring_pops = (uint16_t)(q->last_avail - q->resubmit_base);
        if (n > ring_pops) {
            uint16_t rs = (uint16_t)(n - ring_pops);
            if (rs > q->resubmit_pos)
                return -EINVAL;
            q->resubmit_pos = (uint16_t)(q->resubmit_pos - rs);
            from_ring = ring_pops;
        }
    }
    q->last_avail = (uint16_t)(q->last_avail - from_ring);
    q->inflight -= n;
    return 0;
}

static inline void q_log(struct vio_queue *q, uint64_t off, uint64_t len)
{
    if (q->log_bitmap)
        vio_dirty_log_mark(q->log_bitmap, q->log_len, q->log_used_gpa + off, len);
}

/* Publish used entries written so far ([P2] release) and keep event-idx
 * bookkeeping right when the used idx runs past the last signalled value. */
static void q_publish_used(struct vio_queue *q, uint16_t old)
{
    vio_st_rel16(&q->used->idx, q->used_idx);
    q_log(q, offsetof(struct vring_used, idx), sizeof(uint16_t));
    if ((int16_t)(q->used_idx - q->signalled_used) < (uint16_t)(q->used_idx - old))
        q->signalled_used_valid = false;
}

static inline void q_put_used(struct vio_queue *q, uint16_t slot, uint32_t id, uint32_t len)
{
    struct vring_used_elem *e = &q->used->ring[slot & q->mask];
    e->id = htole32(id);
    e->len = htole32(len);
    q_log(q, offsetof(struct vring_used, ring) + sizeof(*e) * (uint64_t)(slot & q->mask), sizeof(*e));
}

/* Dirty log (LOG_ALL): mark the guest pages of the first @len bytes of the
 * chain's writable part. The chain is walked again from the ring, bounded
 * exactly like pop's walk (hop counter, one level of indirection); its
 * addresses are only turned into bits of the log, never dereferenced, so a
 * driver that rewrote the chain meanwhile can only cause extra dirty bits. */
__attribute__((noinline)) static void q_log_chain(struct vio_queue *q, uint16_t head, uint32_t len)
{
    struct desc_table table = {.host = q->desc, .gpa = q->desc_gpa, .size = q->num};
    bool in_indirect = false;
    uint32_t i = head, hops = 0;
    while (len && i < table.size && ++hops <= table.size) {
        struct vio_desc_local d;
        if (desc_table_read(q->mem, &table, i, &d) < 0)
            return;
        if ((d.flags & VRING_DESC_F_INDIRECT) && !in_indirect) {
            /* the same table rules as pop: the driver may have rewritten the
             * chain since, so nothing here may trust what pop accepted */
            if (!indirect_len_ok(d.len))
                return;
            desc_table_enter(q->mem, &d, &table);
            i = 0;
            hops = 0;
            in_indirect = true;
            continue;
        }
        if (d.flags & VRING_DESC_F_WRITE) {
            uint32_t n = d.len < len ? d.len : len;
            vio_dirty_log_mark(q->log_bitmap, q->log_len, d.addr, n);
            len -= n;
        }
        if (!(d.flags & VRING_DESC_F_NEXT))
            return;
        i = d.next;
    }
}

/* Complete one chain: used entry, used idx, and with inflight tracking the
 * libvhost-user compatible sequence (last_batch_head before publishing, the
 * chain's flag and the region's used_idx after) so a crash at any point is
 * recoverable by vio_queue_set_inflight(). */
static void q_complete(struct vio_queue *q, uint16_t head, uint32_t len)
{
    uint16_t old = q->used_idx;
    if (q->log_bitmap && len)
        q_log_chain(q, head, len);
    if (q->infl) {
        /* spec steps 2-3: link the chain into the last-batch list */
        q->infl->desc[head].next = q->infl->last_batch_head;
        q->infl->last_batch_head = head;
    }
    q_put_used(q, old, head, len);
    q->used_idx = (uint16_t)(old + 1);
    if (q->inflight)
        q->inflight--;
    q_publish_used(q, old);
    if (q->infl) {
        atomic_store_explicit((_Atomic uint8_t *)&q->infl->desc[head].inflight, 0,
                              memory_order_release);
        atomic_store_explicit((_Atomic uint16_t *)&q->infl->used_idx, q->used_idx,
                              memory_order_release);
    }
}

int vio_queue_push(struct vio_queue *q, uint16_t head, uint32_t len)
{
    if (!q)
        return -EINVAL;
    if (!q->num || q->broken)
        return -EIO;
    if (head >= q->num)
        return -EINVAL;
    q_complete(q, head, len);
    return 0;
}

int vio_queue_push_batch(struct vio_queue *q, const struct vio_used_elem *elems, unsigned n)
{
    if (!q || (n && !elems))
        return -EINVAL;
    if (!q->num || q->broken)
        return -EIO;
    if (n > q->num)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (q->infl || q->log_bitmap) {
        for (unsigned k = 0; k < n; k++)
            if (elems[k].id >= q->num)
                return -EINVAL;
        for (unsigned k = 0; k < n; k++)
            q_complete(q, (uint16_t)elems[k].id, elems[k].len);
        return 0;
    }
    uint16_t old = q->used_idx;
    struct vring_used_elem *ring = q->used->ring;
    for (unsigned k = 0; k < n; k++) {
        /* Entries past used->idx are invisible to the driver until the store below: a bad
         * id found half-way leaves nothing published. */
        if (elems[k].id >= q->num)
            return -EINVAL;
        struct vring_used_elem *e = &ring[(uint16_t)(old + k) & q->mask];
        e->id = htole32(elems[k].id);
        e->len = htole32(elems[k].len);
    }
    q->used_idx = (uint16_t)(old + n);
    q->inflight = q->inflight > n ? q->inflight - n : 0;
    q_publish_used(q, old);
    return 0;
}

int vio_queue_push_in_order(struct vio_queue *q, uint16_t last_head, uint32_t last_len,
                            uint16_t count)
{
    if (!q)
        return -EINVAL;
    if (!q->num || q->broken)
        return -EIO;
    if (!q->in_order || q->infl || q->log_bitmap)
        return -ENOTSUP; /* per-chain bookkeeping needs each chain's completion */
    if (count == 0 || count > q->num || last_head >= q->num)
        return -EINVAL;
    /* Spec 2.7.9: one entry, at the slot of the batch's first buffer, naming
     * the batch's last buffer; the used idx advances by the batch size. */
    uint16_t old = q->used_idx;
    q_put_used(q, old, last_head, last_len);
    q->used_idx = (uint16_t)(old + count);
    q->inflight = q->inflight > count ? q->inflight - count : 0;
    q_publish_used(q, old);
    return 0;
}

bool vio_queue_needs_notify(struct vio_queue *q)
{
    if (!q || !q->num || q->broken)
        return false;
    uint16_t old = q->signalled_used;
    uint16_t new = q->used_idx;
    bool valid = q->signalled_used_valid;
    if (valid && old == new)
        return false; /* nothing pushed since the last decision (a polling caller: no fence) */
    q->signalled_used = new;
    q->signalled_used_valid = true;
    /* [P4] the used idx store must be visible before we read the driver's
     * used_event / flags; pairs with the fence in the driver's enable_cb. */
    vio_mb();
    if (!q->event_idx)
        return !(vio_ld16(&q->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    uint16_t event = vio_ld16(avail_used_event(q->avail, q->num));
    return !valid || vring_need_event(event, new, old);
}

bool vio_queue_enable_notify(struct vio_queue *q)
{
    if (!q || !q->num || q->broken)
        return false;
    if (q->event_idx) {
        vio_st16(used_avail_event(q->used, q->num), q->shadow_avail);
        q_log(q, offsetof(struct vring_used, ring) + 8u * (uint64_t)q->num, sizeof(uint16_t));
    } else {
        vio_st16(&q->used->flags, 0);
        q_log(q, offsetof(struct vring_used, flags), sizeof(uint16_t));
        q->kicks_off = false;
    }
    /* [P3] publish our wish for kicks before re-reading avail->idx; pairs
     * with the fence in the driver's kick_prepare. Without it a buffer added
     * between our last check and the store above could go unnoticed. */
    vio_mb();
    if (q_refresh_avail(q) < 0)
        return false;
    return q->shadow_avail != q->last_avail;
}

void vio_queue_disable_notify(struct vio_queue *q)
{
    if (!q || !q->num || q->broken)
        return;
    /* With event idx the driver only kicks when passing avail_event, which
     * we stop moving: nothing to write. Without it, write the flag only when
     * it changes: a polling device calls this every round, and a store of the
     * same value still takes the cache line away from the driver. */
    if (!q->event_idx && !q->kicks_off) {
        vio_st16(&q->used->flags, VRING_USED_F_NO_NOTIFY);
        q_log(q, offsetof(struct vring_used, flags), sizeof(uint16_t));
        q->kicks_off = true;
    }
}

bool vio_queue_has_avail(struct vio_queue *q)
{
    if (!q || !q->num || q->broken)
        return false;
    if (q->last_avail != q->shadow_avail)
        return true;
    if (q_refresh_avail(q) < 0)
        return false;
    return q->last_avail != q->shadow_avail;
}

size_t vio_queue_inflight_size(uint16_t size)
{
    return sizeof(struct vio_inflight_split) + sizeof(struct vio_inflight_desc) * (size_t)size;
}

/* In-place heap sort of the resubmit list by counter (no allocation: qsort may malloc). */
static void resubmit_sift(struct vio_resubmit *a, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && a[l].counter > a[m].counter)
            m = l;
        if (l + 1 < n && a[l + 1].counter > a[m].counter)
            m = l + 1;
        if (m == i)
            return;
        struct vio_resubmit t = a[i];
        a[i] = a[m];
        a[m] = t;
        i = m;
    }
}

static void resubmit_sort(struct vio_resubmit *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        resubmit_sift(a, n, i);
    for (size_t end = n; end > 1; end--) {
        struct vio_resubmit t = a[0];
        a[0] = a[end - 1];
        a[end - 1] = t;
        resubmit_sift(a, end - 1, 0);
    }
}

int vio_queue_set_inflight(struct vio_queue *q, void *region, size_t len)
{
    if (!q || !q->num)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    if (!region) {
        q->infl = NULL;
        q->resubmit_n = q->resubmit_pos = 0;
        return 0;
    }
    if (len < vio_queue_inflight_size(q->num) ||
        ((uintptr_t)region & (_Alignof(struct vio_inflight_split) - 1)))
        return -EINVAL;
    struct vio_inflight_split *r = region;
    q->resubmit_n = q->resubmit_pos = 0;
    q->infl_counter = 0;
    if (r->version == 0) {
        memset(r, 0, vio_queue_inflight_size(q->num));
        r->version = 1;
        r->desc_num = q->num;
        r->used_idx = q->used_idx;
        q->infl = r;
        return 0;
    }
    if (r->desc_num != q->num)
        return -EINVAL;
    /* Crash between publishing a completion and clearing its flag: the
     * region's used_idx lags the ring's; the completion was last_batch_head. */
    uint16_t ring_used = vio_ld16(&q->used->idx);
    if (r->used_idx != ring_used) {
        /* The last batch was published but its flags may not all be
         * cleared: walk the batch list (bounded by its size and the queue). */
        uint16_t batch = (uint16_t)(ring_used - r->used_idx);
        uint16_t h = r->last_batch_head;
        for (uint32_t k = 0; k < batch && k < q->num && h < q->num; k++) {
            r->desc[h].inflight = 0;
            h = r->desc[h].next;
        }
    }
    r->used_idx = ring_used;
    uint16_t n = 0;
    uint64_t maxc = 0;
    for (uint16_t h = 0; h < q->num; h++) {
        if (!r->desc[h].inflight)
            continue;
        r->desc[h].inflight = 1;
        q->resubmit[n].head = h;
        q->resubmit[n].counter = r->desc[h].counter;
        if (r->desc[h].counter > maxc)
            maxc = r->desc[h].counter;
        n++;
    }
    resubmit_sort(q->resubmit, n);
    q->resubmit_n = n;
    q->infl_counter = maxc;
    q->used_idx = ring_used;
    q->last_avail = q->shadow_avail = (uint16_t)(ring_used + n);
    q->resubmit_base = q->last_avail;
    q->inflight = 0;
    q->signalled_used_valid = false;
    q->infl = r;
    return n;
}

int vio_queue_set_dirty_log(struct vio_queue *q, void *bitmap, uint64_t len, uint64_t used_gpa)
{
    if (!q || !q->num)
        return -EINVAL;
    q->log_bitmap = len ? bitmap : NULL;
    q->log_len = bitmap ? len : 0;
    q->log_used_gpa = used_gpa;
    return 0;
}

void vio_dirty_log_mark(void *bitmap, uint64_t bitmap_len, uint64_t gpa, uint64_t len)
{
    if (!bitmap || !len)
        return;
    uint64_t first = gpa / 4096u;
    uint64_t last = (gpa + len - 1 < gpa) ? UINT64_MAX / 4096u : (gpa + len - 1) / 4096u;
    uint64_t pages = bitmap_len * 8u;
    _Atomic uint8_t *b = bitmap;
    for (uint64_t pg = first; pg <= last && pg < pages; pg++)
        atomic_fetch_or_explicit(&b[pg / 8], (uint8_t)(1u << (pg % 8)), memory_order_relaxed);
}

uint16_t vio_queue_get_last_avail(const struct vio_queue *q)
{
    return q ? q->last_avail : 0;
}

int vio_queue_set_last_avail(struct vio_queue *q, uint16_t idx)
{
    if (!q || !q->num || q->broken)
        return -EIO;
    q->last_avail = idx;
    q->shadow_avail = idx;
    q->used_idx = vio_ld16(&q->used->idx);
    q->inflight = 0;
    q->signalled_used_valid = false;
    return 0;
}

uint16_t vio_queue_get_used_idx(const struct vio_queue *q)
{
    return q ? q->used_idx : 0;
}

int vio_queue_get_ring_state(const struct vio_queue *q, struct vio_queue_ring_state *out)
{
    if (!q || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (!q->num || !q->avail || !q->used)
        return 0;
    out->size = q->num;
    out->event_idx = q->event_idx;
    out->broken = q->broken;
    out->last_avail = q->last_avail;
    out->shadow_avail = q->shadow_avail;
    out->used_idx = q->used_idx;
    out->signalled_used = q->signalled_used;
    out->signalled_used_valid = q->signalled_used_valid;
    out->inflight = q->inflight;
    out->avail_idx = vio_ld16(&q->avail->idx);
    out->avail_flags = vio_ld16(&q->avail->flags);
    out->used_event = vio_ld16(avail_used_event(q->avail, q->num));
    out->ring_used_idx = vio_ld16(&q->used->idx);
    out->used_flags = vio_ld16(&q->used->flags);
    out->avail_event = vio_ld16(used_avail_event(q->used, q->num));
    return 0;
}

uint16_t vio_queue_size(const struct vio_queue *q)
{
    return q ? q->num : 0;
}

uint16_t vio_queue_index(const struct vio_queue *q)
{
    return q ? q->index : 0;
}

bool vio_queue_is_broken(const struct vio_queue *q)
{
    return q && q->broken;
}

enum vio_violation vio_queue_violation(const struct vio_queue *q)
{
    return q ? q->why : VIO_VIOL_NONE;
}

/* ------------------------------------------------------------------------ */
/* Driver side                                                               */

struct drv_buf {
    void *token;      /* NULL: slot not in flight */
    uint32_t in_len;  /* writable bytes (for used len checks / in-order skips) */
    uint16_t ndesc;   /* ring descriptors used */
    uint16_t last;    /* last ring descriptor of the chain */
    uint64_t seq;       /* add sequence number; its low 16 bits are the avail position */
};

/* The driver side's free list and ring positions, and the pointers the data path uses with
 * them. The single entry points work on the queue's own copy; the burst loops take a copy in
 * locals (struct d_state s = q->st) and write back what they changed with d_put_add() or
 * d_put_used(): stores into the rings (16-bit, like the indices) would otherwise force the
 * compiler to reload every index from the queue after each write. Both run the same helpers. */
struct d_state {
    struct vring_desc *desc;
    uint16_t *avail_ring;
    /* Private copies: the device can scribble over shared memory, so the
     * free list and per-buffer state never live there. */
    uint16_t *next;
    struct drv_buf *bufs;
    uint16_t *order; /* in-order: head at each avail position; NULL otherwise */
    uint16_t mask;
    uint16_t free_head, free_tail, num_free;
    uint16_t avail_idx;     /* next avail slot to fill */
    uint16_t last_used;     /* next used slot to read */
    uint64_t seq_added;     /* buffers ever added (low 16 bits == avail_idx) */
    uint64_t seq_published; /* buffers ever published: seq >= this means not yet visible */
};

struct vio_drvq {
    struct d_state st;
    uint16_t num, index;
    char name[32];
    bool event_idx, indirect, in_order;
    vio_log_fn log;
    void *log_opaque;

    struct vring_avail *avail;
    struct vring_used *used;
    struct vring_desc *ind_host; /* indirect pool, num * ind_max entries */
    uint64_t ind_gpa;
    uint16_t ind_max;

    uint16_t avail_published; /* avail->idx as last published */
    uint16_t used_seen;       /* used->idx as last read (validated) */

    /* in-order batch being returned */
    uint16_t batch_last;
    uint32_t batch_len;
    bool batch_active;

    uint16_t detach_cursor;
    bool broken;
    enum vio_violation why;
};

static int d_violation(struct vio_drvq *q, enum vio_violation why, const char *detail)
{
    break_once(&q->broken, &q->why, why, q->log, q->log_opaque, q->name, q->index, "device",
               detail);
    return viol_errno(why);
}

void vio_drvq_free(struct vio_drvq *q)
{
    if (!q)
        return;
    free(q->st.next);
    free(q->st.bufs);
    free(q->st.order);
    free(q);
}

int vio_drvq_new(const struct vio_drvq_config *cfg, struct vio_drvq **out)
{
    if (!cfg || !out || cfg->struct_size < sizeof(*cfg) || !cfg->mem)
        return -EINVAL;
    uint16_t num = cfg->size;
    if (!vio_is_pow2(num) || num > VIO_QUEUE_MAX_SIZE)
        return -EINVAL;
    if (vio_has_feature(cfg->features, VIRTIO_F_RING_PACKED))
        return -EINVAL;
    if ((cfg->desc & 15) || (cfg->driver & 1) || (cfg->device & 3))
        return -EFAULT;
    void *d = vio_mem_ptr(cfg->mem, cfg->desc, 16u * (uint64_t)num, VIO_MEM_WRITE);
    void *a = vio_mem_ptr(cfg->mem, cfg->driver, 6u + 2u * (uint64_t)num, VIO_MEM_WRITE);
    void *u = vio_mem_ptr(cfg->mem, cfg->device, 6u + 8u * (uint64_t)num, VIO_MEM_READ);
    if (!d || !a || !u)
        return -EFAULT;
    if (((uintptr_t)d & 15) || ((uintptr_t)a & 1) || ((uintptr_t)u & 3))
        return -EFAULT;
    void *ind = NULL;
    if (cfg->indirect_pool) {
        if (!cfg->indirect_max || (cfg->indirect_pool & 15))
            return -EINVAL;
        ind = vio_mem_ptr(cfg->mem, cfg->indirect_pool,
                          16u * (uint64_t)num * cfg->indirect_max, VIO_MEM_WRITE);
        if (!ind || ((uintptr_t)ind & 15))
            return -EFAULT;
    }

    struct vio_drvq *q = cl_calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->in_order = vio_has_feature(cfg->features, VIRTIO_F_IN_ORDER);
    q->st.next = cl_calloc(num, sizeof(*q->st.next));
    q->st.bufs = cl_calloc(num, sizeof(*q->st.bufs));
    if (q->in_order)
        q->st.order = cl_calloc(num, sizeof(*q->st.order));
    if (!q->st.next || !q->st.bufs || (q->in_order && !q->st.order)) {
        vio_drvq_free(q);
        return -ENOMEM;
    }
    q->num = num;
    q->st.mask = (uint16_t)(num - 1);
    q->index = cfg->index;
    set_name(q->name, sizeof(q->name), cfg->name, "drvq", cfg->index);
    q->event_idx = vio_has_feature(cfg->features, VIRTIO_RING_F_EVENT_IDX);
    q->indirect = vio_has_feature(cfg->features, VIRTIO_RING_F_INDIRECT_DESC) && ind;
    q->log = cfg->log;
    q->log_opaque = cfg->log_opaque;
    q->st.desc = d;
    q->st.avail_ring = ((struct vring_avail *)a)->ring;
    q->avail = a;
    q->used = u;
    q->ind_host = ind;
    q->ind_gpa = cfg->indirect_pool;
    q->ind_max = cfg->indirect_max;

    /* Fresh ring: zero indices, flags and event fields. */
    memset(d, 0, 16u * (size_t)num);
    memset(a, 0, 6u + 2u * (size_t)num);
    memset(u, 0, 6u + 8u * (size_t)num);
    for (uint16_t k = 0; k + 1 < num; k++)
        q->st.next[k] = (uint16_t)(k + 1);
    q->st.next[num - 1] = 0;
    q->st.free_head = 0;
    q->st.free_tail = (uint16_t)(num - 1);
    q->st.num_free = num;
    *out = q;
    return 0;
}

/* Write back what adding buffers changes. */
__attribute__((always_inline)) static inline void d_put_add(struct vio_drvq *q, const struct d_state *s)
{
    q->st.free_head = s->free_head;
    q->st.num_free = s->num_free;
    q->st.avail_idx = s->avail_idx;
    q->st.seq_added = s->seq_added;
}

/* Write back what collecting (or detaching) buffers changes. */
__attribute__((always_inline)) static inline void d_put_used(struct vio_drvq *q, const struct d_state *s)
{
    q->st.free_head = s->free_head;
    q->st.free_tail = s->free_tail;
    q->st.num_free = s->num_free;
    q->st.last_used = s->last_used;
}

/* Caller rule for every segment: a buffer of zero bytes is a caller bug (-EINVAL). */
static inline bool d_seg_ok(const struct vio_sg *sg)
{
    return sg->len != 0;
}

/* Room rule: a buffer needing @p need ring descriptors fits (else -ENOSPC). */
static inline bool d_room(uint16_t num_free, unsigned need)
{
    return num_free >= need;
}

/* Return a chain's descriptors to the free list. In-order queues append at
 * the tail so descriptors are reused in ring order; others push at the
 * head (the most recently used descriptors are the warmest in cache). */
__attribute__((always_inline)) static inline void d_free_chain(struct d_state *s, unsigned head,
                                                               bool in_order)
{
    struct drv_buf *b = &s->bufs[head];
    uint16_t last = b->last;
    if (s->num_free == 0) {
        s->free_head = (uint16_t)head;
        s->free_tail = last;
    } else if (in_order) {
        s->next[s->free_tail] = (uint16_t)head;
        s->free_tail = last;
    } else {
        s->next[last] = s->free_head;
        s->free_head = (uint16_t)head;
    }
    s->num_free = (uint16_t)(s->num_free + b->ndesc);
    b->token = NULL;
}

/* Record a new buffer and put its head on the avail ring (not yet published). */
__attribute__((always_inline)) static inline void d_commit(struct d_state *s, uint16_t head,
                                                           uint16_t last, uint16_t need,
                                                           uint32_t in_len, void *token)
{
    struct drv_buf *b = &s->bufs[head];
    b->token = token;
    b->in_len = in_len;
    b->ndesc = need;
    b->last = last;
    b->seq = s->seq_added++;
    uint16_t slot = s->avail_idx & s->mask;
    if (s->order)
        s->order[slot] = head;
    s->avail_ring[slot] = htole16(head);
    s->avail_idx++;
    s->num_free = (uint16_t)(s->num_free - need);
}

/* Add a one-segment buffer as a single direct descriptor (the caller checked the segment and
 * that a descriptor is free). */
__attribute__((always_inline)) static inline void d_add_direct(struct d_state *s,
                                                               const struct vio_sg *sg,
                                                               uint16_t flags, void *token)
{
    uint16_t head = s->free_head;
    vio_write_desc(&s->desc[head], sg->addr, sg->len, flags, 0);
    s->free_head = s->next[head];
    d_commit(s, head, head, 1, (flags & VRING_DESC_F_WRITE) ? sg->len : 0, token);
}

/* Add a buffer of several segments: a chain of ring descriptors, or one indirect table. Out of
 * line: the one-segment path in vio_drvq_add() stays small. */
__attribute__((noinline)) static int d_add_chain(struct vio_drvq *q, const struct vio_sg *sg,
                                                 unsigned n_out, unsigned total, void *token)
{
    /* Caller errors first (before -ENOSPC), so the answer does not depend on ring state. */
    uint64_t in_len = 0;
    for (unsigned k = 0; k < total; k++) {
        if (!d_seg_ok(&sg[k]))
            return -EINVAL;
        if (k >= n_out)
            in_len += sg[k].len;
    }
    if (in_len > UINT32_MAX)
        return -EINVAL;
    bool use_ind = q->indirect && total <= q->ind_max;
    unsigned need = use_ind ? 1 : total;
    if (need > q->num)
        return -EINVAL;
    if (!d_room(q->st.num_free, need))
        return -ENOSPC;

    struct d_state *s = &q->st;
    uint16_t head = s->free_head;
    uint16_t i = head, last = head;
    struct vring_desc *t = use_ind ? q->ind_host + (size_t)head * q->ind_max : NULL;
    for (unsigned k = 0; k < total; k++) {
        bool wr = k >= n_out;
        uint16_t fl = (uint16_t)((wr ? VRING_DESC_F_WRITE : 0) |
                                 (k + 1 < total ? VRING_DESC_F_NEXT : 0));
        if (use_ind) {
            vio_write_desc(&t[k], sg[k].addr, sg[k].len, fl, (uint16_t)(k + 1 < total ? k + 1 : 0));
        } else {
            vio_write_desc(&s->desc[i], sg[k].addr, sg[k].len, fl, s->next[i]);
            last = i;
            i = s->next[i];
        }
    }
    if (use_ind) {
        uint64_t tgpa = q->ind_gpa + 16u * (uint64_t)head * q->ind_max;
        vio_write_desc(&s->desc[head], tgpa, 16u * total, VRING_DESC_F_INDIRECT, 0);
        i = s->next[head];
    }
    s->free_head = i;
    d_commit(s, head, last, (uint16_t)need, (uint32_t)in_len, token);
    return 0;
}

int vio_drvq_add(struct vio_drvq *q, const struct vio_sg *sg, unsigned n_out, unsigned n_in,
                 void *token)
{
    if (!q || !sg || !token)
        return -EINVAL;
    unsigned total = n_out + n_in;
    if (total == 0 || total < n_out || total > 65535u)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    if (total > 1)
        return d_add_chain(q, sg, n_out, total, token);

    /* One segment, one descriptor: the common case, no loops. */
    if (!d_seg_ok(&sg[0]))
        return -EINVAL;
    if (!d_room(q->st.num_free, 1))
        return -ENOSPC;
    d_add_direct(&q->st, &sg[0], n_in ? VRING_DESC_F_WRITE : 0, token);
    return 0;
}

int vio_drvq_add_burst(struct vio_drvq *q, const struct vio_sg *sg, unsigned n, bool writable,
                       void *const *tokens)
{
    if (!q || (n && (!sg || !tokens)))
        return -EINVAL;
    if (q->broken)
        return -EIO;
    /* Caller errors first, before anything is added (same order as vio_drvq_add). */
    for (unsigned k = 0; k < n; k++)
        if (!d_seg_ok(&sg[k]) || !tokens[k])
            return -EINVAL;
    /* Each buffer is what vio_drvq_add() makes of one segment, as long as there is room. */
    unsigned k = 0;
    struct d_state s = q->st;
    const uint16_t flags = writable ? VRING_DESC_F_WRITE : 0;
    /* one descriptor each: as many as there are free descriptors (the room rule, once) */
    const unsigned fit = d_room(s.num_free, n) ? n : s.num_free;
    for (; k < fit; k++)
        d_add_direct(&s, &sg[k], flags, tokens[k]);
    d_put_add(q, &s);
    return k ? (int)k : (n ? -ENOSPC : 0);
}

bool vio_drvq_kick_prepare(struct vio_drvq *q)
{
    if (!q || q->broken)
        return false;
    uint16_t old = q->avail_published;
    uint16_t new = q->st.avail_idx;
    if (old == new)
        return false;
    vio_st_rel16(&q->avail->idx, new); /* [P1] descriptors and ring entries first */
    q->avail_published = new;
    q->st.seq_published = q->st.seq_added;
    /* [P3] the new avail idx must be visible before we read the device's
     * avail_event / flags; pairs with the fence in enable_notify. */
    vio_mb();
    if (q->event_idx)
        return vring_need_event(vio_ld16(used_avail_event(q->used, q->num)), new, old);
    return !(vio_ld16(&q->used->flags) & VRING_USED_F_NO_NOTIFY);
}

/* Read used->idx ([P2] acquire) and check it stays within what is in flight. */
__attribute__((always_inline)) static inline int d_refresh_used(struct vio_drvq *q)
{
    uint16_t idx = vio_ld_acq16(&q->used->idx);
    uint16_t inflight = (uint16_t)(q->avail_published - q->st.last_used);
    if ((uint16_t)(idx - q->st.last_used) > inflight)
        return d_violationf(q, VIO_VIOL_USED_IDX, "used idx %u, last used %u, in flight %u", idx,
                            q->st.last_used, inflight);
    q->used_seen = idx;
    return 0;
}

/* Return the next buffer of an in-order batch: buffers before the named one
 * were fully used (spec 2.7.9). */
static inline int d_take_batch(struct vio_drvq *q, void **token, uint32_t *len);

/* The rule for a used entry the device wrote: it names a buffer in flight (added *and
 * published*, not yet returned) and reports at most the buffer's writable length. Returns
 * the rule broken, VIO_VIOL_NONE if none; d_used_violation() raises it. (Kept apart so the
 * burst loop holds no call: the raise is on its way out.) */
__attribute__((always_inline)) static inline enum vio_violation
d_used_rule(const struct d_state *s, uint32_t id, uint32_t len)
{
    /* In flight means added *and published*: seq below the published mark. (id > mask is
     * id >= size: the size is a power of two.) */
    if (id > s->mask || !s->bufs[id].token || s->bufs[id].seq >= s->seq_published)
        return VIO_VIOL_USED_ID;
    if (len > s->bufs[id].in_len)
        return VIO_VIOL_USED_LEN;
    return VIO_VIOL_NONE;
}

__attribute__((cold, noinline)) static int d_used_violation(struct vio_drvq *q,
                                                            enum vio_violation why, uint32_t id,
                                                            uint32_t len)
{
    if (why == VIO_VIOL_USED_ID)
        return d_violationf(q, why, "used id %u not in flight", id);
    return d_violationf(q, why, "used id %u len %u, writable %u", id, len, q->st.bufs[id].in_len);
}

/* Hand buffer @p head back with @p len, free its descriptors, move past its used entry. */
__attribute__((always_inline)) static inline void d_take(struct d_state *s, unsigned head,
                                                         uint32_t len, bool in_order,
                                                         void **token, uint32_t *len_out)
{
    *token = s->bufs[head].token;
    if (len_out)
        *len_out = len;
    d_free_chain(s, head, in_order);
    s->last_used++;
}

static inline int d_take_batch(struct vio_drvq *q, void **token, uint32_t *len)
{
    struct d_state *s = &q->st;
    uint16_t head = s->order[s->last_used & s->mask];
    uint32_t l = (head == q->batch_last) ? q->batch_len : s->bufs[head].in_len;
    if (head == q->batch_last)
        q->batch_active = false;
    d_take(s, head, l, true, token, len);
    return 0;
}

/* Collect one used buffer (the caller checked q and token and that q is not
 * broken). Shared by the single and the burst entry points. */
__attribute__((always_inline)) static inline int d_get_used_one(struct vio_drvq *q, void **token,
                                                             uint32_t *len)
{
    if (q->in_order && q->batch_active)
        return d_take_batch(q, token, len);

    if (q->st.last_used == q->used_seen) {
        int r = d_refresh_used(q);
        if (r < 0)
            return r;
        if (q->st.last_used == q->used_seen)
            return -EAGAIN;
    }
    struct d_state *s = &q->st;
    const volatile struct vring_used_elem *e = &q->used->ring[s->last_used & s->mask];
    uint32_t id = le32toh(e->id);
    uint32_t l = le32toh(e->len);
    enum vio_violation why = d_used_rule(s, id, l);
    if (why != VIO_VIOL_NONE)
        return d_used_violation(q, why, id, l);
    if (q->in_order) {
        /* The entry names the last buffer of a batch starting at last_used. */
        uint16_t pos = (uint16_t)((uint16_t)s->bufs[id].seq - s->last_used);
        if (pos >= (uint16_t)(q->used_seen - s->last_used))
            return d_violationf(q, VIO_VIOL_USED_ID, "in-order id %u beyond used idx %u", id,
                                q->used_seen);
        if (pos > 0) {
            q->batch_last = (uint16_t)id;
            q->batch_len = l;
            q->batch_active = true;
            return d_take_batch(q, token, len);
        }
    }
    d_take(s, id, l, q->in_order, token, len);
    return 0;
}

int vio_drvq_get_used(struct vio_drvq *q, void **token, uint32_t *len)
{
    if (!q || !token)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    return d_get_used_one(q, token, len);
}

/* The burst collection proper (vio_drvq_get_used_burst() keeps only the empty poll inline). */
__attribute__((noinline)) static int d_get_used_burst(struct vio_drvq *q, void **tokens,
                                                      uint32_t *lens, unsigned max)
{
    unsigned n = 0;
    if (!q->in_order) {
        /* Burst (any order): the entries the device published, each checked and taken as
         * d_get_used_one() does it: the used idx is read when what was seen is taken (once
         * per burst, twice when the first read falls short of max). */
        while (n < max) {
            if (q->st.last_used == q->used_seen) {
                int r = d_refresh_used(q);
                if (r < 0)
                    return n ? (int)n : r; /* the next call sees -EIO */
                if (q->st.last_used == q->used_seen)
                    break;
            }
            unsigned ready = (uint16_t)(q->used_seen - q->st.last_used);
            if (ready > max - n)
                ready = max - n;
            struct d_state s = q->st;
            const volatile struct vring_used_elem *ring = q->used->ring;
            for (unsigned end = n + ready; n < end;) {
                const volatile struct vring_used_elem *e = &ring[s.last_used & s.mask];
                uint32_t id = le32toh(e->id);
                uint32_t l = le32toh(e->len);
                enum vio_violation why = d_used_rule(&s, id, l);
                if (why != VIO_VIOL_NONE) {
                    d_put_used(q, &s);
                    /* what was collected first; the next call sees -EIO */
                    int r = d_used_violation(q, why, id, l);
                    return n ? (int)n : r;
                }
                d_take(&s, id, l, false, &tokens[n], lens ? &lens[n] : NULL);
                n++;
            }
            d_put_used(q, &s);
        }
        return (int)n;
    }
    while (n < max) {
        int r = d_get_used_one(q, &tokens[n], lens ? &lens[n] : NULL);
        if (r == -EAGAIN)
            break;
        if (r < 0)
            return n ? (int)n : r; /* report what was collected; the next call sees -EIO */
        n++;
    }
    return (int)n;
}

int vio_drvq_get_used_burst(struct vio_drvq *q, void **tokens, uint32_t *lens, unsigned max)
{
    if (!q || (!tokens && max))
        return -EINVAL;
    if (q->broken)
        return -EIO;
    /* The empty poll, the common case of a busy-polling driver: everything seen is taken
     * and the device has published nothing since (the idx equals the one validated). */
    if (!q->in_order && q->st.last_used == q->used_seen &&
        vio_ld_acq16(&q->used->idx) == q->used_seen)
        return 0;
    return d_get_used_burst(q, tokens, lens, max);
}

bool vio_drvq_enable_cb(struct vio_drvq *q)
{
    if (!q || q->broken)
        return false;
    if (q->event_idx)
        vio_st16(avail_used_event(q->avail, q->num), q->st.last_used);
    else
        vio_st16(&q->avail->flags, 0);
    /* [P4] pairs with the fence in the device's needs_notify. */
    vio_mb();
    if (q->batch_active)
        return true;
    return vio_ld_acq16(&q->used->idx) != q->st.last_used;
}

bool vio_drvq_enable_cb_delayed(struct vio_drvq *q)
{
    if (!q || q->broken)
        return false;
    if (!q->event_idx)
        return vio_drvq_enable_cb(q);
    /* Linux's virtqueue_enable_cb_delayed: interrupt once 3/4 of what is in flight is used */
    uint16_t bufs = (uint16_t)((uint16_t)(q->avail_published - q->st.last_used) * 3u / 4u);
    vio_st16(avail_used_event(q->avail, q->num), (uint16_t)(q->st.last_used + bufs));
    /* [P4] pairs with the fence in the device's needs_notify. */
    vio_mb();
    if (q->batch_active)
        return true;
    return (uint16_t)(vio_ld_acq16(&q->used->idx) - q->st.last_used) > bufs;
}

void vio_drvq_disable_cb(struct vio_drvq *q)
{
    if (!q || q->broken)
        return;
    if (!q->event_idx)
        vio_st16(&q->avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
}

int vio_drvq_detach_unused(struct vio_drvq *q, void **token)
{
    if (!q || !token)
        return -EINVAL;
    while (q->detach_cursor < q->num) {
        uint16_t h = q->detach_cursor++;
        if (q->st.bufs[h].token) {
            *token = q->st.bufs[h].token;
            d_free_chain(&q->st, h, q->in_order);
            return 0;
        }
    }
    q->detach_cursor = 0;
    return -EAGAIN;
}

unsigned vio_drvq_num_free(const struct vio_drvq *q)
{
    return q ? q->st.num_free : 0;
}

bool vio_drvq_is_broken(const struct vio_drvq *q)
{
    return q && q->broken;
}

enum vio_violation vio_drvq_violation(const struct vio_drvq *q)
{
    return q ? q->why : VIO_VIOL_NONE;
}

enum vio_queue_dir vio_queue_direction(const struct vio_queue *q)
{
    return q ? q->dir : VIO_QUEUE_DIR_ANY;
}
