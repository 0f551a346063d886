/* SPDX-License-Identifier: MIT */
/*
 * virtio-net device model (device side) behind the generic device interface.
 *
 * Spec references are to the virtio 1.2 "Network Device" section
 * (device-types/net/description.tex). Layouts (struct virtio_net_hdr_v1,
 * struct virtio_net_config, control classes and commands) come from
 * <linux/virtio_net.h>; feature bit numbers from the public net_defs.h (the
 * installed UAPI header may predate HOST_USO).
 *
 * Threads: one per queue pair (RX and TX of the pair), one for the control
 * queue. What they share:
 *  - negotiated features, active pairs, link state: atomics;
 *  - the receive filter: two copies, a published pointer and one hazard
 *    pointer per pair (filt_enter / filt_begin below), so RX takes no lock;
 *  - config space (mac, status) and its generation: cfg_lock, never taken on
 *    the data path;
 *  - the watch state of a pair (which fds the device wants watched): wlock,
 *    taken only when that state changes (pause/resume, MQ changes);
 *  - counters: per queue, one writer each (relaxed atomics, no locked RMW).
 * Everything sized at creation; the data path never allocates.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "core/iov.h"
#include "core/log.h"
#include "core/util.h"
#include "device/net_internal.h"
#include "virtio/net.h"
#include "virtio/status.h"

#define HDR_LEN ((size_t)sizeof(struct virtio_net_hdr_v1))
#define TX_BATCH 32u
/* RX publishes the used ring every RX_BATCH chains (and at the end of every run): one used idx
 * store, one cache-line hand-over to the driver, per batch instead of per frame. */
#define RX_BATCH 32u
/* iovecs for one RX burst; a first chain that needs more is popped on its own */
#define RXC_IOV 64u
/* Deferred RX copies (backends with rx_view) held before one flush: headers and frame pieces */
#define RXCP_MAX 96u
/* Backends take at most this many iovecs per call (tap / AF_PACKET keep two for themselves
 * out of the kernel's 1024, see docs/backends.md); RX never hands them more. */
#define BACKEND_IOV_MAX 1022u
#define LOG_OBJ "virtio-net"
/* Largest frame without GSO when MTU is not negotiated: 1500 + Ethernet + one VLAN tag. */
#define RX_FRAME_NO_GSO 1518u
/* Ethernet + one VLAN tag: what may come on top of the MTU. */
#define L2_OVERHEAD 18u
/* Config space we expose: mac, status, max_virtqueue_pairs, mtu. */
#define CFG_SIZE ((uint32_t)offsetof(struct virtio_net_config, speed))

_Static_assert(sizeof(struct virtio_net_hdr_v1) == VIO_NET_HDR_SIZE, "virtio_net_hdr_v1 size");
_Static_assert(sizeof(struct vio_net_hdr) == VIO_NET_HDR_SIZE, "vio_net_hdr size");
_Static_assert(offsetof(struct vio_net_hdr, hdr_len) == offsetof(struct virtio_net_hdr_v1, hdr_len),
               "hdr_len offset");
_Static_assert(offsetof(struct vio_net_hdr, csum_start) ==
                   offsetof(struct virtio_net_hdr_v1, csum_start),
               "csum_start offset");
_Static_assert(offsetof(struct vio_net_hdr, num_buffers) ==
                   offsetof(struct virtio_net_hdr_v1, num_buffers),
               "num_buffers offset");
_Static_assert(VIO_NET_HDR_F_NEEDS_CSUM == VIRTIO_NET_HDR_F_NEEDS_CSUM, "flag values");
_Static_assert(VIO_NET_HDR_GSO_TCPV6 == VIRTIO_NET_HDR_GSO_TCPV6, "gso values");
_Static_assert(VIO_NET_S_ANNOUNCE == VIRTIO_NET_S_ANNOUNCE, "status values");
_Static_assert(VIO_NET_DROP__COUNT <= VIO_NET_DROP_SLOTS, "drop slots");
_Static_assert(VIO_WATCH_IN == 1 && VIO_WATCH_OUT == 4, "POLLIN / POLLOUT values");

/* ------------------------------------------------------------------------ */
/* State                                                                     */

struct qstats {
    vio_ctr packets, bytes, stalls, notifies;
    vio_ctr drops[VIO_NET_DROP__COUNT];
};

/* One queue as the device uses it. */
struct dq {
    struct vio_queue *q;  /* borrowed from the transport between start and stop */
    struct iovec *iov;    /* iov_max entries */
    bool broken_reported; /* needs_reset raised for this start */
    struct qstats st;
};

struct pair {
    struct dq rx, tx;
    struct vio_used_elem *rx_used;       /* queue_size entries: chains of the frames not yet
                                            published (rx_pend), then those of the frame at hand */
    unsigned rx_pend;                    /* used entries waiting in rx_used (0 between calls) */
    /* RX chain cache (see rx_take): chains [rxc_head, rxc_n) were taken from the ring by one
     * vio_queue_pop_burst and not used yet; empty between calls. */
    struct vio_chain rxc_ch[RX_BATCH];
    uint16_t rxc_off[RX_BATCH];          /* first iovec of chain k in rxc_iov */
    struct iovec rxc_iov[RXC_IOV];
    unsigned rxc_head, rxc_n;
    unsigned rxc_direct;                 /* chains of the frame at hand taken one by one */
    /* Deferred RX copies (rx_view backends, see rx_defer): guest destination, source in the
     * backend's frame or in rxcp_hdr; done by rx_copy_flush before used entries are published,
     * so always empty between calls. */
    struct rx_copy {
        void *dst;
        const void *src;
        size_t len;
    } rxcp[RXCP_MAX];
    unsigned rxcp_n;
    struct vio_net_hdr rxcp_hdr[RX_BATCH];
    unsigned rxcp_nhdr;
    struct vio_used_elem tx_used[TX_BATCH];
    struct vio_chain tx_chains[TX_BATCH]; /* one vio_queue_pop_burst */
    unsigned tx_nused;
    _Atomic bool rx_on, tx_on; /* queue started (read by the control thread for watches) */
    _Atomic bool rx_paused;    /* out of guest buffers: waiting for an RX kick */
    _Atomic bool rx_dead;      /* backend rx failed: stopped until restart/reset */
    _Atomic bool tx_blocked;   /* backend pushed back: waiting for the tx fd */
    _Atomic bool polling;      /* vio_net_dev_set_polling(): driver kicks stay off */
    int rx_fd, tx_fd;
    /* The filter copy this pair's RX is reading, NULL when none (hazard pointer). */
    _Atomic(struct vio_net_rx_filter *) hazard;
    pthread_mutex_t wlock;     /* the two fields below and the set_watch calls for this pair */
    unsigned w_rx, w_tx;       /* events requested through set_watch / reported by watches */
};

struct vio_net_dev {
    struct vio_device dev; /* generic interface: ops + this */
    struct vio_net_backend *be;
    bool be_view; /* the backend has rx_view: RX copies deferred (rx_defer) */
    vio_log_fn log;
    void *log_opaque;

    uint16_t max_pairs, qsize, ctrl_qsize;
    unsigned iov_max;
    uint64_t offered;     /* offer_all less what frontend_ctrl makes unsatisfiable */
    uint64_t offer_all;   /* the offer before the spec dependencies are applied */
    uint16_t mtu;
    uint8_t mac0[6]; /* power-on MAC (restored at reset) */
    bool link_up0;
    bool frontend_ctrl; /* the transport's frontend owns the control queue (cfg or bind flag) */
    bool frontend_ctrl_cfg; /* vio_net_dev_config::frontend_ctrl */

    _Atomic uint64_t features;  /* negotiated */
    _Atomic bool features_set;
    _Atomic unsigned active_pairs;
    _Atomic bool link_up;
    size_t rx_max_frame;        /* worst-case frame for the negotiated offloads */

    struct vio_device_hooks hooks;

    /* config space */
    pthread_mutex_t cfg_lock;
    uint8_t cfg_mac[6];
    uint16_t cfg_status;
    _Atomic uint32_t generation;

    /* receive filter (see filt_enter / filt_begin) */
    pthread_mutex_t filt_lock; /* serializes writers only */
    struct vio_net_rx_filter filt[2];
    _Atomic(struct vio_net_rx_filter *) filt_cur;

    _Atomic bool be_gone_logged, be_err_logged;

    struct pair *pairs;
    struct dq ctrl;
};

static inline bool has(uint64_t f, unsigned bit)
{
    return vio_has_feature(f, bit);
}

