/* SPDX-License-Identifier: MIT */
/* net_guest: a tiny IPv4 guest stack over net_local (see net_guest.h). */
#include "net_guest.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "virtio/status.h"

#define ETH_HLEN_ 14u
#define ET_IPV4 0x0800u
#define ET_ARP 0x0806u
#define IPP_ICMP 1u
#define IPP_TCP 6u
#define IPP_UDP 17u
#define TH_FIN 0x01u
#define TH_SYN 0x02u
#define TH_RST 0x04u
#define TH_PSH 0x08u
#define TH_ACK 0x10u

static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t ng_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    uint64_t s = sum;
    size_t i = 0;
    for (; i + 1 < len; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (i < len)
        s += (uint32_t)p[i] << 8;
    while (s >> 32)
        s = (s & 0xffffffffu) + (s >> 32);
    return (uint32_t)s;
}

uint16_t ng_csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

uint32_t ng_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t l4_len)
{
    uint64_t s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
                 (l4_len >> 16) + (l4_len & 0xffff);
    while (s >> 32)
        s = (s & 0xffffffffu) + (s >> 32);
    return (uint32_t)s;
}

uint64_t ng_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

long long ng_if_stat(const char *ifname, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Frame building                                                            */

static uint8_t *eth(struct guest *g, uint8_t *f, const uint8_t dst[6], uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, g->mac, 6);
    put16(f + 12, type);
    return f + ETH_HLEN_;
}

static void ipv4(struct guest *g, uint8_t *ip, uint32_t dst, uint8_t proto, size_t l4_len)
{
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4_len));
    put16(ip + 4, g->ip_id++);
    put16(ip + 6, 0x4000); /* DF */
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, g->ip);
    put32(ip + 16, dst);
    put16(ip + 10, (uint16_t)~ng_csum_fold(ng_csum_add(0, ip, 20)));
}

int ng_send(struct guest *g, const struct vio_net_hdr *h, const uint8_t *frame, size_t len)
{
    uint64_t deadline = ng_now_ms() + 5000;
    for (;;) {
        int r = vio_net_driver_send(g->nl.drv, 0, h, frame, len);
        if (r == 0)
            break;
        if (r != -ENOSPC)
            return r;
        /* The device may be waiting for the backend to drain: let it run. */
        vio_net_driver_kick(g->nl.drv, VIO_NET_DRIVER_TXQ(0));
        net_local_poll(&g->nl, 1);
        vio_net_driver_tx_reclaim(g->nl.drv, 0, NULL, 0);
        if (ng_now_ms() > deadline)
            return -ETIMEDOUT;
    }
    g->st.tx_frames++;
    vio_net_driver_kick(g->nl.drv, VIO_NET_DRIVER_TXQ(0));
    return 0;
}

static int send_arp(struct guest *g, uint16_t op, const uint8_t tha[6], uint32_t tpa)
{
    uint8_t f[60];
    memset(f, 0, sizeof(f));
    uint8_t *a = eth(g, f, op == 1 ? BCAST : tha, ET_ARP);
    put16(a, 1);
    put16(a + 2, ET_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, g->mac, 6);
    put32(a + 14, g->ip);
    if (op == 2)
        memcpy(a + 18, tha, 6);
    put32(a + 24, tpa);
    return ng_send(g, NULL, f, sizeof(f));
}

int ng_ping_send(struct guest *g, uint16_t id, uint16_t seq, size_t payload)
{
    uint8_t *f = g->tx;
    uint8_t *ip = eth(g, f, g->peer_mac, ET_IPV4);
    uint8_t *ic = ip + 20;
    size_t l4 = 8 + payload;
    ipv4(g, ip, g->peer_ip, IPP_ICMP, l4);
    ic[0] = 8;
    ic[1] = 0;
    put16(ic + 2, 0);
    put16(ic + 4, id);
    put16(ic + 6, seq);
    for (size_t i = 0; i < payload; i++)
        ic[8 + i] = ng_pattern((uint64_t)seq * 1000 + i);
    put16(ic + 2, (uint16_t)~ng_csum_fold(ng_csum_add(0, ic, l4)));
    g->st.echo_req_tx++;
    return ng_send(g, NULL, f, ETH_HLEN_ + 20 + l4);
}

