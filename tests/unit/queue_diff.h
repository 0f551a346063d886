/* SPDX-License-Identifier: MIT */
/*
 * Differential engine for the split ring: the same ring contents are built twice (two arenas
 * at the same guest addresses) and driven through the single entry points on side 0 and the
 * burst entry points on side 1; every result must be identical.
 *
 *   device side: vio_queue_pop() one by one        vs vio_queue_pop_burst()
 *                vio_queue_push() one by one       vs vio_queue_push_batch()
 *   driver side: vio_drvq_add() one by one         vs vio_drvq_add_burst()
 *                vio_drvq_get_used() one by one    vs vio_drvq_get_used_burst()
 *
 * Compared after every step: return codes, the chains (head, descriptor count, in/out
 * counts and lengths) and their iovecs (as guest addresses), tokens and lengths, the whole
 * guest memory of both arenas (descriptors, avail and used rings, indices, event fields), the
 * queue's bookkeeping (vio_queue_get_ring_state(), vio_drvq_num_free()), and the broken state
 * (flag, violation, on_broken calls, -EIO afterwards).
 *
 * Input: a byte source (fuzz input) that falls back to a PRNG when it runs out, or the PRNG
 * alone (unit tests, a seed). The includer defines QD_FAIL(...) (printf-style) which must
 * not return.
 *
 * Test-only code, shared by tests/unit/check_queue_diff.c and tests/fuzz/fuzz_queue_diff.c.
 */
#ifndef VIO_TEST_QUEUE_DIFF_H
#define VIO_TEST_QUEUE_DIFF_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "arena.h"
#include "virtio/queue.h"

#ifndef QD_FAIL
#error "define QD_FAIL(...) before including queue_diff.h"
#endif

/* ------------------------------------------------------------------------ */
/* Input */

struct qd_src {
    const uint8_t *p; /* fuzz bytes, NULL for PRNG only */
    size_t n, pos;
    uint64_t rng;
};

static inline void qd_src_init(struct qd_src *s, const uint8_t *p, size_t n, uint64_t seed)
{
    s->p = p;
    s->n = p ? n : 0;
    s->pos = 0;
    s->rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!s->rng)
        s->rng = 1;
}

/* More script left: always for the PRNG, while bytes remain for fuzz input. */
static inline bool qd_more(const struct qd_src *s)
{
    return !s->p || s->pos < s->n;
}

static inline uint32_t qd_u32(struct qd_src *s)
{
    if (s->p && s->pos < s->n) {
        uint32_t v = 0;
        for (int k = 0; k < 4 && s->pos < s->n; k++)
            v |= (uint32_t)s->p[s->pos++] << (8 * k);
        return v;
    }
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (uint32_t)(s->rng >> 16);
}

static inline uint8_t qd_u8(struct qd_src *s)
{
    if (s->p && s->pos < s->n)
        return s->p[s->pos++];
    return (uint8_t)qd_u32(s);
}

/* 0 .. n-1 (0 when n == 0), one byte of input when n <= 256 */
static inline unsigned qd_below(struct qd_src *s, unsigned n)
{
    if (n <= 1)
        return 0;
    return (n <= 256 ? qd_u8(s) : qd_u32(s)) % n;
}

/* ------------------------------------------------------------------------ */
/* Common */

#define QD_BASE 0x100000u
#define QD_MAXQ 64u
#define QD_MAXIOV 4608u /* room for the > 4 GiB chain (4097 segments) */
#define QD_MAXBURST 80u

struct qd_stats;
static inline const char *qd_viol_summary(const struct qd_stats *st);

static inline void qd_cmp_mem(const struct arena *a0, const struct arena *a1, const char *what)
{
    if (a0->nreg != a1->nreg)
        QD_FAIL("%s: arenas differ in layout", what);
    for (unsigned k = 0; k < a0->nreg; k++) {
        if (a0->reg[k].gpa != a1->reg[k].gpa || a0->reg[k].size != a1->reg[k].size)
            QD_FAIL("%s: region %u differs in layout", what, k);
        if (memcmp(a0->reg[k].host, a1->reg[k].host, a0->reg[k].size) != 0) {
            size_t off = 0;
            while (a0->reg[k].host[off] == a1->reg[k].host[off])
                off++;
            QD_FAIL("%s: guest memory differs at 0x%llx (single 0x%02x, burst 0x%02x)", what,
                    (unsigned long long)(a0->reg[k].gpa + off), a0->reg[k].host[off],
                    a1->reg[k].host[off]);
        }
    }
}

/* Guest address of a host pointer into the arena (~0 if outside). */
static inline uint64_t qd_gpa_of(const struct arena *a, const void *p)
{
    const uint8_t *h = p;
    for (unsigned k = 0; k < a->nreg; k++)
        if (h >= a->reg[k].host && h < a->reg[k].host + a->reg[k].size)
            return a->reg[k].gpa + (uint64_t)(h - a->reg[k].host);
    return ~0ull;
}

/* ------------------------------------------------------------------------ */
/* Device side */


/* One write the generator makes; applied identically to both sides. */
enum qd_wkind { QW_DESC, QW_TABLE, QW_PUBLISH, QW_AVAIL_IDX, QW_AVAIL_FLAGS, QW_USED_EVENT };

struct qd_write {
    uint8_t kind;
    uint16_t i;     /* QW_DESC: descriptor; QW_PUBLISH: head; others: the value */
    uint32_t entry; /* QW_TABLE: entry index */
    uint64_t table; /* QW_TABLE: table address */
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct qd_dev_side {
    struct arena a;
    struct rawring r;
    struct vio_queue *q;
    unsigned broken_calls;
    enum vio_violation broken_why;
    struct vio_chain ch[QD_MAXBURST];
    struct iovec iov[QD_MAXIOV];
};

struct qd_dev_cfg {
    uint16_t size;      /* power of two <= QD_MAXQ */
    uint64_t features;  /* bits: VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX, VIRTIO_F_IN_ORDER */
    enum vio_queue_dir dir;
    uint8_t layout;     /* 0 one region, 1 two adjacent regions, 2 with an unmapped hole between,
                           3 like 1 with region 1 read-only, 4 one big region (4 MiB: room for a
                           chain over 4 GiB) */
    uint16_t start;     /* initial avail and used idx (wrap-around) */
    unsigned hostile;   /* chance in 256 that a generated chain breaks a rule */
};

struct qd_stats {
    unsigned ops, chains, bursts, multi, violations, broken_runs;
    unsigned viol_seen[VIO_VIOL__COUNT];
};

/* "name:count ..." of the violations the runs ended in (static buffer). */
static inline const char *qd_viol_summary(const struct qd_stats *st)
{
    static char buf[512];
    size_t o = 0;
    buf[0] = 0;
    for (unsigned v = 1; v < VIO_VIOL__COUNT && o < sizeof(buf) - 40; v++)
        if (st->viol_seen[v])
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s:%u ", vio_violation_name(v),
                                  st->viol_seen[v]);
    return buf;
}

