/* SPDX-License-Identifier: MIT */
/*
 * Differential test: one recorded sequence of register accesses played in lock step against
 * QEMU's own virtio-net models (over qtest, ../shared/PEERS.md) and against our device side
 * (vio_pci / vio_mmio bound to our virtio-net model on the loopback backend, in process):
 *
 *   diff_qtest pci          q35, virtio-net-pci,disable-legacy=on  vs vio_pci
 *   diff_qtest pci-transitional  both transitional (QEMU's default virtio-net-pci, ours
 *                           .transitional), driven through the modern capabilities
 *   diff_qtest pci-legacy   the same two, driven through the legacy I/O BAR 0
 *   diff_qtest mmio         microvm, virtio-net-device, force-legacy=false  vs vio_mmio (v2)
 *   diff_qtest mmio-legacy  microvm, QEMU's default legacy virtio-mmio v1  vs vio_mmio legacy
 *
 * The sequence is what Linux's virtio_pci_modern / virtio_mmio + virtio_net probe does (IDs,
 * capabilities or magic/version, reset, ACKNOWLEDGE, DRIVER, both device feature words,
 * driver features, FEATURES_OK and its read-back, per queue select / size / vector /
 * addresses / enable, the net config fields, DRIVER_OK), then a reset and a second probe, then
 * accesses that break the spec's driver rules.
 *
 * Every access is classified:
 *   CMP   the spec defines the value: QEMU and we must read the same (under a mask where the
 *         two devices are configured differently; the mask is printed and explained);
 *   DEV   a known QEMU deviation from the spec (table deviations[] below, naming the spec
 *         section): the values differ and OUR value must be the one the spec asks for;
 *   UNDEF the driver broke a rule and the spec leaves the device's answer open: both values
 *         are printed, ours must be what our transport documents (the access refused: 0 or
 *         the unchanged register);
 *   INFO  a layout choice of the VMM (capability positions, window lengths): printed only.
 * Writes are played on both sides and listed. The whole table is printed; exit 0 pass,
 * 1 fail, 77 skip (no qemu-system-x86_64).
 *
 * The two devices are configured to offer the same: QEMU's virtio-net on a dgram netdev has
 * no vnet header peer, so it offers no checksum/TSO/UFO offloads; ours gets the offloads,
 * IN_ORDER and HOST_USO switched off (features_off); both offer MTU 1500; QEMU has
 * 4 MSI-X vectors, ours too. What still differs in the offer is masked and listed under
 * "feature mask".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net_transport.h"
#include "qtest.h"
#include "virtio/mem.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/pci.h"
#include "virtio/status.h"

#define RAM_SIZE (64u << 20)
#define RING_GPA 0x200000u /* queue i's rings at RING_GPA + i * 0x10000 */
#define NVEC 4u
#define MAC "52:54:00:12:34:56"
#define BAR_WIN 0xe0000000u  /* BAR4 (64-bit, the virtio windows) */
#define BAR_MSIX 0xe0010000u /* BAR1 (MSI-X table and PBA) */
#define MMIO_FIRST 0xfeb00000u

