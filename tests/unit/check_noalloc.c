/* SPDX-License-Identifier: MIT */
/*
 * Suite "noalloc": the data path never allocates (DESIGN.md principle 6).
 *
 * This executable is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free
 * and against the static library, so every allocator call made by library code (and by this
 * file) goes through the __wrap_* functions below, which count calls while armed. Objects
 * are created unarmed; then the data path runs armed for 10^5 iterations on both sides of
 * two rings (event idx + indirect with inflight tracking and a dirty log; event idx +
 * in-order) plus guest-memory translation, and the count must stay 0. A self-check proves
 * the wrap is live: vio_queue_new() while armed must be counted.
 *
 * No Check assertion runs while armed (Check may allocate when it records a result);
 * failures are collected and asserted after disarming.
 */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/mem.h"
#include "virtio/queue.h"
#include "virtio/status.h"

/* ------------------------------------------------------------------------ */
/* Allocator wrap */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

static atomic_bool armed;
static atomic_ulong alloc_calls;

void *__wrap_malloc(size_t n)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed))
        atomic_fetch_add(&alloc_calls, 1);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed))
        atomic_fetch_add(&alloc_calls, 1);
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed))
        atomic_fetch_add(&alloc_calls, 1);
    return __real_realloc(p, n);
}

void __wrap_free(void *p)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed))
        atomic_fetch_add(&alloc_calls, 1);
    __real_free(p);
}

static void arm(void)
{
    atomic_store(&alloc_calls, 0);
    atomic_store(&armed, true);
}

static unsigned long disarm(void)
{
    atomic_store(&armed, false);
    return atomic_load(&alloc_calls);
}

/* ------------------------------------------------------------------------ */

#define QSIZE 256
#define IND_MAX 4
#define ITERS 100000u

/* First failure seen while armed (reported after disarming). */
static char failure[256];

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond) && !failure[0])                                                                \
            snprintf(failure, sizeof(failure), "line %d: %s", __LINE__, #cond);                    \
    } while (0)

struct pair {
    struct vio_drvq *dq;
    struct vio_queue *q;
    struct vio_drvq_config dc;
    uint64_t feat;
};

static void pair_init(struct pair *p, struct arena *a, uint64_t feat, unsigned ind_max)
{
    p->feat = feat;
    ck_assert_int_eq(arena_drvq_config(a, &p->dc, QSIZE, feat, (uint16_t)ind_max), 0);
    ck_assert_int_eq(vio_drvq_new(&p->dc, &p->dq), 0);
    struct vio_queue_config qc;
    arena_queue_config(&qc, QSIZE, "noalloc");
    ck_assert_int_eq(vio_queue_new(&qc, &p->q), 0);
    ck_assert_int_eq(vio_queue_setup(p->q, a->mem, QSIZE, feat, p->dc.desc, p->dc.driver,
                                     p->dc.device), 0);
}

static void pair_fini(struct pair *p)
{
    vio_queue_free(p->q);
    vio_drvq_free(p->dq);
}

START_TEST(test_wrap_is_live)
{
    struct vio_queue_config qc;
    arena_queue_config(&qc, QSIZE, "wrapcheck");
    struct vio_queue *q = NULL;
    arm();
    int rc = vio_queue_new(&qc, &q);
    vio_queue_free(q);
    unsigned long n = disarm();
    ck_assert_int_eq(rc, 0);
    /* calloc in vio_queue_new and free in vio_queue_free went through the wrap */
    ck_assert_uint_ge(n, 2);

    struct vio_mem *m = NULL;
    arm();
    rc = vio_mem_new(4, &m);
    vio_mem_free(m);
    n = disarm();
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_ge(n, 2);
}
END_TEST

