/* SPDX-License-Identifier: MIT */
/*
 * The offload device (src/device/vhost_dev.c) against a recording fake vhost frontend (its
 * ops table, transport/vhost_internal.h) and a fake transport (the bind hooks): the feature
 * intersection, the exact vhost call sequence for vhost-user and for vhost-net, the control
 * queue kept by the model, the avail index read back at stop, the hooks' size rule, and a
 * back-end that vanishes.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arena.h"
#include "transport/vhost_internal.h"
#include "virtio/device.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/queue.h"
#include "virtio/vhost_dev.h"

/* ------------------------------------------------------------------------ */
/* A fake frontend: records each call as a line of text                      */

struct fake {
    struct vio_vhost base; /* first */
    enum vio_vhost_kind kind;
    uint64_t features;
    bool connected;
    int fd;                /* what vio_vhost_fd() returns */
    unsigned base_reply;   /* GET_VRING_BASE answer */
    const char *fail_op;   /* this op fails ... */
    int fail_rc;           /* ... with this */
    bool fail_drops;       /* and the failure disconnects */
    char log[64][96];
    unsigned n;
};

#define FK(v) ((struct fake *)(v))

static int rec(struct vio_vhost *v, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rec(struct vio_vhost *v, const char *op, const char *fmt, ...)
{
    struct fake *f = FK(v);
    if (!f->connected)
        return -ENOTCONN;
    if (f->fail_op && !strcmp(f->fail_op, op)) {
        if (f->fail_drops)
            f->connected = false;
        return f->fail_rc;
    }
    ck_assert_uint_lt(f->n, 64);
    char args[64] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
    }
    snprintf(f->log[f->n++], sizeof(f->log[0]), "%s%s%s", op, args[0] ? " " : "", args);
    return 0;
}

static int f_fd(const struct vio_vhost *v) { return FK(v)->fd; }
static bool f_connected(const struct vio_vhost *v) { return FK(v)->connected; }
static int f_handle(struct vio_vhost *v) { return FK(v)->connected ? 0 : -ENOTCONN; }
static int f_get_features(struct vio_vhost *v, uint64_t *x)
{
    *x = FK(v)->features;
    return FK(v)->connected ? 0 : -ENOTCONN;
}
static int f_set_features(struct vio_vhost *v, uint64_t x)
{
    return rec(v, "SET_FEATURES", "0x%llx", (unsigned long long)x);
}
static int f_set_owner(struct vio_vhost *v) { return rec(v, "SET_OWNER", NULL); }
static int f_reset(struct vio_vhost *v) { return rec(v, "RESET", NULL); }
static int f_set_mem_table(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n)
{
    return rec(v, "SET_MEM_TABLE", "%u gpa=0x%llx size=0x%llx uva=0x%llx fd=%d", n,
               (unsigned long long)r[0].guest_addr, (unsigned long long)r[0].size,
               (unsigned long long)r[0].user_addr, r[0].fd);
}
static int f_num(struct vio_vhost *v, unsigned i, unsigned n)
{
    return rec(v, "SET_VRING_NUM", "%u %u", i, n);
}
static int f_addr(struct vio_vhost *v, unsigned i, const struct vio_vhost_vring_addr *a)
{
    return rec(v, "SET_VRING_ADDR", "%u 0x%llx 0x%llx 0x%llx", i, (unsigned long long)a->desc,
               (unsigned long long)a->avail, (unsigned long long)a->used);
}
static int f_base(struct vio_vhost *v, unsigned i, unsigned b)
{
    return rec(v, "SET_VRING_BASE", "%u %u", i, b);
}
static int f_get_base(struct vio_vhost *v, unsigned i, unsigned *b)
{
    int rc = rec(v, "GET_VRING_BASE", "%u", i);
    if (rc == 0)
        *b = FK(v)->base_reply;
    return rc;
}
static int f_kick(struct vio_vhost *v, unsigned i, int fd)
{
    return rec(v, "SET_VRING_KICK", "%u %s", i, fd >= 0 ? "fd" : "-1");
}
static int f_call(struct vio_vhost *v, unsigned i, int fd)
{
    return rec(v, "SET_VRING_CALL", "%u %s", i, fd >= 0 ? "fd" : "-1");
}
static int f_err(struct vio_vhost *v, unsigned i, int fd)
{
    return rec(v, "SET_VRING_ERR", "%u %s", i, fd >= 0 ? "fd" : "-1");
}
static int f_enable(struct vio_vhost *v, unsigned i, bool on)
{
    return rec(v, "SET_VRING_ENABLE", "%u %d", i, on);
}
static int f_net_backend(struct vio_vhost *v, unsigned i, int fd)
{
    return rec(v, "NET_SET_BACKEND", "%u %d", i, fd);
}
static int f_queue_num(struct vio_vhost *v, unsigned *n)
{
    (void)v;
    *n = 2;
    return 0;
}

