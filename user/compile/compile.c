// SPDX-License-Identifier: Apache-2.0
/* Stage 3: accepted Gateways, routes and Backends into frontends, localities and priorities (the math: compile_share.c). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compile/compile.h"
#include "compile_int.h"
#include "validate/validate.h"

/*
 * Rules this file chose:
 *
 * - A Gateway listener with no attached, accepted route still becomes a
 *   frontend, with nslots 0: a connect to it is refused with ECONNREFUSED
 *   instead of leaking to whatever host really owns the address.
 * - Two listeners that map to the same (address, port, transport) key are one
 *   L4 frontend; the first in model order keeps it and the later one gets a
 *   warning, the way Gateway API marks a conflicted listener and serves the rest.
 * - A locality whose weight is 0 is listed for display but is not part of its
 *   priority level at all (Envoy refuses a locality weight of 0, so Envoy
 *   Gateway never hands it one): it neither counts towards the level's health
 *   nor receives traffic, even in panic.
 * - Slot table size: see kb_table_size() and kb_slot_count(); layout: see
 *   kb_lay_out_slots() (both in compile_share.c).
 */

#define KB_MAX_RESOLVED		64	/* addresses taken from one FQDN */

/* ---- compile context ---------------------------------------------------------- */

/* One parentRef of a route that names a Gateway, judged once. */
struct attach {
	const struct kb_route *route;
	const struct kb_parent_ref *pr;
	bool accepted;		/* validate accepted the route for this parent */
};

struct attach_list {
	struct attach *v;
	size_t n;
};

struct cx {
	struct kb_model *m;
	const struct kb_compile_env *env;
	struct kb_compiled *out;
	struct kb_arena tmp;		/* indexes, freed when compile returns */
	struct kb_smap backends;		/* "ns/name" -> struct kb_backend */
	struct kb_smap gw_routes;		/* "ns/name" of a Gateway -> struct attach_list */
	struct kb_smap btps;		/* "Kind/ns/name[/section]" -> struct kb_btp */
	const char *cluster_domain;
	const char *clusterset_domain;
	struct kb_smap services;		/* "Kind/ns/name" -> struct kb_service (first of each) */
	struct kb_smap slices;			/* "Kind/ns/name" of the owner -> struct slice_list */
	/* NULL, or the Gateways ("ns/name") whose frontends are compiled; the rest of the model is context. */
	const struct kb_smap *only;
	/* NULL, or of these the frontends compiled (nkeys, sorted by key_cmp). */
	const struct kb_frontend_key *keys;
	size_t nkeys;
	struct kb_arena *a;		/* what the frontends point to: out->arena, or the caller's */
	/* Per frontend: the Backend behind each locality (NULL for a Service), parallel to fe->locs. */
	const struct kb_backend **loc_backend;
	size_t nloc_backend;
	/*
	 * One frontend's scratch (its endpoint list as it grows, lookup keys,
	 * weights), emptied for the next: kept to the end it was 18 MiB of
	 * fresh pages at 10,000 frontends, and a page's first touch is dear.
	 */
	struct kb_arena fe_tmp;
};

static const char *ns_of(const struct kb_meta *meta)
{
	return meta->namespace ? meta->namespace : "default";
}

static bool cond_false(const struct kb_condition *conds, size_t n, const char *type)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(conds[i].type, type) == 0)
			return conds[i].status == KB_COND_FALSE;
	return false;
}

/* Validate judged this parent of the route: Accepted or ResolvedRefs False means no traffic from it. */
static bool parent_accepted(const struct kb_route *r, const struct kb_parent_ref *pr)
{
	/* On the stack: an arena here would clear a fresh 64 KiB chunk per route and parent (half a scoped change's work). */
	char buf[512], *key = buf;
	int n = kb_parent_key_buf(buf, sizeof(buf), r, pr);
	struct kb_arena long_key = { 0 };
	bool ok = true;

	if (n >= (int)sizeof(buf)) {
		key = kb_alloc(&long_key, (size_t)n + 1);
		kb_parent_key_buf(key, (size_t)n + 1, r, pr);
	}
	for (size_t i = 0; i < r->meta.nparents; i++) {
		const struct kb_parent_status *ps = &r->meta.parents[i];

		if (strcmp(ps->parent, key) != 0)
			continue;
		ok = !cond_false(ps->conds, ps->nconds, "Accepted") &&
		     !cond_false(ps->conds, ps->nconds, "ResolvedRefs");
		break;
	}
	kb_arena_free(&long_key);
	return ok;	/* true too when validate recorded nothing against this parent */
}

