/* SPDX-License-Identifier: MIT */
/*
 * Inflight tracking (resume after a device crash without losing or doubling
 * chains) and dirty-page logging of the used ring.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/queue.h"
#include "virtio/status.h"

#define QSZ 16u

struct fix {
    struct arena a;
    struct vio_drvq *drv;
    struct vio_queue *dev;
    uint64_t desc, avail, used, bufs;
    void *region;
    size_t region_len;
};

static void fix_init(struct fix *f)
{
    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(arena_init_simple(&f->a, 0x100000, 1 << 20), 0);
    f->desc = arena_alloc(&f->a, 16 * QSZ, 16);
    f->avail = arena_alloc(&f->a, 6 + 2 * QSZ, 2);
    f->used = arena_alloc(&f->a, 6 + 8 * QSZ, 4);
    f->bufs = arena_alloc(&f->a, 64 * QSZ, 16);
    struct vio_drvq_config dc = {.struct_size = sizeof(dc), .size = QSZ, .mem = f->a.mem,
                                 .desc = f->desc, .driver = f->avail, .device = f->used};
    ck_assert_int_eq(vio_drvq_new(&dc, &f->drv), 0);
    f->region_len = vio_queue_inflight_size(QSZ);
    ck_assert_uint_eq(f->region_len, 16 + 16 * QSZ);
    f->region = calloc(1, f->region_len);
}

static struct vio_queue *dev_start(struct fix *f)
{
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSZ};
    struct vio_queue *q;
    ck_assert_int_eq(vio_queue_new(&qc, &q), 0);
    ck_assert_int_eq(vio_queue_setup(q, f->a.mem, QSZ, 0, f->desc, f->avail, f->used), 0);
    return q;
}

static void fix_fini(struct fix *f)
{
    vio_queue_free(f->dev);
    vio_drvq_free(f->drv);
    free(f->region);
    arena_fini(&f->a);
}

static void post(struct fix *f, uintptr_t token)
{
    struct vio_sg sg = {f->bufs + 64 * (token % QSZ), 64};
    ck_assert_int_eq(vio_drvq_add(f->drv, &sg, 0, 1, (void *)token), 0);
    vio_drvq_kick_prepare(f->drv);
}

/* Region field accessors (layout of docs/interop/vhost-user.rst, split). */
static uint16_t r16(const void *region, size_t off)
{
    uint16_t v;
    memcpy(&v, (const uint8_t *)region + off, 2);
    return v;
}
static uint8_t desc_inflight(const void *region, unsigned h)
{
    return ((const uint8_t *)region)[16 + 16 * h];
}
static uint64_t desc_counter(const void *region, unsigned h)
{
    uint64_t v;
    memcpy(&v, (const uint8_t *)region + 16 + 16 * h + 8, 8);
    return v;
}

START_TEST(fresh_region_marks_and_clears)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 0);
    ck_assert_uint_eq(r16(f.region, 8), 1);   /* version */
    ck_assert_uint_eq(r16(f.region, 10), QSZ); /* desc_num */
    post(&f, 1);
    post(&f, 2);
    struct iovec iov[4];
    struct vio_chain a, b;
    ck_assert_int_eq(vio_queue_pop(f.dev, &a, iov, 4), 0);
    ck_assert_int_eq(vio_queue_pop(f.dev, &b, iov, 4), 0);
    ck_assert_uint_eq(desc_inflight(f.region, a.head), 1);
    ck_assert_uint_eq(desc_inflight(f.region, b.head), 1);
    ck_assert_uint_lt(desc_counter(f.region, a.head), desc_counter(f.region, b.head));
    ck_assert_int_eq(vio_queue_push(f.dev, b.head, 7), 0);
    ck_assert_uint_eq(desc_inflight(f.region, a.head), 1);
    ck_assert_uint_eq(desc_inflight(f.region, b.head), 0);
    ck_assert_uint_eq(r16(f.region, 12), b.head); /* last_batch_head */
    ck_assert_uint_eq(r16(f.region, 14), 1);      /* used_idx */
    /* in-order single-entry completion cannot be tracked per chain */
    ck_assert_int_eq(vio_queue_push_in_order(f.dev, a.head, 0, 1), -ENOTSUP);
    fix_fini(&f);
}
END_TEST

