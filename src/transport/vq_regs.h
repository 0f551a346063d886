/* SPDX-License-Identifier: MIT */
/*
 * Internal: the register-level queue and status state shared by the device-side register
 * transports (virtio-MMIO, virtio-PCI). Queue selection, the per-queue registers (size, ring
 * addresses, enable, MSI-X vector, notify offset), the rules a driver's writes must follow, and
 * the status byte turned into device events all live here once; a transport only decodes
 * offsets into these calls.
 *
 * Placement: this sits under src/transport/ rather than src/core/ because it calls the generic
 * device interface (vio_device_*), which the core may not (DESIGN.md, "Layers"). It builds on
 * the core's pieces: struct vio_status for the status machine and features, struct vio_queue
 * for the rings, struct vio_mem for the "rings inside guest memory" check.
 *
 * Threading: every call here is control path and runs on the thread that decodes register
 * accesses (one at a time per object), except vio_vqr_notify() (data path, the caller
 * serialises it per queue) and the device hooks, which may fire on device threads.
 */
#ifndef VIO_TRANSPORT_VQ_REGS_H
#define VIO_TRANSPORT_VQ_REGS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/device.h"
#include "virtio/mem.h"
#include "virtio/queue.h"
#include "virtio/status.h"

/* "no vector" for PCI's msix vectors (virtio spec VIRTIO_MSI_NO_VECTOR) */
#define VIO_VQR_NO_VECTOR 0xffffu

/* One queue's registers. */
struct vio_vqr_queue {
    uint16_t size;     /* written by the driver; 0: not yet (see vio_vqr_size()) */
    uint64_t desc, driver, device; /* guest-physical ring addresses */
    bool enabled;      /* ready / queue_enable */
    _Atomic uint16_t vector; /* MSI-X vector (PCI), VIO_VQR_NO_VECTOR by default; read by the
                                interrupt hook on device threads */
    struct vio_queue *q; /* created and set up at START */
    bool running;      /* vio_device_queue_start() succeeded */
    /* Offload claim (vio_device_hooks::queue_offload): the kick eventfd the VMM gave for the
     * queue while the device runs it elsewhere, -1 while not claimed. Read by
     * vio_vqr_notify() on the VMM's notify thread, hence atomic. */
    _Atomic int claim_kick;
};

/* Callbacks into the transport (interrupt side). */
struct vio_vqr_ops {
    void (*irq_queue)(void *opaque, unsigned qidx); /* used-buffer interrupt of qidx */
    void (*irq_config)(void *opaque);                /* configuration-change interrupt */
    /* optional: the vector to hand the VMM's queue_fds for queue qidx (PCI: the queue's
     * MSI-X vector while MSI-X is enabled, else NO_VECTOR); NULL: always NO_VECTOR */
    uint16_t (*offload_vector)(void *opaque, unsigned qidx);
};

struct vio_vqr_config {
    struct vio_device *dev;
    const struct vio_mem *mem;
    vio_log_fn log;
    void *log_opaque;
    const char *name;        /* log object name ("virtio-mmio") */
    bool legacy;             /* a legacy driver may skip FEATURES_OK / VERSION_1 */
    uint16_t initial_size;   /* 0: queue size resets to 0; else to the queue's max (PCI) */
    uint64_t hide_features;  /* device features the transport does not offer (mask) */
    uint64_t transport_features; /* features the transport itself offers and implements
                                    (e.g. NOTIFICATION_DATA): added to the offer, never
                                    passed to the device (mask) */
    const struct vio_vqr_ops *ops;
    void *opaque;
    /* Offload hooks of the VMM (vio_pci_config / vio_mmio_config): when queue_fds is set the
     * device is bound with vio_device_hooks::queue_offload (and mem_regions when that is
     * set too). */
    int (*mem_regions)(void *opaque, struct vio_device_mem_region *out, unsigned cap);
    int (*queue_fds)(void *opaque, unsigned qidx, uint16_t vector, int *kick_fd, int *call_fd);
    void *offload_opaque;
};

