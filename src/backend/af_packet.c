/* SPDX-License-Identifier: MIT */
/*
 * AF_PACKET backend: raw packet sockets bound to one interface, one socket per queue
 * pair (joined with PACKET_FANOUT_HASH when there are several, so a flow always lands
 * on the same queue pair).
 *
 * rx uses a TPACKET_V2 PACKET_RX_RING (not V3: V3 hands frames over a block at a time,
 * after a block timeout, which adds milliseconds of latency to a lone ping; V2 makes
 * each frame visible as soon as it is written). Every ring frame is large enough for a
 * 64 KiB GSO frame, so frames are never truncated. tx is one sendmsg of
 * [10-byte virtio_net_hdr][frame iovecs] with PACKET_QDISC_BYPASS; GSO frames
 * use a second, send-only socket without the bypass (the bypass path drops
 * frames that still need segmentation).
 *
 * Header layouts: PACKET_VNET_HDR uses the 10-byte struct virtio_net_hdr in host
 * byte order; the backend interface uses the 12-byte little-endian vio_net_hdr.
 * Conversion happens here; num_buffers is not carried (rx reports 1).
 *
 * Offloads: unlike tap there is no TUNSETOFFLOAD, so the kernel hands over whatever
 * it has — partial checksums and GRO/GSO super-frames. configure() records what the
 * driver negotiated; rx completes partial checksums in software when GUEST_CSUM is
 * off and drops GSO frames of a type the driver did not negotiate (logged once;
 * turn GRO/TSO off on the interface with ethtool if that matters).
 *
 * Concurrency: each queue pair has its own socket, ring and scratch state; calls on
 * one queue pair are serialized by the caller. set_rx_mode takes a mutex because it
 * may be called from a control thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>

#include "backend/util.h"
#include "virtio/net_backend.h"

/* One ring frame: tpacket2 header, sockaddr_ll, padding, the 10-byte vnet header and
 * the frame itself (14 + 65535 bytes at most) — 76 bytes of headers in front of the
 * MAC header, rounded up generously. A multiple of TPACKET_ALIGNMENT. */
#define PK_FRAME_SIZE (65536u + 512u)
/* 1 MiB blocks hold 15 frames; the kernel falls back to vmalloc if it cannot find
 * contiguous pages. */
#define PK_BLOCK_SIZE (1u << 20)
#define PK_FRAMES_PER_BLOCK (PK_BLOCK_SIZE / PK_FRAME_SIZE)
/* 4096 frames are 273 blocks, 273 MiB per queue pair: plenty. */
#define PK_RING_MAX 4096u

_Static_assert(PK_FRAME_SIZE % TPACKET_ALIGNMENT == 0, "frame size alignment");
_Static_assert(PK_FRAMES_PER_BLOCK >= 1, "a block holds a frame");

struct pk_qp {
    int fd;
    int gso_fd; /* send-only socket without qdisc bypass, for GSO frames */
    uint8_t *ring;
    size_t ring_bytes;
    unsigned frame_nr;
    unsigned head; /* next ring frame to look at */
    struct virtio_net_hdr txhdr;
    struct iovec iov[VIO_BE_MAX_IOV + 1];
};

struct pk {
    char ifname[IFNAMSIZ];
    char object[IFNAMSIZ + 12]; /* "af_packet <ifname>" */
    int ifindex;
    unsigned nqp;
    uint64_t features;
    _Atomic uint64_t negotiated;
    int ctl_fd; /* AF_UNIX datagram socket for SIOCGIFNAME / SIOCGIFFLAGS */
    struct vio_be_gone gone;
    atomic_bool warned_gso;
    atomic_bool warned_trunc;
    atomic_bool warned_csum;
    pthread_mutex_t mode_lock;
    bool promisc_cfg;  /* cfg->promisc: promiscuous regardless of set_rx_mode */
    bool promisc_on;   /* PACKET_MR_PROMISC membership held */
    bool allmulti_on;  /* PACKET_MR_ALLMULTI membership held */
    vio_log_fn log;
    void *log_opaque;
    struct pk_qp qp[];
};

static const struct vio_net_backend_ops pk_ops;

