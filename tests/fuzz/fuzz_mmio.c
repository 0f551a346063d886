/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-MMIO device-side decoder (src/transport/mmio.c) and the
 * shared queue/status register helper (src/transport/vq_regs.c), bound to the virtio-net
 * model on a loopback backend, with 64 KiB of guest memory in a guard-paged arena (a device
 * access outside it faults; ASan reports any other stray access).
 *
 * Input: byte 0 bit 0 selects legacy (version 1), bit 1 offers VIRTIO_F_NOTIFICATION_DATA
 * (version 2 only; QueueNotify then carries data in bits 16-31); then records of 7 bytes:
 *   op      bits 0-1: 0 read, 1 write, 2 write with the value taken as an offset into guest
 *           memory (so ring addresses land inside it often), 3 data path: let the device move
 *           loopback frames into RX and kick TX (vio_mmio_queue_notify of every queue);
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
            break;
        }
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
    vio_mmio_free(m);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
    arena_fini(&a);
    return 0;
}
