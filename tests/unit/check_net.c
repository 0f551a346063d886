/* SPDX-License-Identifier: MIT */
/*
 * Suite "net": the virtio-net device model (src/device/net.c) and the generic device interface
 * (src/device/device.c), driven by the core driver side acting as the guest and a fake backend.
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_net.h>

#include "device/net_internal.h"
#include "net_env.h"
#include "virtio/status.h"

static struct env E;

#define FB(b) ((uint64_t)1 << (b))
#define ALL_OFFLOADS                                                                              \
    (FB(VIO_NET_F_CSUM) | FB(VIO_NET_F_GUEST_CSUM) | FB(VIO_NET_F_HOST_TSO4) |                    \
     FB(VIO_NET_F_HOST_TSO6) | FB(VIO_NET_F_GUEST_TSO4) | FB(VIO_NET_F_GUEST_TSO6) |              \
     FB(VIO_NET_F_HOST_ECN) | FB(VIO_NET_F_GUEST_ECN) | FB(VIO_NET_F_HOST_UFO) |                  \
     FB(VIO_NET_F_GUEST_UFO) | FB(VIO_NET_F_HOST_USO))
#define TX_OFFLOADS                                                                               \
    (FB(VIO_NET_F_CSUM) | FB(VIO_NET_F_HOST_TSO4) | FB(VIO_NET_F_HOST_TSO6) |                     \
     FB(VIO_NET_F_HOST_ECN) | FB(VIO_NET_F_HOST_UFO) | FB(VIO_NET_F_HOST_USO))

static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t OTHER[6] = {0x52, 0x54, 0x00, 0x99, 0x99, 0x99};
static const uint8_t MCAST1[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
static const uint8_t MCAST2[6] = {0x33, 0x33, 0x00, 0x00, 0x00, 0x02};

static struct vio_net_hdr mkhdr(uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
                                uint16_t cs, uint16_t co)
{
    struct vio_net_hdr h = {
        .flags = flags,
        .gso_type = gso,
        .hdr_len = htole16(hdr_len),
        .gso_size = htole16(gso_size),
        .csum_start = htole16(cs),
        .csum_offset = htole16(co),
    };
    return h;
}

/* ------------------------------------------------------------------------ */
/* Header validation table                                                   */

struct hdr_case {
    const char *name;
    uint8_t flags, gso;
    uint16_t hdr_len, gso_size, cs, co;
    size_t frame_len;
    uint64_t features;
    int expect;
};

#define NC VIO_NET_HDR_F_NEEDS_CSUM
#define ECN VIO_NET_HDR_GSO_ECN
static const struct hdr_case hdr_cases[] = {
    /* bad */
    {"frame-empty", 0, 0, 0, 0, 0, 0, 0, TX_OFFLOADS, -EMSGSIZE},
    {"frame-13", 0, 0, 0, 0, 0, 0, 13, TX_OFFLOADS, -EMSGSIZE},
    {"frame-over-max", 0, 0, 0, 0, 0, 0, VIO_NET_MAX_FRAME_LEN + 1, TX_OFFLOADS, -EMSGSIZE},
    {"frame-huge", 0, 0, 0, 0, 0, 0, (size_t)1 << 40, TX_OFFLOADS, -EMSGSIZE},
    {"gso-unknown-2", NC, 2, 54, 1448, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"gso-unknown-6", NC, 6, 54, 1448, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"gso-unknown-7f", NC, 0x7f, 54, 1448, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"gso-unknown-ecn", NC, ECN | 2, 54, 1448, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"tso4-not-negotiated", NC, VIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16, 2000,
     TX_OFFLOADS & ~FB(VIO_NET_F_HOST_TSO4), -EPROTO},
    {"tso6-not-negotiated", NC, VIO_NET_HDR_GSO_TCPV6, 74, 1428, 54, 16, 2000,
     TX_OFFLOADS & ~FB(VIO_NET_F_HOST_TSO6), -EPROTO},
    {"ufo-not-negotiated", NC, VIO_NET_HDR_GSO_UDP, 42, 1472, 34, 6, 2000,
     TX_OFFLOADS & ~FB(VIO_NET_F_HOST_UFO), -EPROTO},
    {"uso-not-negotiated", NC, VIO_NET_HDR_GSO_UDP_L4, 42, 1472, 34, 6, 2000,
     TX_OFFLOADS & ~FB(VIO_NET_F_HOST_USO), -EPROTO},
    {"gso-no-features", NC, VIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16, 2000, 0, -EPROTO},
    {"ecn-not-negotiated", NC, ECN | VIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16, 2000,
     TX_OFFLOADS & ~FB(VIO_NET_F_HOST_ECN), -EPROTO},
    {"ecn-without-gso", NC, ECN, 0, 0, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"ecn-on-udp", NC, ECN | VIO_NET_HDR_GSO_UDP, 42, 1472, 34, 6, 2000, TX_OFFLOADS, -EINVAL},
    {"ecn-on-uso", NC, ECN | VIO_NET_HDR_GSO_UDP_L4, 42, 1472, 34, 6, 2000, TX_OFFLOADS,
     -EINVAL},
    {"needs-csum-without-csum", NC, 0, 0, 0, 34, 16, 100, 0, -EPROTO},
    {"gso-without-needs-csum", 0, VIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16, 2000, TX_OFFLOADS,
     -EINVAL},
    {"gso-size-zero", NC, VIO_NET_HDR_GSO_TCPV4, 54, 0, 34, 16, 2000, TX_OFFLOADS, -EINVAL},
    {"csum-start-outside", NC, 0, 0, 0, 100, 0, 100, TX_OFFLOADS, -EINVAL},
    {"csum-field-one-past", NC, 0, 0, 0, 34, 16, 51, TX_OFFLOADS, -EINVAL},
    {"csum-offset-outside", NC, 0, 0, 0, 34, 200, 100, TX_OFFLOADS, -EINVAL},
    {"csum-both-max", NC, 0, 0, 0, 0xffff, 0xffff, VIO_NET_MAX_FRAME_LEN, TX_OFFLOADS, -EINVAL},
    {"hdr-len-over-frame", 0, 0, 61, 0, 0, 0, 60, TX_OFFLOADS, -EINVAL},
    {"hdr-len-over-frame-gso", NC, VIO_NET_HDR_GSO_TCPV4, 2001, 1448, 34, 16, 2000, TX_OFFLOADS,
     -EINVAL},
    /* good */
    {"plain-min", 0, 0, 0, 0, 0, 0, 14, 0, 0},
    {"plain-1514", 0, 0, 0, 0, 0, 0, 1514, 0, 0},
    {"plain-max", 0, 0, 0, 0, 0, 0, VIO_NET_MAX_FRAME_LEN, 0, 0},
    {"csum-ok", NC, 0, 0, 0, 34, 16, 100, FB(VIO_NET_F_CSUM), 0},
    {"csum-field-at-end", NC, 0, 0, 0, 34, 16, 52, FB(VIO_NET_F_CSUM), 0},
    {"tso4", NC, VIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16, 30000, TX_OFFLOADS, 0},
    {"tso6", NC, VIO_NET_HDR_GSO_TCPV6, 86, 1428, 54, 16, 65000, TX_OFFLOADS, 0},
    {"tso4-ecn", NC, ECN | VIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16, 9000, TX_OFFLOADS, 0},
    {"tso6-ecn", NC, ECN | VIO_NET_HDR_GSO_TCPV6, 86, 1428, 54, 16, 9000, TX_OFFLOADS, 0},
    {"ufo", NC, VIO_NET_HDR_GSO_UDP, 42, 1472, 34, 6, 9000, TX_OFFLOADS, 0},
    {"uso", NC, VIO_NET_HDR_GSO_UDP_L4, 42, 1472, 34, 6, 9000, TX_OFFLOADS, 0},
    {"data-valid-ignored", VIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0, 60, 0, 0},
    {"unknown-flags-ignored", 0xf8, 0, 0, 0, 0xffff, 0xffff, 60, 0, 0},
    {"hdr-len-equals-frame", 0, 0, 60, 0, 0, 0, 60, 0, 0},
    {"csum-fields-ignored-without-flag", 0, 0, 0, 0, 5000, 5000, 60, 0, 0},
};

START_TEST(hdr_check_table)
{
    const struct hdr_case *c = &hdr_cases[_i];
    struct vio_net_hdr h = mkhdr(c->flags, c->gso, c->hdr_len, c->gso_size, c->cs, c->co);
    h.num_buffers = htole16(7); /* ignored on TX */
    int r = vio_net_hdr_check(&h, c->frame_len, c->features | FB(VIO_F_VERSION_1));
    ck_assert_msg(r == c->expect, "%s: got %d, want %d", c->name, r, c->expect);
}
END_TEST

START_TEST(hdr_check_null)
{
    ck_assert_int_eq(vio_net_hdr_check(NULL, 60, 0), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Feature offer, config space, generic interface                            */

START_TEST(offer_follows_backend)
{
    env_open(&E, NULL); /* backend without offloads */
    uint64_t f = vio_device_features(E.dev);
    ck_assert_uint_eq(vio_device_id(E.dev), VIO_DEVICE_ID_NET);
    ck_assert(vio_has_feature(f, VIO_F_VERSION_1));
    ck_assert(vio_has_feature(f, VIO_NET_F_MRG_RXBUF));
    ck_assert(vio_has_feature(f, VIO_NET_F_CTRL_VQ));
    ck_assert(vio_has_feature(f, VIO_NET_F_MAC));
    ck_assert(!vio_has_feature(f, VIO_NET_F_MQ)); /* one pair */
    ck_assert(!vio_has_feature(f, VIO_NET_F_MTU));
    ck_assert_uint_eq(f & ALL_OFFLOADS, 0);
    env_close(&E);

    struct env_opts o = {.be_features = ALL_OFFLOADS | FB(40), .pairs = 2, .mtu = 1500};
    env_open(&E, &o);
    f = vio_device_features(E.dev);
    ck_assert_uint_eq(f & ALL_OFFLOADS, ALL_OFFLOADS);
    ck_assert(!vio_has_feature(f, 40)); /* only offload bits are taken from the backend */
    ck_assert(vio_has_feature(f, VIO_NET_F_MQ));
    ck_assert(vio_has_feature(f, VIO_NET_F_MTU));
    ck_assert_uint_eq(vio_device_num_queues(E.dev), 5);
    ck_assert_uint_eq(E.fb.configured, E.feats); /* backend configured at FEATURES_OK */
    env_close(&E);
}
END_TEST

START_TEST(offer_trims_dependencies)
{
    /* the backend claims TSO without checksum offload: TSO (and ECN) must not be offered */
    struct fake_be fb = {.features = FB(VIO_NET_F_HOST_TSO4) | FB(VIO_NET_F_HOST_ECN) |
                                     FB(VIO_NET_F_GUEST_TSO4) | FB(VIO_NET_F_GUEST_CSUM)};
    (void)fb;
    struct env_opts o = {.be_features = FB(VIO_NET_F_HOST_TSO4) | FB(VIO_NET_F_HOST_ECN) |
                                        FB(VIO_NET_F_GUEST_TSO4) | FB(VIO_NET_F_GUEST_CSUM)};
    env_open(&E, &o);
    uint64_t f = vio_device_features(E.dev);
    ck_assert(!vio_has_feature(f, VIO_NET_F_HOST_TSO4));
    ck_assert(!vio_has_feature(f, VIO_NET_F_HOST_ECN));
    ck_assert(vio_has_feature(f, VIO_NET_F_GUEST_TSO4));
    ck_assert(vio_has_feature(f, VIO_NET_F_GUEST_CSUM));
    env_close(&E);
}
END_TEST

START_TEST(features_off_and_new_errors)
{
    struct fake_be fb = {0};
    struct vio_net_backend be = {.ops = NULL, .opaque = &fb, .queue_pairs = 2};
    struct vio_net_dev_config cfg = {.struct_size = sizeof(cfg), .backend = &be};
    struct vio_net_dev *d = NULL;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), -EINVAL); /* no ops */
    ck_assert_int_eq(vio_net_dev_new(NULL, &d), -EINVAL);
    /* borrow a working ops table from a real environment */
    env_open(&E, NULL);
    be.ops = E.be.ops;
    cfg.struct_size = 4;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), -EINVAL);
    cfg.struct_size = sizeof(cfg);
    cfg.mtu = 67;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), -EINVAL);
    cfg.mtu = 0;
    cfg.max_queue_pairs = 3; /* more than the backend has */
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), -EINVAL);
    cfg.max_queue_pairs = 0;
    cfg.queue_size = 100;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), -EINVAL);
    cfg.queue_size = 0;
    cfg.features_off = FB(VIO_NET_F_MRG_RXBUF) | FB(VIO_NET_F_CTRL_VQ) | FB(VIO_F_VERSION_1);
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), 0);
    uint64_t f = vio_device_features(vio_net_dev_device(d));
    ck_assert(!vio_has_feature(f, VIO_NET_F_MRG_RXBUF));
    ck_assert(!vio_has_feature(f, VIO_NET_F_CTRL_VQ));
    /* everything that needs the control queue went with it */
    ck_assert(!vio_has_feature(f, VIO_NET_F_CTRL_RX));
    ck_assert(!vio_has_feature(f, VIO_NET_F_MQ));
    ck_assert(!vio_has_feature(f, VIO_NET_F_GUEST_ANNOUNCE));
    ck_assert(vio_has_feature(f, VIO_F_VERSION_1)); /* cannot be switched off */
    ck_assert_uint_eq(vio_device_num_queues(vio_net_dev_device(d)), 4);
    vio_net_dev_free(d);
    vio_net_dev_free(NULL);
    env_close(&E);
}
END_TEST

