/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm PCI: a host bridge on bus 0 reached through configuration mechanism #1 (0xcf8
 * address, 0xcfc..0xcff data), slots filled with virtio functions (libvirtio's virtio-PCI
 * device side), their memory BARs placed by the VMM in the 32-bit hole (as firmware would) and
 * every trapped access inside the hole routed to the function whose BAR holds it — wherever the
 * guest moved it.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm.h"

#define PCI_HOLE_BASE VMM_PCI_HOLE_BASE
#define PCI_HOLE_END VMM_PCI_HOLE_END

static struct pci_bus {
    pthread_mutex_t lock;
    struct vmm *vm;
    uint32_t addr;                 /* 0xcf8 latch */
    struct vmm_pci_fn *slot[VMM_PCI_SLOTS];
    uint64_t next_bar;
} bus = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The host bridge (slot 0): IDs, class 06/00/00, nothing else. */
static uint32_t bridge_read(uint32_t off)
{
    switch (off & ~3u) {
    case 0x00: return 0x29c08086u;   /* an Intel host bridge ID, as QEMU's q35 */
    case 0x08: return 0x06000000u;   /* class: host bridge, revision 0 */
    case 0x0c: return 0x00000000u;   /* header type 0 */
    default: return 0;
    }
}

static void conf_io(void *opaque, uint64_t port, uint8_t *data, unsigned size, bool wr)
{
    (void)opaque;
    pthread_mutex_lock(&bus.lock);
    if (port == 0xcf8) {
        if (size == 4) {
            if (wr)
                memcpy(&bus.addr, data, 4);
            else
                memcpy(data, &bus.addr, 4);
        } else if (!wr) {
            memset(data, 0xff, size);
        }
        pthread_mutex_unlock(&bus.lock);
        return;
    }
    /* data window: byte lanes 0xcfc..0xcff */
    unsigned lane = (unsigned)(port - 0xcfc);
    uint32_t a = bus.addr;
    unsigned busno = (a >> 16) & 0xff, dev = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
    uint32_t off = (a & 0xfc) | lane;
    struct vmm_pci_fn *f = (busno == 0 && fn == 0 && dev < VMM_PCI_SLOTS) ? bus.slot[dev] : NULL;
    bool present = (a & 0x80000000u) && busno == 0 && fn == 0 && (dev == 0 || f);
    if (!present || lane + size > 4) {
        if (!wr)
            memset(data, 0xff, size);
        pthread_mutex_unlock(&bus.lock);
        return;
    }
    uint32_t v = 0;
    if (wr) {
        memcpy(&v, data, size);
        if (f)
            f->config_write(f, off, size, v);
    } else {
        if (f) {
            f->config_read(f, off, size, &v);
        } else {
            v = bridge_read(off) >> (8 * (off & 3));
        }
        memcpy(data, &v, size);
    }
    pthread_mutex_unlock(&bus.lock);
}

static void hole_io(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool wr)
{
    (void)opaque;
    for (unsigned s = 1; s < VMM_PCI_SLOTS; s++) {
        struct vmm_pci_fn *f = bus.slot[s];
        if (f && f->bar_access(f, addr, data, size, wr))
            return;
    }
    if (!wr)
        memset(data, 0xff, size);
}

int vmm_pci_init(struct vmm *vm)
{
    bus.vm = vm;
    bus.next_bar = PCI_HOLE_BASE;
    int r;
    if ((r = vmm_add_pio(vm, 0xcf8, 4, conf_io, NULL, "pci-conf1")) ||
        (r = vmm_add_pio(vm, 0xcfc, 4, conf_io, NULL, "pci-conf1")) ||
        (r = vmm_add_mmio(vm, PCI_HOLE_BASE, PCI_HOLE_END - PCI_HOLE_BASE, hole_io, NULL,
                          "pci-bars")))
        return r;
    return 0;
}

int vmm_pci_add(struct vmm *vm, struct vmm_pci_fn *f)
{
    (void)vm;
    for (unsigned s = 1; s < VMM_PCI_SLOTS; s++) {
        if (!bus.slot[s]) {
            bus.slot[s] = f;
            f->slot = s;
            return (int)s;
        }
    }
    return -ENOSPC;
}

uint64_t vmm_pci_alloc_bar(uint64_t size)
{
    uint64_t a = (bus.next_bar + size - 1) & ~(size - 1);
    if (a + size > PCI_HOLE_END)
        return 0;
    bus.next_bar = a + size;
    return a;
}
