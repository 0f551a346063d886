/* SPDX-License-Identifier: MIT */
/*
 * Internal: the ops table behind struct vio_vhost (virtio/vhost.h). vhost.c holds the public
 * wrappers (argument checks, -ENOTSUP for a missing op); vhost_kernel.c and vhost_user_fe.c
 * implement the ops. An op receives arguments the wrapper already checked for NULL pointers and
 * ring indices below VIO_VHOST_MAX_RINGS; it checks the rest itself.
 */
#ifndef VIO_TRANSPORT_VHOST_INTERNAL_H
#define VIO_TRANSPORT_VHOST_INTERNAL_H

#include "virtio/vhost.h"

/* Ring indices a frontend accepts (the same bound as VIO_DEVICE_MAX_QUEUES). */
#define VIO_VHOST_MAX_RINGS 1024u

struct vio_vhost_ops {
    enum vio_vhost_kind kind;
    void (*free)(struct vio_vhost *v);
    int (*fd)(const struct vio_vhost *v);
    int (*handle)(struct vio_vhost *v);
    bool (*connected)(const struct vio_vhost *v);
    int (*reconnect)(struct vio_vhost *v);

    int (*get_features)(struct vio_vhost *v, uint64_t *f);
    int (*set_features)(struct vio_vhost *v, uint64_t f);
    int (*get_protocol_features)(struct vio_vhost *v, uint64_t *pf);
    int (*get_backend_features)(struct vio_vhost *v, uint64_t *f);
    int (*set_backend_features)(struct vio_vhost *v, uint64_t f);
    int (*set_owner)(struct vio_vhost *v);
    int (*reset)(struct vio_vhost *v);
    int (*get_queue_num)(struct vio_vhost *v, unsigned *num);
    int (*set_status)(struct vio_vhost *v, uint8_t status);
    int (*get_status)(struct vio_vhost *v, uint8_t *status);
    int (*get_config)(struct vio_vhost *v, uint32_t off, void *buf, uint32_t len);
    int (*set_config)(struct vio_vhost *v, uint32_t off, const void *buf, uint32_t len);

    int (*set_mem_table)(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n);
    int (*get_max_mem_slots)(struct vio_vhost *v, unsigned *slots);
    int (*add_mem_region)(struct vio_vhost *v, const struct vio_vhost_mem_region *r);
    int (*rem_mem_region)(struct vio_vhost *v, const struct vio_vhost_mem_region *r);
    int (*set_log_base)(struct vio_vhost *v, uint64_t user_addr, int fd, uint64_t size);
    int (*set_log_fd)(struct vio_vhost *v, int fd);
    int (*iotlb_update)(struct vio_vhost *v, uint64_t iova, uint64_t size, uint64_t uaddr,
                        unsigned perm);

    int (*set_vring_num)(struct vio_vhost *v, unsigned idx, unsigned num);
    int (*set_vring_addr)(struct vio_vhost *v, unsigned idx, const struct vio_vhost_vring_addr *a);
    int (*set_vring_base)(struct vio_vhost *v, unsigned idx, unsigned base);
    int (*get_vring_base)(struct vio_vhost *v, unsigned idx, unsigned *base);
    int (*set_vring_kick)(struct vio_vhost *v, unsigned idx, int fd);
    int (*set_vring_call)(struct vio_vhost *v, unsigned idx, int fd);
    int (*set_vring_err)(struct vio_vhost *v, unsigned idx, int fd);
    int (*set_vring_enable)(struct vio_vhost *v, unsigned idx, bool enable);
    int (*get_inflight)(struct vio_vhost *v, unsigned nq, unsigned qs, int *fd, uint64_t *size);
    int (*set_inflight)(struct vio_vhost *v, int fd, uint64_t size, unsigned nq, unsigned qs);

    int (*net_set_backend)(struct vio_vhost *v, unsigned idx, int fd);
};

/* The common head of every implementation's object (first member). */
struct vio_vhost {
    const struct vio_vhost_ops *ops;
    vio_log_fn log;
    void *log_opaque;
};

#endif
