/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-PCI device side (src/transport/pci.c on the shared
 * src/transport/vq_regs.c), bound to the virtio-net model on a loopback backend, 64 KiB of
 * guest memory in a guard-paged arena (a device access outside it faults; ASan reports any
 * other stray access).
 *
 * Input: byte 0 bit 0: no MSI-X (INTx only), bit 1: notify multiplier 0, bit 2: a
 * transitional device (legacy I/O BAR 0 beside the modern windows), bit 3: the transport
 * offers VIRTIO_F_NOTIFICATION_DATA, bit 4: offload mode (the VMM's queue_fds / mem_regions
 * hooks are set and a pass-through device claims every queue it starts, see "Offload mode"
 * below), bit 5: queue_fds fails for odd queues; then records of 7 bytes:
 *   op      bits 0-2: 0 config read, 1 config write, 2 BAR 4 read, 3 BAR 4 write, 4 BAR 4
 *           write with the value taken as a guest-memory address (ring addresses land inside
 *           memory often), 5 MSI-X BAR read, 6 MSI-X BAR write, 7 data path (loopback frames
 *           into RX, then every queue notified, then every queue's interrupt raised with
 *           vio_pci_queue_interrupt()); bits 3-4: width 4, 1, 2, 8; bit 5: offset
 *           taken literally (else folded into the window area and aligned to the width);
 *           bit 6 (transitional): ops 2-4 go to the legacy I/O BAR 0 instead of BAR 4 (op 4's
 *           value then becomes a page number inside memory, for QUEUE_PFN)
 *   offset  2 bytes, value 4 bytes (little-endian)
 *
 * Oracles (abort on violation), after every access and at the end:
 *   - the status byte has no reserved bit and DRIVER_OK implies FEATURES_OK (unless a
 *     legacy driver, one without VERSION_1, drives a transitional device); the legacy block
 *     reads the same status;
 *   - IDs and the capability pointer never change; the ISR has no bits beyond 0-1;
 *   - config_msix_vector and every queue_msix_vector read a vector < table size or NO_VECTOR;
 *   - a failed read yields 0; a reset (status 0) reads back 0 with every queue disabled.
 */
#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arena.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/pci.h"
#include "virtio/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_pci: line %d: %s: ", __LINE__, #cond);                          \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define BASE 0x10000ull
#define RAM 0x10000u
#define MAXOPS 512u
#define NVEC 4u

static uint64_t br(struct vio_pci *p, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    int rc = vio_pci_bar_read(p, 4, off, size, &v);
    CHECK(rc == 0, "BAR read 0x%llx/%u: %d", (unsigned long long)off, size, rc);
    return v;
}

