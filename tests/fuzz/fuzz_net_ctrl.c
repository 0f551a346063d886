/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-net control-queue command parser (vio_net_ctrl_exec() in
 * src/device/net.c), on a 4-pair device with a do-nothing backend.
 *
 * Input layout:
 *   byte 0       which control features the driver negotiated: bit 0 CTRL_RX, 1 CTRL_RX_EXTRA,
 *                2 CTRL_VLAN, 3 CTRL_MAC_ADDR, 4 MQ, 5 GUEST_ANNOUNCE (CTRL_VQ always)
 *   byte 1       how the command is cut into iovecs: each set bit k cuts after byte k+1 of
 *                the command; bit 7 additionally cuts every 6 bytes from byte 8 on
 *   rest         the device-readable part of the command: class, command, data
 *
 * Oracles (abort on violation):
 *   - the ack is VIRTIO_NET_OK or VIRTIO_NET_ERR and equals what an independent model of the
 *     spec's rules says (class/command known and negotiated, exact lengths, values in range,
 *     MAC table counts accounting for every byte);
 *   - a refused command changes nothing (filter and active pairs are compared);
 *   - an accepted MAC table holds exactly the announced entries (or sets the overflow flag
 *     beyond VIO_NET_MAC_TABLE_ENTRIES), an accepted VLAN / MQ / MAC / RX-mode command has
 *     exactly its effect.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_net.h>

#include "device/net_internal.h"
#include "virtio/net.h"
#include "virtio/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_net_ctrl: line %d: %s: ", __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define FB(b) ((uint64_t)1 << (b))
#define PAIRS 4u
#define MAXCMD 4096u

static uint64_t nb_features(void *o)
{
    (void)o;
    return 0;
}

static int nb_tx(void *o, unsigned qp, const struct vio_net_hdr *h, const struct iovec *iov,
                 unsigned n)
{
    (void)o, (void)qp, (void)h, (void)iov, (void)n;
    return 0;
}

static ssize_t nb_rx(void *o, unsigned qp, struct vio_net_hdr *h, const struct iovec *iov,
                     unsigned n)
{
    (void)o, (void)qp, (void)h, (void)iov, (void)n;
    return -EAGAIN;
}

static const struct vio_net_backend_ops nb_ops = {
    .name = "null", .features = nb_features, .tx = nb_tx, .rx = nb_rx};
static struct vio_net_backend nb = {.ops = &nb_ops, .queue_pairs = PAIRS};
static struct vio_net_dev *dev;

