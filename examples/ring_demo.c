/* SPDX-License-Identifier: MIT */
/*
 * ring_demo: a driver thread and a device thread over one shared split ring.
 *
 * The driver posts requests (a readable message + a writable reply buffer),
 * kicks the device through an eventfd when the ring says so; the device pops
 * each chain, writes the message back upper-cased, pushes it used and
 * interrupts the driver through another eventfd when the ring says so.
 * Uses only the installed public headers.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <virtio/mem.h>
#include <virtio/queue.h>
#include <virtio/status.h>

#define GUEST_BASE 0x100000ull
#define MEM_SIZE (4u << 20)
#define QSIZE 256u
#define MSG_MAX 64u

struct demo {
    uint8_t *ram;
    struct vio_mem *mem;
    struct vio_queue *devq;
    struct vio_drvq *drvq;
    int kick_fd, call_fd;
    unsigned long count;
    int verbose;
    unsigned long kicks, interrupts;
    uint64_t desc, avail, used, buf_base;
};

static uint64_t buf_gpa(const struct demo *d, unsigned slot, int reply)
{
    return d->buf_base + (uint64_t)slot * 2 * MSG_MAX + (reply ? MSG_MAX : 0);
}

static void *gpa_ptr(const struct demo *d, uint64_t gpa)
{
    return d->ram + (gpa - GUEST_BASE);
}

static void wait_fd(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t v;
    if (poll(&p, 1, 1000) > 0 && read(fd, &v, sizeof(v)) < 0)
        perror("read eventfd");
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) < 0)
        perror("write eventfd");
}

/* [ring-device] */
static void *device_thread(void *arg)
{
    struct demo *d = arg;
    struct iovec iov[8];
    struct vio_chain c;
    unsigned long served = 0;
    while (served < d->count) {
        int r = vio_queue_pop(d->devq, &c, iov, 8);
        if (r == -EAGAIN) {
            /* Ask for kicks, then re-check: a buffer may have slipped in. */
            if (vio_queue_enable_notify(d->devq))
                continue;
            wait_fd(d->kick_fd);
            vio_queue_disable_notify(d->devq);
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "device: pop failed: %s\n", strerror(-r));
            return NULL;
        }
        /* iov[0..n_out) readable: the request; then the writable reply. */
        char msg[MSG_MAX] = {0};
        size_t n = 0;
        for (unsigned k = 0; k < c.n_out && n < MSG_MAX - 1; k++) {
            size_t m = iov[k].iov_len < MSG_MAX - 1 - n ? iov[k].iov_len : MSG_MAX - 1 - n;
            memcpy(msg + n, iov[k].iov_base, m);
            n += m;
        }
        uint32_t written = 0;
        if (c.n_in) {
            struct iovec *out = &iov[c.n_out];
            size_t m = n < out->iov_len ? n : out->iov_len;
            for (size_t k = 0; k < m; k++)
                ((char *)out->iov_base)[k] = (char)toupper((unsigned char)msg[k]);
            written = (uint32_t)m;
        }
        vio_queue_push(d->devq, c.head, written);
        if (vio_queue_needs_notify(d->devq)) {
            d->interrupts++;
            signal_fd(d->call_fd);
        }
        served++;
    }
    return NULL;
}
/* [ring-device] */

/* [ring-driver] */
static int run(struct demo *d)
{
    unsigned long sent = 0, done = 0;
    while (done < d->count) {
        /* Fill the ring. */
        while (sent < d->count && vio_drvq_num_free(d->drvq) >= 2) {
            unsigned slot = (unsigned)(sent % QSIZE);
            char *req = gpa_ptr(d, buf_gpa(d, slot, 0));
            int len = snprintf(req, MSG_MAX, "hello virtio #%lu", sent);
            struct vio_sg sg[2] = {
                {buf_gpa(d, slot, 0), (uint32_t)len},
                {buf_gpa(d, slot, 1), MSG_MAX},
            };
            int r = vio_drvq_add(d->drvq, sg, 1, 1, (void *)(uintptr_t)(sent + 1));
            if (r == -ENOSPC)
                break;
            if (r < 0) {
                fprintf(stderr, "driver: add failed: %s\n", strerror(-r));
                return 1;
            }
            sent++;
        }
        if (vio_drvq_kick_prepare(d->drvq)) {
            d->kicks++;
            signal_fd(d->kick_fd);
        }
        /* Collect. */
        void *tok;
        uint32_t len;
        int got = 0;
        while (vio_drvq_get_used(d->drvq, &tok, &len) == 0) {
            unsigned long id = (unsigned long)(uintptr_t)tok - 1;
            const char *reply = gpa_ptr(d, buf_gpa(d, (unsigned)(id % QSIZE), 1));
            if (d->verbose && (id < 3 || id + 1 == d->count))
                printf("  request %-6lu -> device wrote %u bytes: \"%.*s\"\n", id, len, (int)len,
                       reply);
            done++;
            got = 1;
        }
        if (vio_drvq_is_broken(d->drvq)) {
            fprintf(stderr, "driver: queue broken: %s\n",
                    vio_violation_name(vio_drvq_violation(d->drvq)));
            return 1;
        }
        if (!got && done < d->count && sent == done) {
            if (!vio_drvq_enable_cb(d->drvq))
                wait_fd(d->call_fd);
            vio_drvq_disable_cb(d->drvq);
        }
    }
    return 0;
}
/* [ring-driver] */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio-ring-demo [--count N] [--no-event-idx] [--quiet] [--help]\n"
            "Runs a virtio driver side and device side in two threads over one shared\n"
            "split ring and prints what flowed.\n"
            "  --count N        requests to send (default 100000)\n"
            "  --no-event-idx   do not negotiate VIRTIO_F_EVENT_IDX\n"
            "  --quiet          print only the summary\n");
}

