/* SPDX-License-Identifier: MIT */
/**
 * @file status.h
 * @brief Feature negotiation and the device status state machine (device side).
 *
 * @defgroup status Features and device status
 * @brief Offered/accepted feature sets and the ACKNOWLEDGE → DRIVER → FEATURES_OK →
 * DRIVER_OK state machine with the virtio spec's validation.
 *
 * Transports feed driver writes (status register, feature words) into a
 * struct vio_status and act on the events it returns; device models never
 * re-derive them. Everything passed to vio_status_write() and the feature
 * setters is guest controlled.
 *
 * Threading: one thread at a time per object, except vio_status_set_needs_reset(),
 * which may be called from any thread (it is an atomic OR with release order;
 * vio_status_read() loads with acquire, and vio_status_write() is a
 * compare-exchange loop, so a NEEDS_RESET set concurrently with a driver write
 * is never lost).
 * @{
 */
#ifndef VIO_STATUS_H
#define VIO_STATUS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Device status bits (same values as the virtio spec). */
enum vio_status_bits {
    VIO_S_ACKNOWLEDGE = 1,
    VIO_S_DRIVER = 2,
    VIO_S_DRIVER_OK = 4,
    VIO_S_FEATURES_OK = 8,
    VIO_S_NEEDS_RESET = 0x40,
    VIO_S_FAILED = 0x80
};

/** Feature bit numbers of the transport/ring range that the engine uses. */
enum vio_feature_numbers {
    VIO_F_INDIRECT_DESC = 28,
    VIO_F_EVENT_IDX = 29,
    VIO_F_VERSION_1 = 32,
    VIO_F_ACCESS_PLATFORM = 33,
    VIO_F_RING_PACKED = 34,
    VIO_F_IN_ORDER = 35
};

/** Events produced by vio_status_write() (a bit set). */
enum vio_status_event {
    VIO_EV_RESET = 1,        /**< driver wrote 0: reset the device and its queues */
    VIO_EV_FEATURES_OK = 2,  /**< features were accepted and are now fixed */
    VIO_EV_DRIVER_OK = 4,    /**< driver is live: start the device */
    VIO_EV_FAILED = 8        /**< driver gave up */
};

/**
 * What the device must do after a change of the status byte (vio_status_actions()): the
 * status transitions turned into device events, so that no transport re-derives them.
 */
enum vio_status_action {
    VIO_ACT_RESET = 1,  /**< the status went from non-zero to 0: stop every queue, reset the
                             device (vio_device_reset()), forget the negotiated features */
    VIO_ACT_START = 2,  /**< the device became live (DRIVER_OK without FAILED or NEEDS_RESET):
                             start the queues the driver enabled */
    VIO_ACT_STOP = 4,   /**< the device was live and is not any more (reset, FAILED, or
                             NEEDS_RESET): stop processing its queues */
    VIO_ACT_CONFIG = 8  /**< NEEDS_RESET appeared: raise a configuration-change interrupt */
};

/** Flags of struct vio_status_config. */
enum vio_status_flags {
    /**
     * The status is relayed by a vhost front-end, not written by a virtio driver step by step
     * (vhost-user SET_STATUS): QEMU sets FEATURES_OK alone right after SET_FEATURES and
     * ACKNOWLEDGE | DRIVER | DRIVER_OK later. The order rules are lifted (DRIVER without
     * ACKNOWLEDGE, FEATURES_OK without DRIVER or after DRIVER_OK, DRIVER_OK without
     * FEATURES_OK are accepted); a DRIVER_OK without FEATURES_OK gets the feature check that
     * FEATURES_OK would have had. Everything else holds: bits are cleared only by a reset,
     * NEEDS_RESET belongs to the device, FEATURES_OK is refused for a set the device cannot
     * take, and after FAILED only a reset is accepted. The driver features may be set at any
     * status before FEATURES_OK and DRIVER_OK (the front-end sends SET_FEATURES when it
     * likes), and set again to the same value after (QEMU repeats SET_FEATURES to switch
     * dirty logging).
     */
    VIO_STATUS_RELAYED = 1u << 0
};

/** Opaque status/feature object. */
struct vio_status;

/** Creation parameters. */
struct vio_status_config {
    uint32_t struct_size;     /**< sizeof(struct vio_status_config) */
    uint64_t device_features; /**< feature bits the device offers */
    bool allow_legacy;        /**< accept a driver that does not take VERSION_1 (default: refuse) */
    /** optional device-specific check of the accepted set at FEATURES_OK (or at DRIVER_OK for a
     *  legacy driver); 0 = accept, non-zero = refuse. Runs at most once per vio_status_write(),
     *  on the calling thread. */
    int (*validate)(void *opaque, uint64_t driver_features);
    void *validate_opaque;    /**< passed to @ref validate */
    uint32_t flags;           /**< #vio_status_flags (0: a virtio driver writes the status);
                                   read only when struct_size covers it */
};

/**
 * @brief Create a status object in the reset state.
 * @param[in]  cfg creation parameters (copied)
 * @param[out] out the new object, owned by the caller (vio_status_free()); NULL on failure
 * @retval 0 success
 * @retval -EINVAL cfg or out NULL, struct_size too small, VERSION_1 not offered while
 *                 allow_legacy is false (a modern device MUST offer it), or an unknown flag
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_status_new(const struct vio_status_config *cfg, struct vio_status **out);

/** @brief Destroy. NULL is a no-op. */
VIO_API void vio_status_free(struct vio_status *st);

