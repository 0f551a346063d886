/* SPDX-License-Identifier: MIT */
/*
 * Internal: small helpers every layer of the library shares, written once.
 * Header-only and static inline; no I/O, usable from src/core.
 */
#ifndef VIO_CORE_UTIL_H
#define VIO_CORE_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A non-zero power of two (queue sizes, alignments). */
static inline bool vio_is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* Statistics counter with one writer (the thread driving that queue): a relaxed load and
 * store instead of a locked read-modify-write; readers on other threads see whole values. */
typedef _Atomic uint64_t vio_ctr;

static inline void vio_ctr_add(vio_ctr *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t vio_ctr_get(const vio_ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
