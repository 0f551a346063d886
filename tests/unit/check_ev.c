/* SPDX-License-Identifier: MIT */
/*
 * Suite "ev": the libev adapter (libvirtio-ev).
 *
 * Generic fd watchers, a device attachment driven by a scripted fake device, and a round
 * trip through a real loop: the driver-side helper sends frames, its kicks wake the
 * virtio-net device model through kick eventfds, the loopback backend's eventfd wakes the
 * receive side, the device's call eventfds wake the driver — all in one ev_loop.
 *
 * vhost-user on a loop (vio_ev_vhost_user_new()): the transport, a virtio-net device and a
 * loopback backend served by an ev_loop on its own thread, against the vhost-user front-end
 * of examples/vhost-user-net (vu_frontend.c: a memfd guest, the library's driver side)
 * moving frames through it; a client-mode transport reconnecting from the loop's timer; and
 * the one-binding rule between the two attachments.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "net_local.h"
#include "vu_frontend.h"
#include "virtio/ev.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"

#define FEAT(b) ((uint64_t)1 << (b))

static void efd_signal(int fd)
{
    uint64_t one = 1;
    ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
}

static void efd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
}

/* ------------------------------------------------------------------------ */
/* generic fd watcher */

struct fd_probe {
    unsigned calls;
    unsigned last;
    int fd;
    struct vio_ev_fd *self;
    bool free_in_cb;
};

static void probe_cb(void *opaque, int fd, unsigned revents)
{
    struct fd_probe *p = opaque;
    p->calls++;
    p->last = revents;
    p->fd = fd;
    if (revents & VIO_WATCH_IN)
        efd_drain(fd);
    if (p->free_in_cb) {
        vio_ev_fd_free(p->self);
        p->self = NULL;
    }
}

