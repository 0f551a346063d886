/* SPDX-License-Identifier: MIT */
/**
 * @file device.h
 * @brief The generic device interface every transport binds to (device side).
 *
 * @defgroup device Generic device interface
 * @brief What a device-side transport needs from a device model, without knowing the device
 * type.
 *
 * Transports today: the vhost-user back-end (vhost_user.h), the virtio-MMIO register decoder
 * (mmio.h) and the virtio-PCI modern transport (pci.h) bind to this interface; the libev
 * adapter (ev.h) and in-process glue (a VMM calling the wrappers itself) use it the same way.
 * The vhost frontends (vhost-net ioctls, a vhost-user frontend, vhost.h) sit in the driver
 * seat and do not use this interface; the offload device (vhost_dev.h) is a device model on
 * top of them, whose queues run in a vhost back-end: a transport that implements
 * @ref vio_device_hooks::mem_regions and @ref vio_device_hooks::queue_offload hands it the
 * driver's memory, rings and eventfds and leaves the claimed rings alone.
 *
 * A device model (virtio-net is the first) fills a `const struct vio_device_ops` table and
 * hands out a struct vio_device naming that table and its state. A transport then:
 *
 * 1. binds its out-hooks with vio_device_bind() (one binding at a time: a second bind is
 *    refused with -EBUSY until the first is undone with vio_device_bind(dev, NULL)):
 *    @ref vio_device_hooks::notify_queue
 *    (raise the used-buffer interrupt of a queue), @ref vio_device_hooks::config_changed
 *    (raise a configuration-change interrupt), @ref vio_device_hooks::needs_reset (a queue
 *    broke: set NEEDS_RESET with vio_status_set_needs_reset() and raise a configuration
 *    interrupt) and, optionally, @ref vio_device_hooks::set_watch (start / stop watching an
 *    fd of the device's backend);
 * 2. reads the identity and offer: vio_device_id(), vio_device_features(),
 *    vio_device_num_queues(), vio_device_queue_info(), the config space through
 *    vio_device_config_read() and vio_device_config_generation();
 * 3. at FEATURES_OK calls vio_device_set_features() (typically from the
 *    vio_status_config::validate hook, so that a refusal keeps FEATURES_OK clear);
 * 4. for each queue the driver enables, creates a struct vio_queue with the direction and
 *    maximum size from vio_device_queue_info(), sets it up with vio_queue_setup() and hands
 *    it to vio_device_queue_start();
 * 5. on a driver kick calls vio_device_queue_notify(); when an fd reported through
 *    @ref vio_device_hooks::set_watch (or vio_device_watches()) is ready calls
 *    vio_device_handle() with the watch id;
 * 6. on reset (VIO_EV_RESET) stops its queue threads, calls vio_device_queue_stop() for every
 *    started queue, then vio_device_reset(), and resets / frees its queue objects;
 * 7. when it lets go of the device, unbinds with vio_device_bind(dev, NULL).
 *
 * The wrappers check the order of these steps for every device model (the bookkeeping is the
 * @ref vio_device::state block they keep): a second bind, a queue started before
 * vio_device_set_features(), a queue of the wrong direction or size, vio_device_set_features()
 * while queues run. Such a call returns -EINVAL or -EBUSY at once and logs through
 * @ref vio_device::log a message naming the mistake, instead of the first chain failing later
 * as if the driver had broken a rule.
 *
 * Queue objects belong to the transport: the device only borrows a struct vio_queue between
 * vio_device_queue_start() and vio_device_queue_stop() and never frees or resets it. The
 * transport creates each queue with vio_queue_new() (direction, log and on_broken of its
 * choice). A device also calls @ref vio_device_hooks::needs_reset itself the first time it
 * sees a started queue broken, so wiring on_broken as well is optional
 * (vio_status_set_needs_reset() is idempotent).
 *
 * Threading: the calls marked "data path" (vio_device_queue_notify(), vio_device_handle())
 * for different queues may run on different threads at once where the device model says so
 * (virtio-net: one thread per queue pair plus one for the control queue, no locks between
 * them). Everything else (bind, set_features, queue_start / stop, reset) is control path: it
 * must not run concurrently with the data path of the queues it affects, nor with another
 * control-path call on the same device (the wrappers' bookkeeping takes no lock). Config reads and
 * the generation may be read from any thread. Hooks are called from whichever thread is
 * driving the device, possibly several at once: the transport makes them thread-safe (an
 * eventfd write is). A hook must not call back into the same device (the device may hold an
 * internal lock while it runs one): it records what to do and returns.
 *
 * The wrappers below return -EINVAL for a NULL device and -ENOTSUP when the device model
 * leaves the op NULL, except where a wrapper says otherwise (getters return 0,
 * vio_device_watches() 0, vio_device_handle() -ENOENT).
 * @{
 */
