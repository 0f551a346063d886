/* SPDX-License-Identifier: MIT */
/*
 * A client for QEMU's qtest text protocol over its unix socket (tests only).
 *
 * qtest_spawn() starts QEMU with the caller's arguments plus
 * "-qtest unix:<path>,server=on,wait=off" and connects; every call then sends one command
 * line and waits for its "OK ..." answer. Asynchronous "IRQ raise N" / "IRQ lower N" lines
 * (after qtest_irq_intercept_in()) are consumed on the way and recorded per line number.
 * Errors: 0 / value or -errno; a "FAIL"/"ERR" answer is -EIO. Not thread-safe.
 */
#ifndef VIO_TEST_QTEST_H
#define VIO_TEST_QTEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct qtest;

/* Start QEMU: argv[0] is the binary, argv NULL-terminated; QEMU's stderr goes to
 * @stderr_path (NULL: inherited). Waits up to @timeout_ms for the socket. */
int qtest_spawn(const char *const *argv, const char *dir, const char *stderr_path,
                int timeout_ms, struct qtest **out);
/* Kill (SIGTERM, then SIGKILL) and reap the QEMU we started; close the socket. */
void qtest_free(struct qtest *q);
pid_t qtest_pid(const struct qtest *q);

int qtest_out(struct qtest *q, unsigned size, uint16_t port, uint32_t val);
int qtest_in(struct qtest *q, unsigned size, uint16_t port, uint32_t *val);
int qtest_outl(struct qtest *q, uint16_t port, uint32_t val);
int qtest_inl(struct qtest *q, uint16_t port, uint32_t *val);

/* memory: size 1, 2, 4, 8 (readb/readw/readl/readq, writeb/...) */
int qtest_readn(struct qtest *q, uint64_t addr, unsigned size, uint64_t *val);
int qtest_writen(struct qtest *q, uint64_t addr, unsigned size, uint64_t val);
int qtest_readl(struct qtest *q, uint64_t addr, uint32_t *val);
int qtest_writel(struct qtest *q, uint64_t addr, uint32_t val);
int qtest_readq(struct qtest *q, uint64_t addr, uint64_t *val);
int qtest_writeq(struct qtest *q, uint64_t addr, uint64_t val);
/* bulk "read ADDR SIZE" / "write ADDR SIZE 0xHEX" (len <= 4096) */
int qtest_read(struct qtest *q, uint64_t addr, void *buf, size_t len);
int qtest_write(struct qtest *q, uint64_t addr, const void *buf, size_t len);

/* "irq_intercept_in <qom path>", e.g. "ioapic"; then IRQ lines are recorded. */
int qtest_irq_intercept_in(struct qtest *q, const char *qom_path);
/* Current level (0/1) and number of raises seen for interrupt line n (< 256). */
int qtest_irq_level(const struct qtest *q, unsigned n);
unsigned qtest_irq_raises(const struct qtest *q, unsigned n);
/* Raises seen on any line. */
unsigned qtest_irq_raises_total(const struct qtest *q);
/* Read and record pending asynchronous IRQ lines (a no-op command round trip). */
int qtest_sync(struct qtest *q);

#endif
