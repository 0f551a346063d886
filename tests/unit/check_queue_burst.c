/* SPDX-License-Identifier: MIT */
/* vio_queue_pop_burst(): iovec layout across chains, empty and short-array cases, a violation
 * after good chains. (The driver-side burst collect is covered by check_queue_model.) */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include <linux/virtio_ring.h>

#include "arena.h"
#include "virtio/queue.h"

#define QSZ 16u

struct fx {
    struct arena a;
    struct rawring r;
    struct vio_queue *q;
    uint64_t buf;
};

static void fx_init(struct fx *f)
{
    ck_assert_int_eq(arena_init_simple(&f->a, 0x100000, 1 << 20), 0);
    ck_assert_int_eq(rawring_init(&f->r, &f->a, QSZ, 4096), 0);
    f->buf = arena_alloc(&f->a, 4096, 16);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSZ};
    ck_assert_int_eq(vio_queue_new(&qc, &f->q), 0);
    ck_assert_int_eq(vio_queue_setup(f->q, f->a.mem, QSZ, 0, f->r.desc, f->r.avail, f->r.used), 0);
}

static void fx_fini(struct fx *f)
{
    vio_queue_free(f->q);
    arena_fini(&f->a);
}

START_TEST(burst_layout)
{
    struct fx f;
    fx_init(&f);
    /* chain A: one readable; chain B: readable + writable; chain C: one writable */
    rawring_set_desc(&f.r, 0, f.buf, 10, 0, 0);
    rawring_publish(&f.r, 0);
    rawring_set_desc(&f.r, 1, f.buf + 100, 20, VRING_DESC_F_NEXT, 2);
    rawring_set_desc(&f.r, 2, f.buf + 200, 30, VRING_DESC_F_WRITE, 0);
    rawring_publish(&f.r, 1);
    rawring_set_desc(&f.r, 3, f.buf + 300, 40, VRING_DESC_F_WRITE, 0);
    rawring_publish(&f.r, 3);
    struct vio_chain ch[8];
    struct iovec iov[8];
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 8, iov, 8), 3);
    ck_assert_uint_eq(ch[0].head, 0);
    ck_assert_uint_eq(ch[1].head, 1);
    ck_assert_uint_eq(ch[2].head, 3);
    ck_assert_uint_eq(ch[1].n_out, 1);
    ck_assert_uint_eq(ch[1].n_in, 1);
    /* chain k's iovecs follow chain k-1's */
    ck_assert_ptr_eq(iov[0].iov_base, arena_ptr(&f.a, f.buf));
    ck_assert_ptr_eq(iov[1].iov_base, arena_ptr(&f.a, f.buf + 100));
    ck_assert_ptr_eq(iov[2].iov_base, arena_ptr(&f.a, f.buf + 200));
    ck_assert_ptr_eq(iov[3].iov_base, arena_ptr(&f.a, f.buf + 300));
    ck_assert_uint_eq(iov[3].iov_len, 40);
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 8, iov, 8), -EAGAIN);
    fx_fini(&f);
}
END_TEST

START_TEST(burst_short_array)
{
    struct fx f;
    fx_init(&f);
    rawring_set_desc(&f.r, 0, f.buf, 10, 0, 0);
    rawring_publish(&f.r, 0);
    rawring_set_desc(&f.r, 1, f.buf + 100, 20, VRING_DESC_F_NEXT, 2);
    rawring_set_desc(&f.r, 2, f.buf + 200, 30, VRING_DESC_F_WRITE, 0);
    rawring_publish(&f.r, 1);
    struct vio_chain ch[4];
    struct iovec iov[2];
    /* room for chain A (1 iovec) but not for all of B: only A is taken */
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 4, iov, 2), 1);
    /* B alone needs 2: with room for 1 nothing is consumed */
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 4, iov, 1), -ENOBUFS);
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 4, iov, 2), 1);
    ck_assert_uint_eq(ch[0].head, 1);
    ck_assert(!vio_queue_is_broken(f.q));
    fx_fini(&f);
}
END_TEST