#ifndef VIO_DEVICE_H
#define VIO_DEVICE_H

#include "common.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Device ID of a network device (virtio spec "Device Types"). */
#define VIO_DEVICE_ID_NET 1u

/** Events of a watched fd (the same values as POLLIN / POLLOUT / POLLERR / POLLHUP). */
enum vio_watch_events {
    VIO_WATCH_IN = 0x001,  /**< readable */
    VIO_WATCH_OUT = 0x004, /**< writable */
    VIO_WATCH_ERR = 0x008, /**< error condition (reported, never asked for) */
    VIO_WATCH_HUP = 0x010  /**< hang-up (reported, never asked for) */
};

/** One fd the device wants watched (see vio_device_watches()). */
struct vio_device_watch {
    int fd;          /**< the fd (owned by the device's backend; never close it) */
    unsigned events; /**< #vio_watch_events wanted, non-zero */
    uint32_t id;     /**< device-defined id to pass to vio_device_handle() */
};

/** Facts about one queue of a device, filled by vio_device_queue_info(). */
struct vio_device_queue_info {
    uint16_t max_size;      /**< largest queue size the device accepts (power of 2) */
    enum vio_queue_dir dir; /**< descriptor direction to create the queue with */
    const char *name;       /**< short name for logs ("rx0", "tx0", "ctrl"); static, never NULL */
};

/** Flags of struct vio_device_hooks: what the binding transport is. */
enum vio_device_bind_flags {
    /** The transport's frontend keeps the device type's control queue itself and forwards
     *  only its effects (vhost-user: QEMU and DPDK run virtio-net's control queue and pass
     *  CTRL_RX, GUEST_ANNOUNCE, MQ ... without CTRL_VQ). A device model that has a control
     *  queue adapts its offer and its queue roles to that (virtio-net: as
     *  vio_net_dev_config::frontend_ctrl). */
    VIO_DEVICE_BIND_FRONTEND_CTRL = 1u << 0
};

/**
 * One region of the memory a transport shares with its driver, as a device that runs queues
 * outside the transport needs it (@ref vio_device_hooks::mem_regions): where the region is in
 * guest-physical space, where the transport has it mapped, and a shareable fd of it so that
 * another process (a vhost-user back-end) can map the same pages.
 */
struct vio_device_mem_region {
    uint64_t guest_addr; /**< guest-physical start (what ring entries contain) */
    uint64_t size;       /**< length in bytes, > 0 */
    uint64_t host_addr;  /**< where the region starts in this process (the transport's mapping) */
    int fd;              /**< shareable fd of the memory (memfd, tmpfs or hugetlbfs file), or -1
                              when the transport has none (the vhost kernel needs none). Owned by
                              the transport; valid until the memory table changes (see
                              @ref vio_device_hooks::queue_offload for what happens then) */
    uint64_t fd_offset;  /**< offset in @ref fd of the region's first byte */
};

/**
 * A queue handed to a device that runs it outside the transport (a vhost back-end), filled by
 * @ref vio_device_hooks::queue_offload. Every fd is the transport's (borrowed): the device
 * passes it on (a vhost frontend duplicates it) and never closes it. Valid until
 * vio_device_queue_stop() of the queue.
 */
