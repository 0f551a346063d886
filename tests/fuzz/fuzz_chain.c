/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the split-ring chain walker (device side) and the used-ring reader
 * (driver side) in src/core/queue_split.c.
 *
 * Input layout:
 *   byte 0    bits 0-1 memory layout: 0 one region; 1 two guest-adjacent regions (host memory
 *             not adjacent) split at 8 KiB; 2 the same with a 4 KiB unmapped hole after
 *             8 KiB; 3 like 1 with region 1 read-only
 *             bits 2-5 log2 queue size (clamped to 8), bits 6-7 direction (0/3 any, 1 out
 *             only, 2 in only)
 *   byte 1    bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 IN_ORDER, bit 3 driver-side mode;
 *             device mode: bit 4 inflight tracking (the region's initial contents are the
 *             image's last vio_queue_inflight_size() bytes, zero if the image is shorter;
 *             after the script the device "crashes" and a new queue recovers from the
 *             region), bit 5 dirty log (bitmap of 1 + 4 * (bits 6-7) bytes)
 *   bytes 2-9 op script (run cyclically, see run_device() / run_driver())
 *   rest      device mode: guest memory image copied to guest address 0 (bytes that fall in
 *             the hole are skipped): the descriptor table is at 0, the avail ring right
 *             after it, the used ring after that (vio_split_ring_layout(size, 4)); the
 *             used ring's idx in the image is where the device starts.
 *             driver mode: successive images of the used ring (flags, idx, ring[], avail_event)
 *             written over the ring while buffers are in flight.
 *
 * Oracles (abort on violation):
 *   device: every iovec lies inside one region's host memory (writable ones not in a
 *   read-only region), lengths are non-zero and sum to out_len / in_len, n_out + n_in <=
 *   iov_cap, direction rules hold, -ENOBUFS consumes nothing, never more than `size`
 *   chains held without a push, a
 *   violation leaves the queue broken and from then on every data-path call returns -EIO;
 *   with inflight tracking, a restarted queue resubmits exactly the heads popped and not
 *   pushed, each once, before anything else; with a dirty log, every page of the first len
 *   bytes a push reports written is marked (reference walk of the chain as it stands at
 *   push time); the region and the dirty log are heap buffers of the exact size, so
 *   AddressSanitizer sees any access past them.
 *   driver: get_used never returns a token that is not in flight or one twice, its len
 *   never exceeds the buffer's writable length, a violation is sticky (-EIO after), and
 *   detach_unused afterwards returns exactly the buffers still outstanding.
 *
 * Seeds: tests/fuzz/gen_chain_seeds.py writes tests/fuzz/corpus/chain/.
 * FUZZ_CHAIN_VERBOSE=1 prints the library's log (which rule broke the queue).
 * FUZZ_CHAIN_SKIP="overcommit,dirty-log" turns those two oracles off, to look past a known
 * bug while it is being fixed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "arena.h"
#include "virtio/queue.h"
#include "virtio/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_chain: line %d: %s: ", __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define ARENA_SIZE (64u << 10)
#define SPLIT (8u << 10)
#define HOLE (4u << 10)
#define MAX_QSIZE 256u
#define IOV_BIG 64u
#define NKINDS 4

static struct arena arenas[NKINDS];
static bool arenas_ready;
static bool allow_overcommit; /* FUZZ_CHAIN_SKIP contains "overcommit" */
static bool skip_log_check;   /* FUZZ_CHAIN_SKIP contains "dirty-log" */
static vio_log_fn log_fn; /* FUZZ_CHAIN_VERBOSE=1: the library's messages on stderr */

static void quiet_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)object;
    (void)msg;
}

static void init_arenas(void)
{
    if (arenas_ready)
        return;
    for (unsigned k = 0; k < NKINDS; k++) {
        struct arena_config c = {.base = 0, .size = ARENA_SIZE};
        if (k >= 1)
            c.split = SPLIT;
        if (k == 2)
            c.hole = HOLE;
        if (k == 3)
            c.region1_readonly = true;
        if (arena_init(&arenas[k], &c) != 0) {
            fprintf(stderr, "fuzz_chain: arena_init failed\n");
            abort();
        }
    }
    const char *e = getenv("FUZZ_CHAIN_SKIP");
    allow_overcommit = e && strstr(e, "overcommit");
    skip_log_check = e && strstr(e, "dirty-log");
    e = getenv("FUZZ_CHAIN_VERBOSE");
    log_fn = (e && *e == '1') ? vio_log_stderr : quiet_log;
    arenas_ready = true;
}

