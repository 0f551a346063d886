/* SPDX-License-Identifier: MIT */
/*
 * Suite "mmio": the virtio-MMIO device-side register decoder, driven the way Linux's
 * virtio_mmio + virtio_net probe drives it, bound to the real virtio-net model on the loopback
 * backend, with the driver side (net_driver) placed in a guest-RAM arena; plus a table of
 * hostile register accesses with the exact register values they must leave.
 */
#include <check.h>
#include <errno.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"

#define BASE 0x100000ull
#define RAM (4u << 20)
#define QSIZE 64u

static const uint8_t MAC[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

struct fx {
    struct arena a;
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_mmio *m;
    struct vio_net_driver *drv;
    uint64_t area;
    uint64_t area_size;
    uint64_t feats;
    unsigned raised, lowered, log_warn, log_err;
    unsigned nd_calls, nd_q, nd_next; /* notify_data hook */
};

static struct fx F;
static bool want_notif_data;

static void ndata(void *o, unsigned q, uint16_t next)
{
    struct fx *f = o;
    f->nd_calls++;
    f->nd_q = q;
    f->nd_next = next;
}

static void tlog(void *o, int level, const char *obj, const char *msg)
{
    struct fx *f = o;
    if (getenv("MMIO_LOG"))
        fprintf(stderr, "%s: %d: %s\n", obj, level, msg);
    if (level == VIO_LOG_WARN)
        f->log_warn++;
    if (level == VIO_LOG_ERROR)
        f->log_err++;
}

static void raise_irq(void *o, uint32_t bits)
{
    (void)bits;
    ((struct fx *)o)->raised++;
}

static void lower_irq(void *o)
{
    ((struct fx *)o)->lowered++;
}

static uint32_t rd(uint64_t off)
{
    uint64_t v = 0xdeadbeef;
    ck_assert_int_eq(vio_mmio_read(F.m, off, 4, &v), 0);
    return (uint32_t)v;
}

static void wr(uint64_t off, uint32_t v)
{
    ck_assert_int_eq(vio_mmio_write(F.m, off, 4, v), 0);
}

static void drv_notify(void *o, unsigned qidx)
{
    (void)o;
    /* the trapped QueueNotify write (no ioeventfd) */
    ck_assert_int_eq(vio_mmio_write(F.m, VIRTIO_MMIO_QUEUE_NOTIFY, 4, qidx), 0);
}

static void open_fx(bool legacy)
{
    memset(&F, 0, sizeof(F));
    ck_assert_int_eq(arena_init_simple(&F.a, BASE, RAM), 0);
    ck_assert_int_eq(vio_net_loopback_open(NULL, &F.be), 0);
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &F.be,
                                    .mac_valid = true, .queue_size = 256,
                                    .log = tlog, .log_opaque = &F};
    memcpy(dc.mac, MAC, 6);
    ck_assert_int_eq(vio_net_dev_new(&dc, &F.nd), 0);
    struct vio_mmio_config mc = {.struct_size = sizeof(mc), .dev = vio_net_dev_device(F.nd),
                                 .mem = F.a.mem, .legacy = legacy, .log = tlog, .log_opaque = &F,
                                 .raise_irq = raise_irq, .lower_irq = lower_irq,
                                 .irq_opaque = &F, .notification_data = want_notif_data,
                                 .notify_data = ndata};
    ck_assert_int_eq(vio_mmio_new(&mc, &F.m), 0);
    F.area_size = 2u << 20;
    F.area = arena_alloc(&F.a, F.area_size, 4096);
    ck_assert_uint_ne(F.area, 0);
}

static void setup(void)
{
    open_fx(false);
}

static void setup_legacy(void)
{
    open_fx(true);
}

static void teardown(void)
{
    vio_net_driver_free(F.drv);
    vio_mmio_free(F.m);
    vio_net_dev_free(F.nd);
    vio_net_backend_destroy(&F.be);
    arena_fini(&F.a);
}

