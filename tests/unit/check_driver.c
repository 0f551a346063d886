/* SPDX-License-Identifier: MIT */
/*
 * Suite "driver": the driver seat (virtio/driver.h) against fake devices in the test:
 * a virtio-PCI modern function (configuration space with BAR sizing, a common
 * configuration with select registers, notify / ISR / device windows, an MSI-X table) and
 * a virtio-MMIO v2 window. Hostile capability lists and register values get exact errnos.
 * The legacy PCI seat (VIO_DRIVER_LEGACY over I/O BAR 0) runs against our own transitional
 * device side (vio_pci + the virtio-net model on a loopback backend) with the modern
 * capabilities hidden, moving frames, and against that device made hostile.
 * QEMU's real models are exercised by tests/integration/driver_qtest.c.
 */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_pci.h>

#include "arena.h"
#include "net_transport.h"
#include "virtio/driver.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/pci.h"
#include "virtio/status.h"

#define V1 ((uint64_t)1 << VIO_F_VERSION_1)
#define CC(f) offsetof(struct virtio_pci_common_cfg, f)

/* ------------------------------------------------------------------------ */
/* fake PCI function                                                         */

#define NQ 3
#define BAR4_SIZE 0x4000u
#define BAR1_SIZE 0x1000u

struct fpq {
    uint16_t size, max, vec, enable, noff;
    uint32_t addr[6];
};

struct fake_pci {
    uint8_t cfg[256];
    uint64_t bar_size[6];
    uint8_t bar_flags[6];
    uint8_t bar4[BAR4_SIZE];
    uint8_t bar1[BAR1_SIZE];
    uint64_t dev_features, drv_features;
    uint32_t dfsel, gfsel;
    uint16_t qsel, msix_config, nvec;
    uint8_t status, isr;
    bool refuse_features, stuck_status;
    struct fpq q[NQ];
    unsigned notifies, last_notify_off, last_notify_val;
    unsigned cfg_reads;
};

static void put(uint8_t *p, unsigned off, unsigned n, uint64_t v)
{
    for (unsigned i = 0; i < n; i++)
        p[off + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p, unsigned off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[off + i] << (8 * i);
    return v;
}

static int f_cfg_read(void *o, unsigned off, unsigned size, uint32_t *v)
{
    struct fake_pci *f = o;
    ck_assert_uint_lt(off + size - 1, 256);
    f->cfg_reads++;
    *v = (uint32_t)get(f->cfg, off, size);
    return 0;
}

static int f_cfg_write(void *o, unsigned off, unsigned size, uint32_t v)
{
    struct fake_pci *f = o;
    ck_assert_uint_lt(off + size - 1, 256);
    if (off >= PCI_BASE_ADDRESS_0 && off < PCI_BASE_ADDRESS_5 + 4 && size == 4) {
        unsigned i = (off - PCI_BASE_ADDRESS_0) / 4;
        /* the upper half of a 64-bit BAR */
        if (i > 0 && (f->bar_flags[i - 1] & 6) == 4 && f->bar_size[i - 1]) {
            v &= (uint32_t)(~(f->bar_size[i - 1] - 1) >> 32);
        } else if (f->bar_size[i]) {
            v = (v & (uint32_t)~(f->bar_size[i] - 1) & ~0xfu) | f->bar_flags[i];
        } else {
            v = 0;
        }
    }
    put(f->cfg, off, size, v);
    return 0;
}

static void load_q(struct fake_pci *f)
{
    uint8_t *c = f->bar4;
    if (f->qsel >= NQ) {
        put(c, CC(queue_size), 2, 0);
        put(c, CC(queue_enable), 2, 0);
        return;
    }
    struct fpq *q = &f->q[f->qsel];
    put(c, CC(queue_size), 2, q->size);
    put(c, CC(queue_msix_vector), 2, q->vec);
    put(c, CC(queue_enable), 2, q->enable);
    put(c, CC(queue_notify_off), 2, q->noff);
    for (unsigned i = 0; i < 6; i++)
        put(c, CC(queue_desc_lo) + 4 * i, 4, q->addr[i]);
}

static void fake_reset(struct fake_pci *f)
{
    f->status = 0;
    f->drv_features = 0;
    f->msix_config = VIO_DRIVER_NO_VECTOR;
    for (unsigned i = 0; i < NQ; i++) {
        struct fpq *q = &f->q[i];
        uint16_t noff = q->noff, max = q->max;
        memset(q, 0, sizeof(*q));
        q->noff = noff;
        q->max = max;
        q->size = max;
        q->vec = VIO_DRIVER_NO_VECTOR;
    }
    load_q(f);
}

static uint16_t vec_ok(struct fake_pci *f, uint16_t v)
{
    return v == VIO_DRIVER_NO_VECTOR || v < f->nvec ? v : VIO_DRIVER_NO_VECTOR;
}

static void common_write(struct fake_pci *f, unsigned off, uint64_t v)
{
    struct fpq *q = f->qsel < NQ ? &f->q[f->qsel] : NULL;
    if (off == CC(device_feature_select))
        f->dfsel = (uint32_t)v;
    else if (off == CC(guest_feature_select))
        f->gfsel = (uint32_t)v;
    else if (off == CC(guest_feature) && f->gfsel < 2)
        f->drv_features = (f->drv_features & ~(0xffffffffull << (32 * f->gfsel))) | (v << (32 * f->gfsel));
    else if (off == CC(msix_config))
        f->msix_config = vec_ok(f, (uint16_t)v);
    else if (off == CC(device_status)) {
        if (v == 0 && f->stuck_status)
            return; /* a device that never finishes its reset */
        if (v == 0)
            fake_reset(f);
        else {
            f->status = (uint8_t)v;
            if (f->refuse_features)
                f->status &= (uint8_t)~VIO_S_FEATURES_OK;
        }
    } else if (off == CC(queue_select))
        f->qsel = (uint16_t)v;
    else if (q && off == CC(queue_size))
        q->size = (uint16_t)v;
    else if (q && off == CC(queue_msix_vector))
        q->vec = vec_ok(f, (uint16_t)v);
    else if (q && off == CC(queue_enable))
        q->enable = (uint16_t)v;
    else if (q && off >= CC(queue_desc_lo) && off < CC(queue_used_hi) + 4)
        q->addr[(off - CC(queue_desc_lo)) / 4] = (uint32_t)v;
}

static int f_bar_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t *v)
{
    struct fake_pci *f = o;
    ck_assert_uint_eq(base, get(f->cfg, PCI_BASE_ADDRESS_0 + 4 * bar, 4) & ~0xfull);
    if (bar == 1) {
        ck_assert_uint_le(off + size, BAR1_SIZE);
        *v = get(f->bar1, (unsigned)off, size);
        return 0;
    }
    ck_assert_uint_eq(bar, 4);
    ck_assert_uint_le(off + size, BAR4_SIZE);
    if (off < 0x38) {
        f->bar4[CC(device_feature)] = 0;
        put(f->bar4, CC(device_feature), 4, f->dfsel < 2 ? f->dev_features >> (32 * f->dfsel) : 0);
        put(f->bar4, CC(msix_config), 2, f->msix_config);
        put(f->bar4, CC(num_queues), 2, NQ);
        f->bar4[CC(device_status)] = f->status;
        load_q(f);
    }
    *v = get(f->bar4, (unsigned)off, size);
    if (off == 0x1000) { /* ISR: read to clear */
        *v = f->isr;
        f->isr = 0;
    }
    return 0;
}

