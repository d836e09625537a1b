// SPDX-License-Identifier: Apache-2.0
/* e2e: health-driven failover: passive ejection, active checks, fallback levels, spill, panic, LeastRequest, UDP teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "render/render.h"
#include "util.h"

/*
 * Topology (DESIGN section 8): the daemon and the clients live in the node
 * netns (no default route); the endpoints live in a backend netns behind a
 * veth. Every endpoint is its own server process, so a test can kill one.
 *
 *   node 198.51.100.254/24 203.0.113.254/24 ==veth== be: P1..P4 198.51.100.1-4, F1 203.0.113.1, F2 203.0.113.2
 *
 * A TCP endpoint answers "HTTP/1.0 <status> X\r\n\r\n<its address>\n" and
 * keeps the connection until the client closes it (so LeastRequest sees
 * long-lived connections); <status> is 200 unless the test changes it. The
 * UDP endpoints (P1, F1 on 5353) echo "<address>" to every datagram.
 */
#define FE "198.18.0.20"
#define PORT 8080
#define UPORT 5353
#define NEP 6
#define MAXFD 1024

enum { P1, P2, P3, P4, F1, F2 };
static const char *const EP[NEP] = { "198.51.100.1", "198.51.100.2", "198.51.100.3",
				     "198.51.100.4", "203.0.113.1",  "203.0.113.2" };

struct shared {
	int status[NEP];	/* HTTP status each endpoint answers */
};

static struct {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	bool netns_made;
	char node[64], be[64];
	pid_t daemon;
	pid_t srv[NEP];		/* TCP endpoint servers */
	pid_t usrv;		/* UDP echo servers (P1, F1) */
	pid_t utcp[2];		/* TCP listeners on P1:5353 and F1:5353, the UDP endpoints' health check targets */
	struct shared *sh;
} E;

static void dump_log(void)
{
	e2e_dump_file("log", E.env.log, 0);
}

/* ---- endpoint servers ---- */

static int listen_on(const char *ip, int port, int type)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, ip, &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -1;
	if (type == SOCK_STREAM && listen(fd, 1024))
		return -1;
	return fd;
}

