// SPDX-License-Identifier: Apache-2.0
/* e2e: operations. --watch-dir (edit, add, remove, a bad file, a ConfigMap symlink swap), the /metrics scrape, and a no-loss upgrade. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8): the daemon and the clients live in the node
 * netns, which has no default route; three endpoints live behind a veth.
 *
 *   kbt-onode-<pid>  198.51.100.254/24 203.0.113.254/24  ==veth==  kbt-obe-<pid>
 *                               e1 198.51.100.1, e2 203.0.113.2, e3 198.51.100.3 (TCP 8080)
 *                               e4 198.51.100.1:8081 (nothing listens: every connect is refused)
 *
 * The daemon runs with --watch-dir <tmp>/watch and --metrics-addr
 * 127.0.0.1:9464, which is the node netns' own loopback: the test scrapes it
 * from a child that enters that netns (the root netns talks to nothing).
 * Frontends: 198.18.0.10:80 (Gateway eg, route "app"), and 198.18.0.11:81
 * (Gateway eg2 and route "app2", both in the file 40-app2.yaml).
 */
#define FE_ADDR "198.18.0.10"
#define FE_PORT 80
#define FE2_ADDR "198.18.0.11"	/* Gateway eg2, which lives in 40-app2.yaml with its route */
#define FE_PORT2 81
#define EP_PORT 8080
#define DEAD_PORT 8081
#define NEPS 3
#define E4 3			/* index of e4, the endpoint that refuses */
#define MAX_KIDS 8
#define METRICS_PORT 9464
#define DNS_PORT 5353		/* dnsmasq on the node netns' loopback */
#define DNS_OK "ok.kbt.test"	/* answers 198.51.100.3 */
#define DNS_NX "nx.kbt.test"	/* NXDOMAIN */
#define WAIT_MS 10000

static const char *const EPS[NEPS] = { "198.51.100.1", "203.0.113.2", "198.51.100.3" };

struct env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char watch[PATH_MAX];
	char node[64], be[64];
	bool netns_made;
	pid_t server;
	pid_t dnsd;		/* dnsmasq, 0 when /usr/sbin/dnsmasq is missing */
	pid_t daemon, daemon2;
	pid_t kids[MAX_KIDS];
	struct e2e_tally *t;
	int stats_fd;		/* bpf_enable_stats while the metrics test runs */
};

static struct env E = { .stats_fd = -1 };

/* ---- small helpers ---- */

static const char *fe_addr(int port)
{
	return port == FE_PORT2 ? FE2_ADDR : FE_ADDR;
}

static void dump_log(void)
{
	e2e_dump_file("log", E.env.log, 0);
}

/* ---- manifests ---- */

static const char YAML_EG[] =
	"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
	"kind: EnvoyGateway\n"
	"metadata:\n"
	"  name: envoy-gateway\n"
	"  namespace: envoy-gateway-system\n"
	"extensionApis:\n"
	"  enableBackend: true\n";

static const char YAML_GW[] =
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: Gateway\n"
	"metadata:\n"
	"  name: eg\n"
	"  namespace: default\n"
	"spec:\n"
	"  gatewayClassName: eg\n"
	"  addresses:\n"
	"    - type: IPAddress\n"
	"      value: " FE_ADDR "\n"
	"  listeners:\n"
	"    - name: tcp\n"
	"      protocol: TCP\n"
	"      port: 80\n";

static char YAML_BACKENDS[4096];

static void make_backends(void)
{
	size_t n = 0;

	for (int i = 0; i <= NEPS; i++)
		n += (size_t)snprintf(YAML_BACKENDS + n, sizeof(YAML_BACKENDS) - n,
				      "%s"
				      "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				      "kind: Backend\n"
				      "metadata:\n"
				      "  name: e%d\n"
				      "  namespace: default\n"
				      "spec:\n"
				      "  endpoints:\n"
				      "    - ip:\n"
				      "        address: %s\n"
				      "        port: %d\n",
				      i ? "---\n" : "", i + 1, i == E4 ? EPS[0] : EPS[i], i == E4 ? DEAD_PORT : EP_PORT);
}

/* A TCPRoute on listener `section` to e<i+1> for every bit i of mask (weight 1 each). */
static const char *yaml_route(const char *name, const char *section, unsigned mask)
{
	static char buf[8][3072];
	static int next;
	char *b = buf[next++ % 8];
	bool two = !strcmp(section, "tcp2");
	size_t n = 0;

	/* The second frontend: its own Gateway, in the same file as its route. */
	if (two)
		n = (size_t)snprintf(b, sizeof(buf[0]),
				     "apiVersion: gateway.networking.k8s.io/v1\n"
				     "kind: Gateway\n"
				     "metadata:\n"
				     "  name: eg2\n"
				     "  namespace: default\n"
				     "spec:\n"
				     "  gatewayClassName: eg\n"
				     "  addresses:\n"
				     "    - type: IPAddress\n"
				     "      value: " FE2_ADDR "\n"
				     "  listeners:\n"
				     "    - name: tcp2\n"
				     "      protocol: TCP\n"
				     "      port: 81\n"
				     "---\n");
	n += (size_t)snprintf(b + n, sizeof(buf[0]) - n,
				    "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				    "kind: TCPRoute\n"
				    "metadata:\n"
				    "  name: %s\n"
				    "  namespace: default\n"
				    "spec:\n"
				    "  parentRefs:\n"
				    "    - name: %s\n"
				    "      sectionName: %s\n"
				    "  rules:\n"
				    "    - backendRefs:\n",
				    name, two ? "eg2" : "eg", section);

	for (int i = 0; i <= NEPS; i++)
		if (mask & (1u << i))
			n += (size_t)snprintf(b + n, sizeof(buf[0]) - n,
					      "        - group: gateway.envoyproxy.io\n"
					      "          kind: Backend\n"
					      "          name: e%d\n"
					      "          weight: 1\n",
					      i + 1);
	return b;
}

#define M_E1 1u
#define M_E2 2u
#define M_E3 4u
#define M_E4 8u

/* ---- the watch directory ---- */

static void wpath(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", E.watch, name);
}

/* Replace DIR/name atomically (a temp dot-file renamed over it), as `kubectl cp` or an editor with backups would. */
static void watch_put(const char *name, const char *content)
{
	char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];

	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s", E.watch, name);
	wpath(dst, sizeof(dst), name);
	assert_int_equal(e2e_write_file(tmp, content), 0);
	assert_int_equal(rename(tmp, dst), 0);
}

