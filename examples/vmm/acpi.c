/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm ACPI: the smallest table set Debian's kernel needs to find what the VMM has and to
 * power off cleanly (ACPI 6.x layouts):
 *
 * - RSDP at 0xe0000 (found by the kernel's BIOS-area scan, and handed over in the PVH start
 *   info), XSDT, FACS;
 * - FADT: full (not hardware-reduced) ACPI with a PM1a event and control block at I/O 0x600
 *   (SCI_EN reads set, no SMI command port: ACPI is always on), the reset register on 0xcf9,
 *   IAPC_BOOT_ARCH without the 8042 (the kernel does not probe a keyboard controller);
 * - MADT: one local APIC per vCPU, the I/O APIC, the SCI's interrupt source override, LINT1 NMI;
 * - DSDT: \_S5 (writing SLP_TYP 5 | SLP_EN to PM1a_CNT powers off), the COM1 UART and the CMOS
 *   RTC as PNP devices (PNP0501, PNP0B00: the rtc_cmos driver binds to them), and one LNRO0005
 *   device per virtio-MMIO window (Debian's kernel has no virtio_mmio.device= support, so
 *   this is how it finds them, as with QEMU's microvm).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm.h"

#define RSDP_ADDR 0xe0000u
#define TABLES_ADDR 0xe0040u
#define TABLES_END 0xf0000u /* the MP table starts there */
#define SCI_IRQ 9u

struct __attribute__((packed)) acpi_hdr {
    char sig[4];
    uint32_t length;
    uint8_t rev, checksum;
    char oem[6], oem_table[8];
    uint32_t oem_rev;
    char creator[4];
    uint32_t creator_rev;
};

struct __attribute__((packed)) gas {
    uint8_t space, bit_width, bit_offset, access;
    uint64_t addr;
};

static uint8_t sum8(const void *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + ((const uint8_t *)p)[i]);
    return s;
}

static void hdr(struct acpi_hdr *h, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(h->sig, sig, 4);
    h->length = len;
    h->rev = rev;
    memcpy(h->oem, "LIBVIO", 6);
    memcpy(h->oem_table, "VIO-VMM ", 8);
    h->oem_rev = 1;
    memcpy(h->creator, "LVIO", 4);
    h->creator_rev = 1;
    h->checksum = 0;
    h->checksum = (uint8_t)-sum8(h, len);
}

/* ---- a little AML writer ------------------------------------------------------------------ */

struct aml {
    uint8_t *buf;
    size_t len, cap;
    int err;
};

