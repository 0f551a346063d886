/* SPDX-License-Identifier: MIT */
/*
 * Suite "transport_offload": virtio-PCI and virtio-MMIO hosting a device that runs its queues
 * elsewhere (vio_device_hooks::queue_offload / mem_regions, fed by the VMM's queue_fds /
 * mem_regions config hooks).
 *
 * A fake device model claims its queues from queue_start and records what it was handed; a
 * fake VMM hands out eventfds and a memfd-backed guest RAM. The driver side is played through
 * the register decoders (vio_pci_bar_write() / vio_mmio_write()) as Linux's probe does.
 * Asserted: the ring fields (GPAs, host pointers, size, base), the fds, the vector (the one
 * the guest wrote with MSI-X on, NO_VECTOR otherwise), that a trapped notify of a claimed
 * queue reaches the kick eventfd and never the device, vio_*_queue_interrupt(), that reset /
 * disable end the claim, that a failing queue_fds sets NEEDS_RESET, and that a caller without
 * the hooks (older struct_size) gets no offload hooks.
 *
 * End to end ("e2e"): the real offload device (vio_vhost_dev) over a vhost-user frontend
 * connected to our own vhost-user back-end (vio_vhost_user + virtio-net on the loopback, run
 * by a thread), behind vio_pci with the VMM hooks; the driver side is vio_net_driver over
 * vio_pci_driver whose accessors call the decoder. Frames go out and come back byte-identical
 * through the back-end, trapped notifies reach it through the kick eventfds, its call
 * eventfds are answered with vio_pci_queue_interrupt(), and the transport never hands a
 * back-end queue to the device's queue_notify.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/pci_regs.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/mem.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/pci.h"
#include "virtio/status.h"
#include "virtio/vhost.h"
#include "virtio/vhost_dev.h"
#include "virtio/vhost_user.h"

#define BASE 0x100000ull
#define RAM (1u << 20)
#define NQ 2u
#define QS 64u
#define NVEC 4u

/* ring placement of queue q */
#define DESC(q) (BASE + 0x1000u + (q) * 0x4000u)
#define AVAIL(q) (DESC(q) + 0x1000u)
#define USED(q) (DESC(q) + 0x2000u)

/* ------------------------------------------------------------------------ */
/* Fake device model                                                         */

struct fdev {
    struct vio_device dev;
    struct vio_device_hooks h;
    bool bound;
    bool offload; /* claim the queues from queue_start */
    struct vio_queue *q[NQ];
    uint16_t stop_base; /* written back into the queue at stop, as an offload device does */
    unsigned starts[NQ], stops[NQ], notifies, resets;
    int offload_rc[NQ];
    struct vio_device_queue_offload got[NQ];
    int nregions;
    struct vio_device_mem_region reg[4];
};

static uint32_t fd_id(void *o)
{
    (void)o;
    return VIO_DEVICE_ID_NET;
}

static uint64_t fd_features(void *o)
{
    (void)o;
    return vio_feature_bit(VIO_F_VERSION_1);
}

static unsigned fd_nq(void *o)
{
    (void)o;
    return NQ;
}

static int fd_qinfo(void *o, unsigned qidx, struct vio_device_queue_info *out)
{
    (void)o;
    if (qidx >= NQ)
        return -ERANGE;
    *out = (struct vio_device_queue_info){.max_size = QS, .dir = VIO_QUEUE_DIR_ANY,
                                          .name = qidx ? "q1" : "q0"};
    return 0;
}

static int fd_set_features(void *o, uint64_t f)
{
    (void)o;
    (void)f;
    return 0;
}

static int fd_qstart(void *o, unsigned qidx, struct vio_queue *q)
{
    struct fdev *d = o;
    d->q[qidx] = q;
    d->starts[qidx]++;
    if (!d->offload)
        return 0;
    if (d->h.mem_regions)
        d->nregions = d->h.mem_regions(d->h.opaque, d->reg, 4);
    if (!d->h.queue_offload)
        return d->offload_rc[qidx] = -ENOTSUP;
    memset(&d->got[qidx], 0xa5, sizeof(d->got[qidx]));
    d->got[qidx].struct_size = sizeof(d->got[qidx]);
    d->offload_rc[qidx] = d->h.queue_offload(d->h.opaque, qidx, &d->got[qidx]);
    return d->offload_rc[qidx];
}

static void fd_qstop(void *o, unsigned qidx)
{
    struct fdev *d = o;
    d->stops[qidx]++;
    if (d->q[qidx] && d->stop_base)
        vio_queue_set_last_avail(d->q[qidx], d->stop_base);
    d->q[qidx] = NULL;
}

static int fd_qnotify(void *o, unsigned qidx)
{
    struct fdev *d = o;
    (void)qidx;
    d->notifies++;
    return 0;
}

static void fd_reset(void *o)
{
    ((struct fdev *)o)->resets++;
}

static int fd_bind(void *o, const struct vio_device_hooks *h)
{
    struct fdev *d = o;
    d->bound = h != NULL;
    if (h)
        d->h = *h;
    else
        memset(&d->h, 0, sizeof(d->h));
    return 0;
}

static const struct vio_device_ops FD_OPS = {
    .name = "fake-offload", .device_id = fd_id, .features = fd_features, .num_queues = fd_nq,
    .queue_info = fd_qinfo, .set_features = fd_set_features, .queue_start = fd_qstart,
    .queue_stop = fd_qstop, .queue_notify = fd_qnotify, .reset = fd_reset, .bind = fd_bind};

/* ------------------------------------------------------------------------ */
/* Fake VMM                                                                  */

struct vmm {
    int memfd;
    uint8_t *ram;
    struct vio_mem *mem;
    int kick[NQ], call[NQ];
    int fds_rc;
    unsigned fds_calls;
    uint16_t vec[NQ];
    unsigned fired[NVEC], intx_level, intx_raises;
    uint32_t mmio_bits;
    unsigned mmio_raises;
};

static struct fdev D;
static struct vmm V;
static struct vio_pci *P;
static struct vio_mmio *M;

