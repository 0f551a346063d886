/* SPDX-License-Identifier: MIT */
/* virtio-PCI modern device side: configuration-space image and BAR decoder (virtio spec
 * "Virtio Over PCI Bus"). */
#include "virtio/pci.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "transport/vq_regs.h"

#define PCI_F_NOTIFICATION_DATA 38
#define PCI_F_RING_RESET 40
#define COMMON_LEN 56u /* through queue_used_hi: no notification data / queue reset */
#define MAX_VECTORS 2048u

/* capability placement in the image */
#define CAP_MSIX 0x40u
#define CAP_COMMON 0x4cu
#define CAP_ISR 0x5cu
#define CAP_DEVICE 0x6cu
#define CAP_NOTIFY 0x7cu
#define CAP_PCICFG 0x90u /* 20 bytes: ends at 0xa4 */

struct msix_entry {
    uint32_t addr_lo, addr_hi, data;
    _Atomic uint32_t ctrl;
};

struct vio_pci {
    struct vio_vqr r;
    struct vio_pci_layout l;
    uint8_t cfg[VIO_PCI_CONFIG_SPACE];
    uint8_t wmask[VIO_PCI_CONFIG_SPACE];
    uint32_t dev_cfg_size;
    uint16_t nvec;
    struct msix_entry *tab;
    _Atomic uint64_t *pba;
    _Atomic uint16_t config_vector;
    _Atomic uint32_t msix_ctl; /* PCI_MSIX_FLAGS_* copy readable from any thread */
    _Atomic uint32_t intx_disabled;
    void (*msix_fire)(void *opaque, uint16_t vector);
    void (*msix_update)(void *opaque, uint16_t vector, uint64_t addr, uint32_t data, bool masked);
    void (*set_intx)(void *opaque, int level);
    void *irq_opaque;
    void (*notify_data)(void *opaque, unsigned qidx, uint16_t next);
    /* transitional: the legacy register block in an I/O BAR */
    bool transitional;
    uint8_t lbar;
    uint32_t lbar_size;
    uint32_t *pfn; /* legacy QUEUE_PFN per queue (0: not placed through the legacy block) */
};

/* ------------------------------------------------------------------------ */
/* little-endian image helpers                                               */

static void put8(struct vio_pci *p, unsigned off, uint8_t v, uint8_t w)
{
    p->cfg[off] = v;
    p->wmask[off] = w;
}

static void put16(struct vio_pci *p, unsigned off, uint16_t v, uint16_t w)
{
    put8(p, off, (uint8_t)v, (uint8_t)w);
    put8(p, off + 1, (uint8_t)(v >> 8), (uint8_t)(w >> 8));
}

static void put32(struct vio_pci *p, unsigned off, uint32_t v, uint32_t w)
{
    put16(p, off, (uint16_t)v, (uint16_t)w);
    put16(p, off + 2, (uint16_t)(v >> 16), (uint16_t)(w >> 16));
}

