/* SPDX-License-Identifier: MIT */
/*
 * Internal entry points of the vhost-user transport for tests and fuzz
 * targets (linked statically; not exported from the shared library).
 */
#ifndef VIO_TRANSPORT_VHOST_USER_INTERNAL_H
#define VIO_TRANSPORT_VHOST_USER_INTERNAL_H

#include "transport/vhost_user_msg.h"
#include "virtio/vhost_user.h"

/*
 * Validate and handle one decoded message as if it had just been received on
 * the connection (replies go to the connected socket). Takes ownership of
 * m->fds (each is closed or kept). Returns 0 when the session goes on, a
 * negative errno when the message ended it (the session is then torn down).
 * -ENOTCONN when there is no session.
 */
int vu_dispatch_msg(struct vio_vhost_user *vu, struct vu_msg *m);

/* The validation context the transport uses right now. */
void vu_validate_ctx(const struct vio_vhost_user *vu, struct vu_validate_ctx *ctx);

/* Number of memory regions mapped right now. */
unsigned vu_mapped_regions(const struct vio_vhost_user *vu);

#endif
