/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm firmware tables: an Intel MultiProcessor table (spec 1.4) at 0xf0000 telling the
 * guest its CPUs (local APIC ids 0..N-1), the I/O APIC at 0xfec00000 and the ISA interrupts
 * wired 1:1 to its pins (KVM's default GSI routing), plus LINT0 = ExtINT and LINT1 = NMI.
 */
#include <stdint.h>
#include <string.h>

#include "vmm.h"

#define MP_ADDR 0xf0000u

struct __attribute__((packed)) mpf {
    char sig[4];
    uint32_t physptr;
    uint8_t length, rev, checksum, feature[5];
};
struct __attribute__((packed)) mpc {
    char sig[4];
    uint16_t length;
    uint8_t rev, checksum;
    char oem[8], product[12];
    uint32_t oemptr;
    uint16_t oemsize, count;
    uint32_t lapic;
    uint16_t extlen;
    uint8_t extsum, reserved;
};
struct __attribute__((packed)) mp_cpu {
    uint8_t type, apicid, apicver, flags;
    uint32_t signature, features, reserved[2];
};
struct __attribute__((packed)) mp_bus {
    uint8_t type, id;
    char name[6];
};
struct __attribute__((packed)) mp_ioapic {
    uint8_t type, id, ver, flags;
    uint32_t addr;
};
struct __attribute__((packed)) mp_irq {
    uint8_t type, irqtype;
    uint16_t flags;
    uint8_t srcbus, srcirq, dstid, dstpin;
};

static uint8_t csum(const void *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + ((const uint8_t *)p)[i]);
    return (uint8_t)-s;
}

int vmm_write_mptable(struct vmm *vm)
{
    uint8_t *base = vmm_gpa(vm, MP_ADDR, 4096);
    if (!base)
        return -1;
    memset(base, 0, 4096);
    struct mpf *f = (void *)base;
    struct mpc *c = (void *)(base + sizeof(*f));
    uint8_t *p = (uint8_t *)(c + 1);
    uint16_t count = 0;
    uint8_t ioapic_id = (uint8_t)vm->ncpus;

    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct mp_cpu *e = (void *)p;
        *e = (struct mp_cpu){ .type = 0, .apicid = (uint8_t)i, .apicver = 0x14,
                              .flags = (uint8_t)(1 | (i == 0 ? 2 : 0)), .signature = 0x600,
                              .features = 0x201 /* FPU, APIC */ };
        p += sizeof(*e);
        count++;
    }
    struct mp_bus *isa = (void *)p;
    *isa = (struct mp_bus){ .type = 1, .id = 0 };
    memcpy(isa->name, "ISA   ", 6);
    p += sizeof(*isa);
    count++;
    struct mp_ioapic *io = (void *)p;
    *io = (struct mp_ioapic){ .type = 2, .id = ioapic_id, .ver = 0x11, .flags = 1,
                              .addr = VMM_IOAPIC };
    p += sizeof(*io);
    count++;
    for (uint8_t irq = 0; irq < 16; irq++) {
        struct mp_irq *e = (void *)p;
        *e = (struct mp_irq){ .type = 3, .irqtype = 0, .flags = 0, .srcbus = 0, .srcirq = irq,
                              .dstid = ioapic_id, .dstpin = irq };
        p += sizeof(*e);
        count++;
    }
    struct mp_irq *l0 = (void *)p;
    *l0 = (struct mp_irq){ .type = 4, .irqtype = 3, .srcbus = 0, .dstid = 0xff, .dstpin = 0 };
    p += sizeof(*l0);
    struct mp_irq *l1 = (void *)p;
    *l1 = (struct mp_irq){ .type = 4, .irqtype = 1, .srcbus = 0, .dstid = 0xff, .dstpin = 1 };
    p += sizeof(*l1);
    count += 2;

    memcpy(c->sig, "PCMP", 4);
    c->length = (uint16_t)(p - (uint8_t *)c);
    c->rev = 4;
    memcpy(c->oem, "LIBVIRTI", 8);
    memcpy(c->product, "VIO-VMM     ", 12);
    c->count = count;
    c->lapic = VMM_LAPIC;
    c->checksum = csum(c, c->length);

    memcpy(f->sig, "_MP_", 4);
    f->physptr = MP_ADDR + sizeof(*f);
    f->length = 1;
    f->rev = 4;
    f->checksum = csum(f, sizeof(*f));
    return 0;
}
