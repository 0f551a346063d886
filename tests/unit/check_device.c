/* SPDX-License-Identifier: MIT */
/*
 * Suite "device": the generic device interface's wrappers (src/device/device.c).
 *
 * The wrappers keep the order of the control-path calls for every device model: one binding
 * at a time, features before queues, queues of the direction and size the device gives, no
 * feature change while queues run. Each mistake of a table is made against a stub device
 * model and against the real virtio-net model, and must come back at the call with the exact
 * errno, a log line naming the mistake (through vio_device::log, under the model's name), the
 * model's op never reached, and the device still usable afterwards. The net_backend.h
 * wrappers are checked on NULL and destroyed backends.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "virtio/device.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/queue.h"

/* ------------------------------------------------------------------------ */
/* Log capture */

struct logrec {
    unsigned n;
    int level;
    char object[32];
    char msg[512];
};

static void cap_log(void *opaque, int level, const char *object, const char *msg)
{
    struct logrec *l = opaque;
    l->n++;
    l->level = level;
    snprintf(l->object, sizeof(l->object), "%s", object);
    snprintf(l->msg, sizeof(l->msg), "%s", msg);
}

/* ------------------------------------------------------------------------ */
/* Stub device model: queue 0 receive (IN_ONLY, 64), 1 transmit (OUT_ONLY, 64), 2 any (16). */

#define STUB_NQ 3u

struct stub {
    struct vio_device dev;
    unsigned binds, set_features, starts, stops, resets;
    uint64_t features;
    struct vio_queue *q[STUB_NQ];
};

static int st_bind(void *o, const struct vio_device_hooks *h)
{
    (void)h;
    ((struct stub *)o)->binds++;
    return 0;
}

static unsigned st_num_queues(void *o)
{
    (void)o;
    return STUB_NQ;
}

static int st_queue_info(void *o, unsigned qidx, struct vio_device_queue_info *out)
{
    (void)o;
    static const struct vio_device_queue_info info[STUB_NQ] = {
        {64, VIO_QUEUE_DIR_IN_ONLY, "rx"},
        {64, VIO_QUEUE_DIR_OUT_ONLY, "tx"},
        {16, VIO_QUEUE_DIR_ANY, "ctl"},
    };
    if (qidx >= STUB_NQ)
        return -ERANGE;
    *out = info[qidx];
    return 0;
}

static int st_set_features(void *o, uint64_t f)
{
    struct stub *s = o;
    s->set_features++;
    s->features = f;
    return 0;
}

static int st_queue_start(void *o, unsigned qidx, struct vio_queue *q)
{
    struct stub *s = o;
    s->starts++;
    s->q[qidx] = q;
    return 0;
}

static void st_queue_stop(void *o, unsigned qidx)
{
    struct stub *s = o;
    s->stops++;
    if (qidx < STUB_NQ)
        s->q[qidx] = NULL;
}

static void st_reset(void *o)
{
    struct stub *s = o;
    s->resets++;
    memset(s->q, 0, sizeof(s->q));
    s->features = 0;
}

static uint64_t st_features(void *o)
{
    (void)o;
    return 1ull << 32; /* VERSION_1 */
}

static const struct vio_device_ops stub_ops = {
    .name = "stub",
    .features = st_features,
    .num_queues = st_num_queues,
    .queue_info = st_queue_info,
    .set_features = st_set_features,
    .queue_start = st_queue_start,
    .queue_stop = st_queue_stop,
    .reset = st_reset,
    .bind = st_bind,
};

/* ------------------------------------------------------------------------ */
/* The two models behind one face */

enum model_kind { MODEL_STUB, MODEL_NET };

struct model {
    enum model_kind kind;
    struct stub stub;
    struct vio_net_backend be;
    struct vio_net_dev *nd;
    struct vio_device *dev;
    struct logrec log;
    struct arena a;
    struct vio_queue *q[8]; /* made by mkq, freed at the end */
    unsigned nq;
};

