// SPDX-License-Identifier: Apache-2.0
/*
 * What one change touches. The daemon keeps its accepted objects parsed and
 * judged; a change of a few Backends and routes re-judges only them and the
 * routes that share a Gateway with them, recompiles only those Gateways'
 * frontends, and merges the result into the programmed table. Everything
 * else is read as it is. `kbackend verify` compares the outcome with a
 * from-scratch run of the whole pipeline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change/apply_scope.h"

/*
 * Kinds whose change stays local: a Backend is read by the routes that name
 * it, a route by the Gateways it names, a Service or ServiceImport by the
 * routes that name it, an EndpointSlice by the routes that name its Service
 * (so a readiness change recompiles only those), and a kind kbackend does
 * not use by nobody. Any other kind (Gateway, policy, ReferenceGrant, Namespace,
 * EnvoyGateway...) can change the verdict on many objects at once, and takes
 * the whole pipeline.
 */
static bool local_kind(const struct kb_meta *o)
{
	return o->kind == KB_KIND_BACKEND || kb_kind_is_route(o->kind) || o->kind == KB_KIND_FOREIGN ||
	       o->kind == KB_KIND_SERVICE || o->kind == KB_KIND_SERVICE_IMPORT || o->kind == KB_KIND_ENDPOINT_SLICE;
}

static const char *ns_of(const struct kb_meta *o)
{
	return o->namespace ? o->namespace : "default";
}

const char *kb_scope_key(struct kb_arena *a, const struct kb_meta *o)
{
	return kb_sprintf(a, "%s/%s/%s", kb_meta_kind(o), ns_of(o), o->name ? o->name : "");
}

static bool is_backend_ref(const struct kb_backend_ref *r)
{
	return r->kind && strcmp(r->kind, "Backend") == 0;
}

/* A set of "ns/name" that also holds each bare name, so a miss costs one short hash. True when ns/name is new. */
static bool set_add(struct kb_smap *s, const char *ns, const char *name)
{
	const char *key;

	if (!name)
		return false;
	key = kb_sprintf(s->a, "%s/%s", ns, name);
	if (kb_smap_get(s, key))
		return false;
	kb_smap_put(s, name, s);
	kb_smap_put(s, key, s);
	return true;
}

static bool set_has(const struct kb_smap *s, struct kb_arena *tmp, const char *ns, const char *name)
{
	return name && kb_smap_get(s, name) && kb_smap_get(s, kb_sprintf(tmp, "%s/%s", ns, name));
}

static void gateway_add(struct kb_scope *s, const char *ns, const char *name)
{
	s->gateways.a = &s->a;
	if (set_add(&s->gateways, ns, name))
		*KB_PUSH(&s->a, s->gwkeys, s->ngw) = kb_sprintf(&s->a, "%s/%s", ns, name);
}

static void add_parents(struct kb_scope *s, const struct kb_route *r)
{
	for (size_t i = 0; i < r->nparents; i++)
		if (kb_parent_names_gateway(&r->parents[i]))
			gateway_add(s, r->parents[i].namespace ? r->parents[i].namespace : ns_of(&r->meta),
				    r->parents[i].name);
}

const char *kb_scope_full_reason(const struct kb_state_ix *ix, const struct kb_model *state, const struct kb_model *in,
				 bool replace, size_t garbage)
{
	const char *why;

	if (replace)
		return "a replace names the whole state";
	if (state->nobjects == 0)
		return "the state is empty";
	for (size_t i = 0; i < in->nobjects; i++)
		if (!local_kind(in->objects[i]))
			return kb_kind_name(in->objects[i]->kind);
	/* Fallback chains and BackendTLSPolicies tie Backends to each other: rare, and judged whole. */
	for (size_t i = 0; i < in->nbackends; i++)
		if (in->backends[i]->has_fallback_ref)
			return "a Backend fallback reference";
	why = kb_state_ix_whole_reason(ix);
	if (why)
		return why;
	/*
	 * Replaced objects, superseded statuses and frontends stay in the
	 * state's memory until a whole rebuild: one is due when they outweigh
	 * a few times the state's own text (a one-object change leaves some
	 * 60 KiB behind; a 10 MB state rebuilds after about a thousand).
	 */
	if (garbage > (16u << 20) + 4 * ix->bytes)
		return "a periodic rebuild";
	return NULL;
}

