/* SPDX-License-Identifier: MIT */
/*
 * Test support: a guest-RAM arena and a raw split-ring builder.
 *
 * The arena is host memory from mmap() registered in a struct vio_mem at a
 * chosen guest base address, either as one region, as two guest-adjacent
 * regions (whose host mappings are *not* adjacent, so a buffer crossing the
 * boundary translates to two iovecs), or as two regions with an unmapped
 * guest hole between them. Every region is surrounded by PROT_NONE guard
 * pages, so a stray access by the library faults instead of passing silently.
 *
 * The raw ring builder plays the driver (or, for driver-side tests, the
 * device) by writing <linux/virtio_ring.h> structures directly: any
 * descriptor, any avail entry, any index, whether or not it makes sense.
 * That is how hostile input is made. Values are stored little-endian as the
 * virtio 1 spec requires; index stores are release stores and index loads are
 * acquire loads so a builder can run on another thread than the queue.
 *
 * Nothing here calls abort() on bad input to the library; helpers that cannot
 * do what they are asked (arena full, bad argument) return 0 / NULL / -errno,
 * and tests assert on those.
 */
#ifndef VIO_TEST_ARENA_H
#define VIO_TEST_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/mem.h"
#include "virtio/queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Arena */

/** Maximum number of regions an arena registers. */
#define ARENA_MAX_REGIONS 2

/** Layout of an arena, filled in by the test. */
struct arena_config {
    uint64_t base;      /**< guest address of the first byte (page aligned); 0 is allowed */
    uint64_t size;      /**< mapped guest bytes in total (both regions), page multiple; 0 = 1 MiB */
    uint64_t split;     /**< 0: one region. Else: region 0 holds the first @c split bytes,
                             region 1 the rest (page multiple, 0 < split < size) */
    uint64_t hole;      /**< guest bytes left unmapped between region 0 and region 1
                             (page multiple; only with split) */
    bool region1_readonly; /**< register region 1 read-only (device may not write there) */
    unsigned mem_capacity; /**< capacity passed to vio_mem_new(); 0 = default */
};

/** One region of an arena. */
struct arena_region {
    uint64_t gpa;   /**< guest start */
    uint64_t size;  /**< bytes */
    uint8_t *host;  /**< host start */
};

/** A guest-RAM arena. Fields are read-only for tests. */
struct arena {
    struct vio_mem *mem;                       /**< the map (owned) */
    struct arena_region reg[ARENA_MAX_REGIONS];
    unsigned nreg;
    uint8_t *map;     /**< the whole mmap (guards included) */
    size_t map_len;
    uint64_t next[ARENA_MAX_REGIONS]; /**< bump pointer per region (guest) */
    uint64_t lim[ARENA_MAX_REGIONS];  /**< bump limit per region (guest) */
};

/** Bytes the bump allocator keeps free on either side of the region-0/region-1 boundary,
 * so tests can place objects that straddle it with arena_boundary(). */
#define ARENA_BOUNDARY_RESERVE 8192u

/**
 * Map and register an arena. @p cfg may be NULL (1 MiB at guest 0x100000, one region).
 * @return 0 or -errno (vio_mem errors, -ENOMEM, -EINVAL bad layout)
 */
int arena_init(struct arena *a, const struct arena_config *cfg);

/** Convenience: one region of @p size bytes at @p base. */
int arena_init_simple(struct arena *a, uint64_t base, uint64_t size);

/** Unregister and unmap. Safe on a zeroed or already finished arena. */
void arena_fini(struct arena *a);

/**
 * Bump-allocate @p len zeroed guest bytes aligned to @p align (power of 2, 0 = 16), from region
 * 0 first, then region 1. Allocations never straddle a region boundary and stay
 * ARENA_BOUNDARY_RESERVE bytes away from it. @return the guest address, 0 when full
 * (an arena at guest base 0 never hands out address 0: the first 16 bytes are skipped).
 */
uint64_t arena_alloc(struct arena *a, uint64_t len, uint64_t align);