int main(int argc, char **argv)
{
    struct demo d = {.count = 100000, .verbose = 1};
    int event_idx = 1;
    static const struct option opts[] = {
        {"count", required_argument, NULL, 'c'},
        {"no-event-idx", no_argument, NULL, 'e'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "c:qh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': {
            char *end;
            errno = 0;
            d.count = strtoul(optarg, &end, 10);
            if (errno || *end || d.count == 0) {
                fprintf(stderr, "vio-ring-demo: --count needs a positive number, got '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'e': event_idx = 0; break;
        case 'q': d.verbose = 0; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "vio-ring-demo: unknown option (try --help)\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vio-ring-demo: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }

    d.ram = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d.ram == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int r = vio_mem_new(0, &d.mem);
    struct vio_mem_region reg = {.guest_addr = GUEST_BASE, .size = MEM_SIZE, .host_ptr = d.ram};
    if (r == 0)
        r = vio_mem_add(d.mem, &reg);
    if (r < 0) {
        fprintf(stderr, "memory map: %s\n", strerror(-r));
        return 1;
    }
    /* [ring-setup] */
    size_t avail_off, used_off;
    size_t ring_bytes = vio_split_ring_layout(QSIZE, 4096, &avail_off, &used_off);
    d.desc = GUEST_BASE;
    d.avail = GUEST_BASE + avail_off;
    d.used = GUEST_BASE + used_off;
    d.buf_base = GUEST_BASE + ((ring_bytes + 4095) & ~4095ull);

    uint64_t features = vio_feature_bit(VIO_F_VERSION_1) |
                        (event_idx ? vio_feature_bit(VIO_F_EVENT_IDX) : 0);
    struct vio_drvq_config dc = {.struct_size = sizeof(dc), .size = QSIZE, .features = features,
                                 .mem = d.mem, .desc = d.desc, .driver = d.avail,
                                 .device = d.used, .name = "driver"};
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = QSIZE, .name = "device",
                                  .log = vio_log_stderr};
    if ((r = vio_drvq_new(&dc, &d.drvq)) < 0 || (r = vio_queue_new(&qc, &d.devq)) < 0 ||
        (r = vio_queue_setup(d.devq, d.mem, QSIZE, features, d.desc, d.avail, d.used)) < 0) {
        fprintf(stderr, "queue setup: %s\n", strerror(-r));
        return 1;
    }
    /* [ring-setup] */
    d.kick_fd = eventfd(0, EFD_CLOEXEC);
    d.call_fd = eventfd(0, EFD_CLOEXEC);
    if (d.kick_fd < 0 || d.call_fd < 0) {
        perror("eventfd");
        return 1;
    }

    printf("libvirtio %s ring demo: %lu requests over a %u-entry split ring (event-idx %s)\n",
           vio_version(), d.count, QSIZE, event_idx ? "on" : "off");
    pthread_t dev;
    if (pthread_create(&dev, NULL, device_thread, &d) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    int rc = run(&d);
    if (rc) {
        /* the device thread may be waiting: let it time out on its own */
        fprintf(stderr, "vio-ring-demo: failed\n");
        return rc;
    }
    pthread_join(dev, NULL);
    printf("done: %lu requests answered, %lu kicks, %lu interrupts (%.3f per request)\n", d.count,
           d.kicks, d.interrupts, (double)(d.kicks + d.interrupts) / (double)d.count);
    vio_queue_free(d.devq);
    vio_drvq_free(d.drvq);
    vio_mem_free(d.mem);
    close(d.kick_fd);
    close(d.call_fd);
    munmap(d.ram, MEM_SIZE);
    return 0;
}
