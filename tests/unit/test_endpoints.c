// SPDX-License-Identifier: Apache-2.0
/*
 * Service and ServiceImport backendRefs steered to EndpointSlices: the port
 * matched by name as kube-proxy matches it, ready/serving/terminating
 * selection, several slices merged, a missing Service in Envoy Gateway's
 * words, IPv6, and the Kubernetes field checks of the three kinds.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "testutil.h"
#include "compile/compile.h"

static const char *gw4 = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg, namespace: default}\n"
			 "spec:\n  addresses: [{value: 198.18.0.10}]\n  listeners:\n"
			 "    - {name: tcp, protocol: TCP, port: 8080}\n    - {name: udp, protocol: UDP, port: 5353}\n---\n";
static const char *gw6 = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg, namespace: default}\n"
			 "spec:\n  addresses: [{value: \"2001:db8:f::10\"}]\n  listeners:\n"
			 "    - {name: tcp, protocol: TCP, port: 8080}\n---\n";

/* A TCPRoute on listener tcp with one backendRef ref (a flow mapping). */
static const char *route(char *buf, size_t len, const char *kind, const char *listener, const char *ref)
{
	snprintf(buf, len,
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: %s\nmetadata: {name: r-%s, namespace: default}\n"
		 "spec:\n  parentRefs: [{name: eg, sectionName: %s}]\n  rules:\n    - backendRefs: [%s]\n---\n",
		 kind, listener, listener, ref);
	return buf;
}

static const char *web_service =
	"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
	"spec:\n  clusterIP: 198.18.1.1\n  ports:\n"
	"    - {name: http, port: 80, targetPort: http}\n"
	"    - {name: metrics, port: 9090, targetPort: 9100}\n"
	"    - {name: dns, port: 53, protocol: UDP}\n---\n";

static void load(struct kb_model *m, const char *yaml, enum kb_svc_mode mode)
{
	struct kb_policy p;
	char d[16384];

	tu_load(m, yaml);
	if (m->nerrors)
		fail_msg("parse errors:\n%s", tu_diags(m, d, sizeof(d)));
	kb_policy_init(&p);
	p.enable_backend = 1;
	p.service_endpoints = mode;
	kb_validate(m, &p);
}

/* The frontend of port (TCP unless udp) after compiling m under mode. */
static const struct kb_cfrontend *fe_of(struct kb_compiled *c, struct kb_model *m, enum kb_svc_mode mode, __u16 port)
{
	struct kb_compile_env env = { .service_endpoints = mode };

	assert_int_equal(kb_compile(m, &env, c), 0);
	for (size_t i = 0; i < c->nfes; i++)
		if (c->fes[i].port == port)
			return &c->fes[i];
	fail_msg("no frontend on port %u", port);
	return NULL;
}

/* "addr:port addr:port" of the frontend's endpoints, in table order (sorted by the compiler). */
static const char *eps(const struct kb_cfrontend *fe, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < fe->neps && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s%s%s:%u", i ? " " : "", fe->eps[i].family == AF_INET6 ? "[" : "",
				      fe->eps[i].address, fe->eps[i].family == AF_INET6 ? "]" : "", fe->eps[i].port);
	return buf;
}