static const struct vio_vhost_ops user_ops = {
    .kind = VIO_VHOST_USER, .fd = f_fd, .handle = f_handle, .connected = f_connected,
    .get_features = f_get_features, .set_features = f_set_features, .set_owner = f_set_owner,
    .reset = f_reset, .get_queue_num = f_queue_num, .set_mem_table = f_set_mem_table,
    .set_vring_num = f_num, .set_vring_addr = f_addr, .set_vring_base = f_base,
    .get_vring_base = f_get_base, .set_vring_kick = f_kick, .set_vring_call = f_call,
    .set_vring_err = f_err, .set_vring_enable = f_enable, .net_set_backend = f_net_backend};

static const struct vio_vhost_ops kernel_ops = {
    .kind = VIO_VHOST_KERNEL, .fd = f_fd, .handle = f_handle, .connected = f_connected,
    .get_features = f_get_features, .set_features = f_set_features, .set_owner = f_set_owner,
    .reset = f_reset, .set_mem_table = f_set_mem_table, .set_vring_num = f_num,
    .set_vring_addr = f_addr, .set_vring_base = f_base, .get_vring_base = f_get_base,
    .set_vring_kick = f_kick, .set_vring_call = f_call, .set_vring_err = f_err,
    .net_set_backend = f_net_backend};

/* ------------------------------------------------------------------------ */
/* The environment: a net model, guest memory, a fake transport              */

#define VERSION_1 32u
#define EVENT_IDX 29u
#define LOG_ALL 26u
#define INDIRECT_DESC 28u
#define PROTOCOL_FEATURES 30u

struct env {
    struct fake fk;
    struct arena a;
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_vhost_dev *vd;
    struct vio_device *dev;
    struct vio_queue *q[3];
    struct rawring rr[3];
    int kick, call;
    /* the fake transport */
    unsigned claimed[3];
    unsigned needs_reset, config_changed;
    int watch_fd;
    unsigned watch_events;
    uint32_t watch_id;
};

static int t_mem_regions(void *o, struct vio_device_mem_region *out, unsigned cap)
{
    struct env *e = o;
    if (cap)
        out[0] = (struct vio_device_mem_region){
            .guest_addr = e->a.reg[0].gpa, .size = e->a.reg[0].size,
            .host_addr = (uint64_t)(uintptr_t)e->a.reg[0].host, .fd = -1, .fd_offset = 0};
    return 1;
}

static int t_queue_offload(void *o, unsigned qidx, struct vio_device_queue_offload *out)
{
    struct env *e = o;
    ck_assert_uint_lt(qidx, 3);
    ck_assert_uint_ge(out->struct_size, sizeof(*out));
    const struct rawring *r = &e->rr[qidx];
    *out = (struct vio_device_queue_offload){
        .struct_size = sizeof(*out), .kick_fd = e->kick, .call_fd = e->call, .err_fd = -1,
        .size = r->size, .base = vio_queue_get_last_avail(e->q[qidx]), .desc_gpa = r->desc,
        .avail_gpa = r->avail, .used_gpa = r->used,
        .desc_host = (uint64_t)(uintptr_t)arena_ptr(&e->a, r->desc),
        .avail_host = (uint64_t)(uintptr_t)arena_ptr(&e->a, r->avail),
        .used_host = (uint64_t)(uintptr_t)arena_ptr(&e->a, r->used)};
    e->claimed[qidx]++;
    return 0;
}

static void t_needs_reset(void *o) { ((struct env *)o)->needs_reset++; }
static void t_config_changed(void *o) { ((struct env *)o)->config_changed++; }
static void t_set_watch(void *o, int fd, unsigned ev, uint32_t id)
{
    struct env *e = o;
    if (id == VIO_VHOST_DEV_WATCH) {
        e->watch_fd = fd;
        e->watch_events = ev;
        e->watch_id = id;
    }
}

