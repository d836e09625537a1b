// SPDX-License-Identifier: Apache-2.0
/* Judges routes: parent attachment, backendRef resolution, and kbackend's L4 honesty (one backend set per listener). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate_int.h"

#define L4_WHY "kbackend steers whole connections at L4 and sees no path, header or SNI"

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

int kb_parent_key_buf(char *buf, size_t len, const struct kb_route *r, const struct kb_parent_ref *pr)
{
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);

	if (pr->section_name && *pr->section_name)
		return snprintf(buf, len, "%s/%s/%s", ns, pr->name ? pr->name : "", pr->section_name);
	return snprintf(buf, len, "%s/%s", ns, pr->name ? pr->name : "");
}

char *kb_parent_key(struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr)
{
	int n = kb_parent_key_buf(NULL, 0, r, pr);
	char *p = kb_alloc(&m->arena, n > 0 ? (size_t)n + 1 : 1);

	kb_parent_key_buf(p, n > 0 ? (size_t)n + 1 : 1, r, pr);
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A rule's backend set as one string: the sorted multiset of normalised refs. */
static const char *rule_sig(struct kb_arena *a, const struct kb_route *r, const struct kb_route_rule *rule)
{
	const char **keys = calloc(rule->nrefs + 1, sizeof(*keys));
	char *sig = "";

	if (!keys)
		abort();
	for (size_t i = 0; i < rule->nrefs; i++) {
		const struct kb_backend_ref *ref = &rule->refs[i];

		/* Every spelling of a Backend ref names the same object. */
		keys[i] = kb_sprintf(a, "%s|%s|%s|%s|%lld|%lld|%d",
				     kb_ref_is_backend(ref) ? VX_GROUP_EG : vx_core_group(ref->group) ? "" : ref->group,
				     ref->kind ? ref->kind : "Service", ref->namespace ? ref->namespace : vx_ns(&r->meta),
				     ref->name ? ref->name : "", ref->has_port ? (long long)ref->port : 0LL,
				     ref->has_weight ? (long long)ref->weight : 1LL, ref->fallback);
	}
	qsort(keys, rule->nrefs, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < rule->nrefs; i++)
		sig = kb_sprintf(a, "%s%s;", sig, keys[i]);
	free(keys);
	return sig;
}

