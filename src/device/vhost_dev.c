/* SPDX-License-Identifier: MIT */
/*
 * The offload device (virtio/vhost_dev.h): a struct vio_device whose data queues a vhost
 * back-end runs. The transport's rings and eventfds go to the back-end through the vhost
 * frontend; the configuration space and the control queue stay with an in-process model.
 *
 * Everything here is control path: the device never pops a chain. A back-end queue is claimed
 * from the transport (vio_device_hooks::queue_offload) so that the transport does not drain
 * its kicks either.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "virtio/device.h"
#include "virtio/net_defs.h"
#include "virtio/queue.h"
#include "virtio/vhost.h"
#include "virtio/vhost_dev.h"

#define VD_OBJ "vhost-dev"
#define LOG(d, lvl, ...) vio_logf((d)->log, (d)->log_opaque, (lvl), VD_OBJ, __VA_ARGS__)

/* vhost-only bits that are not virtio features: LOG_ALL (26) and, on vhost-user,
 * PROTOCOL_FEATURES (30). */
#define VD_VHOST_BITS ((1ull << 26) | (1ull << 30))
/* vhost-user protocol feature CONFIG (docs/interop/vhost-user.rst) */
#define VD_PF_CONFIG 9u

/* What the virtio-net model serves without the back-end: the configuration space fields and
 * the control queue (QEMU keeps the same bits out of vhost's hands). */
#define VD_NET_MODEL_BITS                                                                        \
    ((1ull << VIO_NET_F_MAC) | (1ull << VIO_NET_F_MTU) | (1ull << VIO_NET_F_STATUS) |          \
     (1ull << VIO_NET_F_CTRL_VQ) | (1ull << VIO_NET_F_CTRL_RX) | (1ull << VIO_NET_F_CTRL_VLAN) | \
     (1ull << VIO_NET_F_CTRL_RX_EXTRA) | (1ull << VIO_NET_F_GUEST_ANNOUNCE) |                   \
     (1ull << VIO_NET_F_CTRL_MAC_ADDR))

struct vd_ring {
    struct vio_queue *q; /* the transport's queue while the back-end runs the ring */
    bool backend;        /* started in the back-end (else: the model's, if q) */
};

/* One vhost frontend and what it has been told. With several (vhost-net with more than one
 * queue pair: one /dev/vhost-net fd per pair), queue q is ring q % 2 of frontend q / 2. */
struct vd_fe {
    struct vio_vhost *v;
    int net_fd;    /* vhost-net: the tap fd of this frontend's pair; -1 none */
    bool owner;
    bool mem_sent; /* the memory table the back-end has */
    unsigned nmem;
    struct vio_vhost_mem_region mem[VIO_VHOST_MAX_MEM_REGIONS];
    dev_t mem_dev[VIO_VHOST_MAX_MEM_REGIONS];
    ino_t mem_ino[VIO_VHOST_MAX_MEM_REGIONS];
};

struct vio_vhost_dev {
    struct vio_device dev;
    struct vd_fe *fe;
    unsigned nfe;
    struct vio_device *model;
    unsigned nq;
    uint32_t device_id, config_size;
    uint16_t max_qsize;
    uint64_t backend_features; /* GET_FEATURES, virtio bits only */
    uint64_t model_bits;
    bool backend_config;       /* vhost-user with CONFIG and no model: the back-end answers */
    vio_log_fn log;
    void *log_opaque;

    struct vio_device_hooks hooks;
    bool bound;

    uint64_t negotiated;
    bool features_set;
    bool lost;             /* needs_reset raised for a vanished back-end */
    uint32_t generation;   /* config generation without a model */

    struct vio_vhost_dev_stats st;
    struct vd_ring *rings;
};

/* ------------------------------------------------------------------------ */