/* One TCP endpoint: answer every connection at once, hold it until the client closes. */
static void tcp_server(int i, int ready)
{
	struct pollfd pf[MAXFD];
	nfds_t n = 1;
	int lfd;

	if (e2e_setns(E.be) || (lfd = listen_on(EP[i], PORT, SOCK_STREAM)) < 0)
		_exit(2);
	if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	pf[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (;;) {
		if (poll(pf, n, -1) < 0)
			continue;
		for (nfds_t k = n; k-- > 1;) {
			char buf[512];

			if (!pf[k].revents)
				continue;
			if (read(pf[k].fd, buf, sizeof(buf)) > 0)
				continue;
			close(pf[k].fd);
			pf[k] = pf[--n];
		}
		if (pf[0].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			char msg[128];
			int len;

			if (c < 0)
				continue;
			len = snprintf(msg, sizeof(msg), "HTTP/1.0 %d X\r\n\r\n%s\n", E.sh->status[i], EP[i]);
			if (write(c, msg, (size_t)len) < 0 || n == MAXFD) {
				close(c);
				continue;
			}
			pf[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
		}
	}
}

static pid_t spawn_ready(void (*fn)(int, int), int arg)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		e2e_child_init();
		close(p[0]);
		fn(arg, p[1]);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return pid;
}

static void ep_kill(int i)
{
	e2e_kill(&E.srv[i]);
}

static void ep_start(int i)
{
	if (E.srv[i] > 0)
		return;
	E.srv[i] = spawn_ready(tcp_server, i);
	assert_true(E.srv[i] > 0);
}

static void udp_servers(int unused, int ready)
{
	struct pollfd pf[2];

	if (e2e_setns(E.be))
		_exit(2);
	pf[0] = (struct pollfd){ .fd = listen_on(EP[P1], UPORT, SOCK_DGRAM), .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = listen_on(EP[F1], UPORT, SOCK_DGRAM), .events = POLLIN };
	if (pf[0].fd < 0 || pf[1].fd < 0 || write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		if (poll(pf, 2, -1) < 0)
			continue;
		for (int k = 0; k < 2; k++) {
			struct sockaddr_in from;
			socklen_t fl = sizeof(from);
			char buf[512];
			const char *me = k ? EP[F1] : EP[P1];

			if (!(pf[k].revents & POLLIN))
				continue;
			if (recvfrom(pf[k].fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl) >= 0)
				sendto(pf[k].fd, me, strlen(me), 0, (struct sockaddr *)&from, fl);
		}
	}
}

/* The UDP endpoints (P1, F1 on 5353) are health-checked over TCP on the same port. */
static void udp_check_target(int i, int ready)
{
	int lfd;

	if (e2e_setns(E.be) || (lfd = listen_on(EP[i], UPORT, SOCK_STREAM)) < 0)
		_exit(2);
	if (write(ready, "R", 1) != 1)
		_exit(3);
	close(ready);
	for (;;) {
		int c = accept(lfd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

/* ---- the daemon and its control socket ---- */

static int daemon_start(void)
{
	const char *const argv[] = { "kbackend", "daemon", "-v", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				     "--state-dir", E.env.state, "--socket", E.env.sock, "--enable-backend", NULL };
	pid_t pid = e2e_daemon_spawn(E.env.kb, E.env.log, E.node, argv);

	if (pid < 0)
		return -1;
	E.daemon = pid;
	return e2e_daemon_wait(&E.daemon, E.env.sock, 15000);
}

/* Make yaml the daemon's whole state (op replace): objects of an earlier step that it does not name are deleted. */
static void apply_yaml(const char *yaml)
{
	struct json_object *req = e2e_files_req("replace", "health.yaml", yaml), *r;

	r = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	if (!(e2e_reply_ok(r))) {
		dump_log();
		fail_msg("replace refused: %s", r ? json_object_to_json_string(r) : strerror(errno));
	}
	json_object_put(r);
}

/* The daemon's frontends (get endpoints), for the first frontend with this port. */
static struct json_object *get_frontend(int port, struct json_object **owner)
{
	struct json_object *req = json_object_new_object(), *r, *fes;

	json_object_object_add(req, "op", json_object_new_string("get"));
	json_object_object_add(req, "what", json_object_new_string("endpoints"));
	r = kb_ctl_call(E.env.sock, req, 5000);
	json_object_put(req);
	*owner = r;
	if (!r || !json_object_object_get_ex(r, "frontends", &fes))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);

		if (kb_json_int(fe, "port") == port)
			return fe;
	}
	return NULL;
}

/* ---- manifests ---- */

static char Y[32768];

static size_t y_add(size_t n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t y_add(size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	n += (size_t)vsnprintf(Y + n, sizeof(Y) - n, fmt, ap);
	va_end(ap);
	return n;
}

static size_t y_head(void)
{
	Y[0] = '\0';
	return y_add(0,
		     "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: eg\n  namespace: default\n"
		     "spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: " FE "\n"
		     "  listeners:\n    - name: tcp\n      protocol: TCP\n      port: 80\n"
		     "    - name: udp\n      protocol: UDP\n      port: 53\n");
}

/*
 * A Backend. eps: bitmask over EP[]. fb: "true" for `fallback: true`, a
 * Backend name for the seed's `fallback.backendRef`, or NULL.
 */
static size_t y_backend(size_t n, const char *name, unsigned eps, int port, const char *fb)
{
	n = y_add(n, "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: %s\n"
		     "  namespace: default\nspec:\n",
		  name);
	if (fb && !strcmp(fb, "true"))
		n = y_add(n, "  fallback: true\n");
	else if (fb)
		n = y_add(n, "  fallback:\n    backendRef:\n      name: %s\n", fb);
	n = y_add(n, "  endpoints:\n");
	for (int i = 0; i < NEP; i++)
		if (eps & (1u << i))
			n = y_add(n, "    - ip:\n        address: %s\n        port: %d\n", EP[i], port);
	return n;
}

/* A route of kind (TCPRoute/UDPRoute) named app/dns on its listener, with refs (comma-separated Backend names). */
static size_t y_route(size_t n, const char *kind, const char *name, const char *section, const char *refs)
{
	char buf[256], *save = NULL;

	n = y_add(n, "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: %s\nmetadata:\n  name: %s\n"
		     "  namespace: default\nspec:\n  parentRefs:\n    - name: eg\n      sectionName: %s\n"
		     "  rules:\n    - backendRefs:\n",
		  kind, name, section);
	snprintf(buf, sizeof(buf), "%s", refs);
	for (char *r = strtok_r(buf, ",", &save); r; r = strtok_r(NULL, ",", &save))
		n = y_add(n, "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: %s\n", r);
	return n;
}

/* A BackendTrafficPolicy on route kind/name with this healthCheck / loadBalancer body (already indented). */
static size_t y_policy(size_t n, const char *kind, const char *name, const char *body)
{
	return y_add(n, "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata:\n"
			"  name: hc-%s\n  namespace: default\nspec:\n  targetRefs:\n    - group: gateway.networking.k8s.io\n"
			"      kind: %s\n      name: %s\n%s",
		     name, kind, name, body);
}

#define ACTIVE_FAST                                                                                    \
	"  healthCheck:\n    active:\n      type: TCP\n      timeout: 300ms\n      interval: 500ms\n" \
	"      unhealthyThreshold: 3\n      healthyThreshold: 1\n"
#define ACTIVE_INTERVAL_MS 500
#define ACTIVE_UNHEALTHY 3

/* ---- clients: in the test cgroup and the node netns ---- */

/*
 * Every connect counts: answered (ok[] by endpoint), refused (fail), and the
 * failures a dead endpoint never causes here (a killed server resets at once):
 * timeouts, unreachable, and anything else (a short or foreign answer).
 */
struct tally {
	long ok[NEP], fail, timeout, unreach, other;
	int first_other;		/* -errno of the first failure that was not a refusal */
	long first_ms, last_fail_ms;	/* monotonic ms of the first connect and of the last failed one */
	long last_dead_ms;		/* last connect answered by, or refused at, the endpoint `dead` */
};

/* Failures of any kind. */
static long failures(const struct tally *t)
{
	return t->fail + t->timeout + t->unreach + t->other;
}

/* What a tally saw, for failure messages. */
static const char *tally_text(const struct tally *t, char *buf, size_t len)
{
	snprintf(buf, len, "P1 %ld P2 %ld P3 %ld P4 %ld F1 %ld F2 %ld; refused %ld, timed out %ld, unreachable %ld, other %ld%s%s",
		 t->ok[P1], t->ok[P2], t->ok[P3], t->ok[P4], t->ok[F1], t->ok[F2], t->fail, t->timeout, t->unreach,
		 t->other, t->first_other ? "; first of those: " : "", t->first_other ? strerror(-t->first_other) : "");
	return buf;
}

/* No failed connect at all (refused, timed out, unreachable or other). */
#define assert_no_failures(t)                                                                  \
	do {                                                                                   \
		char _b[256];                                                                  \
		if (failures(&(t)))                                                            \
			fail_msg("%ld failed connect(s): %s", failures(&(t)), tally_text(&(t), _b, sizeof(_b))); \
	} while (0)

/* Refusals are allowed here (an endpoint was killed), nothing else: no timeout, no unreachable, no bad answer. */
#define assert_only_refusals(t)                                                                \
	do {                                                                                   \
		char _b[256];                                                                  \
		if (failures(&(t)) != (t).fail)                                                \
			fail_msg("failed connects other than refusals: %s", tally_text(&(t), _b, sizeof(_b))); \
	} while (0)

/* One steered connect to FE:80; the index of the endpoint that answered, or -errno (-ETIMEDOUT for a timeout). */
static int one_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
	struct timeval tv = { 3, 0 };
	char buf[256];
	size_t got = 0;
	ssize_t r = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), res = -EPROTO;

	inet_pton(AF_INET, FE, &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));	/* bounds connect() too */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		res = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		close(fd);
		return res;
	}
	while (got < sizeof(buf) - 1 && (r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
		got += (size_t)r;
		buf[got] = '\0';
		if (got > 4 && buf[got - 1] == '\n' && strstr(buf, "\r\n\r\n"))
			break;
	}
	if (r < 0)
		res = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	buf[got] = '\0';
	close(fd);
	for (int i = 0; i < NEP; i++) {
		char *body = strstr(buf, "\r\n\r\n");

		if (body && !strncmp(body + 4, EP[i], strlen(EP[i])) && body[4 + strlen(EP[i])] == '\n')
			return i;
	}
	return res;
}

