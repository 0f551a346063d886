/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the vhost-user frontend (src/transport/vhost_user_fe.c): the fuzzer's
 * bytes are what the backend says, on the main socket (replies) and on the backend request
 * channel (requests), while the frontend runs a fixed sequence of calls.
 *
 * Input layout (a short input simply ends early):
 *   b0        bits 0-1: eventfds (0..3) attached to one message of the reply stream;
 *             bits 2-3: the same for the backend request stream; bit 4: reconnect on
 *   b1        which message (0..255) of each stream carries them
 *   b2 b3     length of the reply stream (little-endian), capped at what is left
 *   ...       the reply stream, then the backend request stream (the rest)
 * A stream is cut into messages by their headers' size fields (a short tail is one piece) and
 * each piece is written with its own sendmsg, so fds arrive with the message they belong to.
 *
 * A backend thread accepts the frontend's connection, writes the whole reply stream and shuts
 * its write side (the frontend then sees EOF instead of waiting for its timeout), reads the
 * frontend's requests, and writes the request stream into the channel of the first
 * SET_BACKEND_REQ_FD it gets. The frontend: connect, owner, features, memory table, slots,
 * a region, ring setup, enable, base, config, status, inflight, log, backend requests, free.
 * Nothing may crash; at the end the number of open fds must be what it was (no leak on any
 * path); ASan/UBSan catch the rest.
 */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/vhost_user_msg.h"
#include "virtio/vhost.h"

static char path[108];
static int lsock = -1;
static int memfd = -1;
static bool verbose;

struct stream {
    const uint8_t *data;
    size_t len;
    unsigned nfds;
    unsigned fd_msg;
};

struct run {
    struct stream reply, breq;
    atomic_bool breq_written;
};

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Write @p len bytes with @p n eventfds attached. */
static void put_piece(int fd, const uint8_t *data, size_t len, unsigned n)
{
    int fds[3];
    for (unsigned i = 0; i < n; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    (void)sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

/* Write stream @p s to @p fd message by message. */
static void put(int fd, const struct stream *s)
{
    size_t off = 0;
    for (unsigned k = 0; off < s->len; k++) {
        size_t left = s->len - off, piece = left;
        if (left >= sizeof(struct vu_hdr)) {
            struct vu_hdr h;
            memcpy(&h, s->data + off, sizeof(h));
            size_t want = sizeof(h) + (size_t)h.size;
            if (want < piece)
                piece = want;
        }
        put_piece(fd, s->data + off, piece, k == s->fd_msg ? s->nfds : 0);
        off += piece;
    }
}

static void *backend(void *arg)
{
    struct run *r = arg;
    struct pollfd p = {.fd = lsock, .events = POLLIN};
    if (poll(&p, 1, 2000) != 1)
        return NULL;
    int s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        return NULL;
    put(s, &r->reply);
    shutdown(s, SHUT_WR);
    int breq = -1;
    for (;;) {
        p = (struct pollfd){.fd = s, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1)
            break;
        struct vu_msg m;
        int e = vu_msg_recv(s, &m);
        if (e < 0 && e != -EPROTO)
            break;
        if (e == 0 && m.hdr.request == VU_SET_BACKEND_REQ_FD && m.nfds == 1 && breq < 0) {
            breq = m.fds[0];
            m.fds[0] = -1;
            put(breq, &r->breq);
            atomic_store(&r->breq_written, true);
        }
        if (e == 0)
            vu_msg_close_fds(&m);
    }
    if (breq >= 0)
        close(breq);
    close(s);
    return NULL;
}

static void setup(void)
{
    if (lsock >= 0)
        return;
    snprintf(path, sizeof(path), "/tmp/vio-fuzz-fe-%d.sock", (int)getpid());
    unlink(path);
    lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path));
    if (lsock < 0 || bind(lsock, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lsock, 4) < 0)
        abort();
    verbose = getenv("FUZZ_VHOST_FE_VERBOSE") != NULL;
    memfd = memfd_create("fuzz-fe", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, 1 << 16) < 0)
        abort();
}