/* The frontend that runs queue @p qidx, and the queue's ring index there. */
static struct vd_fe *fe_of(struct vio_vhost_dev *d, unsigned qidx, unsigned *ring)
{
    if (d->nfe == 1) {
        *ring = qidx;
        return &d->fe[0];
    }
    *ring = qidx % 2u;
    return qidx / 2u < d->nfe ? &d->fe[qidx / 2u] : NULL;
}

static bool any_disconnected(const struct vio_vhost_dev *d)
{
    for (unsigned i = 0; i < d->nfe; i++)
        if (!vio_vhost_connected(d->fe[i].v))
            return true;
    return false;
}

static void backend_lost(struct vio_vhost_dev *d, const char *why)
{
    if (d->lost)
        return;
    d->lost = true;
    d->st.backend_lost = true;
    LOG(d, VIO_LOG_ERROR, "the vhost back-end is gone (%s): device needs reset", why);
    if (d->hooks.needs_reset)
        d->hooks.needs_reset(d->hooks.opaque);
}

/* Count a failed back-end call; a vanished back-end raises needs_reset. */
static int vd_fail(struct vio_vhost_dev *d, int rc, const char *what, unsigned qidx)
{
    d->st.errors++;
    LOG(d, VIO_LOG_ERROR, "queue %u: %s failed (%s)", qidx, what, strerror(-rc));
    if (rc == -ENOTCONN || any_disconnected(d))
        backend_lost(d, what);
    return rc;
}

/* The model's queue that is not the back-end's: virtio-net's control queue. */
static bool is_model_queue(const struct vio_vhost_dev *d, unsigned qidx)
{
    if (!d->model || d->device_id != VIO_DEVICE_ID_NET)
        return false;
    uint64_t f = d->features_set ? d->negotiated : 0;
    if (!vio_has_feature(f, VIO_NET_F_CTRL_VQ))
        return false;
    unsigned pairs = vio_device_frontend_queue_num(d->model);
    unsigned ctrl = vio_has_feature(f, VIO_NET_F_MQ) ? 2u * pairs : 2u;
    return qidx == ctrl;
}

/* ------------------------------------------------------------------------ */
/* Hooks the model is bound with: forwarded to the transport's                */

static void fwd_notify(void *o, unsigned qidx)
{
    struct vio_vhost_dev *d = o;
    if (d->hooks.notify_queue)
        d->hooks.notify_queue(d->hooks.opaque, qidx);
}

static void fwd_config_changed(void *o)
{
    struct vio_vhost_dev *d = o;
    if (d->hooks.config_changed)
        d->hooks.config_changed(d->hooks.opaque);
}

static void fwd_needs_reset(void *o)
{
    struct vio_vhost_dev *d = o;
    if (d->hooks.needs_reset)
        d->hooks.needs_reset(d->hooks.opaque);
}

static void fwd_set_watch(void *o, int fd, unsigned events, uint32_t id)
{
    struct vio_vhost_dev *d = o;
    if (id >= VIO_VHOST_DEV_WATCH && id < VIO_VHOST_DEV_WATCH + VIO_VHOST_DEV_MAX_FRONTENDS) {
        LOG(d, VIO_LOG_ERROR, "the model's watch id 0x%x is the offload device's own; ignored",
            id);
        return;
    }
    if (d->hooks.set_watch)
        d->hooks.set_watch(d->hooks.opaque, fd, events, id);
}

/* ------------------------------------------------------------------------ */
/* Back-end rings                                                            */

