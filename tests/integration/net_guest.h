/* SPDX-License-Identifier: MIT */
/*
 * net_guest: a tiny guest network stack on top of net_local (driver helper + device model),
 * enough for the integration tests and the tap benchmark: ARP (request, reply, responder),
 * ICMP echo (both directions), a one-connection TCP receiver (handshake, in-order data
 * checked against a known pattern, ACKs, FIN), TCP/UDP frame builders with GSO metadata,
 * and the Internet checksum. IPv4 only.
 */
#ifndef VIO_TEST_NET_GUEST_H
#define VIO_TEST_NET_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net_local.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_FRAME_MAX 65600u

/* The byte at offset @p off of the test stream (a cheap non-repeating pattern). */
static inline uint8_t ng_pattern(uint64_t off)
{
    uint64_t x = (off >> 8) * 0x9e3779b97f4a7c15ull;
    return (uint8_t)((x >> 56) ^ off);
}

/* FNV-1a 64 over a stream, continued from @p h (start with NG_FNV_INIT). */
#define NG_FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t ng_fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Internet checksum helpers (RFC 1071); sums are of big-endian 16-bit words. */
uint32_t ng_csum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t ng_csum_fold(uint32_t sum);
/* Pseudo-header sum for TCP/UDP over IPv4 (addresses in host order). */
uint32_t ng_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t l4_len);

struct ng_stats {
    unsigned long tx_frames, rx_frames;
    unsigned long arp_req_tx, arp_rep_rx, arp_req_rx, arp_rep_tx;
    unsigned long echo_req_tx, echo_rep_rx, echo_rep_bad, echo_req_rx, echo_rep_tx;
    unsigned long gso_frames, multi_buf_frames, max_bufs, max_frame;
    unsigned long csum_checked, csum_bad, l4_partial;
    unsigned long tcp_segs, tcp_dup, tcp_ooo, tcp_bad_data;
};

struct ng_tcp {
    bool listening, established, fin_rx, done;
    uint16_t port, peer_port;
    uint32_t peer_ip;
    uint32_t irs, rcv_nxt, iss, snd_nxt;
    uint64_t bytes;
    uint64_t fnv;
};

struct guest {
    struct net_local nl;
    uint8_t mac[6];
    uint32_t ip, peer_ip; /* host order */
    uint8_t peer_mac[6];
    bool have_peer_mac;
    uint16_t mtu;
    struct ng_stats st;
    struct ng_tcp tcp;
    uint16_t ip_id;
    bool quiet; /* set before ng_open(): no library log output */
    uint8_t rx[NG_FRAME_MAX];
    uint8_t tx[NG_FRAME_MAX];
};

/* Open the guest on an opened backend (features: what the guest wants). */
int ng_open(struct guest *g, struct vio_net_backend *be, uint64_t want, const uint8_t mac[6],
            uint32_t ip, uint32_t peer_ip, uint16_t mtu);
void ng_close(struct guest *g);

/* Send a frame (header may be NULL); retries while the ring is full. 0 or -errno. */
int ng_send(struct guest *g, const struct vio_net_hdr *h, const uint8_t *frame, size_t len);

/* Poll the device's fds up to @p timeout_ms, then receive and handle every frame.
 * Returns frames handled. */
int ng_pump(struct guest *g, int timeout_ms);

/* Monotonic milliseconds. */
uint64_t ng_now_ms(void);

/* ARP for peer_ip until answered (or timeout). 0 / -ETIMEDOUT. */
int ng_arp_resolve(struct guest *g, int timeout_ms);

/* Send one ICMP echo request (id, seq, @p payload bytes of pattern) to peer_ip. */
int ng_ping_send(struct guest *g, uint16_t id, uint16_t seq, size_t payload);

/* Start listening for one TCP connection on @p port. */
void ng_tcp_listen(struct guest *g, uint16_t port);

/*
 * Build a TCP/IPv4 frame from the guest to (dst_mac, dst_ip:dport) carrying @p len
 * pattern bytes starting at stream offset @p off (sequence number isn = off + 1).
 * With gso_size != 0 the header asks for TSO (NEEDS_CSUM, GSO_TCPV4), else the TCP
 * checksum is computed here. Returns the frame length.
 */
size_t ng_build_tcp(struct guest *g, uint8_t *f, struct vio_net_hdr *h, const uint8_t dst_mac[6],
                    uint32_t dst_ip, uint16_t sport, uint16_t dport, uint64_t off, size_t len,
                    uint16_t gso_size);

/* Build a UDP/IPv4 frame with @p len pattern bytes; csum_offload: leave it to the device
 * (NEEDS_CSUM); gso_type/gso_size: UDP segmentation / fragmentation offload. */
size_t ng_build_udp(struct guest *g, uint8_t *f, struct vio_net_hdr *h, const uint8_t dst_mac[6],
                    uint32_t dst_ip, uint16_t sport, uint16_t dport, size_t len, bool csum_offload,
                    uint8_t gso_type, uint16_t gso_size);

void ng_print_stats(const struct guest *g, const char *tag);

/* /sys/class/net/<ifname>/statistics/<name>, or -1. */
long long ng_if_stat(const char *ifname, const char *name);

#ifdef __cplusplus
}
#endif
#endif
