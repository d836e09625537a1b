// SPDX-License-Identifier: Apache-2.0
/* test_kube's environment: the node netns (and a second one), the test API server and kubectl, the daemons, clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>

#include <json-c/json.h>

#include "e2e.h"
#include "kube_env.h"
#include "dataplane/dataplane.h"
#include "util.h"

const char *const EPS[NEPS] = { "198.51.100.1", "203.0.113.2", "198.51.100.3" };

struct kube_env E;

void dump_log(void)
{
	e2e_dump_file("daemon", E.env.log, 60);
	e2e_dump_file("daemon2", E.log2, 30);
	e2e_dump_file("apiserver", E.apilog, 30);
}

/* ---- the test API server and kubectl ---- */

static int api_start(void);
static void api_stop(void);

int kubectl(char **out, const char *fmt, ...)
{
	char args[2048], cmd[4096], path[PATH_MAX + 16];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/kubectl.out", E.env.tmp);
	snprintf(cmd, sizeof(cmd), "nsenter --net=/run/netns/%s %s --kubeconfig %s --request-timeout=10s %s >%s 2>>%s",
		 E.node, E.kubectl, E.kubeconfig, args, path, E.env.log);
	rc = system(cmd);
	rc = rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
	if (out)
		*out = e2e_read_text(path);
	return rc;
}

void kube(const char *verb, const char *name, const char *json)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s.json", E.env.tmp, name);
	assert_int_equal(e2e_write_file(path, json), 0);
	/* delete --wait=false: kubectl's own wait for the object to go is not what is tested here. */
	if (kubectl(NULL, "%s %s -f %s", verb, strcmp(verb, "delete") ? "--validate=false" : "--wait=false", path)) {
		dump_log();
		fail_msg("kubectl %s -f %s failed", verb, name);
	}
}

char *gwclass(char *buf, size_t len, const char *name, const char *controller)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1\", \"kind\": \"GatewayClass\", "
		 "\"metadata\": {\"name\": \"%s\"}, \"spec\": {\"controllerName\": \"%s\"}}", name, controller);
	return buf;
}

char *gateway(char *buf, size_t len, const char *name, const char *cls, const char *addr)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1\", \"kind\": \"Gateway\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, \"spec\": {\"gatewayClassName\": \"%s\", "
		 "\"addresses\": [{\"type\": \"IPAddress\", \"value\": \"%s\"}], "
		 "\"listeners\": [{\"name\": \"tcp\", \"protocol\": \"TCP\", \"port\": %d}]}}", name, cls, addr, FE_PORT);
	return buf;
}

char *backend(char *buf, size_t len, const char *name, const char *ip, int port, const char *extra)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.envoyproxy.io/v1alpha1\", \"kind\": \"Backend\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, "
		 "\"spec\": {\"endpoints\": [{\"ip\": {\"address\": \"%s\", \"port\": %d}}]%s}}", name, ip, port,
		 extra ? extra : "");
	return buf;
}

/* A TCPRoute on Gateway gw with one backendRef, the JSON object ref. */
static char *route(char *buf, size_t len, const char *name, const char *gw, const char *ref)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1alpha2\", \"kind\": \"TCPRoute\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, \"spec\": {\"parentRefs\": [{\"name\": \"%s\"}], "
		 "\"rules\": [{\"backendRefs\": [%s]}]}}", name, gw, ref);
	return buf;
}

char *tcproute(char *buf, size_t len, const char *name, const char *gw, const char *be)
{
	char ref[256];

	snprintf(ref, sizeof(ref), "{\"group\": \"gateway.envoyproxy.io\", \"kind\": \"Backend\", \"name\": \"%s\"}", be);
	return route(buf, len, name, gw, ref);
}

char *tcproute_svc(char *buf, size_t len, const char *name, const char *gw, const char *svc, int port)
{
	char ref[256];

	snprintf(ref, sizeof(ref), "{\"kind\": \"Service\", \"name\": \"%s\", \"port\": %d}", svc, port);
	return route(buf, len, name, gw, ref);
}

