/* SPDX-License-Identifier: MIT */
/**
 * @file net_backend.h
 * @brief Host network backends (tap, AF_PACKET, loopback) behind one ops table.
 *
 * @defgroup net_backend Network backends
 * @brief Where virtio-net frames go to and come from on the host.
 *
 * A backend sees frames plus offload metadata (#vio_net_hdr, the virtio-net
 * header in its wire layout) and never a descriptor. Frames are passed as
 * iovecs that may point straight into guest memory: backends must not keep
 * them after the call returns.
 *
 * Threading: each queue pair of a backend may be driven by its own thread;
 * calls on different queue pairs never need a lock between them. Calls on one
 * queue pair are serialized by the caller.
 * @{
 */
#ifndef VIO_NET_BACKEND_H
#define VIO_NET_BACKEND_H

#include <errno.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The virtio-net header (virtio 1.x `virtio_net_hdr_v1` layout: 12 bytes, little-endian
 * fields). Backends such as tap consume and produce exactly this layout.
 */
struct vio_net_hdr {
    uint8_t flags;        /**< VIO_NET_HDR_F_* */
    uint8_t gso_type;     /**< VIO_NET_HDR_GSO_* */
    uint16_t hdr_len;     /**< bytes of headers to copy into each segment (LE) */
    uint16_t gso_size;    /**< payload bytes per segment (LE) */
    uint16_t csum_start;  /**< where checksumming starts (LE) */
    uint16_t csum_offset; /**< where to store the checksum, from csum_start (LE) */
    uint16_t num_buffers; /**< mergeable RX: number of chains the frame spans (LE) */
};

/** @name Header flag and GSO values (virtio spec values) */
/** @{ */
#define VIO_NET_HDR_F_NEEDS_CSUM 1u /**< checksum from csum_start still to be computed */
#define VIO_NET_HDR_F_DATA_VALID 2u /**< checksum already validated */
#define VIO_NET_HDR_F_RSC_INFO 4u /**< coalesced frame: gso fields carry RSC info */
#define VIO_NET_HDR_GSO_NONE 0u /**< not a GSO frame */
#define VIO_NET_HDR_GSO_TCPV4 1u /**< TCP over IPv4 segmentation */
#define VIO_NET_HDR_GSO_UDP 3u /**< UDP fragmentation offload (UFO) */
#define VIO_NET_HDR_GSO_TCPV6 4u /**< TCP over IPv6 segmentation */
#define VIO_NET_HDR_GSO_UDP_L4 5u /**< UDP segmentation offload (USO) */
#define VIO_NET_HDR_GSO_ECN 0x80u /**< flag: TCP segments carry ECN (CWR) */
/** @} */

/** Size of #vio_net_hdr on the wire. */
#define VIO_NET_HDR_SIZE 12u

/** Receive-mode flags for vio_net_backend_ops::set_rx_mode. */
enum vio_net_rx_mode {
    VIO_NET_RX_PROMISC = 1,  /**< deliver every frame on the wire */
    VIO_NET_RX_ALLMULTI = 2  /**< deliver all multicast */
};