static int vmm_mem_regions(void *o, struct vio_device_mem_region *out, unsigned cap)
{
    struct vmm *v = o;
    if (cap >= 1)
        out[0] = (struct vio_device_mem_region){.guest_addr = BASE, .size = RAM,
                                                .host_addr = (uint64_t)(uintptr_t)v->ram,
                                                .fd = v->memfd, .fd_offset = 0};
    return 1;
}

static int vmm_queue_fds(void *o, unsigned qidx, uint16_t vector, int *kick, int *call)
{
    struct vmm *v = o;
    ck_assert_uint_lt(qidx, NQ);
    v->fds_calls++;
    v->vec[qidx] = vector;
    if (v->fds_rc < 0)
        return v->fds_rc;
    *kick = v->kick[qidx];
    *call = v->call[qidx];
    return 0;
}

static void vmm_fire(void *o, uint16_t vec)
{
    struct vmm *v = o;
    ck_assert_uint_lt(vec, NVEC);
    v->fired[vec]++;
}

static void vmm_intx(void *o, int level)
{
    struct vmm *v = o;
    v->intx_level = (unsigned)level;
    if (level)
        v->intx_raises++;
}

static void vmm_raise(void *o, uint32_t bits)
{
    struct vmm *v = o;
    v->mmio_bits |= bits;
    v->mmio_raises++;
}

static void vmm_lower(void *o)
{
    ((struct vmm *)o)->mmio_bits = 0;
}

static void tlog(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (getenv("OFFLOAD_LOG"))
        fprintf(stderr, "%s: %d: %s\n", obj, level, msg);
}

