// SPDX-License-Identifier: Apache-2.0
/* e2e: unix sidecars through the bridge (bulk, concurrency, half-close, memory bound, fds, restarts) and inbound sk_lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control.h"
#include "dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8):
 *
 *   kbt-bnode-<pid>: the daemon, the test process (in the test cgroup) and the sidecars.
 *       198.51.100.254/24 on a veth; `ip route add local 198.18.0.0/15 dev lo` so that
 *       frontends arriving from the host are delivered locally, where sk_lookup steers them.
 *   kbt-bhost-<pid>: another host, 198.51.100.7/24, route 198.18.0.0/15 via the node.
 *   kbt-bcl-<pid>: a client netns given to the daemon with --bridge-netns; lo only.
 *
 * No namespace has a default route. Sidecars serve unix sockets under <tmp>/sc, the
 * daemon's --unix-dir. Frontend 198.18.0.20: port 80 echo, 81 stall (never reads),
 * 82 speaks first and half-closes, 83 absent (no socket file), 84 restartable echo.
 */
#define FE "198.18.0.20"
#define FE_REG "198.18.0.21"
#define P_ECHO 80
#define P_STALL 81
#define P_FIRST 82
#define P_ABSENT 83
#define P_RESTART 84
#define FIRST_BYTES (1u << 20)

struct shared {
	long first_got;		/* speak-first sidecar: bytes read after its own half-close */
	int first_ok;		/* 1: all of them matched the pattern, then EOF */
	int first_done;
};

struct env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char scdir[PATH_MAX];
	char node[64], host[64], cl[64];
	bool netns_made;
	int rootns;
	pid_t daemon, sidecar, restart;
	struct shared *sh;
};

static struct env E;

/* ---- helpers ---- */

static void dump_log(void)
{
	e2e_dump_file("log", E.env.log, 0);
}

/* The test stream: byte pos of stream `seed` is byte pos%8 of mix(seed, pos/8). Checked byte for byte. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t pat_word(uint64_t seed, uint64_t k)
{
	return mix64(k ^ (seed * 0xd6e8feb86659fd93ull));
}

static void pat_fill(uint64_t seed, uint64_t off, unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint64_t pos = off + i, w = pat_word(seed, pos >> 3);

		if (!(pos & 7) && n - i >= 8) {
			memcpy(p + i, &w, 8);
			i += 8;
		} else {
			p[i++] = (unsigned char)(w >> (8 * (pos & 7)));
		}
	}
}

/* Returns true when p[0..n) is the stream at off; *sum folds every word in (the reported checksum). */
static bool pat_check(uint64_t seed, uint64_t off, const unsigned char *p, size_t n, uint64_t *sum)
{
	size_t i = 0;

	while (i < n) {
		uint64_t pos = off + i, w = pat_word(seed, pos >> 3), got;

		if (!(pos & 7) && n - i >= 8) {
			memcpy(&got, p + i, 8);
			if (got != w)
				return false;
			*sum = (*sum ^ got) * 0x100000001b3ull;
			i += 8;
		} else {
			if (p[i] != (unsigned char)(w >> (8 * (pos & 7))))
				return false;
			*sum = (*sum ^ p[i]) * 0x100000001b3ull;
			i++;
		}
	}
	return true;
}

/* ---- sidecars ---- */

enum sc_mode { SC_ECHO, SC_STALL, SC_FIRST };

struct sc_conn {
	int fd;
	enum sc_mode mode;
	size_t off, len;
	unsigned char buf[256 << 10];
};

static int unix_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4096))
		return -1;
	return fd;
}

/* Speaks first: FIRST_BYTES of stream 7, half-close, then reads stream 8 to EOF and reports. */
static void *first_thread(void *arg)
{
	int fd = (int)(long)arg;
	unsigned char buf[65536];
	uint64_t off = 0, sum = 0;
	bool ok = true;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	while (off < FIRST_BYTES) {
		size_t n = FIRST_BYTES - off < sizeof(buf) ? FIRST_BYTES - off : sizeof(buf);
		ssize_t w;

		pat_fill(7, off, buf, n);
		w = write(fd, buf, n);
		if (w <= 0)
			break;
		off += (uint64_t)w;
	}
	shutdown(fd, SHUT_WR);
	for (off = 0;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0) {
			ok = ok && r == 0;
			break;
		}
		ok = ok && pat_check(8, off, buf, (size_t)r, &sum);
		off += (uint64_t)r;
	}
	E.sh->first_got = (long)off;
	E.sh->first_ok = ok;
	__atomic_store_n(&E.sh->first_done, 1, __ATOMIC_SEQ_CST);
	close(fd);
	return NULL;
}

