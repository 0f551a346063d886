/* SPDX-License-Identifier: MIT */
/*
 * libvirtio-ev: wires the fds of libvirtio objects to a libev loop.
 *
 * The only file of the project that includes <ev.h>. Each watcher embeds its ev_io first,
 * so libev's callback finds the enclosing record from the watcher pointer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "virtio/ev.h"

/* vio_watch_events are poll() values, libev has its own: map explicitly. */
_Static_assert(VIO_WATCH_IN != VIO_WATCH_OUT, "distinct watch events");

static int to_ev(unsigned events)
{
    return ((events & VIO_WATCH_IN) ? EV_READ : 0) | ((events & VIO_WATCH_OUT) ? EV_WRITE : 0);
}

static unsigned from_ev(int revents)
{
    unsigned r = 0;
    if (revents & EV_READ)
        r |= VIO_WATCH_IN;
    if (revents & EV_WRITE)
        r |= VIO_WATCH_OUT;
    if (revents & EV_ERROR)
        r |= VIO_WATCH_ERR;
    return r;
}

static void logf_(vio_log_fn fn, void *opaque, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void logf_(vio_log_fn fn, void *opaque, int level, const char *fmt, ...)
{
    if (!fn)
        return;
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fn(opaque, level, "ev", buf);
}

/* ------------------------------------------------------------------------ */
/* Device attachment                                                         */

struct ev_watch_rec {
    ev_io io;              /* first: the callback casts back */
    struct vio_ev_device *owner;
    uint32_t id;
    bool used;
};

struct ev_kick_rec {
    ev_io io;
    struct vio_ev_device *owner;
    unsigned qidx;
    bool used;
    bool err_logged;
};

struct vio_ev_device {
    struct ev_loop *loop;
    struct vio_device *dev;
    struct vio_device_hooks user; /* the caller's hooks, set_watch as the caller had it */
    bool has_user;                /* the caller gave hooks: they stay bound after free */
    bool bound;                   /* our binding is in place */
    vio_log_fn log;
    void *log_opaque;
    unsigned nwatch, active;
    struct ev_watch_rec *watch;
    unsigned nkick;
    struct ev_kick_rec *kick;
    bool full_logged;
};

static void watch_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct ev_watch_rec *r = (struct ev_watch_rec *)w;
    int rc = vio_device_handle(r->owner->dev, r->id, from_ev(revents));
    if (rc < 0 && rc != -EAGAIN)
        logf_(r->owner->log, r->owner->log_opaque, VIO_LOG_DEBUG, "watch %u: handle returned %d",
              r->id, rc);
}

static struct ev_watch_rec *find_watch(struct vio_ev_device *e, uint32_t id, bool alloc)
{
    struct ev_watch_rec *fresh = NULL;
    for (unsigned i = 0; i < e->nwatch; i++) {
        if (e->watch[i].used && e->watch[i].id == id)
            return &e->watch[i];
        if (!e->watch[i].used && !fresh)
            fresh = &e->watch[i];
    }
    if (!alloc || !fresh)
        return NULL;
    fresh->used = true;
    fresh->id = id;
    fresh->owner = e;
    ev_io_init(&fresh->io, watch_cb, -1, 0);
    return fresh;
}

/* set_watch hook: (re)start or stop the watcher of @p id. Never allocates. */
static int apply_watch(struct vio_ev_device *e, int fd, unsigned events, uint32_t id)
{
    struct ev_watch_rec *r = find_watch(e, id, events != 0);
    if (!r) {
        if (!events)
            return 0;
        if (!e->full_logged) {
            e->full_logged = true;
            logf_(e->log, e->log_opaque, VIO_LOG_ERROR,
                  "watch table full (%u entries): fd %d (id %u) is not watched", e->nwatch, fd, id);
        }
        return -ENOSPC;
    }
    int want = to_ev(events);
    if (ev_is_active(&r->io)) {
        if (events && r->io.fd == fd && (r->io.events & (EV_READ | EV_WRITE)) == want)
            return 0;
        ev_io_stop(e->loop, &r->io);
        e->active--;
    }
    if (!events || fd < 0 || !want) {
        r->used = false;
        return 0;
    }
    ev_io_set(&r->io, fd, want);
    ev_io_start(e->loop, &r->io);
    e->active++;
    return 0;
}

