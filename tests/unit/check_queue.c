/* SPDX-License-Identifier: MIT */
/*
 * Check suite "queue": the split virtqueue engine (src/core/queue_split.c).
 *
 * Hostile input comes from the raw ring builder in tests/support/arena.h,
 * which writes <linux/virtio_ring.h> structures directly. The honest peer is
 * the library's own other side (vio_drvq for the device, vio_queue for the
 * driver). Every input rule is one row of a table driven by tcase_add_loop_test;
 * the row name is in every failure message.
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/queue.h"
#include "virtio/status.h"

#define QSIZE 8
#define QNAME "hostq"
#define DNAME "drvq-t"
#define IOV_CAP 64

#define FB(x) (UINT64_C(1) << VIO_F_##x) /* constant: usable in the row tables */

/* ------------------------------------------------------------------------ */
/* Recorders for the log and on_broken hooks */

#define REC_MAX_LOG 64

static struct rec {
    int broken_calls;
    enum vio_violation why;
    struct vio_queue *bq;
    void *bopaque;
    int nlog;
    char log[REC_MAX_LOG][384];
} rec;

static void rec_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    (void)level;
    if (rec.nlog < REC_MAX_LOG) {
        snprintf(rec.log[rec.nlog], sizeof(rec.log[0]), "%s|%s", object ? object : "",
                 msg ? msg : "");
    }
    rec.nlog++;
}

static void rec_broken(void *opaque, struct vio_queue *q, enum vio_violation why)
{
    rec.broken_calls++;
    rec.why = why;
    rec.bq = q;
    rec.bopaque = opaque;
}

/* True when one log line names both the object (queue name, as the object argument or in the
 * message) and the rule name in its message. */
static bool rec_logged(const char *name, const char *rule)
{
    for (int i = 0; i < rec.nlog && i < REC_MAX_LOG; i++) {
        const char *bar = strchr(rec.log[i], '|');
        if (strstr(rec.log[i], name) && bar && strstr(bar + 1, rule))
            return true;
    }
    return false;
}

static void rec_dump(void)
{
    for (int i = 0; i < rec.nlog && i < REC_MAX_LOG; i++)
        fprintf(stderr, "  log[%d]: %s\n", i, rec.log[i]);
}

/* ------------------------------------------------------------------------ */
/* Arena kinds */

enum akind {
    A_PLAIN, /* 1 MiB at 0x100000, one region */
    A_SPLIT, /* same, two guest-adjacent regions (host non-adjacent) split at 512 KiB */
    A_HOLE,  /* split with a 64 KiB unmapped hole between the regions */
    A_BIG,   /* 2 GiB + 1 MiB, one region (4 GiB chain length rule) */
    A_RO     /* split, region 1 read-only */
};

#define ABASE 0x100000u

static int arena_kind_init(struct arena *a, enum akind k)
{
    struct arena_config c = {.base = ABASE, .size = 1u << 20};
    switch (k) {
    case A_PLAIN:
        break;
    case A_SPLIT:
        c.split = 512u << 10;
        break;
    case A_HOLE:
        c.split = 512u << 10;
        c.hole = 64u << 10;
        break;
    case A_BIG:
        c.size = 0x80000000ull + (1u << 20);
        break;
    case A_RO:
        c.split = 512u << 10;
        c.region1_readonly = true;
        break;
    }
    return arena_init(a, &c);
}

/* ------------------------------------------------------------------------ */
/* Device-side fixture: a vio_queue on a raw (hostile) ring */

struct qt {
    struct arena a;
    struct rawring r;
    struct vio_queue *q;
    uint64_t features;
    enum vio_queue_dir dir;
    struct vio_chain ch;
    struct iovec iov[IOV_CAP];
};

static void qt_init(struct qt *t, enum akind k, uint16_t size, enum vio_queue_dir dir,
                    uint64_t features)
{
    memset(&rec, 0, sizeof(rec));
    memset(t, 0, sizeof(*t));
    ck_assert_int_eq(arena_kind_init(&t->a, k), 0);
    ck_assert_int_eq(rawring_init(&t->r, &t->a, size, 4), 0);
    struct vio_queue_config cfg;
    arena_queue_config(&cfg, 256, QNAME);
    cfg.index = 7;
    cfg.dir = dir;
    cfg.log = rec_log;
    cfg.on_broken = rec_broken;
    cfg.broken_opaque = &rec;
    ck_assert_int_eq(vio_queue_new(&cfg, &t->q), 0);
    t->features = features;
    t->dir = dir;
}

static int qt_setup(struct qt *t)
{
    return rawring_setup_queue(&t->r, t->q, t->features);
}

static int qt_pop(struct qt *t)
{
    memset(&t->ch, 0xee, sizeof(t->ch));
    return vio_queue_pop(t->q, &t->ch, t->iov, IOV_CAP);
}

static void qt_fini(struct qt *t)
{
    vio_queue_free(t->q);
    arena_fini(&t->a);
}

/* Zero the whole ring (indices, flags, descriptors) as a freshly reset driver would. */
static void qt_zero_ring(struct qt *t)
{
    uint64_t end = t->r.used + 6u + 8u * t->r.size;
    ck_assert_int_eq(arena_fill(&t->a, t->r.desc, 0, end - t->r.desc), 0);
    t->r.avail_shadow = 0;
    t->r.used_shadow = 0;
    t->r.used_seen = 0;
}

/* A buffer in region 0, away from everything else. */
static uint64_t qt_buf(struct qt *t, uint32_t len)
{
    uint64_t b = arena_alloc_bufs(&t->a, 1, len, 0x5a);
    ck_assert_uint_ne(b, 0);
    return b;
}

static void check_iov(struct qt *t, unsigned i, uint64_t gpa, size_t len)
{
    ck_assert_ptr_eq(t->iov[i].iov_base, arena_ptr(&t->a, gpa));
    ck_assert_uint_eq(t->iov[i].iov_len, len);
}

/* ------------------------------------------------------------------------ */
/* Device-side input rules: one row per rule / shape */

struct vrow {
    const char *name;
    enum akind arena;
    enum vio_queue_dir dir;
    uint64_t features;
    void (*build)(struct qt *t); /* writes the hostile ring; may pop valid chains first */
    int err;                     /* -errno of the violating pop */
    enum vio_violation viol;
};

/* --- avail index --- */
static void b_avail_jump(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, 0, 0);
    for (uint16_t s = 0; s < QSIZE; s++)
        rawring_set_avail_slot(&t->r, s, 0);
    rawring_set_avail_idx(&t->r, QSIZE + 1);
}

static void b_avail_back(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, 0, 0);
    rawring_set_avail_idx(&t->r, 0xffff);
}

static void b_avail_jump_after_pop(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, 0, 0);
    rawring_publish(&t->r, 0);
    ck_assert_int_eq(qt_pop(t), 0);
    ck_assert_int_eq(vio_queue_push(t->q, 0, 0), 0);
    /* last_avail is 1: idx 1 + size + 1 is one too far */
    rawring_set_avail_idx(&t->r, 1 + QSIZE + 1);
}

/* --- head --- */
static void b_head_size(struct qt *t)
{
    rawring_publish(&t->r, QSIZE);
}

static void b_head_ffff(struct qt *t)
{
    rawring_publish(&t->r, 0xffff);
}

static void b_head_second(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, 0, 0);
    rawring_publish(&t->r, 0);
    rawring_publish(&t->r, QSIZE + 3);
    ck_assert_int_eq(qt_pop(t), 0);
    ck_assert_uint_eq(t->ch.head, 0);
}

/* --- next --- */
static void b_next_size(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, VRING_DESC_F_NEXT, QSIZE);
    rawring_publish(&t->r, 0);
}

static void b_next_ffff(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, b, 16, VRING_DESC_F_NEXT, 0xffff);
    rawring_publish(&t->r, 0);
}

/* --- loops --- */
static void b_loop_self(struct qt *t)
{
    rawring_loop(&t->r, 3, 1, qt_buf(t, 16), 16);
    rawring_publish(&t->r, 3);
}

static void b_loop_two(struct qt *t)
{
    rawring_loop(&t->r, 0, 2, qt_buf(t, 16), 16);
    rawring_publish(&t->r, 0);
}

static void b_loop_tail(struct qt *t)
{
    /* 0 -> 1 -> 2 -> 3 -> 1: the head is not on the cycle */
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, b, 16, VRING_DESC_F_NEXT, 2);
    rawring_set_desc(&t->r, 2, b, 16, VRING_DESC_F_NEXT, 3);
    rawring_set_desc(&t->r, 3, b, 16, VRING_DESC_F_NEXT, 1);
    rawring_publish(&t->r, 0);
}

static void b_loop_full(struct qt *t)
{
    rawring_loop(&t->r, 5, QSIZE, qt_buf(t, 16), 16);
    rawring_publish(&t->r, 5);
}

static void b_loop_zero_len(struct qt *t)
{
    /* zero-length descriptors produce no iovecs: the hop counter must still stop the walk */
    rawring_loop(&t->r, 0, 3, qt_buf(t, 16), 0);
    rawring_publish(&t->r, 0);
}

/* --- indirect --- */
static uint64_t table_with(struct qt *t, unsigned n)
{
    uint64_t tb = raw_indirect_alloc(&t->a, n);
    ck_assert_uint_ne(tb, 0);
    uint64_t b = qt_buf(t, 64);
    struct rawseg segs[16];
    for (unsigned k = 0; k < n && k < 16; k++)
        segs[k] = (struct rawseg){b, 16, false};
    ck_assert_int_eq(raw_table_chain(&t->a, tb, segs, n), 0);
    return tb;
}

static void b_ind_len(struct qt *t, uint32_t len)
{
    uint64_t tb = table_with(t, 4);
    rawring_set_desc(&t->r, 0, tb, len, VRING_DESC_F_INDIRECT, 0);
    rawring_publish(&t->r, 0);
}

static void b_ind_len0(struct qt *t)
{
    b_ind_len(t, 0);
}

static void b_ind_len8(struct qt *t)
{
    b_ind_len(t, 8);
}

static void b_ind_len24(struct qt *t)
{
    b_ind_len(t, 24);
}

static void b_ind_len17(struct qt *t)
{
    b_ind_len(t, 17);
}

