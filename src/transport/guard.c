/* SPDX-License-Identifier: MIT */
/*
 * SIGBUS guard for peer-truncatable shared memory (see guard.h).
 */
#include "transport/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2 &&
                   ATOMIC_LONG_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics");

enum { SLOT_FREE = 0, SLOT_BUSY = 1 };

/* One guarded range. A slot is claimed (state FREE -> BUSY by CAS), filled, then published by
 * a release store of base; the handler acquires base and trusts the rest. Removal clears base
 * first, then frees the slot. */
struct slot {
    atomic_int state;
    _Atomic uintptr_t base;
    _Atomic size_t len;
    _Atomic size_t page;
    _Atomic(atomic_int *) poison;
    atomic_int wake_fd;
};

static struct slot g_slots[VIO_GUARD_SLOTS];
static atomic_uint g_count;
static struct sigaction g_prev; /* the SIGBUS disposition before ours */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_install_err;

/* Not ours: hand the fault to whoever had SIGBUS before, as if we were not there. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    if (g_prev.sa_flags & SA_SIGINFO) {
        if (g_prev.sa_sigaction) {
            g_prev.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (g_prev.sa_handler == SIG_IGN) {
        if (!si || si->si_code <= 0)
            return; /* a SIGBUS sent with kill() stays ignored */
    } else if (g_prev.sa_handler != SIG_DFL) {
        g_prev.sa_handler(sig);
        return;
    }
    /* Default action: restore it and re-raise; the signal is blocked while we run, so it is
     * delivered (and kills, with a core dump) as soon as the handler returns. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    /* si_code > 0: raised by the kernel for a fault (BUS_ADRERR on a truncated file,
     * BUS_MCEERR_* for a hardware memory error); si_addr is the faulting address. */
    if (si && si->si_code > 0) {
        uintptr_t a = (uintptr_t)si->si_addr;
        for (unsigned i = 0; i < VIO_GUARD_SLOTS; i++) {
            uintptr_t b = atomic_load_explicit(&g_slots[i].base, memory_order_acquire);
            if (!b)
                continue;
            size_t len = atomic_load_explicit(&g_slots[i].len, memory_order_relaxed);
            if (a - b >= len)
                continue;
            size_t pg = atomic_load_explicit(&g_slots[i].page, memory_order_relaxed);
            uintptr_t p = a & ~(uintptr_t)(pg - 1);
            /* Zero pages over the faulting page: the access is retried on return and
             * completes; the session is poisoned and ends on its control thread. */
            void *r = mmap((void *)p, pg, PROT_READ | PROT_WRITE,
                           MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (r == MAP_FAILED)
                break; /* cannot repair: the fault stays fatal */
            atomic_int *poison = atomic_load_explicit(&g_slots[i].poison, memory_order_relaxed);
            if (poison)
                atomic_store_explicit(poison, 1, memory_order_release);
            int fd = atomic_load_explicit(&g_slots[i].wake_fd, memory_order_relaxed);
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
            errno = saved;
            return;
        }
    }
    errno = saved;
    chain(sig, si, uc);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &g_prev) < 0)
        g_install_err = -errno;
}

bool vio_guard_is_sealed(int fd)
{
    int s = fcntl(fd, F_GET_SEALS);
    return s >= 0 && (s & F_SEAL_SHRINK);
}

bool vio_guard_seal_shrink(int fd)
{
    int s = fcntl(fd, F_GET_SEALS);
    if (s < 0)
        return false; /* not a memfd (EINVAL): cannot be sealed */
    if (s & F_SEAL_SHRINK)
        return true;
    if (s & F_SEAL_SEAL)
        return false; /* created without MFD_ALLOW_SEALING */
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0;
}

int vio_guard_add(void *base, size_t len, size_t page, atomic_int *poison, int wake_fd)
{
    if (!base || !len || !page || (page & (page - 1)) || ((uintptr_t)base & (page - 1)))
        return -EINVAL;
    pthread_once(&g_once, install);
    if (g_install_err)
        return g_install_err;
    for (unsigned i = 0; i < VIO_GUARD_SLOTS; i++) {
        struct slot *s = &g_slots[i];
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong_explicit(&s->state, &expect, SLOT_BUSY,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        atomic_store_explicit(&s->len, len, memory_order_relaxed);
        atomic_store_explicit(&s->page, page, memory_order_relaxed);
        atomic_store_explicit(&s->poison, poison, memory_order_relaxed);
        atomic_store_explicit(&s->wake_fd, wake_fd, memory_order_relaxed);
        /* publish: pairs with the handler's acquire load of base */
        atomic_store_explicit(&s->base, (uintptr_t)base, memory_order_release);
        atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
        return 0;
    }
    return -ENOSPC;
}

void vio_guard_remove(void *base)
{
    if (!base)
        return;
    for (unsigned i = 0; i < VIO_GUARD_SLOTS; i++) {
        struct slot *s = &g_slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_BUSY ||
            atomic_load_explicit(&s->base, memory_order_relaxed) != (uintptr_t)base)
            continue;
        atomic_store_explicit(&s->base, 0, memory_order_release);
        atomic_store_explicit(&s->poison, NULL, memory_order_relaxed);
        atomic_store_explicit(&s->wake_fd, -1, memory_order_relaxed);
        atomic_store_explicit(&s->state, SLOT_FREE, memory_order_release);
        atomic_fetch_sub_explicit(&g_count, 1, memory_order_relaxed);
        return;
    }
}

unsigned vio_guard_count(void)
{
    return atomic_load_explicit(&g_count, memory_order_relaxed);
}
