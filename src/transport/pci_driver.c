/* SPDX-License-Identifier: MIT */
/*
 * virtio-PCI, driver seat: capability walker, BAR sizing / assignment, and the generic
 * driver ops over the common / notify / ISR / device configuration windows (virtio 1.2,
 * 4.1 "Virtio Over PCI Bus"), or, for a transitional function without the modern
 * capabilities, over the legacy register block in I/O BAR 0 (4.1.4.10, "Legacy Interfaces").
 *
 * Everything the function shows is device-controlled and untrusted. The configuration
 * space is read once into a 256-byte snapshot and walked there: every capability pointer
 * is masked to a dword, must lie in [0x40, 0xfc] and is visited at most once (a loop is
 * refused), every capability must fit in the 256 bytes, and every window a capability
 * names must lie inside its (sized) memory BAR. Register values read later (queue sizes,
 * notify offsets) are checked before they are used to compute an address.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>

#include "core/log.h"
#include "transport/driver_internal.h"
#include "virtio/driver.h"

#define PCI_VENDOR_VIRTIO 0x1af4u
#define RESET_POLLS 1000
#define CFG_SPACE 256u

struct win {
    bool present;
    bool io; /* an I/O BAR (the legacy block) */
    uint8_t bar;
    uint32_t off, len;
};

struct pq {
    uint32_t max;     /* cached maximum size, UINT32_MAX = not read since reset */
    uint64_t notify;  /* offset in the notify window's BAR, UINT64_MAX = not enabled */
    bool setup;       /* queue_setup() ran since the last reset */
    uint32_t pfn;     /* legacy: QUEUE_PFN to write at enable */
};

struct vio_pci_driver {
    const struct vio_pci_driver_io *io;
    void *opaque;
    vio_log_fn log;
    void *log_opaque;
    struct vio_pci_driver_info info;
    struct win common, notify, isr, dev;
    uint8_t msix_cap;
    uint8_t msix_bar;
    uint32_t msix_off;
    uint16_t nq;
    struct pq *q;
    bool legacy;      /* driven through the legacy I/O block (struct win legacy) */
    bool msix_on;     /* MSI-X enabled through vio_pci_driver_msix_enable() */
    struct win lw;    /* the legacy register block */
};

/* ------------------------------------------------------------------------ */
/* accessors                                                                 */

static int cfgr(struct vio_pci_driver *p, unsigned off, unsigned size, uint32_t *v)
{
    return p->io->cfg_read(p->opaque, off, size, v);
}

static int cfgw(struct vio_pci_driver *p, unsigned off, unsigned size, uint32_t v)
{
    return p->io->cfg_write(p->opaque, off, size, v);
}

static int winr(struct vio_pci_driver *p, const struct win *w, uint32_t off, unsigned size,
                uint64_t *v)
{
    if (w->io)
        return p->io->io_read(p->opaque, w->bar, p->info.bar_addr[w->bar],
                              (uint64_t)w->off + off, size, v);
    return p->io->bar_read(p->opaque, w->bar, p->info.bar_addr[w->bar], (uint64_t)w->off + off,
                           size, v);
}

static int winw(struct vio_pci_driver *p, const struct win *w, uint32_t off, unsigned size,
                uint64_t v)
{
    if (w->io)
        return p->io->io_write(p->opaque, w->bar, p->info.bar_addr[w->bar],
                               (uint64_t)w->off + off, size, v);
    return p->io->bar_write(p->opaque, w->bar, p->info.bar_addr[w->bar], (uint64_t)w->off + off,
                            size, v);
}

#define CC(f) offsetof(struct virtio_pci_common_cfg, f)

static int cr(struct vio_pci_driver *p, size_t off, unsigned size, uint64_t *v)
{
    return winr(p, &p->common, (uint32_t)off, size, v);
}

static int cw(struct vio_pci_driver *p, size_t off, unsigned size, uint64_t v)
{
    return winw(p, &p->common, (uint32_t)off, size, v);
}

/* A window as the shared driver sequences see it: 32-bit-or-narrower accesses. */
struct wregs {
    struct vio_pci_driver *p;
    const struct win *w;
};

static int wregs_rd(void *o, uint32_t off, unsigned size, uint32_t *v)
{
    struct wregs *x = o;
    uint64_t got = 0;
    int r = winr(x->p, x->w, off, size, &got);
    if (r == 0)
        *v = (uint32_t)got;
    return r;
}

static int wregs_wr(void *o, uint32_t off, unsigned size, uint32_t v)
{
    struct wregs *x = o;
    return winw(x->p, x->w, off, size, v);
}

static struct vio_drv_regs regs(struct wregs *x)
{
    return (struct vio_drv_regs){.rd = wregs_rd, .wr = wregs_wr, .o = x};
}

