// SPDX-License-Identifier: Apache-2.0
/* The node that test_daemon, test_control and test_state share: its netns, three endpoints, the daemon in it, looping clients, and the daemon's view. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "control/control.h"
#include "dataplane/dataplane.h"
#include "store/store.h"
#include "util.h"

const char *const EPS[NEPS] = { "198.51.100.1", "203.0.113.2", "198.51.100.3" };

struct node_env E;

void dump_log(void)
{
	e2e_dump_file("log", E.env.log, 0);
}

/* ---- manifests: the shape of examples/, with a TCP listener and three Backends ---- */

const char YAML_EG[] =
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

const char YAML_GW[] =
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
void yaml_backends(char *buf, size_t len, const char *e1_addr)
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
void yaml_route(char *buf, size_t len, const int w[NEPS])
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
void yaml_all(char *buf, size_t len, const int w[NEPS], const char *e1_addr)
{
	char be[4096], rt[2048];

	yaml_backends(be, sizeof(be), e1_addr);
	yaml_route(rt, sizeof(rt), w);
	snprintf(buf, len, "%s---\n%s---\n%s---\n%s", YAML_EG, YAML_GW, be, rt);
}

void write_yaml(char *path, size_t len, const char *name, const char *content)
{
	snprintf(path, len, "%s/%s", E.env.tmp, name);
	assert_int_equal(e2e_write_file(path, content), 0);
}

/* ---- the topology ---- */

static int topo_up(void)
{
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "k%cn%d", E.tag, (int)getpid());
	snprintf(vb, sizeof(vb), "k%cb%d", E.tag, (int)getpid());
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
	/*
	 * The endpoints close first, so their netns holds a TIME_WAIT per connection for 60 s. A
	 * kernel sizes that table by its memory: 131,072 on this host, 8,192 in the 2 GiB 6.1 guest,
	 * where the full-count hammer overflowed it 21,068 times; an overflowed socket is freed, a
	 * late segment of its client draws a reset, and a client still in CLOSE_WAIT reads EPIPE
	 * (most likely how test_daemon once lost a connect). Not kbackend's: the same size everywhere.
	 */
	if (e2e_sh("nsenter --net=/run/netns/%s sysctl -qw net.ipv4.tcp_max_tw_buckets=131072", E.be))
		return -1;
	/* The rule that keeps mistakes on this machine: no default route in the node netns. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node))
		return -1;
	return 0;
}

void apply_bulk(char *path, size_t plen, int n, const char *tag)
{
	size_t len = 0, cap = 1 << 20;
	char *yaml = malloc(cap), labels[128] = "";
	struct json_object *reply;
	int rc;

	assert_non_null(yaml);
	if (tag)
		snprintf(labels, sizeof(labels), "  labels:\n    tag: %s\n", tag);
	for (int i = 0; i < n; i++) {
		if (len + 512 > cap)
			assert_non_null(yaml = realloc(yaml, cap *= 2));
		len += (size_t)snprintf(yaml + len, cap - len,
					"---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n"
					"  name: bulk-%d\n  namespace: bulk\n%sspec:\n  endpoints:\n    - ip:\n"
					"        address: 203.0.113.%d\n        port: %d\n",
					i, labels, 10 + i % 200, 1000 + i);
	}
	write_yaml(path, plen, "bulk.yaml", yaml);
	free(yaml);
	reply = CLI_JSON(&rc, "apply", "-f", path);
	assert_int_equal(rc, 0);
	json_object_put(reply);
}

/* ---- the daemon, as a child process in the node netns ---- */

int ctl_connect(void)
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

/* Send one request to the daemon; NULL with errno set when it could not be reached. */
struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

/* The daemon answers `status` with ok. */
bool daemon_serves(void)
{
	return e2e_daemon_serves(E.env.sock, 5000);
}

const char *const *daemon_args;