/* A stored object joins the scope: judged again (judge) or read as context (ctx); the request's replace it. */
static bool enter(struct kb_scope *s, struct kb_meta *o)
{
	if (!o || o->named)
		return false;
	if (!o->in_scope) {
		o->in_scope = true;
		o->skip_judge = true;
		*KB_PUSH(&s->a, s->objs, s->nobjs) = o;
	}
	return true;
}

static void ctx(struct kb_scope *s, struct kb_meta *o)
{
	enter(s, o);
}

static void judge(struct kb_scope *s, struct kb_meta *o)
{
	struct kb_saved_status *v;

	if (!enter(s, o) || !o->skip_judge)
		return;
	o->skip_judge = false;
	v = KB_PUSH(&s->a, s->saved, s->nsaved);
	v->o = o;
	v->conds = o->conds;
	v->nconds = o->nconds;
	v->parents = o->parents;
	v->nparents = o->nparents;
	o->conds = NULL;
	o->nconds = 0;
	o->parents = NULL;
	o->nparents = 0;
	if (o->kind == KB_KIND_BACKEND) {
		struct kb_backend *b = (struct kb_backend *)o;

		v->v_refused = b->v_refused;
		v->v_reason = b->v_reason;
		v->v_why = b->v_why;
	}
}

static void judge_routes(struct kb_scope *s, const struct kb_olist *l)
{
	for (size_t i = 0; l && i < l->n; i++) {
		struct kb_route *r = (struct kb_route *)l->v[i];

		if (r->meta.named || (r->meta.in_scope && !r->meta.skip_judge))
			continue;
		judge(s, &r->meta);
		add_parents(s, r);
	}
}

static struct kb_meta *find(struct kb_state_ix *ix, struct kb_arena *tmp, const char *kind, const char *ns,
			    const char *name)
{
	return name ? kb_smap_get(&ix->objs, kb_sprintf(tmp, "%s/%s/%s", kind, ns, name)) : NULL;
}

/* A Backend a route reads, and the chain of seed-shape fallbacks it starts (each once: a cycle ends). */
static void backend_ctx(struct kb_scope *s, struct kb_state_ix *ix, const char *ns, const char *name)
{
	struct kb_backend *b = (struct kb_backend *)find(ix, &s->a, "Backend", ns, name);

	while (b && !b->meta.in_scope && !b->meta.named) {
		ctx(s, &b->meta);
		if (!b->has_fallback_ref)
			break;
		ns = b->fallback_ref_namespace ? b->fallback_ref_namespace : ns_of(&b->meta);
		b = (struct kb_backend *)find(ix, &s->a, "Backend", ns, b->fallback_ref_name);
	}
}

/* A Service or ServiceImport a route reads (key "Kind/ns/name"), and its EndpointSlices. */
static void service_ctx(struct kb_scope *s, struct kb_state_ix *ix, const char *key)
{
	const struct kb_olist *l = kb_smap_get(&ix->svc_slices, key);

	ctx(s, kb_smap_get(&ix->objs, key));
	for (size_t i = 0; l && i < l->n; i++)
		ctx(s, l->v[i]);
}

/* The Backends and Services (with their EndpointSlices) a route sends to. */
static void route_backends(struct kb_scope *s, struct kb_state_ix *ix, const struct kb_route *r)
{
	for (size_t k = 0; k < r->nrules; k++)
		for (size_t x = 0; x < r->rules[k].nrefs; x++) {
			const struct kb_backend_ref *ref = &r->rules[k].refs[x];
			const char *sk;

			if (is_backend_ref(ref))
				backend_ctx(s, ix, ref->namespace ? ref->namespace : ns_of(&r->meta), ref->name);
			else if ((sk = kb_state_ix_ref_svc_key(&s->a, r, ref)))
				service_ctx(s, ix, sk);
		}
}

