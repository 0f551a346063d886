/* SPDX-License-Identifier: MIT */
/* Suite "loopback": the in-process loopback network backend. */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/net_backend.h"
#include "virtio/net_defs.h"

#define FEAT(b) ((uint64_t)1 << (b))

/* ------------------------------------------------------------------------ */
/* helpers */

struct log_probe {
    unsigned calls;
    int last_level;
};

static void log_count(void *opaque, int level, const char *object, const char *msg)
{
    struct log_probe *p = opaque;
    (void)object;
    (void)msg;
    p->calls++;
    p->last_level = level;
}

static struct vio_net_backend open_lb(unsigned qps, unsigned ring, bool swap, struct log_probe *lp)
{
    struct vio_net_backend_config cfg = {
        .struct_size = sizeof(cfg),
        .queue_pairs = qps,
        .ring_frames = ring,
        .mac_swap = swap,
        .log = lp ? log_count : NULL,
        .log_opaque = lp,
    };
    struct vio_net_backend b = {0};
    ck_assert_int_eq(vio_net_loopback_open(&cfg, &b), 0);
    ck_assert_ptr_nonnull(b.ops);
    ck_assert_str_eq(b.ops->name, "loopback");
    ck_assert_uint_eq(b.queue_pairs, qps ? qps : 1);
    return b;
}

/* Deterministic frame content for sequence number @p seq (xorshift32, 4 bytes a step). */
static void fill(uint8_t *p, size_t len, uint32_t seq)
{
    uint32_t x = seq * 2654435761u + 1;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        memcpy(p + i, &x, 4);
    }
    for (; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static int tx_buf(const struct vio_net_backend *b, unsigned qp, const void *buf, size_t len,
                  const struct vio_net_hdr *hdr)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return vio_net_backend_tx(b, qp, hdr, &iov, 1);
}

static ssize_t rx_buf(const struct vio_net_backend *b, unsigned qp, void *buf, size_t cap,
                      struct vio_net_hdr *hdr)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    return vio_net_backend_rx(b, qp, hdr, &iov, 1);
}

static short poll_fd(int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    ck_assert_int_ge(poll(&pfd, 1, 0), 0);
    return pfd.revents;
}

/* ------------------------------------------------------------------------ */
/* open / config */

START_TEST(test_open_defaults)
{
    struct vio_net_backend b = {0};
    ck_assert_int_eq(vio_net_loopback_open(NULL, &b), 0);
    ck_assert_uint_eq(b.queue_pairs, 1);
    ck_assert_int_eq(vio_net_backend_link_status(&b), 1);
    ck_assert_ptr_null(vio_net_tap_ifname(&b));
    ck_assert_int_eq(vio_net_backend_set_rx_mode(&b, VIO_NET_RX_PROMISC), -ENOTSUP);
    uint64_t f = vio_net_backend_features(&b);
    ck_assert(f & FEAT(VIO_NET_F_CSUM));
    ck_assert(f & FEAT(VIO_NET_F_GUEST_CSUM));
    ck_assert(f & FEAT(VIO_NET_F_HOST_TSO4));
    ck_assert(f & FEAT(VIO_NET_F_GUEST_TSO6));
    ck_assert(!(f & FEAT(VIO_NET_F_MRG_RXBUF)));
    ck_assert_int_ge(vio_net_backend_rx_fd(&b, 0), 0);
    ck_assert_int_ge(vio_net_backend_tx_fd(&b, 0), 0);
    ck_assert_int_eq(vio_net_backend_rx_fd(&b, 1), -1);
    vio_net_backend_destroy(&b);
    ck_assert_ptr_null(b.ops);
    vio_net_backend_destroy(&b); /* NULL ops: no-op */
}
END_TEST

struct bad_cfg {
    uint32_t struct_size;
    unsigned queue_pairs;
    unsigned ring_frames;
    int want;
};

static const struct bad_cfg bad_cfgs[] = {
    {0, 1, 0, -EINVAL},                                             /* size not filled in */
    {4, 1, 0, -EINVAL},                                             /* too small to hold anything */
    {sizeof(struct vio_net_backend_config), 257, 0, -EINVAL},      /* too many queue pairs */
    {sizeof(struct vio_net_backend_config), 1, 1u << 20, -EINVAL}, /* ring too large */
};

START_TEST(test_open_bad_config)
{
    const struct bad_cfg *t = &bad_cfgs[_i];
    struct vio_net_backend_config cfg = {
        .struct_size = t->struct_size,
        .queue_pairs = t->queue_pairs,
        .ring_frames = t->ring_frames,
    };
    struct vio_net_backend b = {0};
    ck_assert_int_eq(vio_net_loopback_open(&cfg, &b), t->want);
    ck_assert_ptr_null(b.ops);
    ck_assert_int_eq(vio_net_loopback_open(&cfg, NULL), -EINVAL);
}
END_TEST

