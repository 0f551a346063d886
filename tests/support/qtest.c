/* SPDX-License-Identifier: MIT */
/* QEMU qtest protocol client (see qtest.h). */
#include "qtest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QT_LINE 16384
#define QT_IRQS 256
#define QT_TIMEOUT_MS 20000

struct qtest {
    pid_t pid;
    int fd;
    char rbuf[QT_LINE];
    size_t rlen;
    char line[QT_LINE];
    int irq_level[QT_IRQS];
    unsigned irq_raises[QT_IRQS];
    unsigned raises_total;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

pid_t qtest_pid(const struct qtest *q)
{
    return q ? q->pid : -1;
}

int qtest_spawn(const char *const *argv, const char *dir, const char *stderr_path, int timeout_ms,
                struct qtest **out)
{
    *out = NULL;
    struct qtest *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->fd = -1;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if ((size_t)snprintf(path, sizeof(path), "%s/qtest.sock", dir) >= sizeof(path)) {
        free(q);
        return -ENAMETOOLONG;
    }
    char qarg[sizeof(path) + 64];
    snprintf(qarg, sizeof(qarg), "unix:%s,server=on,wait=off", path);
    size_t n = 0;
    while (argv[n])
        n++;
    const char **av = calloc(n + 5, sizeof(*av));
    if (!av) {
        free(q);
        return -ENOMEM;
    }
    memcpy(av, argv, n * sizeof(*av));
    av[n++] = "-qtest";
    av[n++] = qarg;
    av[n++] = "-qtest-log";
    av[n++] = "none";
    av[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        free(av);
        free(q);
        return -errno;
    }
    if (pid == 0) {
        if (stderr_path) {
            int e = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (e >= 0) {
                dup2(e, 2);
                dup2(e, 1);
            }
        }
        execvp(av[0], (char *const *)av);
        _exit(127);
    }
    free(av);
    q->pid = pid;
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            q->fd = fd;
            *out = q;
            return 0;
        }
        close(fd);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            q->pid = -1;
            break;
        }
        if (now_ms() > deadline)
            break;
        usleep(20000);
    }
    qtest_free(q);
    return -ETIMEDOUT;
}

void qtest_free(struct qtest *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    if (q->pid > 0) {
        kill(q->pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
            if (waitpid(q->pid, NULL, WNOHANG) == q->pid) {
                q->pid = -1;
                break;
            }
            usleep(20000);
        }
        if (q->pid > 0) {
            kill(q->pid, SIGKILL);
            waitpid(q->pid, NULL, 0);
        }
    }
    free(q);
}

/* One line into q->line (without the newline). */
static int read_line(struct qtest *q)
{
    long deadline = now_ms() + QT_TIMEOUT_MS;
    for (;;) {
        char *nl = memchr(q->rbuf, '\n', q->rlen);
        if (nl) {
            size_t l = (size_t)(nl - q->rbuf);
            memcpy(q->line, q->rbuf, l);
            q->line[l] = 0;
            memmove(q->rbuf, nl + 1, q->rlen - l - 1);
            q->rlen -= l + 1;
            return 0;
        }
        if (q->rlen == sizeof(q->rbuf))
            return -EPROTO;
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r <= 0)
            continue;
        ssize_t k = read(q->fd, q->rbuf + q->rlen, sizeof(q->rbuf) - q->rlen);
        if (k == 0)
            return -ECONNRESET;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        q->rlen += (size_t)k;
    }
}

static void irq_line(struct qtest *q, const char *l)
{
    unsigned n;
    if (sscanf(l, "IRQ raise %u", &n) == 1 && n < QT_IRQS) {
        q->irq_level[n] = 1;
        q->irq_raises[n]++;
        q->raises_total++;
    } else if (sscanf(l, "IRQ lower %u", &n) == 1 && n < QT_IRQS) {
        q->irq_level[n] = 0;
    }
}