static void hook_set_watch(void *opaque, int fd, unsigned events, uint32_t id)
{
    apply_watch(opaque, fd, events, id);
}

/* The caller's hooks, forwarded with its own opaque. */
static void hook_notify_queue(void *opaque, unsigned qidx)
{
    struct vio_ev_device *e = opaque;
    if (e->user.notify_queue)
        e->user.notify_queue(e->user.opaque, qidx);
}

static void hook_config_changed(void *opaque)
{
    struct vio_ev_device *e = opaque;
    if (e->user.config_changed)
        e->user.config_changed(e->user.opaque);
}

static void hook_needs_reset(void *opaque)
{
    struct vio_ev_device *e = opaque;
    if (e->user.needs_reset)
        e->user.needs_reset(e->user.opaque);
}

static void kick_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct ev_kick_rec *k = (struct ev_kick_rec *)w;
    uint64_t v;
    /* Drain first: a kick that arrives while the queue is processed is then not lost. */
    ssize_t n = read(k->io.fd, &v, sizeof(v));
    (void)n; /* EAGAIN (someone else drained it) is harmless: processing an empty queue is */
    int rc = vio_device_queue_notify(k->owner->dev, k->qidx);
    if (rc < 0 && !k->err_logged) {
        k->err_logged = true;
        logf_(k->owner->log, k->owner->log_opaque, VIO_LOG_WARN,
              "queue %u: notify returned %d (logged once)", k->qidx, rc);
    }
}

int vio_ev_device_new(const struct vio_ev_device_config *cfg, struct vio_ev_device **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->struct_size < sizeof(*cfg) || !cfg->loop || !cfg->dev)
        return -EINVAL;
    if (cfg->hooks && cfg->hooks->struct_size < sizeof(*cfg->hooks))
        return -EINVAL;
    struct vio_ev_device *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->loop = cfg->loop;
    e->dev = cfg->dev;
    e->log = cfg->log;
    e->log_opaque = cfg->log_opaque;
    if (cfg->hooks)
        e->user = *cfg->hooks;
    e->has_user = cfg->hooks != NULL;
    e->user.struct_size = sizeof(e->user);
    e->nkick = vio_device_num_queues(cfg->dev);
    e->nwatch = cfg->max_watches ? cfg->max_watches : 2 * e->nkick + 4;
    e->watch = calloc(e->nwatch, sizeof(*e->watch));
    e->kick = calloc(e->nkick ? e->nkick : 1, sizeof(*e->kick));
    if (!e->watch || !e->kick) {
        vio_ev_device_free(e);
        return -ENOMEM;
    }
    struct vio_device_hooks h = {
        .struct_size = sizeof(h),
        .opaque = e,
        .notify_queue = hook_notify_queue,
        .config_changed = hook_config_changed,
        .needs_reset = hook_needs_reset,
        .set_watch = hook_set_watch,
    };
    int r = vio_device_bind(cfg->dev, &h);
    if (r < 0) {
        /* -EBUSY: another transport drives the device (logged by the device) */
        if (r == -EBUSY)
            logf_(e->log, e->log_opaque, VIO_LOG_ERROR,
                  "the device is already bound (a transport drives it): not attached");
        free(e->watch);
        free(e->kick);
        free(e);
        return r;
    }
    e->bound = true;
    /* What the device wants watched already (decided before it had our hook). */
    int n = vio_device_watches(cfg->dev, NULL, 0);
    if (n > 0) {
        if ((unsigned)n > e->nwatch) {
            e->has_user = false; /* failed: leave the device unbound, as it was */
            vio_ev_device_free(e);
            return -ENOSPC;
        }
        struct vio_device_watch *ws = calloc((size_t)n, sizeof(*ws));
        if (!ws) {
            e->has_user = false;
            vio_ev_device_free(e);
            return -ENOMEM;
        }
        int m = vio_device_watches(cfg->dev, ws, (unsigned)n);
        for (int i = 0; i < m && i < n; i++)
            apply_watch(e, ws[i].fd, ws[i].events, ws[i].id);
        free(ws);
    }
    *out = e;
    return 0;
}