struct qd_dev {
    struct qd_dev_cfg cfg;
    struct qd_dev_side *s; /* two sides: 0 single, 1 burst */
    uint64_t data, data_len, tables, boundary, hole, end, big_len;
    uint16_t cursor;       /* next descriptor the generator writes */
    unsigned table_slot;
    struct qd_write w[2048];
    unsigned nw;
    /* descriptors of honest chains published and not yet pushed (an honest driver reuses a
     * descriptor only when its chain came back) */
    uint8_t busy[QD_MAXQ], nd[QD_MAXQ];
    uint16_t cd[QD_MAXQ][8];
    uint16_t fl_head[2 * QD_MAXQ]; /* chains popped and not pushed */
    uint32_t fl_in[2 * QD_MAXQ];
    unsigned nfl;
    struct qd_stats *st;
};

#define QD_ARENA_SIZE (256u << 10)
#define QD_BIG_ARENA (4u << 20)
#define QD_SPLIT (128u << 10)
#define QD_HOLE (16u << 10)
#define QD_TABLE_SLOT 256u  /* bytes per small indirect table (16 entries) */
#define QD_TABLE_SLOTS 64u
#define QD_BIG_TABLE (24u << 10)
#define QD_DATA_LEN (16u << 10)

static void qd_on_broken(void *opaque, struct vio_queue *q, enum vio_violation why)
{
    (void)q;
    struct qd_dev_side *s = opaque;
    s->broken_calls++;
    s->broken_why = why;
}

static inline void qd_w(struct qd_dev *d, struct qd_write w)
{
    if (d->nw < sizeof(d->w) / sizeof(d->w[0]))
        d->w[d->nw++] = w;
}

static inline void qd_w_desc(struct qd_dev *d, uint16_t i, uint64_t addr, uint32_t len,
                             uint16_t flags, uint16_t next)
{
    qd_w(d, (struct qd_write){.kind = QW_DESC, .i = (uint16_t)(i % d->cfg.size), .addr = addr,
                              .len = len, .flags = flags, .next = next});
}

static inline void qd_w_table(struct qd_dev *d, uint64_t table, uint32_t entry, uint64_t addr,
                              uint32_t len, uint16_t flags, uint16_t next)
{
    qd_w(d, (struct qd_write){.kind = QW_TABLE, .table = table, .entry = entry, .addr = addr,
                              .len = len, .flags = flags, .next = next});
}

static inline void qd_dev_apply(struct qd_dev *d)
{
    for (int k = 0; k < 2; k++) {
        struct qd_dev_side *s = &d->s[k];
        for (unsigned j = 0; j < d->nw; j++) {
            const struct qd_write *w = &d->w[j];
            switch (w->kind) {
            case QW_DESC:
                rawring_set_desc(&s->r, w->i, w->addr, w->len, w->flags, w->next);
                break;
            case QW_TABLE:
                if (raw_table_set(&s->a, w->table, w->entry, w->addr, w->len, w->flags, w->next) < 0)
                    QD_FAIL("generator: table 0x%llx entry %u outside the arena",
                            (unsigned long long)w->table, w->entry);
                break;
            case QW_PUBLISH:
                rawring_publish(&s->r, w->i);
                break;
            case QW_AVAIL_IDX:
                rawring_set_avail_idx(&s->r, w->i);
                break;
            case QW_AVAIL_FLAGS:
                rawring_set_avail_flags(&s->r, w->i);
                break;
            case QW_USED_EVENT:
                rawring_set_used_event(&s->r, w->i);
                break;
            }
        }
    }
    d->nw = 0;
}

/* A buffer of @p len bytes in the data area. */
static inline uint64_t qd_buf(struct qd_dev *d, struct qd_src *src, uint32_t len)
{
    return d->data + qd_below(src, (unsigned)(d->data_len - len));
}

static inline uint32_t qd_len(struct qd_src *src)
{
    return 1 + qd_below(src, 512);
}

/* Segments of a chain: @p n descriptors, the first @p n_r readable, zero lengths sometimes. */
static inline void qd_seg(struct qd_dev *d, struct qd_src *src, unsigned j, unsigned n_r,
                          uint64_t *addr, uint32_t *len, uint16_t *wflag)
{
    *len = qd_below(src, 8) == 0 ? 0 : qd_len(src);
    *addr = qd_buf(d, src, 512);
    *wflag = j >= n_r ? VRING_DESC_F_WRITE : 0;
}

static inline uint64_t qd_small_table(struct qd_dev *d)
{
    return d->tables + (uint64_t)(d->table_slot++ % QD_TABLE_SLOTS) * QD_TABLE_SLOT;
}

/* Honest chains: take @p n free descriptors (from the cursor on); false if there are not. */
static inline bool qd_alloc(struct qd_dev *d, unsigned n, uint16_t *out)
{
    const uint16_t size = d->cfg.size;
    unsigned got = 0;
    for (unsigned k = 0; k < size && got < n; k++) {
        uint16_t i = (uint16_t)((d->cursor + k) % size);
        if (!d->busy[i])
            out[got++] = i;
    }
    if (got < n)
        return false;
    for (unsigned k = 0; k < n; k++)
        d->busy[out[k]] = 1;
    d->nd[out[0]] = (uint8_t)n;
    memcpy(d->cd[out[0]], out, n * sizeof(*out));
    d->cursor = (uint16_t)(out[n - 1] + 1);
    return true;
}

/* A chain came back: its descriptors are free again. */
static inline void qd_free(struct qd_dev *d, uint16_t head)
{
    if (head >= d->cfg.size || !d->nd[head])
        return;
    for (unsigned k = 0; k < d->nd[head]; k++)
        d->busy[d->cd[head][k]] = 0;
    d->nd[head] = 0;
}

