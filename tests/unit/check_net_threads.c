/* SPDX-License-Identifier: MIT */
/*
 * Suite "net_threads": one thread per queue pair (guest and device side of that pair) plus a
 * control-queue thread that keeps rewriting the receive filter, with no lock between them.
 * Frames to the device's own MAC must always be delivered whatever the filter does, every
 * other frame is either delivered or dropped by the unicast filter, and payloads arrive intact:
 * a torn filter snapshot or a race between the pair threads would show up here (and under
 * -DVIO_SANITIZE=thread).
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_net.h>

#include "net_env.h"
#include "virtio/status.h"

#define PAIRS 2u
#define FRAMES 20000u /* per pair */
#define NRXBUF 64u
#define NTXBUF 32u

static struct env E;
static const uint8_t OTHER[6] = {0x52, 0x54, 0x00, 0x99, 0x99, 0x99};

/* Thread-safe generator backend: pair qp produces FRAMES frames, alternately to our MAC and
 * to OTHER, and counts what it is sent. State is per pair, touched only by that pair's thread. */
struct gen_qp {
    unsigned seq;
    unsigned tx_frames;
    uint64_t tx_bytes;
    char pad[64];
};
static struct gen_qp gen[PAIRS];

static size_t gen_len(unsigned seq)
{
    return 60 + (seq * 37u) % 1400u;
}

static uint8_t gen_byte(unsigned qp, unsigned seq, size_t i)
{
    return (uint8_t)(qp * 101u + seq * 13u + i * 7u);
}

static uint64_t gen_features(void *o)
{
    (void)o;
    return 0;
}

static int gen_tx(void *o, unsigned qp, const struct vio_net_hdr *h, const struct iovec *iov,
                  unsigned n)
{
    (void)o, (void)h;
    gen[qp].tx_frames++;
    for (unsigned i = 0; i < n; i++)
        gen[qp].tx_bytes += iov[i].iov_len;
    return 0;
}

static ssize_t gen_peek(void *o, unsigned qp)
{
    (void)o;
    return gen[qp].seq < FRAMES ? (ssize_t)gen_len(gen[qp].seq) : -EAGAIN;
}

static ssize_t gen_rx(void *o, unsigned qp, struct vio_net_hdr *h, const struct iovec *iov,
                      unsigned n)
{
    (void)o;
    unsigned seq = gen[qp].seq;
    if (seq >= FRAMES)
        return -EAGAIN;
    gen[qp].seq++;
    size_t len = gen_len(seq);
    uint8_t frame[1500];
    memcpy(frame, (seq & 1) ? OTHER : ENV_MAC, 6);
    memset(frame + 6, 0x02, 6);
    frame[12] = 0x08;
    frame[13] = 0x00;
    for (size_t i = 14; i < len; i++)
        frame[i] = gen_byte(qp, seq, i);
    /* the sequence number travels in the frame so the guest can check it */
    memcpy(frame + 14, &seq, sizeof(seq));
    size_t off = 0;
    for (unsigned i = 0; i < n && off < len; i++) {
        size_t m = len - off < iov[i].iov_len ? len - off : iov[i].iov_len;
        memcpy(iov[i].iov_base, frame + off, m);
        off += m;
    }
    if (off < len)
        return -EMSGSIZE;
    memset(h, 0, sizeof(*h));
    return (ssize_t)len;
}

static const struct vio_net_backend_ops gen_ops = {
    .name = "gen", .features = gen_features, .tx = gen_tx, .rx_peek = gen_peek, .rx = gen_rx};

/* Hooks that may be called from several threads at once. */
static _Atomic unsigned notifies[ENV_MAXQ], needs_reset;
static void th_notify(void *o, unsigned q)
{
    (void)o;
    atomic_fetch_add(&notifies[q], 1);
}
static void th_reset(void *o)
{
    (void)o;
    atomic_fetch_add(&needs_reset, 1);
}

static _Atomic bool stop_ctrl;

struct pair_result {
    unsigned delivered, ours, tx_sent;
};