bool kb_parent_names_gateway(const struct kb_parent_ref *pr)
{
	return (!pr->kind || strcmp(pr->kind, "Gateway") == 0) &&
	       (!pr->group || !*pr->group || strcmp(pr->group, "gateway.networking.k8s.io") == 0);
}

/*
 * Does the parentRef name a Gateway that is compiled? Without an `only` set,
 * every one is; with one, the name is checked before a key is built, so the
 * routes of 10,000 other Gateways cost a hash lookup each.
 */
static bool parent_compiled(struct cx *c, const struct kb_route *r, const struct kb_parent_ref *pr)
{
	if (!c->only)
		return true;
	if (!kb_smap_get(c->only, pr->name))
		return false;
	return kb_smap_get(c->only, kb_sprintf(&c->tmp, "%s/%s", pr->namespace ? pr->namespace : ns_of(&r->meta),
					       pr->name)) != NULL;
}

/* With an `only` set: the names of the Backends its routes may reach (refs and every fallback target). */
static void wanted_backends(struct cx *c, struct kb_smap *want)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < m->nbackends; i++)
		if (m->backends[i]->has_fallback_ref && m->backends[i]->fallback_ref_name)
			kb_smap_put(want, m->backends[i]->fallback_ref_name, want);
	for (size_t i = 0; i < m->nroutes; i++) {
		const struct kb_route *r = m->routes[i];
		bool in = false;

		for (size_t j = 0; j < r->nparents && !in; j++)
			in = r->parents[j].name && kb_parent_names_gateway(&r->parents[j]) && parent_compiled(c, r, &r->parents[j]);
		for (size_t k = 0; in && k < r->nrules; k++)
			for (size_t x = 0; x < r->rules[k].nrefs; x++)
				if (r->rules[k].refs[x].name)
					kb_smap_put(want, r->rules[k].refs[x].name, want);
	}
}

static void index_model(struct cx *c)
{
	struct kb_model *m = c->m;
	struct kb_smap want = { .a = &c->tmp };

	if (c->only)
		wanted_backends(c, &want);
	for (size_t i = 0; i < m->nbackends; i++) {
		const struct kb_meta *b = &m->backends[i]->meta;

		if (b->name && (!c->only || kb_smap_get(&want, b->name)))
			kb_smap_put(&c->backends, kb_sprintf(&c->tmp, "%s/%s", ns_of(b), b->name), m->backends[i]);
	}

	for (size_t i = 0; i < m->nroutes; i++) {
		const struct kb_route *r = m->routes[i];

		/*
		 * Not kb_object_refused(): it counts a route refused by any one
		 * parent, and a route refused by one Gateway (say, not found)
		 * still serves the parents that accepted it.
		 */
		if (cond_false(r->meta.conds, r->meta.nconds, "Accepted") ||
		    cond_false(r->meta.conds, r->meta.nconds, "ResolvedRefs"))
			continue;
		for (size_t j = 0; j < r->nparents; j++) {
			const struct kb_parent_ref *pr = &r->parents[j];
			struct attach_list *l;
			struct attach *a;
			char *key;

			if (!pr->name || !kb_parent_names_gateway(pr) || !parent_compiled(c, r, pr))
				continue;
			key = kb_sprintf(&c->tmp, "%s/%s", pr->namespace ? pr->namespace : ns_of(&r->meta), pr->name);
			l = kb_smap_get(&c->gw_routes, key);
			if (!l)
				l = kb_smap_put(&c->gw_routes, key, kb_alloc(&c->tmp, sizeof(*l)));
			a = KB_PUSH(&c->tmp, l->v, l->n);
			a->route = r;
			a->pr = pr;
			a->accepted = parent_accepted(r, pr);
		}
	}

	kb_index_services(&c->tmp, m, &c->services, &c->slices);

	/* Policy attachment: the first policy in model order that targets an object wins. */
	for (size_t i = 0; i < m->nbtps; i++) {
		struct kb_btp *p = m->btps[i];

		if (kb_object_refused(&p->meta))
			continue;
		for (size_t j = 0; j < p->ntargets; j++) {
			const struct kb_target_ref *t = &p->targets[j];
			char *key;

			if (!t->kind || !t->name)
				continue;
			if (strcmp(t->kind, "Gateway") == 0 && t->section_name)
				key = kb_sprintf(&c->tmp, "Gateway/%s/%s/%s", ns_of(&p->meta), t->name, t->section_name);
			else
				key = kb_sprintf(&c->tmp, "%s/%s/%s", t->kind, ns_of(&p->meta), t->name);
			kb_smap_put(&c->btps, key, p);
		}
	}
}