/*
 * Run `count` connects (0: no limit) until the monotonic ms `until` (0: none)
 * in a child in the cgroup; results in shared memory. `dead` names an
 * endpoint whose answers and refusals mark last_dead_ms (-1: none).
 */
static struct tally run_clients_until(long count, long until, int dead)
{
	struct tally *t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), res;
	pid_t pid;
	int st;

	assert_true(t != MAP_FAILED);
	assert_true(count || until);
	memset(t, 0, sizeof(*t));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
			_exit(99);
		t->first_ms = kb_now_ms();
		for (long i = 0; (!count || i < count) && (!until || kb_now_ms() < until); i++) {
			int r = one_connect();

			if (r >= 0) {
				t->ok[r]++;
				if (r == dead)
					t->last_dead_ms = kb_now_ms();
			} else if (r == -ECONNREFUSED) {
				t->fail++;
				t->last_fail_ms = kb_now_ms();
				if (dead >= 0)
					t->last_dead_ms = t->last_fail_ms;
			} else {
				if (r == -ETIMEDOUT)
					t->timeout++;
				else if (r == -EHOSTUNREACH || r == -ENETUNREACH)
					t->unreach++;
				else
					t->other++;
				if (!t->first_other)
					t->first_other = r;
				t->last_fail_ms = kb_now_ms();
			}
		}
		_exit(0);
	}
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	res = *t;
	munmap(t, sizeof(*t));
	return res;
}

/* Run `count` connects, or (count 0) connects for `ms`. */
static struct tally run_clients(long count, long ms, int dead)
{
	return run_clients_until(count, count ? 0 : kb_now_ms() + ms, dead);
}

static long total(const struct tally *t)
{
	long n = 0;

	for (int i = 0; i < NEP; i++)
		n += t->ok[i];
	return n;
}

/* Wait (making connects) until a run of `n` connects has no failure; false on timeout. */
static bool settle(long timeout_ms)
{
	for (long end = kb_now_ms() + timeout_ms; kb_now_ms() < end;) {
		struct tally t = run_clients(50, 0, -1);

		if (!failures(&t))
			return true;
		e2e_sleep_ms(100);
	}
	return false;
}

/* The endpoints that the programmed table of :port gives slots to (bits over EP[]), as `get endpoints` reports it. */
static unsigned serving_mask_on(int port)
{
	struct json_object *owner, *fe = get_frontend(port, &owner), *eps;
	unsigned m = 0;

	if (!fe || !json_object_object_get_ex(fe, "endpoints", &eps)) {
		json_object_put(owner);
		return ~0u;
	}
	for (size_t i = 0; i < json_object_array_length(eps); i++) {
		struct json_object *ep = json_object_array_get_idx(eps, i);

		for (int k = 0; k < NEP; k++)
			if (!strcmp(kb_json_str(ep, "address"), EP[k]) && kb_json_int(ep, "slots") > 0)
				m |= 1u << k;
	}
	json_object_put(owner);
	return m;
}

static unsigned serving_mask(void)
{
	return serving_mask_on(80);
}

/*
 * EP[k]'s passive ejection on :80 as `get endpoints` reports it: the ms it
 * has left (-1: not ejected) and, in *ejections, how many it has had.
 */
static long ejection_left_ms(int k, long *ejections)
{
	struct json_object *owner, *fe = get_frontend(80, &owner), *eps, *h;
	long left = -1;

	*ejections = -1;
	if (fe && json_object_object_get_ex(fe, "endpoints", &eps))
		for (size_t i = 0; i < json_object_array_length(eps); i++) {
			struct json_object *ep = json_object_array_get_idx(eps, i);

			if (strcmp(kb_json_str(ep, "address"), EP[k]) || !json_object_object_get_ex(ep, "health", &h))
				continue;
			*ejections = (long)kb_json_int(h, "ejections");
			if (!strcmp(kb_json_str(h, "state"), "ejected"))
				left = (long)kb_json_int(h, "ejectedForMs");
		}
	json_object_put(owner);
	return left;
}

static const char *mask_text(unsigned m, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	if (m == ~0u)
		return snprintf(buf, len, "(no answer)"), buf;
	for (int k = 0; k < NEP && n < len; k++)
		if (m & (1u << k))
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", EP[k]);
	return n ? buf : "(none)";
}

/*
 * Wait until the daemon has programmed exactly `want` (the health change is
 * swapped in), bounded by timeout_ms; the condition itself, not a guessed
 * sleep. Returns the time it took.
 */
static long wait_serving_on(int port, unsigned want, long timeout_ms)
{
	long t0 = kb_now_ms();
	unsigned m;

	while ((m = serving_mask_on(port)) != want) {
		char a[256], b[256];

		if (kb_now_ms() - t0 > timeout_ms) {
			dump_log();
			fail_msg("after %ld ms the table of :%d serves %s, expected %s", timeout_ms, port,
				 mask_text(m, a, sizeof(a)), mask_text(want, b, sizeof(b)));
		}
		e2e_sleep_ms(20);
	}
	return kb_now_ms() - t0;
}

