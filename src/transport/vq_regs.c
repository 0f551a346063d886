/* SPDX-License-Identifier: MIT */
/* The queue / status register state shared by the MMIO and PCI device-side transports. */
#include "transport/vq_regs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define VQR_LOG_BUDGET 32u

void vio_vqr_warn(struct vio_vqr *r, int level, const char *fmt, ...)
{
    if (!r->log)
        return;
    /* A guest can write nonsense in a loop: after the budget, stay quiet until the next reset
     * (errors and info lines are not counted). */
    if (level == VIO_LOG_WARN) {
        if (r->log_budget == 0)
            return;
        if (--r->log_budget == 0) {
            r->log(r->log_opaque, VIO_LOG_WARN, r->name,
                   "too many bad register accesses; further ones are ignored silently until "
                   "the next reset");
            return;
        }
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    r->log(r->log_opaque, level, r->name, buf);
}

/* ------------------------------------------------------------------------ */
/* Device hooks (may run on device threads)                                  */

static void hook_notify(void *opaque, unsigned qidx)
{
    struct vio_vqr *r = opaque;
    if (r->ops && r->ops->irq_queue)
        r->ops->irq_queue(r->opaque, qidx);
}

static void hook_config(void *opaque)
{
    struct vio_vqr *r = opaque;
    if (r->ops && r->ops->irq_config)
        r->ops->irq_config(r->opaque);
}

static void hook_needs_reset(void *opaque)
{
    struct vio_vqr *r = opaque;
    if (r->st && vio_status_set_needs_reset(r->st))
        hook_config(r);
}

/* Control path (the device's queue_start op): the VMM's memory regions, as it gives them. */
static int hook_mem_regions(void *opaque, struct vio_device_mem_region *out, unsigned cap)
{
    struct vio_vqr *r = opaque;
    if (!out && cap)
        return -EINVAL;
    if (!r->mem_regions)
        return -ENOTSUP;
    return r->mem_regions(r->offload_opaque, out, cap);
}

static void claim_end(struct vio_vqr_queue *q)
{
    atomic_store_explicit(&q->claim_kick, -1, memory_order_release);
}

/* Control path (the device's queue_start op, from start_queue()): the device runs queue
 * @p qidx itself. Hand it the rings as the registers place them and the VMM's eventfds; from
 * now on vio_vqr_notify() forwards instead of processing. The claim ends where the queue
 * stops (stop_queues(), vio_vqr_disable(), a failed start). */
static int hook_queue_offload(void *opaque, unsigned qidx, struct vio_device_queue_offload *out)
{
    struct vio_vqr *r = opaque;
    if (!out || out->struct_size < sizeof(*out) || qidx >= r->nq)
        return -EINVAL;
    if (!r->queue_fds)
        return -ENOTSUP;
    struct vio_vqr_queue *q = &r->qs[qidx];
    if (!q->q || !q->enabled || q->size == 0 || q->running)
        return -EINVAL; /* only while start_queue() starts it */
    uint64_t n = q->size, ev = vio_vqr_negotiated(r, VIO_F_EVENT_IDX) ? 2 : 0;
    void *d = vio_mem_ptr(r->mem, q->desc, 16u * n, VIO_MEM_READ);
    void *a = vio_mem_ptr(r->mem, q->driver, 4u + 2u * n + ev, VIO_MEM_READ);
    void *u = vio_mem_ptr(r->mem, q->device, 4u + 8u * n + ev, VIO_MEM_WRITE);
    if (!d || !a || !u)
        return -EINVAL; /* vio_vqr_enable() checked them: cannot happen */
    uint16_t vec = r->ops && r->ops->offload_vector ? r->ops->offload_vector(r->opaque, qidx)
                                                    : VIO_VQR_NO_VECTOR;
    int kick = -1, call = -1;
    int rc = r->queue_fds(r->offload_opaque, qidx, vec, &kick, &call);
    if (rc < 0) {
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: the VMM has no eventfds for it (%s); it cannot "
                     "run outside the transport", qidx, strerror(-rc));
        return rc;
    }
    if (rc > 0 || kick < 0) {
        /* a kick fd is what lets a trapped notify reach whoever runs the ring */
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: the VMM's queue_fds gave no kick eventfd", qidx);
        return -EINVAL;
    }
    *out = (struct vio_device_queue_offload){
        .struct_size = sizeof(*out), .kick_fd = kick, .call_fd = call, .err_fd = -1,
        .size = q->size, .base = vio_queue_get_last_avail(q->q),
        .desc_gpa = q->desc, .avail_gpa = q->driver, .used_gpa = q->device,
        .desc_host = (uint64_t)(uintptr_t)d, .avail_host = (uint64_t)(uintptr_t)a,
        .used_host = (uint64_t)(uintptr_t)u};
    atomic_store_explicit(&q->claim_kick, kick, memory_order_release);
    vio_vqr_warn(r, VIO_LOG_INFO, "queue %u runs outside the transport (offloaded by the "
                 "device; vector 0x%x)", qidx, vec);
    return 0;
}

