/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers shared by the network backends (tap, AF_PACKET, loopback):
 * config loading, the virtio-net header in its two layouts,
 * software checksum completion, and the "interface vanished" sticky state.
 *
 * Everything here is allocation free and syscall free so it can sit on the
 * data path.
 */
#ifndef VIO_BACKEND_UTIL_H
#define VIO_BACKEND_UTIL_H

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include <linux/virtio_net.h>

#include "core/iov.h" /* the chain cursor the backends copy frames with */
#include "core/log.h"
#include "virtio/net_backend.h"

/* Queue pairs a backend accepts: the tun driver's MAX_TAP_QUEUES, used for all three. */
#define VIO_BE_MAX_QUEUE_PAIRS 256u
/* Caller iovecs per frame: UIO_MAXIOV (1024) minus the header and the rx overflow slot. */
#define VIO_BE_MAX_IOV 1022u

/*
 * Copies the caller's config into @p out, zero-filling fields an older caller
 * did not know about (struct_size smaller than ours). NULL @p cfg means all
 * defaults. Applies the defaults of the common fields.
 */
static inline int vio_be_load_config(const struct vio_net_backend_config *cfg,
                                     struct vio_net_backend_config *out)
{
    memset(out, 0, sizeof(*out));
    if (cfg) {
        size_t n = cfg->struct_size;
        if (n < offsetof(struct vio_net_backend_config, queue_pairs) + sizeof(cfg->queue_pairs))
            return -EINVAL;
        if (n > sizeof(*out))
            n = sizeof(*out);
        memcpy(out, cfg, n);
    }
    out->struct_size = sizeof(*out);
    if (out->queue_pairs == 0)
        out->queue_pairs = 1;
    if (out->queue_pairs > VIO_BE_MAX_QUEUE_PAIRS)
        return -EINVAL;
    if (out->ring_frames == 0)
        out->ring_frames = 256;
    return 0;
}

/*
 * The kernel's AF_PACKET / legacy header is struct virtio_net_hdr (10 bytes, host
 * byte order unless the socket says otherwise); ours is the 12-byte little-endian
 * virtio 1.x layout. num_buffers does not exist on the short layout.
 */
_Static_assert(sizeof(struct vio_net_hdr) == VIO_NET_HDR_SIZE, "vio_net_hdr is 12 bytes");
_Static_assert(sizeof(struct virtio_net_hdr_v1) == VIO_NET_HDR_SIZE, "virtio_net_hdr_v1 is 12 bytes");
_Static_assert(sizeof(struct virtio_net_hdr) == 10, "virtio_net_hdr is 10 bytes");
_Static_assert(offsetof(struct vio_net_hdr, num_buffers) == offsetof(struct virtio_net_hdr_v1, num_buffers),
               "vio_net_hdr matches virtio_net_hdr_v1");
_Static_assert(offsetof(struct vio_net_hdr, csum_offset) ==
                   offsetof(struct virtio_net_hdr_v1, csum_offset),
               "vio_net_hdr matches virtio_net_hdr_v1");

static inline void vio_be_hdr_to_native10(const struct vio_net_hdr *h, struct virtio_net_hdr *k)
{
    k->flags = h->flags;
    k->gso_type = h->gso_type;
    k->hdr_len = le16toh(h->hdr_len);
    k->gso_size = le16toh(h->gso_size);
    k->csum_start = le16toh(h->csum_start);
    k->csum_offset = le16toh(h->csum_offset);
}

static inline void vio_be_hdr_from_native10(const struct virtio_net_hdr *k, struct vio_net_hdr *h)
{
    h->flags = k->flags;
    h->gso_type = k->gso_type;
    h->hdr_len = htole16(k->hdr_len);
    h->gso_size = htole16(k->gso_size);
    h->csum_start = htole16(k->csum_start);
    h->csum_offset = htole16(k->csum_offset);
    h->num_buffers = htole16(1);
}

