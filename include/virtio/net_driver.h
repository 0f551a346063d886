/* SPDX-License-Identifier: MIT */
/**
 * @file net_driver.h
 * @brief Driver-side virtio-net helper: the guest's half of a virtio-net device.
 *
 * @defgroup net_driver virtio-net driver side
 * @brief Send and receive frames over the receive/transmit queues of a virtio-net device
 * as a guest driver would, on the core's driver-side queues (struct vio_drvq).
 *
 * What virtio-user style programs, synthetic guests of a VMM, benchmarks and tests use to
 * act as the guest. One object drives N queue pairs (queue 2i is receive queue i, queue
 * 2i+1 is transmit queue i, the virtio-net layout); it carves the rings and every buffer
 * out of one area of guest memory that the caller provides, so it can be handed to any
 * device side (the in-process device model, a vhost-user backend, the kernel).
 *
 * - Transmit: vio_net_driver_send() / vio_net_driver_sendv() copy a virtio-net header and
 *   the frame into one of the queue's preallocated transmit buffers (one descriptor per
 *   frame); vio_net_driver_send_sg() exposes caller-owned guest memory instead (zero copy;
 *   the caller's segments start with the header). Completions are collected with
 *   vio_net_driver_tx_reclaim() (send() also collects them itself when it runs out of
 *   buffers). vio_net_driver_tx_get() / vio_net_driver_tx_commit() let the caller write
 *   frames in place into the copy buffers and queue a burst of them in one go (no copy).
 * - Receive: buffers are posted as the virtio spec asks for the negotiated features
 *   (5.1.6.3.1): with VIRTIO_NET_F_MRG_RXBUF page-sized buffers (each at least a header);
 *   without it, when any GUEST_TSO4 / GUEST_TSO6 / GUEST_UFO / GUEST_USO feature is
 *   negotiated, "big" buffers that hold a header and a 64 KiB frame; otherwise one buffer
 *   of a header plus an Ethernet frame of the MTU (at least 1526 bytes).
 *   vio_net_driver_recv() collects used buffers, reads num_buffers from the header and
 *   reassembles a frame that spans several buffers into the caller's buffer, then posts
 *   the buffers again. vio_net_driver_recv_burst() returns a burst of frames in place (no
 *   copy; used buffers taken from the ring in bursts) and vio_net_driver_rx_release() posts
 *   their buffers again in one go.
 * - Notifications are the caller's decision: every queue has vio_net_driver_kick_prepare()
 *   (publish and say whether the device wants a kick), vio_net_driver_enable_cb() (arm
 *   used-buffer interrupts and re-check) and vio_net_driver_disable_cb(). An optional
 *   notify callback lets vio_net_driver_kick() do the whole kick.
 *
 * The device is untrusted: what it writes (used ring, lengths, the receive header and its
 * num_buffers) is validated. A ring violation makes that queue broken (sticky, -EIO); a bad
 * receive header or num_buffers drops the frame (-EPROTO), counted in the statistics.
 *
 * Threading: calls on one queue (the receive or the transmit queue of one pair) are
 * serialized by the caller; different queues may be driven from different threads with no
 * lock between them. vio_net_driver_new() / vio_net_driver_free() are not concurrent with
 * anything.
 *
 * Over a transport: the helper never knows which transport carries the device. Negotiate
 * with vio_driver_negotiate() (virtio/driver.h), create the helper with the negotiated
 * features and memory the device can reach, then vio_net_driver_attach() tells the device
 * where every queue lives, enables them, sets DRIVER_OK and routes vio_net_driver_kick()
 * through vio_driver_notify(). After a device reset the helper's rings are stale: free it and
 * create a new one (then attach again).
 *
 * Memory: everything is allocated by vio_net_driver_new() (host bookkeeping) or carved out
 * of the caller's area (rings and buffers); the data path never allocates and never makes
 * a system call (except the caller's notify callback).
 * @{
 */
#ifndef VIO_NET_DRIVER_H
#define VIO_NET_DRIVER_H

#include <sys/types.h>
#include <sys/uio.h>

