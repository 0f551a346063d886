/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user frontend (virtio/vhost.h, VIO_VHOST_USER): the hypervisor's side of QEMU's
 * vhost-user protocol (docs/interop/vhost-user.rst) over a client or a server unix socket.
 *
 * Every request goes out with vu_msg_send() (MSG_NOSIGNAL: a vanished backend is -ENOTCONN,
 * never SIGPIPE). Every reply is read with a deadline (poll, then SO_RCVTIMEO for the rest of
 * the message) and is hostile input: request code, flags, version, exact payload size, fds
 * and values are checked (rsp_check() and the per-request checks). A violation is logged
 * naming the request and the rule, the reply's fds are closed and the connection is dropped
 * (#VIO_VHOST_EV_DISCONNECTED): the byte stream cannot be trusted to be in step any more.
 *
 * With reconnect, everything sent is recorded (fds duplicated) so vio_vhost_reconnect() can
 * play it to a new backend in the order the protocol wants.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "transport/vhost_internal.h"
#include "transport/vhost_user_msg.h"

#define OBJ "vhost-user-fe"
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_RINGS 256u       /* the ring index of SET_VRING_KICK / CALL / ERR has 8 bits */
#define MAX_QUEUE_NUM 0x8000u /* GET_QUEUE_NUM: more pairs than a device can have is a lie */
#define MAX_MEM_SLOTS 65536u
#define MAX_RECORDED_REGIONS 4096u
#define BREQ_BUDGET 64        /* backend requests handled per vio_vhost_handle() */
#define BREQ_TIMEOUT_MS 100   /* the rest of a backend request once its first byte came */

/* The protocol features this frontend implements. */
#define FE_PF_ALL                                                                                  \
    ((1ull << VU_PF_MQ) | (1ull << VU_PF_LOG_SHMFD) | (1ull << VU_PF_REPLY_ACK) |                  \
     (1ull << VU_PF_BACKEND_REQ) | (1ull << VU_PF_CONFIG) | (1ull << VU_PF_INFLIGHT_SHMFD) |       \
     (1ull << VU_PF_RESET_DEVICE) | (1ull << VU_PF_CONFIGURE_MEM_SLOTS) | (1ull << VU_PF_STATUS))

#define LOG(f, lvl, ...) vio_logf((f)->base.log, (f)->base.log_opaque, (lvl), OBJ, __VA_ARGS__)

/* What was sent for one ring (for reconnect). An fd slot is -2 when never sent, -1 when sent
 * with the no-fd flag, else our duplicate. */
struct fe_ring {
    bool num_set, addr_set, base_set, stopped;
    int enable; /* -1 never sent */
    unsigned num, base;
    struct vio_vhost_vring_addr addr;
    int kick, call, err;
};

struct vu_fe {
    struct vio_vhost base; /* first: the generic head */
    char *path;
    bool server, reconnect;
    int timeout_ms;
    unsigned nrings;
    uint64_t pf_allowed;
    vio_vhost_event_fn event;
    void *event_opaque;

    int listen_fd; /* server mode: kept for reconnect */
    int sock;      /* the connection, -1 when gone */
    int breq;      /* our end of the backend request channel, -1 none */
    int epfd;      /* vio_vhost_fd(): sock + breq */
    bool created_path;

    uint64_t features;  /* GET_FEATURES (bit 30 included) */
    uint64_t pf;        /* negotiated protocol features */
    unsigned qnum;      /* GET_QUEUE_NUM (0 without MQ) */
    uint64_t n_config_change, n_refused; /* backend requests seen (their logs are limited) */

    /* recorded state (reconnect) */
    bool owner;
    bool features_set;
    uint64_t features_acked;
    bool mem_set;
    struct vio_vhost_mem_region *mem; /* fds are our duplicates */
    unsigned nmem, mem_cap;
    bool status_set;
    uint8_t status;
    int inflight_fd;
    uint64_t inflight_size;
    unsigned inflight_nq, inflight_qs;
    struct fe_ring *rings;
};

static struct vu_fe *FE(struct vio_vhost *v)
{
    return (struct vu_fe *)v;
}

static void xclose(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static const char *rname(uint32_t req)
{
    static __thread char buf[24];
    return vu_req_name(req, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------ */
/* Connection                                                                */

static void emit(struct vu_fe *f, enum vio_vhost_event ev)
{
    if (f->event)
        f->event(f->event_opaque, ev);
}

/* Close the connection (no event). */
static void conn_close(struct vu_fe *f)
{
    if (f->sock >= 0 && f->epfd >= 0)
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->sock, NULL);
    if (f->breq >= 0 && f->epfd >= 0)
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->breq, NULL);
    xclose(&f->sock);
    xclose(&f->breq);
}

/* The backend is gone or broke the protocol: close and tell the application. */
static void conn_drop(struct vu_fe *f)
{
    if (f->sock < 0)
        return;
    conn_close(f);
    LOG(f, VIO_LOG_ERROR, "backend connection dropped");
    emit(f, VIO_VHOST_EV_DISCONNECTED);
}

/* A reply broke a rule: log it, drop the connection, -EPROTO. */
__attribute__((format(printf, 3, 4))) static int violation(struct vu_fe *f, uint32_t req,
                                                          const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    LOG(f, VIO_LOG_ERROR, "%s: bad reply from the backend: %s", rname(req), why);
    conn_drop(f);
    return -EPROTO;
}

static int set_timeouts(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until @p fd is readable, at most @p ms. 0, -ETIMEDOUT or -errno. */
static int wait_in(int fd, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(sa->sun_path))
        return -EINVAL;
    memcpy(sa->sun_path, path, n);
    return 0;
}

static int connect_client(struct vu_fe *f, int *out)
{
    struct sockaddr_un sa;
    if (sock_addr(f->path, &sa) < 0)
        return -EINVAL;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    int r;
    int64_t end = now_ms() + f->timeout_ms;
    for (;;) {
        r = connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
        if (r == -EINTR)
            continue;
        /* a unix socket's full listen backlog: EAGAIN, and nothing goes on in the
         * background; try again until the timeout */
        if (r != -EAGAIN)
            break;
        if (now_ms() >= end) {
            r = -ETIMEDOUT;
            break;
        }
        usleep(5000);
    }
    if (r == 0 && fcntl(s, F_SETFL, 0) < 0)
        r = -errno;
    if (r < 0) {
        close(s);
        LOG(f, VIO_LOG_ERROR, "connect to %s: %s", f->path, strerror(-r));
        return r;
    }
    *out = s;
    return 0;
}

static int listen_server(struct vu_fe *f)
{
    struct sockaddr_un sa;
    if (sock_addr(f->path, &sa) < 0)
        return -EINVAL;
    struct stat st;
    if (lstat(f->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            LOG(f, VIO_LOG_ERROR, "%s exists and is not a socket", f->path);
            return -EEXIST;
        }
        unlink(f->path); /* a stale socket, as QEMU's server=on replaces it */
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0) {
        int r = -errno;
        close(s);
        LOG(f, VIO_LOG_ERROR, "listen on %s: %s", f->path, strerror(-r));
        return r;
    }
    f->listen_fd = s;
    f->created_path = true;
    return 0;
}

static int accept_one(struct vu_fe *f, int *out)
{
    int r = wait_in(f->listen_fd, f->timeout_ms);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            LOG(f, VIO_LOG_ERROR, "no backend connected to %s within %d ms", f->path,
                f->timeout_ms);
        return r;
    }
    int s = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Requests and replies                                                      */

static bool has_pf(const struct vu_fe *f, unsigned bit)
{
    return (f->pf >> bit) & 1u;
}

static void msg_init(struct vu_msg *m, uint32_t req, const void *payload, uint32_t size)
{
    memset(&m->hdr, 0, sizeof(m->hdr));
    m->hdr.request = req;
    m->hdr.flags = VU_VERSION;
    m->hdr.size = size;
    if (size)
        memcpy(&m->p, payload, size);
    m->nfds = 0;
    for (unsigned i = 0; i < VU_MAX_FDS; i++)
        m->fds[i] = -1;
}

/* Send @p m; a vanished backend is -ENOTCONN (the connection is dropped). */
static int fe_send(struct vu_fe *f, const struct vu_msg *m)
{
    if (f->sock < 0)
        return -ENOTCONN;
    int r = vu_msg_send(f->sock, m);
    if (r == 0)
        return 0;
    if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
        LOG(f, VIO_LOG_ERROR, "%s: the backend is gone", rname(m->hdr.request));
        conn_drop(f);
        return -ENOTCONN;
    }
    if (r == -EAGAIN || r == -EWOULDBLOCK)
        r = -ETIMEDOUT;
    LOG(f, VIO_LOG_ERROR, "%s: send failed: %s", rname(m->hdr.request), strerror(-r));
    conn_drop(f);
    return r;
}

/*
 * Read the reply to @p req and apply the rules every reply shares: it arrives within the
 * timeout, it is a whole message, same request code, flags exactly version 1 + REPLY, at
 * most @p max_fds fds. The size is checked by the caller (it depends on the request).
 */
static int fe_recv(struct vu_fe *f, uint32_t req, struct vu_msg *m, unsigned max_fds)
{
    if (f->sock < 0)
        return -ENOTCONN;
    int r = wait_in(f->sock, f->timeout_ms);
    if (r == 0)
        r = vu_msg_recv(f->sock, m);
    if (r == -EAGAIN)
        r = -ETIMEDOUT; /* readable, but nothing (a spurious wake-up): treat as silent */
    if (r < 0) {
        if (r == -ECONNRESET) {
            LOG(f, VIO_LOG_ERROR, "%s: the backend closed the connection", rname(req));
            conn_drop(f);
            return -ENOTCONN;
        }
        if (r == -ETIMEDOUT) {
            LOG(f, VIO_LOG_ERROR, "%s: no reply within %d ms", rname(req), f->timeout_ms);
            conn_drop(f);
            return -ETIMEDOUT;
        }
        if (r == -EPROTO)
            return violation(f, req, "truncated or oversized message");
        LOG(f, VIO_LOG_ERROR, "%s: receive failed: %s", rname(req), strerror(-r));
        conn_drop(f);
        return r;
    }
    if (m->hdr.request != req) {
        uint32_t got = m->hdr.request;
        vu_msg_close_fds(m);
        char b[24];
        return violation(f, req, "reply is for request %s", vu_req_name(got, b, sizeof(b)));
    }
    if (m->hdr.flags != (VU_VERSION | VU_FLAG_REPLY)) {
        uint32_t fl = m->hdr.flags;
        vu_msg_close_fds(m);
        return violation(f, req, "flags 0x%x, expected 0x%x (version 1, reply)", fl,
                         VU_VERSION | VU_FLAG_REPLY);
    }
    if (m->nfds > max_fds) {
        unsigned n = m->nfds;
        vu_msg_close_fds(m);
        return violation(f, req, "%u fds attached, at most %u expected", n, max_fds);
    }
    return 0;
}

/* Read a u64 reply (exactly 8 bytes, no fd). */
static int fe_recv_u64(struct vu_fe *f, uint32_t req, uint64_t *v)
{
    struct vu_msg m;
    int r = fe_recv(f, req, &m, 0);
    if (r < 0)
        return r;
    if (m.hdr.size != sizeof(uint64_t))
        return violation(f, req, "payload size %u, expected 8", m.hdr.size);
    *v = m.p.u64;
    return 0;
}

/* A request without a reply body: with REPLY_ACK negotiated it carries NEED_REPLY and the
 * u64 ack is read (0 ok, anything else: the backend refused, -EIO). Takes no ownership of
 * @p fds. */
static int fe_request(struct vu_fe *f, uint32_t req, const void *payload, uint32_t size,
                      const int *fds, unsigned nfds)
{
    struct vu_msg m;
    msg_init(&m, req, payload, size);
    for (unsigned i = 0; i < nfds; i++)
        m.fds[i] = fds[i];
    m.nfds = nfds;
    bool ack = has_pf(f, VU_PF_REPLY_ACK);
    if (ack)
        m.hdr.flags |= VU_FLAG_NEED_REPLY;
    int r = fe_send(f, &m);
    if (r < 0 || !ack)
        return r;
    uint64_t v = 0;
    if ((r = fe_recv_u64(f, req, &v)) < 0)
        return r;
    if (v != 0) {
        LOG(f, VIO_LOG_WARN, "%s: the backend refused it (ack 0x%llx)", rname(req),
            (unsigned long long)v);
        return -EIO;
    }
    return 0;
}

/* A request whose reply is a u64 (GET_FEATURES, GET_QUEUE_NUM ...). */
static int fe_get_u64(struct vu_fe *f, uint32_t req, uint64_t *v)
{
    struct vu_msg m;
    msg_init(&m, req, NULL, 0);
    int r = fe_send(f, &m);
    return r < 0 ? r : fe_recv_u64(f, req, v);
}

static int fe_u64(struct vu_fe *f, uint32_t req, uint64_t v)
{
    return fe_request(f, req, &v, sizeof(v), NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Backend request channel                                                   */

static int breq_reply(struct vu_fe *f, const struct vu_msg *in, uint64_t status)
{
    struct vu_msg m;
    msg_init(&m, in->hdr.request, &status, sizeof(status));
    m.hdr.flags = VU_VERSION | VU_FLAG_REPLY;
    int r = vu_msg_send(f->breq, &m);
    if (r < 0)
        LOG(f, VIO_LOG_WARN, "backend request %u: ack not sent (%s)", in->hdr.request,
            strerror(-r));
    return r;
}

/* Rate limit for what a backend can repeat at will: the first 8, then every power of 2. */
static bool log_this(uint64_t n)
{
    return n <= 8 || (n & (n - 1)) == 0;
}

/* One message from the backend request channel: 0 handled, -EAGAIN nothing waiting,
 * -ENOTCONN the channel closed, -EPROTO a malformed message (the connection is dropped). */
static int breq_one(struct vu_fe *f)
{
    struct vu_msg m;
    int r = vu_msg_recv(f->breq, &m);
    if (r == -EAGAIN)
        return r;
    if (r == -ECONNRESET) {
        LOG(f, VIO_LOG_INFO, "the backend closed its request channel");
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->breq, NULL);
        xclose(&f->breq);
        return -ENOTCONN;
    }
    if (r < 0) {
        LOG(f, VIO_LOG_ERROR, "backend request channel: malformed message (%s)", strerror(-r));
        conn_drop(f);
        return -EPROTO;
    }
    uint32_t fl = m.hdr.flags;
    if ((fl & VU_VERSION_MASK) != VU_VERSION || (fl & ~(VU_VERSION_MASK | VU_FLAG_NEED_REPLY))) {
        vu_msg_close_fds(&m);
        LOG(f, VIO_LOG_ERROR, "backend request %u: flags 0x%x (version 1, no reply bit)",
            m.hdr.request, fl);
        conn_drop(f);
        return -EPROTO;
    }
    bool need = fl & VU_FLAG_NEED_REPLY;
    if (m.hdr.request == VU_BACKEND_CONFIG_CHANGE_MSG) {
        unsigned nfds = m.nfds;
        vu_msg_close_fds(&m);
        /* size 0; a zero u64 is tolerated as from front-ends (vu_msg_validate) */
        if ((m.hdr.size != 0 && !(m.hdr.size == 8 && m.p.u64 == 0)) || nfds) {
            LOG(f, VIO_LOG_ERROR, "CONFIG_CHANGE_MSG: payload size %u with %u fds, expected 0",
                m.hdr.size, nfds);
            conn_drop(f);
            return -EPROTO;
        }
        if (!has_pf(f, VU_PF_CONFIG))
            LOG(f, VIO_LOG_WARN, "CONFIG_CHANGE_MSG without the CONFIG protocol feature");
        if (log_this(++f->n_config_change))
            LOG(f, VIO_LOG_INFO, "the backend's configuration changed (%llu times)",
                (unsigned long long)f->n_config_change);
        emit(f, VIO_VHOST_EV_CONFIG_CHANGED);
        if (need)
            breq_reply(f, &m, 0);
        return 0;
    }
    if (log_this(++f->n_refused))
        LOG(f, VIO_LOG_ERROR,
            "backend request %u (size %u, %u fds) is not implemented: refused (%llu so far)",
            m.hdr.request, m.hdr.size, m.nfds, (unsigned long long)f->n_refused);
    vu_msg_close_fds(&m);
    if (need)
        breq_reply(f, &m, 1);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Handshake                                                                 */

static int epoll_add(struct vu_fe *f, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* GET_FEATURES, protocol features, GET_QUEUE_NUM, SET_BACKEND_REQ_FD on the fresh f->sock. */
static int handshake(struct vu_fe *f)
{
    int r = set_timeouts(f->sock, f->timeout_ms);
    if (r < 0)
        return r;
    uint64_t feat;
    if ((r = fe_get_u64(f, VU_GET_FEATURES, &feat)) < 0)
        return r;
    uint64_t pf = 0;
    f->pf = 0; /* no REPLY_ACK before it is negotiated */
    if (feat & (1ull << VU_F_PROTOCOL_FEATURES)) {
        uint64_t offered;
        if ((r = fe_get_u64(f, VU_GET_PROTOCOL_FEATURES, &offered)) < 0)
            return r;
        pf = offered & f->pf_allowed;
        /* sent before REPLY_ACK is in force: no ack asked */
        struct vu_msg m;
        msg_init(&m, VU_SET_PROTOCOL_FEATURES, &pf, sizeof(pf));
        if ((r = fe_send(f, &m)) < 0)
            return r;
    }
    f->features = feat;
    f->pf = pf;
    f->qnum = 0;
    if (has_pf(f, VU_PF_MQ)) {
        uint64_t q;
        if ((r = fe_get_u64(f, VU_GET_QUEUE_NUM, &q)) < 0)
            return r;
        if (q == 0 || q > MAX_QUEUE_NUM)
            return violation(f, VU_GET_QUEUE_NUM, "%llu queues", (unsigned long long)q);
        f->qnum = (unsigned)q;
        if (2u * f->qnum < f->nrings) {
            LOG(f, VIO_LOG_ERROR, "the backend has %u queue pairs, %u rings wanted", f->qnum,
                f->nrings);
            return -ERANGE;
        }
    }
    if (has_pf(f, VU_PF_BACKEND_REQ)) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
            return -errno;
        r = fe_request(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sp[1], 1);
        close(sp[1]);
        if (r < 0) {
            close(sp[0]);
            return r;
        }
        f->breq = sp[0];
        /* vio_vhost_handle() must not block: a backend request is read whole (a backend
         * writes one small message at once) and its ack written within a short bound */
        int bound = f->timeout_ms < BREQ_TIMEOUT_MS ? f->timeout_ms : BREQ_TIMEOUT_MS;
        if ((r = set_timeouts(f->breq, bound)) < 0 || (r = epoll_add(f, f->breq)) < 0)
            return r;
    }
    return epoll_add(f, f->sock);
}

/* ------------------------------------------------------------------------ */
/* The wire side of every operation (also what reconnect replays)            */

static int live(const struct vu_fe *f)
{
    return f->sock >= 0 ? 0 : -ENOTCONN;
}

/* The prologue of an op that needs protocol feature @p pf: -ENOTCONN, -ENOTSUP or 0. */
static int live_pf(const struct vu_fe *f, unsigned pf)
{
    int r = live(f);
    return r < 0 ? r : has_pf(f, pf) ? 0 : -ENOTSUP;
}

static int dupfd(int fd)
{
    if (fd < 0)
        return -1;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return d < 0 ? -errno : d;
}

static int w_set_features(struct vu_fe *f, uint64_t feat)
{
    /* vhost-user: PROTOCOL_FEATURES stays set once negotiated (vhost-user.rst) */
    if (f->features & (1ull << VU_F_PROTOCOL_FEATURES))
        feat |= 1ull << VU_F_PROTOCOL_FEATURES;
    return fe_u64(f, VU_SET_FEATURES, feat);
}

static void region_wire(const struct vio_vhost_mem_region *r, struct vu_region *w)
{
    w->gpa = r->guest_addr;
    w->size = r->size;
    w->uva = r->user_addr;
    w->mmap_offset = r->fd_offset;
}

static int w_set_mem_table(struct vu_fe *f, const struct vio_vhost_mem_region *r, unsigned n)
{
    struct vu_mem mem;
    memset(&mem, 0, sizeof(mem));
    mem.nregions = n;
    int fds[VU_MAX_MEM_REGIONS];
    for (unsigned i = 0; i < n; i++) {
        region_wire(&r[i], &mem.r[i]);
        fds[i] = r[i].fd;
    }
    return fe_request(f, VU_SET_MEM_TABLE, &mem, (uint32_t)(8 + n * sizeof(struct vu_region)),
                      fds, n);
}

static int w_mem_reg(struct vu_fe *f, uint32_t req, const struct vio_vhost_mem_region *r)
{
    struct vu_mem_single m1;
    memset(&m1, 0, sizeof(m1));
    region_wire(r, &m1.r);
    return fe_request(f, req, &m1, sizeof(m1), &r->fd, req == VU_ADD_MEM_REG ? 1 : 0);
}

static int w_state(struct vu_fe *f, uint32_t req, unsigned idx, unsigned num)
{
    struct vu_state st = {.index = idx, .num = num};
    return fe_request(f, req, &st, sizeof(st), NULL, 0);
}

static int w_vring_addr(struct vu_fe *f, unsigned idx, const struct vio_vhost_vring_addr *a)
{
    struct vu_addr w;
    memset(&w, 0, sizeof(w));
    w.index = idx;
    w.flags = (a->flags & VIO_VHOST_VRING_F_LOG) ? 1u << VU_VRING_F_LOG : 0;
    w.desc = a->desc;
    w.used = a->used;
    w.avail = a->avail;
    w.log = a->log_guest_addr;
    return fe_request(f, VU_SET_VRING_ADDR, &w, sizeof(w), NULL, 0);
}

static int w_vring_fd(struct vu_fe *f, uint32_t req, unsigned idx, int fd)
{
    uint64_t v = idx | (fd < 0 ? VU_VRING_NOFD : 0);
    return fe_request(f, req, &v, sizeof(v), &fd, fd < 0 ? 0 : 1);
}

static int w_set_inflight(struct vu_fe *f, int fd, uint64_t size, unsigned nq, unsigned qs)
{
    struct vu_inflight in;
    memset(&in, 0, sizeof(in));
    in.mmap_size = size;
    in.mmap_offset = 0;
    in.num_queues = (uint16_t)nq;
    in.queue_size = (uint16_t)qs;
    return fe_request(f, VU_SET_INFLIGHT_FD, &in, sizeof(in), &fd, 1);
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */

static void record_clear(struct vu_fe *f)
{
    for (unsigned i = 0; i < f->nmem; i++)
        xclose(&f->mem[i].fd);
    f->nmem = 0;
    f->mem_set = false;
    xclose(&f->inflight_fd);
    for (unsigned i = 0; i < f->nrings; i++) {
        struct fe_ring *r = &f->rings[i];
        if (r->kick >= 0)
            close(r->kick);
        if (r->call >= 0)
            close(r->call);
        if (r->err >= 0)
            close(r->err);
        *r = (struct fe_ring){.enable = -1, .kick = -2, .call = -2, .err = -2};
    }
    f->features_set = false;
    f->status_set = false;
}

static void fe_free(struct vio_vhost *v)
{
    struct vu_fe *f = FE(v);
    conn_close(f);
    xclose(&f->listen_fd);
    if (f->created_path && f->path)
        unlink(f->path);
    xclose(&f->epfd);
    if (f->rings)
        record_clear(f);
    free(f->rings);
    free(f->mem);
    free(f->path);
    free(f);
}

static int fe_fd(const struct vio_vhost *v)
{
    return ((const struct vu_fe *)v)->epfd;
}

static bool fe_connected(const struct vio_vhost *v)
{
    return ((const struct vu_fe *)v)->sock >= 0;
}

static int fe_handle(struct vio_vhost *v)
{
    struct vu_fe *f = FE(v);
    if (f->sock < 0)
        return -ENOTCONN;
    for (int i = 0; f->breq >= 0 && i < BREQ_BUDGET; i++) {
        int r = breq_one(f);
        if (r == -EAGAIN || r == -ENOTCONN)
            break;
        if (r == -EPROTO)
            return -ENOTCONN;
    }
    if (f->sock < 0)
        return -ENOTCONN;
    /* nothing is owed to us on the main socket between requests: readable means EOF (the
     * backend vanished) or bytes nobody asked for */
    char c;
    ssize_t n;
    do {
        n = recv(f->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n > 0)
        LOG(f, VIO_LOG_ERROR, "the backend sent a message nobody asked for");
    else
        LOG(f, VIO_LOG_ERROR, "the backend closed the connection");
    conn_drop(f);
    return -ENOTCONN;
}

static int fe_get_features(struct vio_vhost *v, uint64_t *feat)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r == 0)
        *feat = f->features & ~(1ull << VU_F_PROTOCOL_FEATURES);
    return r;
}

static int fe_set_features(struct vio_vhost *v, uint64_t feat)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r < 0)
        return r;
    if (feat & ~f->features) {
        LOG(f, VIO_LOG_WARN, "SET_FEATURES: bits 0x%llx were not offered",
            (unsigned long long)(feat & ~f->features));
        return -EINVAL;
    }
    if ((r = w_set_features(f, feat)) < 0)
        return r;
    f->features_set = true;
    f->features_acked = feat;
    return 0;
}

static int fe_get_protocol_features(struct vio_vhost *v, uint64_t *pf)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r == 0)
        *pf = f->pf;
    return r;
}

