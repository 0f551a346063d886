/* SPDX-License-Identifier: MIT */
/* Test support: guest-RAM arena and raw split-ring builder (see arena.h). */
#include "arena.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_DEFAULT_BASE 0x100000u
#define ARENA_DEFAULT_SIZE (1u << 20)

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096u;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* ------------------------------------------------------------------------ */
/* Arena */

int arena_init_simple(struct arena *a, uint64_t base, uint64_t size)
{
    struct arena_config cfg = {.base = base, .size = size};
    return arena_init(a, &cfg);
}

int arena_init(struct arena *a, const struct arena_config *cfg_in)
{
    struct arena_config cfg = {.base = ARENA_DEFAULT_BASE, .size = ARENA_DEFAULT_SIZE};
    size_t pg = page_size();
    int rc;

    memset(a, 0, sizeof(*a));
    if (cfg_in)
        cfg = *cfg_in;
    if (cfg.size == 0)
        cfg.size = ARENA_DEFAULT_SIZE;
    if (cfg.base % pg || cfg.size % pg || cfg.split % pg || cfg.hole % pg)
        return -EINVAL;
    if (cfg.split >= cfg.size || (cfg.hole && !cfg.split))
        return -EINVAL;
    if (cfg.base + cfg.size + cfg.hole < cfg.base)
        return -EINVAL;

    a->nreg = cfg.split ? 2 : 1;
    uint64_t sz0 = cfg.split ? cfg.split : cfg.size;
    uint64_t sz1 = cfg.split ? cfg.size - cfg.split : 0;

    /* guard | region 0 | guard | region 1 | guard: host addresses of the two regions are
     * never contiguous, so a guest range across the boundary needs two iovecs. */
    a->map_len = pg + sz0 + pg + (sz1 ? sz1 + pg : 0);
    /* MAP_NORESERVE: multi-GiB arenas (the 4 GiB chain-length rule) cost only the pages
     * a test actually touches. */
    void *m = mmap(NULL, a->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        a->map_len = 0;
        return -ENOMEM;
    }
    a->map = m;
    a->reg[0].gpa = cfg.base;
    a->reg[0].size = sz0;
    a->reg[0].host = a->map + pg;
    if (sz1) {
        a->reg[1].gpa = cfg.base + sz0 + cfg.hole;
        a->reg[1].size = sz1;
        a->reg[1].host = a->reg[0].host + sz0 + pg;
    }
    /* guard pages: a stray access next to a region faults */
    if (mprotect(a->map, pg, PROT_NONE) != 0 ||
        mprotect(a->reg[0].host + sz0, pg, PROT_NONE) != 0 ||
        (sz1 && mprotect(a->reg[1].host + sz1, pg, PROT_NONE) != 0)) {
        rc = -errno;
        goto fail;
    }

    rc = vio_mem_new(cfg.mem_capacity, &a->mem);
    if (rc < 0)
        goto fail;
    for (unsigned i = 0; i < a->nreg; i++) {
        struct vio_mem_region r = {
            .guest_addr = a->reg[i].gpa,
            .size = a->reg[i].size,
            .user_addr = 0,
            .host_ptr = a->reg[i].host,
            .mmap_offset = (uint64_t)(a->reg[i].host - a->map),
            .readonly = (i == 1 && cfg.region1_readonly),
        };
        rc = vio_mem_add(a->mem, &r);
        if (rc < 0)
            goto fail;
    }

    a->next[0] = a->reg[0].gpa == 0 ? 16 : a->reg[0].gpa;
    a->lim[0] = a->reg[0].gpa + a->reg[0].size;
    if (a->nreg == 2) {
        if (a->reg[0].size > ARENA_BOUNDARY_RESERVE)
            a->lim[0] -= ARENA_BOUNDARY_RESERVE;
        a->next[1] = a->reg[1].gpa;
        if (a->reg[1].size > 2 * ARENA_BOUNDARY_RESERVE)
            a->next[1] += ARENA_BOUNDARY_RESERVE;
        a->lim[1] = a->reg[1].gpa + a->reg[1].size;
    }
    return 0;

fail:
    arena_fini(a);
    return rc;
}