/* ---- the daemon ---- */

struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

/* Another node: its own netns, whose listener of the server it alone reaches, and its own cgroup, pins, socket and state. */
pid_t daemon2_spawn(bool no_status)
{
	const char *const argv[] = { "kbackend", "daemon", "--cgroup", E.cgroup2, "--bpffs", E.bpffs2,
				     "--state-dir", E.state2, "--socket", E.sock2, "--kubeconfig", E.kubeconfig2,
				     "--enable-backend", "--no-inbound", no_status ? "--no-status" : NULL, NULL };
	pid_t pid = e2e_daemon_spawn(E.env.kb, E.log2, E.node2, argv);

	if (pid < 0 || e2e_daemon_wait(&pid, E.sock2, 20000))
		return -1;
	return pid;
}

pid_t daemon_spawn(void)
{
	const char *const argv[] = { "kbackend", "daemon", "--cgroup", E.env.cgroup, "--bpffs", E.env.bpffs,
				     "--state-dir", E.env.state, "--socket", E.env.sock, "--kubeconfig", E.kubeconfig,
				     "--enable-backend", NULL };
	pid_t pid = e2e_daemon_spawn(E.env.kb, E.env.log, E.node, argv);

	if (pid < 0 || e2e_daemon_wait(&pid, E.env.sock, 20000))
		return -1;
	return pid;
}

/* status.kubernetes (a new reference to the whole reply in *st). */
struct json_object *kube_status(struct json_object **st)
{
	*st = ctl("status", 5000);
	if (!e2e_reply_ok(*st))
		fail_msg("status failed: %s", *st ? json_object_to_json_string(*st) : strerror(errno));
	return e2e_jget(*st, "kubernetes");
}

struct json_object *kind_status(struct json_object *k, const char *kind)
{
	struct json_object *kinds = e2e_jget(k, "kinds");

	for (size_t i = 0; kinds && i < json_object_array_length(kinds); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(kinds, i), "kind"), kind))
			return json_object_array_get_idx(kinds, i);
	return NULL;
}

bool refused_has(struct json_object *k, const char *label)
{
	struct json_object *r = e2e_jget(k, "refusedObjects");

	for (size_t i = 0; r && i < json_object_array_length(r); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(r, i), "object"), label))
			return true;
	return false;
}

long backend_count(const char *key)
{
	struct json_object *st, *k = kube_status(&st);
	long n = e2e_jint(kind_status(k, "Backend"), key);

	json_object_put(st);
	return n;
}

/* ---- clients ---- */

/* A client on tally idx in netns and cgroup cg. */
static void spawn(int idx, const char *netns, const char *cg, const char *addr, long limit, int pause_us)
{
	pid_t pid;

	memset(&E.t[idx], 0, sizeof(E.t[idx]));
	E.t[idx].limit = limit;
	E.t[idx].pause_us = pause_us;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		if (e2e_cgroup_enter(cg, 0) || e2e_setns(netns))
			_exit(99);
		e2e_tally_run(&E.t[idx], addr, FE_PORT, true, EPS, NEPS);
	}
	E.kids[idx] = pid;
}

void client_spawn(int idx, const char *addr, long limit, int pause_us)
{
	spawn(idx, E.node, E.env.cgroup, addr, limit, pause_us);
}

static struct e2e_sum connect_in(const char *netns, const char *cg, const char *addr, long count)
{
	int status;