/* ---- endpoints and localities --------------------------------------------------- */

static bool parse_ip(const char *s, __u8 *family, __u32 ip[4])
{
	unsigned char buf[16];

	memset(ip, 0, 4 * sizeof(__u32));
	if (!s)
		return false;
	if (inet_pton(AF_INET, s, buf) == 1) {
		*family = AF_INET;
		memcpy(&ip[0], buf, 4);
		return true;
	}
	if (inet_pton(AF_INET6, s, buf) == 1) {
		*family = AF_INET6;
		memcpy(ip, buf, 16);
		return true;
	}
	return false;
}

static char *ip_text(struct kb_arena *a, __u8 family, const __u32 ip[4])
{
	char buf[INET6_ADDRSTRLEN];

	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, ip, buf, sizeof(buf)))
		return kb_strdup(a, "?");
	return kb_strdup(a, buf);
}

/*
 * Append one concrete endpoint to locality li and judge its health. An IPv4
 * frontend is reached by IPv4 sockets, which cannot connect to an IPv6
 * endpoint, so such an endpoint is left out of that frontend (an IPv6
 * frontend takes IPv4 endpoints through v4-mapped addresses). Returns
 * whether the endpoint was added.
 */
static bool push_ep(struct cx *c, struct kb_cfrontend *fe, size_t li, enum kb_ep_type type, char *address,
		    char *fqdn, __u16 port, __u8 family, const __u32 ip[4])
{
	struct kb_clocality *loc = &fe->locs[li];
	struct kb_cendpoint *ep;

	if (fe->key.family == AF_INET && family == AF_INET6)
		return false;
	/* Into the scratch arena: compile_frontend moves the whole list to the output once (see there). */
	ep = KB_PUSH(&c->fe_tmp, fe->eps, fe->neps);

	ep->backend = loc->backend;
	ep->priority = loc->priority;
	ep->locality = (unsigned)li;
	ep->type = type;
	ep->address = address;
	ep->fqdn = fqdn;
	ep->port = port;
	ep->family = family;
	if (ip)
		memcpy(ep->ip, ip, sizeof(ep->ip));
	ep->healthy = c->env && c->env->healthy ? c->env->healthy(c->env->ctx, fe, ep) : true;
	loc->nendpoints++;
	if (ep->healthy)
		loc->nhealthy++;
	return true;
}

static void add_fqdn(struct cx *c, struct kb_cfrontend *fe, size_t li, const char *host, __u16 port)
{
	struct kb_arena *a = c->a;
	__u8 fam[KB_MAX_RESOLVED];
	__u32 ips[KB_MAX_RESOLVED][4];
	size_t n = 0, added = 0;
	char *h = kb_strdup(a, host);

	memset(ips, 0, sizeof(ips));
	if (c->env && c->env->resolve)
		n = c->env->resolve(c->env->ctx, host, fam, ips, KB_MAX_RESOLVED);
	if (n > KB_MAX_RESOLVED)
		n = KB_MAX_RESOLVED;
	for (size_t i = 0; i < n; i++) {
		if (fam[i] == AF_INET)
			memset(&ips[i][1], 0, 3 * sizeof(__u32));	/* a sloppy resolver must not leak into the key */
		else if (fam[i] != AF_INET6)
			continue;
		added += push_ep(c, fe, li, KB_EP_FQDN, ip_text(a, fam[i], ips[i]), h, port, fam[i], ips[i]);
	}
	/* No answer yet, or only addresses this frontend's family cannot reach. */
	if (!added)
		*KB_PUSH(a, fe->locs[li].pending, fe->locs[li].npending) = h;
}

static __u16 ep_port(const struct kb_endpoint *e, bool ref_has_port, int64_t ref_port)
{
	int64_t p = e->has_port ? e->port : ref_has_port ? ref_port : 0;

	return p > 0 && p <= 65535 ? (__u16)p : 0;
}

