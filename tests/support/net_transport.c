/* SPDX-License-Identifier: MIT */
#include "net_transport.h"

#include <errno.h>
#include <string.h>

int net_transport_open(struct net_transport *t, const struct net_transport_config *c)
{
    if (!t || !c || !c->mem)
        return -EINVAL;
    memset(t, 0, sizeof(*t));
    int r = vio_net_loopback_open(NULL, &t->be);
    if (r < 0)
        return r;
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &t->be,
                                    .mac_valid = c->mac != NULL, .mtu = c->mtu,
                                    .queue_size = c->queue_size,
                                    .ctrl_queue_size = c->ctrl_queue_size,
                                    .features_off = c->features_off, .log = c->log,
                                    .log_opaque = c->log_opaque};
    if (c->mac)
        memcpy(dc.mac, c->mac, 6);
    if ((r = vio_net_dev_new(&dc, &t->nd)) < 0)
        goto fail;
    if (c->mmio) {
        struct vio_mmio_config mc = {.struct_size = sizeof(mc), .dev = vio_net_dev_device(t->nd),
                                     .mem = c->mem, .vendor_id = c->mmio_vendor,
                                     .legacy = c->legacy, .log = c->log,
                                     .log_opaque = c->log_opaque};
        r = vio_mmio_new(&mc, &t->mmio);
    } else {
        struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(t->nd),
                                    .mem = c->mem, .msix_vectors = c->msix_vectors,
                                    .log = c->log, .log_opaque = c->log_opaque,
                                    .transitional = c->transitional, .legacy_bar = 0};
        vio_pci_layout_default(&pc.layout);
        r = vio_pci_new(&pc, &t->pci);
    }
    if (r < 0)
        goto fail;
    return 0;
fail:
    net_transport_close(t);
    return r;
}

void net_transport_close(struct net_transport *t)
{
    if (!t)
        return;
    vio_pci_free(t->pci);
    vio_mmio_free(t->mmio);
    vio_net_dev_free(t->nd);
    if (t->be.ops)
        vio_net_backend_destroy(&t->be);
    memset(t, 0, sizeof(*t));
}