START_TEST(test_fd_watcher)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    int efd = eventfd(0, EFD_NONBLOCK);
    struct fd_probe p = {0};
    ck_assert_int_eq(vio_ev_fd_new(loop, efd, VIO_WATCH_IN, probe_cb, &p, &p.self), 0);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(p.calls, 0);
    efd_signal(efd);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(p.calls, 1);
    ck_assert_uint_eq(p.last, VIO_WATCH_IN);
    ck_assert_int_eq(p.fd, efd);
    /* stopped: a signal goes unnoticed */
    ck_assert_int_eq(vio_ev_fd_set_events(p.self, 0), 0);
    efd_signal(efd);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(p.calls, 1);
    /* writable: an eventfd always is */
    ck_assert_int_eq(vio_ev_fd_set_events(p.self, VIO_WATCH_OUT), 0);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(p.calls, 2);
    ck_assert_uint_eq(p.last, VIO_WATCH_OUT);
    /* back to readable (pending signal from above), freed inside its callback */
    p.free_in_cb = true;
    ck_assert_int_eq(vio_ev_fd_set_events(p.self, VIO_WATCH_IN), 0);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(p.calls, 3);
    ck_assert_ptr_null(p.self);
    /* argument checks */
    struct vio_ev_fd *w = (void *)1;
    ck_assert_int_eq(vio_ev_fd_new(NULL, efd, VIO_WATCH_IN, probe_cb, &p, &w), -EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(vio_ev_fd_new(loop, -1, VIO_WATCH_IN, probe_cb, &p, &w), -EINVAL);
    ck_assert_int_eq(vio_ev_fd_new(loop, efd, VIO_WATCH_IN, NULL, &p, &w), -EINVAL);
    ck_assert_int_eq(vio_ev_fd_new(loop, efd, 0x100, probe_cb, &p, &w), -EINVAL);
    ck_assert_int_eq(vio_ev_fd_new(loop, efd, 0, probe_cb, &p, NULL), -EINVAL);
    ck_assert_int_eq(vio_ev_fd_new(loop, efd, 0, probe_cb, &p, &w), 0); /* created stopped */
    ck_assert_int_eq(vio_ev_fd_set_events(w, 0x100), -EINVAL);
    ck_assert_int_eq(vio_ev_fd_set_events(NULL, 0), -EINVAL);
    vio_ev_fd_free(w);
    vio_ev_fd_free(NULL);
    close(efd);
    ev_loop_destroy(loop);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* device attachment with a scripted device */

struct fake_dev {
    struct vio_device dev;
    struct vio_device_hooks hooks;
    bool bound;
    int binds;
    struct vio_device_watch want[4];
    unsigned nwant;
    unsigned handled[8];
    unsigned last_revents;
    unsigned notified[3];
    int notify_ret;
    int fds[4];
};

static int fd_bind(void *o, const struct vio_device_hooks *h)
{
    struct fake_dev *f = o;
    f->binds++;
    f->bound = h != NULL;
    if (h)
        f->hooks = *h;
    else
        memset(&f->hooks, 0, sizeof(f->hooks));
    return 0;
}

static int fd_watches(void *o, struct vio_device_watch *out, unsigned cap)
{
    struct fake_dev *f = o;
    for (unsigned i = 0; i < f->nwant && i < cap; i++)
        out[i] = f->want[i];
    return (int)f->nwant;
}

static int fd_handle(void *o, uint32_t id, unsigned revents)
{
    struct fake_dev *f = o;
    if (id >= 8)
        return -ENOENT;
    f->handled[id]++;
    f->last_revents = revents;
    /* drain so a level-triggered loop does not spin */
    for (unsigned i = 0; i < 4; i++)
        efd_drain(f->fds[i]);
    return 1;
}

static unsigned fd_num_queues(void *o)
{
    (void)o;
    return 3;
}

static int fd_queue_notify(void *o, unsigned qidx)
{
    struct fake_dev *f = o;
    f->notified[qidx]++;
    if (f->hooks.notify_queue)
        f->hooks.notify_queue(f->hooks.opaque, qidx); /* passes through to the caller's hook */
    return f->notify_ret;
}

static const struct vio_device_ops fake_ops = {
    .name = "fake",
    .bind = fd_bind,
    .watches = fd_watches,
    .handle = fd_handle,
    .num_queues = fd_num_queues,
    .queue_notify = fd_queue_notify,
};

static unsigned user_notified;
static void user_notify(void *opaque, unsigned qidx)
{
    (void)opaque;
    (void)qidx;
    user_notified++;
}

static void fake_init(struct fake_dev *f)
{
    memset(f, 0, sizeof(*f));
    f->dev.ops = &fake_ops;
    f->dev.opaque = f;
    for (unsigned i = 0; i < 4; i++) {
        f->fds[i] = eventfd(0, EFD_NONBLOCK);
        ck_assert_int_ge(f->fds[i], 0);
    }
}

static void fake_fini(struct fake_dev *f)
{
    for (unsigned i = 0; i < 4; i++)
        close(f->fds[i]);
}

START_TEST(test_device_watches)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fake_dev f;
    fake_init(&f);
    /* the device wants fd0 already before it is attached */
    f.want[0] = (struct vio_device_watch){f.fds[0], VIO_WATCH_IN, 5};
    f.nwant = 1;
    struct vio_device_hooks uh = {.struct_size = sizeof(uh), .notify_queue = user_notify};
    struct vio_ev_device_config c = {.struct_size = sizeof(c), .loop = loop, .dev = &f.dev,
                                     .hooks = &uh};
    struct vio_ev_device *e = NULL;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), 0);
    ck_assert(f.bound);
    ck_assert_ptr_nonnull(f.hooks.set_watch);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 1);
    efd_signal(f.fds[0]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[5], 1);
    ck_assert_uint_eq(f.last_revents, VIO_WATCH_IN);

    /* the device moves id 5 to fd1, adds id 2 on fd2 */
    f.hooks.set_watch(f.hooks.opaque, f.fds[1], VIO_WATCH_IN, 5);
    f.hooks.set_watch(f.hooks.opaque, f.fds[2], VIO_WATCH_IN, 2);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 2);
    efd_signal(f.fds[0]); /* old fd: not watched any more */
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[5], 1);
    efd_signal(f.fds[1]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[5], 2);
    efd_signal(f.fds[2]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[2], 1);
    /* same again: no change; then stop id 2 */
    f.hooks.set_watch(f.hooks.opaque, f.fds[2], VIO_WATCH_IN, 2);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 2);
    f.hooks.set_watch(f.hooks.opaque, f.fds[2], 0, 2);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 1);
    efd_signal(f.fds[2]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[2], 1);
    /* stopping an unknown id is harmless */
    f.hooks.set_watch(f.hooks.opaque, f.fds[3], 0, 7);
    /* writable watch */
    f.hooks.set_watch(f.hooks.opaque, f.fds[3], VIO_WATCH_OUT, 3);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[3], 1);
    ck_assert_uint_eq(f.last_revents, VIO_WATCH_OUT);
    f.hooks.set_watch(f.hooks.opaque, f.fds[3], 0, 3);

    /* the caller's other hooks pass through */
    f.hooks.notify_queue(f.hooks.opaque, 1);
    ck_assert_uint_eq(user_notified, 1);

    /* detaching stops everything and rebinds the caller's hooks without set_watch */
    vio_ev_device_free(e);
    ck_assert(f.bound);
    ck_assert_ptr_null(f.hooks.set_watch);
    ck_assert_ptr_eq(f.hooks.notify_queue, user_notify);
    efd_signal(f.fds[1]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.handled[5], 2);
    fake_fini(&f);
    ev_loop_destroy(loop);
    user_notified = 0;
}
END_TEST

