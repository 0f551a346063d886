/* SPDX-License-Identifier: MIT */
/**
 * @file driver.h
 * @brief The driver seat of a transport: a small generic interface to a virtio device
 * (modelled on Linux's virtio_config_ops) and its virtio-PCI and virtio-MMIO implementations.
 *
 * @defgroup driver Generic driver interface (driver seat of PCI / MMIO)
 * @brief Features, status, device configuration, queue setup, notification and interrupt
 * acknowledgement of one virtio device, whatever carries it.
 *
 * A driver helper (virtio/net_driver.h) talks to a device only through a
 * `struct vio_driver`: a `const` ops table plus an opaque pointer. Optional ops may be NULL;
 * their wrapper returns -ENOTSUP. Two implementations are built in:
 *
 * - **virtio-PCI modern** (vio_pci_driver_new()): walks the PCI capability list of the
 *   function's configuration space (common, notify, ISR, device configuration and MSI-X
 *   capabilities), sizes the BARs, assigns unassigned memory BARs from a window the
 *   application names, enables memory decoding and bus mastering, and then drives the
 *   common configuration registers. Legacy (transitional I/O BAR) devices are not driven.
 * - **virtio-MMIO** (vio_mmio_driver_new()): probes magic, version and device ID of one
 *   register window and drives the version 2 registers, or the legacy version 1 ones
 *   (GuestPageSize / QueueAlign / QueuePFN; the generic interface then carries
 *   #VIO_DRIVER_LEGACY).
 *
 * Neither touches hardware directly: every access goes through accessors the application
 * supplies (qtest commands, VFIO region reads, an mmap of a BAR, a KVM-run guest's own MMIO).
 * The library never maps anything itself.
 *
 * Interrupts: the application owns the interrupt source (an INTx line, an eventfd, an
 * MSI-X message it polls in memory). When it fires, the application calls
 * vio_driver_ack_interrupt(), which reads (PCI ISR, read-to-clear) or reads and acknowledges
 * (MMIO InterruptStatus / InterruptACK) the cause. With MSI-X the cause is the vector itself
 * and the ISR is not read.
 *
 * The device is untrusted: everything read from it (capability list, BAR sizes, register
 * values, configuration space) is bounds-checked before use, and a device that misbehaves
 * makes the call fail with an errno; the library never loops unboundedly on it and never
 * accesses outside the windows the capabilities name.
 *
 * Threading: calls on one driver are serialized by the caller, with one exception:
 * vio_driver_notify() may be called from any thread (one per queue, say) concurrently with
 * other vio_driver_notify() calls, once the queue is set up and until the next reset or
 * queue setup. Accessors are called from the calling thread.
 * @{
 */
#ifndef VIO_DRIVER_H
#define VIO_DRIVER_H

#include <errno.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** "No MSI-X vector" (the spec's VIRTIO_MSI_NO_VECTOR). */
#define VIO_DRIVER_NO_VECTOR 0xffffu

/** Interrupt causes returned by vio_driver_ack_interrupt() (the spec's ISR bits). */
enum vio_driver_int {
    VIO_DRIVER_INT_VRING = 1u,  /**< a queue has used buffers */
    VIO_DRIVER_INT_CONFIG = 2u  /**< the device configuration changed */
};

/** Facts about a transport (struct vio_driver_ops::flags). */
enum vio_driver_flags {
    /** the device is a legacy (pre-1.0) one: no VERSION_1, no FEATURES_OK, 32 feature bits,
     *  no configuration generation, and the ring layout is the legacy one (descriptors
     *  page-aligned, avail right after them, used at a power-of-2 alignment) */
    VIO_DRIVER_LEGACY = 1u
};

/** Where one queue lives in the device's view of memory (bus/guest addresses). */
struct vio_driver_queue {
    uint16_t size;    /**< queue size (power of 2, <= the device's maximum) */
    uint64_t desc;    /**< descriptor table */
    uint64_t driver;  /**< driver area (avail ring) */
    uint64_t device;  /**< device area (used ring) */
};

/**
 * Operations of a driver-seat transport. Every op takes the implementation's opaque pointer;
 * every op but the pure queries returns 0 / a count or a negative errno. NULL = absent.
 */
