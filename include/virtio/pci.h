/* SPDX-License-Identifier: MIT */
/**
 * @file pci.h
 * @brief virtio-PCI modern device side: the configuration-space image and the BAR decoder a
 * VMM calls on every trapped access.
 *
 * @defgroup pci virtio-PCI device transport
 * @brief The virtio spec's "Virtio Over PCI Bus" (modern, non-transitional) in front of any
 * struct vio_device.
 *
 * The transport presents a PCI function 1af4:(0x1040 + device id), revision 1, with the class
 * the VMM asks for (network controller for a net device by default), subsystem 1af4:0x1100
 * unless configured, a capability list holding MSI-X (when vectors are configured) and the
 * five virtio vendor capabilities (common, notify with its multiplier, ISR, device when the
 * device has a config space, PCI cfg access), and one memory BAR holding the four windows.
 * The VMM chooses the BAR numbers and the offsets of every window (struct vio_pci_layout;
 * vio_pci_layout_default() fills in QEMU-like values).
 *
 * The VMM forwards configuration-space accesses to vio_pci_config_read() / _write() and
 * accesses inside its BARs to vio_pci_bar_read() / _write(). BAR placement (which guest
 * physical address a BAR sits at) is the guest's or firmware's choice, made through the BAR
 * registers of the image; the VMM reads it back with vio_pci_bar_address() to route traps.
 *
 * Interrupts: with MSI-X enabled by the guest, a used-buffer interrupt of a queue goes to that
 * queue's vector (queue_msix_vector) and a configuration interrupt to config_msix_vector,
 * through vio_pci_config::msix_fire; vectors that are masked (per entry or function-wide)
 * set their PBA bit and fire when unmasked. The message address and data the guest programs
 * into an entry are handed to the VMM through vio_pci_config::msix_update (and can be read
 * with vio_pci_msix_entry()) so it can route an irqfd. A vector number at or above the table
 * size reads back as NO_VECTOR (0xffff), as the spec asks. Without MSI-X (not configured or
 * not enabled by the guest) the ISR byte collects the cause and the INTx line is driven
 * through vio_pci_config::set_intx (unless the command register disables INTx); reading the
 * ISR clears it and lowers the line.
 *
 * Notifications: vio_pci_notify_info() gives, for each queue, the BAR, offset, width and value
 * of the guest's notify write, for a KVM ioeventfd; a trapped write to the notify window
 * reaches the device just the same.
 *
 * Guest input: every offset, width and value is guest controlled. Accesses that break a rule
 * (a width other than the field's, a read-only field, an out-of-range queue_select, a queue
 * size that is zero, not a power of two or above the maximum, a change to an enabled queue,
 * feature writes after FEATURES_OK, queue_enable = 0) are ignored and logged, rate-limited.
 * Enabling a queue whose rings are misaligned or outside guest memory sets
 * DEVICE_NEEDS_RESET and raises a configuration interrupt.
 *
 * Transitional (legacy I/O BAR) devices: vio_pci_config::transitional. The VMM routes I/O
 * port accesses inside that BAR to vio_pci_bar_read() / _write() with the BAR's index.
 *
 * VIRTIO_F_NOTIFICATION_DATA: vio_pci_config::notification_data.
 *
 * Not implemented yet: VIRTIO_F_RING_RESET (masked out of the offer), shared-memory
 * capabilities, PCIe extended capabilities (the extended space reads 0) and power
 * management.
 *
 * Threading: the config-space and BAR calls run one at a time per device (the VMM's exit
 * handler); vio_pci_queue_notify() is the data path of one queue. The interrupt hooks are
 * called from whichever thread raised the interrupt (a device thread may), so they must be
 * thread-safe (an eventfd write is).
 * @{
 */
#ifndef VIO_PCI_H
#define VIO_PCI_H

