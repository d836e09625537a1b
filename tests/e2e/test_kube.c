// SPDX-License-Identifier: Apache-2.0
/*
 * e2e: the Kubernetes API as the source. Objects made, changed and deleted
 * on the test API server are steered, a Service through its EndpointSlice's
 * ready endpoints; faults leave the maps equal to a fresh compile while an
 * unchanged frontend never fails a connect; of two daemons on two nodes one
 * writes status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "e2e.h"
#include "kube_env.h"
#include "util.h"

/*
 * Topology (DESIGN section 8; made by kube_env.c): the daemon, the clients
 * and kubectl live in the node netns, which has no default route; the test
 * API server (tests/kube/apiserver.py, TLS with a CA the test makes, a bearer
 * token) stays in the root netns with a listener made inside the node netns
 * (127.0.0.1:16443) and one inside node2 (127.0.0.1:16444), each netns' own
 * loopback (tests/kube/README.md). Three endpoints live behind a veth:
 *
 *   kbt-kubnode-<pid> 198.51.100.254/24 203.0.113.254/24  ==veth==  kbt-kubbe-<pid>
 *                               e1 198.51.100.1, e2 203.0.113.2, e3 198.51.100.3 (TCP 8080)
 *   kbt-kubnode2-<pid> 198.51.100.253/24  ==veth==  kbt-kubbe-<pid> (a host route back; no default route)
 *
 * The daemon runs with --kubeconfig (server, CA file, tokenFile). The second
 * daemon (leader election, --no-status) is another node: it runs in node2
 * with its own kubeconfig (the node2 listener, the only one it can reach,
 * and another user's token), cgroup, pins, socket and state; node2's clients
 * live in its cgroup. Objects are made with kubectl (Debian's
 * kubernetes-client) against the server. Frontends, all on GatewayClass kb
 * (ours), port 80:
 *   198.18.0.10  Gateway eg, TCPRoute app -> Backend b1 (the tests move it among e1..e3)
 *   198.18.0.12  Gateway svc, TCPRoute web -> Service web (port http 80) -> EndpointSlice web-1 (e1, e2, e3)
 *   198.18.0.13  Gateway steady, TCPRoute steady -> Backend b2 (e2): no fault or change touches it
 * Gateway other (198.18.0.11) belongs to another controller's class and is
 * never programmed.
 */

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

/* ---- a Service through its EndpointSlice ---- */

/*
 * Service web: port http 80 -> 8080, and a port metrics 9090 before it that
 * nothing listens on, so only a lookup by the route's port and the slice's
 * port name reaches an endpoint.
 */
static const char SVC_WEB[] =
	"{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"web\", \"namespace\": \"default\"}, "
	"\"spec\": {\"clusterIP\": \"198.18.3.1\", \"ports\": [{\"name\": \"metrics\", \"port\": 9090, \"protocol\": \"TCP\", "
	"\"targetPort\": 9090}, {\"name\": \"http\", \"port\": 80, \"protocol\": \"TCP\", \"targetPort\": 8080}]}}";

#define READY "{\"ready\": true, \"serving\": true, \"terminating\": false}"
#define TERMINATING_SERVING "{\"ready\": false, \"serving\": true, \"terminating\": true}"
#define TERMINATING "{\"ready\": false, \"serving\": false, \"terminating\": true}"

/* EndpointSlice web-1 of Service web: e1, e2, e3, all ready; ports metrics 9090 and http 8080. */
static char *slice_web(char *buf, size_t len)
{
	snprintf(buf, len,
		 "{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\", \"metadata\": {\"name\": \"web-1\", "
		 "\"namespace\": \"default\", \"labels\": {\"kubernetes.io/service-name\": \"web\"}}, \"addressType\": \"IPv4\", "
		 "\"ports\": [{\"name\": \"metrics\", \"port\": 9090, \"protocol\": \"TCP\"}, {\"name\": \"http\", \"port\": %d, "
		 "\"protocol\": \"TCP\"}], \"endpoints\": [{\"addresses\": [\"%s\"], \"conditions\": " READY "}, "
		 "{\"addresses\": [\"%s\"], \"conditions\": " READY "}, {\"addresses\": [\"%s\"], \"conditions\": " READY "}]}",
		 EP_PORT, EPS[0], EPS[1], EPS[2]);
	return buf;
}