static void b_ind_nested(struct qt *t)
{
    /* the nested one is last in its table, so INDIRECT is its only odd flag */
    uint64_t inner = table_with(t, 2);
    uint64_t tb = table_with(t, 2);
    ck_assert_int_eq(raw_table_set(&t->a, tb, 1, inner, 32, VRING_DESC_F_INDIRECT, 0), 0);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_ind_nested_first(struct qt *t)
{
    uint64_t inner = table_with(t, 2);
    uint64_t tb = raw_indirect_alloc(&t->a, 1);
    ck_assert_int_eq(raw_table_set(&t->a, tb, 0, inner, 32, VRING_DESC_F_INDIRECT, 0), 0);
    rawring_set_indirect(&t->r, 0, tb, 1);
    rawring_publish(&t->r, 0);
}

static void b_ind_next(struct qt *t)
{
    uint64_t tb = table_with(t, 2);
    rawring_set_desc(&t->r, 0, tb, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, qt_buf(t, 16), 16, 0, 0);
    rawring_publish(&t->r, 0);
}

static void b_ind_nofeature(struct qt *t)
{
    uint64_t tb = table_with(t, 2);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_ind_next_range(struct qt *t)
{
    uint64_t tb = table_with(t, 2);
    uint64_t b = qt_buf(t, 16);
    ck_assert_int_eq(raw_table_set(&t->a, tb, 0, b, 16, VRING_DESC_F_NEXT, 2), 0);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_ind_loop(struct qt *t)
{
    uint64_t tb = raw_indirect_alloc(&t->a, 3);
    uint64_t b = qt_buf(t, 16);
    raw_table_set(&t->a, tb, 0, b, 16, VRING_DESC_F_NEXT, 1);
    raw_table_set(&t->a, tb, 1, b, 16, VRING_DESC_F_NEXT, 2);
    raw_table_set(&t->a, tb, 2, b, 16, VRING_DESC_F_NEXT, 1);
    rawring_set_indirect(&t->r, 0, tb, 3);
    rawring_publish(&t->r, 0);
}

/* --- total length (A_BIG: buffers are mapped, only their sum is wrong) --- */
static void b_total_len(struct qt *t)
{
    uint64_t b = ABASE;
    rawring_set_desc(&t->r, 0, b, 0x80000000u, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, b, 0x80000000u, VRING_DESC_F_NEXT, 2);
    rawring_set_desc(&t->r, 2, b, 0x1000u, 0, 0);
    rawring_publish(&t->r, 0);
}

static void b_total_len_in(struct qt *t)
{
    uint64_t b = ABASE;
    const uint16_t w = VRING_DESC_F_WRITE;
    rawring_set_desc(&t->r, 0, b, 0x80000000u, VRING_DESC_F_NEXT | w, 1);
    rawring_set_desc(&t->r, 1, b, 0x80000000u, VRING_DESC_F_NEXT | w, 2);
    rawring_set_desc(&t->r, 2, b, 1u, w, 0);
    rawring_publish(&t->r, 0);
}

static void b_total_len_mixed(struct qt *t)
{
    /* readable 3 GiB + writable 1 GiB + 1: each part fits in 32 bits, the chain does not */
    uint64_t b = ABASE;
    rawring_set_desc(&t->r, 0, b, 0x80000000u, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, b, 0x40000000u, VRING_DESC_F_NEXT, 2);
    rawring_set_desc(&t->r, 2, b, 0x40000001u, VRING_DESC_F_WRITE, 0);
    rawring_publish(&t->r, 0);
}

static void b_total_len_indirect(struct qt *t)
{
    uint64_t tb = raw_indirect_alloc(&t->a, 3);
    raw_table_set(&t->a, tb, 0, ABASE, 0x80000000u, VRING_DESC_F_NEXT, 1);
    raw_table_set(&t->a, tb, 1, ABASE, 0x80000000u, VRING_DESC_F_NEXT, 2);
    raw_table_set(&t->a, tb, 2, ABASE, 0x10u, 0, 0);
    rawring_set_indirect(&t->r, 0, tb, 3);
    rawring_publish(&t->r, 0);
}

/* --- addresses --- */
static void b_addr(struct qt *t, uint64_t addr, uint32_t len, uint16_t flags)
{
    rawring_set_desc(&t->r, 0, addr, len, flags, 0);
    rawring_publish(&t->r, 0);
}

static void b_addr_past_end(struct qt *t)
{
    b_addr(t, arena_end(&t->a), 16, 0);
}

static void b_addr_straddle_end(struct qt *t)
{
    b_addr(t, arena_end(&t->a) - 8, 16, VRING_DESC_F_WRITE);
}

static void b_addr_below(struct qt *t)
{
    b_addr(t, ABASE - 4096, 16, 0);
}

static void b_addr_zero(struct qt *t)
{
    b_addr(t, 0, 16, 0);
}

static void b_addr_wrap(struct qt *t)
{
    b_addr(t, 0xfffffffffffff000ull, 0x2000, 0);
}

static void b_addr_wrap_start_mapped(struct qt *t)
{
    /* starts inside the arena, length large enough that the end is far outside */
    b_addr(t, arena_end(&t->a) - 16, 0xffffffffu, 0);
}

static void b_addr_second_desc(struct qt *t)
{
    uint64_t b = qt_buf(t, 16);
    rawring_set_desc(&t->r, 0, b, 16, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t->r, 1, 0x7000000000ull, 16, VRING_DESC_F_WRITE, 0);
    rawring_publish(&t->r, 0);
}

static void b_ind_table_outside(struct qt *t)
{
    rawring_set_indirect(&t->r, 0, arena_end(&t->a), 2);
    rawring_publish(&t->r, 0);
}

static void b_ind_table_wrap(struct qt *t)
{
    rawring_set_indirect(&t->r, 0, 0xfffffffffffffff0ull, 2);
    rawring_publish(&t->r, 0);
}

static void b_ind_entry_outside(struct qt *t)
{
    uint64_t tb = table_with(t, 2);
    raw_table_set(&t->a, tb, 1, arena_end(&t->a) + 0x10000, 16, 0, 0);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_hole_span(struct qt *t)
{
    b_addr(t, arena_hole(&t->a) - 16, 32, 0);
}

static void b_hole_inside(struct qt *t)
{
    b_addr(t, arena_hole(&t->a) + 16, 16, VRING_DESC_F_WRITE);
}

static void b_hole_across(struct qt *t)
{
    /* starts in region 0 and ends in region 1: every byte of the hole in between */
    b_addr(t, arena_hole(&t->a) - 16, 16 + (64u << 10) + 16, 0);
}

static void b_ind_table_hole(struct qt *t)
{
    /* entry 0 is mapped and links to entry 1, which is in the hole */
    uint64_t tb = arena_hole(&t->a) - 16;
    raw_table_set(&t->a, tb, 0, qt_buf(t, 16), 16, VRING_DESC_F_NEXT, 1);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_ro_write(struct qt *t)
{
    /* a writable buffer in the read-only region */
    b_addr(t, arena_boundary(&t->a) + 0x10000, 64, VRING_DESC_F_WRITE);
}

/* --- order and direction --- */
static void b_order(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    rawring_set_desc(&t->r, 0, b, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    rawring_set_desc(&t->r, 1, b + 16, 16, 0, 0);
    rawring_publish(&t->r, 0);
}

static void b_order_later(struct qt *t)
{
    uint64_t b = qt_buf(t, 64);
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, true}, {b + 32, 16, true},
                               {b + 48, 16, false}};
    rawring_add_chain(&t->r, 2, s, 4);
}

static void b_order_indirect(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    uint64_t tb = raw_indirect_alloc(&t->a, 2);
    const struct rawseg s[] = {{b, 16, true}, {b + 16, 16, false}};
    raw_table_chain(&t->a, tb, s, 2);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_dir_write(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, true}};
    rawring_add_chain(&t->r, 0, s, 2);
}

static void b_dir_write_indirect(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    uint64_t tb = raw_indirect_alloc(&t->a, 2);
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, true}};
    raw_table_chain(&t->a, tb, s, 2);
    rawring_set_indirect(&t->r, 0, tb, 2);
    rawring_publish(&t->r, 0);
}

static void b_dir_read(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, true}};
    rawring_add_chain(&t->r, 0, s, 2);
}

static void b_dir_read_indirect(struct qt *t)
{
    uint64_t b = qt_buf(t, 32);
    uint64_t tb = raw_indirect_alloc(&t->a, 1);
    const struct rawseg s[] = {{b, 16, false}};
    raw_table_chain(&t->a, tb, s, 1);
    rawring_set_indirect(&t->r, 0, tb, 1);
    rawring_publish(&t->r, 0);
}

#define ANY VIO_QUEUE_DIR_ANY
#define OUTQ VIO_QUEUE_DIR_OUT_ONLY
#define INQ VIO_QUEUE_DIR_IN_ONLY
#define IND FB(INDIRECT_DESC)

static const struct vrow vrows[] = {
    {"avail_idx_jump_size_plus_1", A_PLAIN, ANY, 0, b_avail_jump, -EPROTO, VIO_VIOL_AVAIL_IDX},
    {"avail_idx_backwards_ffff", A_PLAIN, ANY, 0, b_avail_back, -EPROTO, VIO_VIOL_AVAIL_IDX},
    {"avail_idx_jump_after_pop", A_PLAIN, ANY, 0, b_avail_jump_after_pop, -EPROTO,
     VIO_VIOL_AVAIL_IDX},
    {"head_eq_size", A_PLAIN, ANY, 0, b_head_size, -EPROTO, VIO_VIOL_HEAD_RANGE},
    {"head_ffff", A_PLAIN, ANY, 0, b_head_ffff, -EPROTO, VIO_VIOL_HEAD_RANGE},
    {"head_bad_after_good", A_PLAIN, ANY, 0, b_head_second, -EPROTO, VIO_VIOL_HEAD_RANGE},
    {"next_eq_size", A_PLAIN, ANY, 0, b_next_size, -EPROTO, VIO_VIOL_NEXT_RANGE},
    {"next_ffff_second_hop", A_PLAIN, ANY, 0, b_next_ffff, -EPROTO, VIO_VIOL_NEXT_RANGE},
    {"loop_self", A_PLAIN, ANY, 0, b_loop_self, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"loop_two", A_PLAIN, ANY, 0, b_loop_two, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"loop_tail", A_PLAIN, ANY, 0, b_loop_tail, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"loop_whole_ring", A_PLAIN, ANY, 0, b_loop_full, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"loop_zero_len", A_PLAIN, ANY, 0, b_loop_zero_len, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"indirect_len_0", A_PLAIN, ANY, IND, b_ind_len0, -EPROTO, VIO_VIOL_INDIRECT_LEN},
    {"indirect_len_8", A_PLAIN, ANY, IND, b_ind_len8, -EPROTO, VIO_VIOL_INDIRECT_LEN},
    {"indirect_len_24", A_PLAIN, ANY, IND, b_ind_len24, -EPROTO, VIO_VIOL_INDIRECT_LEN},
    {"indirect_len_17", A_PLAIN, ANY, IND, b_ind_len17, -EPROTO, VIO_VIOL_INDIRECT_LEN},
    {"indirect_nested", A_PLAIN, ANY, IND, b_ind_nested, -EPROTO, VIO_VIOL_INDIRECT_NESTED},
    {"indirect_nested_first", A_PLAIN, ANY, IND, b_ind_nested_first, -EPROTO,
     VIO_VIOL_INDIRECT_NESTED},
    {"indirect_and_next", A_PLAIN, ANY, IND, b_ind_next, -EPROTO, VIO_VIOL_INDIRECT_NEXT},
    {"indirect_not_negotiated", A_PLAIN, ANY, 0, b_ind_nofeature, -EPROTO,
     VIO_VIOL_INDIRECT_FEATURE},
    {"indirect_next_range", A_PLAIN, ANY, IND, b_ind_next_range, -EPROTO, VIO_VIOL_NEXT_RANGE},
    {"indirect_loop", A_PLAIN, ANY, IND, b_ind_loop, -EPROTO, VIO_VIOL_CHAIN_LOOP},
    {"total_len_over_4g", A_BIG, ANY, 0, b_total_len, -EPROTO, VIO_VIOL_TOTAL_LEN},
    {"total_len_writable_over_4g", A_BIG, ANY, 0, b_total_len_in, -EPROTO, VIO_VIOL_TOTAL_LEN},
    {"total_len_mixed_over_4g", A_BIG, ANY, 0, b_total_len_mixed, -EPROTO, VIO_VIOL_TOTAL_LEN},
    {"total_len_indirect_over_4g", A_BIG, ANY, IND, b_total_len_indirect, -EPROTO,
     VIO_VIOL_TOTAL_LEN},
    {"addr_past_end", A_PLAIN, ANY, 0, b_addr_past_end, -EFAULT, VIO_VIOL_ADDRESS},
    {"addr_straddles_end", A_PLAIN, ANY, 0, b_addr_straddle_end, -EFAULT, VIO_VIOL_ADDRESS},
    {"addr_below_base", A_PLAIN, ANY, 0, b_addr_below, -EFAULT, VIO_VIOL_ADDRESS},
    {"addr_zero", A_PLAIN, ANY, 0, b_addr_zero, -EFAULT, VIO_VIOL_ADDRESS},
    {"addr_wraps_2_64", A_PLAIN, ANY, 0, b_addr_wrap, -EFAULT, VIO_VIOL_ADDRESS},
    {"addr_len_runs_off_end", A_PLAIN, ANY, 0, b_addr_wrap_start_mapped, -EFAULT,
     VIO_VIOL_ADDRESS},
    {"addr_second_desc", A_PLAIN, ANY, 0, b_addr_second_desc, -EFAULT, VIO_VIOL_ADDRESS},
    {"indirect_table_outside", A_PLAIN, ANY, IND, b_ind_table_outside, -EFAULT,
     VIO_VIOL_ADDRESS},
    {"indirect_table_wraps", A_PLAIN, ANY, IND, b_ind_table_wrap, -EFAULT, VIO_VIOL_ADDRESS},
    {"indirect_entry_outside", A_PLAIN, ANY, IND, b_ind_entry_outside, -EFAULT,
     VIO_VIOL_ADDRESS},
    {"hole_span_into", A_HOLE, ANY, 0, b_hole_span, -EFAULT, VIO_VIOL_ADDRESS},
    {"hole_inside", A_HOLE, ANY, 0, b_hole_inside, -EFAULT, VIO_VIOL_ADDRESS},
    {"hole_across", A_HOLE, ANY, 0, b_hole_across, -EFAULT, VIO_VIOL_ADDRESS},
    {"indirect_table_into_hole", A_HOLE, ANY, IND, b_ind_table_hole, -EFAULT, VIO_VIOL_ADDRESS},
    {"write_to_readonly_region", A_RO, ANY, 0, b_ro_write, -EFAULT, VIO_VIOL_ADDRESS},
    {"order_read_after_write", A_PLAIN, ANY, 0, b_order, -EPROTO, VIO_VIOL_ORDER},
    {"order_read_after_write_later", A_PLAIN, ANY, 0, b_order_later, -EPROTO, VIO_VIOL_ORDER},
    {"order_indirect", A_PLAIN, ANY, IND, b_order_indirect, -EPROTO, VIO_VIOL_ORDER},
    {"dir_out_only_writable", A_PLAIN, OUTQ, 0, b_dir_write, -EPROTO, VIO_VIOL_DIRECTION},
    {"dir_out_only_writable_indirect", A_PLAIN, OUTQ, IND, b_dir_write_indirect, -EPROTO,
     VIO_VIOL_DIRECTION},
    {"dir_in_only_readable", A_PLAIN, INQ, 0, b_dir_read, -EPROTO, VIO_VIOL_DIRECTION},
    {"dir_in_only_readable_indirect", A_PLAIN, INQ, IND, b_dir_read_indirect, -EPROTO,
     VIO_VIOL_DIRECTION},
};
#define N_VROWS ((int)(sizeof(vrows) / sizeof(vrows[0])))