static void setup(void)
{
    memset(&D, 0, sizeof(D));
    D.dev = (struct vio_device){.ops = &FD_OPS, .opaque = &D};
    D.offload = true;
    memset(&V, 0, sizeof(V));
    V.memfd = memfd_create("guest-ram", MFD_CLOEXEC);
    ck_assert_int_ge(V.memfd, 0);
    ck_assert_int_eq(ftruncate(V.memfd, RAM), 0);
    V.ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, V.memfd, 0);
    ck_assert_ptr_ne(V.ram, MAP_FAILED);
    ck_assert_int_eq(vio_mem_new(0, &V.mem), 0);
    struct vio_mem_region r = {.guest_addr = BASE, .size = RAM, .host_ptr = V.ram};
    ck_assert_int_eq(vio_mem_add(V.mem, &r), 0);
    for (unsigned i = 0; i < NQ; i++) {
        V.kick[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        V.call[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ck_assert_int_ge(V.kick[i], 0);
        ck_assert_int_ge(V.call[i], 0);
        V.vec[i] = 0x1234;
    }
    P = NULL;
    M = NULL;
}

static void teardown(void)
{
    vio_pci_free(P);
    vio_mmio_free(M);
    P = NULL;
    M = NULL;
    for (unsigned i = 0; i < NQ; i++) {
        close(V.kick[i]);
        close(V.call[i]);
    }
    vio_mem_free(V.mem);
    munmap(V.ram, RAM);
    close(V.memfd);
}

/* the eventfd's counter, 0 when nothing was written */
static uint64_t efd_take(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    return v;
}

/* ------------------------------------------------------------------------ */
/* virtio-PCI driver side                                                    */

static struct vio_pci_layout L;

static void pci_new(bool with_hooks, size_t struct_size)
{
    vio_pci_layout_default(&L);
    struct vio_pci_config c = {.struct_size = (uint32_t)struct_size, .dev = &D.dev,
                               .mem = V.mem, .layout = L, .msix_vectors = NVEC, .log = tlog,
                               .msix_fire = vmm_fire, .set_intx = vmm_intx, .irq_opaque = &V};
    if (with_hooks) {
        c.mem_regions = vmm_mem_regions;
        c.queue_fds = vmm_queue_fds;
        c.offload_opaque = &V;
    }
    ck_assert_int_eq(vio_pci_new(&c, &P), 0);
}

static void cw(uint32_t off, unsigned size, uint64_t val)
{
    ck_assert_int_eq(vio_pci_bar_write(P, L.bar, L.common_off + off, size, val), 0);
}

static uint64_t cr(uint32_t off, unsigned size)
{
    uint64_t v = 0;
    ck_assert_int_eq(vio_pci_bar_read(P, L.bar, L.common_off + off, size, &v), 0);
    return v;
}

static unsigned pci_find_cap(uint8_t id)
{
    uint32_t v = 0;
    ck_assert_int_eq(vio_pci_config_read(P, PCI_CAPABILITY_LIST, 1, &v), 0);
    for (unsigned at = v, n = 0; at && n < 48; n++) {
        uint32_t hdr = 0;
        ck_assert_int_eq(vio_pci_config_read(P, at, 2, &hdr), 0);
        if ((hdr & 0xff) == id)
            return at;
        at = hdr >> 8;
    }
    ck_abort_msg("capability 0x%x not found", id);
    return 0;
}

static void pci_msix(bool on)
{
    unsigned cap = pci_find_cap(PCI_CAP_ID_MSIX);
    ck_assert_int_eq(vio_pci_config_write(P, cap + PCI_MSIX_FLAGS, 2,
                                          on ? PCI_MSIX_FLAGS_ENABLE : 0), 0);
    ck_assert(vio_pci_msix_enabled(P) == on);
}

static void pci_unmask(uint16_t vec)
{
    ck_assert_int_eq(vio_pci_bar_write(P, L.msix_bar, L.msix_table_off + vec * 16u + 12u, 4,
                                       0), 0);
}

/* Linux's probe up to DRIVER_OK, queue q on vector 1 + q. */
static void pci_up(void)
{
    cw(VIRTIO_PCI_COMMON_STATUS, 1, 1);
    cw(VIRTIO_PCI_COMMON_STATUS, 1, 3);
    cw(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    cw(VIRTIO_PCI_COMMON_GF, 4, 1); /* VERSION_1 */
    cw(VIRTIO_PCI_COMMON_STATUS, 1, 0xb);
    ck_assert_uint_eq(cr(VIRTIO_PCI_COMMON_STATUS, 1), 0xb);
    for (unsigned q = 0; q < NQ; q++) {
        cw(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        cw(VIRTIO_PCI_COMMON_Q_SIZE, 2, QS);
        cw(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1 + q);
        cw(VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)DESC(q));
        cw(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
        cw(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)AVAIL(q));
        cw(VIRTIO_PCI_COMMON_Q_AVAILHI, 4, 0);
        cw(VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)USED(q));
        cw(VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
        cw(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    }
    cw(VIRTIO_PCI_COMMON_STATUS, 1, 0xf);
}

static void pci_notify(unsigned q)
{
    struct vio_pci_notify_info ni;
    ck_assert_int_eq(vio_pci_notify_info(P, q, &ni), 0);
    ck_assert_int_eq(vio_pci_bar_write(P, ni.bar, ni.offset, ni.size, ni.value), 0);
}

static void assert_claim(unsigned q, uint16_t want_vec)
{
    const struct vio_device_queue_offload *o = &D.got[q];
    ck_assert_int_eq(D.offload_rc[q], 0);
    ck_assert_uint_eq(o->struct_size, sizeof(*o));
    ck_assert_uint_eq(o->size, QS);
    ck_assert_uint_eq(o->base, D.stop_base);
    ck_assert_uint_eq(o->desc_gpa, DESC(q));
    ck_assert_uint_eq(o->avail_gpa, AVAIL(q));
    ck_assert_uint_eq(o->used_gpa, USED(q));
    ck_assert_uint_eq(o->desc_host, (uint64_t)(uintptr_t)(V.ram + (DESC(q) - BASE)));
    ck_assert_uint_eq(o->avail_host, (uint64_t)(uintptr_t)(V.ram + (AVAIL(q) - BASE)));
    ck_assert_uint_eq(o->used_host, (uint64_t)(uintptr_t)(V.ram + (USED(q) - BASE)));
    ck_assert_int_eq(o->kick_fd, V.kick[q]);
    ck_assert_int_eq(o->call_fd, V.call[q]);
    ck_assert_int_eq(o->err_fd, -1);
    ck_assert_uint_eq(V.vec[q], want_vec);
}

START_TEST(pci_claim_msix)
{
    pci_new(true, sizeof(struct vio_pci_config));
    ck_assert_ptr_nonnull(D.h.queue_offload);
    ck_assert_ptr_nonnull(D.h.mem_regions);
    pci_msix(true);
    pci_up();
    ck_assert_uint_eq(vio_pci_status(P), 0xf);
    ck_assert_uint_eq(V.fds_calls, NQ);
    for (unsigned q = 0; q < NQ; q++) {
        ck_assert_uint_eq(D.starts[q], 1);
        assert_claim(q, (uint16_t)(1 + q));
    }
    /* mem_regions forwarded as the VMM gave it */
    ck_assert_int_eq(D.nregions, 1);
    ck_assert_uint_eq(D.reg[0].guest_addr, BASE);
    ck_assert_uint_eq(D.reg[0].size, RAM);
    ck_assert_uint_eq(D.reg[0].host_addr, (uint64_t)(uintptr_t)V.ram);
    ck_assert_int_eq(D.reg[0].fd, V.memfd);
    /* a claimed queue's interrupt through the VMM: the queue's vector, once unmasked */
    pci_unmask(2);
    ck_assert_int_eq(vio_pci_queue_interrupt(P, 1), 0);
    ck_assert_uint_eq(V.fired[2], 1);
    ck_assert_uint_eq(V.fired[1], 0);
    ck_assert_uint_eq(V.intx_raises, 0);
    /* masked vector 1: pending, fires on unmask */
    ck_assert_int_eq(vio_pci_queue_interrupt(P, 0), 0);
    ck_assert_uint_eq(V.fired[1], 0);
    pci_unmask(1);
    ck_assert_uint_eq(V.fired[1], 1);
}
END_TEST

START_TEST(pci_claim_intx)
{
    pci_new(true, sizeof(struct vio_pci_config));
    pci_up(); /* vectors written, MSI-X never enabled */
    for (unsigned q = 0; q < NQ; q++)
        assert_claim(q, VIO_PCI_NO_VECTOR);
    /* vio_pci_queue_interrupt(): ISR queue bit + INTx */
    ck_assert_int_eq(vio_pci_queue_interrupt(P, 0), 0);
    ck_assert_uint_eq(V.intx_level, 1);
    ck_assert_uint_eq(V.intx_raises, 1);
    uint64_t isr = 0;
    ck_assert_int_eq(vio_pci_bar_read(P, L.bar, L.isr_off, 1, &isr), 0);
    ck_assert_uint_eq(isr, VIO_PCI_ISR_QUEUE);
    ck_assert_uint_eq(V.intx_level, 0); /* the read acknowledged */
    ck_assert_int_eq(vio_pci_queue_interrupt(P, NQ), -ENOENT);
    ck_assert_int_eq(vio_pci_queue_interrupt(P, 1000), -ENOENT);
    ck_assert_int_eq(vio_pci_queue_interrupt(NULL, 0), -EINVAL);
}
END_TEST

START_TEST(pci_notify_forwarded)
{
    pci_new(true, sizeof(struct vio_pci_config));
    pci_msix(true);
    pci_up();
    pci_notify(0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 1);
    ck_assert_uint_eq(efd_take(V.kick[1]), 0);
    pci_notify(1);
    pci_notify(1);
    ck_assert_uint_eq(efd_take(V.kick[1]), 2);
    ck_assert_int_eq(vio_pci_queue_notify(P, 0), 0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 1);
    ck_assert_uint_eq(D.notifies, 0); /* the transport never processes a claimed queue */
    ck_assert_int_eq(vio_pci_queue_notify(P, NQ), -ERANGE);
}
END_TEST

START_TEST(pci_reset_ends_claim)
{
    pci_new(true, sizeof(struct vio_pci_config));
    pci_msix(true);
    pci_up();
    cw(VIRTIO_PCI_COMMON_STATUS, 1, 0);
    ck_assert_uint_eq(D.stops[0], 1);
    ck_assert_uint_eq(D.stops[1], 1);
    /* the fds are the VMM's again: no notify reaches them */
    ck_assert_int_eq(vio_pci_queue_notify(P, 0), -EIO);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
    /* a driver that comes back gets the queues claimed afresh */
    D.offload = false;
    pci_up();
    ck_assert_uint_eq(D.starts[0], 2);
    ck_assert_int_eq(vio_pci_queue_notify(P, 0), 0);
    ck_assert_uint_eq(D.notifies, 1);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
}
END_TEST

START_TEST(pci_fds_fail_needs_reset)
{
    pci_new(true, sizeof(struct vio_pci_config));
    V.fds_rc = -EMFILE;
    pci_msix(true);
    pci_up();
    ck_assert_int_eq(D.offload_rc[0], -EMFILE);
    ck_assert(vio_pci_status(P) & VIO_S_NEEDS_RESET);
    pci_notify(0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
    ck_assert_uint_eq(D.notifies, 0);
}
END_TEST

START_TEST(pci_msix_toggle_restarts)
{
    pci_new(true, sizeof(struct vio_pci_config));
    pci_msix(true);
    pci_up();
    assert_claim(0, 1);
    D.stop_base = 9; /* the index the device stopped at is where it starts again */
    pci_msix(false);
    ck_assert_uint_eq(D.stops[0], 1);
    ck_assert_uint_eq(D.starts[0], 2);
    assert_claim(0, VIO_PCI_NO_VECTOR);
    assert_claim(1, VIO_PCI_NO_VECTOR);
    pci_msix(true);
    ck_assert_uint_eq(D.starts[1], 3);
    assert_claim(1, 2);
    pci_notify(1);
    ck_assert_uint_eq(efd_take(V.kick[1]), 1);
}
END_TEST

START_TEST(pci_without_hooks)
{
    /* a caller built before the hooks existed: no offload for the device */
    pci_new(true, offsetof(struct vio_pci_config, mem_regions));
    ck_assert(D.bound);
    ck_assert_ptr_null(D.h.queue_offload);
    ck_assert_ptr_null(D.h.mem_regions);
    pci_msix(true);
    pci_up();
    ck_assert_int_eq(D.offload_rc[0], -ENOTSUP);
    ck_assert(vio_pci_status(P) & VIO_S_NEEDS_RESET);
    ck_assert_uint_eq(V.fds_calls, 0);
}
END_TEST

START_TEST(pci_plain_device_with_hooks)
{
    /* hooks given, device does not claim: everything as before */
    pci_new(true, sizeof(struct vio_pci_config));
    D.offload = false;
    pci_msix(true);
    pci_up();
    ck_assert_uint_eq(V.fds_calls, 0);
    pci_notify(0);
    ck_assert_uint_eq(D.notifies, 1);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
}
END_TEST

START_TEST(pci_disable_via_queue_reset_status)
{
    /* NEEDS_RESET set by the VMM ends the claim too */
    pci_new(true, sizeof(struct vio_pci_config));
    pci_up();
    vio_pci_set_needs_reset(P);
    ck_assert_uint_eq(D.stops[0], 1);
    ck_assert_int_eq(vio_pci_queue_notify(P, 0), -EIO);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* virtio-MMIO driver side                                                   */

static void mmio_new(bool with_hooks, size_t struct_size)
{
    struct vio_mmio_config c = {.struct_size = (uint32_t)struct_size, .dev = &D.dev,
                                .mem = V.mem, .log = tlog, .raise_irq = vmm_raise,
                                .lower_irq = vmm_lower, .irq_opaque = &V};
    if (with_hooks) {
        c.mem_regions = vmm_mem_regions;
        c.queue_fds = vmm_queue_fds;
        c.offload_opaque = &V;
    }
    ck_assert_int_eq(vio_mmio_new(&c, &M), 0);
}

static void mw(uint32_t off, uint32_t val)
{
    ck_assert_int_eq(vio_mmio_write(M, off, 4, val), 0);
}

static uint32_t mr(uint32_t off)
{
    uint64_t v = 0;
    ck_assert_int_eq(vio_mmio_read(M, off, 4, &v), 0);
    return (uint32_t)v;
}

static void mmio_up(void)
{
    mw(VIRTIO_MMIO_STATUS, 1);
    mw(VIRTIO_MMIO_STATUS, 3);
    mw(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mw(VIRTIO_MMIO_DRIVER_FEATURES, 1);
    mw(VIRTIO_MMIO_STATUS, 0xb);
    ck_assert_uint_eq(mr(VIRTIO_MMIO_STATUS), 0xb);
    for (unsigned q = 0; q < NQ; q++) {
        mw(VIRTIO_MMIO_QUEUE_SEL, q);
        mw(VIRTIO_MMIO_QUEUE_NUM, QS);
        mw(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)DESC(q));
        mw(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
        mw(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)AVAIL(q));
        mw(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
        mw(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)USED(q));
        mw(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
        mw(VIRTIO_MMIO_QUEUE_READY, 1);
    }
    mw(VIRTIO_MMIO_STATUS, 0xf);
}

START_TEST(mmio_claim_notify_interrupt)
{
    mmio_new(true, sizeof(struct vio_mmio_config));
    ck_assert_ptr_nonnull(D.h.queue_offload);
    mmio_up();
    ck_assert_uint_eq(vio_mmio_status(M), 0xf);
    for (unsigned q = 0; q < NQ; q++)
        assert_claim(q, VIO_PCI_NO_VECTOR);
    ck_assert_int_eq(D.nregions, 1);
    ck_assert_int_eq(D.reg[0].fd, V.memfd);
    /* trapped QueueNotify: forwarded to the kick eventfd, never to the device */
    mw(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    ck_assert_uint_eq(efd_take(V.kick[1]), 1);
    ck_assert_int_eq(vio_mmio_queue_notify(M, 0), 0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 1);
    ck_assert_uint_eq(D.notifies, 0);
    /* the VMM answers the call eventfd */
    ck_assert_int_eq(vio_mmio_queue_interrupt(M, 0), 0);
    ck_assert_uint_eq(vio_mmio_interrupt_status(M), VIO_MMIO_INT_VRING);
    ck_assert_uint_eq(V.mmio_bits, VIO_MMIO_INT_VRING);
    ck_assert_uint_eq(V.mmio_raises, 1);
    mw(VIRTIO_MMIO_INTERRUPT_ACK, VIO_MMIO_INT_VRING);
    ck_assert_uint_eq(vio_mmio_interrupt_status(M), 0);
    ck_assert_uint_eq(V.mmio_bits, 0);
    ck_assert_int_eq(vio_mmio_queue_interrupt(M, NQ), -ENOENT);
    ck_assert_int_eq(vio_mmio_queue_interrupt(NULL, 0), -EINVAL);
}
END_TEST

START_TEST(mmio_reset_and_disable_end_claim)
{
    mmio_new(true, sizeof(struct vio_mmio_config));
    mmio_up();
    /* QueueReady = 0 on queue 1 */
    mw(VIRTIO_MMIO_QUEUE_SEL, 1);
    mw(VIRTIO_MMIO_QUEUE_READY, 0);
    ck_assert_uint_eq(D.stops[1], 1);
    ck_assert_int_eq(vio_mmio_queue_notify(M, 1), -EIO);
    ck_assert_uint_eq(efd_take(V.kick[1]), 0);
    /* queue 0 still claimed */
    mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 1);
    mw(VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(D.stops[0], 1);
    ck_assert_int_eq(vio_mmio_queue_notify(M, 0), -EIO);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
    ck_assert_uint_eq(D.notifies, 0);
}
END_TEST

START_TEST(mmio_fds_fail_needs_reset)
{
    mmio_new(true, sizeof(struct vio_mmio_config));
    V.fds_rc = -ENOSPC;
    mmio_up();
    ck_assert_int_eq(D.offload_rc[0], -ENOSPC);
    ck_assert(vio_mmio_status(M) & VIO_S_NEEDS_RESET);
    ck_assert(vio_mmio_interrupt_status(M) & VIO_MMIO_INT_CONFIG);
    mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    ck_assert_uint_eq(efd_take(V.kick[0]), 0);
}
END_TEST

START_TEST(mmio_without_hooks)
{
    mmio_new(false, offsetof(struct vio_mmio_config, mem_regions));
    ck_assert_ptr_null(D.h.queue_offload);
    ck_assert_ptr_null(D.h.mem_regions);
    D.offload = false;
    mmio_up();
    mw(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    ck_assert_uint_eq(D.notifies, 1);
}
END_TEST


/* ------------------------------------------------------------------------ */
/* End to end: vio_vhost_dev over vhost-user to our own back-end, behind PCI */

#define E_GPA 0x40000000ull
#define E_MEM (4u << 20)
#define E_QSZ 64u

static void elog(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (getenv("OFFLOAD_LOG") || level == VIO_LOG_ERROR)
        fprintf(stderr, "[%d] %s: %s\n", level, obj, msg);
}

struct ebe {
    struct vio_net_backend nb;
    struct vio_net_dev *nd;
    struct vio_vhost_user *vu;
    pthread_t th;
    atomic_bool stop;
};

static void *ebe_thread(void *arg)
{
    struct ebe *b = arg;
    while (!atomic_load(&b->stop)) {
        struct vio_device_watch w[32];
        int n = vio_vhost_user_watches(b->vu, w, 32);
        if (n > 32)
            n = 32;
        struct pollfd p[32];
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = w[i].fd, .events = (short)w[i].events};
        int t = vio_vhost_user_timeout_ms(b->vu);
        if (t < 0 || t > 5)
            t = 5;
        int k = poll(p, (nfds_t)(n < 0 ? 0 : n), t);
        vio_vhost_user_tick(b->vu);
        for (int i = 0; k > 0 && i < n; i++)
            if (p[i].revents)
                vio_vhost_user_dispatch(b->vu, w[i].id, (unsigned)p[i].revents);
    }
    return NULL;
}

/* A pass-through device around the offload device: counts what the transport asks of it. */
struct shim {
    struct vio_device dev;
    struct vio_device *in;
    unsigned notifies, starts, stops;
};

#define SH(o) (((struct shim *)(o))->in)
static uint32_t sh_id(void *o) { return vio_device_id(SH(o)); }
static uint64_t sh_features(void *o) { return vio_device_features(SH(o)); }
static uint32_t sh_cfg_size(void *o) { return vio_device_config_size(SH(o)); }
static int sh_cfg_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    return vio_device_config_read(SH(o), off, buf, len);
}
static int sh_cfg_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    return vio_device_config_write(SH(o), off, buf, len);
}
static uint32_t sh_gen(void *o) { return vio_device_config_generation(SH(o)); }
static unsigned sh_nq(void *o) { return vio_device_num_queues(SH(o)); }
static int sh_qinfo(void *o, unsigned q, struct vio_device_queue_info *out)
{
    return vio_device_queue_info(SH(o), q, out);
}
static int sh_setf(void *o, uint64_t f) { return vio_device_set_features(SH(o), f); }
static int sh_start(void *o, unsigned q, struct vio_queue *vq)
{
    ((struct shim *)o)->starts++;
    return vio_device_queue_start(SH(o), q, vq);
}
static void sh_stop(void *o, unsigned q)
{
    ((struct shim *)o)->stops++;
    vio_device_queue_stop(SH(o), q);
}
static int sh_notify(void *o, unsigned q)
{
    ((struct shim *)o)->notifies++;
    return vio_device_queue_notify(SH(o), q);
}
static void sh_reset(void *o) { vio_device_reset(SH(o)); }
static int sh_bind(void *o, const struct vio_device_hooks *h) { return vio_device_bind(SH(o), h); }

static const struct vio_device_ops SH_OPS = {
    .name = "shim", .device_id = sh_id, .features = sh_features, .config_size = sh_cfg_size,
    .config_read = sh_cfg_read, .config_write = sh_cfg_write, .config_generation = sh_gen,
    .num_queues = sh_nq, .queue_info = sh_qinfo, .set_features = sh_setf,
    .queue_start = sh_start, .queue_stop = sh_stop, .queue_notify = sh_notify,
    .reset = sh_reset, .bind = sh_bind};

struct e2e {
    char dir[32], sock[80];
    struct ebe be;
    int memfd;
    uint8_t *mem;
    struct vio_mem *gm;
    struct vio_vhost *v;
    struct vio_net_backend mnb;
    struct vio_net_dev *model;
    struct vio_vhost_dev *vd;
    struct shim sh;
    struct vio_pci *p;
    struct vio_pci_driver *pd;
    struct vio_driver drv;
    struct vio_net_driver *nd;
    uint64_t feats;
    int kick[NQ], call[NQ];
    unsigned fds_calls;
    uint16_t vec[NQ];
    unsigned intx_raises, fired;
    unsigned sent, got;
};

static struct e2e E;
static unsigned e_fired_vec[NVEC];

static int e_mem_regions(void *o, struct vio_device_mem_region *out, unsigned cap)
{
    struct e2e *e = o;
    if (cap >= 1)
        out[0] = (struct vio_device_mem_region){.guest_addr = E_GPA, .size = E_MEM,
                                                .host_addr = (uint64_t)(uintptr_t)e->mem,
                                                .fd = e->memfd, .fd_offset = 0};
    return 1;
}

static int e_queue_fds(void *o, unsigned qidx, uint16_t vector, int *kick, int *call)
{
    struct e2e *e = o;
    if (qidx >= NQ)
        return -ERANGE;
    e->fds_calls++;
    e->vec[qidx] = vector;
    *kick = e->kick[qidx];
    *call = e->call[qidx];
    return 0;
}

static void e_intx(void *o, int level)
{
    if (level)
        ((struct e2e *)o)->intx_raises++;
}

static void e_fire(void *o, uint16_t v)
{
    ck_assert_uint_lt(v, NVEC);
    e_fired_vec[v]++;
    ((struct e2e *)o)->fired++;
}

static int e_cfg_read(void *o, unsigned off, unsigned size, uint32_t *v)
{
    return vio_pci_config_read(((struct e2e *)o)->p, off, size, v);
}
static int e_cfg_write(void *o, unsigned off, unsigned size, uint32_t v)
{
    return vio_pci_config_write(((struct e2e *)o)->p, off, size, v);
}
static int e_bar_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                      uint64_t *v)
{
    (void)base;
    return vio_pci_bar_read(((struct e2e *)o)->p, bar, off, size, v);
}
static int e_bar_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                       uint64_t v)
{
    (void)base;
    return vio_pci_bar_write(((struct e2e *)o)->p, bar, off, size, v);
}
static const struct vio_pci_driver_io EIO_OPS = {e_cfg_read, e_cfg_write, e_bar_read,
                                                 e_bar_write, NULL, NULL};

static void e2e_open(void)
{
    struct e2e *e = &E;
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/vio-tro-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    snprintf(e->sock, sizeof(e->sock), "%.31s/sock", e->dir);
    /* the back-end: our vhost-user server over virtio-net on the loopback, on a thread */
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 1};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &e->be.nb), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &e->be.nb,
                                    .queue_size = 256, .mac = {2, 0, 0, 0, 0, 1},
                                    .mac_valid = true, .log = elog};
    ck_assert_int_eq(vio_net_dev_new(&nc, &e->be.nd), 0);
    struct vio_vhost_user_config uc = {.struct_size = sizeof(uc), .socket_path = e->sock,
                                       .dev = vio_net_dev_device(e->be.nd), .log = elog};
    ck_assert_int_eq(vio_vhost_user_new(&uc, &e->be.vu), 0);
    atomic_store(&e->be.stop, false);
    ck_assert_int_eq(pthread_create(&e->be.th, NULL, ebe_thread, &e->be), 0);
    /* the VMM: guest RAM in a memfd, an eventfd pair per queue */
    e->memfd = memfd_create("vio-tro-guest", MFD_CLOEXEC);
    ck_assert_int_ge(e->memfd, 0);
    ck_assert_int_eq(ftruncate(e->memfd, E_MEM), 0);
    e->mem = mmap(NULL, E_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
    ck_assert_ptr_ne(e->mem, MAP_FAILED);
    ck_assert_int_eq(vio_mem_new(0, &e->gm), 0);
    struct vio_mem_region r = {.guest_addr = E_GPA, .size = E_MEM, .host_ptr = e->mem};
    ck_assert_int_eq(vio_mem_add(e->gm, &r), 0);
    for (unsigned i = 0; i < NQ; i++) {
        e->kick[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        e->call[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ck_assert_int_ge(e->kick[i], 0);
        ck_assert_int_ge(e->call[i], 0);
        e->vec[i] = 0x1234;
    }
    /* the offload device: a vhost-user frontend and a model for the config space */
    struct vio_vhost_user_frontend_config fc = {.struct_size = sizeof(fc), .path = e->sock,
                                                .timeout_ms = 3000, .log = elog};
    ck_assert_int_eq(vio_vhost_user_connect(&fc, &e->v), 0);
    struct vio_net_backend_config mbc = {.struct_size = sizeof(mbc), .queue_pairs = 1};
    ck_assert_int_eq(vio_net_loopback_open(&mbc, &e->mnb), 0);
    struct vio_net_dev_config mc = {.struct_size = sizeof(mc), .backend = &e->mnb,
                                    .mac = {2, 0, 0, 0, 0, 7}, .mac_valid = true, .log = elog};
    ck_assert_int_eq(vio_net_dev_new(&mc, &e->model), 0);
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhost = e->v,
                                      .model = vio_net_dev_device(e->model),
                                      .net_backend_fd = -1, .log = elog};
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &e->vd), 0);
    e->sh = (struct shim){.dev = {.ops = &SH_OPS, .opaque = &e->sh},
                          .in = vio_vhost_dev_device(e->vd)};
    /* the transport, with the VMM's offload hooks */
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = &e->sh.dev, .mem = e->gm,
                                .msix_vectors = NVEC, .log = elog, .msix_fire = e_fire,
                                .set_intx = e_intx, .irq_opaque = e,
                                .mem_regions = e_mem_regions, .queue_fds = e_queue_fds,
                                .offload_opaque = e};
    vio_pci_layout_default(&pc.layout);
    ck_assert_int_eq(vio_pci_new(&pc, &e->p), 0);
    /* the driver */
    struct vio_pci_driver_config dcfg = {.struct_size = sizeof(dcfg), .io = &EIO_OPS,
                                         .io_opaque = e, .bar_window = 0xe0000000u,
                                         .bar_window_size = 1u << 20, .log = elog};
    ck_assert_int_eq(vio_pci_driver_new(&dcfg, &e->pd), 0);
    e->drv = vio_pci_driver_get(e->pd);
}