static void sc_close(int ep, struct sc_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Echo with half-close: the peer's EOF, once everything is echoed, becomes our shutdown(SHUT_WR). */
static void sc_echo(int ep, struct sc_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	for (;;) {
		if (c->len) {
			ssize_t w = send(c->fd, c->buf + c->off, c->len, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno != EAGAIN) {
					sc_close(ep, c);
					return;
				}
				ev.events = EPOLLOUT;
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				return;
			}
			c->off += (size_t)w;
			c->len -= (size_t)w;
			if (c->len)
				continue;
			ev.events = EPOLLIN;
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
		ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);

		if (r == 0) {
			shutdown(c->fd, SHUT_WR);
			sc_close(ep, c);
			return;
		}
		if (r < 0) {
			if (errno != EAGAIN)
				sc_close(ep, c);
			return;
		}
		c->off = 0;
		c->len = (size_t)r;
	}
}

/* One process, one epoll: every listener of paths[i] serves modes[i]. */
static void sidecar_main(const char *const *paths, const enum sc_mode *modes, int n, int ready)
{
	struct epoll_event ev, evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	static enum sc_mode lmodes[8];
	static int lfds[8];

	setpgid(0, 0);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < n; i++) {
		lfds[i] = unix_listen(paths[i]);
		lmodes[i] = modes[i];
		if (lfds[i] < 0)
			_exit(2);
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, lfds[i], &ev);
	}
	if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		int k = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < k; i++) {
			if (evs[i].data.u64 < 8) {
				int li = (int)evs[i].data.u64, fd;

				while ((fd = accept4(lfds[li], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct sc_conn *c;
					pthread_t th;

					if (lmodes[li] == SC_STALL)
						continue;	/* kept open, never read: the fd leaks on purpose */
					if (lmodes[li] == SC_FIRST) {
						if (pthread_create(&th, NULL, first_thread, (void *)(long)fd))
							close(fd);
						else
							pthread_detach(th);
						continue;
					}
					c = malloc(sizeof(*c));
					c->fd = fd;
					c->mode = lmodes[li];
					c->off = c->len = 0;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			sc_echo(ep, evs[i].data.ptr);
		}
	}
}

static pid_t sidecar_start(const char *const *names, const enum sc_mode *modes, int n)
{
	char paths[8][PATH_MAX];
	const char *pp[8];
	int p[2];
	char c;
	pid_t pid;

	for (int i = 0; i < n; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", E.scdir, names[i]);
		pp[i] = paths[i];
	}
	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		e2e_child_init();
		close(p[0]);
		sidecar_main(pp, modes, n, p[1]);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	setpgid(pid, pid);
	return pid;
}

/* ---- manifests ---- */

static void yaml_config(char *buf, size_t len, const char *extra)
{
	static const struct { const char *name; int port; const char *sock; } be[] = {
		{ "echo", P_ECHO, "echo.sock" },	 { "stall", P_STALL, "stall.sock" },
		{ "first", P_FIRST, "first.sock" },	 { "absent", P_ABSENT, "absent.sock" },
		{ "restart", P_RESTART, "restart.sock" },
	};
	size_t n = (size_t)snprintf(buf, len,
				    "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				    "kind: EnvoyGateway\n"
				    "metadata: {name: envoy-gateway, namespace: envoy-gateway-system}\n"
				    "extensionApis: {enableBackend: true}\n"
				    "---\n"
				    "apiVersion: gateway.networking.k8s.io/v1\n"
				    "kind: Gateway\n"
				    "metadata: {name: eg, namespace: default}\n"
				    "spec:\n"
				    "  gatewayClassName: eg\n"
				    "  addresses: [{type: IPAddress, value: " FE "}]\n"
				    "  listeners:\n");

	for (size_t i = 0; i < 5; i++)
		n += (size_t)snprintf(buf + n, len - n, "    - {name: %s, protocol: TCP, port: %d}\n", be[i].name,
				      be[i].port);
	for (size_t i = 0; i < 5; i++)
		n += (size_t)snprintf(buf + n, len - n,
				      "---\n"
				      "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				      "kind: Backend\n"
				      "metadata: {name: %s, namespace: default}\n"
				      "spec:\n"
				      "  endpoints:\n"
				      "    - unix: {path: %s/%s}\n"
				      "---\n"
				      "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				      "kind: TCPRoute\n"
				      "metadata: {name: %s, namespace: default}\n"
				      "spec:\n"
				      "  parentRefs: [{name: eg, sectionName: %s}]\n"
				      "  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: %s}]}]\n",
				      be[i].name, E.scdir, be[i].sock, be[i].name, be[i].name, be[i].name);
	if (extra)
		snprintf(buf + n, len - n, "---\n%s", extra);
}

static struct json_object *apply_yaml(const char *yaml)
{
	struct json_object *req = e2e_files_req("apply", "bridge.yaml", yaml), *reply;

	reply = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	return reply;
}

/* ---- the daemon ---- */

static int daemon_start(void)
{
	char cl[PATH_MAX];
	pid_t pid;

	snprintf(cl, sizeof(cl), "/var/run/netns/%s", E.cl);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd;

		e2e_child_init();
		fd = open(E.env.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0)
			_exit(126);
		/* Out of the test cgroup: the daemon is not a client. */
		e2e_cgroup_enter(E.env.cgroot, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(E.env.kb, "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs, "--state-dir", E.env.state,
		      "--socket", E.env.sock, "--unix-dir", E.scdir, "--bridge-netns", cl, (char *)NULL);
		_exit(127);
	}
	E.daemon = pid;
	return e2e_daemon_wait(&E.daemon, E.env.sock, 15000);
}

/* ---- clients (this process: node netns, test cgroup) ---- */

static int tcp_connect(const char *ip, int port, int timeout_s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { timeout_s, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, ip, &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Send n bytes of stream seed, half-close, read the echo to EOF. 0, or a negative errno / -1000 for bad bytes. */
static int echo_check(int fd, size_t n, uint64_t seed)
{
	unsigned char buf[65536];
	uint64_t sum = 0, got = 0, sent = 0;

	while (sent < n || got < n) {
		if (sent < n) {
			size_t k = n - sent < sizeof(buf) ? n - sent : sizeof(buf);
			ssize_t w;

			pat_fill(seed, sent, buf, k);
			w = send(fd, buf, k, MSG_NOSIGNAL);
			if (w < 0)
				return -errno;
			sent += (uint64_t)w;
			if (sent == n)
				shutdown(fd, SHUT_WR);
			if (sent - got < (256u << 10))
				continue;
		}
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		if (!pat_check(seed, got, buf, (size_t)r, &sum))
			return -1000;
		got += (uint64_t)r;
	}
	/* Then the echo's own EOF: the half-close came back. */
	return recv(fd, buf, 1, 0) == 0 ? 0 : -EPROTO;
}

/* ---- group setup ---- */

static int group_teardown(void **state);

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

static int topo_up(void)
{
	char vn[32], vh[32];

	snprintf(vn, sizeof(vn), "kbn%d", (int)getpid());
	snprintf(vh, sizeof(vh), "kbh%d", (int)getpid());
	E.netns_made = true;
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.host) || e2e_sh("ip netns add %s", E.cl))
		return -1;
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vh, E.host) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.host) ||
	    e2e_sh("ip -n %s link set lo up", E.cl) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.7/24 dev %s", E.host, vh) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.host, vh) ||
	    e2e_sh("ip -n %s route add local 198.18.0.0/15 dev lo", E.node) ||
	    e2e_sh("ip -n %s route add 198.18.0.0/15 via 198.51.100.254", E.host))
		return -1;
	/* No default route anywhere: a mistake cannot leave the machine. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s route show default | grep -q .", E.host) ||
	    !e2e_sh("ip -n %s route show default | grep -q .", E.cl))
		return -1;
	return 0;
}

static int group_setup(void **state)
{
	char yaml[16384];
	static const char *const names[] = { "echo.sock", "stall.sock", "first.sock" };
	static const enum sc_mode modes[] = { SC_ECHO, SC_STALL, SC_FIRST };
	static const char *const rs[] = { "restart.sock" };
	static const enum sc_mode rsm[] = { SC_ECHO };
	struct json_object *r;
	struct rlimit rl;

	E.rootns = -1;
	if (e2e_env_setup(&E.env, "bridge"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	if (e2e_sh("command -v ss")) {
		E.env.skip = "needs iproute2 (ip, ss)";
		return 0;
	}
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, NULL) != 1) {
		E.env.skip = "kernel cannot load sk_lookup programs";
		return 0;
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	E.sh = mmap(NULL, sizeof(*E.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.sh == MAP_FAILED) {
		E.sh = NULL;
		return setup_failed("mmap");
	}
	snprintf(E.scdir, sizeof(E.scdir), "%s/sc", E.env.tmp);
	snprintf(E.node, sizeof(E.node), "kbt-bnode-%d", (int)getpid());
	snprintf(E.host, sizeof(E.host), "kbt-bhost-%d", (int)getpid());
	snprintf(E.cl, sizeof(E.cl), "kbt-bcl-%d", (int)getpid());
	if (mkdir(E.scdir, 0755))
		return setup_failed("mkdir sidecar dir");
	if (topo_up())
		return setup_failed("topology");
	/* This process is the client: node netns, test cgroup. Its children inherit both. */
	E.rootns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (e2e_setns(E.node) || e2e_cgroup_enter(E.env.cgroup, 0))
		return setup_failed("enter the node netns and the test cgroup");
	E.sidecar = sidecar_start(names, modes, 3);
	E.restart = sidecar_start(rs, rsm, 1);
	if (E.sidecar <= 0 || E.restart <= 0)
		return setup_failed("sidecars");
	if (daemon_start())
		return setup_failed("daemon did not start (see its log)");
	yaml_config(yaml, sizeof(yaml), NULL);
	r = apply_yaml(yaml);
	if (!e2e_reply_ok(r)) {
		fprintf(stderr, "# apply: %s\n", r ? json_object_to_json_string(r) : strerror(errno));
		json_object_put(r);
		return setup_failed("apply");
	}
	json_object_put(r);
	return 0;
}

