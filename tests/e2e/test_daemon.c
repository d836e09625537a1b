// SPDX-License-Identifier: Apache-2.0
/* e2e: the daemon and the CLI end to end: apply, weights, apply under load, kill -9 and restart, bad requests, unload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "control.h"
#include "dataplane.h"
#include "store.h"
#include "util.h"

/*
 * Topology (DESIGN section 8). The daemon and the clients live in the node
 * netns, which has no default route: a frontend is reachable only through
 * the programs the daemon attaches to the test cgroup.
 *
 *   kbt-dnode-<pid>  198.51.100.254/24 203.0.113.254/24  ==veth==  kbt-dbe-<pid>
 *                                          e1 198.51.100.1, e2 203.0.113.2, e3 198.51.100.3 (TCP 8080)
 *
 * Each endpoint answers a TCP connection with its own address, then closes.
 * The daemon runs as `build/kbackend daemon` with its own cgroup, bpffs
 * directory, state directory and socket; the test talks to it through the
 * CLI (checking -o json) and through kb_ctl_call().
 */
#define FE_ADDR "198.18.0.10"
#define FE_PORT 80
#define EP_PORT 8080
#define NEPS 3
#define MAX_KIDS 8

static const char *const EPS[NEPS] = { "198.51.100.1", "203.0.113.2", "198.51.100.3" };

struct env {
	struct e2e_env env;	/* kb, temp dir, socket, state, log, cgroups, pins, skip */
	char node[64], be[64];
	bool netns_made;
	pid_t server;		/* process group of the endpoint servers */
	pid_t daemon;
	pid_t kids[MAX_KIDS];
	struct e2e_tally *t;	/* MAX_KIDS tallies, MAP_SHARED */
};

static struct env E;

/* ---- small helpers ---- */

/* The daemon's and the CLI's stderr, as TAP comments: what a failed start or apply said. */
static void dump_log(void)
{
	e2e_dump_file("log", E.env.log, 0);
}

/* ---- manifests: the shape of examples/, with a TCP listener and three Backends ---- */

static const char YAML_EG[] =
	"# Envoy Gateway's switch for the Backend API.\n"
	"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
	"kind: EnvoyGateway\n"
	"metadata:\n"
	"  name: envoy-gateway\n"
	"  namespace: envoy-gateway-system\n"
	"provider:\n"
	"  type: Kubernetes\n"
	"gateway:\n"
	"  controllerName: gateway.envoyproxy.io/gatewayclass-controller\n"
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

/* e1 and e3 in Envoy Gateway's shape, e2 in the seed's; e1_addr may replace e1's address. */
static void yaml_backends(char *buf, size_t len, const char *e1_addr)
{
	snprintf(buf, len,
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		 "kind: Backend\n"
		 "metadata:\n"
		 "  name: e1\n"
		 "  namespace: default\n"
		 "spec:\n"
		 "  endpoints:\n"
		 "    - ip:\n"
		 "        address: %s\n"
		 "        port: %d\n"
		 "---\n"
		 "# The seed's shape: the address is a scalar and the port its sibling.\n"
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		 "kind: Backend\n"
		 "metadata:\n"
		 "  name: e2\n"
		 "  namespace: default\n"
		 "spec:\n"
		 "  endpoints:\n"
		 "    - ip: %s\n"
		 "      port: %d\n"
		 "---\n"
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		 "kind: Backend\n"
		 "metadata:\n"
		 "  name: e3\n"
		 "  namespace: default\n"
		 "spec:\n"
		 "  endpoints:\n"
		 "    - ip:\n"
		 "        address: %s\n"
		 "        port: %d\n",
		 e1_addr ? e1_addr : EPS[0], EP_PORT, EPS[1], EP_PORT, EPS[2], EP_PORT);
}

/* The TCPRoute "app": a backendRef to e<i+1> for every w[i] > 0. */
static void yaml_route(char *buf, size_t len, const int w[NEPS])
{
	size_t n = (size_t)snprintf(buf, len,
				    "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
				    "kind: TCPRoute\n"
				    "metadata:\n"
				    "  name: app\n"
				    "  namespace: default\n"
				    "spec:\n"
				    "  parentRefs:\n"
				    "    - name: eg\n"
				    "      sectionName: tcp\n"
				    "  rules:\n"
				    "    - backendRefs:\n");

	for (int i = 0; i < NEPS && n < len; i++)
		if (w[i] > 0)
			n += (size_t)snprintf(buf + n, len - n,
					      "        - group: gateway.envoyproxy.io\n"
					      "          kind: Backend\n"
					      "          name: e%d\n"
					      "          weight: %d\n",
					      i + 1, w[i]);
}

/* The whole configuration as one multi-document file. */
static void yaml_all(char *buf, size_t len, const int w[NEPS], const char *e1_addr)
{
	char be[4096], rt[2048];

	yaml_backends(be, sizeof(be), e1_addr);
	yaml_route(rt, sizeof(rt), w);
	snprintf(buf, len, "%s---\n%s---\n%s---\n%s", YAML_EG, YAML_GW, be, rt);
}

/* ---- the topology ---- */

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kdn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kdb%d", (int)getpid());
	E.netns_made = true;	/* teardown deletes both names, made or not */
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be))
		return -1;
	/* Made inside the node netns, so nothing of the topology touches the root namespace. */
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node, vn, vb, E.be) ||
	    e2e_sh("ip -n %s link set lo up", E.node) || e2e_sh("ip -n %s link set lo up", E.be) ||
	    e2e_sh("ip -n %s addr add 198.51.100.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 203.0.113.254/24 dev %s", E.node, vn) ||
	    e2e_sh("ip -n %s addr add 198.51.100.1/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 198.51.100.3/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s addr add 203.0.113.2/24 dev %s", E.be, vb) ||
	    e2e_sh("ip -n %s link set %s up", E.node, vn) || e2e_sh("ip -n %s link set %s up", E.be, vb))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route in the node netns. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node))
		return -1;
	return 0;
}

/* ---- the daemon, as a child process in the node netns ---- */

/* Send one request to the daemon; NULL with errno set when it could not be reached. */
static struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

/* The daemon answers `status` with ok. */
static bool daemon_serves(void)
{
	return e2e_daemon_serves(E.env.sock, 5000);
}

static int daemon_start(void)
{
	const char *const argv[] = { "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				     "--state-dir", E.env.state, "--socket", E.env.sock, NULL };

	E.daemon = e2e_daemon_spawn(E.env.kb, E.env.log, E.node, argv);
	if (E.daemon < 0) {
		E.daemon = 0;
		return -1;
	}
	return e2e_daemon_wait(&E.daemon, E.env.sock, 15000);
}

static void daemon_kill(void)
{
	e2e_kill(&E.daemon);
}

/* A test may leave the daemon dead (kill -9, unload, a failure): the next one gets a fresh one. */
static void daemon_ensure(void)
{
	if (E.daemon > 0 && waitpid(E.daemon, NULL, WNOHANG) == 0 && daemon_serves())
		return;
	daemon_kill();
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not start");
	}
}

/* Processes whose command line names our socket: the daemon, or a stray CLI. */
static int count_our_processes(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], buf[4096];
		ssize_t len;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;	/* kernel threads and zombies have none */
		for (ssize_t i = 0; i < len; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[len] = '\0';
		if (strstr(buf, "kbackend") && strstr(buf, E.env.sock))
			n++;
	}
	closedir(d);
	return n;
}

/* ---- the CLI: build/kbackend with KBACKEND_SOCKET set; stdout captured, stderr to the log ---- */

#define CLI(out, ...) e2e_cli(E.env.kb, E.env.sock, E.env.log, (out), (const char *const[]){ __VA_ARGS__, NULL })
/* The same with -o json: the parsed stdout (caller puts it), its exit code in *rc. */
#define CLI_JSON(rc, ...) e2e_cli_json(E.env.kb, E.env.sock, E.env.log, (rc), (const char *const[]){ __VA_ARGS__, NULL })

/* ---- applying through the control socket ---- */

static struct json_object *apply_req(const char *name, const char *content)
{
	return e2e_files_req("apply", name, content);
}

