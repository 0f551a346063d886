/* SPDX-License-Identifier: MIT */
/*
 * A hostile guest program (runs inside the L2 guest of tests/integration/vmm/nested.sh, built
 * static): it takes the virtio-net PCI function away from its driver and attacks the device
 * through the function's BAR (the sysfs resource file) and through rings in its own memory:
 *
 *   1. tens of thousands of random accesses (1/2/4/8 bytes, random offsets and values) over
 *      the whole virtio BAR and the MSI-X BAR;
 *   2. a well-formed setup whose queue 0 lies outside guest memory, enabled: the device must
 *      set DEVICE_NEEDS_RESET (0x40) in device_status;
 *   3. after a reset, a queue in real guest memory holding a descriptor loop and a descriptor
 *      pointing outside memory, notified: DEVICE_NEEDS_RESET again;
 *
 * then resets the device and gives it back to virtio-pci. The test script then checks that the
 * VMM is alive and the link works again. Prints "HOSTILE-OK ..." lines and exits 0, or
 * "HOSTILE-FAIL why" and exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* virtio-pci modern common configuration (spec 4.1.4.3), offsets */
#define DFSEL 0x00
#define GFSEL 0x08
#define GF 0x0c
#define MSIX_CFG 0x10
#define NUMQ 0x12
#define STATUS 0x14
#define QSEL 0x16
#define QSIZE 0x18
#define QMSIX 0x1a
#define QENABLE 0x1c
#define QNOFF 0x1e
#define QDESC 0x20
#define QAVAIL 0x28
#define QUSED 0x30

static volatile uint8_t *bar;
static size_t bar_len;

static void fail(const char *fmt, const char *arg)
{
    int e = errno;
    printf("HOSTILE-FAIL ");
    printf(fmt, arg);
    printf(" (errno: %s)\n", strerror(e));
    fflush(stdout);
    exit(1);
}

static void w8(size_t o, uint8_t v) { *(volatile uint8_t *)(bar + o) = v; }
static void w16(size_t o, uint16_t v) { *(volatile uint16_t *)(bar + o) = v; }
static void w32(size_t o, uint32_t v) { *(volatile uint32_t *)(bar + o) = v; }
static void w64(size_t o, uint64_t v)
{
    w32(o, (uint32_t)v);
    w32(o + 4, (uint32_t)(v >> 32));
}
static uint8_t r8(size_t o) { return *(volatile uint8_t *)(bar + o); }
static uint16_t r16(size_t o) { return *(volatile uint16_t *)(bar + o); }

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int e = n < 0 ? -errno : 0;
    close(fd);
    return e;
}

static uint64_t virt_to_phys(void *p)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return 0;
    uint64_t e = 0;
    long ps = sysconf(_SC_PAGESIZE);
    off_t off = (off_t)((uintptr_t)p / (uintptr_t)ps) * 8;
    if (pread(fd, &e, 8, off) != 8)
        e = 0;
    close(fd);
    if (!(e & (1ull << 63)))
        return 0;
    return (e & ((1ull << 55) - 1)) * (uint64_t)ps + ((uintptr_t)p % (uintptr_t)ps);
}

static uint32_t rng = 0x12345678;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void reset_dev(void)
{
    w8(STATUS, 0);
    for (int i = 0; i < 1000 && r8(STATUS) != 0; i++)
        usleep(1000);
}

/* ACK, DRIVER, VERSION_1 only, FEATURES_OK; returns the status read back. */
static uint8_t negotiate(void)
{
    reset_dev();
    w8(STATUS, 1);
    w8(STATUS, 3);
    w32(GFSEL, 0);
    w32(GF, 0);
    w32(GFSEL, 1);
    w32(GF, 1); /* VERSION_1 */
    w8(STATUS, 0x0b);
    return r8(STATUS);
}

/* ---- virtio-MMIO (version 2): the window through /dev/mem ------------------------------- */

#define M_STATUS 0x070
#define M_DFSEL 0x014
#define M_GF 0x020
#define M_GFSEL 0x024
#define M_QSEL 0x030
#define M_QNUMMAX 0x034
#define M_QNUM 0x038
#define M_QREADY 0x044
#define M_QNOTIFY 0x050
#define M_DESC 0x080
#define M_AVAIL 0x090
#define M_USED 0x0a0