static void on_queue_broken(void *opaque, struct vio_queue *q, enum vio_violation why)
{
    (void)q;
    (void)why; /* the queue logged the rule itself */
    hook_needs_reset(opaque);
}

static int validate(void *opaque, uint64_t feats)
{
    struct vio_vqr *r = opaque;
    if (!r->dev->ops->set_features) {
        r->features_applied = true;
        return 0;
    }
    /* the transport's own features (NOTIFICATION_DATA) are not the device's business */
    int rc = vio_device_set_features(r->dev, feats & ~r->transport_features);
    if (rc < 0) {
        vio_vqr_warn(r, VIO_LOG_WARN, "the device refused features 0x%llx (%s); FEATURES_OK "
                     "stays clear", (unsigned long long)feats, strerror(-rc));
        return 1;
    }
    r->features_applied = true;
    return 0;
}

/* ------------------------------------------------------------------------ */

int vio_vqr_init(struct vio_vqr *r, const struct vio_vqr_config *cfg)
{
    if (!r || !cfg || !cfg->dev || !cfg->dev->ops || !cfg->mem)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    atomic_init(&r->isr, 0);
    r->dev = cfg->dev;
    r->mem = cfg->mem;
    r->log = cfg->log;
    r->log_opaque = cfg->log_opaque;
    r->name = cfg->name ? cfg->name : "transport";
    r->legacy = cfg->legacy;
    r->init_to_max = cfg->initial_size != 0;
    r->ops = cfg->ops;
    r->opaque = cfg->opaque;
    r->log_budget = VQR_LOG_BUDGET;
    r->transport_features = cfg->transport_features;
    r->mem_regions = cfg->mem_regions;
    r->queue_fds = cfg->queue_fds;
    r->offload_opaque = cfg->offload_opaque;
    r->nq = vio_device_num_queues(cfg->dev);
    if (r->nq == 0 || r->nq > VIO_DEVICE_MAX_QUEUES)
        return -EINVAL;
    r->qs = calloc(r->nq, sizeof(*r->qs));
    if (!r->qs)
        return -ENOMEM;
    for (unsigned i = 0; i < r->nq; i++) {
        r->qs[i].vector = VIO_VQR_NO_VECTOR;
        atomic_init(&r->qs[i].claim_kick, -1);
    }
    struct vio_status_config sc = {.struct_size = sizeof(sc),
                                   .device_features = (vio_device_features(cfg->dev) &
                                                       ~cfg->hide_features) |
                                                      cfg->transport_features,
                                   .allow_legacy = cfg->legacy,
                                   .validate = validate,
                                   .validate_opaque = r};
    int rc = vio_status_new(&sc, &r->st);
    if (rc < 0)
        goto fail;
    struct vio_device_hooks h = {.struct_size = sizeof(h), .opaque = r,
                                 .notify_queue = hook_notify, .config_changed = hook_config,
                                 .needs_reset = hook_needs_reset};
    /* a VMM that can hand queues out (eventfds per queue) offers them to an offload device */
    if (r->queue_fds) {
        h.queue_offload = hook_queue_offload;
        if (r->mem_regions)
            h.mem_regions = hook_mem_regions;
    }
    rc = vio_device_bind(r->dev, &h);
    if (rc < 0 && rc != -ENOTSUP)
        goto fail;
    return 0;
fail:
    vio_status_free(r->st);
    r->st = NULL;
    free(r->qs);
    r->qs = NULL;
    return rc;
}