struct vio_device_queue_offload {
    uint32_t struct_size; /**< set by the device before the call: sizeof(this struct) */
    int kick_fd;          /**< eventfd the driver's notifications arrive on (vhost-user: the
                               front-end's kick fd; a VMM: its KVM ioeventfd); -1: there is
                               none, whoever runs the ring must poll it */
    int call_fd;          /**< eventfd that raises the queue's used-buffer interrupt
                               (vhost-user: the call fd; a VMM: its irqfd); -1: none */
    int err_fd;           /**< eventfd for ring errors; -1: none */
    uint16_t size;        /**< ring size the driver chose */
    uint16_t base;        /**< next avail index to read (where the transport's queue stands) */
    uint64_t desc_gpa;    /**< guest-physical address of the descriptor area */
    uint64_t avail_gpa;   /**< ... of the driver area (split: avail ring) */
    uint64_t used_gpa;    /**< ... of the device area (split: used ring) */
    uint64_t desc_host;   /**< the descriptor area in this process (inside a region of
                               @ref vio_device_hooks::mem_regions) */
    uint64_t avail_host;  /**< the driver area in this process */
    uint64_t used_host;   /**< the device area in this process */
};

/** Out-hooks the transport (or application) supplies at bind time. All optional. */
struct vio_device_hooks {
    uint32_t struct_size; /**< sizeof(struct vio_device_hooks) */
    uint32_t flags;       /**< #vio_device_bind_flags of the binding transport (0: none) */
    void *opaque;         /**< passed to every hook */
    /** raise the used-buffer notification of queue @p qidx (vhost-user: the call eventfd; a
     *  VMM: its irqfd / MSI-X vector).
     *  The device has already decided with vio_queue_needs_notify() that the driver wants it. */
    void (*notify_queue)(void *opaque, unsigned qidx);
    /** the config space changed (generation already bumped): raise a configuration interrupt */
    void (*config_changed)(void *opaque);
    /** the device cannot go on (a queue broke): set NEEDS_RESET and raise a configuration
     *  interrupt. May be called once per broken queue. */
    void (*needs_reset)(void *opaque);
    /** start (events != 0) or stop (events == 0) watching @p fd for #vio_watch_events; when it
     *  is ready, call vio_device_handle() with @p id. A new call for the same id replaces the
     *  previous one. Two ids may name the same fd (tap uses one fd for both directions): an
     *  epoll user merges them. Called from the thread that processes the queue the fd belongs
     *  to (or the control queue's thread, when the active queue pairs change). */
    void (*set_watch)(void *opaque, int fd, unsigned events, uint32_t id);
    /* ---- added after the first version: read only when struct_size covers them
     *      (vio_device_bind() hands the model a full struct, the missing ones NULL) ---- */
    /** the memory shared with the driver, for a device that runs queues outside the transport
     *  (an offload device, vhost_dev.h): fills up to @p cap regions of @p out and returns how
     *  many there are (may exceed @p cap), or a negative errno (-ENOTSUP: the transport cannot
     *  share its memory). Control path (called from the device's queue_start op). */
    int (*mem_regions)(void *opaque, struct vio_device_mem_region *out, unsigned cap);
    /** the device will run queue @p qidx itself, outside the transport: fill @p out (ring
     *  addresses, the kick, call and error eventfds) and, from now until
     *  vio_device_queue_stop() of that queue, neither watch its kick fd nor process it
     *  (vio_device_queue_notify() is not called for it; the transport's own queue object only
     *  keeps the ring's setup, and the device updates its avail index with
     *  vio_queue_set_last_avail() before it returns from queue_stop). Called from the
     *  device's queue_start op; if that op then fails, the claim ends with it. When anything
     *  the device was given changes (the memory table, a kick / call / error fd), the
     *  transport stops and starts the queue again (vio_device_queue_stop() then
     *  vio_device_queue_start()), so the device reads it afresh.
     *  @retval 0 claimed, @p out filled
     *  @retval -ENOTSUP the transport cannot hand its queues out (no fds to give)
     *  @retval -EINVAL @p out too small (struct_size), or the queue is not set up */
    int (*queue_offload)(void *opaque, unsigned qidx, struct vio_device_queue_offload *out);
};

/** Size of struct vio_device_hooks before @ref vio_device_hooks::mem_regions was added: the
 *  smallest struct_size vio_device_bind() accepts. */
#define VIO_DEVICE_HOOKS_MIN_SIZE 48u

/**
 * Operations of a device model. Every member except @ref name may be NULL (the wrapper then
 * returns -ENOTSUP, 0 or does nothing, as documented on the wrapper). @p opaque is
 * vio_device::opaque.
 */