/* Negotiate; with @p msix, MSI-X on with queue q on vector 1 + q (entries unmasked). Then the
 * net driver sets the queues up and starts the device. */
static void e2e_up_msix(bool msix)
{
    struct e2e *e = &E;
    uint64_t want = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_NET_F_MRG_RXBUF);
    ck_assert_int_eq(vio_driver_negotiate(&e->drv, want, &e->feats), 0);
    ck_assert_uint_eq(e->feats, want);
    if (msix) {
        for (uint16_t v = 0; v < NVEC; v++)
            ck_assert_int_eq(vio_pci_driver_msix_set_entry(e->pd, v, 0xfee00000u + v * 4u,
                                                           0x40 + v, false), 0);
        ck_assert_int_eq(vio_pci_driver_msix_enable(e->pd, true), 0);
        ck_assert_int_eq(vio_driver_set_config_vector(&e->drv, 0), 0);
        for (unsigned q = 0; q < NQ; q++)
            ck_assert_int_eq(vio_driver_set_queue_vector(&e->drv, q, (uint16_t)(1 + q)), 0);
    }
    struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = e->gm, .area = E_GPA,
                                       .features = e->feats, .queue_size = E_QSZ, .log = elog};
    nc.area_size = vio_net_driver_area_size(&nc);
    ck_assert_uint_gt(nc.area_size, 0);
    ck_assert_uint_le(nc.area_size, E_MEM);
    ck_assert_int_eq(vio_net_driver_new(&nc, &e->nd), 0);
    ck_assert_int_eq(vio_net_driver_attach(e->nd, &e->drv), 0);
    ck_assert_int_gt(vio_net_driver_rx_fill(e->nd, 0), 0);
    ck_assert_int_ge(vio_net_driver_kick(e->nd, VIO_NET_DRIVER_RXQ(0)), 0);
}

