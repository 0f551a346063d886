/* SPDX-License-Identifier: MIT */
/*
 * Generic device interface: the checked wrappers a transport calls. They hold
 * the argument checks (NULL device, ranges that overflow) in one place, so a
 * device model's ops see sane arguments, and map a missing op to -ENOTSUP.
 *
 * They also keep the order of the control-path calls (bind once, features
 * before queues, no feature change under running queues) in struct
 * vio_device_state, for every device model alike: a transport author's mistake
 * is refused at the call that makes it, with a log line naming it, instead of
 * surfacing later as a queue "broken by the driver".
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/log.h"
#include "virtio/device.h"

_Static_assert(offsetof(struct vio_device_hooks, mem_regions) == VIO_DEVICE_HOOKS_MIN_SIZE,
               "VIO_DEVICE_HOOKS_MIN_SIZE is the size of the first version of the hooks");

enum {
    ST_BOUND = 1u << 0,        /* vio_device_bind() with hooks succeeded */
    ST_FEATURES_SET = 1u << 1, /* vio_device_set_features() succeeded since the last reset */
};

static bool dev_ok(const struct vio_device *dev)
{
    return dev && dev->ops;
}

/* The caller's mistakes go to the device's log, named after the model. */
#define DEV_LOG(dev, ...)                                                                      \
    vio_logf((dev)->log, (dev)->log_opaque, VIO_LOG_ERROR,                                     \
             (dev)->ops->name ? (dev)->ops->name : "device", __VA_ARGS__)

static bool q_started(const struct vio_device *dev, unsigned qidx)
{
    return qidx < VIO_DEVICE_MAX_QUEUES &&
           ((dev->state.started_map[qidx / 64] >> (qidx % 64)) & 1u);
}

static void q_mark(struct vio_device *dev, unsigned qidx, bool on)
{
    uint64_t bit = (uint64_t)1 << (qidx % 64);
    if (on) {
        dev->state.started_map[qidx / 64] |= bit;
        dev->state.started++;
    } else {
        dev->state.started_map[qidx / 64] &= ~bit;
        dev->state.started--;
    }
}

int vio_device_bind(struct vio_device *dev, const struct vio_device_hooks *hooks)
{
    if (!dev_ok(dev))
        return -EINVAL;
    if (hooks && hooks->struct_size < VIO_DEVICE_HOOKS_MIN_SIZE)
        return -EINVAL;
    if (!dev->ops->bind)
        return -ENOTSUP;
    if (hooks && (dev->state.flags & ST_BOUND)) {
        DEV_LOG(dev, "vio_device_bind(): the device is already bound to a transport; unbind "
                     "it first with vio_device_bind(dev, NULL) (a second binding would take "
                     "the first one's interrupts)");
        return -EBUSY;
    }
    /* The model always sees a full struct: hooks a shorter (older) caller does not have are
     * NULL. */
    struct vio_device_hooks full;
    if (hooks) {
        memset(&full, 0, sizeof(full));
        memcpy(&full, hooks, hooks->struct_size < sizeof(full) ? hooks->struct_size
                                                               : sizeof(full));
        full.struct_size = sizeof(full);
    }
    int r = dev->ops->bind(dev->opaque, hooks ? &full : NULL);
    if (r < 0)
        return r;
    if (hooks)
        dev->state.flags |= ST_BOUND;
    else
        dev->state.flags &= ~(uint32_t)ST_BOUND;
    return 0;
}

bool vio_device_is_bound(const struct vio_device *dev)
{
    return dev_ok(dev) && (dev->state.flags & ST_BOUND);
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
    if (dev->state.started) {
        DEV_LOG(dev, "vio_device_set_features(0x%llx) while %u queue(s) are started: stop them "
                     "(vio_device_queue_stop()) or reset the device first",
                (unsigned long long)negotiated, (unsigned)dev->state.started);
        return -EBUSY;
    }
    int r = dev->ops->set_features(dev->opaque, negotiated);
    if (r == 0)
        dev->state.flags |= ST_FEATURES_SET;
    return r;
}