static void model_open(struct model *m, enum model_kind kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    ck_assert_int_eq(arena_init_simple(&m->a, 0x100000, 1u << 20), 0);
    if (kind == MODEL_STUB) {
        m->stub.dev.ops = &stub_ops;
        m->stub.dev.opaque = &m->stub;
        m->stub.dev.log = cap_log;
        m->stub.dev.log_opaque = &m->log;
        m->dev = &m->stub.dev;
        return;
    }
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc)};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &m->be), 0);
    struct vio_net_dev_config nc = {.struct_size = sizeof(nc), .backend = &m->be,
                                    .queue_size = 256, .ctrl_queue_size = 64, .log = cap_log,
                                    .log_opaque = &m->log};
    ck_assert_int_eq(vio_net_dev_new(&nc, &m->nd), 0);
    m->dev = vio_net_dev_device(m->nd);
    ck_assert_ptr_eq(m->dev->log, cap_log); /* the model hands its log to the wrappers */
}

static void model_close(struct model *m)
{
    vio_device_reset(m->dev);
    vio_device_bind(m->dev, NULL);
    for (unsigned i = 0; i < m->nq; i++)
        vio_queue_free(m->q[i]);
    vio_net_dev_free(m->nd);
    vio_net_backend_destroy(&m->be);
    arena_fini(&m->a);
}

static const char *model_name(const struct model *m)
{
    return m->kind == MODEL_STUB ? "stub" : "virtio-net";
}

/* Calls of the model's ops that change state (stub: counted; net: read back). */
static unsigned model_starts(const struct model *m)
{
    return m->kind == MODEL_STUB ? m->stub.starts : 0;
}

static uint64_t model_features(const struct model *m)
{
    return m->kind == MODEL_STUB ? m->stub.features : vio_net_dev_features(m->nd);
}

/* A device-side queue of direction @p dir, created with max_size @p max and set up with
 * @p size (0: left not set up), rings in the arena. */
static struct vio_queue *mkq(struct model *m, unsigned qidx, enum vio_queue_dir dir,
                             uint16_t max, uint16_t size)
{
    struct vio_queue_config qc = {.struct_size = sizeof(qc), .max_size = max,
                                  .index = (uint16_t)qidx, .name = "t", .dir = dir};
    struct vio_queue *q = NULL;
    ck_assert_int_eq(vio_queue_new(&qc, &q), 0);
    ck_assert_uint_lt(m->nq, 8);
    m->q[m->nq++] = q;
    ck_assert(vio_queue_direction(q) == dir);
    if (!size)
        return q;
    size_t doff, uoff, len = vio_split_ring_layout(size, 4, &doff, &uoff);
    uint64_t base = arena_alloc(&m->a, len, 4096);
    ck_assert_uint_ne(base, 0);
    ck_assert_int_eq(vio_queue_setup(q, m->a.mem, size, 1ull << 32, base, base + doff,
                                     base + uoff), 0);
    return q;
}

/* A correct queue for @p qidx, as vio_device_queue_info() describes it. */
static struct vio_queue *goodq(struct model *m, unsigned qidx)
{
    struct vio_device_queue_info qi;
    ck_assert_int_eq(vio_device_queue_info(m->dev, qidx, &qi), 0);
    return mkq(m, qidx, qi.dir, qi.max_size, qi.max_size);
}

static void negotiate(struct model *m)
{
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), 0);
}

static void bind_ok(struct model *m)
{
    struct vio_device_hooks h = {.struct_size = sizeof(h)};
    ck_assert_int_eq(vio_device_bind(m->dev, &h), 0);
}

/* ------------------------------------------------------------------------ */
/* The mistakes */

enum mistake {
    M_START_BEFORE_FEATURES,
    M_RX_QUEUE_OUT_ONLY,
    M_RX_QUEUE_ANY,
    M_TX_QUEUE_IN_ONLY,
    M_QUEUE_TOO_BIG,
    M_QUEUE_NOT_SET_UP,
    M_NO_SUCH_QUEUE,
    M_INDEX_ABOVE_LIMIT,
    M_START_TWICE,
    M_FEATURES_WHILE_RUNNING,
    M_BIND_TWICE,
};

