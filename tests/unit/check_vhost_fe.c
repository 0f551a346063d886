/* SPDX-License-Identifier: MIT */
/*
 * vhost-user frontend (src/transport/vhost_user_fe.c) and the driver adapter
 * (src/transport/vhost_driver.c).
 *
 * Two peers:
 * - our own vhost-user BACKEND (vio_vhost_user over a virtio-net device on the loopback
 *   backend), run by a thread that polls its watches: the frontend negotiates, hands it
 *   memfd guest memory, and vio_net_driver over the adapter sends frames that come back;
 * - a HOSTILE fake backend: a thread on a raw unix socket that speaks the wire format by
 *   hand and breaks one rule per case (wrong sizes, codes, flags, fds, values, a close in
 *   the middle of a reply, silence). Each case must give the documented errno, drop the
 *   connection where the reply cannot be trusted, and leak no fd.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "transport/vhost_internal.h"
#include "transport/vhost_user_msg.h"
#include "virtio/device.h"
#include "virtio/mem.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_driver.h"
#include "virtio/status.h"
#include "virtio/vhost.h"
#include "virtio/vhost_user.h"

#define MEM_SIZE (4u << 20)
#define GPA_BASE 0x40000000ull
#define QSZ 64u
#define TIMEOUT_MS 3000

/* ------------------------------------------------------------------------ */
/* Log capture, fds, paths                                                   */

static atomic_int n_errors;
static char last_error[256];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void test_log(void *opaque, int level, const char *object, const char *msg)
{
    (void)opaque;
    if (level == VIO_LOG_ERROR) {
        atomic_fetch_add(&n_errors, 1);
        pthread_mutex_lock(&log_lock); /* both peers log, from their own threads */
        snprintf(last_error, sizeof(last_error), "%s: %s", object, msg);
        pthread_mutex_unlock(&log_lock);
    }
    if (getenv("VIO_TEST_VERBOSE"))
        fprintf(stderr, "[%d] %s: %s\n", level, object, msg);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static char tmpdir[64];
static char sock_path[128];

static void mkpath(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vio-fe-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(sock_path, sizeof(sock_path), "%s/sock", tmpdir);
}

static void rmpath(void)
{
    unlink(sock_path);
    rmdir(tmpdir);
}

static int ev_count[4];

static void on_event(void *opaque, enum vio_vhost_event ev)
{
    (void)opaque;
    if ((unsigned)ev < 4)
        ev_count[ev]++;
}

static struct vio_vhost_user_frontend_config fe_cfg(bool server)
{
    return (struct vio_vhost_user_frontend_config){
        .struct_size = sizeof(struct vio_vhost_user_frontend_config), .path = sock_path,
        .server = server, .timeout_ms = TIMEOUT_MS, .event = on_event, .log = test_log};
}

/* ------------------------------------------------------------------------ */
/* Our backend, served by a thread                                           */

struct be {
    struct vio_net_backend nb;
    struct vio_net_dev *nd;
    struct vio_vhost_user *vu;
    pthread_t th;
    atomic_bool stop;
    bool running;
};

static void *be_thread(void *arg)
{
    struct be *b = arg;
    while (!atomic_load(&b->stop)) {
        struct vio_device_watch w[32];
        int n = vio_vhost_user_watches(b->vu, w, 32);
        if (n > 32)
            n = 32;
        struct pollfd p[32];
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = w[i].fd, .events = (short)w[i].events};
        int t = vio_vhost_user_timeout_ms(b->vu);
        if (t < 0 || t > 5)
            t = 5;
        int k = poll(p, (nfds_t)(n < 0 ? 0 : n), t);
        vio_vhost_user_tick(b->vu);
        for (int i = 0; k > 0 && i < n; i++)
            if (p[i].revents)
                vio_vhost_user_dispatch(b->vu, w[i].id, (unsigned)p[i].revents);
    }
    return NULL;
}

/* A backend at sock_path: a server (the frontend connects) or a client that keeps trying
 * to connect to a frontend listening there. */
static void be_start(struct be *b, bool client)
{
    memset(b, 0, sizeof(*b));
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 1};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &b->nb), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &b->nb, .queue_size = 256,
                                    .mac = {2, 0, 0, 0, 0, 1}, .mac_valid = true,
                                    .log = test_log};
    ck_assert_int_eq(vio_net_dev_new(&nc, &b->nd), 0);
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .socket_path = sock_path,
                                      .client = client, .reconnect_ms = client ? 10 : 0,
                                      .dev = vio_net_dev_device(b->nd), .log = test_log};
    ck_assert_int_eq(vio_vhost_user_new(&c, &b->vu), 0);
    atomic_store(&b->stop, false);
    ck_assert_int_eq(pthread_create(&b->th, NULL, be_thread, b), 0);
    b->running = true;
}

static void be_stop(struct be *b)
{
    if (!b->running)
        return;
    atomic_store(&b->stop, true);
    pthread_join(b->th, NULL);
    vio_vhost_user_free(b->vu);
    vio_net_dev_free(b->nd);
    vio_net_backend_destroy(&b->nb);
    b->running = false;
}

/* ------------------------------------------------------------------------ */
/* Guest memory and the driver side                                          */

struct guest {
    int memfd;
    uint8_t *mem;
    struct vio_mem *gm;
    struct vio_vhost_mem_region reg;
    struct vio_vhost *v;
    struct vio_vhost_driver *vd;
    struct vio_driver drv;
    struct vio_net_driver *nd;
    uint64_t feats;
    unsigned sent, got;
};

static void guest_mem(struct guest *g)
{
    g->memfd = memfd_create("vio-fe-guest", MFD_CLOEXEC);
    ck_assert_int_ge(g->memfd, 0);
    ck_assert_int_eq(ftruncate(g->memfd, MEM_SIZE), 0);
    g->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
    ck_assert_ptr_ne(g->mem, MAP_FAILED);
    ck_assert_int_eq(vio_mem_new(4, &g->gm), 0);
    struct vio_mem_region r = {.guest_addr = GPA_BASE, .size = MEM_SIZE,
                               .user_addr = (uint64_t)(uintptr_t)g->mem, .host_ptr = g->mem};
    ck_assert_int_eq(vio_mem_add(g->gm, &r), 0);
    g->reg = (struct vio_vhost_mem_region){.guest_addr = GPA_BASE, .size = MEM_SIZE,
                                           .user_addr = (uint64_t)(uintptr_t)g->mem,
                                           .fd = g->memfd, .fd_offset = 0};
}

/* Adapter, negotiation, net driver, attach, receive buffers posted. */
static void guest_up(struct guest *g, uint64_t wanted)
{
    struct vio_vhost_driver_config dc = {.struct_size = sizeof(dc), .vhost = g->v,
                                         .regions = &g->reg, .num_regions = 1,
                                         .max_queue_size = 256, .net_backend_fd = -1,
                                         .log = test_log};
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &g->vd), 0);
    g->drv = vio_vhost_driver_get(g->vd);
    ck_assert_int_eq(vio_driver_negotiate(&g->drv, wanted, &g->feats), 0);
    struct vio_net_driver_config nc = {.struct_size = sizeof(nc), .mem = g->gm, .area = GPA_BASE,
                                       .features = g->feats, .queue_size = QSZ,
                                       .log = test_log};
    nc.area_size = vio_net_driver_area_size(&nc);
    ck_assert_uint_gt(nc.area_size, 0);
    ck_assert_uint_le(nc.area_size, MEM_SIZE);
    ck_assert_int_eq(vio_net_driver_new(&nc, &g->nd), 0);
    ck_assert_int_eq(vio_net_driver_attach(g->nd, &g->drv), 0);
    ck_assert_int_gt(vio_net_driver_rx_fill(g->nd, 0), 0);
    ck_assert_int_ge(vio_net_driver_kick(g->nd, VIO_NET_DRIVER_RXQ(0)), 0);
}

static void guest_down(struct guest *g)
{
    vio_net_driver_free(g->nd);
    g->nd = NULL;
    vio_vhost_driver_free(g->vd);
    g->vd = NULL;
    vio_vhost_free(g->v);
    g->v = NULL;
    vio_mem_free(g->gm);
    munmap(g->mem, MEM_SIZE);
    close(g->memfd);
}

static size_t frame(uint8_t *buf, unsigned seq, size_t len)
{
    memset(buf, 0xff, 6); /* broadcast */
    const uint8_t src[6] = {2, 0, 0, 0, 0, 2};
    memcpy(buf + 6, src, 6);
    buf[12] = 0x88;
    buf[13] = 0xb5;
    for (size_t i = 14; i < len; i++)
        buf[i] = (uint8_t)(seq * 31u + i);
    memcpy(buf + 14, &seq, sizeof(seq));
    return len;
}

