/* SPDX-License-Identifier: MIT */
/*
 * Internal: a one-region translation cache for hot paths. A queue keeps the
 * region its last buffer hit; the next buffer in the same region is
 * translated inline without a search. The hint carries the map's generation,
 * so any add/remove/clear invalidates it and the slow path runs again.
 */
#ifndef VIO_CORE_MEM_INTERNAL_H
#define VIO_CORE_MEM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/mem.h"

struct vio_mem_hint {
    uint64_t gpa;        /* region start */
    uint64_t size;       /* region size; 0 = empty hint */
    uintptr_t host;      /* host address of gpa */
    uint64_t generation; /* map generation the hint was taken at */
    bool readonly;
};

/* Fill @h with the region containing @gpa. False when unmapped. */
bool vio_mem_hint_fill(const struct vio_mem *m, uint64_t gpa, struct vio_mem_hint *h);

/* Current generation of the map: bumped by every add/remove/clear. It is the
 * first member of struct vio_mem (checked by a static assert in mem.c), so
 * the hot path reads it inline without a call. */
static inline uint64_t vio_mem_gen(const struct vio_mem *m)
{
    return *(const uint64_t *)(const void *)m;
}

/* Translate [gpa, gpa+len) through the hint if it lies wholly inside it.
 * Returns true and fills one iovec on a hit; false means "use the slow path"
 * (not an error). Overflow-safe for any gpa/len. */
static inline bool vio_mem_hint_translate(const struct vio_mem_hint *h, uint64_t gen, uint64_t gpa,
                                          uint64_t len, bool write, struct iovec *iov)
{
    uint64_t off = gpa - h->gpa;
    if (h->generation != gen || off >= h->size || len > h->size - off || (write && h->readonly))
        return false;
    iov->iov_base = (void *)(h->host + (uintptr_t)off);
    iov->iov_len = (size_t)len;
    return true;
}

#endif
