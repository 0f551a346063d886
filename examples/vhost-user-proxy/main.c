/* SPDX-License-Identifier: MIT */
/*
 * vio-vhost-user-proxy: a vhost-user back-end whose virtio-net queues run in another
 * vhost-user back-end. A front-end (QEMU, DPDK virtio_user, our own) connects to --listen; the
 * offload device (virtio/vhost_dev.h) hands its rings, its memory fds and its kick / call
 * eventfds to the back-end at --backend, so frames move between the front-end's rings and that
 * back-end directly: this process handles the control messages only and never touches a ring.
 * The configuration space comes from an in-process virtio-net model (MAC, status, MTU).
 *
 * SIGUSR1 prints the state of every ring ("ring q=...", the transport's own indices next to
 * those in the shared rings) and the offload counters; SIGINT / SIGTERM end the program.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/vhost.h>
#include <virtio/vhost_dev.h>
#include <virtio/vhost_user.h>

#define PROG "vio-vhost-user-proxy"
#define MAX_WATCHES 64

static int g_level = VIO_LOG_INFO;
static struct vio_vhost_dev *g_vd; /* for the frontend's event callback */

static void log_cb(void *opaque, int level, const char *obj, const char *msg)
{
    (void)opaque;
    if (level > g_level)
        return;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, PROG ": %s: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "?", obj,
            msg);
}

static void vhost_event(void *opaque, enum vio_vhost_event ev)
{
    (void)opaque;
    if (g_vd)
        vio_vhost_dev_event(g_vd, ev);
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --listen PATH --backend PATH [options]\n"
"A vhost-user virtio-net back-end at --listen whose queues run in the vhost-user back-end at\n"
"--backend (e.g. vio-vhost-user-net): the front-end's rings, memory and eventfds are handed\n"
"over; this process only relays the control path.\n"
"  -l, --listen PATH      socket the front-end connects to (we listen)\n"
"  -b, --backend PATH     socket of the back-end that runs the queues (it listens)\n"
"  -q, --queues N         queue pairs (default 1)\n"
"  -m, --mac MAC          MAC address in the config space (default 52:54:00:12:34:57)\n"
"      --stats SEC        also print the rings' state every SEC seconds (1..3600)\n"
"      --log-level L      error, warn, info (default) or debug\n"
"  -h, --help             this text\n"
"Signals: SIGUSR1 prints every ring's state and the offload counters to stdout.\n");
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff)
            return -1;
        mac[i] = (uint8_t)v[i];
    }
    return (mac[0] & 1) ? -1 : 0;
}

