/* SPDX-License-Identifier: MIT */
/*
 * Suite "pci": the virtio-PCI modern device side (configuration-space image, BAR decoder,
 * MSI-X and INTx), driven the way Linux's virtio_pci_modern + virtio_net probe drives it,
 * bound to the real virtio-net model on the loopback backend, with the driver side
 * (net_driver) in a guest-RAM arena; plus a table of hostile accesses with the exact register
 * values they must leave.
 */
#include <check.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/pci.h"
#include "virtio/status.h"

#define BASE 0x100000ull
#define RAM (4u << 20)
#define QSIZE 64u
#define NVEC 4u
#define BARADDR 0xfe000000ull

static const uint8_t MAC[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

struct fx {
    struct arena a;
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_pci *p;
    struct vio_net_driver *drv;
    struct vio_pci_layout l;
    uint64_t area, area_size, feats;
    /* what the probe found in the capabilities */
    unsigned common, isr, device, notify, mult, cbar;
    unsigned fired[NVEC], updates, intx_level, intx_raises;
    uint64_t upd_addr;
    uint32_t upd_data;
    unsigned log_warn;
    bool msix;
    bool transitional; /* the legacy I/O BAR 0 beside the modern capabilities */
    unsigned nd_calls, nd_q, nd_next; /* notify_data hook */
    unsigned msix_at;
};

static struct fx F;
static bool want_transitional, want_notif_data;

static void ndata(void *o, unsigned q, uint16_t next)
{
    struct fx *f = o;
    f->nd_calls++;
    f->nd_q = q;
    f->nd_next = next;
}

static void tlog(void *o, int level, const char *obj, const char *msg)
{
    if (getenv("PCI_LOG"))
        fprintf(stderr, "%s: %d: %s\n", obj, level, msg);
    if (level <= VIO_LOG_WARN)
        ((struct fx *)o)->log_warn++;
}

static void fire(void *o, uint16_t v)
{
    struct fx *f = o;
    ck_assert_uint_lt(v, NVEC);
    f->fired[v]++;
}

static void update(void *o, uint16_t v, uint64_t addr, uint32_t data, bool masked)
{
    struct fx *f = o;
    (void)v;
    (void)masked;
    f->updates++;
    f->upd_addr = addr;
    f->upd_data = data;
}

static void set_intx(void *o, int level)
{
    struct fx *f = o;
    if (level && !f->intx_level)
        f->intx_raises++;
    f->intx_level = (unsigned)level;
}

static uint32_t cr(uint32_t off, unsigned size)
{
    uint32_t v = 0xdead;
    ck_assert_int_eq(vio_pci_config_read(F.p, off, size, &v), 0);
    return v;
}

static void cw(uint32_t off, unsigned size, uint32_t v)
{
    ck_assert_int_eq(vio_pci_config_write(F.p, off, size, v), 0);
}

static uint64_t br(uint64_t off, unsigned size)
{
    uint64_t v = 0xdead;
    ck_assert_int_eq(vio_pci_bar_read(F.p, F.cbar, off, size, &v), 0);
    return v;
}

static void bw(uint64_t off, unsigned size, uint64_t v)
{
    ck_assert_int_eq(vio_pci_bar_write(F.p, F.cbar, off, size, v), 0);
}

static void drv_notify(void *o, unsigned qidx)
{
    (void)o;
    /* Linux: vp_notify() writes the queue index (16 bits) at its notify address */
    bw(F.notify + (uint64_t)qidx * F.mult, 2, qidx);
}

static void open_fx(bool msix)
{
    memset(&F, 0, sizeof(F));
    F.msix = msix;
    F.transitional = want_transitional;
    ck_assert_int_eq(arena_init_simple(&F.a, BASE, RAM), 0);
    ck_assert_int_eq(vio_net_loopback_open(NULL, &F.be), 0);
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &F.be,
                                    .mac_valid = true, .queue_size = 256,
                                    .log = tlog, .log_opaque = &F};
    memcpy(dc.mac, MAC, 6);
    ck_assert_int_eq(vio_net_dev_new(&dc, &F.nd), 0);
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(F.nd),
                                .mem = F.a.mem, .msix_vectors = msix ? NVEC : 0, .log = tlog,
                                .log_opaque = &F, .msix_fire = fire, .msix_update = update,
                                .set_intx = set_intx, .irq_opaque = &F,
                                .transitional = F.transitional, .legacy_bar = 0,
                                .notification_data = want_notif_data, .notify_data = ndata};
    vio_pci_layout_default(&pc.layout);
    F.l = pc.layout;
    ck_assert_int_eq(vio_pci_new(&pc, &F.p), 0);
    F.area_size = 2u << 20;
    F.area = arena_alloc(&F.a, F.area_size, 4096);
    ck_assert_uint_ne(F.area, 0);
}

static void setup(void)
{
    open_fx(true);
}

static void setup_intx(void)
{
    open_fx(false);
}

static void teardown(void)
{
    vio_net_driver_free(F.drv);
    vio_pci_free(F.p);
    vio_net_dev_free(F.nd);
    vio_net_backend_destroy(&F.be);
    arena_fini(&F.a);
}