#include "common.h"
#include "driver.h"
#include "mem.h"
#include "net_backend.h"
#include "net_defs.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Queue index of the receive queue of pair @p qp (virtio-net layout). */
#define VIO_NET_DRIVER_RXQ(qp) (2u * (unsigned)(qp))
/** Queue index of the transmit queue of pair @p qp (virtio-net layout). */
#define VIO_NET_DRIVER_TXQ(qp) (2u * (unsigned)(qp) + 1u)

/** Bytes of a "big" receive buffer (no MRG_RXBUF, guest GSO): the spec's minimum. */
#define VIO_NET_DRIVER_BIG_RX_MIN 65562u

/** Bytes of a small receive buffer (no MRG_RXBUF, no guest GSO): the spec's minimum. */
#define VIO_NET_DRIVER_SMALL_RX_MIN 1526u

/** Default mergeable receive buffer: one page. */
#define VIO_NET_DRIVER_MRG_RX_DEFAULT 4096u

/** Creation parameters (a value struct the caller fills in). */
struct vio_net_driver_config {
    uint32_t struct_size;       /**< sizeof(struct vio_net_driver_config) */
    const struct vio_mem *mem;  /**< guest memory holding @ref area (borrowed, outlives the driver) */
    uint64_t area;              /**< guest address of the area rings and buffers are carved from;
                                     16-byte aligned, inside one region of @ref mem, writable */
    uint64_t area_size;         /**< bytes of the area (vio_net_driver_area_size() tells the need) */
    uint64_t features;          /**< the negotiated feature bits (device and transport range) */
    uint16_t queue_pairs;       /**< receive/transmit queue pairs to drive; 0 means 1 */
    uint16_t queue_size;        /**< size of every queue (power of 2, <= 32768); 0 means 256 */
    uint16_t mtu;               /**< MTU for the small receive and default transmit buffers;
                                     0 means 1500 */
    uint16_t indirect_max;      /**< with VIRTIO_F_INDIRECT_DESC negotiated: descriptors per
                                     indirect table for vio_net_driver_send_sg(); 0 = no tables */
    uint32_t rx_buf_size;       /**< bytes per receive buffer, header included; 0 = what the
                                     spec asks for the features (see the file comment) */
    uint16_t rx_bufs;           /**< receive buffers per receive queue (<= queue_size);
                                     0 = queue_size */
    uint16_t tx_bufs;           /**< copy buffers per transmit queue (<= queue_size); 0 = queue_size */
    uint32_t tx_buf_size;       /**< bytes per copy buffer, header included; 0 = header plus the
                                     largest frame the features allow (64 KiB with HOST_TSO/UFO/USO,
                                     else an MTU frame with a VLAN tag) */
    /** optional: notify (kick) queue @p qidx; called by vio_net_driver_kick() from the thread
     *  driving that queue */
    void (*notify)(void *opaque, unsigned qidx);
    void *notify_opaque;        /**< passed to @ref notify */
    vio_log_fn log;             /**< optional log callback */
    void *log_opaque;           /**< passed to @ref log */
};

/** Where one queue lives, for the transport / device side (vio_net_driver_queue_addr()). */
struct vio_net_driver_queue_addr {
    uint16_t size;   /**< queue size */
    uint64_t desc;   /**< guest address of the descriptor table */
    uint64_t driver; /**< guest address of the driver area (avail ring) */
    uint64_t device; /**< guest address of the device area (used ring) */
};

/** Counters of one queue pair (value struct filled by vio_net_driver_get_stats()). */
struct vio_net_driver_stats {
    uint64_t tx_frames;     /**< frames queued for transmission */
    uint64_t tx_bytes;      /**< frame bytes queued (without the header) */
    uint64_t tx_completed;  /**< transmit buffers the device returned */
    uint64_t tx_full;       /**< sends refused with -ENOSPC */
    uint64_t rx_frames;     /**< frames received */
    uint64_t rx_bytes;      /**< frame bytes received (without the header) */
    uint64_t rx_buffers;    /**< receive buffers consumed (>= rx_frames with mergeable buffers) */
    uint64_t rx_merged;     /**< frames that spanned more than one buffer */
    uint64_t rx_oversize;   /**< frames dropped because the caller's buffer was too small */
    uint64_t rx_bad_hdr;    /**< frames dropped: short first buffer or bad num_buffers */
    uint64_t kicks;         /**< kicks the device asked for (kick_prepare returned true) */
};