static int group_teardown(void **state)
{
	e2e_kill_group(&E.sidecar);
	e2e_kill_group(&E.restart);
	e2e_kill(&E.daemon);
	if (E.env.bpffs[0])
		kb_dataplane_unload(E.env.bpffs);
	E.env.bpffs[0] = '\0';
	if (E.rootns >= 0) {
		if (setns(E.rootns, CLONE_NEWNET))
			{ /* the netns deletion below still works */ }
		close(E.rootns);
		E.rootns = -1;
	}
	e2e_netns_del(&E.netns_made, E.node, E.host, E.cl, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.sh)
		munmap(E.sh, sizeof(*E.sh));
	E.sh = NULL;
	return 0;
}

#define SKIP_IF_NEEDED()        \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* ---- tests ---- */

struct pusher {
	int fd;
	uint64_t n, seed;
	int err;
};

static void *push_thread(void *arg)
{
	struct pusher *p = arg;
	static unsigned char buf[1 << 20];
	uint64_t off = 0;

	while (off < p->n) {
		size_t k = p->n - off < sizeof(buf) ? p->n - off : sizeof(buf);
		ssize_t w;

		pat_fill(p->seed, off, buf, k);
		for (size_t done = 0; done < k; done += (size_t)w) {
			w = send(p->fd, buf + done, k - done, MSG_NOSIGNAL);
			if (w <= 0) {
				p->err = w < 0 ? errno : EPIPE;
				return NULL;
			}
		}
		off += k;
	}
	shutdown(p->fd, SHUT_WR);
	return NULL;
}

