/* SPDX-License-Identifier: MIT */
/**
 * @file net.h
 * @brief The virtio-net device model (device side) and the virtio-net header checks.
 *
 * @defgroup net virtio-net device
 * @brief A virtio-net device on top of a network backend, exposed through the generic device
 * interface (device.h).
 *
 * Queue layout (virtio spec): rx0, tx0, rx1, tx1, ..., rx(N-1), tx(N-1), ctrl, where N is the
 * number of queue pairs the device was created with; without VIRTIO_NET_F_MQ negotiated only
 * rx0 / tx0 exist and the control queue is queue 2. TX queues are #VIO_QUEUE_DIR_OUT_ONLY, RX
 * queues #VIO_QUEUE_DIR_IN_ONLY, the control queue #VIO_QUEUE_DIR_ANY.
 *
 * Data path:
 * - TX (driver kick, or the backend's tx fd turning writable after backpressure): each chain
 *   is a 12-byte virtio_net_hdr_v1 followed by the frame, split across descriptors in any
 *   way. The header is copied out and checked with vio_net_hdr_check(); the frame goes to the
 *   backend as iovecs pointing into guest memory (no copy). A bad header is a data error,
 *   not a ring violation: the frame is dropped (counted by reason) and its chain returned
 *   used with length 0; the queue keeps running. Backend -EAGAIN: the chain is given back
 *   (vio_queue_rewind()) and the queue waits for the backend's tx fd.
 * - RX (backend rx fd readable, or a driver kick after the queue ran out of buffers): guest
 *   buffers are taken for one frame (with VIRTIO_NET_F_MRG_RXBUF as many chains as the frame
 *   needs, num_buffers says how many; without it one chain per frame), the backend writes
 *   the frame straight into them, the device writes the header in front. Buffers not needed
 *   are given back. With no guest buffers the frame stays in the backend and the queue asks
 *   the driver for a kick. Receive filtering (control queue state) is applied per frame.
 *   Offload metadata the driver did not negotiate never reaches it (the frame is dropped).
 * - Control queue: RX mode, MAC table, MAC address, VLAN filter, MQ pairs, announce ack.
 *   Every command is checked strictly (class and command known and negotiated, exact
 *   lengths, counts consistent with the buffer, values in range); a bad one is answered
 *   VIRTIO_NET_ERR and counted, it never breaks the queue.
 *
 * Threading: each queue pair (its RX and TX queue, on one thread, since the backend serializes
 * calls per pair) may be driven by its own thread and the control queue by another, with no
 * lock between them. The receive filter that the control
 * queue writes and RX threads read is published as an immutable snapshot: the writer fills
 * the spare of two copies and swaps a pointer; each RX thread announces the copy it reads
 * with a per-pair hazard pointer, so the RX path takes no lock and the (rare) writer waits
 * until no reader holds the copy it is about to overwrite. Config space changes (link, MAC,
 * announce) take a mutex that is never taken on the data path. Counters are per queue, written
 * only by that queue's thread and readable from any thread (relaxed atomics).
 *
 * Memory: every array (iovecs, used elements, chain records) is allocated by
 * vio_net_dev_new(); processing never allocates and makes no system call of its own (the
 * backend's read/write is the work itself).
 * @{
 */
#ifndef VIO_NET_H
#define VIO_NET_H

