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

/* --network OPTS: a comma list of tap=NAME | vhost-user=SOCKET, transport=pci|mmio,
 * vhost=on|off, mac=XX:XX:XX:XX:XX:XX, queues=N. */
static int parse_network(char *arg, unsigned index, struct vmm_net_opts *o)
{
    *o = (struct vmm_net_opts){ .index = index, .pci = true, .queues = 1, .ioeventfd = true,
                                .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x56 + index) } };
    for (char *save = NULL, *kv = strtok_r(arg, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        if (!v) {
            fprintf(stderr, "vio-vmm: --network: '%s' is not KEY=VALUE\n", kv);
            return -1;
        }
        *v++ = 0;
        if (!strcmp(kv, "tap")) {
            o->tap = v;
        } else if (!strcmp(kv, "vhost-user")) {
            o->vhost_user = v;
        } else if (!strcmp(kv, "transport")) {
            if (strcmp(v, "pci") && strcmp(v, "mmio")) {
                fprintf(stderr, "vio-vmm: --network: transport is pci or mmio, not '%s'\n", v);
                return -1;
            }
            o->pci = !strcmp(v, "pci");
        } else if (!strcmp(kv, "vhost")) {
            if (strcmp(v, "on") && strcmp(v, "off")) {
                fprintf(stderr, "vio-vmm: --network: vhost is on or off, not '%s'\n", v);
                return -1;
            }
            o->vhost = !strcmp(v, "on");
        } else if (!strcmp(kv, "mac")) {
            unsigned m[6];
            char tail;
            if (sscanf(v, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &tail) != 6 ||
                m[0] > 255 || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255 ||
                (m[0] & 1)) {
                fprintf(stderr, "vio-vmm: --network: mac '%s' is not a unicast XX:XX:XX:XX:XX:XX\n", v);
                return -1;
            }
            for (int i = 0; i < 6; i++)
                o->mac[i] = (uint8_t)m[i];
        } else if (!strcmp(kv, "queues")) {
            unsigned long q;
            char *end;
            q = strtoul(v, &end, 10);
            if (*end || end == v || q < 1 || q > VMM_NET_MAX_PAIRS) {
                fprintf(stderr, "vio-vmm: --network: queues is 1..%u, not '%s'\n", VMM_NET_MAX_PAIRS, v);
                return -1;
            }
            o->queues = (unsigned)q;
        } else {
            fprintf(stderr, "vio-vmm: --network: unknown key '%s' (tap, vhost-user, transport, vhost, mac, queues)\n", kv);
            return -1;
        }
    }
    if (!o->tap == !o->vhost_user) {
        fprintf(stderr, "vio-vmm: --network: give exactly one of tap=NAME or vhost-user=SOCKET\n");
        return -1;
    }
    if (o->vhost_user && o->vhost) {
        fprintf(stderr, "vio-vmm: --network: vhost=on is the kernel's vhost-net on a tap; with "
                        "vhost-user= the daemon runs the queues\n");
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio-vmm --kernel FILE [--initrd FILE] [--params \"CMDLINE\"] [--mem MiB]\n"
            "               [--cpus N] [--network OPTS]... [--no-ioeventfd] [--no-acpi]\n"
            "               [--counters] [--verbose]\n"
            "\n"
            "Boot a Linux guest on KVM (/dev/kvm) with a serial console on stdio.\n"
            "\n"
            "  --kernel FILE    ELF vmlinux with a PVH entry (CONFIG_PVH) or a 64-bit bzImage\n"
            "  --initrd FILE    initramfs handed to the kernel\n"
            "  --params STR     kernel command line (default \"console=ttyS0 reboot=k panic=-1\")\n"
            "  --mem MiB        guest RAM, 64..65536 (default 256)\n"
            "  --cpus N         vCPUs, 1..%u (default 1)\n"
"  --network OPTS   a virtio-net card; OPTS is a comma list:\n"
            "                     tap=NAME          host side: this tap (created if missing)\n"
            "                     transport=pci     virtio-PCI (modern, MSI-X), the default\n"
            "                     transport=mmio    virtio-MMIO (version 2), described in ACPI\n"
            "                     vhost-user=SOCK   instead of tap=: a vhost-user daemon listening at SOCK\n"
            "                                       runs the queues (the daemon's own backend)\n"
            "                     vhost=off         data path in the VMM (libvirtio's device model)\n"
            "                     vhost=on          data path in the kernel's vhost-net (with tap=)\n"
            "                     mac=XX:..:XX      the card's MAC (default 52:54:00:12:34:56+N)\n"
            "                     queues=N          queue pairs (1..%u)\n"
            "  --no-ioeventfd   trap every notify write (default: KVM ioeventfd per queue)\n"
            "  --no-acpi        no ACPI tables (the MP table alone; no power-off, no MMIO devices)\n"
            "  --counters       print exits by reason and trapped accesses per device at exit\n"
            "  --verbose        say what the VMM does\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status: 0 when the guest powered off or rebooted, 1 on a VMM error, 2 on a bad\n"
            "command line.\n",
            VMM_MAX_CPUS, VMM_NET_MAX_PAIRS);
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
    bool counters = false, verbose = false, no_acpi = false, no_ioeventfd = false;
    struct vmm_net_opts nets[VMM_MAX_NETS];
    unsigned nnets = 0;
    static const struct option opts[] = {
        { "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
        { "params", required_argument, NULL, 'p' }, { "mem", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },   { "counters", no_argument, NULL, 'C' },
        { "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
        { "no-acpi", no_argument, NULL, 'A' },      { "network", required_argument, NULL, 'n' },
        { "no-ioeventfd", no_argument, NULL, 'E' },
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
        case 'E': no_ioeventfd = true; break;
        case 'n':
            if (nnets >= VMM_MAX_NETS) {
                fprintf(stderr, "vio-vmm: at most %u --network cards\n", VMM_MAX_NETS);
                return 2;
            }
            if (parse_network(optarg, nnets, &nets[nnets]))
                return 2;
            nnets++;
            break;
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
    if ((r = vmm_legacy_init(&vm)) || (r = vmm_pci_init(&vm))) {
        vmm_destroy(&vm);
        return 1;
    }
    for (unsigned i = 0; i < nnets; i++) {
        nets[i].ioeventfd = !no_ioeventfd;
        if (!nets[i].pci && no_acpi) {
            fprintf(stderr, "vio-vmm: transport=mmio needs ACPI (the guest finds MMIO devices in the DSDT)\n");
            vmm_destroy(&vm);
            return 2;
        }
        if ((r = vmm_net_add(&vm, &nets[i]))) {
            vmm_net_fini();
            vmm_destroy(&vm);
            return 1;
        }
    }
    if ((!no_acpi && (r = vmm_write_acpi(&vm))) ||
        (r = vmm_write_mptable(&vm)) || (r = vmm_load_kernel(&vm, kernel, initrd, params))) {
        vmm_net_fini();
        vmm_destroy(&vm);
        return 1;
    }
    if (verbose)
        fprintf(stderr, "vio-vmm: %s boot, entry %#llx, %lu MiB, %lu vCPU(s)\n",
                vm.pvh ? "PVH" : "bzImage 64-bit", (unsigned long long)vm.entry, mem, cpus);
    int why = vmm_run(&vm);
    vmm_net_stop();
    vmm_legacy_fini(&vm);
    if (counters) {
        vmm_print_counters(&vm);
        vmm_net_print_counters();
    }
    if (verbose || why == VMM_STOP_ERROR)
        fprintf(stderr, "vio-vmm: guest %s\n",
                why == VMM_STOP_POWEROFF ? "powered off"
                : why == VMM_STOP_REBOOT ? "rebooted"
                                         : "stopped on an error");
    vmm_net_fini();
    vmm_destroy(&vm);
    return why == VMM_STOP_ERROR || why < 0 ? 1 : 0;
}