static void add_backend_endpoints(struct cx *c, struct kb_cfrontend *fe, size_t li, const struct kb_backend *b,
				  bool ref_has_port, int64_t ref_port)
{
	struct kb_arena *a = c->a;

	for (size_t i = 0; i < b->nendpoints; i++) {
		const struct kb_endpoint *e = &b->endpoints[i];
		__u16 port = ep_port(e, ref_has_port, ref_port);
		__u32 ip[4];
		__u8 family;

		switch (e->type) {
		case KB_EP_IP:
			if (parse_ip(e->address, &family, ip))
				push_ep(c, fe, li, KB_EP_IP, kb_strdup(a, e->address), NULL, port, family, ip);
			break;
		case KB_EP_FQDN:
			if (e->address)
				add_fqdn(c, fe, li, e->address, port);
			break;
		case KB_EP_UNIX:
			/* The data path steers these to the bridge; the address is the socket path. */
			if (e->address) {
				__u32 bip[4] = { 0 };
				__u16 bport = 0;

				if (c->env && c->env->bridge && c->env->bridge(c->env->bridge_ctx, e->address, bip, &bport))
					bport = 0;
				push_ep(c, fe, li, KB_EP_UNIX, kb_strdup(a, e->address), NULL, bport, AF_UNIX, bip);
			}
			break;
		default:
			break;
		}
	}
}

/* A Service (or ServiceImport) steered through cluster DNS: MCS DNS names a ServiceImport under the clusterset domain. */
static void add_service_fqdn(struct cx *c, struct kb_cfrontend *fe, size_t li, const struct kb_backend_ref *ref,
			     const char *ns, enum kb_kind kind)
{
	char *host = kb_sprintf(&c->fe_tmp, "%s.%s.svc.%s", ref->name, ns,
				kind == KB_KIND_SERVICE ? c->cluster_domain : c->clusterset_domain);
	__u16 port = ref->has_port && ref->port > 0 && ref->port <= 65535 ? (__u16)ref->port : 0;

	add_fqdn(c, fe, li, host, port);
}

/* A Service steered straight to the ready endpoints of its EndpointSlices (compile_slices.c picks them). */
static void add_slice_endpoints(struct cx *c, struct kb_cfrontend *fe, size_t li, const struct kb_service *svc,
				const struct slice_list *l, int64_t ref_port)
{
	struct kb_arena *a = c->a;
	struct kb_slice_pick *picks;
	size_t n;

	if (kb_object_refused(&svc->meta) || !l)
		return;
	n = kb_service_endpoints(&c->fe_tmp, svc, l->v, l->n, ref_port, fe->proto == KB_PROTO_UDP ? "UDP" : "TCP",
				 fe->key.family, &picks);
	for (size_t i = 0; i < n; i++)
		push_ep(c, fe, li, KB_EP_IP, kb_strdup(a, picks[i].address), NULL, picks[i].port, picks[i].family,
			picks[i].ip);
}

static size_t push_loc(struct cx *c, struct kb_cfrontend *fe, const struct kb_backend *b, char *label,
		       char *ref_path, int64_t weight, unsigned prio)
{
	struct kb_clocality *loc = KB_PUSH(c->a, fe->locs, fe->nlocs);

	loc->backend = label;
	loc->ref_path = ref_path;
	loc->weight = weight;
	loc->priority = prio;
	*KB_PUSH(&c->fe_tmp, c->loc_backend, c->nloc_backend) = b;
	return fe->nlocs - 1;
}

static void add_ref(struct cx *c, struct kb_cfrontend *fe, const struct kb_route *r, const struct kb_backend_ref *ref)
{
	struct kb_arena *a = c->a;
	const char *ns = ref->namespace ? ref->namespace : ns_of(&r->meta);
	int64_t weight = ref->has_weight ? ref->weight : 1;
	char *label;
	size_t li;

	if (!ref->name)
		return;
	if (weight < 0)
		weight = 0;
	label = kb_sprintf(a, "%s/%s", ns, ref->name);

	if (kb_ref_is_backend(ref)) {
		const struct kb_backend *b = kb_smap_get(&c->backends, label);
		bool usable = b && !kb_object_refused(&b->meta);
		unsigned prio = ref->fallback || (usable && b->fallback) ? 1 : 0;

		li = push_loc(c, fe, usable ? b : NULL, label, kb_strdup(a, ref->path), weight, prio);
		if (usable)
			add_backend_endpoints(c, fe, li, b, ref->has_port, ref->port);
	} else if (kb_ref_kind(ref) == KB_REF_SERVICE || kb_ref_kind(ref) == KB_REF_SERVICE_IMPORT) {
		enum kb_kind kind = kb_ref_kind(ref) == KB_REF_SERVICE ? KB_KIND_SERVICE : KB_KIND_SERVICE_IMPORT;
		const char *key = kb_sprintf(&c->fe_tmp, "%s/%s/%s", kb_kind_name(kind), ns, ref->name);
		const struct kb_service *svc = c->env && c->env->service_endpoints == KB_SVC_DNS ? NULL :
					       kb_smap_get(&c->services, key);

		li = push_loc(c, fe, NULL, label, kb_strdup(a, ref->path), weight, ref->fallback ? 1 : 0);
		if (svc && !(svc->type && strcmp(svc->type, "ExternalName") == 0))
			add_slice_endpoints(c, fe, li, svc, kb_smap_get(&c->slices, key), ref->port);
		else
			add_service_fqdn(c, fe, li, ref, ns, kind);
	}
	/* Any other kind was refused by validate (ResolvedRefs False); it never reaches here. */
}