/* Send one command; the answer's text after "OK" (maybe empty) is left in q->line. */
static int cmd(struct qtest *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cmd(struct qtest *q, const char *fmt, ...)
{
    char buf[QT_LINE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf) - 1)
        return -EINVAL;
    buf[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(q->fd, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (int)w;
    }
    for (;;) {
        int r = read_line(q);
        if (r < 0)
            return r;
        if (!strncmp(q->line, "IRQ ", 4)) {
            irq_line(q, q->line);
            continue;
        }
        if (!strncmp(q->line, "OK", 2)) {
            memmove(q->line, q->line + 2 + (q->line[2] == ' '), strlen(q->line + 2) + 1);
            return 0;
        }
        fprintf(stderr, "qtest: '%.*s' -> '%s'\n", n - 1, buf, q->line);
        return -EIO;
    }
}

static int value(struct qtest *q, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(q->line, &end, 0);
    if (errno || end == q->line)
        return -EPROTO;
    *v = x;
    return 0;
}

int qtest_out(struct qtest *q, unsigned size, uint16_t port, uint32_t val)
{
    const char *c = size == 1 ? "outb" : size == 2 ? "outw" : size == 4 ? "outl" : NULL;
    return c ? cmd(q, "%s 0x%x 0x%x", c, port, val) : -EINVAL;
}

int qtest_in(struct qtest *q, unsigned size, uint16_t port, uint32_t *val)
{
    const char *c = size == 1 ? "inb" : size == 2 ? "inw" : size == 4 ? "inl" : NULL;
    if (!c)
        return -EINVAL;
    uint64_t v;
    int r = cmd(q, "%s 0x%x", c, port);
    if (r == 0 && (r = value(q, &v)) == 0)
        *val = (uint32_t)v;
    return r;
}

int qtest_outl(struct qtest *q, uint16_t port, uint32_t val)
{
    return qtest_out(q, 4, port, val);
}

int qtest_inl(struct qtest *q, uint16_t port, uint32_t *val)
{
    return qtest_in(q, 4, port, val);
}

static const char *msuffix(unsigned size)
{
    return size == 1 ? "b" : size == 2 ? "w" : size == 4 ? "l" : size == 8 ? "q" : NULL;
}

int qtest_readn(struct qtest *q, uint64_t addr, unsigned size, uint64_t *val)
{
    const char *s = msuffix(size);
    if (!s)
        return -EINVAL;
    int r = cmd(q, "read%s 0x%" PRIx64, s, addr);
    return r ? r : value(q, val);
}

int qtest_writen(struct qtest *q, uint64_t addr, unsigned size, uint64_t val)
{
    const char *s = msuffix(size);
    return s ? cmd(q, "write%s 0x%" PRIx64 " 0x%" PRIx64, s, addr, val) : -EINVAL;
}

int qtest_readl(struct qtest *q, uint64_t addr, uint32_t *val)
{
    uint64_t v;
    int r = qtest_readn(q, addr, 4, &v);
    if (r == 0)
        *val = (uint32_t)v;
    return r;
}

int qtest_writel(struct qtest *q, uint64_t addr, uint32_t val)
{
    return qtest_writen(q, addr, 4, val);
}

int qtest_readq(struct qtest *q, uint64_t addr, uint64_t *val)
{
    return qtest_readn(q, addr, 8, val);
}

int qtest_writeq(struct qtest *q, uint64_t addr, uint64_t val)
{
    return qtest_writen(q, addr, 8, val);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int qtest_read(struct qtest *q, uint64_t addr, void *buf, size_t len)
{
    if (len == 0 || len > 4096)
        return -EINVAL;
    int r = cmd(q, "read 0x%" PRIx64 " 0x%zx", addr, len);
    if (r)
        return r;
    const char *h = q->line;
    if (h[0] != '0' || h[1] != 'x' || strlen(h + 2) != 2 * len)
        return -EPROTO;
    h += 2;
    for (size_t i = 0; i < len; i++) {
        int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
        if (a < 0 || b < 0)
            return -EPROTO;
        ((uint8_t *)buf)[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

int qtest_write(struct qtest *q, uint64_t addr, const void *buf, size_t len)
{
    if (len == 0 || len > 4096)
        return -EINVAL;
    char hex[2 * 4096 + 1];
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", ((const uint8_t *)buf)[i]);
    return cmd(q, "write 0x%" PRIx64 " 0x%zx 0x%s", addr, len, hex);
}

int qtest_irq_intercept_in(struct qtest *q, const char *qom_path)
{
    return cmd(q, "irq_intercept_in %s", qom_path);
}

int qtest_irq_level(const struct qtest *q, unsigned n)
{
    return n < QT_IRQS ? q->irq_level[n] : -1;
}

unsigned qtest_irq_raises(const struct qtest *q, unsigned n)
{
    return n < QT_IRQS ? q->irq_raises[n] : 0;
}

unsigned qtest_irq_raises_total(const struct qtest *q)
{
    return q->raises_total;
}

int qtest_sync(struct qtest *q)
{
    /* a harmless read of the first byte of RAM: any IRQ lines queued before it are read */
    uint64_t v;
    return qtest_readn(q, 0, 1, &v);
}
