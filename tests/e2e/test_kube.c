// SPDX-License-Identifier: Apache-2.0
/* e2e: the Kubernetes API as the source. Objects made, changed and deleted on the test API server are steered; faults leave the maps equal to a fresh compile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/mman.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_daemon.h"
#include "dataplane/dataplane.h"
#include "util.h"

/*
 * Topology (DESIGN section 8): the daemon, the clients and the test API
 * server (tests/kube/apiserver.py, TLS with a CA the test makes, a bearer token)
 * live in the node netns, which has no default route; the server listens on
 * that netns' own 127.0.0.1. Three endpoints live behind a veth:
 *
 *   kbt-kubnode-<pid> 198.51.100.254/24 203.0.113.254/24  ==veth==  kbt-kubbe-<pid>
 *                               e1 198.51.100.1, e2 203.0.113.2, e3 198.51.100.3 (TCP 8080)
 *
 * The daemon runs with --kubeconfig (server, CA file, tokenFile). Objects
 * are made with kubectl (Debian's kubernetes-client) against the server;
 * the server's process stays in the root netns with its listener made
 * inside the node netns (tests/kube/README.md).
 * Frontend: 198.18.0.10:80 (Gateway eg of GatewayClass kb, ours); Gateway
 * other (198.18.0.11:80) belongs to another controller's class and is never
 * programmed.
 */
#define FE_ADDR "198.18.0.10"
#define FE_PORT 80
#define EP_PORT 8080
#define NEPS 3
#define MAX_KIDS 4
#define API_PORT 16443
#define WAIT_MS 20000

static const char *const EPS[NEPS] = { "198.51.100.1", "203.0.113.2", "198.51.100.3" };

static struct {
	struct e2e_env env;
	char node[64], be[64];
	bool netns_made;
	pid_t server, api, daemon, daemon2;
	char cgroup2[PATH_MAX], bpffs2[PATH_MAX], sock2[PATH_MAX], state2[PATH_MAX], log2[PATH_MAX];
	pid_t kids[MAX_KIDS];
	struct e2e_tally *t;
	char apidir[PATH_MAX];	/* the API server's CA, certificate, token */
	char kubeconfig[PATH_MAX];
	char apilog[PATH_MAX];
	char token[256];
	char tokfile[PATH_MAX];	/* the kubeconfig's tokenFile: rotated by rename, as the kubelet does */
	const char *kubectl;	/* Debian's kubectl (scripts/deps.sh) */
	char control[PATH_MAX];	/* the API server's fault controls (a unix socket) */
} E;

static void dump_log(void)
{
	e2e_dump_file("daemon", E.env.log, 60);
	e2e_dump_file("daemon2", E.log2, 30);
	e2e_dump_file("apiserver", E.apilog, 30);
}

/* ---- the test API server and kubectl ---- */

static int api_start(void);
static void api_stop(void);

/* kubectl in the node netns against the test server; its stdout in *out (caller frees) when out is set. */
static int kubectl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int kubectl(char **out, const char *fmt, ...)
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

/* Write a manifest to the temp dir and `kubectl verb -f` it. */
static void kube(const char *verb, const char *name, const char *json)
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

static char *gwclass(char *buf, size_t len, const char *name, const char *controller)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1\", \"kind\": \"GatewayClass\", "
		 "\"metadata\": {\"name\": \"%s\"}, \"spec\": {\"controllerName\": \"%s\"}}", name, controller);
	return buf;
}

static char *gateway(char *buf, size_t len, const char *name, const char *cls, const char *addr)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1\", \"kind\": \"Gateway\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, \"spec\": {\"gatewayClassName\": \"%s\", "
		 "\"addresses\": [{\"type\": \"IPAddress\", \"value\": \"%s\"}], "
		 "\"listeners\": [{\"name\": \"tcp\", \"protocol\": \"TCP\", \"port\": %d}]}}", name, cls, addr, FE_PORT);
	return buf;
}

/* A Backend with one IP endpoint; extra is spliced into spec (a field kbackend does not know, say). */
static char *backend(char *buf, size_t len, const char *name, const char *ip, int port, const char *extra)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.envoyproxy.io/v1alpha1\", \"kind\": \"Backend\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, "
		 "\"spec\": {\"endpoints\": [{\"ip\": {\"address\": \"%s\", \"port\": %d}}]%s}}", name, ip, port,
		 extra ? extra : "");
	return buf;
}