/* An honest chain of 1..6 descriptors (or an indirect one), if descriptors are free. */
static inline void qd_gen_honest(struct qd_dev *d, struct qd_src *src)
{
    const uint16_t size = d->cfg.size;
    unsigned shape = qd_below(src, 6);
    uint16_t wr = qd_below(src, 2) ? VRING_DESC_F_WRITE : 0;
    uint16_t id[8];
    unsigned n = shape == 2 ? 2 + qd_below(src, 4) : 1;
    if (n > size)
        n = size;
    if (!qd_alloc(d, n, id))
        return;
    const uint16_t h = id[0];
    switch (shape) {
    case 0:
    case 1: /* one descriptor, readable or writable */
        qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src), shape ? VRING_DESC_F_WRITE : 0, 0);
        break;
    case 2: { /* a chain, readable then writable */
        unsigned n_r = qd_below(src, n + 1);
        for (unsigned j = 0; j < n; j++) {
            uint64_t a;
            uint32_t l;
            uint16_t f;
            qd_seg(d, src, j, n_r, &a, &l, &f);
            qd_w_desc(d, id[j], a, l, (uint16_t)(f | (j + 1 < n ? VRING_DESC_F_NEXT : 0)),
                      j + 1 < n ? id[j + 1] : 0);
        }
        break;
    }
    case 3: { /* an indirect table */
        unsigned m = 1 + qd_below(src, 6);
        unsigned n_r = qd_below(src, m + 1);
        uint64_t t = qd_small_table(d);
        for (unsigned j = 0; j < m; j++) {
            uint64_t a;
            uint32_t l;
            uint16_t f;
            qd_seg(d, src, j, n_r, &a, &l, &f);
            qd_w_table(d, t, j, a, l, (uint16_t)(f | (j + 1 < m ? VRING_DESC_F_NEXT : 0)),
                       (uint16_t)(j + 1 < m ? j + 1 : 0));
        }
        qd_w_desc(d, h, t, 16u * m, VRING_DESC_F_INDIRECT, 0);
        break;
    }
    case 4: { /* a buffer across the region boundary (two iovecs; a violation with a hole) */
        uint32_t l = 64 + qd_below(src, 64);
        uint64_t a = d->boundary - 1 - qd_below(src, 63);
        if (d->boundary == d->end) /* one region: a buffer at its end instead */
            a = d->end - l - qd_below(src, 64);
        qd_w_desc(d, h, a, l, wr, 0);
        break;
    }
    default: /* a buffer in the last region (another hint region; read-only in layout 3) */
        qd_w_desc(d, h, d->end - 4096 + qd_below(src, 2048), qd_len(src), wr, 0);
        break;
    }
    qd_w(d, (struct qd_write){.kind = QW_PUBLISH, .i = h});
}

/* Generate one chain (or one hostile act) into d->w. */
static inline void qd_gen_chain(struct qd_dev *d, struct qd_src *src)
{
    const uint16_t size = d->cfg.size;
    const uint16_t h = (uint16_t)(d->cursor % size);
    bool hostile = qd_below(src, 256) < d->cfg.hostile;
    if (!hostile) {
        qd_gen_honest(d, src);
        return;
    }
    unsigned shape = 6 + qd_below(src, 13);
    uint16_t wr = qd_below(src, 2) ? VRING_DESC_F_WRITE : 0;
    bool publish = true;
    unsigned used_desc = 1;

    switch (shape) {
    case 6: /* head out of range */
        qd_w(d, (struct qd_write){.kind = QW_PUBLISH,
                                  .i = (uint16_t)(size + qd_below(src, 65536u - size))});
        publish = false;
        used_desc = 0;
        break;
    case 7: /* next out of range */
        qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src), VRING_DESC_F_NEXT,
                  (uint16_t)(size + qd_below(src, 100)));
        break;
    case 8: { /* a loop */
        unsigned n = 1 + qd_below(src, 3);
        if (n > size)
            n = size;
        for (unsigned j = 0; j < n; j++)
            qd_w_desc(d, (uint16_t)(h + j), qd_buf(d, src, 512), qd_len(src), VRING_DESC_F_NEXT,
                      (uint16_t)((h + (j + 1) % n) % size));
        used_desc = n;
        break;
    }
    case 9: { /* nested indirect table */
        uint64_t t = qd_small_table(d), t2 = qd_small_table(d);
        qd_w_table(d, t2, 0, qd_buf(d, src, 512), qd_len(src), 0, 0);
        qd_w_table(d, t, 0, qd_buf(d, src, 512), qd_len(src), VRING_DESC_F_NEXT, 1);
        qd_w_table(d, t, 1, t2, 16, VRING_DESC_F_INDIRECT, 0);
        qd_w_desc(d, h, t, 32, VRING_DESC_F_INDIRECT, 0);
        break;
    }
    case 10: { /* indirect table of a bad length */
        static const uint32_t bad[] = {0, 8, 17, 16u * (2u * VIO_QUEUE_MAX_SIZE + 1u), 0xfffffff0u};
        qd_w_desc(d, h, qd_small_table(d), bad[qd_below(src, 5)], VRING_DESC_F_INDIRECT, 0);
        break;
    }
    case 11: /* indirect and next together */
        qd_w_desc(d, h, qd_small_table(d), 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT,
                  (uint16_t)((h + 1) % size));
        break;
    case 12: { /* outside guest memory */
        uint64_t a;
        switch (qd_below(src, 4)) {
        case 0: a = d->end + qd_below(src, 4096); break;
        case 1: a = d->hole ? d->hole + qd_below(src, QD_HOLE - 600) : d->end + 8192; break;
        case 2: a = qd_below(src, QD_BASE - 1024); break;
        default: a = ~0ull - qd_below(src, 200); break;
        }
        qd_w_desc(d, h, a, qd_len(src), wr, 0);
        break;
    }
    case 13: /* zero-length single descriptor (allowed: a chain without iovecs) */
        qd_w_desc(d, h, qd_buf(d, src, 512), 0, wr, 0);
        break;
    case 14: /* writable before readable */
        qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src), VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                  (uint16_t)((h + 1) % size));
        qd_w_desc(d, (uint16_t)(h + 1), qd_buf(d, src, 512), qd_len(src), 0, 0);
        used_desc = 2;
        break;
    case 15: /* avail idx jump */
        qd_w(d, (struct qd_write){.kind = QW_AVAIL_IDX,
                                  .i = (uint16_t)(d->s[0].r.avail_shadow + size + 1 +
                                                  qd_below(src, 100))});
        publish = false;
        used_desc = 0;
        break;
    case 16: { /* a chain over 4 GiB (one big table of big buffers; needs layout 4) */
        unsigned m = d->big_len ? (unsigned)((1ull << 32) / d->big_len) + 1u : 0;
        if (!m || 16u * m > QD_BIG_TABLE || m + 8 > sizeof(d->w) / sizeof(d->w[0]) - d->nw) {
            qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src), VRING_DESC_F_NEXT, h); /* a loop */
            break;
        }
        uint64_t t = d->tables + QD_TABLE_SLOTS * QD_TABLE_SLOT;
        for (unsigned j = 0; j < m; j++)
            qd_w_table(d, t, j, QD_BASE, (uint32_t)d->big_len, (uint16_t)(j + 1 < m ? VRING_DESC_F_NEXT : 0),
                       (uint16_t)(j + 1 < m ? j + 1 : 0));
        qd_w_desc(d, h, t, 16u * m, VRING_DESC_F_INDIRECT, 0);
        break;
    }
    case 17: /* republish a head that is in flight */
        if (d->nfl) {
            qd_w(d, (struct qd_write){.kind = QW_PUBLISH, .i = d->fl_head[qd_below(src, d->nfl)]});
            publish = false;
            used_desc = 0;
        } else {
            qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src), wr, 0);
        }
        break;
    default: /* readable descriptor in a device-writable-only queue and the reverse */
        qd_w_desc(d, h, qd_buf(d, src, 512), qd_len(src),
                  d->cfg.dir == VIO_QUEUE_DIR_IN_ONLY ? 0 : VRING_DESC_F_WRITE, 0);
        break;
    }
    if (publish)
        qd_w(d, (struct qd_write){.kind = QW_PUBLISH, .i = h});
    d->cursor = (uint16_t)(d->cursor + used_desc);
}