static inline uint64_t feats(const struct vio_net_dev *d)
{
    return atomic_load_explicit(&d->features, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static const char *const drop_names[VIO_NET_DROP__COUNT] = {
    [VIO_NET_DROP_SHORT_CHAIN] = "short-chain",
    [VIO_NET_DROP_LENGTH] = "length",
    [VIO_NET_DROP_HDR_INVALID] = "header-invalid",
    [VIO_NET_DROP_HDR_OFFLOAD] = "offload-not-negotiated",
    [VIO_NET_DROP_BACKEND] = "backend",
    [VIO_NET_DROP_LINK_DOWN] = "link-down",
    [VIO_NET_DROP_FILTER_UNICAST] = "filter-unicast",
    [VIO_NET_DROP_FILTER_MULTICAST] = "filter-multicast",
    [VIO_NET_DROP_FILTER_BROADCAST] = "filter-broadcast",
    [VIO_NET_DROP_FILTER_VLAN] = "filter-vlan",
    [VIO_NET_DROP_CTRL_INVALID] = "ctrl-invalid",
};

const char *vio_net_drop_reason_name(enum vio_net_drop_reason r)
{
    if ((unsigned)r >= VIO_NET_DROP__COUNT)
        return "unknown";
    return drop_names[r];
}

static bool is_bcast(const uint8_t *a)
{
    return (a[0] & a[1] & a[2] & a[3] & a[4] & a[5]) == 0xff;
}

static bool is_zero_mac(const uint8_t *a)
{
    return (a[0] | a[1] | a[2] | a[3] | a[4] | a[5]) == 0;
}

/* ------------------------------------------------------------------------ */
/* Header checks                                                             */

/* vio_net_hdr_check without the NULL test; inlined into the TX path. */
static inline int hdr_check(const struct vio_net_hdr *h, size_t frame_len, uint64_t features)
{
    if (frame_len < VIO_NET_MIN_FRAME_LEN || frame_len > VIO_NET_MAX_FRAME_LEN)
        return -EMSGSIZE;
    if (h->flags == 0 && h->gso_type == VIO_NET_HDR_GSO_NONE)
        return le16toh(h->hdr_len) > frame_len ? -EINVAL : 0; /* no offload: the one check left */
    unsigned gso = h->gso_type & ~VIO_NET_HDR_GSO_ECN;
    bool ecn = h->gso_type & VIO_NET_HDR_GSO_ECN;
    unsigned need;
    switch (gso) {
    case VIO_NET_HDR_GSO_NONE: need = 0; break;
    case VIO_NET_HDR_GSO_TCPV4: need = VIO_NET_F_HOST_TSO4; break;
    case VIO_NET_HDR_GSO_TCPV6: need = VIO_NET_F_HOST_TSO6; break;
    case VIO_NET_HDR_GSO_UDP: need = VIO_NET_F_HOST_UFO; break;
    case VIO_NET_HDR_GSO_UDP_L4: need = VIO_NET_F_HOST_USO; break;
    default: return -EINVAL; /* unknown gso_type */
    }
    /* spec 5.1.6.2.1: the driver MUST NOT use a GSO type whose HOST_ feature is not negotiated */
    if (gso != VIO_NET_HDR_GSO_NONE && !has(features, need))
        return -EPROTO;
    if (ecn) {
        /* ECN is the TCP CWR marker: meaningless without TCP segmentation */
        if (gso != VIO_NET_HDR_GSO_TCPV4 && gso != VIO_NET_HDR_GSO_TCPV6)
            return -EINVAL;
        if (!has(features, VIO_NET_F_HOST_ECN))
            return -EPROTO;
    }
    bool csum = h->flags & VIO_NET_HDR_F_NEEDS_CSUM;
    /* spec: without VIRTIO_NET_F_CSUM the driver MUST set flags to zero */
    if (csum && !has(features, VIO_NET_F_CSUM))
        return -EPROTO;
    if (gso != VIO_NET_HDR_GSO_NONE) {
        /* spec: a GSO frame MUST have NEEDS_CSUM and an MSS */
        if (!csum || le16toh(h->gso_size) == 0)
            return -EINVAL;
    }
    if (csum) {
        /* the 16-bit checksum at csum_start + csum_offset must lie inside the frame */
        size_t end = (size_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2u;
        if (end > frame_len)
            return -EINVAL;
    }
    if (le16toh(h->hdr_len) > frame_len)
        return -EINVAL;
    return 0;
}

int vio_net_hdr_check(const struct vio_net_hdr *h, size_t frame_len, uint64_t features)
{
    return h ? hdr_check(h, frame_len, features) : -EINVAL;
}

/* Ones'-complement checksum of frame bytes [start, flen), stored at start + off (the field
 * already holds the pseudo-header sum, as with NEEDS_CSUM). Used when the backend hands over
 * a partially checksummed frame and the driver did not negotiate GUEST_CSUM. */
static void csum_fill(const struct iovec *iov, unsigned n, size_t start, size_t off, size_t flen)
{
    uint64_t sum = 0;
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, iov, n);
    if (start < flen && vio_iov_cur_skip(&c, start) == start) {
        size_t pos = 0, m;
        void *piece;
        while (pos < flen - start && (m = vio_iov_cur_chunk(&c, flen - start - pos, &piece))) {
            const uint8_t *b = piece;
            for (size_t k = 0; k < m; k++, pos++)
                sum += (pos & 1) ? b[k] : (uint64_t)b[k] << 8;
        }
    }
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t cs = (uint16_t)~sum;
    if (cs == 0)
        cs = 0xffff; /* a computed 0 is sent as all ones (UDP: 0 means "no checksum") */
    uint8_t be[2] = {(uint8_t)(cs >> 8), (uint8_t)cs};
    vio_iov_write_at(iov, n, start + off, be, 2);
}

/* Make the backend's RX metadata fit what the driver negotiated (spec 5.1.6.4.1): returns -1 when
 * the frame may go to the driver, else the drop reason. */
static int rx_fix_hdr(struct vio_net_hdr *h, uint64_t f, const struct iovec *iov, unsigned n,
                      size_t flen)
{
    if (h->flags == 0 && h->gso_type == VIO_NET_HDR_GSO_NONE) {
        h->gso_size = h->hdr_len = h->csum_start = h->csum_offset = 0; /* no offload */
        return -1;
    }
    unsigned gso = h->gso_type & ~VIO_NET_HDR_GSO_ECN;
    bool ecn = h->gso_type & VIO_NET_HDR_GSO_ECN;
    switch (gso) {
    case VIO_NET_HDR_GSO_NONE: ecn = false; break;
    case VIO_NET_HDR_GSO_TCPV4:
        if (!has(f, VIO_NET_F_GUEST_TSO4))
            return VIO_NET_DROP_HDR_OFFLOAD;
        break;
    case VIO_NET_HDR_GSO_TCPV6:
        if (!has(f, VIO_NET_F_GUEST_TSO6))
            return VIO_NET_DROP_HDR_OFFLOAD;
        break;
    case VIO_NET_HDR_GSO_UDP:
        if (!has(f, VIO_NET_F_GUEST_UFO))
            return VIO_NET_DROP_HDR_OFFLOAD;
        break;
    default: /* UDP_L4 needs GUEST_USO4/6, never offered; unknown types */
        return VIO_NET_DROP_HDR_OFFLOAD;
    }
    if (ecn && !has(f, VIO_NET_F_GUEST_ECN))
        return VIO_NET_DROP_HDR_OFFLOAD;
    uint8_t flags = h->flags & (VIO_NET_HDR_F_NEEDS_CSUM | VIO_NET_HDR_F_DATA_VALID);
    if (gso != VIO_NET_HDR_GSO_NONE &&
        (!(flags & VIO_NET_HDR_F_NEEDS_CSUM) || le16toh(h->gso_size) == 0))
        return VIO_NET_DROP_HDR_INVALID;
    if (flags & VIO_NET_HDR_F_NEEDS_CSUM) {
        size_t cs = le16toh(h->csum_start), co = le16toh(h->csum_offset);
        if (cs + co + 2u > flen)
            return VIO_NET_DROP_HDR_INVALID;
        if (!has(f, VIO_NET_F_GUEST_CSUM)) {
            if (gso != VIO_NET_HDR_GSO_NONE)
                return VIO_NET_DROP_HDR_OFFLOAD; /* unreachable with valid features */
            csum_fill(iov, n, cs, co, flen);
            flags &= (uint8_t)~VIO_NET_HDR_F_NEEDS_CSUM;
        }
    }
    /* spec: without GUEST_CSUM the device MUST set flags to zero */
    if (!has(f, VIO_NET_F_GUEST_CSUM))
        flags = 0;
    h->flags = flags;
    h->gso_type = (uint8_t)(gso | (ecn ? VIO_NET_HDR_GSO_ECN : 0));
    if (gso == VIO_NET_HDR_GSO_NONE) {
        h->gso_size = 0;
        h->hdr_len = 0;
    }
    if (!(flags & VIO_NET_HDR_F_NEEDS_CSUM)) {
        h->csum_start = 0;
        h->csum_offset = 0;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Receive filter                                                            */

/* RX side: take a stable snapshot without a lock. Announce the copy in the
 * pair's hazard slot, then re-check it is still the published one: if the
 * re-check passes, a writer that wants to reuse the copy sees the hazard
 * (both accesses are seq_cst, pairing with the publish store and the
 * hazard scan in filt_begin). */
static const struct vio_net_rx_filter *filt_enter(struct vio_net_dev *d, struct pair *p)
{
    for (;;) {
        struct vio_net_rx_filter *f = atomic_load_explicit(&d->filt_cur, memory_order_acquire);
        atomic_store_explicit(&p->hazard, f, memory_order_seq_cst);
        if (atomic_load_explicit(&d->filt_cur, memory_order_seq_cst) == f)
            return f;
    }
}

static void filt_exit(struct pair *p)
{
    /* release: our reads of the copy happen before a writer may reuse it */
    atomic_store_explicit(&p->hazard, NULL, memory_order_release);
}

/* Writer side (control thread, reset): returns the spare copy, initialized from the current
 * one, with filt_lock held. The spare was published before the current one; an RX thread may
 * still be reading it, so wait (yield) until no hazard names it. */
static struct vio_net_rx_filter *filt_begin(struct vio_net_dev *d)
{
    pthread_mutex_lock(&d->filt_lock);
    struct vio_net_rx_filter *cur = atomic_load_explicit(&d->filt_cur, memory_order_relaxed);
    struct vio_net_rx_filter *spare = cur == &d->filt[0] ? &d->filt[1] : &d->filt[0];
    for (unsigned i = 0; i < d->max_pairs; i++)
        while (atomic_load_explicit(&d->pairs[i].hazard, memory_order_seq_cst) == spare)
            sched_yield();
    memcpy(spare, cur, sizeof(*spare));
    return spare;
}

/* Publish the copy from filt_begin (spec: the table is updated before the command is used). */
static void filt_commit(struct vio_net_dev *d, struct vio_net_rx_filter *f)
{
    atomic_store_explicit(&d->filt_cur, f, memory_order_seq_cst);
    pthread_mutex_unlock(&d->filt_lock);
}

static void filt_default(struct vio_net_rx_filter *f, const uint8_t *mac, bool vlan)
{
    memset(f, 0, sizeof(*f));
    /* Power-on: deliver everything until a driver with CTRL_RX says otherwise (a driver without
     * CTRL_RX has no way to ask for promiscuous mode, e.g. for a bridge). */
    f->flags = VIO_NET_FILTER_PROMISC | (vlan ? VIO_NET_FILTER_VLAN : 0);
    memcpy(f->mac, mac, 6);
}

static void backend_rx_mode(struct vio_net_dev *d, uint32_t flags)
{
    unsigned m = 0;
    if (flags & (VIO_NET_FILTER_PROMISC | VIO_NET_FILTER_ALLUNI | VIO_NET_FILTER_UNI_OVERFLOW))
        m |= VIO_NET_RX_PROMISC;
    if (flags & (VIO_NET_FILTER_ALLMULTI | VIO_NET_FILTER_MULTI_OVERFLOW))
        m |= VIO_NET_RX_ALLMULTI;
    (void)vio_net_backend_set_rx_mode(d->be, m); /* optional, best effort */
}

static bool mac_in(const uint8_t (*tab)[6], unsigned n, const uint8_t *a)
{
    for (unsigned i = 0; i < n; i++)
        if (memcmp(tab[i], a, 6) == 0)
            return true;
    return false;
}

/* -1: accept; else the drop reason. @eth holds min(len, 18) bytes of the frame. */
static int filter_frame(const struct vio_net_rx_filter *f, const uint8_t *eth, size_t len)
{
    uint32_t fl = f->flags;
    if (fl & VIO_NET_FILTER_PROMISC)
        return -1;
    if ((fl & VIO_NET_FILTER_VLAN) && eth[12] == 0x81 && eth[13] == 0x00) {
        if (len < 18)
            return VIO_NET_DROP_FILTER_VLAN;
        unsigned vid = ((unsigned)eth[14] << 8 | eth[15]) & 0xfffu;
        if (!(f->vlans[vid >> 5] & (1u << (vid & 31))))
            return VIO_NET_DROP_FILTER_VLAN;
    }
    if (is_bcast(eth))
        return (fl & VIO_NET_FILTER_NOBCAST) ? VIO_NET_DROP_FILTER_BROADCAST : -1;
    if (eth[0] & 1) {
        if (fl & VIO_NET_FILTER_NOMULTI)
            return VIO_NET_DROP_FILTER_MULTICAST;
        if (fl & (VIO_NET_FILTER_ALLMULTI | VIO_NET_FILTER_MULTI_OVERFLOW))
            return -1;
        return mac_in(f->multi, f->n_multi, eth) ? -1 : VIO_NET_DROP_FILTER_MULTICAST;
    }
    if (fl & VIO_NET_FILTER_NOUNI)
        return VIO_NET_DROP_FILTER_UNICAST;
    if (fl & (VIO_NET_FILTER_ALLUNI | VIO_NET_FILTER_UNI_OVERFLOW))
        return -1;
    if (memcmp(eth, f->mac, 6) == 0 || mac_in(f->uni, f->n_uni, eth))
        return -1;
    return VIO_NET_DROP_FILTER_UNICAST;
}

/* ------------------------------------------------------------------------ */
/* Hooks, watches, errors                                                    */

static void update_watches(struct vio_net_dev *d, unsigned qp)
{
    struct pair *p = &d->pairs[qp];
    pthread_mutex_lock(&p->wlock);
    unsigned want_rx = 0, want_tx = 0;
    if (p->rx_fd >= 0 && atomic_load(&p->rx_on) && !atomic_load(&p->rx_paused) &&
        !atomic_load(&p->rx_dead) && qp < atomic_load(&d->active_pairs))
        want_rx = VIO_WATCH_IN;
    if (p->tx_fd >= 0 && atomic_load(&p->tx_on) && atomic_load(&p->tx_blocked))
        want_tx = VIO_WATCH_OUT;
    if (want_rx != p->w_rx) {
        p->w_rx = want_rx;
        if (d->hooks.set_watch)
            d->hooks.set_watch(d->hooks.opaque, p->rx_fd, want_rx,
                               VIO_NET_WATCH_ID(qp, VIO_NET_WATCH_RX));
    }
    if (want_tx != p->w_tx) {
        p->w_tx = want_tx;
        if (d->hooks.set_watch)
            d->hooks.set_watch(d->hooks.opaque, p->tx_fd, want_tx,
                               VIO_NET_WATCH_ID(qp, VIO_NET_WATCH_TX));
    }
    pthread_mutex_unlock(&p->wlock);
}

static void report_broken(struct vio_net_dev *d, struct dq *x, const char *what)
{
    if (x->broken_reported)
        return;
    x->broken_reported = true;
    vio_logf(d->log, d->log_opaque, VIO_LOG_ERROR, LOG_OBJ,
             "queue %u: %s; the device needs a reset", x->q ? vio_queue_index(x->q) : 0u, what);
    if (d->hooks.needs_reset)
        d->hooks.needs_reset(d->hooks.opaque);
}

static void report_pop_error(struct vio_net_dev *d, struct dq *x, int r)
{
    if (r == -ENOBUFS)
        report_broken(d, x, "a chain needs more iovecs than iov_max");
    else
        report_broken(d, x, vio_violation_name(vio_queue_violation(x->q)));
}

/* A backend that is gone (interface removed, fd closed) is logged once; per-frame refusals
 * once as well, then only counted. */
static void backend_failed(struct vio_net_dev *d, const char *dir, unsigned qp, int err)
{
    bool gone = err == -ENODEV || err == -ENXIO || err == -EBADF || err == -EIO ||
                err == -EPIPE || err == -ENOTSUP;
    _Atomic bool *once = gone ? &d->be_gone_logged : &d->be_err_logged;
    if (atomic_exchange(once, true))
        return;
    vio_logf(d->log, d->log_opaque, gone ? VIO_LOG_ERROR : VIO_LOG_WARN, LOG_OBJ,
             "backend %s %s failed on queue pair %u (errno %d)%s", d->be->ops->name ? d->be->ops->name : "?",
             dir, qp, -err, gone ? ": backend gone, dropping" : "; further failures only counted");
}

static void maybe_notify(struct vio_net_dev *d, struct dq *x, unsigned qidx)
{
    if (x->q && vio_queue_needs_notify(x->q)) {
        vio_ctr_add(&x->st.notifies, 1);
        if (d->hooks.notify_queue)
            d->hooks.notify_queue(d->hooks.opaque, qidx);
    }
}

/* Queue roles for the negotiated features (before negotiation: for everything offered). */
enum role { ROLE_NONE, ROLE_RX, ROLE_TX, ROLE_CTRL };

static unsigned layout_pairs(const struct vio_net_dev *d, uint64_t *fout)
{
    uint64_t f = atomic_load(&d->features_set) ? feats(d) : d->offered;
    if (fout)
        *fout = f;
    return has(f, VIO_NET_F_MQ) ? d->max_pairs : 1u;
}

static enum role qrole(const struct vio_net_dev *d, unsigned qidx, unsigned *qp)
{
    uint64_t f;
    unsigned pairs = layout_pairs(d, &f);
    if (qidx < 2u * pairs) {
        *qp = qidx / 2;
        return (qidx & 1) ? ROLE_TX : ROLE_RX;
    }
    if (qidx == 2u * pairs && has(f, VIO_NET_F_CTRL_VQ))
        return ROLE_CTRL;
    return ROLE_NONE;
}

static unsigned ctrl_qidx(const struct vio_net_dev *d)
{
    return 2u * layout_pairs(d, NULL);
}

/* ------------------------------------------------------------------------ */
/* TX                                                                        */

static int tx_flush(struct vio_net_dev *d, struct pair *p, unsigned qp)
{
    if (!p->tx_nused)
        return 0;
    int r = vio_queue_push_batch(p->tx.q, p->tx_used, p->tx_nused);
    p->tx_nused = 0;
    if (r < 0)
        return r;
    maybe_notify(d, &p->tx, 2u * qp + 1u);
    return 0;
}

/* Queues the used entry of a handled chain. A full batch is published when the next entry
 * comes, not at once: a run's last batch is then left to the end of the run (tx_run), or to
 * after the receive run (vio_net_dev_process). */
static void tx_complete(struct vio_net_dev *d, struct pair *p, unsigned qp, uint16_t head)
{
    if (p->tx_nused == TX_BATCH)
        tx_flush(d, p, qp);
    /* TX buffers are device-readable only: used length 0 */
    p->tx_used[p->tx_nused].id = head;
    p->tx_used[p->tx_nused].len = 0;
    p->tx_nused++;
}

/* One popped chain whose iovecs are @p iov. 1: handled (sent or dropped, its used entry
 * queued); -EAGAIN: backend full, nothing done (the caller gives the chain back). */
static int tx_chain(struct vio_net_dev *d, struct pair *p, unsigned qp, uint64_t f,
                    const struct vio_chain *c, struct iovec *iov)
{
    struct dq *x = &p->tx;
    int why, r;
    struct vio_net_hdr h;
    if (c->out_len < HDR_LEN) {
        why = VIO_NET_DROP_SHORT_CHAIN;
        goto drop;
    }
    /* The header may be split across descriptors (ANY_LAYOUT, implied by VERSION_1): copy it
     * out once and use only the copy. */
    vio_iov_read_at(iov, c->n_out, 0, &h, HDR_LEN);
    size_t flen = c->out_len - HDR_LEN;
    r = hdr_check(&h, flen, f);
    if (r < 0) {
        why = r == -EPROTO ? VIO_NET_DROP_HDR_OFFLOAD
              : r == -EMSGSIZE ? VIO_NET_DROP_LENGTH
                               : VIO_NET_DROP_HDR_INVALID;
        goto drop;
    }
    if (!atomic_load_explicit(&d->link_up, memory_order_relaxed)) {
        why = VIO_NET_DROP_LINK_DOWN;
        goto drop;
    }
    /* Only NEEDS_CSUM means something on TX; num_buffers is unused (spec 5.1.6.2). */
    h.flags &= VIO_NET_HDR_F_NEEDS_CSUM;
    h.num_buffers = 0;
    unsigned first = vio_iov_split(iov, c->n_out, HDR_LEN);
    r = vio_net_backend_tx(d->be, qp, &h, iov + first, c->n_out - first);
    if (r == -EAGAIN) {
        /* vio_iov_split moved the first iovec: harmless, the chain is popped again from the ring */
        return -EAGAIN;
    }
    if (r == -ENETDOWN) {
        why = VIO_NET_DROP_LINK_DOWN; /* the host side's link, not an error */
        goto drop;
    }
    if (r < 0) {
        backend_failed(d, "tx", qp, r);
        why = VIO_NET_DROP_BACKEND;
        goto drop;
    }
    vio_ctr_add(&x->st.packets, 1);
    vio_ctr_add(&x->st.bytes, flen);
    tx_complete(d, p, qp, c->head);
    return 1;
drop:
    /* A bad frame is a data error, not a ring violation: return the chain, keep going. */
    vio_ctr_add(&x->st.drops[why], 1);
    tx_complete(d, p, qp, c->head);
    return 1;
}

/* Up to @p max chains: pop them in one burst, then send them one by one, each one's header
 * prefetched while the previous is sent. Returns chains handled (> 0); 0: queue empty;
 * -EAGAIN: backend full after *@p done chains (the rest given back in order); -EIO / -ENOBUFS:
 * the queue cannot go on. */
static int tx_burst(struct vio_net_dev *d, struct pair *p, unsigned qp, uint64_t f,
                    unsigned max, unsigned *done)
{
    struct dq *x = &p->tx;
    *done = 0;
    int n = vio_queue_pop_burst(x->q, p->tx_chains, max, x->iov, d->iov_max);
    if (n == -EAGAIN)
        return 0;
    if (n < 0) {
        report_pop_error(d, x, n);
        return n == -ENOBUFS ? -ENOBUFS : -EIO;
    }
    /* Start the transfer of every frame's first lines before the first is needed: read one
     * after the other, each would wait for the other core in turn. That is the header's line
     * and the frame's first line, which often are two: drivers that prepend the header in
     * the buffer's headroom (DPDK) put it in the last bytes of the line before a line-aligned
     * frame. */
    struct iovec *iov = x->iov;
    for (int k = 0; k < n; k++) {
        if (p->tx_chains[k].n_out) {
            const uint8_t *b = iov[0].iov_base;
            __builtin_prefetch(b);
            if (iov[0].iov_len > HDR_LEN)
                __builtin_prefetch(b + HDR_LEN);
            else if (p->tx_chains[k].n_out > 1)
                __builtin_prefetch(iov[1].iov_base);
        }
        iov += p->tx_chains[k].n_out + p->tx_chains[k].n_in;
    }
    iov = x->iov;
    for (int k = 0; k < n; k++) {
        const struct vio_chain *c = &p->tx_chains[k];
        struct iovec *next = iov + c->n_out + c->n_in;
        if (tx_chain(d, p, qp, f, c, iov) == -EAGAIN) {
            vio_queue_rewind(x->q, (uint16_t)(n - k)); /* popped again once the backend drains */
            *done = (unsigned)k;
            return -EAGAIN;
        }
        iov = next;
    }
    *done = (unsigned)n;
    return n;
}

/* @p defer: leave the last batch of used entries queued (the caller publishes it with
 * tx_flush before it returns to its own caller). */
static int tx_run(struct vio_net_dev *d, unsigned qp, unsigned budget, bool defer)
{
    struct pair *p = &d->pairs[qp];
    struct vio_queue *q = p->tx.q;
    if (!q)
        return -EIO;
    if (vio_queue_is_broken(q)) {
        report_broken(d, &p->tx, vio_violation_name(vio_queue_violation(q)));
        return -EIO;
    }
    uint64_t f = feats(d);
    unsigned done = 0;
    int rc = 0;
    bool blocked = false;
    bool polling = atomic_load_explicit(&p->polling, memory_order_relaxed);
    for (;;) {
        vio_queue_disable_notify(q);
        int r = 0;
        while (!budget || done < budget) {
            unsigned max = TX_BATCH, got;
            if (budget && budget - done < max)
                max = budget - done;
            r = tx_burst(d, p, qp, f, max, &got);
            done += got;
            if (r <= 0)
                break;
        }
        if ((budget && done >= budget) || (polling && r >= 0))
            break; /* notifications stay off: the caller comes back */
        if (r == -EAGAIN) {
            blocked = true;
            vio_ctr_add(&p->tx.st.stalls, 1);
            /* Without a tx fd nothing would wake us: let the next kick retry. */
            if (p->tx_fd < 0)
                vio_queue_enable_notify(q);
            break;
        }
        if (r < 0) {
            rc = r;
            break;
        }
        /* Empty: ask for kicks, then re-check a chain did not slip in meanwhile. */
        if (!vio_queue_enable_notify(q))
            break;
    }
    int fr = defer ? 0 : tx_flush(d, p, qp);
    if (fr < 0 && !rc)
        rc = -EIO;
    if (atomic_load(&p->tx_blocked) != blocked) {
        atomic_store(&p->tx_blocked, blocked);
        update_watches(d, qp);
    }
    return rc < 0 ? rc : (int)done;
}

/* ------------------------------------------------------------------------ */
/* RX                                                                        */

/* Fetch the line at @p a for writing (exclusive), without waiting for it. x86's PREFETCHW
 * (a no-op on cores without it); elsewhere the compiler's write prefetch. */
static inline void prefetch_w(const void *a)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetchw %0" ::"m"(*(const char *)a));
#else
    __builtin_prefetch(a, 1, 3);
#endif
}

/* Refills the burst when it is used up. 1: a cached chain is there; -EAGAIN: the ring is
 * empty; -ENOBUFS: the next chain is larger than the burst's iovecs (rx_take pops it alone);
 * other errors from the queue. */
static int rx_cache_fill(struct pair *p)
{
    if (p->rxc_head < p->rxc_n)
        return 1;
    p->rxc_head = p->rxc_n = 0;
    int r = vio_queue_pop_burst(p->rx.q, p->rxc_ch, RX_BATCH, p->rxc_iov, RXC_IOV);
    if (r <= 0)
        return r;
    unsigned off = 0;
    for (int k = 0; k < r; k++) {
        p->rxc_off[k] = (uint16_t)off;
        /* Ask for every frame's first data line with write intent now: a driver that
         * recycles its buffers has them in its cache, and the copies, queued until the
         * burst is published, would each wait for the line in turn (stores drain in order)
         * with the used idx store behind them. Taken together here, the transfers overlap
         * each other and the burst's frame work. The header's line is left alone: it is
         * often not written at all (rx_defer_hdr). */
        const struct iovec *v = &p->rxc_iov[off + p->rxc_ch[k].n_out];
        if (p->rxc_ch[k].n_in) {
            if (v->iov_len > HDR_LEN)
                prefetch_w((const uint8_t *)v->iov_base + HDR_LEN);
            else if (p->rxc_ch[k].n_in > 1)
                prefetch_w(v[1].iov_base);
        }
        off += p->rxc_ch[k].n_out + p->rxc_ch[k].n_in;
    }
    p->rxc_n = (unsigned)r;
    return 1;
}

/*
 * The next receive chain for the frame being built, its iovecs copied to @p dst (@p cap
 * entries). Chains come from a burst taken with vio_queue_pop_burst (one ring walk and one
 * batch of descriptor reads for many frames); the burst is refilled only at a frame's first
 * chain, so that the chains of one frame are always the last ones taken from the cache or
 * from the ring and rx_giveback() can return them exactly. 0 taken; -EAGAIN none; -ENOBUFS
 * @p dst too small (nothing taken); other errors from the queue.
 */
static int rx_take(struct pair *p, bool first, struct vio_chain *c, struct iovec *dst,
                   unsigned cap)
{
    if (first && p->rxc_head == p->rxc_n) {
        int r = rx_cache_fill(p);
        if (r < 0 && r != -ENOBUFS)
            return r;
    }
    if (p->rxc_head < p->rxc_n) {
        const struct vio_chain *cc = &p->rxc_ch[p->rxc_head];
        unsigned ni = cc->n_out + cc->n_in;
        if (ni > cap)
            return -ENOBUFS;
        memcpy(dst, p->rxc_iov + p->rxc_off[p->rxc_head], ni * sizeof(*dst));
        *c = *cc;
        p->rxc_head++;
        return 0;
    }
    int r = vio_queue_pop(p->rx.q, c, dst, cap);
    if (r == 0)
        p->rxc_direct++;
    return r;
}

/* Give back the last @p k chains of the frame at hand (ring order kept). */
static void rx_giveback(struct pair *p, unsigned k)
{
    unsigned dd = k < p->rxc_direct ? k : p->rxc_direct;
    if (dd) {
        vio_queue_rewind(p->rx.q, (uint16_t)dd); /* taken last: on top of the ring */
        p->rxc_direct -= dd;
        k -= dd;
    }
    p->rxc_head -= k;
}

/* End of a run: the cached chains nobody used go back to the ring. */
static void rx_cache_return(struct pair *p)
{
    if (p->rxc_head < p->rxc_n)
        vio_queue_rewind(p->rx.q, (uint16_t)(p->rxc_n - p->rxc_head));
    p->rxc_head = p->rxc_n = 0;
}

/* Does the deferred copies in one pass: the stores to guest buffers leave back to back. */
static void rx_copy_flush(struct pair *p)
{
    for (unsigned i = 0; i < p->rxcp_n; i++)
        memcpy(p->rxcp[i].dst, p->rxcp[i].src, p->rxcp[i].len);
    p->rxcp_n = 0;
    p->rxcp_nhdr = 0;
}

/* Queue the copy of @p len bytes from @p src to the iovecs (which hold them): done by the next
 * rx_copy_flush, at the latest before the used entries are published. With no room left the
 * queue is flushed first; pieces beyond a whole queue are copied at once. */
static inline __attribute__((always_inline)) void
rx_defer(struct pair *p, const struct iovec *iov, unsigned n, const void *src, size_t len)
{
    const uint8_t *b = src;
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, iov, n);
    void *dst;
    size_t m;
    while (len && (m = vio_iov_cur_chunk(&c, len, &dst))) {
        if (p->rxcp_n == RXCP_MAX)
            rx_copy_flush(p);
        p->rxcp[p->rxcp_n++] = (struct rx_copy){dst, b, m};
        b += m;
        len -= m;
    }
}

/* The header of a frame whose copies are deferred: kept in the pair until the flush. A header
 * already in place is not written again (drivers that recycle their buffers often have the
 * same bytes there): the line then stays shared with the driver, which reads it next, instead
 * of being taken from it and handed back. */
static void rx_defer_hdr(struct pair *p, const struct iovec *hiov, unsigned nh,
                         const struct vio_net_hdr *h)
{
    if (nh == 1 && memcmp(hiov[0].iov_base, h, HDR_LEN) == 0)
        return;
    if (p->rxcp_nhdr == RX_BATCH || p->rxcp_n + nh > RXCP_MAX)
        rx_copy_flush(p);
    struct vio_net_hdr *keep = &p->rxcp_hdr[p->rxcp_nhdr++];
    *keep = *h;
    rx_defer(p, hiov, nh, keep, HDR_LEN);
}

/*
 * Receive is three steps, as in DPDK's vhost (reserve_avail_buf_split, then mbuf_to_desc)
 * and vhost-net (get_rx_bufs, then handle_rx):
 *  - rx_reserve: gather the driver's buffers for one frame (one chain, or as many as the
 *    frame needs with MRG_RXBUF);
 *  - rx_copy: the frame from the backend into them, its header made to fit the negotiated
 *    features, the checks that may drop it;
 *  - rx_commit: the used lengths, num_buffers, the header, the counters. The used entries are
 *    published (and the notification decided) per batch by rx_publish / rx_run.
 * A frame that is not delivered gives every reserved chain back (rx_giveback).
 */

/* The guest buffers reserved for one frame. */
struct rx_bufs {
    struct vio_used_elem *u;                /* used entries of its chains (in p->rx_used) */
    unsigned n;                             /* chains */
    size_t cap;                             /* bytes they hold, header included */
    struct iovec hiov[VIO_NET_HDR_SIZE];    /* where the header goes */
    unsigned nh;
    struct iovec *fiov;                     /* where the frame goes */
    unsigned fn;
};

/* 0: buffers reserved for a frame of @p need bytes (header included; with MRG_RXBUF perhaps
 * fewer when the ring holds no more); -EAGAIN: no guest buffers; -ENOSPC: not enough for the
 * (peeked, @p exact) frame yet; nothing consumed either way. -EIO / -ENOBUFS: the queue cannot
 * go on (reported). Chains too short for the header are returned at once (used length 0). */
static inline __attribute__((always_inline)) int
rx_reserve(struct vio_net_dev *d, struct pair *p, bool mrg, size_t need, bool exact,
           struct rx_bufs *b)
{
    struct dq *x = &p->rx;
    b->u = p->rx_used + p->rx_pend;
    b->n = 0;
    b->cap = 0;
    p->rxc_direct = 0;
    int cf = rx_cache_fill(p);
    if (cf == -EAGAIN)
        return -EAGAIN;
    if (cf < 0 && cf != -ENOBUFS) {
        report_pop_error(d, x, cf);
        return -EIO;
    }
    if (cf > 0) {
        /* The usual case: the next chain of the burst is one buffer that holds the whole
         * frame. No iovec copy, no walk over chains and iovecs. */
        const struct vio_chain *cc = &p->rxc_ch[p->rxc_head];
        const struct iovec *bi = p->rxc_iov + p->rxc_off[p->rxc_head];
        if (cc->n_out == 0 && cc->n_in == 1 && cc->in_len >= need && bi->iov_len > HDR_LEN) {
            p->rxc_head++;
            b->u[0].id = cc->head;
            b->u[0].len = cc->in_len;
            b->n = 1;
            b->cap = cc->in_len;
            b->hiov[0] = (struct iovec){bi->iov_base, HDR_LEN};
            b->nh = 1;
            x->iov[0] = (struct iovec){(uint8_t *)bi->iov_base + HDR_LEN, bi->iov_len - HDR_LEN};
            b->fiov = x->iov;
            b->fn = 1;
            return 0;
        }
    }
    uint16_t qsz = vio_queue_size(x->q);
    unsigned iov_cap = d->iov_max < BACKEND_IOV_MAX ? d->iov_max : BACKEND_IOV_MAX;
    unsigned niov = 0;
    while (b->n < qsz) {
        struct vio_chain c;
        int r = rx_take(p, b->n == 0, &c, x->iov + niov, iov_cap - niov);
        if (r == -EAGAIN)
            break;
        if (r == -ENOBUFS && b->n > 0)
            break; /* the iovec array is full: use what we have */
        if (r < 0) {
            if (b->n)
                rx_giveback(p, b->n);
            report_pop_error(d, x, r);
            return r == -ENOBUFS ? -ENOBUFS : -EIO;
        }
        if (b->n == 0 && c.in_len < HDR_LEN) {
            /* spec: every buffer holds at least the header. This one cannot start a frame;
             * nothing was popped before it, so returning it now keeps in-order use. */
            b->u[0].id = c.head; /* queued behind the frames before it: in-order use holds */
            b->u[0].len = 0;
            p->rx_pend++;
            b->u++;
            p->rxc_direct = 0; /* consumed for good: not part of the frame */
            vio_ctr_add(&x->st.drops[VIO_NET_DROP_SHORT_CHAIN], 1);
            continue;
        }
        b->u[b->n].id = c.head;
        b->u[b->n].len = c.in_len;
        b->n++;
        niov += c.n_in;
        b->cap += c.in_len;
        if (!mrg || b->cap >= need)
            break;
    }
    if (b->n == 0)
        return -EAGAIN;
    if (mrg && exact && b->cap < need && b->n < qsz) {
        /* The frame is known not to fit yet: wait for the driver to add buffers (unless the
         * whole ring is ours and it never can). */
        rx_giveback(p, b->n);
        return -ENOSPC;
    }
    /* The first HDR_LEN bytes take the header (they may span chains' iovecs: ANY_LAYOUT),
     * the rest the frame. */
    struct vio_iov_cur cur;
    vio_iov_cur_init(&cur, x->iov, niov);
    b->nh = (unsigned)vio_iov_cur_split(&cur, HDR_LEN, b->hiov, VIO_NET_HDR_SIZE);
    unsigned first = vio_iov_split(x->iov, niov, HDR_LEN);
    b->fiov = x->iov + first;
    b->fn = niov - first;
    return 0;
}

/* What rx_copy did with the next frame of the backend. */
enum rx_res {
    RX_DELIVER, /* in the buffers: goes to the driver */
    RX_DROP,    /* dropped for the reason *why (the buffers may have been written) */
    RX_NONE,    /* the backend had no frame after all */
    RX_FAILED   /* the backend failed with the error *why */
};

/*
 * Takes the next frame from the backend into the reserved buffers (with rx_view: its copy is
 * queued, see rx_defer) and makes its header *@p h fit the negotiated features; *@p flen is
 * its length. The buffers stay the caller's to commit or give back.
 */
static inline __attribute__((always_inline)) enum rx_res
rx_copy(struct vio_net_dev *d, struct pair *p, unsigned qp, uint64_t f,
        const struct vio_net_rx_filter **flt, const struct rx_bufs *b, struct vio_net_hdr *h,
        size_t *flen, int *why)
{
    memset(h, 0, sizeof(*h));
    /* With rx_view the frame stays in the backend until rx_copy_flush copies it (src). */
    const void *src = NULL;
    ssize_t got = d->be_view ? vio_net_backend_rx_view(d->be, qp, h, &src, b->cap - HDR_LEN)
                             : vio_net_backend_rx(d->be, qp, h, b->fiov, b->fn);
    if (got == -EMSGSIZE) {
        *why = VIO_NET_DROP_LENGTH; /* larger than the buffers: the backend dropped it */
        return RX_DROP;
    }
    if (got == -EAGAIN)
        return RX_NONE;
    if (got < 0) {
        *why = (int)got;
        return RX_FAILED;
    }
    size_t len = (size_t)got;
    *flen = len;
    *why = VIO_NET_DROP_LENGTH;
    if (len > b->cap - HDR_LEN || len < VIO_NET_MIN_FRAME_LEN)
        return RX_DROP;
    if (!atomic_load_explicit(&d->link_up, memory_order_relaxed)) {
        *why = VIO_NET_DROP_LINK_DOWN;
        return RX_DROP;
    }
    /* spec 5.1.4.2: with MTU negotiated, no non-GSO frame larger than mtu + L2 header */
    if (has(f, VIO_NET_F_MTU) && (h->gso_type & ~VIO_NET_HDR_GSO_ECN) == VIO_NET_HDR_GSO_NONE &&
        len > (size_t)d->mtu + L2_OVERHEAD)
        return RX_DROP; /* *why: VIO_NET_DROP_LENGTH */
    if (!*flt)
        *flt = filt_enter(d, p); /* taken at the first frame, kept for the run */
    if (!((*flt)->flags & VIO_NET_FILTER_PROMISC)) {
        /* Read back only when the filter looks at the addresses: the bytes were just
         * written to a line the driver owns, and the load waits for that store to land. */
        uint8_t eth[18];
        size_t el = src ? len : vio_iov_read_at(b->fiov, b->fn, 0, eth, sizeof(eth));
        *why = filter_frame(*flt, src ? src : eth, el < len ? el : len);
        if (*why >= 0)
            return RX_DROP;
    }
    if (src && (h->flags & VIO_NET_HDR_F_NEEDS_CSUM) && !has(f, VIO_NET_F_GUEST_CSUM)) {
        /* rx_fix_hdr completes the checksum in the guest's copy: place the frame now */
        vio_iov_write_at(b->fiov, b->fn, 0, src, len);
        src = NULL;
    }
    *why = rx_fix_hdr(h, f, b->fiov, b->fn, len);
    if (*why >= 0)
        return RX_DROP;
    if (src)
        rx_defer(p, b->fiov, b->fn, src, len);
    return RX_DELIVER;
}

/* The frame is in the buffers: fill the chains in order, all but the last completely (spec
 * 5.1.6.3.2), write the header with num_buffers, give back the chains it did not need, and
 * queue the used entries for rx_publish. */
static inline __attribute__((always_inline)) void
rx_commit(struct vio_net_dev *d, struct pair *p, struct rx_bufs *b, struct vio_net_hdr *h,
          size_t flen)
{
    struct dq *x = &p->rx;
    size_t left = HDR_LEN + flen;
    unsigned used = 0;
    while (used < b->n && left) {
        uint32_t l = b->u[used].len < left ? b->u[used].len : (uint32_t)left;
        b->u[used].len = l;
        left -= l;
        used++;
    }
    h->num_buffers = htole16((uint16_t)used);
    if (d->be_view)
        rx_defer_hdr(p, b->hiov, b->nh, h);
    else
        vio_iov_write_at(b->hiov, b->nh, 0, h, HDR_LEN);
    if (b->n > used)
        rx_giveback(p, b->n - used);
    p->rx_pend += used; /* published by rx_publish */
    vio_ctr_add(&x->st.packets, 1);
    vio_ctr_add(&x->st.bytes, flen);
}

/* 1: one frame handled (delivered or dropped); 0: no frame in the backend; -EAGAIN: no guest
 * buffers, -ENOSPC: not enough for the (peeked) frame yet (nothing consumed either way);
 * -ENODEV: backend failure; -EIO / -ENOBUFS: queue cannot go on. */
static int rx_one(struct vio_net_dev *d, struct pair *p, unsigned qp, uint64_t f,
                  const struct vio_net_rx_filter **flt)
{
    ssize_t peek = vio_net_backend_rx_peek(d->be, qp);
    if (peek == -EAGAIN)
        return 0;
    /* Without a length: the worst case for the negotiated offloads. */
    size_t need = HDR_LEN + (peek >= 0 ? (size_t)peek : d->rx_max_frame);
    struct rx_bufs b;
    int r = rx_reserve(d, p, has(f, VIO_NET_F_MRG_RXBUF), need, peek >= 0, &b);
    if (r < 0)
        return r;
    struct vio_net_hdr h;
    size_t flen = 0;
    int why = 0;
    enum rx_res res = rx_copy(d, p, qp, f, flt, &b, &h, &flen, &why);
    if (res == RX_DELIVER) {
        rx_commit(d, p, &b, &h, flen);
        return 1;
    }
    /* Not delivered: the buffers (perhaps written) were never used; all go back. */
    rx_giveback(p, b.n);
    if (res == RX_NONE)
        return 0;
    if (res == RX_FAILED) {
        backend_failed(d, "rx", qp, why);
        return -ENODEV;
    }
    vio_ctr_add(&p->rx.st.drops[why], 1);
    return 1;
}

/* Publishes the used entries rx_one queued (see RX_BATCH). */
static int rx_publish(struct pair *p)
{
    rx_copy_flush(p); /* the frames are in place before their used entries */
    if (!p->rx_pend)
        return 0;
    int r = vio_queue_push_batch(p->rx.q, p->rx_used, p->rx_pend);
    p->rx_pend = 0;
    return r < 0 ? -EIO : 0;
}

static int rx_run(struct vio_net_dev *d, unsigned qp, unsigned budget)
{
    struct pair *p = &d->pairs[qp];
    struct vio_queue *q = p->rx.q;
    if (!q)
        return -EIO;
    if (vio_queue_is_broken(q)) {
        report_broken(d, &p->rx, vio_violation_name(vio_queue_violation(q)));
        /* Frames for a broken queue stay in the backend, whose fd stays readable: stop
         * watching it until the queue starts again, or every wake-up is for nothing. */
        if (!atomic_exchange(&p->rx_dead, true))
            update_watches(d, qp);
        return -EIO;
    }
    /* spec 5.1.6.5.5.2: no frames on receive queues beyond the active pairs */
    if (qp >= atomic_load(&d->active_pairs))
        return 0;
    if (atomic_load(&p->rx_dead))
        return -ENODEV;
    uint64_t f = feats(d);
    unsigned done = 0;
    int rc = 0;
    bool polling = atomic_load_explicit(&p->polling, memory_order_relaxed);
    /* Driver kicks are enabled while paused (see below) and during a last retry. */
    bool armed = atomic_load(&p->rx_paused);
    /* One filter snapshot for many frames, dropped before anything that may block on another
     * thread (update_watches calls into the transport) so a filter writer never waits long. */
    const struct vio_net_rx_filter *flt = NULL;
    while (!budget || done < budget) {
        int r = rx_one(d, p, qp, f, &flt);
        if (r == 1) {
            done++;
            if (p->rx_pend >= RX_BATCH && rx_publish(p) < 0) {
                rc = -EIO;
                break;
            }
            if (armed) {
                vio_queue_disable_notify(q);
                armed = false;
                if (atomic_load(&p->rx_paused)) { /* buffers came without a kick (polling) */
                    atomic_store(&p->rx_paused, false);
                    filt_exit(p);
                    flt = NULL;
                    update_watches(d, qp);
                }
            }
            continue;
        }
        if (r == 0)
            break;
        if ((r == -EAGAIN || r == -ENOSPC) && polling)
            break; /* the caller polls again: no kick wanted, the backend stays watched */
        if (r == -EAGAIN || r == -ENOSPC) {
            /* Out of guest buffers: ask for a kick first, then try once more, so buffers
             * added in between are not missed; only then stop watching the backend (the
             * frame stays there) until the driver kicks. */
            if (!armed) {
                /* the driver must see what we filled before we wait for it to refill */
                if (rx_publish(p) < 0) {
                    rc = -EIO;
                    break;
                }
                vio_queue_enable_notify(q);
                armed = true;
                continue;
            }
            filt_exit(p);
            flt = NULL;
            if (!atomic_load(&p->rx_paused)) {
                atomic_store(&p->rx_paused, true);
                vio_ctr_add(&p->rx.st.stalls, 1);
                update_watches(d, qp);
            }
            break;
        }
        filt_exit(p);
        flt = NULL;
        if (r == -ENODEV) {
            atomic_store(&p->rx_dead, true);
            update_watches(d, qp);
        }
        rc = r;
        break;
    }
    if (flt)
        filt_exit(p);
    rx_cache_return(p);
    if (rx_publish(p) < 0 && !rc)
        rc = -EIO;
    if (armed && !atomic_load(&p->rx_paused))
        vio_queue_disable_notify(q);
    maybe_notify(d, &p->rx, 2u * qp);
    return rc < 0 ? rc : (int)done;
}

static int rx_kick(struct vio_net_dev *d, unsigned qp)
{
    struct pair *p = &d->pairs[qp];
    if (!p->rx.q)
        return -EIO;
    if (atomic_load(&p->rx_paused)) {
        /* The driver added buffers: back to backend-driven receive, no kicks needed. */
        vio_queue_disable_notify(p->rx.q);
        atomic_store(&p->rx_paused, false);
        update_watches(d, qp);
    }
    return rx_run(d, qp, 0);
}

/* ------------------------------------------------------------------------ */
/* Control queue                                                             */

/* Read @len bytes of command-specific data at @off (after class and command). */
static bool cdata(const struct iovec *out, unsigned n_out, size_t dlen, size_t off, void *dst,
                  size_t len)
{
    if (off > dlen || len > dlen - off)
        return false;
    return vio_iov_read_at(out, n_out, 2 + off, dst, len) == len;
}

static uint8_t ctrl_rx_mode(struct vio_net_dev *d, uint64_t f, uint8_t cmd,
                            const struct iovec *out, unsigned n_out, size_t dlen)
{
    uint32_t bit;
    bool extra = true;
    switch (cmd) {
    case VIRTIO_NET_CTRL_RX_PROMISC: bit = VIO_NET_FILTER_PROMISC; extra = false; break;
    case VIRTIO_NET_CTRL_RX_ALLMULTI: bit = VIO_NET_FILTER_ALLMULTI; extra = false; break;
    case VIRTIO_NET_CTRL_RX_ALLUNI: bit = VIO_NET_FILTER_ALLUNI; break;
    case VIRTIO_NET_CTRL_RX_NOMULTI: bit = VIO_NET_FILTER_NOMULTI; break;
    case VIRTIO_NET_CTRL_RX_NOUNI: bit = VIO_NET_FILTER_NOUNI; break;
    case VIRTIO_NET_CTRL_RX_NOBCAST: bit = VIO_NET_FILTER_NOBCAST; break;
    default: return VIRTIO_NET_ERR;
    }
    if (!has(f, VIO_NET_F_CTRL_RX) || (extra && !has(f, VIO_NET_F_CTRL_RX_EXTRA)))
        return VIRTIO_NET_ERR;
    uint8_t v;
    if (dlen != 1 || !cdata(out, n_out, dlen, 0, &v, 1) || v > 1)
        return VIRTIO_NET_ERR;
    struct vio_net_rx_filter *fl = filt_begin(d);
    if (v)
        fl->flags |= bit;
    else
        fl->flags &= ~bit;
    uint32_t flags = fl->flags;
    filt_commit(d, fl);
    backend_rx_mode(d, flags);
    return VIRTIO_NET_OK;
}

static uint8_t ctrl_mac(struct vio_net_dev *d, uint64_t f, uint8_t cmd, const struct iovec *out,
                        unsigned n_out, size_t dlen)
{
    if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        uint8_t mac[6];
        if (!has(f, VIO_NET_F_CTRL_MAC_ADDR) || dlen != 6 || !cdata(out, n_out, dlen, 0, mac, 6))
            return VIRTIO_NET_ERR;
        if ((mac[0] & 1) || is_zero_mac(mac)) /* a station address is unicast and non-zero */
            return VIRTIO_NET_ERR;
        /* spec: update config mac before the command is used */
        pthread_mutex_lock(&d->cfg_lock);
        memcpy(d->cfg_mac, mac, 6);
        atomic_fetch_add(&d->generation, 1);
        pthread_mutex_unlock(&d->cfg_lock);
        struct vio_net_rx_filter *fl = filt_begin(d);
        memcpy(fl->mac, mac, 6);
        filt_commit(d, fl);
        return VIRTIO_NET_OK;
    }
    if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !has(f, VIO_NET_F_CTRL_RX))
        return VIRTIO_NET_ERR;
    /* le32 n_uni, n_uni MACs, le32 n_multi, n_multi MACs: the counts must account for every
     * byte of the buffer (spec 5.1.6.5.2). */
    uint32_t nu, nm;
    if (!cdata(out, n_out, dlen, 0, &nu, 4))
        return VIRTIO_NET_ERR;
    nu = le32toh(nu);
    uint64_t ubytes = (uint64_t)nu * 6u;
    if (dlen < 8 || ubytes > dlen - 8)
        return VIRTIO_NET_ERR;
    if (!cdata(out, n_out, dlen, 4 + (size_t)ubytes, &nm, 4))
        return VIRTIO_NET_ERR;
    nm = le32toh(nm);
    if ((uint64_t)nm * 6u != dlen - 8 - ubytes)
        return VIRTIO_NET_ERR;
    struct vio_net_rx_filter *fl = filt_begin(d);
    fl->flags &= ~(uint32_t)(VIO_NET_FILTER_UNI_OVERFLOW | VIO_NET_FILTER_MULTI_OVERFLOW);
    if (nu > VIO_NET_MAC_TABLE_ENTRIES) {
        fl->flags |= VIO_NET_FILTER_UNI_OVERFLOW; /* too many: accept all unicast */
        fl->n_uni = 0;
    } else {
        cdata(out, n_out, dlen, 4, fl->uni, (size_t)ubytes);
        fl->n_uni = (uint16_t)nu;
    }
    if (nm > VIO_NET_MAC_TABLE_ENTRIES) {
        fl->flags |= VIO_NET_FILTER_MULTI_OVERFLOW;
        fl->n_multi = 0;
    } else {
        cdata(out, n_out, dlen, 8 + (size_t)ubytes, fl->multi, (size_t)nm * 6u);
        fl->n_multi = (uint16_t)nm;
    }
    uint32_t flags = fl->flags;
    filt_commit(d, fl);
    backend_rx_mode(d, flags);
    return VIRTIO_NET_OK;
}