/** Opaque driver-side virtio-net helper. */
struct vio_net_driver;

/**
 * @brief Bytes of guest memory the driver needs for @p cfg (rings, indirect tables, buffers).
 *
 * Only the sizing fields and features of @p cfg are read (mem, area and area_size are not).
 * @return the size in bytes, or 0 when @p cfg is invalid (same rules as vio_net_driver_new())
 */
VIO_API uint64_t vio_net_driver_area_size(const struct vio_net_driver_config *cfg);

/**
 * @brief Create the driver: lay out rings and buffers in the area and initialise the rings.
 *
 * The receive queues are empty until vio_net_driver_rx_fill(). The rings are not visible
 * to any device until the caller tells its transport their addresses
 * (vio_net_driver_queue_addr()).
 * @param[in]  cfg creation parameters (copied)
 * @param[out] out the driver, owned by the caller (vio_net_driver_free())
 * @retval 0 success
 * @retval -EINVAL cfg/out NULL, struct_size too small, queue size not a power of 2 or too big,
 *                 rx_bufs / tx_bufs larger than the queue size, a buffer size smaller than
 *                 the virtio-net header or larger than 1 GiB, or the area misaligned / too
 *                 small
 * @retval -ENOTSUP the features ask for a ring layout the core does not drive (RING_PACKED)
 * @retval -EFAULT the area is not inside one writable region of @p cfg->mem
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_net_driver_new(const struct vio_net_driver_config *cfg,
                               struct vio_net_driver **out);

/** @brief Destroy the driver (not the guest memory, which the caller owns). NULL is a no-op. */
VIO_API void vio_net_driver_free(struct vio_net_driver *d);

/** @brief Number of queues driven: 2 * queue pairs (0 for NULL). */
VIO_API unsigned vio_net_driver_num_queues(const struct vio_net_driver *d);

/** @brief Bytes of the virtio-net header in every buffer: 12 (VERSION_1 or MRG_RXBUF), else 10. */
VIO_API size_t vio_net_driver_hdr_size(const struct vio_net_driver *d);

/** @brief Bytes of each receive buffer that vio_net_driver_rx_fill() posts (header included). */
VIO_API uint32_t vio_net_driver_rx_buf_size(const struct vio_net_driver *d);

/** @brief Bytes of each transmit copy buffer (header included). */
VIO_API uint32_t vio_net_driver_tx_buf_size(const struct vio_net_driver *d);

/**
 * @brief Where queue @p qidx lives in guest memory (for the transport: queue_desc / driver /
 * device addresses, or vhost SET_VRING_ADDR).
 * @retval 0 success
 * @retval -EINVAL d or out NULL
 * @retval -ERANGE qidx >= vio_net_driver_num_queues()
 */
VIO_API int vio_net_driver_queue_addr(const struct vio_net_driver *d, unsigned qidx,
                                      struct vio_net_driver_queue_addr *out);

/**
 * @brief The core queue behind queue @p qidx, for callers that need its other calls
 * (vio_drvq_num_free(), vio_drvq_violation()). Same threading rule as the queue's own calls.
 * @return the queue, or NULL for a bad index
 */
VIO_API struct vio_drvq *vio_net_driver_queue(struct vio_net_driver *d, unsigned qidx);