struct vio_device_ops {
    const char *name;                              /**< model name: "virtio-net" */
    uint32_t (*device_id)(void *opaque);           /**< see vio_device_id() */
    uint64_t (*features)(void *opaque);            /**< see vio_device_features() */
    uint32_t (*config_size)(void *opaque);         /**< see vio_device_config_size() */
    int (*config_read)(void *opaque, uint32_t offset, void *buf, uint32_t len); /**< see vio_device_config_read() */
    int (*config_write)(void *opaque, uint32_t offset, const void *buf, uint32_t len); /**< see vio_device_config_write() */
    uint32_t (*config_generation)(void *opaque);   /**< see vio_device_config_generation() */
    unsigned (*num_queues)(void *opaque);          /**< see vio_device_num_queues() */
    int (*queue_info)(void *opaque, unsigned qidx, struct vio_device_queue_info *out); /**< see vio_device_queue_info() */
    int (*set_features)(void *opaque, uint64_t negotiated); /**< see vio_device_set_features() */
    int (*queue_start)(void *opaque, unsigned qidx, struct vio_queue *q); /**< see vio_device_queue_start() */
    void (*queue_stop)(void *opaque, unsigned qidx); /**< see vio_device_queue_stop() */
    int (*queue_notify)(void *opaque, unsigned qidx); /**< see vio_device_queue_notify() */
    void (*reset)(void *opaque);                   /**< see vio_device_reset() */
    int (*bind)(void *opaque, const struct vio_device_hooks *hooks); /**< see vio_device_bind() */
    int (*watches)(void *opaque, struct vio_device_watch *out, unsigned cap); /**< see vio_device_watches() */
    int (*handle)(void *opaque, uint32_t id, unsigned revents); /**< see vio_device_handle() */
    unsigned (*frontend_queue_num)(void *opaque); /**< see vio_device_frontend_queue_num() */
};

/** Most queues a device can have (QEMU's VIRTIO_QUEUE_MAX is the same): queue indices at or
 *  above it are refused by vio_device_queue_start(). */
#define VIO_DEVICE_MAX_QUEUES 1024u

/**
 * Bookkeeping of the generic wrappers (device.c) about one device: bound or not, features set
 * or not, which queues are started. The device model zero-initialises it with the rest of
 * struct vio_device and never touches it afterwards; vio_device_reset() clears all but the
 * binding. Private to the wrappers: read it only through them.
 */
struct vio_device_state {
    uint32_t flags;                               /**< private */
    uint32_t started;                             /**< private: queues started */
    uint64_t started_map[VIO_DEVICE_MAX_QUEUES / 64]; /**< private: which ones */
};

/**
 * A device instance: an ops table and its state. Owned by the device model that made it, which
 * zero-initialises it (designated initialisers or calloc) and sets @ref ops, @ref opaque and,
 * optionally, @ref log.
 */
struct vio_device {
    const struct vio_device_ops *ops; /**< the implementation (never NULL in a valid device) */
    void *opaque;                     /**< its state */
    /** optional: where the wrappers report a caller's mistake (object name: the model's
     *  vio_device_ops::name); the model sets it from its own log configuration. */
    vio_log_fn log;
    void *log_opaque;                 /**< passed to @ref log */
    struct vio_device_state state;    /**< the wrappers' bookkeeping (see vio_device_state) */
};

/**
 * @brief Bind the transport's out-hooks (copied), or unbind with @p hooks NULL.
 *
 * A device has at most one binding: the transport (or application) that drives it. Binding a
 * device that is already bound is refused, so that a second driver (the libev adapter on a
 * device vhost-user already drives, say) cannot silently take the first one's interrupts.
 * vio_device_bind(dev, NULL) is the unbind: it removes every hook (a no-op on an unbound
 * device) and makes the device free to bind again. Unbinding does not reset the device.
 *
 * Control path: not concurrently with the device's data path.
 * @param[in] dev   the device
 * @param[in] hooks the hooks (copied); NULL unbinds
 * @retval 0 success
 * A caller built against an older, shorter struct vio_device_hooks passes its own
 * struct_size (at least #VIO_DEVICE_HOOKS_MIN_SIZE): the hooks it does not have are NULL for
 * the model.
 *
 * @retval -EINVAL dev NULL, or hooks->struct_size below #VIO_DEVICE_HOOKS_MIN_SIZE
 * @retval -EBUSY the device is already bound (logged through vio_device::log): unbind first
 * @retval -ENOTSUP the model has no bind op
 */
