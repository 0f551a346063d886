/* SPDX-License-Identifier: MIT */
/*
 * The kernel vhost frontend (src/transport/vhost_kernel.c) where no /dev/vhost-net exists:
 * opening a missing or forbidden device (the errno and the hint in the log), a non-vhost fd
 * (/dev/null, a pipe) on which every ioctl fails with its name and errno logged and nothing
 * crashes, the argument checks made before any ioctl (memory tables, ring sizes, bases,
 * alignments, fds), and -ENOTSUP for everything only vhost-user has. The real kernel is
 * exercised by tests/integration/vhost_net_guest.sh inside a QEMU guest.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "virtio/net_backend.h"
#include "virtio/vhost.h"

/* Every line the frontend logged, "level object: msg\n" each. */
struct logbuf {
    char text[8192];
    size_t len;
    unsigned lines;
};

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    struct logbuf *lb = opaque;
    int n = snprintf(lb->text + lb->len, sizeof(lb->text) - lb->len, "%d %s: %s\n", level,
                     object ? object : "-", msg ? msg : "");
    if (n > 0 && (size_t)n < sizeof(lb->text) - lb->len)
        lb->len += (size_t)n;
    lb->lines++;
}

static void log_reset(struct logbuf *lb)
{
    lb->len = 0;
    lb->text[0] = 0;
    lb->lines = 0;
}

static bool log_has(const struct logbuf *lb, const char *s)
{
    return strstr(lb->text, s) != NULL;
}

/* A frontend over @p fd (taken over), logging into @p lb. */
static struct vio_vhost *open_fd(int fd, struct logbuf *lb)
{
    struct vio_vhost_kernel_config c = {.struct_size = sizeof(c), .path = NULL, .fd = fd,
                                        .log = log_cb, .log_opaque = lb};
    struct vio_vhost *v = NULL;
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), 0);
    ck_assert_ptr_nonnull(v);
    log_reset(lb);
    return v;
}

/* A non-vhost fd: /dev/null (even) or the read end of a pipe (odd). */
static int non_vhost_fd(int i)
{
    if (i % 2 == 0) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        return fd;
    }
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[1]);
    return p[0];
}

/* ---- open ------------------------------------------------------------------------------- */

START_TEST(open_missing_path)
{
    struct logbuf lb = {0};
    struct vio_vhost_kernel_config c = {.struct_size = sizeof(c),
                                        .path = "/nonexistent-vio/vhost-net", .fd = -1,
                                        .log = log_cb, .log_opaque = &lb};
    struct vio_vhost *v = (struct vio_vhost *)&lb; /* must stay untouched */
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), -ENOENT);
    ck_assert_ptr_eq(v, (struct vio_vhost *)&lb);
    ck_assert_msg(log_has(&lb, "open /nonexistent-vio/vhost-net: No such file or directory"),
                  "log: %s", lb.text);
    ck_assert_msg(log_has(&lb, "modprobe vhost_net"), "log: %s", lb.text);
}
END_TEST

/* EACCES with its hint: a 0600 file of another user. As root, a child drops to nobody. */
START_TEST(open_forbidden)
{
    char path[] = "/tmp/check-vhost-kernel-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(chmod(path, 0), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        struct logbuf lb = {0};
        struct vio_vhost_kernel_config c = {.struct_size = sizeof(c), .path = path, .fd = -1,
                                            .log = log_cb, .log_opaque = &lb};
        struct vio_vhost *v = NULL;
        int rc = vio_vhost_kernel_open(&c, &v);
        if (rc != -EACCES)
            _exit(11);
        if (!log_has(&lb, "Permission denied") || !log_has(&lb, "run as root"))
            _exit(12);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    unlink(path);
    ck_assert(WIFEXITED(st));
    ck_assert_msg(WEXITSTATUS(st) == 0, "child check %d failed (10 setuid, 11 errno, 12 hint)",
                  WEXITSTATUS(st));
}
END_TEST