static void clear_arena(struct arena *a)
{
    for (unsigned i = 0; i < a->nreg; i++)
        memset(a->reg[i].host, 0, a->reg[i].size);
}

/* Copy @p len bytes to guest address @p gpa onwards, skipping unmapped bytes. */
static void put_image(struct arena *a, uint64_t gpa, const uint8_t *p, size_t len)
{
    for (unsigned i = 0; i < a->nreg; i++) {
        const struct arena_region *r = &a->reg[i];
        uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
        uint64_t hi = gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size;
        if (lo < hi)
            memcpy(r->host + (lo - r->gpa), p + (lo - gpa), hi - lo);
    }
}

/* Index of the region whose host memory holds [p, p+len), -1 if none. */
static int host_region(const struct arena *a, const void *p, size_t len)
{
    uintptr_t b = (uintptr_t)p;
    for (unsigned i = 0; i < a->nreg; i++) {
        uintptr_t s = (uintptr_t)a->reg[i].host;
        if (b >= s && len <= a->reg[i].size && b - s <= a->reg[i].size - len)
            return (int)i;
    }
    return -1;
}

struct script {
    const uint8_t *ops;
    unsigned step;
};

static uint8_t next_op(struct script *s)
{
    uint8_t b = s->ops[s->step % 8];
    /* later rounds vary the parameters, never the operation (bits 0-2) */
    b = (uint8_t)(b ^ ((37u * (s->step / 8)) & 0xf8u));
    s->step++;
    return b;
}

/* ------------------------------------------------------------------------ */
/* Device side */

struct held {
    uint16_t head;
    uint32_t in_len;
};

struct dev {
    struct arena *a;
    struct vio_queue *q;
    struct rawring raw;
    uint16_t size;
    bool in_order;
    enum vio_queue_dir dir;
    bool readonly1;
    struct held held[2 * MAX_QSIZE + 64];
    unsigned nheld;
    bool capped; /* bookkeeping lost chains (only with FUZZ_CHAIN_SKIP=overcommit) */
    bool broken;
    bool tracking;               /* inflight tracking on: push_in_order is refused */
    uint8_t *dlog;               /* dirty log bitmap when logging (push_in_order refused) */
    size_t dlog_len;
    bool flagged[MAX_QSIZE];     /* head popped and not pushed since (the region's view) */
};

static void expect_broken_now(struct dev *d, int rc, const char *what)
{
    CHECK(vio_queue_is_broken(d->q), "%s returned %d but the queue is not broken", what, rc);
    CHECK(vio_queue_violation(d->q) != VIO_VIOL_NONE, "broken without a violation");
    CHECK(!vio_queue_ready(d->q), "broken queue reports ready");
    d->broken = true;
}

static void check_chain(struct dev *d, const struct vio_chain *c, const struct iovec *iov,
                        unsigned cap)
{
    CHECK(c->n_out + c->n_in <= cap, "n_out %u + n_in %u > cap %u", c->n_out, c->n_in, cap);
    CHECK(c->head < d->size, "head %u >= size %u", c->head, d->size);
    CHECK(c->ndesc >= 1 && c->ndesc <= d->size, "ndesc %u", c->ndesc);
    uint64_t so = 0, si = 0;
    for (unsigned i = 0; i < c->n_out + c->n_in; i++) {
        bool wr = i >= c->n_out;
        CHECK(iov[i].iov_len > 0, "empty iovec %u", i);
        int r = host_region(d->a, iov[i].iov_base, iov[i].iov_len);
        CHECK(r >= 0, "iovec %u %p+%zu outside guest memory", i, iov[i].iov_base, iov[i].iov_len);
        CHECK(!(wr && r == 1 && d->readonly1), "writable iovec %u in a read-only region", i);
        /* touch both ends: the bytes must really be accessible */
        volatile uint8_t *p = iov[i].iov_base;
        uint8_t x = p[0];
        x = (uint8_t)(x + p[iov[i].iov_len - 1]);
        if (wr) {
            p[0] = x;
            p[iov[i].iov_len - 1] = x;
        }
        if (wr)
            si += iov[i].iov_len;
        else
            so += iov[i].iov_len;
    }
    CHECK(so == c->out_len, "readable iovecs sum %llu, out_len %u", (unsigned long long)so,
          c->out_len);
    CHECK(si == c->in_len, "writable iovecs sum %llu, in_len %u", (unsigned long long)si,
          c->in_len);
    if (d->dir == VIO_QUEUE_DIR_OUT_ONLY)
        CHECK(c->n_in == 0 && c->in_len == 0, "writable part on an out-only queue");
    if (d->dir == VIO_QUEUE_DIR_IN_ONLY)
        CHECK(c->n_out == 0 && c->out_len == 0, "readable part on an in-only queue");
}