/* Apply the whole configuration with these route weights; fails the test unless accepted. */
static void apply_weights(int w1, int w2, int w3)
{
	const int w[NEPS] = { w1, w2, w3 };
	static char yaml[16384];
	struct json_object *req, *reply;

	yaml_all(yaml, sizeof(yaml), w, NULL);
	req = apply_req("config.yaml", yaml);
	reply = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	if (!e2e_reply_ok(reply))
		fail_msg("apply %d/%d/%d refused: %s", w1, w2, w3,
			 reply ? json_object_to_json_string(reply) : strerror(errno));
	json_object_put(reply);
}

/* ---- clients: in the test cgroup and the node netns ---- */

static void client_loop(struct e2e_tally *t, bool check_peer)
{
	if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
		_exit(99);
	e2e_tally_run(t, FE_ADDR, FE_PORT, check_peer, EPS, NEPS);
}

/* Start a client on tally idx, making `limit` connects (0: until stopped). */
static void client_spawn(int idx, long limit, bool check_peer)
{
	pid_t pid;

	assert_true(idx < MAX_KIDS && E.kids[idx] <= 0);
	memset(&E.t[idx], 0, sizeof(E.t[idx]));
	E.t[idx].limit = limit;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		client_loop(&E.t[idx], check_peer);
	}
	E.kids[idx] = pid;
}

/* Stop (or just wait for) client idx. 0, or 1 if it had to be killed or died badly. */
static int client_wait(int idx, bool stop, long deadline)
{
	int status = e2e_kid_wait(&E.kids[idx], stop ? &E.t[idx].stop : NULL, deadline);

	return !WIFEXITED(status) || WEXITSTATUS(status);
}

/* Clients on tallies 0..n-1. */
static void clients_start(int n, long limit, bool check_peer)
{
	for (int i = 0; i < n; i++)
		client_spawn(i, limit, check_peer);
}

/* Stop (or wait for) every client; returns how many had to be killed or died badly. */
static int clients_stop(bool wait_only)
{
	long deadline = kb_now_ms() + 60000;
	int stuck = 0;

	for (int i = 0; i < MAX_KIDS; i++)
		if (!wait_only && E.kids[i] > 0)
			__atomic_store_n(&E.t[i].stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < MAX_KIDS; i++)
		stuck += client_wait(i, !wait_only, deadline);
	return stuck;
}

static void clients_kill(void)
{
	e2e_kids_kill(E.kids, MAX_KIDS);
}

/* Results of tallies first..first+n-1. */
static struct e2e_sum tallies_sum(int first, int n)
{
	return e2e_tallies_sum(&E.t[first], n);
}

static struct e2e_sum clients_sum(int n)
{
	return tallies_sum(0, n);
}

/* Wait until the answers of clients 0..n-1 reach `target`; false on timeout. */
static bool clients_reach(int n, long target, long timeout_ms)
{
	long deadline = kb_now_ms() + timeout_ms;

	while (clients_sum(n).total_ok < target) {
		if (kb_now_ms() > deadline)
			return false;
		e2e_sleep_ms(5);
	}
	return true;
}

/* `count` connects by one fresh client, on the last tally so that looping clients can go on. */
static struct e2e_sum connect_n(long count, bool check_peer)
{
	client_spawn(MAX_KIDS - 1, count, check_peer);
	assert_int_equal(client_wait(MAX_KIDS - 1, false, kb_now_ms() + 60000), 0);
	return tallies_sum(MAX_KIDS - 1, 1);
}

/* ---- reading the daemon's view ---- */

static struct json_object *find_frontend(struct json_object *fes, const char *addr, long port)
{
	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);

		if (!strcmp(e2e_jstr(fe, "address"), addr) && e2e_jint(fe, "port") == port)
			return fe;
	}
	return NULL;
}

static struct json_object *find_endpoint(struct json_object *fe, const char *addr)
{
	struct json_object *eps;

	if (!json_object_object_get_ex(fe, "endpoints", &eps))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(eps); i++) {
		struct json_object *ep = json_object_array_get_idx(eps, i);

		if (!strcmp(e2e_jstr(ep, "address"), addr))
			return ep;
	}
	return NULL;
}

/* Connect counters from `kbackend stats -o json`: the frontend's, then each endpoint's (0 when absent). */
struct counters {
	long fe, ep[NEPS];
};

static struct counters stats_now(void)
{
	struct json_object *fes, *fe, *st;
	struct counters c = { 0 };
	int rc;

	fes = CLI_JSON(&rc, "stats");
	assert_int_equal(rc, 0);
	assert_true(json_object_is_type(fes, json_type_array));
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_true(json_object_object_get_ex(fe, "stats", &st));
	c.fe = e2e_jint(st, "connects");
	for (int e = 0; e < NEPS; e++) {
		struct json_object *ep = find_endpoint(fe, EPS[e]);

		if (ep && json_object_object_get_ex(ep, "stats", &st))
			c.ep[e] = e2e_jint(st, "connects");
	}
	json_object_put(fes);
	return c;
}

/* Names of the objects `get KIND -A -o json` lists, as " name name ... ". */
static void get_names(const char *kind, char *buf, size_t len)
{
	struct json_object *list, *items;
	size_t n = 0;
	int rc;

	list = CLI_JSON(&rc, "get", kind, "-A");
	assert_int_equal(rc, 0);
	assert_string_equal(e2e_jstr(list, "kind"), "List");
	assert_true(json_object_object_get_ex(list, "items", &items));
	buf[n++] = ' ';
	buf[n] = '\0';
	for (size_t i = 0; i < json_object_array_length(items) && n < len; i++) {
		struct json_object *md;

		json_object_object_get_ex(json_object_array_get_idx(items, i), "metadata", &md);
		n += (size_t)snprintf(buf + n, len - n, "%s ", e2e_jstr(md, "name"));
	}
	json_object_put(list);
}

/* The pinned frontends map and every slot run it points at, as sorted hex lines. */
static int hex_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *dump_frontends_map(void)
{
	char path[PATH_MAX], *lines[256], *out;
	struct kb_frontend_key key, next, *prev = NULL;
	size_t n = 0, total = 1;
	int fefd, slfd;

	snprintf(path, sizeof(path), "%s/frontends", E.env.bpffs);
	fefd = bpf_obj_get(path);
	snprintf(path, sizeof(path), "%s/slots", E.env.bpffs);
	slfd = bpf_obj_get(path);
	if (fefd < 0 || slfd < 0)
		fail_msg("open pinned maps under %s: %s", E.env.bpffs, strerror(errno));
	while (!bpf_map_get_next_key(fefd, prev, &next) && n < 256) {
		struct kb_frontend val;
		size_t cap, m = 0;
		char *l;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fefd, &key, &val))
			continue;
		cap = 2 * (sizeof(key) + sizeof(val) + (size_t)val.nslots * sizeof(struct kb_slot)) + 4;
		l = malloc(cap);
		assert_non_null(l);
		for (size_t i = 0; i < sizeof(key); i++)
			m += (size_t)sprintf(l + m, "%02x", ((unsigned char *)&key)[i]);
		l[m++] = ':';
		for (size_t i = 0; i < sizeof(val); i++)
			m += (size_t)sprintf(l + m, "%02x", ((unsigned char *)&val)[i]);
		l[m++] = ':';
		for (__u32 s = 0; s < val.nslots; s++) {
			struct kb_slot sl;
			__u32 k = val.slot_base + s;

			memset(&sl, 0xee, sizeof(sl));
			bpf_map_lookup_elem(slfd, &k, &sl);
			for (size_t i = 0; i < sizeof(sl); i++)
				m += (size_t)sprintf(l + m, "%02x", ((unsigned char *)&sl)[i]);
		}
		l[m] = '\0';
		lines[n++] = l;
		total += m + 1;
	}
	close(fefd);
	close(slfd);
	qsort(lines, n, sizeof(*lines), hex_cmp);
	out = malloc(total);
	assert_non_null(out);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(out, lines[i]);
		strcat(out, "\n");
		free(lines[i]);
	}
	return out;
}

/* The kernel id of a pinned map or link (0 when it is not pinned). */
static __u32 pinned_id(const char *name, bool link)
{
	char path[PATH_MAX];
	__u32 id = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", E.env.bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (link) {
		struct bpf_link_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			id = info.id;
	} else {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			id = info.id;
	}
	close(fd);
	return id;
}

