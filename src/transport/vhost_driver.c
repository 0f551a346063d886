/* SPDX-License-Identifier: MIT */
/*
 * The driver adapter of the vhost frontend (virtio/vhost.h): a struct vio_vhost seen as a
 * driver-seat transport (virtio/driver.h), so driver helpers such as net_driver run over
 * vhost-net or a vhost-user backend unchanged.
 *
 * Mapping (what vio_driver_negotiate() and vio_net_driver_attach() call, in their order):
 * reset -> stop the rings this adapter started (GET_VRING_BASE), status 0;
 * get_features -> the backend's bits minus what a driver may not see (PROTOCOL_FEATURES,
 * LOG_ALL); set_features -> remembered; set_status(FEATURES_OK) -> SET_FEATURES and the
 * memory table; queue_setup -> remembered; queue_enable -> SET_VRING_NUM / BASE 0 / ADDR
 * (guest addresses translated through the regions) / KICK / CALL, then SET_VRING_ENABLE
 * (vhost-user with PROTOCOL_FEATURES) and the net backend (kernel); notify -> write the
 * ring's kick eventfd; ack_interrupt -> drain the call eventfds.
 * With the STATUS protocol feature every status byte is forwarded too.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "transport/driver_internal.h"
#include "transport/vhost_internal.h"
#include "virtio/status.h"

#define OBJ "vhost-driver"
#define DEFAULT_QUEUES 2u
#define DEFAULT_QSIZE 1024u
#define F_LOG_ALL 26u
#define F_PROTOCOL_FEATURES 30u
#define CONFIG_SPACE 256u

struct vd_queue {
    struct vio_driver_queue q;
    bool setup;
    atomic_bool started;
    int kick, call;
};

struct vio_vhost_driver {
    struct vio_vhost *v;
    struct vio_vhost_mem_region regions[VIO_VHOST_MAX_MEM_REGIONS];
    unsigned nregions;
    unsigned nq;
    uint16_t qmax;
    int net_fd;
    vio_log_fn log;
    void *log_opaque;
    uint8_t status;
    uint64_t features;
    struct vd_queue *q;
};

#define LOG(d, lvl, ...) vio_logf((d)->log, (d)->log_opaque, (lvl), OBJ, __VA_ARGS__)

/* guest-physical [gpa, gpa + len) to this process's address, 0 when outside the regions */
static uint64_t g2u(const struct vio_vhost_driver *d, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < d->nregions; i++) {
        const struct vio_vhost_mem_region *r = &d->regions[i];
        if (gpa >= r->guest_addr && gpa - r->guest_addr <= r->size &&
            len <= r->size - (gpa - r->guest_addr))
            return r->user_addr + (gpa - r->guest_addr);
    }
    return 0;
}

static void drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
}

/* Stop the rings this adapter started. */
static void stop_rings(struct vio_vhost_driver *d)
{
    for (unsigned i = 0; i < d->nq; i++) {
        struct vd_queue *q = &d->q[i];
        if (!atomic_load(&q->started))
            continue;
        atomic_store(&q->started, false);
        if (d->net_fd >= 0)
            (void)vio_vhost_net_set_backend(d->v, i, -1);
        unsigned base;
        int r = vio_vhost_get_vring_base(d->v, i, &base);
        if (r == 0)
            LOG(d, VIO_LOG_INFO, "ring %u stopped at %u", i, base);
        else if (r != -ENOTCONN)
            LOG(d, VIO_LOG_WARN, "ring %u: GET_VRING_BASE failed (%s)", i, strerror(-r));
    }
}

static struct vio_vhost_driver *D(void *o)
{
    return o;
}

static int vd_get_features(void *o, uint64_t *f)
{
    if (!f)
        return -EINVAL;
    uint64_t v;
    int r = vio_vhost_get_features(D(o)->v, &v);
    if (r == 0)
        *f = v & ~((1ull << F_PROTOCOL_FEATURES) | (1ull << F_LOG_ALL));
    return r;
}

static int vd_set_features(void *o, uint64_t f)
{
    D(o)->features = f;
    return 0;
}

static int vd_get_status(void *o, uint8_t *st)
{
    struct vio_vhost_driver *d = o;
    if (!st)
        return -EINVAL;
    uint8_t s = d->status;
    /* a backend that is gone (or says so) needs a reset */
    if (!vio_vhost_connected(d->v))
        s |= VIO_S_NEEDS_RESET;
    uint8_t b;
    if (s && vio_vhost_get_status(d->v, &b) == 0) {
        s |= b & VIO_S_NEEDS_RESET;
        /* a backend with STATUS that could not take the features clears FEATURES_OK
         * (spec 3.1.1 step 6): the driver must see that */
        if (!(b & VIO_S_FEATURES_OK))
            s &= (uint8_t)~VIO_S_FEATURES_OK;
    }
    *st = s;
    return 0;
}