static inline void qd_cmp_chain(const struct qd_dev *d, const struct vio_chain *a,
                                const struct vio_chain *b, unsigned k)
{
    (void)d;
    if (a->head != b->head || a->ndesc != b->ndesc || a->n_out != b->n_out || a->n_in != b->n_in ||
        a->out_len != b->out_len || a->in_len != b->in_len)
        QD_FAIL("pop: chain %u differs: single head %u ndesc %u out %u/%u in %u/%u, burst head %u "
                "ndesc %u out %u/%u in %u/%u",
                k, a->head, a->ndesc, a->n_out, a->out_len, a->n_in, a->in_len, b->head, b->ndesc,
                b->n_out, b->out_len, b->n_in, b->in_len);
}

/* Everything both sides show must be equal. */
static inline void qd_dev_check(struct qd_dev *d, const char *after)
{
    struct qd_dev_side *s0 = &d->s[0], *s1 = &d->s[1];
    bool b0 = vio_queue_is_broken(s0->q), b1 = vio_queue_is_broken(s1->q);
    if (b0 != b1 || vio_queue_violation(s0->q) != vio_queue_violation(s1->q) ||
        s0->broken_calls != s1->broken_calls || s0->broken_why != s1->broken_why)
        QD_FAIL("after %s: broken state differs: single %d %s (%u calls), burst %d %s (%u calls)",
                after, b0, vio_violation_name(vio_queue_violation(s0->q)), s0->broken_calls, b1,
                vio_violation_name(vio_queue_violation(s1->q)), s1->broken_calls);
    struct vio_queue_ring_state r0, r1;
    vio_queue_get_ring_state(s0->q, &r0);
    vio_queue_get_ring_state(s1->q, &r1);
    if (memcmp(&r0, &r1, sizeof(r0)) != 0)
        QD_FAIL("after %s: ring state differs: single last_avail %u shadow %u used %u inflight %u "
                "signalled %u/%d, burst last_avail %u shadow %u used %u inflight %u signalled %u/%d",
                after, r0.last_avail, r0.shadow_avail, r0.used_idx, r0.inflight, r0.signalled_used,
                r0.signalled_used_valid, r1.last_avail, r1.shadow_avail, r1.used_idx, r1.inflight,
                r1.signalled_used, r1.signalled_used_valid);
    qd_cmp_mem(&s0->a, &s1->a, after);
    if (b0) {
        /* sticky: every data-path call says -EIO, on both */
        struct vio_chain c;
        struct iovec v[2];
        struct vio_used_elem e = {0, 0};
        for (int k = 0; k < 2; k++) {
            struct vio_queue *q = d->s[k].q;
            int r1p = vio_queue_pop(q, &c, v, 2), r2 = vio_queue_pop_burst(q, d->s[k].ch, 4, v, 2),
                r3 = vio_queue_push(q, 0, 0), r4 = vio_queue_push_batch(q, &e, 1);
            if (r1p != -EIO || r2 != -EIO || r3 != -EIO || r4 != -EIO)
                QD_FAIL("after %s: side %d broken but pop %d burst %d push %d batch %d", after, k,
                        r1p, r2, r3, r4);
        }
    }
}