VIO_API int vio_device_bind(struct vio_device *dev, const struct vio_device_hooks *hooks);

/** @brief True while the device is bound (vio_device_bind() with hooks succeeded and no unbind
 *  since). false for NULL. Control path. */
VIO_API bool vio_device_is_bound(const struct vio_device *dev);

/** @brief virtio device ID (#VIO_DEVICE_ID_NET, ...); 0 for NULL or when the op is missing. */
VIO_API uint32_t vio_device_id(const struct vio_device *dev);

/** @brief Feature bits the device offers (device and transport range); 0 for NULL / missing op. */
VIO_API uint64_t vio_device_features(const struct vio_device *dev);

/** @brief Size in bytes of the device-specific config space; 0 for NULL / missing op. */
VIO_API uint32_t vio_device_config_size(const struct vio_device *dev);

/**
 * @brief Read @p len bytes of the device-specific config space at @p offset.
 *
 * One call returns a consistent snapshot (fields that change together are not torn within
 * one call). A driver reading more than one call's worth compares
 * vio_device_config_generation() before and after. Any thread.
 * @param[in]  dev    the device
 * @param[in]  offset byte offset (guest controlled)
 * @param[out] buf    receives the bytes (config fields are little-endian)
 * @param[in]  len    byte count (guest controlled)
 * @retval 0 success
 * @retval -EINVAL dev or buf NULL (with len > 0)
 * @retval -ERANGE [offset, offset + len) not inside the config space (nothing copied)
 * @retval -ENOTSUP no config space
 */
VIO_API int vio_device_config_read(const struct vio_device *dev, uint32_t offset, void *buf,
                                   uint32_t len);

/**
 * @brief Driver write to the device-specific config space.
 * @param[in] dev    the device
 * @param[in] offset byte offset (guest controlled)
 * @param[in] buf    the bytes written (guest controlled)
 * @param[in] len    byte count (guest controlled)
 * @retval 0 applied
 * @retval -EINVAL dev or buf NULL (with len > 0)
 * @retval -ERANGE outside the config space
 * @retval -EPERM the field is read-only for the driver: the write is ignored
 * @retval -ENOTSUP no writable config
 */
VIO_API int vio_device_config_write(struct vio_device *dev, uint32_t offset, const void *buf,
                                    uint32_t len);

/** @brief Config generation: changes whenever the config space changes. Any thread. */
VIO_API uint32_t vio_device_config_generation(const struct vio_device *dev);

/**
 * @brief Number of queues the device can have (the maximum, for all offered features).
 *
 * Queues with index below this that the negotiated features do not use are simply never
 * started. 0 for NULL / missing op.
 */
VIO_API unsigned vio_device_num_queues(const struct vio_device *dev);

/**
 * @brief The queue count a vhost frontend expects the device to report (vhost-user
 * GET_QUEUE_NUM): the unit the device type's frontends count in. virtio-net frontends (QEMU,
 * DPDK) count queue pairs; a device model without the op reports vio_device_num_queues().
 * 0 for NULL.
 */
VIO_API unsigned vio_device_frontend_queue_num(const struct vio_device *dev);

/**
 * @brief Direction, maximum size and name of queue @p qidx.
 *
 * The role of a queue may depend on the negotiated features (virtio-net: without MQ the
 * control queue is queue 2), so call this after vio_device_set_features(); before, the answer
 * assumes every offered feature is taken.
 * @param[in]  dev  the device
 * @param[in]  qidx queue index (guest controlled)
 * @param[out] out  the facts
 * @retval 0 success
 * @retval -EINVAL dev or out NULL
 * @retval -ERANGE no such queue (for the negotiated features)
 */
VIO_API int vio_device_queue_info(const struct vio_device *dev, unsigned qidx,
                                  struct vio_device_queue_info *out);