static void watch_del(const char *name)
{
	char p[PATH_MAX + 64];

	wpath(p, sizeof(p), name);
	assert_int_equal(unlink(p), 0);
}

/* ---- the topology ---- */

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kon%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kob%d", (int)getpid());
	E.netns_made = true;
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be))
		return -1;
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 203.0.113.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.1/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 198.51.100.3/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 203.0.113.2/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb))
		return -1;
	/* No default route in the node netns: mistakes stay on this machine. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node))
		return -1;
	return 0;
}

/* ---- the daemon ---- */

static struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

/* The pid that answers `status` on the socket, or 0. */
static long serving_pid(void)
{
	struct json_object *r = ctl("status", 3000);
	long pid = e2e_reply_ok(r) ? e2e_jint(r, "pid") : 0;

	json_object_put(r);
	return pid;
}

/* Start `kbackend daemon` in the node netns; returns once it answers `status` itself. */
static pid_t daemon_spawn(void)
{
	char maddr[64], dns[64];
	const char *const argv[] = { "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				     "--state-dir", E.env.state, "--socket", E.env.sock, "--watch-dir", E.watch,
				     "--metrics-addr", maddr, "--dns-server", dns, NULL };
	long deadline;
	pid_t pid;

	snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", METRICS_PORT);
	snprintf(dns, sizeof(dns), "127.0.0.1:%d", DNS_PORT);
	pid = e2e_daemon_spawn(E.env.kb, E.env.log, E.node, argv);
	if (pid < 0)
		return -1;
	for (deadline = kb_now_ms() + 20000; kb_now_ms() < deadline; e2e_sleep_ms(20)) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		if (serving_pid() == pid)
			return pid;
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static void daemon_ensure(void)
{
	if (E.daemon > 0 && waitpid(E.daemon, NULL, WNOHANG) == 0 && serving_pid() == E.daemon)
		return;
	e2e_kill(&E.daemon);
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		dump_log();
		fail_msg("the daemon did not start");
	}
}

/* The watch object of `status` (a new reference to the whole reply in *st). */
static struct json_object *watch_status(struct json_object **st)
{
	*st = ctl("status", 5000);
	if (!e2e_reply_ok(*st))
		fail_msg("status failed: %s", *st ? json_object_to_json_string(*st) : strerror(errno));
	return e2e_jget(*st, "watch");
}

static long watch_count(const char *key)
{
	struct json_object *st, *w = watch_status(&st);
	long v = e2e_jint(w, key);

	json_object_put(st);
	return v;
}

/* Wait until status.watch[key] passes `above`; fails the test on timeout. */
static void wait_watch(const char *key, long above)
{
	long deadline = kb_now_ms() + WAIT_MS;

	while (watch_count(key) <= above) {
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("watch-dir: %s did not pass %ld within %d ms", key, above, WAIT_MS);
		}
		e2e_sleep_ms(20);
	}
}

/* Wait until the daemon stores `objects` objects and programs `frontends` frontends. */
static void wait_state(long objects, long frontends)
{
	long deadline = kb_now_ms() + WAIT_MS;

	for (;;) {
		struct json_object *st = ctl("status", 5000);
		bool done = e2e_reply_ok(st) && e2e_jint(st, "objects") == objects && e2e_jint(st, "frontends") == frontends;

		if (done) {
			json_object_put(st);
			return;
		}
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("expected %ld objects and %ld frontends; status: %s", objects, frontends,
				 st ? json_object_to_json_string(st) : strerror(errno));
		}
		json_object_put(st);
		e2e_sleep_ms(20);
	}
}

/* ---- clients: in the test cgroup and the node netns ---- */

static void client_loop(struct e2e_tally *t, int port)
{
	if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
		_exit(99);
	e2e_tally_run(t, fe_addr(port), (uint16_t)port, false, EPS, NEPS);
}

static void client_spawn(int idx, int port, long limit)
{
	pid_t pid;

	assert_true(idx < MAX_KIDS && E.kids[idx] <= 0);
	memset(&E.t[idx], 0, sizeof(E.t[idx]));
	E.t[idx].limit = limit;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		client_loop(&E.t[idx], port);
	}
	E.kids[idx] = pid;
}

static int client_wait(int idx, bool stop, long deadline)
{
	int status = e2e_kid_wait(&E.kids[idx], stop ? &E.t[idx].stop : NULL, deadline);

	return !WIFEXITED(status) || WEXITSTATUS(status);
}

static void clients_kill(void)
{
	e2e_kids_kill(E.kids, MAX_KIDS);
}

static struct e2e_sum tallies_sum(int first, int n)
{
	return e2e_tallies_sum(&E.t[first], n);
}

/* `count` connects to FE_ADDR:port by one fresh client. */
static struct e2e_sum connect_n(int port, long count)
{
	client_spawn(MAX_KIDS - 1, port, count);
	assert_int_equal(client_wait(MAX_KIDS - 1, false, kb_now_ms() + 60000), 0);
	return tallies_sum(MAX_KIDS - 1, 1);
}

/* Every one of 30 connects to port lands on endpoint ep. */
static void assert_only(int port, int ep)
{
	struct e2e_sum s = connect_n(port, 30);

	e2e_assert_no_failure(s);
	if (s.ok[ep] != 30)
		fail_msg(":%d: expected 30 connects to %s, got e1 %ld, e2 %ld, e3 %ld", port, EPS[ep], s.ok[0], s.ok[1],
			 s.ok[2]);
}

/* ---- the kernel's view ---- */

static bool frontend_pinned(int port)
{
	struct kb_frontend_key key = { 0 };
	struct kb_frontend val;
	char path[PATH_MAX + 16];
	bool found;
	int fd;

	snprintf(path, sizeof(path), "%s/frontends", E.env.bpffs);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	inet_pton(AF_INET, fe_addr(port), key.ip);
	key.port = htons((uint16_t)port);
	key.family = AF_INET;
	key.proto = KB_PROTO_TCP;
	found = bpf_map_lookup_elem(fd, &key, &val) == 0;
	close(fd);
	return found;
}

static __u32 pinned_link_info(const char *name, __u32 *prog_id)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "%s/links/%s", E.env.bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		info.id = 0;
	close(fd);
	if (prog_id)
		*prog_id = info.prog_id;
	return info.id;
}

