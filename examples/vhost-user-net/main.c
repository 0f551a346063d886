/* SPDX-License-Identifier: MIT */
/*
 * vio-vhost-user-net: a vhost-user virtio-net back-end daemon.
 *
 * Bridges one vhost-user socket (QEMU, DPDK virtio_user) to a tap interface, an
 * AF_PACKET socket bound to an interface, or the in-process loopback backend.
 *
 * Threads:
 * - the control thread (main) runs the vhost-user socket, the signals, the statistics
 *   and the control queue;
 * - one worker per queue pair polls the pair's kick eventfds and backend fds and calls
 *   the transport / device entry points for them.
 *
 * The transport tells us which fd to watch for which id through set_watch; the id says
 * whose fd it is (the control socket, ring q's kick, or the backend fd of pair p), so
 * each watch goes to the table of the thread that owns it. A worker holds its run lock
 * while it processes a batch; pause() takes every run lock, so the transport changes
 * the memory map and the rings only while no worker is inside the data path.
 *
 * Uses only the installed public headers, as any application would.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <virtio/device.h>
#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/vhost_user.h>

#include "vu_frontend.h"

#define PROG "vio-vhost-user-net"
#define MAX_PAIRS 64u
#define TAB_MAX 16u          /* watches per thread: 2 kicks + 2 backend fds + spares */
#define POLL_RING_MS 1       /* period for rings the front-end asked us to poll (no kick fd) */
#define POLL_US_DEFAULT 200u /* --poll-us: how long a worker keeps polling after work */
#define POLL_US_MAX 1000000u
#define BUSY_POLL_EVERY 1024u /* polling: rounds between two looks at the fds (a poll() when a burst comes in delays it) */
#define IDLE_CLOCK_EVERY 64u  /* polling: empty rounds between two looks at the clock */

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

enum backend_kind { BE_NONE, BE_TAP, BE_PACKET, BE_LOOPBACK };

struct opts {
    const char *socket_path;
    bool client;
    unsigned reconnect_ms;
    enum backend_kind kind;
    const char *ifname;
    unsigned queues;
    uint8_t mac[6];
    bool mac_valid;
    unsigned mtu;
    unsigned queue_size;
    unsigned lb_frames;
    bool lb_drop;
    bool mac_swap;
    bool promisc;
    double stats_s;
    bool busy_poll;         /* poll for ever (never sleep) */
    unsigned poll_us;       /* adaptive mode: poll this long after the last work; 0: never */
    unsigned idle_check_ms; /* 0: no idle check */
    uint64_t features_off;
    int verbosity; /* max vio_log_level printed */
    bool self_test;
};

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

static struct timespec g_t0;
static _Atomic int g_verbosity = VIO_LOG_INFO;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - g_t0.tv_sec) + (double)(t.tv_nsec - g_t0.tv_nsec) / 1e9;
}

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > atomic_load(&g_verbosity))
        return;
    const char *ln = level >= 0 && level <= 3 ? names[level] : "?";
    /* One fprintf per line: stdio locks the stream, lines from threads do not mix. */
    fprintf(stderr, "%s: [%9.3f] %s: %s: %s\n", PROG, now_s(), ln, object ? object : "-", msg);
}

__attribute__((format(printf, 2, 3))) static void logf_(int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_cb(NULL, level, "daemon", buf);
}

/* ------------------------------------------------------------------------ */
/* Watch tables                                                              */

struct went {
    uint32_t id;
    int fd;
    unsigned events;
};

/* The fds one thread watches. Written by any thread (under lock); the owner polls a copy
 * and rebuilds it when gen changes. */
struct wtab {
    pthread_mutex_t lock;
    struct went e[TAB_MAX];
    unsigned n;
    _Atomic unsigned gen;
};

static void wtab_set(struct wtab *t, int fd, unsigned events, uint32_t id)
{
    pthread_mutex_lock(&t->lock);
    unsigned i;
    for (i = 0; i < t->n && t->e[i].id != id; i++)
        ;
    if (!events) {
        if (i < t->n)
            t->e[i] = t->e[--t->n];
    } else if (i < t->n) {
        t->e[i].fd = fd;
        t->e[i].events = events;
    } else if (t->n < TAB_MAX) {
        t->e[t->n++] = (struct went){.id = id, .fd = fd, .events = events};
    } else {
        logf_(VIO_LOG_ERROR, "watch table full: fd %d (id 0x%x) not watched", fd, id);
    }
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
    pthread_mutex_unlock(&t->lock);
}

/* Copy the table into pollfds starting at pfd[first]; returns the new count. */
static unsigned wtab_snapshot(struct wtab *t, struct pollfd *pfd, uint32_t *ids, unsigned first,
                              unsigned *gen)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = first;
    for (unsigned i = 0; i < t->n; i++, n++) {
        pfd[n].fd = t->e[i].fd;
        pfd[n].events = (short)((t->e[i].events & VIO_WATCH_IN ? POLLIN : 0) |
                                (t->e[i].events & VIO_WATCH_OUT ? POLLOUT : 0));
        pfd[n].revents = 0;
        ids[n] = t->e[i].id;
    }
    *gen = atomic_load_explicit(&t->gen, memory_order_acquire);
    pthread_mutex_unlock(&t->lock);
    return n;
}

static unsigned revents_to_vio(short re)
{
    return (re & POLLIN ? VIO_WATCH_IN : 0u) | (re & POLLOUT ? VIO_WATCH_OUT : 0u) |
           (re & POLLERR ? VIO_WATCH_ERR : 0u) | (re & POLLHUP ? VIO_WATCH_HUP : 0u);
}

/* ------------------------------------------------------------------------ */
/* Daemon state                                                              */

struct daemon;

struct worker {
    struct daemon *dm;
    unsigned qp;
    pthread_t tid;
    bool started;
    pthread_mutex_t run_lock; /* held while inside the data path; pause() holds them all */
    _Atomic bool pause_req;
    _Atomic bool stop;
    _Atomic bool poll_rings;  /* a ring of this pair has no kick fd: poll it */
    int wake_fd;
    struct wtab tab;
    _Atomic uint64_t wakeups, batches;
    _Atomic uint64_t idle_kicks, idle_irqs; /* what the idle check rescued */
    struct idle_seen {
        bool seen, nudged;
        uint16_t used_idx, used_event;
    } idle[2]; /* rx, tx of this pair: worker thread only */
};

/* What a periodic look saw of one ring, to tell a ring that stopped moving. */
struct ring_watch {
    bool seen, waiting, warned;
    uint16_t last_avail;
    double since; /* when the ring was first seen waiting with this last_avail */
};

struct daemon {
    struct opts o;
    struct vio_net_backend be;     /* what the device sees */
    bool be_open;
    struct vio_net_dev *net;
    struct vio_device *dev;        /* the net device's generic interface */
    struct vio_vhost_user *vu;
    unsigned nworkers;
    struct worker *w;
    struct wtab ctl;               /* control socket and anything no worker owns */
    pthread_mutex_t pause_mx;
    pthread_cond_t pause_cv;
    int sig_fd;
    /* session timing */
    bool connected;
    double t_connect;
    bool ready_logged;
    unsigned sessions;
    double next_stats;
    struct vio_net_queue_stats *base; /* counters when the session began */
    struct ring_watch *watch;         /* per ring: indices at the last periodic look */
    int conn_fd;                      /* --self-test: an already connected socket, else -1 */
};

