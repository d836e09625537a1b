// SPDX-License-Identifier: Apache-2.0
/* Stage 2 entry point: policy, shared lookups, and the judges of Gateways, policies and record-only kinds. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate_int.h"

void kb_policy_init(struct kb_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->enable_backend = -1;
	p->cluster_domain = "cluster.local";
	p->clusterset_domain = "clusterset.local";
}

bool kb_svc_mode_parse(const char *s, enum kb_svc_mode *out)
{
	static const char *const names[] = { [KB_SVC_AUTO] = "auto", [KB_SVC_SLICES] = "slices", [KB_SVC_DNS] = "dns" };

	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum kb_svc_mode)i;
			return true;
		}
	return false;
}

bool kb_object_refused(const struct kb_meta *obj)
{
	for (size_t i = 0; i < obj->nconds; i++)
		if (obj->conds[i].status == KB_COND_FALSE &&
		    (strcmp(obj->conds[i].type, "Accepted") == 0 || strcmp(obj->conds[i].type, "ResolvedRefs") == 0))
			return true;
	for (size_t p = 0; p < obj->nparents; p++) {
		const struct kb_parent_status *ps = &obj->parents[p];

		for (size_t i = 0; i < ps->nconds; i++)
			if (ps->conds[i].status == KB_COND_FALSE &&
			    (strcmp(ps->conds[i].type, "Accepted") == 0 || strcmp(ps->conds[i].type, "ResolvedRefs") == 0))
				return true;
	}
	return false;
}

/* ---- lookups ---------------------------------------------------------------- */

static const struct vx_ctx *sort_ctx;	/* qsort has no context argument; validate is single-threaded */

static int cmp_backend(const void *pa, const void *pb)
{
	const struct kb_meta *a = &sort_ctx->m->backends[*(const size_t *)pa]->meta;
	const struct kb_meta *b = &sort_ctx->m->backends[*(const size_t *)pb]->meta;
	int d = strcmp(vx_ns(a), vx_ns(b));

	if (!d)
		d = strcmp(a->name ? a->name : "", b->name ? b->name : "");
	/* Equal names (a duplicate) sort in input order, so the first one is found. */
	return d ? d : (*(const size_t *)pa > *(const size_t *)pb) - (*(const size_t *)pa < *(const size_t *)pb);
}

long vx_backend_index(const struct vx_ctx *c, const char *ns, const char *name)
{
	size_t lo = 0, hi = c->m->nbackends;

	/* Lower bound over the sorted index: routes times Backends must not be quadratic. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct kb_meta *o = &c->m->backends[c->bsorted[mid]]->meta;
		int d = strcmp(vx_ns(o), ns);

		if (!d)
			d = strcmp(o->name ? o->name : "", name);
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < c->m->nbackends) {
		const struct kb_meta *o = &c->m->backends[c->bsorted[lo]]->meta;

		if (strcmp(vx_ns(o), ns) == 0 && vx_streq(o->name, name))
			return (long)c->bsorted[lo];
	}
	return -1;
}

static bool group_eq(const char *a, const char *b)
{
	if (vx_core_group(a) || vx_core_group(b))
		return vx_core_group(a) && vx_core_group(b);
	return strcmp(a, b) == 0;
}

bool vx_grant_allows(const struct kb_model *m, const char *from_group, const char *from_kind, const char *from_ns,
		     const char *to_group, const char *to_kind, const char *to_ns, const char *to_name)
{
	for (size_t i = 0; i < m->ngrants; i++) {
		const struct kb_reference_grant *g = m->grants[i];
		bool from = false, to = false;

		if (strcmp(vx_ns(&g->meta), to_ns) != 0)
			continue;	/* a grant lives in the namespace it opens up */
		for (size_t k = 0; k < g->nfrom && !from; k++)
			from = group_eq(g->from[k].group, from_group) && vx_streq(g->from[k].kind, from_kind) &&
			       vx_streq(g->from[k].namespace, from_ns);
		for (size_t k = 0; k < g->nto && !to; k++)
			to = group_eq(g->to[k].group, to_group) && vx_streq(g->to[k].kind, to_kind) &&
			     (!g->to[k].name || !*g->to[k].name || vx_streq(g->to[k].name, to_name));
		if (from && to)
			return true;
	}
	return false;
}

/* ---- policy ------------------------------------------------------------------ */