static uint64_t backend_offer(void)
{
    return (1ull << VERSION_1) | (1ull << EVENT_IDX) | (1ull << VIO_NET_F_MRG_RXBUF) |
           (1ull << LOG_ALL) | (1ull << PROTOCOL_FEATURES);
}

static void env_open(struct env *e, const struct vio_vhost_ops *ops, int net_fd)
{
    memset(e, 0, sizeof(*e));
    e->fk.base.ops = ops;
    e->fk.kind = ops->kind;
    e->fk.features = backend_offer();
    e->fk.connected = true;
    e->fk.fd = 99;
    e->watch_fd = -1;
    ck_assert_int_eq(arena_init_simple(&e->a, 0x100000, 1u << 20), 0);
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc)};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &e->be), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &e->be,
                                    .mac = {0x52, 0x54, 0, 1, 2, 3}, .mac_valid = true,
                                    .queue_size = 256, .ctrl_queue_size = 64};
    ck_assert_int_eq(vio_net_dev_new(&nc, &e->nd), 0);
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhost = &e->fk.base,
                                      .model = vio_net_dev_device(e->nd),
                                      .net_backend_fd = net_fd};
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &e->vd), 0);
    e->dev = vio_vhost_dev_device(e->vd);
    e->kick = eventfd(0, EFD_NONBLOCK);
    e->call = eventfd(0, EFD_NONBLOCK);
}

static void env_bind(struct env *e, uint32_t struct_size)
{
    struct vio_device_hooks h = {.struct_size = struct_size, .opaque = e,
                                 .needs_reset = t_needs_reset,
                                 .config_changed = t_config_changed, .set_watch = t_set_watch,
                                 .mem_regions = t_mem_regions,
                                 .queue_offload = t_queue_offload};
    ck_assert_int_eq(vio_device_bind(e->dev, &h), 0);
}

/* The transport's queue @p qidx, set up on a ring in the arena. */
static struct vio_queue *env_queue(struct env *e, unsigned qidx, uint64_t features)
{
    struct vio_device_queue_info qi;
    ck_assert_int_eq(vio_device_queue_info(e->dev, qidx, &qi), 0);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = qi.max_size,
                                  .index = (uint16_t)qidx, .dir = qi.dir};
    ck_assert_int_eq(vio_queue_new(&qc, &e->q[qidx]), 0);
    ck_assert_int_eq(rawring_init(&e->rr[qidx], &e->a, 64, 4), 0);
    ck_assert_int_eq(vio_queue_setup(e->q[qidx], e->a.mem, 64, features, e->rr[qidx].desc,
                                     e->rr[qidx].avail, e->rr[qidx].used), 0);
    return e->q[qidx];
}

static void env_close(struct env *e)
{
    vio_device_reset(e->dev);
    vio_device_bind(e->dev, NULL);
    vio_vhost_dev_free(e->vd);
    for (unsigned i = 0; i < 3; i++)
        vio_queue_free(e->q[i]);
    vio_net_dev_free(e->nd);
    vio_net_backend_destroy(&e->be);
    arena_fini(&e->a);
    close(e->kick);
    close(e->call);
}

static const char *line(const struct env *e, unsigned i)
{
    return i < e->fk.n ? e->fk.log[i] : "(none)";
}

/* ------------------------------------------------------------------------ */

START_TEST(test_features_intersection)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t model = vio_device_features(vio_net_dev_device(e.nd));
    uint64_t offer = vio_device_features(e.dev);
    /* what the back-end runs: only if it offers it */
    ck_assert(offer & (1ull << VERSION_1));
    ck_assert(offer & (1ull << EVENT_IDX));
    ck_assert(offer & (1ull << VIO_NET_F_MRG_RXBUF));
    ck_assert(!(offer & (1ull << INDIRECT_DESC))); /* the model offers it, not the back-end */
    ck_assert(model & (1ull << INDIRECT_DESC));
    /* the vhost-only bits never reach a driver */
    ck_assert(!(offer & (1ull << LOG_ALL)));
    ck_assert(!(offer & (1ull << PROTOCOL_FEATURES)));
    /* what the model serves alone stays */
    ck_assert(offer & (1ull << VIO_NET_F_MAC));
    ck_assert(offer & (1ull << VIO_NET_F_STATUS));
    ck_assert(offer & (1ull << VIO_NET_F_CTRL_VQ));
    /* and nothing the model does not offer */
    ck_assert_uint_eq(offer & ~model, 0);
    ck_assert_uint_eq(vio_device_id(e.dev), VIO_DEVICE_ID_NET);
    ck_assert_uint_eq(vio_device_num_queues(e.dev), 3);
    /* a bit the back-end lacks is refused */
    ck_assert_int_eq(vio_device_set_features(e.dev, offer | (1ull << INDIRECT_DESC)),
                     -ENOTSUP);
    ck_assert_uint_eq(e.fk.n, 0);
    env_close(&e);
}
END_TEST

