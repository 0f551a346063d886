/* SPDX-License-Identifier: MIT */
/*
 * virtio-MMIO, driver seat (virtio 1.2, 4.2 "Virtio Over MMIO"): probe one register window
 * and drive the version 2 registers, or the legacy version 1 ones (4.2.4: GuestPageSize,
 * QueueAlign, QueuePFN; no QueueReady, no ConfigGeneration, 32 feature bits).
 *
 * Register values are device-controlled: QueueNumMax is only compared, never used to size
 * anything; the configuration window is bounded by the window size the caller gives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_mmio.h>

#include "core/log.h"
#include "transport/driver_internal.h"
#include "virtio/driver.h"

#define MMIO_MAGIC 0x74726976u /* "virt" */
#define RESET_POLLS 1000
/* Queues probed by num_queues: MMIO has no count register, queues are the consecutive
 * selectors with a non-zero QueueNumMax. */
#define MMIO_MAX_QUEUES 1024u
#define LEGACY_PAGE 4096u

struct vio_mmio_driver {
    const struct vio_mmio_driver_io *io;
    void *opaque;
    vio_log_fn log;
    void *log_opaque;
    uint32_t window, version, device_id, vendor_id;
    int nq; /* cached queue count, -1 = not probed */
    uint32_t pfn[8]; /* legacy: QueuePFN to write at enable, per queue (0 = not set up) */
    uint32_t *pfns;  /* legacy: the same for every queue (nq entries), when nq > 8 */
};

static int rd(struct vio_mmio_driver *m, uint64_t off, uint32_t *v)
{
    return m->io->read(m->opaque, off, 4, v);
}

static int wr(struct vio_mmio_driver *m, uint64_t off, uint32_t v)
{
    return m->io->write(m->opaque, off, 4, v);
}

static int regs_rd(void *o, uint32_t off, unsigned size, uint32_t *v)
{
    struct vio_mmio_driver *m = o;
    return m->io->read(m->opaque, off, size, v);
}

static int regs_wr(void *o, uint32_t off, unsigned size, uint32_t v)
{
    struct vio_mmio_driver *m = o;
    return m->io->write(m->opaque, off, size, v);
}

/* the register window as the shared driver sequences see it */
static struct vio_drv_regs regs(struct vio_mmio_driver *m)
{
    return (struct vio_drv_regs){.rd = regs_rd, .wr = regs_wr, .o = m};
}

void vio_mmio_driver_free(struct vio_mmio_driver *m)
{
    if (m)
        free(m->pfns);
    free(m);
}

uint32_t vio_mmio_driver_version(const struct vio_mmio_driver *m)
{
    return m ? m->version : 0;
}

int vio_mmio_driver_new(const struct vio_mmio_driver_config *cfg, struct vio_mmio_driver **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->struct_size < sizeof(*cfg) || !cfg->io || !cfg->io->read || !cfg->io->write)
        return -EINVAL;
    uint32_t window = cfg->window_size ? cfg->window_size : 0x200u;
    if (window < VIRTIO_MMIO_CONFIG)
        return -EINVAL;
    struct vio_mmio_driver *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    *m = (struct vio_mmio_driver){.io = cfg->io, .opaque = cfg->io_opaque, .log = cfg->log,
                                  .log_opaque = cfg->log_opaque, .window = window, .nq = -1};
    uint32_t magic;
    int r;
    if ((r = rd(m, VIRTIO_MMIO_MAGIC_VALUE, &magic)) < 0 || (r = rd(m, VIRTIO_MMIO_VERSION, &m->version)) < 0 ||
        (r = rd(m, VIRTIO_MMIO_DEVICE_ID, &m->device_id)) < 0 || (r = rd(m, VIRTIO_MMIO_VENDOR_ID, &m->vendor_id)) < 0)
        goto fail;
    if (magic != MMIO_MAGIC) {
        r = -ENODEV;
        goto fail;
    }
    if (m->version != 1 && m->version != 2) {
        vio_logf(m->log, m->log_opaque, VIO_LOG_WARN, "mmio-driver",
                 "version %u: only versions 1 and 2 are driven", m->version);
        r = -ENOTSUP;
        goto fail;
    }
    if (m->device_id == 0) {
        r = -ENODEV;
        goto fail;
    }
    vio_logf(m->log, m->log_opaque, VIO_LOG_INFO, "mmio-driver",
             "virtio device %u, vendor 0x%x, version %u%s", m->device_id, m->vendor_id,
             m->version, m->version == 1 ? " (legacy)" : "");
    *out = m;
    return 0;
fail:
    free(m);
    return r;
}

uint32_t vio_mmio_driver_device_id(const struct vio_mmio_driver *m)
{
    return m ? m->device_id : 0;
}