START_TEST(open_bad_args)
{
    struct vio_vhost *v = NULL;
    struct vio_vhost_kernel_config c = {.struct_size = sizeof(c), .fd = -1};
    ck_assert_int_eq(vio_vhost_kernel_open(NULL, &v), -EINVAL);
    ck_assert_int_eq(vio_vhost_kernel_open(&c, NULL), -EINVAL);
    c.struct_size = sizeof(c) - 1;
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), -EINVAL);
    c.struct_size = 0;
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), -EINVAL);
    c.struct_size = sizeof(c);
    c.fd = -2;
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), -EINVAL);
    ck_assert_ptr_null(v);
}
END_TEST

/* A path that opens but is no vhost device is taken; its ioctls fail later. Closing releases
 * the fd (the next open gets the same number back). */
START_TEST(open_path_and_free)
{
    struct logbuf lb = {0};
    struct vio_vhost_kernel_config c = {.struct_size = sizeof(c), .path = "/dev/null", .fd = -1,
                                        .log = log_cb, .log_opaque = &lb};
    struct vio_vhost *v = NULL;
    ck_assert_int_eq(vio_vhost_kernel_open(&c, &v), 0);
    ck_assert_int_eq(vio_vhost_kind(v), VIO_VHOST_KERNEL);
    ck_assert_int_eq(vio_vhost_fd(v), -1);
    ck_assert(vio_vhost_connected(v));
    ck_assert_int_eq(vio_vhost_handle(v), 0);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(probe, 0);
    close(probe);
    vio_vhost_free(v);
    int again = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_lt(again, probe); /* the frontend's fd was closed */
    close(again);
    vio_vhost_free(NULL);
    ck_assert_int_eq(vio_vhost_kind(NULL), 0);
}
END_TEST

/* ---- every ioctl on a non-vhost fd ------------------------------------------------------ */

struct ioctl_case {
    const char *name; /* what the log must name */
    int (*call)(struct vio_vhost *v);
};

static int c_get_features(struct vio_vhost *v)
{
    uint64_t f = 0;
    return vio_vhost_get_features(v, &f);
}
static int c_set_features(struct vio_vhost *v)
{
    return vio_vhost_set_features(v, 1ull << 32);
}
static int c_get_backend_features(struct vio_vhost *v)
{
    uint64_t f = 0;
    return vio_vhost_get_backend_features(v, &f);
}
static int c_set_backend_features(struct vio_vhost *v)
{
    return vio_vhost_set_backend_features(v, 1ull << 1);
}
static int c_set_owner(struct vio_vhost *v)
{
    return vio_vhost_set_owner(v);
}
static int c_reset(struct vio_vhost *v)
{
    return vio_vhost_reset(v);
}
static int c_set_mem_table(struct vio_vhost *v)
{
    static char mem[8192];
    struct vio_vhost_mem_region r[2] = {
        {.guest_addr = 0, .size = 4096, .user_addr = (uintptr_t)mem, .fd = -1},
        {.guest_addr = 4096, .size = 4096, .user_addr = (uintptr_t)mem + 4096, .fd = -1}};
    return vio_vhost_set_mem_table(v, r, 2); /* valid and adjacent: reaches the ioctl */
}
static int c_set_log_base(struct vio_vhost *v)
{
    static uint64_t bitmap[8];
    return vio_vhost_set_log_base(v, (uintptr_t)bitmap, -1, sizeof(bitmap));
}
static int c_set_log_fd(struct vio_vhost *v)
{
    return vio_vhost_set_log_fd(v, -1);
}
static int c_set_vring_num(struct vio_vhost *v)
{
    return vio_vhost_set_vring_num(v, 1, 256);
}
static int c_set_vring_addr(struct vio_vhost *v)
{
    struct vio_vhost_vring_addr a = {.desc = 0x10000, .avail = 0x11000, .used = 0x12000};
    return vio_vhost_set_vring_addr(v, 1, &a);
}
static int c_set_vring_base(struct vio_vhost *v)
{
    return vio_vhost_set_vring_base(v, 1, 0);
}
static int c_get_vring_base(struct vio_vhost *v)
{
    unsigned base = 77;
    int rc = vio_vhost_get_vring_base(v, 1, &base);
    ck_assert_uint_eq(base, 77); /* untouched on failure */
    return rc;
}
static int c_set_vring_kick(struct vio_vhost *v)
{
    return vio_vhost_set_vring_kick(v, 1, -1);
}
static int c_set_vring_call(struct vio_vhost *v)
{
    return vio_vhost_set_vring_call(v, 1, 0);
}
static int c_set_vring_err(struct vio_vhost *v)
{
    return vio_vhost_set_vring_err(v, 1, -1);
}
static int c_net_set_backend(struct vio_vhost *v)
{
    return vio_vhost_net_set_backend(v, 1, -1);
}