START_TEST(test_violation)
{
    const struct vrow *row = &vrows[_i];
    struct qt t;
    qt_init(&t, row->arena, QSIZE, row->dir, row->features);
    ck_assert_int_eq(qt_setup(&t), 0);
    row->build(&t);

    uint16_t last_before = vio_queue_get_last_avail(t.q);
    uint16_t used_before = rawring_used_idx(&t.r);
    uint16_t head = rawring_avail_slot(&t.r, last_before);
    int rc = qt_pop(&t);
    if (rc != row->err || vio_queue_violation(t.q) != row->viol)
        rec_dump();
    ck_assert_msg(rc == row->err, "%s: pop returned %d, expected %d", row->name, rc, row->err);
    ck_assert_msg(vio_queue_is_broken(t.q), "%s: not broken", row->name);
    ck_assert_msg(!vio_queue_ready(t.q), "%s: still ready while broken", row->name);
    ck_assert_msg(vio_queue_violation(t.q) == row->viol, "%s: violation %d (%s), expected %d (%s)",
                  row->name, vio_queue_violation(t.q), vio_violation_name(vio_queue_violation(t.q)),
                  row->viol, vio_violation_name(row->viol));
    ck_assert_msg(rec.broken_calls == 1, "%s: on_broken called %d times", row->name,
                  rec.broken_calls);
    ck_assert_msg(rec.why == row->viol, "%s: on_broken got %d", row->name, rec.why);
    ck_assert_ptr_eq(rec.bq, t.q);
    ck_assert_ptr_eq(rec.bopaque, &rec);
    ck_assert_msg(rec_logged(QNAME, vio_violation_name(row->viol)),
                  "%s: no log line naming '%s' and '%s'", row->name, QNAME,
                  vio_violation_name(row->viol));
    /* a malformed chain with a valid head goes back to the driver with length 0 */
    if (row->viol != VIO_VIOL_AVAIL_IDX && row->viol != VIO_VIOL_HEAD_RANGE) {
        ck_assert_msg(rawring_used_idx(&t.r) == (uint16_t)(used_before + 1),
                      "%s: malformed chain not returned (used idx %u -> %u)", row->name,
                      used_before, rawring_used_idx(&t.r));
        uint32_t id = 0xdead, len = 0xdead;
        rawring_used_elem(&t.r, used_before, &id, &len);
        ck_assert_msg(id == head && len == 0, "%s: used elem {%u, %u}, expected {%u, 0}",
                      row->name, id, len, head);
    } else {
        ck_assert_msg(rawring_used_idx(&t.r) == used_before, "%s: used idx moved", row->name);
    }

    /* sticky: everything on the data path is -EIO, the hook does not fire again */
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), -EIO);
    struct vio_used_elem e = {0, 0};
    ck_assert_int_eq(vio_queue_push_batch(t.q, &e, 1), -EIO);
    ck_assert_msg(rec.broken_calls == 1, "%s: on_broken fired again", row->name);
    ck_assert(vio_queue_is_broken(t.q));

    /* reset + setup on a clean ring clears it */
    vio_queue_reset(t.q);
    ck_assert(!vio_queue_is_broken(t.q));
    ck_assert_int_eq(vio_queue_violation(t.q), VIO_VIOL_NONE);
    qt_zero_ring(&t);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, row->dir == INQ ? VRING_DESC_F_WRITE : 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert(vio_queue_ready(t.q));
    ck_assert_msg(qt_pop(&t) == 0, "%s: pop after reset failed", row->name);
    ck_assert_uint_eq(t.ch.head, 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert_int_eq(rawring_used_idx(&t.r), 1);
    ck_assert_int_eq(rec.broken_calls, 1);
    qt_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Ring addresses at setup */

struct srow {
    const char *name;
    enum akind arena;
    /* adjusts desc/avail/used of the (valid) ring */
    void (*adj)(struct qt *t, uint64_t *desc, uint64_t *avail, uint64_t *used);
};

static void s_desc_outside(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)a, (void)u;
    *d = arena_end(&t->a) + 0x1000;
}

static void s_desc_straddles(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)a, (void)u;
    *d = arena_end(&t->a) - 64; /* table is 128 bytes */
}

static void s_avail_outside(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)u, (void)t;
    *a = ABASE - 0x1000;
}

static void s_avail_straddles(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)u;
    *a = arena_end(&t->a) - 6; /* used_event is past the end */
}

static void s_used_outside(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a, (void)t;
    *u = 0x7000000000ull;
}

static void s_used_straddles(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a;
    *u = arena_end(&t->a) - 68; /* avail_event (2 bytes at +68) is past the end */
}

static void s_used_wraps(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a, (void)t;
    *u = 0xffffffffffffffe0ull;
}

static void s_used_hole(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a;
    *u = arena_hole(&t->a) - 16;
}

static void s_desc_two_regions(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)a, (void)u;
    *d = arena_boundary(&t->a) - 64;
}

static void s_used_readonly(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a;
    *u = arena_boundary(&t->a) + 0x1000;
}

static void s_desc_misaligned(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)a, (void)u, (void)t;
    *d += 8;
}

static void s_avail_misaligned(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)u, (void)t;
    *a += 1;
}

static void s_used_misaligned(struct qt *t, uint64_t *d, uint64_t *a, uint64_t *u)
{
    (void)d, (void)a, (void)t;
    *u += 2;
}

static const struct srow srows[] = {
    {"desc_outside", A_PLAIN, s_desc_outside},
    {"desc_straddles_end", A_PLAIN, s_desc_straddles},
    {"avail_outside", A_PLAIN, s_avail_outside},
    {"avail_used_event_past_end", A_PLAIN, s_avail_straddles},
    {"used_outside", A_PLAIN, s_used_outside},
    {"used_avail_event_past_end", A_PLAIN, s_used_straddles},
    {"used_wraps_2_64", A_PLAIN, s_used_wraps},
    {"used_into_hole", A_HOLE, s_used_hole},
    {"desc_across_two_regions", A_SPLIT, s_desc_two_regions},
    {"used_in_readonly_region", A_RO, s_used_readonly},
    {"desc_misaligned_16", A_PLAIN, s_desc_misaligned},
    {"avail_misaligned_2", A_PLAIN, s_avail_misaligned},
    {"used_misaligned_4", A_PLAIN, s_used_misaligned},
};
#define N_SROWS ((int)(sizeof(srows) / sizeof(srows[0])))

START_TEST(test_ring_address)
{
    const struct srow *row = &srows[_i];
    struct qt t;
    /* EVENT_IDX: used_event / avail_event are part of the areas that must be mapped */
    qt_init(&t, row->arena, QSIZE, ANY, FB(EVENT_IDX));
    uint64_t d = t.r.desc, a = t.r.avail, u = t.r.used;
    row->adj(&t, &d, &a, &u);
    int rc = vio_queue_setup(t.q, t.a.mem, QSIZE, t.features, d, a, u);
    if (rc != -EFAULT)
        rec_dump();
    ck_assert_msg(rc == -EFAULT, "%s: setup returned %d, expected -EFAULT", row->name, rc);
    ck_assert_msg(vio_queue_is_broken(t.q), "%s: not broken", row->name);
    ck_assert(!vio_queue_ready(t.q));
    ck_assert_msg(vio_queue_violation(t.q) == VIO_VIOL_RING_ADDRESS, "%s: violation %d", row->name,
                  vio_queue_violation(t.q));
    ck_assert_msg(rec.broken_calls == 1, "%s: on_broken called %d times", row->name,
                  rec.broken_calls);
    ck_assert_int_eq(rec.why, VIO_VIOL_RING_ADDRESS);
    ck_assert_msg(rec_logged(QNAME, vio_violation_name(VIO_VIOL_RING_ADDRESS)),
                  "%s: no log naming queue and rule", row->name);
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), -EIO);
    ck_assert_int_eq(rec.broken_calls, 1);

    vio_queue_reset(t.q);
    ck_assert(!vio_queue_is_broken(t.q));
    ck_assert_int_eq(vio_queue_violation(t.q), VIO_VIOL_NONE);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert(vio_queue_ready(t.q));
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    qt_fini(&t);
}
END_TEST

START_TEST(test_remap_lost_ring)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    struct vio_mem *empty;
    ck_assert_int_eq(vio_mem_new(0, &empty), 0);
    ck_assert_int_eq(vio_queue_remap(t.q, empty), -EFAULT);
    ck_assert(vio_queue_is_broken(t.q));
    ck_assert_int_eq(vio_queue_violation(t.q), VIO_VIOL_RING_ADDRESS);
    ck_assert_int_eq(rec.broken_calls, 1);
    ck_assert_int_eq(qt_pop(&t), -EIO);
    vio_mem_free(empty);
    qt_fini(&t);
}
END_TEST

/* After setup failed on bad ring addresses there is no ring: nothing may dereference one. */
START_TEST(test_failed_setup_is_inert)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, (uint64_t)_i * FB(EVENT_IDX));
    ck_assert_int_eq(vio_queue_setup(t.q, t.a.mem, QSIZE, t.features, arena_end(&t.a) + 0x1000,
                                     t.r.avail, t.r.used),
                     -EFAULT);
    ck_assert(vio_queue_is_broken(t.q));
    ck_assert(!vio_queue_needs_notify(t.q));
    ck_assert(!vio_queue_enable_notify(t.q));
    vio_queue_disable_notify(t.q);
    ck_assert(!vio_queue_has_avail(t.q));
    ck_assert_int_eq(vio_queue_set_last_avail(t.q, 1), -EIO);
    ck_assert_int_eq(vio_queue_push_in_order(t.q, 0, 0, 1), -EIO);
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(rec.broken_calls, 1);
    qt_fini(&t);
}
END_TEST

/* After remap failed the old memory may be unmapped by the caller: the queue must not touch
 * the old ring any more. */
START_TEST(test_remap_failed_then_unmapped)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, (uint64_t)_i * FB(EVENT_IDX));
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    struct vio_mem *empty;
    ck_assert_int_eq(vio_mem_new(0, &empty), 0);
    ck_assert_int_eq(vio_queue_remap(t.q, empty), -EFAULT);
    ck_assert(vio_queue_is_broken(t.q));
    arena_fini(&t.a); /* old guest memory is gone (munmap) */
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), -EIO);
    ck_assert(!vio_queue_needs_notify(t.q));
    ck_assert(!vio_queue_enable_notify(t.q));
    vio_queue_disable_notify(t.q);
    ck_assert(!vio_queue_has_avail(t.q));
    (void)vio_queue_set_last_avail(t.q, 0);
    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, IOV_CAP), -EIO);
    vio_queue_free(t.q);
    vio_mem_free(empty);
}
END_TEST

START_TEST(test_remap_keeps_indices)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert_int_eq(vio_queue_remap(t.q, t.a.mem), 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 1);
    ck_assert_uint_eq(vio_queue_get_used_idx(t.q), 1);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    qt_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Device side: valid input */

START_TEST(test_not_set_up)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert(!vio_queue_ready(t.q));
    ck_assert_uint_eq(vio_queue_size(t.q), 0);
    ck_assert_uint_eq(vio_queue_index(t.q), 7);
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), -EIO);
    ck_assert_int_eq(vio_queue_set_last_avail(t.q, 3), -EIO);
    ck_assert(!vio_queue_is_broken(t.q));
    ck_assert_int_eq(rec.broken_calls, 0);
    qt_fini(&t);
}
END_TEST

/* vio_queue_get_ring_state: the device's indices and the shared rings' fields, each where the
 * queue and the driver put it. */