static const struct {
    enum mistake m;
    const char *what;
    int err;          /* exact errno returned */
    const char *says; /* the log line names it */
} mistakes[] = {
    {M_START_BEFORE_FEATURES, "queue_start before set_features", -EINVAL,
     "before vio_device_set_features()"},
    {M_RX_QUEUE_OUT_ONLY, "receive queue created OUT_ONLY", -EINVAL, "direction OUT_ONLY"},
    {M_RX_QUEUE_ANY, "receive queue created ANY", -EINVAL, "direction ANY"},
    {M_TX_QUEUE_IN_ONLY, "transmit queue created IN_ONLY", -EINVAL, "direction IN_ONLY"},
    {M_QUEUE_TOO_BIG, "queue larger than the device maximum", -EINVAL, "above the device's maximum"},
    {M_QUEUE_NOT_SET_UP, "queue not set up", -EINVAL, "not set up"},
    {M_NO_SUCH_QUEUE, "queue index past the device's queues", -ERANGE, "no such queue"},
    {M_INDEX_ABOVE_LIMIT, "queue index above VIO_DEVICE_MAX_QUEUES", -ERANGE, "above the limit"},
    {M_START_TWICE, "queue started twice", -EBUSY, "already started"},
    {M_FEATURES_WHILE_RUNNING, "set_features while a queue runs", -EBUSY,
     "while 1 queue(s) are started"},
    {M_BIND_TWICE, "second bind", -EBUSY, "already bound"},
};
#define N_MISTAKES (sizeof(mistakes) / sizeof(mistakes[0]))

static void make_mistake(enum model_kind kind, unsigned i)
{
    struct model M;
    struct model *m = &M;
    model_open(m, kind);
    bind_ok(m);
    if (mistakes[i].m != M_START_BEFORE_FEATURES)
        negotiate(m);
    uint64_t feats = model_features(m);
    struct vio_device_queue_info rx;
    ck_assert_int_eq(vio_device_queue_info(m->dev, 0, &rx), 0);
    ck_assert(rx.dir == VIO_QUEUE_DIR_IN_ONLY); /* both models: queue 0 receives, 1 transmits */
    unsigned before_log = m->log.n;
    unsigned starts = model_starts(m);
    int r = 0;
    switch (mistakes[i].m) {
    case M_START_BEFORE_FEATURES:
        r = vio_device_queue_start(m->dev, 0, goodq(m, 0));
        break;
    case M_RX_QUEUE_OUT_ONLY:
        r = vio_device_queue_start(m->dev, 0, mkq(m, 0, VIO_QUEUE_DIR_OUT_ONLY, 64, 64));
        break;
    case M_RX_QUEUE_ANY:
        r = vio_device_queue_start(m->dev, 0, mkq(m, 0, VIO_QUEUE_DIR_ANY, 64, 64));
        break;
    case M_TX_QUEUE_IN_ONLY:
        r = vio_device_queue_start(m->dev, 1, mkq(m, 1, VIO_QUEUE_DIR_IN_ONLY, 64, 64));
        break;
    case M_QUEUE_TOO_BIG:
        r = vio_device_queue_start(m->dev, 0, mkq(m, 0, rx.dir, 2 * rx.max_size,
                                                  2 * rx.max_size));
        break;
    case M_QUEUE_NOT_SET_UP:
        r = vio_device_queue_start(m->dev, 0, mkq(m, 0, rx.dir, rx.max_size, 0));
        break;
    case M_NO_SUCH_QUEUE: {
        unsigned n = vio_device_num_queues(m->dev);
        r = vio_device_queue_start(m->dev, n, mkq(m, n, VIO_QUEUE_DIR_ANY, 16, 16));
        break;
    }
    case M_INDEX_ABOVE_LIMIT:
        r = vio_device_queue_start(m->dev, VIO_DEVICE_MAX_QUEUES + 3,
                                   mkq(m, 0, VIO_QUEUE_DIR_ANY, 16, 16));
        break;
    case M_START_TWICE: {
        struct vio_queue *q = goodq(m, 0);
        ck_assert_int_eq(vio_device_queue_start(m->dev, 0, q), 0);
        starts = model_starts(m);
        before_log = m->log.n;
        r = vio_device_queue_start(m->dev, 0, goodq(m, 0));
        break;
    }
    case M_FEATURES_WHILE_RUNNING:
        ck_assert_int_eq(vio_device_queue_start(m->dev, 1, goodq(m, 1)), 0);
        starts = model_starts(m);
        before_log = m->log.n;
        r = vio_device_set_features(m->dev, 0);
        break;
    case M_BIND_TWICE: {
        struct vio_device_hooks h = {.struct_size = sizeof(h)};
        r = vio_device_bind(m->dev, &h);
        break;
    }
    }
    ck_assert_msg(r == mistakes[i].err, "%s, %s: returned %d, expected %d", model_name(m),
                  mistakes[i].what, r, mistakes[i].err);
    /* named in the log, as the caller's mistake, under the model's name */
    ck_assert_msg(m->log.n > before_log, "%s, %s: nothing logged", model_name(m),
                  mistakes[i].what);
    ck_assert_int_eq(m->log.level, VIO_LOG_ERROR);
    ck_assert_str_eq(m->log.object, model_name(m));
    ck_assert_msg(strstr(m->log.msg, mistakes[i].says), "%s, %s: log says \"%s\"", model_name(m),
                  mistakes[i].what, m->log.msg);
    ck_assert_msg(!strstr(m->log.msg, "driver"), "blames the driver: %s", m->log.msg);
    /* the model never saw it; nothing changed */
    ck_assert_uint_eq(model_starts(m), starts);
    ck_assert_uint_eq(model_features(m), feats);
    ck_assert(vio_device_is_bound(m->dev));

    /* and the device is still usable the right way: (re)negotiate with the queues stopped,
     * start every queue of a correct kind */
    for (unsigned q = 0; q < vio_device_num_queues(m->dev); q++)
        vio_device_queue_stop(m->dev, q);
    negotiate(m);
    ck_assert_int_eq(vio_device_queue_start(m->dev, 0, goodq(m, 0)), 0);
    ck_assert_int_eq(vio_device_queue_start(m->dev, 1, goodq(m, 1)), 0);
    model_close(m);
}