/* Programs attached to the test cgroup for one hook. */
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

/* Entries of dir whose names start with prefix, as "name name ... " in names; their count, -1 when dir does not exist. */
static int dir_entries(const char *dir, const char *prefix, char *names, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	names[0] = '\0';
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		n++;
		strncat(names, e->d_name, len - strlen(names) - 2);
		strcat(names, " ");
	}
	closedir(d);
	return n;
}

/* Entries under the pin directory, -1 when it does not exist. */
static int pin_entries(char *names, size_t len)
{
	return dir_entries(E.env.bpffs, "", names, len);
}

/* ---- setup and teardown ---- */

static int group_teardown(void **state);

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

static int group_setup(void **state)
{
	if (e2e_env_setup(&E.env, "daemon"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	E.t = mmap(NULL, sizeof(*E.t) * MAX_KIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.t == MAP_FAILED) {
		E.t = NULL;
		return setup_failed("mmap");
	}
	snprintf(E.node, sizeof(E.node), "kbt-dnode-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-dbe-%d", (int)getpid());
	if (topo_up())
		return setup_failed("topology");
	E.server = e2e_ident_servers_start(E.be, EPS, NEPS, EP_PORT);
	if (E.server < 0) {
		E.server = 0;
		return setup_failed("endpoint servers");
	}
	if (daemon_start())
		return setup_failed("daemon did not start (see its log)");
	return 0;
}

static int group_teardown(void **state)
{
	/* Idempotent: a failed setup runs it too. */
	clients_kill();
	daemon_kill();
	e2e_kill_group(&E.server);
	if (E.env.bpffs[0])
		kb_dataplane_unload(E.env.bpffs);
	E.env.bpffs[0] = '\0';
	e2e_netns_del(&E.netns_made, E.node, E.be, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.t)
		munmap(E.t, sizeof(*E.t) * MAX_KIDS);
	E.t = NULL;
	return 0;
}

/* After every test, even a failed one: no client outlives it. */
static int test_teardown(void **state)
{
	if (E.t)
		clients_kill();
	return 0;
}

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* ---- tests ---- */

/* examples/-shaped manifests through `kbackend apply -f DIR`; real traffic; get and stats agree with it. */
static void test_apply_dir_traffic_and_stats(void **state)
{
	const int w[NEPS] = { 1, 1, 0 };
	char dir[PATH_MAX], path[PATH_MAX + 32], buf[8192], names[512];
	struct json_object *reply, *fes, *fe, *eps;
	struct counters before, after;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	snprintf(dir, sizeof(dir), "%s/examples", E.env.tmp);
	assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/00-envoy-gateway.yaml", dir);
	assert_int_equal(e2e_write_file(path, YAML_EG), 0);
	snprintf(path, sizeof(path), "%s/10-gateway.yaml", dir);
	assert_int_equal(e2e_write_file(path, YAML_GW), 0);
	yaml_backends(buf, sizeof(buf), NULL);
	snprintf(path, sizeof(path), "%s/20-backends.yaml", dir);
	assert_int_equal(e2e_write_file(path, buf), 0);
	yaml_route(buf, sizeof(buf), w);
	snprintf(path, sizeof(path), "%s/30-routes.yaml", dir);
	assert_int_equal(e2e_write_file(path, buf), 0);

	reply = CLI_JSON(&rc, "apply", "-f", dir);
	if (rc != 0 || !e2e_reply_ok(reply))
		fail_msg("apply -f %s: exit %d, %s", dir, rc, json_object_to_json_string(reply));
	json_object_put(reply);

	/* get shows the objects, and the frontend with both endpoints at half each. */
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " e1 "));
	assert_non_null(strstr(names, " e2 "));
	assert_non_null(strstr(names, " e3 "));
	get_names("routes", names, sizeof(names));
	assert_non_null(strstr(names, " app "));
	get_names("gateways", names, sizeof(names));
	assert_non_null(strstr(names, " eg "));
	fes = CLI_JSON(&rc, "get", "frontends");
	assert_int_equal(rc, 0);
	assert_int_equal(json_object_array_length(fes), 1);
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_string_equal(e2e_jstr(fe, "protocol"), "TCP");
	assert_true(json_object_object_get_ex(fe, "endpoints", &eps));
	assert_int_equal(json_object_array_length(eps), 2);
	assert_non_null(find_endpoint(fe, EPS[0]));
	assert_non_null(find_endpoint(fe, EPS[1]));
	assert_null(find_endpoint(fe, EPS[2]));
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[0]), "port"), EP_PORT);
	json_object_put(fes);
	{
		struct json_object *doc = CLI_JSON(&rc, "describe", "backend", "e2"), *b, *md, *mine;

		assert_int_equal(rc, 0);
		assert_true(json_object_object_get_ex(doc, "backend", &b));
		assert_true(json_object_object_get_ex(b, "metadata", &md));
		assert_string_equal(e2e_jstr(md, "name"), "e2");
		assert_true(json_object_object_get_ex(doc, "frontends", &mine));
		assert_int_equal(json_object_array_length(mine), 1);
		json_object_put(doc);
	}

	/* Traffic: a client in the test cgroup reaches both endpoints, and getpeername shows the frontend. */
	before = stats_now();
	s = connect_n(200, true);
	e2e_assert_no_failure(s);
	assert_int_equal(s.total_ok, 200);
	assert_true(s.ok[0] > 0 && s.ok[1] > 0);
	assert_int_equal(s.ok[2], 0);
	after = stats_now();
	assert_int_equal(after.fe - before.fe, 200);
	for (int e = 0; e < NEPS; e++)
		if (after.ep[e] - before.ep[e] != s.ok[e])
			fail_msg("stats for %s: %ld connects counted, %ld made", EPS[e], after.ep[e] - before.ep[e],
				 s.ok[e]);
}

/* Weights 90/10 over 10,000 TCP connections land within 2 percentage points. */
static void test_weights_90_10(void **state)
{
	struct json_object *fes, *fe;
	struct counters before, after;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(90, 10, 0);
	fes = CLI_JSON(&rc, "get", "frontends");
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[0]), "weight"), 90);
	assert_int_equal(e2e_jint(find_endpoint(fe, EPS[1]), "weight"), 10);
	json_object_put(fes);

	before = stats_now();
	clients_start(2, 5000, false);
	assert_int_equal(clients_stop(true), 0);
	s = clients_sum(2);
	after = stats_now();
	e2e_assert_no_failure(s);
	assert_int_equal(s.total_ok, 10000);
	assert_int_equal(s.ok[2], 0);
	printf("# weights 90/10: %ld to e1, %ld to e2 of 10000\n", s.ok[0], s.ok[1]);
	if (s.ok[0] < 8800 || s.ok[0] > 9200)
		fail_msg("90/10 split: e1 got %ld of 10000 (%.2f%%), outside 88-92%%", s.ok[0], s.ok[0] / 100.0);
	assert_int_equal(after.fe - before.fe, 10000);
	assert_int_equal(after.ep[0] - before.ep[0], s.ok[0]);
	assert_int_equal(after.ep[1] - before.ep[1], s.ok[1]);
}

