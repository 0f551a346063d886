/* SPDX-License-Identifier: MIT */
/*
 * vhost-user message validation (applying a request's row of the table in
 * vhost_user.c) and socket I/O with fd passing. Every rule here is something
 * the front-end controls; a message that breaks one is refused before any
 * handler sees it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "transport/vhost_user_msg.h"

const char *vu_req_name(uint32_t req, char *buf, size_t len)
{
    const struct vu_req_info *ri = vu_req_info(req);
    if (ri)
        return ri->name;
    snprintf(buf, len, "unknown(%u)", req);
    return buf;
}

static bool wraps(uint64_t a, uint64_t len)
{
    return len && a + len - 1 < a;
}

#define FAIL(err, ...)                                                                             \
    do {                                                                                           \
        if (why)                                                                                   \
            snprintf(why, why_len, __VA_ARGS__);                                                   \
        return (err);                                                                              \
    } while (0)

static int check_region(const struct vu_region *r, char *why, size_t why_len, unsigned i)
{
    if (r->size == 0)
        FAIL(-EINVAL, "region %u has size 0", i);
    if (wraps(r->gpa, r->size) || wraps(r->uva, r->size) || wraps(r->mmap_offset, r->size))
        FAIL(-EINVAL, "region %u: address + size wraps (gpa 0x%llx size 0x%llx)", i,
             (unsigned long long)r->gpa, (unsigned long long)r->size);
    return 0;
}

/* The size rule of the row's payload kind, and the value rules every request of that kind
 * shares. */
static int check_kind(const struct vu_msg *m, const struct vu_req_info *ri,
                      const struct vu_validate_ctx *ctx, char *why, size_t why_len)
{
    uint32_t sz = m->hdr.size;
    const union vu_payload *p = &m->p;
    switch ((enum vu_payload_kind)ri->kind) {
    case VU_P_NONE:
        /* some front-ends send a zero u64 with payload-less requests */
        if (sz != 0 && !(sz == 8 && p->u64 == 0))
            FAIL(-EPROTO, "%s: payload size %u, expected 0", ri->name, sz);
        return 0;
    case VU_P_U64:
        if (sz != 8)
            FAIL(-EPROTO, "%s: payload size %u, expected 8", ri->name, sz);
        return 0;
    case VU_P_STATE:
        if (sz != sizeof(struct vu_state))
            FAIL(-EPROTO, "%s: payload size %u, expected 8", ri->name, sz);
        if (p->state.index >= ctx->num_queues)
            FAIL(-EINVAL, "%s: queue %u out of range (%u queues)", ri->name, p->state.index,
                 ctx->num_queues);
        return 0;
    case VU_P_ADDR:
        if (sz != sizeof(struct vu_addr))
            FAIL(-EPROTO, "%s: payload size %u, expected 40", ri->name, sz);
        if (p->addr.index >= ctx->num_queues)
            FAIL(-EINVAL, "%s: queue %u out of range", ri->name, p->addr.index);
        if (p->addr.flags & ~(1u << VU_VRING_F_LOG))
            FAIL(-EINVAL, "%s: unknown flags 0x%x", ri->name, p->addr.flags);
        return 0;
    case VU_P_MEM: {
        if (sz < 8)
            FAIL(-EPROTO, "%s: payload size %u too small", ri->name, sz);
        uint32_t n = p->mem.nregions;
        if (n == 0 || n > VU_MAX_MEM_REGIONS)
            FAIL(-EINVAL, "%s: %u regions (1..%u allowed)", ri->name, n, VU_MAX_MEM_REGIONS);
        if (sz != 8 + n * sizeof(struct vu_region))
            FAIL(-EPROTO, "%s: payload size %u does not match %u regions", ri->name, sz, n);
        for (uint32_t i = 0; i < n; i++) {
            int r = check_region(&p->mem.r[i], why, why_len, i);
            if (r)
                return r;
            for (uint32_t j = 0; j < i; j++) {
                const struct vu_region *a = &p->mem.r[i], *b = &p->mem.r[j];
                /* last bytes, not ends: a region may end exactly at 2^64 (no wrap, size > 0
                 * checked above) */
                uint64_t a_last = a->gpa + (a->size - 1), b_last = b->gpa + (b->size - 1);
                if (a->gpa <= b_last && b->gpa <= a_last)
                    FAIL(-EINVAL, "%s: regions %u and %u overlap", ri->name, j, i);
            }
        }
        return 0;
    }
    case VU_P_MEM_SINGLE:
        if (sz != sizeof(struct vu_mem_single))
            FAIL(-EPROTO, "%s: payload size %u, expected 40", ri->name, sz);
        return check_region(&p->mem1.r, why, why_len, 0);
    case VU_P_LOG:
        if (sz != sizeof(struct vu_log))
            FAIL(-EPROTO, "%s: payload size %u, expected 16", ri->name, sz);
        if (p->log.size == 0 || wraps(p->log.offset, p->log.size))
            FAIL(-EINVAL, "%s: log size 0x%llx offset 0x%llx", ri->name,
                 (unsigned long long)p->log.size, (unsigned long long)p->log.offset);
        return 0;
    case VU_P_CONFIG:
        if (sz < 12)
            FAIL(-EPROTO, "%s: payload size %u too small", ri->name, sz);
        if (p->config.size > VU_MAX_CONFIG || sz != 12 + p->config.size)
            FAIL(-EPROTO, "%s: config size %u does not match payload %u", ri->name,
                 p->config.size, sz);
        if (p->config.offset > VU_MAX_CONFIG || p->config.offset + p->config.size > VU_MAX_CONFIG)
            FAIL(-EINVAL, "%s: config range %u+%u out of bounds", ri->name, p->config.offset,
                 p->config.size);
        if (p->config.flags > 1)
            FAIL(-EINVAL, "%s: config flags %u", ri->name, p->config.flags);
        return 0;
    case VU_P_INFLIGHT:
        /* 20 bytes of fields; QEMU sends the padded C struct (24) */
        if (sz != 20 && sz != sizeof(struct vu_inflight))
            FAIL(-EPROTO, "%s: payload size %u, expected 24", ri->name, sz);
        if (p->inflight.num_queues == 0 || p->inflight.num_queues > ctx->num_queues)
            FAIL(-EINVAL, "%s: %u queues (device has %u)", ri->name, p->inflight.num_queues,
                 ctx->num_queues);
        if (!vio_is_pow2(p->inflight.queue_size) || p->inflight.queue_size > ctx->max_queue_size)
            FAIL(-EINVAL, "%s: queue size %u", ri->name, p->inflight.queue_size);
        return 0;
    case VU_P_VRING_FD: {
        if (sz != 8)
            FAIL(-EPROTO, "%s: payload size %u, expected 8", ri->name, sz);
        uint64_t v = p->u64;
        if (v & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD))
            FAIL(-EINVAL, "%s: unknown bits in 0x%llx", ri->name, (unsigned long long)v);
        if ((v & VU_VRING_IDX_MASK) >= ctx->num_queues)
            FAIL(-EINVAL, "%s: queue %u out of range", ri->name, (unsigned)(v & VU_VRING_IDX_MASK));
        return 0;
    }
    }
    FAIL(-EPROTO, "%s: no size rule", ri->name); /* a table row without a kind: refused */
}

