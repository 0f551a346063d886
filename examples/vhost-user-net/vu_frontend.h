/* SPDX-License-Identifier: MIT */
/*
 * A minimal vhost-user front-end (the QEMU / virtio_user side of the socket), for the
 * daemon's --self-test, the integration tests' hostile client and the control-path
 * benchmark. Guest RAM is a memfd (sparse: only the pages the rings and buffers use are
 * ever touched); the virtio-net driver side is the library's vio_net_driver.
 *
 * The vhost-user wire format has no system header (QEMU docs/interop/vhost-user.rst):
 * the few layouts this needs are defined here.
 */
#ifndef VHOST_USER_NET_VU_FRONTEND_H
#define VHOST_USER_NET_VU_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <virtio/net_driver.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Front-end requests (vhost-user.rst "Front-end message types"). */
enum {
    VUFE_GET_FEATURES = 1, VUFE_SET_FEATURES = 2, VUFE_SET_OWNER = 3, VUFE_RESET_OWNER = 4,
    VUFE_SET_MEM_TABLE = 5, VUFE_SET_LOG_BASE = 6, VUFE_SET_LOG_FD = 7, VUFE_SET_VRING_NUM = 8,
    VUFE_SET_VRING_ADDR = 9, VUFE_SET_VRING_BASE = 10, VUFE_GET_VRING_BASE = 11,
    VUFE_SET_VRING_KICK = 12, VUFE_SET_VRING_CALL = 13, VUFE_SET_VRING_ERR = 14,
    VUFE_GET_PROTOCOL_FEATURES = 15, VUFE_SET_PROTOCOL_FEATURES = 16, VUFE_GET_QUEUE_NUM = 17,
    VUFE_SET_VRING_ENABLE = 18, VUFE_SEND_RARP = 19, VUFE_NET_SET_MTU = 20,
    VUFE_SET_BACKEND_REQ_FD = 21, VUFE_GET_CONFIG = 24, VUFE_SET_CONFIG = 25,
    VUFE_GET_INFLIGHT_FD = 31, VUFE_SET_INFLIGHT_FD = 32, VUFE_GET_MAX_MEM_SLOTS = 36,
    VUFE_ADD_MEM_REG = 37, VUFE_REM_MEM_REG = 38, VUFE_SET_STATUS = 39, VUFE_GET_STATUS = 40
};

#define VUFE_FLAG_VERSION 0x1u
#define VUFE_FLAG_REPLY (1u << 2)
#define VUFE_FLAG_NEED_REPLY (1u << 3)
#define VUFE_F_PROTOCOL_FEATURES 30u
#define VUFE_PF_MQ 0u
#define VUFE_PF_REPLY_ACK 3u
#define VUFE_PF_CONFIGURE_MEM_SLOTS 15u
#define VUFE_PF_STATUS 16u
#define VUFE_VRING_NOFD (1ull << 8)
#define VUFE_MAX_FDS 8u

struct vufe_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

struct vufe_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
};

struct vufe_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
    uint64_t log;
};

/** One front-end connection and its guest memory. */
struct vufe {
    int sock;
    int mem_fd;
    uint8_t *mem;            /* the whole guest RAM, mapped shared */
    uint64_t mem_size;
    uint64_t features;       /* negotiated virtio features (without PROTOCOL_FEATURES) */
    uint64_t pfeatures;      /* negotiated protocol features */
    uint64_t offered;        /* GET_FEATURES */
    unsigned pairs;
    uint16_t qsize;
    int kick[16], call[16];
    uint64_t ring[16][3];    /* guest addresses of each ring's desc / avail / used */
    struct vio_mem *vmem;    /* the front-end's own view, for the driver */
    struct vio_net_driver *drv;
    char err[256];           /* why the last call failed */
};

struct vufe_config {
    uint64_t mem_size;       /* guest RAM bytes (sparse memfd); 0 = 64 MiB */
    bool hugepages;          /* MFD_HUGETLB guest RAM (2 MiB pages) */
    unsigned queue_pairs;    /* 0 = 1 */
    uint16_t queue_size;     /* 0 = 256 */
    uint64_t features_off;   /* virtio feature bits not to accept */
    bool reply_ack;          /* ask for REPLY_ACK on every message that has no reply */
    bool no_driver;          /* set up the rings only: no vio_net_driver, no buffers */
    vio_log_fn log;
    void *log_opaque;
};

/* Connect to a listening back-end (or take a connected socket with path NULL and fd). */
int vufe_open(struct vufe *f, const char *path, int fd);
/* Negotiate, hand over memory and start every ring of cfg->queue_pairs pairs. */
int vufe_setup(struct vufe *f, const struct vufe_config *cfg);
/* Release everything (closes the socket). */
void vufe_close(struct vufe *f);

/* Raw message: header fields as given (flags defaults to VERSION when 0), payload, fds. */
int vufe_send(struct vufe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
              const int *fds, unsigned nfds);
/* Receive a reply to @p req into @p buf (at most @p cap bytes); returns the payload size. */
int vufe_recv(struct vufe *f, uint32_t req, void *buf, uint32_t cap, int timeout_ms);
/* Request with a u64 reply. */
int vufe_get_u64(struct vufe *f, uint32_t req, uint64_t *out);
/* Request without reply; with REPLY_ACK negotiated, waits for the ack (0 / -EPROTO). */
int vufe_call(struct vufe *f, uint32_t req, const void *payload, uint32_t size, const int *fds,
              unsigned nfds);
/* True when the back-end closed the connection within @p timeout_ms. */
bool vufe_peer_closed(struct vufe *f, int timeout_ms);

/* Loopback round trip: send @p n frames of @p len bytes on every pair and receive them back
 * byte for byte; returns the frames that came back intact, or a negative errno. */
long vufe_echo(struct vufe *f, unsigned n, size_t len, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
