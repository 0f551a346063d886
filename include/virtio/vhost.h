/* SPDX-License-Identifier: MIT */
/**
 * @file vhost.h
 * @brief The vhost frontend: the hypervisor's side of the vhost contract, over the kernel's
 * `/dev/vhost-net` (ioctls) or over a vhost-user unix socket, behind one set of calls.
 *
 * @defgroup vhost vhost frontend
 * @brief Hand a device's data path to a vhost backend: the memory table, the rings, a kick
 * and a call eventfd per ring, and (for vhost-net) the tap the backend moves frames to.
 *
 * One object, two implementations (like QEMU's `vhost_ops` and rust-vmm's `VhostBackend`):
 *
 * - **kernel** (vio_vhost_kernel_open()): the `VHOST_*` ioctls of `<linux/vhost.h>` on an fd of
 *   `/dev/vhost-net` (or any vhost char device). Every failing ioctl is logged with its name and
 *   errno, and the call returns that errno negated.
 * - **vhost-user** (vio_vhost_user_connect()): the frontend side of QEMU's vhost-user protocol
 *   (docs/interop/vhost-user.rst) as a client or a server socket, with REPLY_ACK, memory as fds,
 *   the backend request channel, INFLIGHT_SHMFD, CONFIGURE_MEM_SLOTS, STATUS and CONFIG when the
 *   backend offers them. Every reply is hostile input: its request code, size, flags, fds and
 *   values are checked; a bad reply fails the call with -EPROTO and drops the connection.
 *
 * The calls follow the vhost order: vio_vhost_set_owner(), the features, the memory table, then
 * per ring num / addr / base / kick / call (and err), then enable (vhost-user) or the device's
 * backend (vio_vhost_net_set_backend() for vhost-net). vio_vhost_get_vring_base() stops a ring
 * and returns where it stopped. An operation the implementation does not have (a protocol
 * feature the backend did not offer, a kernel ioctl of vhost-user only) returns -ENOTSUP and
 * changes nothing.
 *
 * Addresses: ring addresses and the memory table's @ref vio_vhost_mem_region::user_addr are
 * virtual addresses of this process (the frontend's), as in both kernel and vhost-user
 * protocols; @ref vio_vhost_mem_region::guest_addr is what the rings contain (guest-physical).
 *
 * Nothing here names a device type except vio_vhost_net_set_backend(); the driver adapter
 * (vio_vhost_driver_new()) makes a frontend look like any driver-seat transport (driver.h), so
 * the virtio-net driver helper (net_driver.h) runs over vhost-net or a vhost-user backend
 * unchanged.
 *
 * Threading: calls on one frontend are serialized by the caller (the "control thread"), except
 * that kicking a ring (writing its kick eventfd) and reading its call eventfd are the
 * application's business on any thread. Nothing here allocates or makes a system call on the
 * data path: the rings are the application's (or the driver helper's), and the frontend only
 * hands their addresses and eventfds over.
 * @{
 */
#ifndef VIO_VHOST_H
#define VIO_VHOST_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "driver.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Which implementation a frontend is. */
enum vio_vhost_kind {
    VIO_VHOST_KERNEL = 1, /**< `/dev/vhost-*` ioctls */
    VIO_VHOST_USER = 2    /**< vhost-user socket */
};

/** Most memory regions one table may name (the vhost-user baseline and vhost-net's default). */
#define VIO_VHOST_MAX_MEM_REGIONS 8u

/** One region of the memory table. */
struct vio_vhost_mem_region {
    uint64_t guest_addr; /**< guest-physical start (what ring entries contain) */
    uint64_t size;       /**< length in bytes, > 0 */
    uint64_t user_addr;  /**< where the region is mapped in this process */
    int fd;              /**< vhost-user: a shareable fd of the memory (memfd, hugetlbfs file);
                              the kernel ignores it (-1) */
    uint64_t fd_offset;  /**< offset of the region's start in @ref fd */
};

/** Flags of struct vio_vhost_vring_addr. */
enum vio_vhost_vring_flags {
    VIO_VHOST_VRING_F_LOG = 1u /**< log used-ring writes at @ref vio_vhost_vring_addr::log_guest_addr */
};

