/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-MMIO driver seat (src/transport/mmio_driver.c): every
 * register read returns the next 4 bytes of the input (cycled), so the device answers
 * anything at every step: magic, version (1 and 2 paths), queue maxima, status, interrupt
 * status, configuration bytes.
 *
 * Input layout: byte 0 picks the window size (0x100 + 0x100 * (byte & 7)); the rest is the
 * stream of register values.
 *
 * Oracles (abort on failure): every access lies inside the window and has size 1, 2 or 4;
 * every op returns 0, a documented count, or a documented errno.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/driver.h"

#define CHECK(c)                                                                        \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "fuzz_mmio_driver: %s:%d: %s\n", __FILE__, __LINE__, #c);   \
            abort();                                                                    \
        }                                                                               \
    } while (0)

struct fz {
    uint32_t window;
    const uint8_t *s;
    size_t n, pos;
};

static void acc(const struct fz *f, uint64_t off, unsigned size)
{
    CHECK(size == 1 || size == 2 || size == 4);
    CHECK(off < f->window && size <= f->window - off);
}

static int rd(void *o, uint64_t off, unsigned size, uint32_t *v)
{
    struct fz *f = o;
    acc(f, off, size);
    uint32_t x = 0;
    for (unsigned i = 0; i < size && f->n; i++) {
        x |= (uint32_t)f->s[f->pos] << (8 * i);
        f->pos = (f->pos + 1) % f->n;
    }
    *v = x;
    return 0;
}

static int wr(void *o, uint64_t off, unsigned size, uint32_t v)
{
    (void)v;
    acc(o, off, size);
    return 0;
}

static const struct vio_mmio_driver_io io = {rd, wr};

static void ok_err(int r)
{
    CHECK(r == 0 || r == -EINVAL || r == -ERANGE || r == -EPROTO || r == -ENOTSUP ||
          r == -EBUSY || r == -ETIMEDOUT || r == -EAGAIN || r == -ENOMEM);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fz f = {.window = 0x100u + 0x100u * (data[0] & 7u), .s = data + 1, .n = size - 1};
    struct vio_mmio_driver_config c = {.struct_size = sizeof(c), .io = &io, .io_opaque = &f,
                                       .window_size = f.window};
    struct vio_mmio_driver *m = NULL;
    int r = vio_mmio_driver_new(&c, &m);
    if (r < 0) {
        CHECK(r == -ENODEV || r == -ENOTSUP);
        CHECK(m == NULL);
        return 0;
    }
    uint32_t ver = vio_mmio_driver_version(m);
    CHECK(ver == 1 || ver == 2);
    struct vio_driver d = vio_mmio_driver_get(m);
    uint64_t feat;
    feat = 0;
    r = vio_driver_negotiate(&d, ~0ull, &feat);
    ok_err(r);
    if (ver == 1) /* a legacy device never gets more than 32 bits */
        CHECK((feat >> 32) == 0);
    uint8_t buf[300];
    ok_err(vio_driver_config_read_stable(&d, 0, buf, sizeof(buf)));
    ok_err(vio_driver_config_write(&d, 1, buf, 9));
    int nq = vio_driver_num_queues(&d);
    CHECK((nq >= 0 && nq <= 1024) || nq == -ENOMEM);
    for (unsigned q = 0; q < 3; q++) {
        int max = vio_driver_queue_max_size(&d, q);
        CHECK((max >= 0 && max <= 32768) || max == -ERANGE || max == -ENOMEM);
        struct vio_driver_queue dq = {.size = 16, .desc = 0x1000, .driver = 0x1100, .device = 0x1124};
        ok_err(vio_driver_queue_setup(&d, q, &dq));
        ok_err(vio_driver_queue_enable(&d, q));
        ok_err(vio_driver_notify(&d, q));
    }
    r = vio_driver_ack_interrupt(&d);
    CHECK(r >= 0 && r <= 3);
    ok_err(vio_driver_reset(&d));
    vio_mmio_driver_free(m);
    return 0;
}
