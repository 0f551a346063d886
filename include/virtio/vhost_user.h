/* SPDX-License-Identifier: MIT */
/**
 * @file vhost_user.h
 * @brief vhost-user back-end transport: a unix-socket server (or client) that lets a
 * vhost-user front-end (QEMU, DPDK virtio_user) drive a generic device (device.h).
 *
 * @defgroup vhost_user vhost-user back-end
 * @brief The back-end side of the vhost-user protocol (QEMU docs/interop/vhost-user.rst)
 * on top of the generic device interface. The transport decodes and validates every
 * front-end message, maps guest memory, creates and starts the rings through the core
 * engine and tells the device model about queues through vio_device_queue_start() /
 * vio_device_queue_stop(); it never knows which device type it serves.
 *
 * ## Event loop
 *
 * The transport never owns a loop or a thread. It tells the application which fds to
 * watch through the @ref vio_vhost_user_config::set_watch hook (or, for loops that rebuild
 * their fd set, through vio_vhost_user_watches()), each with a 32-bit id:
 *
 * | id | fd | when readable call |
 * |---|---|---|
 * | #VIO_VU_WATCH_CONTROL | the listening socket, or the connected socket | vio_vhost_user_handle() |
 * | #VIO_VU_WATCH_KICK(q) | the kick eventfd of ring q | vio_vhost_user_kick(vu, q) |
 * | below #VIO_VU_WATCH_DEVICE_LIMIT | an fd of the device's backend (tap, packet socket) | vio_device_handle(dev, id, revents) |
 *
 * vio_vhost_user_dispatch() routes any of these ids for you. The watches are
 * level-triggered: a call handles what is ready now and the fd stays readable while
 * more is pending. A new set_watch call for an id replaces the previous one (the
 * control id moves from the listening socket to the connection and back); events == 0
 * means "stop watching" and always comes before the fd is closed.
 *
 * In client mode with a reconnect interval, a lost connection (or a front-end that is
 * not up yet) is retried: vio_vhost_user_timeout_ms() says in how many milliseconds
 * vio_vhost_user_tick() wants to run; a loop uses it as its poll timeout, or a timer.
 *
 * ## Threading
 *
 * - **Control thread**: vio_vhost_user_new(), vio_vhost_user_free(), vio_vhost_user_handle(),
 *   vio_vhost_user_tick(), vio_vhost_user_timeout_ms(), vio_vhost_user_fd(),
 *   vio_vhost_user_watches() and the state getters run on one thread at a time (the
 *   "control thread"; it may be the only thread). Every protocol message is handled there.
 * - **Data path**: vio_vhost_user_kick() for ring q and vio_device_handle() for the device's
 *   watches may run on worker threads, as the device model allows (virtio-net: one thread
 *   per queue pair). Kicks for different rings may run concurrently with each other.
 * - **Pause/resume**: before the control thread changes anything a worker may touch —
 *   the memory map (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG), a ring's state or fds
 *   (GET_VRING_BASE, SET_VRING_KICK / CALL / ERR / ADDR, SET_VRING_ENABLE), the dirty log
 *   (SET_FEATURES changing LOG_ALL, SET_LOG_BASE), inflight regions, resets and the
 *   teardown of a lost session — it calls @ref vio_vhost_user_config::pause, and
 *   @ref vio_vhost_user_config::resume afterwards. pause() must return only once no worker
 *   is inside vio_vhost_user_kick() / vio_device_handle() / vio_device_queue_notify() for
 *   this device, and workers must not enter them until resume(). Calls never nest. A
 *   single-threaded application leaves both NULL. set_watch may be called while paused.
 * - **Device hooks** (bound with vio_device_bind() at creation): the used-buffer
 *   notification writes the ring's call eventfd and may run on any worker concurrently;
 *   the configuration-change notification (sent on the back-end request channel) and the
 *   needs-reset notification are thread-safe too.
 * - Memory the workers hold: chains popped but not pushed keep host pointers into guest
 *   memory. A device model must not keep such iovecs across a pause (it completes or
 *   rewinds them before returning from the data-path call), because after resume() a
 *   region the front-end removed is unmapped. Regions that stay in a new table keep
 *   their mapping (the transport reuses it).
 *
 * ## Devices that run their queues elsewhere
 *
 * The transport binds the device with the @ref vio_device_hooks::mem_regions and
 * @ref vio_device_hooks::queue_offload hooks. A device that runs a ring outside this process
 * (the offload device of vhost_dev.h, whose rings a vhost back-end runs) claims it from its
 * queue_start op: it receives the ring addresses (the front-end's rings as this transport maps
 * them), the front-end's kick, call and error eventfds and the memory table with the
 * front-end's memory fds (kept open for that, one per region, while the session lasts). The
 * transport then leaves the ring alone: its kick fd is not watched
 * (vio_vhost_user_watches() leaves it out), vio_vhost_user_kick() on it returns 0 without
 * reading the eventfd, and nothing is popped from it. When the front-end changes the memory
 * table or one of the ring's fds, the device's queue is stopped and started again
 * (vio_device_queue_stop() / vio_device_queue_start()) so that it hands the change on;
 * GET_VRING_BASE stops it for good and answers the index the device read back from its
 * back-end. Not forwarded yet: the dirty log (LOG_ALL, SET_LOG_BASE) and the inflight region
 * of offloaded rings.
 *
 * ## Safety
 *
 * Every message is checked against one table of requests (payload size, fd count,
 * protocol-feature gate, value rules) before any handler runs. A message that breaks it
 * is logged at #VIO_LOG_ERROR with the request name and the rule, its fds are closed and
 * the connection is dropped: rings stop, memory is unmapped, the device is reset, and the
 * transport listens (server) or reconnects (client) again. Ring addresses outside guest
 * memory or rings that break at run time only stop that ring (NEEDS_RESET is reported
 * through GET_STATUS and the ring's error eventfd). Region fds must be regular files
 * (memfd, tmpfs, hugetlbfs) at least mmap_offset + size long; the transport never reads
 * or touches guest pages while handling a message (no MAP_POPULATE), so SET_MEM_TABLE
 * costs the same at any guest size. What a front-end can still do after the checks (shrink
 * a memory file, hand over fds that block or are not eventfds, restart rings with a stale
 * base, connect and say nothing) is handled as "Hostile and broken front-ends" says.
 *
 * ## Hostile and broken front-ends
 *
 * - **Memory that shrinks.** Every memory file the front-end hands over (regions, dirty log,
 *   inflight region) that allows sealing gets F_SEAL_SHRINK before its size is checked: the
 *   front-end's later ftruncate() fails with EPERM. A file that cannot be sealed (a regular
 *   file on tmpfs or hugetlbfs, a memfd created without MFD_ALLOW_SEALING) is registered
 *   with a process-wide SIGBUS handler, installed once by the library the first time such
 *   memory is mapped (it keeps the handler that was there before and passes it every fault
 *   outside guest memory; an application that installs its own SIGBUS handler later must
 *   chain to the previous one). An access past the shrunk end then reads zeros instead of
 *   killing the process; the session is marked, its socket is shut down to wake the control
 *   thread, and vio_vhost_user_handle() (or vio_vhost_user_tick()) logs the fault at
 *   #VIO_LOG_ERROR, sets NEEDS_RESET and ends the session.
 * - **Kick and call fds must be eventfds.** SET_VRING_KICK / SET_VRING_CALL with another kind
 *   of fd (a regular file or a socket at EOF is readable for ever, a pipe can block or raise
 *   SIGPIPE) stops and fails that ring (-EPROTO in the REPLY_ACK). Call and error eventfds
 *   are made non-blocking (O_NONBLOCK on the file the front-end shares; QEMU and DPDK create
 *   them non-blocking anyway): a full eventfd counter means an interrupt is pending, and the
 *   write is dropped instead of blocking a worker or the control thread.
 * - **A failed or broken ring costs nothing.** Its kick fd is no longer watched (set_watch
 *   with events 0 — for a ring that breaks at run time this call comes from the worker
 *   thread that found it broken) and is watched again when the ring starts anew;
 *   vio_vhost_user_watches() leaves it out meanwhile.
 * - **Stale SET_VRING_BASE.** When a ring starts, a base outside the window between the used
 *   ring's idx and the avail ring's idx (behind what was completed, or beyond what was made
 *   available) is replaced by used->idx with a #VIO_LOG_WARN line, as DPDK's vhost library
 *   does: DPDK's virtio_user (Open vSwitch's `net_virtio_user` port) restarts
 *   its rings with base 0 after a back-end restart while its indices are far ahead. The
 *   chains between used and avail are processed again. A base is kept when the used ring
 *   itself is impossible (more than a ring behind avail: the ring then breaks at its first
 *   look) and when an inflight region is in use (it decides where to resume).
 * - **A silent connection.** In server mode a front-end that sends no complete message
 *   within 3 s of being accepted is dropped with a #VIO_LOG_WARN line, so that the next
 *   front-end (waiting in the listen backlog) is served: vio_vhost_user_timeout_ms() asks for
 *   a wake-up at that deadline and vio_vhost_user_tick() acts on it.
 * @{
 */