START_TEST(test_device_watch_table_full)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fake_dev f;
    fake_init(&f);
    for (unsigned i = 0; i < 3; i++)
        f.want[i] = (struct vio_device_watch){f.fds[i], VIO_WATCH_IN, i};
    f.nwant = 3;
    struct vio_ev_device_config c = {.struct_size = sizeof(c), .loop = loop, .dev = &f.dev,
                                     .max_watches = 2};
    struct vio_ev_device *e = (void *)1;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), -ENOSPC);
    ck_assert_ptr_null(e);
    f.nwant = 2;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), 0);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 2);
    /* a third id does not fit: refused (logged), the others keep working */
    f.hooks.set_watch(f.hooks.opaque, f.fds[2], VIO_WATCH_IN, 2);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 2);
    /* after one stops, it fits */
    f.hooks.set_watch(f.hooks.opaque, f.fds[0], 0, 0);
    f.hooks.set_watch(f.hooks.opaque, f.fds[2], VIO_WATCH_IN, 2);
    ck_assert_uint_eq(vio_ev_device_active_watches(e), 2);
    vio_ev_device_free(e);
    /* argument checks */
    ck_assert_int_eq(vio_ev_device_new(NULL, &e), -EINVAL);
    c.loop = NULL;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), -EINVAL);
    c.loop = loop;
    c.struct_size = 4;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), -EINVAL);
    vio_ev_device_free(NULL);
    fake_fini(&f);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_device_kicks)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fake_dev f;
    fake_init(&f);
    struct vio_ev_device_config c = {.struct_size = sizeof(c), .loop = loop, .dev = &f.dev};
    struct vio_ev_device *e;
    ck_assert_int_eq(vio_ev_device_new(&c, &e), 0);
    ck_assert_int_eq(vio_ev_device_add_kick(e, 1, f.fds[0]), 0);
    ck_assert_int_eq(vio_ev_device_add_kick(e, 3, f.fds[1]), -ERANGE);
    ck_assert_int_eq(vio_ev_device_add_kick(e, 0, -1), -EINVAL);
    ck_assert_int_eq(vio_ev_device_add_kick(NULL, 0, f.fds[1]), -EINVAL);
    /* several kicks before the loop runs: drained, one notify */
    efd_signal(f.fds[0]);
    efd_signal(f.fds[0]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.notified[1], 1);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.notified[1], 1);
    /* replaced by another fd */
    ck_assert_int_eq(vio_ev_device_add_kick(e, 1, f.fds[1]), 0);
    efd_signal(f.fds[0]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.notified[1], 1);
    efd_signal(f.fds[1]);
    f.notify_ret = -EIO; /* an error is logged once, the kick stays watched */
    ev_run(loop, EVRUN_NOWAIT);
    efd_signal(f.fds[1]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.notified[1], 3);
    vio_ev_device_remove_kick(e, 1);
    efd_signal(f.fds[1]);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_eq(f.notified[1], 3);
    vio_ev_device_remove_kick(e, 1); /* twice: no-op */
    vio_ev_device_free(e);
    fake_fini(&f);
    ev_loop_destroy(loop);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* round trip: driver helper -> kick eventfd -> device model -> loopback -> device model
 *             -> call eventfd -> driver helper, all in one ev_loop */