	spawn(MAX_KIDS - 1, netns, cg, addr, count, 0);
	status = e2e_kid_wait(&E.kids[MAX_KIDS - 1], NULL, kb_now_ms() + 60000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return e2e_tallies_sum(&E.t[MAX_KIDS - 1], 1);
}

struct e2e_sum connect_to(const char *addr, long count)
{
	return connect_in(E.node, E.env.cgroup, addr, count);
}

struct e2e_sum connect_to2(const char *addr, long count)
{
	return connect_in(E.node2, E.cgroup2, addr, count);
}

bool steers_only(int ep)
{
	struct e2e_sum s = connect_to(FE_ADDR, 20);

	if (ep < 0)
		return s.fail == 20 && s.total_ok == 0;
	return s.fail == 0 && s.bad == 0 && s.ok[ep] == 20;
}

void wait_steers_within(int ep, long ms)
{
	long deadline = kb_now_ms() + ms;

	while (!steers_only(ep)) {
		if (kb_now_ms() > deadline) {
			struct e2e_sum s = connect_to(FE_ADDR, 20);

			dump_log();
			fail_msg("expected %s: e1 %ld, e2 %ld, e3 %ld, failed %ld", ep < 0 ? "refusals" : EPS[ep], s.ok[0],
				 s.ok[1], s.ok[2], s.fail);
		}
		e2e_sleep_ms(100);
	}
}

void wait_steers(int ep)
{
	wait_steers_within(ep, WAIT_MS);
}

void assert_converged(void)
{
	long deadline = kb_now_ms() + WAIT_MS;
	char *out = NULL;
	long want = -1;

	/* The server's objects of every kind kbackend reads. */
	if (kubectl(&out, "get gatewayclasses,gateways,httproutes,grpcroutes,tlsroutes,tcproutes,udproutes,"
			  "referencegrants,backends,backendtrafficpolicies,services,endpointslices,serviceimports,namespaces "
			  "-A -o json") == 0 && out) {
		struct json_object *l = json_tokener_parse(out);

		want = l ? (long)json_object_array_length(e2e_jget(l, "items")) : -1;
		json_object_put(l);
	}
	free(out);
	assert_true(want > 0);
	for (;;) {
		struct json_object *st, *k = kube_status(&st), *v = NULL;
		bool synced = json_object_get_boolean(e2e_jget(k, "synced"));
		long have = e2e_jint(k, "objects");

		if (synced && have == want) {
			json_object_put(st);
			v = ctl("verify", 20000);
			if (!e2e_reply_ok(v)) {
				dump_log();
				fail_msg("verify: %s", v ? json_object_to_json_string(v) : strerror(errno));
			}
			json_object_put(v);
			return;
		}
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("not converged: synced %d, %ld object(s) held, the server has %ld; %s", synced, have, want,
				 json_object_to_json_string(k));
		}
		json_object_put(st);
		e2e_sleep_ms(100);
	}
}

/* ---- topology and lifecycle ---- */