static int f_bar_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t v)
{
    struct fake_pci *f = o;
    ck_assert_uint_eq(base, get(f->cfg, PCI_BASE_ADDRESS_0 + 4 * bar, 4) & ~0xfull);
    if (bar == 1) {
        ck_assert_uint_le(off + size, BAR1_SIZE);
        put(f->bar1, (unsigned)off, size, v);
        return 0;
    }
    ck_assert_uint_eq(bar, 4);
    ck_assert_uint_le(off + size, BAR4_SIZE);
    if (off < 0x38) {
        common_write(f, (unsigned)off, v);
        return 0;
    }
    if (off >= 0x3000) {
        f->notifies++;
        f->last_notify_off = (unsigned)off - 0x3000;
        f->last_notify_val = (unsigned)v;
        return 0;
    }
    put(f->bar4, (unsigned)off, size, v);
    return 0;
}

static const struct vio_pci_driver_io fio = {f_cfg_read, f_cfg_write, f_bar_read, f_bar_write};

static void vcap(struct fake_pci *f, unsigned at, unsigned next, unsigned len, unsigned type,
                 unsigned bar, uint32_t off, uint32_t length)
{
    f->cfg[at] = PCI_CAP_ID_VNDR;
    f->cfg[at + 1] = (uint8_t)next;
    f->cfg[at + 2] = (uint8_t)len;
    f->cfg[at + 3] = (uint8_t)type;
    f->cfg[at + 4] = (uint8_t)bar;
    put(f->cfg, at + 8, 4, off);
    put(f->cfg, at + 12, 4, length);
}

/* QEMU-like layout: caps at 0x40 (MSI-X) 0x50 common 0x60 ISR 0x70 device 0x80 notify */
static void fake_init(struct fake_pci *f)
{
    memset(f, 0, sizeof(*f));
    put(f->cfg, PCI_VENDOR_ID, 2, 0x1af4);
    put(f->cfg, PCI_DEVICE_ID, 2, 0x1041);
    put(f->cfg, PCI_STATUS, 2, PCI_STATUS_CAP_LIST);
    f->cfg[PCI_CAPABILITY_LIST] = 0x40;
    f->cfg[0x40] = PCI_CAP_ID_MSIX;
    f->cfg[0x41] = 0x50;
    f->nvec = 4;
    put(f->cfg, 0x42, 2, f->nvec - 1);
    put(f->cfg, 0x44, 4, 1);          /* table in BAR 1 at 0 */
    put(f->cfg, 0x48, 4, 0x800 | 1);  /* PBA */
    vcap(f, 0x50, 0x60, 16, VIRTIO_PCI_CAP_COMMON_CFG, 4, 0, 0x1000);
    vcap(f, 0x60, 0x70, 16, VIRTIO_PCI_CAP_ISR_CFG, 4, 0x1000, 0x1000);
    vcap(f, 0x70, 0x80, 16, VIRTIO_PCI_CAP_DEVICE_CFG, 4, 0x2000, 0x100);
    vcap(f, 0x80, 0x00, 20, VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0x3000, 0x1000);
    put(f->cfg, 0x90, 4, 4); /* multiplier */
    f->bar_size[1] = BAR1_SIZE;
    f->bar_flags[1] = 0;
    f->bar_size[4] = BAR4_SIZE;
    f->bar_flags[4] = 4 | 8; /* 64-bit prefetchable */
    put(f->cfg, PCI_BASE_ADDRESS_1, 4, 0);
    put(f->cfg, PCI_BASE_ADDRESS_4, 4, 4 | 8);
    f->dev_features = V1 | (1u << 5) | (1u << 16);
    for (unsigned i = 0; i < NQ; i++) {
        f->q[i].max = 256;
        f->q[i].noff = (uint16_t)i;
    }
    fake_reset(f);
    for (unsigned i = 0; i < 6; i++)
        put(f->bar4, 0x2000 + i, 1, 0x50 + i); /* "MAC" */
}

static int probe(struct fake_pci *f, uint64_t window, struct vio_pci_driver **p)
{
    struct vio_pci_driver_config c = {.struct_size = sizeof(c), .io = &fio, .io_opaque = f,
                                      .bar_window = window, .bar_window_size = window ? 0x100000 : 0};
    return vio_pci_driver_new(&c, p);
}