/* The row's fd allowance (after check_kind: the payload it may depend on is sound). */
static int check_fds(const struct vu_msg *m, const struct vu_req_info *ri, char *why,
                     size_t why_len)
{
    unsigned n = m->nfds;
    switch ((enum vu_fd_rule)ri->fds) {
    case VU_FD_NONE:
    case VU_FD_OPTIONAL: {
        unsigned max = ri->fds == VU_FD_OPTIONAL ? 1u : 0u;
        if (n > max)
            FAIL(-EPROTO, "%s: %u fds, at most %u allowed", ri->name, n, max);
        return 0;
    }
    case VU_FD_ONE:
        if (n != 1)
            FAIL(-EPROTO, "%s: needs the %s fd, got %u fds", ri->name,
                 ri->fd_name ? ri->fd_name : "one", n);
        return 0;
    case VU_FD_PER_REGION:
        if (n != m->p.mem.nregions)
            FAIL(-EPROTO, "%s: %u fds for %u regions", ri->name, n, m->p.mem.nregions);
        return 0;
    case VU_FD_VRING: {
        bool nofd = m->p.u64 & VU_VRING_NOFD;
        if (nofd ? n != 0 : n != 1)
            FAIL(-EPROTO, "%s: %u fds with no-fd flag %d", ri->name, n, nofd);
        return 0;
    }
    }
    FAIL(-EPROTO, "%s: no fd rule", ri->name);
}

int vu_msg_validate(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                    size_t why_len)
{
    const struct vu_hdr *h = &m->hdr;
    const struct vu_req_info *ri = vu_req_info(h->request);
    if (!ri)
        FAIL(-ENOTSUP, "unknown or unsupported request %u", h->request);
    if ((h->flags & VU_VERSION_MASK) != VU_VERSION)
        FAIL(-EPROTO, "%s: version %u, expected 1", ri->name, h->flags & VU_VERSION_MASK);
    if (h->flags & ~(VU_VERSION_MASK | VU_FLAG_NEED_REPLY))
        FAIL(-EPROTO, "%s: flags 0x%x (reply bit or unknown bits set)", ri->name, h->flags);
    if (ri->gated && (ri->pf < 0 || !(ctx->protocol_features & (1ull << ri->pf))))
        FAIL(-EPROTO, "%s: protocol feature %d not negotiated", ri->name, ri->pf);
    int r = check_kind(m, ri, ctx, why, why_len);
    if (r)
        return r;
    r = check_fds(m, ri, why, why_len);
    if (r)
        return r;
    return ri->check ? ri->check(m, ctx, why, why_len) : 0;
}