/* 1 GiB each way through the bridge, checked byte for byte, then both half-closes. */
static void test_bulk_1gib_each_way(void **state)
{
	const uint64_t N = 1ull << 30;
	static unsigned char buf[1 << 20];
	struct pusher p = { .n = N, .seed = 42 };
	uint64_t got = 0, sum = 0xcbf29ce484222325ull;
	struct timeval tv = { 60, 0 };
	pthread_t th;
	long t0 = kb_now_ms();

	SKIP_IF_NEEDED();
	p.fd = tcp_connect(FE, P_ECHO, 10);
	assert_true(p.fd >= 0);
	setsockopt(p.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(p.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	assert_int_equal(pthread_create(&th, NULL, push_thread, &p), 0);
	for (;;) {
		ssize_t r = recv(p.fd, buf, sizeof(buf), 0);

		if (r <= 0) {
			if (r < 0)
				fail_msg("recv after %llu bytes: %s", (unsigned long long)got, strerror(errno));
			break;
		}
		if (!pat_check(p.seed, got, buf, (size_t)r, &sum))
			fail_msg("bytes %llu..%llu differ from what was sent", (unsigned long long)got,
				 (unsigned long long)got + (unsigned long long)r);
		got += (uint64_t)r;
	}
	pthread_join(th, NULL);
	close(p.fd);
	assert_int_equal(p.err, 0);
	assert_true(got == N);
	fprintf(stderr, "# 1 GiB each way in %.1f s, checksum %016llx\n", (kb_now_ms() - t0) / 1000.0,
		(unsigned long long)sum);
}

/* 1,000 connections at once, each with its own stream, each checked. */
static void test_1000_concurrent(void **state)
{
	enum { NC = 1000, SZ = 64 << 10 };
	struct cc {
		int fd;
		uint64_t sent, got, sum;
		bool done;
	} *cs = calloc(NC, sizeof(*cs));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(P_ECHO) };
	struct epoll_event ev, evs[256];
	unsigned char buf[65536];
	int ep = epoll_create1(EPOLL_CLOEXEC), left = NC, bad = 0;
	long deadline = kb_now_ms() + 60000;

	SKIP_IF_NEEDED();
	assert_non_null(cs);
	inet_pton(AF_INET, FE, &sa.sin_addr);
	for (int i = 0; i < NC; i++) {
		cs[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(cs[i].fd >= 0);
		if (connect(cs[i].fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
			fail_msg("connect %d: %s", i, strerror(errno));
		ev.events = EPOLLIN | EPOLLOUT;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
	}
	while (left && kb_now_ms() < deadline) {
		int n = epoll_wait(ep, evs, 256, 1000);

		for (int k = 0; k < n; k++) {
			struct cc *c = &cs[evs[k].data.u32];

			if (c->done)
				continue;
			if ((evs[k].events & EPOLLOUT) && c->sent < SZ) {
				size_t m = SZ - c->sent < sizeof(buf) ? SZ - c->sent : sizeof(buf);
				ssize_t w;

				pat_fill(evs[k].data.u32 + 1000, c->sent, buf, m);
				w = send(c->fd, buf, m, MSG_NOSIGNAL);
				if (w > 0)
					c->sent += (uint64_t)w;
				if (c->sent == SZ) {
					shutdown(c->fd, SHUT_WR);
					ev.events = EPOLLIN;
					ev.data.u32 = evs[k].data.u32;
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

				if (r < 0 && errno == EAGAIN)
					continue;
				if (r > 0) {
					if (!pat_check(evs[k].data.u32 + 1000, c->got, buf, (size_t)r, &c->sum))
						bad++;
					c->got += (uint64_t)r;
					continue;
				}
				/* EOF or error: done either way. */
				if (r < 0 || c->got != SZ)
					bad++;
				c->done = true;
				left--;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			}
		}
	}
	for (int i = 0; i < NC; i++)
		close(cs[i].fd);
	close(ep);
	free(cs);
	if (left || bad)
		fail_msg("%d connection(s) unfinished, %d wrong", left, bad);
}

/* Client half-closes first; then the sidecar half-closes first. Data before each FIN arrives whole. */
static void test_half_close_both_ways(void **state)
{
	unsigned char buf[65536];
	uint64_t off = 0, sum = 0;
	int fd, rc;

	SKIP_IF_NEEDED();
	/* Client first: echo_check half-closes after sending, and wants the echo's own EOF back. */
	fd = tcp_connect(FE, P_ECHO, 10);
	assert_true(fd >= 0);
	rc = echo_check(fd, 300000, 3);
	close(fd);
	assert_int_equal(rc, 0);

	/* Sidecar first: it sends 1 MiB and half-closes; the client still sends afterwards. */
	__atomic_store_n(&E.sh->first_done, 0, __ATOMIC_SEQ_CST);
	fd = tcp_connect(FE, P_FIRST, 10);
	assert_true(fd >= 0);
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r < 0)
			fail_msg("recv: %s", strerror(errno));
		if (r == 0)
			break;
		if (!pat_check(7, off, buf, (size_t)r, &sum))
			fail_msg("sidecar bytes differ at %llu", (unsigned long long)off);
		off += (uint64_t)r;
	}
	assert_int_equal(off, FIRST_BYTES);
	for (off = 0; off < FIRST_BYTES;) {
		pat_fill(8, off, buf, sizeof(buf));
		ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

		if (w <= 0)
			fail_msg("send after the sidecar's half-close: %s", strerror(errno));
		off += (uint64_t)w;
	}
	shutdown(fd, SHUT_WR);
	for (long deadline = kb_now_ms() + 10000; kb_now_ms() < deadline && !__atomic_load_n(&E.sh->first_done, __ATOMIC_SEQ_CST);)
		e2e_sleep_ms(10);
	close(fd);
	assert_int_equal(__atomic_load_n(&E.sh->first_done, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(E.sh->first_got, FIRST_BYTES);
	assert_int_equal(E.sh->first_ok, 1);
}

static long mem_available_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* ss -tm of the bridge's accepted socket (the one whose peer is our port): its rmem, wmem. */
static int bridge_skmem(int port, long *r, long *t)
{
	char cmd[256], line[1024], *p;
	FILE *f;
	int found = 0;

	snprintf(cmd, sizeof(cmd), "ss -tmnH state established '( dport = :%d )' 2>/dev/null", port);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f)) {
		p = strstr(line, "skmem:(");
		if (p && sscanf(p, "skmem:(r%ld,rb%*ld,t%ld", r, t) == 2)
			found = 1;
	}
	if (f)
		pclose(f);
	return found ? 0 : -1;
}

/* A sidecar that never reads: the client stalls after about the bound, and memory stays flat. */
static void test_stalled_sidecar_memory_bound(void **state)
{
	const uint64_t N = 1ull << 30, B = 4u << 20;
	static unsigned char buf[1 << 20];
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	long mem0, mem1, r = -1, t = -1, last = kb_now_ms(), wmax;
	uint64_t sent = 0;
	int fd, fl;
	FILE *f;

	SKIP_IF_NEEDED();
	f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%*ld %*ld %ld", &wmax), 1);
	fclose(f);
	mem0 = mem_available_kib();
	fd = tcp_connect(FE, P_STALL, 10);
	assert_true(fd >= 0);
	getsockname(fd, (struct sockaddr *)&me, &ml);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	pat_fill(9, 0, buf, sizeof(buf));
	/* Push until 1.5 s pass without progress (or, if the bound failed, all 1 GiB went). */
	while (sent < N && kb_now_ms() - last < 1500) {
		ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

		if (w > 0) {
			sent += (uint64_t)w;
			last = kb_now_ms();
		} else if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };

			poll(&pf, 1, 100);
		} else {
			fail_msg("send: %s", strerror(errno));
		}
	}
	mem1 = mem_available_kib();
	assert_int_equal(bridge_skmem(ntohs(me.sin_port), &r, &t), 0);
	close(fd);
	fprintf(stderr, "# stalled: client wrote %.1f MiB; bridge socket r=%ld t=%ld; MemAvailable %+ld KiB\n",
		sent / 1048576.0, r, t, mem1 - mem0);
	/* Everything written sits in: the client's own send buffer (at most tcp_wmem max), and the bridge (<= B). */
	if (sent > B + (uint64_t)wmax + (1u << 20))
		fail_msg("the client got %llu bytes out: more than the bound allows", (unsigned long long)sent);
	/* The bridge's TCP receive queue is at most half the bound (SO_RCVBUF B/4, doubled). */
	if (r > (long)(B / 2) + 65536)
		fail_msg("the bridge socket holds %ld bytes", r);
	/* Generous: other processes use memory too; without a bound this would be a GiB. */
	if (mem0 > 0 && mem1 > 0 && mem0 - mem1 > 128 * 1024)
		fail_msg("MemAvailable fell by %ld KiB", mem0 - mem1);
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* 10,000 connections (echoed, reset by the client, or refused by an absent sidecar): no fd is left behind. */
static void test_fds_return_to_baseline(void **state)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char buf[64];
	int base, now = -1, fails = 0;

	SKIP_IF_NEEDED();
	/* Warm up, so the baseline holds whatever a first connection makes for good. */
	for (int i = 0; i < 3; i++) {
		int fd = tcp_connect(FE, P_ECHO, 5);

		assert_true(fd >= 0);
		assert_int_equal(echo_check(fd, 16, 1), 0);
		close(fd);
	}
	e2e_sleep_ms(200);
	base = count_fds(E.daemon);
	assert_true(base > 0);
	for (int i = 0; i < 10000; i++) {
		int fd = tcp_connect(FE, i % 10 == 9 ? P_ABSENT : P_ECHO, 5);

		if (fd < 0) {
			fails++;
			continue;
		}
		if (i % 10 == 9) {
			if (recv(fd, buf, sizeof(buf), 0) >= 0)
				fails++;	/* an absent sidecar must reset */
		} else if (i % 10 == 8) {
			if (send(fd, "x", 1, MSG_NOSIGNAL) != 1)
				fails++;
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));	/* client resets */
		} else if (echo_check(fd, 32, (uint64_t)i)) {
			fails++;
		}
		close(fd);
	}
	for (long deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(50)) {
		now = count_fds(E.daemon);
		if (now == base)
			break;
	}
	fprintf(stderr, "# daemon fds: %d before, %d after 10,000 connections; %d failed\n", base, now, fails);
	assert_int_equal(fails, 0);
	assert_int_equal(now, base);
}

