/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the root-only e2e tests: cgroup2 and bpffs mounts, test cgroups, namespaces, compiled frontends. */
#ifndef KB_E2E_H
#define KB_E2E_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "compile/compile.h"

/* Why the tests of this binary skip, or NULL when they can run. */
static inline const char *e2e_skip_reason(void)
{
	if (geteuid() != 0)
		return "needs root";
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, NULL) != 1)
		return "kernel cannot load cgroup sock_addr programs";
	return NULL;
}

/* CI runs with CI=true: there every check must run, so what would skip fails instead. */
static inline bool e2e_in_ci(void)
{
	const char *ci = getenv("CI");

	return ci && *ci && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0;
}

/*
 * The one knob for a slow kernel: KB_SCALE=N says the machine under test runs about N times
 * slower than the one these counts were chosen on. tests/run.sh --guest sets it for the qemu
 * guest (an emulated CPU, no KVM); unset on the host, where it is 1 and every count is the full
 * one. Loops of many iterations shrink by N (e2e_scaled, never below a floor that still lets
 * the check fail: the same assertions, zero failures, over fewer rounds); bounds on waiting for
 * something to happen grow by N (e2e_scaled_ms). The watchdogs do not: scaled, each program
 * takes about its host time there. No test asserts speed.
 */
static inline long e2e_scale(void)
{
	const char *s = getenv("KB_SCALE");
	long n = s && *s ? strtol(s, NULL, 10) : 1;

	return n >= 1 && n <= 100 ? n : 1;
}

/* count / KB_SCALE, at least floor (and never more than count). */
static inline long e2e_scaled(long count, long floor)
{
	long n = count / e2e_scale();

	if (n < floor)
		n = floor;
	return n < count ? n : count;
}

/* A bound on waiting, in ms, times KB_SCALE. */
static inline long e2e_scaled_ms(long ms)
{
	return ms * e2e_scale();
}

/*
 * A cgroup2 hierarchy: the first one in /proc/mounts, else one we mount on
 * a temp dir (*mounted is set, and e2e_cgroup2_release unmounts it).
 */
static inline int e2e_cgroup2_root(char *buf, size_t len, bool *mounted)
{
	char dev[256], dir[PATH_MAX], type[64];
	FILE *f = fopen("/proc/mounts", "r");

	*mounted = false;
	if (f) {
		while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
			if (!strcmp(type, "cgroup2")) {
				snprintf(buf, len, "%s", dir);
				fclose(f);
				return 0;
			}
		}
		fclose(f);
	}
	snprintf(buf, len, "/tmp/kbackend-cg2-%d", (int)getpid());
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	if (mount("none", buf, "cgroup2", 0, NULL)) {
		int err = -errno;

		rmdir(buf);
		return err;
	}
	*mounted = true;
	return 0;
}

static inline void e2e_cgroup2_release(const char *root, bool mounted)
{
	if (mounted) {
		umount2(root, MNT_DETACH);
		rmdir(root);
	}
}

/* Put pid (0: the caller) into the cgroup at dir. */
static inline int e2e_cgroup_enter(const char *dir, pid_t pid)
{
	char path[PATH_MAX], num[32];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(num, sizeof(num), "%d", pid ? (int)pid : (int)getpid());
	if (write(fd, num, (size_t)n) != n)
		err = -errno;
	close(fd);
	return err;
}

/* Remove a test cgroup; processes still in it are moved to the hierarchy root first. */
static inline void e2e_cgroup_remove(const char *root, const char *dir)
{
	char path[PATH_MAX], line[32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			e2e_cgroup_enter(root, (pid_t)atoi(line));
		fclose(f);
	}
	rmdir(dir);
}

/* Mount bpffs on /sys/fs/bpf when nothing serves there, as the daemon does. */
static inline int e2e_ensure_bpffs(void)
{
	struct statfs sfs;

	if (!statfs("/sys/fs/bpf", &sfs) && sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir("/sys/fs/bpf", 0755) && errno != EEXIST)
		return -errno;
	return mount("bpf", "/sys/fs/bpf", "bpf", 0, NULL) ? -errno : 0;
}

static inline bool e2e_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Run a shell command quietly; returns its exit status (-1 if it did not run). */
static inline int e2e_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int e2e_sh(const char *fmt, ...)
{
	char cmd[1024], full[1200];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
	rc = system(full);
	return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/*
 * The common start of a test group that makes its own namespaces: 0 with
 * *skip NULL (ready), 0 with *skip set (this machine cannot run it at all:
 * not root, or no cgroup sock_addr programs), or -1 with the reason said on
 * stderr. Under CI (CI=true) every check must run, so a skip fails there; a
 * missing tool that `make deps` installs, or no cgroup2, always fails.
 */
static inline int e2e_netns_check(char *cgroot, size_t len, bool *mounted, const char **skip)
{
	const char *why = NULL;

	*skip = e2e_skip_reason();
	if (*skip && e2e_in_ci())
		why = *skip;
	else if (*skip)
		return 0;
	else if (e2e_sh("command -v ip"))
		why = "needs iproute2 (make deps installs it)";
	else if (e2e_cgroup2_root(cgroot, len, mounted))
		why = "no cgroup2 hierarchy";
	if (!why)
		return 0;
	*skip = NULL;
	fprintf(stderr, "# cannot run%s: %s\n", e2e_in_ci() ? " (CI runs every test)" : "", why);
	return -1;
}

/* Enter the named netns (made by `ip netns add`) in this process. */
static inline int e2e_setns(const char *name)
{
	char path[PATH_MAX];
	int fd, err = 0;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET))
		err = -errno;
	close(fd);
	return err;
}

/*
 * One hand-built compiled frontend: address:port/proto steering to neps IP
 * endpoints, each holding one slot (nslots may be 0 to refuse).
 */
struct e2e_fe {
	struct kb_cfrontend fe;
	struct kb_cendpoint eps[8];
	__u32 slots[8];
};

static inline void e2e_fe_init(struct e2e_fe *f, const char *addr, __u16 port, __u8 proto, enum kb_lb lb,
			       const char *const *eps, size_t neps, __u16 ep_port, bool refuse)
{
	struct kb_cfrontend *fe = &f->fe;
	int af = strchr(addr, ':') ? AF_INET6 : AF_INET;

	memset(f, 0, sizeof(*f));
	fe->address = (char *)addr;
	fe->port = port;
	fe->proto = proto;
	fe->lb = lb;
	inet_pton(af, addr, fe->key.ip);
	fe->key.port = htons(port);
	fe->key.family = (__u8)af;
	fe->key.proto = proto;
	fe->eps = f->eps;
	fe->neps = neps;
	fe->slots = f->slots;
	for (size_t i = 0; i < neps && i < 8; i++) {
		struct kb_cendpoint *ep = &f->eps[i];
		int eaf = strchr(eps[i], ':') ? AF_INET6 : AF_INET;

		ep->type = KB_EP_IP;
		ep->address = (char *)eps[i];
		ep->port = ep_port;
		ep->family = (__u8)eaf;
		inet_pton(eaf, eps[i], ep->ip);
		ep->healthy = true;
		ep->nslots = 1;
		f->slots[i] = (__u32)i;
	}
	fe->nslots = refuse ? 0 : (__u32)neps;
}

#endif /* KB_E2E_H */
