/* SPDX-License-Identifier: MIT */
/**
 * @file queue.h
 * @brief Virtqueue engine: the device side (struct vio_queue) and the driver side (struct vio_drvq).
 *
 * @defgroup queue Virtqueue engine
 * @brief Both sides of a virtqueue on memory shared with another party.
 *
 * The queue never owns buffers. On the device side a popped chain is named by
 * its head index, which the caller hands back to vio_queue_push(). On the
 * driver side each buffer carries a caller token that vio_drvq_get_used()
 * returns. Everything the other side writes into ring memory is validated;
 * a violation makes the queue *broken* (sticky until vio_queue_reset() /
 * re-creation): the rule is logged once, the on_broken hook fires (so a
 * transport can set NEEDS_RESET and raise a config interrupt) and every data
 * path call then returns -EIO.
 *
 * Only the split ring layout is implemented today; the API is layout-neutral
 * (addresses are "descriptor area", "driver area", "device area") so the
 * packed ring can be added behind the same calls.
 *
 * Threading: a queue object is driven by one thread at a time (the caller
 * serializes). The two sides of one ring may run in different threads or
 * processes; the engine uses acquire/release and full fences as the virtio
 * spec requires.
 * @{
 */
#ifndef VIO_QUEUE_H
#define VIO_QUEUE_H

#include <sys/uio.h>

#include "common.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest queue size a split ring may have (virtio spec). */
#define VIO_QUEUE_MAX_SIZE 32768u

/** The rule a peer broke; reported by vio_queue_violation() / vio_drvq_violation(). */
enum vio_violation {
    VIO_VIOL_NONE = 0,         /**< no rule broken */
    VIO_VIOL_AVAIL_IDX,        /**< avail idx moved more than queue size ahead (-EPROTO) */
    VIO_VIOL_HEAD_RANGE,       /**< head index >= queue size (-EPROTO) */
    VIO_VIOL_NEXT_RANGE,       /**< next index >= table size (-EPROTO) */
    VIO_VIOL_CHAIN_LOOP,       /**< chain longer than its table: a loop (-EPROTO) */
    VIO_VIOL_INDIRECT_LEN,     /**< indirect table length 0 or not a multiple of 16 (-EPROTO) */
    VIO_VIOL_INDIRECT_NESTED,  /**< indirect descriptor inside an indirect table (-EPROTO) */
    VIO_VIOL_INDIRECT_NEXT,    /**< INDIRECT and NEXT on the same descriptor (-EPROTO) */
    VIO_VIOL_INDIRECT_FEATURE, /**< INDIRECT used but VIRTIO_F_INDIRECT_DESC not negotiated (-EPROTO) */
    VIO_VIOL_TOTAL_LEN,        /**< chain longer than 4 GiB in total (-EPROTO) */
    VIO_VIOL_ADDRESS,          /**< buffer or table outside guest memory / in a hole (-EFAULT) */
    VIO_VIOL_ORDER,            /**< readable descriptor after a writable one (-EPROTO) */
    VIO_VIOL_DIRECTION,        /**< writable descriptor on a driver-to-device queue or the reverse (-EPROTO) */
    VIO_VIOL_USED_IDX,         /**< driver side: used idx went backwards / past what is in flight (-EPROTO) */
    VIO_VIOL_USED_ID,          /**< driver side: used id not a buffer in flight (-EPROTO) */
    VIO_VIOL_USED_LEN,         /**< driver side: used len larger than the writable part (-EPROTO) */
    VIO_VIOL_RING_ADDRESS,     /**< ring areas not inside guest memory (-EFAULT) */
    VIO_VIOL__COUNT            /**< number of violation kinds (not a violation) */
};

/** @brief Short stable name of a violation ("avail-idx-jump", ...). */
VIO_API const char *vio_violation_name(enum vio_violation v);

/** Which descriptor kinds a queue accepts (device side). */
enum vio_queue_dir {
    VIO_QUEUE_DIR_ANY = 0,     /**< readable then writable, both allowed */
    VIO_QUEUE_DIR_OUT_ONLY,    /**< driver-to-device queue (e.g. net TX): writable is a violation */
    VIO_QUEUE_DIR_IN_ONLY      /**< device-to-driver queue (e.g. net RX): readable is a violation */
};

