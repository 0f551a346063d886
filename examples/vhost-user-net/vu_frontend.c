/* SPDX-License-Identifier: MIT */
/* A minimal vhost-user front-end: see vu_frontend.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <virtio/mem.h>
#include <virtio/net_defs.h>
#include <virtio/status.h>

#include "vu_frontend.h"

#define AREA_GPA 0x100000ull /* rings and buffers start 1 MiB into guest RAM */
#define IO_TIMEOUT_MS 5000

__attribute__((format(printf, 2, 3))) static int fail(struct vufe *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, sizeof(f->err), fmt, ap);
    va_end(ap);
    return -EPROTO;
}

int vufe_open(struct vufe *f, const char *path, int fd)
{
    memset(f, 0, sizeof(*f));
    f->mem_fd = -1;
    for (unsigned i = 0; i < 16; i++)
        f->kick[i] = f->call[i] = -1;
    if (!path) {
        f->sock = fd;
        return 0;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->sock < 0)
        return -errno;
    if (connect(f->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        snprintf(f->err, sizeof(f->err), "connect %s: %s", path, strerror(errno));
        close(f->sock);
        f->sock = -1;
        return e;
    }
    return 0;
}

void vufe_close(struct vufe *f)
{
    vio_net_driver_free(f->drv);
    f->drv = NULL;
    vio_mem_free(f->vmem);
    f->vmem = NULL;
    if (f->sock >= 0)
        close(f->sock);
    f->sock = -1;
    for (unsigned i = 0; i < 16; i++) {
        if (f->kick[i] >= 0)
            close(f->kick[i]);
        if (f->call[i] >= 0)
            close(f->call[i]);
        f->kick[i] = f->call[i] = -1;
    }
    if (f->mem)
        munmap(f->mem, f->mem_size);
    f->mem = NULL;
    if (f->mem_fd >= 0)
        close(f->mem_fd);
    f->mem_fd = -1;
}

int vufe_send(struct vufe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
              const int *fds, unsigned nfds)
{
    struct vufe_hdr h = {.request = req, .flags = flags ? flags : VUFE_FLAG_VERSION,
                         .size = size};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, payload ? size : 0}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 32)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = payload && size ? 2 : 1};
    if (nfds) {
        if (nfds > 32)
            return -EINVAL;
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(f->sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    size_t want = sizeof(h) + (payload ? size : 0);
    if ((size_t)n != want)
        return -EIO;
    return 0;
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

int vufe_recv(struct vufe *f, uint32_t req, void *buf, uint32_t cap, int timeout_ms)
{
    struct vufe_hdr h;
    int rc = read_full(f->sock, &h, sizeof(h), timeout_ms);
    if (rc < 0)
        return fail(f, "no reply to request %u (%s)", req, strerror(-rc)), rc;
    if (h.request != req || !(h.flags & VUFE_FLAG_REPLY) || h.size > 4096)
        return fail(f, "bad reply: request %u flags 0x%x size %u (wanted a reply to %u)",
                    h.request, h.flags, h.size, req);
    uint8_t tmp[4096];
    rc = read_full(f->sock, tmp, h.size, timeout_ms);
    if (rc < 0)
        return fail(f, "truncated reply to %u", req), rc;
    memcpy(buf, tmp, h.size < cap ? h.size : cap);
    return (int)h.size;
}

int vufe_get_u64(struct vufe *f, uint32_t req, uint64_t *out)
{
    int rc = vufe_send(f, req, 0, NULL, 0, NULL, 0);
    if (rc < 0)
        return rc;
    rc = vufe_recv(f, req, out, sizeof(*out), IO_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    return rc == 8 ? 0 : fail(f, "reply to %u has %d bytes", req, rc);
}

int vufe_call(struct vufe *f, uint32_t req, const void *payload, uint32_t size, const int *fds,
              unsigned nfds)
{
    bool ack = f->pfeatures & (1ull << VUFE_PF_REPLY_ACK);
    int rc = vufe_send(f, req, VUFE_FLAG_VERSION | (ack ? VUFE_FLAG_NEED_REPLY : 0), payload,
                       size, fds, nfds);
    if (rc < 0 || !ack)
        return rc;
    uint64_t v = 0;
    rc = vufe_recv(f, req, &v, sizeof(v), IO_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    return v == 0 ? 0 : fail(f, "request %u refused (ack %llu)", req, (unsigned long long)v);
}

bool vufe_peer_closed(struct vufe *f, int timeout_ms)
{
    uint8_t buf[256];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = f->sock, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = recv(f->sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
        /* a reply to something sent earlier: keep draining */
    }
}

static void notify_cb(void *opaque, unsigned qidx)
{
    struct vufe *f = opaque;
    uint64_t one = 1;
    if (qidx < 16 && f->kick[qidx] >= 0) {
        ssize_t n = write(f->kick[qidx], &one, sizeof(one));
        (void)n;
    }
}

int vufe_setup(struct vufe *f, const struct vufe_config *cfg)
{
    int rc;
    f->pairs = cfg->queue_pairs ? cfg->queue_pairs : 1;
    f->qsize = cfg->queue_size ? cfg->queue_size : 256;
    f->mem_size = cfg->mem_size ? cfg->mem_size : (64ull << 20);
    if (f->pairs > 8)
        return fail(f, "at most 8 queue pairs"), -EINVAL;

    /* --- features ------------------------------------------------------------------ */
    if ((rc = vufe_get_u64(f, VUFE_GET_FEATURES, &f->offered)) < 0)
        return rc;
    uint64_t want = (1ull << VIO_F_VERSION_1) | (1ull << VIO_NET_F_MRG_RXBUF) |
                    (1ull << VIO_F_EVENT_IDX) | (1ull << VIO_F_INDIRECT_DESC);
    if (f->pairs > 1)
        want |= 1ull << VIO_NET_F_MQ; /* like QEMU and virtio_user: no CTRL_VQ */
    want &= ~cfg->features_off;
    f->features = f->offered & want;
    bool pf = f->offered & (1ull << VUFE_F_PROTOCOL_FEATURES);
    if (pf) {
        uint64_t poff;
        if ((rc = vufe_get_u64(f, VUFE_GET_PROTOCOL_FEATURES, &poff)) < 0)
            return rc;
        uint64_t pwant = (1ull << VUFE_PF_MQ) | (cfg->reply_ack ? 1ull << VUFE_PF_REPLY_ACK : 0);
        uint64_t p = poff & pwant;
        if ((rc = vufe_send(f, VUFE_SET_PROTOCOL_FEATURES, 0, &p, 8, NULL, 0)) < 0)
            return rc;
        f->pfeatures = p;
        if (p & (1ull << VUFE_PF_MQ)) {
            uint64_t nq;
            if ((rc = vufe_get_u64(f, VUFE_GET_QUEUE_NUM, &nq)) < 0)
                return rc;
            if (nq < f->pairs)
                return fail(f, "back-end has %llu queue pairs, %u wanted", (unsigned long long)nq,
                            f->pairs);
        }
    }
    if ((rc = vufe_call(f, VUFE_SET_OWNER, NULL, 0, NULL, 0)) < 0)
        return rc;
    uint64_t sf = f->features | (pf ? 1ull << VUFE_F_PROTOCOL_FEATURES : 0);
    if ((rc = vufe_call(f, VUFE_SET_FEATURES, &sf, 8, NULL, 0)) < 0)
        return rc;

    /* --- guest memory ------------------------------------------------------------------ */
    f->mem_fd = memfd_create("vufe-guest-ram", MFD_CLOEXEC | (cfg->hugepages ? MFD_HUGETLB : 0));
    if (f->mem_fd < 0)
        return fail(f, "memfd_create: %s", strerror(errno)), -errno;
    if (ftruncate(f->mem_fd, (off_t)f->mem_size) < 0)
        return fail(f, "ftruncate: %s", strerror(errno)), -errno;
    f->mem = mmap(NULL, f->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->mem_fd, 0);
    if (f->mem == MAP_FAILED) {
        f->mem = NULL;
        return fail(f, "mmap guest RAM: %s", strerror(errno)), -errno;
    }
    struct {
        uint32_t nregions, padding;
        struct vufe_region r[1];
    } mt = {.nregions = 1, .r = {{.gpa = 0, .size = f->mem_size, .uva = (uintptr_t)f->mem}}};
    if ((rc = vufe_call(f, VUFE_SET_MEM_TABLE, &mt, sizeof(mt), &f->mem_fd, 1)) < 0)
        return rc;

    /* --- rings -------------------------------------------------------------------------- */
    if ((rc = vio_mem_new(1, &f->vmem)) < 0)
        return rc;
    struct vio_mem_region vr = {.guest_addr = 0, .size = f->mem_size,
                                .user_addr = (uintptr_t)f->mem, .host_ptr = f->mem};
    if ((rc = vio_mem_add(f->vmem, &vr)) < 0)
        return rc;
    unsigned nq = 2 * f->pairs;
    uint64_t addr[16][3];
    if (!cfg->no_driver) {
        struct vio_net_driver_config dc = {
            .struct_size = sizeof(dc), .mem = f->vmem, .area = AREA_GPA,
            .features = f->features, .queue_pairs = (uint16_t)f->pairs, .queue_size = f->qsize,
            .notify = notify_cb, .notify_opaque = f, .log = cfg->log,
            .log_opaque = cfg->log_opaque};
        dc.area_size = vio_net_driver_area_size(&dc);
        if (!dc.area_size || AREA_GPA + dc.area_size > f->mem_size)
            return fail(f, "guest RAM too small for the rings and buffers"), -ENOSPC;
        if ((rc = vio_net_driver_new(&dc, &f->drv)) < 0)
            return fail(f, "vio_net_driver_new: %s", strerror(-rc)), rc;
        for (unsigned q = 0; q < nq; q++) {
            struct vio_net_driver_queue_addr qa;
            vio_net_driver_queue_addr(f->drv, q, &qa);
            addr[q][0] = qa.desc;
            addr[q][1] = qa.driver;
            addr[q][2] = qa.device;
        }
    } else {
        size_t doff, uoff, total = vio_split_ring_layout(f->qsize, 4, &doff, &uoff);
        total = (total + 4095) & ~(size_t)4095;
        if (AREA_GPA + total * nq > f->mem_size)
            return fail(f, "guest RAM too small for the rings"), -ENOSPC;
        for (unsigned q = 0; q < nq; q++) {
            uint64_t base = AREA_GPA + q * total;
            addr[q][0] = base;
            addr[q][1] = base + doff;
            addr[q][2] = base + uoff;
        }
    }
    memcpy(f->ring, addr, sizeof(addr[0]) * nq);
    for (unsigned q = 0; q < nq; q++) {
        f->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->kick[q] < 0 || f->call[q] < 0)
            return -errno;
        struct { uint32_t index, num; } st = {q, f->qsize};
        if ((rc = vufe_call(f, VUFE_SET_VRING_NUM, &st, 8, NULL, 0)) < 0)
            return rc;
        st.num = 0;
        if ((rc = vufe_call(f, VUFE_SET_VRING_BASE, &st, 8, NULL, 0)) < 0)
            return rc;
        uint64_t uva = (uintptr_t)f->mem;
        struct vufe_vring_addr va = {.index = q, .desc = uva + addr[q][0],
                                     .avail = uva + addr[q][1], .used = uva + addr[q][2]};
        if ((rc = vufe_call(f, VUFE_SET_VRING_ADDR, &va, sizeof(va), NULL, 0)) < 0)
            return rc;
        uint64_t idx = q;
        if ((rc = vufe_call(f, VUFE_SET_VRING_CALL, &idx, 8, &f->call[q], 1)) < 0)
            return rc;
        if ((rc = vufe_call(f, VUFE_SET_VRING_KICK, &idx, 8, &f->kick[q], 1)) < 0)
            return rc;
    }
    if (pf) {
        for (unsigned q = 0; q < nq; q++) {
            struct { uint32_t index, num; } st = {q, 1};
            if ((rc = vufe_call(f, VUFE_SET_VRING_ENABLE, &st, 8, NULL, 0)) < 0)
                return rc;
        }
    }
    /* A last round trip: everything before it has been handled. */
    uint64_t dummy;
    return vufe_get_u64(f, VUFE_GET_FEATURES, &dummy);
}

static void drain(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}

long vufe_echo(struct vufe *f, unsigned n, size_t len, int timeout_ms)
{
    if (!f->drv || len < 14 || len > 9000)
        return -EINVAL;
    uint8_t frame[9000], got[9000];
    long ok = 0;
    unsigned sent[8] = {0}, recvd[8] = {0};
    for (unsigned p = 0; p < f->pairs; p++) {
        int r = vio_net_driver_rx_fill(f->drv, p);
        if (r < 0)
            return r;
        vio_net_driver_kick(f->drv, VIO_NET_DRIVER_RXQ(p));
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        bool done = true;
        for (unsigned p = 0; p < f->pairs; p++) {
            /* send what fits */
            while (sent[p] < n) {
                memset(frame, 0xff, 6);                          /* broadcast */
                memcpy(frame + 6, "\x52\x54\x00\x00\x00\x01", 6);
                frame[12] = 0x88;
                frame[13] = 0xb5;                                /* local experimental */
                for (size_t i = 14; i < len; i++)
                    frame[i] = (uint8_t)(i * 7 + sent[p] * 13 + p);
                memcpy(frame + 14, &sent[p], sizeof(sent[p]));
                int r = vio_net_driver_send(f->drv, p, NULL, frame, len);
                if (r == -ENOSPC)
                    break;
                if (r < 0)
                    return r;
                sent[p]++;
            }
            vio_net_driver_kick(f->drv, VIO_NET_DRIVER_TXQ(p));
            vio_net_driver_tx_reclaim(f->drv, p, NULL, 0);
            for (;;) {
                ssize_t r = vio_net_driver_recv(f->drv, p, NULL, got, sizeof(got));
                if (r == -EAGAIN)
                    break;
                if (r < 0)
                    return r;
                unsigned seq;
                memcpy(&seq, got + 14, sizeof(seq));
                bool same = (size_t)r == len && seq == recvd[p];
                for (size_t i = 18; same && i < len; i++)
                    same = got[i] == (uint8_t)(i * 7 + seq * 13 + p);
                if (same)
                    ok++;
                recvd[p]++;
            }
            vio_net_driver_kick(f->drv, VIO_NET_DRIVER_RXQ(p));
            if (recvd[p] < n)
                done = false;
        }
        if (done)
            return ok;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return ok;
        /* wait for an interrupt from any ring (short timeout: we also poll) */
        struct pollfd pf[16];
        for (unsigned q = 0; q < 2 * f->pairs; q++)
            pf[q] = (struct pollfd){.fd = f->call[q], .events = POLLIN};
        if (poll(pf, 2 * f->pairs, 2) > 0)
            for (unsigned q = 0; q < 2 * f->pairs; q++)
                if (pf[q].revents)
                    drain(f->call[q]);
    }
}
