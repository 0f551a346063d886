/* SPDX-License-Identifier: MIT */
/*
 * bench/transport: the cost of one trapped register access on the device-side MMIO and PCI
 * transports, for the hot registers (notify, ISR / InterruptStatus read, queue select).
 * Meant to run under callgrind (bench/transport-callgrind.sh), which turns the instruction
 * count of N accesses minus 0 accesses into instructions per access. The device is the
 * virtio-net model on the loopback backend, live (DRIVER_OK) with its rings placed by the
 * driver-side net_driver; the notify measured is a TX kick with nothing new to send (the
 * transport's and the device's fixed cost, not frame processing).
 *
 * usage: bench_transport OP N      OP: mmio-notify mmio-isr mmio-qsel pci-notify pci-isr
 *                                      pci-qsel
 * Prints "RESULT transport/<op>_accesses N count" (figures come from the callgrind script).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/pci.h"
#include "virtio/status.h"

#define BASE 0x100000ull
#define RAM (4u << 20)

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_transport: %s failed (%d)\n", what, rc);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s OP N\n", argv[0]);
        return 2;
    }
    const char *op = argv[1];
    unsigned long n = strtoul(argv[2], NULL, 10);
    bool pci = strncmp(op, "pci-", 4) == 0;
    void *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED)
        die("mmap", -1);
    struct vio_mem *mem;
    struct vio_mem_region reg = {.guest_addr = BASE, .size = RAM, .host_ptr = ram};
    int rc = vio_mem_new(0, &mem);
    if (rc == 0)
        rc = vio_mem_add(mem, &reg);
    if (rc < 0)
        die("vio_mem", rc);
    struct vio_net_backend be;
    if ((rc = vio_net_loopback_open(NULL, &be)) < 0)
        die("loopback", rc);
    struct vio_net_dev_config dc = {.struct_size = sizeof(dc), .backend = &be,
                                    .mac_valid = true, .mac = {2, 0, 0, 0, 0, 1}};
    struct vio_net_dev *nd;
    if ((rc = vio_net_dev_new(&dc, &nd)) < 0)
        die("net dev", rc);
    uint64_t feats = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX);
    struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = mem, .area = BASE,
                                       .area_size = RAM, .features = feats, .queue_pairs = 1,
                                       .queue_size = 256};
    struct vio_net_driver *drv;
    if ((rc = vio_net_driver_new(&nc, &drv)) < 0)
        die("net driver", rc);
    struct vio_mmio *m = NULL;
    struct vio_pci *p = NULL;
    struct vio_pci_layout l;
    vio_pci_layout_default(&l);
    if (!pci) {
        struct vio_mmio_config mc = {.struct_size = sizeof(mc), .dev = vio_net_dev_device(nd),
                                     .mem = mem};
        if ((rc = vio_mmio_new(&mc, &m)) < 0)
            die("mmio", rc);
        vio_mmio_write(m, 0x70, 4, 3);
        vio_mmio_write(m, 0x24, 4, 1);
        vio_mmio_write(m, 0x20, 4, (uint32_t)(feats >> 32));
        vio_mmio_write(m, 0x24, 4, 0);
        vio_mmio_write(m, 0x20, 4, (uint32_t)feats);
        vio_mmio_write(m, 0x70, 4, 0x0b);
        for (unsigned i = 0; i < 2; i++) {
            struct vio_net_driver_queue_addr qa;
            vio_net_driver_queue_addr(drv, i, &qa);
            vio_mmio_write(m, 0x30, 4, i);
            vio_mmio_write(m, 0x38, 4, qa.size);
            vio_mmio_write(m, 0x80, 4, (uint32_t)qa.desc);
            vio_mmio_write(m, 0x90, 4, (uint32_t)qa.driver);
            vio_mmio_write(m, 0xa0, 4, (uint32_t)qa.device);
            vio_mmio_write(m, 0x44, 4, 1);
        }
        vio_mmio_write(m, 0x70, 4, 0x0f);
        if (vio_mmio_status(m) != 0x0f)
            die("mmio bring-up", -1);
    } else {
        struct vio_pci_config pc = {.struct_size = sizeof(pc), .dev = vio_net_dev_device(nd),
                                    .mem = mem, .layout = l, .msix_vectors = 4};
        if ((rc = vio_pci_new(&pc, &p)) < 0)
            die("pci", rc);
        vio_pci_bar_write(p, 4, 20, 1, 3);
        vio_pci_bar_write(p, 4, 8, 4, 1);
        vio_pci_bar_write(p, 4, 12, 4, (uint32_t)(feats >> 32));
        vio_pci_bar_write(p, 4, 8, 4, 0);
        vio_pci_bar_write(p, 4, 12, 4, (uint32_t)feats);
        vio_pci_bar_write(p, 4, 20, 1, 0x0b);
        for (unsigned i = 0; i < 2; i++) {
            struct vio_net_driver_queue_addr qa;
            vio_net_driver_queue_addr(drv, i, &qa);
            vio_pci_bar_write(p, 4, 22, 2, i);
            vio_pci_bar_write(p, 4, 24, 2, qa.size);
            vio_pci_bar_write(p, 4, 32, 4, (uint32_t)qa.desc);
            vio_pci_bar_write(p, 4, 40, 4, (uint32_t)qa.driver);
            vio_pci_bar_write(p, 4, 48, 4, (uint32_t)qa.device);
            vio_pci_bar_write(p, 4, 28, 2, 1);
        }
        vio_pci_bar_write(p, 4, 20, 1, 0x0f);
        if (vio_pci_status(p) != 0x0f)
            die("pci bring-up", -1);
    }
    uint64_t v = 0, sum = 0;
    const char *what = op + (pci ? 4 : 5);
    int kind = !strcmp(what, "notify") ? 0 : !strcmp(what, "isr") ? 1 : !strcmp(what, "qsel") ? 2 : -1;
    if (kind < 0)
        die("unknown OP", -1);
    /* the op is resolved once: the loop body is the access alone */
    for (unsigned long i = 0; i < n; i++) {
        switch (kind + (pci ? 3 : 0)) {
        case 0:
            vio_mmio_write(m, 0x50, 4, 1);
            break;
        case 1:
            vio_mmio_read(m, 0x60, 4, &v);
            sum += v;
            break;
        case 2:
            vio_mmio_write(m, 0x30, 4, (uint32_t)(i & 1));
            break;
        case 3:
            vio_pci_bar_write(p, 4, l.notify_off + l.notify_mult, 2, 1);
            break;
        case 4:
            vio_pci_bar_read(p, 4, l.isr_off, 1, &v);
            sum += v;
            break;
        default:
            vio_pci_bar_write(p, 4, 22, 2, i & 1);
            break;
        }
    }
    printf("RESULT transport/%s_accesses %lu count (sum %llu)\n", op, n,
           (unsigned long long)sum);
    vio_mmio_free(m);
    vio_pci_free(p);
    vio_net_driver_free(drv);
    vio_net_dev_free(nd);
    vio_net_backend_destroy(&be);
    vio_mem_free(mem);
    munmap(ram, RAM);
    return 0;
}
