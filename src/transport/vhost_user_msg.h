/* SPDX-License-Identifier: MIT */
/*
 * Internal: the vhost-user wire format (QEMU docs/interop/vhost-user.rst), the
 * shape of the one table of front-end requests (struct vu_req_info: size rule,
 * fd allowance, reply rule, protocol feature, validator and handler in one row
 * per request; the table itself lives in vhost_user.c next to the handlers it
 * names), the validator that applies a row, and socket I/O. This is the only
 * layout defined in this project rather than taken from a system header:
 * vhost-user has none. All numbers are in host byte order on the wire
 * (same-host protocol).
 */
#ifndef VIO_TRANSPORT_VHOST_USER_MSG_H
#define VIO_TRANSPORT_VHOST_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VU_VERSION 0x1u
#define VU_VERSION_MASK 0x3u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)

#define VU_MAX_FDS 8u          /* VHOST_MEMORY_BASELINE_NREGIONS */
#define VU_MAX_MEM_REGIONS 8u  /* regions in one SET_MEM_TABLE */
#define VU_MAX_CONFIG 256u     /* config space bytes in one message */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8)
#define VU_VRING_F_LOG 0u      /* bit number of VHOST_VRING_F_LOG in vring address flags */
#define VU_F_PROTOCOL_FEATURES 30u /* virtio feature bit reused by vhost-user */
#define VU_F_LOG_ALL 26u           /* VHOST_F_LOG_ALL */

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_IOTLB_MSG = 22,
    VU_SET_VRING_ENDIAN = 23,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_GET_INFLIGHT_FD = 31,
    VU_SET_INFLIGHT_FD = 32,
    VU_RESET_DEVICE = 34,
    VU_VRING_KICK = 35,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_STATUS = 39,
    VU_GET_STATUS = 40,
    VU_REQUEST_MAX = 41
};

/* Protocol feature bit numbers. */
enum vu_protocol_feature {
    VU_PF_NONE = -1, /* in the request table: the request belongs to no protocol feature */
    VU_PF_MQ = 0,
    VU_PF_LOG_SHMFD = 1,
    VU_PF_RARP = 2,
    VU_PF_REPLY_ACK = 3,
    VU_PF_MTU = 4,
    VU_PF_BACKEND_REQ = 5,
    VU_PF_CROSS_ENDIAN = 6,
    VU_PF_CONFIG = 9,
    VU_PF_BACKEND_SEND_FD = 10,
    VU_PF_INFLIGHT_SHMFD = 12,
    VU_PF_RESET_DEVICE = 13,
    VU_PF_INBAND_NOTIFICATIONS = 14,
    VU_PF_CONFIGURE_MEM_SLOTS = 15,
    VU_PF_STATUS = 16
};

/* Back-end to front-end requests (on the backend request channel). */
enum vu_backend_request {
    VU_BACKEND_CONFIG_CHANGE_MSG = 2
};

struct vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

struct vu_state {
    uint32_t index;
    uint32_t num;
};

struct vu_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc;  /* front-end virtual addresses (no IOMMU) */
    uint64_t used;
    uint64_t avail;
    uint64_t log;   /* guest-physical address of the used ring for logging */
};

struct vu_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
};

struct vu_mem {
    uint32_t nregions;
    uint32_t padding;
    struct vu_region r[VU_MAX_MEM_REGIONS];
};

struct vu_mem_single {
    uint64_t padding;
    struct vu_region r;
};

struct vu_log {
    uint64_t size;
    uint64_t offset;
};

struct vu_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t payload[VU_MAX_CONFIG];
};

struct vu_inflight {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
};

union vu_payload {
    uint64_t u64;
    struct vu_state state;
    struct vu_addr addr;
    struct vu_mem mem;
    struct vu_mem_single mem1;
    struct vu_log log;
    struct vu_config config;
    struct vu_inflight inflight;
    uint8_t raw[sizeof(struct vu_config) + 16];
};

/* A received (or to-be-sent) message with its fds. The receiver owns the fds
 * until a handler takes them (sets the slot to -1); vu_msg_close_fds() closes
 * the rest. */
struct vu_msg {
    struct vu_hdr hdr;
    union vu_payload p;
    int fds[VU_MAX_FDS];
    unsigned nfds;
};

/* Size rule: the payload kind of a request. */
enum vu_payload_kind {
    VU_P_NONE,      /* size 0 (a stray u64 of 0 is tolerated, see vu_msg_validate) */
    VU_P_U64,
    VU_P_STATE,     /* ring index below the queue count */
    VU_P_ADDR,      /* ring index below the queue count, known flags */
    VU_P_MEM,       /* 1..8 regions, non-empty, not wrapping, not overlapping */
    VU_P_MEM_SINGLE,
    VU_P_LOG,
    VU_P_CONFIG,    /* range inside 256 bytes */
    VU_P_INFLIGHT,  /* queue count and size the device can have */
    VU_P_VRING_FD   /* u64: index in bits 0-7, NOFD flag in bit 8 */
};

