/* SPDX-License-Identifier: MIT */
/*
 * Test environment for the virtio-net device suites: a fake backend (an ops table living in the
 * test), guest RAM, the core driver side (vio_drvq) playing the guest, and a minimal
 * "transport" that creates the device-side queues and records the device's out-hooks.
 */
#ifndef VIO_TEST_NET_ENV_H
#define VIO_TEST_NET_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "virtio/device.h"
#include "virtio/net.h"

#define ENV_MAXQP 4u
#define ENV_MAXQ (2u * ENV_MAXQP + 1u)
#define FB_RXCAP 128u
#define FB_TXCAP 512u
#define ENV_MAXBUF 4096u

/** A frame seen or produced by the fake backend. */
struct fb_frame {
    unsigned qp;
    struct vio_net_hdr hdr;
    uint8_t *data;
    size_t len;
};

/** Fake backend state. */
struct fake_be {
    uint64_t features;       /* offloads it claims */
    uint64_t configured;     /* last configure() */
    unsigned configure_calls;
    unsigned rx_mode;        /* last set_rx_mode() */
    unsigned rx_mode_calls;
    struct fb_frame tx[FB_TXCAP];
    unsigned ntx;
    unsigned tx_calls;
    int tx_fail;             /* non-zero: tx() returns this ... */
    int tx_fail_count;       /* ... this many times (-1: until cleared) */
    struct fb_frame rx[ENV_MAXQP][FB_RXCAP];
    unsigned rx_head[ENV_MAXQP], rx_tail[ENV_MAXQP];
    int rx_fail;             /* non-zero: rx() and rx_peek() return this */
    unsigned rx_calls;
    bool no_fds;             /* rx_fd / tx_fd report -1 */
    /* rx_view: frames lent to the device, poisoned and freed at the next tx on their pair */
    struct fb_lent {
        unsigned qp;
        uint8_t *data;
        size_t len;
    } lent[ENV_MAXQP * FB_RXCAP];
    unsigned nlent;
    unsigned views; /* rx_view calls that lent a frame */
};

/** What the device reported through its hooks. */
struct hookrec {
    unsigned notify[ENV_MAXQ];
    unsigned cfg_changed;
    unsigned needs_reset;
    unsigned set_watch_calls;
    unsigned watch[2 * ENV_MAXQP]; /* current events by watch id */
    int watch_fd[2 * ENV_MAXQP];
    unsigned log_err, log_warn;
};

/** Options of env_open(). */
struct env_opts {
    unsigned pairs;        /* 0: 1 */
    uint64_t be_features;  /* offload bits of the fake backend */
    uint64_t refuse;       /* offered bits the guest does not take */
    bool peek;             /* fake backend implements rx_peek */
    bool view;             /* fake backend implements rx_view (also: env_view_all) */
    uint16_t qsize;        /* 0: 256 */
    uint16_t mtu;
    bool link_down;
    bool no_mac;
    bool no_fds;
    unsigned iov_max;
    const struct vio_net_backend_ops *ops; /* replaces the fake backend (with ops_opaque) */
    void *ops_opaque;
};

/** A guest buffer posted on a queue (token = index + 1). */
struct gbuf {
    uint64_t gpa;
    uint32_t len;
};

struct env {
    struct arena a;
    struct fake_be fb;
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_device *dev;
    struct hookrec hk;
    uint64_t feats;
    bool tx_kick_wanted; /* what the last guest_tx's kick_prepare said */
    unsigned pairs;   /* max pairs of the device */
    unsigned nq;      /* queues started */
    unsigned ctrl;    /* index of the control queue */
    struct vio_drvq *drv[ENV_MAXQ];
    struct vio_queue *q[ENV_MAXQ];
    struct vio_drvq_config dc[ENV_MAXQ];
    struct gbuf bufs[ENV_MAXQ][ENV_MAXBUF];
    unsigned nbufs[ENV_MAXQ];
};

extern const uint8_t ENV_MAC[6];
/** Set: every env_open gives the fake backend rx_view (the suites' "_view" test cases). */
extern bool env_view_all;

/** Build the whole environment (ck_assert on failure). */
void env_open(struct env *e, const struct env_opts *o);
/** Tear it down (frees every frame the fake backend kept). */
void env_close(struct env *e);

/** Queue a frame in the fake backend's receive queue of pair @p qp. */
void fb_push_rx(struct env *e, unsigned qp, const struct vio_net_hdr *h, const void *data,
                size_t len);
/** Frames still waiting in the fake backend's receive queue of @p qp. */
unsigned fb_rx_pending(const struct env *e, unsigned qp);

/** Guest: queue a frame on the TX queue of @p qp (not kicked). The 12-byte header and the
 *  frame are contiguous in guest memory and cut into descriptors at the given byte sizes
 *  (the rest goes into a last descriptor). @return the token. */
void *guest_tx(struct env *e, unsigned qp, const struct vio_net_hdr *h, const void *frame,
               size_t len, const uint32_t *cuts, unsigned ncuts);
/** Guest: make the device process TX of @p qp (kick). @return the device's result. */
int guest_kick(struct env *e, unsigned qidx);
/** Guest: collect used buffers of queue @p qidx; @return how many. Lens are checked <= posted. */
unsigned guest_reap(struct env *e, unsigned qidx, uint32_t *lens, unsigned cap);

/** Guest: post @p n receive buffers of @p len bytes on RX of @p qp, each split into @p nseg
 *  descriptors. Published (kick_prepare) but not kicked. */
void guest_post_rx(struct env *e, unsigned qp, unsigned n, uint32_t len, unsigned nseg);
/**
 * Guest: collect one received frame from RX of @p qp: reads the header, follows num_buffers
 * (MRG) and reassembles the payload into @p out.
 * @return num_buffers (>= 1), or 0 when nothing was used.
 */
unsigned guest_rx_frame(struct env *e, unsigned qp, struct vio_net_hdr *h, uint8_t *out,
                        size_t cap, size_t *len);

/** Guest: send a control command and return the ack (0xEE when the chain was not used). */
uint8_t guest_ctrl(struct env *e, uint8_t cls, uint8_t cmd, const void *data, size_t dlen);

/** Fill an Ethernet frame: dst, src = ENV peer MAC, ethertype (0x8100 inserts a tag with
 *  @p vid first and then 0x0800), payload bytes derived from @p seed. */
size_t make_frame(uint8_t *buf, size_t len, const uint8_t *dst, uint16_t ethertype, uint16_t vid,
                  unsigned seed);

/** Counters shortcut. */
struct vio_net_queue_stats env_stats(struct env *e, unsigned qidx);

#endif