#ifndef VIO_VHOST_USER_H
#define VIO_VHOST_USER_H

#include "common.h"
#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Watch id of the control socket (listening or connected). */
#define VIO_VU_WATCH_CONTROL 0xC0000000u
/** First watch id of the kick eventfds. */
#define VIO_VU_WATCH_KICK_BASE 0x80000000u
/** Watch id of ring @p q's kick eventfd. */
#define VIO_VU_WATCH_KICK(q) (VIO_VU_WATCH_KICK_BASE | (uint32_t)(q))
/** True when @p id names a kick eventfd. */
#define VIO_VU_WATCH_IS_KICK(id) (((uint32_t)(id) & 0xC0000000u) == VIO_VU_WATCH_KICK_BASE)
/** The ring of a kick watch id. */
#define VIO_VU_WATCH_QUEUE(id) ((unsigned)((uint32_t)(id) & 0xFFFFu))
/** Device watch ids must be below this value (they are passed through unchanged). */
#define VIO_VU_WATCH_DEVICE_LIMIT 0x80000000u

/** Device-specific requests the transport forwards to the application (it cannot act on
 *  them without knowing the device type). */
enum vio_vhost_user_request {
    VIO_VU_REQ_SEND_RARP = 1,  /**< value: the guest MAC in the low 6 bytes, in wire order
                                    (byte 0 of the MAC is the lowest byte of value) */
    VIO_VU_REQ_NET_SET_MTU = 2 /**< value: the MTU (68..65535, already checked) */
};