/**
 * @brief Accept (or refuse) the driver's feature set at FEATURES_OK and configure the device.
 *
 * Safe to call from the vio_status_config::validate hook. Control path. Features are set
 * while no queue is started: after a reset, or with every queue stopped.
 * @param[in] dev        the device
 * @param[in] negotiated the bits the driver accepted (guest controlled; already checked to be a
 *                       subset of the offer by struct vio_status)
 * @retval 0 accepted and applied
 * @retval -ENOTSUP refused (unoffered bit, or a combination the device cannot honour): nothing
 *                  changed; the transport keeps FEATURES_OK clear
 * @retval -EINVAL dev NULL
 * @retval -EBUSY queues are started (a caller's mistake, logged): nothing changed
 */
VIO_API int vio_device_set_features(struct vio_device *dev, uint64_t negotiated);

/**
 * @brief Start queue @p qidx on a queue object the transport has set up (vio_queue_setup()).
 *
 * The device borrows @p q until vio_device_queue_stop() or vio_device_reset(); the transport
 * keeps owning it. Starting does not process chains already available: call
 * vio_device_queue_notify() afterwards if the driver may have kicked before. Control path.
 *
 * The wrapper checks everything the caller controls before the model sees the queue, for any
 * device model, and logs the mistake through vio_device::log: the features are set (a model
 * with a set_features op needs vio_device_set_features() first), @p q was created with the
 * direction vio_device_queue_info() gives for @p qidx, and set up (vio_queue_setup()) with a
 * size no larger than its maximum.
 * @param[in] dev  the device
 * @param[in] qidx queue index
 * @param[in] q    the queue (created with the direction from vio_device_queue_info())
 * @retval 0 started
 * @retval -EINVAL dev or q NULL, q not set up, q of another direction or larger than the
 *                 maximum size, or the features are not set yet
 * @retval -ERANGE no such queue for the negotiated features, or qidx >= #VIO_DEVICE_MAX_QUEUES
 * @retval -EBUSY the queue is already started
 */
VIO_API int vio_device_queue_start(struct vio_device *dev, unsigned qidx, struct vio_queue *q);

/**
 * @brief Stop queue @p qidx: the device forgets its queue object and stops watching the fds
 * that belong to it. No-op for a queue that is not started. Control path.
 */
VIO_API void vio_device_queue_stop(struct vio_device *dev, unsigned qidx);

/**
 * @brief The driver kicked queue @p qidx: process it (data path).
 *
 * What processing means is device-specific (virtio-net: send TX frames, resume a receive
 * queue that was waiting for buffers, execute control commands). Runs until the queue is
 * empty or blocked.
 * @param[in] dev  the device
 * @param[in] qidx queue index (guest controlled)
 * @return >= 0 chains processed
 * @retval -ERANGE no such queue
 * @retval -EIO the queue is not started or is broken (needs_reset was raised)
 */
VIO_API int vio_device_queue_notify(struct vio_device *dev, unsigned qidx);

/**
 * @brief Device reset: stop every queue, drop the negotiated features and restore the
 * power-on state (config, filters). The transport has stopped all data-path threads first.
 * The binding stays: hooks survive a reset.
 */
VIO_API void vio_device_reset(struct vio_device *dev);

/**
 * @brief The fds the device wants watched right now (for poll()-style loops that rebuild
 * their fd set; event-loop users take @ref vio_device_hooks::set_watch instead).
 * @param[in]  dev the device
 * @param[out] out array receiving the watches (may be NULL when cap is 0)
 * @param[in]  cap capacity of @p out
 * @return the number of watches wanted (may exceed @p cap: only @p cap are written)
 * @retval -EINVAL dev NULL, or out NULL with cap > 0
 */
VIO_API int vio_device_watches(const struct vio_device *dev, struct vio_device_watch *out,
                               unsigned cap);

/**
 * @brief A watched fd is ready: do the work it stands for (data path).
 * @param[in] dev     the device
 * @param[in] id      the watch id from set_watch / vio_device_watches()
 * @param[in] revents #vio_watch_events that occurred
 * @return >= 0 work items done (frames, chains)
 * @retval -ENOENT unknown id
 * @retval other negative errno from the device (documented by the model)
 */
VIO_API int vio_device_handle(struct vio_device *dev, uint32_t id, unsigned revents);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
