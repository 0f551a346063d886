/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user back-end transport's side of the offload hooks (vio_device_hooks::mem_regions
 * and ::queue_offload): a stub device claims its rings at queue start, and the transport must
 * hand it the front-end's own memory fd and eventfds, stop watching and draining the kick fd,
 * restart the device's queue when a fd or the memory table changes, answer GET_VRING_BASE with
 * what the device wrote back, and take a ring back when the device's start fails.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/vhost_user_internal.h"
#include "transport/vhost_user_msg.h"
#include "virtio/device.h"
#include "virtio/queue.h"
#include "virtio/vhost_user.h"

#define QSZ 64u
#define MEM_SIZE (1u << 20)
#define GPA 0x100000ull
#define F_VERSION_1 (1ull << 32)

/* ------------------------------------------------------------------------ */
/* A device that runs its two rings elsewhere                                */

struct odev {
    struct vio_device dev;
    struct vio_device_hooks h;
    struct vio_queue *q[2];
    struct vio_device_queue_offload o[2];
    struct vio_device_mem_region mr[4];
    int nmr;
    unsigned starts[2], stops[2], notifies;
    int claim_rc[2];
    bool fail_after_claim;
    uint16_t stop_base;
};

static struct odev *O(void *p) { return p; }
static uint32_t o_id(void *p) { (void)p; return 42; }
static uint64_t o_features(void *p) { (void)p; return F_VERSION_1; }
static unsigned o_nq(void *p) { (void)p; return 2; }
static int o_info(void *p, unsigned q, struct vio_device_queue_info *out)
{
    (void)p;
    if (q >= 2)
        return -ERANGE;
    *out = (struct vio_device_queue_info){.max_size = 256, .dir = VIO_QUEUE_DIR_ANY, .name = "o"};
    return 0;
}
static int o_set_features(void *p, uint64_t f) { (void)p; (void)f; return 0; }
static int o_start(void *p, unsigned qi, struct vio_queue *q)
{
    struct odev *d = O(p);
    d->starts[qi]++;
    d->nmr = d->h.mem_regions ? d->h.mem_regions(d->h.opaque, d->mr, 4) : -ENOTSUP;
    d->o[qi] = (struct vio_device_queue_offload){.struct_size = sizeof(d->o[qi])};
    d->claim_rc[qi] = d->h.queue_offload ? d->h.queue_offload(d->h.opaque, qi, &d->o[qi])
                                         : -ENOTSUP;
    if (d->claim_rc[qi] < 0 || d->fail_after_claim)
        return d->claim_rc[qi] < 0 ? d->claim_rc[qi] : -EIO;
    d->q[qi] = q;
    return 0;
}
static void o_stop(void *p, unsigned qi)
{
    struct odev *d = O(p);
    d->stops[qi]++;
    if (d->q[qi])
        vio_queue_set_last_avail(d->q[qi], d->stop_base);
    d->q[qi] = NULL;
}
static int o_notify(void *p, unsigned qi)
{
    (void)qi;
    O(p)->notifies++;
    return 0;
}
static void o_reset(void *p) { (void)p; }
static int o_bind(void *p, const struct vio_device_hooks *h)
{
    struct odev *d = O(p);
    if (h)
        d->h = *h;
    else
        memset(&d->h, 0, sizeof(d->h));
    return 0;
}
static const struct vio_device_ops o_ops = {
    .name = "offload-stub", .device_id = o_id, .features = o_features, .num_queues = o_nq,
    .queue_info = o_info, .set_features = o_set_features, .queue_start = o_start,
    .queue_stop = o_stop, .queue_notify = o_notify, .reset = o_reset, .bind = o_bind};

/* ------------------------------------------------------------------------ */
/* A raw front-end on a socketpair                                            */

struct env {
    struct odev d;
    struct vio_vhost_user *vu;
    int sock, memfd;
    uint8_t *host;
    int kick[2], call[2];
    uint64_t desc[2], avail[2], used[2];
};

static int send_msg(int sock, uint32_t req, const void *payload, uint32_t size, const int *fds,
                    unsigned nfds)
{
    struct vu_hdr h = {.request = req, .flags = VU_VERSION, .size = size};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, size}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void env_do(struct env *e, uint32_t req, const void *p, uint32_t size, const int *fds,
                   unsigned nfds)
{
    ck_assert_int_eq(send_msg(e->sock, req, p, size, fds, nfds), 0);
    ck_assert_int_eq(vio_vhost_user_handle(e->vu), 1);
}

static void env_u64(struct env *e, uint32_t req, uint64_t v) { env_do(e, req, &v, 8, NULL, 0); }

static uint64_t uva(const struct env *e, uint64_t gpa)
{
    return (uint64_t)(uintptr_t)e->host + (gpa - GPA);
}

