/* SPDX-License-Identifier: MIT */
/*
 * vio-vmm legacy PC devices: a 16550A UART on 0x3f8 / IRQ 4 (the console, on stdio), a CMOS
 * RTC on 0x70/0x71 (Debian's kernel waits ~5.5 s probing it when nothing answers), the i8042's
 * reset line (0x64 <- 0xfe) and the 0xcf9 reset control register: both end the VMM as a reboot.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm.h"

/* 16550 registers and bits (the ones Linux's 8250 driver uses). */
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define RXBUF 64u

static struct uart {
    pthread_mutex_t lock;
    struct vmm *vm;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thri;              /* THR-empty interrupt pending */
    uint8_t rx[RXBUF];
    unsigned rx_head, rx_len;
    int line;               /* IRQ level we last drove */
    pthread_t reader;
    bool reader_on;
} uart = { .lock = PTHREAD_MUTEX_INITIALIZER, .dll = 12 };

static uint8_t uart_iir(struct uart *u)
{
    if ((u->ier & IER_RDI) && u->rx_len)
        return IIR_RDI;
    if ((u->ier & IER_THRI) && u->thri)
        return IIR_THRI;
    return IIR_NONE;
}

static void uart_update(struct uart *u)
{
    int level = uart_iir(u) != IIR_NONE;
    if (level != u->line) {
        u->line = level;
        vmm_irq_line(u->vm, 4, level);
    }
}

static void uart_rx_push(struct uart *u, uint8_t ch)
{
    if (u->rx_len < RXBUF)
        u->rx[(u->rx_head + u->rx_len++) % RXBUF] = ch;
}

static void uart_io(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool wr)
{
    struct uart *u = opaque;
    unsigned reg = (unsigned)(addr - 0x3f8);
    if (size != 1) {
        if (!wr)
            memset(data, 0xff, size);
        return;
    }
    pthread_mutex_lock(&u->lock);
    bool dlab = u->lcr & LCR_DLAB;
    if (wr) {
        uint8_t v = data[0];
        switch (reg) {
        case 0:
            if (dlab) {
                u->dll = v;
            } else if (u->mcr & MCR_LOOP) {
                uart_rx_push(u, v);
                u->thri = true;
            } else {
                ssize_t n = write(STDOUT_FILENO, &v, 1);
                (void)n;
                u->thri = true;
            }
            break;
        case 1:
            if (dlab) {
                u->dlm = v;
            } else {
                if (!(u->ier & IER_THRI) && (v & IER_THRI))
                    u->thri = true; /* enabling it with an empty THR raises it */
                u->ier = v & 0x0f;
            }
            break;
        case 2: u->fcr = v; if (v & 0x02) u->rx_len = 0; break;
        case 3: u->lcr = v; break;
        case 4: u->mcr = v & 0x1f; break;
        case 7: u->scr = v; break;
        default: break;
        }
    } else {
        uint8_t v = 0;
        switch (reg) {
        case 0:
            if (dlab) {
                v = u->dll;
            } else if (u->rx_len) {
                v = u->rx[u->rx_head];
                u->rx_head = (u->rx_head + 1) % RXBUF;
                u->rx_len--;
            }
            break;
        case 1: v = dlab ? u->dlm : u->ier; break;
        case 2:
            v = uart_iir(u) | ((u->fcr & 1) ? IIR_FIFO : 0);
            if ((v & 0x0f) == IIR_THRI)
                u->thri = false; /* reading the IIR that reports it clears it */
            break;
        case 3: v = u->lcr; break;
        case 4: v = u->mcr; break;
        case 5: v = LSR_THRE | LSR_TEMT | (u->rx_len ? LSR_DR : 0); break;
        case 6:
            if (u->mcr & MCR_LOOP) /* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
                v = (uint8_t)(((u->mcr & 0x01) << 5) | ((u->mcr & 0x02) << 3) |
                              ((u->mcr & 0x04) << 4) | ((u->mcr & 0x08) << 4));
            else
                v = 0xb0; /* DCD, DSR, CTS */
            break;
        case 7: v = u->scr; break;
        default: break;
        }
        data[0] = v;
    }
    uart_update(u);
    pthread_mutex_unlock(&u->lock);
}