/* A reset that comes fast: connect works (the bridge accepts), the first read says ECONNRESET. */
static void expect_fast_reset(int port)
{
	char buf[16];
	long t0 = kb_now_ms();
	int fd = tcp_connect(FE, port, 5);
	ssize_t r;

	assert_true(fd >= 0);
	r = recv(fd, buf, sizeof(buf), 0);
	if (r >= 0 || errno != ECONNRESET)
		fail_msg("port %d: expected a reset, got %zd (%s)", port, r, r < 0 ? strerror(errno) : "data/EOF");
	close(fd);
	if (kb_now_ms() - t0 > 1000)
		fail_msg("port %d: the reset took %ld ms", port, kb_now_ms() - t0);
}

static void test_sidecar_absent_and_restart(void **state)
{
	static const char *const rs[] = { "restart.sock" };
	static const enum sc_mode rsm[] = { SC_ECHO };
	int fd;

	SKIP_IF_NEEDED();
	expect_fast_reset(P_ABSENT);

	fd = tcp_connect(FE, P_RESTART, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 1000, 5), 0);
	close(fd);
	/* Killed: its socket file stays, and nobody listens on it. */
	e2e_kill_group(&E.restart);
	expect_fast_reset(P_RESTART);
	/* Back: new connections work without touching the daemon. */
	E.restart = sidecar_start(rs, rsm, 1);
	assert_true(E.restart > 0);
	fd = tcp_connect(FE, P_RESTART, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 100000, 6), 0);
	close(fd);
}

