/* SPDX-License-Identifier: MIT */
/*
 * vio-vhost-user-ev: a vhost-user virtio-net back-end on a libev loop, in one thread.
 *
 * The smallest complete server: a loopback backend (every frame the guest sends comes back
 * to it), the virtio-net device model on top, and the vhost-user transport driven by
 * libvirtio-ev's vio_ev_vhost_user_new(), which watches the control socket, the rings' kick
 * eventfds and the backend's fds and runs the reconnect timer. The program itself only
 * parses options, handles SIGINT / SIGTERM and prints the frames each session moved.
 *
 * Build against the installed library: cc main.c $(pkg-config --cflags --libs libvirtio-ev) -lev
 * Uses only the installed public headers, as any application would.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ev.h>

#include <virtio/ev.h>
#include <virtio/net.h>
#include <virtio/net_backend.h>
#include <virtio/vhost_user.h>

#define PROG "vio-vhost-user-ev"
#define MAX_PAIRS 8u

struct opts {
    const char *socket_path;
    bool client;
    unsigned reconnect_ms;
    unsigned queues;
    unsigned queue_size;
    bool mac_swap;
    bool verbose;
};

struct server {
    struct opts o;
    struct ev_loop *loop;
    struct vio_net_backend be;
    bool be_open;
    struct vio_net_dev *net;
    struct vio_ev_vhost_user *evu;
    ev_signal sigint, sigterm;
    unsigned session;
    uint64_t base_tx[MAX_PAIRS], base_rx[MAX_PAIRS], base_drops[MAX_PAIRS]; /* at session start */
};

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    const struct server *s = opaque;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level >= VIO_LOG_DEBUG && !s->o.verbose)
        return;
    fprintf(stderr, "%s: %s: %s: %s\n", PROG, object,
            level >= 0 && level <= VIO_LOG_DEBUG ? names[level] : "?", msg);
}

/* Frames moved on queue pair @p qp since the session started (TX = from the guest). */
static void pair_counts(struct server *s, unsigned qp, uint64_t *tx, uint64_t *rx,
                        uint64_t *drops)
{
    struct vio_net_queue_stats rs = {0}, ts = {0};
    vio_net_dev_get_stats(s->net, 2 * qp, &rs);
    vio_net_dev_get_stats(s->net, 2 * qp + 1, &ts);
    *tx = ts.packets;
    *rx = rs.packets;
    *drops = 0;
    for (unsigned k = 0; k < VIO_NET_DROP_SLOTS; k++)
        *drops += rs.drops[k] + ts.drops[k];
}

static void on_session(void *opaque, bool connected)
{
    struct server *s = opaque;
    if (connected) {
        s->session++;
        for (unsigned qp = 0; qp < s->o.queues; qp++)
            pair_counts(s, qp, &s->base_tx[qp], &s->base_rx[qp], &s->base_drops[qp]);
        printf("session %u: front-end connected\n", s->session);
    } else {
        for (unsigned qp = 0; qp < s->o.queues; qp++) {
            uint64_t tx, rx, drops;
            pair_counts(s, qp, &tx, &rx, &drops);
            printf("session %u ended: pair %u tx=%" PRIu64 " rx=%" PRIu64 " drops=%" PRIu64 "\n",
                   s->session, qp, tx - s->base_tx[qp], rx - s->base_rx[qp],
                   drops - s->base_drops[qp]);
        }
        /* a client that does not reconnect has nothing more to do */
        if (s->o.client && !s->o.reconnect_ms)
            ev_break(s->loop, EVBREAK_ALL);
    }
    fflush(stdout);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    fprintf(stderr, "%s: %s: shutting down\n", PROG, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
    ev_break(loop, EVBREAK_ALL);
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --socket PATH [options]\n"
"\n"
"A vhost-user virtio-net back-end on a libev loop (one thread): QEMU (-netdev vhost-user)\n"
"or DPDK virtio_user connect to PATH, and every frame the guest sends comes back to it\n"
"(loopback backend). At the end of each session it prints the frames each queue pair moved.\n"
"\n"
"  -s, --socket PATH     vhost-user unix socket (created 0600 in server mode)\n"
"  -c, --client          connect to PATH instead (the front-end listens: QEMU server=on)\n"
"      --reconnect MS    client: retry interval after a failure or a lost session\n"
"                        (default 1000; 0 = exit when the session ends)\n"
"  -q, --queues N        queue pairs (1..%u, default 1)\n"
"      --queue-size N    largest ring size accepted (power of 2, 64..32768, default 1024)\n"
"      --mac-swap        swap source and destination MAC on the way back\n"
"  -v, --verbose         debug messages\n"
"  -h, --help            this text\n"
"\n"
"Stop with SIGINT or SIGTERM (exit status 0).\n",
            MAX_PAIRS);
}

