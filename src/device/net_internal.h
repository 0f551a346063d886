/* SPDX-License-Identifier: MIT */
/*
 * Internal: pieces of the virtio-net model that tests and fuzz targets reach
 * directly (hidden symbols, linked from the static library).
 */
#ifndef VIO_DEVICE_NET_INTERNAL_H
#define VIO_DEVICE_NET_INTERNAL_H

#include <sys/uio.h>

#include "virtio/net.h"

/*
 * Execute one control command whose device-readable part (class, command,
 * command-specific data) is @out[0..n_out) holding @out_len bytes. Applies
 * the command and returns the ack byte (VIRTIO_NET_OK or VIRTIO_NET_ERR).
 * Same thread rules as vio_net_dev_ctrl_process(). Every byte is guest
 * controlled.
 */
uint8_t vio_net_ctrl_exec(struct vio_net_dev *d, const struct iovec *out, unsigned n_out,
                          size_t out_len);

#endif