START_TEST(test_pci_probe)
{
    struct fake_pci *f = calloc(1, sizeof(*f));
    fake_init(f);
    struct vio_pci_driver *p = NULL;
    ck_assert_int_eq(probe(f, 0xe0000000u, &p), 0);
    struct vio_pci_driver_info in;
    ck_assert_int_eq(vio_pci_driver_info(p, &in), 0);
    ck_assert_uint_eq(in.virtio_id, 1);
    ck_assert_uint_eq(in.msix_vectors, 4);
    ck_assert_uint_eq(in.notify_off_multiplier, 4);
    ck_assert_uint_eq(in.device_cfg_len, 0x100);
    ck_assert_uint_eq(in.bar_size[1], BAR1_SIZE);
    ck_assert_uint_eq(in.bar_size[4], BAR4_SIZE);
    ck_assert_uint_eq(in.bar_size[0], 0);
    /* assigned naturally aligned, bottom-up, both inside the window */
    ck_assert_uint_eq(in.bar_addr[1], 0xe0000000u);
    ck_assert_uint_eq(in.bar_addr[4], 0xe0004000u);
    ck_assert_uint_eq(get(f->cfg, PCI_BASE_ADDRESS_4, 4), 0xe0004000u | 0xc);
    ck_assert_uint_eq(get(f->cfg, PCI_COMMAND, 2) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
                      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

    struct vio_driver d = vio_pci_driver_get(p);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&d, 1u << 5, &feat), 0);
    ck_assert_uint_eq(feat, V1 | (1u << 5));
    ck_assert_uint_eq(f->drv_features, V1 | (1u << 5));
    ck_assert_uint_eq(f->status, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);

    uint8_t mac[6];
    ck_assert_int_eq(vio_driver_config_read_stable(&d, 0, mac, 6), 0);
    ck_assert_uint_eq(mac[0], 0x50);
    ck_assert_uint_eq(mac[5], 0x55);
    ck_assert_int_eq(vio_driver_config_read(&d, 0xfc, mac, 6), -ERANGE);
    ck_assert_int_eq(vio_driver_config_read(&d, 0xffffffffu, mac, 2), -ERANGE);

    ck_assert_int_eq(vio_driver_num_queues(&d), NQ);
    ck_assert_int_eq(vio_driver_queue_max_size(&d, 2), 256);
    ck_assert_int_eq(vio_driver_queue_max_size(&d, NQ), -ERANGE);
    struct vio_driver_queue q = {.size = 128, .desc = 0x10000, .driver = 0x11000, .device = 0x1100000004ull};
    ck_assert_int_eq(vio_driver_notify(&d, 2), -EINVAL); /* not enabled */
    ck_assert_int_eq(vio_driver_queue_enable(&d, 2), -EINVAL); /* not set up */
    ck_assert_int_eq(vio_driver_queue_setup(&d, 2, &q), 0);
    ck_assert_uint_eq(f->q[2].size, 128);
    ck_assert_uint_eq(f->q[2].addr[0], 0x10000);
    ck_assert_uint_eq(f->q[2].addr[4], 4);
    ck_assert_uint_eq(f->q[2].addr[5], 0x11);
    ck_assert_int_eq(vio_driver_queue_enable(&d, 2), 0);
    ck_assert_uint_eq(f->q[2].enable, 1);
    ck_assert_int_eq(vio_driver_queue_setup(&d, 2, &q), -EBUSY);
    ck_assert_int_eq(vio_driver_notify(&d, 2), 0);
    ck_assert_uint_eq(f->notifies, 1);
    ck_assert_uint_eq(f->last_notify_off, 2 * 4); /* queue_notify_off x multiplier */
    ck_assert_uint_eq(f->last_notify_val, 2);
    ck_assert_int_eq(vio_driver_notify(&d, NQ), -ERANGE);

    /* MSI-X: accepted vectors read back; the device refuses one beyond its table */
    ck_assert_int_eq(vio_driver_set_queue_vector(&d, 2, 3), 0);
    ck_assert_int_eq(vio_driver_set_queue_vector(&d, 2, 4), -ENOSPC);
    ck_assert_int_eq(vio_driver_set_config_vector(&d, 0), 0);
    ck_assert_int_eq(vio_driver_set_config_vector(&d, 77), -ENOSPC);
    ck_assert_int_eq(vio_pci_driver_msix_set_entry(p, 3, 0xfee01000u, 0x41, false), 0);
    ck_assert_uint_eq(get(f->bar1, 48, 4), 0xfee01000u);
    ck_assert_uint_eq(get(f->bar1, 56, 4), 0x41);
    ck_assert_int_eq(vio_pci_driver_msix_set_entry(p, 4, 0, 0, false), -ERANGE);
    ck_assert_int_eq(vio_pci_driver_msix_enable(p, true), 0);
    ck_assert_uint_eq(get(f->cfg, 0x42, 2) & PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_ENABLE);

    f->isr = 3;
    ck_assert_int_eq(vio_driver_ack_interrupt(&d), 3);
    ck_assert_int_eq(vio_driver_ack_interrupt(&d), 0);

    ck_assert_int_eq(vio_driver_reset(&d), 0);
    ck_assert_uint_eq(f->q[2].enable, 0);
    ck_assert_int_eq(vio_driver_notify(&d, 2), -EINVAL); /* forgotten at reset */
    f->stuck_status = true;
    ck_assert_int_eq(vio_driver_set_status(&d, VIO_S_ACKNOWLEDGE), 0);
    ck_assert_int_eq(vio_driver_reset(&d), -ETIMEDOUT);
    vio_pci_driver_free(p);
    free(f);
}
END_TEST

START_TEST(test_pci_bad_queue_regs)
{
    struct fake_pci *f = calloc(1, sizeof(*f));
    fake_init(f);
    f->q[1].noff = 0x400; /* 0x400 * 4 = 0x1000: past the 0x1000-byte notify window */
    struct vio_pci_driver *p = NULL;
    ck_assert_int_eq(probe(f, 0xe0000000u, &p), 0);
    struct vio_driver d = vio_pci_driver_get(p);
    ck_assert_int_eq(vio_driver_negotiate(&d, 0, NULL), 0);
    struct vio_driver_queue q = {.size = 256, .desc = 0x10000, .driver = 0x11000, .device = 0x12000};
    ck_assert_int_eq(vio_driver_queue_setup(&d, 1, &q), 0);
    ck_assert_int_eq(vio_driver_queue_enable(&d, 1), -EPROTO);
    ck_assert_uint_eq(f->q[1].enable, 0);
    ck_assert_int_eq(vio_driver_notify(&d, 1), -EINVAL);
    /* sizes and alignment */
    q.size = 512;
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -ERANGE);
    q.size = 96;
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -EINVAL);
    q.size = 64;
    q.desc = 0x10008;
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -EINVAL);
    q.desc = 0x10000;
    q.device = 0x12002;
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -EINVAL);
    /* a device that refuses the subset */
    f->refuse_features = true;
    ck_assert_int_eq(vio_driver_negotiate(&d, 0, NULL), -EPROTO);
    ck_assert_uint_eq(f->status & VIO_S_FAILED, VIO_S_FAILED);
    f->refuse_features = false;
    f->dev_features = 1u << 5; /* no VERSION_1 */
    ck_assert_int_eq(vio_driver_negotiate(&d, 0, NULL), -ENOTSUP);
    vio_pci_driver_free(p);
    free(f);
}
END_TEST

/* Hostile configuration spaces: each must be refused with exactly this errno. */
struct bad_pci {
    const char *what;
    void (*mut)(struct fake_pci *f);
    uint64_t window;
    int err;
};

static void m_loop_self(struct fake_pci *f) { f->cfg[0x81] = 0x80; }
static void m_loop_two(struct fake_pci *f) { f->cfg[0x81] = 0x50; }
static void m_ptr_header(struct fake_pci *f) { f->cfg[0x81] = 0x20; }
static void m_ptr_first_header(struct fake_pci *f) { f->cfg[PCI_CAPABILITY_LIST] = 0x3c; }
static void m_cap_past_end(struct fake_pci *f) { f->cfg[0x81] = 0xf8; vcap(f, 0xf8, 0, 8, 0, 0, 0, 0); f->cfg[0xfa] = 16; }
static void m_cap_short(struct fake_pci *f) { f->cfg[0x52] = 8; }
static void m_notify_short(struct fake_pci *f) { f->cfg[0x82] = 16; }
static void m_common_beyond_bar(struct fake_pci *f) { put(f->cfg, 0x58, 4, 0x3800); }
static void m_common_overflow(struct fake_pci *f) { put(f->cfg, 0x58, 4, 0xfffffff0u); put(f->cfg, 0x5c, 4, 0x100); }
static void m_common_too_small(struct fake_pci *f) { put(f->cfg, 0x5c, 4, 0x20); }
static void m_mult_odd(struct fake_pci *f) { put(f->cfg, 0x90, 4, 3); }
static void m_mult_one(struct fake_pci *f) { put(f->cfg, 0x90, 4, 1); }
static void m_io_bar(struct fake_pci *f) { f->bar_flags[4] = 1; put(f->cfg, PCI_BASE_ADDRESS_4, 4, 1); f->bar_size[4] = 0x100; }
static void m_bar_unimpl(struct fake_pci *f) { f->bar_size[4] = 0; put(f->cfg, PCI_BASE_ADDRESS_4, 4, 0); f->bar_flags[4] = 0; }
static void m_upper_half(struct fake_pci *f) { f->cfg[0x54] = 5; f->cfg[0x64] = 5; f->cfg[0x74] = 5; f->cfg[0x84] = 5; }
static void m_msix_beyond(struct fake_pci *f) { put(f->cfg, 0x42, 2, 0x7ff); }
static void m_msix_bir(struct fake_pci *f) { put(f->cfg, 0x44, 4, 6); }
static void m_no_common(struct fake_pci *f) { f->cfg[0x53] = 0x7; }
static void m_reserved_bar(struct fake_pci *f) { f->cfg[0x54] = 7; }
static void m_no_caplist(struct fake_pci *f) { put(f->cfg, PCI_STATUS, 2, 0); }
static void m_vendor(struct fake_pci *f) { put(f->cfg, PCI_VENDOR_ID, 2, 0x8086); }
static void m_devid(struct fake_pci *f) { put(f->cfg, PCI_DEVICE_ID, 2, 0x1100); }
static void m_bridge(struct fake_pci *f) { f->cfg[PCI_HEADER_TYPE] = 1; }
static void m_none(struct fake_pci *f) { (void)f; }

