/* SPDX-License-Identifier: MIT */
/*
 * The driver seat (virtio/driver.h) and the virtio-net driver helper against QEMU's own
 * device models, driven over qtest (PEERS.md "qtest"):
 *
 *   driver_qtest pci   q35, virtio-net-pci,disable-legacy=on (PCI capability walker, BAR
 *                      assignment, MSI-X vector checks, ISR, an MSI-X message into RAM)
 *   driver_qtest pci-transitional  the same with QEMU's default transitional function
 *                      (1af4:1000, legacy I/O BAR 0 beside the modern capabilities)
 *   driver_qtest pci-legacy  q35, virtio-net-pci,disable-modern=on: no modern capabilities,
 *                      the driver falls back to the legacy I/O BAR 0 (VIO_DRIVER_LEGACY: 32
 *                      feature bits, QUEUE_PFN, vectors only with MSI-X on)
 *   driver_qtest mmio  microvm, virtio-net-device on the last virtio-mmio transport,
 *                      force-legacy=false (MMIO v2 prober, InterruptStatus/ACK)
 *   driver_qtest mmio-legacy  the same with QEMU's default, legacy virtio-mmio version 1
 *                      (GuestPageSize / QueueAlign / QueuePFN, 32 feature bits, no VERSION_1)
 *
 * QEMU's virtio-net moves frames only while the VM runs (vm_running), so the machine is not
 * started with -S: it runs a 64 KiB "firmware" of our own whose reset vector is
 * cli; hlt; jmp .-1, which keeps the vCPU halted and costs no CPU (and no BIOS touches PCI).
 * Guest RAM is a memory-backend file this process maps: the rings and buffers live there.
 * The netdev is "dgram" over unix sockets; the test holds the other end: frames the driver
 * sends must arrive on it, frames injected there must land in our receive buffers. MAC and
 * link status are read back, then the device is reset and brought up again and the round
 * trip repeated. Exit 0 pass, 1 fail, 77 skip (no qemu-system-x86_64).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qtest.h"
#include "virtio/driver.h"
#include "virtio/mem.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"

#define RAM_SIZE (128u << 20)
#define AREA_GPA (16u << 20)
#define MSI_GPA 0x100000u
#define MAC "52:54:00:12:34:56"
static const uint8_t mac_bytes[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static int failures;
#define CHECK(c, ...)                                                                     \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);                  \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            failures++;                                                                   \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

static char dir[64];
static bool legacy, transitional, pci_legacy;
static struct qtest *qt;
static uint8_t *ram;
static int net_fd = -1;
static struct sockaddr_un qemu_addr;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- PCI accessors over qtest (conf1 ports, then memory reads/writes for the BARs) ---- */
static unsigned pci_devfn;

static int cfg_read(void *o, unsigned off, unsigned size, uint32_t *v)
{
    (void)o;
    int r = qtest_outl(qt, 0xcf8, 0x80000000u | pci_devfn << 8 | (off & 0xfc));
    return r ? r : qtest_in(qt, size, (uint16_t)(0xcfc + (off & 3)), v);
}

static int cfg_write(void *o, unsigned off, unsigned size, uint32_t v)
{
    (void)o;
    int r = qtest_outl(qt, 0xcf8, 0x80000000u | pci_devfn << 8 | (off & 0xfc));
    return r ? r : qtest_out(qt, size, (uint16_t)(0xcfc + (off & 3)), v);
}

static int bar_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t *v)
{
    (void)o;
    (void)bar;
    return qtest_readn(qt, base + off, size, v);
}

static int bar_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t v)
{
    (void)o;
    (void)bar;
    return qtest_writen(qt, base + off, size, v);
}

static int io_read(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t *v)
{
    (void)o;
    (void)bar;
    uint32_t x = 0;
    int r = qtest_in(qt, size, (uint16_t)(base + off), &x);
    *v = x;
    return r;
}

static int io_write(void *o, unsigned bar, uint64_t base, uint64_t off, unsigned size, uint64_t v)
{
    (void)o;
    (void)bar;
    return qtest_out(qt, size, (uint16_t)(base + off), (uint32_t)v);
}