/* The worker running on this thread (NULL on the control thread). */
static _Thread_local const struct worker *tl_worker;

static bool on_worker_thread(const struct worker *w)
{
    return tl_worker == w;
}

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

/* Which worker owns a watch id (NULL: the control thread). */
static struct worker *owner_of(struct daemon *dm, uint32_t id)
{
    unsigned qp;
    if (id == VIO_VU_WATCH_CONTROL)
        return NULL;
    if (VIO_VU_WATCH_IS_KICK(id))
        qp = VIO_VU_WATCH_QUEUE(id) / 2u; /* rx 2p and tx 2p+1; the control queue is 2N */
    else
        qp = VIO_NET_WATCH_QP(id); /* the device's backend watches */
    return qp < dm->nworkers ? &dm->w[qp] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Transport hooks                                                           */

static void hook_set_watch(void *opaque, int fd, unsigned events, uint32_t id)
{
    struct daemon *dm = opaque;
    struct worker *w = owner_of(dm, id);
    logf_(VIO_LOG_DEBUG, "watch id 0x%08x fd %d events 0x%x -> %s %u", id, fd, events,
          w ? "worker" : "control", w ? w->qp : 0);
    if (!w) {
        wtab_set(&dm->ctl, fd, events, id);
        return;
    }
    wtab_set(&w->tab, fd, events, id);
    if (!on_worker_thread(w))
        wake(w->wake_fd); /* it may be sleeping in poll() on the old set */
}

static void hook_pause(void *opaque)
{
    struct daemon *dm = opaque;
    for (unsigned i = 0; i < dm->nworkers; i++)
        atomic_store_explicit(&dm->w[i].pause_req, true, memory_order_release);
    for (unsigned i = 0; i < dm->nworkers; i++)
        pthread_mutex_lock(&dm->w[i].run_lock);
}

static void hook_resume(void *opaque)
{
    struct daemon *dm = opaque;
    pthread_mutex_lock(&dm->pause_mx);
    for (unsigned i = 0; i < dm->nworkers; i++)
        atomic_store_explicit(&dm->w[i].pause_req, false, memory_order_release);
    pthread_cond_broadcast(&dm->pause_cv);
    pthread_mutex_unlock(&dm->pause_mx);
    for (unsigned i = 0; i < dm->nworkers; i++)
        pthread_mutex_unlock(&dm->w[i].run_lock);
}

static void print_stats(struct daemon *dm, const char *tag, const struct vio_net_queue_stats *base);
static void snapshot_stats(struct daemon *dm);

static void hook_session(void *opaque, bool connected)
{
    struct daemon *dm = opaque;
    dm->connected = connected;
    if (connected) {
        dm->sessions++;
        dm->t_connect = now_s();
        dm->ready_logged = false;
        if (dm->watch) /* a new session's rings: nothing seen of them yet */
            memset(dm->watch, 0, vio_device_num_queues(dm->dev) * sizeof(*dm->watch));
        snapshot_stats(dm);
        logf_(VIO_LOG_INFO, "session %u: front-end connected", dm->sessions);
    } else {
        char tag[48];
        snprintf(tag, sizeof(tag), "session-end session=%u", dm->sessions);
        print_stats(dm, tag, dm->base);
        logf_(VIO_LOG_INFO, "session %u ended%s", dm->sessions,
              dm->conn_fd >= 0 ? ""
              : dm->o.client ? (dm->o.reconnect_ms ? "; reconnecting" : "; not reconnecting")
                             : "; waiting for the next front-end");
    }
}

static int hook_device_request(void *opaque, enum vio_vhost_user_request req, uint64_t value)
{
    struct daemon *dm = opaque;
    switch (req) {
    case VIO_VU_REQ_SEND_RARP:
        logf_(VIO_LOG_INFO, "front-end asks for a RARP announce of %02x:%02x:%02x:%02x:%02x:%02x",
              (unsigned)(value & 0xff), (unsigned)(value >> 8 & 0xff),
              (unsigned)(value >> 16 & 0xff), (unsigned)(value >> 24 & 0xff),
              (unsigned)(value >> 32 & 0xff), (unsigned)(value >> 40 & 0xff));
        /* The guest announces itself when it can (GUEST_ANNOUNCE); nothing more to do. */
        if (vio_net_dev_announce(dm->net) < 0)
            logf_(VIO_LOG_DEBUG, "guest announce not negotiated");
        return 0;
    case VIO_VU_REQ_NET_SET_MTU:
        if (dm->o.mtu && value > dm->o.mtu) {
            logf_(VIO_LOG_WARN, "front-end MTU %" PRIu64 " above --mtu %u: refused", value,
                  dm->o.mtu);
            return -EINVAL;
        }
        logf_(VIO_LOG_INFO, "front-end MTU %" PRIu64, value);
        return 0;
    }
    return -ENOTSUP;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */

static void worker_wait_unpaused(struct worker *w)
{
    if (!atomic_load_explicit(&w->pause_req, memory_order_acquire))
        return;
    struct daemon *dm = w->dm;
    pthread_mutex_lock(&dm->pause_mx);
    while (atomic_load_explicit(&w->pause_req, memory_order_acquire) &&
           !atomic_load(&w->stop))
        pthread_cond_wait(&dm->pause_cv, &dm->pause_mx);
    pthread_mutex_unlock(&dm->pause_mx);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Busy mode: drive the pair without waiting for kicks (the rings stay silent). */
static unsigned worker_spin(struct worker *w)
{
    struct daemon *dm = w->dm;
    int a, b;
    vio_net_dev_process(dm->net, w->qp, 256, &a, &b);
    return (unsigned)(a > 0 ? a : 0) + (unsigned)(b > 0 ? b : 0);
}

/* Idle check: a worker that slept idle_check_ms with nothing happening looks at its rings,
 * a safety net for a driver that lost a notification. Chains waiting on a ring are taken as
 * if kicked (a lost kick); a ring whose used idx the driver has not caught up with, nothing
 * having moved for a whole period, gets one interrupt (a lost interrupt). Both are the
 * symptoms of a driver without its memory barriers, which QEMU before 8.1 makes of a
 * single-vCPU TCG guest. A spurious interrupt or kick costs a driver nothing. */
static void worker_idle_check(struct worker *w)
{
    struct daemon *dm = w->dm;
    for (unsigned k = 0; k < 2; k++) {
        unsigned qidx = 2u * w->qp + k;
        struct idle_seen *s = &w->idle[k];
        struct vio_queue_ring_state r;
        if (vio_vhost_user_ring_state(dm->vu, qidx, &r) < 0 || !r.size || r.broken) {
            s->seen = false;
            continue;
        }
        char qn[16];
        snprintf(qn, sizeof(qn), "%s%u", k ? "tx" : "rx", w->qp);
        if (r.avail_idx != r.last_avail) {
            /* a transmit ring's waiting chains are always work; a receive ring's buffers
             * only if frames were held back for them (taken now) */
            int n = vio_vhost_user_kick(dm->vu, qidx);
            if (n > 0) {
                atomic_fetch_add(&w->idle_kicks, 1);
                logf_(VIO_LOG_WARN, "ring %s: %s without a kick; the idle check took %d (a "
                      "lost kick)", qn, k ? "chains waited" : "frames waited for buffers", n);
                s->seen = false; /* it moved */
                continue;
            }
        }
        bool same = s->seen && s->used_idx == r.used_idx && s->used_event == r.used_event;
        if (!same)
            s->nudged = false;
        else if (r.event_idx && r.used_event != r.used_idx && !s->nudged) {
            if (vio_vhost_user_notify(dm->vu, qidx) == 0) {
                atomic_fetch_add(&w->idle_irqs, 1);
                logf_(VIO_LOG_WARN, "ring %s: the driver has not seen used idx %u for a whole "
                      "idle period (its used_event is %u); interrupt sent again", qn,
                      r.used_idx, r.used_event);
            }
            s->nudged = true;
        }
        s->seen = true;
        s->used_idx = r.used_idx;
        s->used_event = r.used_event;
    }
}

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* How long a worker goes on polling after the last round that found work (worker thread only).
 * The clock is read once every IDLE_CLOCK_EVERY empty rounds, so a stretch of idle polling
 * lasts the budget plus at most that many rounds (a few microseconds). */
struct spin_budget {
    uint64_t limit_ns; /* 0: never poll (--poll-us 0); UINT64_MAX: never stop (--busy-poll) */
    uint64_t idle_t0;  /* when the clock first saw this idle stretch; 0: not yet */
    unsigned empty;    /* empty rounds in a row */
    bool expired;      /* the budget is spent: re-enable the kicks and sleep */
};

static inline void budget_work(struct spin_budget *b)
{
    b->empty = 0;
    b->idle_t0 = 0;
    b->expired = false;
}

static inline void budget_empty(struct spin_budget *b)
{
    if (++b->empty % IDLE_CLOCK_EVERY != 0 || b->limit_ns == UINT64_MAX)
        return;
    uint64_t now = mono_ns();
    if (!b->idle_t0)
        b->idle_t0 = now;
    else if (now - b->idle_t0 >= b->limit_ns)
        b->expired = true;
}

/*
 * A worker has two states:
 * - sleeping: the driver's kicks are on, the worker waits in poll() on its kick eventfds,
 *   backend fds and wake fd, and handles what is ready;
 * - polling: the pair is in polling mode (vio_net_dev_set_polling: the driver's kicks stay
 *   off, the backend stays watched when the driver runs out of buffers), the worker drives
 *   both rings in a loop (worker_spin) and looks at its fds only every BUSY_POLL_EVERY rounds
 *   (a wake-up, a stale kick to drain, a readable backend).
 * Work found while sleeping starts polling; a poll budget (--poll-us, the adaptive default)
 * spent without any work ends it: the worker turns polling mode off, runs one more round
 * (which re-enables the kicks and then re-checks the rings, so a chain the driver published
 * just before it saw the kicks on is not left behind) and sleeps if that found nothing.
 * --busy-poll never spends the budget; --poll-us 0 never polls.
 */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct daemon *dm = w->dm;
    struct pollfd pfd[TAB_MAX + 1];
    uint32_t ids[TAB_MAX + 1];
    unsigned gen = ~0u, n = 1;
    struct spin_budget sb = {
        .limit_ns = dm->o.busy_poll ? UINT64_MAX : (uint64_t)dm->o.poll_us * 1000u,
        .expired = !dm->o.busy_poll}; /* the adaptive mode starts asleep */

    tl_worker = w;
    pfd[0] = (struct pollfd){.fd = w->wake_fd, .events = POLLIN};
    ids[0] = 0;
    unsigned spins = 0;
    bool polling = false;
    while (!atomic_load(&w->stop)) {
        if (atomic_load_explicit(&w->tab.gen, memory_order_acquire) != gen)
            n = wtab_snapshot(&w->tab, pfd, ids, 1, &gen);
        bool want = sb.limit_ns && !sb.expired;
        if (want != polling) {
            polling = want;
            pthread_mutex_lock(&w->run_lock);
            vio_net_dev_set_polling(dm->net, w->qp, polling);
            /* leaving: this round turns the kicks back on and re-checks the rings */
            if (!polling && worker_spin(w))
                budget_work(&sb);
            pthread_mutex_unlock(&w->run_lock);
            continue;
        }
        int timeout = -1;
        if (polling)
            timeout = 0;
        else if (atomic_load(&w->poll_rings))
            timeout = POLL_RING_MS;
        /* sleeping on kicks only: wake up after idle_check_ms anyway (worker_idle_check) */
        bool idle_check = timeout < 0 && dm->o.idle_check_ms;
        if (idle_check)
            timeout = (int)dm->o.idle_check_ms;
        /* Polling drives the rings itself: look at the fds (wake-ups, kicks to drain) only
         * every BUSY_POLL_EVERY rounds, a system call saved on the others. */
        if (timeout == 0 && ++spins % BUSY_POLL_EVERY != 0) {
            if (atomic_load_explicit(&w->pause_req, memory_order_acquire))
                worker_wait_unpaused(w);
            /* Up to BUSY_POLL_EVERY rounds under one hold of the run lock (a lock and an
             * unlock per round cost as much as a small burst); a pause request, a stop or
             * the spent budget ends the hold at once. */
            pthread_mutex_lock(&w->run_lock);
            do {
                if (worker_spin(w)) {
                    budget_work(&sb);
                } else {
                    budget_empty(&sb);
                    cpu_relax(); /* leave the core's resources to a sibling thread */
                }
            } while (++spins % BUSY_POLL_EVERY != BUSY_POLL_EVERY - 1 && !sb.expired &&
                     !atomic_load_explicit(&w->pause_req, memory_order_acquire) &&
                     !atomic_load_explicit(&w->stop, memory_order_relaxed));
            pthread_mutex_unlock(&w->run_lock);
            continue;
        }
        int r = poll(pfd, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            logf_(VIO_LOG_ERROR, "worker %u: poll: %s", w->qp, strerror(errno));
            break;
        }
        if (r == 0 && idle_check) {
            worker_wait_unpaused(w);
            pthread_mutex_lock(&w->run_lock);
            if (!atomic_load(&w->stop) && atomic_load(&w->tab.gen) == gen)
                worker_idle_check(w);
            pthread_mutex_unlock(&w->run_lock);
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rd = read(w->wake_fd, &v, sizeof(v));
            (void)rd;
        }
        if (atomic_load(&w->stop))
            break;
        worker_wait_unpaused(w);
        pthread_mutex_lock(&w->run_lock);
        atomic_fetch_add_explicit(&w->wakeups, 1, memory_order_relaxed);
        /* The control thread changed our fds while we slept: the results may name an fd
         * that was closed (and its number reused). Poll again on the new set. */
        if (atomic_load_explicit(&w->tab.gen, memory_order_acquire) != gen) {
            pthread_mutex_unlock(&w->run_lock);
            continue;
        }
        unsigned work = 0;
        for (unsigned i = 1; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (pfd[i].revents & POLLNVAL) {
                logf_(VIO_LOG_ERROR, "worker %u: fd %d (id 0x%x) is not open; no longer "
                      "watched", w->qp, pfd[i].fd, ids[i]);
                wtab_set(&w->tab, pfd[i].fd, 0, ids[i]);
                continue;
            }
            int rc = vio_vhost_user_dispatch(dm->vu, ids[i], revents_to_vio(pfd[i].revents));
            if (rc > 0)
                work += (unsigned)rc;
        }
        if (timeout >= 0) {
            /* polled rings (no kick fd) and polling: look at the rings ourselves */
            if (polling) {
                work += worker_spin(w);
            } else {
                for (unsigned k = 0; k < 2; k++) {
                    int rc = vio_vhost_user_kick(dm->vu, 2u * w->qp + k);
                    if (rc > 0)
                        work += (unsigned)rc;
                }
            }
        }
        atomic_fetch_add_explicit(&w->batches, 1, memory_order_relaxed);
        pthread_mutex_unlock(&w->run_lock);
        /* work after a sleep starts a polling stretch (when the mode polls at all) */
        if (work)
            budget_work(&sb);
        else if (polling)
            budget_empty(&sb);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */

static void queue_name(const struct daemon *dm, unsigned q, char *buf, size_t len)
{
    /* name the queue the way the device does: rx0 tx0 rx1 tx1 ... ctrl */
    if (q == 2u * dm->o.queues)
        snprintf(buf, len, "ctrl");
    else
        snprintf(buf, len, "%s%u", (q & 1) ? "tx" : "rx", q / 2);
}

/* Every started ring's indices, the device's and the guest's (workers paused while they are
 * read). A ring with chains available that none were taken from since the previous look, a
 * whole period, is reported once: the line says which side waits on which. */
static void print_rings(struct daemon *dm, const char *tag)
{
    unsigned nq = vio_device_num_queues(dm->dev);
    if (nq > 2 * MAX_PAIRS + 1)
        nq = 2 * MAX_PAIRS + 1;
    struct vio_queue_ring_state rs[2 * MAX_PAIRS + 1];
    bool ok[2 * MAX_PAIRS + 1];
    hook_pause(dm);
    for (unsigned q = 0; q < nq; q++)
        ok[q] = vio_vhost_user_ring_state(dm->vu, q, &rs[q]) == 0 && rs[q].size;
    hook_resume(dm);
    double now = now_s();
    for (unsigned q = 0; q < nq; q++) {
        struct ring_watch *w = &dm->watch[q];
        if (!ok[q]) {
            w->seen = false;
            continue;
        }
        const struct vio_queue_ring_state *r = &rs[q];
        char qn[32];
        queue_name(dm, q, qn, sizeof(qn));
        printf("stats: %s ring q=%s size=%u avail=%u last_avail=%u used=%u ring_used=%u "
               "inflight=%u used_event=%u avail_event=%u signalled=%u%s avail_flags=0x%x "
               "used_flags=0x%x event_idx=%d%s\n",
               tag, qn, r->size, r->avail_idx, r->last_avail, r->used_idx, r->ring_used_idx,
               r->inflight, r->used_event, r->avail_event, r->signalled_used,
               r->signalled_used_valid ? "" : "(invalid)", r->avail_flags, r->used_flags,
               r->event_idx ? 1 : 0, r->broken ? " broken" : "");
        if (strcmp(tag, "periodic") != 0)
            continue; /* the stall watch looks once a period */
        /* A receive ring's buffers wait for frames from the backend: only the rings the
         * guest sends on (transmit, control) must not keep chains waiting. */
        bool waiting = (q & 1 || q == 2u * dm->o.queues) && r->avail_idx != r->last_avail;
        if (w->seen && w->waiting && waiting && r->last_avail == w->last_avail) {
            if (!w->warned)
                logf_(VIO_LOG_WARN, "ring %s: %u chain(s) available and none taken for %.1f s "
                      "(avail %u, last_avail %u, avail_event %u, used %u, used_event %u)", qn,
                      (unsigned)(uint16_t)(r->avail_idx - r->last_avail), now - w->since,
                      r->avail_idx, r->last_avail, r->avail_event, r->used_idx, r->used_event);
            w->warned = true;
        } else {
            w->since = now;
            w->warned = false;
        }
        w->seen = true;
        w->waiting = waiting;
        w->last_avail = r->last_avail;
    }
}

/* Print every queue's counters; with @p base, the difference since that snapshot. */
static void print_stats(struct daemon *dm, const char *tag, const struct vio_net_queue_stats *base)
{
    unsigned nq = vio_device_num_queues(dm->dev);
    printf("stats: %s t=%.3f sessions=%u connected=%d active_pairs=%u\n", tag, now_s(),
           dm->sessions, dm->connected ? 1 : 0, vio_net_dev_active_pairs(dm->net));
    for (unsigned q = 0; q < nq; q++) {
        struct vio_net_queue_stats st;
        if (vio_net_dev_get_stats(dm->net, q, &st) < 0)
            continue;
        if (base) {
            st.packets -= base[q].packets;
            st.bytes -= base[q].bytes;
            st.stalls -= base[q].stalls;
            st.notifies -= base[q].notifies;
            for (unsigned k = 0; k < VIO_NET_DROP__COUNT; k++)
                st.drops[k] -= base[q].drops[k];
        }
        uint64_t drops = 0;
        for (unsigned k = 0; k < VIO_NET_DROP__COUNT; k++)
            drops += st.drops[k];
        char qn[32];
        queue_name(dm, q, qn, sizeof(qn));
        printf("stats: %s q=%s packets=%" PRIu64 " bytes=%" PRIu64 " drops=%" PRIu64
               " stalls=%" PRIu64 " notifies=%" PRIu64,
               tag, qn, st.packets, st.bytes, drops, st.stalls, st.notifies);
        for (unsigned k = 0; k < VIO_NET_DROP__COUNT; k++)
            if (st.drops[k])
                printf(" drop-%s=%" PRIu64, vio_net_drop_reason_name((enum vio_net_drop_reason)k),
                       st.drops[k]);
        printf("\n");
    }
    if (!base) {
        print_rings(dm, tag);
        for (unsigned i = 0; i < dm->nworkers; i++)
            printf("stats: %s worker=%u wakeups=%" PRIu64 " batches=%" PRIu64 " idle-kicks=%" PRIu64
                   " idle-irqs=%" PRIu64 "\n", tag, i, atomic_load(&dm->w[i].wakeups),
                   atomic_load(&dm->w[i].batches), atomic_load(&dm->w[i].idle_kicks),
                   atomic_load(&dm->w[i].idle_irqs));
        if (dm->o.lb_drop) {
            uint64_t fd = 0;
            for (unsigned q = 0; q < dm->o.queues; q++)
                fd += vio_net_loopback_full_drops(&dm->be, q);
            printf("stats: %s loopback-full-drops=%" PRIu64 "\n", tag, fd);
        }
    }
    printf("stats: %s end\n", tag);
    fflush(stdout);
}

static void snapshot_stats(struct daemon *dm)
{
    unsigned nq = vio_device_num_queues(dm->dev);
    for (unsigned q = 0; q < nq; q++)
        if (vio_net_dev_get_stats(dm->net, q, &dm->base[q]) < 0)
            memset(&dm->base[q], 0, sizeof(dm->base[q]));
}

/* ------------------------------------------------------------------------ */
/* Control thread                                                            */

/* After each batch of messages: rings without a kick fd, and the connect-to-ready time. */
static void after_messages(struct daemon *dm)
{
    unsigned nq = vio_device_num_queues(dm->dev);
    unsigned set_up = 0, running = 0;
    bool poll_pair[MAX_PAIRS] = {false};
    /* The state includes a running ring's avail index, which its worker moves: look while
     * the workers are paused (this runs once per batch of control messages). */
    struct vio_vhost_user_queue_state states[2 * MAX_PAIRS + 1];
    if (nq > 2 * MAX_PAIRS + 1)
        nq = 2 * MAX_PAIRS + 1;
    hook_pause(dm);
    for (unsigned q = 0; q < nq; q++)
        if (vio_vhost_user_queue_state(dm->vu, q, &states[q]) < 0)
            memset(&states[q], 0, sizeof(states[q]));
    hook_resume(dm);
    for (unsigned q = 0; q < nq; q++) {
        const struct vio_vhost_user_queue_state st = states[q];
        if (st.size)
            set_up++;
        if (st.running)
            running++;
        if (st.polling && st.running && q / 2 < dm->nworkers)
            poll_pair[q / 2] = true;
    }
    for (unsigned i = 0; i < dm->nworkers; i++) {
        if (atomic_exchange(&dm->w[i].poll_rings, poll_pair[i]) != poll_pair[i]) {
            logf_(VIO_LOG_INFO, "pair %u: %s", i,
                  poll_pair[i] ? "a ring has no kick fd: polling it every 1 ms" : "kick fds only");
            wake(dm->w[i].wake_fd);
        }
    }
    if (dm->connected && !dm->ready_logged && running >= 2 && running == set_up) {
        dm->ready_logged = true;
        logf_(VIO_LOG_INFO, "session %u: all %u rings running %.3f ms after connect", dm->sessions,
              running, (now_s() - dm->t_connect) * 1e3);
    }
}

static int control_loop(struct daemon *dm)
{
    struct pollfd pfd[TAB_MAX + 1];
    uint32_t ids[TAB_MAX + 1];
    unsigned gen = ~0u, n = 1;
    int exit_code = 0;

    pfd[0] = (struct pollfd){.fd = dm->sig_fd, .events = POLLIN};
    for (;;) {
        if (atomic_load_explicit(&dm->ctl.gen, memory_order_acquire) != gen)
            n = wtab_snapshot(&dm->ctl, pfd, ids, 1, &gen);
        int timeout = vio_vhost_user_timeout_ms(dm->vu);
        if (dm->o.stats_s > 0) {
            double d = dm->next_stats - now_s();
            int ms = d <= 0 ? 0 : (int)(d * 1e3) + 1;
            if (timeout < 0 || ms < timeout)
                timeout = ms;
        }
        int r = poll(pfd, n, timeout);
        if (r < 0 && errno != EINTR) {
            logf_(VIO_LOG_ERROR, "poll: %s", strerror(errno));
            return 1;
        }
        if (r > 0 && (pfd[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(dm->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
                    logf_(VIO_LOG_INFO, "%s: shutting down",
                          si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
                    return 0;
                }
                if (si.ssi_signo == SIGUSR1)
                    print_stats(dm, "now", NULL);
            }
        }
        if (r > 0 && atomic_load_explicit(&dm->ctl.gen, memory_order_acquire) == gen) {
            for (unsigned i = 1; i < n; i++) {
                if (!pfd[i].revents)
                    continue;
                int rc = vio_vhost_user_dispatch(dm->vu, ids[i], revents_to_vio(pfd[i].revents));
                if (ids[i] == VIO_VU_WATCH_CONTROL) {
                    if (rc < 0 && rc != -ECONNRESET && rc != -EPROTO)
                        logf_(VIO_LOG_DEBUG, "control socket: %s", strerror(-rc));
                    after_messages(dm);
                }
                /* the control socket may have moved: the rest of the results are stale */
                if (atomic_load_explicit(&dm->ctl.gen, memory_order_acquire) != gen)
                    break;
            }
        }
        if (vio_vhost_user_tick(dm->vu) == 1)
            after_messages(dm);
        if (dm->o.stats_s > 0 && now_s() >= dm->next_stats) {
            print_stats(dm, "periodic", NULL);
            dm->next_stats = now_s() + dm->o.stats_s;
        }
        /* a client without reconnect whose session ended has nothing more to do */
        if (!vio_vhost_user_connected(dm->vu) && vio_vhost_user_fd(dm->vu) < 0 &&
            vio_vhost_user_timeout_ms(dm->vu) < 0) {
            logf_(VIO_LOG_INFO, "session over and no reconnect: exiting");
            return exit_code;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Backends                                                                  */

static int open_backend(struct daemon *dm)
{
    struct vio_net_backend_config bc = {
        .struct_size = sizeof(bc), .ifname = dm->o.ifname, .queue_pairs = dm->o.queues,
        .promisc = dm->o.promisc, .mac_swap = dm->o.mac_swap, .ring_frames = dm->o.lb_frames,
        .log = log_cb, .drop_when_full = dm->o.lb_drop};
    int rc;
    switch (dm->o.kind) {
    case BE_TAP:
        rc = vio_net_tap_open(&bc, &dm->be);
        if (rc == 0)
            logf_(VIO_LOG_INFO, "tap %s, %u queue pair(s)", vio_net_tap_ifname(&dm->be),
                  dm->o.queues);
        break;
    case BE_PACKET:
        rc = vio_net_packet_open(&bc, &dm->be);
        if (rc == 0)
            logf_(VIO_LOG_INFO, "AF_PACKET on %s, %u queue pair(s)", dm->o.ifname, dm->o.queues);
        break;
    case BE_LOOPBACK:
        rc = vio_net_loopback_open(&bc, &dm->be);
        if (rc == 0)
            logf_(VIO_LOG_INFO, "loopback, %u queue pair(s)%s%s", dm->o.queues,
                  dm->o.mac_swap ? ", MAC swap" : "", dm->o.lb_drop ? ", drop when full" : "");
        break;
    default:
        rc = -EINVAL;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: cannot open the %s backend%s%s: %s\n", PROG,
                dm->o.kind == BE_TAP ? "tap" : dm->o.kind == BE_PACKET ? "AF_PACKET" : "loopback",
                dm->o.ifname ? " on " : "", dm->o.ifname ? dm->o.ifname : "", strerror(-rc));
        return rc;
    }
    dm->be_open = true;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Setup and teardown                                                        */

static int start_workers(struct daemon *dm)
{
    for (unsigned i = 0; i < dm->nworkers; i++) {
        struct worker *w = &dm->w[i];
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc) {
            fprintf(stderr, "%s: cannot start worker %u: %s\n", PROG, i, strerror(rc));
            return -rc;
        }
        w->started = true;
        char name[16]; /* the kernel's limit, NUL included */
        snprintf(name, sizeof(name), "vio-qp%u", i % 100000u);
        pthread_setname_np(w->tid, name);
    }
    return 0;
}

static void stop_workers(struct daemon *dm)
{
    for (unsigned i = 0; i < dm->nworkers; i++) {
        struct worker *w = &dm->w[i];
        atomic_store(&w->stop, true);
        pthread_mutex_lock(&dm->pause_mx);
        pthread_cond_broadcast(&dm->pause_cv);
        pthread_mutex_unlock(&dm->pause_mx);
        if (w->wake_fd >= 0)
            wake(w->wake_fd);
    }
    for (unsigned i = 0; i < dm->nworkers; i++) {
        if (dm->w[i].started)
            pthread_join(dm->w[i].tid, NULL);
        dm->w[i].started = false;
    }
}

static void wtab_init(struct wtab *t)
{
    pthread_mutex_init(&t->lock, NULL);
    t->n = 0;
    atomic_init(&t->gen, 0);
}

static int daemon_init(struct daemon *dm)
{
    wtab_init(&dm->ctl);
    pthread_mutex_init(&dm->pause_mx, NULL);
    pthread_cond_init(&dm->pause_cv, NULL);
    dm->sig_fd = -1;
    dm->nworkers = dm->o.queues;
    dm->w = calloc(dm->nworkers, sizeof(*dm->w));
    if (!dm->w)
        return -ENOMEM;
    for (unsigned i = 0; i < dm->nworkers; i++) {
        struct worker *w = &dm->w[i];
        w->dm = dm;
        w->qp = i;
        pthread_mutex_init(&w->run_lock, NULL);
        wtab_init(&w->tab);
        w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->wake_fd < 0)
            return -errno;
    }
    int rc = open_backend(dm);
    if (rc < 0)
        return rc;
    struct vio_net_dev_config nc = {
        .struct_size = sizeof(nc), .backend = &dm->be, .mac_valid = dm->o.mac_valid,
        .mtu = (uint16_t)dm->o.mtu, .max_queue_pairs = (uint16_t)dm->o.queues,
        .queue_size = (uint16_t)dm->o.queue_size, .features_off = dm->o.features_off,
        .log = log_cb};
    memcpy(nc.mac, dm->o.mac, 6);
    rc = vio_net_dev_new(&nc, &dm->net);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot create the virtio-net device: %s\n", PROG, strerror(-rc));
        return rc;
    }
    dm->dev = vio_net_dev_device(dm->net);
    dm->base = calloc(vio_device_num_queues(dm->dev), sizeof(*dm->base));
    dm->watch = calloc(vio_device_num_queues(dm->dev), sizeof(*dm->watch));
    if (!dm->base || !dm->watch)
        return -ENOMEM;
    return 0;
}

static int transport_init(struct daemon *dm)
{
    struct vio_vhost_user_config vc = {
        .struct_size = sizeof(vc), .socket_path = dm->o.socket_path, .client = dm->o.client,
        .use_fd = dm->conn_fd >= 0, .fd = dm->conn_fd,
        .reconnect_ms = dm->o.client ? dm->o.reconnect_ms : 0, .dev = dm->dev,
        .max_queue_size = (uint16_t)dm->o.queue_size, .log = log_cb, .opaque = dm,
        .pause = hook_pause, .resume = hook_resume, .set_watch = hook_set_watch,
        .session = hook_session, .device_request = hook_device_request};
    /* The socket file is created by bind(): 0600 through the umask, so no other user can
     * connect even for an instant. */
    mode_t old = umask(0177);
    int rc = vio_vhost_user_new(&vc, &dm->vu);
    umask(old);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot %s %s: %s\n", PROG, dm->o.client ? "connect to" : "listen on",
                dm->o.socket_path ? dm->o.socket_path : "(socketpair)", strerror(-rc));
        return rc;
    }
    if (!dm->o.client && dm->o.socket_path)
        chmod(dm->o.socket_path, 0600);
    return 0;
}

static void daemon_fini(struct daemon *dm)
{
    /* the transport first: it pauses the workers, stops the rings and unwatches their fds */
    vio_vhost_user_free(dm->vu);
    dm->vu = NULL;
    stop_workers(dm);
    vio_net_dev_free(dm->net);
    dm->net = NULL;
    if (dm->be_open)
        vio_net_backend_destroy(&dm->be);
    dm->be_open = false;
    for (unsigned i = 0; dm->w && i < dm->nworkers; i++) {
        if (dm->w[i].wake_fd >= 0)
            close(dm->w[i].wake_fd);
        pthread_mutex_destroy(&dm->w[i].run_lock);
        pthread_mutex_destroy(&dm->w[i].tab.lock);
    }
    free(dm->w);
    dm->w = NULL;
    free(dm->base);
    dm->base = NULL;
    free(dm->watch);
    dm->watch = NULL;
    if (dm->sig_fd >= 0)
        close(dm->sig_fd);
    pthread_mutex_destroy(&dm->ctl.lock);
    pthread_mutex_destroy(&dm->pause_mx);
    pthread_cond_destroy(&dm->pause_cv);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --socket PATH (--tap NAME | --iface NAME | --loopback) [options]\n"
"\n"
"A vhost-user virtio-net back-end: QEMU (-netdev vhost-user) or DPDK virtio_user connect\n"
"to PATH, and their frames go to a tap, an interface (AF_PACKET) or come straight back\n"
"(loopback).\n"
"\n"
"Socket:\n"
"  -s, --socket PATH       vhost-user unix socket (created 0600 in server mode)\n"
"  -c, --client            connect to PATH (the front-end listens: QEMU server=on)\n"
"      --reconnect MS      client: retry interval after a failure or a lost session\n"
"                          (default 1000; 0 = exit when the session ends)\n"
"Backend (exactly one):\n"
"  -t, --tap NAME          create or attach tap NAME (multi-queue with --queues > 1)\n"
"  -i, --iface NAME        AF_PACKET socket(s) bound to interface NAME (promiscuous)\n"
"  -l, --loopback          frames the guest sends come back to it\n"
"      --mac-swap          loopback: swap source and destination MAC on the way back\n"
"      --loopback-frames N loopback: frames buffered per queue pair (default 256)\n"
"      --loopback-drop     loopback: when the buffer is full, read and drop frames\n"
"                          instead of pushing back on the guest's TX queue (TX-only load)\n"
"      --no-promisc        AF_PACKET: leave the interface's promiscuous mode alone\n"
"Device:\n"
"  -q, --queues N          queue pairs, one worker thread each (default 1, max %u)\n"
"  -m, --mac MAC           MAC address offered to the guest (VIRTIO_NET_F_MAC)\n"
"      --mtu N             MTU offered to the guest (VIRTIO_NET_F_MTU, 68..65535)\n"
"      --queue-size N      largest ring size accepted (power of 2, default 1024)\n"
"      --features-off HEX  virtio feature bits (mask) never to offer\n"
"Running:\n"
"      --stats[=SEC]       print per-queue counters and ring indices every SEC seconds\n"
"                          (default 1) and warn about a transmit ring left waiting;\n"
"                          SIGUSR1 prints them at any time, exit prints the final ones\n"
"      --poll-us N         after work, a worker keeps polling its rings and backend with\n"
"                          the driver's kicks off for N microseconds before it turns the\n"
"                          kicks back on and sleeps (default %u; 0: event-driven, a\n"
"                          worker sleeps until a kick; max %u)\n"
"      --busy-poll         workers poll for ever and never sleep (a core each, even idle)\n"
"      --idle-check MS     a worker idle this long looks at its rings: chains left without a\n"
"                          kick are taken, a missed interrupt is sent again (default 1000;\n"
"                          0: off). A safety net for drivers that lose notifications\n"
"      --log-level LEVEL   the most verbose messages printed: error, warn, info\n"
"                          (default) or debug\n"
"  -v, --verbose           the same as --log-level debug\n"
"  -Q, --quiet             the same as --log-level error\n"
"      --self-test         run an internal loopback check (no peer needed) and exit\n"
"  -h, --help              this text\n"
"\n"
"SIGINT / SIGTERM stop the daemon cleanly. A front-end that disconnects (or breaks the\n"
"protocol) ends its session only: the daemon waits for (or reconnects to) the next one.\n"
"A bad command line: one line on stderr, exit status 2.\n",
            MAX_PAIRS, POLL_US_DEFAULT, POLL_US_MAX);
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_mac(const char *s, uint8_t *mac)
{
    unsigned b[6];
    char tail;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) !=
        6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    if (mac[0] & 1)
        return -1; /* multicast */
    return 0;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, PROG ": " __VA_ARGS__);                                                    \
        fprintf(stderr, " (see --help)\n");                                                        \
        return -1;                                                                                 \
    } while (0)

static int parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_RECONNECT = 256, O_MTU, O_QSIZE, O_STATS, O_BUSY, O_IDLE, O_LBFRAMES, O_LBDROP, O_MACSWAP,
           O_NOPROMISC, O_FOFF, O_SELFTEST, O_POLLUS, O_LOGLEVEL };
    static const struct option lo[] = {
        {"socket", required_argument, NULL, 's'},
        {"client", no_argument, NULL, 'c'},
        {"reconnect", required_argument, NULL, O_RECONNECT},
        {"tap", required_argument, NULL, 't'},
        {"iface", required_argument, NULL, 'i'},
        {"loopback", no_argument, NULL, 'l'},
        {"queues", required_argument, NULL, 'q'},
        {"mac", required_argument, NULL, 'm'},
        {"mtu", required_argument, NULL, O_MTU},
        {"queue-size", required_argument, NULL, O_QSIZE},
        {"stats", optional_argument, NULL, O_STATS},
        {"busy-poll", no_argument, NULL, O_BUSY},
        {"poll-us", required_argument, NULL, O_POLLUS},
        {"log-level", required_argument, NULL, O_LOGLEVEL},
        {"idle-check", required_argument, NULL, O_IDLE},
        {"loopback-frames", required_argument, NULL, O_LBFRAMES},
        {"loopback-drop", no_argument, NULL, O_LBDROP},
        {"mac-swap", no_argument, NULL, O_MACSWAP},
        {"no-promisc", no_argument, NULL, O_NOPROMISC},
        {"features-off", required_argument, NULL, O_FOFF},
        {"self-test", no_argument, NULL, O_SELFTEST},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'Q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (struct opts){.queues = 1, .queue_size = 1024, .reconnect_ms = 1000, .promisc = true,
                       .idle_check_ms = 1000, .poll_us = POLL_US_DEFAULT,
                       .verbosity = VIO_LOG_INFO};
    int kinds = 0, c;
    bool reconnect_given = false, poll_us_given = false;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":s:ct:i:lq:m:vQh", lo, NULL)) != -1) {
        switch (c) {
        case 's': o->socket_path = optarg; break;
        case 'c': o->client = true; break;
        case O_RECONNECT:
            if (parse_uint(optarg, 0, 3600000, &o->reconnect_ms))
                BAD("--reconnect wants milliseconds (0..3600000), not '%s'", optarg);
            reconnect_given = true;
            break;
        case 't': o->kind = BE_TAP; o->ifname = optarg; kinds++; break;
        case 'i': o->kind = BE_PACKET; o->ifname = optarg; kinds++; break;
        case 'l': o->kind = BE_LOOPBACK; kinds++; break;
        case 'q':
            if (parse_uint(optarg, 1, MAX_PAIRS, &o->queues))
                BAD("--queues wants 1..%u, not '%s'", MAX_PAIRS, optarg);
            break;
        case 'm':
            if (parse_mac(optarg, o->mac))
                BAD("--mac wants a unicast MAC like 52:54:00:12:34:56, not '%s'", optarg);
            o->mac_valid = true;
            break;
        case O_MTU:
            if (parse_uint(optarg, 68, 65535, &o->mtu))
                BAD("--mtu wants 68..65535, not '%s'", optarg);
            break;
        case O_QSIZE:
            if (parse_uint(optarg, 2, 32768, &o->queue_size) || (o->queue_size & (o->queue_size - 1)))
                BAD("--queue-size wants a power of 2 in 2..32768, not '%s'", optarg);
            break;
        case O_STATS:
            o->stats_s = 1.0;
            if (optarg) {
                char *end;
                o->stats_s = strtod(optarg, &end);
                if (end == optarg || *end || !(o->stats_s >= 0.01 && o->stats_s <= 86400))
                    BAD("--stats wants seconds (0.01..86400), not '%s'", optarg);
            }
            break;
        case O_BUSY: o->busy_poll = true; break;
        case O_POLLUS:
            if (parse_uint(optarg, 0, POLL_US_MAX, &o->poll_us))
                BAD("--poll-us wants microseconds (0..%u, 0: event-driven), not '%s'", POLL_US_MAX,
                    optarg);
            poll_us_given = true;
            break;
        case O_LOGLEVEL: {
            static const char *const lv[] = {"error", "warn", "info", "debug"};
            int k;
            for (k = 0; k < 4 && strcmp(optarg, lv[k]) != 0; k++)
                ;
            if (k == 4)
                BAD("--log-level wants error, warn, info or debug, not '%s'", optarg);
            o->verbosity = k;
            break;
        }
        case O_IDLE:
            if (parse_uint(optarg, 0, 3600000, &o->idle_check_ms))
                BAD("--idle-check wants milliseconds (0..3600000, 0: off), not '%s'", optarg);
            break;
        case O_LBFRAMES:
            if (parse_uint(optarg, 1, 32768, &o->lb_frames))
                BAD("--loopback-frames wants 1..32768, not '%s'", optarg);
            break;
        case O_LBDROP: o->lb_drop = true; break;
        case O_MACSWAP: o->mac_swap = true; break;
        case O_NOPROMISC: o->promisc = false; break;
        case O_FOFF: {
            char *end;
            errno = 0;
            o->features_off = strtoull(optarg, &end, 16);
            if (errno || end == optarg || *end)
                BAD("--features-off wants a hexadecimal mask, not '%s'", optarg);
            break;
        }
        case O_SELFTEST: o->self_test = true; break;
        case 'v': o->verbosity = VIO_LOG_DEBUG; break;
        case 'Q': o->verbosity = VIO_LOG_ERROR; break;
        case 'h': usage(stdout); exit(0);
        case ':': /* only at the end of argv: optind is past the option */
            if (strncmp(argv[optind - 1], "--", 2) == 0)
                BAD("option '%s' needs a value", argv[optind - 1]);
            BAD("option '-%c' needs a value", optopt);
        default: {
            /* an unknown or ambiguous long option leaves optopt 0 (optind is past it); a long
             * option without a value given one sets optopt to its val; an unknown short
             * option sets optopt to its letter (optind may still be on its group) */
            const char *a = argv[optind - 1];
            if (!optopt)
                BAD("unknown or ambiguous option '%s'", a);
            size_t len = strcspn(a, "=");
            for (const struct option *l = lo; l->name; l++)
                if (l->val == optopt && l->has_arg == no_argument && a[len] == '=' &&
                    strncmp(a, "--", 2) == 0 && strlen(l->name) == len - 2 &&
                    strncmp(a + 2, l->name, len - 2) == 0)
                    BAD("option '--%s' takes no value", l->name);
            BAD("unknown option '-%c'", optopt);
        }
        }
    }
    if (optind < argc)
        BAD("unexpected argument '%s'", argv[optind]);
    if (o->self_test)
        return 0;
    if (!o->socket_path)
        BAD("--socket PATH is required");
    if (kinds != 1)
        BAD("give exactly one of --tap NAME, --iface NAME, --loopback");
    if (poll_us_given && o->busy_poll)
        BAD("--busy-poll polls for ever: it does not take --poll-us");
    if (reconnect_given && !o->client)
        BAD("--reconnect only applies with --client");
    if ((o->lb_drop || o->mac_swap || o->lb_frames) && o->kind != BE_LOOPBACK)
        BAD("--loopback-frames, --loopback-drop and --mac-swap need --loopback");
    if (!o->promisc && o->kind != BE_PACKET)
        BAD("--no-promisc needs --iface");
    if (o->ifname && (!o->ifname[0] || strlen(o->ifname) >= 16))
        BAD("interface name '%s' is empty or longer than 15 characters", o->ifname);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* --self-test                                                               */

