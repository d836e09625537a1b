// SPDX-License-Identifier: Apache-2.0
/* The bridge e2e tests' shared part: topology, sidecars, the daemon under a chosen bridge configuration, clients, counters. */
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
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "util.h"
#include "bridge_env.h"


struct env E;

/* ---- helpers ---- */

void dump_log(void)
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

void pat_fill(uint64_t seed, uint64_t off, unsigned char *p, size_t n)
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
bool pat_check(uint64_t seed, uint64_t off, const unsigned char *p, size_t n, uint64_t *sum)
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

/* Writes a pattern for as long as the peer takes it; E.sh->flood_sent says how far it got. */
static void *flood_thread(void *arg)
{
	int fd = (int)(long)arg;
	static unsigned char buf[65536];
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	pat_fill(10, 0, buf, sizeof(buf));
	for (;;) {
		ssize_t w = write(fd, buf, sizeof(buf));

		if (w <= 0)
			break;
		__atomic_add_fetch(&E.sh->flood_sent, (uint64_t)w, __ATOMIC_SEQ_CST);
	}
	close(fd);
	return NULL;
}

/* Echo the first read, then close with the rest unread: a unix peer then reads ECONNRESET. */
static void *reset_thread(void *arg)
{
	int fd = (int)(long)arg;
	char buf[4096];
	int fl = fcntl(fd, F_GETFL);
	ssize_t r;

	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	r = read(fd, buf, sizeof(buf));
	if (r > 0 && write(fd, buf, (size_t)r) != r)
		{ /* the close below is the point */ }
	/* Wait for more to arrive, so that the close leaves bytes unread. */
	r = recv(fd, buf, 1, MSG_PEEK);
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

					if (lmodes[li] == SC_OUTSIDE)
						__atomic_add_fetch(&E.sh->outside_accepts, 1, __ATOMIC_SEQ_CST);
					if (lmodes[li] == SC_STALL)
						continue;	/* kept open, never read: the fd leaks on purpose */
					if (lmodes[li] == SC_FIRST || lmodes[li] == SC_FLOOD || lmodes[li] == SC_RESET) {
						void *(*fn)(void *) = lmodes[li] == SC_FIRST ? first_thread :
								      lmodes[li] == SC_FLOOD ? flood_thread : reset_thread;

						if (pthread_create(&th, NULL, fn, (void *)(long)fd))
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

pid_t sidecar_start(const char *const *names, const enum sc_mode *modes, int n)
{
	char paths[8][PATH_MAX];
	const char *pp[8];
	int p[2];
	char c;
	pid_t pid;

	for (int i = 0; i < n; i++) {
		/* Relative: under the sidecar dir (--unix-dir). */
		snprintf(paths[i], sizeof(paths[i]), "%s%s%s", names[i][0] == '/' ? "" : E.scdir,
			 names[i][0] == '/' ? "" : "/", names[i]);
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

void yaml_config(char *buf, size_t len, const char *extra)
{
	const struct { const char *name; int port; const char *sock; } be[] = {
		{ "echo", P_ECHO, "echo.sock" },	 { "stall", P_STALL, "stall.sock" },
		{ "first", P_FIRST, "first.sock" },	 { "absent", P_ABSENT, "absent.sock" },
		{ "restart", P_RESTART, "restart.sock" }, { "race", P_RACE, "race.sock" },
		{ "racedir", P_RACEDIR, "rdir/r.sock" }, { "innocent", P_INNOCENT, E.innocent },
		{ "flood", P_FLOOD, "flood.sock" }, { "reset", P_RESET, "reset.sock" },
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

	for (size_t i = 0; i < sizeof(be) / sizeof(be[0]); i++)
		n += (size_t)snprintf(buf + n, len - n, "    - {name: %s, protocol: TCP, port: %d}\n", be[i].name,
				      be[i].port);
	for (size_t i = 0; i < sizeof(be) / sizeof(be[0]); i++)
		n += (size_t)snprintf(buf + n, len - n,
				      "---\n"
				      "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				      "kind: Backend\n"
				      "metadata: {name: %s, namespace: default}\n"
				      "spec:\n"
				      "  endpoints:\n"
				      "    - unix: {path: %s%s%s}\n"
				      "---\n"
				      "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				      "kind: TCPRoute\n"
				      "metadata: {name: %s, namespace: default}\n"
				      "spec:\n"
				      "  parentRefs: [{name: eg, sectionName: %s}]\n"
				      "  rules: [{backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: %s}]}]\n",
				      be[i].name, be[i].sock[0] == '/' ? "" : E.scdir, be[i].sock[0] == '/' ? "" : "/",
				      be[i].sock, be[i].name, be[i].name, be[i].name);
	if (extra)
		snprintf(buf + n, len - n, "---\n%s", extra);
}

struct json_object *apply_yaml(const char *yaml)
{
	struct json_object *req = e2e_files_req("apply", "bridge.yaml", yaml), *reply;

	reply = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	return reply;
}

/* ---- the daemon ---- */


const struct bconf C_DEFAULT = { "copy, default buffer", NULL, NULL, 4u << 20, NULL, 10000 };
const struct bconf C_SPLICE = { "splice, 1MiB", "splice", "1MiB", 1u << 20, NULL, 2000 };
const struct bconf C_SMALL = { "copy, 256KiB", "copy", "256KiB", 256u << 10, NULL, 2000 };
const struct bconf C_IDLE = { "copy, idle 2s", NULL, NULL, 4u << 20, "2s", 0 };
static const struct bconf *E_conf = &C_DEFAULT;	/* what the running daemon was started with */

int daemon_start(const struct bconf *c)
{
	char cl[PATH_MAX];
	const char *argv[32] = { "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				 "--state-dir", E.env.state, "--socket", E.env.sock, "--unix-dir", E.scdir,
				 "--bridge-netns", cl };
	int n = 14;
	pid_t pid;

	snprintf(cl, sizeof(cl), "/var/run/netns/%s", E.cl);
	if (c->mode) {
		argv[n++] = "--bridge-mode";
		argv[n++] = c->mode;
	}
	if (c->buffer) {
		argv[n++] = "--bridge-buffer";
		argv[n++] = c->buffer;
	}
	if (c->idle) {
		argv[n++] = "--bridge-idle-timeout";
		argv[n++] = c->idle;
	}
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
		execv(E.env.kb, (char *const *)argv);
		_exit(127);
	}
	E.daemon = pid;
	E_conf = c;
	return e2e_daemon_wait(&E.daemon, E.env.sock, 60000);
}

/* Run the daemon with configuration c (restarted when it runs with another); its state comes back from --state-dir. */
void use_conf(const struct bconf *c)
{
	if (E_conf == c && E.daemon > 0)
		return;
	if (E.daemon > 0) {
		kill(E.daemon, SIGTERM);
		waitpid(E.daemon, NULL, 0);
		E.daemon = 0;
	}
	if (daemon_start(c)) {
		dump_log();
		fail_msg("the daemon did not start with %s", c->name);
	}
}

/* ---- clients (this process: node netns, test cgroup) ---- */

/* A connected TCP socket with send and receive timeouts (and, unless 0, that SO_RCVBUF), or -errno. */
int tcp_connect_rcvbuf(const char *ip, int port, int timeout_s, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { timeout_s, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, ip, &sa.sin_addr);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int tcp_connect(const char *ip, int port, int timeout_s)
{
	return tcp_connect_rcvbuf(ip, port, timeout_s, 0);
}

/* What the last failed echo_check failed at: "send", "recv", "eof" (too early), "bytes" or "no-eof". */
const char *echo_fail;

/* Send n bytes of stream seed, half-close, read the echo to EOF. 0, or a negative errno / -1000 for bad bytes. */
int echo_check(int fd, size_t n, uint64_t seed)
{
	unsigned char buf[65536];
	uint64_t sum = 0, got = 0, sent = 0;

	while (sent < n || got < n) {
		if (sent < n) {
			size_t k = n - sent < sizeof(buf) ? n - sent : sizeof(buf);
			ssize_t w;

			pat_fill(seed, sent, buf, k);
			w = send(fd, buf, k, MSG_NOSIGNAL);
			if (w < 0) {
				echo_fail = "send";
				return -errno;
			}
			sent += (uint64_t)w;
			if (sent == n)
				shutdown(fd, SHUT_WR);
			if (sent - got < (256u << 10))
				continue;
		}
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		echo_fail = r < 0 ? "recv" : r == 0 ? "eof" : "bytes";
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		if (!pat_check(seed, got, buf, (size_t)r, &sum))
			return -1000;
		got += (uint64_t)r;
	}
	/* Then the echo's own EOF: the half-close came back. */
	echo_fail = "no-eof";
	{
		ssize_t r = recv(fd, buf, 1, 0);

		return r == 0 ? 0 : r < 0 ? -errno : -EPROTO;
	}
}

/* ---- group setup ---- */

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

int group_setup(void **state)
{
	char yaml[16384];
	static const char *const names[] = { "echo.sock", "stall.sock", "first.sock", "flood.sock", "reset.sock" };
	static const enum sc_mode modes[] = { SC_ECHO, SC_STALL, SC_FIRST, SC_FLOOD, SC_RESET };
	static const char *const rs[] = { "restart.sock" };
	static const enum sc_mode rsm[] = { SC_ECHO };
	struct json_object *r;
	struct rlimit rl;

	E.rootns = -1;
	E.innocent = "innocent.sock";
	if (e2e_env_setup(&E.env, "bridge"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	if (e2e_sh("command -v ss"))
		return setup_failed("needs ss (iproute2; make deps installs it)");
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, NULL) != 1) {
		if (e2e_in_ci())
			return setup_failed("kernel cannot load sk_lookup programs (CI runs every test)");
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
	E.sidecar = sidecar_start(names, modes, 5);
	E.restart = sidecar_start(rs, rsm, 1);
	if (E.sidecar <= 0 || E.restart <= 0)
		return setup_failed("sidecars");
	if (daemon_start(&C_DEFAULT))
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

int group_teardown(void **state)
{
	e2e_kill_group(&E.sidecar);
	e2e_kill_group(&E.restart);
	e2e_kill_group(&E.outside);
	e2e_kill_group(&E.racer);
	e2e_kill(&E.daemon);
	if (E.env.bpffs[0])
		kb_dataplane_unload(E.env.bpffs);
	E.env.bpffs[0] = '\0';
	if (E.rootns >= 0) {
		if (setns(E.rootns, CLONE_NEWNET))
			{ /* the netns deletion below still works */ }
		close(E.rootns);
		E.rootns = -1;
	E.innocent = "innocent.sock";
	}
	e2e_netns_del(&E.netns_made, E.node, E.host, E.cl, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.sh)
		munmap(E.sh, sizeof(*E.sh));
	E.sh = NULL;
	return 0;
}



/* The configuration a limit test runs under: its prestate, or the default. */
const struct bconf *conf_of(void **state)
{
	const struct bconf *c = *state ? *state : &C_DEFAULT;

	SKIP_IF_NEEDED();
	fprintf(stderr, "# under %s\n", c->name);
	use_conf(c);
	return c;
}



struct bcount bridge_counters(void)
{
	struct json_object *r = e2e_ctl(E.env.sock, "status", 10000), *b = e2e_jget(r, "bridge");
	struct bcount c = { e2e_jint(b, "accepted"), e2e_jint(b, "refused"), e2e_jint(b, "active"),
			    e2e_jint(b, "idleClosed"), e2e_jint(b, "pooledPipes") };

	json_object_put(r);
	return c;
}

int count_fds(pid_t pid)
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

/*
 * The daemon's fd count with nothing in flight: the least of several reads,
 * since its loop opens short-lived fds of its own (a control client that a
 * slow daemon has not closed yet, a netlink socket for the node's addresses).
 */
/* The daemon's open fds less the bridge's pooled pipes (splice mode keeps up to 8 idle ones, 2 fds each). */
int connection_fds(void)
{
	int n = count_fds(E.daemon);

	return n < 0 ? n : n - 2 * (int)bridge_counters().pooled_pipes;
}

int settled_fds(void)
{
	int least = connection_fds();

	for (int k = 0; k < 10; k++) {
		int n;

		e2e_sleep_ms(30);
		n = connection_fds();
		if (n >= 0 && n < least)
			least = n;
	}
	return least;
}

/* One byte to the echo sidecar and back: 0, or -errno (-EPIPE: EOF). */
int ping(int fd)
{
	char ch = 'p';
	ssize_t r;

	if (send(fd, &ch, 1, MSG_NOSIGNAL) != 1)
		return -errno;
	r = recv(fd, &ch, 1, 0);
	return r == 1 ? 0 : r == 0 ? -EPIPE : -errno;
}

/* A reset that comes fast: connect works (the bridge accepts), the first read says ECONNRESET. */
void expect_fast_reset(int port)
{
	char buf[16];
	long t0 = kb_now_ms();
	int fd = tcp_connect(FE, port, 5);
	ssize_t r;

	/* The reset can land before a loopback connect() returns, which then reports it. */
	if (fd == -ECONNRESET)
		return;
	assert_true(fd >= 0);
	r = recv(fd, buf, sizeof(buf), 0);
	if (r >= 0 || errno != ECONNRESET)
		fail_msg("port %d: expected a reset, got %zd (%s)", port, r, r < 0 ? strerror(errno) : "data/EOF");
	close(fd);
	if (kb_now_ms() - t0 > 1000)
		fail_msg("port %d: the reset took %ld ms", port, kb_now_ms() - t0);
}

/* Run fn in a child inside netns name (and, unless in_cgroup, out of the test cgroup). Its exit status. */
int in_netns(const char *name, bool in_cgroup, int (*fn)(void *), void *arg)
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
