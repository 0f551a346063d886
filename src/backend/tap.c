/* SPDX-License-Identifier: MIT */
/*
 * tap backend: a Linux tun/tap device opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
 * (| IFF_MULTI_QUEUE), one non-blocking fd per queue pair.
 *
 * TUNSETVNETHDRSZ is set to 12, so every frame crosses the fd as
 * [struct vio_net_hdr][frame]: tx is one writev of the caller's header and iovecs,
 * rx is one readv into a header slot and the caller's iovecs. The kernel parses the
 * header itself, so checksum and segmentation offload pass through untouched. The
 * kernel only hands us partial checksums / GSO frames for the offloads enabled with
 * TUNSETOFFLOAD, which configure() derives from the negotiated GUEST_* features.
 * vio_net_tap_vhost_fd() hands a queue's fd to vhost-net, with the header size vhost-net uses.
 *
 * Concurrency: each queue pair has its own fd and scratch iovec array; calls on one
 * queue pair are serialized by the caller, calls on different queue pairs share only
 * read-only state, the atomic "gone" flag and the control socket (ioctls are
 * thread-safe).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>
#include <linux/virtio_net.h>

#include "backend/util.h"
#include "virtio/net_backend.h"

struct tap_qp {
    int fd;
    struct vio_net_hdr txhdr; /* copy of the caller's header, so iov_base needs no cast */
    struct vio_net_hdr rxhdr;
    uint8_t spill;            /* one byte past the caller's buffers: detects truncation */
    struct iovec iov[VIO_BE_MAX_IOV + 2];
};

struct tap {
    char ifname[IFNAMSIZ];
    char object[IFNAMSIZ + 8]; /* "tap <ifname>" for the log */
    unsigned nqp;
    unsigned tun_offloads;     /* TUN_F_* bits the kernel accepted at open */
    uint64_t features;
    _Atomic uint64_t negotiated; /* what configure() was last told */
    int ctl_fd;                /* AF_UNIX datagram socket, only for SIOCGIFFLAGS */
    struct vio_be_gone gone;
    vio_log_fn log;
    void *log_opaque;
    struct tap_qp qp[];
};

static const struct vio_net_backend_ops tap_ops;

/* TUN_F_* offloads paired with the virtio-net features each enables on both sides.
 * The kernel ignores TSO/UFO/ECN bits unless TUN_F_CSUM is set with them (and ECN
 * only with TSO), so every probe carries its prerequisites. */
struct tap_offload {
    unsigned probe;     /* TUNSETOFFLOAD argument that tests the bit */
    unsigned tun_bit;   /* the bit itself */
    unsigned host_feat; /* guest -> host direction (tx) */
    unsigned guest_feat; /* host -> guest direction (rx), enabled via TUNSETOFFLOAD */
};

#define TAP_NO_FEAT 64u /* vio_feature_bit(64) == 0 */

static const struct tap_offload tap_offloads[] = {
    {TUN_F_CSUM, TUN_F_CSUM, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM},
    {TUN_F_CSUM | TUN_F_TSO4, TUN_F_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_TSO4},
    {TUN_F_CSUM | TUN_F_TSO6, TUN_F_TSO6, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO6},
    {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN, TUN_F_TSO_ECN, VIRTIO_NET_F_HOST_ECN,
     VIRTIO_NET_F_GUEST_ECN},
    {TUN_F_CSUM | TUN_F_UFO, TUN_F_UFO, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_GUEST_UFO},
#ifdef TUN_F_USO4
#ifdef VIRTIO_NET_F_HOST_USO
#define TAP_HOST_USO VIRTIO_NET_F_HOST_USO
#else
#define TAP_HOST_USO TAP_NO_FEAT
#endif
#ifdef VIRTIO_NET_F_GUEST_USO4
    {TUN_F_CSUM | TUN_F_USO4, TUN_F_USO4, TAP_HOST_USO, VIRTIO_NET_F_GUEST_USO4},
    {TUN_F_CSUM | TUN_F_USO6, TUN_F_USO6, TAP_HOST_USO, VIRTIO_NET_F_GUEST_USO6},
#else
    {TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6, TUN_F_USO4 | TUN_F_USO6, TAP_HOST_USO, TAP_NO_FEAT},
#endif
#endif
};

static uint64_t tap_features(void *opaque)
{
    return ((struct tap *)opaque)->features;
}

/* Confirms a suspected vanish with TUNGETIFF, which fails with EBADFD once the
 * interface behind the fd was deleted. Returns -ENODEV when gone, else 0. */
static int tap_check_gone(struct tap *t, int fd)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) < 0 && errno == EBADFD)
        return vio_be_set_gone(&t->gone, t->log, t->log_opaque, t->object, t->ifname, EBADFD);
    return 0;
}

