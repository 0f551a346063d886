/* SPDX-License-Identifier: MIT */
/* Internal: printf-style logging through an object's vio_log_fn. */
#ifndef VIO_CORE_LOG_H
#define VIO_CORE_LOG_H

#include <stdarg.h>
#include <stdio.h>

#include "virtio/common.h"

__attribute__((format(printf, 5, 6))) static inline void
vio_logf(vio_log_fn fn, void *opaque, int level, const char *object, const char *fmt, ...)
{
    if (!fn)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fn(opaque, level, object, buf);
}

#endif