static void test_port_by_name(void **state)
{
	char y[8192], r1[512], r2[512], out[512];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	/* The ref names Service port 80 (http): the slice port named http (8080) is the one connected to. */
	snprintf(y, sizeof(y), "%s%s%s%s", gw4, route(r1, sizeof(r1), "TCPRoute", "tcp", "{name: web, port: 80}"),
		 route(r2, sizeof(r2), "UDPRoute", "udp", "{name: web, port: 53}"), web_service);
	strcat(y, "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: web-a, namespace: default, labels: {kubernetes.io/service-name: web}}\n"
		  "addressType: IPv4\nports: [{name: metrics, port: 9100}, {name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]\n"
		  "endpoints: [{addresses: [198.51.100.1]}, {addresses: [198.51.100.2], conditions: {ready: true}}]\n---\n"
		  /* A slice without the http port serves no ref to port 80 (kube-proxy skips it the same way). */
		  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: web-b, namespace: default, labels: {kubernetes.io/service-name: web}}\n"
		  "addressType: IPv4\nports: [{name: metrics, port: 9100}]\nendpoints: [{addresses: [198.51.100.3]}]\n");
	load(&m, y, KB_SVC_AUTO);
	assert_int_equal(m.nerrors, 0);
	fe = fe_of(&c, &m, KB_SVC_AUTO, 8080);
	assert_string_equal(eps(fe, out, sizeof(out)), "198.51.100.1:8080 198.51.100.2:8080");
	assert_true(fe->nslots > 0);
	kb_compiled_free(&c);
	/* A UDPRoute takes the UDP port of that name. */
	assert_string_equal(eps(fe_of(&c, &m, KB_SVC_AUTO, 5353), out, sizeof(out)), "198.51.100.1:5353 198.51.100.2:5353");
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* An unnamed single Service port matches the unnamed slice port; a named slice port does not. */
	snprintf(y, sizeof(y), "%s%s", gw4, route(r1, sizeof(r1), "TCPRoute", "tcp", "{name: one, port: 80}"));
	strcat(y, "apiVersion: v1\nkind: Service\nmetadata: {name: one}\nspec: {ports: [{port: 80, targetPort: 8081}]}\n---\n"
		  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: one-a, labels: {kubernetes.io/service-name: one}}\n"
		  "addressType: IPv4\nports: [{port: 8081}]\nendpoints: [{addresses: [198.51.100.9]}]\n---\n"
		  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: one-b, labels: {kubernetes.io/service-name: one}}\n"
		  "addressType: IPv4\nports: [{name: x, port: 8082}]\nendpoints: [{addresses: [198.51.100.10]}]\n");
	load(&m, y, KB_SVC_AUTO);
	assert_int_equal(m.nerrors, 0);
	assert_string_equal(eps(fe_of(&c, &m, KB_SVC_AUTO, 8080), out, sizeof(out)), "198.51.100.9:8081");
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* Ready (nil true), serving (nil true), not terminating (nil false); else the serving terminating ones; else none. */
static void test_ready_serving_terminating(void **state)
{
	static const struct {
		const char *name;
		const char *endpoints;
		const char *want;
	} rows[] = {
		{ "ready ones only",
		  "[{addresses: [198.51.100.1]}, {addresses: [198.51.100.2], conditions: {ready: false}},"
		  " {addresses: [198.51.100.3], conditions: {ready: false, serving: true, terminating: true}},"
		  " {addresses: [198.51.100.4], conditions: {ready: true, serving: false}},"
		  " {addresses: [198.51.100.5], conditions: {ready: true, serving: true, terminating: false}}]",
		  "198.51.100.1:8080 198.51.100.5:8080" },
		{ "none ready: the serving terminating ones",
		  "[{addresses: [198.51.100.2], conditions: {ready: false}},"
		  " {addresses: [198.51.100.3], conditions: {ready: false, serving: true, terminating: true}},"
		  " {addresses: [198.51.100.6], conditions: {ready: false, serving: false, terminating: true}}]",
		  "198.51.100.3:8080" },
		{ "none ready or serving", "[{addresses: [198.51.100.2], conditions: {ready: false, serving: false}}]", "" },
		{ "the first address of an endpoint", "[{addresses: [198.51.100.7, 198.51.100.8]}]", "198.51.100.7:8080" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char y[8192], r[512], out[512];
		struct kb_model m;
		struct kb_compiled c;
		const struct kb_cfrontend *fe;

		snprintf(y, sizeof(y),
			 "%s%sapiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: p, port: 80}]}\n---\n"
			 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			 "metadata: {name: s-a, labels: {kubernetes.io/service-name: s}}\n"
			 "addressType: IPv4\nports: [{name: p, port: 8080}]\nendpoints: %s\n",
			 gw4, route(r, sizeof(r), "TCPRoute", "tcp", "{name: s, port: 80}"), rows[i].endpoints);
		load(&m, y, KB_SVC_AUTO);
		assert_int_equal(m.nerrors, 0);
		fe = fe_of(&c, &m, KB_SVC_AUTO, 8080);
		if (strcmp(eps(fe, out, sizeof(out)), rows[i].want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rows[i].name, out, rows[i].want);
		/* No endpoint: the frontend refuses connects, as kube-proxy rejects a Service with none. */
		assert_int_equal(fe->nslots == 0, !*rows[i].want);
		kb_compiled_free(&c);
		kb_model_free(&m);
	}
}

/* Every slice of the Service is read, an address listed twice counts once, other Services' slices not at all. */
static void test_multi_slice_merge(void **state)
{
	char y[8192], r[512], out[512];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_cfrontend *fe;

	snprintf(y, sizeof(y), "%s%s%s", gw4, route(r, sizeof(r), "TCPRoute", "tcp", "{name: web, port: 80}"), web_service);
	for (int s = 0; s < 3; s++) {
		char one[1024];

		snprintf(one, sizeof(one),
			 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			 "metadata: {name: web-%d, labels: {kubernetes.io/service-name: %s}}\n"
			 "addressType: IPv4\nports: [{name: http, port: 8080}]\n"
			 "endpoints: [{addresses: [198.51.100.%d]}, {addresses: [198.51.100.%d]}]\n---\n",
			 s, s == 2 ? "other" : "web", 10 + s, 11 + s);
		strcat(y, one);
	}
	load(&m, y, KB_SVC_AUTO);
	assert_int_equal(m.nerrors, 0);
	fe = fe_of(&c, &m, KB_SVC_AUTO, 8080);
	/* .11 is in web-0 and web-1; .12 and .13 belong to "other". */
	assert_string_equal(eps(fe, out, sizeof(out)), "198.51.100.10:8080 198.51.100.11:8080 198.51.100.12:8080");
	assert_int_equal(fe->nlocs, 1);
	assert_int_equal(fe->locs[0].nendpoints, 3);
	for (size_t i = 0; i < fe->neps; i++)
		assert_string_equal(fe->eps[i].backend, "default/web");
	kb_compiled_free(&c);
	kb_model_free(&m);
}

static const struct kb_condition *resolved_refs(const struct kb_model *m)
{
	for (size_t i = 0; i < m->nroutes; i++)
		for (size_t p = 0; p < m->routes[i]->meta.nparents; p++)
			for (size_t k = 0; k < m->routes[i]->meta.parents[p].nconds; k++)
				if (!strcmp(m->routes[i]->meta.parents[p].conds[k].type, "ResolvedRefs"))
					return &m->routes[i]->meta.parents[p].conds[k];
	fail_msg("no ResolvedRefs condition");
	return NULL;
}

/* A missing Service, ServiceImport or port, in Envoy Gateway's words; under auto a missing Service goes to DNS. */
static void test_missing_service(void **state)
{
	static const struct {
		const char *kind;
		const char *ref;
		enum kb_svc_mode mode;
		const char *reason;	/* NULL: resolved */
		const char *msg;
	} rows[] = {
		{ "TCPRoute", "{name: nope, port: 80}", KB_SVC_SLICES, "BackendNotFound",
		  "Failed to process route rule 0 backendRef 0: service default/nope not found." },
		{ "TCPRoute", "{group: multicluster.x-k8s.io, kind: ServiceImport, name: nope, port: 80}", KB_SVC_SLICES,
		  "BackendNotFound", "Failed to process route rule 0 backendRef 0: service import default/nope not found." },
		{ "TCPRoute", "{name: web, port: 81}", KB_SVC_SLICES, "PortNotFound",
		  "Failed to process route rule 0 backendRef 0: TCP Port 81 not found on service default/web." },
		{ "TCPRoute", "{name: web, port: 81}", KB_SVC_AUTO, "PortNotFound",
		  "Failed to process route rule 0 backendRef 0: TCP Port 81 not found on service default/web." },
		/* Port 53 is UDP on the Service: a TCPRoute cannot use it. */
		{ "TCPRoute", "{name: web, port: 53}", KB_SVC_AUTO, "PortNotFound",
		  "Failed to process route rule 0 backendRef 0: TCP Port 53 not found on service default/web." },
		{ "TCPRoute", "{name: nope, port: 80}", KB_SVC_AUTO, NULL, NULL },
		{ "TCPRoute", "{name: web, port: 81}", KB_SVC_DNS, NULL, NULL },
		{ "TCPRoute", "{name: web, port: 80}", KB_SVC_SLICES, NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char y[8192], r[512];
		struct kb_model m;
		const struct kb_condition *c;

		snprintf(y, sizeof(y), "%s%s%s", gw4, route(r, sizeof(r), rows[i].kind, "tcp", rows[i].ref), web_service);
		load(&m, y, rows[i].mode);
		c = resolved_refs(&m);
		if (!rows[i].reason) {
			if (c->status != KB_COND_TRUE)
				fail_msg("row %zu: refused: %s", i, c->message);
		} else {
			assert_int_equal(c->status, KB_COND_FALSE);
			assert_string_equal(c->reason, rows[i].reason);
			assert_string_equal(c->message, rows[i].msg);
		}
		kb_model_free(&m);
	}

	/* Under auto, the missing Service is resolved through cluster DNS as before: its name is pending. */
	{
		char y[8192], r[512];
		struct kb_model m;
		struct kb_compiled c;
		const struct kb_cfrontend *fe;

		snprintf(y, sizeof(y), "%s%s", gw4, route(r, sizeof(r), "TCPRoute", "tcp", "{name: nope, port: 80}"));
		load(&m, y, KB_SVC_AUTO);
		fe = fe_of(&c, &m, KB_SVC_AUTO, 8080);
		assert_int_equal(fe->locs[0].npending, 1);
		assert_string_equal(fe->locs[0].pending[0], "nope.default.svc.cluster.local");
		kb_compiled_free(&c);
		kb_model_free(&m);
	}
}

/* An IPv6 frontend takes the IPv6 slice (not both families of a dual-stack Service), else the IPv4 one; IPv4 never IPv6. */
static void test_ipv6(void **state)
{
	static const char *v6 = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
				"metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}\n"
				"addressType: IPv6\nports: [{name: http, port: 8080}]\n"
				"endpoints: [{addresses: [\"2001:db8:1::2\"]}, {addresses: [\"2001:db8:1::1\"]}]\n---\n";
	static const char *v4 = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
				"metadata: {name: web-v4, labels: {kubernetes.io/service-name: web}}\n"
				"addressType: IPv4\nports: [{name: http, port: 8080}]\n"
				"endpoints: [{addresses: [198.51.100.1]}]\n---\n";
	static const struct {
		const char *gw, *slices, *want;
	} rows[] = {
		{ NULL, NULL, "[2001:db8:1::1]:8080 [2001:db8:1::2]:8080" },	/* gw6, both slices */
		{ NULL, "v4", "198.51.100.1:8080" },				/* gw6, IPv4 only */
		{ "v4", "v6", "" },						/* gw4, IPv6 only */
		{ "v4", NULL, "198.51.100.1:8080" },				/* gw4, both */
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char y[8192], r[512], out[512];
		struct kb_model m;
		struct kb_compiled c;

		snprintf(y, sizeof(y), "%s%s%s%s%s", rows[i].gw ? gw4 : gw6,
			 route(r, sizeof(r), "TCPRoute", "tcp", "{name: web, port: 80}"), web_service,
			 !rows[i].slices || !strcmp(rows[i].slices, "v6") ? v6 : "",
			 !rows[i].slices || !strcmp(rows[i].slices, "v4") ? v4 : "");
		load(&m, y, KB_SVC_AUTO);
		assert_int_equal(m.nerrors, 0);
		if (strcmp(eps(fe_of(&c, &m, KB_SVC_AUTO, 8080), out, sizeof(out)), rows[i].want) != 0)
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, out, rows[i].want);
		kb_compiled_free(&c);
		kb_model_free(&m);
	}
}

/* Each object's invalid field, located, in Kubernetes' words; FQDN slices ignored. */
static void test_field_errors(void **state)
{
	static const struct {
		const char *yaml;
		const char *diag;
		const char *reason;
	} rows[] = {
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - {port: 0}\n",
		  "test.yaml:6:14: Service default/s: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
		  "Invalid" },
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - {port: 80, protocol: XYZ}\n",
		  "test.yaml:6:28: Service default/s: spec.ports[0].protocol: Unsupported value: \"XYZ\": supported values: "
		  "\"SCTP\", \"TCP\", \"UDP\"", "Invalid" },
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - {name: a, port: 80}\n"
		  "    - {port: 81}\n",
		  "test.yaml:7:7: Service default/s: spec.ports[1].name: Required value", "Invalid" },
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - {name: a, port: 80}\n"
		  "    - {name: a, port: 81}\n",
		  "test.yaml:7:14: Service default/s: spec.ports[1].name: Duplicate value: \"a\"", "Invalid" },
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: Cluster\n  ports: [{port: 80}]\n",
		  "test.yaml:5:9: Service default/s: spec.type: Unsupported value: \"Cluster\": supported values: "
		  "\"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"", "Invalid" },
		{ "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 198.18.0.300\n  ports: [{port: 80}]\n",
		  "test.yaml:5:14: Service default/s: spec.clusterIP: Invalid value: \"198.18.0.300\": must be a valid IP "
		  "address, (e.g. 10.9.8.7 or 2001:db8::ffff)", "Invalid" },
		{ "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv5\nendpoints: []\n",
		  "test.yaml:4:14: EndpointSlice default/e: addressType: Unsupported value: \"IPv5\": supported values: "
		  "\"FQDN\", \"IPv4\", \"IPv6\"", "Invalid" },
		{ "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n"
		  "endpoints:\n  - addresses: [\"2001:db8:1::1\"]\n",
		  "test.yaml:6:17: EndpointSlice default/e: endpoints[0].addresses[0]: Invalid value: \"2001:db8:1::1\": must "
		  "be a valid IPv4 address", "Invalid" },
		{ "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n"
		  "endpoints:\n  - addresses: []\n",
		  "test.yaml:6:5: EndpointSlice default/e: endpoints[0].addresses: Required value: must contain at least 1 address",
		  "Invalid" },
		{ "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n"
		  "endpoints: []\nports:\n  - {name: p, port: 70000}\n",
		  "test.yaml:7:21: EndpointSlice default/e: ports[0].port: Invalid value: 70000: must be between 1 and 65535, "
		  "inclusive", "Invalid" },
		{ "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: i}\n"
		  "spec:\n  type: ClusterIP\n  ports: [{port: 80}]\n",
		  "test.yaml:5:9: ServiceImport default/i: spec.type: Unsupported value: \"ClusterIP\": supported values: "
		  "\"ClusterSetIP\", \"Headless\"", "Invalid" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct kb_model m;
		const struct kb_condition *c;

		load(&m, rows[i].yaml, KB_SVC_AUTO);
		tu_assert_diag(&m, rows[i].diag);
		assert_int_equal(m.nerrors, 1);
		c = kb_get_condition(m.objects[0], "Accepted");
		assert_non_null(c);
		assert_int_equal(c->status, KB_COND_FALSE);
		assert_string_equal(c->reason, rows[i].reason);
		kb_model_free(&m);
	}

	/* An FQDN slice is valid Kubernetes that kbackend cannot steer to: said, not refused. */
	{
		struct kb_model m;
		const struct kb_condition *c;

		load(&m, "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			 "metadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: FQDN\n"
			 "endpoints: [{addresses: [web.example.com]}]\n", KB_SVC_AUTO);
		assert_int_equal(m.nerrors, 0);
		c = kb_get_condition(m.objects[0], "Accepted");
		assert_int_equal(c->status, KB_COND_UNKNOWN);
		assert_string_equal(c->reason, "UnsupportedAddressType");
		assert_false(kb_object_refused(m.objects[0]));
		kb_model_free(&m);
	}
}

