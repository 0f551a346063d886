/* SPDX-License-Identifier: MIT */
/* Unit tests for the guest memory map (src/core/mem.c). */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mem.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TOP(x) (UINT64_MAX - (uint64_t)(x) + 1) /* 2^64 - x */

/* Host memory the tests hand out; translate never dereferences it, but the
 * fixed-map tests use real memory so the results are real pointers. */
static unsigned char arena[0x10000];

static struct vio_mem_region region(uint64_t gpa, uint64_t size, void *host, bool ro)
{
    struct vio_mem_region r = {
        .guest_addr = gpa, .size = size, .host_ptr = host, .readonly = ro};
    return r;
}

static struct vio_mem *new_map(unsigned cap)
{
    struct vio_mem *m = NULL;
    ck_assert_int_eq(vio_mem_new(cap, &m), 0);
    ck_assert_ptr_nonnull(m);
    return m;
}

static void add_ok(struct vio_mem *m, uint64_t gpa, uint64_t size, void *host, bool ro)
{
    struct vio_mem_region r = region(gpa, size, host, ro);
    ck_assert_int_eq(vio_mem_add(m, &r), 0);
}

/*
 * The fixed map most translate tests use:
 *   A [0x1000, 0x2000)  rw  host arena+0x0000
 *   B [0x2000, 0x3000)  ro  host arena+0x3000   (guest-adjacent to A, not host-contiguous)
 *     hole [0x3000, 0x5000)
 *   C [0x5000, 0x6000)  rw  host arena+0x5000
 *   D [0x6000, 0x7000)  rw  host arena+0x6000   (guest-adjacent and host-contiguous to C)
 *   E [2^64-0x1000, 2^64) rw host arena+0x8000  (ends exactly at 2^64)
 */
static struct vio_mem *fixed_map(void)
{
    struct vio_mem *m = new_map(0);
    add_ok(m, 0x5000, 0x1000, arena + 0x5000, false);
    add_ok(m, 0x1000, 0x1000, arena + 0x0000, false);
    add_ok(m, TOP(0x1000), 0x1000, arena + 0x8000, false);
    add_ok(m, 0x2000, 0x1000, arena + 0x3000, true);
    add_ok(m, 0x6000, 0x1000, arena + 0x6000, false);
    return m;
}

/* ------------------------------------------------------------------------ */
/* lifecycle */