static int fe_set_owner(struct vio_vhost *v)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r == 0 && (r = fe_request(f, VU_SET_OWNER, NULL, 0, NULL, 0)) == 0)
        f->owner = true;
    return r;
}

static int fe_reset(struct vio_vhost *v)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r < 0)
        return r;
    bool dev = has_pf(f, VU_PF_RESET_DEVICE);
    if ((r = fe_request(f, dev ? VU_RESET_DEVICE : VU_RESET_OWNER, NULL, 0, NULL, 0)) < 0)
        return r;
    record_clear(f);
    if (!dev)
        f->owner = false;
    return 0;
}

static int fe_get_queue_num(struct vio_vhost *v, unsigned *num)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_MQ);
    if (r < 0)
        return r;
    *num = f->qnum;
    return 0;
}

static int fe_set_status(struct vio_vhost *v, uint8_t status)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_STATUS);
    if (r < 0)
        return r;
    if ((r = fe_u64(f, VU_SET_STATUS, status)) == 0) {
        f->status_set = status != 0;
        f->status = status;
    }
    return r;
}

static int fe_get_status(struct vio_vhost *v, uint8_t *status)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_STATUS);
    if (r < 0)
        return r;
    uint64_t s;
    if ((r = fe_get_u64(f, VU_GET_STATUS, &s)) < 0)
        return r;
    if (s > 0xff)
        return violation(f, VU_GET_STATUS, "status 0x%llx beyond 8 bits", (unsigned long long)s);
    *status = (uint8_t)s;
    return 0;
}

