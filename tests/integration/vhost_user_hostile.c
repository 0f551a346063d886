/* SPDX-License-Identifier: MIT */
/*
 * vhost_user_hostile SOCK [CASE...] — a hostile vhost-user front-end against a running
 * vio-vhost-user-net (--loopback). Each case opens a new connection and breaks one rule:
 *
 *   protocol cases (expect: the daemon drops the connection)
 *     bad sizes, an unknown request, a bad version, too many fds, fds on a request that
 *     takes none, memory tables with too many / overlapping / wrapping / zero-sized
 *     regions, a region beyond its file, a region fd that is not a file, ring indices
 *     out of range, ring sizes that are not powers of 2, unoffered feature bits
 *   ring cases (expect: the ring fails — its error eventfd fires — and the connection
 *     stays usable for further requests)
 *     ring addresses outside guest memory, an avail index more than a ring ahead, a head
 *     index beyond the size, a chain whose next index is beyond the size, a chain that
 *     loops, a memory table that no longer covers the rings
 *   quiet case "unkicked": a driver that loses its notifications. Chains on the TX ring and
 *     no kick: the daemon's idle check (1 s) must take them anyway; used_event set far
 *     ahead, so no interrupt is due: the idle check must send one after a period with
 *     nothing moving. The script checks the stall watch and the idle check in the log.
 *   reconnect case "base-zero-reused": frames echoed (indices past the ring size), the rings
 *     stopped and restarted with SET_VRING_BASE 0 while avail and used are far ahead (what
 *     DPDK's virtio_user does after a back-end restart): the daemon must resume at used->idx
 *     and the next frames must come back (issue 12, item 9)
 *   CPU cases: a ring broken at run time ("broken-kick-cpu") or failed at start
 *     ("failed-kick-cpu") and kicked non-stop for 3 s, a broken RX ring with frames waiting
 *     for it in the loopback, whose fd stays readable ("broken-rx-cpu"), and kick fds that are not eventfds
 *     (a regular file, a socket at EOF, a pipe with data: refused at SET_VRING_KICK): the
 *     daemon's CPU time (utime + stime of /proc/PID/stat, PID from SO_PEERCRED) over the
 *     window must stay under 10 % of one core (item 10, item 11)
 *   fd cases: a call eventfd whose counter is full, opened blocking ("call-full-eventfd": the
 *     daemon writes it at once and on every completion and must not block), a full blocking
 *     pipe as call fd ("call-full-pipe": refused); replies must keep coming (item 11)
 *   memory cases: the front-end shrinks its guest-memory file after SET_MEM_TABLE and kicks.
 *     "shrink-sealed": a memfd that allows sealing, which the daemon seals: ftruncate must
 *     fail with EPERM and the ring keeps working; "shrink-memfd" (no MFD_ALLOW_SEALING) and
 *     "shrink-file" (a file in /dev/shm): the daemon's access faults (SIGBUS), the session
 *     must end (connection closed) and a new front-end must be served (item 11)
 *   "silent": a connection that sends nothing, and beside it an honest front-end, which must
 *     be served once the daemon drops the silent one (item 11)
 *   honest case "echo": a well-behaved front-end whose frames come back through the
 *     daemon's loopback intact (run last: the daemon still serves)
 *
 * Prints one line per case ("ok" / "FAIL") and exits 0 only if every case behaved.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vu_frontend.h"

static const char *g_sock;
static int g_failed;

enum expect { DROP, RING_FAIL, UNKICKED, HONEST, SPECIAL };

/* Split-ring layouts (virtio spec 2.7), written by hand: these rings are meant to be wrong. */
struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#define DESC_F_NEXT 1u
#define QSIZE 256u
#define BUF_GPA 0x800000ull

static int open_fe(struct vufe *f)
{
    int rc = vufe_open(f, g_sock, -1);
    if (rc < 0)
        fprintf(stderr, "hostile: cannot connect to %s: %s\n", g_sock, strerror(-rc));
    return rc;
}

/* Honest setup of a whole session with raw rings (no buffers), plus an error eventfd per
 * ring. */
static int setup(struct vufe *f, int *err_fd, unsigned nq)
{
    struct vufe_config c = {.mem_size = 64ull << 20, .queue_pairs = 1, .queue_size = QSIZE,
                            .reply_ack = true, .no_driver = true};
    int rc = vufe_setup(f, &c);
    if (rc < 0) {
        fprintf(stderr, "hostile: honest setup failed: %s\n", f->err);
        return rc;
    }
    for (unsigned q = 0; q < nq; q++) {
        err_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        uint64_t idx = q;
        if ((rc = vufe_call(f, VUFE_SET_VRING_ERR, &idx, 8, &err_fd[q], 1)) < 0)
            return rc;
    }
    return 0;
}

static bool fd_fires(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1;
}

static bool still_serving(struct vufe *f)
{
    uint64_t v;
    return vufe_get_u64(f, VUFE_GET_FEATURES, &v) == 0;
}

/* ------------------------------------------------------------------------ */
/* Protocol cases: send, then the daemon must hang up.                       */

struct mt2 {
    uint32_t nregions, padding;
    struct vufe_region r[9];
};

