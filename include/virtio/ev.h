/* SPDX-License-Identifier: MIT */
/**
 * @file ev.h
 * @brief libvirtio-ev: the libev adapter (a separate library, `pkg-config libvirtio-ev`).
 *
 * @defgroup ev libev adapter
 * @brief Registers the fds that the other layers expose with a libev loop and calls their
 * entry points when the fds are ready.
 *
 * The core library never needs an event loop: every object that must be woken exposes
 * fds and a `*_handle()` / `*_notify()` entry point. This adapter wires them to libev for
 * programs that want a ready loop:
 *
 * - vio_ev_device_new() attaches a generic device (struct vio_device, e.g. from
 *   vio_net_dev_device()): it installs a @ref vio_device_hooks::set_watch hook of its own
 *   (the other hooks are the caller's, passed through), registers the watches the device
 *   wants already (vio_device_watches()) and calls vio_device_handle() when one is ready.
 * - vio_ev_device_add_kick() watches a kick eventfd (ioeventfd style) of one queue: when it
 *   is signalled the adapter drains it and calls vio_device_queue_notify().
 * - vio_ev_vhost_user_new() serves vhost-user on the loop: it creates the transport
 *   (vio_vhost_user_new()) with a set_watch of its own, watches the control socket, the kick
 *   eventfds and the device's backend fds as the transport asks, routes each to
 *   vio_vhost_user_dispatch(), and runs vio_vhost_user_tick() on a timer when
 *   vio_vhost_user_timeout_ms() asks (client-mode reconnects). No id table to write.
 * - vio_ev_fd_new() is the generic case: any fd (a call eventfd on the driver side, a
 *   backend fd) and a callback.
 *
 * A device has one binding at a time (vio_device_bind()): attach a device either with
 * vio_ev_device_new() (an in-process transport of the application's) or through
 * vio_ev_vhost_user_new() (the vhost-user transport binds it), never both; the second
 * attempt fails with -EBUSY.
 *
 * This header does not include <ev.h>: it only names `struct ev_loop`, so it can be
 * included by code that does not use libev's headers. Pass the loop libev gave you
 * (`EV_DEFAULT`, `ev_loop_new()`). The library is built against libev 4 with its default
 * configuration (EV_MULTIPLICITY on).
 *
 * Threading: libev loops are single-threaded. Every call here, and every data-path call
 * of an attached device that may change its watches (vio_device_queue_notify(),
 * vio_device_handle(), the device's own *_process() calls), must run on the thread that
 * runs the loop. Use one loop (and one vio_ev_device per device) per thread otherwise.
 *
 * Memory: vio_ev_device_new() allocates its watch table (see
 * vio_ev_device_config::max_watches) and kick table; starting, changing and stopping
 * watches afterwards never allocates.
 * @{
 */
#ifndef VIO_EV_H
#define VIO_EV_H

#include "common.h"
#include "device.h"
#include "vhost_user.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop; /* libev's loop; see <ev.h> */

/** Opaque: a device attached to a loop. */
struct vio_ev_device;

/** Opaque: one fd watched for a callback. */
struct vio_ev_fd;

/** Creation parameters of vio_ev_device_new(). */
struct vio_ev_device_config {
    uint32_t struct_size;                 /**< sizeof(struct vio_ev_device_config) */
    struct ev_loop *loop;                 /**< the loop (borrowed; outlives the attachment) */
    struct vio_device *dev;               /**< the device (borrowed; outlives the attachment) */
    /** optional: the transport's hooks (notify_queue, config_changed, needs_reset); copied.
     *  Its set_watch is ignored: the adapter's own takes its place. NULL = no other hooks. */
    const struct vio_device_hooks *hooks;
    unsigned max_watches;                 /**< distinct watch ids the device may use at once;
                                               0 = 2 * vio_device_num_queues() + 4 */
    vio_log_fn log;                       /**< optional log callback */
    void *log_opaque;                     /**< passed to @ref log */
};

/**
 * @brief Attach a device to a loop: bind its hooks and start watching what it wants watched.
 *
 * Calls vio_device_bind() with the caller's hooks plus the adapter's set_watch, then
 * registers every watch vio_device_watches() reports. From then on the device starts and
 * stops its watches itself through set_watch. The device must not be bound already.
 * @param[in]  cfg creation parameters
 * @param[out] out the attachment, owned by the caller (vio_ev_device_free())
 * @retval 0 success
 * @retval -EINVAL cfg/out/loop/dev NULL or struct_size too small
 * @retval -EBUSY the device is already bound (another transport drives it): nothing changed
 * @retval -ENOTSUP the device cannot bind hooks
 * @retval -ENOSPC the device already wants more watches than max_watches
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_ev_device_new(const struct vio_ev_device_config *cfg, struct vio_ev_device **out);

/**
 * @brief Detach: stop every watcher of the attachment (watches and kicks) and unbind the
 * device; when vio_ev_device_config::hooks was given, the device is bound again with those
 * hooks only (no set_watch), and the caller unbinds it (vio_device_bind(dev, NULL)) when done.
 * NULL is a no-op. Loop thread.
 */
VIO_API void vio_ev_device_free(struct vio_ev_device *e);

/**
 * @brief Watch a kick eventfd of queue @p qidx: when it is readable, drain it and call
 * vio_device_queue_notify(dev, qidx).
 *
 * The fd stays the caller's (it is never closed here); a non-blocking eventfd is best. A
 * second call for the same queue replaces the fd. Errors that the notify returns are
 * logged once per queue.
 * @retval 0 success
 * @retval -EINVAL e NULL or fd < 0
 * @retval -ERANGE qidx >= vio_device_num_queues()
 */