static const struct ioctl_case ioctl_cases[] = {
    {"VHOST_GET_FEATURES: ", c_get_features},
    {"VHOST_SET_FEATURES(0x100000000): ", c_set_features},
    {"VHOST_GET_BACKEND_FEATURES: ", c_get_backend_features},
    {"VHOST_SET_BACKEND_FEATURES(0x2): ", c_set_backend_features},
    {"VHOST_SET_OWNER: ", c_set_owner},
    {"VHOST_RESET_OWNER: ", c_reset},
    {"VHOST_SET_MEM_TABLE(2 regions): ", c_set_mem_table},
    {"VHOST_SET_LOG_BASE: ", c_set_log_base},
    {"VHOST_SET_LOG_FD: ", c_set_log_fd},
    {"VHOST_SET_VRING_NUM(ring 1): ", c_set_vring_num},
    {"VHOST_SET_VRING_ADDR(ring 1): ", c_set_vring_addr},
    {"VHOST_SET_VRING_BASE(ring 1): ", c_set_vring_base},
    {"VHOST_GET_VRING_BASE(ring 1): ", c_get_vring_base},
    {"VHOST_SET_VRING_KICK(ring 1): ", c_set_vring_kick},
    {"VHOST_SET_VRING_CALL(ring 1): ", c_set_vring_call},
    {"VHOST_SET_VRING_ERR(ring 1): ", c_set_vring_err},
    {"VHOST_NET_SET_BACKEND(ring 1): ", c_net_set_backend},
};
#define N_IOCTL_CASES (int)(sizeof(ioctl_cases) / sizeof(ioctl_cases[0]))

/* Loop index: case = i / 2, fd kind = i % 2. */
START_TEST(ioctl_on_non_vhost_fd)
{
    const struct ioctl_case *tc = &ioctl_cases[_i / 2];
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(_i), &lb);
    int rc = tc->call(v);
    ck_assert_msg(rc == -ENOTTY, "%s on %s: %d", tc->name, _i % 2 ? "a pipe" : "/dev/null", rc);
    char want[128];
    snprintf(want, sizeof(want), "0 vhost-kernel: %s%s\n", tc->name, strerror(ENOTTY));
    ck_assert_msg(log_has(&lb, want), "want '%s' in log: %s", want, lb.text);
    ck_assert_uint_eq(lb.lines, tc->call == c_set_features ? 2 : 1); /* + the GET it asks */
    /* and the frontend is still usable: the same call fails the same way again */
    ck_assert_int_eq(tc->call(v), -ENOTTY);
    vio_vhost_free(v);
}
END_TEST

/* ---- checks made before the ioctl -------------------------------------------------------- */

static char arena[4 * 4096] __attribute__((aligned(4096)));
/* Table entries hold offsets into arena (made addresses at run time, see mem_abs()); a
 * user_addr past the arena is taken as it is. */
#define UVA(off) ((uint64_t)(off))