static void e2e_up(void)
{
    e2e_up_msix(false);
}

static void e2e_close(void)
{
    struct e2e *e = &E;
    vio_net_driver_free(e->nd);
    vio_pci_driver_free(e->pd);
    vio_pci_free(e->p);
    vio_vhost_dev_free(e->vd);
    vio_net_dev_free(e->model);
    vio_net_backend_destroy(&e->mnb);
    vio_vhost_free(e->v);
    atomic_store(&e->be.stop, true);
    pthread_join(e->be.th, NULL);
    vio_vhost_user_free(e->be.vu);
    vio_net_dev_free(e->be.nd);
    vio_net_backend_destroy(&e->be.nb);
    for (unsigned i = 0; i < NQ; i++) {
        close(e->kick[i]);
        close(e->call[i]);
    }
    vio_mem_free(e->gm);
    munmap(e->mem, E_MEM);
    close(e->memfd);
    unlink(e->sock);
    rmdir(e->dir);
}

static size_t eframe(uint8_t *buf, unsigned seq, size_t len)
{
    memset(buf, 0xff, 6); /* broadcast */
    const uint8_t src[6] = {2, 0, 0, 0, 0, 2};
    memcpy(buf + 6, src, 6);
    buf[12] = 0x88;
    buf[13] = 0xb5;
    for (size_t i = 14; i < len; i++)
        buf[i] = (uint8_t)(seq * 31u + i);
    memcpy(buf + 14, &seq, sizeof(seq));
    return len;
}