static int cfg_range(uint32_t off, uint32_t len)
{
    return len == 0 || len > VU_MAX_CONFIG || off > VU_MAX_CONFIG - len ? -EINVAL : 0;
}

static int fe_get_config(struct vio_vhost *v, uint32_t off, void *buf, uint32_t len)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_CONFIG);
    if (r < 0)
        return r;
    if ((r = cfg_range(off, len)) < 0)
        return r;
    /* libvhost-user (and SPDK) answer from offset 0 whatever the message says; QEMU always
     * asks from 0: ask for [0, off + len) and keep the tail */
    uint32_t want = off + len;
    struct vu_msg m;
    struct vu_config c;
    memset(&c, 0, sizeof(c));
    c.offset = 0;
    c.size = want;
    msg_init(&m, VU_GET_CONFIG, &c, 12u + want);
    if ((r = fe_send(f, &m)) < 0 || (r = fe_recv(f, VU_GET_CONFIG, &m, 0)) < 0)
        return r;
    if (m.hdr.size == 0) {
        /* vhost-user.rst: an empty reply is the backend's way to report a failure */
        LOG(f, VIO_LOG_WARN, "GET_CONFIG: the backend refused %u bytes at %u", len, off);
        return -EIO;
    }
    if (m.hdr.size != 12u + want)
        return violation(f, VU_GET_CONFIG, "payload size %u, expected %u", m.hdr.size, 12u + want);
    if (m.p.config.offset != 0 || m.p.config.size != want)
        return violation(f, VU_GET_CONFIG, "range %u+%u, asked 0+%u", m.p.config.offset,
                         m.p.config.size, want);
    memcpy(buf, m.p.config.payload + off, len);
    return 0;
}