static struct vio_vhost_mem_region mem_abs(struct vio_vhost_mem_region r)
{
    if (r.user_addr < sizeof(arena))
        r.user_addr += (uint64_t)(uintptr_t)arena;
    return r;
}

struct mem_case {
    const char *why;
    unsigned n;
    struct vio_vhost_mem_region r[10];
    const char *log; /* expected in the log */
};

static const struct mem_case mem_cases[] = {
    {"no regions", 0, {{0}}, "0 regions (1..8)"},
    {"nine regions", 9,
     {{0, 1, UVA(0), -1, 0}, {1, 1, UVA(1), -1, 0}, {2, 1, UVA(2), -1, 0},
      {3, 1, UVA(3), -1, 0}, {4, 1, UVA(4), -1, 0}, {5, 1, UVA(5), -1, 0},
      {6, 1, UVA(6), -1, 0}, {7, 1, UVA(7), -1, 0}, {8, 1, UVA(8), -1, 0}},
     "9 regions (1..8)"},
    {"empty region", 2, {{0, 4096, UVA(0), -1, 0}, {8192, 0, UVA(8192), -1, 0}},
     "region 1 is empty"},
    {"guest range wraps", 1, {{0xfffffffffffff000ull, 0x2000, UVA(0), -1, 0}}, "region 0"},
    {"user range wraps", 1, {{0, 0x2000, 0xfffffffffffff000ull, -1, 0}}, "wraps"},
    {"same start", 2, {{0, 4096, UVA(0), -1, 0}, {0, 4096, UVA(4096), -1, 0}},
     "regions 0 and 1 overlap"},
    {"partial overlap", 2, {{0, 8192, UVA(0), -1, 0}, {4096, 8192, UVA(8192), -1, 0}},
     "regions 0 and 1 overlap"},
    {"contained", 2, {{0, 16384, UVA(0), -1, 0}, {4096, 4096, UVA(4096), -1, 0}},
     "regions 0 and 1 overlap"},
    {"last overlaps first", 3,
     {{0x10000, 4096, UVA(0), -1, 0}, {0, 4096, UVA(4096), -1, 0},
      {0x10fff, 4096, UVA(8192), -1, 0}},
     "regions 0 and 2 overlap"},
    {"overlap at the top of the address space", 2,
     {{0xffffffffffff0000ull, 0x10000, UVA(0), -1, 0},
      {0xfffffffffffff000ull, 0x1000, UVA(4096), -1, 0}},
     "regions 0 and 1 overlap"},
};
#define N_MEM_CASES (int)(sizeof(mem_cases) / sizeof(mem_cases[0]))

START_TEST(mem_table_refused_before_ioctl)
{
    const struct mem_case *mc = &mem_cases[_i];
    struct vio_vhost_mem_region r[10];
    for (unsigned i = 0; i < 10; i++)
        r[i] = mem_abs(mc->r[i]);
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    ck_assert_msg(vio_vhost_set_mem_table(v, r, mc->n) == -EINVAL, "%s", mc->why);
    ck_assert_msg(log_has(&lb, "VHOST_SET_MEM_TABLE: "), "%s: %s", mc->why, lb.text);
    ck_assert_msg(log_has(&lb, mc->log), "%s: want '%s' in %s", mc->why, mc->log, lb.text);
    /* refused before the ioctl: /dev/null would have answered ENOTTY */
    ck_assert_msg(!log_has(&lb, strerror(ENOTTY)), "%s: %s", mc->why, lb.text);
    vio_vhost_free(v);
}
END_TEST

