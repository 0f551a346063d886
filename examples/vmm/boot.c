/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm boot: Linux straight from the VMM, no firmware.
 *
 * - An uncompressed ELF `vmlinux` with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, which
 *   Debian's kernels carry): segments loaded at their physical addresses, a PVH start info with
 *   the memory map, command line and initrd module, and the vCPU entering in 32-bit protected
 *   mode with paging off and %ebx pointing at the start info (Xen's "HVM direct boot ABI").
 * - A `bzImage` through the 64-bit boot protocol (Documentation/arch/x86/boot.rst): the
 *   protected-mode part loaded at 1 MiB, a zero page with the setup header, e820 table, command
 *   line and initrd, identity-mapped page tables for the first 4 GiB and the vCPU entering the
 *   64-bit entry (load address + 0x200) in long mode with %rsi pointing at the zero page.
 */
#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm.h"

/* Xen's public/arch-x86/hvm/start_info.h layout (no system header has it). */
#define PVH_MAGIC 0x336ec578u
#define PVH_NOTE_ENTRY 18u /* XEN_ELFNOTE_PHYS32_ENTRY */
struct pvh_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct pvh_module {
    uint64_t paddr, size, cmdline_paddr, reserved;
};
struct pvh_memmap {
    uint64_t addr, size;
    uint32_t type, reserved;
};

#define E820_RAM 1u
#define E820_RESERVED 2u

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: %s: %s\n", path, strerror(errno));
        return e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0) {
        fprintf(stderr, "vio-vmm: %s: empty or unreadable\n", path);
        close(fd);
        return -EINVAL;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len);
    if (!*buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < *len) {
        ssize_t n = read(fd, *buf + got, *len - got);
        if (n <= 0) {
            fprintf(stderr, "vio-vmm: %s: short read\n", path);
            free(*buf);
            close(fd);
            return -EIO;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

/* The memory map both boot paths hand over. Returns the entry count. */
static unsigned memmap(struct vmm *vm, struct pvh_memmap *m)
{
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    unsigned n = 0;
    m[n++] = (struct pvh_memmap){ 0, VMM_EBDA, E820_RAM, 0 };
    m[n++] = (struct pvh_memmap){ VMM_EBDA, 0xa0000u - VMM_EBDA, E820_RESERVED, 0 };
    m[n++] = (struct pvh_memmap){ VMM_BIOS_START, VMM_HIMEM - VMM_BIOS_START, E820_RESERVED, 0 };
    m[n++] = (struct pvh_memmap){ VMM_HIMEM, low - VMM_HIMEM, E820_RAM, 0 };
    if (vm->ram_size > low)
        m[n++] = (struct pvh_memmap){ 1ull << 32, vm->ram_size - low, E820_RAM, 0 };
    return n;
}

static int place_initrd(struct vmm *vm, const char *initrd, uint64_t kernel_end, uint64_t limit,
                        uint64_t *addr, uint64_t *size)
{
    *addr = *size = 0;
    if (!initrd)
        return 0;
    uint8_t *buf;
    size_t len;
    int r = read_file(initrd, &buf, &len);
    if (r)
        return r;
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    uint64_t top = low < limit ? low : limit;
    if (len > top || ((top - len) & ~0xfffull) < kernel_end) {
        fprintf(stderr, "vio-vmm: %s (%zu bytes) does not fit in guest RAM: give --mem more\n",
                initrd, len);
        free(buf);
        return -ENOSPC;
    }
    *addr = (top - len) & ~0xfffull;
    *size = len;
    memcpy(vmm_gpa(vm, *addr, len), buf, len);
    free(buf);
    return 0;
}

static int copy_cmdline(struct vmm *vm, const char *cmdline)
{
    size_t n = strlen(cmdline);
    if (n + 1 > VMM_CMDLINE_MAX) {
        fprintf(stderr, "vio-vmm: kernel command line longer than %u bytes\n", VMM_CMDLINE_MAX - 1);
        return -E2BIG;
    }
    memcpy(vmm_gpa(vm, VMM_CMDLINE, n + 1), cmdline, n + 1);
    return 0;
}

static int load_pvh(struct vmm *vm, const uint8_t *img, size_t len, const char *initrd,
                    const char *cmdline)
{
    const Elf64_Ehdr *eh = (const void *)img;
    if (len < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
        (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
        fprintf(stderr, "vio-vmm: kernel is not an x86-64 ELF image\n");
        return -ENOEXEC;
    }
    const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff);
    uint64_t entry = 0, kernel_end = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_offset > len || p->p_filesz > len - p->p_offset || p->p_filesz > p->p_memsz) {
            fprintf(stderr, "vio-vmm: kernel ELF segment %u lies outside the file\n", i);
            return -ENOEXEC;
        }
        if (p->p_type == PT_LOAD) {
            uint8_t *dst = vmm_gpa(vm, p->p_paddr, p->p_memsz);
            if (!dst) {
                fprintf(stderr, "vio-vmm: kernel segment at %#llx (+%llu) is outside guest RAM\n",
                        (unsigned long long)p->p_paddr, (unsigned long long)p->p_memsz);
                return -ENOSPC;
            }
            memcpy(dst, img + p->p_offset, p->p_filesz);
            memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
            if (p->p_paddr + p->p_memsz > kernel_end)
                kernel_end = p->p_paddr + p->p_memsz;
        } else if (p->p_type == PT_NOTE) {
            uint64_t off = p->p_offset, end = p->p_offset + p->p_filesz;
            while (off + sizeof(Elf64_Nhdr) <= end) {
                const Elf64_Nhdr *n = (const void *)(img + off);
                uint64_t name_sz = (n->n_namesz + 3u) & ~3u, desc_sz = (n->n_descsz + 3u) & ~3u;
                uint64_t desc = off + sizeof(*n) + name_sz;
                if (desc + desc_sz > end)
                    break;
                if (n->n_type == PVH_NOTE_ENTRY && n->n_namesz == 4 &&
                    memcmp(img + off + sizeof(*n), "Xen", 4) == 0 && n->n_descsz >= 4) {
                    uint32_t e32;
                    memcpy(&e32, img + desc, 4);
                    entry = e32;
                }
                off = desc + desc_sz;
            }
        }
    }
    if (!entry) {
        fprintf(stderr, "vio-vmm: the ELF kernel has no PVH entry note (needs CONFIG_PVH=y); "
                        "use its bzImage instead\n");
        return -ENOEXEC;
    }
    uint64_t rd_addr, rd_size;
    int r = place_initrd(vm, initrd, kernel_end, 1ull << 32, &rd_addr, &rd_size);
    if (r || (r = copy_cmdline(vm, cmdline)))
        return r;
    struct pvh_start_info *si = vmm_gpa(vm, VMM_START_INFO, 4096);
    struct pvh_module *mod = (void *)(si + 1);
    struct pvh_memmap *mm = vmm_gpa(vm, VMM_MEMMAP, 4096);
    memset(si, 0, 4096);
    memset(mm, 0, 4096);
    si->magic = PVH_MAGIC;
    si->version = 1;
    si->cmdline_paddr = VMM_CMDLINE;
    si->rsdp_paddr = vm->rsdp;
    si->memmap_paddr = VMM_MEMMAP;
    si->memmap_entries = memmap(vm, mm);
    if (rd_size) {
        si->nr_modules = 1;
        si->modlist_paddr = VMM_START_INFO + sizeof(*si);
        mod->paddr = rd_addr;
        mod->size = rd_size;
    }
    vm->pvh = true;
    vm->entry = entry;
    vm->start_info = VMM_START_INFO;
    return 0;
}