void vio_ev_device_free(struct vio_ev_device *e)
{
    if (!e)
        return;
    for (unsigned i = 0; e->watch && i < e->nwatch; i++)
        if (ev_is_active(&e->watch[i].io))
            ev_io_stop(e->loop, &e->watch[i].io);
    for (unsigned i = 0; e->kick && i < e->nkick; i++)
        if (e->kick[i].used && ev_is_active(&e->kick[i].io))
            ev_io_stop(e->loop, &e->kick[i].io);
    /* Unbind ours; the caller's own hooks (set_watch as the caller had it) stay bound. */
    if (e->bound) {
        vio_device_bind(e->dev, NULL);
        if (e->has_user) {
            struct vio_device_hooks h = e->user;
            h.struct_size = sizeof(h);
            vio_device_bind(e->dev, &h);
        }
    }
    free(e->watch);
    free(e->kick);
    free(e);
}

int vio_ev_device_add_kick(struct vio_ev_device *e, unsigned qidx, int fd)
{
    if (!e || fd < 0)
        return -EINVAL;
    if (qidx >= e->nkick)
        return -ERANGE;
    struct ev_kick_rec *k = &e->kick[qidx];
    if (k->used && ev_is_active(&k->io))
        ev_io_stop(e->loop, &k->io);
    k->owner = e;
    k->qidx = qidx;
    k->used = true;
    k->err_logged = false;
    ev_io_init(&k->io, kick_cb, fd, EV_READ);
    ev_io_start(e->loop, &k->io);
    return 0;
}

void vio_ev_device_remove_kick(struct vio_ev_device *e, unsigned qidx)
{
    if (!e || qidx >= e->nkick || !e->kick[qidx].used)
        return;
    if (ev_is_active(&e->kick[qidx].io))
        ev_io_stop(e->loop, &e->kick[qidx].io);
    e->kick[qidx].used = false;
}

unsigned vio_ev_device_active_watches(const struct vio_ev_device *e)
{
    return e ? e->active : 0;
}

/* ------------------------------------------------------------------------ */
/* Generic fd watcher                                                        */

struct vio_ev_fd {
    ev_io io;
    struct ev_loop *loop;
    vio_ev_fd_cb cb;
    void *opaque;
};

static void fd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct vio_ev_fd *f = (struct vio_ev_fd *)w;
    /* The callback may free f: nothing touches it afterwards. */
    f->cb(f->opaque, f->io.fd, from_ev(revents));
}

static bool events_ok(unsigned events)
{
    return !(events & ~(unsigned)(VIO_WATCH_IN | VIO_WATCH_OUT));
}

int vio_ev_fd_new(struct ev_loop *loop, int fd, unsigned events, vio_ev_fd_cb cb, void *opaque,
                  struct vio_ev_fd **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop || fd < 0 || !cb || !events_ok(events))
        return -EINVAL;
    struct vio_ev_fd *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->loop = loop;
    f->cb = cb;
    f->opaque = opaque;
    ev_io_init(&f->io, fd_cb, fd, to_ev(events));
    if (events)
        ev_io_start(loop, &f->io);
    *out = f;
    return 0;
}

int vio_ev_fd_set_events(struct vio_ev_fd *f, unsigned events)
{
    if (!f || !events_ok(events))
        return -EINVAL;
    int want = to_ev(events);
    if (ev_is_active(&f->io)) {
        if ((f->io.events & (EV_READ | EV_WRITE)) == want)
            return 0;
        ev_io_stop(f->loop, &f->io);
    }
    if (want) {
        ev_io_set(&f->io, f->io.fd, want);
        ev_io_start(f->loop, &f->io);
    }
    return 0;
}

void vio_ev_fd_free(struct vio_ev_fd *f)
{
    if (!f)
        return;
    if (ev_is_active(&f->io))
        ev_io_stop(f->loop, &f->io);
    free(f);
}

/* ------------------------------------------------------------------------ */
/* vhost-user back-end on a loop                                              */

struct ev_vu_rec {
    ev_io io; /* first: the callback casts back */
    struct vio_ev_vhost_user *owner;
    uint32_t id;
    bool used;
};