static int m_get_features(void *o, uint64_t *f)
{
    struct vio_drv_regs io = regs(o);
    return vio_drv_features_get(&io, VIRTIO_MMIO_DEVICE_FEATURES_SEL, VIRTIO_MMIO_DEVICE_FEATURES,
                                f);
}

static int m_set_features(void *o, uint64_t f)
{
    struct vio_drv_regs io = regs(o);
    return vio_drv_features_set(&io, VIRTIO_MMIO_DRIVER_FEATURES_SEL, VIRTIO_MMIO_DRIVER_FEATURES,
                                f);
}

static int m_get_status(void *o, uint8_t *st)
{
    uint32_t v;
    if (!st)
        return -EINVAL;
    int r = rd(o, VIRTIO_MMIO_STATUS, &v);
    if (r == 0)
        *st = (uint8_t)v;
    return r;
}

static int m_set_status(void *o, uint8_t st)
{
    return st ? wr(o, VIRTIO_MMIO_STATUS, st) : -EINVAL;
}

static uint32_t *legacy_pfn(struct vio_mmio_driver *m, unsigned idx)
{
    if (idx < 8)
        return &m->pfn[idx];
    return m->pfns && m->nq > 0 && idx < (unsigned)m->nq ? &m->pfns[idx] : NULL;
}

static int m_reset(void *o)
{
    struct vio_mmio_driver *m = o;
    memset(m->pfn, 0, sizeof(m->pfn));
    if (m->pfns && m->nq > 0)
        memset(m->pfns, 0, (size_t)m->nq * sizeof(*m->pfns));
    int r = wr(m, VIRTIO_MMIO_STATUS, 0);
    for (int i = 0; r == 0 && i < RESET_POLLS; i++) {
        uint32_t v;
        if ((r = rd(m, VIRTIO_MMIO_STATUS, &v)) < 0)
            return r;
        if ((v & 0xff) == 0)
            return 0;
    }
    return r < 0 ? r : -ETIMEDOUT;
}

static int cfg_rw(struct vio_mmio_driver *m, unsigned off, uint8_t *buf, unsigned len, bool w)
{
    if (!buf)
        return -EINVAL;
    if ((uint64_t)off + len > m->window - VIRTIO_MMIO_CONFIG)
        return -ERANGE;
    struct vio_drv_regs io = regs(m);
    return vio_drv_config_rw(&io, VIRTIO_MMIO_CONFIG, off, buf, len, w);
}

static int m_config_read(void *o, unsigned off, void *buf, unsigned len)
{
    return cfg_rw(o, off, buf, len, false);
}

static int m_config_write(void *o, unsigned off, const void *buf, unsigned len)
{
    return cfg_rw(o, off, (uint8_t *)(uintptr_t)buf, len, true);
}

static int m_config_generation(void *o, uint32_t *gen)
{
    return gen ? rd(o, VIRTIO_MMIO_CONFIG_GENERATION, gen) : -EINVAL;
}

static int m_max(struct vio_mmio_driver *m, unsigned idx)
{
    uint32_t v;
    int r;
    if ((r = wr(m, VIRTIO_MMIO_QUEUE_SEL, idx)) < 0 || (r = rd(m, VIRTIO_MMIO_QUEUE_NUM_MAX, &v)) < 0)
        return r;
    return v > 0x8000u ? 0x8000 : (int)v; /* a queue is never larger than 32768 */
}

static int m_num_queues(void *o)
{
    struct vio_mmio_driver *m = o;
    if (m->nq >= 0)
        return m->nq;
    unsigned n = 0;
    while (n < MMIO_MAX_QUEUES) {
        int r = m_max(m, n);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        n++;
    }
    if (m->version == 1 && n > 8) {
        m->pfns = calloc(n, sizeof(*m->pfns));
        if (!m->pfns)
            return -ENOMEM;
    }
    m->nq = (int)n;
    return m->nq;
}

static int m_check(struct vio_mmio_driver *m, unsigned idx)
{
    int n = m_num_queues(m);
    if (n < 0)
        return n;
    return idx < (unsigned)n ? 0 : -ERANGE;
}

static int m_queue_max_size(void *o, unsigned idx)
{
    int r = m_check(o, idx);
    return r < 0 ? r : m_max(o, idx);
}

/* Legacy rings sit in one block: descriptors page-aligned, the avail ring right after them,
 * the used ring at the next multiple of QueueAlign. The caller's addresses must have that
 * shape; the smallest alignment that gives it is written (QEMU aligns the end of the avail
 * ring without used_event, the spec with it: both must land on the same address). */