static int memfd_of(uint64_t size)
{
    int fd = memfd_create("hostile", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Negotiate features so that memory and ring requests are legal to send. */
static void negotiate(struct vufe *f)
{
    uint64_t feat = 0, pf = 0;
    vufe_get_u64(f, VUFE_GET_FEATURES, &feat);
    if (feat & (1ull << VUFE_F_PROTOCOL_FEATURES)) {
        vufe_get_u64(f, VUFE_GET_PROTOCOL_FEATURES, &pf);
        uint64_t p = pf & (1ull << VUFE_PF_CONFIGURE_MEM_SLOTS); /* for ADD_MEM_REG */
        vufe_send(f, VUFE_SET_PROTOCOL_FEATURES, 0, &p, 8, NULL, 0);
    }
    vufe_send(f, VUFE_SET_OWNER, 0, NULL, 0, NULL, 0);
    uint64_t want = feat & ((1ull << 32) | (1ull << VUFE_F_PROTOCOL_FEATURES));
    vufe_send(f, VUFE_SET_FEATURES, 0, &want, 8, NULL, 0);
}

static int mem_table(struct vufe *f, const struct vufe_region *r, unsigned n, unsigned nreg_field,
                     const int *fds, unsigned nfds)
{
    struct mt2 m;
    memset(&m, 0, sizeof(m));
    m.nregions = nreg_field;
    memcpy(m.r, r, n * sizeof(*r));
    return vufe_send(f, VUFE_SET_MEM_TABLE, 0, &m, (uint32_t)(8 + n * sizeof(*r)), fds, nfds);
}

static void c_proto(const char *name, struct vufe *f)
{
    int efd[9];
    uint8_t big[256];
    memset(big, 0, sizeof(big));
    uint64_t u = 0;
    uint8_t *map = NULL;
    int mfd = -1;
    if (!strcmp(name, "hdr-truncated")) {
        uint8_t h[6] = {1, 0, 0, 0, 1, 0};
        ssize_t n = write(f->sock, h, sizeof(h));
        (void)n;
        /* the daemon waits up to its I/O timeout for the rest, then hangs up */
    } else if (!strcmp(name, "size-huge")) {
        vufe_send(f, VUFE_SET_FEATURES, 0, NULL, 0x10000000u, NULL, 0);
    } else if (!strcmp(name, "size-short")) {
        vufe_send(f, VUFE_SET_FEATURES, 0, &u, 4, NULL, 0);
    } else if (!strcmp(name, "size-long")) {
        vufe_send(f, VUFE_SET_VRING_NUM, 0, big, 16, NULL, 0);
    } else if (!strcmp(name, "payload-4k")) {
        uint8_t *p = calloc(1, 65536);
        vufe_send(f, VUFE_SET_MEM_TABLE, 0, p, 65536, NULL, 0);
        free(p);
    } else if (!strcmp(name, "unknown-request")) {
        vufe_send(f, 9999, 0, &u, 8, NULL, 0);
    } else if (!strcmp(name, "bad-version")) {
        vufe_send(f, VUFE_GET_FEATURES, 0x2, NULL, 0, NULL, 0);
    } else if (!strcmp(name, "reply-flag")) {
        vufe_send(f, VUFE_SET_OWNER, VUFE_FLAG_VERSION | VUFE_FLAG_REPLY, NULL, 0, NULL, 0);
    } else if (!strcmp(name, "too-many-fds")) {
        negotiate(f);
        for (int i = 0; i < 9; i++)
            efd[i] = eventfd(0, EFD_CLOEXEC);
        vufe_send(f, VUFE_SET_VRING_KICK, 0, &u, 8, efd, 9);
        for (int i = 0; i < 9; i++)
            close(efd[i]);
    } else if (!strcmp(name, "fd-on-fdless")) {
        efd[0] = eventfd(0, EFD_CLOEXEC);
        vufe_send(f, VUFE_GET_FEATURES, 0, NULL, 0, efd, 1);
        close(efd[0]);
    } else if (!strcmp(name, "kick-without-fd")) {
        negotiate(f);
        vufe_send(f, VUFE_SET_VRING_KICK, 0, &u, 8, NULL, 0); /* no fd and no NOFD flag */
    } else if (!strcmp(name, "features-unoffered")) {
        negotiate(f);
        uint64_t bad = (1ull << 63) | (1ull << 32);
        vufe_send(f, VUFE_SET_FEATURES, 0, &bad, 8, NULL, 0);
    } else if (!strcmp(name, "ring-index-range")) {
        negotiate(f);
        struct { uint32_t index, num; } st = {200, 256};
        vufe_send(f, VUFE_SET_VRING_NUM, 0, &st, 8, NULL, 0);
    } else if (!strcmp(name, "ring-num-not-pow2")) {
        negotiate(f);
        struct { uint32_t index, num; } st = {0, 300};
        vufe_send(f, VUFE_SET_VRING_NUM, 0, &st, 8, NULL, 0);
    } else if (!strcmp(name, "ring-num-huge")) {
        negotiate(f);
        struct { uint32_t index, num; } st = {0, 65536};
        vufe_send(f, VUFE_SET_VRING_NUM, 0, &st, 8, NULL, 0);
    } else {
        /* memory tables */
        negotiate(f);
        mfd = memfd_of(16 << 20);
        map = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        uint64_t uva = (uintptr_t)map;
        struct vufe_region r[9];
        int fds[9];
        for (int i = 0; i < 9; i++) {
            fds[i] = mfd;
            r[i] = (struct vufe_region){.gpa = (uint64_t)i << 24, .size = 1 << 20,
                                        .uva = uva + ((uint64_t)i << 20)};
        }
        if (!strcmp(name, "mem-too-many")) {
            mem_table(f, r, 9, 9, fds, 8); /* 9 regions cannot come with 9 fds: try anyway */
        } else if (!strcmp(name, "mem-fd-count")) {
            mem_table(f, r, 2, 2, fds, 1);
        } else if (!strcmp(name, "mem-nregions-lie")) {
            mem_table(f, r, 1, 5, fds, 1);
        } else if (!strcmp(name, "mem-overlap")) {
            r[1].gpa = r[0].gpa + 4096;
            mem_table(f, r, 2, 2, fds, 2);
        } else if (!strcmp(name, "mem-gpa-wrap")) {
            r[0].gpa = 0xfffffffffff00000ull;
            r[0].size = 2 << 20;
            mem_table(f, r, 1, 1, fds, 1);
        } else if (!strcmp(name, "mem-uva-wrap")) {
            r[0].uva = 0xffffffffffff0000ull;
            mem_table(f, r, 1, 1, fds, 1);
        } else if (!strcmp(name, "mem-size-zero")) {
            r[0].size = 0;
            mem_table(f, r, 1, 1, fds, 1);
        } else if (!strcmp(name, "mem-beyond-file")) {
            r[0].size = 64 << 20; /* the file has 16 MiB */
            mem_table(f, r, 1, 1, fds, 1);
        } else if (!strcmp(name, "mem-offset-beyond-file")) {
            r[0].mmap_offset = 15 << 20;
            r[0].size = 2 << 20;
            mem_table(f, r, 1, 1, fds, 1);
        } else if (!strcmp(name, "mem-not-a-file")) {
            efd[0] = eventfd(0, EFD_CLOEXEC);
            mem_table(f, r, 1, 1, efd, 1);
            close(efd[0]);
        } else if (!strcmp(name, "mem-add-reg-overlap")) {
            mem_table(f, r, 1, 1, fds, 1);
            struct { uint64_t pad; struct vufe_region r; } a = {0, r[0]};
            a.r.gpa += 4096;
            a.r.uva += 4096 * 512;
            vufe_send(f, VUFE_ADD_MEM_REG, 0, &a, sizeof(a), fds, 1);
        }
    }
    if (map)
        munmap(map, 16 << 20);
    if (mfd >= 0)
        close(mfd);
}

/* ------------------------------------------------------------------------ */
/* Ring cases: an honest session, then a ring is made wrong and kicked.      */

static void kick(struct vufe *f, unsigned q)
{
    uint64_t one = 1;
    ssize_t n = write(f->kick[q], &one, sizeof(one));
    (void)n;
}

static uint16_t *avail_idx(struct vufe *f, unsigned q) { return (uint16_t *)(f->mem + f->ring[q][1] + 2); }
static uint16_t *avail_ring(struct vufe *f, unsigned q) { return (uint16_t *)(f->mem + f->ring[q][1] + 4); }
static struct desc *desc_tab(struct vufe *f, unsigned q) { return (struct desc *)(f->mem + f->ring[q][0]); }

static int c_ring(const char *name, struct vufe *f, int *err_fd)
{
    const unsigned tx = 1; /* TX queue of pair 0: the device reads chains from it */
    struct desc *d = desc_tab(f, tx);
    if (!strcmp(name, "ring-outside-memory")) {
        /* re-point ring 1 outside guest RAM, then kick: the ring must not start */
        struct { uint32_t index, num; } st = {tx, 1};
        uint64_t base = (uintptr_t)f->mem + f->mem_size + (1ull << 30);
        struct vufe_vring_addr va = {.index = tx, .desc = base, .avail = base + 8192,
                                     .used = base + 16384};
        uint64_t idx = tx;
        vufe_send(f, VUFE_GET_VRING_BASE, 0, &st, 8, NULL, 0); /* stop the ring */
        vufe_recv(f, VUFE_GET_VRING_BASE, &st, 8, 2000);
        vufe_call(f, VUFE_SET_VRING_ADDR, &va, sizeof(va), NULL, 0);
        int k = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vufe_call(f, VUFE_SET_VRING_KICK, &idx, 8, &k, 1);
        close(k);
        return 0;
    }
    if (!strcmp(name, "mem-drops-rings")) {
        /* a new memory table whose only region lies above the rings */
        int mfd = memfd_of(16 << 20);
        uint8_t *m = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        struct { uint32_t n, pad; struct vufe_region r; } mt = {
            1, 0, {.gpa = 1ull << 32, .size = 16 << 20, .uva = (uintptr_t)m}};
        vufe_call(f, VUFE_SET_MEM_TABLE, &mt, sizeof(mt), &mfd, 1);
        munmap(m, 16 << 20);
        close(mfd);
        return 0;
    }
    /* chains on the TX ring */
    uint16_t *ai = avail_idx(f, tx), *ar = avail_ring(f, tx);
    for (unsigned i = 0; i < 4; i++)
        d[i] = (struct desc){.addr = BUF_GPA + i * 2048, .len = 128};
    if (!strcmp(name, "avail-idx-ahead")) {
        ar[0] = 0;
        __atomic_store_n(ai, (uint16_t)(QSIZE + 5), __ATOMIC_RELEASE);
    } else if (!strcmp(name, "head-beyond-size")) {
        ar[0] = QSIZE + 3;
        __atomic_store_n(ai, 1, __ATOMIC_RELEASE);
    } else if (!strcmp(name, "next-beyond-size")) {
        d[0].flags = DESC_F_NEXT;
        d[0].next = QSIZE + 1;
        ar[0] = 0;
        __atomic_store_n(ai, 1, __ATOMIC_RELEASE);
    } else if (!strcmp(name, "chain-loop")) {
        d[0].flags = DESC_F_NEXT;
        d[0].next = 1;
        d[1].flags = DESC_F_NEXT;
        d[1].next = 0;
        ar[0] = 0;
        __atomic_store_n(ai, 1, __ATOMIC_RELEASE);
    } else if (!strcmp(name, "desc-outside-memory")) {
        d[0].addr = f->mem_size + 4096;
        d[0].len = 256;
        ar[0] = 0;
        __atomic_store_n(ai, 1, __ATOMIC_RELEASE);
    }
    kick(f, tx);
    (void)err_fd;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Cases of issue 12: reconnect with a stale base, CPU of broken rings, fds that are not   */
/* eventfds or that block, guest memory that shrinks, a silent connection.                 */

#define CPU_WINDOW_MS 3000
#define CPU_LIMIT 0.10 /* of one core: the bug was 50 % and more */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The daemon at the other end of the socket. */
static pid_t peer_pid(const struct vufe *f)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(f->sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -1;
    return cr.pid;
}

/* utime + stime of @p pid in seconds, or -1. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Kick @p kfd (if >= 0) without a pause for CPU_WINDOW_MS, as a polling front-end (OVS's PMD)
 * does; the daemon's share of one core meanwhile. */
static double cpu_while_kicking(const struct vufe *f, int kfd)
{
    pid_t pid = peer_pid(f);
    double c0 = cpu_s(pid), t0 = now_s(), t;
    if (pid <= 0 || c0 < 0)
        return -1;
    uint64_t one = 1;
    while ((t = now_s()) - t0 < CPU_WINDOW_MS / 1000.0) {
        if (kfd >= 0) {
            for (int i = 0; i < 64; i++) {
                ssize_t n = write(kfd, &one, sizeof(one));
                (void)n;
            }
        } else {
            usleep(1000);
        }
    }
    double c1 = cpu_s(pid);
    return c1 < 0 ? -1 : (c1 - c0) / (t - t0);
}

static int stop_ring(struct vufe *f, unsigned q, uint16_t *base)
{
    struct { uint32_t index, num; } st = {q, 0};
    int rc = vufe_send(f, VUFE_GET_VRING_BASE, 0, &st, 8, NULL, 0);
    if (rc == 0 && (rc = vufe_recv(f, VUFE_GET_VRING_BASE, &st, 8, 5000)) == 8)
        rc = 0;
    if (base)
        *base = (uint16_t)st.num;
    return rc < 0 ? rc : 0;
}

/* A valid 128-byte TX chain (a frame for the daemon's loopback) at slot @p n. */
static void tx_chain(uint8_t *mem, const uint64_t ring[3], uint16_t n, uint64_t buf_gpa)
{
    struct desc *d = (struct desc *)(mem + ring[0]);
    uint16_t *ar = (uint16_t *)(mem + ring[1] + 4);
    unsigned slot = n % QSIZE;
    d[slot] = (struct desc){.addr = buf_gpa, .len = 128};
    ar[slot] = (uint16_t)slot;
    __atomic_store_n((uint16_t *)(mem + ring[1] + 2), (uint16_t)(n + 1), __ATOMIC_RELEASE);
}

static uint16_t used_idx_of(const uint8_t *mem, const uint64_t ring[3])
{
    return __atomic_load_n((const uint16_t *)(mem + ring[2] + 2), __ATOMIC_ACQUIRE);
}

static bool wait_used(const uint8_t *mem, const uint64_t ring[3], uint16_t want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (used_idx_of(mem, ring) == want)
            return true;
        usleep(10 * 1000);
    }
    return used_idx_of(mem, ring) == want;
}

/* item 9: echo, stop both rings, restart them with base 0, echo again. */
static bool c_base_zero(char *why, size_t cap)
{
    struct vufe f;
    bool ok = false;
    if (open_fe(&f) < 0)
        return snprintf(why, cap, "cannot connect"), false;
    struct vufe_config c = {.mem_size = 64ull << 20, .queue_pairs = 1, .reply_ack = true};
    long got;
    if (vufe_setup(&f, &c) < 0) {
        snprintf(why, cap, "setup failed: %s", f.err);
    } else if ((got = vufe_echo(&f, 1000, 200, 10000)) != 1000) {
        snprintf(why, cap, "first round: %ld of 1000 frames came back", got);
    } else {
        uint16_t b[2] = {0, 0};
        int rc = 0;
        for (unsigned q = 0; q < 2 && rc == 0; q++) {
            struct { uint32_t index, num; } st = {q, 0};
            uint64_t idx = q;
            if ((rc = stop_ring(&f, q, &b[q])) == 0 &&
                (rc = vufe_call(&f, VUFE_SET_VRING_BASE, &st, 8, NULL, 0)) == 0 &&
                (rc = vufe_call(&f, VUFE_SET_VRING_CALL, &idx, 8, &f.call[q], 1)) == 0)
                rc = vufe_call(&f, VUFE_SET_VRING_KICK, &idx, 8, &f.kick[q], 1);
        }
        if (rc < 0)
            snprintf(why, cap, "restarting the rings failed: %s", f.err);
        else if (b[1] < 1000)
            snprintf(why, cap, "tx ring stopped at %u: not past the ring size", b[1]);
        else if ((got = vufe_echo(&f, 1000, 200, 10000)) != 1000)
            snprintf(why, cap, "after the restart with base 0 (stopped at rx %u tx %u): %ld of "
                     "1000 frames came back", b[0], b[1], got);
        else if (!(ok = still_serving(&f)))
            snprintf(why, cap, "connection not usable after the second round");
        else
            snprintf(why, cap, "stopped at rx %u tx %u, restarted at 0, 1000 more frames",
                     b[0], b[1]);
    }
    vufe_close(&f);
    return ok;
}

/* item 10 (and 11): a broken / failed ring, or a kick fd that is not an eventfd; the daemon's
 * CPU while the front-end keeps kicking. */
static bool c_cpu(const char *name, char *why, size_t cap)
{
    struct vufe f;
    int err_fd[2] = {-1, -1}, kfd = -1, other = -1, bad = -1;
    bool ok = false;
    const unsigned tx = 1;
    unsigned err_ring = tx;
    if (open_fe(&f) < 0)
        return snprintf(why, cap, "cannot connect"), false;
    if (setup(&f, err_fd, 2) < 0) {
        snprintf(why, cap, "honest setup failed: %s", f.err);
        goto out;
    }
    uint64_t idx = tx;
    if (!strcmp(name, "broken-kick-cpu")) {
        c_ring("avail-idx-ahead", &f, err_fd);
        kfd = f.kick[tx];
    } else if (!strcmp(name, "broken-rx-cpu")) {
        /* RX broken (avail index more than a ring ahead), then frames for it: the loopback
         * holds them, its fd stays readable, and nothing may poll it in vain */
        const unsigned rx = 0;
        __atomic_store_n(avail_idx(&f, rx), (uint16_t)(QSIZE + 5), __ATOMIC_RELEASE);
        kick(&f, rx);
        for (uint16_t n = 0; n < 8; n++)
            tx_chain(f.mem, f.ring[tx], n, BUF_GPA + n * 2048u);
        kick(&f, tx);
        wait_used(f.mem, f.ring[tx], 8, 2000);
        err_ring = rx; /* the ring that must have reported (at the first frame for it) */
        kfd = f.kick[rx];
    } else if (!strcmp(name, "failed-kick-cpu")) {
        uint64_t base = (uintptr_t)f.mem + f.mem_size + (1ull << 30);
        struct vufe_vring_addr va = {.index = tx, .desc = base, .avail = base + 8192,
                                     .used = base + 16384};
        stop_ring(&f, tx, NULL);
        vufe_call(&f, VUFE_SET_VRING_ADDR, &va, sizeof(va), NULL, 0);
        kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vufe_call(&f, VUFE_SET_VRING_KICK, &idx, 8, &kfd, 1);
    } else {
        if (!strcmp(name, "kick-regular-file")) {
            char path[] = "/tmp/vio-hostile-kick.XXXXXX";
            bad = mkstemp(path);
            if (bad >= 0) {
                unlink(path);
                ssize_t n = write(bad, "kick kick kick kick", 19);
                (void)n;
                lseek(bad, 0, SEEK_SET);
            }
        } else if (!strcmp(name, "kick-socket-eof")) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
                bad = sv[0];
                close(sv[1]); /* at EOF: readable for ever */
            }
        } else { /* kick-pipe */
            int pv[2];
            if (pipe(pv) == 0) {
                bad = pv[0];
                other = pv[1];
                fcntl(other, F_SETFL, O_NONBLOCK); /* kicked until full, never blocked */
                ssize_t n = write(other, "data", 4); /* readable; writes keep it so */
                (void)n;
            }
        }
        if (bad < 0) {
            snprintf(why, cap, "cannot make the fd: %s", strerror(errno));
            goto out;
        }
        stop_ring(&f, tx, NULL);
        int rc = vufe_call(&f, VUFE_SET_VRING_KICK, &idx, 8, &bad, 1);
        if (rc == 0) {
            snprintf(why, cap, "SET_VRING_KICK with a %s accepted", name + 5);
            /* go on: the CPU figure says whether it spins */
        }
        kfd = other; /* the pipe: keep writing into it */
    }
    bool fired = fd_fires(err_fd[err_ring], 2000);
    double share = cpu_while_kicking(&f, kfd);
    bool alive = still_serving(&f);
    ok = fired && alive && share >= 0 && share < CPU_LIMIT && !why[0];
    if (!ok || !why[0])
        snprintf(why + strlen(why), cap - strlen(why), "%sdaemon CPU %.1f %% of a core over %d "
                 "ms of kicks (limit %.0f %%)%s%s", why[0] ? "; " : "", share * 100,
                 CPU_WINDOW_MS, CPU_LIMIT * 100, fired ? "" : "; error eventfd never fired",
                 alive ? "" : "; connection not usable any more");
out:
    if (kfd >= 0 && kfd != f.kick[0] && kfd != f.kick[1])
        close(kfd);
    if (bad >= 0) /* the pipe's read end stays open while we write into it (no SIGPIPE) */
        close(bad);
    for (int i = 0; i < 2; i++)
        if (err_fd[i] >= 0)
            close(err_fd[i]);
    vufe_close(&f);
    return ok;
}

