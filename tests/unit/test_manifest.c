// SPDX-License-Identifier: Apache-2.0
/* Unit tests for stage 1 (manifest.c): both Backend shapes, every kind, locations and located errors. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define BE_HDR "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: api\n"

static void assert_no_errors(const struct kb_model *m)
{
	char b[16384];

	if (m->nerrors)
		fail_msg("unexpected errors:\n%s", tu_diags(m, b, sizeof(b)));
}

static void assert_str(const char *got, const char *want)
{
	if (!want) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
}

/* ---- Backend: the real API shape and the seed's shape give the same endpoints ---- */

static const char real_shape[] = BE_HDR "spec:\n"
				 "  endpoints:\n"
				 "    - ip:\n"
				 "        address: 10.0.0.1\n"
				 "        port: 8080\n"
				 "    - fqdn:\n"
				 "        hostname: api.example.com\n"
				 "        port: 443\n"
				 "    - unix:\n"
				 "        path: /run/x.sock\n";

static const char seed_shape[] = BE_HDR "spec:\n"
				 "  endpoints:\n"
				 "    - ip: 10.0.0.1\n"
				 "      port: 8080\n"
				 "    - fqdn: api.example.com\n"
				 "      port: 443\n"
				 "    - unix: /run/x.sock\n";

static void test_both_shapes_same_model(void **state)
{
	struct kb_model a, b;

	tu_load(&a, real_shape);
	tu_load(&b, seed_shape);
	assert_no_errors(&a);
	assert_no_errors(&b);
	assert_int_equal(a.nbackends, 1);
	assert_int_equal(b.nbackends, 1);
	assert_int_equal(a.backends[0]->nendpoints, 3);
	assert_int_equal(b.backends[0]->nendpoints, 3);
	assert_true(a.backends[0]->has_endpoints);
	assert_true(b.backends[0]->has_endpoints);
	for (size_t i = 0; i < 3; i++) {
		const struct kb_endpoint *x = &a.backends[0]->endpoints[i], *y = &b.backends[0]->endpoints[i];

		assert_int_equal(x->type, y->type);
		assert_int_equal(x->present, y->present);
		assert_string_equal(x->address, y->address);
		assert_int_equal(x->has_port, y->has_port);
		assert_int_equal(x->port, y->port);
		assert_string_equal(x->path, y->path);
		assert_false(x->seed_shape);
		assert_true(y->seed_shape);
	}
	{
		const struct kb_endpoint *e = a.backends[0]->endpoints;

		assert_int_equal(e[0].type, KB_EP_IP);
		assert_int_equal(e[0].present, KB_EP_HAS_IP);
		assert_string_equal(e[0].address, "10.0.0.1");
		assert_int_equal(e[0].port, 8080);
		assert_string_equal(e[0].path, "spec.endpoints[0]");
		assert_int_equal(e[1].type, KB_EP_FQDN);
		assert_int_equal(e[1].present, KB_EP_HAS_FQDN);
		assert_string_equal(e[1].address, "api.example.com");
		assert_int_equal(e[1].port, 443);
		assert_int_equal(e[2].type, KB_EP_UNIX);
		assert_int_equal(e[2].present, KB_EP_HAS_UNIX);
		assert_string_equal(e[2].address, "/run/x.sock");
		assert_false(e[2].has_port);
		assert_string_equal(e[2].path, "spec.endpoints[2]");
	}
	assert_string_equal(a.backends[0]->meta.namespace, "default");
	assert_string_equal(a.backends[0]->meta.api_version, "gateway.envoyproxy.io/v1alpha1");
	kb_model_free(&a);
	kb_model_free(&b);
}

static void test_endpoint_oneof_bits_and_hostname(void **state)
{
	struct kb_model m;
	const struct kb_endpoint *e;

	tu_load(&m, BE_HDR "spec:\n"
		    "  endpoints:\n"
		    "    - hostname: h.example.com\n"
		    "      zone: z1\n"
		    "      fqdn: {hostname: f.example.com, port: 443}\n"
		    "      unix: {path: /run/u.sock}\n"
		    "      ip: {address: 1.2.3.4, port: 80}\n"
		    "    - hostname: only.example.com\n");
	assert_no_errors(&m);
	e = m.backends[0]->endpoints;
	assert_int_equal(e[0].present, KB_EP_HAS_IP | KB_EP_HAS_FQDN | KB_EP_HAS_UNIX);
	assert_int_equal(e[0].type, KB_EP_IP);	/* ip wins, whatever the order in YAML */
	assert_string_equal(e[0].address, "1.2.3.4");
	assert_int_equal(e[0].port, 80);
	assert_string_equal(e[0].hostname, "h.example.com");
	assert_string_equal(e[0].zone, "z1");
	assert_int_equal(e[1].present, 0);
	assert_int_equal(e[1].type, KB_EP_NONE);
	assert_null(e[1].address);
	kb_model_free(&m);
}

static void test_backend_fallback_and_protocols(void **state)
{
	struct kb_model m;
	const struct kb_backend *b;

	tu_load(&m, BE_HDR "spec:\n  fallback: true\n  type: Endpoints\n  appProtocols: [gateway.envoyproxy.io/h2c]\n"
		    "  endpoints: []\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: seed, namespace: ns1}\n"
		    "spec:\n  appProtocol: grpc\n  fallback:\n    backendRef:\n      name: fb\n      port: 8080\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: seed2}\n"
		    "spec:\n  fallback: {backendRef: {name: fb2, namespace: other}}\n");
	assert_no_errors(&m);
	assert_int_equal(m.nbackends, 3);
	b = m.backends[0];
	assert_true(b->fallback);
	assert_false(b->has_fallback_ref);
	assert_string_equal(b->type, "Endpoints");
	assert_true(b->has_endpoints);
	assert_int_equal(b->nendpoints, 0);
	assert_int_equal(b->napp_protocols, 1);
	assert_string_equal(b->app_protocols[0], "gateway.envoyproxy.io/h2c");
	assert_int_equal(b->tls.insecure_skip_verify, -1);
	b = m.backends[1];
	assert_string_equal(b->meta.namespace, "ns1");
	assert_false(b->fallback);
	assert_false(b->has_endpoints);
	assert_true(b->has_fallback_ref);
	assert_string_equal(b->fallback_ref_name, "fb");
	assert_null(b->fallback_ref_namespace);
	assert_true(b->has_fallback_ref_port);
	assert_int_equal(b->fallback_ref_port, 8080);
	assert_int_equal(b->napp_protocols, 1);
	assert_string_equal(b->app_protocols[0], "grpc");
	b = m.backends[2];
	assert_string_equal(b->fallback_ref_namespace, "other");
	assert_false(b->has_fallback_ref_port);
	kb_model_free(&m);
}