static __u32 cgroup_progs(enum bpf_attach_type type)
{
	__u32 ids[64], cnt = 64, flags = 0;
	int fd = open(E.env.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	if (bpf_prog_query(fd, type, 0, &flags, ids, &cnt))
		fail_msg("bpf_prog_query on %s: %s", E.env.cgroup, strerror(errno));
	close(fd);
	return cnt;
}

/* ---- scraping /metrics: a plain HTTP/1.1 GET from a child in the node netns ---- */

struct scrape {
	char *raw;		/* status line, headers and body */
	const char *body;	/* starts with '\n' (the blank line's end), so every line follows a '\n' */
	int status;
};

static struct scrape scrape(const char *path)
{
	struct scrape s = { 0 };
	size_t cap = 65536, n = 0;
	int p[2], st;
	pid_t pid;
	ssize_t r;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(METRICS_PORT) };
		struct timeval tv = { 5, 0 };
		char req[256], buf[8192];
		int fd, len;

		e2e_child_init();
		close(p[0]);
		if (e2e_setns(E.node))
			_exit(1);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(2);
		len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
			       path, METRICS_PORT);
		if (write(fd, req, (size_t)len) != len)
			_exit(3);
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			if (write(p[1], buf, (size_t)r) != r)
				_exit(4);
		_exit(r < 0 ? 5 : 0);
	}
	close(p[1]);
	s.raw = malloc(cap);
	assert_non_null(s.raw);
	while ((r = read(p[0], s.raw + n, cap - n - 1)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
		if (n + 1 >= cap) {
			cap *= 2;
			s.raw = realloc(s.raw, cap);
			assert_non_null(s.raw);
		}
	}
	s.raw[n] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("scrape %s: the client failed (exit %d)", path, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	if (sscanf(s.raw, "HTTP/1.1 %d", &s.status) != 1)
		fail_msg("scrape %s: not an HTTP reply: %.200s", path, s.raw);
	s.body = strstr(s.raw, "\r\n\r\n");
	assert_non_null(s.body);
	s.body += 3;
	return s;
}

/* The value of one series (name{labels} exactly as rendered), or -1 when absent. */
static double metric(const struct scrape *s, const char *series)
{
	char key[1024];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", series);
	p = strstr(s->body, key);
	return p ? strtod(p + strlen(key), NULL) : -1;
}

static double fe_metric(const struct scrape *s, const char *name, int port)
{
	char series[512];

	snprintf(series, sizeof(series), "%s{frontend=\"%s:%d\",protocol=\"tcp\"}", name, fe_addr(port), port);
	return metric(s, series);
}

static double ep_metric(const struct scrape *s, const char *name, int port, int ep, const char *addr, int ep_port)
{
	char series[512];

	snprintf(series, sizeof(series),
		 "%s{frontend=\"%s:%d\",protocol=\"tcp\",backend=\"default/e%d\",endpoint=\"%s:%d\"}", name,
		 fe_addr(port), port, ep + 1, addr, ep_port);
	return metric(s, series);
}

/* A per-address series (health's view, over all frontends); reason NULL for none. */
static double addr_metric(const struct scrape *s, const char *name, const char *addr, int port, const char *reason)
{
	char series[512];

	snprintf(series, sizeof(series), "%s{endpoint=\"%s:%d\",protocol=\"tcp\"%s%s%s}", name, addr, port,
		 reason ? ",reason=\"" : "", reason ? reason : "", reason ? "\"" : "");
	return metric(s, series);
}

/*
 * The text format's rules that Prometheus enforces: each sample follows its
 * family's TYPE line, all samples of a family are together, no series twice.
 */
static void check_exposition(const struct scrape *s)
{
	char family[256] = "", *copy = strdup(s->body + 1), *line, *save = NULL;
	char **seen = NULL;
	size_t nseen = 0;

	assert_non_null(copy);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[256];
		const char *sp;

		if (!strncmp(line, "# TYPE ", 7)) {
			if (sscanf(line + 7, "%255s", family) != 1)
				fail_msg("bad TYPE line: %s", line);
			for (size_t i = 0; i < nseen; i++)
				if (!strcmp(seen[i], family))
					fail_msg("family %s appears twice", family);
			seen = realloc(seen, (nseen + 1) * sizeof(*seen));
			seen[nseen++] = strdup(family);
			continue;
		}
		if (line[0] == '#')
			continue;
		sp = strrchr(line, ' ');
		if (!sp || sscanf(line, "%255[a-zA-Z0-9_:]", name) != 1)
			fail_msg("bad sample line: %s", line);
		if (strcmp(name, family))
			fail_msg("sample %s outside its family (in %s)", line, family);
		if (strncmp(name, "kbackend_", 9))
			fail_msg("metric without the kbackend_ prefix: %s", name);
		/* The same series twice would make Prometheus refuse the whole scrape. */
		{
			const char *again;
			size_t l = (size_t)(sp - line);
			char key[1024];

			snprintf(key, sizeof(key), "\n%.*s ", (int)l, line);
			again = strstr(s->body, key);
			if (again && strstr(again + 1, key))
				fail_msg("series twice: %.*s", (int)l, line);
		}
	}
	for (size_t i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
	free(copy);
}

/* ---- setup and teardown ---- */

static int group_teardown(void **state);

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

/* The directory's first state: every Backend, both listeners, "app" on :80 to e1. */
static void watch_initial(void)
{
	char p[PATH_MAX + 64];

	wpath(p, sizeof(p), "00-envoy-gateway.yaml");
	e2e_write_file(p, YAML_EG);
	wpath(p, sizeof(p), "10-gateway.yaml");
	e2e_write_file(p, YAML_GW);
	wpath(p, sizeof(p), "20-backends.yaml");
	e2e_write_file(p, YAML_BACKENDS);
	wpath(p, sizeof(p), "30-app.yaml");
	e2e_write_file(p, yaml_route("app", "tcp", M_E1));
	/* Not a manifest: ignored, as are dot-entries. */
	wpath(p, sizeof(p), "README");
	e2e_write_file(p, "the manifests of this node\n");
}

/* dnsmasq in the node netns, on its loopback: one name answers, the rest of kbt.test is NXDOMAIN. */
static int dns_start(void)
{
	char port[32];
	long deadline;
	pid_t pid;

	if (access("/usr/sbin/dnsmasq", X_OK)) {
		fprintf(stderr, "# /usr/sbin/dnsmasq is missing (package dnsmasq-base; run `make deps`)\n");
		return -1;
	}
	snprintf(port, sizeof(port), "--port=%d", DNS_PORT);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		e2e_child_init();
		if (e2e_setns(E.node))
			_exit(126);
		execl("/usr/sbin/dnsmasq", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		      "--conf-file=/dev/null", "--bind-interfaces", "--listen-address=127.0.0.1", port, "--user=root",
		      "--pid-file=", "--address=/" DNS_OK "/198.51.100.3", "--local=/kbt.test/", (char *)NULL);
		_exit(127);
	}
	E.dnsd = pid;
	for (deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(20)) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			E.dnsd = 0;
			return -1;
		}
		if (!e2e_sh("nsenter --net=/run/netns/%s ss -Hlun 'src 127.0.0.1:%d' | grep -q .", E.node, DNS_PORT))
			return 0;
	}
	return -1;
}