/* The route's one backend set, or NULL (with a diagnostic) when its rules send requests to different backends. */
static const char *route_sig(const struct vx_ctx *c, struct kb_arena *a, const struct kb_route *r, const char **why)
{
	struct kb_model *m = c->m;
	const char *first;

	if (r->nrules == 0)
		return "";
	first = rule_sig(a, r, &r->rules[0]);
	for (size_t i = 1; i < r->nrules; i++) {
		if (strcmp(first, rule_sig(a, r, &r->rules[i])) == 0)
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

			if (!vx_parent_is_gateway(pr) || !pr->name)
				continue;
			g = kb_model_find_gateway(m, pr->namespace ? pr->namespace : vx_ns(&r->meta), pr->name);
			for (size_t li = 0; g && li < g->nlisteners; li++) {
				if (!kb_parent_attaches(m, r, pr, g, &g->listeners[li]))
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

/* Envoy Gateway's Accepted=False verdicts for a Gateway parent whose listeners do not take the route. */
static const char *attach_refusal(struct kb_model *m, const struct kb_route *r, enum vx_attach a, const char **reason)
{
	switch (a) {
	case VX_ATTACH_NO_PARENT:
		*reason = "NoMatchingParent";
		return "No listeners match this parent ref";
	case VX_ATTACH_NOT_ALLOWED:
		*reason = "NotAllowedByListeners";
		return "No listeners included by this parent ref allowed this attachment.";
	case VX_ATTACH_NO_HOSTNAME:
		*reason = "NoMatchingListenerHostname";
		return kb_sprintf(&m->arena,
				  "There were no hostname intersections between the %s and this parent ref's Listener(s).",
				  kb_kind_name(r->meta.kind));
	default:
		return NULL;
	}
}

static void judge_parent(const struct vx_ctx *c, struct kb_route *r, size_t pi, const struct route_state *st,
			 const struct vx_refs_verdict *rv, const char *l4why)
{
	struct kb_model *m = c->m;
	const struct kb_parent_ref *pr = &r->parents[pi];
	char key[256];
	/* kb_parent_status keeps its own copy of the key: made here on the stack when it fits. */
	int n = kb_parent_key_buf(key, sizeof(key), r, pr);
	struct kb_parent_status *ps = kb_parent_status(m, &r->meta, n >= 0 && (size_t)n < sizeof(key) ? key : kb_parent_key(m, r, pr));
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);
	const char *reason, *msg;
	const struct kb_gateway *g;

	if (rv->reason)
		kb_set_parent_condition(m, ps, "ResolvedRefs", KB_COND_FALSE, rv->reason, "%s", rv->msg);
	else
		kb_set_parent_condition(m, ps, "ResolvedRefs", KB_COND_TRUE, "ResolvedRefs",
					"Resolved all the Object references for the Route");
	if (!vx_parent_is_gateway(pr)) {
		msg = kb_sprintf(&m->arena, "kbackend attaches routes to Gateways only, not to %s %s",
				 pr->kind ? pr->kind : "Gateway", pr->group ? pr->group : VX_GROUP_GW);
		kb_diag_add(m, KB_SEV_ERROR, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s", msg);
		return;
	}
	g = kb_model_find_gateway(m, ns, pr->name ? pr->name : "");
	if (!g && l4why) {	/* refused for itself, wherever it attaches */
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s", l4why);
		return;
	}
	if (!g) {
		/*
		 * Not a refusal (cases/README.md): the route is a fine object, it
		 * just programs nothing until its Gateway is applied. Unknown keeps
		 * kb_object_refused() false.
		 */
		msg = kb_sprintf(&m->arena, "Gateway %s/%s was not found in the applied set; no frontend is programmed",
				 ns, pr->name ? pr->name : "");
		kb_diag_add(m, KB_SEV_WARNING, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_UNKNOWN, "NoMatchingParent", "%s", msg);
		return;
	}
	/* Envoy Gateway's attachment verdicts first; kbackend's own L4 refusals only for routes it would accept. */
	msg = attach_refusal(m, r, vx_parent_attach(m, r, pr, g), &reason);
	if (msg) {
		kb_diag_add(m, KB_SEV_ERROR, &r->meta, pr->path, "%s", msg);
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, reason, "%s", msg);
		return;
	}
	if (l4why || st->conflict[pi]) {
		kb_set_parent_condition(m, ps, "Accepted", KB_COND_FALSE, "UnsupportedValue", "%s",
					l4why ? l4why : st->conflict[pi]);
		return;
	}
	kb_set_parent_condition(m, ps, "Accepted", KB_COND_TRUE, "Accepted", "Route is accepted");
}

void vx_routes(struct vx_ctx *c)
{
	struct kb_model *m = c->m;
	/* The judging's own bookkeeping goes with it: kept in the model, it stayed with the state (MiBs at 10,000 routes). */
	struct kb_arena tmp = { 0 };
	struct route_state *st = kb_alloc(&tmp, (m->nroutes + 1) * sizeof(*st));
	const char **l4why = kb_alloc(&tmp, (m->nroutes + 1) * sizeof(*l4why));

	for (size_t ri = 0; ri < m->nroutes; ri++) {
		/* A route not judged again claims nothing: the daemon judges every route of a listener together. */
		if (m->routes[ri]->meta.skip_judge)
			continue;
		st[ri].sig = route_sig(c, &tmp, m->routes[ri], &l4why[ri]);
		st[ri].conflict = kb_alloc(&tmp, (m->routes[ri]->nparents + 1) * sizeof(*st[ri].conflict));
	}
	find_conflicts(c, st);
	for (size_t ri = 0; ri < m->nroutes; ri++) {
		struct kb_route *r = m->routes[ri];
		struct vx_refs_verdict rv;
		const char *upath;

		if (r->meta.skip_judge)
			continue;
		rv = vx_resolve_refs(c, r);
		upath = st[ri].sig ? unenforced_path(m, r) : NULL;

		/* A note, not a condition: Envoy Gateway's "Route is accepted" stays as it is. */
		if (upath)
			kb_diag_add(m, KB_SEV_WARNING, &r->meta, upath,
				    "not enforced: kbackend steers whole connections at L4 and sees no path, header or SNI; every connection goes to the route's one backend set (its hostnames, matches and filters are not enforced)");
		for (size_t pi = 0; pi < r->nparents; pi++)
			judge_parent(c, r, pi, &st[ri], &rv, l4why[ri]);
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
	kb_arena_free(&tmp);
}