static bool parse_uint(const char *opt, const char *s, unsigned long min, unsigned long max,
                       unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "%s: %s: expected a number from %lu to %lu, got '%s'\n", PROG, opt, min,
                max, s);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* 0: run; 1: exit 0 (--help); 2: bad command line. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    enum { OPT_RECONNECT = 256, OPT_QSIZE, OPT_MAC_SWAP };
    static const struct option lo[] = {
        {"socket", required_argument, NULL, 's'},  {"client", no_argument, NULL, 'c'},
        {"reconnect", required_argument, NULL, OPT_RECONNECT},
        {"queues", required_argument, NULL, 'q'},  {"queue-size", required_argument, NULL, OPT_QSIZE},
        {"mac-swap", no_argument, NULL, OPT_MAC_SWAP}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    *o = (struct opts){.reconnect_ms = 1000, .queues = 1, .queue_size = 1024};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":s:cq:vh", lo, NULL)) != -1) {
        switch (c) {
        case 's': o->socket_path = optarg; break;
        case 'c': o->client = true; break;
        case OPT_RECONNECT:
            if (!parse_uint("--reconnect", optarg, 0, 3600000, &o->reconnect_ms))
                return 2;
            break;
        case 'q':
            if (!parse_uint("--queues", optarg, 1, MAX_PAIRS, &o->queues))
                return 2;
            break;
        case OPT_QSIZE:
            if (!parse_uint("--queue-size", optarg, 64, 32768, &o->queue_size))
                return 2;
            if (o->queue_size & (o->queue_size - 1)) {
                fprintf(stderr, "%s: --queue-size: %u is not a power of 2\n", PROG,
                        o->queue_size);
                return 2;
            }
            break;
        case OPT_MAC_SWAP: o->mac_swap = true; break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); return 1;
        case ':':
            fprintf(stderr, "%s: %s needs a value (see --help)\n", PROG, argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", PROG, argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[optind]);
        return 2;
    }
    if (!o->socket_path || !*o->socket_path) {
        fprintf(stderr, "%s: missing --socket PATH (see --help)\n", PROG);
        return 2;
    }
    return 0;
}

static int server_open(struct server *s)
{
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = s->o.queues,
                                        .mac_swap = s->o.mac_swap, .log = log_cb,
                                        .log_opaque = s};
    int rc = vio_net_loopback_open(&bc, &s->be);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot open the loopback backend: %s\n", PROG, strerror(-rc));
        return rc;
    }
    s->be_open = true;
    struct vio_net_dev_config nc = {
        .struct_size = sizeof(nc), .backend = &s->be, .max_queue_pairs = (uint16_t)s->o.queues,
        .queue_size = (uint16_t)s->o.queue_size,
        .log = log_cb, .log_opaque = s};
    rc = vio_net_dev_new(&nc, &s->net);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot create the virtio-net device: %s\n", PROG, strerror(-rc));
        return rc;
    }
    struct vio_device *dev = vio_net_dev_device(s->net);
    struct vio_vhost_user_config vc = {
        .struct_size = sizeof(vc), .socket_path = s->o.socket_path, .client = s->o.client,
        .reconnect_ms = s->o.client ? s->o.reconnect_ms : 0, .dev = dev,
        .max_queue_size = (uint16_t)s->o.queue_size,
        .queue_num = vio_device_frontend_queue_num(dev), /* queue pairs, as frontends count */
        .log = log_cb, .log_opaque = s, .opaque = s, .session = on_session};
    /* bind() creates the socket file: 0600 through the umask, never wider even for an instant */
    mode_t old = umask(0177);
    rc = vio_ev_vhost_user_new(s->loop, &vc, &s->evu);
    umask(old);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot %s %s: %s\n", PROG, s->o.client ? "connect to" : "listen on",
                s->o.socket_path, strerror(-rc));
        return rc;
    }
    fprintf(stderr, "%s: %s %s, %u queue pair(s), loopback%s\n", PROG,
            s->o.client ? "client of" : "listening on", s->o.socket_path, s->o.queues,
            s->o.mac_swap ? " with MAC swap" : "");
    return 0;
}

static void server_close(struct server *s)
{
    vio_ev_vhost_user_free(s->evu); /* ends a session (printing its counters) first */
    s->evu = NULL;
    vio_net_dev_free(s->net);
    s->net = NULL;
    if (s->be_open)
        vio_net_backend_destroy(&s->be);
    s->be_open = false;
}

int main(int argc, char **argv)
{
    static struct server s;
    int r = parse_args(argc, argv, &s.o);
    if (r)
        return r == 1 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    s.loop = ev_default_loop(0);
    if (!s.loop) {
        fprintf(stderr, "%s: cannot create the libev loop\n", PROG);
        return 1;
    }
    int code = 0;
    if (server_open(&s) == 0) {
        ev_signal_init(&s.sigint, on_signal, SIGINT);
        ev_signal_init(&s.sigterm, on_signal, SIGTERM);
        ev_signal_start(s.loop, &s.sigint);
        ev_signal_start(s.loop, &s.sigterm);
        ev_run(s.loop, 0);
        ev_signal_stop(s.loop, &s.sigint);
        ev_signal_stop(s.loop, &s.sigterm);
    } else {
        code = 1;
    }
    server_close(&s);
    ev_loop_destroy(s.loop);
    return code;
}