/* Endpoint i of web-1 (0-based, e<i+1>) gets the conditions c: one JSON patch, one event. Up to two at once. */
static void slice_conditions(int i, const char *c, int j, const char *cj)
{
	char more[256] = "";

	if (j >= 0)
		snprintf(more, sizeof(more), ", {\"op\": \"replace\", \"path\": \"/endpoints/%d/conditions\", \"value\": %s}", j, cj);
	if (kubectl(NULL, "patch endpointslice web-1 --type=json -p '[{\"op\": \"replace\", \"path\": "
			  "\"/endpoints/%d/conditions\", \"value\": %s}%s]'", i, c, more)) {
		dump_log();
		fail_msg("kubectl patch endpointslice web-1 failed");
	}
}

/* Every connect of s answered, and by exactly the endpoints in mask (bit i: e<i+1>). */
static bool lands_on(struct e2e_sum s, unsigned mask)
{
	if (s.fail || s.bad)
		return false;
	for (int i = 0; i < NEPS; i++)
		if (!!(mask & (1u << i)) != (s.ok[i] > 0))
			return false;
	return true;
}

/* Wait until connects to SVC_FE_ADDR land on exactly the endpoints in mask; then 200 more must too. */
static void wait_svc_lands(unsigned mask)
{
	long deadline = kb_now_ms() + WAIT_MS;
	struct e2e_sum s;

	while (!lands_on(connect_to(SVC_FE_ADDR, 30), mask)) {
		if (kb_now_ms() > deadline)
			break;
		e2e_sleep_ms(100);
	}
	s = connect_to(SVC_FE_ADDR, 200);
	print_message("# %s: e1 %ld, e2 %ld, e3 %ld\n", SVC_FE_ADDR, s.ok[0], s.ok[1], s.ok[2]);
	if (!lands_on(s, mask)) {
		dump_log();
		fail_msg("expected the endpoints %#x: e1 %ld, e2 %ld, e3 %ld, failed %ld (first: %s), bad %ld", mask, s.ok[0],
			 s.ok[1], s.ok[2], s.fail, strerror(s.first_err), s.bad);
	}
}

/* What the daemon counts of its changes: verify's scoped and whole ones, the source's applies and replaces. */
struct changes {
	long scoped, whole, applies, replaces;
};

static struct changes changes_now(void)
{
	struct json_object *v = ctl("verify", 20000), *st, *k;
	struct changes c;

	if (!e2e_reply_ok(v)) {
		dump_log();
		fail_msg("verify: %s", v ? json_object_to_json_string(v) : strerror(errno));
	}
	c.scoped = e2e_jint(v, "scopedChanges");
	c.whole = e2e_jint(v, "wholeChanges");
	json_object_put(v);
	k = kube_status(&st);
	c.applies = e2e_jint(k, "applies");
	c.replaces = e2e_jint(k, "replaces");
	json_object_put(st);
	return c;
}

/* Wait until the source took one more change than at c (applied or replaced): its swap is done. */
static struct changes wait_changed(struct changes c)
{
	long deadline = kb_now_ms() + WAIT_MS;
	struct changes now;

	for (now = changes_now(); now.applies + now.replaces == c.applies + c.replaces; now = changes_now()) {
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("the EndpointSlice's change was not taken");
		}
		e2e_sleep_ms(50);
	}
	return now;
}

/*
 * Made with kubectl: a Gateway of ours at SVC_FE_ADDR, a TCPRoute to port 80
 * of Service web, the Service and its EndpointSlice with e1..e3 ready.
 * Connects land on the three (getpeername shows the frontend; the clusterIP
 * is never connected to). e3 turning not-ready (still serving, terminating)
 * with one kubectl patch: from the moment the daemon took that one event it
 * gets no new connect, which took exactly one scoped change (one swap of the
 * touched frontend) and no whole one, and a looping client sees no failure
 * meanwhile. Nothing ready: the serving terminating one takes the connects
 * (kube-proxy's fallback); one ready again: it alone.
 */
