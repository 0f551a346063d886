/* SPDX-License-Identifier: MIT */
/* Suite "status": feature negotiation and the device status state machine. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "virtio/status.h"

#define A VIO_S_ACKNOWLEDGE
#define D VIO_S_DRIVER
#define FO VIO_S_FEATURES_OK
#define DO VIO_S_DRIVER_OK
#define NR VIO_S_NEEDS_RESET
#define FL VIO_S_FAILED

#define V1 ((uint64_t)1 << VIO_F_VERSION_1)
#define EI ((uint64_t)1 << VIO_F_EVENT_IDX)
#define IND ((uint64_t)1 << VIO_F_INDIRECT_DESC)
#define DEV_FEATURES (V1 | EI | IND)

/* ------------------------------------------------------------------------ */
/* helpers */

struct validate_probe {
    int rc;           /* what the hook returns */
    unsigned calls;   /* how often it ran */
    uint64_t seen;    /* features it was last called with */
};

static int validate_hook(void *opaque, uint64_t features)
{
    struct validate_probe *p = opaque;
    p->calls++;
    p->seen = features;
    return p->rc;
}

static struct vio_status *make(uint64_t dev, bool legacy, struct validate_probe *probe)
{
    struct vio_status_config cfg = {
        .struct_size = sizeof(cfg),
        .device_features = dev,
        .allow_legacy = legacy,
        .validate = probe ? validate_hook : NULL,
        .validate_opaque = probe,
    };
    struct vio_status *st = NULL;
    ck_assert_int_eq(vio_status_new(&cfg, &st), 0);
    ck_assert_ptr_nonnull(st);
    return st;
}

/* Reach @p target through legal single-bit steps, writing @p drv while in DRIVER. */
static void drive_to(struct vio_status *st, uint8_t target, uint64_t drv)
{
    uint8_t s = 0;
    unsigned ev = 0;

    if (target & A) {
        s |= A;
        ck_assert_int_eq(vio_status_write(st, s, &ev), 0);
    }
    if (target & D) {
        s |= D;
        ck_assert_int_eq(vio_status_write(st, s, &ev), 0);
        ck_assert_int_eq(vio_status_set_driver_features(st, drv), 0);
    }
    if (target & FO) {
        s |= FO;
        ck_assert_int_eq(vio_status_write(st, s, &ev), 0);
        ck_assert_uint_eq(ev, VIO_EV_FEATURES_OK);
    }
    if (target & DO) {
        s |= DO;
        ck_assert_int_eq(vio_status_write(st, s, &ev), 0);
        ck_assert_uint_eq(ev, VIO_EV_DRIVER_OK);
    }
    if (target & FL) {
        s |= FL;
        ck_assert_int_eq(vio_status_write(st, s, &ev), 0);
        ck_assert_uint_eq(ev, VIO_EV_FAILED);
    }
    if (target & NR)
        vio_status_set_needs_reset(st);
    ck_assert_uint_eq(vio_status_read(st), target);
}

/* ------------------------------------------------------------------------ */
/* status transitions: one row = start state, one driver write, exact outcome */

enum { VAL_NONE, VAL_OK, VAL_REFUSE };

struct transition {
    const char *name;
    bool legacy;       /* allow_legacy */
    uint64_t dev;      /* offered features */
    uint64_t drv;      /* features the driver writes while in DRIVER */
    int validate;      /* VAL_*: no hook, hook accepts, hook refuses */
    uint8_t from;      /* start state (reached legally) */
    uint8_t write;     /* the driver's write */
    int ret;           /* expected return */
    uint8_t expect;    /* status afterwards */
    unsigned events;   /* events reported */
};

