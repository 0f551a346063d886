/* SPDX-License-Identifier: MIT */
/*
 * virtio-MMIO, driver seat (virtio 1.2, 4.2 "Virtio Over MMIO"): probe one register window
 * and drive the version 2 registers. Version 1 (legacy: GuestPageSize / QueuePFN) is
 * refused with -ENOTSUP for now.
 *
 * Register values are device-controlled: QueueNumMax is only compared, never used to size
 * anything; the configuration window is bounded by the window size the caller gives.
 */
#include <errno.h>
#include <stdlib.h>

#include <linux/virtio_mmio.h>

#include "core/log.h"
#include "virtio/driver.h"

#define MMIO_MAGIC 0x74726976u /* "virt" */
#define RESET_POLLS 1000
/* Queues probed by num_queues: MMIO has no count register, queues are the consecutive
 * selectors with a non-zero QueueNumMax. */
#define MMIO_MAX_QUEUES 1024u

struct vio_mmio_driver {
    const struct vio_mmio_driver_io *io;
    void *opaque;
    vio_log_fn log;
    void *log_opaque;
    uint32_t window, version, device_id, vendor_id;
    int nq; /* cached queue count, -1 = not probed */
};

static int rd(struct vio_mmio_driver *m, uint64_t off, uint32_t *v)
{
    return m->io->read(m->opaque, off, 4, v);
}

static int wr(struct vio_mmio_driver *m, uint64_t off, uint32_t v)
{
    return m->io->write(m->opaque, off, 4, v);
}

void vio_mmio_driver_free(struct vio_mmio_driver *m)
{
    free(m);
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
    if (m->version != 2) {
        vio_logf(m->log, m->log_opaque, VIO_LOG_WARN, "mmio-driver",
                 "version %u: only version 2 is driven", m->version);
        r = -ENOTSUP;
        goto fail;
    }
    if (m->device_id == 0) {
        r = -ENODEV;
        goto fail;
    }
    vio_logf(m->log, m->log_opaque, VIO_LOG_INFO, "mmio-driver", "virtio device %u, vendor 0x%x",
             m->device_id, m->vendor_id);
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
    struct vio_mmio_driver *m = o;
    if (!f)
        return -EINVAL;
    uint32_t lo, hi;
    int r;
    if ((r = wr(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0)) < 0 || (r = rd(m, VIRTIO_MMIO_DEVICE_FEATURES, &lo)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1)) < 0 || (r = rd(m, VIRTIO_MMIO_DEVICE_FEATURES, &hi)) < 0)
        return r;
    *f = ((uint64_t)hi << 32) | lo;
    return 0;
}

static int m_set_features(void *o, uint64_t f)
{
    struct vio_mmio_driver *m = o;
    int r;
    if ((r = wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0)) < 0 || (r = wr(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32))) < 0)
        return r;
    return 0;
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

static int m_reset(void *o)
{
    struct vio_mmio_driver *m = o;
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
    while (len) {
        unsigned n = 4;
        while (n > 1 && ((off & (n - 1)) || n > len))
            n >>= 1;
        uint32_t v = 0;
        int r;
        if (w) {
            for (unsigned i = 0; i < n; i++)
                v |= (uint32_t)buf[i] << (8 * i);
            r = m->io->write(m->opaque, VIRTIO_MMIO_CONFIG + off, n, v);
        } else {
            r = m->io->read(m->opaque, VIRTIO_MMIO_CONFIG + off, n, &v);
            for (unsigned i = 0; r == 0 && i < n; i++)
                buf[i] = (uint8_t)(v >> (8 * i));
        }
        if (r < 0)
            return r;
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
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

static int m_queue_setup(void *o, unsigned idx, const struct vio_driver_queue *q)
{
    struct vio_mmio_driver *m = o;
    if (!q || !q->size || (q->size & (q->size - 1)) || (q->desc & 15) || (q->driver & 1) || (q->device & 3))
        return -EINVAL;
    int max = m_queue_max_size(m, idx); /* selects */
    if (max < 0)
        return max;
    if (q->size > (unsigned)max)
        return -ERANGE;
    uint32_t ready;
    int r;
    if ((r = rd(m, VIRTIO_MMIO_QUEUE_READY, &ready)) < 0)
        return r;
    if (ready & 1)
        return -EBUSY;
    if ((r = wr(m, VIRTIO_MMIO_QUEUE_NUM, q->size)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(q->desc >> 32))) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)q->driver)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(q->driver >> 32))) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)q->device)) < 0 ||
        (r = wr(m, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(q->device >> 32))) < 0)
        return r;
    return 0;
}

static int m_queue_enable(void *o, unsigned idx)
{
    struct vio_mmio_driver *m = o;
    int r = m_check(m, idx);
    if (r < 0 || (r = wr(m, VIRTIO_MMIO_QUEUE_SEL, idx)) < 0)
        return r;
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

static const struct vio_driver_ops mmio_ops = {
    .get_features = m_get_features,
    .set_features = m_set_features,
    .get_status = m_get_status,
    .set_status = m_set_status,
    .reset = m_reset,
    .config_read = m_config_read,
    .config_write = m_config_write,
    .config_generation = m_config_generation,
    .num_queues = m_num_queues,
    .queue_max_size = m_queue_max_size,
    .queue_setup = m_queue_setup,
    .queue_enable = m_queue_enable,
    .notify = m_notify,
    .ack_interrupt = m_ack_interrupt,
};

struct vio_driver vio_mmio_driver_get(struct vio_mmio_driver *m)
{
    return (struct vio_driver){.ops = m ? &mmio_ops : NULL, .opaque = m};
}