/*
 * The seed's `fallback: {backendRef: ...}`: Backend B at priority p makes
 * its target a locality at p + 1 (weight 1), and so on down the chain.
 * Breadth-first over fe->locs as it grows; a Backend that is already a
 * locality is not added again, which also ends any cycle.
 */
static void add_fallback_chain(struct cx *c, struct kb_cfrontend *fe)
{
	struct kb_arena *a = c->a;

	for (size_t i = 0; i < fe->nlocs; i++) {
		const struct kb_backend *b = c->loc_backend[i], *t;
		unsigned prio = fe->locs[i].priority + 1;
		const char *ns;
		char *label;
		bool seen = false;
		size_t li;

		if (!b || !b->has_fallback_ref || !b->fallback_ref_name || prio >= KB_MAX_PRIORITIES)
			continue;
		ns = b->fallback_ref_namespace ? b->fallback_ref_namespace : ns_of(&b->meta);
		label = kb_sprintf(a, "%s/%s", ns, b->fallback_ref_name);
		t = kb_smap_get(&c->backends, label);
		if (!t || kb_object_refused(&t->meta))
			continue;
		for (size_t j = 0; j < c->nloc_backend && !seen; j++)
			seen = c->loc_backend[j] == t;
		if (seen)
			continue;
		li = push_loc(c, fe, t, label,
			      kb_sprintf(a, "Backend %s/%s spec.fallback.backendRef", ns_of(&b->meta), b->meta.name),
			      1, prio);
		add_backend_endpoints(c, fe, li, t, b->has_fallback_ref_port, b->fallback_ref_port);
	}
}

/* ---- levels, shares and the slot table ------------------------------------------- */

static unsigned panic_threshold(const struct kb_btp *p)
{
	if (!p || p->panic_threshold < 0)
		return KB_DEFAULT_PANIC_PCT;
	return p->panic_threshold > 100 ? 100 : (unsigned)p->panic_threshold;
}

static void compute_shares(struct cx *c, struct kb_cfrontend *fe, unsigned panic_pct)
{
	struct kb_arena *a = c->a;
	size_t healthy[KB_MAX_PRIORITIES] = { 0 }, total[KB_MAX_PRIORITIES] = { 0 };
	double load[KB_MAX_PRIORITIES], eff[KB_MAX_PRIORITIES] = { 0 };
	bool panic[KB_MAX_PRIORITIES];
	unsigned maxp = 0;
	double *weights;
	__u32 *counts;
	size_t used = 0;

	if (!fe->nlocs)
		return;
	for (size_t i = 0; i < fe->nlocs; i++) {
		const struct kb_clocality *l = &fe->locs[i];

		if (l->priority > maxp)
			maxp = l->priority;
		if (l->weight <= 0)
			continue;
		healthy[l->priority] += l->nhealthy;
		total[l->priority] += l->nendpoints;
	}
	fe->nlevels = maxp + 1;
	fe->levels = kb_alloc(a, fe->nlevels * sizeof(*fe->levels));
	kb_priority_load(healthy, total, fe->nlevels, panic_pct, load, panic);
	for (size_t p = 0; p < fe->nlevels; p++)
		fe->levels[p] = (struct kb_clevel){ .priority = (unsigned)p, .nendpoints = total[p],
						    .nhealthy = healthy[p], .load = load[p], .panic = panic[p] };

	/*
	 * Envoy Gateway always enables locality-weighted LB. Outside panic a
	 * locality weighs weight * min(1, 1.4 * healthy / total) and only its
	 * healthy hosts serve. In panic, Envoy's hostSourceToUse skips locality
	 * choice and picks among all hosts of the level (AllHosts), so each
	 * endpoint then gets an equal part of the level's load.
	 */
	for (size_t i = 0; i < fe->nlocs; i++) {
		const struct kb_clocality *l = &fe->locs[i];
		double avail;

		if (l->weight <= 0 || !l->nhealthy || panic[l->priority])
			continue;
		avail = KB_OVERPROVISION * (double)l->nhealthy / (double)l->nendpoints;
		eff[l->priority] += (double)l->weight * (avail < 1 ? avail : 1);
	}
	for (size_t i = 0; i < fe->neps; i++) {
		struct kb_cendpoint *ep = &fe->eps[i];
		const struct kb_clocality *l = &fe->locs[ep->locality];
		unsigned p = l->priority;
		double avail;

		ep->share = 0;
		if (l->weight <= 0 || load[p] <= 0)
			continue;
		if (panic[p]) {
			if (total[p])
				ep->share = load[p] / (double)total[p];
		} else if (ep->healthy && eff[p] > 0) {
			avail = KB_OVERPROVISION * (double)l->nhealthy / (double)l->nendpoints;
			ep->share = load[p] * (double)l->weight * (avail < 1 ? avail : 1) / eff[p] /
				    (double)l->nhealthy;
		}
		if (ep->share > 0)
			used++;
	}

	if (!used)
		return;	/* nslots 0: refuse */
	weights = kb_alloc(&c->fe_tmp, fe->neps * sizeof(*weights));
	counts = kb_alloc(&c->fe_tmp, fe->neps * sizeof(*counts));
	for (size_t i = 0; i < fe->neps; i++)
		weights[i] = fe->eps[i].share;
	fe->nslots = kb_table_size(weights, fe->neps, used);
	kb_apportion(weights, fe->neps, fe->nslots, counts);
	for (size_t i = 0; i < fe->neps; i++)
		fe->eps[i].nslots = counts[i];
	fe->slots = kb_alloc(a, fe->nslots * sizeof(*fe->slots));
	kb_lay_out_slots(counts, fe->neps, fe->nslots, fe->slots);
}