static const struct transition transitions[] = {
    /* reset */
    {"reset from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, 0, 0, 0, VIO_EV_RESET},
    {"reset from live", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO | DO, 0, 0, 0, VIO_EV_RESET},
    {"reset clears FAILED+NEEDS_RESET", false, DEV_FEATURES, V1, VAL_NONE, A | FL | NR, 0, 0, 0,
     VIO_EV_RESET},
    /* ACKNOWLEDGE -> DRIVER */
    {"ack from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, A, 0, A, 0},
    {"driver without ack", false, DEV_FEATURES, V1, VAL_NONE, 0, D, -EINVAL, 0, 0},
    {"ack+driver in one write", false, DEV_FEATURES, V1, VAL_NONE, 0, A | D, 0, A | D, 0},
    {"driver after ack", false, DEV_FEATURES, V1, VAL_NONE, A, A | D, 0, A | D, 0},
    {"rewrite same value", false, DEV_FEATURES, V1, VAL_NONE, A | D, A | D, 0, A | D, 0},
    /* FEATURES_OK */
    {"features_ok skipping driver", false, DEV_FEATURES, V1, VAL_NONE, A, A | FO, -EINVAL, A, 0},
    {"features_ok from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, FO, -EINVAL, 0, 0},
    {"features_ok v1", false, DEV_FEATURES, V1, VAL_NONE, A | D, A | D | FO, 0, A | D | FO,
     VIO_EV_FEATURES_OK},
    {"features_ok all offered", false, DEV_FEATURES, DEV_FEATURES, VAL_NONE, A | D, A | D | FO, 0,
     A | D | FO, VIO_EV_FEATURES_OK},
    {"features_ok unoffered bit", false, V1, V1 | EI, VAL_NONE, A | D, A | D | FO, -ENOTSUP, A | D,
     0},
    {"features_ok unoffered high bit", false, DEV_FEATURES, V1 | ((uint64_t)1 << 63), VAL_NONE,
     A | D, A | D | FO, -ENOTSUP, A | D, 0},
    {"features_ok without v1", false, DEV_FEATURES, EI, VAL_NONE, A | D, A | D | FO, -ENOTSUP,
     A | D, 0},
    {"features_ok nothing accepted", false, DEV_FEATURES, 0, VAL_NONE, A | D, A | D | FO, -ENOTSUP,
     A | D, 0},
    {"features_ok legacy allowed", true, DEV_FEATURES, EI, VAL_NONE, A | D, A | D | FO, 0,
     A | D | FO, VIO_EV_FEATURES_OK},
    {"features_ok legacy still needs offered", true, EI, EI | IND, VAL_NONE, A | D, A | D | FO,
     -ENOTSUP, A | D, 0},
    {"features_ok validate accepts", false, DEV_FEATURES, V1 | EI, VAL_OK, A | D, A | D | FO, 0,
     A | D | FO, VIO_EV_FEATURES_OK},
    {"features_ok validate refuses", false, DEV_FEATURES, V1 | EI, VAL_REFUSE, A | D, A | D | FO,
     -ENOTSUP, A | D, 0},
    {"features_ok rewritten is no event", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO,
     A | D | FO, 0, A | D | FO, 0},
    {"clearing features_ok", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO, A | D, -EINVAL,
     A | D | FO, 0},
    /* DRIVER_OK */
    {"driver_ok from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, DO, -EINVAL, 0, 0},
    {"driver_ok without features_ok", false, DEV_FEATURES, V1, VAL_NONE, A | D, A | D | DO,
     -EINVAL, A | D, 0},
    {"driver_ok", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO, A | D | FO | DO, 0,
     A | D | FO | DO, VIO_EV_DRIVER_OK},
    {"features_ok+driver_ok in one write", false, DEV_FEATURES, V1, VAL_NONE, A | D,
     A | D | FO | DO, 0, A | D | FO | DO, VIO_EV_FEATURES_OK | VIO_EV_DRIVER_OK},
    {"features_ok+driver_ok refused together", false, DEV_FEATURES, EI, VAL_NONE, A | D,
     A | D | FO | DO, -ENOTSUP, A | D, 0},
    {"everything at once from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, A | D | FO | DO,
     -ENOTSUP, A | D, 0},
    {"driver_ok dropping features_ok", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO, A | D | DO,
     -EINVAL, A | D | FO, 0},
    {"clearing driver_ok", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO | DO, A | D | FO,
     -EINVAL, A | D | FO | DO, 0},
    {"clearing ack", false, DEV_FEATURES, V1, VAL_NONE, A | D, D, -EINVAL, A | D, 0},
    /* legacy drivers: DRIVER suffices for DRIVER_OK */
    {"legacy driver_ok after driver", true, DEV_FEATURES, EI, VAL_NONE, A | D, A | D | DO, 0,
     A | D | DO, VIO_EV_DRIVER_OK},
    {"legacy driver_ok without driver", true, DEV_FEATURES, EI, VAL_NONE, A, A | DO, -EINVAL, A,
     0},
    {"legacy allowed but driver took v1", true, DEV_FEATURES, V1, VAL_NONE, A | D, A | D | DO,
     -EINVAL, A | D, 0},
    {"legacy not allowed", false, DEV_FEATURES, EI, VAL_NONE, A | D, A | D | DO, -EINVAL, A | D,
     0},
    {"legacy driver_ok with unoffered bit", true, EI, EI | IND, VAL_NONE, A | D, A | D | DO,
     -ENOTSUP, A | D, 0},
    {"legacy driver_ok validate refuses", true, DEV_FEATURES, EI, VAL_REFUSE, A | D, A | D | DO,
     -ENOTSUP, A | D, 0},
    {"features_ok after legacy driver_ok", true, DEV_FEATURES, EI, VAL_NONE, A | D | DO,
     A | D | DO | FO, -EINVAL, A | D | DO, 0},
    /* FAILED */
    {"failed from 0", false, DEV_FEATURES, V1, VAL_NONE, 0, FL, 0, FL, VIO_EV_FAILED},
    {"failed during init", false, DEV_FEATURES, V1, VAL_NONE, A | D, A | D | FL, 0, A | D | FL,
     VIO_EV_FAILED},
    {"failed when live", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO | DO, A | D | FO | DO | FL,
     0, A | D | FO | DO | FL, VIO_EV_FAILED},
    {"features_ok refused, failed in same write", false, DEV_FEATURES, EI, VAL_NONE, A | D,
     A | D | FO | FL, -ENOTSUP, A | D | FL, VIO_EV_FAILED},
    {"bits after failed", false, DEV_FEATURES, V1, VAL_NONE, A | FL, A | D | FL, -EINVAL, A | FL,
     0},
    {"failed rewritten", false, DEV_FEATURES, V1, VAL_NONE, A | FL, A | FL, 0, A | FL, 0},
    /* NEEDS_RESET belongs to the device */
    {"driver sets needs_reset", false, DEV_FEATURES, V1, VAL_NONE, A, A | NR, -EINVAL, A, 0},
    {"driver writes only needs_reset", false, DEV_FEATURES, V1, VAL_NONE, 0, NR, -EINVAL, 0, 0},
    {"needs_reset echoed with failed", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO | DO | NR,
     A | D | FO | DO | NR | FL, 0, A | D | FO | DO | NR | FL, VIO_EV_FAILED},
    {"needs_reset omitted stays set", false, DEV_FEATURES, V1, VAL_NONE, A | D | FO | NR,
     A | D | FO | DO, 0, A | D | FO | DO | NR, VIO_EV_DRIVER_OK},
    /* reserved bits */
    {"reserved bit 0x10", false, DEV_FEATURES, V1, VAL_NONE, A, A | 0x10, -EINVAL, A, 0},
    {"reserved bit 0x20", false, DEV_FEATURES, V1, VAL_NONE, A | D, A | D | 0x20, -EINVAL, A | D,
     0},
};

#define N_TRANSITIONS ((int)(sizeof(transitions) / sizeof(transitions[0])))

START_TEST(test_transition)
{
    const struct transition *t = &transitions[_i];
    struct validate_probe probe = {.rc = t->validate == VAL_REFUSE ? -EINVAL : 0};
    struct vio_status *st = make(t->dev, t->legacy, t->validate == VAL_NONE ? NULL : &probe);
    unsigned ev = 0xdead;

    drive_to(st, t->from, t->drv);
    unsigned calls_before = probe.calls;
    int ret = vio_status_write(st, t->write, &ev);
    ck_assert_msg(ret == t->ret, "%s: write 0x%02x from 0x%02x returned %d, want %d", t->name,
                  t->write, t->from, ret, t->ret);
    ck_assert_msg(vio_status_read(st) == t->expect, "%s: status 0x%02x, want 0x%02x", t->name,
                  vio_status_read(st), t->expect);
    ck_assert_msg(ev == t->events, "%s: events 0x%x, want 0x%x", t->name, ev, t->events);
    ck_assert_int_eq(vio_status_features_ok(st), (t->expect & FO) != 0);
    if (probe.calls != calls_before)
        ck_assert_uint_eq(probe.seen, t->drv); /* the hook saw exactly what the driver wrote */
    vio_status_free(st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* driver feature writes: allowed only between DRIVER and FEATURES_OK */

struct feature_write {
    const char *name;
    bool legacy;
    uint64_t drv; /* features set while reaching the state */
    uint8_t from;
    int word;     /* -1: 64-bit write, else the word index */
    int ret;
};

static const struct feature_write feature_writes[] = {
    {"64-bit in reset state", false, V1, 0, -1, -EBUSY},
    {"64-bit after ack", false, V1, A, -1, -EBUSY},
    {"64-bit in driver", false, V1, A | D, -1, 0},
    {"64-bit after features_ok", false, V1, A | D | FO, -1, -EBUSY},
    {"64-bit when live", false, V1, A | D | FO | DO, -1, -EBUSY},
    {"64-bit after legacy driver_ok", true, EI, A | D | DO, -1, -EBUSY},
    {"word0 in reset state", false, V1, 0, 0, -EBUSY},
    {"word0 in driver", false, V1, A | D, 0, 0},
    {"word1 in driver", false, V1, A | D, 1, 0},
    {"word1 after features_ok", false, V1, A | D | FO, 1, -EBUSY},
    {"word2 in driver", false, V1, A | D, 2, -EINVAL},
    {"word2 after features_ok", false, V1, A | D | FO, 2, -EINVAL},
};

#define N_FEATURE_WRITES ((int)(sizeof(feature_writes) / sizeof(feature_writes[0])))

START_TEST(test_feature_write)
{
    const struct feature_write *t = &feature_writes[_i];
    struct vio_status *st = make(DEV_FEATURES, t->legacy, NULL);
    const uint64_t newval = 0x1234567890abcdefull;

    drive_to(st, t->from, t->drv);
    uint64_t before = vio_status_driver_features(st);
    int ret = t->word < 0 ? vio_status_set_driver_features(st, newval)
                          : vio_status_set_driver_features_word(st, (unsigned)t->word,
                                                                (uint32_t)(newval >> 40));
    ck_assert_msg(ret == t->ret, "%s: returned %d, want %d", t->name, ret, t->ret);
    if (ret != 0) {
        ck_assert_uint_eq(vio_status_driver_features(st), before);
    } else if (t->word < 0) {
        ck_assert_uint_eq(vio_status_driver_features(st), newval);
    } else {
        unsigned shift = (unsigned)t->word * 32u;
        uint64_t want = (before & ~((uint64_t)UINT32_MAX << shift)) |
                        ((uint64_t)(uint32_t)(newval >> 40) << shift);
        ck_assert_uint_eq(vio_status_driver_features(st), want);
    }
    ck_assert_uint_eq(vio_status_read(st), t->from); /* feature writes never change status */
    vio_status_free(st);
}
END_TEST

START_TEST(test_feature_words_compose)
{
    struct vio_status *st = make(DEV_FEATURES, false, NULL);
    drive_to(st, A | D, 0);
    ck_assert_int_eq(vio_status_set_driver_features_word(st, 0, (uint32_t)(EI | IND)), 0);
    ck_assert_int_eq(vio_status_set_driver_features_word(st, 1, (uint32_t)(V1 >> 32)), 0);
    ck_assert_uint_eq(vio_status_driver_features(st), V1 | EI | IND);
    /* a second write of word 0 replaces only the low half */
    ck_assert_int_eq(vio_status_set_driver_features_word(st, 0, (uint32_t)EI), 0);
    ck_assert_uint_eq(vio_status_driver_features(st), V1 | EI);
    unsigned ev = 0;
    ck_assert_int_eq(vio_status_write(st, A | D | FO, &ev), 0);
    ck_assert_uint_eq(ev, VIO_EV_FEATURES_OK);
    ck_assert(vio_status_features_ok(st));
    ck_assert_uint_eq(vio_status_driver_features(st), V1 | EI);
    vio_status_free(st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* creation */

START_TEST(test_new_args)
{
    struct vio_status_config cfg = {.struct_size = sizeof(cfg), .device_features = V1};
    struct vio_status *st = (struct vio_status *)&cfg; /* poison: must be overwritten */

    ck_assert_int_eq(vio_status_new(NULL, &st), -EINVAL);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(vio_status_new(&cfg, NULL), -EINVAL);
    cfg.struct_size = 4;
    ck_assert_int_eq(vio_status_new(&cfg, &st), -EINVAL);
    cfg.struct_size = sizeof(cfg);
    cfg.device_features = EI; /* a modern-only device must offer VERSION_1 */
    ck_assert_int_eq(vio_status_new(&cfg, &st), -EINVAL);
    cfg.allow_legacy = true;
    ck_assert_int_eq(vio_status_new(&cfg, &st), 0);
    ck_assert_uint_eq(vio_status_read(st), 0);
    ck_assert_uint_eq(vio_status_device_features(st), EI);
    ck_assert_uint_eq(vio_status_driver_features(st), 0);
    ck_assert(!vio_status_features_ok(st));
    ck_assert(!vio_status_live(st));
    vio_status_free(st);
    vio_status_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* lifecycle */

START_TEST(test_reset_clears_features)
{
    struct vio_status *st = make(DEV_FEATURES, false, NULL);
    drive_to(st, A | D | FO | DO, V1 | EI);
    ck_assert_uint_eq(vio_status_driver_features(st), V1 | EI);
    ck_assert(vio_status_live(st));
    ck_assert_int_eq(vio_status_write(st, 0, NULL), 0); /* events pointer is optional */
    ck_assert_uint_eq(vio_status_read(st), 0);
    ck_assert_uint_eq(vio_status_driver_features(st), 0);
    ck_assert(!vio_status_features_ok(st));
    ck_assert(!vio_status_live(st));
    /* and the device can be initialized again */
    drive_to(st, A | D | FO | DO, V1);
    ck_assert(vio_status_live(st));
    vio_status_free(st);
}
END_TEST

START_TEST(test_live)
{
    struct vio_status *st = make(DEV_FEATURES, false, NULL);
    drive_to(st, A | D | FO, V1);
    ck_assert(!vio_status_live(st));
    ck_assert_int_eq(vio_status_write(st, A | D | FO | DO, NULL), 0);
    ck_assert(vio_status_live(st));
    vio_status_set_needs_reset(st);
    ck_assert(!vio_status_live(st));
    ck_assert_uint_eq(vio_status_read(st), A | D | FO | DO | NR);
    vio_status_set_needs_reset(st); /* idempotent */
    ck_assert_uint_eq(vio_status_read(st), A | D | FO | DO | NR);
    ck_assert_int_eq(vio_status_write(st, 0, NULL), 0);
    ck_assert_uint_eq(vio_status_read(st), 0);

    drive_to(st, A | D | FO | DO | FL, V1);
    ck_assert(!vio_status_live(st));
    vio_status_free(st);
}
END_TEST

START_TEST(test_error_leaves_events_zero)
{
    struct vio_status *st = make(DEV_FEATURES, false, NULL);
    unsigned ev = 0xffff;
    ck_assert_int_eq(vio_status_write(st, D, &ev), -EINVAL);
    ck_assert_uint_eq(ev, 0);
    ck_assert_int_eq(vio_status_write(st, D, NULL), -EINVAL);
    vio_status_free(st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* relayed status (VIO_STATUS_RELAYED, vhost-user SET_STATUS): any order, same other rules */

static struct vio_status *make_relayed(uint64_t dev, struct validate_probe *probe)
{
    struct vio_status_config cfg = {
        .struct_size = sizeof(cfg),
        .device_features = dev,
        .allow_legacy = true,
        .validate = probe ? validate_hook : NULL,
        .validate_opaque = probe,
        .flags = VIO_STATUS_RELAYED,
    };
    struct vio_status *st = NULL;
    ck_assert_int_eq(vio_status_new(&cfg, &st), 0);
    return st;
}

struct relayed {
    const char *name;
    uint64_t drv;   /* features set (by SET_FEATURES) while the status is still 0 */
    int validate;   /* VAL_OK / VAL_REFUSE for the write under test */
    uint8_t from;   /* start state, reached in one write with the hook accepting */
    uint8_t write;
    int ret;
    uint8_t expect;
    unsigned events;
};

static const struct relayed relayed_rows[] = {
    /* QEMU: SET_FEATURES, then FEATURES_OK alone, later ACKNOWLEDGE | DRIVER | DRIVER_OK */
    {"features_ok alone from 0", V1 | EI, VAL_OK, 0, FO, 0, FO, VIO_EV_FEATURES_OK},
    {"ack+driver+driver_ok after features_ok", V1, VAL_OK, FO, FO | A | D | DO, 0,
     FO | A | D | DO, VIO_EV_DRIVER_OK},
    {"driver without ack", V1, VAL_OK, 0, D, 0, D, 0},
    {"driver step by step still fine", V1, VAL_OK, A | D, A | D | FO, 0, A | D | FO,
     VIO_EV_FEATURES_OK},
    {"features_ok refused by the device", V1, VAL_REFUSE, 0, FO, -ENOTSUP, 0, 0},
    {"features_ok refused keeps the other bits", V1, VAL_REFUSE, 0, A | D | FO, -ENOTSUP, A | D,
     0},
    {"features_ok with an unoffered bit", V1 | ((uint64_t)1 << 50), VAL_OK, 0, FO, -ENOTSUP, 0,
     0},
    {"features_ok refused takes driver_ok along", V1, VAL_REFUSE, A | D, A | D | FO | DO,
     -ENOTSUP, A | D, 0},
    {"driver_ok without features_ok is checked", V1, VAL_OK, A | D, A | D | DO, 0, A | D | DO,
     VIO_EV_DRIVER_OK},
    {"driver_ok without features_ok refused", V1, VAL_REFUSE, A | D, A | D | DO, -ENOTSUP, A | D,
     0},
    {"features_ok after driver_ok", V1, VAL_OK, A | D | DO, A | D | DO | FO, 0, A | D | DO | FO,
     VIO_EV_FEATURES_OK},
    {"legacy features (no VERSION_1) relayed", EI, VAL_OK, 0, FO, 0, FO, VIO_EV_FEATURES_OK},
    /* the rules that still hold */
    {"clearing a bit", V1, VAL_OK, A | D | FO, A | FO, -EINVAL, A | D | FO, 0},
    {"setting needs_reset", V1, VAL_OK, A | D, A | D | NR, -EINVAL, A | D, 0},
    {"needs_reset echoed", V1, VAL_OK, FO | NR, FO | NR | A | D | DO, 0, FO | NR | A | D | DO,
     VIO_EV_DRIVER_OK},
    {"reserved bit", V1, VAL_OK, 0, 0x20, -EINVAL, 0, 0},
    {"bits after failed", V1, VAL_OK, FL, FL | A, -EINVAL, FL, 0},
    {"reset", V1, VAL_OK, FO | A | D | DO, 0, 0, 0, VIO_EV_RESET},
};

#define N_RELAYED ((int)(sizeof(relayed_rows) / sizeof(relayed_rows[0])))

START_TEST(test_relayed)
{
    const struct relayed *t = &relayed_rows[_i];
    struct validate_probe probe = {.rc = 0};
    struct vio_status *st = make_relayed(DEV_FEATURES, &probe);
    unsigned ev = 0;

    /* no DRIVER step needed for the features */
    ck_assert_int_eq(vio_status_set_driver_features(st, t->drv), 0);
    uint8_t from = t->from & (uint8_t)~NR;
    if (from)
        ck_assert_int_eq(vio_status_write(st, from, NULL), 0);
    if (t->from & NR)
        vio_status_set_needs_reset(st);
    ck_assert_uint_eq(vio_status_read(st), t->from);
    probe.rc = t->validate == VAL_REFUSE ? -EINVAL : 0;
    int rc = vio_status_write(st, t->write, &ev);
    ck_assert_msg(rc == t->ret, "%s: returned %d, expected %d", t->name, rc, t->ret);
    ck_assert_msg(vio_status_read(st) == t->expect, "%s: status 0x%x, expected 0x%x", t->name,
                  vio_status_read(st), t->expect);
    ck_assert_msg(ev == t->events, "%s: events 0x%x, expected 0x%x", t->name, ev, t->events);
    vio_status_free(st);
}
END_TEST

START_TEST(test_relayed_features)
{
    struct validate_probe probe = {.rc = 0};
    struct vio_status *st = make_relayed(DEV_FEATURES, &probe);
    /* any time before FEATURES_OK, with or without DRIVER */
    ck_assert_int_eq(vio_status_set_driver_features(st, V1), 0);
    ck_assert_int_eq(vio_status_write(st, A, NULL), 0);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1 | EI), 0);
    ck_assert_int_eq(vio_status_set_driver_features_word(st, 0, 0), 0);
    ck_assert_uint_eq(vio_status_driver_features(st), V1);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1 | EI), 0);
    ck_assert_int_eq(vio_status_write(st, A | FO, NULL), 0);
    ck_assert_uint_eq(probe.seen, V1 | EI);
    /* fixed now: the same set again is fine (QEMU repeats SET_FEATURES), another is not */
    ck_assert_int_eq(vio_status_set_driver_features(st, V1 | EI), 0);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1), -EBUSY);
    ck_assert_uint_eq(vio_status_driver_features(st), V1 | EI);
    ck_assert_int_eq(vio_status_write(st, A | FO | D | DO, NULL), 0);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1 | IND), -EBUSY);
    /* a reset opens them again */
    ck_assert_int_eq(vio_status_write(st, 0, NULL), 0);
    ck_assert_uint_eq(vio_status_driver_features(st), 0);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1 | IND), 0);
    vio_status_free(st);

    /* the strict machine is unchanged: no features before DRIVER */
    st = make(DEV_FEATURES, false, NULL);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1), -EBUSY);
    drive_to(st, A | D | FO, V1);
    ck_assert_int_eq(vio_status_set_driver_features(st, V1), -EBUSY); /* even the same set */
    vio_status_free(st);
}
END_TEST