/** Where one ring lives (virtual addresses of this process). */
struct vio_vhost_vring_addr {
    uint64_t desc;           /**< descriptor table */
    uint64_t avail;          /**< driver area (avail ring) */
    uint64_t used;           /**< device area (used ring) */
    uint64_t log_guest_addr; /**< guest-physical address of the used ring, for dirty logging */
    unsigned flags;          /**< #vio_vhost_vring_flags */
};

/** What a frontend reports to the application through @ref vio_vhost_event_fn. */
enum vio_vhost_event {
    VIO_VHOST_EV_DISCONNECTED = 1, /**< the backend vanished (socket closed or a bad reply) */
    VIO_VHOST_EV_RECONNECTED = 2,  /**< vio_vhost_reconnect() re-established and re-sent the state */
    VIO_VHOST_EV_CONFIG_CHANGED = 3 /**< the backend's device configuration changed */
};

/** Event callback: called from vio_vhost_handle() / any call that notices the event. */
typedef void (*vio_vhost_event_fn)(void *opaque, enum vio_vhost_event ev);

/** Creation parameters of a kernel frontend. */
struct vio_vhost_kernel_config {
    uint32_t struct_size; /**< sizeof(struct vio_vhost_kernel_config) */
    const char *path;     /**< device to open; NULL = "/dev/vhost-net" */
    int fd;               /**< an already-open vhost fd to use instead of @ref path (taken over:
                               closed by vio_vhost_free()); -1 = open @ref path */
    vio_log_fn log;       /**< optional log callback */
    void *log_opaque;     /**< passed to @ref log */
};

/** Creation parameters of a vhost-user frontend. */
struct vio_vhost_user_frontend_config {
    uint32_t struct_size;   /**< sizeof(struct vio_vhost_user_frontend_config) */
    const char *path;       /**< unix socket path */
    bool server;            /**< listen at @ref path and accept one backend (QEMU's server=on);
                                 false = connect to a listening backend */
    int timeout_ms;         /**< how long connect / accept and every reply may take; 0 = 5000 */
    unsigned num_queues;    /**< rings the application will use (checked against the backend's
                                 GET_QUEUE_NUM when it has MQ); 0 = 2 */
    uint64_t protocol_features; /**< protocol features the application allows (bit numbers of the
                                     vhost-user spec); 0 = every one the frontend implements */
    bool reconnect;         /**< remember the state sent, so vio_vhost_reconnect() can re-send it */
    vio_vhost_event_fn event; /**< optional event callback */
    void *event_opaque;     /**< passed to @ref event */
    vio_log_fn log;         /**< optional log callback */
    void *log_opaque;       /**< passed to @ref log */
};

/** Opaque vhost frontend. */
struct vio_vhost;

/**
 * @brief Open a kernel vhost device (vhost-net) as a frontend. Control thread.
 * @retval 0 success, *@p out set
 * @retval -EINVAL @p cfg / @p out NULL, or a bad struct_size
 * @retval -ENOENT the device does not exist (no vhost_net module), with a hint in the log
 * @retval -EACCES not allowed to open it
 * @retval other the errno of open()
 */
VIO_API int vio_vhost_kernel_open(const struct vio_vhost_kernel_config *cfg, struct vio_vhost **out);

/**
 * @brief Connect to (or accept) a vhost-user backend and read its features and protocol
 * features (GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM with MQ,
 * SET_BACKEND_REQ_FD with BACKEND_REQ). Control thread.
 * @retval 0 success, *@p out set
 * @retval -EINVAL bad parameters (NULL path, path too long for a unix socket)
 * @retval -ETIMEDOUT no backend within the timeout
 * @retval -ECONNREFUSED / -ENOENT nothing listens at the path
 * @retval -EPROTO the backend answered wrongly (logged: which request, what was wrong)
 * @retval -ERANGE the backend has fewer queues than @ref vio_vhost_user_frontend_config::num_queues
 * @retval -ENOTCONN the backend closed the connection during the handshake
 * @retval -EIO the backend refused SET_BACKEND_REQ_FD (a failed REPLY_ACK)
 * @retval -EEXIST server mode: something that is not a socket is at the path
 * @retval other the errno of socket(), bind(), listen() or connect()
 */
VIO_API int vio_vhost_user_connect(const struct vio_vhost_user_frontend_config *cfg,
                                   struct vio_vhost **out);

