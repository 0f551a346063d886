/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm: a small reference VMM on KVM built from libvirtio's public API. This header is the
 * VMM's own glue between its parts (machine, boot, legacy devices, virtio devices); nothing
 * here is library API.
 */
#ifndef VIO_VMM_H
#define VIO_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_MAX_CPUS 8u

/* Guest-physical layout (below 1 MiB: the boot structures; the PCI/MMIO hole below 4 GiB). */
#define VMM_START_INFO 0x6000u   /* PVH start info + module list */
#define VMM_MEMMAP 0x7000u       /* PVH memory map (e820-like) */
#define VMM_BOOT_PARAMS 0x7000u  /* bzImage zero page (the two boot paths are exclusive) */
#define VMM_PML4 0x9000u         /* bzImage: identity page tables (PML4, PDPT, 4 PDs) */
#define VMM_GDT 0x500u
#define VMM_CMDLINE 0x20000u
#define VMM_CMDLINE_MAX 4096u
#define VMM_EBDA 0x9fc00u
#define VMM_BIOS_START 0xe0000u  /* ACPI tables / MP table live here */
#define VMM_HIMEM 0x100000u
#define VMM_MMIO_HOLE 0xc0000000u /* RAM above this goes above 4 GiB */
#define VMM_PCI_HOLE_BASE 0xd0000000ull /* BARs the VMM places (32-bit memory window) */
#define VMM_PCI_HOLE_END 0xfec00000ull
#define VMM_IOAPIC 0xfec00000u
#define VMM_LAPIC 0xfee00000u

enum vmm_exit_kind {
    VMM_EXIT_IO,
    VMM_EXIT_MMIO,
    VMM_EXIT_HLT,
    VMM_EXIT_SHUTDOWN,
    VMM_EXIT_SYSTEM_EVENT,
    VMM_EXIT_INTR,
    VMM_EXIT_OTHER,
    VMM_EXIT_KINDS
};

struct vmm;

/* A virtio-MMIO window the DSDT describes (LNRO0005). */
struct vmm_mmio_dev {
    uint64_t base, len;
    uint32_t gsi;
    uint32_t uid;
};
#define VMM_MAX_MMIO_DEVS 4u

/* A port-I/O or MMIO handler: @size 1/2/4/8, @data the bytes (read fills it). */
typedef void (*vmm_io_fn)(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool write);

struct vmm_range {
    uint64_t base, len;
    vmm_io_fn fn;
    void *opaque;
    _Atomic uint64_t hits;
    const char *name;
};

#define VMM_MAX_RANGES 32u

struct vmm_cpu {
    struct vmm *vm;
    int fd;
    unsigned id;
    struct kvm_run *run;
    pthread_t thread;
    uint64_t exits[VMM_EXIT_KINDS];
};

struct vmm {
    int kvm, vm;
    uint8_t *ram;         /* host mapping of guest RAM */
    uint64_t ram_size;
    int ram_fd;           /* memfd of guest RAM (shareable with vhost backends) */
    unsigned ncpus;
    struct vmm_cpu cpu[VMM_MAX_CPUS];
    struct vmm_range pio[VMM_MAX_RANGES];
    unsigned npio;
    struct vmm_range mmio[VMM_MAX_RANGES];
    unsigned nmmio;
    struct { uint64_t addr; _Atomic uint64_t hits; } miss[16]; /* unclaimed ports / MMIO */
    atomic_int stop;      /* 0 running; else VMM_STOP_* */
    bool verbose;
    /* boot */
    uint64_t entry;       /* PVH 32-bit entry or bzImage 64-bit entry */
    bool pvh;
    uint64_t start_info;  /* PVH: %ebx; bzImage: %rsi */
    uint64_t rsdp;        /* ACPI RSDP (0: no ACPI) */
    struct vmm_mmio_dev mmio_devs[VMM_MAX_MMIO_DEVS];
    unsigned nmmio_devs;
    /* MSI routes (GSI 24 + i) */
    pthread_mutex_t route_lock;
    unsigned nmsi;
    struct { uint64_t addr; uint32_t data; bool set; } msi[64];
};