/* Enumeration and Linux's virtio_pci_modern_probe: IDs, BAR sizing, the capability walk. */
static void enumerate(void)
{
    ck_assert_uint_eq(cr(PCI_VENDOR_ID, 2), 0x1af4);
    /* transitional (4.1.2.1): 0x1000 + type - 1, revision 0, subsystem ID = the type */
    ck_assert_uint_eq(cr(PCI_DEVICE_ID, 2), F.transitional ? 0x1000 : 0x1041);
    ck_assert_uint_eq(cr(PCI_CLASS_REVISION, 4), F.transitional ? 0x02000000u : 0x02000001u);
    ck_assert_uint_eq(cr(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    ck_assert_uint_eq(cr(PCI_SUBSYSTEM_ID, 2), F.transitional ? 1 : 0x1100);
    /* BAR 0: the legacy I/O block (24 bytes of registers + the net config, a power of 2) */
    cw(PCI_BASE_ADDRESS_0, 4, 0xffffffffu);
    if (F.transitional) {
        ck_assert_uint_eq(cr(PCI_BASE_ADDRESS_0, 4), 0xffffffc1u); /* 64 bytes of I/O */
        cw(PCI_BASE_ADDRESS_0, 4, 0xc040);
        ck_assert_uint_eq(cr(PCI_BASE_ADDRESS_0, 4), 0xc041);
        ck_assert_uint_eq(vio_pci_bar_address(F.p, 0), 0xc040);
    } else {
        ck_assert_uint_eq(cr(PCI_BASE_ADDRESS_0, 4), 0);
        ck_assert_uint_eq(vio_pci_bar_address(F.p, 0), 0);
    }
    ck_assert_uint_eq(cr(PCI_INTERRUPT_PIN, 1), 1);
    ck_assert_uint_ne(cr(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
    /* size and place the 64-bit BAR 4 */
    unsigned b = PCI_BASE_ADDRESS_0 + 4 * 4;
    cw(b, 4, 0xffffffffu);
    cw(b + 4, 4, 0xffffffffu);
    ck_assert_uint_eq(cr(b, 4), ~(F.l.bar_size - 1u) | 0xc);
    ck_assert_uint_eq(cr(b + 4, 4), 0xffffffffu);
    cw(b, 4, (uint32_t)BARADDR);
    cw(b + 4, 4, 0);
    ck_assert_uint_eq(vio_pci_bar_address(F.p, 4), BARADDR);
    if (F.msix) {
        cw(PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffffu);
        ck_assert_uint_eq(cr(PCI_BASE_ADDRESS_0 + 4, 4), ~(F.l.msix_bar_size - 1u));
        cw(PCI_BASE_ADDRESS_0 + 4, 4, 0xfebff000u);
        ck_assert_uint_eq(vio_pci_bar_address(F.p, 1), 0xfebff000u);
    } else {
        cw(PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffffu);
        ck_assert_uint_eq(cr(PCI_BASE_ADDRESS_0 + 4, 4), 0); /* unused BAR */
    }
    cw(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_IO);
    ck_assert_uint_eq(cr(PCI_COMMAND, 2) & PCI_COMMAND_IO, F.transitional ? PCI_COMMAND_IO : 0);
    bool seen[6] = {false};
    unsigned hops = 0, msix_at = 0;
    for (unsigned c = cr(PCI_CAPABILITY_LIST, 1); c; c = cr(c + 1, 1)) {
        ck_assert_uint_lt(++hops, 16);
        unsigned id = cr(c, 1);
        if (id == PCI_CAP_ID_MSIX) {
            msix_at = c;
            continue;
        }
        ck_assert_uint_eq(id, PCI_CAP_ID_VNDR);
        unsigned type = cr(c + 3, 1), bar = cr(c + 4, 1);
        uint32_t off = cr(c + 8, 4), len = cr(c + 12, 4);
        ck_assert_uint_lt(type, 6);
        seen[type] = true;
        if (type == VIRTIO_PCI_CAP_PCI_CFG)
            continue;
        ck_assert_uint_eq(bar, 4);
        F.cbar = bar;
        switch (type) {
        case VIRTIO_PCI_CAP_COMMON_CFG:
            F.common = off;
            ck_assert_uint_ge(len, 56);
            break;
        case VIRTIO_PCI_CAP_ISR_CFG:
            F.isr = off;
            ck_assert_uint_ge(len, 1);
            break;
        case VIRTIO_PCI_CAP_DEVICE_CFG:
            F.device = off;
            ck_assert_uint_ge(len, 6);
            break;
        case VIRTIO_PCI_CAP_NOTIFY_CFG:
            F.notify = off;
            F.mult = cr(c + 16, 4);
            ck_assert_uint_eq(cr(c + 2, 1), 20);
            break;
        }
    }
    for (unsigned t = 1; t <= 5; t++)
        ck_assert_msg(seen[t], "virtio capability %u missing", t);
    ck_assert_uint_eq(F.common, F.l.common_off);
    ck_assert_uint_eq(F.notify, F.l.notify_off);
    ck_assert_uint_eq(F.mult, F.l.notify_mult);
    F.msix_at = msix_at;
    if (F.msix) {
        ck_assert_uint_ne(msix_at, 0);
        ck_assert_uint_eq(cr(msix_at + PCI_MSIX_FLAGS, 2) & 0x7ff, NVEC - 1);
        ck_assert_uint_eq(cr(msix_at + PCI_MSIX_TABLE, 4), F.l.msix_table_off | 1);
        ck_assert_uint_eq(cr(msix_at + PCI_MSIX_PBA, 4), F.l.msix_pba_off | 1);
        /* vp_request_msix_vectors: enable MSI-X, program and unmask the entries */
        cw(msix_at + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
        ck_assert(vio_pci_msix_enabled(F.p));
        for (unsigned v = 0; v < NVEC; v++) {
            uint64_t e = F.l.msix_table_off + 16ull * v;
            ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e, 4, 0xfee00000u), 0);
            ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e + 4, 4, 0), 0);
            ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e + 8, 4, 0x40 + v), 0);
            ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e + 12, 4, 0), 0);
            ck_assert_uint_eq(F.upd_addr, 0xfee00000u);
            ck_assert_uint_eq(F.upd_data, 0x40 + v);
            struct vio_pci_msix_msg m;
            ck_assert_int_eq(vio_pci_msix_entry(F.p, (uint16_t)v, &m), 0);
            ck_assert_uint_eq(m.data, 0x40 + v);
            ck_assert(!m.masked);
        }
    } else {
        ck_assert_uint_eq(msix_at, 0);
    }
}

#define C(f) (F.common + VIRTIO_PCI_COMMON_##f)

static void probe_features(void)
{
    bw(C(STATUS), 1, 0);
    bw(C(STATUS), 1, VIO_S_ACKNOWLEDGE);
    bw(C(STATUS), 1, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
    bw(C(DFSELECT), 4, 1);
    uint64_t f = br(C(DF), 4) << 32;
    bw(C(DFSELECT), 4, 0);
    f |= br(C(DF), 4);
    /* the offer is the device's (plus NOTIFICATION_DATA when the transport offers it) */
    ck_assert_uint_eq(f & ~vio_feature_bit(38), vio_device_features(vio_net_dev_device(F.nd)));
    uint64_t want = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX) |
                    vio_feature_bit(VIO_NET_F_MAC) | vio_feature_bit(VIO_NET_F_MRG_RXBUF);
    F.feats = f & want;
    ck_assert_uint_eq(F.feats, want);
    bw(C(GFSELECT), 4, 0);
    bw(C(GF), 4, (uint32_t)F.feats);
    bw(C(GFSELECT), 4, 1);
    bw(C(GF), 4, (uint32_t)(F.feats >> 32));
    ck_assert_uint_eq(br(C(GF), 4), 1);
    bw(C(STATUS), 1, 0x0b);
    ck_assert_uint_eq(br(C(STATUS), 1), 0x0b);
    uint8_t gen = (uint8_t)br(C(CFGGENERATION), 1);
    for (unsigned i = 0; i < 6; i++)
        ck_assert_uint_eq(br(F.device + i, 1), MAC[i]);
    ck_assert_uint_eq(br(C(CFGGENERATION), 1), gen);
    if (F.msix) {
        bw(C(MSIX), 2, 0);
        ck_assert_uint_eq(br(C(MSIX), 2), 0);
    }
}

