/* SPDX-License-Identifier: MIT */
/*
 * The front-end of the offload proxy test (offload_proxy.sh): a vhost-user front-end with its
 * own guest RAM (a memfd) connects to vio-vhost-user-proxy, whose offload device hands the rings,
 * the memory fds and the eventfds on to vio-vhost-user-net --loopback. Frames are sent and must
 * come back byte for byte; then the proxy is asked (SIGUSR1) for the state of every ring, and
 * the test checks that the proxy's transport never took a chain from the rings while the
 * shared rings moved: the back-end ran them, reading and writing this process's memory through
 * the forwarded fds.
 *
 * Usage: offload_proxy --socket PATH --proxy-pid PID --proxy-out FILE [--frames N] [--size B]
 *                      [--pairs P] [--hold FILE]
 * With --hold, the connection stays up after the checks until FILE exists (at most 60 s), so
 * the script can kill the back-end under a live session.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vu_frontend.h"

static int fails;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            printf("FAIL: " __VA_ARGS__);                                                        \
            printf("\n");                                                                        \
            fails++;                                                                             \
        }                                                                                        \
    } while (0)

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static unsigned count_ends(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    unsigned n = 0;
    while (fgets(line, sizeof(line), f))
        if (!strcmp(line, "end\n"))
            n++;
    fclose(f);
    return n;
}

/* Field @p key=value of @p line, or -1. */
static long field(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *p = strstr(line, pat);
    return p ? strtol(p + strlen(pat), NULL, 0) : -1;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *out = NULL, *hold = NULL;
    long pid = 0;
    unsigned frames = 2000, pairs = 1;
    size_t size = 1000;
    static const struct option lo[] = {
        {"socket", required_argument, NULL, 's'}, {"proxy-pid", required_argument, NULL, 'p'},
        {"proxy-out", required_argument, NULL, 'o'}, {"frames", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 'z'}, {"pairs", required_argument, NULL, 'q'},
        {"hold", required_argument, NULL, 'H'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'p': pid = strtol(optarg, NULL, 10); break;
        case 'o': out = optarg; break;
        case 'n': frames = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'z': size = strtoul(optarg, NULL, 10); break;
        case 'q': pairs = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'H': hold = optarg; break;
        default: return 2;
        }
    }
    if (!sock || pid <= 0 || !out || !frames || pairs < 1 || pairs > 8) {
        fprintf(stderr, "usage: offload_proxy --socket PATH --proxy-pid PID --proxy-out FILE\n");
        return 2;
    }

    struct vufe f;
    int rc = vufe_open(&f, sock, -1);
    if (rc < 0) {
        printf("FAIL: connect to the proxy at %s: %s\n", sock, strerror(-rc));
        return 1;
    }
    struct vufe_config cfg = {.queue_pairs = pairs, .queue_size = 256, .reply_ack = true};
    rc = vufe_setup(&f, &cfg);
    if (rc < 0) {
        printf("FAIL: set-up through the proxy: %s (%s)\n", strerror(-rc), f.err);
        vufe_close(&f);
        return 1;
    }
    printf("negotiated features 0x%llx protocol features 0x%llx\n",
           (unsigned long long)f.features, (unsigned long long)f.pfeatures);

    long ok = vufe_echo(&f, frames, size, 20000);
    CHECK(ok == (long)frames * pairs, "%ld of %u frames of %zu bytes came back intact", ok,
          frames * pairs, size);
    printf("echo: %ld of %u frames of %zu bytes came back intact\n", ok, frames * pairs, size);

    /* The proxy's view of the rings. */
    unsigned before = count_ends(out);
    kill((pid_t)pid, SIGUSR1);
    for (int i = 0; i < 100 && count_ends(out) <= before; i++)
        sleep_ms(50);
    FILE *fp = fopen(out, "r");
    CHECK(fp && count_ends(out) > before, "the proxy did not report its rings (%s)", out);
    unsigned block = 0, seen = 0;
    char line[512];
    while (fp && fgets(line, sizeof(line), fp)) {
        if (!strcmp(line, "end\n")) {
            block++;
            continue;
        }
        if (block != before)
            continue; /* an older report */
        fputs(line, stdout);
        if (!strncmp(line, "ring q=", 7)) {
            long q = strtol(line + 7, NULL, 10);
            if (q < 0 || q >= (long)(2 * pairs))
                continue;
            seen++;
            bool tx = q & 1;
            CHECK(field(line, "offloaded") == 1 && field(line, "in_backend") == 1,
                  "queue %ld is not offloaded", q);
            /* the transport's own queue object never popped nor pushed a chain ... */
            CHECK(field(line, "transport_last_avail") == 0 && field(line, "transport_used") == 0 &&
                      field(line, "transport_inflight") == 0,
                  "queue %ld: the proxy's transport touched the ring", q);
            /* ... while the shared ring moved: the back-end read and wrote it */
            long used = field(line, "ring_used_idx"), avail = field(line, "ring_avail_idx");
            if (tx)
                CHECK(used >= (long)frames && used == avail,
                      "tx queue %ld: used %ld avail %ld, %u frames sent", q, used, avail, frames);
            else
                CHECK(used >= (long)frames, "rx queue %ld: used %ld, %u frames received", q,
                      used, frames);
        } else if (!strncmp(line, "offload ", 8)) {
            CHECK(field(line, "errors") == 0 && field(line, "backend_lost") == 0,
                  "the offload device reports errors");
            CHECK(field(line, "rings_started") >= (long)(2 * pairs) &&
                      field(line, "mem_tables") == 1,
                  "the offload device did not start its rings in the back-end (or sent the one memory table more than once)");
        }
    }
    if (fp)
        fclose(fp);
    CHECK(seen == 2 * pairs, "the proxy reported %u of %u data rings", seen, 2 * pairs);

    if (hold) {
        printf("holding\n");
        fflush(stdout);
        struct stat st;
        for (int i = 0; i < 1200 && stat(hold, &st) < 0; i++)
            sleep_ms(50);
    }
    vufe_close(&f);
    printf("%s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
