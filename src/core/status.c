/* SPDX-License-Identifier: MIT */
/*
 * Feature negotiation and the device status state machine (device side).
 *
 * Rules enforced here come from the virtio 1.x spec, "Device Status Field",
 * "Feature Bits" and "Device Initialization" (content.tex):
 *  - writing 0 resets the device (and forgets the driver's features);
 *  - the driver MUST NOT clear a status bit, so apart from reset bits only grow;
 *  - the init sequence is ACKNOWLEDGE, DRIVER, (features), FEATURES_OK, DRIVER_OK;
 *  - the device MUST refuse FEATURES_OK (leave it clear) for a feature set it
 *    cannot accept: bits it did not offer, no VERSION_1 from a non-legacy driver;
 *  - the driver MUST NOT accept new features after FEATURES_OK;
 *  - NEEDS_RESET is written by the device only.
 * A relayed status (VIO_STATUS_RELAYED: vhost-user SET_STATUS) keeps every rule but the
 * order of the init sequence, which the front-end, not a driver, decides.
 *
 * Concurrency: the status byte is the only field touched from more than one
 * thread (vio_status_set_needs_reset() may run anywhere). Every change of it is
 * an atomic read-modify-write, so a NEEDS_RESET set concurrently with a driver
 * write is never lost: the driver-write path is a compare-exchange loop that
 * recomputes from the fresh value when it loses the race.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "virtio/status.h"

/* Status bits the spec defines; 0x10 and 0x20 are reserved. */
#define VIO_S_KNOWN                                                                              \
    (VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_DRIVER_OK | VIO_S_FEATURES_OK | VIO_S_NEEDS_RESET | \
     VIO_S_FAILED)

/* Smallest struct_size we accept: the config as first published. */
#define VIO_STATUS_CONFIG_MIN_SIZE \
    (offsetof(struct vio_status_config, validate_opaque) + sizeof(void *))

struct vio_status {
    /* Written by the owner thread (driver writes) and by any thread (NEEDS_RESET). */
    _Atomic uint8_t status;
    /* Owner thread only. */
    uint64_t device_features;
    uint64_t driver_features;
    bool allow_legacy;
    bool relayed; /* VIO_STATUS_RELAYED */
    int (*validate)(void *opaque, uint64_t driver_features);
    void *validate_opaque;
};

/*
 * Acquire pairs with the release in vio_status_set_needs_reset() and in
 * vio_status_write(): whoever observes NEEDS_RESET also observes what the
 * setting thread wrote before setting it (e.g. a queue's broken state).
 * The cast drops const only to satisfy C11's non-const atomic_load prototype.
 */
static uint8_t load_status(const struct vio_status *st)
{
    return atomic_load_explicit((_Atomic uint8_t *)&st->status, memory_order_acquire);
}

/* DRIVER_OK and nothing that stops the device (vio_status_live() on a byte). */
static bool live_byte(uint8_t s)
{
    return (s & VIO_S_DRIVER_OK) && !(s & (VIO_S_FAILED | VIO_S_NEEDS_RESET));
}

int vio_status_new(const struct vio_status_config *cfg, struct vio_status **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->struct_size < VIO_STATUS_CONFIG_MIN_SIZE)
        return -EINVAL;
    /* A modern device MUST offer VERSION_1; without it (and without legacy) no driver could
     * ever reach FEATURES_OK. */
    if (!cfg->allow_legacy && !vio_has_feature(cfg->device_features, VIO_F_VERSION_1))
        return -EINVAL;
    uint32_t flags = cfg->struct_size >= offsetof(struct vio_status_config, flags) + sizeof(uint32_t)
                         ? cfg->flags
                         : 0;
    if (flags & ~(uint32_t)VIO_STATUS_RELAYED)
        return -EINVAL;

    struct vio_status *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    atomic_init(&st->status, 0);
    st->device_features = cfg->device_features;
    st->driver_features = 0;
    st->allow_legacy = cfg->allow_legacy;
    st->relayed = flags & VIO_STATUS_RELAYED;
    st->validate = cfg->validate;
    st->validate_opaque = cfg->validate_opaque;
    *out = st;
    return 0;
}