struct vio_driver_ops {
    /** #vio_driver_flags of this transport (a constant of the ops table) */
    unsigned flags;
    /** the 64 device feature bits */
    int (*get_features)(void *opaque, uint64_t *features);
    /** write the driver feature bits (before FEATURES_OK) */
    int (*set_features)(void *opaque, uint64_t features);
    /** read the device status byte */
    int (*get_status)(void *opaque, uint8_t *status);
    /** write the device status byte (never 0: that is @ref reset) */
    int (*set_status)(void *opaque, uint8_t status);
    /** reset the device and wait until it reads back 0 */
    int (*reset)(void *opaque);
    /** read @p len bytes of device configuration at @p off */
    int (*config_read)(void *opaque, unsigned off, void *buf, unsigned len);
    /** write @p len bytes of device configuration at @p off */
    int (*config_write)(void *opaque, unsigned off, const void *buf, unsigned len);
    /** the configuration generation counter */
    int (*config_generation)(void *opaque, uint32_t *gen);
    /** number of queues the device has (>= 0) */
    int (*num_queues)(void *opaque);
    /** largest size of queue @p idx (>= 0; 0 = the queue does not exist) */
    int (*queue_max_size)(void *opaque, unsigned idx);
    /** tell the device size and ring addresses of queue @p idx (not enabled yet) */
    int (*queue_setup)(void *opaque, unsigned idx, const struct vio_driver_queue *q);
    /** enable queue @p idx (after queue_setup) */
    int (*queue_enable)(void *opaque, unsigned idx);
    /** notify the device of new buffers in queue @p idx */
    int (*notify)(void *opaque, unsigned idx);
    /** read (and acknowledge) the interrupt cause: #vio_driver_int bits (>= 0) */
    int (*ack_interrupt)(void *opaque);
    /** route configuration interrupts to MSI-X vector @p vec (or VIO_DRIVER_NO_VECTOR) */
    int (*set_config_vector)(void *opaque, uint16_t vec);
    /** route queue @p idx's interrupts to MSI-X vector @p vec (or VIO_DRIVER_NO_VECTOR) */
    int (*set_queue_vector)(void *opaque, unsigned idx, uint16_t vec);
};

/** A driver-seat transport: an ops table and its object (a value, copied freely). */
struct vio_driver {
    const struct vio_driver_ops *ops; /**< the implementation */
    void *opaque;                     /**< passed to every op */
};

/** @cond VIO_INTERNAL */
#define VIO_DRV_CHECK(d, op) ((!(d) || !(d)->ops) ? -EINVAL : !(d)->ops->op ? -ENOTSUP : 0)
/** @endcond */

/**
 * @brief Read the device feature bits.
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 * @retval other a transport error (-EIO from an accessor)
 */
static inline int vio_driver_get_features(const struct vio_driver *d, uint64_t *features)
{
    int e = VIO_DRV_CHECK(d, get_features);
    return e ? e : d->ops->get_features(d->opaque, features);
}

/**
 * @brief Write the driver feature bits (before FEATURES_OK).
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_set_features(const struct vio_driver *d, uint64_t features)
{
    int e = VIO_DRV_CHECK(d, set_features);
    return e ? e : d->ops->set_features(d->opaque, features);
}

/**
 * @brief Read the device status byte.
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_get_status(const struct vio_driver *d, uint8_t *status)
{
    int e = VIO_DRV_CHECK(d, get_status);
    return e ? e : d->ops->get_status(d->opaque, status);
}

/**
 * @brief Write the device status byte (bits are only added; 0 is vio_driver_reset()).
 * @retval 0 success
 * @retval -EINVAL @p d NULL, or @p status 0
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_set_status(const struct vio_driver *d, uint8_t status)
{
    int e = VIO_DRV_CHECK(d, set_status);
    return e ? e : d->ops->set_status(d->opaque, status);
}

/**
 * @brief Reset the device (write status 0) and wait, bounded, until the status reads 0.
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 * @retval -ETIMEDOUT the device never read back 0
 */
static inline int vio_driver_reset(const struct vio_driver *d)
{
    int e = VIO_DRV_CHECK(d, reset);
    return e ? e : d->ops->reset(d->opaque);
}

