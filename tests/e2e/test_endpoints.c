// SPDX-License-Identifier: Apache-2.0
/*
 * e2e: a Service backendRef steered straight to the ready endpoints of the
 * Service's EndpointSlice, with real connects from the node netns: both
 * ready endpoints answer and getpeername still shows the frontend; an
 * endpoint that turns not-ready gets no new connect once the one apply that
 * says so returns (a scoped change that `kbackend verify` agrees with), a
 * looping client sees no failure meanwhile; only terminating endpoints left
 * get the connects (kube-proxy's fallback); none left refuses them.
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

#define CONNECTS 200
#define NODE_ADDR "198.51.100.254"	/* the node netns's own address (e2e_node.h) */

/* The Gateway (FE_ADDR:FE_PORT), a TCPRoute to Service web port 80, and the Service (port http 80 -> 8080). */
static const char YAML_SVC[] =
	"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: app\n  namespace: default\n"
	"spec:\n  parentRefs:\n    - name: eg\n  rules:\n    - backendRefs:\n        - name: web\n          port: 80\n"
	"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n"
	"  clusterIP: 198.18.3.1\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n";

/* EndpointSlice web-1 with e1 and e3 (both in 198.51.100.0/24), each with its conditions as a flow mapping. */
static void apply_slice(const char *c1, const char *c3)
{
	char yaml[2048], path[512];
	int rc;
	struct json_object *r;

	snprintf(yaml, sizeof(yaml),
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n"
		 "  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nports:\n  - name: http\n"
		 "    port: %d\n    protocol: TCP\nendpoints:\n  - addresses: [\"%s\"]\n    conditions: %s\n"
		 "  - addresses: [\"%s\"]\n    conditions: %s\n",
		 EP_PORT, EPS[0], c1, EPS[2], c3);
	write_yaml(path, sizeof(path), "slice.yaml", yaml);
	r = CLI_JSON(&rc, "apply", "-f", path);
	json_object_put(r);
	if (rc) {
		dump_log();
		fail_msg("the EndpointSlice apply was refused");
	}
}

/* EndpointSlice web-2 of Service svc with one ready endpoint at addr. */
static void apply_other_slice(const char *svc, const char *addr)
{
	char yaml[1024], path[512];
	int rc;
	struct json_object *r;

	snprintf(yaml, sizeof(yaml),
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-2\n  namespace: default\n"
		 "  labels:\n    kubernetes.io/service-name: %s\naddressType: IPv4\nports:\n  - name: http\n    port: %d\n"
		 "endpoints:\n  - addresses: [\"%s\"]\n",
		 svc, EP_PORT, addr);
	write_yaml(path, sizeof(path), "slice2.yaml", yaml);
	r = CLI_JSON(&rc, "apply", "-f", path);
	json_object_put(r);
	assert_int_equal(rc, 0);
}

static long scoped_before, whole_before;

/* `kbackend verify` finds no difference from a from-scratch compile, and the last change took path want (S or W). */
static void check(const char *step, char want)
{
	int rc;
	struct json_object *v = CLI_JSON(&rc, "verify", "-o", "json");
	long scoped, whole;
	char took;

	assert_non_null(v);
	if (rc || !json_object_get_boolean(e2e_jget(v, "ok")))
		fail_msg("after %s: %s", step, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY));
	scoped = e2e_jint(v, "scopedChanges");
	whole = e2e_jint(v, "wholeChanges");
	took = scoped > scoped_before ? 'S' : whole > whole_before ? 'W' : 'N';
	if (took != want)
		fail_msg("after %s: the change took path %c, expected %c (S scoped, W whole, N none)", step, took, want);
	scoped_before = scoped;
	whole_before = whole;
	json_object_put(v);
}

/* CONNECTS fresh connects (getpeername checked against the frontend); the answers by endpoint. */
static struct e2e_sum connects(void)
{
	struct e2e_sum s = connect_n(CONNECTS, true);

	e2e_assert_no_failure(s);
	return s;
}