/*
 * The SSRF guard on slice addresses: a loopback, link-local or node address
 * is left out with a located warning, and the slice serves with the rest
 * (one hostNetwork pod on this node must not take its Service down).
 */
static void test_ssrf_left_out(void **state)
{
	static char *node[] = { "198.51.100.2" };
	char y[8192], r[512], out[512], d[16384];
	struct kb_model m;
	struct kb_compiled c;
	const struct kb_condition *cond;
	struct kb_policy p;

	snprintf(y, sizeof(y), "%s%s%s", gw4, route(r, sizeof(r), "TCPRoute", "tcp", "{name: web, port: 80}"), web_service);
	strcat(y, "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: web-a, labels: {kubernetes.io/service-name: web}}\n"
		  "addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n"
		  "  - addresses: [127.0.0.1]\n  - addresses: [198.51.100.1]\n  - addresses: [169.254.169.254]\n"
		  "  - addresses: [198.51.100.2]\n");
	tu_load(&m, y);
	kb_policy_init(&p);
	p.node_addrs = node;
	p.nnode_addrs = 1;
	kb_validate(&m, &p);
	if (m.nerrors)
		fail_msg("refused:\n%s", tu_diags(&m, d, sizeof(d)));
	tu_assert_diag(&m, "test.yaml:34:17: warning: EndpointSlice default/web-a: endpoints[0].addresses[0]: IP address "
			   "127.0.0.1 is loopback (127.0.0.0/8), refused by kbackend's SSRF guard; allow it with "
			   "--allow-endpoint 127.0.0.1/32; the endpoint is left out");
	tu_assert_diag(&m, "test.yaml:36:17: warning: EndpointSlice default/web-a: endpoints[2].addresses[0]: IP address "
			   "169.254.169.254 is link-local (169.254.0.0/16)");
	tu_assert_diag(&m, "endpoints[3].addresses[0]: IP address 198.51.100.2 is an address of this node, refused by "
			   "kbackend's SSRF guard; allow it with --allow-endpoint 198.51.100.2/32; the endpoint is left out");
	cond = kb_get_condition(&m.slices[0]->meta, "Accepted");
	assert_int_equal(cond->status, KB_COND_TRUE);
	assert_string_equal(cond->message,
			    "1 of 4 endpoint(s) ready for Service default/web; 3 left out by kbackend's SSRF guard");
	assert_string_equal(eps(fe_of(&c, &m, KB_SVC_AUTO, 8080), out, sizeof(out)), "198.51.100.1:8080");
	kb_compiled_free(&c);
	kb_model_free(&m);
}

