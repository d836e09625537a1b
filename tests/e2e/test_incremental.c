// SPDX-License-Identifier: Apache-2.0
/*
 * e2e: the scoped change path equals the whole pipeline. Across a state of
 * about 2,000 objects, objects are applied, edited and deleted one at a time
 * (and refused, and dry-run); after each step `kbackend verify` makes the
 * daemon compile its stored objects from scratch and compare statuses,
 * diagnostics and frontends with what the scoped changes built, and the test
 * checks that the step was scoped. A restart then compiles everything from
 * scratch and programs it: the pinned maps must not change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

#include <json-c/json.h>

#include "e2e.h"
#include "e2e_node.h"
#include "util.h"

#define NGW 16			/* Gateways of 64 TCP listeners each */
#define NLIS 64
#define NROUTES 980		/* one TCPRoute and one Backend each; the last listeners stay free */
#define NSTEPS 60		/* random single-object edits after the named ones (fewer under KB_SCALE, e2e.h) */

static char *buf;
static size_t len, cap;

static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(buf + len, cap - len, fmt, ap);
		va_end(ap);
		if ((size_t)n < cap - len)
			break;
		cap = cap ? cap * 2 : 1 << 16;
		assert_non_null(buf = realloc(buf, cap));
	}
	len += (size_t)n;
}

static void doc_start(void)
{
	len = 0;
	if (!buf) {
		cap = 1 << 20;
		assert_non_null(buf = malloc(cap));
	}
	buf[0] = '\0';
}

static void gateway(int g, int nlis, int addr)
{
	put("---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw-%d\n  namespace: inc\n"
	    "spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: 198.18.1.%d\n  listeners:\n",
	    g, addr);
	for (int l = 0; l < nlis; l++)
		put("    - name: l%d\n      protocol: TCP\n      port: %d\n", l, 10000 + l);
}

/* Backend be-<i> with n endpoints; seed varies the addresses so that an edit changes the table. */
static void backend(int i, int n, int seed)
{
	put("---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: be-%d\n  namespace: inc\n"
	    "spec:\n  endpoints:\n", i);
	for (int e = 0; e < n; e++)
		put("    - ip:\n        address: %s.%d\n        port: %d\n", e % 2 ? "203.0.113" : "198.51.100",
		    1 + (i * 7 + e * 13 + seed) % 250, 8000 + (i + seed) % 100);
}

/* TCPRoute <name> on listener l of gw-<g>, to Backend be-<b>. */
static void route(const char *name, int g, int l, int b)
{
	put("---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: %s\n  namespace: inc\n"
	    "spec:\n  parentRefs:\n    - name: gw-%d\n      sectionName: l%d\n  rules:\n    - backendRefs:\n"
	    "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: be-%d\n",
	    name, g, l, b);
}

static void route_i(int i, int b)
{
	char name[32];

	snprintf(name, sizeof(name), "r-%d", i);
	route(name, i / NLIS, i % NLIS, b);
}

/* Apply (or delete, or dry-run) buf; the reply's exit code. */
static int send_change(const char *verb, bool dry)
{
	char path[512];
	struct json_object *r;
	int rc;

	write_yaml(path, sizeof(path), "step.yaml", buf);
	r = dry ? CLI_JSON(&rc, verb, "--dry-run", "-f", path) : CLI_JSON(&rc, verb, "-f", path);
	json_object_put(r);
	return rc;
}

static long scoped_before, whole_before;

/* verify must find nothing; the step took the path `want`: 'S' scoped, 'W' whole, 'N' none (refused, or a no-op). */
static void check(const char *step, char want)
{
	int rc;
	struct json_object *v = CLI_JSON(&rc, "verify", "-o", "json");
	long scoped, whole;
	char took;

	assert_non_null(v);
	if (rc || !json_object_get_boolean(e2e_jget(v, "ok")))
		fail_msg("after %s: %s", step, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY));
	scoped = (long)e2e_jint(v, "scopedChanges");
	whole = (long)e2e_jint(v, "wholeChanges");
	took = scoped > scoped_before ? 'S' : whole > whole_before ? 'W' : 'N';
	if (took != want)
		fail_msg("after %s: the change took path %c, expected %c (S scoped, W whole, N none)", step, took, want);
	scoped_before = scoped;
	whole_before = whole;
	json_object_put(v);
}