static int tap_configure(void *opaque, uint64_t negotiated)
{
    struct tap *t = opaque;
    unsigned off = 0;
    if (vio_be_is_gone(&t->gone))
        return -ENODEV;
    /* GUEST_TSO4/6, GUEST_ECN, GUEST_UFO all require GUEST_CSUM (virtio 1.2, 5.1.3.1). */
    if (vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_CSUM)) {
        for (size_t i = 0; i < sizeof(tap_offloads) / sizeof(tap_offloads[0]); i++)
            if (vio_has_feature(negotiated, tap_offloads[i].guest_feat))
                off |= tap_offloads[i].tun_bit;
    }
    if (!(off & (TUN_F_TSO4 | TUN_F_TSO6)))
        off &= ~(unsigned)TUN_F_TSO_ECN;
    off &= t->tun_offloads;
    /* The offload set belongs to the device, not the fd: one ioctl covers all queues. */
    if (ioctl(t->qp[0].fd, TUNSETOFFLOAD, (unsigned long)off) < 0) {
        int err = errno;
        if (tap_check_gone(t, t->qp[0].fd))
            return -ENODEV;
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, t->object, "TUNSETOFFLOAD %#x: %s", off,
                 strerror(err));
        return -err;
    }
    atomic_store_explicit(&t->negotiated, negotiated, memory_order_relaxed);
    vio_logf(t->log, t->log_opaque, VIO_LOG_DEBUG, t->object, "offloads to the guest: %#x", off);
    return 0;
}

static int tap_tx(void *opaque, unsigned qpi, const struct vio_net_hdr *hdr, const struct iovec *iov,
                  unsigned iovcnt)
{
    struct tap *t = opaque;
    if (qpi >= t->nqp || iovcnt > VIO_BE_MAX_IOV || (iovcnt && !iov))
        return -EINVAL;
    if (vio_be_is_gone(&t->gone))
        return -ENODEV;
    struct tap_qp *q = &t->qp[qpi];
    if (hdr)
        q->txhdr = *hdr;
    else
        memset(&q->txhdr, 0, sizeof(q->txhdr));
    q->iov[0].iov_base = &q->txhdr;
    q->iov[0].iov_len = sizeof(q->txhdr);
    if (iovcnt)
        memcpy(&q->iov[1], iov, iovcnt * sizeof(*iov));
    ssize_t n = writev(q->fd, q->iov, (int)iovcnt + 1);
    if (n >= 0)
        return 0;
    int err = errno;
    switch (err) {
    case EAGAIN:
        return -EAGAIN;
    case EBADFD:
    case EIO:
    case ENXIO:
    case ENODEV:
        /* EIO is what a tap whose link is administratively down answers; only
         * TUNGETIFF tells that apart from a deleted interface. */
        if (tap_check_gone(t, q->fd))
            return -ENODEV;
        return err == EIO ? -ENETDOWN : -err;
    default:
        return -err; /* -EINVAL malformed header or runt frame, -EFAULT, -ENOMEM ... */
    }
}

static ssize_t tap_rx(void *opaque, unsigned qpi, struct vio_net_hdr *hdr, const struct iovec *iov,
                      unsigned iovcnt)
{
    struct tap *t = opaque;
    if (qpi >= t->nqp || iovcnt > VIO_BE_MAX_IOV || (iovcnt && !iov))
        return -EINVAL;
    if (vio_be_is_gone(&t->gone))
        return -ENODEV;
    struct tap_qp *q = &t->qp[qpi];
    ssize_t cap = vio_iov_len(iov, iovcnt);
    if (cap < 0)
        return cap;
    q->iov[0].iov_base = &q->rxhdr;
    q->iov[0].iov_len = sizeof(q->rxhdr);
    if (iovcnt)
        memcpy(&q->iov[1], iov, iovcnt * sizeof(*iov));
    /* The kernel returns min(frame, buffer): the extra byte makes a truncated frame
     * visible as one byte more than the caller's capacity. */
    q->iov[iovcnt + 1].iov_base = &q->spill;
    q->iov[iovcnt + 1].iov_len = 1;
    ssize_t n = readv(q->fd, q->iov, (int)iovcnt + 2);
    if (n < 0) {
        int err = errno;
        switch (err) {
        case EAGAIN:
            return -EAGAIN;
        case EBADFD:
        case EIO:
        case ENXIO:
        case ENODEV:
            if (tap_check_gone(t, q->fd))
                return -ENODEV;
            return -err;
        default:
            return -err;
        }
    }
    if ((size_t)n < sizeof(q->rxhdr))
        return -EIO; /* the kernel always writes the whole header */
    n -= (ssize_t)sizeof(q->rxhdr);
    if (n > cap)
        return -EMSGSIZE;
    /* Without GUEST_CSUM the driver must see no flags (virtio 1.2, 5.1.6.4.1), but tun
     * still reports DATA_VALID for frames the stack already verified. */
    if (!vio_has_feature(atomic_load_explicit(&t->negotiated, memory_order_relaxed),
                         VIRTIO_NET_F_GUEST_CSUM))
        q->rxhdr.flags = 0;
    /* tun zeroes (older kernels: skips) the bytes past its 10-byte header; one frame
     * is one buffer here, the device model rewrites it for mergeable rx. */
    q->rxhdr.num_buffers = htole16(1);
    if (hdr)
        *hdr = q->rxhdr;
    return n;
}

