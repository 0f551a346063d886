/* SPDX-License-Identifier: MIT */
/*
 * Internal: the one chain cursor of the library. Device models (virtio-net's header, frame,
 * control commands) and network backends (gather, scatter) read and write the byte stream
 * that an iovec array describes through it, as rust-vmm's descriptor_utils Reader / Writer.
 *
 * - Bounds-checked: no call reads or writes past the last iovec; a short array shows as a
 *   short count, never as an overrun. Lengths may be anything up to SIZE_MAX.
 * - Zero-length entries are allowed anywhere and skipped.
 * - No allocation and no syscall; header-only and static inline (the common cases, all bytes
 *   in the current iovec, are one branch and one memcpy).
 * - The array is borrowed and never written, except by vio_iov_split(), which trims it in
 *   place so that a tail can be handed on as a plain iovec array (writev, a backend).
 */
#ifndef VIO_CORE_IOV_H
#define VIO_CORE_IOV_H

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#define VIO_IOV_INLINE static inline __attribute__((always_inline))

/* A position in an iovec array: entry *iov (n entries from there on), byte off inside it.
 * off <= iov->iov_len; an exhausted entry is left lazily, by the next call. */
struct vio_iov_cur {
    const struct iovec *iov;
    unsigned n;
    size_t off;
};

static inline void vio_iov_cur_init(struct vio_iov_cur *c, const struct iovec *iov, unsigned n)
{
    c->iov = iov;
    c->n = iov ? n : 0;
    c->off = 0;
}

/* Total bytes of an iovec array; -EINVAL when the sum does not fit in an ssize_t. */
static inline ssize_t vio_iov_len(const struct iovec *iov, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

/* Bytes left from the cursor on (SIZE_MAX when they do not fit in a size_t). */
static inline size_t vio_iov_cur_left(const struct vio_iov_cur *c)
{
    if (!c->n)
        return 0;
    size_t total = c->iov[0].iov_len - c->off;
    for (unsigned i = 1; i < c->n; i++) {
        if (c->iov[i].iov_len > SIZE_MAX - total)
            return SIZE_MAX;
        total += c->iov[i].iov_len;
    }
    return total;
}

/*
 * The next contiguous piece of at most @p max bytes: its address in *@p base, its length
 * returned (0: the array is used up, or @p max is 0), the cursor moved past it. The one
 * primitive the copies below are built on.
 */
static inline size_t vio_iov_cur_chunk(struct vio_iov_cur *c, size_t max, void **base)
{
    while (c->n && c->off == c->iov->iov_len) {
        c->iov++;
        c->n--;
        c->off = 0;
    }
    if (!c->n || !max)
        return 0;
    size_t m = c->iov->iov_len - c->off;
    if (m > max)
        m = max;
    *base = (uint8_t *)c->iov->iov_base + c->off;
    c->off += m;
    return m;
}

/* Moves the cursor @p len bytes on; returns the bytes skipped (fewer at the end). */
static inline size_t vio_iov_cur_skip(struct vio_iov_cur *c, size_t len)
{
    size_t done = 0;
    void *p;
    size_t m;
    while (done < len && (m = vio_iov_cur_chunk(c, len - done, &p)))
        done += m;
    return done;
}

/* The slow paths stay out of line: inlined, they crowd the fast path's registers. */
static __attribute__((noinline, unused)) size_t
vio_iov_cur_read_slow(struct vio_iov_cur *c, void *dst, size_t len)
{
    uint8_t *d = dst;
    size_t done = 0;
    void *p;
    size_t m;
    while (done < len && (m = vio_iov_cur_chunk(c, len - done, &p))) {
        memcpy(d + done, p, m);
        done += m;
    }
    return done;
}

static __attribute__((noinline, unused)) size_t
vio_iov_cur_write_slow(struct vio_iov_cur *c, const void *src, size_t len)
{
    const uint8_t *s = src;
    size_t done = 0;
    void *p;
    size_t m;
    while (done < len && (m = vio_iov_cur_chunk(c, len - done, &p))) {
        memcpy(p, s + done, m);
        done += m;
    }
    return done;
}

/* Copies up to @p len bytes out and moves past them; returns the bytes copied. */
VIO_IOV_INLINE size_t vio_iov_cur_read(struct vio_iov_cur *c, void *dst, size_t len)
{
    if (c->n && c->iov->iov_len - c->off >= len) {
        memcpy(dst, (const uint8_t *)c->iov->iov_base + c->off, len);
        c->off += len;
        return len;
    }
    return vio_iov_cur_read_slow(c, dst, len);
}

/* Copies up to @p len bytes in and moves past them; returns the bytes copied. */
VIO_IOV_INLINE size_t vio_iov_cur_write(struct vio_iov_cur *c, const void *src, size_t len)
{
    if (c->n && c->iov->iov_len - c->off >= len) {
        memcpy((uint8_t *)c->iov->iov_base + c->off, src, len);
        c->off += len;
        return len;
    }
    return vio_iov_cur_write_slow(c, src, len);
}

/* One-shot forms: @p len bytes at byte @p off of an array. The usual case, everything in the
 * first iovec, costs one compare; with a constant @p len the copy becomes a few moves. */
VIO_IOV_INLINE size_t vio_iov_read_at(const struct iovec *iov, unsigned n, size_t off, void *dst,
                                      size_t len)
{
    if (n && off == 0 && iov[0].iov_len >= len) {
        memcpy(dst, iov[0].iov_base, len);
        return len;
    }
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, iov, n);
    if (vio_iov_cur_skip(&c, off) != off)
        return 0;
    return vio_iov_cur_read_slow(&c, dst, len);
}

