#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of fuzz_chain (tests/fuzz/corpus/chain/).

Each seed follows the input layout documented at the top of fuzz_chain.c:
  byte 0: bits 0-1 memory layout (0 one region, 1 two adjacent regions split at 8 KiB,
          2 the same with a 4 KiB hole after 8 KiB, 3 like 1 with region 1 read-only),
          bits 2-5 log2 queue size, bits 6-7 direction (1 out only, 2 in only)
  byte 1: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 IN_ORDER, bit 3 driver-side mode,
          bit 4 inflight tracking, bit 5 dirty log of 1 + 4 * (bits 6-7) bytes
  bytes 2-9: op script
  rest: device mode: guest memory image from guest address 0 (descriptor table at 0, avail
        ring after it, used ring 4-aligned after that); driver mode: used-ring images.

Usage: gen_chain_seeds.py [output-dir]   (default: corpus/chain next to this script)
"""
import os
import struct
import sys

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
INDIRECT, EVENT_IDX, IN_ORDER, DRIVER = 1, 2, 4, 8
SPLIT = 0x2000  # region boundary of layouts 1-3 (and start of the hole of layout 2)
DATA = 0x1000   # plain data buffers live here (mapped, zeroed, not in the image)

# op script bytes (low 3 bits = op, see run_device())
POP, POP_SMALL, PUSH, PUSH_MANY, REWIND, NOTIFY, BUMP, PUBLISH = range(8)
DEFAULT_OPS = [POP, PUSH | (1 << 5), NOTIFY, POP | 8, PUSH_MANY | (3 << 3), NOTIFY | (1 << 3),
               POP_SMALL | (1 << 3), REWIND | (1 << 3)]
IN_ORDER_OPS = [POP, POP, POP, PUSH_MANY | 0x80 | (2 << 3), NOTIFY, POP, PUSH, NOTIFY | (1 << 3)]


def layout(size):
    avail = 16 * size
    used = (avail + 6 + 2 * size + 3) & ~3
    return avail, used, used + 6 + 8 * size


class Image:
    def __init__(self, size):
        self.size = size
        self.avail, self.used, end = layout(size)
        self.mem = bytearray(end)

    def put(self, addr, data):
        if len(self.mem) < addr + len(data):
            self.mem.extend(bytes(addr + len(data) - len(self.mem)))
        self.mem[addr:addr + len(data)] = data

    def desc(self, i, addr, length, flags=0, nxt=0, table=0):
        where = table + 16 * i if table else 16 * i
        self.put(where, struct.pack('<QIHH', addr, length, flags, nxt))

    def publish(self, heads, start=0):
        for k, h in enumerate(heads):
            self.put(self.avail + 4 + 2 * ((start + k) % self.size), struct.pack('<H', h))
        self.put(self.avail + 2, struct.pack('<H', (start + len(heads)) & 0xffff))

    def used_idx(self, idx):
        self.put(self.used + 2, struct.pack('<H', idx))


def seed(kind, lg, feat, ops, img, direction=0):
    hdr = bytes([kind | (lg << 2) | (direction << 6), feat]) + bytes(ops)
    return hdr + bytes(img)


def device_seeds():
    s = {}
    # valid: one readable descriptor
    m = Image(4)
    m.desc(0, DATA, 64)
    m.publish([0])
    s['valid_single'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # valid: readable header then two writable descriptors, plus a second chain
    m = Image(4)
    m.desc(0, DATA, 16, F_NEXT, 1)
    m.desc(1, DATA + 0x100, 128, F_WRITE | F_NEXT, 2)
    m.desc(2, DATA + 0x200, 256, F_WRITE)
    m.desc(3, DATA + 0x300, 32, F_WRITE)
    m.publish([0, 3])
    s['valid_chain3'] = seed(0, 2, EVENT_IDX, DEFAULT_OPS, m.mem)
    # valid indirect table (inside the image, after the rings)
    m = Image(4)
    t = 0x200
    m.desc(0, DATA, 16, F_NEXT, 1, table=t)
    m.desc(1, DATA + 0x100, 64, F_WRITE, 0, table=t)
    m.desc(0, t, 32, F_INDIRECT)
    m.publish([0])
    s['indirect_valid'] = seed(0, 2, INDIRECT, DEFAULT_OPS, m.mem)
    # buffer across the region boundary: two iovecs
    m = Image(4)
    m.desc(0, SPLIT - 32, 64, F_WRITE)
    m.publish([0])
    s['straddle_buffer'] = seed(1, 2, 0, DEFAULT_OPS, m.mem)
    # indirect table across the region boundary (read piecewise)
    m = Image(4)
    t = SPLIT - 16
    m.desc(0, DATA, 8, F_NEXT, 1, table=t)
    m.desc(1, DATA + 0x40, 8, F_WRITE, 0, table=t)
    m.desc(0, t, 32, F_INDIRECT)
    m.publish([0])
    s['indirect_straddle'] = seed(1, 2, INDIRECT, DEFAULT_OPS, m.mem)
    # buffer in the hole
    m = Image(4)
    m.desc(0, SPLIT + 0x10, 16)
    m.publish([0])
    s['hole'] = seed(2, 2, 0, DEFAULT_OPS, m.mem)
    # writable buffer in a read-only region
    m = Image(4)
    m.desc(0, SPLIT + 0x100, 16, F_WRITE)
    m.publish([0])
    s['readonly_write'] = seed(3, 2, 0, DEFAULT_OPS, m.mem)
    # loop 0 -> 1 -> 0
    m = Image(4)
    m.desc(0, DATA, 8, F_NEXT, 1)
    m.desc(1, DATA, 8, F_NEXT, 0)
    m.publish([0])
    s['loop'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # next index out of range
    m = Image(4)
    m.desc(0, DATA, 8, F_NEXT, 7)
    m.publish([0])
    s['next_range'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # head out of range
    m = Image(4)
    m.desc(0, DATA, 8)
    m.publish([9])
    s['head_range'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # avail idx far ahead of the device
    m = Image(4)
    m.desc(0, DATA, 8)
    m.publish([0])
    m.put(m.avail + 2, struct.pack('<H', 100))
    s['avail_jump'] = seed(0, 2, EVENT_IDX, DEFAULT_OPS, m.mem)
    # nested indirect table
    m = Image(4)
    t = 0x200
    m.desc(0, t + 0x40, 16, F_INDIRECT, table=t)
    m.desc(0, t, 16, F_INDIRECT)
    m.publish([0])
    s['indirect_nested'] = seed(0, 2, INDIRECT, DEFAULT_OPS, m.mem)
    # INDIRECT together with NEXT
    m = Image(4)
    t = 0x200
    m.desc(0, DATA, 8, table=t)
    m.desc(0, t, 16, F_INDIRECT | F_NEXT, 1)
    m.desc(1, DATA, 8)
    m.publish([0])
    s['indirect_next'] = seed(0, 2, INDIRECT, DEFAULT_OPS, m.mem)
    # INDIRECT without the feature, and a table length that is not a multiple of 16
    m = Image(4)
    t = 0x200
    m.desc(0, DATA, 8, table=t)
    m.desc(0, t, 16, F_INDIRECT)
    m.desc(1, t, 20, F_INDIRECT)
    m.publish([0, 1])
    s['indirect_nofeature'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    s['indirect_len'] = seed(0, 2, INDIRECT, [POP, PUSH, POP, PUSH] * 2, m.mem)
    # readable after writable
    m = Image(4)
    m.desc(0, DATA, 8, F_WRITE | F_NEXT, 1)
    m.desc(1, DATA + 0x40, 8)
    m.publish([0])
    s['order'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # writable descriptor on an out-only queue
    m = Image(4)
    m.desc(0, DATA, 8, F_WRITE)
    m.publish([0])
    s['direction'] = seed(0, 2, 0, DEFAULT_OPS, m.mem, direction=1)
    # total length over 4 GiB
    m = Image(4)
    m.desc(0, DATA, 16, F_NEXT, 1)
    m.desc(1, DATA, 0xffffffff)
    m.publish([0])
    s['total_len'] = seed(0, 2, 0, DEFAULT_OPS, m.mem)
    # in-order batches on a size-8 ring
    m = Image(8)
    for i in range(6):
        m.desc(i, DATA + 0x40 * i, 32, F_WRITE)
    m.publish(list(range(6)))
    s['in_order'] = seed(0, 3, IN_ORDER | EVENT_IDX, IN_ORDER_OPS, m.mem)
    # indices about to wrap at 2^16
    m = Image(4)
    for i in range(3):
        m.desc(i, DATA + 0x40 * i, 32)
    m.used_idx(0xfffe)
    m.publish([0, 1, 2], start=0xfffe)
    s['index_wrap'] = seed(0, 2, EVENT_IDX, DEFAULT_OPS, m.mem)
    # inflight tracking, fresh region (the image's last 80 bytes are zero): pop three, rewind
    # one, pop it again; the device restarts and must resubmit all three
    m = Image(4)
    for i in range(3):
        m.desc(i, DATA + 0x40 * i, 32, F_WRITE)
    m.publish([0, 1, 2])
    img = bytes(m.mem) + bytes(16 + 16 * 4)
    ops = [POP, POP, POP, REWIND | (1 << 3), NOTIFY, NOTIFY, NOTIFY, NOTIFY | (1 << 3)]
    s['inflight_fresh'] = seed(0, 2, 0x10, ops, img)
    # inflight tracking, region left by a previous instance: heads 1 and 2 in flight, a last
    # batch (head 3 -> 0) not yet cleared because the region's used_idx lags the ring's by 2;
    # also a dirty log of 5 bytes
    m = Image(4)
    for i in range(4):
        m.desc(i, DATA + 0x40 * i, 32, F_WRITE)
    m.used_idx(2)
    m.publish([0, 3, 1, 2], start=0)
    m.put(m.avail + 2, struct.pack('<H', 4))
    region = bytearray(struct.pack('<QHHHH', 0, 1, 4, 3, 0))
    for h, (fl, nxt, ctr) in enumerate([(1, 0, 5), (1, 0, 7), (1, 0, 6), (1, 0, 8)]):
        region += struct.pack('<B5xHQ', fl, nxt, ctr)
    img = bytes(m.mem) + bytes(region)
    ops = [POP, NOTIFY, POP, NOTIFY | (1 << 3), NOTIFY, NOTIFY, NOTIFY, NOTIFY]
    s['inflight_recover'] = seed(0, 2, 0x10 | 0x20 | 0x40, ops, img)
    # dirty log (5-byte bitmap) with an indirect table across the region boundary: the page the
    # device writes must be marked at push time
    m = Image(4)
    t = SPLIT - 16
    m.desc(0, DATA, 16, F_NEXT, 1, table=t)
    m.desc(1, DATA + 0x1000, 64, F_WRITE, 0, table=t)
    m.desc(0, t, 32, F_INDIRECT)
    m.publish([0])
    s['dirtylog_indirect_straddle'] = seed(1, 2, INDIRECT | 0x20 | 0x40, DEFAULT_OPS, m.mem)
    return s


def used_image(size, elems, idx):
    b = bytearray(struct.pack('<HH', 0, idx))
    ring = bytearray(8 * size)
    for slot, (i, ln) in elems.items():
        ring[8 * slot:8 * slot + 8] = struct.pack('<II', i, ln)
    return bytes(b + ring + struct.pack('<H', 0))


def driver_seeds():
    s = {}
    # script: nadd = 1 + ops[0] % size; then one byte per buffer; ops[0]=3 -> 4 buffers
    ops = [3, 0x0c, 0x01, 0x05, 0x02, 1, 0x0c, 0x04]
    s['drv_valid'] = seed(0, 3, DRIVER, ops, used_image(8, {0: (0, 0), 1: (1, 4)}, 2))
    s['drv_bogus_id'] = seed(0, 3, DRIVER, ops, used_image(8, {0: (200, 0)}, 1))
    s['drv_len'] = seed(0, 3, DRIVER, ops, used_image(8, {0: (0, 0xffff)}, 1))
    s['drv_idx_jump'] = seed(0, 3, DRIVER, ops, used_image(8, {0: (0, 0)}, 50))
    # in order: one entry naming the third buffer completes the first three
    ops_io = [3, 0x00, 0x00, 0x00, 0x00, 1, 0x00, 0x00]
    used = used_image(8, {0: (2, 1)}, 3) + used_image(8, {0: (2, 1), 3: (3, 0)}, 4)
    s['drv_in_order'] = seed(0, 3, DRIVER | IN_ORDER, ops_io, used)
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, 'corpus', 'chain')
    os.makedirs(out, exist_ok=True)
    seeds = device_seeds()
    seeds.update(driver_seeds())
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
    print('%d seeds written to %s' % (len(seeds), out))


if __name__ == '__main__':
    main()