static int group_setup(void **state)
{
	if (e2e_env_setup(&E.env, "ops"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	make_backends();
	E.t = mmap(NULL, sizeof(*E.t) * MAX_KIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.t == MAP_FAILED) {
		E.t = NULL;
		return setup_failed("mmap");
	}
	snprintf(E.watch, sizeof(E.watch), "%s/watch", E.env.tmp);
	snprintf(E.node, sizeof(E.node), "kbt-onode-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-obe-%d", (int)getpid());
	if (mkdir(E.watch, 0700))
		return setup_failed("mkdir watch");
	watch_initial();
	if (topo_up())
		return setup_failed("topology");
	E.server = e2e_ident_servers_start(E.be, EPS, NEPS, EP_PORT);
	if (E.server < 0) {
		E.server = 0;
		return setup_failed("endpoint servers");
	}
	if (dns_start())
		return setup_failed("dnsmasq did not start");
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		return setup_failed("daemon did not start (see its log)");
	}
	return 0;
}

static int group_teardown(void **state)
{
	clients_kill();
	e2e_kill(&E.daemon2);
	e2e_kill(&E.daemon);
	e2e_kill(&E.dnsd);
	if (E.stats_fd >= 0)
		close(E.stats_fd);
	E.stats_fd = -1;
	e2e_kill_group(&E.server);
	if (E.env.bpffs[0]) {
		kb_dataplane_unload(E.env.bpffs);
		e2e_sh("rm -rf '%s'", E.env.bpffs);
	}
	E.env.bpffs[0] = '\0';
	e2e_netns_del(&E.netns_made, E.node, E.be, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.t)
		munmap(E.t, sizeof(*E.t) * MAX_KIDS);
	E.t = NULL;
	return 0;
}

static int test_teardown(void **state)
{
	if (E.t)
		clients_kill();
	if (E.stats_fd >= 0)
		close(E.stats_fd);
	E.stats_fd = -1;
	return 0;
}

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* ---- watch-dir ---- */

/* At start the directory is applied: 7 objects (EG, Gateway, 4 Backends, the route), one frontend, to e1. */
static void test_watch_initial_apply(void **state)
{
	struct json_object *st, *w;

	NEED_ENV();
	daemon_ensure();
	wait_watch("reloads", 0);
	wait_state(7, 1);
	w = watch_status(&st);
	assert_non_null(w);
	assert_string_equal(e2e_jstr(w, "dir"), E.watch);
	assert_int_equal(e2e_jint(w, "files"), 4);
	assert_true(json_object_get_boolean(e2e_jget(w, "ok")));
	json_object_put(st);
	assert_only(FE_PORT, 0);
}

/* Editing a file in place re-applies it: the route moves from e1 to e2. */
static void test_watch_edit(void **state)
{
	char p[PATH_MAX + 64];
	long r0;

	NEED_ENV();
	daemon_ensure();
	r0 = watch_count("reloads");
	wpath(p, sizeof(p), "30-app.yaml");
	assert_int_equal(e2e_write_file(p, yaml_route("app", "tcp", M_E2)), 0);
	wait_watch("reloads", r0);
	assert_only(FE_PORT, 1);
}

/* A new file adds its objects: route app2 makes frontend :81, to e3. */
static void test_watch_add(void **state)
{
	long r0;

	NEED_ENV();
	daemon_ensure();
	r0 = watch_count("reloads");
	watch_put("40-app2.yaml", yaml_route("app2", "tcp2", M_E3));
	wait_watch("reloads", r0);
	wait_state(9, 2);
	assert_true(frontend_pinned(FE_PORT2));
	assert_only(FE_PORT2, 2);
	assert_only(FE_PORT, 1);
}

/* Removing the file removes its objects, and the frontend leaves the kernel. */
static void test_watch_remove(void **state)
{
	struct e2e_sum s;
	long r0;

	NEED_ENV();
	daemon_ensure();
	if (!frontend_pinned(FE_PORT2)) {
		watch_put("40-app2.yaml", yaml_route("app2", "tcp2", M_E3));
		wait_state(9, 2);
	}
	r0 = watch_count("reloads");
	watch_del("40-app2.yaml");
	wait_watch("reloads", r0);
	wait_state(7, 1);
	assert_false(frontend_pinned(FE_PORT2));
	assert_true(frontend_pinned(FE_PORT));
	/* Nothing steers :81 any more, and the node netns has no route to it. */
	s = connect_n(FE_PORT2, 1);
	assert_int_equal(s.fail, 1);
	assert_int_equal(s.first_err, ENETUNREACH);
	assert_only(FE_PORT, 1);
}

/* The refused object of status.watch.refusedObjects named `label`, or NULL. */
static struct json_object *refused_entry(struct json_object *w, const char *label)
{
	struct json_object *arr = e2e_jget(w, "refusedObjects");

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);

		if (!strcmp(e2e_jstr(o, "object"), label))
			return o;
	}
	return NULL;
}

/* The condition `type` of a refused entry (its own, or its first parent's for a route), as "Status/Reason". */
static const char *refused_cond(struct json_object *o, const char *type)
{
	static char buf[256];
	struct json_object *st = e2e_jget(o, "status"), *conds = e2e_jget(st, "conditions"), *parents;

	if ((!conds || !json_object_array_length(conds)) && (parents = e2e_jget(st, "parents")) &&
	    json_object_array_length(parents))
		conds = e2e_jget(json_object_array_get_idx(parents, 0), "conditions");
	for (size_t i = 0; conds && i < json_object_array_length(conds); i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);

		if (!strcmp(e2e_jstr(c, "type"), type)) {
			snprintf(buf, sizeof(buf), "%s/%s", e2e_jstr(c, "status"), e2e_jstr(c, "reason"));
			return buf;
		}
	}
	return "";
}

/*
 * Per-object acceptance, as Envoy Gateway judges a cluster: an invalid Backend
 * is set aside with its conditions, a route that names it goes with it (its
 * listener still refuses), and everything else in the same read is programmed.
 */