static uint8_t ctrl_vlan(struct vio_net_dev *d, uint64_t f, uint8_t cmd, const struct iovec *out,
                         unsigned n_out, size_t dlen)
{
    uint16_t vid;
    if (!has(f, VIO_NET_F_CTRL_VLAN) || dlen != 2 || !cdata(out, n_out, dlen, 0, &vid, 2))
        return VIRTIO_NET_ERR;
    vid = le16toh(vid);
    if (vid >= 4096 || (cmd != VIRTIO_NET_CTRL_VLAN_ADD && cmd != VIRTIO_NET_CTRL_VLAN_DEL))
        return VIRTIO_NET_ERR;
    struct vio_net_rx_filter *fl = filt_begin(d);
    if (cmd == VIRTIO_NET_CTRL_VLAN_ADD)
        fl->vlans[vid >> 5] |= 1u << (vid & 31);
    else
        fl->vlans[vid >> 5] &= ~(1u << (vid & 31));
    filt_commit(d, fl);
    return VIRTIO_NET_OK;
}

static uint8_t ctrl_mq(struct vio_net_dev *d, uint64_t f, uint8_t cmd, const struct iovec *out,
                       unsigned n_out, size_t dlen)
{
    uint16_t n;
    /* RSS_CONFIG / HASH_CONFIG need RSS / HASH_REPORT, never offered */
    if (!has(f, VIO_NET_F_MQ) || cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || dlen != 2 ||
        !cdata(out, n_out, dlen, 0, &n, 2))
        return VIRTIO_NET_ERR;
    n = le16toh(n);
    if (n < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || n > d->max_pairs)
        return VIRTIO_NET_ERR;
    atomic_store(&d->active_pairs, n);
    for (unsigned i = 0; i < d->max_pairs; i++)
        update_watches(d, i);
    return VIRTIO_NET_OK;
}

