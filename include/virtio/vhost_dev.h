/* SPDX-License-Identifier: MIT */
/**
 * @file vhost_dev.h
 * @brief The offload device: a struct vio_device whose queues a vhost back-end runs.
 *
 * @defgroup vhost_dev Offload device
 * @brief A device model for any device-seat transport (vhost-user back-end, virtio-PCI,
 * virtio-MMIO) whose data path is not in this process: at queue start the transport's ring
 * addresses, its kick eventfd (a VMM's KVM ioeventfd, a vhost-user front-end's kick fd) and its
 * call eventfd (a VMM's irqfd, the front-end's call fd) go to a vhost back-end through the vhost
 * frontend (vhost.h): Linux vhost-net or a vhost-user daemon. Frames then move between the
 * driver's rings and the back-end without this process touching a descriptor or waking up.
 *
 * What stays here, as in QEMU: the configuration space and the control queue, served by an
 * optional in-process model device (for virtio-net: a vio_net_dev, net.h) where the back-end
 * has none. vhost-net has neither; a vhost-user back-end that negotiated the CONFIG protocol
 * feature answers the configuration space itself (unless a model is given, which then wins).
 * The control queue is always the model's.
 *
 * - **Features** offered to the transport: the model's offer, each bit kept only if the
 *   back-end offers it too or it is a bit the model serves alone
 *   (@ref vio_vhost_dev_config::model_features; for virtio-net by default MAC, MTU, STATUS,
 *   the control-queue bits CTRL_VQ, CTRL_RX, CTRL_VLAN, CTRL_RX_EXTRA, GUEST_ANNOUNCE,
 *   CTRL_MAC_ADDR — QEMU's split between its net model and vhost). Without a model: the
 *   back-end's virtio bits.
 * - **Queues**: those of the model (direction, size, name); the control queue (for
 *   virtio-net the queue after the data pairs, as the negotiated MQ places it) is the model's,
 *   every other queue runs in the back-end.
 * - **set_features**: the model gets the negotiated bits; the back-end gets SET_OWNER (once
 *   per reset) and SET_FEATURES with the negotiated bits it offered.
 * - **queue_start** of a back-end queue: the memory table (from
 *   @ref vio_device_hooks::mem_regions, sent again only when it changed), then SET_VRING_NUM,
 *   ADDR (this process's mapping of the driver's rings), BASE (the transport queue's avail
 *   index), KICK, CALL, ERR, and ENABLE (vhost-user) or VHOST_NET_SET_BACKEND with
 *   @ref vio_vhost_dev_config::net_backend_fd (vhost-net). The ring is claimed with
 *   @ref vio_device_hooks::queue_offload, so the transport leaves it alone: a transport without
 *   that hook cannot bind its queues to a back-end (queue_start returns -ENOTSUP).
 * - **queue_stop**: VHOST_NET_SET_BACKEND -1 (vhost-net), GET_VRING_BASE; the index read back
 *   is written into the transport's queue object (vio_queue_set_last_avail()), so a restart or
 *   another device continues there.
 * - **reset**: every back-end ring stops, then RESET_OWNER / RESET_DEVICE; the model resets.
 * - **A vanished back-end** (the vhost frontend reports it disconnected, or a ring call fails
 *   with -ENOTCONN) raises @ref vio_device_hooks::needs_reset once: the driver sees
 *   NEEDS_RESET. A back-end that stays but refuses a ring or the memory table (the kernel's
 *   EFAULT, say) fails that queue_start with its errno and raises needs_reset too: the driver
 *   would otherwise wait on a queue nobody runs. The device watches the frontend's fd (vio_vhost_fd()) through the transport's
 *   set_watch hook with id #VIO_VHOST_DEV_WATCH and handles it in vio_device_handle().
 *
 * Threading: the device adds no data path: everything above is control path, under the rules
 * of device.h. vio_device_handle() on #VIO_VHOST_DEV_WATCH runs on the control thread (it
 * calls vio_vhost_handle()).
 * @{
 */
#ifndef VIO_VHOST_DEV_H
#define VIO_VHOST_DEV_H