static int tap_fd(void *opaque, unsigned qpi)
{
    struct tap *t = opaque;
    return qpi < t->nqp ? t->qp[qpi].fd : -1;
}

/* tap has no receive filter: the kernel hands it every frame it transmits on the
 * interface, which already satisfies promiscuous and all-multicast mode. */
static int tap_set_rx_mode(void *opaque, unsigned flags)
{
    (void)opaque;
    if (flags & ~(unsigned)(VIO_NET_RX_PROMISC | VIO_NET_RX_ALLMULTI))
        return -EINVAL;
    return 0;
}

static int tap_link_status(void *opaque)
{
    struct tap *t = opaque;
    struct ifreq ifr;
    if (vio_be_is_gone(&t->gone))
        return 0;
    /* TUNGETIFF also follows a rename: it reports the interface's current name. */
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(t->qp[0].fd, TUNGETIFF, &ifr) < 0) {
        if (errno == EBADFD)
            vio_be_set_gone(&t->gone, t->log, t->log_opaque, t->object, t->ifname, EBADFD);
        return 0;
    }
    if (ioctl(t->ctl_fd, SIOCGIFFLAGS, &ifr) < 0)
        return errno == ENODEV ? 0 : -errno;
    return (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING) ? 1 : 0;
}

static void tap_destroy(void *opaque)
{
    struct tap *t = opaque;
    if (!t)
        return;
    for (unsigned i = 0; i < t->nqp; i++)
        if (t->qp[i].fd >= 0)
            close(t->qp[i].fd);
    if (t->ctl_fd >= 0)
        close(t->ctl_fd);
    free(t);
}

static const struct vio_net_backend_ops tap_ops = {
    .name = "tap",
    .features = tap_features,
    .configure = tap_configure,
    .tx = tap_tx,
    .rx_peek = NULL, /* tun has no cheap way to tell the next frame's length */
    .rx = tap_rx,
    .rx_fd = tap_fd,
    .tx_fd = tap_fd,
    .set_rx_mode = tap_set_rx_mode,
    .link_status = tap_link_status,
    .destroy = tap_destroy,
};

/* What to do about a refusal: creating a tap (or opening the tun device on some systems)
 * needs CAP_NET_ADMIN; without it, a persistent tap owned by the user can still be attached. */
static const char *tap_perm_hint(int err, const char *name, char *buf, size_t len)
{
    if (err != EPERM && err != EACCES)
        return "";
    snprintf(buf, len,
             " (needs CAP_NET_ADMIN, or a persistent tap owned by this user: "
             "ip tuntap add dev %s mode tap user %u%s)",
             name[0] ? name : "NAME", (unsigned)geteuid(),
             name[0] ? "" : ", then open it by that name");
    return buf;
}

/* Opens one queue: /dev/net/tun, TUNSETIFF, 12-byte vnet header. */
static int tap_open_queue(struct tap *t, unsigned i, const char *name, bool mq)
{
    struct ifreq ifr;
    char hint[192];
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, "tap", "open /dev/net/tun: %s%s",
                 strerror(err), tap_perm_hint(err, name, hint, sizeof(hint)));
        return -err;
    }
    t->qp[i].fd = fd;

    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (mq ? IFF_MULTI_QUEUE : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        /* An existing multi-queue tap only accepts IFF_MULTI_QUEUE attaches, even for
         * a single queue: retry once with it. */
        if (err == EINVAL && !mq && name[0]) {
            ifr.ifr_flags |= IFF_MULTI_QUEUE;
            if (ioctl(fd, TUNSETIFF, &ifr) == 0)
                goto attached;
            err = errno;
        }
        const char *why = "";
        if (err == EINVAL && name[0] && if_nametoindex(name) != 0)
            why = " (it exists and is not a tap, or its flags differ)";
        else if (err == EBUSY)
            why = " (already attached elsewhere; attach needs a multi_queue tap)";
        else
            why = tap_perm_hint(err, name, hint, sizeof(hint));
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, "tap", "TUNSETIFF %s (queue %u): %s%s",
                 name[0] ? name : "(new)", i, strerror(err), why);
        return -err;
    }