uint8_t vio_net_ctrl_exec(struct vio_net_dev *d, const struct iovec *out, unsigned n_out,
                          size_t out_len)
{
    uint8_t ch[2];
    if (out_len < 2 || vio_iov_read_at(out, n_out, 0, ch, 2) != 2)
        return VIRTIO_NET_ERR;
    size_t dlen = out_len - 2;
    uint64_t f = feats(d);
    switch (ch[0]) {
    case VIRTIO_NET_CTRL_RX: return ctrl_rx_mode(d, f, ch[1], out, n_out, dlen);
    case VIRTIO_NET_CTRL_MAC: return ctrl_mac(d, f, ch[1], out, n_out, dlen);
    case VIRTIO_NET_CTRL_VLAN: return ctrl_vlan(d, f, ch[1], out, n_out, dlen);
    case VIRTIO_NET_CTRL_ANNOUNCE:
        if (!has(f, VIO_NET_F_GUEST_ANNOUNCE) || ch[1] != VIRTIO_NET_CTRL_ANNOUNCE_ACK || dlen)
            return VIRTIO_NET_ERR;
        /* spec: clear ANNOUNCE before the buffer is used */
        pthread_mutex_lock(&d->cfg_lock);
        if (d->cfg_status & VIRTIO_NET_S_ANNOUNCE) {
            d->cfg_status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
            atomic_fetch_add(&d->generation, 1);
        }
        pthread_mutex_unlock(&d->cfg_lock);
        return VIRTIO_NET_OK;
    case VIRTIO_NET_CTRL_MQ: return ctrl_mq(d, f, ch[1], out, n_out, dlen);
    default: return VIRTIO_NET_ERR; /* GUEST_OFFLOADS, NOTF_COAL, ...: never offered */
    }
}