struct vio_ev_vhost_user {
    struct ev_loop *loop;
    struct vio_vhost_user *vu; /* NULL until vio_vhost_user_new() returned */
    ev_timer timer;            /* vio_vhost_user_tick() when vio_vhost_user_timeout_ms() says */
    /* The caller's hooks, called with the caller's opaque. */
    void *user_opaque;
    void (*user_pause)(void *opaque);
    void (*user_resume)(void *opaque);
    void (*user_session)(void *opaque, bool connected);
    int (*user_device_request)(void *opaque, enum vio_vhost_user_request req, uint64_t value);
    vio_log_fn log;
    void *log_opaque;
    /* Watches: [0] the control socket, [1 .. nkick] the kick fds by ring, then the device's
     * ids (searched; a device has a few). Fixed at creation: set_watch never allocates. */
    struct ev_vu_rec *rec;
    unsigned nkick, nrec, active;
    bool full_logged;
};

static void ev_vu_rearm(struct vio_ev_vhost_user *e)
{
    if (!e->vu)
        return;
    int ms = vio_vhost_user_timeout_ms(e->vu);
    if (ev_is_active(&e->timer))
        ev_timer_stop(e->loop, &e->timer);
    if (ms >= 0) {
        ev_timer_set(&e->timer, ms / 1000.0, 0.);
        ev_timer_start(e->loop, &e->timer);
    }
}

static void ev_vu_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct ev_vu_rec *r = (struct ev_vu_rec *)w;
    struct vio_ev_vhost_user *e = r->owner;
    uint32_t id = r->id; /* the dispatch may reuse r */
    if ((revents & EV_ERROR) && !ev_is_active(&r->io)) {
        /* libev stopped the watcher (the fd is not valid): keep the count true */
        logf_(e->log, e->log_opaque, VIO_LOG_ERROR, "watch 0x%x: fd %d cannot be watched", id,
              r->io.fd);
        r->used = false;
        e->active--;
        return;
    }
    int rc = vio_vhost_user_dispatch(e->vu, id, from_ev(revents));
    if (id == VIO_VU_WATCH_CONTROL) {
        /* the transport logged what ended a session; anything else is worth a line */
        if (rc < 0 && rc != -ECONNRESET && rc != -EPROTO)
            logf_(e->log, e->log_opaque, VIO_LOG_DEBUG, "control socket: %s", strerror(-rc));
        ev_vu_rearm(e); /* a lost session may have started the reconnect clock */
    } else if (rc < 0 && rc != -EAGAIN && rc != -EIO) {
        logf_(e->log, e->log_opaque, VIO_LOG_DEBUG, "watch 0x%x: %s", id, strerror(-rc));
    }
}

static void ev_vu_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct vio_ev_vhost_user *e =
        (struct vio_ev_vhost_user *)((char *)w - offsetof(struct vio_ev_vhost_user, timer));
    vio_vhost_user_tick(e->vu);
    ev_vu_rearm(e);
}

static struct ev_vu_rec *ev_vu_find(struct vio_ev_vhost_user *e, uint32_t id, bool alloc)
{
    struct ev_vu_rec *r = NULL;
    if (id == VIO_VU_WATCH_CONTROL) {
        r = &e->rec[0];
    } else if (VIO_VU_WATCH_IS_KICK(id) && VIO_VU_WATCH_QUEUE(id) < e->nkick) {
        r = &e->rec[1 + VIO_VU_WATCH_QUEUE(id)];
    } else {
        struct ev_vu_rec *fresh = NULL;
        for (unsigned i = 1 + e->nkick; i < e->nrec; i++) {
            if (e->rec[i].used && e->rec[i].id == id)
                return &e->rec[i];
            if (!e->rec[i].used && !fresh)
                fresh = &e->rec[i];
        }
        r = fresh;
    }
    if (!r || (!r->used && !alloc))
        return NULL;
    if (!r->used) {
        r->used = true;
        r->id = id;
        r->owner = e;
        ev_io_init(&r->io, ev_vu_io_cb, -1, 0);
    }
    return r;
}

static void ev_vu_set_watch(void *opaque, int fd, unsigned events, uint32_t id)
{
    struct vio_ev_vhost_user *e = opaque;
    int want = to_ev(events);
    struct ev_vu_rec *r = ev_vu_find(e, id, want != 0 && fd >= 0);
    if (!r) {
        if (want && fd >= 0 && !e->full_logged) {
            e->full_logged = true;
            logf_(e->log, e->log_opaque, VIO_LOG_ERROR,
                  "watch table full: fd %d (id 0x%x) is not watched (logged once)", fd, id);
        }
        return;
    }
    if (ev_is_active(&r->io)) {
        if (want && r->io.fd == fd && (r->io.events & (EV_READ | EV_WRITE)) == want)
            return;
        ev_io_stop(e->loop, &r->io);
        e->active--;
    }
    if (!want || fd < 0) {
        r->used = false;
        return;
    }
    ev_io_set(&r->io, fd, want);
    ev_io_start(e->loop, &r->io);
    e->active++;
}