/* Send the memory table if the transport's differs from what the back-end has. */
static int sync_mem(struct vio_vhost_dev *d, struct vd_fe *fe, unsigned qidx)
{
    struct vio_device_mem_region r[VIO_VHOST_MAX_MEM_REGIONS];
    if (!d->hooks.mem_regions)
        return -ENOTSUP;
    int n = d->hooks.mem_regions(d->hooks.opaque, r, VIO_VHOST_MAX_MEM_REGIONS);
    if (n < 0)
        return n;
    if (n == 0 || n > (int)VIO_VHOST_MAX_MEM_REGIONS) {
        LOG(d, VIO_LOG_ERROR, "queue %u: the transport has %d memory regions (1..%u can be "
            "handed to a vhost back-end)", qidx, n, VIO_VHOST_MAX_MEM_REGIONS);
        return n ? -E2BIG : -EINVAL;
    }
    struct vio_vhost_mem_region m[VIO_VHOST_MAX_MEM_REGIONS];
    dev_t dv[VIO_VHOST_MAX_MEM_REGIONS] = {0};
    ino_t in[VIO_VHOST_MAX_MEM_REGIONS] = {0};
    bool same = fe->mem_sent && fe->nmem == (unsigned)n;
    for (int i = 0; i < n; i++) {
        m[i] = (struct vio_vhost_mem_region){.guest_addr = r[i].guest_addr, .size = r[i].size,
                                             .user_addr = r[i].host_addr, .fd = r[i].fd,
                                             .fd_offset = r[i].fd_offset};
        struct stat st;
        if (r[i].fd >= 0 && fstat(r[i].fd, &st) == 0) {
            dv[i] = st.st_dev;
            in[i] = st.st_ino;
        }
        /* an fd number the transport reused for another file is another region */
        const struct vio_vhost_mem_region *o = &fe->mem[i];
        if (same && (m[i].guest_addr != o->guest_addr || m[i].size != o->size ||
                     m[i].user_addr != o->user_addr || m[i].fd != o->fd ||
                     m[i].fd_offset != o->fd_offset || dv[i] != fe->mem_dev[i] ||
                     in[i] != fe->mem_ino[i]))
            same = false;
    }
    if (same)
        return 0;
    int rc = vio_vhost_set_mem_table(fe->v, m, (unsigned)n);
    if (rc < 0)
        return vd_fail(d, rc, "SET_MEM_TABLE", qidx);
    memcpy(fe->mem, m, (size_t)n * sizeof(m[0]));
    memcpy(fe->mem_dev, dv, sizeof(dv));
    memcpy(fe->mem_ino, in, sizeof(in));
    fe->nmem = (unsigned)n;
    fe->mem_sent = true;
    d->st.mem_tables++;
    LOG(d, VIO_LOG_INFO, "memory table: %d region(s) handed to the back-end", n);
    return 0;
}