/* ------------------------------------------------------------------------ */
/** @name Device side */
/** @{ */

/** Opaque device-side queue. */
struct vio_queue;

/** Creation parameters of a device-side queue. */
struct vio_queue_config {
    uint32_t struct_size;   /**< sizeof(struct vio_queue_config) */
    uint16_t max_size;      /**< largest size vio_queue_setup() may use (power of 2, <= 32768) */
    uint16_t index;         /**< queue number, for log messages */
    const char *name;       /**< optional name for log messages (copied); NULL = "vq<index>" */
    enum vio_queue_dir dir; /**< descriptor directions accepted */
    vio_log_fn log;         /**< optional log callback */
    void *log_opaque;       /**< passed to @ref log */
    /** optional: called once when the queue turns broken (from the thread driving the queue) */
    void (*on_broken)(void *opaque, struct vio_queue *q, enum vio_violation why);
    void *broken_opaque;    /**< passed to @ref on_broken */
};

/** A chain popped from the device side. */
struct vio_chain {
    uint16_t head;     /**< head descriptor index: give it back to vio_queue_push() */
    uint16_t ndesc;    /**< descriptors this chain occupies in the descriptor table */
    uint32_t n_out;    /**< iov[0 .. n_out) are device-readable */
    uint32_t n_in;     /**< iov[n_out .. n_out + n_in) are device-writable */
    uint32_t out_len;  /**< bytes in the readable part */
    uint32_t in_len;   /**< bytes in the writable part */
};

/** One used element for vio_queue_push_batch(). */
struct vio_used_elem {
    uint32_t id;  /**< chain head */
    uint32_t len; /**< bytes written into the chain's writable part */
};

/**
 * @brief Create a device-side queue. Allocates everything the queue will ever need.
 * @retval 0 success
 * @retval -EINVAL bad config (max_size 0, not a power of 2, > 32768, struct_size too small)
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_queue_new(const struct vio_queue_config *cfg, struct vio_queue **out);

/** @brief Destroy a queue. NULL is a no-op. */
VIO_API void vio_queue_free(struct vio_queue *q);

/**
 * @brief Attach the queue to its ring memory and start it.
 *
 * @param[in] q        the queue
 * @param[in] mem      guest memory (borrowed; must outlive the queue's use of it)
 * @param[in] size     queue size chosen by the driver (power of 2, <= max_size)
 * @param[in] features negotiated feature bits (EVENT_IDX, INDIRECT_DESC, IN_ORDER matter here)
 * @param[in] desc     guest address of the descriptor table
 * @param[in] driver   guest address of the driver area (split: avail ring)
 * @param[in] device   guest address of the device area (split: used ring)
 * @retval 0 success; last_avail_idx and the used index start at the used ring's current idx
 * @retval -EINVAL size invalid or features ask for an unsupported ring layout (RING_PACKED)
 * @retval -EFAULT a ring area is not inside one region of @p mem or is misaligned
 *                 (the queue is then broken with #VIO_VIOL_RING_ADDRESS)
 */
VIO_API int vio_queue_setup(struct vio_queue *q, const struct vio_mem *mem, uint16_t size,
                            uint64_t features, uint64_t desc, uint64_t driver, uint64_t device);

/** @brief Stop the queue and forget its rings and broken state (device reset). */
VIO_API void vio_queue_reset(struct vio_queue *q);

/** @brief True between a successful vio_queue_setup() and vio_queue_reset(), unless broken. */
VIO_API bool vio_queue_ready(const struct vio_queue *q);

/**
 * @brief Re-translate the ring addresses against a (changed) memory map, keeping the indices.
 * @retval 0 success
 * @retval -EFAULT a ring area is no longer mapped (queue becomes broken)
 */
VIO_API int vio_queue_remap(struct vio_queue *q, const struct vio_mem *mem);

/**
 * @brief Take the next available chain.
 *
 * @param[in]  q       the queue
 * @param[out] chain   the chain's head, counts and lengths
 * @param[out] iov     host iovecs: readable part first, then writable part
 * @param[in]  iov_cap capacity of @p iov (a buffer spanning regions takes several entries)
 * @retval 0 a chain was taken
 * @retval -EAGAIN no chain available
 * @retval -ENOBUFS the chain needs more than @p iov_cap iovecs; nothing was consumed
 * @retval -EPROTO the driver broke a ring rule: the queue is now broken
 * @retval -EFAULT a descriptor points outside guest memory: the queue is now broken
 * @retval -EIO the queue is broken (or not set up)
 */