static void emit(struct aml *a, const void *p, size_t n)
{
    if (a->len + n > a->cap) {
        a->err = -ENOSPC;
        return;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static void emit1(struct aml *a, uint8_t b)
{
    emit(a, &b, 1);
}

/* Open a package: remember where its body starts; close_pkg() inserts the PkgLength. */
static size_t open_pkg(struct aml *a)
{
    return a->len;
}

static void close_pkg(struct aml *a, size_t start)
{
    if (a->err)
        return;
    size_t body = a->len - start;
    uint8_t enc[4];
    size_t n;
    /* PkgLength counts its own bytes too */
    if (body + 1 < 0x40) {
        enc[0] = (uint8_t)(body + 1);
        n = 1;
    } else if (body + 2 < 0x1000) {
        size_t l = body + 2;
        enc[0] = (uint8_t)(0x40 | (l & 0xf));
        enc[1] = (uint8_t)(l >> 4);
        n = 2;
    } else {
        size_t l = body + 3;
        enc[0] = (uint8_t)(0x80 | (l & 0xf));
        enc[1] = (uint8_t)(l >> 4);
        enc[2] = (uint8_t)(l >> 12);
        n = 3;
    }
    if (a->len + n > a->cap) {
        a->err = -ENOSPC;
        return;
    }
    memmove(a->buf + start + n, a->buf + start, body);
    memcpy(a->buf + start, enc, n);
    a->len += n;
}

static void name_seg(struct aml *a, const char *s)
{
    char seg[4] = { '_', '_', '_', '_' };
    memcpy(seg, s, strnlen(s, 4));
    emit(a, seg, 4);
}

static void aml_int(struct aml *a, uint32_t v)
{
    if (v == 0) {
        emit1(a, 0x00);
    } else if (v == 1) {
        emit1(a, 0x01);
    } else if (v <= 0xff) {
        emit1(a, 0x0a);
        emit1(a, (uint8_t)v);
    } else if (v <= 0xffff) {
        emit1(a, 0x0b);
        emit(a, &(uint16_t){ (uint16_t)v }, 2);
    } else {
        emit1(a, 0x0c);
        emit(a, &v, 4);
    }
}

static uint32_t eisa_id(const char *s) /* "PNP0501" */
{
    uint32_t v = ((uint32_t)(s[0] - 0x40) << 26) | ((uint32_t)(s[1] - 0x40) << 21) |
                 ((uint32_t)(s[2] - 0x40) << 16);
    for (int i = 3; i < 7; i++) {
        unsigned d = (unsigned)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
        v |= d << (4 * (6 - i));
    }
    /* stored big-endian */
    return ((v >> 24) & 0xff) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

static void name_int(struct aml *a, const char *name, uint32_t v)
{
    emit1(a, 0x08);
    name_seg(a, name);
    aml_int(a, v);
}

static void name_eisa(struct aml *a, const char *name, const char *id)
{
    emit1(a, 0x08);
    name_seg(a, name);
    emit1(a, 0x0c);
    uint32_t v = eisa_id(id);
    emit(a, &v, 4);
}

static void name_str(struct aml *a, const char *name, const char *s)
{
    emit1(a, 0x08);
    name_seg(a, name);
    emit1(a, 0x0d);
    emit(a, s, strlen(s) + 1);
}

/* Name(_CRS, ResourceTemplate() { ... }) from raw resource descriptors (end tag added). */
static void name_crs(struct aml *a, const uint8_t *res, size_t n)
{
    emit1(a, 0x08);
    name_seg(a, "_CRS");
    emit1(a, 0x11); /* BufferOp */
    size_t p = open_pkg(a);
    aml_int(a, (uint32_t)(n + 2));
    emit(a, res, n);
    emit1(a, 0x79);
    emit1(a, 0x00);
    close_pkg(a, p);
}

static size_t res_io(uint8_t *r, uint16_t port, uint8_t len)
{
    uint8_t d[8] = { 0x47, 0x01, (uint8_t)port, (uint8_t)(port >> 8), (uint8_t)port,
                     (uint8_t)(port >> 8), 0x01, len };
    memcpy(r, d, 8);
    return 8;
}

static size_t res_irq(uint8_t *r, unsigned irq)
{
    uint16_t mask = (uint16_t)(1u << irq);
    r[0] = 0x22;
    memcpy(r + 1, &mask, 2);
    return 3;
}

static size_t res_mem32(uint8_t *r, uint32_t base, uint32_t len)
{
    r[0] = 0x86;
    r[1] = 9;
    r[2] = 0;
    r[3] = 1; /* read/write */
    memcpy(r + 4, &base, 4);
    memcpy(r + 8, &len, 4);
    return 12;
}

static size_t res_ext_irq(uint8_t *r, uint32_t gsi, bool level)
{
    r[0] = 0x89;
    r[1] = 6;
    r[2] = 0;
    r[3] = (uint8_t)(0x01 | (level ? 0 : 0x02)); /* consumer; edge when not level; active high */
    r[4] = 1;
    memcpy(r + 5, &gsi, 4);
    return 9;
}

static void device(struct aml *a, const char *name, void (*body)(struct aml *, const void *),
                   const void *arg)
{
    emit1(a, 0x5b);
    emit1(a, 0x82); /* DeviceOp */
    size_t p = open_pkg(a);
    name_seg(a, name);
    body(a, arg);
    close_pkg(a, p);
}

static void com1_body(struct aml *a, const void *arg)
{
    (void)arg;
    uint8_t r[16];
    size_t n = res_io(r, 0x3f8, 8);
    n += res_irq(r + n, 4);
    name_eisa(a, "_HID", "PNP0501");
    name_int(a, "_UID", 1);
    name_crs(a, r, n);
}

static void rtc_body(struct aml *a, const void *arg)
{
    (void)arg;
    uint8_t r[16];
    size_t n = res_io(r, 0x70, 2);
    n += res_irq(r + n, 8);
    name_eisa(a, "_HID", "PNP0B00");
    name_crs(a, r, n);
}

/* Word / DWord address space descriptors of a root bridge's windows (producer, fixed). */
static size_t res_word(uint8_t *r, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
    uint16_t v[5] = { 0, min, max, 0, (uint16_t)(max - min + 1) };
    r[0] = 0x88;
    r[1] = 13;
    r[2] = 0;
    r[3] = type;
    r[4] = 0x0c;
    r[5] = tflags;
    memcpy(r + 6, v, 10);
    return 16;
}

static size_t res_dword_mem(uint8_t *r, uint32_t min, uint32_t max)
{
    uint32_t v[5] = { 0, min, max, 0, max - min + 1 };
    r[0] = 0x87;
    r[1] = 23;
    r[2] = 0;
    r[3] = 0;    /* memory */
    r[4] = 0x0c;
    r[5] = 0x01; /* read/write, non-cacheable */
    memcpy(r + 6, v, 20);
    return 26;
}

static void pci_body(struct aml *a, const void *arg)
{
    (void)arg;
    uint8_t r[128];
    size_t n = res_word(r, 2, 0, 0, 0);                /* bus 0 */
    n += res_io(r + n, 0xcf8, 8);                      /* conf1 */
    n += res_word(r + n, 1, 3, 0x0000, 0x0cf7);        /* I/O below and above it */
    n += res_word(r + n, 1, 3, 0x0d00, 0xffff);
    n += res_dword_mem(r + n, (uint32_t)VMM_PCI_HOLE_BASE, (uint32_t)(VMM_PCI_HOLE_END - 1));
    name_eisa(a, "_HID", "PNP0A03");
    name_int(a, "_ADR", 0);
    name_int(a, "_SEG", 0);
    name_int(a, "_BBN", 0);
    name_int(a, "_UID", 0);
    name_crs(a, r, n);
    /* _PRT: INTA of slot s -> GSI 16 + s % 8 (what vmm_pci_intx_gsi() drives) */
    emit1(a, 0x08);
    name_seg(a, "_PRT");
    emit1(a, 0x12);
    size_t p = open_pkg(a);
    emit1(a, (uint8_t)(VMM_PCI_SLOTS - 1));
    for (unsigned s = 1; s < VMM_PCI_SLOTS; s++) {
        emit1(a, 0x12);
        size_t q = open_pkg(a);
        emit1(a, 4);
        emit1(a, 0x0c);
        uint32_t adr = (s << 16) | 0xffffu;
        emit(a, &adr, 4);
        aml_int(a, 0);
        aml_int(a, 0);
        aml_int(a, vmm_pci_intx_gsi(s));
        close_pkg(a, q);
    }
    close_pkg(a, p);
}

static void mmio_body(struct aml *a, const void *arg)
{
    const struct vmm_mmio_dev *d = arg;
    uint8_t r[32];
    size_t n = res_mem32(r, (uint32_t)d->base, (uint32_t)d->len);
    n += res_ext_irq(r + n, d->gsi, true);
    name_str(a, "_HID", "LNRO0005");
    name_int(a, "_UID", d->uid);
    name_crs(a, r, n);
}

static int build_dsdt(struct vmm *vm, uint8_t *out, size_t cap, size_t *len)
{
    struct aml a = { .buf = out + sizeof(struct acpi_hdr), .cap = cap - sizeof(struct acpi_hdr) };
    /* Name(\_S5, Package(4) { 5, 5, 0, 0 }) */
    emit1(&a, 0x08);
    emit1(&a, '\\');
    name_seg(&a, "_S5");
    emit1(&a, 0x12);
    size_t p = open_pkg(&a);
    emit1(&a, 4);
    aml_int(&a, 5);
    aml_int(&a, 5);
    aml_int(&a, 0);
    aml_int(&a, 0);
    close_pkg(&a, p);
    /* Scope(\_SB) { devices } */
    emit1(&a, 0x10);
    size_t s = open_pkg(&a);
    emit1(&a, '\\');
    name_seg(&a, "_SB");
    device(&a, "COM1", com1_body, NULL);
    device(&a, "RTC", rtc_body, NULL);
    device(&a, "PCI0", pci_body, NULL);
    for (unsigned i = 0; i < vm->nmmio_devs; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "VR%02u", i % 100u);
        device(&a, nm, mmio_body, &vm->mmio_devs[i]);
    }
    close_pkg(&a, s);
    if (a.err)
        return a.err;
    *len = sizeof(struct acpi_hdr) + a.len;
    hdr((struct acpi_hdr *)(void *)out, "DSDT", (uint32_t)*len, 2);
    return 0;
}

/* PM1a event (0x600..0x603) and control (0x604..0x605) blocks. */
#define PM_BASE 0x600u
static struct pm {
    uint16_t en, cnt;
} pm;

static void pm_io(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool wr)
{
    struct vmm *vm = opaque;
    unsigned off = (unsigned)(addr - PM_BASE);
    uint16_t v = 0;
    if (size > 2 || (off & (size - 1))) { /* only 1- and 2-byte aligned accesses */
        if (!wr)
            memset(data, 0xff, size);
        return;
    }
    if (wr) {
        memcpy(&v, data, size);
        if (off == 2)
            pm.en = v;
        else if (off == 4 && size == 2) {
            pm.cnt = (uint16_t)(v & ~0x2000u);
            if ((v & 0x2000u) && ((v >> 10) & 7) == 5) /* SLP_EN with SLP_TYP 5: S5 */
                vmm_request_stop(vm, VMM_STOP_POWEROFF);
        }
        return;
    }
    if (off == 2)
        v = pm.en;
    else if (off == 4)
        v = (uint16_t)(pm.cnt | 1u); /* SCI_EN: ACPI mode is always on */
    memcpy(data, &v, size);
}

int vmm_write_acpi(struct vmm *vm)
{
    uint8_t *base = vmm_gpa(vm, RSDP_ADDR, TABLES_END - RSDP_ADDR);
    if (!base)
        return -EFAULT;
    memset(base, 0, TABLES_END - RSDP_ADDR);
    uint64_t at = TABLES_ADDR;
#define PLACE(len) (at = (at + 15) & ~15ull, at += (len), at - (len))

    /* FACS (64-byte aligned) */
    at = (at + 63) & ~63ull;
    uint64_t facs = at;
    at += 64;
    uint8_t *f = vmm_gpa(vm, facs, 64);
    memcpy(f, "FACS", 4);
    f[4] = 64;
    f[32] = 2; /* version */

    uint8_t dsdt_buf[4096];
    size_t dsdt_len;
    int r = build_dsdt(vm, dsdt_buf, sizeof(dsdt_buf), &dsdt_len);
    if (r) {
        fprintf(stderr, "vio-vmm: DSDT does not fit\n");
        return r;
    }
    uint64_t dsdt = PLACE(dsdt_len);
    memcpy(vmm_gpa(vm, dsdt, dsdt_len), dsdt_buf, dsdt_len);

    /* FADT, revision 6 (276 bytes) */
    uint64_t fadt = PLACE(276);
    uint8_t *fa = vmm_gpa(vm, fadt, 276);
    uint32_t u32;
    uint16_t u16;
    u32 = (uint32_t)facs;
    memcpy(fa + 36, &u32, 4);
    u32 = (uint32_t)dsdt;
    memcpy(fa + 40, &u32, 4);
    u16 = SCI_IRQ;
    memcpy(fa + 46, &u16, 2);
    u32 = PM_BASE;
    memcpy(fa + 56, &u32, 4);  /* PM1a_EVT_BLK */
    u32 = PM_BASE + 4;
    memcpy(fa + 64, &u32, 4);  /* PM1a_CNT_BLK */
    fa[88] = 4;                /* PM1_EVT_LEN */
    fa[89] = 2;                /* PM1_CNT_LEN */
    u16 = 0x0fff;
    memcpy(fa + 96, &u16, 2);  /* P_LVL2_LAT > 100: no C2 */
    u16 = 0x0fff;
    memcpy(fa + 98, &u16, 2);  /* P_LVL3_LAT > 1000: no C3 */
    fa[108] = 0x32;            /* CENTURY register of the RTC */
    u16 = 0x0001;              /* IAPC_BOOT_ARCH: LEGACY_DEVICES, no 8042 */
    memcpy(fa + 109, &u16, 2);
    u32 = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 8) | (1u << 10);
    memcpy(fa + 112, &u32, 4); /* WBINVD, PWR_BUTTON (none), SLP_BUTTON (none), TMR_VAL_EXT, RESET_REG_SUP */
    struct gas reset = { .space = 1, .bit_width = 8, .addr = 0xcf9 };
    memcpy(fa + 116, &reset, sizeof(reset));
    fa[128] = 0x06;            /* RESET_VALUE */
    fa[131] = 5;               /* FADT minor version (6.5) */
    uint64_t u64 = facs;
    memcpy(fa + 132, &u64, 8);
    u64 = dsdt;
    memcpy(fa + 140, &u64, 8);
    struct gas evt = { .space = 1, .bit_width = 32, .addr = PM_BASE };
    struct gas cnt = { .space = 1, .bit_width = 16, .addr = PM_BASE + 4 };
    memcpy(fa + 148, &evt, sizeof(evt));
    memcpy(fa + 172, &cnt, sizeof(cnt));
    hdr((struct acpi_hdr *)(void *)fa, "FACP", 276, 6);

    /* MADT */
    size_t madt_len = sizeof(struct acpi_hdr) + 8 + vm->ncpus * 8 + 12 + 10 + 6;
    uint64_t madt = PLACE(madt_len);
    uint8_t *m = vmm_gpa(vm, madt, madt_len);
    u32 = VMM_LAPIC;
    memcpy(m + 36, &u32, 4);
    u32 = 1; /* PCAT_COMPAT: there are 8259s (masked by the kernel) */
    memcpy(m + 40, &u32, 4);
    uint8_t *e = m + 44;
    for (unsigned i = 0; i < vm->ncpus; i++, e += 8) {
        e[0] = 0;
        e[1] = 8;
        e[2] = (uint8_t)i;
        e[3] = (uint8_t)i;
        u32 = 1;
        memcpy(e + 4, &u32, 4);
    }
    e[0] = 1; /* I/O APIC */
    e[1] = 12;
    e[2] = (uint8_t)vm->ncpus;
    u32 = VMM_IOAPIC;
    memcpy(e + 4, &u32, 4);
    u32 = 0;
    memcpy(e + 8, &u32, 4);
    e += 12;
    e[0] = 2; /* interrupt source override: SCI, level, active high */
    e[1] = 10;
    e[2] = 0;
    e[3] = SCI_IRQ;
    u32 = SCI_IRQ;
    memcpy(e + 4, &u32, 4);
    u16 = 0x000d;
    memcpy(e + 8, &u16, 2);
    e += 10;
    e[0] = 4; /* local APIC NMI on LINT1 of every processor */
    e[1] = 6;
    e[2] = 0xff;
    u16 = 0;
    memcpy(e + 3, &u16, 2);
    e[5] = 1;
    hdr((struct acpi_hdr *)(void *)m, "APIC", (uint32_t)madt_len, 5);

    /* XSDT */
    size_t xsdt_len = sizeof(struct acpi_hdr) + 2 * 8;
    uint64_t xsdt = PLACE(xsdt_len);
    uint8_t *x = vmm_gpa(vm, xsdt, xsdt_len);
    memcpy(x + 36, &fadt, 8);
    memcpy(x + 44, &madt, 8);
    hdr((struct acpi_hdr *)(void *)x, "XSDT", (uint32_t)xsdt_len, 1);
    if (at > TABLES_END)
        return -ENOSPC;

    /* RSDP (ACPI 2.0+) */
    uint8_t *rs = base;
    memcpy(rs, "RSD PTR ", 8);
    memcpy(rs + 9, "LIBVIO", 6);
    rs[15] = 2;
    u32 = 36;
    memcpy(rs + 20, &u32, 4);
    memcpy(rs + 24, &xsdt, 8);
    rs[8] = (uint8_t)-sum8(rs, 20);
    rs[32] = (uint8_t)-sum8(rs, 36);
    vm->rsdp = RSDP_ADDR;
#undef PLACE
    return vmm_add_pio(vm, PM_BASE, 8, pm_io, vm, "acpi-pm");
}