/** @brief Close the frontend (the backend sees the fd / socket close). NULL is a no-op. */
VIO_API void vio_vhost_free(struct vio_vhost *v);

/** @brief Which implementation @p v is; 0 for NULL. */
VIO_API enum vio_vhost_kind vio_vhost_kind(const struct vio_vhost *v);

/**
 * @brief The fd an event loop watches for readability (vhost-user: the backend request channel
 * and the socket, merged behind one epoll fd; kernel: -1, nothing to watch).
 * @return the fd, or -1
 */
VIO_API int vio_vhost_fd(const struct vio_vhost *v);

/**
 * @brief Handle what is ready on vio_vhost_fd(): backend requests (CONFIG_CHANGE_MSG ...),
 * a closed socket (reported as #VIO_VHOST_EV_DISCONNECTED). Does not wait for the backend (the
 * rest of a request whose first bytes came, or the write of its ack, at most 100 ms).
 * @retval 0 handled (or nothing was ready)
 * @retval -ENOTCONN the backend is gone
 * @retval -EINVAL @p v NULL
 */
VIO_API int vio_vhost_handle(struct vio_vhost *v);

/** @brief True while the backend is there (always true for the kernel). */
VIO_API bool vio_vhost_connected(const struct vio_vhost *v);

/**
 * @brief vhost-user with @ref vio_vhost_user_frontend_config::reconnect set: connect again and
 * re-send everything sent so far (owner, features, protocol features, memory table, every
 * ring's num / addr / base (the last base read or the used index the application passes with
 * vio_vhost_set_vring_base()), kick, call, err and enable).
 * @retval 0 reconnected
 * @retval -ENOTSUP not vhost-user, or reconnect was not asked for
 * @retval -EPROTO the new backend negotiates other protocol features, or no longer offers
 *                 a feature bit that was set
 * @retval other as vio_vhost_user_connect(), or a failed request while re-sending
 */
VIO_API int vio_vhost_reconnect(struct vio_vhost *v);

/**
 * @name Features, owner and reset
 * Every call below returns 0 or a negative errno: -EINVAL for NULL / out-of-range arguments,
 * -ENOTSUP where the implementation lacks the operation, -ENOTCONN when the backend is gone,
 * -EPROTO for a bad vhost-user reply, -ETIMEDOUT when a vhost-user backend did not answer
 * within the timeout (the connection is dropped, as for -EPROTO), -EIO when a vhost-user
 * backend refused the request (a failed REPLY_ACK, an empty GET_CONFIG reply, no inflight
 * area), the ioctl's errno negated for the kernel.
 * @{
 */
/** @brief The backend's virtio feature bits (vhost-user: without PROTOCOL_FEATURES). */
VIO_API int vio_vhost_get_features(struct vio_vhost *v, uint64_t *features);
/** @brief Tell the backend the negotiated feature bits (each must be offered; else -EINVAL). */
VIO_API int vio_vhost_set_features(struct vio_vhost *v, uint64_t features);
/** @brief vhost-user: the negotiated protocol features (bit numbers of the spec). */
VIO_API int vio_vhost_get_protocol_features(struct vio_vhost *v, uint64_t *pf);
/** @brief kernel: VHOST_GET_BACKEND_FEATURES (IOTLB_MSG_V2, IOTLB_BATCH ...). */
VIO_API int vio_vhost_get_backend_features(struct vio_vhost *v, uint64_t *features);
/** @brief kernel: VHOST_SET_BACKEND_FEATURES. */
VIO_API int vio_vhost_set_backend_features(struct vio_vhost *v, uint64_t features);
/** @brief Become the backend's owner (VHOST_SET_OWNER); once, first. */
VIO_API int vio_vhost_set_owner(struct vio_vhost *v);
/** @brief Give up ownership and reset the backend (VHOST_RESET_OWNER / RESET_DEVICE). */
VIO_API int vio_vhost_reset(struct vio_vhost *v);
/** @brief vhost-user: how many rings the backend has (GET_QUEUE_NUM pairs x 2 with MQ). */
VIO_API int vio_vhost_get_queue_num(struct vio_vhost *v, unsigned *rings);
/** @brief vhost-user with STATUS: write the device status byte. */
VIO_API int vio_vhost_set_status(struct vio_vhost *v, uint8_t status);
/** @brief vhost-user with STATUS: read the device status byte. */
VIO_API int vio_vhost_get_status(struct vio_vhost *v, uint8_t *status);
/** @brief vhost-user with CONFIG: read device configuration (at most 256 bytes). */
VIO_API int vio_vhost_get_config(struct vio_vhost *v, uint32_t off, void *buf, uint32_t len);
/** @brief vhost-user with CONFIG: write device configuration (at most 256 bytes). */
VIO_API int vio_vhost_set_config(struct vio_vhost *v, uint32_t off, const void *buf,
                                 uint32_t len);