static void calls(struct vio_vhost *v, struct run *run)
{
    uint64_t f = 0, sz;
    unsigned u;
    uint8_t b[16], st;
    int fd;
    vio_vhost_set_owner(v);
    if (vio_vhost_get_features(v, &f) == 0)
        vio_vhost_set_features(v, f & (1ull << 32));
    vio_vhost_get_protocol_features(v, &f);
    vio_vhost_get_queue_num(v, &u);
    struct vio_vhost_mem_region r = {.guest_addr = 0, .size = 1 << 16, .user_addr = 0x10000000,
                                     .fd = memfd};
    vio_vhost_set_mem_table(v, &r, 1);
    vio_vhost_get_max_mem_slots(v, &u);
    r.guest_addr = 1 << 20;
    vio_vhost_add_mem_region(v, &r);
    vio_vhost_rem_mem_region(v, &r);
    int ev = eventfd(0, EFD_CLOEXEC);
    struct vio_vhost_vring_addr a = {.desc = 0x10000000, .avail = 0x10001000, .used = 0x10002000};
    for (unsigned i = 0; i < 2; i++) {
        vio_vhost_set_vring_num(v, i, 64);
        vio_vhost_set_vring_base(v, i, 0);
        vio_vhost_set_vring_addr(v, i, &a);
        vio_vhost_set_vring_kick(v, i, ev);
        vio_vhost_set_vring_call(v, i, i ? -1 : ev);
        vio_vhost_set_vring_err(v, i, ev);
        vio_vhost_set_vring_enable(v, i, true);
    }
    close(ev);
    vio_vhost_get_vring_base(v, 1, &u);
    vio_vhost_get_config(v, 0, b, sizeof(b));
    vio_vhost_set_config(v, 4, b, 4);
    vio_vhost_set_status(v, 0xf);
    vio_vhost_get_status(v, &st);
    if (vio_vhost_get_inflight(v, 2, 64, &fd, &sz) == 0)
        close(fd);
    vio_vhost_set_inflight(v, memfd, 4096, 2, 64);
    vio_vhost_set_log_base(v, 0, memfd, 4096);
    vio_vhost_set_log_fd(v, memfd);
    vio_vhost_reset(v);
    vio_vhost_get_vring_base(v, 0, &u);
    /* the backend's requests last: with the whole reply stream written up front, the main
     * socket holds unread replies until here, which vio_vhost_handle() rightly calls a
     * protocol violation */
    uint64_t pf = 0;
    vio_vhost_get_protocol_features(v, &pf);
    for (int i = 0; i < 100 && (pf >> 5 & 1) && !atomic_load(&run->breq_written); i++)
        usleep(1000); /* the channel was given: let the backend thread write its stream */
    for (int i = 0; i < 4; i++)
        vio_vhost_handle(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (verbose)
        fprintf(stderr, "input of %zu bytes\n", size);
    if (size < 4)
        return 0;
    struct run r;
    size_t rl = (size_t)data[2] | (size_t)data[3] << 8;
    if (rl > size - 4)
        rl = size - 4;
    r.reply = (struct stream){data + 4, rl, data[0] & 3u, data[1]};
    r.breq = (struct stream){data + 4 + rl, size - 4 - rl, (data[0] >> 2) & 3u, data[1]};
    atomic_init(&r.breq_written, false);
    int fds0 = count_fds();
    pthread_t th;
    if (pthread_create(&th, NULL, backend, &r) != 0)
        abort();
    struct vio_vhost_user_frontend_config c = {.struct_size = sizeof(c), .path = path,
                                               .timeout_ms = 50, .reconnect = data[0] & 0x10,
                                               .log = verbose ? vio_log_stderr : NULL};
    struct vio_vhost *v = NULL;
    if (vio_vhost_user_connect(&c, &v) == 0) {
        calls(v, &r);
        vio_vhost_free(v);
    }
    pthread_join(th, NULL);
    if (count_fds() != fds0) {
        fprintf(stderr, "fd leak: %d fds, were %d\n", count_fds(), fds0);
        abort();
    }
    return 0;
}
