/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm machine: the KVM VM (memory, in-kernel irqchip and PIT, vCPUs with the host's
 * supported CPUID), the exit loop of each vCPU thread and the dispatch of trapped port I/O and
 * MMIO to the registered ranges.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm.h"

static void no_op(int sig)
{
    (void)sig;
}

void *vmm_gpa(struct vmm *vm, uint64_t gpa, uint64_t len)
{
    /* RAM is one host mapping; guest-physically it is [0, hole) and [4G, 4G + rest). */
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    if (gpa < low && len <= low - gpa)
        return vm->ram + gpa;
    if (vm->ram_size > VMM_MMIO_HOLE && gpa >= (1ull << 32)) {
        uint64_t off = gpa - (1ull << 32) + VMM_MMIO_HOLE;
        if (off < vm->ram_size && len <= vm->ram_size - off)
            return vm->ram + off;
    }
    return NULL;
}

static int set_region(struct vmm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *host)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        fprintf(stderr, "vio-vmm: KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));
        return -errno;
    }
    return 0;
}

static int setup_cpuid(struct vmm *vm, struct vmm_cpu *c)
{
    unsigned n = 256;
    struct kvm_cpuid2 *cp = calloc(1, sizeof(*cp) + n * sizeof(struct kvm_cpuid_entry2));
    if (!cp)
        return -ENOMEM;
    cp->nent = n;
    if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, cp) < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: KVM_GET_SUPPORTED_CPUID: %s\n", strerror(errno));
        free(cp);
        return e;
    }
    for (unsigned i = 0; i < cp->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cp->entries[i];
        if (e->function == 1) {
            /* initial APIC id, logical processor count; hypervisor present */
            e->ebx = (e->ebx & 0x0000ffffu) | (c->id << 24) | (vm->ncpus << 16);
            e->ecx |= 1u << 31;
        } else if (e->function == 0xb || e->function == 0x1f) {
            e->edx = c->id; /* x2APIC id */
        }
    }
    int r = ioctl(c->fd, KVM_SET_CPUID2, cp);
    int e = r < 0 ? -errno : 0;
    if (r < 0)
        fprintf(stderr, "vio-vmm: KVM_SET_CPUID2: %s\n", strerror(errno));
    free(cp);
    return e;
}

static int setup_lapic(struct vmm_cpu *c)
{
    /* LINT0 delivers the PIC's ExtINT, LINT1 NMI (what firmware leaves behind). */
    struct kvm_lapic_state la;
    if (ioctl(c->fd, KVM_GET_LAPIC, &la) < 0)
        return -errno;
    uint32_t *lint0 = (uint32_t *)(void *)&la.regs[0x350];
    uint32_t *lint1 = (uint32_t *)(void *)&la.regs[0x360];
    *lint0 = (*lint0 & ~0x700u) | 0x700u;
    *lint1 = (*lint1 & ~0x700u) | 0x400u;
    if (ioctl(c->fd, KVM_SET_LAPIC, &la) < 0)
        return -errno;
    return 0;
}