/* Crash with chains in flight, restart, and prove each chain completes once. */
START_TEST(crash_resume_exactly_once)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 0);
    for (uintptr_t t = 1; t <= 5; t++)
        post(&f, t);
    struct iovec iov[4];
    struct vio_chain c[5];
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(vio_queue_pop(f.dev, &c[k], iov, 4), 0);
    /* complete 2nd and 4th out of order, then "crash" */
    ck_assert_int_eq(vio_queue_push(f.dev, c[3].head, 3), 0);
    ck_assert_int_eq(vio_queue_push(f.dev, c[1].head, 1), 0);
    vio_queue_free(f.dev);
    f.dev = NULL;
    post(&f, 6); /* the driver keeps going meanwhile */

    /* restart: new queue object on the same ring and region */
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 3);
    ck_assert_uint_eq(vio_queue_get_last_avail(f.dev), 2 + 3);
    uint16_t expect[4] = {c[0].head, c[2].head, c[4].head, 0};
    struct vio_chain r;
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0);
        if (k < 3)
            ck_assert_uint_eq(r.head, expect[k]); /* first-pop order */
        ck_assert_int_eq(vio_queue_push(f.dev, r.head, 10 + (uint32_t)k), 0);
    }
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), -EAGAIN);

    int seen[7] = {0};
    void *tok;
    uint32_t len;
    while (vio_drvq_get_used(f.drv, &tok, &len) == 0)
        seen[(uintptr_t)tok]++;
    ck_assert(!vio_drvq_is_broken(f.drv));
    for (int t = 1; t <= 6; t++)
        ck_assert_msg(seen[t] == 1, "token %d completed %d times", t, seen[t]);
    fix_fini(&f);
}
END_TEST

/* Crash after publishing a completion but before clearing its flag. */
START_TEST(crash_between_publish_and_clear)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 0);
    post(&f, 1);
    post(&f, 2);
    struct iovec iov[4];
    struct vio_chain a, b;
    ck_assert_int_eq(vio_queue_pop(f.dev, &a, iov, 4), 0);
    ck_assert_int_eq(vio_queue_pop(f.dev, &b, iov, 4), 0);
    ck_assert_int_eq(vio_queue_push(f.dev, a.head, 0), 0);
    /* roll the region back to the moment before the flag was cleared */
    ((uint8_t *)f.region)[16 + 16 * a.head] = 1;
    uint16_t zero = 0;
    memcpy((uint8_t *)f.region + 14, &zero, 2);
    vio_queue_free(f.dev);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 1);
    struct vio_chain r;
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0);
    ck_assert_uint_eq(r.head, b.head);
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), -EAGAIN);
    fix_fini(&f);
}
END_TEST

START_TEST(rewind_across_resubmit)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 0);
    post(&f, 1);
    post(&f, 2);
    struct iovec iov[4];
    struct vio_chain a, b, r;
    ck_assert_int_eq(vio_queue_pop(f.dev, &a, iov, 4), 0);
    ck_assert_int_eq(vio_queue_pop(f.dev, &b, iov, 4), 0);
    vio_queue_free(f.dev);
    post(&f, 3);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), 2);
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0); /* resubmit a */
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0); /* resubmit b */
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0); /* ring: 3 */
    ck_assert_int_eq(vio_queue_rewind(f.dev, 2), 0);      /* undo ring 3 and resubmit b */
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0);
    ck_assert_uint_eq(r.head, b.head);
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), 0);
    ck_assert_int_eq(vio_queue_pop(f.dev, &r, iov, 4), -EAGAIN);
    fix_fini(&f);
}
END_TEST

START_TEST(bad_regions_refused)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len - 1), -EINVAL);
    uint16_t v = 1, n = QSZ * 2;
    memcpy((uint8_t *)f.region + 8, &v, 2);
    memcpy((uint8_t *)f.region + 10, &n, 2); /* desc_num mismatch */
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), -EINVAL);
    /* hostile: every flag set, garbage counters, last_batch_head out of range */
    memset(f.region, 0xff, f.region_len);
    memcpy((uint8_t *)f.region + 8, &v, 2);
    n = QSZ;
    memcpy((uint8_t *)f.region + 10, &n, 2);
    ck_assert_int_eq(vio_queue_set_inflight(f.dev, f.region, f.region_len), QSZ);
    /* resubmitted heads point at zeroed descriptors: popped and validated, never a crash */
    struct iovec iov[4];
    struct vio_chain r;
    int rc = vio_queue_pop(f.dev, &r, iov, 4);
    ck_assert(rc == 0 || rc == -EFAULT || rc == -EPROTO);
    fix_fini(&f);
}
END_TEST

