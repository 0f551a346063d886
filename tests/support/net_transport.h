/* SPDX-License-Identifier: MIT */
/*
 * Test fixture: our virtio-net model on a loopback backend behind one of our device-side
 * transports (vio_pci modern or transitional, vio_mmio version 2 or legacy), over guest
 * memory the caller owns. Used where a test needs "a net device behind a transport" and does
 * not care about the wiring: the differential test against QEMU, the driver seat's tests.
 * Errors: 0 or -errno from the first call that failed; on failure nothing is left open.
 */
#ifndef VIO_TEST_NET_TRANSPORT_H
#define VIO_TEST_NET_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mem.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/pci.h"

struct net_transport_config {
    const struct vio_mem *mem; /* guest memory (borrowed, outlives the fixture) */
    bool mmio;                 /* vio_mmio instead of vio_pci */
    bool legacy;               /* MMIO: version 1 */
    bool transitional;         /* PCI: the legacy I/O BAR 0 beside the modern windows */
    uint16_t msix_vectors;     /* PCI: MSI-X table size (0: INTx only) */
    const uint8_t *mac;        /* 6 bytes, or NULL: no MAC offered */
    uint16_t mtu;              /* 0: MTU not offered */
    uint16_t queue_size;       /* 0: 256 */
    uint16_t ctrl_queue_size;  /* 0: 64 */
    uint64_t features_off;     /* feature bits the model must not offer */
    uint32_t mmio_vendor;      /* MMIO VendorID (0: the library's) */
    vio_log_fn log;            /* optional, for the device and the transport */
    void *log_opaque;
};

struct net_transport {
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_pci *pci;   /* one of the two is set */
    struct vio_mmio *mmio;
};

int net_transport_open(struct net_transport *t, const struct net_transport_config *c);
void net_transport_close(struct net_transport *t);

#endif