START_TEST(test_user_sequence)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    env_bind(&e, sizeof(struct vio_device_hooks));
    ck_assert_int_eq(e.watch_fd, 99); /* the frontend's fd is watched */
    ck_assert_uint_eq(e.watch_events, VIO_WATCH_IN);
    uint64_t f = (1ull << VERSION_1) | (1ull << EVENT_IDX) | (1ull << VIO_NET_F_MAC);
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    ck_assert_str_eq(line(&e, 0), "SET_OWNER");
    char want[96];
    snprintf(want, sizeof(want), "SET_FEATURES 0x%llx",
             (unsigned long long)((1ull << VERSION_1) | (1ull << EVENT_IDX)));
    ck_assert_str_eq(line(&e, 1), want); /* MAC is the model's: not sent */

    struct vio_queue *q0 = env_queue(&e, 0, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), 0);
    ck_assert_uint_eq(e.claimed[0], 1);
    snprintf(want, sizeof(want), "SET_MEM_TABLE 1 gpa=0x100000 size=0x100000 uva=0x%llx fd=-1",
             (unsigned long long)(uintptr_t)e.a.reg[0].host);
    ck_assert_str_eq(line(&e, 2), want);
    ck_assert_str_eq(line(&e, 3), "SET_VRING_NUM 0 64");
    snprintf(want, sizeof(want), "SET_VRING_ADDR 0 0x%llx 0x%llx 0x%llx",
             (unsigned long long)(uintptr_t)arena_ptr(&e.a, e.rr[0].desc),
             (unsigned long long)(uintptr_t)arena_ptr(&e.a, e.rr[0].avail),
             (unsigned long long)(uintptr_t)arena_ptr(&e.a, e.rr[0].used));
    ck_assert_str_eq(line(&e, 4), want);
    ck_assert_str_eq(line(&e, 5), "SET_VRING_BASE 0 0");
    ck_assert_str_eq(line(&e, 6), "SET_VRING_CALL 0 fd");
    ck_assert_str_eq(line(&e, 7), "SET_VRING_KICK 0 fd");
    ck_assert_str_eq(line(&e, 8), "SET_VRING_ENABLE 0 1");
    ck_assert_uint_eq(e.fk.n, 9);
    /* the device never runs the ring itself */
    ck_assert_int_eq(vio_device_queue_notify(e.dev, 0), 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(q0), 0);

    /* a second ring: the same memory table is not sent again */
    struct vio_queue *q1 = env_queue(&e, 1, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 1, q1), 0);
    ck_assert_str_eq(line(&e, 9), "SET_VRING_NUM 1 64");
    ck_assert_uint_eq(e.fk.n, 15);

    /* stop: the back-end's avail index goes into the transport's queue */
    e.fk.base_reply = 17;
    vio_device_queue_stop(e.dev, 0);
    ck_assert_str_eq(line(&e, 15), "GET_VRING_BASE 0");
    ck_assert_uint_eq(vio_queue_get_last_avail(q0), 17);
    /* the queue's start again resumes there */
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), 0);
    ck_assert_str_eq(line(&e, 18), "SET_VRING_BASE 0 17");

    struct vio_vhost_dev_stats st;
    ck_assert_int_eq(vio_vhost_dev_get_stats(e.vd, &st), 0);
    ck_assert_uint_eq(st.rings_started, 3);
    ck_assert_uint_eq(st.rings_stopped, 1);
    ck_assert_uint_eq(st.mem_tables, 1);
    ck_assert_uint_eq(st.errors, 0);

    /* reset: rings stop, the back-end is reset, the next negotiation takes ownership again */
    unsigned n = e.fk.n;
    vio_device_queue_stop(e.dev, 0);
    vio_device_queue_stop(e.dev, 1);
    vio_device_reset(e.dev);
    ck_assert_str_eq(line(&e, n), "GET_VRING_BASE 0");
    ck_assert_str_eq(line(&e, n + 1), "GET_VRING_BASE 1");
    ck_assert_str_eq(line(&e, n + 2), "RESET");
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    ck_assert_str_eq(line(&e, n + 3), "SET_OWNER");
    env_close(&e);
}
END_TEST

