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
#include <unistd.h>

#include "vu_frontend.h"

static const char *g_sock;
static int g_failed;

enum expect { DROP, RING_FAIL, UNKICKED, HONEST };

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
    {"unkicked", UNKICKED}, {"echo", HONEST},
};

static void run(const char *name, enum expect ex)
{
    struct vufe f;
    char why[300] = "";
    bool ok = false;
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
