// SPDX-License-Identifier: Apache-2.0
/* Judges routes: parent attachment, backendRef resolution, and kbackend's L4 honesty (one backend set per listener). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate_int.h"

#define L4_WHY "kbackend steers whole connections at L4 and sees no path, header or SNI"

/* The first unresolvable backendRef of a route: Gateway API reports one ResolvedRefs condition. */
struct refs_verdict {
	const char *reason;	/* NULL: all resolved */
	const char *msg;
};

/* One listener a route claims through one of its parents; sorted to find listeners claimed twice. */
struct claim {
	const struct kb_gateway *g;
	int64_t port;
	bool udp;
	size_t route, parent;	/* input order decides who owns a listener */
	const struct kb_listener *l;
};

struct route_state {
	const char *sig;	/* the route's backend set; NULL if its rules disagree */
	const char **conflict;	/* per parent: why a listener is already taken, or NULL */
};

static bool route_udp(const struct kb_route *r)
{
	return r->meta.kind == KB_KIND_UDPROUTE;
}

char *kb_parent_key(struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr)
{
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);

	if (pr->section_name && *pr->section_name)
		return kb_sprintf(&m->arena, "%s/%s/%s", ns, pr->name ? pr->name : "", pr->section_name);
	return kb_sprintf(&m->arena, "%s/%s", ns, pr->name ? pr->name : "");
}

static bool parent_is_gateway(const struct kb_parent_ref *pr)
{
	return (!pr->group || strcmp(pr->group, VX_GROUP_GW) == 0) && (!pr->kind || strcmp(pr->kind, "Gateway") == 0);
}

/* Which listener protocols a route kind binds to (Gateway API's route/listener compatibility). */
static bool protocol_fits(enum kb_kind k, const char *proto)
{
	if (!proto)
		return false;
	switch (k) {
	case KB_KIND_HTTPROUTE:
	case KB_KIND_GRPCROUTE:
		return strcmp(proto, "HTTP") == 0 || strcmp(proto, "HTTPS") == 0;
	case KB_KIND_TLSROUTE:
		return strcmp(proto, "TLS") == 0;
	case KB_KIND_TCPROUTE:
		return strcmp(proto, "TCP") == 0;
	case KB_KIND_UDPROUTE:
		return strcmp(proto, "UDP") == 0;
	default:
		return false;
	}
}

bool kb_parent_attaches(const struct kb_route *r, const struct kb_parent_ref *pr, const struct kb_gateway *g,
			const struct kb_listener *l)
{
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);

	if (!parent_is_gateway(pr) || !pr->name || !g->meta.name)
		return false;
	if (strcmp(pr->name, g->meta.name) != 0 || strcmp(ns, vx_ns(&g->meta)) != 0)
		return false;
	if (pr->section_name && *pr->section_name && !vx_streq(pr->section_name, l->name))
		return false;
	if (pr->has_port && pr->port != l->port)
		return false;
	return protocol_fits(r->meta.kind, l->protocol);
}

/*
 * Envoy Gateway checks a backendRef's group and kind apart and then goes by
 * kind alone (internal/gatewayapi/validate.go validateBackendRef), so kind
 * Backend in any group it supports, the core group included, is a Backend.
 */