static const struct vio_pci_driver_io pci_io = {cfg_read, cfg_write, bar_read, bar_write,
                                                io_read, io_write};

/* ---- MMIO accessors ---- */
static uint64_t mmio_base;

static int mm_read(void *o, uint64_t off, unsigned size, uint32_t *v)
{
    (void)o;
    uint64_t x;
    int r = qtest_readn(qt, mmio_base + off, size, &x);
    if (r == 0)
        *v = (uint32_t)x;
    return r;
}

static int mm_write(void *o, uint64_t off, unsigned size, uint32_t v)
{
    (void)o;
    return qtest_writen(qt, mmio_base + off, size, v);
}

static const struct vio_mmio_driver_io mmio_io = {mm_read, mm_write};

static void log_fn(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (level <= VIO_LOG_INFO)
        fprintf(stderr, "  [%s] %s\n", obj, msg);
}

/* ---- the netdev's other end ---- */
static ssize_t net_recv(void *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = net_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -ETIMEDOUT;
    ssize_t n = recv(net_fd, buf, cap, 0);
    return n < 0 ? -errno : n;
}

static int net_inject(const void *frame, size_t len)
{
    ssize_t n = sendto(net_fd, frame, len, 0, (struct sockaddr *)&qemu_addr, sizeof(qemu_addr));
    return n == (ssize_t)len ? 0 : -errno;
}

static size_t make_frame(uint8_t *f, size_t len, unsigned seed)
{
    memset(f, 0xff, 6); /* broadcast: QEMU's rx filter lets it through */
    memcpy(f + 6, mac_bytes, 6);
    f[12] = 0x88;
    f[13] = 0xb5; /* local experimental ethertype */
    for (size_t i = 14; i < len; i++)
        f[i] = (uint8_t)(seed * 31 + i * 7);
    return len;
}

/* One bring-up + traffic round over @drv. */
static int round_trip(const struct vio_driver *drv, struct vio_mem *mem, bool pci,
                      struct vio_pci_driver *pd, int round)
{
    struct vio_net_driver *nd = NULL;
    uint8_t frame[2048], got[2048];
    uint64_t feat = 0;
    int r = vio_driver_negotiate(drv, vio_feature_bit(VIO_NET_F_MAC) |
                                          vio_feature_bit(VIO_NET_F_STATUS) |
                                          vio_feature_bit(VIO_NET_F_MRG_RXBUF),
                                 &feat);
    CHECK(r == 0, "negotiate: %d", r);
    CHECK(vio_has_feature(feat, VIO_F_VERSION_1) != (legacy || pci_legacy) &&
              vio_has_feature(feat, VIO_NET_F_MAC) &&
              vio_has_feature(feat, VIO_NET_F_STATUS) && vio_has_feature(feat, VIO_NET_F_MRG_RXBUF),
          "features 0x%llx", (unsigned long long)feat);

    uint8_t mac[6];
    uint16_t status;
    CHECK(vio_driver_config_read_stable(drv, 0, mac, 6) == 0, "mac read");
    CHECK(memcmp(mac, mac_bytes, 6) == 0, "mac %02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
          mac[2], mac[3], mac[4], mac[5]);
    CHECK(vio_driver_config_read(drv, 6, &status, 2) == 0, "status read");
    CHECK(status & VIO_NET_S_LINK_UP, "link status 0x%x", status);
    /* a config read past the window is refused locally */
    CHECK(vio_driver_config_read(drv, 0xfff0, mac, 6) == -ERANGE, "range");

    int nq = vio_driver_num_queues(drv);
    CHECK(nq >= 2, "num_queues %d", nq);
    int max = vio_driver_queue_max_size(drv, 0);
    CHECK(max >= 64, "queue 0 max %d", max);
    CHECK(vio_driver_queue_max_size(drv, 4096) == -ERANGE, "queue 4096");