/* Send @p n frames and receive them back from the loopback, byte-compared. */
static void traffic(struct guest *g, unsigned n)
{
    uint8_t tx[1500], rx[2048];
    unsigned first = g->sent;
    for (unsigned i = 0; i < n; i++) {
        size_t len = frame(tx, g->sent, 60 + (g->sent % 7) * 200);
        int r;
        while ((r = vio_net_driver_send(g->nd, 0, NULL, tx, len)) == -ENOSPC) {
            vio_net_driver_kick(g->nd, VIO_NET_DRIVER_TXQ(0));
            usleep(1000);
            vio_net_driver_tx_reclaim(g->nd, 0, NULL, 0);
        }
        ck_assert_int_eq(r, 0);
        g->sent++;
    }
    ck_assert_int_ge(vio_net_driver_kick(g->nd, VIO_NET_DRIVER_TXQ(0)), 0);
    int callfd = vio_vhost_driver_call_fd(g->vd, VIO_NET_DRIVER_RXQ(0));
    ck_assert_int_ge(callfd, 0);
    bool irq = false;
    unsigned want = first + n;
    for (int spin = 0; g->got < want && spin < 5000; spin++) {
        struct pollfd p = {.fd = callfd, .events = POLLIN};
        if (poll(&p, 1, 1) > 0 && vio_driver_ack_interrupt(&g->drv) & VIO_DRIVER_INT_VRING)
            irq = true;
        ssize_t len;
        while ((len = vio_net_driver_recv(g->nd, 0, NULL, rx, sizeof(rx))) >= 0) {
            size_t elen = frame(tx, g->got, 60 + (g->got % 7) * 200);
            ck_assert_int_eq(len, (ssize_t)elen);
            ck_assert_int_eq(memcmp(rx, tx, elen), 0);
            g->got++;
        }
        ck_assert_int_eq(len, -EAGAIN);
        vio_net_driver_kick(g->nd, VIO_NET_DRIVER_RXQ(0));
        vio_net_driver_tx_reclaim(g->nd, 0, NULL, 0);
    }
    ck_assert_uint_eq(g->got, want);
    ck_assert(irq); /* the call eventfd fired and ack_interrupt saw it */
}

#define F_MRG (1ull << VIO_NET_F_MRG_RXBUF)
#define F_V1 (1ull << VIO_F_VERSION_1)
#define PF_EXPECTED                                                                                \
    ((1ull << VU_PF_MQ) | (1ull << VU_PF_LOG_SHMFD) | (1ull << VU_PF_REPLY_ACK) |                  \
     (1ull << VU_PF_BACKEND_REQ) | (1ull << VU_PF_CONFIG) | (1ull << VU_PF_INFLIGHT_SHMFD) |       \
     (1ull << VU_PF_RESET_DEVICE) | (1ull << VU_PF_CONFIGURE_MEM_SLOTS) | (1ull << VU_PF_STATUS))

/* ------------------------------------------------------------------------ */
/* Against our backend                                                       */