START_TEST(mem_table_ok_shapes_reach_the_ioctl)
{
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    /* one region ending exactly at 2^64, eight regions, user ranges that alias */
    struct vio_vhost_mem_region top = mem_abs((struct vio_vhost_mem_region){
        0xfffffffffffff000ull, 0x1000, UVA(0), -1, 0});
    ck_assert_int_eq(vio_vhost_set_mem_table(v, &top, 1), -ENOTTY);
    struct vio_vhost_mem_region eight[8];
    for (unsigned i = 0; i < 8; i++)
        eight[i] = mem_abs((struct vio_vhost_mem_region){(uint64_t)i << 20, 4096, UVA(0), -1, 0});
    ck_assert_int_eq(vio_vhost_set_mem_table(v, eight, 8), -ENOTTY);
    ck_assert_msg(log_has(&lb, "VHOST_SET_MEM_TABLE(8 regions): "), "%s", lb.text);
    ck_assert_int_eq(vio_vhost_set_mem_table(v, NULL, 1), -EINVAL);
    vio_vhost_free(v);
}
END_TEST

/* Ring arguments: the wrapper's index bound, then the implementation's checks. */
struct ring_case {
    const char *why;
    int (*call)(struct vio_vhost *v);
    int want;
    const char *log; /* NULL: nothing logged */
};

static int r_idx_num(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 1024, 256); }
static int r_idx_addr(struct vio_vhost *v)
{
    struct vio_vhost_vring_addr a = {.desc = 0x1000, .avail = 0x2000, .used = 0x3000};
    return vio_vhost_set_vring_addr(v, 1024, &a);
}
static int r_idx_base(struct vio_vhost *v) { return vio_vhost_set_vring_base(v, 4096, 0); }
static int r_idx_get(struct vio_vhost *v)
{
    unsigned b;
    return vio_vhost_get_vring_base(v, 0xffffffffu, &b);
}
static int r_idx_kick(struct vio_vhost *v) { return vio_vhost_set_vring_kick(v, 1024, -1); }
static int r_idx_call(struct vio_vhost *v) { return vio_vhost_set_vring_call(v, 1024, -1); }
static int r_idx_err(struct vio_vhost *v) { return vio_vhost_set_vring_err(v, 1024, -1); }
static int r_idx_backend(struct vio_vhost *v) { return vio_vhost_net_set_backend(v, 1024, -1); }
static int r_num_0(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 0, 0); }
static int r_num_3(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 0, 3); }
static int r_num_big(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 0, 65536); }
static int r_base_big(struct vio_vhost *v) { return vio_vhost_set_vring_base(v, 0, 0x10000); }
static int r_get_null(struct vio_vhost *v) { return vio_vhost_get_vring_base(v, 0, NULL); }
static int r_addr_null(struct vio_vhost *v) { return vio_vhost_set_vring_addr(v, 0, NULL); }
static int addr_with(struct vio_vhost *v, uint64_t d, uint64_t a, uint64_t u, uint64_t l,
                     unsigned flags)
{
    struct vio_vhost_vring_addr x = {.desc = d, .avail = a, .used = u, .log_guest_addr = l,
                                     .flags = flags};
    return vio_vhost_set_vring_addr(v, 0, &x);
}
static int r_desc_8(struct vio_vhost *v) { return addr_with(v, 0x1008, 0x2000, 0x3000, 0, 0); }
static int r_avail_1(struct vio_vhost *v) { return addr_with(v, 0x1000, 0x2001, 0x3000, 0, 0); }
static int r_used_2(struct vio_vhost *v) { return addr_with(v, 0x1000, 0x2000, 0x3002, 0, 0); }
static int r_log_2(struct vio_vhost *v) { return addr_with(v, 0x1000, 0x2000, 0x3000, 2, 1); }
static int r_flags(struct vio_vhost *v) { return addr_with(v, 0x1000, 0x2000, 0x3000, 0, 2); }
static int r_kick_fd(struct vio_vhost *v) { return vio_vhost_set_vring_kick(v, 0, -2); }
static int r_call_fd(struct vio_vhost *v) { return vio_vhost_set_vring_call(v, 0, -7); }
static int r_err_fd(struct vio_vhost *v) { return vio_vhost_set_vring_err(v, 0, -3); }
static int r_backend_fd(struct vio_vhost *v) { return vio_vhost_net_set_backend(v, 0, -2); }
static int r_log_fd(struct vio_vhost *v) { return vio_vhost_set_log_fd(v, -5); }
/* the limits themselves pass the checks and reach the ioctl */
static int r_num_max(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 1023, 32768); }
static int r_num_1(struct vio_vhost *v) { return vio_vhost_set_vring_num(v, 0, 1); }
static int r_base_max(struct vio_vhost *v) { return vio_vhost_set_vring_base(v, 0, 0xffff); }
static int r_addr_log(struct vio_vhost *v) { return addr_with(v, 0x1010, 0x2002, 0x3004, 8, 1); }