static inline void qd_dev_pop(struct qd_dev *d, struct qd_src *src)
{
    struct qd_dev_side *s0 = &d->s[0], *s1 = &d->s[1];
    unsigned max = qd_below(src, 16) == 0 ? 0 : 1 + qd_below(src, QD_MAXBURST);
    unsigned cap;
    switch (qd_below(src, 4)) {
    case 0: cap = qd_below(src, max + 2); break;
    case 1: cap = max; break;
    case 2: cap = 4 * max; break;
    default: cap = QD_MAXIOV; break;
    }
    if (cap > QD_MAXIOV)
        cap = QD_MAXIOV;
    unsigned n0 = 0, used0 = 0;
    int err0 = 0;
    while (n0 < max) {
        int r = vio_queue_pop(s0->q, &s0->ch[n0], s0->iov + used0, cap - used0);
        if (r < 0) {
            err0 = r;
            break;
        }
        used0 += s0->ch[n0].n_out + s0->ch[n0].n_in;
        n0++;
    }
    bool was_broken = vio_queue_is_broken(s1->q);
    int r1 = vio_queue_pop_burst(s1->q, s1->ch, max, s1->iov, cap);
    if (max == 0 && !(r1 == (was_broken ? -EIO : 0)))
        QD_FAIL("pop_burst of 0 on a %s queue: %d", was_broken ? "broken" : "working", r1);
    if (max && (r1 > 0 ? (unsigned)r1 != n0 : (r1 == 0 || n0 != 0 || err0 != r1)))
        QD_FAIL("pop (max %u, iov cap %u): single took %u chains then %d, burst returned %d", max,
                cap, n0, err0, r1);
    d->st->bursts++;
    unsigned used1 = 0;
    for (unsigned k = 0; k < n0; k++) {
        qd_cmp_chain(d, &s0->ch[k], &s1->ch[k], k);
        used1 += s1->ch[k].n_out + s1->ch[k].n_in;
        if (d->nfl < sizeof(d->fl_head) / sizeof(d->fl_head[0])) {
            d->fl_head[d->nfl] = s0->ch[k].head;
            d->fl_in[d->nfl] = s0->ch[k].in_len;
            d->nfl++;
        }
        if (s0->ch[k].ndesc > 1 || s0->ch[k].n_out + s0->ch[k].n_in != 1)
            d->st->multi++;
    }
    d->st->chains += n0;
    if (used0 != used1)
        QD_FAIL("pop: single used %u iovecs, burst %u", used0, used1);
    for (unsigned k = 0; k < used0; k++) {
        uint64_t g0 = qd_gpa_of(&s0->a, s0->iov[k].iov_base);
        uint64_t g1 = qd_gpa_of(&s1->a, s1->iov[k].iov_base);
        if (g0 != g1 || g0 == ~0ull || s0->iov[k].iov_len != s1->iov[k].iov_len)
            QD_FAIL("pop: iovec %u differs: single 0x%llx+%zu, burst 0x%llx+%zu", k,
                    (unsigned long long)g0, s0->iov[k].iov_len, (unsigned long long)g1,
                    s1->iov[k].iov_len);
    }
}

static inline void qd_dev_push(struct qd_dev *d, struct qd_src *src)
{
    struct qd_dev_side *s0 = &d->s[0], *s1 = &d->s[1];
    struct vio_used_elem e[2 * QD_MAXQ];
    unsigned k = 0;
    if (d->nfl == 0 || qd_below(src, 32) == 0) {
        /* a caller error: a head out of range, alone */
        e[0].id = d->cfg.size + qd_below(src, 1000);
        e[0].len = 0;
        k = 1;
    } else {
        unsigned want = 1 + qd_below(src, d->nfl);
        while (k < want && d->nfl) {
            unsigned j = qd_below(src, d->nfl);
            e[k].id = d->fl_head[j];
            e[k].len = qd_below(src, 4) == 0 ? d->fl_in[j] + qd_below(src, 100)
                                             : qd_below(src, d->fl_in[j] + 1);
            k++;
            d->fl_head[j] = d->fl_head[d->nfl - 1];
            d->fl_in[j] = d->fl_in[d->nfl - 1];
            d->nfl--;
        }
    }
    int err0 = 0;
    unsigned n0 = 0;
    for (; n0 < k; n0++) {
        int r = vio_queue_push(s0->q, (uint16_t)(e[n0].id > 0xffff ? 0xffff : e[n0].id), e[n0].len);
        if (r < 0) {
            err0 = r;
            break;
        }
    }
    int r1 = vio_queue_push_batch(s1->q, e, k);
    if (r1 != err0 || (r1 < 0 && n0 != 0))
        QD_FAIL("push of %u: single %d after %u, batch %d", k, err0, n0, r1);
    if (r1 == 0)
        for (unsigned j = 0; j < k; j++)
            qd_free(d, (uint16_t)e[j].id);
    bool nn0 = vio_queue_needs_notify(s0->q), nn1 = vio_queue_needs_notify(s1->q);
    if (nn0 != nn1)
        QD_FAIL("needs_notify after push: single %d, burst %d", nn0, nn1);
}

static inline void qd_dev_notify(struct qd_dev *d, struct qd_src *src)
{
    struct vio_queue *q0 = d->s[0].q, *q1 = d->s[1].q;
    switch (qd_below(src, 5)) {
    case 0: {
        bool a = vio_queue_enable_notify(q0), b = vio_queue_enable_notify(q1);
        if (a != b)
            QD_FAIL("enable_notify: single %d, burst %d", a, b);
        break;
    }
    case 1:
        vio_queue_disable_notify(q0);
        vio_queue_disable_notify(q1);
        break;
    case 2: {
        bool a = vio_queue_has_avail(q0), b = vio_queue_has_avail(q1);
        if (a != b)
            QD_FAIL("has_avail: single %d, burst %d", a, b);
        break;
    }
    case 3:
        qd_w(d, (struct qd_write){.kind = QW_USED_EVENT, .i = (uint16_t)qd_u32(src)});
        qd_dev_apply(d);
        break;
    default:
        qd_w(d, (struct qd_write){.kind = QW_AVAIL_FLAGS, .i = (uint16_t)qd_below(src, 2)});
        qd_dev_apply(d);
        break;
    }
}

static inline void qd_dev_fini(struct qd_dev *d)
{
    for (int k = 0; k < 2; k++) {
        vio_queue_free(d->s[k].q);
        d->s[k].q = NULL;
        arena_fini(&d->s[k].a);
    }
}