VIO_API int vio_queue_pop(struct vio_queue *q, struct vio_chain *chain, struct iovec *iov,
                          unsigned iov_cap);

/**
 * @brief Take up to @p max available chains in one call (cheaper per chain than
 * vio_queue_pop() in a loop).
 *
 * Chain k's iovecs follow chain k-1's in @p iov: chain 0 starts at iov[0], chain k at the
 * sum of the earlier chains' n_out + n_in.
 * @param[in]  q       the queue
 * @param[out] chains  array of at least @p max entries
 * @param[in]  max     most chains to take
 * @param[out] iov     iovecs for all chains
 * @param[in]  iov_cap capacity of @p iov
 * @return the number of chains taken (> 0)
 * @retval -EAGAIN nothing available
 * @retval -ENOBUFS the first chain does not fit in @p iov (nothing consumed)
 * @retval -EPROTO / -EFAULT the driver broke a rule before anything was taken (now broken;
 *                 chains taken before a violation are returned and the next call reports -EIO)
 * @retval -EIO the queue is broken (or not set up)
 * @retval -EINVAL q NULL, or chains/iov NULL with max > 0
 */
VIO_API int vio_queue_pop_burst(struct vio_queue *q, struct vio_chain *chains, unsigned max,
                                struct iovec *iov, unsigned iov_cap);

/**
 * @brief Give back the @p n most recently popped chains unconsumed (they will be popped again).
 * @retval 0 success
 * @retval -EINVAL n larger than the chains popped since the last push of the same slots
 */
VIO_API int vio_queue_rewind(struct vio_queue *q, uint16_t n);

/**
 * @brief Mark one chain used.
 * @param[in] q    the queue
 * @param[in] head chain head from vio_queue_pop()
 * @param[in] len  bytes the device wrote into the writable part
 * @retval 0 success
 * @retval -EINVAL head >= queue size
 * @retval -EIO queue broken / not set up
 */
VIO_API int vio_queue_push(struct vio_queue *q, uint16_t head, uint32_t len);

/**
 * @brief Mark @p n chains used with one used-index update.
 * @retval 0 success
 * @retval -EINVAL an id >= queue size, or n > queue size
 * @retval -EIO queue broken / not set up
 */
VIO_API int vio_queue_push_batch(struct vio_queue *q, const struct vio_used_elem *elems, unsigned n);

/**
 * @brief VIRTIO_F_IN_ORDER: complete @p count chains, popped in order and the first count-1
 * fully used, with a single used entry naming the last one.
 * @retval 0 success
 * @retval -ENOTSUP IN_ORDER was not negotiated
 * @retval -EINVAL count 0 or > queue size, head >= size
 * @retval -EIO queue broken / not set up
 */
VIO_API int vio_queue_push_in_order(struct vio_queue *q, uint16_t last_head, uint32_t last_len,
                                    uint16_t count);

/**
 * @brief Whether the driver wants an interrupt for what was pushed since the last call.
 *
 * Honors VRING_AVAIL_F_NO_INTERRUPT, or the used_event index with EVENT_IDX.
 * Call after pushing; if it returns true, signal the driver (call eventfd, irq).
 */
VIO_API bool vio_queue_needs_notify(struct vio_queue *q);

/**
 * @brief Ask the driver for kicks again.
 * @return true if chains became available meanwhile (process them before sleeping)
 */
VIO_API bool vio_queue_enable_notify(struct vio_queue *q);

/** @brief Tell the driver kicks are not needed (the device is polling). */
VIO_API void vio_queue_disable_notify(struct vio_queue *q);

/** @brief True when at least one chain is available. */
VIO_API bool vio_queue_has_avail(struct vio_queue *q);

/** @brief The device's next avail index (for stop/restart and vhost GET_VRING_BASE). */
VIO_API uint16_t vio_queue_get_last_avail(const struct vio_queue *q);

/**
 * @brief Set the next avail index (vhost SET_VRING_BASE). Also resets the used shadow to the
 * used ring's current idx.
 * @retval 0 success, -EIO not set up or broken
 */