/* The key of the Service an object of the request is or belongs to (a Service, ServiceImport or EndpointSlice), or NULL. */
static const char *service_of(struct kb_arena *a, const struct kb_meta *o)
{
	if (o->kind == KB_KIND_SERVICE || o->kind == KB_KIND_SERVICE_IMPORT)
		return o->name ? kb_state_ix_svc_key(a, o->kind, ns_of(o), o->name) : NULL;
	if (o->kind == KB_KIND_ENDPOINT_SLICE && ((const struct kb_endpoint_slice *)o)->service)
		return kb_state_ix_svc_key(a, ((const struct kb_endpoint_slice *)o)->owner_kind, ns_of(o),
					   ((const struct kb_endpoint_slice *)o)->service);
	return NULL;
}

/* What any judgement or compile may read, however far: few objects of these kinds, all of them. */
static void add_globals(struct kb_scope *s, struct kb_model *state)
{
	for (size_t i = 0; i < state->nbtps; i++)
		ctx(s, &state->btps[i]->meta);
	for (size_t i = 0; i < state->nnamespaces; i++)
		ctx(s, &state->namespaces[i]->meta);
	for (size_t i = 0; i < state->ngrants; i++)
		ctx(s, &state->grants[i]->meta);
	for (size_t i = 0; i < state->nenvoy_gateways; i++)
		ctx(s, &state->envoy_gateways[i]->meta);
}