static void test_kube_service_slices(void **state)
{
	char buf[2048];
	struct changes c0, c1;
	struct e2e_sum s;
	int status;

	NEED_ENV();
	kube("create", "gw-svc", gateway(buf, sizeof(buf), "svc", "kb", SVC_FE_ADDR));
	kube("create", "svc-web", SVC_WEB);
	kube("create", "rt-web", tcproute_svc(buf, sizeof(buf), "web", "svc", "web", 80));
	kube("create", "eps-web", slice_web(buf, sizeof(buf)));
	wait_svc_lands(7);
	assert_converged();
	wait_kcond("tcproute web", "ResolvedRefs", true, "True", NULL);

	c0 = changes_now();
	client_spawn(0, SVC_FE_ADDR, 0, 1000);
	slice_conditions(2, TERMINATING_SERVING, -1, NULL);
	c1 = wait_changed(c0);
	/* Taken: not one new connect reaches e3 (a terminating endpoint is left out while ready ones exist). */
	s = connect_to(SVC_FE_ADDR, 200);
	print_message("# e3 not ready: e1 %ld, e2 %ld, e3 %ld\n", s.ok[0], s.ok[1], s.ok[2]);
	assert_true(lands_on(s, 3));
	status = e2e_kid_wait(&E.kids[0], &E.t[0].stop, kb_now_ms() + 10000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	s = e2e_tallies_sum(&E.t[0], 1);
	print_message("# the looping client meanwhile: %ld connects\n", s.total_ok);
	e2e_assert_no_failure(s);
	assert_true(s.total_ok > 0);
	/* One event, one scoped change: one swap. */
	assert_int_equal(c1.applies, c0.applies + 1);
	assert_int_equal(c1.replaces, c0.replaces);
	assert_int_equal(c1.scoped, c0.scoped + 1);
	assert_int_equal(c1.whole, c0.whole);

	/* Nothing ready: e3, serving while it terminates, takes every connect; e1 and e2 (not serving) none. */
	slice_conditions(0, TERMINATING, 1, TERMINATING);
	wait_svc_lands(4);
	/* e2 ready again: it alone, the terminating e3 left out again. */
	slice_conditions(1, READY, -1, NULL);
	wait_svc_lands(2);
	assert_converged();
}


/* Make Gateway steady (STEADY_FE_ADDR) with a TCPRoute to Backend b2 (e2), and wait until it steers there. */
static void steady_frontend(void)
{
	char buf[2048];
	long deadline = kb_now_ms() + WAIT_MS;

	kube("create", "gw-steady", gateway(buf, sizeof(buf), "steady", "kb", STEADY_FE_ADDR));
	kube("create", "be-b2", backend(buf, sizeof(buf), "b2", EPS[1], EP_PORT, NULL));
	kube("create", "rt-steady", tcproute(buf, sizeof(buf), "steady", "steady", "b2"));
	while (connect_to(STEADY_FE_ADDR, 20).ok[1] != 20) {
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("Gateway steady does not steer to %s", EPS[1]);
		}
		e2e_sleep_ms(100);
	}
}