#include "common.h"
#include "device.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/** "No vector" value of config_msix_vector / queue_msix_vector. */
#define VIO_PCI_NO_VECTOR 0xffffu
/** Bytes of the configuration-space image served (the extended space above reads 0). */
#define VIO_PCI_CONFIG_SPACE 256u
/** ISR bit: a queue has used buffers. */
#define VIO_PCI_ISR_QUEUE 1u
/** ISR bit: the configuration changed (or DEVICE_NEEDS_RESET was set). */
#define VIO_PCI_ISR_CONFIG 2u

/** Where the windows live (filled by vio_pci_layout_default(), adjusted by the VMM). */
struct vio_pci_layout {
    uint8_t bar;             /**< memory BAR of the virtio windows (0..5; 64-bit: bar and bar + 1) */
    bool bar64;              /**< a 64-bit BAR (bar <= 4) */
    uint32_t bar_size;       /**< BAR size (power of two >= 4096 covering every window) */
    uint32_t common_off;     /**< common configuration window (56 bytes), 4-byte aligned */
    uint32_t isr_off;        /**< ISR byte */
    uint32_t device_off;     /**< device config window (vio_device_config_size() bytes) */
    uint32_t notify_off;     /**< notify window: queue i at notify_off + i * notify_mult */
    uint32_t notify_mult;    /**< notify_off_multiplier: 0 (one address for all) or a power of
                                  two >= 2 */
    uint8_t msix_bar;        /**< memory BAR of the MSI-X table and PBA (32-bit; may equal
                                  @ref bar, then the table and PBA must not overlap a window) */
    uint32_t msix_bar_size;  /**< its size when it is a separate BAR (power of two >= 4096) */
    uint32_t msix_table_off; /**< MSI-X table (16 bytes per vector), 8-byte aligned */
    uint32_t msix_pba_off;   /**< pending-bit array (8 bytes per 64 vectors), 8-byte aligned */
};

/** Opaque transport object. */
struct vio_pci;