/* Ones' complement sum of @p len bytes (network byte order pairs), not folded. */
static inline uint32_t vio_be_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    while (len > 1) {
        sum += (uint32_t)p[0] << 8 | p[1];
        if (sum & 0x80000000u)
            sum = (sum & 0xffff) + (sum >> 16);
        p += 2;
        len -= 2;
    }
    if (len)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static inline uint16_t vio_be_csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/*
 * Completes a NEEDS_CSUM frame in place the way a NIC would (virtio 1.2, 5.1.6.2):
 * the field at csum_start + csum_offset holds the pseudo-header sum; the sum from
 * csum_start to the end of the frame, folded and complemented, replaces it. A
 * result of 0 is stored as 0xffff, which means the same in ones' complement and is
 * what UDP requires. Returns -EINVAL when the offsets point outside the frame.
 */
static inline int vio_be_csum_complete(uint8_t *frame, size_t len, unsigned csum_start,
                                       unsigned csum_offset)
{
    if (csum_start >= len || csum_offset > len - csum_start || len - csum_start - csum_offset < 2)
        return -EINVAL;
    uint16_t c = vio_be_csum_fold(vio_be_csum_add(0, frame + csum_start, len - csum_start));
    if (c == 0)
        c = 0xffff;
    frame[csum_start + csum_offset] = (uint8_t)(c >> 8);
    frame[csum_start + csum_offset + 1] = (uint8_t)c;
    return 0;
}

/*
 * Whether a received frame's GSO type may be handed to a driver that negotiated
 * @p negotiated (virtio 1.2, 5.1.6.4: the device must not send a GSO type whose
 * GUEST_ feature was not negotiated).
 */
static inline bool vio_be_gso_allowed(uint8_t gso_type, uint64_t negotiated)
{
    uint8_t t = gso_type & (uint8_t)~VIO_NET_HDR_GSO_ECN;
    if (t == VIO_NET_HDR_GSO_NONE)
        return (gso_type & VIO_NET_HDR_GSO_ECN) == 0;
    if ((gso_type & VIO_NET_HDR_GSO_ECN) && !vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_ECN))
        return false;
    switch (t) {
    case VIO_NET_HDR_GSO_TCPV4:
        return vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_TSO4);
    case VIO_NET_HDR_GSO_TCPV6:
        return vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_TSO6);
    case VIO_NET_HDR_GSO_UDP:
        return vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_UFO);
#if defined(VIRTIO_NET_F_GUEST_USO4) && defined(VIRTIO_NET_F_GUEST_USO6)
    case VIO_NET_HDR_GSO_UDP_L4:
        return vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_USO4) ||
               vio_has_feature(negotiated, VIRTIO_NET_F_GUEST_USO6);
#endif
    default:
        return false;
    }
}

/* One-shot flag: true the first time it is taken, so a condition is logged once. */
static inline bool vio_be_once(atomic_bool *flag)
{
    return !atomic_load_explicit(flag, memory_order_relaxed) &&
           !atomic_exchange_explicit(flag, true, memory_order_relaxed);
}

/*
 * Sticky "the interface is gone" state. Set by whichever queue pair (or
 * link_status) sees it first; the transition is logged exactly once; afterwards
 * tx/rx return -ENODEV without a syscall.
 */
struct vio_be_gone {
    atomic_bool gone;
    atomic_bool logged;
};

static inline bool vio_be_is_gone(struct vio_be_gone *g)
{
    return atomic_load_explicit(&g->gone, memory_order_relaxed);
}

static inline int vio_be_set_gone(struct vio_be_gone *g, vio_log_fn log, void *log_opaque,
                                  const char *object, const char *ifname, int err)
{
    atomic_store_explicit(&g->gone, true, memory_order_relaxed);
    if (vio_be_once(&g->logged))
        vio_logf(log, log_opaque, VIO_LOG_ERROR, object,
                 "interface %s vanished (%s); the backend returns -ENODEV from now on",
                 ifname, strerror(err));
    return -ENODEV;
}

#endif