/* The device now holds chain @p c until it pushes it. */
static void held_add(struct dev *d, const struct vio_chain *c)
{
    d->held[d->nheld].head = c->head;
    d->held[d->nheld].in_len = c->in_len;
    d->nheld++;
    d->flagged[c->head] = true;
    CHECK(allow_overcommit || d->nheld <= d->size,
          "%u chains held without a push on a queue of size %u", d->nheld, d->size);
    if (d->nheld >= sizeof(d->held) / sizeof(d->held[0])) {
        d->nheld--; /* overcommit allowed: keep the bookkeeping bounded */
        d->capped = true;
    }
}

/* A pop (or burst) that took nothing: what its error must mean. */
static void pop_error(struct dev *d, int rc, uint16_t before, const char *what)
{
    switch (rc) {
    case -EAGAIN:
        CHECK(vio_queue_get_last_avail(d->q) == before, "%s: -EAGAIN moved last_avail", what);
        break;
    case -ENOBUFS:
        CHECK(vio_queue_get_last_avail(d->q) == before, "%s: -ENOBUFS consumed a chain", what);
        CHECK(!vio_queue_is_broken(d->q), "%s: -ENOBUFS broke the queue", what);
        break;
    case -EPROTO:
    case -EFAULT:
        expect_broken_now(d, rc, what);
        break;
    default:
        CHECK(0, "%s returned %d", what, rc);
    }
}

static void dev_pop(struct dev *d, unsigned cap)
{
    struct vio_chain c;
    struct iovec iov[IOV_BIG];
    uint16_t before = vio_queue_get_last_avail(d->q);
    int rc = vio_queue_pop(d->q, &c, iov, cap);
    if (d->broken) {
        CHECK(rc == -EIO, "pop on a broken queue returned %d", rc);
        return;
    }
    if (rc != 0) {
        pop_error(d, rc, before, "pop");
        return;
    }
    check_chain(d, &c, iov, cap);
    held_add(d, &c);
}

/* vio_queue_pop_burst: up to @p max chains into one iovec array of @p cap entries (its
 * burst fast path and the full pop behind it must agree with vio_queue_pop). */
static void dev_pop_burst(struct dev *d, unsigned max, unsigned cap)
{
    struct vio_chain ch[16];
    struct iovec iov[IOV_BIG];
    uint16_t before = vio_queue_get_last_avail(d->q);
    int rc = vio_queue_pop_burst(d->q, ch, max, iov, cap);
    if (d->broken) {
        CHECK(rc == -EIO, "pop_burst on a broken queue returned %d", rc);
        return;
    }
    if (rc <= 0) {
        pop_error(d, rc, before, "pop_burst");
        return;
    }
    CHECK((unsigned)rc <= max, "pop_burst took %d > %u chains", rc, max);
    unsigned off = 0;
    for (int k = 0; k < rc; k++) {
        CHECK(off <= cap, "chain %d starts at iovec %u of %u", k, off, cap);
        check_chain(d, &ch[k], iov + off, cap - off);
        off += ch[k].n_out + ch[k].n_in;
        held_add(d, &ch[k]);
    }
    /* a violation after the first chains: returned what it took, broken for the next */
    if (vio_queue_is_broken(d->q))
        expect_broken_now(d, rc, "pop_burst");
}

static uint32_t pick_len(uint8_t b, uint32_t in_len)
{
    switch (b & 3) {
    case 0:
        return 0;
    case 1:
        return in_len;
    default:
        return in_len ? (uint32_t)(b * 2654435761u) % (in_len + 1) : 0;
    }
}

static void held_remove(struct dev *d, unsigned k)
{
    memmove(&d->held[k], &d->held[k + 1], (d->nheld - k - 1) * sizeof(d->held[0]));
    d->nheld--;
}

/* With a dirty log: after completing @p head with @p len bytes written, every page of the first
 * @p len bytes of the chain's writable part, walked as the ring stands now, must be marked
 * (pages past the bitmap excepted). A chain that is no longer well formed sets no
 * expectation. */