START_TEST(t_client_traffic)
{
    int fds0 = count_fds();
    mkpath();
    struct be b;
    be_start(&b, false);
    struct guest g = {0};
    guest_mem(&g);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    ck_assert_int_eq(vio_vhost_user_connect(&c, &g.v), 0);
    ck_assert_int_eq(vio_vhost_kind(g.v), VIO_VHOST_USER);
    ck_assert(vio_vhost_connected(g.v));
    ck_assert_int_ge(vio_vhost_fd(g.v), 0);

    uint64_t f, pf;
    ck_assert_int_eq(vio_vhost_get_features(g.v, &f), 0);
    ck_assert(f & F_V1);
    ck_assert(f & F_MRG);
    ck_assert(!(f & (1ull << VU_F_PROTOCOL_FEATURES)));
    ck_assert_int_eq(vio_vhost_get_protocol_features(g.v, &pf), 0);
    ck_assert_uint_eq(pf, PF_EXPECTED);
    unsigned rings;
    ck_assert_int_eq(vio_vhost_get_queue_num(g.v, &rings), 0);
    ck_assert_uint_eq(rings, 2);
    /* kernel-only operations */
    ck_assert_int_eq(vio_vhost_get_backend_features(g.v, &f), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_iotlb_update(g.v, 0, 4096, 0, 3), -ENOTSUP);

    guest_up(&g, F_V1 | F_MRG);
    ck_assert_uint_eq(g.feats, F_V1 | F_MRG);
    traffic(&g, 100);
    traffic(&g, 300); /* more than a ring: buffers recycled */

    /* the backend's status followed the driver's (STATUS forwarded) */
    uint8_t st;
    ck_assert_int_eq(vio_vhost_get_status(g.v, &st), 0);
    ck_assert(st & VIO_S_DRIVER_OK);
    /* config space over GET_CONFIG: the MAC */
    uint8_t mac[6];
    ck_assert_int_eq(vio_driver_config_read(&g.drv, 0, mac, 6), 0);
    const uint8_t want_mac[6] = {2, 0, 0, 0, 0, 1};
    ck_assert_int_eq(memcmp(mac, want_mac, 6), 0);
    ck_assert_int_eq(vio_driver_config_read(&g.drv, 250, mac, 7), -ERANGE);
    /* the dirty log (LOG_SHMFD): the backend maps it and answers */
    int logfd = memfd_create("vio-fe-log", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(logfd, 4096), 0);
    ck_assert_int_eq(vio_vhost_set_log_base(g.v, 0, logfd, 4096), 0);
    ck_assert_int_eq(vio_vhost_set_log_base(g.v, 0, -1, 4096), -EINVAL);
    close(logfd);

    /* GET_VRING_BASE stops the tx ring where the backend stopped: after every frame */
    unsigned base;
    ck_assert_int_eq(vio_vhost_get_vring_base(g.v, VIO_NET_DRIVER_TXQ(0), &base), 0);
    ck_assert_uint_eq(base, 400);
    ck_assert_int_eq(vio_vhost_get_vring_base(g.v, 7, &base), -EINVAL); /* beyond num_queues */
    ck_assert_int_eq(vio_vhost_handle(g.v), 0);
    ck_assert_int_eq(n_errors, 0);
    guest_down(&g);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_server_traffic)
{
    int fds0 = count_fds();
    mkpath();
    struct be b;
    be_start(&b, true); /* keeps connecting until the frontend listens */
    struct guest g = {0};
    guest_mem(&g);
    struct vio_vhost_user_frontend_config c = fe_cfg(true);
    c.reconnect = true;
    memset(ev_count, 0, sizeof(ev_count));
    ck_assert_int_eq(vio_vhost_user_connect(&c, &g.v), 0);
    guest_up(&g, F_V1);
    traffic(&g, 50);
    /* the backend goes away; the next request finds out (EPIPE or EOF: never SIGPIPE, which
     * kills this test process) */
    be_stop(&b);
    ck_assert_int_eq(vio_vhost_set_owner(g.v), -ENOTCONN);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], 1);
    ck_assert_int_eq(vio_vhost_set_owner(g.v), -ENOTCONN);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], 1);
    /* a new backend connects to the socket we still listen on */
    be_start(&b, true);
    ck_assert_int_eq(vio_vhost_reconnect(g.v), 0);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_RECONNECTED], 1);
    traffic(&g, 50);
    guest_down(&g);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_mem_slots)
{
    int fds0 = count_fds();
    mkpath();
    struct be b;
    be_start(&b, false);
    struct guest g = {0};
    guest_mem(&g);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    ck_assert_int_eq(vio_vhost_user_connect(&c, &g.v), 0);
    ck_assert_int_eq(vio_vhost_set_owner(g.v), 0);
    unsigned slots = 0;
    ck_assert_int_eq(vio_vhost_get_max_mem_slots(g.v, &slots), 0);
    ck_assert_uint_eq(slots, VIO_MEM_DEFAULT_CAPACITY);
    ck_assert_int_eq(vio_vhost_set_mem_table(g.v, &g.reg, 1), 0);
    int fd2 = memfd_create("vio-fe-slot", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(fd2, 1 << 20), 0);
    void *p2 = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    ck_assert_ptr_ne(p2, MAP_FAILED);
    struct vio_vhost_mem_region r2 = {.guest_addr = GPA_BASE + 2 * MEM_SIZE, .size = 1 << 20,
                                      .user_addr = (uint64_t)(uintptr_t)p2, .fd = fd2};
    ck_assert_int_eq(vio_vhost_add_mem_region(g.v, &r2), 0);
    ck_assert_int_eq(vio_vhost_rem_mem_region(g.v, &r2), 0);
    /* refused locally, nothing sent */
    struct vio_vhost_mem_region nofd = r2;
    nofd.fd = -1;
    ck_assert_int_eq(vio_vhost_add_mem_region(g.v, &nofd), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_mem_table(g.v, &g.reg, 0), -EINVAL);
    struct vio_vhost_mem_region two[2] = {g.reg, g.reg};
    ck_assert_int_eq(vio_vhost_set_mem_table(g.v, two, 2), -EINVAL); /* overlap */
    ck_assert(vio_vhost_connected(g.v));
    /* overlapping the first region: our backend ends the session over it */
    struct vio_vhost_mem_region bad = r2;
    bad.guest_addr = GPA_BASE + 4096;
    ck_assert_int_eq(vio_vhost_add_mem_region(g.v, &bad), -ENOTCONN);
    ck_assert(!vio_vhost_connected(g.v));
    ck_assert_int_eq(vio_vhost_rem_mem_region(g.v, &r2), -ENOTCONN);
    munmap(p2, 1 << 20);
    close(fd2);
    atomic_store(&n_errors, 0);
    guest_down(&g);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* The rest of the operations against our backend, and a reconnect that replays them. */
START_TEST(t_more_ops)
{
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    struct be b;
    be_start(&b, false);
    struct guest g = {0};
    guest_mem(&g);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    c.reconnect = true;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &g.v), 0);
    ck_assert_int_eq(vio_vhost_set_owner(g.v), 0);
    ck_assert_int_eq(vio_vhost_set_features(g.v, F_V1), 0);
    ck_assert_int_eq(vio_vhost_set_mem_table(g.v, &g.reg, 1), 0);
    int fd2 = memfd_create("vio-fe-more", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(fd2, 1 << 20), 0);
    void *p2 = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    ck_assert_ptr_ne(p2, MAP_FAILED);
    struct vio_vhost_mem_region r2 = {.guest_addr = GPA_BASE + 2 * MEM_SIZE, .size = 1 << 20,
                                      .user_addr = (uint64_t)(uintptr_t)p2, .fd = fd2};
    ck_assert_int_eq(vio_vhost_add_mem_region(g.v, &r2), 0);
    /* inflight area from the backend, handed back */
    int ifd = -1;
    uint64_t isz = 0;
    ck_assert_int_eq(vio_vhost_get_inflight(g.v, 2, 256, &ifd, &isz), 0);
    ck_assert_int_ge(ifd, 0);
    ck_assert_uint_gt(isz, 0);
    ck_assert_int_eq(vio_vhost_set_inflight(g.v, ifd, isz, 2, 256), 0);
    ck_assert_int_eq(vio_vhost_get_inflight(g.v, 0, 256, &ifd, &isz), -EINVAL);
    ck_assert_int_eq(vio_vhost_get_inflight(g.v, 2, 100, &ifd, &isz), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_inflight(g.v, -1, isz, 2, 256), -EINVAL);
    int logev = eventfd(0, EFD_CLOEXEC);
    ck_assert_int_eq(vio_vhost_set_log_fd(g.v, logev), 0);
    ck_assert_int_eq(vio_vhost_set_log_fd(g.v, -1), -EINVAL);
    /* virtio-net's MAC is not writable through SET_CONFIG: refused with the ack, kept */
    uint8_t mac[6] = {2, 0, 0, 0, 0, 9};
    int r = vio_vhost_set_config(g.v, 0, mac, 6);
    ck_assert_msg(r == 0 || r == -EIO, "set_config %d", r);
    ck_assert(vio_vhost_connected(g.v));
    ck_assert_int_eq(vio_vhost_set_config(g.v, 250, mac, 7), -EINVAL);
    ck_assert_int_eq(vio_vhost_get_config(g.v, 0, mac, 0), -EINVAL);
    /* ring state, including the no-fd flag */
    ck_assert_int_eq(vio_vhost_set_vring_num(g.v, 0, 64), 0);
    ck_assert_int_eq(vio_vhost_set_vring_num(g.v, 0, 100), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_vring_base(g.v, 0, 0x10000), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_vring_err(g.v, 0, -1), 0);
    ck_assert_int_eq(vio_vhost_set_vring_call(g.v, 0, logev), 0);
    ck_assert_int_eq(vio_vhost_set_vring_err(g.v, 0, logev), 0);
    struct vio_vhost_vring_addr a = {.flags = 2};
    ck_assert_int_eq(vio_vhost_set_vring_addr(g.v, 0, &a), -EINVAL);

    /* the backend restarts: everything above is replayed to the new one */
    be_stop(&b);
    struct pollfd pf = {.fd = vio_vhost_fd(g.v), .events = POLLIN};
    ck_assert_int_eq(poll(&pf, 1, 2000), 1);
    ck_assert_int_eq(vio_vhost_handle(g.v), -ENOTCONN);
    be_start(&b, false);
    ck_assert_int_eq(vio_vhost_reconnect(g.v), 0);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_RECONNECTED], 1);
    /* the region added is known to the new backend: removing it works */
    ck_assert_int_eq(vio_vhost_rem_mem_region(g.v, &r2), 0);
    /* RESET_DEVICE: the recorded state is gone, a reconnect now only sends the owner */
    ck_assert_int_eq(vio_vhost_reset(g.v), 0);
    ck_assert(vio_vhost_connected(g.v));
    ck_assert_int_eq(vio_vhost_get_status(g.v, mac), 0);
    ck_assert_uint_eq(mac[0], 0);
    close(ifd);
    close(logev);
    munmap(p2, 1 << 20);
    close(fd2);
    guest_down(&g);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_queue_num_range)
{
    int fds0 = count_fds();
    mkpath();
    struct be b;
    be_start(&b, false);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    c.num_queues = 4; /* the loopback device has one pair */
    struct vio_vhost *v = NULL;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -ERANGE);
    ck_assert_ptr_null(v);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_connect_errors)
{
    int fds0 = count_fds();
    mkpath();
    struct vio_vhost *v = NULL;
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -ENOENT);
    /* a stale socket: nothing listens */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -ECONNREFUSED);
    /* server mode: a file that is not a socket is left alone */
    unlink(sock_path);
    int ff = open(sock_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ck_assert_int_ge(ff, 0);
    close(ff);
    c = fe_cfg(true);
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -EEXIST);
    unlink(sock_path);
    /* server mode, nobody comes */
    c = fe_cfg(true);
    c.timeout_ms = 100;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -ETIMEDOUT);
    ck_assert_ptr_null(v);
    /* bad parameters */
    c = fe_cfg(false);
    ck_assert_int_eq(vio_vhost_user_connect(NULL, &v), -EINVAL);
    ck_assert_int_eq(vio_vhost_user_connect(&c, NULL), -EINVAL);
    c.path = NULL;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    c.path = longp;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -EINVAL);
    c = fe_cfg(false);
    c.struct_size = 4;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), -EINVAL);
    ck_assert_int_eq(vio_vhost_reconnect(NULL), -EINVAL);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_reconnect)
{
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    struct be b;
    be_start(&b, false);
    struct guest g = {0};
    guest_mem(&g);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    c.reconnect = true;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &g.v), 0);
    guest_up(&g, F_V1 | F_MRG);
    traffic(&g, 100);

    /* the backend dies */
    be_stop(&b);
    struct pollfd p = {.fd = vio_vhost_fd(g.v), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_int_eq(vio_vhost_handle(g.v), -ENOTCONN);
    ck_assert(!vio_vhost_connected(g.v));
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], 1);
    unsigned base;
    ck_assert_int_eq(vio_vhost_get_vring_base(g.v, 0, &base), -ENOTCONN);
    uint8_t st;
    ck_assert_int_eq(vio_driver_get_status(&g.drv, &st), 0);
    ck_assert(st & VIO_S_NEEDS_RESET);

    /* a new one on the same path; the state is re-sent and traffic resumes */
    be_start(&b, false);
    ck_assert_int_eq(vio_vhost_reconnect(g.v), 0);
    ck_assert(vio_vhost_connected(g.v));
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_RECONNECTED], 1);
    traffic(&g, 100);

    /* again, with the base the application wants for the tx ring (what it completed) */
    be_stop(&b);
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_int_eq(vio_vhost_handle(g.v), -ENOTCONN);
    ck_assert_int_eq(vio_vhost_set_vring_base(g.v, VIO_NET_DRIVER_TXQ(0), 200), 0);
    be_start(&b, false);
    ck_assert_int_eq(vio_vhost_reconnect(g.v), 0);
    traffic(&g, 20);
    ck_assert_int_eq(vio_vhost_get_vring_base(g.v, VIO_NET_DRIVER_TXQ(0), &base), 0);
    ck_assert_uint_eq(base, 220);

    guest_down(&g);
    be_stop(&b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(t_no_reconnect)
{
    mkpath();
    struct be b;
    be_start(&b, false);
    struct vio_vhost_user_frontend_config c = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&c, &v), 0);
    ck_assert_int_eq(vio_vhost_reconnect(v), -ENOTSUP);
    vio_vhost_free(v);
    be_stop(&b);
    rmpath();
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The hostile fake backend                                                  */

