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
 * #vio_status and act on the events it returns; device models never
 * re-derive them.
 *
 * Threading: one thread at a time per object, except vio_status_set_needs_reset(),
 * which may be called from any thread (it is an atomic OR).
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

/** Opaque status/feature object. */
struct vio_status;

/** Creation parameters. */
struct vio_status_config {
    uint32_t struct_size;     /**< sizeof(struct vio_status_config) */
    uint64_t device_features; /**< feature bits the device offers */
    bool allow_legacy;        /**< accept a driver that does not take VERSION_1 (default: refuse) */
    /** optional device-specific check of the accepted set at FEATURES_OK (0 = accept, <0 = refuse) */
    int (*validate)(void *opaque, uint64_t driver_features);
    void *validate_opaque;    /**< passed to @ref validate */
};

/**
 * @brief Create a status object in the reset state.
 * @retval 0 success, -EINVAL bad config, -ENOMEM
 */
VIO_API int vio_status_new(const struct vio_status_config *cfg, struct vio_status **out);

/** @brief Destroy. NULL is a no-op. */
VIO_API void vio_status_free(struct vio_status *st);

/** @brief Current device status byte (what the driver reads back). */
VIO_API uint8_t vio_status_read(const struct vio_status *st);

/**
 * @brief Apply a driver write of the status register.
 *
 * 0 resets (features cleared, events RESET). Otherwise bits may only be added:
 * DRIVER needs ACKNOWLEDGE, FEATURES_OK needs DRIVER, DRIVER_OK needs
 * FEATURES_OK (DRIVER for a legacy driver), FAILED is always accepted.
 * FEATURES_OK is refused (the bit stays clear, as the spec asks) when the
 * driver accepted a bit the device did not offer, did not accept VERSION_1
 * (unless allow_legacy), or the validate hook says no.
 *
 * @param[out] events optional: #vio_status_event bits caused by this write
 * @retval 0 accepted
 * @retval -ENOTSUP FEATURES_OK refused (status keeps the other bits)
 * @retval -EINVAL illegal transition (clearing bits, skipping steps, writing NEEDS_RESET);
 *                 the status is left unchanged
 */
VIO_API int vio_status_write(struct vio_status *st, uint8_t val, unsigned *events);

/** @brief Feature bits the device offers. */
VIO_API uint64_t vio_status_device_features(const struct vio_status *st);

/**
 * @brief The driver's accepted feature bits (a full 64-bit write).
 * @retval 0 success
 * @retval -EBUSY FEATURES_OK already set (features are fixed) or status not in DRIVER
 */
VIO_API int vio_status_set_driver_features(struct vio_status *st, uint64_t features);

/**
 * @brief One 32-bit half of the driver features (PCI/MMIO select registers).
 * @param[in] word 0 for bits 0..31, 1 for bits 32..63
 * @retval 0, -EBUSY as vio_status_set_driver_features(), -EINVAL word > 1
 */
VIO_API int vio_status_set_driver_features_word(struct vio_status *st, unsigned word, uint32_t val);

/** @brief Driver features written so far (negotiated once FEATURES_OK is set). */
VIO_API uint64_t vio_status_driver_features(const struct vio_status *st);

/** @brief True when FEATURES_OK is set: vio_status_driver_features() is the negotiated set. */
VIO_API bool vio_status_features_ok(const struct vio_status *st);

/** @brief True when DRIVER_OK is set and neither FAILED nor NEEDS_RESET. */
VIO_API bool vio_status_live(const struct vio_status *st);

/** @brief Set NEEDS_RESET (device side; e.g. from a queue's on_broken hook). Any thread. */
VIO_API void vio_status_set_needs_reset(struct vio_status *st);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