bool kb_ref_is_backend(const struct kb_backend_ref *ref)
{
	return vx_streq(ref->kind, "Backend") &&
	       (vx_core_group(ref->group) || vx_streq(ref->group, VX_GROUP_EG) || vx_streq(ref->group, VX_GROUP_MCS));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A rule's backend set as one string: the sorted multiset of normalised refs. */
static const char *rule_sig(struct kb_model *m, const struct kb_route *r, const struct kb_route_rule *rule)
{
	const char **keys = calloc(rule->nrefs + 1, sizeof(*keys));
	char *sig = "";

	if (!keys)
		abort();
	for (size_t i = 0; i < rule->nrefs; i++) {
		const struct kb_backend_ref *ref = &rule->refs[i];

		/* Every spelling of a Backend ref names the same object. */
		keys[i] = kb_sprintf(&m->arena, "%s|%s|%s|%s|%lld|%lld|%d",
				     kb_ref_is_backend(ref) ? VX_GROUP_EG : vx_core_group(ref->group) ? "" : ref->group,
				     ref->kind ? ref->kind : "Service", ref->namespace ? ref->namespace : vx_ns(&r->meta),
				     ref->name ? ref->name : "", ref->has_port ? (long long)ref->port : 0LL,
				     ref->has_weight ? (long long)ref->weight : 1LL, ref->fallback);
	}
	qsort(keys, rule->nrefs, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < rule->nrefs; i++)
		sig = kb_sprintf(&m->arena, "%s%s;", sig, keys[i]);
	free(keys);
	return sig;
}

/* Unix endpoints of a Backend and of its fallback chain must sit under a --unix-dir. */
static const char *unix_refusal_chain(const struct vx_ctx *c, long bi)
{
	const struct kb_model *m = c->m;

	for (size_t step = 0; bi >= 0 && step <= m->nbackends; step++) {
		const struct kb_backend *b = m->backends[bi];
		const char *ns;

		for (size_t i = 0; i < b->nendpoints; i++) {
			const char *why;

			if (b->endpoints[i].type != KB_EP_UNIX || !b->endpoints[i].address)
				continue;
			why = vx_unix_refusal(c, b->endpoints[i].address);
			if (why)
				return why;
		}
		if (!b->has_fallback_ref || !b->fallback_ref_name)
			break;
		ns = b->fallback_ref_namespace ? b->fallback_ref_namespace : vx_ns(&b->meta);
		bi = vx_backend_index(c, ns, b->fallback_ref_name);
	}
	return NULL;
}

/* One backendRef: NULL if it resolves, else why not (and *reason). */
static const char *check_ref(const struct vx_ctx *c, const struct kb_route *r, const struct kb_backend_ref *ref,
			     const char **reason, const char **path)
{
	struct kb_model *m = c->m;
	const char *rns = vx_ns(&r->meta);
	const char *tns = ref->namespace ? ref->namespace : rns;
	const char *kind = ref->kind ? ref->kind : "Service";
	bool is_backend = kb_ref_is_backend(ref);
	bool is_service = strcmp(kind, "Service") == 0 && vx_core_group(ref->group);
	const char *why;
	long bi;

	*path = ref->path;
	*reason = "UnsupportedValue";
	if (ref->nfilters) {
		*path = kb_sprintf(&m->arena, "%s.filters", ref->path);
		return "kbackend steers connections at L4; backendRef filters are not supported";
	}
	if (ref->has_weight && (ref->weight < 0 || ref->weight > 1000000)) {
		*path = kb_sprintf(&m->arena, "%s.weight", ref->path);
		return kb_sprintf(&m->arena, "Invalid value: %lld: weight must be between 0 and 1000000",
				  (long long)ref->weight);
	}
	if (ref->has_port && (ref->port < 1 || ref->port > 65535)) {
		*path = kb_sprintf(&m->arena, "%s.port", ref->path);
		return kb_sprintf(&m->arena, "Invalid value: %lld: port must be between 1 and 65535", (long long)ref->port);
	}
	if (!is_backend && !is_service) {
		*reason = "InvalidKind";
		return kb_sprintf(&m->arena,
				  "kind %s%s%s is not supported; kbackend resolves Backend (gateway.envoyproxy.io) and Service references",
				  vx_core_group(ref->group) ? "" : ref->group, vx_core_group(ref->group) ? "" : "/", kind);
	}
	if (is_service && !ref->has_port)
		return "Must have port for Service reference";
	if (strcmp(tns, rns) != 0 &&
	    /* The grant must name the group as the ref wrote it (Envoy Gateway's validateBackendNamespace). */
	    !vx_grant_allows(m, VX_GROUP_GW, kb_kind_name(r->meta.kind), rns, ref->group ? ref->group : "", kind, tns,
			     ref->name)) {
		*reason = "RefNotPermitted";
		return kb_sprintf(&m->arena, "%s %s/%s is in another namespace and no ReferenceGrant in %s allows %s references from %s",
				  kind, tns, ref->name ? ref->name : "", tns, kb_kind_name(r->meta.kind), rns);
	}
	if (is_service && (why = vx_btls_service_refusal(c, tns, ref->name ? ref->name : ""))) {
		*reason = VX_R_INVALID_REF;
		return why;
	}
	if (is_service)
		return NULL;	/* resolved through cluster DNS when compiled */
	if (!c->backend_enabled)
		return "Backend is disabled in Envoy Gateway configuration";
	bi = vx_backend_index(c, tns, ref->name ? ref->name : "");
	if (bi < 0) {
		*reason = "BackendNotFound";
		return kb_sprintf(&m->arena, "Backend %s/%s not found", tns, ref->name ? ref->name : "");
	}
	if (c->bv[bi].refused) {
		*reason = c->bv[bi].reason;
		return c->bv[bi].why ? c->bv[bi].why : "Backend is disabled in Envoy Gateway configuration";
	}
	*reason = "UnsupportedAddressType";
	return unix_refusal_chain(c, bi);
}

/* Gateway API words a ref failure as "Failed to process route rule R backendRef B: <why>." */
static const char *ref_message(struct kb_model *m, size_t ri, size_t bi, const char *why)
{
	size_t n = strlen(why);

	if (n && why[n - 1] == '.')
		n--;
	return kb_sprintf(&m->arena, "Failed to process route rule %zu backendRef %zu: %.*s.", ri, bi, (int)n, why);
}

static struct refs_verdict resolve_refs(const struct vx_ctx *c, const struct kb_route *r)
{
	struct refs_verdict v = { 0 };

	for (size_t ri = 0; ri < r->nrules; ri++) {
		for (size_t bi = 0; bi < r->rules[ri].nrefs; bi++) {
			const char *reason, *path, *why;

			why = check_ref(c, r, &r->rules[ri].refs[bi], &reason, &path);
			if (!why)
				continue;
			why = ref_message(c->m, ri, bi, why);
			kb_diag_add(c->m, KB_SEV_ERROR, &r->meta, path, "%s", why);
			if (!v.reason) {
				v.reason = reason;
				v.msg = why;
			}
		}
	}
	return v;
}

/* The route's one backend set, or NULL (with a diagnostic) when its rules send requests to different backends. */
static const char *route_sig(const struct vx_ctx *c, const struct kb_route *r, const char **why)
{
	struct kb_model *m = c->m;
	const char *first;

	if (r->nrules == 0)
		return "";
	first = rule_sig(m, r, &r->rules[0]);
	for (size_t i = 1; i < r->nrules; i++) {
		if (strcmp(first, rule_sig(m, r, &r->rules[i])) == 0)
			continue;
		*why = kb_sprintf(&m->arena,
				  "%s; rules 0 and %zu send requests to different backends (give each backend set its own listener)",
				  L4_WHY, i);
		kb_diag_add(m, KB_SEV_ERROR, &r->meta, kb_sprintf(&m->arena, "%s.backendRefs", r->rules[i].path),
			    "%s", *why);
		return NULL;
	}
	return first;
}

static int cmp_claim(const void *pa, const void *pb)
{
	const struct claim *a = pa, *b = pb;

	if (a->g != b->g)
		return a->g < b->g ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->udp != b->udp)
		return a->udp ? 1 : -1;
	if (a->route != b->route)
		return a->route < b->route ? -1 : 1;
	return a->parent < b->parent ? -1 : a->parent > b->parent;
}