START_TEST(dirty_log_marks_used_ring)
{
    struct fix f;
    fix_init(&f);
    f.dev = dev_start(&f);
    uint8_t bitmap[64] = {0}; /* 512 pages = 2 MiB */
    ck_assert_int_eq(vio_queue_set_dirty_log(f.dev, bitmap, sizeof(bitmap), f.used), 0);
    /* the written buffer lives on a page of its own, far from the rings */
    uint64_t far = arena_alloc(&f.a, 3 * 4096, 4096) + 4096;
    ck_assert_uint_ne(far / 4096, f.used / 4096);
    struct vio_sg fsg = {far, 64};
    ck_assert_int_eq(vio_drvq_add(f.drv, &fsg, 0, 1, (void *)(uintptr_t)1), 0);
    vio_drvq_kick_prepare(f.drv);
    struct iovec iov[4];
    struct vio_chain c;
    ck_assert_int_eq(vio_queue_pop(f.dev, &c, iov, 4), 0);
    ck_assert_int_eq(vio_queue_push(f.dev, c.head, 1), 0);
    uint64_t pg = f.used / 4096;
    ck_assert(bitmap[pg / 8] & (1u << (pg % 8)));
    uint64_t bpg = far / 4096; /* the buffer the device wrote */
    ck_assert_msg(bitmap[bpg / 8] & (1u << (bpg % 8)), "written RX buffer page not logged");
    unsigned set = 0;
    for (unsigned k = 0; k < sizeof(bitmap) * 8; k++)
        set += (bitmap[k / 8] >> (k % 8)) & 1;
    ck_assert_uint_le(set, 3); /* used ring (at most two pages) + the buffer's page */

    /* nothing written: only the used ring is logged */
    memset(bitmap, 0, sizeof(bitmap));
    ck_assert_int_eq(vio_drvq_add(f.drv, &fsg, 0, 1, (void *)(uintptr_t)2), 0);
    vio_drvq_kick_prepare(f.drv);
    ck_assert_int_eq(vio_queue_pop(f.dev, &c, iov, 4), 0);
    ck_assert_int_eq(vio_queue_push(f.dev, c.head, 0), 0);
    ck_assert(!(bitmap[bpg / 8] & (1u << (bpg % 8))));

    memset(bitmap, 0, sizeof(bitmap));
    vio_dirty_log_mark(bitmap, sizeof(bitmap), 4096 * 3 + 100, 4096 * 2); /* pages 3,4,5 */
    ck_assert_uint_eq(bitmap[0], 0x38);
    vio_dirty_log_mark(bitmap, sizeof(bitmap), 4096ull * 10000, 4096); /* beyond: ignored */
    vio_dirty_log_mark(bitmap, sizeof(bitmap), UINT64_MAX - 10, 100);  /* wraps: no crash */
    fix_fini(&f);
}
END_TEST

/* A driver that republishes a head still in flight can make more chains
 * available than the queue holds; the device refuses the (size+1)th. */
START_TEST(more_in_flight_than_size)
{
    struct arena a;
    ck_assert_int_eq(arena_init_simple(&a, 0x100000, 1 << 20), 0);
    struct rawring r;
    ck_assert_int_eq(rawring_init(&r, &a, QSZ, 4096), 0);
    uint64_t buf = arena_alloc(&a, 64, 16);
    rawring_set_desc(&r, 0, buf, 64, 0, 0);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSZ};
    struct vio_queue *q;
    ck_assert_int_eq(vio_queue_new(&qc, &q), 0);
    ck_assert_int_eq(vio_queue_setup(q, a.mem, QSZ, 0, r.desc, r.avail, r.used), 0);
    struct iovec iov[2];
    struct vio_chain c;
    for (unsigned k = 0; k < QSZ; k++) {
        rawring_publish(&r, 0);
        ck_assert_int_eq(vio_queue_pop(q, &c, iov, 2), 0);
    }
    ck_assert_int_eq(vio_queue_pop(q, &c, iov, 2), -EAGAIN); /* full but nothing new */
    rawring_publish(&r, 0); /* head 0 again, while QSZ chains are held */
    ck_assert_int_eq(vio_queue_pop(q, &c, iov, 2), -EPROTO);
    ck_assert(vio_queue_is_broken(q));
    ck_assert_int_eq(vio_queue_violation(q), VIO_VIOL_AVAIL_IDX);
    vio_queue_free(q);
    arena_fini(&a);
}
END_TEST

static Suite *inflight_suite(void)
{
    Suite *s = suite_create("inflight");
    TCase *t = tcase_create("inflight");
    tcase_add_test(t, fresh_region_marks_and_clears);
    tcase_add_test(t, crash_resume_exactly_once);
    tcase_add_test(t, crash_between_publish_and_clear);
    tcase_add_test(t, rewind_across_resubmit);
    tcase_add_test(t, bad_regions_refused);
    tcase_add_test(t, more_in_flight_than_size);
    suite_add_tcase(s, t);
    TCase *l = tcase_create("dirty_log");
    tcase_add_test(l, dirty_log_marks_used_ring);
    suite_add_tcase(s, l);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(inflight_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
