/* SPDX-License-Identifier: MIT */
/*
 * Differential test of the split ring's single and burst entry points (queue_diff.h): the same
 * rings, honest and hostile, through vio_queue_pop()/push() and vio_queue_pop_burst()/
 * push_batch() on the device side, vio_drvq_add()/get_used() and vio_drvq_add_burst()/
 * get_used_burst() on the driver side; returned chains, iovecs, tokens, return codes, guest
 * memory and broken states must be identical after every step.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static char qd_msg[512];
#define QD_FAIL(...)                                                                              \
    do {                                                                                          \
        snprintf(qd_msg, sizeof(qd_msg), __VA_ARGS__);                                            \
        ck_abort_msg("%s (seed %llu)", qd_msg, (unsigned long long)cur_seed);                      \
    } while (0)

static unsigned long long cur_seed;

#include "queue_diff.h"

static struct qd_dev_side dev_sides[2];
static struct qd_drv_side drv_sides[2];

static uint64_t feat(bool ind, bool evidx, bool in_order)
{
    return (ind ? 1ull << VIRTIO_RING_F_INDIRECT_DESC : 0) |
           (evidx ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0) | (in_order ? 1ull << VIRTIO_F_IN_ORDER : 0);
}

static void run_dev(const struct qd_dev_cfg *cfg, uint64_t seed, unsigned ops, struct qd_stats *st)
{
    struct qd_dev d;
    struct qd_src src;
    cur_seed = seed;
    qd_src_init(&src, NULL, 0, seed);
    ck_assert_int_eq(qd_dev_init(&d, dev_sides, cfg, st), 0);
    qd_dev_run(&d, &src, ops);
    qd_dev_fini(&d);
}

static void run_drv(const struct qd_drv_cfg *cfg, uint64_t seed, unsigned ops, struct qd_stats *st)
{
    struct qd_drv d;
    struct qd_src src;
    cur_seed = seed;
    qd_src_init(&src, NULL, 0, seed);
    ck_assert_int_eq(qd_drv_init(&d, drv_sides, cfg, st), 0);
    qd_drv_run(&d, &src, ops);
    qd_drv_fini(&d);
}

/* Honest rings: many seeds over sizes, features (indirect, event idx, in order), memory
 * layouts and start indices near the 16-bit wrap. Nothing may break. */
START_TEST(dev_honest)
{
    struct qd_stats st = {0};
    static const uint16_t sizes[] = {1, 2, 4, 8, 16, 64};
    for (unsigned seed = 0; seed < 240; seed++) {
        struct qd_dev_cfg cfg = {
            .size = sizes[seed % 6],
            .features = feat(true, seed & 1, seed & 2),
            .dir = VIO_QUEUE_DIR_ANY,
            .layout = (uint8_t)((seed / 6) % 2), /* one region, or two adjacent ones */
            .start = (seed & 4) ? (uint16_t)(65536 - 3 - seed % 50) : 0,
            .hostile = 0,
        };
        run_dev(&cfg, 1000 + seed, 300, &st);
    }
    ck_assert_msg(st.broken_runs == 0, "honest runs broke: %s", qd_viol_summary(&st));
    ck_assert_uint_gt(st.chains, 10000);
    ck_assert_uint_gt(st.multi, 1000); /* chains and indirect tables, not only single buffers */
}
END_TEST

/* Hostile rings, one table row per memory layout / direction / feature set; the runs must
 * reach each kind of violation (checked over the table at the end). */
static const struct {
    uint8_t layout;
    enum vio_queue_dir dir;
    bool ind, evidx, in_order;
} hostile_rows[] = {
    {0, VIO_QUEUE_DIR_ANY, true, false, false},  {0, VIO_QUEUE_DIR_ANY, false, true, false},
    {1, VIO_QUEUE_DIR_ANY, true, true, false},   {2, VIO_QUEUE_DIR_ANY, true, false, true},
    {3, VIO_QUEUE_DIR_ANY, true, true, true},    {0, VIO_QUEUE_DIR_OUT_ONLY, true, true, false},
    {1, VIO_QUEUE_DIR_IN_ONLY, true, false, false}, {4, VIO_QUEUE_DIR_ANY, true, true, false},
};
static struct qd_stats hostile_st;