/** Creation parameters (copied; strings are copied too). */
struct vio_vhost_user_config {
    uint32_t struct_size;    /**< sizeof(struct vio_vhost_user_config) */
    const char *socket_path; /**< unix socket path (ignored with @ref use_fd) */
    bool client;             /**< connect to @ref socket_path (the front-end listens,
                                  QEMU `server=on`) instead of listening on it */
    uint32_t reconnect_ms;   /**< client mode: retry interval after a failed connect or a
                                  lost connection; 0 = no retry (a failed first connect makes
                                  vio_vhost_user_new() fail, a lost connection is final) */
    bool use_fd;             /**< take over an already connected socket @ref fd instead (the
                                  `--fd=N` back-end convention); the session is final */
    int fd;                  /**< the connected socket when @ref use_fd (ownership passes to
                                  the transport, also on failure) */
    struct vio_device *dev;  /**< the device (borrowed; must outlive the transport) */
    uint16_t max_queue_size; /**< largest ring size accepted; 0 = #VIO_QUEUE_MAX_SIZE (each
                                  ring is further limited by its device maximum) */
    uint16_t max_mem_slots;  /**< memory regions accepted and reported by GET_MAX_MEM_SLOTS;
                                  0 = #VIO_MEM_DEFAULT_CAPACITY (509) */
    uint64_t queue_num;      /**< GET_QUEUE_NUM reply; 0 = vio_device_frontend_queue_num(),
                                  the count in the unit the device type's front-ends read
                                  (virtio-net: queue pairs, as QEMU and DPDK expect) */
    uint64_t protocol_features_disable; /**< protocol feature bits (numbers as in the spec)
                                  not to offer; 0 offers every feature the transport has */
    vio_log_fn log;          /**< optional log callback (object name "vhost-user") */
    void *log_opaque;        /**< passed to @ref log */
    void *opaque;            /**< passed to the hooks below */
    /** optional: stop the workers (see Threading); NULL for single-threaded use */
    void (*pause)(void *opaque);
    /** optional: let the workers run again */
    void (*resume)(void *opaque);
    /** optional: start (events != 0, #vio_watch_events) or stop (events == 0) watching
     *  @p fd for id @p id (see the table above). Called from the control thread, or from
     *  the device's worker thread for device ids (vio_device_hooks::set_watch rules), or
     *  from the worker thread of a ring that it finds broken (kick id, events 0). */
    void (*set_watch)(void *opaque, int fd, unsigned events, uint32_t id);
    /** optional: a front-end connected (true) or the session ended (false). Control thread. */
    void (*session)(void *opaque, bool connected);
    /** optional: a device-specific request (#vio_vhost_user_request); return 0 to accept, a
     *  negative errno to refuse (reported to the front-end when it asked for an ack).
     *  NULL accepts and ignores them. Control thread. */
    int (*device_request)(void *opaque, enum vio_vhost_user_request req, uint64_t value);
    /** server mode: permission bits of the socket file (e.g. 0660 to let a group of
     *  front-ends connect); 0 = 0600, only the owner may connect. The umask plays no part:
     *  the socket is bound in a private 0700 directory next to @ref socket_path, given this
     *  mode there and only then linked into place, so it is never reachable with other
     *  permissions. Bits outside 0777 make vio_vhost_user_new() fail with -EINVAL. Read only
     *  when struct_size covers it (added after the first version of this struct). */
    uint32_t socket_mode;
};

