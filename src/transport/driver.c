/* SPDX-License-Identifier: MIT */
/*
 * Generic driver-seat helpers over struct vio_driver: a generation-checked configuration
 * read and the feature negotiation of spec 3.1.1. Transport-neutral.
 */
#include <errno.h>

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