static void test_watch_sets_aside_bad_objects(void **state)
{
	char p[PATH_MAX + 64], route2[4096], *log;
	struct json_object *st, *w, *o, *diags;
	long deadline, a0;
	struct e2e_sum s;

	NEED_ENV();
	daemon_ensure();
	st = ctl("status", 5000);
	a0 = e2e_jint(st, "applyErrors");
	json_object_put(st);
	/* An invalid Backend (port out of range), a route that names it, and an edit of a good route. */
	watch_put("50-bad.yaml", "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				 "kind: Backend\n"
				 "metadata:\n"
				 "  name: broken\n"
				 "  namespace: default\n"
				 "spec:\n"
				 "  endpoints:\n"
				 "    - ip:\n"
				 "        address: 198.51.100.9\n"
				 "        port: 99999\n");
	snprintf(route2, sizeof(route2), "%s        - group: gateway.envoyproxy.io\n"
					 "          kind: Backend\n"
					 "          name: broken\n",
		 yaml_route("app2", "tcp2", 0));
	watch_put("60-uses-bad.yaml", route2);
	wpath(p, sizeof(p), "30-app.yaml");
	assert_int_equal(e2e_write_file(p, yaml_route("app", "tcp", M_E1)), 0);

	/* The edit is programmed; the good objects are stored (7 and eg2), the two bad ones are not. */
	deadline = kb_now_ms() + WAIT_MS;
	for (;;) {
		w = watch_status(&st);
		if (e2e_jint(w, "refused") == 2 && e2e_jint(st, "objects") == 8)
			break;
		if (kb_now_ms() > deadline)
			fail_msg("two objects not set aside: %s", json_object_to_json_string(st));
		json_object_put(st);
		e2e_sleep_ms(20);
	}
	assert_true(json_object_get_boolean(e2e_jget(w, "ok")));
	assert_int_equal(e2e_jint(st, "applyErrors"), a0);
	o = refused_entry(w, "Backend default/broken");
	assert_non_null(o);
	assert_string_equal(refused_cond(o, "Accepted"), "False/Invalid");
	diags = e2e_jget(e2e_jget(o, "status"), "diagnostics");
	assert_non_null(diags);
	if (!strstr(e2e_jstr(json_object_array_get_idx(diags, 0), "text"), "50-bad.yaml:10"))
		fail_msg("the Backend's diagnostic does not name 50-bad.yaml:10: %s", json_object_to_json_string(o));
	o = refused_entry(w, "TCPRoute default/app2");
	assert_non_null(o);
	if (strncmp(refused_cond(o, "ResolvedRefs"), "False/", 6))
		fail_msg("the route is not set aside for its refs: %s", json_object_to_json_string(o));
	json_object_put(st);
	log = e2e_read_text(E.env.log);
	assert_non_null(log);
	if (!strstr(log, "Backend default/broken refused, not programmed") || !strstr(log, "50-bad.yaml:10"))
		fail_msg("the log does not name the set-aside Backend and its line");
	free(log);
	/* The human status names each set-aside object with its first error. */
	{
		const char *const args[] = { "status", NULL };
		char kb[PATH_MAX], *out = NULL;

		assert_int_equal(e2e_kbackend_path(kb, sizeof(kb)), 0);
		assert_int_equal(e2e_cli(kb, E.env.sock, E.env.log, &out, args), 0);
		if (!out || !strstr(out, "refused:     2 object(s) set aside") ||
		    !strstr(out, "  Backend default/broken: ") || !strstr(out, "50-bad.yaml:10"))
			fail_msg("status does not list the set-aside objects:\n%s", out ? out : "");
		free(out);
	}
	assert_only(FE_PORT, 0);
	/* eg2's listener is programmed without the route: a connect to it is refused, not left unsteered. */
	assert_true(frontend_pinned(FE_PORT2));
	s = connect_n(FE_PORT2, 1);
	assert_int_equal(s.fail, 1);
	assert_int_equal(s.first_err, ECONNREFUSED);

	/* Fixed: nothing is set aside any more. */
	watch_del("60-uses-bad.yaml");
	watch_del("50-bad.yaml");
	wait_state(7, 1);
	deadline = kb_now_ms() + WAIT_MS;
	while (watch_count("refused") != 0) {
		if (kb_now_ms() > deadline)
			fail_msg("refused objects still listed after the fix");
		e2e_sleep_ms(20);
	}
	w = watch_status(&st);
	assert_null(e2e_jget(w, "refusedObjects"));
	json_object_put(st);
	assert_only(FE_PORT, 0);
}

/* A file that is not YAML names no object to set aside: the whole read is refused, the last good state serves. */
static void test_watch_unparseable_file(void **state)
{
	struct json_object *st, *w;
	char p[PATH_MAX + 64];
	long e0, r0, a0;

	NEED_ENV();
	daemon_ensure();
	st = ctl("status", 5000);
	a0 = e2e_jint(st, "applyErrors");
	json_object_put(st);
	e0 = watch_count("errors");
	watch_put("50-bad.yaml", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: [name\n");
	wpath(p, sizeof(p), "30-app.yaml");
	assert_int_equal(e2e_write_file(p, yaml_route("app", "tcp", M_E2)), 0);
	wait_watch("errors", e0);
	e2e_sleep_ms(500);	/* both events seen: the edit's own re-read is refused too */

	w = watch_status(&st);
	if (!strstr(e2e_jstr(st, "lastError"), "50-bad.yaml") || !strstr(e2e_jstr(w, "lastError"), "50-bad.yaml"))
		fail_msg("status does not name the bad file: %s", json_object_to_json_string(st));
	assert_false(json_object_get_boolean(e2e_jget(w, "ok")));
	assert_true(e2e_jint(st, "applyErrors") > a0);
	assert_int_equal(e2e_jint(st, "objects"), 7);
	json_object_put(st);
	/* The last good state: still e1, not the edit. */
	assert_only(FE_PORT, 0);

	/* Fixed: the edit that waited applies now, and the error clears; then back to e1 for the next test. */
	r0 = watch_count("reloads");
	watch_del("50-bad.yaml");
	wait_watch("reloads", r0);
	assert_only(FE_PORT, 1);
	w = watch_status(&st);
	assert_true(json_object_get_boolean(e2e_jget(w, "ok")));
	assert_null(e2e_jget(st, "lastError"));
	assert_null(e2e_jget(w, "lastError"));
	json_object_put(st);
	r0 = watch_count("reloads");
	assert_int_equal(e2e_write_file(p, yaml_route("app", "tcp", M_E1)), 0);
	wait_watch("reloads", r0);
	assert_only(FE_PORT, 0);
}

/* kubelet's AtomicWriter: write a timestamped dir, point ..data_tmp at it, rename over ..data, fix the key symlinks. */
struct cm_file {
	const char *name, *content;
};

static void cm_publish(const char *ts, const struct cm_file *files, size_t n)
{
	char dir[PATH_MAX + 64], p[PATH_MAX + 128], tmp[PATH_MAX + 64], dst[PATH_MAX + 64];

	snprintf(dir, sizeof(dir), "%s/%s", E.watch, ts);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i].name);
		assert_int_equal(e2e_write_file(p, files[i].content), 0);
	}
	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", E.watch);
	snprintf(dst, sizeof(dst), "%s/..data", E.watch);
	assert_int_equal(symlink(ts, tmp), 0);
	assert_int_equal(rename(tmp, dst), 0);
}