static const struct bad_pci bad_pci[] = {
    {"capability pointing at itself", m_loop_self, 0xe0000000u, -EPROTO},
    {"two-capability loop", m_loop_two, 0xe0000000u, -EPROTO},
    {"next pointer into the header", m_ptr_header, 0xe0000000u, -EPROTO},
    {"first pointer into the header", m_ptr_first_header, 0xe0000000u, -EPROTO},
    {"vendor capability past 256 bytes", m_cap_past_end, 0xe0000000u, -EPROTO},
    {"vendor capability length 8", m_cap_short, 0xe0000000u, -EPROTO},
    {"notify capability without multiplier", m_notify_short, 0xe0000000u, -EPROTO},
    {"common window beyond the BAR", m_common_beyond_bar, 0xe0000000u, -EPROTO},
    {"common window offset+length overflows", m_common_overflow, 0xe0000000u, -EPROTO},
    {"common window shorter than the registers", m_common_too_small, 0xe0000000u, -EPROTO},
    {"notify multiplier 3", m_mult_odd, 0xe0000000u, -EPROTO},
    {"notify multiplier 1", m_mult_one, 0xe0000000u, -EPROTO},
    {"capabilities in an I/O BAR", m_io_bar, 0xe0000000u, -EPROTO},
    {"capabilities in an unimplemented BAR", m_bar_unimpl, 0xe0000000u, -EPROTO},
    {"capabilities in the upper half of a 64-bit BAR", m_upper_half, 0xe0000000u, -EPROTO},
    {"MSI-X table beyond its BAR", m_msix_beyond, 0xe0000000u, -EPROTO},
    {"MSI-X table in BAR 6", m_msix_bir, 0xe0000000u, -EPROTO},
    {"no common capability", m_no_common, 0xe0000000u, -ENOTSUP},
    {"common capability with a reserved BAR (ignored)", m_reserved_bar, 0xe0000000u, -ENOTSUP},
    {"no capability list", m_no_caplist, 0xe0000000u, -ENOTSUP},
    {"not a virtio vendor", m_vendor, 0xe0000000u, -ENODEV},
    {"not a virtio device id", m_devid, 0xe0000000u, -ENODEV},
    {"a bridge header", m_bridge, 0xe0000000u, -EPROTO},
    {"unassigned BARs and no window", m_none, 0, -ENXIO},
};

START_TEST(test_pci_hostile)
{
    const struct bad_pci *b = &bad_pci[_i];
    struct fake_pci *f = calloc(1, sizeof(*f));
    fake_init(f);
    b->mut(f);
    struct vio_pci_driver *p = (void *)1;
    int r = probe(f, b->window, &p);
    ck_assert_msg(r == b->err, "%s: got %d, want %d", b->what, r, b->err);
    ck_assert_ptr_null(p);
    free(f);
}
END_TEST

