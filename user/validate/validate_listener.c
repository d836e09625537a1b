// SPDX-License-Identifier: Apache-2.0
/* Which listeners a route's parentRef attaches to: sectionName/port, allowedRoutes (kinds, namespaces) and hostnames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate_int.h"

bool vx_parent_is_gateway(const struct kb_parent_ref *pr)
{
	return (!pr->group || strcmp(pr->group, VX_GROUP_GW) == 0) && (!pr->kind || strcmp(pr->kind, "Gateway") == 0);
}

/* The route kinds a listener's protocol can carry (Envoy Gateway's allowedRouteKindsForProtocol). */
static size_t protocol_kinds(const struct kb_listener *l, enum kb_kind out[2])
{
	const char *p = l->protocol ? l->protocol : "";

	if (strcmp(p, "HTTP") == 0 || strcmp(p, "HTTPS") == 0) {
		out[0] = KB_KIND_HTTPROUTE;
		out[1] = KB_KIND_GRPCROUTE;
		return 2;
	}
	if (strcmp(p, "TLS") == 0) {
		out[0] = KB_KIND_TLSROUTE;
		if (vx_streq(l->tls_mode, "Passthrough"))
			return 1;
		out[1] = KB_KIND_TCPROUTE;	/* Terminate, the default, also carries TCPRoutes */
		return 2;
	}
	out[0] = strcmp(p, "TCP") == 0 ? KB_KIND_TCPROUTE : strcmp(p, "UDP") == 0 ? KB_KIND_UDPROUTE : KB_KIND_UNKNOWN;
	return out[0] != KB_KIND_UNKNOWN;
}

/* A listener's supported kinds: its protocol's, narrowed by allowedRoutes.kinds when that is set. */
static bool kind_allowed(const struct kb_listener *l, enum kb_kind k)
{
	enum kb_kind pk[2];
	size_t n = protocol_kinds(l, pk);
	bool fits = false;

	for (size_t i = 0; i < n; i++)
		fits |= pk[i] == k;
	if (!fits || l->nkinds == 0)
		return fits;
	for (size_t i = 0; i < l->nkinds; i++)
		if ((!l->kinds[i].group || strcmp(l->kinds[i].group, VX_GROUP_GW) == 0) &&
		    vx_streq(l->kinds[i].kind, kb_kind_name(k)))
			return true;
	return false;
}

static const char *label_of(const struct kb_namespace *ns, const char *key)
{
	for (size_t i = 0; ns && i < ns->nlabels; i++)
		if (vx_streq(ns->labels[i].key, key))
			return ns->labels[i].value;
	return NULL;
}

/* The first matchExpressions entry metav1.LabelSelectorAsSelector would not parse, or -1. */
static long bad_expr(const struct kb_listener *l)
{
	for (size_t i = 0; i < l->nmatch_exprs; i++) {
		const struct kb_label_expr *e = &l->match_exprs[i];
		bool with_values = vx_streq(e->op, "In") || vx_streq(e->op, "NotIn");

		if (!(with_values || vx_streq(e->op, "Exists") || vx_streq(e->op, "DoesNotExist")) ||
		    with_values != (e->nvalues > 0))
			return (long)i;
	}
	return -1;
}

/* What metav1.LabelSelectorAsSelector says about a bad expression (the values as JSON, as it prints them). */
static const char *selector_error(struct kb_model *m, const struct kb_label_expr *e)
{
	const char *vals = e->nvalues ? "[" : "null";

	for (size_t i = 0; i < e->nvalues; i++)
		vals = kb_sprintf(&m->arena, "%s%s\"%s\"%s", vals, i ? "," : "", e->values[i] ? e->values[i] : "",
				  i + 1 == e->nvalues ? "]" : "");
	if (vx_streq(e->op, "In") || vx_streq(e->op, "NotIn"))
		return kb_sprintf(&m->arena, "values: Invalid value: %s: for 'in', 'notin' operators, values set can't be empty", vals);
	if (vx_streq(e->op, "Exists") || vx_streq(e->op, "DoesNotExist"))
		return kb_sprintf(&m->arena, "values: Invalid value: %s: values set must be empty for exists and does not exist", vals);
	return kb_sprintf(&m->arena, "\"%s\" is not a valid label selector operator", e->op ? e->op : "");
}