static enum kb_lb lb_from_name(const char *s)
{
	if (!s)
		return KB_LB_RANDOM;
	if (strcmp(s, "RoundRobin") == 0)
		return KB_LB_ROUND_ROBIN;
	if (strcmp(s, "LeastRequest") == 0)
		return KB_LB_LEAST_REQUEST;
	if (strcmp(s, "ConsistentHash") == 0)
		return KB_LB_CONSISTENT_HASH;
	return KB_LB_RANDOM;
}

/* Route-level policy first, then the listener's section of the Gateway, then the Gateway. */
static const struct kb_btp *find_btp(struct cx *c, const struct kb_gateway *g, const struct kb_listener *l,
				     const struct kb_route *r)
{
	const struct kb_btp *p = NULL;
	const char *gns = ns_of(&g->meta);

	if (r)
		p = kb_smap_get(&c->btps, kb_sprintf(&c->fe_tmp, "%s/%s/%s", kb_kind_name(r->meta.kind), ns_of(&r->meta),
						  r->meta.name));
	if (!p && l->name)
		p = kb_smap_get(&c->btps, kb_sprintf(&c->fe_tmp, "Gateway/%s/%s/%s", gns, g->meta.name, l->name));
	if (!p)
		p = kb_smap_get(&c->btps, kb_sprintf(&c->fe_tmp, "Gateway/%s/%s", gns, g->meta.name));
	return p;
}

/* The first accepted route attached to this listener; validate made all of them carry the same refs. */
static const struct kb_route *attached_route(struct cx *c, const struct kb_gateway *g, const struct kb_listener *l)
{
	const struct attach_list *al =
		kb_smap_get(&c->gw_routes, kb_sprintf(&c->fe_tmp, "%s/%s", ns_of(&g->meta), g->meta.name));

	for (size_t i = 0; al && i < al->n; i++)
		if (al->v[i].accepted && kb_parent_attaches(c->m, al->v[i].route, al->v[i].pr, g, l))
			return al->v[i].route;
	return NULL;
}

static int listener_proto(const char *p)
{
	static const char *const tcp[] = { "TCP", "HTTP", "HTTPS", "TLS", "GRPC" };

	if (!p)
		return -1;
	if (strcmp(p, "UDP") == 0)
		return KB_PROTO_UDP;
	for (size_t i = 0; i < sizeof(tcp) / sizeof(tcp[0]); i++)
		if (strcmp(p, tcp[i]) == 0)
			return KB_PROTO_TCP;
	return -1;	/* a protocol kbackend cannot serve at L4; validate reports it */
}

