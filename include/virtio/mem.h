/* SPDX-License-Identifier: MIT */
/**
 * @file mem.h
 * @brief Guest memory map: guest-physical (and frontend-virtual) addresses to host pointers.
 *
 * @defgroup mem Guest memory map
 * @brief Regions of guest memory and overflow-safe address translation.
 *
 * A map holds up to a capacity of regions fixed at creation. Each region maps
 * [guest_addr, guest_addr + size) to host memory at host_ptr; it also has a
 * "frontend virtual address" (what a vhost-user frontend calls its userspace
 * address) so SET_VRING_ADDR style addresses can be converted. Lookups are a
 * binary search, O(log n).
 *
 * Threading: lookups (vio_mem_translate(), vio_mem_ptr(), vio_mem_uva_to_gpa(),
 * vio_mem_count(), vio_mem_get()) only read the map, so they may run
 * concurrently with each other from any number of threads. Adding, removing or
 * clearing regions must not run concurrently with anything else on the same
 * map; the caller (a transport) stops its queues first.
 *
 * Memory: every array is allocated by vio_mem_new(); add, remove and the
 * lookups never allocate and never make a system call. The map never
 * dereferences host_ptr: it only computes addresses inside the ranges it was
 * given, so the caller keeps owning (and mapping/unmapping) host memory.
 *
 * User (frontend virtual) addresses: a region whose user_addr is 0 has no
 * frontend virtual address; it is not entered in the user-address index and
 * vio_mem_uva_to_gpa() never finds it. Regions with a non-zero user_addr are
 * keyed by [user_addr, user_addr + size), and those ranges may not overlap.
 * @{
 */
#ifndef VIO_MEM_H
#define VIO_MEM_H

#include <sys/uio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default region capacity: the vhost-user memory-slot maximum. */
#define VIO_MEM_DEFAULT_CAPACITY 509u

/** Access kinds for vio_mem_translate(). */
enum vio_mem_access {
    VIO_MEM_READ = 1,  /**< the device will read the buffer */
    VIO_MEM_WRITE = 2  /**< the device will write the buffer (refused on read-only regions);
                            VIO_MEM_READ | VIO_MEM_WRITE is accepted and checked as a write */
};

/** A region of guest memory, filled in by the caller. */
struct vio_mem_region {
    uint64_t guest_addr; /**< guest-physical start */
    uint64_t size;       /**< length in bytes, > 0; a region may end exactly at 2^64 */
    uint64_t user_addr;  /**< frontend virtual address of the start (vhost-user); 0 if unused
                              (the region is then not reachable by vio_mem_uva_to_gpa()) */
    void *host_ptr;      /**< where the region is mapped in this process */
    uint64_t mmap_offset; /**< offset of host_ptr inside the mapping it came from (informational) */
    bool readonly;       /**< device may not write here */
};

/** Opaque guest memory map. */
struct vio_mem;

/**
 * @brief Create an empty map.
 * @param[in]  capacity maximum number of regions; 0 selects #VIO_MEM_DEFAULT_CAPACITY
 * @param[out] out      the new map, owned by the caller (vio_mem_free())
 * @retval 0 success
 * @retval -EINVAL out is NULL or capacity > 65536
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_mem_new(unsigned capacity, struct vio_mem **out);

/** @brief Destroy a map (does not unmap host memory, which the caller owns). NULL is a no-op. */
VIO_API void vio_mem_free(struct vio_mem *m);

/**
 * @brief Add a region. The region is copied; @p r may be reused after the call.
 *
 * Adjacent regions (one ends where the next begins) are allowed and are what
 * lets a translation span several regions. Checks run in the order listed
 * below, so a full map still reports -EINVAL / -EEXIST for a bad region.
 * Must not run concurrently with any other call on @p m. Never allocates.
 *
 * @param[in,out] m the map
 * @param[in]     r the region (in vhost-user, every field comes from the frontend)
 * @retval 0 success
 * @retval -EINVAL m or r is NULL, size 0, NULL host pointer, or an address range that wraps past
 *                 2^64 (guest or non-zero user side) or past the top of the host address space
 * @retval -EEXIST the guest range overlaps an existing region, or a non-zero user range overlaps
 *                 another non-zero user range
 * @retval -ENOSPC the map already holds its capacity of regions
 */