/* vhost-user frontends keep the control queue and pass its features without CTRL_VQ. */
START_TEST(frontend_owns_ctrl_queue)
{
    env_open(&E, NULL);
    struct vio_net_dev_config cfg = {.struct_size = sizeof(cfg), .backend = &E.be,
                                     .max_queue_pairs = 1, .frontend_ctrl = true};
    struct vio_net_dev *d = NULL;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), 0);
    struct vio_device *dev = vio_net_dev_device(d);
    uint64_t off = vio_device_features(dev);
    ck_assert(vio_has_feature(off, VIO_NET_F_GUEST_ANNOUNCE));
    uint64_t f = off & ~FB(VIO_NET_F_CTRL_VQ);
    ck_assert(vio_has_feature(f, VIO_NET_F_CTRL_RX));
    ck_assert_int_eq(vio_device_set_features(dev, f), 0); /* refused without frontend_ctrl */
    ck_assert_uint_eq(vio_net_dev_features(d), f);
    vio_net_dev_free(d);
    env_close(&E);
}
END_TEST

/* The vhost-user transport says at bind that its frontend keeps the control queue
 * (VIO_DEVICE_BIND_FRONTEND_CTRL): the offer and the queue roles follow before negotiation,
 * and an unbind restores the configured behaviour. */
START_TEST(bind_flag_frontend_ctrl)
{
    env_open(&E, &(struct env_opts){.pairs = 2});
    struct vio_net_dev_config cfg = {.struct_size = sizeof(cfg), .backend = &E.be,
                                     .max_queue_pairs = 2,
                                     .features_off = FB(VIO_NET_F_CTRL_VQ)};
    struct vio_net_dev *d = NULL;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), 0);
    struct vio_device *dev = vio_net_dev_device(d);
    const uint64_t ctrl_deps = FB(VIO_NET_F_CTRL_RX) | FB(VIO_NET_F_CTRL_RX_EXTRA) |
                               FB(VIO_NET_F_CTRL_VLAN) | FB(VIO_NET_F_CTRL_MAC_ADDR) |
                               FB(VIO_NET_F_GUEST_ANNOUNCE) | FB(VIO_NET_F_MQ);
    struct vio_device_queue_info qi;

    /* without the flag: nothing that needs the control queue, one pair's layout */
    uint64_t plain = vio_device_features(dev);
    ck_assert_uint_eq(plain & (ctrl_deps | FB(VIO_NET_F_CTRL_VQ)), 0);
    ck_assert_int_eq(vio_device_queue_info(dev, 1, &qi), 0);
    ck_assert_int_eq(vio_device_queue_info(dev, 2, &qi), -ERANGE);

    struct vio_device_hooks h = {.struct_size = sizeof(h), .flags = VIO_DEVICE_BIND_FRONTEND_CTRL};
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    uint64_t fe = vio_device_features(dev);
    ck_assert_uint_eq(fe, plain | ctrl_deps); /* exactly the control-queue features come back */
    ck_assert(!vio_has_feature(fe, VIO_NET_F_CTRL_VQ));
    /* MQ is offered: the second pair's queues exist, still no control queue */
    ck_assert_int_eq(vio_device_queue_info(dev, 2, &qi), 0);
    ck_assert_str_eq(qi.name, "rx1");
    ck_assert_int_eq(qi.dir, VIO_QUEUE_DIR_IN_ONLY);
    ck_assert_int_eq(vio_device_queue_info(dev, 3, &qi), 0);
    ck_assert_str_eq(qi.name, "tx1");
    ck_assert_int_eq(vio_device_queue_info(dev, 4, &qi), -ERANGE);
    /* the frontend negotiates MQ without CTRL_VQ: every pair is active */
    ck_assert_int_eq(vio_device_set_features(dev, fe), 0);
    ck_assert_uint_eq(vio_net_dev_active_pairs(d), 2);
    vio_device_reset(dev);

    /* unbound: back to the configured behaviour */
    ck_assert_int_eq(vio_device_bind(dev, NULL), 0);
    ck_assert_uint_eq(vio_device_features(dev), plain);
    ck_assert_int_eq(vio_device_queue_info(dev, 2, &qi), -ERANGE);
    ck_assert_int_eq(vio_device_set_features(dev, fe), -ENOTSUP);
    /* a bind without the flag changes nothing */
    h.flags = 0;
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    ck_assert_uint_eq(vio_device_features(dev), plain);
    vio_net_dev_free(d);

    /* with CTRL_VQ offered the offer stays; the flag makes CTRL_VQ optional for the driver */
    cfg.features_off = 0;
    ck_assert_int_eq(vio_net_dev_new(&cfg, &d), 0);
    dev = vio_net_dev_device(d);
    uint64_t off = vio_device_features(dev);
    ck_assert(vio_has_feature(off, VIO_NET_F_CTRL_VQ));
    ck_assert_int_eq(vio_device_set_features(dev, off & ~FB(VIO_NET_F_CTRL_VQ)), -ENOTSUP);
    vio_device_reset(dev);
    h.flags = VIO_DEVICE_BIND_FRONTEND_CTRL;
    ck_assert_int_eq(vio_device_bind(dev, &h), 0);
    ck_assert_uint_eq(vio_device_features(dev), off);
    ck_assert_int_eq(vio_device_queue_info(dev, 4, &qi), 0);
    ck_assert_str_eq(qi.name, "ctrl");
    ck_assert_int_eq(vio_device_set_features(dev, off & ~FB(VIO_NET_F_CTRL_VQ)), 0);
    vio_net_dev_free(d);
    env_close(&E);
}
END_TEST

/* GET_QUEUE_NUM counts queue pairs for virtio-net frontends; num_queues counts every queue. */
START_TEST(frontend_queue_num_is_pairs)
{
    static const struct {
        unsigned pairs;
        uint64_t off;
        unsigned num_queues;
    } t[] = {
        {1, 0, 3},
        {2, 0, 5},
        {4, 0, 9},
        {2, FB(VIO_NET_F_CTRL_VQ), 4},
    };
    for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        env_open(&E, &(struct env_opts){.pairs = 4});
        struct vio_net_dev_config cfg = {.struct_size = sizeof(cfg), .backend = &E.be,
                                         .max_queue_pairs = (uint16_t)t[i].pairs,
                                         .features_off = t[i].off};
        struct vio_net_dev *d = NULL;
        ck_assert_int_eq(vio_net_dev_new(&cfg, &d), 0);
        struct vio_device *dev = vio_net_dev_device(d);
        ck_assert_uint_eq(vio_device_frontend_queue_num(dev), t[i].pairs);
        ck_assert_uint_eq(vio_device_num_queues(dev), t[i].num_queues);
        vio_net_dev_free(d);
        env_close(&E);
    }
    ck_assert_uint_eq(vio_device_frontend_queue_num(NULL), 0);
}
END_TEST

START_TEST(set_features_refusals)
{
    env_open(&E, NULL);
    for (unsigned i = 0; i < E.nq; i++) /* features are set with the queues stopped */
        vio_device_queue_stop(E.dev, i);
    uint64_t off = vio_device_features(E.dev);
    ck_assert_int_eq(vio_device_set_features(E.dev, off | FB(VIO_NET_F_HOST_TSO4)), -ENOTSUP);
    /* a legacy driver is let in only with MRG_RXBUF (the same 12-byte header) */
    ck_assert_int_eq(vio_device_set_features(E.dev,
                                             off & ~(FB(VIO_F_VERSION_1) | FB(VIO_NET_F_MRG_RXBUF))),
                     -ENOTSUP);
    /* CTRL_RX without CTRL_VQ breaks a spec dependency */
    ck_assert_int_eq(vio_device_set_features(E.dev, off & ~FB(VIO_NET_F_CTRL_VQ)), -ENOTSUP);
    ck_assert_uint_eq(vio_net_dev_features(E.nd), E.feats); /* unchanged */
    env_close(&E);

    struct env_opts o = {.be_features = ALL_OFFLOADS};
    env_open(&E, &o);
    for (unsigned i = 0; i < E.nq; i++)
        vio_device_queue_stop(E.dev, i);
    off = vio_device_features(E.dev);
    ck_assert_int_eq(vio_device_set_features(E.dev, off & ~FB(VIO_NET_F_GUEST_CSUM)), -ENOTSUP);
    ck_assert_int_eq(vio_device_set_features(E.dev, off & ~FB(VIO_NET_F_CSUM)), -ENOTSUP);
    uint64_t ok = off & ~(FB(VIO_NET_F_HOST_TSO4) | FB(VIO_NET_F_HOST_TSO6));
    /* HOST_ECN needs a HOST_TSO */
    ck_assert_int_eq(vio_device_set_features(E.dev, ok), -ENOTSUP);
    ck_assert_int_eq(vio_device_set_features(E.dev, ok & ~FB(VIO_NET_F_HOST_ECN)), 0);
    env_close(&E);
}
END_TEST

START_TEST(config_space)
{
    struct env_opts o = {.pairs = 2, .mtu = 9000};
    env_open(&E, &o);
    uint32_t size = vio_device_config_size(E.dev);
    ck_assert_uint_eq(size, 12);
    uint8_t cfg[12];
    ck_assert_int_eq(vio_device_config_read(E.dev, 0, cfg, size), 0);
    ck_assert_mem_eq(cfg, ENV_MAC, 6);
    ck_assert_uint_eq(cfg[6] | cfg[7] << 8, VIO_NET_S_LINK_UP);
    ck_assert_uint_eq(cfg[8] | cfg[9] << 8, 2);
    ck_assert_uint_eq(cfg[10] | cfg[11] << 8, 9000);
    uint8_t b;
    ck_assert_int_eq(vio_device_config_read(E.dev, 11, &b, 1), 0);
    ck_assert_uint_eq(b, 9000 >> 8);
    ck_assert_int_eq(vio_device_config_read(E.dev, 12, &b, 1), -ERANGE);
    ck_assert_int_eq(vio_device_config_read(E.dev, 11, cfg, 2), -ERANGE);
    ck_assert_int_eq(vio_device_config_read(E.dev, 0xffffffffu, cfg, 2), -ERANGE);
    ck_assert_int_eq(vio_device_config_read(E.dev, 4, cfg, 0xfffffffeu), -ERANGE);
    ck_assert_int_eq(vio_device_config_read(E.dev, 0, NULL, 1), -EINVAL);
    ck_assert_int_eq(vio_device_config_read(NULL, 0, cfg, 1), -EINVAL);
    ck_assert_int_eq(vio_device_config_write(E.dev, 0, cfg, 6), -EPERM);
    ck_assert_int_eq(vio_device_config_write(E.dev, 12, cfg, 1), -ERANGE);

    /* link changes bump the generation and raise config_changed (STATUS negotiated) */
    uint32_t g0 = vio_device_config_generation(E.dev);
    ck_assert_int_eq(vio_net_dev_set_link(E.nd, false), 0);
    ck_assert_uint_ne(vio_device_config_generation(E.dev), g0);
    ck_assert_uint_eq(E.hk.cfg_changed, 1);
    ck_assert_int_eq(vio_device_config_read(E.dev, 6, cfg, 2), 0);
    ck_assert_uint_eq(cfg[0], 0);
    ck_assert_int_eq(vio_net_dev_set_link(E.nd, false), 0); /* no change, no interrupt */
    ck_assert_uint_eq(E.hk.cfg_changed, 1);
    ck_assert_int_eq(vio_net_dev_set_link(E.nd, true), 0);
    ck_assert_uint_eq(E.hk.cfg_changed, 2);

    /* announce: bit set, interrupt; the driver's ack clears it */
    ck_assert_int_eq(vio_net_dev_announce(E.nd), 0);
    ck_assert_uint_eq(E.hk.cfg_changed, 3);
    ck_assert_int_eq(vio_device_config_read(E.dev, 6, cfg, 2), 0);
    ck_assert_uint_eq(cfg[0], VIO_NET_S_LINK_UP | VIO_NET_S_ANNOUNCE);
    uint32_t g1 = vio_device_config_generation(E.dev);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
                      VIRTIO_NET_OK);
    ck_assert_int_eq(vio_device_config_read(E.dev, 6, cfg, 2), 0);
    ck_assert_uint_eq(cfg[0], VIO_NET_S_LINK_UP);
    ck_assert_uint_ne(vio_device_config_generation(E.dev), g1);
    env_close(&E);

    /* without GUEST_ANNOUNCE negotiated there is nothing to announce */
    struct env_opts o2 = {.refuse = FB(VIO_NET_F_GUEST_ANNOUNCE)};
    env_open(&E, &o2);
    ck_assert_int_eq(vio_net_dev_announce(E.nd), -ENOTSUP);
    env_close(&E);
}
END_TEST