static uint64_t pk_feature_mask(void)
{
    /* tx: the kernel parses our header (virtio_net_hdr_to_skb) and segments or
     * checksums in software where the device cannot. rx: GUEST_UFO is not offered
     * because the kernel never hands out UFO frames on packet sockets. */
    static const unsigned bits[] = {
        VIRTIO_NET_F_CSUM,       VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,  VIRTIO_NET_F_HOST_ECN,   VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN,
    };
    uint64_t f = 0;
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        f |= vio_feature_bit(bits[i]);
    return f;
}

static uint64_t pk_features(void *opaque)
{
    return ((struct pk *)opaque)->features;
}

static int pk_configure(void *opaque, uint64_t negotiated)
{
    struct pk *p = opaque;
    atomic_store_explicit(&p->negotiated, negotiated & p->features, memory_order_relaxed);
    return 0;
}

/* True when the bound interface no longer exists (lookup by index, so a new interface
 * that took the old name does not count). */
static bool pk_iface_gone(struct pk *p)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_ifindex = p->ifindex;
    return ioctl(p->ctl_fd, SIOCGIFNAME, &ifr) < 0 && errno == ENODEV;
}

static int pk_mark_gone(struct pk *p, int err)
{
    return vio_be_set_gone(&p->gone, p->log, p->log_opaque, p->object, p->ifname, err);
}

/* Frame @p i of a queue pair's ring. */
static struct tpacket2_hdr *pk_frame(struct pk_qp *q, unsigned i)
{
    size_t off = (size_t)(i / PK_FRAMES_PER_BLOCK) * PK_BLOCK_SIZE +
                 (size_t)(i % PK_FRAMES_PER_BLOCK) * PK_FRAME_SIZE;
    return (struct tpacket2_hdr *)(void *)(q->ring + off);
}

/* Ownership handshake on tp_status, pairing with the kernel's smp_wmb() before it
 * sets TP_STATUS_USER and its smp_rmb() after reading TP_STATUS_KERNEL. */
static uint32_t pk_status_acquire(const struct tpacket2_hdr *h)
{
    uint32_t s = *(const volatile uint32_t *)&h->tp_status;
    atomic_thread_fence(memory_order_acquire); /* frame contents after the status */
    return s;
}

static void pk_release(struct pk_qp *q, struct tpacket2_hdr *h)
{
    atomic_thread_fence(memory_order_release); /* our reads/writes of the frame first */
    *(volatile uint32_t *)&h->tp_status = TP_STATUS_KERNEL;
    q->head = q->head + 1 == q->frame_nr ? 0 : q->head + 1;
}

/*
 * The ring is empty: consume a pending socket error (the kernel sets ENETDOWN when
 * the interface goes down or is unregistered, and a pending error keeps the fd
 * polling readable for ever), and turn "unregistered" into the sticky gone state.
 */
static int pk_empty(struct pk *p, struct pk_qp *q)
{
    int soerr = 0;
    socklen_t l = sizeof(soerr);
    if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == 0 && soerr != 0 && pk_iface_gone(p))
        return pk_mark_gone(p, soerr);
    return -EAGAIN;
}

/* Length of a frame once its stripped VLAN tag (if any) is put back. */
static size_t pk_vlan_len(const struct tpacket2_hdr *h)
{
    return (h->tp_status & TP_STATUS_VLAN_VALID) ? 4u : 0u;
}

/*
 * Returns the next frame the driver can take, skipping (and giving back to the
 * kernel) what it cannot: our own outgoing frames on kernels without
 * PACKET_IGNORE_OUTGOING, truncated frames, GSO types the driver did not negotiate.
 * Completes partial checksums in place when GUEST_CSUM is off. NULL when empty.
 */