VIO_API int vio_queue_set_last_avail(struct vio_queue *q, uint16_t idx);

/** @brief The device's used index (what it last published). */
VIO_API uint16_t vio_queue_get_used_idx(const struct vio_queue *q);

/**
 * @brief Indices of a queue, the device's own and those in the shared rings, for diagnosing a
 * ring that stopped moving (which side waits for which). Filled by vio_queue_get_ring_state().
 */
struct vio_queue_ring_state {
    uint16_t size;           /**< queue size (0: not set up; the rest is then 0) */
    bool event_idx;          /**< VIRTIO_F_EVENT_IDX is in use */
    bool broken;             /**< the driver broke a rule */
    /* the device's bookkeeping */
    uint16_t last_avail;     /**< next avail slot the device reads */
    uint16_t shadow_avail;   /**< avail->idx as the device last read it */
    uint16_t used_idx;       /**< used idx the device has written */
    uint16_t signalled_used; /**< used idx at the last vio_queue_needs_notify() decision */
    bool signalled_used_valid; /**< false: the next decision notifies whatever used_event says */
    uint32_t inflight;       /**< chains popped and not yet pushed */
    /* the shared rings as they are now */
    uint16_t avail_idx;      /**< avail->idx, the driver's */
    uint16_t avail_flags;    /**< avail->flags (VRING_AVAIL_F_NO_INTERRUPT) */
    uint16_t used_event;     /**< the driver's used_event (meaningful with event_idx) */
    uint16_t ring_used_idx;  /**< used->idx as the driver sees it */
    uint16_t used_flags;     /**< used->flags (VRING_USED_F_NO_NOTIFY) */
    uint16_t avail_event;    /**< the device's avail_event (meaningful with event_idx) */
};

/**
 * @brief Snapshot of @p q's indices (struct vio_queue_ring_state). The shared fields are read
 * once each without ordering; the device's own are those of the thread that runs the queue, so
 * call it from that thread or while it is paused. Reads nothing but the rings; changes nothing.
 * @retval 0 success (size 0 and every field 0 if the queue is not set up)
 * @retval -EINVAL q or out NULL
 */
VIO_API int vio_queue_get_ring_state(const struct vio_queue *q, struct vio_queue_ring_state *out);

/** @brief Queue size set up, 0 if not set up. */
VIO_API uint16_t vio_queue_size(const struct vio_queue *q);

/** @brief Queue index from the config. */
VIO_API uint16_t vio_queue_index(const struct vio_queue *q);

/** @brief True once the driver broke a rule (until reset). */
VIO_API bool vio_queue_is_broken(const struct vio_queue *q);

/** @brief Which rule broke the queue (#VIO_VIOL_NONE if not broken). */
VIO_API enum vio_violation vio_queue_violation(const struct vio_queue *q);

/**
 * @brief Bytes of shared memory one queue of size @p size needs for inflight tracking
 * (the vhost-user INFLIGHT_SHMFD split-ring layout: a 16-byte header plus 16 bytes per
 * descriptor).
 */
VIO_API size_t vio_queue_inflight_size(uint16_t size);

/**
 * @brief Record in-flight chains in @p region so a restarted device can resume exactly.
 *
 * Call after vio_queue_setup() (and vio_queue_set_last_avail() if used). A region whose
 * version field is 0 is fresh and gets initialized. Otherwise it is the record of a previous
 * instance: a completion that was published but not yet cleared is cleared, the chains still
 * marked in flight are popped again first, in the order they were first popped, and the avail
 * index continues after them (used idx + chains in flight). Each pop then marks its head,
 * each push clears it. vio_queue_push_in_order() is refused (-ENOTSUP) while tracking,
 * vio_queue_push_batch() completes element by element. Pass NULL to stop tracking.
 *
 * The region is shared with the frontend: its contents are treated as untrusted (resubmitted
 * chains are walked and validated like any other).
 * @return the number of chains that will be resubmitted (>= 0)
 * @retval -EINVAL queue not set up, @p len too small, @p region not 8-byte aligned, or the
 *                 region's desc_num differs from the queue size
 * @retval -EIO the queue is broken
 */
VIO_API int vio_queue_set_inflight(struct vio_queue *q, void *region, size_t len);