void vio_status_free(struct vio_status *st)
{
    free(st);
}

uint8_t vio_status_read(const struct vio_status *st)
{
    return load_status(st);
}

/* A legacy driver: the device lets it in and it did not take VERSION_1. */
static bool legacy_driver(const struct vio_status *st)
{
    return st->allow_legacy && !vio_has_feature(st->driver_features, VIO_F_VERSION_1);
}

/* "Feature Bits": may the accepted set be fixed? 0 or -ENOTSUP. */
static int check_features(const struct vio_status *st)
{
    uint64_t f = st->driver_features;

    if (f & ~st->device_features)
        return -ENOTSUP; /* accepted a bit the device never offered */
    if (!vio_has_feature(f, VIO_F_VERSION_1) && !st->allow_legacy)
        return -ENOTSUP; /* a modern-only device refuses a legacy driver */
    if (st->validate && st->validate(st->validate_opaque, f) != 0)
        return -ENOTSUP;
    return 0;
}

int vio_status_write(struct vio_status *st, uint8_t val, unsigned *events)
{
    unsigned ev = 0;
    int ret = 0;
    int feat_rc = 1; /* check_features() result, computed at most once (1 = not yet) */
    uint8_t cur = load_status(st);
    uint8_t next;

    if (events)
        *events = 0;

    if (val == 0) {
        /* Reset also clears NEEDS_RESET; release publishes the cleared features to a thread
         * that reads the status with acquire. */
        st->driver_features = 0;
        atomic_store_explicit(&st->status, 0, memory_order_release);
        if (events)
            *events = VIO_EV_RESET;
        return 0;
    }
    if (val & ~VIO_S_KNOWN)
        return -EINVAL; /* reserved bits */

    for (;;) {
        /* NEEDS_RESET belongs to the device: the driver may echo it back (read-modify-write of
         * the register), it may not set it, and leaving it out of a write does not clear it. */
        uint8_t add = (uint8_t)(val & ~cur);
        uint8_t dropped = (uint8_t)(cur & ~val & ~VIO_S_NEEDS_RESET);

        ev = 0;
        ret = 0;
        if (add & VIO_S_NEEDS_RESET)
            return -EINVAL;
        if (dropped)
            return -EINVAL; /* the driver MUST NOT clear a status bit */
        if ((cur & VIO_S_FAILED) && add)
            return -EINVAL; /* after FAILED only a reset may follow */

        next = (uint8_t)(cur | add);
        /* The init sequence; a relayed status (vhost-user) arrives in the front-end's order. */
        if (!st->relayed && (add & VIO_S_DRIVER) && !(next & VIO_S_ACKNOWLEDGE))
            return -EINVAL;
        if (!st->relayed && (add & VIO_S_FEATURES_OK) &&
            (!(next & VIO_S_DRIVER) || (cur & VIO_S_DRIVER_OK)))
            return -EINVAL;
        if (!st->relayed && (add & VIO_S_DRIVER_OK) && !(next & VIO_S_FEATURES_OK) &&
            !((next & VIO_S_DRIVER) && legacy_driver(st)))
            return -EINVAL;

        if (add & VIO_S_FEATURES_OK) {
            if (feat_rc == 1)
                feat_rc = check_features(st);
            if (feat_rc != 0) {
                /* Refused: FEATURES_OK stays clear so the driver sees it on re-read. A
                 * DRIVER_OK in the same write would now lack its prerequisite. */
                ret = -ENOTSUP;
                add &= (uint8_t)~(VIO_S_FEATURES_OK | VIO_S_DRIVER_OK);
            } else {
                ev |= VIO_EV_FEATURES_OK;
            }
        } else if ((add & VIO_S_DRIVER_OK) && !(next & VIO_S_FEATURES_OK)) {
            /* Legacy driver (or a relayed status without FEATURES_OK): the features are fixed
             * at DRIVER_OK, so check them now. */
            if (feat_rc == 1)
                feat_rc = check_features(st);
            if (feat_rc != 0) {
                ret = -ENOTSUP;
                add &= (uint8_t)~VIO_S_DRIVER_OK;
            }
        }
        if (add & VIO_S_DRIVER_OK)
            ev |= VIO_EV_DRIVER_OK;
        if (add & VIO_S_FAILED)
            ev |= VIO_EV_FAILED;

        next = (uint8_t)(cur | add);
        /* Success is release (see load_status()); failure reloads cur with acquire and the
         * whole decision is taken again, because a concurrent NEEDS_RESET may have arrived. */
        if (atomic_compare_exchange_weak_explicit(&st->status, &cur, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    if (events)
        *events = ev;
    return ret;
}

uint64_t vio_status_device_features(const struct vio_status *st)
{
    return st->device_features;
}

/* Features may change only between DRIVER and FEATURES_OK (and, for a legacy driver that never
 * sets FEATURES_OK, not after DRIVER_OK either). A relayed status has no DRIVER step for the
 * features: they may change until FEATURES_OK / DRIVER_OK fix them. */
static bool features_writable(const struct vio_status *st)
{
    uint8_t s = load_status(st);
    return (st->relayed || (s & VIO_S_DRIVER)) && !(s & (VIO_S_FEATURES_OK | VIO_S_DRIVER_OK));
}

int vio_status_set_driver_features(struct vio_status *st, uint64_t features)
{
    if (!features_writable(st)) {
        /* A vhost front-end repeats SET_FEATURES with the same virtio bits (QEMU does, to
         * switch dirty logging): not a change. */
        if (st->relayed && features == st->driver_features)
            return 0;
        return -EBUSY;
    }
    st->driver_features = features;
    return 0;
}

int vio_status_set_driver_features_word(struct vio_status *st, unsigned word, uint32_t val)
{
    if (word > 1)
        return -EINVAL;
    if (!features_writable(st))
        return -EBUSY;
    unsigned shift = word * 32u;
    st->driver_features = (st->driver_features & ~((uint64_t)UINT32_MAX << shift)) |
                          ((uint64_t)val << shift);
    return 0;
}

uint64_t vio_status_driver_features(const struct vio_status *st)
{
    return st->driver_features;
}

bool vio_status_features_ok(const struct vio_status *st)
{
    return (load_status(st) & VIO_S_FEATURES_OK) != 0;
}

bool vio_status_live(const struct vio_status *st)
{
    return live_byte(load_status(st));
}

bool vio_status_set_needs_reset(struct vio_status *st)
{
    /* Release: what the caller wrote before (a queue's broken state, a log) is visible to the
     * thread that then reads the status with acquire and sees NEEDS_RESET. An atomic OR, so it
     * composes with the compare-exchange in vio_status_write(); the old value it returns says
     * which of several racing callers set the bit (exactly one does). */
    uint8_t old = atomic_fetch_or_explicit(&st->status, VIO_S_NEEDS_RESET, memory_order_release);
    return !(old & VIO_S_NEEDS_RESET);
}

unsigned vio_status_actions(uint8_t before, uint8_t after)
{
    unsigned act = 0;
    if (before != 0 && after == 0)
        act |= VIO_ACT_RESET;
    if (!live_byte(before) && live_byte(after))
        act |= VIO_ACT_START;
    if (live_byte(before) && !live_byte(after))
        act |= VIO_ACT_STOP;
    if (!(before & VIO_S_NEEDS_RESET) && (after & VIO_S_NEEDS_RESET))
        act |= VIO_ACT_CONFIG;
    return act;
}
