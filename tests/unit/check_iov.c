/* SPDX-License-Identifier: MIT */
/*
 * Suite "iov": the chain cursor of src/core/iov.h (read / write / skip / chunk / split over an
 * iovec array). Every operation is compared with a flat model of the same bytes: empty arrays,
 * zero-length entries, exact fits, short arrays, every offset, lengths up to SIZE_MAX.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "core/iov.h"

#define MAXB 64u

/* Layouts of a 24-byte stream (entry lengths; 0 entries included on purpose). */
struct layout {
    const char *name;
    unsigned n;
    size_t len[8];
};

static const struct layout layouts[] = {
    {"one", 1, {24}},
    {"two-even", 2, {12, 12}},
    {"uneven", 4, {1, 11, 5, 7}},
    {"zeros-between", 6, {0, 5, 0, 0, 19, 0}},
    {"bytes", 8, {3, 3, 3, 3, 3, 3, 3, 3}},
    {"zero-first-last", 3, {0, 24, 0}},
};
#define NLAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

/* Backing store of the iovecs: a fence byte after every entry catches overruns. */
struct arr {
    uint8_t store[MAXB + 16];
    struct iovec iov[8];
    unsigned n;
    size_t total;
};

static void arr_make(struct arr *a, const struct layout *l, uint8_t seed)
{
    memset(a->store, 0xee, sizeof(a->store));
    size_t pos = 0, total = 0;
    for (unsigned i = 0; i < l->n; i++) {
        a->iov[i].iov_base = a->store + pos;
        a->iov[i].iov_len = l->len[i];
        for (size_t k = 0; k < l->len[i]; k++)
            a->store[pos + k] = (uint8_t)(seed + total + k);
        pos += l->len[i] + 1; /* fence */
        total += l->len[i];
    }
    a->n = l->n;
    a->total = total;
}

/* Byte @p k of the stream that arr_make wrote. */
static uint8_t model(uint8_t seed, size_t k)
{
    return (uint8_t)(seed + k);
}

static void fences_intact(const struct arr *a)
{
    for (unsigned i = 0; i < a->n; i++) {
        const uint8_t *end = (const uint8_t *)a->iov[i].iov_base + a->iov[i].iov_len;
        ck_assert_uint_eq(*end, 0xee);
    }
}

START_TEST(len_and_left)
{
    struct arr a;
    arr_make(&a, &layouts[_i], 0);
    ck_assert_int_eq(vio_iov_len(a.iov, a.n), 24);
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, a.iov, a.n);
    for (size_t k = 0; k <= 24; k++) {
        struct vio_iov_cur t = c;
        ck_assert_uint_eq(vio_iov_cur_skip(&t, k), k);
        ck_assert_uint_eq(vio_iov_cur_left(&t), 24 - k);
    }
}
END_TEST

