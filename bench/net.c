/* SPDX-License-Identifier: MIT */
/*
 * bench_net: the virtio-net data path end to end.
 *
 * 1. loopback: driver side -> device model -> loopback backend -> device model -> driver
 *    side, one queue pair, 64-byte and 1500-byte frames, batches of 32, one thread (the
 *    driver's kick runs the device's transmit path, the device's receive path runs as the
 *    event loop would run it on the backend's fd). The driver copies every frame in
 *    (vio_net_driver_send) and out (vio_net_driver_recv) and the loopback backend copies
 *    it once more, as a virtio-user program over a software switch would.
 * 2. tap (root and /dev/net/tun only): the driver side sends UDP datagrams through the device
 *    model and a tap device in a private network namespace (unshare) to a kernel UDP socket
 *    read by a sink thread: 1472-byte datagrams with the checksum computed by the guest (no
 *    offloads), the same with checksum offload (NEEDS_CSUM), and 64 KiB datagrams with UDP
 *    fragmentation offload (GSO_UDP, when the tap accepts it). Throughput is what the socket
 *    received.
 *
 * Each case runs --rounds times for --seconds and reports the median; RESULT lines:
 *   RESULT net/loopback_64 <Mpps> Mpps          RESULT net/loopback_64_gbps <Gbit/s> Gbit/s
 *   RESULT net/loopback_1500 <Gbit/s> Gbit/s    RESULT net/loopback_1500_mpps <Mpps> Mpps
 *   RESULT net/tap_udp_nooffload <Gbit/s> Gbit/s
 *   RESULT net/tap_udp_csum <Gbit/s> Gbit/s     RESULT net/tap_udp_ufo <Gbit/s> Gbit/s
 * (Gbit/s of frame bytes for loopback, of UDP payload delivered for tap). Figures only:
 * the benchmark never fails on a time.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net_guest.h"
#include "net_local.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"

#define FEAT(b) vio_feature_bit(b)
#define BATCH 32u
#define MAX_ROUNDS 31

static const uint8_t MAC[6] = {0x52, 0x54, 0x00, 0xbe, 0x4c, 0x01};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_dbl);
    return n ? (n & 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
}

/* ------------------------------------------------------------------------ */
/* loopback                                                                  */

struct lb_run {
    double mpps, gbps;
    unsigned long frames, bad;
};

static int loopback_once(size_t len, double seconds, struct lb_run *out)
{
    struct vio_net_backend be = {0};
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .ring_frames = 512};
    if (vio_net_loopback_open(&bc, &be) < 0)
        return -1;
    struct net_local nl;
    struct net_local_config c = {
        .be = &be,
        .want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX),
        .queue_size = 256,
    };
    memcpy(c.mac, MAC, 6);
    if (net_local_open(&nl, &c) < 0) {
        vio_net_backend_destroy(&be);
        return -1;
    }
    net_local_refill(&nl);
    static uint8_t frame[1514], got[1514];
    memcpy(frame, MAC, 6);
    memset(frame + 6, 2, 6);
    frame[12] = 0x88;
    frame[13] = 0xb5;
    for (size_t i = 14; i < sizeof(frame); i++)
        frame[i] = (uint8_t)(i * 31);
    const uint32_t rx_watch = VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX);
    unsigned long frames = 0, sent = 0, bad = 0;
    double t0 = 0, end = now_s() + 0.1 + seconds; /* 0.1 s warm-up */
    bool warm = false;
    unsigned long f0 = 0;
    for (;;) {
        double t = now_s();
        if (!warm && t >= end - seconds) {
            warm = true;
            t0 = t;
            f0 = frames;
        }
        if (t >= end)
            break;
        for (unsigned k = 0; k < 64; k++) { /* check the clock every 64 batches */
            for (unsigned i = 0; i < BATCH; i++) {
                memcpy(frame + 14, &sent, sizeof(sent));
                if (vio_net_driver_send(nl.drv, 0, NULL, frame, len) < 0)
                    break;
                sent++;
            }
            vio_net_driver_kick(nl.drv, VIO_NET_DRIVER_TXQ(0));
            /* what the event loop does when the loopback's rx eventfd turns readable */
            vio_device_handle(nl.dev, rx_watch, VIO_WATCH_IN);
            for (;;) {
                ssize_t n = vio_net_driver_recv(nl.drv, 0, NULL, got, sizeof(got));
                if (n == -EAGAIN)
                    break;
                if (n != (ssize_t)len || memcmp(got + 14, &frames, sizeof(frames)) != 0)
                    bad++;
                frames++;
            }
            vio_net_driver_kick(nl.drv, VIO_NET_DRIVER_RXQ(0));
            vio_net_driver_tx_reclaim(nl.drv, 0, NULL, 0);
        }
    }
    double dt = now_s() - t0;
    unsigned long n = frames - f0;
    out->frames = n;
    out->bad = bad;
    out->mpps = (double)n / dt / 1e6;
    out->gbps = (double)n * (double)len * 8 / dt / 1e9;
    net_local_close(&nl);
    vio_net_backend_destroy(&be);
    return 0;
}

