/* SPDX-License-Identifier: MIT */
/*
 * Internal: accesses to ring memory shared with the other side.
 *
 * Every index, flag and event field that both sides touch goes through these
 * helpers: the index stores/loads carry the acquire/release orderings the
 * virtio spec requires, and everything is read exactly once (no compiler
 * re-fetch of a value the peer can change between check and use).
 * Ring memory is little-endian (virtio 1.x).
 */
#ifndef VIO_CORE_RING_ACCESS_H
#define VIO_CORE_RING_ACCESS_H

#include <endian.h>
#include <stdatomic.h>
#include <stdint.h>

#include <linux/virtio_ring.h>

/* Load a shared 16-bit field with acquire ordering: later reads of ring
 * entries/descriptors cannot be satisfied before this load. */
static inline uint16_t vio_ld_acq16(const void *p)
{
    return le16toh(atomic_load_explicit((const _Atomic uint16_t *)p, memory_order_acquire));
}

/* Load a shared 16-bit field once, no ordering of its own. */
static inline uint16_t vio_ld16(const void *p)
{
    return le16toh(atomic_load_explicit((const _Atomic uint16_t *)p, memory_order_relaxed));
}

/* Store a shared 16-bit field with release ordering: everything written
 * before (ring entries, descriptors) is visible before the new value. */
static inline void vio_st_rel16(void *p, uint16_t v)
{
    atomic_store_explicit((_Atomic uint16_t *)p, htole16(v), memory_order_release);
}

/* Store a shared 16-bit field, no ordering of its own. */
static inline void vio_st16(void *p, uint16_t v)
{
    atomic_store_explicit((_Atomic uint16_t *)p, htole16(v), memory_order_relaxed);
}

/* Full barrier for the notification-suppression handshakes (event idx and
 * the NO_NOTIFY / NO_INTERRUPT flags): a store to one field followed by a
 * load of another must not be reordered (store-load ordering). */
static inline void vio_mb(void)
{
    atomic_thread_fence(memory_order_seq_cst);
}

/* Read a descriptor exactly once into a local copy (host byte order). */
struct vio_desc_local {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static inline struct vio_desc_local vio_read_desc(const struct vring_desc *d)
{
    const volatile struct vring_desc *v = d;
    struct vio_desc_local r;
    r.addr = le64toh(v->addr);
    r.len = le32toh(v->len);
    r.flags = le16toh(v->flags);
    r.next = le16toh(v->next);
    return r;
}

static inline void vio_write_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                                  uint16_t next)
{
    d->addr = htole64(addr);
    d->len = htole32(len);
    d->flags = htole16(flags);
    d->next = htole16(next);
}

#endif