static void *pair_thread(void *arg)
{
    unsigned qp = (unsigned)(uintptr_t)arg;
    unsigned rxq = 2 * qp, txq = 2 * qp + 1;
    struct pair_result *res = calloc(1, sizeof(*res));
    unsigned expect_seq = 0;
    unsigned tx_inflight = 0, tx_next = 0;
    while (1) {
        struct vio_net_queue_stats s;
        vio_net_dev_get_stats(E.nd, rxq, &s);
        if (s.packets + s.drops[VIO_NET_DROP_FILTER_UNICAST] == FRAMES && tx_next >= FRAMES / 4)
            break;
        int r = vio_net_dev_rx_process(E.nd, qp, 16);
        ck_assert_int_ge(r, 0);
        void *tok;
        uint32_t len;
        bool reposted = false;
        while (vio_drvq_get_used(E.drv[rxq], &tok, &len) == 0) {
            unsigned idx = (unsigned)(uintptr_t)tok - 1;
            struct gbuf *b = &E.bufs[rxq][idx];
            uint8_t buf[1526];
            arena_read(&E.a, b->gpa, buf, len);
            const uint8_t *f = buf + VIO_NET_HDR_SIZE;
            size_t flen = len - VIO_NET_HDR_SIZE;
            unsigned seq;
            memcpy(&seq, f + 14, sizeof(seq));
            ck_assert_uint_ge(seq, expect_seq); /* in order, gaps only for filtered frames */
            ck_assert_uint_lt(seq, FRAMES);
            /* frames to our own address are never filtered: none may be missing */
            ck_assert_uint_le(seq - expect_seq, ((expect_seq & 1) ? 1u : 0u));
            if (!(seq & 1))
                res->ours++;
            expect_seq = seq + 1;
            ck_assert_uint_eq(flen, gen_len(seq));
            for (size_t i = 18; i < flen; i++)
                if (f[i] != gen_byte(qp, seq, i))
                    ck_abort_msg("pair %u frame %u byte %zu corrupt", qp, seq, i);
            res->delivered++;
            struct vio_sg sg = {b->gpa, b->len};
            ck_assert_int_eq(vio_drvq_add(E.drv[rxq], &sg, 0, 1, tok), 0);
            reposted = true;
        }
        if (reposted && vio_drvq_kick_prepare(E.drv[rxq]))
            ck_assert_int_ge(vio_device_queue_notify(E.dev, rxq), 0);
        /* some TX on the same thread */
        if (tx_next < FRAMES / 4 && tx_inflight < NTXBUF) {
            struct gbuf *b = &E.bufs[txq][tx_next % NTXBUF];
            struct vio_sg sg = {b->gpa, b->len};
            ck_assert_int_eq(vio_drvq_add(E.drv[txq], &sg, 1, 0, (void *)(uintptr_t)1), 0);
            tx_next++;
            tx_inflight++;
            if (vio_drvq_kick_prepare(E.drv[txq]))
                ck_assert_int_ge(vio_device_queue_notify(E.dev, txq), 0);
        }
        while (vio_drvq_get_used(E.drv[txq], &tok, &len) == 0) {
            tx_inflight--;
            res->tx_sent++;
        }
    }
    while (tx_inflight) {
        vio_net_dev_tx_process(E.nd, qp, 0);
        void *tok;
        uint32_t len;
        while (vio_drvq_get_used(E.drv[txq], &tok, &len) == 0) {
            tx_inflight--;
            res->tx_sent++;
        }
    }
    return res;
}

static unsigned ctrl_rounds;

static uint8_t ctrl_cmd(uint64_t gpa, uint8_t cls, uint8_t cmd, const void *data, size_t dlen)
{
    uint8_t ch[2] = {cls, cmd}, ack = 0xEE;
    arena_write(&E.a, gpa, ch, 2);
    arena_write(&E.a, gpa + 2, data, dlen);
    arena_write(&E.a, gpa + 2 + dlen, &ack, 1);
    struct vio_sg sg[2] = {{gpa, (uint32_t)(2 + dlen)}, {gpa + 2 + dlen, 1}};
    ck_assert_int_eq(vio_drvq_add(E.drv[E.ctrl], sg, 1, 1, (void *)(uintptr_t)1), 0);
    vio_drvq_kick_prepare(E.drv[E.ctrl]);
    ck_assert_int_eq(vio_device_queue_notify(E.dev, E.ctrl), 1);
    void *tok;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(E.drv[E.ctrl], &tok, &len), 0);
    arena_read(&E.a, gpa + 2 + dlen, &ack, 1);
    return ack;
}