static void stop_queues(struct vio_vqr *r)
{
    for (unsigned i = 0; i < r->nq; i++) {
        if (r->qs[i].running) {
            vio_device_queue_stop(r->dev, i);
            r->qs[i].running = false;
            claim_end(&r->qs[i]);
        }
    }
}

static void reset_regs(struct vio_vqr *r)
{
    for (unsigned i = 0; i < r->nq; i++) {
        struct vio_vqr_queue *q = &r->qs[i];
        vio_queue_free(q->q);
        memset(q, 0, sizeof(*q));
        q->vector = VIO_VQR_NO_VECTOR;
        atomic_init(&q->claim_kick, -1);
    }
    r->features_applied = false;
    r->sel = 0;
    r->dev_feat_sel = r->drv_feat_sel = 0;
    r->log_budget = VQR_LOG_BUDGET;
}

void vio_vqr_fini(struct vio_vqr *r)
{
    if (!r || !r->qs)
        return;
    stop_queues(r);
    vio_device_reset(r->dev);
    vio_device_bind(r->dev, NULL);
    for (unsigned i = 0; i < r->nq; i++)
        vio_queue_free(r->qs[i].q);
    free(r->qs);
    r->qs = NULL;
    vio_status_free(r->st);
    r->st = NULL;
}

uint16_t vio_vqr_max(struct vio_vqr *r, unsigned idx)
{
    struct vio_device_queue_info info;
    if (idx >= r->nq || vio_device_queue_info(r->dev, idx, &info) < 0)
        return 0;
    return info.max_size;
}

uint16_t vio_vqr_size(struct vio_vqr *r, unsigned idx)
{
    if (idx >= r->nq)
        return 0;
    if (r->qs[idx].size)
        return r->qs[idx].size;
    /* not written since reset: PCI reads the maximum, which may depend on the negotiated
     * features (virtio-net's control queue index moves with MQ), so it is computed now */
    return r->init_to_max ? vio_vqr_max(r, idx) : 0;
}

int vio_vqr_select(struct vio_vqr *r, uint32_t idx)
{
    r->sel = idx;
    return 0;
}

struct vio_vqr_queue *vio_vqr_cur(struct vio_vqr *r)
{
    if (r->sel >= r->nq || vio_vqr_max(r, r->sel) == 0)
        return NULL;
    return &r->qs[r->sel];
}

int vio_vqr_set_size(struct vio_vqr *r, uint32_t size)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return -ENOENT;
    if (q->enabled)
        return -EBUSY;
    uint16_t max = vio_vqr_max(r, r->sel);
    if (size == 0 || size > max || (size & (size - 1)) != 0)
        return -EINVAL;
    q->size = (uint16_t)size;
    return 0;
}

int vio_vqr_set_addr(struct vio_vqr *r, unsigned which, unsigned half, uint64_t val)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return -ENOENT;
    if (q->enabled)
        return -EBUSY;
    uint64_t *a = which == 0 ? &q->desc : which == 1 ? &q->driver : &q->device;
    if (half == 0)
        *a = (*a & 0xffffffff00000000ull) | (uint32_t)val;
    else if (half == 1)
        *a = (*a & 0xffffffffull) | (uint64_t)(uint32_t)val << 32;
    else
        *a = val;
    return 0;
}

int vio_vqr_set_vector(struct vio_vqr *r, uint16_t vector)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return -ENOENT;
    q->vector = vector;
    return 0;
}

int vio_vqr_rings_ok(const struct vio_mem *mem, uint16_t n, uint64_t desc, uint64_t driver,
                     uint64_t device, bool event_idx)
{
    uint64_t ev = event_idx ? 2 : 0;
    /* split ring alignment (virtio spec "Virtqueue Alignment"): 16 / 2 / 4 */
    if ((desc & 15) || (driver & 1) || (device & 3))
        return -EFAULT;
    if (!vio_mem_ptr(mem, desc, 16ull * n, VIO_MEM_READ) ||
        !vio_mem_ptr(mem, driver, 4 + 2ull * n + ev, VIO_MEM_READ) ||
        !vio_mem_ptr(mem, device, 4 + 8ull * n + ev, VIO_MEM_WRITE))
        return -EFAULT;
    return 0;
}