static bool has(uint64_t f, unsigned b)
{
    return (f >> b) & 1;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

/* The spec's rules, written independently of the device's parser. */
static uint8_t model(uint64_t f, const uint8_t *c, size_t len)
{
    if (len < 2)
        return VIRTIO_NET_ERR;
    const uint8_t *d = c + 2;
    size_t n = len - 2;
    switch (c[0]) {
    case VIRTIO_NET_CTRL_RX:
        if (c[1] > VIRTIO_NET_CTRL_RX_NOBCAST || !has(f, VIO_NET_F_CTRL_RX))
            return VIRTIO_NET_ERR;
        if (c[1] >= VIRTIO_NET_CTRL_RX_ALLUNI && !has(f, VIO_NET_F_CTRL_RX_EXTRA))
            return VIRTIO_NET_ERR;
        return n == 1 && d[0] <= 1 ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
    case VIRTIO_NET_CTRL_MAC:
        if (c[1] == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
            if (!has(f, VIO_NET_F_CTRL_MAC_ADDR) || n != 6 || (d[0] & 1))
                return VIRTIO_NET_ERR;
            return (d[0] | d[1] | d[2] | d[3] | d[4] | d[5]) ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
        }
        if (c[1] != VIRTIO_NET_CTRL_MAC_TABLE_SET || !has(f, VIO_NET_F_CTRL_RX) || n < 8)
            return VIRTIO_NET_ERR;
        {
            uint64_t nu = rd32(d);
            if (4 + 6 * nu + 4 > n)
                return VIRTIO_NET_ERR;
            uint64_t nm = rd32(d + 4 + 6 * nu);
            return 4 + 6 * nu + 4 + 6 * nm == n ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
        }
    case VIRTIO_NET_CTRL_VLAN:
        if (!has(f, VIO_NET_F_CTRL_VLAN) || c[1] > VIRTIO_NET_CTRL_VLAN_DEL || n != 2)
            return VIRTIO_NET_ERR;
        return (d[0] | d[1] << 8) < 4096 ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
    case VIRTIO_NET_CTRL_ANNOUNCE:
        return has(f, VIO_NET_F_GUEST_ANNOUNCE) && c[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK && n == 0
                   ? VIRTIO_NET_OK
                   : VIRTIO_NET_ERR;
    case VIRTIO_NET_CTRL_MQ: {
        if (!has(f, VIO_NET_F_MQ) || c[1] != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || n != 2)
            return VIRTIO_NET_ERR;
        unsigned p = d[0] | d[1] << 8;
        return p >= 1 && p <= PAIRS ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
    }
    default: return VIRTIO_NET_ERR;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dev) {
        struct vio_net_dev_config cfg = {.struct_size = sizeof(cfg), .backend = &nb,
                                         .mac_valid = true, .mac = {0x52, 0x54, 0, 1, 2, 3}};
        CHECK(vio_net_dev_new(&cfg, &dev) == 0, "device");
    }
    if (size < 2)
        return 0;
    struct vio_device *vd = vio_net_dev_device(dev);
    static const unsigned sel[] = {VIO_NET_F_CTRL_RX, VIO_NET_F_CTRL_RX_EXTRA, VIO_NET_F_CTRL_VLAN,
                                   VIO_NET_F_CTRL_MAC_ADDR, VIO_NET_F_MQ, VIO_NET_F_GUEST_ANNOUNCE};
    uint64_t f = FB(VIO_F_VERSION_1) | FB(VIO_NET_F_CTRL_VQ);
    for (unsigned k = 0; k < 6; k++)
        if (data[0] & (1u << k))
            f |= FB(sel[k]);
    vio_device_reset(vd);
    CHECK(vio_device_set_features(vd, f) == 0, "features 0x%llx", (unsigned long long)f);

    const uint8_t *cmd = data + 2;
    size_t len = size - 2;
    if (len > MAXCMD)
        len = MAXCMD;
    /* Private copy: the parser must not depend on iovec boundaries. */
    static uint8_t copy[MAXCMD];
    memcpy(copy, cmd, len);
    struct iovec iov[MAXCMD / 6 + 16];
    unsigned n = 0;
    size_t start = 0;
    for (size_t pos = 1; pos < len; pos++) {
        bool cut = (pos <= 7 && (data[1] & (1u << (pos - 1)))) ||
                   ((data[1] & 0x80) && pos >= 8 && pos % 6 == 2);
        if (cut) {
            iov[n++] = (struct iovec){copy + start, pos - start};
            start = pos;
        }
    }
    if (len > start)
        iov[n++] = (struct iovec){copy + start, len - start};

    static struct vio_net_rx_filter before, after;
    vio_net_dev_get_rx_filter(dev, &before);
    unsigned pairs0 = vio_net_dev_active_pairs(dev);
    uint8_t ack = vio_net_ctrl_exec(dev, iov, n, len);
    uint8_t want = model(f, cmd, len);
    CHECK(ack == want, "ack %u, model %u (class %u cmd %u len %zu)", ack, want,
          len ? cmd[0] : 0, len > 1 ? cmd[1] : 0, len);
    vio_net_dev_get_rx_filter(dev, &after);
    unsigned pairs1 = vio_net_dev_active_pairs(dev);
    CHECK(after.n_uni <= VIO_NET_MAC_TABLE_ENTRIES && after.n_multi <= VIO_NET_MAC_TABLE_ENTRIES,
          "table sizes %u %u", after.n_uni, after.n_multi);
    CHECK(pairs1 >= 1 && pairs1 <= PAIRS, "pairs %u", pairs1);
    if (ack != VIRTIO_NET_OK) {
        CHECK(memcmp(&before, &after, sizeof(before)) == 0, "refused command changed the filter");
        CHECK(pairs0 == pairs1, "refused command changed the pairs");
        return 0;
    }
    const uint8_t *d = cmd + 2;
    switch (cmd[0]) {
    case VIRTIO_NET_CTRL_MAC:
        if (cmd[1] == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
            CHECK(memcmp(after.mac, d, 6) == 0, "mac not set");
            uint8_t cfgmac[6];
            CHECK(vio_device_config_read(vd, 0, cfgmac, 6) == 0, "config read");
            CHECK(memcmp(cfgmac, d, 6) == 0, "config mac not set");
        } else {
            uint32_t nu = rd32(d), nm = rd32(d + 4 + 6 * (size_t)nu);
            if (nu <= VIO_NET_MAC_TABLE_ENTRIES) {
                CHECK(after.n_uni == nu && !(after.flags & VIO_NET_FILTER_UNI_OVERFLOW), "uni");
                CHECK(memcmp(after.uni, d + 4, 6 * (size_t)nu) == 0, "uni entries");
            } else {
                CHECK(after.flags & VIO_NET_FILTER_UNI_OVERFLOW, "uni overflow");
            }
            if (nm <= VIO_NET_MAC_TABLE_ENTRIES) {
                CHECK(after.n_multi == nm && !(after.flags & VIO_NET_FILTER_MULTI_OVERFLOW), "mc");
                CHECK(memcmp(after.multi, d + 8 + 6 * (size_t)nu, 6 * (size_t)nm) == 0, "mc ent");
            } else {
                CHECK(after.flags & VIO_NET_FILTER_MULTI_OVERFLOW, "multi overflow");
            }
        }
        break;
    case VIRTIO_NET_CTRL_VLAN: {
        unsigned vid = d[0] | d[1] << 8;
        bool set = after.vlans[vid / 32] & (1u << (vid % 32));
        CHECK(set == (cmd[1] == VIRTIO_NET_CTRL_VLAN_ADD), "vlan %u", vid);
        break;
    }
    case VIRTIO_NET_CTRL_MQ: CHECK(pairs1 == (unsigned)(d[0] | d[1] << 8), "pairs"); break;
    case VIRTIO_NET_CTRL_RX: {
        static const uint32_t bits[] = {VIO_NET_FILTER_PROMISC, VIO_NET_FILTER_ALLMULTI,
                                        VIO_NET_FILTER_ALLUNI,  VIO_NET_FILTER_NOMULTI,
                                        VIO_NET_FILTER_NOUNI,   VIO_NET_FILTER_NOBCAST};
        CHECK(!!(after.flags & bits[cmd[1]]) == (d[0] == 1), "rx mode");
        CHECK((after.flags & ~bits[cmd[1]]) == (before.flags & ~bits[cmd[1]]), "other flags");
        break;
    }
    default: break;
    }
    return 0;
}