attached:
    if (i == 0) {
        snprintf(t->ifname, sizeof(t->ifname), "%s", ifr.ifr_name);
        snprintf(t->object, sizeof(t->object), "tap %s", t->ifname);
    }
    int hdrsz = (int)VIO_NET_HDR_SIZE;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdrsz) < 0) {
        int err = errno;
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, t->object, "TUNSETVNETHDRSZ 12: %s",
                 strerror(err));
        return -err;
    }
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    /* virtio 1.x headers are little-endian; tun defaults to native order. */
    int le = 1;
    if (ioctl(fd, TUNSETVNETLE, &le) < 0) {
        int err = errno;
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, t->object, "TUNSETVNETLE: %s", strerror(err));
        return -err;
    }
#endif
    return 0;
}

/* Asks the kernel which offloads it takes (it rejects unknown TUN_F_* bits with
 * EINVAL), then leaves all of them off until configure() turns some on. */
static void tap_probe_offloads(struct tap *t)
{
    int fd = t->qp[0].fd;
    for (size_t i = 0; i < sizeof(tap_offloads) / sizeof(tap_offloads[0]); i++) {
        const struct tap_offload *o = &tap_offloads[i];
        if ((o->probe & ~o->tun_bit & ~t->tun_offloads) != 0)
            continue; /* a prerequisite is missing */
        if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)o->probe) == 0) {
            t->tun_offloads |= o->tun_bit;
            t->features |= vio_feature_bit(o->host_feat) | vio_feature_bit(o->guest_feat);
        }
    }
    if (ioctl(fd, TUNSETOFFLOAD, 0ul) < 0)
        vio_logf(t->log, t->log_opaque, VIO_LOG_WARN, t->object, "TUNSETOFFLOAD 0: %s",
                 strerror(errno));
}

int vio_net_tap_open(const struct vio_net_backend_config *cfg, struct vio_net_backend *out)
{
    struct vio_net_backend_config c;
    if (!out)
        return -EINVAL;
    int err = vio_be_load_config(cfg, &c);
    if (err)
        return err;
    const char *name = c.ifname ? c.ifname : "";
    if (strlen(name) >= IFNAMSIZ)
        return -EINVAL;

    struct tap *t = calloc(1, sizeof(*t) + (size_t)c.queue_pairs * sizeof(t->qp[0]));
    if (!t)
        return -ENOMEM;
    t->nqp = c.queue_pairs;
    t->log = c.log;
    t->log_opaque = c.log_opaque;
    t->ctl_fd = -1;
    atomic_init(&t->negotiated, 0); /* matches TUNSETOFFLOAD 0 until configure() */
    snprintf(t->object, sizeof(t->object), "tap");
    for (unsigned i = 0; i < t->nqp; i++)
        t->qp[i].fd = -1;

    bool mq = t->nqp > 1;
    for (unsigned i = 0; i < t->nqp; i++) {
        /* The first queue creates or attaches by the caller's name (the kernel picks
         * "tap%d" for ""); the others attach to whatever the first one got. */
        err = tap_open_queue(t, i, i == 0 ? name : t->ifname, mq);
        if (err)
            goto fail;
    }
    t->ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (t->ctl_fd < 0) {
        err = -errno;
        goto fail;
    }
    tap_probe_offloads(t);
    vio_logf(t->log, t->log_opaque, VIO_LOG_INFO, t->object,
             "opened, %u queue pair(s), offloads %#x", t->nqp, t->tun_offloads);

    out->ops = &tap_ops;
    out->opaque = t;
    out->queue_pairs = t->nqp;
    return 0;

fail:
    tap_destroy(t);
    return err;
}

const char *vio_net_tap_ifname(const struct vio_net_backend *b)
{
    if (!b || b->ops != &tap_ops || !b->opaque)
        return NULL;
    return ((struct tap *)b->opaque)->ifname;
}

int vio_net_tap_vhost_fd(struct vio_net_backend *b, unsigned qp, unsigned vnet_hdr_len)
{
    if (!b || b->ops != &tap_ops || !b->opaque)
        return -EINVAL;
    struct tap *t = b->opaque;
    if (qp >= t->nqp || (vnet_hdr_len != 10 && vnet_hdr_len != VIO_NET_HDR_SIZE))
        return -EINVAL;
    if (vio_be_is_gone(&t->gone))
        return -ENODEV;
    int fd = t->qp[qp].fd;
    int hdrsz = (int)vnet_hdr_len;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdrsz) < 0) {
        int err = errno;
        if (tap_check_gone(t, fd))
            return -ENODEV;
        vio_logf(t->log, t->log_opaque, VIO_LOG_ERROR, t->object, "TUNSETVNETHDRSZ %u: %s",
                 vnet_hdr_len, strerror(err));
        return -err;
    }
    return fd;
}