struct selftest {
    int fd;
    pthread_t main_thread;
    long want, got[2];
    char err[300];
};

/* The front-end half: a vhost-user front-end on the other end of a socketpair sends frames
 * through the daemon's loopback and checks they come back intact. */
static void *selftest_frontend(void *arg)
{
    struct selftest *st = arg;
    struct vufe f;
    vufe_open(&f, NULL, st->fd);
    struct vufe_config fc = {.mem_size = 64ull << 20, .queue_pairs = 2, .queue_size = 256,
                             .reply_ack = true, .log = log_cb};
    int rc = vufe_setup(&f, &fc);
    if (rc < 0) {
        snprintf(st->err, sizeof(st->err), "front-end setup failed: %s", f.err);
    } else {
        st->got[0] = vufe_echo(&f, (unsigned)st->want, 64, 10000);
        st->got[1] = vufe_echo(&f, (unsigned)st->want, 1514, 10000);
    }
    vufe_close(&f);
    pthread_kill(st->main_thread, SIGTERM); /* ends the control loop */
    return NULL;
}

static int self_test(struct daemon *dm, sigset_t *ss)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror(PROG ": socketpair");
        return 1;
    }
    dm->o.kind = BE_LOOPBACK;
    dm->o.queues = 2;
    dm->o.queue_size = 256;
    dm->conn_fd = sv[0];
    struct selftest st = {.fd = sv[1], .main_thread = pthread_self(), .want = 2000};
    int rc = daemon_init(dm);
    if (rc == 0) {
        dm->sig_fd = signalfd(-1, ss, SFD_CLOEXEC | SFD_NONBLOCK);
        rc = dm->sig_fd < 0 ? -errno : 0;
    }
    if (rc == 0)
        rc = start_workers(dm);
    if (rc == 0)
        rc = transport_init(dm);
    pthread_t fe;
    if (rc == 0 && pthread_create(&fe, NULL, selftest_frontend, &st) == 0) {
        control_loop(dm);
        pthread_join(fe, NULL);
    } else {
        close(sv[1]);
        snprintf(st.err, sizeof(st.err), "setup failed: %s", strerror(rc < 0 ? -rc : EIO));
    }
    if (dm->net)
        print_stats(dm, "final", NULL);
    daemon_fini(dm);
    bool ok = !st.err[0] && st.got[0] == 2 * st.want && st.got[1] == 2 * st.want;
    printf("self-test: %s: %ld/%ld 64-byte and %ld/%ld 1514-byte frames came back intact over "
           "2 queue pairs%s%s\n", ok ? "PASS" : "FAIL", st.got[0], st.want * 2,
           st.got[1], st.want * 2, st.err[0] ? "; " : "", st.err);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    clock_gettime(CLOCK_MONOTONIC, &g_t0);
    struct daemon dm;
    memset(&dm, 0, sizeof(dm));
    if (parse_args(argc, argv, &dm.o) < 0)
        return 2;
    atomic_store(&g_verbosity, dm.o.verbosity);
    vio_log_stderr_set_level(dm.o.verbosity); /* for anything that logs through the library's */
    dm.conn_fd = -1;
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Signals go to the control thread's signalfd; workers inherit the mask. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGUSR1);
    sigaddset(&ss, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (dm.o.self_test)
        return self_test(&dm, &ss);

    int rc = daemon_init(&dm);
    if (rc == 0) {
        dm.sig_fd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
        if (dm.sig_fd < 0) {
            rc = -errno;
            fprintf(stderr, "%s: signalfd: %s\n", PROG, strerror(errno));
        }
    }
    if (rc == 0)
        rc = start_workers(&dm);
    if (rc == 0)
        rc = transport_init(&dm);
    int code = rc < 0 ? 1 : 0;
    if (rc == 0) {
        char mode[48];
        if (dm.o.busy_poll)
            snprintf(mode, sizeof(mode), "busy polling");
        else if (dm.o.poll_us)
            snprintf(mode, sizeof(mode), "polling %u us after work", dm.o.poll_us);
        else
            snprintf(mode, sizeof(mode), "event-driven");
        logf_(VIO_LOG_INFO, "%s %s, %u queue pair(s), %s",
              dm.o.client ? "front-end socket" : "listening on", dm.o.socket_path, dm.o.queues,
              mode);
        dm.next_stats = now_s() + dm.o.stats_s;
        code = control_loop(&dm);
    }
    if (dm.net && rc == 0)
        print_stats(&dm, "final", NULL);
    daemon_fini(&dm);
    return code;
}