/* Set both sides up. Returns 0, or -errno for a configuration the harness cannot build. */
static inline int qd_dev_init(struct qd_dev *d, struct qd_dev_side sides[2],
                              const struct qd_dev_cfg *cfg, struct qd_stats *st)
{
    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
    d->s = sides;
    d->st = st;
    for (int k = 0; k < 2; k++) {
        struct qd_dev_side *s = &sides[k];
        memset(&s->a, 0, sizeof(s->a));
        s->q = NULL;
        s->broken_calls = 0;
        s->broken_why = VIO_VIOL_NONE;
        struct arena_config ac = {.base = QD_BASE, .size = QD_ARENA_SIZE};
        switch (cfg->layout) {
        case 1: ac.split = QD_SPLIT; break;
        case 2: ac.split = QD_SPLIT; ac.hole = QD_HOLE; break;
        case 3: ac.split = QD_SPLIT; ac.region1_readonly = true; break;
        case 4: ac.size = QD_BIG_ARENA; break;
        default: break;
        }
        int rc = arena_init(&s->a, &ac);
        if (rc < 0)
            return rc;
        if ((rc = rawring_init(&s->r, &s->a, cfg->size, 4)) < 0)
            return rc;
        uint64_t tables = arena_alloc(&s->a, QD_TABLE_SLOTS * QD_TABLE_SLOT + QD_BIG_TABLE, 16);
        uint64_t data = arena_alloc(&s->a, QD_DATA_LEN, 16);
        if (!tables || !data)
            return -ENOMEM;
        if (k == 0) {
            d->tables = tables;
            d->data = data;
            d->data_len = QD_DATA_LEN;
            d->boundary = arena_boundary(&s->a);
            d->hole = arena_hole(&s->a);
            d->end = arena_end(&s->a);
            d->big_len = cfg->layout == 4 ? QD_BIG_ARENA - (64u << 10) : 0;
        } else if (tables != d->tables || data != d->data) {
            QD_FAIL("the two arenas differ in layout");
        }
        rawring_set_avail_idx(&s->r, cfg->start);
        rawring_set_used_idx(&s->r, cfg->start);
        struct vio_queue_config qc;
        arena_queue_config(&qc, QD_MAXQ, k ? "burst" : "single");
        qc.dir = cfg->dir;
        qc.on_broken = qd_on_broken;
        qc.broken_opaque = s;
        if ((rc = vio_queue_new(&qc, &s->q)) < 0)
            return rc;
        if ((rc = rawring_setup_queue(&s->r, s->q, cfg->features)) < 0)
            return rc;
    }
    d->cursor = cfg->start; /* any start */
    return 0;
}

/* Run @p ops steps (or until fuzz input runs out). */
static inline void qd_dev_run(struct qd_dev *d, struct qd_src *src, unsigned ops)
{
    static const char *const names[] = {"publish", "publish", "publish", "publish", "pop", "pop",
                                        "pop", "push", "push", "notify"};
    for (unsigned op = 0; op < ops && qd_more(src); op++) {
        unsigned what = qd_below(src, 10);
        if (what < 4) {
            unsigned n = 1 + qd_below(src, 8);
            for (unsigned k = 0; k < n; k++)
                qd_gen_chain(d, src);
            qd_dev_apply(d);
        } else if (what < 7) {
            qd_dev_pop(d, src);
        } else if (what < 9) {
            qd_dev_push(d, src);
        } else {
            qd_dev_notify(d, src);
        }
        d->st->ops++;
        qd_dev_check(d, names[what]);
    }
    if (vio_queue_is_broken(d->s[0].q)) {
        d->st->broken_runs++;
        d->st->viol_seen[vio_queue_violation(d->s[0].q)]++;
    }
}

/* ------------------------------------------------------------------------ */
/* Driver side */

#define QD_DRV_ARENA (64u << 10)
#define QD_POS 65536u

struct qd_drv_side {
    struct arena a;
    struct rawring r; /* the same ring, written by the fake device */
    struct vio_drvq *q;
    void *tok[QD_MAXBURST];
    uint32_t len[QD_MAXBURST];
};

struct qd_drv_cfg {
    uint16_t size;
    uint64_t features; /* VIRTIO_RING_F_INDIRECT_DESC (with a pool), EVENT_IDX, IN_ORDER */
    unsigned hostile;  /* chance in 256 that a device step breaks a rule */
};

struct qd_drv {
    struct qd_drv_cfg cfg;
    struct qd_drv_side *s;
    uint64_t data;
    uintptr_t next_tok;
    uint32_t *pos_in;  /* [QD_POS] writable bytes of the buffer at each avail position */
    uint16_t added, published;
    /* buffers published and not yet completed: head (read from the avail ring when it was
     * published, as a device pops it) and writable bytes */
    uint16_t pend[2 * QD_MAXQ];
    uint32_t pend_in[2 * QD_MAXQ];
    unsigned npend;
    uint16_t dev_used;          /* used idx the fake device wrote */
    uint16_t last_id;
    struct qd_stats *st;
};

static inline void qd_drv_check(struct qd_drv *d, const char *after)
{
    struct vio_drvq *q0 = d->s[0].q, *q1 = d->s[1].q;
    bool b0 = vio_drvq_is_broken(q0), b1 = vio_drvq_is_broken(q1);
    if (b0 != b1 || vio_drvq_violation(q0) != vio_drvq_violation(q1))
        QD_FAIL("after %s: driver broken state differs: single %d %s, burst %d %s", after, b0,
                vio_violation_name(vio_drvq_violation(q0)), b1,
                vio_violation_name(vio_drvq_violation(q1)));
    if (vio_drvq_num_free(q0) != vio_drvq_num_free(q1))
        QD_FAIL("after %s: num_free single %u, burst %u", after, vio_drvq_num_free(q0),
                vio_drvq_num_free(q1));
    qd_cmp_mem(&d->s[0].a, &d->s[1].a, after);
    if (b0) {
        struct vio_sg sg = {d->data, 16};
        void *t;
        void *tk = (void *)(uintptr_t)1;
        for (int k = 0; k < 2; k++) {
            struct vio_drvq *q = d->s[k].q;
            int r1 = vio_drvq_add(q, &sg, 1, 0, tk), r2 = vio_drvq_add_burst(q, &sg, 1, false, &tk),
                r3 = vio_drvq_get_used(q, &t, NULL), r4 = vio_drvq_get_used_burst(q, &t, NULL, 1);
            if (r1 != -EIO || r2 != -EIO || r3 != -EIO || r4 != -EIO)
                QD_FAIL("after %s: driver side %d broken but add %d burst %d get %d burst %d",
                        after, k, r1, r2, r3, r4);
        }
    }
}

static inline void qd_drv_record(struct qd_drv *d, uint32_t in_len)
{
    d->pos_in[d->added] = in_len;
    d->added++;
}

