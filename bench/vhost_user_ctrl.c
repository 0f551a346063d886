/* SPDX-License-Identifier: MIT */
/*
 * vhost_user_ctrl SOCK [options] — control-path time of a vhost-user back-end: from the
 * front-end's connect() to "all queues ready" (every message of the setup acknowledged with
 * REPLY_ACK, then one more round trip), with guest RAM of any size.
 *
 *   --mem SIZE      guest RAM (sparse memfd; K/M/G suffixes), default 1G
 *   --hugepages     guest RAM from MFD_HUGETLB (2 MiB pages)
 *   --pairs N       queue pairs to set up (default 1)
 *   --repeat N      connections (default 5); prints each, then the median
 *   --pid PID       the back-end's pid: report how much its resident memory grew during
 *                   the setup (a back-end that touches guest pages at SET_MEM_TABLE grows
 *                   by the guest size)
 *
 * Output: "ctrl: run=I ready_ms=T rss_grow_kib=K" per connection and
 *         "ctrl: median ready_ms=T rss_grow_kib=K".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vu_frontend.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

static uint64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    default: break;
    }
    return (uint64_t)v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCK [--mem SIZE] [--hugepages] [--pairs N] [--repeat N] "
                "[--pid PID]\n", argv[0]);
        return 2;
    }
    struct vufe_config cfg = {.mem_size = 1ull << 30, .queue_pairs = 1, .reply_ack = true,
                              .no_driver = true};
    int repeat = 5, pid = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--mem") && i + 1 < argc)
            cfg.mem_size = parse_size(argv[++i]);
        else if (!strcmp(argv[i], "--hugepages"))
            cfg.hugepages = true;
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc)
            cfg.queue_pairs = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pid") && i + 1 < argc)
            pid = atoi(argv[++i]);
        else {
            fprintf(stderr, "vhost_user_ctrl: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (repeat < 1 || repeat > 100)
        repeat = 5;
    double t[100], g[100];
    int ok = 0;
    for (int r = 0; r < repeat; r++) {
        struct vufe f;
        long rss0 = pid ? rss_kib(pid) : 0;
        double t0 = now_ms();
        int rc = vufe_open(&f, argv[1], -1);
        if (rc == 0)
            rc = vufe_setup(&f, &cfg);
        double t1 = now_ms();
        long rss1 = pid ? rss_kib(pid) : 0;
        if (rc < 0) {
            printf("ctrl: run=%d failed: %s (%s)\n", r + 1, f.err[0] ? f.err : "-", strerror(-rc));
            vufe_close(&f);
            continue;
        }
        t[ok] = t1 - t0;
        g[ok] = (double)(rss1 - rss0);
        printf("ctrl: run=%d ready_ms=%.3f rss_grow_kib=%ld\n", r + 1, t[ok], rss1 - rss0);
        fflush(stdout);
        ok++;
        vufe_close(&f);
        usleep(200 * 1000); /* let the back-end tear the session down */
    }
    if (!ok)
        return 1;
    qsort(t, (size_t)ok, sizeof(t[0]), cmp_d);
    qsort(g, (size_t)ok, sizeof(g[0]), cmp_d);
    printf("ctrl: median ready_ms=%.3f rss_grow_kib=%.0f runs=%d\n",
           ok % 2 ? t[ok / 2] : (t[ok / 2 - 1] + t[ok / 2]) / 2,
           ok % 2 ? g[ok / 2] : (g[ok / 2 - 1] + g[ok / 2]) / 2, ok);
    return 0;
}