/* Run fn in a child inside netns name (and, unless in_cgroup, out of the test cgroup). Its exit status. */
static int in_netns(const char *name, bool in_cgroup, int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		e2e_child_init();
		if (!in_cgroup && e2e_cgroup_enter(E.env.cgroot, 0))
			_exit(90);
		if (e2e_setns(name))
			_exit(91);
		_exit(fn(arg));
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* An echo through the frontend at FE:port; with peer_check, getpeername must show the frontend. */
static int echo_client(void *arg)
{
	int port = (int)(long)arg, fd = tcp_connect(FE, port, 5);
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);

	if (fd < 0)
		return 10;
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) || ntohs(peer.sin_port) != port)
		return 11;
	return echo_check(fd, 200000, 11) ? 12 : 0;
}

/* A client in a --bridge-netns namespace reaches the sidecar through the listener the daemon made there. */
static void test_bridge_netns_client(void **state)
{
	SKIP_IF_NEEDED();
	assert_int_equal(in_netns(E.cl, true, echo_client, (void *)(long)P_ECHO), 0);
	/* And the node's own clients see the frontend as their peer too. */
	assert_int_equal(echo_client((void *)(long)P_ECHO), 0);
}

static int greet_client(void *arg)
{
	char buf[64] = { 0 };
	int fd = tcp_connect(FE_REG, 80, 5);
	ssize_t r;

	if (fd < 0)
		return 20;
	r = recv(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	return r > 0 && !strcmp(buf, "registered\n") ? 0 : 21;
}

static int refused_client(void *arg)
{
	int fd = tcp_connect(FE_REG, 80, 5);

	if (fd >= 0) {
		close(fd);
		return 30;
	}
	return fd == -ECONNREFUSED ? 0 : 31;
}

/* Inbound: from another host, a frontend reaches the sidecar through sk_lookup and the bridge; a registered listener too. */
static void test_inbound_sk_lookup(void **state)
{
	char fdarg[16], pidarg[16];
	int p[2], lfd = -1, status;
	pid_t srv, cli;

	SKIP_IF_NEEDED();
	assert_int_equal(in_netns(E.host, false, echo_client, (void *)(long)P_ECHO), 0);

	/* A sidecar's own listener (in the node netns, any address) handed over with `kbackend register`. */
	assert_int_equal(pipe(p), 0);
	srv = fork();
	if (srv == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd;

		e2e_child_init();
		e2e_cgroup_enter(E.env.cgroot, 0);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64))
			_exit(2);
		if (write(p[1], &fd, sizeof(fd)) != sizeof(fd))
			_exit(3);
		for (;;) {
			int cfd = accept(fd, NULL, NULL);

			if (cfd >= 0) {
				if (write(cfd, "registered\n", 11) != 11)
					{ /* gone */ }
				close(cfd);
			}
		}
	}
	close(p[1]);
	assert_int_equal(read(p[0], &lfd, sizeof(lfd)), (ssize_t)sizeof(lfd));
	close(p[0]);
	snprintf(fdarg, sizeof(fdarg), "%d", lfd);
	snprintf(pidarg, sizeof(pidarg), "%d", (int)srv);
	cli = fork();
	if (cli == 0) {
		int fd = open(E.env.log, O_WRONLY | O_APPEND | O_CLOEXEC);

		e2e_child_init();
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setenv("KBACKEND_SOCKET", E.env.sock, 1);
		execl(E.env.kb, "kbackend", "register", FE_REG ":80", "--pid", pidarg, "--fd", fdarg, (char *)NULL);
		_exit(127);
	}
	waitpid(cli, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
		dump_log();
		fail_msg("kbackend register failed (status %#x)", status);
	}
	assert_int_equal(in_netns(E.host, false, greet_client, NULL), 0);
	/* The sidecar goes away: its socket leaves the map by itself, and the frontend is refused again. */
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	e2e_sleep_ms(100);
	assert_int_equal(in_netns(E.host, false, refused_client, NULL), 0);
}