/* 1: command handled; 0: queue empty; -EIO / -ENOBUFS: queue cannot go on. */
static int ctrl_one(struct vio_net_dev *d)
{
    struct dq *x = &d->ctrl;
    struct vio_chain c;
    int r = vio_queue_pop(x->q, &c, x->iov, d->iov_max);
    if (r == -EAGAIN)
        return 0;
    if (r < 0) {
        report_pop_error(d, x, r);
        return r == -ENOBUFS ? -ENOBUFS : -EIO;
    }
    if (c.n_in == 0) {
        /* No room for the ack: a malformed command, but not a ring violation. */
        vio_ctr_add(&x->st.drops[VIO_NET_DROP_CTRL_INVALID], 1);
        vio_queue_push(x->q, c.head, 0);
        return 1;
    }
    uint8_t ack = vio_net_ctrl_exec(d, x->iov, c.n_out, c.out_len);
    vio_iov_write_at(x->iov + c.n_out, c.n_in, 0, &ack, 1);
    if (ack == VIRTIO_NET_OK)
        vio_ctr_add(&x->st.packets, 1);
    else
        vio_ctr_add(&x->st.drops[VIO_NET_DROP_CTRL_INVALID], 1);
    vio_queue_push(x->q, c.head, 1);
    return 1;
}