START_TEST(queue_layout)
{
    struct env_opts o = {.pairs = 3};
    env_open(&E, &o);
    struct vio_device_queue_info qi;
    ck_assert_uint_eq(vio_device_num_queues(E.dev), 7);
    ck_assert_int_eq(vio_device_queue_info(E.dev, 0, &qi), 0);
    ck_assert_int_eq(qi.dir, VIO_QUEUE_DIR_IN_ONLY);
    ck_assert_str_eq(qi.name, "rx0");
    ck_assert_uint_eq(qi.max_size, 256);
    ck_assert_int_eq(vio_device_queue_info(E.dev, 5, &qi), 0);
    ck_assert_int_eq(qi.dir, VIO_QUEUE_DIR_OUT_ONLY);
    ck_assert_str_eq(qi.name, "tx2");
    ck_assert_int_eq(vio_device_queue_info(E.dev, 6, &qi), 0);
    ck_assert_int_eq(qi.dir, VIO_QUEUE_DIR_ANY);
    ck_assert_str_eq(qi.name, "ctrl");
    ck_assert_uint_eq(qi.max_size, 64);
    ck_assert_int_eq(vio_device_queue_info(E.dev, 7, &qi), -ERANGE);
    ck_assert_int_eq(vio_device_queue_info(E.dev, 0, NULL), -EINVAL);
    /* a queue cannot be started twice */
    ck_assert_int_eq(vio_device_queue_start(E.dev, 0, E.q[0]), -EBUSY);
    ck_assert_int_eq(vio_device_queue_notify(E.dev, 99), -ERANGE);
    env_close(&E);

    /* without MQ the control queue is queue 2 whatever the pair count */
    struct env_opts o2 = {.pairs = 3, .refuse = FB(VIO_NET_F_MQ)};
    env_open(&E, &o2);
    ck_assert_uint_eq(E.ctrl, 2);
    ck_assert_int_eq(vio_device_queue_info(E.dev, 2, &qi), 0);
    ck_assert_str_eq(qi.name, "ctrl");
    ck_assert_int_eq(vio_device_queue_info(E.dev, 3, &qi), -ERANGE);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC,
                                 (uint8_t[]){0}, 1),
                      VIRTIO_NET_OK);
    env_close(&E);
}
END_TEST

START_TEST(generic_wrappers_without_ops)
{
    static const struct vio_device_ops empty = {.name = "empty"};
    struct vio_device d = {.ops = &empty, .opaque = NULL};
    uint8_t b[4];
    struct vio_device_queue_info qi;
    ck_assert_uint_eq(vio_device_id(&d), 0);
    ck_assert_uint_eq(vio_device_features(&d), 0);
    ck_assert_uint_eq(vio_device_num_queues(&d), 0);
    ck_assert_int_eq(vio_device_config_read(&d, 0, b, 1), -ENOTSUP);
    ck_assert_int_eq(vio_device_config_write(&d, 0, b, 1), -ENOTSUP);
    ck_assert_int_eq(vio_device_queue_info(&d, 0, &qi), -ENOTSUP);
    ck_assert_int_eq(vio_device_set_features(&d, 0), -ENOTSUP);
    ck_assert_int_eq(vio_device_queue_notify(&d, 0), -ENOTSUP);
    ck_assert_int_eq(vio_device_bind(&d, NULL), -ENOTSUP);
    ck_assert_int_eq(vio_device_watches(&d, NULL, 0), 0);
    ck_assert_int_eq(vio_device_handle(&d, 0, 0), -ENOENT);
    vio_device_reset(&d);
    vio_device_queue_stop(&d, 0);
    ck_assert_int_eq(vio_device_bind(NULL, NULL), -EINVAL);
    ck_assert_int_eq(vio_device_queue_start(&d, 0, NULL), -EINVAL);
    struct vio_device_hooks h = {.struct_size = 4};
    d.ops = NULL;
    ck_assert_int_eq(vio_device_bind(&d, &h), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* TX                                                                        */

START_TEST(tx_frames_arrive_intact)
{
    struct env_opts o = {.be_features = ALL_OFFLOADS};
    env_open(&E, &o);
    static uint8_t frame[30000];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 1);
    /* header split 5 + 7, then the frame in odd pieces (ANY_LAYOUT) */
    const uint32_t cuts[] = {5, 7, 3, 1000, 17};
    struct vio_net_hdr h = mkhdr(NC | VIO_NET_HDR_F_DATA_VALID, VIO_NET_HDR_GSO_TCPV4, 66, 1448,
                                 34, 16);
    h.num_buffers = htole16(3);
    guest_tx(&E, 0, &h, frame, sizeof(frame), cuts, 5);
    /* a small plain one: header and frame in one descriptor */
    guest_tx(&E, 0, NULL, frame, 60, NULL, 0);
    /* header alone in its descriptor */
    const uint32_t c2[] = {12};
    guest_tx(&E, 0, NULL, frame, 1514, c2, 1);
    ck_assert_int_eq(guest_kick(&E, 1), 3);
    ck_assert_uint_eq(E.fb.ntx, 3);
    ck_assert_uint_eq(E.fb.tx[0].len, sizeof(frame));
    ck_assert_mem_eq(E.fb.tx[0].data, frame, sizeof(frame));
    ck_assert_uint_eq(E.fb.tx[0].hdr.gso_type, VIO_NET_HDR_GSO_TCPV4);
    ck_assert_uint_eq(E.fb.tx[0].hdr.flags, NC); /* DATA_VALID stripped */
    ck_assert_uint_eq(le16toh(E.fb.tx[0].hdr.gso_size), 1448);
    ck_assert_uint_eq(le16toh(E.fb.tx[0].hdr.csum_start), 34);
    ck_assert_uint_eq(le16toh(E.fb.tx[0].hdr.csum_offset), 16);
    ck_assert_uint_eq(E.fb.tx[0].hdr.num_buffers, 0);
    ck_assert_uint_eq(E.fb.tx[1].len, 60);
    ck_assert_mem_eq(E.fb.tx[1].data, frame, 60);
    ck_assert_uint_eq(E.fb.tx[2].len, 1514);
    ck_assert_mem_eq(E.fb.tx[2].data, frame, 1514);
    ck_assert_uint_eq(E.fb.tx[2].qp, 0);
    uint32_t lens[4];
    ck_assert_uint_eq(guest_reap(&E, 1, lens, 4), 3);
    ck_assert_uint_eq(lens[0] | lens[1] | lens[2], 0); /* TX used length is 0 */
    struct vio_net_queue_stats s = env_stats(&E, 1);
    ck_assert_uint_eq(s.packets, 3);
    ck_assert_uint_eq(s.bytes, sizeof(frame) + 60 + 1514);
    ck_assert_uint_ge(s.notifies, 1);
    ck_assert_uint_eq(E.hk.notify[1], s.notifies);
    /* kicking an empty queue does nothing */
    ck_assert_int_eq(guest_kick(&E, 1), 0);
    env_close(&E);
}
END_TEST

START_TEST(tx_bad_frames_dropped_queue_survives)
{
    struct env_opts o = {.be_features = FB(VIO_NET_F_CSUM)};
    env_open(&E, &o);
    static uint8_t frame[2000];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 2);
    struct vio_net_hdr tso = mkhdr(NC, VIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16);
    struct vio_net_hdr badcs = mkhdr(NC, 0, 0, 0, 1990, 16);
    struct vio_net_hdr unk = mkhdr(0, 9, 0, 0, 0, 0);
    guest_tx(&E, 0, &tso, frame, sizeof(frame), NULL, 0);   /* offload not negotiated */
    guest_tx(&E, 0, &badcs, frame, sizeof(frame), NULL, 0); /* checksum outside */
    guest_tx(&E, 0, &unk, frame, 100, NULL, 0);             /* unknown gso */
    guest_tx(&E, 0, NULL, frame, 10, NULL, 0);              /* runt */
    /* a chain shorter than the header */
    uint64_t gpa = arena_alloc(&E.a, 8, 16);
    struct vio_sg sg = {gpa, 8};
    E.bufs[1][E.nbufs[1]++] = (struct gbuf){gpa, 8};
    ck_assert_int_eq(vio_drvq_add(E.drv[1], &sg, 1, 0, (void *)(uintptr_t)E.nbufs[1]), 0);
    guest_tx(&E, 0, NULL, frame, 100, NULL, 0); /* good */
    ck_assert_int_eq(guest_kick(&E, 1), 6);
    ck_assert_uint_eq(E.fb.ntx, 1);
    ck_assert_uint_eq(E.fb.tx[0].len, 100);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 6);
    struct vio_net_queue_stats s = env_stats(&E, 1);
    ck_assert_uint_eq(s.packets, 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_HDR_OFFLOAD], 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_HDR_INVALID], 2);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_LENGTH], 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_SHORT_CHAIN], 1);
    ck_assert(!vio_queue_is_broken(E.q[1]));
    ck_assert_uint_eq(E.hk.needs_reset, 0);
    env_close(&E);
}
END_TEST

START_TEST(tx_backpressure_keeps_chain)
{
    env_open(&E, NULL);
    uint8_t frame[200];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 3);
    guest_tx(&E, 0, NULL, frame, 100, NULL, 0);
    guest_tx(&E, 0, NULL, frame, 200, NULL, 0);
    E.fb.tx_fail = -EAGAIN;
    E.fb.tx_fail_count = -1;
    ck_assert_int_eq(guest_kick(&E, 1), 0);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 0); /* nothing used: the chain waits */
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX)], VIO_WATCH_OUT);
    ck_assert_int_eq(E.hk.watch_fd[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX)], 200);
    struct vio_device_watch w[4];
    int nw = vio_device_watches(E.dev, w, 4);
    ck_assert_int_eq(nw, 2); /* rx readable + tx writable */
    ck_assert_uint_eq(env_stats(&E, 1).stalls, 1);
    /* still blocked: the fd fires, the backend is still full */
    ck_assert_int_eq(vio_device_handle(E.dev, VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX),
                                       VIO_WATCH_OUT),
                     0);
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX)], VIO_WATCH_OUT);
    E.fb.tx_fail = 0;
    ck_assert_int_eq(vio_device_handle(E.dev, VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX),
                                       VIO_WATCH_OUT),
                     2);
    ck_assert_uint_eq(E.fb.ntx, 2);
    ck_assert_uint_eq(E.fb.tx[0].len, 100); /* order kept */
    ck_assert_uint_eq(E.fb.tx[1].len, 200);
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_TX)], 0);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 2);
    ck_assert_int_eq(vio_device_watches(E.dev, w, 4), 1);
    ck_assert_int_eq(w[0].fd, 100);
    ck_assert_uint_eq(w[0].events, VIO_WATCH_IN);
    ck_assert_uint_eq(w[0].id, VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX));
    ck_assert_int_eq(vio_device_handle(E.dev, 77, VIO_WATCH_IN), -ENOENT);
    env_close(&E);
}
END_TEST