/* Each key as a symlink into ..data (replacing what is there atomically). */
static void cm_link(const char *name)
{
	char target[256], tmp[PATH_MAX + 64], dst[PATH_MAX + 64];

	snprintf(target, sizeof(target), "..data/%s", name);
	snprintf(tmp, sizeof(tmp), "%s/.link-%s", E.watch, name);
	wpath(dst, sizeof(dst), name);
	unlink(tmp);
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(rename(tmp, dst), 0);
}

static void cm_rmdir(const char *ts)
{
	assert_int_equal(e2e_sh("rm -rf '%s/%s'", E.watch, ts), 0);
}

static void test_watch_configmap_swap(void **state)
{
	const char *ts1 = "..2026_11_26_10_00_00.000000001", *ts2 = "..2026_11_26_10_05_00.000000002",
		   *ts3 = "..2026_11_26_10_10_00.000000003";
	struct cm_file v1[] = {
		{ "00-envoy-gateway.yaml", YAML_EG },
		{ "10-gateway.yaml", YAML_GW },
		{ "20-backends.yaml", YAML_BACKENDS },
		{ "30-app.yaml", yaml_route("app", "tcp", M_E1) },
	};
	struct cm_file v2[] = {
		v1[0], v1[1], v1[2],
		{ "30-app.yaml", yaml_route("app", "tcp", M_E3) },
		{ "40-app2.yaml", yaml_route("app2", "tcp2", M_E2) },
	};
	struct cm_file v3[] = {
		v1[0], v1[1], v1[2],
		{ "30-app.yaml", yaml_route("app", "tcp", M_E1 | M_E2) },
	};
	long e0;

	NEED_ENV();
	daemon_ensure();
	e0 = watch_count("errors");
	/* The mount as kubelet makes it: the same content, now behind ..data. */
	cm_publish(ts1, v1, 4);
	for (size_t i = 0; i < 4; i++)
		cm_link(v1[i].name);
	e2e_sleep_ms(400);
	wait_state(7, 1);
	assert_only(FE_PORT, 0);

	/* An update: a changed key and a new key; ..data swaps in one rename, then the new key's symlink. */
	cm_publish(ts2, v2, 5);
	cm_link("40-app2.yaml");
	cm_rmdir(ts1);
	wait_state(9, 2);
	assert_only(FE_PORT, 2);
	assert_only(FE_PORT2, 1);

	/* A key removed: its symlink dangles after the swap until kubelet removes it; neither is an error. */
	cm_publish(ts3, v3, 4);
	cm_rmdir(ts2);
	e2e_sleep_ms(50);
	watch_del("40-app2.yaml");
	wait_state(7, 1);
	assert_false(frontend_pinned(FE_PORT2));
	{
		struct e2e_sum s = connect_n(FE_PORT, 40);

		e2e_assert_no_failure(s);
		assert_true(s.ok[0] > 0 && s.ok[1] > 0);
		assert_int_equal(s.ok[2], 0);
	}
	assert_int_equal(watch_count("errors"), e0);
}

/* ---- metrics ---- */