void arena_fini(struct arena *a)
{
    if (!a)
        return;
    vio_mem_free(a->mem);
    if (a->map)
        munmap(a->map, a->map_len);
    memset(a, 0, sizeof(*a));
}

uint64_t arena_alloc(struct arena *a, uint64_t len, uint64_t align)
{
    if (align == 0)
        align = 16;
    if (align & (align - 1) || len == 0)
        return 0;
    for (unsigned i = 0; i < a->nreg; i++) {
        uint64_t p = align_up(a->next[i], align);
        if (p < a->next[i] || p > a->lim[i] || a->lim[i] - p < len)
            continue;
        a->next[i] = p + len;
        memset(arena_ptr(a, p), 0, len);
        return p;
    }
    return 0;
}

static const struct arena_region *find_region(const struct arena *a, uint64_t gpa)
{
    for (unsigned i = 0; i < a->nreg; i++) {
        if (gpa >= a->reg[i].gpa && gpa - a->reg[i].gpa < a->reg[i].size)
            return &a->reg[i];
    }
    return NULL;
}

void *arena_ptr(const struct arena *a, uint64_t gpa)
{
    const struct arena_region *r = find_region(a, gpa);
    return r ? r->host + (gpa - r->gpa) : NULL;
}

bool arena_mapped(const struct arena *a, uint64_t gpa, uint64_t len)
{
    while (len) {
        const struct arena_region *r = find_region(a, gpa);
        if (!r)
            return false;
        uint64_t room = r->size - (gpa - r->gpa);
        if (room >= len)
            return true;
        len -= room;
        gpa += room;
        if (gpa == 0)
            return false; /* wrapped */
    }
    return true;
}

uint64_t arena_boundary(const struct arena *a)
{
    return a->reg[0].gpa + a->reg[0].size;
}

uint64_t arena_hole(const struct arena *a)
{
    if (a->nreg < 2 || a->reg[1].gpa == arena_boundary(a))
        return 0;
    return arena_boundary(a);
}

uint64_t arena_end(const struct arena *a)
{
    const struct arena_region *r = &a->reg[a->nreg ? a->nreg - 1 : 0];
    return r->gpa + r->size;
}

static int copy_guest(const struct arena *a, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
    uint8_t *b = buf;
    if (!arena_mapped(a, gpa, len))
        return -EFAULT;
    while (len) {
        const struct arena_region *r = find_region(a, gpa);
        uint64_t off = gpa - r->gpa;
        size_t n = (size_t)(r->size - off) < len ? (size_t)(r->size - off) : len;
        if (to_guest)
            memcpy(r->host + off, b, n);
        else
            memcpy(b, r->host + off, n);
        b += n;
        gpa += n;
        len -= n;
    }
    return 0;
}

int arena_write(struct arena *a, uint64_t gpa, const void *src, size_t len)
{
    return copy_guest(a, gpa, (void *)src, len, true);
}

int arena_read(const struct arena *a, uint64_t gpa, void *dst, size_t len)
{
    return copy_guest(a, gpa, dst, len, false);
}

int arena_fill(struct arena *a, uint64_t gpa, int byte, size_t len)
{
    if (!arena_mapped(a, gpa, len))
        return -EFAULT;
    while (len) {
        const struct arena_region *r = find_region(a, gpa);
        uint64_t off = gpa - r->gpa;
        size_t n = (size_t)(r->size - off) < len ? (size_t)(r->size - off) : len;
        memset(r->host + off, byte, n);
        gpa += n;
        len -= n;
    }
    return 0;
}