START_TEST(test_mistakes_stub)
{
    make_mistake(MODEL_STUB, (unsigned)_i);
}
END_TEST

START_TEST(test_mistakes_net)
{
    make_mistake(MODEL_NET, (unsigned)_i);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The rules in sequence */

START_TEST(test_binding)
{
    struct model M;
    model_open(&M, (enum model_kind)_i);
    struct vio_device *dev = M.dev;
    struct vio_device_hooks h = {.struct_size = sizeof(h)};
    ck_assert(!vio_device_is_bound(dev));
    ck_assert(!vio_device_is_bound(NULL));
    ck_assert_int_eq(vio_device_bind(dev, NULL), 0); /* unbinding an unbound device: no-op */
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    ck_assert(vio_device_is_bound(dev));
    ck_assert_int_eq(vio_device_bind(dev, &h), -EBUSY);
    /* a reset keeps the binding */
    vio_device_reset(dev);
    ck_assert(vio_device_is_bound(dev));
    ck_assert_int_eq(vio_device_bind(dev, &h), -EBUSY);
    /* unbind, then the next transport may bind */
    ck_assert_int_eq(vio_device_bind(dev, NULL), 0);
    ck_assert(!vio_device_is_bound(dev));
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    /* bad hooks are refused before the binding is looked at */
    h.struct_size = 4;
    ck_assert_int_eq(vio_device_bind(dev, &h), -EINVAL);
    ck_assert_int_eq(vio_device_bind(NULL, &h), -EINVAL);
    model_close(&M);
}
END_TEST

START_TEST(test_reset_clears_state)
{
    struct model M;
    struct model *m = &M;
    model_open(m, (enum model_kind)_i);
    bind_ok(m);
    negotiate(m);
    ck_assert_int_eq(vio_device_queue_start(m->dev, 0, goodq(m, 0)), 0);
    ck_assert_int_eq(vio_device_queue_start(m->dev, 1, goodq(m, 1)), 0);
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), -EBUSY);
    /* stopping one of two still leaves one running */
    vio_device_queue_stop(m->dev, 0);
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), -EBUSY);
    /* stopping a queue twice, or one never started, does not miscount */
    vio_device_queue_stop(m->dev, 0);
    vio_device_queue_stop(m->dev, 2);
    vio_device_queue_stop(m->dev, VIO_DEVICE_MAX_QUEUES + 1);
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), -EBUSY);
    vio_device_queue_stop(m->dev, 1);
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), 0);
    /* a stopped queue may start again */
    ck_assert_int_eq(vio_device_queue_start(m->dev, 0, goodq(m, 0)), 0);
    /* reset: every queue stopped, features dropped */
    vio_device_reset(m->dev);
    unsigned n = m->log.n;
    ck_assert_int_eq(vio_device_queue_start(m->dev, 0, goodq(m, 0)), -EINVAL);
    ck_assert_uint_eq(m->log.n, n + 1);
    ck_assert_ptr_nonnull(strstr(m->log.msg, "before vio_device_set_features()"));
    ck_assert_int_eq(vio_device_set_features(m->dev, vio_device_features(m->dev)), 0);
    ck_assert_int_eq(vio_device_queue_start(m->dev, 0, goodq(m, 0)), 0);
    model_close(m);
}
END_TEST