static void check_logged(struct dev *d, uint16_t head, uint32_t len)
{
    if (!d->dlog || !len || skip_log_check)
        return;
    uint64_t table = 0; /* the ring's descriptor table is at guest address 0 */
    uint32_t tsize = d->size, i = head, hops = 0;
    bool indirect = false, seen_write = false;
    while (len) {
        if (i >= tsize || ++hops > tsize)
            return;
        uint8_t raw[16];
        if (arena_read(d->a, table + 16u * (uint64_t)i, raw, sizeof(raw)) != 0)
            return;
        uint64_t addr;
        uint32_t dlen;
        uint16_t flags, next;
        memcpy(&addr, raw, 8);
        memcpy(&dlen, raw + 8, 4);
        memcpy(&flags, raw + 12, 2);
        memcpy(&next, raw + 14, 2);
        if (flags & VRING_DESC_F_INDIRECT) {
            if (indirect || (flags & VRING_DESC_F_NEXT) || dlen == 0 || dlen % 16 ||
                !arena_mapped(d->a, addr, dlen))
                return;
            table = addr;
            tsize = dlen / 16;
            i = 0;
            hops = 0;
            indirect = true;
            continue;
        }
        if (flags & VRING_DESC_F_WRITE) {
            uint32_t n = dlen < len ? dlen : len;
            if (n && addr + n - 1 >= addr) {
                for (uint64_t pg = addr / 4096u; pg <= (addr + n - 1) / 4096u; pg++) {
                    if (pg / 8 >= d->dlog_len)
                        break;
                    CHECK(d->dlog[pg / 8] & (1u << (pg % 8)),
                          "head %u: page %#llx written (%u bytes at %#llx) but not logged", head,
                          (unsigned long long)(pg * 4096u), n, (unsigned long long)addr);
                }
            }
            len -= n;
            seen_write = true;
        } else if (seen_write) {
            return;
        }
        if (!(flags & VRING_DESC_F_NEXT))
            return;
        i = next;
    }
}

static void dev_push(struct dev *d, uint8_t b)
{
    if (d->broken) {
        CHECK(vio_queue_push(d->q, 0, 0) == -EIO, "push on a broken queue did not return -EIO");
        return;
    }
    if (d->nheld == 0)
        return;
    unsigned k = d->in_order ? 0 : (unsigned)(b >> 3) % d->nheld;
    uint32_t len = pick_len(b >> 5, d->held[k].in_len);
    int rc = vio_queue_push(d->q, d->held[k].head, len);
    CHECK(rc == 0, "push returned %d", rc);
    check_logged(d, d->held[k].head, len);
    d->flagged[d->held[k].head] = false;
    held_remove(d, k);
}

static void dev_push_many(struct dev *d, uint8_t b)
{
    if (d->broken) {
        struct vio_used_elem e = {0, 0};
        CHECK(vio_queue_push_batch(d->q, &e, 1) == -EIO, "push_batch on a broken queue");
        CHECK(vio_queue_push_in_order(d->q, 0, 0, 1) == -EIO, "push_in_order on a broken queue");
        return;
    }
    if (d->nheld == 0)
        return;
    unsigned n = 1 + (unsigned)((b >> 3) & 3);
    if (n > d->nheld)
        n = d->nheld;
    if (n > d->size)
        n = d->size; /* only reachable with FUZZ_CHAIN_SKIP=overcommit */
    int rc;
    if (d->in_order && (b & 0x80)) {
        rc = vio_queue_push_in_order(d->q, d->held[n - 1].head,
                                     pick_len(b >> 5, d->held[n - 1].in_len), (uint16_t)n);
        if (d->tracking || d->dlog) {
            CHECK(rc == -ENOTSUP, "push_in_order while tracking/logging returned %d", rc);
            return;
        }
        CHECK(rc == 0, "push_in_order returned %d", rc);
        for (unsigned i = 0; i < n; i++) {
            d->flagged[d->held[0].head] = false;
            held_remove(d, 0);
        }
        return;
    }
    struct vio_used_elem e[4];
    for (unsigned i = 0; i < n; i++) {
        unsigned k = d->in_order ? 0 : (unsigned)(b + 7u * i) % d->nheld;
        e[i].id = d->held[k].head;
        e[i].len = pick_len((uint8_t)(b >> 5) + (uint8_t)i, d->held[k].in_len);
        d->flagged[e[i].id] = false;
        held_remove(d, k);
    }
    rc = vio_queue_push_batch(d->q, e, n);
    CHECK(rc == 0, "push_batch returned %d", rc);
    for (unsigned i = 0; i < n; i++)
        check_logged(d, (uint16_t)e[i].id, e[i].len);
}