static long wait_serving(unsigned want, long timeout_ms)
{
	return wait_serving_on(80, want, timeout_ms);
}

/* Generous: a health change shows within interval x threshold (+ ejection time); this only stops a hang. */
#define WAIT_MS 15000

/* ---- setup ---- */

static int group_teardown(void **state);

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "khn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "khb%d", (int)getpid());
	E.netns_made = true;
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be) ||
	    e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 203.0.113.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb))
		return -1;
	for (int i = 0; i < NEP; i++)
		if (e2e_sh("ip -n %s addr add %s/24 dev %s", E.be, EP[i], vb))
			return -1;
	/* Thousands of short connects: reuse TIME_WAIT ports (per-netns sysctls). */
	e2e_sh("nsenter --net=/var/run/netns/%s sysctl -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range='1024 65000'",
	       E.node);
	/* The network rule: the node netns has no default route. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node))
		return -1;
	return 0;
}

static int group_setup(void **state)
{
	if (e2e_env_setup(&E.env, "health"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) != 1) {
		if (e2e_in_ci())	/* CI: every check runs, or the run fails */
			return setup_failed("kernel cannot load sockops programs");
		E.env.skip = "kernel cannot load sockops programs";
		return 0;
	}
	E.sh = mmap(NULL, sizeof(*E.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.sh == MAP_FAILED) {
		E.sh = NULL;
		return setup_failed("mmap");
	}
	for (int i = 0; i < NEP; i++)
		E.sh->status[i] = 200;
	snprintf(E.node, sizeof(E.node), "kbt-hnode-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-hbe-%d", (int)getpid());
	if (topo_up())
		return setup_failed("topology");
	for (int i = 0; i < NEP; i++)
		if ((E.srv[i] = spawn_ready(tcp_server, i)) <= 0)
			return setup_failed("endpoint servers");
	if ((E.usrv = spawn_ready(udp_servers, 0)) <= 0)
		return setup_failed("UDP servers");
	if (daemon_start())
		return setup_failed("daemon did not start (see its log)");
	return 0;
}

static int group_teardown(void **state)
{
	e2e_kill(&E.daemon);
	for (int i = 0; i < NEP; i++)
		e2e_kill(&E.srv[i]);
	e2e_kill(&E.usrv);
	e2e_kill(&E.utcp[0]);
	e2e_kill(&E.utcp[1]);
	if (E.env.bpffs[0])
		kb_dataplane_unload(E.env.bpffs);
	E.env.bpffs[0] = '\0';
	e2e_netns_del(&E.netns_made, E.node, E.be, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.sh)
		munmap(E.sh, sizeof(*E.sh));
	E.sh = NULL;
	return 0;
}

/* Every test starts with all endpoint servers up, answering 200. */
static int test_setup(void **state)
{
	if (E.env.skip)
		return 0;
	for (int i = 0; i < NEP; i++) {
		E.sh->status[i] = 200;
		ep_start(i);
	}
	return 0;
}

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* P1+P2 primary, F1 fallback (`fallback: true`), with this policy body (NULL: none). */
static void config_primary_fallback(const char *policy)
{
	size_t n = y_head();

	n = y_backend(n, "prim", 1u << P1 | 1u << P2, PORT, NULL);
	n = y_backend(n, "fb", 1u << F1, PORT, "true");
	n = y_route(n, "TCPRoute", "app", "tcp", "prim,fb");
	if (policy)
		y_policy(n, "TCPRoute", "app", policy);
	apply_yaml(Y);
}

/* ---- tests ---- */

/* What a client run inside an ejection leaves before its end: its scheduling, not the daemon's. */
#define EJECT_MARGIN_MS 250

/* Passive: after N refused connects the endpoint is ejected, no new connection goes to it, and it comes back. */
static void test_passive_eject_and_return(void **state)
{
	struct tally t;
	long kill_at, asked, left, ejections;

	NEED_ENV();
	config_primary_fallback("  healthCheck:\n    passive:\n      splitExternalLocalOriginErrors: true\n"
				"      consecutiveLocalOriginFailures: 3\n      interval: 1s\n      baseEjectionTime: 6s\n"
				"      maxEjectionPercent: 50\n");
	assert_true(settle(5000));
	t = run_clients(400, 0, -1);
	assert_no_failures(t);
	assert_true(t.ok[P1] > 100 && t.ok[P2] > 100);

	kill_at = kb_now_ms();
	ep_kill(P1);
	/* Connect for 1.5 s: a few refusals at P1, then none; never a timeout or anything else. */
	t = run_clients(0, 1500, P1);
	print_message("# passive: %ld refused connects; failover %ld ms (kill -> last connect sent to the dead endpoint)\n",
		      t.fail, t.last_dead_ms ? t.last_dead_ms - kill_at : 0);
	assert_only_refusals(t);
	assert_true(t.fail >= 3);
	/*
	 * 3 in a row eject it, but the swap is made in user space: connects
	 * that start within the daemon's reaction time are still refused. How
	 * many depends on that time (a few ms idle, ~90 ms on a loaded 2-CPU
	 * machine, against ~50 us per refused connect), so the count is printed,
	 * not bounded; that the refusals stop is what the 500 connects below show.
	 */
	assert_int_equal(t.ok[P1], 0);
	/* One of two primaries: 50% x 1.4 keeps 70% on P2, the rest spills to F1. */
	assert_int_equal(serving_mask(), 1u << P2 | 1u << F1);
	/*
	 * While ejected, no connect goes to P1. The connects stop at the end the
	 * daemon reports for this ejection (less a margin for the client's
	 * scheduling): on a slow machine (qemu's emulation, ~13 ms a connect)
	 * 500 connects outlast the ejection, and a P1 back from it, still dead,
	 * is rightly refused until it is ejected again. Its end is read before
	 * the first connect and counted from before the request, so it is never
	 * late. 6 s leave room for 100 connects there after the 1.5 s above.
	 */
	asked = kb_now_ms();
	left = ejection_left_ms(P1, &ejections);
	assert_int_equal(ejections, 1);
	assert_true(left > EJECT_MARGIN_MS);
	t = run_clients_until(500, asked + left - EJECT_MARGIN_MS, P1);
	print_message("# passive: %ld connects in the ejection's remaining %ld ms\n", total(&t), left);
	assert_no_failures(t);
	assert_int_equal(t.ok[P1], 0);
	/* Enough connects that a P1 still in the table (1 in 2 primaries) would have shown. */
	assert_true(total(&t) >= 100);
	/* And P1 was not back and ejected again meanwhile. */
	ejection_left_ms(P1, &ejections);
	assert_int_equal(ejections, 1);

	/* Back after baseEjectionTime (6 s): traffic returns, and no connect fails on the way. */
	ep_start(P1);
	print_message("# passive: P1 programmed again %ld ms after its restart\n",
		      wait_serving(1u << P1 | 1u << P2, WAIT_MS));
	t = run_clients(400, 0, -1);
	assert_no_failures(t);
	assert_true(t.ok[P1] > 100);
}