static bool selector_matches(const struct kb_listener *l, const struct kb_namespace *ns)
{
	for (size_t i = 0; i < l->nmatch_labels; i++)
		if (!vx_streq(label_of(ns, l->match_labels[i].key), l->match_labels[i].value))
			return false;
	for (size_t i = 0; i < l->nmatch_exprs; i++) {
		const struct kb_label_expr *e = &l->match_exprs[i];
		const char *v = label_of(ns, e->key);
		bool in = false;

		for (size_t k = 0; v && k < e->nvalues; k++)
			in |= vx_streq(v, e->values[k]);
		if ((vx_streq(e->op, "In") && !in) || (vx_streq(e->op, "NotIn") && in) ||
		    (vx_streq(e->op, "Exists") && !v) || (vx_streq(e->op, "DoesNotExist") && v))
			return false;
	}
	return true;
}

/*
 * allowedRoutes.namespaces. A namespace that is not in the applied set has
 * no labels (kbackend cannot ask the API server); an invalid or missing
 * selector admits nothing, as in Envoy Gateway.
 */
static bool namespace_allowed(const struct kb_model *m, const struct kb_gateway *g, const struct kb_listener *l,
			      const char *route_ns)
{
	if (vx_streq(l->ns_from, "All"))
		return true;
	if (vx_streq(l->ns_from, "Selector")) {
		if (!l->has_selector || bad_expr(l) >= 0)
			return false;
		return selector_matches(l, kb_model_find_namespace(m, route_ns));
	}
	return strcmp(vx_ns(&g->meta), route_ns) == 0;	/* Same, the default */
}

/* Does wildcard ("*.example.com") match host: a name under its suffix, or a narrower wildcard ("*.a.example.com")? */
static bool wildcard_matches(const char *wildcard, const char *host)
{
	const char *suffix = wildcard + 1;
	size_t sl = strlen(suffix), hl;
	bool wild = *host == '*';

	if (wild)
		host++;
	hl = strlen(host);
	if (hl <= sl || strcmp(host + hl - sl, suffix) != 0)
		return false;
	return !wild || host[0] == '.';
}

/*
 * Does the route share a hostname with listener l (Envoy Gateway's
 * computeHosts)? Hostnames that another listener on the same port names
 * exactly belong to that listener and do not count here.
 */
static bool hosts_intersect(const struct kb_route *r, const struct kb_gateway *g, const struct kb_listener *l)
{
	const char *lh = l->hostname && *l->hostname ? l->hostname : NULL;

	if (r->nhostnames == 0)
		return true;
	for (size_t i = 0; i < r->nhostnames; i++) {
		const char *h = r->hostnames[i], *got[2] = { NULL, NULL };

		if (!h)
			continue;
		if (!lh || strcmp(lh, h) == 0)
			got[0] = h;
		else if (*lh == '*' && *h == '*') {
			if (wildcard_matches(h, lh))
				got[0] = lh;
			if (wildcard_matches(lh, h))
				got[1] = h;
		} else if (*lh == '*') {
			if (wildcard_matches(lh, h))
				got[0] = h;
		} else if (*h == '*' && wildcard_matches(h, lh)) {
			got[0] = lh;
		}
		for (size_t k = 0; k < 2; k++) {
			bool taken = false;

			for (size_t o = 0; got[k] && o < g->nlisteners && !taken; o++)
				taken = &g->listeners[o] != l && g->listeners[o].port == l->port &&
					vx_streq(g->listeners[o].hostname, got[k]);
			if (got[k] && !taken)
				return true;
		}
	}
	return false;
}