size_t ng_build_tcp(struct guest *g, uint8_t *f, struct vio_net_hdr *h, const uint8_t dst_mac[6],
                    uint32_t dst_ip, uint16_t sport, uint16_t dport, uint64_t off, size_t len,
                    uint16_t gso_size)
{
    uint8_t *ip = eth(g, f, dst_mac, ET_IPV4);
    uint8_t *th = ip + 20;
    size_t l4 = 20 + len;
    ipv4(g, ip, dst_ip, IPP_TCP, l4);
    memset(th, 0, 20);
    put16(th, sport);
    put16(th + 2, dport);
    put32(th + 4, (uint32_t)(off + 1));
    put32(th + 8, 1);
    th[12] = 5 << 4;
    th[13] = TH_ACK | TH_PSH;
    put16(th + 14, 65535);
    for (size_t i = 0; i < len; i++)
        th[20 + i] = ng_pattern(off + i);
    memset(h, 0, sizeof(*h));
    uint32_t ps = ng_pseudo_sum(g->ip, dst_ip, IPP_TCP, (uint32_t)l4);
    if (gso_size) {
        /* As a Linux guest does for CHECKSUM_PARTIAL: the field holds the folded
         * pseudo-header sum, the device (or its segmentation) completes it. */
        put16(th + 16, ng_csum_fold(ps));
        h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
        h->gso_type = VIO_NET_HDR_GSO_TCPV4;
        h->gso_size = htole16(gso_size);
        h->hdr_len = htole16(ETH_HLEN_ + 20 + 20);
        h->csum_start = htole16(ETH_HLEN_ + 20);
        h->csum_offset = htole16(16);
    } else {
        put16(th + 16, (uint16_t)~ng_csum_fold(ng_csum_add(ps, th, l4)));
    }
    return ETH_HLEN_ + 20 + l4;
}

size_t ng_build_udp(struct guest *g, uint8_t *f, struct vio_net_hdr *h, const uint8_t dst_mac[6],
                    uint32_t dst_ip, uint16_t sport, uint16_t dport, size_t len, bool csum_offload,
                    uint8_t gso_type, uint16_t gso_size)
{
    uint8_t *ip = eth(g, f, dst_mac, ET_IPV4);
    uint8_t *uh = ip + 20;
    size_t l4 = 8 + len;
    ipv4(g, ip, dst_ip, IPP_UDP, l4);
    if (gso_type == VIO_NET_HDR_GSO_UDP) {
        /* fragmentation offload: the datagram leaves as IP fragments, so no DF */
        put16(ip + 6, 0);
        put16(ip + 10, 0);
        put16(ip + 10, (uint16_t)~ng_csum_fold(ng_csum_add(0, ip, 20)));
    }
    put16(uh, sport);
    put16(uh + 2, dport);
    put16(uh + 4, (uint16_t)l4);
    put16(uh + 6, 0);
    for (size_t i = 0; i < len; i++)
        uh[8 + i] = ng_pattern(i);
    memset(h, 0, sizeof(*h));
    uint32_t ps = ng_pseudo_sum(g->ip, dst_ip, IPP_UDP, (uint32_t)l4);
    if (csum_offload || gso_type) {
        put16(uh + 6, ng_csum_fold(ps));
        h->flags = VIO_NET_HDR_F_NEEDS_CSUM;
        h->csum_start = htole16(ETH_HLEN_ + 20);
        h->csum_offset = htole16(6);
    } else {
        uint16_t c = (uint16_t)~ng_csum_fold(ng_csum_add(ps, uh, l4));
        put16(uh + 6, c ? c : 0xffff);
    }
    if (gso_type) {
        h->gso_type = gso_type;
        h->gso_size = htole16(gso_size);
        h->hdr_len = htole16(ETH_HLEN_ + 20 + 8);
    }
    return ETH_HLEN_ + 20 + l4;
}

/* ------------------------------------------------------------------------ */
/* Receive path                                                              */