static int backend_start(struct vio_vhost_dev *d, unsigned qidx, struct vio_queue *q)
{
    if (d->lost)
        return -ENOTCONN;
    if (!d->hooks.queue_offload) {
        LOG(d, VIO_LOG_ERROR, "queue %u: the transport cannot hand its rings to a back-end (no "
            "queue_offload hook)", qidx);
        return -ENOTSUP;
    }
    unsigned ri;
    struct vd_fe *fe = fe_of(d, qidx, &ri);
    if (!fe) {
        LOG(d, VIO_LOG_ERROR, "queue %u: no vhost frontend serves it (%u given, one per queue "
            "pair)", qidx, d->nfe);
        return -ERANGE;
    }
    int rc = sync_mem(d, fe, qidx);
    if (rc < 0) {
        if (rc != -ENOTSUP && !d->lost && d->hooks.needs_reset) /* as for a refused ring below */
            d->hooks.needs_reset(d->hooks.opaque);
        return rc;
    }
    struct vio_device_queue_offload o = {.struct_size = sizeof(o)};
    rc = d->hooks.queue_offload(d->hooks.opaque, qidx, &o);
    if (rc < 0) {
        LOG(d, VIO_LOG_ERROR, "queue %u: the transport refused to hand the ring over (%s)", qidx,
            strerror(-rc));
        return rc;
    }
    struct vio_vhost_vring_addr a = {.desc = o.desc_host, .avail = o.avail_host,
                                     .used = o.used_host, .log_guest_addr = o.used_gpa};
    const char *what;
    struct vio_vhost *v = fe->v;
    if ((rc = vio_vhost_set_vring_num(v, ri, o.size)) < 0) {
        what = "SET_VRING_NUM";
    } else if ((rc = vio_vhost_set_vring_addr(v, ri, &a)) < 0) {
        what = "SET_VRING_ADDR";
    } else if ((rc = vio_vhost_set_vring_base(v, ri, o.base)) < 0) {
        what = "SET_VRING_BASE";
    } else if ((rc = vio_vhost_set_vring_call(v, ri, o.call_fd)) < 0) {
        what = "SET_VRING_CALL";
    } else if (o.err_fd >= 0 && (rc = vio_vhost_set_vring_err(v, ri, o.err_fd)) < 0 &&
               rc != -ENOTSUP) {
        what = "SET_VRING_ERR";
    } else if ((rc = vio_vhost_set_vring_kick(v, ri, o.kick_fd)) < 0) {
        /* the kick starts a vhost-user ring: last but enable */
        what = "SET_VRING_KICK";
    } else if (vio_vhost_kind(v) == VIO_VHOST_USER &&
               (rc = vio_vhost_set_vring_enable(v, ri, true)) < 0 && rc != -ENOTSUP) {
        what = "SET_VRING_ENABLE";
    } else if (vio_vhost_kind(v) == VIO_VHOST_KERNEL && fe->net_fd >= 0 &&
               (rc = vio_vhost_net_set_backend(v, ri, fe->net_fd)) < 0) {
        what = "VHOST_NET_SET_BACKEND";
    } else {
        d->rings[qidx].q = q;
        d->rings[qidx].backend = true;
        d->st.rings_started++;
        if (d->nfe > 1)
            LOG(d, VIO_LOG_INFO, "queue %u runs in the back-end (frontend %u, ring %u): size %u, "
                "base %u, %s", qidx, (unsigned)(fe - d->fe), ri, o.size, o.base,
                o.kick_fd >= 0 ? "kick fd" : "polled");
        else
            LOG(d, VIO_LOG_INFO, "queue %u runs in the back-end: size %u, base %u, %s", qidx,
                o.size, o.base, o.kick_fd >= 0 ? "kick fd" : "polled");
        return 0;
    }
    vd_fail(d, rc, what, qidx);
    /* A back-end that refuses the ring (the kernel's EFAULT for a ring outside the table, say)
     * leaves a queue the driver believes running with nobody behind it: the device cannot go
     * on (a vanished back-end has raised it already). */
    if (!d->lost && d->hooks.needs_reset)
        d->hooks.needs_reset(d->hooks.opaque);
    return rc;
}

static void backend_stop(struct vio_vhost_dev *d, unsigned qidx)
{
    struct vd_ring *r = &d->rings[qidx];
    unsigned base = 0, ri;
    struct vd_fe *fe = fe_of(d, qidx, &ri); /* not NULL: the queue started on it */
    int rc = -ENOTCONN;
    if (!d->lost) {
        if (vio_vhost_kind(fe->v) == VIO_VHOST_KERNEL && fe->net_fd >= 0) {
            rc = vio_vhost_net_set_backend(fe->v, ri, -1);
            if (rc < 0)
                vd_fail(d, rc, "VHOST_NET_SET_BACKEND -1", qidx);
        }
        rc = vio_vhost_get_vring_base(fe->v, ri, &base);
        if (rc < 0)
            vd_fail(d, rc, "GET_VRING_BASE", qidx);
    }
    if (rc < 0) {
        /* The back-end cannot say where it stopped: resume at what it completed (the chains
         * in flight are taken again, as after a back-end crash). */
        struct vio_queue_ring_state rs;
        base = vio_queue_get_ring_state(r->q, &rs) == 0 ? rs.ring_used_idx
                                                        : vio_queue_get_last_avail(r->q);
    }
    vio_queue_set_last_avail(r->q, (uint16_t)base);
    LOG(d, VIO_LOG_INFO, "queue %u stopped in the back-end at %u", qidx, base);
    r->q = NULL;
    r->backend = false;
    d->st.rings_stopped++;
}

/* ------------------------------------------------------------------------ */
/* Device ops                                                                */