enum mut {
    M_NONE,
    M_SIZE,      /* payload 4 bytes longer */
    M_CODE,      /* another request code */
    M_NOREPLY,   /* REPLY flag missing */
    M_VERSION,   /* version 2 */
    M_FD,        /* an eventfd attached */
    M_CLOSE,     /* close instead of answering */
    M_CLOSE_MID, /* a header announcing 8 bytes, 4 bytes, close */
    M_SILENT,    /* never answer */
    M_VALUE,     /* answer with .value (u64) / in the field that matters */
    M_ACK_FAIL,  /* REPLY_ACK status 1 */
    M_EXTRA,     /* answer, then an unsolicited copy of the reply */
    M_EMPTY,     /* answer with an empty payload */
    M_UNKNOWN,   /* an unknown request code (99) */
};

struct fake {
    int lsock;
    pthread_t th;
    uint32_t target;
    enum mut mut;
    uint64_t value;
    uint64_t features, pf;
    atomic_int breq; /* the channel the frontend gave us (-1 none) */
    atomic_uint seen[VU_REQUEST_MAX]; /* requests received, by code */
};

static void fake_send(int s, uint32_t req, uint32_t flags, const void *p, uint32_t size,
                      const int *fds, unsigned nfds)
{
    struct vu_msg m;
    memset(&m, 0, sizeof(m));
    m.hdr.request = req;
    m.hdr.flags = flags;
    m.hdr.size = size;
    if (size)
        memcpy(&m.p, p, size);
    for (unsigned i = 0; i < nfds; i++)
        m.fds[i] = fds[i];
    m.nfds = nfds;
    vu_msg_send(s, &m);
}

/* The correct answer to @p m (payload into @p out), or false for requests without one. */
static bool answer(struct fake *fk, const struct vu_msg *m, union vu_payload *out, uint32_t *size,
                   int *fd)
{
    *fd = -1;
    memset(out, 0, sizeof(*out));
    *size = 8;
    switch (m->hdr.request) {
    case VU_GET_FEATURES:
        out->u64 = fk->features;
        return true;
    case VU_GET_PROTOCOL_FEATURES:
        out->u64 = fk->pf;
        return true;
    case VU_GET_QUEUE_NUM:
        out->u64 = 1;
        return true;
    case VU_GET_MAX_MEM_SLOTS:
        out->u64 = 8;
        return true;
    case VU_GET_STATUS:
        out->u64 = VIO_S_ACKNOWLEDGE;
        return true;
    case VU_GET_VRING_BASE:
        out->state.index = m->p.state.index;
        out->state.num = 7;
        return true;
    case VU_GET_CONFIG:
        out->config = m->p.config;
        memset(out->config.payload, 0xab, sizeof(out->config.payload));
        *size = 12 + m->p.config.size;
        return true;
    case VU_SET_LOG_BASE: /* answered always with LOG_SHMFD */
        out->u64 = 0;
        return true;
    case VU_GET_INFLIGHT_FD:
        out->inflight = m->p.inflight;
        out->inflight.mmap_size = 4096;
        *size = sizeof(struct vu_inflight);
        *fd = memfd_create("fake-inflight", MFD_CLOEXEC);
        return true;
    default:
        if (m->hdr.flags & VU_FLAG_NEED_REPLY) {
            out->u64 = 0;
            return true;
        }
        return false;
    }
}