static int ctrl_run(struct vio_net_dev *d)
{
    struct vio_queue *q = d->ctrl.q;
    if (!q)
        return -EIO;
    if (vio_queue_is_broken(q)) {
        report_broken(d, &d->ctrl, vio_violation_name(vio_queue_violation(q)));
        return -EIO;
    }
    unsigned done = 0;
    int rc = 0;
    for (;;) {
        vio_queue_disable_notify(q);
        int r = 0;
        while ((r = ctrl_one(d)) == 1)
            done++;
        if (r < 0) {
            rc = r;
            break;
        }
        if (!vio_queue_enable_notify(q))
            break;
    }
    maybe_notify(d, &d->ctrl, ctrl_qidx(d));
    return rc < 0 ? rc : (int)done;
}

/* ------------------------------------------------------------------------ */
/* Features                                                                  */

/* Spec 5.1.3.1: a feature requires one of two others (0xff: only the first). */
static const struct {
    uint8_t bit, need1, need2;
} feature_deps[] = {
    {VIO_NET_F_GUEST_TSO4, VIO_NET_F_GUEST_CSUM, 0xff},
    {VIO_NET_F_GUEST_TSO6, VIO_NET_F_GUEST_CSUM, 0xff},
    {VIO_NET_F_GUEST_UFO, VIO_NET_F_GUEST_CSUM, 0xff},
    {VIO_NET_F_GUEST_ECN, VIO_NET_F_GUEST_TSO4, VIO_NET_F_GUEST_TSO6},
    {VIO_NET_F_HOST_TSO4, VIO_NET_F_CSUM, 0xff},
    {VIO_NET_F_HOST_TSO6, VIO_NET_F_CSUM, 0xff},
    {VIO_NET_F_HOST_UFO, VIO_NET_F_CSUM, 0xff},
    {VIO_NET_F_HOST_USO, VIO_NET_F_CSUM, 0xff},
    {VIO_NET_F_HOST_ECN, VIO_NET_F_HOST_TSO4, VIO_NET_F_HOST_TSO6},
    {VIO_NET_F_CTRL_RX, VIO_NET_F_CTRL_VQ, 0xff},
    {VIO_NET_F_CTRL_RX_EXTRA, VIO_NET_F_CTRL_VQ, 0xff},
    {VIO_NET_F_CTRL_VLAN, VIO_NET_F_CTRL_VQ, 0xff},
    {VIO_NET_F_GUEST_ANNOUNCE, VIO_NET_F_CTRL_VQ, 0xff},
    {VIO_NET_F_MQ, VIO_NET_F_CTRL_VQ, 0xff},
    {VIO_NET_F_CTRL_MAC_ADDR, VIO_NET_F_CTRL_VQ, 0xff},
};

static bool dep_ok(uint64_t f, unsigned k, bool frontend_ctrl)
{
    if (!has(f, feature_deps[k].bit))
        return true;
    /* behind vhost-user the frontend runs the control queue itself */
    if (frontend_ctrl && feature_deps[k].need1 == VIO_NET_F_CTRL_VQ)
        return true;
    return has(f, feature_deps[k].need1) ||
           (feature_deps[k].need2 != 0xff && has(f, feature_deps[k].need2));
}

/* Remove offered bits whose prerequisites are not offered, until nothing changes. */
static uint64_t trim_deps(uint64_t f, bool frontend_ctrl)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (unsigned k = 0; k < sizeof(feature_deps) / sizeof(feature_deps[0]); k++)
            if (!dep_ok(f, k, frontend_ctrl)) {
                f &= ~vio_feature_bit(feature_deps[k].bit);
                changed = true;
            }
    }
    return f;
}

static uint64_t offload_mask(void)
{
    static const unsigned bits[] = {
        VIO_NET_F_CSUM,      VIO_NET_F_GUEST_CSUM, VIO_NET_F_HOST_TSO4, VIO_NET_F_HOST_TSO6,
        VIO_NET_F_GUEST_TSO4, VIO_NET_F_GUEST_TSO6, VIO_NET_F_HOST_ECN, VIO_NET_F_GUEST_ECN,
        VIO_NET_F_HOST_UFO,  VIO_NET_F_GUEST_UFO,  VIO_NET_F_HOST_USO,
    };
    uint64_t m = 0;
    for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        m |= vio_feature_bit(bits[i]);
    return m;
}