/* Two configurations applied alternately 500 times while 4 clients connect: none fails or strays. */
static void test_hammer_apply_under_load(void **state)
{
	static char ya[16384], yb[16384];
	const int wa[NEPS] = { 1, 1, 0 }, wb[NEPS] = { 0, 0, 1 };
	struct json_object *ra, *rb;
	int refused = 0, stuck;
	long t0, ms;
	struct e2e_sum s;
	char why[512] = "";

	NEED_ENV();
	daemon_ensure();
	yaml_all(ya, sizeof(ya), wa, NULL);
	yaml_all(yb, sizeof(yb), wb, NULL);
	ra = apply_req("a.yaml", ya);
	rb = apply_req("b.yaml", yb);
	t0 = kb_now_ms();
	clients_start(4, 0, false);
	if (!clients_reach(4, 100, 10000)) {
		json_object_put(ra);
		json_object_put(rb);
		fail_msg("clients made no progress before the applies");
	}
	for (int i = 0; i < 500; i++) {
		struct json_object *reply = kb_ctl_call(E.env.sock, i % 2 ? rb : ra, 30000);

		if (!e2e_reply_ok(reply)) {
			if (!refused++)
				snprintf(why, sizeof(why), "%s",
					 reply ? json_object_to_json_string(reply) : strerror(errno));
		}
		json_object_put(reply);
	}
	/* A last stretch on the final configuration. */
	clients_reach(4, clients_sum(4).total_ok + 200, 5000);
	stuck = clients_stop(false);
	ms = kb_now_ms() - t0;
	json_object_put(ra);
	json_object_put(rb);
	s = clients_sum(4);
	printf("# hammer: %ld connections (e1 %ld, e2 %ld, e3 %ld), %ld failed, 500 applies (%d refused) in %ld ms\n",
	       s.total_ok + s.fail + s.bad, s.ok[0], s.ok[1], s.ok[2], s.fail, refused, ms);
	if (refused)
		fail_msg("%d of 500 applies refused; first: %s", refused, why);
	assert_int_equal(stuck, 0);
	e2e_assert_no_failure(s);
	/* Both configurations served traffic, so the check above covered swaps. */
	assert_true(s.ok[0] + s.ok[1] > 0);
	assert_true(s.ok[2] > 0);
	/* The last apply was B: only e3 now. */
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[2], 50);
}

/* kill -9: steering goes on with no process; a restarted daemon adopts the pins and restores the state. */
static void test_kill9_and_restart(void **state)
{
	struct json_object *st, *fes, *fe;
	struct e2e_sum s, killed;
	__u32 map_id, link_id;
	char names[512];
	long objects, c0;
	int rc, stuck;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	objects = e2e_jint(st, "objects");
	json_object_put(st);
	assert_true(objects >= 6);

	map_id = pinned_id("frontends", false);
	link_id = pinned_id("links/connect4", true);
	assert_true(map_id && link_id);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);

	clients_start(2, 0, true);
	assert_true(clients_reach(2, 200, 10000));
	kill(E.daemon, SIGKILL);
	waitpid(E.daemon, NULL, 0);
	E.daemon = 0;
	assert_int_equal(count_our_processes(), 0);

	/* No kbackend process at all: the looping clients keep landing on endpoints, and so does a new one. */
	c0 = clients_sum(2).total_ok;
	if (!clients_reach(2, c0 + 500, 10000))
		fail_msg("no progress with the daemon dead: %ld -> %ld", c0, clients_sum(2).total_ok);
	s = connect_n(50, true);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 50);
	assert_int_equal(count_our_processes(), 0);
	killed = clients_sum(2);
	e2e_assert_no_failure(killed);

	/* Restart while the clients keep going: the new daemon adopts the pins and restores the state. */
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not restart over its pins");
	}
	c0 = clients_sum(2).total_ok;
	assert_true(clients_reach(2, c0 + 200, 10000));
	/* Adopted, not rebuilt: the same maps and links, and still one program on the hook. */
	assert_int_equal(pinned_id("frontends", false), map_id);
	assert_int_equal(pinned_id("links/connect4", true), link_id);
	assert_int_equal(cgroup_progs(BPF_CGROUP_INET4_CONNECT), 1);
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	assert_int_equal(e2e_jint(st, "objects"), objects);
	json_object_put(st);
	get_names("backends", names, sizeof(names));
	assert_non_null(strstr(names, " e1 "));
	assert_non_null(strstr(names, " e2 "));
	assert_non_null(strstr(names, " e3 "));
	get_names("routes", names, sizeof(names));
	assert_non_null(strstr(names, " app "));
	fes = CLI_JSON(&rc, "get", "frontends");
	assert_int_equal(rc, 0);
	fe = find_frontend(fes, FE_ADDR, FE_PORT);
	assert_non_null(fe);
	assert_non_null(find_endpoint(fe, EPS[0]));
	assert_non_null(find_endpoint(fe, EPS[1]));
	json_object_put(fes);

	/* The adopted maps take new writes: switch to e3 while the clients run. */
	apply_weights(0, 0, 1);
	c0 = clients_sum(2).total_ok;
	assert_true(clients_reach(2, c0 + 200, 10000));
	stuck = clients_stop(false);
	s = clients_sum(2);
	printf("# kill -9: %ld connections up to the restart, %ld in all, %ld failed\n", killed.total_ok,
	       s.total_ok, s.fail);
	assert_int_equal(stuck, 0);
	e2e_assert_no_failure(s);
	assert_true(s.ok[2] > 0);
	s = connect_n(50, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[2], 50);
}

/* Connect to the control socket; -errno on failure. */
static int ctl_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", E.env.sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Read one reply frame within 10 s: 1 with *reply set, 0 when the daemon closed without one, -errno. */
static int ctl_read(int fd, struct json_object **reply)
{
	struct kb_frame_reader r = { 0 };
	long deadline = kb_now_ms() + 10000;
	int ret;

	*reply = NULL;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - kb_now_ms();
		int err;

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		err = kb_frame_read(fd, &r);
		if (err == 0)
			continue;
		if (err == 1) {
			*reply = json_tokener_parse(r.msg);
			ret = *reply ? 1 : -EBADMSG;
		} else {
			ret = r.got == 0 && (err == -EPIPE || err == -ECONNRESET) ? 0 : err;
		}
		break;
	}
	kb_frame_reset(&r);
	return ret;
}

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Send raw bytes, then read what comes back. Returns the reply (or NULL if the daemon just closed). */
static struct json_object *raw_exchange(const void *buf, size_t len, bool shut)
{
	struct json_object *reply;
	int fd = ctl_connect(), r;

	assert_true(fd >= 0);
	send_all(fd, buf, len);
	if (shut)
		shutdown(fd, SHUT_WR);
	r = ctl_read(fd, &reply);
	close(fd);
	assert_true(r >= 0);
	return reply;
}