/**
 * @brief Read device configuration bytes [@p off, @p off + @p len), with naturally aligned
 * accesses of at most 4 bytes (the transports' access-size rules). Not atomic: see
 * vio_driver_config_read_stable().
 * @retval 0 success
 * @retval -EINVAL @p d or @p buf NULL
 * @retval -ERANGE the range is outside the device configuration window
 * @retval -ENOTSUP the transport lacks the op, or the device has no configuration
 */
static inline int vio_driver_config_read(const struct vio_driver *d, unsigned off, void *buf,
                                         unsigned len)
{
    int e = VIO_DRV_CHECK(d, config_read);
    return e ? e : d->ops->config_read(d->opaque, off, buf, len);
}

/**
 * @brief Write device configuration bytes (same access rules as vio_driver_config_read()).
 * @retval 0 success
 * @retval -EINVAL @p d or @p buf NULL
 * @retval -ERANGE the range is outside the device configuration window
 * @retval -ENOTSUP the transport lacks the op, or the device has no configuration
 */
static inline int vio_driver_config_write(const struct vio_driver *d, unsigned off,
                                          const void *buf, unsigned len)
{
    int e = VIO_DRV_CHECK(d, config_write);
    return e ? e : d->ops->config_write(d->opaque, off, buf, len);
}

/**
 * @brief Read the configuration generation counter.
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_config_generation(const struct vio_driver *d, uint32_t *gen)
{
    int e = VIO_DRV_CHECK(d, config_generation);
    return e ? e : d->ops->config_generation(d->opaque, gen);
}

/**
 * @brief Number of queues of the device.
 * @return the count (>= 0)
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_num_queues(const struct vio_driver *d)
{
    int e = VIO_DRV_CHECK(d, num_queues);
    return e ? e : d->ops->num_queues(d->opaque);
}

/**
 * @brief The largest size queue @p idx accepts (0 when it does not exist).
 * @retval -EINVAL @p d NULL
 * @retval -ERANGE @p idx beyond the device's queues
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_queue_max_size(const struct vio_driver *d, unsigned idx)
{
    int e = VIO_DRV_CHECK(d, queue_max_size);
    return e ? e : d->ops->queue_max_size(d->opaque, idx);
}

/**
 * @brief Give the device the size and ring addresses of queue @p idx (before enabling it).
 * @retval 0 success
 * @retval -EINVAL @p d or @p q NULL, size 0 or not a power of 2, a ring misaligned
 *                 (descriptors 16, avail 2, used 4 bytes)
 * @retval -ERANGE @p idx beyond the device's queues, or the size above its maximum
 * @retval -EBUSY the queue is already enabled (reset first)
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_queue_setup(const struct vio_driver *d, unsigned idx,
                                         const struct vio_driver_queue *q)
{
    int e = VIO_DRV_CHECK(d, queue_setup);
    return e ? e : d->ops->queue_setup(d->opaque, idx, q);
}

/**
 * @brief Enable queue @p idx.
 * @retval 0 success
 * @retval -EINVAL @p d NULL, or the queue was not set up
 * @retval -ERANGE @p idx beyond the device's queues
 * @retval -EPROTO the device's notify offset for the queue lies outside its notify window
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_queue_enable(const struct vio_driver *d, unsigned idx)
{
    int e = VIO_DRV_CHECK(d, queue_enable);
    return e ? e : d->ops->queue_enable(d->opaque, idx);
}

/**
 * @brief Notify (kick) queue @p idx. May run concurrently with other notify calls.
 * @retval 0 success
 * @retval -EINVAL @p d NULL, or the queue is not enabled
 * @retval -ERANGE @p idx beyond the device's queues
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_notify(const struct vio_driver *d, unsigned idx)
{
    int e = VIO_DRV_CHECK(d, notify);
    return e ? e : d->ops->notify(d->opaque, idx);
}

/**
 * @brief Read and acknowledge the interrupt cause (PCI: ISR, read-to-clear; MMIO:
 * InterruptStatus then InterruptACK).
 * @return #vio_driver_int bits (>= 0; 0 = not this device's interrupt)
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport lacks the op
 */
static inline int vio_driver_ack_interrupt(const struct vio_driver *d)
{
    int e = VIO_DRV_CHECK(d, ack_interrupt);
    return e ? e : d->ops->ack_interrupt(d->opaque);
}