enum { VMM_STOP_POWEROFF = 1, VMM_STOP_REBOOT = 2, VMM_STOP_ERROR = 3 };

/* machine.c */
int vmm_init(struct vmm *vm, uint64_t ram_mib, unsigned ncpus);
void vmm_destroy(struct vmm *vm);
void *vmm_gpa(struct vmm *vm, uint64_t gpa, uint64_t len);
int vmm_add_pio(struct vmm *vm, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque,
                const char *name);
int vmm_add_mmio(struct vmm *vm, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque,
                 const char *name);
int vmm_irq_line(struct vmm *vm, unsigned gsi, int level);
int vmm_run(struct vmm *vm);
void vmm_request_stop(struct vmm *vm, int why);
void vmm_print_counters(struct vmm *vm);

/* boot.c: load the kernel and initrd, write the boot structures, set vm->entry. */
int vmm_load_kernel(struct vmm *vm, const char *kernel, const char *initrd, const char *cmdline);
int vmm_setup_cpu_regs(struct vmm *vm, struct vmm_cpu *c);

/* tables.c: MP table (ISA irqs, CPUs, IOAPIC). */
int vmm_write_mptable(struct vmm *vm);

/* acpi.c: RSDP, XSDT, FACS, FADT (PM1a at 0x600, reset on 0xcf9), MADT, DSDT (\\_S5, COM1,
 * RTC, virtio-MMIO devices). Call after the devices are known, before vmm_load_kernel(). */
int vmm_write_acpi(struct vmm *vm);

/* machine.c: MSI routes. vmm_msi_alloc() hands out a GSI (24 and up) for an irqfd;
 * vmm_msi_route() points it at an MSI address/data pair (the whole routing table, the default
 * PIC / I/O APIC routes included, is sent again). */
unsigned vmm_msi_alloc(struct vmm *vm);
int vmm_msi_route(struct vmm *vm, unsigned gsi, uint64_t addr, uint32_t data);

/* pci.c: host bridge, conf1, BAR routing. */
#define VMM_PCI_SLOTS 32u
struct vmm_pci_fn {
    unsigned slot;
    void (*config_read)(struct vmm_pci_fn *f, uint32_t off, unsigned size, uint32_t *v);
    void (*config_write)(struct vmm_pci_fn *f, uint32_t off, unsigned size, uint32_t v);
    /* true when @addr is inside one of its BARs (and the access was handled) */
    bool (*bar_access)(struct vmm_pci_fn *f, uint64_t addr, uint8_t *data, unsigned size, bool wr);
};
int vmm_pci_init(struct vmm *vm);
int vmm_pci_add(struct vmm *vm, struct vmm_pci_fn *f);
uint64_t vmm_pci_alloc_bar(uint64_t size);
/* INTx of slot s: I/O APIC pins 16..19 (20..23 are the virtio-MMIO devices') */
static inline unsigned vmm_pci_intx_gsi(unsigned slot)
{
    return 16u + slot % 4u;
}
/* virtio-MMIO windows: 4 KiB apart from here, GSI 20 + i (level-triggered) */
#define VMM_MMIO_DEV_BASE 0xc0000000ull
#define VMM_MMIO_DEV_GSI 20u

/* virtio_net.c: network cards. */
#define VMM_MAX_NETS 4u
#define VMM_NET_MAX_PAIRS 8u
struct vmm_net_opts {
    unsigned index;
    const char *tap;   /* tap=NAME */
    const char *vhost_user; /* vhost-user=SOCKET */
    bool pci;          /* transport=pci (else mmio) */
    bool vhost;        /* vhost=on: the kernel's vhost-net runs the queues */
    bool ioeventfd;    /* false with --no-ioeventfd */
    uint8_t mac[6];
    unsigned queues;   /* queue pairs */
};
int vmm_net_add(struct vmm *vm, const struct vmm_net_opts *o);
void vmm_net_stop(void);
void vmm_net_print_counters(void);
void vmm_net_fini(void);

/* legacy.c: 16550 on 0x3f8 / irq 4, CMOS RTC on 0x70, i8042 reset on 0x64, 0xcf9 reset. */
int vmm_legacy_init(struct vmm *vm);
void vmm_legacy_fini(struct vmm *vm);

#endif