static uint32_t op_device_id(void *o)
{
    struct vio_vhost_dev *d = o;
    return d->device_id;
}

static uint64_t op_features(void *o)
{
    struct vio_vhost_dev *d = o;
    if (!d->model)
        return d->backend_features;
    return vio_device_features(d->model) & (d->backend_features | d->model_bits);
}

static uint32_t op_config_size(void *o)
{
    struct vio_vhost_dev *d = o;
    return d->model ? vio_device_config_size(d->model) : d->config_size;
}

static int op_config_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    struct vio_vhost_dev *d = o;
    if (d->model)
        return vio_device_config_read(d->model, off, buf, len);
    if (!d->backend_config)
        return -ENOTSUP;
    if (off > d->config_size || len > d->config_size - off)
        return -ERANGE;
    return vio_vhost_get_config(d->fe[0].v, off, buf, len);
}

static int op_config_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    struct vio_vhost_dev *d = o;
    if (d->model)
        return vio_device_config_write(d->model, off, buf, len);
    if (!d->backend_config)
        return -ENOTSUP;
    if (off > d->config_size || len > d->config_size - off)
        return -ERANGE;
    return vio_vhost_set_config(d->fe[0].v, off, buf, len);
}

static uint32_t op_config_generation(void *o)
{
    struct vio_vhost_dev *d = o;
    return d->model ? vio_device_config_generation(d->model) : d->generation;
}

static unsigned op_num_queues(void *o)
{
    struct vio_vhost_dev *d = o;
    return d->nq;
}

static unsigned op_frontend_queue_num(void *o)
{
    struct vio_vhost_dev *d = o;
    return d->model ? vio_device_frontend_queue_num(d->model) : d->nq;
}

static int op_queue_info(void *o, unsigned qidx, struct vio_device_queue_info *out)
{
    struct vio_vhost_dev *d = o;
    if (qidx >= d->nq)
        return -ERANGE;
    if (d->model)
        return vio_device_queue_info(d->model, qidx, out);
    *out = (struct vio_device_queue_info){.max_size = d->max_qsize, .dir = VIO_QUEUE_DIR_ANY,
                                          .name = "vhost"};
    return 0;
}

static int op_set_features(void *o, uint64_t negotiated)
{
    struct vio_vhost_dev *d = o;
    if (negotiated & ~op_features(d))
        return -ENOTSUP;
    if (d->lost)
        return -ENOTSUP; /* FEATURES_OK stays clear: the driver sees a device that cannot go on */
    int rc;
    for (unsigned i = 0; i < d->nfe; i++) {
        struct vd_fe *fe = &d->fe[i];
        if (!fe->owner) {
            rc = vio_vhost_set_owner(fe->v);
            if (rc < 0) {
                vd_fail(d, rc, "SET_OWNER", 2 * i);
                return -ENOTSUP;
            }
            fe->owner = true;
            fe->mem_sent = false; /* a new owner has no memory table */
        }
        rc = vio_vhost_set_features(fe->v, negotiated & d->backend_features);
        if (rc < 0) {
            vd_fail(d, rc, "SET_FEATURES", 2 * i);
            return -ENOTSUP;
        }
    }
    if (d->model) {
        rc = vio_device_set_features(d->model, negotiated);
        if (rc < 0) {
            LOG(d, VIO_LOG_ERROR, "the model refused the features 0x%llx (%s)",
                (unsigned long long)negotiated, strerror(-rc));
            return rc;
        }
    }
    d->negotiated = negotiated;
    d->features_set = true;
    LOG(d, VIO_LOG_INFO, "features 0x%llx (back-end 0x%llx)", (unsigned long long)negotiated,
        (unsigned long long)(negotiated & d->backend_features));
    return 0;
}