START_TEST(test_data_path)
{
    struct arena a;
    struct arena_config ac = {.base = 0x100000, .size = 8u << 20, .split = 4u << 20};
    ck_assert_int_eq(arena_init(&a, &ac), 0);

    uint64_t v1 = vio_feature_bit(VIO_F_VERSION_1);
    uint64_t ev = vio_feature_bit(VIO_F_EVENT_IDX);
    struct pair p1, p2;
    pair_init(&p1, &a, v1 | ev | vio_feature_bit(VIO_F_INDIRECT_DESC), IND_MAX);
    pair_init(&p2, &a, v1 | ev | vio_feature_bit(VIO_F_IN_ORDER), 0);

    /* inflight tracking and a dirty log on the first device queue: also data-path work */
    size_t infl_len = vio_queue_inflight_size(QSIZE);
    void *infl = calloc(1, infl_len);
    ck_assert_ptr_nonnull(infl);
    ck_assert_int_ge(vio_queue_set_inflight(p1.q, infl, infl_len), 0);
    uint64_t log_len = (arena_end(&a) / 4096u + 7) / 8;
    void *dlog = calloc(1, log_len);
    ck_assert_ptr_nonnull(dlog);
    ck_assert_int_eq(vio_queue_set_dirty_log(p1.q, dlog, log_len, p1.dc.device), 0);

    /* data buffers: one block in region 0 and one straddling the region boundary */
    uint64_t blk = arena_alloc(&a, 64u << 10, 64);
    ck_assert_uint_ne(blk, 0);
    uint64_t straddle = arena_boundary(&a) - 2048;

    struct vio_chain c;
    struct iovec iov[16];
    struct vio_used_elem el[4];
    void *tok;
    uint32_t len;
    unsigned long adds = 0, pops = 0, useds = 0;

    arm();
    for (unsigned it = 0; it < ITERS && !failure[0]; it++) {
        /* ---- pair 1: event idx + indirect, inflight, dirty log ---- */
        struct vio_sg sg[3] = {
            {blk + (it % 64) * 256, 64},
            {straddle, 4096},            /* crosses the region boundary: two iovecs */
            {blk + 32768 + (it % 16) * 512, 200},
        };
        unsigned nseg = (it & 1) ? 3 : 1;
        for (unsigned k = 0; k < 2; k++) {
            EXPECT(vio_drvq_add(p1.dq, sg, 1, nseg - 1, (void *)(uintptr_t)(it * 2 + k + 1)) == 0);
            adds++;
        }
        (void)vio_drvq_kick_prepare(p1.dq);
        EXPECT(vio_queue_has_avail(p1.q));
        EXPECT(vio_queue_pop(p1.q, &c, iov, 16) == 0);
        uint16_t h1 = c.head;
        EXPECT(vio_queue_pop(p1.q, &c, iov, 16) == 0);
        uint16_t h2 = c.head;
        if (it % 7 == 0) {
            EXPECT(vio_queue_rewind(p1.q, 1) == 0);
            EXPECT(vio_queue_pop(p1.q, &c, iov, 16) == 0);
            EXPECT(c.head == h2);
        }
        pops += 2;
        if (it & 2) {
            el[0].id = h2;
            el[0].len = c.in_len;
            el[1].id = h1;
            el[1].len = 0;
            EXPECT(vio_queue_push_batch(p1.q, el, 2) == 0);
        } else {
            EXPECT(vio_queue_push(p1.q, h1, 0) == 0);
            EXPECT(vio_queue_push(p1.q, h2, c.in_len) == 0);
        }
        (void)vio_queue_needs_notify(p1.q);
        EXPECT(vio_drvq_get_used(p1.dq, &tok, &len) == 0);
        EXPECT(vio_drvq_get_used(p1.dq, &tok, &len) == 0);
        EXPECT(vio_drvq_get_used(p1.dq, &tok, &len) == -EAGAIN);
        useds += 2;
        EXPECT(!vio_drvq_enable_cb(p1.dq));
        vio_drvq_disable_cb(p1.dq);
        EXPECT(!vio_queue_enable_notify(p1.q));
        vio_queue_disable_notify(p1.q);
        EXPECT(vio_queue_pop(p1.q, &c, iov, 16) == -EAGAIN);

        /* ---- pair 2: event idx + in-order, batched completion ---- */
        for (unsigned k = 0; k < 3; k++) {
            void *t = (void *)(uintptr_t)(k + 1);
            EXPECT(vio_drvq_add(p2.dq, &sg[k], (k == 0), (k != 0), t) == 0);
            adds++;
        }
        (void)vio_drvq_kick_prepare(p2.dq);
        uint16_t last = 0;
        for (unsigned k = 0; k < 3; k++) {
            EXPECT(vio_queue_pop(p2.q, &c, iov, 16) == 0);
            last = c.head;
            pops++;
        }
        EXPECT(vio_queue_push_in_order(p2.q, last, c.in_len, 3) == 0);
        (void)vio_queue_needs_notify(p2.q);
        for (unsigned k = 0; k < 3; k++) {
            EXPECT(vio_drvq_get_used(p2.dq, &tok, &len) == 0);
            EXPECT(tok == (void *)(uintptr_t)(k + 1));
            useds++;
        }
        EXPECT(!vio_drvq_enable_cb(p2.dq));
        EXPECT(!vio_queue_enable_notify(p2.q));

        /* ---- guest memory translation ---- */
        EXPECT(vio_mem_translate(a.mem, straddle, 4096, VIO_MEM_WRITE, iov, 16) == 2);
        EXPECT(vio_mem_translate(a.mem, blk, 100, VIO_MEM_READ, iov, 16) == 1);
        EXPECT(vio_mem_translate(a.mem, arena_end(&a), 16, VIO_MEM_READ, iov, 16) == -EFAULT);
        EXPECT(vio_mem_ptr(a.mem, blk, 64, VIO_MEM_READ) != NULL);
    }
    unsigned long n = disarm();

    ck_assert_msg(!failure[0], "data path misbehaved: %s", failure);
    ck_assert_msg(n == 0, "%lu allocator calls on the data path", n);
    ck_assert_uint_eq(adds, (unsigned long)ITERS * 5);
    ck_assert_uint_ge(pops, (unsigned long)ITERS * 5);
    ck_assert_uint_eq(useds, (unsigned long)ITERS * 5);
    ck_assert(!vio_queue_is_broken(p1.q) && !vio_queue_is_broken(p2.q));
    ck_assert(!vio_drvq_is_broken(p1.dq) && !vio_drvq_is_broken(p2.dq));
    printf("noalloc: %u iterations, %lu buffers, %lu allocator calls\n", ITERS, adds, n);

    ck_assert_int_eq(vio_queue_set_inflight(p1.q, NULL, 0), 0);
    ck_assert_int_eq(vio_queue_set_dirty_log(p1.q, NULL, 0, 0), 0);
    free(infl);
    free(dlog);
    pair_fini(&p1);
    pair_fini(&p2);
    arena_fini(&a);
}
END_TEST

static Suite *noalloc_suite(void)
{
    Suite *s = suite_create("noalloc");
    TCase *tc = tcase_create("wrap");
    tcase_add_test(tc, test_wrap_is_live);
    suite_add_tcase(s, tc);
    tc = tcase_create("data_path");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_data_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(noalloc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