static char *tcproute(char *buf, size_t len, const char *name, const char *gw, const char *be)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"gateway.networking.k8s.io/v1alpha2\", \"kind\": \"TCPRoute\", "
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"default\"}, \"spec\": {\"parentRefs\": [{\"name\": \"%s\"}], "
		 "\"rules\": [{\"backendRefs\": [{\"group\": \"gateway.envoyproxy.io\", \"kind\": \"Backend\", "
		 "\"name\": \"%s\"}]}]}}", name, gw, be);
	return buf;
}

/* ---- the daemon ---- */

static struct json_object *ctl(const char *op, int timeout_ms)
{
	return e2e_ctl(E.env.sock, op, timeout_ms);
}

/* The second daemon (leader election): same netns and server, its own cgroup, pins, socket and state; no sk_lookup. */
static pid_t daemon2_spawn(bool no_status)
{
	const char *const argv[] = { "kbackend", "daemon", "--cgroup", E.cgroup2, "--bpffs", E.bpffs2,
				     "--state-dir", E.state2, "--socket", E.sock2, "--kubeconfig", E.kubeconfig,
				     "--enable-backend", "--no-inbound", no_status ? "--no-status" : NULL, NULL };
	pid_t pid = e2e_daemon_spawn(E.env.kb, E.log2, E.node, argv);

	if (pid < 0 || e2e_daemon_wait(&pid, E.sock2, 20000))
		return -1;
	return pid;
}

static pid_t daemon_spawn(void)
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
static struct json_object *kube_status(struct json_object **st)
{
	*st = ctl("status", 5000);
	if (!e2e_reply_ok(*st))
		fail_msg("status failed: %s", *st ? json_object_to_json_string(*st) : strerror(errno));
	return e2e_jget(*st, "kubernetes");
}

static struct json_object *kind_status(struct json_object *k, const char *kind)
{
	struct json_object *kinds = e2e_jget(k, "kinds");

	for (size_t i = 0; kinds && i < json_object_array_length(kinds); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(kinds, i), "kind"), kind))
			return json_object_array_get_idx(kinds, i);
	return NULL;
}

static bool refused_has(struct json_object *k, const char *label)
{
	struct json_object *r = e2e_jget(k, "refusedObjects");

	for (size_t i = 0; r && i < json_object_array_length(r); i++)
		if (!strcmp(e2e_jstr(json_object_array_get_idx(r, i), "object"), label))
			return true;
	return false;
}

/* ---- clients ---- */

static void client_spawn(int idx, long limit)
{
	pid_t pid;

	memset(&E.t[idx], 0, sizeof(E.t[idx]));
	E.t[idx].limit = limit;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		e2e_child_init();
		if (e2e_cgroup_enter(E.env.cgroup, 0) || e2e_setns(E.node))
			_exit(99);
		e2e_tally_run(&E.t[idx], FE_ADDR, FE_PORT, true, EPS, NEPS);
	}
	E.kids[idx] = pid;
}

static struct e2e_sum connect_n(long count)
{
	int status;