static uint32_t get(const struct vio_pci *p, unsigned off, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)p->cfg[off + i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------------------ */
/* interrupts                                                                */

static bool msix_on(const struct vio_pci *p)
{
    return p->nvec && (atomic_load_explicit(&p->msix_ctl, memory_order_acquire) &
                       PCI_MSIX_FLAGS_ENABLE);
}

static bool vec_masked(const struct vio_pci *p, uint16_t v)
{
    return (atomic_load_explicit(&p->msix_ctl, memory_order_acquire) & PCI_MSIX_FLAGS_MASKALL) ||
           (atomic_load_explicit(&p->tab[v].ctrl, memory_order_acquire) &
            PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

static void fire_vector(struct vio_pci *p, uint16_t v)
{
    if (v >= p->nvec)
        return; /* NO_VECTOR: the spec says no interrupt */
    if (vec_masked(p, v)) {
        atomic_fetch_or_explicit(&p->pba[v / 64], (uint64_t)1 << (v % 64), memory_order_acq_rel);
        return;
    }
    if (p->msix_fire)
        p->msix_fire(p->irq_opaque, v);
}

static void intx(struct vio_pci *p, uint32_t bits)
{
    vio_vqr_isr_raise(&p->r, bits);
    if (p->set_intx && !atomic_load_explicit(&p->intx_disabled, memory_order_acquire))
        p->set_intx(p->irq_opaque, 1);
}

static void irq_queue(void *opaque, unsigned qidx)
{
    struct vio_pci *p = opaque;
    if (msix_on(p)) {
        /* the vector is an atomic: a guest may rewrite it while a device thread interrupts */
        fire_vector(p, qidx < p->r.nq ? p->r.qs[qidx].vector : VIO_PCI_NO_VECTOR);
        return;
    }
    intx(p, VIO_PCI_ISR_QUEUE);
}

static void irq_config(void *opaque)
{
    struct vio_pci *p = opaque;
    /* the ISR config bit is set in MSI-X mode too (the spec lets the driver read it) */
    if (msix_on(p)) {
        vio_vqr_isr_raise(&p->r, VIO_PCI_ISR_CONFIG);
        fire_vector(p, atomic_load_explicit(&p->config_vector, memory_order_acquire));
        return;
    }
    intx(p, VIO_PCI_ISR_CONFIG);
}

/* The vector the VMM's queue_fds gets: the queue's as the guest set it while MSI-X is on. */
static uint16_t offload_vector(void *opaque, unsigned qidx)
{
    struct vio_pci *p = opaque;
    if (!msix_on(p) || qidx >= p->r.nq)
        return VIO_PCI_NO_VECTOR;
    return atomic_load_explicit(&p->r.qs[qidx].vector, memory_order_acquire);
}

static const struct vio_vqr_ops pci_vqr_ops = {.irq_queue = irq_queue, .irq_config = irq_config,
                                               .offload_vector = offload_vector};

/* Deliver pending vectors that are no longer masked. */
static void msix_flush(struct vio_pci *p)
{
    if (!msix_on(p))
        return;
    for (uint16_t v = 0; v < p->nvec; v++) {
        uint64_t bit = (uint64_t)1 << (v % 64);
        if ((atomic_load_explicit(&p->pba[v / 64], memory_order_acquire) & bit) &&
            !vec_masked(p, v)) {
            atomic_fetch_and_explicit(&p->pba[v / 64], ~bit, memory_order_acq_rel);
            if (p->msix_fire)
                p->msix_fire(p->irq_opaque, v);
        }
    }
}

static void msix_report(struct vio_pci *p, uint16_t v)
{
    if (!p->msix_update)
        return;
    struct msix_entry *e = &p->tab[v];
    p->msix_update(p->irq_opaque, v, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data,
                   vec_masked(p, v));
}

/* ------------------------------------------------------------------------ */
/* creation                                                                  */

void vio_pci_layout_default(struct vio_pci_layout *l)
{
    if (!l)
        return;
    memset(l, 0, sizeof(*l));
    l->bar = 4;
    l->bar64 = true;
    l->bar_size = 0x4000;
    l->common_off = 0x0;
    l->isr_off = 0x1000;
    l->device_off = 0x2000;
    l->notify_off = 0x3000;
    l->notify_mult = 4;
    l->msix_bar = 1;
    l->msix_bar_size = 0x1000;
    l->msix_table_off = 0;
    l->msix_pba_off = 0x800;
}

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

struct range {
    uint64_t off, len;
};

static bool overlap(struct range a, struct range b)
{
    return a.len && b.len && a.off < b.off + b.len && b.off < a.off + a.len;
}

static int check_layout(const struct vio_pci_layout *l, unsigned nq, uint32_t devcfg,
                        uint16_t nvec)
{
    if (l->bar > 5 || (l->bar64 && l->bar > 4) || !pow2(l->bar_size) || l->bar_size < 4096)
        return -EINVAL;
    if (l->notify_mult && (!pow2(l->notify_mult) || l->notify_mult < 2))
        return -EINVAL;
    if ((l->common_off & 3) || (l->isr_off & 3) || (l->device_off & 3) || (l->notify_off & 3))
        return -EINVAL;
    struct range w[6] = {
        {l->common_off, COMMON_LEN},
        {l->isr_off, 1},
        {l->device_off, devcfg},
        {l->notify_off, (uint64_t)l->notify_mult * (nq - 1) + 4},
        {0, 0},
        {0, 0}};
    unsigned n = 4;
    bool same = nvec && l->msix_bar == l->bar;
    if (nvec) {
        if (l->msix_bar > 5 || (l->bar64 && l->msix_bar == l->bar + 1))
            return -EINVAL;
        if ((l->msix_table_off & 7) || (l->msix_pba_off & 7))
            return -EINVAL;
        uint64_t bsize = same ? l->bar_size : l->msix_bar_size;
        if (!same && (!pow2(bsize) || bsize < 4096))
            return -EINVAL;
        struct range t = {l->msix_table_off, 16ull * nvec};
        struct range b = {l->msix_pba_off, 8ull * ((nvec + 63u) / 64u)};
        if (t.off + t.len > bsize || b.off + b.len > bsize || overlap(t, b))
            return -EINVAL;
        if (same) {
            w[n++] = t;
            w[n++] = b;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (w[i].off + w[i].len > l->bar_size)
            return -EINVAL;
        for (unsigned j = i + 1; j < n; j++)
            if (overlap(w[i], w[j]))
                return -EINVAL;
    }
    return 0;
}

static void put_bar(struct vio_pci *p, unsigned bar, uint32_t size, bool is64)
{
    unsigned off = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint32_t type = PCI_BASE_ADDRESS_SPACE_MEMORY |
                    (is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    put32(p, off, type, ~(size - 1) & ~0xfu);
    if (is64)
        put32(p, off + 4, 0, 0xffffffffu);
}

static void put_vcap(struct vio_pci *p, unsigned at, unsigned next, uint8_t len, uint8_t type,
                     uint8_t bar, uint32_t off, uint32_t length)
{
    put8(p, at + 0, PCI_CAP_ID_VNDR, 0);
    put8(p, at + 1, (uint8_t)next, 0);
    put8(p, at + 2, len, 0);
    put8(p, at + 3, type, 0);
    put8(p, at + 4, bar, 0);
    put32(p, at + 8, off, 0);
    put32(p, at + 12, length, 0);
}

static void build_image(struct vio_pci *p, const struct vio_pci_config *c, uint32_t devid)
{
    const struct vio_pci_layout *l = &p->l;
    put16(p, PCI_VENDOR_ID, 0x1af4, 0);
    /* spec 4.1.2.1: a transitional device has ID 0x1000 + (type - 1) and revision 0, and its
     * subsystem device ID names the type (4.1.2.3, what a legacy driver matches on) */
    put16(p, PCI_DEVICE_ID,
          (uint16_t)(p->transitional ? 0x1000 + devid - 1 : 0x1040 + devid), 0);
    put16(p, PCI_COMMAND, 0,
          PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE |
              (p->transitional ? PCI_COMMAND_IO : 0));
    put16(p, PCI_STATUS, PCI_STATUS_CAP_LIST, 0);
    uint32_t cls = c->class_code ? c->class_code
                                 : devid == VIO_DEVICE_ID_NET ? 0x020000u : 0xff0000u;
    /* revision 1: a modern device; 0: transitional */
    put32(p, PCI_CLASS_REVISION, cls << 8 | (p->transitional ? 0 : 1), 0);
    put8(p, PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL, 0);
    put_bar(p, l->bar, l->bar_size, l->bar64);
    if (p->transitional)
        put32(p, PCI_BASE_ADDRESS_0 + 4 * p->lbar, PCI_BASE_ADDRESS_SPACE_IO,
              ~(p->lbar_size - 1) & ~3u);
    if (p->nvec && l->msix_bar != l->bar)
        put_bar(p, l->msix_bar, l->msix_bar_size, false);
    put16(p, PCI_SUBSYSTEM_VENDOR_ID, c->subsys_vendor ? c->subsys_vendor : 0x1af4, 0);
    put16(p, PCI_SUBSYSTEM_ID,
          c->subsys_id ? c->subsys_id : p->transitional ? (uint16_t)devid : 0x1100, 0);
    put8(p, PCI_CAPABILITY_LIST, p->nvec ? CAP_MSIX : CAP_COMMON, 0);
    put8(p, PCI_INTERRUPT_LINE, 0, 0xff);
    put8(p, PCI_INTERRUPT_PIN, 1, 0); /* INTA# */
    if (p->nvec) {
        put8(p, CAP_MSIX, PCI_CAP_ID_MSIX, 0);
        put8(p, CAP_MSIX + 1, CAP_COMMON, 0);
        put16(p, CAP_MSIX + PCI_MSIX_FLAGS, (uint16_t)(p->nvec - 1),
              PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
        put32(p, CAP_MSIX + PCI_MSIX_TABLE, l->msix_table_off | l->msix_bar, 0);
        put32(p, CAP_MSIX + PCI_MSIX_PBA, l->msix_pba_off | l->msix_bar, 0);
    }
    put_vcap(p, CAP_COMMON, CAP_ISR, 16, VIRTIO_PCI_CAP_COMMON_CFG, l->bar, l->common_off,
             COMMON_LEN);
    unsigned after_isr = p->dev_cfg_size ? CAP_DEVICE : CAP_NOTIFY;
    put_vcap(p, CAP_ISR, after_isr, 16, VIRTIO_PCI_CAP_ISR_CFG, l->bar, l->isr_off, 1);
    if (p->dev_cfg_size)
        put_vcap(p, CAP_DEVICE, CAP_NOTIFY, 16, VIRTIO_PCI_CAP_DEVICE_CFG, l->bar, l->device_off,
                 p->dev_cfg_size);
    put_vcap(p, CAP_NOTIFY, CAP_PCICFG, 20, VIRTIO_PCI_CAP_NOTIFY_CFG, l->bar, l->notify_off,
             l->notify_mult * (p->r.nq - 1) + 2);
    put32(p, CAP_NOTIFY + 16, l->notify_mult, 0);
    put_vcap(p, CAP_PCICFG, 0, 20, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0);
    p->wmask[CAP_PCICFG + 4] = 0xff;
    put32(p, CAP_PCICFG + 8, 0, 0xffffffffu);
    put32(p, CAP_PCICFG + 12, 0, 0xffffffffu);
    put32(p, CAP_PCICFG + 16, 0, 0xffffffffu);
}

static uint32_t pow2_ceil(uint32_t v)
{
    uint32_t x = 1;
    while (x < v)
        x <<= 1;
    return x;
}

int vio_pci_new(const struct vio_pci_config *cfg_in, struct vio_pci **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    /* the fields from @c transitional on came later: a smaller struct_size leaves them 0 */
    if (!cfg_in || cfg_in->struct_size < offsetof(struct vio_pci_config, transitional))
        return -EINVAL;
    struct vio_pci_config cfgbuf = {0};
    memcpy(&cfgbuf, cfg_in,
           cfg_in->struct_size < sizeof(cfgbuf) ? cfg_in->struct_size : sizeof(cfgbuf));
    const struct vio_pci_config *cfg = &cfgbuf;
    if (!cfg->dev || !cfg->dev->ops || !cfg->mem || cfg->msix_vectors > MAX_VECTORS)
        return -EINVAL;
    unsigned nq = vio_device_num_queues(cfg->dev);
    uint32_t devcfg = vio_device_config_size(cfg->dev);
    if (nq == 0 || nq > VIO_DEVICE_MAX_QUEUES || devcfg > 0x1000)
        return -EINVAL;
    if (check_layout(&cfg->layout, nq, devcfg, cfg->msix_vectors) < 0)
        return -EINVAL;
    const struct vio_pci_layout *cl = &cfg->layout;
    if (cfg->transitional &&
        (cfg->legacy_bar > 5 || cfg->legacy_bar == cl->bar ||
         (cl->bar64 && cfg->legacy_bar == cl->bar + 1) ||
         (cfg->msix_vectors && cfg->legacy_bar == cl->msix_bar) ||
         VIRTIO_PCI_CONFIG_OFF(1) + devcfg > 256 || vio_device_id(cfg->dev) == 0 ||
         vio_device_id(cfg->dev) > 0x40))
        return -EINVAL; /* I/O BARs hold at most 256 bytes; IDs 0x1000..0x103f */
    struct vio_pci *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->transitional = cfg->transitional;
    p->notify_data = cfg->notify_data;
    p->lbar = cfg->legacy_bar;
    p->lbar_size = pow2_ceil(VIRTIO_PCI_CONFIG_OFF(1) + devcfg);
    if (p->lbar_size < 32)
        p->lbar_size = 32;
    p->l = cfg->layout;
    p->nvec = cfg->msix_vectors;
    p->dev_cfg_size = devcfg;
    p->msix_fire = cfg->msix_fire;
    p->msix_update = cfg->msix_update;
    p->set_intx = cfg->set_intx;
    p->irq_opaque = cfg->irq_opaque;
    atomic_init(&p->config_vector, VIO_PCI_NO_VECTOR);
    if (p->nvec) {
        p->tab = calloc(p->nvec, sizeof(*p->tab));
        p->pba = calloc((p->nvec + 63u) / 64u, sizeof(*p->pba));
        if (!p->tab || !p->pba) {
            free(p->tab);
            free(p->pba);
            free(p);
            return -ENOMEM;
        }
        for (unsigned i = 0; i < p->nvec; i++)
            atomic_init(&p->tab[i].ctrl, PCI_MSIX_ENTRY_CTRL_MASKBIT); /* masked at reset */
    }
    struct vio_vqr_config rc = {.dev = cfg->dev, .mem = cfg->mem, .log = cfg->log,
                                .log_opaque = cfg->log_opaque, .name = "virtio-pci",
                                .initial_size = 1, /* queue_size reads the maximum */
                                .legacy = cfg->transitional, /* a legacy driver may skip
                                                                FEATURES_OK / VERSION_1 */
                                .hide_features = vio_feature_bit(PCI_F_NOTIFICATION_DATA) |
                                                 vio_feature_bit(PCI_F_RING_RESET),
                                .transport_features =
                                    cfg->notification_data
                                        ? vio_feature_bit(PCI_F_NOTIFICATION_DATA)
                                        : 0,
                                .ops = &pci_vqr_ops, .opaque = p,
                                .mem_regions = cfg->mem_regions, .queue_fds = cfg->queue_fds,
                                .offload_opaque = cfg->offload_opaque};
    int e = vio_vqr_init(&p->r, &rc);
    if (e < 0) {
        free(p->tab);
        free(p->pba);
        free(p);
        return e;
    }
    if (p->transitional && !(p->pfn = calloc(p->r.nq, sizeof(*p->pfn)))) {
        vio_pci_free(p);
        return -ENOMEM;
    }
    build_image(p, cfg, vio_device_id(cfg->dev));
    *out = p;
    return 0;
}

void vio_pci_free(struct vio_pci *p)
{
    if (!p)
        return;
    vio_vqr_fini(&p->r);
    free(p->tab);
    free(p->pba);
    free(p->pfn);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* BAR windows                                                               */

static int bad(struct vio_pci *p, const char *what, uint64_t off, unsigned size)
{
    return vio_vqr_bad_access(&p->r, what, off, size);
}

static unsigned common_width(uint64_t off)
{
    switch (off) {
    case VIRTIO_PCI_COMMON_STATUS:
    case VIRTIO_PCI_COMMON_CFGGENERATION:
        return 1;
    case VIRTIO_PCI_COMMON_MSIX:
    case VIRTIO_PCI_COMMON_NUMQ:
    case VIRTIO_PCI_COMMON_Q_SELECT:
    case VIRTIO_PCI_COMMON_Q_SIZE:
    case VIRTIO_PCI_COMMON_Q_MSIX:
    case VIRTIO_PCI_COMMON_Q_ENABLE:
    case VIRTIO_PCI_COMMON_Q_NOFF:
        return 2;
    default:
        return off < COMMON_LEN && !(off & 3) ? 4 : 0;
    }
}

static int common_read(struct vio_pci *p, uint64_t off, unsigned size, uint64_t *value)
{
    if (common_width(off) != size)
        return bad(p, "common config read of the wrong width or offset", off, size);
    struct vio_vqr *r = &p->r;
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    uint64_t v = 0;
    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT:
        v = r->dev_feat_sel;
        break;
    case VIRTIO_PCI_COMMON_DF:
        v = vio_vqr_device_features_word(r, r->dev_feat_sel);
        break;
    case VIRTIO_PCI_COMMON_GFSELECT:
        v = r->drv_feat_sel;
        break;
    case VIRTIO_PCI_COMMON_GF:
        v = vio_vqr_driver_features_read(r, r->drv_feat_sel);
        break;
    case VIRTIO_PCI_COMMON_MSIX:
        v = atomic_load_explicit(&p->config_vector, memory_order_acquire);
        break;
    case VIRTIO_PCI_COMMON_NUMQ:
        v = r->nq;
        break;
    case VIRTIO_PCI_COMMON_STATUS:
        v = vio_vqr_status(r);
        break;
    case VIRTIO_PCI_COMMON_CFGGENERATION:
        v = vio_vqr_reg_config_generation(r) & 0xff;
        break;
    case VIRTIO_PCI_COMMON_Q_SELECT:
        v = r->sel & 0xffff;
        break;
    case VIRTIO_PCI_COMMON_Q_SIZE:
        v = q ? vio_vqr_size(r, r->sel) : 0; /* 0: the queue is unavailable */
        break;
    case VIRTIO_PCI_COMMON_Q_MSIX:
        v = q ? q->vector : VIO_PCI_NO_VECTOR;
        break;
    case VIRTIO_PCI_COMMON_Q_ENABLE:
        v = vio_vqr_reg_queue_enabled(r);
        break;
    case VIRTIO_PCI_COMMON_Q_NOFF:
        v = q ? r->sel : 0; /* queue i notifies at notify_off + i * multiplier */
        break;
    case VIRTIO_PCI_COMMON_Q_DESCLO:
        v = q ? (uint32_t)q->desc : 0;
        break;
    case VIRTIO_PCI_COMMON_Q_DESCHI:
        v = q ? (uint32_t)(q->desc >> 32) : 0;
        break;
    case VIRTIO_PCI_COMMON_Q_AVAILLO:
        v = q ? (uint32_t)q->driver : 0;
        break;
    case VIRTIO_PCI_COMMON_Q_AVAILHI:
        v = q ? (uint32_t)(q->driver >> 32) : 0;
        break;
    case VIRTIO_PCI_COMMON_Q_USEDLO:
        v = q ? (uint32_t)q->device : 0;
        break;
    case VIRTIO_PCI_COMMON_Q_USEDHI:
        v = q ? (uint32_t)(q->device >> 32) : 0;
        break;
    default:
        return bad(p, "common config read of a reserved offset", off, size);
    }
    *value = v;
    return 0;
}

static uint16_t vector_or_none(const struct vio_pci *p, uint64_t v)
{
    /* spec: a vector the device cannot map reads back as NO_VECTOR */
    return v < p->nvec ? (uint16_t)v : VIO_PCI_NO_VECTOR;
}

static void reset_transport(struct vio_pci *p)
{
    atomic_store_explicit(&p->config_vector, VIO_PCI_NO_VECTOR, memory_order_release);
    if (p->pfn)
        memset(p->pfn, 0, p->r.nq * sizeof(*p->pfn));
    if (p->set_intx)
        p->set_intx(p->irq_opaque, 0);
}

static int common_write(struct vio_pci *p, uint64_t off, unsigned size, uint64_t value)
{
    if (common_width(off) != size)
        return bad(p, "common config write of the wrong width or offset", off, size);
    struct vio_vqr *r = &p->r;
    uint32_t v = (uint32_t)value;
    int rc;
    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT:
        return vio_vqr_reg_device_features_sel(r, v);
    case VIRTIO_PCI_COMMON_GFSELECT:
        return vio_vqr_reg_driver_features_sel(r, v);
    case VIRTIO_PCI_COMMON_GF:
        return vio_vqr_reg_driver_features(r, "driver_feature", v);
    case VIRTIO_PCI_COMMON_MSIX:
        atomic_store_explicit(&p->config_vector, vector_or_none(p, v), memory_order_release);
        return 0;
    case VIRTIO_PCI_COMMON_STATUS:
        rc = vio_vqr_reg_status(r, v); /* one byte wide: never above 0xff */
        if (v == 0)
            reset_transport(p);
        return rc;
    case VIRTIO_PCI_COMMON_Q_SELECT:
        return vio_vqr_select(r, v);
    case VIRTIO_PCI_COMMON_Q_SIZE:
        return vio_vqr_reg_queue_size(r, "queue_size", v);
    case VIRTIO_PCI_COMMON_Q_MSIX:
        if (!vio_vqr_cur(r))
            return vio_vqr_queue_refused(r, -ENOENT, "queue_msix_vector", v);
        vio_vqr_set_vector(r, vector_or_none(p, v));
        return 0;
    case VIRTIO_PCI_COMMON_Q_ENABLE:
        /* spec: the driver MUST NOT write 0 (queue reset is not offered): refused */
        return vio_vqr_reg_queue_enable(r, "queue_enable", v);
    case VIRTIO_PCI_COMMON_Q_DESCLO:
    case VIRTIO_PCI_COMMON_Q_DESCHI:
    case VIRTIO_PCI_COMMON_Q_AVAILLO:
    case VIRTIO_PCI_COMMON_Q_AVAILHI:
    case VIRTIO_PCI_COMMON_Q_USEDLO:
    case VIRTIO_PCI_COMMON_Q_USEDHI: {
        unsigned which = (unsigned)((off - VIRTIO_PCI_COMMON_Q_DESCLO) / 8);
        unsigned half = (unsigned)((off / 4) & 1);
        return vio_vqr_reg_queue_addr(r, which, half, v);
    }
    default:
        return bad(p, "write to a read-only common config field", off, size);
    }
}

static int device_access(struct vio_pci *p, uint64_t co, unsigned size, bool write,
                         uint64_t *value)
{
    if (!((size == 1 || size == 2 || size == 4) && (co % size) == 0))
        return bad(p, "device config access of a width or alignment the spec forbids", co, size);
    uint8_t b[4] = {0};
    if (write) {
        for (unsigned i = 0; i < size; i++)
            b[i] = (uint8_t)(*value >> (8 * i));
        return vio_device_config_write(p->r.dev, (uint32_t)co, b, size) < 0
                   ? bad(p, "device config write refused by the device", co, size)
                   : 0;
    }
    if (vio_device_config_read(p->r.dev, (uint32_t)co, b, size) < 0)
        return bad(p, "device config read outside the config space", co, size);
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)b[i] << (8 * i);
    *value = v;
    return 0;
}

static bool in(uint64_t off, unsigned size, uint64_t start, uint64_t len)
{
    return off >= start && off - start < len && size <= len - (off - start);
}

static int msix_access(struct vio_pci *p, uint64_t off, unsigned size, bool write,
                       uint64_t *value)
{
    const struct vio_pci_layout *l = &p->l;
    if (in(off, size, l->msix_table_off, 16ull * p->nvec)) {
        uint64_t o = off - l->msix_table_off;
        if ((size != 4 && size != 8) || (o % size))
            return bad(p, "MSI-X table access of a width other than 4 or 8", off, size);
        uint16_t v = (uint16_t)(o / 16);
        struct msix_entry *e = &p->tab[v];
        for (unsigned k = 0; k < size / 4; k++) {
            unsigned field = (unsigned)((o % 16) / 4) + k;
            uint32_t *dst = field == 0 ? &e->addr_lo : field == 1 ? &e->addr_hi
                                                     : field == 2 ? &e->data : NULL;
            if (write) {
                uint32_t x = (uint32_t)(*value >> (32 * k));
                if (dst)
                    *dst = x;
                else
                    atomic_store_explicit(&e->ctrl, x & PCI_MSIX_ENTRY_CTRL_MASKBIT,
                                          memory_order_release);
            } else {
                uint32_t x = dst ? *dst : atomic_load_explicit(&e->ctrl, memory_order_acquire);
                *value |= (uint64_t)x << (32 * k);
            }
        }
        if (write) {
            msix_report(p, v);
            msix_flush(p);
        }
        return 0;
    }
    uint64_t pba_len = 8ull * ((p->nvec + 63u) / 64u);
    if (in(off, size, l->msix_pba_off, pba_len)) {
        uint64_t o = off - l->msix_pba_off;
        if ((size != 4 && size != 8) || (o % size))
            return bad(p, "MSI-X PBA access of a width other than 4 or 8", off, size);
        if (write)
            return bad(p, "write to the read-only MSI-X PBA", off, size);
        uint64_t w = atomic_load_explicit(&p->pba[o / 8], memory_order_acquire);
        *value = size == 8 ? w : (uint32_t)(w >> (8 * (o % 8)));
        return 0;
    }
    return 1; /* not MSI-X */
}

/* ------------------------------------------------------------------------ */
/* transitional: the legacy register block (spec 4.1.4.10, "Legacy Interfaces: A Note on PCI
 * Device Layout")                                                           */

/* Legacy QUEUE_PFN != 0 places the rings (legacy layout, 4096-aligned used ring) and enables
 * the queue at its maximum size; 0 disables it. */
static int legacy_pfn(struct vio_pci *p, uint32_t pfn)
{
    struct vio_vqr *r = &p->r;
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return vio_vqr_queue_refused(r, -ENOENT, "QUEUE_PFN", pfn);
    if (pfn == 0) {
        vio_vqr_disable(r);
        p->pfn[r->sel] = 0;
        return 0;
    }
    if (q->enabled)
        return vio_vqr_queue_refused(r, -EBUSY, "QUEUE_PFN", pfn);
    uint16_t n = vio_vqr_size(r, r->sel);
    uint64_t desc = (uint64_t)pfn << VIRTIO_PCI_QUEUE_ADDR_SHIFT;
    uint64_t avail = desc + 16ull * n;
    uint64_t used = (avail + 6 + 2ull * n + VIRTIO_PCI_VRING_ALIGN - 1) &
                    ~(uint64_t)(VIRTIO_PCI_VRING_ALIGN - 1);
    vio_vqr_set_addr(r, 0, 2, desc);
    vio_vqr_set_addr(r, 1, 2, avail);
    vio_vqr_set_addr(r, 2, 2, used);
    int rc = vio_vqr_enable(r);
    if (rc == -EFAULT) {
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: QUEUE_PFN 0x%x places the rings outside "
                     "guest memory; device needs reset", r->sel, pfn);
        vio_vqr_needs_reset(r);
        return -EPROTO;
    }
    if (rc < 0)
        return vio_vqr_queue_refused(r, rc, "QUEUE_PFN", pfn);
    p->pfn[r->sel] = pfn;
    return 0;
}

static unsigned legacy_width(uint64_t off, bool mx)
{
    switch (off) {
    case VIRTIO_PCI_HOST_FEATURES:
    case VIRTIO_PCI_GUEST_FEATURES:
    case VIRTIO_PCI_QUEUE_PFN:
        return 4;
    case VIRTIO_PCI_QUEUE_NUM:
    case VIRTIO_PCI_QUEUE_SEL:
    case VIRTIO_PCI_QUEUE_NOTIFY:
        return 2;
    case VIRTIO_PCI_STATUS:
    case VIRTIO_PCI_ISR:
        return 1;
    case VIRTIO_MSI_CONFIG_VECTOR:
    case VIRTIO_MSI_QUEUE_VECTOR:
        return mx ? 2 : 0;
    default:
        return 0;
    }
}

static int legacy_access(struct vio_pci *p, uint64_t off, unsigned size, bool write,
                         uint64_t *value)
{
    struct vio_vqr *r = &p->r;
    /* the device config follows the MSI-X vectors only while MSI-X is enabled */
    bool mx = msix_on(p);
    uint64_t cfg_off = VIRTIO_PCI_CONFIG_OFF(mx);
    if (off >= cfg_off && off < p->lbar_size)
        return device_access(p, off - cfg_off, size, write, value);
    if (legacy_width(off, mx) != size)
        return bad(p, "legacy register access of the wrong width or offset", off, size);
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    uint32_t v = (uint32_t)*value;
    if (!write) {
        switch (off) {
        case VIRTIO_PCI_HOST_FEATURES:
            *value = vio_vqr_device_features_word(r, 0); /* 32 bits: no VERSION_1 */
            return 0;
        case VIRTIO_PCI_GUEST_FEATURES:
            *value = vio_vqr_driver_features_read(r, 0);
            return 0;
        case VIRTIO_PCI_QUEUE_PFN:
            *value = q ? p->pfn[r->sel] : 0;
            return 0;
        case VIRTIO_PCI_QUEUE_NUM:
            *value = q ? vio_vqr_size(r, r->sel) : 0; /* 0: no such queue */
            return 0;
        case VIRTIO_PCI_QUEUE_SEL:
            *value = r->sel & 0xffff;
            return 0;
        case VIRTIO_PCI_STATUS:
            *value = vio_vqr_status(r);
            return 0;
        case VIRTIO_PCI_ISR:
            *value = vio_vqr_isr_take(r);
            if (p->set_intx)
                p->set_intx(p->irq_opaque, 0);
            return 0;
        case VIRTIO_MSI_CONFIG_VECTOR:
            *value = atomic_load_explicit(&p->config_vector, memory_order_acquire);
            return 0;
        case VIRTIO_MSI_QUEUE_VECTOR:
            *value = q ? q->vector : VIO_PCI_NO_VECTOR;
            return 0;
        default:
            return bad(p, "read of the write-only legacy QUEUE_NOTIFY", off, size);
        }
    }
    int rc;
    switch (off) {
    case VIRTIO_PCI_GUEST_FEATURES:
        rc = vio_vqr_driver_features_word(r, 0, v);
        if (rc < 0) {
            vio_vqr_warn(r, VIO_LOG_WARN, "GUEST_FEATURES 0x%x refused (features fixed or "
                         "DRIVER not set); ignored", v);
            return -EPROTO;
        }
        return 0;
    case VIRTIO_PCI_QUEUE_PFN:
        return legacy_pfn(p, v);
    case VIRTIO_PCI_QUEUE_SEL:
        return vio_vqr_select(r, v);
    case VIRTIO_PCI_QUEUE_NOTIFY:
        rc = vio_vqr_notify(r, v);
        if (rc == -ERANGE)
            return bad(p, "legacy QUEUE_NOTIFY of a queue the device does not have", off, size);
        return 0;
    case VIRTIO_PCI_STATUS:
        rc = vio_vqr_reg_status(r, v);
        if (v == 0)
            reset_transport(p);
        return rc;
    case VIRTIO_MSI_CONFIG_VECTOR:
        atomic_store_explicit(&p->config_vector, vector_or_none(p, v), memory_order_release);
        return 0;
    case VIRTIO_MSI_QUEUE_VECTOR:
        if (!q)
            return vio_vqr_queue_refused(r, -ENOENT, "MSI_QUEUE_VECTOR", v);
        vio_vqr_set_vector(r, vector_or_none(p, v));
        return 0;
    default:
        return bad(p, "write to a read-only legacy register", off, size);
    }
}

static int bar_access(struct vio_pci *p, unsigned bar, uint64_t off, unsigned size, bool write,
                      uint64_t *value)
{
    const struct vio_pci_layout *l = &p->l;
    if (size == 0 || size > 8)
        return bad(p, "BAR access of a bad width", off, size);
    if (p->transitional && bar == p->lbar)
        return legacy_access(p, off, size, write, value);
    if (p->nvec && bar == l->msix_bar) {
        int rc = msix_access(p, off, size, write, value);
        if (rc <= 0)
            return rc;
    }
    if (bar != l->bar)
        return bad(p, "access to a BAR without virtio windows", off, size);
    if (in(off, size, l->common_off, COMMON_LEN))
        return write ? common_write(p, off - l->common_off, size, *value)
                     : common_read(p, off - l->common_off, size, value);
    if (in(off, size, l->isr_off, 1)) {
        if (write)
            return bad(p, "write to the read-only ISR", off, size);
        /* reading the ISR acknowledges it and deasserts INTx */
        *value = vio_vqr_isr_take(&p->r);
        if (p->set_intx)
            p->set_intx(p->irq_opaque, 0);
        return 0;
    }
    if (p->dev_cfg_size && in(off, size, l->device_off, p->dev_cfg_size))
        return device_access(p, off - l->device_off, size, write, value);
    if (in(off, size, l->notify_off, (uint64_t)l->notify_mult * (p->r.nq - 1) + 4)) {
        if (!write)
            return bad(p, "read of the write-only notify window", off, size);
        uint64_t o = off - l->notify_off;
        if ((size != 2 && size != 4) || (l->notify_mult && (o % l->notify_mult)))
            return bad(p, "notify write of a bad width or offset", off, size);
        uint32_t q = (uint32_t)(*value & 0xffff);
        if (l->notify_mult && q != o / l->notify_mult)
            return bad(p, "notify value does not name the queue of its address", off, size);
        /* (the offer test first keeps the common path free of the status lookup) */
        if (p->r.transport_features && vio_vqr_negotiated(&p->r, PCI_F_NOTIFICATION_DATA)) {
            /* 4.1.5.2: vqn in the low 16 bits, the next avail index (or packed offset and
             * wrap counter) in the high 16 */
            if (size != 4)
                vio_vqr_warn(&p->r, VIO_LOG_DEBUG, "queue %u: %u-byte notify without data "
                             "although NOTIFICATION_DATA is negotiated", q, size);
            else if (p->notify_data && q < p->r.nq)
                p->notify_data(p->irq_opaque, q, (uint16_t)(*value >> 16));
        }
        int rc = vio_vqr_notify(&p->r, q);
        if (rc == -ERANGE)
            return bad(p, "notify of a queue the device does not have", off, size);
        return 0;
    }
    return bad(p, write ? "BAR write outside any window" : "BAR read outside any window", off,
               size);
}

int vio_pci_bar_read(struct vio_pci *p, unsigned bar, uint64_t offset, unsigned size,
                     uint64_t *value)
{
    if (!p || !value)
        return -EINVAL;
    *value = 0;
    int rc = bar_access(p, bar, offset, size, false, value);
    if (rc < 0)
        *value = 0;
    return rc;
}

int vio_pci_bar_write(struct vio_pci *p, unsigned bar, uint64_t offset, unsigned size,
                      uint64_t value)
{
    if (!p)
        return -EINVAL;
    if (size < 8)
        value &= (1ull << (8 * size)) - 1;
    return bar_access(p, bar, offset, size, true, &value);
}

/* ------------------------------------------------------------------------ */
/* configuration space                                                       */

static bool cfg_ok(uint32_t off, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && (off % size) == 0 && off < 4096;
}

int vio_pci_config_read(struct vio_pci *p, uint32_t offset, unsigned size, uint32_t *value)
{
    if (!p || !value)
        return -EINVAL;
    *value = 0;
    if (!cfg_ok(offset, size))
        return bad(p, "config space read of a bad width or alignment", offset, size);
    if (offset >= VIO_PCI_CONFIG_SPACE)
        return 0; /* no extended capabilities */
    /* the PCI cfg access capability: reading its data reads the BAR */
    const unsigned data = CAP_PCICFG + 16;
    if (offset < data + 4 && offset + size > data) {
        uint32_t len = get(p, CAP_PCICFG + 12, 4);
        uint64_t v = 0;
        if ((len == 1 || len == 2 || len == 4) &&
            vio_pci_bar_read(p, p->cfg[CAP_PCICFG + 4], get(p, CAP_PCICFG + 8, 4), len, &v) == 0)
            put32(p, data, (uint32_t)v, 0xffffffffu);
        else
            put32(p, data, 0, 0xffffffffu);
    }
    uint32_t v = get(p, offset, size);
    /* live bits: INTx status */
    if (offset <= PCI_STATUS && offset + size > PCI_STATUS &&
        vio_vqr_isr(&p->r) && !msix_on(p))
        v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - offset));
    *value = v;
    return 0;
}

int vio_pci_config_write(struct vio_pci *p, uint32_t offset, unsigned size, uint32_t value)
{
    if (!p)
        return -EINVAL;
    if (!cfg_ok(offset, size))
        return bad(p, "config space write of a bad width or alignment", offset, size);
    if (offset >= VIO_PCI_CONFIG_SPACE)
        return 0;
    uint32_t old_ctl = p->nvec ? get(p, CAP_MSIX + PCI_MSIX_FLAGS, 2) : 0;
    for (unsigned i = 0; i < size; i++) {
        unsigned o = offset + i;
        uint8_t b = (uint8_t)(value >> (8 * i));
        p->cfg[o] = (uint8_t)((p->cfg[o] & ~p->wmask[o]) | (b & p->wmask[o]));
    }
    uint16_t cmd = (uint16_t)get(p, PCI_COMMAND, 2);
    uint32_t dis = !!(cmd & PCI_COMMAND_INTX_DISABLE);
    uint32_t was = atomic_exchange_explicit(&p->intx_disabled, dis, memory_order_acq_rel);
    /* INTx disable masks the line, not the cause: follow the ISR when it toggles */
    if (was != dis && p->set_intx && !msix_on(p) &&
        vio_vqr_isr(&p->r))
        p->set_intx(p->irq_opaque, !dis);
    if (p->nvec) {
        uint32_t ctl = get(p, CAP_MSIX + PCI_MSIX_FLAGS, 2);
        atomic_store_explicit(&p->msix_ctl, ctl, memory_order_release);
        if (ctl != old_ctl) {
            for (uint16_t v = 0; v < p->nvec; v++)
                msix_report(p, v);
            msix_flush(p);
        }
        /* MSI-X on or off changes what a claimed queue's call fd must be (an irqfd of its
         * vector, or an eventfd the VMM answers with vio_pci_queue_interrupt()): the device
         * asks for the fds afresh */
        if ((ctl ^ old_ctl) & PCI_MSIX_FLAGS_ENABLE)
            vio_vqr_offload_refresh(&p->r);
    }
    const unsigned data = CAP_PCICFG + 16;
    if (offset < data + 4 && offset + size > data) {
        uint32_t len = get(p, CAP_PCICFG + 12, 4);
        if (len == 1 || len == 2 || len == 4)
            return vio_pci_bar_write(p, p->cfg[CAP_PCICFG + 4], get(p, CAP_PCICFG + 8, 4), len,
                                     get(p, data, 4));
        return bad(p, "PCI cfg access capability used with a bad length", offset, size);
    }
    return 0;
}

uint64_t vio_pci_bar_address(const struct vio_pci *p, unsigned bar)
{
    if (!p || bar > 5)
        return 0;
    bool used = bar == p->l.bar || (p->nvec && bar == p->l.msix_bar) ||
                (p->transitional && bar == p->lbar);
    if (!used)
        return 0;
    unsigned off = PCI_BASE_ADDRESS_0 + 4 * bar;
    if (p->transitional && bar == p->lbar)
        return get(p, off, 4) & ~3u;
    uint64_t a = get(p, off, 4) & ~0xfu;
    if (bar == p->l.bar && p->l.bar64)
        a |= (uint64_t)get(p, off + 4, 4) << 32;
    return a;
}

int vio_pci_notify_info(const struct vio_pci *p, unsigned qidx, struct vio_pci_notify_info *out)
{
    if (!p || !out)
        return -EINVAL;
    if (qidx >= p->r.nq)
        return -ERANGE;
    out->bar = p->l.bar;
    out->offset = p->l.notify_off + (uint64_t)qidx * p->l.notify_mult;
    out->size = 2;
    out->value = qidx;
    return 0;
}

int vio_pci_queue_notify(struct vio_pci *p, unsigned qidx)
{
    if (!p)
        return -EINVAL;
    return vio_vqr_notify(&p->r, qidx);
}

int vio_pci_queue_interrupt(struct vio_pci *p, unsigned qidx)
{
    if (!p)
        return -EINVAL;
    /* any thread: the device's queue count is fixed, its queue_info (which follows the
     * negotiated features) is control path and not asked here */
    if (qidx >= p->r.nq)
        return -ENOENT;
    irq_queue(p, qidx);
    return 0;
}

int vio_pci_msix_entry(const struct vio_pci *p, uint16_t vector, struct vio_pci_msix_msg *out)
{
    if (!p || !out)
        return -EINVAL;
    if (vector >= p->nvec)
        return -ERANGE;
    const struct msix_entry *e = &p->tab[vector];
    out->addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
    out->data = e->data;
    out->masked = vec_masked(p, vector);
    return 0;
}

uint8_t vio_pci_status(const struct vio_pci *p)
{
    return p ? vio_vqr_status(&p->r) : 0;
}

bool vio_pci_msix_enabled(const struct vio_pci *p)
{
    return p && msix_on(p);
}

void vio_pci_set_needs_reset(struct vio_pci *p)
{
    if (p)
        vio_vqr_needs_reset(&p->r);
}