VIO_IOV_INLINE size_t vio_iov_write_at(const struct iovec *iov, unsigned n, size_t off,
                                       const void *src, size_t len)
{
    if (n && off == 0 && iov[0].iov_len >= len) {
        memcpy(iov[0].iov_base, src, len);
        return len;
    }
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, iov, n);
    if (vio_iov_cur_skip(&c, off) != off)
        return 0;
    return vio_iov_cur_write_slow(&c, src, len);
}

/*
 * The iovecs that hold the next @p len bytes (or all that is left, if less), copied to @p out
 * without zero-length entries, and the cursor moved past them. Returns the entries written;
 * -ENOBUFS when more than @p cap are needed (cursor not moved). @p len bytes need at most
 * @p len entries.
 */
static inline int vio_iov_cur_split(struct vio_iov_cur *c, size_t len, struct iovec *out,
                                    unsigned cap)
{
    struct vio_iov_cur t = *c;
    unsigned k = 0;
    void *p;
    size_t m, done = 0;
    while (done < len && (m = vio_iov_cur_chunk(&t, len - done, &p))) {
        if (k == cap)
            return -ENOBUFS;
        out[k].iov_base = p;
        out[k].iov_len = m;
        k++;
        done += m;
    }
    *c = t;
    return (int)k;
}

/*
 * Splits an array at byte @p at in place: the entry holding byte @p at is trimmed to start
 * there, and its index is returned, so that (iov + r, n - r) is the tail (empty, r == n, when
 * the array holds @p at bytes or fewer). The bytes before @p at are no longer described by the
 * array: take them first (vio_iov_cur_split / _read) if they are needed.
 */
VIO_IOV_INLINE unsigned vio_iov_split(struct iovec *iov, unsigned n, size_t at)
{
    if (n && iov[0].iov_len > at) {
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + at;
        iov[0].iov_len -= at;
        return 0;
    }
    unsigned i = 0;
    while (i < n && at >= iov[i].iov_len) {
        at -= iov[i].iov_len;
        i++;
    }
    if (i < n && at) {
        iov[i].iov_base = (uint8_t *)iov[i].iov_base + at;
        iov[i].iov_len -= at;
    }
    return i;
}

#endif