/* Active: ejected within interval x unhealthyThreshold + 1 s, and back once a probe passes. */
static void test_active_eject_and_return(void **state)
{
	struct tally t;
	long kill_at, failover;

	NEED_ENV();
	config_primary_fallback(ACTIVE_FAST);
	assert_true(settle(5000));
	kill_at = kb_now_ms();
	ep_kill(P1);
	t = run_clients(0, ACTIVE_INTERVAL_MS * ACTIVE_UNHEALTHY + 1500, P1);
	failover = t.last_dead_ms ? t.last_dead_ms - kill_at : 0;
	print_message("# active: %ld refused connects; failover %ld ms (bound %d ms)\n", t.fail, failover,
		      ACTIVE_INTERVAL_MS * ACTIVE_UNHEALTHY + 1000);
	assert_only_refusals(t);
	assert_true(failover <= ACTIVE_INTERVAL_MS * ACTIVE_UNHEALTHY + 1000);
	wait_serving(1u << P2 | 1u << F1, WAIT_MS);	/* 70% on P2, 30% spilled to F1 */
	t = run_clients(500, 0, P1);
	assert_no_failures(t);
	assert_int_equal(t.ok[P1], 0);

	ep_start(P1);
	wait_serving(1u << P1 | 1u << P2, WAIT_MS);
	t = run_clients(400, 0, -1);
	assert_no_failures(t);
	assert_true(t.ok[P1] > 100);
}

/* HTTP checks: a 503 from the path fails the probe although TCP connects still work. */
static void test_active_http_status(void **state)
{
	struct tally t;

	NEED_ENV();
	config_primary_fallback("  healthCheck:\n    active:\n      type: HTTP\n      timeout: 300ms\n"
				"      interval: 500ms\n      unhealthyThreshold: 2\n      healthyThreshold: 1\n"
				"      http:\n        path: /healthz\n        expectedStatuses: [200, 204]\n");
	assert_true(settle(5000));
	E.sh->status[P1] = 503;	/* new server answers use it at once */
	wait_serving(1u << P2 | 1u << F1, WAIT_MS);	/* 70% on P2, 30% spilled to F1 */
	t = run_clients(400, 0, -1);
	assert_no_failures(t);	/* a 503 to the probe is no failed connect */
	assert_int_equal(t.ok[P1], 0);
	E.sh->status[P1] = 204;
	wait_serving(1u << P1 | 1u << P2, WAIT_MS);
	t = run_clients(400, 0, -1);
	assert_no_failures(t);
	assert_true(t.ok[P1] > 50);
}

/* All primaries dead: 100% to the fallback; primaries back: 100% to them again. */
static void check_all_dead_then_back(void)
{
	struct tally t;

	t = run_clients(300, 0, -1);
	assert_no_failures(t);
	assert_true(t.ok[P1] + t.ok[P2] == 300);
	ep_kill(P1);
	ep_kill(P2);
	wait_serving(1u << F1, WAIT_MS);
	t = run_clients(500, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[F1], 500);
	ep_start(P1);
	ep_start(P2);
	wait_serving(1u << P1 | 1u << P2, WAIT_MS);
	t = run_clients(500, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[P1] + t.ok[P2], 500);
}

static void test_all_primaries_dead_fallback_true(void **state)
{
	NEED_ENV();
	config_primary_fallback(ACTIVE_FAST);
	assert_true(settle(5000));
	check_all_dead_then_back();
}

/* The seed's `fallback.backendRef` on the primary Backend behaves like `fallback: true` on the fallback. */
static void test_seed_fallback_ref(void **state)
{
	size_t n = y_head();

	NEED_ENV();
	n = y_backend(n, "prim", 1u << P1 | 1u << P2, PORT, "fb");
	n = y_backend(n, "fb", 1u << F1, PORT, NULL);
	n = y_route(n, "TCPRoute", "app", "tcp", "prim");
	y_policy(n, "TCPRoute", "app", ACTIVE_FAST);
	apply_yaml(Y);
	assert_true(settle(5000));
	check_all_dead_then_back();
}