static int vd_set_status(void *o, uint8_t st)
{
    struct vio_vhost_driver *d = o;
    if (st == 0)
        return -EINVAL;
    int r;
    /* the step to FEATURES_OK hands the features and the memory over (not when the driver
     * is only marking the device FAILED after that step went wrong) */
    if ((st & VIO_S_FEATURES_OK) && !(d->status & VIO_S_FEATURES_OK) && !(st & VIO_S_FAILED)) {
        if ((r = vio_vhost_set_features(d->v, d->features)) < 0) {
            LOG(d, VIO_LOG_ERROR, "SET_FEATURES 0x%llx failed (%s)",
                (unsigned long long)d->features, strerror(-r));
            return r;
        }
        if ((r = vio_vhost_set_mem_table(d->v, d->regions, d->nregions)) < 0) {
            LOG(d, VIO_LOG_ERROR, "SET_MEM_TABLE failed (%s)", strerror(-r));
            return r;
        }
    }
    r = vio_vhost_set_status(d->v, st);
    if (r < 0 && r != -ENOTSUP)
        return r;
    d->status = st;
    return 0;
}

static int vd_reset(void *o)
{
    struct vio_vhost_driver *d = o;
    stop_rings(d);
    for (unsigned i = 0; i < d->nq; i++) {
        d->q[i].setup = false;
        drain(d->q[i].kick);
        drain(d->q[i].call);
    }
    if (d->status) {
        int r = vio_vhost_set_status(d->v, 0);
        if (r < 0 && r != -ENOTSUP && r != -ENOTCONN)
            LOG(d, VIO_LOG_WARN, "SET_STATUS 0 failed (%s)", strerror(-r));
    }
    d->status = 0;
    d->features = 0;
    return 0;
}

static int cfg_range(unsigned off, unsigned len)
{
    return len > CONFIG_SPACE || off > CONFIG_SPACE - len ? -ERANGE : 0;
}

static int vd_config_read(void *o, unsigned off, void *buf, unsigned len)
{
    if (!buf)
        return -EINVAL;
    int r = cfg_range(off, len);
    return r < 0 ? r : len == 0 ? 0 : vio_vhost_get_config(D(o)->v, off, buf, len);
}

static int vd_config_write(void *o, unsigned off, const void *buf, unsigned len)
{
    if (!buf)
        return -EINVAL;
    int r = cfg_range(off, len);
    return r < 0 ? r : len == 0 ? 0 : vio_vhost_set_config(D(o)->v, off, buf, len);
}

static int vd_num_queues(void *o)
{
    return (int)D(o)->nq;
}

static int vd_queue_max_size(void *o, unsigned idx)
{
    struct vio_vhost_driver *d = o;
    return idx < d->nq ? d->qmax : -ERANGE;
}

static int vd_queue_setup(void *o, unsigned idx, const struct vio_driver_queue *q)
{
    struct vio_vhost_driver *d = o;
    if (!vio_drv_ring_ok(q))
        return -EINVAL;
    if (idx >= d->nq || q->size > d->qmax)
        return -ERANGE;
    if (atomic_load(&d->q[idx].started))
        return -EBUSY;
    d->q[idx].q = *q;
    d->q[idx].setup = true;
    return 0;
}

static int vd_queue_enable(void *o, unsigned idx)
{
    struct vio_vhost_driver *d = o;
    if (idx >= d->nq)
        return -ERANGE;
    struct vd_queue *vq = &d->q[idx];
    if (!vq->setup)
        return -EINVAL;
    if (atomic_load(&vq->started))
        return -EBUSY;
    const struct vio_driver_queue *q = &vq->q;
    struct vio_vhost_vring_addr a = {
        .desc = g2u(d, q->desc, 16ull * q->size),
        .avail = g2u(d, q->driver, 6ull + 2ull * q->size),
        .used = g2u(d, q->device, 6ull + 8ull * q->size),
        .log_guest_addr = q->device,
    };
    if (!a.desc || !a.avail || !a.used) {
        LOG(d, VIO_LOG_ERROR, "ring %u lies outside the memory regions", idx);
        return -EFAULT;
    }
    struct vio_vhost *v = d->v;
    int r;
    if ((r = vio_vhost_set_vring_num(v, idx, q->size)) < 0 ||
        (r = vio_vhost_set_vring_base(v, idx, 0)) < 0 ||
        (r = vio_vhost_set_vring_addr(v, idx, &a)) < 0 ||
        (r = vio_vhost_set_vring_kick(v, idx, vq->kick)) < 0 ||
        (r = vio_vhost_set_vring_call(v, idx, vq->call)) < 0) {
        LOG(d, VIO_LOG_ERROR, "ring %u: setting it up failed (%s)", idx, strerror(-r));
        return r;
    }
    /* the ring is live for the backend from here: GET_VRING_BASE stops it on reset */
    atomic_store(&vq->started, true);
    r = vio_vhost_set_vring_enable(v, idx, true);
    if (r < 0 && r != -ENOTSUP) {
        LOG(d, VIO_LOG_ERROR, "ring %u: enable failed (%s)", idx, strerror(-r));
        return r;
    }
    if (d->net_fd >= 0 && (r = vio_vhost_net_set_backend(v, idx, d->net_fd)) < 0) {
        LOG(d, VIO_LOG_ERROR, "ring %u: attaching the net backend failed (%s)", idx,
            strerror(-r));
        return r;
    }
    return 0;
}