/** Opaque vhost-user back-end transport. */
struct vio_vhost_user;

/** State of one ring (vio_vhost_user_queue_state()). */
struct vio_vhost_user_queue_state {
    bool started;   /**< the ring is started (kick received, rings mapped) */
    bool enabled;   /**< enabled by the front-end (or implicitly, without PROTOCOL_FEATURES) */
    bool running;   /**< the device is processing it (started, enabled, device accepted) */
    bool polling;   /**< kick came with the no-fd flag: the application must poll
                         vio_vhost_user_kick() for this ring */
    bool failed;    /**< the ring could not start or broke (addresses outside memory, a ring
                         rule): stays stopped until the front-end sets it up again */
    bool offloaded; /**< the device runs the ring outside the transport (an offload device,
                         vhost_dev.h): the transport does not watch its kick fd and never
                         processes it (added in a byte that was padding before) */
    int kick_fd;    /**< the kick eventfd (-1 if none); owned by the transport */
    uint16_t size;  /**< ring size (0 if not set) */
    uint16_t last_avail; /**< next avail index the device will read (the base when stopped) */
};

/**
 * @brief Create the transport, bind it to @p cfg->dev and listen / connect.
 *
 * Server mode: binds and listens on socket_path with the mode @ref
 * vio_vhost_user_config::socket_mode (default 0600, whatever the umask). What is at the path
 * already decides: nothing, or a stale socket (a connect is refused: its back-end is gone) is
 * replaced; a live socket (a connect succeeds: another back-end serves this path) makes the
 * call fail with -EADDRINUSE and leaves it alone; anything else that is not a socket fails
 * with -EEXIST. Each refusal is logged naming the path. vio_vhost_user_free() removes the
 * socket file only if the file at the path is still the one this object created (same device
 * and inode), so a back-end that replaced it keeps its socket. A second server object on a
 * path is therefore refused rather than silently taking the path over.
 *
 * Client mode: connects now; with reconnect_ms a failure is not an error and the transport
 * retries from vio_vhost_user_tick().
 *
 * The device is bound with vio_device_bind() and #VIO_DEVICE_BIND_FRONTEND_CTRL: vhost-user
 * front-ends (QEMU, DPDK) keep the device type's control queue themselves (virtio-net: the
 * model then behaves as with vio_net_dev_config::frontend_ctrl, no need to set it by hand).
 * The queue count offered by GET_QUEUE_NUM defaults to vio_device_frontend_queue_num()
 * (virtio-net: queue pairs). The control watch is announced through set_watch before this
 * returns.
 *
 * @param[in]  cfg the configuration (copied)
 * @param[out] out the new transport, owned by the caller (vio_vhost_user_free())
 * @retval 0 success
 * @retval -EINVAL cfg/out/dev NULL, struct_size too small, no socket path, a device with no
 *                 queues, or socket_mode with bits outside 0777
 * @retval -ENAMETOOLONG the socket path does not fit a sockaddr_un
 * @retval -EADDRINUSE server mode and a live socket is at socket_path (another back-end)
 * @retval -EEXIST server mode and socket_path exists and is not a socket
 * @retval -ENOMEM allocation failed
 * @retval -EBUSY the device is bound to another transport already (vio_device_bind())
 * @retval other a negative errno from socket(), bind(), listen(), connect(), creating the
 *               private directory next to the path (-EACCES: the directory is not writable),
 *               or vio_device_bind()
 */