/** Creation parameters. */
struct vio_pci_config {
    uint32_t struct_size;      /**< sizeof(struct vio_pci_config) */
    struct vio_device *dev;    /**< the device (borrowed; bound until vio_pci_free()) */
    const struct vio_mem *mem; /**< guest memory (borrowed; must outlive the transport) */
    struct vio_pci_layout layout; /**< windows (vio_pci_layout_default()) */
    uint16_t msix_vectors;     /**< MSI-X table size; 0: no MSI-X capability (INTx only);
                                    at most 2048 */
    uint32_t class_code;       /**< 24-bit class code; 0: 0x020000 for a net device, else
                                    0xff0000 */
    uint16_t subsys_vendor;    /**< 0: 0x1af4 */
    uint16_t subsys_id;        /**< 0: 0x1100 */
    vio_log_fn log;            /**< optional log callback (object "virtio-pci") */
    void *log_opaque;          /**< passed to @ref log */
    /** optional: signal MSI-X vector @p vector (its irqfd). Any thread. */
    void (*msix_fire)(void *opaque, uint16_t vector);
    /** optional: the guest programmed entry @p vector (address, data, masked): re-route its
     *  irqfd. On the config/BAR thread. */
    void (*msix_update)(void *opaque, uint16_t vector, uint64_t addr, uint32_t data,
                        bool masked);
    /** optional: drive the INTx line (1 assert, 0 deassert). Any thread. */
    void (*set_intx)(void *opaque, int level);
    void *irq_opaque;          /**< passed to the interrupt hooks */
    /** Transitional device (spec "Legacy Interfaces"): PCI device ID 0x1000 + type - 1,
     *  revision 0, subsystem device ID = the virtio device type (unless @ref subsys_id is
     *  set), and besides the modern capabilities an I/O BAR @ref legacy_bar holding the legacy
     *  register block: HOST_FEATURES (32 bits: the offer's low word, so no VERSION_1),
     *  GUEST_FEATURES, QUEUE_PFN (legacy ring layout, used ring 4096-aligned, the queue at its
     *  maximum size), QUEUE_NUM (read-only maximum), QUEUE_SEL, QUEUE_NOTIFY, STATUS, ISR,
     *  then MSI_CONFIG_VECTOR / MSI_QUEUE_VECTOR while the guest has MSI-X enabled, then the
     *  device config. A legacy driver (one that does not take VERSION_1) may skip
     *  FEATURES_OK. The legacy notify for a KVM ioeventfd: BAR @ref legacy_bar, offset 16,
     *  2 bytes, value = the queue index. Optional: a caller whose struct_size ends before this
     *  field gets a modern-only device. */
    bool transitional;
    /** I/O BAR index of the legacy block (transitional only; 0 as QEMU does); must not be a
     *  BAR of the layout. Its size is the power of two >= 24 + the device config size. */
    uint8_t legacy_bar;
    /** Offer VIRTIO_F_NOTIFICATION_DATA (bit 38; the transport implements it, the device never
     *  sees it). Once negotiated the driver writes 32 bits to the notify address: the queue
     *  index and, in the upper 16 bits, its next avail index (split ring: the whole index;
     *  packed: offset and wrap counter). A 2-byte write still notifies (logged at debug).
     *  A VMM binding ioeventfds then binds them without datamatch (a multiplier of 0 cannot
     *  be used), and the data of those writes is not seen. */
    bool notification_data;
    /** optional: the data of a trapped notify with NOTIFICATION_DATA negotiated, before the
     *  queue is processed (on the thread that calls vio_pci_bar_write()) */
    void (*notify_data)(void *opaque, unsigned qidx, uint16_t next);
    /* ---- offload (added later; a caller whose struct_size ends before @ref mem_regions
     *      has none: every queue runs in the transport) ---- */
    /** optional: the guest memory as regions with shareable fds, for a device that runs its
     *  queues outside the transport (the offload device, vhost_dev.h). Same contract as
     *  vio_device_hooks::mem_regions: fill up to @p cap regions of @p out, return how many
     *  there are (may exceed @p cap) or a negative errno (-ENOTSUP: no shareable memory). The
     *  fds stay the VMM's. Called on the thread that starts queues (the config/BAR exit
     *  handler). Only used when @ref queue_fds is set. */
    int (*mem_regions)(void *opaque, struct vio_device_mem_region *out, unsigned cap);
    /** optional: the eventfds of queue @p qidx, which the device is about to run elsewhere (a
     *  vhost-net or vhost-user back-end). When set, the device is bound with
     *  vio_device_hooks::queue_offload (and vio_device_hooks::mem_regions when
     *  @ref mem_regions is set too), so an offload device can claim its queues.
     *
     *  @p kick_fd: an eventfd the guest's notify writes reach: the VMM binds a KVM ioeventfd
     *  on the queue's notify address (vio_pci_notify_info()) now. A notify that still traps (the
     *  ioeventfd not bound yet, or a VMM without ioeventfds), and vio_pci_queue_notify() for the queue, are
     *  forwarded by writing 1 to it; the transport never processes a claimed queue itself.
     *  Required (a call that leaves it -1 fails the claim with -EINVAL).
     *
     *  @p call_fd: an eventfd that raises the queue's used-buffer interrupt. With MSI-X enabled: the irqfd of @p vector; otherwise an eventfd the VMM watches and answers with vio_pci_queue_interrupt() (ISR bit and INTx).
     *  -1: the back-end signals nothing (it must poll, or the guest polls).
     *
     *  @p vector: the queue's MSI-X vector (queue_msix_vector) as the guest set it while MSI-X is enabled, else #VIO_PCI_NO_VECTOR. A vector the guest rewrites on a live queue (the spec forbids it) is not handed out again.
     *
     *  Called on the thread that starts queues (inside the device's queue_start, during a
     *  register write). Returns 0, or a negative errno: then the claim fails, the device's
     *  queue_start fails and the transport sets DEVICE_NEEDS_RESET as for any failed start.
     *  The fds stay the VMM's (borrowed) and must stay valid until the queue stops: a reset,
     *  a disabled queue, NEEDS_RESET or vio_pci_free() end the claim (the device's queue_stop runs
     *  first).
     *  When the guest enables or disables MSI-X while queues are claimed, they are restarted
     *  (queue_stop, then queue_start at the same ring position), so this hook is asked again
     *  with the new vector. */
    int (*queue_fds)(void *opaque, unsigned qidx, uint16_t vector, int *kick_fd, int *call_fd);
    void *offload_opaque; /**< passed to @ref mem_regions and @ref queue_fds */
};