static void assert_refused_reply(struct json_object *reply, const char *needle)
{
	if (!reply)
		fail_msg("no reply");
	if (e2e_reply_ok(reply) || !*e2e_jstr(reply, "error"))
		fail_msg("expected an error reply, got %s", json_object_to_json_string(reply));
	if (needle && !strstr(e2e_jstr(reply, "error"), needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e2e_jstr(reply, "error"), needle);
	json_object_put(reply);
}

static void assert_serves(long objects)
{
	struct json_object *st = ctl("status", 5000);

	if (!e2e_reply_ok(st))
		fail_msg("daemon stopped serving: %s", st ? json_object_to_json_string(st) : strerror(errno));
	assert_int_equal(e2e_jint(st, "objects"), objects);
	json_object_put(st);
	assert_true(waitpid(E.daemon, NULL, WNOHANG) == 0);
}

/*
 * As uid/gid 65534: a status call through kb_ctl_call (raw: connect and read
 * whatever the daemon says unasked). "E<errno>" or the reply's JSON in out.
 */
static void call_as_nobody(bool raw, char *out, size_t len)
{
	int p[2];
	pid_t pid;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct json_object *r = NULL;
		char res[1024];

		e2e_child_init();
		close(p[0]);
		alarm(20);
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		if (raw) {
			int fd = ctl_connect(), got = fd < 0 ? fd : ctl_read(fd, &r);

			errno = got < 0 ? -got : EPIPE;
		} else {
			r = ctl("status", 10000);
		}
		if (r)
			snprintf(res, sizeof(res), "%s", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
		else
			snprintf(res, sizeof(res), "E%d", errno);
		if (write(p[1], res, strlen(res)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], out, len - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
}

/* Garbage, non-JSON, oversized, truncated and foreign-uid requests: each is answered or dropped, and the daemon serves on. */
static void test_bad_control_requests(void **state)
{
	static const unsigned char garbage[] = "GET / HTTP/1.1\r\nHost: kbackend\r\n\r\n\xff\xfe\x00\x01garbage";
	static const unsigned char binary[] = { 0, 0, 0, 12, 0xff, 0xfe, 0, 1, '{', 'o', 'p', 0, 0x80, 0xc3, '(', '}' };
	static const unsigned char oversized[] = { 0x04, 0x00, 0x00, 0x01, '{' };	/* 64 MiB + 1 */
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xff };
	static const unsigned char empty[] = { 0, 0, 0, 0 };
	unsigned char trunc[14] = { 0, 0, 0, 100, '{', '"', 'o', 'p', '"', ':', '"', 's', 't', 'a' };
	struct json_object *st, *reply;
	char out[1024], out2[1024], want[32];
	long objects;
	int fd, slow;

	NEED_ENV();
	daemon_ensure();
	st = ctl("status", 5000);
	assert_true(e2e_reply_ok(st));
	objects = e2e_jint(st, "objects");
	json_object_put(st);

	/* Garbage bytes (its first four read as a length far over the limit). */
	reply = raw_exchange(garbage, sizeof(garbage) - 1, true);
	if (reply)
		assert_refused_reply(reply, NULL);
	assert_serves(objects);

	/* A well-formed frame whose body is binary, not JSON. */
	assert_refused_reply(raw_exchange(binary, sizeof(binary), false), "malformed");
	assert_serves(objects);

	/* JSON, but not a request. */
	{
		const char *bodies[] = { "[1,2,3]", "{\"op\":42}", "{\"op\":\"reboot\"}", "{\"op\":\"apply\",\"files\":7}",
					 "{\"op\":\"apply\",\"files\":[{\"name\":1}]}", "\"status\"" };

		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			fd = ctl_connect();
			assert_true(fd >= 0);
			assert_int_equal(kb_ctl_write_frame(fd, bodies[i], strlen(bodies[i])), 0);
			assert_true(ctl_read(fd, &reply) == 1);
			close(fd);
			assert_refused_reply(reply, NULL);
			assert_serves(objects);
		}
	}

	/* A zero-length frame. */
	assert_refused_reply(raw_exchange(empty, sizeof(empty), false), "malformed");
	assert_serves(objects);

	/* Length headers over the 64 MiB limit are refused unread. */
	assert_refused_reply(raw_exchange(oversized, sizeof(oversized), false), "too large");
	assert_serves(objects);
	assert_refused_reply(raw_exchange(huge, sizeof(huge), false), "too large");
	assert_serves(objects);

	/* Truncated: the header says 100 bytes, 10 come, then the client goes away. */
	fd = ctl_connect();
	assert_true(fd >= 0);
	send_all(fd, trunc, sizeof(trunc));
	close(fd);
	assert_serves(objects);

	/* A client that stalls mid-frame does not hold up the others. */
	slow = ctl_connect();
	assert_true(slow >= 0);
	send_all(slow, trunc, 2);
	{
		long t0 = kb_now_ms();

		assert_serves(objects);
		assert_true(kb_now_ms() - t0 < 2000);
	}
	close(slow);
	assert_serves(objects);

	/* Another uid: the 0600 socket (in a 0700 directory) refuses it, or the daemon does. */
	call_as_nobody(false, out, sizeof(out));
	snprintf(want, sizeof(want), "E%d", EACCES);
	if (strcmp(out, want)) {
		reply = json_tokener_parse(out);
		if (!reply)
			fail_msg("uid 65534: unexpected result %s", out);
		assert_refused_reply(reply, "permission");
	}
	assert_serves(objects);

	/* Opened up by hand: the daemon's own peer check refuses the uid. */
	assert_int_equal(chmod(E.env.tmp, 0711), 0);
	assert_int_equal(chmod(E.env.sock, 0666), 0);
	call_as_nobody(true, out, sizeof(out));
	call_as_nobody(false, out2, sizeof(out2));
	chmod(E.env.sock, 0600);
	chmod(E.env.tmp, 0700);
	reply = json_tokener_parse(out);
	if (!reply)
		fail_msg("uid 65534 through a 0666 socket: expected the daemon's refusal, got %s", out);
	assert_refused_reply(reply, "permission");
	/* The same refusal reaches a client that sent its request first (as the CLI does). */
	reply = json_tokener_parse(out2);
	if (!reply)
		fail_msg("uid 65534 through a 0666 socket, kb_ctl_call: expected the daemon's refusal, got %s", out2);
	assert_refused_reply(reply, "permission");
	assert_serves(objects);

	/* Still steering. */
	{
		struct e2e_sum s = connect_n(20, false);

		e2e_assert_no_failure(s);
		assert_int_equal(s.total_ok, 20);
	}
}

/* Refused applies (SSRF, YAML syntax, partly valid) change nothing: maps, get, stored state, traffic. */
static void test_refused_apply_changes_nothing(void **state)
{
	static const char yaml_broken[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e4\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints: [ { ip: { address: 198.51.100.4, port: 8080 }\n"
		"    - broken: [\n";
	static const char yaml_partly[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e4\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 198.51.100.4\n"
		"        port: 8080\n"
		"---\n"
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e2\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 169.254.169.254\n"
		"        port: 80\n";
	/* The node's own address (its veth in the node netns): refused by the SSRF guard's node rule. */
	static const char yaml_node[] =
		"apiVersion: gateway.envoyproxy.io/v1alpha1\n"
		"kind: Backend\n"
		"metadata:\n"
		"  name: e5\n"
		"  namespace: default\n"
		"spec:\n"
		"  endpoints:\n"
		"    - ip:\n"
		"        address: 198.51.100.254\n"
		"        port: 8080\n";
	static char loopback[16384];
	const int w[NEPS] = { 1, 1, 0 };
	const char *files[4] = { loopback, yaml_broken, yaml_partly, yaml_node };
	char path[PATH_MAX + 32], statefile[PATH_MAX + 32], *map0, *map1, *get0, *get1, *fe0, *fe1, *state0, *state1;
	struct json_object *st, *reply;
	long errors0, applies0;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	yaml_all(loopback, sizeof(loopback), w, "127.0.0.1");

	st = ctl("status", 5000);
	errors0 = e2e_jint(st, "applyErrors");
	applies0 = e2e_jint(st, "applies");
	json_object_put(st);
	kb_store_path(E.env.state, statefile, sizeof(statefile));
	map0 = dump_frontends_map();
	assert_non_null(strchr(map0, '\n'));
	assert_int_equal(CLI(&get0, "get", "all", "-A", "-o", "json"), 0);
	assert_int_equal(CLI(&fe0, "get", "frontends", "-o", "json"), 0);
	state0 = e2e_read_text(statefile);
	assert_non_null(state0);

	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/refused-%d.yaml", E.env.tmp, i);
		assert_int_equal(e2e_write_file(path, files[i]), 0);
		reply = CLI_JSON(&rc, "apply", "-f", path);
		if (rc != 1 || e2e_reply_ok(reply))
			fail_msg("refused apply %d: exit %d, %s", i, rc, json_object_to_json_string(reply));
		if (i == 3 && !strstr(json_object_to_json_string(reply), "node"))
			fail_msg("node address: the refusal does not say why: %s", json_object_to_json_string(reply));
		json_object_put(reply);
	}

	map1 = dump_frontends_map();
	assert_int_equal(CLI(&get1, "get", "all", "-A", "-o", "json"), 0);
	assert_int_equal(CLI(&fe1, "get", "frontends", "-o", "json"), 0);
	state1 = e2e_read_text(statefile);
	assert_string_equal(map0, map1);
	assert_string_equal(get0, get1);
	assert_string_equal(fe0, fe1);
	assert_non_null(state1);
	assert_string_equal(state0, state1);
	assert_null(strstr(get1, "\"e4\""));
	free(map0);
	free(map1);
	free(get0);
	free(get1);
	free(fe0);
	free(fe1);
	free(state0);
	free(state1);

	st = ctl("status", 5000);
	assert_int_equal(e2e_jint(st, "applyErrors"), errors0 + 4);
	assert_int_equal(e2e_jint(st, "applies"), applies0);
	json_object_put(st);

	s = connect_n(100, false);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[0] + s.ok[1], 100);
}

/* `kbackend unload`: no pin, no program on the cgroup, no daemon, no steering. */
static void test_unload_leaves_nothing(void **state)
{
	static const enum bpf_attach_type hooks[] = {
		BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_UDP4_SENDMSG,
		BPF_CGROUP_UDP6_SENDMSG, BPF_CGROUP_UDP4_RECVMSG, BPF_CGROUP_UDP6_RECVMSG,
		BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET6_GETPEERNAME, BPF_CGROUP_INET4_BIND,
		BPF_CGROUP_INET6_BIND, BPF_CGROUP_SOCK_OPS,
	};
	char names[4096], *out = NULL;
	long deadline;
	int status = -1, rc, n;
	pid_t dpid;
	struct e2e_sum s;

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	/* The checks below can fail: before unload there are pins and programs. */
	assert_true(pin_entries(names, sizeof(names)) > 0);
	assert_true(cgroup_progs(BPF_CGROUP_INET4_CONNECT) > 0);
	assert_int_equal(count_our_processes(), 1);

	dpid = E.daemon;
	rc = CLI(&out, "unload", "--bpffs", E.env.bpffs);
	free(out);
	assert_int_equal(rc, 0);
	/* Checked as soon as the CLI returns, as a user's next command would. */
	n = pin_entries(names, sizeof(names));
	if (n > 0)
		fail_msg("pins left under %s after unload: %s", E.env.bpffs, names);
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++)
		if (cgroup_progs(hooks[i]))
			fail_msg("%u program(s) still attached to %s for attach type %d", cgroup_progs(hooks[i]),
				 E.env.cgroup, hooks[i]);
	for (deadline = kb_now_ms() + 5000; kb_now_ms() < deadline; e2e_sleep_ms(10))
		if (waitpid(dpid, &status, WNOHANG) == dpid)
			break;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("the daemon did not exit cleanly after unload (status %#x)", status);
	E.daemon = 0;
	assert_int_equal(count_our_processes(), 0);
	assert_false(e2e_exists(E.env.sock));

	/* Nothing steers any more: the frontend is unroutable from the node netns. */
	s = connect_n(1, false);
	assert_int_equal(s.fail, 1);
	assert_int_equal(s.first_err, ENETUNREACH);
}

/* ---- replace, a bad state file, stalled control clients (issue 11) ---- */

/* The baseline (weights 1/1/0) written to <tmp>/name; its path in path. */
static void write_yaml(char *path, size_t len, const char *name, const char *content)
{
	snprintf(path, len, "%s/%s", E.env.tmp, name);
	assert_int_equal(e2e_write_file(path, content), 0);
}

static void write_baseline(char *path, size_t len)
{
	static const int w[NEPS] = { 1, 1, 0 };
	static char yaml[16384];

	yaml_all(yaml, sizeof(yaml), w, NULL);
	write_yaml(path, len, "baseline.yaml", yaml);
}

/* `kbackend apply --replace -f path`: fails the test unless accepted. */
static void replace_with(const char *path)
{
	struct json_object *reply;
	int rc;

	reply = CLI_JSON(&rc, "apply", "--replace", "-f", path);
	if (rc != 0 || !e2e_reply_ok(reply)) {
		dump_log();
		fail_msg("apply --replace -f %s: exit %d, %s", path, rc, json_object_to_json_string(reply));
	}
	json_object_put(reply);
}

static long status_objects(void)
{
	struct json_object *st = ctl("status", 5000);
	long n = e2e_jint(st, "objects");

	json_object_put(st);
	return n;
}

/* Lines of dump_frontends_map(): the frontends the pinned map holds. */
static int pinned_frontends(void)
{
	char *m = dump_frontends_map();
	int n = 0;

	for (char *p = m; *p; p++)
		n += *p == '\n';
	free(m);
	return n;
}

/* A Gateway with one TCP listener "tcp" at addr:port. */
static void yaml_gateway(char *buf, size_t len, const char *name, const char *addr, int port)
{
	snprintf(buf, len,
		 "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: %s\n  namespace: default\n"
		 "spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: %s\n"
		 "  listeners:\n    - name: tcp\n      protocol: TCP\n      port: %d\n",
		 name, addr, port);
}

/* A Backend, a second Gateway (198.18.0.11:81) and a route to it: three objects and one frontend on top of the baseline. */
static void yaml_extra(char *buf, size_t len)
{
	char gw[1024];

	yaml_gateway(gw, sizeof(gw), "eg2", "198.18.0.11", 81);
	snprintf(buf, len,
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: extra\n"
		 "  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 198.51.100.9\n"
		 "        port: 8080\n---\n%s---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: app2\n"
		 "  namespace: default\nspec:\n  parentRefs:\n    - name: eg2\n      sectionName: tcp\n  rules:\n"
		 "    - backendRefs:\n        - group: gateway.envoyproxy.io\n          kind: Backend\n"
		 "          name: extra\n",
		 gw);
}

/* `apply --replace`: the request is the whole state; objects it does not name go, from the store and the maps; all or nothing. */
static void test_replace_removes_unnamed(void **state)
{
	char base[PATH_MAX], extra[PATH_MAX], bad[PATH_MAX], *map0, *map1;
	static char yaml[32768];
	struct json_object *reply, *fes, *req;
	long objects;
	int rc;

	NEED_ENV();
	daemon_ensure();
	write_baseline(base, sizeof(base));
	replace_with(base);
	objects = status_objects();
	assert_int_equal(pinned_frontends(), 1);
	yaml_extra(yaml, sizeof(yaml));
	write_yaml(extra, sizeof(extra), "extra.yaml", yaml);
	reply = CLI_JSON(&rc, "apply", "-f", extra);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);
	assert_int_equal(pinned_frontends(), 2);

	/* A dry run computes the request alone: one frontend, where a merging dry run shows two. */
	reply = CLI_JSON(&rc, "apply", "--replace", "--dry-run", "-f", base);
	assert_int_equal(rc, 0);
	assert_true(e2e_reply_ok(reply));
	assert_non_null(fes = e2e_jget(reply, "frontends"));
	assert_int_equal(json_object_array_length(fes), 1);
	json_object_put(reply);
	reply = CLI_JSON(&rc, "apply", "--dry-run", "-f", base);
	assert_int_equal(rc, 0);
	assert_int_equal(json_object_array_length(e2e_jget(reply, "frontends")), 2);
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);

	/* All or nothing: a replace with one refused object changes nothing. */
	map0 = e2e_read_text(base);
	assert_non_null(map0);
	snprintf(yaml, sizeof(yaml), "%s---\n%s", map0,
		 "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: meta\n"
		 "  namespace: default\nspec:\n  endpoints:\n    - ip:\n        address: 169.254.169.254\n"
		 "        port: 80\n");
	free(map0);
	write_yaml(bad, sizeof(bad), "replace-refused.yaml", yaml);
	map0 = dump_frontends_map();
	reply = CLI_JSON(&rc, "apply", "--replace", "-f", bad);
	if (rc != 1 || e2e_reply_ok(reply))
		fail_msg("a replace with a refused object: exit %d, %s", rc, json_object_to_json_string(reply));
	json_object_put(reply);
	map1 = dump_frontends_map();
	assert_string_equal(map0, map1);
	free(map0);
	free(map1);
	assert_int_equal(status_objects(), objects + 3);

	/* The replace: the extra objects and their frontend are gone, the baseline serves on. */
	replace_with(base);
	assert_int_equal(status_objects(), objects);
	assert_int_equal(pinned_frontends(), 1);
	{
		char names[512];

		get_names("backends", names, sizeof(names));
		assert_null(strstr(names, " extra "));
		get_names("gateways", names, sizeof(names));
		assert_null(strstr(names, " eg2 "));
	}

	/* The op on the control socket, as test_health.c sends it: the baseline and the extra objects. */
	{
		char *b = e2e_read_text(base), *x = e2e_read_text(extra);

		assert_true(b && x);
		snprintf(yaml, sizeof(yaml), "%s---\n%s", b, x);
		free(b);
		free(x);
	}
	req = e2e_files_req("replace", "both.yaml", yaml);
	reply = kb_ctl_call(E.env.sock, req, 30000);
	json_object_put(req);
	if (!e2e_reply_ok(reply))
		fail_msg("op replace: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
	json_object_put(reply);
	assert_int_equal(status_objects(), objects + 3);
	assert_int_equal(pinned_frontends(), 2);
	replace_with(base);
	assert_int_equal(status_objects(), objects);
	{
		struct e2e_sum s = connect_n(50, false);

		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);
	}
}