/* Fd allowance of a request. */
enum vu_fd_rule {
    VU_FD_NONE,       /* no fd */
    VU_FD_ONE,        /* exactly one (vu_req_info::fd_name says which) */
    VU_FD_OPTIONAL,   /* at most one, closed unused (REM_MEM_REG: older QEMU sends one) */
    VU_FD_PER_REGION, /* one per memory region */
    VU_FD_VRING       /* one, or none with the no-fd flag */
};

/* Reply rule of a request. */
enum vu_reply_rule {
    VU_REPLY_ACK,   /* no reply of its own: a u64 status (0 ok, 1 failed) when the front-end set
                     * NEED_REPLY and REPLY_ACK is negotiated */
    VU_REPLY_BODY,  /* always a reply body, sent by the handler */
    VU_REPLY_PF_ACK /* a u64 status always when the row's protocol feature is negotiated
                     * (SET_LOG_BASE with LOG_SHMFD: QEMU waits for it), else as VU_REPLY_ACK */
};

struct vio_vhost_user;
struct vu_validate_ctx;

/* A value rule beyond the size rule: 0, or a negative errno with a reason in @why. */
typedef int vu_check_fn(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                        size_t why_len);

/* Everything the transport knows about one front-end request: one row per request. */
struct vu_req_info {
    const char *name;
    uint8_t kind;        /* size rule: enum vu_payload_kind */
    uint8_t fds;         /* fd allowance: enum vu_fd_rule */
    uint8_t reply;       /* reply rule: enum vu_reply_rule */
    int8_t pf;           /* the protocol feature the request belongs to, -1 none; the transport
                          * offers every protocol feature a row names */
    bool gated;          /* refused unless @pf is negotiated */
    const char *fd_name; /* VU_FD_ONE: what the fd is, for the log ("needs the log fd") */
    vu_check_fn *check;  /* value rules of this request (NULL: none) */
    /* The handler: 0 or a negative errno (reported by REPLY_ACK); it takes the fds it keeps
     * out of @m (sets the slot to -1) and sets the connection to be dropped when nothing
     * useful can follow. */
    int (*handle)(struct vio_vhost_user *vu, struct vu_msg *m);
};

/* Table row for @req, NULL for requests we do not implement (vhost_user.c). */
const struct vu_req_info *vu_req_info(uint32_t req);

/* The protocol features the transport implements: REPLY_ACK (the dispatcher's) and every
 * protocol feature a table row names (vhost_user.c). */
uint64_t vu_protocol_features(void);

/* Value rules of individual requests (the check column of the table). */
vu_check_fn vu_check_vring_num;    /* SET_VRING_NUM: a power of 2 up to the maximum */
vu_check_fn vu_check_vring_base;   /* SET_VRING_BASE: 16 bits */
vu_check_fn vu_check_vring_enable; /* SET_VRING_ENABLE: 0 or 1 */
vu_check_fn vu_check_status;       /* SET_STATUS: 8 bits */
vu_check_fn vu_check_mtu;          /* NET_SET_MTU: 68..65535 */
vu_check_fn vu_check_set_inflight; /* SET_INFLIGHT_FD: a non-empty, non-wrapping range */

/* What the validator needs to know about the connection. */
struct vu_validate_ctx {
    unsigned num_queues;       /* queues of the device */
    uint16_t max_queue_size;   /* largest ring size */
    uint64_t protocol_features; /* negotiated protocol features */
};

/*
 * Check a decoded message against its table row (version and flags, protocol-feature gate,
 * size rule and the payload kind's value rules, fd allowance, the row's own check).
 * Returns 0 or a negative errno; @why (if non-NULL) gets a one-line reason.
 * Nothing is consumed or closed here.
 */
int vu_msg_validate(const struct vu_msg *m, const struct vu_validate_ctx *ctx, char *why,
                    size_t why_len);

/*
 * Decode a message from a byte buffer (header + payload) with @nfds fds
 * already received (the caller puts them in m->fds). Returns the bytes
 * consumed, -EAGAIN if the buffer holds less than a whole message, or
 * -EPROTO for a malformed header (size larger than any payload).
 */
int vu_msg_parse(const uint8_t *buf, size_t len, struct vu_msg *m);

/*
 * Receive one message from a connected socket: the header with its fds
 * (SCM_RIGHTS, close-on-exec), then exactly hdr.size payload bytes.
 * Returns 0, -ECONNRESET when the peer closed, -EAGAIN when nothing is
 * waiting, -EPROTO on a malformed or truncated message (any fds received are
 * closed), or another -errno from the socket.
 */
int vu_msg_recv(int sock, struct vu_msg *m);

/* Send a message (header + hdr.size payload bytes + m->nfds fds). */
int vu_msg_send(int sock, const struct vu_msg *m);

/* Close every fd still owned by the message. */
void vu_msg_close_fds(struct vu_msg *m);

/* Name of a request for logs ("SET_MEM_TABLE", "unknown(99)" ...). */
const char *vu_req_name(uint32_t req, char *buf, size_t len);

#endif
