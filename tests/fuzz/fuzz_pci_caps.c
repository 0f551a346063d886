/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-PCI driver seat (src/transport/pci_driver.c): a random
 * configuration space, random BAR sizes and random register values, then the generic ops.
 *
 * Input layout:
 *   bytes [0, 256)    the function's configuration space (a short input is zero-padded)
 *   bytes [256, 262)  per BAR: log2 of its size (4..40; other values = unimplemented)
 *   the rest          a stream of values every BAR read returns (cycled; zeros if empty)
 *
 * Configuration writes are stored, except that BAR registers keep only the bits a BAR of
 * that size implements (how sizing works on real hardware).
 *
 * A function without the modern capabilities may be taken as a legacy one (the I/O BAR
 * accessors are given, with an I/O window): its register reads come from the same stream.
 *
 * Oracles (abort on failure): every configuration access lies in [0, 256); every BAR access
 * names BAR 0..5 and lies inside the size that BAR reported; every I/O access names BAR 0, an
 * I/O BAR, inside its size, at the port base its register holds; the bus address passed is
 * the one the BAR registers hold; a probe either fails with one of its documented errnos or
 * yields info consistent with the space (vendor 0x1af4, windows inside their BARs); no op
 * returns an undocumented positive value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/driver.h"

struct fz {
    uint8_t cfg[256];
    uint64_t size[6];
    const uint8_t *stream;
    size_t slen, spos;
};

#define CHECK(c)                                                                        \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "fuzz_pci_caps: %s:%d: %s\n", __FILE__, __LINE__, #c);      \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static uint64_t get(const uint8_t *p, unsigned off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[off + i] << (8 * i);
    return v;
}

static int cfg_read(void *o, unsigned off, unsigned size, uint32_t *v)
{
    struct fz *f = o;
    CHECK(size == 1 || size == 2 || size == 4);
    CHECK(off < 256 && off + size <= 256);
    *v = (uint32_t)get(f->cfg, off, size);
    return 0;
}

/* Is BAR register @p i the upper half of the 64-bit BAR before it (walking from BAR 0)? */
static bool is_upper(const struct fz *f, unsigned i)
{
    for (unsigned j = 0; j < 5; j++) {
        bool is64 = (f->cfg[0x10 + 4 * j] & 7) == 4;
        if (is64 && j + 1 == i)
            return true;
        if (j >= i)
            return false;
        if (is64)
            j++;
    }
    return false;
}

static int cfg_write(void *o, unsigned off, unsigned size, uint32_t v)
{
    struct fz *f = o;
    CHECK(size == 1 || size == 2 || size == 4);
    CHECK(off < 256 && off + size <= 256);
    if (off >= 0x10 && off < 0x28) {
        CHECK(size == 4 && (off & 3) == 0);
        unsigned i = (off - 0x10) / 4;
        uint32_t flags = f->cfg[off] & 0xf;
        bool upper = is_upper(f, i);
        if (upper)
            v &= (uint32_t)(~(f->size[i - 1] ? f->size[i - 1] - 1 : ~0ull) >> 32);
        else if (flags & 1)
            v = (v & ~3u & (uint32_t)~(f->size[i] ? f->size[i] - 1 : ~0ull)) | 1u;
        else
            v = (v & ~0xfu & (uint32_t)~(f->size[i] ? f->size[i] - 1 : ~0ull)) | flags;
    }
    for (unsigned i = 0; i < size; i++)
        f->cfg[off + i] = (uint8_t)(v >> (8 * i));
    return 0;
}

static uint64_t bar_base(const struct fz *f, unsigned bar)
{
    uint64_t lo = get(f->cfg, 0x10 + 4 * bar, 4);
    uint64_t a = lo & ~0xfull;
    if ((lo & 7) == 4 && bar < 5)
        a |= get(f->cfg, 0x14 + 4 * bar, 4) << 32;
    return a;
}

static void bar_check(struct fz *f, unsigned bar, uint64_t base, uint64_t off, unsigned size)
{
    CHECK(bar <= 5);
    CHECK(size == 1 || size == 2 || size == 4 || size == 8);
    CHECK(f->size[bar] && off < f->size[bar] && size <= f->size[bar] - off);
    CHECK(base == bar_base(f, bar));
}

static int bar_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t *v)
{
    struct fz *f = o;
    bar_check(f, bar, base, off, size);
    uint64_t x = 0;
    for (unsigned i = 0; i < size && f->slen; i++) {
        x |= (uint64_t)f->stream[f->spos] << (8 * i);
        f->spos = (f->spos + 1) % f->slen;
    }
    *v = x;
    return 0;
}

static int bar_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t v)
{
    (void)v;
    bar_check(o, bar, base, off, size);
    return 0;
}

static void io_check(struct fz *f, unsigned bar, uint64_t base, uint64_t off, unsigned size)
{
    CHECK(bar == 0 && (f->cfg[0x10] & 1));
    CHECK(size == 1 || size == 2 || size == 4);
    CHECK(f->size[0] && off < f->size[0] && size <= f->size[0] - off);
    CHECK(base == (get(f->cfg, 0x10, 4) & ~3ull) && base + f->size[0] <= 0x10000);
}