static void ev_vu_pause(void *opaque)
{
    struct vio_ev_vhost_user *e = opaque;
    if (e->user_pause)
        e->user_pause(e->user_opaque);
}

static void ev_vu_resume(void *opaque)
{
    struct vio_ev_vhost_user *e = opaque;
    if (e->user_resume)
        e->user_resume(e->user_opaque);
}

static void ev_vu_session(void *opaque, bool connected)
{
    struct vio_ev_vhost_user *e = opaque;
    if (e->user_session)
        e->user_session(e->user_opaque, connected);
}

static int ev_vu_device_request(void *opaque, enum vio_vhost_user_request req, uint64_t value)
{
    struct vio_ev_vhost_user *e = opaque;
    return e->user_device_request ? e->user_device_request(e->user_opaque, req, value) : 0;
}

int vio_ev_vhost_user_new(struct ev_loop *loop, const struct vio_vhost_user_config *cfg,
                          struct vio_ev_vhost_user **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop || !cfg || cfg->struct_size < sizeof(*cfg) || !cfg->dev)
        return -EINVAL;
    if (cfg->set_watch) {
        logf_(cfg->log, cfg->log_opaque, VIO_LOG_ERROR,
              "vio_ev_vhost_user_new(): cfg->set_watch must be NULL (the adapter watches the "
              "fds itself)");
        return -EINVAL;
    }
    struct vio_ev_vhost_user *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    unsigned nq = vio_device_num_queues(cfg->dev);
    e->loop = loop;
    e->log = cfg->log;
    e->log_opaque = cfg->log_opaque;
    e->user_opaque = cfg->opaque;
    e->user_pause = cfg->pause;
    e->user_resume = cfg->resume;
    e->user_session = cfg->session;
    e->user_device_request = cfg->device_request;
    /* rings beyond 256 do not exist on the wire (the ring index is 8 bits) */
    e->nkick = nq < 256 ? nq : 256;
    e->nrec = 1 + e->nkick + 2 * nq + 4;
    e->rec = calloc(e->nrec, sizeof(*e->rec));
    if (!e->rec) {
        free(e);
        return -ENOMEM;
    }
    ev_timer_init(&e->timer, ev_vu_timer_cb, 0., 0.);
    /* Every hook goes through the adapter: the transport has one opaque for all of them. */
    struct vio_vhost_user_config c = *cfg;
    c.opaque = e;
    c.set_watch = ev_vu_set_watch;
    c.pause = cfg->pause ? ev_vu_pause : NULL;
    c.resume = cfg->resume ? ev_vu_resume : NULL;
    c.session = cfg->session ? ev_vu_session : NULL;
    c.device_request = cfg->device_request ? ev_vu_device_request : NULL;
    int r = vio_vhost_user_new(&c, &e->vu);
    if (r < 0) {
        /* the transport stopped every watch it had announced */
        for (unsigned i = 0; i < e->nrec; i++)
            if (ev_is_active(&e->rec[i].io))
                ev_io_stop(loop, &e->rec[i].io);
        free(e->rec);
        free(e);
        return r;
    }
    ev_vu_rearm(e); /* a client waiting to reconnect */
    *out = e;
    return 0;
}

void vio_ev_vhost_user_free(struct vio_ev_vhost_user *e)
{
    if (!e)
        return;
    vio_vhost_user_free(e->vu); /* unwatches through set_watch: the table is still here */
    for (unsigned i = 0; i < e->nrec; i++)
        if (ev_is_active(&e->rec[i].io))
            ev_io_stop(e->loop, &e->rec[i].io);
    if (ev_is_active(&e->timer))
        ev_timer_stop(e->loop, &e->timer);
    free(e->rec);
    free(e);
}

struct vio_vhost_user *vio_ev_vhost_user_transport(const struct vio_ev_vhost_user *e)
{
    return e ? e->vu : NULL;
}

unsigned vio_ev_vhost_user_active_watches(const struct vio_ev_vhost_user *e)
{
    return e ? e->active : 0;
}