/* A refused slice gives nothing; a ServiceImport's slices carry the MCS label; a refused Service refuses the ref. */
static void test_import_and_refused(void **state)
{
	char y[8192], r[512], out[512];
	struct kb_model m;
	struct kb_compiled c;

	snprintf(y, sizeof(y), "%s%s", gw4,
		 route(r, sizeof(r), "TCPRoute", "tcp", "{group: multicluster.x-k8s.io, kind: ServiceImport, name: web, port: 80}"));
	strcat(y, "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: web}\n"
		  "spec: {type: ClusterSetIP, ips: [198.18.2.1], ports: [{port: 80}]}\n---\n"
		  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: web-imp, labels: {multicluster.kubernetes.io/service-name: web}}\n"
		  "addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [203.0.113.5]}]\n---\n"
		  /* The Service of the same name is another object: its slice is not the import's. */
		  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		  "metadata: {name: web-svc, labels: {kubernetes.io/service-name: web}}\n"
		  "addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [203.0.113.6]}]\n");
	load(&m, y, KB_SVC_SLICES);
	assert_int_equal(m.nerrors, 0);
	assert_string_equal(eps(fe_of(&c, &m, KB_SVC_SLICES, 8080), out, sizeof(out)), "203.0.113.5:8080");
	kb_compiled_free(&c);
	kb_model_free(&m);

	/* A Service that is refused refuses the refs to it. */
	snprintf(y, sizeof(y), "%s%sapiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, protocol: XYZ}]}\n",
		 gw4, route(r, sizeof(r), "TCPRoute", "tcp", "{name: web, port: 80}"));
	load(&m, y, KB_SVC_AUTO);
	assert_string_equal(resolved_refs(&m)->reason, "InvalidBackendRef");
	assert_string_equal(resolved_refs(&m)->message,
			    "Failed to process route rule 0 backendRef 0: Service default/web was not accepted.");
	kb_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_by_name),
		cmocka_unit_test(test_ready_serving_terminating),
		cmocka_unit_test(test_multi_slice_merge),
		cmocka_unit_test(test_missing_service),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_field_errors),
		cmocka_unit_test(test_ssrf_left_out),
		cmocka_unit_test(test_import_and_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