static void *fake_thread(void *arg)
{
    struct fake *fk = arg;
    struct pollfd p = {.fd = fk->lsock, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return NULL;
    int s = accept4(fk->lsock, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        return NULL;
    for (;;) {
        p = (struct pollfd){.fd = s, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1)
            break;
        struct vu_msg m;
        if (vu_msg_recv(s, &m) < 0)
            break;
        if (m.hdr.request < VU_REQUEST_MAX)
            atomic_fetch_add(&fk->seen[m.hdr.request], 1);
        if (m.hdr.request == VU_SET_BACKEND_REQ_FD && m.nfds == 1) {
            atomic_store(&fk->breq, m.fds[0]);
            m.fds[0] = -1;
        }
        vu_msg_close_fds(&m);
        union vu_payload out;
        uint32_t size;
        int fd;
        bool has = answer(fk, &m, &out, &size, &fd);
        uint32_t req = m.hdr.request, flags = VU_VERSION | VU_FLAG_REPLY;
        if (req == fk->target) {
            switch (fk->mut) {
            case M_NONE:
                break;
            case M_SIZE:
                size += 4;
                break;
            case M_CODE:
                req = req == VU_GET_FEATURES ? VU_GET_PROTOCOL_FEATURES : VU_GET_FEATURES;
                break;
            case M_NOREPLY:
                flags = VU_VERSION;
                break;
            case M_VERSION:
                flags = 2 | VU_FLAG_REPLY;
                break;
            case M_FD:
                if (fd < 0)
                    fd = eventfd(0, EFD_CLOEXEC);
                else {
                    int two[2] = {fd, eventfd(0, EFD_CLOEXEC)};
                    fake_send(s, req, flags, &out, size, two, 2);
                    close(two[0]);
                    close(two[1]);
                    continue;
                }
                break;
            case M_CLOSE:
                if (fd >= 0)
                    close(fd);
                goto out;
            case M_CLOSE_MID: {
                struct vu_hdr h = {.request = req, .flags = flags, .size = 8};
                send(s, &h, sizeof(h), MSG_NOSIGNAL);
                send(s, &out, 4, MSG_NOSIGNAL);
                if (fd >= 0)
                    close(fd);
                goto out;
            }
            case M_SILENT:
                has = false;
                break;
            case M_VALUE:
                if (req == VU_GET_VRING_BASE)
                    out.state.index = (uint32_t)(fk->value >> 32), out.state.num = (uint32_t)fk->value;
                else if (req == VU_GET_CONFIG)
                    out.config.offset = (uint32_t)fk->value;
                else if (req == VU_GET_INFLIGHT_FD) {
                    if (fd >= 0)
                        close(fd);
                    fd = -1; /* an area without its fd */
                } else
                    out.u64 = fk->value;
                break;
            case M_ACK_FAIL:
                out.u64 = 1;
                break;
            case M_EXTRA:
                fake_send(s, req, flags, &out, size, NULL, 0);
                break;
            case M_EMPTY:
                size = 0;
                break;
            case M_UNKNOWN:
                req = 99;
                break;
            }
        }
        if (has)
            fake_send(s, req, flags, &out, size, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
        if (fd >= 0)
            close(fd);
    }
out:
    close(s);
    int b = atomic_exchange(&fk->breq, -1);
    if (b >= 0)
        close(b);
    return NULL;
}

#define PF_FAKE                                                                                    \
    ((1ull << VU_PF_MQ) | (1ull << VU_PF_REPLY_ACK) | (1ull << VU_PF_BACKEND_REQ) |                \
     (1ull << VU_PF_CONFIG) | (1ull << VU_PF_STATUS) | (1ull << VU_PF_INFLIGHT_SHMFD) |            \
     (1ull << VU_PF_CONFIGURE_MEM_SLOTS) | (1ull << VU_PF_LOG_SHMFD))
#define FEAT_FAKE ((1ull << VIO_F_VERSION_1) | (1ull << VU_F_PROTOCOL_FEATURES))

/* The fake's socket and answers; fake_go() starts its thread (change the answers between). */
static void fake_prepare(struct fake *fk, uint32_t target, enum mut mut, uint64_t value)
{
    memset(fk, 0, sizeof(*fk));
    fk->target = target;
    fk->mut = mut;
    fk->value = value;
    fk->features = FEAT_FAKE;
    fk->pf = PF_FAKE;
    atomic_store(&fk->breq, -1);
    fk->lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    ck_assert_int_eq(bind(fk->lsock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fk->lsock, 1), 0);
}

static void fake_go(struct fake *fk)
{
    ck_assert_int_eq(pthread_create(&fk->th, NULL, fake_thread, fk), 0);
}

static void fake_start(struct fake *fk, uint32_t target, enum mut mut, uint64_t value)
{
    fake_prepare(fk, target, mut, value);
    fake_go(fk);
}

static void fake_stop(struct fake *fk)
{
    pthread_join(fk->th, NULL);
    close(fk->lsock);
    unlink(sock_path);
}

enum op { OP_CONNECT, OP_OWNER, OP_VRING_BASE, OP_STATUS, OP_SLOTS, OP_CONFIG, OP_INFLIGHT,
          OP_MEM, OP_VRING_NUM, OP_SET_STATUS, OP_HANDLE, OP_LOG_BASE };

static const struct bad {
    const char *name;
    uint32_t target;
    enum mut mut;
    uint64_t value;
    enum op op;
    int err;
    bool dropped; /* the connection is dropped (meaningful for ops after connect) */
    uint64_t features; /* GET_FEATURES answer; 0 = FEAT_FAKE */
} bad[] = {
    {"features: size 12", VU_GET_FEATURES, M_SIZE, 0, OP_CONNECT, -EPROTO, true},
    {"features: wrong code", VU_GET_FEATURES, M_CODE, 0, OP_CONNECT, -EPROTO, true},
    {"features: no REPLY flag", VU_GET_FEATURES, M_NOREPLY, 0, OP_CONNECT, -EPROTO, true},
    {"features: version 2", VU_GET_FEATURES, M_VERSION, 0, OP_CONNECT, -EPROTO, true},
    {"features: an extra fd", VU_GET_FEATURES, M_FD, 0, OP_CONNECT, -EPROTO, true},
    {"features: closed", VU_GET_FEATURES, M_CLOSE, 0, OP_CONNECT, -ENOTCONN, true},
    {"features: closed mid-reply", VU_GET_FEATURES, M_CLOSE_MID, 0, OP_CONNECT, -EPROTO, true},
    {"features: silent", VU_GET_FEATURES, M_SILENT, 0, OP_CONNECT, -ETIMEDOUT, true},
    {"features: empty", VU_GET_FEATURES, M_EMPTY, 0, OP_CONNECT, -EPROTO, true},
    {"features: unknown code", VU_GET_FEATURES, M_UNKNOWN, 0, OP_CONNECT, -EPROTO, true},
    /* no PROTOCOL_FEATURES (so no REPLY_ACK), yet a second features reply follows: the next
     * reply read is out of step */
    {"features: no bit 30, then more", VU_GET_FEATURES, M_EXTRA, 0, OP_VRING_BASE, -EPROTO,
     true, 1ull << VIO_F_VERSION_1},
    {"owner: unsolicited, seen by handle", VU_SET_OWNER, M_EXTRA, 0, OP_HANDLE, -ENOTCONN, true},
    {"protocol features: size 12", VU_GET_PROTOCOL_FEATURES, M_SIZE, 0, OP_CONNECT, -EPROTO, true},
    {"queue num 0", VU_GET_QUEUE_NUM, M_VALUE, 0, OP_CONNECT, -EPROTO, true},
    {"queue num 2^40", VU_GET_QUEUE_NUM, M_VALUE, 1ull << 40, OP_CONNECT, -EPROTO, true},
    {"backend req: ack with 2 fds", VU_SET_BACKEND_REQ_FD, M_FD, 0, OP_CONNECT, -EPROTO, true},
    {"backend req: refused", VU_SET_BACKEND_REQ_FD, M_ACK_FAIL, 0, OP_CONNECT, -EIO, true},
    {"backend req: ack closed", VU_SET_BACKEND_REQ_FD, M_CLOSE, 0, OP_CONNECT, -ENOTCONN, true},
    {"owner: silent", VU_SET_OWNER, M_SILENT, 0, OP_OWNER, -ETIMEDOUT, true},
    {"owner: ack of size 0", VU_SET_OWNER, M_EMPTY, 0, OP_OWNER, -EPROTO, true},
    {"owner: ack refused", VU_SET_OWNER, M_ACK_FAIL, 0, OP_OWNER, -EIO, false},
    {"owner: extra reply", VU_SET_OWNER, M_EXTRA, 0, OP_VRING_BASE, -EPROTO, true},
    {"vring base: another ring", VU_GET_VRING_BASE, M_VALUE, (5ull << 32) | 3, OP_VRING_BASE,
     -EPROTO, true},
    {"vring base: 17 bits", VU_GET_VRING_BASE, M_VALUE, 0x10000, OP_VRING_BASE, -EPROTO, true},
    {"vring base: wrong code", VU_GET_VRING_BASE, M_CODE, 0, OP_VRING_BASE, -EPROTO, true},
    {"vring base: closed", VU_GET_VRING_BASE, M_CLOSE, 0, OP_VRING_BASE, -ENOTCONN, true},
    {"status 0x100", VU_GET_STATUS, M_VALUE, 0x100, OP_STATUS, -EPROTO, true},
    {"status: extra fd", VU_GET_STATUS, M_FD, 0, OP_STATUS, -EPROTO, true},
    {"set status: refused", VU_SET_STATUS, M_ACK_FAIL, 0, OP_SET_STATUS, -EIO, false},
    {"mem slots 0", VU_GET_MAX_MEM_SLOTS, M_VALUE, 0, OP_SLOTS, -EPROTO, true},
    {"mem slots 2^33", VU_GET_MAX_MEM_SLOTS, M_VALUE, 1ull << 33, OP_SLOTS, -EPROTO, true},
    {"config: another offset", VU_GET_CONFIG, M_VALUE, 4, OP_CONFIG, -EPROTO, true},
    {"config: size 4 longer", VU_GET_CONFIG, M_SIZE, 0, OP_CONFIG, -EPROTO, true},
    {"config: empty (refused)", VU_GET_CONFIG, M_EMPTY, 0, OP_CONFIG, -EIO, false},
    {"inflight: no fd", VU_GET_INFLIGHT_FD, M_VALUE, 0, OP_INFLIGHT, -EPROTO, true},
    {"inflight: 2 fds", VU_GET_INFLIGHT_FD, M_FD, 0, OP_INFLIGHT, -EPROTO, true},
    {"log base: silent", VU_SET_LOG_BASE, M_SILENT, 0, OP_LOG_BASE, -ETIMEDOUT, true},
    {"log base: size 12", VU_SET_LOG_BASE, M_SIZE, 0, OP_LOG_BASE, -EPROTO, true},
    {"log base: an fd back", VU_SET_LOG_BASE, M_FD, 0, OP_LOG_BASE, -EPROTO, true},
    {"log base: empty (DPDK's answer)", VU_SET_LOG_BASE, M_EMPTY, 0, OP_LOG_BASE, 0, false},
    {"mem table: refused", VU_SET_MEM_TABLE, M_ACK_FAIL, 0, OP_MEM, -EIO, false},
    {"mem table: ack with fd", VU_SET_MEM_TABLE, M_FD, 0, OP_MEM, -EPROTO, true},
    {"vring num: ack size 12", VU_SET_VRING_NUM, M_SIZE, 0, OP_VRING_NUM, -EPROTO, true},
    {"vring num: ack closed mid", VU_SET_VRING_NUM, M_CLOSE_MID, 0, OP_VRING_NUM, -EPROTO, true},
};

static int do_op(struct vio_vhost *v, enum op op, int memfd)
{
    unsigned u;
    uint8_t st;
    uint8_t buf[16];
    int fd;
    uint64_t size;
    switch (op) {
    case OP_CONNECT:
        return 0;
    case OP_OWNER:
        return vio_vhost_set_owner(v);
    case OP_VRING_BASE:
        (void)vio_vhost_set_owner(v);
        return vio_vhost_get_vring_base(v, 1, &u);
    case OP_STATUS:
        return vio_vhost_get_status(v, &st);
    case OP_SET_STATUS:
        return vio_vhost_set_status(v, VIO_S_ACKNOWLEDGE);
    case OP_SLOTS:
        return vio_vhost_get_max_mem_slots(v, &u);
    case OP_CONFIG:
        return vio_vhost_get_config(v, 0, buf, sizeof(buf));
    case OP_INFLIGHT: {
        int r = vio_vhost_get_inflight(v, 2, 64, &fd, &size);
        if (r == 0)
            close(fd);
        return r;
    }
    case OP_MEM: {
        struct vio_vhost_mem_region r = {.guest_addr = 0, .size = 4096, .user_addr = 0x10000,
                                         .fd = memfd};
        return vio_vhost_set_mem_table(v, &r, 1);
    }
    case OP_VRING_NUM:
        return vio_vhost_set_vring_num(v, 0, 256);
    case OP_LOG_BASE:
        return vio_vhost_set_log_base(v, 0, memfd, 4096);
    case OP_HANDLE: {
        int r = vio_vhost_set_owner(v);
        if (r < 0)
            return r;
        struct pollfd p = {.fd = vio_vhost_fd(v), .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            return -EAGAIN;
        return vio_vhost_handle(v);
    }
    }
    return -1;
}

START_TEST(t_hostile)
{
    const struct bad *c = &bad[_i];
    int memfd = memfd_create("vio-fe-bad", MFD_CLOEXEC);
    ck_assert_int_eq(ftruncate(memfd, 4096), 0);
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    atomic_store(&n_errors, 0);
    struct fake fk;
    fake_prepare(&fk, c->target, c->mut, c->value);
    if (c->features)
        fk.features = c->features;
    fake_go(&fk);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    cfg.timeout_ms = 200;
    struct vio_vhost *v = NULL;
    int r = vio_vhost_user_connect(&cfg, &v);
    if (c->op == OP_CONNECT) {
        ck_assert_msg(r == c->err, "%s: connect gave %d, expected %d", c->name, r, c->err);
        ck_assert_ptr_null(v);
    } else {
        ck_assert_msg(r == 0, "%s: connect gave %d", c->name, r);
        r = do_op(v, c->op, memfd);
        ck_assert_msg(r == c->err, "%s: gave %d, expected %d", c->name, r, c->err);
        ck_assert_msg(vio_vhost_connected(v) == !c->dropped, "%s: connected %d", c->name,
                      vio_vhost_connected(v));
        ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], c->dropped ? 1 : 0);
        if (c->dropped)
            ck_assert_int_eq(vio_vhost_set_owner(v), -ENOTCONN);
    }
    if (c->err != -EIO && c->err != 0)
        ck_assert_msg(atomic_load(&n_errors) > 0, "%s: nothing logged", c->name);
    vio_vhost_free(v);
    fake_stop(&fk);
    rmpath();
    ck_assert_msg(count_fds() == fds0, "%s: %d fds, were %d", c->name, count_fds(), fds0);
    close(memfd);
}
END_TEST

/* A backend without PROTOCOL_FEATURES: no protocol requests, no enable, no config. */
START_TEST(t_no_protocol_features)
{
    mkpath();
    struct fake fk;
    fake_prepare(&fk, 0, M_NONE, 0);
    fk.features = 1ull << VIO_F_VERSION_1;
    fake_go(&fk);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    uint64_t pf = 1;
    ck_assert_int_eq(vio_vhost_get_protocol_features(v, &pf), 0);
    ck_assert_uint_eq(pf, 0);
    unsigned u;
    ck_assert_int_eq(vio_vhost_get_queue_num(v, &u), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_vring_enable(v, 0, true), -ENOTSUP);
    uint8_t b[4];
    ck_assert_int_eq(vio_vhost_get_config(v, 0, b, 4), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_status(v, 1), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_max_mem_slots(v, &u), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_log_base(v, 0, 0, 4096), -ENOTSUP);
    /* no REPLY_ACK: requests without a reply body return at once */
    ck_assert_int_eq(vio_vhost_set_owner(v), 0);
    ck_assert_int_eq(vio_vhost_set_features(v, 1ull << 33), -EINVAL); /* not offered */
    ck_assert_int_eq(vio_vhost_set_features(v, 1ull << VIO_F_VERSION_1), 0);
    ck_assert_int_eq(vio_vhost_get_vring_base(v, 0, &u), 0);
    ck_assert_uint_eq(u, 7);
    vio_vhost_free(v);
    fake_stop(&fk);
    rmpath();
}
END_TEST

/* The backend refuses SET_FEATURES: negotiation fails with its errno, sent once, and the
 * memory table never goes out. */
START_TEST(t_adapter_refused)
{
    int fds0 = count_fds();
    mkpath();
    struct fake fk;
    fake_start(&fk, VU_SET_FEATURES, M_ACK_FAIL, 0);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    int memfd = memfd_create("vio-fe-ref", MFD_CLOEXEC);
    struct vio_vhost_mem_region reg = {.guest_addr = 0, .size = 0x10000, .user_addr = 0x7000000,
                                       .fd = memfd};
    struct vio_vhost_driver_config dc = {.struct_size = sizeof(dc), .vhost = v, .regions = &reg,
                                         .num_regions = 1, .net_backend_fd = -1};
    struct vio_vhost_driver *d;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), 0);
    struct vio_driver drv = vio_vhost_driver_get(d);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&drv, 0, &feat), -EIO);
    ck_assert(vio_vhost_connected(v));
    vio_vhost_driver_free(d);
    vio_vhost_free(v);
    fake_stop(&fk);
    ck_assert_uint_eq(atomic_load(&fk.seen[VU_SET_OWNER]), 1);
    ck_assert_uint_eq(atomic_load(&fk.seen[VU_SET_FEATURES]), 1);
    ck_assert_uint_eq(atomic_load(&fk.seen[VU_SET_MEM_TABLE]), 0);
    ck_assert_uint_ge(atomic_load(&fk.seen[VU_SET_STATUS]), 3); /* ACK, DRIVER, FAILED */
    close(memfd);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* A backend with STATUS whose status reads back without FEATURES_OK did not take the
 * features: the driver's negotiation sees it (spec 3.1.1 step 6). */