/**
 * @brief Fill @p l with a QEMU-like layout: windows in 64-bit BAR 4 (common 0x0, ISR 0x1000,
 * device 0x2000, notify 0x3000 with multiplier 4, size 0x4000), MSI-X table and PBA in
 * 32-bit BAR 1 (table 0x0, PBA 0x800, size 0x1000).
 * @param[out] l the layout (no-op when NULL)
 */
VIO_API void vio_pci_layout_default(struct vio_pci_layout *l);

/**
 * @brief Create the transport and bind it to the device.
 * @param[in]  cfg creation parameters (copied)
 * @param[out] out the transport, owned by the caller (vio_pci_free())
 * @retval 0 success
 * @retval -EINVAL cfg, out, dev or mem NULL, struct_size too small, a layout whose windows
 *                 overlap, are misaligned or do not fit their BAR, more than 2048 vectors,
 *                 a device without queues or without VERSION_1; transitional: a legacy_bar
 *                 that is a BAR of the layout or above 5, a device config that does not fit
 *                 a 256-byte I/O BAR, a device type above 0x40
 * @retval -EBUSY the device is bound to another transport
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_pci_new(const struct vio_pci_config *cfg, struct vio_pci **out);

/** @brief Stop the queues, reset and unbind the device, free. NULL is a no-op. Control path. */
VIO_API void vio_pci_free(struct vio_pci *p);

/**
 * @brief A configuration-space read.
 * @param[in]  p      the transport
 * @param[in]  offset byte offset (guest controlled); 256..4095 read 0
 * @param[in]  size   1, 2 or 4, naturally aligned (guest controlled)
 * @param[out] value  the value (0 for a refused access)
 * @retval 0 success
 * @retval -EINVAL p or value NULL
 * @retval -EPROTO bad width, alignment or offset (logged)
 */
VIO_API int vio_pci_config_read(struct vio_pci *p, uint32_t offset, unsigned size,
                                uint32_t *value);

/**
 * @brief A configuration-space write: only the command register, BARs, interrupt line, MSI-X
 * message control (enable, function mask) and the PCI cfg access capability's bar / offset /
 * length / data are writable; other bits keep their value.
 * @retval 0 success (including writes to read-only bits, which change nothing, as on hardware)
 * @retval -EINVAL p NULL
 * @retval -EPROTO bad width, alignment or offset (logged)
 */
VIO_API int vio_pci_config_write(struct vio_pci *p, uint32_t offset, unsigned size,
                                 uint32_t value);

/**
 * @brief A read inside BAR @p bar.
 * @param[in]  p      the transport
 * @param[in]  bar    BAR index (the layout's bar or msix_bar, or a transitional device's
 *                    legacy_bar: an I/O BAR, the VMM routes port accesses there)
 * @param[in]  offset byte offset inside the BAR (guest controlled)
 * @param[in]  size   1, 2, 4 or 8 (guest controlled)
 * @param[out] value  the value (0 for a refused access)
 * @retval 0 success
 * @retval -EINVAL p or value NULL
 * @retval -EPROTO the access broke a rule (width, alignment, a write-only field, outside any
 *                 window): logged, *value is 0
 */