    if (pci) {
        /* MSI-X vectors: accepted ones read back, a vector beyond the table reads back
         * NO_VECTOR (QEMU's msix_vector_use() fails) and is reported as -ENOSPC */
        struct vio_pci_driver_info info;
        vio_pci_driver_info(pd, &info);
        if (pci_legacy) {
            /* the legacy vector registers exist only while MSI-X is on */
            CHECK(vio_pci_driver_msix_enable(pd, false) == 0, "msix off");
            CHECK(vio_driver_set_config_vector(drv, 0) == -EINVAL, "legacy vector, MSI-X off");
            CHECK(vio_pci_driver_msix_enable(pd, true) == 0, "msix on");
            /* the config moved to offset 24: the MAC still reads right */
            CHECK(vio_driver_config_read(drv, 0, mac, 6) == 0 && !memcmp(mac, mac_bytes, 6),
                  "mac with MSI-X on");
        }
        CHECK(vio_driver_set_config_vector(drv, 0) == 0, "config vector 0");
        CHECK(vio_driver_set_queue_vector(drv, 1, 1) == 0, "queue 1 vector 1");
        r = vio_driver_set_queue_vector(drv, 1, (uint16_t)(info.msix_vectors + 5));
        CHECK(r == -ENOSPC, "vector beyond the table: %d", r);
        CHECK(vio_driver_set_queue_vector(drv, 1, VIO_DRIVER_NO_VECTOR) == 0, "no vector");
        CHECK(vio_driver_set_config_vector(drv, VIO_DRIVER_NO_VECTOR) == 0, "no config vector");
        /* rx queue 0 interrupts by MSI-X message into RAM (round 1 only) */
        if (round == 1) {
            memset(ram + MSI_GPA, 0, 4);
            CHECK(vio_pci_driver_msix_set_entry(pd, 0, MSI_GPA, 0xc0ffee01u, false) == 0, "entry");
            CHECK(vio_pci_driver_msix_enable(pd, true) == 0, "msix on");
            CHECK(vio_driver_set_queue_vector(drv, 0, 0) == 0, "rx vector 0");
        } else {
            CHECK(vio_pci_driver_msix_enable(pd, false) == 0, "msix off");
        }
    }

    struct vio_net_driver_config nc = {
        .struct_size = sizeof(nc),
        .mem = mem,
        .area = AREA_GPA,
        .features = feat,
        .queue_size = (uint16_t)(max < 256 ? max : 256),
        .log = log_fn,
    };
    nc.area_size = vio_net_driver_area_size(&nc);
    CHECK(nc.area_size && nc.area_size < RAM_SIZE - AREA_GPA, "area %llu",
          (unsigned long long)nc.area_size);
    CHECK((r = vio_net_driver_new(&nc, &nd)) == 0, "net_driver_new %d", r);
    /* notify before setup is refused by the transport */
    CHECK(vio_driver_notify(drv, 0) == -EINVAL || !pci, "notify before enable");
    CHECK((r = vio_net_driver_attach(nd, drv)) == 0, "attach %d", r);
    uint8_t st;
    CHECK(vio_driver_get_status(drv, &st) == 0 && (st & VIO_S_DRIVER_OK), "DRIVER_OK 0x%x", st);
    /* a live queue cannot be set up again */
    struct vio_net_driver_queue_addr qa;
    vio_net_driver_queue_addr(nd, 0, &qa);
    struct vio_driver_queue dq = {qa.size, qa.desc, qa.driver, qa.device};
    CHECK((r = vio_driver_queue_setup(drv, 0, &dq)) == -EBUSY, "setup of a live queue: %d", r);

    CHECK(vio_net_driver_rx_fill(nd, 0) > 0, "rx_fill");
    CHECK(vio_net_driver_kick(nd, VIO_NET_DRIVER_RXQ(0)) >= 0, "rx kick");