START_TEST(test_open_old_struct_size)
{
    /* A caller compiled against a config that ended after queue_pairs. */
    struct vio_net_backend_config cfg = {.queue_pairs = 2, .mac_swap = true};
    cfg.struct_size = (uint32_t)(offsetof(struct vio_net_backend_config, queue_pairs) +
                                 sizeof(cfg.queue_pairs));
    struct vio_net_backend b = {0};
    ck_assert_int_eq(vio_net_loopback_open(&cfg, &b), 0);
    ck_assert_uint_eq(b.queue_pairs, 2);
    /* mac_swap lies beyond the declared size: ignored */
    uint8_t f[20], g[20];
    fill(f, sizeof(f), 9);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(f));
    ck_assert_mem_eq(f, g, sizeof(f));
    vio_net_backend_destroy(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* data path */

START_TEST(test_round_trip)
{
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    uint8_t f[1514], g[2048];
    fill(f, sizeof(f), 1);
    struct vio_net_hdr h = {.flags = VIO_NET_HDR_F_DATA_VALID, .hdr_len = htole16(54),
                            .csum_start = htole16(34), .csum_offset = htole16(16),
                            .num_buffers = htole16(7)};
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), -EAGAIN);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), -EAGAIN);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), &h), 0);
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), sizeof(f));
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), sizeof(f)); /* peeking does not consume */
    struct vio_net_hdr r;
    memset(&r, 0xa5, sizeof(r));
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), sizeof(f));
    ck_assert_mem_eq(f, g, sizeof(f));
    ck_assert_uint_eq(r.flags, h.flags);
    ck_assert_uint_eq(r.gso_type, h.gso_type);
    ck_assert_uint_eq(r.hdr_len, h.hdr_len);
    ck_assert_uint_eq(r.csum_start, h.csum_start);
    ck_assert_uint_eq(r.csum_offset, h.csum_offset);
    ck_assert_uint_eq(le16toh(r.num_buffers), 1); /* one frame, one buffer */
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), -EAGAIN);

    /* NULL header on tx means "no offload": rx reports a zero header */
    ck_assert_int_eq(tx_buf(&b, 0, f, 60, NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), 60);
    ck_assert_uint_eq(r.flags, 0);
    ck_assert_uint_eq(r.gso_type, 0);
    vio_net_backend_destroy(&b);
}
END_TEST

/* rx_view lends the frame instead of copying it: the bytes stay put across more rx_view calls
 * and until the next tx; it consumes, reports the header and drops what does not fit */
START_TEST(test_rx_view)
{
    struct vio_net_backend b = open_lb(2, 4, false, NULL);
    uint8_t f1[100], f2[1514];
    fill(f1, sizeof(f1), 11);
    fill(f2, sizeof(f2), 12);
    struct vio_net_hdr h = {.flags = VIO_NET_HDR_F_DATA_VALID, .num_buffers = htole16(5)};
    const void *v1 = NULL, *v2 = NULL;
    struct vio_net_hdr r;
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, &v1, 2048), -EAGAIN);
    ck_assert_int_eq(tx_buf(&b, 0, f1, sizeof(f1), &h), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f2, sizeof(f2), NULL), 0);
    memset(&r, 0xa5, sizeof(r));
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, &v1, 2048), sizeof(f1));
    ck_assert_uint_eq(r.flags, VIO_NET_HDR_F_DATA_VALID);
    ck_assert_uint_eq(le16toh(r.num_buffers), 1);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v2, 2048), sizeof(f2));
    ck_assert_ptr_ne(v1, v2);
    ck_assert_mem_eq(v1, f1, sizeof(f1)); /* the first view is still intact */
    ck_assert_mem_eq(v2, f2, sizeof(f2));
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), -EAGAIN); /* both consumed */
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, &v1, 2048), -EAGAIN);
    /* too long for the caller: dropped, the next frame comes */
    ck_assert_int_eq(tx_buf(&b, 0, f2, sizeof(f2), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f1, sizeof(f1), NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, &v1, sizeof(f2) - 1), -EMSGSIZE);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, &v1, sizeof(f1)), sizeof(f1));
    ck_assert_mem_eq(v1, f1, sizeof(f1));
    /* bad arguments */
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 2, &r, &v1, 2048), -EINVAL);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, &r, NULL, 2048), -EINVAL);
    /* the other pair is separate */
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 1, &r, &v1, 2048), -EAGAIN);
    vio_net_backend_destroy(&b);
}
END_TEST

