/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm virtio-net, data path in the VMM: libvirtio's virtio-net device model on a tap
 * backend, behind libvirtio's virtio-PCI or virtio-MMIO device side, on one device thread per
 * card.
 *
 * Notifications as the article describes them:
 * - guest -> device: each queue's notify address (vio_pci_notify_info()) gets a KVM ioeventfd
 *   the first time the guest writes it (the first write traps and is handled in the exit, the
 *   rest go straight to the device thread's eventfd with no exit to the VMM); --no-ioeventfd
 *   keeps every write trapped.
 * - device -> guest: each MSI-X vector the guest programs becomes a KVM GSI route with an
 *   irqfd; the device thread's used-buffer interrupt is an eventfd write. Without MSI-X the
 *   INTx line of the slot is driven through the I/O APIC.
 * - vhost=on / vhost-user=: the card's device is libvirtio's offload device (vhost_dev.h) over
 *   one vhost frontend per queue pair (the kernel's /dev/vhost-net with the tap's fd) or over a
 *   vhost-user daemon; the net model stays in the VMM for the configuration space and the
 *   control queue. For each data queue the transport asks this file for two eventfds
 *   (queue_fds): the ioeventfd bound on the queue's notify address as the kick, and as the call
 *   the irqfd of the queue's MSI-X vector — or, without MSI-X (INTx, MMIO), an eventfd the
 *   device thread answers with vio_*_queue_interrupt(), since the ISR / InterruptStatus the
 *   guest reads lives here. Frames then never pass through the VMM.
 * - virtio-MMIO: the QueueNotify register is one address for every queue, so each queue's
 *   ioeventfd matches its index (datamatch). The interrupt is a level-triggered line: an irqfd
 *   with a resample eventfd; at the guest's EOI KVM lowers the line and signals the resample
 *   fd, and the device thread raises it again while InterruptStatus is not 0.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <virtio/device.h>
#include <virtio/mem.h>
#include <virtio/mmio.h>
#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/pci.h>
#include <virtio/vhost.h>
#include <virtio/vhost_dev.h>

#include "vmm.h"

#define VNET_MAX_QUEUES (2u * VMM_NET_MAX_PAIRS + 1u)
#define VNET_MAX_VECTORS (VNET_MAX_QUEUES + 1u)

struct vnet {
    struct vmm_pci_fn fn; /* first: the bus hands this pointer back */
    struct vmm *vm;
    struct vmm_net_opts opts;
    pthread_mutex_t lock;
    struct vio_net_backend backend;
    bool backend_open;
    struct vio_net_dev *nd;
    struct vio_device *dev;        /* what the transport binds: the model, or the offload device */
    struct vio_vhost_dev *vd;      /* vhost=on / vhost-user= */
    struct vio_vhost *vhost[VMM_NET_MAX_PAIRS];
    unsigned nvhost;
    int vhost_tapfd[VMM_NET_MAX_PAIRS];
    int call_efd[VNET_MAX_QUEUES]; /* offloaded queues without an irqfd: answered here */
    _Atomic bool offloaded[VNET_MAX_QUEUES];
    struct vio_pci *pci;   /* transport=pci */
    struct vio_mmio *mmio; /* transport=mmio */
    uint64_t mmio_base;
    unsigned mmio_gsi;
    int mmio_irqfd, mmio_resample;
    struct vio_mem *mem;
    struct vio_pci_layout layout;
    unsigned nq;
    int wake;
    pthread_t thread;
    bool thread_on;
    struct {
        int efd;
        uint64_t addr; /* where it is bound (0: not bound) */
        uint32_t len, value;
        bool datamatch;
    } ioev[VNET_MAX_QUEUES];
    struct {
        int efd;
        unsigned gsi;
    } vec[VNET_MAX_VECTORS];
    unsigned nvec;
    _Atomic uint64_t notify_trapped, notify_eventfd, irq_msix, irq_intx, irq_relayed;
};

/* ---- interrupts ----------------------------------------------------------------------------- */

static void msix_fire(void *opaque, uint16_t vector)
{
    struct vnet *n = opaque;
    if (vector >= n->nvec)
        return;
    n->irq_msix++;
    uint64_t one = 1;
    ssize_t w = write(n->vec[vector].efd, &one, sizeof(one));
    (void)w;
}

static void msix_update(void *opaque, uint16_t vector, uint64_t addr, uint32_t data, bool masked)
{
    struct vnet *n = opaque;
    (void)masked; /* the transport never fires a masked vector: it sets the PBA bit instead */
    if (vector >= n->nvec)
        return;
    vmm_msi_route(n->vm, n->vec[vector].gsi, addr, data);
}

static void set_intx(void *opaque, int level)
{
    struct vnet *n = opaque;
    if (level)
        n->irq_intx++;
    vmm_irq_line(n->vm, vmm_pci_intx_gsi(n->fn.slot), level);
}

/* ---- notifications ------------------------------------------------------------------------- */

static void mmio_raise(void *opaque, uint32_t bits)
{
    struct vnet *n = opaque;
    (void)bits;
    n->irq_intx++;
    uint64_t one = 1;
    ssize_t w = write(n->mmio_irqfd, &one, sizeof(one));
    (void)w;
}

/* Where queue q's notify write lands (guest-physical), its width and value; false if nowhere. */
static bool notify_where(struct vnet *n, unsigned q, uint64_t *addr, uint32_t *len,
                         uint32_t *value, bool *datamatch)
{
    if (n->mmio) {
        struct vio_mmio_notify_info mi;
        if (vio_mmio_notify_info(n->mmio, q, &mi) < 0)
            return false;
        *addr = n->mmio_base + mi.offset;
        *len = mi.size;
        *value = mi.value;
        *datamatch = true; /* one register for every queue */
        return true;
    }
    struct vio_pci_notify_info ni;
    if (vio_pci_notify_info(n->pci, q, &ni) < 0)
        return false;
    uint64_t base = vio_pci_bar_address(n->pci, ni.bar);
    if (!base)
        return false;
    *addr = base + ni.offset;
    *len = ni.size;
    *value = ni.value;
    *datamatch = n->layout.notify_mult == 0;
    return true;
}

static void queue_notify(struct vnet *n, unsigned q)
{
    if (n->mmio)
        vio_mmio_queue_notify(n->mmio, q);
    else
        vio_pci_queue_notify(n->pci, q);
}

/* Bind queue q's notify address to its eventfd (a BAR may have moved since last time). */
static void bind_ioeventfd(struct vnet *n, unsigned q)
{
    uint64_t addr;
    uint32_t len, value;
    bool datamatch;
    if (!n->opts.ioeventfd || !notify_where(n, q, &addr, &len, &value, &datamatch))
        return;
    if (n->ioev[q].addr == addr)
        return;
    struct kvm_ioeventfd io = { .fd = n->ioev[q].efd };
    if (n->ioev[q].addr) { /* unbind the old place */
        io.addr = n->ioev[q].addr;
        io.len = n->ioev[q].len;
        io.datamatch = n->ioev[q].value;
        io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN | (n->ioev[q].datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
        ioctl(n->vm->vm, KVM_IOEVENTFD, &io);
        n->ioev[q].addr = 0;
    }
    io = (struct kvm_ioeventfd){ .fd = n->ioev[q].efd, .addr = addr, .len = len,
                                 .datamatch = value,
                                 .flags = datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0 };
    if (ioctl(n->vm->vm, KVM_IOEVENTFD, &io) < 0) {
        fprintf(stderr, "vio-vmm: net%u: KVM_IOEVENTFD for queue %u at %#llx: %s (trapping)\n",
                n->opts.index, q, (unsigned long long)addr, strerror(errno));
        return;
    }
    n->ioev[q].addr = addr;
    n->ioev[q].len = len;
    n->ioev[q].value = value;
    n->ioev[q].datamatch = datamatch;
    uint64_t one = 1;
    ssize_t w = write(n->wake, &one, sizeof(one)); /* the device thread polls the new fd */
    (void)w;
}

/* ---- offloaded queues (vhost=on, vhost-user=) -------------------------------------------- */

static int offload_mem_regions(void *opaque, struct vio_device_mem_region *out, unsigned cap)
{
    struct vnet *n = opaque;
    struct vmm *vm = n->vm;
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    unsigned cnt = vm->ram_size > low ? 2 : 1;
    if (cap >= 1)
        out[0] = (struct vio_device_mem_region){ .guest_addr = 0, .size = low,
                                                 .host_addr = (uint64_t)(uintptr_t)vm->ram,
                                                 .fd = vm->ram_fd, .fd_offset = 0 };
    if (cnt == 2 && cap >= 2)
        out[1] = (struct vio_device_mem_region){ .guest_addr = 1ull << 32, .size = vm->ram_size - low,
                                                 .host_addr = (uint64_t)(uintptr_t)(vm->ram + low),
                                                 .fd = vm->ram_fd, .fd_offset = low };
    return (int)cnt;
}

/* The transport asks, from the offload device's queue start (under n->lock: a vCPU's BAR
 * write or the device thread), for the kick and call eventfds of queue q. */
static int offload_queue_fds(void *opaque, unsigned q, uint16_t vector, int *kick, int *call)
{
    struct vnet *n = opaque;
    if (q >= n->nq)
        return -EINVAL;
    bind_ioeventfd(n, q); /* KVM completes the notify write: no exit, the back-end wakes */
    *kick = n->ioev[q].efd;
    if (vector != VIO_PCI_NO_VECTOR && vector < n->nvec) {
        *call = n->vec[vector].efd; /* the vector's irqfd: KVM injects the MSI directly */
    } else {
        if (n->call_efd[q] < 0 && (n->call_efd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            return -errno;
        *call = n->call_efd[q];
    }
    n->offloaded[q] = true;
    uint64_t one = 1;
    ssize_t w = write(n->wake, &one, sizeof(one)); /* the device thread stops reading its kick */
    (void)w;
    return 0;
}

/* Build the offload device: the net model keeps config space and control queue. */
static int make_offload(struct vmm *vm, struct vnet *n)
{
    const struct vmm_net_opts *o = &n->opts;
    int r;
    if (o->vhost_user) {
        struct vio_vhost_user_frontend_config fc = {
            .struct_size = sizeof(fc), .path = o->vhost_user,
            .num_queues = 2u * o->queues, .log = vio_log_stderr };
        if ((r = vio_vhost_user_connect(&fc, &n->vhost[0]))) {
            fprintf(stderr, "vio-vmm: net%u: vhost-user backend at %s: %s\n", o->index,
                    o->vhost_user, strerror(-r));
            return r;
        }
        n->nvhost = 1;
    } else {
        for (unsigned p = 0; p < o->queues; p++) {
            struct vio_vhost_kernel_config kc = { .struct_size = sizeof(kc), .fd = -1,
                                                  .log = vio_log_stderr };
            if ((r = vio_vhost_kernel_open(&kc, &n->vhost[p])))
                return r;
            n->nvhost++;
            r = vio_net_tap_vhost_fd(&n->backend, p, 12);
            if (r < 0) {
                fprintf(stderr, "vio-vmm: net%u: tap queue %u for vhost-net: %s\n", o->index, p,
                        strerror(-r));
                return r;
            }
            n->vhost_tapfd[p] = r;
        }
    }
    struct vio_vhost_dev_config dc = {
        .struct_size = sizeof(dc), .model = vio_net_dev_device(n->nd),
        .vhost = n->vhost[0], .net_backend_fd = -1, .log = vio_log_stderr };
    if (!o->vhost_user) {
        dc.vhosts = n->vhost;
        dc.num_vhosts = n->nvhost;
        dc.net_backend_fds = n->vhost_tapfd;
    }
    if ((r = vio_vhost_dev_new(&dc, &n->vd))) {
        fprintf(stderr, "vio-vmm: net%u: offload device: %s\n", o->index, strerror(-r));
        return r;
    }
    n->dev = vio_vhost_dev_device(n->vd);
    (void)vm;
    return 0;
}

/* ---- PCI function -------------------------------------------------------------------------- */

static void cfg_read(struct vmm_pci_fn *f, uint32_t off, unsigned size, uint32_t *v)
{
    struct vnet *n = (struct vnet *)f;
    pthread_mutex_lock(&n->lock);
    if (vio_pci_config_read(n->pci, off, size, v) < 0)
        *v = 0xffffffffu;
    pthread_mutex_unlock(&n->lock);
}

static void cfg_write(struct vmm_pci_fn *f, uint32_t off, unsigned size, uint32_t v)
{
    struct vnet *n = (struct vnet *)f;
    pthread_mutex_lock(&n->lock);
    vio_pci_config_write(n->pci, off, size, v);
    pthread_mutex_unlock(&n->lock);
}

static bool in_bar(struct vnet *n, unsigned bar, uint64_t size, uint64_t addr, uint64_t *off)
{
    uint64_t base = vio_pci_bar_address(n->pci, bar);
    if (!base || addr < base || addr - base >= size)
        return false;
    *off = addr - base;
    return true;
}

static bool bar_access(struct vmm_pci_fn *f, uint64_t addr, uint8_t *data, unsigned size, bool wr)
{
    struct vnet *n = (struct vnet *)f;
    uint64_t off;
    unsigned bar;
    pthread_mutex_lock(&n->lock);
    if (in_bar(n, n->layout.bar, n->layout.bar_size, addr, &off)) {
        bar = n->layout.bar;
    } else if (n->layout.msix_bar != n->layout.bar &&
               in_bar(n, n->layout.msix_bar, n->layout.msix_bar_size, addr, &off)) {
        bar = n->layout.msix_bar;
    } else {
        pthread_mutex_unlock(&n->lock);
        return false;
    }
    uint64_t v = 0;
    if (wr) {
        memcpy(&v, data, size);
        vio_pci_bar_write(n->pci, bar, off, size, v);
        if (bar == n->layout.bar && off >= n->layout.notify_off &&
            off < n->layout.notify_off + (uint64_t)n->nq * (n->layout.notify_mult ? n->layout.notify_mult : 1) + 4) {
            n->notify_trapped++;
            unsigned q = n->layout.notify_mult ? (unsigned)((off - n->layout.notify_off) / n->layout.notify_mult)
                                               : (unsigned)v;
            if (q < n->nq)
                bind_ioeventfd(n, q);
        }
    } else {
        if (vio_pci_bar_read(n->pci, bar, off, size, &v) < 0)
            v = ~0ull;
        memcpy(data, &v, size);
    }
    pthread_mutex_unlock(&n->lock);
    return true;
}

static void mmio_access(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool wr)
{
    struct vnet *n = opaque;
    uint64_t off = addr - n->mmio_base, v = 0;
    pthread_mutex_lock(&n->lock);
    if (wr) {
        memcpy(&v, data, size);
        vio_mmio_write(n->mmio, off, size, v);
        struct vio_mmio_notify_info mi;
        if (vio_mmio_notify_info(n->mmio, 0, &mi) == 0 && off == mi.offset) {
            n->notify_trapped++;
            if (v < n->nq)
                bind_ioeventfd(n, (unsigned)v);
        }
    } else {
        if (vio_mmio_read(n->mmio, off, size, &v) < 0)
            v = ~0ull;
        memcpy(data, &v, size);
    }
    pthread_mutex_unlock(&n->lock);
}

/* ---- the device thread --------------------------------------------------------------------- */

static void *device_thread(void *arg)
{
    struct vnet *n = arg;
    struct pollfd pfd[2 + 2 * VNET_MAX_QUEUES + 16];
    uint32_t ids[16];
    unsigned qof[VNET_MAX_QUEUES];
    while (!atomic_load(&n->vm->stop)) {
        unsigned k = 0, nq = 0;
        pfd[k++] = (struct pollfd){ .fd = n->wake, .events = POLLIN };
        pfd[k++] = (struct pollfd){ .fd = n->mmio ? n->mmio_resample : -1, .events = POLLIN };
        pthread_mutex_lock(&n->lock);
        for (unsigned q = 0; q < n->nq; q++) {
            if (n->ioev[q].addr && !n->offloaded[q]) { /* an offloaded kick is the back-end's */
                qof[nq++] = q;
                pfd[k++] = (struct pollfd){ .fd = n->ioev[q].efd, .events = POLLIN };
            }
        }
        unsigned cbase = k, ncall = 0;
        unsigned cof[VNET_MAX_QUEUES];
        for (unsigned q = 0; q < n->nq; q++) {
            if (n->offloaded[q] && n->call_efd[q] >= 0) {
                cof[ncall++] = q;
                pfd[k++] = (struct pollfd){ .fd = n->call_efd[q], .events = POLLIN };
            }
        }
        struct vio_device_watch w[16];
        int nw = vio_device_watches(n->dev, w, 16);
        pthread_mutex_unlock(&n->lock);
        unsigned wbase = k;
        for (int i = 0; i < nw && i < 16; i++) {
            ids[i] = w[i].id;
            pfd[k++] = (struct pollfd){ .fd = w[i].fd, .events = (short)w[i].events };
        }
        int r = poll(pfd, k, 200);
        if (r <= 0)
            continue;
        uint64_t cnt;
        if (pfd[0].revents & POLLIN) {
            ssize_t rd = read(n->wake, &cnt, sizeof(cnt));
            (void)rd;
        }
        pthread_mutex_lock(&n->lock);
        if ((pfd[1].revents & POLLIN) && read(n->mmio_resample, &cnt, sizeof(cnt)) > 0 &&
            vio_mmio_interrupt_status(n->mmio))
            mmio_raise(n, 0); /* still pending after the EOI: assert again */
        for (unsigned i = 0; i < nq; i++) {
            if (!(pfd[2 + i].revents & POLLIN))
                continue;
            if (read(pfd[2 + i].fd, &cnt, sizeof(cnt)) == sizeof(cnt)) {
                n->notify_eventfd++;
                queue_notify(n, qof[i]);
            }
        }
        for (unsigned i = 0; i < ncall; i++) {
            if ((pfd[cbase + i].revents & POLLIN) &&
                read(pfd[cbase + i].fd, &cnt, sizeof(cnt)) == sizeof(cnt)) {
                n->irq_relayed++;
                if (n->mmio)
                    vio_mmio_queue_interrupt(n->mmio, cof[i]);
                else
                    vio_pci_queue_interrupt(n->pci, cof[i]);
            }
        }
        for (unsigned i = wbase; i < wbase + (unsigned)(nw > 0 ? (nw < 16 ? nw : 16) : 0); i++)
            if (pfd[i].revents)
                vio_device_handle(n->dev, ids[i - wbase], (unsigned)pfd[i].revents);
        pthread_mutex_unlock(&n->lock);
    }
    return NULL;
}

static int add_pci(struct vmm *vm, struct vnet *n)
{
    int r;
    const struct vmm_net_opts *o = &n->opts;
    n->nvec = n->nq + 1;
    for (unsigned v = 0; v < n->nvec; v++) {
        if ((n->vec[v].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            return -errno;
        n->vec[v].gsi = vmm_msi_alloc(vm);
        if (!n->vec[v].gsi)
            return -ENOSPC;
        struct kvm_irqfd irqfd = { .fd = (uint32_t)n->vec[v].efd, .gsi = n->vec[v].gsi };
        if (ioctl(vm->vm, KVM_IRQFD, &irqfd) < 0) {
            fprintf(stderr, "vio-vmm: KVM_IRQFD: %s\n", strerror(errno));
            return -errno;
        }
    }

    vio_pci_layout_default(&n->layout);
    struct vio_pci_config pc = { .struct_size = sizeof(pc), .dev = n->dev, .mem = n->mem,
                                 .layout = n->layout, .msix_vectors = (uint16_t)n->nvec,
                                 .log = vio_log_stderr, .msix_fire = msix_fire,
                                 .msix_update = msix_update, .set_intx = set_intx,
                                 .irq_opaque = n };
    if (n->vd) {
        pc.mem_regions = offload_mem_regions;
        pc.queue_fds = offload_queue_fds;
        pc.offload_opaque = n;
    }
    if ((r = vio_pci_new(&pc, &n->pci))) {
        fprintf(stderr, "vio-vmm: net%u: virtio-pci: %s\n", o->index, strerror(-r));
        return r;
    }
    n->fn.config_read = cfg_read;
    n->fn.config_write = cfg_write;
    n->fn.bar_access = bar_access;
    if ((r = vmm_pci_add(vm, &n->fn)) < 0)
        return r;

    /* Firmware's job: place the BARs and turn on memory decoding and bus mastering. */
    uint64_t a = vmm_pci_alloc_bar(n->layout.bar_size);
    uint64_t m = n->layout.msix_bar != n->layout.bar ? vmm_pci_alloc_bar(n->layout.msix_bar_size) : 0;
    if (!a || (n->layout.msix_bar != n->layout.bar && !m))
        return -ENOSPC;
    vio_pci_config_write(n->pci, 0x10 + 4u * n->layout.bar, 4, (uint32_t)a);
    if (n->layout.bar64)
        vio_pci_config_write(n->pci, 0x10 + 4u * (n->layout.bar + 1u), 4, (uint32_t)(a >> 32));
    if (m)
        vio_pci_config_write(n->pci, 0x10 + 4u * n->layout.msix_bar, 4, (uint32_t)m);
    vio_pci_config_write(n->pci, 0x3c, 1, vmm_pci_intx_gsi(n->fn.slot)); /* interrupt line */
    vio_pci_config_write(n->pci, 0x04, 2, 0x0006); /* memory space, bus master */

    if (vm->verbose)
        fprintf(stderr, "vio-vmm: net%u: BAR%u at %#llx\n", n->opts.index, n->layout.bar,
                (unsigned long long)a);
    return 0;
}

static int add_mmio(struct vmm *vm, struct vnet *n)
{
    if (vm->nmmio_devs >= VMM_MAX_MMIO_DEVS)
        return -ENOSPC;
    unsigned i = vm->nmmio_devs;
    n->mmio_base = VMM_MMIO_DEV_BASE + (uint64_t)i * 0x1000u;
    n->mmio_gsi = VMM_MMIO_DEV_GSI + i;
    n->mmio_irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->mmio_resample = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->mmio_irqfd < 0 || n->mmio_resample < 0)
        return -errno;
    struct kvm_irqfd irqfd = { .fd = (uint32_t)n->mmio_irqfd, .gsi = n->mmio_gsi,
                               .flags = KVM_IRQFD_FLAG_RESAMPLE,
                               .resamplefd = (uint32_t)n->mmio_resample };
    if (ioctl(vm->vm, KVM_IRQFD, &irqfd) < 0) {
        fprintf(stderr, "vio-vmm: KVM_IRQFD (resample) for GSI %u: %s\n", n->mmio_gsi, strerror(errno));
        return -errno;
    }
    struct vio_mmio_config mc = { .struct_size = sizeof(mc), .dev = n->dev, .mem = n->mem,
                                  .log = vio_log_stderr, .raise_irq = mmio_raise, .irq_opaque = n };
    if (n->vd) {
        mc.mem_regions = offload_mem_regions;
        mc.queue_fds = offload_queue_fds;
        mc.offload_opaque = n;
    }
    int r = vio_mmio_new(&mc, &n->mmio);
    if (r) {
        fprintf(stderr, "vio-vmm: net%u: virtio-mmio: %s\n", n->opts.index, strerror(-r));
        return r;
    }
    if ((r = vmm_add_mmio(vm, n->mmio_base, VIO_MMIO_SIZE, mmio_access, n, "virtio-mmio")))
        return r;
    vm->mmio_devs[i] = (struct vmm_mmio_dev){ .base = n->mmio_base, .len = VIO_MMIO_SIZE,
                                              .gsi = n->mmio_gsi, .uid = i };
    vm->nmmio_devs++;
    return 0;
}

/* ---- creation ------------------------------------------------------------------------------ */

static struct vnet *cards[VMM_MAX_NETS];
static unsigned ncards;

int vmm_net_add(struct vmm *vm, const struct vmm_net_opts *o)
{
    if (ncards >= VMM_MAX_NETS)
        return -ENOSPC;
    struct vnet *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->vm = vm;
    n->opts = *o;
    n->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->mmio_irqfd = n->mmio_resample = -1;
    for (unsigned q = 0; q < VNET_MAX_QUEUES; q++)
        n->call_efd[q] = -1;
    pthread_mutex_init(&n->lock, NULL);
    for (unsigned q = 0; q < VNET_MAX_QUEUES; q++)
        n->ioev[q].efd = -1;
    for (unsigned v = 0; v < VNET_MAX_VECTORS; v++)
        n->vec[v].efd = -1;
    cards[ncards++] = n; /* freed by vmm_net_fini() whatever happens below */

    int r = vio_mem_new(4, &n->mem);
    if (r)
        return r;
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    struct vio_mem_region reg = { .guest_addr = 0, .size = low, .host_ptr = vm->ram };
    if ((r = vio_mem_add(n->mem, &reg)))
        return r;
    if (vm->ram_size > low) {
        reg = (struct vio_mem_region){ .guest_addr = 1ull << 32, .size = vm->ram_size - low,
                                       .host_ptr = vm->ram + low };
        if ((r = vio_mem_add(n->mem, &reg)))
            return r;
    }

    struct vio_net_backend_config bc = { .struct_size = sizeof(bc), .ifname = o->tap,
                                         .queue_pairs = o->queues, .log = vio_log_stderr };
    /* vhost-user=: the daemon has the data path; the model's backend only exists to make a
     * model (it serves config space and the control queue, never a frame) */
    r = o->vhost_user ? vio_net_loopback_open(&bc, &n->backend) : vio_net_tap_open(&bc, &n->backend);
    if (r) {
        fprintf(stderr, "vio-vmm: net%u: tap '%s': %s\n", o->index, o->tap ? o->tap : "-", strerror(-r));
        return r;
    }
    n->backend_open = true;
    struct vio_net_dev_config nc = { .struct_size = sizeof(nc), .backend = &n->backend,
                                     .mac_valid = true, .max_queue_pairs = (uint16_t)o->queues,
                                     .log = vio_log_stderr };
    memcpy(nc.mac, o->mac, 6);
    if ((r = vio_net_dev_new(&nc, &n->nd))) {
        fprintf(stderr, "vio-vmm: net%u: device: %s\n", o->index, strerror(-r));
        return r;
    }
    n->dev = vio_net_dev_device(n->nd);
    if ((o->vhost || o->vhost_user) && (r = make_offload(vm, n)))
        return r;
    n->nq = vio_device_num_queues(n->dev);
    if (n->nq > VNET_MAX_QUEUES)
        return -E2BIG;
    for (unsigned q = 0; q < n->nq; q++)
        if ((n->ioev[q].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            return -errno;
    const char *where;
    char where_buf[96];
    if (o->pci) {
        if ((r = add_pci(vm, n)))
            return r;
        snprintf(where_buf, sizeof(where_buf), "virtio-net-pci in slot %u", n->fn.slot);
    } else {
        if ((r = add_mmio(vm, n)))
            return r;
        snprintf(where_buf, sizeof(where_buf), "virtio-mmio at %#llx, GSI %u",
                 (unsigned long long)n->mmio_base, n->mmio_gsi);
    }
    where = where_buf;

    if ((r = pthread_create(&n->thread, NULL, device_thread, n)))
        return -r;
    n->thread_on = true;
    if (vm->verbose)
        fprintf(stderr, "vio-vmm: net%u: %s, %s %s, %u queue(s), data path %s%s\n", o->index, where,
                o->vhost_user ? "vhost-user" : "tap", o->vhost_user ? o->vhost_user : vio_net_tap_ifname(&n->backend),
                n->nq, o->vhost_user ? "in the vhost-user daemon" : o->vhost ? "in vhost-net" : "in the VMM",
                o->ioeventfd ? ", ioeventfd + irqfd" : ", trapped notify + irqfd");
    return 0;
}

void vmm_net_stop(void)
{
    for (unsigned i = 0; i < ncards; i++) {
        struct vnet *n = cards[i];
        if (n->thread_on) {
            uint64_t one = 1;
            ssize_t w = write(n->wake, &one, sizeof(one));
            (void)w;
            pthread_join(n->thread, NULL);
            n->thread_on = false;
        }
    }
}

void vmm_net_print_counters(void)
{
    for (unsigned i = 0; i < ncards; i++) {
        struct vnet *n = cards[i];
        fprintf(stderr, "vio-vmm: net%u: notify trapped=%llu ioeventfd=%llu; interrupts msix=%llu intx=%llu relayed=%llu\n",
                n->opts.index, (unsigned long long)n->notify_trapped,
                (unsigned long long)n->notify_eventfd, (unsigned long long)n->irq_msix,
                (unsigned long long)n->irq_intx, (unsigned long long)n->irq_relayed);
        if (n->vd) {
            struct vio_vhost_dev_stats vs;
            if (vio_vhost_dev_get_stats(n->vd, &vs) == 0)
                fprintf(stderr, "vio-vmm: net%u: offload: rings started=%llu stopped=%llu mem tables=%llu errors=%llu%s\n",
                        n->opts.index, (unsigned long long)vs.rings_started,
                        (unsigned long long)vs.rings_stopped, (unsigned long long)vs.mem_tables,
                        (unsigned long long)vs.errors, vs.backend_lost ? " backend lost" : "");
        }
        for (unsigned q = 0; q < n->nq; q++) {
            struct vio_net_queue_stats st;
            if (vio_net_dev_get_stats(n->nd, q, &st) == 0)
                fprintf(stderr, "vio-vmm: net%u:   queue %u packets=%llu bytes=%llu\n", n->opts.index,
                        q, (unsigned long long)st.packets, (unsigned long long)st.bytes);
        }
    }
}

void vmm_net_fini(void)
{
    vmm_net_stop();
    for (unsigned i = 0; i < ncards; i++) {
        struct vnet *n = cards[i];
        vio_pci_free(n->pci);
        vio_mmio_free(n->mmio);
        vio_vhost_dev_free(n->vd);
        for (unsigned p = 0; p < n->nvhost; p++)
            vio_vhost_free(n->vhost[p]);
        for (unsigned q = 0; q < VNET_MAX_QUEUES; q++)
            if (n->call_efd[q] >= 0)
                close(n->call_efd[q]);
        if (n->mmio_irqfd >= 0)
            close(n->mmio_irqfd);
        if (n->mmio_resample >= 0)
            close(n->mmio_resample);
        vio_net_dev_free(n->nd);
        if (n->backend_open)
            vio_net_backend_destroy(&n->backend);
        vio_mem_free(n->mem);
        for (unsigned q = 0; q < VNET_MAX_QUEUES; q++)
            if (n->ioev[q].efd >= 0)
                close(n->ioev[q].efd);
        for (unsigned v = 0; v < VNET_MAX_VECTORS; v++)
            if (n->vec[v].efd >= 0)
                close(n->vec[v].efd);
        if (n->wake >= 0)
            close(n->wake);
        free(n);
    }
    ncards = 0;
}