static void tcp_send_ctl(struct guest *g, uint8_t flags, bool syn_opts)
{
    uint8_t f[80];
    memset(f, 0, sizeof(f));
    uint8_t *ip = eth(g, f, g->peer_mac, ET_IPV4);
    uint8_t *th = ip + 20;
    size_t thl = syn_opts ? 28 : 20;
    ipv4(g, ip, g->tcp.peer_ip, IPP_TCP, thl);
    put16(th, g->tcp.port);
    put16(th + 2, g->tcp.peer_port);
    put32(th + 4, g->tcp.snd_nxt);
    put32(th + 8, g->tcp.rcv_nxt);
    th[12] = (uint8_t)((thl / 4) << 4);
    th[13] = flags;
    put16(th + 14, 65535); /* scaled by 2^7 once window scaling is agreed: 8 MiB */
    if (syn_opts) {
        uint8_t *o = th + 20;
        o[0] = 2; /* MSS 1460 */
        o[1] = 4;
        put16(o + 2, 1460);
        o[4] = 1; /* NOP */
        o[5] = 3; /* window scale 7 */
        o[6] = 3;
        o[7] = 7;
    }
    uint32_t ps = ng_pseudo_sum(g->ip, g->tcp.peer_ip, IPP_TCP, (uint32_t)thl);
    put16(th + 16, (uint16_t)~ng_csum_fold(ng_csum_add(ps, th, thl)));
    ng_send(g, NULL, f, ETH_HLEN_ + 20 + thl);
}

void ng_tcp_listen(struct guest *g, uint16_t port)
{
    memset(&g->tcp, 0, sizeof(g->tcp));
    g->tcp.listening = true;
    g->tcp.port = port;
    g->tcp.iss = 0x10000;
    g->tcp.fnv = NG_FNV_INIT;
}

static void tcp_input(struct guest *g, uint32_t src, const uint8_t *th, size_t seglen)
{
    struct ng_tcp *t = &g->tcp;
    if (seglen < 20 || get16(th + 2) != t->port || (!t->listening && !t->established))
        return;
    size_t thl = (size_t)(th[12] >> 4) * 4;
    if (thl < 20 || thl > seglen)
        return;
    uint8_t fl = th[13];
    uint32_t seq = get32(th + 4);
    const uint8_t *data = th + thl;
    size_t dlen = seglen - thl;
    if (fl & TH_RST) {
        t->done = true;
        return;
    }
    if (t->listening && (fl & TH_SYN) && !(fl & TH_ACK)) {
        t->listening = false;
        t->established = true;
        t->peer_ip = src;
        t->peer_port = get16(th);
        t->irs = seq;
        t->rcv_nxt = seq + 1;
        t->snd_nxt = t->iss;
        tcp_send_ctl(g, TH_SYN | TH_ACK, true);
        t->snd_nxt = t->iss + 1;
        return;
    }
    if (!t->established || get16(th) != t->peer_port)
        return;
    if (fl & TH_SYN) { /* retransmitted SYN: answer again */
        t->snd_nxt = t->iss;
        tcp_send_ctl(g, TH_SYN | TH_ACK, true);
        t->snd_nxt = t->iss + 1;
        return;
    }
    g->st.tcp_segs++;
    bool ack_needed = dlen > 0 || (fl & TH_FIN);
    int32_t d = (int32_t)(t->rcv_nxt - seq);
    if (d > 0) { /* (partly) old data */
        if ((size_t)d >= dlen) {
            g->st.tcp_dup++;
            dlen = 0;
        } else {
            data += d;
            dlen -= (size_t)d;
            seq = t->rcv_nxt;
        }
    }
    if (dlen && seq != t->rcv_nxt) {
        g->st.tcp_ooo++; /* a gap: drop, the duplicate ACK makes the sender fill it */
        tcp_send_ctl(g, TH_ACK, false);
        return;
    }
    if (dlen) {
        uint64_t off = (uint32_t)(seq - t->irs - 1);
        for (size_t i = 0; i < dlen; i++)
            if (data[i] != ng_pattern(off + i)) {
                if (g->st.tcp_bad_data++ == 0)
                    fprintf(stderr, "guest: tcp data mismatch at stream offset %llu\n",
                            (unsigned long long)(off + i));
                break;
            }
        t->fnv = ng_fnv(t->fnv, data, dlen);
        t->bytes += dlen;
        t->rcv_nxt += (uint32_t)dlen;
    }
    if ((fl & TH_FIN) && seq + dlen == t->rcv_nxt && !t->fin_rx) {
        t->fin_rx = true;
        t->rcv_nxt++;
        tcp_send_ctl(g, TH_FIN | TH_ACK, false);
        t->snd_nxt++;
        t->done = true;
        return;
    }
    if (ack_needed)
        tcp_send_ctl(g, TH_ACK, false);
}