static int by_seq(const void *a, const void *b)
{
	const struct kb_meta *x = *(struct kb_meta *const *)a, *y = *(struct kb_meta *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* sm: the scope's stored objects in state order (the order every first-wins rule reads). */
static void fill_model(struct kb_scope *s, struct kb_model *sm)
{
	kb_model_init(sm);
	qsort(s->objs, s->nobjs, sizeof(*s->objs), by_seq);
	for (size_t i = 0; i < s->nobjs; i++)
		kb_model_add_object(sm, s->objs[i]);
}

void kb_scope_build(struct kb_scope *s, struct kb_state_ix *ix, struct kb_model *state, struct kb_model *in, bool del,
		    struct kb_model *sm)
{
	size_t nbe = 0, nsvc = 0;
	const char **bes = NULL, **svcs = NULL, *sk;

	s->gateways.a = s->backends.a = &s->a;
	/* The request's own objects, and the stored objects they replace or delete. */
	for (size_t i = 0; i < in->nobjects; i++) {
		struct kb_meta *o = in->objects[i], *prev = kb_state_ix_find(ix, &s->a, o);

		o->named = true;
		*KB_PUSH(&s->a, s->req, s->nreq) = o;
		if ((sk = service_of(&s->a, o)))
			*KB_PUSH(&s->a, svcs, nsvc) = sk;
		if (o->kind == KB_KIND_BACKEND && set_add(&s->backends, ns_of(o), o->name)) {
			*KB_PUSH(&s->a, bes, nbe) = ns_of(o);
			*KB_PUSH(&s->a, bes, nbe) = o->name;
		} else if (kb_kind_is_route(o->kind) && !del) {
			add_parents(s, (struct kb_route *)o);
		}
		if (!prev)
			continue;
		prev->named = true;
		*KB_PUSH(&s->a, s->gone, s->ngone) = prev;
		s->named_bytes += prev->src_len;
		if (kb_kind_is_route(prev->kind))
			add_parents(s, (struct kb_route *)prev);
		/* A slice moved to another Service (its label changed) leaves the old one's routes too. */
		if ((sk = service_of(&s->a, prev)))
			*KB_PUSH(&s->a, svcs, nsvc) = sk;
	}
	/* Routes that send to a named Service, or to the Service of a named EndpointSlice. */
	for (size_t i = 0; i < nsvc; i++)
		judge_routes(s, kb_smap_get(&ix->svc_routes, svcs[i]));
	/* Routes that send to a named Backend, then every route that shares a Gateway with a judged one. */
	for (size_t i = 0; i + 1 < nbe; i += 2)
		judge_routes(s, kb_state_ix_be_routes(ix, &s->a, bes[i], bes[i + 1]));
	for (size_t g = 0; g < s->ngw; g++) {
		const char *slash = strchr(s->gwkeys[g], '/');

		judge_routes(s, kb_smap_get(&ix->gw_routes, s->gwkeys[g]));
		judge(s, slash ? find(ix, &s->a, "Gateway", kb_strndup(&s->a, s->gwkeys[g], (size_t)(slash - s->gwkeys[g])),
				      slash + 1) : NULL);
	}
	/* A policy's verdict reads whether its targets exist. */
	for (size_t i = 0; i < state->nbtps; i++) {
		struct kb_btp *p = state->btps[i];

		for (size_t t = 0; t < p->ntargets && !(p->meta.in_scope && !p->meta.skip_judge); t++) {
			const char *kind = p->targets[t].kind;

			if ((kind && strcmp(kind, "Gateway") == 0 &&
			     set_has(&s->gateways, &s->a, ns_of(&p->meta), p->targets[t].name)) ||
			    (kind && strcmp(kind, "Backend") == 0 &&
			     set_has(&s->backends, &s->a, ns_of(&p->meta), p->targets[t].name)) ||
			    (kind && kb_kind_is_route(kb_kind_from_name(kind))))	/* the route may be one the request names */
				judge(s, &p->meta);
		}
		for (size_t t = 0; p->meta.in_scope && !p->meta.skip_judge && t < p->ntargets; t++)
			if (p->targets[t].kind)
				ctx(s, find(ix, &s->a, p->targets[t].kind, ns_of(&p->meta), p->targets[t].name));
	}
	s->njudged = s->nsaved;
	/* What the judged routes read: their Backends (the request's own come with it). */
	for (size_t i = 0; i < s->nsaved; i++)
		if (kb_kind_is_route(s->saved[i].o->kind))
			route_backends(s, ix, (struct kb_route *)s->saved[i].o);
	for (size_t i = 0; i < in->nroutes && !del; i++)
		route_backends(s, ix, in->routes[i]);
	add_globals(s, state);
	fill_model(s, sm);
	s->njudged += in->nobjects;
	if (!del)
		kb_model_absorb(sm, in);
}

static bool has_port(const uint16_t *ports, size_t n, int64_t port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

/*
 * Could r attach to a listener of g (Gateway ns/name) on one of ports? Only
 * through a parentRef to g whose sectionName names such a listener (or is
 * absent) and whose port is one of them (or absent). g NULL: it could.
 */
static bool reaches(const struct kb_route *r, const struct kb_gateway *g, const char *ns, const char *name,
		    const uint16_t *ports, size_t nports)
{
	if (!g)
		return true;
	for (size_t i = 0; i < r->nparents; i++) {
		const struct kb_parent_ref *pr = &r->parents[i];
		bool listener = !pr->section_name;

		if (!kb_parent_names_gateway(pr) || !kb_str_same(pr->name, name) ||
		    strcmp(pr->namespace ? pr->namespace : ns_of(&r->meta), ns) != 0)
			continue;
		if (pr->has_port && !has_port(ports, nports, pr->port))
			continue;
		for (size_t k = 0; k < g->nlisteners && !listener; k++)
			listener = kb_str_same(g->listeners[k].name, pr->section_name) &&
				   has_port(ports, nports, g->listeners[k].port);
		if (listener)
			return true;
	}
	return false;
}

void kb_scope_compile_model(struct kb_scope *s, struct kb_state_ix *ix, struct kb_model *state, const uint16_t *ports,
			    size_t nports, struct kb_model *sm)
{
	for (size_t g = 0; g < s->ngw; g++) {
		const struct kb_olist *l = kb_smap_get(&ix->gw_routes, s->gwkeys[g]);
		const char *slash = strchr(s->gwkeys[g], '/');
		const char *ns = slash ? kb_strndup(&s->a, s->gwkeys[g], (size_t)(slash - s->gwkeys[g])) : NULL;
		struct kb_meta *gw = slash ? find(ix, &s->a, "Gateway", ns, slash + 1) : NULL;

		ctx(s, gw);
		for (size_t i = 0; l && i < l->n; i++) {
			const struct kb_route *r = (const struct kb_route *)l->v[i];

			if (ports && gw && gw->kind == KB_KIND_GATEWAY &&
			    !reaches(r, (const struct kb_gateway *)gw, ns, slash + 1, ports, nports))
				continue;
			ctx(s, l->v[i]);
			route_backends(s, ix, r);
		}
	}
	add_globals(s, state);
	fill_model(s, sm);
}

void kb_scope_add_gateway(struct kb_scope *s, const char *ns_name)
{
	const char *slash = strchr(ns_name, '/');

	if (slash)
		gateway_add(s, kb_strndup(&s->a, ns_name, (size_t)(slash - ns_name)), slash + 1);
}

void kb_scope_restore(struct kb_scope *s)
{
	for (size_t i = 0; i < s->nsaved; i++) {
		struct kb_saved_status *v = &s->saved[i];

		v->o->conds = v->conds;
		v->o->nconds = v->nconds;
		v->o->parents = v->parents;
		v->o->nparents = v->nparents;
		if (v->o->kind == KB_KIND_BACKEND) {
			struct kb_backend *b = (struct kb_backend *)v->o;

			b->v_refused = v->v_refused;
			b->v_reason = v->v_reason;
			b->v_why = v->v_why;
		}
	}
	s->nsaved = 0;
}

static void clear(struct kb_meta *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i]->skip_judge = v[i]->named = v[i]->in_scope = false;
}

void kb_scope_clear_marks(struct kb_scope *s)
{
	clear(s->objs, s->nobjs);
	clear(s->gone, s->ngone);
	clear(s->req, s->nreq);
}

/* A frontend key as a hash key. */
static const char *fe_key(struct kb_arena *a, const struct kb_frontend_key *k)
{
	const unsigned char *p = (const unsigned char *)k;
	char *s = kb_alloc(a, 2 * sizeof(*k) + 1);

	for (size_t i = 0; i < sizeof(*k); i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	return s;
}

size_t kb_scope_merge(struct kb_scope *s, const struct kb_compiled *old, struct kb_compiled *part,
		      struct kb_compiled *out)
{
	struct kb_smap fresh = { .a = &s->a };
	bool *used = kb_alloc(&s->a, (part->nfes + 1) * sizeof(*used));
	size_t replaced = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < part->nfes; i++)
		kb_smap_put(&fresh, fe_key(&s->a, &part->fes[i].key), &part->fes[i]);
	/* In the old order: a frontend of a recompiled Gateway is replaced by its new self, or goes. */
	for (size_t i = 0; i < old->nfes; i++) {
		const struct kb_cfrontend *fe = &old->fes[i], *nf;

		if (!fe->gateway || !kb_smap_get(&s->gateways, fe->gateway)) {
			*KB_PUSH(&out->views, out->fes, out->nfes) = *fe;
			continue;
		}
		replaced++;
		nf = kb_smap_get(&fresh, fe_key(&s->a, &fe->key));
		if (!nf)
			continue;
		used[nf - part->fes] = true;
		*KB_PUSH(&out->views, out->fes, out->nfes) = *nf;
	}
	/* A new key: kept unless a Gateway that was not recompiled serves it (it was first, and still is). */
	for (size_t i = 0; i < part->nfes; i++) {
		bool taken = false;

		if (used[i])
			continue;
		for (size_t j = 0; j < old->nfes && !taken; j++)
			taken = !memcmp(&old->fes[j].key, &part->fes[i].key, sizeof(part->fes[i].key));
		if (!taken)
			*KB_PUSH(&out->views, out->fes, out->nfes) = part->fes[i];
	}
	/* The new frontends' memory moves to out; the old ones' stays with old until the change commits. */
	kb_arena_absorb(&out->arena, &part->arena);
	kb_compiled_free(part);
	return replaced;
}

void kb_scope_adopt_compiled(struct kb_compiled *out, struct kb_compiled *old)
{
	kb_arena_absorb(&out->arena, &old->arena);
	kb_arena_free(&old->views);
	memset(old, 0, sizeof(*old));
}

void kb_scope_free(struct kb_scope *s)
{
	kb_arena_free(&s->a);
	memset(s, 0, sizeof(*s));
}
