/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-MMIO device-side decoder (src/transport/mmio.c) and the
 * shared queue/status register helper (src/transport/vq_regs.c), bound to the virtio-net
 * model on a loopback backend, with 64 KiB of guest memory in a guard-paged arena (a device
 * access outside it faults; ASan reports any other stray access).
 *
 * Input: byte 0 bit 0 selects legacy (version 1), bit 1 offers VIRTIO_F_NOTIFICATION_DATA
 * (version 2 only; QueueNotify then carries data in bits 16-31), bit 2: offload mode (the
 * VMM's queue_fds / mem_regions hooks are set and a pass-through device claims every queue it
 * starts, see "Offload mode" below), bit 3: queue_fds fails for odd queues; then records of
 * 7 bytes:
 *   op      bits 0-1: 0 read, 1 write, 2 write with the value taken as an offset into guest
 *           memory (so ring addresses land inside it often), 3 data path: let the device move
 *           loopback frames into RX and kick TX (vio_mmio_queue_notify of every queue),
 *           then raise every queue's interrupt (vio_mmio_queue_interrupt);
 *           bits 2-3: access width 4, 1, 2, 8; bit 4: offset taken literally (else it is
 *           rounded down to a multiple of 4 inside the register block)
 *   offset  2 bytes (little-endian)
 *   value   4 bytes (little-endian)
 *
 * Oracles (abort on violation), after every access and at the end:
 *   - the status byte has no reserved bit (0x30); DRIVER_OK on a modern device implies
 *     FEATURES_OK; a reset (Status = 0) always reads back 0 with every QueueReady 0 and
 *     InterruptStatus 0;
 *   - InterruptStatus has no bits other than VRING | CONFIG; NEEDS_RESET implies CONFIG was
 *     raised (until acknowledged);
 *   - every read that returns -EPROTO yields 0; reads of magic / version never change.
 */
#include <errno.h>
#include <linux/virtio_mmio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arena.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_mmio: line %d: %s: ", __LINE__, #cond);                         \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define BASE 0x10000ull
#define RAM 0x10000u
#define MAXOPS 512u

static uint32_t rd(struct vio_mmio *m, uint64_t off)
{
    uint64_t v = 0;
    int rc = vio_mmio_read(m, off, 4, &v);
    CHECK(rc == 0, "read 0x%llx: %d", (unsigned long long)off, rc);
    return (uint32_t)v;
}