	client_spawn(MAX_KIDS - 1, count);
	status = e2e_kid_wait(&E.kids[MAX_KIDS - 1], NULL, kb_now_ms() + 60000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return e2e_tallies_sum(&E.t[MAX_KIDS - 1], 1);
}

/* Every one of 20 connects lands on endpoint ep (-1: every one is refused). */
static bool steers_only(int ep)
{
	struct e2e_sum s = connect_n(20);

	if (ep < 0)
		return s.fail == 20 && s.total_ok == 0;
	return s.fail == 0 && s.bad == 0 && s.ok[ep] == 20;
}

/* Wait until the frontend steers only to ep (or refuses, ep -1): the daemon saw the server's change. */
static void wait_steers_within(int ep, long ms)
{
	long deadline = kb_now_ms() + ms;

	while (!steers_only(ep)) {
		if (kb_now_ms() > deadline) {
			struct e2e_sum s = connect_n(20);

			dump_log();
			fail_msg("expected %s: e1 %ld, e2 %ld, e3 %ld, failed %ld", ep < 0 ? "refusals" : EPS[ep], s.ok[0],
				 s.ok[1], s.ok[2], s.fail);
		}
		e2e_sleep_ms(100);
	}
}

static void wait_steers(int ep)
{
	wait_steers_within(ep, WAIT_MS);
}

/*
 * What a fault must leave: the daemon synced, holding every object the
 * server holds (the Backends by name), and `kbackend verify` (a from-scratch
 * compile of the state, and the maps read back) finding no difference.
 */
static void assert_converged(void)
{
	long deadline = kb_now_ms() + WAIT_MS;
	char *out = NULL;
	long want = -1;

	/* The server's objects of every kind kbackend reads. */
	if (kubectl(&out, "get gatewayclasses,gateways,tcproutes,backends -A -o json") == 0 && out) {
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
	char vn[32], vb[32];

	snprintf(vn, sizeof(vn), "kkn%d", (int)getpid());
	snprintf(vb, sizeof(vb), "kkb%d", (int)getpid());
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

static int group_teardown(void **state)
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
	e2e_netns_del(&E.netns_made, E.node, E.be, NULL);
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

static int group_setup(void **state)
{
	char buf[2048];

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
	snprintf(E.be, sizeof(E.be), "kbt-kubbe-%d", (int)getpid());
	snprintf(E.apidir, sizeof(E.apidir), "%s/api", E.env.tmp);
	snprintf(E.apilog, sizeof(E.apilog), "%s/apiserver.log", E.env.tmp);
	snprintf(E.kubeconfig, sizeof(E.kubeconfig), "%s/kubeconfig", E.env.tmp);
	snprintf(E.tokfile, sizeof(E.tokfile), "%s/token", E.env.tmp);
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
	snprintf(buf, sizeof(buf),
		 "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
		 "contexts:\n- name: test\n  context: {cluster: test, user: kbackend}\n"
		 "clusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:%d\n"
		 "    certificate-authority: %s/ca.pem\n"
		 "users:\n- name: kbackend\n  user:\n    tokenFile: %s\n", API_PORT, E.apidir, E.tokfile);
	if (e2e_write_file(E.tokfile, E.token) || e2e_write_file(E.kubeconfig, buf))
		return setup_failed("kubeconfig");
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		return setup_failed("daemon did not start (see its log)");
	}
	return 0;
}

/* Each test starts with the first daemon serving, no second one, and no leftover invalid Backend of a failed test. */
static int test_setup(void **state)
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

#define NEED_ENV()              \
	do {                    \
		if (E.env.skip) \
			skip(); \
	} while (0)

/* ---- tests ---- */

/*
 * Made through the server: our GatewayClass, a Gateway, a Backend to e1 and
 * a TCPRoute; and another controller's class with a Gateway. The daemon
 * lists and watches them: our frontend steers to e1 (getpeername shows the
 * frontend), the other Gateway is not programmed.
 */
static void test_kube_create_steers(void **state)
{
	char buf[2048];
	struct json_object *st, *k;

	NEED_ENV();
	kube("create", "gc-kb", gwclass(buf, sizeof(buf), "kb", "kbackend.io/gateway-controller"));
	kube("create", "gc-other", gwclass(buf, sizeof(buf), "other", "example.com/someone-else"));
	kube("create", "gw-eg", gateway(buf, sizeof(buf), "eg", "kb", FE_ADDR));
	kube("create", "gw-other", gateway(buf, sizeof(buf), "other", "other", "198.18.0.11"));
	kube("create", "be-b1", backend(buf, sizeof(buf), "b1", EPS[0], EP_PORT, NULL));
	kube("create", "rt-app", tcproute(buf, sizeof(buf), "app", "eg", "b1"));
	wait_steers(0);
	k = kube_status(&st);
	assert_true(json_object_get_boolean(e2e_jget(k, "synced")));
	assert_int_equal(e2e_jint(k, "otherControllers"), 2);
	assert_int_equal(e2e_jint(st, "frontends"), 1);
	assert_string_equal(e2e_jstr(kind_status(k, "Backend"), "version"), "v1alpha1");
	assert_true(e2e_jint(kind_status(k, "Backend"), "events") >= 0);
	json_object_put(st);
	assert_converged();
}

/* A change of the Backend on the server moves every new connect to the new endpoint; a field kbackend does not know is ignored. */
static void test_kube_change(void **state)
{
	char buf[2048];

	NEED_ENV();
	kube("apply", "be-b1", backend(buf, sizeof(buf), "b1", EPS[1], EP_PORT, ", \"someFutureField\": {\"x\": 1}"));
	wait_steers(1);
	assert_converged();
}

/* An invalid Backend beside the valid one: it is set aside with its conditions, the valid one keeps steering. */
static void test_kube_invalid_beside_valid(void **state)
{
	char buf[2048];
	struct json_object *st, *k;
	long deadline = kb_now_ms() + WAIT_MS;

	NEED_ENV();
	kube("create", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	for (;;) {
		k = kube_status(&st);
		if (refused_has(k, "Backend default/bad"))
			break;
		json_object_put(st);
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("Backend default/bad was not set aside");
		}
		e2e_sleep_ms(100);
	}
	json_object_put(st);
	assert_true(steers_only(1));
	kube("delete", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	assert_converged();
}

static long backend_count(const char *key);

/* An object over 1 MiB is refused and counted; the state and the steering stay as they were. */
static void test_kube_oversized_refused(void **state)
{
	size_t n = (1u << 20) + 4096;
	char *big = malloc(n + 1024), *pad = malloc(n + 1);
	long refused;
	long deadline = kb_now_ms() + WAIT_MS;

	NEED_ENV();
	assert_non_null(big);
	assert_non_null(pad);
	memset(pad, 'x', n);
	pad[n] = '\0';
	snprintf(big, n + 1024,
		 "{\"apiVersion\": \"gateway.envoyproxy.io/v1alpha1\", \"kind\": \"Backend\", \"metadata\": {\"name\": "
		 "\"huge\", \"namespace\": \"default\", \"annotations\": {\"pad\": \"%s\"}}, \"spec\": {\"endpoints\": "
		 "[{\"ip\": {\"address\": \"%s\", \"port\": %d}}]}}", pad, EPS[2], EP_PORT);
	refused = backend_count("refused");
	kube("create", "be-huge", big);
	while (backend_count("refused") <= refused) {
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("the 1 MiB Backend was not refused");
		}
		e2e_sleep_ms(100);
	}
	assert_true(steers_only(0));
	kube("delete", "be-huge", big);
	free(big);
	free(pad);
	assert_converged();
}

/* The Backend deleted on the server: the route has nothing to steer to and connects are refused; made again, it steers. */
static void test_kube_delete(void **state)
{
	char buf[2048];

	NEED_ENV();
	kube("delete", "be-b1", backend(buf, sizeof(buf), "b1", EPS[1], EP_PORT, NULL));
	wait_steers(-1);
	kube("create", "be-b1", backend(buf, sizeof(buf), "b1", EPS[0], EP_PORT, NULL));
	wait_steers(0);
	assert_converged();
}

static int api_fault(const char *fault);
static int api_fault_body(const char *request, const char *body);

/* status.kubernetes.kinds[Backend][key]. */
static long backend_count(const char *key)
{
	struct json_object *st, *k = kube_status(&st);
	long n = e2e_jint(kind_status(k, "Backend"), key);

	json_object_put(st);
	return n;
}

/*
 * Each fault of the server, then a change made while (or right after) it
 * happens: the daemon comes back to the server's state, and verify finds the
 * maps equal to a from-scratch compile.
 */
static void test_kube_faults(void **state)
{
	static const struct {
		const char *fault;
		int ep;
	} rows[] = {
		{ "drop-watches", 1 },		/* every watch cut mid-stream */
		{ "compact", 2 },		/* history compacted: a watch from an older resourceVersion gets 410 */
		{ "fail?seconds=30", 0 },	/* down for 30 s: every request answered 500, every watch cut */
		{ "hang?seconds=5", 1 },	/* requests read and never answered */
		{ "restart", 2 },		/* a new history, same objects */
		{ "tokens", 0 },		/* the token rotated: the old one refused */
	};
	char buf[2048];

	NEED_ENV();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		long relists = backend_count("relists"), errors = backend_count("errors");
		long bookmarks = backend_count("bookmarks"), deadline = kb_now_ms() + WAIT_MS;

		/* A bookmark since: the Backend watch is open, so the fault meets a live stream. */
		while (backend_count("bookmarks") <= bookmarks) {
			if (kb_now_ms() > deadline)
				fail_msg("no bookmark on the Backend watch");
			assert_int_equal(api_fault("bookmark"), 0);	/* again: the watch may not be open yet */
			e2e_sleep_ms(300);
		}
		print_message("# fault: %s\n", rows[i].fault);
		if (!strcmp(rows[i].fault, "tokens")) {
			/* The server takes only the new token from now on; the kubelet's rename swap gives it to the daemon. */
			char tmp[PATH_MAX + 16], line[128];

			snprintf(E.token, sizeof(E.token), "rotated-%d-%ld", (int)getpid(), kb_now_ms());
			snprintf(line, sizeof(line), "%s,kbackend", E.token);
			if (api_fault_body("tokens", line))
				fail_msg("token rotation could not be made");
			snprintf(tmp, sizeof(tmp), "%s.new", E.tokfile);
			assert_int_equal(e2e_write_file(tmp, E.token), 0);
			assert_int_equal(rename(tmp, E.tokfile), 0);
		} else if (!strcmp(rows[i].fault, "compact")) {
			/*
			 * The history compacted past the Backend watch's resourceVersion
			 * (another kind's write moves the server on), then the watch cut:
			 * watching again from there gets 410, and only a relist brings
			 * the daemon back.
			 */
			if (kubectl(NULL, "label gatewayclass other kbt-fault=%zu --overwrite", i) || api_fault("compact") ||
			    api_fault("drop-watches"))
				fail_msg("compaction could not be made");
		} else if (api_fault(rows[i].fault) ||
			   (!strncmp(rows[i].fault, "fail", 4) && api_fault("drop-watches"))) {
			fail_msg("fault %s could not be made", rows[i].fault);
		}
		if (!strncmp(rows[i].fault, "fail", 4) || !strncmp(rows[i].fault, "hang", 4)) {
			long until = kb_now_ms() + (rows[i].fault[0] == 'f' ? 30000 : 5000);

			/* The last good state keeps serving while the server is down. */
			while (kb_now_ms() < until) {
				if (!steers_only(i ? rows[i - 1].ep : 0))
					fail_msg("%s: the frontend stopped steering to the last good state", rows[i].fault);
				e2e_sleep_ms(2000);
			}
		}
		kube("apply", "be-b1", backend(buf, sizeof(buf), "b1", EPS[rows[i].ep], EP_PORT, NULL));
		/* After 30 s down the reconnect waits out a backoff of up to 30 s (client-go's cap). */
		wait_steers_within(rows[i].ep, WAIT_MS + 30000);
		assert_converged();
		/* The fault was seen for what it is: a 410 relists, a cut or failing watch counts an error. */
		if (!strcmp(rows[i].fault, "compact") || !strcmp(rows[i].fault, "restart"))
			assert_true(backend_count("relists") > relists);
		else if (!strcmp(rows[i].fault, "drop-watches") || !strncmp(rows[i].fault, "fail", 4))
			assert_true(backend_count("errors") > errors);
	}
}

/* ---- status written back ---- */

/* kubectl get -o json of one object (caller puts it), or NULL. */
static struct json_object *kget(const char *what)
{
	char *out = NULL;
	struct json_object *o = NULL;