/* Linux virtio_mmio probe + virtio_net probe up to FEATURES_OK. */
static void probe_features(void)
{
    ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976u);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), VIO_DEVICE_ID_NET);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_VENDOR_ID), 0x4f495621u);
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIO_S_ACKNOWLEDGE);
    wr(VIRTIO_MMIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint64_t f = (uint64_t)rd(VIRTIO_MMIO_DEVICE_FEATURES) << 32;
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    f |= rd(VIRTIO_MMIO_DEVICE_FEATURES);
    /* the device's offer (plus NOTIFICATION_DATA, bit 38, when the transport offers it) */
    ck_assert_uint_eq(f & ~vio_feature_bit(38), vio_device_features(vio_net_dev_device(F.nd)));
    ck_assert_uint_eq(vio_has_feature(f, 38), want_notif_data);
    uint64_t want = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX) |
                    vio_feature_bit(VIO_NET_F_MAC) | vio_feature_bit(VIO_NET_F_MRG_RXBUF) |
                    (want_notif_data ? vio_feature_bit(38) : 0);
    F.feats = f & want;
    ck_assert_uint_eq(F.feats, want);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(F.feats >> 32));
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)F.feats);
    wr(VIRTIO_MMIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
    /* virtio_net reads the MAC one byte at a time inside a generation check */
    uint32_t gen = rd(VIRTIO_MMIO_CONFIG_GENERATION);
    for (unsigned i = 0; i < 6; i++) {
        uint64_t b;
        ck_assert_int_eq(vio_mmio_read(F.m, VIRTIO_MMIO_CONFIG + i, 1, &b), 0);
        ck_assert_uint_eq(b, MAC[i]);
    }
    ck_assert_uint_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen);
}

/* find_vqs: the net_driver's rings, told to the device through the queue registers. */
static void setup_queues(void)
{
    vio_net_driver_free(F.drv);
    F.drv = NULL;
    struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = F.a.mem,
                                       .area = F.area, .area_size = F.area_size,
                                       .features = F.feats, .queue_pairs = 1,
                                       .queue_size = QSIZE, .notify = drv_notify};
    ck_assert_uint_le(vio_net_driver_area_size(&nc), F.area_size);
    ck_assert_int_eq(vio_net_driver_new(&nc, &F.drv), 0);
    for (unsigned i = 0; i < 2; i++) {
        struct vio_net_driver_queue_addr qa;
        ck_assert_int_eq(vio_net_driver_queue_addr(F.drv, i, &qa), 0);
        wr(VIRTIO_MMIO_QUEUE_SEL, i);
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        wr(VIRTIO_MMIO_QUEUE_NUM, qa.size);
        wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)qa.desc);
        wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(qa.desc >> 32));
        wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)qa.driver);
        wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(qa.driver >> 32));
        wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)qa.device);
        wr(VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(qa.device >> 32));
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
    }
}

static void driver_ok(void)
{
    wr(VIRTIO_MMIO_STATUS, 0x0f);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0x0f);
}

static void bring_up(void)
{
    probe_features();
    setup_queues();
    driver_ok();
}

/* Send @p n frames to our own MAC through TX, loop them back and receive them on RX. */
static void traffic(unsigned n)
{
    ck_assert_int_gt(vio_net_driver_rx_fill(F.drv, 0), 0);
    vio_net_driver_enable_cb(F.drv, VIO_NET_DRIVER_RXQ(0));
    ck_assert_int_ge(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_RXQ(0)), 0);
    for (unsigned k = 0; k < n; k++) {
        uint8_t fr[200], got[2048];
        memcpy(fr, MAC, 6);
        memcpy(fr + 6, "\x02\x00\x00\x00\x00\x01", 6);
        fr[12] = 0x08;
        fr[13] = 0x00;
        for (unsigned i = 14; i < sizeof(fr); i++)
            fr[i] = (uint8_t)(i * 7 + k);
        struct vio_net_hdr h;
        memset(&h, 0, sizeof(h));
        unsigned before = F.raised;
        ck_assert_int_ge(vio_net_driver_send(F.drv, 0, &h, fr, sizeof(fr)), 0);
        /* kick: net_driver's notify writes QueueNotify (a trapped write) */
        ck_assert_int_eq(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_TXQ(0)), 1);
        /* the loopback hands the frame back; the device moves it into RX (the VMM's rx fd
         * handler; the TX kick may have done it already) */
        ck_assert_int_ge(vio_net_dev_rx_process(F.nd, 0, 0), 0);
        ck_assert_uint_gt(F.raised, before);
        ck_assert_uint_ne(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIO_MMIO_INT_VRING, 0);
        ssize_t len = vio_net_driver_recv(F.drv, 0, NULL, got, sizeof(got));
        ck_assert_int_eq(len, (ssize_t)sizeof(fr));
        ck_assert_mem_eq(got, fr, sizeof(fr));
        unsigned low = F.lowered;
        wr(VIRTIO_MMIO_INTERRUPT_ACK, rd(VIRTIO_MMIO_INTERRUPT_STATUS));
        ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        ck_assert_uint_eq(F.lowered, low + 1);
        void *tok[4];
        vio_net_driver_tx_reclaim(F.drv, 0, tok, 4);
        /* as after NAPI: callbacks back on, the reposted buffers published */
        vio_net_driver_enable_cb(F.drv, VIO_NET_DRIVER_RXQ(0));
        ck_assert_int_ge(vio_net_driver_kick(F.drv, VIO_NET_DRIVER_RXQ(0)), 0);
    }
}