START_TEST(dev_hostile)
{
    static const uint16_t sizes[] = {2, 4, 8, 16, 32, 64};
    struct qd_stats st = {0};
    for (unsigned seed = 0; seed < 150; seed++) {
        struct qd_dev_cfg cfg = {
            .size = sizes[seed % 6],
            .features = feat(hostile_rows[_i].ind, hostile_rows[_i].evidx, hostile_rows[_i].in_order),
            .dir = hostile_rows[_i].dir,
            .layout = hostile_rows[_i].layout,
            .start = (seed & 1) ? (uint16_t)(65530 + seed % 6) : (uint16_t)seed,
            .hostile = 8 + seed % 64,
        };
        run_dev(&cfg, 50000 + 1000 * (unsigned)_i + seed, 120, &st);
    }
    ck_assert_uint_gt(st.broken_runs, 50);
    for (unsigned v = 0; v < VIO_VIOL__COUNT; v++)
        hostile_st.viol_seen[v] += st.viol_seen[v];
    hostile_st.broken_runs += st.broken_runs;
}
END_TEST

/* Every device-side rule was broken by some hostile run above (the table's runs come first). */
START_TEST(dev_hostile_coverage)
{
    static const enum vio_violation want[] = {
        VIO_VIOL_AVAIL_IDX,        VIO_VIOL_HEAD_RANGE,      VIO_VIOL_NEXT_RANGE,
        VIO_VIOL_CHAIN_LOOP,       VIO_VIOL_INDIRECT_LEN,    VIO_VIOL_INDIRECT_NESTED,
        VIO_VIOL_INDIRECT_NEXT,    VIO_VIOL_INDIRECT_FEATURE, VIO_VIOL_TOTAL_LEN,
        VIO_VIOL_ADDRESS,          VIO_VIOL_ORDER,           VIO_VIOL_DIRECTION,
    };
    for (unsigned k = 0; k < sizeof(want) / sizeof(want[0]); k++)
        ck_assert_msg(hostile_st.viol_seen[want[k]] > 0, "no hostile run broke %s",
                      vio_violation_name(want[k]));
}
END_TEST

/* A chain over 4 GiB (1066 buffers of ~4 MiB in one indirect table), alone. */
START_TEST(dev_total_len)
{
    struct qd_stats st = {0};
    struct qd_dev d;
    struct qd_dev_cfg cfg = {.size = 8, .features = feat(true, false, false), .layout = 4};
    cur_seed = 7;
    ck_assert_int_eq(qd_dev_init(&d, dev_sides, &cfg, &st), 0);
    /* a good chain first, then the long one: the burst returns the first, then is broken */
    qd_w_desc(&d, 0, d.data, 100, 0, 0);
    qd_w(&d, (struct qd_write){.kind = QW_PUBLISH, .i = 0});
    d.cursor = 1;
    /* then the chain over 4 GiB, as qd_gen_chain() shape 16 makes it */
    uint16_t h = d.cursor;
    unsigned m = (unsigned)((1ull << 32) / d.big_len) + 1u;
    uint64_t t = d.tables + QD_TABLE_SLOTS * QD_TABLE_SLOT;
    for (unsigned j = 0; j < m; j++)
        qd_w_table(&d, t, j, QD_BASE, (uint32_t)d.big_len,
                   (uint16_t)(j + 1 < m ? VRING_DESC_F_NEXT : 0), (uint16_t)(j + 1 < m ? j + 1 : 0));
    qd_w_desc(&d, h, t, 16u * m, VRING_DESC_F_INDIRECT, 0);
    qd_w(&d, (struct qd_write){.kind = QW_PUBLISH, .i = h});
    qd_dev_apply(&d);
    int r0a = vio_queue_pop(d.s[0].q, &d.s[0].ch[0], d.s[0].iov, QD_MAXIOV);
    int r0b = vio_queue_pop(d.s[0].q, &d.s[0].ch[1], d.s[0].iov + 1, QD_MAXIOV - 1);
    int r1 = vio_queue_pop_burst(d.s[1].q, d.s[1].ch, 4, d.s[1].iov, QD_MAXIOV);
    ck_assert_int_eq(r0a, 0);
    ck_assert_int_eq(r0b, -EPROTO);
    ck_assert_int_eq(r1, 1);
    ck_assert_int_eq(vio_queue_violation(d.s[0].q), VIO_VIOL_TOTAL_LEN);
    qd_dev_check(&d, "total-len");
    qd_dev_fini(&d);
}
END_TEST

