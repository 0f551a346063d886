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
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_ring.h>
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

static uint64_t xs64(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545f4914f6cdd1dull;
}

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
    ck_assert_int_eq(vio_device_bind(E.dev, NULL), 0); /* env_open bound its own hooks */
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

/* ------------------------------------------------------------------------ */
/* TX wakeups: a guest thread and a device thread, each sleeping on an eventfd */

/* The guest transmits the way Linux's virtio_net does: bursts published with one kick
 * (xmit_more), interrupts off while it is busy, and when the ring is full it waits with
 * used_event 3/4 of the way ahead (enable_cb_delayed). The device thread runs the device's
 * own kick handler (vio_device_queue_notify) after each kick, and its notify hook writes the
 * guest's eventfd. Either side asleep for WAKE_MS means a lost kick or a lost interrupt. */
#if defined(__SANITIZE_THREAD__)
#define TXW_FRAMES 1000000u
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TXW_FRAMES 1000000u
#endif
#endif
#ifndef TXW_FRAMES
#define TXW_FRAMES 3000000u /* a lost-wakeup window this test can hit shows up within ~1M */
#endif
#define TXW_RING 256u
#define WAKE_MS 5000

static struct {
    int kick_fd, call_fd;
    _Atomic bool stop, failed;
    _Atomic unsigned sinks, interrupts;
    unsigned next_seq; /* backend side: the next sequence number expected */
    unsigned bad;
    char why[400];
    pthread_mutex_t lock;
    uint64_t gpa[TXW_RING];
    /* guest side */
    unsigned kicks, sleeps_full, sleeps_drain;
    /* device side */
    unsigned dev_sleeps;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void txw_fail(const char *fmt, unsigned a, unsigned b)
{
    pthread_mutex_lock(&W.lock);
    if (!atomic_load(&W.failed)) {
        int k = snprintf(W.why, sizeof(W.why), fmt, a, b);
        /* both sides' indices say who waits on whom (read racily: the test failed anyway) */
        struct vio_queue_ring_state r;
        if (k > 0 && (size_t)k < sizeof(W.why) && vio_queue_get_ring_state(E.q[1], &r) == 0)
            snprintf(W.why + k, sizeof(W.why) - (size_t)k,
                     "; ring: avail %u last_avail %u used %u used_event %u avail_event %u "
                     "signalled %u", r.avail_idx, r.last_avail, r.used_idx, r.used_event,
                     r.avail_event, r.signalled_used);
    }
    atomic_store(&W.failed, true);
    pthread_mutex_unlock(&W.lock);
    uint64_t one = 1;
    ssize_t n = write(W.kick_fd, &one, 8);
    n = write(W.call_fd, &one, 8);
    (void)n;
}

static size_t txw_len(unsigned seq)
{
    return 60 + (seq * 131u) % 1441u;
}

/* backend: every frame must come in order, with its length */
static int txw_tx(void *o, unsigned qp, const struct vio_net_hdr *h, const struct iovec *iov,
                  unsigned n)
{
    (void)o, (void)qp, (void)h;
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += iov[i].iov_len;
    unsigned seq = ~0u;
    if (n && iov[0].iov_len >= 18)
        memcpy(&seq, (const uint8_t *)iov[0].iov_base + 14, 4);
    if (seq != W.next_seq || len != txw_len(seq))
        W.bad++;
    W.next_seq = seq + 1;
    atomic_fetch_add(&W.sinks, 1);
    return 0;
}

static ssize_t txw_rx(void *o, unsigned qp, struct vio_net_hdr *h, const struct iovec *iov,
                      unsigned n)
{
    (void)o, (void)qp, (void)h, (void)iov, (void)n;
    return -EAGAIN; /* nothing to receive: this test is about transmit */
}

static const struct vio_net_backend_ops txw_ops = {.name = "txw", .features = gen_features,
                                                   .tx = txw_tx, .rx = txw_rx};

static void txw_notify(void *o, unsigned q)
{
    (void)o;
    if (q != 1)
        return;
    atomic_fetch_add(&W.interrupts, 1);
    uint64_t one = 1;
    ssize_t n = write(W.call_fd, &one, 8);
    (void)n;
}

static bool txw_wait(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do {
        r = poll(&p, 1, WAKE_MS);
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        return false;
    uint64_t v;
    ssize_t n = read(fd, &v, 8);
    (void)n;
    return true;
}

static void txw_drain(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, 8);
    (void)n;
}

static void *txw_device(void *arg)
{
    (void)arg;
    while (!atomic_load(&W.stop) && !atomic_load(&W.failed)) {
        W.dev_sleeps++;
        if (!txw_wait(W.kick_fd)) {
            if (!atomic_load(&W.stop))
                txw_fail("device: no kick for %u ms (%u frames sent): lost kick", WAKE_MS,
                         atomic_load(&W.sinks));
            break;
        }
        /* Now and then the device is late (2 ms), as a descheduled vhost worker is: the
         * guest then fills the ring and must take the delayed-interrupt wait. Without this
         * the full-ring path ran only when the scheduler happened to slow the device down
         * (an ASan run once kept up for all 3M frames and never filled the ring). */
        if (W.dev_sleeps % 2048u == 0)
            usleep(2000);
        if (vio_device_queue_notify(E.dev, 1) < 0)
            txw_fail("device: queue_notify failed (%u, %u)", 0, 0);
    }
    return NULL;
}

static void *txw_guest(void *arg)
{
    (void)arg;
    struct vio_drvq *dq = E.drv[1];
    uint64_t rng = 0x5eed;
    unsigned next = 0, inflight = 0, done = 0;
    unsigned freelist[TXW_RING], nfree = TXW_RING;
    for (unsigned i = 0; i < TXW_RING; i++)
        freelist[i] = i;
    while (done < TXW_FRAMES && !atomic_load(&W.failed)) {
        void *tok;
        uint32_t len;
        while (vio_drvq_get_used(dq, &tok, &len) == 0) {
            freelist[nfree++] = (unsigned)(uintptr_t)tok - 1;
            inflight--;
            done++;
        }
        /* a burst with one kick at its end */
        unsigned burst = 1 + (unsigned)(xs64(&rng) % 12u), added = 0;
        while (added < burst && nfree && next < TXW_FRAMES) {
            unsigned slot = freelist[--nfree];
            uint8_t f[12 + 1501] = {0};
            size_t fl = txw_len(next);
            memcpy(f + 12 + 14, &next, 4);
            arena_write(&E.a, W.gpa[slot], f, 12 + fl);
            struct vio_sg sg = {W.gpa[slot], (uint32_t)(12 + fl)};
            if (vio_drvq_add(dq, &sg, 1, 0, (void *)(uintptr_t)(slot + 1)) < 0) {
                txw_fail("guest: add failed at frame %u (%u)", next, 0);
                return NULL;
            }
            next++;
            inflight++;
            added++;
        }
        if (added && vio_drvq_kick_prepare(dq)) {
            W.kicks++;
            uint64_t one = 1;
            ssize_t n = write(W.kick_fd, &one, 8);
            (void)n;
        }
        bool full = !nfree;
        if (!full && next < TXW_FRAMES)
            continue; /* room left: keep sending */
        if (!inflight)
            continue;
        /* ring full (or all sent): wait for completions, delayed when full */
        txw_drain(W.call_fd);
        if (full ? vio_drvq_enable_cb_delayed(dq) : vio_drvq_enable_cb(dq)) {
            vio_drvq_disable_cb(dq);
            continue;
        }
        if (full)
            W.sleeps_full++;
        else
            W.sleeps_drain++;
        if (!txw_wait(W.call_fd)) {
            txw_fail("guest: no interrupt for %u ms with %u frames in flight (a lost "
                     "interrupt, or a lost kick left the device idle)", WAKE_MS, inflight);
            break;
        }
        vio_drvq_disable_cb(dq);
    }
    atomic_store(&W.stop, true);
    uint64_t one = 1;
    ssize_t n = write(W.kick_fd, &one, 8);
    (void)n;
    return NULL;
}

START_TEST(tx_wakeups_guest_and_device_threads)
{
    struct env_opts o = {.pairs = 1, .ops = &txw_ops, .qsize = TXW_RING};
    env_open(&E, &o);
    ck_assert(E.feats & (1ull << VIRTIO_RING_F_EVENT_IDX));
    W.kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    W.call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert_int_ge(W.kick_fd, 0);
    ck_assert_int_ge(W.call_fd, 0);
    struct vio_device_hooks h = {.struct_size = sizeof(h), .notify_queue = txw_notify,
                                 .needs_reset = th_reset};
    ck_assert_int_eq(vio_device_bind(E.dev, NULL), 0); /* env_open bound its own hooks */
    ck_assert_int_eq(vio_device_bind(E.dev, &h), 0);
    for (unsigned i = 0; i < TXW_RING; i++) {
        W.gpa[i] = arena_alloc(&E.a, 12 + 1501, 16);
        ck_assert_uint_ne(W.gpa[i], 0);
    }
    vio_drvq_disable_cb(E.drv[1]);
    pthread_t g, d;
    ck_assert_int_eq(pthread_create(&d, NULL, txw_device, NULL), 0);
    ck_assert_int_eq(pthread_create(&g, NULL, txw_guest, NULL), 0);
    pthread_join(g, NULL);
    pthread_join(d, NULL);
    fprintf(stderr, "net_threads: tx wakeups: %u frames, guest kicks %u, sleeps %u full + %u "
            "draining, device sleeps %u, interrupts %u\n", atomic_load(&W.sinks), W.kicks,
            W.sleeps_full, W.sleeps_drain, W.dev_sleeps, atomic_load(&W.interrupts));
    ck_assert_msg(!atomic_load(&W.failed), "%s", W.why);
    ck_assert_uint_eq(atomic_load(&W.sinks), TXW_FRAMES);
    ck_assert_uint_eq(W.bad, 0);
    ck_assert_uint_gt(W.sleeps_full, 0); /* the delayed wait was exercised */
    ck_assert_uint_eq(env_stats(&E, 1).packets, TXW_FRAMES);
    ck_assert_uint_eq(atomic_load(&needs_reset), 0);
    close(W.kick_fd);
    close(W.call_fd);
    env_close(&E);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_threads");
    TCase *tc = tcase_create("parallel");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, pairs_and_ctrl_in_parallel);
    tcase_add_test(tc, tx_wakeups_guest_and_device_threads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