START_TEST(t_adapter_status_refused)
{
    mkpath();
    struct fake fk;
    fake_start(&fk, 0, M_NONE, 0); /* GET_STATUS answers ACKNOWLEDGE only */
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    int memfd = memfd_create("vio-fe-st", MFD_CLOEXEC);
    struct vio_vhost_mem_region reg = {.guest_addr = 0, .size = 0x10000, .user_addr = 0x7000000,
                                       .fd = memfd};
    struct vio_vhost_driver_config dc = {.struct_size = sizeof(dc), .vhost = v, .regions = &reg,
                                         .num_regions = 1, .net_backend_fd = -1};
    struct vio_vhost_driver *d;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), 0);
    struct vio_driver drv = vio_vhost_driver_get(d);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_negotiate(&drv, 0, &feat), -EPROTO);
    vio_vhost_driver_free(d);
    vio_vhost_free(v);
    fake_stop(&fk);
    ck_assert_uint_eq(atomic_load(&fk.seen[VU_SET_FEATURES]), 1);
    ck_assert_uint_eq(atomic_load(&fk.seen[VU_SET_MEM_TABLE]), 1);
    close(memfd);
    rmpath();
}
END_TEST

/* A new backend that negotiates less than the old one is refused on reconnect. */
START_TEST(t_reconnect_mismatch)
{
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    struct fake fk;
    fake_start(&fk, VU_SET_OWNER, M_CLOSE, 0);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    cfg.reconnect = true;
    cfg.timeout_ms = 500;
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    ck_assert_int_eq(vio_vhost_set_features(v, 1ull << VIO_F_VERSION_1), 0);
    ck_assert_int_eq(vio_vhost_set_vring_num(v, 0, 64), 0);
    ck_assert_int_eq(vio_vhost_set_owner(v), -ENOTCONN); /* the fake closes on it */
    fake_stop(&fk);
    /* fewer protocol features */
    fake_prepare(&fk, 0, M_NONE, 0);
    fk.pf &= ~(1ull << VU_PF_STATUS);
    fake_go(&fk);
    ck_assert_int_eq(vio_vhost_reconnect(v), -EPROTO);
    ck_assert(!vio_vhost_connected(v));
    fake_stop(&fk);
    /* VERSION_1 no longer offered */
    fake_prepare(&fk, 0, M_NONE, 0);
    fk.features = 1ull << VU_F_PROTOCOL_FEATURES;
    fake_go(&fk);
    ck_assert_int_eq(vio_vhost_reconnect(v), -EPROTO);
    ck_assert(!vio_vhost_connected(v));
    fake_stop(&fk);
    /* the same as before: the state is re-sent */
    fake_start(&fk, 0, M_NONE, 0);
    ck_assert_int_eq(vio_vhost_reconnect(v), 0);
    ck_assert(vio_vhost_connected(v));
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_RECONNECTED], 1);
    unsigned base;
    ck_assert_int_eq(vio_vhost_get_vring_base(v, 0, &base), 0);
    ck_assert_uint_eq(base, 7);
    vio_vhost_free(v);
    fake_stop(&fk);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* The fake backend sends a backend request (no payload) on the channel @p b. */