uint64_t arena_alloc_bufs(struct arena *a, unsigned n, uint32_t len, int byte)
{
    uint64_t stride = align_up(len ? len : 1, 16);
    if (n == 0)
        return 0;
    uint64_t p = arena_alloc(a, stride * n, 16);
    if (p)
        memset(arena_ptr(a, p), byte, stride * n);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Raw ring: every field access goes through these, which do the LE conversion. */

static uint16_t *u16_at(const struct arena *a, uint64_t gpa)
{
    return (uint16_t *)arena_ptr(a, gpa);
}

static uint32_t *u32_at(const struct arena *a, uint64_t gpa)
{
    return (uint32_t *)arena_ptr(a, gpa);
}

/* Plain stores/loads for fields the other side reads after an index release/acquire. */
static void st16(const struct arena *a, uint64_t gpa, uint16_t v)
{
    uint16_t *p = u16_at(a, gpa);
    if (p)
        __atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static uint16_t ld16(const struct arena *a, uint64_t gpa)
{
    uint16_t *p = u16_at(a, gpa);
    return p ? le16toh(__atomic_load_n(p, __ATOMIC_RELAXED)) : 0;
}

/* Index publication: release so the entries written before are visible first. */
static void st16_rel(const struct arena *a, uint64_t gpa, uint16_t v)
{
    uint16_t *p = u16_at(a, gpa);
    if (p)
        __atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

/* Index read: acquire pairs with the other side's release of the entries. */
static uint16_t ld16_acq(const struct arena *a, uint64_t gpa)
{
    uint16_t *p = u16_at(a, gpa);
    return p ? le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE)) : 0;
}

static void st32(const struct arena *a, uint64_t gpa, uint32_t v)
{
    uint32_t *p = u32_at(a, gpa);
    if (p)
        __atomic_store_n(p, htole32(v), __ATOMIC_RELAXED);
}

static uint32_t ld32(const struct arena *a, uint64_t gpa)
{
    uint32_t *p = u32_at(a, gpa);
    return p ? le32toh(__atomic_load_n(p, __ATOMIC_RELAXED)) : 0;
}

#define AVAIL_FLAGS(r) ((r)->avail + offsetof(struct vring_avail, flags))
#define AVAIL_IDX(r) ((r)->avail + offsetof(struct vring_avail, idx))
#define AVAIL_RING(r, s) ((r)->avail + offsetof(struct vring_avail, ring) + 2u * (uint64_t)(s))
#define USED_FLAGS(r) ((r)->used + offsetof(struct vring_used, flags))
#define USED_IDX(r) ((r)->used + offsetof(struct vring_used, idx))
#define USED_ELEM(r, s) \
    ((r)->used + offsetof(struct vring_used, ring) + sizeof(struct vring_used_elem) * (uint64_t)(s))

int rawring_attach(struct rawring *r, struct arena *a, uint16_t size, uint64_t desc,
                   uint64_t avail, uint64_t used)
{
    memset(r, 0, sizeof(*r));
    if (size == 0)
        return -EINVAL;
    r->a = a;
    r->size = size;
    r->desc = desc;
    r->avail = avail;
    r->used = used;
    if (!arena_mapped(a, desc, 16u * size) || !arena_mapped(a, avail, 6u + 2u * size) ||
        !arena_mapped(a, used, 6u + 8u * size))
        return -EFAULT;
    r->avail_shadow = ld16(a, AVAIL_IDX(r));
    r->used_shadow = ld16(a, USED_IDX(r));
    r->used_seen = r->used_shadow;
    return 0;
}

int rawring_init(struct rawring *r, struct arena *a, uint16_t size, size_t align)
{
    if (align == 0)
        align = 4;
    if (size == 0 || (align & (align - 1)))
        return -EINVAL;
    uint64_t avail_off = 16u * (uint64_t)size;
    uint64_t used_off = align_up(avail_off + 6u + 2u * (uint64_t)size, align);
    uint64_t total = used_off + 6u + 8u * (uint64_t)size;
    uint64_t base = arena_alloc(a, total, align > 16 ? align : 16);
    if (!base)
        return -ENOMEM;
    return rawring_attach(r, a, size, base, base + avail_off, base + used_off);
}

void rawring_set_desc(struct rawring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                      uint16_t next)
{
    struct vring_desc d = {
        .addr = htole64(addr), .len = htole32(len), .flags = htole16(flags), .next = htole16(next)};
    arena_write(r->a, r->desc + 16u * (uint64_t)(i % r->size), &d, sizeof(d));
}

void rawring_get_desc(const struct rawring *r, uint16_t i, uint64_t *addr, uint32_t *len,
                      uint16_t *flags, uint16_t *next)
{
    struct vring_desc d;
    memset(&d, 0, sizeof(d));
    arena_read(r->a, r->desc + 16u * (uint64_t)(i % r->size), &d, sizeof(d));
    if (addr)
        *addr = le64toh(d.addr);
    if (len)
        *len = le32toh(d.len);
    if (flags)
        *flags = le16toh(d.flags);
    if (next)
        *next = le16toh(d.next);
}

void rawring_set_avail_slot(struct rawring *r, uint16_t slot, uint16_t head)
{
    st16(r->a, AVAIL_RING(r, slot % r->size), head);
}

uint16_t rawring_avail_slot(const struct rawring *r, uint16_t slot)
{
    return ld16(r->a, AVAIL_RING(r, slot % r->size));
}

void rawring_set_avail_idx(struct rawring *r, uint16_t idx)
{
    r->avail_shadow = idx;
    st16_rel(r->a, AVAIL_IDX(r), idx);
}

uint16_t rawring_avail_idx(const struct rawring *r)
{
    return ld16(r->a, AVAIL_IDX(r));
}

uint16_t rawring_publish(struct rawring *r, uint16_t head)
{
    rawring_set_avail_slot(r, r->avail_shadow, head);
    rawring_set_avail_idx(r, (uint16_t)(r->avail_shadow + 1));
    return r->avail_shadow;
}

void rawring_set_avail_flags(struct rawring *r, uint16_t flags)
{
    st16(r->a, AVAIL_FLAGS(r), flags);
}

uint16_t rawring_avail_flags(const struct rawring *r)
{
    return ld16(r->a, AVAIL_FLAGS(r));
}

void rawring_set_used_event(struct rawring *r, uint16_t v)
{
    st16(r->a, AVAIL_RING(r, r->size), v);
}

uint16_t rawring_used_event(const struct rawring *r)
{
    return ld16(r->a, AVAIL_RING(r, r->size));
}

uint16_t rawring_used_idx(const struct rawring *r)
{
    return ld16_acq(r->a, USED_IDX(r));
}

uint16_t rawring_used_flags(const struct rawring *r)
{
    return ld16(r->a, USED_FLAGS(r));
}

uint16_t rawring_avail_event(const struct rawring *r)
{
    return ld16(r->a, USED_ELEM(r, r->size));
}

void rawring_set_avail_event(struct rawring *r, uint16_t v)
{
    st16(r->a, USED_ELEM(r, r->size), v);
}

void rawring_used_elem(const struct rawring *r, uint16_t slot, uint32_t *id, uint32_t *len)
{
    uint64_t e = USED_ELEM(r, slot % r->size);
    if (id)
        *id = ld32(r->a, e + offsetof(struct vring_used_elem, id));
    if (len)
        *len = ld32(r->a, e + offsetof(struct vring_used_elem, len));
}

int rawring_take_used(struct rawring *r, uint32_t *id, uint32_t *len)
{
    if (rawring_used_idx(r) == r->used_seen)
        return -EAGAIN;
    rawring_used_elem(r, r->used_seen, id, len);
    r->used_seen++;
    return 0;
}

void rawring_set_used_elem(struct rawring *r, uint16_t slot, uint32_t id, uint32_t len)
{
    uint64_t e = USED_ELEM(r, slot % r->size);
    st32(r->a, e + offsetof(struct vring_used_elem, id), id);
    st32(r->a, e + offsetof(struct vring_used_elem, len), len);
}

void rawring_set_used_idx(struct rawring *r, uint16_t idx)
{
    r->used_shadow = idx;
    st16_rel(r->a, USED_IDX(r), idx);
}

void rawring_push_used(struct rawring *r, uint32_t id, uint32_t len)
{
    rawring_set_used_elem(r, r->used_shadow, id, len);
    rawring_set_used_idx(r, (uint16_t)(r->used_shadow + 1));
}

void rawring_set_used_flags(struct rawring *r, uint16_t flags)
{
    st16(r->a, USED_FLAGS(r), flags);
}

/* ------------------------------------------------------------------------ */
/* Chain helpers */

uint16_t rawring_chain(struct rawring *r, uint16_t first, const struct rawseg *segs, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        uint16_t i = (uint16_t)((first + k) % r->size);
        uint16_t nx = (uint16_t)((first + k + 1) % r->size);
        uint16_t fl = (uint16_t)((segs[k].write ? VRING_DESC_F_WRITE : 0) |
                                 (k + 1 < n ? VRING_DESC_F_NEXT : 0));
        rawring_set_desc(r, i, segs[k].addr, segs[k].len, fl, k + 1 < n ? nx : 0);
    }
    return (uint16_t)(first % r->size);
}

