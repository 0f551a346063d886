#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed inputs for fuzz_vhost_fe (layout: see tests/fuzz/fuzz_vhost_fe.c): well-formed backend
sessions for the target's fixed call sequence, with and without protocol features."""
import os
import struct
import sys

REPLY = 0x1 | 0x4
NEED = 0x8

def msg(req, payload=b"", flags=REPLY):
    return struct.pack("<III", req, flags, len(payload)) + payload

def u64(req, v):
    return msg(req, struct.pack("<Q", v))

def ack(req):
    return u64(req, 0)

GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE, SET_LOG_BASE, SET_LOG_FD = 1, 2, 3, 5, 6, 7
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PF, GET_QUEUE_NUM, SET_VRING_ENABLE, SET_BACKEND_REQ_FD = 15, 17, 18, 21
GET_CONFIG, SET_CONFIG, GET_INFLIGHT, SET_INFLIGHT, RESET_DEVICE = 24, 25, 31, 32, 34
GET_SLOTS, ADD_REG, REM_REG, SET_STATUS, GET_STATUS = 36, 37, 38, 39, 40
V1, PFBIT = 1 << 32, 1 << 30
PF_ALL = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 12) | (1 << 13) | \
    (1 << 15) | (1 << 16)

def full():
    s = [u64(GET_FEATURES, V1 | PFBIT), u64(GET_PF, PF_ALL), u64(GET_QUEUE_NUM, 1),
         ack(SET_BACKEND_REQ_FD), ack(SET_OWNER), ack(SET_FEATURES), ack(SET_MEM_TABLE),
         u64(GET_SLOTS, 8), ack(ADD_REG), ack(REM_REG)]
    for _ in range(2):
        s += [ack(r) for r in (SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK,
                               SET_VRING_CALL, SET_VRING_ERR, SET_VRING_ENABLE)]
    s += [msg(GET_VRING_BASE, struct.pack("<II", 1, 5)),
          msg(GET_CONFIG, struct.pack("<III", 0, 16, 0) + bytes(range(16))),
          ack(SET_CONFIG), ack(SET_STATUS), u64(GET_STATUS, 0xf)]
    inflight_idx = len(s)
    s += [msg(GET_INFLIGHT, struct.pack("<QQHHxxxx", 4096, 0, 2, 64)), ack(SET_INFLIGHT),
          u64(SET_LOG_BASE, 0), ack(SET_LOG_FD), ack(RESET_DEVICE),
          msg(GET_VRING_BASE, struct.pack("<II", 0, 0))]
    return s, inflight_idx

def seed(reply, breq, nfds=0, fd_msg=0, flags=0):
    r = b"".join(reply)
    return bytes([nfds | flags, fd_msg]) + struct.pack("<H", len(r)) + r + b"".join(breq)

def main(out):
    os.makedirs(out, exist_ok=True)
    breq = [msg(2, flags=0x1 | NEED), msg(77, flags=0x1 | NEED), msg(2, flags=0x1)]
    s, idx = full()
    seeds = {
        "full": seed(s, breq, 1, idx),
        "full_reconnect": seed(s, breq, 1, idx, 0x10),
        "full_no_inflight_fd": seed(s, breq),
        "no_protocol_features": seed([u64(GET_FEATURES, V1),
                                      msg(GET_VRING_BASE, struct.pack("<II", 1, 9)),
                                      msg(GET_VRING_BASE, struct.pack("<II", 0, 0))], []),
        "no_reply_ack": seed([u64(GET_FEATURES, V1 | PFBIT), u64(GET_PF, (1 << 5) | (1 << 16)),
                              msg(GET_VRING_BASE, struct.pack("<II", 1, 3)),
                              u64(GET_STATUS, 0xf)], breq),
        "wrong_code": seed([u64(GET_PF, V1)], []),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "vhost_fe"))