static const uint8_t DEV_MAC[6] = {0x52, 0x54, 0x00, 0x11, 0x22, 0x33};

struct rt {
    struct net_local nl;
    struct ev_loop *loop;
    struct vio_ev_device *evd;
    struct vio_ev_fd *rx_call, *tx_call;
    ev_timer timeout;
    unsigned long total, sent, received, bytes;
    unsigned window;
    size_t max_len;
    bool failed, timed_out;
    uint8_t frame[65600], got[65600];
};

static size_t rt_len(const struct rt *t, unsigned long seq)
{
    return 60 + (size_t)(seq * 7919u) % (t->max_len - 59);
}

static void rt_build(struct rt *t, unsigned long seq, uint8_t *f, size_t len)
{
    memcpy(f, DEV_MAC, 6);
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 1};
    memcpy(f + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    memcpy(f + 14, &seq, sizeof(seq));
    uint32_t x = (uint32_t)seq * 2654435761u + 1;
    for (size_t i = 14 + sizeof(seq); i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f[i] = (uint8_t)x;
    }
    (void)t;
}

static void rt_send_more(struct rt *t)
{
    bool any = false;
    while (t->sent < t->total && t->sent - t->received < t->window) {
        size_t len = rt_len(t, t->sent);
        rt_build(t, t->sent, t->frame, len);
        int r = vio_net_driver_send(t->nl.drv, 0, NULL, t->frame, len);
        if (r == -ENOSPC)
            break;
        ck_assert_int_eq(r, 0);
        t->sent++;
        any = true;
    }
    if (any)
        net_local_kick(&t->nl, VIO_NET_DRIVER_TXQ(0));
}

static void rt_rx(void *opaque, int fd, unsigned revents)
{
    struct rt *t = opaque;
    (void)revents;
    efd_drain(fd);
    do {
        for (;;) {
            ssize_t n = vio_net_driver_recv(t->nl.drv, 0, NULL, t->got, sizeof(t->got));
            if (n == -EAGAIN)
                break;
            if (n < 0) {
                t->failed = true;
                ev_break(t->loop, EVBREAK_ALL);
                return;
            }
            size_t want = rt_len(t, t->received);
            rt_build(t, t->received, t->frame, want);
            if ((size_t)n != want || memcmp(t->frame, t->got, want) != 0) {
                t->failed = true;
                ev_break(t->loop, EVBREAK_ALL);
                return;
            }
            t->received++;
            t->bytes += (unsigned long)n;
        }
        net_local_kick(&t->nl, VIO_NET_DRIVER_RXQ(0)); /* buffers were posted again */
        rt_send_more(t);
        /* re-check after arming interrupts: a frame may have slipped in */
    } while (vio_net_driver_enable_cb(t->nl.drv, VIO_NET_DRIVER_RXQ(0)));
    if (t->received == t->total)
        ev_break(t->loop, EVBREAK_ALL);
}

static void rt_tx(void *opaque, int fd, unsigned revents)
{
    struct rt *t = opaque;
    (void)revents;
    efd_drain(fd);
    vio_net_driver_tx_reclaim(t->nl.drv, 0, NULL, 0);
    rt_send_more(t);
}

static void rt_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct rt *t = (struct rt *)((char *)w - offsetof(struct rt, timeout));
    t->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