    /* transmit: three frames of different sizes appear on our socket, in order */
    static const size_t lens[] = {60, 1514, 333};
    for (unsigned i = 0; i < 3; i++) {
        make_frame(frame, lens[i], 100 * round + i);
        CHECK((r = vio_net_driver_send(nd, 0, NULL, frame, lens[i])) == 0, "send %d", r);
    }
    CHECK((r = vio_net_driver_kick(nd, VIO_NET_DRIVER_TXQ(0))) == 1, "tx kick %d", r);
    for (unsigned i = 0; i < 3; i++) {
        ssize_t n = net_recv(got, sizeof(got), 5000);
        make_frame(frame, lens[i], 100 * round + i);
        CHECK(n == (ssize_t)lens[i], "tx frame %u: got %zd bytes, want %zu", i, n, lens[i]);
        CHECK(memcmp(got, frame, lens[i]) == 0, "tx frame %u content", i);
    }
    long end = now_ms() + 5000;
    while (vio_net_driver_tx_inflight(nd, 0) && now_ms() < end) {
        vio_net_driver_tx_reclaim(nd, 0, NULL, 0);
        usleep(1000);
    }
    CHECK(vio_net_driver_tx_inflight(nd, 0) == 0, "tx completions");
    if (!(pci && round == 1)) {
        /* INTx / MMIO: the used-buffer interrupt cause is set, and reading it clears it */
        r = vio_driver_ack_interrupt(drv);
        CHECK(r >= 0 && (r & VIO_DRIVER_INT_VRING), "interrupt cause %d", r);
        r = vio_driver_ack_interrupt(drv);
        CHECK(r == 0, "interrupt cause after ack %d", r);
    }

    /* receive: frames injected on the netdev land in our buffers */
    for (unsigned i = 0; i < 3; i++) {
        size_t len = make_frame(frame, 64 + 500 * i, 7 * round + i);
        CHECK(net_inject(frame, len) == 0, "inject");
        ssize_t n;
        end = now_ms() + 5000;
        struct vio_net_hdr h;
        while ((n = vio_net_driver_recv(nd, 0, &h, got, sizeof(got))) == -EAGAIN && now_ms() < end)
            usleep(1000);
        CHECK(n == (ssize_t)len, "rx frame %u: %zd, want %zu", i, n, len);
        CHECK(memcmp(got, frame, len) == 0, "rx frame %u content", i);
        CHECK(le16toh(h.num_buffers) == 1, "num_buffers %u", le16toh(h.num_buffers));
        vio_net_driver_kick(nd, VIO_NET_DRIVER_RXQ(0));
    }
    if (pci && round == 1) {
        uint32_t msg;
        memcpy(&msg, ram + MSI_GPA, 4);
        CHECK(msg == 0xc0ffee01u, "MSI-X message in RAM: 0x%x", msg);
        /* with MSI-X the ISR is not used for queue interrupts */
    }
    struct vio_net_driver_stats s;
    vio_net_driver_get_stats(nd, 0, &s);
    fprintf(stderr, "  round %d: tx %llu frames, rx %llu frames, %llu kicks\n", round,
            (unsigned long long)s.tx_frames, (unsigned long long)s.rx_frames,
            (unsigned long long)s.kicks);

    /* reset: status reads 0, and the device forgets its queues */
    CHECK(vio_driver_reset(drv) == 0, "reset");
    CHECK(vio_driver_get_status(drv, &st) == 0 && st == 0, "status after reset 0x%x", st);
    CHECK(vio_driver_notify(drv, 0) == -EINVAL || !pci, "notify after reset");
    vio_net_driver_free(nd);
    return 0;
out:
    vio_net_driver_free(nd);
    return -1;
}