static const struct ring_case ring_cases[] = {
    {"SET_VRING_NUM ring 1024", r_idx_num, -EINVAL, NULL},
    {"SET_VRING_ADDR ring 1024", r_idx_addr, -EINVAL, NULL},
    {"SET_VRING_BASE ring 4096", r_idx_base, -EINVAL, NULL},
    {"GET_VRING_BASE ring 2^32-1", r_idx_get, -EINVAL, NULL},
    {"SET_VRING_KICK ring 1024", r_idx_kick, -EINVAL, NULL},
    {"SET_VRING_CALL ring 1024", r_idx_call, -EINVAL, NULL},
    {"SET_VRING_ERR ring 1024", r_idx_err, -EINVAL, NULL},
    {"NET_SET_BACKEND ring 1024", r_idx_backend, -EINVAL, NULL},
    {"size 0", r_num_0, -EINVAL, "VHOST_SET_VRING_NUM(ring 0): size 0 is not a power of 2"},
    {"size 3", r_num_3, -EINVAL, "size 3 is not a power of 2 in 1..32768"},
    {"size 65536", r_num_big, -EINVAL, "size 65536"},
    {"base 65536", r_base_big, -EINVAL, "VHOST_SET_VRING_BASE(ring 0): base 65536"},
    {"GET_VRING_BASE NULL out", r_get_null, -EINVAL, NULL},
    {"SET_VRING_ADDR NULL", r_addr_null, -EINVAL, NULL},
    {"desc 8-aligned", r_desc_8, -EINVAL, "VHOST_SET_VRING_ADDR(ring 0): misaligned"},
    {"avail odd", r_avail_1, -EINVAL, "avail 0x2001"},
    {"used 2-aligned", r_used_2, -EINVAL, "used 0x3002"},
    {"log 2-aligned", r_log_2, -EINVAL, "log 0x2"},
    {"unknown flag", r_flags, -EINVAL, "flags 0x2"},
    {"kick fd -2", r_kick_fd, -EINVAL, "VHOST_SET_VRING_KICK(ring 0): bad fd -2"},
    {"call fd -7", r_call_fd, -EINVAL, "VHOST_SET_VRING_CALL(ring 0): bad fd -7"},
    {"err fd -3", r_err_fd, -EINVAL, "VHOST_SET_VRING_ERR(ring 0): bad fd -3"},
    {"backend fd -2", r_backend_fd, -EINVAL, "VHOST_NET_SET_BACKEND(ring 0): bad fd -2"},
    {"log fd -5", r_log_fd, -EINVAL, "VHOST_SET_LOG_FD: bad fd -5"},
    {"size 32768 on ring 1023", r_num_max, -ENOTTY, "VHOST_SET_VRING_NUM(ring 1023): "},
    {"size 1", r_num_1, -ENOTTY, "VHOST_SET_VRING_NUM(ring 0): "},
    {"base 65535", r_base_max, -ENOTTY, "VHOST_SET_VRING_BASE(ring 0): "},
    {"aligned with log", r_addr_log, -ENOTTY, "VHOST_SET_VRING_ADDR(ring 0): "},
};
#define N_RING_CASES (int)(sizeof(ring_cases) / sizeof(ring_cases[0]))