static int topo_up(void)
{
	char vn[32], vb[32], vn2[32], vb2[32];

	snprintf(vn, sizeof(vn), "kkn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kkb%d", (int)getpid());
	snprintf(vn2, sizeof(vn2), "kk2n%d", (int)getpid());
	snprintf(vb2, sizeof(vb2), "kk2b%d", (int)getpid());
	E.netns_made = true;
	if (e2e_sh("ip netns add %s", E.node) || e2e_sh("ip netns add %s", E.be) || e2e_sh("ip netns add %s", E.node2) ||
	    e2e_sh("ip -n %s link set lo up", E.node2))
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
	/* node2's own veth to the endpoints: one address, answered through a host route beside node's /24. */
	if (e2e_sh("ip -n %s link add %s type veth peer name %s netns %s", E.node2, vn2, vb2, E.be) ||
	    e2e_sh("ip -n %s addr add " NODE2_ADDR "/24 dev %s", E.node2, vn2) ||
	    e2e_sh("ip -n %s link set %s up", E.node2, vn2) || e2e_sh("ip -n %s link set %s up", E.be, vb2) ||
	    e2e_sh("ip -n %s route add 203.0.113.0/24 dev %s", E.node2, vn2) ||
	    e2e_sh("ip -n %s route add " NODE2_ADDR "/32 dev %s", E.be, vb2))
		return -1;
	/* The endpoints close first: a TIME_WAIT each for 60 s, beyond a small guest's default table (e2e_node.c). */
	if (e2e_sh("nsenter --net=/run/netns/%s sysctl -qw net.ipv4.tcp_max_tw_buckets=131072", E.be))
		return -1;
	/* No default route in either node netns: mistakes stay on this machine. */
	if (!e2e_sh("ip -n %s route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node) ||
	    !e2e_sh("ip -n %s route show default | grep -q .", E.node2) ||
	    !e2e_sh("ip -n %s -6 route show default | grep -q .", E.node2))
		return -1;
	return 0;
}

int group_teardown(void **state)
{
	e2e_kids_kill(E.kids, MAX_KIDS);
	e2e_kill(&E.daemon);
	e2e_kill(&E.daemon2);
	api_stop();
	if (E.bpffs2[0]) {
		kb_dataplane_unload(E.bpffs2);
		e2e_sh("rm -rf '%s'", E.bpffs2);
	}
	E.bpffs2[0] = '\0';
	if (E.cgroup2[0])
		e2e_cgroup_remove(E.env.cgroot, E.cgroup2);
	E.cgroup2[0] = '\0';
	e2e_kill_group(&E.server);
	if (E.env.bpffs[0]) {
		kb_dataplane_unload(E.env.bpffs);
		e2e_sh("rm -rf '%s'", E.env.bpffs);
	}
	E.env.bpffs[0] = '\0';
	e2e_netns_del(&E.netns_made, E.node, E.node2, E.be, NULL);
	e2e_env_teardown(&E.env, dump_log);
	if (E.t)
		munmap(E.t, sizeof(*E.t) * MAX_KIDS);
	E.t = NULL;
	return 0;
}

static int setup_failed(const char *why)
{
	return e2e_setup_failed(why, dump_log, group_teardown);
}

/* A kubeconfig for the server's listener at 127.0.0.1:port (its certificate's SAN) in the netns the daemon runs in. */
static int write_kubeconfig(const char *path, int port, const char *tokfile)
{
	char buf[2048];

	snprintf(buf, sizeof(buf),
		 "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
		 "contexts:\n- name: test\n  context: {cluster: test, user: kbackend}\n"
		 "clusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:%d\n"
		 "    certificate-authority: %s/ca.pem\n"
		 "users:\n- name: kbackend\n  user:\n    tokenFile: %s\n", port, E.apidir, tokfile);
	return e2e_write_file(path, buf);
}

int group_setup(void **state)
{
	if (e2e_env_setup(&E.env, "kube"))
		return setup_failed("test environment (temp dir, cgroup, bpffs)");
	if (E.env.skip)
		return 0;
	/* Debian's kubectl: unpacked by scripts/deps.sh where another package owns /usr/bin/kubectl. */
	E.kubectl = access("/var/cache/kbackend-kubectl/usr/bin/kubectl", X_OK) ? "/usr/bin/kubectl"
										 : "/var/cache/kbackend-kubectl/usr/bin/kubectl";
	if (access(E.kubectl, X_OK) || access("/usr/bin/python3", X_OK) || e2e_sh("command -v openssl") ||
	    e2e_sh("command -v curl")) {
		if (e2e_in_ci())
			return setup_failed("kubectl (kubernetes-client), python3, openssl or curl missing: run `make deps`");
		E.env.skip = "kubectl (kubernetes-client), python3, openssl or curl missing";
		return 0;
	}
	E.t = mmap(NULL, sizeof(*E.t) * MAX_KIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (E.t == MAP_FAILED) {
		E.t = NULL;
		return setup_failed("mmap");
	}
	snprintf(E.node, sizeof(E.node), "kbt-kubnode-%d", (int)getpid());
	snprintf(E.node2, sizeof(E.node2), "kbt-kubnode2-%d", (int)getpid());
	snprintf(E.be, sizeof(E.be), "kbt-kubbe-%d", (int)getpid());
	snprintf(E.apidir, sizeof(E.apidir), "%s/api", E.env.tmp);
	snprintf(E.apilog, sizeof(E.apilog), "%s/apiserver.log", E.env.tmp);
	snprintf(E.kubeconfig, sizeof(E.kubeconfig), "%s/kubeconfig", E.env.tmp);
	snprintf(E.kubeconfig2, sizeof(E.kubeconfig2), "%s/kubeconfig2", E.env.tmp);
	snprintf(E.tokfile, sizeof(E.tokfile), "%s/token", E.env.tmp);
	snprintf(E.tokfile2, sizeof(E.tokfile2), "%s/token2", E.env.tmp);
	snprintf(E.sock2, sizeof(E.sock2), "%s/kb2.sock", E.env.tmp);
	snprintf(E.state2, sizeof(E.state2), "%s/state2", E.env.tmp);
	snprintf(E.log2, sizeof(E.log2), "%s/daemon2.log", E.env.tmp);
	snprintf(E.bpffs2, sizeof(E.bpffs2), "/sys/fs/bpf/kbt-kube2-%d", (int)getpid());
	snprintf(E.cgroup2, sizeof(E.cgroup2), "%s/kbt-kube2-%d", E.env.cgroot, (int)getpid());
	if (mkdir(E.cgroup2, 0755)) {
		E.cgroup2[0] = '\0';
		return setup_failed("second cgroup");
	}
	if (topo_up())
		return setup_failed("topology");
	E.server = e2e_ident_servers_start(E.be, EPS, NEPS, EP_PORT);
	if (E.server < 0) {
		E.server = 0;
		return setup_failed("endpoint servers");
	}
	if (api_start())
		return setup_failed("the test API server did not start");
	if (e2e_write_file(E.tokfile, E.token) || e2e_write_file(E.tokfile2, E.token2) ||
	    write_kubeconfig(E.kubeconfig, API_PORT, E.tokfile) || write_kubeconfig(E.kubeconfig2, API_PORT2, E.tokfile2))
		return setup_failed("kubeconfig");
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		return setup_failed("daemon did not start (see its log)");
	}
	return 0;
}

int test_setup(void **state)
{
	if (E.env.skip)
		return 0;
	e2e_kids_kill(E.kids, MAX_KIDS);
	e2e_kill(&E.daemon2);
	kubectl(NULL, "delete backend bad huge --ignore-not-found --wait=false");
	if (E.daemon > 0 && waitpid(E.daemon, NULL, WNOHANG) == 0)
		return 0;
	e2e_kill(&E.daemon);
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		dump_log();
		return -1;
	}
	return 0;
}

