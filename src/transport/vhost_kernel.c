/* SPDX-License-Identifier: MIT */
/*
 * The kernel implementation of the vhost frontend (virtio/vhost.h): the VHOST_* ioctls of
 * <linux/vhost.h> on an fd of /dev/vhost-net (or any vhost char device), and IOTLB messages
 * written to that fd as struct vhost_msg_v2.
 *
 * Every layout comes from the UAPI headers. The ops check what the kernel would refuse with a
 * less helpful errno (a memory table with overlapping or wrapping regions, a ring size that is
 * not a power of 2, misaligned ring addresses) before the ioctl, and log it; everything else is
 * the kernel's to judge. Each failing ioctl is logged as "NAME(detail): strerror" and returned
 * as -errno.
 *
 * Operations the kernel has no ioctl for (protocol features, queue count, status, config,
 * memory slots, inflight areas) stay NULL in the ops table: the wrappers return -ENOTSUP.
 * Ring enable is an explicit -ENOTSUP: a vhost-net ring runs while it has a backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vhost.h>

#include "core/log.h"
#include "transport/vhost_internal.h"

#define VK_OBJ "vhost-kernel"
#define VK_DEFAULT_PATH "/dev/vhost-net"
#define VK_MAX_RING_SIZE 32768u /* the split ring's limit (virtio 1.2, 2.7) */

struct vhost_kernel {
    struct vio_vhost base; /* first: the generic wrappers see this */
    int fd;
    bool have_offered;       /* offered holds the result of a successful VHOST_GET_FEATURES */
    uint64_t offered;
    uint64_t backend_features; /* what VHOST_SET_BACKEND_FEATURES last accepted */
    char path[64];             /* for the log */
};

static struct vhost_kernel *vk_of(struct vio_vhost *v)
{
    return (struct vhost_kernel *)v;
}

/* Logs a refused call (before or after the ioctl) at error level. */
__attribute__((format(printf, 2, 3))) static void vk_err(struct vhost_kernel *k,
                                                          const char *fmt, ...)
{
    if (!k->base.log)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    k->base.log(k->base.log_opaque, VIO_LOG_ERROR, VK_OBJ, buf);
}

/* One ioctl: 0, or -errno with "NAME(detail): error" logged. @p detail may be "". */
static int vk_ioctl(struct vhost_kernel *k, unsigned long req, void *arg, const char *name,
                    const char *detail)
{
    if (ioctl(k->fd, req, arg) == 0)
        return 0;
    int err = errno;
    if (detail[0])
        vk_err(k, "%s(%s): %s", name, detail, strerror(err));
    else
        vk_err(k, "%s: %s", name, strerror(err));
    return -err;
}

/* An ioctl on one ring: the detail is "ring N". */
static int vk_ring_ioctl(struct vhost_kernel *k, unsigned long req, void *arg, const char *name,
                         unsigned idx)
{
    char detail[24];
    snprintf(detail, sizeof(detail), "ring %u", idx);
    return vk_ioctl(k, req, arg, name, detail);
}

static void vk_free(struct vio_vhost *v)
{
    struct vhost_kernel *k = vk_of(v);
    if (k->fd >= 0)
        close(k->fd);
    free(k);
}

static int vk_get_features(struct vio_vhost *v, uint64_t *f)
{
    struct vhost_kernel *k = vk_of(v);
    uint64_t got = 0;
    int rc = vk_ioctl(k, VHOST_GET_FEATURES, &got, "VHOST_GET_FEATURES", "");
    if (rc)
        return rc;
    k->offered = got;
    k->have_offered = true;
    *f = got;
    return 0;
}

static int vk_set_features(struct vio_vhost *v, uint64_t f)
{
    struct vhost_kernel *k = vk_of(v);
    uint64_t offered;
    /* Ask once if the application did not; if even that fails, the kernel judges SET alone. */
    if (!k->have_offered)
        (void)vk_get_features(v, &offered);
    if (k->have_offered && (f & ~k->offered)) {
        vk_err(k, "VHOST_SET_FEATURES(%#llx): bits %#llx were not offered (offered %#llx)",
               (unsigned long long)f, (unsigned long long)(f & ~k->offered),
               (unsigned long long)k->offered);
        return -EINVAL;
    }
    char detail[24];
    snprintf(detail, sizeof(detail), "%#llx", (unsigned long long)f);
    return vk_ioctl(k, VHOST_SET_FEATURES, &f, "VHOST_SET_FEATURES", detail);
}

static int vk_get_backend_features(struct vio_vhost *v, uint64_t *f)
{
    struct vhost_kernel *k = vk_of(v);
    uint64_t got = 0;
    int rc = vk_ioctl(k, VHOST_GET_BACKEND_FEATURES, &got, "VHOST_GET_BACKEND_FEATURES", "");
    if (rc == 0)
        *f = got;
    return rc;
}