static void dev_rewind(struct dev *d, uint8_t b)
{
    if (d->broken || d->capped)
        return;
    unsigned n = (b >> 3) & 3;
    uint16_t before = vio_queue_get_last_avail(d->q);
    int rc = vio_queue_rewind(d->q, (uint16_t)n);
    if (n <= d->nheld) {
        CHECK(rc == 0, "rewind(%u) with %u held returned %d", n, d->nheld, rc);
        /* resubmitted chains (inflight recovery) are given back to the resubmit list, not to
         * the avail ring */
        uint16_t back = (uint16_t)(before - vio_queue_get_last_avail(d->q));
        CHECK(d->tracking ? back <= n : back == n, "rewind(%u) moved last_avail back by %u", n,
              back);
        d->nheld -= n;
    } else {
        CHECK(rc == -EINVAL, "rewind(%u) with %u held returned %d", n, d->nheld, rc);
        CHECK(vio_queue_get_last_avail(d->q) == before, "failed rewind moved last_avail");
    }
}

static void dev_notify(struct dev *d, uint8_t b)
{
    switch ((b >> 3) & 3) {
    case 0:
        (void)vio_queue_needs_notify(d->q);
        break;
    case 1: {
        bool more = vio_queue_enable_notify(d->q);
        if (d->broken)
            CHECK(!more, "enable_notify on a broken queue said more");
        else if (vio_queue_is_broken(d->q))
            expect_broken_now(d, 0, "enable_notify"); /* it may find a bad avail idx */
        break;
    }
    case 2:
        vio_queue_disable_notify(d->q);
        break;
    default: {
        bool more = vio_queue_has_avail(d->q);
        if (d->broken)
            CHECK(!more, "has_avail on a broken queue");
        else if (vio_queue_is_broken(d->q))
            expect_broken_now(d, 0, "has_avail");
        break;
    }
    }
}

static struct vio_queue *new_queue(struct arena *a, uint16_t qsize, uint64_t feat,
                                   enum vio_queue_dir dir, size_t avail_off, size_t used_off)
{
    struct vio_queue_config qc;
    arena_queue_config(&qc, MAX_QSIZE, "fuzz");
    qc.dir = dir;
    qc.log = log_fn;
    struct vio_queue *q = NULL;
    CHECK(vio_queue_new(&qc, &q) == 0, "vio_queue_new");
    int rc = vio_queue_setup(q, a->mem, qsize, feat, 0, avail_off, used_off);
    CHECK(rc == 0, "setup returned %d", rc);
    return q;
}

static void run_script(struct dev *d, const uint8_t *script)
{
    struct script s = {.ops = script};
    unsigned budget = 4u * d->size + 64u, after_broken = 0;
    for (unsigned step = 0; step < budget && after_broken < 8; step++) {
        uint8_t b = next_op(&s);
        switch (b & 7) {
        case 0:
            dev_pop(d, IOV_BIG);
            break;
        case 1:
            if (b & 0x80) /* a burst of 2..16 chains, iovecs 4..64 */
                dev_pop_burst(d, 2u + ((b >> 3) & 7u) * 2u, 4u << ((b >> 5) & 3u));
            else
                dev_pop(d, 1u + ((b >> 3) & 3u));
            break;
        case 2:
            dev_push(d, b);
            break;
        case 3:
            dev_push_many(d, b);
            break;
        case 4:
            dev_rewind(d, b);
            break;
        case 5:
            dev_notify(d, b);
            break;
        case 6:
            if (b & 0x80) {
                /* hostile driver: rewrite a descriptor (maybe one the device holds) */
                uint64_t addr;
                uint32_t len;
                uint16_t flags, next;
                uint16_t i = (uint16_t)(((b >> 3) & 15u) % d->size);
                rawring_get_desc(&d->raw, i, &addr, &len, &flags, &next);
                rawring_set_desc(&d->raw, i, addr ^ ((uint64_t)(b & 0x18) << 6),
                                 len ^ ((uint32_t)b << 2), (uint16_t)(flags ^ ((b >> 3) & 7u)),
                                 (uint16_t)(next ^ (b >> 5)));
            } else {
                /* hostile driver: publish more (avail idx moves by 0..15) */
                rawring_set_avail_idx(&d->raw,
                                      (uint16_t)(rawring_avail_idx(&d->raw) + ((b >> 3) & 15u)));
            }
            break;
        default: /* hostile driver: put a head in the next slot and publish it */
            rawring_publish(&d->raw, (uint16_t)(b >> 3));
            break;
        }
        if (d->broken)
            after_broken++;
    }
}

/* The device "crashes" (its queue object is dropped without completing anything) and a new
 * one recovers from the inflight region: exactly the flagged heads come back first, once. */