/**
 * @brief Bring the device up over a generic driver: for every queue (2 x queue pairs) check
 * the device's maximum size, give it size and ring addresses (vio_net_driver_queue_addr())
 * and enable it; then set DRIVER_OK. From then on vio_net_driver_kick() notifies through
 * vio_driver_notify() (the config's notify callback is no longer used).
 *
 * Call after vio_driver_negotiate() with the same features the helper was created with,
 * before vio_net_driver_rx_fill(). Not concurrent with any other call on @p d.
 * @param[in] d   the driver
 * @param[in] drv the transport (copied; its object must outlive @p d)
 * @retval 0 success
 * @retval -EINVAL d or drv NULL
 * @retval -ERANGE the device has fewer queues than 2 x queue pairs, or a maximum size
 *                 below the helper's queue size
 * @retval -EPROTO the device refused DRIVER_OK (FAILED or NEEDS_RESET set, or FEATURES_OK
 *                 missing on a modern device; a #VIO_DRIVER_LEGACY transport has no
 *                 FEATURES_OK)
 * @retval other the transport's error (vio_driver_queue_setup(), vio_driver_queue_enable())
 */
VIO_API int vio_net_driver_attach(struct vio_net_driver *d, const struct vio_driver *drv);

/* ------------------------------------------------------------------------ */
/** @name Transmit */
/** @{ */

/**
 * @brief Queue one frame for transmission, copied into a transmit buffer: header then frame.
 *
 * Not visible to the device until vio_net_driver_kick_prepare() on VIO_NET_DRIVER_TXQ(qp).
 * When every copy buffer is in flight, completions are collected first (tokens of
 * vio_net_driver_send_sg() buffers met on the way are kept for vio_net_driver_tx_reclaim()).
 * The header is written as given (offload fields are the caller's business, num_buffers
 * is written as 0); the driver does not check it against the features.
 * @param[in] d     the driver
 * @param[in] qp    queue pair
 * @param[in] hdr   virtio-net header (little-endian fields), or NULL for an all-zero header
 * @param[in] frame the Ethernet frame
 * @param[in] len   frame bytes (> 0)
 * @retval 0 queued
 * @retval -ENOSPC no free transmit buffer or descriptor even after collecting completions
 *                 (kick, wait for the device, retry)
 * @retval -EMSGSIZE header plus frame larger than a transmit buffer
 * @retval -EINVAL d or frame NULL, len 0
 * @retval -ERANGE qp out of range
 * @retval -EIO the transmit queue is broken
 */
VIO_API int vio_net_driver_send(struct vio_net_driver *d, unsigned qp, const struct vio_net_hdr *hdr,
                                const void *frame, size_t len);

/**
 * @brief Like vio_net_driver_send() with the frame gathered from @p iov[0 .. @p iovcnt).
 * @retval as vio_net_driver_send(); -EINVAL also for iov NULL with iovcnt > 0 or a zero total
 */
VIO_API int vio_net_driver_sendv(struct vio_net_driver *d, unsigned qp,
                                 const struct vio_net_hdr *hdr, const struct iovec *iov,
                                 unsigned iovcnt);

/**
 * @brief Queue a frame that already sits in guest memory (zero copy).
 *
 * @p sg[0 .. n) are device-readable segments holding the virtio-net header
 * (vio_net_driver_hdr_size() bytes) followed by the frame, split in any way. The memory
 * stays the caller's and must not change until its token comes back from
 * vio_net_driver_tx_reclaim(). With an indirect pool (indirect_max) a multi-segment frame
 * takes one ring descriptor, else one per segment.
 * @param[in] d     the driver
 * @param[in] qp    queue pair
 * @param[in] sg    segments (guest addresses; copied into the ring)
 * @param[in] n     number of segments (> 0)
 * @param[in] token non-NULL caller pointer returned by vio_net_driver_tx_reclaim()
 * @retval 0 queued
 * @retval -ENOSPC not enough free descriptors
 * @retval -EINVAL NULL argument, n 0, a zero-length segment, or fewer bytes than a header
 * @retval -ERANGE qp out of range
 * @retval -EIO the transmit queue is broken
 */
VIO_API int vio_net_driver_send_sg(struct vio_net_driver *d, unsigned qp, const struct vio_sg *sg,
                                   unsigned n, void *token);

