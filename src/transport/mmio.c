/* SPDX-License-Identifier: MIT */
/* virtio-MMIO device side: the register decoder (virtio spec "Virtio Over MMIO"). */
#include "virtio/mmio.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "transport/vq_regs.h"

#define MMIO_MAGIC 0x74726976u /* "virt" */
#define MMIO_DEFAULT_VENDOR 0x4f495621u
/* feature bit numbers the transport masks out of the offer (not implemented here yet) */
#define MMIO_F_NOTIFICATION_DATA 38
#define MMIO_F_RING_RESET 40

struct vio_mmio {
    struct vio_vqr r;
    uint32_t vendor;
    bool legacy;
    void (*raise_irq)(void *opaque, uint32_t bits);
    void (*lower_irq)(void *opaque);
    void *irq_opaque;
    void (*notify_data)(void *opaque, unsigned qidx, uint16_t next);
    uint32_t shm_sel;
    /* legacy (version 1) */
    uint32_t page_size;
    uint32_t *align; /* per queue */
    uint32_t *pfn;   /* per queue */
};

static void irq(struct vio_mmio *m, uint32_t bits)
{
    vio_vqr_isr_raise(&m->r, bits);
    if (m->raise_irq)
        m->raise_irq(m->irq_opaque, bits);
}

static void irq_queue(void *opaque, unsigned qidx)
{
    (void)qidx;
    irq(opaque, VIO_MMIO_INT_VRING);
}

static void irq_config(void *opaque)
{
    irq(opaque, VIO_MMIO_INT_CONFIG);
}

static const struct vio_vqr_ops mmio_vqr_ops = {.irq_queue = irq_queue, .irq_config = irq_config};

int vio_mmio_new(const struct vio_mmio_config *cfg, struct vio_mmio **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    /* the fields from notification_data on came later: a smaller struct_size leaves them 0 */
    if (!cfg || cfg->struct_size < offsetof(struct vio_mmio_config, notification_data))
        return -EINVAL;
    struct vio_mmio_config cbuf = {0};
    memcpy(&cbuf, cfg, cfg->struct_size < sizeof(cbuf) ? cfg->struct_size : sizeof(cbuf));
    cfg = &cbuf;
    if (!cfg->dev || !cfg->mem)
        return -EINVAL;
    struct vio_mmio *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->vendor = cfg->vendor_id ? cfg->vendor_id : MMIO_DEFAULT_VENDOR;
    m->legacy = cfg->legacy;
    m->raise_irq = cfg->raise_irq;
    m->lower_irq = cfg->lower_irq;
    m->irq_opaque = cfg->irq_opaque;
    m->notify_data = cfg->notify_data;
    m->page_size = 4096;
    struct vio_vqr_config rc = {.dev = cfg->dev, .mem = cfg->mem, .log = cfg->log,
                                .log_opaque = cfg->log_opaque, .name = "virtio-mmio",
                                .legacy = cfg->legacy,
                                .hide_features = vio_feature_bit(MMIO_F_NOTIFICATION_DATA) |
                                                 vio_feature_bit(MMIO_F_RING_RESET),
                                .transport_features =
                                    cfg->notification_data && !cfg->legacy
                                        ? vio_feature_bit(MMIO_F_NOTIFICATION_DATA)
                                        : 0,
                                .ops = &mmio_vqr_ops, .opaque = m,
                                .mem_regions = cfg->mem_regions, .queue_fds = cfg->queue_fds,
                                .offload_opaque = cfg->offload_opaque};
    int e = vio_vqr_init(&m->r, &rc);
    if (e < 0) {
        free(m);
        return e;
    }
    m->align = calloc(m->r.nq, sizeof(*m->align));
    m->pfn = calloc(m->r.nq, sizeof(*m->pfn));
    if (!m->align || !m->pfn) {
        vio_mmio_free(m);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < m->r.nq; i++)
        m->align[i] = 4096;
    *out = m;
    return 0;
}