static void round_trip(uint64_t want, uint16_t mtu, size_t max_len, unsigned long total)
{
    struct rt *t = calloc(1, sizeof(*t));
    ck_assert_ptr_nonnull(t);
    struct vio_net_backend be = {0};
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .ring_frames = 256};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &be), 0);
    struct net_local_config c = {
        .be = &be,
        .want = want,
        .queue_size = 256,
        .mtu = mtu,
        .eventfds = true,
        .log = vio_log_stderr,
    };
    memcpy(c.mac, DEV_MAC, 6);
    ck_assert_int_eq(net_local_open(&t->nl, &c), 0);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    t->total = total;
    t->window = 128;
    t->max_len = max_len;

    struct vio_device_hooks h;
    net_local_hooks(&t->nl, &h);
    struct vio_ev_device_config ec = {.struct_size = sizeof(ec), .loop = t->loop, .dev = t->nl.dev,
                                      .hooks = &h, .log = vio_log_stderr};
    ck_assert_int_eq(vio_ev_device_new(&ec, &t->evd), 0);
    for (unsigned q = 0; q < t->nl.nq; q++)
        ck_assert_int_eq(vio_ev_device_add_kick(t->evd, q, t->nl.kick_fd[q]), 0);
    ck_assert_int_eq(vio_ev_fd_new(t->loop, t->nl.call_fd[VIO_NET_DRIVER_RXQ(0)], VIO_WATCH_IN,
                                   rt_rx, t, &t->rx_call), 0);
    ck_assert_int_eq(vio_ev_fd_new(t->loop, t->nl.call_fd[VIO_NET_DRIVER_TXQ(0)], VIO_WATCH_IN,
                                   rt_tx, t, &t->tx_call), 0);
    ev_timer_init(&t->timeout, rt_timeout, 60., 0.);
    ev_timer_start(t->loop, &t->timeout);

    net_local_refill(&t->nl);
    vio_net_driver_enable_cb(t->nl.drv, VIO_NET_DRIVER_RXQ(0));
    vio_net_driver_enable_cb(t->nl.drv, VIO_NET_DRIVER_TXQ(0));
    rt_send_more(t);
    ev_run(t->loop, 0);

    ck_assert_msg(!t->timed_out, "timed out: sent %lu, received %lu", t->sent, t->received);
    ck_assert_msg(!t->failed, "frame %lu wrong", t->received);
    ck_assert_uint_eq(t->received, total);
    ck_assert(!t->nl.needs_reset);
    struct vio_net_driver_stats ds;
    vio_net_driver_get_stats(t->nl.drv, 0, &ds);
    ck_assert_uint_eq(ds.rx_frames, total);
    ck_assert_uint_eq(ds.tx_frames, total);
    struct vio_net_queue_stats rs;
    ck_assert_int_eq(vio_net_dev_get_stats(t->nl.nd, 0, &rs), 0);
    ck_assert_uint_eq(rs.packets, total);
    /* the loop did work through every kind of fd */
    ck_assert_uint_gt(t->nl.calls[VIO_NET_DRIVER_RXQ(0)], 0);
    ck_assert_uint_gt(ds.kicks, 0);
    if (vio_has_feature(t->nl.features, VIO_NET_F_MRG_RXBUF) && max_len > 4096)
        ck_assert_uint_gt(ds.rx_merged, 0);

    ev_timer_stop(t->loop, &t->timeout);
    vio_ev_fd_free(t->rx_call);
    vio_ev_fd_free(t->tx_call);
    vio_ev_device_free(t->evd);
    ev_loop_destroy(t->loop);
    net_local_close(&t->nl);
    vio_net_backend_destroy(&be);
    free(t);
}

START_TEST(test_round_trip_mergeable)
{
    /* MTU 9000: frames up to 9014 bytes over page-sized mergeable buffers (1..3 each) */
    round_trip(FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX) | FEAT(VIO_NET_F_MTU), 9000, 9014,
               20000);
}
END_TEST

START_TEST(test_round_trip_small_buffers)
{
    round_trip(FEAT(VIO_F_EVENT_IDX), 0, 1514, 20000);
}
END_TEST