/**
 * @brief Collect transmit completions of pair @p qp.
 *
 * Copy buffers are freed for reuse; the tokens of vio_net_driver_send_sg() frames are
 * written to @p tokens (oldest first). When @p tokens is full the remaining sg completions
 * are kept for the next call, so none is lost.
 * @param[in]  d      the driver
 * @param[in]  qp     queue pair
 * @param[out] tokens receives sg tokens (may be NULL when @p cap is 0)
 * @param[in]  cap    capacity of @p tokens
 * @return the number of tokens written (>= 0)
 * @retval -EINVAL d NULL, tokens NULL with cap > 0
 * @retval -ERANGE qp out of range
 * @retval -EPROTO the device broke a ring rule: the queue is now broken
 * @retval -EIO the queue is broken
 */
VIO_API int vio_net_driver_tx_reclaim(struct vio_net_driver *d, unsigned qp, void **tokens,
                                      unsigned cap);

/** A transmit copy buffer lent to the caller by vio_net_driver_tx_get(). */
struct vio_net_driver_txbuf {
    void *frame;  /**< where the frame goes: right after the virtio-net header */
    uint32_t cap; /**< bytes available for the frame (vio_net_driver_tx_buf_size() - header) */
    uint16_t id;  /**< buffer number, 0 .. tx_bufs - 1; the contents of a buffer stay as the
                       caller left them between uses (the device only reads them), so a
                       caller may write a frame template once per id and patch it after */
};

/**
 * @brief Lend up to @p n free transmit copy buffers of pair @p qp to the caller, who writes
 * frames into them in place (no copy by the driver) and hands them over with
 * vio_net_driver_tx_commit().
 *
 * The buffers are not taken from the driver: they are the next ones a send would use.
 * Nothing else may run on the transmit queue of @p qp between this call and the commit (a
 * commit after another send, commit or reclaim is refused with -EINVAL unless the buffers
 * are still the next free ones). When fewer than @p n buffers or descriptors are free,
 * completions are collected first (as vio_net_driver_send() does). Thread rule: the caller
 * serializes every call on the transmit queue of @p qp (as for every transmit call).
 * @param[in]  d    the driver
 * @param[in]  qp   queue pair
 * @param[out] bufs receives the buffers, in the order they must be committed
 * @param[in]  n    buffers wanted
 * @return the number of buffers lent (0 .. @p n; 0 when every buffer is in flight)
 * @retval -EINVAL d NULL, bufs NULL with n > 0
 * @retval -ERANGE qp out of range
 * @retval -EIO the transmit queue is broken (seen when completions had to be collected;
 *              otherwise vio_net_driver_tx_commit() reports it)
 * @retval -EPROTO collecting completions found a ring violation: the queue is now broken
 */
VIO_API int vio_net_driver_tx_get(struct vio_net_driver *d, unsigned qp,
                                  struct vio_net_driver_txbuf *bufs, unsigned n);

/**
 * @brief Queue the first @p n buffers of the last vio_net_driver_tx_get() on pair @p qp for
 * transmission, frame k of @p lens[k] bytes (written by the caller at @p bufs[k].frame).
 *
 * The driver writes the virtio-net header (@p hdr, or all zero, num_buffers 0) in front of
 * every frame and adds all of them to the ring in one burst. Not visible to the device
 * until vio_net_driver_kick_prepare() on VIO_NET_DRIVER_TXQ(qp). Buffers lent but not
 * committed simply stay free. Everything is checked before anything is queued. Thread rule:
 * serialized with every other call on the transmit queue of @p qp.
 * @param[in] d    the driver
 * @param[in] qp   queue pair
 * @param[in] bufs the buffers as vio_net_driver_tx_get() returned them (a prefix of them)
 * @param[in] lens frame bytes of each buffer (1 .. its cap)
 * @param[in] n    buffers to queue
 * @param[in] hdr  virtio-net header for every frame (little-endian fields), or NULL
 * @return the number of frames queued (@p n)
 * @retval -EINVAL d NULL, bufs or lens NULL with n > 0, a length 0, or a buffer that is not
 *                 the next free one (not lent by the last vio_net_driver_tx_get(), or taken
 *                 by another call since)
 * @retval -EMSGSIZE a length above the buffer's cap
 * @retval -ENOSPC fewer free descriptors than @p n (vio_net_driver_send_sg() took them since
 *                 vio_net_driver_tx_get()); nothing queued
 * @retval -ERANGE qp out of range
 * @retval -EIO the transmit queue is broken
 */