void vio_mmio_free(struct vio_mmio *m)
{
    if (!m)
        return;
    vio_vqr_fini(&m->r);
    free(m->align);
    free(m->pfn);
    free(m);
}

static int bad(struct vio_mmio *m, const char *what, uint64_t off, unsigned size)
{
    return vio_vqr_bad_access(&m->r, what, off, size);
}

/* Device config window: 1, 2 or 4 bytes, naturally aligned (spec: 8-bit fields with 8-bit
 * accesses, 16-bit with aligned 16-bit, 32- and 64-bit fields with aligned 32-bit accesses);
 * a legacy device accepts any width up to 8 that the config space covers. */
static int config_access(struct vio_mmio *m, uint64_t off, unsigned size, bool write,
                         uint64_t *value)
{
    uint64_t co = off - VIRTIO_MMIO_CONFIG;
    bool ok = m->legacy ? (size >= 1 && size <= 8)
                        : (size == 1 || size == 2 || size == 4) && (co % size) == 0;
    if (!ok)
        return bad(m, write ? "config write of a width or alignment the spec forbids"
                            : "config read of a width or alignment the spec forbids", off, size);
    uint8_t b[8] = {0};
    if (write) {
        for (unsigned i = 0; i < size; i++)
            b[i] = (uint8_t)(*value >> (8 * i));
        int rc = vio_device_config_write(m->r.dev, (uint32_t)co, b, size);
        if (rc < 0)
            return bad(m, "config write refused by the device", off, size);
        return 0;
    }
    int rc = vio_device_config_read(m->r.dev, (uint32_t)co, b, size);
    if (rc < 0)
        return bad(m, "config read outside the device's config space", off, size);
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)b[i] << (8 * i);
    *value = v;
    return 0;
}

int vio_mmio_read(struct vio_mmio *m, uint64_t offset, unsigned size, uint64_t *value)
{
    if (!m || !value)
        return -EINVAL;
    *value = 0;
    if (offset >= VIRTIO_MMIO_CONFIG && offset < VIO_MMIO_SIZE && offset + size <= VIO_MMIO_SIZE)
        return config_access(m, offset, size, false, value);
    if (size != 4 || (offset & 3) || offset >= VIRTIO_MMIO_CONFIG)
        return bad(m, "register read of a width or alignment other than 32 bits", offset, size);
    struct vio_vqr *r = &m->r;
    uint32_t v = 0;
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        v = MMIO_MAGIC;
        break;
    case VIRTIO_MMIO_VERSION:
        v = m->legacy ? 1 : 2;
        break;
    case VIRTIO_MMIO_DEVICE_ID:
        v = vio_device_id(r->dev);
        break;
    case VIRTIO_MMIO_VENDOR_ID:
        v = m->vendor;
        break;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        v = vio_vqr_device_features_word(r, r->dev_feat_sel);
        break;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        v = vio_vqr_cur(r) ? vio_vqr_max(r, r->sel) : 0;
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (m->legacy)
            return bad(m, "QueueReady read on a legacy device", offset, size);
        v = vio_vqr_reg_queue_enabled(r);
        break;
    case VIRTIO_MMIO_QUEUE_PFN:
        if (!m->legacy)
            return bad(m, "QueuePFN read on a version 2 device", offset, size);
        v = vio_vqr_cur(r) ? m->pfn[r->sel] : 0;
        break;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        v = vio_vqr_isr(r);
        break;
    case VIRTIO_MMIO_STATUS:
        v = vio_vqr_status(r);
        break;
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
        if (m->legacy)
            return bad(m, "SHM register read on a legacy device", offset, size);
        /* no shared memory regions: a non-existent region has length -1 (and base -1) */
        v = 0xffffffffu;
        break;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        if (m->legacy)
            return bad(m, "ConfigGeneration read on a legacy device", offset, size);
        v = vio_vqr_reg_config_generation(r);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        /* write-only in the spec; Linux never reads them. Reading back what was written
         * costs nothing and helps debugging, but the spec leaves it undefined: report 0. */
    default:
        return bad(m, "read of a write-only or reserved register", offset, size);
    }
    *value = v;
    return 0;
}

