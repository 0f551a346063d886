/* SPDX-License-Identifier: MIT */
/*
 * Internal: register sequences both driver seats (virtio-PCI, virtio-MMIO) share. A seat maps
 * its register offsets and widths onto these calls through struct vio_drv_regs; the rules
 * (feature windows, ring programming, configuration chunking, ring checks) are written here
 * once. Control path; same thread rule as the seat that calls them.
 */
#ifndef VIO_TRANSPORT_DRIVER_INTERNAL_H
#define VIO_TRANSPORT_DRIVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/driver.h"

/* One register window of a seat: accesses of 1, 2 or 4 bytes at an offset in it. */
struct vio_drv_regs {
    int (*rd)(void *o, uint32_t off, unsigned size, uint32_t *v);
    int (*wr)(void *o, uint32_t off, unsigned size, uint32_t v);
    void *o;
};

/* The 64 feature bits through a 32-bit select register and window (word 0, then 1). */
int vio_drv_features_get(const struct vio_drv_regs *io, uint32_t sel, uint32_t win,
                         uint64_t *f);
int vio_drv_features_set(const struct vio_drv_regs *io, uint32_t sel, uint32_t win, uint64_t f);

/* Ring sizes and addresses the spec allows (size a power of two, desc 16-, driver 2-,
 * device 4-aligned). */
bool vio_drv_ring_ok(const struct vio_driver_queue *q);

/* Program the selected queue: -EBUSY when its enable register (@p enable, @p width bytes)
 * reads 1, else write the size (@p size_reg, @p width bytes) and the low/high 32-bit halves
 * of desc, driver and device at lo[0..2] and lo[i] + 4. */
int vio_drv_queue_program(const struct vio_drv_regs *io, uint32_t enable, uint32_t size_reg,
                          unsigned width, const uint32_t lo[3],
                          const struct vio_driver_queue *q);

/* Configuration bytes at @p base + @p off as naturally aligned accesses of at most 4 bytes;
 * the caller checks the bounds. */
int vio_drv_config_rw(const struct vio_drv_regs *io, uint32_t base, unsigned off, uint8_t *buf,
                      unsigned len, bool write);

#endif