static int op_queue_start(void *o, unsigned qidx, struct vio_queue *q)
{
    struct vio_vhost_dev *d = o;
    if (qidx >= d->nq)
        return -ERANGE;
    if (is_model_queue(d, qidx)) {
        int rc = vio_device_queue_start(d->model, qidx, q);
        if (rc == 0)
            d->rings[qidx].q = q;
        return rc;
    }
    return backend_start(d, qidx, q);
}

static void op_queue_stop(void *o, unsigned qidx)
{
    struct vio_vhost_dev *d = o;
    if (qidx >= d->nq || !d->rings[qidx].q)
        return;
    if (d->rings[qidx].backend) {
        backend_stop(d, qidx);
    } else {
        vio_device_queue_stop(d->model, qidx);
        d->rings[qidx].q = NULL;
    }
}

static int op_queue_notify(void *o, unsigned qidx)
{
    struct vio_vhost_dev *d = o;
    if (qidx >= d->nq)
        return -ERANGE;
    const struct vd_ring *r = &d->rings[qidx];
    if (!r->q)
        return -EIO;
    if (r->backend)
        return 0; /* the back-end has the kick fd; a transport that still calls here is harmless */
    return vio_device_queue_notify(d->model, qidx);
}

static void op_reset(void *o)
{
    struct vio_vhost_dev *d = o;
    for (unsigned i = 0; i < d->nq; i++)
        op_queue_stop(d, i);
    for (unsigned i = 0; i < d->nfe; i++) {
        struct vd_fe *fe = &d->fe[i];
        if (fe->owner && !d->lost) {
            int rc = vio_vhost_reset(fe->v);
            if (rc < 0 && rc != -ENOTSUP)
                vd_fail(d, rc, "RESET_OWNER", 2 * i);
        }
        fe->owner = false;
        fe->mem_sent = false;
    }
    if (d->lost && !any_disconnected(d)) {
        /* reconnected (vio_vhost_reconnect()): the reset device starts from scratch on it */
        d->lost = false;
        LOG(d, VIO_LOG_INFO, "the back-end is connected again");
    }
    d->features_set = false;
    d->negotiated = 0;
    if (d->model)
        vio_device_reset(d->model);
}

/* Watch (or stop watching) every frontend's fd. */
static void watch_frontends(struct vio_vhost_dev *d, bool on)
{
    if (!d->hooks.set_watch)
        return;
    for (unsigned i = 0; i < d->nfe; i++) {
        int fd = vio_vhost_fd(d->fe[i].v);
        if (fd >= 0)
            d->hooks.set_watch(d->hooks.opaque, fd, on ? VIO_WATCH_IN : 0,
                               VIO_VHOST_DEV_WATCH + i);
    }
}

static int op_bind(void *o, const struct vio_device_hooks *h)
{
    struct vio_vhost_dev *d = o;
    if (!h) {
        if (d->bound)
            watch_frontends(d, false);
        if (d->model && d->bound)
            vio_device_bind(d->model, NULL);
        memset(&d->hooks, 0, sizeof(d->hooks));
        d->bound = false;
        return 0;
    }
    d->hooks = *h; /* a full struct: vio_device_bind() fills what an older caller lacks */
    if (d->model) {
        struct vio_device_hooks mh = {.struct_size = sizeof(mh), .flags = h->flags,
                                      .opaque = d, .notify_queue = fwd_notify,
                                      .config_changed = fwd_config_changed,
                                      .needs_reset = fwd_needs_reset,
                                      .set_watch = fwd_set_watch};
        int rc = vio_device_bind(d->model, &mh);
        if (rc < 0 && rc != -ENOTSUP) {
            memset(&d->hooks, 0, sizeof(d->hooks));
            return rc;
        }
    }
    d->bound = true;
    watch_frontends(d, true);
    return 0;
}

