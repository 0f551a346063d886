/* SPDX-License-Identifier: MIT */
/* net_local: driver helper + virtio-net device model in one process (see net_local.h). */
#include "net_local.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio/status.h"

#define NL_BASE 0x40000000ull

static void nl_notify_queue(void *opaque, unsigned qidx)
{
    struct net_local *l = opaque;
    if (qidx >= 2 * NET_LOCAL_MAX_PAIRS)
        return;
    l->calls[qidx]++;
    if (l->call_fd[qidx] >= 0) {
        uint64_t one = 1;
        ssize_t r = write(l->call_fd[qidx], &one, sizeof(one));
        (void)r; /* a saturated eventfd is still signalled */
    }
}

static void nl_needs_reset(void *opaque)
{
    struct net_local *l = opaque;
    l->needs_reset = true;
    fprintf(stderr, "net_local: device asks for a reset (a queue broke)\n");
}

static void nl_config_changed(void *opaque)
{
    (void)opaque;
}

void net_local_hooks(struct net_local *l, struct vio_device_hooks *out)
{
    memset(out, 0, sizeof(*out));
    out->struct_size = sizeof(*out);
    out->opaque = l;
    out->notify_queue = nl_notify_queue;
    out->config_changed = nl_config_changed;
    out->needs_reset = nl_needs_reset;
}

/* The driver's notify callback. */
static void nl_driver_notify(void *opaque, unsigned qidx)
{
    struct net_local *l = opaque;
    if (l->kick_fd[qidx] >= 0) {
        uint64_t one = 1;
        ssize_t r = write(l->kick_fd[qidx], &one, sizeof(one));
        (void)r;
        return;
    }
    int r = vio_device_queue_notify(l->dev, qidx);
    if (r < 0 && r != -EAGAIN && !l->needs_reset)
        fprintf(stderr, "net_local: notify of queue %u: %s\n", qidx, strerror(-r));
}

void net_local_kick(struct net_local *l, unsigned qidx)
{
    vio_net_driver_kick(l->drv, qidx);
}

bool net_local_take_call(struct net_local *l, unsigned qidx)
{
    uint64_t v;
    return l->call_fd[qidx] >= 0 && read(l->call_fd[qidx], &v, sizeof(v)) == sizeof(v);
}

void net_local_refill(struct net_local *l)
{
    for (unsigned i = 0; i < l->pairs; i++) {
        vio_net_driver_rx_fill(l->drv, i);
        vio_net_driver_kick(l->drv, VIO_NET_DRIVER_RXQ(i));
    }
}

void net_local_close(struct net_local *l)
{
    if (l->dev) {
        for (unsigned i = 0; i < l->nq; i++)
            vio_device_queue_stop(l->dev, i);
        vio_device_reset(l->dev);
        vio_device_bind(l->dev, NULL);
    }
    for (unsigned i = 0; i < 2 * NET_LOCAL_MAX_PAIRS; i++) {
        vio_queue_free(l->q[i]);
        l->q[i] = NULL;
        if (l->fds_init && l->kick_fd[i] >= 0)
            close(l->kick_fd[i]);
        if (l->fds_init && l->call_fd[i] >= 0)
            close(l->call_fd[i]);
        l->kick_fd[i] = l->call_fd[i] = -1;
    }
    vio_net_driver_free(l->drv);
    vio_net_dev_free(l->nd);
    vio_mem_free(l->mem);
    if (l->ram)
        munmap(l->ram, l->ram_size);
    l->drv = NULL;
    l->nd = NULL;
    l->dev = NULL;
    l->mem = NULL;
    l->ram = NULL;
}

static int fail(struct net_local *l, const char *what, int r)
{
    fprintf(stderr, "net_local: %s: %s\n", what, strerror(r < 0 ? -r : r));
    net_local_close(l);
    return r < 0 ? r : -r;
}