/** Backend operations. Optional members may be NULL; their wrappers return -ENOTSUP. */
struct vio_net_backend_ops {
    /** short name: "tap", "af_packet", "loopback" */
    const char *name;
    /** required: offload feature bits the backend can honour, as a mask of VIRTIO_NET_F_* bit numbers
     *  (CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6, HOST/GUEST_ECN, HOST/GUEST_UFO, HOST_USO) */
    uint64_t (*features)(void *opaque);
    /** optional: apply the negotiated feature set (e.g. TUNSETOFFLOAD from the guest offloads).
     *  Until it is called, tap and AF_PACKET hand the driver no partial checksums or GSO frames,
     *  loopback returns headers exactly as they were sent. */
    int (*configure)(void *opaque, uint64_t negotiated);
    /**
     * required: send one frame. @p iov holds the frame without the header; @p hdr may be NULL
     * (no offload). At most 1022 iovecs.
     * @retval 0 sent (or consumed and dropped silently, like a full wire)
     * @retval -EAGAIN backpressure: nothing sent, retry when tx_fd is writable
     * @retval -ENETDOWN link down: this frame is dropped
     * @retval -ENODEV the interface is gone: sticky, reported once through the log callback
     * @retval other negative errno: this frame is dropped (-EINVAL bad metadata, -EMSGSIZE ...)
     */
    int (*tx)(void *opaque, unsigned qp, const struct vio_net_hdr *hdr, const struct iovec *iov,
              unsigned iovcnt);
    /**
     * optional: length of the next frame (without header) if the backend can tell cheaply.
     * @retval >=0 length, -EAGAIN no frame waiting
     */
    ssize_t (*rx_peek)(void *opaque, unsigned qp);
    /**
     * required: receive one frame into @p iov (without the header), header into @p hdr.
     * @return frame length in bytes (may exceed the iov capacity only if the frame was
     *         truncated: then -EMSGSIZE is returned instead and the frame is gone)
     * @retval -EAGAIN no frame
     * @retval -EMSGSIZE frame larger than @p iov: dropped
     * @retval -ENODEV the interface is gone: sticky, reported once through the log callback
     * @retval other negative errno: backend failure
     * hdr->num_buffers is set to 1 (the device model rewrites it for mergeable buffers);
     * once configure() has run, flags are 0 unless GUEST_CSUM was negotiated and GSO types
     * the driver did not negotiate never arrive. @p hdr may be NULL.
     */
    ssize_t (*rx)(void *opaque, unsigned qp, struct vio_net_hdr *hdr, const struct iovec *iov,
                  unsigned iovcnt);
    /** optional: fd that polls readable when rx has frames for @p qp (-1: none) */
    int (*rx_fd)(void *opaque, unsigned qp);
    /** optional: fd that polls writable when tx may succeed again for @p qp (-1: none) */
    int (*tx_fd)(void *opaque, unsigned qp);
    /** optional: VIO_NET_RX_* flags */
    int (*set_rx_mode)(void *opaque, unsigned flags);
    /** optional: 1 link up, 0 down, negative errno */
    int (*link_status)(void *opaque);
    /** optional: release everything */
    void (*destroy)(void *opaque);
    /**
     * optional: drop every frame queued inside the backend for @p qp. The net device calls it
     * on device reset, once no tx or rx call for @p qp is running, so that a new driver never
     * receives what an earlier one sent (QEMU purges its queues on reset the same way).
     * Loopback implements it; tap and AF_PACKET leave the kernel's queues alone.
     */
    void (*flush)(void *opaque, unsigned qp);
    /**
     * optional: the caller drives @p qp by calling tx and rx in a loop (on) or waits for
     * rx_fd / tx_fd (off, the default). While on, the backend may let those fds' readiness go
     * stale to save system calls; turning it off brings them up to date. Called by the thread
     * that drives @p qp (vio_net_dev_set_polling()).
     */
    void (*set_polling)(void *opaque, unsigned qp, bool on);
    /**
     * optional: receive one frame without copying it. Consumes the next frame like rx, but
     * instead of writing it to an iovec, points *@p data at its bytes (contiguous). They stay
     * valid and unchanged until the next tx, flush or set_polling call on @p qp; more
     * rx_view calls do not move them. Header and errors as with rx, with @p cap the most
     * bytes the caller can take (a longer frame is dropped: -EMSGSIZE).
     *
     * When present the net device uses it instead of rx and copies the frames to guest memory
     * itself, a run's worth at a time: the stores to lines the driver shares then go out back
     * to back, not each behind the bookkeeping of its frame (which made the core wait for the
     * other one at every frame). Loopback implements it.
     */
    ssize_t (*rx_view)(void *opaque, unsigned qp, struct vio_net_hdr *hdr, const void **data,
                       size_t cap);
};

/** A backend instance: an ops table and its state. */
struct vio_net_backend {
    const struct vio_net_backend_ops *ops; /**< the implementation */
    void *opaque;                          /**< its state */
    unsigned queue_pairs;                  /**< queue pairs it was opened with */
};

/**
 * @name Wrappers
 * Call a backend's op. Each is safe on a NULL backend, a backend without ops (destroyed, or
 * never opened) and a missing optional op: it then returns -EINVAL (NULL backend or ops),
 * -ENOTSUP (op absent), or the neutral value it names (features 0, fds -1, no-ops for flush,
 * set_polling and destroy). None of them may be called on one queue pair from two threads
 * at once (see the threading rule above).
 */
/** @{ */