/* prim -> f1 -> f2: each level takes over when the one above is all dead, and gives back in order. */
static void test_three_level_chain(void **state)
{
	size_t n = y_head();
	struct tally t;

	NEED_ENV();
	n = y_backend(n, "prim", 1u << P1, PORT, "f1");
	n = y_backend(n, "f1", 1u << F1, PORT, "f2");
	n = y_backend(n, "f2", 1u << F2, PORT, NULL);
	n = y_route(n, "TCPRoute", "app", "tcp", "prim");
	y_policy(n, "TCPRoute", "app", ACTIVE_FAST);
	apply_yaml(Y);
	assert_true(settle(5000));
	t = run_clients(200, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[P1], 200);
	ep_kill(P1);
	wait_serving(1u << F1, WAIT_MS);
	t = run_clients(200, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[F1], 200);
	ep_kill(F1);
	wait_serving(1u << F2, WAIT_MS);
	t = run_clients(200, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[F2], 200);
	ep_start(F1);
	wait_serving(1u << F1, WAIT_MS);
	t = run_clients(200, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[F1], 200);
	ep_start(P1);
	wait_serving(1u << P1, WAIT_MS);
	t = run_clients(200, 0, -1);
	assert_no_failures(t);
	assert_int_equal(t.ok[P1], 200);
}

static void config_four_primaries(const char *policy)
{
	size_t n = y_head();

	n = y_backend(n, "prim", 1u << P1 | 1u << P2 | 1u << P3 | 1u << P4, PORT, NULL);
	n = y_backend(n, "fb", 1u << F1, PORT, "true");
	n = y_route(n, "TCPRoute", "app", "tcp", "prim,fb");
	y_policy(n, "TCPRoute", "app", policy);
	apply_yaml(Y);
}

/* Spill with the 1.4 overprovisioning factor: 3 of 4 healthy keeps everything; 2 of 4 sends 30% on. */
static void test_spill(void **state)
{
	struct tally t;
	double fb;

	NEED_ENV();
	config_four_primaries(ACTIVE_FAST);
	assert_true(settle(5000));
	ep_kill(P1);
	wait_serving(1u << P2 | 1u << P3 | 1u << P4, WAIT_MS);
	t = run_clients(5000, 0, -1);
	assert_no_failures(t);
	fb = 100.0 * (double)t.ok[F1] / (double)total(&t);
	print_message("# spill, 1 of 4 unhealthy: fallback %.2f%% (expect 0 +-3)\n", fb);
	assert_true(fb <= 3.0);
	ep_kill(P2);
	wait_serving(1u << P3 | 1u << P4 | 1u << F1, WAIT_MS);
	t = run_clients(5000, 0, -1);
	assert_no_failures(t);
	fb = 100.0 * (double)t.ok[F1] / (double)total(&t);
	print_message("# spill, 2 of 4 unhealthy: fallback %.2f%% (expect 30 +-3)\n", fb);
	assert_true(fb >= 27.0 && fb <= 33.0);
}

/* Below the panic threshold a level uses all its hosts, healthy or not (no fallback to spill to). */
static void test_panic(void **state)
{
	size_t n = y_head();
	struct json_object *owner, *fe, *lv, *eps;
	struct tally t;

	NEED_ENV();
	n = y_backend(n, "prim", 1u << P1 | 1u << P2 | 1u << P3 | 1u << P4, PORT, NULL);
	n = y_route(n, "TCPRoute", "app", "tcp", "prim");
	y_policy(n, "TCPRoute", "app", ACTIVE_FAST);
	apply_yaml(Y);
	assert_true(settle(5000));
	ep_kill(P1);
	ep_kill(P2);
	/* 2 of 4: 50% is not below 50%: the two healthy ones serve. */
	wait_serving(1u << P3 | 1u << P4, WAIT_MS);
	t = run_clients(400, 0, -1);
	assert_no_failures(t);
	ep_kill(P3);
	/* 1 of 4 is below: panic, every host of the level gets slots again. */
	wait_serving(1u << P1 | 1u << P2 | 1u << P3 | 1u << P4, WAIT_MS);
	fe = get_frontend(80, &owner);
	assert_non_null(fe);
	assert_true(json_object_object_get_ex(fe, "priorities", &lv));
	assert_true(json_object_get_boolean(json_object_object_get(json_object_array_get_idx(lv, 0), "panic")));
	assert_true(json_object_object_get_ex(fe, "endpoints", &eps));
	for (size_t i = 0; i < json_object_array_length(eps); i++)
		assert_true(kb_json_int(json_object_array_get_idx(eps, i), "slots") > 0);
	json_object_put(owner);
	/* Panic: every host gets its share, so about 3 in 4 connects are refused by the dead ones. */
	t = run_clients(1000, 0, -1);
	print_message("# panic: %ld of 1000 refused, %ld to the one healthy endpoint\n", t.fail, t.ok[P4]);
	assert_only_refusals(t);
	assert_true(t.fail > 600 && t.fail < 900);
	assert_true(t.ok[P4] > 100);
}