VIO_API int vio_mem_add(struct vio_mem *m, const struct vio_mem_region *r);

/**
 * @brief Remove the region that starts at @p guest_addr with size @p size.
 *
 * Must not run concurrently with any other call on @p m. Never allocates.
 * @retval 0 success
 * @retval -EINVAL m is NULL
 * @retval -ENOENT no region with exactly that start and size
 */
VIO_API int vio_mem_remove(struct vio_mem *m, uint64_t guest_addr, uint64_t size);

/** @brief Remove every region (NULL is a no-op). Must not run concurrently with other calls on @p m. */
VIO_API void vio_mem_clear(struct vio_mem *m);

/** @brief Number of regions in the map (0 for NULL). */
VIO_API unsigned vio_mem_count(const struct vio_mem *m);

/**
 * @brief Copy out region number @p i (in ascending guest-address order).
 * @retval 0 success
 * @retval -EINVAL m or out is NULL
 * @retval -ENOENT i >= vio_mem_count()
 */
VIO_API int vio_mem_get(const struct vio_mem *m, unsigned i, struct vio_mem_region *out);

/**
 * @brief Translate a guest range into host iovecs.
 *
 * A range may span adjacent regions and then yields one iovec per region
 * touched (iovecs that happen to be contiguous in host memory are merged).
 * The iovec lengths always sum to @p len. len == 0 yields 0 iovecs and
 * succeeds whatever @p gpa is (nothing is accessed, so nothing is checked).
 *
 * Overflow-safe for every @p gpa and @p len up to UINT64_MAX: a range that
 * would run past 2^64 is -EFAULT, never wrapped. O(log n) to find the first
 * region, then one step per further region touched. Read-only on the map:
 * never allocates, never makes a system call, may run concurrently with other
 * lookups. Errors are decided by the guest input first: a range that faults
 * is -EFAULT even when @p iov is also too small. On error the contents of
 * @p iov are unspecified.
 *
 * @param[in]  m       the map
 * @param[in]  gpa     guest-physical start (guest controlled)
 * @param[in]  len     length in bytes (guest controlled)
 * @param[in]  access  #VIO_MEM_READ or #VIO_MEM_WRITE (or both)
 * @param[out] iov     array receiving the iovecs (may be NULL when @p iov_cap is 0)
 * @param[in]  iov_cap capacity of @p iov
 * @return the number of iovecs written (>= 0)
 * @retval -EINVAL m is NULL, access is not a valid #vio_mem_access combination, or iov is NULL
 *                 with iov_cap > 0 (caller bugs)
 * @retval -EFAULT some byte of the range is not mapped, the range wraps, or a write hits a
 *                 read-only region
 * @retval -ENOBUFS more than @p iov_cap iovecs would be needed
 */
VIO_API int vio_mem_translate(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access,
                              struct iovec *iov, unsigned iov_cap);

/**
 * @brief Host pointer for a range that must be contiguous in one region (rings, small structs).
 *
 * Unlike vio_mem_translate(), a range that spans two regions is refused even
 * when they are adjacent and host-contiguous. With len == 0, @p gpa itself
 * must lie inside a region. Same safety and threading rules as
 * vio_mem_translate(); @p gpa and @p len may be guest controlled.
 *
 * @return the host pointer, or NULL when [gpa, gpa+len) is not inside a single region,
 *         a write to a read-only region is asked for, m is NULL or access is invalid
 */
VIO_API void *vio_mem_ptr(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access);

/**
 * @brief Convert a frontend virtual address range to a guest-physical address.
 *
 * Only regions added with a non-zero user_addr are searched. The range must
 * lie inside one region's user range (with len == 0, @p uva itself must).
 * O(log n), read-only, may run concurrently with other lookups; @p uva and
 * @p len are peer controlled (vhost-user SET_VRING_ADDR).
 *
 * @retval 0 success, *gpa set
 * @retval -EINVAL m or gpa is NULL
 * @retval -EFAULT [uva, uva+len) is not inside one region's user range (or wraps past 2^64)
 */
VIO_API int vio_mem_uva_to_gpa(const struct vio_mem *m, uint64_t uva, uint64_t len, uint64_t *gpa);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