/* ------------------------------------------------------------------------ */
/* Generic device ops                                                        */

static uint32_t op_device_id(void *o)
{
    (void)o;
    return VIRTIO_ID_NET;
}

static uint64_t op_features(void *o)
{
    return ((struct vio_net_dev *)o)->offered;
}

static uint32_t op_config_size(void *o)
{
    (void)o;
    return CFG_SIZE;
}

static int op_config_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    struct vio_net_dev *d = o;
    if (off > CFG_SIZE || len > CFG_SIZE - off)
        return -ERANGE;
    struct virtio_net_config c;
    memset(&c, 0, sizeof(c));
    pthread_mutex_lock(&d->cfg_lock);
    memcpy(c.mac, d->cfg_mac, 6);
    c.status = htole16(d->cfg_status);
    pthread_mutex_unlock(&d->cfg_lock);
    c.max_virtqueue_pairs = htole16(d->max_pairs);
    c.mtu = htole16(d->mtu);
    memcpy(buf, (const uint8_t *)&c + off, len);
    return 0;
}

static int op_config_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    (void)o;
    (void)buf;
    if (off > CFG_SIZE || len > CFG_SIZE - off)
        return -ERANGE;
    return -EPERM; /* spec 5.1.4.1: every field is read-only for the driver */
}

static uint32_t op_config_generation(void *o)
{
    return atomic_load(&((struct vio_net_dev *)o)->generation);
}

static unsigned op_num_queues(void *o)
{
    struct vio_net_dev *d = o;
    return 2u * d->max_pairs + (has(d->offered, VIO_NET_F_CTRL_VQ) ? 1u : 0u);
}

static int op_queue_info(void *o, unsigned qidx, struct vio_device_queue_info *out)
{
    struct vio_net_dev *d = o;
    static const char *const rxn[] = {"rx0", "rx1", "rx2", "rx3", "rx4", "rx5", "rx6", "rx7"};
    static const char *const txn[] = {"tx0", "tx1", "tx2", "tx3", "tx4", "tx5", "tx6", "tx7"};
    unsigned qp = 0;
    switch (qrole(d, qidx, &qp)) {
    case ROLE_RX:
        out->max_size = d->qsize;
        out->dir = VIO_QUEUE_DIR_IN_ONLY;
        out->name = qp < 8 ? rxn[qp] : "rx";
        return 0;
    case ROLE_TX:
        out->max_size = d->qsize;
        out->dir = VIO_QUEUE_DIR_OUT_ONLY;
        out->name = qp < 8 ? txn[qp] : "tx";
        return 0;
    case ROLE_CTRL:
        out->max_size = d->ctrl_qsize;
        out->dir = VIO_QUEUE_DIR_ANY;
        out->name = "ctrl";
        return 0;
    default: return -ERANGE;
    }
}

static int op_set_features(void *o, uint64_t neg)
{
    struct vio_net_dev *d = o;
    if (neg & ~d->offered)
        return -ENOTSUP;
    /* Only the virtio 1 header layout (12 bytes, num_buffers always present) is implemented.
     * A legacy driver (no VERSION_1, behind a transport that lets it in: legacy virtio-MMIO,
     * the transitional PCI I/O BAR) uses the same 12 bytes when it takes MRG_RXBUF (spec
     * 5.1.6, legacy interface; little-endian hosts only, as the whole library). */
    if (!has(neg, VIO_F_VERSION_1) && !has(neg, VIO_NET_F_MRG_RXBUF))
        return -ENOTSUP;
    for (unsigned k = 0; k < sizeof(feature_deps) / sizeof(feature_deps[0]); k++)
        if (!dep_ok(neg, k, d->frontend_ctrl)) {
            vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, LOG_OBJ,
                     "driver features 0x%llx refused: bit %u without its prerequisite",
                     (unsigned long long)neg, feature_deps[k].bit);
            return -ENOTSUP;
        }
    int r = vio_net_backend_configure(d->be, neg);
    if (r < 0 && r != -ENOTSUP)
        vio_logf(d->log, d->log_opaque, VIO_LOG_WARN, LOG_OBJ,
                 "backend could not apply the offloads (errno %d); unexpected metadata will be "
                 "dropped", -r);
    atomic_store(&d->features, neg);
    atomic_store(&d->features_set, true);
    /* Without our own control queue nobody sends MQ_VQ_PAIRS_SET: the frontend
     * enables rings one by one, so every pair is active. */
    bool own_ctrl = has(neg, VIO_NET_F_CTRL_VQ);
    atomic_store(&d->active_pairs,
                 (!own_ctrl && d->frontend_ctrl && has(neg, VIO_NET_F_MQ)) ? d->max_pairs : 1u);
    if (has(neg, VIO_NET_F_GUEST_TSO4) || has(neg, VIO_NET_F_GUEST_TSO6) ||
        has(neg, VIO_NET_F_GUEST_UFO))
        d->rx_max_frame = VIO_NET_MAX_FRAME_LEN;
    else if (has(neg, VIO_NET_F_MTU))
        d->rx_max_frame = (size_t)d->mtu + L2_OVERHEAD;
    else
        d->rx_max_frame = RX_FRAME_NO_GSO;
    struct vio_net_rx_filter *fl = filt_begin(d);
    if (has(neg, VIO_NET_F_CTRL_VLAN) && own_ctrl)
        fl->flags |= VIO_NET_FILTER_VLAN; /* spec: starts with an empty VLAN table */
    else
        fl->flags &= ~(uint32_t)VIO_NET_FILTER_VLAN; /* spec: then accept every VLAN */
    filt_commit(d, fl);
    return 0;
}

static void dq_clear(struct dq *x)
{
    x->q = NULL;
    x->broken_reported = false;
}

static int op_queue_start(void *o, unsigned qidx, struct vio_queue *q)
{
    struct vio_net_dev *d = o;
    unsigned qp = 0;
    enum role role = qrole(d, qidx, &qp);
    if (role == ROLE_NONE)
        return -ERANGE;
    uint16_t size = vio_queue_size(q);
    if (!size || size > (role == ROLE_CTRL ? d->ctrl_qsize : d->qsize))
        return -EINVAL; /* not set up, or larger than queue_info said */
    if (role == ROLE_CTRL) {
        if (d->ctrl.q)
            return -EBUSY;
        dq_clear(&d->ctrl);
        d->ctrl.q = q;
        return 0;
    }
    struct pair *p = &d->pairs[qp];
    if (role == ROLE_RX) {
        if (p->rx.q)
            return -EBUSY;
        dq_clear(&p->rx);
        p->rx.q = q;
        /* Receive is driven by the backend; kicks are only wanted when out of buffers. */
        vio_queue_disable_notify(q);
        atomic_store(&p->rx_paused, false);
        atomic_store(&p->rx_dead, false);
        atomic_store(&p->rx_on, true);
    } else {
        if (p->tx.q)
            return -EBUSY;
        dq_clear(&p->tx);
        p->tx.q = q;
        p->tx_nused = 0;
        atomic_store(&p->tx_blocked, false);
        atomic_store(&p->tx_on, true);
    }
    update_watches(d, qp);
    return 0;
}

static void stop_rx(struct vio_net_dev *d, unsigned qp)
{
    struct pair *p = &d->pairs[qp];
    atomic_store(&p->rx_on, false);
    atomic_store(&p->rx_paused, false);
    update_watches(d, qp);
    dq_clear(&p->rx);
}

static void stop_tx(struct vio_net_dev *d, unsigned qp)
{
    struct pair *p = &d->pairs[qp];
    atomic_store(&p->tx_on, false);
    atomic_store(&p->tx_blocked, false);
    update_watches(d, qp);
    p->tx_nused = 0;
    dq_clear(&p->tx);
}

static void op_queue_stop(void *o, unsigned qidx)
{
    struct vio_net_dev *d = o;
    unsigned qp = 0;
    switch (qrole(d, qidx, &qp)) {
    case ROLE_RX: stop_rx(d, qp); break;
    case ROLE_TX: stop_tx(d, qp); break;
    case ROLE_CTRL: dq_clear(&d->ctrl); break;
    default: break;
    }
}

static int op_queue_notify(void *o, unsigned qidx)
{
    struct vio_net_dev *d = o;
    unsigned qp = 0;
    switch (qrole(d, qidx, &qp)) {
    case ROLE_RX: return rx_kick(d, qp);
    case ROLE_TX: return tx_run(d, qp, 0, false);
    case ROLE_CTRL: return ctrl_run(d);
    default: return -ERANGE;
    }
}

static void op_reset(void *o)
{
    struct vio_net_dev *d = o;
    for (unsigned i = 0; i < d->max_pairs; i++) {
        stop_rx(d, i);
        stop_tx(d, i);
        atomic_store(&d->pairs[i].rx_dead, false);
        /* Both directions are stopped: frames a driver sent must not reach the next one. */
        if (i < d->be->queue_pairs)
            vio_net_backend_flush(d->be, i);
    }
    dq_clear(&d->ctrl);
    atomic_store(&d->features, 0);
    atomic_store(&d->features_set, false);
    atomic_store(&d->active_pairs, 1u);
    d->rx_max_frame = RX_FRAME_NO_GSO;
    struct vio_net_rx_filter *fl = filt_begin(d);
    filt_default(fl, d->mac0, false);
    filt_commit(d, fl);
    pthread_mutex_lock(&d->cfg_lock);
    memcpy(d->cfg_mac, d->mac0, 6);
    d->cfg_status = atomic_load(&d->link_up) ? VIRTIO_NET_S_LINK_UP : 0;
    atomic_fetch_add(&d->generation, 1);
    pthread_mutex_unlock(&d->cfg_lock);
    atomic_store(&d->be_gone_logged, false);
    atomic_store(&d->be_err_logged, false);
}

/* A transport whose frontend keeps the control queue (VIO_DEVICE_BIND_FRONTEND_CTRL) binds
 * before negotiation: the offer, and with it the queue roles before negotiation, follow. */
static int op_bind(void *o, const struct vio_device_hooks *h)
{
    struct vio_net_dev *d = o;
    if (h)
        d->hooks = *h;
    else
        memset(&d->hooks, 0, sizeof(d->hooks));
    d->frontend_ctrl = d->frontend_ctrl_cfg || (h && (h->flags & VIO_DEVICE_BIND_FRONTEND_CTRL));
    d->offered = trim_deps(d->offer_all, d->frontend_ctrl);
    return 0;
}

/* vhost-user frontends (QEMU, DPDK) read GET_QUEUE_NUM as queue pairs. */
static unsigned op_frontend_queue_num(void *o)
{
    return ((struct vio_net_dev *)o)->max_pairs;
}

static int op_watches(void *o, struct vio_device_watch *out, unsigned cap)
{
    struct vio_net_dev *d = o;
    unsigned n = 0;
    for (unsigned i = 0; i < d->max_pairs; i++) {
        struct pair *p = &d->pairs[i];
        pthread_mutex_lock(&p->wlock);
        if (p->w_rx) {
            if (n < cap)
                out[n] = (struct vio_device_watch){p->rx_fd, p->w_rx,
                                                   VIO_NET_WATCH_ID(i, VIO_NET_WATCH_RX)};
            n++;
        }
        if (p->w_tx) {
            if (n < cap)
                out[n] = (struct vio_device_watch){p->tx_fd, p->w_tx,
                                                   VIO_NET_WATCH_ID(i, VIO_NET_WATCH_TX)};
            n++;
        }
        pthread_mutex_unlock(&p->wlock);
    }
    return (int)n;
}