START_TEST(probe_traffic_reset)
{
    bring_up();
    traffic(8);
    /* reset: status 0, queue registers cleared, interrupt low */
    wr(VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
    wr(VIRTIO_MMIO_QUEUE_SEL, 0);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    ck_assert_int_eq(vio_mmio_queue_notify(F.m, 1), -EIO);
    /* and re-init, with fresh rings in the same place */
    bring_up();
    traffic(4);
}
END_TEST

START_TEST(notify_info_and_ioeventfd_path)
{
    struct vio_mmio_notify_info ni;
    ck_assert_int_eq(vio_mmio_notify_info(F.m, 1, &ni), 0);
    ck_assert_uint_eq(ni.offset, 0x50);
    ck_assert_uint_eq(ni.size, 4);
    ck_assert_uint_eq(ni.value, 1);
    ck_assert_int_eq(vio_mmio_notify_info(F.m, 3, &ni), -ERANGE); /* rx0, tx0, ctrl */
    ck_assert_int_eq(vio_mmio_notify_info(F.m, 100000, &ni), -ERANGE);
    ck_assert_int_eq(vio_mmio_notify_info(NULL, 0, &ni), -EINVAL);
    ck_assert_int_eq(vio_mmio_queue_notify(F.m, 0), -EIO); /* not live yet */
    bring_up();
    ck_assert_int_ge(vio_mmio_queue_notify(F.m, 1), 0);
    ck_assert_int_eq(vio_mmio_queue_notify(F.m, 999), -ERANGE);
}
END_TEST

START_TEST(config_window_rules)
{
    uint64_t v;
    /* 16-bit status field at offset 6: a 16-bit aligned read works */
    ck_assert_int_eq(vio_mmio_read(F.m, VIRTIO_MMIO_CONFIG + 6, 2, &v), 0);
    ck_assert_uint_eq(v, VIO_NET_S_LINK_UP);
    ck_assert_int_eq(vio_mmio_read(F.m, VIRTIO_MMIO_CONFIG + 4, 4, &v), 0);
    ck_assert_uint_eq(v & 0xffff, MAC[4] | (MAC[5] << 8));
}
END_TEST


/* virtio_net with CTRL_VQ: three queues, the control queue (2) set up by the driver, a
 * command through it, kicked by a trapped QueueNotify write. */
START_TEST(control_queue)
{
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, 3);
    uint64_t f = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_NET_F_MAC) |
                 vio_feature_bit(VIO_NET_F_CTRL_VQ) | vio_feature_bit(VIO_NET_F_CTRL_RX);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
    wr(VIRTIO_MMIO_STATUS, 0x0b);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0x0b);
    F.feats = f;
    setup_queues();
    uint16_t n = 16;
    uint64_t desc = arena_alloc(&F.a, 16u * n, 16), avail = arena_alloc(&F.a, 6 + 2u * n, 2);
    uint64_t used = arena_alloc(&F.a, 6 + 8u * n, 4), cmd = arena_alloc(&F.a, 64, 16);
    struct vio_drvq_config qc = {.struct_size = sizeof(qc), .size = n, .index = 2,
                                 .features = f, .mem = F.a.mem, .desc = desc, .driver = avail,
                                 .device = used};
    struct vio_drvq *cq;
    ck_assert_int_eq(vio_drvq_new(&qc, &cq), 0);
    wr(VIRTIO_MMIO_QUEUE_SEL, 2);
    ck_assert_uint_gt(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    wr(VIRTIO_MMIO_QUEUE_NUM, n);
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
    wr(VIRTIO_MMIO_QUEUE_SEL, 3); /* there is no fourth queue without MQ */
    ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    driver_ok();
    /* VIRTIO_NET_CTRL_RX (0) / PROMISC (0), on: class, command, data | ack */
    uint8_t c[4] = {0, 0, 1, 0xee};
    ck_assert_int_eq(arena_write(&F.a, cmd, c, 4), 0);
    struct vio_sg sg[2] = {{cmd, 3}, {cmd + 3, 1}};
    static int token;
    ck_assert_int_eq(vio_drvq_add(cq, sg, 1, 1, &token), 0);
    ck_assert(vio_drvq_kick_prepare(cq));
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    void *t = NULL;
    uint32_t len = 0;
    ck_assert_int_eq(vio_drvq_get_used(cq, &t, &len), 0);
    ck_assert_uint_eq(len, 1);
    ck_assert_ptr_eq(t, &token);
    ck_assert_int_eq(arena_read(&F.a, cmd + 3, c + 3, 1), 0);
    ck_assert_uint_eq(c[3], 0); /* VIRTIO_NET_OK */
    struct vio_net_rx_filter flt;
    ck_assert_int_eq(vio_net_dev_get_rx_filter(F.nd, &flt), 0);
    ck_assert_uint_ne(flt.flags & VIO_NET_FILTER_PROMISC, 0);
    traffic(2);
    vio_drvq_free(cq);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Hostile accesses: a table */

enum stage { ST_DRIVER, ST_FEAT, ST_LIVE };
enum { OPR = 1, OPW = 2 };

struct op {
    int kind; /* 0: end */
    uint32_t off;
    unsigned size;
    uint64_t val;
};

struct hostile {
    const char *name;
    enum stage stage;
    struct op ops[4];
    int last_rc;       /* rc of the last op */
    uint32_t chk_off;  /* register read (4 bytes) afterwards; 0xffff: none */
    uint32_t chk_val;
    bool needs_reset;
};

#define R(o, s) {OPR, (o), (s), 0}
#define W(o, v) {OPW, (o), 4, (v)}
#define WS(o, s, v) {OPW, (o), (s), (v)}
#define NOCHK 0xffffu
#define ST 0x70u

static const struct hostile HOSTILE[] = {
    {"narrow register read", ST_DRIVER, {R(0x000, 2)}, -EPROTO, 0x000, 0x74726976u, false},
    {"unaligned register read", ST_DRIVER, {R(0x002, 4)}, -EPROTO, NOCHK, 0, false},
    {"8-byte register read", ST_DRIVER, {R(0x000, 8)}, -EPROTO, NOCHK, 0, false},
    {"read of write-only DeviceFeaturesSel", ST_DRIVER, {R(0x014, 4)}, -EPROTO, NOCHK, 0, false},
    {"read of write-only QueueDescLow", ST_DRIVER, {R(0x080, 4)}, -EPROTO, NOCHK, 0, false},
    {"read past the block", ST_DRIVER, {R(0x300, 4)}, -EPROTO, NOCHK, 0, false},
    {"write to MagicValue", ST_DRIVER, {W(0x000, 1)}, -EPROTO, 0x000, 0x74726976u, false},
    {"write to Version", ST_DRIVER, {W(0x004, 1)}, -EPROTO, 0x004, 2, false},
    {"1-byte write to Status", ST_DRIVER, {WS(0x070, 1, 0xf)}, -EPROTO, ST, 3, false},
    {"GuestPageSize on version 2", ST_DRIVER, {W(0x028, 4096)}, -EPROTO, NOCHK, 0, false},
    {"QueuePFN on version 2", ST_FEAT, {W(0x030, 0), W(0x040, 0x200)}, -EPROTO, 0x044, 0, false},
    {"QueueSel out of range, QueueNum", ST_FEAT, {W(0x030, 99), W(0x038, 64)}, -EPROTO, 0x034, 0,
     false},
    {"QueueSel out of range, QueueReady", ST_FEAT, {W(0x030, 0xffffffffu), W(0x044, 1)}, -EPROTO,
     0x044, 0, false},
    {"QueueNum not a power of two", ST_FEAT, {W(0x030, 0), W(0x038, 100), W(0x044, 1)}, -EPROTO,
     0x044, 0, false},
    {"QueueNum above QueueNumMax", ST_FEAT, {W(0x030, 0), W(0x038, 512), W(0x044, 1)}, -EPROTO,
     0x044, 0, false},
    {"QueueNum zero", ST_FEAT, {W(0x030, 0), W(0x038, 0)}, -EPROTO, 0x044, 0, false},
    {"QueueReady 2", ST_FEAT, {W(0x030, 0), W(0x038, 64), W(0x044, 2)}, -EPROTO, 0x044, 0, false},
    {"rings at guest address 0 (outside memory)", ST_FEAT,
     {W(0x030, 0), W(0x038, 64), W(0x044, 1)}, -EPROTO, ST, 0x4b, true},
    {"rings past the end of memory", ST_FEAT,
     {W(0x030, 0), W(0x038, 256), W(0x080, (uint32_t)(BASE + RAM - 4096)), W(0x044, 1)}, -EPROTO,
     ST, 0x4b, true},
    {"rings above 4 GiB", ST_FEAT, {W(0x030, 0), W(0x038, 64), W(0x084, 1), W(0x044, 1)},
     -EPROTO, ST, 0x4b, true},
    {"live queue: new size", ST_LIVE, {W(0x030, 0), W(0x038, 32)}, -EPROTO, ST, 0x0f, false},
    {"live queue: new descriptor address", ST_LIVE, {W(0x030, 1), W(0x080, 0x1000)}, -EPROTO, ST,
     0x0f, false},
    {"live queue: QueueReady read", ST_LIVE, {W(0x030, 1), R(0x044, 4)}, 0, 0x044, 1, false},
    {"features after FEATURES_OK", ST_FEAT, {W(0x024, 0), W(0x020, 0)}, -EPROTO, ST, 0x0b,
     false},
    {"features before DRIVER", ST_DRIVER, {W(0x070, 0), W(0x024, 0), W(0x020, 1)}, -EPROTO, ST,
     0, false},
    {"feature word 2", ST_DRIVER, {W(0x024, 2), W(0x020, 1)}, -EPROTO, ST, 3, false},
    {"unoffered feature bit 63: FEATURES_OK refused", ST_DRIVER,
     {W(0x024, 1), W(0x020, 0x80000001u), W(0x070, 0x0b)}, -ENOTSUP, ST, 3, false},
    {"no VERSION_1: FEATURES_OK refused", ST_DRIVER, {W(0x024, 1), W(0x020, 0), W(0x070, 0x0b)},
     -ENOTSUP, ST, 3, false},
    {"status clears a bit", ST_FEAT, {W(0x070, 0x01)}, -EPROTO, ST, 0x0b, false},
    {"status sets NEEDS_RESET", ST_FEAT, {W(0x070, 0x4b)}, -EPROTO, ST, 0x0b, false},
    {"status above 8 bits", ST_FEAT, {W(0x070, 0x10b)}, -EPROTO, ST, 0x0b, false},
    {"DRIVER_OK without FEATURES_OK", ST_DRIVER, {W(0x070, 0x07)}, -EPROTO, ST, 3, false},
    {"QueueNotify of a missing queue", ST_LIVE, {W(0x050, 999)}, -EPROTO, ST, 0x0f, false},
    {"QueueNotify of a disabled queue", ST_FEAT, {W(0x050, 0)}, 0, ST, 0x0b, false},
    {"config read 8 bytes", ST_DRIVER, {R(0x100, 8)}, -EPROTO, NOCHK, 0, false},
    {"config read unaligned 16 bits", ST_DRIVER, {R(0x101, 2)}, -EPROTO, NOCHK, 0, false},
    {"config read past the config space", ST_DRIVER, {R(0x1fc, 4)}, -EPROTO, NOCHK, 0, false},
    {"config read across the block end", ST_DRIVER, {R(0x1fe, 4)}, -EPROTO, NOCHK, 0, false},
    {"config write to the MAC (read-only)", ST_DRIVER, {WS(0x100, 1, 0xff)}, -EPROTO, NOCHK, 0,
     false},
    {"SHM length of region 0 (none)", ST_DRIVER, {W(0x0ac, 0), R(0x0b0, 4)}, 0, 0x0b4,
     0xffffffffu, false},
    {"InterruptACK of bits never raised", ST_DRIVER, {W(0x064, 0xffffffffu)}, 0, 0x060, 0, false},
    {"write to InterruptStatus", ST_DRIVER, {W(0x060, 3)}, -EPROTO, 0x060, 0, false},
    {"write to ConfigGeneration", ST_DRIVER, {W(0x0fc, 3)}, -EPROTO, NOCHK, 0, false},
};

static void to_stage(enum stage s)
{
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, 1);
    wr(VIRTIO_MMIO_STATUS, 3);
    if (s == ST_DRIVER)
        return;
    if (s == ST_FEAT) {
        wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
        wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        wr(VIRTIO_MMIO_STATUS, 0x0b);
        return;
    }
    probe_features();
    setup_queues();
    driver_ok();
}