START_TEST(ring_argument_checks)
{
    const struct ring_case *rc = &ring_cases[_i];
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    int got = rc->call(v);
    ck_assert_msg(got == rc->want, "%s: %d, want %d", rc->why, got, rc->want);
    if (rc->log) {
        ck_assert_msg(log_has(&lb, rc->log), "%s: want '%s' in %s", rc->why, rc->log, lb.text);
        ck_assert_uint_eq(lb.lines, 1);
    } else {
        ck_assert_msg(lb.lines == 0, "%s: %s", rc->why, lb.text);
    }
    if (rc->want == -EINVAL)
        ck_assert_msg(!log_has(&lb, strerror(ENOTTY)), "%s reached the ioctl: %s", rc->why,
                      lb.text);
    vio_vhost_free(v);
}
END_TEST

/* ---- what the kernel does not have ---------------------------------------------------------- */

START_TEST(vhost_user_only_ops)
{
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    uint64_t u64 = 0;
    unsigned u = 0;
    uint8_t st = 0;
    char buf[8] = {0};
    int fd = -1;
    ck_assert_int_eq(vio_vhost_get_protocol_features(v, &u64), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_queue_num(v, &u), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_status(v, 15), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_status(v, &st), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_config(v, 0, buf, sizeof(buf)), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_config(v, 0, buf, sizeof(buf)), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_max_mem_slots(v, &u), -ENOTSUP);
    struct vio_vhost_mem_region r = mem_abs((struct vio_vhost_mem_region){0, 4096, UVA(0), -1, 0});
    ck_assert_int_eq(vio_vhost_add_mem_region(v, &r), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_rem_mem_region(v, &r), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_vring_enable(v, 0, true), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_vring_enable(v, 1, false), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_get_inflight(v, 2, 256, &fd, &u64), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_set_inflight(v, -1, 0, 2, 256), -ENOTSUP);
    ck_assert_int_eq(vio_vhost_reconnect(v), -ENOTSUP);
    ck_assert_int_eq(fd, -1);
    ck_assert_msg(lb.lines == 0, "%s", lb.text); /* nothing was tried, nothing to report */
    vio_vhost_free(v);
}
END_TEST

/* IOTLB messages need VHOST_BACKEND_F_IOTLB_MSG_V2 accepted by the kernel first. */
START_TEST(iotlb_needs_msg_v2)
{
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    ck_assert_int_eq(vio_vhost_iotlb_update(v, 0, 4096, UVA(0), 3), -ENOTSUP);
    ck_assert_msg(log_has(&lb, "IOTLB_MSG_V2 was not negotiated"), "%s", lb.text);
    /* a refused SET_BACKEND_FEATURES does not count as negotiated */
    ck_assert_int_eq(vio_vhost_set_backend_features(v, 1ull << 1), -ENOTTY);
    log_reset(&lb);
    ck_assert_int_eq(vio_vhost_iotlb_update(v, 0, 4096, UVA(0), 0), -ENOTSUP);
    ck_assert_msg(log_has(&lb, "IOTLB_MSG_V2 was not negotiated"), "%s", lb.text);
    vio_vhost_free(v);
}
END_TEST

START_TEST(null_arguments)
{
    struct logbuf lb = {0};
    struct vio_vhost *v = open_fd(non_vhost_fd(0), &lb);
    ck_assert_int_eq(vio_vhost_get_features(v, NULL), -EINVAL);
    ck_assert_int_eq(vio_vhost_get_backend_features(v, NULL), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_owner(NULL), -EINVAL);
    ck_assert_int_eq(vio_vhost_set_features(NULL, 0), -EINVAL);
    ck_assert_uint_eq(lb.lines, 0);
    vio_vhost_free(v);
}
END_TEST

/* ---- vio_net_tap_vhost_fd() ------------------------------------------------------------------ */