VIO_API int vio_pci_bar_read(struct vio_pci *p, unsigned bar, uint64_t offset, unsigned size,
                             uint64_t *value);

/**
 * @brief A write inside BAR @p bar.
 * @retval 0 applied
 * @retval -EINVAL p NULL
 * @retval -EPROTO refused (logged) or it set NEEDS_RESET (rings outside guest memory)
 * @retval -ENOTSUP a device_status write asked for FEATURES_OK and the device refused the
 *                  features (FEATURES_OK stays clear)
 */
VIO_API int vio_pci_bar_write(struct vio_pci *p, unsigned bar, uint64_t offset, unsigned size,
                              uint64_t value);

/**
 * @brief The address the guest programmed into BAR @p bar (0 while unassigned; a 64-bit BAR
 * combines both registers). Control path.
 * @retval the address, or 0 for NULL / an unused BAR
 */
VIO_API uint64_t vio_pci_bar_address(const struct vio_pci *p, unsigned bar);

/** Where a guest writes to notify a queue (for a KVM ioeventfd). */
struct vio_pci_notify_info {
    uint8_t bar;     /**< BAR index */
    uint64_t offset; /**< offset inside the BAR */
    uint32_t size;   /**< access width (2: Linux writes the queue index as 16 bits) */
    uint32_t value;  /**< value written (the queue index); needed as datamatch when
                          notify_mult is 0 */
};

/**
 * @brief The notify location and value of queue @p qidx.
 * @retval 0 success
 * @retval -EINVAL p or out NULL
 * @retval -ERANGE no such queue
 */
VIO_API int vio_pci_notify_info(const struct vio_pci *p, unsigned qidx,
                                struct vio_pci_notify_info *out);

/**
 * @brief The driver kicked queue @p qidx (an ioeventfd fired): process it. Data path.
 * @return >= 0 chains processed
 * @retval -EINVAL p NULL
 * @retval -ERANGE no such queue
 * @retval -EIO the queue is not running
 */
VIO_API int vio_pci_queue_notify(struct vio_pci *p, unsigned qidx);

/**
 * @brief Raise the used-buffer interrupt of queue @p qidx exactly as the device's notify_queue
 * hook would: with MSI-X enabled, the queue's vector through vio_pci_config::msix_fire (or its
 * PBA bit while masked); otherwise the ISR queue bit and the INTx line. For a VMM whose
 * queue_fds handed out a call eventfd it watches itself. Any thread.
 * @param[in] p    the transport
 * @param[in] qidx queue index
 * @retval 0 raised (a queue whose vector is NO_VECTOR raises nothing, as the spec says)
 * @retval -EINVAL p NULL
 * @retval -ENOENT no such queue (@p qidx at or above vio_device_num_queues())
 */
VIO_API int vio_pci_queue_interrupt(struct vio_pci *p, unsigned qidx);

/** One MSI-X table entry as the guest programmed it. */
struct vio_pci_msix_msg {
    uint64_t addr;  /**< message address */
    uint32_t data;  /**< message data */
    bool masked;    /**< entry masked (its own bit or the function mask) */
};

/**
 * @brief Read MSI-X entry @p vector. Control path.
 * @retval 0 success
 * @retval -EINVAL p or out NULL
 * @retval -ERANGE vector >= the table size
 */
VIO_API int vio_pci_msix_entry(const struct vio_pci *p, uint16_t vector,
                               struct vio_pci_msix_msg *out);

/** @brief The device status byte (0 for NULL). Control path. */
VIO_API uint8_t vio_pci_status(const struct vio_pci *p);

/** @brief True when the guest enabled MSI-X in the capability. */
VIO_API bool vio_pci_msix_enabled(const struct vio_pci *p);

/**
 * @brief Device side: set DEVICE_NEEDS_RESET (stop the queues, raise a config interrupt).
 * Control path. No-op for NULL.
 */
VIO_API void vio_pci_set_needs_reset(struct vio_pci *p);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