static void test_backend_tls(void **state)
{
	struct kb_model m;
	const struct kb_backend_tls *t;

	tu_load(&m, BE_HDR "spec:\n"
		    "  type: DynamicResolver\n"
		    "  tls:\n"
		    "    insecureSkipVerify: false\n"
		    "    wellKnownCACertificates: System\n"
		    "    caCertificateRefs:\n"
		    "      - {group: \"\", kind: ConfigMap, name: ca1}\n"
		    "      - {kind: Secret, name: ca2}\n"
		    "    sni: s.example.com\n"
		    "    autoSNIFromEndpointHostname: true\n"
		    "    minVersion: \"1.2\"\n"
		    "    maxVersion: \"1.3\"\n"
		    "    ciphers: [A, B, C]\n"
		    "    ecdhCurves: [X25519]\n"
		    "    signatureAlgorithms: [rsa_pss_rsae_sha256]\n"
		    "    alpnProtocols: [h2, http/1.1]\n"
		    "    clientCertificateRef: {name: client}\n"
		    "---\n" BE_HDR "spec:\n  tls: {}\n");
	assert_no_errors(&m);
	t = &m.backends[0]->tls;
	assert_true(t->present);
	assert_int_equal(t->insecure_skip_verify, 0);
	assert_string_equal(t->well_known_ca, "System");
	assert_int_equal(t->n_ca_refs, 2);
	assert_string_equal(t->sni, "s.example.com");
	assert_true(t->auto_sni);
	assert_string_equal(t->min_version, "1.2");
	assert_string_equal(t->max_version, "1.3");
	assert_int_equal(t->n_ciphers, 3);
	assert_true(t->has_client_cert);
	assert_string_equal(m.backends[0]->type, "DynamicResolver");
	t = &m.backends[1]->tls;
	assert_true(t->present);
	assert_int_equal(t->insecure_skip_verify, -1);
	assert_int_equal(t->n_ca_refs, 0);
	kb_model_free(&m);
}

/* Integers are stored raw: range checks are validate's job. */
static void test_raw_integers(void **state)
{
	struct kb_model m;

	tu_load(&m, BE_HDR "spec:\n  endpoints:\n    - ip: {address: 1.1.1.1, port: 70000}\n"
			   "    - ip: {address: 1.1.1.2, port: -1}\n    - ip: {address: 1.1.1.3, port: +0}\n");
	assert_no_errors(&m);
	assert_int_equal(m.backends[0]->endpoints[0].port, 70000);
	assert_int_equal(m.backends[0]->endpoints[1].port, -1);
	assert_true(m.backends[0]->endpoints[2].has_port);
	assert_int_equal(m.backends[0]->endpoints[2].port, 0);
	kb_model_free(&m);
}

/* ---- other kinds ---- */

static void test_gateway(void **state)
{
	struct kb_model m;
	const struct kb_gateway *g;

	tu_load(&m, "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg, namespace: gw}\n"
		    "spec:\n"
		    "  gatewayClassName: eg\n"
		    "  addresses:\n"
		    "    - value: 198.18.0.10\n"
		    "    - {type: Hostname, value: gw.example.com}\n"
		    "  infrastructure: {labels: {a: b}}\n"
		    "  listeners:\n"
		    "    - name: http\n"
		    "      protocol: HTTP\n"
		    "      port: 80\n"
		    "      hostname: \"*.example.com\"\n"
		    "      allowedRoutes: {namespaces: {from: All}}\n"
		    "    - name: tls\n"
		    "      protocol: TLS\n"
		    "      port: 443\n"
		    "      tls: {mode: Passthrough}\n"
		    "status:\n  conditions: []\n");
	assert_no_errors(&m);
	assert_int_equal(m.ngateways, 1);
	g = m.gateways[0];
	assert_string_equal(g->meta.namespace, "gw");
	assert_string_equal(g->gateway_class, "eg");
	assert_int_equal(g->naddresses, 2);
	assert_string_equal(g->addresses[0].type, "IPAddress");
	assert_string_equal(g->addresses[0].value, "198.18.0.10");
	assert_string_equal(g->addresses[1].type, "Hostname");
	assert_int_equal(g->nlisteners, 2);
	assert_string_equal(g->listeners[0].name, "http");
	assert_string_equal(g->listeners[0].protocol, "HTTP");
	assert_int_equal(g->listeners[0].port, 80);
	assert_string_equal(g->listeners[0].hostname, "*.example.com");
	assert_string_equal(g->listeners[1].path, "spec.listeners[1]");
	assert_int_equal(g->listeners[1].port, 443);
	kb_model_free(&m);
}

static void test_routes(void **state)
{
	struct kb_model m;
	const struct kb_route *r;
	const struct kb_backend_ref *ref;

	tu_load(&m, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r1}\n"
		    "spec:\n"
		    "  parentRefs:\n"
		    "    - name: eg\n"
		    "      namespace: gw\n"
		    "      sectionName: http\n"
		    "      port: 80\n"
		    "    - {group: gateway.networking.k8s.io, kind: Gateway, name: eg2}\n"
		    "  hostnames: [a.example.com, b.example.com]\n"
		    "  rules:\n"
		    "    - name: first\n"
		    "      matches:\n"
		    "        - path: {type: PathPrefix, value: /}\n"
		    "        - headers: [{name: x, value: y}]\n"
		    "      filters:\n"
		    "        - type: RequestHeaderModifier\n"
		    "      timeouts: {request: 10s}\n"
		    "      sessionPersistence: {sessionName: s}\n"
		    "      backendRefs:\n"
		    "        - group: gateway.envoyproxy.io\n"
		    "          kind: Backend\n"
		    "          name: a\n"
		    "          weight: 90\n"
		    "        - name: svc\n"
		    "          namespace: other\n"
		    "          port: 8080\n"
		    "          filters: [{type: RequestMirror}]\n"
		    "          fallback: true\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: u1}\n"
		    "spec:\n  parentRefs: [{name: eg}]\n  rules:\n    - backendRefs: [{name: b, port: 53}]\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t1}\nspec: {}\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: t2}\nspec: {}\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g1}\nspec:\n"
		    "  rules: [{matches: [{method: {service: x}}], backendRefs: [{name: grpc, port: 9000}]}]\n");
	assert_no_errors(&m);
	assert_int_equal(m.nroutes, 5);
	r = m.routes[0];
	assert_int_equal(r->meta.kind, KB_KIND_HTTPROUTE);
	assert_int_equal(r->nparents, 2);
	assert_string_equal(r->parents[0].name, "eg");
	assert_string_equal(r->parents[0].namespace, "gw");
	assert_string_equal(r->parents[0].section_name, "http");
	assert_true(r->parents[0].has_port);
	assert_int_equal(r->parents[0].port, 80);
	assert_string_equal(r->parents[0].path, "spec.parentRefs[0]");
	assert_null(r->parents[1].namespace);
	assert_string_equal(r->parents[1].kind, "Gateway");
	assert_false(r->parents[1].has_port);
	assert_int_equal(r->nhostnames, 2);
	assert_string_equal(r->hostnames[1], "b.example.com");
	assert_int_equal(r->nrules, 1);
	assert_int_equal(r->rules[0].nmatches, 2);
	assert_int_equal(r->rules[0].nfilters, 1);
	assert_string_equal(r->rules[0].path, "spec.rules[0]");
	assert_int_equal(r->rules[0].nrefs, 2);
	ref = &r->rules[0].refs[0];
	assert_string_equal(ref->group, "gateway.envoyproxy.io");
	assert_string_equal(ref->kind, "Backend");
	assert_string_equal(ref->name, "a");
	assert_true(ref->has_weight);
	assert_int_equal(ref->weight, 90);
	assert_false(ref->has_port);
	assert_false(ref->fallback);
	assert_int_equal(ref->nfilters, 0);
	assert_string_equal(ref->path, "spec.rules[0].backendRefs[0]");
	ref = &r->rules[0].refs[1];
	assert_null(ref->group);
	assert_null(ref->kind);
	assert_string_equal(ref->namespace, "other");
	assert_false(ref->has_weight);
	assert_int_equal(ref->weight, 1);
	assert_true(ref->has_port);
	assert_int_equal(ref->port, 8080);
	assert_int_equal(ref->nfilters, 1);
	assert_true(ref->fallback);
	assert_string_equal(ref->path, "spec.rules[0].backendRefs[1]");
	assert_int_equal(m.routes[1]->meta.kind, KB_KIND_UDPROUTE);
	assert_int_equal(m.routes[1]->rules[0].refs[0].port, 53);
	assert_int_equal(m.routes[2]->meta.kind, KB_KIND_TCPROUTE);
	assert_int_equal(m.routes[3]->meta.kind, KB_KIND_TLSROUTE);
	assert_int_equal(m.routes[4]->meta.kind, KB_KIND_GRPCROUTE);
	assert_int_equal(m.routes[4]->rules[0].nmatches, 1);
	kb_model_free(&m);
}