/*
 * Two routes on one listener (really: one gateway port and transport, which is
 * one frontend) must agree on their backends, since kbackend cannot tell
 * their connections apart. The earlier route in input order keeps it.
 */
static void find_conflicts(const struct vx_ctx *c, struct route_state *st)
{
	struct kb_model *m = c->m;
	struct claim *cl = NULL;
	size_t ncl = 0, cap = 0;

	for (size_t ri = 0; ri < m->nroutes; ri++) {
		const struct kb_route *r = m->routes[ri];

		if (!st[ri].sig)
			continue;
		for (size_t pi = 0; pi < r->nparents; pi++) {
			const struct kb_parent_ref *pr = &r->parents[pi];
			const struct kb_gateway *g;

			if (!parent_is_gateway(pr) || !pr->name)
				continue;
			g = kb_model_find_gateway(m, pr->namespace ? pr->namespace : vx_ns(&r->meta), pr->name);
			for (size_t li = 0; g && li < g->nlisteners; li++) {
				if (!kb_parent_attaches(r, pr, g, &g->listeners[li]))
					continue;
				if (ncl == cap) {
					cap = cap ? cap * 2 : 16;
					cl = realloc(cl, cap * sizeof(*cl));
					if (!cl)
						abort();
				}
				cl[ncl++] = (struct claim){ g, g->listeners[li].port, route_udp(r), ri, pi, &g->listeners[li] };
			}
		}
	}
	if (ncl)
		qsort(cl, ncl, sizeof(*cl), cmp_claim);
	for (size_t i = 0, owner = 0; i < ncl; i++) {
		const struct kb_route *o, *r;

		if (i == 0 || cl[i].g != cl[i - 1].g || cl[i].port != cl[i - 1].port || cl[i].udp != cl[i - 1].udp)
			owner = i;
		if (cl[i].route == cl[owner].route || strcmp(st[cl[i].route].sig, st[cl[owner].route].sig) == 0)
			continue;
		if (st[cl[i].route].conflict[cl[i].parent])
			continue;
		o = m->routes[cl[owner].route];
		r = m->routes[cl[i].route];
		st[cl[i].route].conflict[cl[i].parent] = kb_sprintf(&m->arena,
			"listener %s/%s/%s (port %lld) already sends its connections to the backends of %s %s/%s; kbackend steers whole connections at L4 and cannot split one listener between routes with different backends",
			vx_ns(&cl[i].g->meta), cl[i].g->meta.name, cl[i].l->name ? cl[i].l->name : "",
			(long long)cl[i].port, kb_kind_name(o->meta.kind), vx_ns(&o->meta), o->meta.name);
		kb_diag_add(m, KB_SEV_ERROR, &r->meta, r->parents[cl[i].parent].path, "%s",
			    st[cl[i].route].conflict[cl[i].parent]);
	}
	free(cl);
}