/** @brief Current device status byte (what the driver reads back). */
VIO_API uint8_t vio_status_read(const struct vio_status *st);

/**
 * @brief Apply a driver write of the status register.
 *
 * 0 resets (features cleared, NEEDS_RESET and FAILED cleared, events RESET).
 * Otherwise bits may only be added: DRIVER needs ACKNOWLEDGE, FEATURES_OK needs
 * DRIVER (and not DRIVER_OK), DRIVER_OK needs FEATURES_OK (DRIVER for a legacy
 * driver: allow_legacy and VERSION_1 not accepted), FAILED is always accepted
 * and after it only a reset. Prerequisites may arrive in the same write
 * (ACKNOWLEDGE | DRIVER at once is fine). FEATURES_OK is refused (the bit stays
 * clear, as the spec asks) when the driver accepted a bit the device did not
 * offer, did not accept VERSION_1 (unless allow_legacy), or the validate hook
 * says no; a legacy driver's features get the same check at DRIVER_OK.
 *
 * NEEDS_RESET belongs to the device: a write that echoes it back (read-modify-write
 * of the register) is fine and a write that omits it does not clear it, but a
 * write that would set it is refused.
 *
 * With #VIO_STATUS_RELAYED (a vhost front-end relays the status) the order rules
 * (DRIVER needs ACKNOWLEDGE, FEATURES_OK needs DRIVER and no DRIVER_OK, DRIVER_OK needs
 * FEATURES_OK) are lifted; a DRIVER_OK without FEATURES_OK has its features checked.
 *
 * @param[in]  st     the status object
 * @param[in]  val    the value the driver wrote (guest controlled)
 * @param[out] events optional: #vio_status_event bits caused by this write (0 on error)
 * @retval 0 accepted
 * @retval -ENOTSUP FEATURES_OK (or a legacy DRIVER_OK) refused: that bit and a DRIVER_OK
 *                  in the same write stay clear, the other new bits are applied
 * @retval -EINVAL illegal transition (clearing bits, skipping steps unless relayed, setting
 *                 NEEDS_RESET or a reserved bit, adding bits after FAILED); the status is left
 *                 unchanged
 */
VIO_API int vio_status_write(struct vio_status *st, uint8_t val, unsigned *events);

/** @brief Feature bits the device offers. */
VIO_API uint64_t vio_status_device_features(const struct vio_status *st);

/**
 * @brief The driver's accepted feature bits (a full 64-bit write).
 *
 * Any bits are stored; unoffered ones make FEATURES_OK fail later.
 * @param[in] st       the status object
 * @param[in] features accepted bits (guest controlled)
 * @retval 0 success
 * @retval -EBUSY DRIVER not set, or FEATURES_OK / DRIVER_OK already set (features are fixed);
 *                nothing changes. With #VIO_STATUS_RELAYED: only FEATURES_OK / DRIVER_OK set
 *                and @p features different from the fixed set
 */
VIO_API int vio_status_set_driver_features(struct vio_status *st, uint64_t features);

/**
 * @brief One 32-bit half of the driver features (PCI/MMIO select registers).
 * @param[in] st   the status object
 * @param[in] word 0 for bits 0..31, 1 for bits 32..63 (guest controlled select register)
 * @param[in] val  the bits of that half; the other half is kept
 * @retval 0 success
 * @retval -EINVAL word > 1 (checked first)
 * @retval -EBUSY as vio_status_set_driver_features()
 */
VIO_API int vio_status_set_driver_features_word(struct vio_status *st, unsigned word, uint32_t val);

/** @brief Driver features written so far (negotiated once FEATURES_OK is set). */
VIO_API uint64_t vio_status_driver_features(const struct vio_status *st);

/** @brief True when FEATURES_OK is set: vio_status_driver_features() is the negotiated set. */
VIO_API bool vio_status_features_ok(const struct vio_status *st);

/** @brief True when DRIVER_OK is set and neither FAILED nor NEEDS_RESET. */
VIO_API bool vio_status_live(const struct vio_status *st);

/**
 * @brief Set NEEDS_RESET (device side; e.g. from a queue's on_broken hook). Any thread.
 * @return true when this call set the bit (it was clear): the caller raises the one
 *         configuration-change interrupt (#VIO_ACT_CONFIG); false when it was already set
 */
VIO_API bool vio_status_set_needs_reset(struct vio_status *st);

/**
 * @brief The device events a status change calls for (kvmtool's start/stop hints).
 *
 * A transport reads the status before and after a driver write (vio_status_write()), a reset
 * or vio_status_set_needs_reset(), and acts on the #vio_status_action bits, in the order
 * STOP, RESET, START, CONFIG. Writing 0 when the status already was 0 calls for nothing (the
 * device is in its reset state). Pure function; any thread.
 * @param[in] before the status byte before the change
 * @param[in] after  the status byte after it
 * @return #vio_status_action bits (0: nothing to do)
 */
VIO_API unsigned vio_status_actions(uint8_t before, uint8_t after);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