START_TEST(tx_budget)
{
    env_open(&E, NULL);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 4);
    for (int i = 0; i < 10; i++)
        guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 4), 4);
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 4), 4);
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 4), 2);
    ck_assert_uint_eq(E.fb.ntx, 10);
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 5, 0), -ERANGE);
    ck_assert_int_eq(vio_net_dev_tx_process(NULL, 0, 0), -EINVAL);
    env_close(&E);
}
END_TEST

/* vio_net_dev_process: both directions in one call, and every TX completion published when
 * it returns, also across the batch boundaries (32, 64) where the device defers a batch. */
START_TEST(process_publishes_both_directions)
{
    env_open(&E, NULL);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 4);
    static const unsigned ntx[] = {1, 31, 32, 33, 64, 70};
    unsigned sent = 0;
    for (unsigned t = 0; t < sizeof(ntx) / sizeof(ntx[0]); t++) {
        for (unsigned i = 0; i < ntx[t]; i++) {
            frame[99] = (uint8_t)(sent + i);
            guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
        }
        guest_post_rx(&E, 0, 3, 1526, 1);
        for (int i = 0; i < 3; i++)
            fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
        int trc = -99, rrc = -99;
        ck_assert_int_eq(vio_net_dev_process(E.nd, 0, 0, &trc, &rrc), (int)ntx[t] + 3);
        ck_assert_int_eq(trc, (int)ntx[t]);
        ck_assert_int_eq(rrc, 3);
        ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), ntx[t]); /* nothing left unpublished */
        ck_assert_uint_eq(guest_reap(&E, 0, NULL, 0), 3);
        sent += ntx[t];
        ck_assert_uint_eq(E.fb.ntx, sent);
    }
    for (unsigned i = 0; i < sent; i++) /* in the driver's order */
        ck_assert_uint_eq(E.fb.tx[i].data[99], (uint8_t)i);
    /* with a budget, the rest stays for the next call */
    for (int i = 0; i < 40; i++)
        guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert_int_eq(vio_net_dev_process(E.nd, 0, 36, NULL, NULL), 36);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 36);
    ck_assert_int_eq(vio_net_dev_process(E.nd, 0, 36, NULL, NULL), 4);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 4);
    ck_assert_int_eq(vio_net_dev_process(E.nd, 5, 0, NULL, NULL), -ERANGE);
    ck_assert_int_eq(vio_net_dev_process(NULL, 0, 0, NULL, NULL), -EINVAL);
    env_close(&E);
}
END_TEST

START_TEST(tx_backend_gone_survives)
{
    env_open(&E, NULL);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 5);
    for (int i = 0; i < 5; i++)
        guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    E.fb.tx_fail = -ENODEV;
    E.fb.tx_fail_count = -1;
    ck_assert_int_eq(guest_kick(&E, 1), 5);
    uint32_t lens[5];
    ck_assert_uint_eq(guest_reap(&E, 1, lens, 5), 5); /* returned, length 0 */
    ck_assert_uint_eq(lens[4], 0);
    ck_assert_uint_eq(env_stats(&E, 1).drops[VIO_NET_DROP_BACKEND], 5);
    ck_assert_uint_eq(E.hk.log_err, 1); /* logged once */
    ck_assert_uint_eq(E.hk.needs_reset, 0);
    /* a per-frame refusal is a warning, once */
    E.fb.tx_fail = -EINVAL;
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert_int_eq(guest_kick(&E, 1), 2);
    ck_assert_uint_eq(E.hk.log_warn, 1);
    ck_assert_uint_eq(env_stats(&E, 1).drops[VIO_NET_DROP_BACKEND], 7);
    env_close(&E);
}
END_TEST

START_TEST(link_down_drops)
{
    struct env_opts o = {.link_down = true};
    env_open(&E, &o);
    uint8_t cfg[2];
    ck_assert_int_eq(vio_device_config_read(E.dev, 6, cfg, 2), 0);
    ck_assert_uint_eq(cfg[0], 0);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 6);
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert_int_eq(guest_kick(&E, 1), 1);
    ck_assert_uint_eq(E.fb.ntx, 0);
    ck_assert_uint_eq(env_stats(&E, 1).drops[VIO_NET_DROP_LINK_DOWN], 1);
    guest_post_rx(&E, 0, 4, 1526, 1);
    fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    ck_assert_uint_eq(env_stats(&E, 0).drops[VIO_NET_DROP_LINK_DOWN], 1);
    ck_assert_uint_eq(guest_reap(&E, 0, NULL, 0), 0); /* buffers given back, unused */
    ck_assert_int_eq(vio_net_dev_set_link(E.nd, true), 0);
    fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    ck_assert_uint_eq(env_stats(&E, 0).packets, 1);
    env_close(&E);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* RX                                                                        */

static uint8_t rxbuf[70000];
static uint8_t big[70000];

START_TEST(rx_big_chains_without_mrg)
{
    struct env_opts o = {.refuse = FB(VIO_NET_F_MRG_RXBUF), .peek = (_i & 1) != 0,
                         .be_features = ALL_OFFLOADS};
    env_open(&E, &o);
    /* one chain of 65601 bytes in 3 descriptors, as a big-packet driver posts them */
    guest_post_rx(&E, 0, 4, 65601, 3);
    size_t sizes[] = {60, 1514, 65589};
    struct vio_net_hdr gso = mkhdr(NC, VIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16);
    for (unsigned k = 0; k < 3; k++) {
        make_frame(big, sizes[k], ENV_MAC, 0x0800, 0, 10 + k);
        fb_push_rx(&E, 0, k == 2 ? &gso : NULL, big, sizes[k]);
    }
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 3);
    for (unsigned k = 0; k < 3; k++) {
        struct vio_net_hdr h;
        size_t len;
        ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
        ck_assert_uint_eq(len, sizes[k]);
        make_frame(big, sizes[k], ENV_MAC, 0x0800, 0, 10 + k);
        ck_assert_mem_eq(rxbuf, big, len);
        ck_assert_uint_eq(le16toh(h.num_buffers), 1);
        if (k == 2) {
            ck_assert_uint_eq(h.gso_type, VIO_NET_HDR_GSO_TCPV4);
            ck_assert_uint_eq(h.flags, NC);
            ck_assert_uint_eq(le16toh(h.gso_size), 1448);
        } else {
            ck_assert_uint_eq(h.gso_type, 0);
        }
    }
    struct vio_net_queue_stats s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 3);
    ck_assert_uint_eq(s.bytes, 60 + 1514 + 65589);
    ck_assert_uint_ge(E.hk.notify[0], 1);
    env_close(&E);
}
END_TEST

START_TEST(rx_mergeable)
{
    struct env_opts o = {.peek = (_i & 1) != 0};
    env_open(&E, &o);
    unsigned nseg = (_i & 2) ? 2 : 1, nbuf = 120;
    guest_post_rx(&E, 0, nbuf, 1000, nseg);
    /* 12 + 988 fills one buffer exactly, 989 spills into a second */
    size_t sizes[] = {60, 988, 989, 5000, 1518, 14};
    unsigned expect_nb[] = {1, 1, 2, 6, 2, 1};
    for (unsigned k = 0; k < 6; k++) {
        make_frame(big, sizes[k], ENV_MAC, 0x0800, 0, 20 + k);
        fb_push_rx(&E, 0, NULL, big, sizes[k]);
    }
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 6);
    /* Without a length to peek at, the device takes buffers for the largest frame the
     * negotiated offloads allow (1518 without GSO): the 5000-byte frame does not fit. */
    bool peek = (_i & 1) != 0;
    ck_assert_uint_eq(env_stats(&E, 0).drops[VIO_NET_DROP_LENGTH], peek ? 0 : 1);
    unsigned used = 0;
    for (unsigned k = 0; k < 6; k++) {
        if (!peek && sizes[k] == 5000)
            continue;
        struct vio_net_hdr h;
        size_t len;
        unsigned nb = guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len);
        ck_assert_uint_eq(nb, expect_nb[k]);
        ck_assert_uint_eq(len, sizes[k]);
        make_frame(big, sizes[k], ENV_MAC, 0x0800, 0, 20 + k);
        ck_assert_mem_eq(rxbuf, big, len);
        ck_assert_uint_eq(h.flags, 0);
        ck_assert_uint_eq(h.gso_type, 0);
        used += nb;
    }
    /* what was taken and not needed went back: exactly the used buffers are gone */
    ck_assert_uint_eq(guest_reap(&E, 0, NULL, 0), 0);
    ck_assert_uint_eq(vio_drvq_num_free(E.drv[0]), 256 - (nbuf - used) * nseg);
    env_close(&E);
}
END_TEST

START_TEST(rx_mergeable_max_frame)
{
    struct env_opts o = {.peek = (_i & 1) != 0, .be_features = ALL_OFFLOADS};
    env_open(&E, &o);
    guest_post_rx(&E, 0, 40, 2048, 1);
    make_frame(big, VIO_NET_MAX_FRAME_LEN, ENV_MAC, 0x0800, 0, 30);
    struct vio_net_hdr gso = mkhdr(NC, VIO_NET_HDR_GSO_TCPV6, 86, 1428, 54, 16);
    fb_push_rx(&E, 0, &gso, big, VIO_NET_MAX_FRAME_LEN);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    struct vio_net_hdr h;
    size_t len;
    unsigned nb = guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len);
    ck_assert_uint_eq(nb, (VIO_NET_MAX_FRAME_LEN + 12 + 2047) / 2048);
    ck_assert_uint_eq(len, VIO_NET_MAX_FRAME_LEN);
    ck_assert_mem_eq(rxbuf, big, len);
    ck_assert_uint_eq(h.gso_type, VIO_NET_HDR_GSO_TCPV6);
    env_close(&E);
}
END_TEST

START_TEST(rx_no_buffers_waits_for_kick)
{
    struct env_opts o = {.peek = (_i & 1) != 0};
    env_open(&E, &o);
    unsigned rxw = VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX);
    ck_assert_uint_eq(E.hk.watch[rxw], VIO_WATCH_IN); /* watched since queue start */
    uint8_t frame[300];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 40);
    fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    fb_push_rx(&E, 0, NULL, frame, 100);
    ck_assert_int_eq(vio_device_handle(E.dev, rxw, VIO_WATCH_IN), 0);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 2); /* left in the backend */
    ck_assert_uint_eq(E.hk.watch[rxw], 0);     /* stopped watching it */
    ck_assert_uint_eq(env_stats(&E, 0).stalls, 1);
    /* the driver adds one buffer and kicks */
    guest_post_rx(&E, 0, 1, 1526, 1);
    ck_assert_int_eq(guest_kick(&E, 0), 1);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 1);
    ck_assert_uint_eq(E.hk.watch[rxw], 0); /* out of buffers again */
    ck_assert_uint_eq(env_stats(&E, 0).stalls, 2);
    guest_post_rx(&E, 0, 8, 1526, 1);
    ck_assert_int_eq(guest_kick(&E, 0), 1);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 0);
    ck_assert_uint_eq(E.hk.watch[rxw], VIO_WATCH_IN); /* back to backend-driven */
    struct vio_net_hdr h;
    size_t len;
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(len, 300);
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(len, 100);
    env_close(&E);
}
END_TEST

START_TEST(rx_mergeable_waits_for_enough)
{
    /* with a length to peek at, a frame that does not fit the posted buffers waits for more */
    struct env_opts o = {.peek = true};
    env_open(&E, &o);
    guest_post_rx(&E, 0, 2, 1000, 1);
    make_frame(big, 3000, ENV_MAC, 0x0800, 0, 41);
    fb_push_rx(&E, 0, NULL, big, 3000);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 0);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 1);
    ck_assert_uint_eq(guest_reap(&E, 0, NULL, 0), 0);
    guest_post_rx(&E, 0, 2, 1000, 1);
    ck_assert_int_eq(guest_kick(&E, 0), 1);
    struct vio_net_hdr h;
    size_t len;
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 4);
    ck_assert_uint_eq(len, 3000);
    ck_assert_mem_eq(rxbuf, big, 3000);
    env_close(&E);
}
END_TEST