START_TEST(burst_violation_after_good)
{
    struct fx f;
    fx_init(&f);
    rawring_set_desc(&f.r, 0, f.buf, 10, 0, 0);
    rawring_publish(&f.r, 0);
    rawring_publish(&f.r, QSZ); /* head out of range */
    struct vio_chain ch[4];
    struct iovec iov[4];
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 4, iov, 4), 1); /* the good one first */
    ck_assert(vio_queue_is_broken(f.q));
    ck_assert_int_eq(vio_queue_violation(f.q), VIO_VIOL_HEAD_RANGE);
    ck_assert_int_eq(vio_queue_pop_burst(f.q, ch, 4, iov, 4), -EIO);
    ck_assert_int_eq(vio_queue_pop_burst(NULL, ch, 4, iov, 4), -EINVAL);
    fx_fini(&f);
}
END_TEST

START_TEST(add_burst)
{
    struct arena a;
    ck_assert_int_eq(arena_init_simple(&a, 0x100000, 1 << 20), 0);
    uint64_t desc = arena_alloc(&a, 16 * QSZ, 16), avail = arena_alloc(&a, 6 + 2 * QSZ, 2),
             used = arena_alloc(&a, 6 + 8 * QSZ, 4), buf = arena_alloc(&a, 64 * QSZ, 16);
    struct vio_drvq_config dc = {.struct_size = sizeof(dc), .size = QSZ, .mem = a.mem,
                                 .desc = desc, .driver = avail, .device = used};
    struct vio_drvq *d;
    ck_assert_int_eq(vio_drvq_new(&dc, &d), 0);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSZ};
    struct vio_queue *q;
    ck_assert_int_eq(vio_queue_new(&qc, &q), 0);
    ck_assert_int_eq(vio_queue_setup(q, a.mem, QSZ, 0, desc, avail, used), 0);

    struct vio_sg sg[QSZ + 4];
    void *tok[QSZ + 4];
    for (unsigned k = 0; k < QSZ + 4; k++) {
        sg[k].addr = buf + 64 * (k % QSZ);
        sg[k].len = 64;
        tok[k] = (void *)(uintptr_t)(k + 1);
    }
    /* caller errors are found before anything is added */
    sg[2].len = 0;
    ck_assert_int_eq(vio_drvq_add_burst(d, sg, 4, true, tok), -EINVAL);
    ck_assert_uint_eq(vio_drvq_num_free(d), QSZ);
    sg[2].len = 64;
    /* more than fit: the ones that fit are added */
    ck_assert_int_eq(vio_drvq_add_burst(d, sg, QSZ + 4, true, tok), QSZ);
    ck_assert_int_eq(vio_drvq_add_burst(d, sg, 1, true, tok), -ENOSPC);
    vio_drvq_kick_prepare(d);
    struct vio_chain ch[QSZ];
    struct iovec iov[QSZ];
    ck_assert_int_eq(vio_queue_pop_burst(q, ch, QSZ, iov, QSZ), QSZ);
    for (unsigned k = 0; k < QSZ; k++) {
        ck_assert_uint_eq(ch[k].n_in, 1);
        ck_assert_uint_eq(ch[k].in_len, 64);
        ck_assert_int_eq(vio_queue_push(q, ch[k].head, 8), 0);
    }
    void *got[QSZ];
    uint32_t len[QSZ];
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, QSZ), QSZ);
    for (unsigned k = 0; k < QSZ; k++) {
        ck_assert_ptr_eq(got[k], tok[k]); /* completed in the order pushed = added */
        ck_assert_uint_eq(len[k], 8);
    }
    ck_assert_uint_eq(vio_drvq_num_free(d), QSZ);
    vio_queue_free(q);
    vio_drvq_free(d);
    arena_fini(&a);
}
END_TEST