static void setup_queues(void)
{
    vio_net_driver_free(F.drv);
    F.drv = NULL;
    struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = F.a.mem,
                                       .area = F.area, .area_size = F.area_size,
                                       .features = F.feats, .queue_pairs = 1,
                                       .queue_size = QSIZE, .notify = drv_notify};
    ck_assert_int_eq(vio_net_driver_new(&nc, &F.drv), 0);
    ck_assert_uint_eq(br(C(NUMQ), 2), 3);
    for (unsigned i = 0; i < 2; i++) {
        struct vio_net_driver_queue_addr qa;
        ck_assert_int_eq(vio_net_driver_queue_addr(F.drv, i, &qa), 0);
        bw(C(Q_SELECT), 2, i);
        ck_assert_uint_eq(br(C(Q_SIZE), 2), 256);
        ck_assert_uint_eq(br(C(Q_ENABLE), 2), 0);
        bw(C(Q_SIZE), 2, qa.size);
        ck_assert_uint_eq(br(C(Q_SIZE), 2), qa.size);
        if (F.msix) {
            bw(C(Q_MSIX), 2, 1 + i);
            ck_assert_uint_eq(br(C(Q_MSIX), 2), 1 + i);
        }
        bw(C(Q_DESCLO), 4, (uint32_t)qa.desc);
        bw(C(Q_DESCHI), 4, (uint32_t)(qa.desc >> 32));
        bw(C(Q_AVAILLO), 4, (uint32_t)qa.driver);
        bw(C(Q_AVAILHI), 4, (uint32_t)(qa.driver >> 32));
        bw(C(Q_USEDLO), 4, (uint32_t)qa.device);
        bw(C(Q_USEDHI), 4, (uint32_t)(qa.device >> 32));
        ck_assert_uint_eq(br(C(Q_DESCLO), 4), (uint32_t)qa.desc);
        ck_assert_uint_eq(br(C(Q_NOFF), 2), i);
        bw(C(Q_ENABLE), 2, 1);
        ck_assert_uint_eq(br(C(Q_ENABLE), 2), 1);
    }
    bw(C(STATUS), 1, 0x0f);
    ck_assert_uint_eq(br(C(STATUS), 1), 0x0f);
}

static void bring_up(void)
{
    probe_features();
    setup_queues();
}

static void traffic(unsigned n)
{
    ck_assert_int_gt(vio_net_driver_rx_fill(F.drv, 0), 0);
    vio_net_driver_enable_cb(F.drv, VIO_NET_DRIVER_RXQ(0));
    ck_assert_int_ge(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_RXQ(0)), 0);
    unsigned cfg_irqs = F.fired[0];
    for (unsigned k = 0; k < n; k++) {
        uint8_t fr[300], got[2048];
        memcpy(fr, MAC, 6);
        memcpy(fr + 6, "\x02\x00\x00\x00\x00\x02", 6);
        fr[12] = 0x08;
        fr[13] = 0x00;
        for (unsigned i = 14; i < sizeof(fr); i++)
            fr[i] = (uint8_t)(i * 3 + k);
        unsigned rx_irqs = F.msix ? F.fired[1] : F.intx_raises;
        ck_assert_int_eq(vio_net_driver_send(F.drv, 0, NULL, fr, sizeof(fr)), 0);
        ck_assert_int_eq(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_TXQ(0)), 1);
        ck_assert_int_ge(vio_net_dev_rx_process(F.nd, 0, 0), 0);
        if (F.msix) {
            ck_assert_uint_gt(F.fired[1], rx_irqs); /* RX queue -> vector 1 */
            ck_assert_uint_eq(F.fired[0], cfg_irqs); /* no config interrupt */
        } else {
            ck_assert_uint_gt(F.intx_raises, rx_irqs);
            ck_assert_uint_eq(F.intx_level, 1);
            ck_assert_uint_ne(cr(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
            ck_assert_uint_eq(br(F.isr, 1), VIO_PCI_ISR_QUEUE); /* read clears, lowers */
            ck_assert_uint_eq(F.intx_level, 0);
            ck_assert_uint_eq(br(F.isr, 1), 0);
        }
        ssize_t len = vio_net_driver_recv(F.drv, 0, NULL, got, sizeof(got));
        ck_assert_int_eq(len, (ssize_t)sizeof(fr));
        ck_assert_mem_eq(got, fr, sizeof(fr));
        vio_net_driver_tx_reclaim(F.drv, 0, NULL, 0);
        vio_net_driver_enable_cb(F.drv, VIO_NET_DRIVER_RXQ(0));
        ck_assert_int_ge(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_RXQ(0)), 0);
    }
}

START_TEST(probe_traffic_reset)
{
    enumerate();
    bring_up();
    traffic(8);
    bw(C(STATUS), 1, 0);
    ck_assert_uint_eq(br(C(STATUS), 1), 0);
    bw(C(Q_SELECT), 2, 0);
    ck_assert_uint_eq(br(C(Q_ENABLE), 2), 0);
    ck_assert_uint_eq(br(C(Q_SIZE), 2), 256);
    ck_assert_uint_eq(br(C(Q_MSIX), 2), VIO_PCI_NO_VECTOR);
    ck_assert_uint_eq(br(C(MSIX), 2), VIO_PCI_NO_VECTOR);
    ck_assert_int_eq(vio_pci_queue_notify(F.p, 1), -EIO);
    bring_up();
    traffic(4);
}
END_TEST

START_TEST(notify_info)
{
    struct vio_pci_notify_info ni;
    ck_assert_int_eq(vio_pci_notify_info(F.p, 2, &ni), 0);
    ck_assert_uint_eq(ni.bar, 4);
    ck_assert_uint_eq(ni.offset, F.l.notify_off + 2 * F.l.notify_mult);
    ck_assert_uint_eq(ni.size, 2);
    ck_assert_uint_eq(ni.value, 2);
    ck_assert_int_eq(vio_pci_notify_info(F.p, 3, &ni), -ERANGE);
    ck_assert_int_eq(vio_pci_notify_info(NULL, 0, &ni), -EINVAL);
    enumerate();
    bring_up();
    ck_assert_int_ge(vio_pci_queue_notify(F.p, 1), 0);
}
END_TEST