static void test_btp(void **state)
{
	struct kb_model m;
	const struct kb_btp *p;

	tu_load(&m, "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\n"
		    "spec:\n"
		    "  targetRefs:\n"
		    "    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r1}\n"
		    "  healthCheck:\n"
		    "    panicThreshold: 30\n"
		    "    active:\n"
		    "      type: HTTP\n"
		    "      timeout: 500ms\n"
		    "      interval: 1m\n"
		    "      unhealthyThreshold: 3\n"
		    "      healthyThreshold: 2\n"
		    "      http:\n"
		    "        path: /healthz\n"
		    "        method: GET\n"
		    "        expectedStatuses: [200, 204]\n"
		    "    passive:\n"
		    "      baseEjectionTime: 10s\n"
		    "      interval: 2s\n"
		    "      maxEjectionPercent: 100\n"
		    "      consecutive5XxErrors: 5\n"
		    "      consecutiveGatewayErrors: 0\n"
		    "      consecutiveLocalOriginFailures: 1\n"
		    "      splitExternalLocalOriginErrors: false\n"
		    "  dns: {dnsRefreshRate: 5s, respectDnsTtl: false, lookupFamily: IPv6Only}\n"
		    "  loadBalancer:\n"
		    "    type: ConsistentHash\n"
		    "    consistentHash: {type: SourceIP, tableSize: 65537}\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: old}\n"
		    "spec:\n  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: eg, sectionName: http}\n");
	assert_no_errors(&m);
	assert_int_equal(m.nbtps, 2);
	p = m.btps[0];
	assert_int_equal(p->ntargets, 1);
	assert_string_equal(p->targets[0].kind, "HTTPRoute");
	assert_string_equal(p->targets[0].name, "r1");
	assert_string_equal(p->targets[0].path, "spec.targetRefs[0]");
	assert_int_equal(p->panic_threshold, 30);
	assert_true(p->active.present);
	assert_string_equal(p->active.type, "HTTP");
	assert_int_equal(p->active.timeout_ms, 500);
	assert_int_equal(p->active.interval_ms, 60000);
	assert_int_equal(p->active.unhealthy_threshold, 3);
	assert_int_equal(p->active.healthy_threshold, 2);
	assert_string_equal(p->active.http_path, "/healthz");
	assert_string_equal(p->active.http_method, "GET");
	assert_int_equal(p->active.nexpected_statuses, 2);
	assert_int_equal(p->active.expected_statuses[1], 204);
	assert_true(p->passive.present);
	assert_int_equal(p->passive.base_ejection_ms, 10000);
	assert_int_equal(p->passive.interval_ms, 2000);
	assert_int_equal(p->passive.max_ejection_percent, 100);
	assert_int_equal(p->passive.consecutive_5xx, 5);
	assert_int_equal(p->passive.consecutive_gateway_errors, 0);
	assert_int_equal(p->passive.consecutive_local_origin_failures, 1);
	assert_int_equal(p->passive.split_external_local_origin_errors, 0);
	assert_true(p->has_dns);
	assert_int_equal(p->dns_refresh_ms, 5000);
	assert_int_equal(p->respect_dns_ttl, 0);
	assert_string_equal(p->lookup_family, "IPv6Only");
	assert_string_equal(p->lb_type, "ConsistentHash");
	assert_string_equal(p->consistent_hash_type, "SourceIP");

	/* Unset means -1 everywhere. */
	p = m.btps[1];
	assert_int_equal(p->ntargets, 1);
	assert_string_equal(p->targets[0].section_name, "http");
	assert_string_equal(p->targets[0].path, "spec.targetRef");
	assert_false(p->active.present);
	assert_false(p->passive.present);
	assert_false(p->has_dns);
	assert_int_equal(p->active.timeout_ms, -1);
	assert_int_equal(p->active.interval_ms, -1);
	assert_int_equal(p->active.unhealthy_threshold, -1);
	assert_int_equal(p->active.healthy_threshold, -1);
	assert_int_equal(p->passive.base_ejection_ms, -1);
	assert_int_equal(p->passive.interval_ms, -1);
	assert_int_equal(p->passive.max_ejection_percent, -1);
	assert_int_equal(p->passive.consecutive_5xx, -1);
	assert_int_equal(p->passive.consecutive_gateway_errors, -1);
	assert_int_equal(p->passive.consecutive_local_origin_failures, -1);
	assert_int_equal(p->passive.split_external_local_origin_errors, -1);
	assert_int_equal(p->dns_refresh_ms, -1);
	assert_int_equal(p->respect_dns_ttl, -1);
	assert_int_equal(p->panic_threshold, -1);
	assert_null(p->lb_type);
	kb_model_free(&m);
}

/* EG fields kbackend does not act on: accepted, with a warning, never an error. */
/*
 * Parsed lists are allocated at their exact size, and what every object
 * repeats is one copy: a list that grows after its walk (targetRef after
 * targetRefs) is moved first (under ASan, a push past the exact room is an
 * overflow), and two Backends' endpoint paths, namespaces and apiVersions are
 * the same strings.
 */
static void test_lists_exact_and_shared_strings(void **state)
{
	struct kb_model m;
	const struct kb_btp *p;
	const struct kb_backend *a, *b;

	tu_load(&m, "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\n"
		    "spec:\n"
		    "  targetRefs:\n"
		    "    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r1}\n"
		    "    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r2}\n"
		    "    - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r3}\n"
		    "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r4}\n"
		    "---\n" BE_HDR "  namespace: ns\nspec:\n  endpoints:\n"
		    "    - ip: {address: 198.51.100.1, port: 80}\n    - ip: {address: 198.51.100.2, port: 80}\n"
		    "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: api2\n"
		    "  namespace: ns\nspec:\n  endpoints:\n"
		    "    - ip: {address: 198.51.100.3, port: 80}\n    - ip: {address: 198.51.100.4, port: 80}\n");
	assert_no_errors(&m);
	p = m.btps[0];
	assert_int_equal(p->ntargets, 4);
	for (int i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "r%d", i + 1);
		assert_string_equal(p->targets[i].name, name);
	}
	assert_string_equal(p->targets[2].path, "spec.targetRefs[2]");
	assert_int_equal(m.nbackends, 2);
	a = m.backends[0];
	b = m.backends[1];
	assert_int_equal(a->nendpoints, 2);
	assert_string_equal(b->endpoints[1].address, "198.51.100.4");
	assert_string_equal(a->endpoints[1].path, "spec.endpoints[1]");
	assert_ptr_equal(a->endpoints[1].path, b->endpoints[1].path);
	assert_ptr_equal(a->meta.namespace, b->meta.namespace);
	assert_ptr_equal(a->meta.api_version, b->meta.api_version);
	kb_model_free(&m);
}