START_TEST(rx_too_big_and_short_buffers)
{
    struct env_opts o = {.refuse = FB(VIO_NET_F_MRG_RXBUF)};
    env_open(&E, &o);
    /* a buffer too short for the header is returned unused-but-used (len 0) and skipped */
    uint64_t gpa = arena_alloc(&E.a, 8, 16);
    struct vio_sg sg = {gpa, 8};
    E.bufs[0][E.nbufs[0]++] = (struct gbuf){gpa, 8};
    ck_assert_int_eq(vio_drvq_add(E.drv[0], &sg, 0, 1, (void *)(uintptr_t)E.nbufs[0]), 0);
    guest_post_rx(&E, 0, 2, 1526, 1);
    make_frame(big, 3000, ENV_MAC, 0x0800, 0, 42);
    fb_push_rx(&E, 0, NULL, big, 3000); /* does not fit 1526 */
    fb_push_rx(&E, 0, NULL, big, 1000);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2);
    struct vio_net_queue_stats s = env_stats(&E, 0);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_SHORT_CHAIN], 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_LENGTH], 1);
    ck_assert_uint_eq(s.packets, 1);
    void *tok;
    uint32_t len;
    ck_assert_int_eq(vio_drvq_get_used(E.drv[0], &tok, &len), 0);
    ck_assert_uint_eq(len, 0);
    struct vio_net_hdr h;
    size_t flen;
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &flen), 1);
    ck_assert_uint_eq(flen, 1000);
    ck_assert(!vio_queue_is_broken(E.q[0]));
    env_close(&E);
}
END_TEST

START_TEST(rx_metadata_follows_features)
{
    /* guest without GUEST_CSUM / GUEST_TSO: GSO frames dropped, partial checksums completed */
    struct env_opts o = {.be_features = ALL_OFFLOADS,
                         .refuse = FB(VIO_NET_F_GUEST_CSUM) | FB(VIO_NET_F_GUEST_TSO4) |
                                   FB(VIO_NET_F_GUEST_TSO6) | FB(VIO_NET_F_GUEST_ECN) |
                                   FB(VIO_NET_F_GUEST_UFO)};
    env_open(&E, &o);
    guest_post_rx(&E, 0, 8, 1526, 1);
    uint8_t frame[200];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 50);
    /* a "TCP" checksum field at 34+16 holding a partial sum */
    frame[50] = 0x12;
    frame[51] = 0x34;
    struct vio_net_hdr gso = mkhdr(NC, VIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16);
    struct vio_net_hdr partial = mkhdr(NC, 0, 0, 0, 34, 16);
    struct vio_net_hdr valid = mkhdr(VIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0);
    struct vio_net_hdr uso = mkhdr(NC, VIO_NET_HDR_GSO_UDP_L4, 42, 1000, 34, 6);
    fb_push_rx(&E, 0, &gso, frame, sizeof(frame));
    fb_push_rx(&E, 0, &partial, frame, sizeof(frame));
    fb_push_rx(&E, 0, &valid, frame, sizeof(frame));
    fb_push_rx(&E, 0, &uso, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 4);
    ck_assert_uint_eq(env_stats(&E, 0).drops[VIO_NET_DROP_HDR_OFFLOAD], 2);
    struct vio_net_hdr h;
    size_t len;
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(h.flags, 0); /* spec: flags zero without GUEST_CSUM */
    /* the device completed the checksum: the ones'-complement sum over [34, end) is 0xffff */
    uint32_t sum = 0x1234; /* the pseudo-header part the receiver adds */
    for (size_t i = 34; i < len; i++)
        sum += (i - 34) & 1 ? rxbuf[i] : (uint32_t)rxbuf[i] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    ck_assert_uint_eq(sum, 0xffff);
    ck_assert_mem_eq(rxbuf, frame, 50);
    ck_assert_mem_eq(rxbuf + 52, frame + 52, sizeof(frame) - 52);
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(h.flags, 0); /* DATA_VALID stripped */
    ck_assert_mem_eq(rxbuf, frame, sizeof(frame));
    env_close(&E);

    /* guest with the offloads: metadata passes through */
    struct env_opts o2 = {.be_features = ALL_OFFLOADS};
    env_open(&E, &o2);
    guest_post_rx(&E, 0, 8, 1526, 1);
    struct vio_net_hdr gso_ecn = mkhdr(NC, VIO_NET_HDR_GSO_ECN | VIO_NET_HDR_GSO_TCPV4, 66, 1448,
                                       34, 16);
    struct vio_net_hdr bad_cs = mkhdr(NC, 0, 0, 0, 190, 16);
    fb_push_rx(&E, 0, &gso_ecn, frame, sizeof(frame));
    fb_push_rx(&E, 0, &partial, frame, sizeof(frame));
    fb_push_rx(&E, 0, &valid, frame, sizeof(frame));
    fb_push_rx(&E, 0, &bad_cs, frame, sizeof(frame)); /* backend nonsense: dropped */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 4);
    ck_assert_uint_eq(env_stats(&E, 0).drops[VIO_NET_DROP_HDR_INVALID], 1);
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(h.gso_type, VIO_NET_HDR_GSO_ECN | VIO_NET_HDR_GSO_TCPV4);
    ck_assert_uint_eq(h.flags, NC);
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(h.flags, NC);
    ck_assert_uint_eq(le16toh(h.csum_start), 34);
    ck_assert_mem_eq(rxbuf, frame, sizeof(frame)); /* untouched */
    ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
    ck_assert_uint_eq(h.flags, VIO_NET_HDR_F_DATA_VALID);
    env_close(&E);
}
END_TEST

START_TEST(rx_mtu_enforced)
{
    struct env_opts o = {.mtu = 1000};
    env_open(&E, &o);
    guest_post_rx(&E, 0, 8, 2048, 1);
    make_frame(big, 1019, ENV_MAC, 0x0800, 0, 60);
    fb_push_rx(&E, 0, NULL, big, 1018); /* mtu + 14 + VLAN tag */
    fb_push_rx(&E, 0, NULL, big, 1019);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2);
    ck_assert_uint_eq(env_stats(&E, 0).packets, 1);
    ck_assert_uint_eq(env_stats(&E, 0).drops[VIO_NET_DROP_LENGTH], 1);
    env_close(&E);
}
END_TEST

START_TEST(rx_backend_gone)
{
    env_open(&E, NULL);
    guest_post_rx(&E, 0, 8, 1526, 1);
    E.fb.rx_fail = -ENODEV;
    unsigned rxw = VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX);
    ck_assert_int_eq(vio_device_handle(E.dev, rxw, VIO_WATCH_IN | VIO_WATCH_ERR), -ENODEV);
    ck_assert_uint_eq(E.hk.watch[rxw], 0);
    ck_assert_uint_eq(E.hk.log_err, 1);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), -ENODEV);
    ck_assert_uint_eq(E.hk.log_err, 1);
    ck_assert_uint_eq(guest_reap(&E, 0, NULL, 0), 0); /* buffers kept for later */
    ck_assert(!vio_queue_is_broken(E.q[0]));
    /* TX still works */
    uint8_t frame[60];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 61);
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert_int_eq(guest_kick(&E, 1), 1);
    env_close(&E);
}
END_TEST

START_TEST(rx_budget_and_no_fds)
{
    struct env_opts o = {.no_fds = true};
    env_open(&E, &o);
    ck_assert_uint_eq(E.hk.set_watch_calls, 0);
    ck_assert_int_eq(vio_device_watches(E.dev, NULL, 0), 0);
    guest_post_rx(&E, 0, 16, 1526, 1);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 62);
    for (int i = 0; i < 5; i++)
        fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 2), 2);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 2), 2);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 2), 1);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 2), 0);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 9, 0), -ERANGE);
    env_close(&E);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Control queue                                                             */

enum { CK_NONE, CK_FLAGS, CK_MAC, CK_TABLE, CK_VLAN, CK_PAIRS };

struct ctrl_case {
    const char *name;
    uint64_t refuse;       /* features the guest does not take */
    uint8_t cls, cmd;
    uint8_t data[16];
    size_t dlen;
    int tbl_nu, tbl_nm;    /* >= 0: build a MAC table command with these counts */
    int tbl_extra;         /* bytes added (or removed, < 0) after building the table */
    uint32_t tbl_claim_nu; /* non-zero: claim this unicast count instead */
    uint8_t ack;
    int check;
    uint32_t flags_set, flags_clear;
};

#define RX VIRTIO_NET_CTRL_RX
#define OK VIRTIO_NET_OK
#define ERR VIRTIO_NET_ERR
#define NOEXTRA FB(VIO_NET_F_CTRL_RX_EXTRA)
#define T(n, m) n, m
#define NOTBL -1, -1, 0, 0