static struct tpacket2_hdr *pk_next(struct pk *p, struct pk_qp *q, struct virtio_net_hdr **vh)
{
    uint64_t neg = atomic_load_explicit(&p->negotiated, memory_order_relaxed);
    for (;;) {
        struct tpacket2_hdr *h = pk_frame(q, q->head);
        if (!(pk_status_acquire(h) & TP_STATUS_USER))
            return NULL;
        const struct sockaddr_ll *sll =
            (const void *)((const uint8_t *)h + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
        uint8_t *mac = (uint8_t *)h + h->tp_mac;
        struct virtio_net_hdr *k = (void *)(mac - sizeof(*k));
        if (sll->sll_pkttype == PACKET_OUTGOING) {
            pk_release(q, h);
            continue;
        }
        if (h->tp_snaplen < h->tp_len || h->tp_mac < sizeof(*k) ||
            (size_t)h->tp_mac + h->tp_snaplen > PK_FRAME_SIZE) {
            if (vio_be_once(&p->warned_trunc))
                vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, p->object,
                         "dropping frames larger than the ring's %u-byte slots (len %u)",
                         PK_FRAME_SIZE, h->tp_len);
            pk_release(q, h);
            continue;
        }
        if (!vio_be_gso_allowed(k->gso_type, neg)) {
            if (vio_be_once(&p->warned_gso))
                vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, p->object,
                         "dropping GSO frames (type %u) the driver did not negotiate; disable "
                         "GRO/TSO on %s to avoid it",
                         k->gso_type, p->ifname);
            pk_release(q, h);
            continue;
        }
        if (!vio_has_feature(neg, VIRTIO_NET_F_GUEST_CSUM)) {
            if ((k->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
                vio_be_csum_complete(mac, h->tp_snaplen, k->csum_start, k->csum_offset) < 0) {
                if (vio_be_once(&p->warned_csum))
                    vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, p->object,
                             "dropping frames with csum_start/csum_offset outside them");
                pk_release(q, h);
                continue;
            }
            k->flags = 0; /* without GUEST_CSUM the driver gets no checksum flags */
        }
        *vh = k;
        return h;
    }
}

static ssize_t pk_rx_peek(void *opaque, unsigned qpi)
{
    struct pk *p = opaque;
    struct virtio_net_hdr *k;
    if (qpi >= p->nqp)
        return -EINVAL;
    if (vio_be_is_gone(&p->gone))
        return -ENODEV;
    struct pk_qp *q = &p->qp[qpi];
    struct tpacket2_hdr *h = pk_next(p, q, &k);
    if (!h)
        return pk_empty(p, q);
    return (ssize_t)(h->tp_snaplen + pk_vlan_len(h));
}