START_TEST(hostile_access)
{
    const struct hostile *t = &HOSTILE[_i];
    to_stage(t->stage);
    unsigned warn = F.log_warn + F.log_err;
    int rc = 0;
    for (unsigned k = 0; k < 4 && t->ops[k].kind; k++) {
        const struct op *o = &t->ops[k];
        uint64_t v = 0x5a5a;
        if (o->kind == OPR) {
            rc = vio_mmio_read(F.m, o->off, o->size, &v);
            if (rc < 0)
                ck_assert_uint_eq(v, 0);
        } else {
            rc = vio_mmio_write(F.m, o->off, o->size, o->val);
        }
    }
    ck_assert_msg(rc == t->last_rc, "%s: rc %d, want %d", t->name, rc, t->last_rc);
    if (t->last_rc < 0 && t->last_rc != -ENOTSUP)
        ck_assert_msg(F.log_warn + F.log_err > warn, "%s: not logged", t->name);
    if (t->chk_off != NOCHK)
        ck_assert_msg(rd(t->chk_off) == t->chk_val, "%s: reg 0x%x = 0x%x, want 0x%x", t->name,
                      t->chk_off, rd(t->chk_off), t->chk_val);
    uint32_t st = rd(VIRTIO_MMIO_STATUS);
    ck_assert_msg(!!(st & VIO_S_NEEDS_RESET) == t->needs_reset, "%s: status 0x%x", t->name, st);
    if (t->needs_reset)
        ck_assert_uint_ne(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIO_MMIO_INT_CONFIG, 0);
    /* whatever happened, a reset brings the device back */
    wr(VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
    bring_up();
    traffic(1);
}
END_TEST

START_TEST(log_rate_limited)
{
    unsigned before = F.log_warn;
    for (unsigned i = 0; i < 10000; i++) {
        uint64_t v;
        vio_mmio_read(F.m, 0x2, 4, &v);
    }
    ck_assert_uint_le(F.log_warn - before, 64);
    ck_assert_uint_gt(F.log_warn - before, 0);
}
END_TEST

START_TEST(new_rejects)
{
    struct vio_mmio *m = NULL;
    struct vio_mmio_config mc = {.struct_size = sizeof(mc), .dev = vio_net_dev_device(F.nd),
                                 .mem = F.a.mem};
    ck_assert_int_eq(vio_mmio_new(&mc, &m), -EBUSY); /* F.m holds the binding */
    ck_assert_ptr_null(m);
    mc.struct_size = 4;
    ck_assert_int_eq(vio_mmio_new(&mc, &m), -EINVAL);
    ck_assert_int_eq(vio_mmio_new(NULL, &m), -EINVAL);
    ck_assert_int_eq(vio_mmio_read(NULL, 0, 4, NULL), -EINVAL);
    ck_assert_int_eq(vio_mmio_write(NULL, 0, 4, 0), -EINVAL);
    vio_mmio_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Legacy (version 1) */

START_TEST(legacy_pfn)
{
    ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 1);
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, 3);
    wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
    /* Linux negotiates VERSION_1 over a version 1 transport too when the device offers it
     * (and then sets FEATURES_OK); the virtio-net model accepts no driver without it */
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIO_NET_F_MAC);
    wr(VIRTIO_MMIO_STATUS, 0x0b);
    uint64_t ring = arena_alloc(&F.a, 3 * 4096 + QSIZE * 24, 4096);
    ck_assert_uint_ne(ring, 0);
    for (unsigned i = 0; i < 2; i++) {
        uint64_t r = i ? arena_alloc(&F.a, 4 * 4096, 4096) : ring;
        wr(VIRTIO_MMIO_QUEUE_SEL, i);
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
        wr(VIRTIO_MMIO_QUEUE_ALIGN, 4096);
        wr(VIRTIO_MMIO_QUEUE_PFN, (uint32_t)(r / 4096));
        ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), r / 4096);
    }
    uint64_t v;
    ck_assert_int_eq(vio_mmio_read(F.m, VIRTIO_MMIO_QUEUE_READY, 4, &v), -EPROTO);
    ck_assert_int_eq(vio_mmio_write(F.m, VIRTIO_MMIO_QUEUE_PFN, 4, 0x7fffffff), -EPROTO); /* live */
    wr(VIRTIO_MMIO_STATUS, 0x0f);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0x0f);
    ck_assert_int_ge(vio_mmio_queue_notify(F.m, 1), 0);
    /* a PFN outside memory: NEEDS_RESET */
    wr(VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
    wr(VIRTIO_MMIO_STATUS, 3);
    wr(VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    ck_assert_int_eq(vio_mmio_write(F.m, VIRTIO_MMIO_QUEUE_PFN, 4, 0x7fffffff), -EPROTO);
    ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0x43);
    /* 8-byte config reads are fine on a legacy device */
    ck_assert_int_eq(vio_mmio_read(F.m, VIRTIO_MMIO_CONFIG, 8, &v), 0);
    ck_assert_uint_eq(v & 0xff, MAC[0]);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* VIRTIO_F_NOTIFICATION_DATA                                                */

START_TEST(notification_data)
{
    want_notif_data = true; /* the fixture offers it, probe_features() expects and takes it */
    open_fx(false);
    bring_up();
    want_notif_data = false;
    ck_assert(!vio_has_feature(vio_net_dev_features(F.nd), 38)); /* the transport's bit */
    /* QueueNotify: vqn in bits 0-15, the next avail index in 16-31, passed on */
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0x00070001u);
    ck_assert_uint_eq(F.nd_calls, 1);
    ck_assert_uint_eq(F.nd_q, 1);
    ck_assert_uint_eq(F.nd_next, 7);
    /* a queue the device does not have, whatever the data */
    ck_assert_int_eq(vio_mmio_write(F.m, VIRTIO_MMIO_QUEUE_NOTIFY, 4, 0x00070009u), -EPROTO);
    ck_assert_uint_eq(F.nd_calls, 1);
    traffic(2); /* net_driver kicks with the bare index (data 0) */
    ck_assert_uint_gt(F.nd_calls, 1);
    teardown();
    /* not on a legacy transport (bit 38 is beyond its reach anyway) */
    want_notif_data = true;
    open_fx(true);
    want_notif_data = false;
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    ck_assert(!(rd(VIRTIO_MMIO_DEVICE_FEATURES) & (1u << 6)));
    teardown();
}
END_TEST

static Suite *mmio_suite(void)
{
    Suite *s = suite_create("mmio");
    TCase *tc = tcase_create("linux_probe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, probe_traffic_reset);
    tcase_add_test(tc, notify_info_and_ioeventfd_path);
    tcase_add_test(tc, config_window_rules);
    tcase_add_test(tc, control_queue);
    tcase_add_test(tc, new_rejects);
    tcase_add_test(tc, log_rate_limited);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, hostile_access, 0, (int)(sizeof(HOSTILE) / sizeof(HOSTILE[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("legacy");
    tcase_add_checked_fixture(tc, setup_legacy, teardown);
    tcase_add_test(tc, legacy_pfn);
    suite_add_tcase(s, tc);
    tc = tcase_create("notification_data");
    tcase_add_test(tc, notification_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mmio_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