static void check_state(struct vio_pci *p, unsigned nvec, bool trans)
{
    uint8_t st = (uint8_t)br(p, VIRTIO_PCI_COMMON_STATUS, 1);
    CHECK((st & 0x30) == 0, "status 0x%x", st);
    if (st & VIO_S_DRIVER_OK) {
        uint64_t gsel = br(p, VIRTIO_PCI_COMMON_GFSELECT, 4);
        vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
        bool v1 = br(p, VIRTIO_PCI_COMMON_GF, 4) & 1; /* VERSION_1 (bit 32) */
        vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_GFSELECT, 4, gsel);
        CHECK((st & VIO_S_FEATURES_OK) || (trans && !v1),
              "status 0x%x: DRIVER_OK without FEATURES_OK", st);
    }
    uint32_t v;
    if (trans) {
        uint64_t lst = 0;
        CHECK(vio_pci_bar_read(p, 0, VIRTIO_PCI_STATUS, 1, &lst) == 0 && lst == st,
              "legacy status 0x%llx, modern 0x%x", (unsigned long long)lst, st);
    }
    CHECK(vio_pci_config_read(p, 0, 4, &v) == 0 && v == (trans ? 0x10001af4u : 0x10411af4u),
          "ids 0x%x", v);
    CHECK(vio_pci_config_read(p, PCI_CAPABILITY_LIST, 1, &v) == 0 && v == (nvec ? 0x40u : 0x4cu),
          "cap pointer 0x%x", v);
    uint64_t vec = br(p, VIRTIO_PCI_COMMON_MSIX, 2);
    CHECK(vec < nvec || vec == VIO_PCI_NO_VECTOR, "config vector 0x%llx",
          (unsigned long long)vec);
    uint64_t sel = br(p, VIRTIO_PCI_COMMON_Q_SELECT, 2);
    vec = br(p, VIRTIO_PCI_COMMON_Q_MSIX, 2);
    CHECK(vec < nvec || vec == VIO_PCI_NO_VECTOR, "queue %llu vector 0x%llx",
          (unsigned long long)sel, (unsigned long long)vec);
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
    unsigned nvec = (data[0] & 1) ? 0 : NVEC;
    bool mult0 = data[0] & 2;
    bool trans = data[0] & 4;
    bool ndata = data[0] & 8;
    bool offload = data[0] & 16;
    bool fail_odd = data[0] & 32;
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
    struct vio_pci *p;
    struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(nd),
                                .mem = a.mem, .msix_vectors = (uint16_t)nvec,
                                .transitional = trans, .notification_data = ndata,
                                .notify_data = notify_data_hook};
    if (offload) {
        shim_fds();
        memset(g_sh.claimed, 0, sizeof(g_sh.claimed));
        memset(&g_sh.h, 0, sizeof(g_sh.h));
        g_sh.dev = (struct vio_device){.ops = &SH_OPS, .opaque = &g_sh};
        g_sh.in = vio_net_dev_device(nd);
        g_sh.mem = a.mem;
        g_sh.fail_odd = fail_odd;
        pc.dev = &g_sh.dev;
        pc.mem_regions = vmm_mem_regions;
        pc.queue_fds = vmm_queue_fds;
        pc.offload_opaque = &g_sh;
    }
    vio_pci_layout_default(&pc.layout);
    if (mult0)
        pc.layout.notify_mult = 0;
    if (vio_pci_new(&pc, &p) < 0)
        abort();
    g_nq = vio_device_num_queues(vio_net_dev_device(nd));
    static const unsigned widths[4] = {4, 1, 2, 8};
    unsigned nops = 0;
    for (size_t i = 0; i + 7 <= size && nops < MAXOPS; i += 7, nops++) {
        uint8_t op = data[i];
        uint64_t off = (uint64_t)data[i + 1] | (uint64_t)data[i + 2] << 8;
        uint32_t val = (uint32_t)data[i + 3] | (uint32_t)data[i + 4] << 8 |
                       (uint32_t)data[i + 5] << 16 | (uint32_t)data[i + 6] << 24;
        unsigned w = widths[(op >> 3) & 3];
        unsigned kind = op & 7;
        bool legacy = trans && (op & 0x40) && kind >= 2 && kind <= 4;
        unsigned wbar = legacy ? 0 : 4;
        if (legacy && !(op & 0x20)) {
            off = (off % 64) & ~(uint64_t)(w - 1);
        } else if (!(op & 0x20)) {
            if (kind <= 1)
                off %= VIO_PCI_CONFIG_SPACE;
            else if (kind <= 4) /* one of the four windows, offset folded into its page */
                off = (off >> 14 & 3) * 0x1000 + (off % 0x40);
            else
                off %= 0x810;
            off &= ~(uint64_t)(w - 1);
        }
        uint64_t v = 0x77;
        int rc;
        switch (kind) {
        case 0: {
            uint32_t v32 = 0x77;
            rc = vio_pci_config_read(p, (uint32_t)off, w, &v32);
            CHECK(rc == 0 || rc == -EPROTO, "config read rc %d", rc);
            if (rc < 0)
                CHECK(v32 == 0, "failed config read left 0x%x", v32);
            break;
        }
        case 1:
            rc = vio_pci_config_write(p, (uint32_t)off, w, val);
            CHECK(rc == 0 || rc == -EPROTO || rc == -ENOTSUP, "config write rc %d", rc);
            break;
        case 2:
        case 5:
            rc = vio_pci_bar_read(p, kind == 2 ? wbar : 1, off, w, &v);
            CHECK(rc == 0 || rc == -EPROTO, "BAR read rc %d", rc);
            if (rc < 0)
                CHECK(v == 0, "failed BAR read left 0x%llx", (unsigned long long)v);
            break;
        case 3:
        case 4:
        case 6: {
            uint64_t x = kind == 4 ? BASE + (val % (RAM + 0x100)) : val;
            if (kind == 4 && legacy) /* a page number, sometimes past the end */
                x = (BASE >> 12) + val % ((RAM >> 12) + 2);
            rc = vio_pci_bar_write(p, kind == 6 ? 1 : wbar, off, w, x);
            CHECK(rc == 0 || rc == -EPROTO || rc == -ENOTSUP, "BAR write rc %d", rc);
            unsigned st_off = legacy ? VIRTIO_PCI_STATUS : VIRTIO_PCI_COMMON_STATUS;
            if (kind != 6 && off == st_off && w == 1 && (x & 0xff) == 0) {
                CHECK(br(p, VIRTIO_PCI_COMMON_STATUS, 1) == 0, "reset did not stick");
                uint64_t sel = br(p, VIRTIO_PCI_COMMON_Q_SELECT, 2);
                for (unsigned q = 0; q < 4; q++) {
                    vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
                    CHECK(br(p, VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 0, "queue %u enabled", q);
                }
                vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_Q_SELECT, 2, sel);
            }
            break;
        }
        default:
            vio_net_dev_rx_process(nd, 0, 4);
            for (unsigned q = 0; q < 4; q++)
                vio_pci_queue_notify(p, q);
            for (unsigned q = 0; q < 4; q++) {
                rc = vio_pci_queue_interrupt(p, q);
                CHECK(q < g_nq ? rc == 0 : rc == -ENOENT, "queue_interrupt %u: %d", q, rc);
            }
            break;
        }
        if (offload)
            shim_drain();
        check_state(p, nvec, trans);
    }
    CHECK(vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_STATUS, 1, 0) == 0, "final reset refused");
    CHECK(br(p, VIRTIO_PCI_COMMON_STATUS, 1) == 0, "final reset did not stick");
    check_state(p, nvec, trans);
    if (offload)
        for (unsigned q = 0; q < OFF_MAXQ; q++)
            CHECK(!g_sh.claimed[q], "queue %u still claimed after reset", q);
    vio_pci_free(p);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
    arena_fini(&a);
    return 0;
}