static const char *dir_name(enum vio_queue_dir d)
{
    switch (d) {
    case VIO_QUEUE_DIR_ANY: return "ANY";
    case VIO_QUEUE_DIR_OUT_ONLY: return "OUT_ONLY";
    case VIO_QUEUE_DIR_IN_ONLY: return "IN_ONLY";
    default: return "?";
    }
}

/* What the caller of queue_start controls, checked before the model sees the queue. */
static int start_checks(struct vio_device *dev, unsigned qidx, struct vio_queue *q)
{
    if (qidx >= VIO_DEVICE_MAX_QUEUES) {
        DEV_LOG(dev, "vio_device_queue_start(%u): queue index above the limit of %u", qidx,
                VIO_DEVICE_MAX_QUEUES);
        return -ERANGE;
    }
    if (dev->ops->set_features && !(dev->state.flags & ST_FEATURES_SET)) {
        DEV_LOG(dev, "vio_device_queue_start(%u) before vio_device_set_features(): negotiate "
                     "the features first (a queue's role and layout depend on them)", qidx);
        return -EINVAL;
    }
    if (q_started(dev, qidx)) {
        DEV_LOG(dev, "vio_device_queue_start(%u): the queue is already started (stop it first)",
                qidx);
        return -EBUSY;
    }
    struct vio_device_queue_info info;
    if (dev->ops->queue_info) {
        int r = dev->ops->queue_info(dev->opaque, qidx, &info);
        if (r < 0) {
            DEV_LOG(dev, "vio_device_queue_start(%u): no such queue for the negotiated features",
                    qidx);
            return r;
        }
    }
    uint16_t size = vio_queue_size(q);
    if (!size) {
        DEV_LOG(dev, "vio_device_queue_start(%u): the queue is not set up (call vio_queue_setup() "
                     "first)", qidx);
        return -EINVAL;
    }
    if (!dev->ops->queue_info)
        return 0;
    if (vio_queue_direction(q) != info.dir) {
        DEV_LOG(dev, "vio_device_queue_start(%u): queue %s was created with direction %s; "
                     "vio_device_queue_info() says %s", qidx, info.name ? info.name : "?",
                dir_name(vio_queue_direction(q)), dir_name(info.dir));
        return -EINVAL;
    }
    if (size > info.max_size) {
        DEV_LOG(dev, "vio_device_queue_start(%u): queue %s has size %u, above the device's "
                     "maximum %u (vio_device_queue_info())", qidx, info.name ? info.name : "?",
                size, info.max_size);
        return -EINVAL;
    }
    return 0;
}

int vio_device_queue_start(struct vio_device *dev, unsigned qidx, struct vio_queue *q)
{
    if (!dev_ok(dev) || !q)
        return -EINVAL;
    if (!dev->ops->queue_start)
        return -ENOTSUP;
    int r = start_checks(dev, qidx, q);
    if (r < 0)
        return r;
    r = dev->ops->queue_start(dev->opaque, qidx, q);
    if (r == 0)
        q_mark(dev, qidx, true);
    return r;
}

void vio_device_queue_stop(struct vio_device *dev, unsigned qidx)
{
    if (!dev_ok(dev))
        return;
    /* The model's stop is a no-op for a queue it does not run: call it anyway. */
    if (dev->ops->queue_stop)
        dev->ops->queue_stop(dev->opaque, qidx);
    if (q_started(dev, qidx))
        q_mark(dev, qidx, false);
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
    if (!dev_ok(dev))
        return;
    if (dev->ops->reset)
        dev->ops->reset(dev->opaque);
    /* Every queue stopped, features dropped; the binding stays. */
    dev->state.flags &= ST_BOUND;
    dev->state.started = 0;
    memset(dev->state.started_map, 0, sizeof(dev->state.started_map));
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