static uint32_t le(const uint8_t *c, unsigned off, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint32_t)c[off + i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------------------ */
/* probe                                                                     */

#define BAD(p, ...)                                                                       \
    do {                                                                                  \
        vio_logf((p)->log, (p)->log_opaque, VIO_LOG_WARN, "pci-driver", __VA_ARGS__);     \
        return -EPROTO;                                                                   \
    } while (0)

static int walk(struct vio_pci_driver *p, const uint8_t *c)
{
    uint8_t seen[CFG_SPACE / 4] = {0};
    unsigned ptr = c[PCI_CAPABILITY_LIST] & 0xfcu;
    while (ptr) {
        if (ptr < 0x40 || ptr > CFG_SPACE - 4)
            BAD(p, "capability pointer 0x%x outside [0x40, 0xfc]", ptr);
        if (seen[ptr / 4]++)
            BAD(p, "capability list loops at 0x%x", ptr);
        unsigned id = c[ptr], next = c[ptr + 1] & 0xfcu;
        if (id == PCI_CAP_ID_VNDR) {
            unsigned len = c[ptr + 2];
            if (len < sizeof(struct virtio_pci_cap) || ptr + len > CFG_SPACE)
                BAD(p, "vendor capability at 0x%x: length %u", ptr, len);
            unsigned type = c[ptr + 3], bar = c[ptr + 4];
            struct win w = {.present = true, .bar = (uint8_t)bar, .off = le(c, ptr + 8, 4),
                            .len = le(c, ptr + 12, 4)};
            struct win *dst = NULL;
            switch (type) {
            case VIRTIO_PCI_CAP_COMMON_CFG: dst = &p->common; break;
            case VIRTIO_PCI_CAP_NOTIFY_CFG: dst = &p->notify; break;
            case VIRTIO_PCI_CAP_ISR_CFG: dst = &p->isr; break;
            case VIRTIO_PCI_CAP_DEVICE_CFG: dst = &p->dev; break;
            default: break; /* PCI cfg access, shared memory, vendor: not used */
            }
            /* 4.1.4.1: reserved BAR values are ignored; the first usable one of a type wins */
            if (dst && bar <= 5 && !dst->present) {
                if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
                    if (len < sizeof(struct virtio_pci_notify_cap))
                        BAD(p, "notify capability at 0x%x: length %u", ptr, len);
                    uint32_t m = le(c, ptr + 16, 4);
                    /* 4.1.4.4: an even power of 2, or 0 */
                    if (m && (m & (m - 1) || m < 2))
                        BAD(p, "notify_off_multiplier %u", m);
                    p->info.notify_off_multiplier = m;
                }
                *dst = w;
            }
        } else if (id == PCI_CAP_ID_MSIX && !p->msix_cap) {
            if (ptr + PCI_CAP_MSIX_SIZEOF > CFG_SPACE)
                BAD(p, "MSI-X capability at 0x%x runs past the space", ptr);
            uint32_t table = le(c, ptr + PCI_MSIX_TABLE, 4);
            p->msix_cap = (uint8_t)ptr;
            p->msix_bar = table & PCI_MSIX_TABLE_BIR;
            p->msix_off = table & PCI_MSIX_TABLE_OFFSET;
            p->info.msix_vectors = (uint16_t)((le(c, ptr + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1);
            if (p->msix_bar > 5)
                BAD(p, "MSI-X table in BAR %u", p->msix_bar);
        }
        ptr = next;
    }
    return 0;
}

/* Size every BAR (memory decoding off meanwhile), assign the unassigned memory BARs that
 * are needed from the window, record bus addresses and sizes. */
static int size_bars(struct vio_pci_driver *p, const struct vio_pci_driver_config *cfg,
                     const bool need[6])
{
    uint32_t cmd;
    int r = cfgr(p, PCI_COMMAND, 2, &cmd);
    if (r < 0)
        return r;
    if ((r = cfgw(p, PCI_COMMAND, 2, cmd & ~(uint32_t)(PCI_COMMAND_MEMORY | PCI_COMMAND_IO))) < 0)
        return r;
    bool is_io[6] = {0};
    for (unsigned i = 0; i < 6; i++) {
        unsigned reg = PCI_BASE_ADDRESS_0 + 4 * i;
        uint32_t lo, mlo, hi = 0, mhi = 0xffffffffu;
        if ((r = cfgr(p, reg, 4, &lo)) < 0)
            return r;
        if (lo & PCI_BASE_ADDRESS_SPACE_IO) {
            is_io[i] = true;
            continue;
        }
        bool is64 = (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
        if (is64 && i == 5) {
            if (need[i])
                BAD(p, "64-bit BAR 5 has no upper half");
            continue;
        }
        if ((r = cfgw(p, reg, 4, 0xffffffffu)) < 0 || (r = cfgr(p, reg, 4, &mlo)) < 0 ||
            (r = cfgw(p, reg, 4, lo)) < 0)
            return r;
        if (is64) {
            if ((r = cfgr(p, reg + 4, 4, &hi)) < 0 || (r = cfgw(p, reg + 4, 4, 0xffffffffu)) < 0 ||
                (r = cfgr(p, reg + 4, 4, &mhi)) < 0 || (r = cfgw(p, reg + 4, 4, hi)) < 0)
                return r;
        }
        uint64_t mask = ((uint64_t)mhi << 32) | (mlo & PCI_BASE_ADDRESS_MEM_MASK);
        uint64_t size = mask ? ~mask + 1 : 0;
        /* a BAR's writable bits are contiguous from the top: anything else is nonsense */
        if ((mask & PCI_BASE_ADDRESS_MEM_MASK) == 0 || (size & (size - 1)) != 0 ||
            (!is64 && size > 0x80000000ull))
            size = 0;
        p->info.bar_size[i] = size;
        p->info.bar_addr[i] = (((uint64_t)hi << 32) | lo) & ~(uint64_t)0xf;
        if (is64) {
            i++;
            if (need[i])
                BAD(p, "a capability names BAR %u, the upper half of a 64-bit BAR", i);
        }
    }
    uint64_t cur = cfg->bar_window, end = cfg->bar_window + cfg->bar_window_size;
    for (unsigned i = 0; i < 6; i++) {
        if (!need[i])
            continue;
        if (is_io[i])
            BAD(p, "a capability names I/O BAR %u", i);
        uint64_t size = p->info.bar_size[i];
        if (!size)
            BAD(p, "BAR %u sizes to nonsense or is unimplemented", i);
        if (p->info.bar_addr[i])
            continue;
        if (!cfg->bar_window_size)
            goto nowin;
        cur = (cur + size - 1) & ~(size - 1);
        if (cur < cfg->bar_window || cur > end || end - cur < size)
            goto nowin;
        uint32_t lo;
        if ((r = cfgr(p, PCI_BASE_ADDRESS_0 + 4 * i, 4, &lo)) < 0)
            return r;
        bool is64 = (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
        if (!is64 && (cur >> 32))
            goto nowin;
        if ((r = cfgw(p, PCI_BASE_ADDRESS_0 + 4 * i, 4, (uint32_t)cur)) < 0)
            return r;
        if (is64 && (r = cfgw(p, PCI_BASE_ADDRESS_0 + 4 * i + 4, 4, (uint32_t)(cur >> 32))) < 0)
            return r;
        p->info.bar_addr[i] = cur;
        cur += size;
        continue;
    nowin:
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                 "BAR %u (%llu bytes) is unassigned and does not fit the window", i,
                 (unsigned long long)size);
        return -ENXIO;
    }
    return cfgw(p, PCI_COMMAND, 2, (cmd & ~(uint32_t)PCI_COMMAND_IO) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/* Legacy: size I/O BAR 0 (20..256 bytes, a power of 2), assign it from the I/O window when
 * it reads back 0, and turn I/O decoding on. */
static int legacy_io_bar(struct vio_pci_driver *p, const struct vio_pci_driver_config *cfg)
{
    const unsigned reg = PCI_BASE_ADDRESS_0;
    uint32_t lo, mask, cmd;
    int r;
    if ((r = cfgr(p, reg, 4, &lo)) < 0)
        return r;
    if (!(lo & PCI_BASE_ADDRESS_SPACE_IO))
        return -ENOTSUP;
    if ((r = cfgr(p, PCI_COMMAND, 2, &cmd)) < 0 ||
        (r = cfgw(p, PCI_COMMAND, 2, cmd & ~(uint32_t)PCI_COMMAND_IO)) < 0 ||
        (r = cfgw(p, reg, 4, 0xffffffffu)) < 0 || (r = cfgr(p, reg, 4, &mask)) < 0 ||
        (r = cfgw(p, reg, 4, lo)) < 0)
        return r;
    mask &= PCI_BASE_ADDRESS_IO_MASK;
    if (!(mask >> 16))
        mask |= 0xffff0000u; /* a 16-bit decoder */
    uint32_t size = ~mask + 1;
    if (!mask || (size & (size - 1)) || size < 20 || size > 256)
        BAD(p, "legacy I/O BAR 0 sizes to %u bytes", size);
    uint32_t base = lo & PCI_BASE_ADDRESS_IO_MASK;
    if (!base) {
        uint64_t cur = ((uint64_t)cfg->io_window + size - 1) & ~(uint64_t)(size - 1);
        uint64_t end = (uint64_t)cfg->io_window + cfg->io_window_size;
        if (!cfg->io_window_size || !cur || cur < cfg->io_window || cur > end ||
            end - cur < size ||
            cur + size > 0x10000u) {
            vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                     "legacy I/O BAR 0 (%u bytes) is unassigned and does not fit the I/O "
                     "window", size);
            return -ENXIO;
        }
        base = (uint32_t)cur;
        if ((r = cfgw(p, reg, 4, base)) < 0)
            return r;
    }
    /* x86 port I/O is 16 bits wide: a block past 0xffff cannot be reached */
    if ((uint64_t)base + size > 0x10000u)
        BAD(p, "legacy I/O BAR 0 at 0x%x (%u bytes) runs past the 64 KiB port space", base,
            size);
    p->info.bar_addr[0] = base;
    p->info.bar_size[0] = size;
    p->lw = (struct win){.present = true, .io = true, .bar = 0, .off = 0, .len = size};
    return cfgw(p, PCI_COMMAND, 2, cmd | PCI_COMMAND_IO | PCI_COMMAND_MASTER);
}

static int check_win(struct vio_pci_driver *p, const struct win *w, const char *what, uint32_t min)
{
    if (!w->present)
        return 0;
    if (w->len < min)
        BAD(p, "%s window of %u bytes (at least %u)", what, w->len, min);
    if ((uint64_t)w->off + w->len > p->info.bar_size[w->bar])
        BAD(p, "%s window [0x%x, +0x%x) beyond BAR %u (0x%llx bytes)", what, w->off, w->len,
            w->bar, (unsigned long long)p->info.bar_size[w->bar]);
    return 0;
}

void vio_pci_driver_free(struct vio_pci_driver *p)
{
    if (!p)
        return;
    free(p->q);
    free(p);
}

static void forget_queues(struct vio_pci_driver *p)
{
    for (unsigned i = 0; i < p->nq; i++) {
        p->q[i].max = UINT32_MAX;
        p->q[i].notify = UINT64_MAX;
        p->q[i].setup = false;
    }
}

static int legacy_count_queues(struct vio_pci_driver *p);

/* The rest of the probe of a legacy function (the caller walked the capabilities: MSI-X). */
static int legacy_probe(struct vio_pci_driver *p, const struct vio_pci_driver_config *cfg)
{
    bool need[6] = {0};
    if (p->msix_cap)
        need[p->msix_bar] = true;
    if (p->msix_cap && p->msix_bar == 0)
        BAD(p, "MSI-X table in the legacy I/O BAR 0");
    int r = size_bars(p, cfg, need); /* the MSI-X BAR (memory decoding on) */
    if (r < 0)
        return r;
    if ((r = legacy_io_bar(p, cfg)) < 0) {
        if (r == -ENOTSUP)
            vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                     "transitional function without an I/O BAR 0");
        return r;
    }
    if (p->msix_cap &&
        (uint64_t)p->msix_off + 16ull * p->info.msix_vectors > p->info.bar_size[p->msix_bar])
        BAD(p, "MSI-X table of %u entries beyond BAR %u", p->info.msix_vectors, p->msix_bar);
    p->legacy = true;
    p->info.notify_off_multiplier = 0;
    p->info.device_cfg_len = p->lw.len - VIRTIO_PCI_CONFIG_OFF(1);
    if ((r = legacy_count_queues(p)) < 0)
        return r;
    vio_logf(p->log, p->log_opaque, VIO_LOG_INFO, "pci-driver",
             "legacy virtio device %u (%04x:%04x), I/O BAR 0 at 0x%llx (%u bytes), %u queues, "
             "%u MSI-X vectors",
             p->info.virtio_id, p->info.vendor_id, p->info.device_id,
             (unsigned long long)p->info.bar_addr[0], p->lw.len, p->nq, p->info.msix_vectors);
    return 0;
}

int vio_pci_driver_new(const struct vio_pci_driver_config *cfg, struct vio_pci_driver **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    /* the fields from io_window on came later: a smaller struct_size leaves them 0 */
    if (!cfg || cfg->struct_size < offsetof(struct vio_pci_driver_config, io_window) ||
        !cfg->io || !cfg->io->cfg_read || !cfg->io->cfg_write || !cfg->io->bar_read ||
        !cfg->io->bar_write)
        return -EINVAL;
    struct vio_pci_driver_config cbuf = {0};
    memcpy(&cbuf, cfg, cfg->struct_size < sizeof(cbuf) ? cfg->struct_size : sizeof(cbuf));
    cfg = &cbuf;
    struct vio_pci_driver *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->io = cfg->io;
    p->opaque = cfg->io_opaque;
    p->log = cfg->log;
    p->log_opaque = cfg->log_opaque;

    uint8_t c[CFG_SPACE];
    int r = 0;
    for (unsigned off = 0; off < CFG_SPACE; off += 4) {
        uint32_t v;
        if ((r = cfgr(p, off, 4, &v)) < 0)
            goto fail;
        for (unsigned i = 0; i < 4; i++)
            c[off + i] = (uint8_t)(v >> (8 * i));
    }
    p->info.vendor_id = (uint16_t)le(c, PCI_VENDOR_ID, 2);
    p->info.device_id = (uint16_t)le(c, PCI_DEVICE_ID, 2);
    if (p->info.vendor_id != PCI_VENDOR_VIRTIO || p->info.device_id < 0x1000 ||
        p->info.device_id > 0x107f) {
        r = -ENODEV;
        goto fail;
    }
    p->info.virtio_id = p->info.device_id >= 0x1040 ? (uint16_t)(p->info.device_id - 0x1040)
                                                    : (uint16_t)le(c, PCI_SUBSYSTEM_ID, 2);
    if ((c[PCI_HEADER_TYPE] & 0x7f) != PCI_HEADER_TYPE_NORMAL) {
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver", "header type %u",
                 c[PCI_HEADER_TYPE]);
        r = -EPROTO;
        goto fail;
    }
    /* a legacy-only function may have no capability list at all */
    if ((le(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) && (r = walk(p, c)) < 0)
        goto fail;
    if (!p->common.present || !p->notify.present) {
        /* 4.1.2.3 / 4.1.4.10: a transitional function (ID 0x1000..0x103f, revision 0) has the
         * legacy register block in I/O BAR 0 */
        if (p->info.device_id >= 0x1040 || c[PCI_REVISION_ID] != 0 || !cfg->io->io_read ||
            !cfg->io->io_write) {
            vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                     "no modern common/notify capability and no usable legacy interface");
            r = -ENOTSUP;
            goto fail;
        }
        r = legacy_probe(p, cfg);
        if (r < 0)
            goto fail;
        *out = p;
        return 0;
    }
    bool need[6] = {0};
    need[p->common.bar] = need[p->notify.bar] = true;
    if (p->isr.present)
        need[p->isr.bar] = true;
    if (p->dev.present)
        need[p->dev.bar] = true;
    if (p->msix_cap)
        need[p->msix_bar] = true;
    if ((r = size_bars(p, cfg, need)) < 0)
        goto fail;
    if ((r = check_win(p, &p->common, "common", sizeof(struct virtio_pci_common_cfg))) < 0 ||
        (r = check_win(p, &p->notify, "notify", 2)) < 0 ||
        (r = check_win(p, &p->isr, "ISR", 1)) < 0 || (r = check_win(p, &p->dev, "device", 0)) < 0)
        goto fail;
    if (p->msix_cap &&
        (uint64_t)p->msix_off + 16ull * p->info.msix_vectors > p->info.bar_size[p->msix_bar]) {
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                 "MSI-X table of %u entries beyond BAR %u", p->info.msix_vectors, p->msix_bar);
        r = -EPROTO;
        goto fail;
    }
    p->info.device_cfg_len = p->dev.present ? p->dev.len : 0;
    uint64_t nq;
    if ((r = cr(p, CC(num_queues), 2, &nq)) < 0)
        goto fail;
    p->nq = (uint16_t)nq;
    p->q = calloc(p->nq ? p->nq : 1, sizeof(*p->q));
    if (!p->q) {
        r = -ENOMEM;
        goto fail;
    }
    forget_queues(p);
    vio_logf(p->log, p->log_opaque, VIO_LOG_INFO, "pci-driver",
             "virtio device %u (%04x:%04x), %u queues, notify multiplier %u, %u MSI-X vectors",
             p->info.virtio_id, p->info.vendor_id, p->info.device_id, p->nq,
             p->info.notify_off_multiplier, p->info.msix_vectors);
    *out = p;
    return 0;
fail:
    vio_pci_driver_free(p);
    return r;
}

int vio_pci_driver_info(const struct vio_pci_driver *p, struct vio_pci_driver_info *out)
{
    if (!p || !out)
        return -EINVAL;
    *out = p->info;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* generic ops                                                               */

static int p_get_features(void *o, uint64_t *f)
{
    struct wregs x = {o, &((struct vio_pci_driver *)o)->common};
    struct vio_drv_regs io = regs(&x);
    return vio_drv_features_get(&io, CC(device_feature_select), CC(device_feature), f);
}

static int p_set_features(void *o, uint64_t f)
{
    struct wregs x = {o, &((struct vio_pci_driver *)o)->common};
    struct vio_drv_regs io = regs(&x);
    return vio_drv_features_set(&io, CC(guest_feature_select), CC(guest_feature), f);
}

static int p_get_status(void *o, uint8_t *st)
{
    uint64_t v;
    if (!st)
        return -EINVAL;
    int r = cr(o, CC(device_status), 1, &v);
    if (r == 0)
        *st = (uint8_t)v;
    return r;
}

static int p_set_status(void *o, uint8_t st)
{
    return st ? cw(o, CC(device_status), 1, st) : -EINVAL;
}

static int p_reset(void *o)
{
    struct vio_pci_driver *p = o;
    int r = cw(p, CC(device_status), 1, 0);
    if (r < 0)
        return r;
    forget_queues(p);
    /* 4.1.4.3.2: the driver waits until device_status reads 0 */
    for (int i = 0; i < RESET_POLLS; i++) {
        uint64_t v;
        if ((r = cr(p, CC(device_status), 1, &v)) < 0)
            return r;
        if ((v & 0xff) == 0)
            return 0;
    }
    return -ETIMEDOUT;
}

/* Configuration bytes with naturally aligned accesses of at most 4 bytes. */
static int cfg_rw(struct vio_pci_driver *p, unsigned off, uint8_t *buf, unsigned len, bool wr)
{
    if (!buf)
        return -EINVAL;
    if (!p->dev.present)
        return -ENOTSUP;
    if ((uint64_t)off + len > p->dev.len)
        return -ERANGE;
    struct wregs x = {p, &p->dev};
    struct vio_drv_regs io = regs(&x);
    return vio_drv_config_rw(&io, 0, off, buf, len, wr);
}

static int p_config_read(void *o, unsigned off, void *buf, unsigned len)
{
    return cfg_rw(o, off, buf, len, false);
}

static int p_config_write(void *o, unsigned off, const void *buf, unsigned len)
{
    return cfg_rw(o, off, (uint8_t *)(uintptr_t)buf, len, true);
}

static int p_config_generation(void *o, uint32_t *gen)
{
    uint64_t v;
    if (!gen)
        return -EINVAL;
    int r = cr(o, CC(config_generation), 1, &v);
    if (r == 0)
        *gen = (uint8_t)v;
    return r;
}

static int p_num_queues(void *o)
{
    return ((struct vio_pci_driver *)o)->nq;
}

static int p_select(struct vio_pci_driver *p, unsigned idx)
{
    if (idx >= p->nq)
        return -ERANGE;
    return cw(p, CC(queue_select), 2, idx);
}

static int p_queue_max_size(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    int r = p_select(p, idx);
    if (r < 0)
        return r;
    if (p->q[idx].max == UINT32_MAX) {
        /* before the driver writes queue_size it holds the maximum (4.1.4.3) */
        uint64_t v;
        if ((r = cr(p, CC(queue_size), 2, &v)) < 0)
            return r;
        p->q[idx].max = (uint16_t)v;
    }
    return (int)p->q[idx].max;
}

static int p_queue_setup(void *o, unsigned idx, const struct vio_driver_queue *q)
{
    struct vio_pci_driver *p = o;
    if (!vio_drv_ring_ok(q))
        return -EINVAL;
    int max = p_queue_max_size(p, idx); /* also selects */
    if (max < 0)
        return max;
    if (q->size > (unsigned)max)
        return -ERANGE;
    static const uint32_t lo[3] = {CC(queue_desc_lo), CC(queue_avail_lo), CC(queue_used_lo)};
    struct wregs x = {p, &p->common};
    struct vio_drv_regs io = regs(&x);
    int r = vio_drv_queue_program(&io, CC(queue_enable), CC(queue_size), 2, lo, q);
    if (r < 0)
        return r;
    p->q[idx].setup = true;
    return 0;
}

static int p_queue_enable(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    int r = p_select(p, idx);
    if (r < 0)
        return r;
    if (!p->q[idx].setup)
        return -EINVAL; /* not set up since the last reset */
    uint64_t noff;
    if ((r = cr(p, CC(queue_notify_off), 2, &noff)) < 0)
        return r;
    uint64_t at = (noff & 0xffff) * p->info.notify_off_multiplier;
    /* 4.1.4.4: the address must lie inside the notify window (2 bytes written) */
    if (at + 2 > p->notify.len) {
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                 "queue %u: notify offset %llu x %u outside the %u-byte notify window", idx,
                 (unsigned long long)(noff & 0xffff), p->info.notify_off_multiplier, p->notify.len);
        return -EPROTO;
    }
    if ((r = cw(p, CC(queue_enable), 2, 1)) < 0)
        return r;
    p->q[idx].notify = at;
    return 0;
}

static int p_notify(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    if (idx >= p->nq)
        return -ERANGE;
    uint64_t at = p->q[idx].notify;
    if (at == UINT64_MAX)
        return -EINVAL;
    return winw(p, &p->notify, (uint32_t)at, 2, idx);
}

static int p_ack_interrupt(void *o)
{
    struct vio_pci_driver *p = o;
    if (!p->isr.present)
        return -ENOTSUP;
    uint64_t v;
    int r = winr(p, &p->isr, 0, 1, &v);
    return r < 0 ? r : (int)(v & (VIO_DRIVER_INT_VRING | VIO_DRIVER_INT_CONFIG));
}

static int vec_result(uint16_t want, uint64_t got)
{
    if ((got & 0xffff) == want)
        return 0;
    return (got & 0xffff) == VIO_DRIVER_NO_VECTOR ? -ENOSPC : -EPROTO;
}

static int p_set_config_vector(void *o, uint16_t vec)
{
    struct vio_pci_driver *p = o;
    if (!p->msix_cap)
        return -ENOTSUP;
    uint64_t v;
    int r;
    if ((r = cw(p, CC(msix_config), 2, vec)) < 0 || (r = cr(p, CC(msix_config), 2, &v)) < 0)
        return r;
    return vec_result(vec, v);
}

static int p_set_queue_vector(void *o, unsigned idx, uint16_t vec)
{
    struct vio_pci_driver *p = o;
    if (!p->msix_cap)
        return -ENOTSUP;
    uint64_t v;
    int r = p_select(p, idx);
    if (r < 0 || (r = cw(p, CC(queue_msix_vector), 2, vec)) < 0 ||
        (r = cr(p, CC(queue_msix_vector), 2, &v)) < 0)
        return r;
    return vec_result(vec, v);
}

static const struct vio_driver_ops pci_ops = {
    .get_features = p_get_features,
    .set_features = p_set_features,
    .get_status = p_get_status,
    .set_status = p_set_status,
    .reset = p_reset,
    .config_read = p_config_read,
    .config_write = p_config_write,
    .config_generation = p_config_generation,
    .num_queues = p_num_queues,
    .queue_max_size = p_queue_max_size,
    .queue_setup = p_queue_setup,
    .queue_enable = p_queue_enable,
    .notify = p_notify,
    .ack_interrupt = p_ack_interrupt,
    .set_config_vector = p_set_config_vector,
    .set_queue_vector = p_set_queue_vector,
};

/* ------------------------------------------------------------------------ */
/* legacy ops: the I/O BAR 0 register block                                  */

#define LQ_MAX 1024u /* QEMU's VIRTIO_QUEUE_MAX: more queues than any legacy device has */

static int lr(struct vio_pci_driver *p, uint32_t off, unsigned size, uint64_t *v)
{
    uint64_t x = 0;
    int r = winr(p, &p->lw, off, size, &x);
    *v = r == 0 ? x & (size == 4 ? 0xffffffffu : size == 2 ? 0xffffu : 0xffu) : 0;
    return r;
}

static int lwr(struct vio_pci_driver *p, uint32_t off, unsigned size, uint64_t v)
{
    return winw(p, &p->lw, off, size, v);
}

/* Queues are counted by selecting them until QUEUE_NUM reads 0 (legacy has no num_queues). */
static int legacy_count_queues(struct vio_pci_driver *p)
{
    unsigned n = 0;
    for (; n < LQ_MAX; n++) {
        uint64_t num;
        int r;
        if ((r = lwr(p, VIRTIO_PCI_QUEUE_SEL, 2, n)) < 0 ||
            (r = lr(p, VIRTIO_PCI_QUEUE_NUM, 2, &num)) < 0)
            return r;
        if (!num)
            break;
    }
    p->nq = (uint16_t)n;
    p->q = calloc(n ? n : 1, sizeof(*p->q));
    if (!p->q)
        return -ENOMEM;
    forget_queues(p);
    return 0;
}

static int l_get_features(void *o, uint64_t *f)
{
    uint64_t v;
    if (!f)
        return -EINVAL;
    int r = lr(o, VIRTIO_PCI_HOST_FEATURES, 4, &v);
    if (r == 0)
        *f = v; /* 32 bits */
    return r;
}

static int l_set_features(void *o, uint64_t f)
{
    if (f >> 32)
        return -EINVAL; /* the legacy interface has 32 feature bits */
    return lwr(o, VIRTIO_PCI_GUEST_FEATURES, 4, f);
}

static int l_get_status(void *o, uint8_t *st)
{
    uint64_t v;
    if (!st)
        return -EINVAL;
    int r = lr(o, VIRTIO_PCI_STATUS, 1, &v);
    if (r == 0)
        *st = (uint8_t)v;
    return r;
}

static int l_set_status(void *o, uint8_t st)
{
    return st ? lwr(o, VIRTIO_PCI_STATUS, 1, st) : -EINVAL;
}

static int l_reset(void *o)
{
    struct vio_pci_driver *p = o;
    int r = lwr(p, VIRTIO_PCI_STATUS, 1, 0);
    if (r < 0)
        return r;
    forget_queues(p);
    for (unsigned i = 0; i < p->nq; i++)
        p->q[i].pfn = 0;
    /* Linux's vp_legacy_reset reads the status back to flush the write */
    for (int i = 0; i < RESET_POLLS; i++) {
        uint64_t v;
        if ((r = lr(p, VIRTIO_PCI_STATUS, 1, &v)) < 0)
            return r;
        if (v == 0)
            return 0;
    }
    return -ETIMEDOUT;
}

/* The device config follows the vectors only while MSI-X is on (4.1.4.10). */
static int l_cfg_rw(struct vio_pci_driver *p, unsigned off, uint8_t *buf, unsigned len, bool wr)
{
    if (!buf)
        return -EINVAL;
    uint32_t at = VIRTIO_PCI_CONFIG_OFF(p->msix_on);
    if ((uint64_t)off + len > p->lw.len - at)
        return -ERANGE;
    struct win w = p->lw;
    w.off = at;
    w.len = p->lw.len - at;
    struct wregs x = {p, &w};
    struct vio_drv_regs io = regs(&x);
    return vio_drv_config_rw(&io, 0, off, buf, len, wr);
}

static int l_config_read(void *o, unsigned off, void *buf, unsigned len)
{
    return l_cfg_rw(o, off, buf, len, false);
}

static int l_config_write(void *o, unsigned off, const void *buf, unsigned len)
{
    return l_cfg_rw(o, off, (uint8_t *)(uintptr_t)buf, len, true);
}

static int l_select(struct vio_pci_driver *p, unsigned idx)
{
    if (idx >= p->nq)
        return -ERANGE;
    return lwr(p, VIRTIO_PCI_QUEUE_SEL, 2, idx);
}

static int l_queue_max_size(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    int r = l_select(p, idx);
    if (r < 0)
        return r;
    if (p->q[idx].max == UINT32_MAX) {
        uint64_t v;
        if ((r = lr(p, VIRTIO_PCI_QUEUE_NUM, 2, &v)) < 0)
            return r;
        p->q[idx].max = (uint16_t)v;
    }
    return (int)p->q[idx].max;
}

/* The legacy ring layout: descriptors page-aligned, avail right after them, used at the next
 * 4096 boundary after avail's used_event; the size is QUEUE_NUM, which the driver cannot
 * change. */
static int l_queue_setup(void *o, unsigned idx, const struct vio_driver_queue *q)
{
    struct vio_pci_driver *p = o;
    if (!vio_drv_ring_ok(q))
        return -EINVAL;
    int max = l_queue_max_size(p, idx); /* selects */
    if (max < 0)
        return max;
    if (q->size != (unsigned)max)
        return -ERANGE;
    uint64_t end = q->driver + 6 + 2ull * q->size;
    if ((q->desc % VIRTIO_PCI_VRING_ALIGN) ||
        (q->desc >> VIRTIO_PCI_QUEUE_ADDR_SHIFT) > UINT32_MAX ||
        q->driver != q->desc + 16ull * q->size ||
        q->device != ((end + VIRTIO_PCI_VRING_ALIGN - 1) & ~(uint64_t)(VIRTIO_PCI_VRING_ALIGN - 1)))
        return -EINVAL;
    uint64_t cur;
    int r = lr(p, VIRTIO_PCI_QUEUE_PFN, 4, &cur);
    if (r < 0)
        return r;
    if (cur)
        return -EBUSY;
    p->q[idx].pfn = (uint32_t)(q->desc >> VIRTIO_PCI_QUEUE_ADDR_SHIFT);
    p->q[idx].setup = true;
    return 0;
}

static int l_queue_enable(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    int r = l_select(p, idx);
    if (r < 0)
        return r;
    if (!p->q[idx].setup)
        return -EINVAL;
    uint64_t back;
    if ((r = lwr(p, VIRTIO_PCI_QUEUE_PFN, 4, p->q[idx].pfn)) < 0 ||
        (r = lr(p, VIRTIO_PCI_QUEUE_PFN, 4, &back)) < 0)
        return r;
    if (back != p->q[idx].pfn) {
        vio_logf(p->log, p->log_opaque, VIO_LOG_WARN, "pci-driver",
                 "queue %u: QUEUE_PFN reads 0x%llx after 0x%x was written", idx,
                 (unsigned long long)back, p->q[idx].pfn);
        return -EPROTO;
    }
    p->q[idx].notify = VIRTIO_PCI_QUEUE_NOTIFY;
    return 0;
}

static int l_notify(void *o, unsigned idx)
{
    struct vio_pci_driver *p = o;
    if (idx >= p->nq)
        return -ERANGE;
    if (p->q[idx].notify == UINT64_MAX)
        return -EINVAL;
    return lwr(p, VIRTIO_PCI_QUEUE_NOTIFY, 2, idx);
}

static int l_ack_interrupt(void *o)
{
    uint64_t v;
    int r = lr(o, VIRTIO_PCI_ISR, 1, &v);
    return r < 0 ? r : (int)(v & (VIO_DRIVER_INT_VRING | VIO_DRIVER_INT_CONFIG));
}

static int l_set_config_vector(void *o, uint16_t vec)
{
    struct vio_pci_driver *p = o;
    if (!p->msix_cap)
        return -ENOTSUP;
    if (!p->msix_on)
        return -EINVAL; /* the register exists only while MSI-X is enabled */
    uint64_t v;
    int r;
    if ((r = lwr(p, VIRTIO_MSI_CONFIG_VECTOR, 2, vec)) < 0 ||
        (r = lr(p, VIRTIO_MSI_CONFIG_VECTOR, 2, &v)) < 0)
        return r;
    return vec_result(vec, v);
}

static int l_set_queue_vector(void *o, unsigned idx, uint16_t vec)
{
    struct vio_pci_driver *p = o;
    if (!p->msix_cap)
        return -ENOTSUP;
    if (!p->msix_on)
        return -EINVAL;
    uint64_t v;
    int r = l_select(p, idx);
    if (r < 0 || (r = lwr(p, VIRTIO_MSI_QUEUE_VECTOR, 2, vec)) < 0 ||
        (r = lr(p, VIRTIO_MSI_QUEUE_VECTOR, 2, &v)) < 0)
        return r;
    return vec_result(vec, v);
}

static const struct vio_driver_ops pci_legacy_ops = {
    .flags = VIO_DRIVER_LEGACY,
    .get_features = l_get_features,
    .set_features = l_set_features,
    .get_status = l_get_status,
    .set_status = l_set_status,
    .reset = l_reset,
    .config_read = l_config_read,
    .config_write = l_config_write,
    .num_queues = p_num_queues,
    .queue_max_size = l_queue_max_size,
    .queue_setup = l_queue_setup,
    .queue_enable = l_queue_enable,
    .notify = l_notify,
    .ack_interrupt = l_ack_interrupt,
    .set_config_vector = l_set_config_vector,
    .set_queue_vector = l_set_queue_vector,
};

struct vio_driver vio_pci_driver_get(struct vio_pci_driver *p)
{
    return (struct vio_driver){.ops = !p ? NULL : p->legacy ? &pci_legacy_ops : &pci_ops,
                               .opaque = p};
}

int vio_pci_driver_msix_set_entry(struct vio_pci_driver *p, uint16_t vec, uint64_t addr,
                                  uint32_t data, bool masked)
{
    if (!p)
        return -EINVAL;
    if (!p->msix_cap)
        return -ENOTSUP;
    if (vec >= p->info.msix_vectors)
        return -ERANGE;
    struct win t = {.present = true, .bar = p->msix_bar, .off = p->msix_off + 16u * vec, .len = 16};
    int r;
    if ((r = winw(p, &t, PCI_MSIX_ENTRY_LOWER_ADDR, 4, (uint32_t)addr)) < 0 ||
        (r = winw(p, &t, PCI_MSIX_ENTRY_UPPER_ADDR, 4, addr >> 32)) < 0 ||
        (r = winw(p, &t, PCI_MSIX_ENTRY_DATA, 4, data)) < 0 ||
        (r = winw(p, &t, PCI_MSIX_ENTRY_VECTOR_CTRL, 4, masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0)) < 0)
        return r;
    return 0;
}

int vio_pci_driver_msix_enable(struct vio_pci_driver *p, bool enable)
{
    if (!p)
        return -EINVAL;
    if (!p->msix_cap)
        return -ENOTSUP;
    uint32_t ctrl;
    int r = cfgr(p, p->msix_cap + PCI_MSIX_FLAGS, 2, &ctrl);
    if (r < 0)
        return r;
    ctrl &= ~(uint32_t)(PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE);
    if (enable)
        ctrl |= PCI_MSIX_FLAGS_ENABLE;
    if ((r = cfgw(p, p->msix_cap + PCI_MSIX_FLAGS, 2, ctrl)) < 0)
        return r;
    p->msix_on = enable; /* legacy: where the device config sits */
    return 0;
}