VIO_API int vio_ev_device_add_kick(struct vio_ev_device *e, unsigned qidx, int fd);

/** @brief Stop watching the kick fd of queue @p qidx (no-op when none). */
VIO_API void vio_ev_device_remove_kick(struct vio_ev_device *e, unsigned qidx);

/** @brief Watches the device has active on the loop right now (for tests and diagnostics). */
VIO_API unsigned vio_ev_device_active_watches(const struct vio_ev_device *e);

/** Opaque: a vhost-user back-end transport driven by a loop. */
struct vio_ev_vhost_user;

/**
 * @brief Create a vhost-user back-end transport on @p loop: vio_vhost_user_new() plus every
 * watch and timer it needs.
 *
 * The adapter supplies vio_vhost_user_config::set_watch and watches what the transport asks
 * for: the control socket (listening, then connected), each ring's kick eventfd and the
 * device's backend fds, each routed to vio_vhost_user_dispatch() when ready; and a timer that
 * runs vio_vhost_user_tick() when vio_vhost_user_timeout_ms() says (client mode with
 * reconnect_ms). The caller's other hooks (pause, resume, session, device_request) are called
 * with cfg->opaque, as without the adapter. Everything runs on the loop's thread: leave pause
 * and resume NULL unless the application has threads of its own that touch the device.
 *
 * @code
 * struct vio_vhost_user_config vc = {.struct_size = sizeof(vc), .socket_path = path,
 *                                    .dev = vio_net_dev_device(net), .log = vio_log_stderr};
 * struct vio_ev_vhost_user *evu;
 * int rc = vio_ev_vhost_user_new(EV_DEFAULT, &vc, &evu);
 * if (rc == 0)
 *     ev_run(EV_DEFAULT, 0);
 * @endcode
 *
 * @param[in]  loop the loop (borrowed; outlives the object)
 * @param[in]  cfg  the transport's configuration (copied, as by vio_vhost_user_new()); its
 *                  set_watch must be NULL; its dev must not be bound
 * @param[out] out  the new object, owned by the caller (vio_ev_vhost_user_free())
 * @retval 0 success (a server listens, a client is connected or retrying)
 * @retval -EINVAL loop, cfg, out or cfg->dev NULL, struct_size too small, or cfg->set_watch set
 * @retval -EBUSY the device is already bound (another transport drives it)
 * @retval -ENOMEM allocation failed
 * @retval other what vio_vhost_user_new() returned (socket errors, bad configuration)
 */
VIO_API int vio_ev_vhost_user_new(struct ev_loop *loop, const struct vio_vhost_user_config *cfg,
                                  struct vio_ev_vhost_user **out);

/**
 * @brief Free the transport (vio_vhost_user_free(): the session ends, the device is reset and
 * unbound), stop every watcher and the timer. NULL is a no-op. Loop thread, and not from
 * inside one of the transport's hooks.
 */
VIO_API void vio_ev_vhost_user_free(struct vio_ev_vhost_user *e);

/** @brief The transport, for its getters (vio_vhost_user_connected(), queue state ...);
 *  owned by @p e. NULL for NULL. */
VIO_API struct vio_vhost_user *vio_ev_vhost_user_transport(const struct vio_ev_vhost_user *e);

/** @brief Watchers active on the loop right now: control socket, kicks and device fds (for
 *  tests and diagnostics). */
VIO_API unsigned vio_ev_vhost_user_active_watches(const struct vio_ev_vhost_user *e);

/**
 * @brief Callback of a generic fd watcher.
 * @param opaque  the pointer given to vio_ev_fd_new()
 * @param fd      the fd
 * @param revents #vio_watch_events that occurred (VIO_WATCH_IN / VIO_WATCH_OUT)
 */
typedef void (*vio_ev_fd_cb)(void *opaque, int fd, unsigned revents);

/**
 * @brief Watch @p fd for @p events and call @p cb when it is ready.
 * @param[in]  loop   the loop
 * @param[in]  fd     the fd (stays the caller's)
 * @param[in]  events #vio_watch_events wanted (VIO_WATCH_IN | VIO_WATCH_OUT); 0 = created
 *                    stopped
 * @param[in]  cb     the callback (may call vio_ev_fd_set_events() / vio_ev_fd_free() on
 *                    this watcher)
 * @param[in]  opaque passed to @p cb
 * @param[out] out    the watcher, owned by the caller (vio_ev_fd_free())
 * @retval 0 success
 * @retval -EINVAL loop, cb or out NULL, fd < 0, or unknown event bits
 * @retval -ENOMEM allocation failed
 */
VIO_API int vio_ev_fd_new(struct ev_loop *loop, int fd, unsigned events, vio_ev_fd_cb cb,
                          void *opaque, struct vio_ev_fd **out);

/**
 * @brief Change the events watched (0 stops the watcher, non-zero starts it again).
 * @retval 0 success, -EINVAL w NULL or unknown event bits
 */
VIO_API int vio_ev_fd_set_events(struct vio_ev_fd *w, unsigned events);

/** @brief Stop and destroy a watcher (the fd is not closed). NULL is a no-op. */
VIO_API void vio_ev_fd_free(struct vio_ev_fd *w);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