START_TEST(test_new_free)
{
    struct vio_mem *m = NULL;
    ck_assert_int_eq(vio_mem_new(0, &m), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(vio_mem_count(m), 0);
    vio_mem_free(m);
    vio_mem_free(NULL);
    ck_assert_int_eq(vio_mem_new(1, &m), 0);
    vio_mem_free(m);
    ck_assert_int_eq(vio_mem_new(65536, &m), 0);
    vio_mem_free(m);
    ck_assert_uint_eq(vio_mem_count(NULL), 0);
    vio_mem_clear(NULL);
}
END_TEST

static const struct {
    unsigned cap;
    bool null_out;
    int err;
} new_bad[] = {
    {0, true, -EINVAL},
    {65537, false, -EINVAL},
    {UINT32_MAX, false, -EINVAL},
};

START_TEST(test_new_bad)
{
    struct vio_mem *m = (struct vio_mem *)&m; /* must be reset to NULL */
    int rc = vio_mem_new(new_bad[_i].cap, new_bad[_i].null_out ? NULL : &m);
    ck_assert_int_eq(rc, new_bad[_i].err);
    if (!new_bad[_i].null_out)
        ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_default_capacity_fill)
{
    struct vio_mem *m = new_map(0);
    /* reverse order: every add inserts at the front of the sorted array */
    for (unsigned i = VIO_MEM_DEFAULT_CAPACITY; i-- > 0;)
        add_ok(m, (uint64_t)i * 0x2000, 0x1000, arena + (i % 16) * 0x1000, false);
    ck_assert_uint_eq(vio_mem_count(m), VIO_MEM_DEFAULT_CAPACITY);
    ck_assert_uint_ge(VIO_MEM_DEFAULT_CAPACITY, 509);

    struct vio_mem_region r = region(0x10000000, 0x1000, arena, false);
    ck_assert_int_eq(vio_mem_add(m, &r), -ENOSPC);
    /* a full map still diagnoses a bad or overlapping region first */
    r = region(0x0, 0x10, arena, false);
    ck_assert_int_eq(vio_mem_add(m, &r), -EEXIST);
    r = region(0x10000000, 0, arena, false);
    ck_assert_int_eq(vio_mem_add(m, &r), -EINVAL);

    /* every region still translates */
    for (unsigned i = 0; i < VIO_MEM_DEFAULT_CAPACITY; i++) {
        struct iovec iov[1];
        ck_assert_int_eq(vio_mem_translate(m, (uint64_t)i * 0x2000 + 0x10, 0x20, VIO_MEM_READ,
                                           iov, 1),
                         1);
        ck_assert_ptr_eq(iov[0].iov_base, arena + (i % 16) * 0x1000 + 0x10);
        /* the gap after each region is a hole */
        ck_assert_int_eq(vio_mem_translate(m, (uint64_t)i * 0x2000 + 0x1000, 1, VIO_MEM_READ,
                                           iov, 1),
                         -EFAULT);
    }

    /* removing one makes room for exactly one */
    ck_assert_int_eq(vio_mem_remove(m, 0x2000 * 100, 0x1000), 0);
    ck_assert_int_eq(vio_mem_add(m, &(struct vio_mem_region){.guest_addr = 0x10000000,
                                                            .size = 0x1000,
                                                            .host_ptr = arena}),
                     0);
    r = region(0x20000000, 0x1000, arena, false);
    ck_assert_int_eq(vio_mem_add(m, &r), -ENOSPC);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_small_capacity)
{
    struct vio_mem *m = new_map(2);
    add_ok(m, 0x0, 0x1000, arena, false);
    add_ok(m, 0x1000, 0x1000, arena, false);
    struct vio_mem_region r = region(0x2000, 0x1000, arena, false);
    ck_assert_int_eq(vio_mem_add(m, &r), -ENOSPC);
    vio_mem_clear(m);
    ck_assert_uint_eq(vio_mem_count(m), 0);
    ck_assert_int_eq(vio_mem_add(m, &r), 0);
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* add */

START_TEST(test_add_adjacent_and_top)
{
    struct vio_mem *m = new_map(0);
    add_ok(m, 0x1000, 0x1000, arena, false);
    add_ok(m, 0x2000, 0x1000, arena + 0x1000, false); /* adjacent above */
    add_ok(m, 0x0, 0x1000, arena + 0x2000, false);    /* adjacent below, at 0 */
    add_ok(m, TOP(0x1000), 0x1000, arena, false);     /* ends exactly at 2^64 */
    ck_assert_uint_eq(vio_mem_count(m), 4);
    /* 0..0x3000 is one guest range over three regions; the upper two are
     * host-contiguous (arena, arena+0x1000) and merge */
    struct iovec iov[3];
    ck_assert_int_eq(vio_mem_translate(m, 0x0, 0x3000, VIO_MEM_READ, iov, 3), 2);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x2000);
    ck_assert_uint_eq(iov[0].iov_len, 0x1000);
    ck_assert_ptr_eq(iov[1].iov_base, arena);
    ck_assert_uint_eq(iov[1].iov_len, 0x2000);
    vio_mem_free(m);
}
END_TEST

/* a fixed map of two regions, then one add that must fail with err */
static const struct {
    const char *name;
    struct vio_mem_region r; /* host_ptr NULL here means "arena" unless null_host */
    bool null_host;
    uintptr_t host; /* if non-zero, a literal host address */
    int err;
} add_bad[] = {
    {"size 0", {.guest_addr = 0x10000, .size = 0}, false, 0, -EINVAL},
    {"NULL host", {.guest_addr = 0x10000, .size = 0x1000}, true, 0, -EINVAL},
    {"guest wraps", {.guest_addr = TOP(0x1000), .size = 0x1001}, false, 0, -EINVAL},
    {"guest wraps max", {.guest_addr = UINT64_MAX, .size = UINT64_MAX}, false, 0, -EINVAL},
    {"guest wraps 2", {.guest_addr = 2, .size = UINT64_MAX}, false, 0, -EINVAL},
    {"user wraps", {.guest_addr = 0x10000, .size = 0x2000, .user_addr = TOP(0x1000)}, false, 0,
     -EINVAL},
    {"host wraps", {.guest_addr = 0x10000, .size = 0x2000}, false, UINTPTR_MAX - 0xfff, -EINVAL},
    {"same range", {.guest_addr = 0x1000, .size = 0x1000}, false, 0, -EEXIST},
    {"same start bigger", {.guest_addr = 0x1000, .size = 0x2000}, false, 0, -EEXIST},
    {"same start smaller", {.guest_addr = 0x1000, .size = 0x10}, false, 0, -EEXIST},
    {"inside", {.guest_addr = 0x1800, .size = 0x10}, false, 0, -EEXIST},
    {"covers", {.guest_addr = 0x0, .size = 0x10000}, false, 0, -EEXIST},
    {"tail overlap", {.guest_addr = 0x800, .size = 0x801}, false, 0, -EEXIST},
    {"head overlap", {.guest_addr = 0x1fff, .size = 0x1000}, false, 0, -EEXIST},
    {"last byte", {.guest_addr = 0x4fff, .size = 0x1}, false, 0, -EEXIST},
    {"spans two", {.guest_addr = 0x1fff, .size = 0x3000}, false, 0, -EEXIST},
    {"top overlap", {.guest_addr = UINT64_MAX, .size = 1}, false, 0, -EEXIST},
    {"top overlap 2", {.guest_addr = TOP(0x2000), .size = 0x1001}, false, 0, -EEXIST},
    {"huge covers", {.guest_addr = 0, .size = UINT64_MAX}, false, 1, -EEXIST},
    {"user same", {.guest_addr = 0x10000, .size = 0x1000, .user_addr = 0x7f0000001000}, false, 0,
     -EEXIST},
    {"user inside", {.guest_addr = 0x10000, .size = 0x10, .user_addr = 0x7f0000001800}, false, 0,
     -EEXIST},
    {"user tail", {.guest_addr = 0x10000, .size = 0x1000, .user_addr = 0x7f0000000001}, false, 0,
     -EEXIST},
};

START_TEST(test_add_bad)
{
    struct vio_mem *m = new_map(0);
    struct vio_mem_region a = region(0x1000, 0x1000, arena, false);
    a.user_addr = 0x7f0000001000;
    ck_assert_int_eq(vio_mem_add(m, &a), 0);
    add_ok(m, 0x4000, 0x1000, arena, false);
    add_ok(m, TOP(0x1000), 0x1000, arena, false);

    struct vio_mem_region r = add_bad[_i].r;
    if (add_bad[_i].null_host)
        r.host_ptr = NULL;
    else if (add_bad[_i].host)
        r.host_ptr = (void *)add_bad[_i].host;
    else
        r.host_ptr = arena;
    int rc = vio_mem_add(m, &r);
    ck_assert_msg(rc == add_bad[_i].err, "%s: got %d want %d", add_bad[_i].name, rc,
                  add_bad[_i].err);
    ck_assert_uint_eq(vio_mem_count(m), 3);
    ck_assert_int_eq(vio_mem_add(NULL, &r), -EINVAL);
    ck_assert_int_eq(vio_mem_add(m, NULL), -EINVAL);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_add_user_zero_not_keyed)
{
    /* user_addr 0 means "no frontend address": several such regions coexist */
    struct vio_mem *m = new_map(0);
    add_ok(m, 0x0, 0x1000, arena, false);
    add_ok(m, 0x1000, 0x1000, arena, false);
    uint64_t gpa = 1;
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0, 1, &gpa), -EFAULT);
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0x800, 1, &gpa), -EFAULT);
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* remove, clear, get */