START_TEST(test_ring_state)
{
    struct vio_queue_ring_state rs;
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, FB(EVENT_IDX));
    ck_assert_int_eq(vio_queue_get_ring_state(NULL, &rs), -EINVAL);
    ck_assert_int_eq(vio_queue_get_ring_state(t.q, NULL), -EINVAL);
    memset(&rs, 0xa5, sizeof(rs));
    ck_assert_int_eq(vio_queue_get_ring_state(t.q, &rs), 0); /* not set up: all zero */
    ck_assert_uint_eq(rs.size, 0);
    ck_assert_uint_eq(rs.avail_idx, 0);
    ck_assert(!rs.event_idx);

    rawring_set_avail_idx(&t.r, 65534);
    rawring_set_used_idx(&t.r, 65534);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    for (uint16_t i = 0; i < 3; i++)
        rawring_set_desc(&t.r, i, b, 16, 0, 0);
    for (uint16_t i = 0; i < 3; i++)
        rawring_publish(&t.r, i);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    rawring_set_used_event(&t.r, 7);
    rawring_set_avail_flags(&t.r, VRING_AVAIL_F_NO_INTERRUPT);
    ck_assert(vio_queue_enable_notify(t.q)); /* avail_event := 1, one chain still waiting */
    ck_assert_int_eq(vio_queue_get_ring_state(t.q, &rs), 0);
    ck_assert_uint_eq(rs.size, QSIZE);
    ck_assert(rs.event_idx);
    ck_assert(!rs.broken);
    ck_assert_uint_eq(rs.avail_idx, 1);     /* 65534 + 3 */
    ck_assert_uint_eq(rs.shadow_avail, 1);
    ck_assert_uint_eq(rs.last_avail, 0);    /* two taken */
    ck_assert_uint_eq(rs.used_idx, 65535);  /* one pushed */
    ck_assert_uint_eq(rs.ring_used_idx, 65535);
    ck_assert_uint_eq(rs.inflight, 1);
    ck_assert_uint_eq(rs.used_event, 7);
    ck_assert_uint_eq(rs.avail_flags, VRING_AVAIL_F_NO_INTERRUPT);
    ck_assert_uint_eq(rs.avail_event, 1);
    ck_assert_uint_eq(rs.used_flags, 0);
    ck_assert(rs.signalled_used_valid);     /* setup took the used idx the driver saw */
    ck_assert_uint_eq(rs.signalled_used, 65534);
    (void)vio_queue_needs_notify(t.q);
    ck_assert_int_eq(vio_queue_get_ring_state(t.q, &rs), 0);
    ck_assert_uint_eq(rs.signalled_used, 65535);
    qt_fini(&t);
}
END_TEST

START_TEST(test_new_and_setup_args)
{
    struct vio_queue_config cfg;
    struct vio_queue *q = NULL;
    static const uint16_t bad_max[] = {0, 3, 100, 65535};
    for (unsigned i = 0; i < sizeof(bad_max) / sizeof(bad_max[0]); i++) {
        arena_queue_config(&cfg, bad_max[i], "x");
        ck_assert_msg(vio_queue_new(&cfg, &q) == -EINVAL, "max_size %u accepted", bad_max[i]);
    }
    arena_queue_config(&cfg, 256, "x");
    cfg.struct_size = 4;
    ck_assert_int_eq(vio_queue_new(&cfg, &q), -EINVAL);
    vio_queue_free(NULL);

    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    const struct rawring *r = &t.r;
    ck_assert_int_eq(vio_queue_setup(t.q, t.a.mem, 0, 0, r->desc, r->avail, r->used), -EINVAL);
    ck_assert_int_eq(vio_queue_setup(t.q, t.a.mem, 6, 0, r->desc, r->avail, r->used), -EINVAL);
    ck_assert_int_eq(vio_queue_setup(t.q, t.a.mem, 512, 0, r->desc, r->avail, r->used), -EINVAL);
    ck_assert_int_eq(vio_queue_setup(t.q, t.a.mem, QSIZE, FB(RING_PACKED), r->desc, r->avail,
                                     r->used),
                     -EINVAL);
    ck_assert(!vio_queue_ready(t.q));
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert(vio_queue_ready(t.q));
    ck_assert_uint_eq(vio_queue_size(t.q), QSIZE);
    qt_fini(&t);
}
END_TEST

START_TEST(test_violation_names)
{
    for (int v = VIO_VIOL_NONE + 1; v < VIO_VIOL__COUNT; v++) {
        const char *n = vio_violation_name((enum vio_violation)v);
        ck_assert_ptr_nonnull(n);
        ck_assert_msg(n[0] != '\0', "empty name for %d", v);
        for (int w = VIO_VIOL_NONE + 1; w < v; w++)
            ck_assert_msg(strcmp(n, vio_violation_name((enum vio_violation)w)) != 0,
                          "names of %d and %d are equal", v, w);
    }
    ck_assert_ptr_nonnull(vio_violation_name(VIO_VIOL_NONE));
    ck_assert_ptr_nonnull(vio_violation_name(VIO_VIOL__COUNT));
    ck_assert_ptr_nonnull(vio_violation_name((enum vio_violation)999));
}
END_TEST

START_TEST(test_pop_single)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    ck_assert(!vio_queue_has_avail(t.q));
    uint64_t b = qt_buf(&t, 100);
    rawring_set_desc(&t.r, 5, b, 100, 0, 0);
    rawring_publish(&t.r, 5);
    ck_assert(vio_queue_has_avail(t.q));
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 5);
    ck_assert_uint_eq(t.ch.ndesc, 1);
    ck_assert_uint_eq(t.ch.n_out, 1);
    ck_assert_uint_eq(t.ch.n_in, 0);
    ck_assert_uint_eq(t.ch.out_len, 100);
    ck_assert_uint_eq(t.ch.in_len, 0);
    check_iov(&t, 0, b, 100);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 1);
    ck_assert(!vio_queue_has_avail(t.q));
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    ck_assert_int_eq(vio_queue_push(t.q, 5, 0), 0);
    uint32_t id, len;
    ck_assert_int_eq(rawring_take_used(&t.r, &id, &len), 0);
    ck_assert_uint_eq(id, 5);
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(vio_queue_get_used_idx(t.q), 1);
    ck_assert_int_eq(vio_queue_push(t.q, QSIZE, 0), -EINVAL);
    ck_assert(!vio_queue_is_broken(t.q));
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_multi)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 256);
    /* descriptors 6, 7, 0, 1: the chain wraps around the table */
    const struct rawseg s[] = {
        {b, 10, false}, {b + 16, 20, false}, {b + 64, 30, true}, {b + 128, 40, true}};
    ck_assert_uint_eq(rawring_add_chain(&t.r, 6, s, 4), 6);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 6);
    ck_assert_uint_eq(t.ch.ndesc, 4);
    ck_assert_uint_eq(t.ch.n_out, 2);
    ck_assert_uint_eq(t.ch.n_in, 2);
    ck_assert_uint_eq(t.ch.out_len, 30);
    ck_assert_uint_eq(t.ch.in_len, 70);
    check_iov(&t, 0, b, 10);
    check_iov(&t, 1, b + 16, 20);
    check_iov(&t, 2, b + 64, 30);
    check_iov(&t, 3, b + 128, 40);

    /* write-only and read-only chains on an ANY queue */
    const struct rawseg w[] = {{b, 8, true}, {b + 8, 8, true}};
    rawring_add_chain(&t.r, 2, w, 2);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.n_out, 0);
    ck_assert_uint_eq(t.ch.n_in, 2);
    ck_assert_uint_eq(t.ch.in_len, 16);
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_whole_ring_chain)
{
    /* a chain using every descriptor is not a loop */
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 8 * QSIZE);
    struct rawseg s[QSIZE];
    for (unsigned k = 0; k < QSIZE; k++)
        s[k] = (struct rawseg){b + 8 * k, 8, k >= QSIZE / 2};
    rawring_add_chain(&t.r, 3, s, QSIZE);
    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, QSIZE), 0);
    ck_assert_uint_eq(t.ch.ndesc, QSIZE);
    ck_assert_uint_eq(t.ch.n_out, QSIZE / 2);
    ck_assert_uint_eq(t.ch.n_in, QSIZE / 2);
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_avail_exactly_size)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16 * QSIZE);
    for (uint16_t i = 0; i < QSIZE; i++) {
        rawring_set_desc(&t.r, i, b + 16 * i, 16, 0, 0);
        rawring_set_avail_slot(&t.r, i, (uint16_t)(QSIZE - 1 - i));
    }
    rawring_set_avail_idx(&t.r, QSIZE);
    for (uint16_t i = 0; i < QSIZE; i++) {
        ck_assert_int_eq(qt_pop(&t), 0);
        ck_assert_uint_eq(t.ch.head, QSIZE - 1 - i);
    }
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    ck_assert(!vio_queue_is_broken(t.q));
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_total_len_max)
{
    /* 0x80000000 + 0x7fffffff = 0xffffffff: the largest legal chain */
    struct qt t;
    qt_init(&t, A_BIG, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    rawring_set_desc(&t.r, 0, ABASE, 0x80000000u, VRING_DESC_F_NEXT, 1);
    rawring_set_desc(&t.r, 1, ABASE, 0x7fffffffu, 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.out_len, 0xffffffffu);
    ck_assert_uint_eq(t.ch.n_out, 2);
    check_iov(&t, 0, ABASE, 0x80000000u);
    check_iov(&t, 1, ABASE, 0x7fffffffu);
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_two_regions)
{
    struct qt t;
    qt_init(&t, A_SPLIT, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t bd = arena_boundary(&t.a);
    const struct rawseg s[] = {{bd - 100, 200, false}, {bd - 50, 100, true}};
    rawring_add_chain(&t.r, 0, s, 2);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.ndesc, 2);
    ck_assert_uint_eq(t.ch.n_out, 2);
    ck_assert_uint_eq(t.ch.n_in, 2);
    ck_assert_uint_eq(t.ch.out_len, 200);
    ck_assert_uint_eq(t.ch.in_len, 100);
    check_iov(&t, 0, bd - 100, 100);
    check_iov(&t, 1, bd, 100);
    check_iov(&t, 2, bd - 50, 50);
    check_iov(&t, 3, bd, 50);
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_indirect)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, IND);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 256);
    uint64_t tb = raw_indirect_alloc(&t.a, 3);
    const struct rawseg s[] = {{b, 16, false}, {b + 32, 32, true}, {b + 96, 48, true}};
    ck_assert_int_eq(raw_table_chain(&t.a, tb, s, 3), 0);
    rawring_set_indirect(&t.r, 2, tb, 3);
    rawring_publish(&t.r, 2);
    /* and a direct one after it */
    rawring_set_desc(&t.r, 3, b, 8, 0, 0);
    rawring_publish(&t.r, 3);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 2);
    ck_assert_uint_eq(t.ch.ndesc, 1);
    ck_assert_uint_eq(t.ch.n_out, 1);
    ck_assert_uint_eq(t.ch.n_in, 2);
    ck_assert_uint_eq(t.ch.out_len, 16);
    ck_assert_uint_eq(t.ch.in_len, 80);
    check_iov(&t, 0, b, 16);
    check_iov(&t, 1, b + 32, 32);
    check_iov(&t, 2, b + 96, 48);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 3);
    qt_fini(&t);
}
END_TEST

/* indirect table placed at boundary - off in a split arena */
static const uint32_t ind_span_off[] = {64, 32, 24, 8, 0};

START_TEST(test_pop_indirect_two_regions)
{
    uint32_t off = ind_span_off[_i];
    struct qt t;
    qt_init(&t, A_SPLIT, QSIZE, ANY, IND);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 256);
    uint64_t tb = arena_boundary(&t.a) - off;
    const struct rawseg s[] = {
        {b, 16, false}, {b + 16, 16, false}, {b + 64, 32, true}, {b + 128, 64, true}};
    ck_assert_int_eq(raw_table_chain(&t.a, tb, s, 4), 0);
    rawring_set_indirect(&t.r, 1, tb, 4);
    rawring_publish(&t.r, 1);
    int rc = qt_pop(&t);
    if (rc)
        rec_dump();
    ck_assert_msg(rc == 0, "table at boundary-%u: pop returned %d (violation %s)", off, rc,
                  vio_violation_name(vio_queue_violation(t.q)));
    ck_assert_uint_eq(t.ch.head, 1);
    ck_assert_uint_eq(t.ch.n_out, 2);
    ck_assert_uint_eq(t.ch.n_in, 2);
    ck_assert_uint_eq(t.ch.out_len, 32);
    ck_assert_uint_eq(t.ch.in_len, 96);
    check_iov(&t, 3, b + 128, 64);
    qt_fini(&t);
}
END_TEST