/* Entries named applied.yaml.bad-* in the state dir: their count, the first one's path in path. */
static int state_aside(char *path, size_t len)
{
	char names[1024];
	int n = dir_entries(E.env.state, KB_STATE_FILE ".bad-", names, sizeof(names));

	path[0] = '\0';
	if (n > 0)
		snprintf(path, len, "%s/%.*s", E.env.state, (int)strcspn(names, " "), names);
	return n < 0 ? 0 : n;
}

enum bad_state { BAD_TRUNCATED, BAD_GARBAGE, BAD_FUTURE, BAD_UNREADABLE };

/* Damage the state file as kind says; what it holds afterwards (NULL: not a file). */
static char *damage_state(enum bad_state kind, const char *file)
{
	char *text = e2e_read_text(file), *p, *body;
	static char buf[65536];

	assert_non_null(text);
	switch (kind) {
	case BAD_TRUNCATED:
		/* Cut at the last document boundary: still valid YAML, but the route is gone. */
		p = strstr(text, "\n---\n");
		for (char *q = p; q; q = strstr(q + 1, "\n---\n"))
			p = q;
		assert_non_null(p);
		p[1] = '\0';
		break;
	case BAD_GARBAGE:
		snprintf(buf, sizeof(buf), "\x7f" "ELF\x02\x01 not: [a state file\n\xff\xfe{{{\n");
		free(text);
		text = strdup(buf);
		break;
	case BAD_FUTURE:
		/* A newer kbackend's file: the same documents under a format number this one does not know. */
		for (body = text; *body == '#';)
			body = strchr(body, '\n') ? strchr(body, '\n') + 1 : body + strlen(body);
		snprintf(buf, sizeof(buf), "# kbackend state: the accepted objects. Written by the daemon; do not edit.\n"
					   "# kbackend-state-format: 99\n%s", body);
		free(text);
		text = strdup(buf);
		break;
	case BAD_UNREADABLE:
		/* A directory where the file should be: open() works, read() fails with EISDIR, even for root. */
		free(text);
		assert_int_equal(unlink(file), 0);
		assert_int_equal(mkdir(file, 0700), 0);
		return NULL;
	}
	assert_int_equal(e2e_write_file(file, text), 0);
	return text;
}