static int fe_set_config(struct vio_vhost *v, uint32_t off, const void *buf, uint32_t len)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_CONFIG);
    if (r < 0)
        return r;
    if ((r = cfg_range(off, len)) < 0)
        return r;
    struct vu_config c;
    memset(&c, 0, sizeof(c));
    c.offset = off;
    c.size = len;
    memcpy(c.payload, buf, len);
    return fe_request(f, VU_SET_CONFIG, &c, 12u + len, NULL, 0);
}

static bool wraps(uint64_t a, uint64_t len)
{
    return a + len - 1 < a;
}

static int region_ok(const struct vio_vhost_mem_region *r)
{
    return r->size && r->fd >= 0 && !wraps(r->guest_addr, r->size) &&
                   !wraps(r->user_addr, r->size) && !wraps(r->fd_offset, r->size)
               ? 0
               : -EINVAL;
}

static bool overlap(const struct vio_vhost_mem_region *a, const struct vio_vhost_mem_region *b)
{
    return a->guest_addr <= b->guest_addr + (b->size - 1) &&
           b->guest_addr <= a->guest_addr + (a->size - 1);
}

/* Record @p n regions (duplicating their fds) after the recorded ones (or instead of them). */
static int record_regions(struct vu_fe *f, const struct vio_vhost_mem_region *r, unsigned n,
                          bool replace)
{
    if (!f->reconnect)
        return 0;
    unsigned base = replace ? 0 : f->nmem;
    if (base + n > MAX_RECORDED_REGIONS)
        return -ENOSPC;
    if (base + n > f->mem_cap) {
        unsigned cap = f->mem_cap ? f->mem_cap : 8;
        while (cap < base + n)
            cap *= 2;
        struct vio_vhost_mem_region *m = realloc(f->mem, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        f->mem = m;
        f->mem_cap = cap;
    }
    int dups[VU_MAX_MEM_REGIONS];
    for (unsigned i = 0; i < n; i++) {
        dups[i] = dupfd(r[i].fd);
        if (dups[i] < 0) {
            int e = dups[i];
            while (i--)
                close(dups[i]);
            return e;
        }
    }
    if (replace) {
        for (unsigned i = 0; i < f->nmem; i++)
            xclose(&f->mem[i].fd);
        f->nmem = 0;
    }
    for (unsigned i = 0; i < n; i++) {
        f->mem[f->nmem] = r[i];
        f->mem[f->nmem++].fd = dups[i];
    }
    return 0;
}

static int fe_set_mem_table(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n)
{
    struct vu_fe *f = FE(v);
    if (n == 0 || n > VU_MAX_MEM_REGIONS)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (region_ok(&r[i]) < 0)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (overlap(&r[i], &r[j]))
                return -EINVAL;
    }
    int e = live(f);
    if (e < 0 || (e = w_set_mem_table(f, r, n)) < 0)
        return e;
    if ((e = record_regions(f, r, n, true)) < 0)
        LOG(f, VIO_LOG_WARN, "memory table sent but not recorded for reconnect (%s)",
            strerror(-e));
    f->mem_set = true;
    return 0;
}

