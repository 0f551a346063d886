/* SPDX-License-Identifier: MIT */
/**
 * @file common.h
 * @brief Export macro, logging hook and small helpers shared by every libvirtio object.
 *
 * @defgroup common Common definitions
 * @brief Export macro, log callback type, feature-bit helpers.
 * @{
 */
#ifndef VIO_COMMON_H
#define VIO_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol as part of the exported ABI (everything else is hidden). */
#if defined(VIO_BUILDING_LIBRARY) && defined(__GNUC__)
#define VIO_API __attribute__((visibility("default")))
#else
#define VIO_API
#endif

/** Library version as "major.minor.patch". */
#define VIO_VERSION_STRING "0.1.0"

/** Log levels passed to a #vio_log_fn, ordered by severity. */
enum vio_log_level {
    VIO_LOG_ERROR = 0, /**< the object stopped working (broken queue, lost peer) */
    VIO_LOG_WARN = 1,  /**< something was refused or dropped, work continues */
    VIO_LOG_INFO = 2,  /**< lifecycle events (connect, negotiate, reset) */
    VIO_LOG_DEBUG = 3  /**< chatty detail, off unless asked for */
};

/**
 * @brief Log callback every stateful object accepts.
 *
 * @param[in] opaque caller pointer given together with the callback
 * @param[in] level  one of #vio_log_level
 * @param[in] object short name of the reporting object ("rxq0", "vhost-user")
 * @param[in] msg    the message, NUL terminated, no trailing newline; valid only during the call
 *
 * Called from whichever thread is driving the object that logs.
 */
typedef void (*vio_log_fn)(void *opaque, int level, const char *object, const char *msg);

/**
 * @brief A log callback that prints "libvirtio: <object>: <level>: <msg>" to stderr.
 *
 * Usable as a #vio_log_fn; @p opaque is ignored. Prints only the lines whose @p level is at
 * most the process-wide threshold set with vio_log_stderr_set_level() (default
 * #VIO_LOG_INFO: debug lines are dropped); a level outside #vio_log_level counts as debug.
 * Thread-safe: one write per line, lines from threads do not mix.
 * @param[in] opaque ignored
 * @param[in] level  one of #vio_log_level
 * @param[in] object short name of the reporting object, or NULL ("-")
 * @param[in] msg    the message, or NULL (empty)
 */
VIO_API void vio_log_stderr(void *opaque, int level, const char *object, const char *msg);

/**
 * @brief Set the most verbose level vio_log_stderr() prints, for the whole process.
 *
 * @param[in] max_level #VIO_LOG_ERROR (errors only) .. #VIO_LOG_DEBUG (everything); a value
 *                      below #VIO_LOG_ERROR silences vio_log_stderr(), one above
 *                      #VIO_LOG_DEBUG is taken as #VIO_LOG_DEBUG
 *
 * The default is #VIO_LOG_INFO. Thread-safe (an atomic store): it may be called while other
 * threads log; a line being printed at that moment uses either the old or the new threshold.
 * Affects only vio_log_stderr(), not an application's own #vio_log_fn.
 */
VIO_API void vio_log_stderr_set_level(int max_level);

/**
 * @brief The threshold vio_log_stderr() uses now (see vio_log_stderr_set_level()).
 *
 * @return the most verbose level printed: -1 (nothing) .. #VIO_LOG_DEBUG
 *
 * Thread-safe (an atomic load).
 */
VIO_API int vio_log_stderr_level(void);

/** @brief True when feature bit number @p bit is set in @p features (bit numbers, never masks). */
static inline bool vio_has_feature(uint64_t features, unsigned bit)
{
    return bit < 64 && ((features >> bit) & 1u);
}

/** @brief The mask with only feature bit number @p bit set (0 for bit >= 64). */
static inline uint64_t vio_feature_bit(unsigned bit)
{
    return bit < 64 ? (uint64_t)1 << bit : 0;
}

/** @brief Returns the library version string (#VIO_VERSION_STRING of the built library). */
VIO_API const char *vio_version(void);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