static ssize_t pk_rx(void *opaque, unsigned qpi, struct vio_net_hdr *hdr, const struct iovec *iov,
                     unsigned iovcnt)
{
    struct pk *p = opaque;
    struct virtio_net_hdr *k;
    if (qpi >= p->nqp || (iovcnt && !iov))
        return -EINVAL;
    if (vio_be_is_gone(&p->gone))
        return -ENODEV;
    struct pk_qp *q = &p->qp[qpi];
    ssize_t cap = vio_iov_len(iov, iovcnt);
    if (cap < 0)
        return cap;
    struct tpacket2_hdr *h = pk_next(p, q, &k);
    if (!h)
        return pk_empty(p, q);

    const uint8_t *mac = (const uint8_t *)h + h->tp_mac;
    size_t snap = h->tp_snaplen;
    size_t vlan = pk_vlan_len(h);
    size_t len = snap + vlan;
    if (len > (size_t)cap) {
        pk_release(q, h);
        return -EMSGSIZE;
    }
    struct vio_iov_cur sc;
    vio_iov_cur_init(&sc, iov, iovcnt);
    if (vlan && snap >= 12) {
        /* The kernel strips an accelerated VLAN tag into tp_vlan_tci: put it back
         * after the MAC addresses, and shift the header offsets with it. */
        uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid : ETH_P_8021Q;
        uint8_t tag[4] = {(uint8_t)(tpid >> 8), (uint8_t)tpid, (uint8_t)(h->tp_vlan_tci >> 8),
                          (uint8_t)h->tp_vlan_tci};
        vio_iov_cur_write(&sc, mac, 12);
        vio_iov_cur_write(&sc, tag, sizeof(tag));
        vio_iov_cur_write(&sc, mac + 12, snap - 12);
        if (k->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
            k->csum_start = (uint16_t)(k->csum_start + 4);
        if (k->gso_type != VIRTIO_NET_HDR_GSO_NONE && k->hdr_len)
            k->hdr_len = (uint16_t)(k->hdr_len + 4);
    } else {
        len = snap;
        vio_iov_cur_write(&sc, mac, snap);
    }
    if (hdr)
        vio_be_hdr_from_native10(k, hdr);
    pk_release(q, h);
    return (ssize_t)len;
}

static int pk_tx(void *opaque, unsigned qpi, const struct vio_net_hdr *hdr, const struct iovec *iov,
                 unsigned iovcnt)
{
    struct pk *p = opaque;
    if (qpi >= p->nqp || iovcnt > VIO_BE_MAX_IOV || (iovcnt && !iov))
        return -EINVAL;
    if (vio_be_is_gone(&p->gone))
        return -ENODEV;
    struct pk_qp *q = &p->qp[qpi];
    if (hdr)
        vio_be_hdr_to_native10(hdr, &q->txhdr);
    else
        memset(&q->txhdr, 0, sizeof(q->txhdr));
    q->iov[0].iov_base = &q->txhdr;
    q->iov[0].iov_len = sizeof(q->txhdr);
    if (iovcnt)
        memcpy(&q->iov[1], iov, iovcnt * sizeof(*iov));
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = q->iov;
    msg.msg_iovlen = iovcnt + 1;
    /* The qdisc-bypass path drops every frame the kernel would still have to
     * segment (GSO from a packet socket is always re-validated, and veth and
     * friends cannot take it as is): GSO frames go through the socket that
     * keeps the normal transmit path, everything else bypasses the qdisc. */
    int fd = q->txhdr.gso_type != VIRTIO_NET_HDR_GSO_NONE ? q->gso_fd : q->fd;
    for (int attempt = 0;; attempt++) {
        if (sendmsg(fd, &msg, MSG_DONTWAIT) >= 0)
            return 0;
        int err = errno;
        switch (err) {
        case EAGAIN:
            return -EAGAIN; /* socket send buffer full: tx_fd polls writable when it drains */
        case ENOBUFS:
            return 0; /* the driver's queue refused it (qdisc bypass): a full wire drops */
        case ENXIO:
        case ENODEV:
            /* the socket lost its interface: it was unregistered */
            return pk_mark_gone(p, err);
        case ENETDOWN:
            if (pk_iface_gone(p))
                return pk_mark_gone(p, err);
            /* Either the link is down now, or this is the socket error the kernel left
             * when it went down earlier; sendmsg just consumed it, so try once more. */
            if (attempt == 0)
                continue;
            return -ENETDOWN;
        default:
            return -err; /* -EINVAL bad header or runt, -EMSGSIZE over MTU without GSO ... */
        }
    }
}

static int pk_fd(void *opaque, unsigned qpi)
{
    struct pk *p = opaque;
    return qpi < p->nqp ? p->qp[qpi].fd : -1;
}

static int pk_membership(struct pk *p, int type, bool add)
{
    struct packet_mreq mr;
    memset(&mr, 0, sizeof(mr));
    mr.mr_ifindex = p->ifindex;
    mr.mr_type = (unsigned short)type;
    if (setsockopt(p->qp[0].fd, SOL_PACKET, add ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP,
                   &mr, sizeof(mr)) < 0)
        return -errno;
    return 0;
}

static int pk_set_rx_mode(void *opaque, unsigned flags)
{
    struct pk *p = opaque;
    int err = 0;
    if (flags & ~(unsigned)(VIO_NET_RX_PROMISC | VIO_NET_RX_ALLMULTI))
        return -EINVAL;
    if (vio_be_is_gone(&p->gone))
        return -ENODEV;
    bool promisc = p->promisc_cfg || (flags & VIO_NET_RX_PROMISC);
    bool allmulti = (flags & VIO_NET_RX_ALLMULTI) != 0;
    pthread_mutex_lock(&p->mode_lock);
    if (promisc != p->promisc_on) {
        err = pk_membership(p, PACKET_MR_PROMISC, promisc);
        if (!err)
            p->promisc_on = promisc;
    }
    if (!err && allmulti != p->allmulti_on) {
        err = pk_membership(p, PACKET_MR_ALLMULTI, allmulti);
        if (!err)
            p->allmulti_on = allmulti;
    }
    pthread_mutex_unlock(&p->mode_lock);
    if (err)
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, p->object, "set_rx_mode %#x: %s", flags,
                 strerror(-err));
    return err;
}

static int pk_link_status(void *opaque)
{
    struct pk *p = opaque;
    struct ifreq ifr;
    if (vio_be_is_gone(&p->gone))
        return 0;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_ifindex = p->ifindex;
    if (ioctl(p->ctl_fd, SIOCGIFNAME, &ifr) < 0) {
        if (errno == ENODEV) {
            pk_mark_gone(p, ENODEV);
            return 0;
        }
        return -errno;
    }
    if (ioctl(p->ctl_fd, SIOCGIFFLAGS, &ifr) < 0)
        return errno == ENODEV ? 0 : -errno;
    return (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING) ? 1 : 0;
}