START_TEST(test_pci_window_too_small)
{
    struct fake_pci *f = calloc(1, sizeof(*f));
    fake_init(f);
    struct vio_pci_driver_config c = {.struct_size = sizeof(c), .io = &fio, .io_opaque = f,
                                      .bar_window = 0xe0000000u, .bar_window_size = 0x2000};
    struct vio_pci_driver *p = NULL;
    ck_assert_int_eq(vio_pci_driver_new(&c, &p), -ENXIO);
    /* an already assigned BAR is kept */
    fake_init(f);
    put(f->cfg, PCI_BASE_ADDRESS_1, 4, 0xd0000000u);
    put(f->cfg, PCI_BASE_ADDRESS_4, 4, 0xd0010000u | 0xc);
    c.bar_window_size = 0;
    ck_assert_int_eq(vio_pci_driver_new(&c, &p), 0);
    struct vio_pci_driver_info in;
    vio_pci_driver_info(p, &in);
    ck_assert_uint_eq(in.bar_addr[4], 0xd0010000u);
    vio_pci_driver_free(p);
    c.io = NULL;
    ck_assert_int_eq(vio_pci_driver_new(&c, &p), -EINVAL);
    free(f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* generic wrappers                                                          */

static int only_status(void *o, uint8_t *st)
{
    (void)o;
    *st = 0x5a;
    return 0;
}

START_TEST(test_wrappers)
{
    static const struct vio_driver_ops ops = {.get_status = only_status};
    struct vio_driver d = {.ops = &ops};
    uint8_t st;
    uint64_t f;
    ck_assert_int_eq(vio_driver_get_status(&d, &st), 0);
    ck_assert_uint_eq(st, 0x5a);
    ck_assert_int_eq(vio_driver_get_features(&d, &f), -ENOTSUP);
    ck_assert_int_eq(vio_driver_notify(&d, 0), -ENOTSUP);
    ck_assert_int_eq(vio_driver_ack_interrupt(&d), -ENOTSUP);
    ck_assert_int_eq(vio_driver_set_queue_vector(&d, 0, 0), -ENOTSUP);
    ck_assert_int_eq(vio_driver_reset(&d), -ENOTSUP);
    ck_assert_int_eq(vio_driver_negotiate(&d, 0, NULL), -ENOTSUP);
    ck_assert_int_eq(vio_driver_get_status(NULL, &st), -EINVAL);
    struct vio_driver none = {0};
    ck_assert_int_eq(vio_driver_notify(&none, 0), -EINVAL);
    ck_assert_int_eq(vio_driver_config_read_stable(NULL, 0, &st, 1), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* fake MMIO window                                                          */

struct fake_mmio {
    uint32_t reg[0x200 / 4];
    uint32_t magic, version, devid;
    unsigned nq;
    uint32_t qsel, dfsel, gfsel, status, isr, acked, gen, gen_bumps;
    uint64_t dev_features, drv_features;
    uint32_t qnum[8], qready[8], qaddr[8][6], qpfn[8], qalign[8], page;
    unsigned notifies, last_notify;
};

static int fm_read(void *o, uint64_t off, unsigned size, uint32_t *v)
{
    struct fake_mmio *m = o;
    ck_assert_uint_le(off + size, 0x200);
    if (off >= VIRTIO_MMIO_CONFIG) {
        *v = (uint32_t)(0x10 + off - VIRTIO_MMIO_CONFIG) & (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1);
        *v = 0;
        for (unsigned i = 0; i < size; i++)
            *v |= (uint32_t)(0x10 + off - VIRTIO_MMIO_CONFIG + i) << (8 * i);
        return 0;
    }
    ck_assert_uint_eq(size, 4);
    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE: *v = m->magic; break;
    case VIRTIO_MMIO_VERSION: *v = m->version; break;
    case VIRTIO_MMIO_DEVICE_ID: *v = m->devid; break;
    case VIRTIO_MMIO_VENDOR_ID: *v = 0x554d4551; break;
    case VIRTIO_MMIO_DEVICE_FEATURES: *v = m->dfsel < 2 ? (uint32_t)(m->dev_features >> (32 * m->dfsel)) : 0; break;
    case VIRTIO_MMIO_QUEUE_NUM_MAX: *v = m->qsel < m->nq ? (m->qsel == 1 ? 0x10000u : 256u) : 0; break;
    case VIRTIO_MMIO_QUEUE_READY: *v = m->qsel < 8 ? m->qready[m->qsel] : 0; break;
    case VIRTIO_MMIO_QUEUE_PFN: *v = m->qsel < 8 ? m->qpfn[m->qsel] : 0; break;
    case VIRTIO_MMIO_INTERRUPT_STATUS: *v = m->isr; break;
    case VIRTIO_MMIO_STATUS: *v = m->status; break;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        *v = m->gen;
        if (m->gen_bumps) {
            m->gen_bumps--;
            m->gen++;
        }
        break;
    default: *v = 0;
    }
    return 0;
}

static int fm_write(void *o, uint64_t off, unsigned size, uint32_t v)
{
    struct fake_mmio *m = o;
    ck_assert_uint_eq(size, 4);
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: m->dfsel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: m->gfsel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (m->gfsel < 2)
            m->drv_features |= (uint64_t)v << (32 * m->gfsel);
        break;
    case VIRTIO_MMIO_QUEUE_SEL: m->qsel = v; break;
    case VIRTIO_MMIO_QUEUE_NUM: ck_assert_uint_lt(m->qsel, 8); m->qnum[m->qsel] = v; break;
    case VIRTIO_MMIO_QUEUE_READY: ck_assert_uint_lt(m->qsel, 8); m->qready[m->qsel] = v; break;
    case VIRTIO_MMIO_QUEUE_NOTIFY: m->notifies++; m->last_notify = v; break;
    case VIRTIO_MMIO_GUEST_PAGE_SIZE: m->page = v; break;
    case VIRTIO_MMIO_QUEUE_ALIGN: ck_assert_uint_lt(m->qsel, 8); m->qalign[m->qsel] = v; break;
    case VIRTIO_MMIO_QUEUE_PFN: ck_assert_uint_lt(m->qsel, 8); m->qpfn[m->qsel] = v; break;
    case VIRTIO_MMIO_INTERRUPT_ACK: m->acked = v; m->isr &= ~v; break;
    case VIRTIO_MMIO_STATUS:
        m->status = v;
        if (!v) {
            memset(m->qready, 0, sizeof(m->qready));
            memset(m->qpfn, 0, sizeof(m->qpfn));
            m->drv_features = 0;
        }
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW: case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW: case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW: case VIRTIO_MMIO_QUEUE_USED_HIGH: {
        static const unsigned offs[] = {VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH,
                                        VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
                                        VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_QUEUE_USED_HIGH};
        for (unsigned i = 0; i < 6; i++)
            if (offs[i] == off)
                m->qaddr[m->qsel][i] = v;
        break;
    }
    default: break;
    }
    return 0;
}

static const struct vio_mmio_driver_io fmio = {fm_read, fm_write};

static void fm_init(struct fake_mmio *m)
{
    memset(m, 0, sizeof(*m));
    m->magic = 0x74726976;
    m->version = 2;
    m->devid = 1;
    m->nq = 3;
    m->dev_features = V1 | 1;
}

static int fm_probe(struct fake_mmio *m, struct vio_mmio_driver **out)
{
    struct vio_mmio_driver_config c = {.struct_size = sizeof(c), .io = &fmio, .io_opaque = m};
    return vio_mmio_driver_new(&c, out);
}

START_TEST(test_mmio)
{
    struct fake_mmio m;
    fm_init(&m);
    struct vio_mmio_driver *md = NULL;
    ck_assert_int_eq(fm_probe(&m, &md), 0);
    ck_assert_uint_eq(vio_mmio_driver_device_id(md), 1);
    struct vio_driver d = vio_mmio_driver_get(md);
    ck_assert_int_eq(vio_driver_notify(&d, 0), -EINVAL); /* queues not probed yet */
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&d, 1, &feat), 0);
    ck_assert_uint_eq(feat, V1 | 1);
    ck_assert_uint_eq(m.drv_features, V1 | 1);
    ck_assert_int_eq(vio_driver_num_queues(&d), 3);
    /* a QueueNumMax above 32768 is clamped, never trusted */
    ck_assert_int_eq(vio_driver_queue_max_size(&d, 1), 32768);
    ck_assert_int_eq(vio_driver_queue_max_size(&d, 3), -ERANGE);
    struct vio_driver_queue q = {.size = 256, .desc = 0x123400000ull, .driver = 0x2000, .device = 0x3000};
    ck_assert_int_eq(vio_driver_queue_setup(&d, 2, &q), 0);
    ck_assert_uint_eq(m.qnum[2], 256);
    ck_assert_uint_eq(m.qaddr[2][0], 0x23400000u);
    ck_assert_uint_eq(m.qaddr[2][1], 0x1);
    ck_assert_uint_eq(m.qaddr[2][4], 0x3000);
    ck_assert_int_eq(vio_driver_queue_enable(&d, 2), 0);
    ck_assert_uint_eq(m.qready[2], 1);
    ck_assert_int_eq(vio_driver_queue_setup(&d, 2, &q), -EBUSY);
    q.size = 512;
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -ERANGE);
    ck_assert_int_eq(vio_driver_notify(&d, 2), 0);
    ck_assert_uint_eq(m.last_notify, 2);
    ck_assert_int_eq(vio_driver_notify(&d, 3), -ERANGE);
    m.isr = 3;
    ck_assert_int_eq(vio_driver_ack_interrupt(&d), 3);
    ck_assert_uint_eq(m.acked, 3);
    ck_assert_int_eq(vio_driver_ack_interrupt(&d), 0);
    uint8_t cfg[6];
    ck_assert_int_eq(vio_driver_config_read_stable(&d, 1, cfg, 6), 0);
    ck_assert_uint_eq(cfg[0], 0x11);
    ck_assert_uint_eq(cfg[5], 0x16);
    m.gen_bumps = 1000; /* the generation never settles */
    ck_assert_int_eq(vio_driver_config_read_stable(&d, 0, cfg, 6), -EAGAIN);
    ck_assert_int_eq(vio_driver_config_read(&d, 0xfc, cfg, 6), -ERANGE);
    ck_assert_int_eq(vio_driver_set_queue_vector(&d, 0, 0), -ENOTSUP);
    ck_assert_int_eq(vio_driver_reset(&d), 0);
    ck_assert_uint_eq(m.qready[2], 0);
    vio_mmio_driver_free(md);
}
END_TEST