START_TEST(test_kernel_sequence)
{
    struct env e;
    env_open(&e, &kernel_ops, 42);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t f = (1ull << VERSION_1) | (1ull << VIO_NET_F_MRG_RXBUF);
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    struct vio_queue *q1 = env_queue(&e, 1, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 1, q1), 0);
    ck_assert_str_eq(line(&e, 7), "SET_VRING_KICK 1 fd");
    ck_assert_str_eq(line(&e, 8), "NET_SET_BACKEND 1 42"); /* no ENABLE on the kernel */
    ck_assert_uint_eq(e.fk.n, 9);
    e.fk.base_reply = 3;
    vio_device_queue_stop(e.dev, 1);
    ck_assert_str_eq(line(&e, 9), "NET_SET_BACKEND 1 -1");
    ck_assert_str_eq(line(&e, 10), "GET_VRING_BASE 1");
    ck_assert_uint_eq(vio_queue_get_last_avail(q1), 3);
    env_close(&e);
}
END_TEST

START_TEST(test_ctrl_queue_stays_with_the_model)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t f = (1ull << VERSION_1) | (1ull << VIO_NET_F_CTRL_VQ) | (1ull << VIO_NET_F_CTRL_RX);
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    ck_assert(vio_vhost_dev_queue_in_backend(e.vd, 0));
    ck_assert(vio_vhost_dev_queue_in_backend(e.vd, 1));
    ck_assert(!vio_vhost_dev_queue_in_backend(e.vd, 2));
    unsigned n = e.fk.n;
    struct vio_queue *q2 = env_queue(&e, 2, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 2, q2), 0);
    ck_assert_uint_eq(e.fk.n, n);        /* nothing went to the back-end */
    ck_assert_uint_eq(e.claimed[2], 0);  /* the transport keeps running it */
    /* a control command (RX_PROMISC on) executed by the model in-process */
    struct vio_net_ctrl_hdr {
        uint8_t cls, cmd;
    } __attribute__((packed)) hdr = {0, 0};
    uint8_t on = 1, ack = 0xff;
    uint64_t b = arena_alloc(&e.a, 16, 16);
    ck_assert_int_eq(arena_write(&e.a, b, &hdr, 2), 0);
    ck_assert_int_eq(arena_write(&e.a, b + 2, &on, 1), 0);
    const struct rawseg segs[] = {{b, 3, false}, {b + 8, 1, true}};
    rawring_add_chain(&e.rr[2], 0, segs, 2);
    ck_assert_int_eq(vio_device_queue_notify(e.dev, 2), 1);
    ck_assert_int_eq(arena_read(&e.a, b + 8, &ack, 1), 0);
    ck_assert_uint_eq(ack, 0); /* VIRTIO_NET_OK */
    struct vio_net_rx_filter flt;
    ck_assert_int_eq(vio_net_dev_get_rx_filter(e.nd, &flt), 0);
    ck_assert(flt.flags & VIO_NET_FILTER_PROMISC);
    vio_device_queue_stop(e.dev, 2);
    ck_assert_uint_eq(e.fk.n, n);
    env_close(&e);
}
END_TEST

START_TEST(test_transport_without_offload_hooks)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    /* a transport built against the first, 48-byte hooks: the model sees NULL new hooks */
    env_bind(&e, VIO_DEVICE_HOOKS_MIN_SIZE);
    uint64_t f = 1ull << VERSION_1;
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    struct vio_queue *q0 = env_queue(&e, 0, f);
    unsigned n = e.fk.n;
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), -ENOTSUP);
    ck_assert_uint_eq(e.claimed[0], 0);
    ck_assert_uint_eq(e.fk.n, n);
    /* one byte short of the first version is refused */
    vio_device_bind(e.dev, NULL);
    struct vio_device_hooks h = {.struct_size = VIO_DEVICE_HOOKS_MIN_SIZE - 1};
    ck_assert_int_eq(vio_device_bind(e.dev, &h), -EINVAL);
    env_close(&e);
}
END_TEST