/* "a.b.c.d/n", "x::/n" or a bare address (a single host). */
bool vx_parse_cidr(const char *s, struct vx_cidr *c)
{
	const char *slash = strchr(s, '/');
	char buf[64];
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	char *end;
	long bits;

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (!vx_parse_addr(buf, &c->net))
		return false;
	c->bits = c->net.family == AF_INET ? 32 : 128;
	if (!slash)
		return true;
	bits = strtol(slash + 1, &end, 10);
	if (!slash[1] || *end || bits < 0 || bits > c->bits)
		return false;
	/* An unmapped "::ffff:10.0.0.0/104" is 10.0.0.0/8. */
	if (c->net.family == AF_INET && strchr(buf, ':'))
		bits -= 96;
	if (bits < 0)
		return false;
	c->bits = (int)bits;
	return true;
}

static struct vx_cidr *parse_cidrs(struct kb_model *m, char **list, size_t n, size_t *out_n, const char *flag)
{
	struct vx_cidr *v = kb_alloc(&m->arena, (n + 1) * sizeof(*v));

	*out_n = 0;
	for (size_t i = 0; i < n; i++) {
		if (list[i] && vx_parse_cidr(list[i], &v[*out_n]))
			(*out_n)++;
		else	/* an unreadable allow-list must fail the apply, not widen or narrow it silently */
			kb_diag_add(m, KB_SEV_ERROR, NULL, NULL, "%s %s: not an IP address or CIDR", flag,
				    list[i] ? list[i] : "");
	}
	return v;
}

static bool backend_enabled(const struct kb_model *m, const struct kb_policy *p)
{
	if (p->enable_backend >= 0)
		return p->enable_backend == 1;
	for (size_t i = 0; i < m->nenvoy_gateways; i++)
		if (m->envoy_gateways[i]->enable_backend == 1)
			return true;
	return false;
}

/* ---- duplicates ---------------------------------------------------------------- */

struct obj_pos {
	struct kb_meta *o;
	size_t pos;	/* input order */
};

