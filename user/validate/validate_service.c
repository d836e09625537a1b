// SPDX-License-Identifier: Apache-2.0
/*
 * Judges Services, ServiceImports and EndpointSlices in Kubernetes' own
 * validation words, and resolves a route's Service or ServiceImport
 * backendRef against them in Envoy Gateway's (--service-endpoints).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "validate_int.h"

#define PORT_RANGE "must be between 1 and 65535, inclusive"
#define PROTOCOLS "supported values: \"SCTP\", \"TCP\", \"UDP\""
#define DNS_LABEL_RE "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#define DNS_LABEL_MSG                                                                                             \
	"a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and " \
	"end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "          \
	"'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"

/* One object's judgement: its errors are located diagnostics, the first one its Accepted=False message. */
struct sj {
	struct vx_ctx *c;
	struct kb_meta *o;
	const char *first;
	const char *reason;
};

static void bad(struct sj *j, const char *reason, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void bad(struct sj *j, const char *reason, const char *path, const char *fmt, ...)
{
	struct kb_model *m = j->c->m;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = kb_vsprintf(&m->arena, fmt, ap);
	va_end(ap);
	kb_diag_add(m, KB_SEV_ERROR, j->o, path, "%s", msg);
	if (!j->first) {
		j->first = kb_sprintf(&m->arena, "%s: %s", path, msg);
		j->reason = reason;
	}
}

static const char *at(struct sj *j, const char *base, const char *leaf)
{
	return kb_sprintf(&j->c->m->arena, "%s.%s", base, leaf);
}

static void check_protocol(struct sj *j, const char *base, const char *proto)
{
	if (proto && strcmp(proto, "TCP") != 0 && strcmp(proto, "UDP") != 0 && strcmp(proto, "SCTP") != 0)
		bad(j, "Invalid", at(j, base, "protocol"), "Unsupported value: \"%s\": " PROTOCOLS, proto);
}

static void check_port(struct sj *j, const char *base, bool has, int64_t port, bool required)
{
	if (!has && required)
		bad(j, "Invalid", at(j, base, "port"), "Required value");
	else if (has && (port < 1 || port > 65535))
		bad(j, "Invalid", at(j, base, "port"), "Invalid value: %lld: " PORT_RANGE, (long long)port);
}

/* Port names: RFC 1123 labels, unique; required when there are several ports (Services). */
static void check_port_names(struct sj *j, size_t n, char *const *names, char *const *paths, bool required)
{
	for (size_t i = 0; i < n; i++) {
		const char *np = at(j, paths[i], "name");

		if (!names[i] || !*names[i]) {
			if (required && n > 1)
				bad(j, "Invalid", np, "Required value");
			continue;
		}
		if (strlen(names[i]) > 63 || !vx_matches(DNS_LABEL_RE, names[i])) {
			bad(j, "Invalid", np, "Invalid value: \"%s\": %s", names[i],
			    strlen(names[i]) > 63 ? "must be no more than 63 characters" : DNS_LABEL_MSG);
			continue;
		}
		for (size_t k = 0; k < i; k++)
			if (names[k] && strcmp(names[k], names[i]) == 0) {
				bad(j, "Invalid", np, "Duplicate value: \"%s\"", names[i]);
				break;
			}
	}
}

static void check_ip(struct sj *j, const char *path, const char *ip)
{
	unsigned char b[16];

	if (ip && *ip && strcmp(ip, "None") != 0 && inet_pton(AF_INET, ip, b) != 1 && inet_pton(AF_INET6, ip, b) != 1)
		bad(j, "Invalid", path, "Invalid value: \"%s\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
		    ip);
}

/* A named targetPort is an IANA service name (Kubernetes' IsValidPortName). */
static void check_target(struct sj *j, const struct kb_svc_port *p)
{
	const char *tp = at(j, p->path, "targetPort");

	if (!p->has_target)
		return;
	if (!p->target_name) {
		if (p->target_port < 1 || p->target_port > 65535)
			bad(j, "Invalid", tp, "Invalid value: %lld: " PORT_RANGE, (long long)p->target_port);
		return;
	}
	if (strlen(p->target_name) > 15)
		bad(j, "Invalid", tp, "Invalid value: \"%s\": must be no more than 15 characters", p->target_name);
	else if (!vx_matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", p->target_name) || strstr(p->target_name, "--"))
		bad(j, "Invalid", tp, "Invalid value: \"%s\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
		    p->target_name);
	else if (!vx_matches("[a-z]", p->target_name))
		bad(j, "Invalid", tp, "Invalid value: \"%s\": must contain at least one letter (a-z)", p->target_name);
}

static void finish(struct sj *j, const char *ok_msg)
{
	struct kb_model *m = j->c->m;

	if (j->first)
		kb_set_condition(m, j->o, "Accepted", KB_COND_FALSE, j->reason, "%s", j->first);
	else
		kb_set_condition(m, j->o, "Accepted", KB_COND_TRUE, "Accepted", "%s", ok_msg);
}

static void judge_service(struct vx_ctx *c, struct kb_service *s)
{
	static const char *const types[] = { "ClusterIP", "ExternalName", "LoadBalancer", "NodePort" };
	struct sj j = { .c = c, .o = &s->meta };
	bool import = s->meta.kind == KB_KIND_SERVICE_IMPORT, known = !s->type;
	bool headless = s->cluster_ip && strcmp(s->cluster_ip, "None") == 0;
	char **names = kb_alloc(&c->m->arena, (s->nports + 1) * sizeof(*names));
	char **paths = kb_alloc(&c->m->arena, (s->nports + 1) * sizeof(*paths));

	if (import) {
		known = !s->type || strcmp(s->type, "ClusterSetIP") == 0 || strcmp(s->type, "Headless") == 0;
		if (!known)
			bad(&j, "Invalid", "spec.type", "Unsupported value: \"%s\": supported values: \"ClusterSetIP\", \"Headless\"",
			    s->type);
	} else {
		for (size_t i = 0; i < 4 && !known; i++)
			known = strcmp(s->type, types[i]) == 0;
		if (!known)
			bad(&j, "Invalid", "spec.type",
			    "Unsupported value: \"%s\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
			    s->type);
		if (s->type && strcmp(s->type, "ExternalName") == 0 && (!s->external_name || !*s->external_name))
			bad(&j, "Invalid", "spec.externalName", "Required value");
		else if ((!s->type || strcmp(s->type, "ExternalName") != 0) && !headless && !s->nports)
			bad(&j, "Invalid", "spec.ports", "Required value");
		check_ip(&j, "spec.clusterIP", s->cluster_ip);
	}
	for (size_t i = 0; i < s->ncluster_ips; i++)
		check_ip(&j, kb_sprintf(&c->m->arena, "spec.%s[%zu]", import ? "ips" : "clusterIPs", i), s->cluster_ips[i]);
	for (size_t i = 0; i < s->nports; i++) {
		const struct kb_svc_port *p = &s->ports[i];

		names[i] = p->name;
		paths[i] = p->path;
		check_port(&j, p->path, p->has_port, p->port, true);
		check_protocol(&j, p->path, p->protocol);
		if (!import)
			check_target(&j, p);
	}
	check_port_names(&j, s->nports, names, paths, true);
	if (c->p && c->p->service_endpoints == KB_SVC_DNS)
		finish(&j, kb_sprintf(&c->m->arena,
				      "kbackend resolves backendRefs to this %s through cluster DNS (--service-endpoints=dns)",
				      kb_kind_name(s->meta.kind)));
	else if (!import && s->type && strcmp(s->type, "ExternalName") == 0)
		finish(&j, "kbackend resolves backendRefs to this ExternalName Service through cluster DNS");
	else
		finish(&j, kb_sprintf(&c->m->arena,
				      "kbackend reads the %s's ports and steers its backendRefs to the ready endpoints of its EndpointSlices",
				      kb_kind_name(s->meta.kind)));
}

/*
 * The SSRF guard on the endpoint's address (the one a connect would use, the
 * first): a refused one is left out with a warning, and the slice serves with
 * the rest. Slices come from the cluster, like DNS answers, and one
 * hostNetwork pod on this node must not take its Service's other pods down.
 */
static void guard_endpoint(struct vx_ctx *c, struct kb_endpoint_slice *s, struct kb_slice_endpoint *e, const char *ap)
{
	const char *why;
	struct vx_addr a;

	e->refused = false;
	if (!e->naddresses || !vx_parse_addr(e->addresses[0], &a) || !(why = vx_ssrf_why(c, e->addresses[0], &a)))
		return;
	e->refused = true;
	kb_diag_add(c->m, KB_SEV_WARNING, &s->meta, kb_sprintf(&c->m->arena, "%s[0]", ap),
		    "%s; the endpoint is left out", why);
}

static void judge_slice(struct vx_ctx *c, struct kb_endpoint_slice *s)
{
	struct kb_model *m = c->m;
	struct sj j = { .c = c, .o = &s->meta };
	const char *atype = s->address_type;
	bool v4 = atype && strcmp(atype, "IPv4") == 0, v6 = atype && strcmp(atype, "IPv6") == 0;
	bool fqdn = atype && strcmp(atype, "FQDN") == 0;
	char **names = kb_alloc(&m->arena, (s->nports + 1) * sizeof(*names));
	char **paths = kb_alloc(&m->arena, (s->nports + 1) * sizeof(*paths));
	size_t ready = 0, refused = 0;

	if (!atype)
		bad(&j, "Invalid", "addressType", "Required value");
	else if (!v4 && !v6 && !fqdn)
		bad(&j, "Invalid", "addressType", "Unsupported value: \"%s\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
		    atype);
	if (s->nendpoints > 1000)
		bad(&j, "Invalid", "endpoints", "Too many: %zu: must have at most 1000 items", s->nendpoints);
	if (s->nports > 100)
		bad(&j, "Invalid", "ports", "Too many: %zu: must have at most 100 items", s->nports);
	for (size_t i = 0; i < s->nendpoints; i++) {
		struct kb_slice_endpoint *e = &s->endpoints[i];
		const char *ap = at(&j, e->path, "addresses");

		if (!e->naddresses)
			bad(&j, "Invalid", ap, "Required value: must contain at least 1 address");
		else if (e->naddresses > 100)
			bad(&j, "Invalid", ap, "Too many: %zu: must have at most 100 items", e->naddresses);
		for (size_t k = 0; (v4 || v6) && k < e->naddresses; k++) {
			const char *lit = e->addresses[k];
			unsigned char b[16];

			if (inet_pton(v4 ? AF_INET : AF_INET6, lit, b) != 1)
				bad(&j, "Invalid", kb_sprintf(&m->arena, "%s[%zu]", ap, k),
				    "Invalid value: \"%s\": must be a valid %s address", lit, atype);
		}
		if (v4 || v6)
			guard_endpoint(c, s, e, ap);
		refused += e->refused;
		ready += !e->refused && e->ready != 0 && e->serving != 0 && e->terminating != 1;
	}
	for (size_t i = 0; i < s->nports; i++) {
		names[i] = s->ports[i].name;
		paths[i] = s->ports[i].path;
		check_port(&j, s->ports[i].path, s->ports[i].has_port, s->ports[i].port, false);
		check_protocol(&j, s->ports[i].path, s->ports[i].protocol);
	}
	check_port_names(&j, s->nports, names, paths, false);
	if (j.first) {
		finish(&j, NULL);
	} else if (fqdn) {
		/* Valid Kubernetes, but nothing a connect can be steered to without a resolver in the path. */
		kb_set_condition(m, &s->meta, "Accepted", KB_COND_UNKNOWN, "UnsupportedAddressType",
				 "kbackend steers to IPv4 and IPv6 endpoints; an EndpointSlice of addressType FQDN is ignored");
	} else if (!s->service) {
		kb_set_condition(m, &s->meta, "Accepted", KB_COND_UNKNOWN, "Ignored",
				 "the EndpointSlice has no %s label: no Service reads it", KB_LABEL_SERVICE_NAME);
	} else {
		kb_set_condition(m, &s->meta, "Accepted", KB_COND_TRUE, "Accepted",
				 "%zu of %zu endpoint(s) ready for %s %s/%s%s", ready, s->nendpoints,
				 kb_kind_name(s->owner_kind), vx_ns(&s->meta), s->service,
				 refused ? kb_sprintf(&m->arena, "; %zu left out by kbackend's SSRF guard", refused) : "");
	}
}

static const char *svc_key(struct kb_arena *a, enum kb_kind kind, const char *ns, const char *name)
{
	return kb_sprintf(a, "%s/%s/%s", kind == KB_KIND_SERVICE ? "S" : "I", ns, name);
}

void vx_services(struct vx_ctx *c)
{
	struct kb_model *m = c->m;

	c->services.a = &m->arena;
	for (size_t i = 0; i < m->nservices; i++) {
		struct kb_service *s = m->services[i];

		if (s->meta.name)
			kb_smap_put(&c->services, svc_key(&m->arena, s->meta.kind, vx_ns(&s->meta), s->meta.name), s);
		if (!s->meta.skip_judge)
			judge_service(c, s);
	}
	for (size_t i = 0; i < m->nslices; i++)
		if (!m->slices[i]->meta.skip_judge)
			judge_slice(c, m->slices[i]);
}

const char *vx_service_ref(const struct vx_ctx *c, const struct kb_route *r, const struct kb_backend_ref *ref,
			   enum kb_ref_kind rk, const char *ns, const char *name, const char **reason)
{
	struct kb_model *m = c->m;
	enum kb_svc_mode mode = c->p ? c->p->service_endpoints : KB_SVC_AUTO;
	enum kb_kind kind = rk == KB_REF_SERVICE ? KB_KIND_SERVICE : KB_KIND_SERVICE_IMPORT;
	const char *proto = r->meta.kind == KB_KIND_UDPROUTE ? "UDP" : "TCP";
	const struct kb_service *s;

	if (mode == KB_SVC_DNS)
		return NULL;
	s = kb_smap_get(&c->services, svc_key(&m->arena, kind, ns, name));
	if (!s) {
		if (mode == KB_SVC_AUTO)
			return NULL;	/* through cluster DNS, as before the Service objects were read */
		/* Envoy Gateway's words (internal/gatewayapi/validate.go, validateBackendService/ServiceImport). */
		*reason = "BackendNotFound";
		return kb_sprintf(&m->arena, "%s %s/%s not found", kind == KB_KIND_SERVICE ? "service" : "service import",
				  ns, name);
	}
	if (kb_object_refused(&s->meta)) {
		*reason = "InvalidBackendRef";
		return kb_sprintf(&m->arena, "%s %s/%s was not accepted", kb_kind_name(kind), ns, name);
	}
	for (size_t i = 0; i < s->nports; i++)
		if (s->ports[i].has_port && s->ports[i].port == ref->port &&
		    strcmp(s->ports[i].protocol ? s->ports[i].protocol : "TCP", proto) == 0)
			return NULL;
	*reason = "PortNotFound";
	return kb_sprintf(&m->arena, "%s Port %lld not found on %s %s/%s", proto, (long long)ref->port,
			  kind == KB_KIND_SERVICE ? "service" : "ServiceImport", ns, name);
}