	if (kubectl(&out, "get %s -o json", what) == 0 && out)
		o = json_tokener_parse(out);
	free(out);
	return o;
}

/* The condition `type` of status.conditions (or of the route parent of controllerName's), or NULL. */
static struct json_object *kcond(struct json_object *obj, const char *type, bool parent)
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

/* Wait until `what`'s condition `type` has status want (and message msg, when set), read with kubectl. */
static void wait_kcond(const char *what, const char *type, bool parent, const char *want, const char *msg)
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

/* What `kbackend validate` says of Backend `name` in the file at path: its Accepted message. */
static char *validate_message(const char *path, const char *name)
{
	const char *const args[] = { "validate", "--enable-backend", "-f", path, "-o", "json", NULL };
	int rc;
	struct json_object *r = e2e_cli_json(E.env.kb, E.env.sock, E.env.log, &rc, args), *items;
	char *msg = NULL;

	items = e2e_jget(e2e_jget(r, "objects"), "items");
	if (!items)
		items = e2e_jget(r, "items");
	for (size_t i = 0; items && i < json_object_array_length(items); i++) {
		struct json_object *o = json_object_array_get_idx(items, i), *c;

		if (strcmp(e2e_jstr(e2e_jget(o, "metadata"), "name"), name))
			continue;
		c = kcond(o, "Accepted", false);
		if (c)
			msg = strdup(e2e_jstr(c, "message"));
	}
	json_object_put(r);
	return msg;
}

/*
 * The leader writes what kbackend validate says: the Backend Accepted, the
 * route's parent (with our controllerName) Accepted and ResolvedRefs, the
 * Gateway Accepted and Programmed with its address, the class Accepted; an
 * invalid Backend Accepted False with validate's own message.
 */
static void test_kube_status_written(void **state)
{
	char buf[2048], path[PATH_MAX + 32], *msg;
	struct json_object *gw;

	NEED_ENV();
	wait_kcond("backend b1", "Accepted", false, "True", "The Backend was accepted");
	wait_kcond("tcproute app", "Accepted", true, "True", "Route is accepted");
	wait_kcond("tcproute app", "ResolvedRefs", true, "True", NULL);
	wait_kcond("gateway eg", "Programmed", false, "True", NULL);
	wait_kcond("gatewayclass kb", "Accepted", false, "True", NULL);
	gw = kget("gateway eg");
	assert_string_equal(e2e_jstr(json_object_array_get_idx(e2e_jget(e2e_jget(gw, "status"), "addresses"), 0), "value"),
			    FE_ADDR);
	json_object_put(gw);
	/* Another controller's class and Gateway get nothing from us. */
	gw = kget("gateway other");
	assert_null(kcond(gw, "Accepted", false));
	json_object_put(gw);
	kube("create", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	snprintf(path, sizeof(path), "%s/be-bad.json", E.env.tmp);
	msg = validate_message(path, "bad");
	assert_non_null(msg);
	wait_kcond("backend bad", "Accepted", false, "False", msg);
	free(msg);
	kube("delete", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	assert_converged();
}

static struct json_object *writer(const char *sock, struct json_object **st)
{
	*st = e2e_ctl(sock, "status", 5000);
	return e2e_jget(e2e_jget(*st, "kubernetes"), "statusWriter");
}

static bool leads(const char *sock)
{
	struct json_object *st, *w = writer(sock, &st);
	bool yes = json_object_get_boolean(e2e_jget(w, "leader"));

	json_object_put(st);
	return yes;
}

static long writes(const char *sock)
{
	struct json_object *st, *w = writer(sock, &st);
	long n = e2e_jint(w, "writes");

	json_object_put(st);
	return n;
}

/*
 * Two daemons on one server: exactly one leads and writes; with nothing
 * changing, nothing is written again (no flapping); the leader killed, the
 * other takes over within the lease duration (plus a retry) and writes the
 * next verdict.
 */
static void test_kube_leader_election(void **state)
{
	char buf[2048];
	long deadline, w1, w2;

	NEED_ENV();
	E.daemon2 = daemon2_spawn(false);
	if (E.daemon2 <= 0) {
		E.daemon2 = 0;
		dump_log();
		fail_msg("the second daemon did not start");
	}
	e2e_sleep_ms(5000);	/* several retry periods: both have tried the lease */
	assert_true(leads(E.env.sock) != leads(E.sock2));
	assert_true(leads(E.env.sock));	/* the first one held it all along */
	w1 = writes(E.env.sock);
	w2 = writes(E.sock2);
	e2e_sleep_ms(4000);
	assert_int_equal(writes(E.env.sock), w1);	/* nothing changed: nothing written */
	assert_int_equal(writes(E.sock2), w2);
	assert_int_equal(w2, 0);
	e2e_kill(&E.daemon);
	for (deadline = kb_now_ms() + 15000 + 2 * 2000 + 5000; !leads(E.sock2); e2e_sleep_ms(200))
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("the second daemon did not take the lease over");
		}
	kube("create", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	wait_kcond("backend bad", "Accepted", false, "False", NULL);
	assert_true(writes(E.sock2) > w2);
	kube("delete", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	e2e_kill(&E.daemon2);
	E.daemon = daemon_spawn();
	if (E.daemon <= 0) {
		E.daemon = 0;
		dump_log();
		fail_msg("the daemon did not start again");
	}
	assert_converged();
}

/* --no-status: no Lease, no writes, even with nobody else writing; the source itself still steers. */
static void test_kube_no_status(void **state)
{
	char buf[2048];
	struct json_object *st, *o;

	NEED_ENV();
	e2e_kill(&E.daemon);	/* the Lease holder gone: a daemon that wrote status would take over */
	E.daemon2 = daemon2_spawn(true);
	if (E.daemon2 <= 0) {
		E.daemon2 = 0;
		dump_log();
		fail_msg("the --no-status daemon did not start");
	}
	kube("create", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	e2e_sleep_ms(15000 + 2 * 2000 + 2000);	/* past the dead holder's lease and two retries */
	st = e2e_ctl(E.sock2, "status", 5000);
	assert_true(e2e_reply_ok(st));
	assert_true(json_object_get_boolean(e2e_jget(e2e_jget(st, "kubernetes"), "synced")));
	assert_false(json_object_get_boolean(e2e_jget(e2e_jget(st, "kubernetes"), "writesStatus")));
	assert_null(e2e_jget(e2e_jget(st, "kubernetes"), "statusWriter"));
	json_object_put(st);
	o = kget("backend bad");
	assert_non_null(o);
	assert_null(kcond(o, "Accepted", false));	/* set aside by the daemon, yet nothing written */
	json_object_put(o);
	kube("delete", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_kube_create_steers, test_setup),
		cmocka_unit_test_setup(test_kube_change, test_setup),
		cmocka_unit_test_setup(test_kube_invalid_beside_valid, test_setup),
		cmocka_unit_test_setup(test_kube_delete, test_setup),
		cmocka_unit_test_setup(test_kube_oversized_refused, test_setup),
		cmocka_unit_test_setup(test_kube_status_written, test_setup),
		cmocka_unit_test_setup(test_kube_leader_election, test_setup),
		cmocka_unit_test_setup(test_kube_no_status, test_setup),
		cmocka_unit_test_setup(test_kube_faults, test_setup),
	};

	e2e_main_init("test_kube", group_teardown, 600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* ---- the test API server (tests/kube/apiserver.py; tests/kube/README.md) ---- */

/* tests/kube/FILE, found from build/kbackend. */
static void kube_file(char *buf, size_t len, const char *file)
{
	snprintf(buf, len, "%s", E.env.kb);
	*strrchr(buf, '/') = '\0';
	strncat(buf, "/../tests/kube/", len - strlen(buf) - 1);
	strncat(buf, file, len - strlen(buf) - 1);
}

/* The server runs in the root netns; its one listener is 127.0.0.1:API_PORT inside the node netns. */
static int api_start(void)
{
	char script[PATH_MAX + 64], certs[PATH_MAX + 64], listen[PATH_MAX], ready[PATH_MAX + 16], tokens[PATH_MAX + 16];
	char cert[PATH_MAX + 16], key[PATH_MAX + 16], line[128];
	long deadline;
	pid_t pid;

	kube_file(script, sizeof(script), "apiserver.py");
	kube_file(certs, sizeof(certs), "make-certs.sh");
	if (mkdir(E.apidir, 0700) || e2e_sh("%s %s", certs, E.apidir))
		return -1;
	snprintf(E.token, sizeof(E.token), "first-%d", (int)getpid());
	snprintf(line, sizeof(line), "%s,kbackend\n", E.token);
	snprintf(tokens, sizeof(tokens), "%s/tokens.csv", E.apidir);
	snprintf(ready, sizeof(ready), "%s/ready.json", E.apidir);
	snprintf(cert, sizeof(cert), "%s/server.pem", E.apidir);
	snprintf(key, sizeof(key), "%s/server.key", E.apidir);
	snprintf(E.control, sizeof(E.control), "%s/control.sock", E.apidir);
	snprintf(listen, sizeof(listen), "/run/netns/%s:%d", E.node, API_PORT);
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
		      listen, "--control", E.control, "--ready-file", ready, "--bookmark-interval", "3600", (char *)NULL);
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

/* POST /REQUEST on the control socket (tests/kube/README.md, "Fault controls"), with body when set. */
static int api_fault_body(const char *request, const char *body)
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

static int api_fault(const char *fault)
{
	return api_fault_body(fault, NULL);
}