/* Slots: frames up to 2048 bytes live in the compact area, larger ones in the big one, each
 * intact whatever its neighbours' sizes; a ring that runs empty starts again at slot 0 (the
 * view of the next frame is where the first frame was), one that never empties walks on. */
START_TEST(test_slot_areas)
{
    struct vio_net_backend b = open_lb(1, 4, false, NULL);
    static uint8_t big[9000], edge[2049];
    uint8_t small[2048];
    fill(big, sizeof(big), 21);
    fill(edge, sizeof(edge), 22);
    fill(small, sizeof(small), 23);
    const void *v0 = NULL, *v = NULL, *w = NULL;
    /* sizes around the boundary, in one ring, all back intact and in order */
    ck_assert_int_eq(tx_buf(&b, 0, small, sizeof(small), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, edge, sizeof(edge), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, big, sizeof(big), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, small, 60, NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v0, sizeof(big)), sizeof(small));
    ck_assert_mem_eq(v0, small, sizeof(small));
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v, sizeof(big)), sizeof(edge));
    ck_assert_mem_eq(v, edge, sizeof(edge));
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v, sizeof(big)), sizeof(big));
    ck_assert_mem_eq(v, big, sizeof(big));
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &w, sizeof(big)), 60);
    ck_assert_mem_eq(w, small, 60);
    /* the small frames sit LB_SMALL (2048) apart in one area: slot 0 and slot 3 */
    ck_assert_int_eq((int)((const uint8_t *)w - (const uint8_t *)v0), 3 * 2048);
    /* empty now: the next frame goes to slot 0 again */
    fill(small, sizeof(small), 24);
    ck_assert_int_eq(tx_buf(&b, 0, small, 100, NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, small + 100, 100, NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v, sizeof(big)), 100);
    ck_assert_ptr_eq(v, v0);
    ck_assert_mem_eq(v, small, 100);
    /* not empty (one frame left): the next frame goes behind it, not to slot 0 */
    ck_assert_int_eq(tx_buf(&b, 0, small + 200, 100, NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &v, sizeof(big)), 100);
    ck_assert_mem_eq(v, small + 100, 100);
    ck_assert_int_eq(vio_net_backend_rx_view(&b, 0, NULL, &w, sizeof(big)), 100);
    ck_assert_mem_eq(w, small + 200, 100);
    ck_assert_int_eq((int)((const uint8_t *)w - (const uint8_t *)v), 2048);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_scatter_gather)
{
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    uint8_t f[1000], g[1000];
    fill(f, sizeof(f), 3);
    struct iovec tx[4] = {{f, 1}, {f + 1, 0}, {f + 1, 500}, {f + 501, 499}};
    ck_assert_int_eq(vio_net_backend_tx(&b, 0, NULL, tx, 4), 0);
    memset(g, 0, sizeof(g));
    struct iovec rx[3] = {{g, 7}, {g + 7, 0}, {g + 7, 993}};
    ck_assert_int_eq(vio_net_backend_rx(&b, 0, NULL, rx, 3), sizeof(f));
    ck_assert_mem_eq(f, g, sizeof(f));
    /* an exact fit is not a truncation */
    ck_assert_int_eq(vio_net_backend_tx(&b, 0, NULL, tx, 4), 0);
    struct iovec rx2[2] = {{g, 1}, {g + 1, 999}};
    ck_assert_int_eq(vio_net_backend_rx(&b, 0, NULL, rx2, 2), sizeof(f));
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_mac_swap)
{
    struct vio_net_backend b = open_lb(1, 0, true, NULL);
    uint8_t f[64], g[64];
    fill(f, sizeof(f), 5);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(f));
    ck_assert_mem_eq(g, f + 6, 6);
    ck_assert_mem_eq(g + 6, f, 6);
    ck_assert_mem_eq(g + 12, f + 12, sizeof(f) - 12);
    /* too short to hold two addresses: untouched */
    ck_assert_int_eq(tx_buf(&b, 0, f, 11, NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), 11);
    ck_assert_mem_eq(g, f, 11);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_ring_full)
{
    struct vio_net_backend b = open_lb(1, 4, false, NULL);
    uint8_t f[100], g[100];
    int txfd = vio_net_backend_tx_fd(&b, 0);
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    for (uint32_t i = 0; i < 4; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    }
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), -EAGAIN);
    ck_assert(!(poll_fd(txfd, POLLOUT) & POLLOUT));
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), -EAGAIN); /* still full, still blocked */
    ck_assert(!(poll_fd(txfd, POLLOUT) & POLLOUT));
    /* one rx frees one slot: tx_fd writable again, one more tx fits */
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
    fill(f, sizeof(f), 0);
    ck_assert_mem_eq(f, g, sizeof(g));
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    fill(f, sizeof(f), 4);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), -EAGAIN);
    /* FIFO order survives the wrap-around */
    for (uint32_t i = 1; i <= 4; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
        ck_assert_mem_eq(f, g, sizeof(g));
    }
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), -EAGAIN);
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    vio_net_backend_destroy(&b);
}
END_TEST