int vu_check_vring_num(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                       size_t why_len)
{
    if (!vio_is_pow2(m->p.state.num) || m->p.state.num > ctx->max_queue_size)
        FAIL(-EINVAL, "SET_VRING_NUM: size %u (power of 2 up to %u)", m->p.state.num,
             ctx->max_queue_size);
    return 0;
}

int vu_check_vring_base(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                        size_t why_len)
{
    (void)ctx;
    if (m->p.state.num > 0xffff)
        FAIL(-EINVAL, "SET_VRING_BASE: base %u beyond 16 bits", m->p.state.num);
    return 0;
}

int vu_check_vring_enable(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                          size_t why_len)
{
    (void)ctx;
    if (m->p.state.num > 1)
        FAIL(-EINVAL, "SET_VRING_ENABLE: value %u", m->p.state.num);
    return 0;
}

int vu_check_status(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                    size_t why_len)
{
    (void)ctx;
    if (m->p.u64 > 0xff)
        FAIL(-EINVAL, "SET_STATUS: 0x%llx", (unsigned long long)m->p.u64);
    return 0;
}

int vu_check_mtu(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                 size_t why_len)
{
    (void)ctx;
    if (m->p.u64 < 68 || m->p.u64 > 65535)
        FAIL(-EINVAL, "NET_SET_MTU: %llu", (unsigned long long)m->p.u64);
    return 0;
}

int vu_check_set_inflight(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                          size_t why_len)
{
    (void)ctx;
    const struct vu_inflight *in = &m->p.inflight;
    if (in->mmap_size == 0 || wraps(in->mmap_offset, in->mmap_size))
        FAIL(-EINVAL, "SET_INFLIGHT_FD: mmap size 0x%llx", (unsigned long long)in->mmap_size);
    return 0;
}

int vu_msg_parse(const uint8_t *buf, size_t len, struct vu_msg *m)
{
    if (len < sizeof(struct vu_hdr))
        return -EAGAIN;
    memcpy(&m->hdr, buf, sizeof(m->hdr));
    if (m->hdr.size > sizeof(m->p))
        return -EPROTO;
    if (len - sizeof(struct vu_hdr) < m->hdr.size)
        return -EAGAIN;
    memset(&m->p, 0, sizeof(m->p));
    memcpy(&m->p, buf + sizeof(struct vu_hdr), m->hdr.size);
    return (int)(sizeof(struct vu_hdr) + m->hdr.size);
}

void vu_msg_close_fds(struct vu_msg *m)
{
    for (unsigned i = 0; i < m->nfds && i < VU_MAX_FDS; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        m->fds[i] = -1;
    }
    m->nfds = 0;
}

/* Read exactly @len bytes (the socket has a receive timeout set by the owner). */
static int read_full(int sock, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(sock, (uint8_t *)buf + got, len - got, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EPROTO : -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

int vu_msg_recv(int sock, struct vu_msg *m)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = &m->hdr, .iov_len = sizeof(m->hdr)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    m->nfds = 0;
    for (unsigned i = 0; i < VU_MAX_FDS; i++)
        m->fds[i] = -1;
    ssize_t n;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    if (n == 0)
        return -ECONNRESET;
    /* Collect every fd first so nothing leaks on any error path below. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[VU_MAX_FDS];
        if (k > VU_MAX_FDS)
            k = VU_MAX_FDS;
        memcpy(fds, CMSG_DATA(c), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (m->nfds < VU_MAX_FDS)
                m->fds[m->nfds++] = fds[i];
            else
                close(fds[i]);
        }
    }
    int r = 0;
    if (mh.msg_flags & MSG_CTRUNC)
        r = -EPROTO; /* more fds than any request may carry */
    if (!r && (size_t)n < sizeof(m->hdr))
        r = read_full(sock, (uint8_t *)&m->hdr + n, sizeof(m->hdr) - (size_t)n);
    if (!r && m->hdr.size > sizeof(m->p))
        r = -EPROTO;
    if (!r) {
        memset(&m->p, 0, sizeof(m->p));
        r = read_full(sock, &m->p, m->hdr.size);
    }
    if (r == -ECONNRESET)
        r = -EPROTO; /* the peer closed in the middle of a message: truncated */
    if (r)
        vu_msg_close_fds(m);
    return r;
}

int vu_msg_send(int sock, const struct vu_msg *m)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov[2] = {{(void *)&m->hdr, sizeof(m->hdr)}, {(void *)&m->p, m->hdr.size}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->hdr.size ? 2 : 1};
    if (m->hdr.size > sizeof(m->p) || m->nfds > VU_MAX_FDS)
        return -EINVAL;
    if (m->nfds) {
        memset(ctl.buf, 0, sizeof(ctl.buf));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
        memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nfds);
    }
    size_t total = sizeof(m->hdr) + m->hdr.size;
    ssize_t n;
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if ((size_t)n != total)
        return -EIO;
    return 0;
}