/* item 11: call fds that would block the daemon's write. */
static bool c_call(const char *name, char *why, size_t cap)
{
    struct vufe f;
    int err_fd[2] = {-1, -1}, cfd = -1, other = -1;
    bool ok = false;
    const unsigned tx = 1;
    if (open_fe(&f) < 0)
        return snprintf(why, cap, "cannot connect"), false;
    if (setup(&f, err_fd, 2) < 0) {
        snprintf(why, cap, "honest setup failed: %s", f.err);
        goto out;
    }
    uint64_t idx = tx;
    if (!strcmp(name, "call-full-eventfd")) {
        cfd = eventfd(0, EFD_CLOEXEC); /* blocking */
        uint64_t full = 0xfffffffffffffffeull;
        ssize_t n = write(cfd, &full, sizeof(full));
        (void)n;
        /* the ring is started: the daemon signals the new call fd at once */
        int rc = vufe_call(&f, VUFE_SET_VRING_CALL, &idx, 8, &cfd, 1);
        if (rc < 0) {
            snprintf(why, cap, "SET_VRING_CALL got no answer: %s", f.err);
            goto out;
        }
        /* a completion: the worker writes the call fd too */
        tx_chain(f.mem, f.ring[tx], 0, BUF_GPA);
        kick(&f, tx);
        bool used = wait_used(f.mem, f.ring[tx], 1, 3000);
        bool alive = still_serving(&f);
        ok = used && alive;
        snprintf(why, cap, "%s%s", used ? "chain completed" : "chain never completed",
                 alive ? ", replies keep coming" : ", no reply any more");
    } else { /* call-full-pipe */
        int pv[2];
        if (pipe2(pv, O_CLOEXEC | O_NONBLOCK) < 0) {
            snprintf(why, cap, "pipe: %s", strerror(errno));
            goto out;
        }
        other = pv[0];
        cfd = pv[1];
        char buf[4096];
        memset(buf, 0, sizeof(buf));
        while (write(cfd, buf, sizeof(buf)) > 0)
            ;
        fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) & ~O_NONBLOCK); /* full and blocking */
        int rc = vufe_call(&f, VUFE_SET_VRING_CALL, &idx, 8, &cfd, 1);
        bool alive = still_serving(&f);
        ok = rc == -EPROTO && alive;
        snprintf(why, cap, "SET_VRING_CALL %s%s", rc == -EPROTO ? "refused" : rc == 0 ?
                 "accepted" : "got no answer", alive ? ", replies keep coming" :
                 ", no reply any more");
    }