/* A model without set_features, queue_info or bind: the checks it cannot answer are skipped,
 * the ones the wrapper can make alone are not. */
static int bare_start(void *o, unsigned qidx, struct vio_queue *q)
{
    (void)qidx;
    (void)q;
    (*(unsigned *)o)++;
    return 0;
}

START_TEST(test_bare_model)
{
    static const struct vio_device_ops bare_ops = {.name = "bare", .queue_start = bare_start};
    unsigned starts = 0;
    struct logrec log = {0};
    struct vio_device d = {.ops = &bare_ops, .opaque = &starts, .log = cap_log,
                           .log_opaque = &log};
    struct model M;
    model_open(&M, MODEL_STUB); /* for the arena and queues only */
    struct vio_device_hooks h = {.struct_size = sizeof(h)};
    ck_assert_int_eq(vio_device_bind(&d, &h), -ENOTSUP);
    ck_assert_int_eq(vio_device_set_features(&d, 0), -ENOTSUP);
    /* no features to set, no queue facts: any set-up queue starts */
    ck_assert_int_eq(vio_device_queue_start(&d, 5, mkq(&M, 5, VIO_QUEUE_DIR_ANY, 16, 16)), 0);
    ck_assert_uint_eq(starts, 1);
    ck_assert_int_eq(vio_device_queue_start(&d, 5, mkq(&M, 5, VIO_QUEUE_DIR_ANY, 16, 16)),
                     -EBUSY);
    ck_assert_int_eq(vio_device_queue_start(&d, 6, mkq(&M, 6, VIO_QUEUE_DIR_ANY, 16, 0)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(log.msg, "not set up"));
    ck_assert_str_eq(log.object, "bare");
    ck_assert_uint_eq(starts, 1);
    vio_device_queue_stop(&d, 5); /* no stop op: the bookkeeping still forgets the queue */
    ck_assert_int_eq(vio_device_queue_start(&d, 5, mkq(&M, 5, VIO_QUEUE_DIR_ANY, 16, 16)), 0);
    vio_device_reset(&d);
    /* no log configured: still refused, silently */
    d.log = NULL;
    ck_assert_int_eq(vio_device_queue_start(&d, 7, mkq(&M, 7, VIO_QUEUE_DIR_ANY, 16, 0)),
                     -EINVAL);
    model_close(&M);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* net_backend.h wrappers on a NULL or destroyed backend */

enum bw {
    BW_FEATURES, BW_CONFIGURE, BW_TX, BW_RX_PEEK, BW_RX, BW_RX_VIEW, BW_RX_FD, BW_TX_FD,
    BW_SET_RX_MODE, BW_LINK_STATUS, BW_FLUSH, BW_SET_POLLING, BW_DESTROY, BW_COUNT
};

/* What wrapper @p w returns on @p b (void wrappers: 0 when they returned at all). */
static long call_wrapper(enum bw w, struct vio_net_backend *b)
{
    uint8_t buf[64] = {0};
    struct iovec iov = {buf, sizeof(buf)};
    struct vio_net_hdr hdr;
    const void *data = NULL;
    switch (w) {
    case BW_FEATURES: return (long)vio_net_backend_features(b);
    case BW_CONFIGURE: return vio_net_backend_configure(b, 0);
    case BW_TX: return vio_net_backend_tx(b, 0, NULL, &iov, 1);
    case BW_RX_PEEK: return (long)vio_net_backend_rx_peek(b, 0);
    case BW_RX: return (long)vio_net_backend_rx(b, 0, &hdr, &iov, 1);
    case BW_RX_VIEW: return (long)vio_net_backend_rx_view(b, 0, &hdr, &data, sizeof(buf));
    case BW_RX_FD: return vio_net_backend_rx_fd(b, 0);
    case BW_TX_FD: return vio_net_backend_tx_fd(b, 0);
    case BW_SET_RX_MODE: return vio_net_backend_set_rx_mode(b, 0);
    case BW_LINK_STATUS: return vio_net_backend_link_status(b);
    case BW_FLUSH: vio_net_backend_flush(b, 0); return 0;
    case BW_SET_POLLING: vio_net_backend_set_polling(b, 0, true); return 0;
    case BW_DESTROY: vio_net_backend_destroy(b); return 0;
    default: return -999;
    }
}

static const long bw_neutral[BW_COUNT] = {
    [BW_FEATURES] = 0,         [BW_CONFIGURE] = -EINVAL, [BW_TX] = -EINVAL,
    [BW_RX_PEEK] = -EINVAL,    [BW_RX] = -EINVAL,        [BW_RX_VIEW] = -EINVAL,
    [BW_RX_FD] = -1,           [BW_TX_FD] = -1,          [BW_SET_RX_MODE] = -EINVAL,
    [BW_LINK_STATUS] = -EINVAL, [BW_FLUSH] = 0,          [BW_SET_POLLING] = 0,
    [BW_DESTROY] = 0,
};

START_TEST(test_backend_null)
{
    enum bw w = (enum bw)_i;
    ck_assert_int_eq(call_wrapper(w, NULL), bw_neutral[w]);
    /* a backend never opened (zeroed) and one already destroyed: the same */
    struct vio_net_backend zero = {0};
    ck_assert_int_eq(call_wrapper(w, &zero), bw_neutral[w]);
    struct vio_net_backend be;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc)};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &be), 0);
    ck_assert(vio_net_backend_valid(&be));
    vio_net_backend_destroy(&be);
    ck_assert(!vio_net_backend_valid(&be));
    ck_assert_int_eq(call_wrapper(w, &be), bw_neutral[w]);
}
END_TEST