int vmm_init(struct vmm *vm, uint64_t ram_mib, unsigned ncpus)
{
    memset(vm, 0, sizeof(*vm));
    vm->kvm = vm->vm = vm->ram_fd = -1;
    vm->ncpus = ncpus;
    pthread_mutex_init(&vm->route_lock, NULL);
    vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: /dev/kvm: %s%s\n", strerror(errno),
                errno == ENOENT ? " (load kvm and kvm-intel / kvm-amd)" : "");
        return e;
    }
    if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "vio-vmm: unexpected KVM API version\n");
        return -ENOTSUP;
    }
    vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0);
    if (vm->vm < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: KVM_CREATE_VM: %s\n", strerror(errno));
        return e;
    }
    if (ioctl(vm->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
        fprintf(stderr, "vio-vmm: KVM_SET_TSS_ADDR: %s (ignored)\n", strerror(errno));
    uint64_t idmap = 0xfffbc000ull;
    (void)ioctl(vm->vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
    if (ioctl(vm->vm, KVM_CREATE_IRQCHIP, 0) < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: KVM_CREATE_IRQCHIP: %s\n", strerror(errno));
        return e;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm->vm, KVM_CREATE_PIT2, &pit) < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: KVM_CREATE_PIT2: %s\n", strerror(errno));
        return e;
    }

    /* Guest RAM: a memfd, so vhost-user backends can map it too. */
    vm->ram_size = ram_mib << 20;
    vm->ram_fd = memfd_create("vio-vmm-ram", MFD_CLOEXEC);
    if (vm->ram_fd < 0 || ftruncate(vm->ram_fd, (off_t)vm->ram_size) < 0) {
        int e = -errno;
        fprintf(stderr, "vio-vmm: guest RAM (%llu MiB): %s\n", (unsigned long long)ram_mib,
                strerror(errno));
        return e;
    }
    vm->ram = mmap(NULL, vm->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                   vm->ram_fd, 0);
    if (vm->ram == MAP_FAILED) {
        vm->ram = NULL;
        int e = -errno;
        fprintf(stderr, "vio-vmm: mmap guest RAM: %s\n", strerror(errno));
        return e;
    }
    madvise(vm->ram, vm->ram_size, MADV_MERGEABLE);
    uint64_t low = vm->ram_size < VMM_MMIO_HOLE ? vm->ram_size : VMM_MMIO_HOLE;
    int r = set_region(vm, 0, 0, low, vm->ram);
    if (r == 0 && vm->ram_size > low)
        r = set_region(vm, 1, 1ull << 32, vm->ram_size - low, vm->ram + low);
    if (r)
        return r;

    int mmap_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size <= 0)
        return -EIO;
    for (unsigned i = 0; i < ncpus; i++) {
        struct vmm_cpu *c = &vm->cpu[i];
        c->vm = vm;
        c->id = i;
        c->fd = ioctl(vm->vm, KVM_CREATE_VCPU, (unsigned long)i);
        if (c->fd < 0) {
            int e = -errno;
            fprintf(stderr, "vio-vmm: KVM_CREATE_VCPU %u: %s\n", i, strerror(errno));
            return e;
        }
        c->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
        if (c->run == MAP_FAILED) {
            c->run = NULL;
            return -errno;
        }
        if ((r = setup_cpuid(vm, c)) || (r = setup_lapic(c)))
            return r;
    }
    struct sigaction sa = { .sa_handler = no_op };
    sigaction(SIGUSR1, &sa, NULL);
    return 0;
}

void vmm_destroy(struct vmm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++)
        if (vm->cpu[i].fd >= 0)
            close(vm->cpu[i].fd);
    if (vm->ram)
        munmap(vm->ram, vm->ram_size);
    if (vm->ram_fd >= 0)
        close(vm->ram_fd);
    if (vm->vm >= 0)
        close(vm->vm);
    if (vm->kvm >= 0)
        close(vm->kvm);
}

static int add_range(struct vmm_range *t, unsigned *n, uint64_t base, uint64_t len, vmm_io_fn fn,
                     void *opaque, const char *name)
{
    if (*n >= VMM_MAX_RANGES)
        return -ENOSPC;
    t[*n] = (struct vmm_range){ .base = base, .len = len, .fn = fn, .opaque = opaque,
                                .name = name };
    (*n)++;
    return 0;
}

int vmm_add_pio(struct vmm *vm, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque,
                const char *name)
{
    return add_range(vm->pio, &vm->npio, base, len, fn, opaque, name);
}

int vmm_add_mmio(struct vmm *vm, uint64_t base, uint64_t len, vmm_io_fn fn, void *opaque,
                 const char *name)
{
    return add_range(vm->mmio, &vm->nmmio, base, len, fn, opaque, name);
}

#define MSI_GSI_BASE 24u

unsigned vmm_msi_alloc(struct vmm *vm)
{
    pthread_mutex_lock(&vm->route_lock);
    unsigned g = vm->nmsi < 64 ? MSI_GSI_BASE + vm->nmsi++ : 0;
    pthread_mutex_unlock(&vm->route_lock);
    return g;
}