/* Why a parentRef of an existing Gateway attaches to no listener: (reason, message). */
static const char *no_listener(struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
			       const struct kb_gateway *g, const char **reason)
{
	bool named = false, ported = false;
	const char *protos = "";

	for (size_t i = 0; i < g->nlisteners; i++) {
		const struct kb_listener *l = &g->listeners[i];

		if (pr->section_name && *pr->section_name && vx_streq(pr->section_name, l->name))
			named = true;
		if (pr->has_port && pr->port == l->port)
			ported = true;
		protos = kb_sprintf(&m->arena, "%s%s%s", protos, *protos ? ", " : "", l->protocol ? l->protocol : "?");
	}
	*reason = "NoMatchingParent";
	if (pr->section_name && *pr->section_name && !named)
		return kb_sprintf(&m->arena, "Gateway %s/%s has no listener named \"%s\"", vx_ns(&g->meta),
				  g->meta.name, pr->section_name);
	if (pr->has_port && !ported)
		return kb_sprintf(&m->arena, "Gateway %s/%s has no listener on port %lld", vx_ns(&g->meta),
				  g->meta.name, (long long)pr->port);
	*reason = "NotAllowedByListeners";
	return kb_sprintf(&m->arena, "no listener of Gateway %s/%s accepts a %s (listener protocols: %s)",
			  vx_ns(&g->meta), g->meta.name, kb_kind_name(r->meta.kind), *protos ? protos : "none");
}

/* The hostnames, matches and filters a route carries that kbackend cannot enforce, for a note. */
static const char *unenforced_path(struct kb_model *m, const struct kb_route *r)
{
	if (r->nhostnames)
		return "spec.hostnames";
	for (size_t i = 0; i < r->nrules; i++) {
		if (r->rules[i].nmatches)
			return kb_sprintf(&m->arena, "%s.matches", r->rules[i].path);
		if (r->rules[i].nfilters)
			return kb_sprintf(&m->arena, "%s.filters", r->rules[i].path);
	}
	return NULL;
}