START_TEST(test_backend_live)
{
    /* the same wrappers on a live loopback backend do reach it */
    struct vio_net_backend be;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc)};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &be), 0);
    ck_assert_int_ge(vio_net_backend_rx_fd(&be, 0), 0);
    ck_assert_int_eq(vio_net_backend_rx(&be, 0, NULL, &(struct iovec){(uint8_t[64]){0}, 64}, 1),
                     -EAGAIN);
    uint8_t frame[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(vio_net_backend_tx(&be, 0, NULL, &(struct iovec){frame, sizeof(frame)}, 1),
                     0);
    uint8_t got[64];
    ck_assert_int_eq(vio_net_backend_rx(&be, 0, NULL, &(struct iovec){got, sizeof(got)}, 1),
                     (long)sizeof(frame));
    vio_net_backend_destroy(&be);
    vio_net_backend_destroy(&be); /* twice: no-op */
    vio_net_backend_destroy(NULL);
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("device");
    TCase *tc = tcase_create("mistakes");
    tcase_add_loop_test(tc, test_mistakes_stub, 0, (int)N_MISTAKES);
    tcase_add_loop_test(tc, test_mistakes_net, 0, (int)N_MISTAKES);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_loop_test(tc, test_binding, MODEL_STUB, MODEL_NET + 1);
    tcase_add_loop_test(tc, test_reset_clears_state, MODEL_STUB, MODEL_NET + 1);
    tcase_add_test(tc, test_bare_model);
    suite_add_tcase(s, tc);
    tc = tcase_create("net_backend");
    tcase_add_loop_test(tc, test_backend_null, 0, BW_COUNT);
    tcase_add_test(tc, test_backend_live);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(device_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