/** @} */

/**
 * @name Memory
 * @{
 */
/** @brief Replace the memory table (1..#VIO_VHOST_MAX_MEM_REGIONS regions, no overlap). */
VIO_API int vio_vhost_set_mem_table(struct vio_vhost *v, const struct vio_vhost_mem_region *r,
                                    unsigned n);
/** @brief vhost-user with CONFIGURE_MEM_SLOTS: how many regions the backend takes. */
VIO_API int vio_vhost_get_max_mem_slots(struct vio_vhost *v, unsigned *slots);
/** @brief vhost-user with CONFIGURE_MEM_SLOTS: add one region (ADD_MEM_REG). */
VIO_API int vio_vhost_add_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r);
/** @brief vhost-user with CONFIGURE_MEM_SLOTS: remove one region (REM_MEM_REG). */
VIO_API int vio_vhost_rem_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r);
/**
 * @brief Dirty-page log: kernel: VHOST_SET_LOG_BASE with @p user_addr (a bitmap mapped here);
 * vhost-user with LOG_SHMFD: SET_LOG_BASE with @p fd (shareable, @p size bytes). @p fd is
 * borrowed (duplicated by the socket send).
 */
VIO_API int vio_vhost_set_log_base(struct vio_vhost *v, uint64_t user_addr, int fd,
                                   uint64_t size);
/** @brief An eventfd the backend signals after logging (VHOST_SET_LOG_FD / SET_LOG_FD). */
VIO_API int vio_vhost_set_log_fd(struct vio_vhost *v, int fd);
/**
 * @brief kernel with IOTLB_MSG_V2: send one IOTLB update (@p perm 1 ro, 2 wo, 3 rw) or, with
 * @p perm 0, an invalidation of [@p iova, @p iova + @p size).
 */
VIO_API int vio_vhost_iotlb_update(struct vio_vhost *v, uint64_t iova, uint64_t size,
                                   uint64_t user_addr, unsigned perm);
/** @} */

/**
 * @name Rings
 * @p idx is the ring index (virtio queue index).
 * @{
 */
/** @brief Ring size (a power of 2). */
VIO_API int vio_vhost_set_vring_num(struct vio_vhost *v, unsigned idx, unsigned num);
/** @brief Ring addresses (virtual addresses of this process). */
VIO_API int vio_vhost_set_vring_addr(struct vio_vhost *v, unsigned idx,
                                     const struct vio_vhost_vring_addr *a);
/** @brief Where the backend starts reading the avail ring (its last_avail_idx). vhost-user with
 *  reconnect while the backend is gone: recorded for vio_vhost_reconnect() (returns 0). */
VIO_API int vio_vhost_set_vring_base(struct vio_vhost *v, unsigned idx, unsigned base);
/** @brief Stop the ring and read where the backend stopped (its last_avail_idx). */
VIO_API int vio_vhost_get_vring_base(struct vio_vhost *v, unsigned idx, unsigned *base);
/** @brief The kick eventfd (borrowed; the backend gets its own copy); -1 = the backend polls. */
VIO_API int vio_vhost_set_vring_kick(struct vio_vhost *v, unsigned idx, int fd);
/** @brief The call eventfd (borrowed); -1 = no used-buffer notifications. */
VIO_API int vio_vhost_set_vring_call(struct vio_vhost *v, unsigned idx, int fd);
/** @brief The error eventfd (borrowed); -1 = none. */
VIO_API int vio_vhost_set_vring_err(struct vio_vhost *v, unsigned idx, int fd);
/**
 * @brief Enable or disable a ring: vhost-user: SET_VRING_ENABLE (when PROTOCOL_FEATURES is
 * negotiated; rings start enabled otherwise); kernel: -ENOTSUP (a vhost-net ring runs while it
 * has a backend, see vio_vhost_net_set_backend()).
 */
