/* SPDX-License-Identifier: MIT */
/*
 * bench_xcore: the machine's current "mood" — the round-trip time of one cache line between
 * two CPUs.
 *
 * These 2-vCPU machines switch, from one minute to the next, between the two vCPUs sharing
 * a last-level cache (a line goes there and back in ~110 ns) and not sharing one (~540 ns).
 * Every figure that moves data between two cores (a ring, a vhost-user back-end and its
 * front-end) changes with it, by up to 3x, and not by the same factor for every
 * implementation. The benchmarks run this before and after each A/B pair to tell which
 * mode the pair ran in, and to throw away pairs during which the mode changed.
 *
 * Two threads pinned to --cpus A,B bounce a counter through two cache lines for --ms
 * milliseconds (default 20). Prints the median round trip of 10 slices in ns, and with
 * --verbose the slices. Exit status 0; 1 on bad arguments or when pinning fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static alignas(64) _Atomic long ping;
static alignas(64) _Atomic long pong;
static _Atomic int echo_state; /* 0 starting, 1 running, 2 could not pin */
static int cpu_a = 0, cpu_b = 1;

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *echo(void *arg)
{
    (void)arg;
    if (pin(cpu_b) != 0) {
        atomic_store(&echo_state, 2);
        return NULL;
    }
    atomic_store(&echo_state, 1);
    long seen = 0;
    for (;;) {
        long v;
        while ((v = atomic_load_explicit(&ping, memory_order_acquire)) == seen)
            ;
        if (v < 0)
            return NULL;
        seen = v;
        atomic_store_explicit(&pong, v, memory_order_release);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_xcore [--cpus A,B] [--ms N] [--verbose]\n"
               "Round trip of one cache line between CPUs A and B (default 0,1), median of 10\n"
               "slices over N ms (default 20), in ns: the machine's current cross-core cost.\n");
}

int main(int argc, char **argv)
{
    int ms = 20;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpus") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b) != 2 || cpu_a < 0 || cpu_b < 0 ||
                cpu_a == cpu_b) {
                fprintf(stderr, "bench_xcore: --cpus wants two different CPUs, like 0,1\n");
                return 1;
            }
        } else if (!strcmp(argv[i], "--ms") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 10000) {
                fprintf(stderr, "bench_xcore: --ms wants 1..10000\n");
                return 1;
            }
            ms = (int)v;
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_xcore: unknown argument '%s' (see --help)\n", argv[i]);
            return 1;
        }
    }
    if (pin(cpu_a) != 0) {
        fprintf(stderr, "bench_xcore: cannot run on CPU %d\n", cpu_a);
        return 1;
    }
    pthread_t t;
    int rc = pthread_create(&t, NULL, echo, NULL);
    if (rc) {
        fprintf(stderr, "bench_xcore: pthread_create: %s\n", strerror(rc));
        return 1;
    }
    while (atomic_load(&echo_state) == 0)
        sched_yield();
    if (atomic_load(&echo_state) == 2) {
        pthread_join(t, NULL);
        fprintf(stderr, "bench_xcore: cannot run on CPU %d\n", cpu_b);
        return 1;
    }
    double slice[10];
    long v = 0;
    for (int s = 0; s < 10; s++) {
        double t0 = now_ns(), end = t0 + ms * 1e5; /* ms/10 per slice */
        long n = 0;
        do {
            for (int k = 0; k < 64; k++) {
                atomic_store_explicit(&ping, ++v, memory_order_release);
                while (atomic_load_explicit(&pong, memory_order_acquire) != v)
                    ;
            }
            n += 64;
        } while (now_ns() < end);
        slice[s] = (now_ns() - t0) / (double)n;
        if (verbose)
            fprintf(stderr, "slice %d: %.0f ns\n", s, slice[s]);
    }
    atomic_store_explicit(&ping, -1, memory_order_release);
    pthread_join(t, NULL);
    qsort(slice, 10, sizeof(slice[0]), cmp_double);
    printf("%.0f\n", (slice[4] + slice[5]) / 2);
    return 0;
}