static int vd_notify(void *o, unsigned idx)
{
    struct vio_vhost_driver *d = o;
    if (idx >= d->nq)
        return -ERANGE;
    if (!atomic_load_explicit(&d->q[idx].started, memory_order_relaxed))
        return -EINVAL;
    uint64_t one = 1;
    ssize_t n = write(d->q[idx].kick, &one, sizeof(one));
    /* EAGAIN: the counter is saturated, a kick is pending anyway */
    return n == (ssize_t)sizeof(one) || errno == EAGAIN ? 0 : -errno;
}

static int vd_ack_interrupt(void *o)
{
    struct vio_vhost_driver *d = o;
    int cause = 0;
    for (unsigned i = 0; i < d->nq; i++) {
        uint64_t v;
        if (read(d->q[i].call, &v, sizeof(v)) == (ssize_t)sizeof(v))
            cause = VIO_DRIVER_INT_VRING;
    }
    return cause;
}

static const struct vio_driver_ops vd_ops = {
    .get_features = vd_get_features,
    .set_features = vd_set_features,
    .get_status = vd_get_status,
    .set_status = vd_set_status,
    .reset = vd_reset,
    .config_read = vd_config_read,
    .config_write = vd_config_write,
    .num_queues = vd_num_queues,
    .queue_max_size = vd_queue_max_size,
    .queue_setup = vd_queue_setup,
    .queue_enable = vd_queue_enable,
    .notify = vd_notify,
    .ack_interrupt = vd_ack_interrupt,
};

void vio_vhost_driver_free(struct vio_vhost_driver *d)
{
    if (!d)
        return;
    if (d->q) {
        stop_rings(d);
        for (unsigned i = 0; i < d->nq; i++) {
            if (d->q[i].kick >= 0)
                close(d->q[i].kick);
            if (d->q[i].call >= 0)
                close(d->q[i].call);
        }
    }
    free(d->q);
    free(d);
}

int vio_vhost_driver_new(const struct vio_vhost_driver_config *cfg, struct vio_vhost_driver **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->struct_size < sizeof(*cfg) || !cfg->vhost || !cfg->regions ||
        cfg->num_regions == 0 || cfg->num_regions > VIO_VHOST_MAX_MEM_REGIONS ||
        cfg->num_queues > VIO_VHOST_MAX_RINGS || (cfg->max_queue_size & (cfg->max_queue_size - 1)))
        return -EINVAL;
    for (unsigned i = 0; i < cfg->num_regions; i++) {
        const struct vio_vhost_mem_region *r = &cfg->regions[i];
        if (r->size == 0 || r->guest_addr + (r->size - 1) < r->guest_addr ||
            r->user_addr + (r->size - 1) < r->user_addr)
            return -EINVAL;
    }
    struct vio_vhost_driver *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->v = cfg->vhost;
    memcpy(d->regions, cfg->regions, cfg->num_regions * sizeof(*cfg->regions));
    d->nregions = cfg->num_regions;
    d->nq = cfg->num_queues ? cfg->num_queues : DEFAULT_QUEUES;
    d->qmax = cfg->max_queue_size ? cfg->max_queue_size : DEFAULT_QSIZE;
    d->net_fd = cfg->net_backend_fd;
    d->log = cfg->log;
    d->log_opaque = cfg->log_opaque;
    d->q = calloc(d->nq, sizeof(*d->q));
    if (!d->q) {
        free(d);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < d->nq; i++)
        d->q[i].kick = d->q[i].call = -1;
    int r = 0;
    for (unsigned i = 0; i < d->nq && r == 0; i++) {
        d->q[i].kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        d->q[i].call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->q[i].kick < 0 || d->q[i].call < 0)
            r = -errno;
    }
    /* the vhost order starts with the owner; one set by the application already is fine */
    if (r == 0 && (r = vio_vhost_set_owner(d->v)) == -EBUSY)
        r = 0;
    if (r < 0) {
        vio_vhost_driver_free(d);
        return r;
    }
    *out = d;
    return 0;
}

struct vio_driver vio_vhost_driver_get(struct vio_vhost_driver *d)
{
    return (struct vio_driver){.ops = d ? &vd_ops : NULL, .opaque = d};
}

int vio_vhost_driver_call_fd(const struct vio_vhost_driver *d, unsigned idx)
{
    return d && idx < d->nq ? d->q[idx].call : -1;
}

int vio_vhost_driver_kick_fd(const struct vio_vhost_driver *d, unsigned idx)
{
    return d && idx < d->nq ? d->q[idx].kick : -1;
}
