/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end transport (QEMU docs/interop/vhost-user.rst).
 *
 * One connection at a time. Every message goes through vu_msg_validate()
 * (its row of req_table, near the end of this file) before the row's handler
 * sees it; a message that breaks its row ends the session. Handlers decode, map
 * memory, and drive the core (struct vio_queue) and the generic device
 * interface; ring memory itself is only ever touched by the core.
 *
 * Worker threads (the application's) may be inside vio_vhost_user_kick() /
 * the device's data path at any time except between the pause() and resume()
 * hooks; every change a worker could observe (memory map, ring objects, fds,
 * dirty log, inflight regions) is made between those two calls. The only
 * state workers read outside that rule are the call eventfds (atomic ints,
 * the notify hook), the error eventfds and the status byte (struct
 * vio_status, atomic), and the back-end request channel (a mutex).
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "transport/guard.h"
#include "transport/vhost_user_internal.h"
#include "transport/vhost_user_msg.h"
#include "virtio/device.h"
#include "virtio/mem.h"
#include "virtio/queue.h"
#include "virtio/status.h"
#include "virtio/vhost_user.h"

#define VU_OBJ "vhost-user"
#define VU_MAX_RINGS 256u     /* ring index is 8 bits on the wire */
#define VU_MSG_BUDGET 64      /* messages per vio_vhost_user_handle() call */
#define VU_IO_TIMEOUT_MS 1000 /* a message that stalls half-way longer than this ends the session */
#define VU_INFLIGHT_ALIGN 64u
#define VU_REGION_ALIGN 64u   /* host and guest addresses of a region agree modulo this */
#define VU_HELLO_TIMEOUT_MS 3000 /* server: a front-end that sends no message this long is dropped */

/* vhost-only feature bits: not virtio features, never passed to the device. */
#define VU_VHOST_BITS ((1ull << VU_F_PROTOCOL_FEATURES) | (1ull << VU_F_LOG_ALL))

/* Protocol features of the dispatcher itself rather than of a request (the rest of the offer
 * comes from the request table: vu_protocol_features()). */
#define VU_PF_DISPATCH (1ull << VU_PF_REPLY_ACK)

/* Socket file mode in server mode when the configuration leaves it 0. */
#define VU_SOCKET_MODE_DEFAULT 0600u

#define LOG(vu, lvl, ...) vio_logf((vu)->log, (vu)->log_opaque, (lvl), VU_OBJ, __VA_ARGS__)

enum vu_conn_state {
    VU_LISTENING, /* server: waiting for a front-end */
    VU_CONNECTED, /* a session */
    VU_RETRY,     /* client: waiting to reconnect */
    VU_CLOSED     /* no socket and no retry: the transport is idle for good */
};

/* One mapped region of guest memory. */
struct vu_map {
    uint8_t *base;   /* mmap() result */
    size_t len;      /* mapped length */
    uint8_t *host;   /* first byte of the region inside the mapping */
    dev_t dev;       /* the file, to reuse a mapping a new table repeats */
    ino_t ino;
    uint64_t offset; /* mmap_offset of the region in its file */
    uint64_t gpa, size, uva;
    unsigned refs;   /* ADD_MEM_REG of an identical region counts, REM_MEM_REG uncounts */
    int fd;          /* the front-end's memory fd, kept for a device that hands the memory on
                      * (vio_device_hooks::mem_regions); closed with the mapping */
};

struct vu_ring {
    /* set by the front-end */
    uint32_t num;
    bool addr_set;
    struct vu_addr addr;
    uint16_t base;       /* SET_VRING_BASE, or the last avail index when stopped */
    bool kick_set;       /* SET_VRING_KICK seen (with an fd or the no-fd flag) */
    int kick_fd;
    _Atomic int call_fd; /* read by the notify hook on worker threads */
    _Atomic int err_fd;
    bool enabled;
    /* derived */
    bool started;        /* queue object set up on the rings */
    bool running;        /* vio_device_queue_start() succeeded */
    bool failed;         /* could not start / stopped by a rule; until set up again */
    bool offloaded;      /* the device runs the ring elsewhere (vio_device_hooks::queue_offload):
                          * its kick fd is not watched and the ring is never processed here */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vio_queue *q;
};

struct vio_vhost_user {
    /* configuration */
    char *path;
    bool client, use_fd, path_owned;
    dev_t path_dev; /* the socket file we created (path_owned): removed on free only if the */
    ino_t path_ino; /* file at the path is still this one */
    uint32_t socket_mode;
    uint32_t reconnect_ms;
    struct vio_device *dev;
    uint16_t max_qsize;
    unsigned max_slots;
    uint64_t queue_num;
    uint64_t pf_offered;
    vio_log_fn log;
    void *log_opaque;
    void *opaque;
    void (*pause)(void *);
    void (*resume)(void *);
    void (*set_watch)(void *, int, unsigned, uint32_t);
    void (*session)(void *, bool);
    int (*device_request)(void *, enum vio_vhost_user_request, uint64_t);

    /* connection */
    enum vu_conn_state state;
    int listen_fd;
    int conn_fd;
    uint64_t retry_at_ms;

    unsigned nrings;
    struct vu_ring *rings;

    /* negotiation */
    bool owner;
    bool features_set;
    bool dev_features_ok;
    uint64_t features;  /* as set by the front-end, vhost bits included */
    uint64_t pfeatures; /* negotiated protocol features */
    struct vio_status *st; /* the device status (SET/GET_STATUS, NEEDS_RESET from any thread) */

    /* guest memory */
    struct vio_mem *mem;
    struct vu_map *maps; /* max_slots entries */
    unsigned nmaps;

    /* dirty log (SET_LOG_BASE) */
    uint8_t *log_map;
    size_t log_map_len;
    uint8_t *log_base;
    uint64_t log_size;
    int log_fd; /* SET_LOG_FD */

    /* inflight tracking (GET/SET_INFLIGHT_FD) */
    uint8_t *infl_map;
    size_t infl_map_len;
    uint8_t *infl_base;
    uint16_t infl_nq, infl_qs;
    size_t infl_qbytes;

    /* back-end request channel, used from any thread */
    pthread_mutex_t backend_lock;
    int backend_fd;
    bool backend_config; /* CONFIG and BACKEND_REQ negotiated */

    /* per message */
    bool paused;
    bool drop;
    bool replied;

    /* guards against a hostile or broken front-end */
    atomic_int poisoned; /* the SIGBUS guard saw a fault on this session's memory (any thread) */
    uint64_t conn_at_ms; /* server: when the session was accepted */
    bool heard;          /* a complete message arrived on this session */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void xclose(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Take fd slot @i out of a message (the message no longer closes it). */
static int take_fd(struct vu_msg *m, unsigned i)
{
    if (i >= m->nfds)
        return -1;
    int fd = m->fds[i];
    m->fds[i] = -1;
    return fd;
}

static void eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static bool has_bit(uint64_t v, unsigned bit)
{
    return vio_has_feature(v, bit);
}

static void watch(struct vio_vhost_user *vu, int fd, unsigned events, uint32_t id)
{
    if (vu->set_watch && fd >= 0)
        vu->set_watch(vu->opaque, fd, events, id);
}

/* pause() once per message (or teardown); resume() at its end. */
static void vu_pause(struct vio_vhost_user *vu)
{
    if (!vu->paused) {
        vu->paused = true;
        if (vu->pause)
            vu->pause(vu->opaque);
    }
}

static void vu_resume(struct vio_vhost_user *vu)
{
    if (vu->paused) {
        vu->paused = false;
        if (vu->resume)
            vu->resume(vu->opaque);
    }
}

static uint64_t virtio_features(const struct vio_vhost_user *vu)
{
    return vu->features & ~VU_VHOST_BITS;
}

static uint64_t offered_features(const struct vio_vhost_user *vu)
{
    uint64_t f = vio_device_features(vu->dev);
    /* No IOTLB (ACCESS_PLATFORM) and no packed ring in the engine yet. */
    f &= ~(VU_VHOST_BITS | vio_feature_bit(VIO_F_ACCESS_PLATFORM) |
           vio_feature_bit(VIO_F_RING_PACKED));
    return f | VU_VHOST_BITS;
}

static void update_backend_config(struct vio_vhost_user *vu)
{
    pthread_mutex_lock(&vu->backend_lock);
    vu->backend_config = has_bit(vu->pfeatures, VU_PF_BACKEND_REQ) &&
                         has_bit(vu->pfeatures, VU_PF_CONFIG);
    pthread_mutex_unlock(&vu->backend_lock);
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */

static int send_reply(struct vio_vhost_user *vu, const struct vu_msg *req, const void *payload,
                      uint32_t size, int fd)
{
    struct vu_msg r;
    memset(&r.hdr, 0, sizeof(r.hdr));
    r.hdr.request = req->hdr.request;
    r.hdr.flags = VU_VERSION | VU_FLAG_REPLY;
    r.hdr.size = size;
    if (size)
        memcpy(&r.p, payload, size);
    r.nfds = fd >= 0 ? 1 : 0;
    r.fds[0] = fd;
    vu->replied = true;
    int rc = vu_msg_send(vu->conn_fd, &r);
    if (rc < 0) {
        char nb[32];
        LOG(vu, VIO_LOG_ERROR, "%s: cannot send the reply (%s); dropping the connection",
            vu_req_name(req->hdr.request, nb, sizeof(nb)), strerror(-rc));
        vu->drop = true;
    }
    return rc;
}

static int reply_u64(struct vio_vhost_user *vu, const struct vu_msg *req, uint64_t v)
{
    return send_reply(vu, req, &v, sizeof(v), -1);
}

/* ------------------------------------------------------------------------ */
/* Device hooks (any thread)                                                 */

static void hook_notify(void *opaque, unsigned qidx)
{
    struct vio_vhost_user *vu = opaque;
    if (qidx >= vu->nrings)
        return;
    int fd = atomic_load_explicit(&vu->rings[qidx].call_fd, memory_order_acquire);
    if (fd >= 0)
        eventfd_signal(fd);
}

static void hook_config_changed(void *opaque)
{
    struct vio_vhost_user *vu = opaque;
    pthread_mutex_lock(&vu->backend_lock);
    if (vu->backend_fd >= 0 && vu->backend_config) {
        struct vu_hdr h = {.request = VU_BACKEND_CONFIG_CHANGE_MSG, .flags = VU_VERSION,
                           .size = 0};
        ssize_t n;
        do {
            n = send(vu->backend_fd, &h, sizeof(h), MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof(h))
            LOG(vu, VIO_LOG_WARN, "config change: back-end request channel write failed");
    }
    pthread_mutex_unlock(&vu->backend_lock);
}

static void hook_needs_reset(void *opaque)
{
    struct vio_vhost_user *vu = opaque;
    if (vu->st) /* NULL only while vio_vhost_user_new() binds the device */
        vio_status_set_needs_reset(vu->st);
}

static void hook_set_watch(void *opaque, int fd, unsigned events, uint32_t id)
{
    struct vio_vhost_user *vu = opaque;
    if (id >= VIO_VU_WATCH_DEVICE_LIMIT) {
        LOG(vu, VIO_LOG_ERROR, "device watch id 0x%x collides with the transport's ids; ignored",
            id);
        return;
    }
    if (vu->set_watch)
        vu->set_watch(vu->opaque, fd, events, id);
}

/* Control path (the device's queue_start op, paused). The memory table with its fds. */
static int hook_mem_regions(void *opaque, struct vio_device_mem_region *out, unsigned cap)
{
    const struct vio_vhost_user *vu = opaque;
    if (!out && cap)
        return -EINVAL;
    for (unsigned j = 0; j < vu->nmaps && j < cap; j++) {
        const struct vu_map *mp = &vu->maps[j];
        out[j] = (struct vio_device_mem_region){.guest_addr = mp->gpa, .size = mp->size,
                                                .host_addr = (uint64_t)(uintptr_t)mp->host,
                                                .fd = mp->fd, .fd_offset = mp->offset};
    }
    return (int)vu->nmaps;
}

/* Control path (the device's queue_start op, paused). The device runs ring @p qidx itself:
 * hand it the ring and its fds, and stop watching the kick fd (ring_update_running() and
 * ring_stop() end the claim). */
static int hook_queue_offload(void *opaque, unsigned qidx, struct vio_device_queue_offload *out)
{
    struct vio_vhost_user *vu = opaque;
    if (!out || out->struct_size < sizeof(*out) || qidx >= vu->nrings)
        return -EINVAL;
    struct vu_ring *r = &vu->rings[qidx];
    if (!r->started || !r->q || !vu->mem)
        return -EINVAL;
    uint64_t n = r->num;
    void *d = vio_mem_ptr(vu->mem, r->desc_gpa, 16u * n, VIO_MEM_READ);
    void *a = vio_mem_ptr(vu->mem, r->avail_gpa, 6u + 2u * n, VIO_MEM_READ);
    void *u = vio_mem_ptr(vu->mem, r->used_gpa, 6u + 8u * n, VIO_MEM_WRITE);
    if (!d || !a || !u)
        return -EINVAL; /* the core set the ring up on these: cannot happen */
    *out = (struct vio_device_queue_offload){
        .struct_size = sizeof(*out), .kick_fd = r->kick_fd,
        .call_fd = atomic_load_explicit(&r->call_fd, memory_order_acquire),
        .err_fd = atomic_load_explicit(&r->err_fd, memory_order_acquire),
        .size = (uint16_t)r->num, .base = vio_queue_get_last_avail(r->q),
        .desc_gpa = r->desc_gpa, .avail_gpa = r->avail_gpa, .used_gpa = r->used_gpa,
        .desc_host = (uint64_t)(uintptr_t)d, .avail_host = (uint64_t)(uintptr_t)a,
        .used_host = (uint64_t)(uintptr_t)u};
    watch(vu, r->kick_fd, 0, VIO_VU_WATCH_KICK(qidx));
    r->offloaded = true;
    LOG(vu, VIO_LOG_INFO, "queue %u runs outside the transport (offloaded by the device)", qidx);
    return 0;
}

/* A queue broke at run time (core on_broken hook; any worker thread). */
static void on_queue_broken(void *opaque, struct vio_queue *q, enum vio_violation why)
{
    struct vio_vhost_user *vu = opaque;
    (void)why; /* the queue logged the rule itself */
    vio_status_set_needs_reset(vu->st);
    unsigned i = vio_queue_index(q);
    if (i < vu->nrings) {
        int fd = atomic_load_explicit(&vu->rings[i].err_fd, memory_order_acquire);
        if (fd >= 0)
            eventfd_signal(fd);
        /* A broken ring is never processed again before the front-end sets it up anew: stop
         * watching its kick fd, or every kick the front-end keeps sending costs a wake-up
         * (the kick fd changes only while the workers are paused, so reading it here on the
         * ring's worker is safe; the next ring start watches it again). */
        watch(vu, vu->rings[i].kick_fd, 0, VIO_VU_WATCH_KICK(i));
    }
}

/* ------------------------------------------------------------------------ */
/* Rings                                                                     */

__attribute__((format(printf, 3, 4))) static void ring_fail(struct vio_vhost_user *vu, unsigned i,
                                                            const char *fmt, ...)
{
    struct vu_ring *r = &vu->rings[i];
    char buf[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    LOG(vu, VIO_LOG_ERROR, "queue %u: %s; the ring stays stopped until the front-end sets it up "
        "again (device needs reset)", i, buf);
    r->failed = true;
    vio_status_set_needs_reset(vu->st);
    int fd = atomic_load_explicit(&r->err_fd, memory_order_acquire);
    if (fd >= 0)
        eventfd_signal(fd);
}

static void ring_watch_kick(struct vio_vhost_user *vu, unsigned i, bool on);

/* Paused. Start or stop the device's processing to match the ring's state. */
static void ring_update_running(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    bool want = r->started && r->enabled && !r->failed && vu->features_set && vu->dev_features_ok;
    if (want && !r->running) {
        int rc = vio_device_queue_start(vu->dev, i, r->q);
        if (rc < 0) {
            if (r->offloaded) {
                /* the claim ends with the failed start: kicks are this transport's again */
                r->offloaded = false;
                ring_watch_kick(vu, i, true);
            }
            LOG(vu, VIO_LOG_WARN, "queue %u: the device did not start it (%s)", i, strerror(-rc));
            return;
        }
        r->running = true;
        /* Chains the driver made available earlier (kicks drained while the ring was
         * disabled): make the owner of the ring look at it. */
        if (r->kick_fd >= 0)
            eventfd_signal(r->kick_fd);
    } else if (!want && r->running) {
        vio_device_queue_stop(vu->dev, i);
        r->running = false;
        if (r->offloaded) {
            r->offloaded = false;
            if (r->started && !r->failed)
                ring_watch_kick(vu, i, true);
        }
    }
}

/* Paused. Something the device was handed for an offloaded ring changed (the memory table, a
 * kick / call / error fd): stop and start the device's queue, so that it reads everything
 * afresh (vio_device_hooks::queue_offload). The device writes the ring's avail index back
 * into the queue object when it stops, and starts again from there. */
static void ring_offload_refresh(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    if (!r->running || !r->offloaded)
        return;
    vio_device_queue_stop(vu->dev, i);
    r->running = false;
    r->offloaded = false;
    ring_update_running(vu, i);
}

static void rings_offload_refresh(struct vio_vhost_user *vu)
{
    for (unsigned i = 0; i < vu->nrings; i++)
        ring_offload_refresh(vu, i);
}

/* Paused. Attach or detach the dirty log of a set-up ring. */
static void ring_apply_log(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    if (!r->q || !vio_queue_size(r->q))
        return;
    if (has_bit(vu->features, VU_F_LOG_ALL) && vu->log_base) {
        uint64_t used = (r->addr.flags & (1u << VU_VRING_F_LOG)) ? r->addr.log : r->used_gpa;
        vio_queue_set_dirty_log(r->q, vu->log_base, vu->log_size, used);
    } else {
        vio_queue_set_dirty_log(r->q, NULL, 0, 0);
    }
}

static int ring_translate(const struct vio_vhost_user *vu, const struct vu_ring *r, uint64_t *d,
                          uint64_t *a, uint64_t *u)
{
    uint64_t n = r->num;
    if (!vu->mem)
        return -EFAULT;
    if (vio_mem_uva_to_gpa(vu->mem, r->addr.desc, 16u * n, d) < 0 ||
        vio_mem_uva_to_gpa(vu->mem, r->addr.avail, 6u + 2u * n, a) < 0 ||
        vio_mem_uva_to_gpa(vu->mem, r->addr.used, 6u + 8u * n, u) < 0)
        return -EFAULT;
    return 0;
}

/* Paused. Stop the ring: the device lets go, the index is saved, the queue freed. */
static void ring_stop(struct vio_vhost_user *vu, unsigned i, bool close_fds)
{
    struct vu_ring *r = &vu->rings[i];
    if (r->running) {
        vio_device_queue_stop(vu->dev, i);
        r->running = false;
    }
    r->offloaded = false;
    if (r->q) {
        if (r->started)
            r->base = vio_queue_get_last_avail(r->q);
        vio_queue_free(r->q);
        r->q = NULL;
    }
    r->started = false;
    r->failed = false;
    if (!close_fds) {
        /* stopped by a rule (ring_remap, a refused fd): its kicks mean nothing until the
         * ring is set up again, and a watched kick fd would cost a wake-up per kick */
        watch(vu, r->kick_fd, 0, VIO_VU_WATCH_KICK(i));
    } else {
        if (r->kick_fd >= 0) {
            watch(vu, r->kick_fd, 0, VIO_VU_WATCH_KICK(i));
            xclose(&r->kick_fd);
        }
        r->kick_set = false;
        int fd = atomic_exchange_explicit(&r->call_fd, -1, memory_order_acq_rel);
        xclose(&fd);
    }
}

/* Paused. Forget everything the front-end told about the ring. */
static void ring_forget(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    ring_stop(vu, i, true);
    int fd = atomic_exchange_explicit(&r->err_fd, -1, memory_order_acq_rel);
    xclose(&fd);
    r->num = 0;
    r->addr_set = false;
    memset(&r->addr, 0, sizeof(r->addr));
    r->base = 0;
    r->enabled = false;
}

/* Paused. Watch the kick fd of ring @p i (on) or stop watching it (off: a ring that failed
 * or broke, whose kicks would only cost wake-ups). No-op for a ring without a kick fd. */
static void ring_watch_kick(struct vio_vhost_user *vu, unsigned i, bool on)
{
    /* an offloaded ring's kicks belong to whoever runs it: never drain them here */
    if (on && vu->rings[i].offloaded)
        return;
    watch(vu, vu->rings[i].kick_fd, on ? VIO_WATCH_IN : 0, VIO_VU_WATCH_KICK(i));
}

/* Paused; ring @p i set up on its rings. The avail index to resume at: the front-end's
 * SET_VRING_BASE, unless it contradicts the used ring. The chains between used->idx and
 * avail->idx are the ones the driver has not got back; a base outside that window is behind
 * what was already completed or beyond what was made available. DPDK's virtio_user in server
 * mode does exactly that after a back-end restart (base 0 while its avail index is far ahead):
 * like DPDK's vhost library, resume at used->idx (the chains that were in
 * flight are processed again) with a warning. If the used ring itself is impossible (more
 * than a ring behind avail) the base is kept and the core refuses the ring at its first look.
 * With inflight tracking the inflight region decides instead. */
static uint16_t ring_checked_base(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    struct vio_queue_ring_state st;
    if ((vu->infl_base && i < vu->infl_nq) || vio_queue_get_ring_state(r->q, &st) < 0)
        return r->base;
    uint16_t used = st.ring_used_idx, avail = st.avail_idx;
    uint16_t outstanding = (uint16_t)(avail - used);
    if ((uint16_t)(r->base - used) <= outstanding || outstanding > r->num)
        return r->base;
    LOG(vu, VIO_LOG_WARN, "queue %u: SET_VRING_BASE %u disagrees with the rings (used idx %u, "
        "avail idx %u): resuming at the used idx %u, the %u chain(s) between them are taken "
        "again (a front-end that restarted the ring without resetting it)", i, r->base, used,
        avail, used, outstanding);
    return used;
}

/* Start the ring if everything it needs is there (spec "Ring states": a ring starts when
 * its kick arrives; here also memory, size, addresses and features must be known). */
static void ring_try_start(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    if (r->started || r->failed || !r->kick_set || !r->num || !r->addr_set || !vu->features_set)
        return;
    if (!vu->mem || !vio_mem_count(vu->mem))
        return; /* started once memory arrives */
    vu_pause(vu);
    struct vio_device_queue_info info;
    if (vio_device_queue_info(vu->dev, i, &info) < 0) {
        LOG(vu, VIO_LOG_WARN, "queue %u: not a queue of the device with the negotiated "
            "features; not started", i);
        ring_watch_kick(vu, i, false);
        return;
    }
    uint16_t maxsz = info.max_size < vu->max_qsize ? info.max_size : vu->max_qsize;
    if (r->num > maxsz) {
        ring_fail(vu, i, "size %u above the device maximum %u", r->num, maxsz);
        ring_watch_kick(vu, i, false);
        return;
    }
    uint64_t d, a, u;
    if (ring_translate(vu, r, &d, &a, &u) < 0) {
        ring_fail(vu, i, "ring addresses desc 0x%llx avail 0x%llx used 0x%llx (size %u) are not "
                  "inside guest memory", (unsigned long long)r->addr.desc,
                  (unsigned long long)r->addr.avail, (unsigned long long)r->addr.used, r->num);
        ring_watch_kick(vu, i, false);
        return;
    }
    if (!r->q) {
        struct vio_queue_config qc = {
            .struct_size = sizeof(qc), .max_size = maxsz, .index = (uint16_t)i,
            .name = info.name, .dir = info.dir, .log = vu->log, .log_opaque = vu->log_opaque,
            .on_broken = on_queue_broken, .broken_opaque = vu};
        int rc = vio_queue_new(&qc, &r->q);
        if (rc < 0) {
            r->q = NULL;
            ring_fail(vu, i, "cannot create the queue (%s)", strerror(-rc));
            ring_watch_kick(vu, i, false);
            return;
        }
    }
    int rc = vio_queue_setup(r->q, vu->mem, (uint16_t)r->num, virtio_features(vu), d, a, u);
    if (rc < 0) {
        vio_queue_free(r->q);
        r->q = NULL;
        ring_fail(vu, i, "ring setup refused (%s)", strerror(-rc));
        ring_watch_kick(vu, i, false);
        return;
    }
    r->base = ring_checked_base(vu, i);
    vio_queue_set_last_avail(r->q, r->base);
    r->desc_gpa = d;
    r->avail_gpa = a;
    r->used_gpa = u;
    if (vu->infl_base && i < vu->infl_nq) {
        rc = vio_queue_set_inflight(r->q, vu->infl_base + (size_t)i * vu->infl_qbytes,
                                    vu->infl_qbytes);
        if (rc > 0)
            LOG(vu, VIO_LOG_INFO, "queue %u: resubmitting %d chains that were in flight", i, rc);
        else if (rc < 0)
            LOG(vu, VIO_LOG_WARN, "queue %u: inflight region not usable (ring size %u, region "
                "queue size %u); not tracking", i, r->num, vu->infl_qs);
    }
    r->started = true;
    ring_watch_kick(vu, i, true); /* a ring that failed before stopped watching it */
    ring_apply_log(vu, i);
    /* spec "Ring states": without PROTOCOL_FEATURES a ring is enabled when it starts */
    if (!has_bit(vu->features, VU_F_PROTOCOL_FEATURES))
        r->enabled = true;
    LOG(vu, VIO_LOG_INFO, "queue %u (%s) started: size %u, base %u, %s%s", i, info.name, r->num,
        r->base, r->kick_fd >= 0 ? "kick fd" : "polling", r->enabled ? "" : ", disabled");
    ring_update_running(vu, i);
}

static void rings_try_start(struct vio_vhost_user *vu)
{
    for (unsigned i = 0; i < vu->nrings; i++)
        ring_try_start(vu, i);
}

/* Paused. The memory map changed: re-point a started ring (or stop it if its rings left
 * guest memory). The caller frees / unmaps the old memory afterwards. */
static void ring_remap(struct vio_vhost_user *vu, unsigned i)
{
    struct vu_ring *r = &vu->rings[i];
    if (!r->started)
        return;
    uint64_t d, a, u;
    const char *why = NULL;
    if (ring_translate(vu, r, &d, &a, &u) < 0)
        why = "its rings are no longer inside guest memory";
    else if (d != r->desc_gpa || a != r->avail_gpa || u != r->used_gpa)
        why = "the new memory table moves its rings in guest-physical space";
    else if (vio_queue_remap(r->q, vu->mem) < 0)
        why = "its rings cannot be mapped after the memory change";
    if (why) {
        ring_stop(vu, i, false);
        ring_fail(vu, i, "%s", why);
    }
}

static void rings_remap(struct vio_vhost_user *vu)
{
    for (unsigned i = 0; i < vu->nrings; i++)
        ring_remap(vu, i);
}

static bool any_started(const struct vio_vhost_user *vu)
{
    for (unsigned i = 0; i < vu->nrings; i++)
        if (vu->rings[i].started)
            return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */

/* Unmap what map_file() mapped: leave the SIGBUS guard first. */
static void unmap_guarded(void *base, size_t len)
{
    vio_guard_remove(base);
    munmap(base, len);
}

static void unmap_one(struct vu_map *m)
{
    if (m->base) {
        unmap_guarded(m->base, m->len);
        if (m->fd >= 0)
            close(m->fd);
    }
    memset(m, 0, sizeof(*m));
    m->fd = -1;
}

static void unmap_all(struct vio_vhost_user *vu)
{
    for (unsigned j = 0; j < vu->nmaps; j++)
        unmap_one(&vu->maps[j]);
    vu->nmaps = 0;
    vio_mem_free(vu->mem);
    vu->mem = NULL;
}

/* The fd must be a file at least [offset, offset + size) long: mapping past the end of a
 * file succeeds but the first access would raise SIGBUS. */
static int check_file(struct vio_vhost_user *vu, int fd, uint64_t offset, uint64_t size,
                      struct stat *st, const char *req, const char *what)
{
    /* Seal first, then check the size: a memfd that allows sealing cannot shrink below what
     * is checked here (F_SEAL_SHRINK; QEMU's memfd backend seals itself). Other files are
     * guarded when mapped (map_file). */
    vio_guard_seal_shrink(fd);
    if (fstat(fd, st) < 0) {
        int e = errno;
        LOG(vu, VIO_LOG_ERROR, "%s: %s: fstat failed (%s)", req, what, strerror(e));
        return -e;
    }
    if (!S_ISREG(st->st_mode)) {
        LOG(vu, VIO_LOG_ERROR, "%s: %s: fd is not a regular file (memfd, tmpfs or hugetlbfs "
            "expected)", req, what);
        return -EINVAL;
    }
    uint64_t fsize = st->st_size > 0 ? (uint64_t)st->st_size : 0;
    if (offset > fsize || size > fsize - offset) {
        LOG(vu, VIO_LOG_ERROR, "%s: %s: offset 0x%llx + size 0x%llx runs past the end of its "
            "file (0x%llx bytes)", req, what, (unsigned long long)offset,
            (unsigned long long)size, (unsigned long long)fsize);
        return -EINVAL;
    }
    return 0;
}

/* A file the front-end could still shrink (not sealed: a regular file, hugetlbfs, a memfd
 * without MFD_ALLOW_SEALING): an access past its new end would raise SIGBUS. Register the
 * mapping with the guard, which turns such a fault into zero pages, poisons the session and
 * wakes the control thread (the session then ends: vu_poisoned()). */
static void map_guard(struct vio_vhost_user *vu, int fd, void *p, size_t len, size_t page,
                      const char *req, const char *what)
{
    if (vio_guard_is_sealed(fd))
        return;
    int rc = vio_guard_add(p, len, page, &vu->poisoned, vu->conn_fd);
    if (rc < 0)
        LOG(vu, VIO_LOG_WARN, "%s: %s: the file cannot be sealed and the SIGBUS guard refused "
            "it (%s): if the front-end truncates it, the process dies", req, what,
            strerror(-rc));
    else
        LOG(vu, VIO_LOG_DEBUG, "%s: %s: not sealable; guarded against truncation", req, what);
}

/* Map [offset, offset + size) of a checked file, shared and writable, without touching it.
 * The file offset is aligned down to the file's page size (st_blksize: 4 KiB, or the huge
 * page size on hugetlbfs). */
static int map_file(struct vio_vhost_user *vu, int fd, uint64_t offset, uint64_t size,
                    const struct stat *st, uint8_t **base, size_t *len, uint8_t **host,
                    const char *req, const char *what)
{
    uint64_t align = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t bs = st->st_blksize > 0 ? (uint64_t)st->st_blksize : 0;
    if (bs > align && !(bs & (bs - 1)) && bs <= (1ull << 30))
        align = bs;
    uint64_t moff = offset & ~(align - 1);
    uint64_t lead = offset - moff;
    uint64_t want = lead + size; /* <= file size, no overflow (check_file) */
    uint64_t maplen = (want + align - 1) & ~(align - 1);
    if (maplen < want || maplen > SIZE_MAX || moff > (uint64_t)INT64_MAX) {
        LOG(vu, VIO_LOG_ERROR, "%s: %s: size 0x%llx cannot be mapped", req, what,
            (unsigned long long)size);
        return -EINVAL;
    }
    void *p = mmap(NULL, (size_t)maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)moff);
    if (p == MAP_FAILED) {
        int e = errno;
        LOG(vu, VIO_LOG_ERROR, "%s: %s: mmap of 0x%llx bytes failed (%s)", req, what,
            (unsigned long long)maplen, strerror(e));
        return -e;
    }
    *base = p;
    *len = (size_t)maplen;
    *host = (uint8_t *)p + lead;
    map_guard(vu, fd, p, (size_t)maplen, (size_t)align, req, what);
    return 0;
}

static int map_region(struct vio_vhost_user *vu, int fd, const struct vu_region *rg,
                      const struct stat *st, struct vu_map *out, const char *req, unsigned idx)
{
    char what[24];
    snprintf(what, sizeof(what), "region %u", idx);
    memset(out, 0, sizeof(*out));
    int rc = map_file(vu, fd, rg->mmap_offset, rg->size, st, &out->base, &out->len, &out->host,
                      req, what);
    if (rc < 0)
        return rc;
    out->dev = st->st_dev;
    out->ino = st->st_ino;
    out->offset = rg->mmap_offset;
    out->gpa = rg->gpa;
    out->size = rg->size;
    out->uva = rg->uva;
    out->refs = 1;
    out->fd = -1; /* the caller keeps the message's fd here once the region is accepted */
    return 0;
}

static int mem_add_map(struct vio_vhost_user *vu, struct vio_mem *mem, const struct vu_map *mp,
                       const char *req, unsigned idx)
{
    /* The core checks ring and buffer alignment on guest addresses; that only carries over to
     * host pointers (atomics on ring indices, never split across cache lines) when a region's
     * guest address and its place in the mapping agree modulo a cache line. */
    if (((uintptr_t)mp->host - mp->gpa) & (VU_REGION_ALIGN - 1)) {
        LOG(vu, VIO_LOG_ERROR, "%s: region %u: guest address 0x%llx and mmap_offset 0x%llx are "
            "not aligned alike (multiple of %u apart needed)", req, idx,
            (unsigned long long)mp->gpa, (unsigned long long)mp->offset, VU_REGION_ALIGN);
        return -EINVAL;
    }
    struct vio_mem_region r = {.guest_addr = mp->gpa, .size = mp->size, .user_addr = mp->uva,
                               .host_ptr = mp->host, .mmap_offset = mp->offset};
    int rc = vio_mem_add(mem, &r);
    if (rc < 0)
        LOG(vu, VIO_LOG_ERROR, "%s: region %u (gpa 0x%llx size 0x%llx uva 0x%llx) refused by "
            "the memory map (%s)", req, idx, (unsigned long long)mp->gpa,
            (unsigned long long)mp->size, (unsigned long long)mp->uva,
            rc == -EEXIST ? "overlaps another region" : strerror(-rc));
    return rc;
}

static int h_set_mem_table(struct vio_vhost_user *vu, struct vu_msg *m)
{
    const struct vu_mem *tbl = &m->p.mem;
    unsigned n = tbl->nregions; /* 1..8, fds == n (validated) */
    struct vu_map nm[VU_MAX_MEM_REGIONS];
    bool reused[VU_MAX_MEM_REGIONS] = {false};
    bool *claimed = NULL;
    struct vio_mem *mem = NULL;
    unsigned done = 0;
    int rc = 0;

    if (n > vu->max_slots) {
        LOG(vu, VIO_LOG_ERROR, "SET_MEM_TABLE: %u regions, %u memory slots", n, vu->max_slots);
        rc = -ENOSPC;
        goto fail;
    }
    claimed = calloc(vu->nmaps ? vu->nmaps : 1, sizeof(*claimed));
    if (!claimed) {
        rc = -ENOMEM;
        goto fail;
    }
    for (; done < n; done++) {
        const struct vu_region *rg = &tbl->r[done];
        char what[24];
        struct stat st;
        snprintf(what, sizeof(what), "region %u", done);
        rc = check_file(vu, m->fds[done], rg->mmap_offset, rg->size, &st, "SET_MEM_TABLE", what);
        if (rc < 0)
            goto fail;
        /* A region the current table already maps (same file range) keeps its mapping, so
         * pointers the workers computed before stay valid. */
        unsigned j;
        for (j = 0; j < vu->nmaps; j++) {
            const struct vu_map *o = &vu->maps[j];
            if (!claimed[j] && o->dev == st.st_dev && o->ino == st.st_ino &&
                o->offset == rg->mmap_offset && o->size == rg->size)
                break;
        }
        if (j < vu->nmaps) {
            claimed[j] = true;
            reused[done] = true;
            nm[done] = vu->maps[j];
            nm[done].gpa = rg->gpa;
            nm[done].uva = rg->uva;
        } else {
            rc = map_region(vu, m->fds[done], rg, &st, &nm[done], "SET_MEM_TABLE", done);
            if (rc < 0)
                goto fail;
            nm[done].fd = take_fd(m, done); /* kept: a device may hand the memory on */
        }
    }
    rc = vio_mem_new(vu->max_slots, &mem);
    if (rc < 0)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        rc = mem_add_map(vu, mem, &nm[i], "SET_MEM_TABLE", i);
        if (rc < 0)
            goto fail;
    }

    /* Swap under pause; re-point the rings; only then release what is no longer used. */
    vu_pause(vu);
    struct vio_mem *old = vu->mem;
    vu->mem = mem;
    rings_remap(vu);
    for (unsigned j = 0; j < vu->nmaps; j++)
        if (!claimed[j])
            unmap_one(&vu->maps[j]);
    for (unsigned i = 0; i < n; i++)
        nm[i].refs = 1; /* a full table replaces any ADD_MEM_REG counting */
    memcpy(vu->maps, nm, n * sizeof(nm[0]));
    vu->nmaps = n;
    vio_mem_free(old);
    free(claimed);
    LOG(vu, VIO_LOG_INFO, "memory table: %u regions", n);
    rings_offload_refresh(vu);
    rings_try_start(vu);
    return 0;

fail:
    for (unsigned i = 0; i < done; i++)
        if (!reused[i])
            unmap_one(&nm[i]);
    vio_mem_free(mem);
    free(claimed);
    vu->drop = true; /* memory we cannot map: nothing useful can follow */
    return rc;
}

static int h_add_mem_reg(struct vio_vhost_user *vu, struct vu_msg *m)
{
    const struct vu_region *rg = &m->p.mem1.r;
    struct stat st;
    struct vu_map nm;
    int rc;
    /* QEMU's multiqueue net has one vhost device per queue pair on this one
     * connection, and each adds the same guest RAM: the same region (same
     * addresses, same file and offset) again is counted, not an overlap. */
    if (fstat(m->fds[0], &st) == 0) {
        for (unsigned j = 0; j < vu->nmaps; j++) {
            struct vu_map *o = &vu->maps[j];
            if (o->gpa == rg->gpa && o->size == rg->size && o->uva == rg->uva &&
                o->offset == rg->mmap_offset && o->dev == st.st_dev && o->ino == st.st_ino &&
                o->refs < UINT_MAX) {
                o->refs++;
                return 0; /* the message's fd is closed unused */
            }
        }
    }
    if (vu->nmaps >= vu->max_slots) {
        LOG(vu, VIO_LOG_ERROR, "ADD_MEM_REG: all %u memory slots are in use", vu->max_slots);
        vu->drop = true;
        return -ENOSPC;
    }
    rc = check_file(vu, m->fds[0], rg->mmap_offset, rg->size, &st, "ADD_MEM_REG", "region");
    if (rc == 0)
        rc = map_region(vu, m->fds[0], rg, &st, &nm, "ADD_MEM_REG", 0);
    if (rc < 0) {
        vu->drop = true;
        return rc;
    }
    nm.fd = take_fd(m, 0); /* kept: a device may hand the memory on */
    vu_pause(vu);
    if (!vu->mem) {
        rc = vio_mem_new(vu->max_slots, &vu->mem);
        if (rc < 0) {
            unmap_one(&nm);
            vu->drop = true;
            return rc;
        }
    }
    rc = mem_add_map(vu, vu->mem, &nm, "ADD_MEM_REG", 0);
    if (rc < 0) {
        unmap_one(&nm);
        vu->drop = true;
        return rc;
    }
    vu->maps[vu->nmaps++] = nm;
    rings_offload_refresh(vu);
    rings_try_start(vu);
    return 0;
}

static int h_rem_mem_reg(struct vio_vhost_user *vu, struct vu_msg *m)
{
    /* spec: identified by guest address, user address and size; an fd is closed unused */
    const struct vu_region *rg = &m->p.mem1.r;
    unsigned j;
    for (j = 0; j < vu->nmaps; j++) {
        const struct vu_map *o = &vu->maps[j];
        if (o->gpa == rg->gpa && o->size == rg->size && o->uva == rg->uva)
            break;
    }
    if (j == vu->nmaps) {
        LOG(vu, VIO_LOG_WARN, "REM_MEM_REG: no region gpa 0x%llx size 0x%llx uva 0x%llx",
            (unsigned long long)rg->gpa, (unsigned long long)rg->size,
            (unsigned long long)rg->uva);
        return -ENOENT;
    }
    if (vu->maps[j].refs > 1) {
        vu->maps[j].refs--; /* another vhost device of the frontend still uses it */
        return 0;
    }
    vu_pause(vu);
    vio_mem_remove(vu->mem, rg->gpa, rg->size);
    rings_remap(vu);
    unmap_one(&vu->maps[j]);
    memmove(&vu->maps[j], &vu->maps[j + 1], (vu->nmaps - j - 1) * sizeof(vu->maps[0]));
    vu->nmaps--;
    rings_offload_refresh(vu);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Dirty log and inflight                                                    */

static void log_unmap(struct vio_vhost_user *vu)
{
    if (vu->log_map)
        unmap_guarded(vu->log_map, vu->log_map_len);
    vu->log_map = NULL;
    vu->log_map_len = 0;
    vu->log_base = NULL;
    vu->log_size = 0;
}

static int h_set_log_base(struct vio_vhost_user *vu, struct vu_msg *m)
{
    uint64_t size = m->p.log.size, off = m->p.log.offset;
    struct stat st;
    uint8_t *base, *host;
    size_t len;
    int rc = check_file(vu, m->fds[0], off, size, &st, "SET_LOG_BASE", "log");
    if (rc == 0)
        rc = map_file(vu, m->fds[0], off, size, &st, &base, &len, &host, "SET_LOG_BASE", "log");
    if (rc < 0) {
        /* Migrating without a working log would silently lose dirty pages. */
        vu->drop = true;
        return rc;
    }
    vu_pause(vu);
    uint8_t *old = vu->log_map;
    size_t oldlen = vu->log_map_len;
    vu->log_map = base;
    vu->log_map_len = len;
    vu->log_base = host;
    vu->log_size = size;
    for (unsigned i = 0; i < vu->nrings; i++)
        ring_apply_log(vu, i);
    if (old)
        unmap_guarded(old, oldlen);
    LOG(vu, VIO_LOG_INFO, "dirty log: 0x%llx bytes", (unsigned long long)size);
    return 0; /* the reply QEMU waits for with LOG_SHMFD: the table's reply rule */
}

static size_t inflight_qbytes(uint16_t qs)
{
    size_t b = vio_queue_inflight_size(qs);
    return (b + VU_INFLIGHT_ALIGN - 1) & ~(size_t)(VU_INFLIGHT_ALIGN - 1);
}

/* Paused. Install a new inflight region (NULL: none). Started rings let go of the old
 * one; the new one is used by rings that start from now on. */
static void inflight_install(struct vio_vhost_user *vu, uint8_t *map, size_t maplen, uint8_t *base,
                             uint16_t nq, uint16_t qs)
{
    for (unsigned i = 0; i < vu->nrings; i++) {
        struct vu_ring *r = &vu->rings[i];
        if (r->started && r->q)
            vio_queue_set_inflight(r->q, NULL, 0);
    }
    if (vu->infl_map)
        unmap_guarded(vu->infl_map, vu->infl_map_len);
    vu->infl_map = map;
    vu->infl_map_len = maplen;
    vu->infl_base = base;
    vu->infl_nq = nq;
    vu->infl_qs = qs;
    vu->infl_qbytes = base ? inflight_qbytes(qs) : 0;
}

static int h_get_inflight_fd(struct vio_vhost_user *vu, struct vu_msg *m)
{
    struct vu_inflight in = m->p.inflight;
    size_t qb = inflight_qbytes(in.queue_size);
    size_t total = qb * in.num_queues;
    struct vu_inflight out;
    memset(&out, 0, sizeof(out)); /* no stack bytes in the padding sent to the peer */
    out.num_queues = in.num_queues;
    out.queue_size = in.queue_size;
    int fd = memfd_create("vio-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *p = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)total) == 0) {
        /* The front-end cannot shrink it under us (an access past the end would SIGBUS). */
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    if (p == MAP_FAILED) {
        LOG(vu, VIO_LOG_ERROR, "GET_INFLIGHT_FD: cannot create a %zu-byte region (%s)", total,
            strerror(errno));
        xclose(&fd);
        out.mmap_size = 0;
        out.mmap_offset = 0;
        return send_reply(vu, m, &out, sizeof(out), -1) < 0 ? -EIO : 0;
    }
    vu_pause(vu);
    inflight_install(vu, p, total, p, in.num_queues, in.queue_size);
    out.mmap_size = total;
    out.mmap_offset = 0;
    LOG(vu, VIO_LOG_INFO, "inflight region: %u queues of size %u, %zu bytes", in.num_queues,
        in.queue_size, total);
    send_reply(vu, m, &out, sizeof(out), fd);
    close(fd); /* the mapping keeps the memory; the front-end has its own fd */
    return 0;
}

static int h_set_inflight_fd(struct vio_vhost_user *vu, struct vu_msg *m)
{
    struct vu_inflight in = m->p.inflight;
    size_t qb = inflight_qbytes(in.queue_size);
    uint64_t need = (uint64_t)qb * in.num_queues;
    if (in.mmap_offset & (VU_INFLIGHT_ALIGN - 1)) {
        LOG(vu, VIO_LOG_ERROR, "SET_INFLIGHT_FD: mmap_offset 0x%llx not a multiple of %u",
            (unsigned long long)in.mmap_offset, VU_INFLIGHT_ALIGN);
        vu->drop = true;
        return -EINVAL;
    }
    if (in.mmap_size < need) {
        LOG(vu, VIO_LOG_ERROR, "SET_INFLIGHT_FD: 0x%llx bytes for %u queues of size %u (need "
            "0x%llx)", (unsigned long long)in.mmap_size, in.num_queues, in.queue_size,
            (unsigned long long)need);
        vu->drop = true;
        return -EINVAL;
    }
    struct stat st;
    uint8_t *base, *host;
    size_t len;
    int rc = check_file(vu, m->fds[0], in.mmap_offset, in.mmap_size, &st, "SET_INFLIGHT_FD",
                        "inflight region");
    if (rc == 0)
        rc = map_file(vu, m->fds[0], in.mmap_offset, in.mmap_size, &st, &base, &len, &host,
                      "SET_INFLIGHT_FD", "inflight region");
    if (rc < 0) {
        vu->drop = true;
        return rc;
    }
    vu_pause(vu);
    if (any_started(vu))
        LOG(vu, VIO_LOG_WARN, "SET_INFLIGHT_FD while rings are started: used from their next "
            "start");
    inflight_install(vu, base, len, host, in.num_queues, in.queue_size);
    LOG(vu, VIO_LOG_INFO, "inflight region set: %u queues of size %u", in.num_queues,
        in.queue_size);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Session                                                                   */

/* How much a reset takes back; each scope includes the ones before it. */
enum vu_reset_scope {
    VU_SCOPE_RINGS,   /* RESET_OWNER: every ring stops and lets go of its kick and call fds */
    VU_SCOPE_STATUS,  /* the driver wrote status 0: the device is reset and the features are
                       * forgotten; the rings' setup is kept: QEMU sends status 0 before
                       * GET_VRING_BASE, which must still answer each ring's index, and
                       * re-enables only the rings it disabled */
    VU_SCOPE_DEVICE,  /* RESET_DEVICE: the rings' setup and the status are forgotten too */
    VU_SCOPE_SESSION  /* the session ended: memory, dirty log, inflight region, back-end
                       * channel, owner and protocol features go as well */
};

/* The reset sequence, written once. Leaves the workers paused (the caller resumes). */
static void vu_reset(struct vio_vhost_user *vu, enum vu_reset_scope scope)
{
    vu_pause(vu);
    for (unsigned i = 0; i < vu->nrings; i++) {
        if (scope >= VU_SCOPE_DEVICE)
            ring_forget(vu, i);
        else
            ring_stop(vu, i, true);
    }
    if (scope == VU_SCOPE_RINGS)
        return;
    vio_device_reset(vu->dev);
    vu->features_set = false;
    vu->dev_features_ok = false;
    vu->features = 0;
    if (scope >= VU_SCOPE_DEVICE)
        vio_status_write(vu->st, 0, NULL); /* SET_STATUS 0 has written it already */
    if (scope < VU_SCOPE_SESSION)
        return;
    unmap_all(vu);
    log_unmap(vu);
    xclose(&vu->log_fd);
    inflight_install(vu, NULL, 0, NULL, 0, 0);
    pthread_mutex_lock(&vu->backend_lock);
    xclose(&vu->backend_fd);
    vu->backend_config = false;
    pthread_mutex_unlock(&vu->backend_lock);
    vu->owner = false;
    vu->pfeatures = 0;
}

/* Tear down everything a session built and reset the device. The connection itself is
 * handled by the caller. */
static void session_teardown(struct vio_vhost_user *vu)
{
    vu_reset(vu, VU_SCOPE_SESSION);
    vu_resume(vu);
}

static void conn_close(struct vio_vhost_user *vu)
{
    if (vu->conn_fd >= 0) {
        watch(vu, vu->conn_fd, 0, VIO_VU_WATCH_CONTROL);
        xclose(&vu->conn_fd);
    }
}

static void conn_setup(struct vio_vhost_user *vu, int s)
{
    int fl = fcntl(s, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
    /* A message is read with MSG_DONTWAIT first; only the rest of a message that has begun
     * to arrive may block, and not for longer than this. */
    struct timeval tv = {.tv_sec = VU_IO_TIMEOUT_MS / 1000,
                         .tv_usec = (VU_IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    vu->conn_fd = s;
    vu->state = VU_CONNECTED;
    vu->conn_at_ms = now_ms();
    vu->heard = false;
    atomic_store_explicit(&vu->poisoned, 0, memory_order_relaxed);
    watch(vu, s, VIO_WATCH_IN, VIO_VU_WATCH_CONTROL);
    LOG(vu, VIO_LOG_INFO, "front-end connected");
    if (vu->session)
        vu->session(vu->opaque, true);
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, path, n + 1);
    return 0;
}

static int try_connect(struct vio_vhost_user *vu)
{
    struct sockaddr_un sa;
    int rc = sock_addr(vu->path, &sa);
    if (rc < 0)
        return rc;
    /* Non-blocking: a unix connect completes or fails at once (-EAGAIN when the peer's
     * backlog is full: retried like any failure). */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        close(s);
        return rc;
    }
    conn_setup(vu, s);
    return 0;
}

/*
 * Server mode: what is at the socket path already? 0: nothing, or a stale socket (nobody
 * accepts on it: ECONNREFUSED), whose identity goes to @stale for path_publish() to replace.
 * A socket somebody listens on is a second back-end on the same path: -EADDRINUSE. Anything
 * that is not a socket is left alone: -EEXIST.
 */
static int path_probe(struct vio_vhost_user *vu, const struct sockaddr_un *sa, struct stat *stale,
                      bool *is_stale)
{
    *is_stale = false;
    if (lstat(vu->path, stale) < 0) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        LOG(vu, VIO_LOG_ERROR, "%s: cannot look at the socket path (%s)", vu->path, strerror(e));
        return -e;
    }
    if (!S_ISSOCK(stale->st_mode)) {
        LOG(vu, VIO_LOG_ERROR, "%s exists and is not a socket; not replacing it", vu->path);
        return -EEXIST;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    /* A unix connect completes or fails at once; a live listener with a full backlog says
     * EAGAIN. The listener sees a connection that closes at once. */
    int rc = connect(s, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    close(s);
    if (rc == 0 || rc == -EAGAIN) {
        LOG(vu, VIO_LOG_ERROR, "%s: a live socket is there (another back-end is listening on "
            "this path); not taking it over", vu->path);
        return -EADDRINUSE;
    }
    if (rc == -ENOENT)
        return 0; /* gone meanwhile */
    if (rc != -ECONNREFUSED) {
        LOG(vu, VIO_LOG_ERROR, "%s: cannot tell whether the socket there is in use (connect: "
            "%s); not replacing it", vu->path, strerror(-rc));
        return rc;
    }
    *is_stale = true;
    return 0;
}

/* A socket bound in a private directory (0700) next to the path, given its final mode there,
 * so that it appears at the path already with that mode (no window with the umask's). */
struct vu_hidden_sock {
    char dir[PATH_MAX];  /* the private directory, "" if none */
    char file[PATH_MAX]; /* the socket file in it */
    int dir_fd;          /* O_PATH of dir when its path is too long for a sockaddr_un */
};

static void hidden_cleanup(struct vu_hidden_sock *h)
{
    if (h->file[0])
        unlink(h->file);
    if (h->dir[0])
        rmdir(h->dir);
    xclose(&h->dir_fd);
    h->file[0] = h->dir[0] = 0;
}

static int bind_hidden(struct vio_vhost_user *vu, int s, struct vu_hidden_sock *h)
{
    h->dir[0] = h->file[0] = 0;
    h->dir_fd = -1;
    const char *slash = strrchr(vu->path, '/');
    int dl = slash ? (int)(slash - vu->path) : 1;
    const char *dirname = slash ? vu->path : ".";
    if (slash == vu->path)
        dl = 0; /* a socket in / */
    int n = snprintf(h->dir, sizeof(h->dir), "%.*s/.vio-vu-XXXXXX", dl, dirname);
    if (n < 0 || (size_t)n >= sizeof(h->dir)) {
        h->dir[0] = 0;
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(h->dir)) {
        int e = errno;
        h->dir[0] = 0;
        LOG(vu, VIO_LOG_ERROR, "%s: cannot create a private directory next to it (%s)", vu->path,
            strerror(e));
        return -e;
    }
    /* 0700 whatever the umask (a umask of 0177 would leave it unsearchable even for us) */
    if (chmod(h->dir, 0700) < 0)
        return -errno;
    if (strlen(h->dir) + 2 >= sizeof(h->file))
        return -ENAMETOOLONG;
    memcpy(h->file, h->dir, strlen(h->dir));
    memcpy(h->file + strlen(h->dir), "/s", 3);
    struct sockaddr_un sa;
    int rc = sock_addr(h->file, &sa);
    if (rc == -ENAMETOOLONG) {
        /* The final path fits but the directory's does not: bind through /proc's handle on
         * the directory. */
        h->dir_fd = open(h->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (h->dir_fd < 0)
            return -errno;
        char via[64];
        snprintf(via, sizeof(via), "/proc/self/fd/%d/s", h->dir_fd);
        rc = sock_addr(via, &sa);
    }
    if (rc < 0)
        return rc;
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        h->file[0] = 0; /* nothing was created */
        return rc;
    }
    if (chmod(h->file, vu->socket_mode) < 0)
        return -errno;
    return 0;
}

/* Move the listening socket to the path: it must not replace anything but the stale socket
 * path_probe() saw (a second back-end that came meanwhile keeps its socket). */
static int path_publish(struct vio_vhost_user *vu, struct vu_hidden_sock *h, bool is_stale,
                        const struct stat *stale)
{
    struct stat st;
    if (is_stale && lstat(vu->path, &st) == 0 && st.st_dev == stale->st_dev &&
        st.st_ino == stale->st_ino) {
        LOG(vu, VIO_LOG_INFO, "%s: replacing a stale socket (nobody listens on it)", vu->path);
        unlink(vu->path);
    }
    if (lstat(h->file, &st) < 0)
        return -errno;
    int rc = link(h->file, vu->path) < 0 ? errno : 0;
    if ((rc == EPERM || rc == EOPNOTSUPP) && lstat(vu->path, &(struct stat){0}) < 0 &&
        errno == ENOENT)
        rc = rename(h->file, vu->path) < 0 ? errno : 0; /* a file system without hard links */
    if (rc) {
        int e = rc;
        if (e == EEXIST) {
            LOG(vu, VIO_LOG_ERROR, "%s: another socket appeared there meanwhile; not taking it "
                "over", vu->path);
            return -EADDRINUSE;
        }
        LOG(vu, VIO_LOG_ERROR, "%s: cannot create the socket file (%s)", vu->path, strerror(e));
        return -e;
    }
    vu->path_dev = st.st_dev;
    vu->path_ino = st.st_ino;
    vu->path_owned = true;
    return 0;
}

static int start_listen(struct vio_vhost_user *vu)
{
    struct sockaddr_un sa;
    int rc = sock_addr(vu->path, &sa);
    if (rc < 0)
        return rc;
    struct stat stale;
    bool is_stale;
    rc = path_probe(vu, &sa, &stale, &is_stale);
    if (rc < 0)
        return rc;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    struct vu_hidden_sock h;
    if ((rc = bind_hidden(vu, s, &h)) < 0 || listen(s, 1) < 0 ||
        (rc = path_publish(vu, &h, is_stale, &stale)) < 0) {
        rc = rc < 0 ? rc : -errno;
        hidden_cleanup(&h);
        close(s);
        return rc;
    }
    hidden_cleanup(&h); /* the socket stays at the path (a second link to it) */
    vu->listen_fd = s;
    vu->state = VU_LISTENING;
    watch(vu, s, VIO_WATCH_IN, VIO_VU_WATCH_CONTROL);
    return 0;
}

/* Remove the socket file, unless what is at the path now is not the file we created. */
static void path_remove(struct vio_vhost_user *vu)
{
    struct stat st;
    if (!vu->path_owned)
        return;
    vu->path_owned = false;
    if (lstat(vu->path, &st) < 0)
        return;
    if (!S_ISSOCK(st.st_mode) || st.st_dev != vu->path_dev || st.st_ino != vu->path_ino) {
        LOG(vu, VIO_LOG_INFO, "%s is no longer the socket this back-end created; left in place",
            vu->path);
        return;
    }
    unlink(vu->path);
}

/* End the session and go back to waiting for (or looking for) a front-end. */
static void vu_drop(struct vio_vhost_user *vu)
{
    bool was = vu->state == VU_CONNECTED;
    session_teardown(vu);
    conn_close(vu);
    if (was) {
        LOG(vu, VIO_LOG_INFO, "session ended%s",
            vu->use_fd ? "" : vu->client ? (vu->reconnect_ms ? "; reconnecting" : "")
                                          : "; listening again");
        if (vu->session)
            vu->session(vu->opaque, false);
    }
    if (vu->use_fd) {
        vu->state = VU_CLOSED;
    } else if (vu->client) {
        if (vu->reconnect_ms) {
            vu->state = VU_RETRY;
            vu->retry_at_ms = now_ms() + vu->reconnect_ms;
        } else {
            vu->state = VU_CLOSED;
        }
    } else {
        vu->state = VU_LISTENING;
        watch(vu, vu->listen_fd, VIO_WATCH_IN, VIO_VU_WATCH_CONTROL);
    }
}

/* Server: the connection is silent since it was accepted, and other front-ends queue
 * behind it (one session at a time). */
static bool hello_pending(const struct vio_vhost_user *vu)
{
    return vu->state == VU_CONNECTED && !vu->client && !vu->use_fd && !vu->heard;
}

/* Control thread. The SIGBUS guard found a fault on this session's memory (the front-end
 * truncated a memory file it handed over; the faulting page now reads zeros): report it and
 * end the session. Returns true when it did. */
static bool vu_poisoned(struct vio_vhost_user *vu)
{
    if (vu->state != VU_CONNECTED || !atomic_load_explicit(&vu->poisoned, memory_order_acquire))
        return false;
    LOG(vu, VIO_LOG_ERROR, "bus error (SIGBUS) on guest memory: the front-end truncated a "
        "memory file it handed over; ending the session (device needs reset)");
    vio_status_set_needs_reset(vu->st);
    vu_drop(vu);
    atomic_store_explicit(&vu->poisoned, 0, memory_order_relaxed);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Request handlers                                                          */

static int h_set_features(struct vio_vhost_user *vu, struct vu_msg *m)
{
    uint64_t f = m->p.u64, off = offered_features(vu);
    if (f & ~off) {
        LOG(vu, VIO_LOG_ERROR, "SET_FEATURES: 0x%llx sets bits 0x%llx that were not offered; "
            "dropping the connection", (unsigned long long)f, (unsigned long long)(f & ~off));
        vu->drop = true;
        return -EPROTO;
    }
    uint64_t virt = f & ~VU_VHOST_BITS, oldvirt = virtio_features(vu);
    bool started = any_started(vu);
    if (vu->features_set && started && virt != oldvirt) {
        LOG(vu, VIO_LOG_WARN, "SET_FEATURES: virtio features change 0x%llx -> 0x%llx while rings "
            "are started; refused", (unsigned long long)oldvirt, (unsigned long long)virt);
        return -EBUSY;
    }
    if (vio_status_set_driver_features(vu->st, virt) < 0) {
        LOG(vu, VIO_LOG_WARN, "SET_FEATURES: virtio features change 0x%llx -> 0x%llx after "
            "FEATURES_OK / DRIVER_OK (status 0x%x; a reset comes first); refused",
            (unsigned long long)vio_status_driver_features(vu->st), (unsigned long long)virt,
            vio_status_read(vu->st));
        return -EBUSY;
    }
    if (started || has_bit(f, VU_F_LOG_ALL) != has_bit(vu->features, VU_F_LOG_ALL))
        vu_pause(vu);
    if (!vu->features_set || virt != oldvirt || !vu->dev_features_ok) {
        int rc = vu->dev->ops->set_features ? vio_device_set_features(vu->dev, virt) : 0;
        vu->features = f;
        vu->features_set = true;
        if (rc < 0) {
            LOG(vu, VIO_LOG_ERROR, "SET_FEATURES: the device refused 0x%llx (%s)",
                (unsigned long long)virt, strerror(-rc));
            vu->dev_features_ok = false;
            return rc;
        }
        vu->dev_features_ok = true;
    }
    vu->features = f;
    vu->features_set = true;
    LOG(vu, VIO_LOG_INFO, "features 0x%llx%s", (unsigned long long)virt,
        has_bit(f, VU_F_LOG_ALL) ? " (dirty logging on)" : "");
    for (unsigned i = 0; i < vu->nrings; i++) {
        ring_apply_log(vu, i);
        ring_update_running(vu, i);
    }
    rings_try_start(vu);
    return 0;
}

static int h_set_protocol_features(struct vio_vhost_user *vu, struct vu_msg *m)
{
    uint64_t pf = m->p.u64;
    if (pf & ~vu->pf_offered) {
        LOG(vu, VIO_LOG_ERROR, "SET_PROTOCOL_FEATURES: 0x%llx sets bits 0x%llx that were not "
            "offered; dropping the connection", (unsigned long long)pf,
            (unsigned long long)(pf & ~vu->pf_offered));
        vu->drop = true;
        return -EPROTO;
    }
    vu->pfeatures = pf;
    update_backend_config(vu);
    return 0;
}

static int h_vring_num(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = m->p.state.index;
    struct vu_ring *r = &vu->rings[i];
    if (r->started) {
        LOG(vu, VIO_LOG_WARN, "SET_VRING_NUM: queue %u is started (GET_VRING_BASE first); "
            "refused", i);
        return -EBUSY;
    }
    r->num = m->p.state.num;
    r->failed = false;
    ring_try_start(vu, i); /* in case the kick came first */
    return 0;
}

static int h_vring_base(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = m->p.state.index;
    struct vu_ring *r = &vu->rings[i];
    if (r->started) {
        LOG(vu, VIO_LOG_WARN, "SET_VRING_BASE: queue %u is started (GET_VRING_BASE first); "
            "refused", i);
        return -EBUSY;
    }
    r->base = (uint16_t)m->p.state.num;
    return 0;
}

static int h_vring_addr(struct vio_vhost_user *vu, struct vu_msg *m)
{
    const struct vu_addr *a = &m->p.addr;
    unsigned i = a->index;
    struct vu_ring *r = &vu->rings[i];
    if (r->started) {
        if (a->desc != r->addr.desc || a->avail != r->addr.avail || a->used != r->addr.used) {
            LOG(vu, VIO_LOG_WARN, "SET_VRING_ADDR: queue %u is started; moving its rings is "
                "refused (GET_VRING_BASE first)", i);
            return -EBUSY;
        }
        /* Same rings, new logging flags (QEMU toggles VHOST_VRING_F_LOG for migration). */
        vu_pause(vu);
        r->addr = *a;
        ring_apply_log(vu, i);
        return 0;
    }
    r->addr = *a;
    r->addr_set = true;
    r->failed = false;
    ring_try_start(vu, i);
    return 0;
}

static int h_get_vring_base(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = m->p.state.index;
    struct vu_ring *r = &vu->rings[i];
    vu_pause(vu);
    bool was = r->started;
    ring_stop(vu, i, true);
    struct vu_state st = {.index = i, .num = r->base};
    if (was)
        LOG(vu, VIO_LOG_INFO, "queue %u stopped at %u", i, r->base);
    send_reply(vu, m, &st, sizeof(st), -1);
    return 0;
}

/* True when @p fd is an eventfd; @p what receives what it is otherwise (for the log). */
static bool fd_is_eventfd(int fd, char *what, size_t cap)
{
    char path[40];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, what, cap - 1);
    if (n >= 0) {
        what[n] = '\0';
        return strcmp(what, "anon_inode:[eventfd]") == 0;
    }
    /* no /proc: an eventfd is an anonymous inode, with no file type bits */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(what, cap, "fstat failed: %s", strerror(errno));
        return false;
    }
    snprintf(what, cap, "file mode 0%o", (unsigned)st.st_mode);
    return (st.st_mode & S_IFMT) == 0;
}

/* Paused. The front-end handed ring @p i a kick or call fd that is not an eventfd (a regular
 * file or a socket at EOF would be readable for ever and make the kick watch spin; a pipe
 * could block the writer or raise SIGPIPE): stop the ring and fail it. */
static int ring_refuse_fd(struct vio_vhost_user *vu, unsigned i, const char *req,
                          const char *what)
{
    if (vu->rings[i].started)
        ring_stop(vu, i, false);
    ring_fail(vu, i, "%s: the fd is not an eventfd (%s); refused", req, what);
    return -EPROTO;
}

static int h_vring_kick(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = (unsigned)(m->p.u64 & VU_VRING_IDX_MASK);
    bool nofd = m->p.u64 & VU_VRING_NOFD;
    struct vu_ring *r = &vu->rings[i];
    vu_pause(vu);
    if (r->kick_fd >= 0) {
        watch(vu, r->kick_fd, 0, VIO_VU_WATCH_KICK(i));
        xclose(&r->kick_fd);
    }
    if (!nofd) {
        char what[64];
        int fd = take_fd(m, 0);
        if (!fd_is_eventfd(fd, what, sizeof(what))) {
            close(fd);
            r->kick_set = false;
            return ring_refuse_fd(vu, i, "SET_VRING_KICK", what);
        }
        r->kick_fd = fd;
        /* Drained from the data path: never block there. */
        set_nonblock(r->kick_fd);
        /* A ring that failed or broke is not watched (it would only cost wake-ups); its next
         * start watches the fd. */
        if (!r->failed && !(r->q && vio_queue_is_broken(r->q)))
            ring_watch_kick(vu, i, true);
    }
    r->kick_set = true;
    if (r->started) {
        if (r->offloaded)
            ring_offload_refresh(vu, i); /* the new fd goes to whoever runs the ring */
        else if (r->running && r->kick_fd >= 0)
            eventfd_signal(r->kick_fd);
        return 0;
    }
    r->failed = false;
    ring_try_start(vu, i);
    return 0;
}

static int h_vring_call(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = (unsigned)(m->p.u64 & VU_VRING_IDX_MASK);
    bool nofd = m->p.u64 & VU_VRING_NOFD;
    struct vu_ring *r = &vu->rings[i];
    int fd = nofd ? -1 : take_fd(m, 0);
    vu_pause(vu);
    char what[64];
    if (fd >= 0 && !fd_is_eventfd(fd, what, sizeof(what))) {
        close(fd);
        int old = atomic_exchange_explicit(&r->call_fd, -1, memory_order_acq_rel);
        xclose(&old);
        return ring_refuse_fd(vu, i, "SET_VRING_CALL", what);
    }
    /* Never block on the front-end's fd: an eventfd whose counter is full would block the
     * write (the control thread's, or a worker's and then every pause). A full counter means
     * an interrupt is pending anyway, so the failed write loses nothing. */
    if (fd >= 0)
        set_nonblock(fd);
    int old = atomic_exchange_explicit(&r->call_fd, fd, memory_order_acq_rel);
    xclose(&old);
    /* An interrupt raised while the fd changed must not be lost (QEMU swaps call fds at
     * run time when the guest masks a vector); a spurious one is harmless. */
    if (fd >= 0 && r->started)
        eventfd_signal(fd);
    ring_offload_refresh(vu, i);
    return 0;
}

static int h_vring_err(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = (unsigned)(m->p.u64 & VU_VRING_IDX_MASK);
    bool nofd = m->p.u64 & VU_VRING_NOFD;
    int fd = nofd ? -1 : take_fd(m, 0);
    if (fd >= 0)
        set_nonblock(fd); /* signalled from the control thread and workers: never block */
    vu_pause(vu);
    int old = atomic_exchange_explicit(&vu->rings[i].err_fd, fd, memory_order_acq_rel);
    xclose(&old);
    ring_offload_refresh(vu, i);
    return 0;
}

static int h_vring_enable(struct vio_vhost_user *vu, struct vu_msg *m)
{
    unsigned i = m->p.state.index;
    vu_pause(vu);
    vu->rings[i].enabled = m->p.state.num != 0;
    ring_update_running(vu, i);
    return 0;
}

static int h_reset_owner(struct vio_vhost_user *vu, struct vu_msg *m)
{
    (void)m;
    /* deprecated; the spec recommends treating it as "disable all rings" */
    vu_reset(vu, VU_SCOPE_RINGS);
    return 0;
}

static int h_reset_device(struct vio_vhost_user *vu, struct vu_msg *m)
{
    (void)m;
    vu_reset(vu, VU_SCOPE_DEVICE);
    LOG(vu, VIO_LOG_INFO, "device reset");
    return 0;
}

/* The status machine's validate hook: FEATURES_OK (or a DRIVER_OK without it) is accepted
 * only for the virtio features the last SET_FEATURES gave and the device took. */
static int status_validate(void *opaque, uint64_t features)
{
    const struct vio_vhost_user *vu = opaque;
    return vu->features_set && vu->dev_features_ok && virtio_features(vu) == features ? 0
                                                                                       : -ENOTSUP;
}

static int h_set_status(struct vio_vhost_user *vu, struct vu_msg *m)
{
    uint8_t want = (uint8_t)m->p.u64;
    uint8_t before = vio_status_read(vu->st);
    int rc = vio_status_write(vu->st, want, NULL);
    uint8_t after = vio_status_read(vu->st);
    if (rc == -ENOTSUP)
        /* virtio: the driver re-reads FEATURES_OK to learn the device refused */
        LOG(vu, VIO_LOG_WARN, "SET_STATUS 0x%x: FEATURES_OK / DRIVER_OK without virtio features "
            "the device accepted; left clear (status 0x%x)", want, after);
    else if (rc < 0)
        LOG(vu, VIO_LOG_WARN, "SET_STATUS 0x%x after 0x%x: not a status change a driver may make "
            "(a bit cleared without a reset, NEEDS_RESET or a reserved bit set, or bits added "
            "after FAILED); ignored", want, before);
    unsigned act = vio_status_actions(before, after);
    if (act & VIO_ACT_RESET) {
        /* The driver reset the device: rings are normally stopped already. */
        vu_reset(vu, VU_SCOPE_STATUS);
        LOG(vu, VIO_LOG_INFO, "status 0: device reset");
    } else if (act & VIO_ACT_STOP) {
        LOG(vu, VIO_LOG_INFO, "status 0x%x: the device is stopped (FAILED or NEEDS_RESET)", after);
    }
    if (act & VIO_ACT_START)
        LOG(vu, VIO_LOG_INFO, "status 0x%x: driver ready", after);
    return rc;
}

static int h_get_config(struct vio_vhost_user *vu, struct vu_msg *m)
{
    struct vu_config c;
    memset(&c, 0, sizeof(c));
    c.offset = m->p.config.offset;
    c.size = m->p.config.size;
    c.flags = m->p.config.flags;
    int rc = vio_device_config_read(vu->dev, c.offset, c.payload, c.size);
    if (rc < 0) {
        /* spec: a zero-length reply payload reports the error */
        LOG(vu, VIO_LOG_WARN, "GET_CONFIG: %u bytes at %u refused (%s)", c.size, c.offset,
            strerror(-rc));
        send_reply(vu, m, NULL, 0, -1);
        return 0;
    }
    send_reply(vu, m, &c, 12u + c.size, -1);
    return 0;
}

static int h_set_config(struct vio_vhost_user *vu, struct vu_msg *m)
{
    const struct vu_config *c = &m->p.config;
    int rc = vio_device_config_write(vu->dev, c->offset, c->payload, c->size);
    if (rc < 0)
        LOG(vu, VIO_LOG_WARN, "SET_CONFIG: %u bytes at %u refused (%s)", c->size, c->offset,
            strerror(-rc));
    return rc;
}

static int h_device_request(struct vio_vhost_user *vu, enum vio_vhost_user_request req,
                            uint64_t v)
{
    if (!vu->device_request)
        return 0;
    return vu->device_request(vu->opaque, req, v);
}

/* Thin handlers: the requests whose whole work is a line or two. */

static int h_reply_u64(struct vio_vhost_user *vu, struct vu_msg *m, uint64_t v)
{
    return reply_u64(vu, m, v) < 0 ? -EIO : 0;
}

static int h_get_features(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_reply_u64(vu, m, offered_features(vu));
}

static int h_get_protocol_features(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_reply_u64(vu, m, vu->pf_offered);
}

static int h_get_queue_num(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_reply_u64(vu, m, vu->queue_num);
}

static int h_get_max_mem_slots(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_reply_u64(vu, m, vu->max_slots);
}

static int h_get_status(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_reply_u64(vu, m, vio_status_read(vu->st));
}

static int h_set_owner(struct vio_vhost_user *vu, struct vu_msg *m)
{
    (void)m;
    vu->owner = true;
    return 0;
}

static int h_set_log_fd(struct vio_vhost_user *vu, struct vu_msg *m)
{
    xclose(&vu->log_fd);
    vu->log_fd = take_fd(m, 0);
    return 0;
}

static int h_set_backend_req_fd(struct vio_vhost_user *vu, struct vu_msg *m)
{
    pthread_mutex_lock(&vu->backend_lock);
    xclose(&vu->backend_fd);
    vu->backend_fd = take_fd(m, 0);
    pthread_mutex_unlock(&vu->backend_lock);
    return 0;
}

static int h_send_rarp(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_device_request(vu, VIO_VU_REQ_SEND_RARP, m->p.u64);
}

static int h_net_set_mtu(struct vio_vhost_user *vu, struct vu_msg *m)
{
    return h_device_request(vu, VIO_VU_REQ_NET_SET_MTU, m->p.u64);
}

/* ------------------------------------------------------------------------ */
/* The request table                                                         */

/*
 * One row per front-end request we implement (spec "Front-end message types"): name, size
 * rule (payload kind), fd allowance, reply rule, protocol feature and whether it gates the
 * request, what the one fd is, the request's own value rules, and the handler. Nothing about
 * a request lives anywhere else: vu_msg_validate() applies the row, vu_dispatch_msg() calls
 * the handler and sends the reply the row promises, and the protocol features offered are
 * the ones the rows name (plus the dispatcher's REPLY_ACK). A request without a row is
 * refused (and ends the session).
 *
 * Two rows name a protocol feature without being gated by it, because front-ends send them
 * whatever was negotiated and they cost nothing to answer: GET_QUEUE_NUM (MQ) and
 * SET_LOG_BASE (LOG_SHMFD, which only decides whether the front-end waits for a reply).
 */
#define REQ(r, kind_, fds_, reply_, pf_, gated_, fd_, check_, handle_)                            \
    [VU_##r] = {.name = #r, .kind = VU_P_##kind_, .fds = VU_FD_##fds_, .reply = VU_REPLY_##reply_, \
                .pf = VU_PF_##pf_, .gated = (gated_), .fd_name = (fd_), .check = (check_),         \
                .handle = (handle_)}

static const struct vu_req_info req_table[VU_REQUEST_MAX] = {
    /*  request                size        fds         reply   protocol feature     gated   fd          value rules            handler */
    REQ(GET_FEATURES,          NONE,       NONE,       BODY,   NONE,                false,  NULL,       NULL,                  h_get_features),
    REQ(SET_FEATURES,          U64,        NONE,       ACK,    NONE,                false,  NULL,       NULL,                  h_set_features),
    REQ(SET_OWNER,             NONE,       NONE,       ACK,    NONE,                false,  NULL,       NULL,                  h_set_owner),
    REQ(RESET_OWNER,           NONE,       NONE,       ACK,    NONE,                false,  NULL,       NULL,                  h_reset_owner),
    REQ(SET_MEM_TABLE,         MEM,        PER_REGION, ACK,    NONE,                false,  NULL,       NULL,                  h_set_mem_table),
    REQ(SET_LOG_BASE,          LOG,        ONE,        PF_ACK, LOG_SHMFD,           false,  "log",      NULL,                  h_set_log_base),
    REQ(SET_LOG_FD,            NONE,       ONE,        ACK,    NONE,                false,  "log",      NULL,                  h_set_log_fd),
    REQ(SET_VRING_NUM,         STATE,      NONE,       ACK,    NONE,                false,  NULL,       vu_check_vring_num,    h_vring_num),
    REQ(SET_VRING_ADDR,        ADDR,       NONE,       ACK,    NONE,                false,  NULL,       NULL,                  h_vring_addr),
    REQ(SET_VRING_BASE,        STATE,      NONE,       ACK,    NONE,                false,  NULL,       vu_check_vring_base,   h_vring_base),
    REQ(GET_VRING_BASE,        STATE,      NONE,       BODY,   NONE,                false,  NULL,       NULL,                  h_get_vring_base),
    REQ(SET_VRING_KICK,        VRING_FD,   VRING,      ACK,    NONE,                false,  NULL,       NULL,                  h_vring_kick),
    REQ(SET_VRING_CALL,        VRING_FD,   VRING,      ACK,    NONE,                false,  NULL,       NULL,                  h_vring_call),
    REQ(SET_VRING_ERR,         VRING_FD,   VRING,      ACK,    NONE,                false,  NULL,       NULL,                  h_vring_err),
    REQ(GET_PROTOCOL_FEATURES, NONE,       NONE,       BODY,   NONE,                false,  NULL,       NULL,                  h_get_protocol_features),
    REQ(SET_PROTOCOL_FEATURES, U64,        NONE,       ACK,    NONE,                false,  NULL,       NULL,                  h_set_protocol_features),
    REQ(GET_QUEUE_NUM,         NONE,       NONE,       BODY,   MQ,                  false,  NULL,       NULL,                  h_get_queue_num),
    REQ(SET_VRING_ENABLE,      STATE,      NONE,       ACK,    NONE,                false,  NULL,       vu_check_vring_enable, h_vring_enable),
    REQ(SEND_RARP,             U64,        NONE,       ACK,    RARP,                true,   NULL,       NULL,                  h_send_rarp),
    REQ(NET_SET_MTU,           U64,        NONE,       ACK,    MTU,                 true,   NULL,       vu_check_mtu,          h_net_set_mtu),
    REQ(SET_BACKEND_REQ_FD,    NONE,       ONE,        ACK,    BACKEND_REQ,         true,   "channel",  NULL,                  h_set_backend_req_fd),
    REQ(GET_CONFIG,            CONFIG,     NONE,       BODY,   CONFIG,              true,   NULL,       NULL,                  h_get_config),
    REQ(SET_CONFIG,            CONFIG,     NONE,       ACK,    CONFIG,              true,   NULL,       NULL,                  h_set_config),
    REQ(GET_INFLIGHT_FD,       INFLIGHT,   NONE,       BODY,   INFLIGHT_SHMFD,      true,   NULL,       NULL,                  h_get_inflight_fd),
    REQ(SET_INFLIGHT_FD,       INFLIGHT,   ONE,        ACK,    INFLIGHT_SHMFD,      true,   "inflight", vu_check_set_inflight, h_set_inflight_fd),
    REQ(RESET_DEVICE,          NONE,       NONE,       ACK,    RESET_DEVICE,        true,   NULL,       NULL,                  h_reset_device),
    REQ(GET_MAX_MEM_SLOTS,     NONE,       NONE,       BODY,   CONFIGURE_MEM_SLOTS, true,   NULL,       NULL,                  h_get_max_mem_slots),
    REQ(ADD_MEM_REG,           MEM_SINGLE, ONE,        ACK,    CONFIGURE_MEM_SLOTS, true,   "region",   NULL,                  h_add_mem_reg),
    REQ(REM_MEM_REG,           MEM_SINGLE, OPTIONAL,   ACK,    CONFIGURE_MEM_SLOTS, true,   NULL,       NULL,                  h_rem_mem_reg),
    REQ(SET_STATUS,            U64,        NONE,       ACK,    STATUS,              true,   NULL,       vu_check_status,       h_set_status),
    REQ(GET_STATUS,            NONE,       NONE,       BODY,   STATUS,              true,   NULL,       NULL,                  h_get_status),
};

#undef REQ

const struct vu_req_info *vu_req_info(uint32_t req)
{
    if (req >= VU_REQUEST_MAX || !req_table[req].name)
        return NULL;
    return &req_table[req];
}

uint64_t vu_protocol_features(void)
{
    uint64_t pf = VU_PF_DISPATCH;
    for (unsigned r = 0; r < VU_REQUEST_MAX; r++)
        if (req_table[r].name && req_table[r].pf >= 0)
            pf |= 1ull << req_table[r].pf;
    return pf;
}

void vu_validate_ctx(const struct vio_vhost_user *vu, struct vu_validate_ctx *ctx)
{
    ctx->num_queues = vu->nrings;
    ctx->max_queue_size = vu->max_qsize;
    ctx->protocol_features = vu->pfeatures;
}

unsigned vu_mapped_regions(const struct vio_vhost_user *vu)
{
    return vu->nmaps;
}

int vu_dispatch_msg(struct vio_vhost_user *vu, struct vu_msg *m)
{
    if (vu->state != VU_CONNECTED) {
        vu_msg_close_fds(m);
        return -ENOTCONN;
    }
    struct vu_validate_ctx ctx;
    char why[192], nb[32];
    vu_validate_ctx(vu, &ctx);
    int rc = vu_msg_validate(m, &ctx, why, sizeof(why));
    if (rc) {
        LOG(vu, VIO_LOG_ERROR, "%s; dropping the connection", why); /* why names the request */
        vu_msg_close_fds(m);
        vu_drop(vu);
        return -EPROTO;
    }
    LOG(vu, VIO_LOG_DEBUG, "%s (%u bytes, %u fds%s)", vu_req_name(m->hdr.request, nb, sizeof(nb)),
        m->hdr.size, m->nfds,
        (m->hdr.flags & VU_FLAG_NEED_REPLY) ? ", needs reply" : "");
    const struct vu_req_info *ri = vu_req_info(m->hdr.request); /* non-NULL: validated */
    vu->drop = false;
    vu->replied = false;
    rc = ri->handle(vu, m);
    vu_msg_close_fds(m);
    /* The row's reply rule (with the protocol features as the handler left them: a
     * SET_PROTOCOL_FEATURES that turns REPLY_ACK on is acknowledged). */
    if (!vu->drop && !vu->replied) {
        bool status_reply =
            ((m->hdr.flags & VU_FLAG_NEED_REPLY) && has_bit(vu->pfeatures, VU_PF_REPLY_ACK)) ||
            (ri->reply == VU_REPLY_PF_ACK && has_bit(vu->pfeatures, (unsigned)ri->pf));
        if (ri->reply == VU_REPLY_BODY) {
            /* the front-end would wait for ever */
            LOG(vu, VIO_LOG_ERROR, "%s: no reply was sent (%s); dropping the connection",
                ri->name, rc < 0 ? strerror(-rc) : "transport bug");
            vu->drop = true;
        } else if (status_reply) {
            reply_u64(vu, m, rc != 0);
        }
    }
    vu_resume(vu);
    if (vu->drop) {
        vu_drop(vu);
        return -EPROTO;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

/* The configuration as first published ended with device_request: a caller built against it
 * passes that size, and the fields after it take their defaults. */
#define VU_CONFIG_MIN_SIZE offsetof(struct vio_vhost_user_config, socket_mode)

/* A field added after the first published configuration, or 0 (its default). */
#define CFG_FIELD(cfg, f)                                                                         \
    ((cfg)->struct_size >= offsetof(struct vio_vhost_user_config, f) + sizeof((cfg)->f) ? (cfg)->f \
                                                                                          : 0)

int vio_vhost_user_new(const struct vio_vhost_user_config *cfg, struct vio_vhost_user **out)
{
    int rc;
    bool cfg_ok = cfg && cfg->struct_size >= VU_CONFIG_MIN_SIZE;
    uint32_t mode = cfg_ok ? CFG_FIELD(cfg, socket_mode) : 0;
    if (!cfg_ok || !out || !cfg->dev || !cfg->dev->ops || (mode & ~0777u) ||
        (!cfg->use_fd && (!cfg->socket_path || !cfg->socket_path[0]))) {
        if (cfg_ok && cfg->use_fd && cfg->fd >= 0)
            close(cfg->fd);
        return -EINVAL;
    }
    struct vio_vhost_user *vu = calloc(1, sizeof(*vu));
    if (!vu) {
        if (cfg->use_fd && cfg->fd >= 0)
            close(cfg->fd);
        return -ENOMEM;
    }
    vu->listen_fd = vu->conn_fd = vu->log_fd = vu->backend_fd = -1;
    pthread_mutex_init(&vu->backend_lock, NULL);
    vu->client = cfg->client;
    vu->use_fd = cfg->use_fd;
    vu->reconnect_ms = cfg->reconnect_ms;
    vu->socket_mode = mode ? mode : VU_SOCKET_MODE_DEFAULT;
    vu->dev = cfg->dev;
    /* largest power of two not above the limit */
    unsigned mq = cfg->max_queue_size ? cfg->max_queue_size : VIO_QUEUE_MAX_SIZE;
    if (mq > VIO_QUEUE_MAX_SIZE)
        mq = VIO_QUEUE_MAX_SIZE;
    while (mq & (mq - 1))
        mq &= mq - 1;
    vu->max_qsize = (uint16_t)mq;
    vu->max_slots = cfg->max_mem_slots ? cfg->max_mem_slots : VIO_MEM_DEFAULT_CAPACITY;
    vu->pf_offered = vu_protocol_features() & ~cfg->protocol_features_disable;
    vu->log = cfg->log;
    vu->log_opaque = cfg->log_opaque;
    vu->opaque = cfg->opaque;
    vu->pause = cfg->pause;
    vu->resume = cfg->resume;
    vu->set_watch = cfg->set_watch;
    vu->session = cfg->session;
    vu->device_request = cfg->device_request;
    /* Bound first: a vhost-user front-end keeps the control queue (QEMU, DPDK), and the device
     * model's offer and queue count follow from that. */
    struct vio_device_hooks h = {.struct_size = sizeof(h), .opaque = vu,
                                 .flags = VIO_DEVICE_BIND_FRONTEND_CTRL,
                                 .notify_queue = hook_notify,
                                 .config_changed = hook_config_changed,
                                 .needs_reset = hook_needs_reset,
                                 .set_watch = hook_set_watch,
                                 .mem_regions = hook_mem_regions,
                                 .queue_offload = hook_queue_offload};
    rc = vio_device_bind(vu->dev, &h);
    if (rc < 0 && rc != -ENOTSUP)
        goto fail;
    unsigned nq = vio_device_num_queues(vu->dev);
    if (nq == 0) {
        rc = -EINVAL;
        goto fail_unbind;
    }
    vu->queue_num = cfg->queue_num ? cfg->queue_num : vio_device_frontend_queue_num(vu->dev);
    struct vio_status_config sc = {.struct_size = sizeof(sc),
                                   .device_features = offered_features(vu) & ~VU_VHOST_BITS,
                                   .allow_legacy = true, /* the front-end and the device decide */
                                   .validate = status_validate, .validate_opaque = vu,
                                   .flags = VIO_STATUS_RELAYED};
    rc = vio_status_new(&sc, &vu->st);
    if (rc < 0)
        goto fail_unbind;
    vu->nrings = nq < VU_MAX_RINGS ? nq : VU_MAX_RINGS;
    vu->rings = calloc(vu->nrings, sizeof(*vu->rings));
    vu->maps = calloc(vu->max_slots, sizeof(*vu->maps));
    if (!cfg->use_fd)
        vu->path = strdup(cfg->socket_path);
    if (!vu->rings || !vu->maps || (!cfg->use_fd && !vu->path)) {
        rc = -ENOMEM;
        goto fail_unbind;
    }
    for (unsigned i = 0; i < vu->nrings; i++) {
        vu->rings[i].kick_fd = -1;
        atomic_init(&vu->rings[i].call_fd, -1);
        atomic_init(&vu->rings[i].err_fd, -1);
    }
    if (cfg->use_fd) {
        if (cfg->fd < 0) {
            rc = -EINVAL;
            goto fail_unbind;
        }
        conn_setup(vu, cfg->fd);
    } else if (cfg->client) {
        rc = try_connect(vu);
        if (rc < 0) {
            if (!vu->reconnect_ms)
                goto fail_unbind;
            LOG(vu, VIO_LOG_INFO, "cannot connect to %s (%s); retrying every %u ms", vu->path,
                strerror(-rc), vu->reconnect_ms);
            vu->state = VU_RETRY;
            vu->retry_at_ms = now_ms() + vu->reconnect_ms;
        }
    } else {
        rc = start_listen(vu);
        if (rc < 0)
            goto fail_unbind;
        LOG(vu, VIO_LOG_INFO, "listening on %s (mode 0%o)", vu->path, vu->socket_mode);
    }
    *out = vu;
    return 0;

fail_unbind:
    vio_device_bind(vu->dev, NULL);
fail:
    if (cfg->use_fd && cfg->fd >= 0 && vu->conn_fd != cfg->fd)
        close(cfg->fd);
    pthread_mutex_destroy(&vu->backend_lock);
    vio_status_free(vu->st);
    free(vu->rings);
    free(vu->maps);
    free(vu->path);
    free(vu);
    return rc;
}

void vio_vhost_user_free(struct vio_vhost_user *vu)
{
    if (!vu)
        return;
    if (vu->state == VU_CONNECTED) {
        session_teardown(vu);
        conn_close(vu);
        if (vu->session)
            vu->session(vu->opaque, false);
    } else {
        session_teardown(vu); /* nothing mapped, but reset the device to power-on state */
    }
    if (vu->listen_fd >= 0) {
        watch(vu, vu->listen_fd, 0, VIO_VU_WATCH_CONTROL);
        xclose(&vu->listen_fd);
        path_remove(vu);
    }
    vio_device_bind(vu->dev, NULL);
    pthread_mutex_destroy(&vu->backend_lock);
    vio_status_free(vu->st);
    free(vu->rings);
    free(vu->maps);
    free(vu->path);
    free(vu);
}

int vio_vhost_user_fd(const struct vio_vhost_user *vu)
{
    if (!vu)
        return -1;
    switch (vu->state) {
    case VU_LISTENING:
        return vu->listen_fd;
    case VU_CONNECTED:
        return vu->conn_fd;
    default:
        return -1;
    }
}

int vio_vhost_user_handle(struct vio_vhost_user *vu)
{
    if (!vu)
        return -EINVAL;
    if (vu->state == VU_LISTENING) {
        int s = accept4(vu->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                    errno == ECONNABORTED)
                       ? 0
                       : -errno;
        conn_setup(vu, s);
        return 0;
    }
    if (vu->state != VU_CONNECTED)
        return -ENOTCONN;
    if (vu_poisoned(vu)) /* the guard shut the socket down to wake us */
        return -EFAULT;
    int n = 0;
    while (n < VU_MSG_BUDGET && vu->state == VU_CONNECTED) {
        struct vu_msg m;
        int rc = vu_msg_recv(vu->conn_fd, &m);
        if (rc == -EAGAIN)
            break;
        if (rc < 0 && vu_poisoned(vu))
            return -EFAULT;
        if (rc < 0) {
            if (rc == -ECONNRESET)
                LOG(vu, VIO_LOG_INFO, "front-end closed the connection");
            else
                LOG(vu, VIO_LOG_ERROR, "receive failed (%s): truncated message, oversized "
                    "payload or more fds than any request carries; dropping the connection",
                    strerror(-rc));
            vu_drop(vu);
            return rc;
        }
        vu->heard = true;
        rc = vu_dispatch_msg(vu, &m);
        if (rc < 0)
            return rc;
        if (vu_poisoned(vu)) /* a fault while the message was handled */
            return -EFAULT;
        n++;
    }
    return n;
}

int vio_vhost_user_kick(struct vio_vhost_user *vu, unsigned qidx)
{
    if (!vu || qidx >= vu->nrings)
        return -ERANGE;
    struct vu_ring *r = &vu->rings[qidx];
    if (r->offloaded)
        return 0; /* its kicks are for whoever runs it: leave the eventfd alone */
    if (r->kick_fd >= 0) {
        uint64_t v;
        ssize_t n = read(r->kick_fd, &v, sizeof(v)); /* non-blocking; resets the counter */
        (void)n;
    }
    if (!r->running)
        return 0;
    return vio_device_queue_notify(vu->dev, qidx);
}

int vio_vhost_user_notify(struct vio_vhost_user *vu, unsigned qidx)
{
    if (!vu || qidx >= vu->nrings)
        return -ERANGE;
    int fd = atomic_load_explicit(&vu->rings[qidx].call_fd, memory_order_acquire);
    if (fd < 0)
        return -ENOENT;
    eventfd_signal(fd);
    return 0;
}

int vio_vhost_user_dispatch(struct vio_vhost_user *vu, uint32_t id, unsigned revents)
{
    if (!vu)
        return -EINVAL;
    if (id == VIO_VU_WATCH_CONTROL)
        return vio_vhost_user_handle(vu);
    if (VIO_VU_WATCH_IS_KICK(id))
        return vio_vhost_user_kick(vu, VIO_VU_WATCH_QUEUE(id));
    return vio_device_handle(vu->dev, id, revents);
}

int vio_vhost_user_watches(const struct vio_vhost_user *vu, struct vio_device_watch *out,
                           unsigned cap)
{
    if (!vu || (!out && cap))
        return -EINVAL;
    unsigned n = 0;
    int fd = vio_vhost_user_fd(vu);
    if (fd >= 0) {
        if (n < cap)
            out[n] = (struct vio_device_watch){.fd = fd, .events = VIO_WATCH_IN,
                                               .id = VIO_VU_WATCH_CONTROL};
        n++;
    }
    for (unsigned i = 0; i < vu->nrings; i++) {
        const struct vu_ring *r = &vu->rings[i];
        /* a failed or broken ring is not watched (its kicks would only cost wake-ups) */
        if (r->kick_fd < 0 || r->failed || r->offloaded || (r->q && vio_queue_is_broken(r->q)))
            continue;
        if (n < cap)
            out[n] = (struct vio_device_watch){.fd = vu->rings[i].kick_fd,
                                               .events = VIO_WATCH_IN, .id = VIO_VU_WATCH_KICK(i)};
        n++;
    }
    int d = vio_device_watches(vu->dev, n < cap ? out + n : NULL, n < cap ? cap - n : 0);
    if (d > 0)
        n += (unsigned)d;
    return (int)n;
}

int vio_vhost_user_timeout_ms(const struct vio_vhost_user *vu)
{
    if (!vu)
        return -1;
    uint64_t due;
    if (vu->state == VU_RETRY)
        due = vu->retry_at_ms;
    else if (hello_pending(vu))
        due = vu->conn_at_ms + VU_HELLO_TIMEOUT_MS;
    else
        return -1;
    uint64_t now = now_ms();
    if (now >= due)
        return 0;
    uint64_t d = due - now;
    return d > INT32_MAX ? INT32_MAX : (int)d;
}

int vio_vhost_user_tick(struct vio_vhost_user *vu)
{
    if (!vu)
        return 0;
    if (vu_poisoned(vu))
        return 0;
    if (hello_pending(vu) && now_ms() >= vu->conn_at_ms + VU_HELLO_TIMEOUT_MS) {
        /* One session at a time: a front-end that connects and says nothing would keep
         * every other one waiting in the listen backlog. */
        LOG(vu, VIO_LOG_WARN, "front-end sent no message within %u ms of connecting; dropping "
            "it so that the next one can connect", VU_HELLO_TIMEOUT_MS);
        vu_drop(vu);
        return 0;
    }
    if (vu->state != VU_RETRY || now_ms() < vu->retry_at_ms)
        return 0;
    int rc = try_connect(vu);
    if (rc == 0)
        return 1;
    LOG(vu, VIO_LOG_DEBUG, "reconnect to %s failed (%s)", vu->path, strerror(-rc));
    vu->retry_at_ms = now_ms() + vu->reconnect_ms;
    return 0;
}

bool vio_vhost_user_connected(const struct vio_vhost_user *vu)
{
    return vu && vu->state == VU_CONNECTED;
}

uint64_t vio_vhost_user_features(const struct vio_vhost_user *vu)
{
    return vu && vu->features_set ? virtio_features(vu) : 0;
}

uint64_t vio_vhost_user_protocol_features(const struct vio_vhost_user *vu)
{
    return vu ? vu->pfeatures : 0;
}

uint8_t vio_vhost_user_status(const struct vio_vhost_user *vu)
{
    return vu ? vio_status_read(vu->st) : 0;
}

int vio_vhost_user_queue_state(const struct vio_vhost_user *vu, unsigned qidx,
                               struct vio_vhost_user_queue_state *out)
{
    if (!vu || !out)
        return -EINVAL;
    if (qidx >= vu->nrings)
        return -ERANGE;
    const struct vu_ring *r = &vu->rings[qidx];
    memset(out, 0, sizeof(*out));
    out->started = r->started;
    out->enabled = r->enabled;
    out->running = r->running;
    out->polling = r->kick_set && r->kick_fd < 0;
    out->failed = r->failed || (r->q && vio_queue_is_broken(r->q));
    out->offloaded = r->offloaded;
    out->kick_fd = r->kick_fd;
    out->size = (uint16_t)r->num;
    out->last_avail = r->q && r->started ? vio_queue_get_last_avail(r->q) : r->base;
    return 0;
}

int vio_vhost_user_ring_state(const struct vio_vhost_user *vu, unsigned qidx,
                              struct vio_queue_ring_state *out)
{
    if (!vu || !out)
        return -EINVAL;
    if (qidx >= vu->nrings)
        return -ERANGE;
    const struct vu_ring *r = &vu->rings[qidx];
    if (!r->q || !r->started) {
        memset(out, 0, sizeof(*out));
        return -ENODEV;
    }
    return vio_queue_get_ring_state(r->q, out);
}