static uint64_t negotiated(const struct vio_vqr *r)
{
    return vio_status_driver_features(r->st);
}

bool vio_vqr_negotiated(const struct vio_vqr *r, unsigned bit)
{
    return vio_has_feature(negotiated(r), bit);
}

/* Create, set up and start queue i. Control path; NEEDS_RESET on failure. */
static void start_queue(struct vio_vqr *r, unsigned i)
{
    struct vio_vqr_queue *q = &r->qs[i];
    if (q->running || !q->enabled)
        return;
    struct vio_device_queue_info info;
    int rc = vio_device_queue_info(r->dev, i, &info);
    if (rc < 0) {
        vio_vqr_warn(r, VIO_LOG_WARN, "queue %u is enabled but the negotiated features have no "
                     "such queue; not started", i);
        return;
    }
    if (q->q) {
        vio_queue_free(q->q);
        q->q = NULL;
    }
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = info.max_size,
                                  .index = (uint16_t)i, .name = info.name, .dir = info.dir,
                                  .log = r->log, .log_opaque = r->log_opaque,
                                  .on_broken = on_queue_broken, .broken_opaque = r};
    rc = vio_queue_new(&qc, &q->q);
    if (rc == 0)
        rc = vio_queue_setup(q->q, r->mem, q->size, negotiated(r), q->desc, q->driver,
                             q->device);
    if (rc == 0)
        rc = vio_device_queue_start(r->dev, i, q->q);
    if (rc < 0) {
        claim_end(q); /* a claim made in the failed start ends with it */
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u (%s): cannot start (%s); device needs reset", i,
                     info.name, strerror(-rc));
        vio_queue_free(q->q);
        q->q = NULL;
        vio_vqr_needs_reset(r);
        return;
    }
    q->running = true;
}

static void start_queues(struct vio_vqr *r)
{
    for (unsigned i = 0; i < r->nq && vio_status_live(r->st); i++)
        start_queue(r, i);
}

int vio_vqr_enable(struct vio_vqr *r)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return -ENOENT;
    if (q->enabled)
        return -EBUSY;
    uint16_t max = vio_vqr_max(r, r->sel);
    uint16_t size = vio_vqr_size(r, r->sel);
    if (size == 0 || size > max || (size & (size - 1)) != 0)
        return -EINVAL;
    if (vio_vqr_rings_ok(r->mem, size, q->desc, q->driver, q->device,
                         vio_has_feature(negotiated(r), VIO_F_EVENT_IDX)) < 0)
        return -EFAULT;
    q->size = size;
    q->enabled = true;
    if (vio_status_live(r->st))
        start_queue(r, r->sel);
    return 0;
}

int vio_vqr_disable(struct vio_vqr *r)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (!q)
        return -ENOENT;
    if (q->running) {
        vio_device_queue_stop(r->dev, r->sel);
        q->running = false;
        claim_end(q);
    }
    q->enabled = false;
    return 0;
}

uint32_t vio_vqr_device_features_word(struct vio_vqr *r, uint32_t sel)
{
    uint64_t f = vio_status_device_features(r->st);
    return sel == 0 ? (uint32_t)f : sel == 1 ? (uint32_t)(f >> 32) : 0;
}

int vio_vqr_driver_features_word(struct vio_vqr *r, uint32_t sel, uint32_t val)
{
    if (sel > 1)
        return val ? -EINVAL : 0; /* bits above 63 do not exist: zero is fine */
    return vio_status_set_driver_features_word(r->st, sel, val);
}

uint32_t vio_vqr_driver_features_read(struct vio_vqr *r, uint32_t sel)
{
    uint64_t f = vio_status_driver_features(r->st);
    return sel == 0 ? (uint32_t)f : sel == 1 ? (uint32_t)(f >> 32) : 0;
}

uint8_t vio_vqr_status(const struct vio_vqr *r)
{
    return vio_status_read(r->st);
}