/* Legacy: QueuePFN != 0 places and enables the rings; 0 disables the queue. */
static int legacy_pfn(struct vio_mmio *m, uint32_t pfn)
{
    struct vio_vqr *r = &m->r;
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return vio_vqr_queue_refused(r, -ENOENT, "QueuePFN", pfn);
    if (pfn == 0) {
        vio_vqr_disable(r);
        m->pfn[r->sel] = 0;
        return 0;
    }
    if (q->enabled)
        return vio_vqr_queue_refused(r, -EBUSY, "QueuePFN", pfn);
    uint32_t align = m->align[r->sel];
    uint64_t desc = (uint64_t)pfn * m->page_size;
    uint64_t avail = desc + 16ull * q->size;
    uint64_t used = (avail + 6 + 2ull * q->size + align - 1) & ~((uint64_t)align - 1);
    vio_vqr_set_addr(r, 0, 2, desc);
    vio_vqr_set_addr(r, 1, 2, avail);
    vio_vqr_set_addr(r, 2, 2, used);
    int rc = vio_vqr_enable(r);
    if (rc == -EFAULT) {
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: QueuePFN 0x%x places the rings outside guest "
                     "memory; device needs reset", r->sel, pfn);
        vio_vqr_needs_reset(r);
        return -EPROTO;
    }
    if (rc < 0)
        return vio_vqr_queue_refused(r, rc, "QueuePFN", pfn);
    m->pfn[r->sel] = pfn;
    return 0;
}