START_TEST(drv_honest)
{
    struct qd_stats st = {0};
    static const uint16_t sizes[] = {1, 2, 4, 8, 32, 64};
    for (unsigned seed = 0; seed < 240; seed++) {
        struct qd_drv_cfg cfg = {.size = sizes[seed % 6],
                                 .features = feat(seed & 1, seed & 2, seed & 4)};
        run_drv(&cfg, 7000 + seed, 300, &st);
    }
    ck_assert_msg(st.broken_runs == 0, "honest runs broke: %s", qd_viol_summary(&st));
    ck_assert_uint_gt(st.chains, 5000);
    ck_assert_uint_gt(st.multi, 1000);
}
END_TEST

/* The 16-bit indices wrap on the driver side (the device side starts near the wrap). */
START_TEST(drv_wrap)
{
    struct qd_stats st = {0}, st2 = {0};
    struct qd_drv_cfg cfg = {.size = 8, .features = feat(false, true, false)};
    run_drv(&cfg, 99, 250000, &st);
    ck_assert_msg(st.broken_runs == 0, "honest runs broke: %s", qd_viol_summary(&st));
    ck_assert_uint_gt(st.chains, 66000); /* more buffers than 16-bit indices count */
    struct qd_drv_cfg cfg2 = {.size = 4, .features = feat(true, false, true)};
    run_drv(&cfg2, 98, 500000, &st2);
    ck_assert_msg(st2.broken_runs == 0, "honest runs broke: %s", qd_viol_summary(&st2));
    ck_assert_uint_gt(st2.chains, 66000);
}
END_TEST

START_TEST(drv_hostile)
{
    struct qd_stats st = {0};
    static const uint16_t sizes[] = {2, 4, 8, 16, 64};
    for (unsigned seed = 0; seed < 400; seed++) {
        struct qd_drv_cfg cfg = {.size = sizes[seed % 5],
                                 .features = feat(seed & 1, seed & 2, seed & 4),
                                 .hostile = 8 + seed % 64};
        run_drv(&cfg, 90000 + seed, 150, &st);
    }
    ck_assert_uint_gt(st.broken_runs, 100);
    ck_assert_uint_gt(st.viol_seen[VIO_VIOL_USED_IDX], 0);
    ck_assert_uint_gt(st.viol_seen[VIO_VIOL_USED_ID], 0);
    ck_assert_uint_gt(st.viol_seen[VIO_VIOL_USED_LEN], 0);
}
END_TEST

static Suite *queue_diff_suite(void)
{
    Suite *s = suite_create("queue_diff");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, dev_honest);
    tcase_add_loop_test(tc, dev_hostile, 0, (int)(sizeof(hostile_rows) / sizeof(hostile_rows[0])));
    tcase_add_test(tc, dev_hostile_coverage);
    tcase_add_test(tc, dev_total_len);
    suite_add_tcase(s, tc);
    tc = tcase_create("driver");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, drv_honest);
    tcase_add_test(tc, drv_wrap);
    tcase_add_test(tc, drv_hostile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_diff_suite());
    /* one process: dev_hostile_coverage reads what the dev_hostile rows counted */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