static void pk_destroy(void *opaque)
{
    struct pk *p = opaque;
    if (!p)
        return;
    for (unsigned i = 0; i < p->nqp; i++) {
        struct pk_qp *q = &p->qp[i];
        if (q->ring)
            munmap(q->ring, q->ring_bytes);
        if (q->fd >= 0)
            close(q->fd); /* also drops the promisc/allmulti memberships */
        if (q->gso_fd >= 0)
            close(q->gso_fd);
    }
    if (p->ctl_fd >= 0)
        close(p->ctl_fd);
    pthread_mutex_destroy(&p->mode_lock);
    free(p);
}

static const struct vio_net_backend_ops pk_ops = {
    .name = "af_packet",
    .features = pk_features,
    .configure = pk_configure,
    .tx = pk_tx,
    .rx_peek = pk_rx_peek,
    .rx = pk_rx,
    .rx_fd = pk_fd,
    .tx_fd = pk_fd,
    .set_rx_mode = pk_set_rx_mode,
    .link_status = pk_link_status,
    .destroy = pk_destroy,
};

static int pk_fail(struct pk *p, const char *what, unsigned qpi)
{
    int err = errno;
    vio_logf(p->log, p->log_opaque, VIO_LOG_ERROR, p->object, "%s (queue pair %u): %s%s", what, qpi,
             strerror(err),
             err == EPERM || err == EACCES ? " (AF_PACKET sockets need CAP_NET_RAW)" : "");
    return -err;
}

static int pk_setopt_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v));
}

/* Socket, vnet header, ring, bypass and bind for one queue pair. The socket starts
 * with protocol 0 (receives nothing) and a drop-all filter, so no frame lands in a
 * ring before the fanout group is complete (pk_open_finish removes the filter). */