static void *uart_reader(void *arg)
{
    struct uart *u = arg;
    for (;;) {
        struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
        int r = poll(&p, 1, 200);
        if (atomic_load(&u->vm->stop))
            return NULL;
        if (r <= 0)
            continue;
        uint8_t buf[16];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n <= 0)
            return NULL; /* stdin closed: the console just has no input */
        pthread_mutex_lock(&u->lock);
        for (ssize_t i = 0; i < n; i++)
            uart_rx_push(u, buf[i]);
        uart_update(u);
        pthread_mutex_unlock(&u->lock);
    }
}

/* CMOS RTC: time of day in BCD, 24 h; status registers say "valid, no update in progress". */
static struct rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t ram[128];
} rtc = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint8_t bcd(int v)
{
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static void rtc_io(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool write)
{
    struct rtc *r = opaque;
    if (size != 1) {
        if (!write)
            memset(data, 0xff, size);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (addr == 0x70) {
        if (write)
            r->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
        else
            data[0] = 0xff;
    } else if (write) {
        if (r->index >= 0x0e || r->index == 0x0b || r->index == 0x0a)
            r->ram[r->index] = data[0];
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        uint8_t v;
        switch (r->index) {
        case 0x00: v = bcd(tm.tm_sec); break;
        case 0x02: v = bcd(tm.tm_min); break;
        case 0x04: v = bcd(tm.tm_hour); break;
        case 0x06: v = bcd(tm.tm_wday + 1); break;
        case 0x07: v = bcd(tm.tm_mday); break;
        case 0x08: v = bcd(tm.tm_mon + 1); break;
        case 0x09: v = bcd(tm.tm_year % 100); break;
        case 0x32: v = bcd(19 + tm.tm_year / 100); break;
        case 0x0a: v = r->ram[0x0a] & 0x7f; break;  /* never "update in progress" */
        case 0x0b: v = r->ram[0x0b]; break;
        case 0x0c: v = 0; break;
        case 0x0d: v = 0x80; break;                 /* RAM and time valid */
        default: v = r->ram[r->index]; break;
        }
        data[0] = v;
    }
    pthread_mutex_unlock(&r->lock);
}

static void reset_io(void *opaque, uint64_t addr, uint8_t *data, unsigned size, bool write)
{
    struct vmm *vm = opaque;
    if (!write) {
        memset(data, addr == 0x64 ? 0x00 : 0xff, size); /* i8042: no data, input empty */
        return;
    }
    if ((addr == 0x64 && data[0] == 0xfe) || (addr == 0xcf9 && size == 1 && (data[0] & 0x04)))
        vmm_request_stop(vm, VMM_STOP_REBOOT);
}

int vmm_legacy_init(struct vmm *vm)
{
    uart.vm = vm;
    rtc.ram[0x0a] = 0x26;
    rtc.ram[0x0b] = 0x02;
    int r;
    if ((r = vmm_add_pio(vm, 0x3f8, 8, uart_io, &uart, "ttyS0")) ||
        (r = vmm_add_pio(vm, 0x70, 2, rtc_io, &rtc, "cmos-rtc")) ||
        (r = vmm_add_pio(vm, 0x60, 1, reset_io, vm, "i8042")) ||
        (r = vmm_add_pio(vm, 0x64, 1, reset_io, vm, "i8042")) ||
        (r = vmm_add_pio(vm, 0xcf9, 1, reset_io, vm, "reset-cf9")))
        return r;
    if (pthread_create(&uart.reader, NULL, uart_reader, &uart) == 0)
        uart.reader_on = true;
    return 0;
}

void vmm_legacy_fini(struct vmm *vm)
{
    (void)vm;
    if (uart.reader_on)
        pthread_join(uart.reader, NULL);
    uart.reader_on = false;
}