static int cmp_obj(const void *pa, const void *pb)
{
	const struct obj_pos *x = pa, *y = pb;
	const struct kb_meta *a = x->o, *b = y->o;
	int d = (int)a->kind - (int)b->kind;

	if (!d)	/* kinds kbackend does not use share one enum value */
		d = strcmp(kb_meta_kind(a), kb_meta_kind(b));
	if (!d)
		d = strcmp(vx_ns(a), vx_ns(b));
	if (!d)
		d = strcmp(a->name ? a->name : "", b->name ? b->name : "");
	return d ? d : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Two documents naming the same object: an apply must say which one it means, so the later copy is refused. */
static void duplicates(struct kb_model *m)
{
	struct obj_pos *v = malloc((m->nobjects + 1) * sizeof(*v));

	if (!v)
		abort();
	for (size_t i = 0; i < m->nobjects; i++)
		v[i] = (struct obj_pos){ m->objects[i], i };
	qsort(v, m->nobjects, sizeof(*v), cmp_obj);
	for (size_t i = 1, first = 0; i < m->nobjects; i++) {
		struct kb_meta *a = v[first].o, *b = v[i].o;

		if (a->kind != b->kind || strcmp(kb_meta_kind(a), kb_meta_kind(b)) != 0 ||
		    strcmp(vx_ns(a), vx_ns(b)) != 0 || !vx_streq(a->name, b->name)) {
			first = i;
			continue;
		}
		kb_diag_add(m, KB_SEV_ERROR, b, "metadata.name", "duplicate %s %s/%s; first defined at %s:%d:%d",
			    kb_meta_kind(b), vx_ns(b), b->name, a->loc.file ? a->loc.file : "-", a->loc.line,
			    a->loc.col);
		kb_set_condition(m, b, "Accepted", KB_COND_FALSE, "Invalid",
				 "duplicate %s %s/%s: the same object is defined twice in the applied set",
				 kb_meta_kind(b), vx_ns(b), b->name);
	}
	free(v);
}

/* ---- Gateway ---------------------------------------------------------------------- */

static void judge_gateway(struct vx_ctx *c, struct kb_gateway *g)
{
	struct kb_model *m = c->m;
	const char *reason = NULL, *why = NULL;
	size_t nip = 0;

#define GW_REFUSE(rsn, path, ...)                                                             \
	do {                                                                                  \
		char *_w = kb_sprintf(&m->arena, __VA_ARGS__);                                \
		kb_diag_add(m, KB_SEV_ERROR, &g->meta, (path), "%s", _w);                     \
		if (!why) {                                                                   \
			reason = (rsn);                                                       \
			why = kb_sprintf(&m->arena, "%s: %s", (path), _w);                    \
		}                                                                             \
	} while (0)

	for (size_t i = 0; i < g->naddresses; i++) {
		const struct kb_gw_address *a = &g->addresses[i];
		char *path = kb_sprintf(&m->arena, "spec.addresses[%zu].value", i);
		struct vx_addr x;

		if (a->type && strcmp(a->type, "IPAddress") != 0) {
			kb_diag_add(m, KB_SEV_WARNING, &g->meta, path,
				    "kbackend programs only IPAddress addresses; the %s address %s is ignored", a->type,
				    a->value ? a->value : "");
			continue;
		}
		if (!vx_parse_addr(a->value, &x))
			GW_REFUSE("UnsupportedAddress", path, "\"%s\" is not an IP address", a->value ? a->value : "");
		else
			nip++;
	}
	if (nip == 0)
		kb_diag_add(m, KB_SEV_WARNING, &g->meta, "spec.addresses",
			    "the Gateway has no address of type IPAddress; kbackend has no frontend to program for it");
	for (size_t i = 0; i < g->nlisteners; i++) {
		const struct kb_listener *l = &g->listeners[i];
		const char *lp = l->path ? l->path : kb_sprintf(&m->arena, "spec.listeners[%zu]", i);
		static const char *const protos[] = { "HTTP", "HTTPS", "TLS", "TCP", "UDP" };
		bool ok = false;

		if (l->port < 1 || l->port > 65535)
			GW_REFUSE("ListenersNotValid", kb_sprintf(&m->arena, "%s.port", lp),
				  "Invalid value: %lld: port must be between 1 and 65535", (long long)l->port);
		for (size_t k = 0; k < sizeof(protos) / sizeof(protos[0]) && !ok; k++)
			ok = vx_streq(l->protocol, protos[k]);
		if (!l->protocol)
			GW_REFUSE("ListenersNotValid", kb_sprintf(&m->arena, "%s.protocol", lp), "Required value");
		else if (!ok)
			GW_REFUSE("ListenersNotValid", kb_sprintf(&m->arena, "%s.protocol", lp),
				  "Unsupported value: \"%s\": supported values: \"HTTP\", \"HTTPS\", \"TLS\", \"TCP\", \"UDP\"",
				  l->protocol);
		for (size_t k = 0; k < i; k++)
			if (l->name && vx_streq(l->name, g->listeners[k].name)) {
				GW_REFUSE("ListenersNotValid", kb_sprintf(&m->arena, "%s.name", lp),
					  "Duplicate value: \"%s\"", l->name);
				break;
			}
	}
#undef GW_REFUSE
	vx_listener_diags(c, g);
	if (why)
		kb_set_condition(m, &g->meta, "Accepted", KB_COND_FALSE, reason, "%s", why);
	else
		kb_set_condition(m, &g->meta, "Accepted", KB_COND_TRUE, "Accepted",
				 "The Gateway was accepted; kbackend programs %zu frontend address(es)", nip);
}

/* ---- BackendTrafficPolicy ------------------------------------------------------------ */

static bool one_of(const char *s, const char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (vx_streq(s, set[i]))
			return true;
	return false;
}

static const struct kb_meta *find_object(const struct kb_model *m, enum kb_kind k, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->nobjects; i++)
		if (m->objects[i]->kind == k && strcmp(vx_ns(m->objects[i]), ns) == 0 &&
		    vx_streq(m->objects[i]->name, name))
			return m->objects[i];
	return NULL;
}