/* An indirect table across three guest-adjacent regions (region 1 is one page). */
START_TEST(test_pop_indirect_three_regions)
{
    struct qt t;
    memset(&rec, 0, sizeof(rec));
    memset(&t, 0, sizeof(t));
    struct arena_config c = {.base = ABASE, .size = 1u << 20, .split = (1u << 20) - 4096};
    ck_assert_int_eq(arena_init(&t.a, &c), 0);
    ck_assert_int_eq(rawring_init(&t.r, &t.a, QSIZE, 4), 0);
    struct vio_queue_config cfg;
    arena_queue_config(&cfg, 256, QNAME);
    cfg.log = rec_log;
    ck_assert_int_eq(vio_queue_new(&cfg, &t.q), 0);
    t.features = IND;
    /* region 2: its own mapping right after region 1 in guest space */
    static uint8_t r2[8192] __attribute__((aligned(16)));
    struct vio_mem_region reg = {.guest_addr = arena_end(&t.a), .size = sizeof(r2), .host_ptr = r2};
    ck_assert_int_eq(vio_mem_add(t.a.mem, &reg), 0);
    ck_assert_int_eq(qt_setup(&t), 0);

    uint64_t b = qt_buf(&t, 64);
    uint64_t tb = arena_boundary(&t.a) - 16; /* entry 0 in region 0, 1..256 in region 1 */
    unsigned n = 258;                         /* entry 257 in region 2 */
    ck_assert_int_eq(raw_table_set(&t.a, tb, 0, b, 16, VRING_DESC_F_NEXT, 257), 0);
    struct vring_desc d = {.addr = htole64(b + 16), .len = htole32(32),
                           .flags = htole16(VRING_DESC_F_WRITE), .next = 0};
    memcpy(r2, &d, sizeof(d));
    ck_assert_uint_eq(tb + 16u * 257, reg.guest_addr);
    rawring_set_indirect(&t.r, 0, tb, n);
    rawring_publish(&t.r, 0);
    int rc = qt_pop(&t);
    if (rc)
        rec_dump();
    ck_assert_msg(rc == 0, "pop returned %d (violation %s)", rc,
                  vio_violation_name(vio_queue_violation(t.q)));
    ck_assert_uint_eq(t.ch.n_out, 1);
    ck_assert_uint_eq(t.ch.n_in, 1);
    check_iov(&t, 1, b + 16, 32);
    qt_fini(&t);
}
END_TEST

/* The guest picks the indirect table address; a table that is not 8/16-aligned must either
 * work or be refused as a violation, never be read through a misaligned struct pointer
 * (undefined behaviour; the UBSan build traps). */
START_TEST(test_pop_indirect_misaligned)
{
    static const unsigned mis[] = {4, 2, 1, 8};
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, IND);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 64);
    uint64_t tb = raw_indirect_alloc(&t.a, 4) + mis[_i];
    arena_alloc(&t.a, 64, 16); /* keep the shifted table's tail out of later allocations */
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, true}};
    ck_assert_int_eq(raw_table_chain(&t.a, tb, s, 2), 0);
    rawring_set_indirect(&t.r, 0, tb, 2);
    rawring_publish(&t.r, 0);
    int rc = qt_pop(&t);
    if (rc == 0) {
        ck_assert_uint_eq(t.ch.n_out, 1);
        ck_assert_uint_eq(t.ch.n_in, 1);
    } else {
        ck_assert_msg(rc == -EPROTO || rc == -EFAULT, "misaligned +%u: pop returned %d", mis[_i],
                      rc);
        ck_assert(vio_queue_is_broken(t.q));
    }
    qt_fini(&t);
}
END_TEST

START_TEST(test_pop_enobufs)
{
    struct qt t;
    qt_init(&t, A_SPLIT, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 64);
    const struct rawseg s[] = {{b, 16, false}, {b + 16, 16, false}, {b + 32, 16, true}};
    rawring_add_chain(&t.r, 0, s, 3);
    /* one descriptor, two iovecs */
    uint64_t bd = arena_boundary(&t.a);
    rawring_set_desc(&t.r, 4, bd - 8, 16, 0, 0);
    rawring_publish(&t.r, 4);

    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, 2), -ENOBUFS);
    ck_assert(!vio_queue_is_broken(t.q));
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 0);
    ck_assert(vio_queue_has_avail(t.q));
    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, 2), -ENOBUFS);
    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, 3), 0);
    ck_assert_uint_eq(t.ch.head, 0);
    ck_assert_uint_eq(t.ch.n_out + t.ch.n_in, 3);

    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, 1), -ENOBUFS);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 1);
    ck_assert_int_eq(vio_queue_pop(t.q, &t.ch, t.iov, 2), 0);
    ck_assert_uint_eq(t.ch.head, 4);
    ck_assert_uint_eq(t.ch.n_out, 2);
    check_iov(&t, 0, bd - 8, 8);
    check_iov(&t, 1, bd, 8);
    ck_assert_int_eq(rec.broken_calls, 0);
    qt_fini(&t);
}
END_TEST

START_TEST(test_rewind)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert_int_eq(vio_queue_rewind(t.q, 1), -EINVAL);
    uint64_t b = qt_buf(&t, 64);
    for (uint16_t i = 0; i < 3; i++) {
        rawring_set_desc(&t.r, i, b + 16 * i, 16, 0, 0);
        rawring_publish(&t.r, i);
    }
    for (uint16_t i = 0; i < 3; i++) {
        ck_assert_int_eq(qt_pop(&t), 0);
        ck_assert_uint_eq(t.ch.head, i);
    }
    ck_assert_int_eq(vio_queue_rewind(t.q, 4), -EINVAL);
    ck_assert_int_eq(vio_queue_rewind(t.q, 2), 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 1);
    ck_assert(vio_queue_has_avail(t.q));
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 1);
    check_iov(&t, 0, b + 16, 16);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 2);
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    ck_assert_int_eq(vio_queue_rewind(t.q, 0), 0);
    for (uint16_t i = 0; i < 3; i++)
        ck_assert_int_eq(vio_queue_push(t.q, i, 0), 0);
    ck_assert_int_eq(vio_queue_rewind(t.q, 1), -EINVAL);
    ck_assert(!vio_queue_is_broken(t.q));
    qt_fini(&t);
}
END_TEST

START_TEST(test_last_avail_restart)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 128);
    for (uint16_t i = 0; i < 5; i++) {
        rawring_set_desc(&t.r, i, b + 16 * i, 16, 0, 0);
        rawring_publish(&t.r, i);
    }
    /* pop 3, complete 2: head 2 stays in flight across the stop */
    for (uint16_t i = 0; i < 3; i++)
        ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 1, 0), 0);
    uint16_t base = vio_queue_get_last_avail(t.q);
    ck_assert_uint_eq(base, 3);
    ck_assert_uint_eq(vio_queue_get_used_idx(t.q), 2);

    vio_queue_reset(t.q);
    ck_assert(!vio_queue_ready(t.q));
    ck_assert_int_eq(qt_pop(&t), -EIO);
    ck_assert_int_eq(vio_queue_set_last_avail(t.q, base), -EIO);

    ck_assert_int_eq(qt_setup(&t), 0);
    /* setup starts both at the used ring's idx */
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 2);
    ck_assert_uint_eq(vio_queue_get_used_idx(t.q), 2);
    ck_assert_int_eq(vio_queue_set_last_avail(t.q, base), 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 3);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 3);
    ck_assert_int_eq(vio_queue_push(t.q, 2, 0), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 3, 0), 0);
    ck_assert_uint_eq(rawring_used_idx(&t.r), 4);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_uint_eq(t.ch.head, 4);
    ck_assert_int_eq(qt_pop(&t), -EAGAIN);
    qt_fini(&t);
}
END_TEST

START_TEST(test_start_wrapped)
{
    /* indices near 2^16: the ring keeps working across the wrap */
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    rawring_set_avail_idx(&t.r, 65533);
    rawring_set_used_idx(&t.r, 65533);
    t.r.used_seen = 65533;
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(t.q), 65533);
    uint64_t b = qt_buf(&t, 16);
    for (unsigned n = 0; n < 3 * QSIZE; n++) {
        uint16_t h = (uint16_t)(n % QSIZE);
        rawring_set_desc(&t.r, h, b, 16, 0, 0);
        rawring_publish(&t.r, h);
        ck_assert_int_eq(qt_pop(&t), 0);
        ck_assert_uint_eq(t.ch.head, h);
        ck_assert_int_eq(vio_queue_push(t.q, h, n), 0);
        uint32_t id, len;
        ck_assert_int_eq(rawring_take_used(&t.r, &id, &len), 0);
        ck_assert_uint_eq(id, h);
        ck_assert_uint_eq(len, n);
    }
    ck_assert_uint_eq(rawring_used_idx(&t.r), (uint16_t)(65533 + 3 * QSIZE));
    qt_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Notification suppression, device side */

START_TEST(test_needs_notify_event_idx)
{
    static const uint16_t starts[] = {0, 65530};
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, FB(EVENT_IDX));
    uint16_t start = starts[_i];
    rawring_set_avail_idx(&t.r, start);
    rawring_set_used_idx(&t.r, start);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert_uint_eq(vio_queue_get_used_idx(t.q), start);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);

    /* prime: the first decision after setup is tested in test_needs_notify_first_call */
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    (void)vio_queue_needs_notify(t.q);
    uint16_t old = (uint16_t)(start + 1);
    unsigned round = 0;
    for (int off = -3; off <= 4; off++) {
        for (unsigned p = 0; p <= 3; p++, round++) {
            uint16_t ue = (uint16_t)(old + off);
            rawring_set_used_event(&t.r, ue);
            /* the flag must be ignored once EVENT_IDX is negotiated */
            rawring_set_avail_flags(&t.r, (round & 1) ? VRING_AVAIL_F_NO_INTERRUPT : 0);
            for (unsigned k = 0; k < p; k++) {
                rawring_publish(&t.r, 0);
                ck_assert_int_eq(qt_pop(&t), 0);
                ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
            }
            uint16_t nw = (uint16_t)(old + p);
            bool exp = vring_need_event(ue, nw, old) != 0;
            bool got = vio_queue_needs_notify(t.q);
            ck_assert_msg(got == exp,
                          "start %u round %u: used_event=%u old=%u new=%u: needs_notify %d, "
                          "vring_need_event %d",
                          start, round, ue, old, nw, got, exp);
            old = nw;
        }
    }
    /* a push_batch of several crossing used_event once notifies once */
    rawring_set_used_event(&t.r, (uint16_t)(old + 1));
    struct vio_used_elem el[3] = {{0, 0}, {0, 0}, {0, 0}};
    for (int k = 0; k < 3; k++) {
        rawring_publish(&t.r, 0);
        ck_assert_int_eq(qt_pop(&t), 0);
    }
    ck_assert_int_eq(vio_queue_push_batch(t.q, el, 3), 0);
    ck_assert(vio_queue_needs_notify(t.q));
    ck_assert(!vio_queue_needs_notify(t.q));
    qt_fini(&t);
}
END_TEST

/* The first decision after setup follows used_event too: the ring was just set up, the
 * used idx the driver saw is the one setup started from. */
START_TEST(test_needs_notify_first_call)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, FB(EVENT_IDX));
    ck_assert_int_eq(qt_setup(&t), 0);
    rawring_set_used_event(&t.r, 5);
    ck_assert_msg(!vio_queue_needs_notify(t.q),
                  "first needs_notify after setup, nothing pushed: returned true");
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    /* used idx 0 -> 1, used_event 5: vring_need_event(5, 1, 0) == 0 */
    ck_assert_msg(!vio_queue_needs_notify(t.q),
                  "first push after setup notified although used_event (5) was not crossed");
    qt_fini(&t);
}
END_TEST

START_TEST(test_needs_notify_flags)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    /* used_event is ignored without EVENT_IDX */
    rawring_set_used_event(&t.r, 0x4000);

    rawring_set_avail_flags(&t.r, VRING_AVAIL_F_NO_INTERRUPT);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert(!vio_queue_needs_notify(t.q));

    rawring_set_avail_flags(&t.r, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert(vio_queue_needs_notify(t.q));
    qt_fini(&t);
}
END_TEST

START_TEST(test_needs_notify_nothing_pushed)
{
    /* "for what was pushed since the last call": nothing pushed, nothing to signal */
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(vio_queue_push(t.q, 0, 0), 0);
    ck_assert(vio_queue_needs_notify(t.q));
    ck_assert_msg(!vio_queue_needs_notify(t.q), "needs_notify true with nothing pushed");
    qt_fini(&t);
}
END_TEST

START_TEST(test_enable_notify_flags)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, 0);
    ck_assert_int_eq(qt_setup(&t), 0);
    ck_assert_uint_eq(rawring_used_flags(&t.r), 0);
    vio_queue_disable_notify(t.q);
    ck_assert_uint_eq(rawring_used_flags(&t.r), VRING_USED_F_NO_NOTIFY);
    ck_assert(!vio_queue_enable_notify(t.q));
    ck_assert_uint_eq(rawring_used_flags(&t.r), 0);

    /* the race: a chain arrives while kicks are off; enable must report it */
    vio_queue_disable_notify(t.q);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    ck_assert(vio_queue_enable_notify(t.q));
    ck_assert_uint_eq(rawring_used_flags(&t.r), 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert(!vio_queue_enable_notify(t.q));
    qt_fini(&t);
}
END_TEST