/* Each ring call failing with a dropped connection: queue_start fails with -ENOTCONN,
 * needs_reset is raised exactly once, and later calls do not touch the back-end. */
static const char *const lost_ops[] = {"SET_VRING_NUM", "SET_VRING_ADDR", "SET_VRING_BASE",
                                       "SET_VRING_CALL", "SET_VRING_KICK", "SET_VRING_ENABLE",
                                       "SET_MEM_TABLE"};

START_TEST(test_backend_lost_at_start)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t f = 1ull << VERSION_1;
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    struct vio_queue *q0 = env_queue(&e, 0, f);
    e.fk.fail_op = lost_ops[_i];
    e.fk.fail_rc = -ENOTCONN;
    e.fk.fail_drops = true;
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), -ENOTCONN);
    ck_assert_uint_eq(e.needs_reset, 1);
    struct vio_queue *q1 = env_queue(&e, 1, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 1, q1), -ENOTCONN);
    ck_assert_uint_eq(e.needs_reset, 1);
    struct vio_vhost_dev_stats st;
    ck_assert_int_eq(vio_vhost_dev_get_stats(e.vd, &st), 0);
    ck_assert(st.backend_lost);
    ck_assert_uint_eq(st.rings_started, 0);
    /* features cannot be accepted for a lost back-end */
    vio_device_reset(e.dev);
    ck_assert_int_eq(vio_device_set_features(e.dev, f), -ENOTSUP);
    env_close(&e);
}
END_TEST

/* A back-end that refuses a ring but stays: the start fails with its errno, the driver is
 * told (needs_reset), the back-end is not declared lost, and the next ring still starts. */
START_TEST(test_backend_refuses_a_ring)
{
    struct env e;
    env_open(&e, &kernel_ops, 7);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t f = 1ull << VERSION_1;
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    struct vio_queue *q0 = env_queue(&e, 0, f);
    e.fk.fail_op = "SET_VRING_ADDR";
    e.fk.fail_rc = -EFAULT;
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), -EFAULT);
    ck_assert_uint_eq(e.needs_reset, 1);
    struct vio_vhost_dev_stats st;
    ck_assert_int_eq(vio_vhost_dev_get_stats(e.vd, &st), 0);
    ck_assert(!st.backend_lost);
    ck_assert_uint_eq(st.errors, 1);
    ck_assert_uint_eq(st.rings_started, 0);
    e.fk.fail_op = NULL;
    struct vio_queue *q1 = env_queue(&e, 1, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 1, q1), 0);
    ck_assert_str_eq(line(&e, e.fk.n - 1), "NET_SET_BACKEND 1 7");
    env_close(&e);
}
END_TEST

START_TEST(test_backend_lost_while_running)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    env_bind(&e, sizeof(struct vio_device_hooks));
    uint64_t f = 1ull << VERSION_1;
    ck_assert_int_eq(vio_device_set_features(e.dev, f), 0);
    struct vio_queue *q0 = env_queue(&e, 0, f);
    ck_assert_int_eq(vio_device_queue_start(e.dev, 0, q0), 0);
    /* the back-end completed 5 chains of 7 the driver made available, then vanished */
    uint64_t buf = arena_alloc(&e.a, 64, 16);
    for (uint16_t i = 0; i < 7; i++) {
        const struct rawseg seg = {buf, 64, true};
        rawring_add_chain(&e.rr[0], i, &seg, 1);
    }
    for (int i = 0; i < 5; i++)
        rawring_push_used(&e.rr[0], 0, 0);
    e.fk.connected = false;
    /* the frontend's fd turns readable: the device notices, stops watching, raises reset */
    struct vio_device_watch w[4];
    ck_assert_int_eq(vio_device_watches(e.dev, w, 4), 1);
    ck_assert_uint_eq(w[0].id, VIO_VHOST_DEV_WATCH);
    ck_assert_int_eq(vio_device_handle(e.dev, VIO_VHOST_DEV_WATCH, VIO_WATCH_IN), 0);
    ck_assert_uint_eq(e.needs_reset, 1);
    ck_assert_uint_eq(e.watch_events, 0);
    ck_assert_int_eq(vio_device_watches(e.dev, w, 4), 0);
    vio_vhost_dev_event(e.vd, VIO_VHOST_EV_DISCONNECTED);
    ck_assert_uint_eq(e.needs_reset, 1); /* once */
    /* stopping cannot ask the back-end: resume at what it completed */
    vio_device_queue_stop(e.dev, 0);
    ck_assert_uint_eq(vio_queue_get_last_avail(q0), 5);
    env_close(&e);
}
END_TEST