START_TEST(test_get_order)
{
    struct vio_mem *m = new_map(0);
    static const uint64_t starts[] = {0x9000, 0x1000, TOP(0x1000), 0x5000, 0x0, 0x3000};
    for (unsigned i = 0; i < ARRAY_SIZE(starts); i++) {
        struct vio_mem_region r = region(starts[i], 0x1000, arena + i * 0x100, i & 1);
        r.user_addr = 0x100000 + starts[i] % 0x100000;
        r.mmap_offset = i * 7;
        ck_assert_int_eq(vio_mem_add(m, &r), 0);
    }
    ck_assert_uint_eq(vio_mem_count(m), ARRAY_SIZE(starts));
    uint64_t prev = 0;
    for (unsigned i = 0; i < ARRAY_SIZE(starts); i++) {
        struct vio_mem_region r;
        ck_assert_int_eq(vio_mem_get(m, i, &r), 0);
        if (i > 0)
            ck_assert_uint_gt(r.guest_addr, prev);
        prev = r.guest_addr;
        /* every field comes back exactly as added */
        unsigned k = 0;
        while (starts[k] != r.guest_addr)
            k++;
        ck_assert_uint_eq(r.size, 0x1000);
        ck_assert_ptr_eq(r.host_ptr, arena + k * 0x100);
        ck_assert_int_eq(r.readonly, (k & 1) != 0);
        ck_assert_uint_eq(r.user_addr, 0x100000 + starts[k] % 0x100000);
        ck_assert_uint_eq(r.mmap_offset, k * 7);
    }
    struct vio_mem_region r;
    ck_assert_int_eq(vio_mem_get(m, ARRAY_SIZE(starts), &r), -ENOENT);
    ck_assert_int_eq(vio_mem_get(m, UINT32_MAX, &r), -ENOENT);
    ck_assert_int_eq(vio_mem_get(m, 0, NULL), -EINVAL);
    ck_assert_int_eq(vio_mem_get(NULL, 0, &r), -EINVAL);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_remove)
{
    struct vio_mem *m = new_map(0);
    struct vio_mem_region a = region(0x1000, 0x1000, arena, false);
    a.user_addr = 0x400000;
    ck_assert_int_eq(vio_mem_add(m, &a), 0);
    add_ok(m, 0x2000, 0x1000, arena + 0x1000, false);
    add_ok(m, 0x3000, 0x1000, arena + 0x2000, false);

    uint64_t gpa;
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0x400010, 1, &gpa), 0);
    ck_assert_int_eq(vio_mem_remove(m, 0x1000, 0x1000), 0);
    ck_assert_uint_eq(vio_mem_count(m), 2);
    struct iovec iov[2];
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 1, VIO_MEM_READ, iov, 2), -EFAULT);
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0x400010, 1, &gpa), -EFAULT);
    /* the rest still works */
    ck_assert_int_eq(vio_mem_translate(m, 0x2ff0, 0x20, VIO_MEM_READ, iov, 2), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x1ff0);
    ck_assert_uint_eq(iov[0].iov_len, 0x20);
    /* the user range is free again */
    a.guest_addr = 0x8000;
    ck_assert_int_eq(vio_mem_add(m, &a), 0);
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0x400010, 1, &gpa), 0);
    ck_assert_uint_eq(gpa, 0x8010);
    vio_mem_free(m);
}
END_TEST

static const struct {
    const char *name;
    uint64_t gpa, size;
} remove_bad[] = {
    {"below all", 0x0, 0x1000},
    {"wrong size", 0x1000, 0x800},
    {"wrong size bigger", 0x1000, 0x2000},
    {"inside", 0x1800, 0x800},
    {"hole", 0x3000, 0x1000},
    {"zero size", 0x1000, 0},
    {"top", UINT64_MAX, 1},
    {"above all", 0x100000, 0x1000},
};

START_TEST(test_remove_bad)
{
    struct vio_mem *m = new_map(0);
    add_ok(m, 0x1000, 0x1000, arena, false);
    add_ok(m, 0x2000, 0x1000, arena, false);
    int rc = vio_mem_remove(m, remove_bad[_i].gpa, remove_bad[_i].size);
    ck_assert_msg(rc == -ENOENT, "%s: got %d", remove_bad[_i].name, rc);
    ck_assert_uint_eq(vio_mem_count(m), 2);
    ck_assert_int_eq(vio_mem_remove(NULL, 0x1000, 0x1000), -EINVAL);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_clear)
{
    struct vio_mem *m = fixed_map();
    ck_assert_uint_eq(vio_mem_count(m), 5);
    vio_mem_clear(m);
    ck_assert_uint_eq(vio_mem_count(m), 0);
    struct iovec iov[1];
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 1, VIO_MEM_READ, iov, 1), -EFAULT);
    struct vio_mem_region r;
    ck_assert_int_eq(vio_mem_get(m, 0, &r), -ENOENT);
    /* reusable after clear, including the user index */
    struct vio_mem_region a = region(0x1000, 0x1000, arena, false);
    a.user_addr = 0x1000;
    ck_assert_int_eq(vio_mem_add(m, &a), 0);
    vio_mem_clear(m);
    ck_assert_int_eq(vio_mem_add(m, &a), 0);
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* translate: positive cases on the fixed map */