VIO_API int vio_vhost_user_new(const struct vio_vhost_user_config *cfg, struct vio_vhost_user **out);

/**
 * @brief Close the connection (rings stop, the device is reset and unbound, memory is
 * unmapped), stop listening and destroy. NULL is a no-op. Control thread; calls pause()
 * / resume() around the teardown when a session is active.
 */
VIO_API void vio_vhost_user_free(struct vio_vhost_user *vu);

/**
 * @brief The control socket: the listening socket while waiting for a front-end, the
 * connected socket during a session, -1 while waiting to reconnect or after the session
 * of a use_fd / no-retry client transport ended. It changes after vio_vhost_user_handle()
 * and vio_vhost_user_tick(); set_watch reports every change.
 */
VIO_API int vio_vhost_user_fd(const struct vio_vhost_user *vu);

/**
 * @brief The control socket is readable: accept a front-end, or handle the messages that
 * are waiting (up to 64 per call). Control thread.
 * @return the number of messages handled (>= 0; 0 after an accept or when nothing was
 *         waiting)
 * @retval -ECONNRESET the front-end closed the connection; the session was torn down
 * @retval -EPROTO a message broke the protocol (logged); the session was torn down
 * @retval -ENOTCONN no socket (waiting to reconnect, or the session was final)
 * @retval -EFAULT the session's guest memory faulted (the front-end truncated a memory file
 *         that cannot be sealed; see "Hostile and broken front-ends"); the session was
 *         torn down
 * @retval other a negative errno from the socket; the session was torn down
 */
VIO_API int vio_vhost_user_handle(struct vio_vhost_user *vu);

/**
 * @brief Ring @p qidx was kicked (its kick fd is readable, or the application polls a
 * no-fd ring): drain the eventfd and, if the ring is running, process it with
 * vio_device_queue_notify(). Data path: call from the thread that owns ring @p qidx.
 * @return chains processed (>= 0, 0 if the ring is not running)
 * @retval -ERANGE no such ring
 * @retval other the device's error (-EIO: the ring broke)
 */
VIO_API int vio_vhost_user_kick(struct vio_vhost_user *vu, unsigned qidx);

/**
 * @brief Route a ready watch to its handler: the control socket to vio_vhost_user_handle(),
 * a kick to vio_vhost_user_kick(), anything else to vio_device_handle(). Same thread rules
 * as the function it calls.
 * @return what the handler returned
 */