static void judge_parent(const struct vx_ctx *c, struct kb_route *r, size_t pi, const struct route_state *st,
			 const struct refs_verdict *rv, const char *l4why, const char *note)
{
	struct kb_model *m = c->m;
	const struct kb_parent_ref *pr = &r->parents[pi];
	struct kb_parent_status *ps = kb_parent_status(m, &r->meta, kb_parent_key(m, r, pr));
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);
	const struct kb_gateway *g;
	bool any = false;

	if (rv->reason)
		kb_set_parent_condition(m, ps, "ResolvedRefs", KB_COND_FALSE, rv->reason, "%s", rv->msg);
	else
		kb_set_parent_condition(m, ps, "ResolvedRefs", KB_COND_TRUE, "ResolvedRefs",
					"Resolved all the Object references for the Route");
	if (l4why) {
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s", l4why);
		return;
	}
	if (!parent_is_gateway(pr)) {
		const char *msg = kb_sprintf(&m->arena, "kbackend attaches routes to Gateways only, not to %s %s",
					     pr->kind ? pr->kind : "Gateway", pr->group ? pr->group : VX_GROUP_GW);

		kb_diag_add(m, KB_SEV_ERROR, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s", msg);
		return;
	}
	g = kb_model_find_gateway(m, ns, pr->name ? pr->name : "");
	if (!g) {
		/*
		 * Not a refusal (cases/README.md): the route is a fine object, it
		 * just programs nothing until its Gateway is applied. Unknown keeps
		 * kb_object_refused() false.
		 */
		const char *msg = kb_sprintf(&m->arena, "Gateway %s/%s was not found in the applied set; no frontend is programmed",
					     ns, pr->name ? pr->name : "");

		kb_diag_add(m, KB_SEV_WARNING, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_UNKNOWN, "NoMatchingParent", "%s", msg);
		return;
	}
	for (size_t i = 0; i < g->nlisteners && !any; i++)
		any = kb_parent_attaches(r, pr, g, &g->listeners[i]);
	if (!any) {
		const char *reason, *msg = no_listener(m, r, pr, g, &reason);

		kb_diag_add(m, KB_SEV_ERROR, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, reason, "%s", msg);
		return;
	}
	if (st->conflict[pi]) {
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s", st->conflict[pi]);
		return;
	}
	kb_set_parent_condition(m, ps, "Accepted", KB_COND_TRUE, "Accepted", "Route is accepted%s", note ? note : "");
}

void vx_routes(struct vx_ctx *c)
{
	struct kb_model *m = c->m;
	struct route_state *st = kb_alloc(&m->arena, (m->nroutes + 1) * sizeof(*st));
	const char **l4why = kb_alloc(&m->arena, (m->nroutes + 1) * sizeof(*l4why));

	for (size_t ri = 0; ri < m->nroutes; ri++) {
		st[ri].sig = route_sig(c, m->routes[ri], &l4why[ri]);
		st[ri].conflict = kb_alloc(&m->arena, (m->routes[ri]->nparents + 1) * sizeof(*st[ri].conflict));
	}
	find_conflicts(c, st);
	for (size_t ri = 0; ri < m->nroutes; ri++) {
		struct kb_route *r = m->routes[ri];
		struct refs_verdict rv = resolve_refs(c, r);
		const char *upath = st[ri].sig ? unenforced_path(m, r) : NULL;
		const char *note = NULL;

		if (upath) {
			note = "; kbackend steers whole connections at L4, so its hostnames, matches and filters are not enforced";
			kb_diag_add(m, KB_SEV_WARNING, &r->meta, upath,
				    "not enforced: kbackend steers whole connections at L4 and sees no path, header or SNI; every connection goes to the route's one backend set");
		}
		for (size_t pi = 0; pi < r->nparents; pi++)
			judge_parent(c, r, pi, &st[ri], &rv, l4why[ri], note);
		if (r->nparents == 0) {
			/* No parent status to hold the verdict: put it on the route itself. */
			kb_diag_add(m, KB_SEV_WARNING, &r->meta, "spec.parentRefs",
				    "the route has no parentRefs; no frontend is programmed");
			kb_set_condition(m, &r->meta, "Accepted", l4why[ri] ? KB_COND_FALSE : KB_COND_UNKNOWN,
					 l4why[ri] ? "UnsupportedValue" : "NoMatchingParent", "%s",
					 l4why[ri] ? l4why[ri] : "the route has no parentRefs; no frontend is programmed");
			if (rv.reason)
				kb_set_condition(m, &r->meta, "ResolvedRefs", KB_COND_FALSE, rv.reason, "%s", rv.msg);
			else
				kb_set_condition(m, &r->meta, "ResolvedRefs", KB_COND_TRUE, "ResolvedRefs",
						 "Resolved all the Object references for the Route");
		}
	}
}