static int load_bzimage(struct vmm *vm, const uint8_t *img, size_t len, const char *initrd,
                        const char *cmdline)
{
    if (len < 0x1000)
        return -ENOEXEC;
    struct setup_header hdr;
    memcpy(&hdr, img + 0x1f1, sizeof(hdr));
    if (hdr.header != 0x53726448u /* "HdrS" */ || hdr.version < 0x20c ||
        !(hdr.xloadflags & XLF_KERNEL_64)) {
        fprintf(stderr, "vio-vmm: kernel is neither an ELF vmlinux with a PVH note nor a "
                        "bzImage with a 64-bit entry (boot protocol >= 2.12)\n");
        return -ENOEXEC;
    }
    unsigned setup_sects = hdr.setup_sects ? hdr.setup_sects : 4;
    size_t pm_off = (size_t)(setup_sects + 1) * 512;
    if (pm_off >= len)
        return -ENOEXEC;
    size_t pm_len = len - pm_off;
    uint64_t load = VMM_HIMEM;
    uint64_t need = hdr.init_size > pm_len ? hdr.init_size : pm_len;
    uint8_t *dst = vmm_gpa(vm, load, need);
    if (!dst) {
        fprintf(stderr, "vio-vmm: the kernel needs %llu bytes from 1 MiB: give --mem more\n",
                (unsigned long long)need);
        return -ENOSPC;
    }
    memcpy(dst, img + pm_off, pm_len);

    uint64_t rd_addr, rd_size;
    uint64_t rd_max = hdr.initrd_addr_max ? (uint64_t)hdr.initrd_addr_max + 1 : 0x38000000ull;
    if (hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G)
        rd_max = 1ull << 32;
    int r = place_initrd(vm, initrd, load + need, rd_max, &rd_addr, &rd_size);
    if (r || (r = copy_cmdline(vm, cmdline)))
        return r;

    struct boot_params *bp = vmm_gpa(vm, VMM_BOOT_PARAMS, sizeof(*bp));
    memset(bp, 0, sizeof(*bp));
    /* the setup header as the image has it: from 0x1f1 to the end its own jump says */
    size_t hdr_end = 0x202u + img[0x201];
    if (hdr_end > 0x1f1 + sizeof(bp->hdr))
        hdr_end = 0x1f1 + sizeof(bp->hdr);
    memcpy((uint8_t *)bp + 0x1f1, img + 0x1f1, hdr_end - 0x1f1);
    bp->hdr.type_of_loader = 0xff;
    bp->hdr.loadflags |= CAN_USE_HEAP | LOADED_HIGH;
    bp->hdr.heap_end_ptr = 0xfe00;
    bp->hdr.cmd_line_ptr = VMM_CMDLINE;
    bp->hdr.cmdline_size = (uint32_t)strlen(cmdline);
    bp->hdr.ramdisk_image = (uint32_t)rd_addr;
    bp->hdr.ramdisk_size = (uint32_t)rd_size;
    bp->acpi_rsdp_addr = vm->rsdp;
    struct pvh_memmap mm[8];
    unsigned n = memmap(vm, mm);
    for (unsigned i = 0; i < n; i++) {
        bp->e820_table[i].addr = mm[i].addr;
        bp->e820_table[i].size = mm[i].size;
        bp->e820_table[i].type = mm[i].type;
    }
    bp->e820_entries = (uint8_t)n;

    /* identity map of the first 4 GiB with 2 MiB pages */
    uint64_t *pml4 = vmm_gpa(vm, VMM_PML4, 6 * 4096);
    memset(pml4, 0, 6 * 4096);
    uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
    pml4[0] = (VMM_PML4 + 0x1000) | 3;
    for (unsigned i = 0; i < 4; i++) {
        pdpt[i] = (VMM_PML4 + 0x2000 + i * 0x1000ull) | 3;
        for (unsigned j = 0; j < 512; j++)
            pd[i * 512 + j] = ((uint64_t)(i * 512 + j) << 21) | 0x83;
    }
    uint64_t *gdt = vmm_gpa(vm, VMM_GDT, 4 * 8);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9b000000ffffull; /* 0x10: 64-bit code */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18: data */
    vm->pvh = false;
    vm->entry = load + 0x200;
    vm->start_info = VMM_BOOT_PARAMS;
    return 0;
}