static void act(struct vio_vqr *r, unsigned a)
{
    if (a & (VIO_ACT_STOP | VIO_ACT_RESET))
        stop_queues(r);
    if (a & VIO_ACT_RESET)
        vio_device_reset(r->dev);
    if (a & VIO_ACT_START)
        start_queues(r);
    if (a & VIO_ACT_CONFIG)
        hook_config(r);
}

int vio_vqr_status_write(struct vio_vqr *r, uint8_t val)
{
    uint8_t before = vio_status_read(r->st);
    int rc = vio_status_write(r->st, val, NULL);
    uint8_t after = vio_status_read(r->st);
    if (rc == -ENOTSUP)
        vio_vqr_warn(r, VIO_LOG_WARN, "status 0x%x: features 0x%llx refused; FEATURES_OK left "
                     "clear (status 0x%x)", val, (unsigned long long)negotiated(r), after);
    else if (rc < 0)
        vio_vqr_warn(r, VIO_LOG_WARN, "status 0x%x after 0x%x: not a status change a driver may "
                     "make; ignored", val, before);
    act(r, vio_status_actions(before, after));
    if (val == 0) {
        /* A reset also clears the queue registers, even when the status already was 0. */
        stop_queues(r);
        reset_regs(r);
    }
    return rc;
}

void vio_vqr_needs_reset(struct vio_vqr *r)
{
    uint8_t before = vio_status_read(r->st);
    vio_status_set_needs_reset(r->st);
    act(r, vio_status_actions(before, vio_status_read(r->st)));
}

int vio_vqr_notify(struct vio_vqr *r, uint32_t idx)
{
    if (idx >= r->nq)
        return -ERANGE;
    int kick = atomic_load_explicit(&r->qs[idx].claim_kick, memory_order_acquire);
    if (kick >= 0) {
        /* whoever runs the ring waits on this eventfd (the VMM's ioeventfd is not bound yet,
         * or the VMM has none) */
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(kick, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
        /* EAGAIN: the counter is saturated, a wake-up is pending anyway */
        return n == (ssize_t)sizeof(one) || (n < 0 && errno == EAGAIN) ? 0 : -EIO;
    }
    if (!r->qs[idx].running)
        return -EIO;
    return vio_device_queue_notify(r->dev, idx);
}

bool vio_vqr_claimed(const struct vio_vqr *r, unsigned idx)
{
    return idx < r->nq &&
           atomic_load_explicit(&((struct vio_vqr *)r)->qs[idx].claim_kick,
                                memory_order_acquire) >= 0;
}

void vio_vqr_offload_refresh(struct vio_vqr *r)
{
    for (unsigned i = 0; i < r->nq; i++) {
        struct vio_vqr_queue *q = &r->qs[i];
        if (!q->running || !vio_vqr_claimed(r, i))
            continue;
        /* the device writes the ring's avail index back into q->q when it stops, and starts
         * again from there on the same queue object */
        vio_device_queue_stop(r->dev, i);
        q->running = false;
        claim_end(q);
        int rc = vio_device_queue_start(r->dev, i, q->q);
        if (rc < 0) {
            claim_end(q);
            vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: cannot restart it outside the transport "
                         "(%s); device needs reset", i, strerror(-rc));
            vio_vqr_needs_reset(r);
            return;
        }
        q->running = true;
    }
}

/* ------------------------------------------------------------------------ */
/* Register-level rules shared by the decoders                               */

int vio_vqr_bad_access(struct vio_vqr *r, const char *what, uint64_t off, unsigned size)
{
    vio_vqr_warn(r, VIO_LOG_WARN, "%s at 0x%llx (%u bytes) ignored", what,
                 (unsigned long long)off, size);
    return -EPROTO;
}

int vio_vqr_reg_device_features_sel(struct vio_vqr *r, uint32_t val)
{
    r->dev_feat_sel = val;
    return 0;
}

int vio_vqr_reg_driver_features_sel(struct vio_vqr *r, uint32_t val)
{
    r->drv_feat_sel = val;
    return 0;
}