int vio_mmio_write(struct vio_mmio *m, uint64_t offset, unsigned size, uint64_t value)
{
    if (!m)
        return -EINVAL;
    if (offset >= VIRTIO_MMIO_CONFIG && offset < VIO_MMIO_SIZE && offset + size <= VIO_MMIO_SIZE)
        return config_access(m, offset, size, true, &value);
    if (size != 4 || (offset & 3) || offset >= VIRTIO_MMIO_CONFIG)
        return bad(m, "register write of a width or alignment other than 32 bits", offset, size);
    struct vio_vqr *r = &m->r;
    uint32_t v = (uint32_t)value;
    int rc;
    switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        return vio_vqr_reg_device_features_sel(r, v);
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        return vio_vqr_reg_driver_features_sel(r, v);
    case VIRTIO_MMIO_DRIVER_FEATURES:
        return vio_vqr_reg_driver_features(r, "DriverFeatures", v);
    case VIRTIO_MMIO_GUEST_PAGE_SIZE:
        if (!m->legacy)
            break;
        if (v == 0 || (v & (v - 1)) != 0) {
            vio_vqr_warn(r, VIO_LOG_WARN, "GuestPageSize 0x%x is not a power of two; ignored", v);
            return -EPROTO;
        }
        m->page_size = v;
        return 0;
    case VIRTIO_MMIO_QUEUE_SEL:
        return vio_vqr_select(r, v);
    case VIRTIO_MMIO_QUEUE_NUM:
        return vio_vqr_reg_queue_size(r, "QueueNum", v);
    case VIRTIO_MMIO_QUEUE_ALIGN:
        if (!m->legacy)
            break;
        if (!vio_vqr_cur(r))
            return vio_vqr_queue_refused(r, -ENOENT, "QueueAlign", v);
        if (v == 0 || (v & (v - 1)) != 0 || v > (1u << 16)) {
            vio_vqr_warn(r, VIO_LOG_WARN, "QueueAlign 0x%x is not a power of two <= 64 KiB; "
                         "ignored", v);
            return -EPROTO;
        }
        if (vio_vqr_cur(r)->enabled)
            return vio_vqr_queue_refused(r, -EBUSY, "QueueAlign", v);
        m->align[r->sel] = v;
        return 0;
    case VIRTIO_MMIO_QUEUE_PFN:
        if (!m->legacy)
            break;
        return legacy_pfn(m, v);
    case VIRTIO_MMIO_QUEUE_READY:
        if (m->legacy)
            break;
        if (v == 0) {
            rc = vio_vqr_disable(r);
            return rc < 0 ? vio_vqr_queue_refused(r, rc, "QueueReady", v) : 0;
        }
        return vio_vqr_reg_queue_enable(r, "QueueReady", v);
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* (the offer test first keeps the common path free of the status lookup) */
        if (r->transport_features && vio_vqr_negotiated(r, MMIO_F_NOTIFICATION_DATA)) {
            /* 4.2.2: vqn in bits 0-15, the next avail index (or packed offset and wrap) in
             * bits 16-31 */
            uint16_t next = (uint16_t)(v >> 16);
            v &= 0xffff;
            if (m->notify_data && v < r->nq)
                m->notify_data(m->irq_opaque, v, next);
        }
        rc = vio_vqr_notify(r, v);
        if (rc == -ERANGE)
            return bad(m, "QueueNotify of a queue the device does not have", offset, size);
        if (rc == -EIO)
            vio_vqr_warn(r, VIO_LOG_DEBUG, "QueueNotify %u: the queue is not running", v);
        return 0;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        if (vio_vqr_isr_ack(r, v) == 0 && m->lower_irq)
            m->lower_irq(m->irq_opaque);
        return 0;
    case VIRTIO_MMIO_STATUS:
        rc = vio_vqr_reg_status(r, v);
        if (v == 0) {
            if (m->lower_irq)
                m->lower_irq(m->irq_opaque);
            for (unsigned i = 0; i < r->nq; i++) {
                m->pfn[i] = 0;
                m->align[i] = 4096;
            }
            m->shm_sel = 0;
        }
        return rc;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH: {
        if (m->legacy)
            break;
        unsigned which = (unsigned)((offset - VIRTIO_MMIO_QUEUE_DESC_LOW) >> 4);
        unsigned half = (unsigned)((offset >> 2) & 1);
        return vio_vqr_reg_queue_addr(r, which, half, v);
    }
    case VIRTIO_MMIO_SHM_SEL:
        if (m->legacy)
            break;
        m->shm_sel = v;
        return 0;
    default:
        break;
    }
    return bad(m, "write to a read-only or reserved register", offset, size);
}

int vio_mmio_notify_info(const struct vio_mmio *m, unsigned qidx,
                         struct vio_mmio_notify_info *out)
{
    if (!m || !out)
        return -EINVAL;
    if (qidx >= m->r.nq)
        return -ERANGE;
    out->offset = VIRTIO_MMIO_QUEUE_NOTIFY;
    out->size = 4;
    out->value = qidx;
    return 0;
}

int vio_mmio_queue_interrupt(struct vio_mmio *m, unsigned qidx)
{
    if (!m)
        return -EINVAL;
    /* any thread: the device's queue count is fixed, its queue_info (which follows the
     * negotiated features) is control path and not asked here */
    if (qidx >= m->r.nq)
        return -ENOENT;
    irq_queue(m, qidx);
    return 0;
}

int vio_mmio_queue_notify(struct vio_mmio *m, unsigned qidx)
{
    if (!m)
        return -EINVAL;
    return vio_vqr_notify(&m->r, qidx);
}

uint8_t vio_mmio_status(const struct vio_mmio *m)
{
    return m ? vio_vqr_status(&m->r) : 0;
}

uint32_t vio_mmio_interrupt_status(const struct vio_mmio *m)
{
    return m ? vio_vqr_isr(&m->r) : 0;
}

void vio_mmio_set_needs_reset(struct vio_mmio *m)
{
    if (m)
        vio_vqr_needs_reset(&m->r);
}