START_TEST(test_translate_single)
{
    struct vio_mem *m = fixed_map();
    struct iovec iov[4];
    memset(iov, 0, sizeof(iov));
    ck_assert_int_eq(vio_mem_translate(m, 0x1010, 0x20, VIO_MEM_WRITE, iov, 4), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x10);
    ck_assert_uint_eq(iov[0].iov_len, 0x20);
    /* whole region, exact fit */
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 0x1000, VIO_MEM_READ, iov, 1), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena);
    ck_assert_uint_eq(iov[0].iov_len, 0x1000);
    /* last byte of a region */
    ck_assert_int_eq(vio_mem_translate(m, 0x5fff, 1, VIO_MEM_READ, iov, 1), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x5fff);
    /* the region ending at 2^64: its last byte and all of it */
    ck_assert_int_eq(vio_mem_translate(m, UINT64_MAX, 1, VIO_MEM_WRITE, iov, 1), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x8fff);
    ck_assert_uint_eq(iov[0].iov_len, 1);
    ck_assert_int_eq(vio_mem_translate(m, TOP(0x1000), 0x1000, VIO_MEM_WRITE, iov, 1), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x8000);
    ck_assert_uint_eq(iov[0].iov_len, 0x1000);
    /* READ|WRITE is a write */
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 1, VIO_MEM_READ | VIO_MEM_WRITE, iov, 1), 1);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_translate_span)
{
    struct vio_mem *m = fixed_map();
    struct iovec iov[4];
    /* A -> B: guest-adjacent, host apart: 2 iovecs */
    ck_assert_int_eq(vio_mem_translate(m, 0x1ff0, 0x20, VIO_MEM_READ, iov, 4), 2);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0xff0);
    ck_assert_uint_eq(iov[0].iov_len, 0x10);
    ck_assert_ptr_eq(iov[1].iov_base, arena + 0x3000);
    ck_assert_uint_eq(iov[1].iov_len, 0x10);
    /* exactly two iovecs fit in two slots */
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 0x2000, VIO_MEM_READ, iov, 2), 2);
    ck_assert_uint_eq(iov[0].iov_len + iov[1].iov_len, 0x2000);
    /* C -> D: guest-adjacent and host-contiguous: merged into 1 */
    ck_assert_int_eq(vio_mem_translate(m, 0x5ff0, 0x20, VIO_MEM_WRITE, iov, 1), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x5ff0);
    ck_assert_uint_eq(iov[0].iov_len, 0x20);
    ck_assert_int_eq(vio_mem_translate(m, 0x5000, 0x2000, VIO_MEM_READ, iov, 1), 1);
    ck_assert_uint_eq(iov[0].iov_len, 0x2000);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_translate_three_regions)
{
    /* three adjacent regions: host layout X, X+size (merge), elsewhere: 2 iovecs */
    struct vio_mem *m = new_map(0);
    add_ok(m, 0x0, 0x100, arena + 0x100, false);
    add_ok(m, 0x100, 0x100, arena + 0x200, false);
    add_ok(m, 0x200, 0x100, arena + 0x1000, false);
    struct iovec iov[3];
    ck_assert_int_eq(vio_mem_translate(m, 0x80, 0x200, VIO_MEM_READ, iov, 3), 2);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x180);
    ck_assert_uint_eq(iov[0].iov_len, 0x180);
    ck_assert_ptr_eq(iov[1].iov_base, arena + 0x1000);
    ck_assert_uint_eq(iov[1].iov_len, 0x80);
    ck_assert_int_eq(vio_mem_translate(m, 0x80, 0x200, VIO_MEM_READ, iov, 1), -ENOBUFS);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_translate_no_wrap_to_zero)
{
    /* regions at the very top and at 0, host-contiguous: a range running past
     * 2^64 must fault, not continue at guest address 0 */
    static unsigned char buf[0x40];
    struct vio_mem *m = new_map(0);
    add_ok(m, TOP(0x20), 0x20, buf, false);
    add_ok(m, 0x0, 0x20, buf + 0x20, false);
    struct iovec iov[2];
    ck_assert_int_eq(vio_mem_translate(m, TOP(0x10), 0x20, VIO_MEM_READ, iov, 2), -EFAULT);
    ck_assert_int_eq(vio_mem_translate(m, UINT64_MAX, 2, VIO_MEM_READ, iov, 2), -EFAULT);
    ck_assert_int_eq(vio_mem_translate(m, TOP(0x20), UINT64_MAX, VIO_MEM_READ, iov, 2), -EFAULT);
    ck_assert_int_eq(vio_mem_translate(m, TOP(0x10), 0x10, VIO_MEM_READ, iov, 2), 1);
    ck_assert_ptr_null(vio_mem_ptr(m, UINT64_MAX, 2, VIO_MEM_READ));
    vio_mem_free(m);
}
END_TEST

START_TEST(test_translate_len0)
{
    struct vio_mem *m = fixed_map();
    struct iovec iov[1] = {{arena, 7}};
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 0, VIO_MEM_READ, iov, 1), 0);
    /* nothing is accessed, so an unmapped, read-only or top address is fine too */
    ck_assert_int_eq(vio_mem_translate(m, 0x3000, 0, VIO_MEM_READ, iov, 1), 0);
    ck_assert_int_eq(vio_mem_translate(m, 0x2000, 0, VIO_MEM_WRITE, iov, 1), 0);
    ck_assert_int_eq(vio_mem_translate(m, UINT64_MAX, 0, VIO_MEM_WRITE, NULL, 0), 0);
    ck_assert_ptr_eq(iov[0].iov_base, arena); /* untouched */
    ck_assert_uint_eq(iov[0].iov_len, 7);
    vio_mem_free(m);
}
END_TEST