static void env_open(struct env *e)
{
    memset(e, 0, sizeof(*e));
    e->d.dev = (struct vio_device){.ops = &o_ops, .opaque = &e->d};
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct vio_vhost_user_config c = {.struct_size = sizeof(c), .use_fd = true, .fd = sv[0],
                                      .dev = &e->d.dev};
    ck_assert_int_eq(vio_vhost_user_new(&c, &e->vu), 0);
    e->sock = sv[1];
    e->memfd = memfd_create("offload-fe", MFD_CLOEXEC);
    ck_assert_int_ge(e->memfd, 0);
    ck_assert_int_eq(ftruncate(e->memfd, MEM_SIZE), 0);
    e->host = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
    ck_assert_ptr_ne(e->host, MAP_FAILED);
    for (unsigned i = 0; i < 2; i++) {
        e->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        e->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        e->desc[i] = GPA + 0x1000 + i * 0x2000;
        e->avail[i] = e->desc[i] + 16 * QSZ;
        e->used[i] = e->desc[i] + 0x1000;
    }
    env_u64(e, VU_SET_FEATURES, F_VERSION_1);
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = GPA, .size = MEM_SIZE, .uva = uva(e, GPA)};
    env_do(e, VU_SET_MEM_TABLE, &m, 8 + sizeof(struct vu_region), &e->memfd, 1);
}

static void env_ring(struct env *e, unsigned i)
{
    struct vu_state s = {.index = i, .num = QSZ};
    env_do(e, VU_SET_VRING_NUM, &s, sizeof(s), NULL, 0);
    struct vu_addr a = {.index = i, .desc = uva(e, e->desc[i]), .avail = uva(e, e->avail[i]),
                        .used = uva(e, e->used[i])};
    env_do(e, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t v = i;
    env_do(e, VU_SET_VRING_CALL, &v, 8, &e->call[i], 1);
    env_do(e, VU_SET_VRING_KICK, &v, 8, &e->kick[i], 1); /* starts it (no PROTOCOL_FEATURES) */
}

static void env_close(struct env *e)
{
    vio_vhost_user_free(e->vu);
    close(e->sock);
    for (unsigned i = 0; i < 2; i++) {
        close(e->kick[i]);
        close(e->call[i]);
    }
    munmap(e->host, MEM_SIZE);
    close(e->memfd);
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* What one end of an eventfd pair writes, the other end reads: same counter. */
static bool same_eventfd(int writer, int reader)
{
    eventfd_t v = 0;
    while (eventfd_read(reader, &v) == 0) /* drain */
        ;
    eventfd_write(writer, 5);
    v = 0;
    return eventfd_read(reader, &v) == 0 && v == 5;
}

static bool kick_watched(const struct env *e, unsigned i)
{
    struct vio_device_watch w[16];
    int n = vio_vhost_user_watches(e->vu, w, 16);
    for (int k = 0; k < n && k < 16; k++)
        if (w[k].id == VIO_VU_WATCH_KICK(i))
            return true;
    return false;
}

/* ------------------------------------------------------------------------ */

START_TEST(test_claim_hands_over_fds_and_memory)
{
    struct env e;
    env_open(&e);
    env_ring(&e, 0);
    ck_assert_uint_eq(e.d.starts[0], 1);
    ck_assert_int_eq(e.d.claim_rc[0], 0);
    /* the memory: the front-end's own file, mapped here */
    ck_assert_int_eq(e.d.nmr, 1);
    ck_assert_uint_eq(e.d.mr[0].guest_addr, GPA);
    ck_assert_uint_eq(e.d.mr[0].size, MEM_SIZE);
    ck_assert_uint_eq(e.d.mr[0].fd_offset, 0);
    ck_assert(same_file(e.d.mr[0].fd, e.memfd));
    e.host[0x5000] = 0xa5;
    ck_assert_uint_eq(((uint8_t *)(uintptr_t)e.d.mr[0].host_addr)[0x5000 - 0], 0xa5);
    /* the ring: addresses in this process over the same pages, the front-end's eventfds */
    const struct vio_device_queue_offload *o = &e.d.o[0];
    ck_assert_uint_eq(o->size, QSZ);
    ck_assert_uint_eq(o->desc_gpa, e.desc[0]);
    ck_assert_uint_eq(o->used_gpa, e.used[0]);
    ck_assert_uint_eq(o->used_host, e.d.mr[0].host_addr + (e.used[0] - GPA));
    ck_assert(same_eventfd(e.kick[0], o->kick_fd));
    ck_assert(same_eventfd(o->call_fd, e.call[0]));
    ck_assert_int_eq(o->err_fd, -1);
    /* the transport leaves the ring alone */
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(e.vu, 0, &qs), 0);
    ck_assert(qs.offloaded && qs.running);
    ck_assert(!kick_watched(&e, 0));
    eventfd_write(e.kick[0], 1);
    ck_assert_int_eq(vio_vhost_user_kick(e.vu, 0), 0);
    ck_assert_uint_eq(e.d.notifies, 0);
    eventfd_t v = 0;
    ck_assert_int_eq(eventfd_read(o->kick_fd, &v), 0); /* not drained by the transport */
    ck_assert_uint_eq(v, 1);
    env_close(&e);
}
END_TEST

START_TEST(test_fd_and_memory_changes_restart_the_device_queue)
{
    struct env e;
    env_open(&e);
    env_ring(&e, 0);
    ck_assert_uint_eq(e.d.starts[0], 1);
    /* a new call fd (QEMU swaps them when the guest masks a vector) */
    int call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t v0 = 0;
    e.d.stop_base = 9;
    env_do(&e, VU_SET_VRING_CALL, &v0, 8, &call2, 1);
    ck_assert_uint_eq(e.d.stops[0], 1);
    ck_assert_uint_eq(e.d.starts[0], 2);
    ck_assert(same_eventfd(e.d.o[0].call_fd, call2));
    ck_assert_uint_eq(e.d.o[0].base, 9); /* the device's index survived the restart */
    /* a new kick fd */
    int kick2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    env_do(&e, VU_SET_VRING_KICK, &v0, 8, &kick2, 1);
    ck_assert_uint_eq(e.d.starts[0], 3);
    ck_assert(same_eventfd(kick2, e.d.o[0].kick_fd));
    ck_assert(!kick_watched(&e, 0));
    /* the same memory table again: the queue is restarted and reads it afresh */
    struct vu_mem m = {.nregions = 1};
    m.r[0] = (struct vu_region){.gpa = GPA, .size = MEM_SIZE, .uva = uva(&e, GPA)};
    env_do(&e, VU_SET_MEM_TABLE, &m, 8 + sizeof(struct vu_region), &e.memfd, 1);
    ck_assert_uint_eq(e.d.starts[0], 4);
    ck_assert(same_file(e.d.mr[0].fd, e.memfd));
    /* GET_VRING_BASE stops it for good and answers the device's index */
    e.d.stop_base = 33;
    struct vu_state s = {.index = 0};
    ck_assert_int_eq(send_msg(e.sock, VU_GET_VRING_BASE, &s, sizeof(s), NULL, 0), 0);
    ck_assert_int_eq(vio_vhost_user_handle(e.vu), 1);
    struct vu_msg r;
    ck_assert_int_eq(vu_msg_recv(e.sock, &r), 0);
    ck_assert_uint_eq(r.hdr.request, VU_GET_VRING_BASE);
    ck_assert_uint_eq(r.p.state.num, 33);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(e.vu, 0, &qs), 0);
    ck_assert(!qs.offloaded && !qs.started);
    close(call2);
    close(kick2);
    env_close(&e);
}
END_TEST