START_TEST(msix_masking_and_pba)
{
    enumerate();
    bring_up();
    /* mask vector 1 (RX): the interrupt becomes pending, then fires on unmask */
    uint64_t e1 = F.l.msix_table_off + 16;
    ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e1 + 12, 4, 1), 0);
    unsigned before = F.fired[1];
    ck_assert_int_gt(vio_net_driver_rx_fill(F.drv, 0), 0);
    vio_net_driver_enable_cb(F.drv, VIO_NET_DRIVER_RXQ(0));
    vio_net_driver_kick(F.drv, VIO_NET_DRIVER_RXQ(0));
    uint8_t fr[64] = {0};
    memcpy(fr, MAC, 6);
    ck_assert_int_eq(vio_net_driver_send(F.drv, 0, NULL, fr, sizeof(fr)), 0);
    vio_net_driver_kick(F.drv, VIO_NET_DRIVER_TXQ(0));
    vio_net_dev_rx_process(F.nd, 0, 0);
    ck_assert_uint_eq(F.fired[1], before);
    uint64_t pba;
    ck_assert_int_eq(vio_pci_bar_read(F.p, 1, F.l.msix_pba_off, 8, &pba), 0);
    ck_assert_uint_eq(pba, 2);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 1, e1 + 12, 4, 0), 0);
    ck_assert_uint_eq(F.fired[1], before + 1);
    ck_assert_int_eq(vio_pci_bar_read(F.p, 1, F.l.msix_pba_off, 8, &pba), 0);
    ck_assert_uint_eq(pba, 0);
    /* device-side NEEDS_RESET: config vector 0 fires, ISR config bit set */
    vio_pci_set_needs_reset(F.p);
    ck_assert_uint_eq(F.fired[0], 1);
    ck_assert_uint_eq(br(C(STATUS), 1), 0x4f);
}
END_TEST

START_TEST(pci_cfg_access_cap)
{
    enumerate();
    /* read the device id register of the common window through the PCI cfg capability */
    unsigned c = 0x90; /* found by walking in enumerate(); the layout is fixed */
    ck_assert_uint_eq(cr(c + 3, 1), VIRTIO_PCI_CAP_PCI_CFG);
    cw(c + 4, 1, 4);
    cw(c + 8, 4, F.common + VIRTIO_PCI_COMMON_NUMQ);
    cw(c + 12, 4, 2);
    ck_assert_uint_eq(cr(c + 16, 4) & 0xffff, 3);
    /* and write the status through it */
    cw(c + 8, 4, F.common + VIRTIO_PCI_COMMON_STATUS);
    cw(c + 12, 4, 1);
    cw(c + 16, 4, VIO_S_ACKNOWLEDGE);
    ck_assert_uint_eq(vio_pci_status(F.p), VIO_S_ACKNOWLEDGE);
}
END_TEST

START_TEST(new_rejects)
{
    struct vio_pci *p = NULL;
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(F.nd),
                                .mem = F.a.mem, .msix_vectors = 4};
    vio_pci_layout_default(&pc.layout);
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EBUSY);
    pc.layout.isr_off = 0x10; /* inside the common window */
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    vio_pci_layout_default(&pc.layout);
    pc.layout.notify_mult = 3;
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    vio_pci_layout_default(&pc.layout);
    pc.layout.bar_size = 0x3000;
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    vio_pci_layout_default(&pc.layout);
    pc.layout.msix_bar = 5; /* the upper half of 64-bit BAR 4 */
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    vio_pci_layout_default(&pc.layout);
    pc.msix_vectors = 4096;
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(vio_pci_new(NULL, &p), -EINVAL);
    vio_pci_free(NULL);
}
END_TEST



/* A two-pair device negotiated without MQ: virtio-net's control queue becomes queue 2, and
 * queue_size (never written since reset) follows the negotiated role's maximum. */
START_TEST(queue_size_follows_features)
{
    struct vio_net_backend be2;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 2};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &be2), 0);
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &be2,
                                    .max_queue_pairs = 2, .queue_size = 256,
                                    .ctrl_queue_size = 64};
    struct vio_net_dev *nd2;
    ck_assert_int_eq(vio_net_dev_new(&dc, &nd2), 0);
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(nd2),
                                .mem = F.a.mem};
    vio_pci_layout_default(&pc.layout);
    struct vio_pci *p2;
    ck_assert_int_eq(vio_pci_new(&pc, &p2), 0);
    uint64_t v;
    ck_assert_int_eq(vio_pci_bar_read(p2, 4, VIRTIO_PCI_COMMON_NUMQ, 2, &v), 0);
    ck_assert_uint_eq(v, 5);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_Q_SELECT, 2, 2), 0);
    ck_assert_int_eq(vio_pci_bar_read(p2, 4, VIRTIO_PCI_COMMON_Q_SIZE, 2, &v), 0);
    ck_assert_uint_eq(v, 256); /* rx1 while MQ may still be taken */
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_STATUS, 1, 3), 0);
    uint64_t f = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_NET_F_CTRL_VQ);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_GFSELECT, 4, 1), 0);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_GF, 4, f >> 32), 0);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_GFSELECT, 4, 0), 0);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)f), 0);
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_STATUS, 1, 0x0b), 0);
    ck_assert_int_eq(vio_pci_bar_read(p2, 4, VIRTIO_PCI_COMMON_Q_SIZE, 2, &v), 0);
    ck_assert_uint_eq(v, 64); /* now the control queue */
    ck_assert_int_eq(vio_pci_bar_write(p2, 4, VIRTIO_PCI_COMMON_Q_SELECT, 2, 3), 0);
    ck_assert_int_eq(vio_pci_bar_read(p2, 4, VIRTIO_PCI_COMMON_Q_SIZE, 2, &v), 0);
    ck_assert_uint_eq(v, 0); /* tx1 is unavailable without MQ */
    vio_pci_free(p2);
    vio_net_dev_free(nd2);
    vio_net_backend_destroy(&be2);
}
END_TEST