static void judge_btp(struct vx_ctx *c, struct kb_btp *b)
{
	struct kb_model *m = c->m;
	const char *why = NULL;
	size_t found = 0;
	static const char *const families[] = { "IPv4", "IPv6", "IPv4Preferred", "IPv6Preferred", "IPv4AndIPv6" };
	static const char *const lbs[] = { "Random", "RoundRobin", "LeastRequest", "ConsistentHash" };
	static const char *const targets[] = { "Gateway", "HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute" };

#define BTP_REFUSE(path, ...)                                                                 \
	do {                                                                                  \
		char *_w = kb_sprintf(&m->arena, __VA_ARGS__);                                \
		kb_diag_add(m, KB_SEV_ERROR, &b->meta, (path), "%s", _w);                     \
		if (!why)                                                                     \
			why = kb_sprintf(&m->arena, "%s: %s", (path), _w);                    \
	} while (0)

	for (size_t i = 0; i < b->ntargets; i++) {
		const struct kb_target_ref *t = &b->targets[i];
		const char *tp = t->path ? t->path : kb_sprintf(&m->arena, "spec.targetRefs[%zu]", i);

		if (!one_of(t->kind, targets, sizeof(targets) / sizeof(targets[0])) ||
		    (t->group && strcmp(t->group, VX_GROUP_GW) != 0)) {
			BTP_REFUSE(kb_sprintf(&m->arena, "%s.kind", tp),
				   "Unsupported value: \"%s\": this policy can only target a Gateway, HTTPRoute, GRPCRoute, TCPRoute, UDPRoute or TLSRoute",
				   t->kind ? t->kind : "");
			continue;
		}
		if (find_object(m, kb_kind_from_name(t->kind), vx_ns(&b->meta), t->name ? t->name : ""))
			found++;
		else	/* Not a refusal: the target may come in a later apply, and the policy then takes effect. */
			kb_diag_add(m, KB_SEV_WARNING, &b->meta, tp, "%s %s/%s was not found in the applied set", t->kind,
				    vx_ns(&b->meta), t->name ? t->name : "");
	}
	if (b->lookup_family && !one_of(b->lookup_family, families, sizeof(families) / sizeof(families[0])))
		BTP_REFUSE("spec.dns.lookupFamily",
			   "Unsupported value: \"%s\": supported values: \"IPv4\", \"IPv6\", \"IPv4Preferred\", \"IPv6Preferred\", \"IPv4AndIPv6\"",
			   b->lookup_family);
	if (b->lb_type && !one_of(b->lb_type, lbs, sizeof(lbs) / sizeof(lbs[0])))
		BTP_REFUSE("spec.loadBalancer.type",
			   "Unsupported value: \"%s\": supported values: \"ConsistentHash\", \"LeastRequest\", \"Random\", \"RoundRobin\"",
			   b->lb_type);
	if (vx_streq(b->lb_type, "ConsistentHash") && !b->consistent_hash_type)
		BTP_REFUSE("spec.loadBalancer",
			   "Invalid value: \"object\": If LoadBalancer type is consistentHash, consistentHash field needs to be set.");
	else if (vx_streq(b->lb_type, "ConsistentHash") && strcmp(b->consistent_hash_type, "SourceIP") != 0)
		BTP_REFUSE("spec.loadBalancer.consistentHash.type",
			   "kbackend steers connections at L4 and can hash only on the source IP: consistentHash type %s is not supported",
			   b->consistent_hash_type);
	if (b->panic_threshold != -1 && (b->panic_threshold < 0 || b->panic_threshold > 100))
		BTP_REFUSE("spec.healthCheck.panicThreshold", "Invalid value: %lld: must be between 0 and 100",
			   (long long)b->panic_threshold);
	if (b->active.present) {
		const struct kb_active_hc *a = &b->active;

		if (!a->type)
			BTP_REFUSE("spec.healthCheck.active.type", "Required value");
		else if (strcmp(a->type, "TCP") != 0 && strcmp(a->type, "HTTP") != 0)
			BTP_REFUSE("spec.healthCheck.active.type",
				   "Unsupported value: \"%s\": kbackend probes with \"TCP\" or \"HTTP\"", a->type);
		else if (strcmp(a->type, "HTTP") == 0 && !a->http_path)
			BTP_REFUSE("spec.healthCheck.active",
				   "Invalid value: \"object\": If Health Checker type is HTTP, http field needs to be set.");
		if (a->unhealthy_threshold != -1 && a->unhealthy_threshold < 1)
			BTP_REFUSE("spec.healthCheck.active.unhealthyThreshold",
				   "Invalid value: %lld: spec.healthCheck.active.unhealthyThreshold in body should be greater than or equal to 1",
				   (long long)a->unhealthy_threshold);
		if (a->healthy_threshold != -1 && a->healthy_threshold < 1)
			BTP_REFUSE("spec.healthCheck.active.healthyThreshold",
				   "Invalid value: %lld: spec.healthCheck.active.healthyThreshold in body should be greater than or equal to 1",
				   (long long)a->healthy_threshold);
		for (size_t i = 0; i < a->nexpected_statuses; i++)
			if (a->expected_statuses[i] < 100 || a->expected_statuses[i] > 599)
				BTP_REFUSE(kb_sprintf(&m->arena, "spec.healthCheck.active.http.expectedStatuses[%zu]", i),
					   "Invalid value: %lld: must be an HTTP status between 100 and 599",
					   (long long)a->expected_statuses[i]);
	}
	if (b->passive.present && b->passive.max_ejection_percent != -1 &&
	    (b->passive.max_ejection_percent < 0 || b->passive.max_ejection_percent > 100))
		BTP_REFUSE("spec.healthCheck.passive.maxEjectionPercent",
			   "Invalid value: %lld: must be between 0 and 100", (long long)b->passive.max_ejection_percent);
#undef BTP_REFUSE
	if (why)
		kb_set_condition(m, &b->meta, "Accepted", KB_COND_FALSE, "Invalid", "%s", why);
	else if (b->ntargets && !found)
		kb_set_condition(m, &b->meta, "Accepted", KB_COND_UNKNOWN, "TargetNotFound",
				 "none of the policy's targets is in the applied set; it has no effect");
	else
		kb_set_condition(m, &b->meta, "Accepted", KB_COND_TRUE, "Accepted", "Policy has been accepted.");
}