/** Host pointer of guest address @p gpa, NULL if it is not inside a region. */
void *arena_ptr(const struct arena *a, uint64_t gpa);

/** True when [gpa, gpa+len) is mapped (possibly across the two regions). */
bool arena_mapped(const struct arena *a, uint64_t gpa, uint64_t len);

/** Guest address where region 0 ends (the boundary with region 1, or with the hole). */
uint64_t arena_boundary(const struct arena *a);

/** First guest address of the hole (== arena_boundary()), 0 when there is no hole. */
uint64_t arena_hole(const struct arena *a);

/** Guest address one past the last mapped byte. */
uint64_t arena_end(const struct arena *a);

/** Copy @p len bytes into guest memory (may cross region boundaries). @return 0 or -EFAULT */
int arena_write(struct arena *a, uint64_t gpa, const void *src, size_t len);

/** Copy @p len bytes out of guest memory. @return 0 or -EFAULT */
int arena_read(const struct arena *a, uint64_t gpa, void *dst, size_t len);

/** Fill guest memory with @p byte. @return 0 or -EFAULT */
int arena_fill(struct arena *a, uint64_t gpa, int byte, size_t len);

/* ------------------------------------------------------------------------ */
/* Raw split ring builder */

/** A split ring as seen by a raw (possibly hostile) writer. */
struct rawring {
    struct arena *a;
    uint16_t size;
    uint64_t desc;   /**< guest address of the descriptor table */
    uint64_t avail;  /**< guest address of the avail ring */
    uint64_t used;   /**< guest address of the used ring */
    uint16_t avail_shadow; /**< next avail idx the builder will publish */
    uint16_t used_shadow;  /**< next used idx the builder (as device) will publish */
    uint16_t used_seen;    /**< next used entry rawring_take_used() reads */
};

/**
 * Allocate a ring of @p size entries in the arena (contiguous legacy-style layout with
 * @p align for the used ring, 0 = 4) and zero it. @return 0 or -ENOMEM / -EINVAL.
 */
int rawring_init(struct rawring *r, struct arena *a, uint16_t size, size_t align);

/** Use ring memory at given guest addresses (e.g. the one a vio_drvq set up). No zeroing. */
int rawring_attach(struct rawring *r, struct arena *a, uint16_t size, uint64_t desc,
                   uint64_t avail, uint64_t used);

/** Write descriptor @p i (no range check beyond the ring's own table: i is taken mod size). */
void rawring_set_desc(struct rawring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                      uint16_t next);

/** Read descriptor @p i back. */
void rawring_get_desc(const struct rawring *r, uint16_t i, uint64_t *addr, uint32_t *len,
                      uint16_t *flags, uint16_t *next);

/** Write avail->ring[slot % size] = head (any value, even >= size). */
void rawring_set_avail_slot(struct rawring *r, uint16_t slot, uint16_t head);

/** Release-store avail->idx (and the shadow). */
void rawring_set_avail_idx(struct rawring *r, uint16_t idx);

/** Current avail->idx as stored. */
uint16_t rawring_avail_idx(const struct rawring *r);

/** Put @p head in the next avail slot and publish it (avail->idx + 1). @return the new idx. */
uint16_t rawring_publish(struct rawring *r, uint16_t head);

/** Write avail->flags. */
void rawring_set_avail_flags(struct rawring *r, uint16_t flags);

/** Write used_event (avail->ring[size]). */
void rawring_set_used_event(struct rawring *r, uint16_t v);

/** Read used->idx (acquire). */
uint16_t rawring_used_idx(const struct rawring *r);

/** Read used->flags. */
uint16_t rawring_used_flags(const struct rawring *r);

/** Read avail_event (used->ring[size]). */
uint16_t rawring_avail_event(const struct rawring *r);

/** Read used->ring[slot % size]. */
void rawring_used_elem(const struct rawring *r, uint16_t slot, uint32_t *id, uint32_t *len);