int vmm_msi_route(struct vmm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
    if (gsi < MSI_GSI_BASE || gsi >= MSI_GSI_BASE + 64)
        return -EINVAL;
    pthread_mutex_lock(&vm->route_lock);
    vm->msi[gsi - MSI_GSI_BASE].addr = addr;
    vm->msi[gsi - MSI_GSI_BASE].data = data;
    vm->msi[gsi - MSI_GSI_BASE].set = true;
    unsigned max = 16 * 2 + 8 + 64;
    struct kvm_irq_routing *rt = calloc(1, sizeof(*rt) + max * sizeof(struct kvm_irq_routing_entry));
    if (!rt) {
        pthread_mutex_unlock(&vm->route_lock);
        return -ENOMEM;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < 24; i++) { /* KVM's defaults: PIC for 0..15, I/O APIC for 0..23 */
        if (i < 16)
            rt->entries[n++] = (struct kvm_irq_routing_entry){
                .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = { .irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                               .pin = i % 8 } };
        rt->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = i } };
    }
    for (unsigned i = 0; i < vm->nmsi; i++) {
        if (!vm->msi[i].set)
            continue;
        rt->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = MSI_GSI_BASE + i, .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = { .address_lo = (uint32_t)vm->msi[i].addr,
                       .address_hi = (uint32_t)(vm->msi[i].addr >> 32), .data = vm->msi[i].data } };
    }
    rt->nr = n;
    int r = ioctl(vm->vm, KVM_SET_GSI_ROUTING, rt) < 0 ? -errno : 0;
    if (r)
        fprintf(stderr, "vio-vmm: KVM_SET_GSI_ROUTING: %s\n", strerror(-r));
    free(rt);
    pthread_mutex_unlock(&vm->route_lock);
    return r;
}