static inline void qd_drv_add(struct qd_drv *d, struct qd_src *src)
{
    struct qd_drv_side *s0 = &d->s[0], *s1 = &d->s[1];
    struct vio_sg sg[QD_MAXBURST];
    void *tok[QD_MAXBURST];
    unsigned k = 1 + qd_below(src, QD_MAXBURST / 2);
    bool w = qd_below(src, 2);
    for (unsigned j = 0; j < k; j++) {
        sg[j].len = 1 + qd_below(src, 1000);
        sg[j].addr = d->data + qd_below(src, QD_DATA_LEN - 1024);
        tok[j] = (void *)(uintptr_t)d->next_tok++;
    }
    unsigned n0 = 0;
    int err0 = 0;
    for (; n0 < k; n0++) {
        int r = vio_drvq_add(s0->q, &sg[n0], w ? 0 : 1, w ? 1 : 0, tok[n0]);
        if (r < 0) {
            err0 = r;
            break;
        }
    }
    int r1 = vio_drvq_add_burst(s1->q, sg, k, w, tok);
    if (r1 > 0 ? (unsigned)r1 != n0 : (n0 != 0 || err0 != r1))
        QD_FAIL("add of %u: single added %u then %d, burst returned %d", k, n0, err0, r1);
    for (unsigned j = 0; j < n0; j++)
        qd_drv_record(d, w ? sg[j].len : 0);
    d->st->bursts++;
}

/* Same call on both sides: chains and indirect tables among the single buffers. */
static inline void qd_drv_add_multi(struct qd_drv *d, struct qd_src *src)
{
    struct vio_sg sg[8];
    unsigned n_out = qd_below(src, 4), n_in = qd_below(src, 4);
    if (n_out + n_in < 2)
        n_in = 2 - n_out;
    uint32_t in_len = 0;
    for (unsigned j = 0; j < n_out + n_in; j++) {
        sg[j].len = 1 + qd_below(src, 600);
        sg[j].addr = d->data + qd_below(src, QD_DATA_LEN - 1024);
        if (j >= n_out)
            in_len += sg[j].len;
    }
    void *tok = (void *)(uintptr_t)d->next_tok++;
    int r0 = vio_drvq_add(d->s[0].q, sg, n_out, n_in, tok);
    int r1 = vio_drvq_add(d->s[1].q, sg, n_out, n_in, tok);
    if (r0 != r1)
        QD_FAIL("add of a %u+%u chain: single side %d, burst side %d", n_out, n_in, r0, r1);
    if (r0 == 0) {
        qd_drv_record(d, in_len);
        d->st->multi++;
    }
}

static inline void qd_drv_kick(struct qd_drv *d)
{
    bool broken = vio_drvq_is_broken(d->s[0].q);
    bool k0 = vio_drvq_kick_prepare(d->s[0].q), k1 = vio_drvq_kick_prepare(d->s[1].q);
    if (k0 != k1)
        QD_FAIL("kick_prepare: single %d, burst %d", k0, k1);
    if (broken)
        return;
    while (d->published != d->added) {
        if (d->npend < sizeof(d->pend) / sizeof(d->pend[0])) {
            d->pend[d->npend] = rawring_avail_slot(&d->s[0].r, d->published);
            d->pend_in[d->npend] = d->pos_in[d->published];
            d->npend++;
        }
        d->published++;
    }
}

static inline void qd_drv_used_elem(struct qd_drv *d, uint32_t id, uint32_t len)
{
    for (int k = 0; k < 2; k++)
        rawring_set_used_elem(&d->s[k].r, d->dev_used, id, len);
}

static inline void qd_drv_used_idx(struct qd_drv *d)
{
    for (int k = 0; k < 2; k++)
        rawring_set_used_idx(&d->s[k].r, d->dev_used);
}

/* The fake device completes buffers (honestly, or breaking a rule). */
static inline void qd_drv_device(struct qd_drv *d, struct qd_src *src)
{
    const uint16_t size = d->cfg.size;
    bool in_order = d->cfg.features & (1ull << VIRTIO_F_IN_ORDER);
    if (qd_below(src, 256) < d->cfg.hostile) {

        switch (qd_below(src, 6)) {
        case 0: /* id out of range */
            qd_drv_used_elem(d, size + qd_below(src, 100000), 0);
            break;
        case 1: /* an id that may or may not be in flight */
            qd_drv_used_elem(d, qd_below(src, size), 0);
            break;
        case 2: /* too long */
            if (!d->npend)
                return;
            qd_drv_used_elem(d, d->pend[0], d->pend_in[0] + 1 + qd_below(src, 100));
            break;
        case 3: /* used idx jump */
            d->dev_used = (uint16_t)(d->dev_used + d->npend + 1 + qd_below(src, 50));
            qd_drv_used_idx(d);
            return;
        case 4: /* a buffer added and not yet published */
            if (d->added == d->published)
                return;
            qd_drv_used_elem(d, rawring_avail_slot(&d->s[0].r, d->published), 0);
            break;
        default: /* the id completed last time, again */
            qd_drv_used_elem(d, d->last_id, 0);
            break;
        }
        d->dev_used++;
        qd_drv_used_idx(d);
        return;
    }
    if (!d->npend)
        return;
    unsigned c = 1 + qd_below(src, d->npend);
    if (in_order) {
        bool batch = qd_below(src, 2);
        uint16_t first = d->dev_used;
        for (unsigned j = 0; j < c; j++) {
            uint16_t head = d->pend[j];
            uint32_t len = qd_below(src, d->pend_in[j] + 1);
            if (!batch) {
                qd_drv_used_elem(d, head, len);
                d->dev_used++;
            } else if (j + 1 == c) {
                /* one entry for the batch, at its first slot, naming its last buffer */
                uint16_t save = d->dev_used;
                d->dev_used = first;
                qd_drv_used_elem(d, head, len);
                d->dev_used = (uint16_t)(save + c);
            }
            d->last_id = head;
        }
        memmove(d->pend, d->pend + c, (d->npend - c) * sizeof(d->pend[0]));
        memmove(d->pend_in, d->pend_in + c, (d->npend - c) * sizeof(d->pend_in[0]));
        d->npend -= c;
    } else {
        for (unsigned j = 0; j < c; j++) {
            unsigned x = qd_below(src, d->npend);
            uint16_t head = d->pend[x];
            uint32_t in = d->pend_in[x];
            d->npend--;
            d->pend[x] = d->pend[d->npend];
            d->pend_in[x] = d->pend_in[d->npend];
            qd_drv_used_elem(d, head, qd_below(src, in + 1));
            d->dev_used++;
            d->last_id = head;
        }
    }
    qd_drv_used_idx(d);
}