#include "common.h"
#include "device.h"
#include "vhost.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Watch id of the (first) vhost frontend's fd; frontend i of
 *  @ref vio_vhost_dev_config::vhosts has id VIO_VHOST_DEV_WATCH + i (below the vhost-user
 *  transport's device-id limit and above any id the virtio-net model uses). */
#define VIO_VHOST_DEV_WATCH 0x7FFFFF00u

/** Most frontends one offload device takes (@ref vio_vhost_dev_config::num_vhosts). */
#define VIO_VHOST_DEV_MAX_FRONTENDS 128u

/** Creation parameters of an offload device. */
struct vio_vhost_dev_config {
    uint32_t struct_size;      /**< sizeof(struct vio_vhost_dev_config) */
    struct vio_vhost *vhost;   /**< the back-end, connected (borrowed; outlives the device);
                                    ignored when @ref num_vhosts is set */
    struct vio_device *model;  /**< optional (borrowed, outlives the device, not bound to
                                    anything else): the in-process model that serves the
                                    configuration space and the control queue and whose queues,
                                    device id and offer this device presents; the offload device
                                    binds it to itself */
    int net_backend_fd;        /**< vhost-net: the tap fd (opened with IFF_VNET_HDR, e.g.
                                    vio_net_tap_vhost_fd()) attached to every back-end ring at
                                    start; -1 = none (vhost-user). Its vnet header size must
                                    match what the driver will negotiate (12 with VERSION_1 or
                                    MRG_RXBUF, which every transport here offers) */
    unsigned num_queues;       /**< queues of the device; 0 = the model's, or without a model
                                    the back-end's (vio_vhost_get_queue_num(), 2 for the kernel) */
    uint32_t device_id;        /**< without a model: the virtio device ID to present */
    uint32_t config_size;      /**< without a model: bytes of configuration space the back-end
                                    answers (vhost-user CONFIG); 0 = none */
    uint16_t max_queue_size;   /**< without a model: largest ring; 0 = 1024 */
    uint64_t model_features;   /**< feature bits (mask of bit numbers) the model serves without
                                    the back-end; 0 = the default of the model's device type
                                    (see above; none for other types) */
    /** several back-ends, one per queue pair (vhost-net: one `/dev/vhost-net` fd serves two
     *  rings, so a multi-queue device takes one per pair, as QEMU does): queue q is ring
     *  q % 2 of vhosts[q / 2]; each gets its own owner, features and memory table, and the
     *  offer is what every one of them offers. NULL / 0: @ref vhost alone runs every queue.
     *  Borrowed (array and frontends), at most #VIO_VHOST_DEV_MAX_FRONTENDS. */
    struct vio_vhost *const *vhosts;
    unsigned num_vhosts;       /**< entries in @ref vhosts; 0 = use @ref vhost */
    const int *net_backend_fds; /**< with @ref vhosts, vhost-net: the tap fd of each pair
                                     (num_vhosts entries, e.g. vio_net_tap_vhost_fd(b, pair,
                                     12)); NULL = @ref net_backend_fd for every pair */
    vio_log_fn log;            /**< optional log callback (object name "vhost-dev") */
    void *log_opaque;          /**< passed to @ref log */
};

/** Opaque offload device. */
struct vio_vhost_dev;

/**
 * @brief Create an offload device on a connected vhost frontend: reads the back-end's features
 * (and, for vhost-user, its protocol features and ring count). Control thread.
 * @param[in]  cfg the configuration (copied)
 * @param[out] out the device, owned by the caller (vio_vhost_dev_free())
 * @retval 0 success
 * @retval -EINVAL cfg / out NULL, no frontend (vhost NULL without vhosts, a NULL entry in
 *                 vhosts, more than #VIO_VHOST_DEV_MAX_FRONTENDS), struct_size too small, no
 *                 model and no device_id, or no queues
 * @retval -ENOMEM out of memory
 * @retval -ENOTCONN the back-end is gone
 * @retval other the error of vio_vhost_get_features()
 */
VIO_API int vio_vhost_dev_new(const struct vio_vhost_dev_config *cfg, struct vio_vhost_dev **out);

/** @brief Destroy the device (the transport has unbound it; the model is unbound from it; the
 *  frontend and the model stay the caller's). NULL is a no-op. */
VIO_API void vio_vhost_dev_free(struct vio_vhost_dev *d);

/** @brief The generic device interface of @p d, for a transport (valid until
 *  vio_vhost_dev_free()). */
VIO_API struct vio_device *vio_vhost_dev_device(struct vio_vhost_dev *d);

/**
 * @brief Tell the device about a frontend event (call it from the frontend's
 * vio_vhost_user_frontend_config::event callback): #VIO_VHOST_EV_DISCONNECTED raises
 * needs_reset, #VIO_VHOST_EV_CONFIG_CHANGED bumps the generation and raises config_changed when
 * the back-end serves the configuration space. Control thread.
 * @retval 0 done, -EINVAL @p d NULL
 */
VIO_API int vio_vhost_dev_event(struct vio_vhost_dev *d, enum vio_vhost_event ev);

/** Counters of an offload device (vio_vhost_dev_get_stats()). */
struct vio_vhost_dev_stats {
    uint64_t rings_started;  /**< back-end rings started (queue_start) */
    uint64_t rings_stopped;  /**< back-end rings stopped (queue_stop, reset) */
    uint64_t mem_tables;     /**< memory tables sent */
    uint64_t errors;         /**< back-end calls that failed */
    bool backend_lost;       /**< the back-end vanished (needs_reset was raised) */
};

/** @brief Read the counters. Control thread. @retval 0, -EINVAL NULL argument */
VIO_API int vio_vhost_dev_get_stats(const struct vio_vhost_dev *d, struct vio_vhost_dev_stats *out);

/** @brief True if queue @p qidx runs in the back-end (false: the model's, or no such queue),
 *  for the negotiated features. Control thread. */
VIO_API bool vio_vhost_dev_queue_in_backend(const struct vio_vhost_dev *d, unsigned qidx);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
