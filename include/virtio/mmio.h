/* SPDX-License-Identifier: MIT */
/**
 * @file mmio.h
 * @brief virtio-MMIO register decoder (device side): what a VMM calls on every trapped access.
 *
 * @defgroup mmio virtio-MMIO device transport
 * @brief The virtio spec's "Virtio Over MMIO" register block in front of any struct vio_device.
 *
 * A VMM places the 0x200-byte register block (0x100 of registers, then the device config
 * window) at an address of its choice and forwards each trapped guest access to
 * vio_mmio_read() / vio_mmio_write() with the offset inside the block. The transport binds
 * to the device with vio_device_bind() (so the device must not be bound elsewhere), drives the
 * one status machine (struct vio_status) and turns status transitions into device events:
 * queues the driver enabled are created, set up on guest memory and started at DRIVER_OK;
 * they are stopped and the device is reset when the driver writes 0 to Status.
 *
 * Notifications the way KVM does them: vio_mmio_notify_info() gives the exact offset, width and
 * value a guest writes to kick a queue, so the VMM can bind an ioeventfd there and call
 * vio_mmio_queue_notify() (or let a device thread process the queue) when it fires; a trapped
 * QueueNotify write reaches the device just the same. Interrupts go through
 * vio_mmio_config::raise_irq / lower_irq, which the VMM binds to its interrupt line (an irqfd
 * with a resample fd, or a level-triggered GSI): raise is called every time InterruptStatus
 * gains a bit, lower when InterruptACK clears the last bit.
 *
 * Guest input: every offset, size and value passed to vio_mmio_read() / vio_mmio_write() is
 * guest controlled. Accesses that break a register rule (wrong width or alignment outside the
 * config window, reads of write-only registers, writes to read-only ones, an out-of-range
 * QueueSel, a queue size that is zero, not a power of two or above QueueNumMax, address or size
 * writes to a ready queue, feature writes after FEATURES_OK) are ignored and logged
 * (rate-limited). Enabling a queue whose rings are misaligned or not inside guest memory sets
 * DEVICE_NEEDS_RESET and raises a configuration interrupt: the driver has told the device to
 * use memory it cannot use, so only a reset recovers. The device never touches memory outside
 * the struct vio_mem it was given.
 *
 * Version 2 (the modern "virtio-mmio" layout) is the default. Legacy version 1 (GuestPageSize,
 * QueueAlign, QueuePFN; no FEATURES_OK required) is selected with
 * vio_mmio_config::legacy, as QEMU's `force-legacy` does.
 *
 * VIRTIO_F_NOTIFICATION_DATA: vio_mmio_config::notification_data.
 *
 * Not implemented yet: shared memory regions (SHMSel reads back and SHMLen reads as -1, "no
 * such region", as the spec asks for a device without any) and VIRTIO_F_RING_RESET /
 * QueueReset (masked out of the offer).
 *
 * Threading: vio_mmio_read(), vio_mmio_write() and the control calls run on one thread at a
 * time (the VMM's vCPU exit handler, serialised per device). vio_mmio_queue_notify() is the
 * data path of one queue. The interrupt hooks are called from whichever thread raised the
 * interrupt (a device thread may), so they must be thread-safe (an eventfd write is).
 * @{
 */
#ifndef VIO_MMIO_H
#define VIO_MMIO_H

#include "common.h"
#include "device.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of the register block including the device config window (0x100 + 0x100). */
#define VIO_MMIO_SIZE 0x200u

/** InterruptStatus bit: a queue has used buffers. */
#define VIO_MMIO_INT_VRING 1u
/** InterruptStatus bit: the configuration changed (or DEVICE_NEEDS_RESET was set). */
#define VIO_MMIO_INT_CONFIG 2u

/** Opaque transport object. */
struct vio_mmio;