/*
 * A truncated, garbage, future-format or unreadable applied.yaml: after a
 * restart the pinned frontend still serves, status says the state is
 * degraded, an apply that would drop the frontend is refused with the way
 * out, the bad file is kept aside, and a replace recovers.
 */
static void test_bad_state_file_keeps_serving(void **state)
{
	static const char *const kinds[] = { "truncated", "garbage", "future", "unreadable" };
	static const char *const problem[] = { "truncated", "not a kbackend state file", "newer", "Is a directory" };
	char file[PATH_MAX], base[PATH_MAX], other[PATH_MAX], aside[PATH_MAX], yaml[1024], *bad, *out;
	struct json_object *st, *sf, *reply, *unacc;
	struct e2e_sum s;
	int rc;

	NEED_ENV();
	kb_store_path(E.env.state, file, sizeof(file));
	write_baseline(base, sizeof(base));
	/* A Gateway that no route uses, accepted on its own: an apply that names only it. */
	yaml_gateway(yaml, sizeof(yaml), "other", "198.18.0.12", 82);
	write_yaml(other, sizeof(other), "other.yaml", yaml);
	for (int k = BAD_TRUNCATED; k <= BAD_UNREADABLE; k++) {
		printf("# bad state file: %s\n", kinds[k]);
		daemon_ensure();
		apply_weights(1, 1, 0);
		s = connect_n(20, false);
		e2e_assert_no_failure(s);
		daemon_kill();
		e2e_sh("rm -rf '%s'/" KB_STATE_FILE ".bad-*", E.env.state);
		bad = damage_state(k, file);
		if (daemon_start()) {
			dump_log();
			fail_msg("%s: the daemon did not start", kinds[k]);
		}

		/* The pinned frontend still serves, on both endpoints it had. */
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);

		/* An apply that names only another object would drop the frontend: refused, with the way out. */
		reply = CLI_JSON(&rc, "apply", "-f", other);
		if (rc != 1 || e2e_reply_ok(reply) || !strstr(e2e_jstr(reply, "error"), "--replace") ||
		    !strstr(e2e_jstr(reply, "error"), "unload") || !strstr(e2e_jstr(reply, "error"), FE_ADDR)) {
			s = connect_n(20, false);
			fail_msg("%s: apply of another object: exit %d, %s; then %ld of 20 connections failed (%s)",
				 kinds[k], rc, json_object_to_json_string(reply), s.fail, strerror(s.first_err));
		}
		json_object_put(reply);
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);

		/* status says so, in JSON and in the table. */
		st = CLI_JSON(&rc, "status");
		assert_int_equal(rc, 0);
		if (!e2e_jget(st, "degraded") || !json_object_get_boolean(e2e_jget(st, "degraded")))
			fail_msg("%s: status is not degraded: %s", kinds[k], json_object_to_json_string(st));
		sf = e2e_jget(st, "stateFile");
		if (!strstr(e2e_jstr(sf, "problem"), problem[k]))
			fail_msg("%s: the problem does not say \"%s\": %s", kinds[k], problem[k],
				 json_object_to_json_string(st));
		unacc = e2e_jget(sf, "unaccountedFrontends");
		assert_non_null(unacc);
		assert_int_equal(json_object_array_length(unacc), 1);
		assert_string_equal(json_object_get_string(json_object_array_get_idx(unacc, 0)), FE_ADDR ":80/TCP");
		json_object_put(st);
		assert_int_equal(CLI(&out, "status"), 0);
		if (!strstr(out, "DEGRADED") || !strstr(out, "--replace"))
			fail_msg("%s: `kbackend status` does not say it: %s", kinds[k], out);
		free(out);

		/* Kept aside, as it was. */
		assert_int_equal(state_aside(aside, sizeof(aside)), 1);
		if (bad) {
			char *kept = e2e_read_text(aside);

			assert_non_null(kept);
			assert_string_equal(kept, bad);
			free(kept);
		} else {
			struct stat sb;

			assert_int_equal(stat(aside, &sb), 0);
			assert_true(S_ISDIR(sb.st_mode));
		}
		free(bad);

		if (k == BAD_GARBAGE) {
			/* Restarted again (no applied.yaml now): still degraded, still serving, nothing new set aside. */
			daemon_kill();
			if (daemon_start())
				fail_msg("%s: the daemon did not restart", kinds[k]);
			st = ctl("status", 5000);
			if (!json_object_get_boolean(e2e_jget(st, "degraded")) ||
			    !strstr(e2e_jstr(e2e_jget(st, "stateFile"), "problem"), aside))
				fail_msg("second restart: not degraded, or the bad file is not named: %s",
					 json_object_to_json_string(st));
			json_object_put(st);
			assert_int_equal(state_aside(aside, sizeof(aside)), 1);
			s = connect_n(50, false);
			e2e_assert_no_failure(s);
		}

		/* The way out: state the whole set. */
		replace_with(base);
		st = ctl("status", 5000);
		if (json_object_get_boolean(e2e_jget(st, "degraded")))
			fail_msg("%s: still degraded after a replace: %s", kinds[k], json_object_to_json_string(st));
		json_object_put(st);
		s = connect_n(50, false);
		e2e_assert_no_failure(s);
		assert_int_equal(s.ok[0] + s.ok[1], 50);
	}
	e2e_sh("rm -rf '%s'/" KB_STATE_FILE ".bad-*", E.env.state);
}

/* Stalled control clients: their fds, closed after the test even when it fails. */
#define STALL_BIG 40
#define STALL_IDLE 10
static int stall_fds[KB_CTL_MAX_CLIENTS + STALL_BIG + STALL_IDLE + 1];
static int nstall_fds;

static int stall_teardown(void **state)
{
	for (int i = 0; i < nstall_fds; i++)
		close(stall_fds[i]);
	nstall_fds = 0;
	return test_teardown(state);
}

static int stall_connect(void)
{
	int fd = ctl_connect();

	assert_true(fd >= 0);
	assert_true(nstall_fds < (int)(sizeof(stall_fds) / sizeof(stall_fds[0])));
	stall_fds[nstall_fds++] = fd;
	return fd;
}