/* A unix path outside --unix-dir is refused at apply, and the message names the flag. */
static void test_unix_outside_dir_refused(void **state)
{
	static const char extra[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata: {name: outside, namespace: default}\n"
		"spec:\n"
		"  endpoints:\n"
		"    - unix: {path: /run/elsewhere/app.sock}\n"
		"---\n"
		"apiVersion: gateway.networking.k8s.io/v1alpha2\n"
		"kind: TCPRoute\n"
		"metadata: {name: outside, namespace: default}\n"
		"spec:\n"
		"  parentRefs: [{name: eg, sectionName: echo}]\n"
		"  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: outside}]}]\n";
	static char yaml[20000];
	struct json_object *r;
	const char *s;
	int fd;

	SKIP_IF_NEEDED();
	yaml_config(yaml, sizeof(yaml), extra);
	r = apply_yaml(yaml);
	assert_non_null(r);
	assert_false(e2e_reply_ok(r));
	s = json_object_to_json_string(r);
	if (!strstr(s, "--unix-dir"))
		fail_msg("the refusal does not name --unix-dir: %.600s", s);
	json_object_put(r);
	/* Nothing changed: the echo sidecar still serves. */
	fd = tcp_connect(FE, P_ECHO, 5);
	assert_true(fd >= 0);
	assert_int_equal(echo_check(fd, 1000, 12), 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_half_close_both_ways),
		cmocka_unit_test(test_sidecar_absent_and_restart),
		cmocka_unit_test(test_bridge_netns_client),
		cmocka_unit_test(test_unix_outside_dir_refused),
		cmocka_unit_test(test_inbound_sk_lookup),
		cmocka_unit_test(test_1000_concurrent),
		cmocka_unit_test(test_stalled_sidecar_memory_bound),
		cmocka_unit_test(test_fds_return_to_baseline),
		cmocka_unit_test(test_bulk_1gib_each_way),
	};

	e2e_main_init("test_bridge", group_teardown, 600);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