/** Creation parameters. */
struct vio_mmio_config {
    uint32_t struct_size;       /**< sizeof(struct vio_mmio_config) */
    struct vio_device *dev;     /**< the device (borrowed; bound until vio_mmio_free()) */
    const struct vio_mem *mem;  /**< guest memory (borrowed; must outlive the transport) */
    uint32_t vendor_id;         /**< VendorID register; 0 selects 0x4f495621 ("!VIO") */
    bool legacy;                /**< present version 1 (legacy) instead of version 2 */
    vio_log_fn log;             /**< optional log callback (object "virtio-mmio") */
    void *log_opaque;           /**< passed to @ref log */
    /** optional: InterruptStatus gained @p bits (#VIO_MMIO_INT_VRING / #VIO_MMIO_INT_CONFIG);
     *  raise the interrupt line. Any thread. */
    void (*raise_irq)(void *opaque, uint32_t bits);
    /** optional: InterruptStatus is 0 again (the driver acknowledged): lower the line. Called on
     *  the thread that calls vio_mmio_write(). */
    void (*lower_irq)(void *opaque);
    void *irq_opaque;           /**< passed to the irq hooks */
    /** Offer VIRTIO_F_NOTIFICATION_DATA (bit 38; the transport implements it, the device never
     *  sees it). Once negotiated, QueueNotify carries the queue index in bits 0-15 and its
     *  next avail index (split; packed: offset and wrap counter) in bits 16-31 (4.2.2). An
     *  ioeventfd on QueueNotify then cannot use datamatch. Optional: a caller whose
     *  struct_size ends before this field does not offer it. */
    bool notification_data;
    /** optional: the data of a QueueNotify write with NOTIFICATION_DATA negotiated, before
     *  the queue is processed (on the thread that calls vio_mmio_write()) */
    void (*notify_data)(void *opaque, unsigned qidx, uint16_t next);
    /* ---- offload (added later; a caller whose struct_size ends before @ref mem_regions
     *      has none: every queue runs in the transport) ---- */
    /** optional: the guest memory as regions with shareable fds, for a device that runs its
     *  queues outside the transport (the offload device, vhost_dev.h). Same contract as
     *  vio_device_hooks::mem_regions: fill up to @p cap regions of @p out, return how many
     *  there are (may exceed @p cap) or a negative errno (-ENOTSUP: no shareable memory). The
     *  fds stay the VMM's. Called on the thread that starts queues (the vCPU exit
     *  handler). Only used when @ref queue_fds is set. */
    int (*mem_regions)(void *opaque, struct vio_device_mem_region *out, unsigned cap);
    /** optional: the eventfds of queue @p qidx, which the device is about to run elsewhere (a
     *  vhost-net or vhost-user back-end). When set, the device is bound with
     *  vio_device_hooks::queue_offload (and vio_device_hooks::mem_regions when
     *  @ref mem_regions is set too), so an offload device can claim its queues.
     *
     *  @p kick_fd: an eventfd the guest's notify writes reach: the VMM binds a KVM ioeventfd
     *  on the queue's notify address (vio_mmio_notify_info()) now. A notify that still traps (the
     *  ioeventfd not bound yet, or a VMM without ioeventfds), and vio_mmio_queue_notify() for the queue, are
     *  forwarded by writing 1 to it; the transport never processes a claimed queue itself.
     *  Required (a call that leaves it -1 fails the claim with -EINVAL).
     *
     *  @p call_fd: an eventfd that raises the queue's used-buffer interrupt. An eventfd the VMM watches and answers with vio_mmio_queue_interrupt() (InterruptStatus bit and the irq line).
     *  -1: the back-end signals nothing (it must poll, or the guest polls).
     *
     *  @p vector: always #VIO_PCI_NO_VECTOR (0xffff; MMIO has no vectors).
     *
     *  Called on the thread that starts queues (inside the device's queue_start, during a
     *  register write). Returns 0, or a negative errno: then the claim fails, the device's
     *  queue_start fails and the transport sets DEVICE_NEEDS_RESET as for any failed start.
     *  The fds stay the VMM's (borrowed) and must stay valid until the queue stops: a reset,
     *  a disabled queue, NEEDS_RESET or vio_mmio_free() end the claim (the device's queue_stop runs
     *  first). */
    int (*queue_fds)(void *opaque, unsigned qidx, uint16_t vector, int *kick_fd, int *call_fd);
    void *offload_opaque; /**< passed to @ref mem_regions and @ref queue_fds */
};