/* The VMM's side of the call eventfds: raise the queue's interrupt through the transport. */
static bool e2e_calls(int timeout_ms)
{
    struct e2e *e = &E;
    struct pollfd p[NQ];
    for (unsigned i = 0; i < NQ; i++)
        p[i] = (struct pollfd){.fd = e->call[i], .events = POLLIN};
    bool any = false;
    if (poll(p, NQ, timeout_ms) <= 0)
        return false;
    for (unsigned i = 0; i < NQ; i++) {
        if (p[i].revents && efd_take(e->call[i])) {
            ck_assert_int_eq(vio_pci_queue_interrupt(e->p, i), 0);
            any = true;
        }
    }
    return any;
}

/* Send @p n frames through the back-end's loopback and receive them back byte-identical. */
static void e2e_traffic(unsigned n)
{
    struct e2e *e = &E;
    uint8_t tx[1500], rx[2048];
    unsigned first = e->sent;
    for (unsigned i = 0; i < n; i++) {
        size_t len = eframe(tx, e->sent, 60 + (e->sent % 7) * 200);
        int r;
        while ((r = vio_net_driver_send(e->nd, 0, NULL, tx, len)) == -ENOSPC) {
            vio_net_driver_kick(e->nd, VIO_NET_DRIVER_TXQ(0));
            e2e_calls(1);
            vio_net_driver_tx_reclaim(e->nd, 0, NULL, 0);
        }
        ck_assert_int_eq(r, 0);
        e->sent++;
    }
    ck_assert_int_ge(vio_net_driver_kick(e->nd, VIO_NET_DRIVER_TXQ(0)), 0);
    bool irq = false;
    unsigned want = first + n, fired0 = e->fired;
    for (int spin = 0; e->got < want && spin < 5000; spin++) {
        /* INTx: the ISR names the cause; MSI-X: the vector fired */
        if (e2e_calls(1) && (e->fired != fired0 ||
                             (vio_driver_ack_interrupt(&e->drv) & VIO_DRIVER_INT_VRING)))
            irq = true;
        ssize_t len;
        while ((len = vio_net_driver_recv(e->nd, 0, NULL, rx, sizeof(rx))) >= 0) {
            size_t elen = eframe(tx, e->got, 60 + (e->got % 7) * 200);
            ck_assert_int_eq(len, (ssize_t)elen);
            ck_assert_int_eq(memcmp(rx, tx, elen), 0);
            e->got++;
        }
        ck_assert_int_eq(len, -EAGAIN);
        vio_net_driver_kick(e->nd, VIO_NET_DRIVER_RXQ(0));
        vio_net_driver_tx_reclaim(e->nd, 0, NULL, 0);
    }
    ck_assert_uint_eq(e->got, want);
    ck_assert(irq); /* a call eventfd fired, vio_pci_queue_interrupt() raised the interrupt */
}