static void breq_send(int b, uint32_t req, uint32_t flags, int fd)
{
    fake_send(b, req, flags, NULL, 0, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

/* The backend request channel: config change with and without an ack, unknown codes. */
START_TEST(t_backend_req)
{
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    atomic_store(&n_errors, 0);
    struct fake fk;
    fake_start(&fk, 0, M_NONE, 0);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    int b = atomic_exchange(&fk.breq, -1); /* the channel is the test's from here */
    ck_assert_int_ge(b, 0);
    struct vu_msg m;
    /* CONFIG_CHANGE_MSG, no ack wanted */
    breq_send(b, VU_BACKEND_CONFIG_CHANGE_MSG, VU_VERSION, -1);
    struct pollfd p = {.fd = vio_vhost_fd(v), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    ck_assert_int_eq(vio_vhost_handle(v), 0);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_CONFIG_CHANGED], 1);
    /* with NEED_REPLY: acked with 0 */
    breq_send(b, VU_BACKEND_CONFIG_CHANGE_MSG, VU_VERSION | VU_FLAG_NEED_REPLY, -1);
    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    ck_assert_int_eq(vio_vhost_handle(v), 0);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_CONFIG_CHANGED], 2);
    struct pollfd pb = {.fd = b, .events = POLLIN};
    ck_assert_int_eq(poll(&pb, 1, 1000), 1);
    ck_assert_int_eq(vu_msg_recv(b, &m), 0);
    ck_assert_uint_eq(m.hdr.request, VU_BACKEND_CONFIG_CHANGE_MSG);
    ck_assert_uint_eq(m.hdr.flags, VU_VERSION | VU_FLAG_REPLY);
    ck_assert_uint_eq(m.hdr.size, 8);
    ck_assert_uint_eq(m.p.u64, 0);
    /* an unknown code with an fd and NEED_REPLY: refused (ack 1), logged, fd closed */
    int efd = eventfd(0, EFD_CLOEXEC);
    breq_send(b, 77, VU_VERSION | VU_FLAG_NEED_REPLY, efd);
    close(efd);
    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    ck_assert_int_eq(vio_vhost_handle(v), 0);
    ck_assert_int_gt(atomic_load(&n_errors), 0);
    ck_assert_int_eq(poll(&pb, 1, 1000), 1);
    ck_assert_int_eq(vu_msg_recv(b, &m), 0);
    ck_assert_uint_eq(m.hdr.request, 77);
    ck_assert_uint_eq(m.p.u64, 1);
    ck_assert(vio_vhost_connected(v));
    /* a request with the REPLY bit: a protocol violation, the connection is dropped */
    breq_send(b, VU_BACKEND_CONFIG_CHANGE_MSG, VU_VERSION | VU_FLAG_REPLY, -1);
    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    ck_assert_int_eq(vio_vhost_handle(v), -ENOTCONN);
    ck_assert(!vio_vhost_connected(v));
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], 1);
    ck_assert_int_eq(vio_vhost_handle(v), -ENOTCONN);
    vio_vhost_free(v);
    fake_stop(&fk);
    close(b);
    rmpath();
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* Malformed backend requests: each drops the connection at vio_vhost_handle(). */
static const struct bad_breq {
    const char *name;
    uint32_t flags;
    uint32_t size;     /* announced payload size */
    uint32_t sent;     /* payload bytes really sent */
    bool fd;
} bad_breq[] = {
    {"reply bit", VU_VERSION | VU_FLAG_REPLY, 0, 0, false},
    {"version 2", 2, 0, 0, false},
    {"unknown flag", VU_VERSION | 0x100, 0, 0, false},
    {"config change with 4 bytes", VU_VERSION, 4, 4, false},
    {"config change with a u64 of 1", VU_VERSION, 8, 8, false},
    {"config change with an fd", VU_VERSION, 0, 0, true},
    {"truncated", VU_VERSION, 8, 4, false},
    {"oversized", VU_VERSION, 4096, 0, false},
};

START_TEST(t_backend_req_bad)
{
    const struct bad_breq *c = &bad_breq[_i];
    int fds0 = count_fds();
    mkpath();
    memset(ev_count, 0, sizeof(ev_count));
    atomic_store(&n_errors, 0);
    struct fake fk;
    fake_start(&fk, 0, M_NONE, 0);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    int b = atomic_exchange(&fk.breq, -1);
    ck_assert_int_ge(b, 0);
    struct vu_hdr h = {.request = VU_BACKEND_CONFIG_CHANGE_MSG, .flags = c->flags, .size = c->size};
    uint8_t payload[8] = {1};
    uint8_t msg[sizeof(h) + sizeof(payload)];
    memcpy(msg, &h, sizeof(h));
    memcpy(msg + sizeof(h), payload, c->sent);
    struct vu_msg m;
    memset(&m, 0, sizeof(m));
    if (c->fd) {
        int e = eventfd(0, EFD_CLOEXEC);
        fake_send(b, VU_BACKEND_CONFIG_CHANGE_MSG, c->flags, NULL, 0, &e, 1);
        close(e);
    } else {
        ck_assert_int_eq(send(b, msg, sizeof(h) + c->sent, MSG_NOSIGNAL), (ssize_t)(sizeof(h) + c->sent));
    }
    struct pollfd p = {.fd = vio_vhost_fd(v), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    ck_assert_msg(vio_vhost_handle(v) == -ENOTCONN, "%s", c->name);
    ck_assert(!vio_vhost_connected(v));
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_DISCONNECTED], 1);
    ck_assert_int_eq(ev_count[VIO_VHOST_EV_CONFIG_CHANGED], 0);
    ck_assert_int_gt(atomic_load(&n_errors), 0);
    vio_vhost_free(v);
    fake_stop(&fk);
    close(b);
    rmpath();
    ck_assert_msg(count_fds() == fds0, "%s: fd leak", c->name);
}
END_TEST

/* Adapter argument rules. */
START_TEST(t_adapter_args)
{
    mkpath();
    struct fake fk;
    fake_start(&fk, 0, M_NONE, 0);
    struct vio_vhost_user_frontend_config cfg = fe_cfg(false);
    struct vio_vhost *v;
    ck_assert_int_eq(vio_vhost_user_connect(&cfg, &v), 0);
    struct vio_vhost_mem_region reg = {.guest_addr = 0x1000, .size = 0x10000,
                                       .user_addr = 0x7000000, .fd = 0};
    struct vio_vhost_driver_config dc = {.struct_size = sizeof(dc), .vhost = v, .regions = &reg,
                                         .num_regions = 1, .net_backend_fd = -1};
    struct vio_vhost_driver *d;
    ck_assert_int_eq(vio_vhost_driver_new(NULL, &d), -EINVAL);
    dc.num_regions = 0;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), -EINVAL);
    dc.num_regions = 1;
    dc.max_queue_size = 100;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), -EINVAL);
    dc.max_queue_size = 0;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), 0);
    struct vio_driver drv = vio_vhost_driver_get(d);
    ck_assert_int_eq(vio_driver_num_queues(&drv), 2);
    ck_assert_int_eq(vio_driver_queue_max_size(&drv, 1), 1024);
    ck_assert_int_eq(vio_driver_queue_max_size(&drv, 2), -ERANGE);
    ck_assert_int_ge(vio_vhost_driver_kick_fd(d, 1), 0);
    ck_assert_int_eq(vio_vhost_driver_kick_fd(d, 2), -1);
    ck_assert_int_eq(vio_vhost_driver_call_fd(NULL, 0), -1);
    uint64_t f;
    ck_assert_int_eq(vio_driver_get_features(&drv, &f), 0);
    ck_assert_uint_eq(f, 1ull << VIO_F_VERSION_1); /* PROTOCOL_FEATURES hidden */
    ck_assert_int_eq(vio_driver_notify(&drv, 0), -EINVAL); /* not enabled */
    ck_assert_int_eq(vio_driver_notify(&drv, 9), -ERANGE);
    ck_assert_int_eq(vio_driver_queue_enable(&drv, 0), -EINVAL); /* not set up */
    struct vio_driver_queue q = {.size = 64, .desc = 0x1000, .driver = 0x2000, .device = 0x3000};
    ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &q), 0);
    q.desc = 0x1008;
    ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &q), -EINVAL); /* misaligned */
    q.desc = 0x1000;
    q.size = 2048;
    ck_assert_int_eq(vio_driver_queue_setup(&drv, 0, &q), -ERANGE);
    q.size = 64;
    q.device = 0x100000; /* outside the region */
    ck_assert_int_eq(vio_driver_queue_setup(&drv, 1, &q), 0);
    ck_assert_int_eq(vio_driver_queue_enable(&drv, 1), -EFAULT);
    ck_assert_int_eq(vio_driver_set_status(&drv, 0), -EINVAL);
    ck_assert_int_eq(vio_driver_ack_interrupt(&drv), 0);
    vio_vhost_driver_free(d);
    vio_vhost_driver_free(NULL);
    vio_vhost_free(v);
    fake_stop(&fk);
    rmpath();
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The adapter over a kernel-kind frontend (a recording fake ops table)      */