/**
 * @brief Create the transport and bind it to the device.
 * @param[in]  cfg creation parameters (copied)
 * @param[out] out the transport, owned by the caller (vio_mmio_free())
 * @retval 0 success
 * @retval -EINVAL cfg, out, dev or mem NULL, struct_size too small, the device has no queues,
 *                 or a version-2 transport for a device that does not offer VERSION_1
 * @retval -EBUSY the device is bound to another transport
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_mmio_new(const struct vio_mmio_config *cfg, struct vio_mmio **out);

/** @brief Stop the queues, reset and unbind the device, free. NULL is a no-op. Control path. */
VIO_API void vio_mmio_free(struct vio_mmio *m);

/**
 * @brief A trapped guest read.
 * @param[in]  m      the transport
 * @param[in]  offset byte offset inside the register block (guest controlled)
 * @param[in]  size   access width in bytes: 1, 2, 4 or 8 (guest controlled)
 * @param[out] value  what the guest reads (0 for an access the spec does not define)
 * @retval 0 a defined register or config read
 * @retval -EINVAL m or value NULL (nothing read)
 * @retval -EPROTO the access broke a rule (width, alignment, a write-only register, outside
 *                 the block or the config space): *value is 0 and the access was logged
 */
VIO_API int vio_mmio_read(struct vio_mmio *m, uint64_t offset, unsigned size, uint64_t *value);

/**
 * @brief A trapped guest write.
 * @param[in] m      the transport
 * @param[in] offset byte offset inside the register block (guest controlled)
 * @param[in] size   access width in bytes (guest controlled)
 * @param[in] value  the value written (guest controlled; the low @p size bytes count)
 * @retval 0 applied
 * @retval -EINVAL m NULL
 * @retval -EPROTO the write broke a rule and was ignored (logged), or it set NEEDS_RESET
 *                 (rings outside guest memory)
 * @retval -ENOTSUP a Status write asked for FEATURES_OK and the device refused the features
 *                  (FEATURES_OK stays clear, as the spec asks)
 */
VIO_API int vio_mmio_write(struct vio_mmio *m, uint64_t offset, unsigned size, uint64_t value);

/** Where a guest writes to notify a queue (for a KVM ioeventfd with datamatch). */
struct vio_mmio_notify_info {
    uint64_t offset; /**< offset inside the register block (QueueNotify) */
    uint32_t size;   /**< access width (4) */
    uint32_t value;  /**< the value written: the queue index */
};

/**
 * @brief The notify address (offset in the block), width and value of queue @p qidx.
 * @retval 0 success
 * @retval -EINVAL m or out NULL
 * @retval -ERANGE no such queue
 */
VIO_API int vio_mmio_notify_info(const struct vio_mmio *m, unsigned qidx,
                                 struct vio_mmio_notify_info *out);

/**
 * @brief The driver kicked queue @p qidx (an ioeventfd fired): process it. Data path.
 * @return >= 0 chains processed
 * @retval -EINVAL m NULL
 * @retval -ERANGE no such queue
 * @retval -EIO the queue is not running (not enabled, device not live, or broken)
 */
VIO_API int vio_mmio_queue_notify(struct vio_mmio *m, unsigned qidx);

/**
 * @brief Raise the used-buffer interrupt of queue @p qidx exactly as the device's notify_queue
 * hook would: InterruptStatus gains #VIO_MMIO_INT_VRING and vio_mmio_config::raise_irq is
 * called. For a VMM whose queue_fds handed out a call eventfd it watches itself. Any thread.
 * @param[in] m    the transport
 * @param[in] qidx queue index
 * @retval 0 raised
 * @retval -EINVAL m NULL
 * @retval -ENOENT no such queue (@p qidx at or above vio_device_num_queues())
 */
VIO_API int vio_mmio_queue_interrupt(struct vio_mmio *m, unsigned qidx);

/** @brief The status byte the driver reads back (0 for NULL). Control path. */
VIO_API uint8_t vio_mmio_status(const struct vio_mmio *m);

/** @brief Current InterruptStatus (0 for NULL). Any thread. */
VIO_API uint32_t vio_mmio_interrupt_status(const struct vio_mmio *m);

/**
 * @brief Device side: set DEVICE_NEEDS_RESET (stop the queues, raise a config interrupt).
 * Control path. No-op for NULL.
 */
VIO_API void vio_mmio_set_needs_reset(struct vio_mmio *m);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
