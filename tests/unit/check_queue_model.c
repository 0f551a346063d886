/* SPDX-License-Identifier: MIT */
/*
 * Suite "queue_model": a randomized model test of both sides of one split ring.
 *
 * One vio_drvq (driver side) and one vio_queue (device side) share a ring in
 * one arena. A seeded PRNG picks driver operations (add, kick_prepare,
 * get_used, get_used_burst, enable/disable_cb, invalid adds) and device
 * operations (pop with small and large iovec capacities, push, push_batch,
 * push_in_order, rewind, enable/disable_notify, needs_notify) while a model of
 * the ring predicts every result:
 *
 *  - every buffer added comes back from get_used exactly once, in used-ring
 *    order, with its own token and the length the device pushed (buffers an
 *    IN_ORDER batch skipped report their whole writable length);
 *  - every chain the device pops is exactly the buffer the driver added:
 *    addresses (compared as host pointers), lengths, readable/writable split,
 *    descriptor count, and the head the driver put in the avail ring;
 *  - the driver never hands out a descriptor that is still in flight;
 *  - notification decisions equal a reference computation from the raw ring
 *    fields (vring_need_event() with EVENT_IDX, the NO_NOTIFY/NO_INTERRUPT
 *    flags without), and no wakeup is lost after enable_cb/enable_notify;
 *  - no queue ever turns broken; num_free returns to the size after draining.
 *
 * The seed is printed; set VIO_SEED to replay a run and VIO_MODEL_STEPS to
 * change the number of steps per feature combination.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "arena.h"
#include "virtio/queue.h"
#include "virtio/status.h"

/* Check's ck_assert_* record every passing check (one write() each): far too slow for a
 * million-step model. These only call into Check when a condition fails. */