static void print_state(struct vio_vhost_user *vu, struct vio_vhost_dev *vd, unsigned nq)
{
    for (unsigned q = 0; q < nq; q++) {
        struct vio_vhost_user_queue_state qs;
        struct vio_queue_ring_state rs;
        if (vio_vhost_user_queue_state(vu, q, &qs) < 0)
            continue;
        int rc = vio_vhost_user_ring_state(vu, q, &rs);
        if (rc < 0)
            memset(&rs, 0, sizeof(rs));
        printf("ring q=%u started=%d running=%d offloaded=%d in_backend=%d size=%u "
               "transport_last_avail=%u transport_used=%u transport_inflight=%u "
               "ring_avail_idx=%u ring_used_idx=%u\n",
               q, qs.started, qs.running, qs.offloaded, vio_vhost_dev_queue_in_backend(vd, q),
               qs.size, rs.last_avail, rs.used_idx, rs.inflight, rs.avail_idx, rs.ring_used_idx);
    }
    struct vio_vhost_dev_stats st;
    if (vio_vhost_dev_get_stats(vd, &st) == 0)
        printf("offload rings_started=%" PRIu64 " rings_stopped=%" PRIu64 " mem_tables=%" PRIu64
               " errors=%" PRIu64 " backend_lost=%d status=0x%x\n",
               st.rings_started, st.rings_stopped, st.mem_tables, st.errors, st.backend_lost,
               vio_vhost_user_status(vu));
    printf("end\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *listen_path = NULL, *backend_path = NULL;
    unsigned pairs = 1;
    uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
    enum { O_LOGLEVEL = 256, O_STATS };
    int stats_ms = -1;
    static const struct option lo[] = {
        {"listen", required_argument, NULL, 'l'}, {"backend", required_argument, NULL, 'b'},
        {"queues", required_argument, NULL, 'q'}, {"mac", required_argument, NULL, 'm'},
        {"log-level", required_argument, NULL, O_LOGLEVEL}, {"help", no_argument, NULL, 'h'},
        {"stats", required_argument, NULL, O_STATS},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "l:b:q:m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'l': listen_path = optarg; break;
        case 'b': backend_path = optarg; break;
        case 'q': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 16) {
                fprintf(stderr, PROG ": --queues wants 1..16, not '%s'\n", optarg);
                return 2;
            }
            pairs = (unsigned)v;
            break;
        }
        case 'm':
            if (parse_mac(optarg, mac) < 0) {
                fprintf(stderr, PROG ": --mac wants a unicast MAC like 52:54:00:12:34:57\n");
                return 2;
            }
            break;
        case O_LOGLEVEL:
            if (!strcmp(optarg, "error")) g_level = VIO_LOG_ERROR;
            else if (!strcmp(optarg, "warn")) g_level = VIO_LOG_WARN;
            else if (!strcmp(optarg, "info")) g_level = VIO_LOG_INFO;
            else if (!strcmp(optarg, "debug")) g_level = VIO_LOG_DEBUG;
            else {
                fprintf(stderr, PROG ": --log-level wants error, warn, info or debug\n");
                return 2;
            }
            break;
        case O_STATS: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 3600) {
                fprintf(stderr, PROG ": --stats wants seconds (1..3600), not '%s'\n", optarg);
                return 2;
            }
            stats_ms = (int)v * 1000;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !listen_path || !backend_path) {
        fprintf(stderr, PROG ": --listen PATH and --backend PATH are required\n");
        usage(stderr);
        return 2;
    }

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);

    int rc, ret = 1;
    struct vio_vhost *vh = NULL;
    struct vio_net_backend nb = {0};
    struct vio_net_dev *model = NULL;
    struct vio_vhost_dev *vd = NULL;
    struct vio_vhost_user *vu = NULL;

    struct vio_vhost_user_frontend_config fc = {
        .struct_size = sizeof(fc), .path = backend_path, .num_queues = 2 * pairs,
        .event = vhost_event, .log = log_cb};
    rc = vio_vhost_user_connect(&fc, &vh);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot connect to the back-end at %s: %s\n", backend_path,
                strerror(-rc));
        goto out;
    }
    /* The model only serves the configuration space: its data queues never start, so its
     * network backend never moves a frame. */
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = pairs,
                                        .log = log_cb};
    rc = vio_net_loopback_open(&bc, &nb);
    if (rc == 0) {
        struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &nb,
                                        .mac_valid = true, .max_queue_pairs = (uint16_t)pairs,
                                        .log = log_cb};
        memcpy(nc.mac, mac, 6);
        rc = vio_net_dev_new(&nc, &model);
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot create the virtio-net model: %s\n", strerror(-rc));
        goto out;
    }
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhost = vh,
                                      .model = vio_net_dev_device(model), .net_backend_fd = -1,
                                      .log = log_cb};
    rc = vio_vhost_dev_new(&dc, &vd);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot create the offload device: %s\n", strerror(-rc));
        goto out;
    }
    g_vd = vd;
    struct vio_vhost_user_config uc = {.struct_size = sizeof(uc), .socket_path = listen_path,
                                       .dev = vio_vhost_dev_device(vd), .log = log_cb};
    rc = vio_vhost_user_new(&uc, &vu);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot listen on %s: %s\n", listen_path, strerror(-rc));
        goto out;
    }
    fprintf(stderr, PROG ": listening on %s, queues run in %s\n", listen_path, backend_path);
    unsigned nq = vio_device_num_queues(vio_vhost_dev_device(vd));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long long next_stats = stats_ms > 0 ? stats_ms : -1;

    for (;;) {
        struct vio_device_watch w[MAX_WATCHES];
        struct pollfd pfd[MAX_WATCHES + 1];
        int n = vio_vhost_user_watches(vu, w, MAX_WATCHES);
        if (n > MAX_WATCHES)
            n = MAX_WATCHES;
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = w[i].fd, .events = (short)w[i].events};
        pfd[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
        int tmo = vio_vhost_user_timeout_ms(vu);
        if (next_stats >= 0) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            long long now = (t.tv_sec - t0.tv_sec) * 1000LL + (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (now >= next_stats) {
                print_state(vu, vd, nq);
                next_stats = now + stats_ms;
            }
            long long left = next_stats - now;
            if (tmo < 0 || left < tmo)
                tmo = (int)left;
        }
        int r = poll(pfd, (nfds_t)n + 1, tmo);
        if (r < 0 && errno != EINTR)
            break;
        vio_vhost_user_tick(vu);
        if (pfd[n].revents & POLLIN) {
            struct signalfd_siginfo si;
            bool quit = false;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGUSR1)
                    print_state(vu, vd, nq);
                else
                    quit = true;
            }
            if (quit) {
                ret = 0;
                break;
            }
        }
        /* the control socket last: a message may replace the fds polled above */
        int ctl = -1;
        for (int i = 0; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (w[i].id == VIO_VU_WATCH_CONTROL)
                ctl = i;
            else
                vio_vhost_user_dispatch(vu, w[i].id, (unsigned)pfd[i].revents);
        }
        if (ctl >= 0)
            vio_vhost_user_dispatch(vu, w[ctl].id, (unsigned)pfd[ctl].revents);
    }

out:
    vio_vhost_user_free(vu);
    vio_vhost_dev_free(vd);
    vio_net_dev_free(model);
    vio_net_backend_destroy(&nb);
    vio_vhost_free(vh);
    if (sfd >= 0)
        close(sfd);
    return ret;
}