static int fe_get_max_mem_slots(struct vio_vhost *v, unsigned *slots)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_CONFIGURE_MEM_SLOTS);
    if (r < 0)
        return r;
    uint64_t s;
    if ((r = fe_get_u64(f, VU_GET_MAX_MEM_SLOTS, &s)) < 0)
        return r;
    if (s == 0 || s > MAX_MEM_SLOTS)
        return violation(f, VU_GET_MAX_MEM_SLOTS, "%llu slots", (unsigned long long)s);
    *slots = (unsigned)s;
    return 0;
}

static int fe_add_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r)
{
    struct vu_fe *f = FE(v);
    if (region_ok(r) < 0)
        return -EINVAL;
    int e = live_pf(f, VU_PF_CONFIGURE_MEM_SLOTS);
    if (e < 0)
        return e;
    if ((e = w_mem_reg(f, VU_ADD_MEM_REG, r)) < 0)
        return e;
    if ((e = record_regions(f, r, 1, false)) < 0)
        LOG(f, VIO_LOG_WARN, "region sent but not recorded for reconnect (%s)", strerror(-e));
    f->mem_set = true;
    return 0;
}

static int fe_rem_mem_region(struct vio_vhost *v, const struct vio_vhost_mem_region *r)
{
    struct vu_fe *f = FE(v);
    if (!r->size || wraps(r->guest_addr, r->size))
        return -EINVAL;
    int e = live_pf(f, VU_PF_CONFIGURE_MEM_SLOTS);
    if (e < 0)
        return e;
    if ((e = w_mem_reg(f, VU_REM_MEM_REG, r)) < 0)
        return e;
    for (unsigned i = 0; i < f->nmem; i++) {
        if (f->mem[i].guest_addr == r->guest_addr && f->mem[i].size == r->size) {
            xclose(&f->mem[i].fd);
            f->mem[i] = f->mem[--f->nmem];
            break;
        }
    }
    return 0;
}