/* ---- status written back ---- */

struct json_object *kget(const char *what)
{
	char *out = NULL;
	struct json_object *o = NULL;

	if (kubectl(&out, "get %s -o json", what) == 0 && out)
		o = json_tokener_parse(out);
	free(out);
	return o;
}

struct json_object *kcond(struct json_object *obj, const char *type, bool parent)
{
	struct json_object *st = e2e_jget(obj, "status"), *cs;

	if (parent) {
		struct json_object *ps = e2e_jget(st, "parents");

		st = NULL;
		for (size_t i = 0; ps && i < json_object_array_length(ps); i++)
			if (!strcmp(e2e_jstr(json_object_array_get_idx(ps, i), "controllerName"),
				    "kbackend.io/gateway-controller"))
				st = json_object_array_get_idx(ps, i);
	}
	cs = e2e_jget(st, "conditions");
	for (size_t i = 0; cs && i < json_object_array_length(cs); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(cs, i), "type"), type))
			return json_object_array_get_idx(cs, i);
	return NULL;
}

void wait_kcond(const char *what, const char *type, bool parent, const char *want, const char *msg)
{
	long deadline = kb_now_ms() + WAIT_MS;

	for (;;) {
		struct json_object *o = kget(what), *c = kcond(o, type, parent);
		bool ok = c && !strcmp(e2e_jstr(c, "status"), want) && (!msg || !strcmp(e2e_jstr(c, "message"), msg)) &&
			  e2e_jint(c, "observedGeneration") == e2e_jint(e2e_jget(o, "metadata"), "generation");

		if (ok) {
			json_object_put(o);
			return;
		}
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("%s: %s is not %s%s%s: %s", what, type, want, msg ? " with " : "", msg ? msg : "",
				 o ? json_object_to_json_string(e2e_jget(o, "status")) : "(no object)");
		}
		json_object_put(o);
		e2e_sleep_ms(200);
	}
}