static const uint8_t mac_bytes[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

/* ------------------------------------------------------------------------ */
/* spaces and targets                                                        */

enum space { SP_CFG, SP_COMMON, SP_ISR, SP_DEVCFG, SP_NOTIFY, SP_MSIXTAB, SP_MMIO, SP_LEGACY,
             SP_N };
static const char *const space_name[SP_N] = {"cfg", "common", "isr", "devcfg", "notify",
                                             "msix", "mmio", "io"};

struct target {
    const char *name;
    bool qemu;
    /* QEMU: guest-physical base of each BAR window; ours: offset inside the BAR */
    uint64_t base[SP_N];
    unsigned bar[SP_N];  /* ours: BAR index of the window */
    unsigned msix_cap;   /* configuration-space offset of the MSI-X capability */
    unsigned notify_mult;
    struct vio_pci *p;
    struct vio_mmio *m;
};

static struct qtest *qt;
static unsigned pci_devfn;
static bool is_pci, is_legacy, is_pci_legacy, is_pci_trans; /* trans: either interface */
static struct target tq = {.name = "qemu", .qemu = true}, to = {.name = "ours"};

static int q_access(struct target *t, bool wr, enum space s, uint64_t off, unsigned size,
                    uint64_t *v)
{
    if (s == SP_CFG) {
        int r = qtest_outl(qt, 0xcf8, 0x80000000u | pci_devfn << 8 | (uint32_t)(off & 0xfc));
        if (r)
            return r;
        uint16_t port = (uint16_t)(0xcfc + (off & 3));
        if (wr)
            return qtest_out(qt, size, port, (uint32_t)*v);
        uint32_t x = 0;
        r = qtest_in(qt, size, port, &x);
        *v = x;
        return r;
    }
    if (s == SP_LEGACY) {
        uint16_t port = (uint16_t)(t->base[s] + off);
        if (wr)
            return qtest_out(qt, size, port, (uint32_t)*v);
        uint32_t x = 0;
        int r = qtest_in(qt, size, port, &x);
        *v = x;
        return r;
    }
    uint64_t a = t->base[s] + off;
    return wr ? qtest_writen(qt, a, size, *v) : qtest_readn(qt, a, size, v);
}

static int o_access(struct target *t, bool wr, enum space s, uint64_t off, unsigned size,
                    uint64_t *v)
{
    if (s == SP_MMIO)
        return wr ? vio_mmio_write(t->m, off, size, *v) : vio_mmio_read(t->m, off, size, v);
    if (s == SP_CFG) {
        if (wr)
            return vio_pci_config_write(t->p, (uint32_t)off, size, (uint32_t)*v);
        uint32_t x = 0;
        int r = vio_pci_config_read(t->p, (uint32_t)off, size, &x);
        *v = x;
        return r;
    }
    if (s == SP_LEGACY)
        return wr ? vio_pci_bar_write(t->p, 0, off, size, *v)
                  : vio_pci_bar_read(t->p, 0, off, size, v);
    uint64_t o = t->base[s] + off;
    return wr ? vio_pci_bar_write(t->p, t->bar[s], o, size, *v)
              : vio_pci_bar_read(t->p, t->bar[s], o, size, v);
}

static int t_access(struct target *t, bool wr, enum space s, uint64_t off, unsigned size,
                    uint64_t *v)
{
    return t->qemu ? q_access(t, wr, s, off, size, v) : o_access(t, wr, s, off, size, v);
}

/* ------------------------------------------------------------------------ */
/* the known deviations of QEMU 7.2 from the spec                            */

struct deviation {
    const char *label;   /* the step it applies to */
    const char *section; /* virtio 1.2 section */
    const char *rule;    /* what the spec asks */
    uint64_t spec_value; /* what the device must read (ours is asserted to) */
    unsigned checked;    /* times the step ran */
    unsigned seen;       /* times QEMU was observed to differ */
};

static struct deviation deviations[] = {
    {"oob-qsel-4096.queue_size", "4.1.4.3.1",
     "device MUST present 0 in queue_size if the virtqueue of the current queue_select is "
     "unavailable (QEMU ignores a queue_select >= 1024 and keeps the previous queue)",
     0, 0},
    {"oob-qsel-4096.queue_select", "4.1.4.3 (queue_select)",
     "queue_select is the driver's: it reads back what was written (QEMU keeps the old value "
     "for >= 1024)",
     4096, 0},
    {"oob-qsel-4096.queue_enable", "4.1.4.3.1",
     "no virtqueue is selected: nothing is enabled, queue_enable reads 0 (QEMU shows the "
     "previous queue's)",
     0, 0},
    {"oob-qsel-4096.queue_msix_vector", "4.1.5.1.2.1 / 4.1.4.3.1",
     "an unavailable queue has no vector, its queue_msix_vector reads NO_VECTOR (QEMU shows "
     "the previous queue's)",
     0xffff, 0},
    {"sel-2.DeviceFeatures", "4.2.2.1",
     "the device MUST present the feature bits starting at bit DeviceFeaturesSel * 32: none "
     "at 64.. (QEMU's v2 transport shows word 1 for any selector other than 0)",
     0, 0},
    {"sel-max.DeviceFeatures", "4.2.2.1", "as above, DeviceFeaturesSel 0xffffffff", 0, 0},
    {"oob-qsel-4096.QueueNumMax", "4.2.2 (QueueNumMax)",
     "zero if the queue is not available (QEMU ignores a QueueSel >= 1024 and shows queue "
     "1's maximum)",
     0, 0},
    {"legacy.oob-qsel-4096.QUEUE_NUM", "4.1.4.10 / 4.1.4.3.1",
     "legacy QUEUE_NUM reads 0 for a queue that is not available (QEMU ignores a QUEUE_SEL "
     ">= 1024 and shows queue 1's size)",
     0, 0},
    {"legacy.oob-qsel-4096.QUEUE_SEL", "4.1.4.10 (QUEUE_SEL)",
     "QUEUE_SEL reads back what the driver wrote (QEMU keeps the old value for >= 1024)", 4096,
     0},
    {"legacy.oob-qsel-4096.QUEUE_PFN", "4.1.4.10",
     "no queue is selected: no PFN (QEMU shows queue 1's)", 0, 0},
    {"unoffered-feature.status", "2.2.2 / 3.1.1",
     "the device MUST NOT accept FEATURES_OK for a feature set that is not a subset of its "
     "offer (QEMU drops the unoffered bit silently and sets FEATURES_OK)",
     VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 0},
    {"mmio.unoffered-feature.status", "2.2.2 / 3.1.1",
     "the device MUST NOT accept FEATURES_OK for a feature set that is not a subset of its "
     "offer (QEMU drops the unoffered bit silently and sets FEATURES_OK)",
     VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 0},
};

static struct deviation *find_dev(const char *label)
{
    for (size_t i = 0; i < sizeof(deviations) / sizeof(deviations[0]); i++)
        if (!strcmp(deviations[i].label, label))
            return &deviations[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* the lock-step player                                                      */

static int failures;
static unsigned n_cmp, n_dev, n_undef, n_info, n_write;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  FAIL: ");
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    failures++;
}

enum cls { CMP, UNDEF, INFO };

/* A read on both sides. For UNDEF, @p ours_want is our documented answer. Returns ours. */
static uint64_t rd(const char *label, enum cls c, enum space s, uint64_t off, unsigned size,
                   uint64_t mask, uint64_t ours_want)
{
    uint64_t vq = 0, vo = 0;
    int rq = t_access(&tq, false, s, off, size, &vq);
    int ro = t_access(&to, false, s, off, size, &vo);
    if (rq < 0)
        fail("%s: qtest read failed: %d", label, rq);
    const char *verdict;
    struct deviation *d = c == CMP ? find_dev(label) : NULL;
    if (d) {
        n_dev++;
        d->checked++;
        if ((vq & mask) != (vo & mask))
            d->seen++;
        verdict = (vo & mask) == (d->spec_value & mask) ? "DEV ok" : "DEV BAD";
        if ((vo & mask) != (d->spec_value & mask))
            fail("%s: ours 0x%llx, the spec (%s) asks 0x%llx", label, (unsigned long long)vo,
                 d->section, (unsigned long long)d->spec_value);
    } else if (c == CMP) {
        n_cmp++;
        verdict = (vq & mask) == (vo & mask) ? "same" : "DIFF";
        if ((vq & mask) != (vo & mask))
            fail("%s: QEMU 0x%llx, ours 0x%llx (mask 0x%llx)", label, (unsigned long long)vq,
                 (unsigned long long)vo, (unsigned long long)mask);
    } else if (c == UNDEF) {
        n_undef++;
        verdict = vo == ours_want ? "undef ok" : "undef BAD";
        if (vo != ours_want)
            fail("%s: ours 0x%llx, our transport documents 0x%llx", label,
                 (unsigned long long)vo, (unsigned long long)ours_want);
    } else {
        n_info++;
        verdict = "info";
    }
    printf("  R %-36s %-6s +0x%03llx/%u  %-18llx %-18llx %s%s\n", label, space_name[s],
           (unsigned long long)off, size, (unsigned long long)vq, (unsigned long long)vo,
           verdict, ro < 0 ? " (refused)" : "");
    return vo;
}

static void wr(const char *label, enum space s, uint64_t off, unsigned size, uint64_t v)
{
    uint64_t a = v, b = v;
    int rq = t_access(&tq, true, s, off, size, &a);
    int ro = t_access(&to, true, s, off, size, &b);
    if (rq < 0)
        fail("%s: qtest write failed: %d", label, rq);
    n_write++;
    printf("  W %-36s %-6s +0x%03llx/%u  %-37llx %s\n", label, space_name[s],
           (unsigned long long)off, size, (unsigned long long)v,
           ro < 0 ? (ro == -EPROTO ? "(ours refused)" : "(ours: error)") : "");
}

/* Write on one side only (setup that is layout, not register semantics). */
static void wr_one(struct target *t, enum space s, uint64_t off, unsigned size, uint64_t v)
{
    if (t_access(t, true, s, off, size, &v) < 0)
        fail("%s: setup write at %s+0x%llx failed", t->name, space_name[s],
             (unsigned long long)off);
}

static uint64_t rd_one(struct target *t, enum space s, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    if (t_access(t, false, s, off, size, &v) < 0 && t->qemu)
        fail("qemu: setup read at %s+0x%llx failed", space_name[s], (unsigned long long)off);
    return v;
}

static char lbl_buf[96];
static const char *L(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lbl_buf, sizeof(lbl_buf), fmt, ap);
    va_end(ap);
    return lbl_buf;
}

/* ------------------------------------------------------------------------ */
/* features                                                                  */

/* Bits compared in the offer: those both devices are configured to offer the same. The rest
 * differ by configuration, not by spec (printed): QEMU 7.2 offers NOTIFY_ON_EMPTY and
 * ANY_LAYOUT only with a legacy interface, RING_RESET (bit 40, ours masks it: not implemented)
 * and ACCESS_PLATFORM never here; GUEST_ANNOUNCE/CTRL_* are both offered; our model offers
 * CTRL_GUEST_OFFLOADS only with offloads (switched off). */
static const uint64_t feat_mask =
    (1ull << VIO_NET_F_MTU) | (1ull << VIO_NET_F_MAC) | (1ull << VIO_NET_F_MRG_RXBUF) |
    (1ull << VIO_NET_F_STATUS) | (1ull << VIO_NET_F_CTRL_VQ) | (1ull << VIO_NET_F_CTRL_RX) |
    (1ull << VIO_NET_F_CTRL_VLAN) | (1ull << VIO_NET_F_CTRL_RX_EXTRA) |
    (1ull << VIO_NET_F_GUEST_ANNOUNCE) | (1ull << VIO_NET_F_MQ) |
    (1ull << VIO_NET_F_CTRL_MAC_ADDR) | (1ull << VIO_NET_F_CSUM) |
    (1ull << VIO_NET_F_GUEST_CSUM) | (1ull << VIO_NET_F_HOST_TSO4) |
    (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX) |
    (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_IN_ORDER) | (1ull << VIRTIO_F_RING_PACKED);

/* what the driver accepts (Linux's virtio_net would take more; this is a fixed subset) */
static const uint64_t drv_feat = (1ull << VIO_NET_F_MTU) | (1ull << VIO_NET_F_MAC) |
                                 (1ull << VIO_NET_F_MRG_RXBUF) | (1ull << VIO_NET_F_STATUS) |
                                 (1ull << VIO_NET_F_CTRL_VQ) | (1ull << VIO_NET_F_CTRL_RX) |
                                 (1ull << VIRTIO_RING_F_EVENT_IDX) |
                                 (1ull << VIRTIO_F_VERSION_1);

/* ------------------------------------------------------------------------ */
/* virtio-PCI modern                                                         */

#define C(x) VIRTIO_PCI_COMMON_##x

/* The capability walk (Linux's virtio_pci_find_capability) on one side: fills base[] / bar[]
 * and prints the structures (their positions and lengths are the VMM's choice: INFO). */
static int pci_walk(struct target *t)
{
    unsigned pos = (unsigned)rd_one(t, SP_CFG, PCI_CAPABILITY_LIST, 1) & 0xfc;
    unsigned seen = 0, hops = 0;
    while (pos && hops++ < 48) {
        unsigned id = (unsigned)rd_one(t, SP_CFG, pos, 1);
        unsigned next = (unsigned)rd_one(t, SP_CFG, pos + 1, 1) & 0xfc;
        if (id == PCI_CAP_ID_MSIX) {
            t->msix_cap = pos;
            uint32_t tab = (uint32_t)rd_one(t, SP_CFG, pos + PCI_MSIX_TABLE, 4);
            t->bar[SP_MSIXTAB] = tab & 7;
            t->base[SP_MSIXTAB] = tab & ~7u;
            printf("  %s: MSI-X cap at 0x%02x, table BAR%u+0x%x\n", t->name, pos, tab & 7,
                   tab & ~7u);
        } else if (id == PCI_CAP_ID_VNDR) {
            unsigned type = (unsigned)rd_one(t, SP_CFG, pos + 3, 1);
            unsigned bar = (unsigned)rd_one(t, SP_CFG, pos + 4, 1);
            uint32_t off = (uint32_t)rd_one(t, SP_CFG, pos + 8, 4);
            uint32_t len = (uint32_t)rd_one(t, SP_CFG, pos + 12, 4);
            enum space s = type == VIRTIO_PCI_CAP_COMMON_CFG   ? SP_COMMON
                           : type == VIRTIO_PCI_CAP_ISR_CFG    ? SP_ISR
                           : type == VIRTIO_PCI_CAP_DEVICE_CFG ? SP_DEVCFG
                           : type == VIRTIO_PCI_CAP_NOTIFY_CFG ? SP_NOTIFY
                                                               : SP_N;
            if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
                t->notify_mult = (unsigned)rd_one(t, SP_CFG, pos + 16, 4);
            if (s != SP_N && !(seen & 1u << type)) {
                t->bar[s] = bar;
                t->base[s] = off;
            }
            if (type >= 1 && type <= 5)
                seen |= 1u << type;
            printf("  %s: virtio cap type %u at 0x%02x: BAR%u+0x%x len 0x%x\n", t->name, type,
                   pos, bar, off, len);
        }
        pos = next;
    }
    return seen == 0x3e ? 0 : -1; /* types 1..5 */
}

static void pci_ids(void)
{
    rd("vendor_id", CMP, SP_CFG, PCI_VENDOR_ID, 2, 0xffff, 0);
    rd("device_id", CMP, SP_CFG, PCI_DEVICE_ID, 2, 0xffff, 0);
    rd("revision", CMP, SP_CFG, PCI_REVISION_ID, 1, 0xff, 0);
    rd("class", CMP, SP_CFG, PCI_CLASS_PROG, 1, 0xff, 0);
    rd("class.device", CMP, SP_CFG, PCI_CLASS_DEVICE, 2, 0xffff, 0);
    rd("header_type", CMP, SP_CFG, PCI_HEADER_TYPE, 1, 0x7f, 0);
    rd("status.cap_list", CMP, SP_CFG, PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0);
    rd("subsys_vendor", INFO, SP_CFG, PCI_SUBSYSTEM_VENDOR_ID, 2, 0, 0);
    rd("subsys_id", INFO, SP_CFG, PCI_SUBSYSTEM_ID, 2, 0, 0);
    rd("interrupt_pin", CMP, SP_CFG, PCI_INTERRUPT_PIN, 1, 0xff, 0);
    rd("cap_list", INFO, SP_CFG, PCI_CAPABILITY_LIST, 1, 0, 0);
    /* BAR sizing, as firmware does it, then placement */
    static const unsigned bars[] = {1, 4, 5};
    for (unsigned i = 0; i < 3; i++) {
        unsigned o = PCI_BASE_ADDRESS_0 + 4 * bars[i];
        wr(L("bar%u.size-probe", bars[i]), SP_CFG, o, 4, 0xffffffffu);
        rd(L("bar%u.size", bars[i]), CMP, SP_CFG, o, 4, 0xffffffffu, 0);
    }
    wr("bar1", SP_CFG, PCI_BASE_ADDRESS_1, 4, BAR_MSIX);
    wr("bar4", SP_CFG, PCI_BASE_ADDRESS_4, 4, BAR_WIN);
    wr("bar5", SP_CFG, PCI_BASE_ADDRESS_5, 4, 0);
    rd("bar4.readback", CMP, SP_CFG, PCI_BASE_ADDRESS_4, 4, 0xffffffffu, 0);
    wr("command=mem|master", SP_CFG, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    rd("command", CMP, SP_CFG, PCI_COMMAND, 2,
       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_IO, 0);
}

/* One probe: reset, negotiate, queues, config, DRIVER_OK (Linux's order). */
static void pci_probe(const char *tag)
{
    char l[64];
#define LB(x) (snprintf(l, sizeof(l), "%s.%s", tag, x), l)
    wr(LB("reset"), SP_COMMON, C(STATUS), 1, 0);
    rd(LB("status=0"), CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    wr(LB("ACK"), SP_COMMON, C(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(LB("DRIVER"), SP_COMMON, C(STATUS), 1,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    rd(LB("status"), CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    for (unsigned w = 0; w < 2; w++) {
        wr(LB("device_feature_select"), SP_COMMON, C(DFSELECT), 4, w);
        rd(LB("device_feature_select"), CMP, SP_COMMON, C(DFSELECT), 4, 0xffffffffu, 0);
        rd(w ? LB("device_feature.hi") : LB("device_feature.lo"), CMP, SP_COMMON, C(DF), 4,
           (uint32_t)(feat_mask >> (32 * w)), 0);
    }
    rd(LB("num_queues"), CMP, SP_COMMON, C(NUMQ), 2, 0xffff, 0);
    for (unsigned w = 0; w < 2; w++) {
        wr(LB("driver_feature_select"), SP_COMMON, C(GFSELECT), 4, w);
        wr(LB("driver_feature"), SP_COMMON, C(GF), 4, (uint32_t)(drv_feat >> (32 * w)));
        rd(w ? LB("driver_feature.hi") : LB("driver_feature.lo"), CMP, SP_COMMON, C(GF), 4,
           0xffffffffu, 0);
    }
    wr(LB("FEATURES_OK"), SP_COMMON, C(STATUS), 1,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    rd(LB("status.features_ok"), CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    /* the net config Linux's virtnet_probe reads (MAC, status, MTU; max pairs is only
     * defined with MQ, which neither offers here) */
    for (unsigned i = 0; i < 6; i++)
        rd(L("%s.config.mac[%u]", tag, i), CMP, SP_DEVCFG, i, 1, 0xff, 0);
    rd(LB("config.status"), CMP, SP_DEVCFG, 6, 2, 0xffff, 0);
    rd(LB("config.max_virtqueue_pairs"), INFO, SP_DEVCFG, 8, 2, 0, 0);
    rd(LB("config.mtu"), CMP, SP_DEVCFG, 10, 2, 0xffff, 0);
    /* the generation's value is the device's (only its change is defined): shown */
    rd(LB("config_generation"), INFO, SP_COMMON, C(CFGGENERATION), 1, 0, 0);
    /* vectors: config on 0, queue i on i + 1 (vp_find_vqs_msix with per-vq vectors) */
    wr(LB("msix_config=0"), SP_COMMON, C(MSIX), 2, 0);
    rd(LB("msix_config"), CMP, SP_COMMON, C(MSIX), 2, 0xffff, 0);
    for (unsigned q = 0; q < 3; q++) {
        uint64_t rg = RING_GPA + q * 0x10000u;
        wr(L("%s.q%u.queue_select", tag, q), SP_COMMON, C(Q_SELECT), 2, q);
        rd(L("%s.q%u.queue_select", tag, q), CMP, SP_COMMON, C(Q_SELECT), 2, 0xffff, 0);
        uint64_t max = rd(L("%s.q%u.queue_size(max)", tag, q), CMP, SP_COMMON, C(Q_SIZE), 2,
                          0xffff, 0);
        rd(L("%s.q%u.queue_enable", tag, q), CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
        unsigned size = max > 128 ? 128 : (unsigned)max;
        wr(L("%s.q%u.queue_size", tag, q), SP_COMMON, C(Q_SIZE), 2, size);
        rd(L("%s.q%u.queue_size", tag, q), CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
        wr(L("%s.q%u.queue_msix_vector", tag, q), SP_COMMON, C(Q_MSIX), 2, q + 1);
        rd(L("%s.q%u.queue_msix_vector", tag, q), CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);
        wr(L("%s.q%u.desc_lo", tag, q), SP_COMMON, C(Q_DESCLO), 4, rg);
        wr(L("%s.q%u.desc_hi", tag, q), SP_COMMON, C(Q_DESCHI), 4, 0);
        wr(L("%s.q%u.avail_lo", tag, q), SP_COMMON, C(Q_AVAILLO), 4, rg + 0x4000);
        wr(L("%s.q%u.avail_hi", tag, q), SP_COMMON, C(Q_AVAILHI), 4, 0);
        wr(L("%s.q%u.used_lo", tag, q), SP_COMMON, C(Q_USEDLO), 4, rg + 0x8000);
        wr(L("%s.q%u.used_hi", tag, q), SP_COMMON, C(Q_USEDHI), 4, 0);
        rd(L("%s.q%u.desc_lo", tag, q), CMP, SP_COMMON, C(Q_DESCLO), 4, 0xffffffffu, 0);
        rd(L("%s.q%u.avail_lo", tag, q), CMP, SP_COMMON, C(Q_AVAILLO), 4, 0xffffffffu, 0);
        rd(L("%s.q%u.used_lo", tag, q), CMP, SP_COMMON, C(Q_USEDLO), 4, 0xffffffffu, 0);
        rd(L("%s.q%u.used_hi", tag, q), CMP, SP_COMMON, C(Q_USEDHI), 4, 0xffffffffu, 0);
        /* the notify offset is the VMM's choice: the address it yields is compared (the
         * multiplier of both is 4) */
        uint64_t noq = rd_one(&tq, SP_COMMON, C(Q_NOFF), 2);
        uint64_t noo = rd_one(&to, SP_COMMON, C(Q_NOFF), 2);
        if (noq * tq.notify_mult != noo * to.notify_mult)
            fail("%s.q%u: notify address offset QEMU 0x%llx, ours 0x%llx", tag, q,
                 (unsigned long long)(noq * tq.notify_mult),
                 (unsigned long long)(noo * to.notify_mult));
        printf("  R %-36s %-6s +0x%03x/2  %-18llx %-18llx %s\n",
               L("%s.q%u.queue_notify_off", tag, q), "common", C(Q_NOFF),
               (unsigned long long)noq, (unsigned long long)noo, "same address");
        wr(L("%s.q%u.queue_enable=1", tag, q), SP_COMMON, C(Q_ENABLE), 2, 1);
        rd(L("%s.q%u.queue_enable", tag, q), CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
    }
    wr(LB("DRIVER_OK"), SP_COMMON, C(STATUS), 1,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
           VIRTIO_CONFIG_S_DRIVER_OK);
    rd(LB("status.driver_ok"), CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    rd(LB("isr"), CMP, SP_ISR, 0, 1, 0xff, 0);
#undef LB
}

static void pci_after_reset(void)
{
    wr("reset", SP_COMMON, C(STATUS), 1, 0);
    rd("after-reset.status", CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    rd("after-reset.msix_config", CMP, SP_COMMON, C(MSIX), 2, 0xffff, 0);
    for (unsigned q = 0; q < 3; q++) {
        wr(L("after-reset.q%u.queue_select", q), SP_COMMON, C(Q_SELECT), 2, q);
        rd(L("after-reset.q%u.queue_enable", q), CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
        rd(L("after-reset.q%u.queue_size", q), CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
        rd(L("after-reset.q%u.queue_msix_vector", q), CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);
        rd(L("after-reset.q%u.desc_lo", q), CMP, SP_COMMON, C(Q_DESCLO), 4, 0xffffffffu, 0);
    }
}

/* The driver breaks the rules. Run between ACK|DRIVER and DRIVER_OK of a fresh probe. */
static void pci_hostile(void)
{
    const uint32_t AD = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    wr("hostile.reset", SP_COMMON, C(STATUS), 1, 0);
    wr("hostile.ACK|DRIVER", SP_COMMON, C(STATUS), 1, AD);

    /* device/driver feature select beyond word 1: bits 64.. are all 0 (4.1.4.3.1) */
    wr("dfselect=2", SP_COMMON, C(DFSELECT), 4, 2);
    rd("dfselect-2.device_feature", CMP, SP_COMMON, C(DF), 4, 0xffffffffu, 0);
    wr("dfselect=0xffffffff", SP_COMMON, C(DFSELECT), 4, 0xffffffffu);
    rd("dfselect-max.device_feature", CMP, SP_COMMON, C(DF), 4, 0xffffffffu, 0);
    wr("gfselect=2", SP_COMMON, C(GFSELECT), 4, 2);
    wr("gfselect-2.driver_feature=~0", SP_COMMON, C(GF), 4, 0xffffffffu);
    rd("gfselect-2.driver_feature", CMP, SP_COMMON, C(GF), 4, 0xffffffffu, 0);

    /* read-only registers: a write changes nothing */
    wr("dfselect=0", SP_COMMON, C(DFSELECT), 4, 0);
    uint64_t df0 = rd_one(&to, SP_COMMON, C(DF), 4);
    wr("device_feature:=0 (read-only)", SP_COMMON, C(DF), 4, 0);
    rd("ro.device_feature", CMP, SP_COMMON, C(DF), 4, (uint32_t)feat_mask, 0);
    if (rd_one(&to, SP_COMMON, C(DF), 4) != df0)
        fail("ours: device_feature changed by a write");
    wr("num_queues:=16 (read-only)", SP_COMMON, C(NUMQ), 2, 16);
    rd("ro.num_queues", CMP, SP_COMMON, C(NUMQ), 2, 0xffff, 0);
    wr("config_generation:=7 (read-only)", SP_COMMON, C(CFGGENERATION), 1, 7);
    rd("ro.config_generation", INFO, SP_COMMON, C(CFGGENERATION), 1, 0, 0);
    wr("q0", SP_COMMON, C(Q_SELECT), 2, 0);
    wr("queue_notify_off:=5 (read-only)", SP_COMMON, C(Q_NOFF), 2, 5);
    {
        uint64_t noq = rd_one(&tq, SP_COMMON, C(Q_NOFF), 2);
        uint64_t noo = rd_one(&to, SP_COMMON, C(Q_NOFF), 2);
        if (noq * tq.notify_mult != noo * to.notify_mult || noo != 0)
            fail("ro.queue_notify_off: QEMU %llu, ours %llu", (unsigned long long)noq,
                 (unsigned long long)noo);
        printf("  R %-36s %-6s +0x%03x/2  %-18llx %-18llx %s\n", "ro.queue_notify_off",
               "common", C(Q_NOFF), (unsigned long long)noq, (unsigned long long)noo,
               "same address");
    }
    wr("isr:=3 (read-only)", SP_ISR, 0, 1, 3);
    rd("ro.isr", CMP, SP_ISR, 0, 1, 0xff, 0);

    /* queue_select out of range: the queue is unavailable */
    wr("qsel=3 (no such queue)", SP_COMMON, C(Q_SELECT), 2, 3);
    rd("oob-qsel-3.queue_select", CMP, SP_COMMON, C(Q_SELECT), 2, 0xffff, 0);
    rd("oob-qsel-3.queue_size", CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
    rd("oob-qsel-3.queue_enable", CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
    rd("oob-qsel-3.queue_msix_vector", CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);
    wr("qsel-3.queue_size:=64", SP_COMMON, C(Q_SIZE), 2, 64);
    rd("oob-qsel-3.queue_size'", CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
    wr("qsel-3.queue_enable:=1", SP_COMMON, C(Q_ENABLE), 2, 1);
    /* enabling an unavailable queue breaks 4.1.4.3.2 (configure first); QEMU stores it */
    rd("oob-qsel-3.queue_enable'", UNDEF, SP_COMMON, C(Q_ENABLE), 2, 0, 0);
    rd("oob-qsel-3.status", CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    /* queue 1 gets a vector and is enabled, so what QEMU shows for 4096 is visible */
    wr("q1", SP_COMMON, C(Q_SELECT), 2, 1);
    wr("q1.queue_msix_vector:=2", SP_COMMON, C(Q_MSIX), 2, 2);
    wr("q1.desc", SP_COMMON, C(Q_DESCLO), 4, RING_GPA + 0x10000);
    wr("q1.avail", SP_COMMON, C(Q_AVAILLO), 4, RING_GPA + 0x14000);
    wr("q1.used", SP_COMMON, C(Q_USEDLO), 4, RING_GPA + 0x18000);
    wr("q1.queue_enable:=1", SP_COMMON, C(Q_ENABLE), 2, 1);
    rd("q1.queue_enable", CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
    wr("qsel=4096 (no such queue)", SP_COMMON, C(Q_SELECT), 2, 4096);
    rd("oob-qsel-4096.queue_select", CMP, SP_COMMON, C(Q_SELECT), 2, 0xffff, 0);
    rd("oob-qsel-4096.queue_size", CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
    rd("oob-qsel-4096.queue_enable", CMP, SP_COMMON, C(Q_ENABLE), 2, 0xffff, 0);
    rd("oob-qsel-4096.queue_msix_vector", CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);

    /* queue sizes the split ring cannot have (2.7: a power of 2, at most the maximum) */
    wr("q0", SP_COMMON, C(Q_SELECT), 2, 0);
    uint64_t size0 = rd("bad-size.queue_size(before)", CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);
    wr("queue_size:=100 (not 2^n)", SP_COMMON, C(Q_SIZE), 2, 100);
    rd("bad-size.queue_size=100", UNDEF, SP_COMMON, C(Q_SIZE), 2, 0, size0);
    wr("queue_size:=4096 (> max)", SP_COMMON, C(Q_SIZE), 2, 4096);
    rd("bad-size.queue_size=4096", UNDEF, SP_COMMON, C(Q_SIZE), 2, 0, size0);
    wr("queue_size:=0", SP_COMMON, C(Q_SIZE), 2, 0);
    rd("bad-size.queue_size=0", UNDEF, SP_COMMON, C(Q_SIZE), 2, 0, size0);
    wr("queue_size:=64", SP_COMMON, C(Q_SIZE), 2, 64);
    rd("bad-size.queue_size=64", CMP, SP_COMMON, C(Q_SIZE), 2, 0xffff, 0);

    /* vectors beyond the table (4.1.5.1.2.1: NO_VECTOR when the device cannot map it) */
    wr("queue_msix_vector:=NVEC", SP_COMMON, C(Q_MSIX), 2, NVEC);
    rd("vec-oob.queue_msix_vector", CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);
    wr("queue_msix_vector:=0x7ff", SP_COMMON, C(Q_MSIX), 2, 0x7ff);
    rd("vec-oob2.queue_msix_vector", CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);
    wr("msix_config:=NVEC+3", SP_COMMON, C(MSIX), 2, NVEC + 3);
    rd("vec-oob.msix_config", CMP, SP_COMMON, C(MSIX), 2, 0xffff, 0);
    wr("queue_msix_vector:=1", SP_COMMON, C(Q_MSIX), 2, 1);
    rd("vec-ok.queue_msix_vector", CMP, SP_COMMON, C(Q_MSIX), 2, 0xffff, 0);

    /* wrong widths: the spec asks the driver for the field's width (4.1.3.1) */
    rd("width.queue_select/1", UNDEF, SP_COMMON, C(Q_SELECT), 1, 0, 0);
    rd("width.status/4", UNDEF, SP_COMMON, C(STATUS), 4, 0, 0);
    rd("width.num_queues/4", UNDEF, SP_COMMON, C(NUMQ), 4, 0, 0);
    rd("width.device_feature/2", UNDEF, SP_COMMON, C(DF), 2, 0, 0);
    rd("width.device_feature/8", UNDEF, SP_COMMON, C(DF), 8, 0, 0);
    wr("queue_select:=2 as 4 bytes", SP_COMMON, C(Q_SELECT), 4, 2);
    rd("width.queue_select-after-w4", UNDEF, SP_COMMON, C(Q_SELECT), 2, 0, 0);
    wr("q0", SP_COMMON, C(Q_SELECT), 2, 0);
    wr("status:=0x0b as 2 bytes", SP_COMMON, C(STATUS), 2, 0x0b);
    rd("width.status-after-w2", UNDEF, SP_COMMON, C(STATUS), 1, 0, AD);
    /* reads of the write-only notify window */
    rd("wo.notify", UNDEF, SP_NOTIFY, 0, 2, 0, 0);

    /* features: an unoffered bit (bit 60 is reserved) makes the set invalid */
    wr("gfselect=1", SP_COMMON, C(GFSELECT), 4, 1);
    wr("driver_feature.hi:=VERSION_1|bit60", SP_COMMON, C(GF), 4, 1u | 1u << 28);
    wr("gfselect=0", SP_COMMON, C(GFSELECT), 4, 0);
    wr("driver_feature.lo", SP_COMMON, C(GF), 4, (uint32_t)drv_feat);
    wr("FEATURES_OK (invalid set)", SP_COMMON, C(STATUS), 1, AD | VIRTIO_CONFIG_S_FEATURES_OK);
    rd("unoffered-feature.status", CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    /* a valid set, then a change after FEATURES_OK (3.1.1: the driver MUST NOT) */
    wr("reset", SP_COMMON, C(STATUS), 1, 0);
    wr("ACK|DRIVER", SP_COMMON, C(STATUS), 1, AD);
    wr("gfselect=1", SP_COMMON, C(GFSELECT), 4, 1);
    wr("driver_feature.hi", SP_COMMON, C(GF), 4, (uint32_t)(drv_feat >> 32));
    wr("gfselect=0", SP_COMMON, C(GFSELECT), 4, 0);
    wr("driver_feature.lo", SP_COMMON, C(GF), 4, (uint32_t)drv_feat);
    wr("FEATURES_OK", SP_COMMON, C(STATUS), 1, AD | VIRTIO_CONFIG_S_FEATURES_OK);
    rd("late-feature.status", CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);
    wr("driver_feature.lo:=0 after FEATURES_OK", SP_COMMON, C(GF), 4, 0);
    rd("late-feature.driver_feature", UNDEF, SP_COMMON, C(GF), 4, 0, (uint32_t)drv_feat);
    rd("late-feature.status'", CMP, SP_COMMON, C(STATUS), 1, 0xff, 0);

    /* a live queue: addresses and size may not change once enabled (4.1.4.3.2) */
    wr("q0", SP_COMMON, C(Q_SELECT), 2, 0);
    wr("queue_size:=64", SP_COMMON, C(Q_SIZE), 2, 64);
    wr("desc", SP_COMMON, C(Q_DESCLO), 4, RING_GPA);
    wr("avail", SP_COMMON, C(Q_AVAILLO), 4, RING_GPA + 0x4000);
    wr("used", SP_COMMON, C(Q_USEDLO), 4, RING_GPA + 0x8000);
    wr("queue_enable:=1", SP_COMMON, C(Q_ENABLE), 2, 1);
    /* the device may answer with NEEDS_RESET (QEMU does for queue_enable = 0) or ignore the
     * write (ours, logged): both leave the spec's rules intact */
    const uint32_t ADF = AD | VIRTIO_CONFIG_S_FEATURES_OK;
    wr("live.queue_size:=32", SP_COMMON, C(Q_SIZE), 2, 32);
    rd("live.queue_size", UNDEF, SP_COMMON, C(Q_SIZE), 2, 0, 64);
    rd("live.queue_size.status", UNDEF, SP_COMMON, C(STATUS), 1, 0, ADF);
    wr("live.desc:=0x300000", SP_COMMON, C(Q_DESCLO), 4, 0x300000);
    rd("live.desc_lo", UNDEF, SP_COMMON, C(Q_DESCLO), 4, 0, RING_GPA);
    rd("live.desc.status", UNDEF, SP_COMMON, C(STATUS), 1, 0, ADF);
    wr("live.queue_enable:=0", SP_COMMON, C(Q_ENABLE), 2, 0);
    rd("live.queue_enable", UNDEF, SP_COMMON, C(Q_ENABLE), 2, 0, 1);
    rd("live.queue_enable.status", UNDEF, SP_COMMON, C(STATUS), 1, 0, ADF);

    /* MSI-X table: entries start masked (PCI), PBA clear */
    rd("msix.entry0.ctrl", CMP, SP_MSIXTAB, 12, 4, 0xffffffffu, 0);
    rd("msix.entry3.ctrl", CMP, SP_MSIXTAB, 3 * 16 + 12, 4, 0xffffffffu, 0);
    wr("msix.entry1.data", SP_MSIXTAB, 16 + 8, 4, 0x4041);
    rd("msix.entry1.data", CMP, SP_MSIXTAB, 16 + 8, 4, 0xffffffffu, 0);
    wr("hostile.reset'", SP_COMMON, C(STATUS), 1, 0);
}

static int run_pci(void)
{
    if (pci_walk(&tq) < 0 || pci_walk(&to) < 0) {
        fail("a virtio capability is missing");
        return -1;
    }
    /* QEMU's windows are addressed by guest physical address once the BARs are placed */
    printf("\n  %-38s %-6s %-9s %-18s %-18s %s\n", "access", "space", "offset", "QEMU", "ours",
           "verdict");
    pci_ids();
    for (enum space s = SP_COMMON; s <= SP_NOTIFY; s++) {
        if (tq.bar[s] != 4)
            fail("QEMU window %s not in BAR4", space_name[s]);
        tq.base[s] += BAR_WIN;
    }
    tq.base[SP_MSIXTAB] += BAR_MSIX;
    if (tq.notify_mult != to.notify_mult)
        fail("notify_off_multiplier QEMU %u, ours %u", tq.notify_mult, to.notify_mult);
    {
        uint64_t a = rd_one(&tq, SP_CFG, tq.msix_cap + PCI_MSIX_FLAGS, 2);
        uint64_t b = rd_one(&to, SP_CFG, to.msix_cap + PCI_MSIX_FLAGS, 2);
        n_cmp++;
        printf("  R %-36s %-6s cap+2/2    %-18llx %-18llx %s\n", "msix.control", "cfg",
               (unsigned long long)a, (unsigned long long)b, a == b ? "same" : "DIFF");
        if (a != b)
            fail("MSI-X message control QEMU 0x%llx, ours 0x%llx", (unsigned long long)a,
                 (unsigned long long)b);
        wr_one(&tq, SP_CFG, tq.msix_cap + PCI_MSIX_FLAGS, 2, a | PCI_MSIX_FLAGS_ENABLE);
        wr_one(&to, SP_CFG, to.msix_cap + PCI_MSIX_FLAGS, 2, b | PCI_MSIX_FLAGS_ENABLE);
        printf("  W %-36s %-6s cap+2/2    %-37s\n", "msix.control.enable", "cfg", "+ENABLE");
    }
    pci_probe("probe1");
    pci_after_reset();
    pci_probe("probe2");
    pci_hostile();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* transitional virtio-PCI: the legacy I/O BAR 0 (Linux's virtio_pci_legacy)  */

#define IO_BASE 0xc000u
#define LG(x) VIRTIO_PCI_##x

static void legacy_probe(const char *tag)
{
    char l[64];
#define LB(x) (snprintf(l, sizeof(l), "%s.%s", tag, x), l)
    const uint32_t AD = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    /* MSI-X off while virtnet_probe reads the config (it sits at 20 then) */
    for (struct target *t = &tq; t; t = t == &tq ? &to : NULL)
        wr_one(t, SP_CFG, t->msix_cap + PCI_MSIX_FLAGS, 2, NVEC - 1);
    wr(LB("reset"), SP_LEGACY, LG(STATUS), 1, 0);
    rd(LB("status=0"), CMP, SP_LEGACY, LG(STATUS), 1, 0xff, 0);
    wr(LB("ACK"), SP_LEGACY, LG(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(LB("DRIVER"), SP_LEGACY, LG(STATUS), 1, AD);
    rd(LB("status"), CMP, SP_LEGACY, LG(STATUS), 1, 0xff, 0);
    rd(LB("HOST_FEATURES"), CMP, SP_LEGACY, LG(HOST_FEATURES), 4, (uint32_t)feat_mask, 0);
    wr(LB("GUEST_FEATURES"), SP_LEGACY, LG(GUEST_FEATURES), 4, (uint32_t)drv_feat);
    rd(LB("GUEST_FEATURES"), CMP, SP_LEGACY, LG(GUEST_FEATURES), 4, 0xffffffffu, 0);
    for (unsigned i = 0; i < 6; i++)
        rd(L("%s.config@20.mac[%u]", tag, i), CMP, SP_LEGACY, 20 + i, 1, 0xff, 0);
    rd(LB("config@20.status"), CMP, SP_LEGACY, 26, 2, 0xffff, 0);
    rd(LB("config@20.mtu"), CMP, SP_LEGACY, 30, 2, 0xffff, 0);
    /* vp_find_vqs: MSI-X on, the config moves to 24 */
    for (struct target *t = &tq; t; t = t == &tq ? &to : NULL)
        wr_one(t, SP_CFG, t->msix_cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
    rd(LB("config@24.mac[0]"), CMP, SP_LEGACY, 24, 1, 0xff, 0);
    rd(LB("config@24.mac[0..3]/4"), CMP, SP_LEGACY, 24, 4, 0xffffffffu, 0);
    wr(LB("MSI_CONFIG_VECTOR=0"), SP_LEGACY, VIRTIO_MSI_CONFIG_VECTOR, 2, 0);
    rd(LB("MSI_CONFIG_VECTOR"), CMP, SP_LEGACY, VIRTIO_MSI_CONFIG_VECTOR, 2, 0xffff, 0);
    for (unsigned q = 0; q < 3; q++) {
        uint64_t rg = RING_GPA + q * 0x10000u;
        wr(L("%s.q%u.QUEUE_SEL", tag, q), SP_LEGACY, LG(QUEUE_SEL), 2, q);
        rd(L("%s.q%u.QUEUE_SEL", tag, q), CMP, SP_LEGACY, LG(QUEUE_SEL), 2, 0xffff, 0);
        uint64_t num =
            rd(L("%s.q%u.QUEUE_NUM", tag, q), CMP, SP_LEGACY, LG(QUEUE_NUM), 2, 0xffff, 0);
        rd(L("%s.q%u.QUEUE_PFN", tag, q), CMP, SP_LEGACY, LG(QUEUE_PFN), 4, 0xffffffffu, 0);
        wr(L("%s.q%u.MSI_QUEUE_VECTOR", tag, q), SP_LEGACY, VIRTIO_MSI_QUEUE_VECTOR, 2, q + 1);
        rd(L("%s.q%u.MSI_QUEUE_VECTOR", tag, q), CMP, SP_LEGACY, VIRTIO_MSI_QUEUE_VECTOR, 2,
           0xffff, 0);
        wr(L("%s.q%u.QUEUE_PFN", tag, q), SP_LEGACY, LG(QUEUE_PFN), 4, rg >> 12);
        rd(L("%s.q%u.QUEUE_PFN", tag, q), CMP, SP_LEGACY, LG(QUEUE_PFN), 4, 0xffffffffu, 0);
        /* the modern window after a legacy setup mixes the two interfaces (undefined): QEMU
         * shows its modern shadow registers (0), ours the rings the PFN placed, in the legacy
         * layout (2.7 / 4.1.4.10: avail after the table, used 4096-aligned after avail) */
        uint64_t avail = rg + 16 * num, used = (avail + 6 + 2 * num + 4095) & ~4095ull;
        wr(L("%s.q%u.queue_select", tag, q), SP_COMMON, C(Q_SELECT), 2, q);
        rd(L("%s.q%u.queue_desc_lo", tag, q), UNDEF, SP_COMMON, C(Q_DESCLO), 4, 0, rg);
        rd(L("%s.q%u.queue_avail_lo", tag, q), UNDEF, SP_COMMON, C(Q_AVAILLO), 4, 0, avail);
        rd(L("%s.q%u.queue_used_lo", tag, q), UNDEF, SP_COMMON, C(Q_USEDLO), 4, 0, used);
    }
    wr(LB("DRIVER_OK"), SP_LEGACY, LG(STATUS), 1, AD | VIRTIO_CONFIG_S_DRIVER_OK);
    rd(LB("status.driver_ok"), CMP, SP_LEGACY, LG(STATUS), 1, 0xff, 0);
    rd(LB("ISR"), CMP, SP_LEGACY, LG(ISR), 1, 0xff, 0);
#undef LB
}

static void legacy_hostile(void)
{
    const uint32_t AD = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    wr("legacy.hostile.reset", SP_LEGACY, LG(STATUS), 1, 0);
    rd("legacy.after-reset.MSI_CONFIG_VECTOR", CMP, SP_LEGACY, VIRTIO_MSI_CONFIG_VECTOR, 2,
       0xffff, 0);
    for (unsigned q = 0; q < 3; q++) {
        wr(L("legacy.after-reset.q%u.QUEUE_SEL", q), SP_LEGACY, LG(QUEUE_SEL), 2, q);
        rd(L("legacy.after-reset.q%u.QUEUE_PFN", q), CMP, SP_LEGACY, LG(QUEUE_PFN), 4,
           0xffffffffu, 0);
        rd(L("legacy.after-reset.q%u.MSI_QUEUE_VECTOR", q), CMP, SP_LEGACY,
           VIRTIO_MSI_QUEUE_VECTOR, 2, 0xffff, 0);
    }
    wr("legacy.ACK|DRIVER", SP_LEGACY, LG(STATUS), 1, AD);
    /* read-only registers */
    wr("HOST_FEATURES:=0 (read-only)", SP_LEGACY, LG(HOST_FEATURES), 4, 0);
    rd("legacy.ro.HOST_FEATURES", CMP, SP_LEGACY, LG(HOST_FEATURES), 4, (uint32_t)feat_mask, 0);
    wr("QUEUE_SEL=0", SP_LEGACY, LG(QUEUE_SEL), 2, 0);
    wr("QUEUE_NUM:=64 (read-only in legacy)", SP_LEGACY, LG(QUEUE_NUM), 2, 64);
    rd("legacy.ro.QUEUE_NUM", CMP, SP_LEGACY, LG(QUEUE_NUM), 2, 0xffff, 0);
    wr("ISR:=3 (read-only)", SP_LEGACY, LG(ISR), 1, 3);
    rd("legacy.ro.ISR", CMP, SP_LEGACY, LG(ISR), 1, 0xff, 0);
    /* unavailable queues */
    wr("QUEUE_SEL=3 (no such queue)", SP_LEGACY, LG(QUEUE_SEL), 2, 3);
    rd("legacy.oob-qsel-3.QUEUE_NUM", CMP, SP_LEGACY, LG(QUEUE_NUM), 2, 0xffff, 0);
    rd("legacy.oob-qsel-3.QUEUE_PFN", CMP, SP_LEGACY, LG(QUEUE_PFN), 4, 0xffffffffu, 0);
    rd("legacy.oob-qsel-3.MSI_QUEUE_VECTOR", CMP, SP_LEGACY, VIRTIO_MSI_QUEUE_VECTOR, 2,
       0xffff, 0);
    wr("QUEUE_SEL=1", SP_LEGACY, LG(QUEUE_SEL), 2, 1);
    wr("q1.QUEUE_PFN", SP_LEGACY, LG(QUEUE_PFN), 4, (RING_GPA + 0x10000u) >> 12);
    wr("QUEUE_SEL=4096 (no such queue)", SP_LEGACY, LG(QUEUE_SEL), 2, 4096);
    rd("legacy.oob-qsel-4096.QUEUE_SEL", CMP, SP_LEGACY, LG(QUEUE_SEL), 2, 0xffff, 0);
    rd("legacy.oob-qsel-4096.QUEUE_NUM", CMP, SP_LEGACY, LG(QUEUE_NUM), 2, 0xffff, 0);
    rd("legacy.oob-qsel-4096.QUEUE_PFN", CMP, SP_LEGACY, LG(QUEUE_PFN), 4, 0xffffffffu, 0);
    /* vectors beyond the table */
    wr("QUEUE_SEL=0", SP_LEGACY, LG(QUEUE_SEL), 2, 0);
    wr("MSI_QUEUE_VECTOR:=NVEC", SP_LEGACY, VIRTIO_MSI_QUEUE_VECTOR, 2, NVEC);
    rd("legacy.vec-oob.MSI_QUEUE_VECTOR", CMP, SP_LEGACY, VIRTIO_MSI_QUEUE_VECTOR, 2, 0xffff, 0);
    wr("MSI_CONFIG_VECTOR:=0x7ff", SP_LEGACY, VIRTIO_MSI_CONFIG_VECTOR, 2, 0x7ff);
    rd("legacy.vec-oob.MSI_CONFIG_VECTOR", CMP, SP_LEGACY, VIRTIO_MSI_CONFIG_VECTOR, 2, 0xffff,
       0);
    /* wrong widths and the write-only notify */
    rd("legacy.width.STATUS/4", UNDEF, SP_LEGACY, LG(STATUS), 4, 0, 0);
    rd("legacy.width.HOST_FEATURES/2", UNDEF, SP_LEGACY, LG(HOST_FEATURES), 2, 0, 0);
    rd("legacy.width.QUEUE_SEL/1", UNDEF, SP_LEGACY, LG(QUEUE_SEL), 1, 0, 0);
    rd("legacy.wo.QUEUE_NOTIFY", UNDEF, SP_LEGACY, LG(QUEUE_NOTIFY), 2, 0, 0);
    rd("legacy.status", CMP, SP_LEGACY, LG(STATUS), 1, 0xff, 0);
    /* a PFN outside guest memory: ours sets NEEDS_RESET (QEMU takes it) */
    wr("QUEUE_SEL=2", SP_LEGACY, LG(QUEUE_SEL), 2, 2);
    wr("QUEUE_PFN:=beyond RAM", SP_LEGACY, LG(QUEUE_PFN), 4, (RAM_SIZE >> 12) + 16);
    rd("legacy.pfn-outside.status", UNDEF, SP_LEGACY, LG(STATUS), 1, 0,
       AD | VIRTIO_CONFIG_S_NEEDS_RESET);
    wr("legacy.hostile.reset'", SP_LEGACY, LG(STATUS), 1, 0);
}

static int run_pci_legacy(void)
{
    if (pci_walk(&tq) < 0 || pci_walk(&to) < 0) {
        fail("a virtio capability is missing");
        return -1;
    }
    printf("\n  %-38s %-6s %-9s %-18s %-18s %s\n", "access", "space", "offset", "QEMU", "ours",
           "verdict");
    rd("vendor_id", CMP, SP_CFG, PCI_VENDOR_ID, 2, 0xffff, 0);
    rd("device_id", CMP, SP_CFG, PCI_DEVICE_ID, 2, 0xffff, 0);
    rd("revision", CMP, SP_CFG, PCI_REVISION_ID, 1, 0xff, 0);
    rd("subsys_vendor", CMP, SP_CFG, PCI_SUBSYSTEM_VENDOR_ID, 2, 0xffff, 0);
    rd("subsys_id", CMP, SP_CFG, PCI_SUBSYSTEM_ID, 2, 0xffff, 0);
    rd("class.device", CMP, SP_CFG, PCI_CLASS_DEVICE, 2, 0xffff, 0);
    wr("bar0.size-probe", SP_CFG, PCI_BASE_ADDRESS_0, 4, 0xffffffffu);
    rd("bar0.size", CMP, SP_CFG, PCI_BASE_ADDRESS_0, 4, 0xffffffffu, 0);
    wr("bar0", SP_CFG, PCI_BASE_ADDRESS_0, 4, IO_BASE);
    rd("bar0.readback", CMP, SP_CFG, PCI_BASE_ADDRESS_0, 4, 0xffffffffu, 0);
    wr("bar1", SP_CFG, PCI_BASE_ADDRESS_1, 4, BAR_MSIX);
    wr("bar4", SP_CFG, PCI_BASE_ADDRESS_4, 4, BAR_WIN);
    wr("bar5", SP_CFG, PCI_BASE_ADDRESS_5, 4, 0);
    wr("command=io|mem|master", SP_CFG, PCI_COMMAND, 2,
       PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    rd("command", CMP, SP_CFG, PCI_COMMAND, 2,
       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_IO, 0);
    for (enum space s = SP_COMMON; s <= SP_NOTIFY; s++)
        tq.base[s] += BAR_WIN;
    tq.base[SP_MSIXTAB] += BAR_MSIX;
    tq.base[SP_LEGACY] = IO_BASE;
    legacy_probe("legacy1");
    wr("legacy.reset", SP_LEGACY, LG(STATUS), 1, 0);
    legacy_probe("legacy2");
    legacy_hostile();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* virtio-MMIO                                                               */

#define M(x) VIRTIO_MMIO_##x

static void mmio_probe(const char *tag)
{
    char l[64];
#define LB(x) (snprintf(l, sizeof(l), "%s.%s", tag, x), l)
    rd(LB("magic"), CMP, SP_MMIO, M(MAGIC_VALUE), 4, 0xffffffffu, 0);
    rd(LB("version"), CMP, SP_MMIO, M(VERSION), 4, 0xffffffffu, 0);
    rd(LB("device_id"), CMP, SP_MMIO, M(DEVICE_ID), 4, 0xffffffffu, 0);
    rd(LB("vendor_id"), CMP, SP_MMIO, M(VENDOR_ID), 4, 0xffffffffu, 0);
    wr(LB("reset"), SP_MMIO, M(STATUS), 4, 0);
    rd(LB("status=0"), CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    wr(LB("ACK"), SP_MMIO, M(STATUS), 4, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(LB("DRIVER"), SP_MMIO, M(STATUS), 4, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    rd(LB("status"), CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    for (unsigned w = 0; w < 2; w++) {
        wr(LB("DeviceFeaturesSel"), SP_MMIO, M(DEVICE_FEATURES_SEL), 4, w);
        /* legacy: QEMU's v1 transport hides word 1 (VERSION_1), ours shows it (a transitional
         * device may; the legacy driver detects it by not taking VERSION_1, 7.4 / 2.2.3) */
        uint64_t m = feat_mask & ~(is_legacy ? 1ull << VIRTIO_F_VERSION_1 : 0);
        rd(w ? LB("DeviceFeatures.hi") : LB("DeviceFeatures.lo"), CMP, SP_MMIO,
           M(DEVICE_FEATURES), 4, (uint32_t)(m >> (32 * w)), 0);
    }
    uint64_t df = drv_feat & ~(is_legacy ? 1ull << VIRTIO_F_VERSION_1 : 0);
    for (unsigned w = 0; w < 2; w++) {
        wr(LB("DriverFeaturesSel"), SP_MMIO, M(DRIVER_FEATURES_SEL), 4, w);
        wr(LB("DriverFeatures"), SP_MMIO, M(DRIVER_FEATURES), 4, (uint32_t)(df >> (32 * w)));
    }
    if (is_legacy) {
        wr(LB("GuestPageSize"), SP_MMIO, M(GUEST_PAGE_SIZE), 4, 4096);
    } else {
        wr(LB("FEATURES_OK"), SP_MMIO, M(STATUS), 4,
           VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
        rd(LB("status.features_ok"), CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    }
    for (unsigned i = 0; i < 6; i++)
        rd(L("%s.config.mac[%u]", tag, i), CMP, SP_MMIO, 0x100 + i, 1, 0xff, 0);
    rd(LB("config.status"), CMP, SP_MMIO, 0x106, 2, 0xffff, 0);
    rd(LB("config.mtu"), CMP, SP_MMIO, 0x10a, 2, 0xffff, 0);
    if (!is_legacy) /* its value is the device's; only its change is defined */
        rd(LB("ConfigGeneration"), INFO, SP_MMIO, M(CONFIG_GENERATION), 4, 0, 0);
    for (unsigned q = 0; q < 3; q++) {
        uint64_t rg = RING_GPA + q * 0x10000u;
        wr(L("%s.q%u.QueueSel", tag, q), SP_MMIO, M(QUEUE_SEL), 4, q);
        if (is_legacy)
            rd(L("%s.q%u.QueuePFN", tag, q), CMP, SP_MMIO, M(QUEUE_PFN), 4, 0xffffffffu, 0);
        else
            rd(L("%s.q%u.QueueReady", tag, q), CMP, SP_MMIO, M(QUEUE_READY), 4, 0xffffffffu,
               0);
        uint64_t max = rd(L("%s.q%u.QueueNumMax", tag, q), CMP, SP_MMIO, M(QUEUE_NUM_MAX), 4,
                          0xffffffffu, 0);
        unsigned size = max > 128 ? 128 : (unsigned)max;
        wr(L("%s.q%u.QueueNum", tag, q), SP_MMIO, M(QUEUE_NUM), 4, size);
        if (is_legacy) {
            wr(L("%s.q%u.QueueAlign", tag, q), SP_MMIO, M(QUEUE_ALIGN), 4, 4096);
            wr(L("%s.q%u.QueuePFN", tag, q), SP_MMIO, M(QUEUE_PFN), 4, rg >> 12);
            rd(L("%s.q%u.QueuePFN", tag, q), CMP, SP_MMIO, M(QUEUE_PFN), 4, 0xffffffffu, 0);
            continue;
        }
        wr(L("%s.q%u.QueueDescLow", tag, q), SP_MMIO, M(QUEUE_DESC_LOW), 4, rg);
        wr(L("%s.q%u.QueueDescHigh", tag, q), SP_MMIO, M(QUEUE_DESC_HIGH), 4, 0);
        wr(L("%s.q%u.QueueDriverLow", tag, q), SP_MMIO, M(QUEUE_AVAIL_LOW), 4, rg + 0x4000);
        wr(L("%s.q%u.QueueDriverHigh", tag, q), SP_MMIO, M(QUEUE_AVAIL_HIGH), 4, 0);
        wr(L("%s.q%u.QueueDeviceLow", tag, q), SP_MMIO, M(QUEUE_USED_LOW), 4, rg + 0x8000);
        wr(L("%s.q%u.QueueDeviceHigh", tag, q), SP_MMIO, M(QUEUE_USED_HIGH), 4, 0);
        wr(L("%s.q%u.QueueReady=1", tag, q), SP_MMIO, M(QUEUE_READY), 4, 1);
        rd(L("%s.q%u.QueueReady", tag, q), CMP, SP_MMIO, M(QUEUE_READY), 4, 0xffffffffu, 0);
    }
    wr(LB("DRIVER_OK"), SP_MMIO, M(STATUS), 4,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
           (is_legacy ? 0 : VIRTIO_CONFIG_S_FEATURES_OK) | VIRTIO_CONFIG_S_DRIVER_OK);
    rd(LB("status.driver_ok"), CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    rd(LB("InterruptStatus"), CMP, SP_MMIO, M(INTERRUPT_STATUS), 4, 0xffffffffu, 0);
#undef LB
}

static void mmio_after_reset(void)
{
    wr("reset", SP_MMIO, M(STATUS), 4, 0);
    rd("after-reset.status", CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    for (unsigned q = 0; q < 3; q++) {
        wr(L("after-reset.q%u.QueueSel", q), SP_MMIO, M(QUEUE_SEL), 4, q);
        if (is_legacy)
            rd(L("after-reset.q%u.QueuePFN", q), CMP, SP_MMIO, M(QUEUE_PFN), 4, 0xffffffffu, 0);
        else
            rd(L("after-reset.q%u.QueueReady", q), CMP, SP_MMIO, M(QUEUE_READY), 4,
               0xffffffffu, 0);
    }
}

static void mmio_hostile(void)
{
    const uint32_t AD = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    wr("hostile.reset", SP_MMIO, M(STATUS), 4, 0);
    wr("hostile.ACK|DRIVER", SP_MMIO, M(STATUS), 4, AD);
    /* feature words beyond 1: 0 (4.2.2.1: bits (sel*32)..) */
    wr("DeviceFeaturesSel=2", SP_MMIO, M(DEVICE_FEATURES_SEL), 4, 2);
    rd(is_legacy ? "legacy.sel-2.DeviceFeatures" : "sel-2.DeviceFeatures", CMP, SP_MMIO, M(DEVICE_FEATURES), 4, 0xffffffffu, 0);
    wr("DeviceFeaturesSel=~0", SP_MMIO, M(DEVICE_FEATURES_SEL), 4, 0xffffffffu);
    rd(is_legacy ? "legacy.sel-max.DeviceFeatures" : "sel-max.DeviceFeatures", CMP, SP_MMIO, M(DEVICE_FEATURES), 4, 0xffffffffu, 0);
    /* read-only registers */
    wr("MagicValue:=0 (read-only)", SP_MMIO, M(MAGIC_VALUE), 4, 0);
    rd("ro.MagicValue", CMP, SP_MMIO, M(MAGIC_VALUE), 4, 0xffffffffu, 0);
    wr("DeviceID:=9 (read-only)", SP_MMIO, M(DEVICE_ID), 4, 9);
    rd("ro.DeviceID", CMP, SP_MMIO, M(DEVICE_ID), 4, 0xffffffffu, 0);
    wr("QueueSel=0", SP_MMIO, M(QUEUE_SEL), 4, 0);
    wr("QueueNumMax:=8 (read-only)", SP_MMIO, M(QUEUE_NUM_MAX), 4, 8);
    rd("ro.QueueNumMax", CMP, SP_MMIO, M(QUEUE_NUM_MAX), 4, 0xffffffffu, 0);
    wr("InterruptStatus:=3 (read-only)", SP_MMIO, M(INTERRUPT_STATUS), 4, 3);
    rd("ro.InterruptStatus", CMP, SP_MMIO, M(INTERRUPT_STATUS), 4, 0xffffffffu, 0);
    /* an unavailable queue: QueueNumMax 0 (4.2.2.1) */
    wr("QueueSel=3 (no such queue)", SP_MMIO, M(QUEUE_SEL), 4, 3);
    rd("oob-qsel-3.QueueNumMax", CMP, SP_MMIO, M(QUEUE_NUM_MAX), 4, 0xffffffffu, 0);
    if (!is_legacy) {
        rd("oob-qsel-3.QueueReady", CMP, SP_MMIO, M(QUEUE_READY), 4, 0xffffffffu, 0);
        wr("qsel-3.QueueReady:=1", SP_MMIO, M(QUEUE_READY), 4, 1);
        /* 4.2.2: QueueReady "returns the last value written"; for a queue that is not
         * available the spec says nothing: QEMU stores it, ours refuses it */
        rd("oob-qsel-3.QueueReady'", UNDEF, SP_MMIO, M(QUEUE_READY), 4, 0, 0);
    } else {
        rd("oob-qsel-3.QueuePFN", CMP, SP_MMIO, M(QUEUE_PFN), 4, 0xffffffffu, 0);
    }
    wr("QueueSel=1", SP_MMIO, M(QUEUE_SEL), 4, 1);
    wr("QueueSel=4096 (no such queue)", SP_MMIO, M(QUEUE_SEL), 4, 4096);
    rd("oob-qsel-4096.QueueNumMax", CMP, SP_MMIO, M(QUEUE_NUM_MAX), 4, 0xffffffffu, 0);
    if (!is_legacy)
        rd("oob-qsel-4096.QueueReady", CMP, SP_MMIO, M(QUEUE_READY), 4, 0xffffffffu, 0);
    rd("oob-qsel.status", CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    /* write-only registers read */
    rd("wo.QueueSel", UNDEF, SP_MMIO, M(QUEUE_SEL), 4, 0, 0);
    rd("wo.QueueNum", UNDEF, SP_MMIO, M(QUEUE_NUM), 4, 0, 0);
    rd("wo.QueueNotify", UNDEF, SP_MMIO, M(QUEUE_NOTIFY), 4, 0, 0);
    rd("wo.DriverFeatures", UNDEF, SP_MMIO, M(DRIVER_FEATURES), 4, 0, 0);
    rd("wo.InterruptACK", UNDEF, SP_MMIO, M(INTERRUPT_ACK), 4, 0, 0);
    if (!is_legacy)
        rd("wo.QueueDescLow", UNDEF, SP_MMIO, M(QUEUE_DESC_LOW), 4, 0, 0);
    /* wrong widths (4.2.2.2: 32-bit accesses only outside the config space) */
    rd("width.MagicValue/2", UNDEF, SP_MMIO, M(MAGIC_VALUE), 2, 0, 0);
    rd("width.Status/1", UNDEF, SP_MMIO, M(STATUS), 1, 0, 0);
    wr("Status:=0x7 as 1 byte", SP_MMIO, M(STATUS), 1, 0x7);
    rd("width.status-after-w1", UNDEF, SP_MMIO, M(STATUS), 4, 0, AD);
    /* queue sizes (2.7): QueueNum is write-only, so the effect shows in whether the queue
     * can then be enabled (ours: the size stays unwritten, 0, and QueueReady = 1 is refused) */
    static const uint32_t bad_num[] = {100, 4096, 0};
    for (unsigned k = 0; k < 3 && !is_legacy; k++) {
        wr("reset", SP_MMIO, M(STATUS), 4, 0);
        wr("ACK|DRIVER", SP_MMIO, M(STATUS), 4, AD);
        wr("QueueSel=0", SP_MMIO, M(QUEUE_SEL), 4, 0);
        wr(L("QueueNum:=%u", bad_num[k]), SP_MMIO, M(QUEUE_NUM), 4, bad_num[k]);
        wr("QueueDescLow", SP_MMIO, M(QUEUE_DESC_LOW), 4, RING_GPA);
        wr("QueueDriverLow", SP_MMIO, M(QUEUE_AVAIL_LOW), 4, RING_GPA + 0x4000);
        wr("QueueDeviceLow", SP_MMIO, M(QUEUE_USED_LOW), 4, RING_GPA + 0x8000);
        wr("QueueReady:=1", SP_MMIO, M(QUEUE_READY), 4, 1);
        rd(L("bad-num-%u.QueueReady", bad_num[k]), UNDEF, SP_MMIO, M(QUEUE_READY), 4, 0, 0);
        rd(L("bad-num-%u.status", bad_num[k]), UNDEF, SP_MMIO, M(STATUS), 4, 0, AD);
    }
    /* legacy: GuestPageSize and QueueAlign that are not powers of two (4.2.4) are ignored:
     * the PFN then places the rings with the defaults (4096) */
    if (is_legacy) {
        wr("reset", SP_MMIO, M(STATUS), 4, 0);
        wr("ACK|DRIVER", SP_MMIO, M(STATUS), 4, AD);
        wr("GuestPageSize:=3000", SP_MMIO, M(GUEST_PAGE_SIZE), 4, 3000);
        wr("QueueSel=0", SP_MMIO, M(QUEUE_SEL), 4, 0);
        wr("QueueNum:=128", SP_MMIO, M(QUEUE_NUM), 4, 128);
        wr("QueueAlign:=100", SP_MMIO, M(QUEUE_ALIGN), 4, 100);
        wr("QueuePFN", SP_MMIO, M(QUEUE_PFN), 4, RING_GPA >> 12);
        rd("legacy.bad-align.QueuePFN", CMP, SP_MMIO, M(QUEUE_PFN), 4, 0xffffffffu, 0);
        rd("legacy.bad-align.status", UNDEF, SP_MMIO, M(STATUS), 4, 0, AD);
    }
    /* an unoffered feature (bit 60) */
    if (!is_legacy) {
        wr("DriverFeaturesSel=1", SP_MMIO, M(DRIVER_FEATURES_SEL), 4, 1);
        wr("DriverFeatures.hi:=VERSION_1|bit60", SP_MMIO, M(DRIVER_FEATURES), 4, 1u | 1u << 28);
        wr("DriverFeaturesSel=0", SP_MMIO, M(DRIVER_FEATURES_SEL), 4, 0);
        wr("DriverFeatures.lo", SP_MMIO, M(DRIVER_FEATURES), 4, (uint32_t)drv_feat);
        wr("FEATURES_OK (invalid set)", SP_MMIO, M(STATUS), 4, AD | VIRTIO_CONFIG_S_FEATURES_OK);
        rd("mmio.unoffered-feature.status", CMP, SP_MMIO, M(STATUS), 4, 0xffffffffu, 0);
    }
    /* config space: byte, word and dword accesses are all fine (4.2.2.2) */
    rd("config.mac[0..3]/4", CMP, SP_MMIO, 0x100, 4, 0xffffffffu, 0);
    rd("config.mac[4..5]+status/4", CMP, SP_MMIO, 0x104, 4, 0xffffffffu, 0);
    wr("hostile.reset'", SP_MMIO, M(STATUS), 4, 0);
}

static int run_mmio(void)
{
    printf("\n  %-38s %-6s %-9s %-18s %-18s %s\n", "access", "space", "offset", "QEMU", "ours",
           "verdict");
    mmio_probe("probe1");
    mmio_after_reset();
    mmio_probe("probe2");
    mmio_hostile();
    return 0;
}

/* ------------------------------------------------------------------------ */

static void log_fn(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (getenv("DIFF_LOG") || level <= VIO_LOG_ERROR)
        printf("    [%s] %s\n", obj, msg);
}

int main(int argc, char **argv)
{
    is_pci_legacy = argc > 1 && !strcmp(argv[1], "pci-legacy");
    /* pci-transitional: both transitional, driven through the modern capabilities */
    is_pci_trans = is_pci_legacy || (argc > 1 && !strcmp(argv[1], "pci-transitional"));
    is_pci = argc > 1 && (!strcmp(argv[1], "pci") || is_pci_trans);
    is_legacy = argc > 1 && !strcmp(argv[1], "mmio-legacy");
    if (argc < 2 || (!is_pci && !is_legacy && strcmp(argv[1], "mmio"))) {
        fprintf(stderr, "usage: %s pci|pci-transitional|pci-legacy|mmio|mmio-legacy\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        printf("SKIP: qemu-system-x86_64 not found\n");
        return 77;
    }
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/vio-diffqt-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char ram_path[96], err_path[96], mem_arg[256];
    snprintf(ram_path, sizeof(ram_path), "%s/ram", dir);
    snprintf(err_path, sizeof(err_path), "%s/qemu.log", dir);
    snprintf(mem_arg, sizeof(mem_arg), "memory-backend-file,id=mem,size=%u,mem-path=%s,share=on",
             RAM_SIZE, ram_path);
    uint8_t *our_ram = NULL;
    struct vio_mem *mem = NULL;
    struct net_transport ours = {0};
    int rc = 1;

    const char *av_pci[] = {"qemu-system-x86_64", "-machine", "q35,memory-backend=mem", "-accel",
                            "tcg", "-S", "-display", "none", "-nodefaults", "-m", "64M",
                            "-object", mem_arg, "-netdev", "user,id=n0", "-device",
                            "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=,vectors=4,"
                            "host_mtu=1500,mac=" MAC,
                            NULL};
    const char *av_mmio[] = {"qemu-system-x86_64", "-machine", "microvm,memory-backend=mem",
                             "-accel", "tcg", "-S", "-display", "none", "-nodefaults", "-m",
                             "64M", "-object", mem_arg, "-netdev", "user,id=n0", "-device",
                             "virtio-net-device,netdev=n0,host_mtu=1500,mac=" MAC, "-global",
                             "virtio-mmio.force-legacy=false", NULL};
    if (is_legacy)
        av_mmio[sizeof(av_mmio) / sizeof(av_mmio[0]) - 3] = NULL;
    if (is_pci_trans) /* the transitional function, legacy I/O BAR 0 */
        av_pci[sizeof(av_pci) / sizeof(av_pci[0]) - 2] =
            "virtio-net-pci,netdev=n0,disable-legacy=off,disable-modern=off,romfile=,"
            "vectors=4,host_mtu=1500,mac=" MAC;
    int r = qtest_spawn(is_pci ? av_pci : av_mmio, dir, err_path, 20000, &qt);
    if (r < 0) {
        char cmdl[160];
        snprintf(cmdl, sizeof(cmdl), "cat %s >&2", err_path);
        if (system(cmdl) != 0) {
        }
        fail("qemu did not start: %d", r);
        goto out;
    }

    /* our side: guest RAM of the same size (the ring addresses are valid in both) */
    our_ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (our_ram == MAP_FAILED || vio_mem_new(0, &mem) < 0) {
        fail("our guest memory");
        goto out;
    }
    struct vio_mem_region reg = {.guest_addr = 0, .size = RAM_SIZE, .host_ptr = our_ram};
    if (vio_mem_add(mem, &reg) < 0) {
        fail("our memory region");
        goto out;
    }
    /* where QEMU's device is */
    uint64_t base = 0, vendor = 0;
    if (is_pci) {
        bool found = false;
        for (unsigned slot = 0; slot < 32 && !found; slot++) {
            pci_devfn = slot << 3;
            if (rd_one(&tq, SP_CFG, 0, 4) == ((is_pci_trans ? 0x1000u : 0x1041u) << 16 | 0x1af4u))
                found = true;
        }
        if (!found) {
            fail("no virtio-net-pci on bus 0");
            goto out;
        }
    } else {
        for (int i = 31; i >= 0 && !base; i--) {
            uint64_t b = MMIO_FIRST + 0x200u * (unsigned)i, v = 0;
            if (qtest_readn(qt, b + VIRTIO_MMIO_DEVICE_ID, 4, &v) == 0 && v == 1)
                base = b;
        }
        if (!base) {
            fail("no virtio-net-device transport");
            goto out;
        }
        tq.base[SP_MMIO] = base;
        qtest_readn(qt, base + VIRTIO_MMIO_VENDOR_ID, 4, &vendor);
    }
    /* ours, configured to offer what QEMU offers */
    struct net_transport_config nc = {
        .mem = mem, .mmio = !is_pci, .legacy = is_legacy, .transitional = is_pci_trans,
        .msix_vectors = NVEC, .mac = mac_bytes, .mtu = 1500,
        /* QEMU's virtio-mmio reports VIRTQUEUE_MAX_SIZE (1024) as every queue's QueueNumMax,
         * its virtio-pci the model's sizes (256, control 64) */
        .queue_size = is_pci ? 256 : 1024, .ctrl_queue_size = is_pci ? 64 : 1024,
        /* QEMU's virtio-net without a vnet-header peer offers no offloads; 7.2 has no
         * IN_ORDER/USO by default */
        .features_off = (1ull << VIO_NET_F_CSUM) | (1ull << VIO_NET_F_GUEST_CSUM) |
                        (1ull << VIO_NET_F_GUEST_TSO4) | (1ull << VIO_NET_F_GUEST_TSO6) |
                        (1ull << VIO_NET_F_GUEST_ECN) | (1ull << VIO_NET_F_GUEST_UFO) |
                        (1ull << VIO_NET_F_HOST_TSO4) | (1ull << VIO_NET_F_HOST_TSO6) |
                        (1ull << VIO_NET_F_HOST_ECN) | (1ull << VIO_NET_F_HOST_UFO) |
                        (1ull << VIO_NET_F_HOST_USO) | (1ull << VIO_NET_F_CTRL_GUEST_OFFLOADS) |
                        (1ull << VIRTIO_F_IN_ORDER),
        /* VendorID is the VMM's: ours is configured to QEMU's so the probe compares */
        .mmio_vendor = (uint32_t)vendor, .log = log_fn};
    if ((r = net_transport_open(&ours, &nc)) < 0) {
        fail("our net device behind its transport: %d", r);
        goto out;
    }
    to.p = ours.pci;
    to.m = ours.mmio;
    if (is_pci) {
        printf("diff_qtest %s: QEMU virtio-net-pci (00:%02x.0, %s) vs vio_pci%s\n", argv[1],
               pci_devfn >> 3,
               is_pci_legacy  ? "transitional, legacy I/O BAR 0"
               : is_pci_trans ? "transitional, modern capabilities"
                              : "disable-legacy=on",
               is_pci_trans ? " transitional" : "");
        if (is_pci_legacy)
            run_pci_legacy();
        else
            run_pci();
    } else {
        printf("diff_qtest %s: QEMU virtio-net-device at 0x%llx (%s) vs vio_mmio%s\n", argv[1],
               (unsigned long long)base, is_legacy ? "legacy v1" : "force-legacy=false",
               is_legacy ? " legacy" : "");
        run_mmio();
    }
    {
        /* the offers side by side, and what lies outside the compared mask */
        enum space s = is_pci ? SP_COMMON : SP_MMIO;
        uint64_t sel = is_pci ? C(DFSELECT) : M(DEVICE_FEATURES_SEL);
        uint64_t df = is_pci ? C(DF) : M(DEVICE_FEATURES);
        uint64_t fq = 0, fo = 0;
        for (unsigned w = 0; w < 2; w++) {
            wr_one(&tq, s, sel, 4, w);
            wr_one(&to, s, sel, 4, w);
            fq |= rd_one(&tq, s, df, 4) << (32 * w);
            fo |= rd_one(&to, s, df, 4) << (32 * w);
        }
        printf("\n  offer: QEMU 0x%016llx, ours 0x%016llx; compared under mask 0x%016llx\n"
               "  outside the mask (configuration, not spec): QEMU only 0x%llx, ours only 0x%llx\n",
               (unsigned long long)fq, (unsigned long long)fo, (unsigned long long)feat_mask,
               (unsigned long long)(fq & ~fo), (unsigned long long)(fo & ~fq));
    }
    printf("\n  known deviations of QEMU 7.2 from the spec (ours follows the spec):\n");
    for (size_t i = 0; i < sizeof(deviations) / sizeof(deviations[0]); i++) {
        struct deviation *d = &deviations[i];
        if (!d->checked)
            continue;
        printf("   %-4s %-34s %-22s %s\n", d->seen ? "seen" : "-", d->label, d->section,
               d->rule);
    }
    printf("\n  %u compared, %u deviations checked, %u undefined-by-spec checked against our "
           "contract, %u informational, %u writes\n",
           n_cmp, n_dev, n_undef, n_info, n_write);
    rc = failures ? 1 : 0;
out:
    net_transport_close(&ours);
    vio_mem_free(mem);
    if (our_ram && our_ram != MAP_FAILED)
        munmap(our_ram, RAM_SIZE);
    qtest_free(qt);
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0) {
    }
    printf("%s: %s (%d failures)\n", argv[1], failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : rc;
}