/** @brief True when @p b can be called: non-NULL with an ops table. */
static inline bool vio_net_backend_valid(const struct vio_net_backend *b)
{
    return b && b->ops;
}
/** @brief See vio_net_backend_ops::features (0 for a NULL backend or a missing op). */
static inline uint64_t vio_net_backend_features(const struct vio_net_backend *b)
{
    return vio_net_backend_valid(b) && b->ops->features ? b->ops->features(b->opaque) : 0;
}
/** @brief See vio_net_backend_ops::configure (-ENOTSUP when absent, which callers may ignore;
 *  -EINVAL for a NULL backend). */
static inline int vio_net_backend_configure(const struct vio_net_backend *b, uint64_t negotiated)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->configure ? b->ops->configure(b->opaque, negotiated) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::tx (-EINVAL for a NULL backend). */
static inline int vio_net_backend_tx(const struct vio_net_backend *b, unsigned qp,
                                     const struct vio_net_hdr *hdr, const struct iovec *iov,
                                     unsigned iovcnt)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->tx ? b->ops->tx(b->opaque, qp, hdr, iov, iovcnt) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::rx_peek (-EINVAL for a NULL backend). */
static inline ssize_t vio_net_backend_rx_peek(const struct vio_net_backend *b, unsigned qp)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->rx_peek ? b->ops->rx_peek(b->opaque, qp) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::rx (-EINVAL for a NULL backend). */
static inline ssize_t vio_net_backend_rx(const struct vio_net_backend *b, unsigned qp,
                                         struct vio_net_hdr *hdr, const struct iovec *iov,
                                         unsigned iovcnt)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->rx ? b->ops->rx(b->opaque, qp, hdr, iov, iovcnt) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::rx_view (-ENOTSUP when absent, -EINVAL for a NULL
 *  backend). */
static inline ssize_t vio_net_backend_rx_view(const struct vio_net_backend *b, unsigned qp,
                                              struct vio_net_hdr *hdr, const void **data,
                                              size_t cap)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->rx_view ? b->ops->rx_view(b->opaque, qp, hdr, data, cap) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::rx_fd (-1 when absent or for a NULL backend). */
static inline int vio_net_backend_rx_fd(const struct vio_net_backend *b, unsigned qp)
{
    return vio_net_backend_valid(b) && b->ops->rx_fd ? b->ops->rx_fd(b->opaque, qp) : -1;
}
/** @brief See vio_net_backend_ops::tx_fd (-1 when absent or for a NULL backend). */
static inline int vio_net_backend_tx_fd(const struct vio_net_backend *b, unsigned qp)
{
    return vio_net_backend_valid(b) && b->ops->tx_fd ? b->ops->tx_fd(b->opaque, qp) : -1;
}
/** @brief See vio_net_backend_ops::set_rx_mode (-EINVAL for a NULL backend). */
static inline int vio_net_backend_set_rx_mode(const struct vio_net_backend *b, unsigned flags)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->set_rx_mode ? b->ops->set_rx_mode(b->opaque, flags) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::link_status (-EINVAL for a NULL backend). */
static inline int vio_net_backend_link_status(const struct vio_net_backend *b)
{
    if (!vio_net_backend_valid(b))
        return -EINVAL;
    return b->ops->link_status ? b->ops->link_status(b->opaque) : -ENOTSUP;
}
/** @brief See vio_net_backend_ops::flush (a no-op when absent or for a NULL backend). */
static inline void vio_net_backend_flush(const struct vio_net_backend *b, unsigned qp)
{
    if (vio_net_backend_valid(b) && b->ops->flush)
        b->ops->flush(b->opaque, qp);
}
/** @brief See vio_net_backend_ops::set_polling (a no-op when absent or for a NULL backend). */
static inline void vio_net_backend_set_polling(const struct vio_net_backend *b, unsigned qp,
                                               bool on)
{
    if (vio_net_backend_valid(b) && b->ops->set_polling)
        b->ops->set_polling(b->opaque, qp, on);
}
/** @brief Destroy the backend (closes its fds) and clear @p b (ops NULL, so later calls return
 *  -EINVAL). NULL, or a backend already destroyed, is a no-op. */
static inline void vio_net_backend_destroy(struct vio_net_backend *b)
{
    if (vio_net_backend_valid(b) && b->ops->destroy)
        b->ops->destroy(b->opaque);
    if (b) {
        b->ops = NULL;
        b->opaque = NULL;
    }
}
/** @} */