uint16_t rawring_add_chain(struct rawring *r, uint16_t first, const struct rawseg *segs,
                           unsigned n)
{
    uint16_t head = rawring_chain(r, first, segs, n);
    rawring_publish(r, head);
    return head;
}

void rawring_loop(struct rawring *r, uint16_t first, uint16_t n, uint64_t buf, uint32_t len)
{
    for (uint16_t k = 0; k < n; k++) {
        uint16_t i = (uint16_t)((first + k) % r->size);
        uint16_t nx = (uint16_t)(k + 1 < n ? (first + k + 1) % r->size : first % r->size);
        rawring_set_desc(r, i, buf, len, VRING_DESC_F_NEXT, nx);
    }
}

uint64_t raw_indirect_alloc(struct arena *a, unsigned n)
{
    if (n == 0)
        return 0;
    return arena_alloc(a, 16u * (uint64_t)n, 16);
}

int raw_table_set(struct arena *a, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                  uint16_t flags, uint16_t next)
{
    struct vring_desc d = {
        .addr = htole64(addr), .len = htole32(len), .flags = htole16(flags), .next = htole16(next)};
    return arena_write(a, table + 16u * (uint64_t)i, &d, sizeof(d));
}

int raw_table_chain(struct arena *a, uint64_t table, const struct rawseg *segs, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        uint16_t fl = (uint16_t)((segs[k].write ? VRING_DESC_F_WRITE : 0) |
                                 (k + 1 < n ? VRING_DESC_F_NEXT : 0));
        int rc = raw_table_set(a, table, k, segs[k].addr, segs[k].len, fl,
                               (uint16_t)(k + 1 < n ? k + 1 : 0));
        if (rc < 0)
            return rc;
    }
    return 0;
}