/* vio_drvq_get_used_burst(): entries seen by an earlier call and entries published since are
 * taken in one call; an empty poll answers 0; a used idx beyond what is in flight, read
 * after good entries, returns those first and breaks the queue. */
START_TEST(get_used_burst_refresh)
{
    struct arena a;
    ck_assert_int_eq(arena_init_simple(&a, 0x100000, 1 << 20), 0);
    uint64_t desc = arena_alloc(&a, 16 * QSZ, 16), avail = arena_alloc(&a, 6 + 2 * QSZ, 2),
             used = arena_alloc(&a, 6 + 8 * QSZ, 4), buf = arena_alloc(&a, 64 * QSZ, 16);
    struct vio_drvq_config dc = {.struct_size = sizeof(dc), .size = QSZ, .mem = a.mem,
                                 .desc = desc, .driver = avail, .device = used};
    struct vio_drvq *d;
    ck_assert_int_eq(vio_drvq_new(&dc, &d), 0);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSZ};
    struct vio_queue *q;
    ck_assert_int_eq(vio_queue_new(&qc, &q), 0);
    ck_assert_int_eq(vio_queue_setup(q, a.mem, QSZ, 0, desc, avail, used), 0);
    struct rawring rr;
    ck_assert_int_eq(rawring_attach(&rr, &a, QSZ, desc, avail, used), 0);

    struct vio_sg sg[8];
    void *tok[8];
    for (unsigned k = 0; k < 8; k++) {
        sg[k].addr = buf + 64 * k;
        sg[k].len = 64;
        tok[k] = (void *)(uintptr_t)(k + 1);
    }
    void *got[8];
    uint32_t len[8];
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 8), 0); /* nothing in flight */
    ck_assert_int_eq(vio_drvq_add_burst(d, sg, 8, true, tok), 8);
    vio_drvq_kick_prepare(d);
    struct vio_chain ch[8];
    struct iovec iov[8];
    ck_assert_int_eq(vio_queue_pop_burst(q, ch, 8, iov, 8), 8);
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 8), 0); /* none used yet */
    for (unsigned k = 0; k < 3; k++)
        ck_assert_int_eq(vio_queue_push(q, ch[k].head, 10 + k), 0);
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 2), 2); /* 3 seen, 2 taken */
    ck_assert_ptr_eq(got[1], tok[1]);
    for (unsigned k = 3; k < 6; k++)
        ck_assert_int_eq(vio_queue_push(q, ch[k].head, 10 + k), 0);
    /* the one seen and the three published since, in one call */
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 8), 4);
    for (unsigned k = 0; k < 4; k++) {
        ck_assert_ptr_eq(got[k], tok[2 + k]);
        ck_assert_uint_eq(len[k], 12 + k);
    }
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, NULL, 8), 0); /* empty poll */
    ck_assert(!vio_drvq_is_broken(d));
    /* one more seen, then a used idx beyond what is in flight */
    ck_assert_int_eq(vio_queue_push(q, ch[6].head, 16), 0);
    ck_assert_int_eq(vio_queue_push(q, ch[7].head, 17), 0);
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 1), 1);
    rawring_set_used_idx(&rr, (uint16_t)(rawring_used_idx(&rr) + 5));
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 8), 1); /* the seen one first */
    ck_assert_ptr_eq(got[0], tok[7]);
    ck_assert(vio_drvq_is_broken(d));
    ck_assert_int_eq(vio_drvq_violation(d), VIO_VIOL_USED_IDX);
    ck_assert_int_eq(vio_drvq_get_used_burst(d, got, len, 8), -EIO);
    vio_queue_free(q);
    vio_drvq_free(d);
    arena_fini(&a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue_burst");
    TCase *t = tcase_create("pop_burst");
    tcase_add_test(t, burst_layout);
    tcase_add_test(t, burst_short_array);
    tcase_add_test(t, burst_violation_after_good);
    tcase_add_test(t, add_burst);
    tcase_add_test(t, get_used_burst_refresh);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