#define CHK_MSG(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)
#define CHK(cond) CHK_MSG(cond, "%s:%d: assertion %s failed", __FILE__, __LINE__, #cond)
#define CHK_OP_(T, F, a, op, b)                                                                    \
    do {                                                                                           \
        T a_ = (T)(a), b_ = (T)(b);                                                                \
        if (!(a_ op b_))                                                                           \
            ck_abort_msg("%s:%d: %s %s %s failed (" F " vs " F ")", __FILE__, __LINE__, #a, #op,  \
                         #b, a_, b_);                                                              \
    } while (0)
#define CHK_INT(a, op, b) CHK_OP_(long long, "%lld", a, op, b)
#define CHK_UINT(a, op, b) CHK_OP_(unsigned long long, "%llu", a, op, b)

#define MAXSEG 8          /* segments per buffer */
#define MAXQ 256          /* largest queue size the model uses */
#define IND_MAX 8         /* descriptors per indirect table */
#define MAXPIECE (MAXSEG * 2) /* a segment crosses at most one region boundary */
#define IOV_BIG 40
#define DEFAULT_STEPS 3000000u

/* ------------------------------------------------------------------------ */
/* PRNG (xorshift64*), seeded from VIO_SEED or the clock */

static uint64_t g_seed;

struct rng {
    uint64_t s;
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

/* uniform-ish in [0, n), n > 0 */
static uint32_t below(struct rng *r, uint32_t n)
{
    return (uint32_t)((rnd(r) >> 32) % n);
}

static unsigned steps_per_combo(void)
{
    const char *s = getenv("VIO_MODEL_STEPS");
    if (s && *s) {
        unsigned long v = strtoul(s, NULL, 0);
        if (v > 0)
            return (unsigned)v;
    }
    return DEFAULT_STEPS;
}

/* vring_need_event() of the spec, written out so the reference does not depend on the
 * header the library uses. */
static bool ref_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* ------------------------------------------------------------------------ */
/* Model state */

enum bstate { B_FREE, B_PENDING, B_AVAIL, B_POPPED, B_USED };

struct buf {
    uint64_t seq;      /* unique per added buffer (part of the token) */
    enum bstate st;
    unsigned nseg, n_out;
    struct vio_sg sg[MAXSEG];
    uint32_t out_len, in_len;
    uint16_t ndesc;    /* descriptors the buffer occupies in the ring's table */
    uint16_t head;     /* read from the avail ring at kick time */
    uint16_t avail_idx;
};

struct used_exp {
    uint16_t rec;
    uint32_t len;
    bool entry_end; /* last buffer named by one used-ring entry */
};

struct piece {
    uintptr_t base;
    size_t len;
};

struct model {
    struct rng r;
    bool ev, ind, ino;
    uint64_t feat;
    uint16_t size;

    struct arena a;
    struct rawring raw;
    struct vio_drvq *dq;
    struct vio_queue *q;
    uint64_t win_gpa[2], win_len[2];
    unsigned nwin;

    struct buf b[MAXQ];
    uint16_t freerec[MAXQ];
    unsigned nfreerec;
    uint64_t next_seq;
    int16_t head_owner[MAXQ]; /* record owning descriptor i (in flight), -1 none */

    /* driver */
    uint16_t pending[MAXQ];
    unsigned npending;
    uint16_t avail_pub;        /* avail idx published so far */
    uint16_t avail_log[65536]; /* record published at each avail idx */
    unsigned desc_inflight;
    bool cb_armed;             /* enable_cb said "nothing pending": next used must interrupt */
    uint16_t cb_armed_at;      /* device used idx when enable_cb armed */
    bool partial;              /* in the middle of an IN_ORDER batch (get_used side) */

    /* device */
    uint16_t last_avail;
    uint16_t popord[MAXQ];     /* popped, not pushed, in pop order */
    unsigned npop;
    unsigned pops_since_push;
    uint16_t used_idx;         /* device's used idx */
    uint16_t notified_used;    /* used idx at the last needs_notify() */
    bool notified_valid;       /* notified_used is a usable "old" for vring_need_event() */
    bool notify_unsure;        /* > 32767 entries since the last decision: either answer is fine */
    bool notify_armed;         /* enable_notify said "nothing available": next publish must kick */

    /* used entries expected by the driver, in order */
    struct used_exp fifo[2 * MAXQ];
    unsigned fhead, fcount;

    bool broken_seen;
    unsigned long st_add, st_enospc, st_pop, st_enobufs, st_push, st_batch, st_inorder,
        st_rewind, st_kick, st_kick_yes, st_irq, st_irq_yes, st_detach;
};

/* The library logs through this; anything at WARN or above is printed (and a broken queue
 * fails the test through the on_broken hook and the is_broken checks). */
static void model_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    if (level <= VIO_LOG_WARN)
        fprintf(stderr, "queue_model: log %d %s: %s\n", level, object ? object : "-", msg);
}

static void model_on_broken(void *opaque, struct vio_queue *q, enum vio_violation why)
{
    struct model *m = opaque;
    (void)q;
    m->broken_seen = true;
    fprintf(stderr, "queue_model: device queue broken: %s\n", vio_violation_name(why));
}

static void *tok_of(const struct model *m, unsigned rec)
{
    return (void *)(uintptr_t)((m->b[rec].seq << 16) | rec);
}

static void check_not_broken(struct model *m)
{
    CHK_MSG(!vio_queue_is_broken(m->q), "device queue broken: %s",
                  vio_violation_name(vio_queue_violation(m->q)));
    CHK_MSG(!vio_drvq_is_broken(m->dq), "driver queue broken: %s",
                  vio_violation_name(vio_drvq_violation(m->dq)));
    CHK(!m->broken_seen);
}

/* ------------------------------------------------------------------------ */
/* Expected host ranges of a buffer */

static unsigned piece_add(struct piece *p, unsigned n, uintptr_t base, size_t len)
{
    if (n && p[n - 1].base + p[n - 1].len == base) {
        p[n - 1].len += len;
        return n;
    }
    p[n].base = base;
    p[n].len = len;
    return n + 1;
}

/* Host pieces of guest range [gpa, gpa+len), appended (merged when host-contiguous). Returns the
 * new count; *raw counts pieces before merging (what a walker needs at most). */
static unsigned expand(const struct model *m, uint64_t gpa, uint64_t len, struct piece *p,
                       unsigned n, unsigned *raw)
{
    while (len) {
        const struct arena_region *reg = NULL;
        for (unsigned i = 0; i < m->a.nreg; i++)
            if (gpa >= m->a.reg[i].gpa && gpa - m->a.reg[i].gpa < m->a.reg[i].size)
                reg = &m->a.reg[i];
        CHK_MSG(reg != NULL, "model bug: segment %#" PRIx64 " unmapped", gpa);
        uint64_t room = reg->size - (gpa - reg->gpa);
        uint64_t take = room < len ? room : len;
        n = piece_add(p, n, (uintptr_t)(reg->host + (gpa - reg->gpa)), (size_t)take);
        if (raw)
            (*raw)++;
        gpa += take;
        len -= take;
    }
    return n;
}

static unsigned raw_pieces(const struct model *m, const struct buf *b)
{
    struct piece p[MAXPIECE];
    unsigned raw = 0;
    for (unsigned i = 0; i < b->nseg; i++)
        (void)expand(m, b->sg[i].addr, b->sg[i].len, p, 0, &raw);
    return raw;
}

static void check_chain(const struct model *m, const struct buf *b, const struct vio_chain *c,
                        const struct iovec *iov)
{
    struct piece eo[MAXPIECE], ei[MAXPIECE], ao[IOV_BIG], ai[IOV_BIG];
    unsigned neo = 0, nei = 0, nao = 0, nai = 0;

    for (unsigned i = 0; i < b->nseg; i++) {
        if (i < b->n_out)
            neo = expand(m, b->sg[i].addr, b->sg[i].len, eo, neo, NULL);
        else
            nei = expand(m, b->sg[i].addr, b->sg[i].len, ei, nei, NULL);
    }
    uint64_t so = 0, si = 0;
    for (unsigned i = 0; i < c->n_out; i++) {
        CHK_UINT(iov[i].iov_len, >, 0);
        so += iov[i].iov_len;
        nao = piece_add(ao, nao, (uintptr_t)iov[i].iov_base, iov[i].iov_len);
    }
    for (unsigned i = c->n_out; i < c->n_out + c->n_in; i++) {
        CHK_UINT(iov[i].iov_len, >, 0);
        si += iov[i].iov_len;
        nai = piece_add(ai, nai, (uintptr_t)iov[i].iov_base, iov[i].iov_len);
    }
    CHK_UINT(c->head, ==, b->head);
    CHK_UINT(c->ndesc, ==, b->ndesc);
    CHK_UINT(c->out_len, ==, b->out_len);
    CHK_UINT(c->in_len, ==, b->in_len);
    CHK_UINT(so, ==, b->out_len);
    CHK_UINT(si, ==, b->in_len);
    CHK_UINT(nao, ==, neo);
    CHK_UINT(nai, ==, nei);
    for (unsigned i = 0; i < neo; i++) {
        CHK_MSG(ao[i].base == eo[i].base && ao[i].len == eo[i].len,
                      "readable piece %u: got %#lx+%zu want %#lx+%zu", i, (unsigned long)ao[i].base,
                      ao[i].len, (unsigned long)eo[i].base, eo[i].len);
    }
    for (unsigned i = 0; i < nei; i++) {
        CHK_MSG(ai[i].base == ei[i].base && ai[i].len == ei[i].len,
                      "writable piece %u: got %#lx+%zu want %#lx+%zu", i, (unsigned long)ai[i].base,
                      ai[i].len, (unsigned long)ei[i].base, ei[i].len);
    }
}

/* ------------------------------------------------------------------------ */
/* Raw view of what the driver wrote: descriptor ownership and chain shape */

static void claim_desc(struct model *m, uint16_t i, unsigned rec)
{
    CHK_UINT(i, <, m->size);
    CHK_MSG(m->head_owner[i] < 0, "descriptor %u handed out while still in flight", i);
    m->head_owner[i] = (int16_t)rec;
}

/* At kick time: the chain at b->head in the raw table must be exactly the buffer. */
static void claim_chain(struct model *m, unsigned rec)
{
    struct buf *b = &m->b[rec];
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
    uint16_t i = b->head;

    if (b->ndesc == 1 && b->nseg > 1) {
        rawring_get_desc(&m->raw, i, &addr, &len, &flags, &next);
        CHK_UINT(flags & (VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT), ==, VRING_DESC_F_INDIRECT);
        CHK_UINT(len, ==, 16u * b->nseg);
        claim_desc(m, i, rec);
        for (unsigned k = 0; k < b->nseg; k++) {
            struct vring_desc d;
            CHK_INT(arena_read(&m->a, addr + 16u * k, &d, sizeof(d)), ==, 0);
            CHK_UINT(d.addr, ==, b->sg[k].addr);
            CHK_UINT(d.len, ==, b->sg[k].len);
            CHK_UINT(!!(d.flags & VRING_DESC_F_WRITE), ==, k >= b->n_out);
            CHK_UINT(!!(d.flags & VRING_DESC_F_NEXT), ==, k + 1 < b->nseg);
            CHK_UINT(d.flags & VRING_DESC_F_INDIRECT, ==, 0);
        }
        return;
    }
    CHK_UINT(b->ndesc, ==, b->nseg);
    for (unsigned k = 0; k < b->nseg; k++) {
        rawring_get_desc(&m->raw, i, &addr, &len, &flags, &next);
        claim_desc(m, i, rec);
        CHK_UINT(addr, ==, b->sg[k].addr);
        CHK_UINT(len, ==, b->sg[k].len);
        CHK_UINT(!!(flags & VRING_DESC_F_WRITE), ==, k >= b->n_out);
        CHK_UINT(!!(flags & VRING_DESC_F_NEXT), ==, k + 1 < b->nseg);
        CHK_UINT(flags & VRING_DESC_F_INDIRECT, ==, 0);
        i = next;
    }
}

static void release_chain(struct model *m, unsigned rec)
{
    for (unsigned i = 0; i < m->size; i++)
        if (m->head_owner[i] == (int16_t)rec)
            m->head_owner[i] = -1;
}

/* ------------------------------------------------------------------------ */
/* Epoch setup / teardown */

static void epoch_setup(struct model *m)
{
    static const uint16_t sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    struct arena_config ac = {.base = 0x40000000ull, .size = 4u << 20};

    m->size = sizes[below(&m->r, sizeof(sizes) / sizeof(sizes[0]))];
    if (below(&m->r, 3) != 0) /* mostly two regions whose host memory is not adjacent */
        ac.split = 2u << 20;
    if (below(&m->r, 4) == 0)
        ac.base = 0;
    CHK_INT(arena_init(&m->a, &ac), ==, 0);

    struct vio_drvq_config dc;
    CHK_INT(arena_drvq_config(&m->a, &dc, m->size, m->feat, m->ind ? IND_MAX : 0), ==, 0);
    dc.log = model_log;
    dc.name = "model-drv";
    CHK_INT(vio_drvq_new(&dc, &m->dq), ==, 0);
    int rc = vio_queue_setup(m->q, m->a.mem, m->size, m->feat, dc.desc, dc.driver, dc.device);
    CHK_INT(rc, ==, 0);
    CHK(vio_queue_ready(m->q));
    CHK_UINT(vio_queue_size(m->q), ==, m->size);
    CHK_INT(rawring_attach(&m->raw, &m->a, m->size, dc.desc, dc.driver, dc.device), ==, 0);
    CHK_UINT(vio_drvq_num_free(m->dq), ==, m->size);

    m->nwin = 0;
    uint64_t w = arena_alloc(&m->a, 64u << 10, 16);
    CHK_UINT(w, !=, 0);
    m->win_gpa[m->nwin] = w;
    m->win_len[m->nwin++] = 64u << 10;
    if (m->a.nreg == 2) {
        /* the bump allocator leaves ARENA_BOUNDARY_RESERVE bytes free on both sides */
        m->win_gpa[m->nwin] = arena_boundary(&m->a) - ARENA_BOUNDARY_RESERVE;
        m->win_len[m->nwin++] = 2 * ARENA_BOUNDARY_RESERVE;
    }

    for (unsigned i = 0; i < MAXQ; i++) {
        m->b[i].st = B_FREE;
        m->freerec[i] = (uint16_t)(MAXQ - 1 - i);
        m->head_owner[i] = -1;
    }
    m->nfreerec = MAXQ;
    m->npending = 0;
    m->avail_pub = 0;
    m->desc_inflight = 0;
    m->cb_armed = false;
    m->partial = false;
    m->last_avail = 0;
    m->npop = 0;
    m->pops_since_push = 0;
    m->used_idx = 0;
    m->notified_used = 0;
    m->notified_valid = true; /* a fresh setup's used idx is an exact "last signalled" point */
    m->notify_unsure = false;
    m->notify_armed = false;
    m->fhead = m->fcount = 0;
    CHK_UINT(vio_queue_get_last_avail(m->q), ==, 0);
    CHK_UINT(vio_queue_get_used_idx(m->q), ==, 0);
}

static void fifo_put(struct model *m, unsigned rec, uint32_t len, bool end)
{
    CHK_UINT(m->fcount, <, 2 * MAXQ);
    struct used_exp *e = &m->fifo[(m->fhead + m->fcount++) % (2 * MAXQ)];
    e->rec = (uint16_t)rec;
    e->len = len;
    e->entry_end = end;
    m->b[rec].st = B_USED;
}

static void free_rec(struct model *m, unsigned rec)
{
    struct buf *b = &m->b[rec];
    CHK_UINT(m->desc_inflight, >=, b->ndesc);
    m->desc_inflight -= b->ndesc;
    if (b->st != B_PENDING)
        release_chain(m, rec);
    b->st = B_FREE;
    m->freerec[m->nfreerec++] = (uint16_t)rec;
}

static void check_num_free(struct model *m)
{
    unsigned nf = vio_drvq_num_free(m->dq);
    if (m->partial) /* a driver may free an IN_ORDER batch when it reads the used entry */
        CHK_UINT(nf, >=, m->size - m->desc_inflight);
    else
        CHK_UINT(nf, ==, m->size - m->desc_inflight);
}

/* ------------------------------------------------------------------------ */
/* Driver operations */

static void gen_seg(struct model *m, struct vio_sg *sg)
{
    unsigned w = below(&m->r, m->nwin);
    uint32_t maxlen = below(&m->r, 4) == 0 ? 4096 : 300;
    uint32_t len = 1 + below(&m->r, maxlen);
    sg->addr = m->win_gpa[w] + below(&m->r, (uint32_t)(m->win_len[w] - len + 1));
    sg->len = len;
}

static void op_add(struct model *m)
{
    if (m->nfreerec == 0)
        return;
    unsigned maxn = m->ind ? IND_MAX : (m->size < MAXSEG ? m->size : MAXSEG);
    unsigned n = 1 + below(&m->r, maxn);
    if (below(&m->r, 3) == 0)
        n = 1;
    unsigned rec = m->freerec[m->nfreerec - 1];
    struct buf *b = &m->b[rec];

    b->nseg = n;
    b->n_out = below(&m->r, n + 1);
    b->out_len = b->in_len = 0;
    for (unsigned i = 0; i < n; i++) {
        gen_seg(m, &b->sg[i]);
        if (i < b->n_out)
            b->out_len += b->sg[i].len;
        else
            b->in_len += b->sg[i].len;
    }
    b->ndesc = (uint16_t)((m->ind && n > 1) ? 1 : n);
    b->seq = ++m->next_seq;

    unsigned nf = vio_drvq_num_free(m->dq);
    int rc = vio_drvq_add(m->dq, b->sg, b->n_out, n - b->n_out, tok_of(m, rec));
    if (b->ndesc > nf) {
        CHK_INT(rc, ==, -ENOSPC);
        CHK_UINT(vio_drvq_num_free(m->dq), ==, nf);
        m->st_enospc++;
        return;
    }
    CHK_INT(rc, ==, 0);
    m->nfreerec--;
    b->st = B_PENDING;
    m->pending[m->npending++] = (uint16_t)rec;
    m->desc_inflight += b->ndesc;
    m->st_add++;
    check_num_free(m);
}

/* Calls the driver must refuse without changing anything. */
static void op_bad_add(struct model *m)
{
    struct vio_sg sg[2];
    unsigned nf = vio_drvq_num_free(m->dq);
    gen_seg(m, &sg[0]);
    gen_seg(m, &sg[1]);
    switch (below(&m->r, 3)) {
    case 0:
        CHK_INT(vio_drvq_add(m->dq, sg, 1, 0, NULL), ==, -EINVAL);
        break;
    case 1:
        CHK_INT(vio_drvq_add(m->dq, sg, 0, 0, (void *)1), ==, -EINVAL);
        break;
    default:
        sg[1].len = 0;
        CHK_INT(vio_drvq_add(m->dq, sg, 1, 1, (void *)1), ==, -EINVAL);
        break;
    }
    CHK_UINT(vio_drvq_num_free(m->dq), ==, nf);
}

static void op_kick(struct model *m)
{
    uint16_t old = m->avail_pub;
    uint16_t new_idx = (uint16_t)(old + m->npending);
    bool got = vio_drvq_kick_prepare(m->dq);

    CHK_UINT(rawring_avail_idx(&m->raw), ==, new_idx);
    for (unsigned k = 0; k < m->npending; k++) {
        unsigned rec = m->pending[k];
        struct buf *b = &m->b[rec];
        b->avail_idx = (uint16_t)(old + k);
        b->head = rawring_avail_slot(&m->raw, b->avail_idx);
        b->st = B_AVAIL;
        m->avail_log[b->avail_idx] = (uint16_t)rec;
        claim_chain(m, rec);
    }

    /* reference: the device's wishes as they stand in the raw ring */
    bool want;
    if (m->ev)
        want = ref_need_event(rawring_avail_event(&m->raw), new_idx, old);
    else
        want = !(rawring_used_flags(&m->raw) & VRING_USED_F_NO_NOTIFY);
    if (m->npending == 0)
        want = false; /* nothing published: nothing to kick for */
    CHK_MSG(got == want, "kick_prepare said %d, reference %d (old %u new %u event %u)", got,
                      want, old, new_idx, rawring_avail_event(&m->raw));
    if (m->npending && m->notify_armed) {
        CHK_MSG(got, "lost kick: device enabled notifications and saw nothing available");
    }
    if (got && m->npending)
        m->notify_armed = false;
    m->st_kick++;
    m->st_kick_yes += got;
    m->avail_pub = new_idx;
    m->npending = 0;
}

static void op_get_used(struct model *m)
{
    void *tok = NULL;
    uint32_t len = 0xdeadbeef;
    int rc = vio_drvq_get_used(m->dq, &tok, &len);

    if (m->fcount == 0) {
        CHK_INT(rc, ==, -EAGAIN);
        return;
    }
    CHK_INT(rc, ==, 0);
    struct used_exp e = m->fifo[m->fhead];
    m->fhead = (m->fhead + 1) % (2 * MAXQ);
    m->fcount--;
    CHK_MSG(tok == tok_of(m, e.rec), "get_used returned token %p, expected %p (seq %" PRIu64 ")",
                  tok, tok_of(m, e.rec), m->b[e.rec].seq);
    CHK_UINT(len, ==, e.len);
    /* the ring is done with every buffer one used entry names: the driver may reuse their
     * descriptors before it has returned all their tokens */
    if (!e.entry_end) {
        for (unsigned k = 0; k < m->fcount; k++) {
            const struct used_exp *f = &m->fifo[(m->fhead + k) % (2 * MAXQ)];
            release_chain(m, f->rec);
            if (f->entry_end)
                break;
        }
    }
    free_rec(m, e.rec);
    m->partial = !e.entry_end;
    m->cb_armed = false;
    check_num_free(m);
}

/* vio_drvq_get_used_burst(): the same buffers, in the same order, as get_used() would give */
static void op_burst(struct model *m)
{
    void *toks[2 * MAXQ + 1];
    uint32_t lens[2 * MAXQ + 1];
    unsigned max = below(&m->r, 2u * m->size + 2u);
    bool want_lens = below(&m->r, 4) != 0;
    int n = vio_drvq_get_used_burst(m->dq, toks, want_lens ? lens : NULL, max);
    unsigned expect = m->fcount < max ? m->fcount : max;
    CHK_INT(n, ==, expect);
    for (int k = 0; k < n; k++) {
        struct used_exp e = m->fifo[m->fhead];
        m->fhead = (m->fhead + 1) % (2 * MAXQ);
        m->fcount--;
        CHK_MSG(toks[k] == tok_of(m, e.rec), "burst[%d] returned token %p, expected %p", k, toks[k],
                tok_of(m, e.rec));
        if (want_lens)
            CHK_UINT(lens[k], ==, e.len);
        if (!e.entry_end) {
            for (unsigned j = 0; j < m->fcount; j++) {
                const struct used_exp *f = &m->fifo[(m->fhead + j) % (2 * MAXQ)];
                release_chain(m, f->rec);
                if (f->entry_end)
                    break;
            }
        }
        free_rec(m, e.rec);
        m->partial = !e.entry_end;
        m->cb_armed = false;
    }
    check_num_free(m);
}

static void op_enable_cb(struct model *m)
{
    bool more = vio_drvq_enable_cb(m->dq);
    CHK_MSG(more == (m->fcount > 0), "enable_cb said %d with %u used buffers pending", more,
                  m->fcount);
    m->cb_armed = !more;
    m->cb_armed_at = m->used_idx;
    if (!m->ev)
        CHK_UINT(rawring_avail_flags(&m->raw) & VRING_AVAIL_F_NO_INTERRUPT, ==, 0);
}

static void op_disable_cb(struct model *m)
{
    vio_drvq_disable_cb(m->dq);
    m->cb_armed = false;
    if (!m->ev)
        CHK_UINT(rawring_avail_flags(&m->raw) & VRING_AVAIL_F_NO_INTERRUPT, !=, 0);
}

/* ------------------------------------------------------------------------ */
/* Device operations */

static void op_pop(struct model *m)
{
    bool avail = m->avail_pub != m->last_avail;
    CHK_INT(vio_queue_has_avail(m->q), ==, avail);

    struct vio_chain c;
    struct iovec iov[IOV_BIG];
    unsigned cap = IOV_BIG;
    unsigned need = 0;
    if (avail) {
        need = raw_pieces(m, &m->b[m->avail_log[m->last_avail]]);
        if (below(&m->r, 8) == 0)
            cap = below(&m->r, need + 1); /* sometimes too small (even 0) */
    }
    memset(&c, 0xa5, sizeof(c));
    int rc = vio_queue_pop(m->q, &c, iov, cap);
    if (!avail) {
        CHK_INT(rc, ==, -EAGAIN);
        return;
    }
    unsigned rec = m->avail_log[m->last_avail];
    struct buf *b = &m->b[rec];
    if (rc == -ENOBUFS) {
        CHK_UINT(cap, <, need);
        CHK_UINT(vio_queue_get_last_avail(m->q), ==, m->last_avail);
        m->st_enobufs++;
        return;
    }
    CHK_MSG(rc == 0, "pop returned %d (cap %u need %u)", rc, cap, need);
    CHK_UINT(c.n_out + c.n_in, <=, cap);
    CHK_INT(b->st, ==, B_AVAIL);
    check_chain(m, b, &c, iov);
    b->st = B_POPPED;
    m->popord[m->npop++] = (uint16_t)rec;
    m->last_avail++;
    m->pops_since_push++;
    CHK_UINT(vio_queue_get_last_avail(m->q), ==, m->last_avail);
    m->st_pop++;
}

static uint32_t pick_len(struct model *m, uint32_t in_len)
{
    if (in_len == 0)
        return 0;
    switch (below(&m->r, 4)) {
    case 0:
        return in_len;
    case 1:
        return 0;
    default:
        return below(&m->r, in_len + 1);
    }
}

static void popord_remove(struct model *m, unsigned k)
{
    memmove(&m->popord[k], &m->popord[k + 1], (m->npop - k - 1) * sizeof(m->popord[0]));
    m->npop--;
}

/* @p count buffers were marked used (the used idx counts buffers, also for an IN_ORDER batch
 * that writes one entry). */
static void after_push(struct model *m, unsigned count)
{
    uint16_t new_idx = (uint16_t)(m->used_idx + count);
    /* like vhost: once the used idx runs past the last signalled value, the old value is no
     * basis for vring_need_event() and the next decision must be "notify" */
    if ((uint16_t)(new_idx - m->notified_used) < count)
        m->notified_valid = false;
    if ((uint16_t)(new_idx - m->notified_used) >= 0x8000u)
        m->notify_unsure = true;
    m->used_idx = new_idx;
    m->pops_since_push = 0;
    CHK_UINT(rawring_used_idx(&m->raw), ==, m->used_idx);
    CHK_UINT(vio_queue_get_used_idx(m->q), ==, m->used_idx);
}

static void check_used_elem(struct model *m, uint16_t slot, uint16_t head, uint32_t len)
{
    uint32_t id, l;
    rawring_used_elem(&m->raw, slot, &id, &l);
    CHK_UINT(id, ==, head);
    CHK_UINT(l, ==, len);
}

static void op_push(struct model *m)
{
    if (m->npop == 0) {
        CHK_INT(vio_queue_push(m->q, m->size, 0), ==, -EINVAL);
        CHK_UINT(vio_queue_get_used_idx(m->q), ==, m->used_idx);
        return;
    }
    unsigned k = m->ino ? 0 : below(&m->r, m->npop);
    unsigned rec = m->popord[k];
    struct buf *b = &m->b[rec];
    uint32_t len = pick_len(m, b->in_len);
    CHK_INT(vio_queue_push(m->q, b->head, len), ==, 0);
    popord_remove(m, k);
    fifo_put(m, rec, len, true);
    check_used_elem(m, m->used_idx, b->head, len);
    after_push(m, 1);
    m->st_push++;
}

static void op_push_batch(struct model *m)
{
    if (m->npop == 0)
        return;
    struct vio_used_elem el[8];
    unsigned n = 1 + below(&m->r, m->npop < 8 ? m->npop : 8);
    for (unsigned i = 0; i < n; i++) {
        unsigned k = m->ino ? 0 : below(&m->r, m->npop);
        unsigned rec = m->popord[k];
        struct buf *b = &m->b[rec];
        el[i].id = b->head;
        el[i].len = pick_len(m, b->in_len);
        popord_remove(m, k);
        fifo_put(m, rec, el[i].len, true);
    }
    CHK_INT(vio_queue_push_batch(m->q, el, n), ==, 0);
    for (unsigned i = 0; i < n; i++)
        check_used_elem(m, (uint16_t)(m->used_idx + i), (uint16_t)el[i].id, el[i].len);
    after_push(m, n);
    m->st_batch++;
}

static void op_push_in_order(struct model *m)
{
    if (!m->ino) {
        CHK_INT(vio_queue_push_in_order(m->q, 0, 0, 1), ==, -ENOTSUP);
        CHK_UINT(vio_queue_get_used_idx(m->q), ==, m->used_idx);
        return;
    }
    if (m->npop == 0)
        return;
    unsigned count = 1 + below(&m->r, m->npop);
    for (unsigned i = 0; i + 1 < count; i++)
        fifo_put(m, m->popord[i], m->b[m->popord[i]].in_len, false);
    unsigned last = m->popord[count - 1];
    uint32_t len = pick_len(m, m->b[last].in_len);
    fifo_put(m, last, len, true);
    CHK_INT(vio_queue_push_in_order(m->q, m->b[last].head, len, (uint16_t)count), ==, 0);
    for (unsigned i = 0; i < count; i++)
        popord_remove(m, 0);
    /* spec 2.7.9: one entry, at the slot of the batch's first buffer */
    check_used_elem(m, m->used_idx, m->b[last].head, len);
    after_push(m, count);
    m->st_inorder++;
}

static void op_rewind(struct model *m)
{
    unsigned n = 1 + below(&m->r, 4);
    /* "popped since the last push": always allowed */
    bool strict = n <= m->pops_since_push;
    /* the last n pops are all still unpushed: a looser implementation may allow it */
    bool loose = n <= m->npop;
    for (unsigned j = 0; loose && j < n; j++)
        loose = m->b[m->popord[m->npop - 1 - j]].avail_idx == (uint16_t)(m->last_avail - 1 - j);
    if (!loose && n <= m->npop)
        return; /* would hand back a slot already pushed: caller bug, not exercised */

    int rc = vio_queue_rewind(m->q, (uint16_t)n);
    if (strict)
        CHK_INT(rc, ==, 0);
    else if (!loose)
        CHK_INT(rc, ==, -EINVAL);
    else
        CHK(rc == 0 || rc == -EINVAL);
    if (rc != 0) {
        CHK_UINT(vio_queue_get_last_avail(m->q), ==, m->last_avail);
        return;
    }
    for (unsigned j = 0; j < n; j++)
        m->b[m->popord[--m->npop]].st = B_AVAIL;
    m->last_avail = (uint16_t)(m->last_avail - n);
    m->pops_since_push = m->pops_since_push >= n ? m->pops_since_push - n : 0;
    CHK_UINT(vio_queue_get_last_avail(m->q), ==, m->last_avail);
    m->st_rewind++;
}

static void op_enable_notify(struct model *m)
{
    bool more = vio_queue_enable_notify(m->q);
    CHK_INT(more, ==, m->avail_pub != m->last_avail);
    m->notify_armed = !more;
    if (!m->ev)
        CHK_UINT(rawring_used_flags(&m->raw) & VRING_USED_F_NO_NOTIFY, ==, 0);
}

static void op_disable_notify(struct model *m)
{
    vio_queue_disable_notify(m->q);
    m->notify_armed = false;
    if (!m->ev)
        CHK_UINT(rawring_used_flags(&m->raw) & VRING_USED_F_NO_NOTIFY, !=, 0);
}

static void op_needs_notify(struct model *m)
{
    uint16_t ue = rawring_used_event(&m->raw);
    uint16_t af = rawring_avail_flags(&m->raw);
    uint16_t old = m->notified_used, new_idx = m->used_idx;
    bool got = vio_queue_needs_notify(m->q);
    bool want;
    if (m->notified_valid && new_idx == old)
        want = false; /* nothing pushed since the last decision */
    else if (!m->ev)
        want = !(af & VRING_AVAIL_F_NO_INTERRUPT);
    else
        want = !m->notified_valid || ref_need_event(ue, new_idx, old);

    if (!m->notify_unsure)
        CHK_MSG(got == want,
                      "needs_notify said %d, reference %d (used_event %u new %u old %u flags %#x)",
                      got, want, ue, new_idx, old, af);
    if (m->cb_armed && new_idx != m->cb_armed_at)
        CHK_MSG(got,
                      "lost interrupt: driver enabled callbacks and had nothing pending "
                      "(used_event %u new %u old %u valid %d)",
                      ue, new_idx, old, m->notified_valid);
    if (got && new_idx != old)
        m->cb_armed = false;
    m->notified_used = new_idx;
    m->notified_valid = true;
    m->notify_unsure = false;
    m->st_irq++;
    m->st_irq_yes += got;
}

/* ------------------------------------------------------------------------ */
/* Drain or detach at the end of an epoch */

static void epoch_drain(struct model *m)
{
    for (unsigned round = 0; round < 4 * MAXQ + 8; round++) {
        if (m->npending)
            op_kick(m);
        while (m->avail_pub != m->last_avail) {
            unsigned before = m->last_avail;
            op_pop(m);
            if (m->last_avail == before) { /* too small a capacity was drawn: pop again */
                continue;
            }
        }
        while (m->npop) {
            if (m->ino && below(&m->r, 2))
                op_push_in_order(m);
            else
                op_push(m);
        }
        op_needs_notify(m);
        while (m->fcount)
            op_get_used(m);
        op_get_used(m); /* -EAGAIN */
        if (m->desc_inflight == 0)
            break;
    }
    CHK_UINT(m->desc_inflight, ==, 0);
    CHK_UINT(m->nfreerec, ==, MAXQ);
    CHK_UINT(vio_drvq_num_free(m->dq), ==, m->size);
    void *tok;
    CHK_INT(vio_drvq_detach_unused(m->dq, &tok), ==, -EAGAIN);
}

/* Device reset: collect what was used, then every other buffer comes back exactly once. */
static void epoch_detach(struct model *m)
{
    while (m->fcount)
        op_get_used(m);
    vio_queue_reset(m->q);
    CHK(!vio_queue_ready(m->q));
    unsigned outstanding = MAXQ - m->nfreerec;
    for (unsigned k = 0; k < outstanding; k++) {
        void *tok = NULL;
        CHK_INT(vio_drvq_detach_unused(m->dq, &tok), ==, 0);
        uintptr_t t = (uintptr_t)tok;
        unsigned rec = t & 0xffff;
        CHK_UINT(rec, <, MAXQ);
        CHK_MSG(m->b[rec].st != B_FREE && tok == tok_of(m, rec),
                      "detach_unused returned unknown or repeated token %p", tok);
        free_rec(m, rec);
        m->st_detach++;
    }
    void *tok;
    CHK_INT(vio_drvq_detach_unused(m->dq, &tok), ==, -EAGAIN);
    CHK_UINT(m->desc_inflight, ==, 0);
    CHK_UINT(vio_drvq_num_free(m->dq), ==, m->size);
}

static void epoch_end(struct model *m)
{
    check_not_broken(m);
    if (below(&m->r, 3) == 0) {
        epoch_detach(m);
    } else {
        epoch_drain(m);
        check_not_broken(m);
        vio_queue_reset(m->q);
    }
    vio_drvq_free(m->dq);
    m->dq = NULL;
    arena_fini(&m->a);
}

/* ------------------------------------------------------------------------ */
/* The test */

enum op {
    OP_ADD, OP_BAD_ADD, OP_KICK, OP_GET_USED, OP_BURST, OP_ENABLE_CB, OP_DISABLE_CB,
    OP_POP, OP_PUSH, OP_BATCH, OP_IN_ORDER, OP_REWIND, OP_EN_NOTIFY, OP_DIS_NOTIFY, OP_NEEDS_NOTIFY,
    OP__COUNT
};

/* weights per phase: balanced, filling, draining */
static const unsigned weights[3][OP__COUNT] = {
    {24, 1, 8, 14, 3, 2, 2, 20, 8, 4, 4, 3, 2, 2, 8},
    {40, 1, 8, 4, 1, 2, 2, 8, 3, 1, 1, 3, 2, 2, 4},
    {6, 1, 8, 20, 6, 2, 2, 26, 12, 6, 6, 3, 2, 2, 10},
};

static void run_combo(unsigned combo, unsigned steps)
{
    struct model *m = calloc(1, sizeof(*m));
    CHK(m != NULL);
    m->ev = combo & 1;
    m->ind = combo & 2;
    m->ino = combo & 4;
    m->feat = vio_feature_bit(VIO_F_VERSION_1);
    if (m->ev)
        m->feat |= vio_feature_bit(VIO_F_EVENT_IDX);
    if (m->ind)
        m->feat |= vio_feature_bit(VIO_F_INDIRECT_DESC);
    if (m->ino)
        m->feat |= vio_feature_bit(VIO_F_IN_ORDER);
    uint64_t x = g_seed ^ (0x1000193ull * (combo + 1));
    m->r.s = splitmix(&x) | 1;

    struct vio_queue_config qc;
    arena_queue_config(&qc, MAXQ, "model-dev");
    qc.log = model_log;
    qc.on_broken = model_on_broken;
    qc.broken_opaque = m;
    CHK_INT(vio_queue_new(&qc, &m->q), ==, 0);

    /* a fresh ring (size, layout, features re-applied) every ~125k steps */
    const unsigned epochs = steps / 125000u > 8 ? steps / 125000u : 8;
    unsigned done = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned ep = 0; ep < epochs; ep++) {
        unsigned n = steps / epochs + (ep == epochs - 1 ? steps % epochs : 0);
        epoch_setup(m);
        unsigned phase = 0, phase_left = 0;
        for (unsigned s = 0; s < n; s++, done++) {
            if (phase_left == 0) {
                phase = below(&m->r, 3);
                phase_left = 1 + below(&m->r, 4 * m->size + 64);
            }
            phase_left--;
            unsigned total = 0;
            for (unsigned i = 0; i < OP__COUNT; i++)
                total += weights[phase][i];
            unsigned pick = below(&m->r, total), op = 0;
            while (pick >= weights[phase][op])
                pick -= weights[phase][op++];
            switch ((enum op)op) {
            case OP_ADD: op_add(m); break;
            case OP_BAD_ADD: op_bad_add(m); break;
            case OP_KICK: op_kick(m); break;
            case OP_GET_USED: op_get_used(m); break;
            case OP_BURST: op_burst(m); break;
            case OP_ENABLE_CB: op_enable_cb(m); break;
            case OP_DISABLE_CB: op_disable_cb(m); break;
            case OP_POP: op_pop(m); break;
            case OP_PUSH: op_push(m); break;
            case OP_BATCH: op_push_batch(m); break;
            case OP_IN_ORDER: op_push_in_order(m); break;
            case OP_REWIND: op_rewind(m); break;
            case OP_EN_NOTIFY: op_enable_notify(m); break;
            case OP_DIS_NOTIFY: op_disable_notify(m); break;
            case OP_NEEDS_NOTIFY: op_needs_notify(m); break;
            default: break;
            }
            if ((s & 63) == 0)
                check_not_broken(m);
        }
        epoch_end(m);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("queue_model: combo ev=%d ind=%d ino=%d: %u steps in %.2fs: add %lu (enospc %lu) "
           "pop %lu (enobufs %lu) push %lu batch %lu in_order %lu rewind %lu kick %lu/%lu "
           "irq %lu/%lu detached %lu\n",
           m->ev, m->ind, m->ino, done, secs, m->st_add, m->st_enospc, m->st_pop, m->st_enobufs,
           m->st_push, m->st_batch, m->st_inorder, m->st_rewind, m->st_kick_yes, m->st_kick,
           m->st_irq_yes, m->st_irq, m->st_detach);
    fflush(stdout);
    CHK_UINT(m->st_pop, >, 0);
    vio_queue_free(m->q);
    free(m);
}

START_TEST(test_model)
{
    run_combo((unsigned)_i, steps_per_combo());
}
END_TEST

static Suite *queue_model_suite(void)
{
    Suite *s = suite_create("queue_model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    /* combo bit 0: EVENT_IDX, bit 1: INDIRECT_DESC, bit 2: IN_ORDER */
    tcase_add_loop_test(tc, test_model, 0, 8);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *s = getenv("VIO_SEED");
    if (s && *s) {
        g_seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec ^ ((uint64_t)ts.tv_nsec << 20) ^
                     ((uint64_t)getpid() << 40);
        g_seed = splitmix(&x);
    }
    printf("queue_model: seed 0x%016" PRIx64 " (set VIO_SEED=0x%016" PRIx64 " to replay)\n", g_seed,
           g_seed);
    fflush(stdout);

    SRunner *sr = srunner_create(queue_model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