START_TEST(test_failed_start_gives_the_ring_back)
{
    struct env e;
    env_open(&e);
    e.d.fail_after_claim = true;
    env_ring(&e, 1);
    ck_assert_uint_eq(e.d.starts[1], 1);
    ck_assert_int_eq(e.d.claim_rc[1], 0);
    struct vio_vhost_user_queue_state qs;
    ck_assert_int_eq(vio_vhost_user_queue_state(e.vu, 1, &qs), 0);
    ck_assert(!qs.offloaded && !qs.running && qs.started);
    ck_assert(kick_watched(&e, 1)); /* kicks are the transport's again */
    env_close(&e);
}
END_TEST

START_TEST(test_memory_fds_closed_with_the_session)
{
    struct env e;
    env_open(&e);
    env_ring(&e, 0);
    int fd = e.d.mr[0].fd;
    ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
    vio_vhost_user_free(e.vu);
    e.vu = NULL;
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1); /* the kept fd went with the mapping */
    ck_assert_int_eq(errno, EBADF);
    close(e.sock);
    for (unsigned i = 0; i < 2; i++) {
        close(e.kick[i]);
        close(e.call[i]);
    }
    munmap(e.host, MEM_SIZE);
    close(e.memfd);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vhost_user_offload");
    TCase *tc = tcase_create("claim");
    tcase_add_test(tc, test_claim_hands_over_fds_and_memory);
    tcase_add_test(tc, test_fd_and_memory_changes_restart_the_device_queue);
    tcase_add_test(tc, test_failed_start_gives_the_ring_back);
    tcase_add_test(tc, test_memory_fds_closed_with_the_session);
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
