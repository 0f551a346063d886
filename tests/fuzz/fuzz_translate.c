/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the guest memory map (src/core/mem.c).
 *
 * Input layout (all little-endian, short input simply ends early):
 *   byte 0          low nibble: number of region records (0..15)
 *                   high nibble: map capacity (0 = default)
 *   12 bytes/region flags(1) size(3) gpa(4) user(2) host(2), see build_region()
 *   6 bytes/query   op(1) sel(1) d1(2) d2(2) [+ 8 or 16 raw bytes], see run_query()
 *
 * The map never dereferences host pointers, so regions use made-up host
 * addresses; that lets the fuzzer build regions of any size, including ones
 * that reach 2^64 in guest space.
 *
 * Oracles (any mismatch aborts):
 *   - every vio_mem_add() result equals a linear reference decision
 *     (-EINVAL / -EEXIST / -ENOSPC / 0);
 *   - vio_mem_translate(), vio_mem_ptr(), vio_mem_uva_to_gpa() results equal a
 *     linear reference that uses 128-bit arithmetic;
 *   - structurally: every returned iovec lies inside one region's host range,
 *     and the iovec lengths sum to len.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REGIONS 15
#define MAX_IOV 16

typedef unsigned __int128 u128;

struct input {
    const uint8_t *p;
    size_t left;
};

static uint64_t take(struct input *in, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && in->left > 0; i++, in->p++, in->left--)
        v |= (uint64_t)in->p[0] << (8 * i);
    return v;
}

struct ref {
    unsigned cap;
    unsigned n;
    struct vio_mem_region r[MAX_REGIONS];
};

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_translate: " __VA_ARGS__);                                      \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static u128 gend(const struct vio_mem_region *r)
{
    return (u128)r->guest_addr + r->size;
}

static int ref_add(const struct ref *rf, const struct vio_mem_region *c)
{
    const u128 top = (u128)1 << 64;
    if (c->size == 0 || !c->host_ptr || gend(c) > top ||
        (c->user_addr && (u128)c->user_addr + c->size > top) ||
        (u128)(uintptr_t)c->host_ptr + c->size > (u128)UINTPTR_MAX + 1)
        return -EINVAL;
    for (unsigned i = 0; i < rf->n; i++) {
        const struct vio_mem_region *r = &rf->r[i];
        if (c->guest_addr < gend(r) && r->guest_addr < gend(c))
            return -EEXIST;
        if (c->user_addr && r->user_addr && (u128)c->user_addr < (u128)r->user_addr + r->size &&
            (u128)r->user_addr < (u128)c->user_addr + c->size)
            return -EEXIST;
    }
    if (rf->n >= rf->cap)
        return -ENOSPC;
    return 0;
}

static int ref_find(const struct ref *rf, u128 a)
{
    for (unsigned i = 0; i < rf->n; i++)
        if (a >= rf->r[i].guest_addr && a < gend(&rf->r[i]))
            return (int)i;
    return -1;
}

static bool access_ok(int access)
{
    return access >= 1 && access <= 3;
}

