/* SPDX-License-Identifier: MIT */
/*
 * SIGBUS guard for shared memory a peer can truncate (transport-internal).
 *
 * A vhost-user front-end hands over guest memory as file descriptors. A memfd that allows
 * sealing is sealed against shrinking (vio_guard_seal_shrink()); any other file (a regular
 * file on tmpfs, hugetlbfs, a memfd created without MFD_ALLOW_SEALING) can be truncated by
 * the peer at any time, and the next access to a page past the new end raises SIGBUS.
 *
 * vio_guard_add() registers such a mapping. The first registration installs a process-wide
 * SIGBUS handler (once; the handler that was there before is kept and called for every fault
 * that is not inside a registered range, or restored and re-raised if it was SIG_DFL). On a
 * fault inside a registered range the handler maps anonymous zero pages over the faulting
 * page (MAP_FIXED), so the access completes and reads zeros, sets the registration's poison
 * flag and shuts down the registration's socket (shutdown(2)), which wakes the owner's
 * control thread; the owner then ends the session. Everything the handler does is
 * async-signal-safe: a fixed table of slots read with atomics, mmap(), shutdown().
 *
 * Threads: vio_guard_add() / vio_guard_remove() from any thread (slots are claimed with
 * compare-and-swap); remove a range before unmapping it.
 */
#ifndef VIO_TRANSPORT_GUARD_H
#define VIO_TRANSPORT_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Registrations the process can hold at once (all transports together). */
#define VIO_GUARD_SLOTS 2048u

/*
 * Seal @p fd against shrinking if it allows sealing (F_ADD_SEALS F_SEAL_SHRINK).
 * Returns true when the file cannot shrink any more (sealed now or before), false when it
 * cannot be sealed (not a memfd, or its seals are sealed: F_SEAL_SEAL without SHRINK).
 */
bool vio_guard_seal_shrink(int fd);

/* True when @p fd carries F_SEAL_SHRINK. */
bool vio_guard_is_sealed(int fd);

/*
 * Guard [@p base, @p base + @p len) (page-aligned @p base, @p page the mapping's page size,
 * a power of two). On a fault there: zero pages over the faulting page, *@p poison = 1, and
 * shutdown(@p wake_fd, SHUT_RDWR) when @p wake_fd >= 0.
 * @retval 0 registered
 * @retval -EINVAL bad arguments
 * @retval -ENOSPC all slots are in use (the range is not guarded)
 * @retval -errno sigaction() failed
 */
int vio_guard_add(void *base, size_t len, size_t page, atomic_int *poison, int wake_fd);

/* Forget the registration whose range starts at @p base (no-op if there is none). */
void vio_guard_remove(void *base);

/* Number of ranges registered now (tests). */
unsigned vio_guard_count(void);

#endif