static void test_btp_unenforced_fields_warn(void **state)
{
	struct kb_model m;

	tu_load(&m, "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\n"
		    "spec:\n"
		    "  retry:\n"
		    "    numRetries: 3\n"
		    "  timeout: {http: {requestTimeout: 1s}}\n"
		    "  circuitBreaker: {maxConnections: 10}\n"
		    "  loadBalancer:\n"
		    "    type: RoundRobin\n"
		    "    slowStart: {window: 5s}\n");
	assert_int_equal(m.nerrors, 0);
	assert_int_equal(m.nbtps, 1);
	assert_int_equal(m.ndiags, 4);
	tu_assert_diag(&m, "test.yaml:5:3: warning: BackendTrafficPolicy default/p: spec.retry: not enforced by kbackend");
	tu_assert_diag(&m, "test.yaml:11:5: warning: BackendTrafficPolicy default/p: spec.loadBalancer.slowStart: "
			   "not enforced by kbackend");
	kb_model_free(&m);
}

static void test_grant_eg_others_and_list(void **state)
{
	struct kb_model m;

	tu_load(&m, "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: b}\n"
		    "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: a}]\n"
		    "  to: [{group: gateway.envoyproxy.io, kind: Backend}, {group: '', kind: Service, name: s}]\n"
		    "---\n"
		    "# EnvoyGateway's config document: no metadata, fields at the top.\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\n"
		    "provider: {type: Kubernetes}\ngateway: {controllerName: x}\nlogging: {level: {default: info}}\n"
		    "extensionApis:\n  enableBackend: true\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1alpha3\nkind: BackendTLSPolicy\nmetadata: {name: btls}\n"
		    "spec: {targetRefs: [{kind: Service, name: x}], validation: {hostname: x}}\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {name: eep}\n"
		    "spec: {extProc: [{backendRefs: [{name: x, fallback: true}]}]}\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: sp}\nspec: {}\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {name: ep}\nspec: {}\n"
		    "---\n"
		    "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: eg}\n"
		    "spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}\n"
		    "---\n"
		    "apiVersion: v1\nkind: List\nitems:\n"
		    "  - apiVersion: gateway.envoyproxy.io/v1alpha1\n    kind: Backend\n    metadata: {name: l1}\n"
		    "  - apiVersion: gateway.envoyproxy.io/v1alpha1\n    kind: Backend\n    metadata: {name: l2}\n");
	assert_no_errors(&m);
	assert_int_equal(m.nobjects, 9);
	assert_int_equal(m.ngrants, 1);
	assert_int_equal(m.grants[0]->nfrom, 1);
	assert_string_equal(m.grants[0]->from[0].namespace, "a");
	assert_string_equal(m.grants[0]->from[0].kind, "HTTPRoute");
	assert_int_equal(m.grants[0]->nto, 2);
	assert_null(m.grants[0]->to[0].name);
	assert_string_equal(m.grants[0]->to[1].group, "");
	assert_string_equal(m.grants[0]->to[1].name, "s");
	assert_int_equal(m.nenvoy_gateways, 1);
	assert_string_equal(m.envoy_gateways[0]->meta.name, "envoy-gateway");
	assert_int_equal(m.envoy_gateways[0]->enable_backend, 1);
	assert_int_equal(m.nothers, 5);
	assert_int_equal(m.others[0]->meta.kind, KB_KIND_BACKEND_TLS_POLICY);
	assert_int_equal(m.others[4]->meta.kind, KB_KIND_GATEWAY_CLASS);
	assert_int_equal(m.nbackends, 2);
	assert_string_equal(m.backends[1]->meta.name, "l2");
	assert_int_equal(m.backends[1]->meta.doc_index, 7);
	kb_model_free(&m);
}

/*
 * Real manifests mix in kinds kbackend does not use: each is read (identity,
 * metadata and source text), kept as an ignored object under the kind it was
 * written with, and never an error, whatever its body holds.
 */
static void test_mixed_kinds_read_and_ignored(void **state)
{
	static const char *const kinds[] = { "Secret", "ConfigMap", "Service", "EndpointSlice", "HTTPRouteFilter",
					     "Namespace", "ServiceAccount", "Deployment", "Gateway", "HTTPRoute" };
	struct kb_model m;

	tu_load(&m, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a, labels: {x: y}}\n"
		    "type: Opaque\ndata: {client-secret: Zm9v}\nstringData: {k: v}\n"
		    "---\n"
		    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: a}\ndata: {ca.crt: x}\n"
		    "---\n"
		    "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n"
		    "spec: {clusterIP: 198.18.0.10, ports: [{port: 80, targetPort: 8080}]}\n"
		    "---\n"
		    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: svc-1}\n"
		    "addressType: IPv4\nendpoints: [{addresses: [198.51.100.7]}]\nports: [{port: 8080}]\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: HTTPRouteFilter\nmetadata: {name: f}\n"
		    "spec: {urlRewrite: {path: {type: ReplaceRegexMatch}}}\n"
		    "---\n"
		    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: x}}\n"
		    "---\n"
		    "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\nautomountServiceAccountToken: false\n"
		    "---\n"
		    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 2}\n"
		    "---\n"
		    "# Istio's Gateway: a kind name kbackend knows, in another API group.\n"
		    "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: ig}\n"
		    "spec: {selector: {istio: ingressgateway}}\n"
		    "---\n"
		    "apiVersion: networking.example.com/v1\nkind: HTTPRoute\nmetadata: {name: other}\n"
		    "---\n" BE_HDR);
	assert_no_errors(&m);
	assert_int_equal(m.nobjects, 11);
	/* Namespace, Service and EndpointSlice are read; the other seven are kept as they are. */
	assert_int_equal(m.nothers, 7);
	assert_int_equal(m.nservices, 1);
	assert_int_equal(m.nslices, 1);
	assert_int_equal(m.nbackends, 1);
	assert_int_equal(m.ngateways, 0);
	assert_int_equal(m.nroutes, 0);
	for (size_t i = 0; i < 10; i++) {
		/* Namespace (labels, for allowedRoutes selectors), Service and EndpointSlice (Service backendRefs) are read. */
		if (strcmp(kinds[i], "Namespace") != 0 && strcmp(kinds[i], "Service") != 0 &&
		    strcmp(kinds[i], "EndpointSlice") != 0)
			assert_int_equal(m.objects[i]->kind, KB_KIND_FOREIGN);
		assert_string_equal(kb_meta_kind(m.objects[i]), kinds[i]);
		assert_non_null(m.objects[i]->src);
	}
	assert_string_equal(m.objects[0]->namespace, "a");
	assert_string_equal(m.objects[3]->api_version, "discovery.k8s.io/v1");
	assert_string_equal(kb_meta_label(&m, m.objects[1]), "ConfigMap a/s");
	assert_string_equal(kb_meta_kind(m.objects[10]), "Backend");
	/* The known kind names in another group are read as that group's kind, with a warning saying so. */
	tu_assert_diag(&m, "test.yaml:45:13: warning: Gateway default/ig: apiVersion: apiVersion \"networking.istio.io/v1beta1\" "
			   "is not the Gateway kbackend reads (gateway.networking.k8s.io/<version>): read as another API's "
			   "kind and ignored");
	tu_assert_diag(&m, "HTTPRoute default/other: apiVersion: apiVersion \"networking.example.com/v1\" is not the "
			   "HTTPRoute kbackend reads");
	assert_int_equal(m.ndiags, 2);
	kb_model_free(&m);

	/* Namespace is a core kind (bare "v1"): under a group it is another API's kind. */
	tu_load(&m, "apiVersion: x/v1\nkind: Namespace\nmetadata: {name: a}\n");
	assert_no_errors(&m);
	assert_int_equal(m.objects[0]->kind, KB_KIND_FOREIGN);
	tu_assert_diag(&m, "test.yaml:1:13: warning: Namespace default/a: apiVersion: apiVersion \"x/v1\" is not the "
			   "Namespace kbackend reads (v1): read as another API's kind and ignored");
	kb_model_free(&m);
}