/**
 * @brief Route configuration-change interrupts to MSI-X vector @p vec.
 * @retval 0 success (the device read back @p vec)
 * @retval -ENOSPC the device refused the vector (read back VIO_DRIVER_NO_VECTOR)
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport has no MSI-X (MMIO, or a PCI function without it)
 */
static inline int vio_driver_set_config_vector(const struct vio_driver *d, uint16_t vec)
{
    int e = VIO_DRV_CHECK(d, set_config_vector);
    return e ? e : d->ops->set_config_vector(d->opaque, vec);
}

/**
 * @brief Route queue @p idx's used-buffer interrupts to MSI-X vector @p vec.
 * @retval 0 success (the device read back @p vec)
 * @retval -ENOSPC the device refused the vector (read back VIO_DRIVER_NO_VECTOR)
 * @retval -ERANGE @p idx beyond the device's queues
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the transport has no MSI-X
 */
static inline int vio_driver_set_queue_vector(const struct vio_driver *d, unsigned idx,
                                              uint16_t vec)
{
    int e = VIO_DRV_CHECK(d, set_queue_vector);
    return e ? e : d->ops->set_queue_vector(d->opaque, idx, vec);
}

/**
 * @brief Read device configuration consistently: retries (at most 16 times) while the
 * generation counter changes across the read (spec 2.5.1). Without a generation op it is a
 * plain vio_driver_config_read().
 * @retval 0 success
 * @retval -EAGAIN the generation kept changing
 * @retval other as vio_driver_config_read()
 */
VIO_API int vio_driver_config_read_stable(const struct vio_driver *d, unsigned off, void *buf,
                                          unsigned len);

/**
 * @brief The first half of device initialisation (spec 3.1.1): reset, ACKNOWLEDGE, DRIVER,
 * read the device features, write (device & @p wanted), set FEATURES_OK and check it stuck.
 *
 * VIRTIO_F_VERSION_1 (bit 32) must be offered and is always taken, except on a
 * #VIO_DRIVER_LEGACY transport: there the device's 32 bits & @p wanted are written and
 * there is no FEATURES_OK step (the legacy sequence). On failure the status is left with FAILED set when the device was reached.
 * After it the caller sets the queues up and calls vio_driver_set_status() with DRIVER_OK.
 * @param[in]  d      the driver
 * @param[in]  wanted feature bits the caller can use
 * @param[out] out    optional: the negotiated bits
 * @retval 0 success
 * @retval -EINVAL @p d NULL
 * @retval -ENOTSUP the device does not offer VERSION_1
 * @retval -EPROTO the device cleared FEATURES_OK (refused the subset) or set NEEDS_RESET
 * @retval other a transport error
 */
VIO_API int vio_driver_negotiate(const struct vio_driver *d, uint64_t wanted, uint64_t *out);

/* ------------------------------------------------------------------------ */
/** @name virtio-PCI modern, driver seat */
/** @{ */

/**
 * Accessors a PCI driver runs on (the application's view of one PCI function).
 * Every accessor returns 0 or a negative errno (passed on to the caller). Sizes are 1, 2, 4
 * (configuration space) and 1, 2, 4 or 8 (BARs); values are host-endian (the accessor turns
 * the bus's little-endian into numbers, as a CPU's MMIO load does).
 */
struct vio_pci_driver_io {
    /** read @p size bytes at offset @p off (< 256) of the function's configuration space */
    int (*cfg_read)(void *opaque, unsigned off, unsigned size, uint32_t *val);
    /** write configuration space */
    int (*cfg_write)(void *opaque, unsigned off, unsigned size, uint32_t val);
    /** read @p size bytes at @p off into BAR @p bar, which the library mapped at bus address
     *  @p base (accessors with their own BAR mapping, VFIO say, may ignore @p base) */
    int (*bar_read)(void *opaque, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                    uint64_t *val);
    /** write a BAR (as @ref bar_read) */
    int (*bar_write)(void *opaque, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                     uint64_t val);
    /** optional, for legacy devices: read @p size (1, 2, 4) bytes at offset @p off of I/O BAR
     *  @p bar, whose port base is @p base (an x86 in instruction at port base + off). Without
     *  it (and @ref io_write) a device with only the legacy interface is refused (-ENOTSUP). */
    int (*io_read)(void *opaque, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                   uint64_t *val);
    /** optional: write an I/O BAR (as @ref io_read) */
    int (*io_write)(void *opaque, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                    uint64_t val);
};