/* INTx: the command register's INTx disable masks the line, not the ISR. */
START_TEST(intx_disable)
{
    enumerate();
    bring_up();
    cw(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    vio_pci_set_needs_reset(F.p); /* a configuration interrupt */
    ck_assert_uint_eq(F.intx_level, 0);
    cw(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    ck_assert_uint_eq(F.intx_level, 1);
    ck_assert_uint_eq(br(F.isr, 1), VIO_PCI_ISR_CONFIG);
    ck_assert_uint_eq(F.intx_level, 0);
    ck_assert_uint_eq(br(C(STATUS), 1), 0x4f);
}
END_TEST

/* ------------------------------------------------------------------------ */

enum stage { ST_DRIVER, ST_FEAT, ST_LIVE };
enum space { SC = 1, SB, SM }; /* config space, BAR 4, BAR 1 (MSI-X) */

struct op {
    int space; /* 0: end; negative: read */
    uint32_t off;
    unsigned size;
    uint64_t val;
};

struct hostile {
    const char *name;
    enum stage stage;
    struct op ops[4];
    int last_rc;
    struct op chk; /* read (space, off, size) must give val; space 0: none */
    bool needs_reset;
};

#define CO(f) (VIRTIO_PCI_COMMON_##f)
#define RB(o, s) {-SB, (o), (s), 0}
#define WB(o, s, v) {SB, (o), (s), (v)}
#define RC(o, s) {-SC, (o), (s), 0}
#define WC(o, s, v) {SC, (o), (s), (v)}
#define WM(o, s, v) {SM, (o), (s), (v)}
#define CHB(o, s, v) {SB, (o), (s), (v)}
#define CHC(o, s, v) {SC, (o), (s), (v)}
#define NOCHK {0, 0, 0, 0}
#define ISR 0x1000u
#define DEV 0x2000u
#define NTF 0x3000u

static const struct hostile HOSTILE[] = {
    {"status read as 4 bytes", ST_DRIVER, {RB(CO(STATUS), 4)}, -EPROTO, CHB(CO(STATUS), 1, 3),
     false},
    {"queue_select read as 4 bytes", ST_DRIVER, {RB(CO(Q_SELECT), 4)}, -EPROTO, NOCHK, false},
    {"read of a reserved common offset", ST_DRIVER, {RB(0x3c, 4)}, -EPROTO, NOCHK, false},
    {"write to num_queues", ST_DRIVER, {WB(CO(NUMQ), 2, 9)}, -EPROTO, CHB(CO(NUMQ), 2, 3), false},
    {"write to device_feature", ST_DRIVER, {WB(CO(DF), 4, 0)}, -EPROTO, NOCHK, false},
    {"queue_select out of range", ST_FEAT, {WB(CO(Q_SELECT), 2, 99)}, 0, CHB(CO(Q_SIZE), 2, 0),
     false},
    {"queue_size of a missing queue", ST_FEAT, {WB(CO(Q_SELECT), 2, 99), WB(CO(Q_SIZE), 2, 64)},
     -EPROTO, CHB(CO(Q_SIZE), 2, 0), false},
    {"queue_size not a power of two", ST_FEAT, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_SIZE), 2, 100)},
     -EPROTO, CHB(CO(Q_SIZE), 2, 256), false},
    {"queue_size above the maximum", ST_FEAT, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_SIZE), 2, 512)},
     -EPROTO, CHB(CO(Q_SIZE), 2, 256), false},
    {"queue_size zero", ST_FEAT, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_SIZE), 2, 0)}, -EPROTO,
     CHB(CO(Q_SIZE), 2, 256), false},
    {"queue_msix_vector beyond the table", ST_FEAT,
     {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_MSIX), 2, NVEC)}, 0,
     CHB(CO(Q_MSIX), 2, VIO_PCI_NO_VECTOR), false},
    {"config_msix_vector beyond the table", ST_FEAT, {WB(CO(MSIX), 2, 5000)}, 0,
     CHB(CO(MSIX), 2, VIO_PCI_NO_VECTOR), false},
    {"queue_enable 0", ST_FEAT, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_ENABLE), 2, 0)}, -EPROTO,
     CHB(CO(Q_ENABLE), 2, 0), false},
    {"rings at address 0", ST_FEAT, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_ENABLE), 2, 1)}, -EPROTO,
     CHB(CO(STATUS), 1, 0x4b), true},
    {"rings misaligned", ST_FEAT,
     {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_DESCLO), 4, BASE + 8), WB(CO(Q_AVAILLO), 4, BASE + 0x1000),
      WB(CO(Q_ENABLE), 2, 1)}, -EPROTO, CHB(CO(Q_ENABLE), 2, 0), true},
    {"live queue: new size", ST_LIVE, {WB(CO(Q_SELECT), 2, 1), WB(CO(Q_SIZE), 2, 32)}, -EPROTO,
     CHB(CO(Q_SIZE), 2, QSIZE), false},
    {"live queue: new used address", ST_LIVE, {WB(CO(Q_SELECT), 2, 0), WB(CO(Q_USEDHI), 4, 1)},
     -EPROTO, CHB(CO(Q_USEDHI), 4, 0), false},
    {"features after FEATURES_OK", ST_FEAT, {WB(CO(GFSELECT), 4, 0), WB(CO(GF), 4, 0)}, -EPROTO,
     CHB(CO(GF), 4, 0), false},
    {"unoffered feature: FEATURES_OK refused", ST_DRIVER,
     {WB(CO(GFSELECT), 4, 1), WB(CO(GF), 4, 0x80000001u), WB(CO(STATUS), 1, 0x0b)}, -ENOTSUP,
     CHB(CO(STATUS), 1, 3), false},
    {"status sets NEEDS_RESET", ST_FEAT, {WB(CO(STATUS), 1, 0x4b)}, -EPROTO,
     CHB(CO(STATUS), 1, 0x0b), false},
    {"write to the ISR", ST_DRIVER, {WB(ISR, 1, 3)}, -EPROTO, CHB(ISR, 1, 0), false},
    {"read of the notify window", ST_LIVE, {RB(NTF, 2)}, -EPROTO, NOCHK, false},
    {"notify value of another queue", ST_LIVE, {WB(NTF + 4, 2, 0)}, -EPROTO, NOCHK, false},
    {"notify at an unaligned address", ST_LIVE, {WB(NTF + 2, 2, 0)}, -EPROTO, NOCHK, false},
    {"notify of a missing queue", ST_LIVE, {WB(NTF + 12, 2, 3)}, -EPROTO, NOCHK, false},
    {"device config read of 8 bytes", ST_DRIVER, {RB(DEV, 8)}, -EPROTO, NOCHK, false},
    {"device config read unaligned", ST_DRIVER, {RB(DEV + 1, 2)}, -EPROTO, NOCHK, false},
    {"BAR read outside any window", ST_DRIVER, {RB(0x3f00, 4)}, -EPROTO, NOCHK, false},
    {"MSI-X table 2-byte write", ST_DRIVER, {WM(8, 2, 1)}, -EPROTO, NOCHK, false},
    {"MSI-X PBA write", ST_DRIVER, {WM(0x800, 8, 1)}, -EPROTO, NOCHK, false},
    {"config space unaligned read", ST_DRIVER, {RC(1, 2)}, -EPROTO, NOCHK, false},
    {"config space 8-byte read", ST_DRIVER, {RC(0, 8)}, -EPROTO, NOCHK, false},
    {"config write to the vendor id", ST_DRIVER, {WC(0, 2, 0x1234)}, 0, CHC(0, 2, 0x1af4), false},
    {"config write to the capability pointer", ST_DRIVER, {WC(0x34, 1, 0x10)}, 0,
     CHC(0x34, 1, 0x40), false},
    {"extended config space", ST_DRIVER, {RC(0x100, 4)}, 0, CHC(0x100, 4, 0), false},
    {"pci cfg cap with length 3", ST_DRIVER, {WC(0x9c, 4, 3), WC(0xa0, 4, 1)}, -EPROTO, NOCHK,
     false},
};