static void *ctrl_thread(void *arg)
{
    uint64_t gpa = (uint64_t)(uintptr_t)arg;
    uint8_t tbl_other[4 + 6 + 4], tbl_empty[8] = {0};
    uint32_t one = htole32(1), zero = 0;
    memcpy(tbl_other, &one, 4);
    memcpy(tbl_other + 4, OTHER, 6);
    memcpy(tbl_other + 10, &zero, 4);
    while (!atomic_load(&stop_ctrl)) {
        uint8_t on = ctrl_rounds & 1;
        ck_assert_uint_eq(ctrl_cmd(gpa, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1),
                          VIRTIO_NET_OK);
        ck_assert_uint_eq(ctrl_cmd(gpa, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET,
                                   (ctrl_rounds & 2) ? tbl_other : tbl_empty,
                                   (ctrl_rounds & 2) ? sizeof(tbl_other) : sizeof(tbl_empty)),
                          VIRTIO_NET_OK);
        uint16_t vid = htole16((uint16_t)(ctrl_rounds % 4096));
        ck_assert_uint_eq(ctrl_cmd(gpa, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, &vid, 2),
                          VIRTIO_NET_OK);
        ctrl_rounds++;
    }
    return NULL;
}

START_TEST(pairs_and_ctrl_in_parallel)
{
    struct env_opts o = {.pairs = PAIRS, .ops = &gen_ops, .peek = true};
    env_open(&E, &o);
    struct vio_device_hooks h = {.struct_size = sizeof(h), .notify_queue = th_notify,
                                 .needs_reset = th_reset};
    ck_assert_int_eq(vio_device_bind(E.dev, &h), 0);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                 (uint8_t[]){PAIRS, 0}, 2),
                      VIRTIO_NET_OK);
    /* everything the threads need is allocated up front (the arena is not thread-safe) */
    for (unsigned qp = 0; qp < PAIRS; qp++) {
        guest_post_rx(&E, qp, NRXBUF, 1526, 1);
        for (unsigned k = 0; k < NTXBUF; k++) {
            uint64_t gpa = arena_alloc(&E.a, 12 + 100, 16);
            ck_assert_uint_ne(gpa, 0);
            E.bufs[2 * qp + 1][k] = (struct gbuf){gpa, 112};
        }
    }
    uint64_t ctrl_gpa = arena_alloc(&E.a, 64, 16);
    pthread_t pt[PAIRS], ct;
    ck_assert_int_eq(pthread_create(&ct, NULL, ctrl_thread, (void *)(uintptr_t)ctrl_gpa), 0);
    for (unsigned qp = 0; qp < PAIRS; qp++)
        ck_assert_int_eq(pthread_create(&pt[qp], NULL, pair_thread, (void *)(uintptr_t)qp), 0);
    struct pair_result *res[PAIRS];
    for (unsigned qp = 0; qp < PAIRS; qp++)
        pthread_join(pt[qp], (void **)&res[qp]);
    atomic_store(&stop_ctrl, true);
    pthread_join(ct, NULL);
    ck_assert_uint_gt(ctrl_rounds, 0);
    for (unsigned qp = 0; qp < PAIRS; qp++) {
        struct vio_net_queue_stats s = env_stats(&E, 2 * qp);
        ck_assert_uint_eq(res[qp]->ours, FRAMES / 2);
        ck_assert_uint_eq(s.packets, res[qp]->delivered);
        ck_assert_uint_eq(s.packets + s.drops[VIO_NET_DROP_FILTER_UNICAST], FRAMES);
        s = env_stats(&E, 2 * qp + 1);
        ck_assert_uint_eq(s.packets, FRAMES / 4);
        ck_assert_uint_eq(gen[qp].tx_frames, FRAMES / 4);
        ck_assert_uint_eq(res[qp]->tx_sent, FRAMES / 4);
        free(res[qp]);
    }
    ck_assert_uint_eq(atomic_load(&needs_reset), 0);
    env_close(&E);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_threads");
    TCase *tc = tcase_create("parallel");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, pairs_and_ctrl_in_parallel);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