START_TEST(test_enable_notify_event_idx)
{
    struct qt t;
    qt_init(&t, A_PLAIN, QSIZE, ANY, FB(EVENT_IDX));
    rawring_set_avail_idx(&t.r, 65534);
    rawring_set_used_idx(&t.r, 65534);
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t b = qt_buf(&t, 16);
    rawring_set_desc(&t.r, 0, b, 16, 0, 0);
    rawring_publish(&t.r, 0);
    rawring_publish(&t.r, 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert(!vio_queue_enable_notify(t.q));
    ck_assert_uint_eq(rawring_avail_event(&t.r), 0); /* 65534 + 2 */
    ck_assert_uint_eq(rawring_used_flags(&t.r), 0);
    vio_queue_disable_notify(t.q);
    /* with EVENT_IDX the device must keep used->flags at 0 */
    ck_assert_uint_eq(rawring_used_flags(&t.r), 0);
    rawring_publish(&t.r, 0);
    ck_assert(vio_queue_enable_notify(t.q));
    ck_assert_uint_eq(rawring_avail_event(&t.r), 0);
    ck_assert_int_eq(qt_pop(&t), 0);
    ck_assert(!vio_queue_enable_notify(t.q));
    ck_assert_uint_eq(rawring_avail_event(&t.r), 1);
    qt_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Honest pairs: vio_drvq driver + vio_queue device on the same ring */

struct pair {
    struct arena a;
    struct vio_drvq_config dc;
    struct vio_drvq *d;
    struct vio_queue *q;
    struct rawring r; /* a view of the same ring, for inspection and hostile writes */
    struct vio_chain ch;
    struct iovec iov[IOV_CAP];
};

static int tok[64];

static void pair_init(struct pair *p, enum akind k, uint16_t size, uint64_t features,
                      uint16_t imax, bool with_device)
{
    memset(&rec, 0, sizeof(rec));
    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(arena_kind_init(&p->a, k), 0);
    ck_assert_int_eq(arena_drvq_config(&p->a, &p->dc, size, features, imax), 0);
    p->dc.name = DNAME;
    p->dc.index = 3;
    p->dc.log = rec_log;
    ck_assert_int_eq(vio_drvq_new(&p->dc, &p->d), 0);
    ck_assert_int_eq(rawring_attach(&p->r, &p->a, size, p->dc.desc, p->dc.driver, p->dc.device),
                     0);
    if (with_device) {
        struct vio_queue_config cfg;
        arena_queue_config(&cfg, 1024, QNAME);
        cfg.log = rec_log;
        cfg.on_broken = rec_broken;
        ck_assert_int_eq(vio_queue_new(&cfg, &p->q), 0);
        ck_assert_int_eq(vio_queue_setup(p->q, p->a.mem, size, features, p->dc.desc,
                                         p->dc.driver, p->dc.device),
                         0);
    }
}

static void pair_fini(struct pair *p)
{
    vio_queue_free(p->q);
    vio_drvq_free(p->d);
    arena_fini(&p->a);
}

static int pair_pop(struct pair *p)
{
    return vio_queue_pop(p->q, &p->ch, p->iov, IOV_CAP);
}

/* Add a buffer with n_out readable segments of out_len and n_in writable of in_len. */
static int pair_add(struct pair *p, unsigned n_out, uint32_t out_len, unsigned n_in,
                    uint32_t in_len, void *token)
{
    struct vio_sg sg[16];
    ck_assert_uint_le(n_out + n_in, 16);
    for (unsigned k = 0; k < n_out + n_in; k++) {
        uint32_t l = k < n_out ? out_len : in_len;
        sg[k].addr = arena_alloc_bufs(&p->a, 1, l, 0x11);
        sg[k].len = l;
        ck_assert_uint_ne(sg[k].addr, 0);
    }
    return vio_drvq_add(p->d, sg, n_out, n_in, token);
}

START_TEST(test_push_single)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, true);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    ck_assert_int_eq(pair_add(&p, 1, 32, 1, 64, &tok[0]), 0);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 2);
    ck_assert_int_eq(pair_pop(&p), -EAGAIN); /* not published before kick_prepare */
    ck_assert(vio_drvq_kick_prepare(p.d));
    ck_assert_int_eq(pair_pop(&p), 0);
    ck_assert_uint_eq(p.ch.n_out, 1);
    ck_assert_uint_eq(p.ch.n_in, 1);
    ck_assert_uint_eq(p.ch.out_len, 32);
    ck_assert_uint_eq(p.ch.in_len, 64);
    memset(p.iov[1].iov_base, 0x77, 10);
    void *tk = NULL;
    uint32_t len = 0;
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), -EAGAIN);
    ck_assert_int_eq(vio_queue_push(p.q, p.ch.head, 10), 0);
    ck_assert(vio_queue_needs_notify(p.q));
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[0]);
    ck_assert_uint_eq(len, 10);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), -EAGAIN);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    ck_assert(!vio_drvq_is_broken(p.d));
    pair_fini(&p);
}
END_TEST

START_TEST(test_push_batch)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, true);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pair_add(&p, 0, 0, 1, 64, &tok[i]), 0);
    vio_drvq_kick_prepare(p.d);
    struct vio_used_elem el[4];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pair_pop(&p), 0);
        el[3 - i] = (struct vio_used_elem){p.ch.head, (uint32_t)(i + 1)};
    }
    struct vio_used_elem bad[2] = {{QSIZE, 0}, {0, 0}};
    ck_assert_int_eq(vio_queue_push_batch(p.q, bad, 2), -EINVAL);
    ck_assert_int_eq(vio_queue_push_batch(p.q, el, QSIZE + 1), -EINVAL);
    ck_assert_uint_eq(rawring_used_idx(&p.r), 0);
    ck_assert_int_eq(vio_queue_push_batch(p.q, el, 4), 0);
    ck_assert_uint_eq(rawring_used_idx(&p.r), 4);
    ck_assert_uint_eq(vio_queue_get_used_idx(p.q), 4);
    bool seen[4] = {false};
    for (int i = 0; i < 4; i++) {
        void *tk;
        uint32_t len;
        ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
        int k = (int *)tk - tok;
        ck_assert_int_ge(k, 0);
        ck_assert_int_lt(k, 4);
        ck_assert_msg(!seen[k], "token %d twice", k);
        seen[k] = true;
        ck_assert_int_eq(k, 3 - i); /* reverse order as pushed */
        ck_assert_uint_eq(len, (uint32_t)(4 - i));
    }
    void *tk;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), -EAGAIN);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    pair_fini(&p);
}
END_TEST

START_TEST(test_push_in_order)
{
    struct pair p;
    uint64_t f = FB(IN_ORDER) | FB(VERSION_1);
    pair_init(&p, A_PLAIN, QSIZE, f, 0, true);
    /* writable totals 100, 100, 30, 200 */
    ck_assert_int_eq(pair_add(&p, 0, 0, 1, 100, &tok[0]), 0);
    ck_assert_int_eq(pair_add(&p, 1, 10, 2, 50, &tok[1]), 0);
    ck_assert_int_eq(pair_add(&p, 0, 0, 1, 30, &tok[2]), 0);
    ck_assert_int_eq(pair_add(&p, 0, 0, 1, 200, &tok[3]), 0);
    vio_drvq_kick_prepare(p.d);
    uint16_t heads[4];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pair_pop(&p), 0);
        heads[i] = p.ch.head;
    }
    ck_assert_int_eq(vio_queue_push_in_order(p.q, heads[3], 7, 0), -EINVAL);
    ck_assert_int_eq(vio_queue_push_in_order(p.q, QSIZE, 7, 4), -EINVAL);
    ck_assert_int_eq(vio_queue_push_in_order(p.q, heads[3], 7, QSIZE + 1), -EINVAL);
    /* virtio 1.1 2.6.9: one used entry naming the batch's last buffer, written at the
     * batch's first slot; used->idx advances by the batch size */
    ck_assert_int_eq(vio_queue_push_in_order(p.q, heads[3], 7, 4), 0);
    ck_assert_uint_eq(rawring_used_idx(&p.r), 4);
    uint32_t id, len;
    rawring_used_elem(&p.r, 0, &id, &len);
    ck_assert_uint_eq(id, heads[3]);
    ck_assert_uint_eq(len, 7);
    static const uint32_t exp_len[4] = {100, 100, 30, 7};
    for (int i = 0; i < 4; i++) {
        void *tk;
        ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
        ck_assert_ptr_eq(tk, &tok[i]);
        ck_assert_uint_eq(len, exp_len[i]);
    }
    void *tk;
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), -EAGAIN);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    ck_assert(!vio_drvq_is_broken(p.d));

    /* and the queue keeps going, wrapping the table */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(pair_add(&p, 0, 0, 2, 20, &tok[10 + i]), 0);
        vio_drvq_kick_prepare(p.d);
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(pair_pop(&p), 0);
            heads[i] = p.ch.head;
        }
        ck_assert_int_eq(vio_queue_push_in_order(p.q, heads[2], 5, 3), 0);
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
            ck_assert_ptr_eq(tk, &tok[10 + i]);
            ck_assert_uint_eq(len, i == 2 ? 5 : 40);
        }
    }
    ck_assert(!vio_drvq_is_broken(p.d));
    pair_fini(&p);
}
END_TEST

START_TEST(test_push_in_order_not_negotiated)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, true);
    ck_assert_int_eq(pair_add(&p, 0, 0, 1, 100, &tok[0]), 0);
    vio_drvq_kick_prepare(p.d);
    ck_assert_int_eq(pair_pop(&p), 0);
    ck_assert_int_eq(vio_queue_push_in_order(p.q, p.ch.head, 1, 1), -ENOTSUP);
    pair_fini(&p);
}
END_TEST

START_TEST(test_indirect_pair)
{
    struct pair p;
    pair_init(&p, A_SPLIT, QSIZE, FB(INDIRECT_DESC), 8, true);
    ck_assert_int_eq(pair_add(&p, 2, 16, 3, 32, &tok[0]), 0);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 1);
    ck_assert_int_eq(pair_add(&p, 0, 0, 1, 32, &tok[1]), 0); /* one segment: direct */
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 2);
    vio_drvq_kick_prepare(p.d);
    uint64_t a;
    uint32_t l;
    uint16_t fl;
    rawring_get_desc(&p.r, rawring_avail_slot(&p.r, 0), &a, &l, &fl, NULL);
    ck_assert_uint_eq(fl, VRING_DESC_F_INDIRECT);
    ck_assert_uint_eq(l, 5 * 16);
    ck_assert_int_eq(pair_pop(&p), 0);
    ck_assert_uint_eq(p.ch.ndesc, 1);
    ck_assert_uint_eq(p.ch.n_out, 2);
    ck_assert_uint_eq(p.ch.n_in, 3);
    ck_assert_uint_eq(p.ch.in_len, 96);
    ck_assert_int_eq(vio_queue_push(p.q, p.ch.head, 96), 0);
    void *tk;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[0]);
    ck_assert_uint_eq(len, 96);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 1);
    pair_fini(&p);
}
END_TEST

START_TEST(test_num_free)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, true);
    void *tk;
    uint32_t len;
    struct vio_sg sg = {arena_alloc_bufs(&p.a, 1, 16, 0), 16};
    ck_assert_int_eq(vio_drvq_add(p.d, &sg, 0, 0, &tok[0]), -EINVAL);
    ck_assert_int_eq(vio_drvq_add(p.d, &sg, 1, 0, NULL), -EINVAL);
    struct vio_sg zero = {sg.addr, 0};
    ck_assert_int_eq(vio_drvq_add(p.d, &zero, 1, 0, &tok[0]), -EINVAL);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);

    ck_assert_int_eq(pair_add(&p, 2, 8, 1, 8, &tok[0]), 0);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 3);
    ck_assert_int_eq(pair_add(&p, 3, 8, 3, 8, &tok[1]), -ENOSPC);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE - 3);
    ck_assert_int_eq(pair_add(&p, 4, 8, 1, 8, &tok[1]), 0);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), 0);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[2]), -ENOSPC);
    vio_drvq_kick_prepare(p.d);
    ck_assert_int_eq(pair_pop(&p), 0);
    ck_assert_int_eq(vio_queue_push(p.q, p.ch.head, 0), 0);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[0]);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), 3);
    ck_assert_int_eq(pair_pop(&p), 0);
    ck_assert_int_eq(vio_queue_push(p.q, p.ch.head, 8), 0);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[1]);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);

    /* many rounds: no descriptor leaks */
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(pair_add(&p, 1, 8, 1 + i % 3, 8, &tok[i % 64]), 0);
        vio_drvq_kick_prepare(p.d);
        ck_assert_int_eq(pair_pop(&p), 0);
        ck_assert_int_eq(vio_queue_push(p.q, p.ch.head, 1), 0);
        ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
        ck_assert_ptr_eq(tk, &tok[i % 64]);
    }
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    pair_fini(&p);
}
END_TEST