static int op_watches(void *o, struct vio_device_watch *out, unsigned cap)
{
    struct vio_vhost_dev *d = o;
    unsigned n = 0;
    for (unsigned i = 0; i < d->nfe && !d->lost; i++) {
        int fd = vio_vhost_fd(d->fe[i].v);
        if (fd < 0)
            continue;
        if (n < cap)
            out[n] = (struct vio_device_watch){.fd = fd, .events = VIO_WATCH_IN,
                                               .id = VIO_VHOST_DEV_WATCH + i};
        n++;
    }
    if (d->model) {
        int m = vio_device_watches(d->model, n < cap ? out + n : NULL, n < cap ? cap - n : 0);
        if (m > 0)
            n += (unsigned)m;
    }
    return (int)n;
}

static int op_handle(void *o, uint32_t id, unsigned revents)
{
    struct vio_vhost_dev *d = o;
    if (id < VIO_VHOST_DEV_WATCH || id >= VIO_VHOST_DEV_WATCH + d->nfe)
        return d->model ? vio_device_handle(d->model, id, revents) : -ENOENT;
    struct vio_vhost *v = d->fe[id - VIO_VHOST_DEV_WATCH].v;
    int fd = vio_vhost_fd(v); /* before handling: a lost frontend may close it */
    int rc = vio_vhost_handle(v);
    if (rc == -ENOTCONN || !vio_vhost_connected(v)) {
        if (fd >= 0 && d->hooks.set_watch) /* a closed socket stays readable: stop watching */
            d->hooks.set_watch(d->hooks.opaque, fd, 0, id);
        backend_lost(d, "the frontend reported it disconnected");
        return 0;
    }
    return rc < 0 ? rc : 0;
}

static const struct vio_device_ops vd_ops = {
    .name = "vhost-offload",
    .device_id = op_device_id,
    .features = op_features,
    .config_size = op_config_size,
    .config_read = op_config_read,
    .config_write = op_config_write,
    .config_generation = op_config_generation,
    .num_queues = op_num_queues,
    .queue_info = op_queue_info,
    .set_features = op_set_features,
    .queue_start = op_queue_start,
    .queue_stop = op_queue_stop,
    .queue_notify = op_queue_notify,
    .reset = op_reset,
    .bind = op_bind,
    .watches = op_watches,
    .handle = op_handle,
    .frontend_queue_num = op_frontend_queue_num,
};

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

