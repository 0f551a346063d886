/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for vio_net_hdr_check() (src/device/net.c): the checks a TX header from the
 * driver goes through before a backend sees it.
 *
 * Input layout:
 *   bytes 0-11   the virtio-net header exactly as the driver wrote it (little-endian fields)
 *   bytes 12-15  frame length, little-endian; values with bit 31 clear are reduced modulo
 *                2^17 so that lengths around the 64 KiB limit are common
 *   bytes 16-23  negotiated features, little-endian (missing: every TX offload)
 *
 * Oracles (abort on violation):
 *   - the result is 0, -EINVAL, -EPROTO or -EMSGSIZE, and the same on a second call;
 *   - -EMSGSIZE exactly when the frame length is outside [14, VIO_NET_MAX_FRAME_LEN];
 *   - an accepted header satisfies every rule independently re-checked here (known GSO type
 *     allowed by its HOST_ feature, ECN only on TCP with HOST_ECN, NEEDS_CSUM only with CSUM,
 *     GSO only with NEEDS_CSUM and an MSS, checksum field and hdr_len inside the frame);
 *   - and a backend may use it: the frame is allocated with exactly frame_len bytes and the
 *     checksum field and the first hdr_len bytes are touched, so ASan catches any header that
 *     points outside the frame.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/net.h"
#include "virtio/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_net_hdr: line %d: %s: ", __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define FB(b) ((uint64_t)1 << (b))

static bool has(uint64_t f, unsigned b)
{
    return (f >> b) & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < VIO_NET_HDR_SIZE)
        return 0;
    struct vio_net_hdr h;
    memcpy(&h, data, VIO_NET_HDR_SIZE);
    size_t frame_len = 60;
    if (size >= 16) {
        uint32_t v;
        memcpy(&v, data + 12, 4);
        v = le32toh(v);
        frame_len = (v & 0x80000000u) ? v : v % (1u << 17);
    }
    uint64_t f = FB(VIO_F_VERSION_1) | FB(VIO_NET_F_CSUM) | FB(VIO_NET_F_HOST_TSO4) |
                 FB(VIO_NET_F_HOST_TSO6) | FB(VIO_NET_F_HOST_ECN) | FB(VIO_NET_F_HOST_UFO) |
                 FB(VIO_NET_F_HOST_USO);
    if (size >= 24) {
        memcpy(&f, data + 16, 8);
        f = le64toh(f);
    }

    int r = vio_net_hdr_check(&h, frame_len, f);
    CHECK(r == 0 || r == -EINVAL || r == -EPROTO || r == -EMSGSIZE, "result %d", r);
    CHECK(vio_net_hdr_check(&h, frame_len, f) == r, "not deterministic");
    bool len_bad = frame_len < VIO_NET_MIN_FRAME_LEN || frame_len > VIO_NET_MAX_FRAME_LEN;
    CHECK((r == -EMSGSIZE) == len_bad, "frame_len %zu result %d", frame_len, r);
    if (r != 0)
        return 0;

    unsigned gso = h.gso_type & ~VIO_NET_HDR_GSO_ECN;
    bool ecn = h.gso_type & VIO_NET_HDR_GSO_ECN;
    bool csum = h.flags & VIO_NET_HDR_F_NEEDS_CSUM;
    size_t cs = le16toh(h.csum_start), co = le16toh(h.csum_offset), hl = le16toh(h.hdr_len);
    switch (gso) {
    case VIO_NET_HDR_GSO_NONE: break;
    case VIO_NET_HDR_GSO_TCPV4: CHECK(has(f, VIO_NET_F_HOST_TSO4), "TSO4 not negotiated"); break;
    case VIO_NET_HDR_GSO_TCPV6: CHECK(has(f, VIO_NET_F_HOST_TSO6), "TSO6 not negotiated"); break;
    case VIO_NET_HDR_GSO_UDP: CHECK(has(f, VIO_NET_F_HOST_UFO), "UFO not negotiated"); break;
    case VIO_NET_HDR_GSO_UDP_L4: CHECK(has(f, VIO_NET_F_HOST_USO), "USO not negotiated"); break;
    default: CHECK(0, "unknown gso_type 0x%x accepted", h.gso_type);
    }
    if (ecn)
        CHECK(has(f, VIO_NET_F_HOST_ECN) &&
                  (gso == VIO_NET_HDR_GSO_TCPV4 || gso == VIO_NET_HDR_GSO_TCPV6),
              "ECN accepted on gso_type 0x%x", h.gso_type);
    if (csum)
        CHECK(has(f, VIO_NET_F_CSUM), "NEEDS_CSUM without CSUM");
    if (gso != VIO_NET_HDR_GSO_NONE)
        CHECK(csum && le16toh(h.gso_size) != 0, "GSO without NEEDS_CSUM or MSS");
    CHECK(hl <= frame_len, "hdr_len %zu > frame %zu", hl, frame_len);

    /* What a backend does with an accepted header, on a frame of exactly frame_len bytes. */
    uint8_t *frame = malloc(frame_len);
    CHECK(frame != NULL, "malloc");
    memset(frame, 0, hl);
    if (csum) {
        CHECK(cs + co + 2 <= frame_len, "checksum field %zu+%zu outside %zu", cs, co, frame_len);
        frame[cs + co] = 0xab;
        frame[cs + co + 1] = 0xcd;
    }
    volatile uint8_t sink = frame[frame_len - 1];
    (void)sink;
    free(frame);
    return 0;
}