static int fe_set_log_base(struct vio_vhost *v, uint64_t user_addr, int fd, uint64_t size)
{
    struct vu_fe *f = FE(v);
    (void)user_addr; /* vhost-user shares the log as an fd */
    int r = live_pf(f, VU_PF_LOG_SHMFD);
    if (r < 0)
        return r;
    if (fd < 0 || size == 0)
        return -EINVAL;
    struct vu_log lg = {.size = size, .offset = 0};
    struct vu_msg m;
    msg_init(&m, VU_SET_LOG_BASE, &lg, sizeof(lg));
    m.fds[0] = fd;
    m.nfds = 1;
    /* with LOG_SHMFD the backend always answers (QEMU waits for it, and checks only the
     * request code): DPDK with an empty payload, ours with a u64 status, libvhost-user with
     * a u64 that is not a status (what was in the request's first 8 bytes), so the value
     * cannot be read as an ack */
    if ((r = fe_send(f, &m)) < 0 || (r = fe_recv(f, VU_SET_LOG_BASE, &m, 0)) < 0)
        return r;
    if (m.hdr.size != 0 && m.hdr.size != 8)
        return violation(f, VU_SET_LOG_BASE, "payload size %u, expected 0 or 8", m.hdr.size);
    return 0;
}

static int fe_set_log_fd(struct vio_vhost *v, int fd)
{
    struct vu_fe *f = FE(v);
    int r = live(f);
    if (r < 0)
        return r;
    if (fd < 0)
        return -EINVAL;
    return fe_request(f, VU_SET_LOG_FD, NULL, 0, &fd, 1);
}

static struct fe_ring *ring(struct vu_fe *f, unsigned idx)
{
    return idx < f->nrings ? &f->rings[idx] : NULL;
}

static int fe_set_vring_num(struct vio_vhost *v, unsigned idx, unsigned num)
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg || !vio_is_pow2(num) || num > 32768)
        return -EINVAL;
    int r = live(f);
    if (r == 0 && (r = w_state(f, VU_SET_VRING_NUM, idx, num)) == 0) {
        rg->num = num;
        rg->num_set = true;
    }
    return r;
}

static int fe_set_vring_addr(struct vio_vhost *v, unsigned idx, const struct vio_vhost_vring_addr *a)
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg || (a->flags & ~(unsigned)VIO_VHOST_VRING_F_LOG))
        return -EINVAL;
    int r = live(f);
    if (r == 0 && (r = w_vring_addr(f, idx, a)) == 0) {
        rg->addr = *a;
        rg->addr_set = true;
    }
    return r;
}

static int fe_set_vring_base(struct vio_vhost *v, unsigned idx, unsigned base)
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg || base > 0xffff)
        return -EINVAL;
    if (f->sock < 0 && f->reconnect) {
        /* where the ring resumes after vio_vhost_reconnect() */
        rg->base = base;
        rg->base_set = true;
        return 0;
    }
    int r = live(f);
    if (r == 0 && (r = w_state(f, VU_SET_VRING_BASE, idx, base)) == 0) {
        rg->base = base;
        rg->base_set = true;
    }
    return r;
}

static int fe_get_vring_base(struct vio_vhost *v, unsigned idx, unsigned *base)
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg)
        return -EINVAL;
    int r = live(f);
    if (r < 0)
        return r;
    struct vu_msg m;
    struct vu_state st = {.index = idx, .num = 0};
    msg_init(&m, VU_GET_VRING_BASE, &st, sizeof(st));
    if ((r = fe_send(f, &m)) < 0 || (r = fe_recv(f, VU_GET_VRING_BASE, &m, 0)) < 0)
        return r;
    if (m.hdr.size != sizeof(struct vu_state))
        return violation(f, VU_GET_VRING_BASE, "payload size %u, expected 8", m.hdr.size);
    if (m.p.state.index != idx)
        return violation(f, VU_GET_VRING_BASE, "ring %u, asked for %u", m.p.state.index, idx);
    if (m.p.state.num > 0xffff)
        return violation(f, VU_GET_VRING_BASE, "base %u beyond 16 bits", m.p.state.num);
    *base = m.p.state.num;
    rg->base = m.p.state.num;
    rg->base_set = true;
    rg->stopped = true;
    return 0;
}

/* Replace a recorded fd slot with a duplicate of @p fd (-1: sent with the no-fd flag). */
static int record_fd(struct vu_fe *f, int *slot, int fd)
{
    int d = -1;
    if (f->reconnect && fd >= 0 && (d = dupfd(fd)) < 0)
        return d;
    if (*slot >= 0)
        close(*slot);
    *slot = f->reconnect ? d : -2;
    return 0;
}