/* ---- the test API server (tests/kube/apiserver.py; tests/kube/README.md) ---- */

void repo_file(char *buf, size_t len, const char *file)
{
	snprintf(buf, len, "%s", E.env.kb);
	*strrchr(buf, '/') = '\0';
	strncat(buf, "/../", len - strlen(buf) - 1);
	strncat(buf, file, len - strlen(buf) - 1);
}

/* The server runs in the root netns; its listeners are 127.0.0.1:API_PORT inside the node netns and API_PORT2 in node2. */
static int api_start(void)
{
	char script[PATH_MAX + 64], certs[PATH_MAX + 64], listen[PATH_MAX], listen2[PATH_MAX], ready[PATH_MAX + 16];
	char tokens[PATH_MAX + 16], line[256];
	char cert[PATH_MAX + 16], key[PATH_MAX + 16];
	long deadline;
	pid_t pid;

	repo_file(script, sizeof(script), "tests/kube/apiserver.py");
	repo_file(certs, sizeof(certs), "tests/kube/make-certs.sh");
	if (mkdir(E.apidir, 0700) || e2e_sh("%s %s", certs, E.apidir))
		return -1;
	/* Another user for node2's daemon: the server's write log tells the two apart. */
	snprintf(E.token, sizeof(E.token), "first-%d", (int)getpid());
	snprintf(E.token2, sizeof(E.token2), "node2-%d", (int)getpid());
	snprintf(line, sizeof(line), "%s," KUBE_USER "\n%s," KUBE_USER2 "\n", E.token, E.token2);
	snprintf(tokens, sizeof(tokens), "%s/tokens.csv", E.apidir);
	snprintf(ready, sizeof(ready), "%s/ready.json", E.apidir);
	snprintf(cert, sizeof(cert), "%s/server.pem", E.apidir);
	snprintf(key, sizeof(key), "%s/server.key", E.apidir);
	snprintf(E.control, sizeof(E.control), "%s/control.sock", E.apidir);
	snprintf(listen, sizeof(listen), "/run/netns/%s:%d", E.node, API_PORT);
	snprintf(listen2, sizeof(listen2), "/run/netns/%s:%d", E.node2, API_PORT2);
	if (e2e_write_file(tokens, line))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(E.apilog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		e2e_child_init();
		setpgid(0, 0);
		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/bin/python3", "python3", script, "--cert", cert, "--key", key, "--tokens", tokens, "--listen",
		      listen, "--listen", listen2, "--control", E.control, "--ready-file", ready, "--bookmark-interval", "3600",
		      (char *)NULL);
		_exit(127);
	}
	E.api = pid;
	for (deadline = kb_now_ms() + 30000; kb_now_ms() < deadline; e2e_sleep_ms(50)) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			E.api = 0;
			return -1;
		}
		if (!access(ready, F_OK))
			return 0;
	}
	return -1;
}

static void api_stop(void)
{
	e2e_kill_group(&E.api);
}

int api_fault_body(const char *request, const char *body)
{
	char path[PATH_MAX + 16];

	if (!body)
		return e2e_sh("curl -sf --max-time 10 --unix-socket %s -X POST 'http://x/%s'", E.control, request);
	snprintf(path, sizeof(path), "%s/fault-body", E.apidir);
	if (e2e_write_file(path, body))
		return -1;
	return e2e_sh("curl -sf --max-time 10 --unix-socket %s -X POST --data-binary @%s 'http://x/%s'", E.control, path,
		      request);
}

int api_fault(const char *fault)
{
	return api_fault_body(fault, NULL);
}

struct json_object *api_get(const char *request)
{
	char path[PATH_MAX + 16], *text;
	struct json_object *o = NULL;

	snprintf(path, sizeof(path), "%s/control.out", E.apidir);
	if (e2e_sh("curl -sf --max-time 10 --unix-socket %s -o %s 'http://x/%s'", E.control, path, request))
		return NULL;
	text = e2e_read_text(path);
	if (text)
		o = json_tokener_parse(text);
	free(text);
	return o;
}
