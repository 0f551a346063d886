/* SPDX-License-Identifier: MIT */
/*
 * Generic device interface: the checked wrappers a transport calls. They hold
 * the argument checks (NULL device, ranges that overflow) in one place, so a
 * device model's ops see sane arguments, and map a missing op to -ENOTSUP.
 */
#include <errno.h>

#include "virtio/device.h"

static bool dev_ok(const struct vio_device *dev)
{
    return dev && dev->ops;
}

int vio_device_bind(struct vio_device *dev, const struct vio_device_hooks *hooks)
{
    if (!dev_ok(dev))
        return -EINVAL;
    if (hooks && hooks->struct_size < sizeof(*hooks))
        return -EINVAL;
    if (!dev->ops->bind)
        return -ENOTSUP;
    return dev->ops->bind(dev->opaque, hooks);
}

uint32_t vio_device_id(const struct vio_device *dev)
{
    return dev_ok(dev) && dev->ops->device_id ? dev->ops->device_id(dev->opaque) : 0;
}

uint64_t vio_device_features(const struct vio_device *dev)
{
    return dev_ok(dev) && dev->ops->features ? dev->ops->features(dev->opaque) : 0;
}

uint32_t vio_device_config_size(const struct vio_device *dev)
{
    return dev_ok(dev) && dev->ops->config_size ? dev->ops->config_size(dev->opaque) : 0;
}

/* [offset, offset + len) inside the config space, computed without overflow. */
static int config_range(const struct vio_device *dev, uint32_t offset, uint32_t len)
{
    uint32_t size = vio_device_config_size(dev);
    if (offset > size || len > size - offset)
        return -ERANGE;
    return 0;
}

int vio_device_config_read(const struct vio_device *dev, uint32_t offset, void *buf, uint32_t len)
{
    if (!dev_ok(dev) || (!buf && len))
        return -EINVAL;
    if (!dev->ops->config_read)
        return -ENOTSUP;
    int r = config_range(dev, offset, len);
    if (r < 0)
        return r;
    if (len == 0)
        return 0;
    return dev->ops->config_read(dev->opaque, offset, buf, len);
}

int vio_device_config_write(struct vio_device *dev, uint32_t offset, const void *buf, uint32_t len)
{
    if (!dev_ok(dev) || (!buf && len))
        return -EINVAL;
    if (!dev->ops->config_write)
        return -ENOTSUP;
    int r = config_range(dev, offset, len);
    if (r < 0)
        return r;
    if (len == 0)
        return 0;
    return dev->ops->config_write(dev->opaque, offset, buf, len);
}

uint32_t vio_device_config_generation(const struct vio_device *dev)
{
    return dev_ok(dev) && dev->ops->config_generation ? dev->ops->config_generation(dev->opaque)
                                                      : 0;
}

unsigned vio_device_num_queues(const struct vio_device *dev)
{
    return dev_ok(dev) && dev->ops->num_queues ? dev->ops->num_queues(dev->opaque) : 0;
}

unsigned vio_device_frontend_queue_num(const struct vio_device *dev)
{
    if (!dev_ok(dev))
        return 0;
    if (dev->ops->frontend_queue_num)
        return dev->ops->frontend_queue_num(dev->opaque);
    return vio_device_num_queues(dev);
}

int vio_device_queue_info(const struct vio_device *dev, unsigned qidx,
                          struct vio_device_queue_info *out)
{
    if (!dev_ok(dev) || !out)
        return -EINVAL;
    if (!dev->ops->queue_info)
        return -ENOTSUP;
    return dev->ops->queue_info(dev->opaque, qidx, out);
}

int vio_device_set_features(struct vio_device *dev, uint64_t negotiated)
{
    if (!dev_ok(dev))
        return -EINVAL;
    if (!dev->ops->set_features)
        return -ENOTSUP;
    return dev->ops->set_features(dev->opaque, negotiated);
}

int vio_device_queue_start(struct vio_device *dev, unsigned qidx, struct vio_queue *q)
{
    if (!dev_ok(dev) || !q)
        return -EINVAL;
    if (!dev->ops->queue_start)
        return -ENOTSUP;
    return dev->ops->queue_start(dev->opaque, qidx, q);
}

void vio_device_queue_stop(struct vio_device *dev, unsigned qidx)
{
    if (dev_ok(dev) && dev->ops->queue_stop)
        dev->ops->queue_stop(dev->opaque, qidx);
}

int vio_device_queue_notify(struct vio_device *dev, unsigned qidx)
{
    if (!dev_ok(dev))
        return -EINVAL;
    if (!dev->ops->queue_notify)
        return -ENOTSUP;
    return dev->ops->queue_notify(dev->opaque, qidx);
}

void vio_device_reset(struct vio_device *dev)
{
    if (dev_ok(dev) && dev->ops->reset)
        dev->ops->reset(dev->opaque);
}

int vio_device_watches(const struct vio_device *dev, struct vio_device_watch *out, unsigned cap)
{
    if (!dev_ok(dev) || (!out && cap))
        return -EINVAL;
    if (!dev->ops->watches)
        return 0; /* a device without fds wants nothing watched */
    return dev->ops->watches(dev->opaque, out, cap);
}

int vio_device_handle(struct vio_device *dev, uint32_t id, unsigned revents)
{
    if (!dev_ok(dev))
        return -EINVAL;
    if (!dev->ops->handle)
        return -ENOENT;
    return dev->ops->handle(dev->opaque, id, revents);
}