static int vring_fd(struct vio_vhost *v, uint32_t req, unsigned idx, int fd, int *(*slot)(struct fe_ring *))
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg)
        return -EINVAL;
    int r = live(f);
    if (r < 0 || (r = w_vring_fd(f, req, idx, fd)) < 0)
        return r;
    if (req == VU_SET_VRING_KICK)
        rg->stopped = false;
    if ((r = record_fd(f, slot(rg), fd)) < 0)
        LOG(f, VIO_LOG_WARN, "%s sent but not recorded for reconnect (%s)", rname(req),
            strerror(-r));
    return 0;
}

static int *slot_kick(struct fe_ring *r)
{
    return &r->kick;
}
static int *slot_call(struct fe_ring *r)
{
    return &r->call;
}
static int *slot_err(struct fe_ring *r)
{
    return &r->err;
}

static int fe_set_vring_kick(struct vio_vhost *v, unsigned idx, int fd)
{
    return vring_fd(v, VU_SET_VRING_KICK, idx, fd, slot_kick);
}

static int fe_set_vring_call(struct vio_vhost *v, unsigned idx, int fd)
{
    return vring_fd(v, VU_SET_VRING_CALL, idx, fd, slot_call);
}

static int fe_set_vring_err(struct vio_vhost *v, unsigned idx, int fd)
{
    return vring_fd(v, VU_SET_VRING_ERR, idx, fd, slot_err);
}

static int fe_set_vring_enable(struct vio_vhost *v, unsigned idx, bool enable)
{
    struct vu_fe *f = FE(v);
    struct fe_ring *rg = ring(f, idx);
    if (!rg)
        return -EINVAL;
    int r = live(f);
    if (r < 0)
        return r;
    /* without PROTOCOL_FEATURES a ring is enabled when it starts (vhost-user.rst) */
    if (!(f->features & (1ull << VU_F_PROTOCOL_FEATURES)))
        return -ENOTSUP;
    if ((r = w_state(f, VU_SET_VRING_ENABLE, idx, enable ? 1 : 0)) == 0)
        rg->enable = enable ? 1 : 0;
    return r;
}

static int fe_get_inflight(struct vio_vhost *v, unsigned nq, unsigned qs, int *fd, uint64_t *size)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_INFLIGHT_SHMFD);
    if (r < 0)
        return r;
    if (!size || nq == 0 || nq > f->nrings || !vio_is_pow2(qs) || qs > 32768)
        return -EINVAL;
    struct vu_inflight in;
    memset(&in, 0, sizeof(in));
    in.num_queues = (uint16_t)nq;
    in.queue_size = (uint16_t)qs;
    struct vu_msg m;
    msg_init(&m, VU_GET_INFLIGHT_FD, &in, sizeof(in));
    if ((r = fe_send(f, &m)) < 0 || (r = fe_recv(f, VU_GET_INFLIGHT_FD, &m, 1)) < 0)
        return r;
    const char *bad = NULL;
    const struct vu_inflight *o = &m.p.inflight;
    if (m.hdr.size != sizeof(struct vu_inflight) && m.hdr.size != 20)
        bad = "payload size";
    else if (o->mmap_size == 0) {
        if (m.nfds) {
            bad = "an fd with an empty area";
        } else {
            LOG(f, VIO_LOG_WARN, "GET_INFLIGHT_FD: the backend has no inflight area");
            return -EIO;
        }
    } else if (m.nfds != 1)
        bad = "no fd for the area";
    else if (o->num_queues != nq || o->queue_size != qs)
        bad = "queue count or size differs from the request";
    else if (o->mmap_offset != 0)
        bad = "a non-zero offset into the fd";
    if (bad) {
        unsigned sz = m.hdr.size;
        vu_msg_close_fds(&m);
        return violation(f, VU_GET_INFLIGHT_FD, "%s (payload %u bytes)", bad, sz);
    }
    *fd = m.fds[0];
    *size = o->mmap_size;
    return 0;
}

static int fe_set_inflight(struct vio_vhost *v, int fd, uint64_t size, unsigned nq, unsigned qs)
{
    struct vu_fe *f = FE(v);
    int r = live_pf(f, VU_PF_INFLIGHT_SHMFD);
    if (r < 0)
        return r;
    if (fd < 0 || size == 0 || nq == 0 || nq > f->nrings || !vio_is_pow2(qs) || qs > 32768)
        return -EINVAL;
    if ((r = w_set_inflight(f, fd, size, nq, qs)) < 0)
        return r;
    if ((r = record_fd(f, &f->inflight_fd, fd)) < 0)
        LOG(f, VIO_LOG_WARN, "inflight fd sent but not recorded for reconnect (%s)",
            strerror(-r));
    f->inflight_size = size;
    f->inflight_nq = nq;
    f->inflight_qs = qs;
    return 0;
}

static int fe_net_set_backend(struct vio_vhost *v, unsigned idx, int fd)
{
    (void)v;
    (void)idx;
    (void)fd;
    return 0; /* a vhost-user backend has its own */
}

/* ------------------------------------------------------------------------ */
/* Connect and reconnect                                                     */

static int open_conn(struct vu_fe *f)
{
    int s = -1;
    int r = f->server ? accept_one(f, &s) : connect_client(f, &s);
    if (r < 0)
        return r;
    f->sock = s;
    if ((r = handshake(f)) < 0)
        conn_close(f);
    return r;
}