/* LeastRequest: P1 holds 60 long-lived connections, so new ones go mostly to P2 (two choices: ~75%). */
static void test_least_request(void **state)
{
	size_t n = y_head();
	int *held = NULL;
	struct tally t;
	pid_t pid;
	int p[2], q[2], st;
	char c;

	NEED_ENV();
	n = y_backend(n, "prim", 1u << P1 | 1u << P2, PORT, NULL);
	n = y_route(n, "TCPRoute", "app", "tcp", "prim");
	y_policy(n, "TCPRoute", "app", "  loadBalancer:\n    type: LeastRequest\n");
	apply_yaml(Y);
	assert_true(settle(5000));
	t = run_clients(1000, 0, -1);
	print_message("# LeastRequest, idle: P1 %ld, P2 %ld\n", t.ok[P1], t.ok[P2]);
	assert_no_failures(t);
	assert_true(t.ok[P1] > 350 && t.ok[P2] > 350);

	/*
	 * A holder in the cgroup opens 60 connections straight to P1, says so,
	 * and keeps them until told. sockops counts each one before its
	 * connect() returns, so once it has said so the count is in place.
	 */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		close(p[1]);
		close(q[0]);
		if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
			_exit(99);
		held = calloc(60, sizeof(*held));
		for (int i = 0; i < 60; i++) {
			struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(PORT) };

			inet_pton(AF_INET, EP[P1], &sa.sin_addr);
			held[i] = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(held[i], (struct sockaddr *)&sa, sizeof(sa)))
				_exit(98);
		}
		if (write(q[1], "R", 1) != 1 || read(p[0], &c, 1) < 0)
			_exit(97);
		_exit(0);
	}
	close(p[0]);
	close(q[1]);
	if (read(q[0], &c, 1) != 1) {
		close(p[1]);
		close(q[0]);
		waitpid(pid, &st, 0);
		fail_msg("the holder did not open its 60 connections (exit %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	close(q[0]);
	t = run_clients(1000, 0, -1);
	print_message("# LeastRequest, P1 holding 60: P1 %ld, P2 %ld\n", t.ok[P1], t.ok[P2]);
	close(p[1]);
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_no_failures(t);
	assert_true(t.ok[P2] > 650);
}

/* ---- kernel features: what the daemon's probe says, against the running kernel ---- */

/* The running kernel's release is at least "since" (MAJOR.MINOR), read from uname: the oracle for the probe. */
static bool kernel_at_least(const char *since)
{
	struct utsname u;
	int maj = 0, min = 0, smaj = 0, smin = 0;

	assert_int_equal(uname(&u), 0);
	assert_int_equal(sscanf(u.release, "%d.%d", &maj, &min), 2);
	assert_int_equal(sscanf(since, "%d.%d", &smaj, &smin), 2);
	return maj > smaj || (maj == smaj && min >= smin);
}

/* status's features.<name>.present, asked over the control socket; fails the test when the daemon does not say. */
static bool feature_present(const char *name)
{
	struct json_object *r = e2e_ctl(E.env.sock, "status", 5000), *f = e2e_jget(e2e_jget(r, "features"), name);
	bool present;

	if (!f || !json_object_object_get_ex(f, "present", NULL))
		fail_msg("status has no features.%s: %s", name, r ? json_object_to_json_string(r) : strerror(errno));
	present = json_object_get_boolean(e2e_jget(f, "present"));
	json_object_put(r);
	return present;
}

/*
 * `kbackend status -o json` lists every feature with present/absent, each as
 * the kernel has it (a mainline kernel has a feature from its "since" on: on
 * Debian 12's 6.1 bpf_sock_destroy is absent, on 6.5+ present), and the
 * daemon serves steered connects all the same.
 */
static void test_status_features(void **state)
{
	const char *const args[] = { "status", NULL };
	struct json_object *st, *feats;
	char excerpt[512] = "";
	size_t n = 0;
	int rc = -1, count = 0;

	NEED_ENV();
	config_primary_fallback(NULL);
	st = e2e_cli_json(E.env.kb, E.env.sock, E.env.log, &rc, args);
	assert_int_equal(rc, 0);
	assert_true(e2e_reply_ok(st));
	feats = e2e_jget(st, "features");
	assert_non_null(feats);
	assert_true(strlen(e2e_jstr(st, "kernel")) > 0);
	json_object_object_foreach(feats, name, f) {
		bool present = json_object_get_boolean(e2e_jget(f, "present"));
		bool want = kernel_at_least(e2e_jstr(f, "since"));

		count++;
		assert_true(json_object_is_type(e2e_jget(f, "present"), json_type_boolean));
		if (present != want)
			fail_msg("kernel %s: feature %s (since %s) probed %s", e2e_jstr(st, "kernel"), name,
				 e2e_jstr(f, "since"), present ? "present" : "absent");
		/* The daemon runs, so every required feature is there. */
		assert_true(present || !json_object_get_boolean(e2e_jget(f, "required")));
		if (!strcmp(name, "bpf_sock_destroy") || !strcmp(name, "bpf_set_retval") || !present)
			n += (size_t)snprintf(excerpt + n, sizeof(excerpt) - n, "%s\"%s\": %s", n ? ", " : "", name,
					      json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN));
	}
	print_message("# status -o json on %s: \"ok\": %s, features (%d): %s\n", e2e_jstr(st, "kernel"),
		      e2e_reply_ok(st) ? "true" : "false", count, excerpt);
	assert_true(count >= 15);
	/* bpf_sock_destroy by name, against mainline's 6.5 rather than the daemon's "since": absent on Debian 12's 6.1. */
	assert_int_equal(json_object_get_boolean(e2e_jget(e2e_jget(feats, "bpf_sock_destroy"), "present")),
			 kernel_at_least("6.5"));
	assert_true(json_object_is_type(e2e_jget(e2e_jget(feats, "bpf_sock_destroy"), "present"), json_type_boolean));
	json_object_put(st);
	/* Still serving: steered connects reach the endpoints, whatever the kernel lacks. */
	{
		struct tally t = run_clients(50, 0, -1);

		assert_no_failures(t);
		assert_int_equal(total(&t), 50);
	}
}

/* Send a query on fd; the answer (an endpoint's address) in buf, "" when none came within the socket's timeout. */
static void udp_ask(int fd, char *buf, size_t len)
{
	ssize_t r;

	buf[0] = '\0';
	if (send(fd, "q", 1, 0) != 1)
		return;
	r = recv(fd, buf, len - 1, 0);
	buf[r > 0 ? r : 0] = '\0';
}

/* A new connected UDP socket to FE:53: who answers it (in buf). */
static void udp_new_socket_ask(char *buf, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53) };
	struct timeval tv = { 1, 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, FE, &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	buf[0] = '\0';
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		udp_ask(fd, buf, len);
	close(fd);
}

/*
 * A connected UDP socket steered to an endpoint that then fails its checks.
 * With bpf_sock_destroy (6.5+) the socket is destroyed: its next send errors.
 * Without it (Debian 12's 6.1) the documented degradation: the daemon keeps
 * serving, new sockets go to the fallback, and the old socket keeps its peer
 * (its sends still reach P1, getpeername still shows the frontend).
 */