static void restart(struct dev *d, uint64_t feat, size_t avail_off, size_t used_off, void *infl,
                    size_t infl_len)
{
    unsigned nflag = 0;
    for (unsigned h = 0; h < d->size; h++)
        nflag += d->flagged[h];
    /* A buffer the driver placed over the used ring gets written by the device; recovery then
     * sees a used idx the device never published and (rightly) treats the last batch as
     * completed. Exactness is only owed when the ring's used idx is the device's own. */
    bool exact = rawring_used_idx(&d->raw) == vio_queue_get_used_idx(d->q);
    vio_queue_free(d->q);
    d->q = new_queue(d->a, d->size, feat, d->dir, avail_off, used_off);
    int rc = vio_queue_set_inflight(d->q, infl, infl_len);
    CHECK(rc >= 0 && (exact ? (unsigned)rc == nflag : (unsigned)rc <= nflag),
          "recovery resubmits %d chains, %u were in flight", rc, nflag);
    d->nheld = 0;
    bool seen[MAX_QSIZE] = {false};
    for (int k = 0; k < rc && !d->broken; k++) {
        dev_pop(d, IOV_BIG);
        if (d->broken || d->nheld != (unsigned)k + 1)
            break; /* a chain now malformed, or one needing more than IOV_BIG iovecs */
        uint16_t h = d->held[k].head;
        CHECK(d->flagged[h] && !seen[h], "resubmitted head %u was not in flight (or twice)", h);
        seen[h] = true;
    }
}

static void run_device(struct arena *a, uint16_t qsize, uint64_t feat, enum vio_queue_dir dir,
                       uint8_t mode, const uint8_t *script, const uint8_t *img, size_t img_len)
{
    size_t avail_off, used_off;
    (void)vio_split_ring_layout(qsize, 4, &avail_off, &used_off);
    put_image(a, 0, img, img_len);

    struct dev *d = calloc(1, sizeof(*d));
    CHECK(d != NULL, "calloc");
    d->a = a;
    d->q = new_queue(a, qsize, feat, dir, avail_off, used_off);
    d->size = qsize;
    d->in_order = vio_has_feature(feat, VIO_F_IN_ORDER);
    d->dir = dir;
    d->readonly1 = a == &arenas[3];
    CHECK(rawring_attach(&d->raw, a, qsize, 0, avail_off, used_off) == 0, "rawring_attach");

    /* exact-size heap buffers: AddressSanitizer flags any access past them */
    void *infl = NULL;
    uint8_t *dlog = NULL;
    size_t infl_len = 0;
    if (mode & 0x10) {
        infl_len = vio_queue_inflight_size(qsize);
        infl = calloc(1, infl_len);
        CHECK(infl != NULL, "calloc");
        if (img_len >= infl_len)
            memcpy(infl, img + img_len - infl_len, infl_len); /* hostile region contents */
        int rc = vio_queue_set_inflight(d->q, infl, infl_len);
        CHECK(rc == -EINVAL || (rc >= 0 && rc <= qsize), "set_inflight returned %d", rc);
        if (rc >= 0) {
            d->tracking = true;
            /* whatever the region claims in flight will be popped again: the region's view */
            const uint8_t *r = infl;
            for (unsigned h = 0; h < qsize; h++)
                d->flagged[h] = r[16 + 16 * h] != 0;
        }
    }
    if (mode & 0x20) {
        size_t log_len = 1u + 4u * (mode >> 6);
        dlog = calloc(1, log_len);
        CHECK(dlog != NULL, "calloc");
        CHECK(vio_queue_set_dirty_log(d->q, dlog, log_len, used_off) == 0, "set_dirty_log");
        d->dlog = dlog;
        d->dlog_len = log_len;
    }

    run_script(d, script);

    if (d->tracking && !d->broken && !d->capped) {
        restart(d, feat, avail_off, used_off, infl, infl_len);
        if (dlog)
            CHECK(vio_queue_set_dirty_log(d->q, dlog, 1u + 4u * (mode >> 6), used_off) == 0,
                  "set_dirty_log");
    }

    /* drain what is still available, then everything held goes back */
    for (unsigned k = 0; k < qsize + 1u && !d->broken; k++) {
        unsigned before = d->nheld;
        dev_pop(d, IOV_BIG);
        if (d->nheld == before)
            break;
    }
    while (!d->broken && d->nheld) {
        CHECK(vio_queue_push(d->q, d->held[0].head, 0) == 0, "final push");
        held_remove(d, 0);
    }
    if (d->broken) {
        struct vio_chain c;
        struct iovec iov[4];
        CHECK(vio_queue_pop(d->q, &c, iov, 4) == -EIO, "broken is not sticky");
    }
    vio_queue_free(d->q);
    free(infl);
    free(dlog);
    free(d);
}