START_TEST(e2e_pci_vhost_user)
{
    struct e2e *e = &E;
    e2e_open();
    e2e_up();
    ck_assert_uint_eq(vio_pci_status(e->p) & VIO_S_DRIVER_OK, VIO_S_DRIVER_OK);
    ck_assert_uint_eq(vio_pci_status(e->p) & VIO_S_NEEDS_RESET, 0);
    /* both data queues run in the back-end, with the VMM's eventfds */
    ck_assert(vio_vhost_dev_queue_in_backend(e->vd, 0));
    ck_assert(vio_vhost_dev_queue_in_backend(e->vd, 1));
    struct vio_vhost_dev_stats st;
    ck_assert_int_eq(vio_vhost_dev_get_stats(e->vd, &st), 0);
    ck_assert_uint_eq(st.rings_started, 2);
    ck_assert_uint_eq(st.mem_tables, 1);
    ck_assert_uint_eq(e->fds_calls, 2);
    ck_assert_uint_eq(e->vec[0], VIO_PCI_NO_VECTOR); /* MSI-X is off: INTx */
    ck_assert_uint_eq(e->vec[1], VIO_PCI_NO_VECTOR);

    e2e_traffic(100);
    e2e_traffic(300); /* more than a ring: buffers recycled */
    ck_assert_uint_gt(e->intx_raises, 0);
    /* the frames went through the back-end's device, never through the transport's queues */
    ck_assert_uint_eq(e->sh.notifies, 0);
    struct vio_net_queue_stats qs;
    ck_assert_int_eq(vio_net_dev_get_stats(e->be.nd, 1, &qs), 0); /* tx0 of the back-end */
    ck_assert_uint_eq(qs.packets, e->sent);
    ck_assert_int_eq(vio_net_dev_get_stats(e->model, 1, &qs), 0); /* the model moved nothing */
    ck_assert_uint_eq(qs.packets, 0);
    ck_assert_int_eq(vio_net_dev_get_stats(e->model, 0, &qs), 0);
    ck_assert_uint_eq(qs.packets, 0);

    /* reset: the back-end rings stop, the claim ends, the kick fds are the VMM's again */
    ck_assert_int_eq(vio_driver_reset(&e->drv), 0);
    ck_assert_uint_eq(vio_pci_status(e->p), 0);
    ck_assert_int_eq(vio_vhost_dev_get_stats(e->vd, &st), 0);
    ck_assert_uint_eq(st.rings_stopped, 2);
    ck_assert_int_eq(vio_pci_queue_notify(e->p, 0), -EIO);
    ck_assert_uint_eq(efd_take(e->kick[0]), 0);
    vio_net_driver_free(e->nd);
    e->nd = NULL;

    /* a second life: the driver comes back, the rings are handed out again */
    e->sent = e->got = 0;
    e2e_up();
    ck_assert_int_eq(vio_vhost_dev_get_stats(e->vd, &st), 0);
    ck_assert_uint_eq(st.rings_started, 4);
    e2e_traffic(50);
    ck_assert_uint_eq(e->sh.notifies, 0);
    ck_assert_uint_eq(e->fired, 0);
    e2e_close();
}
END_TEST

