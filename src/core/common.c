/* SPDX-License-Identifier: MIT */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "virtio/common.h"

const char *vio_version(void)
{
    return VIO_VERSION_STRING;
}

/* The threshold of vio_log_stderr(): written by any thread, read on every line. */
static _Atomic int g_stderr_level = VIO_LOG_INFO;

void vio_log_stderr_set_level(int max_level)
{
    if (max_level < VIO_LOG_ERROR)
        max_level = VIO_LOG_ERROR - 1; /* nothing */
    if (max_level > VIO_LOG_DEBUG)
        max_level = VIO_LOG_DEBUG;
    atomic_store_explicit(&g_stderr_level, max_level, memory_order_relaxed);
}

int vio_log_stderr_level(void)
{
    return atomic_load_explicit(&g_stderr_level, memory_order_relaxed);
}

void vio_log_stderr(void *opaque, int level, const char *object, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    (void)opaque;
    bool known = level >= VIO_LOG_ERROR && level <= VIO_LOG_DEBUG;
    /* a level outside the enum is printed (as "?") only when debug lines are */
    if ((known ? level : VIO_LOG_DEBUG) > atomic_load_explicit(&g_stderr_level, memory_order_relaxed))
        return;
    const char *lv = known ? names[level] : "?";
    /* one fprintf call: stdio locks the stream, so lines from threads don't interleave */
    fprintf(stderr, "libvirtio: %s: %s: %s\n", object ? object : "-", lv, msg ? msg : "");
}