static int ref_translate(const struct ref *rf, uint64_t gpa, uint64_t len, int access,
                         struct iovec *iov, unsigned cap)
{
    if (!access_ok(access))
        return -EINVAL;
    if (len == 0)
        return 0;
    struct iovec all[MAX_REGIONS];
    unsigned cnt = 0;
    u128 a = gpa, end = (u128)gpa + len;
    if (end > ((u128)1 << 64))
        return -EFAULT;
    while (a < end) {
        int k = ref_find(rf, a);
        if (k < 0)
            return -EFAULT;
        const struct vio_mem_region *r = &rf->r[k];
        if ((access & VIO_MEM_WRITE) && r->readonly)
            return -EFAULT;
        u128 stop = end < gend(r) ? end : gend(r);
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

static void *ref_ptr(const struct ref *rf, uint64_t gpa, uint64_t len, int access)
{
    if (!access_ok(access))
        return NULL;
    int k = ref_find(rf, gpa);
    if (k < 0)
        return NULL;
    const struct vio_mem_region *r = &rf->r[k];
    if ((u128)gpa + len > gend(r) || ((access & VIO_MEM_WRITE) && r->readonly))
        return NULL;
    return (void *)((uintptr_t)r->host_ptr + (uintptr_t)(gpa - r->guest_addr));
}

static int ref_uva(const struct ref *rf, uint64_t uva, uint64_t len, uint64_t *gpa)
{
    for (unsigned i = 0; i < rf->n; i++) {
        const struct vio_mem_region *r = &rf->r[i];
        u128 uend = (u128)r->user_addr + r->size;
        if (r->user_addr && uva >= r->user_addr && uva < uend && (u128)uva + len <= uend) {
            *gpa = r->guest_addr + (uva - r->user_addr);
            return 0;
        }
    }
    return -EFAULT;
}

/* Structural oracle, independent of the reference: inside host memory, sums to len. */
static void check_iovs(const struct ref *rf, const struct iovec *iov, int cnt, uint64_t len)
{
    u128 sum = 0;
    for (int i = 0; i < cnt; i++) {
        CHECK(iov[i].iov_len > 0, "iov %d empty", i);
        uintptr_t b = (uintptr_t)iov[i].iov_base;
        u128 e = (u128)b + iov[i].iov_len;
        /* a merged iovec may span several host-contiguous regions: walk them */
        u128 at = b;
        while (at < e) {
            bool found = false;
            for (unsigned k = 0; k < rf->n && !found; k++) {
                uintptr_t hb = (uintptr_t)rf->r[k].host_ptr;
                u128 he = (u128)hb + rf->r[k].size;
                if (at >= hb && at < he) {
                    at = he < e ? he : e;
                    found = true;
                }
            }
            CHECK(found, "iov %d [%#zx,+%#zx) outside host memory", i, (size_t)b,
                  iov[i].iov_len);
        }
        sum += iov[i].iov_len;
    }
    CHECK(sum == len, "iov lengths sum to %#llx, len %#llx", (unsigned long long)sum,
          (unsigned long long)len);
}

/*
 * flags: bit0 readonly, bit1 guest-adjacent to the previous record, bit2
 * host-contiguous with it, bit3 place at the top (ends at 2^64 - gpa field),
 * bit4 has a user address, bit5 user-adjacent to the previous record, bit6
 * huge size (size field << 40), bit7 guest address 0.
 */
static struct vio_mem_region build_region(struct input *in, const struct vio_mem_region *prev)
{
    unsigned flags = (unsigned)take(in, 1);
    uint64_t size = take(in, 3);
    uint64_t gfield = take(in, 4);
    uint64_t ufield = take(in, 2);
    uint64_t hfield = take(in, 2);

    struct vio_mem_region r = {0};
    r.size = (flags & 0x40) ? size << 40 | 0xfff : size;
    r.readonly = flags & 1;
    if ((flags & 2) && prev)
        r.guest_addr = prev->guest_addr + prev->size; /* may wrap: ref_add decides */
    else if (flags & 0x80)
        r.guest_addr = 0;
    else if (flags & 8)
        r.guest_addr = UINT64_MAX - r.size + 1 - (gfield & 0xff);
    else
        r.guest_addr = gfield << 4;
    if ((flags & 4) && prev)
        r.host_ptr = (void *)((uintptr_t)prev->host_ptr + (uintptr_t)prev->size);
    else
        r.host_ptr = (void *)(uintptr_t)(hfield == 0xffff ? UINTPTR_MAX - 0xfff
                                         : hfield == 0xfffe ? 0
                                                            : 0x100000000000ull + (hfield << 24));
    if ((flags & 0x20) && prev && prev->user_addr)
        r.user_addr = prev->user_addr + prev->size;
    else if (flags & 0x10)
        r.user_addr = ufield == 0xffff ? UINT64_MAX - r.size + 1 : 0x7f0000000000ull + (ufield << 12);
    return r;
}

static uint64_t pick_addr(struct input *in, unsigned mode, const struct vio_mem_region *r,
                          int16_t d)
{
    switch (mode) {
    case 0:
        return r ? r->guest_addr + (uint64_t)(int64_t)d : (uint64_t)(int64_t)d;
    case 1:
        return r ? r->guest_addr + r->size + (uint64_t)(int64_t)d : (uint64_t)(int64_t)d;
    case 2:
        return take(in, 8);
    default:
        return UINT64_MAX - (uint16_t)d;
    }
}

static uint64_t pick_len(struct input *in, unsigned mode, const struct vio_mem_region *r,
                         uint16_t d)
{
    switch (mode) {
    case 0:
        return d;
    case 1:
        return (r ? r->size : 0) + (uint64_t)(int64_t)(int16_t)d;
    case 2:
        return take(in, 8);
    default:
        return UINT64_MAX - d;
    }
}

/*
 * op:  bits 0-1 kind (0 translate, 1 ptr, 2 uva_to_gpa, 3 remove+re-add)
 *      bits 2-3 access (0 is invalid on purpose)
 *      bits 4-5 address mode, bits 6-7 length mode (see pick_addr/pick_len)
 * sel: low nibble region index (mod count), high nibble iov capacity
 */
static void run_query(struct vio_mem *m, struct ref *rf, struct input *in)
{
    unsigned op = (unsigned)take(in, 1);
    unsigned sel = (unsigned)take(in, 1);
    int16_t d1 = (int16_t)(uint16_t)take(in, 2);
    uint16_t d2 = (uint16_t)take(in, 2);
    const struct vio_mem_region *r = rf->n ? &rf->r[(sel & 15) % rf->n] : NULL;
    int access = (int)((op >> 2) & 3);
    uint64_t addr = pick_addr(in, (op >> 4) & 3, r, d1);
    uint64_t len = pick_len(in, (op >> 6) & 3, r, d2);
    unsigned cap = sel >> 4;

    switch (op & 3) {
    case 0: {
        struct iovec got[MAX_IOV], exp[MAX_IOV];
        int rg = vio_mem_translate(m, addr, len, access, got, cap);
        int re = ref_translate(rf, addr, len, access, exp, cap);
        CHECK(rg == re, "translate(%#llx, %#llx, %d, %u) = %d, reference %d",
              (unsigned long long)addr, (unsigned long long)len, access, cap, rg, re);
        if (rg > 0) {
            CHECK((unsigned)rg <= cap, "translate wrote %d iovecs, cap %u", rg, cap);
            check_iovs(rf, got, rg, len);
            for (int i = 0; i < rg; i++)
                CHECK(got[i].iov_base == exp[i].iov_base && got[i].iov_len == exp[i].iov_len,
                      "iov %d differs from reference", i);
        }
        break;
    }
    case 1: {
        void *pg = vio_mem_ptr(m, addr, len, access);
        void *pe = ref_ptr(rf, addr, len, access);
        CHECK(pg == pe, "ptr(%#llx, %#llx, %d) = %p, reference %p", (unsigned long long)addr,
              (unsigned long long)len, access, pg, pe);
        if (pg && len) {
            struct iovec one = {pg, (size_t)len};
            check_iovs(rf, &one, 1, len);
        }
        break;
    }
    case 2: {
        /* reuse addr as a user address, shifted into the user key space when near a region */
        uint64_t uva = (r && r->user_addr && !(op & 0x20)) ? r->user_addr + (addr - r->guest_addr)
                                                           : addr;
        uint64_t g1 = 7, g2 = 7;
        int u1 = vio_mem_uva_to_gpa(m, uva, len, &g1);
        int u2 = ref_uva(rf, uva, len, &g2);
        CHECK(u1 == u2 && g1 == g2, "uva_to_gpa(%#llx, %#llx) = %d/%#llx, reference %d/%#llx",
              (unsigned long long)uva, (unsigned long long)len, u1, (unsigned long long)g1, u2,
              (unsigned long long)g2);
        break;
    }
    default: {
        if (!r)
            break;
        unsigned k = (unsigned)(r - rf->r);
        struct vio_mem_region saved = *r;
        /* a wrong size never matches: no other region can start at the same address */
        int rc = vio_mem_remove(m, saved.guest_addr, saved.size + 1 + (d2 & 0xff));
        CHECK(rc == -ENOENT, "remove with wrong size = %d", rc);
        rc = vio_mem_remove(m, saved.guest_addr, saved.size);
        CHECK(rc == 0, "remove = %d", rc);
        rf->r[k] = rf->r[--rf->n];
        CHECK(vio_mem_count(m) == rf->n, "count %u, reference %u", vio_mem_count(m), rf->n);
        if (d2 & 0x100)
            break; /* leave it out */
        CHECK(ref_add(rf, &saved) == 0, "reference refuses re-add");
        rc = vio_mem_add(m, &saved);
        CHECK(rc == 0, "re-add = %d", rc);
        rf->r[rf->n++] = saved;
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    if (size < 1)
        return 0;
    unsigned hdr = (unsigned)take(&in, 1);
    unsigned nrec = hdr & 15;
    unsigned capsel = hdr >> 4;

    struct vio_mem *m = NULL;
    CHECK(vio_mem_new(capsel, &m) == 0, "vio_mem_new");
    struct ref rf = {.cap = capsel ? capsel : VIO_MEM_DEFAULT_CAPACITY};

    struct vio_mem_region prev_rec;
    bool have_prev = false;
    for (unsigned i = 0; i < nrec && in.left > 0; i++) {
        struct vio_mem_region c = build_region(&in, have_prev ? &prev_rec : NULL);
        int exp = ref_add(&rf, &c);
        int rc = vio_mem_add(m, &c);
        CHECK(rc == exp, "add(gpa %#llx, size %#llx, uva %#llx, host %p) = %d, reference %d",
              (unsigned long long)c.guest_addr, (unsigned long long)c.size,
              (unsigned long long)c.user_addr, c.host_ptr, rc, exp);
        if (rc == 0)
            rf.r[rf.n++] = c;
        prev_rec = c;
        have_prev = true;
    }
    CHECK(vio_mem_count(m) == rf.n, "count %u, reference %u", vio_mem_count(m), rf.n);

    /* regions come back sorted and intact */
    uint64_t last = 0;
    for (unsigned i = 0; i < rf.n; i++) {
        struct vio_mem_region g;
        CHECK(vio_mem_get(m, i, &g) == 0, "get %u", i);
        CHECK(i == 0 || g.guest_addr > last, "get order");
        last = g.guest_addr;
    }

    while (in.left > 0)
        run_query(m, &rf, &in);

    vio_mem_free(m);
    return 0;
}