static void test_service_steered_to_slices(void **state)
{
	char path[512], yaml[4096];
	struct json_object *r;
	struct e2e_sum s;
	int rc;

	(void)state;
	NEED_ENV();
	snprintf(yaml, sizeof(yaml), "%s---\n%s", YAML_GW, YAML_SVC);
	write_yaml(path, sizeof(path), "svc.yaml", yaml);
	r = CLI_JSON(&rc, "apply", "-f", path);
	json_object_put(r);
	assert_int_equal(rc, 0);
	check("the Gateway, route and Service", 'W');
	apply_slice("{ready: true}", "{ready: true, serving: true, terminating: false}");
	check("the EndpointSlice with two ready endpoints", 'S');

	/* Both endpoints answer (no DNS, no ClusterIP: the Service's clusterIP is never connected to). */
	s = connects();
	printf("# both ready: %ld to %s, %ld to %s\n", s.ok[0], EPS[0], s.ok[2], EPS[2]);
	assert_true(s.ok[0] > 0 && s.ok[2] > 0);
	assert_int_equal(s.ok[1], 0);
	assert_int_equal(s.total_ok, CONNECTS);

	/* e3 turns not-ready: one apply, and from its reply on no connect reaches e3; a looping client never fails. */
	clients_start(1, 0, true);
	assert_true(clients_reach(1, 20, 10000));
	apply_slice("{ready: true}", "{ready: false}");
	s = connects();
	printf("# e3 not ready: %ld to %s, %ld to %s\n", s.ok[0], EPS[0], s.ok[2], EPS[2]);
	assert_int_equal(s.ok[0], CONNECTS);
	assert_int_equal(s.ok[2], 0);
	assert_int_equal(clients_stop(false), 0);
	s = clients_sum(1);
	e2e_assert_no_failure(s);
	check("e3 turning not-ready (a scoped change)", 'S');

	/* Nothing ready: the serving endpoints that terminate take the connects, kube-proxy's fallback. */
	apply_slice("{ready: false, serving: false, terminating: true}", "{ready: false, serving: true, terminating: true}");
	s = connects();
	assert_int_equal(s.ok[2], CONNECTS);
	check("only a terminating endpoint serving", 'S');

	/* Ready again: both. */
	apply_slice("{}", "{}");
	s = connects();
	assert_true(s.ok[0] > 0 && s.ok[2] > 0);
	check("both ready again (absent conditions: ready)", 'S');

	/* None serving: the frontend refuses connects (a Service with no endpoint), as kube-proxy rejects them. */
	apply_slice("{ready: false, serving: false}", "{ready: false, serving: false}");
	/* From a client in the node netns and the test cgroup (the test process itself never connects out). */
	s = connect_n(10, false);
	assert_int_equal(s.fail, 10);
	assert_int_equal(s.first_err, ECONNREFUSED);
	check("no endpoint serving", 'S');

	/*
	 * A second slice with the node's own address: the SSRF guard leaves that endpoint out (the apply is
	 * accepted, with a warning), and no connect goes to it; nothing listens there, so one would fail.
	 */
	apply_slice("{}", "{}");
	apply_other_slice("web", NODE_ADDR);
	s = connects();
	assert_int_equal(s.ok[0] + s.ok[2], CONNECTS);
	check("a second slice holding the node's own address", 'S');

	/* A second slice of the Service is merged; moved to another Service (its label) it leaves; deleted it goes. */
	apply_slice("{ready: false, serving: false}", "{ready: false, serving: false}");
	apply_other_slice("web", EPS[0]);
	s = connects();
	assert_int_equal(s.ok[0], CONNECTS);
	check("a second EndpointSlice of web", 'S');
	apply_other_slice("other", EPS[0]);
	s = connect_n(10, false);
	assert_int_equal(s.first_err, ECONNREFUSED);
	check("the second slice relabelled to Service other", 'S');
	apply_other_slice("web", EPS[0]);
	check("relabelled back", 'S');
	assert_int_equal(CLI(NULL, "delete", "endpointslice", "web-2", "-n", "default"), 0);
	s = connect_n(10, false);
	assert_int_equal(s.first_err, ECONNREFUSED);
	check("the second slice deleted", 'S');

	/* The Service deleted: under --service-endpoints=auto its name goes to cluster DNS, which nothing answers here. */
	apply_slice("{}", "{}");
	assert_int_equal(CLI(NULL, "delete", "service", "web", "-n", "default"), 0);
	check("the Service deleted (its route now waits for DNS)", 'S');
	s = connect_n(10, false);
	assert_int_equal(s.fail, 10);
}

static int group_setup(void **state)
{
	(void)state;
	return node_setup("endpoints", 'e');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_service_steered_to_slices, test_teardown),
	};

	e2e_main_init("test_endpoints", group_teardown, 300);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