START_TEST(test_round_trip_no_event_idx_big)
{
    /* no EVENT_IDX: flag-based suppression; GUEST_TSO4 without MRG_RXBUF: big buffers */
    round_trip(FEAT(VIO_NET_F_GUEST_TSO4) | FEAT(VIO_NET_F_GUEST_CSUM) | FEAT(VIO_NET_F_CSUM) |
                   FEAT(VIO_NET_F_HOST_TSO4),
               0, 30000, 3000);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* vhost-user on a loop */

static int vu_errors;

static void vu_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    if (level == VIO_LOG_ERROR)
        __atomic_add_fetch(&vu_errors, 1, __ATOMIC_RELAXED);
    if (level <= VIO_LOG_WARN || getenv("EV_TEST_VERBOSE"))
        fprintf(stderr, "[%d] %s: %s\n", level, object, msg);
}

/* A loop running on its own thread; stopped (joined) before anything touches its objects. */
struct vloop {
    struct ev_loop *loop;
    ev_async stop;
    pthread_t th;
    bool running;
};

static void vloop_stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *vloop_main(void *arg)
{
    struct vloop *v = arg;
    ev_run(v->loop, 0);
    return NULL;
}

static void vloop_init(struct vloop *v)
{
    memset(v, 0, sizeof(*v));
    v->loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(v->loop);
    ev_async_init(&v->stop, vloop_stop_cb);
    ev_async_start(v->loop, &v->stop);
}

static void vloop_start(struct vloop *v)
{
    ck_assert_int_eq(pthread_create(&v->th, NULL, vloop_main, v), 0);
    v->running = true;
}

static void vloop_join(struct vloop *v)
{
    if (!v->running)
        return;
    ev_async_send(v->loop, &v->stop);
    pthread_join(v->th, NULL);
    v->running = false;
}

static void vloop_fini(struct vloop *v)
{
    vloop_join(v);
    ev_async_stop(v->loop, &v->stop);
    ev_loop_destroy(v->loop);
}

/* The served device: virtio-net on a loopback backend, as vhost-user frontends expect it. */
struct vnet {
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_device *dev;
    char dir[64], path[108];
    int sessions_up, sessions_down; /* written on the loop thread, read after a join */
};

static void vnet_open(struct vnet *n, unsigned pairs)
{
    memset(n, 0, sizeof(*n));
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = pairs,
                                        .ring_frames = 256, .log = vu_log};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &n->be), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &n->be,
                                    .max_queue_pairs = (uint16_t)pairs, .queue_size = 256,
                                    .frontend_ctrl = true, .log = vu_log};
    ck_assert_int_eq(vio_net_dev_new(&nc, &n->nd), 0);
    n->dev = vio_net_dev_device(n->nd);
    snprintf(n->dir, sizeof(n->dir), "/tmp/check_ev.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(n->dir));
    snprintf(n->path, sizeof(n->path), "%s/vu.sock", n->dir);
}

static void vnet_close(struct vnet *n)
{
    vio_net_dev_free(n->nd);
    vio_net_backend_destroy(&n->be);
    unlink(n->path);
    rmdir(n->dir);
}

static void vnet_session(void *opaque, bool connected)
{
    struct vnet *n = opaque;
    if (connected)
        n->sessions_up++;
    else
        n->sessions_down++;
}

static struct vio_vhost_user_config vnet_vu_config(struct vnet *n)
{
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = n->path,
                                      .dev = n->dev, .log = vu_log, .opaque = n,
                                      .session = vnet_session, .queue_num = 0};
    c.queue_num = vio_device_frontend_queue_num(n->dev);
    return c;
}

/* One front-end session: negotiate, echo frames through the loopback, close. */
static void vu_echo_session(struct vufe *f, unsigned pairs, unsigned frames, size_t len)
{
    struct vufe_config fc = {.queue_pairs = pairs, .queue_size = 256, .reply_ack = true,
                             .log = vu_log};
    int rc = vufe_setup(f, &fc);
    ck_assert_msg(rc == 0, "front-end setup: %d (%s)", rc, f->err);
    long ok = vufe_echo(f, frames, len, 20000);
    ck_assert_msg(ok == (long)frames * pairs, "echo: %ld of %u frames came back intact", ok,
                  frames * pairs);
}