static const struct ctrl_case ctrl_cases[] = {
    /* RX mode */
    {"promisc-off", 0, RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}, 1, NOTBL, OK, CK_FLAGS, 0,
     VIO_NET_FILTER_PROMISC},
    {"promisc-on", 0, RX, VIRTIO_NET_CTRL_RX_PROMISC, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_PROMISC, 0},
    {"allmulti-on", 0, RX, VIRTIO_NET_CTRL_RX_ALLMULTI, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_ALLMULTI, 0},
    {"alluni-on", 0, RX, VIRTIO_NET_CTRL_RX_ALLUNI, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_ALLUNI, 0},
    {"nomulti-on", 0, RX, VIRTIO_NET_CTRL_RX_NOMULTI, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_NOMULTI, 0},
    {"nouni-on", 0, RX, VIRTIO_NET_CTRL_RX_NOUNI, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_NOUNI, 0},
    {"nobcast-on", 0, RX, VIRTIO_NET_CTRL_RX_NOBCAST, {1}, 1, NOTBL, OK, CK_FLAGS,
     VIO_NET_FILTER_NOBCAST, 0},
    {"promisc-value-2", 0, RX, VIRTIO_NET_CTRL_RX_PROMISC, {2}, 1, NOTBL, ERR, CK_NONE, 0, 0},
    {"promisc-no-data", 0, RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}, 0, NOTBL, ERR, CK_NONE, 0, 0},
    {"promisc-2-bytes", 0, RX, VIRTIO_NET_CTRL_RX_PROMISC, {0, 0}, 2, NOTBL, ERR, CK_NONE, 0, 0},
    {"rx-unknown-cmd", 0, RX, 6, {0}, 1, NOTBL, ERR, CK_NONE, 0, 0},
    {"alluni-without-extra", NOEXTRA, RX, VIRTIO_NET_CTRL_RX_ALLUNI, {1}, 1, NOTBL, ERR, CK_NONE,
     0, 0},
    {"nobcast-without-extra", NOEXTRA, RX, VIRTIO_NET_CTRL_RX_NOBCAST, {1}, 1, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"promisc-without-ctrl-rx", FB(VIO_NET_F_CTRL_RX) | NOEXTRA, RX, VIRTIO_NET_CTRL_RX_PROMISC,
     {0}, 1, NOTBL, ERR, CK_NONE, 0, 0},
    /* MAC */
    {"mac-addr-set", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
     {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, 6, NOTBL, OK, CK_MAC, 0, 0},
    {"mac-addr-multicast", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
     {0x01, 0x11, 0x22, 0x33, 0x44, 0x55}, 6, NOTBL, ERR, CK_NONE, 0, 0},
    {"mac-addr-zero", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, {0}, 6, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"mac-addr-short", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, {0x02, 1, 2, 3, 4},
     5, NOTBL, ERR, CK_NONE, 0, 0},
    {"mac-addr-long", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
     {0x02, 1, 2, 3, 4, 5, 6}, 7, NOTBL, ERR, CK_NONE, 0, 0},
    {"mac-addr-not-negotiated", FB(VIO_NET_F_CTRL_MAC_ADDR), VIRTIO_NET_CTRL_MAC,
     VIRTIO_NET_CTRL_MAC_ADDR_SET, {0x02, 1, 2, 3, 4, 5}, 6, NOTBL, ERR, CK_NONE, 0, 0},
    {"mac-table-2-1", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0, T(2, 1), 0,
     0, OK, CK_TABLE, 0, VIO_NET_FILTER_UNI_OVERFLOW | VIO_NET_FILTER_MULTI_OVERFLOW},
    {"mac-table-empty", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0, T(0, 0),
     0, 0, OK, CK_TABLE, 0, 0},
    {"mac-table-max", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0, T(64, 64),
     0, 0, OK, CK_TABLE, 0, 0},
    {"mac-table-overflow", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(65, 200), 0, 0, OK, CK_FLAGS,
     VIO_NET_FILTER_UNI_OVERFLOW | VIO_NET_FILTER_MULTI_OVERFLOW, 0},
    {"mac-table-extra-byte", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(2, 1), 1, 0, ERR, CK_NONE, 0, 0},
    {"mac-table-missing-byte", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(2, 1), -1, 0, ERR, CK_NONE, 0, 0},
    {"mac-table-no-multi-count", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(1, 0), -4, 0, ERR, CK_NONE, 0, 0},
    {"mac-table-claims-more", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(2, 1), 0, 3, ERR, CK_NONE, 0, 0},
    {"mac-table-claims-huge", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(2, 1), 0, 0xffffffffu, ERR, CK_NONE, 0, 0},
    {"mac-table-claims-wrap", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0,
     T(2, 1), 0, 0x2aaaaaabu, ERR, CK_NONE, 0, 0},
    {"mac-table-no-data", 0, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0, NOTBL,
     ERR, CK_NONE, 0, 0},
    {"mac-table-without-ctrl-rx", FB(VIO_NET_F_CTRL_RX) | NOEXTRA, VIRTIO_NET_CTRL_MAC,
     VIRTIO_NET_CTRL_MAC_TABLE_SET, {0}, 0, T(1, 1), 0, 0, ERR, CK_NONE, 0, 0},
    {"mac-unknown-cmd", 0, VIRTIO_NET_CTRL_MAC, 2, {0}, 0, NOTBL, ERR, CK_NONE, 0, 0},
    /* VLAN */
    {"vlan-add-100", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {100, 0}, 2, NOTBL, OK,
     CK_VLAN, 0, 0},
    {"vlan-add-4095", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {0xff, 0x0f}, 2, NOTBL,
     OK, CK_VLAN, 0, 0},
    {"vlan-add-4096", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {0x00, 0x10}, 2, NOTBL,
     ERR, CK_NONE, 0, 0},
    {"vlan-del-4096", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_DEL, {0x00, 0x10}, 2, NOTBL,
     ERR, CK_NONE, 0, 0},
    {"vlan-short", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {100}, 1, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"vlan-long", 0, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {100, 0, 0}, 3, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"vlan-unknown-cmd", 0, VIRTIO_NET_CTRL_VLAN, 2, {100, 0}, 2, NOTBL, ERR, CK_NONE, 0, 0},
    {"vlan-not-negotiated", FB(VIO_NET_F_CTRL_VLAN), VIRTIO_NET_CTRL_VLAN,
     VIRTIO_NET_CTRL_VLAN_ADD, {100, 0}, 2, NOTBL, ERR, CK_NONE, 0, 0},
    /* MQ (device with 4 pairs) */
    {"mq-pairs-2", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {2, 0}, 2, NOTBL, OK,
     CK_PAIRS, 0, 0},
    {"mq-pairs-max", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {4, 0}, 2, NOTBL,
     OK, CK_PAIRS, 0, 0},
    {"mq-pairs-0", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {0, 0}, 2, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"mq-pairs-over", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {5, 0}, 2, NOTBL,
     ERR, CK_NONE, 0, 0},
    {"mq-pairs-0x8000", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {0, 0x80}, 2,
     NOTBL, ERR, CK_NONE, 0, 0},
    {"mq-pairs-short", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {2}, 1, NOTBL,
     ERR, CK_NONE, 0, 0},
    {"mq-rss-config", 0, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_RSS_CONFIG, {0}, 4, NOTBL, ERR,
     CK_NONE, 0, 0},
    {"mq-not-negotiated", FB(VIO_NET_F_MQ), VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
     {1, 0}, 2, NOTBL, ERR, CK_NONE, 0, 0},
    /* announce, unknown classes */
    {"announce-ack", 0, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, {0}, 0, NOTBL, OK,
     CK_NONE, 0, 0},
    {"announce-with-data", 0, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, {0}, 1,
     NOTBL, ERR, CK_NONE, 0, 0},
    {"announce-unknown-cmd", 0, VIRTIO_NET_CTRL_ANNOUNCE, 1, {0}, 0, NOTBL, ERR, CK_NONE, 0, 0},
    {"announce-not-negotiated", FB(VIO_NET_F_GUEST_ANNOUNCE), VIRTIO_NET_CTRL_ANNOUNCE,
     VIRTIO_NET_CTRL_ANNOUNCE_ACK, {0}, 0, NOTBL, ERR, CK_NONE, 0, 0},
    {"guest-offloads", 0, VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
     {0}, 8, NOTBL, ERR, CK_NONE, 0, 0},
    {"class-200", 0, 200, 0, {0}, 0, NOTBL, ERR, CK_NONE, 0, 0},
};

static size_t build_table(uint8_t *buf, const struct ctrl_case *c)
{
    size_t off = 0;
    uint32_t nu = c->tbl_claim_nu ? c->tbl_claim_nu : (uint32_t)c->tbl_nu;
    uint32_t le = htole32(nu);
    memcpy(buf, &le, 4);
    off = 4;
    for (int i = 0; i < c->tbl_nu; i++, off += 6) {
        uint8_t m[6] = {0x02, 0, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};
        memcpy(buf + off, m, 6);
    }
    le = htole32((uint32_t)c->tbl_nm);
    memcpy(buf + off, &le, 4);
    off += 4;
    for (int i = 0; i < c->tbl_nm; i++, off += 6) {
        uint8_t m[6] = {0x01, 0, 0x5e, 0, (uint8_t)(i >> 8), (uint8_t)i};
        memcpy(buf + off, m, 6);
    }
    if (c->tbl_extra > 0) {
        memset(buf + off, 0xab, (size_t)c->tbl_extra);
        off += (size_t)c->tbl_extra;
    } else {
        off -= (size_t)-c->tbl_extra;
    }
    return off;
}

START_TEST(ctrl_commands_table)
{
    const struct ctrl_case *c = &ctrl_cases[_i];
    struct env_opts o = {.pairs = 4, .refuse = c->refuse};
    env_open(&E, &o);
    static uint8_t tbl[4096];
    const uint8_t *data = c->data;
    size_t dlen = c->dlen;
    if (c->tbl_nu >= 0) {
        dlen = build_table(tbl, c);
        data = tbl;
    }
    static struct vio_net_rx_filter before, after;
    ck_assert_int_eq(vio_net_dev_get_rx_filter(E.nd, &before), 0);
    unsigned pairs0 = vio_net_dev_active_pairs(E.nd);
    uint8_t ack = guest_ctrl(&E, c->cls, c->cmd, data, dlen);
    ck_assert_msg(ack == c->ack, "%s: ack %u, want %u", c->name, ack, c->ack);
    ck_assert_int_eq(vio_net_dev_get_rx_filter(E.nd, &after), 0);
    struct vio_net_queue_stats s = env_stats(&E, E.ctrl);
    ck_assert_uint_eq(s.packets, c->ack == OK);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_CTRL_INVALID], c->ack != OK);
    ck_assert(!vio_queue_is_broken(E.q[E.ctrl]));
    uint8_t cfg[6];
    switch (c->check) {
    case CK_NONE:
        ck_assert_msg(memcmp(&before, &after, sizeof(before)) == 0, "%s: filter changed", c->name);
        ck_assert_uint_eq(vio_net_dev_active_pairs(E.nd), pairs0);
        break;
    case CK_FLAGS:
        ck_assert_uint_eq(after.flags & c->flags_set, c->flags_set);
        ck_assert_uint_eq(after.flags & c->flags_clear, 0);
        break;
    case CK_MAC:
        ck_assert_mem_eq(after.mac, c->data, 6);
        ck_assert_int_eq(vio_device_config_read(E.dev, 0, cfg, 6), 0);
        ck_assert_mem_eq(cfg, c->data, 6);
        break;
    case CK_TABLE:
        ck_assert_uint_eq(after.n_uni, (unsigned)c->tbl_nu);
        ck_assert_uint_eq(after.n_multi, (unsigned)c->tbl_nm);
        ck_assert_uint_eq(after.flags & c->flags_clear, 0);
        if (c->tbl_nu)
            ck_assert_mem_eq(after.uni[c->tbl_nu - 1], tbl + 4 + 6 * (c->tbl_nu - 1), 6);
        if (c->tbl_nm)
            ck_assert_mem_eq(after.multi[c->tbl_nm - 1], tbl + 8 + 6 * (c->tbl_nu + c->tbl_nm - 1),
                             6);
        break;
    case CK_VLAN: {
        unsigned vid = c->data[0] | (unsigned)c->data[1] << 8;
        ck_assert(after.vlans[vid / 32] & (1u << (vid % 32)));
        /* and delete it again */
        ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_DEL, c->data, 2),
                          OK);
        ck_assert_int_eq(vio_net_dev_get_rx_filter(E.nd, &after), 0);
        ck_assert(!(after.vlans[vid / 32] & (1u << (vid % 32))));
        break;
    }
    case CK_PAIRS:
        ck_assert_uint_eq(vio_net_dev_active_pairs(E.nd), c->data[0]);
        break;
    }
    env_close(&E);
}
END_TEST