START_TEST(empty_arrays)
{
    struct vio_iov_cur c;
    uint8_t b[4] = {1, 2, 3, 4};
    void *p = NULL;
    vio_iov_cur_init(&c, NULL, 5); /* NULL array: nothing whatever n says */
    ck_assert_uint_eq(vio_iov_cur_left(&c), 0);
    ck_assert_uint_eq(vio_iov_cur_read(&c, b, 4), 0);
    ck_assert_uint_eq(vio_iov_cur_write(&c, b, 4), 0);
    ck_assert_uint_eq(vio_iov_cur_skip(&c, SIZE_MAX), 0);
    ck_assert_uint_eq(vio_iov_cur_chunk(&c, 4, &p), 0);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(vio_iov_cur_split(&c, 4, NULL, 0), 0);
    ck_assert_int_eq(vio_iov_len(NULL, 0), 0);
    ck_assert_uint_eq(vio_iov_read_at(NULL, 0, 0, b, 4), 0);
    ck_assert_uint_eq(vio_iov_write_at(NULL, 0, 0, b, 4), 0);
    ck_assert_uint_eq(vio_iov_read_at(NULL, 0, 0, b, 0), 0);

    /* entries that are all zero-length */
    struct iovec z[3] = {{b, 0}, {b + 1, 0}, {b + 2, 0}};
    vio_iov_cur_init(&c, z, 3);
    ck_assert_uint_eq(vio_iov_cur_left(&c), 0);
    ck_assert_uint_eq(vio_iov_cur_read(&c, b, 1), 0);
    ck_assert_uint_eq(vio_iov_cur_chunk(&c, 1, &p), 0);
    ck_assert_uint_eq(c.n, 0); /* walked past all of them */
    ck_assert_int_eq(vio_iov_len(z, 3), 0);
    ck_assert_uint_eq(vio_iov_split(z, 3, 0), 3);
    ck_assert_uint_eq(vio_iov_split(z, 3, 5), 3);
    ck_assert_uint_eq(vio_iov_split(z, 0, 0), 0);
    ck_assert(memcmp(b, (uint8_t[]){1, 2, 3, 4}, 4) == 0); /* nothing written */
    /* length 0 on a non-empty array: nothing moves */
    struct iovec one = {b, 4};
    vio_iov_cur_init(&c, &one, 1);
    ck_assert_uint_eq(vio_iov_cur_read(&c, b, 0), 0);
    ck_assert_uint_eq(vio_iov_cur_chunk(&c, 0, &p), 0);
    ck_assert_uint_eq(vio_iov_cur_left(&c), 4);
}
END_TEST

/* Read @p k bytes at every offset: exactly the model's bytes, short at the end. */
START_TEST(read_every_offset_and_length)
{
    struct arr a;
    arr_make(&a, &layouts[_i], 7);
    for (size_t off = 0; off <= 26; off++) {
        for (size_t k = 0; k <= 26; k++) {
            uint8_t out[32];
            memset(out, 0xaa, sizeof(out));
            size_t want = off >= 24 ? 0 : (k < 24 - off ? k : 24 - off);
            struct vio_iov_cur c;
            vio_iov_cur_init(&c, a.iov, a.n);
            size_t sk = vio_iov_cur_skip(&c, off);
            ck_assert_uint_eq(sk, off < 24 ? off : 24);
            ck_assert_uint_eq(vio_iov_cur_read(&c, out, k), want);
            for (size_t j = 0; j < want; j++)
                ck_assert_uint_eq(out[j], model(7, off + j));
            ck_assert_uint_eq(out[want], 0xaa); /* nothing beyond the count */
            ck_assert_uint_eq(vio_iov_cur_left(&c), 24 - (off < 24 ? off : 24) - want);
            /* the one-shot form agrees (off past the end: nothing) */
            memset(out, 0xaa, sizeof(out));
            ck_assert_uint_eq(vio_iov_read_at(a.iov, a.n, off, out, k), off > 24 ? 0 : want);
            for (size_t j = 0; j < want; j++)
                ck_assert_uint_eq(out[j], model(7, off + j));
        }
    }
    fences_intact(&a);
}
END_TEST

START_TEST(write_every_offset_and_length)
{
    for (size_t off = 0; off <= 26; off++) {
        for (size_t k = 0; k <= 26; k++) {
            for (int oneshot = 0; oneshot < 2; oneshot++) {
                struct arr a;
                arr_make(&a, &layouts[_i], 0);
                uint8_t in[32];
                for (size_t j = 0; j < sizeof(in); j++)
                    in[j] = (uint8_t)(0x80 | j);
                size_t want = off >= 24 ? 0 : (k < 24 - off ? k : 24 - off);
                size_t got;
                if (oneshot) {
                    got = vio_iov_write_at(a.iov, a.n, off, in, k);
                    if (off > 24)
                        want = 0;
                } else {
                    struct vio_iov_cur c;
                    vio_iov_cur_init(&c, a.iov, a.n);
                    vio_iov_cur_skip(&c, off);
                    got = vio_iov_cur_write(&c, in, k);
                }
                ck_assert_uint_eq(got, want);
                /* read the whole stream back: written range replaced, the rest untouched */
                uint8_t back[24];
                ck_assert_uint_eq(vio_iov_read_at(a.iov, a.n, 0, back, 24), 24);
                for (size_t j = 0; j < 24; j++) {
                    uint8_t exp = (j >= off && j < off + want) ? in[j - off] : model(0, j);
                    ck_assert_uint_eq(back[j], exp);
                }
                fences_intact(&a);
            }
        }
    }
}
END_TEST