/** Take the next used element the builder has not read yet. @return 0 or -EAGAIN. */
int rawring_take_used(struct rawring *r, uint32_t *id, uint32_t *len);

/* Device-role helpers (driver-side tests: a hostile device writing the used ring). */

/** Write used->ring[slot % size] = {id, len}. */
void rawring_set_used_elem(struct rawring *r, uint16_t slot, uint32_t id, uint32_t len);

/** Release-store used->idx (and the shadow). */
void rawring_set_used_idx(struct rawring *r, uint16_t idx);

/** Append {id, len} at the used shadow and publish used->idx + 1. */
void rawring_push_used(struct rawring *r, uint32_t id, uint32_t len);

/** Write used->flags. */
void rawring_set_used_flags(struct rawring *r, uint16_t flags);

/** Write avail_event (used->ring[size]). */
void rawring_set_avail_event(struct rawring *r, uint16_t v);

/** Read used_event (avail->ring[size]). */
uint16_t rawring_used_event(const struct rawring *r);

/** Read avail->flags. */
uint16_t rawring_avail_flags(const struct rawring *r);

/** Read avail->ring[slot % size]. */
uint16_t rawring_avail_slot(const struct rawring *r, uint16_t slot);

/* ------------------------------------------------------------------------ */
/* Chain helpers: build common shapes in the descriptor table or an indirect table. */

/** One segment of a chain to build. */
struct rawseg {
    uint64_t addr;
    uint32_t len;
    bool write; /**< VRING_DESC_F_WRITE */
};

/**
 * Build a NEXT-linked chain in the ring's table at descriptors first, first+1, ...
 * (mod size) and return the head index (== first). Does not publish.
 */
uint16_t rawring_chain(struct rawring *r, uint16_t first, const struct rawseg *segs, unsigned n);

/** Build a chain and publish its head. @return the head. */
uint16_t rawring_add_chain(struct rawring *r, uint16_t first, const struct rawseg *segs,
                           unsigned n);

/** Allocate @p n data buffers of @p len bytes each, fill them with @p byte, return the first
 * address; buffer k is at the result + k * len rounded up to 16. 0 when full. */
uint64_t arena_alloc_bufs(struct arena *a, unsigned n, uint32_t len, int byte);

/**
 * Make a loop: descriptors first .. first+n-1 (mod size) each NEXT to the following one and the
 * last back to @p first. Each points at @p buf / @p len, readable.
 */
void rawring_loop(struct rawring *r, uint16_t first, uint16_t n, uint64_t buf, uint32_t len);

/** Allocate an indirect table of @p n descriptors (16*n bytes, zeroed). @return gpa or 0. */
uint64_t raw_indirect_alloc(struct arena *a, unsigned n);

/** Write entry @p i of the indirect table at @p table. @return 0 or -EFAULT. */
int raw_table_set(struct arena *a, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                  uint16_t flags, uint16_t next);

/** Fill an indirect table at @p table with a NEXT-linked chain of @p segs. @return 0 / -EFAULT. */
int raw_table_chain(struct arena *a, uint64_t table, const struct rawseg *segs, unsigned n);

/**
 * Point ring descriptor @p i at indirect table @p table holding @p n entries
 * (len = 16*n, flags = INDIRECT).
 */
void rawring_set_indirect(struct rawring *r, uint16_t i, uint64_t table, unsigned n);

/* ------------------------------------------------------------------------ */
/* Queue conveniences */

/** Fill a vio_queue_config with defaults (struct_size, max_size, name). */
void arena_queue_config(struct vio_queue_config *cfg, uint16_t max_size, const char *name);

/** vio_queue_setup() on the rawring's addresses. */
int rawring_setup_queue(struct rawring *r, struct vio_queue *q, uint64_t features);

/** Fill a vio_drvq_config for a ring freshly allocated in the arena (sizes/addresses/pool). */
int arena_drvq_config(struct arena *a, struct vio_drvq_config *cfg, uint16_t size,
                      uint64_t features, uint16_t indirect_max);

#ifdef __cplusplus
}
#endif
#endif
