/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm: the reference VMM of libvirtio on KVM. Boots a Linux kernel (ELF vmlinux through
 * its PVH entry, or a bzImage through the 64-bit boot protocol) with an initramfs, a serial
 * console on stdio and 1..8 vCPUs, and exits with the guest (power-off, reboot).
 * See docs/vmm.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio-vmm --kernel FILE [--initrd FILE] [--params \"CMDLINE\"] [--mem MiB]\n"
            "               [--cpus N] [--no-acpi] [--counters] [--verbose]\n"
            "\n"
            "Boot a Linux guest on KVM (/dev/kvm) with a serial console on stdio.\n"
            "\n"
            "  --kernel FILE    ELF vmlinux with a PVH entry (CONFIG_PVH) or a 64-bit bzImage\n"
            "  --initrd FILE    initramfs handed to the kernel\n"
            "  --params STR     kernel command line (default \"console=ttyS0 reboot=k panic=-1\")\n"
            "  --mem MiB        guest RAM, 64..65536 (default 256)\n"
            "  --cpus N         vCPUs, 1..%u (default 1)\n"
"  --no-acpi        no ACPI tables (the MP table alone; no power-off, no MMIO devices)\n"
            "  --counters       print exits by reason and trapped accesses per device at exit\n"
            "  --verbose        say what the VMM does\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status: 0 when the guest powered off or rebooted, 1 on a VMM error, 2 on a bad\n"
            "command line.\n",
            VMM_MAX_CPUS);
}

static int parse_uint(const char *opt, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "vio-vmm: %s wants a number from %lu to %lu, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *kernel = NULL, *initrd = NULL;
    const char *params = "console=ttyS0 reboot=k panic=-1";
    unsigned long mem = 256, cpus = 1;
    bool counters = false, verbose = false, no_acpi = false;
    static const struct option opts[] = {
        { "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
        { "params", required_argument, NULL, 'p' }, { "mem", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },   { "counters", no_argument, NULL, 'C' },
        { "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
        { "no-acpi", no_argument, NULL, 'A' },
        { NULL, 0, NULL, 0 }
    };
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': kernel = optarg; break;
        case 'i': initrd = optarg; break;
        case 'p': params = optarg; break;
        case 'm': if (parse_uint("--mem", optarg, 64, 65536, &mem)) return 2; break;
        case 'c': if (parse_uint("--cpus", optarg, 1, VMM_MAX_CPUS, &cpus)) return 2; break;
        case 'C': counters = true; break;
        case 'v': verbose = true; break;
        case 'A': no_acpi = true; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "vio-vmm: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vio-vmm: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!kernel) {
        fprintf(stderr, "vio-vmm: --kernel is required (see --help)\n");
        return 2;
    }

    static struct vmm vm;
    int r = vmm_init(&vm, mem, (unsigned)cpus);
    if (r) {
        vmm_destroy(&vm);
        return 1;
    }
    vm.verbose = verbose;
    if ((r = vmm_legacy_init(&vm)) || (!no_acpi && (r = vmm_write_acpi(&vm))) ||
        (r = vmm_write_mptable(&vm)) || (r = vmm_load_kernel(&vm, kernel, initrd, params))) {
        vmm_destroy(&vm);
        return 1;
    }
    if (verbose)
        fprintf(stderr, "vio-vmm: %s boot, entry %#llx, %lu MiB, %lu vCPU(s)\n",
                vm.pvh ? "PVH" : "bzImage 64-bit", (unsigned long long)vm.entry, mem, cpus);
    int why = vmm_run(&vm);
    vmm_legacy_fini(&vm);
    if (counters)
        vmm_print_counters(&vm);
    if (verbose || why == VMM_STOP_ERROR)
        fprintf(stderr, "vio-vmm: guest %s\n",
                why == VMM_STOP_POWEROFF ? "powered off"
                : why == VMM_STOP_REBOOT ? "rebooted"
                                         : "stopped on an error");
    vmm_destroy(&vm);
    return why == VMM_STOP_ERROR || why < 0 ? 1 : 0;
}