static void compile_frontend(struct cx *c, const struct kb_gateway *g, const struct kb_gw_address *ad, __u8 family,
			     const __u32 ip[4], const struct kb_listener *l, int proto)
{
	struct kb_arena *a = c->a;
	struct kb_cfrontend *fe = KB_PUSH(&c->out->views, c->out->fes, c->out->nfes);
	const struct kb_route *r;
	const struct kb_btp *btp;

	kb_arena_reset(&c->fe_tmp);
	memcpy(fe->key.ip, ip, sizeof(fe->key.ip));
	fe->key.port = htons((__u16)l->port);
	fe->key.family = family;
	fe->key.proto = (__u8)proto;
	fe->address = kb_strdup(a, ad->value);
	fe->port = (__u16)l->port;
	fe->proto = (__u8)proto;
	fe->gateway = kb_sprintf(a, "%s/%s", ns_of(&g->meta), g->meta.name);
	fe->listener = kb_strdup(a, l->name);

	r = attached_route(c, g, l);
	btp = find_btp(c, g, l, r);
	fe->policy = btp;
	fe->lb = btp ? lb_from_name(btp->lb_type) : KB_LB_RANDOM;
	if (!r)
		return;	/* configured listener, no route: nslots 0, connects are refused */
	fe->route = kb_sprintf(a, "%s %s/%s", kb_kind_name(r->meta.kind), ns_of(&r->meta), r->meta.name);

	c->loc_backend = NULL;
	c->nloc_backend = 0;
	if (r->nrules)
		for (size_t i = 0; i < r->rules[0].nrefs; i++)
			add_ref(c, fe, r, &r->rules[0].refs[i]);
	add_fallback_chain(c, fe);
	/*
	 * The endpoints were pushed one by one into scratch memory; the output
	 * gets one exact copy, not every copy the doubling left behind (1.8 KiB
	 * a frontend of 10 endpoints, against 0.8). Nothing is pushed to it after.
	 */
	if (fe->neps) {
		struct kb_cendpoint *eps = kb_alloc(a, fe->neps * sizeof(*eps));

		memcpy(eps, fe->eps, fe->neps * sizeof(*eps));
		fe->eps = eps;
	}
	compute_shares(c, fe, panic_threshold(btp));
}

static int key_cmp(const struct kb_frontend_key *x, const struct kb_frontend_key *y)
{
	int d = memcmp(x->ip, y->ip, sizeof(x->ip));

	if (d)
		return d;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	return x->proto < y->proto ? -1 : x->proto > y->proto;
}

static int fe_idx_cmp(const void *a, const void *b, void *arg)
{
	const struct kb_compiled *out = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int d = key_cmp(&out->fes[x].key, &out->fes[y].key);

	return d ? d : x < y ? -1 : x > y;
}

/* The daemon recompiles the same model on every health change: say each thing once. */
static bool has_diag(const struct kb_model *m, const char *msg)
{
	for (size_t i = 0; i < m->ndiags; i++)
		if (m->diags[i].msg && strcmp(m->diags[i].msg, msg) == 0)
			return true;
	return false;
}

/* Keep the first frontend (model order) of each key; warn about the listeners that lost. */
static void drop_duplicates(struct cx *c)
{
	struct kb_compiled *out = c->out;
	size_t *idx, n = 0;
	bool *drop;

	if (out->nfes < 2)
		return;
	idx = kb_alloc(&c->tmp, out->nfes * sizeof(*idx));
	drop = kb_alloc(&c->tmp, out->nfes * sizeof(*drop));
	for (size_t i = 0; i < out->nfes; i++)
		idx[i] = i;
	qsort_r(idx, out->nfes, sizeof(*idx), fe_idx_cmp, out);
	for (size_t i = 1, keep = idx[0]; i < out->nfes; i++) {
		const struct kb_cfrontend *k, *d;
		char *msg;

		if (key_cmp(&out->fes[idx[i]].key, &out->fes[keep].key) != 0) {
			keep = idx[i];
			continue;
		}
		drop[idx[i]] = true;
		k = &out->fes[keep];
		d = &out->fes[idx[i]];
		msg = kb_sprintf(&c->tmp,
				 "Gateway %s listener %s: %s port %u/%s is already served by Gateway %s listener %s; "
				 "ignoring this listener on that address",
				 d->gateway, d->listener ? d->listener : "?", d->address, d->port,
				 d->proto == KB_PROTO_UDP ? "UDP" : "TCP", k->gateway, k->listener ? k->listener : "?");
		if (!has_diag(c->m, msg))
			kb_diag_add(c->m, KB_SEV_WARNING, NULL, NULL, "%s", msg);
	}
	for (size_t i = 0; i < out->nfes; i++)
		if (!drop[i])
			out->fes[n++] = out->fes[i];
	out->nfes = n;
}

