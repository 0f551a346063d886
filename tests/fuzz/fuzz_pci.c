/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-PCI device side (src/transport/pci.c on the shared
 * src/transport/vq_regs.c), bound to the virtio-net model on a loopback backend, 64 KiB of
 * guest memory in a guard-paged arena (a device access outside it faults; ASan reports any
 * other stray access).
 *
 * Input: byte 0 bit 0: no MSI-X (INTx only), bit 1: notify multiplier 0, bit 2: a
 * transitional device (legacy I/O BAR 0 beside the modern windows), bit 3: the transport
 * offers VIRTIO_F_NOTIFICATION_DATA; then records of 7 bytes:
 *   op      bits 0-2: 0 config read, 1 config write, 2 BAR 4 read, 3 BAR 4 write, 4 BAR 4
 *           write with the value taken as a guest-memory address (ring addresses land inside
 *           memory often), 5 MSI-X BAR read, 6 MSI-X BAR write, 7 data path (loopback frames
 *           into RX, then every queue notified); bits 3-4: width 4, 1, 2, 8; bit 5: offset
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
            break;
        }
        check_state(p, nvec, trans);
    }
    CHECK(vio_pci_bar_write(p, 4, VIRTIO_PCI_COMMON_STATUS, 1, 0) == 0, "final reset refused");
    CHECK(br(p, VIRTIO_PCI_COMMON_STATUS, 1) == 0, "final reset did not stick");
    check_state(p, nvec, trans);
    vio_pci_free(p);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
    arena_fini(&a);
    return 0;
}