/* ---- streams: documents, empty documents, syntax errors, NUL bytes ---- */

static void test_multi_doc_and_empty_docs(void **state)
{
	struct kb_model m;

	tu_load(&m, "# leading comment only\n"
		    "---\n" BE_HDR "---\n"
		    "# a comment-only document\n"
		    "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: two, namespace: x}\n"
		    "---\n"
		    "---\n");
	assert_int_equal(m.ndiags, 0);
	assert_int_equal(m.nobjects, 2);
	assert_string_equal(m.backends[0]->meta.name, "api");
	assert_string_equal(m.backends[1]->meta.name, "two");
	assert_string_equal(m.backends[1]->meta.namespace, "x");
	assert_true(m.backends[0]->meta.doc_index < m.backends[1]->meta.doc_index);
	assert_string_equal(m.backends[1]->meta.loc.file, "test.yaml");
	assert_int_equal(m.backends[1]->meta.loc.line, 10);
	assert_int_equal(m.backends[1]->meta.loc.col, 1);
	kb_model_free(&m);

	/* Nothing at all is not an error either. */
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_buffer(&m, "empty.yaml", "", 0), 0);
	assert_int_equal(m.ndiags, 0);
	assert_int_equal(m.nobjects, 0);
	kb_model_free(&m);
}

static void test_syntax_error_keeps_earlier_documents(void **state)
{
	struct kb_model m;

	tu_load(&m, BE_HDR "---\n" BE_HDR "spec:\n  endpoints: [\n---\n" BE_HDR);
	assert_int_equal(m.nobjects, 1);
	assert_int_equal(m.nerrors, 1);
	tu_assert_diag(&m, "test.yaml:12:1: YAML syntax error: did not find expected node content");
	kb_model_free(&m);
}

static void test_nul_bytes_and_binary(void **state)
{
	static const char nul_in_plain[] = BE_HDR "spec:\n  type: a\0b\n";
	static const char binary[] = "\x00\x01\x02\xff\xfe---\x00";
	struct kb_model m;

	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "n.yaml", nul_in_plain, sizeof(nul_in_plain) - 1);
	assert_int_not_equal(m.nerrors, 0);
	assert_int_equal(m.nobjects, 0);
	kb_model_free(&m);

	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "b.yaml", binary, sizeof(binary) - 1);
	assert_int_not_equal(m.nerrors, 0);
	tu_assert_diag(&m, "b.yaml:1:1: YAML syntax error: ");
	kb_model_free(&m);
}

/* kb_meta.src: each object's own text, which the state store writes back and re-reads. */
static void test_object_source_text(void **state)
{
	static const char doc2[] = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\n"
				   "metadata: {name: \xc3\xa9t\xc3\xa9}\n"
				   "spec:\n  endpoints:\n  - ip: 1.2.3.4 # comment kept\n    port: 80\n";
	struct kb_model m, r;

	tu_load(&m, "\xEF\xBB\xBF# leading comment\n" BE_HDR "---\n" "# comment\n" "---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: \xc3\xa9t\xc3\xa9}\n"
		    "spec:\n  endpoints:\n  - ip: 1.2.3.4 # comment kept\n    port: 80\n"
		    "---\n"
		    "apiVersion: v1\nkind: List\nitems:\n"
		    "  - apiVersion: gateway.envoyproxy.io/v1alpha1\n    kind: Backend\n    metadata:\n      name: l1\n"
		    "  - {apiVersion: gateway.envoyproxy.io/v1alpha1, kind: Backend, metadata: {name: l2}}\n");
	assert_no_errors(&m);
	assert_int_equal(m.nobjects, 4);
	assert_non_null(m.objects[0]->src);
	assert_int_equal(m.objects[0]->src_len, strlen(BE_HDR));
	assert_memory_equal(m.objects[0]->src, BE_HDR, strlen(BE_HDR));
	assert_int_equal(m.objects[1]->src_len, strlen(doc2));
	assert_memory_equal(m.objects[1]->src, doc2, strlen(doc2));
	assert_string_equal(m.objects[1]->name, "\xc3\xa9t\xc3\xa9");

	/* Every object's text parses back, alone, into the same object. */
	for (size_t i = 0; i < m.nobjects; i++) {
		kb_model_init(&r);
		kb_manifest_load_buffer(&r, "src.yaml", m.objects[i]->src, m.objects[i]->src_len);
		assert_no_errors(&r);
		assert_int_equal(r.nobjects, 1);
		assert_string_equal(r.objects[0]->name, m.objects[i]->name);
		assert_int_equal(r.objects[0]->kind, m.objects[i]->kind);
		kb_model_free(&r);
	}
	assert_string_equal(m.objects[2]->name, "l1");
	assert_non_null(strstr(m.objects[2]->src, "    kind: Backend\n"));
	kb_model_free(&m);
}

/* ---- locations ---- */

static void test_field_locations(void **state)
{
	struct kb_model m;
	const struct kb_meta *o;
	struct kb_loc l;

	tu_load(&m, BE_HDR "spec:\n"			/* 5 */
			   "  endpoints:\n"		/* 6 */
			   "    - ip:\n"		/* 7 */
			   "        address: 10.0.0.1\n"	/* 8 */
			   "        port: 8080\n"	/* 9 */
			   "    - fqdn: x.example.com\n"	/* 10 */
			   "      port: 443\n");	/* 11 */
	assert_no_errors(&m);
	o = &m.backends[0]->meta;
	assert_int_equal(o->loc.line, 1);
	l = kb_meta_loc(o, "spec.endpoints[0].ip.address");
	assert_string_equal(l.file, "test.yaml");
	assert_int_equal(l.line, 8);
	assert_int_equal(l.col, 18);
	l = kb_meta_loc(o, "spec.endpoints[0].ip.port");
	assert_int_equal(l.line, 9);
	assert_int_equal(l.col, 15);
	l = kb_meta_loc(o, "spec.endpoints[0]");
	assert_int_equal(l.line, 7);
	assert_int_equal(l.col, 7);
	l = kb_meta_loc(o, "spec.endpoints");
	assert_int_equal(l.line, 6);
	assert_int_equal(l.col, 3);
	l = kb_meta_loc(o, "spec.endpoints[1].fqdn");
	assert_int_equal(l.line, 10);
	assert_int_equal(l.col, 13);
	l = kb_meta_loc(o, "spec.endpoints[1].port");
	assert_int_equal(l.line, 11);
	assert_int_equal(l.col, 13);
	/* The seed shape has no .hostname: the nearest ancestor (the fqdn scalar) answers. */
	l = kb_meta_loc(o, "spec.endpoints[1].fqdn.hostname");
	assert_int_equal(l.line, 10);
	l = kb_meta_loc(o, "metadata.name");
	assert_int_equal(l.line, 4);
	assert_int_equal(l.col, 9);
	/* A diagnostic from a later stage lands on the recorded field. */
	kb_diag_add(&m, KB_SEV_ERROR, o, "spec.endpoints[0].ip.port", "bad port");
	tu_assert_diag(&m, "test.yaml:9:15: Backend default/api: spec.endpoints[0].ip.port: bad port");
	kb_model_free(&m);
}

