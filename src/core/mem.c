/* SPDX-License-Identifier: MIT */
/*
 * Guest memory map.
 *
 * Layout: two sorted arrays, both sized once in vio_mem_new() and never
 * reallocated.
 *
 *   gstart[i] / reg[i]  every region, sorted by guest_addr. gstart is a dense
 *                       copy of the keys so the binary search walks 8-byte
 *                       entries instead of whole region structs.
 *   uidx[j]             the regions whose user_addr is non-zero, sorted by
 *                       user_addr (the "frontend virtual address" key space
 *                       vhost-user's SET_VRING_ADDR uses).
 *
 * Guest ranges never overlap each other and neither do keyed user ranges,
 * so "the last entry whose start <= x" is the only candidate that can
 * contain x. No range wraps past 2^64 (checked at add time), so
 * "x - start < size" is an exact, overflow-free containment test and
 * start + size never needs to be computed on the lookup side except where a
 * region ends exactly at 2^64, which is handled explicitly.
 *
 * Lookups only read the map (no cache, no statistics), so any number of
 * threads may translate concurrently on a map nobody is changing.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mem.h"
#include "core/mem_internal.h"

/* Upper bound on the capacity: keeps every count an unsigned/int without care. */
#define VIO_MEM_MAX_CAPACITY 65536u

/* One entry of the user-address index. */
struct vio_mem_uent {
    uint64_t uva;  /* user_addr of the region */
    uint64_t size; /* its size */
    uint64_t gpa;  /* its guest_addr */
};

struct vio_mem {
    uint64_t generation;        /* first member: read inline by vio_mem_gen() */
    unsigned cap;
    unsigned n;                 /* regions in gstart/reg */
    unsigned nu;                /* entries in uidx */
    uint64_t *gstart;           /* [cap] guest start of reg[i], sorted ascending */
    struct vio_mem_region *reg; /* [cap] regions, same order as gstart */
    struct vio_mem_uent *uidx;  /* [cap] keyed user ranges, sorted by uva */
};
_Static_assert(offsetof(struct vio_mem, generation) == 0, "vio_mem_gen() reads the first member");