static int do_op(const struct op *o, uint64_t *v)
{
    int s = o->space < 0 ? -o->space : o->space;
    bool rd = o->space < 0;
    uint32_t v32 = 0;
    int rc;
    switch (s) {
    case SC:
        rc = rd ? vio_pci_config_read(F.p, o->off, o->size, &v32)
                : vio_pci_config_write(F.p, o->off, o->size, (uint32_t)o->val);
        *v = v32;
        return rc;
    case SB:
        return rd ? vio_pci_bar_read(F.p, 4, o->off, o->size, v)
                  : vio_pci_bar_write(F.p, 4, o->off, o->size, o->val);
    default:
        return rd ? vio_pci_bar_read(F.p, 1, o->off, o->size, v)
                  : vio_pci_bar_write(F.p, 1, o->off, o->size, o->val);
    }
}

START_TEST(hostile_access)
{
    const struct hostile *t = &HOSTILE[_i];
    enumerate();
    if (t->stage == ST_LIVE) {
        bring_up();
    } else {
        bw(C(STATUS), 1, 0);
        bw(C(STATUS), 1, 1);
        bw(C(STATUS), 1, 3);
        bw(C(MSIX), 2, 0); /* config interrupts on vector 0 */
        if (t->stage == ST_FEAT) {
            bw(C(GFSELECT), 4, 1);
            bw(C(GF), 4, 1);
            bw(C(STATUS), 1, 0x0b);
        }
    }
    unsigned warn = F.log_warn;
    int rc = 0;
    for (unsigned k = 0; k < 4 && t->ops[k].space; k++) {
        uint64_t v = 0x5a;
        rc = do_op(&t->ops[k], &v);
        if (t->ops[k].space < 0 && rc < 0)
            ck_assert_uint_eq(v, 0);
    }
    ck_assert_msg(rc == t->last_rc, "%s: rc %d, want %d", t->name, rc, t->last_rc);
    if (rc < 0 && rc != -ENOTSUP)
        ck_assert_msg(F.log_warn > warn, "%s: not logged", t->name);
    if (t->chk.space) {
        struct op r = t->chk;
        r.space = -r.space;
        uint64_t v = 0;
        ck_assert_int_eq(do_op(&r, &v), 0);
        ck_assert_msg(v == t->chk.val, "%s: 0x%x reads 0x%llx, want 0x%llx", t->name, t->chk.off,
                      (unsigned long long)v, (unsigned long long)t->chk.val);
    }
    uint8_t st = vio_pci_status(F.p);
    ck_assert_msg(!!(st & VIO_S_NEEDS_RESET) == t->needs_reset, "%s: status 0x%x", t->name, st);
    if (t->needs_reset)
        ck_assert_uint_eq(F.fired[0], 1); /* config vector 0 */
    bw(C(STATUS), 1, 0);
    ck_assert_uint_eq(br(C(STATUS), 1), 0);
    bring_up();
    traffic(1);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Transitional: Linux's virtio_pci_legacy probe through I/O BAR 0                         */

static uint64_t lr(uint64_t off, unsigned size)
{
    uint64_t v = 0xdead;
    ck_assert_int_eq(vio_pci_bar_read(F.p, 0, off, size, &v), 0);
    return v;
}

static void lw(uint64_t off, unsigned size, uint64_t v)
{
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, off, size, v), 0);
}

static void setup_transitional(void)
{
    want_transitional = true;
    open_fx(true);
    want_transitional = false;
}