static void test_scoped_equals_whole(void **state)
{
	const int nsteps = (int)e2e_scaled(NSTEPS, 10);
	char *maps, *after;
	int nobj;

	(void)state;
	NEED_ENV();
	/* The base state, one apply: Gateways, Backends, routes, a policy on a route and one on a Gateway, a ConfigMap. */
	doc_start();
	put("%s", YAML_EG);
	for (int g = 0; g < NGW; g++)
		gateway(g, NLIS, g + 1);
	for (int i = 0; i < NROUTES; i++) {
		backend(i, 1 + i % 4, 0);
		route_i(i, i);
	}
	/* A second route on r-3's listener with the same backends: the two are judged together. */
	route("twin-3", 0, 3, 3);
	put("---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata:\n  name: rr\n"
	    "  namespace: inc\nspec:\n  targetRefs:\n    - group: gateway.networking.k8s.io\n      kind: TCPRoute\n"
	    "      name: r-5\n  loadBalancer:\n    type: RoundRobin\n");
	put("---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata:\n  name: gw2\n"
	    "  namespace: inc\nspec:\n  targetRefs:\n    - group: gateway.networking.k8s.io\n      kind: Gateway\n"
	    "      name: gw-2\n  loadBalancer:\n    type: Random\n");
	put("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n  namespace: inc\ndata:\n  a: b\n");
	nobj = 1 + NGW + 2 * NROUTES + 4;
	assert_int_equal(send_change("apply", false), 0);
	check("the base apply", 'W');
	assert_int_equal(send_change("apply", false), 0);
	check("re-applying the base file unchanged", 'N');
	printf("# base state: %d objects, %d frontends\n", nobj, NGW * NLIS);

	doc_start();
	backend(7, 3, 1);
	assert_int_equal(send_change("apply", false), 0);
	check("editing Backend be-7", 'S');

	doc_start();
	backend(3, 2, 5);
	assert_int_equal(send_change("apply", false), 0);
	check("editing Backend be-3, which two routes share", 'S');

	doc_start();
	backend(NROUTES, 2, 0);
	route_i(NROUTES, NROUTES);
	assert_int_equal(send_change("apply", false), 0);
	check("adding a Backend and a route on a free listener", 'S');

	doc_start();
	route_i(10, 11);
	assert_int_equal(send_change("apply", false), 0);
	check("pointing route r-10 at be-11", 'S');

	doc_start();
	route("r-12", NGW - 1, NLIS - 1, 12);
	assert_int_equal(send_change("apply", false), 0);
	check("moving route r-12 to another Gateway", 'S');

	doc_start();
	route_i(5, 6);
	assert_int_equal(send_change("apply", false), 0);
	check("editing r-5, which a policy targets", 'S');

	/* Refused changes leave everything as it was, statuses of the stored objects included. */
	doc_start();
	backend(20, 0, 0);
	put("---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: be-21\n  namespace: inc\n"
	    "spec:\n  endpoints:\n    - ip:\n        address: 010.0.0.1\n        port: 80\n");
	assert_int_not_equal(send_change("apply", false), 0);
	check("a refused apply", 'N');
	doc_start();
	backend(30, 1, 0);
	assert_int_not_equal(send_change("delete", false), 0);
	check("a refused delete (route r-30 still sends to be-30)", 'N');
	doc_start();
	backend(31, 2, 9);
	assert_int_equal(send_change("apply", true), 0);
	check("a dry run", 'N');

	doc_start();
	route_i(40, 40);
	assert_int_equal(send_change("delete", false), 0);
	check("deleting route r-40", 'S');
	doc_start();
	backend(40, 1, 0);
	assert_int_equal(send_change("delete", false), 0);
	check("deleting its Backend be-40", 'S');

	doc_start();
	put("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n  namespace: inc\ndata:\n  a: c\n");
	assert_int_equal(send_change("apply", false), 0);
	check("editing a ConfigMap", 'S');

	/* A route to a Service steered to its EndpointSlice: the indexes of routes and slices by Service follow each edit. */
	doc_start();
	put("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-45\n  namespace: inc\nspec:\n  ports:\n"
	    "    - name: http\n      port: 80\n");
	put("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-45-a\n  namespace: inc\n"
	    "  labels:\n    kubernetes.io/service-name: svc-45\naddressType: IPv4\nports:\n  - name: http\n    port: 8080\n"
	    "endpoints:\n  - addresses: [198.51.100.45]\n  - addresses: [198.51.100.46]\n");
	assert_int_equal(send_change("apply", false), 0);
	check("a Service and its EndpointSlice", 'S');
	doc_start();
	put("---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: r-45\n  namespace: inc\n"
	    "spec:\n  parentRefs:\n    - name: gw-0\n      sectionName: l45\n  rules:\n    - backendRefs:\n"
	    "        - name: svc-45\n          port: 80\n");
	assert_int_equal(send_change("apply", false), 0);
	check("route r-45 sent to Service svc-45", 'S');
	doc_start();
	put("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-45-a\n  namespace: inc\n"
	    "  labels:\n    kubernetes.io/service-name: svc-45\naddressType: IPv4\nports:\n  - name: http\n    port: 8080\n"
	    "endpoints:\n  - addresses: [198.51.100.45]\n  - addresses: [198.51.100.46]\n    conditions: {ready: false}\n");
	assert_int_equal(send_change("apply", false), 0);
	check("an endpoint of svc-45 turning not-ready", 'S');
	doc_start();
	put("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-45\n  namespace: inc\nspec:\n  ports:\n"
	    "    - name: web\n      port: 80\n");
	assert_int_equal(send_change("apply", false), 0);
	check("svc-45's port renamed (no slice port matches it now)", 'S');

	/* A frontend that starts, then stops, waiting for a DNS name: the table index's list of named frontends follows. */
	doc_start();
	put("---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: be-50\n  namespace: inc\n"
	    "spec:\n  endpoints:\n    - fqdn:\n        hostname: be-50.inc.invalid\n        port: 8080\n");
	assert_int_equal(send_change("apply", false), 0);
	check("pointing Backend be-50 at a DNS name", 'S');
	doc_start();
	backend(50, 2, 3);
	assert_int_equal(send_change("apply", false), 0);
	check("pointing be-50 back at addresses", 'S');

	doc_start();
	gateway(4, NLIS, 100);
	assert_int_equal(send_change("apply", false), 0);
	check("moving gw-4 to another address (the whole pipeline)", 'W');

	/* Random single-object edits: re-point routes, change endpoint sets. Each is a from-scratch verify of ~2,000 objects. */
	srand(42);
	for (int s = 0; s < nsteps; s++) {
		int i = rand() % (NROUTES - 64), kind = rand() % 3;
		char step[96];

		if (i == 3 || i == 12 || i == 40)
			continue;
		doc_start();
		if (kind == 0)
			backend(i, 1 + rand() % 5, s + 100);
		else if (kind == 1)
			route_i(i, rand() % (NROUTES - 64));
		else {
			backend(i, 2, s);
			route_i(i, i);
		}
		if (send_change("apply", false) != 0) {
			dump_log();
			fail_msg("random step %d was refused", s);
		}
		snprintf(step, sizeof(step), "random step %d", s);
		check(step, 'S');
	}
	printf("# %d random single-object edits, each scoped and verified\n", nsteps);
	assert_int_equal(send_change("apply", false), 0);
	check("re-applying the last step's objects", 'N');

	/* A restart compiles the stored state from scratch and programs it: nothing in the maps may move. */
	maps = dump_frontends_map_as(true);
	daemon_kill();
	if (daemon_start()) {
		dump_log();
		fail_msg("the daemon did not restart");
	}
	after = dump_frontends_map_as(true);
	if (strcmp(maps, after))
		fail_msg("the maps the scoped changes programmed differ from a from-scratch compile after a restart");
	printf("# %d steps verified; the maps (%zu bytes of dump) survive a from-scratch restart unchanged\n",
	       nsteps + 21, strlen(maps));
	free(maps);
	free(after);
}

static int group_setup(void **state)
{
	(void)state;
	return node_setup("incremental", 'i');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_scoped_equals_whole, test_teardown),
	};

	e2e_main_init("test_incremental", group_teardown, 600);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