/* Number of entries of keys[0..n) that are <= x: the index just past the candidate. */
static unsigned upper_bound_u64(const uint64_t *keys, unsigned n, uint64_t x)
{
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (keys[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static unsigned upper_bound_uent(const struct vio_mem_uent *e, unsigned n, uint64_t x)
{
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (e[mid].uva <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* True when [a, a + asize) and [b, b + bsize) share a byte; sizes > 0, neither range wraps. */
static bool ranges_overlap(uint64_t a, uint64_t asize, uint64_t b, uint64_t bsize)
{
    /* compare last bytes, never one-past-the-end, which may be 2^64 */
    return a <= b + (bsize - 1) && b <= a + (asize - 1);
}

/* True when a range of @p size bytes (> 0) starting at @p start does not run past 2^64. */
static bool range_fits_u64(uint64_t start, uint64_t size)
{
    return size - 1 <= UINT64_MAX - start;
}

static bool access_valid(int access)
{
    return access == VIO_MEM_READ || access == VIO_MEM_WRITE ||
           access == (VIO_MEM_READ | VIO_MEM_WRITE);
}

int vio_mem_new(unsigned capacity, struct vio_mem **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (capacity == 0)
        capacity = VIO_MEM_DEFAULT_CAPACITY;
    if (capacity > VIO_MEM_MAX_CAPACITY)
        return -EINVAL;

    struct vio_mem *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->cap = capacity;
    m->gstart = calloc(capacity, sizeof(*m->gstart));
    m->reg = calloc(capacity, sizeof(*m->reg));
    m->uidx = calloc(capacity, sizeof(*m->uidx));
    if (!m->gstart || !m->reg || !m->uidx) {
        vio_mem_free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

void vio_mem_free(struct vio_mem *m)
{
    if (!m)
        return;
    free(m->gstart);
    free(m->reg);
    free(m->uidx);
    free(m);
}

int vio_mem_add(struct vio_mem *m, const struct vio_mem_region *r)
{
    if (!m || !r || r->size == 0 || !r->host_ptr)
        return -EINVAL;
    if (!range_fits_u64(r->guest_addr, r->size))
        return -EINVAL;
    if (r->user_addr != 0 && !range_fits_u64(r->user_addr, r->size))
        return -EINVAL;
    /* the host side must be addressable without wrapping, so every host
     * pointer translate computes is a plain in-range address */
    if (r->size - 1 > (uint64_t)(UINTPTR_MAX - (uintptr_t)r->host_ptr))
        return -EINVAL;

    /* guest key space: only the neighbours of the insertion point can overlap */
    unsigned pos = upper_bound_u64(m->gstart, m->n, r->guest_addr);
    if (pos > 0 && ranges_overlap(m->reg[pos - 1].guest_addr, m->reg[pos - 1].size,
                                  r->guest_addr, r->size))
        return -EEXIST;
    if (pos < m->n && ranges_overlap(m->reg[pos].guest_addr, m->reg[pos].size,
                                     r->guest_addr, r->size))
        return -EEXIST;

    unsigned upos = 0;
    if (r->user_addr != 0) {
        upos = upper_bound_uent(m->uidx, m->nu, r->user_addr);
        if (upos > 0 && ranges_overlap(m->uidx[upos - 1].uva, m->uidx[upos - 1].size,
                                       r->user_addr, r->size))
            return -EEXIST;
        if (upos < m->nu && ranges_overlap(m->uidx[upos].uva, m->uidx[upos].size,
                                           r->user_addr, r->size))
            return -EEXIST;
    }

    if (m->n >= m->cap)
        return -ENOSPC;

    memmove(&m->gstart[pos + 1], &m->gstart[pos], (size_t)(m->n - pos) * sizeof(*m->gstart));
    memmove(&m->reg[pos + 1], &m->reg[pos], (size_t)(m->n - pos) * sizeof(*m->reg));
    m->gstart[pos] = r->guest_addr;
    m->reg[pos] = *r;
    m->n++;
    m->generation++;

    if (r->user_addr != 0) {
        memmove(&m->uidx[upos + 1], &m->uidx[upos], (size_t)(m->nu - upos) * sizeof(*m->uidx));
        m->uidx[upos] = (struct vio_mem_uent){r->user_addr, r->size, r->guest_addr};
        m->nu++;
    }
    return 0;
}

int vio_mem_remove(struct vio_mem *m, uint64_t guest_addr, uint64_t size)
{
    if (!m)
        return -EINVAL;
    unsigned pos = upper_bound_u64(m->gstart, m->n, guest_addr);
    if (pos == 0)
        return -ENOENT;
    pos--;
    if (m->gstart[pos] != guest_addr || m->reg[pos].size != size)
        return -ENOENT;

    uint64_t uva = m->reg[pos].user_addr;
    memmove(&m->gstart[pos], &m->gstart[pos + 1], (size_t)(m->n - pos - 1) * sizeof(*m->gstart));
    memmove(&m->reg[pos], &m->reg[pos + 1], (size_t)(m->n - pos - 1) * sizeof(*m->reg));
    m->n--;
    m->generation++;

    if (uva != 0) {
        /* present by construction: add keyed it and keyed ranges are unique */
        unsigned upos = upper_bound_uent(m->uidx, m->nu, uva);
        if (upos > 0 && m->uidx[upos - 1].uva == uva) {
            upos--;
            memmove(&m->uidx[upos], &m->uidx[upos + 1],
                    (size_t)(m->nu - upos - 1) * sizeof(*m->uidx));
            m->nu--;
        }
    }
    return 0;
}

void vio_mem_clear(struct vio_mem *m)
{
    if (!m)
        return;
    m->n = 0;
    m->nu = 0;
    m->generation++;
}

unsigned vio_mem_count(const struct vio_mem *m)
{
    return m ? m->n : 0;
}

int vio_mem_get(const struct vio_mem *m, unsigned i, struct vio_mem_region *out)
{
    if (!m || !out)
        return -EINVAL;
    if (i >= m->n)
        return -ENOENT;
    *out = m->reg[i];
    return 0;
}

/* The region containing @p gpa, or NULL. */
static const struct vio_mem_region *find_gpa(const struct vio_mem *m, uint64_t gpa, unsigned *idx)
{
    unsigned pos = upper_bound_u64(m->gstart, m->n, gpa);
    if (pos == 0)
        return NULL;
    const struct vio_mem_region *r = &m->reg[pos - 1];
    if (gpa - r->guest_addr >= r->size)
        return NULL;
    *idx = pos - 1;
    return r;
}

bool vio_mem_hint_fill(const struct vio_mem *m, uint64_t gpa, struct vio_mem_hint *h)
{
    unsigned i;
    const struct vio_mem_region *r = m ? find_gpa(m, gpa, &i) : NULL;
    if (!r)
        return false;
    h->gpa = r->guest_addr;
    h->size = r->size;
    h->host = (uintptr_t)r->host_ptr;
    h->readonly = r->readonly;
    h->generation = m->generation;
    return true;
}

int vio_mem_translate(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access,
                      struct iovec *iov, unsigned iov_cap)
{
    if (!m || !access_valid(access) || (!iov && iov_cap > 0))
        return -EINVAL;
    if (len == 0)
        return 0;

    const bool write = (access & VIO_MEM_WRITE) != 0;
    unsigned i;
    const struct vio_mem_region *r = find_gpa(m, gpa, &i);
    if (!r)
        return -EFAULT;

    /* Common case: the whole range lies in one region. */
    uint64_t off = gpa - r->guest_addr;
    if (len <= r->size - off) {
        if (write && r->readonly)
            return -EFAULT;
        if (iov_cap == 0)
            return -ENOBUFS;
        iov[0].iov_base = (void *)((uintptr_t)r->host_ptr + (uintptr_t)off);
        iov[0].iov_len = (size_t)len;
        return 1;
    }

    /*
     * Spanning case: walk the adjacent regions. Each step consumes the rest of
     * one region, so the walk ends after at most n steps. When iov is full we
     * keep walking (without writing) so that a fault anywhere in the range is
     * reported as -EFAULT rather than -ENOBUFS: the error then depends only on
     * the guest's input, not on the caller's array size.
     */
    unsigned need = 0;      /* iovecs the range needs after merging */
    uintptr_t host_end = 0; /* one past the last host byte emitted; 0 = none yet */
    uint64_t rem = len;
    for (;;) {
        if (write && r->readonly)
            return -EFAULT;
        uint64_t avail = r->size - off;
        uint64_t chunk = rem < avail ? rem : avail;
        uintptr_t host = (uintptr_t)r->host_ptr + (uintptr_t)off;

        /* host is never 0 (host_ptr != NULL and the host range doesn't wrap),
         * so host_end == 0 can't produce a false merge */
        if (need > 0 && host == host_end) {
            if (need <= iov_cap)
                iov[need - 1].iov_len += (size_t)chunk;
        } else {
            if (need < iov_cap) {
                iov[need].iov_base = (void *)host;
                iov[need].iov_len = (size_t)chunk;
            }
            need++;
        }
        /* may wrap to 0 when the host range ends at the top of the address
         * space; harmless, see above */
        host_end = host + (uintptr_t)chunk;

        rem -= chunk;
        if (rem == 0)
            break;

        /* the rest starts right after this region; if this region ends at
         * 2^64, the guest range wraps */
        uint64_t next = r->guest_addr + (r->size - 1);
        if (next == UINT64_MAX)
            return -EFAULT;
        next++;
        if (i + 1 >= m->n || m->gstart[i + 1] != next)
            return -EFAULT; /* hole */
        i++;
        r = &m->reg[i];
        off = 0;
    }
    if (need > iov_cap)
        return -ENOBUFS;
    return (int)need;
}

void *vio_mem_ptr(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access)
{
    if (!m || !access_valid(access))
        return NULL;
    unsigned i;
    const struct vio_mem_region *r = find_gpa(m, gpa, &i);
    if (!r)
        return NULL;
    uint64_t off = gpa - r->guest_addr;
    if (len > r->size - off)
        return NULL;
    if ((access & VIO_MEM_WRITE) && r->readonly)
        return NULL;
    return (void *)((uintptr_t)r->host_ptr + (uintptr_t)off);
}

int vio_mem_uva_to_gpa(const struct vio_mem *m, uint64_t uva, uint64_t len, uint64_t *gpa)
{
    if (!m || !gpa)
        return -EINVAL;
    unsigned pos = upper_bound_uent(m->uidx, m->nu, uva);
    if (pos == 0)
        return -EFAULT;
    const struct vio_mem_uent *e = &m->uidx[pos - 1];
    uint64_t off = uva - e->uva;
    if (off >= e->size || len > e->size - off)
        return -EFAULT;
    *gpa = e->gpa + off; /* < gpa + size, which add checked doesn't wrap */
    return 0;
}