static int op_handle(void *o, uint32_t id, unsigned revents)
{
    struct vio_net_dev *d = o;
    (void)revents; /* errors surface from the backend call itself */
    uint32_t qp = id >> 1;
    if (qp >= d->max_pairs)
        return -ENOENT;
    if ((id & 1) == VIO_NET_WATCH_RX)
        return rx_run(d, qp, 0);
    return tx_run(d, qp, 0, false);
}

static const struct vio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = op_device_id,
    .features = op_features,
    .config_size = op_config_size,
    .config_read = op_config_read,
    .config_write = op_config_write,
    .config_generation = op_config_generation,
    .num_queues = op_num_queues,
    .queue_info = op_queue_info,
    .set_features = op_set_features,
    .queue_start = op_queue_start,
    .queue_stop = op_queue_stop,
    .queue_notify = op_queue_notify,
    .reset = op_reset,
    .bind = op_bind,
    .watches = op_watches,
    .handle = op_handle,
    .frontend_queue_num = op_frontend_queue_num,
};

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

void vio_net_dev_free(struct vio_net_dev *d)
{
    if (!d)
        return;
    if (d->pairs) {
        for (unsigned i = 0; i < d->max_pairs; i++) {
            free(d->pairs[i].rx.iov);
            free(d->pairs[i].tx.iov);
            free(d->pairs[i].rx_used);
            pthread_mutex_destroy(&d->pairs[i].wlock);
        }
        free(d->pairs);
    }
    free(d->ctrl.iov);
    pthread_mutex_destroy(&d->cfg_lock);
    pthread_mutex_destroy(&d->filt_lock);
    free(d);
}

int vio_net_dev_new(const struct vio_net_dev_config *cfg, struct vio_net_dev **out)
{
    if (!cfg || !out || cfg->struct_size < sizeof(*cfg))
        return -EINVAL;
    const struct vio_net_backend *be = cfg->backend;
    if (!be || !be->ops || !be->ops->tx || !be->ops->rx)
        return -EINVAL;
    if (cfg->mtu && cfg->mtu < 68)
        return -EINVAL; /* spec 5.1.4.1: 68..65535 */
    unsigned be_pairs = be->queue_pairs ? be->queue_pairs : 1u;
    unsigned pairs = cfg->max_queue_pairs ? cfg->max_queue_pairs : be_pairs;
    if (pairs > be_pairs || pairs > VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX)
        return -EINVAL;
    unsigned qsize = cfg->queue_size ? cfg->queue_size : 256u;
    unsigned csize = cfg->ctrl_queue_size ? cfg->ctrl_queue_size : 64u;
    if (!vio_is_pow2(qsize) || qsize > VIO_QUEUE_MAX_SIZE || !vio_is_pow2(csize) ||
        csize > VIO_QUEUE_MAX_SIZE)
        return -EINVAL;
    unsigned iov_max = cfg->iov_max ? cfg->iov_max : VIO_NET_DEFAULT_IOV_MAX;
    if (iov_max > (1u << 20))
        return -EINVAL;

    struct vio_net_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->cfg_lock, NULL);
    pthread_mutex_init(&d->filt_lock, NULL);
    d->max_pairs = (uint16_t)pairs;
    d->pairs = calloc(pairs, sizeof(*d->pairs));
    if (!d->pairs) {
        free(d);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < pairs; i++)
        pthread_mutex_init(&d->pairs[i].wlock, NULL);
    bool nomem = false;
    for (unsigned i = 0; i < pairs; i++) {
        struct pair *p = &d->pairs[i];
        p->rx.iov = calloc(iov_max, sizeof(struct iovec));
        p->tx.iov = calloc(iov_max, sizeof(struct iovec));
        p->rx_used = calloc(qsize, sizeof(struct vio_used_elem));
        nomem |= !p->rx.iov || !p->tx.iov || !p->rx_used;
        p->rx_fd = vio_net_backend_rx_fd(be, i);
        p->tx_fd = vio_net_backend_tx_fd(be, i);
    }
    d->ctrl.iov = calloc(iov_max, sizeof(struct iovec));
    if (nomem || !d->ctrl.iov) {
        vio_net_dev_free(d);
        return -ENOMEM;
    }

    d->dev.ops = &net_ops;
    d->dev.opaque = d;
    d->dev.log = cfg->log, d->dev.log_opaque = cfg->log_opaque; /* caller mistakes: device.c */
    d->be = cfg->backend;
    d->be_view = cfg->backend->ops->rx_view != NULL;
    d->log = cfg->log;
    d->log_opaque = cfg->log_opaque;
    d->qsize = (uint16_t)qsize;
    d->ctrl_qsize = (uint16_t)csize;
    d->iov_max = iov_max;
    d->mtu = cfg->mtu;
    if (cfg->mac_valid)
        memcpy(d->mac0, cfg->mac, 6);
    d->link_up0 = !cfg->link_down;
    d->frontend_ctrl = d->frontend_ctrl_cfg = cfg->frontend_ctrl;

    static const unsigned base[] = {
        VIO_F_VERSION_1,     VIO_F_EVENT_IDX,         VIO_F_INDIRECT_DESC,   VIO_F_IN_ORDER,
        VIO_NET_F_MRG_RXBUF, VIO_NET_F_STATUS,        VIO_NET_F_CTRL_VQ,     VIO_NET_F_CTRL_RX,
        VIO_NET_F_CTRL_RX_EXTRA, VIO_NET_F_CTRL_VLAN, VIO_NET_F_CTRL_MAC_ADDR,
        VIO_NET_F_GUEST_ANNOUNCE,
    };
    uint64_t f = 0;
    for (unsigned i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        f |= vio_feature_bit(base[i]);
    if (cfg->mac_valid)
        f |= vio_feature_bit(VIO_NET_F_MAC);
    if (cfg->mtu)
        f |= vio_feature_bit(VIO_NET_F_MTU);
    if (pairs > 1)
        f |= vio_feature_bit(VIO_NET_F_MQ);
    f |= vio_net_backend_features(be) & offload_mask();
    f &= ~cfg->features_off;
    f |= vio_feature_bit(VIO_F_VERSION_1); /* not optional: no legacy layout */
    d->offer_all = f;
    d->offered = trim_deps(f, d->frontend_ctrl);

    atomic_store(&d->link_up, d->link_up0);
    atomic_store(&d->active_pairs, 1u);
    d->rx_max_frame = RX_FRAME_NO_GSO;
    memcpy(d->cfg_mac, d->mac0, 6);
    d->cfg_status = d->link_up0 ? VIRTIO_NET_S_LINK_UP : 0;
    filt_default(&d->filt[0], d->mac0, false);
    atomic_store(&d->filt_cur, &d->filt[0]);
    *out = d;
    return 0;
}

struct vio_device *vio_net_dev_device(struct vio_net_dev *d)
{
    return d ? &d->dev : NULL;
}

int vio_net_dev_tx_process(struct vio_net_dev *d, unsigned qp, unsigned budget)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->max_pairs)
        return -ERANGE;
    return tx_run(d, qp, budget, false);
}

int vio_net_dev_set_polling(struct vio_net_dev *d, unsigned qp, bool on)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->max_pairs)
        return -ERANGE;
    atomic_store_explicit(&d->pairs[qp].polling, on, memory_order_relaxed);
    if (qp < d->be->queue_pairs)
        vio_net_backend_set_polling(d->be, qp, on);
    return 0;
}

int vio_net_dev_rx_process(struct vio_net_dev *d, unsigned qp, unsigned budget)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->max_pairs)
        return -ERANGE;
    return rx_run(d, qp, budget);
}

int vio_net_dev_process(struct vio_net_dev *d, unsigned qp, unsigned budget, int *tx_rc,
                        int *rx_rc)
{
    if (!d)
        return -EINVAL;
    if (qp >= d->max_pairs)
        return -ERANGE;
    /* The transmit run's last used entries are published after the receive run: when the
     * driver waits for both (a forwarding loop), the received frames are what it waits on,
     * and their publication no longer queues behind the transmit ring's stores and fence. */
    int t = tx_run(d, qp, budget, true);
    int r = rx_run(d, qp, budget);
    struct pair *p = &d->pairs[qp];
    if (tx_flush(d, p, qp) < 0 && t >= 0)
        t = -EIO;
    if (tx_rc)
        *tx_rc = t;
    if (rx_rc)
        *rx_rc = r;
    return (t > 0 ? t : 0) + (r > 0 ? r : 0);
}

int vio_net_dev_ctrl_process(struct vio_net_dev *d)
{
    if (!d)
        return -EINVAL;
    if (atomic_load(&d->features_set) && !has(feats(d), VIO_NET_F_CTRL_VQ))
        return -ENOTSUP;
    return ctrl_run(d);
}

int vio_net_dev_set_link(struct vio_net_dev *d, bool up)
{
    if (!d)
        return -EINVAL;
    pthread_mutex_lock(&d->cfg_lock);
    uint16_t old = d->cfg_status;
    if (up)
        d->cfg_status |= VIRTIO_NET_S_LINK_UP;
    else
        d->cfg_status &= (uint16_t)~VIRTIO_NET_S_LINK_UP;
    bool changed = old != d->cfg_status;
    if (changed)
        atomic_fetch_add(&d->generation, 1);
    atomic_store(&d->link_up, up);
    pthread_mutex_unlock(&d->cfg_lock);
    if (changed && has(feats(d), VIO_NET_F_STATUS) && d->hooks.config_changed)
        d->hooks.config_changed(d->hooks.opaque);
    return 0;
}

int vio_net_dev_announce(struct vio_net_dev *d)
{
    if (!d)
        return -EINVAL;
    uint64_t f = feats(d);
    if (!has(f, VIO_NET_F_GUEST_ANNOUNCE) || !has(f, VIO_NET_F_STATUS))
        return -ENOTSUP;
    pthread_mutex_lock(&d->cfg_lock);
    d->cfg_status |= VIRTIO_NET_S_ANNOUNCE;
    atomic_fetch_add(&d->generation, 1);
    pthread_mutex_unlock(&d->cfg_lock);
    if (d->hooks.config_changed)
        d->hooks.config_changed(d->hooks.opaque);
    return 0;
}

int vio_net_dev_get_stats(const struct vio_net_dev *d, unsigned qidx,
                          struct vio_net_queue_stats *out)
{
    if (!d || !out)
        return -EINVAL;
    unsigned qp = 0;
    const struct qstats *s;
    switch (qrole(d, qidx, &qp)) {
    case ROLE_RX: s = &d->pairs[qp].rx.st; break;
    case ROLE_TX: s = &d->pairs[qp].tx.st; break;
    case ROLE_CTRL: s = &d->ctrl.st; break;
    default: return -ERANGE;
    }
    memset(out, 0, sizeof(*out));
    out->packets = vio_ctr_get(&s->packets);
    out->bytes = vio_ctr_get(&s->bytes);
    out->stalls = vio_ctr_get(&s->stalls);
    out->notifies = vio_ctr_get(&s->notifies);
    for (unsigned i = 0; i < VIO_NET_DROP__COUNT; i++)
        out->drops[i] = vio_ctr_get(&s->drops[i]);
    return 0;
}

int vio_net_dev_get_rx_filter(const struct vio_net_dev *d, struct vio_net_rx_filter *out)
{
    if (!d || !out)
        return -EINVAL;
    struct vio_net_dev *m = (struct vio_net_dev *)d; /* the lock is not part of the value */
    pthread_mutex_lock(&m->filt_lock);
    memcpy(out, atomic_load_explicit(&m->filt_cur, memory_order_relaxed), sizeof(*out));
    pthread_mutex_unlock(&m->filt_lock);
    return 0;
}

unsigned vio_net_dev_active_pairs(const struct vio_net_dev *d)
{
    return d ? atomic_load(&d->active_pairs) : 0;
}

uint64_t vio_net_dev_features(const struct vio_net_dev *d)
{
    return d ? feats(d) : 0;
}