START_TEST(tap_vhost_fd_not_a_tap)
{
    struct vio_net_backend lb = {0};
    ck_assert_int_eq(vio_net_tap_vhost_fd(NULL, 0, 12), -EINVAL);
    ck_assert_int_eq(vio_net_tap_vhost_fd(&lb, 0, 12), -EINVAL); /* never opened */
    ck_assert_int_eq(vio_net_loopback_open(NULL, &lb), 0);
    ck_assert_int_eq(vio_net_tap_vhost_fd(&lb, 0, 12), -EINVAL);
    vio_net_backend_destroy(&lb);
    ck_assert_int_eq(vio_net_tap_vhost_fd(&lb, 0, 12), -EINVAL); /* destroyed */
}
END_TEST

/* A real tap, in a private network namespace of a child (needs root and /dev/net/tun; the
 * child reports 77 when it cannot have them, and the check is then not made here: the guest
 * test covers the call too). */
START_TEST(tap_vhost_fd_sets_header_size)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) != 0 || access("/dev/net/tun", R_OK | W_OK) != 0)
            _exit(77);
        struct vio_net_backend tap = {0};
        struct vio_net_backend_config c = {.struct_size = sizeof(c), .ifname = "viovk0",
                                           .queue_pairs = 2};
        if (vio_net_tap_open(&c, &tap) != 0)
            _exit(77);
        int hdr = 0;
        int fd10 = vio_net_tap_vhost_fd(&tap, 1, 10);
        if (fd10 < 0 || ioctl(fd10, TUNGETVNETHDRSZ, &hdr) != 0 || hdr != 10)
            _exit(1);
        int fd12 = vio_net_tap_vhost_fd(&tap, 0, 12);
        if (fd12 < 0 || fd12 == fd10 || ioctl(fd12, TUNGETVNETHDRSZ, &hdr) != 0 || hdr != 12)
            _exit(2);
        if (vio_net_tap_vhost_fd(&tap, 2, 12) != -EINVAL ||
            vio_net_tap_vhost_fd(&tap, 0, 0) != -EINVAL ||
            vio_net_tap_vhost_fd(&tap, 0, 11) != -EINVAL ||
            vio_net_tap_vhost_fd(&tap, 0, 14) != -EINVAL)
            _exit(3);
        if (ioctl(fd12, TUNGETVNETHDRSZ, &hdr) != 0 || hdr != 12) /* refusals changed nothing */
            _exit(4);
        vio_net_backend_destroy(&tap);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        return; /* not root or no tun here */
    ck_assert_msg(WEXITSTATUS(st) == 0, "tap check %d failed", WEXITSTATUS(st));
}
END_TEST

static Suite *vhost_kernel_suite(void)
{
    Suite *s = suite_create("vhost_kernel");
    TCase *t = tcase_create("open");
    tcase_add_test(t, open_missing_path);
    tcase_add_test(t, open_forbidden);
    tcase_add_test(t, open_bad_args);
    tcase_add_test(t, open_path_and_free);
    suite_add_tcase(s, t);

    t = tcase_create("non_vhost_fd");
    tcase_add_loop_test(t, ioctl_on_non_vhost_fd, 0, 2 * N_IOCTL_CASES);
    suite_add_tcase(s, t);

    t = tcase_create("checks");
    tcase_add_loop_test(t, mem_table_refused_before_ioctl, 0, N_MEM_CASES);
    tcase_add_test(t, mem_table_ok_shapes_reach_the_ioctl);
    tcase_add_loop_test(t, ring_argument_checks, 0, N_RING_CASES);
    tcase_add_test(t, null_arguments);
    suite_add_tcase(s, t);

    t = tcase_create("tap_vhost_fd");
    tcase_add_test(t, tap_vhost_fd_not_a_tap);
    tcase_add_test(t, tap_vhost_fd_sets_header_size);
    suite_add_tcase(s, t);

    t = tcase_create("not_in_kernel");
    tcase_add_test(t, vhost_user_only_ops);
    tcase_add_test(t, iotlb_needs_msg_v2);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(vhost_kernel_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