/* _i: 0 with MSI-X enabled by the guest, 1 without (the config then starts at 20) */
START_TEST(legacy_probe_traffic)
{
    bool mx = _i == 0;
    enumerate();
    if (!mx)
        cw(F.msix_at + PCI_MSIX_FLAGS, 2, 0);
    ck_assert(vio_pci_msix_enabled(F.p) == mx);
    const unsigned co = VIRTIO_PCI_CONFIG_OFF(mx);
    for (int round = 0; round < 2; round++) {
        lw(VIRTIO_PCI_STATUS, 1, 0);
        ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 0);
        lw(VIRTIO_PCI_STATUS, 1, VIO_S_ACKNOWLEDGE);
        lw(VIRTIO_PCI_STATUS, 1, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
        /* 32 feature bits: the offer's low word (VERSION_1, bit 32, is out of sight) */
        uint64_t offer = vio_device_features(vio_net_dev_device(F.nd));
        ck_assert_uint_eq(lr(VIRTIO_PCI_HOST_FEATURES, 4), (uint32_t)offer);
        uint32_t want = 1u << VIO_NET_F_MAC | 1u << VIO_NET_F_MRG_RXBUF | 1u << VIO_NET_F_STATUS;
        lw(VIRTIO_PCI_GUEST_FEATURES, 4, want);
        ck_assert_uint_eq(lr(VIRTIO_PCI_GUEST_FEATURES, 4), want);
        for (unsigned i = 0; i < 6; i++)
            ck_assert_uint_eq(lr(co + i, 1), MAC[i]);
        ck_assert_uint_ne(lr(co + 6, 2) & VIO_NET_S_LINK_UP, 0);
        if (mx) {
            lw(VIRTIO_MSI_CONFIG_VECTOR, 2, NVEC); /* beyond the table: NO_VECTOR */
            ck_assert_uint_eq(lr(VIRTIO_MSI_CONFIG_VECTOR, 2), VIO_PCI_NO_VECTOR);
            lw(VIRTIO_MSI_CONFIG_VECTOR, 2, 0);
            ck_assert_uint_eq(lr(VIRTIO_MSI_CONFIG_VECTOR, 2), 0);
        }
        struct rawring rr[2];
        for (unsigned q = 0; q < 2; q++) {
            lw(VIRTIO_PCI_QUEUE_SEL, 2, q);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_SEL, 2), q);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_NUM, 2), 256);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_PFN, 4), 0);
            if (mx) {
                lw(VIRTIO_MSI_QUEUE_VECTOR, 2, q + 1);
                ck_assert_uint_eq(lr(VIRTIO_MSI_QUEUE_VECTOR, 2), q + 1);
            }
            ck_assert_int_eq(rawring_init(&rr[q], &F.a, 256, VIRTIO_PCI_VRING_ALIGN), 0);
            ck_assert_uint_eq(rr[q].desc % 4096, 0);
            lw(VIRTIO_PCI_QUEUE_PFN, 4, rr[q].desc >> VIRTIO_PCI_QUEUE_ADDR_SHIFT);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_PFN, 4), rr[q].desc >> 12);
            /* the legacy layout, as the modern window shows it */
            bw(C(Q_SELECT), 2, q);
            ck_assert_uint_eq(br(C(Q_DESCLO), 4), rr[q].desc);
            ck_assert_uint_eq(br(C(Q_AVAILLO), 4), rr[q].avail);
            ck_assert_uint_eq(br(C(Q_USEDLO), 4), rr[q].used);
            ck_assert_uint_eq(br(C(Q_ENABLE), 2), 1);
            /* a live queue keeps its rings */
            ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_PFN, 4, 0x123), -EPROTO);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_PFN, 4), rr[q].desc >> 12);
        }
        /* no FEATURES_OK: a legacy driver goes straight to DRIVER_OK */
        lw(VIRTIO_PCI_STATUS, 1, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_DRIVER_OK);
        ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 7);
        ck_assert_uint_eq(vio_net_dev_features(F.nd), want);

        /* traffic: four RX buffers, one frame out through the loopback and back in */
        uint64_t rxb = arena_alloc_bufs(&F.a, 4, 2048, 0);
        ck_assert_uint_ne(rxb, 0);
        for (uint16_t k = 0; k < 4; k++) {
            struct rawseg sg = {rxb + 2048u * k, 2048, true};
            rawring_add_chain(&rr[0], k, &sg, 1);
        }
        lw(VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
        uint8_t fr[12 + 100] = {0}; /* the legacy header with MRG_RXBUF: 12 bytes */
        memcpy(fr + 12, MAC, 6);
        memcpy(fr + 18, "\x02\x00\x00\x00\x00\x07", 6);
        for (unsigned i = 24; i < sizeof(fr); i++)
            fr[i] = (uint8_t)(i + round);
        uint64_t txb = arena_alloc(&F.a, sizeof(fr), 16);
        ck_assert_int_eq(arena_write(&F.a, txb, fr, sizeof(fr)), 0);
        struct rawseg tx[2] = {{txb, 12, false}, {txb + 12, sizeof(fr) - 12, false}};
        rawring_add_chain(&rr[1], 0, tx, 2);
        unsigned irq_before = mx ? F.fired[1] : F.intx_raises;
        lw(VIRTIO_PCI_QUEUE_NOTIFY, 2, 1);
        ck_assert_int_ge(vio_net_dev_rx_process(F.nd, 0, 0), 0);
        uint32_t id, len;
        ck_assert_int_eq(rawring_take_used(&rr[1], &id, &len), 0);
        ck_assert_uint_eq(id, 0);
        ck_assert_int_eq(rawring_take_used(&rr[0], &id, &len), 0);
        ck_assert_uint_eq(len, sizeof(fr));
        uint8_t got[sizeof(fr)];
        ck_assert_int_eq(arena_read(&F.a, rxb + 2048u * id, got, sizeof(got)), 0);
        ck_assert_mem_eq(got + 12, fr + 12, sizeof(fr) - 12);
        ck_assert_uint_eq(got[10] | got[11] << 8, 1); /* num_buffers */
        if (mx) {
            ck_assert_uint_gt(F.fired[1], irq_before); /* RX -> vector 1 */
        } else {
            ck_assert_uint_gt(F.intx_raises, irq_before);
            ck_assert_uint_eq(lr(VIRTIO_PCI_ISR, 1), VIO_PCI_ISR_QUEUE); /* read clears */
            ck_assert_uint_eq(F.intx_level, 0);
            ck_assert_uint_eq(lr(VIRTIO_PCI_ISR, 1), 0);
        }
        /* reset forgets the PFNs */
        lw(VIRTIO_PCI_STATUS, 1, 0);
        ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 0);
        for (unsigned q = 0; q < 2; q++) {
            lw(VIRTIO_PCI_QUEUE_SEL, 2, q);
            ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_PFN, 4), 0);
        }
    }
}
END_TEST

/* Legacy registers a driver abuses: every access refused with -EPROTO, nothing changes. */
START_TEST(legacy_hostile)
{
    enumerate(); /* MSI-X on */
    uint64_t v;
    lw(VIRTIO_PCI_STATUS, 1, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
    /* wrong widths, a read-only register, the write-only notify */
    ck_assert_int_eq(vio_pci_bar_read(F.p, 0, VIRTIO_PCI_HOST_FEATURES, 2, &v), -EPROTO);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(vio_pci_bar_read(F.p, 0, VIRTIO_PCI_STATUS, 4, &v), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_HOST_FEATURES, 4, 0), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_NUM, 2, 64), -EPROTO);
    ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_NUM, 2), 256);
    ck_assert_int_eq(vio_pci_bar_read(F.p, 0, VIRTIO_PCI_QUEUE_NOTIFY, 2, &v), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_SEL, 4, 0), -EPROTO);
    /* an unavailable queue: QUEUE_NUM 0, its PFN and vector refused */
    lw(VIRTIO_PCI_QUEUE_SEL, 2, 7);
    ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_NUM, 2), 0);
    ck_assert_uint_eq(lr(VIRTIO_MSI_QUEUE_VECTOR, 2), VIO_PCI_NO_VECTOR);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_PFN, 4, 0x200), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_MSI_QUEUE_VECTOR, 2, 1), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_NOTIFY, 2, 7), -EPROTO);
    /* a queue vector beyond the table reads NO_VECTOR */
    lw(VIRTIO_PCI_QUEUE_SEL, 2, 0);
    lw(VIRTIO_MSI_QUEUE_VECTOR, 2, NVEC + 1);
    ck_assert_uint_eq(lr(VIRTIO_MSI_QUEUE_VECTOR, 2), VIO_PCI_NO_VECTOR);
    /* outside the BAR, and a BAR that is not there */
    ck_assert_int_eq(vio_pci_bar_read(F.p, 0, 64, 1, &v), -EPROTO);
    ck_assert_int_eq(vio_pci_bar_read(F.p, 2, 0, 4, &v), -EPROTO);
    ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 3);
    /* a PFN outside guest memory: NEEDS_RESET and a config interrupt */
    ck_assert_int_eq(vio_pci_bar_write(F.p, 0, VIRTIO_PCI_QUEUE_PFN, 4, 0xfffff), -EPROTO);
    ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 0x43);
    ck_assert_uint_eq(lr(VIRTIO_PCI_QUEUE_PFN, 4), 0);
    lw(VIRTIO_PCI_STATUS, 1, 0);
    ck_assert_uint_eq(lr(VIRTIO_PCI_STATUS, 1), 0);
}
END_TEST