START_TEST(test_mmio_legacy)
{
    struct fake_mmio m;
    fm_init(&m);
    m.version = 1;
    m.dev_features = 0xffffffffffull; /* a legacy device shows 32 bits; bit 32 must not be taken */
    struct vio_mmio_driver *md = NULL;
    ck_assert_int_eq(fm_probe(&m, &md), 0);
    ck_assert_uint_eq(vio_mmio_driver_version(md), 1);
    struct vio_driver d = vio_mmio_driver_get(md);
    ck_assert_uint_eq(d.ops->flags & VIO_DRIVER_LEGACY, VIO_DRIVER_LEGACY);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&d, V1 | 0x21, &feat), 0);
    ck_assert_uint_eq(feat, 0x21);
    ck_assert_uint_eq(m.drv_features, 0x21);
    ck_assert_uint_eq(m.status, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER); /* no FEATURES_OK */
    uint32_t gen;
    ck_assert_int_eq(vio_driver_config_generation(&d, &gen), -ENOTSUP);
    uint8_t cfg[2];
    ck_assert_int_eq(vio_driver_config_read_stable(&d, 0, cfg, 2), 0);
    ck_assert_uint_eq(cfg[1], 0x11);
    /* the legacy block layout: desc page-aligned, avail after it, used aligned */
    struct vio_driver_queue q = {.size = 256, .desc = 0x40000, .driver = 0x41000, .device = 0x41240};
    ck_assert_int_eq(vio_driver_queue_enable(&d, 0), -EINVAL); /* not set up */
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), 0);
    ck_assert_uint_eq(m.page, 4096);
    ck_assert_uint_eq(m.qalign[0], 64);
    ck_assert_uint_eq(m.qnum[0], 256);
    ck_assert_uint_eq(m.qpfn[0], 0); /* the PFN makes it live: only at enable */
    ck_assert_int_eq(vio_driver_queue_enable(&d, 0), 0);
    ck_assert_uint_eq(m.qpfn[0], 0x40);
    ck_assert_int_eq(vio_driver_queue_setup(&d, 0, &q), -EBUSY);
    struct vio_driver_queue bad[] = {
        {256, 0x40800, 0x41800, 0x41a40},   /* descriptors not page-aligned */
        {256, 0x40000, 0x42000, 0x42240},   /* avail not right after the descriptors */
        {256, 0x40000, 0x41000, 0x41250},   /* used not where any alignment puts it */
        {256, 0x40000, 0x41000, 0x41204},   /* used inside the avail ring's used_event */
        {256, 0x1000000000000ull, 0x1000000001000ull, 0x1000000001240ull}, /* PFN > 32 bits */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(vio_driver_queue_setup(&d, 1, &bad[i]) == -EINVAL, "bad layout %u", i);
    ck_assert_int_eq(vio_driver_notify(&d, 0), 0);
    ck_assert_int_eq(vio_driver_reset(&d), 0);
    ck_assert_uint_eq(m.qpfn[0], 0);
    ck_assert_int_eq(vio_driver_queue_enable(&d, 0), -EINVAL); /* forgotten at reset */
    vio_mmio_driver_free(md);
}
END_TEST

struct bad_mmio {
    uint32_t magic, version, devid;
    int err;
};

static const struct bad_mmio bad_mmio[] = {
    {0x74726977, 2, 1, -ENODEV},
    {0, 0, 0, -ENODEV},
    {0x74726976, 0, 1, -ENOTSUP},
    {0x74726976, 3, 1, -ENOTSUP},
    {0x74726976, 2, 0, -ENODEV},
};

START_TEST(test_mmio_probe_bad)
{
    struct fake_mmio m;
    fm_init(&m);
    m.magic = bad_mmio[_i].magic;
    m.version = bad_mmio[_i].version;
    m.devid = bad_mmio[_i].devid;
    struct vio_mmio_driver *md = (void *)1;
    ck_assert_int_eq(fm_probe(&m, &md), bad_mmio[_i].err);
    ck_assert_ptr_null(md);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* legacy PCI seat against our transitional device with the modern capabilities hidden      */

enum lmode {
    L_OK,          /* a well-behaved legacy function */
    L_NO_IO,       /* the application gives no io_read / io_write */
    L_REV1,        /* revision 1: not transitional */
    L_IO_TINY,     /* the I/O BAR sizes to 16 bytes */
    L_IO_MEM,      /* BAR 0 claims to be a memory BAR */
    L_NO_WINDOW,   /* BAR 0 unassigned and no I/O window */
    L_PFN_DROP,    /* QUEUE_PFN writes are lost */
    L_QNUM_FOREVER, /* QUEUE_NUM never reads 0: queue counting stops at 1024 */
    L_IO_HIGH       /* BAR 0 already placed past the 64 KiB port space */
};

struct lfx {
    struct arena a;
    struct net_transport t;
    struct vio_net_dev *nd; /* t's */
    struct vio_pci *p;      /* t's */
    enum lmode mode;
    uint8_t vndr[8];
    unsigned nvndr;
    bool sizing0;
};

static const uint8_t LMAC[6] = {0x52, 0x54, 0x00, 0x0e, 0x9a, 0x1c};

static int l_cfg_read(void *o, unsigned off, unsigned size, uint32_t *v)
{
    struct lfx *x = o;
    int r = vio_pci_config_read(x->p, off, size, v);
    for (unsigned i = 0; i < size; i++) {
        unsigned at = off + i;
        uint32_t m = 0xffu << (8 * i);
        for (unsigned k = 0; k < x->nvndr; k++)
            if (at == x->vndr[k])
                *v &= ~m; /* a capability of ID 0: the walk passes over it */
        if (at == PCI_REVISION_ID && x->mode == L_REV1)
            *v = (*v & ~m) | (1u << (8 * i));
        if (at == PCI_BASE_ADDRESS_0 && x->mode == L_IO_TINY && x->sizing0)
            *v = 0xfffffff1u;
        if (at == PCI_BASE_ADDRESS_0 && x->mode == L_IO_MEM)
            *v &= ~1u;
    }
    return r;
}

static int l_cfg_write(void *o, unsigned off, unsigned size, uint32_t v)
{
    struct lfx *x = o;
    if (off == PCI_BASE_ADDRESS_0)
        x->sizing0 = v == 0xffffffffu;
    return vio_pci_config_write(x->p, off, size, v);
}

static int l_bar_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                      uint64_t *v)
{
    (void)base;
    return vio_pci_bar_read(((struct lfx *)o)->p, bar, off, size, v);
}