static void test_metrics_scrape(void **state)
{
	const long N = 300, NFAIL = 25;
	struct scrape before, after, other;
	struct json_object *st;
	double conn0, conn1, runs0, runs1;
	bool sockops;
	struct e2e_sum s;
	long r0;

	NEED_ENV();
	daemon_ensure();
	/* :80 to e1 and e2; :81 to e4, where nothing listens. */
	r0 = watch_count("reloads");
	watch_put("30-app.yaml", yaml_route("app", "tcp", M_E1 | M_E2));
	watch_put("40-app2.yaml", yaml_route("app2", "tcp2", M_E4));
	wait_watch("reloads", r0);
	wait_state(9, 2);
	/* BPF run counts grow only while stats are on; they stay on while this fd is open. */
	E.stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	sockops = pinned_link_info("sockops_health", NULL) != 0;
	/*
	 * The daemon always loads sockops (health); it only goes without when
	 * the load or the attach fails, which it logs. Without it the checks
	 * below cannot run, so that is a failure, not a quiet "off".
	 */
	if (!sockops) {
		if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) != 1 && !e2e_in_ci())
			skip();	/* a kernel without sockops: nothing here can count handshakes */
		dump_log();
		fail_msg("the sockops link is not pinned at %s/links/sockops_health (the daemon log above says why)",
			 E.env.bpffs);
	}

	before = scrape("/metrics");
	assert_int_equal(before.status, 200);
	if (!strstr(before.raw, "Content-Type: text/plain; version=0.0.4"))
		fail_msg("not Prometheus' text format: %.300s", before.raw);
	check_exposition(&before);
	runs0 = metric(&before, "kbackend_bpf_program_runs_total{program=\"connect4\"}");
	assert_true(runs0 >= 0);

	s = connect_n(FE_PORT, N);
	e2e_assert_no_failure(s);
	assert_int_equal(s.total_ok, N);
	assert_true(s.ok[0] > 0 && s.ok[1] > 0);
	{
		struct e2e_sum f = connect_n(FE_PORT2, NFAIL);

		assert_int_equal(f.fail, NFAIL);
		assert_int_equal(f.first_err, ECONNREFUSED);
	}

	after = scrape("/metrics");
	assert_int_equal(after.status, 200);
	check_exposition(&after);
	printf("# metrics: %zu bytes; %ld connects (e1 %ld, e2 %ld), %ld refused by e4; sockops %s\n",
	       strlen(after.body), N, s.ok[0], s.ok[1], NFAIL, sockops ? "on" : "off");

	/* Connections: the frontend's and each endpoint's, exactly the connects made. */
	conn0 = fe_metric(&before, "kbackend_frontend_connections_total", FE_PORT);
	conn1 = fe_metric(&after, "kbackend_frontend_connections_total", FE_PORT);
	assert_true(conn0 >= 0);
	if (conn1 - conn0 != N)
		fail_msg("kbackend_frontend_connections_total went %g -> %g for %ld connects", conn0, conn1, N);
	for (int e = 0; e < 2; e++) {
		double a = ep_metric(&before, "kbackend_endpoint_connections_total", FE_PORT, e, EPS[e], EP_PORT);
		double b = ep_metric(&after, "kbackend_endpoint_connections_total", FE_PORT, e, EPS[e], EP_PORT);

		assert_true(a >= 0);
		if (b - a != s.ok[e])
			fail_msg("kbackend_endpoint_connections_total for %s went %g -> %g for %ld connects", EPS[e], a,
				 b, s.ok[e]);
		assert_true(ep_metric(&after, "kbackend_endpoint_healthy", FE_PORT, e, EPS[e], EP_PORT) == 1);
		assert_true(ep_metric(&after, "kbackend_endpoint_share_ratio", FE_PORT, e, EPS[e], EP_PORT) == 0.5);
	}
	assert_true(fe_metric(&after, "kbackend_frontend_endpoints", FE_PORT) == 2);
	{
		double a = fe_metric(&before, "kbackend_frontend_connections_total", FE_PORT2);
		double b = fe_metric(&after, "kbackend_frontend_connections_total", FE_PORT2);

		if (b - a != NFAIL)
			fail_msg(":81 connections went %g -> %g for %ld connects", a, b, NFAIL);
	}
	/* Handshakes, failures and open connections per address come from sockops, through health. */
	{
		for (int e = 0; e < 2; e++) {
			double a = addr_metric(&before, "kbackend_endpoint_established_total", EPS[e], EP_PORT, NULL);
			double b = addr_metric(&after, "kbackend_endpoint_established_total", EPS[e], EP_PORT, NULL);

			if (a < 0 || b - a != s.ok[e])
				fail_msg("kbackend_endpoint_established_total for %s went %g -> %g for %ld handshakes",
					 EPS[e], a, b, s.ok[e]);
			/* Every client read to EOF: none of them is ESTABLISHED any more. */
			assert_true(addr_metric(&after, "kbackend_endpoint_active_connections", EPS[e], EP_PORT, NULL) ==
				    0);
			assert_true(addr_metric(&after, "kbackend_endpoint_failures_total", EPS[e], EP_PORT, "refused") ==
				    addr_metric(&before, "kbackend_endpoint_failures_total", EPS[e], EP_PORT, "refused"));
		}
		{
			double a = addr_metric(&before, "kbackend_endpoint_failures_total", EPS[0], DEAD_PORT, "refused");
			double b = addr_metric(&after, "kbackend_endpoint_failures_total", EPS[0], DEAD_PORT, "refused");

			if (a < 0 || b - a != NFAIL)
				fail_msg("refused failures for e4 went %g -> %g for %ld refused connects", a, b, NFAIL);
			assert_true(addr_metric(&after, "kbackend_endpoint_ejections_total", EPS[0], DEAD_PORT, NULL) >= 0);
		}
	}
	/* connect4 ran at least once per connect while stats were on. */
	runs1 = metric(&after, "kbackend_bpf_program_runs_total{program=\"connect4\"}");
	if (E.stats_fd >= 0) {
		if (runs1 - runs0 < N + NFAIL)
			fail_msg("connect4 run count went %g -> %g for %ld connects", runs0, runs1, N + NFAIL);
		assert_true(metric(&after, "kbackend_bpf_program_run_seconds_total{program=\"connect4\"}") > 0);
	}

	/* The daemon's own counters agree with status. */
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	assert_true(metric(&after, "kbackend_applies_total") == e2e_jint(st, "applies"));
	assert_true(metric(&after, "kbackend_apply_errors_total") == e2e_jint(st, "applyErrors"));
	assert_true(metric(&after, "kbackend_last_apply_timestamp_seconds") == e2e_jint(st, "lastApply"));
	assert_true(metric(&after, "kbackend_objects") == 9);
	assert_true(metric(&after, "kbackend_frontends") == 2);
	assert_true(metric(&after, "kbackend_watch_ok") == 1);
	assert_true(metric(&after, "kbackend_watch_reloads_total") == e2e_jint(e2e_jget(st, "watch"), "reloads"));
	json_object_put(st);
	assert_true(metric(&after, "kbackend_dns_refreshes_total") >= 0);
	assert_true(metric(&after, "kbackend_dns_errors_total") >= 0);

	/* Anything but /metrics: 404; the index says where to look. */
	other = scrape("/nothing");
	assert_int_equal(other.status, 404);
	free(other.raw);
	other = scrape("/");
	assert_int_equal(other.status, 200);
	assert_non_null(strstr(other.body, "/metrics"));
	free(other.raw);
	free(before.raw);
	free(after.raw);
	close(E.stats_fd);
	E.stats_fd = -1;
}

/* DNS: a refresh for the name that answers, errors for the one that does not, and each name's addresses. */
static void test_metrics_dns(void **state)
{
	static const char yaml[] = "apiVersion: gateway.networking.k8s.io/v1\n"
				   "kind: Gateway\n"
				   "metadata:\n"
				   "  name: eg3\n"
				   "  namespace: default\n"
				   "spec:\n"
				   "  gatewayClassName: eg\n"
				   "  addresses:\n"
				   "    - type: IPAddress\n"
				   "      value: 198.18.0.12\n"
				   "  listeners:\n"
				   "    - name: tcp3\n"
				   "      protocol: TCP\n"
				   "      port: 82\n"
				   "---\n"
				   "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
				   "kind: Backend\n"
				   "metadata:\n"
				   "  name: named\n"
				   "  namespace: default\n"
				   "spec:\n"
				   "  endpoints:\n"
				   "    - fqdn:\n"
				   "        hostname: " DNS_OK "\n"
				   "        port: 8080\n"
				   "    - fqdn:\n"
				   "        hostname: " DNS_NX "\n"
				   "        port: 8080\n"
				   "---\n"
				   "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				   "kind: TCPRoute\n"
				   "metadata:\n"
				   "  name: app3\n"
				   "  namespace: default\n"
				   "spec:\n"
				   "  parentRefs:\n"
				   "    - name: eg3\n"
				   "      sectionName: tcp3\n"
				   "  rules:\n"
				   "    - backendRefs:\n"
				   "        - group: gateway.envoyproxy.io\n"
				   "          kind: Backend\n"
				   "          name: named\n";
	long deadline = kb_now_ms() + 15000;
	double ok = -1, nx = -1, refreshes = -1, errors = -1, nxfail = -1;

	NEED_ENV();
	assert_true(E.dnsd > 0);	/* group setup fails without it */
	daemon_ensure();
	watch_put("60-dns.yaml", yaml);
	wait_state(12, 3);
	for (;;) {
		struct scrape m = scrape("/metrics");

		check_exposition(&m);
		ok = metric(&m, "kbackend_dns_name_addresses{name=\"" DNS_OK "\"}");
		nx = metric(&m, "kbackend_dns_name_addresses{name=\"" DNS_NX "\"}");
		nxfail = metric(&m, "kbackend_dns_name_consecutive_failures{name=\"" DNS_NX "\"}");
		refreshes = metric(&m, "kbackend_dns_refreshes_total");
		errors = metric(&m, "kbackend_dns_errors_total");
		free(m.raw);
		if (ok == 1 && nx == 0 && nxfail >= 1 && refreshes >= 1 && errors >= 1)
			break;
		if (kb_now_ms() > deadline)
			fail_msg("DNS metrics: %s %g address(es), %s %g (%g failures), %g refreshes, %g errors", DNS_OK,
				 ok, DNS_NX, nx, nxfail, refreshes, errors);
		e2e_sleep_ms(100);
	}
	printf("# dns: %g refreshes, %g errors\n", refreshes, errors);
	watch_del("60-dns.yaml");
	wait_state(9, 2);
}