struct vio_vqr {
    struct vio_device *dev;
    const struct vio_mem *mem;
    struct vio_status *st;
    vio_log_fn log;
    void *log_opaque;
    const char *name;
    bool legacy;
    bool init_to_max;
    const struct vio_vqr_ops *ops;
    void *opaque;
    unsigned nq;              /* queues the device can have */
    struct vio_vqr_queue *qs; /* nq of them */
    uint32_t sel;             /* queue select, as written (may be out of range) */
    uint32_t dev_feat_sel, drv_feat_sel;
    unsigned log_budget;      /* rate limit: warnings left until the next reset */
    bool features_applied;    /* vio_device_set_features() accepted the set */
    uint64_t transport_features;
    _Atomic uint32_t isr;     /* interrupt status bits (MMIO InterruptStatus / PCI ISR); set
                                 on device threads, read and acknowledged by the decoder */
    int (*mem_regions)(void *opaque, struct vio_device_mem_region *out, unsigned cap);
    int (*queue_fds)(void *opaque, unsigned qidx, uint16_t vector, int *kick_fd, int *call_fd);
    void *offload_opaque;
};

/* Rules a driver write broke (returned negative from the setters, for tests and logs). */

int vio_vqr_init(struct vio_vqr *r, const struct vio_vqr_config *cfg);
void vio_vqr_fini(struct vio_vqr *r);

/* Rate-limited warning naming the transport. */
__attribute__((format(printf, 3, 4))) void vio_vqr_warn(struct vio_vqr *r, int level,
                                                         const char *fmt, ...);

/* Queue select: any value is stored (the spec lets the driver write any); the selected queue
 * is NULL when the index is out of range or the device has no such queue. Always 0. */
int vio_vqr_select(struct vio_vqr *r, uint32_t idx);
struct vio_vqr_queue *vio_vqr_cur(struct vio_vqr *r);
/* The size queue @p idx has now: what the driver wrote, else (PCI) its current maximum. */
uint16_t vio_vqr_size(struct vio_vqr *r, unsigned idx);
/* Largest size of queue @p idx (0: no such queue). */
uint16_t vio_vqr_max(struct vio_vqr *r, unsigned idx);

/* Setters for the selected queue. 0, or: -ENOENT no such queue, -EBUSY the queue is enabled,
 * -EINVAL size 0 / not a power of two / above the maximum. Nothing changes on error. */
int vio_vqr_set_size(struct vio_vqr *r, uint32_t size);
/* which: 0 desc, 1 driver, 2 device; half: 0 low 32 bits, 1 high, 2 the full 64 bits */
int vio_vqr_set_addr(struct vio_vqr *r, unsigned which, unsigned half, uint64_t val);
int vio_vqr_set_vector(struct vio_vqr *r, uint16_t vector);
/* Enable the selected queue: -ENOENT, -EBUSY (already), -EINVAL bad size, -EFAULT rings not
 * inside guest memory or misaligned (the caller decides whether that means NEEDS_RESET).
 * When the device is live already the queue starts at once. */
int vio_vqr_enable(struct vio_vqr *r);
/* Disable the selected queue (MMIO QueueReady = 0): stops it if it runs. */
int vio_vqr_disable(struct vio_vqr *r);

/* Feature windows. */
uint32_t vio_vqr_device_features_word(struct vio_vqr *r, uint32_t sel);
/* -EINVAL sel > 1 (ignored), -EBUSY features fixed / DRIVER not set (ignored) */
int vio_vqr_driver_features_word(struct vio_vqr *r, uint32_t sel, uint32_t val);
uint32_t vio_vqr_driver_features_read(struct vio_vqr *r, uint32_t sel);

/* Status: vio_status_write() and the device events (RESET, START, STOP, CONFIG). */
uint8_t vio_vqr_status(const struct vio_vqr *r);
int vio_vqr_status_write(struct vio_vqr *r, uint8_t val);
/* Device-side NEEDS_RESET (a guest broke a register rule): sets it, stops the queues and
 * raises the config interrupt once. */
void vio_vqr_needs_reset(struct vio_vqr *r);

/* Register-level rules both decoders share. Each applies one driver write and, when the write
 * breaks a rule, logs why (naming the transport's register @p reg, e.g. "QueueNum" or
 * "queue_size") and returns -EPROTO; the write is then ignored. 0 when accepted. */