/*
 * Each fault of the server, then a change made while (or right after) it
 * happens: the daemon comes back to the server's state, and verify finds the
 * maps equal to a from-scratch compile. A client connects to a frontend that
 * neither the faults nor the changes touch (Gateway steady) all along, from
 * before the first fault to after the last: not one of its connects fails or
 * reaches another endpoint, and it connects during every row.
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
	long made[sizeof(rows) / sizeof(rows[0])];
	struct e2e_sum s;
	int status;

	NEED_ENV();
	steady_frontend();
	/* Tally 0: 5 ms between connects, so that it runs through the 30 s outage without crowding the CPUs. */
	client_spawn(0, STEADY_FE_ADDR, 0, 5000);
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
			snprintf(line, sizeof(line), "%s," KUBE_USER, E.token);
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
		s = e2e_tallies_sum(&E.t[0], 1);
		made[i] = s.total_ok + s.fail + s.bad;
	}
	status = e2e_kid_wait(&E.kids[0], &E.t[0].stop, kb_now_ms() + 10000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	s = e2e_tallies_sum(&E.t[0], 1);
	print_message("# Gateway steady through every fault: %ld connects to %s, %ld elsewhere, %ld failed\n", s.ok[1],
		      EPS[1], s.total_ok - s.ok[1] + s.bad, s.fail);
	e2e_assert_no_failure(s);
	assert_int_equal(s.ok[1], s.total_ok);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (made[i] <= (i ? made[i - 1] : 0))
			fail_msg("no connect to Gateway steady during %s", rows[i].fault);
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

/*
 * The README's cluster example, as a user runs it: `kubectl apply -f
 * examples/kubernetes/web.yaml`, connects to its Gateway's address land on
 * the Backend's endpoint (e1) with getpeername showing the frontend, and the
 * README's own kubectl jsonpath reads, character for character, print what
 * the README says they print.
 */
static const struct {
	const char *query, *want;
} readme_reads[] = {
	{ "get backend web -o jsonpath='{.status.conditions[?(@.type==\"Accepted\")].message}{\"\\n\"}'", "The Backend was accepted\n" },
	{ "get httproute web -o jsonpath='{.status.parents[0].conditions[?(@.type==\"Accepted\")].message}{\"\\n\"}'",
	  "Route is accepted\n" },
	{ "get gateway web -o jsonpath='{.status.addresses[0].value}{\"\\n\"}'", "198.18.0.20\n" },
};

static void test_kube_readme_example(void **state)
{
	char file[PATH_MAX + 64], *out;
	struct e2e_sum s;
	long deadline = kb_now_ms() + WAIT_MS;

	NEED_ENV();
	repo_file(file, sizeof(file), "examples/kubernetes/web.yaml");
	/* --validate=false alone differs from the README: the test server serves no /openapi for kubectl to check against. */
	if (kubectl(NULL, "apply --validate=false -f %s", file)) {
		dump_log();
		fail_msg("kubectl apply -f examples/kubernetes/web.yaml failed");
	}
	for (;;) {
		s = connect_to("198.18.0.20", 20);
		if (s.fail == 0 && s.bad == 0 && s.ok[0] == 20)
			break;
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("198.18.0.20:80 does not steer to %s: e1 %ld, e2 %ld, e3 %ld, failed %ld, bad %ld", EPS[0],
				 s.ok[0], s.ok[1], s.ok[2], s.fail, s.bad);
		}
		e2e_sleep_ms(100);
	}
	for (size_t i = 0; i < sizeof(readme_reads) / sizeof(readme_reads[0]); i++) {
		for (;;) {
			out = NULL;
			if (kubectl(&out, "%s", readme_reads[i].query) == 0 && out && !strcmp(out, readme_reads[i].want))
				break;
			if (kb_now_ms() > deadline) {
				dump_log();
				fail_msg("kubectl %s printed \"%s\", the README says \"%s\"", readme_reads[i].query,
					 out ? out : "(nothing)", readme_reads[i].want);
			}
			free(out);
			e2e_sleep_ms(200);
		}
		print_message("# kubectl %s: %s", readme_reads[i].query, out);
		free(out);
	}
	if (kubectl(NULL, "delete --wait=false -f %s", file)) {
		dump_log();
		fail_msg("kubectl delete -f examples/kubernetes/web.yaml failed");
	}
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
 * Status writes on the server (its write log) after write number *since,
 * which moves past them: how many, and in *by how many of them user made.
 * Not one may be a write the server found to change nothing: the daemon
 * compares with what the server holds before it writes.
 */
static long status_writes(long *since, const char *user, long *by)
{
	char req[64];
	struct json_object *w;
	long n = 0;

	snprintf(req, sizeof(req), "writes?since=%ld", *since);
	w = api_get(req);
	if (!w || !json_object_is_type(w, json_type_array))
		fail_msg("the server's write log could not be read");
	*by = 0;
	for (size_t i = 0; i < json_object_array_length(w); i++) {
		struct json_object *o = json_object_array_get_idx(w, i);

		*since = e2e_jint(o, "seq");
		if (strcmp(e2e_jstr(o, "subresource"), "status"))
			continue;	/* the Lease's renewals */
		n++;
		if (!strcmp(e2e_jstr(o, "user"), user))
			(*by)++;
		print_message("# status write %ld by %s: %s %s, code %ld%s\n", *since, e2e_jstr(o, "user"),
			      e2e_jstr(o, "resource"), e2e_jstr(o, "name"), e2e_jint(o, "code"),
			      json_object_get_boolean(e2e_jget(o, "noop")) ? " (changed nothing)" : "");
		if (json_object_get_boolean(e2e_jget(o, "noop")))
			fail_msg("status write %ld (%s %s) changed nothing", *since, e2e_jstr(o, "resource"), e2e_jstr(o, "name"));
	}
	json_object_put(w);
	return n;
}

/*
 * Two daemons on two nodes (netns), each reaching the one server through its
 * own listener and with its own user: each steers its own node's clients;
 * exactly one leads, and the verdict on a new invalid Backend is written by
 * that one alone (the server's write log says who); with nothing changing,
 * nobody writes (no flapping); the leader killed, the other takes over within
 * the lease duration (plus retries) and writes the next verdict, alone.
 */
static void test_kube_leader_election(void **state)
{
	char buf[2048];
	long deadline, w1, w2, seq, n, by;
	struct json_object *st;

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
	/* The follower steers its own node all the same: node2's clients reach b1's endpoint through FE_ADDR. */
	for (deadline = kb_now_ms() + WAIT_MS; connect_to2(FE_ADDR, 20).ok[0] != 20; e2e_sleep_ms(100))
		if (kb_now_ms() > deadline) {
			struct e2e_sum s = connect_to2(FE_ADDR, 20);

			dump_log();
			fail_msg("node2 does not steer %s to %s: failed %ld (first: %s), e1 %ld, e2 %ld, e3 %ld", FE_ADDR,
				 EPS[0], s.fail, strerror(s.first_err), s.ok[0], s.ok[1], s.ok[2]);
		}
	st = api_get("state");
	seq = e2e_jint(st, "writes");	/* the writes so far: what the tests before wrote */
	json_object_put(st);
	assert_true(seq >= 0);
	kube("create", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], 99999, NULL));
	wait_kcond("backend bad", "Accepted", false, "False", NULL);
	n = status_writes(&seq, KUBE_USER, &by);
	print_message("# both running: %ld status write(s), %ld by the leader\n", n, by);
	assert_true(n > 0);
	assert_int_equal(by, n);
	w1 = writes(E.env.sock);
	w2 = writes(E.sock2);
	assert_int_equal(w2, 0);
	e2e_sleep_ms(4000);
	assert_int_equal(writes(E.env.sock), w1);	/* nothing changed: nothing written */
	assert_int_equal(writes(E.sock2), w2);
	assert_int_equal(status_writes(&seq, KUBE_USER, &by), 0);
	e2e_kill(&E.daemon);
	for (deadline = kb_now_ms() + 15000 + 2 * 2000 + 5000; !leads(E.sock2); e2e_sleep_ms(200))
		if (kb_now_ms() > deadline) {
			dump_log();
			fail_msg("the second daemon did not take the lease over");
		}
	/* The next verdict: Backend bad made valid. */
	kube("apply", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], EP_PORT, NULL));
	wait_kcond("backend bad", "Accepted", false, "True", NULL);
	assert_true(writes(E.sock2) > w2);
	n = status_writes(&seq, KUBE_USER2, &by);
	print_message("# after the takeover: %ld status write(s), %ld by the new leader\n", n, by);
	assert_true(n > 0);
	assert_int_equal(by, n);
	kube("delete", "be-bad", backend(buf, sizeof(buf), "bad", EPS[2], EP_PORT, NULL));
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
		cmocka_unit_test_setup(test_kube_readme_example, test_setup),
		cmocka_unit_test_setup(test_kube_service_slices, test_setup),
		cmocka_unit_test_setup(test_kube_leader_election, test_setup),
		cmocka_unit_test_setup(test_kube_no_status, test_setup),
		cmocka_unit_test_setup(test_kube_faults, test_setup),
	};

	e2e_main_init("test_kube", group_teardown, 600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