/** Creation parameters of a PCI driver. */
struct vio_pci_driver_config {
    uint32_t struct_size;              /**< sizeof(struct vio_pci_driver_config) */
    const struct vio_pci_driver_io *io; /**< accessors (borrowed, outlive the driver) */
    void *io_opaque;                   /**< passed to every accessor */
    /** bus window for memory BARs that read back 0 (unassigned, as after reset with no
     *  firmware): assigned bottom-up, naturally aligned. 0 / 0 = leave BARs as they are and
     *  refuse an unassigned one that a capability needs (-ENXIO). */
    uint64_t bar_window;
    uint64_t bar_window_size;          /**< bytes of @ref bar_window */
    vio_log_fn log;                    /**< optional log callback */
    void *log_opaque;                  /**< passed to @ref log */
    /** I/O port window for a legacy device's I/O BAR that reads back 0 (as @ref bar_window);
     *  0 / 0 = refuse an unassigned one (-ENXIO). Optional: a caller whose struct_size ends
     *  before this field gets 0 / 0. */
    uint32_t io_window;
    uint32_t io_window_size;           /**< bytes of @ref io_window */
};

/** What the capability walk found (vio_pci_driver_info()). */
struct vio_pci_driver_info {
    uint16_t vendor_id;      /**< 0x1af4 */
    uint16_t device_id;      /**< 0x1040 + virtio device id (or a transitional 0x1000..0x103f) */
    uint16_t virtio_id;      /**< virtio device type (1 = net) */
    uint64_t bar_addr[6];    /**< bus address of each BAR (0: not a memory BAR / unused; for
                                  the I/O BAR of a legacy device: its port base) */
    uint64_t bar_size[6];    /**< size of each memory BAR (0: none; a legacy device's I/O BAR:
                                  its size) */
    uint32_t notify_off_multiplier; /**< from the notify capability */
    uint16_t msix_vectors;   /**< MSI-X table size (0: no MSI-X capability) */
    uint32_t device_cfg_len; /**< bytes of the device configuration window (0: none; legacy:
                                  what the I/O BAR holds after the registers with MSI-X on) */
};

/** Opaque virtio-PCI driver. */
struct vio_pci_driver;

/**
 * @brief Probe a virtio-PCI function: walk its capabilities, size (and where needed
 * assign) its BARs, enable memory decoding and bus mastering.
 *
 * A function without the modern common / notify capabilities that is a transitional one
 * (device ID 0x1000..0x103f, revision 0, an I/O BAR 0) is driven through its legacy
 * interface when the accessors have io_read / io_write: the driver's flags then carry
 * #VIO_DRIVER_LEGACY (32 feature bits, no FEATURES_OK, queues at the size QUEUE_NUM reports,
 * rings in the legacy layout with the used ring 4096-aligned, placed by QUEUE_PFN at
 * vio_driver_queue_enable()), I/O decoding is enabled, the number of queues is found by
 * selecting queues until QUEUE_NUM reads 0 (at most 1024), and the MSI-X vector registers
 * exist only while MSI-X is enabled (vio_pci_driver_msix_enable() first; the device
 * configuration moves from offset 20 to 24 then). A device that has the modern capabilities
 * is always driven through them.
 *
 * The device is not reset here (vio_driver_negotiate() does it).
 * @param[in]  cfg parameters (copied)
 * @param[out] out the driver (vio_pci_driver_free())
 * @retval 0 success
 * @retval -EINVAL cfg / io / out NULL, an accessor missing, struct_size too small
 * @retval -ENODEV vendor is not 0x1af4 or device id not a virtio one
 * @retval -ENOTSUP no modern common configuration and no usable legacy interface (not
 *                  transitional, no I/O BAR 0, or no io_read / io_write accessors)
 * @retval -EPROTO a hostile or broken capability list: a loop, a pointer into the header or
 *                 past 256 bytes, a capability longer than the space, a window beyond its
 *                 BAR, a too-short common/notify/ISR window, an odd notify multiplier, an
 *                 I/O BAR named by a capability, or a BAR that sizes to nonsense (a legacy
 *                 I/O BAR of fewer than 20 or more than 256 bytes)
 * @retval -ENXIO a needed BAR is unassigned and there is no (large enough) window (memory
 *                or, for a legacy device's I/O BAR, I/O)
 * @retval -ENOMEM allocation failed
 * @retval other an accessor's error
 */