/* A bad access (width, alignment, direction, reserved offset) at @p off: logged as "@p what
 * at @p off (@p size bytes) ignored". Always -EPROTO. */
int vio_vqr_bad_access(struct vio_vqr *r, const char *what, uint64_t off, unsigned size);
/* Device/driver feature select: any value is stored (the windows read 0 beyond word 1).
 * Always 0. */
int vio_vqr_reg_device_features_sel(struct vio_vqr *r, uint32_t val);
int vio_vqr_reg_driver_features_sel(struct vio_vqr *r, uint32_t val);
/* One 32-bit word of driver features at the current driver select. */
int vio_vqr_reg_driver_features(struct vio_vqr *r, const char *reg, uint32_t val);
/* The warning for a refused write to a queue register; @p rc is the setter's error
 * (-ENOENT, -EBUSY, -EINVAL). Always -EPROTO. */
int vio_vqr_queue_refused(struct vio_vqr *r, int rc, const char *reg, uint32_t val);
/* Queue size of the selected queue. */
int vio_vqr_reg_queue_size(struct vio_vqr *r, const char *reg, uint32_t val);
/* One 32-bit half (half 0 low, 1 high) of ring address @p which (0 desc, 1 driver, 2 device). */
int vio_vqr_reg_queue_addr(struct vio_vqr *r, unsigned which, unsigned half, uint32_t val);
/* Enable (ready = 1) of the selected queue: any other value is refused; 1 again changes
 * nothing; rings outside guest memory or misaligned set NEEDS_RESET (logged as an error). */
int vio_vqr_reg_queue_enable(struct vio_vqr *r, const char *reg, uint32_t val);
/* Whether the selected queue is enabled (reads of QueueReady / queue_enable). */
uint32_t vio_vqr_reg_queue_enabled(struct vio_vqr *r);
/* The device's configuration generation, as the registers carry it. */
uint32_t vio_vqr_reg_config_generation(struct vio_vqr *r);
/* Status write: a value above 0xff is refused (-EPROTO); otherwise vio_vqr_status_write(),
 * with -ENOTSUP passed through and other errors turned into -EPROTO. Writing 0 (reset) also
 * clears the interrupt status; the transport then lowers its interrupt line. */
int vio_vqr_reg_status(struct vio_vqr *r, uint32_t val);

/* Interrupt status bookkeeping (any thread). raise: sets @p bits; ack: clears @p bits and
 * returns those left; take: returns and clears them all (a read that acknowledges). */
void vio_vqr_isr_raise(struct vio_vqr *r, uint32_t bits);
uint32_t vio_vqr_isr(const struct vio_vqr *r);
uint32_t vio_vqr_isr_ack(struct vio_vqr *r, uint32_t bits);
uint32_t vio_vqr_isr_take(struct vio_vqr *r);

/* Whether feature bit @p bit is among the driver's features (as written so far). */
bool vio_vqr_negotiated(const struct vio_vqr *r, unsigned bit);

/* A trapped notify of queue @p idx: -ERANGE no such queue, -EIO not running, else the
 * device's result. A queue the device claimed (offloaded) is not processed here: the notify
 * is forwarded by writing 1 to the claim's kick eventfd (0, or -EIO when that write fails). */
int vio_vqr_notify(struct vio_vqr *r, uint32_t idx);

/* Whether queue @p idx is claimed by the device (runs outside the transport). Any thread. */
bool vio_vqr_claimed(const struct vio_vqr *r, unsigned idx);

/* Restart every claimed queue (stop it in the device, start it again on the same queue
 * object), so that the device asks for its fds afresh: what the VMM hands out for a queue
 * changed (PCI: MSI-X was enabled or disabled). Control path. */
void vio_vqr_offload_refresh(struct vio_vqr *r);

/* Validate ring placement for (desc, driver, device) of size n. 0 or -EFAULT. */
int vio_vqr_rings_ok(const struct vio_mem *mem, uint16_t n, uint64_t desc, uint64_t driver,
                     uint64_t device, bool event_idx);

#endif