/* A modern driver on the transitional function: the capabilities work as before. */
START_TEST(transitional_modern_driver)
{
    enumerate();
    bring_up();
    traffic(3);
}
END_TEST

START_TEST(transitional_new_rejects)
{
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    ck_assert_int_eq(vio_net_loopback_open(NULL, &be), 0);
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &be};
    ck_assert_int_eq(vio_net_dev_new(&dc, &nd), 0);
    struct vio_pci *p = NULL;
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(nd),
                                .mem = F.a.mem, .msix_vectors = 4, .transitional = true};
    vio_pci_layout_default(&pc.layout);
    static const uint8_t bad_bars[] = {1, 4, 5, 6};
    for (unsigned i = 0; i < sizeof(bad_bars); i++) {
        pc.legacy_bar = bad_bars[i];
        ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
        ck_assert_ptr_null(p);
    }
    pc.legacy_bar = 2;
    ck_assert_int_eq(vio_pci_new(&pc, &p), 0);
    uint32_t id;
    ck_assert_int_eq(vio_pci_config_read(p, PCI_DEVICE_ID, 2, &id), 0);
    ck_assert_uint_eq(id, 0x1000);
    ck_assert_int_eq(vio_pci_config_read(p, PCI_BASE_ADDRESS_2, 4, &id), 0);
    ck_assert_uint_eq(id, PCI_BASE_ADDRESS_SPACE_IO);
    vio_pci_free(p);
    /* a caller built before the transitional fields: a modern-only device */
    pc.struct_size = offsetof(struct vio_pci_config, transitional);
    ck_assert_int_eq(vio_pci_new(&pc, &p), 0);
    ck_assert_int_eq(vio_pci_config_read(p, PCI_DEVICE_ID, 2, &id), 0);
    ck_assert_uint_eq(id, 0x1041);
    vio_pci_free(p);
    pc.struct_size = offsetof(struct vio_pci_config, transitional) - 1;
    ck_assert_int_eq(vio_pci_new(&pc, &p), -EINVAL);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* VIRTIO_F_NOTIFICATION_DATA                                                */

#define F_NOTIF_DATA 38

static void setup_notif(void)
{
    want_notif_data = true;
    open_fx(true);
    want_notif_data = false;
}

START_TEST(notification_data)
{
    enumerate();
    bw(C(STATUS), 1, 0);
    bw(C(STATUS), 1, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
    bw(C(DFSELECT), 4, 1);
    uint64_t f = br(C(DF), 4) << 32;
    bw(C(DFSELECT), 4, 0);
    f |= br(C(DF), 4);
    /* the transport offers it; the device model does not know the bit */
    ck_assert(vio_has_feature(f, F_NOTIF_DATA));
    ck_assert(!vio_has_feature(vio_device_features(vio_net_dev_device(F.nd)), F_NOTIF_DATA));
    F.feats = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_NET_F_MAC) |
              vio_feature_bit(VIO_NET_F_MRG_RXBUF) | vio_feature_bit(F_NOTIF_DATA);
    bw(C(GFSELECT), 4, 0);
    bw(C(GF), 4, (uint32_t)F.feats);
    bw(C(GFSELECT), 4, 1);
    bw(C(GF), 4, (uint32_t)(F.feats >> 32));
    bw(C(STATUS), 1, 0x0b);
    ck_assert_uint_eq(br(C(STATUS), 1), 0x0b);
    ck_assert(!vio_has_feature(vio_net_dev_features(F.nd), F_NOTIF_DATA));
    bw(C(MSIX), 2, 0);
    setup_queues();
    /* the 32-bit form: vqn | next avail index << 16, passed on before processing */
    bw(F.notify + 1ull * F.mult, 4, 0x12340001u);
    ck_assert_uint_eq(F.nd_calls, 1);
    ck_assert_uint_eq(F.nd_q, 1);
    ck_assert_uint_eq(F.nd_next, 0x1234);
    /* the vqn must still name the queue of the address */
    ck_assert_int_eq(vio_pci_bar_write(F.p, F.cbar, F.notify + 1ull * F.mult, 4, 0x00050000u),
                     -EPROTO);
    ck_assert_uint_eq(F.nd_calls, 1);
    /* net_driver's kicks are 2-byte writes: they still notify (logged at debug), no data */
    traffic(2);
    ck_assert_uint_eq(F.nd_calls, 1);
}
END_TEST

START_TEST(notification_data_not_negotiated)
{
    enumerate();
    bring_up(); /* takes VERSION_1, EVENT_IDX, MAC, MRG_RXBUF only */
    bw(F.notify + 1ull * F.mult, 4, 0x12340001u); /* upper half ignored */
    ck_assert_uint_eq(F.nd_calls, 0);
    traffic(1);
}
END_TEST

static Suite *pci_suite(void)
{
    Suite *s = suite_create("pci");
    TCase *tc = tcase_create("linux_probe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, probe_traffic_reset);
    tcase_add_test(tc, notify_info);
    tcase_add_test(tc, msix_masking_and_pba);
    tcase_add_test(tc, pci_cfg_access_cap);
    tcase_add_test(tc, new_rejects);
    tcase_add_test(tc, queue_size_follows_features);
    suite_add_tcase(s, tc);
    tc = tcase_create("intx");
    tcase_add_checked_fixture(tc, setup_intx, teardown);
    tcase_add_test(tc, probe_traffic_reset);
    tcase_add_test(tc, intx_disable);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, hostile_access, 0, (int)(sizeof(HOSTILE) / sizeof(HOSTILE[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("transitional");
    tcase_add_checked_fixture(tc, setup_transitional, teardown);
    tcase_add_loop_test(tc, legacy_probe_traffic, 0, 2);
    tcase_add_test(tc, legacy_hostile);
    tcase_add_test(tc, transitional_modern_driver);
    tcase_add_test(tc, transitional_new_rejects);
    suite_add_tcase(s, tc);
    tc = tcase_create("notification_data");
    tcase_add_checked_fixture(tc, setup_notif, teardown);
    tcase_add_test(tc, notification_data);
    tcase_add_test(tc, notification_data_not_negotiated);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pci_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