VIO_API int vio_vhost_set_vring_enable(struct vio_vhost *v, unsigned idx, bool enable);
/**
 * @brief vhost-user with INFLIGHT_SHMFD: get the backend's inflight area (GET_INFLIGHT_FD) for
 * @p num_queues rings of @p queue_size; *@p fd (owned by the caller) and *@p size describe it.
 */
VIO_API int vio_vhost_get_inflight(struct vio_vhost *v, unsigned num_queues, unsigned queue_size,
                                   int *fd, uint64_t *size);
/** @brief vhost-user with INFLIGHT_SHMFD: hand the inflight area back (SET_INFLIGHT_FD). */
VIO_API int vio_vhost_set_inflight(struct vio_vhost *v, int fd, uint64_t size,
                                   unsigned num_queues, unsigned queue_size);
/** @} */

/**
 * @brief The one device-specific call: attach the device's backend to ring @p idx.
 * kernel: VHOST_NET_SET_BACKEND with @p fd (a tap opened with IFF_VNET_HDR, e.g. from
 * vio_net_tap_vhost_fd() in net_backend.h; -1 detaches and stops the ring); vhost-user: 0,
 * nothing to do (the backend has its own).
 */
VIO_API int vio_vhost_net_set_backend(struct vio_vhost *v, unsigned idx, int fd);

/**
 * @name Driver adapter
 * A frontend seen as a driver-seat transport (struct vio_driver), so driver helpers
 * (net_driver.h) run over it: features and status go to the backend, queue setup becomes
 * the ring calls, notify writes the ring's kick eventfd, and the application waits on the
 * ring's call eventfd (vio_vhost_driver_call_fd()) as its interrupt.
 * @{
 */
/** Creation parameters of a driver adapter. */
struct vio_vhost_driver_config {
    uint32_t struct_size;                       /**< sizeof(struct vio_vhost_driver_config) */
    struct vio_vhost *vhost;                    /**< the frontend (borrowed, outlives the adapter) */
    const struct vio_vhost_mem_region *regions; /**< memory holding rings and buffers (copied) */
    unsigned num_regions;                       /**< 1..#VIO_VHOST_MAX_MEM_REGIONS */
    unsigned num_queues;                        /**< rings the device has; 0 = 2 */
    uint16_t max_queue_size;                    /**< largest ring; 0 = 1024 */
    int net_backend_fd;                         /**< kernel vhost-net: the tap fd attached to every
                                                     ring at enable; -1 = none */
    vio_log_fn log;                             /**< optional log callback */
    void *log_opaque;                           /**< passed to @ref log */
};

/** Opaque driver adapter. */
struct vio_vhost_driver;

/**
 * @brief Create an adapter (it creates one kick and one call eventfd per ring). Control thread.
 * It makes the adapter the backend's owner (vio_vhost_set_owner(); an -EBUSY from an owner
 * the application set already is fine).
 * @retval 0 success
 * @retval -EINVAL bad parameters
 * @retval -ENOMEM out of memory
 * @retval other the error of vio_vhost_set_owner(), or of eventfd()
 */
VIO_API int vio_vhost_driver_new(const struct vio_vhost_driver_config *cfg,
                                 struct vio_vhost_driver **out);
/** @brief Free the adapter (stops the rings it started). NULL is a no-op. */
VIO_API void vio_vhost_driver_free(struct vio_vhost_driver *d);
/** @brief The adapter as a struct vio_driver (valid until vio_vhost_driver_free()). */
VIO_API struct vio_driver vio_vhost_driver_get(struct vio_vhost_driver *d);
/** @brief The call eventfd of ring @p idx (readable when the backend signalled), or -1. */
VIO_API int vio_vhost_driver_call_fd(const struct vio_vhost_driver *d, unsigned idx);
/** @brief The kick eventfd of ring @p idx (what vio_driver_notify() writes), or -1. */
VIO_API int vio_vhost_driver_kick_fd(const struct vio_vhost_driver *d, unsigned idx);
/** @} */

#ifdef __cplusplus
}
#endif

/** @} */
#endif
