/* SPDX-License-Identifier: MIT */
/*
 * The offload device on Linux vhost-net, run inside a QEMU guest (offload_vhost_net.sh; the
 * build machines have no /dev/vhost-net). One static program plays three roles:
 *
 *   front-end (vu_frontend.c: rings and buffers in a memfd, virtio-net driver side)
 *     -- socketpair, vhost-user -->  our vhost-user back-end transport (a thread)
 *        whose device is the offload device on /dev/vhost-net (vio_vhost_kernel_open())
 *        with a tap (vtap0, 10.9.0.1/24 in the guest kernel) attached by NET_SET_BACKEND;
 *        the virtio-net model keeps the config space.
 *
 * The kernel's vhost worker moves frames between the front-end's rings and the tap. The
 * front-end sends an ARP request and an ICMP echo request for 10.9.0.1; the guest kernel
 * answers both through the tap, and the answers must come back on the receive ring intact.
 * Then: the transport's queue objects never moved (avail 0, used 0) while the shared rings
 * did, the tap's counters saw the frames, and a ring outside memory is refused by the kernel
 * through the same path without a crash (not tested here: see check_vhost_dev).
 * Prints PASS / FAIL lines; on failure writes the reason to /run/vio-reason.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/vhost.h>
#include <virtio/vhost_dev.h>
#include <virtio/vhost_user.h>

#include "vu_frontend.h"

static int fails;
static char reason[512];

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            printf("FAIL: " __VA_ARGS__);                                                        \
            printf("\n");                                                                        \
            if (!fails)                                                                          \
                snprintf(reason, sizeof(reason), __VA_ARGS__);                                   \
            fails++;                                                                             \
        }                                                                                        \
    } while (0)

static void log_cb(void *o, int level, const char *obj, const char *msg)
{
    (void)o;
    if (level <= VIO_LOG_INFO)
        printf("  [%s] %s\n", obj, msg);
}

static struct vio_vhost_user *g_vu;
static atomic_bool g_stop;

static void *transport_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stop)) {
        struct vio_device_watch w[16];
        struct pollfd p[16];
        int n = vio_vhost_user_watches(g_vu, w, 16);
        if (n > 16)
            n = 16;
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = w[i].fd, .events = (short)w[i].events};
        if (poll(p, (nfds_t)n, 20) <= 0)
            continue;
        for (int i = 0; i < n; i++)
            if (p[i].revents) {
                vio_vhost_user_dispatch(g_vu, w[i].id, (unsigned)p[i].revents);
                break; /* the watch set may have changed */
            }
    }
    return NULL;
}

