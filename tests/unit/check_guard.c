/* SPDX-License-Identifier: MIT */
/*
 * The SIGBUS guard of the transports (src/transport/guard.c): sealing a peer's memory file
 * against shrinking, and a fault on a truncated file that is not sealable turned into zero
 * pages plus a poisoned flag and a shut-down socket, while every other SIGBUS still reaches
 * the handler that was there before (or kills the process).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/guard.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static size_t pg(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* A memfd of @p pages pages; sealable or not. */
static int memfd_pages(unsigned pages, bool sealable)
{
    int fd = memfd_create("check-guard", MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)(pages * pg())), 0);
    return fd;
}

START_TEST(seal_sealable_memfd)
{
    int fd = memfd_pages(4, true);
    ck_assert(!vio_guard_is_sealed(fd));
    ck_assert(vio_guard_seal_shrink(fd));
    ck_assert(vio_guard_is_sealed(fd));
    ck_assert(vio_guard_seal_shrink(fd)); /* already sealed: still true */
    errno = 0;
    ck_assert_int_eq(ftruncate(fd, (off_t)pg()), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(ftruncate(fd, (off_t)(8 * pg())), 0); /* growing stays allowed */
    close(fd);
}
END_TEST

START_TEST(seal_unsealable)
{
    int fd = memfd_pages(4, false); /* F_SEAL_SEAL from birth */
    ck_assert(!vio_guard_seal_shrink(fd));
    ck_assert(!vio_guard_is_sealed(fd));
    close(fd);
    char path[] = "/tmp/check-guard.XXXXXX";
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert(!vio_guard_seal_shrink(fd)); /* a regular file */
    close(fd);
    fd = eventfd(0, EFD_CLOEXEC);
    ck_assert(!vio_guard_seal_shrink(fd));
    close(fd);
}
END_TEST

START_TEST(add_bad_args)
{
    atomic_int poison = 0;
    uint8_t *p = mmap(NULL, 2 * pg(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    ck_assert_int_eq(vio_guard_add(NULL, pg(), pg(), &poison, -1), -EINVAL);
    ck_assert_int_eq(vio_guard_add(p, 0, pg(), &poison, -1), -EINVAL);
    ck_assert_int_eq(vio_guard_add(p, pg(), 0, &poison, -1), -EINVAL);
    ck_assert_int_eq(vio_guard_add(p, pg(), 3000, &poison, -1), -EINVAL);
    ck_assert_int_eq(vio_guard_add(p + 8, pg(), pg(), &poison, -1), -EINVAL);
    ck_assert_uint_eq(vio_guard_count(), 0);
    vio_guard_remove(p); /* nothing registered: no-op */
    vio_guard_remove(NULL);
    munmap(p, 2 * pg());
}
END_TEST

START_TEST(add_until_full)
{
    atomic_int poison = 0;
    uint8_t *p = mmap(NULL, pg(), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    /* distinct fake bases inside a reserved range: the guard never touches them */
    size_t span = (size_t)VIO_GUARD_SLOTS * pg();
    uint8_t *r = mmap(NULL, span + pg(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(r, MAP_FAILED);
    for (unsigned i = 0; i < VIO_GUARD_SLOTS; i++)
        ck_assert_int_eq(vio_guard_add(r + (size_t)i * pg(), pg(), pg(), &poison, -1), 0);
    ck_assert_uint_eq(vio_guard_count(), VIO_GUARD_SLOTS);
    ck_assert_int_eq(vio_guard_add(p, pg(), pg(), &poison, -1), -ENOSPC);
    vio_guard_remove(r + 5 * pg());
    ck_assert_int_eq(vio_guard_add(p, pg(), pg(), &poison, -1), 0); /* a freed slot is reused */
    vio_guard_remove(p);
    for (unsigned i = 0; i < VIO_GUARD_SLOTS; i++)
        vio_guard_remove(r + (size_t)i * pg());
    ck_assert_uint_eq(vio_guard_count(), 0);
    munmap(r, span + pg());
    munmap(p, pg());
}
END_TEST

/* The peer truncates an unsealable file under a guarded mapping: reads past the new end
 * return zeros, writes land in private pages, the flag is set and the socket shut down. */
START_TEST(fault_repaired)
{
    const unsigned pages = 8;
    int fd = memfd_pages(pages, false);
    uint8_t *m = mmap(NULL, pages * pg(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    memset(m, 0xab, pages * pg());
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    atomic_int poison = 0;
    ck_assert_int_eq(vio_guard_add(m, pages * pg(), pg(), &poison, sv[0]), 0);
    ck_assert_uint_eq(vio_guard_count(), 1);

    ck_assert_int_eq(ftruncate(fd, (off_t)(2 * pg())), 0);
    ck_assert_uint_eq(((volatile uint8_t *)m)[pg() + 7], 0xab); /* still inside the file */
    ck_assert_int_eq(atomic_load(&poison), 0);
    ck_assert_uint_eq(((volatile uint8_t *)m)[5 * pg() + 3], 0); /* faulted: a zero page */
    ck_assert_int_eq(atomic_load(&poison), 1);
    ((volatile uint8_t *)m)[6 * pg()] = 7; /* a second fault, on a write */
    ck_assert_uint_eq(((volatile uint8_t *)m)[6 * pg()], 7);
    char c;
    ck_assert_int_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), 0); /* shut down: EOF at the peer */

    vio_guard_remove(m);
    ck_assert_uint_eq(vio_guard_count(), 0);
    munmap(m, pages * pg());
    close(sv[0]);
    close(sv[1]);
    close(fd);
}
END_TEST

static void own_bus(int sig)
{
    (void)sig;
    _exit(42);
}

/* A child that touches a truncated mapping nobody guards; its exit status. */
static int child_touch_unguarded(bool own_handler)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (own_handler) {
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = own_bus;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGBUS, &sa, NULL);
        }
        /* the guard is active (it guards another range) */
        atomic_int poison = 0;
        int g = memfd_pages(2, false);
        uint8_t *gm = mmap(NULL, 2 * pg(), PROT_READ, MAP_SHARED, g, 0);
        if (gm == MAP_FAILED || vio_guard_add(gm, 2 * pg(), pg(), &poison, -1) != 0)
            _exit(3);
        int fd = memfd_pages(4, false);
        uint8_t *m = mmap(NULL, 4 * pg(), PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED || ftruncate(fd, 0) != 0)
            _exit(4);
        int nul = open("/dev/null", O_WRONLY); /* AddressSanitizer's report of the expected */
        if (nul >= 0)                           /* fault is no news */
            dup2(nul, 2);
        volatile uint8_t v = m[2 * pg()];
        (void)v;
        _exit(0); /* survived a fault that is not ours: wrong */
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return st;
}

START_TEST(fault_elsewhere_kills)
{
    int st = child_touch_unguarded(false);
    if (UNDER_ASAN) /* AddressSanitizer had SIGBUS first: its report ends the child */
        ck_assert(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0 &&
                                      WEXITSTATUS(st) != 3 && WEXITSTATUS(st) != 4));
    else
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status 0x%x", st);
}
END_TEST

START_TEST(fault_elsewhere_chains)
{
    int st = child_touch_unguarded(true);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status 0x%x", st);
}
END_TEST

static Suite *guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("seal");
    tcase_add_test(tc, seal_sealable_memfd);
    tcase_add_test(tc, seal_unsealable);
    suite_add_tcase(s, tc);
    tc = tcase_create("registry");
    tcase_add_test(tc, add_bad_args);
    tcase_add_test(tc, add_until_full);
    suite_add_tcase(s, tc);
    tc = tcase_create("fault");
    tcase_add_test(tc, fault_repaired);
    tcase_add_test(tc, fault_elsewhere_kills);
    tcase_add_test(tc, fault_elsewhere_chains);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(guard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