START_TEST(test_new_bad_args)
{
    struct env e;
    env_open(&e, &user_ops, -1);
    struct vio_vhost_dev *vd = NULL;
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhost = &e.fk.base,
                                      .net_backend_fd = -1};
    ck_assert_int_eq(vio_vhost_dev_new(NULL, &vd), -EINVAL);
    ck_assert_int_eq(vio_vhost_dev_new(&dc, NULL), -EINVAL);
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL); /* no model, no device id */
    dc.device_id = 2;
    dc.struct_size = 8;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    dc.struct_size = sizeof(dc);
    dc.vhost = NULL;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    dc.vhost = &e.fk.base;
    dc.num_queues = VIO_DEVICE_MAX_QUEUES + 1;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    dc.num_queues = 0;
    e.fk.connected = false;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -ENOTCONN);
    e.fk.connected = true;
    /* without a model: the back-end's virtio bits, its ring count, a generic queue */
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), 0);
    struct vio_device *dev = vio_vhost_dev_device(vd);
    ck_assert_uint_eq(vio_device_id(dev), 2);
    ck_assert_uint_eq(vio_device_features(dev),
                      backend_offer() & ~((1ull << LOG_ALL) | (1ull << PROTOCOL_FEATURES)));
    ck_assert_uint_eq(vio_device_num_queues(dev), 2);
    struct vio_device_queue_info qi;
    ck_assert_int_eq(vio_device_queue_info(dev, 1, &qi), 0);
    ck_assert_uint_eq(qi.max_size, 1024);
    ck_assert_int_eq(vio_device_queue_info(dev, 2, &qi), -ERANGE);
    uint8_t b[4];
    ck_assert_int_eq(vio_device_config_read(dev, 0, b, 4), -ERANGE); /* no config space */
    vio_vhost_dev_free(vd);
    vio_vhost_dev_free(NULL);
    ck_assert_ptr_null(vio_vhost_dev_device(NULL));
    ck_assert_int_eq(vio_vhost_dev_event(NULL, VIO_VHOST_EV_DISCONNECTED), -EINVAL);
    ck_assert_int_eq(vio_vhost_dev_get_stats(NULL, NULL), -EINVAL);
    env_close(&e);
}
END_TEST

/* vhost-net with two queue pairs: one frontend per pair, each its own owner, features and
 * memory table; queue 2 is ring 0 of the second frontend with the second tap fd. */