static int l_bar_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                       uint64_t v)
{
    (void)base;
    return vio_pci_bar_write(((struct lfx *)o)->p, bar, off, size, v);
}

static int l_io_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                     uint64_t *v)
{
    struct lfx *x = o;
    ck_assert_uint_eq(base, vio_pci_bar_address(x->p, 0)); /* the port the driver placed */
    int r = vio_pci_bar_read(x->p, bar, off, size, v);
    if (x->mode == L_QNUM_FOREVER && off == VIRTIO_PCI_QUEUE_NUM)
        *v = 256;
    return r;
}

static int l_io_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size,
                      uint64_t v)
{
    struct lfx *x = o;
    (void)base;
    if (x->mode == L_PFN_DROP && off == VIRTIO_PCI_QUEUE_PFN)
        return 0;
    return vio_pci_bar_write(x->p, bar, off, size, v);
}

static const struct vio_pci_driver_io lio = {l_cfg_read, l_cfg_write, l_bar_read, l_bar_write,
                                             l_io_read, l_io_write};
static const struct vio_pci_driver_io lio_noio = {l_cfg_read, l_cfg_write, l_bar_read,
                                                  l_bar_write, NULL, NULL};

static void lfx_open(struct lfx *x, enum lmode mode)
{
    memset(x, 0, sizeof(*x));
    x->mode = mode;
    ck_assert_int_eq(arena_init_simple(&x->a, 0x100000, 8u << 20), 0);
    struct net_transport_config nc = {.mem = x->a.mem, .transitional = true, .msix_vectors = 4,
                                      .mac = LMAC, .queue_size = 256};
    ck_assert_int_eq(net_transport_open(&x->t, &nc), 0);
    x->nd = x->t.nd;
    x->p = x->t.pci;
    /* note where the vendor capabilities sit, to hide them */
    uint32_t c;
    ck_assert_int_eq(vio_pci_config_read(x->p, PCI_CAPABILITY_LIST, 1, &c), 0);
    for (unsigned hops = 0; c && hops < 16; hops++) {
        uint32_t id, next;
        vio_pci_config_read(x->p, c, 1, &id);
        vio_pci_config_read(x->p, c + 1, 1, &next);
        if (id == PCI_CAP_ID_VNDR && x->nvndr < 8)
            x->vndr[x->nvndr++] = (uint8_t)c;
        c = next;
    }
    ck_assert_uint_eq(x->nvndr, 5);
    if (mode == L_IO_HIGH)
        ck_assert_int_eq(vio_pci_config_write(x->p, PCI_BASE_ADDRESS_0, 4, 0xffffffc0u), 0);
}

static void lfx_close(struct lfx *x)
{
    net_transport_close(&x->t);
    arena_fini(&x->a);
}

static int lprobe(struct lfx *x, const struct vio_pci_driver_io *io, uint32_t io_window,
                  struct vio_pci_driver **out)
{
    struct vio_pci_driver_config pc = {.struct_size = sizeof(pc), .io = io, .io_opaque = x,
                                       .bar_window = 0xe0000000u, .bar_window_size = 1u << 20,
                                       .io_window = io_window,
                                       .io_window_size = io_window ? 0x100 : 0};
    return vio_pci_driver_new(&pc, out);
}

