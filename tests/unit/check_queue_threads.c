/* SPDX-License-Identifier: MIT */
/*
 * Suite "queue_threads": a driver thread and a device thread on one shared ring.
 *
 * The driver posts buffers (a readable header carrying a sequence number, then
 * one or more writable segments); the device pops them, writes a payload whose
 * first 16 bytes carry the sequence number and a checksum of the rest, and
 * pushes them back (out of order, in batches, in IN_ORDER batches, sometimes
 * after a rewind). The driver collects them one at a time or in bursts and
 * verifies every byte.
 *
 * Both sides sleep only through the documented protocol: the driver kicks when
 * kick_prepare() says so and the device interrupts when needs_notify() says
 * so, over eventfds; before sleeping a side calls enable_cb() (with event idx
 * half the time enable_cb_delayed(): woken only once 3/4 of its buffers are used)
 * or enable_notify() and re-checks. A side that sleeps for more than 5 s has lost a wakeup and
 * fails the test.
 *
 * Runs in a ThreadSanitizer build (label "threads"): the library's barriers
 * must give every payload byte a happens-before edge. VIO_THREAD_BUFFERS sets
 * the number of buffers per configuration.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "virtio/queue.h"
#include "virtio/status.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define WAKEUP_TIMEOUT_MS 5000
#define PAY_MAX 512u    /* writable bytes per buffer at most */
#define HDR_LEN 16u
#define MAX_IN_SEGS 3
#define DEV_BATCH 16

struct cfg {
    const char *name;
    bool ev, ind, ino;
    uint16_t size;
};

static const struct cfg cfgs[] = {
    {"plain", false, false, false, 256},
    {"event-idx", true, false, false, 256},
    {"indirect+in-order", false, true, true, 64},
    {"event-idx+indirect+in-order", true, true, true, 64},
    {"event-idx small ring", true, false, false, 8},
};
#define NCFG (sizeof(cfgs) / sizeof(cfgs[0]))

struct slot {
    uint64_t seq;      /* 0: free */
    uint32_t in_len;
    unsigned nin;
    struct vio_sg sg[1 + MAX_IN_SEGS];
};

struct shared {
    const struct cfg *c;
    struct arena a;
    struct vio_drvq *dq;
    struct vio_queue *q;
    int kick_fd, call_fd;
    uint64_t total;
    uint64_t hdr_gpa, pay_gpa;

    atomic_bool failed;
    atomic_bool stop;
    pthread_mutex_t msg_lock;
    char msg[512];

    /* driver-side state (driver thread only) */
    struct slot *slots; /* one per ring entry */
    uint64_t drv_kicks, drv_sleeps, drv_collected;
    /* device-side counters (device thread only) */
    uint64_t dev_calls, dev_sleeps, dev_popped, dev_rewinds, dev_inorder;
};