/*
 * Objects keep no field locations: a later stage's message re-reads the
 * object's own text. A List item's copy starts mid-line and a document with
 * %TAG directives can't be re-read alone (it keeps its locations): both must
 * still name the field's place in the file.
 */
static void test_reread_locations(void **state)
{
	struct kb_model m;
	const struct kb_meta *a, *b;
	struct kb_loc l;

	tu_load(&m, "apiVersion: v1\nkind: List\nitems:\n"
		    "  - apiVersion: gateway.envoyproxy.io/v1alpha1\n"		/* 4 */
		    "    kind: Backend\n"						/* 5 */
		    "    metadata:\n      name: a\n    spec:\n      endpoints:\n"
		    "        - fqdn: {hostname: x.example.com, port: 443}\n"	/* 10 */
		    "...\n%TAG !e! tag:example.com,2000:\n---\n"
		    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\n"	/* 14 */
		    "metadata:\n  name: b\nspec:\n  endpoints:\n"
		    "    - ip: {address: 198.51.100.1, port: !e!x 80}\n");		/* 20 */
	assert_no_errors(&m);
	assert_int_equal(m.nbackends, 2);
	a = &m.backends[0]->meta;
	b = &m.backends[1]->meta;
	assert_null(a->fields);
	assert_non_null(b->fields);
	l = kb_meta_loc(a, "apiVersion");
	assert_int_equal(l.line, 4);
	assert_int_equal(l.col, 17);
	l = kb_meta_loc(a, "kind");
	assert_int_equal(l.line, 5);
	assert_int_equal(l.col, 11);
	kb_diag_add(&m, KB_SEV_ERROR, a, "spec.endpoints[0].fqdn.port", "bad port");
	tu_assert_diag(&m, "test.yaml:10:49: Backend default/a: spec.endpoints[0].fqdn.port: bad port");
	/* The second message about the same object comes from the re-read kept for it. */
	kb_diag_add(&m, KB_SEV_ERROR, a, "spec.endpoints[0].fqdn.nosuch", "x");
	tu_assert_diag(&m, "test.yaml:10:11: Backend default/a: spec.endpoints[0].fqdn.nosuch: x");
	kb_diag_add(&m, KB_SEV_ERROR, b, "spec.endpoints[0].ip.port", "bad port");
	tu_assert_diag(&m, "test.yaml:20:41: Backend default/b: spec.endpoints[0].ip.port: bad port");
	kb_model_free(&m);
}

/* ---- the table of bad inputs: each row's exact, located message ---- */

struct bad_case {
	const char *name;
	const char *yaml;
	const char *want;
	bool keeps_object;	/* the object is still in the model (its kind and name are known) */
};

#define EP_HDR BE_HDR "spec:\n  endpoints:\n"