/* drop_when_full: a frame sent into a full ring is taken and dropped (tx returns 0), counted
 * per queue pair; the queued frames are untouched and tx_fd never stops polling writable. */
START_TEST(test_drop_when_full)
{
    struct vio_net_backend_config cfg = {
        .struct_size = sizeof(cfg), .queue_pairs = 2, .ring_frames = 4, .drop_when_full = true};
    struct vio_net_backend b = {0};
    ck_assert_int_eq(vio_net_loopback_open(&cfg, &b), 0);
    uint8_t f[100], g[100];
    int txfd = vio_net_backend_tx_fd(&b, 0);
    for (uint32_t i = 0; i < 4; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    }
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 0), 0);
    /* two iovecs, so the drop reads a gathered frame too */
    fill(f, sizeof(f), 100);
    struct iovec two[2] = {{f, 30}, {f + 30, 70}};
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(vio_net_backend_tx(&b, 0, NULL, two, 2), 0);
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 0), 3);
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 1), 0);
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    /* too long is still an error, not a drop */
    static uint8_t big[70000];
    ck_assert_int_eq(tx_buf(&b, 0, big, sizeof(big), NULL), -EMSGSIZE);
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 0), 3);
    for (uint32_t i = 0; i < 4; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
        ck_assert_mem_eq(f, g, sizeof(g));
    }
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), -EAGAIN);
    /* room again: the next frame is kept */
    fill(f, sizeof(f), 7);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
    ck_assert_mem_eq(f, g, sizeof(g));
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 0), 3);
    /* out of range, other backends, NULL */
    ck_assert_uint_eq(vio_net_loopback_full_drops(&b, 2), 0);
    ck_assert_uint_eq(vio_net_loopback_full_drops(NULL, 0), 0);
    struct vio_net_backend other = {.ops = NULL};
    ck_assert_uint_eq(vio_net_loopback_full_drops(&other, 0), 0);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_flush)
{
    struct vio_net_backend b = open_lb(2, 4, false, NULL);
    uint8_t f[100], g[100];
    int rxfd = vio_net_backend_rx_fd(&b, 0), txfd = vio_net_backend_tx_fd(&b, 0);
    for (uint32_t i = 0; i < 4; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
        ck_assert_int_eq(tx_buf(&b, 1, f, sizeof(f), NULL), 0);
    }
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), -EAGAIN); /* full, tx_fd held */
    ck_assert(!(poll_fd(txfd, POLLOUT) & POLLOUT));
    vio_net_backend_flush(&b, 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), -EAGAIN);
    ck_assert(!(poll_fd(rxfd, POLLIN) & POLLIN));
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    vio_net_backend_flush(&b, 0); /* empty: harmless */
    vio_net_backend_flush(&b, 7); /* no such pair: ignored */
    /* the other pair keeps its frames; the flushed one works as new, in FIFO order */
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 1), (ssize_t)sizeof(f));
    for (uint32_t i = 10; i < 14; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    }
    ck_assert(poll_fd(rxfd, POLLIN) & POLLIN);
    for (uint32_t i = 10; i < 14; i++) {
        fill(f, sizeof(f), i);
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
        ck_assert_mem_eq(f, g, sizeof(g));
    }
    ck_assert(!(poll_fd(rxfd, POLLIN) & POLLIN));
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_polling_mode)
{
    struct vio_net_backend b = open_lb(1, 4, false, NULL);
    uint8_t f[100], g[100];
    int rxfd = vio_net_backend_rx_fd(&b, 0), txfd = vio_net_backend_tx_fd(&b, 0);
    vio_net_backend_set_polling(&b, 0, true);
    vio_net_backend_set_polling(&b, 5, true); /* no such pair: ignored */
    fill(f, sizeof(f), 1);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert(!(poll_fd(rxfd, POLLIN) & POLLIN)); /* stale on purpose: no system call */
    vio_net_backend_set_polling(&b, 0, false);
    ck_assert(poll_fd(rxfd, POLLIN) & POLLIN); /* synced: a frame waits */
    vio_net_backend_set_polling(&b, 0, true);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
    ck_assert_mem_eq(f, g, sizeof(g));
    ck_assert(poll_fd(rxfd, POLLIN) & POLLIN); /* stale */
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), -EAGAIN); /* full: still reported */
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);                    /* stale */
    vio_net_backend_set_polling(&b, 0, false);
    ck_assert(!(poll_fd(txfd, POLLOUT) & POLLOUT)); /* synced: full */
    ck_assert(poll_fd(rxfd, POLLIN) & POLLIN);
    /* back in event mode the transitions work as before */
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
    ck_assert(poll_fd(txfd, POLLOUT) & POLLOUT);
    ck_assert(!(poll_fd(rxfd, POLLIN) & POLLIN));
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert(poll_fd(rxfd, POLLIN) & POLLIN);
    /* polling that empties the ring, then off: rx_fd stops polling readable */
    vio_net_backend_set_polling(&b, 0, true);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
    vio_net_backend_set_polling(&b, 0, false);
    ck_assert(!(poll_fd(rxfd, POLLIN) & POLLIN));
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_short_rx_iov)
{
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    uint8_t f[100], g[100];
    fill(f, sizeof(f), 11);
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f, 50, NULL), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, 99, NULL), -EMSGSIZE); /* dropped */
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), 50);
    ck_assert_int_eq(rx_buf(&b, 0, g, 50, NULL), 50);
    ck_assert_mem_eq(f, g, 50);
    ck_assert_int_eq(rx_buf(&b, 0, g, 0, NULL), -EAGAIN);
    /* zero-capacity rx of a queued frame drops it too */
    ck_assert_int_eq(tx_buf(&b, 0, f, 10, NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx(&b, 0, NULL, NULL, 0), -EMSGSIZE);
    ck_assert(!(poll_fd(vio_net_backend_rx_fd(&b, 0), POLLIN) & POLLIN));
    vio_net_backend_destroy(&b);
}
END_TEST

