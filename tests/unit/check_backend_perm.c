/* SPDX-License-Identifier: MIT */
/*
 * Suite "backend_perm": a tap or AF_PACKET backend opened without the privileges it needs
 * says which privilege, and what to do instead, in its log (not only "Operation not
 * permitted"). Each case runs in a child that drops every capability (and, as root, becomes
 * nobody) inside its own network and mount namespaces, and sends back the open's result and
 * the log lines through a pipe.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "virtio/net_backend.h"

#define NOBODY 65534u

struct result {
    int rc;          /* the open's return value */
    int setup;       /* 0, or the errno of a setup step the child could not do */
    char setup_what[64];
    char log[2048];  /* ERROR lines, one per line */
};

static void log_cb(void *opaque, int level, const char *object, const char *msg)
{
    struct result *r = opaque;
    (void)object;
    if (level != VIO_LOG_ERROR)
        return;
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof(r->log) - n, "%s\n", msg);
}

/* Every capability gone (effective, permitted, inheritable), and as root uid/gid nobody. */
static int drop_privileges(void)
{
    if (geteuid() == 0) {
        if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
            return -errno;
    }
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capset, &h, d) < 0)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

/* A persistent tap named @p name owned by nobody (as `ip tuntap add ... user` makes). */
static int make_owned_tap(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    int rc = 0;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETOWNER, (unsigned long)NOBODY) < 0 ||
        ioctl(fd, TUNSETPERSIST, 1ul) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

enum pcase {
    TAP_CREATE,   /* TUNSETIFF of a new tap without CAP_NET_ADMIN */
    TAP_OPEN,     /* /dev/net/tun itself refused (EACCES) */
    TAP_OWNED,    /* the hint's remedy: a persistent tap owned by the user attaches */
    PACKET_NORAW  /* socket(AF_PACKET) without CAP_NET_RAW */
};

static void set_setup(struct result *r, int err, const char *what)
{
    r->setup = err < 0 ? -err : err;
    snprintf(r->setup_what, sizeof(r->setup_what), "%s", what);
}

static void child(enum pcase c, struct result *r)
{
    /* A private network namespace: the taps made here vanish with the child. */
    if (geteuid() == 0 && unshare(CLONE_NEWNET | CLONE_NEWNS) < 0)
        return set_setup(r, errno, "unshare");
    if (geteuid() == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return set_setup(r, errno, "mount private");
    if (c == TAP_OPEN) {
        /* a tun node only root may open: a root-only file over /dev/net in our mount ns */
        if (geteuid() != 0)
            return set_setup(r, EPERM, "needs root to stage /dev/net/tun");
        if (mount("tmpfs", "/dev/net", "tmpfs", 0, "mode=0755") < 0)
            return set_setup(r, errno, "mount tmpfs /dev/net");
        int fd = open("/dev/net/tun", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
            return set_setup(r, errno, "create /dev/net/tun");
        close(fd);
    }
    if (c == TAP_OWNED) {
        if (geteuid() != 0)
            return set_setup(r, EPERM, "needs root to make the owned tap");
        int e = make_owned_tap("vioowned0");
        if (e < 0)
            return set_setup(r, e, "persistent tap");
    }
    int e = drop_privileges();
    if (e < 0)
        return set_setup(r, e, "drop privileges");
    struct vio_net_backend_config cfg = {.struct_size = sizeof(cfg), .log = log_cb,
                                         .log_opaque = r};
    struct vio_net_backend be = {0};
    switch (c) {
    case TAP_CREATE: cfg.ifname = "vionew0"; r->rc = vio_net_tap_open(&cfg, &be); break;
    case TAP_OPEN: cfg.ifname = ""; r->rc = vio_net_tap_open(&cfg, &be); break;
    case TAP_OWNED: cfg.ifname = "vioowned0"; r->rc = vio_net_tap_open(&cfg, &be); break;
    case PACKET_NORAW: cfg.ifname = "lo"; r->rc = vio_net_packet_open(&cfg, &be); break;
    }
    if (r->rc == 0)
        vio_net_backend_destroy(&be);
}

/* Runs @p c in a child; false (with the reason printed) when the machine cannot stage it. */
static bool run_case(enum pcase c, struct result *out)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        static struct result r;
        memset(&r, 0, sizeof(r));
        child(c, &r);
        ssize_t w = write(pfd[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(pfd[1]);
    memset(out, 0, sizeof(*out));
    size_t got = 0;
    while (got < sizeof(*out)) {
        ssize_t n = read(pfd[0], (char *)out + got, sizeof(*out) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pfd[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_uint_eq(got, sizeof(*out));
    if (out->setup) {
        printf("backend_perm case %d not staged: %s: %s\n", (int)c, out->setup_what,
               strerror(out->setup));
        return false;
    }
    return true;
}

static bool have_tun(void)
{
    if (access("/dev/net/tun", F_OK) == 0)
        return true;
    printf("backend_perm: no /dev/net/tun, tap cases not run\n");
    return false;
}

START_TEST(tap_create_needs_net_admin)
{
    if (!have_tun())
        return;
    struct result r;
    if (!run_case(TAP_CREATE, &r))
        return;
    ck_assert_int_eq(r.rc, -EPERM);
    ck_assert_ptr_nonnull(strstr(r.log, "TUNSETIFF vionew0"));
    ck_assert_ptr_nonnull(strstr(r.log, "Operation not permitted (needs CAP_NET_ADMIN"));
    char want[96];
    snprintf(want, sizeof(want), "ip tuntap add dev vionew0 mode tap user %u)",
             geteuid() == 0 ? NOBODY : (unsigned)geteuid());
    ck_assert_msg(strstr(r.log, want), "log: %s", r.log);
}
END_TEST

START_TEST(tap_open_refused_names_remedy)
{
    if (!have_tun())
        return;
    struct result r;
    if (!run_case(TAP_OPEN, &r))
        return;
    ck_assert_int_eq(r.rc, -EACCES);
    ck_assert_ptr_nonnull(strstr(r.log, "open /dev/net/tun: Permission denied (needs CAP_NET_ADMIN"));
    /* no name given: the hint says to make one and open it by name */
    ck_assert_ptr_nonnull(strstr(r.log, "ip tuntap add dev NAME mode tap user 65534, then open"));
}
END_TEST

/* What the hint proposes works: the same unprivileged child attaches to a tap it owns. */
START_TEST(tap_owned_by_user_attaches)
{
    if (!have_tun())
        return;
    struct result r;
    if (!run_case(TAP_OWNED, &r))
        return;
    ck_assert_msg(r.rc == 0, "rc %d, log: %s", r.rc, r.log);
    ck_assert_str_eq(r.log, "");
}
END_TEST

START_TEST(packet_needs_net_raw)
{
    struct result r;
    if (!run_case(PACKET_NORAW, &r))
        return;
    ck_assert_int_eq(r.rc, -EPERM);
    ck_assert_msg(strstr(r.log, "socket(AF_PACKET) (queue pair 0): Operation not permitted "
                                "(AF_PACKET sockets need CAP_NET_RAW)"),
                  "log: %s", r.log);
}
END_TEST

static Suite *perm_suite(void)
{
    Suite *s = suite_create("backend_perm");
    TCase *tc = tcase_create("hints");
    tcase_add_test(tc, tap_create_needs_net_admin);
    tcase_add_test(tc, tap_open_refused_names_remedy);
    tcase_add_test(tc, tap_owned_by_user_attaches);
    tcase_add_test(tc, packet_needs_net_raw);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(perm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