#include "common.h"
#include "device.h"
#include "net_backend.h"
#include "net_defs.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest frame (without the virtio-net header) accepted on TX and offered on RX: 14 bytes of
 *  Ethernet header, 40 of IPv6 header and 65535 of payload (virtio spec "Setting Up Receive
 *  Buffers"). */
#define VIO_NET_MAX_FRAME_LEN 65589u

/** Smallest frame: an Ethernet header. */
#define VIO_NET_MIN_FRAME_LEN 14u

/** MAC filter table capacity (unicast and multicast each); a larger table switches to
 *  all-unicast / all-multicast for that kind (the spec allows it). */
#define VIO_NET_MAC_TABLE_ENTRIES 64u

/** Default iovec capacity per queue (vio_net_dev_config::iov_max). */
#define VIO_NET_DEFAULT_IOV_MAX 1024u

/**
 * @brief Check a virtio-net header from the driver (TX) against the frame and the features.
 *
 * Rules, in the order they are checked:
 * | rule | errno |
 * |---|---|
 * | frame_len < #VIO_NET_MIN_FRAME_LEN or > #VIO_NET_MAX_FRAME_LEN | -EMSGSIZE |
 * | gso_type (without the ECN bit) not NONE, TCPV4, UDP, TCPV6, UDP_L4 | -EINVAL |
 * | GSO type whose HOST_TSO4 / HOST_TSO6 / HOST_UFO / HOST_USO feature is not negotiated | -EPROTO |
 * | ECN bit on a non-TCP (or NONE) gso_type | -EINVAL |
 * | ECN bit without HOST_ECN negotiated | -EPROTO |
 * | NEEDS_CSUM without VIRTIO_NET_F_CSUM negotiated | -EPROTO |
 * | gso_type not NONE without NEEDS_CSUM (spec: the driver MUST set it) | -EINVAL |
 * | gso_type not NONE with gso_size 0 | -EINVAL |
 * | NEEDS_CSUM with csum_start + csum_offset + 2 > frame_len (the checksum must fit) | -EINVAL |
 * | hdr_len > frame_len | -EINVAL |
 *
 * Flags other than NEEDS_CSUM are ignored (the spec tells the device to ignore unknown
 * flags; DATA_VALID and RSC_INFO have no meaning on TX) and num_buffers is ignored, so the
 * device strips them before handing the header to a backend. Pure function, any thread.
 *
 * @param[in] h         the header as the driver wrote it (little-endian fields; guest controlled)
 * @param[in] frame_len bytes of frame after the header (guest controlled)
 * @param[in] features  the negotiated feature bits
 * @retval 0 the header may be handed to a backend
 * @retval -EMSGSIZE frame length out of range
 * @retval -EPROTO the header asks for an offload that was not negotiated
 * @retval -EINVAL inconsistent or unknown field values (or h NULL)
 */
VIO_API int vio_net_hdr_check(const struct vio_net_hdr *h, size_t frame_len, uint64_t features);

/** Why a frame (or command) was dropped; index of vio_net_queue_stats::drops. */
enum vio_net_drop_reason {
    VIO_NET_DROP_SHORT_CHAIN = 0,   /**< TX chain shorter than the header / RX buffer that cannot
                                         hold the header */
    VIO_NET_DROP_LENGTH,            /**< frame too short or too long (-EMSGSIZE, or larger than
                                         the guest's buffers) */
    VIO_NET_DROP_HDR_INVALID,       /**< header fields inconsistent (vio_net_hdr_check() -EINVAL) */
    VIO_NET_DROP_HDR_OFFLOAD,       /**< offload not negotiated (TX: -EPROTO; RX: backend metadata
                                         the driver cannot take) */
    VIO_NET_DROP_BACKEND,           /**< the backend failed or refused the frame (or is gone) */
    VIO_NET_DROP_LINK_DOWN,         /**< the link is down */
    VIO_NET_DROP_FILTER_UNICAST,    /**< RX: unicast destination not accepted */
    VIO_NET_DROP_FILTER_MULTICAST,  /**< RX: multicast destination not accepted */
    VIO_NET_DROP_FILTER_BROADCAST,  /**< RX: broadcast suppressed (NOBCAST) */
    VIO_NET_DROP_FILTER_VLAN,       /**< RX: VLAN id not in the filter table */
    VIO_NET_DROP_CTRL_INVALID,      /**< control command answered VIRTIO_NET_ERR */
    VIO_NET_DROP__COUNT             /**< number of reasons (not a reason) */
};

/** Room for drop reasons in vio_net_queue_stats (>= #VIO_NET_DROP__COUNT). */
#define VIO_NET_DROP_SLOTS 16u

/** @brief Short stable name of a drop reason ("short-chain", "filter-vlan", ...). */
VIO_API const char *vio_net_drop_reason_name(enum vio_net_drop_reason r);

/** Counters of one queue (value struct filled by vio_net_dev_get_stats()). */
struct vio_net_queue_stats {
    uint64_t packets;      /**< frames sent (TX) / delivered (RX) / commands answered OK (ctrl) */
    uint64_t bytes;        /**< frame bytes, without the virtio-net header */
    uint64_t drops[VIO_NET_DROP_SLOTS]; /**< drops by #vio_net_drop_reason */
    uint64_t stalls;       /**< TX: backend backpressure (-EAGAIN); RX: ran out of guest buffers */
    uint64_t notifies;     /**< used-buffer notifications raised */
};

/** Receive filter flags (vio_net_rx_filter::flags). */
enum vio_net_filter_flags {
    VIO_NET_FILTER_PROMISC = 1u << 0,        /**< accept everything */
    VIO_NET_FILTER_ALLMULTI = 1u << 1,       /**< accept all multicast */
    VIO_NET_FILTER_ALLUNI = 1u << 2,         /**< accept all unicast */
    VIO_NET_FILTER_NOMULTI = 1u << 3,        /**< drop multicast (not broadcast) */
    VIO_NET_FILTER_NOUNI = 1u << 4,          /**< drop unicast */
    VIO_NET_FILTER_NOBCAST = 1u << 5,        /**< drop broadcast */
    VIO_NET_FILTER_UNI_OVERFLOW = 1u << 6,   /**< unicast table too big: all unicast accepted */
    VIO_NET_FILTER_MULTI_OVERFLOW = 1u << 7, /**< multicast table too big: all multicast accepted */
    VIO_NET_FILTER_VLAN = 1u << 8            /**< VLAN filtering on (CTRL_VLAN negotiated) */
};

/** Snapshot of the receive filter (value struct filled by vio_net_dev_get_rx_filter()). */
struct vio_net_rx_filter {
    uint32_t flags;   /**< #vio_net_filter_flags */
    uint8_t mac[6];   /**< the device's own address (config mac / CTRL_MAC_ADDR_SET) */
    uint16_t n_uni;   /**< entries in @ref uni */
    uint16_t n_multi; /**< entries in @ref multi */
    uint8_t uni[VIO_NET_MAC_TABLE_ENTRIES][6];   /**< unicast table */
    uint8_t multi[VIO_NET_MAC_TABLE_ENTRIES][6]; /**< multicast table */
    uint32_t vlans[4096 / 32]; /**< VLAN ids allowed: bit (vid % 32) of word vid / 32 */
};

/** Opaque virtio-net device. */
struct vio_net_dev;

/** Creation parameters of a virtio-net device. */
struct vio_net_dev_config {
    uint32_t struct_size;             /**< sizeof(struct vio_net_dev_config) */
    struct vio_net_backend *backend;  /**< required, borrowed: must outlive the device */
    uint8_t mac[6];                   /**< config-space MAC address */
    bool mac_valid;                   /**< offer VIRTIO_NET_F_MAC with @ref mac */
    uint16_t mtu;                     /**< 0: do not offer VIRTIO_NET_F_MTU; else 68..65535 */
    uint16_t max_queue_pairs;         /**< 0: the backend's queue_pairs; more than 1 offers MQ;
                                           at most the backend's queue_pairs and 0x8000 */
    uint16_t queue_size;              /**< max size of RX/TX queues (power of 2); 0: 256 */
    uint16_t ctrl_queue_size;         /**< max size of the control queue; 0: 64 */
    unsigned iov_max;                 /**< iovecs per queue; 0: #VIO_NET_DEFAULT_IOV_MAX */
    uint64_t features_off;            /**< feature bits never to offer (mask of bit numbers,
                                           e.g. vio_feature_bit(VIO_NET_F_MRG_RXBUF)) */
    bool link_down;                   /**< start with the link down (default up) */
    /** the transport's frontend owns the control queue (vhost-user: QEMU and DPDK keep it and
     *  pass CTRL_RX, GUEST_ANNOUNCE, MQ ... without CTRL_VQ). Control-queue features are then
     *  offered and accepted without CTRL_VQ, MQ activates every pair (the frontend enables
     *  rings one by one), and no RX filter state is applied that only the control queue could
     *  change.
     *
     *  Leave it false behind vhost-user: that transport binds with
     *  #VIO_DEVICE_BIND_FRONTEND_CTRL, which sets it for the time the device is bound (the
     *  offer is recomputed at bind, before negotiation). Set it by hand only for another
     *  transport whose frontend keeps the control queue and that does not pass the flag. */
    bool frontend_ctrl;
    vio_log_fn log;                   /**< optional log callback */
    void *log_opaque;                 /**< passed to @ref log */
};

/**
 * @brief Create a virtio-net device on a backend.
 *
 * The offer: VERSION_1, EVENT_IDX, INDIRECT_DESC, IN_ORDER, MRG_RXBUF, STATUS, CTRL_VQ,
 * CTRL_RX, CTRL_RX_EXTRA, CTRL_VLAN, CTRL_MAC_ADDR, GUEST_ANNOUNCE, MAC (if mac_valid), MTU
 * (if mtu), MQ (if more than one pair), plus the offloads (CSUM, GUEST_CSUM, HOST/GUEST
 * TSO4/6, ECN, UFO, HOST_USO) that the backend's features() says it can honour, minus
 * @ref vio_net_dev_config::features_off and minus any bit whose spec prerequisite is not
 * offered (a control-queue feature stays without CTRL_VQ when the frontend keeps the control
 * queue: @ref vio_net_dev_config::frontend_ctrl, or a bind with
 * #VIO_DEVICE_BIND_FRONTEND_CTRL, which recomputes the offer).
 * @param[in]  cfg creation parameters (copied)
 * @param[out] out the device, owned by the caller (vio_net_dev_free())
 * @retval 0 success
 * @retval -EINVAL cfg/out NULL, struct_size too small, no backend (or backend without tx/rx),
 *                 bad mtu, queue sizes not a power of 2 / > 32768, max_queue_pairs larger than
 *                 the backend's or 0x8000
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_net_dev_new(const struct vio_net_dev_config *cfg, struct vio_net_dev **out);

/** @brief Destroy a device (not the backend, which the caller owns). NULL is a no-op. The
 *  transport has stopped using it. */
VIO_API void vio_net_dev_free(struct vio_net_dev *d);

/** @brief The generic device interface of @p d (valid until vio_net_dev_free()).
 *
 *  Its queues: rx0, tx0, rx1, tx1 ... then the control queue (when CTRL_VQ is offered);
 *  vio_device_num_queues() counts them all, vio_device_frontend_queue_num() reports the
 *  maximum queue pairs (what vhost-user frontends read from GET_QUEUE_NUM). */
VIO_API struct vio_device *vio_net_dev_device(struct vio_net_dev *d);

/** Watch ids of a virtio-net device: (queue pair << 1) | kind. */
#define VIO_NET_WATCH_RX 0u /**< kind: the backend's rx fd of a pair (readable) */
#define VIO_NET_WATCH_TX 1u /**< kind: the backend's tx fd of a pair (writable, after backpressure) */
/** @brief Watch id for queue pair @p qp and kind #VIO_NET_WATCH_RX / #VIO_NET_WATCH_TX. */
#define VIO_NET_WATCH_ID(qp, kind) ((uint32_t)(qp) << 1 | (uint32_t)(kind))
/** @brief Queue pair of a watch id made by #VIO_NET_WATCH_ID (its inverse). */
#define VIO_NET_WATCH_QP(id) ((uint32_t)(id) >> 1)
/** @brief Kind (#VIO_NET_WATCH_RX / #VIO_NET_WATCH_TX) of a watch id made by #VIO_NET_WATCH_ID. */
#define VIO_NET_WATCH_KIND(id) ((uint32_t)(id) & 1u)

/**
 * @brief Send what the driver queued on the TX queue of pair @p qp (data path, the pair's thread).
 *
 * What vio_device_queue_notify() on a TX queue and vio_device_handle() on a TX watch do.
 * Stops when the queue is empty, the backend pushes back (-EAGAIN: the chain stays queued and
 * the pair's tx fd is watched for writability), or @p budget chains were handled; in the last
 * case driver notifications stay off and the caller calls again.
 * @param[in] d      the device
 * @param[in] qp     queue pair index
 * @param[in] budget maximum chains to handle; 0 = no limit
 * @return chains handled (sent or dropped), >= 0
 * @retval -ERANGE qp >= max queue pairs
 * @retval -EIO the TX queue is not started or is broken (needs_reset was raised)
 * @retval -ENOBUFS a chain needs more than iov_max iovecs: the queue cannot go on (needs_reset
 *                  was raised)
 */
VIO_API int vio_net_dev_tx_process(struct vio_net_dev *d, unsigned qp, unsigned budget);

/**
 * @brief Move frames from the backend into the RX queue of pair @p qp (data path, the pair's thread).
 *
 * What vio_device_handle() on an RX watch and vio_device_queue_notify() on an RX queue do.
 * Stops when the backend has nothing, the driver has no buffers (the frame stays in the
 * backend, the rx fd watch is removed and a driver kick resumes), the pair is not active
 * (VQ_PAIRS_SET), or @p budget frames were handled.
 * @param[in] d      the device
 * @param[in] qp     queue pair index
 * @param[in] budget maximum frames to handle; 0 = no limit
 * @return frames handled (delivered or dropped), >= 0
 * @retval -ERANGE qp >= max queue pairs
 * @retval -EIO the RX queue is not started or is broken
 * @retval -ENODEV the backend failed (logged once; the rx watch is removed)
 * @retval -ENOBUFS a chain needs more than iov_max iovecs (needs_reset was raised)
 */
VIO_API int vio_net_dev_rx_process(struct vio_net_dev *d, unsigned qp, unsigned budget);

/**
 * @brief One round of queue pair @p qp for a polling loop: vio_net_dev_tx_process() then
 *        vio_net_dev_rx_process(), each with @p budget (data path, the pair's thread).
 *
 * The same as the two calls one after the other, except that the transmit run's last used
 * entries (up to 32) are published after the receive run instead of before it: a driver that
 * forwards what it receives waits for the received frames, and their publication then no
 * longer queues behind the transmit ring's stores and its notification fence. Everything is
 * published when the call returns.
 * @param[in]  d      the device
 * @param[in]  qp     queue pair index
 * @param[in]  budget maximum chains per direction; 0 = no limit
 * @param[out] tx_rc  optional: what vio_net_dev_tx_process() would have returned
 * @param[out] rx_rc  optional: what vio_net_dev_rx_process() would have returned
 * @return frames handled in both directions (>= 0), errors only through @p tx_rc / @p rx_rc
 * @retval -EINVAL @p d is NULL
 * @retval -ERANGE qp >= max queue pairs
 */
VIO_API int vio_net_dev_process(struct vio_net_dev *d, unsigned qp, unsigned budget, int *tx_rc,
                                int *rx_rc);

/**
 * @brief Polling mode for one queue pair, for a caller that drives it in a loop (a busy-polling
 *        worker) instead of waiting for kicks.
 *
 * While on, vio_net_dev_tx_process() leaves the driver's TX kicks off when the queue runs empty,
 * and vio_net_dev_rx_process() neither asks for RX kicks nor stops watching the backend when the
 * driver has no buffers: the driver never pays for a notification the caller would not wait
 * for. The caller must then call both again soon. Turning it off restores kick-driven
 * processing; call vio_net_dev_tx_process() and vio_net_dev_rx_process() once afterwards (they
 * re-enable the kicks and re-check the rings) before waiting for events. Off by default and
 * after vio_net_dev_new(); a device reset keeps it. Call it from the thread that processes the
 * pair.
 * @retval 0 done
 * @retval -EINVAL @p d is NULL
 * @retval -ERANGE qp >= max queue pairs
 */
VIO_API int vio_net_dev_set_polling(struct vio_net_dev *d, unsigned qp, bool on);

/**
 * @brief Execute the commands queued on the control queue (data path, the control thread).
 * @return commands handled, >= 0
 * @retval -EIO the control queue is not started or is broken
 * @retval -ENOTSUP the control queue was not negotiated
 */
VIO_API int vio_net_dev_ctrl_process(struct vio_net_dev *d);

/**
 * @brief Set the link state (config status LINK_UP). Raises config_changed when it changes
 * and STATUS is negotiated. While down, TX frames and received frames are dropped
 * (#VIO_NET_DROP_LINK_DOWN). Any thread.
 * @retval 0 success, -EINVAL d NULL
 */
VIO_API int vio_net_dev_set_link(struct vio_net_dev *d, bool up);

/**
 * @brief Ask the driver to announce itself (e.g. after migration): sets VIRTIO_NET_S_ANNOUNCE
 * and raises config_changed; the driver acks through the control queue. Any thread.
 * @retval 0 success
 * @retval -EINVAL d NULL
 * @retval -ENOTSUP GUEST_ANNOUNCE (and STATUS) not negotiated
 */
VIO_API int vio_net_dev_announce(struct vio_net_dev *d);

/**
 * @brief Read the counters of queue @p qidx (rx0, tx0, ..., ctrl). Any thread; the values are
 * each exact but not a snapshot of one instant.
 * @retval 0 success
 * @retval -EINVAL d or out NULL
 * @retval -ERANGE no such queue
 */
VIO_API int vio_net_dev_get_stats(const struct vio_net_dev *d, unsigned qidx,
                                  struct vio_net_queue_stats *out);

/** @brief Copy the current receive filter (a consistent snapshot). Any thread.
 *  @retval 0 success, -EINVAL d or out NULL */
VIO_API int vio_net_dev_get_rx_filter(const struct vio_net_dev *d, struct vio_net_rx_filter *out);

/** @brief Queue pairs in use (1 until the driver's VQ_PAIRS_SET). Any thread. */
VIO_API unsigned vio_net_dev_active_pairs(const struct vio_net_dev *d);

/** @brief Negotiated features (0 before vio_device_set_features()). */
VIO_API uint64_t vio_net_dev_features(const struct vio_net_dev *d);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