static const struct bad_case bad_cases[] = {
	{ "syntax: mapping value in plain scalar", "a: b\nc: d: e\n",
	  "test.yaml:2:5: YAML syntax error: mapping values are not allowed in this context" },
	{ "syntax: unclosed flow sequence", BE_HDR "spec:\n  endpoints: [\n",
	  "test.yaml:7:1: YAML syntax error: did not find expected node content" },
	{ "syntax: tab indentation", "a:\n\tb: c\n",
	  "test.yaml:2:1: YAML syntax error: found character that cannot start any token" },
	{ "syntax: bad utf-8", "a: \xff\xfe\n", "test.yaml:1:4: YAML syntax error: invalid leading UTF-8 octet" },
	{ "document is a list", "- a\n- b\n",
	  "test.yaml:1:1: a document must be a mapping (a Kubernetes object), got a list" },
	{ "document is a scalar", "hello\n",
	  "test.yaml:1:1: a document must be a mapping (a Kubernetes object), got \"hello\"" },
	{ "kind kbackend does not use, without apiVersion", "kind: Secret\nmetadata: {name: s}\n",
	  "test.yaml:1:1: Secret default/s: apiVersion: missing required field \"apiVersion\"" },
	{ "empty kind", "apiVersion: v1\nkind: \"\"\nmetadata: {name: s}\n", "test.yaml:2:7: missing required field \"kind\"" },
	{ "kind kbackend does not use, empty apiVersion", "apiVersion: ''\nkind: Secret\nmetadata: {name: s}\n",
	  "test.yaml:1:1: Secret default/s: apiVersion: missing required field \"apiVersion\"" },
	{ "kind kbackend does not use, without a name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
	  "test.yaml:3:1: ConfigMap default/<unnamed>: metadata.name: missing required field \"metadata.name\"" },
	{ "missing kind", "apiVersion: gateway.envoyproxy.io/v1alpha1\nmetadata: {name: a}\n",
	  "test.yaml:1:1: missing required field \"kind\"" },
	{ "kind is a list", "apiVersion: v1\nkind: [Backend]\n", "test.yaml:2:7: kind: expected a string, got a list" },
	{ "missing apiVersion", "kind: Backend\nmetadata: {name: a}\n",
	  "test.yaml:1:1: Backend default/a: apiVersion: missing required field \"apiVersion\"" },
	{ "apiVersion group of another kind", "apiVersion: gateway.networking.k8s.io/v1\nkind: Backend\nmetadata: {name: a}\n",
	  "test.yaml:1:13: Backend default/a: apiVersion: apiVersion \"gateway.networking.k8s.io/v1\" does not match kind "
	  "Backend (expected gateway.envoyproxy.io/<version>)", true },
	{ "apiVersion bad version", "apiVersion: gateway.envoyproxy.io/v1gamma\nkind: Backend\nmetadata: {name: a}\n",
	  "test.yaml:1:13: Backend default/a: apiVersion: apiVersion \"gateway.envoyproxy.io/v1gamma\": the version is not "
	  "an API version", true },
	{ "Namespace label not a string", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {team: [a]}\n",
	  "test.yaml:5:18: Namespace default/a: metadata.labels.team: expected a string, got a list", true },
	{ "allowedRoutes selector labels not a mapping", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
	  "spec:\n  listeners:\n    - name: a\n      port: 80\n      protocol: HTTP\n      allowedRoutes:\n"
	  "        namespaces: {from: Selector, selector: {matchLabels: [team]}}\n",
	  "test.yaml:10:62: Gateway default/g: spec.listeners[0].allowedRoutes.namespaces.selector.matchLabels: expected a mapping, got a list",
	  true },
	{ "missing metadata", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nspec: {}\n",
	  "test.yaml:1:1: Backend default/<unnamed>: metadata.name: missing required field \"metadata.name\"" },
	{ "missing metadata.name", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  namespace: x\n",
	  "test.yaml:3:1: Backend x/<unnamed>: metadata.name: missing required field \"metadata.name\"" },
	{ "metadata.name is a mapping",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: {a: b}\n",
	  "test.yaml:4:9: Backend default/<unnamed>: metadata.name: expected a string, got a mapping" },
	{ "unknown metadata field", BE_HDR "  nmae: x\n",
	  "test.yaml:5:3: Backend default/api: metadata.nmae: unknown field \"nmae\"", true },
	{ "unknown top-level field", BE_HDR "sepc: {}\n",
	  "test.yaml:5:1: Backend default/api: sepc: unknown field \"sepc\" (valid: apiVersion, kind, metadata, spec, "
	  "status)", true },
	{ "unknown spec field", BE_HDR "spec:\n  endpoint: []\n",
	  "test.yaml:6:3: Backend default/api: spec.endpoint: unknown field \"endpoint\" (valid: endpoints, type, "
	  "appProtocols, appProtocol, fallback, tls)", true },
	{ "unknown endpoint field", EP_HDR "  - ip:\n      address: 1.2.3.4\n    ipp: 3\n",
	  "test.yaml:9:5: Backend default/api: spec.endpoints[0].ipp: unknown field \"ipp\"", true },
	{ "unknown field under ip", EP_HDR "  - ip: {address: 1.2.3.4, prot: 80}\n",
	  "test.yaml:7:28: Backend default/api: spec.endpoints[0].ip.prot: unknown field \"prot\" (valid: address, port)",
	  true },
	{ "unknown tls field", BE_HDR "spec:\n  tls:\n    skipVerify: true\n",
	  "test.yaml:7:5: Backend default/api: spec.tls.skipVerify: unknown field \"skipVerify\"", true },
	{ "unknown route backendRef field",
	  "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n"
	  "  - backendRefs:\n    - name: a\n      wieght: 5\n",
	  "test.yaml:8:7: HTTPRoute default/r: spec.rules[0].backendRefs[0].wieght: unknown field \"wieght\"", true },
	{ "unknown deep btp field",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\nspec:\n"
	  "  healthCheck:\n    active:\n      http:\n        pth: /\n",
	  "test.yaml:8:9: BackendTrafficPolicy default/p: spec.healthCheck.active.http.pth: unknown field \"pth\"", true },
	{ "string for an int", EP_HDR "  - ip:\n      address: 1.2.3.4\n      port: abc\n",
	  "test.yaml:9:13: Backend default/api: spec.endpoints[0].ip.port: expected an integer, got \"abc\"", true },
	{ "quoted int", EP_HDR "  - ip: {address: 1.2.3.4, port: \"80\"}\n",
	  "test.yaml:7:34: Backend default/api: spec.endpoints[0].ip.port: expected an integer, got the string \"80\"",
	  true },
	{ "float for an int", EP_HDR "  - ip: {address: 1.2.3.4, port: 80.5}\n",
	  "spec.endpoints[0].ip.port: expected an integer, got \"80.5\"", true },
	{ "int overflow", EP_HDR "  - ip: {address: 1.2.3.4, port: 99999999999999999999}\n",
	  "spec.endpoints[0].ip.port: expected an integer, got \"99999999999999999999\"", true },
	{ "list for a mapping", BE_HDR "spec:\n  tls: [a]\n",
	  "test.yaml:6:8: Backend default/api: spec.tls: expected a mapping, got a list", true },
	{ "mapping for a string", BE_HDR "spec:\n  type: {a: b}\n",
	  "test.yaml:6:9: Backend default/api: spec.type: expected a string, got a mapping", true },
	{ "scalar for a list", BE_HDR "spec:\n  endpoints: 1.2.3.4\n",
	  "test.yaml:6:14: Backend default/api: spec.endpoints: expected a list, got \"1.2.3.4\"", true },
	{ "scalar list item", BE_HDR "spec:\n  endpoints:\n  - 1.2.3.4\n",
	  "test.yaml:7:5: Backend default/api: spec.endpoints[0]: expected a mapping, got \"1.2.3.4\"", true },
	{ "list for an address", EP_HDR "  - ip: [1.2.3.4]\n",
	  "test.yaml:7:9: Backend default/api: spec.endpoints[0].ip: expected a mapping or a string, got a list", true },
	{ "bad bool", BE_HDR "spec:\n  fallback: maybe\n",
	  "test.yaml:6:13: Backend default/api: spec.fallback: expected true or false, got \"maybe\"", true },
	{ "quoted bool", BE_HDR "spec:\n  tls: {insecureSkipVerify: \"true\"}\n",
	  "spec.tls.insecureSkipVerify: expected true or false, got \"true\"", true },
	{ "bad duration",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\nspec:\n"
	  "  healthCheck:\n    passive:\n      baseEjectionTime: 10x\n",
	  "test.yaml:7:25: BackendTrafficPolicy default/p: spec.healthCheck.passive.baseEjectionTime: invalid duration "
	  "\"10x\"", true },
	{ "duration without unit",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\nspec:\n"
	  "  dns: {dnsRefreshRate: 30}\n",
	  "test.yaml:5:25: BackendTrafficPolicy default/p: spec.dns.dnsRefreshRate: invalid duration \"30\"", true },
	{ "seed port twice", EP_HDR "  - ip: {address: 1.2.3.4, port: 80}\n    port: 81\n",
	  "test.yaml:8:11: Backend default/api: spec.endpoints[0].port: port is set twice: here and in ip.port", true },
	{ "seed fallback unknown field", BE_HDR "spec:\n  fallback:\n    backendRef: {name: x, prt: 1}\n",
	  "test.yaml:7:27: Backend default/api: spec.fallback.backendRef.prt: unknown field \"prt\" (valid: name, "
	  "namespace, port)", true },
	{ "seed fallback misspelt", BE_HDR "spec:\n  fallback:\n    backend: {name: x}\n",
	  "test.yaml:7:5: Backend default/api: spec.fallback.backend: unknown field \"backend\" (valid: backendRef)", true },
	{ "duplicate key", BE_HDR "spec:\n  type: A\n  type: B\n",
	  "test.yaml:7:3: Backend default/api: spec.type: duplicate field \"type\"", true },
	{ "alias", "a: &x [1]\nb: *x\n", "test.yaml:2:4: YAML aliases are not supported (*x)" },
	{ "billion laughs",
	  "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	  "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
	  "test.yaml:2:8: YAML aliases are not supported (*a)" },
	{ "mapping key is a list", BE_HDR "spec:\n  ? [a]\n  : b\n",
	  "test.yaml:6:5: Backend default/api: spec: mapping keys must be strings, got a list", true },
	{ "NUL in a quoted scalar", BE_HDR "spec:\n  type: \"a\\0b\"\n",
	  "test.yaml:6:9: YAML scalar contains a NUL character" },
	{ "nesting too deep",
	  "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
	  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
	  "test.yaml:1:67: YAML nesting is deeper than 64 levels" },
	{ "gateway listener port string",
	  "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	  "  listeners: [{name: l, port: http, protocol: TCP}]\n",
	  "test.yaml:5:31: Gateway default/eg: spec.listeners[0].port: expected an integer, got \"http\"", true },
	{ "EnvoyGateway unknown top field",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nextensionApi:\n  enableBackend: true\n",
	  "test.yaml:3:1: EnvoyGateway default/envoy-gateway: extensionApi: unknown field \"extensionApi\"", true },
	{ "EnvoyGateway enableBackend not a bool",
	  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nextensionApis:\n  enableBackend: yes please\n",
	  "test.yaml:4:18: EnvoyGateway default/envoy-gateway: extensionApis.enableBackend: expected true or false, got "
	  "\"yes please\"", true },
};