START_TEST(e2e_pci_vhost_user_msix)
{
    struct e2e *e = &E;
    memset(e_fired_vec, 0, sizeof(e_fired_vec));
    e2e_open();
    e2e_up_msix(true);
    ck_assert_uint_eq(vio_pci_status(e->p) & VIO_S_NEEDS_RESET, 0);
    ck_assert_uint_eq(e->fds_calls, 2);
    ck_assert_uint_eq(e->vec[0], 1); /* the vectors the guest set: the VMM binds irqfds */
    ck_assert_uint_eq(e->vec[1], 2);
    e2e_traffic(200);
    ck_assert_uint_gt(e_fired_vec[1] + e_fired_vec[2], 0);
    ck_assert_uint_eq(e_fired_vec[0], 0);
    ck_assert_uint_eq(e->intx_raises, 0);
    ck_assert_uint_eq(e->sh.notifies, 0);
    /* the guest turns MSI-X off on the live device: the queues are handed out again with
     * NO_VECTOR, at the ring position the back-end reached, and traffic goes on over INTx */
    ck_assert_int_eq(vio_pci_driver_msix_enable(e->pd, false), 0);
    ck_assert_uint_eq(e->fds_calls, 4);
    ck_assert_uint_eq(e->vec[0], VIO_PCI_NO_VECTOR);
    ck_assert_uint_eq(e->vec[1], VIO_PCI_NO_VECTOR);
    struct vio_vhost_dev_stats st;
    ck_assert_int_eq(vio_vhost_dev_get_stats(e->vd, &st), 0);
    ck_assert_uint_eq(st.rings_started, 4);
    ck_assert_uint_eq(st.rings_stopped, 2);
    e2e_traffic(200);
    ck_assert_uint_gt(e->intx_raises, 0);
    ck_assert_uint_eq(e->sh.notifies, 0);
    e2e_close();
}
END_TEST

static Suite *offload_suite(void)
{
    Suite *s = suite_create("transport_offload");
    TCase *tc = tcase_create("pci");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, pci_claim_msix);
    tcase_add_test(tc, pci_claim_intx);
    tcase_add_test(tc, pci_notify_forwarded);
    tcase_add_test(tc, pci_reset_ends_claim);
    tcase_add_test(tc, pci_fds_fail_needs_reset);
    tcase_add_test(tc, pci_msix_toggle_restarts);
    tcase_add_test(tc, pci_without_hooks);
    tcase_add_test(tc, pci_plain_device_with_hooks);
    tcase_add_test(tc, pci_disable_via_queue_reset_status);
    suite_add_tcase(s, tc);
    tc = tcase_create("mmio");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, mmio_claim_notify_interrupt);
    tcase_add_test(tc, mmio_reset_and_disable_end_claim);
    tcase_add_test(tc, mmio_fds_fail_needs_reset);
    tcase_add_test(tc, mmio_without_hooks);
    suite_add_tcase(s, tc);
    tc = tcase_create("e2e");
    tcase_add_test(tc, e2e_pci_vhost_user);
    tcase_add_test(tc, e2e_pci_vhost_user_msix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(offload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