VIO_API int vio_net_driver_tx_commit(struct vio_net_driver *d, unsigned qp,
                                     const struct vio_net_driver_txbuf *bufs,
                                     const uint32_t *lens, unsigned n,
                                     const struct vio_net_hdr *hdr);

/** @brief Frames of pair @p qp handed to the device and not yet collected (0 for bad args). */
VIO_API unsigned vio_net_driver_tx_inflight(const struct vio_net_driver *d, unsigned qp);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Receive */
/** @{ */

/**
 * @brief Post every receive buffer of pair @p qp that is not with the device.
 *
 * Call once after the device has been told about the queues (and after a reset);
 * vio_net_driver_recv() posts buffers again by itself. Then vio_net_driver_kick_prepare()
 * on VIO_NET_DRIVER_RXQ(qp).
 * @return the number of buffers posted (>= 0)
 * @retval -EINVAL d NULL
 * @retval -ERANGE qp out of range
 * @retval -EIO the receive queue is broken
 */
VIO_API int vio_net_driver_rx_fill(struct vio_net_driver *d, unsigned qp);

/**
 * @brief Receive one frame: collect its buffers, copy it out, post the buffers again.
 *
 * With VIRTIO_NET_F_MRG_RXBUF the header's num_buffers says how many used buffers make
 * up the frame; they are taken in used-ring order and concatenated. If the device has not
 * returned all of them yet, the ones seen are kept and -EAGAIN is returned; the next call
 * continues. The reposted buffers are published by the next
 * vio_net_driver_kick_prepare() on VIO_NET_DRIVER_RXQ(qp).
 * @param[in]  d   the driver
 * @param[in]  qp  queue pair
 * @param[out] hdr optional: the header as the device wrote it (num_buffers included; with a
 *                 10-byte legacy header num_buffers reads 1)
 * @param[out] buf receives the frame (without the header); NULL to only learn the length
 *                 and drop the frame (with @p cap ignored)
 * @param[in]  cap capacity of @p buf
 * @return the frame length in bytes (>= 0)
 * @retval -EAGAIN no complete frame yet
 * @retval -EMSGSIZE the frame is longer than @p cap: it was dropped (buffers reposted)
 * @retval -EPROTO the device returned a buffer shorter than the header, or num_buffers 0 or
 *                 larger than the buffers posted: the frame was dropped, the queue goes on
 * @retval -EINVAL d NULL
 * @retval -ERANGE qp out of range
 * @retval -EIO the receive queue is broken (a ring violation by the device)
 */
VIO_API ssize_t vio_net_driver_recv(struct vio_net_driver *d, unsigned qp, struct vio_net_hdr *hdr,
                                    void *buf, size_t cap);

/** One frame returned by vio_net_driver_recv_burst(), read in place. */
struct vio_net_driver_rxfrm {
    const void *data; /**< the frame, without the header: in the receive buffer itself, or
                           (a frame spread over several mergeable buffers) in the driver's
                           reassembly area */
    uint32_t len;     /**< frame bytes */
    uint16_t nbufs;   /**< receive buffers the frame took (num_buffers; 1 without MRG_RXBUF) */
    const void *hdr;  /**< the virtio-net header as the device wrote it
                           (vio_net_driver_hdr_size() bytes, little-endian) */
};