/* A --metrics-addr that is not ADDR:PORT is a usage error, before anything is loaded. */
static void test_metrics_addr_usage(void **state)
{
	static const char *const bad[] = { "9464", "localhost:9464", "2001:db8::1:9464", "127.0.0.1:70000",
					   "[2001:db8::1]", "127.0.0.1:" };

	NEED_ENV();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = e2e_sh("'%s' daemon --cgroup /nonexistent --metrics-addr '%s'", E.env.kb, bad[i]);

		if (rc != 2)
			fail_msg("--metrics-addr %s: exit %d, expected 2 (usage)", bad[i], rc);
	}
}

/* ---- upgrade ---- */

/*
 * Daemon B starts with A's flags (same pins, state, watch dir, socket path
 * and metrics port) while A serves: it adopts the pinned maps, swaps its own
 * programs into the pinned links, takes over the socket path and the metrics
 * port (SO_REUSEPORT). A then gets SIGTERM and leaves pins and socket alone.
 * Clients connect in a loop throughout; none may fail.
 */
static void test_upgrade_no_loss(void **state)
{
	__u32 link0, link1, prog0 = 0, prog1 = 0;
	long c0, t0;
	struct e2e_sum s;
	struct scrape m;
	int status, stuck = 0;
	pid_t a;

	NEED_ENV();
	daemon_ensure();
	wait_state(9, 2);
	a = E.daemon;
	link0 = pinned_link_info("connect4", &prog0);
	assert_true(link0 && prog0);

	for (int i = 0; i < 4; i++)
		client_spawn(i, FE_PORT, 0);
	for (t0 = kb_now_ms(); tallies_sum(0, 4).total_ok < 200; e2e_sleep_ms(5))
		if (kb_now_ms() - t0 > WAIT_MS)
			fail_msg("clients made no progress before the upgrade");

	E.daemon2 = daemon_spawn();
	if (E.daemon2 <= 0) {
		E.daemon2 = 0;
		dump_log();
		fail_msg("daemon B did not start next to A");
	}
	/* B took over the socket path, adopted the link and swapped its own program in. */
	assert_int_equal(serving_pid(), E.daemon2);
	link1 = pinned_link_info("connect4", &prog1);
	assert_int_equal(link1, link0);
	assert_true(prog1 != prog0);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);
	c0 = tallies_sum(0, 4).total_ok;
	for (t0 = kb_now_ms(); tallies_sum(0, 4).total_ok < c0 + 300; e2e_sleep_ms(5))
		if (kb_now_ms() - t0 > WAIT_MS)
			fail_msg("no progress with both daemons up");

	/* A stops as systemd or the kubelet would stop it. */
	kill(a, SIGTERM);
	assert_int_equal(waitpid(a, &status, 0), a);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	E.daemon = E.daemon2;
	E.daemon2 = 0;
	c0 = tallies_sum(0, 4).total_ok;
	for (t0 = kb_now_ms(); tallies_sum(0, 4).total_ok < c0 + 300; e2e_sleep_ms(5))
		if (kb_now_ms() - t0 > WAIT_MS)
			fail_msg("no progress after A stopped");

	for (int i = 0; i < 4; i++)
		stuck += client_wait(i, true, kb_now_ms() + 30000);
	s = tallies_sum(0, 4);
	printf("# upgrade: %ld connections through the switch (e1 %ld, e2 %ld), %ld failed\n", s.total_ok + s.fail,
	       s.ok[0], s.ok[1], s.fail);
	assert_int_equal(stuck, 0);
	e2e_assert_no_failure(s);

	/* B serves everything on its own: the socket (A left it), the maps, the watch dir and /metrics. */
	assert_true(e2e_exists(E.env.sock));
	assert_int_equal(serving_pid(), E.daemon);
	assert_int_equal(pinned_link_info("connect4", NULL), link0);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);
	m = scrape("/metrics");
	assert_int_equal(m.status, 200);
	assert_true(metric(&m, "kbackend_objects") == 9);
	free(m.raw);
	{
		long r0 = watch_count("reloads");

		watch_put("30-app.yaml", yaml_route("app", "tcp", M_E3));
		wait_watch("reloads", r0);
		assert_only(FE_PORT, 2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_watch_initial_apply, test_teardown),
		cmocka_unit_test_teardown(test_watch_edit, test_teardown),
		cmocka_unit_test_teardown(test_watch_add, test_teardown),
		cmocka_unit_test_teardown(test_watch_remove, test_teardown),
		cmocka_unit_test_teardown(test_watch_sets_aside_bad_objects, test_teardown),
		cmocka_unit_test_teardown(test_watch_unparseable_file, test_teardown),
		cmocka_unit_test_teardown(test_watch_configmap_swap, test_teardown),
		cmocka_unit_test_teardown(test_metrics_scrape, test_teardown),
		cmocka_unit_test_teardown(test_metrics_dns, test_teardown),
		cmocka_unit_test_teardown(test_metrics_addr_usage, test_teardown),
		cmocka_unit_test_teardown(test_upgrade_no_loss, test_teardown),
	};

	e2e_main_init("test_ops", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