out:
    if (cfd >= 0)
        close(cfd);
    if (other >= 0)
        close(other);
    for (int i = 0; i < 2; i++)
        if (err_fd[i] >= 0)
            close(err_fd[i]);
    vufe_close(&f);
    return ok;
}

/* item 11: guest memory whose file shrinks after SET_MEM_TABLE. The session's own memory
 * (memfd with or without sealing, or a /dev/shm file) and rings laid out by hand. */
static bool c_shrink(const char *name, char *why, size_t cap)
{
    const uint64_t msize = 16ull << 20, area = 1ull << 20, buf = 8ull << 20;
    struct vufe f;
    int mfd = -1;
    bool ok = false;
    if (open_fe(&f) < 0)
        return snprintf(why, cap, "cannot connect"), false;
    if (!strcmp(name, "shrink-sealed")) {
        mfd = memfd_create("hostile-sealable", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    } else if (!strcmp(name, "shrink-memfd")) {
        mfd = memfd_create("hostile-unsealable", MFD_CLOEXEC);
    } else {
        char path[] = "/dev/shm/vio-hostile.XXXXXX";
        mfd = mkstemp(path);
        if (mfd >= 0)
            unlink(path);
    }
    if (mfd < 0 || ftruncate(mfd, (off_t)msize) < 0) {
        snprintf(why, cap, "guest memory: %s", strerror(errno));
        goto out;
    }
    f.mem = mmap(NULL, msize, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (f.mem == MAP_FAILED) {
        f.mem = NULL;
        snprintf(why, cap, "mmap: %s", strerror(errno));
        goto out;
    }
    f.mem_size = msize;
    f.pfeatures = 0;
    negotiate(&f); /* no REPLY_ACK: a round trip (GET_FEATURES) tells when it is handled */
    uint64_t uva = (uintptr_t)f.mem;
    struct { uint32_t n, pad; struct vufe_region r; } mt = {1, 0, {.gpa = 0, .size = msize,
                                                                 .uva = uva}};
    vufe_send(&f, VUFE_SET_MEM_TABLE, 0, &mt, sizeof(mt), &mfd, 1);
    for (unsigned q = 0; q < 2; q++) {
        uint64_t base = area + q * 0x10000;
        f.ring[q][0] = base;
        f.ring[q][1] = base + 16 * QSIZE;
        f.ring[q][2] = base + 0x2000;
        f.kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f.call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct { uint32_t index, num; } st = {q, QSIZE};
        vufe_send(&f, VUFE_SET_VRING_NUM, 0, &st, 8, NULL, 0);
        st.num = 0;
        vufe_send(&f, VUFE_SET_VRING_BASE, 0, &st, 8, NULL, 0);
        struct vufe_vring_addr va = {.index = q, .desc = uva + f.ring[q][0],
                                     .avail = uva + f.ring[q][1], .used = uva + f.ring[q][2]};
        vufe_send(&f, VUFE_SET_VRING_ADDR, 0, &va, sizeof(va), NULL, 0);
        uint64_t idx = q;
        vufe_send(&f, VUFE_SET_VRING_CALL, 0, &idx, 8, &f.call[q], 1);
        vufe_send(&f, VUFE_SET_VRING_KICK, 0, &idx, 8, &f.kick[q], 1);
        st.num = 1;
        vufe_send(&f, VUFE_SET_VRING_ENABLE, 0, &st, 8, NULL, 0);
    }
    if (!still_serving(&f)) {
        snprintf(why, cap, "setup not answered: %s", f.err);
        goto out;
    }
    const unsigned tx = 1;
    tx_chain(f.mem, f.ring[tx], 0, buf); /* its buffer lies past the new end below */
    int rc = ftruncate(mfd, (off_t)(4ull << 20));
    int e = errno;
    if (!strcmp(name, "shrink-sealed")) {
        if (rc == 0 || e != EPERM) {
            snprintf(why, cap, "ftruncate of the sealable memfd %s (the daemon did not seal it)",
                     rc == 0 ? "succeeded" : strerror(e));
            goto out;
        }
        kick(&f, tx);
        bool used = wait_used(f.mem, f.ring[tx], 1, 3000);
        ok = used && still_serving(&f);
        snprintf(why, cap, "shrink refused (EPERM); chain %s", used ? "completed, session kept"
                                                                     : "never completed");
        goto out;
    }
    if (rc < 0) {
        snprintf(why, cap, "ftruncate: %s", strerror(e));
        goto out;
    }
    kick(&f, tx);
    /* the daemon faults on the buffer: the session must end, the daemon must live on */
    bool closed = vufe_peer_closed(&f, 5000);
    vufe_close(&f);
    close(mfd);
    mfd = -1;
    struct vufe g;
    long got = -1;
    if (closed && open_fe(&g) == 0) {
        struct vufe_config c = {.mem_size = 64ull << 20, .queue_pairs = 1, .reply_ack = true};
        got = vufe_setup(&g, &c) == 0 ? vufe_echo(&g, 100, 200, 10000) : -1;
        vufe_close(&g);
    }
    ok = closed && got == 100;
    snprintf(why, cap, "%s; next front-end: %ld of 100 frames echoed",
             closed ? "session ended" : "session still open 5 s after the fault", got);
    return ok;
out:
    if (f.mem)
        munmap(f.mem, msize);
    f.mem = NULL;
    if (mfd >= 0)
        close(mfd);
    vufe_close(&f);
    return ok;
}

/* item 11: a connection that says nothing must not keep the next front-end out. */
static bool c_silent(char *why, size_t cap)
{
    struct vufe quiet, f;
    bool ok = false;
    if (open_fe(&quiet) < 0)
        return snprintf(why, cap, "cannot connect"), false;
    usleep(100 * 1000); /* accepted first */
    double t0 = now_s();
    if (open_fe(&f) < 0) {
        vufe_close(&quiet);
        return snprintf(why, cap, "second connection refused"), false;
    }
    struct vufe_config c = {.mem_size = 64ull << 20, .queue_pairs = 1, .reply_ack = true};
    long got = vufe_setup(&f, &c) == 0 ? vufe_echo(&f, 100, 200, 10000) : -1;
    double waited = now_s() - t0;
    bool dropped = vufe_peer_closed(&quiet, 100);
    ok = got == 100 && dropped;
    snprintf(why, cap, "honest front-end served after %.1f s (%ld of 100 frames); silent one %s",
             waited, got, dropped ? "dropped" : "still connected");
    vufe_close(&f);
    vufe_close(&quiet);
    return ok;
}

static bool c_special(const char *name, char *why, size_t cap)
{
    if (!strcmp(name, "base-zero-reused"))
        return c_base_zero(why, cap);
    if (!strncmp(name, "call-", 5))
        return c_call(name, why, cap);
    if (!strncmp(name, "shrink-", 7))
        return c_shrink(name, why, cap);
    if (!strcmp(name, "silent"))
        return c_silent(why, cap);
    return c_cpu(name, why, cap);
}

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    enum expect expect;
} cases[] = {
    {"hdr-truncated", DROP}, {"size-huge", DROP}, {"size-short", DROP}, {"size-long", DROP},
    {"payload-4k", DROP}, {"unknown-request", DROP}, {"bad-version", DROP},
    {"reply-flag", DROP}, {"too-many-fds", DROP}, {"fd-on-fdless", DROP},
    {"kick-without-fd", DROP}, {"features-unoffered", DROP}, {"ring-index-range", DROP},
    {"ring-num-not-pow2", DROP}, {"ring-num-huge", DROP}, {"mem-too-many", DROP},
    {"mem-fd-count", DROP}, {"mem-nregions-lie", DROP}, {"mem-overlap", DROP},
    {"mem-gpa-wrap", DROP}, {"mem-uva-wrap", DROP}, {"mem-size-zero", DROP},
    {"mem-beyond-file", DROP}, {"mem-offset-beyond-file", DROP}, {"mem-not-a-file", DROP},
    {"mem-add-reg-overlap", DROP},
    {"ring-outside-memory", RING_FAIL}, {"avail-idx-ahead", RING_FAIL},
    {"head-beyond-size", RING_FAIL}, {"next-beyond-size", RING_FAIL}, {"chain-loop", RING_FAIL},
    {"desc-outside-memory", RING_FAIL}, {"mem-drops-rings", RING_FAIL},
    {"unkicked", UNKICKED},
    {"base-zero-reused", SPECIAL}, {"broken-kick-cpu", SPECIAL}, {"broken-rx-cpu", SPECIAL},
    {"failed-kick-cpu", SPECIAL},
    {"kick-regular-file", SPECIAL}, {"kick-socket-eof", SPECIAL}, {"kick-pipe", SPECIAL},
    {"call-full-eventfd", SPECIAL}, {"call-full-pipe", SPECIAL}, {"shrink-sealed", SPECIAL},
    {"shrink-memfd", SPECIAL}, {"shrink-file", SPECIAL}, {"silent", SPECIAL},
    {"echo", HONEST},
};

static void run(const char *name, enum expect ex)
{
    struct vufe f;
    char why[300] = "";
    bool ok = false;
    if (ex == SPECIAL) {
        ok = c_special(name, why, sizeof(why));
        printf("hostile: %s %-24s %s\n", ok ? "ok  " : "FAIL", name, why);
        if (!ok)
            g_failed++;
        fflush(stdout);
        return;
    }
    if (open_fe(&f) < 0) {
        printf("hostile: FAIL %-24s cannot connect (daemon gone?)\n", name);
        g_failed++;
        return;
    }
    if (ex == DROP) {
        c_proto(name, &f);
        /* hdr-truncated: the daemon's I/O timeout (1 s) ends a half-sent message */
        ok = vufe_peer_closed(&f, 3000);
        if (!ok)
            snprintf(why, sizeof(why), "connection still open after 3 s");
    } else if (ex == RING_FAIL) {
        int err_fd[2] = {-1, -1};
        if (setup(&f, err_fd, 2) == 0) {
            c_ring(name, &f, err_fd);
            bool fired = fd_fires(err_fd[1], 2000);
            /* A chain whose buffer lies outside memory may instead be returned used with
             * length 0 (a data error, not a ring violation): accept that too. */
            bool returned = false;
            if (!fired && !strcmp(name, "desc-outside-memory")) {
                const uint8_t *used = f.mem + f.ring[1][2];
                returned = __atomic_load_n((const uint16_t *)(used + 2), __ATOMIC_ACQUIRE) == 1 &&
                           *(const uint32_t *)(used + 8) == 0;
                if (returned)
                    snprintf(why, sizeof(why), "chain returned used with length 0");
            }
            bool alive = still_serving(&f);
            ok = (fired || returned) && alive;
            if (!ok)
                snprintf(why, sizeof(why), "%s%s", fired ? "" : "error eventfd of the ring never "
                         "fired; ", alive ? "" : "connection not usable any more");
        } else {
            snprintf(why, sizeof(why), "honest setup failed: %s", f.err);
        }
        for (int i = 0; i < 2; i++)
            if (err_fd[i] >= 0)
                close(err_fd[i]);
    } else if (ex == UNKICKED) {
        int err_fd[2] = {-1, -1};
        if (setup(&f, err_fd, 2) == 0) {
            const unsigned tx = 1;
            struct desc *d = desc_tab(&f, tx);
            uint16_t *ar = avail_ring(&f, tx);
            const uint16_t *used_idx = (const uint16_t *)(f.mem + f.ring[tx][2] + 2);
            for (unsigned i = 0; i < 3; i++) {
                d[i] = (struct desc){.addr = BUF_GPA + i * 2048, .len = 128};
                ar[i] = (uint16_t)i;
            }
            ar[QSIZE] = 100; /* used_event: no interrupt before used idx 101 */
            __atomic_store_n(avail_idx(&f, tx), 3, __ATOMIC_RELEASE);
            uint16_t used = 0;
            for (int i = 0; i < 300 && used != 3; i++) { /* no kick, ever */
                usleep(10 * 1000);
                used = __atomic_load_n(used_idx, __ATOMIC_ACQUIRE);
            }
            usleep(100 * 1000); /* the push's own interrupt decision is over */
            uint64_t v;
            ssize_t rd = read(f.call[tx], &v, sizeof(v)); /* whatever came so far */
            (void)rd;
            bool nudged = used == 3 && fd_fires(f.call[tx], 4000);
            ok = used == 3 && nudged && still_serving(&f);
            if (!ok)
                snprintf(why, sizeof(why), "used idx %u after 3 s without a kick (want 3); %s",
                         used, nudged ? "interrupt sent again" : "no interrupt from the idle check");
        } else {
            snprintf(why, sizeof(why), "honest setup failed: %s", f.err);
        }
        for (int i = 0; i < 2; i++)
            if (err_fd[i] >= 0)
                close(err_fd[i]);
    } else {
        struct vufe_config c = {.mem_size = 64ull << 20, .queue_pairs = 1, .reply_ack = true};
        if (vufe_setup(&f, &c) == 0) {
            long got = vufe_echo(&f, 1000, 1000, 10000);
            ok = got == 1000;
            if (!ok)
                snprintf(why, sizeof(why), "%ld of 1000 frames came back intact", got);
        } else {
            snprintf(why, sizeof(why), "setup failed: %s", f.err);
        }
    }
    printf("hostile: %s %-24s %s%s%s\n", ok ? "ok  " : "FAIL", name,
           ex == DROP        ? "connection dropped"
           : ex == RING_FAIL ? "ring failed, session kept"
           : ex == UNKICKED  ? "lost kick and lost interrupt made up by the idle check"
                             : "frames echoed",
           ok && why[0] ? ": " : "", ok ? why : "");
    if (!ok) {
        printf("hostile:      %s\n", why);
        g_failed++;
    }
    fflush(stdout);
    vufe_close(&f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCK [CASE...]   (--list: case names)\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "--list")) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    g_sock = argv[1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool want = argc == 2;
        for (int a = 2; a < argc; a++)
            want |= !strcmp(argv[a], cases[i].name);
        if (want)
            run(cases[i].name, cases[i].expect);
    }
    printf("hostile: %d case(s) misbehaved\n", g_failed);
    return g_failed ? 1 : 0;
}