int net_local_open(struct net_local *l, const struct net_local_config *cfg)
{
    memset(l, 0, sizeof(*l));
    for (unsigned i = 0; i < 2 * NET_LOCAL_MAX_PAIRS; i++)
        l->kick_fd[i] = l->call_fd[i] = -1;
    l->fds_init = true;
    l->pairs = cfg->pairs ? cfg->pairs : 1;
    if (l->pairs > NET_LOCAL_MAX_PAIRS)
        return -EINVAL;
    l->nq = 2 * l->pairs;
    l->eventfds = cfg->eventfds;

    struct vio_net_dev_config dc = {
        .struct_size = sizeof(dc),
        .backend = cfg->be,
        .mac_valid = true,
        .mtu = cfg->mtu,
        .max_queue_pairs = (uint16_t)l->pairs,
        .queue_size = cfg->queue_size,
        .log = cfg->log,
        .log_opaque = cfg->log_opaque,
    };
    memcpy(dc.mac, cfg->mac, 6);
    int r = vio_net_dev_new(&dc, &l->nd);
    if (r < 0)
        return fail(l, "vio_net_dev_new", r);
    l->dev = vio_net_dev_device(l->nd);

    /* Negotiation, as a transport would run it: offer AND want. No control queue: the
     * helper drives only receive/transmit queues. */
    uint64_t offer = vio_device_features(l->dev);
    uint64_t want = cfg->want | vio_feature_bit(VIO_F_VERSION_1);
    want &= ~(vio_feature_bit(VIO_NET_F_CTRL_VQ) | vio_feature_bit(VIO_NET_F_CTRL_RX) |
              vio_feature_bit(VIO_NET_F_CTRL_RX_EXTRA) | vio_feature_bit(VIO_NET_F_CTRL_VLAN) |
              vio_feature_bit(VIO_NET_F_CTRL_MAC_ADDR) | vio_feature_bit(VIO_NET_F_GUEST_ANNOUNCE) |
              vio_feature_bit(VIO_NET_F_MQ));
    l->features = offer & want;
    r = vio_device_set_features(l->dev, l->features);
    if (r < 0)
        return fail(l, "set_features (refused)", r);

    struct vio_net_driver_config nc = {
        .struct_size = sizeof(nc),
        .features = l->features,
        .queue_pairs = (uint16_t)l->pairs,
        .queue_size = cfg->queue_size ? cfg->queue_size : 256,
        .mtu = cfg->mtu,
        .rx_buf_size = cfg->rx_buf_size,
        .notify = nl_driver_notify,
        .notify_opaque = l,
        .log = cfg->log,
        .log_opaque = cfg->log_opaque,
    };
    uint64_t need = vio_net_driver_area_size(&nc);
    if (!need)
        return fail(l, "driver config", -EINVAL);
    l->ram_size = (size_t)((need + 0xfffff) & ~0xfffffull);
    /* Lazily faulted: big buffers cost only what is touched. */
    l->ram = mmap(NULL, l->ram_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (l->ram == MAP_FAILED) {
        l->ram = NULL;
        return fail(l, "mmap guest RAM", -ENOMEM);
    }
    l->base = NL_BASE;
    r = vio_mem_new(0, &l->mem);
    struct vio_mem_region reg = {.guest_addr = l->base, .size = l->ram_size, .host_ptr = l->ram};
    if (r == 0)
        r = vio_mem_add(l->mem, &reg);
    if (r < 0)
        return fail(l, "guest memory map", r);
    nc.mem = l->mem;
    nc.area = l->base;
    nc.area_size = l->ram_size;
    r = vio_net_driver_new(&nc, &l->drv);
    if (r < 0)
        return fail(l, "vio_net_driver_new", r);

    struct vio_device_hooks h;
    net_local_hooks(l, &h);
    if (!cfg->eventfds && (r = vio_device_bind(l->dev, &h)) < 0)
        return fail(l, "bind", r);

    for (unsigned i = 0; i < l->nq; i++) {
        if (cfg->eventfds) {
            l->kick_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            l->call_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (l->kick_fd[i] < 0 || l->call_fd[i] < 0)
                return fail(l, "eventfd", -errno);
        }
        struct vio_device_queue_info qi;
        r = vio_device_queue_info(l->dev, i, &qi);
        if (r < 0)
            return fail(l, "queue_info", r);
        struct vio_net_driver_queue_addr qa;
        vio_net_driver_queue_addr(l->drv, i, &qa);
        if (qa.size > qi.max_size)
            return fail(l, "queue size larger than the device's maximum", -EINVAL);
        struct vio_queue_config qc = {
            .struct_size = sizeof(qc),
            .max_size = qi.max_size,
            .index = (uint16_t)i,
            .name = qi.name,
            .dir = qi.dir,
            .log = cfg->log,
            .log_opaque = cfg->log_opaque,
        };
        r = vio_queue_new(&qc, &l->q[i]);
        if (r == 0)
            r = vio_queue_setup(l->q[i], l->mem, qa.size, l->features, qa.desc, qa.driver,
                                qa.device);
        if (r == 0)
            r = vio_device_queue_start(l->dev, i, l->q[i]);
        if (r < 0)
            return fail(l, "queue setup/start", r);
    }
    return 0;
}

int net_local_poll(struct net_local *l, int timeout_ms)
{
    struct vio_device_watch ws[2 * NET_LOCAL_MAX_PAIRS + 2];
    int n = vio_device_watches(l->dev, ws, sizeof(ws) / sizeof(ws[0]));
    if (n < 0)
        return n;
    if ((unsigned)n > sizeof(ws) / sizeof(ws[0]))
        n = sizeof(ws) / sizeof(ws[0]);
    struct pollfd pf[2 * NET_LOCAL_MAX_PAIRS + 2];
    for (int i = 0; i < n; i++) {
        pf[i].fd = ws[i].fd;
        pf[i].events = (short)ws[i].events;
        pf[i].revents = 0;
    }
    int r = poll(pf, (nfds_t)n, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    int handled = 0;
    for (int i = 0; i < n; i++) {
        if (!pf[i].revents)
            continue;
        vio_device_handle(l->dev, ws[i].id, (unsigned)pf[i].revents);
        handled++;
    }
    return handled;
}