START_TEST(test_translate_readonly)
{
    struct vio_mem *m = fixed_map();
    struct iovec iov[2];
    ck_assert_int_eq(vio_mem_translate(m, 0x2000, 0x1000, VIO_MEM_READ, iov, 2), 1);
    ck_assert_ptr_eq(iov[0].iov_base, arena + 0x3000);
    ck_assert_int_eq(vio_mem_translate(m, 0x2000, 0x1000, VIO_MEM_WRITE, iov, 2), -EFAULT);
    ck_assert_int_eq(vio_mem_translate(m, 0x2fff, 1, VIO_MEM_WRITE, iov, 2), -EFAULT);
    /* a write that only touches the rw part is fine */
    ck_assert_int_eq(vio_mem_translate(m, 0x1000, 0x1000, VIO_MEM_WRITE, iov, 2), 1);
    ck_assert_ptr_null(vio_mem_ptr(m, 0x2000, 4, VIO_MEM_WRITE));
    ck_assert_ptr_eq(vio_mem_ptr(m, 0x2000, 4, VIO_MEM_READ), arena + 0x3000);
    vio_mem_free(m);
}
END_TEST

/* translate: negative cases, table-driven, exact errno */
static const struct {
    const char *name;
    uint64_t gpa, len;
    int access;
    unsigned iov_cap;
    bool null_iov;
    int err;
} tr_bad[] = {
    {"below all", 0x0, 1, VIO_MEM_READ, 4, false, -EFAULT},
    {"ends just before A", 0x0, 0x1000, VIO_MEM_READ, 4, false, -EFAULT},
    {"starts in hole, ends in A", 0xfff, 2, VIO_MEM_READ, 4, false, -EFAULT},
    {"runs off B into hole", 0x2fff, 2, VIO_MEM_READ, 4, false, -EFAULT},
    {"in hole", 0x3000, 1, VIO_MEM_READ, 4, false, -EFAULT},
    {"last hole byte", 0x4fff, 1, VIO_MEM_READ, 4, false, -EFAULT},
    {"A to hole", 0x1000, 0x2001, VIO_MEM_READ, 4, false, -EFAULT},
    {"past D", 0x6fff, 2, VIO_MEM_READ, 4, false, -EFAULT},
    {"above D", 0x7000, 1, VIO_MEM_READ, 4, false, -EFAULT},
    {"write A into ro B", 0x1ff0, 0x20, VIO_MEM_WRITE, 4, false, -EFAULT},
    {"write ro B", 0x2000, 1, VIO_MEM_WRITE, 4, false, -EFAULT},
    {"rw ro B", 0x2800, 1, VIO_MEM_READ | VIO_MEM_WRITE, 4, false, -EFAULT},
    {"wrap from top byte", UINT64_MAX, 2, VIO_MEM_READ, 4, false, -EFAULT},
    {"wrap from E", TOP(0x1000), 0x1001, VIO_MEM_READ, 4, false, -EFAULT},
    {"wrap len max", 0x1000, UINT64_MAX, VIO_MEM_READ, 4, false, -EFAULT},
    {"wrap both max", UINT64_MAX, UINT64_MAX, VIO_MEM_READ, 4, false, -EFAULT},
    {"wrap into 0", TOP(0x10), 0x20, VIO_MEM_READ, 4, false, -EFAULT},
    {"len max from 0", 0, UINT64_MAX, VIO_MEM_READ, 4, false, -EFAULT},
    {"below E", TOP(0x1001), 2, VIO_MEM_READ, 4, false, -EFAULT},
    {"span needs 2, cap 1", 0x1ff0, 0x20, VIO_MEM_READ, 1, false, -ENOBUFS},
    {"single, cap 0", 0x1000, 1, VIO_MEM_READ, 0, true, -ENOBUFS},
    {"merged, cap 0", 0x5ff0, 0x20, VIO_MEM_READ, 0, true, -ENOBUFS},
    {"fault beats nobufs", 0x1ff0, 0x2000, VIO_MEM_READ, 1, false, -EFAULT},
    {"ro beats nobufs", 0x1ff0, 0x20, VIO_MEM_WRITE, 1, false, -EFAULT},
    {"fault beats nobufs cap 0", 0x3000, 1, VIO_MEM_READ, 0, true, -EFAULT},
    {"access 0", 0x1000, 1, 0, 4, false, -EINVAL},
    {"access 4", 0x1000, 1, 4, 4, false, -EINVAL},
    {"access -1", 0x1000, 1, -1, 4, false, -EINVAL},
    {"access bad, len 0", 0x1000, 0, 8, 4, false, -EINVAL},
    {"NULL iov, cap 1", 0x1000, 1, VIO_MEM_READ, 1, true, -EINVAL},
};