/* Consecutive reads through one cursor rebuild the stream, whatever the step. */
START_TEST(read_in_steps)
{
    struct arr a;
    arr_make(&a, &layouts[_i], 3);
    for (size_t step = 1; step <= 25; step++) {
        struct vio_iov_cur c;
        vio_iov_cur_init(&c, a.iov, a.n);
        uint8_t out[24];
        size_t pos = 0, m;
        while ((m = vio_iov_cur_read(&c, out + pos, step < 24 - pos ? step : 24 - pos)))
            pos += m;
        ck_assert_uint_eq(pos, 24);
        for (size_t j = 0; j < 24; j++)
            ck_assert_uint_eq(out[j], model(3, j));
        ck_assert_uint_eq(vio_iov_cur_left(&c), 0);
    }
}
END_TEST

/* Chunks never cross an entry, never are empty before the end, and cover the stream. */
START_TEST(chunks_cover_stream)
{
    struct arr a;
    arr_make(&a, &layouts[_i], 9);
    for (size_t max = 1; max <= 25; max++) {
        struct vio_iov_cur c;
        vio_iov_cur_init(&c, a.iov, a.n);
        size_t pos = 0, m;
        void *p;
        while ((m = vio_iov_cur_chunk(&c, max, &p))) {
            ck_assert_uint_le(m, max);
            const uint8_t *b = p;
            for (size_t j = 0; j < m; j++)
                ck_assert_uint_eq(b[j], model(9, pos + j));
            /* inside one entry */
            int inside = 0;
            for (unsigned i = 0; i < a.n; i++) {
                const uint8_t *s = a.iov[i].iov_base;
                if (b >= s && b + m <= s + a.iov[i].iov_len && m)
                    inside = 1;
            }
            ck_assert(inside);
            pos += m;
        }
        ck_assert_uint_eq(pos, 24);
    }
}
END_TEST

/* split: the head's iovecs hold exactly the first k bytes (no zero-length entries), the
 * cursor continues at byte k, the in-place split leaves the tail. Every k. */
START_TEST(split_every_offset)
{
    for (size_t k = 0; k <= 26; k++) {
        struct arr a;
        arr_make(&a, &layouts[_i], 5);
        struct vio_iov_cur c;
        vio_iov_cur_init(&c, a.iov, a.n);
        struct iovec head[8];
        int nh = vio_iov_cur_split(&c, k, head, 8);
        ck_assert_int_ge(nh, 0);
        size_t hk = k < 24 ? k : 24;
        ck_assert_int_eq(vio_iov_len(head, (unsigned)nh), (ssize_t)hk);
        for (int i = 0; i < nh; i++)
            ck_assert_uint_gt(head[i].iov_len, 0);
        uint8_t hb[24];
        ck_assert_uint_eq(vio_iov_read_at(head, (unsigned)nh, 0, hb, hk), hk);
        for (size_t j = 0; j < hk; j++)
            ck_assert_uint_eq(hb[j], model(5, j));
        ck_assert_uint_eq(vio_iov_cur_left(&c), 24 - hk);
        uint8_t b;
        if (k < 24) {
            ck_assert_uint_eq(vio_iov_cur_read(&c, &b, 1), 1);
            ck_assert_uint_eq(b, model(5, k));
        }

        /* in place: the tail starts at byte k */
        unsigned first = vio_iov_split(a.iov, a.n, k);
        ck_assert_uint_le(first, a.n);
        ck_assert_int_eq(vio_iov_len(a.iov + first, a.n - first), (ssize_t)(24 - hk));
        uint8_t tb[24];
        ck_assert_uint_eq(vio_iov_read_at(a.iov + first, a.n - first, 0, tb, 24 - hk), 24 - hk);
        for (size_t j = 0; j < 24 - hk; j++)
            ck_assert_uint_eq(tb[j], model(5, k + j));
        if (first < a.n && hk < 24)
            ck_assert_uint_gt(a.iov[first].iov_len, 0); /* starts on a byte, not an empty entry */
        if (hk == 24)
            ck_assert_uint_eq(first, a.n);
    }
}
END_TEST

