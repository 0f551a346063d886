/* SPDX-License-Identifier: MIT */
/*
 * net_local: an in-process "transport" for tests and benchmarks — the driver-side helper
 * (struct vio_net_driver) acting as the guest, wired to the virtio-net device model on a
 * backend, in one process, through public API only.
 *
 * It plays the part a virtio-PCI / vhost-user transport plays: maps a block of "guest RAM"
 * into a struct vio_mem, negotiates features (what the device offers AND what the guest
 * wants, VERSION_1 always), creates a device-side struct vio_queue on every ring the driver
 * laid out and starts it, then fills the receive queues.
 *
 * Two notification modes:
 * - direct (eventfds = false): a driver kick calls vio_device_queue_notify() on the spot,
 *   the device's used-buffer notifications are counted; net_local_poll() polls the fds the
 *   device wants watched (vio_device_watches()) and calls vio_device_handle(). One thread.
 * - eventfds = true: kicks write a per-queue kick eventfd and notifications a per-queue
 *   call eventfd, as with ioeventfd/irqfd; an event loop (the libev adapter) watches them.
 *   net_local_hooks() gives the hooks to hand to that loop's attachment.
 */
#ifndef VIO_TEST_NET_LOCAL_H
#define VIO_TEST_NET_LOCAL_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/device.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NET_LOCAL_MAX_PAIRS 4u

struct net_local_config {
    struct vio_net_backend *be; /* opened by the caller, borrowed */
    uint64_t want;              /* feature bits the guest side accepts (VERSION_1 is implied) */
    uint16_t pairs;             /* queue pairs (0: 1) */
    uint16_t queue_size;        /* 0: 256 */
    uint16_t mtu;               /* device MTU to offer (0: none) */
    uint32_t rx_buf_size;       /* driver receive buffers (0: what the spec says) */
    uint8_t mac[6];             /* device MAC (offered as VIRTIO_NET_F_MAC) */
    bool eventfds;              /* kick / call through eventfds (see above) */
    vio_log_fn log;
    void *log_opaque;
};

struct net_local {
    void *ram;
    size_t ram_size;
    uint64_t base;
    struct vio_mem *mem;
    struct vio_net_dev *nd;
    struct vio_device *dev;
    struct vio_net_driver *drv;
    unsigned pairs, nq;
    uint64_t features;                       /* negotiated */
    struct vio_queue *q[2 * NET_LOCAL_MAX_PAIRS];
    int kick_fd[2 * NET_LOCAL_MAX_PAIRS];    /* eventfd mode, else -1 */
    int call_fd[2 * NET_LOCAL_MAX_PAIRS];    /* eventfd mode, else -1 */
    unsigned long calls[2 * NET_LOCAL_MAX_PAIRS]; /* used-buffer notifications raised */
    bool eventfds;
    bool fds_init;
    bool needs_reset;
};

/* Open everything. 0 or -errno (with a message on stderr). */
int net_local_open(struct net_local *l, const struct net_local_config *cfg);

/* Close everything (not the backend). Safe on a zeroed struct. */
void net_local_close(struct net_local *l);

/* The hooks the device should have (for vio_ev_device_config::hooks in eventfd mode). */
void net_local_hooks(struct net_local *l, struct vio_device_hooks *out);

/* Direct mode: wait up to timeout_ms for the device's fds and handle them.
 * Returns the number of fds handled (>= 0) or -errno. */
int net_local_poll(struct net_local *l, int timeout_ms);

/* Post every free receive buffer of all pairs and kick. */
void net_local_refill(struct net_local *l);

/* Kick queue qidx if the ring says so (what the driver's notify does). */
void net_local_kick(struct net_local *l, unsigned qidx);

/* Read (drain) the call eventfd of qidx; returns true if it was signalled. */
bool net_local_take_call(struct net_local *l, unsigned qidx);

#ifdef __cplusplus
}
#endif
#endif