static volatile uint8_t *mw; /* the MMIO window */

static void m32(size_t o, uint32_t v) { *(volatile uint32_t *)(mw + o) = v; }
static uint32_t rm32(size_t o) { return *(volatile uint32_t *)(mw + o); }
static void m64(size_t o, uint64_t v)
{
    m32(o, (uint32_t)v);
    m32(o + 4, (uint32_t)(v >> 32));
}

static void m_reset(void)
{
    m32(M_STATUS, 0);
    for (int i = 0; i < 1000 && rm32(M_STATUS) != 0; i++)
        usleep(1000);
}

static uint32_t m_negotiate(void)
{
    m_reset();
    m32(M_STATUS, 1);
    m32(M_STATUS, 3);
    m32(M_GFSEL, 0);
    m32(M_GF, 0);
    m32(M_GFSEL, 1);
    m32(M_GF, 1); /* VERSION_1 */
    m32(M_STATUS, 0x0b);
    return rm32(M_STATUS);
}

static int write_file(const char *path, const char *s);
static uint64_t virt_to_phys(void *p);
static uint32_t rnd(void);

static int mmio_main(void)
{
    /* the card: the platform device the DSDT describes (LNRO0005), its window from /proc/iomem */
    const char *devname = "LNRO0005:00";
    uint64_t base = 0, end = 0;
    FILE *f = fopen("/proc/iomem", "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long long a, b;
        if (strstr(line, devname) && sscanf(line, " %llx-%llx", &a, &b) == 2) {
            base = a;
            end = b;
            break;
        }
    }
    if (f)
        fclose(f);
    if (!base)
        fail("%s", "no LNRO0005:00 window in /proc/iomem");
    printf("HOSTILE-OK found %s at %#llx-%#llx\n", devname, (unsigned long long)base,
           (unsigned long long)end);
    if (write_file("/sys/bus/platform/drivers/virtio-mmio/unbind", devname) < 0)
        fail("unbind %s failed", devname);
    printf("HOSTILE-OK unbound %s from virtio-mmio\n", devname);
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0)
        fail("%s", "open /dev/mem");
    size_t len = 0x1000;
    mw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
    if (mw == MAP_FAILED)
        fail("%s", "mmap /dev/mem at the window");
    if (rm32(0) != 0x74726976u)
        fail("%s", "no virtio magic in the window");

    unsigned n = 0;
    for (; n < 30000; n++) {
        unsigned width = 1u << (rnd() % 3);
        size_t off = (rnd() % 0x200) & ~(size_t)(width - 1);
        uint32_t v = rnd();
        if (rnd() % 2) {
            switch (width) {
            case 1: *(volatile uint8_t *)(mw + off) = (uint8_t)v; break;
            case 2: *(volatile uint16_t *)(mw + off) = (uint16_t)v; break;
            default: *(volatile uint32_t *)(mw + off) = v; break;
            }
        } else {
            switch (width) {
            case 1: (void)*(volatile uint8_t *)(mw + off); break;
            case 2: (void)*(volatile uint16_t *)(mw + off); break;
            default: (void)*(volatile uint32_t *)(mw + off); break;
            }
        }
    }
    printf("HOSTILE-OK %u random accesses to the MMIO window\n", n);

    uint32_t st = m_negotiate();
    if (!(st & 0x08))
        fail("%s", "FEATURES_OK not accepted for VERSION_1 alone");
    m32(M_QSEL, 0);
    uint32_t qmax = rm32(M_QNUMMAX);
    m32(M_QNUM, 64);
    m64(M_DESC, 0xfff0000000ull);
    m64(M_AVAIL, 0xfff0001000ull);
    m64(M_USED, 0xfff0002000ull);
    m32(M_QREADY, 1);
    st = rm32(M_STATUS);
    if (!(st & 0x40))
        fail("%s", "enabling a queue outside memory did not set NEEDS_RESET");
    printf("HOSTILE-OK queue outside guest memory: status %#x (NEEDS_RESET), max size %u\n", st,
           qmax);

    uint8_t *mem = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED)
        fail("%s", "mmap ring memory");
    uint64_t pa[3];
    for (int i = 0; i < 3; i++) {
        memset(mem + i * 4096, 0, 4096);
        if (!(pa[i] = virt_to_phys(mem + i * 4096)))
            fail("%s", "no physical address from /proc/self/pagemap");
    }
    m_negotiate();
    m32(M_QSEL, 1);
    m32(M_QNUM, 8);
    m64(M_DESC, pa[0]);
    m64(M_AVAIL, pa[1]);
    m64(M_USED, pa[2]);
    m32(M_QREADY, 1);
    m32(M_STATUS, 0x0f);
    struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; } *dt = (void *)mem;
    dt[0] = (struct desc){ pa[0], 64, 1, 1 };
    dt[1] = (struct desc){ pa[0], 64, 1, 0 };
    dt[2] = (struct desc){ 0xfff000000000ull, 1500, 0, 0 };
    uint16_t *avail = (uint16_t *)(mem + 4096);
    avail[2] = 0;
    avail[3] = 2;
    __atomic_store_n(&avail[1], 2, __ATOMIC_RELEASE);
    m32(M_QNOTIFY, 1);
    for (int i = 0; i < 200 && !(rm32(M_STATUS) & 0x40); i++)
        usleep(5000);
    st = rm32(M_STATUS);
    if (!(st & 0x40))
        fail("%s", "a descriptor loop and a buffer outside memory did not set NEEDS_RESET");
    printf("HOSTILE-OK descriptor loop + buffer outside memory: status %#x (NEEDS_RESET)\n", st);
    m_reset();
    munmap((void *)mw, len);
    close(fd);
    if (write_file("/sys/bus/platform/drivers/virtio-mmio/bind", devname) < 0)
        fail("bind %s back failed", devname);
    printf("HOSTILE-OK %s bound to virtio-mmio again\n", devname);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "mmio") == 0)
        return mmio_main();
    char dev[300] = "";
    DIR *d = opendir("/sys/bus/pci/devices");
    if (!d)
        fail("no %s", "/sys/bus/pci/devices");
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[300], buf[32] = "";
        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/device", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof(buf), f) && strncmp(buf, "0x1041", 6) == 0)
            snprintf(dev, sizeof(dev), "%s", e->d_name);
        fclose(f);
    }
    closedir(d);
    if (!dev[0])
        fail("%s", "no virtio-net PCI function (1af4:1041) found");
    printf("HOSTILE-OK found %s\n", dev);

    char p[400];
    if (write_file("/sys/bus/pci/drivers/virtio-pci/unbind", dev) < 0)
        fail("unbind %s failed", dev);
    snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/enable", dev);
    write_file(p, "1"); /* memory decoding back on */
    printf("HOSTILE-OK unbound %s from virtio-pci\n", dev);

    snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/resource4", dev);
    int fd = open(p, O_RDWR | O_SYNC);
    if (fd < 0)
        fail("open %s", p);
    struct stat sb;
    if (fstat(fd, &sb) < 0 || sb.st_size <= 0)
        fail("size of %s", p);
    bar_len = (size_t)sb.st_size;
    bar = mmap(NULL, bar_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (bar == MAP_FAILED)
        fail("mmap %s", p);
    volatile uint8_t *msix = NULL;
    size_t msix_len = 0;
    snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/resource1", dev);
    int mfd = open(p, O_RDWR | O_SYNC);
    if (mfd >= 0) {
        msix_len = fstat(mfd, &sb) == 0 && sb.st_size > 0 ? (size_t)sb.st_size : 0;
        msix = msix_len ? mmap(NULL, msix_len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0) : MAP_FAILED;
        if (msix == MAP_FAILED)
            msix = NULL;
    }

    /* 1. random accesses over both BARs */
    unsigned n = 0;
    for (; n < 30000; n++) {
        unsigned width = 1u << (rnd() % 4);
        bool to_msix = msix && (rnd() % 4 == 0);
        volatile uint8_t *base = to_msix ? msix : bar;
        size_t len = to_msix ? msix_len : bar_len;
        size_t off = (rnd() % len) & ~(size_t)(width - 1);
        uint64_t v = ((uint64_t)rnd() << 32) | rnd();
        if (rnd() % 2) {
            switch (width) {
            case 1: *(volatile uint8_t *)(base + off) = (uint8_t)v; break;
            case 2: *(volatile uint16_t *)(base + off) = (uint16_t)v; break;
            case 4: *(volatile uint32_t *)(base + off) = (uint32_t)v; break;
            default: *(volatile uint64_t *)(base + off) = v; break;
            }
        } else {
            switch (width) {
            case 1: (void)*(volatile uint8_t *)(base + off); break;
            case 2: (void)*(volatile uint16_t *)(base + off); break;
            case 4: (void)*(volatile uint32_t *)(base + off); break;
            default: (void)*(volatile uint64_t *)(base + off); break;
            }
        }
    }
    printf("HOSTILE-OK %u random accesses to BAR4 (%zu bytes) and BAR1 (%zu bytes)\n", n, bar_len,
           msix_len);

    /* 2. queue 0 outside guest memory */
    uint8_t st = negotiate();
    if (!(st & 0x08))
        fail("%s", "FEATURES_OK not accepted for VERSION_1 alone");
    w16(QSEL, 0);
    uint16_t qmax = r16(QSIZE);
    w16(QSIZE, 64);
    w64(QDESC, 0xfff0000000ull);
    w64(QAVAIL, 0xfff0001000ull);
    w64(QUSED, 0xfff0002000ull);
    w16(QENABLE, 1);
    st = r8(STATUS);
    if (!(st & 0x40))
        fail("status %s after enabling a queue outside memory (no NEEDS_RESET)",
             st & 0x40 ? "" : "without 0x40");
    printf("HOSTILE-OK queue outside guest memory: status %#x (NEEDS_RESET), max size %u\n", st,
           qmax);

    /* 3. rings in guest memory with a descriptor loop and an out-of-memory buffer */
    uint8_t *mem = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED)
        fail("%s", "mmap ring memory");
    uint64_t pa[3];
    for (int i = 0; i < 3; i++) {
        memset(mem + i * 4096, 0, 4096);
        pa[i] = virt_to_phys(mem + i * 4096);
        if (!pa[i])
            fail("%s", "no physical address from /proc/self/pagemap");
    }
    st = negotiate();
    w16(QSEL, 1); /* transmit queue 0: the device reads it */
    w16(QSIZE, 8);
    w64(QDESC, pa[0]);
    w64(QAVAIL, pa[1]);
    w64(QUSED, pa[2]);
    w16(QENABLE, 1);
    uint16_t noff = r16(QNOFF);
    w8(STATUS, 0x0f); /* DRIVER_OK */
    struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; } *dt = (void *)mem;
    dt[0] = (struct desc){ pa[0], 64, 1 /* NEXT */, 1 };
    dt[1] = (struct desc){ pa[0], 64, 1, 0 }; /* loop back to 0 */
    dt[2] = (struct desc){ 0xfff000000000ull, 1500, 0, 0 }; /* outside memory */
    uint16_t *avail = (uint16_t *)(mem + 4096);
    avail[2] = 0;
    avail[3] = 2;
    __atomic_store_n(&avail[1], 2, __ATOMIC_RELEASE);
    /* the notify window: its offset is in the notify capability; the default layout puts it at
     * 0x3000 with a multiplier of 4 (the VMM's) */
    w16(0x3000 + (size_t)noff * 4, 1);
    for (int i = 0; i < 200 && !(r8(STATUS) & 0x40); i++)
        usleep(5000);
    st = r8(STATUS);
    if (!(st & 0x40))
        fail("%s", "a descriptor loop and a buffer outside memory did not set NEEDS_RESET");
    uint16_t *used = (uint16_t *)(mem + 8192);
    printf("HOSTILE-OK descriptor loop + buffer outside memory: status %#x (NEEDS_RESET), used idx %u\n",
           st, used[1]);

    reset_dev();
    munmap((void *)bar, bar_len);
    close(fd);
    if (msix) {
        munmap((void *)msix, msix_len);
        close(mfd);
    }
    if (write_file("/sys/bus/pci/drivers/virtio-pci/bind", dev) < 0)
        fail("bind %s back failed", dev);
    printf("HOSTILE-OK %s bound to virtio-pci again\n", dev);
    return 0;
}
