/* SPDX-License-Identifier: MIT */
/*
 * The public calls of the vhost frontend (virtio/vhost.h): argument checks common to both
 * implementations, then the implementation's op (vhost_internal.h); a missing op is -ENOTSUP.
 */
#include <errno.h>
#include <stddef.h>

#include "transport/vhost_internal.h"

void vio_vhost_free(struct vio_vhost *v)
{
    if (v && v->ops && v->ops->free)
        v->ops->free(v);
}

enum vio_vhost_kind vio_vhost_kind(const struct vio_vhost *v)
{
    return v && v->ops ? v->ops->kind : (enum vio_vhost_kind)0;
}

int vio_vhost_fd(const struct vio_vhost *v)
{
    return v && v->ops && v->ops->fd ? v->ops->fd(v) : -1;
}

int vio_vhost_handle(struct vio_vhost *v)
{
    if (!v || !v->ops)
        return -EINVAL;
    return v->ops->handle ? v->ops->handle(v) : 0;
}

bool vio_vhost_connected(const struct vio_vhost *v)
{
    if (!v || !v->ops)
        return false;
    return v->ops->connected ? v->ops->connected(v) : true;
}

int vio_vhost_reconnect(struct vio_vhost *v)
{
    if (!v || !v->ops)
        return -EINVAL;
    return v->ops->reconnect ? v->ops->reconnect(v) : -ENOTSUP;
}

int vio_vhost_get_features(struct vio_vhost *v, uint64_t *features)
{
    if (!v || !v->ops || !features)
        return -EINVAL;
    if (!v->ops->get_features)
        return -ENOTSUP;
    return v->ops->get_features(v, features);
}

int vio_vhost_set_features(struct vio_vhost *v, uint64_t features)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_features)
        return -ENOTSUP;
    return v->ops->set_features(v, features);
}

int vio_vhost_get_protocol_features(struct vio_vhost *v, uint64_t *pf)
{
    if (!v || !v->ops || !pf)
        return -EINVAL;
    if (!v->ops->get_protocol_features)
        return -ENOTSUP;
    return v->ops->get_protocol_features(v, pf);
}

int vio_vhost_get_backend_features(struct vio_vhost *v, uint64_t *features)
{
    if (!v || !v->ops || !features)
        return -EINVAL;
    if (!v->ops->get_backend_features)
        return -ENOTSUP;
    return v->ops->get_backend_features(v, features);
}

int vio_vhost_set_backend_features(struct vio_vhost *v, uint64_t features)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_backend_features)
        return -ENOTSUP;
    return v->ops->set_backend_features(v, features);
}

int vio_vhost_set_owner(struct vio_vhost *v)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_owner)
        return -ENOTSUP;
    return v->ops->set_owner(v);
}

int vio_vhost_reset(struct vio_vhost *v)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->reset)
        return -ENOTSUP;
    return v->ops->reset(v);
}

int vio_vhost_get_queue_num(struct vio_vhost *v, unsigned *num)
{
    if (!v || !v->ops || !num)
        return -EINVAL;
    if (!v->ops->get_queue_num)
        return -ENOTSUP;
    return v->ops->get_queue_num(v, num);
}

int vio_vhost_set_status(struct vio_vhost *v, uint8_t status)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_status)
        return -ENOTSUP;
    return v->ops->set_status(v, status);
}

int vio_vhost_get_status(struct vio_vhost *v, uint8_t *status)
{
    if (!v || !v->ops || !status)
        return -EINVAL;
    if (!v->ops->get_status)
        return -ENOTSUP;
    return v->ops->get_status(v, status);
}

int vio_vhost_get_config(struct vio_vhost *v, uint32_t off, void *buf, uint32_t len)
{
    if (!v || !v->ops || !buf)
        return -EINVAL;
    if (!v->ops->get_config)
        return -ENOTSUP;
    return v->ops->get_config(v, off, buf, len);
}

int vio_vhost_set_config(struct vio_vhost *v, uint32_t off, const void *buf, uint32_t len)
{
    if (!v || !v->ops || !buf)
        return -EINVAL;
    if (!v->ops->set_config)
        return -ENOTSUP;
    return v->ops->set_config(v, off, buf, len);
}

int vio_vhost_set_mem_table(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n)
{
    if (!v || !v->ops || !r)
        return -EINVAL;
    if (!v->ops->set_mem_table)
        return -ENOTSUP;
    return v->ops->set_mem_table(v, r, n);
}