VIO_API int vio_pci_driver_new(const struct vio_pci_driver_config *cfg,
                               struct vio_pci_driver **out);

/** @brief Destroy (the device is left as it is; reset it first if it must stop). NULL is a no-op. */
VIO_API void vio_pci_driver_free(struct vio_pci_driver *p);

/** @brief The generic interface of @p p (valid until vio_pci_driver_free()). */
VIO_API struct vio_driver vio_pci_driver_get(struct vio_pci_driver *p);

/**
 * @brief What the probe found.
 * @retval 0 success
 * @retval -EINVAL an argument NULL
 */
VIO_API int vio_pci_driver_info(const struct vio_pci_driver *p, struct vio_pci_driver_info *out);

/**
 * @brief Program MSI-X table entry @p vec (message address, data, mask bit).
 * @retval 0 success
 * @retval -ENOTSUP no MSI-X capability
 * @retval -ERANGE @p vec >= the table size
 * @retval -EINVAL @p p NULL
 */
VIO_API int vio_pci_driver_msix_set_entry(struct vio_pci_driver *p, uint16_t vec, uint64_t addr,
                                          uint32_t data, bool masked);

/**
 * @brief Enable or disable MSI-X in the function's MSI-X capability (function mask cleared).
 * @retval 0 success
 * @retval -ENOTSUP no MSI-X capability
 * @retval -EINVAL @p p NULL
 */
VIO_API int vio_pci_driver_msix_enable(struct vio_pci_driver *p, bool enable);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name virtio-MMIO, driver seat */
/** @{ */

/** Accessors an MMIO driver runs on: one register window (0x200 bytes at least). */
struct vio_mmio_driver_io {
    /** read @p size (1, 2, 4) bytes at offset @p off of the window */
    int (*read)(void *opaque, uint64_t off, unsigned size, uint32_t *val);
    /** write @p size bytes at offset @p off of the window */
    int (*write)(void *opaque, uint64_t off, unsigned size, uint32_t val);
};

/** Creation parameters of an MMIO driver. */
struct vio_mmio_driver_config {
    uint32_t struct_size;               /**< sizeof(struct vio_mmio_driver_config) */
    const struct vio_mmio_driver_io *io; /**< accessors (borrowed, outlive the driver) */
    void *io_opaque;                    /**< passed to every accessor */
    uint32_t window_size;               /**< bytes of the register window (0 = 0x200); the
                                             device configuration ends there */
    vio_log_fn log;                     /**< optional log callback */
    void *log_opaque;                   /**< passed to @ref log */
};

/** Opaque virtio-MMIO driver. */
struct vio_mmio_driver;

/**
 * @brief Probe one virtio-MMIO window: magic "virt", version, device ID.
 * @param[in]  cfg parameters (copied)
 * @param[out] out the driver (vio_mmio_driver_free())
 * @retval 0 success
 * @retval -EINVAL cfg / io / out NULL, an accessor missing, struct_size too small,
 *                 window_size below 0x100
 * @retval -ENODEV wrong magic, or device ID 0 (an empty transport slot)
 * @retval -ENOTSUP a version other than 1 (legacy) and 2
 * @retval -ENOMEM allocation failed
 * @retval other an accessor's error
 */
VIO_API int vio_mmio_driver_new(const struct vio_mmio_driver_config *cfg,
                                struct vio_mmio_driver **out);

/** @brief Destroy (the device is left as it is). NULL is a no-op. */
VIO_API void vio_mmio_driver_free(struct vio_mmio_driver *m);

/** @brief The generic interface of @p m (valid until vio_mmio_driver_free()). */
VIO_API struct vio_driver vio_mmio_driver_get(struct vio_mmio_driver *m);

/** @brief The virtio device ID the probe read (0 for NULL). */
VIO_API uint32_t vio_mmio_driver_device_id(const struct vio_mmio_driver *m);

/** @brief The register layout version the probe read: 1 (legacy) or 2 (0 for NULL). */
VIO_API uint32_t vio_mmio_driver_version(const struct vio_mmio_driver *m);

/** @} */

#ifdef __cplusplus
}
#endif
/** @} */
#endif