static void test_bad_inputs_table(void **state)
{
	size_t nfail = 0;

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *bc = &bad_cases[i];
		struct kb_model m;
		char d[16384];
		const char *why = NULL;

		tu_load(&m, bc->yaml);
		tu_diags(&m, d, sizeof(d));
		if (m.nerrors == 0)
			why = "no error";
		else if (!strstr(d, bc->want))
			why = "message not found";
		else if (bc->keeps_object && m.nobjects != 1)
			why = "object not kept";
		else if (!bc->keeps_object && m.nobjects != 0)
			why = "object kept";
		/* Every misreported row is printed (cmocka truncates long failure messages). */
		if (why) {
			nfail++;
			fprintf(stderr, "# [%s] %s\n#  want: %s\n#  got:  %s", bc->name, why, bc->want, d);
		}
		kb_model_free(&m);
	}
	if (nfail)
		fail_msg("%zu of %zu bad inputs misreported (listed above)", nfail, sizeof(bad_cases) / sizeof(bad_cases[0]));
	assert_true(sizeof(bad_cases) / sizeof(bad_cases[0]) >= 25);
}

/* Several errors in one document are all reported, in order. */
static void test_errors_accumulate(void **state)
{
	struct kb_model m;

	tu_load(&m, EP_HDR "  - ip: {address: 1.2.3.4, port: x}\n  - fqdn: {hostname: a, port: y}\n  - foo: 1\n");
	assert_int_equal(m.nerrors, 3);
	assert_int_equal(m.nbackends, 1);
	assert_int_equal(m.backends[0]->nendpoints, 3);
	assert_string_equal(m.diags[0].path, "spec.endpoints[0].ip.port");
	assert_string_equal(m.diags[1].path, "spec.endpoints[1].fqdn.port");
	assert_string_equal(m.diags[2].path, "spec.endpoints[2].foo");
	assert_str(m.diags[2].object, "Backend default/api");
	kb_model_free(&m);
}

/* ---- paths: files, directories, missing paths ---- */

static void write_file(const char *dir, const char *name, const char *text)
{
	char p[4096];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void rm_file(const char *dir, const char *name)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
}

static void test_directory_loading(void **state)
{
	char dir[] = "/tmp/kb-test-manifest.XXXXXX";
	char sub[4200], path[4200], want[4400];
	struct kb_model m;

	assert_non_null(mkdtemp(dir));
	/* Written out of order: loading must sort by name. */
	write_file(dir, "20-b.yaml", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: b}\n");
	write_file(dir, "10-a.yml",
		   "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: a}\n---\n"
		   "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: a2}\n");
	write_file(dir, "05-notes.txt", "this is not yaml: [\n");
	write_file(dir, "30-bad.yaml", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: c}\n"
				       "spec: {typo: 1}\n");
	snprintf(sub, sizeof(sub), "%s/40-sub.yaml", dir);
	assert_int_equal(mkdir(sub, 0700), 0);	/* not recursive: a directory is skipped */
	write_file(sub, "inner.yaml", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: d}\n");

	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_path(&m, dir), 0);
	assert_int_equal(m.nbackends, 4);
	assert_string_equal(m.backends[0]->meta.name, "a");
	assert_string_equal(m.backends[1]->meta.name, "a2");
	assert_int_equal(m.backends[1]->meta.doc_index, 1);
	assert_string_equal(m.backends[2]->meta.name, "b");
	assert_string_equal(m.backends[3]->meta.name, "c");
	assert_int_equal(m.nerrors, 1);
	snprintf(want, sizeof(want), "%s/30-bad.yaml:4:8: Backend default/c: spec.typo: unknown field", dir);
	tu_assert_diag(&m, want);
	snprintf(path, sizeof(path), "%s/10-a.yml", dir);
	assert_string_equal(m.backends[0]->meta.loc.file, path);
	kb_model_free(&m);

	/* A single file path. */
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_path(&m, path), 0);
	assert_int_equal(m.nbackends, 2);
	assert_int_equal(m.nerrors, 0);
	kb_model_free(&m);

	rm_file(sub, "inner.yaml");
	rmdir(sub);
	rm_file(dir, "20-b.yaml");
	rm_file(dir, "10-a.yml");
	rm_file(dir, "30-bad.yaml");

	/* Only a .txt file left: no manifests is an error. */
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_path(&m, dir), -1);
	snprintf(want, sizeof(want), "no *.yaml or *.yml files in %s", dir);
	tu_assert_diag(&m, want);
	kb_model_free(&m);

	rm_file(dir, "05-notes.txt");
	assert_int_equal(rmdir(dir), 0);

	/* And a path that is gone. */
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_path(&m, dir), -1);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", dir);
	tu_assert_diag(&m, want);
	assert_int_equal(m.nerrors, 1);
	kb_model_free(&m);
}

/* "-" reads stdin: point fd 0 at a temp file for the duration. */
static void test_stdin(void **state)
{
	char tmpl[] = "/tmp/kb-test-stdin.XXXXXX";
	static const char doc[] = BE_HDR "spec:\n  bogus: 1\n";
	struct kb_model m;
	int fd = mkstemp(tmpl), saved;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, doc, sizeof(doc) - 1), (ssize_t)(sizeof(doc) - 1));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	saved = dup(STDIN_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
	kb_model_init(&m);
	assert_int_equal(kb_manifest_load_path(&m, "-"), 0);
	dup2(saved, STDIN_FILENO);
	close(saved);
	close(fd);
	unlink(tmpl);
	assert_int_equal(m.nbackends, 1);
	tu_assert_diag(&m, "<stdin>:6:3: Backend default/api: spec.bogus: unknown field \"bogus\"");
	kb_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_shapes_same_model),
		cmocka_unit_test(test_endpoint_oneof_bits_and_hostname),
		cmocka_unit_test(test_backend_fallback_and_protocols),
		cmocka_unit_test(test_backend_tls),
		cmocka_unit_test(test_raw_integers),
		cmocka_unit_test(test_gateway),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_btp),
		cmocka_unit_test(test_lists_exact_and_shared_strings),
		cmocka_unit_test(test_btp_unenforced_fields_warn),
		cmocka_unit_test(test_grant_eg_others_and_list),
		cmocka_unit_test(test_mixed_kinds_read_and_ignored),
		cmocka_unit_test(test_multi_doc_and_empty_docs),
		cmocka_unit_test(test_syntax_error_keeps_earlier_documents),
		cmocka_unit_test(test_nul_bytes_and_binary),
		cmocka_unit_test(test_object_source_text),
		cmocka_unit_test(test_field_locations),
		cmocka_unit_test(test_reread_locations),
		cmocka_unit_test(test_bad_inputs_table),
		cmocka_unit_test(test_errors_accumulate),
		cmocka_unit_test(test_directory_loading),
		cmocka_unit_test(test_stdin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