static int io_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t *v)
{
    struct fz *f = o;
    io_check(f, bar, base, off, size);
    uint64_t x = 0;
    for (unsigned i = 0; i < size && f->slen; i++) {
        x |= (uint64_t)f->stream[f->spos] << (8 * i);
        f->spos = (f->spos + 1) % f->slen;
    }
    *v = x;
    return 0;
}

static int io_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t v)
{
    (void)v;
    io_check(o, bar, base, off, size);
    return 0;
}

static const struct vio_pci_driver_io io = {cfg_read, cfg_write, bar_read, bar_write, io_read,
                                            io_write};

static void ok_err(int r)
{
    CHECK(r == 0 || r == -EINVAL || r == -ERANGE || r == -EPROTO || r == -ENOTSUP ||
          r == -ENOSPC || r == -EBUSY || r == -ETIMEDOUT || r == -EAGAIN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz f;
    memset(&f, 0, sizeof(f));
    memcpy(f.cfg, data, size < 256 ? size : 256);
    for (unsigned i = 0; i < 6; i++) {
        unsigned l = 256 + i < size ? data[256 + i] : 0;
        f.size[i] = (l >= 4 && l <= 40) ? 1ull << l : 0;
    }
    /* BAR registers show a size-aligned address (or 0) as hardware would; the upper half of
     * a 64-bit BAR is part of its BAR */
    for (unsigned i = 0; i < 6; i++) {
        uint32_t lo = (uint32_t)get(f.cfg, 0x10 + 4 * i, 4);
        bool is64 = (lo & 7) == 4 && i < 5;
        uint64_t keep = f.size[i] ? ~(f.size[i] - 1) : 0;
        uint64_t v;
        if (lo & 1)
            v = (lo & ~3u & keep) | 1u;
        else if (is64)
            v = (((get(f.cfg, 0x14 + 4 * i, 4) << 32) | lo) & ~0xfull & keep) | (lo & 0xf);
        else
            v = (lo & ~0xfu & keep) | (lo & 0xf);
        for (unsigned k = 0; k < (is64 ? 8u : 4u); k++)
            f.cfg[0x10 + 4 * i + k] = (uint8_t)(v >> (8 * k));
        if (is64)
            i++;
    }
    if (size > 262) {
        f.stream = data + 262;
        f.slen = size - 262;
    }
    struct vio_pci_driver_config c = {.struct_size = sizeof(c), .io = &io, .io_opaque = &f,
                                      .bar_window = 0x80000000ull,
                                      .bar_window_size = 0x80000000ull,
                                      .io_window = 0xc000, .io_window_size = 0x1000};
    struct vio_pci_driver *p = NULL;
    int r = vio_pci_driver_new(&c, &p);
    if (r < 0) {
        CHECK(r == -ENODEV || r == -ENOTSUP || r == -EPROTO || r == -ENXIO);
        CHECK(p == NULL);
        return 0;
    }
    struct vio_pci_driver_info in;
    CHECK(vio_pci_driver_info(p, &in) == 0);
    CHECK(in.vendor_id == 0x1af4);
    for (unsigned i = 0; i < 6; i++)
        CHECK(in.bar_size[i] == 0 || (in.bar_size[i] & (in.bar_size[i] - 1)) == 0);

    struct vio_driver d = vio_pci_driver_get(p);
    uint64_t feat;
    ok_err(vio_driver_negotiate(&d, ~0ull, &feat));
    uint8_t buf[64];
    ok_err(vio_driver_config_read_stable(&d, 0, buf, sizeof(buf)));
    ok_err(vio_driver_config_write(&d, 3, buf, 7));
    int nq = vio_driver_num_queues(&d);
    CHECK(nq >= 0 && nq <= 0xffff);
    for (unsigned q = 0; q < 4; q++) {
        int max = vio_driver_queue_max_size(&d, q);
        CHECK(max >= -ERANGE && max <= 0xffff);
        struct vio_driver_queue dq = {.size = 16, .desc = 0x1000, .driver = 0x2000, .device = 0x3000};
        ok_err(vio_driver_queue_setup(&d, q, &dq));
        if (max > 0 && max <= 0x8000 && !(max & (max - 1))) { /* the legacy shape */
            uint64_t used = (0x10000 + 16ull * max + 6 + 2ull * max + 4095) & ~4095ull;
            dq = (struct vio_driver_queue){(uint16_t)max, 0x10000, 0x10000 + 16ull * max, used};
            ok_err(vio_driver_queue_setup(&d, q, &dq));
        }
        ok_err(vio_driver_queue_enable(&d, q));
        ok_err(vio_driver_notify(&d, q));
        ok_err(vio_driver_set_queue_vector(&d, q, (uint16_t)q));
    }
    ok_err(vio_driver_set_config_vector(&d, 1));
    r = vio_driver_ack_interrupt(&d);
    CHECK((r >= 0 && r <= 3) || r == -ENOTSUP);
    if (in.msix_vectors) {
        ok_err(vio_pci_driver_msix_set_entry(p, (uint16_t)(in.msix_vectors - 1), 0xfee00000u, 1, false));
        ok_err(vio_pci_driver_msix_enable(p, true));
    }
    ok_err(vio_driver_reset(&d));
    vio_pci_driver_free(p);
    return 0;
}