enum vx_attach vx_listener_attach(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
				  const struct kb_gateway *g, const struct kb_listener *l)
{
	const char *ns = pr->namespace ? pr->namespace : vx_ns(&r->meta);

	if (!vx_parent_is_gateway(pr) || !pr->name || !g->meta.name || strcmp(pr->name, g->meta.name) != 0 ||
	    strcmp(ns, vx_ns(&g->meta)) != 0)
		return VX_ATTACH_NO_PARENT;
	if ((pr->section_name && *pr->section_name && !vx_streq(pr->section_name, l->name)) ||
	    (pr->has_port && pr->port != l->port))
		return VX_ATTACH_NO_PARENT;
	if (!kind_allowed(l, r->meta.kind) || !namespace_allowed(m, g, l, vx_ns(&r->meta)))
		return VX_ATTACH_NOT_ALLOWED;
	return hosts_intersect(r, g, l) ? VX_ATTACH_OK : VX_ATTACH_NO_HOSTNAME;
}

enum vx_attach vx_parent_attach(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
				const struct kb_gateway *g)
{
	enum vx_attach best = VX_ATTACH_NO_PARENT;

	for (size_t i = 0; i < g->nlisteners; i++) {
		enum vx_attach a = vx_listener_attach(m, r, pr, g, &g->listeners[i]);

		if (a < best)
			best = a;
	}
	return best;
}

bool kb_parent_attaches(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
			const struct kb_gateway *g, const struct kb_listener *l)
{
	return vx_listener_attach(m, r, pr, g, l) == VX_ATTACH_OK;
}

/*
 * What Envoy Gateway reports as listener conditions (kbackend has none):
 * allowedRoutes kinds a listener cannot carry, and selectors that do not
 * parse. Warnings: the listener still serves the kinds it can.
 */
void vx_listener_diags(struct vx_ctx *c, const struct kb_gateway *g)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < g->nlisteners; i++) {
		const struct kb_listener *l = &g->listeners[i];
		const char *lp = l->path ? l->path : kb_sprintf(&m->arena, "spec.listeners[%zu]", i);
		enum kb_kind pk[2];
		size_t npk = protocol_kinds(l, pk), nsupported = 0;
		const char *printed = "", *supported = "";
		long bad;

		for (size_t k = 0; k < l->nkinds; k++) {
			enum kb_kind rk = kb_kind_from_name(l->kinds[k].kind);

			for (size_t j = 0; j < npk && (!l->kinds[k].group || strcmp(l->kinds[k].group, VX_GROUP_GW) == 0); j++)
				if (pk[j] == rk) {
					supported = kb_sprintf(&m->arena, "%s%s%s", supported, nsupported ? " " : "",
							       kb_kind_name(rk));
					nsupported++;
				}
		}
		for (size_t j = 0; j < npk; j++)
			printed = kb_sprintf(&m->arena, "%s%s%s", printed, j ? " " : "", kb_kind_name(pk[j]));
		for (size_t k = 0; k < l->nkinds; k++) {
			const struct kb_route_group_kind *rk = &l->kinds[k];
			enum kb_kind kk = kb_kind_from_name(rk->kind);
			bool fits = false;
			char *path = kb_sprintf(&m->arena, "%s.allowedRoutes.kinds[%zu]", lp, k);

			if (rk->group && strcmp(rk->group, VX_GROUP_GW) != 0) {
				kb_diag_add(m, KB_SEV_WARNING, &g->meta, path,
					    "Group is not supported, group must be " VX_GROUP_GW);
				continue;
			}
			for (size_t j = 0; j < npk; j++)
				fits |= pk[j] == kk;
			if (!fits)
				kb_diag_add(m, KB_SEV_WARNING, &g->meta, path, "%s is not supported, kind must be one of [%s]",
					    rk->kind ? rk->kind : "", nsupported ? supported : printed);
		}
		if (!vx_streq(l->ns_from, "Selector"))
			continue;
		if (!l->has_selector)
			kb_diag_add(m, KB_SEV_WARNING, &g->meta, kb_sprintf(&m->arena, "%s.allowedRoutes.namespaces", lp),
				    "The allowedRoutes.namespaces.selector field must be specified when allowedRoutes.namespaces.from is set to \"Selector\".");
		else if ((bad = bad_expr(l)) >= 0)
			kb_diag_add(m, KB_SEV_WARNING, &g->meta,
				    kb_sprintf(&m->arena, "%s.allowedRoutes.namespaces.selector.matchExpressions[%ld]", lp, bad),
				    "The allowedRoutes.namespaces.selector could not be parsed: %s.",
				    selector_error(m, &l->match_exprs[bad]));
	}
}