/* Verify a fully checksummed L4 (TCP/UDP/ICMP) segment; partial ones are counted. */
static void check_l4(struct guest *g, const struct vio_net_hdr *h, const uint8_t *ip, uint8_t proto,
                     const uint8_t *l4, size_t l4len)
{
    if (h->flags & VIO_NET_HDR_F_NEEDS_CSUM) {
        g->st.l4_partial++;
        return;
    }
    if (h->gso_type != VIO_NET_HDR_GSO_NONE)
        return;
    uint32_t s = proto == IPP_ICMP ? 0 : ng_pseudo_sum(get32(ip + 12), get32(ip + 16), proto,
                                                       (uint32_t)l4len);
    g->st.csum_checked++;
    if (ng_csum_fold(ng_csum_add(s, l4, l4len)) != 0xffff) {
        if (g->st.csum_bad++ == 0)
            fprintf(stderr, "guest: bad checksum (proto %u, %zu bytes)\n", proto, l4len);
    }
}

static void handle_frame(struct guest *g, const struct vio_net_hdr *h, uint8_t *f, size_t len)
{
    g->st.rx_frames++;
    unsigned nb = le16toh(h->num_buffers);
    if (nb > 1)
        g->st.multi_buf_frames++;
    if (nb > g->st.max_bufs)
        g->st.max_bufs = nb;
    if (len > g->st.max_frame)
        g->st.max_frame = len;
    if ((h->gso_type & ~VIO_NET_HDR_GSO_ECN) != VIO_NET_HDR_GSO_NONE)
        g->st.gso_frames++;
    if (len < ETH_HLEN_)
        return;
    if (memcmp(f, g->mac, 6) != 0 && memcmp(f, BCAST, 6) != 0)
        return;
    uint16_t type = get16(f + 12);
    uint8_t *p = f + ETH_HLEN_;
    size_t plen = len - ETH_HLEN_;
    if (type == ET_ARP && plen >= 28) {
        uint16_t op = get16(p + 6);
        uint32_t spa = get32(p + 14), tpa = get32(p + 24);
        if (op == 1 && tpa == g->ip) {
            g->st.arp_req_rx++;
            if (spa == g->peer_ip && !g->have_peer_mac) {
                memcpy(g->peer_mac, p + 8, 6);
                g->have_peer_mac = true;
            }
            uint8_t sha[6];
            memcpy(sha, p + 8, 6);
            g->st.arp_rep_tx++;
            send_arp(g, 2, sha, spa);
        } else if (op == 2 && tpa == g->ip && spa == g->peer_ip) {
            g->st.arp_rep_rx++;
            memcpy(g->peer_mac, p + 8, 6);
            g->have_peer_mac = true;
        }
        return;
    }
    if (type != ET_IPV4 || plen < 20 || (p[0] >> 4) != 4)
        return;
    size_t ihl = (size_t)(p[0] & 15) * 4;
    size_t tot = get16(p + 2);
    if (tot == 0) /* large GSO frames may leave it 0 */
        tot = plen;
    if (ihl < 20 || tot < ihl || tot > plen)
        return;
    if (ng_csum_fold(ng_csum_add(0, p, ihl)) != 0xffff) {
        g->st.csum_bad++;
        return;
    }
    if (get32(p + 16) != g->ip)
        return;
    uint8_t proto = p[9];
    uint8_t *l4 = p + ihl;
    size_t l4len = tot - ihl;
    check_l4(g, h, p, proto, l4, l4len);
    if (proto == IPP_ICMP && l4len >= 8) {
        if (l4[0] == 8) {
            /* Echo request: answer with the same id, seq and data. */
            g->st.echo_req_rx++;
            uint32_t src = get32(p + 12);
            uint8_t *o = g->tx;
            uint8_t *src_mac = f + 6;
            uint8_t *ip = eth(g, o, src_mac, ET_IPV4);
            ipv4(g, ip, src, IPP_ICMP, l4len);
            memcpy(ip + 20, l4, l4len);
            ip[20] = 0;
            put16(ip + 22, 0);
            put16(ip + 22, (uint16_t)~ng_csum_fold(ng_csum_add(0, ip + 20, l4len)));
            g->st.echo_rep_tx++;
            ng_send(g, NULL, o, ETH_HLEN_ + 20 + l4len);
        } else if (l4[0] == 0) {
            uint16_t seq = get16(l4 + 6);
            bool ok = true;
            for (size_t i = 8; i < l4len; i++)
                ok &= l4[i] == ng_pattern((uint64_t)seq * 1000 + i - 8);
            if (ok)
                g->st.echo_rep_rx++;
            else
                g->st.echo_rep_bad++;
        }
        return;
    }
    if (proto == IPP_TCP)
        tcp_input(g, get32(p + 12), l4, l4len);
}