/* split needing more entries than given: -ENOBUFS, the cursor does not move. */
START_TEST(split_short_out)
{
    struct arr a;
    arr_make(&a, &layouts[4], 1); /* 8 x 3 bytes */
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, a.iov, a.n);
    vio_iov_cur_skip(&c, 1);
    struct iovec head[3];
    ck_assert_int_eq(vio_iov_cur_split(&c, 9, head, 3), -ENOBUFS); /* 2 + 3 + 3 + 1 */
    ck_assert_uint_eq(vio_iov_cur_left(&c), 23);
    ck_assert_int_eq(vio_iov_cur_split(&c, 8, head, 3), 3); /* 2 + 3 + 3: exact fit */
    ck_assert_uint_eq(head[0].iov_len, 2);
    ck_assert_uint_eq(head[2].iov_len, 3);
    ck_assert_uint_eq(vio_iov_cur_left(&c), 15);
    ck_assert_int_eq(vio_iov_cur_split(&c, 0, head, 0), 0);
    ck_assert_int_eq(vio_iov_cur_split(&c, 1, head, 0), -ENOBUFS);
}
END_TEST

/* Lengths near SIZE_MAX: bounded by the array, never an overflow. (The huge lengths come
 * from a volatile: as constants the compiler rightly warns about a memcpy of that size on
 * the fast path it cannot prove dead.) */
static volatile size_t huge_len = SIZE_MAX;

START_TEST(overflow_sized_lengths)
{
    const size_t huge = huge_len;
    struct arr a;
    arr_make(&a, &layouts[_i], 2);
    uint8_t out[32];
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, a.iov, a.n);
    ck_assert_uint_eq(vio_iov_cur_skip(&c, SIZE_MAX), 24);
    ck_assert_uint_eq(vio_iov_cur_skip(&c, SIZE_MAX), 0);
    vio_iov_cur_init(&c, a.iov, a.n);
    ck_assert_uint_eq(vio_iov_cur_skip(&c, 5), 5);
    ck_assert_uint_eq(vio_iov_cur_read(&c, out, huge), 19);
    for (size_t j = 0; j < 19; j++)
        ck_assert_uint_eq(out[j], model(2, 5 + j));
    ck_assert_uint_eq(vio_iov_read_at(a.iov, a.n, SIZE_MAX, out, 1), 0);
    ck_assert_uint_eq(vio_iov_read_at(a.iov, a.n, huge - 2, out, huge), 0);
    ck_assert_uint_eq(vio_iov_write_at(a.iov, a.n, SIZE_MAX, out, 4), 0);
    struct iovec head[8];
    vio_iov_cur_init(&c, a.iov, a.n);
    int nh = vio_iov_cur_split(&c, SIZE_MAX, head, 8);
    ck_assert_int_ge(nh, 1);
    ck_assert_int_eq(vio_iov_len(head, (unsigned)nh), 24);
    ck_assert_uint_eq(vio_iov_split(a.iov, a.n, SIZE_MAX), a.n);
    fences_intact(&a);

    /* sums past SSIZE_MAX / SIZE_MAX (entries never dereferenced) */
    struct iovec big[3] = {{out, SIZE_MAX / 2}, {out, SIZE_MAX / 2}, {out, 16}};
    ck_assert_int_eq(vio_iov_len(big, 1), (ssize_t)(SIZE_MAX / 2));
    ck_assert_int_eq(vio_iov_len(big, 2), -EINVAL);
    ck_assert_int_eq(vio_iov_len(big, 3), -EINVAL);
    struct iovec maxed[2] = {{out, (size_t)SSIZE_MAX}, {out, 1}};
    ck_assert_int_eq(vio_iov_len(maxed, 1), SSIZE_MAX);
    ck_assert_int_eq(vio_iov_len(maxed, 2), -EINVAL);
    vio_iov_cur_init(&c, big, 3);
    ck_assert_uint_eq(vio_iov_cur_left(&c), SIZE_MAX); /* saturates */
    vio_iov_cur_init(&c, big, 2);
    ck_assert_uint_eq(vio_iov_cur_left(&c), SIZE_MAX - 1);
}
END_TEST