static int vk_set_backend_features(struct vio_vhost *v, uint64_t f)
{
    struct vhost_kernel *k = vk_of(v);
    char detail[24];
    snprintf(detail, sizeof(detail), "%#llx", (unsigned long long)f);
    int rc = vk_ioctl(k, VHOST_SET_BACKEND_FEATURES, &f, "VHOST_SET_BACKEND_FEATURES", detail);
    if (rc == 0)
        k->backend_features = f;
    return rc;
}

static int vk_set_owner(struct vio_vhost *v)
{
    return vk_ioctl(vk_of(v), VHOST_SET_OWNER, NULL, "VHOST_SET_OWNER", "");
}

static int vk_reset(struct vio_vhost *v)
{
    struct vhost_kernel *k = vk_of(v);
    int rc = vk_ioctl(k, VHOST_RESET_OWNER, NULL, "VHOST_RESET_OWNER", "");
    if (rc == 0)
        k->backend_features = 0;
    return rc;
}

/* The checks the kernel leaves to us (it takes overlapping guest ranges as they come) or
 * answers with a bare errno: 1..VIO_VHOST_MAX_MEM_REGIONS regions, each non-empty and not
 * wrapping past 2^64 on either side, guest ranges pairwise disjoint. */
static int vk_check_mem(struct vhost_kernel *k, const struct vio_vhost_mem_region *r, unsigned n)
{
    if (n == 0 || n > VIO_VHOST_MAX_MEM_REGIONS) {
        vk_err(k, "VHOST_SET_MEM_TABLE: %u regions (1..%u)", n, VIO_VHOST_MAX_MEM_REGIONS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (r[i].size == 0) {
            vk_err(k, "VHOST_SET_MEM_TABLE: region %u is empty", i);
            return -EINVAL;
        }
        if (r[i].guest_addr + (r[i].size - 1) < r[i].guest_addr ||
            r[i].user_addr + (r[i].size - 1) < r[i].user_addr) {
            vk_err(k, "VHOST_SET_MEM_TABLE: region %u (gpa %#llx size %#llx uva %#llx) wraps",
                   i, (unsigned long long)r[i].guest_addr, (unsigned long long)r[i].size,
                   (unsigned long long)r[i].user_addr);
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            uint64_t a0 = r[i].guest_addr, a1 = a0 + (r[i].size - 1);
            uint64_t b0 = r[j].guest_addr, b1 = b0 + (r[j].size - 1);
            if (a0 <= b1 && b0 <= a1) {
                vk_err(k, "VHOST_SET_MEM_TABLE: regions %u and %u overlap in guest addresses "
                          "(%#llx..%#llx, %#llx..%#llx)",
                       j, i, (unsigned long long)b0, (unsigned long long)b1,
                       (unsigned long long)a0, (unsigned long long)a1);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int vk_set_mem_table(struct vio_vhost *v, const struct vio_vhost_mem_region *r, unsigned n)
{
    struct vhost_kernel *k = vk_of(v);
    int rc = vk_check_mem(k, r, n);
    if (rc)
        return rc;
    /* struct vhost_memory ends in a flexible array: room for the largest table we send. */
    union {
        struct vhost_memory mem;
        unsigned char bytes[sizeof(struct vhost_memory) +
                            VIO_VHOST_MAX_MEM_REGIONS * sizeof(struct vhost_memory_region)];
    } u;
    memset(&u, 0, sizeof(u));
    u.mem.nregions = n;
    for (unsigned i = 0; i < n; i++) {
        u.mem.regions[i].guest_phys_addr = r[i].guest_addr;
        u.mem.regions[i].memory_size = r[i].size;
        u.mem.regions[i].userspace_addr = r[i].user_addr;
        u.mem.regions[i].flags_padding = 0;
    }
    char detail[24];
    snprintf(detail, sizeof(detail), "%u region%s", n, n == 1 ? "" : "s");
    return vk_ioctl(k, VHOST_SET_MEM_TABLE, &u.mem, "VHOST_SET_MEM_TABLE", detail);
}

static int vk_set_log_base(struct vio_vhost *v, uint64_t user_addr, int fd, uint64_t size)
{
    (void)fd; /* the kernel writes the bitmap mapped at user_addr; fd and size are vhost-user's */
    (void)size;
    uint64_t base = user_addr;
    return vk_ioctl(vk_of(v), VHOST_SET_LOG_BASE, &base, "VHOST_SET_LOG_BASE", "");
}

static int vk_set_log_fd(struct vio_vhost *v, int fd)
{
    struct vhost_kernel *k = vk_of(v);
    if (fd < -1) {
        vk_err(k, "VHOST_SET_LOG_FD: bad fd %d", fd);
        return -EINVAL;
    }
    return vk_ioctl(k, VHOST_SET_LOG_FD, &fd, "VHOST_SET_LOG_FD", "");
}

static int vk_iotlb_update(struct vio_vhost *v, uint64_t iova, uint64_t size, uint64_t uaddr,
                           unsigned perm)
{
    struct vhost_kernel *k = vk_of(v);
    if (!(k->backend_features & (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2))) {
        vk_err(k, "IOTLB message: VHOST_BACKEND_F_IOTLB_MSG_V2 was not negotiated "
                  "(vio_vhost_set_backend_features())");
        return -ENOTSUP;
    }
    if (perm > VHOST_ACCESS_RW || size == 0 || iova + (size - 1) < iova ||
        (perm && uaddr + (size - 1) < uaddr)) {
        vk_err(k, "IOTLB %s: bad arguments (iova %#llx size %#llx uva %#llx perm %u)",
               perm ? "update" : "invalidate", (unsigned long long)iova,
               (unsigned long long)size, (unsigned long long)uaddr, perm);
        return -EINVAL;
    }
    struct vhost_msg_v2 msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = VHOST_IOTLB_MSG_V2;
    msg.iotlb.iova = iova;
    msg.iotlb.size = size;
    msg.iotlb.uaddr = perm ? uaddr : 0;
    msg.iotlb.perm = (uint8_t)perm;
    msg.iotlb.type = perm ? VHOST_IOTLB_UPDATE : VHOST_IOTLB_INVALIDATE;
    ssize_t n = write(k->fd, &msg, sizeof(msg));
    if (n == (ssize_t)sizeof(msg))
        return 0;
    int err = n < 0 ? errno : EIO;
    vk_err(k, "IOTLB %s(iova %#llx size %#llx): %s", perm ? "update" : "invalidate",
           (unsigned long long)iova, (unsigned long long)size,
           n < 0 ? strerror(err) : "short write");
    return -err;
}

static int vk_set_vring_num(struct vio_vhost *v, unsigned idx, unsigned num)
{
    struct vhost_kernel *k = vk_of(v);
    if (num == 0 || num > VK_MAX_RING_SIZE || (num & (num - 1))) {
        vk_err(k, "VHOST_SET_VRING_NUM(ring %u): size %u is not a power of 2 in 1..%u", idx, num,
               VK_MAX_RING_SIZE);
        return -EINVAL;
    }
    struct vhost_vring_state s = {.index = idx, .num = num};
    return vk_ring_ioctl(k, VHOST_SET_VRING_NUM, &s, "VHOST_SET_VRING_NUM", idx);
}

static int vk_set_vring_addr(struct vio_vhost *v, unsigned idx,
                             const struct vio_vhost_vring_addr *a)
{
    struct vhost_kernel *k = vk_of(v);
    /* Split-ring alignments (virtio 1.2, 2.7): descriptor table 16, avail 2, used 4. */
    if ((a->desc & 15) || (a->avail & 1) || (a->used & 3) || (a->log_guest_addr & 3) ||
        (a->flags & ~(unsigned)VIO_VHOST_VRING_F_LOG)) {
        vk_err(k, "VHOST_SET_VRING_ADDR(ring %u): misaligned or bad flags (desc %#llx avail "
                  "%#llx used %#llx log %#llx flags %#x)",
               idx, (unsigned long long)a->desc, (unsigned long long)a->avail,
               (unsigned long long)a->used, (unsigned long long)a->log_guest_addr, a->flags);
        return -EINVAL;
    }
    struct vhost_vring_addr va;
    memset(&va, 0, sizeof(va));
    va.index = idx;
    va.flags = (a->flags & VIO_VHOST_VRING_F_LOG) ? 1u << VHOST_VRING_F_LOG : 0;
    va.desc_user_addr = a->desc;
    va.avail_user_addr = a->avail;
    va.used_user_addr = a->used;
    va.log_guest_addr = a->log_guest_addr;
    return vk_ring_ioctl(k, VHOST_SET_VRING_ADDR, &va, "VHOST_SET_VRING_ADDR", idx);
}

static int vk_set_vring_base(struct vio_vhost *v, unsigned idx, unsigned base)
{
    struct vhost_kernel *k = vk_of(v);
    if (base > 0xffffu) {
        vk_err(k, "VHOST_SET_VRING_BASE(ring %u): base %u is not a 16-bit ring index", idx, base);
        return -EINVAL;
    }
    struct vhost_vring_state s = {.index = idx, .num = base};
    return vk_ring_ioctl(k, VHOST_SET_VRING_BASE, &s, "VHOST_SET_VRING_BASE", idx);
}

static int vk_get_vring_base(struct vio_vhost *v, unsigned idx, unsigned *base)
{
    struct vhost_vring_state s = {.index = idx, .num = 0};
    int rc = vk_ring_ioctl(vk_of(v), VHOST_GET_VRING_BASE, &s, "VHOST_GET_VRING_BASE", idx);
    if (rc == 0)
        *base = s.num;
    return rc;
}

/* KICK / CALL / ERR / NET_SET_BACKEND: a struct vhost_vring_file; -1 unbinds. */
static int vk_vring_file(struct vio_vhost *v, unsigned long req, const char *name, unsigned idx,
                         int fd)
{
    struct vhost_kernel *k = vk_of(v);
    if (fd < VHOST_FILE_UNBIND) {
        vk_err(k, "%s(ring %u): bad fd %d", name, idx, fd);
        return -EINVAL;
    }
    struct vhost_vring_file f = {.index = idx, .fd = fd};
    return vk_ring_ioctl(k, req, &f, name, idx);
}

static int vk_set_vring_kick(struct vio_vhost *v, unsigned idx, int fd)
{
    return vk_vring_file(v, VHOST_SET_VRING_KICK, "VHOST_SET_VRING_KICK", idx, fd);
}

static int vk_set_vring_call(struct vio_vhost *v, unsigned idx, int fd)
{
    return vk_vring_file(v, VHOST_SET_VRING_CALL, "VHOST_SET_VRING_CALL", idx, fd);
}

static int vk_set_vring_err(struct vio_vhost *v, unsigned idx, int fd)
{
    return vk_vring_file(v, VHOST_SET_VRING_ERR, "VHOST_SET_VRING_ERR", idx, fd);
}

/* The kernel has no per-ring enable: a vhost-net ring runs from VHOST_NET_SET_BACKEND with a
 * tap fd until it is detached with -1 (vio_vhost_net_set_backend()). */
static int vk_set_vring_enable(struct vio_vhost *v, unsigned idx, bool enable)
{
    (void)v;
    (void)idx;
    (void)enable;
    return -ENOTSUP;
}

static int vk_net_set_backend(struct vio_vhost *v, unsigned idx, int fd)
{
    return vk_vring_file(v, VHOST_NET_SET_BACKEND, "VHOST_NET_SET_BACKEND", idx, fd);
}

static const struct vio_vhost_ops vk_ops = {
    .kind = VIO_VHOST_KERNEL,
    .free = vk_free,
    /* fd, handle, connected, reconnect: nothing to watch, always there, nothing to redo */
    .get_features = vk_get_features,
    .set_features = vk_set_features,
    .get_backend_features = vk_get_backend_features,
    .set_backend_features = vk_set_backend_features,
    .set_owner = vk_set_owner,
    .reset = vk_reset,
    .set_mem_table = vk_set_mem_table,
    .set_log_base = vk_set_log_base,
    .set_log_fd = vk_set_log_fd,
    .iotlb_update = vk_iotlb_update,
    .set_vring_num = vk_set_vring_num,
    .set_vring_addr = vk_set_vring_addr,
    .set_vring_base = vk_set_vring_base,
    .get_vring_base = vk_get_vring_base,
    .set_vring_kick = vk_set_vring_kick,
    .set_vring_call = vk_set_vring_call,
    .set_vring_err = vk_set_vring_err,
    .set_vring_enable = vk_set_vring_enable,
    .net_set_backend = vk_net_set_backend,
};

int vio_vhost_kernel_open(const struct vio_vhost_kernel_config *cfg, struct vio_vhost **out)
{
    if (!cfg || !out || cfg->struct_size < sizeof(*cfg))
        return -EINVAL;
    const char *path = cfg->path ? cfg->path : VK_DEFAULT_PATH;
    int fd = cfg->fd;
    if (fd < -1)
        return -EINVAL;
    if (fd < 0) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            const char *hint = "";
            if (err == ENOENT || err == ENODEV || err == ENXIO)
                hint = " (is the vhost_net module loaded? modprobe vhost_net)";
            else if (err == EACCES || err == EPERM)
                hint = " (needs read and write access to it: run as root, or give this user "
                       "the device's group, e.g. kvm)";
            vio_logf(cfg->log, cfg->log_opaque, VIO_LOG_ERROR, VK_OBJ, "open %s: %s%s", path,
                     strerror(err), hint);
            return -err;
        }
    }
    struct vhost_kernel *k = calloc(1, sizeof(*k));
    if (!k) {
        close(fd); /* ours, or taken over: closed either way as documented */
        return -ENOMEM;
    }
    k->base.ops = &vk_ops;
    k->base.log = cfg->log;
    k->base.log_opaque = cfg->log_opaque;
    k->fd = fd;
    snprintf(k->path, sizeof(k->path), "%s", cfg->fd >= 0 ? "(fd)" : path);
    vio_logf(cfg->log, cfg->log_opaque, VIO_LOG_INFO, VK_OBJ, "opened %s (fd %d)", k->path, fd);
    *out = &k->base;
    return 0;
}