int daemon_start(void)
{
	const char *argv[32] = { "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				 "--state-dir", E.env.state, "--socket", E.env.sock };
	size_t n = 10;

	for (size_t i = 0; daemon_args && daemon_args[i] && n < 31; i++)
		argv[n++] = daemon_args[i];
	E.daemon = e2e_daemon_spawn(E.env.kb, E.env.log, E.node, argv);
	if (E.daemon < 0) {
		E.daemon = 0;
		return -1;
	}
	return e2e_daemon_wait(&E.daemon, E.env.sock, 15000);
}

void daemon_kill(void)
{
	e2e_kill(&E.daemon);
}

/* A test may leave the daemon dead (kill -9, unload, a failure): the next one gets a fresh one. */
void daemon_ensure(void)
{
	if (E.daemon > 0 && waitpid(E.daemon, NULL, WNOHANG) == 0 && daemon_serves())
		return;
	daemon_kill();
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not start");
	}
}

/* ---- applying through the control socket ---- */

struct json_object *apply_req(const char *name, const char *content)
{
	return e2e_files_req("apply", name, content);
}

/* Apply the whole configuration with these route weights; fails the test unless accepted. */
void apply_weights(int w1, int w2, int w3)
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
void client_spawn(int idx, long limit, bool check_peer)
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
int client_wait(int idx, bool stop, long deadline)
{
	int status = e2e_kid_wait(&E.kids[idx], stop ? &E.t[idx].stop : NULL, deadline);

	return !WIFEXITED(status) || WEXITSTATUS(status);
}

/* Clients on tallies 0..n-1. */
void clients_start(int n, long limit, bool check_peer)
{
	for (int i = 0; i < n; i++)
		client_spawn(i, limit, check_peer);
}

/* Stop (or wait for) every client; returns how many had to be killed or died badly. */
int clients_stop(bool wait_only)
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

void clients_kill(void)
{
	e2e_kids_kill(E.kids, MAX_KIDS);
}

/* Results of tallies first..first+n-1. */
struct e2e_sum tallies_sum(int first, int n)
{
	return e2e_tallies_sum(&E.t[first], n);
}

struct e2e_sum clients_sum(int n)
{
	return tallies_sum(0, n);
}

/* Wait until the answers of clients 0..n-1 reach `target`; false on timeout. */
bool clients_reach(int n, long target, long timeout_ms)
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
struct e2e_sum connect_n(long count, bool check_peer)
{
	client_spawn(MAX_KIDS - 1, count, check_peer);
	assert_int_equal(client_wait(MAX_KIDS - 1, false, kb_now_ms() + 60000), 0);
	return tallies_sum(MAX_KIDS - 1, 1);
}

/* Names of the objects `get KIND -A -o json` lists, as " name name ... ". */
void get_names(const char *kind, char *buf, size_t len)
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

char *dump_frontends_map(void)
{
	return dump_frontends_map_as(false);
}

char *dump_frontends_map_as(bool history_free)
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
		__u32 base;
		char *l;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fefd, &key, &val))
			continue;
		cap = 2 * (sizeof(key) + sizeof(val) + (size_t)val.nslots * sizeof(struct kb_slot)) + 4;
		base = val.slot_base;
		if (history_free)
			val.slot_base = val.frontend_id = 0;
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
			__u32 k = base + s;

			memset(&sl, 0xee, sizeof(sl));
			bpf_map_lookup_elem(slfd, &k, &sl);
			if (history_free)
				sl.endpoint_id = 0;
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

/* The daemon's state dir opened and loaded into m (fails the test unless it loads); caller closes st and frees m. */
void load_stored_state(struct kb_store *st, struct kb_model *m)
{
	char why[1024], note[1024];

	kb_model_init(m);
	kb_store_init(st, E.env.state);
	if (kb_store_load(st, m, why, sizeof(why), note, sizeof(note)) != KB_STORE_OK)
		fail_msg("the stored state does not load: %s", why);
}

/* Entries of dir whose names start with prefix, as "name name ... " in names; their count, -1 when dir does not exist. */
int dir_entries(const char *dir, const char *prefix, char *names, size_t len)
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

/* ---- setup and teardown ---- */

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

int node_setup(const char *name, char tag)
{
	if (e2e_env_setup(&E.env, name))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	E.t = mmap(NULL, sizeof(*E.t) * MAX_KIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.t == MAP_FAILED) {
		E.t = NULL;
		return setup_failed("mmap");
	}
	E.tag = tag;
	snprintf(E.node, sizeof(E.node), "kbt-%cnode-%d", tag, (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-%cbe-%d", tag, (int)getpid());
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

int group_teardown(void **state)
{
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
int test_teardown(void **state)
{
	if (E.t)
		clients_kill();
	return 0;
}