struct bad_tx {
    unsigned qp;
    size_t len;
    int want;
};

static const struct bad_tx bad_txs[] = {
    {2, 60, -EINVAL},         /* queue pair out of range */
    {0, 0, -EINVAL},          /* empty frame */
    {0, 65536 + 65, -EMSGSIZE}, /* larger than a slot */
    {0, 1u << 20, -EMSGSIZE},
};

START_TEST(test_tx_invalid)
{
    const struct bad_tx *t = &bad_txs[_i];
    struct vio_net_backend b = open_lb(2, 0, false, NULL);
    uint8_t *f = calloc(1, t->len + 1);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tx_buf(&b, t->qp, f, t->len, NULL), t->want);
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), -EAGAIN);
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 1), -EAGAIN);
    free(f);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_max_frame)
{
    struct vio_net_backend b = open_lb(1, 2, false, NULL);
    size_t len = 65536 + 64;
    uint8_t *f = malloc(len), *g = malloc(len);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(g);
    fill(f, len, 77);
    ck_assert_int_eq(tx_buf(&b, 0, f, len, NULL), 0);
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), (ssize_t)len);
    ck_assert_int_eq(rx_buf(&b, 0, g, len, NULL), (ssize_t)len);
    ck_assert_mem_eq(f, g, len);
    free(f);
    free(g);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_rx_invalid)
{
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    uint8_t g[10];
    ck_assert_int_eq(rx_buf(&b, 1, g, sizeof(g), NULL), -EINVAL);
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 1), -EINVAL);
    ck_assert_int_eq(vio_net_backend_rx(&b, 0, NULL, NULL, 1), -EINVAL);
    ck_assert_int_eq(vio_net_backend_tx(&b, 0, NULL, NULL, 1), -EINVAL);
    vio_net_backend_destroy(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* readiness */

START_TEST(test_eventfd_readiness)
{
    struct vio_net_backend b = open_lb(1, 8, false, NULL);
    int fd = vio_net_backend_rx_fd(&b, 0);
    uint8_t f[60], g[60];
    fill(f, sizeof(f), 2);
    ck_assert(!(poll_fd(fd, POLLIN) & POLLIN));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
            ck_assert(poll_fd(fd, POLLIN) & POLLIN);
        }
        for (int i = 0; i < 5; i++) {
            ck_assert(poll_fd(fd, POLLIN) & POLLIN); /* readable while frames wait */
            ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
        }
        ck_assert(!(poll_fd(fd, POLLIN) & POLLIN)); /* and not a moment longer */
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), -EAGAIN);
        ck_assert(!(poll_fd(fd, POLLIN) & POLLIN));
    }
    /* interleaved: one in, one out */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), NULL), 0);
        ck_assert(poll_fd(fd, POLLIN) & POLLIN);
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), NULL), sizeof(g));
        ck_assert(!(poll_fd(fd, POLLIN) & POLLIN));
    }
    vio_net_backend_destroy(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* queue pairs */

START_TEST(test_queue_pairs_independent)
{
    struct vio_net_backend b = open_lb(4, 4, false, NULL);
    uint8_t f[80], g[80];
    for (unsigned q = 0; q < 4; q++)
        ck_assert_int_ne(vio_net_backend_rx_fd(&b, q), vio_net_backend_rx_fd(&b, (q + 1) % 4));
    fill(f, sizeof(f), 42);
    ck_assert_int_eq(tx_buf(&b, 1, f, sizeof(f), NULL), 0);
    for (unsigned q = 0; q < 4; q++) {
        ck_assert_int_eq(!!(poll_fd(vio_net_backend_rx_fd(&b, q), POLLIN) & POLLIN), q == 1);
        if (q != 1)
            ck_assert_int_eq(rx_buf(&b, q, g, sizeof(g), NULL), -EAGAIN);
    }
    ck_assert_int_eq(rx_buf(&b, 1, g, sizeof(g), NULL), sizeof(g));
    ck_assert_mem_eq(f, g, sizeof(g));
    /* filling one queue pair leaves the others free */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tx_buf(&b, 2, f, sizeof(f), NULL), 0);
    ck_assert_int_eq(tx_buf(&b, 2, f, sizeof(f), NULL), -EAGAIN);
    ck_assert_int_eq(tx_buf(&b, 3, f, sizeof(f), NULL), 0);
    ck_assert(poll_fd(vio_net_backend_tx_fd(&b, 3), POLLOUT) & POLLOUT);
    ck_assert(!(poll_fd(vio_net_backend_tx_fd(&b, 2), POLLOUT) & POLLOUT));
    vio_net_backend_destroy(&b);
}
END_TEST