START_TEST(test_detach_unused)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, true);
    void *tk;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_detach_unused(p.d, &tk), -EAGAIN);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[i]), 0);
    vio_drvq_kick_prepare(p.d);
    uint16_t h[3];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pair_pop(&p), 0);
        h[i] = p.ch.head;
    }
    ck_assert_int_eq(vio_queue_push(p.q, h[0], 0), 0);
    ck_assert_int_eq(vio_queue_push(p.q, h[1], 0), 0);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[0]);
    /* one more added but never published */
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[5]), 0);

    /* device reset: tokens 1 (used, not collected), 2 (popped), 3, 4 (avail), 5 (unpublished) */
    vio_queue_reset(p.q);
    bool seen[6] = {false};
    int n = 0;
    while (vio_drvq_detach_unused(p.d, &tk) == 0) {
        int k = (int *)tk - tok;
        ck_assert_msg(k >= 1 && k <= 5, "detached unexpected token %d", k);
        ck_assert_msg(!seen[k], "token %d detached twice", k);
        seen[k] = true;
        ck_assert_int_lt(++n, 100);
    }
    for (int k = 1; k <= 5; k++)
        ck_assert_msg(seen[k], "token %d never detached", k);
    ck_assert_int_eq(vio_drvq_detach_unused(p.d, &tk), -EAGAIN);
    ck_assert_uint_eq(vio_drvq_num_free(p.d), QSIZE);
    pair_fini(&p);
}
END_TEST

/* Driver kick_prepare: VRING_USED_F_NO_NOTIFY without EVENT_IDX */
START_TEST(test_kick_prepare_flags)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, false);
    ck_assert(!vio_drvq_kick_prepare(p.d)); /* nothing added */
    rawring_set_avail_event(&p.r, 0x1234);  /* ignored without EVENT_IDX */
    rawring_set_used_flags(&p.r, VRING_USED_F_NO_NOTIFY);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[0]), 0);
    ck_assert(!vio_drvq_kick_prepare(p.d));
    ck_assert_uint_eq(rawring_avail_idx(&p.r), 1); /* published anyway */
    rawring_set_used_flags(&p.r, 0);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[1]), 0);
    ck_assert(vio_drvq_kick_prepare(p.d));
    ck_assert_uint_eq(rawring_avail_idx(&p.r), 2);
    ck_assert(!vio_drvq_kick_prepare(p.d));
    pair_fini(&p);
}
END_TEST

/* Driver kick_prepare with EVENT_IDX: kick iff vring_need_event(avail_event, new, old) */
START_TEST(test_kick_prepare_event_idx)
{
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, FB(EVENT_IDX), 0, false);
    rawring_set_used_flags(&p.r, VRING_USED_F_NO_NOTIFY); /* ignored with EVENT_IDX */
    uint16_t old = 0, consumed = 0;
    unsigned round = 0;
    for (int off = -3; off <= 4; off++) {
        for (unsigned n = 0; n <= 3; n++, round++) {
            uint16_t ae = (uint16_t)(old + off);
            rawring_set_avail_event(&p.r, ae);
            for (unsigned k = 0; k < n; k++)
                ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[k]), 0);
            uint16_t nw = (uint16_t)(old + n);
            bool exp = vring_need_event(ae, nw, old) != 0;
            bool got = vio_drvq_kick_prepare(p.d);
            ck_assert_msg(got == exp, "round %u: avail_event=%u old=%u new=%u: kick %d, expected %d",
                          round, ae, old, nw, got, exp);
            ck_assert_uint_eq(rawring_avail_idx(&p.r), nw);
            old = nw;
            /* raw device completes everything so descriptors recycle */
            while (consumed != nw) {
                rawring_push_used(&p.r, rawring_avail_slot(&p.r, consumed), 0);
                consumed++;
                void *tk;
                uint32_t len;
                ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
            }
        }
    }
    ck_assert(!vio_drvq_is_broken(p.d));
    pair_fini(&p);
}
END_TEST

START_TEST(test_enable_cb)
{
    /* without EVENT_IDX: VRING_AVAIL_F_NO_INTERRUPT */
    struct pair p;
    void *tk;
    uint32_t len;
    pair_init(&p, A_PLAIN, QSIZE, 0, 0, false);
    vio_drvq_disable_cb(p.d);
    ck_assert_uint_eq(rawring_avail_flags(&p.r), VRING_AVAIL_F_NO_INTERRUPT);
    ck_assert(!vio_drvq_enable_cb(p.d));
    ck_assert_uint_eq(rawring_avail_flags(&p.r), 0);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p.d);
    vio_drvq_disable_cb(p.d);
    rawring_push_used(&p.r, rawring_avail_slot(&p.r, 0), 0);
    ck_assert(vio_drvq_enable_cb(p.d));
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    pair_fini(&p);

    /* with EVENT_IDX: used_event = next used index the driver will read */
    pair_init(&p, A_PLAIN, QSIZE, FB(EVENT_IDX), 0, false);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[i]), 0);
    vio_drvq_kick_prepare(p.d);
    rawring_push_used(&p.r, rawring_avail_slot(&p.r, 0), 0);
    rawring_push_used(&p.r, rawring_avail_slot(&p.r, 1), 0);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    vio_drvq_disable_cb(p.d);
    ck_assert(!vio_drvq_enable_cb(p.d));
    ck_assert_uint_eq(rawring_used_event(&p.r), 2);
    ck_assert_uint_eq(rawring_avail_flags(&p.r), 0);
    pair_fini(&p);
}
END_TEST

/* enable_cb_delayed: used_event 3/4 of the in-flight buffers ahead (event idx), and true only
 * once more than that were used; without event idx the plain enable_cb. */
START_TEST(test_enable_cb_delayed)
{
    struct pair p;
    void *tk;
    uint32_t len;
    pair_init(&p, A_PLAIN, QSIZE, FB(EVENT_IDX), 0, false);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[i]), 0);
    vio_drvq_kick_prepare(p.d);
    vio_drvq_disable_cb(p.d);
    ck_assert(!vio_drvq_enable_cb_delayed(p.d));
    ck_assert_uint_eq(rawring_used_event(&p.r), 6); /* 0 + 8 * 3 / 4 */
    for (int i = 0; i < 6; i++)
        rawring_push_used(&p.r, rawring_avail_slot(&p.r, (uint16_t)i), 0);
    ck_assert(!vio_drvq_enable_cb_delayed(p.d)); /* 6 used: not more than 6 */
    rawring_push_used(&p.r, rawring_avail_slot(&p.r, 6), 0);
    ck_assert(vio_drvq_enable_cb_delayed(p.d)); /* 7 used: collect first */
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), 0);
    ck_assert(!vio_drvq_enable_cb_delayed(p.d)); /* one in flight: 0 ahead */
    ck_assert_uint_eq(rawring_used_event(&p.r), 7);
    pair_fini(&p);

    pair_init(&p, A_PLAIN, QSIZE, 0, 0, false);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p.d);
    vio_drvq_disable_cb(p.d);
    ck_assert(!vio_drvq_enable_cb_delayed(p.d));
    ck_assert_uint_eq(rawring_avail_flags(&p.r), 0);
    rawring_push_used(&p.r, rawring_avail_slot(&p.r, 0), 0);
    ck_assert(vio_drvq_enable_cb_delayed(p.d));
    ck_assert(!vio_drvq_enable_cb_delayed(NULL));
    pair_fini(&p);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Driver side: a hostile device */

struct drow {
    const char *name;
    uint64_t features;
    uint16_t imax;
    void (*build)(struct pair *p);
    enum vio_violation viol;
};

static void get_ok(struct pair *p, int expect_tok)
{
    void *tk;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(p->d, &tk, &len), 0);
    ck_assert_ptr_eq(tk, &tok[expect_tok]);
}

static void d_idx_back(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[1]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 0);
    get_ok(p, 0);
    rawring_set_used_idx(&p->r, 0);
}

static void d_idx_jump(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[1]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_set_used_elem(&p->r, 0, rawring_avail_slot(&p->r, 0), 0);
    rawring_set_used_elem(&p->r, 1, rawring_avail_slot(&p->r, 1), 0);
    rawring_set_used_idx(&p->r, 3);
}

static void d_idx_nothing_in_flight(struct pair *p)
{
    rawring_set_used_idx(&p->r, 1);
}

static void d_idx_jump_after_get(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[1]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 0);
    get_ok(p, 0);
    rawring_set_used_idx(&p->r, 1 + QSIZE);
}

static void d_id_range(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, QSIZE, 0);
}

static void d_id_huge(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, 0xffffffffu, 0);
}

static void d_id_mid_chain(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 3, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    uint16_t head = rawring_avail_slot(&p->r, 0), next, fl;
    rawring_get_desc(&p->r, head, NULL, NULL, &fl, &next);
    ck_assert(fl & VRING_DESC_F_NEXT);
    rawring_push_used(&p->r, next, 0);
}

static void d_id_free(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    uint16_t head = rawring_avail_slot(&p->r, 0);
    rawring_push_used(&p->r, (uint16_t)((head + QSIZE / 2) % QSIZE), 0);
}

static void d_id_twice(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[1]), 0);
    vio_drvq_kick_prepare(p->d);
    uint16_t head = rawring_avail_slot(&p->r, 0);
    rawring_push_used(&p->r, head, 0);
    rawring_push_used(&p->r, head, 0);
    get_ok(p, 0);
}

static void d_len_over(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 65);
}

static void d_len_readonly(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 1, 64, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 1);
}

static void d_len_multi(struct pair *p)
{
    /* readable bytes do not count as writable room */
    ck_assert_int_eq(pair_add(p, 1, 100, 2, 32, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 65);
}

static void d_len_huge(struct pair *p)
{
    ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 0), 0xffffffffu);
}

static void d_in_order_id(struct pair *p)
{
    /* IN_ORDER: a used id that is not a head in flight */
    ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[0]), 0);
    ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[1]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, QSIZE + 1, 0);
}

static void d_in_order_batch_past_idx(struct pair *p)
{
    /* the entry names the 3rd buffer (a batch of 3) but used->idx moved by 1 only */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[i]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_push_used(&p->r, rawring_avail_slot(&p->r, 2), 0);
}

static void d_in_order_batch_len(struct pair *p)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pair_add(p, 0, 0, 1, 64, &tok[i]), 0);
    vio_drvq_kick_prepare(p->d);
    rawring_set_used_elem(&p->r, 0, rawring_avail_slot(&p->r, 2), 65);
    rawring_set_used_idx(&p->r, 3);
}

static void d_id_not_published(struct pair *p)
{
    /* buffer 0 is published; buffer 1 is added but kick_prepare was not called, so the
     * device cannot have seen it: completing it is "used id not in flight" */
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[0]), 0);
    vio_drvq_kick_prepare(p->d);
    ck_assert_int_eq(pair_add(p, 1, 8, 0, 0, &tok[1]), 0);
    uint16_t h1 = rawring_avail_slot(&p->r, 1); /* written by add, not yet published */
    ck_assert_uint_ne(h1, rawring_avail_slot(&p->r, 0));
    rawring_push_used(&p->r, h1, 0);
}

