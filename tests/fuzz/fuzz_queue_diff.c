/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the split ring's single and burst entry points, fed the same rings, must
 * agree (the differential engine of tests/unit/queue_diff.h, driven by the input instead of a
 * seed). Aborts on any difference: return codes, chains, iovecs, tokens, lengths, guest memory,
 * queue bookkeeping, broken state.
 *
 * Input layout:
 *   byte 0   bit 0: driver side (vio_drvq_*) instead of device side (vio_queue_*)
 *            bits 1-3: log2 of the queue size (clamped to 6: 1..64)
 *            bits 4-7: device memory layout (mod 5; see struct qd_dev_cfg)
 *   byte 1   bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 IN_ORDER,
 *            bits 3-4 device queue direction (0/3 any, 1 out only, 2 in only)
 *   byte 2   chance in 256 that a generated chain / device step breaks a rule
 *   bytes 3-4 device side: initial avail and used idx (little-endian)
 *   rest     the script: ops and their parameters (queue_diff.h's qd_*_run), read as it goes;
 *            the run ends when the input does.
 *
 * Seeds (tests/fuzz/corpus/queue_diff/): one per side and feature set, header as above and a
 * fixed pseudo-random script.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define QD_FAIL(...)                                                                              \
    do {                                                                                          \
        fprintf(stderr, "fuzz_queue_diff: ");                                                     \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fputc('\n', stderr);                                                                      \
        abort();                                                                                  \
    } while (0)

#include "queue_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 4000u

static struct qd_dev_side dev_sides[2];
static struct qd_drv_side drv_sides[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    unsigned lg = (data[0] >> 1) & 7;
    uint16_t qsize = (uint16_t)(1u << (lg > 6 ? 6 : lg));
    uint64_t features = ((data[1] & 1) ? 1ull << VIRTIO_RING_F_INDIRECT_DESC : 0) |
                        ((data[1] & 2) ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0) |
                        ((data[1] & 4) ? 1ull << VIRTIO_F_IN_ORDER : 0);
    struct qd_stats st = {0};
    struct qd_src src;
    qd_src_init(&src, data + 5, size - 5, size);
    if (data[0] & 1) {
        struct qd_drv d;
        struct qd_drv_cfg cfg = {.size = qsize, .features = features, .hostile = data[2]};
        if (qd_drv_init(&d, drv_sides, &cfg, &st) < 0)
            QD_FAIL("driver harness setup failed");
        qd_drv_run(&d, &src, MAX_OPS);
        qd_drv_fini(&d);
    } else {
        static const enum vio_queue_dir dirs[] = {VIO_QUEUE_DIR_ANY, VIO_QUEUE_DIR_OUT_ONLY,
                                                  VIO_QUEUE_DIR_IN_ONLY, VIO_QUEUE_DIR_ANY};
        struct qd_dev d;
        struct qd_dev_cfg cfg = {
            .size = qsize,
            .features = features,
            .dir = dirs[(data[1] >> 3) & 3],
            .layout = (uint8_t)((data[0] >> 4) % 5),
            .start = (uint16_t)(data[3] | data[4] << 8),
            .hostile = data[2],
        };
        if (qd_dev_init(&d, dev_sides, &cfg, &st) < 0)
            QD_FAIL("device harness setup failed");
        qd_dev_run(&d, &src, MAX_OPS);
        qd_dev_fini(&d);
    }
    return 0;
}