VIO_API int vio_vhost_user_dispatch(struct vio_vhost_user *vu, uint32_t id, unsigned revents);

/**
 * @brief Every fd to watch right now (control socket, kick fds, the device's watches), for
 * poll()-style loops. Control thread, or while the workers are paused.
 * @param[in]  vu  the transport
 * @param[out] out array receiving the watches (may be NULL when cap is 0)
 * @param[in]  cap capacity of @p out
 * @return the number of watches (may exceed @p cap: only @p cap are written)
 * @retval -EINVAL vu NULL, or out NULL with cap > 0
 */
VIO_API int vio_vhost_user_watches(const struct vio_vhost_user *vu, struct vio_device_watch *out,
                                   unsigned cap);

/**
 * @brief Milliseconds until vio_vhost_user_tick() wants to run (0 = now), or -1 when it
 * has nothing to do. It has something to do in client mode while waiting to reconnect, and
 * in server mode while a connected front-end has not sent its first message (it is dropped
 * 3 s after it was accepted). Control thread.
 */
VIO_API int vio_vhost_user_timeout_ms(const struct vio_vhost_user *vu);

/**
 * @brief Time-driven work: in client mode, try to reconnect when the retry interval has
 * passed; in server mode, drop a front-end that sent nothing within 3 s of connecting; end
 * a session whose guest memory faulted (see "Hostile and broken front-ends"). Cheap when
 * nothing is due; never blocks (a unix-socket connect completes or fails at once). Control
 * thread.
 * @retval 1 a connection was made
 * @retval 0 nothing to do, or the attempt failed (retried later)
 */
VIO_API int vio_vhost_user_tick(struct vio_vhost_user *vu);

/** @brief True while a front-end is connected. */
VIO_API bool vio_vhost_user_connected(const struct vio_vhost_user *vu);

/** @brief The virtio feature bits the front-end set (without the vhost-only bits
 *  PROTOCOL_FEATURES and LOG_ALL); 0 before SET_FEATURES. */
VIO_API uint64_t vio_vhost_user_features(const struct vio_vhost_user *vu);

/** @brief The negotiated protocol feature bits. */
VIO_API uint64_t vio_vhost_user_protocol_features(const struct vio_vhost_user *vu);

/** @brief The device status as the front-end set it (SET_STATUS) plus NEEDS_RESET when a ring
 *  broke: what GET_STATUS returns. Any thread. */
VIO_API uint8_t vio_vhost_user_status(const struct vio_vhost_user *vu);

/**
 * @brief State of ring @p qidx. Control thread, and only while the application's workers are
 * paused (or not running): the indices of a running ring are read without synchronization.
 * @retval 0 success
 * @retval -EINVAL vu or out NULL
 * @retval -ERANGE no such ring
 */
VIO_API int vio_vhost_user_queue_state(const struct vio_vhost_user *vu, unsigned qidx,
                                       struct vio_vhost_user_queue_state *out);

/**
 * @brief Signal ring @p qidx's call eventfd (a used-buffer notification), whatever the driver's
 * suppression says: for an application's own safety net against a lost interrupt (see the
 * daemon's idle check). Any thread.
 * @retval 0 signalled
 * @retval -ERANGE no such ring (or vu NULL)
 * @retval -ENOENT the ring has no call fd
 */
VIO_API int vio_vhost_user_notify(struct vio_vhost_user *vu, unsigned qidx);

/**
 * @brief Indices of ring @p qidx, the device's and those in guest memory
 * (vio_queue_get_ring_state()), to see which side a stopped ring waits on. Same rule as
 * vio_vhost_user_queue_state(): control thread, workers paused.
 * @retval 0 success
 * @retval -EINVAL vu or out NULL
 * @retval -ERANGE no such ring
 * @retval -ENODEV the ring is not started (not mapped): nothing to read
 */
VIO_API int vio_vhost_user_ring_state(const struct vio_vhost_user *vu, unsigned qidx,
                                      struct vio_queue_ring_state *out);

#ifdef __cplusplus
}
#endif
/** @} */
#endif