struct kfake {
    struct vio_vhost base;
    char calls[1024];
    uint64_t features;
    struct vio_vhost_vring_addr addr[2];
    unsigned nmem;
    int backend_fd[2];
};

static void kf_rec(struct vio_vhost *v, const char *fmt, unsigned a, int b)
{
    struct kfake *k = (struct kfake *)v;
    size_t n = strlen(k->calls);
    snprintf(k->calls + n, sizeof(k->calls) - n, fmt, a, b);
}

static int kf_owner(struct vio_vhost *v)
{
    kf_rec(v, "owner%u%d ", 0, 0);
    return 0;
}
static int kf_get_features(struct vio_vhost *v, uint64_t *f)
{
    (void)v;
    *f = (1ull << VIO_F_VERSION_1) | (1ull << 30) | (1ull << 26) | (1ull << VIO_NET_F_MRG_RXBUF);
    return 0;
}
static int kf_set_features(struct vio_vhost *v, uint64_t f)
{
    ((struct kfake *)v)->features = f;
    kf_rec(v, "features%u%d ", 0, 0);
    return 0;
}
static int kf_mem(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n)
{
    (void)r;
    ((struct kfake *)v)->nmem = n;
    kf_rec(v, "mem%u%d ", n, 0);
    return 0;
}
static int kf_num(struct vio_vhost *v, unsigned i, unsigned n)
{
    kf_rec(v, "num%u:%d ", i, (int)n);
    return 0;
}
static int kf_addr(struct vio_vhost *v, unsigned i, const struct vio_vhost_vring_addr *a)
{
    ((struct kfake *)v)->addr[i & 1] = *a;
    kf_rec(v, "addr%u%d ", i, 0);
    return 0;
}
static int kf_base(struct vio_vhost *v, unsigned i, unsigned b)
{
    kf_rec(v, "base%u:%d ", i, (int)b);
    return 0;
}
static int kf_get_base(struct vio_vhost *v, unsigned i, unsigned *b)
{
    *b = 5;
    kf_rec(v, "getbase%u%d ", i, 0);
    return 0;
}
static int kf_kick(struct vio_vhost *v, unsigned i, int fd)
{
    kf_rec(v, "kick%u%d ", i, 0);
    return fd >= 0 ? 0 : -EINVAL;
}
static int kf_call(struct vio_vhost *v, unsigned i, int fd)
{
    kf_rec(v, "call%u%d ", i, 0);
    return fd >= 0 ? 0 : -EINVAL;
}
static int kf_net(struct vio_vhost *v, unsigned i, int fd)
{
    ((struct kfake *)v)->backend_fd[i & 1] = fd;
    kf_rec(v, "net%u:%d ", i, fd);
    return 0;
}

static const struct vio_vhost_ops kf_ops = {
    .kind = VIO_VHOST_KERNEL, .set_owner = kf_owner, .get_features = kf_get_features,
    .set_features = kf_set_features, .set_mem_table = kf_mem, .set_vring_num = kf_num,
    .set_vring_addr = kf_addr, .set_vring_base = kf_base, .get_vring_base = kf_get_base,
    .set_vring_kick = kf_kick, .set_vring_call = kf_call, .net_set_backend = kf_net};

START_TEST(t_adapter_kernel)
{
    int fds0 = count_fds();
    struct kfake k = {.base = {.ops = &kf_ops}};
    struct vio_vhost_mem_region reg = {.guest_addr = 0x100000, .size = 0x100000,
                                       .user_addr = 0x7f0000000000ull, .fd = -1};
    struct vio_vhost_driver_config dc = {.struct_size = sizeof(dc), .vhost = &k.base,
                                         .regions = &reg, .num_regions = 1, .max_queue_size = 256,
                                         .net_backend_fd = 42};
    struct vio_vhost_driver *d;
    ck_assert_int_eq(vio_vhost_driver_new(&dc, &d), 0);
    struct vio_driver drv = vio_vhost_driver_get(d);
    uint64_t feat;
    ck_assert_int_eq(vio_driver_get_features(&drv, &feat), 0);
    ck_assert_uint_eq(feat, (1ull << VIO_F_VERSION_1) | (1ull << VIO_NET_F_MRG_RXBUF));
    ck_assert_int_eq(vio_driver_negotiate(&drv, 1ull << VIO_NET_F_MRG_RXBUF, &feat), 0);
    ck_assert_uint_eq(k.features, (1ull << VIO_F_VERSION_1) | (1ull << VIO_NET_F_MRG_RXBUF));
    ck_assert_uint_eq(k.nmem, 1);
    uint8_t st;
    ck_assert_int_eq(vio_driver_get_status(&drv, &st), 0);
    ck_assert_uint_eq(st, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
    for (unsigned i = 0; i < 2; i++) {
        struct vio_driver_queue q = {.size = 256, .desc = 0x110000 + i * 0x10000,
                                     .driver = 0x111000 + i * 0x10000,
                                     .device = 0x112000 + i * 0x10000};
        ck_assert_int_eq(vio_driver_queue_setup(&drv, i, &q), 0);
        ck_assert_int_eq(vio_driver_queue_enable(&drv, i), 0);
        ck_assert_uint_eq(k.addr[i].desc, 0x7f0000010000ull + i * 0x10000);
        ck_assert_uint_eq(k.addr[i].avail, 0x7f0000011000ull + i * 0x10000);
        ck_assert_uint_eq(k.addr[i].used, 0x7f0000012000ull + i * 0x10000);
        ck_assert_uint_eq(k.addr[i].log_guest_addr, 0x112000 + i * 0x10000);
        ck_assert_int_eq(k.backend_fd[i], 42);
    }
    ck_assert_int_eq(vio_driver_queue_enable(&drv, 0), -EBUSY);
    ck_assert_str_eq(k.calls, "owner00 features00 mem10 num0:256 base0:0 addr00 kick00 call00 "
                              "net0:42 num1:256 base1:0 addr10 kick10 call10 net1:42 ");
    k.calls[0] = 0;
    /* notify: the ring's kick eventfd */
    ck_assert_int_eq(vio_driver_notify(&drv, 1), 0);
    uint64_t cnt;
    ck_assert_int_eq(read(vio_vhost_driver_kick_fd(d, 1), &cnt, 8), 8);
    ck_assert_uint_eq(cnt, 1);
    /* the backend signals ring 0: ack_interrupt sees it once */
    cnt = 1;
    ck_assert_int_eq(write(vio_vhost_driver_call_fd(d, 0), &cnt, 8), 8);
    ck_assert_int_eq(vio_driver_ack_interrupt(&drv), VIO_DRIVER_INT_VRING);
    ck_assert_int_eq(vio_driver_ack_interrupt(&drv), 0);
    /* no config space in vhost-net */
    uint8_t b[4];
    ck_assert_int_eq(vio_driver_config_read(&drv, 0, b, 4), -ENOTSUP);
    /* reset: the backend detached and the ring stopped, for every started ring */
    ck_assert_int_eq(vio_driver_reset(&drv), 0);
    ck_assert_str_eq(k.calls, "net0:-1 getbase00 net1:-1 getbase10 ");
    ck_assert_int_eq(vio_driver_get_status(&drv, &st), 0);
    ck_assert_uint_eq(st, 0);
    ck_assert_int_eq(vio_driver_notify(&drv, 0), -EINVAL);
    k.calls[0] = 0;
    vio_vhost_driver_free(d); /* nothing started: nothing to stop */
    ck_assert_str_eq(k.calls, "");
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vhost_fe");
    TCase *t = tcase_create("backend");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, t_client_traffic);
    tcase_add_test(t, t_server_traffic);
    tcase_add_test(t, t_mem_slots);
    tcase_add_test(t, t_more_ops);
    tcase_add_test(t, t_queue_num_range);
    tcase_add_test(t, t_connect_errors);
    tcase_add_test(t, t_reconnect);
    tcase_add_test(t, t_no_reconnect);
    suite_add_tcase(s, t);
    t = tcase_create("hostile");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, t_hostile, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(t, t_no_protocol_features);
    tcase_add_test(t, t_backend_req);
    tcase_add_loop_test(t, t_backend_req_bad, 0, (int)(sizeof(bad_breq) / sizeof(bad_breq[0])));
    tcase_add_test(t, t_reconnect_mismatch);
    tcase_add_test(t, t_adapter_args);
    tcase_add_test(t, t_adapter_refused);
    tcase_add_test(t, t_adapter_status_refused);
    tcase_add_test(t, t_adapter_kernel);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE must kill the test: the frontend never raises it */
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