START_TEST(ctrl_malformed_chains)
{
    env_open(&E, NULL);
    unsigned qidx = E.ctrl;
    /* no writable byte for the ack: returned with length 0, counted, queue fine */
    uint64_t gpa = arena_alloc(&E.a, 4, 16);
    uint8_t cmd[3] = {VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0};
    arena_write(&E.a, gpa, cmd, 3);
    struct vio_sg sg = {gpa, 3};
    E.bufs[qidx][E.nbufs[qidx]++] = (struct gbuf){gpa, 3};
    ck_assert_int_eq(vio_drvq_add(E.drv[qidx], &sg, 1, 0, (void *)(uintptr_t)E.nbufs[qidx]), 0);
    ck_assert_int_eq(guest_kick(&E, qidx), 1);
    uint32_t len = 99;
    ck_assert_uint_eq(guest_reap(&E, qidx, &len, 1), 1);
    ck_assert_uint_eq(len, 0);
    struct vio_net_rx_filter f;
    vio_net_dev_get_rx_filter(E.nd, &f);
    ck_assert_uint_eq(f.flags & VIO_NET_FILTER_PROMISC, VIO_NET_FILTER_PROMISC); /* not applied */
    /* one byte of class only */
    ck_assert_uint_eq(vio_net_ctrl_exec(E.nd, &(struct iovec){cmd, 1}, 1, 1), ERR);
    /* command split across iovecs byte by byte */
    uint8_t b0 = VIRTIO_NET_CTRL_RX, b1 = VIRTIO_NET_CTRL_RX_PROMISC, b2 = 0;
    struct iovec iov[3] = {{&b0, 1}, {&b1, 1}, {&b2, 1}};
    ck_assert_uint_eq(vio_net_ctrl_exec(E.nd, iov, 3, 3), OK);
    vio_net_dev_get_rx_filter(E.nd, &f);
    ck_assert_uint_eq(f.flags & VIO_NET_FILTER_PROMISC, 0);
    ck_assert_uint_eq(E.hk.needs_reset, 0);
    ck_assert_uint_eq(E.fb.rx_mode, 0); /* backend told promisc off */
    ck_assert_uint_ge(E.fb.rx_mode_calls, 1);
    env_close(&E);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* RX filtering                                                              */

static void rx_send(unsigned qp, const uint8_t *dst, uint16_t et, uint16_t vid, unsigned seed)
{
    uint8_t frame[80];
    make_frame(frame, sizeof(frame), dst, et, vid, seed);
    fb_push_rx(&E, qp, NULL, frame, sizeof(frame));
}

START_TEST(rx_filtering)
{
    env_open(&E, NULL);
    guest_post_rx(&E, 0, 200, 1526, 1);
    /* power-on: promiscuous */
    rx_send(0, OTHER, 0x0800, 0, 1);
    rx_send(0, OTHER, 0x8100, 7, 2); /* VLAN filter empty, but promisc wins */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2);
    ck_assert_uint_eq(env_stats(&E, 0).packets, 2);

    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_PROMISC, (uint8_t[]){0}, 1), OK);
    rx_send(0, ENV_MAC, 0x0800, 0, 3); /* ours: in */
    rx_send(0, OTHER, 0x0800, 0, 4);   /* not ours: unicast drop */
    rx_send(0, BCAST, 0x0806, 0, 5);   /* broadcast: in */
    rx_send(0, MCAST1, 0x0800, 0, 6);  /* multicast not in table: drop */
    rx_send(0, ENV_MAC, 0x8100, 5, 7); /* VLAN 5 not in table: drop */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 5);
    struct vio_net_queue_stats s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 4);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_UNICAST], 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_MULTICAST], 1);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_VLAN], 1);

    /* VLAN table, MAC table with OTHER and MCAST1, nobcast */
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD,
                                 (uint8_t[]){5, 0}, 2),
                      OK);
    uint8_t tbl[4 + 6 + 4 + 6];
    tbl[0] = 1, tbl[1] = tbl[2] = tbl[3] = 0;
    memcpy(tbl + 4, OTHER, 6);
    tbl[10] = 1, tbl[11] = tbl[12] = tbl[13] = 0;
    memcpy(tbl + 14, MCAST1, 6);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tbl,
                                 sizeof(tbl)),
                      OK);
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_NOBCAST, (uint8_t[]){1}, 1), OK);
    rx_send(0, ENV_MAC, 0x8100, 5, 8); /* in */
    rx_send(0, OTHER, 0x0800, 0, 9);   /* in (table) */
    rx_send(0, MCAST1, 0x0800, 0, 10); /* in (table) */
    rx_send(0, MCAST2, 0x0800, 0, 11); /* drop */
    rx_send(0, BCAST, 0x0806, 0, 12);  /* drop (nobcast) */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 5);
    s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 7);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_MULTICAST], 2);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_BROADCAST], 1);

    /* allmulti, then nomulti wins over allmulti; nouni drops even our own address */
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_ALLMULTI, (uint8_t[]){1}, 1), OK);
    rx_send(0, MCAST2, 0x0800, 0, 13); /* in */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_NOMULTI, (uint8_t[]){1}, 1), OK);
    rx_send(0, MCAST1, 0x0800, 0, 14); /* drop */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_NOUNI, (uint8_t[]){1}, 1), OK);
    rx_send(0, ENV_MAC, 0x0800, 0, 15); /* drop */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 8);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_MULTICAST], 3);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_UNICAST], 2);
    ck_assert_uint_eq(E.fb.rx_mode, VIO_NET_RX_ALLMULTI);

    /* MAC address change moves the unicast filter */
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_NOUNI, (uint8_t[]){0}, 1), OK);
    uint8_t newmac[6] = {0x02, 1, 2, 3, 4, 5};
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, newmac, 6),
                      OK);
    rx_send(0, newmac, 0x0800, 0, 16);  /* in */
    rx_send(0, ENV_MAC, 0x0800, 0, 17); /* drop */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2);
    s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 9);
    ck_assert_uint_eq(s.drops[VIO_NET_DROP_FILTER_UNICAST], 3);

    /* promisc on again accepts everything */
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_PROMISC, (uint8_t[]){1}, 1), OK);
    rx_send(0, OTHER, 0x8100, 99, 18);
    rx_send(0, BCAST, 0x0800, 0, 19);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2);
    ck_assert_uint_eq(env_stats(&E, 0).packets, 11);
    ck_assert_uint_eq(E.fb.rx_mode, VIO_NET_RX_PROMISC | VIO_NET_RX_ALLMULTI);

    /* check the delivered payloads match in order */
    unsigned seeds[] = {1, 2, 3, 5, 8, 9, 10, 13, 16, 18, 19};
    const uint8_t *dsts[] = {OTHER, OTHER, ENV_MAC, BCAST, ENV_MAC, OTHER, MCAST1, MCAST2,
                             newmac, OTHER, BCAST};
    uint16_t ets[] = {0x0800, 0x8100, 0x0800, 0x0806, 0x8100, 0x0800, 0x0800, 0x0800, 0x0800,
                      0x8100, 0x0800};
    uint16_t vids[] = {0, 7, 0, 0, 5, 0, 0, 0, 0, 99, 0};
    for (unsigned k = 0; k < 11; k++) {
        struct vio_net_hdr h;
        size_t len;
        uint8_t want[80];
        make_frame(want, sizeof(want), dsts[k], ets[k], vids[k], seeds[k]);
        ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
        ck_assert_uint_eq(len, 80);
        ck_assert_mem_eq(rxbuf, want, 80);
    }
    env_close(&E);
}
END_TEST

START_TEST(rx_vlan_without_ctrl_vlan)
{
    struct env_opts o = {.refuse = FB(VIO_NET_F_CTRL_VLAN)};
    env_open(&E, &o);
    guest_post_rx(&E, 0, 8, 1526, 1);
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_PROMISC, (uint8_t[]){0}, 1), OK);
    rx_send(0, ENV_MAC, 0x8100, 1234, 1); /* spec: all VLANs accepted */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    ck_assert_uint_eq(env_stats(&E, 0).packets, 1);
    env_close(&E);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Multiqueue, broken rings, reset                                           */

START_TEST(multiqueue_two_pairs)
{
    struct env_opts o = {.pairs = 2};
    env_open(&E, &o);
    ck_assert_uint_eq(E.ctrl, 4);
    unsigned rx1w = VIO_NET_WATCH_ID(1, VIO_NET_WATCH_RX);
    ck_assert_uint_eq(E.hk.watch[rx1w], 0); /* pair 1 not active yet */
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX)], VIO_WATCH_IN);
    guest_post_rx(&E, 0, 32, 1526, 1);
    guest_post_rx(&E, 1, 32, 1526, 1);
    uint8_t frame[500];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 70);
    fb_push_rx(&E, 1, NULL, frame, 500);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 1, 0), 0); /* spec: only rx0 before PAIRS_SET */
    ck_assert_uint_eq(fb_rx_pending(&E, 1), 1);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                 (uint8_t[]){2, 0}, 2),
                      OK);
    ck_assert_uint_eq(vio_net_dev_active_pairs(E.nd), 2);
    ck_assert_uint_eq(E.hk.watch[rx1w], VIO_WATCH_IN);
    ck_assert_int_eq(vio_device_handle(E.dev, rx1w, VIO_WATCH_IN), 1);
    for (unsigned i = 0; i < 3; i++) {
        fb_push_rx(&E, 0, NULL, frame, 100 + i);
        fb_push_rx(&E, 1, NULL, frame, 200 + i);
        guest_tx(&E, 0, NULL, frame, 300 + i, NULL, 0);
        guest_tx(&E, 1, NULL, frame, 400 + i, NULL, 0);
    }
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 3);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 1, 0), 3);
    ck_assert_int_eq(guest_kick(&E, 1), 3);
    ck_assert_int_eq(guest_kick(&E, 3), 3);
    struct vio_net_queue_stats s;
    s = env_stats(&E, 0);
    ck_assert_uint_eq(s.packets, 3);
    ck_assert_uint_eq(s.bytes, 303);
    s = env_stats(&E, 2);
    ck_assert_uint_eq(s.packets, 4);
    ck_assert_uint_eq(s.bytes, 500 + 603);
    s = env_stats(&E, 1);
    ck_assert_uint_eq(s.packets, 3);
    ck_assert_uint_eq(s.bytes, 903);
    s = env_stats(&E, 3);
    ck_assert_uint_eq(s.packets, 3);
    ck_assert_uint_eq(s.bytes, 1203);
    unsigned on_qp1 = 0;
    for (unsigned i = 0; i < E.fb.ntx; i++)
        on_qp1 += E.fb.tx[i].qp == 1;
    ck_assert_uint_eq(on_qp1, 3);
    ck_assert_uint_ge(E.hk.notify[2], 1);
    ck_assert_uint_ge(E.hk.notify[3], 1);
    /* back to one pair: pair 1 stops receiving */
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                 (uint8_t[]){1, 0}, 2),
                      OK);
    ck_assert_uint_eq(E.hk.watch[rx1w], 0);
    fb_push_rx(&E, 1, NULL, frame, 100);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 1, 0), 0);
    ck_assert_int_eq(vio_net_dev_get_stats(E.nd, 5, &s), -ERANGE);
    env_close(&E);
}
END_TEST

START_TEST(broken_ring_needs_reset)
{
    env_open(&E, NULL);
    struct rawring r;
    struct vio_drvq_config *dc = &E.dc[1];
    ck_assert_int_eq(rawring_attach(&r, &E.a, dc->size, dc->desc, dc->driver, dc->device), 0);
    rawring_set_avail_slot(&r, 0, (uint16_t)(dc->size + 3)); /* head out of range */
    rawring_set_avail_idx(&r, 1);
    ck_assert_int_eq(vio_device_queue_notify(E.dev, 1), -EIO);
    ck_assert_uint_eq(E.hk.needs_reset, 1);
    ck_assert(vio_queue_is_broken(E.q[1]));
    ck_assert_int_eq(vio_device_queue_notify(E.dev, 1), -EIO);
    ck_assert_uint_eq(E.hk.needs_reset, 1); /* once */
    ck_assert_uint_ge(E.hk.log_err, 1);
    /* the other queues keep working */
    guest_post_rx(&E, 0, 2, 1526, 1);
    uint8_t frame[60];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 80);
    fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 1);
    env_close(&E);

    /* an RX ring that breaks (readable descriptor on an IN_ONLY queue) */
    env_open(&E, NULL);
    uint64_t gpa = arena_alloc(&E.a, 64, 16);
    struct vio_sg sg = {gpa, 64};
    ck_assert_int_eq(vio_drvq_add(E.drv[0], &sg, 1, 0, (void *)1), 0);
    vio_drvq_kick_prepare(E.drv[0]);
    fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), -EIO);
    ck_assert_uint_eq(E.hk.needs_reset, 1);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 1);
    env_close(&E);
}
END_TEST

START_TEST(iov_exhaustion_needs_reset)
{
    struct env_opts o = {.iov_max = 4};
    env_open(&E, &o);
    uint8_t frame[200];
    make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, 81);
    const uint32_t cuts[] = {10, 10, 10, 10, 10};
    guest_tx(&E, 0, NULL, frame, sizeof(frame), cuts, 5);
    ck_assert_int_eq(guest_kick(&E, 1), -ENOBUFS);
    ck_assert_uint_eq(E.hk.needs_reset, 1);
    env_close(&E);
}
END_TEST

START_TEST(reset_restores_power_on)
{
    struct env_opts o = {.pairs = 2};
    env_open(&E, &o);
    ck_assert_uint_eq(guest_ctrl(&E, RX, VIRTIO_NET_CTRL_RX_PROMISC, (uint8_t[]){0}, 1), OK);
    uint8_t newmac[6] = {0x02, 1, 2, 3, 4, 5};
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, newmac, 6),
                      OK);
    ck_assert_uint_eq(guest_ctrl(&E, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                 (uint8_t[]){2, 0}, 2),
                      OK);
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(1, VIO_NET_WATCH_RX)], VIO_WATCH_IN);
    vio_device_reset(E.dev);
    ck_assert_uint_eq(vio_net_dev_features(E.nd), 0);
    ck_assert_uint_eq(vio_net_dev_active_pairs(E.nd), 1);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_uint_eq(E.hk.watch[i], 0);
    struct vio_net_rx_filter f;
    vio_net_dev_get_rx_filter(E.nd, &f);
    ck_assert_uint_eq(f.flags, VIO_NET_FILTER_PROMISC);
    ck_assert_mem_eq(f.mac, ENV_MAC, 6);
    uint8_t cfg[6];
    vio_device_config_read(E.dev, 0, cfg, 6);
    ck_assert_mem_eq(cfg, ENV_MAC, 6);
    ck_assert_int_eq(vio_device_queue_notify(E.dev, 1), -EIO); /* stopped */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), -EIO);
    /* stop of a stopped queue is harmless */
    vio_device_queue_stop(E.dev, 0);
    env_close(&E);
}
END_TEST