static void check_state(struct vio_mmio *m, bool legacy)
{
    uint32_t st = rd(m, VIRTIO_MMIO_STATUS);
    CHECK((st & 0x30) == 0, "status 0x%x has reserved bits", st);
    if (!legacy && (st & VIO_S_DRIVER_OK))
        CHECK(st & VIO_S_FEATURES_OK, "status 0x%x: DRIVER_OK without FEATURES_OK", st);
    uint32_t isr = rd(m, VIRTIO_MMIO_INTERRUPT_STATUS);
    CHECK((isr & ~3u) == 0, "InterruptStatus 0x%x", isr);
    CHECK(rd(m, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976u, "magic changed");
    CHECK(rd(m, VIRTIO_MMIO_VERSION) == (legacy ? 1u : 2u), "version changed");
}

static unsigned g_nq;

/* ------------------------------------------------------------------------ */
/* Offload mode: a pass-through device around the net model that claims every queue it starts
 * (vio_device_hooks::queue_offload) before the model starts it, and a VMM whose queue_fds
 * hands out one eventfd pair per queue (failing for odd queues when asked). Oracles: a
 * claimed queue never reaches the device's queue_notify, the claim carries the VMM's fds and
 * the ring as the registers place it, and a claim ends before the queue is claimed again. */

#define OFF_MAXQ 8u

struct shim {
    struct vio_device dev;
    struct vio_device *in;
    struct vio_device_hooks h;
    const struct vio_mem *mem;
    bool claimed[OFF_MAXQ];
    bool fail_odd;
    int kick[OFF_MAXQ], call[OFF_MAXQ];
};

static struct shim g_sh;

#define SHI(o) (((struct shim *)(o))->in)
static uint32_t sh_id(void *o) { return vio_device_id(SHI(o)); }
static uint64_t sh_features(void *o) { return vio_device_features(SHI(o)); }
static uint32_t sh_cfg_size(void *o) { return vio_device_config_size(SHI(o)); }
static int sh_cfg_read(void *o, uint32_t off, void *buf, uint32_t len)
{
    return vio_device_config_read(SHI(o), off, buf, len);
}
static int sh_cfg_write(void *o, uint32_t off, const void *buf, uint32_t len)
{
    return vio_device_config_write(SHI(o), off, buf, len);
}
static uint32_t sh_gen(void *o) { return vio_device_config_generation(SHI(o)); }
static unsigned sh_nq(void *o) { return vio_device_num_queues(SHI(o)); }
static int sh_qinfo(void *o, unsigned q, struct vio_device_queue_info *out)
{
    return vio_device_queue_info(SHI(o), q, out);
}
static int sh_setf(void *o, uint64_t f) { return vio_device_set_features(SHI(o), f); }
static int sh_start(void *o, unsigned q, struct vio_queue *vq)
{
    struct shim *s = o;
    CHECK(q < OFF_MAXQ && !s->claimed[q], "queue %u started while claimed", q);
    CHECK(s->h.queue_offload && s->h.mem_regions, "offload hooks not bound");
    struct vio_device_mem_region r[2];
    CHECK(s->h.mem_regions(s->h.opaque, r, 2) == 1 && r[0].guest_addr == BASE,
          "mem_regions not forwarded");
    struct vio_device_queue_offload qo = {.struct_size = sizeof(qo)};
    int rc = s->h.queue_offload(s->h.opaque, q, &qo);
    if (rc < 0) {
        CHECK(s->fail_odd && (q & 1), "queue_offload %u failed: %d", q, rc);
        return rc;
    }
    CHECK(qo.kick_fd == s->kick[q] && qo.call_fd == s->call[q] && qo.err_fd == -1,
          "queue %u: fds %d %d %d", q, qo.kick_fd, qo.call_fd, qo.err_fd);
    CHECK(qo.size && (qo.size & (qo.size - 1)) == 0, "queue %u size %u", q, qo.size);
    CHECK((void *)(uintptr_t)qo.desc_host ==
              vio_mem_ptr(s->mem, qo.desc_gpa, 16u * qo.size, VIO_MEM_READ) &&
              (void *)(uintptr_t)qo.used_host ==
                  vio_mem_ptr(s->mem, qo.used_gpa, 4u + 8u * qo.size, VIO_MEM_WRITE) &&
              (void *)(uintptr_t)qo.avail_host ==
                  vio_mem_ptr(s->mem, qo.avail_gpa, 4u + 2u * qo.size, VIO_MEM_READ),
          "queue %u: host addresses do not match the rings", q);
    s->claimed[q] = true;
    rc = vio_device_queue_start(SHI(o), q, vq);
    if (rc < 0)
        s->claimed[q] = false;
    return rc;
}
static void sh_stop(void *o, unsigned q)
{
    struct shim *s = o;
    if (q < OFF_MAXQ)
        s->claimed[q] = false;
    vio_device_queue_stop(SHI(o), q);
}
static int sh_notify(void *o, unsigned q)
{
    struct shim *s = o;
    CHECK(q >= OFF_MAXQ || !s->claimed[q], "claimed queue %u notified through the transport", q);
    return vio_device_queue_notify(SHI(o), q);
}
static void sh_reset(void *o)
{
    struct shim *s = o;
    memset(s->claimed, 0, sizeof(s->claimed));
    vio_device_reset(SHI(o));
}
static int sh_bind(void *o, const struct vio_device_hooks *h)
{
    struct shim *s = o;
    if (h)
        s->h = *h;
    else
        memset(&s->h, 0, sizeof(s->h));
    return vio_device_bind(SHI(o), h);
}

static const struct vio_device_ops SH_OPS = {
    .name = "offload-shim", .device_id = sh_id, .features = sh_features,
    .config_size = sh_cfg_size, .config_read = sh_cfg_read, .config_write = sh_cfg_write,
    .config_generation = sh_gen, .num_queues = sh_nq, .queue_info = sh_qinfo,
    .set_features = sh_setf, .queue_start = sh_start, .queue_stop = sh_stop,
    .queue_notify = sh_notify, .reset = sh_reset, .bind = sh_bind};

static int vmm_mem_regions(void *o, struct vio_device_mem_region *out, unsigned cap)
{
    (void)o;
    if (cap)
        out[0] = (struct vio_device_mem_region){.guest_addr = BASE, .size = RAM, .fd = -1};
    return 1;
}

static int vmm_queue_fds(void *o, unsigned q, uint16_t vector, int *kick, int *call)
{
    struct shim *s = o;
    (void)vector;
    CHECK(q < OFF_MAXQ, "queue_fds for queue %u", q);
    if (s->fail_odd && (q & 1))
        return -EMFILE;
    *kick = s->kick[q];
    *call = s->call[q];
    return 0;
}

/* Set up the offload mode's fds once (eventfds live for the whole run). */
static void shim_fds(void)
{
    static bool done;
    if (done)
        return;
    for (unsigned q = 0; q < OFF_MAXQ; q++) {
        g_sh.kick[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        g_sh.call[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (g_sh.kick[q] < 0 || g_sh.call[q] < 0)
            abort();
    }
    done = true;
}

static void shim_drain(void)
{
    for (unsigned q = 0; q < OFF_MAXQ; q++) {
        uint64_t v;
        if (read(g_sh.kick[q], &v, sizeof(v)) == (ssize_t)sizeof(v))
            CHECK(g_sh.claimed[q], "kick eventfd of unclaimed queue %u written", q);
    }
}

static void notify_data_hook(void *o, unsigned q, uint16_t next)
{
    (void)o;
    (void)next;
    CHECK(q < g_nq, "notify data for queue %u of %u", q, g_nq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool legacy = data[0] & 1;
    bool ndata = data[0] & 2;
    bool offload = data[0] & 4;
    bool fail_odd = data[0] & 8;
    data++;
    size--;
    struct arena a;
    if (arena_init_simple(&a, BASE, RAM) < 0)
        abort();
    struct vio_net_backend be;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .ring_frames = 8,
                                        .drop_when_full = true};
    if (vio_net_loopback_open(&bc, &be) < 0)
        abort();
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &be,
                                    .mac_valid = true, .mac = {2, 0, 0, 0, 0, 1},
                                    .queue_size = 16, .ctrl_queue_size = 16};
    struct vio_net_dev *nd;
    if (vio_net_dev_new(&dc, &nd) < 0)
        abort();
    struct vio_mmio *m;
    struct vio_mmio_config mc = {.struct_size = sizeof(mc), .dev = vio_net_dev_device(nd),
                                 .mem = a.mem, .legacy = legacy, .notification_data = ndata,
                                 .notify_data = notify_data_hook};
    if (offload) {
        shim_fds();
        memset(g_sh.claimed, 0, sizeof(g_sh.claimed));
        memset(&g_sh.h, 0, sizeof(g_sh.h));
        g_sh.dev = (struct vio_device){.ops = &SH_OPS, .opaque = &g_sh};
        g_sh.in = vio_net_dev_device(nd);
        g_sh.mem = a.mem;
        g_sh.fail_odd = fail_odd;
        mc.dev = &g_sh.dev;
        mc.mem_regions = vmm_mem_regions;
        mc.queue_fds = vmm_queue_fds;
        mc.offload_opaque = &g_sh;
    }
    if (vio_mmio_new(&mc, &m) < 0)
        abort();
    g_nq = vio_device_num_queues(vio_net_dev_device(nd));
    static const unsigned widths[4] = {4, 1, 2, 8};
    unsigned nops = 0;
    uint32_t acked_isr = 0;
    for (size_t i = 0; i + 7 <= size && nops < MAXOPS; i += 7, nops++) {
        uint8_t op = data[i];
        uint64_t off = (uint64_t)data[i + 1] | (uint64_t)data[i + 2] << 8;
        uint32_t val = (uint32_t)data[i + 3] | (uint32_t)data[i + 4] << 8 |
                       (uint32_t)data[i + 5] << 16 | (uint32_t)data[i + 6] << 24;
        unsigned w = widths[(op >> 2) & 3];
        if (!(op & 0x10))
            off = (off % VIO_MMIO_SIZE) & ~3ull;
        switch (op & 3) {
        case 0: {
            uint64_t v = 0x1234;
            int rc = vio_mmio_read(m, off, w, &v);
            CHECK(rc == 0 || rc == -EPROTO, "read rc %d", rc);
            if (rc < 0)
                CHECK(v == 0, "failed read left 0x%llx", (unsigned long long)v);
            break;
        }
        case 1:
        case 2: {
            uint64_t v = (op & 3) == 2 ? BASE + (val % (RAM + 0x100)) : val;
            if ((op & 3) == 2 && off == VIRTIO_MMIO_QUEUE_PFN)
                v = (BASE + (val % RAM)) >> 12;
            int rc = vio_mmio_write(m, off, w, v);
            CHECK(rc == 0 || rc == -EPROTO || rc == -ENOTSUP, "write rc %d", rc);
            if (off == VIRTIO_MMIO_STATUS && w == 4 && v == 0 && rc == 0) {
                CHECK(rd(m, VIRTIO_MMIO_STATUS) == 0, "reset did not stick");
                CHECK(rd(m, VIRTIO_MMIO_INTERRUPT_STATUS) == 0, "reset kept interrupts");
                for (unsigned q = 0; q < 4; q++) {
                    vio_mmio_write(m, VIRTIO_MMIO_QUEUE_SEL, 4, q);
                    uint64_t r = 0;
                    if (legacy)
                        vio_mmio_read(m, VIRTIO_MMIO_QUEUE_PFN, 4, &r);
                    else
                        vio_mmio_read(m, VIRTIO_MMIO_QUEUE_READY, 4, &r);
                    CHECK(r == 0, "queue %u still ready after reset", q);
                }
                vio_mmio_write(m, VIRTIO_MMIO_QUEUE_SEL, 4, 0);
            }
            if (off == VIRTIO_MMIO_INTERRUPT_ACK && w == 4)
                acked_isr |= (uint32_t)v;
            break;
        }
        default:
            vio_net_dev_rx_process(nd, 0, 4);
            for (unsigned q = 0; q < 4; q++)
                vio_mmio_queue_notify(m, q);
            for (unsigned q = 0; q < 4; q++) {
                int rc = vio_mmio_queue_interrupt(m, q);
                CHECK(q < g_nq ? rc == 0 : rc == -ENOENT, "queue_interrupt %u: %d", q, rc);
            }
            break;
        }
        if (offload)
            shim_drain();
        uint32_t st = rd(m, VIRTIO_MMIO_STATUS);
        uint32_t isr = rd(m, VIRTIO_MMIO_INTERRUPT_STATUS);
        if ((st & VIO_S_NEEDS_RESET) && !(acked_isr & VIO_MMIO_INT_CONFIG))
            CHECK(isr & VIO_MMIO_INT_CONFIG, "NEEDS_RESET without a config interrupt");
        if (!(st & VIO_S_NEEDS_RESET))
            acked_isr = 0;
        check_state(m, legacy);
    }
    /* the end: a reset always brings the device back to a clean state */
    CHECK(vio_mmio_write(m, VIRTIO_MMIO_STATUS, 4, 0) == 0, "final reset refused");
    CHECK(rd(m, VIRTIO_MMIO_STATUS) == 0, "final reset did not stick");
    check_state(m, legacy);
    if (offload)
        for (unsigned q = 0; q < OFF_MAXQ; q++)
            CHECK(!g_sh.claimed[q], "queue %u still claimed after reset", q);
    vio_mmio_free(m);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
    arena_fini(&a);
    return 0;
}