/* The fast path (all bytes in the current entry) and the slow path agree at an entry's end. */
START_TEST(exact_fit_boundaries)
{
    uint8_t s1[4] = {1, 2, 3, 4}, s2[4] = {5, 6, 7, 8}, out[8];
    struct iovec v[2] = {{s1, 4}, {s2, 4}};
    struct vio_iov_cur c;
    vio_iov_cur_init(&c, v, 2);
    ck_assert_uint_eq(vio_iov_cur_read(&c, out, 4), 4); /* exactly the first entry */
    ck_assert_uint_eq(vio_iov_cur_read(&c, out + 4, 4), 4);
    ck_assert(memcmp(out, (uint8_t[]){1, 2, 3, 4, 5, 6, 7, 8}, 8) == 0);
    ck_assert_uint_eq(vio_iov_cur_read(&c, out, 1), 0);
    /* a short array: 8 bytes asked of 8 - 1 */
    vio_iov_cur_init(&c, v, 2);
    vio_iov_cur_skip(&c, 1);
    ck_assert_uint_eq(vio_iov_cur_read(&c, out, 8), 7);
    /* split at the entry boundary: tail is the second entry, untouched */
    ck_assert_uint_eq(vio_iov_split(v, 2, 4), 1);
    ck_assert_ptr_eq(v[1].iov_base, s2);
    ck_assert_uint_eq(v[1].iov_len, 4);
    /* split inside the first entry: trimmed in place */
    struct iovec w[2] = {{s1, 4}, {s2, 4}};
    ck_assert_uint_eq(vio_iov_split(w, 2, 3), 0);
    ck_assert_ptr_eq(w[0].iov_base, s1 + 3);
    ck_assert_uint_eq(w[0].iov_len, 1);
}
END_TEST

static Suite *iov_suite(void)
{
    Suite *s = suite_create("iov");
    TCase *tc = tcase_create("cursor");
    tcase_add_loop_test(tc, len_and_left, 0, NLAYOUTS);
    tcase_add_test(tc, empty_arrays);
    tcase_add_loop_test(tc, read_every_offset_and_length, 0, NLAYOUTS);
    tcase_add_loop_test(tc, write_every_offset_and_length, 0, NLAYOUTS);
    tcase_add_loop_test(tc, read_in_steps, 0, NLAYOUTS);
    tcase_add_loop_test(tc, chunks_cover_stream, 0, NLAYOUTS);
    tcase_add_test(tc, exact_fit_boundaries);
    suite_add_tcase(s, tc);
    tc = tcase_create("split");
    tcase_add_loop_test(tc, split_every_offset, 0, NLAYOUTS);
    tcase_add_test(tc, split_short_out);
    suite_add_tcase(s, tc);
    tc = tcase_create("bounds");
    tcase_add_loop_test(tc, overflow_sized_lengths, 0, NLAYOUTS);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(iov_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