static void report_failure(struct shared *s, const char *fmt, ...)
{
    pthread_mutex_lock(&s->msg_lock);
    if (!atomic_load(&s->failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
        va_end(ap);
        atomic_store(&s->failed, true);
    }
    pthread_mutex_unlock(&s->msg_lock);
    /* wake the other side so it sees the failure */
    uint64_t one = 1;
    ssize_t w = write(s->kick_fd, &one, sizeof(one));
    w = write(s->call_fd, &one, sizeof(one));
    (void)w;
}

static uint64_t xs(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t fnv(uint64_t seq, const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seq;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Wait until @p fd is readable and drain it. False on timeout (a lost wakeup). */
static bool wait_fd(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do {
        r = poll(&p, 1, WAKEUP_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        return false;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    return true;
}

/* Drain @p fd without blocking. Safe right before enable_cb()/enable_notify(): whatever a
 * consumed signal announced is already in the ring, and the re-check after enabling sees it.
 * It keeps stale signals from hiding a lost wakeup. */
static void drain_fd(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}

/* Sometimes stall for a random short while, to widen the windows between a check and the
 * decision that depends on it (the races the notification protocol must survive). */
static void jitter(uint64_t *rng)
{
    uint64_t r = xs(rng);
    if ((r & 7) != 0)
        return;
    if (r & 8) {
        sched_yield();
        return;
    }
    for (volatile unsigned i = 0, n = (unsigned)((r >> 8) % 2000u); i < n; i++)
        ;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

/* ------------------------------------------------------------------------ */
/* Driver thread */

static bool drv_add(struct shared *s, uint64_t seq, uint64_t *rng)
{
    uint16_t size = s->c->size;
    /* the slot is chosen by the sequence number's position in a free stack kept implicitly:
     * look for a free slot starting at seq % size */
    unsigned k = (unsigned)(seq % size);
    for (unsigned t = 0; t < size && s->slots[k].seq; t++)
        k = (k + 1) % size;
    if (s->slots[k].seq)
        return false;
    struct slot *sl = &s->slots[k];
    unsigned nin = 1 + (unsigned)(xs(rng) % MAX_IN_SEGS);
    uint32_t in_len = HDR_LEN + nin + (uint32_t)(xs(rng) % (PAY_MAX - HDR_LEN - nin + 1));
    uint64_t base = s->pay_gpa + (uint64_t)k * PAY_MAX;
    uint32_t off = 0;
    for (unsigned i = 0; i < nin; i++) {
        uint32_t left = in_len - off;
        uint32_t l = (i + 1 == nin) ? left : 1 + (uint32_t)(xs(rng) % (left - (nin - 1 - i)));
        sl->sg[1 + i].addr = base + off;
        sl->sg[1 + i].len = l;
        off += l;
    }
    sl->sg[0].addr = s->hdr_gpa + (uint64_t)k * HDR_LEN;
    sl->sg[0].len = HDR_LEN;
    uint8_t *hdr = arena_ptr(&s->a, sl->sg[0].addr);
    memcpy(hdr, &seq, 8);
    memcpy(hdr + 8, &in_len, 4);
    memset(hdr + 12, 0, 4);
    int rc = vio_drvq_add(s->dq, sl->sg, 1, nin, (void *)(uintptr_t)(k + 1));
    if (rc == -ENOSPC)
        return false;
    if (rc != 0) {
        report_failure(s, "driver: add returned %d", rc);
        return false;
    }
    sl->seq = seq;
    sl->in_len = in_len;
    sl->nin = nin;
    return true;
}

static void drv_check(struct shared *s, void *tok, uint32_t len)
{
    uintptr_t k1 = (uintptr_t)tok;
    if (k1 == 0 || k1 > s->c->size || !s->slots[k1 - 1].seq) {
        report_failure(s, "driver: get_used returned token %p not in flight", tok);
        return;
    }
    struct slot *sl = &s->slots[k1 - 1];
    if (len < HDR_LEN || len > sl->in_len) {
        report_failure(s, "driver: seq %" PRIu64 " used len %u outside [16, %u]", sl->seq, len,
                       sl->in_len);
        return;
    }
    uint8_t buf[PAY_MAX];
    uint32_t off = 0;
    for (unsigned i = 0; i < sl->nin && off < len; i++) {
        uint32_t l = sl->sg[1 + i].len;
        if (l > len - off)
            l = len - off;
        memcpy(buf + off, arena_ptr(&s->a, sl->sg[1 + i].addr), l);
        off += l;
    }
    uint64_t seq, sum;
    memcpy(&seq, buf, 8);
    memcpy(&sum, buf + 8, 8);
    if (seq != sl->seq) {
        report_failure(s, "driver: buffer of seq %" PRIu64 " carries seq %" PRIu64, sl->seq, seq);
        return;
    }
    if (sum != fnv(seq, buf + HDR_LEN, len - HDR_LEN)) {
        report_failure(s, "driver: seq %" PRIu64 " checksum mismatch (len %u)", seq, len);
        return;
    }
    sl->seq = 0;
    s->drv_collected++;
}

static void *driver_main(void *arg)
{
    struct shared *s = arg;
    uint64_t rng = 0x1234567ull ^ (uint64_t)s->c->size;
    uint64_t next_seq = 1;
    uint64_t inflight = 0;

    vio_drvq_disable_cb(s->dq);
    while (s->drv_collected < s->total && !atomic_load(&s->failed)) {
        bool progress = false;
        /* post a random number of buffers (the ring may fill up) */
        unsigned want = 1 + (unsigned)(xs(&rng) % (s->c->size + 1u));
        unsigned added = 0;
        while (added < want && next_seq <= s->total && drv_add(s, next_seq, &rng)) {
            next_seq++;
            added++;
            inflight++;
        }
        if (added) {
            progress = true;
            jitter(&rng);
            if (vio_drvq_kick_prepare(s->dq)) {
                signal_fd(s->kick_fd);
                s->drv_kicks++;
            }
        }
        void *tok;
        uint32_t len;
        int rc = 0;
        unsigned got = 0, max_take = 1 + (unsigned)(xs(&rng) % (2u * s->c->size));
        if (xs(&rng) & 1) {
            /* one buffer at a time */
            while (got < max_take && (rc = vio_drvq_get_used(s->dq, &tok, &len)) == 0) {
                drv_check(s, tok, len);
                inflight--;
                got++;
            }
            if (rc == -EAGAIN)
                rc = 0;
        } else {
            /* bursts */
            void *toks[32];
            uint32_t lens[32];
            while (got < max_take) {
                unsigned want_n = max_take - got < 32 ? max_take - got : 32;
                rc = vio_drvq_get_used_burst(s->dq, toks, lens, want_n);
                if (rc <= 0)
                    break;
                for (int k = 0; k < rc; k++)
                    drv_check(s, toks[k], lens[k]);
                inflight -= (unsigned)rc;
                got += (unsigned)rc;
                rc = 0;
            }
        }
        if (rc < 0) {
            report_failure(s, "driver: get_used returned %d", rc);
            break;
        }
        if (got)
            progress = true;
        if (progress || inflight == 0)
            continue;
        /* nothing to do: sleep until the device uses a buffer */
        drain_fd(s->call_fd);
        jitter(&rng);
        /* with event idx, half the time the way Linux's transmit path waits: an interrupt
         * only once 3/4 of what is in flight is used (used_event ahead of the used idx) */
        bool delayed = s->c->ev && (xs(&rng) & 1);
        if (delayed ? vio_drvq_enable_cb_delayed(s->dq) : vio_drvq_enable_cb(s->dq)) {
            vio_drvq_disable_cb(s->dq);
            continue;
        }
        s->drv_sleeps++;
        if (!wait_fd(s->call_fd)) {
            report_failure(s, "driver: no interrupt for %d ms with %" PRIu64 " buffers in flight "
                    "(lost wakeup)", WAKEUP_TIMEOUT_MS, inflight);
            break;
        }
        vio_drvq_disable_cb(s->dq);
    }
    atomic_store(&s->stop, true);
    signal_fd(s->kick_fd);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Device thread */

struct popped {
    struct vio_chain c;
    struct iovec iov[1 + MAX_IN_SEGS];
    uint64_t seq;
};

/* Write the payload for chain @p p: len bytes, seq + checksum first. */
static uint32_t dev_fill(struct popped *p, uint64_t *rng, bool full)
{
    uint32_t in_len = p->c.in_len;
    uint32_t len = full ? in_len : HDR_LEN + (uint32_t)(xs(rng) % (in_len - HDR_LEN + 1));
    uint8_t buf[PAY_MAX];
    for (uint32_t i = HDR_LEN; i < len; i += 8) {
        uint64_t v = xs(rng);
        memcpy(buf + i, &v, (len - i) < 8 ? (len - i) : 8);
    }
    uint64_t sum = fnv(p->seq, buf + HDR_LEN, len - HDR_LEN);
    memcpy(buf, &p->seq, 8);
    memcpy(buf + 8, &sum, 8);
    uint32_t off = 0;
    for (unsigned i = p->c.n_out; i < p->c.n_out + p->c.n_in && off < len; i++) {
        size_t l = p->iov[i].iov_len;
        if (l > len - off)
            l = len - off;
        memcpy(p->iov[i].iov_base, buf + off, l);
        off += (uint32_t)l;
    }
    return len;
}

static void *device_main(void *arg)
{
    struct shared *s = arg;
    uint64_t rng = 0x9876543ull ^ (uint64_t)s->c->size;
    uint64_t expect_seq = 1;
    struct popped p[DEV_BATCH];

    vio_queue_disable_notify(s->q);
    while (!atomic_load(&s->failed)) {
        unsigned n = 0, want = 1 + (unsigned)(xs(&rng) % DEV_BATCH);
        int rc = 0;
        bool burst = false; /* chains already taken by the burst pop below */
        if (xs(&rng) & 1) {
            /* burst pop: chains' iovecs back to back in one array */
            struct vio_chain cs[DEV_BATCH];
            struct iovec flat[DEV_BATCH * (1 + MAX_IN_SEGS)];
            int got = vio_queue_pop_burst(s->q, cs, want, flat, DEV_BATCH * (1 + MAX_IN_SEGS));
            if (got < 0) {
                rc = got;
            } else {
                unsigned off = 0;
                for (int k = 0; k < got; k++) {
                    unsigned ni = cs[k].n_out + cs[k].n_in;
                    if (ni > 1 + MAX_IN_SEGS) {
                        report_failure(s, "device: burst chain with %u iovecs", ni);
                        return NULL;
                    }
                    p[k].c = cs[k];
                    memcpy(p[k].iov, flat + off, ni * sizeof(flat[0]));
                    off += ni;
                }
                want = (unsigned)got;
                burst = true;
            }
        }
        while (n < want) {
            if (!burst) {
                rc = vio_queue_pop(s->q, &p[n].c, p[n].iov, 1 + MAX_IN_SEGS);
                if (rc != 0)
                    break;
            }
            struct popped *e = &p[n];
            if (e->c.n_out != 1 || e->iov[0].iov_len != HDR_LEN || e->c.in_len < HDR_LEN ||
                e->c.in_len > PAY_MAX) {
                report_failure(s, "device: unexpected chain shape (n_out %u, in_len %u)",
                               e->c.n_out, e->c.in_len);
                return NULL;
            }
            uint32_t hdr_len;
            memcpy(&e->seq, e->iov[0].iov_base, 8);
            memcpy(&hdr_len, (uint8_t *)e->iov[0].iov_base + 8, 4);
            if (e->seq != expect_seq || hdr_len != e->c.in_len) {
                report_failure(s,
                               "device: popped seq %" PRIu64 " (in_len %u, header says %u), "
                               "expected seq %" PRIu64,
                               e->seq, e->c.in_len, hdr_len, expect_seq);
                return NULL;
            }
            expect_seq++;
            n++;
        }
        if (rc != 0 && rc != -EAGAIN) {
            report_failure(s, "device: pop returned %d", rc);
            return NULL;
        }
        if (n == 0) {
            if (atomic_load(&s->stop))
                break;
            /* nothing available: ask for kicks, re-check, sleep */
            drain_fd(s->kick_fd);
            jitter(&rng);
            if (vio_queue_enable_notify(s->q)) {
                vio_queue_disable_notify(s->q);
                continue;
            }
            if (atomic_load(&s->stop))
                break;
            s->dev_sleeps++;
            if (!wait_fd(s->kick_fd)) {
                report_failure(s, "device: no kick for %d ms (lost wakeup)", WAKEUP_TIMEOUT_MS);
                return NULL;
            }
            vio_queue_disable_notify(s->q);
            continue;
        }
        s->dev_popped += n;

        /* sometimes hand the newest chains back (a backend out of room) */
        if (n > 1 && xs(&rng) % 8 == 0) {
            unsigned r = 1 + (unsigned)(xs(&rng) % (n - 1));
            if ((rc = vio_queue_rewind(s->q, (uint16_t)r)) != 0) {
                report_failure(s, "device: rewind(%u) returned %d", r, rc);
                return NULL;
            }
            n -= r;
            expect_seq -= r;
            s->dev_rewinds++;
        }

        if (s->c->ino) {
            /* in order: IN_ORDER batches (skipped buffers fully written) or single pushes */
            unsigned k = 0;
            while (k < n) {
                unsigned cnt = 1 + (unsigned)(xs(&rng) % (n - k));
                for (unsigned j = k; j + 1 < k + cnt; j++)
                    (void)dev_fill(&p[j], &rng, true);
                uint32_t len = dev_fill(&p[k + cnt - 1], &rng, false);
                rc = vio_queue_push_in_order(s->q, p[k + cnt - 1].c.head, len, (uint16_t)cnt);
                if (rc != 0) {
                    report_failure(s, "device: push_in_order returned %d", rc);
                    return NULL;
                }
                s->dev_inorder += cnt > 1;
                k += cnt;
            }
        } else {
            /* out of order: shuffle, then one batch or single pushes */
            for (unsigned i = n; i > 1; i--) {
                unsigned j = (unsigned)(xs(&rng) % i);
                struct popped t = p[i - 1];
                p[i - 1] = p[j];
                p[j] = t;
            }
            struct vio_used_elem el[DEV_BATCH];
            for (unsigned i = 0; i < n; i++) {
                el[i].id = p[i].c.head;
                el[i].len = dev_fill(&p[i], &rng, false);
            }
            rc = 0;
            if (xs(&rng) & 1) {
                rc = vio_queue_push_batch(s->q, el, n);
            } else {
                for (unsigned i = 0; i < n && rc == 0; i++)
                    rc = vio_queue_push(s->q, (uint16_t)el[i].id, el[i].len);
            }
            if (rc != 0) {
                report_failure(s, "device: push returned %d", rc);
                return NULL;
            }
        }
        jitter(&rng);
        if (vio_queue_needs_notify(s->q)) {
            signal_fd(s->call_fd);
            s->dev_calls++;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */

static uint64_t buffers_per_cfg(void)
{
    const char *e = getenv("VIO_THREAD_BUFFERS");
    if (e && *e) {
        unsigned long long v = strtoull(e, NULL, 0);
        if (v)
            return v;
    }
    return UNDER_TSAN ? 500000u : 1000000u;
}

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "queue_threads: log %d %s: %s\n", level, object ? object : "-", msg);
}

START_TEST(test_threads)
{
    const struct cfg *c = &cfgs[_i];
    struct shared *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    s->c = c;
    s->total = buffers_per_cfg();
    pthread_mutex_init(&s->msg_lock, NULL);

    ck_assert_int_eq(arena_init_simple(&s->a, 0x10000000ull, 4u << 20), 0);
    uint64_t feat = vio_feature_bit(VIO_F_VERSION_1);
    if (c->ev)
        feat |= vio_feature_bit(VIO_F_EVENT_IDX);
    if (c->ind)
        feat |= vio_feature_bit(VIO_F_INDIRECT_DESC);
    if (c->ino)
        feat |= vio_feature_bit(VIO_F_IN_ORDER);
    struct vio_drvq_config dc;
    ck_assert_int_eq(arena_drvq_config(&s->a, &dc, c->size, feat, c->ind ? 1 + MAX_IN_SEGS : 0), 0);
    dc.log = log_cb;
    ck_assert_int_eq(vio_drvq_new(&dc, &s->dq), 0);
    struct vio_queue_config qc;
    arena_queue_config(&qc, c->size, "threads");
    qc.log = log_cb;
    ck_assert_int_eq(vio_queue_new(&qc, &s->q), 0);
    ck_assert_int_eq(
        vio_queue_setup(s->q, s->a.mem, c->size, feat, dc.desc, dc.driver, dc.device), 0);
    s->hdr_gpa = arena_alloc(&s->a, (uint64_t)c->size * HDR_LEN, 16);
    s->pay_gpa = arena_alloc(&s->a, (uint64_t)c->size * PAY_MAX, 64);
    ck_assert(s->hdr_gpa && s->pay_gpa);
    s->slots = calloc(c->size, sizeof(*s->slots));
    ck_assert_ptr_nonnull(s->slots);
    s->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert(s->kick_fd >= 0 && s->call_fd >= 0);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t drv, dev;
    ck_assert_int_eq(pthread_create(&dev, NULL, device_main, s), 0);
    ck_assert_int_eq(pthread_create(&drv, NULL, driver_main, s), 0);
    pthread_join(drv, NULL);
    pthread_join(dev, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    printf("queue_threads: %-28s size %3u: %" PRIu64 " buffers in %.2fs; driver kicks %" PRIu64
           " sleeps %" PRIu64 "; device interrupts %" PRIu64 " sleeps %" PRIu64 " rewinds %" PRIu64
           " in-order batches %" PRIu64 "\n",
           c->name, c->size, s->drv_collected, secs, s->drv_kicks, s->drv_sleeps, s->dev_calls,
           s->dev_sleeps, s->dev_rewinds, s->dev_inorder);
    fflush(stdout);

    ck_assert_msg(!atomic_load(&s->failed), "%s: %s", c->name, s->msg);
    ck_assert_uint_eq(s->drv_collected, s->total);
    ck_assert(!vio_queue_is_broken(s->q));
    ck_assert(!vio_drvq_is_broken(s->dq));
    ck_assert_uint_eq(vio_drvq_num_free(s->dq), c->size);
    ck_assert(!vio_queue_has_avail(s->q));

    close(s->kick_fd);
    close(s->call_fd);
    vio_queue_free(s->q);
    vio_drvq_free(s->dq);
    arena_fini(&s->a);
    free(s->slots);
    pthread_mutex_destroy(&s->msg_lock);
    free(s);
}
END_TEST

static Suite *queue_threads_suite(void)
{
    Suite *s = suite_create("queue_threads");
    TCase *tc = tcase_create("driver_device");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_threads, 0, (int)NCFG);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_threads_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