/**
 * @brief Log every device write in a dirty-page bitmap (live migration, vhost
 * VHOST_F_LOG_ALL): one bit per 4 KiB guest page, set atomically. The used ring writes
 * are logged, and at each completion the first @c len bytes of the chain's writable part
 * (the bytes the device says it wrote). While logging, vio_queue_push_in_order() is refused
 * (-ENOTSUP) and vio_queue_push_batch() completes element by element.
 * @param[in] q          the queue
 * @param[in] bitmap     the log (shared with the frontend), or NULL to stop logging
 * @param[in] len        bitmap size in bytes
 * @param[in] used_gpa   guest-physical address of the used ring, as the log knows it
 * @retval 0 success, -EINVAL queue not set up
 */
VIO_API int vio_queue_set_dirty_log(struct vio_queue *q, void *bitmap, uint64_t len,
                                    uint64_t used_gpa);

/**
 * @brief Mark [gpa, gpa+len) dirty in a 4 KiB-page bitmap of @p bitmap_len bytes.
 * Pages beyond the bitmap are ignored. Thread-safe (atomic OR); never allocates.
 */
VIO_API void vio_dirty_log_mark(void *bitmap, uint64_t bitmap_len, uint64_t gpa, uint64_t len);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Driver side */
/** @{ */

/** Opaque driver-side queue. */
struct vio_drvq;

/** One buffer segment in guest-address terms (what goes into a descriptor). */
struct vio_sg {
    uint64_t addr; /**< guest address */
    uint32_t len;  /**< length in bytes */
};

/** Creation parameters of a driver-side queue. */
struct vio_drvq_config {
    uint32_t struct_size;     /**< sizeof(struct vio_drvq_config) */
    uint16_t size;            /**< queue size (power of 2, <= 32768) */
    uint16_t index;           /**< queue number, for log messages */
    const char *name;         /**< optional name (copied) */
    uint64_t features;        /**< negotiated features (EVENT_IDX, INDIRECT_DESC, IN_ORDER) */
    const struct vio_mem *mem; /**< guest memory holding the ring (borrowed) */
    uint64_t desc;            /**< guest address of the descriptor table */
    uint64_t driver;          /**< guest address of the driver area (avail ring) */
    uint64_t device;          /**< guest address of the device area (used ring) */
    uint64_t indirect_pool;   /**< guest address of size*indirect_max*16 bytes for indirect tables; 0 = none */
    uint16_t indirect_max;    /**< descriptors per indirect table (when indirect_pool != 0) */
    vio_log_fn log;           /**< optional log callback */
    void *log_opaque;         /**< passed to @ref log */
};

/**
 * @brief Create a driver-side queue and initialize its ring memory (indices and flags zeroed).
 * @retval 0 success
 * @retval -EINVAL bad size / features / struct_size
 * @retval -EFAULT ring areas or indirect pool not inside @p mem
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_drvq_new(const struct vio_drvq_config *cfg, struct vio_drvq **out);

/** @brief Destroy a driver-side queue. NULL is a no-op. */
VIO_API void vio_drvq_free(struct vio_drvq *q);

/**
 * @brief Expose one buffer: sg[0 .. n_out) device-readable, then sg[n_out .. n_out+n_in) writable.
 *
 * Uses an indirect table when negotiated, a pool was given, and the buffer has more than one
 * segment. Not visible to the device until vio_drvq_kick_prepare().
 * @param[in] q     the queue
 * @param[in] sg    segments, readable ones first (guest addresses; copied into the ring)
 * @param[in] n_out number of device-readable segments
 * @param[in] n_in  number of device-writable segments after them
 * @param[in] token caller pointer returned by vio_drvq_get_used(); must not be NULL
 * @retval 0 success
 * @retval -ENOSPC not enough free descriptors
 * @retval -EINVAL no segments, token NULL, a zero-length segment or too many segments
 * @retval -EIO queue broken
 */
VIO_API int vio_drvq_add(struct vio_drvq *q, const struct vio_sg *sg, unsigned n_out, unsigned n_in,
                         void *token);

/**
 * @brief Expose up to @p n single-segment buffers in one call (cheaper per buffer than
 * vio_drvq_add() in a loop): buffer k is @p sg[k], device-writable when @p writable, with
 * token @p tokens[k]. Not visible to the device until vio_drvq_kick_prepare().
 * @return the number added (fewer than @p n when descriptors run out)
 * @retval -ENOSPC no descriptor free (nothing added)
 * @retval -EINVAL q NULL, sg/tokens NULL with n > 0, a zero-length segment or a NULL token
 *                 (checked before anything is added)
 * @retval -EIO queue broken
 */