static int key_sort_cmp(const void *a, const void *b)
{
	return key_cmp(a, b);
}

/* A frontend the compile makes: all of them, or one of c->keys. */
static bool key_wanted(const struct cx *c, const __u32 ip[4], __u8 family, int port, int proto)
{
	struct kb_frontend_key k = { .port = htons((__u16)port), .family = family, .proto = (__u8)proto };

	if (!c->keys)
		return true;
	memcpy(k.ip, ip, sizeof(k.ip));
	return bsearch(&k, c->keys, c->nkeys, sizeof(k), key_sort_cmp) != NULL;
}

static int compile(struct kb_model *m, const struct kb_compile_env *env, const struct kb_smap *only,
		   const struct kb_frontend_key *keys, size_t nkeys, struct kb_arena *into, struct kb_compiled *out)
{
	struct cx c = { .m = m, .env = env, .out = out, .only = only };

	memset(out, 0, sizeof(*out));
	c.a = into ? into : &out->arena;
	if (keys) {
		struct kb_frontend_key *sorted = kb_alloc(&c.tmp, (nkeys + 1) * sizeof(*sorted));

		memcpy(sorted, keys, nkeys * sizeof(*sorted));
		qsort(sorted, nkeys, sizeof(*sorted), key_sort_cmp);
		c.keys = sorted;
		c.nkeys = nkeys;
	}
	c.backends.a = c.gw_routes.a = c.btps.a = c.services.a = c.slices.a = &c.tmp;
	c.cluster_domain = env && env->cluster_domain && *env->cluster_domain ? env->cluster_domain : "cluster.local";
	c.clusterset_domain = env && env->clusterset_domain && *env->clusterset_domain ? env->clusterset_domain
										: "clusterset.local";
	index_model(&c);

	for (size_t gi = 0; gi < m->ngateways; gi++) {
		const struct kb_gateway *g = m->gateways[gi];

		if (!g->meta.name || kb_object_refused(&g->meta))
			continue;
		if (only && (!kb_smap_get(only, g->meta.name) ||
			     !kb_smap_get(only, kb_sprintf(&c.tmp, "%s/%s", ns_of(&g->meta), g->meta.name))))
			continue;
		for (size_t ai = 0; ai < g->naddresses; ai++) {
			const struct kb_gw_address *ad = &g->addresses[ai];
			__u32 ip[4];
			__u8 family;

			if (ad->type && strcmp(ad->type, "IPAddress") != 0)
				continue;
			if (!parse_ip(ad->value, &family, ip))
				continue;
			for (size_t li = 0; li < g->nlisteners; li++) {
				const struct kb_listener *l = &g->listeners[li];
				int proto = listener_proto(l->protocol);

				if (proto < 0 || l->port < 1 || l->port > 65535 || !key_wanted(&c, ip, family, l->port, proto))
					continue;
				compile_frontend(&c, g, ad, family, ip, l, proto);
			}
		}
	}
	drop_duplicates(&c);
	kb_arena_free(&c.fe_tmp);
	kb_arena_free(&c.tmp);
	/*
	 * The array grew by doubling, each size a copy left in views: at 10,000
	 * frontends 4.4 MiB for 1.4 MiB of frontends. The table outlives the
	 * change, so it keeps one copy, exactly its size.
	 */
	if (out->nfes > 256) {
		struct kb_arena v = { 0 };
		struct kb_cfrontend *fes = kb_alloc(&v, out->nfes * sizeof(*fes));

		memcpy(fes, out->fes, out->nfes * sizeof(*fes));
		kb_arena_free(&out->views);
		out->views = v;
		out->fes = fes;
	}
	return 0;
}

int kb_compile(struct kb_model *m, const struct kb_compile_env *env, struct kb_compiled *out)
{
	return compile(m, env, NULL, NULL, 0, NULL, out);
}

int kb_compile_gateways(struct kb_model *m, const struct kb_compile_env *env, const struct kb_smap *gateways,
			struct kb_compiled *out)
{
	return compile(m, env, gateways, NULL, 0, NULL, out);
}

int kb_compile_frontends(struct kb_model *m, const struct kb_compile_env *env, const struct kb_smap *gateways,
			 const struct kb_frontend_key *keys, size_t nkeys, struct kb_arena *into, struct kb_compiled *out)
{
	return compile(m, env, gateways, keys, nkeys, into, out);
}

void kb_compiled_free(struct kb_compiled *c)
{
	kb_arena_free(&c->arena);
	kb_arena_free(&c->views);
	memset(c, 0, sizeof(*c));
}