static void test_udp_socket_destroyed(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53) }, peer;
	socklen_t pl = sizeof(peer);
	struct timeval tv = { 1, 0 };
	char first[64], old[64] = "", fresh[64] = "", pname[INET_ADDRSTRLEN] = "";
	size_t n = y_head();
	bool destroy;
	int fd, err = 0, self;
	long end;

	NEED_ENV();
	destroy = feature_present("bpf_sock_destroy");
	E.utcp[0] = spawn_ready(udp_check_target, P1);
	E.utcp[1] = spawn_ready(udp_check_target, F1);
	assert_true(E.utcp[0] > 0 && E.utcp[1] > 0);
	n = y_backend(n, "uprim", 1u << P1, UPORT, NULL);
	n = y_backend(n, "ufb", 1u << F1, UPORT, "true");
	n = y_route(n, "UDPRoute", "dns", "udp", "uprim,ufb");
	y_policy(n, "UDPRoute", "dns", ACTIVE_FAST);
	apply_yaml(Y);
	wait_serving_on(53, 1u << P1, WAIT_MS);
	print_message("# bpf_sock_destroy %s: expecting %s\n", destroy ? "present" : "absent",
		      destroy ? "the socket destroyed" : "the socket kept, new sockets on the fallback");

	/* The client is this test process itself, in the cgroup and the node netns, for the duration. */
	assert_int_equal(e2e_cgroup_enter(E.env.cgroup, 0), 0);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_int_equal(e2e_setns(E.node), 0);
	inet_pton(AF_INET, FE, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		err = -errno;
	udp_ask(fd, first, sizeof(first));

	e2e_kill(&E.utcp[0]);	/* the check target goes: P1 fails its checks */
	if (destroy) {
		for (end = kb_now_ms() + ACTIVE_INTERVAL_MS * ACTIVE_UNHEALTHY + 3000; kb_now_ms() < end;
		     e2e_sleep_ms(100)) {
			if (send(fd, "q", 1, 0) < 0) {
				err = errno;
				break;
			}
			recv(fd, old, sizeof(old) - 1, MSG_DONTWAIT);
		}
		print_message("# UDP: send after ejection failed with %s\n", err ? strerror(err) : "nothing");
	} else {
		/* The ejection is programmed (the condition, bounded); nothing will destroy the socket. */
		wait_serving_on(53, 1u << F1, WAIT_MS);
		udp_ask(fd, old, sizeof(old));
		if (!getpeername(fd, (struct sockaddr *)&peer, &pl))
			inet_ntop(AF_INET, &peer.sin_addr, pname, sizeof(pname));
		print_message("# UDP without bpf_sock_destroy: the old socket's answer after ejection: %s, its peer %s\n",
			      old[0] ? old : "(none)", pname);
	}
	close(fd);
	udp_new_socket_ask(fresh, sizeof(fresh));	/* a new socket goes to the fallback */
	setns(self, CLONE_NEWNET);
	close(self);
	e2e_cgroup_enter(E.env.cgroot, 0);
	e2e_kill(&E.utcp[1]);

	assert_string_equal(first, EP[P1]);
	if (destroy) {
		assert_true(err > 0);
	} else {
		assert_int_equal(err, 0);
		assert_string_equal(old, EP[P1]);	/* the socket keeps its peer */
		assert_string_equal(pname, FE);		/* and its sock_peers record */
		assert_true(e2e_daemon_serves(E.env.sock, 5000));
		assert_false(feature_present("bpf_sock_destroy"));
	}
	assert_string_equal(fresh, EP[F1]);
}

/* `get endpoints` reports ejection and the sockops counters per endpoint. */
static void test_get_endpoints_health(void **state)
{
	struct json_object *owner, *fe, *eps, *h, *oc;
	bool seen = false;

	NEED_ENV();
	config_primary_fallback("  healthCheck:\n    passive:\n      consecutive5XxErrors: 2\n"
				"      baseEjectionTime: 30s\n      maxEjectionPercent: 100\n");
	assert_true(settle(5000));
	ep_kill(P1);
	{
		struct tally t = run_clients(100, 0, -1);

		assert_only_refusals(t);
	}
	fe = get_frontend(80, &owner);
	assert_non_null(fe);
	assert_true(json_object_object_get_ex(fe, "endpoints", &eps));
	for (size_t i = 0; i < json_object_array_length(eps); i++) {
		struct json_object *ep = json_object_array_get_idx(eps, i);

		if (strcmp(kb_json_str(ep, "address"), EP[P1]))
			continue;
		seen = true;
		assert_true(json_object_object_get_ex(ep, "health", &h));
		assert_string_equal(kb_json_str(h, "state"), "ejected");
		assert_true(strlen(kb_json_str(h, "ejectedUntil")) == 20);
		assert_true(json_object_object_get_ex(h, "outcomes", &oc));
		assert_true(kb_json_int(oc, "refused") >= 2);
		assert_true(kb_json_int(oc, "established") > 0);
		assert_false(json_object_get_boolean(json_object_object_get(ep, "healthy")));
	}
	json_object_put(owner);
	assert_true(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_passive_eject_and_return, test_setup),
		cmocka_unit_test_setup(test_active_eject_and_return, test_setup),
		cmocka_unit_test_setup(test_active_http_status, test_setup),
		cmocka_unit_test_setup(test_all_primaries_dead_fallback_true, test_setup),
		cmocka_unit_test_setup(test_seed_fallback_ref, test_setup),
		cmocka_unit_test_setup(test_three_level_chain, test_setup),
		cmocka_unit_test_setup(test_spill, test_setup),
		cmocka_unit_test_setup(test_panic, test_setup),
		cmocka_unit_test_setup(test_least_request, test_setup),
		cmocka_unit_test_setup(test_status_features, test_setup),
		cmocka_unit_test_setup(test_udp_socket_destroyed, test_setup),
		cmocka_unit_test_setup(test_get_endpoints_health, test_setup),
	};

	e2e_main_init("test_health", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