static int pk_open_queue(struct pk *p, unsigned i, unsigned ring_frames)
{
    struct pk_qp *q = &p->qp[i];
    q->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0)
        return pk_fail(p, "socket(AF_PACKET)", i);

    struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog = {.len = 1, .filter = &drop};
    if (setsockopt(q->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
        return pk_fail(p, "SO_ATTACH_FILTER", i);
    /* The vnet header must be chosen before the ring exists. */
    if (pk_setopt_int(q->fd, SOL_PACKET, PACKET_VNET_HDR, 1) < 0)
        return pk_fail(p, "PACKET_VNET_HDR", i);
    if (pk_setopt_int(q->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2) < 0)
        return pk_fail(p, "PACKET_VERSION TPACKET_V2", i);

    unsigned blocks = (ring_frames + PK_FRAMES_PER_BLOCK - 1) / PK_FRAMES_PER_BLOCK;
    struct tpacket_req req = {
        .tp_block_size = PK_BLOCK_SIZE,
        .tp_block_nr = blocks,
        .tp_frame_size = PK_FRAME_SIZE,
        .tp_frame_nr = blocks * PK_FRAMES_PER_BLOCK,
    };
    if (setsockopt(q->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        return pk_fail(p, "PACKET_RX_RING", i);
    q->frame_nr = req.tp_frame_nr;
    q->ring_bytes = (size_t)blocks * PK_BLOCK_SIZE;
    void *m = mmap(NULL, q->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd, 0);
    if (m == MAP_FAILED)
        return pk_fail(p, "mmap rx ring", i);
    q->ring = m;

    if (pk_setopt_int(q->fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1) < 0)
        return pk_fail(p, "PACKET_QDISC_BYPASS", i);
#ifdef PACKET_IGNORE_OUTGOING
    /* Older kernels refuse it; pk_next filters PACKET_OUTGOING frames anyway. */
    (void)pk_setopt_int(q->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
#endif

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = p->ifindex;
    if (bind(q->fd, (const struct sockaddr *)&sll, sizeof(sll)) < 0)
        return pk_fail(p, "bind", i);

    /* Send-only GSO socket: protocol 0 receives nothing, no qdisc bypass. */
    q->gso_fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->gso_fd < 0)
        return pk_fail(p, "socket(AF_PACKET, gso)", i);
    if (pk_setopt_int(q->gso_fd, SOL_PACKET, PACKET_VNET_HDR, 1) < 0)
        return pk_fail(p, "PACKET_VNET_HDR (gso)", i);
    sll.sll_protocol = 0;
    if (bind(q->gso_fd, (const struct sockaddr *)&sll, sizeof(sll)) < 0)
        return pk_fail(p, "bind (gso)", i);
    return 0;
}

/* Joins every socket to one fanout group: the kernel picks a free group id for the
 * first socket (PACKET_FANOUT_FLAG_UNIQUEID), the others join that id. */
static int pk_join_fanout(struct pk *p)
{
    int v = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    if (setsockopt(p->qp[0].fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof(v)) < 0)
        return pk_fail(p, "PACKET_FANOUT", 0);
    int got = 0;
    socklen_t l = sizeof(got);
    if (getsockopt(p->qp[0].fd, SOL_PACKET, PACKET_FANOUT, &got, &l) < 0)
        return pk_fail(p, "getsockopt PACKET_FANOUT", 0);
    int join = (got & 0xffff) | (PACKET_FANOUT_HASH << 16);
    for (unsigned i = 1; i < p->nqp; i++)
        if (setsockopt(p->qp[i].fd, SOL_PACKET, PACKET_FANOUT, &join, sizeof(join)) < 0)
            return pk_fail(p, "PACKET_FANOUT join", i);
    return 0;
}

int vio_net_packet_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out)
{
    struct vio_net_backend_config c;
    if (!out)
        return -EINVAL;
    int err = vio_be_load_config(cfg, &c);
    if (err)
        return err;
    if (!c.ifname || !c.ifname[0] || strlen(c.ifname) >= IFNAMSIZ || c.ring_frames > PK_RING_MAX)
        return -EINVAL;
    unsigned ifindex = if_nametoindex(c.ifname);
    if (ifindex == 0) {
        err = errno == ENODEV || errno == ENXIO ? -ENODEV : -errno;
        vio_logf(c.log, c.log_opaque, VIO_LOG_ERROR, "af_packet", "no interface %s: %s", c.ifname,
                 strerror(-err));
        return err;
    }

    struct pk *p = calloc(1, sizeof(*p) + (size_t)c.queue_pairs * sizeof(p->qp[0]));
    if (!p)
        return -ENOMEM;
    p->ifindex = (int)ifindex;
    p->nqp = c.queue_pairs;
    p->log = c.log;
    p->log_opaque = c.log_opaque;
    p->promisc_cfg = c.promisc;
    p->features = pk_feature_mask();
    atomic_init(&p->negotiated, 0); /* conservative until configure(): no offloads */
    snprintf(p->ifname, sizeof(p->ifname), "%s", c.ifname);
    snprintf(p->object, sizeof(p->object), "af_packet %s", p->ifname);
    pthread_mutex_init(&p->mode_lock, NULL);
    p->ctl_fd = -1;
    for (unsigned i = 0; i < p->nqp; i++) {
        p->qp[i].fd = -1;
        p->qp[i].gso_fd = -1;
    }

    p->ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (p->ctl_fd < 0) {
        err = pk_fail(p, "socket(AF_UNIX)", 0);
        goto fail;
    }
    for (unsigned i = 0; i < p->nqp; i++) {
        err = pk_open_queue(p, i, c.ring_frames);
        if (err)
            goto fail;
    }
    if (p->nqp > 1) {
        err = pk_join_fanout(p);
        if (err)
            goto fail;
    }
    for (unsigned i = 0; i < p->nqp; i++) {
        int dummy = 0;
        if (setsockopt(p->qp[i].fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof(dummy)) < 0) {
            err = pk_fail(p, "SO_DETACH_FILTER", i);
            goto fail;
        }
    }
    if (p->promisc_cfg) {
        err = pk_membership(p, PACKET_MR_PROMISC, true);
        if (err) {
            vio_logf(p->log, p->log_opaque, VIO_LOG_ERROR, p->object, "PACKET_MR_PROMISC: %s",
                     strerror(-err));
            goto fail;
        }
        p->promisc_on = true;
    }
    vio_logf(p->log, p->log_opaque, VIO_LOG_INFO, p->object,
             "opened, %u queue pair(s), %u ring frames each", p->nqp, p->qp[0].frame_nr);
    out->ops = &pk_ops;
    out->opaque = p;
    out->queue_pairs = p->nqp;
    return 0;

fail:
    pk_destroy(p);
    return err;
}