START_TEST(test_pci_legacy_on_ours)
{
    struct lfx x;
    lfx_open(&x, L_OK);
    struct vio_pci_driver *pd = NULL;
    ck_assert_int_eq(lprobe(&x, &lio, 0xc000, &pd), 0);
    struct vio_pci_driver_info info;
    ck_assert_int_eq(vio_pci_driver_info(pd, &info), 0);
    ck_assert_uint_eq(info.device_id, 0x1000);
    ck_assert_uint_eq(info.virtio_id, 1);
    ck_assert_uint_eq(info.bar_addr[0], 0xc000);
    ck_assert_uint_eq(info.bar_size[0], 64);
    ck_assert_uint_eq(info.msix_vectors, 4);
    ck_assert_uint_eq(vio_pci_bar_address(x.p, 0), 0xc000);
    uint32_t cmd;
    vio_pci_config_read(x.p, PCI_COMMAND, 2, &cmd);
    ck_assert_uint_ne(cmd & PCI_COMMAND_IO, 0);
    struct vio_driver drv = vio_pci_driver_get(pd);
    ck_assert_uint_eq(drv.ops->flags & VIO_DRIVER_LEGACY, VIO_DRIVER_LEGACY);
    ck_assert_int_eq(vio_driver_num_queues(&drv), 3);
    ck_assert_int_eq(vio_driver_queue_max_size(&drv, 0), 256);
    ck_assert_int_eq(vio_driver_queue_max_size(&drv, 3), -ERANGE);

    for (int round = 0; round < 2; round++) {
        uint64_t feat = 0;
        uint64_t want = vio_feature_bit(VIO_NET_F_MAC) | vio_feature_bit(VIO_NET_F_MRG_RXBUF) |
                        vio_feature_bit(VIO_NET_F_STATUS);
        ck_assert_int_eq(vio_pci_driver_msix_enable(pd, false), 0);
        ck_assert_int_eq(vio_driver_negotiate(&drv, want, &feat), 0);
        ck_assert_uint_eq(feat, want); /* no VERSION_1 over 32 bits */
        uint8_t st;
        ck_assert_int_eq(vio_driver_get_status(&drv, &st), 0);
        ck_assert_uint_eq(st, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER); /* no FEATURES_OK step */
        ck_assert_int_eq(vio_driver_set_features(&drv, V1), -EINVAL);
        uint8_t mac[6];
        ck_assert_int_eq(vio_driver_config_read(&drv, 0, mac, 6), 0); /* config at 20 */
        ck_assert_mem_eq(mac, LMAC, 6);
        ck_assert_int_eq(vio_driver_set_config_vector(&drv, 0), -EINVAL); /* MSI-X off */
        ck_assert_int_eq(vio_pci_driver_msix_enable(pd, true), 0);
        memset(mac, 0, 6);
        ck_assert_int_eq(vio_driver_config_read(&drv, 0, mac, 6), 0); /* config at 24 */
        ck_assert_mem_eq(mac, LMAC, 6);
        ck_assert_int_eq(vio_driver_config_read(&drv, 60, mac, 6), -ERANGE);
        ck_assert_int_eq(vio_driver_set_config_vector(&drv, 0), 0);
        ck_assert_int_eq(vio_driver_set_queue_vector(&drv, 1, 9), -ENOSPC);
        ck_assert_int_eq(vio_driver_set_queue_vector(&drv, 1, 2), 0);
        if (round == 1) {
            ck_assert_int_eq(vio_pci_driver_msix_enable(pd, false), 0);
            ck_assert_int_eq(vio_driver_config_read(&drv, 0, mac, 6), 0);
            ck_assert_mem_eq(mac, LMAC, 6);
        }

        struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = x.a.mem,
                                           .features = feat, .queue_size = 256};
        nc.area_size = vio_net_driver_area_size(&nc);
        nc.area = arena_alloc(&x.a, nc.area_size, 4096);
        ck_assert_uint_ne(nc.area, 0);
        struct vio_net_driver *nd;
        ck_assert_int_eq(vio_net_driver_new(&nc, &nd), 0);
        /* legacy queue rules: the size is QUEUE_NUM's, the layout the legacy one */
        struct vio_net_driver_queue_addr qa;
        ck_assert_int_eq(vio_net_driver_queue_addr(nd, 0, &qa), 0);
        ck_assert_uint_eq(qa.device % 4096, 0);
        struct vio_driver_queue bad = {128, qa.desc, qa.desc + 16 * 128, qa.device};
        ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &bad), -ERANGE);
        bad = (struct vio_driver_queue){256, qa.desc, qa.driver, qa.device + 4096};
        ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &bad), -EINVAL);
        ck_assert_int_eq(vio_driver_notify(&drv, 0), -EINVAL); /* not enabled */
        ck_assert_int_eq(vio_net_driver_attach(nd, &drv), 0);
        ck_assert_int_eq(vio_driver_get_status(&drv, &st), 0);
        ck_assert_uint_eq(st, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_DRIVER_OK);
        ck_assert_uint_eq(vio_net_dev_features(x.nd), feat);
        struct vio_driver_queue dq = {qa.size, qa.desc, qa.driver, qa.device};
        ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &dq), -EBUSY); /* live */

        ck_assert_int_gt(vio_net_driver_rx_fill(nd, 0), 0);
        ck_assert_int_ge(vio_net_driver_kick(nd, VIO_NET_DRIVER_RXQ(0)), 0);
        for (unsigned k = 0; k < 4; k++) {
            uint8_t fr[200], got[2048];
            memcpy(fr, LMAC, 6);
            memcpy(fr + 6, "\x02\x00\x00\x00\x00\x09", 6);
            fr[12] = 0x88;
            fr[13] = 0xb5;
            for (unsigned i = 14; i < sizeof(fr); i++)
                fr[i] = (uint8_t)(i * 5 + k + round);
            ck_assert_int_eq(vio_net_driver_send(nd, 0, NULL, fr, sizeof(fr)), 0);
            ck_assert_int_eq(vio_net_driver_kick(nd, VIO_NET_DRIVER_TXQ(0)), 1);
            ck_assert_int_ge(vio_net_dev_rx_process(x.nd, 0, 0), 0);
            ck_assert_int_eq(vio_net_driver_recv(nd, 0, NULL, got, sizeof(got)), (int)sizeof(fr));
            ck_assert_mem_eq(got, fr, sizeof(fr));
            vio_net_driver_tx_reclaim(nd, 0, NULL, 0);
            ck_assert_int_ge(vio_net_driver_kick(nd, VIO_NET_DRIVER_RXQ(0)), 0);
        }
        if (round == 1) {
            int cause = vio_driver_ack_interrupt(&drv); /* INTx: the ISR */
            ck_assert_int_eq(cause & VIO_DRIVER_INT_VRING, VIO_DRIVER_INT_VRING);
            ck_assert_int_eq(vio_driver_ack_interrupt(&drv), 0);
        }
        ck_assert_int_eq(vio_driver_reset(&drv), 0);
        ck_assert_uint_eq(vio_pci_status(x.p), 0);
        ck_assert_int_eq(vio_driver_notify(&drv, 0), -EINVAL);
        vio_net_driver_free(nd);
    }
    vio_pci_driver_free(pd);
    lfx_close(&x);
}
END_TEST

static const struct {
    enum lmode mode;
    bool no_io;
    uint32_t io_window;
    int probe_err;   /* vio_pci_driver_new() */
    int enable_err;  /* queue 0 enable, when the probe succeeds */
    unsigned nq;
} bad_legacy[] = {
    {L_OK, true, 0xc000, -ENOTSUP, 0, 0},
    {L_REV1, false, 0xc000, -ENOTSUP, 0, 0},
    {L_IO_TINY, false, 0xc000, -EPROTO, 0, 0},
    {L_IO_MEM, false, 0xc000, -ENOTSUP, 0, 0},
    {L_NO_WINDOW, false, 0, -ENXIO, 0, 0},
    {L_OK, false, 0xfff0, -ENXIO, 0, 0}, /* the window ends past port 0xffff */
    {L_PFN_DROP, false, 0xc000, 0, -EPROTO, 3},
    {L_QNUM_FOREVER, false, 0xc000, 0, 0, 1024},
    {L_IO_HIGH, false, 0xc000, -EPROTO, 0, 0},
};

START_TEST(test_pci_legacy_hostile)
{
    struct lfx x;
    lfx_open(&x, bad_legacy[_i].mode);
    struct vio_pci_driver *pd = (void *)1;
    int r = lprobe(&x, bad_legacy[_i].no_io ? &lio_noio : &lio, bad_legacy[_i].io_window, &pd);
    ck_assert_int_eq(r, bad_legacy[_i].probe_err);
    if (r < 0) {
        ck_assert_ptr_null(pd);
        lfx_close(&x);
        return;
    }
    struct vio_driver drv = vio_pci_driver_get(pd);
    ck_assert_int_eq(vio_driver_num_queues(&drv), (int)bad_legacy[_i].nq);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&drv, vio_feature_bit(VIO_NET_F_MRG_RXBUF), &feat), 0);
    uint64_t ring = arena_alloc(&x.a, 3 * 4096 + 256 * 16, 4096);
    uint64_t avail = ring + 16 * 256, used = (avail + 6 + 512 + 4095) & ~4095ull;
    struct vio_driver_queue q = {256, ring, avail, used};
    ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &q), 0);
    ck_assert_int_eq(vio_driver_queue_enable(&drv, 0), bad_legacy[_i].enable_err);
    vio_pci_driver_free(pd);
    lfx_close(&x);
}
END_TEST

static Suite *driver_suite(void)
{
    Suite *s = suite_create("driver");
    TCase *tc = tcase_create("pci");
    tcase_add_test(tc, test_pci_probe);
    tcase_add_test(tc, test_pci_bad_queue_regs);
    tcase_add_test(tc, test_pci_window_too_small);
    tcase_add_loop_test(tc, test_pci_hostile, 0, (int)(sizeof(bad_pci) / sizeof(bad_pci[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("mmio");
    tcase_add_test(tc, test_mmio);
    tcase_add_test(tc, test_mmio_legacy);
    tcase_add_loop_test(tc, test_mmio_probe_bad, 0, (int)(sizeof(bad_mmio) / sizeof(bad_mmio[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("pci_legacy");
    tcase_add_test(tc, test_pci_legacy_on_ours);
    tcase_add_loop_test(tc, test_pci_legacy_hostile, 0,
                        (int)(sizeof(bad_legacy) / sizeof(bad_legacy[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("generic");
    tcase_add_test(tc, test_wrappers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(driver_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