struct qp_thread {
    const struct vio_net_backend *b;
    unsigned qp;
    unsigned frames;
    unsigned bad;
};

static void *qp_worker(void *arg)
{
    struct qp_thread *t = arg;
    uint8_t f[600], g[600];
    unsigned sent = 0, got = 0;
    while (got < t->frames) {
        while (sent < t->frames) {
            size_t len = 60 + (sent * 7 + t->qp) % 540;
            fill(f, len, sent ^ (t->qp << 24));
            int rc = tx_buf(t->b, t->qp, f, len, NULL);
            if (rc == -EAGAIN)
                break;
            if (rc != 0) {
                t->bad++;
                return NULL;
            }
            sent++;
        }
        ssize_t n;
        while ((n = rx_buf(t->b, t->qp, g, sizeof(g), NULL)) > 0) {
            size_t len = 60 + (got * 7 + t->qp) % 540;
            fill(f, len, got ^ (t->qp << 24));
            if ((size_t)n != len || memcmp(f, g, len) != 0)
                t->bad++;
            got++;
        }
        if (n != -EAGAIN) {
            t->bad++;
            return NULL;
        }
    }
    return NULL;
}

START_TEST(test_queue_pairs_threads)
{
    /* One thread per queue pair, no lock between them: each must see exactly its own
     * frames, in order (run under TSan to check there is no shared mutable state). */
    enum { NQ = 4 };
    struct vio_net_backend b = open_lb(NQ, 16, false, NULL);
    pthread_t th[NQ];
    struct qp_thread t[NQ];
    for (unsigned q = 0; q < NQ; q++) {
        t[q] = (struct qp_thread){.b = &b, .qp = q, .frames = 20000};
        ck_assert_int_eq(pthread_create(&th[q], NULL, qp_worker, &t[q]), 0);
    }
    for (unsigned q = 0; q < NQ; q++) {
        ck_assert_int_eq(pthread_join(th[q], NULL), 0);
        ck_assert_uint_eq(t[q].bad, 0);
    }
    vio_net_backend_destroy(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* offload metadata */

/* A UDP/IPv4 frame whose checksum is left to the device (NEEDS_CSUM). */
static size_t udp_partial(uint8_t *f, size_t payload, struct vio_net_hdr *h)
{
    size_t len = 14 + 20 + 8 + payload;
    memset(f, 0, len);
    f[12] = 0x08;
    f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    ip[2] = (uint8_t)((20 + 8 + payload) >> 8);
    ip[3] = (uint8_t)(20 + 8 + payload);
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, (uint8_t[]){10, 0, 0, 1}, 4);
    memcpy(ip + 16, (uint8_t[]){10, 0, 0, 2}, 4);
    uint8_t *udp = ip + 20;
    udp[0] = 0x30;
    udp[1] = 0x39;
    udp[2] = 0x04;
    udp[3] = 0xd2;
    udp[4] = (uint8_t)((8 + payload) >> 8);
    udp[5] = (uint8_t)(8 + payload);
    fill(udp + 8, payload, 99);
    /* pseudo-header sum, not complemented, goes into the checksum field */
    uint32_t s = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + (uint32_t)(8 + payload);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    udp[6] = (uint8_t)(s >> 8);
    udp[7] = (uint8_t)s;
    memset(h, 0, sizeof(*h));
    h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
    h->csum_start = htole16(34);
    h->csum_offset = htole16(6);
    return len;
}

/* Verifies a UDP/IPv4 checksum over pseudo header + UDP: the sum must fold to 0xffff. */
static int udp_csum_ok(const uint8_t *f, size_t len)
{
    const uint8_t *ip = f + 14, *udp = ip + 20;
    size_t ulen = len - 34;
    uint32_t s = 0;
    for (int i = 12; i < 20; i += 2)
        s += (uint32_t)ip[i] << 8 | ip[i + 1];
    s += 17 + (uint32_t)ulen;
    for (size_t i = 0; i + 1 < ulen; i += 2)
        s += (uint32_t)udp[i] << 8 | udp[i + 1];
    if (ulen & 1)
        s += (uint32_t)udp[ulen - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return s == 0xffff;
}

START_TEST(test_offload_passthrough)
{
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    uint8_t f[200], g[200];
    struct vio_net_hdr h, r;
    size_t len = udp_partial(f, 101, &h);
    ck_assert_int_eq(tx_buf(&b, 0, f, len, &h), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), (ssize_t)len);
    ck_assert_uint_eq(r.flags, VIO_NET_HDR_F_NEEDS_CSUM); /* untouched without configure() */
    ck_assert_mem_eq(f, g, len);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_offload_csum_completed)
{
    struct log_probe lp = {0};
    struct vio_net_backend b = open_lb(1, 0, false, &lp);
    /* the driver can send partial checksums but not receive them */
    ck_assert_int_eq(vio_net_backend_configure(&b, FEAT(VIO_NET_F_CSUM)), 0);
    uint8_t f[200], g[200];
    struct vio_net_hdr h, r;
    for (size_t payload = 0; payload < 40; payload++) {
        size_t len = udp_partial(f, payload, &h);
        ck_assert_int_eq(tx_buf(&b, 0, f, len, &h), 0);
        ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), (ssize_t)len);
        ck_assert_uint_eq(r.flags, 0);
        ck_assert(udp_csum_ok(g, len));
        ck_assert_mem_eq(f, g, 40); /* only the checksum changed */
        ck_assert_mem_eq(f + 42, g + 42, len - 42);
    }
    /* offsets outside the frame: dropped, logged once */
    struct vio_net_hdr bad = {.flags = VIO_NET_HDR_F_NEEDS_CSUM, .csum_start = htole16(100),
                              .csum_offset = htole16(6)};
    ck_assert_int_eq(tx_buf(&b, 0, f, 60, &bad), 0);
    ck_assert_int_eq(tx_buf(&b, 0, f, 60, &bad), 0);
    unsigned before = lp.calls;
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), -EAGAIN);
    ck_assert_uint_eq(lp.calls, before + 1);
    /* DATA_VALID is cleared as well without GUEST_CSUM */
    struct vio_net_hdr dv = {.flags = VIO_NET_HDR_F_DATA_VALID};
    ck_assert_int_eq(tx_buf(&b, 0, f, 60, &dv), 0);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), 60);
    ck_assert_uint_eq(r.flags, 0);
    vio_net_backend_destroy(&b);
}
END_TEST