START_TEST(test_one_frontend_per_pair)
{
    struct env e;
    env_open(&e, &kernel_ops, -1); /* e.fk is the first frontend; its device is not used */
    struct fake fk2;
    memset(&fk2, 0, sizeof(fk2));
    fk2.base.ops = &kernel_ops;
    fk2.features = backend_offer() & ~(1ull << EVENT_IDX); /* the pairs' offers intersect */
    fk2.connected = true;
    fk2.fd = -1;
    struct vio_vhost *vs[2] = {&e.fk.base, &fk2.base};
    const int taps[2] = {41, 42};
    struct vio_net_backend be2;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 2};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &be2), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &be2,
                                    .max_queue_pairs = 2};
    struct vio_net_dev *nd2 = NULL;
    ck_assert_int_eq(vio_net_dev_new(&nc, &nd2), 0);
    struct vio_vhost_dev_config dc = {.struct_size = sizeof(dc), .vhosts = vs, .num_vhosts = 2,
                                      .net_backend_fds = taps, .net_backend_fd = -1,
                                      .model = vio_net_dev_device(nd2)};
    struct vio_vhost_dev *vd = NULL;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), 0);
    struct vio_device *dev = vio_vhost_dev_device(vd);
    uint64_t offer = vio_device_features(dev);
    ck_assert(!(offer & (1ull << EVENT_IDX)));
    ck_assert(offer & (1ull << VIO_NET_F_MQ)); /* the model's: no vhost-net offers MQ */
    struct vio_device_hooks h = {.struct_size = sizeof(h), .opaque = &e,
                                 .needs_reset = t_needs_reset, .set_watch = t_set_watch,
                                 .mem_regions = t_mem_regions,
                                 .queue_offload = t_queue_offload};
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    ck_assert_int_eq(e.watch_fd, 99); /* the first frontend's fd; the second has none */
    uint64_t f = (1ull << VERSION_1) | (1ull << VIO_NET_F_MQ) | (1ull << VIO_NET_F_CTRL_VQ);
    ck_assert_int_eq(vio_device_set_features(dev, f), 0);
    ck_assert(!vio_vhost_dev_queue_in_backend(vd, 4)); /* the control queue after 2 pairs */
    ck_assert_str_eq(e.fk.log[0], "SET_OWNER");
    ck_assert_str_eq(fk2.log[0], "SET_OWNER");
    ck_assert_str_eq(fk2.log[1], "SET_FEATURES 0x100000000");
    /* queue 2 would be rx1: set up a ring for it in slot 2 of the environment */
    struct vio_device_queue_info qi;
    ck_assert_int_eq(vio_device_queue_info(dev, 2, &qi), 0);
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = qi.max_size,
                                  .index = 2, .dir = qi.dir};
    ck_assert_int_eq(vio_queue_new(&qc, &e.q[2]), 0);
    ck_assert_int_eq(rawring_init(&e.rr[2], &e.a, 64, 4), 0);
    ck_assert_int_eq(vio_queue_setup(e.q[2], e.a.mem, 64, 1ull << VERSION_1, e.rr[2].desc,
                                     e.rr[2].avail,
                                     e.rr[2].used), 0);
    ck_assert_int_eq(vio_device_queue_start(dev, 2, e.q[2]), 0);
    ck_assert_uint_eq(e.fk.n, 2); /* nothing more for the first pair's frontend */
    ck_assert(!strncmp(fk2.log[2], "SET_MEM_TABLE 1 ", 16));
    ck_assert_str_eq(fk2.log[3], "SET_VRING_NUM 0 64");
    ck_assert_str_eq(fk2.log[8], "NET_SET_BACKEND 0 42");
    fk2.base_reply = 4;
    vio_device_queue_stop(dev, 2);
    ck_assert_str_eq(fk2.log[9], "NET_SET_BACKEND 0 -1");
    ck_assert_str_eq(fk2.log[10], "GET_VRING_BASE 0");
    ck_assert_uint_eq(vio_queue_get_last_avail(e.q[2]), 4);
    /* tx1 is the second frontend's ring 1 */
    ck_assert(vio_vhost_dev_queue_in_backend(vd, 3));
    vio_device_reset(dev);
    vio_device_bind(dev, NULL);
    vio_vhost_dev_free(vd);
    vio_net_dev_free(nd2);
    vio_net_backend_destroy(&be2);
    /* bad frontend arrays (the model is gone: a generic device) */
    dc.model = NULL;
    dc.device_id = 1;
    struct vio_vhost *bad[2] = {&e.fk.base, NULL};
    dc.vhosts = bad;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    dc.vhosts = NULL;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    dc.vhosts = vs;
    dc.num_vhosts = VIO_VHOST_DEV_MAX_FRONTENDS + 1;
    ck_assert_int_eq(vio_vhost_dev_new(&dc, &vd), -EINVAL);
    env_close(&e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vhost_dev");
    TCase *tc = tcase_create("offload");
    tcase_add_test(tc, test_features_intersection);
    tcase_add_test(tc, test_user_sequence);
    tcase_add_test(tc, test_kernel_sequence);
    tcase_add_test(tc, test_ctrl_queue_stays_with_the_model);
    tcase_add_test(tc, test_transport_without_offload_hooks);
    tcase_add_loop_test(tc, test_backend_lost_at_start, 0,
                        (int)(sizeof(lost_ops) / sizeof(lost_ops[0])));
    tcase_add_test(tc, test_backend_refuses_a_ring);
    tcase_add_test(tc, test_backend_lost_while_running);
    tcase_add_test(tc, test_new_bad_args);
    tcase_add_test(tc, test_one_frontend_per_pair);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