static void bench_loopback(double seconds, unsigned rounds)
{
    static const size_t sizes[] = {64, 1500};
    printf("loopback: driver -> device -> loopback -> device -> driver, 1 queue pair, batch %u, "
           "mergeable rx buffers, event idx; %u rounds x %.2f s\n",
           BATCH, rounds, seconds);
    printf("  %6s %10s %10s %12s\n", "frame", "Mpps", "Gbit/s", "frames");
    for (unsigned s = 0; s < 2; s++) {
        double mpps[MAX_ROUNDS], gbps[MAX_ROUNDS];
        unsigned long frames = 0, bad = 0;
        for (unsigned r = 0; r < rounds; r++) {
            struct lb_run run = {0};
            if (loopback_once(sizes[s], seconds, &run) < 0) {
                printf("  loopback setup failed\n");
                return;
            }
            mpps[r] = run.mpps;
            gbps[r] = run.gbps;
            frames += run.frames;
            bad += run.bad;
        }
        double m = median(mpps, rounds), g = median(gbps, rounds);
        printf("  %6zu %10.3f %10.3f %12lu%s\n", sizes[s], m, g, frames,
               bad ? "  (FRAMES WRONG: the data path is broken)" : "");
        if (sizes[s] == 64) {
            printf("RESULT net/loopback_64 %.3f Mpps\n", m);
            printf("RESULT net/loopback_64_gbps %.3f Gbit/s\n", g);
        } else {
            printf("RESULT net/loopback_1500 %.3f Gbit/s\n", g);
            printf("RESULT net/loopback_1500_mpps %.3f Mpps\n", m);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* tap -> kernel UDP sink                                                    */

#define SINK_PORT 9000
#define HOST_IP 0x0a000001u  /* 10.0.0.1 */
#define GUEST_IP 0x0a000002u /* 10.0.0.2 */

struct sink {
    int fd;
    atomic_bool stop;
    _Atomic unsigned long long bytes, dgrams;
    pthread_t thr;
};

static void *sink_main(void *arg)
{
    struct sink *s = arg;
    static uint8_t buf[65536];
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        for (;;) {
            ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0)
                break;
            atomic_fetch_add(&s->bytes, (unsigned long long)n);
            atomic_fetch_add(&s->dgrams, 1);
        }
    }
    return NULL;
}

static int if_config(const char *ifname, uint32_t ip, uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(ip);
    int r = 0;
    if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
        r = -errno;
    sin->sin_addr.s_addr = htonl(0xffffff00u);
    if (!r && ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
        r = -errno;
    if (!r && ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        r = -errno;
    ifr.ifr_flags |= IFF_UP;
    if (!r && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        r = -errno;
    if (!r && mac) {
        if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
            r = -errno;
        else
            memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    }
    close(s);
    return r;
}

enum tap_mode { TAP_PLAIN, TAP_CSUM, TAP_UFO };

struct tap_run {
    double gbps, kpps_tx, kdgrams_rx;
    unsigned long long sent, rx_dgrams;
    bool skipped;
};

static int tap_once(struct vio_net_backend *be, const uint8_t host_mac[6], enum tap_mode mode,
                    double seconds, struct tap_run *out)
{
    static struct guest g;
    memset(&g, 0, sizeof(g));
    g.quiet = true;
    uint64_t want = FEAT(VIO_NET_F_MRG_RXBUF) | FEAT(VIO_F_EVENT_IDX);
    if (mode != TAP_PLAIN)
        want |= FEAT(VIO_NET_F_CSUM);
    if (mode == TAP_UFO)
        want |= FEAT(VIO_NET_F_HOST_UFO);
    if (ng_open(&g, be, want, MAC, GUEST_IP, HOST_IP, 1500) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    if (mode == TAP_UFO && !vio_has_feature(g.nl.features, VIO_NET_F_HOST_UFO)) {
        out->skipped = true;
        ng_close(&g);
        return 0;
    }
    struct vio_net_hdr h;
    size_t payload = mode == TAP_UFO ? 65000 : 1472;
    size_t len = ng_build_udp(&g, g.tx, &h, host_mac, HOST_IP, 40000, SINK_PORT, payload,
                              mode != TAP_PLAIN, mode == TAP_UFO ? VIO_NET_HDR_GSO_UDP : 0,
                              mode == TAP_UFO ? 1480 : 0);

    struct sink sk = {0};
    sk.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int big = 32 << 20;
    setsockopt(sk.fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(SINK_PORT),
                             .sin_addr.s_addr = htonl(HOST_IP)};
    if (bind(sk.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("bench_net: bind sink");
        close(sk.fd);
        ng_close(&g);
        return -1;
    }
    pthread_create(&sk.thr, NULL, sink_main, &sk);

    double end = now_s() + 0.1 + seconds, t0 = 0;
    bool warm = false;
    unsigned long long sent = 0, s0 = 0, b0 = 0, d0 = 0;
    for (;;) {
        double t = now_s();
        if (!warm && t >= end - seconds) {
            warm = true;
            t0 = t;
            s0 = sent;
            b0 = atomic_load(&sk.bytes);
            d0 = atomic_load(&sk.dgrams);
        }
        if (t >= end)
            break;
        for (unsigned i = 0; i < BATCH; i++) {
            if (vio_net_driver_send(g.nl.drv, 0, &h, g.tx, len) < 0)
                break;
            sent++;
        }
        vio_net_driver_kick(g.nl.drv, VIO_NET_DRIVER_TXQ(0));
        ng_pump(&g, 0);
    }
    double dt = now_s() - t0;
    unsigned long long b1 = atomic_load(&sk.bytes), d1 = atomic_load(&sk.dgrams);
    atomic_store(&sk.stop, true);
    pthread_join(sk.thr, NULL);
    close(sk.fd);
    out->sent = sent - s0;
    out->rx_dgrams = d1 - d0;
    out->gbps = (double)(b1 - b0) * 8 / dt / 1e9;
    out->kpps_tx = (double)(sent - s0) / dt / 1e3;
    out->kdgrams_rx = (double)(d1 - d0) / dt / 1e3;
    ng_close(&g);
    return 0;
}

static void bench_tap(double seconds, unsigned rounds)
{
    if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0) {
        printf("tap: skipped (needs root and /dev/net/tun)\n");
        return;
    }
    /* A private network namespace: it disappears with the process, nothing to clean up. */
    if (unshare(CLONE_NEWNET) < 0) {
        printf("tap: skipped (unshare(CLONE_NEWNET): %s)\n", strerror(errno));
        return;
    }
    if_config("lo", 0x7f000001u, NULL);
    struct vio_net_backend be = {0};
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .ifname = "vbench0"};
    int r = vio_net_tap_open(&bc, &be);
    uint8_t host_mac[6];
    if (r == 0)
        r = if_config("vbench0", HOST_IP, host_mac);
    if (r < 0) {
        printf("tap: skipped (tap setup: %s)\n", strerror(-r));
        vio_net_backend_destroy(&be);
        return;
    }
    usleep(200 * 1000); /* let the carrier come up (linkwatch) */
    printf("tap: driver -> device -> tap -> kernel UDP socket (sink thread), private netns, batch "
           "%u; %u rounds x %.2f s; Gbit/s of UDP payload the socket received\n",
           BATCH, rounds, seconds);
    printf("  %-34s %10s %12s %14s\n", "case", "Gbit/s", "kframes/s tx", "kdgrams/s rx");
    static const struct {
        enum tap_mode mode;
        const char *name, *result;
    } cases[] = {
        {TAP_PLAIN, "1472 B datagrams, no offloads", "net/tap_udp_nooffload"},
        {TAP_CSUM, "1472 B datagrams, checksum offload", "net/tap_udp_csum"},
        {TAP_UFO, "64 KiB datagrams, UDP fragmentation", "net/tap_udp_ufo"},
    };
    for (unsigned c = 0; c < 3; c++) {
        double gb[MAX_ROUNDS], tx[MAX_ROUNDS], rx[MAX_ROUNDS];
        bool skipped = false, failed = false;
        for (unsigned k = 0; k < rounds; k++) {
            struct tap_run run;
            if (tap_once(&be, host_mac, cases[c].mode, seconds, &run) < 0) {
                failed = true;
                break;
            }
            if (run.skipped) {
                skipped = true;
                break;
            }
            gb[k] = run.gbps;
            tx[k] = run.kpps_tx;
            rx[k] = run.kdgrams_rx;
        }
        if (failed || skipped) {
            printf("  %-34s %s\n", cases[c].name,
                   failed ? "setup failed" : "n/a (offload not negotiated with the tap)");
            continue;
        }
        double m = median(gb, rounds);
        printf("  %-34s %10.3f %12.1f %14.1f\n", cases[c].name, m, median(tx, rounds),
               median(rx, rounds));
        printf("RESULT %s %.3f Gbit/s\n", cases[c].result, m);
    }
    vio_net_backend_destroy(&be);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_net [--seconds S] [--rounds N] [--only loopback|tap]\n"
               "  --seconds S  measuring time per round (default 0.5)\n"
               "  --rounds N   rounds per case, the median is reported (default 5, max %d)\n"
               "  --only X     run only the loopback or the tap part\n",
            MAX_ROUNDS);
}

int main(int argc, char **argv)
{
    double seconds = 0.5;
    unsigned rounds = 5;
    const char *only = NULL;
    static const struct option lo[] = {
        {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'},
        {"only", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 's': seconds = atof(optarg); break;
        case 'r': rounds = (unsigned)atoi(optarg); break;
        case 'o': only = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (seconds <= 0 || rounds == 0 || rounds > MAX_ROUNDS ||
        (only && strcmp(only, "loopback") && strcmp(only, "tap"))) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench_net: libvirtio %s\n", vio_version());
    if (!only || !strcmp(only, "loopback"))
        bench_loopback(seconds, rounds);
    if (!only || !strcmp(only, "tap"))
        bench_tap(seconds, rounds);
    return 0;
}