START_TEST(test_translate_bad)
{
    struct vio_mem *m = fixed_map();
    struct iovec iov[4];
    int rc = vio_mem_translate(m, tr_bad[_i].gpa, tr_bad[_i].len, tr_bad[_i].access,
                               tr_bad[_i].null_iov ? NULL : iov, tr_bad[_i].iov_cap);
    ck_assert_msg(rc == tr_bad[_i].err, "%s: got %d want %d", tr_bad[_i].name, rc,
                  tr_bad[_i].err);
    ck_assert_int_eq(vio_mem_translate(NULL, 0x1000, 1, VIO_MEM_READ, iov, 4), -EINVAL);
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* vio_mem_ptr */

static const struct {
    const char *name;
    uint64_t gpa, len;
    int access;
    ptrdiff_t want; /* offset into arena, -1 = NULL */
} ptr_cases[] = {
    {"inside A", 0x1010, 0x10, VIO_MEM_WRITE, 0x10},
    {"all of A", 0x1000, 0x1000, VIO_MEM_READ, 0x0},
    {"len 0 in A", 0x1fff, 0, VIO_MEM_READ, 0xfff},
    {"len 0 in hole", 0x3000, 0, VIO_MEM_READ, -1},
    {"A+B adjacent, not host-contiguous", 0x1ff0, 0x20, VIO_MEM_READ, -1},
    {"C+D host-contiguous still refused", 0x5ff0, 0x20, VIO_MEM_READ, -1},
    {"ro read", 0x2000, 0x10, VIO_MEM_READ, 0x3000},
    {"ro write", 0x2000, 0x10, VIO_MEM_WRITE, -1},
    {"hole", 0x4000, 1, VIO_MEM_READ, -1},
    {"top byte", UINT64_MAX, 1, VIO_MEM_WRITE, 0x8fff},
    {"top wrap", UINT64_MAX, 2, VIO_MEM_READ, -1},
    {"len max", 0x1000, UINT64_MAX, VIO_MEM_READ, -1},
    {"bad access", 0x1000, 1, 0, -1},
};

START_TEST(test_ptr)
{
    struct vio_mem *m = fixed_map();
    void *p = vio_mem_ptr(m, ptr_cases[_i].gpa, ptr_cases[_i].len, ptr_cases[_i].access);
    void *want = ptr_cases[_i].want < 0 ? NULL : arena + ptr_cases[_i].want;
    ck_assert_msg(p == want, "%s: got %p want %p", ptr_cases[_i].name, p, want);
    ck_assert_ptr_null(vio_mem_ptr(NULL, 0x1000, 1, VIO_MEM_READ));
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* vio_mem_uva_to_gpa */

static const struct {
    const char *name;
    uint64_t uva, len;
    int err;
    uint64_t gpa;
} uva_cases[] = {
    {"start of U1", 0x7f0000000000, 0x10, 0, 0x100000},
    {"inside U1", 0x7f0000000800, 0x800, 0, 0x100800},
    {"last byte U1", 0x7f0000000fff, 1, 0, 0x100fff},
    {"len 0 in U1", 0x7f0000000fff, 0, 0, 0x100fff},
    {"U2 (guest-adjacent, user apart)", 0x7f0000100000, 0x1000, 0, 0x101000},
    {"top user range", TOP(0x1000), 0x1000, 0, 0x200000},
    {"top byte", UINT64_MAX, 1, 0, 0x200fff},
    {"below all", 0x1000, 1, -EFAULT, 0},
    {"zero", 0, 1, -EFAULT, 0},
    {"zero len 0", 0, 0, -EFAULT, 0},
    {"runs off U1", 0x7f0000000fff, 2, -EFAULT, 0},
    {"len 0 past U1", 0x7f0000001000, 0, -EFAULT, 0},
    {"between", 0x7f0000050000, 1, -EFAULT, 0},
    {"spans U3+U4 (user-adjacent)", 0x7f0000200ff0, 0x20, -EFAULT, 0},
    {"wrap", UINT64_MAX, 2, -EFAULT, 0},
    {"len max", 0x7f0000000000, UINT64_MAX, -EFAULT, 0},
};

START_TEST(test_uva)
{
    struct vio_mem *m = new_map(0);
    struct vio_mem_region rs[] = {
        {.guest_addr = 0x100000, .size = 0x1000, .user_addr = 0x7f0000000000, .host_ptr = arena},
        {.guest_addr = 0x101000, .size = 0x1000, .user_addr = 0x7f0000100000, .host_ptr = arena},
        {.guest_addr = 0x200000, .size = 0x1000, .user_addr = TOP(0x1000), .host_ptr = arena},
        {.guest_addr = 0x300000, .size = 0x1000, .user_addr = 0x7f0000200000, .host_ptr = arena},
        {.guest_addr = 0x400000, .size = 0x1000, .user_addr = 0x7f0000201000, .host_ptr = arena},
        {.guest_addr = 0x500000, .size = 0x1000, .user_addr = 0, .host_ptr = arena},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(rs); i++)
        ck_assert_int_eq(vio_mem_add(m, &rs[i]), 0);
    uint64_t gpa = 0xdead;
    int rc = vio_mem_uva_to_gpa(m, uva_cases[_i].uva, uva_cases[_i].len, &gpa);
    ck_assert_msg(rc == uva_cases[_i].err, "%s: got %d want %d", uva_cases[_i].name, rc,
                  uva_cases[_i].err);
    if (rc == 0)
        ck_assert_msg(gpa == uva_cases[_i].gpa, "%s: gpa %#" PRIx64, uva_cases[_i].name, gpa);
    else
        ck_assert_uint_eq(gpa, 0xdead);
    ck_assert_int_eq(vio_mem_uva_to_gpa(m, 0x7f0000000000, 1, NULL), -EINVAL);
    ck_assert_int_eq(vio_mem_uva_to_gpa(NULL, 0x7f0000000000, 1, &gpa), -EINVAL);
    vio_mem_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* randomized: translate / ptr / uva_to_gpa against a linear reference */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

#define REF_MAX 24

struct ref_map {
    unsigned n;
    struct vio_mem_region r[REF_MAX];
};

typedef unsigned __int128 u128;

static u128 ref_end(const struct vio_mem_region *r)
{
    return (u128)r->guest_addr + r->size;
}

static int ref_find(const struct ref_map *rm, u128 a)
{
    for (unsigned i = 0; i < rm->n; i++)
        if (a >= rm->r[i].guest_addr && a < ref_end(&rm->r[i]))
            return (int)i;
    return -1;
}

/* Reference translate: linear scans, 128-bit arithmetic, no cleverness. */
static int ref_translate(const struct ref_map *rm, uint64_t gpa, uint64_t len, int access,
                         struct iovec *iov, unsigned cap)
{
    struct iovec all[REF_MAX + 1];
    unsigned cnt = 0;
    u128 a = gpa, end = (u128)gpa + len;
    if (len == 0)
        return 0;
    if (end > ((u128)1 << 64))
        return -EFAULT;
    while (a < end) {
        int k = ref_find(rm, a);
        if (k < 0)
            return -EFAULT;
        const struct vio_mem_region *r = &rm->r[k];
        if ((access & VIO_MEM_WRITE) && r->readonly)
            return -EFAULT;
        u128 stop = end < ref_end(r) ? end : ref_end(r);
        uintptr_t host = (uintptr_t)r->host_ptr + (uintptr_t)(a - r->guest_addr);
        size_t n = (size_t)(stop - a);
        if (cnt > 0 && (uintptr_t)all[cnt - 1].iov_base + all[cnt - 1].iov_len == host)
            all[cnt - 1].iov_len += n;
        else
            all[cnt++] = (struct iovec){(void *)host, n};
        a = stop;
    }
    if (cnt > cap)
        return -ENOBUFS;
    memcpy(iov, all, cnt * sizeof(*iov));
    return (int)cnt;
}

static void *ref_ptr(const struct ref_map *rm, uint64_t gpa, uint64_t len, int access)
{
    int k = ref_find(rm, gpa);
    if (k < 0)
        return NULL;
    const struct vio_mem_region *r = &rm->r[k];
    if ((u128)gpa + len > ref_end(r))
        return NULL;
    if ((access & VIO_MEM_WRITE) && r->readonly)
        return NULL;
    return (void *)((uintptr_t)r->host_ptr + (uintptr_t)(gpa - r->guest_addr));
}

static int ref_uva(const struct ref_map *rm, uint64_t uva, uint64_t len, uint64_t *gpa)
{
    for (unsigned i = 0; i < rm->n; i++) {
        const struct vio_mem_region *r = &rm->r[i];
        if (r->user_addr == 0)
            continue;
        if (uva >= r->user_addr && (u128)uva < (u128)r->user_addr + r->size &&
            (u128)uva + len <= (u128)r->user_addr + r->size) {
            *gpa = r->guest_addr + (uva - r->user_addr);
            return 0;
        }
    }
    return -EFAULT;
}

static bool ref_overlaps(const struct ref_map *rm, const struct vio_mem_region *c)
{
    for (unsigned i = 0; i < rm->n; i++) {
        const struct vio_mem_region *r = &rm->r[i];
        if (c->guest_addr < ref_end(r) && r->guest_addr < ref_end(c))
            return true;
        if (c->user_addr && r->user_addr && (u128)c->user_addr < (u128)r->user_addr + r->size &&
            (u128)r->user_addr < (u128)c->user_addr + c->size)
            return true;
    }
    return false;
}

/* A random region, often adjacent to (or near) an existing one, sometimes at the top. */
static struct vio_mem_region rnd_region(const struct ref_map *rm)
{
    static const uint64_t sizes[] = {1, 2, 0x10, 0x100, 0x1000, 0x10000};
    struct vio_mem_region c = {0};
    c.size = sizes[rnd_below(ARRAY_SIZE(sizes))] + (rnd() & 1 ? rnd_below(0x100) : 0);
    unsigned how = (unsigned)rnd_below(6);
    if (rm->n > 0 && how < 3) {
        const struct vio_mem_region *p = &rm->r[rnd_below(rm->n)];
        c.guest_addr = p->guest_addr + p->size; /* adjacent above (may wrap to 0: fine) */
        if (how == 2)
            c.guest_addr += rnd_below(3);
        /* host-contiguous with the neighbour half the time */
        c.host_ptr = (rnd() & 1) ? (void *)((uintptr_t)p->host_ptr + (uintptr_t)p->size) : NULL;
    } else if (how == 3) {
        c.guest_addr = UINT64_MAX - c.size + 1 - (rnd() & 1 ? 0 : rnd_below(0x2000));
    } else if (how == 4) {
        c.guest_addr = 0;
    } else {
        c.guest_addr = rnd_below(0x40000);
    }
    if (!c.host_ptr)
        c.host_ptr = (void *)(uintptr_t)(0x100000000ull + rnd_below(1u << 24) * 0x10);
    c.readonly = rnd_below(4) == 0;
    if (rnd() & 1)
        c.user_addr = 0x7f0000000000ull + rnd_below(0x80000);
    return c;
}

/* A query address near an interesting point of the map, or anywhere. */
static uint64_t rnd_addr(const struct ref_map *rm)
{
    if (rm->n == 0 || rnd_below(8) == 0)
        return rnd_below(3) == 0 ? UINT64_MAX - rnd_below(0x3000) : rnd_below(0x50000);
    const struct vio_mem_region *r = &rm->r[rnd_below(rm->n)];
    switch (rnd_below(4)) {
    case 0:
        return r->guest_addr - rnd_below(4);
    case 1:
        return r->guest_addr + rnd_below(r->size);
    case 2:
        return r->guest_addr + r->size - rnd_below(4);
    default:
        return r->guest_addr + rnd_below(r->size + 0x20);
    }
}

static uint64_t rnd_len(void)
{
    switch (rnd_below(6)) {
    case 0:
        return rnd_below(4);
    case 1:
        return rnd_below(0x40);
    case 2:
        return rnd_below(0x2000);
    case 3:
        return rnd_below(0x30000);
    case 4:
        return UINT64_MAX - rnd_below(4);
    default:
        return rnd();
    }
}

START_TEST(test_random_vs_reference)
{
    const char *env = getenv("VIO_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed0001ull;
    rng_state = seed;
    const unsigned maps = 1000, queries = 100; /* 10^5 queries of each kind */
    unsigned long ok = 0, fault = 0, nobufs = 0, multi = 0;

    for (unsigned mi = 0; mi < maps; mi++) {
        struct vio_mem *m = new_map(REF_MAX);
        struct ref_map rm = {0};
        unsigned want = 1 + (unsigned)rnd_below(REF_MAX);
        for (unsigned t = 0; t < 4 * REF_MAX && rm.n < want; t++) {
            struct vio_mem_region c = rnd_region(&rm);
            int exp = 0;
            if ((u128)c.guest_addr + c.size > ((u128)1 << 64) ||
                (c.user_addr && (u128)c.user_addr + c.size > ((u128)1 << 64)))
                exp = -EINVAL;
            else if (ref_overlaps(&rm, &c))
                exp = -EEXIST;
            int rc = vio_mem_add(m, &c);
            ck_assert_msg(rc == exp, "seed %#" PRIx64 " map %u: add got %d want %d", seed, mi, rc,
                          exp);
            if (rc == 0)
                rm.r[rm.n++] = c;
            /* occasionally remove one again */
            if (rm.n > 1 && rnd_below(8) == 0) {
                unsigned k = (unsigned)rnd_below(rm.n);
                ck_assert_int_eq(vio_mem_remove(m, rm.r[k].guest_addr, rm.r[k].size), 0);
                rm.r[k] = rm.r[--rm.n];
            }
        }
        ck_assert_uint_eq(vio_mem_count(m), rm.n);

        for (unsigned q = 0; q < queries; q++) {
            uint64_t gpa = rnd_addr(&rm), len = rnd_len();
            int access = (int)rnd_below(3) + 1;
            unsigned cap = (unsigned)rnd_below(5);
            struct iovec got[8], exp[8];
            int rg = vio_mem_translate(m, gpa, len, access, got, cap);
            int re = ref_translate(&rm, gpa, len, access, exp, cap);
            ck_assert_msg(rg == re,
                          "seed %#" PRIx64 " map %u q %u: translate(%#" PRIx64 ", %#" PRIx64
                          ", %d, cap %u) got %d want %d",
                          seed, mi, q, gpa, len, access, cap, rg, re);
            for (int k = 0; k < rg; k++) {
                ck_assert_ptr_eq(got[k].iov_base, exp[k].iov_base);
                ck_assert_uint_eq(got[k].iov_len, exp[k].iov_len);
            }
            ok += rg > 0;
            multi += rg > 1;
            fault += rg == -EFAULT;
            nobufs += rg == -ENOBUFS;

            ck_assert_ptr_eq(vio_mem_ptr(m, gpa, len & 0x3fff, access),
                             ref_ptr(&rm, gpa, len & 0x3fff, access));

            uint64_t uva = rm.n && (rnd() & 1)
                               ? rm.r[rnd_below(rm.n)].user_addr + rnd_below(0x1100) - 0x10
                               : 0x7f0000000000ull + rnd_below(0x90000);
            uint64_t ulen = rnd_len() & (rnd() & 1 ? 0xfff : UINT64_MAX);
            uint64_t g1 = 1, g2 = 1;
            int u1 = vio_mem_uva_to_gpa(m, uva, ulen, &g1);
            int u2 = ref_uva(&rm, uva, ulen, &g2);
            ck_assert_int_eq(u1, u2);
            ck_assert_uint_eq(g1, g2);
        }
        vio_mem_free(m);
    }
    /* the generator must actually reach every outcome */
    ck_assert_uint_gt(ok, 1000);
    ck_assert_uint_gt(multi, 100);
    ck_assert_uint_gt(fault, 1000);
    ck_assert_uint_gt(nobufs, 100);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *mem_suite(void)
{
    Suite *s = suite_create("mem");
    TCase *tc;

    tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_new_free);
    tcase_add_loop_test(tc, test_new_bad, 0, ARRAY_SIZE(new_bad));
    tcase_add_test(tc, test_default_capacity_fill);
    tcase_add_test(tc, test_small_capacity);
    suite_add_tcase(s, tc);

    tc = tcase_create("add");
    tcase_add_test(tc, test_add_adjacent_and_top);
    tcase_add_loop_test(tc, test_add_bad, 0, ARRAY_SIZE(add_bad));
    tcase_add_test(tc, test_add_user_zero_not_keyed);
    suite_add_tcase(s, tc);

    tc = tcase_create("remove");
    tcase_add_test(tc, test_get_order);
    tcase_add_test(tc, test_remove);
    tcase_add_loop_test(tc, test_remove_bad, 0, ARRAY_SIZE(remove_bad));
    tcase_add_test(tc, test_clear);
    suite_add_tcase(s, tc);

    tc = tcase_create("translate");
    tcase_add_test(tc, test_translate_single);
    tcase_add_test(tc, test_translate_span);
    tcase_add_test(tc, test_translate_three_regions);
    tcase_add_test(tc, test_translate_no_wrap_to_zero);
    tcase_add_test(tc, test_translate_len0);
    tcase_add_test(tc, test_translate_readonly);
    tcase_add_loop_test(tc, test_translate_bad, 0, ARRAY_SIZE(tr_bad));
    suite_add_tcase(s, tc);

    tc = tcase_create("ptr");
    tcase_add_loop_test(tc, test_ptr, 0, ARRAY_SIZE(ptr_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("uva");
    tcase_add_loop_test(tc, test_uva, 0, ARRAY_SIZE(uva_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, test_random_vs_reference);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