int ng_pump(struct guest *g, int timeout_ms)
{
    net_local_poll(&g->nl, timeout_ms);
    int n = 0;
    for (;;) {
        struct vio_net_hdr h;
        ssize_t r = vio_net_driver_recv(g->nl.drv, 0, &h, g->rx, sizeof(g->rx));
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            fprintf(stderr, "guest: recv: %s\n", strerror((int)-r));
            if (r == -EIO)
                break;
            continue;
        }
        handle_frame(g, &h, g->rx, (size_t)r);
        n++;
    }
    vio_net_driver_kick(g->nl.drv, VIO_NET_DRIVER_RXQ(0));
    vio_net_driver_tx_reclaim(g->nl.drv, 0, NULL, 0);
    return n;
}

int ng_arp_resolve(struct guest *g, int timeout_ms)
{
    uint64_t deadline = ng_now_ms() + (uint64_t)timeout_ms;
    while (!g->have_peer_mac && ng_now_ms() < deadline) {
        g->st.arp_req_tx++;
        send_arp(g, 1, BCAST, g->peer_ip);
        uint64_t next = ng_now_ms() + 300;
        while (!g->have_peer_mac && ng_now_ms() < next)
            ng_pump(g, 20);
    }
    return g->have_peer_mac ? 0 : -ETIMEDOUT;
}

int ng_open(struct guest *g, struct vio_net_backend *be, uint64_t want, const uint8_t mac[6],
            uint32_t ip, uint32_t peer_ip, uint16_t mtu)
{
    memcpy(g->mac, mac, 6);
    g->ip = ip;
    g->peer_ip = peer_ip;
    g->mtu = mtu;
    g->ip_id = 1;
    struct net_local_config c = {
        .be = be,
        .want = want,
        .queue_size = 256,
        .log = g->quiet ? NULL : vio_log_stderr,
    };
    memcpy(c.mac, mac, 6);
    int r = net_local_open(&g->nl, &c);
    if (r < 0)
        return r;
    net_local_refill(&g->nl);
    return 0;
}

void ng_close(struct guest *g)
{
    net_local_close(&g->nl);
}

void ng_print_stats(const struct guest *g, const char *tag)
{
    const struct ng_stats *s = &g->st;
    printf("%s: guest tx %lu rx %lu | arp req tx %lu rep rx %lu req rx %lu rep tx %lu | icmp req tx "
           "%lu rep rx %lu (bad %lu) req rx %lu rep tx %lu\n",
           tag, s->tx_frames, s->rx_frames, s->arp_req_tx, s->arp_rep_rx, s->arp_req_rx,
           s->arp_rep_tx, s->echo_req_tx, s->echo_rep_rx, s->echo_rep_bad, s->echo_req_rx,
           s->echo_rep_tx);
    printf("%s: rx gso frames %lu, multi-buffer frames %lu (max %lu buffers), largest frame %lu, "
           "checksums checked %lu bad %lu partial %lu\n",
           tag, s->gso_frames, s->multi_buf_frames, s->max_bufs, s->max_frame, s->csum_checked,
           s->csum_bad, s->l4_partial);
}