/* Play the recorded state to the new backend, in the protocol's order. */
static int replay(struct vu_fe *f)
{
    int r;
    if (f->owner && (r = fe_request(f, VU_SET_OWNER, NULL, 0, NULL, 0)) < 0)
        return r;
    if (f->features_set) {
        if (f->features_acked & ~f->features) {
            LOG(f, VIO_LOG_ERROR, "reconnect: the backend no longer offers 0x%llx",
                (unsigned long long)(f->features_acked & ~f->features));
            return -EPROTO;
        }
        if ((r = w_set_features(f, f->features_acked)) < 0)
            return r;
    }
    if (f->mem_set && f->nmem) {
        if (f->nmem <= VU_MAX_MEM_REGIONS) {
            if ((r = w_set_mem_table(f, f->mem, f->nmem)) < 0)
                return r;
        } else {
            if (!has_pf(f, VU_PF_CONFIGURE_MEM_SLOTS))
                return -EPROTO;
            for (unsigned i = 0; i < f->nmem; i++)
                if ((r = w_mem_reg(f, VU_ADD_MEM_REG, &f->mem[i])) < 0)
                    return r;
        }
    }
    if (f->inflight_fd >= 0 &&
        (r = w_set_inflight(f, f->inflight_fd, f->inflight_size, f->inflight_nq,
                            f->inflight_qs)) < 0)
        return r;
    for (unsigned i = 0; i < f->nrings; i++) {
        struct fe_ring *rg = &f->rings[i];
        if (rg->num_set && (r = w_state(f, VU_SET_VRING_NUM, i, rg->num)) < 0)
            return r;
        if (rg->addr_set && (r = w_vring_addr(f, i, &rg->addr)) < 0)
            return r;
        if (rg->base_set && (r = w_state(f, VU_SET_VRING_BASE, i, rg->base)) < 0)
            return r;
        if (rg->call != -2 && (r = w_vring_fd(f, VU_SET_VRING_CALL, i, rg->call)) < 0)
            return r;
        if (rg->err != -2 && (r = w_vring_fd(f, VU_SET_VRING_ERR, i, rg->err)) < 0)
            return r;
        if (!rg->stopped && rg->kick != -2 &&
            (r = w_vring_fd(f, VU_SET_VRING_KICK, i, rg->kick)) < 0)
            return r;
        if (rg->enable >= 0 && (f->features & (1ull << VU_F_PROTOCOL_FEATURES)) &&
            (r = w_state(f, VU_SET_VRING_ENABLE, i, (unsigned)rg->enable)) < 0)
            return r;
    }
    if (f->status_set && has_pf(f, VU_PF_STATUS) && (r = fe_u64(f, VU_SET_STATUS, f->status)) < 0)
        return r;
    return 0;
}

static int fe_reconnect(struct vio_vhost *v)
{
    struct vu_fe *f = FE(v);
    if (!f->reconnect)
        return -ENOTSUP;
    conn_close(f);
    /* what the session was negotiated with: a new backend must give the same */
    uint64_t old_pf = f->pf, old_features = f->features;
    unsigned old_qnum = f->qnum;
    int r = open_conn(f);
    if (r == 0 && f->pf != old_pf) {
        LOG(f, VIO_LOG_ERROR, "reconnect: protocol features 0x%llx, were 0x%llx",
            (unsigned long long)f->pf, (unsigned long long)old_pf);
        conn_close(f);
        r = -EPROTO;
    }
    if (r < 0) {
        f->pf = old_pf;
        f->features = old_features;
        f->qnum = old_qnum;
        return r;
    }
    if ((r = replay(f)) < 0) {
        LOG(f, VIO_LOG_ERROR, "reconnect: re-sending the state failed (%s)", strerror(-r));
        conn_close(f);
        f->features = old_features;
        f->qnum = old_qnum;
        return r;
    }
    LOG(f, VIO_LOG_INFO, "reconnected to %s, state re-sent", f->path);
    emit(f, VIO_VHOST_EV_RECONNECTED);
    return 0;
}

static const struct vio_vhost_ops fe_ops = {
    .kind = VIO_VHOST_USER,
    .free = fe_free,
    .fd = fe_fd,
    .handle = fe_handle,
    .connected = fe_connected,
    .reconnect = fe_reconnect,
    .get_features = fe_get_features,
    .set_features = fe_set_features,
    .get_protocol_features = fe_get_protocol_features,
    .set_owner = fe_set_owner,
    .reset = fe_reset,
    .get_queue_num = fe_get_queue_num,
    .set_status = fe_set_status,
    .get_status = fe_get_status,
    .get_config = fe_get_config,
    .set_config = fe_set_config,
    .set_mem_table = fe_set_mem_table,
    .get_max_mem_slots = fe_get_max_mem_slots,
    .add_mem_region = fe_add_mem_region,
    .rem_mem_region = fe_rem_mem_region,
    .set_log_base = fe_set_log_base,
    .set_log_fd = fe_set_log_fd,
    .set_vring_num = fe_set_vring_num,
    .set_vring_addr = fe_set_vring_addr,
    .set_vring_base = fe_set_vring_base,
    .get_vring_base = fe_get_vring_base,
    .set_vring_kick = fe_set_vring_kick,
    .set_vring_call = fe_set_vring_call,
    .set_vring_err = fe_set_vring_err,
    .set_vring_enable = fe_set_vring_enable,
    .get_inflight = fe_get_inflight,
    .set_inflight = fe_set_inflight,
    .net_set_backend = fe_net_set_backend,
};

int vio_vhost_user_connect(const struct vio_vhost_user_frontend_config *cfg,
                           struct vio_vhost **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->struct_size < sizeof(*cfg) || !cfg->path || cfg->timeout_ms < 0)
        return -EINVAL;
    struct sockaddr_un sa;
    if (sock_addr(cfg->path, &sa) < 0)
        return -EINVAL;
    unsigned nrings = cfg->num_queues ? cfg->num_queues : 2;
    if (nrings > MAX_RINGS)
        return -EINVAL;
    struct vu_fe *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->base.ops = &fe_ops;
    f->base.log = cfg->log;
    f->base.log_opaque = cfg->log_opaque;
    f->server = cfg->server;
    f->reconnect = cfg->reconnect;
    f->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    f->nrings = nrings;
    f->pf_allowed = (cfg->protocol_features ? cfg->protocol_features : FE_PF_ALL) & FE_PF_ALL;
    f->event = cfg->event;
    f->event_opaque = cfg->event_opaque;
    f->listen_fd = f->sock = f->breq = f->inflight_fd = -1;
    f->path = strdup(cfg->path);
    f->rings = calloc(nrings, sizeof(*f->rings));
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    int r = 0;
    if (!f->path || !f->rings)
        r = -ENOMEM;
    else if (f->epfd < 0)
        r = -errno;
    if (r == 0) {
        for (unsigned i = 0; i < nrings; i++)
            f->rings[i] = (struct fe_ring){.enable = -1, .kick = -2, .call = -2, .err = -2};
        if (f->server)
            r = listen_server(f);
    }
    if (r == 0)
        r = open_conn(f);
    if (r < 0) {
        fe_free(&f->base);
        return r;
    }
    LOG(f, VIO_LOG_INFO, "connected to %s: features 0x%llx, protocol features 0x%llx%s", f->path,
        (unsigned long long)f->features, (unsigned long long)f->pf,
        f->qnum ? "" : " (no MQ)");
    *out = &f->base;
    return 0;
}