static const struct drow drows[] = {
    {"used_idx_backwards", 0, 0, d_idx_back, VIO_VIOL_USED_IDX},
    {"used_idx_past_in_flight", 0, 0, d_idx_jump, VIO_VIOL_USED_IDX},
    {"used_idx_nothing_in_flight", 0, 0, d_idx_nothing_in_flight, VIO_VIOL_USED_IDX},
    {"used_idx_jump_after_get", 0, 0, d_idx_jump_after_get, VIO_VIOL_USED_IDX},
    {"used_id_eq_size", 0, 0, d_id_range, VIO_VIOL_USED_ID},
    {"used_id_huge", 0, 0, d_id_huge, VIO_VIOL_USED_ID},
    {"used_id_mid_chain", 0, 0, d_id_mid_chain, VIO_VIOL_USED_ID},
    {"used_id_free_desc", 0, 0, d_id_free, VIO_VIOL_USED_ID},
    {"used_id_twice", 0, 0, d_id_twice, VIO_VIOL_USED_ID},
    {"used_len_over_writable", 0, 0, d_len_over, VIO_VIOL_USED_LEN},
    {"used_len_on_readonly_buffer", 0, 0, d_len_readonly, VIO_VIOL_USED_LEN},
    {"used_len_counts_only_writable", 0, 0, d_len_multi, VIO_VIOL_USED_LEN},
    {"used_len_indirect", FB(INDIRECT_DESC), 4, d_len_multi, VIO_VIOL_USED_LEN},
    {"used_len_huge", 0, 0, d_len_huge, VIO_VIOL_USED_LEN},
    {"used_id_in_order", FB(IN_ORDER), 0, d_in_order_id, VIO_VIOL_USED_ID},
    {"used_id_in_order_batch_past_idx", FB(IN_ORDER), 0, d_in_order_batch_past_idx,
     VIO_VIOL_USED_ID},
    {"used_len_in_order_batch", FB(IN_ORDER), 0, d_in_order_batch_len, VIO_VIOL_USED_LEN},
    {"used_id_not_published", 0, 0, d_id_not_published, VIO_VIOL_USED_ID},
};
#define N_DROWS ((int)(sizeof(drows) / sizeof(drows[0])))

START_TEST(test_driver_violation)
{
    const struct drow *row = &drows[_i];
    struct pair p;
    pair_init(&p, A_PLAIN, QSIZE, row->features, row->imax, false);
    row->build(&p);
    void *tk = NULL;
    uint32_t len = 0;
    int rc = vio_drvq_get_used(p.d, &tk, &len);
    if (rc != -EPROTO || vio_drvq_violation(p.d) != row->viol)
        rec_dump();
    ck_assert_msg(rc == -EPROTO, "%s: get_used returned %d, expected -EPROTO", row->name, rc);
    ck_assert_msg(vio_drvq_is_broken(p.d), "%s: not broken", row->name);
    ck_assert_msg(vio_drvq_violation(p.d) == row->viol, "%s: violation %d (%s), expected %s",
                  row->name, vio_drvq_violation(p.d),
                  vio_violation_name(vio_drvq_violation(p.d)), vio_violation_name(row->viol));
    ck_assert_msg(rec_logged(DNAME, vio_violation_name(row->viol)),
                  "%s: no log line naming '%s' and '%s'", row->name, DNAME,
                  vio_violation_name(row->viol));
    ck_assert_int_eq(vio_drvq_get_used(p.d, &tk, &len), -EIO);
    ck_assert_int_eq(pair_add(&p, 1, 8, 0, 0, &tok[9]), -EIO);
    ck_assert(vio_drvq_is_broken(p.d));
    pair_fini(&p);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Layout helper */

static const uint16_t lay_sizes[] = {1, 2, 8, 256, 1024, 32768};
static const size_t lay_aligns[] = {4, 16, 4096};

START_TEST(test_split_ring_layout)
{
    for (unsigned i = 0; i < sizeof(lay_sizes) / sizeof(lay_sizes[0]); i++) {
        for (unsigned j = 0; j < sizeof(lay_aligns) / sizeof(lay_aligns[0]); j++) {
            uint16_t n = lay_sizes[i];
            size_t al = lay_aligns[j];
            size_t doff = 0, uoff = 0;
            size_t total = vio_split_ring_layout(n, al, &doff, &uoff);
            size_t exp_d = 16u * n;
            size_t exp_u = (exp_d + 6u + 2u * n + al - 1) & ~(al - 1);
            ck_assert_msg(doff == exp_d, "n=%u align=%zu driver_off %zu", n, al, doff);
            ck_assert_msg(uoff == exp_u, "n=%u align=%zu device_off %zu, expected %zu", n, al,
                          uoff, exp_u);
            ck_assert_msg(uoff % al == 0, "device_off not aligned");
            ck_assert_msg(total == exp_u + 6u + 8u * n, "n=%u align=%zu total %zu", n, al, total);
            ck_assert_uint_eq(total, vring_size(n, (unsigned long)al));
        }
    }
    size_t doff, uoff;
    ck_assert_uint_eq(vio_split_ring_layout(256, 4096, &doff, &uoff), 10246);
    ck_assert_uint_eq(doff, 4096);
    ck_assert_uint_eq(uoff, 8192);
    ck_assert_uint_eq(vio_split_ring_layout(8, 4, &doff, &uoff), 222);
    ck_assert_uint_eq(uoff, 152);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Randomized hostile rings: never crash, never hand out memory outside the arena */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static bool iov_inside(const struct arena *a, const struct iovec *v)
{
    for (unsigned i = 0; i < a->nreg; i++) {
        const uint8_t *b = v->iov_base;
        if (b >= a->reg[i].host && v->iov_len <= a->reg[i].size &&
            (size_t)(b - a->reg[i].host) <= a->reg[i].size - v->iov_len)
            return true;
    }
    return false;
}

START_TEST(test_random_hostile)
{
    struct qt t;
    rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)_i;
    qt_init(&t, A_HOLE, QSIZE, (enum vio_queue_dir)(_i % 3), IND | FB(EVENT_IDX));
    ck_assert_int_eq(qt_setup(&t), 0);
    uint64_t tbl = raw_indirect_alloc(&t.a, 8);
    uint64_t buf = qt_buf(&t, 4096);
    uint64_t hole = arena_hole(&t.a);
    /* rows 0-5 also use addresses that are not 16-byte aligned (any address is guest
     * controlled, indirect tables included); rows 6-11 only aligned ones */
    const bool odd = _i < 6;
    const uint64_t addrs[] = {buf,
                              odd ? buf + 100 : buf + 96,
                              hole - (odd ? 8 : 16),
                              hole + (odd ? 8 : 16),
                              arena_boundary(&t.a) + 0x10000,
                              arena_end(&t.a) - (odd ? 4 : 16),
                              tbl,
                              0,
                              ~0ull - (odd ? 7 : 15),
                              t.r.desc};
    const uint32_t lens[] = {0, 1, 16, 24, 32, 128, 4096, 0x10000, 0x80000000u, 0xffffffffu};
    unsigned ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        /* scribble over part of the ring and the indirect table */
        for (int k = 0; k < 3; k++) {
            uint64_t x = rng();
            uint16_t fl = (uint16_t)(x & 7);
            uint64_t ad = addrs[(x >> 3) % 10];
            uint32_t ln = lens[(x >> 8) % 10];
            uint16_t nx = (uint16_t)((x >> 16) % 10);
            if ((x >> 24) & 1)
                rawring_set_desc(&t.r, (uint16_t)((x >> 32) % QSIZE), ad, ln, fl, nx);
            else
                raw_table_set(&t.a, tbl, (unsigned)((x >> 32) % 8), ad, ln, fl, nx);
        }
        uint64_t x = rng();
        unsigned npub = (unsigned)(x % 4);
        for (unsigned k = 0; k < npub; k++)
            rawring_publish(&t.r, (uint16_t)((x >> (8 + 4 * k)) % 10));
        if ((x >> 40) % 50 == 0)
            rawring_set_avail_idx(&t.r, (uint16_t)rng());
        rawring_set_used_event(&t.r, (uint16_t)(x >> 48));

        for (int k = 0; k < 4; k++) {
            unsigned cap = 1 + (unsigned)(rng() % IOV_CAP);
            int rc = vio_queue_pop(t.q, &t.ch, t.iov, cap);
            ck_assert_msg(rc == 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EFAULT ||
                              rc == -ENOBUFS,
                          "it %d: pop returned %d", it, rc);
            if (rc == 0) {
                ok++;
                ck_assert_uint_lt(t.ch.head, QSIZE);
                ck_assert_uint_ge(t.ch.ndesc, 1);
                ck_assert_uint_le(t.ch.ndesc, QSIZE);
                ck_assert_uint_le(t.ch.n_out + t.ch.n_in, cap);
                uint64_t so = 0, si = 0;
                for (unsigned v = 0; v < t.ch.n_out + t.ch.n_in; v++) {
                    ck_assert_msg(iov_inside(&t.a, &t.iov[v]), "it %d: iov %u outside arena",
                                  it, v);
                    if (v < t.ch.n_out)
                        so += t.iov[v].iov_len;
                    else
                        si += t.iov[v].iov_len;
                }
                ck_assert_uint_eq(so, t.ch.out_len);
                ck_assert_uint_eq(si, t.ch.in_len);
                if (t.dir == OUTQ)
                    ck_assert_uint_eq(t.ch.n_in, 0);
                if (t.dir == INQ)
                    ck_assert_uint_eq(t.ch.n_out, 0);
                ck_assert_int_eq(vio_queue_push(t.q, t.ch.head, 0), 0);
                (void)vio_queue_needs_notify(t.q);
            } else if (rc == -EPROTO || rc == -EFAULT) {
                bad++;
                ck_assert(vio_queue_is_broken(t.q));
                ck_assert_int_ne(vio_queue_violation(t.q), VIO_VIOL_NONE);
                ck_assert_int_eq(rec.broken_calls, 1);
                ck_assert_int_eq(qt_pop(&t), -EIO);
                vio_queue_reset(t.q);
                qt_zero_ring(&t);
                memset(&rec, 0, sizeof(rec));
                ck_assert_int_eq(qt_setup(&t), 0);
                break;
            } else if (rc == -EAGAIN) {
                break;
            } else {
                ck_assert(!vio_queue_is_broken(t.q));
            }
        }
    }
    ck_assert_msg(ok > 0 && bad > 0, "random run exercised too little: ok %u bad %u", ok, bad);
    qt_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc;

    tc = tcase_create("violations");
    tcase_add_loop_test(tc, test_violation, 0, N_VROWS);
    suite_add_tcase(s, tc);

    tc = tcase_create("ring_address");
    tcase_add_loop_test(tc, test_ring_address, 0, N_SROWS);
    tcase_add_test(tc, test_remap_lost_ring);
    tcase_add_test(tc, test_remap_keeps_indices);
    tcase_add_loop_test(tc, test_failed_setup_is_inert, 0, 2);
    tcase_add_loop_test(tc, test_remap_failed_then_unmapped, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("driver_violations");
    tcase_add_loop_test(tc, test_driver_violation, 0, N_DROWS);
    suite_add_tcase(s, tc);

    tc = tcase_create("pop");
    tcase_add_test(tc, test_not_set_up);
    tcase_add_test(tc, test_ring_state);
    tcase_add_test(tc, test_new_and_setup_args);
    tcase_add_test(tc, test_violation_names);
    tcase_add_test(tc, test_pop_single);
    tcase_add_test(tc, test_pop_multi);
    tcase_add_test(tc, test_pop_whole_ring_chain);
    tcase_add_test(tc, test_pop_avail_exactly_size);
    tcase_add_test(tc, test_pop_total_len_max);
    tcase_add_test(tc, test_pop_two_regions);
    tcase_add_test(tc, test_pop_indirect);
    tcase_add_loop_test(tc, test_pop_indirect_two_regions, 0,
                        (int)(sizeof(ind_span_off) / sizeof(ind_span_off[0])));
    tcase_add_test(tc, test_pop_indirect_three_regions);
    tcase_add_loop_test(tc, test_pop_indirect_misaligned, 0, 4);
    tcase_add_test(tc, test_pop_enobufs);
    tcase_add_test(tc, test_rewind);
    tcase_add_test(tc, test_last_avail_restart);
    tcase_add_test(tc, test_start_wrapped);
    suite_add_tcase(s, tc);

    tc = tcase_create("push");
    tcase_add_test(tc, test_push_single);
    tcase_add_test(tc, test_push_batch);
    tcase_add_test(tc, test_push_in_order);
    tcase_add_test(tc, test_push_in_order_not_negotiated);
    tcase_add_test(tc, test_indirect_pair);
    suite_add_tcase(s, tc);

    tc = tcase_create("notify");
    tcase_add_loop_test(tc, test_needs_notify_event_idx, 0, 2);
    tcase_add_test(tc, test_needs_notify_first_call);
    tcase_add_test(tc, test_needs_notify_flags);
    tcase_add_test(tc, test_needs_notify_nothing_pushed);
    tcase_add_test(tc, test_enable_notify_flags);
    tcase_add_test(tc, test_enable_notify_event_idx);
    tcase_add_test(tc, test_kick_prepare_flags);
    tcase_add_test(tc, test_kick_prepare_event_idx);
    tcase_add_test(tc, test_enable_cb);
    tcase_add_test(tc, test_enable_cb_delayed);
    suite_add_tcase(s, tc);

    tc = tcase_create("driver");
    tcase_add_test(tc, test_num_free);
    tcase_add_test(tc, test_detach_unused);
    suite_add_tcase(s, tc);

    tc = tcase_create("layout");
    tcase_add_test(tc, test_split_ring_layout);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_random_hostile, 0, 12);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