/**
 * @brief Receive up to @p max frames without copying them: each is described by a pointer
 * into its receive buffer (zero copy), valid until the next vio_net_driver_rx_release(),
 * vio_net_driver_recv_burst(), vio_net_driver_recv() or vio_net_driver_rx_fill() on @p qp.
 *
 * First releases the buffers of the previous burst (as vio_net_driver_rx_release()). Used
 * buffers are collected from the ring in bursts. What the device wrote is checked as
 * vio_net_driver_recv() does: a first buffer shorter than the header, num_buffers 0 or
 * larger than the buffers posted drops the frame (counted in rx_bad_hdr, the burst goes
 * on); a frame spread over several buffers is copied into the driver's reassembly area
 * (at most one such frame per burst: the burst ends after it) and dropped (rx_oversize)
 * when longer than the largest frame a device may deliver (65589 bytes). An incomplete
 * frame is kept for the next call. The released buffers are published by the next
 * vio_net_driver_kick_prepare() on VIO_NET_DRIVER_RXQ(qp). Thread rule: the caller
 * serializes every call on the receive queue of @p qp, and reads the frames from that
 * thread (or hands them over) before the next such call.
 * @param[in]  d      the driver
 * @param[in]  qp     queue pair
 * @param[out] frames receives the frames, in ring order
 * @param[in]  max    most frames to return
 * @return the number of frames returned (0 when none is complete)
 * @retval -EINVAL d NULL, frames NULL with max > 0
 * @retval -ERANGE qp out of range
 * @retval -EIO the receive queue is broken (a ring violation by the device; frames
 *              collected before it are returned first)
 */
VIO_API int vio_net_driver_recv_burst(struct vio_net_driver *d, unsigned qp,
                                      struct vio_net_driver_rxfrm *frames, unsigned max);

/**
 * @brief Give the buffers of the last vio_net_driver_recv_burst() on @p qp back to the
 * device (one burst of ring additions; published by the next vio_net_driver_kick_prepare()
 * on VIO_NET_DRIVER_RXQ(qp)). The frames' pointers are invalid afterwards. Thread rule:
 * serialized with every other call on the receive queue of @p qp.
 * @param[in] d  the driver
 * @param[in] qp queue pair
 * @return the number of buffers posted (>= 0)
 * @retval -EINVAL d NULL
 * @retval -ERANGE qp out of range
 * @retval -EIO the receive queue is broken (the buffers stay with the driver)
 */
VIO_API int vio_net_driver_rx_release(struct vio_net_driver *d, unsigned qp);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Notifications (per queue: VIO_NET_DRIVER_RXQ(qp) / VIO_NET_DRIVER_TXQ(qp)) */
/** @{ */

/**
 * @brief Publish what was added to queue @p qidx and say whether the device wants a kick.
 * @return true when the caller should notify the device (false also for bad arguments)
 */
VIO_API bool vio_net_driver_kick_prepare(struct vio_net_driver *d, unsigned qidx);

/**
 * @brief vio_net_driver_kick_prepare() and, when it says so, notify the device: through the
 * attached transport (vio_net_driver_attach()), else the config's notify callback.
 * @retval 1 the device was notified
 * @retval 0 no kick needed
 * @retval -ENOTSUP a kick was needed but there is neither a transport nor a notify callback
 * @retval other the transport's vio_driver_notify() error
 * @retval -EINVAL / -ERANGE bad arguments
 */
VIO_API int vio_net_driver_kick(struct vio_net_driver *d, unsigned qidx);

/**
 * @brief Ask for used-buffer notifications on queue @p qidx again.
 * @return true if used buffers arrived meanwhile: process them before sleeping
 */
VIO_API bool vio_net_driver_enable_cb(struct vio_net_driver *d, unsigned qidx);

/** @brief Tell the device notifications on queue @p qidx are not needed (the caller polls). */
VIO_API void vio_net_driver_disable_cb(struct vio_net_driver *d, unsigned qidx);

/** @brief True once the device broke a ring rule on queue @p qidx (sticky). */
VIO_API bool vio_net_driver_is_broken(const struct vio_net_driver *d, unsigned qidx);

/** @} */

/**
 * @brief Read the counters of pair @p qp. Any thread (each counter has one writer and is
 * read with a relaxed atomic load: exact, but not a snapshot of one instant).
 * @retval 0 success
 * @retval -EINVAL d or out NULL
 * @retval -ERANGE qp out of range
 */
VIO_API int vio_net_driver_get_stats(const struct vio_net_driver *d, unsigned qp,
                                     struct vio_net_driver_stats *out);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