/* ------------------------------------------------------------------------ */
/* Driver side */

#define MAX_TOKENS 1024u

struct drv {
    uint8_t state[MAX_TOKENS + 1]; /* 0 never added, 1 in flight, 2 returned */
    uint32_t in_len[MAX_TOKENS + 1];
    unsigned next_tok;
    unsigned outstanding;
};

static void run_driver(struct arena *a, uint16_t qsize, uint64_t feat, const uint8_t *script,
                       const uint8_t *img, size_t img_len)
{
    struct vio_drvq_config dc;
    CHECK(arena_drvq_config(a, &dc, qsize, feat,
                            vio_has_feature(feat, VIO_F_INDIRECT_DESC) ? 4 : 0) == 0,
          "arena_drvq_config");
    dc.log = log_fn;
    struct vio_drvq *dq = NULL;
    CHECK(vio_drvq_new(&dc, &dq) == 0, "vio_drvq_new");
    uint64_t data = arena_alloc(a, 4096, 16);
    CHECK(data != 0, "arena_alloc");
    const size_t used_len = 4u + 8u * qsize + 2u;

    struct drv *st = calloc(1, sizeof(*st));
    CHECK(st != NULL, "calloc");
    st->next_tok = 1;
    struct script s = {.ops = script};
    bool broken = false;
    size_t off = 0;

    for (unsigned phase = 0; phase < 6 && !broken; phase++) {
        /* add a few buffers of 1..3 segments, some readable, some writable */
        unsigned nadd = 1 + next_op(&s) % qsize;
        for (unsigned k = 0; k < nadd && st->next_tok <= MAX_TOKENS; k++) {
            uint8_t b = next_op(&s);
            if ((b & 0xC0) == 0xC0 && st->next_tok + 4 <= MAX_TOKENS) {
                /* vio_drvq_add_burst: 1..4 single-segment buffers, all readable or writable */
                unsigned nb = 1 + (b & 3);
                bool wr = b & 0x20;
                struct vio_sg sgb[4];
                void *toks[4];
                for (unsigned i = 0; i < nb; i++) {
                    sgb[i].addr = data + 64u * ((b + i) % 64u);
                    sgb[i].len = 1u + (uint32_t)((b * 5u + i * 11u) % 64u);
                    toks[i] = (void *)(uintptr_t)(st->next_tok + i);
                }
                int rc = vio_drvq_add_burst(dq, sgb, nb, wr, toks);
                if (rc == -ENOSPC)
                    break;
                CHECK(rc > 0 && (unsigned)rc <= nb, "add_burst returned %d for %u", rc, nb);
                for (int i = 0; i < rc; i++) {
                    unsigned t = st->next_tok++;
                    st->state[t] = 1;
                    st->in_len[t] = wr ? sgb[i].len : 0;
                    st->outstanding++;
                }
                continue;
            }
            unsigned nseg = 1 + (b & 3) % 3, n_out = (b >> 2) % (nseg + 1);
            struct vio_sg sg[3];
            uint32_t in_len = 0;
            for (unsigned i = 0; i < nseg; i++) {
                sg[i].addr = data + 64u * ((b + i) % 64u);
                sg[i].len = 1u + (uint32_t)((b * 7u + i * 13u) % 64u);
                if (i >= n_out)
                    in_len += sg[i].len;
            }
            unsigned t = st->next_tok;
            int rc = vio_drvq_add(dq, sg, n_out, nseg - n_out, (void *)(uintptr_t)t);
            if (rc == -ENOSPC)
                break;
            if (rc == -EINVAL && nseg > qsize && !vio_has_feature(feat, VIO_F_INDIRECT_DESC))
                continue; /* more segments than descriptors */
            CHECK(rc == 0, "add returned %d", rc);
            st->state[t] = 1;
            st->in_len[t] = in_len;
            st->next_tok++;
            st->outstanding++;
        }
        (void)vio_drvq_kick_prepare(dq);

        /* the hostile device writes the used ring */
        if (off < img_len) {
            size_t n = img_len - off < used_len ? img_len - off : used_len;
            put_image(a, dc.device, img + off, n);
            off += n;
        }
        if (next_op(&s) & 1)
            (void)vio_drvq_enable_cb(dq);
        else
            vio_drvq_disable_cb(dq);

        bool burst = next_op(&s) & 1;
        for (unsigned k = 0; k < 2u * qsize + 2u && !broken;) {
            void *tok[8] = {NULL};
            uint32_t len[8] = {0};
            int rc, got;
            if (burst) {
                rc = vio_drvq_get_used_burst(dq, tok, len, 1u + k % 8u);
                got = rc > 0 ? rc : 0;
                if (rc == 0)
                    break;
            } else {
                rc = vio_drvq_get_used(dq, &tok[0], &len[0]);
                got = rc == 0;
                if (rc == -EAGAIN)
                    break;
            }
            if (rc == -EPROTO || (burst && vio_drvq_is_broken(dq))) {
                /* a burst returns what it collected before the violation: check those too */
                CHECK(vio_drvq_is_broken(dq), "get_used -EPROTO but not broken");
                CHECK(vio_drvq_violation(dq) != VIO_VIOL_NONE, "broken without a violation");
                broken = true;
            } else {
                CHECK(rc >= 0, "get_used%s returned %d", burst ? "_burst" : "", rc);
            }
            for (int i = 0; i < got; i++) {
                uintptr_t t = (uintptr_t)tok[i];
                CHECK(t >= 1 && t <= MAX_TOKENS && st->state[t] == 1,
                      "get_used returned token %p that is not in flight (state %d)", tok[i],
                      (t >= 1 && t <= MAX_TOKENS) ? st->state[t] : -1);
                CHECK(len[i] <= st->in_len[t], "used len %u > writable %u", len[i], st->in_len[t]);
                st->state[t] = 2;
                st->outstanding--;
            }
            k += got ? (unsigned)got : 1u;
        }
    }
    if (broken) {
        void *tok;
        uint32_t len;
        CHECK(vio_drvq_get_used(dq, &tok, &len) == -EIO, "driver broken is not sticky");
        CHECK(vio_drvq_get_used_burst(dq, &tok, &len, 1) == -EIO, "burst on a broken queue");
        CHECK(vio_drvq_add(dq, &(struct vio_sg){data, 8}, 1, 0, (void *)1) == -EIO,
              "add on a broken driver queue");
    }
    /* reset: every buffer not returned comes back exactly once */
    unsigned detached = 0;
    void *tok;
    int rc;
    while ((rc = vio_drvq_detach_unused(dq, &tok)) == 0) {
        uintptr_t t = (uintptr_t)tok;
        CHECK(t >= 1 && t <= MAX_TOKENS && st->state[t] == 1, "detach_unused returned %p", tok);
        st->state[t] = 2;
        detached++;
        CHECK(detached <= MAX_TOKENS, "detach_unused loops");
    }
    CHECK(rc == -EAGAIN, "detach_unused returned %d", rc);
    CHECK(detached == st->outstanding, "detached %u of %u outstanding", detached, st->outstanding);
    CHECK(vio_drvq_num_free(dq) == qsize, "num_free %u after detaching all", vio_drvq_num_free(dq));
    vio_drvq_free(dq);
    free(st);
}