START_TEST(test_vu_server_echo)
{
    const unsigned pairs = 2;
    struct vnet n;
    vnet_open(&n, pairs);
    struct vloop v;
    vloop_init(&v);
    vu_errors = 0;
    struct vio_vhost_user_config c = vnet_vu_config(&n);
    struct vio_ev_vhost_user *evu = NULL;
    ck_assert_int_eq(vio_ev_vhost_user_new(v.loop, &c, &evu), 0);
    ck_assert_ptr_nonnull(vio_ev_vhost_user_transport(evu));
    ck_assert(vio_device_is_bound(n.dev));
    ck_assert_uint_eq(vio_ev_vhost_user_active_watches(evu), 1); /* the listening socket */
    vloop_start(&v);

    for (unsigned round = 0; round < 2; round++) {
        struct vufe f;
        int rc = vufe_open(&f, n.path, -1);
        ck_assert_msg(rc == 0, "connect: %d (%s)", rc, f.err);
        vu_echo_session(&f, pairs, 3000, round ? 64 : 1500);
        /* look at the loop's watches with the loop stopped: the connection, a kick per ring
         * and the backend's receive fds of the running rings */
        vloop_join(&v);
        struct vio_vhost_user *vu = vio_ev_vhost_user_transport(evu);
        ck_assert(vio_vhost_user_connected(vu));
        ck_assert_uint_ge(vio_ev_vhost_user_active_watches(evu), 1 + 2 * pairs + pairs);
        for (unsigned q = 0; q < 2 * pairs; q++) {
            struct vio_vhost_user_queue_state st;
            ck_assert_int_eq(vio_vhost_user_queue_state(vu, q, &st), 0);
            ck_assert_msg(st.running, "ring %u not running", q);
        }
        struct vio_net_queue_stats rs;
        ck_assert_int_eq(vio_net_dev_get_stats(n.nd, 1, &rs), 0);
        ck_assert_uint_ge(rs.packets, 3000);
        vloop_start(&v);
        vufe_close(&f);
        /* the session ends on the loop; the transport listens again */
        for (int i = 0; i < 500 && __atomic_load_n(&n.sessions_down, __ATOMIC_ACQUIRE) <=
                                       (int)round; i++)
            usleep(10000);
        vloop_join(&v);
        ck_assert_int_eq(n.sessions_up, (int)round + 1);
        ck_assert_int_eq(n.sessions_down, (int)round + 1);
        ck_assert(!vio_vhost_user_connected(vu));
        ck_assert_uint_eq(vio_ev_vhost_user_active_watches(evu), 1);
        vloop_start(&v);
    }
    vloop_join(&v);
    ck_assert_int_eq(vu_errors, 0);
    vio_ev_vhost_user_free(evu);
    ck_assert(!vio_device_is_bound(n.dev));
    ck_assert_int_eq(access(n.path, F_OK), -1); /* the server removed its socket */
    vloop_fini(&v);
    vnet_close(&n);
}
END_TEST

static int listen_on(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(s, 1), 0);
    return s;
}

static int accept_within(int s, int ms)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return -1;
    return accept4(s, NULL, NULL, SOCK_CLOEXEC);
}