static uint16_t csum(const void *data, size_t len)
{
    const uint8_t *b = data;
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)(b[i] << 8 | b[i + 1]);
    if (len & 1)
        s += (uint32_t)(b[len - 1] << 8);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static const uint8_t MY_MAC[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
static const uint8_t MY_IP[4] = {10, 9, 0, 2}, PEER_IP[4] = {10, 9, 0, 1};

/* Wait for a frame of @p ethertype addressed to us, on any pair (the multi-queue tap picks
 * the queue); returns its length or -1. */
static ssize_t wait_frame(struct vufe *f, unsigned pairs, uint16_t ethertype, uint8_t *buf,
                          size_t cap, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 5) {
        for (unsigned qp = 0; qp < pairs; qp++) {
            for (;;) {
                ssize_t r = vio_net_driver_recv(f->drv, qp, NULL, buf, cap);
                if (r == -EAGAIN)
                    break;
                if (r < 0)
                    return -1;
                vio_net_driver_kick(f->drv, VIO_NET_DRIVER_RXQ(qp));
                if (r >= 14 && !memcmp(buf, MY_MAC, 6) && (buf[12] << 8 | buf[13]) == ethertype)
                    return r;
            }
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static long sysfs_counter(const char *ifname, const char *what)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, what);
    FILE *fp = fopen(path, "r");
    long v = -1;
    if (fp) {
        if (fscanf(fp, "%ld", &v) != 1)
            v = -1;
        fclose(fp);
    }
    return v;
}

/* One run with @p pairs queue pairs: one /dev/vhost-net fd and one tap queue per pair. */
static void run(unsigned pairs)
{
    printf("--- %u queue pair(s)\n", pairs);
    int rc;
    atomic_store(&g_stop, false);
    /* the tap the kernel's vhost worker moves frames to, with an address the kernel answers */
    struct vio_net_backend tap = {0};
    struct vio_net_backend_config tc = {.struct_size = sizeof(tc), .ifname = "vtap0",
                                        .queue_pairs = pairs, .log = log_cb};
    struct vio_vhost *vh[2] = {NULL, NULL};
    int tapfd[2] = {-1, -1};
    rc = vio_net_tap_open(&tc, &tap);
    CHECK(rc == 0, "tap open: %s", strerror(-rc));
    if (rc < 0)
        return;
    for (unsigned i = 0; i < pairs; i++) {
        tapfd[i] = vio_net_tap_vhost_fd(&tap, i, 12);
        CHECK(tapfd[i] >= 0, "tap vhost fd %u: %s", i, strerror(-tapfd[i]));
    }
    if (system("ip addr add 10.9.0.1/24 dev vtap0 && ip link set vtap0 up") != 0)
        CHECK(0, "cannot configure vtap0");

    for (unsigned i = 0; i < pairs; i++) {
        struct vio_vhost_kernel_config kc = {.struct_size = sizeof(kc), .fd = -1,
                                             .log = log_cb};
        rc = vio_vhost_kernel_open(&kc, &vh[i]);
        CHECK(rc == 0, "open /dev/vhost-net: %s", strerror(-rc));
        if (rc < 0)
            goto out;
    }

    struct vio_net_backend lb = {0};
    struct vio_net_backend_config lc = {.struct_size = sizeof(lc), .queue_pairs = pairs};
    struct vio_net_dev *model = NULL;
    rc = vio_net_loopback_open(&lc, &lb);
    if (rc == 0) {
        struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &lb,
                                        .mac = {0x52, 0x54, 0, 0, 0, 2}, .mac_valid = true,
                                        .max_queue_pairs = (uint16_t)pairs, .log = log_cb};
        rc = vio_net_dev_new(&nc, &model);
    }
    CHECK(rc == 0, "model: %s", strerror(-rc));
    struct vio_vhost_dev *vd = NULL;
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhost = vh[0],
                                      .model = vio_net_dev_device(model),
                                      .net_backend_fd = tapfd[0], .log = log_cb};
    if (pairs > 1) {
        dc.vhosts = vh;
        dc.num_vhosts = pairs;
        dc.net_backend_fds = tapfd;
    }
    rc = vio_vhost_dev_new(&dc, &vd);
    CHECK(rc == 0, "offload device: %s", strerror(-rc));
    if (rc < 0)
        goto out;
    uint64_t offer = vio_device_features(vio_vhost_dev_device(vd));
    printf("offload device offers 0x%llx\n", (unsigned long long)offer);
    CHECK(offer & (1ull << VIO_NET_F_MAC), "MAC (the model's) not offered");
    CHECK(offer & (1ull << VIO_NET_F_MRG_RXBUF), "MRG_RXBUF (vhost-net's) not offered");
    CHECK(!(offer & (1ull << VIO_NET_F_CSUM)), "CSUM offered, vhost-net lacks it");

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        CHECK(0, "socketpair");
    struct vio_vhost_user_config uc = {.struct_size = sizeof(uc), .use_fd = true, .fd = sv[0],
                                       .dev = vio_vhost_dev_device(vd), .log = log_cb};
    rc = vio_vhost_user_new(&uc, &g_vu);
    CHECK(rc == 0, "transport: %s", strerror(-rc));
    if (rc < 0)
        goto out;
    pthread_t th;
    pthread_create(&th, NULL, transport_thread, NULL);

    struct vufe f;
    rc = vufe_open(&f, NULL, sv[1]);
    struct vufe_config fc = {.queue_pairs = pairs, .queue_size = 256, .reply_ack = true};
    if (rc == 0)
        rc = vufe_setup(&f, &fc);
    CHECK(rc == 0, "front-end set-up: %s (%s)", strerror(-rc), f.err);
    if (rc < 0) {
        atomic_store(&g_stop, true);
        pthread_join(th, NULL);
        goto out;
    }
    printf("front-end negotiated 0x%llx\n", (unsigned long long)f.features);
    if (pairs > 1)
        CHECK(f.features & (1ull << VIO_NET_F_MQ), "MQ (the model's, one vhost-net per pair) "
              "not negotiated");
    for (unsigned qp = 0; qp < pairs; qp++) {
        vio_net_driver_rx_fill(f.drv, qp);
        vio_net_driver_kick(f.drv, VIO_NET_DRIVER_RXQ(qp));
    }

    /* ARP: who has 10.9.0.1? */
    uint8_t fr[128] = {0}, got[2048];
    memset(fr, 0xff, 6);
    memcpy(fr + 6, MY_MAC, 6);
    fr[12] = 0x08, fr[13] = 0x06;
    const uint8_t arp_hdr[8] = {0, 1, 8, 0, 6, 4, 0, 1};
    memcpy(fr + 14, arp_hdr, 8);
    memcpy(fr + 22, MY_MAC, 6);
    memcpy(fr + 28, MY_IP, 4);
    memcpy(fr + 38, PEER_IP, 4);
    rc = vio_net_driver_send(f.drv, 0, NULL, fr, 60);
    vio_net_driver_kick(f.drv, VIO_NET_DRIVER_TXQ(0));
    ssize_t n = wait_frame(&f, pairs, 0x0806, got, sizeof(got), 5000);
    CHECK(n >= 42 && got[21] == 2 && !memcmp(got + 28, PEER_IP, 4) && !memcmp(got + 38, MY_IP, 4),
          "no ARP reply from 10.9.0.1 through vhost-net (%zd)", n);
    uint8_t peer_mac[6];
    memcpy(peer_mac, got + 22, 6);
    if (n > 0)
        printf("ARP reply: 10.9.0.1 is at %02x:%02x:%02x:%02x:%02x:%02x\n", peer_mac[0],
               peer_mac[1], peer_mac[2], peer_mac[3], peer_mac[4], peer_mac[5]);

    /* ICMP echo with a 1000-byte pattern */
    size_t plen = 1000, ilen = 8 + plen, iplen = 20 + ilen;
    uint8_t *p = fr;
    uint8_t big[1600] = {0};
    p = big;
    memcpy(p, peer_mac, 6);
    memcpy(p + 6, MY_MAC, 6);
    p[12] = 0x08, p[13] = 0x00;
    uint8_t *ip = p + 14;
    ip[0] = 0x45, ip[2] = (uint8_t)(iplen >> 8), ip[3] = (uint8_t)iplen, ip[8] = 64, ip[9] = 1;
    memcpy(ip + 12, MY_IP, 4);
    memcpy(ip + 16, PEER_IP, 4);
    uint16_t c = csum(ip, 20);
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    uint8_t *ic = ip + 20;
    ic[0] = 8, ic[4] = 0x12, ic[5] = 0x34, ic[7] = 1;
    for (size_t i = 0; i < plen; i++)
        ic[8 + i] = (uint8_t)(i * 31 + 7);
    c = csum(ic, ilen);
    ic[2] = (uint8_t)(c >> 8), ic[3] = (uint8_t)c;
    unsigned txp = pairs - 1; /* with two pairs, the echo request leaves on tx1 */
    rc = vio_net_driver_send(f.drv, txp, NULL, big, 14 + iplen);
    vio_net_driver_kick(f.drv, VIO_NET_DRIVER_TXQ(txp));
    n = wait_frame(&f, pairs, 0x0800, got, sizeof(got), 5000);
    bool echo = n == (ssize_t)(14 + iplen) && got[14 + 9] == 1 && got[34] == 0 &&
                !memcmp(got + 34 + 4, ic + 4, 4) && !memcmp(got + 34 + 8, ic + 8, plen);
    CHECK(echo, "no intact ICMP echo reply through vhost-net (%zd bytes)", n);
    if (echo)
        printf("ICMP echo reply: %zu bytes of payload intact\n", plen);
    for (unsigned qp = 0; qp < pairs; qp++)
        vio_net_driver_tx_reclaim(f.drv, qp, NULL, 0);

    long tap_rx = sysfs_counter("vtap0", "rx_packets"), tap_tx = sysfs_counter("vtap0", "tx_packets");
    printf("vtap0: rx_packets=%ld tx_packets=%ld\n", tap_rx, tap_tx);
    CHECK(tap_rx >= 2 && tap_tx >= 2, "the tap did not carry the frames");

    /* the transport never ran the rings: stop its thread, then read its queue objects */
    atomic_store(&g_stop, true);
    pthread_join(th, NULL);
    unsigned tx_used = 0, rx_used = 0;
    for (unsigned q = 0; q < 2 * pairs; q++) {
        struct vio_vhost_user_queue_state qs;
        struct vio_queue_ring_state rs;
        vio_vhost_user_queue_state(g_vu, q, &qs);
        rc = vio_vhost_user_ring_state(g_vu, q, &rs);
        printf("ring q=%u offloaded=%d transport_last_avail=%u transport_used=%u "
               "ring_avail_idx=%u ring_used_idx=%u\n",
               q, qs.offloaded, rs.last_avail, rs.used_idx, rs.avail_idx, rs.ring_used_idx);
        CHECK(rc == 0 && qs.offloaded, "queue %u not offloaded", q);
        CHECK(rs.last_avail == 0 && rs.used_idx == 0 && rs.inflight == 0,
              "queue %u: the transport took chains", q);
        if (q & 1)
            tx_used += rs.ring_used_idx;
        else
            rx_used += rs.ring_used_idx;
        if (q & 1) /* each transmit ring sent something: ARP on tx0, the echo on the last */
            CHECK(rs.ring_used_idx >= 1, "tx queue %u: the kernel completed %u chains", q,
                  rs.ring_used_idx);
    }
    CHECK(tx_used >= 2 && rx_used >= 2, "the kernel completed %u tx / %u rx chains", tx_used,
          rx_used);
    struct vio_vhost_dev_stats st;
    vio_vhost_dev_get_stats(vd, &st);
    CHECK(st.errors == 0 && st.rings_started >= 2 * pairs && st.mem_tables == pairs,
          "offload counters: errors %llu started %llu tables %llu",
          (unsigned long long)st.errors, (unsigned long long)st.rings_started,
          (unsigned long long)st.mem_tables);
    vufe_close(&f);
    for (int i = 0; i < 20; i++) /* the session ends: rings stop through GET_VRING_BASE */
        if (vio_vhost_user_handle(g_vu) < 0)
            break;
    vio_vhost_dev_get_stats(vd, &st);
    CHECK(st.rings_stopped >= 2 * pairs && st.errors == 0,
          "rings not stopped cleanly (%llu, errors %llu)",
          (unsigned long long)st.rings_stopped, (unsigned long long)st.errors);
    vio_vhost_user_free(g_vu);
    vio_vhost_dev_free(vd);
    vio_net_dev_free(model);
    vio_net_backend_destroy(&lb);
out:
    for (unsigned i = 0; i < 2; i++)
        vio_vhost_free(vh[i]);
    vio_net_backend_destroy(&tap);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    run(1);
    if (!fails)
        run(2);
    if (fails) {
        FILE *r = fopen("/run/vio-reason", "w");
        if (r) {
            fprintf(r, "%s\n", reason);
            fclose(r);
        }
        printf("FAIL\n");
        return 1;
    }
    printf("PASS: vhost-net ran the offloaded rings (ARP and ICMP answered by the guest kernel, "
           "1 and 2 queue pairs)\n");
    return 0;
}