int vio_vqr_reg_driver_features(struct vio_vqr *r, const char *reg, uint32_t val)
{
    int rc = vio_vqr_driver_features_word(r, r->drv_feat_sel, val);
    if (rc == 0)
        return 0;
    vio_vqr_warn(r, VIO_LOG_WARN, "%s[%u] = 0x%x ignored: %s", reg, r->drv_feat_sel, val,
                 rc == -EINVAL ? "no feature bits beyond 63"
                               : "features are fixed (FEATURES_OK) or DRIVER not set");
    return -EPROTO;
}

int vio_vqr_queue_refused(struct vio_vqr *r, int rc, const char *reg, uint32_t val)
{
    const char *why = rc == -ENOENT ? "no such queue selected"
                      : rc == -EBUSY ? "the queue is enabled (ready): it may not change"
                      : rc == -EINVAL ? "size zero, not a power of two or above the maximum"
                                      : "refused";
    vio_vqr_warn(r, VIO_LOG_WARN, "%s = 0x%x for queue %u ignored: %s", reg, val, r->sel, why);
    return -EPROTO;
}

int vio_vqr_reg_queue_size(struct vio_vqr *r, const char *reg, uint32_t val)
{
    int rc = vio_vqr_set_size(r, val);
    return rc < 0 ? vio_vqr_queue_refused(r, rc, reg, val) : 0;
}

int vio_vqr_reg_queue_addr(struct vio_vqr *r, unsigned which, unsigned half, uint32_t val)
{
    int rc = vio_vqr_set_addr(r, which, half, val);
    return rc < 0 ? vio_vqr_queue_refused(r, rc, "queue address", val) : 0;
}

int vio_vqr_reg_queue_enable(struct vio_vqr *r, const char *reg, uint32_t val)
{
    if (val != 1)
        return vio_vqr_queue_refused(r, -EINVAL, reg, val);
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    if (q && q->enabled)
        return 0; /* writing 1 again changes nothing */
    int rc = vio_vqr_enable(r);
    if (rc == -EFAULT) {
        vio_vqr_warn(r, VIO_LOG_ERROR, "queue %u: rings desc 0x%llx driver 0x%llx device "
                     "0x%llx (size %u) are misaligned or not inside guest memory; device "
                     "needs reset", r->sel, (unsigned long long)q->desc,
                     (unsigned long long)q->driver, (unsigned long long)q->device, q->size);
        vio_vqr_needs_reset(r);
        return -EPROTO;
    }
    return rc < 0 ? vio_vqr_queue_refused(r, rc, reg, val) : 0;
}

uint32_t vio_vqr_reg_queue_enabled(struct vio_vqr *r)
{
    struct vio_vqr_queue *q = vio_vqr_cur(r);
    return q && q->enabled;
}

uint32_t vio_vqr_reg_config_generation(struct vio_vqr *r)
{
    return vio_device_config_generation(r->dev);
}

int vio_vqr_reg_status(struct vio_vqr *r, uint32_t val)
{
    if (val > 0xff) {
        vio_vqr_warn(r, VIO_LOG_WARN, "Status 0x%x has bits above 7; ignored", val);
        return -EPROTO;
    }
    int rc = vio_vqr_status_write(r, (uint8_t)val);
    if (val == 0)
        atomic_store_explicit(&r->isr, 0, memory_order_release);
    return rc == -ENOTSUP ? -ENOTSUP : rc < 0 ? -EPROTO : 0;
}

void vio_vqr_isr_raise(struct vio_vqr *r, uint32_t bits)
{
    atomic_fetch_or_explicit(&r->isr, bits, memory_order_acq_rel);
}

uint32_t vio_vqr_isr(const struct vio_vqr *r)
{
    return atomic_load_explicit(&((struct vio_vqr *)r)->isr, memory_order_acquire);
}

uint32_t vio_vqr_isr_ack(struct vio_vqr *r, uint32_t bits)
{
    return atomic_fetch_and_explicit(&r->isr, ~bits, memory_order_acq_rel) & ~bits;
}

uint32_t vio_vqr_isr_take(struct vio_vqr *r)
{
    return atomic_exchange_explicit(&r->isr, 0, memory_order_acq_rel);
}