void rawring_set_indirect(struct rawring *r, uint16_t i, uint64_t table, unsigned n)
{
    rawring_set_desc(r, i, table, 16u * n, VRING_DESC_F_INDIRECT, 0);
}

/* ------------------------------------------------------------------------ */
/* Queue conveniences */

void arena_queue_config(struct vio_queue_config *cfg, uint16_t max_size, const char *name)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->max_size = max_size;
    cfg->name = name;
    cfg->dir = VIO_QUEUE_DIR_ANY;
}

int rawring_setup_queue(struct rawring *r, struct vio_queue *q, uint64_t features)
{
    return vio_queue_setup(q, r->a->mem, r->size, features, r->desc, r->avail, r->used);
}

int arena_drvq_config(struct arena *a, struct vio_drvq_config *cfg, uint16_t size,
                      uint64_t features, uint16_t indirect_max)
{
    struct rawring tmp;
    int rc = rawring_init(&tmp, a, size, 4);
    if (rc < 0)
        return rc;
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->size = size;
    cfg->features = features;
    cfg->mem = a->mem;
    cfg->desc = tmp.desc;
    cfg->driver = tmp.avail;
    cfg->device = tmp.used;
    if (indirect_max) {
        cfg->indirect_pool = arena_alloc(a, (uint64_t)size * indirect_max * 16u, 16);
        if (!cfg->indirect_pool)
            return -ENOMEM;
        cfg->indirect_max = indirect_max;
    }
    return 0;
}