static int legacy_setup(struct vio_mmio_driver *m, unsigned idx, const struct vio_driver_queue *q)
{
    uint32_t *pfn = legacy_pfn(m, idx);
    if (!pfn)
        return -ERANGE;
    if ((q->desc % LEGACY_PAGE) || (q->desc / LEGACY_PAGE) > UINT32_MAX ||
        q->driver != q->desc + 16ull * q->size)
        return -EINVAL;
    uint64_t end_spec = q->driver + 6 + 2ull * q->size, end_qemu = end_spec - 2;
    uint32_t align = 0;
    for (uint32_t a = 4; a <= LEGACY_PAGE; a <<= 1) {
        if (((end_spec + a - 1) & ~(uint64_t)(a - 1)) == q->device &&
            ((end_qemu + a - 1) & ~(uint64_t)(a - 1)) == q->device) {
            align = a;
            break;
        }
    }
    if (!align)
        return -EINVAL;
    uint32_t cur;
    int r;
    if ((r = rd(m, VIRTIO_MMIO_QUEUE_PFN, &cur)) < 0)
        return r;
    if (cur)
        return -EBUSY;
    if ((r = wr(m, VIRTIO_MMIO_GUEST_PAGE_SIZE, LEGACY_PAGE)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_NUM, q->size)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_ALIGN, align)) < 0)
        return r;
    *pfn = (uint32_t)(q->desc / LEGACY_PAGE);
    return 0;
}

static int m_queue_setup(void *o, unsigned idx, const struct vio_driver_queue *q)
{
    struct vio_mmio_driver *m = o;
    if (!vio_drv_ring_ok(q))
        return -EINVAL;
    int max = m_queue_max_size(m, idx); /* selects */
    if (max < 0)
        return max;
    if (q->size > (unsigned)max)
        return -ERANGE;
    if (m->version == 1)
        return legacy_setup(m, idx, q);
    static const uint32_t lo[3] = {VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                                   VIRTIO_MMIO_QUEUE_USED_LOW};
    struct vio_drv_regs io = regs(m);
    return vio_drv_queue_program(&io, VIRTIO_MMIO_QUEUE_READY, VIRTIO_MMIO_QUEUE_NUM, 4, lo, q);
}

static int m_queue_enable(void *o, unsigned idx)
{
    struct vio_mmio_driver *m = o;
    int r = m_check(m, idx);
    if (r < 0 || (r = wr(m, VIRTIO_MMIO_QUEUE_SEL, idx)) < 0)
        return r;
    if (m->version == 1) {
        /* legacy: writing QueuePFN is what makes the queue live */
        uint32_t *pfn = legacy_pfn(m, idx);
        if (!pfn || !*pfn)
            return -EINVAL;
        return wr(m, VIRTIO_MMIO_QUEUE_PFN, *pfn);
    }
    return wr(m, VIRTIO_MMIO_QUEUE_READY, 1);
}

static int m_notify(void *o, unsigned idx)
{
    struct vio_mmio_driver *m = o;
    /* the count is cached once any queue was set up: no register access but the write */
    if (m->nq < 0 || idx >= (unsigned)m->nq)
        return m->nq < 0 ? -EINVAL : -ERANGE;
    return wr(m, VIRTIO_MMIO_QUEUE_NOTIFY, idx);
}

static int m_ack_interrupt(void *o)
{
    struct vio_mmio_driver *m = o;
    uint32_t v;
    int r = rd(m, VIRTIO_MMIO_INTERRUPT_STATUS, &v);
    if (r < 0)
        return r;
    v &= VIO_DRIVER_INT_VRING | VIO_DRIVER_INT_CONFIG;
    if (v && (r = wr(m, VIRTIO_MMIO_INTERRUPT_ACK, v)) < 0)
        return r;
    return (int)v;
}

/* The ops both register versions share; legacy has no ConfigGeneration. */
#define MMIO_OPS_COMMON                                                                    \
    .get_features = m_get_features, .set_features = m_set_features,                        \
    .get_status = m_get_status, .set_status = m_set_status, .reset = m_reset,              \
    .config_read = m_config_read, .config_write = m_config_write,                          \
    .num_queues = m_num_queues, .queue_max_size = m_queue_max_size,                        \
    .queue_setup = m_queue_setup, .queue_enable = m_queue_enable, .notify = m_notify,      \
    .ack_interrupt = m_ack_interrupt

static const struct vio_driver_ops mmio_legacy_ops = {.flags = VIO_DRIVER_LEGACY, MMIO_OPS_COMMON};

static const struct vio_driver_ops mmio_ops = {MMIO_OPS_COMMON,
                                               .config_generation = m_config_generation};

struct vio_driver vio_mmio_driver_get(struct vio_mmio_driver *m)
{
    const struct vio_driver_ops *ops = !m ? NULL : m->version == 1 ? &mmio_legacy_ops : &mmio_ops;
    return (struct vio_driver){.ops = ops, .opaque = m};
}