int vio_vhost_dev_new(const struct vio_vhost_dev_config *cfg, struct vio_vhost_dev **out)
{
    if (!cfg || !out || cfg->struct_size < sizeof(*cfg) ||
        (cfg->model && !cfg->model->ops) || (!cfg->model && !cfg->device_id) ||
        cfg->num_vhosts > VIO_VHOST_DEV_MAX_FRONTENDS || (cfg->num_vhosts && !cfg->vhosts) ||
        (!cfg->num_vhosts && !cfg->vhost))
        return -EINVAL;
    unsigned nfe = cfg->num_vhosts ? cfg->num_vhosts : 1;
    struct vio_vhost *const *vs = cfg->num_vhosts ? cfg->vhosts : &cfg->vhost;
    uint64_t bf = ~0ull;
    for (unsigned i = 0; i < nfe; i++) {
        if (!vs[i])
            return -EINVAL;
        if (!vio_vhost_connected(vs[i]))
            return -ENOTCONN;
        uint64_t f = 0;
        int rc = vio_vhost_get_features(vs[i], &f);
        if (rc < 0) {
            vio_logf(cfg->log, cfg->log_opaque, VIO_LOG_ERROR, VD_OBJ,
                     "cannot read the back-end's features (frontend %u: %s)", i, strerror(-rc));
            return rc;
        }
        bf &= f; /* every pair's back-end must honour what the driver gets */
    }
    unsigned nq = cfg->num_queues;
    if (!nq && cfg->model)
        nq = vio_device_num_queues(cfg->model);
    if (!nq && nfe > 1)
        nq = 2 * nfe;
    if (!nq && vio_vhost_get_queue_num(vs[0], &nq) < 0)
        nq = 2;
    if (!nq || nq > VIO_DEVICE_MAX_QUEUES)
        return -EINVAL;
    struct vio_vhost_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->rings = calloc(nq, sizeof(*d->rings));
    d->fe = calloc(nfe, sizeof(*d->fe));
    if (!d->rings || !d->fe) {
        free(d->rings);
        free(d->fe);
        free(d);
        return -ENOMEM;
    }
    d->nfe = nfe;
    for (unsigned i = 0; i < nfe; i++) {
        d->fe[i].v = vs[i];
        d->fe[i].net_fd = cfg->num_vhosts && cfg->net_backend_fds ? cfg->net_backend_fds[i]
                                                                  : cfg->net_backend_fd;
    }
    d->model = cfg->model;
    d->nq = nq;
    d->device_id = cfg->model ? vio_device_id(cfg->model) : cfg->device_id;
    d->config_size = cfg->config_size;
    d->max_qsize = cfg->max_queue_size ? cfg->max_queue_size : 1024;
    d->backend_features = bf & ~VD_VHOST_BITS;
    d->model_bits = cfg->model_features;
    if (!d->model_bits && d->model && d->device_id == VIO_DEVICE_ID_NET) {
        d->model_bits = VD_NET_MODEL_BITS;
        /* one back-end per pair: the pairs are the model's (VQ_PAIRS_SET on its control queue),
         * no back-end needs to know about them (vhost-net has no MQ bit) */
        if (nfe > 1)
            d->model_bits |= 1ull << VIO_NET_F_MQ;
    }
    uint64_t pf = 0;
    if (!d->model && vio_vhost_kind(vs[0]) == VIO_VHOST_USER &&
        vio_vhost_get_protocol_features(vs[0], &pf) == 0 && vio_has_feature(pf, VD_PF_CONFIG))
        d->backend_config = d->config_size > 0;
    d->log = cfg->log;
    d->log_opaque = cfg->log_opaque;
    d->dev = (struct vio_device){.ops = &vd_ops, .opaque = d, .log = cfg->log,
                                 .log_opaque = cfg->log_opaque};
    LOG(d, VIO_LOG_INFO, "offload device on %s%s: %u queues, back-end features 0x%llx%s",
        vio_vhost_kind(vs[0]) == VIO_VHOST_KERNEL ? "vhost kernel" : "vhost-user",
        nfe > 1 ? " (one frontend per queue pair)" : "", nq,
        (unsigned long long)d->backend_features, d->model ? ", with a model" : "");
    *out = d;
    return 0;
}

void vio_vhost_dev_free(struct vio_vhost_dev *d)
{
    if (!d)
        return;
    if (d->bound && d->model)
        vio_device_bind(d->model, NULL);
    free(d->rings);
    free(d->fe);
    free(d);
}

struct vio_device *vio_vhost_dev_device(struct vio_vhost_dev *d)
{
    return d ? &d->dev : NULL;
}

int vio_vhost_dev_event(struct vio_vhost_dev *d, enum vio_vhost_event ev)
{
    if (!d)
        return -EINVAL;
    switch (ev) {
    case VIO_VHOST_EV_DISCONNECTED:
        backend_lost(d, "disconnected");
        break;
    case VIO_VHOST_EV_RECONNECTED:
        LOG(d, VIO_LOG_INFO, "the back-end is back; the driver resets the device to use it");
        break;
    case VIO_VHOST_EV_CONFIG_CHANGED:
        if (d->backend_config) {
            d->generation++;
            if (d->hooks.config_changed)
                d->hooks.config_changed(d->hooks.opaque);
        }
        break;
    }
    return 0;
}

int vio_vhost_dev_get_stats(const struct vio_vhost_dev *d, struct vio_vhost_dev_stats *out)
{
    if (!d || !out)
        return -EINVAL;
    *out = d->st;
    return 0;
}

bool vio_vhost_dev_queue_in_backend(const struct vio_vhost_dev *d, unsigned qidx)
{
    return d && qidx < d->nq && !is_model_queue(d, qidx) && (d->nfe == 1 || qidx / 2u < d->nfe);
}