/** Common options for opening a backend. */
struct vio_net_backend_config {
    uint32_t struct_size;  /**< sizeof(struct vio_net_backend_config); a smaller (older) size
                                leaves the fields past it at their defaults */
    const char *ifname;    /**< tap: name to create/attach ("" or NULL: kernel picks, tap only);
                                AF_PACKET: interface to bind to */
    unsigned queue_pairs;  /**< number of queue pairs (fds); 0 means 1 */
    bool promisc;          /**< AF_PACKET: put the interface in promiscuous mode */
    bool mac_swap;         /**< loopback: swap source and destination MAC on the way back */
    unsigned ring_frames;  /**< loopback/AF_PACKET: frames buffered per queue pair (0: default 256) */
    vio_log_fn log;        /**< optional log callback */
    void *log_opaque;      /**< passed to @ref log */
    bool drop_when_full;   /**< loopback: a frame sent while the ring is full is read (as a
                                wire or a kernel would take it) and dropped, and tx returns 0;
                                counted by vio_net_loopback_full_drops(). Default: -EAGAIN */
};

/**
 * @brief Open a tap backend: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (| IFF_MULTI_QUEUE for > 1 pair),
 * one fd per queue pair, non-blocking.
 * @param[in]  cfg configuration (ifname, queue_pairs, log)
 * @param[out] out backend filled in; destroy with vio_net_backend_destroy()
 * @retval 0 success
 * @retval -EINVAL bad config, or a name of IFNAMSIZ characters or more
 * @retval -errno from open/ioctl (e.g. -ENOENT no /dev/net/tun, -EPERM)
 *
 * @p cfg may be NULL: a kernel-named tap with one queue pair.
 */
VIO_API int vio_net_tap_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out);

/** @brief Name of the tap interface a tap backend created or attached to, as it was at open
 * (NULL for other backends). Owned by the backend, valid until it is destroyed. */
VIO_API const char *vio_net_tap_ifname(const struct vio_net_backend *b);

/**
 * @brief Hand a tap queue pair's fd to the kernel's vhost-net (VHOST_NET_SET_BACKEND, see
 * vio_vhost_net_set_backend() in vhost.h) after setting the tap's vnet header size to what
 * vhost-net will use: 12 when VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF is negotiated, 10
 * otherwise (vhost-net then passes frames with that header through the tap unchanged).
 *
 * @param[in] b            a backend from vio_net_tap_open()
 * @param[in] qp           the queue pair whose fd is wanted
 * @param[in] vnet_hdr_len 10 or 12
 * @return the fd (>= 0), borrowed: it stays owned by @p b and is closed by
 *         vio_net_backend_destroy(); destroy the backend only after vhost-net let go of it
 * @retval -EINVAL @p b is not a tap backend, @p qp >= its queue pairs, or @p vnet_hdr_len is
 *                 neither 10 nor 12
 * @retval -ENODEV the interface is gone
 * @retval other -errno of TUNSETVNETHDRSZ (logged)
 *
 * The header size belongs to the tap device, not to the fd: after a call with 10, the backend's
 * own tx / rx calls (which move 12-byte headers) must not be used on any queue pair. While
 * vhost-net owns the fd, nothing else should read or write it. Control thread.
 */
VIO_API int vio_net_tap_vhost_fd(struct vio_net_backend *b, unsigned qp, unsigned vnet_hdr_len);

/**
 * @brief Open an AF_PACKET backend bound to cfg->ifname, with PACKET_VNET_HDR, a mmap'ed receive
 * ring (TPACKET_V2) and PACKET_QDISC_BYPASS; one socket per queue pair (PACKET_FANOUT_HASH for
 * several).
 * @retval 0 success, -ENODEV no such interface, -EINVAL no ifname or bad config, other -errno
 */
VIO_API int vio_net_packet_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out);

/**
 * @brief Open an in-process loopback backend: frames sent on a queue pair come back on it.
 * rx_fd is an eventfd that is readable while frames wait; tx_fd an eventfd that is writable
 * while the ring has room. @p cfg may be NULL (defaults).
 * @retval 0 success, -ENOMEM, -EINVAL bad config
 */
VIO_API int vio_net_loopback_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out);

/** @brief Frames a loopback backend opened with drop_when_full dropped on queue pair @p qp
 * because its ring was full (0 for other backends, or @p qp out of range). May be called from
 * any thread. */
VIO_API uint64_t vio_net_loopback_full_drops(const struct vio_net_backend *b, unsigned qp);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