START_TEST(test_flags_args)
{
    struct vio_status_config cfg = {.struct_size = sizeof(cfg), .device_features = V1,
                                    .flags = 0x2};
    struct vio_status *st = NULL;
    ck_assert_int_eq(vio_status_new(&cfg, &st), -EINVAL); /* unknown flag */
    ck_assert_ptr_null(st);
    /* a caller built before the flags field: whatever is there is not read */
    cfg.flags = 0xffffffffu;
    cfg.struct_size = (uint32_t)offsetof(struct vio_status_config, flags);
    ck_assert_int_eq(vio_status_new(&cfg, &st), 0);
    ck_assert_int_eq(vio_status_write(st, FO, NULL), -EINVAL); /* strict order */
    vio_status_free(st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* device actions of a status change */

struct action_row {
    const char *name;
    uint8_t before, after;
    unsigned act;
};

static const struct action_row action_rows[] = {
    {"nothing", A, A | D, 0},
    {"reset of a device in init", A | D | FO, 0, VIO_ACT_RESET},
    {"reset when already reset", 0, 0, 0},
    {"reset of a live device", A | D | FO | DO, 0, VIO_ACT_RESET | VIO_ACT_STOP},
    {"reset of a broken device", A | D | FO | DO | NR, 0, VIO_ACT_RESET},
    {"reset of needs_reset alone", NR, 0, VIO_ACT_RESET},
    {"driver_ok", A | D | FO, A | D | FO | DO, VIO_ACT_START},
    {"driver_ok at once from 0", 0, A | D | FO | DO, VIO_ACT_START},
    {"driver_ok of a broken device", A | D | FO | NR, A | D | FO | DO | NR, 0},
    {"failed when live", A | D | FO | DO, A | D | FO | DO | FL, VIO_ACT_STOP},
    {"failed during init", A | D, A | D | FL, 0},
    {"needs_reset when live", A | D | FO | DO, A | D | FO | DO | NR,
     VIO_ACT_STOP | VIO_ACT_CONFIG},
    {"needs_reset during init", A | D, A | D | NR, VIO_ACT_CONFIG},
    {"needs_reset already set", A | NR, A | D | NR, 0},
    {"live stays live", A | D | FO | DO, A | D | FO | DO, 0},
};

#define N_ACTIONS ((int)(sizeof(action_rows) / sizeof(action_rows[0])))

START_TEST(test_actions)
{
    const struct action_row *t = &action_rows[_i];
    unsigned act = vio_status_actions(t->before, t->after);
    ck_assert_msg(act == t->act, "%s: 0x%x -> 0x%x gives actions 0x%x, expected 0x%x", t->name,
                  t->before, t->after, act, t->act);
}
END_TEST

/* The status a driver write leaves and the actions agree: a live device's reset is a stop and
 * a reset; the needs_reset call reports the one configuration interrupt. */
START_TEST(test_actions_drive)
{
    struct vio_status *st = make(DEV_FEATURES, false, NULL);
    uint8_t before = vio_status_read(st);
    drive_to(st, A | D | FO | DO, V1);
    ck_assert_uint_eq(vio_status_actions(before, vio_status_read(st)), VIO_ACT_START);
    before = vio_status_read(st);
    ck_assert(vio_status_set_needs_reset(st)); /* this call set it: raise the interrupt */
    ck_assert(!vio_status_set_needs_reset(st)); /* already set: no second interrupt */
    ck_assert_uint_eq(vio_status_actions(before, vio_status_read(st)),
                      VIO_ACT_STOP | VIO_ACT_CONFIG);
    before = vio_status_read(st);
    ck_assert_int_eq(vio_status_write(st, 0, NULL), 0);
    ck_assert_uint_eq(vio_status_actions(before, vio_status_read(st)), VIO_ACT_RESET);
    ck_assert(vio_status_set_needs_reset(st)); /* cleared by the reset: reported again */
    vio_status_free(st);
}
END_TEST

/* Several threads set NEEDS_RESET at once: exactly one of them is told it set the bit. */
#define ONCE_THREADS 4
#define ONCE_ROUNDS 300

struct once {
    struct vio_status *st;
    atomic_int go;      /* round number the threads may run */
    atomic_int arrived; /* threads done with the current round */
    atomic_int setters; /* calls that returned true in the current round */
};

static void *once_thread(void *arg)
{
    struct once *o = arg;
    for (int i = 1; i <= ONCE_ROUNDS; i++) {
        while (atomic_load(&o->go) < i)
            sched_yield();
        if (vio_status_set_needs_reset(o->st))
            atomic_fetch_add(&o->setters, 1);
        atomic_fetch_add(&o->arrived, 1);
    }
    return NULL;
}

START_TEST(test_needs_reset_once)
{
    struct once o = {.st = make(DEV_FEATURES, false, NULL)};
    pthread_t th[ONCE_THREADS];
    atomic_init(&o.go, 0);
    atomic_init(&o.arrived, 0);
    atomic_init(&o.setters, 0);
    for (int k = 0; k < ONCE_THREADS; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, once_thread, &o), 0);
    for (int i = 1; i <= ONCE_ROUNDS; i++) {
        ck_assert_int_eq(vio_status_write(o.st, 0, NULL), 0);
        atomic_store(&o.setters, 0);
        atomic_store(&o.arrived, 0);
        atomic_store(&o.go, i);
        while (atomic_load(&o.arrived) < ONCE_THREADS)
            sched_yield();
        ck_assert_int_eq(atomic_load(&o.setters), 1);
        ck_assert_uint_eq(vio_status_read(o.st), NR);
    }
    for (int k = 0; k < ONCE_THREADS; k++)
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
    vio_status_free(o.st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* threads: NEEDS_RESET from another thread is never lost by a concurrent driver write */

#define RACE_ROUNDS 2000

struct race {
    struct vio_status *st;
    atomic_int round; /* main publishes the round it is in */
    atomic_int done;  /* helper publishes the last round it has set NEEDS_RESET in */
};

static void *race_helper(void *arg)
{
    struct race *r = arg;
    for (int i = 1; i <= RACE_ROUNDS; i++) {
        while (atomic_load(&r->round) < i)
            sched_yield();
        vio_status_set_needs_reset(r->st);
        atomic_store(&r->done, i);
    }
    return NULL;
}

START_TEST(test_needs_reset_race)
{
    struct race r = {.st = make(DEV_FEATURES, false, NULL)};
    pthread_t th;
    atomic_init(&r.round, 0);
    atomic_init(&r.done, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, race_helper, &r), 0);

    for (int i = 1; i <= RACE_ROUNDS; i++) {
        ck_assert_int_eq(vio_status_write(r.st, 0, NULL), 0);
        atomic_store(&r.round, i); /* helper now races the init sequence below */
        uint8_t s = 0;
        static const uint8_t steps[] = {A, D, FO, DO};
        for (unsigned k = 0; k < sizeof(steps); k++) {
            s |= steps[k];
            if (steps[k] == D) {
                ck_assert_int_eq(vio_status_write(r.st, s, NULL), 0);
                ck_assert_int_eq(vio_status_set_driver_features(r.st, V1), 0);
                continue;
            }
            ck_assert_int_eq(vio_status_write(r.st, s, NULL), 0);
        }
        /* keep writing (the no-op rewrite a read-modify-write driver does) while the helper's
         * OR lands, so a write that is not an atomic RMW would lose NEEDS_RESET */
        while (atomic_load(&r.done) < i)
            ck_assert_int_eq(vio_status_write(r.st, s, NULL), 0);
        ck_assert_uint_eq(vio_status_read(r.st), A | D | FO | DO | NR);
        ck_assert(!vio_status_live(r.st));
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    vio_status_free(r.st);
}
END_TEST

/* Deterministic version of the race: the validate hook runs inside vio_status_write(), after
 * the status was read and before it is stored, and another thread sets NEEDS_RESET right then. */
struct midwrite {
    struct vio_status *st;
    unsigned calls;
};

static void *set_nr_thread(void *arg)
{
    vio_status_set_needs_reset(arg);
    return NULL;
}

static int validate_sets_nr(void *opaque, uint64_t features)
{
    struct midwrite *m = opaque;
    pthread_t th;
    (void)features;
    m->calls++;
    ck_assert_int_eq(pthread_create(&th, NULL, set_nr_thread, m->st), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    return 0;
}

START_TEST(test_needs_reset_mid_write)
{
    struct midwrite m = {0};
    struct vio_status_config cfg = {
        .struct_size = sizeof(cfg),
        .device_features = DEV_FEATURES,
        .validate = validate_sets_nr,
        .validate_opaque = &m,
    };
    unsigned ev = 0;
    ck_assert_int_eq(vio_status_new(&cfg, &m.st), 0);
    drive_to(m.st, A | D, V1);
    ck_assert_int_eq(vio_status_write(m.st, A | D | FO, &ev), 0);
    ck_assert_uint_eq(vio_status_read(m.st), A | D | FO | NR);
    ck_assert_uint_eq(ev, VIO_EV_FEATURES_OK);
    ck_assert_uint_eq(m.calls, 1); /* the hook runs once even when the write is retried */
    vio_status_free(m.st);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *status_suite(void)
{
    Suite *s = suite_create("status");

    TCase *tc = tcase_create("transitions");
    tcase_add_loop_test(tc, test_transition, 0, N_TRANSITIONS);
    suite_add_tcase(s, tc);

    tc = tcase_create("features");
    tcase_add_loop_test(tc, test_feature_write, 0, N_FEATURE_WRITES);
    tcase_add_test(tc, test_feature_words_compose);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_new_args);
    tcase_add_test(tc, test_reset_clears_features);
    tcase_add_test(tc, test_live);
    tcase_add_test(tc, test_error_leaves_events_zero);
    suite_add_tcase(s, tc);

    tc = tcase_create("relayed");
    tcase_add_loop_test(tc, test_relayed, 0, N_RELAYED);
    tcase_add_test(tc, test_relayed_features);
    tcase_add_test(tc, test_flags_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("actions");
    tcase_add_loop_test(tc, test_actions, 0, N_ACTIONS);
    tcase_add_test(tc, test_actions_drive);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_test(tc, test_needs_reset_once);
    tcase_add_test(tc, test_needs_reset_mid_write);
    tcase_add_test(tc, test_needs_reset_race);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(status_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