int vmm_load_kernel(struct vmm *vm, const char *kernel, const char *initrd, const char *cmdline)
{
    uint8_t *img;
    size_t len;
    int r = read_file(kernel, &img, &len);
    if (r)
        return r;
    if (len >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0)
        r = load_pvh(vm, img, len, initrd, cmdline);
    else
        r = load_bzimage(vm, img, len, initrd, cmdline);
    free(img);
    return r;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
    *s = (struct kvm_segment){ .base = 0, .limit = 0xffffffffu, .selector = sel, .type = type,
                               .present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1,
                               .l = code64 ? 1 : 0, .g = 1 };
}

int vmm_setup_cpu_regs(struct vmm *vm, struct vmm_cpu *c)
{
    if (c->id != 0)
        return 0; /* APs wait for INIT/SIPI in the in-kernel LAPIC */
    struct kvm_sregs sr;
    if (ioctl(c->fd, KVM_GET_SREGS, &sr) < 0)
        return -errno;
    struct kvm_regs rg = { .rflags = 0x2, .rip = vm->entry };
    if (vm->pvh) {
        seg(&sr.cs, 0x10, 0xb, false);
        seg(&sr.ds, 0x18, 0x3, false);
        sr.cr0 = 0x11; /* PE | ET */
        sr.cr4 = 0;
        sr.efer = 0;
        rg.rbx = vm->start_info;
    } else {
        seg(&sr.cs, 0x10, 0xb, true);
        seg(&sr.ds, 0x18, 0x3, false);
        sr.gdt.base = VMM_GDT;
        sr.gdt.limit = 4 * 8 - 1;
        sr.cr3 = VMM_PML4;
        sr.cr4 = 0x20;                      /* PAE */
        sr.cr0 = 0x80000011u;               /* PG | ET | PE */
        sr.efer = 0x500;                    /* LME | LMA */
        rg.rsi = vm->start_info;
        rg.rsp = 0x8ff0;
    }
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    sr.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xb, .present = 1 };
    sr.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
    if (ioctl(c->fd, KVM_SET_SREGS, &sr) < 0) {
        fprintf(stderr, "vio-vmm: KVM_SET_SREGS: %s\n", strerror(errno));
        return -errno;
    }
    if (ioctl(c->fd, KVM_SET_REGS, &rg) < 0) {
        fprintf(stderr, "vio-vmm: KVM_SET_REGS: %s\n", strerror(errno));
        return -errno;
    }
    return 0;
}