/* ---- entry --------------------------------------------------------------------------- */

int kb_validate(struct kb_model *m, const struct kb_policy *p)
{
	struct vx_ctx c = { .m = m, .p = p };
	bool partial = false;
	int refused = 0;

	c.backend_enabled = backend_enabled(m, p);
	c.bv = kb_alloc(&m->arena, (m->nbackends + 1) * sizeof(*c.bv));
	c.bsorted = kb_alloc(&m->arena, (m->nbackends + 1) * sizeof(*c.bsorted));
	for (size_t i = 0; i < m->nbackends; i++)
		c.bsorted[i] = i;
	sort_ctx = &c;
	qsort(c.bsorted, m->nbackends, sizeof(*c.bsorted), cmp_backend);
	sort_ctx = NULL;
	c.allow = parse_cidrs(m, p->allow_cidrs, p->nallow_cidrs, &c.nallow, "--allow-endpoint");
	c.node = parse_cidrs(m, p->node_addrs, p->nnode_addrs, &c.nnode, "node address");

	for (size_t i = 0; i < m->nobjects && !partial; i++)
		partial = m->objects[i]->skip_judge;
	/* A Backend that is not judged again keeps the verdict it was last judged with. */
	for (size_t i = 0; partial && i < m->nbackends; i++)
		if (m->backends[i]->meta.skip_judge) {
			c.bv[i].refused = m->backends[i]->v_refused;
			c.bv[i].reason = m->backends[i]->v_reason;
			c.bv[i].why = m->backends[i]->v_why;
		}
	vx_backends(&c);
	vx_services(&c);
	vx_routes(&c);
	for (size_t i = 0; i < m->ngateways; i++)
		if (!m->gateways[i]->meta.skip_judge)
			judge_gateway(&c, m->gateways[i]);
	for (size_t i = 0; i < m->nbtps; i++)
		if (!m->btps[i]->meta.skip_judge)
			judge_btp(&c, m->btps[i]);
	for (size_t i = 0; i < m->ngrants; i++)
		if (!m->grants[i]->meta.skip_judge)
			kb_set_condition(m, &m->grants[i]->meta, "Accepted", KB_COND_TRUE, "Accepted",
					 "The ReferenceGrant was accepted");
	for (size_t i = 0; i < m->nenvoy_gateways; i++)
		if (!m->envoy_gateways[i]->meta.skip_judge)
			kb_set_condition(m, &m->envoy_gateways[i]->meta, "Accepted", KB_COND_TRUE, "Accepted",
					 "The EnvoyGateway config was accepted; the Backend API is %s",
					 c.backend_enabled ? "enabled" : "disabled");
	for (size_t i = 0; i < m->nnamespaces; i++)
		if (!m->namespaces[i]->meta.skip_judge)
			kb_set_condition(m, &m->namespaces[i]->meta, "Accepted", KB_COND_TRUE, "Accepted",
					 "kbackend reads the Namespace's labels for listeners' allowedRoutes selectors");
	for (size_t i = 0; i < m->nothers; i++) {
		struct kb_meta *o = &m->others[i]->meta;

		if (o->skip_judge)
			continue;
		/* Recorded for `get`, never acted on: Unknown, so it is not a refusal either. */
		if (o->kind == KB_KIND_FOREIGN)
			kb_set_condition(m, o, "Accepted", KB_COND_UNKNOWN, "Ignored",
					 "kbackend does not use %s (%s): the object is read and ignored", kb_meta_kind(o),
					 o->api_version ? o->api_version : "");
		else
			kb_set_condition(m, o, "Accepted", KB_COND_UNKNOWN, "Ignored",
					 "kbackend records %s but does not act on it", kb_kind_name(o->kind));
	}
	vx_btls_policies(&c);
	/*
	 * Last, so a duplicate's refusal replaces whatever its kind's judge said.
	 * A partial judgement comes from the daemon's state, whose objects are
	 * unique by kind, namespace and name already.
	 */
	if (!partial)
		duplicates(m);
	for (size_t i = 0; i < m->nobjects; i++)
		if (kb_object_refused(m->objects[i]))
			refused++;
	return refused;
}
