/* SPDX-License-Identifier: MIT */
/*
 * vio-embed-net: a virtio-net device embedded in a program, driven from the same process.
 *
 * This is the skeleton a VMM author copies. It does what a VMM's transport glue does for
 * one virtio-net device, with the public headers only:
 *
 *   1. open a host backend (here the loopback backend: every frame the device transmits
 *      comes back as a received frame; swap in vio_net_tap_open() for a real network);
 *   2. create the virtio-net device model on it;
 *   3. negotiate features, as a transport does at FEATURES_OK;
 *   4. map "guest RAM" into a struct vio_mem;
 *   5. lay out the guest's rings and buffers with the driver-side helper
 *      (struct vio_net_driver), which plays the guest's virtio_net driver;
 *   6. bind the device's out-hooks (used-buffer interrupts, needs-reset, fd watches);
 *   7. create a device-side struct vio_queue on each ring and start it on the device;
 *   8. run: guest kicks reach vio_device_queue_notify(), the backend's fds are polled and
 *      handed to vio_device_handle(), the guest collects what came back;
 *   9. tear down in the reverse order (stop the queues, reset, unbind, free).
 *
 * In a VMM the guest is a real guest: step 5 is the guest kernel's business, a kick is a
 * trapped register write (or an ioeventfd), and notify_queue injects an interrupt (or writes
 * an irqfd). Everything else stays as written here.
 *
 * Build against an installed libvirtio:
 *   cc main.c $(pkg-config --cflags --libs libvirtio) -o vio-embed-net
 * Run: vio-embed-net [--frames N]   (exit 0 only if every frame came back intact)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE under -std=c11 */
#endif
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <virtio/common.h>
#include <virtio/device.h>
#include <virtio/mem.h>
#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/net_driver.h>
#include <virtio/queue.h>
#include <virtio/status.h>

#define GUEST_RAM_BASE 0x40000000ull /* where the example's guest RAM sits in guest-physical space */
#define QUEUE_SIZE 256u
#define WINDOW 128u /* frames in flight at most (the loopback ring holds 256) */
#define MAX_FRAME 1514u

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t peer_mac[6] = {0x52, 0x54, 0x00, 0x65, 0x43, 0x21};

/* Everything one embedded device needs; a VMM keeps this per device. */
struct embed {
    struct vio_net_backend be;   /* the host side of the network */
    struct vio_net_dev *nd;      /* the device model ... */
    struct vio_device *dev;      /* ... seen through the generic device interface */
    uint64_t features;           /* negotiated */
    void *ram;                   /* "guest RAM" */
    size_t ram_size;
    struct vio_mem *mem;         /* guest-physical -> host map of that RAM */
    struct vio_net_driver *drv;  /* the guest's driver (a real guest brings its own) */
    unsigned nq;                 /* queues started: rx0, tx0 */
    struct vio_queue *q[2];      /* device-side queue objects, owned here */
    unsigned long interrupts[2]; /* used-buffer notifications the device raised, per queue */
    bool needs_reset;            /* the device found a queue broken */
};

/* ---- the device's out-hooks: what a transport does when the device asks for it ---- */

/* [embed-hooks] */
static void on_notify_queue(void *opaque, unsigned qidx)
{
    struct embed *e = opaque;
    /* A VMM injects the queue's interrupt here (MSI-X vector, irqfd write). The guest of
     * this example polls, so the interrupt is only counted. */
    if (qidx < 2)
        e->interrupts[qidx]++;
}

static void on_needs_reset(void *opaque)
{
    struct embed *e = opaque;
    /* A VMM sets NEEDS_RESET in the device status (vio_status_set_needs_reset()) and raises
     * a configuration interrupt; the guest then resets the device. */
    e->needs_reset = true;
}

static void on_config_changed(void *opaque)
{
    (void)opaque; /* a VMM raises a configuration interrupt */
}
/* [embed-hooks] */

/* The guest driver's kick. In a VMM this is the guest writing the queue's notify register,
 * which the VMM traps (or an ioeventfd fires); either way it ends in the same call. */