/* ------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10)
        return 0;
    init_arenas();
    unsigned kind = data[0] & 3;
    unsigned lg = (data[0] >> 2) & 15;
    uint16_t qsize = (uint16_t)(1u << (lg > 8 ? 8 : lg));
    enum vio_queue_dir dir = VIO_QUEUE_DIR_ANY;
    if ((data[0] >> 6) == 1)
        dir = VIO_QUEUE_DIR_OUT_ONLY;
    else if ((data[0] >> 6) == 2)
        dir = VIO_QUEUE_DIR_IN_ONLY;
    uint64_t feat = vio_feature_bit(VIO_F_VERSION_1);
    if (data[1] & 1)
        feat |= vio_feature_bit(VIO_F_INDIRECT_DESC);
    if (data[1] & 2)
        feat |= vio_feature_bit(VIO_F_EVENT_IDX);
    if (data[1] & 4)
        feat |= vio_feature_bit(VIO_F_IN_ORDER);

    if ((data[1] & 8) && kind == 3)
        kind = 1; /* the driver writes its ring: not into the read-only region */
    struct arena *a = &arenas[kind];
    clear_arena(a);
    size_t img_len = size - 10;
    if (img_len > ARENA_SIZE + HOLE)
        img_len = ARENA_SIZE + HOLE;

    if (data[1] & 8) {
        /* the bump allocator is reset by re-initializing only its cursor state */
        struct arena saved = *a;
        run_driver(a, qsize, feat, data + 2, data + 10, img_len);
        *a = saved;
    } else {
        run_device(a, qsize, feat, dir, data[1], data + 2, data + 10, img_len);
    }
    return 0;
}
