/* SPDX-License-Identifier: MIT */
/*
 * Generic driver-seat helpers over struct vio_driver: a generation-checked configuration
 * read and the feature negotiation of spec 3.1.1. Transport-neutral.
 */
#include <errno.h>

#include "transport/driver_internal.h"
#include "virtio/driver.h"
#include "virtio/status.h"

#define CFG_RETRIES 16

int vio_driver_config_read_stable(const struct vio_driver *d, unsigned off, void *buf,
                                  unsigned len)
{
    if (!d || !d->ops || !buf)
        return -EINVAL;
    if (!d->ops->config_generation)
        return vio_driver_config_read(d, off, buf, len);
    for (int i = 0; i < CFG_RETRIES; i++) {
        uint32_t g0, g1;
        int r = vio_driver_config_generation(d, &g0);
        if (r == 0)
            r = vio_driver_config_read(d, off, buf, len);
        if (r == 0)
            r = vio_driver_config_generation(d, &g1);
        if (r < 0)
            return r;
        if (g0 == g1)
            return 0;
    }
    return -EAGAIN;
}

static int fail(const struct vio_driver *d, uint8_t st, int err)
{
    (void)vio_driver_set_status(d, st | VIO_S_FAILED);
    return err;
}

int vio_driver_negotiate(const struct vio_driver *d, uint64_t wanted, uint64_t *out)
{
    if (!d || !d->ops)
        return -EINVAL;
    int r = vio_driver_reset(d);
    if (r < 0)
        return r;
    uint8_t st = VIO_S_ACKNOWLEDGE;
    if ((r = vio_driver_set_status(d, st)) < 0)
        return r;
    st |= VIO_S_DRIVER;
    if ((r = vio_driver_set_status(d, st)) < 0)
        return r;
    uint64_t dev;
    if ((r = vio_driver_get_features(d, &dev)) < 0)
        return fail(d, st, r);
    if (d->ops->flags & VIO_DRIVER_LEGACY) {
        /* legacy (virtio 0.9.5): 32 feature bits, no FEATURES_OK */
        uint64_t acc = dev & wanted & 0xffffffffu;
        if ((r = vio_driver_set_features(d, acc)) < 0)
            return fail(d, st, r);
        if (out)
            *out = acc;
        return 0;
    }
    if (!vio_has_feature(dev, VIO_F_VERSION_1))
        return fail(d, st, -ENOTSUP);
    uint64_t acc = dev & (wanted | vio_feature_bit(VIO_F_VERSION_1));
    if ((r = vio_driver_set_features(d, acc)) < 0)
        return fail(d, st, r);
    st |= VIO_S_FEATURES_OK;
    if ((r = vio_driver_set_status(d, st)) < 0)
        return fail(d, st, r);
    uint8_t back;
    if ((r = vio_driver_get_status(d, &back)) < 0)
        return fail(d, st, r);
    /* spec 3.1.1 step 6: re-read; a device that cannot take the subset clears FEATURES_OK */
    if (!(back & VIO_S_FEATURES_OK) || (back & VIO_S_NEEDS_RESET))
        return fail(d, st, -EPROTO);
    if (out)
        *out = acc;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Register sequences shared by the driver seats (driver_internal.h)         */

int vio_drv_features_get(const struct vio_drv_regs *io, uint32_t sel, uint32_t win,
                         uint64_t *f)
{
    if (!f)
        return -EINVAL;
    uint32_t w[2];
    for (uint32_t i = 0; i < 2; i++) {
        int r;
        if ((r = io->wr(io->o, sel, 4, i)) < 0 || (r = io->rd(io->o, win, 4, &w[i])) < 0)
            return r;
    }
    *f = ((uint64_t)w[1] << 32) | w[0];
    return 0;
}

int vio_drv_features_set(const struct vio_drv_regs *io, uint32_t sel, uint32_t win, uint64_t f)
{
    for (uint32_t i = 0; i < 2; i++) {
        int r;
        if ((r = io->wr(io->o, sel, 4, i)) < 0 ||
            (r = io->wr(io->o, win, 4, (uint32_t)(f >> (32 * i)))) < 0)
            return r;
    }
    return 0;
}

bool vio_drv_ring_ok(const struct vio_driver_queue *q)
{
    return q && q->size && !(q->size & (q->size - 1)) && !(q->desc & 15) && !(q->driver & 1) &&
           !(q->device & 3);
}

int vio_drv_queue_program(const struct vio_drv_regs *io, uint32_t enable, uint32_t size_reg,
                          unsigned width, const uint32_t lo[3],
                          const struct vio_driver_queue *q)
{
    uint32_t en;
    int r;
    if ((r = io->rd(io->o, enable, width, &en)) < 0)
        return r;
    if (en & 1)
        return -EBUSY;
    if ((r = io->wr(io->o, size_reg, width, q->size)) < 0)
        return r;
    const uint64_t a[3] = {q->desc, q->driver, q->device};
    for (unsigned i = 0; i < 3; i++)
        if ((r = io->wr(io->o, lo[i], 4, (uint32_t)a[i])) < 0 ||
            (r = io->wr(io->o, lo[i] + 4, 4, (uint32_t)(a[i] >> 32))) < 0)
            return r;
    return 0;
}

int vio_drv_config_rw(const struct vio_drv_regs *io, uint32_t base, unsigned off, uint8_t *buf,
                      unsigned len, bool write)
{
    while (len) {
        unsigned n = 4;
        while (n > 1 && ((off & (n - 1)) || n > len))
            n >>= 1;
        uint32_t v = 0;
        int r;
        if (write) {
            for (unsigned i = 0; i < n; i++)
                v |= (uint32_t)buf[i] << (8 * i);
            r = io->wr(io->o, base + off, n, v);
        } else {
            r = io->rd(io->o, base + off, n, &v);
            for (unsigned i = 0; r == 0 && i < n; i++)
                buf[i] = (uint8_t)(v >> (8 * i));
        }
        if (r < 0)
            return r;
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
}