/* [embed-kick] */
static void guest_kick(void *opaque, unsigned qidx)
{
    struct embed *e = opaque;
    int r = vio_device_queue_notify(e->dev, qidx);
    if (r < 0 && r != -EAGAIN && !e->needs_reset)
        fprintf(stderr, "vio-embed-net: notify of queue %u: %s\n", qidx, strerror(-r));
}
/* [embed-kick] */

static int fail(const char *what, int r)
{
    fprintf(stderr, "vio-embed-net: %s: %s\n", what, strerror(r < 0 ? -r : r));
    return r < 0 ? r : -r;
}

/* Steps 1-7: bring the device up. 0 or -errno (a message on stderr); embed_close() undoes a
 * partial open. */
static int embed_open(struct embed *e)
{
    int r;

    /* [embed-backend] */
    struct vio_net_backend_config bc = {
        .struct_size = sizeof(bc),
        .queue_pairs = 1,
        .log = vio_log_stderr,
    };
    r = vio_net_loopback_open(&bc, &e->be); /* or vio_net_tap_open(), vio_net_packet_open() */
    if (r < 0)
        return fail("vio_net_loopback_open", r);
    /* [embed-backend] */

    /* [embed-device] */
    struct vio_net_dev_config dc = {
        .struct_size = sizeof(dc),
        .backend = &e->be,
        .mac_valid = true,
        .max_queue_pairs = 1,
        .queue_size = QUEUE_SIZE,
        /* the example's guest has no control queue: do not offer one */
        .features_off = vio_feature_bit(VIO_NET_F_CTRL_VQ),
        .log = vio_log_stderr,
    };
    memcpy(dc.mac, guest_mac, sizeof(dc.mac));
    r = vio_net_dev_new(&dc, &e->nd);
    if (r < 0)
        return fail("vio_net_dev_new", r);
    e->dev = vio_net_dev_device(e->nd);
    /* [embed-device] */

    /* [embed-negotiate] */
    /* What the device offers AND what the guest accepts. A VMM gets the guest's half from
     * the transport (the driver's feature writes) and calls vio_device_set_features() at
     * FEATURES_OK, usually from the vio_status_config::validate hook. */
    uint64_t guest_wants = vio_feature_bit(VIO_F_VERSION_1) | vio_feature_bit(VIO_F_EVENT_IDX) |
                           vio_feature_bit(VIO_NET_F_MRG_RXBUF) | vio_feature_bit(VIO_NET_F_MAC);
    e->features = vio_device_features(e->dev) & guest_wants;
    r = vio_device_set_features(e->dev, e->features);
    if (r < 0)
        return fail("vio_device_set_features (refused)", r);
    /* [embed-negotiate] */

    /* [embed-guest] */
    struct vio_net_driver_config nc = {
        .struct_size = sizeof(nc),
        .features = e->features,
        .queue_pairs = 1,
        .queue_size = QUEUE_SIZE,
        .notify = guest_kick,
        .notify_opaque = e,
        .log = vio_log_stderr,
    };
    uint64_t need = vio_net_driver_area_size(&nc);
    if (need == 0)
        return fail("vio_net_driver_area_size", -EINVAL);
    e->ram_size = (size_t)((need + 0xfffff) & ~0xfffffull);
    e->ram = mmap(NULL, e->ram_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (e->ram == MAP_FAILED) {
        e->ram = NULL;
        return fail("mmap guest RAM", -ENOMEM);
    }
    struct vio_mem_region region = {
        .guest_addr = GUEST_RAM_BASE,
        .size = e->ram_size,
        .host_ptr = e->ram,
    };
    r = vio_mem_new(0, &e->mem);
    if (r == 0)
        r = vio_mem_add(e->mem, &region);
    if (r < 0)
        return fail("guest memory map", r);
    nc.mem = e->mem;
    nc.area = GUEST_RAM_BASE;
    nc.area_size = e->ram_size;
    r = vio_net_driver_new(&nc, &e->drv);
    if (r < 0)
        return fail("vio_net_driver_new", r);
    /* [embed-guest] */

    /* [embed-bind] */
    struct vio_device_hooks hooks = {
        .struct_size = sizeof(hooks),
        .opaque = e,
        .notify_queue = on_notify_queue,
        .config_changed = on_config_changed,
        .needs_reset = on_needs_reset,
        /* no set_watch: this loop asks vio_device_watches() before every poll() */
    };
    r = vio_device_bind(e->dev, &hooks);
    if (r < 0)
        return fail("vio_device_bind", r);
    /* [embed-bind] */

    /* [embed-queues] */
    /* rx0 and tx0. The guest says where each ring is (here: the driver helper; in a VMM:
     * the queue_desc / queue_driver / queue_device registers it wrote). */
    e->nq = 2;
    for (unsigned i = 0; i < e->nq; i++) {
        struct vio_device_queue_info qi;
        struct vio_net_driver_queue_addr qa;
        r = vio_device_queue_info(e->dev, i, &qi); /* direction and size limit */
        if (r < 0)
            return fail("vio_device_queue_info", r);
        r = vio_net_driver_queue_addr(e->drv, i, &qa);
        if (r < 0)
            return fail("vio_net_driver_queue_addr", r);
        struct vio_queue_config qc = {
            .struct_size = sizeof(qc),
            .max_size = qi.max_size,
            .index = (uint16_t)i,
            .name = qi.name,
            .dir = qi.dir,
            .log = vio_log_stderr,
        };
        r = vio_queue_new(&qc, &e->q[i]);
        if (r == 0)
            r = vio_queue_setup(e->q[i], e->mem, qa.size, e->features, qa.desc, qa.driver,
                                qa.device);
        if (r == 0)
            r = vio_device_queue_start(e->dev, i, e->q[i]);
        if (r < 0)
            return fail("queue setup / start", r);
    }
    /* [embed-queues] */
    return 0;
}

/* Step 9: reverse order. Safe on a partly opened (zeroed) struct embed. */
static void embed_close(struct embed *e)
{
    /* [embed-close] */
    if (e->dev) {
        for (unsigned i = 0; i < e->nq; i++)
            vio_device_queue_stop(e->dev, i);
        vio_device_reset(e->dev);
        vio_device_bind(e->dev, NULL); /* unbind: the device is free for another transport */
    }
    for (unsigned i = 0; i < 2; i++)
        vio_queue_free(e->q[i]);
    vio_net_driver_free(e->drv);
    vio_net_dev_free(e->nd);
    vio_mem_free(e->mem);
    if (e->ram)
        munmap(e->ram, e->ram_size);
    if (e->be.ops)
        vio_net_backend_destroy(&e->be);
    /* [embed-close] */
    memset(e, 0, sizeof(*e));
}

/* The device's half of the event loop: wait for the fds the device wants watched (the
 * backend's receive fd, its transmit fd under backpressure) and hand them to the device.
 * Returns the number of fds handled, or -errno. */
/* [embed-poll] */
static int device_poll(struct embed *e, int timeout_ms)
{
    struct vio_device_watch w[8];
    struct pollfd pfd[8];
    int n = vio_device_watches(e->dev, w, 8);
    if (n < 0)
        return n;
    if (n > 8)
        n = 8;
    for (int i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = w[i].fd, .events = (short)w[i].events};
    if (poll(pfd, (nfds_t)n, timeout_ms) < 0)
        return errno == EINTR ? 0 : -errno;
    int handled = 0;
    for (int i = 0; i < n; i++) {
        if (pfd[i].revents) {
            vio_device_handle(e->dev, w[i].id, (unsigned)pfd[i].revents);
            handled++;
        }
    }
    return handled;
}
/* [embed-poll] */

/* Frame number seq: to the guest's MAC from a peer, a local-experimental EtherType, the
 * sequence number, then a pattern that depends on it. 60..MAX_FRAME bytes. */
static size_t make_frame(uint8_t *f, uint32_t seq)
{
    size_t len = 60 + (size_t)(seq * 2654435761u % (MAX_FRAME - 60 + 1));
    memcpy(f, guest_mac, 6);
    memcpy(f + 6, peer_mac, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    memcpy(f + 14, &seq, sizeof(seq));
    for (size_t i = 18; i < len; i++)
        f[i] = (uint8_t)(seq * 31u + i * 7u);
    return len;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Step 8: the guest sends `frames` frames; the loopback backend turns each into a received
 * frame; the guest checks every one. Returns the number of frames that came back intact. */
static unsigned long run(struct embed *e, unsigned long frames)
{
    static uint8_t tx[MAX_FRAME], rx[MAX_FRAME], want[MAX_FRAME];
    unsigned long sent = 0, got = 0, intact = 0;
    uint64_t deadline = now_ms() + 30000;

    /* [embed-run] */
    vio_net_driver_rx_fill(e->drv, 0); /* the guest posts its receive buffers ... */
    vio_net_driver_kick(e->drv, VIO_NET_DRIVER_RXQ(0)); /* ... and tells the device */
    while (got < frames && !e->needs_reset && now_ms() < deadline) {
        /* guest: queue a batch, then one kick (the device may say it does not need one) */
        while (sent < frames && sent - got < WINDOW) {
            size_t len = make_frame(tx, (uint32_t)sent);
            if (vio_net_driver_send(e->drv, 0, NULL, tx, len) < 0)
                break; /* -ENOSPC: no free transmit buffer until the device returns some */
            sent++;
        }
        vio_net_driver_kick(e->drv, VIO_NET_DRIVER_TXQ(0));

        /* device: wait for the backend and deliver what it received into the guest's buffers */
        if (device_poll(e, 100) < 0)
            break;

        /* guest: collect received frames (their buffers are posted again), then completed
         * transmissions */
        for (;;) {
            struct vio_net_hdr hdr;
            ssize_t n = vio_net_driver_recv(e->drv, 0, &hdr, rx, sizeof(rx));
            if (n == -EAGAIN)
                break;
            if (n >= 0) {
                size_t wlen = make_frame(want, (uint32_t)got);
                if ((size_t)n == wlen && memcmp(rx, want, wlen) == 0)
                    intact++;
            } else if (n == -EIO) {
                break; /* the device broke the receive ring */
            }
            got++;
        }
        vio_net_driver_kick(e->drv, VIO_NET_DRIVER_RXQ(0));
        vio_net_driver_tx_reclaim(e->drv, 0, NULL, 0);
    }
    /* [embed-run] */
    if (got < frames)
        fprintf(stderr, "vio-embed-net: %lu of %lu frames came back%s\n", got, frames,
                e->needs_reset ? " (the device asked for a reset)" : "");
    return intact;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vio-embed-net [--frames N]\n"
            "\n"
            "An in-process virtio-net device (libvirtio's device model on its loopback\n"
            "backend) driven by libvirtio's driver-side helper in the same process: the\n"
            "guest sends N frames (default 1000) of 60..%u bytes, the backend loops them back\n"
            "and the guest checks each one. Exit status 0 only if all N came back intact.\n"
            "The source is a starting point for embedding the device in a VMM.\n"
            "\n"
            "  -n, --frames N   frames to send (1..100000000)\n"
            "  -h, --help       this text\n",
            MAX_FRAME);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"frames", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long frames = 1000;
    int c;
    while ((c = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            errno = 0;
            frames = strtoul(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-' || frames == 0 || frames > 100000000ul) {
                fprintf(stderr, "vio-embed-net: --frames wants 1..100000000, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vio-embed-net: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct embed e;
    memset(&e, 0, sizeof(e));
    if (embed_open(&e) < 0) {
        embed_close(&e);
        return 1;
    }
    unsigned long intact = run(&e, frames);
    struct vio_net_driver_stats st = {0};
    vio_net_driver_get_stats(e.drv, 0, &st);
    printf("vio-embed-net: libvirtio %s, features 0x%llx\n", vio_version(),
           (unsigned long long)e.features);
    printf("vio-embed-net: %llu frames sent, %llu received, %lu of %lu verified intact "
           "(%lu rx / %lu tx interrupts raised)\n",
           (unsigned long long)st.tx_frames, (unsigned long long)st.rx_frames, intact, frames, e.interrupts[0],
           e.interrupts[1]);
    bool ok = intact == frames && !e.needs_reset;
    embed_close(&e);
    return ok ? 0 : 1;
}