int main(int argc, char **argv)
{
    transitional = argc > 1 && !strcmp(argv[1], "pci-transitional");
    pci_legacy = argc > 1 && !strcmp(argv[1], "pci-legacy");
    bool pci = argc > 1 && (!strcmp(argv[1], "pci") || transitional || pci_legacy);
    legacy = argc > 1 && !strcmp(argv[1], "mmio-legacy");
    if (argc < 2 || (!pci && !legacy && strcmp(argv[1], "mmio"))) {
        fprintf(stderr, "usage: %s pci|pci-transitional|pci-legacy|mmio|mmio-legacy\n", argv[0]);
        return 2;
    }
    if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        printf("SKIP: qemu-system-x86_64 not found\n");
        return 77;
    }
    snprintf(dir, sizeof(dir), "/tmp/vio-drvqt-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char ram_path[96], sock_q[96], sock_t[96], err_path[96], mem_arg[256], net_arg[512];
    snprintf(ram_path, sizeof(ram_path), "%s/ram", dir);
    snprintf(sock_q, sizeof(sock_q), "%s/qemu-net.sock", dir);
    snprintf(sock_t, sizeof(sock_t), "%s/test-net.sock", dir);
    snprintf(err_path, sizeof(err_path), "%s/qemu.log", dir);
    struct vio_mem *mem = NULL;
    struct vio_pci_driver *pd = NULL;
    struct vio_mmio_driver *md = NULL;
    int ramfd = open(ram_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(ramfd >= 0 && ftruncate(ramfd, RAM_SIZE) == 0, "ram file");
    ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
    CHECK(ram != MAP_FAILED, "mmap");

    net_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un me = {.sun_family = AF_UNIX};
    snprintf(me.sun_path, sizeof(me.sun_path), "%s", sock_t);
    CHECK(net_fd >= 0 && bind(net_fd, (struct sockaddr *)&me, sizeof(me)) == 0, "bind");
    qemu_addr.sun_family = AF_UNIX;
    snprintf(qemu_addr.sun_path, sizeof(qemu_addr.sun_path), "%s", sock_q);

    snprintf(mem_arg, sizeof(mem_arg), "memory-backend-file,id=mem,size=%u,mem-path=%s,share=on",
             RAM_SIZE, ram_path);
    snprintf(net_arg, sizeof(net_arg),
             "dgram,id=n0,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", sock_q,
             sock_t);
    char bios_path[96];
    snprintf(bios_path, sizeof(bios_path), "%s/halt.bin", dir);
    {
        static uint8_t rom[65536];
        static const uint8_t reset[] = {0xfa, 0xf4, 0xeb, 0xfd}; /* cli; hlt; jmp .-1 */
        memcpy(rom + 0xfff0, reset, sizeof(reset));
        FILE *f = fopen(bios_path, "wb");
        CHECK(f && fwrite(rom, sizeof(rom), 1, f) == 1 && fclose(f) == 0, "bios file");
    }
    const char *av_pci[] = {"qemu-system-x86_64", "-machine", "q35,memory-backend=mem", "-accel",
                            "tcg", "-bios", bios_path, "-display", "none", "-nodefaults", "-m", "128M",
                            "-object", mem_arg, "-netdev", net_arg, "-device",
                            "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=,mac=" MAC, NULL};
    if (transitional)
        av_pci[sizeof(av_pci) / sizeof(av_pci[0]) - 2] = "virtio-net-pci,netdev=n0,romfile=,mac=" MAC;
    if (pci_legacy)
        av_pci[sizeof(av_pci) / sizeof(av_pci[0]) - 2] =
            "virtio-net-pci,netdev=n0,disable-legacy=off,disable-modern=on,romfile=,mac=" MAC;
    const char *av_mmio[] = {"qemu-system-x86_64", "-machine", "microvm,memory-backend=mem",
                             "-accel", "tcg", "-bios", bios_path, "-display", "none", "-nodefaults", "-m",
                             "128M", "-object", mem_arg, "-netdev", net_arg, "-device",
                             "virtio-net-device,netdev=n0,mac=" MAC, "-global",
                             "virtio-mmio.force-legacy=false", NULL};
    for (unsigned i = 0; legacy && av_mmio[i]; i++)
        if (!strcmp(av_mmio[i], "-global"))
            av_mmio[i] = NULL; /* QEMU's default: legacy virtio-mmio */
    int r = qtest_spawn(pci ? av_pci : av_mmio, dir, err_path, 20000, &qt);
    if (r < 0) {
        char cmdl[300];
        snprintf(cmdl, sizeof(cmdl), "cat %s >&2", err_path);
        if (system(cmdl) != 0) {
        }
    }
    CHECK(r == 0, "qemu did not start: %d", r);
    CHECK(vio_mem_new(0, &mem) == 0, "mem");
    struct vio_mem_region reg = {.guest_addr = 0, .size = RAM_SIZE, .host_ptr = ram};
    CHECK(vio_mem_add(mem, &reg) == 0, "mem add");

    struct vio_driver drv;
    if (pci) {
        /* find the virtio-net function on bus 0 */
        bool found = false;
        for (unsigned slot = 0; slot < 32 && !found; slot++) {
            pci_devfn = slot << 3;
            uint32_t id;
            uint32_t want = (transitional || pci_legacy ? 0x1000u : 0x1041u) << 16 | 0x1af4u;
            if (cfg_read(NULL, 0, 4, &id) == 0 && id == want)
                found = true;
        }
        CHECK(found, "no virtio-net function on bus 0");
        struct vio_pci_driver_config pc = {.struct_size = sizeof(pc), .io = &pci_io,
                                           .bar_window = 0xe0000000u,
                                           .bar_window_size = 0x10000000u, .log = log_fn,
                                           .io_window = 0xc000, .io_window_size = 0x1000};
        CHECK((r = vio_pci_driver_new(&pc, &pd)) == 0, "pci probe %d", r);
        struct vio_pci_driver_info info;
        vio_pci_driver_info(pd, &info);
        fprintf(stderr, "  virtio-net-pci at 00:%02x.0, virtio id %u, %u MSI-X vectors, notify x%u, device cfg %u bytes\n",
                pci_devfn >> 3, info.virtio_id, info.msix_vectors, info.notify_off_multiplier,
                info.device_cfg_len);
        for (unsigned b = 0; b < 6; b++)
            if (info.bar_size[b])
                fprintf(stderr, "  BAR%u at 0x%llx, 0x%llx bytes\n", b,
                        (unsigned long long)info.bar_addr[b], (unsigned long long)info.bar_size[b]);
        CHECK(info.virtio_id == 1 && info.msix_vectors > 0 && info.device_cfg_len >= 8,
              "probe info");
        drv = vio_pci_driver_get(pd);
        CHECK(!!(drv.ops->flags & VIO_DRIVER_LEGACY) == pci_legacy, "legacy flag");
    } else {
        /* the device sits on the last transport; the empty ones read device id 0 */
        int empty = 0;
        for (int i = 31; i >= 0 && !md; i--) {
            mmio_base = 0xfeb00000u + 0x200u * (unsigned)i;
            struct vio_mmio_driver_config mc = {.struct_size = sizeof(mc), .io = &mmio_io,
                                                .log = log_fn};
            r = vio_mmio_driver_new(&mc, &md);
            if (r == -ENODEV)
                empty++;
            else
                CHECK(r == 0, "mmio probe at 0x%llx: %d", (unsigned long long)mmio_base, r);
        }
        CHECK(md && vio_mmio_driver_device_id(md) == 1, "no virtio-net transport");
        CHECK(vio_mmio_driver_version(md) == (legacy ? 1u : 2u), "version %u",
              vio_mmio_driver_version(md));
        fprintf(stderr, "  virtio-net-device at 0x%llx (%d slots without a device or magic)\n",
                (unsigned long long)mmio_base, empty);
        drv = vio_mmio_driver_get(md);
    }
    CHECK(vio_driver_set_queue_vector(&drv, 0, 0) == (pci_legacy ? -EINVAL : pci ? 0 : -ENOTSUP),
          "vector op");
    /* microvm puts the virtio-mmio lines on its second IOAPIC (at 0xfec10000, QOM path
     * /machine/unattached/device[3] in QEMU 7.2) */
    const char *ioapic = pci ? "ioapic" : "/machine/unattached/device[3]";
    bool intercepted = qtest_irq_intercept_in(qt, ioapic) == 0;
    if (!intercepted)
        fprintf(stderr, "  (irq_intercept_in %s refused: interrupt lines not checked)\n", ioapic);
    for (int round = 1; round <= 2; round++)
        if (round_trip(&drv, mem, pci, pd, round) < 0)
            goto out;
    qtest_sync(qt);
    fprintf(stderr, "  IOAPIC raises seen: %u\n", qtest_irq_raises_total(qt));
    if (intercepted)
        CHECK(qtest_irq_raises_total(qt) > 0, "no interrupt line was raised");
out:
    vio_pci_driver_free(pd);
    vio_mmio_driver_free(md);
    qtest_free(qt);
    vio_mem_free(mem);
    if (ram && ram != MAP_FAILED)
        munmap(ram, RAM_SIZE);
    if (net_fd >= 0)
        close(net_fd);
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0) {
    }
    printf("%s: %s\n", argv[1], failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