VIO_API int vio_drvq_add_burst(struct vio_drvq *q, const struct vio_sg *sg, unsigned n,
                               bool writable, void *const *tokens);

/**
 * @brief Publish the buffers added since the last call and say whether the device wants a kick.
 * @return true if the caller should notify the device
 */
VIO_API bool vio_drvq_kick_prepare(struct vio_drvq *q);

/**
 * @brief Collect one used buffer.
 * @param[in]  q     the queue
 * @param[out] token the token given to vio_drvq_add()
 * @param[out] len   bytes the device wrote (for IN_ORDER batches, the skipped buffers report
 *                   their whole writable length)
 * @retval 0 success
 * @retval -EAGAIN nothing used yet
 * @retval -EPROTO the device broke a ring rule: the queue is now broken
 * @retval -EIO queue broken
 */
VIO_API int vio_drvq_get_used(struct vio_drvq *q, void **token, uint32_t *len);

/**
 * @brief Collect up to @p max used buffers in one call (cheaper per buffer than
 * vio_drvq_get_used() in a loop).
 * @param[in]  q      the queue
 * @param[out] tokens array of at least @p max entries
 * @param[out] lens   optional array of at least @p max entries (NULL: not wanted)
 * @param[in]  max    most buffers to collect
 * @return the number collected (0 when none is used yet)
 * @retval -EPROTO the device broke a ring rule before anything was collected (now broken;
 *                 when some buffers were collected first they are returned and the next
 *                 call reports -EIO)
 * @retval -EIO queue broken
 * @retval -EINVAL q NULL, or tokens NULL with max > 0
 */
VIO_API int vio_drvq_get_used_burst(struct vio_drvq *q, void **tokens, uint32_t *lens,
                                    unsigned max);

/**
 * @brief Ask for used-buffer notifications again.
 * @return true if used buffers arrived meanwhile (collect them before sleeping)
 */
VIO_API bool vio_drvq_enable_cb(struct vio_drvq *q);

/**
 * @brief Ask for a used-buffer notification once about 3/4 of the buffers in flight are used
 * (with EVENT_IDX: used_event set that far ahead, as Linux's virtqueue_enable_cb_delayed
 * does for a full transmit queue; without it, the same as vio_drvq_enable_cb()).
 * @return true if that many were used meanwhile, or an in-order batch is still being
 *         collected (collect them before sleeping)
 */
VIO_API bool vio_drvq_enable_cb_delayed(struct vio_drvq *q);

/** @brief Tell the device interrupts are not needed. */
VIO_API void vio_drvq_disable_cb(struct vio_drvq *q);

/**
 * @brief After a device reset: take back one buffer that was never used.
 * @retval 0 *token set
 * @retval -EAGAIN no buffers left
 */
VIO_API int vio_drvq_detach_unused(struct vio_drvq *q, void **token);

/** @brief Free descriptors left. */
VIO_API unsigned vio_drvq_num_free(const struct vio_drvq *q);

/** @brief True once the device broke a rule. */
VIO_API bool vio_drvq_is_broken(const struct vio_drvq *q);

/** @brief Which rule broke the queue. */
VIO_API enum vio_violation vio_drvq_violation(const struct vio_drvq *q);

/** @} */

/**
 * @brief Split-ring layout helper: offsets of the three parts in one contiguous block.
 * @param[in]  size  queue size
 * @param[in]  align alignment of the used ring (4096 for legacy, 4 suffices for virtio 1)
 * @param[out] driver_off offset of the avail ring from the descriptor table
 * @param[out] device_off offset of the used ring from the descriptor table
 * @return total bytes, including the event-idx fields
 */
VIO_API size_t vio_split_ring_layout(uint16_t size, size_t align, size_t *driver_off,
                                     size_t *device_off);

/** @brief The descriptor direction the queue was created with (vio_queue_config::dir);
 *  #VIO_QUEUE_DIR_ANY for NULL. Any thread (it never changes). */
VIO_API enum vio_queue_dir vio_queue_direction(const struct vio_queue *q);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