int vmm_irq_line(struct vmm *vm, unsigned gsi, int level)
{
    struct kvm_irq_level l = { .irq = gsi, .level = (uint32_t)level };
    return ioctl(vm->vm, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

void vmm_request_stop(struct vmm *vm, int why)
{
    int expected = 0;
    atomic_compare_exchange_strong(&vm->stop, &expected, why);
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vmm_cpu *c = &vm->cpu[i];
        if (c->run)
            c->run->immediate_exit = 1;
        if (c->thread && !pthread_equal(c->thread, pthread_self()))
            pthread_kill(c->thread, SIGUSR1);
    }
}

static void note_miss(struct vmm *vm, uint64_t addr)
{
    for (unsigned i = 0; i < 16; i++) {
        if (vm->miss[i].hits && vm->miss[i].addr == addr) {
            vm->miss[i].hits++;
            return;
        }
        if (!vm->miss[i].hits) {
            vm->miss[i].addr = addr;
            vm->miss[i].hits = 1;
            return;
        }
    }
}

static void dispatch(struct vmm *vm, struct vmm_range *t, unsigned n, uint64_t addr, uint8_t *data,
                     unsigned size, bool write)
{
    for (unsigned i = 0; i < n; i++) {
        if (addr >= t[i].base && addr - t[i].base < t[i].len) {
            t[i].hits++;
            t[i].fn(t[i].opaque, addr, data, size, write);
            return;
        }
    }
    note_miss(vm, addr);
    if (!write)
        memset(data, 0xff, size); /* nothing there: the bus floats */
}

static void *cpu_thread(void *arg)
{
    struct vmm_cpu *c = arg;
    struct vmm *vm = c->vm;
    while (!atomic_load(&vm->stop)) {
        if (ioctl(c->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                c->exits[VMM_EXIT_INTR]++;
                c->run->immediate_exit = 0;
                continue;
            }
            fprintf(stderr, "vio-vmm: vcpu %u: KVM_RUN: %s\n", c->id, strerror(errno));
            vmm_request_stop(vm, VMM_STOP_ERROR);
            break;
        }
        struct kvm_run *r = c->run;
        switch (r->exit_reason) {
        case KVM_EXIT_IO: {
            c->exits[VMM_EXIT_IO]++;
            uint8_t *p = (uint8_t *)r + r->io.data_offset;
            for (uint32_t k = 0; k < r->io.count; k++, p += r->io.size)
                dispatch(vm, vm->pio, vm->npio, r->io.port, p, r->io.size,
                         r->io.direction == KVM_EXIT_IO_OUT);
            break;
        }
        case KVM_EXIT_MMIO:
            c->exits[VMM_EXIT_MMIO]++;
            dispatch(vm, vm->mmio, vm->nmmio, r->mmio.phys_addr, r->mmio.data, r->mmio.len,
                     r->mmio.is_write);
            break;
        case KVM_EXIT_HLT:
            c->exits[VMM_EXIT_HLT]++;
            vmm_request_stop(vm, VMM_STOP_POWEROFF);
            break;
        case KVM_EXIT_SHUTDOWN: /* triple fault: what a reboot ends in */
            c->exits[VMM_EXIT_SHUTDOWN]++;
            vmm_request_stop(vm, VMM_STOP_REBOOT);
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            c->exits[VMM_EXIT_SYSTEM_EVENT]++;
            vmm_request_stop(vm, r->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN
                                     ? VMM_STOP_POWEROFF : VMM_STOP_REBOOT);
            break;
        case KVM_EXIT_INTR:
            c->exits[VMM_EXIT_INTR]++;
            break;
        case KVM_EXIT_FAIL_ENTRY:
            fprintf(stderr, "vio-vmm: vcpu %u: entry failed, reason 0x%llx\n", c->id,
                    (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
            vmm_request_stop(vm, VMM_STOP_ERROR);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            fprintf(stderr, "vio-vmm: vcpu %u: KVM internal error, suberror %u\n", c->id,
                    r->internal.suberror);
            vmm_request_stop(vm, VMM_STOP_ERROR);
            break;
        default:
            c->exits[VMM_EXIT_OTHER]++;
            fprintf(stderr, "vio-vmm: vcpu %u: unhandled exit %u\n", c->id, r->exit_reason);
            vmm_request_stop(vm, VMM_STOP_ERROR);
            break;
        }
    }
    return NULL;
}

int vmm_run(struct vmm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int r = vmm_setup_cpu_regs(vm, &vm->cpu[i]);
        if (r)
            return r;
    }
    /* Block SIGUSR1 in this thread; vCPU threads get it unblocked to leave KVM_RUN. */
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int r = pthread_create(&vm->cpu[i].thread, NULL, cpu_thread, &vm->cpu[i]);
        if (r) {
            fprintf(stderr, "vio-vmm: vcpu thread: %s\n", strerror(r));
            vmm_request_stop(vm, VMM_STOP_ERROR);
            for (unsigned k = 0; k < i; k++)
                pthread_join(vm->cpu[k].thread, NULL);
            return -r;
        }
    }
    for (unsigned i = 0; i < vm->ncpus; i++)
        pthread_join(vm->cpu[i].thread, NULL);
    return atomic_load(&vm->stop);
}

void vmm_print_counters(struct vmm *vm)
{
    static const char *names[VMM_EXIT_KINDS] = { "io", "mmio", "hlt", "shutdown",
                                                 "system-event", "intr", "other" };
    fprintf(stderr, "vio-vmm: exits by reason:");
    for (unsigned k = 0; k < VMM_EXIT_KINDS; k++) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < vm->ncpus; i++)
            sum += vm->cpu[i].exits[k];
        fprintf(stderr, " %s=%llu", names[k], (unsigned long long)sum);
    }
    fprintf(stderr, "\n");
    for (unsigned i = 0; i < vm->npio; i++)
        fprintf(stderr, "vio-vmm:   port %#llx %-12s %llu\n", (unsigned long long)vm->pio[i].base,
                vm->pio[i].name, (unsigned long long)vm->pio[i].hits);
    for (unsigned i = 0; i < vm->nmmio; i++)
        fprintf(stderr, "vio-vmm:   mmio %#llx %-12s %llu\n",
                (unsigned long long)vm->mmio[i].base, vm->mmio[i].name,
                (unsigned long long)vm->mmio[i].hits);
    for (unsigned i = 0; i < 16 && vm->miss[i].hits; i++)
        fprintf(stderr, "vio-vmm:   unclaimed %#llx %llu\n", (unsigned long long)vm->miss[i].addr,
                (unsigned long long)vm->miss[i].hits);
}
