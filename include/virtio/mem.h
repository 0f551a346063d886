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
 * Threading: lookups (translate) may run concurrently with each other. Adding
 * or removing regions must not run concurrently with anything else on the
 * same map; the caller (a transport) stops its queues first.
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
    VIO_MEM_WRITE = 2  /**< the device will write the buffer (refused on read-only regions) */
};

/** A region of guest memory, filled in by the caller. */
struct vio_mem_region {
    uint64_t guest_addr; /**< guest-physical start */
    uint64_t size;       /**< length in bytes, > 0 */
    uint64_t user_addr;  /**< frontend virtual address of the start (vhost-user); 0 if unused */
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
 * @brief Add a region. The region is copied.
 * @retval 0 success
 * @retval -EINVAL size 0, NULL host pointer, or an address range that wraps past 2^64
 *                 (guest, user or host side)
 * @retval -EEXIST the guest range overlaps an existing region, or a non-zero user range overlaps
 * @retval -ENOSPC the map is full
 */
VIO_API int vio_mem_add(struct vio_mem *m, const struct vio_mem_region *r);

/**
 * @brief Remove the region that starts at @p guest_addr with size @p size.
 * @retval 0 success
 * @retval -ENOENT no region with exactly that start and size
 */
VIO_API int vio_mem_remove(struct vio_mem *m, uint64_t guest_addr, uint64_t size);

/** @brief Remove every region. */
VIO_API void vio_mem_clear(struct vio_mem *m);

/** @brief Number of regions in the map. */
VIO_API unsigned vio_mem_count(const struct vio_mem *m);

/**
 * @brief Copy out region number @p i (in guest-address order).
 * @retval 0 success
 * @retval -ENOENT i >= vio_mem_count()
 */
VIO_API int vio_mem_get(const struct vio_mem *m, unsigned i, struct vio_mem_region *out);

/**
 * @brief Translate a guest range into host iovecs.
 *
 * A range may span adjacent regions and then yields one iovec per region
 * touched (iovecs that happen to be contiguous in host memory are merged).
 * len == 0 yields 0 iovecs (and succeeds if @p gpa itself need not be mapped).
 *
 * @param[in]  m       the map
 * @param[in]  gpa     guest-physical start (guest controlled)
 * @param[in]  len     length in bytes (guest controlled)
 * @param[in]  access  #VIO_MEM_READ or #VIO_MEM_WRITE
 * @param[out] iov     array receiving the iovecs
 * @param[in]  iov_cap capacity of @p iov
 * @return the number of iovecs written (>= 0)
 * @retval -EFAULT some byte of the range is not mapped, the range wraps, or a write hits a
 *                 read-only region
 * @retval -ENOBUFS more than @p iov_cap iovecs would be needed
 */
VIO_API int vio_mem_translate(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access,
                              struct iovec *iov, unsigned iov_cap);

/**
 * @brief Host pointer for a range that must be contiguous in one region (rings, small structs).
 * @return the host pointer, or NULL when [gpa, gpa+len) is not inside a single region
 *         (or a write to a read-only region is asked for)
 */
VIO_API void *vio_mem_ptr(const struct vio_mem *m, uint64_t gpa, uint64_t len, int access);

/**
 * @brief Convert a frontend virtual address range to a guest-physical address.
 * @retval 0 success, *gpa set
 * @retval -EFAULT [uva, uva+len) is not inside one region's user range
 */
VIO_API int vio_mem_uva_to_gpa(const struct vio_mem *m, uint64_t uva, uint64_t len, uint64_t *gpa);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