START_TEST(test_offload_gso_dropped)
{
    struct log_probe lp = {0};
    struct vio_net_backend b = open_lb(1, 0, false, &lp);
    ck_assert_int_eq(vio_net_backend_configure(&b, FEAT(VIO_NET_F_CSUM) |
                                                       FEAT(VIO_NET_F_GUEST_CSUM) |
                                                       FEAT(VIO_NET_F_HOST_TSO4) |
                                                       FEAT(VIO_NET_F_GUEST_TSO6)),
                     0);
    uint8_t f[3000], g[3000];
    fill(f, sizeof(f), 1);
    struct vio_net_hdr tso4 = {.flags = VIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIO_NET_HDR_GSO_TCPV4,
                               .hdr_len = htole16(54), .gso_size = htole16(1448),
                               .csum_start = htole16(34), .csum_offset = htole16(16)};
    struct vio_net_hdr tso6 = tso4;
    tso6.gso_type = VIO_NET_HDR_GSO_TCPV6;
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), &tso4), 0); /* guest cannot take TSO4 */
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), &tso6), 0); /* but TSO6 */
    ck_assert_int_eq(tx_buf(&b, 0, f, sizeof(f), &tso4), 0);
    struct vio_net_hdr r;
    ck_assert_int_eq(vio_net_backend_rx_peek(&b, 0), sizeof(f)); /* the TSO6 one */
    ck_assert_uint_eq(lp.calls, 1);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), sizeof(f));
    ck_assert_uint_eq(r.gso_type, VIO_NET_HDR_GSO_TCPV6);
    ck_assert_uint_eq(le16toh(r.gso_size), 1448);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), -EAGAIN);
    ck_assert_uint_eq(lp.calls, 1); /* logged once, not per frame */
    ck_assert_int_eq(lp.last_level, VIO_LOG_WARN);
    ck_assert(!(poll_fd(vio_net_backend_rx_fd(&b, 0), POLLIN) & POLLIN));
    vio_net_backend_destroy(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* volume */

START_TEST(test_million_frames)
{
    /* 10^6 frames through a 256-slot ring in bursts of varying size, every byte checked. */
    struct vio_net_backend b = open_lb(1, 0, false, NULL);
    static uint8_t f[2048], g[2048];
    const uint32_t total = 1000000;
    uint32_t sent = 0, got = 0;
    struct vio_net_hdr h = {0}, r;
    /* Plain checks inside the loop: every ck_assert records its location with a write(). */
    while (got < total) {
        uint32_t burst = 1 + (sent * 31) % 300; /* sometimes more than the ring holds */
        for (uint32_t i = 0; i < burst && sent < total; i++) {
            size_t len = 14 + (sent * 2654435761u) % 1501;
            fill(f, len, sent);
            h.gso_size = htole16((uint16_t)sent);
            int rc = tx_buf(&b, 0, f, len, &h);
            if (rc == -EAGAIN)
                break;
            if (rc != 0)
                ck_abort_msg("tx of frame %u: %d", sent, rc);
            sent++;
        }
        uint32_t drain = 1 + (got * 17) % 280;
        for (uint32_t i = 0; i < drain; i++) {
            ssize_t n = rx_buf(&b, 0, g, sizeof(g), &r);
            if (n == -EAGAIN)
                break;
            size_t len = 14 + (got * 2654435761u) % 1501;
            if (n != (ssize_t)len || le16toh(r.gso_size) != (uint16_t)got)
                ck_abort_msg("frame %u: length %zd, want %zu", got, n, len);
            fill(f, len, got);
            if (memcmp(f, g, len) != 0)
                ck_abort_msg("payload mismatch at frame %u", got);
            got++;
        }
    }
    ck_assert_uint_eq(sent, total);
    ck_assert_int_eq(rx_buf(&b, 0, g, sizeof(g), &r), -EAGAIN);
    vio_net_backend_destroy(&b);
}
END_TEST

static Suite *loopback_suite(void)
{
    Suite *s = suite_create("loopback");
    TCase *tc;

    tc = tcase_create("open");
    tcase_add_test(tc, test_open_defaults);
    tcase_add_loop_test(tc, test_open_bad_config, 0, sizeof(bad_cfgs) / sizeof(bad_cfgs[0]));
    tcase_add_test(tc, test_open_old_struct_size);
    suite_add_tcase(s, tc);

    tc = tcase_create("data");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_rx_view);
    tcase_add_test(tc, test_slot_areas);
    tcase_add_test(tc, test_scatter_gather);
    tcase_add_test(tc, test_mac_swap);
    tcase_add_test(tc, test_ring_full);
    tcase_add_test(tc, test_drop_when_full);
    tcase_add_test(tc, test_short_rx_iov);
    tcase_add_test(tc, test_flush);
    tcase_add_test(tc, test_polling_mode);
    tcase_add_loop_test(tc, test_tx_invalid, 0, sizeof(bad_txs) / sizeof(bad_txs[0]));
    tcase_add_test(tc, test_max_frame);
    tcase_add_test(tc, test_rx_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("readiness");
    tcase_add_test(tc, test_eventfd_readiness);
    suite_add_tcase(s, tc);

    tc = tcase_create("queue_pairs");
    tcase_add_test(tc, test_queue_pairs_independent);
    tcase_add_test(tc, test_queue_pairs_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("offload");
    tcase_add_test(tc, test_offload_passthrough);
    tcase_add_test(tc, test_offload_csum_completed);
    tcase_add_test(tc, test_offload_gso_dropped);
    suite_add_tcase(s, tc);

    tc = tcase_create("volume");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_million_frames);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loopback_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