START_TEST(loopback_backend_roundtrip)
{
    /* the real in-process loopback backend: what the guest sends comes back to it */
    struct vio_net_backend lb;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 1,
                                        .mac_swap = true};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &lb), 0);
    struct env_opts o = {.ops = lb.ops, .ops_opaque = lb.opaque};
    env_open(&E, &o);
    ck_assert_uint_eq(E.hk.watch[VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX)], VIO_WATCH_IN);
    guest_post_rx(&E, 0, 64, 2048, 1);
    static uint8_t frame[1500];
    for (unsigned k = 0; k < 20; k++) {
        make_frame(frame, 60 + 70 * k, OTHER, 0x0800, 0, 90 + k);
        guest_tx(&E, 0, NULL, frame, 60 + 70 * k, (const uint32_t[]){7}, 1);
    }
    ck_assert_int_eq(guest_kick(&E, 1), 20);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 20);
    /* the rx fd (eventfd) is what the transport would watch */
    ck_assert_int_eq(vio_device_handle(E.dev, VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX),
                                       VIO_WATCH_IN),
                     20);
    for (unsigned k = 0; k < 20; k++) {
        struct vio_net_hdr h;
        size_t len;
        ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
        ck_assert_uint_eq(len, 60 + 70 * k);
        make_frame(frame, len, OTHER, 0x0800, 0, 90 + k);
        ck_assert_mem_eq(rxbuf + 12, frame + 12, len - 12); /* MACs swapped, rest intact */
        ck_assert_mem_eq(rxbuf, frame + 6, 6);
        ck_assert_mem_eq(rxbuf + 6, frame, 6);
    }
    ck_assert_uint_eq(env_stats(&E, 0).packets, 20);
    env_close(&E);
    vio_net_backend_destroy(&lb);
}
END_TEST

START_TEST(polling_keeps_kicks_off)
{
    /* _i: 0 without event idx (used->flags), 1 with it (avail_event) */
    struct env_opts o = {.refuse = _i ? 0 : (1ull << VIO_F_EVENT_IDX)};
    env_open(&E, &o);
    ck_assert_uint_eq(!!(E.feats & (1ull << VIO_F_EVENT_IDX)), (unsigned)_i);
    unsigned rxw = VIO_NET_WATCH_ID(0, VIO_NET_WATCH_RX);
    uint8_t frame[100];
    make_frame(frame, sizeof(frame), ENV_MAC, 0x0800, 0, 5);
    ck_assert_int_eq(vio_net_dev_set_polling(NULL, 0, true), -EINVAL);
    ck_assert_int_eq(vio_net_dev_set_polling(E.nd, 7, true), -ERANGE);
    ck_assert_int_eq(vio_net_dev_set_polling(E.nd, 0, true), 0);
    /* TX: the queue runs empty, the kicks stay off */
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert(E.tx_kick_wanted); /* kicks are on until the device first runs */
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 0), 1);
    for (unsigned k = 0; k < 3; k++) {
        guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
        ck_assert(!E.tx_kick_wanted); /* the driver does not kick */
        ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 0), 1);
    }
    ck_assert_uint_eq(E.fb.ntx, 4);
    ck_assert_uint_eq(guest_reap(&E, 1, NULL, 0), 4);
    /* RX without guest buffers: nothing asked of the driver, the backend stays watched */
    guest_post_rx(&E, 0, 4, 1526, 1);
    for (unsigned k = 0; k < 10; k++)
        fb_push_rx(&E, 0, NULL, frame, sizeof(frame));
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 4);
    ck_assert_uint_eq(fb_rx_pending(&E, 0), 6); /* out of buffers, frames wait */
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 0);
    ck_assert_uint_eq(E.hk.watch[rxw], VIO_WATCH_IN);
    ck_assert_uint_eq(env_stats(&E, 0).stalls, 0);
    guest_post_rx(&E, 0, 2, 1526, 1);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 2); /* polled, no kick needed */
    /* off: the next pass turns the kicks back on */
    ck_assert_int_eq(vio_net_dev_set_polling(E.nd, 0, false), 0);
    ck_assert_int_eq(vio_net_dev_tx_process(E.nd, 0, 0), 0);
    guest_tx(&E, 0, NULL, frame, sizeof(frame), NULL, 0);
    ck_assert(E.tx_kick_wanted);
    ck_assert_int_eq(vio_device_queue_notify(E.dev, 1), 1);
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), 0);
    ck_assert_uint_eq(E.hk.watch[rxw], 0); /* normal mode: waits for the driver's kick */
    ck_assert_uint_eq(env_stats(&E, 0).stalls, 1);
    env_close(&E);
}
END_TEST

START_TEST(reset_flushes_loopback)
{
    /* frames the old driver sent that are still on the loop never reach the next driver */
    struct vio_net_backend lb;
    struct vio_net_backend_config bc = {.struct_size = sizeof(bc), .queue_pairs = 1};
    ck_assert_int_eq(vio_net_loopback_open(&bc, &lb), 0);
    struct env_opts o = {.ops = lb.ops, .ops_opaque = lb.opaque};
    env_open(&E, &o);
    static uint8_t frame[200];
    for (unsigned k = 0; k < 5; k++) {
        make_frame(frame, sizeof(frame), OTHER, 0x0800, 0, k);
        guest_tx(&E, 0, NULL, frame, sizeof(frame), (const uint32_t[]){7}, 1);
    }
    ck_assert_int_eq(guest_kick(&E, 1), 5); /* no rx buffers posted: all 5 wait in the loop */
    ck_assert_int_eq(vio_net_backend_rx_peek(&lb, 0), (ssize_t)sizeof(frame));
    int rxfd = vio_net_backend_rx_fd(&lb, 0);
    struct pollfd pfd = {.fd = rxfd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    vio_device_reset(E.dev);
    ck_assert_int_eq(vio_net_backend_rx_peek(&lb, 0), -EAGAIN);
    pfd.revents = 0;
    ck_assert_int_eq(poll(&pfd, 1, 0), 0); /* the eventfd agrees: nothing to read */
    env_close(&E);
    vio_net_backend_destroy(&lb);
}
END_TEST

/* rx_view only: many frames in one run, in buffers of two descriptors each, so that the queue
 * of deferred copies fills and is flushed many times over; headers already in place (a
 * recycled buffer) and garbage alike end up right; every frame came through rx_view. */
START_TEST(rx_view_copies_before_publish)
{
    struct env_opts o = {.peek = true, .view = true};
    env_open(&E, &o);
    enum { N = 100 };
    unsigned first = E.nbufs[0];
    guest_post_rx(&E, 0, N, 1000, 2);
    struct vio_net_hdr same = {.num_buffers = htole16(1)};
    /* every other buffer already holds the header; some hold one that differs in its last
     * field only (a buffer last used for a frame of 3 buffers) */
    struct vio_net_hdr near = {.num_buffers = htole16(3)};
    for (unsigned k = 0; k < N; k++)
        if (k % 2 == 0 || k % 7 == 0)
            ck_assert_int_eq(arena_write(&E.a, E.bufs[0][first + k].gpa, k % 2 ? &near : &same,
                                         sizeof(same)), 0);
    for (unsigned k = 0; k < N; k++) {
        make_frame(big, 60 + 9 * k, ENV_MAC, 0x0800, 0, 40 + k);
        fb_push_rx(&E, 0, NULL, big, 60 + 9 * k);
    }
    ck_assert_int_eq(vio_net_dev_rx_process(E.nd, 0, 0), N);
    ck_assert_uint_eq(E.fb.views, N);
    for (unsigned k = 0; k < N; k++) {
        struct vio_net_hdr h;
        size_t len;
        ck_assert_uint_eq(guest_rx_frame(&E, 0, &h, rxbuf, sizeof(rxbuf), &len), 1);
        ck_assert_uint_eq(len, 60 + 9 * k);
        make_frame(big, len, ENV_MAC, 0x0800, 0, 40 + k);
        ck_assert_mem_eq(rxbuf, big, len);
        ck_assert_mem_eq(&h, &same, sizeof(h));
    }
    /* the frames were lent until the next tx: a tx now must not change what the guest got */
    struct vio_net_hdr none = {0};
    make_frame(big, 60, OTHER, 0x0800, 0, 1);
    guest_tx(&E, 0, &none, big, 60, NULL, 0);
    ck_assert_int_ge(guest_kick(&E, 1), 0);
    ck_assert_uint_eq(E.fb.nlent, 0);
    env_close(&E);
}
END_TEST

/* The "_view" cases: the same tests with a fake backend that lends its frames (rx_view), so the
 * device's deferred copies are checked by everything the copying path is checked by. */
static void view_on(void)
{
    env_view_all = true;
}

static void add_rx_tests(TCase *tc)
{
    tcase_add_loop_test(tc, rx_big_chains_without_mrg, 0, 2);
    tcase_add_loop_test(tc, rx_mergeable, 0, 4);
    tcase_add_loop_test(tc, rx_mergeable_max_frame, 0, 2);
    tcase_add_loop_test(tc, rx_no_buffers_waits_for_kick, 0, 2);
    tcase_add_test(tc, rx_mergeable_waits_for_enough);
    tcase_add_test(tc, rx_too_big_and_short_buffers);
    tcase_add_test(tc, rx_metadata_follows_features);
    tcase_add_test(tc, rx_mtu_enforced);
    tcase_add_test(tc, rx_backend_gone);
    tcase_add_test(tc, rx_budget_and_no_fds);
}

static void add_filter_tests(TCase *tc)
{
    tcase_add_test(tc, rx_filtering);
    tcase_add_test(tc, rx_vlan_without_ctrl_vlan);
}

static Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("hdr_check");
    tcase_add_loop_test(tc, hdr_check_table, 0, (int)(sizeof(hdr_cases) / sizeof(hdr_cases[0])));
    tcase_add_test(tc, hdr_check_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("device");
    tcase_add_test(tc, offer_follows_backend);
    tcase_add_test(tc, offer_trims_dependencies);
    tcase_add_test(tc, features_off_and_new_errors);
    tcase_add_test(tc, set_features_refusals);
    tcase_add_test(tc, frontend_owns_ctrl_queue);
    tcase_add_test(tc, bind_flag_frontend_ctrl);
    tcase_add_test(tc, frontend_queue_num_is_pairs);
    tcase_add_test(tc, config_space);
    tcase_add_test(tc, queue_layout);
    tcase_add_test(tc, generic_wrappers_without_ops);
    suite_add_tcase(s, tc);

    tc = tcase_create("tx");
    tcase_add_test(tc, tx_frames_arrive_intact);
    tcase_add_test(tc, tx_bad_frames_dropped_queue_survives);
    tcase_add_test(tc, tx_backpressure_keeps_chain);
    tcase_add_test(tc, tx_budget);
    tcase_add_test(tc, process_publishes_both_directions);
    tcase_add_test(tc, tx_backend_gone_survives);
    tcase_add_test(tc, link_down_drops);
    suite_add_tcase(s, tc);

    tc = tcase_create("rx");
    add_rx_tests(tc);
    suite_add_tcase(s, tc);
    tc = tcase_create("rx_view");
    tcase_add_checked_fixture(tc, view_on, NULL);
    add_rx_tests(tc);
    tcase_add_test(tc, rx_view_copies_before_publish);
    suite_add_tcase(s, tc);

    tc = tcase_create("ctrl");
    tcase_add_loop_test(tc, ctrl_commands_table, 0,
                        (int)(sizeof(ctrl_cases) / sizeof(ctrl_cases[0])));
    tcase_add_test(tc, ctrl_malformed_chains);
    suite_add_tcase(s, tc);

    tc = tcase_create("filter");
    add_filter_tests(tc);
    suite_add_tcase(s, tc);
    tc = tcase_create("filter_view");
    tcase_add_checked_fixture(tc, view_on, NULL);
    add_filter_tests(tc);
    suite_add_tcase(s, tc);

    tc = tcase_create("queues");
    tcase_add_test(tc, multiqueue_two_pairs);
    tcase_add_test(tc, broken_ring_needs_reset);
    tcase_add_test(tc, iov_exhaustion_needs_reset);
    tcase_add_test(tc, reset_restores_power_on);
    tcase_add_test(tc, loopback_backend_roundtrip);
    tcase_add_test(tc, reset_flushes_loopback);
    tcase_add_loop_test(tc, polling_keeps_kicks_off, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(net_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
