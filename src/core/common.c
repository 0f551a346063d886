/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "virtio/common.h"

const char *vio_version(void)
{
    return VIO_VERSION_STRING;
}

void vio_log_stderr(void *opaque, int level, const char *object, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    (void)opaque;
    const char *lv = (level >= 0 && level <= VIO_LOG_DEBUG) ? names[level] : "?";
    /* one fprintf call: stdio locks the stream, so lines from threads don't interleave */
    fprintf(stderr, "libvirtio: %s: %s: %s\n", object ? object : "-", lv, msg ? msg : "");
}
