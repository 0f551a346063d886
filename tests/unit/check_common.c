/* SPDX-License-Identifier: MIT */
/* Suite "common": vio_log_stderr() and its level threshold (stderr captured into a file). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio/common.h"

/* ------------------------------------------------------------------------ */
/* stderr capture                                                            */

struct capture {
    FILE *tmp;
    int saved;
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    ck_assert_ptr_nonnull(c->tmp);
    c->saved = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(fileno(c->tmp), STDERR_FILENO), STDERR_FILENO);
}

/* Restore stderr; returns what was written meanwhile (malloc'd, NUL terminated). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    ck_assert_int_eq(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    long len = ftell(c->tmp);
    ck_assert_int_ge(len, 0);
    char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    rewind(c->tmp);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, c->tmp), (size_t)len);
    buf[len] = '\0';
    fclose(c->tmp);
    return buf;
}

static unsigned count_lines(const char *s)
{
    unsigned n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */

/* Runs first in a fresh process (forked, or the first test with CK_FORK=no). */
START_TEST(default_is_info)
{
    ck_assert_int_eq(vio_log_stderr_level(), VIO_LOG_INFO);
    struct capture c;
    capture_begin(&c);
    vio_log_stderr(NULL, VIO_LOG_DEBUG, "q0", "chatty");
    vio_log_stderr(NULL, VIO_LOG_INFO, "q0", "connected");
    vio_log_stderr(NULL, VIO_LOG_ERROR, "q0", "broken");
    char *out = capture_end(&c);
    ck_assert_str_eq(out, "libvirtio: q0: info: connected\nlibvirtio: q0: error: broken\n");
    free(out);
}
END_TEST

START_TEST(line_format)
{
    vio_log_stderr_set_level(VIO_LOG_DEBUG);
    struct capture c;
    capture_begin(&c);
    vio_log_stderr(NULL, VIO_LOG_WARN, "vhost-user", "refused");
    vio_log_stderr((void *)&c, VIO_LOG_DEBUG, NULL, NULL); /* opaque ignored, NULLs named */
    vio_log_stderr(NULL, 7, "x", "odd level");
    char *out = capture_end(&c);
    ck_assert_str_eq(out, "libvirtio: vhost-user: warn: refused\n"
                          "libvirtio: -: debug: \n"
                          "libvirtio: x: ?: odd level\n");
    free(out);
    vio_log_stderr_set_level(VIO_LOG_INFO);
}
END_TEST

START_TEST(set_level_clamps)
{
    static const struct {
        int set, want;
    } t[] = {{VIO_LOG_ERROR, 0}, {VIO_LOG_WARN, 1}, {VIO_LOG_INFO, 2}, {VIO_LOG_DEBUG, 3},
             {4, 3}, {1000, 3}, {-1, -1}, {-1000, -1}};
    for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        vio_log_stderr_set_level(t[i].set);
        ck_assert_int_eq(vio_log_stderr_level(), t[i].want);
    }
    vio_log_stderr_set_level(VIO_LOG_INFO);
}
END_TEST

/* Every threshold against every level: printed exactly when level <= threshold; a level the
 * enum does not name counts as debug. */
static const int thresholds[] = {-5, -1, VIO_LOG_ERROR, VIO_LOG_WARN, VIO_LOG_INFO, VIO_LOG_DEBUG, 9};
static const int levels[] = {VIO_LOG_ERROR, VIO_LOG_WARN, VIO_LOG_INFO, VIO_LOG_DEBUG, 4, -2};

START_TEST(threshold_table)
{
    int th = thresholds[_i];
    vio_log_stderr_set_level(th);
    int eff = th < 0 ? -1 : th > VIO_LOG_DEBUG ? VIO_LOG_DEBUG : th;
    for (unsigned k = 0; k < sizeof(levels) / sizeof(levels[0]); k++) {
        int lv = levels[k];
        int as = lv >= VIO_LOG_ERROR && lv <= VIO_LOG_DEBUG ? lv : VIO_LOG_DEBUG;
        struct capture c;
        capture_begin(&c);
        vio_log_stderr(NULL, lv, "obj", "m");
        char *out = capture_end(&c);
        ck_assert_msg((strlen(out) > 0) == (as <= eff), "threshold %d level %d: got '%s'", th,
                      lv, out);
        free(out);
    }
    vio_log_stderr_set_level(VIO_LOG_INFO);
}
END_TEST

/* Threads log while another flips the threshold: no torn or mixed lines, and the error
 * lines (always above the threshold) all arrive. */
#define LOG_THREADS 4
#define LOG_LINES 300

static void *logger(void *arg)
{
    (void)arg;
    for (int i = 0; i < LOG_LINES; i++) {
        vio_log_stderr(NULL, VIO_LOG_ERROR, "t", "error line of a fixed length");
        vio_log_stderr(NULL, VIO_LOG_INFO, "t", "info line");
    }
    return NULL;
}

START_TEST(threads_flip_level)
{
    struct capture c;
    capture_begin(&c);
    pthread_t th[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, logger, NULL), 0);
    for (int i = 0; i < 2000; i++)
        vio_log_stderr_set_level(i & 1 ? VIO_LOG_ERROR : VIO_LOG_INFO);
    for (int i = 0; i < LOG_THREADS; i++)
        pthread_join(th[i], NULL);
    char *out = capture_end(&c);
    vio_log_stderr_set_level(VIO_LOG_INFO);
    unsigned errors = 0, infos = 0;
    for (char *save = NULL, *ln = strtok_r(out, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        if (strcmp(ln, "libvirtio: t: error: error line of a fixed length") == 0)
            errors++;
        else if (strcmp(ln, "libvirtio: t: info: info line") == 0)
            infos++;
        else
            ck_abort_msg("torn or foreign line '%s'", ln);
    }
    ck_assert_uint_eq(errors, LOG_THREADS * LOG_LINES);
    ck_assert_uint_le(infos, LOG_THREADS * LOG_LINES);
    free(out);
}
END_TEST

START_TEST(silenced)
{
    vio_log_stderr_set_level(-1);
    struct capture c;
    capture_begin(&c);
    vio_log_stderr(NULL, VIO_LOG_ERROR, "q", "even errors");
    char *out = capture_end(&c);
    ck_assert_uint_eq(count_lines(out), 0);
    free(out);
    vio_log_stderr_set_level(VIO_LOG_INFO);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("log_stderr");
    tcase_add_test(tc, default_is_info);
    tcase_add_test(tc, line_format);
    tcase_add_test(tc, set_level_clamps);
    tcase_add_loop_test(tc, threshold_table, 0, (int)(sizeof(thresholds) / sizeof(thresholds[0])));
    tcase_add_test(tc, threads_flip_level);
    tcase_add_test(tc, silenced);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(common_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