START_TEST(test_vu_client_reconnect)
{
    struct vnet n;
    vnet_open(&n, 1);
    struct vloop v;
    vloop_init(&v);
    vu_errors = 0;
    struct vio_vhost_user_config c = vnet_vu_config(&n);
    c.client = true;
    c.reconnect_ms = 20;
    struct vio_ev_vhost_user *evu = NULL;
    /* nobody listens yet: created anyway, retrying from the loop's timer */
    ck_assert_int_eq(vio_ev_vhost_user_new(v.loop, &c, &evu), 0);
    ck_assert_uint_eq(vio_ev_vhost_user_active_watches(evu), 0);
    ck_assert_int_ge(vio_vhost_user_timeout_ms(vio_ev_vhost_user_transport(evu)), 0);
    vloop_start(&v);
    usleep(100000); /* a few failed attempts */
    int ls = listen_on(n.path);
    int fd = accept_within(ls, 5000);
    ck_assert_msg(fd >= 0, "the transport did not reconnect from the loop's timer");
    struct vufe f;
    ck_assert_int_eq(vufe_open(&f, NULL, fd), 0);
    vu_echo_session(&f, 1, 2000, 256);
    /* the front-end goes away: the loop's timer connects again */
    vufe_close(&f);
    fd = accept_within(ls, 5000);
    ck_assert_msg(fd >= 0, "no reconnect after the session ended");
    ck_assert_int_eq(vufe_open(&f, NULL, fd), 0);
    vu_echo_session(&f, 1, 500, 1000);
    vloop_join(&v);
    ck_assert_int_eq(n.sessions_up, 2);
    vufe_close(&f);
    vio_ev_vhost_user_free(evu);
    close(ls);
    ck_assert_int_eq(vu_errors, 0);
    vloop_fini(&v);
    vnet_close(&n);
}
END_TEST

START_TEST(test_vu_one_binding)
{
    struct vnet n;
    vnet_open(&n, 1);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct vio_vhost_user_config c = vnet_vu_config(&n);
    struct vio_ev_vhost_user *evu = (void *)1;
    /* argument checks */
    ck_assert_int_eq(vio_ev_vhost_user_new(NULL, &c, &evu), -EINVAL);
    ck_assert_ptr_null(evu);
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, NULL, &evu), -EINVAL);
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, &c, NULL), -EINVAL);
    c.struct_size = 8;
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, &c, &evu), -EINVAL);
    c = vnet_vu_config(&n);
    c.set_watch = (void (*)(void *, int, unsigned, uint32_t))1; /* the adapter's job */
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, &c, &evu), -EINVAL);
    c.set_watch = NULL;
    ck_assert(!vio_device_is_bound(n.dev));

    /* the libev device attachment holds the device: vhost-user cannot take it */
    struct vio_ev_device_config ec = {.struct_size = sizeof(ec), .loop = loop, .dev = n.dev};
    struct vio_ev_device *evd = NULL;
    ck_assert_int_eq(vio_ev_device_new(&ec, &evd), 0);
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, &c, &evu), -EBUSY);
    ck_assert_ptr_null(evu);
    ck_assert_int_eq(access(n.path, F_OK), -1); /* nothing was left behind */
    vio_ev_device_free(evd);
    ck_assert(!vio_device_is_bound(n.dev));

    /* and the other way round: vhost-user drives it, the device attachment is refused */
    ck_assert_int_eq(vio_ev_vhost_user_new(loop, &c, &evu), 0);
    ck_assert_int_eq(vio_ev_device_new(&ec, &evd), -EBUSY);
    ck_assert_ptr_null(evd);
    vio_ev_vhost_user_free(evu);
    ck_assert_int_eq(vio_ev_device_new(&ec, &evd), 0);
    vio_ev_device_free(evd);
    vio_ev_vhost_user_free(NULL);
    ck_assert_ptr_null(vio_ev_vhost_user_transport(NULL));
    ck_assert_uint_eq(vio_ev_vhost_user_active_watches(NULL), 0);
    ev_loop_destroy(loop);
    vnet_close(&n);
}
END_TEST

static Suite *ev_suite(void)
{
    Suite *s = suite_create("ev");
    TCase *tc = tcase_create("fd");
    tcase_add_test(tc, test_fd_watcher);
    suite_add_tcase(s, tc);
    tc = tcase_create("device");
    tcase_add_test(tc, test_device_watches);
    tcase_add_test(tc, test_device_watch_table_full);
    tcase_add_test(tc, test_device_kicks);
    suite_add_tcase(s, tc);
    tc = tcase_create("round_trip");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip_mergeable);
    tcase_add_test(tc, test_round_trip_small_buffers);
    tcase_add_test(tc, test_round_trip_no_event_idx_big);
    suite_add_tcase(s, tc);
    tc = tcase_create("vhost_user");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vu_server_echo);
    tcase_add_test(tc, test_vu_client_reconnect);
    tcase_add_test(tc, test_vu_one_binding);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ev_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