static inline void qd_drv_get(struct qd_drv *d, struct qd_src *src)
{
    struct qd_drv_side *s0 = &d->s[0], *s1 = &d->s[1];
    unsigned max = qd_below(src, 8) == 0 ? 0 : 1 + qd_below(src, QD_MAXBURST);
    bool nolen = qd_below(src, 4) == 0;
    unsigned n0 = 0;
    int err0 = 0;
    while (n0 < max) {
        int r = vio_drvq_get_used(s0->q, &s0->tok[n0], nolen ? NULL : &s0->len[n0]);
        if (r < 0) {
            err0 = r;
            break;
        }
        n0++;
    }
    bool was_broken = vio_drvq_is_broken(s1->q);
    int r1 = vio_drvq_get_used_burst(s1->q, s1->tok, nolen ? NULL : s1->len, max);
    if (max == 0 && !(r1 == (was_broken ? -EIO : 0)))
        QD_FAIL("get_used_burst of 0 on a %s queue: %d", was_broken ? "broken" : "working", r1);
    if (max && (r1 > 0 ? (unsigned)r1 != n0
                       : (r1 == 0 ? (n0 != 0 || err0 != -EAGAIN) : (n0 != 0 || err0 != r1))))
        QD_FAIL("get_used (max %u): single took %u then %d, burst returned %d", max, n0, err0, r1);
    for (unsigned k = 0; k < n0; k++)
        if (s0->tok[k] != s1->tok[k] || (!nolen && s0->len[k] != s1->len[k]))
            QD_FAIL("get_used: buffer %u differs: single token %p len %u, burst token %p len %u",
                    k, s0->tok[k], nolen ? 0 : s0->len[k], s1->tok[k], nolen ? 0 : s1->len[k]);
    d->st->chains += n0;
    d->st->bursts++;
}

static inline void qd_drv_misc(struct qd_drv *d, struct qd_src *src)
{
    struct vio_drvq *q0 = d->s[0].q, *q1 = d->s[1].q;
    switch (qd_below(src, 4)) {
    case 0: {
        bool a = vio_drvq_enable_cb(q0), b = vio_drvq_enable_cb(q1);
        if (a != b)
            QD_FAIL("enable_cb: single %d, burst %d", a, b);
        break;
    }
    case 1: {
        bool a = vio_drvq_enable_cb_delayed(q0), b = vio_drvq_enable_cb_delayed(q1);
        if (a != b)
            QD_FAIL("enable_cb_delayed: single %d, burst %d", a, b);
        break;
    }
    case 2:
        vio_drvq_disable_cb(q0);
        vio_drvq_disable_cb(q1);
        break;
    default: { /* caller error: a zero-length segment */
        struct vio_sg sg = {d->data, 0};
        void *tok = (void *)(uintptr_t)d->next_tok;
        int a = vio_drvq_add(q0, &sg, 0, 1, tok), b = vio_drvq_add_burst(q1, &sg, 1, true, &tok);
        if (a != b)
            QD_FAIL("zero-length add: single %d, burst %d", a, b);
        break;
    }
    }
}

static inline void qd_drv_fini(struct qd_drv *d)
{
    for (int k = 0; k < 2; k++) {
        vio_drvq_free(d->s[k].q);
        d->s[k].q = NULL;
        arena_fini(&d->s[k].a);
    }
    free(d->pos_in);
    d->pos_in = NULL;
}

static inline int qd_drv_init(struct qd_drv *d, struct qd_drv_side sides[2],
                              const struct qd_drv_cfg *cfg, struct qd_stats *st)
{
    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
    d->s = sides;
    d->st = st;
    d->next_tok = 1;
    d->pos_in = calloc(QD_POS, sizeof(*d->pos_in));
    if (!d->pos_in)
        return -ENOMEM;
    bool ind = cfg->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
    for (int k = 0; k < 2; k++) {
        struct qd_drv_side *s = &sides[k];
        memset(&s->a, 0, sizeof(s->a));
        s->q = NULL;
        int rc = arena_init_simple(&s->a, QD_BASE, QD_DRV_ARENA);
        if (rc < 0)
            return rc;
        struct vio_drvq_config dc;
        if ((rc = arena_drvq_config(&s->a, &dc, cfg->size, cfg->features, ind ? 4 : 0)) < 0)
            return rc;
        uint64_t data = arena_alloc(&s->a, QD_DATA_LEN, 16);
        if (!data)
            return -ENOMEM;
        if (k == 0)
            d->data = data;
        else if (data != d->data)
            QD_FAIL("the two arenas differ in layout");
        if ((rc = vio_drvq_new(&dc, &s->q)) < 0)
            return rc;
        if ((rc = rawring_attach(&s->r, &s->a, cfg->size, dc.desc, dc.driver, dc.device)) < 0)
            return rc;
    }
    return 0;
}

static inline void qd_drv_run(struct qd_drv *d, struct qd_src *src, unsigned ops)
{
    static const char *const names[] = {"add",    "add",    "add",  "add chain", "kick",
                                        "device", "device", "get",  "get",       "misc"};
    for (unsigned op = 0; op < ops && qd_more(src); op++) {
        unsigned what = qd_below(src, 10);
        switch (what) {
        case 0: case 1: case 2: qd_drv_add(d, src); break;
        case 3: qd_drv_add_multi(d, src); break;
        case 4: qd_drv_kick(d); break;
        case 5: case 6: qd_drv_device(d, src); break;
        case 7: case 8: qd_drv_get(d, src); break;
        default: qd_drv_misc(d, src); break;
        }
        d->st->ops++;
        qd_drv_check(d, names[what]);
    }
    if (vio_drvq_is_broken(d->s[0].q)) {
        d->st->broken_runs++;
        d->st->viol_seen[vio_drvq_violation(d->s[0].q)]++;
    }
    /* what is left comes back the same way on both sides */
    for (;;) {
        void *t0 = NULL, *t1 = NULL;
        int r0 = vio_drvq_detach_unused(d->s[0].q, &t0), r1 = vio_drvq_detach_unused(d->s[1].q, &t1);
        if (r0 != r1 || t0 != t1)
            QD_FAIL("detach_unused: single %d %p, burst %d %p", r0, t0, r1, t1);
        if (r0 < 0)
            break;
    }
    qd_drv_check(d, "detach");
}

#endif