int vio_vhost_get_max_mem_slots(struct vio_vhost *v, unsigned *slots)
{
    if (!v || !v->ops || !slots)
        return -EINVAL;
    if (!v->ops->get_max_mem_slots)
        return -ENOTSUP;
    return v->ops->get_max_mem_slots(v, slots);
}

int vio_vhost_add_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r)
{
    if (!v || !v->ops || !r)
        return -EINVAL;
    if (!v->ops->add_mem_region)
        return -ENOTSUP;
    return v->ops->add_mem_region(v, r);
}

int vio_vhost_rem_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r)
{
    if (!v || !v->ops || !r)
        return -EINVAL;
    if (!v->ops->rem_mem_region)
        return -ENOTSUP;
    return v->ops->rem_mem_region(v, r);
}

int vio_vhost_set_log_base(struct vio_vhost *v, uint64_t user_addr, int fd, uint64_t size)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_log_base)
        return -ENOTSUP;
    return v->ops->set_log_base(v, user_addr, fd, size);
}

int vio_vhost_set_log_fd(struct vio_vhost *v, int fd)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_log_fd)
        return -ENOTSUP;
    return v->ops->set_log_fd(v, fd);
}

int vio_vhost_iotlb_update(struct vio_vhost *v, uint64_t iova, uint64_t size, uint64_t user_addr, unsigned perm)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->iotlb_update)
        return -ENOTSUP;
    return v->ops->iotlb_update(v, iova, size, user_addr, perm);
}

int vio_vhost_set_vring_num(struct vio_vhost *v, unsigned idx, unsigned num)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_num)
        return -ENOTSUP;
    return v->ops->set_vring_num(v, idx, num);
}

int vio_vhost_set_vring_addr(struct vio_vhost *v, unsigned idx, const struct vio_vhost_vring_addr *a)
{
    if (!v || !v->ops || !a)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_addr)
        return -ENOTSUP;
    return v->ops->set_vring_addr(v, idx, a);
}

int vio_vhost_set_vring_base(struct vio_vhost *v, unsigned idx, unsigned base)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_base)
        return -ENOTSUP;
    return v->ops->set_vring_base(v, idx, base);
}

int vio_vhost_get_vring_base(struct vio_vhost *v, unsigned idx, unsigned *base)
{
    if (!v || !v->ops || !base)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->get_vring_base)
        return -ENOTSUP;
    return v->ops->get_vring_base(v, idx, base);
}

int vio_vhost_set_vring_kick(struct vio_vhost *v, unsigned idx, int fd)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_kick)
        return -ENOTSUP;
    return v->ops->set_vring_kick(v, idx, fd);
}

int vio_vhost_set_vring_call(struct vio_vhost *v, unsigned idx, int fd)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_call)
        return -ENOTSUP;
    return v->ops->set_vring_call(v, idx, fd);
}

int vio_vhost_set_vring_err(struct vio_vhost *v, unsigned idx, int fd)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_err)
        return -ENOTSUP;
    return v->ops->set_vring_err(v, idx, fd);
}

int vio_vhost_set_vring_enable(struct vio_vhost *v, unsigned idx, bool enable)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->set_vring_enable)
        return -ENOTSUP;
    return v->ops->set_vring_enable(v, idx, enable);
}

int vio_vhost_get_inflight(struct vio_vhost *v, unsigned num_queues, unsigned queue_size, int *fd, uint64_t *size)
{
    if (!v || !v->ops || !fd)
        return -EINVAL;
    if (!v->ops->get_inflight)
        return -ENOTSUP;
    return v->ops->get_inflight(v, num_queues, queue_size, fd, size);
}

int vio_vhost_set_inflight(struct vio_vhost *v, int fd, uint64_t size, unsigned num_queues, unsigned queue_size)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (!v->ops->set_inflight)
        return -ENOTSUP;
    return v->ops->set_inflight(v, fd, size, num_queues, queue_size);
}

int vio_vhost_net_set_backend(struct vio_vhost *v, unsigned idx, int fd)
{
    if (!v || !v->ops)
        return -EINVAL;
    if (idx >= VIO_VHOST_MAX_RINGS)
        return -EINVAL;
    if (!v->ops->net_set_backend)
        return -ENOTSUP;
    return v->ops->net_set_backend(v, idx, fd);
}