static void stall_close_all(void)
{
	for (int i = 0; i < nstall_fds; i++)
		close(stall_fds[i]);
	nstall_fds = 0;
}

/* Wait until every fd of fds[0..n-1] shows events, bounded; how many did. */
static int wait_events(const int *fds, int n, short events, long timeout_ms)
{
	long deadline = kb_now_ms() + timeout_ms;
	int ready;

	for (;;) {
		ready = 0;
		for (int i = 0; i < n; i++) {
			struct pollfd p = { .fd = fds[i], .events = events };

			ready += poll(&p, 1, 0) == 1 && (p.revents & events);
		}
		if (ready == n || kb_now_ms() > deadline)
			return ready;
		e2e_sleep_ms(20);
	}
}

static long control_clients(const char *what)
{
	struct json_object *st = ctl("status", 5000);
	long n = e2e_jint(e2e_jget(st, "controlClients"), what);

	json_object_put(st);
	return n;
}

/*
 * Control clients that send a request with a large reply and never read, or
 * send nothing, or half a frame, do not hold up the daemon: status answers
 * within 100 ms, a reader that reads gets the whole large reply, the stalled
 * ones are dropped after the deadline, and a client over the limit is told
 * `too many clients`.
 */
static void test_stalled_control_clients(void **state)
{
	static const char req[] = "{\"op\":\"get\",\"what\":\"backends\"}";
	unsigned char half[] = { 0, 0, 0, 40, '{', '"', 'o', 'p' };
	int nbig = 2000, big[STALL_BIG], rc, fd, got;
	char path[PATH_MAX], *out = NULL;
	long ms[5], worst = 0, t0;
	struct json_object *reply, *items;
	size_t len = 0, cap = 1 << 20;
	char *yaml = malloc(cap);

	NEED_ENV();
	daemon_ensure();
	apply_weights(1, 1, 0);
	assert_non_null(yaml);
	/* 2,000 Backends that nothing routes to: `get backends` answers with megabytes. */
	for (int i = 0; i < nbig; i++) {
		if (len + 512 > cap)
			assert_non_null(yaml = realloc(yaml, cap *= 2));
		len += (size_t)snprintf(yaml + len, cap - len,
					"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n"
					"  name: bulk-%d\n  namespace: bulk\nspec:\n  endpoints:\n    - ip:\n"
					"        address: 203.0.113.%d\n        port: %d\n",
					i, 10 + i % 200, 1000 + i);
	}
	write_yaml(path, sizeof(path), "bulk.yaml", yaml);
	free(yaml);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);

	/* For comparison in the output: status with no other client. */
	for (int i = 0; i < 5; i++) {
		t0 = kb_now_ms();
		json_object_put(ctl("status", 30000));
		ms[i] = kb_now_ms() - t0;
	}
	printf("# status alone: %ld %ld %ld %ld %ld ms\n", ms[0], ms[1], ms[2], ms[3], ms[4]);

	/* The stalled: 40 send a request with a large reply and never read; 5 send nothing; 5 half a frame. */
	for (int i = 0; i < STALL_BIG; i++) {
		big[i] = stall_connect();
		assert_int_equal(kb_ctl_write_frame(big[i], req, strlen(req)), 0);
	}
	for (int i = 0; i < STALL_IDLE; i++) {
		fd = stall_connect();
		if (i % 2)
			send_all(fd, half, sizeof(half));
	}
	/* Each large reply has begun to arrive: the daemon has taken every request. */
	got = wait_events(big, STALL_BIG, POLLIN, 30000);
	printf("# %d of %d stalled clients have the start of their reply\n", got, STALL_BIG);

	/* status answers at once (the bound: 100 ms), in-process so that only the request is timed. */
	for (int i = 0; i < 5; i++) {
		t0 = kb_now_ms();
		reply = ctl("status", 30000);
		ms[i] = kb_now_ms() - t0;
		if (!e2e_reply_ok(reply))
			fail_msg("status with stalled clients: %s", reply ? json_object_to_json_string(reply) : strerror(errno));
		json_object_put(reply);
		worst = ms[i] > worst ? ms[i] : worst;
	}
	printf("# status with %d stalled clients: %ld %ld %ld %ld %ld ms\n", STALL_BIG + STALL_IDLE, ms[0], ms[1], ms[2],
	       ms[3], ms[4]);
	if (worst >= 100)
		fail_msg("status took %ld ms with stalled clients (bound: 100 ms)", worst);
	assert_int_equal(got, STALL_BIG);
	assert_int_equal(CLI(&out, "status"), 0);
	free(out);

	/* A reader that reads gets the whole large reply meanwhile. */
	reply = CLI_JSON(&rc, "get", "backends", "-n", "bulk");
	assert_int_equal(rc, 0);
	assert_non_null(items = e2e_jget(reply, "items"));
	assert_int_equal(json_object_array_length(items), nbig);
	{
		/* Large: more than twice what a socket buffer holds, so that a peer that does not read stalls a writer. */
		char *wmem = e2e_read_text("/proc/sys/net/core/wmem_default");
		size_t n = strlen(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));

		assert_non_null(wmem);
		printf("# get backends: %zu bytes (socket buffer %ld)\n", n, atol(wmem));
		assert_true(n > 2 * (size_t)atol(wmem));
		free(wmem);
	}
	json_object_put(reply);

	/* After the deadline the daemon drops the stalled readers (their reply cut short) and the idle ones. */
	t0 = kb_now_ms();
	got = wait_events(big, STALL_BIG, POLLRDHUP, 60000);
	printf("# %d stalled readers dropped after %ld ms\n", got, kb_now_ms() - t0);
	assert_int_equal(got, STALL_BIG);
	{
		struct json_object *r = NULL;

		/* What one of them can still read is a partial frame, then EOF: not a reply. */
		assert_true(ctl_read(big[0], &r) < 0 || r == NULL);
		json_object_put(r);
	}
	assert_true(control_clients("dropped") >= STALL_BIG);
	stall_close_all();
	for (t0 = kb_now_ms(); control_clients("connected") != 1 && kb_now_ms() - t0 < 30000;)
		e2e_sleep_ms(20);
	assert_int_equal(control_clients("connected"), 1);

	/* Every slot held by a half frame: one more client is told why it is not served. */
	for (int i = 0; i < KB_CTL_MAX_CLIENTS; i++)
		send_all(stall_connect(), half, sizeof(half));
	fd = ctl_connect();
	assert_true(fd >= 0);
	assert_int_equal(kb_ctl_write_frame(fd, "{\"op\":\"status\"}", 15), 0);
	rc = ctl_read(fd, &reply);
	close(fd);
	if (rc != 1)
		fail_msg("a client over the limit got no reply (%d: %s)", rc, rc < 0 ? strerror(-rc) : "closed");
	assert_refused_reply(reply, "too many clients");
	stall_close_all();
	for (t0 = kb_now_ms(); !daemon_serves() && kb_now_ms() - t0 < 30000;)
		e2e_sleep_ms(20);
	assert_true(control_clients("refused") >= 1);

	/* Back to the baseline. */
	reply = CLI_JSON(&rc, "delete", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);
	{
		struct e2e_sum s = connect_n(20, false);

		e2e_assert_no_failure(s);
	}
}

/* Interrupted or hung (watchdog): clean up anyway, then fail. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_apply_dir_traffic_and_stats, test_teardown),
		cmocka_unit_test_teardown(test_weights_90_10, test_teardown),
		cmocka_unit_test_teardown(test_refused_apply_changes_nothing, test_teardown),
		cmocka_unit_test_teardown(test_bad_control_requests, test_teardown),
		cmocka_unit_test_teardown(test_hammer_apply_under_load, test_teardown),
		cmocka_unit_test_teardown(test_kill9_and_restart, test_teardown),
		cmocka_unit_test_teardown(test_unload_leaves_nothing, test_teardown),
		cmocka_unit_test_teardown(test_replace_removes_unnamed, test_teardown),
		cmocka_unit_test_teardown(test_bad_state_file_keeps_serving, test_teardown),
		cmocka_unit_test_teardown(test_stalled_control_clients, stall_teardown),
	};

	e2e_main_init("test_daemon", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
