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
#include <string.h>

#include "change/apply_scope.h"

/*
 * Kinds whose change stays local: a Backend is read by the routes that name
 * it, a route by the Gateways it names, and a kind kbackend does not use by
 * nobody. Any other kind (Gateway, policy, ReferenceGrant, Namespace,
 * EnvoyGateway...) can change the verdict on many objects at once, and takes
 * the whole pipeline.
 */
static bool local_kind(const struct kb_meta *o)
{
	return o->kind == KB_KIND_BACKEND || kb_kind_is_route(o->kind) || o->kind == KB_KIND_FOREIGN;
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

/* A set of "ns/name" that also holds each bare name, so a miss costs one short hash. */
static void set_add(struct kb_smap *s, const char *ns, const char *name)
{
	if (!name)
		return;
	kb_smap_put(s, name, s);
	kb_smap_put(s, kb_sprintf(s->a, "%s/%s", ns, name), s);
}

static bool set_has(const struct kb_smap *s, struct kb_arena *tmp, const char *ns, const char *name)
{
	return name && kb_smap_get(s, name) && kb_smap_get(s, kb_sprintf(tmp, "%s/%s", ns, name));
}

static void add_parents(struct kb_scope *s, const struct kb_route *r)
{
	for (size_t i = 0; i < r->nparents; i++)
		if (kb_parent_names_gateway(&r->parents[i]))
			set_add(&s->gateways, r->parents[i].namespace ? r->parents[i].namespace : ns_of(&r->meta),
				r->parents[i].name);
}

static bool names_scoped_gateway(struct kb_scope *s, const struct kb_route *r)
{
	for (size_t i = 0; i < r->nparents; i++)
		if (kb_parent_names_gateway(&r->parents[i]) &&
		    set_has(&s->gateways, &s->a,
			    r->parents[i].namespace ? r->parents[i].namespace : ns_of(&r->meta), r->parents[i].name))
			return true;
	return false;
}

static bool names_scoped_backend(struct kb_scope *s, const struct kb_route *r)
{
	for (size_t k = 0; k < r->nrules; k++)
		for (size_t x = 0; x < r->rules[k].nrefs; x++) {
			const struct kb_backend_ref *ref = &r->rules[k].refs[x];

			if (is_backend_ref(ref) &&
			    set_has(&s->backends, &s->a, ref->namespace ? ref->namespace : ns_of(&r->meta), ref->name))
				return true;
		}
	return false;
}

const char *kb_scope_full_reason(const struct kb_model *state, const struct kb_model *in, bool replace,
				 size_t garbage)
{
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
	for (size_t i = 0; i < state->nbackends; i++)
		if (state->backends[i]->has_fallback_ref)
			return "a Backend fallback reference";
	for (size_t i = 0; i < state->nothers; i++)
		if (state->others[i]->meta.kind == KB_KIND_BACKEND_TLS_POLICY)
			return "a BackendTLSPolicy";
	/*
	 * Replaced objects, superseded statuses and frontends stay in the
	 * state's memory until a whole rebuild: one is due when they outweigh
	 * a few times the state's own text (a one-object change leaves some
	 * 60 KiB behind; a 10 MB state rebuilds after about a thousand).
	 */
	size_t live = 16u << 20;

	for (size_t i = 0; i < state->nobjects; i++)
		live += 4 * state->objects[i]->src_len;
	if (garbage > live)
		return "a periodic rebuild";
	return NULL;
}

static void judge(struct kb_scope *s, struct kb_meta *o)
{
	struct kb_saved_status *v;

	if (!o->skip_judge)
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

void kb_scope_build(struct kb_scope *s, struct kb_model *state, const struct kb_smap *state_ix, struct kb_model *in,
		    bool del, struct kb_model *next)
{
	struct kb_smap labels = { .a = &s->a };
	bool grew;

	s->gateways.a = s->backends.a = &s->a;
	/* The request's own objects, and the stored objects they replace or delete. */
	for (size_t i = 0; i < in->nobjects; i++) {
		struct kb_meta *o = in->objects[i], *prev = kb_smap_get(state_ix, kb_scope_key(&s->a, o));

		o->named = true;
		if (o->kind == KB_KIND_BACKEND)
			set_add(&s->backends, ns_of(o), o->name);
		else if (kb_kind_is_route(o->kind) && !del)
			add_parents(s, (struct kb_route *)o);
		if (!prev)
			continue;
		prev->named = true;
		s->nnamed++;
		s->named_bytes += prev->src_len;
		kb_smap_put(&labels, kb_meta_label_in(&s->a, prev), &labels);
		if (kb_kind_is_route(prev->kind))
			add_parents(s, (struct kb_route *)prev);
	}
	for (size_t i = 0; i < state->nobjects; i++)
		state->objects[i]->skip_judge = !state->objects[i]->named;
	/* Routes that send to a named Backend, then every route that shares a Gateway with a judged one. */
	for (size_t i = 0; i < state->nroutes; i++) {
		struct kb_route *r = state->routes[i];

		if (r->meta.skip_judge && names_scoped_backend(s, r)) {
			judge(s, &r->meta);
			add_parents(s, r);
		}
	}
	do {
		grew = false;
		for (size_t i = 0; i < state->nroutes; i++) {
			struct kb_route *r = state->routes[i];

			if (r->meta.skip_judge && names_scoped_gateway(s, r)) {
				judge(s, &r->meta);
				add_parents(s, r);
				grew = true;
			}
		}
	} while (grew);
	for (size_t i = 0; i < state->ngateways; i++) {
		struct kb_gateway *g = state->gateways[i];

		if (set_has(&s->gateways, &s->a, ns_of(&g->meta), g->meta.name))
			judge(s, &g->meta);
	}
	/* A policy's verdict reads whether its targets exist. */
	for (size_t i = 0; i < state->nbtps; i++) {
		struct kb_btp *p = state->btps[i];

		for (size_t t = 0; t < p->ntargets && p->meta.skip_judge; t++) {
			const char *kind = p->targets[t].kind;

			if (kind && strcmp(kind, "Gateway") == 0 &&
			    set_has(&s->gateways, &s->a, ns_of(&p->meta), p->targets[t].name))
				judge(s, &p->meta);
			else if (kind && strcmp(kind, "Backend") == 0 &&
				 set_has(&s->backends, &s->a, ns_of(&p->meta), p->targets[t].name))
				judge(s, &p->meta);
			else if (kind && kb_kind_is_route(kb_kind_from_name(kind)))
				judge(s, &p->meta);	/* the route may be one the request names */
		}
	}
	s->njudged = s->nsaved;
	for (size_t i = 0; i < s->nsaved; i++)
		kb_smap_put(&labels, kb_meta_label_in(&s->a, s->saved[i].o), &labels);

	/* The next state: stored objects not named, in their order, then the request's. */
	kb_model_init(next);
	for (size_t i = 0; i < state->nobjects; i++)
		if (!state->objects[i]->named)
			kb_model_add_object(next, state->objects[i]);
	/* What was said about objects that are not judged again still holds; the rest is said again. */
	for (size_t i = 0; i < state->ndiags; i++) {
		const struct kb_diag *dg = &state->diags[i];

		if (dg->object && kb_smap_get(&labels, dg->object))
			continue;
		*KB_PUSH(&next->views, next->diags, next->ndiags) = *dg;
		next->nerrors += dg->sev == KB_SEV_ERROR;
	}
	s->njudged += in->nobjects;
	if (!del)
		kb_model_absorb(next, in);
}

void kb_scope_add_gateway(struct kb_scope *s, const char *ns_name)
{
	const char *slash = strchr(ns_name, '/');

	s->gateways.a = &s->a;
	if (slash) {
		kb_smap_put(&s->gateways, slash + 1, &s->gateways);
		kb_smap_put(&s->gateways, ns_name, &s->gateways);
	}
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

void kb_scope_clear_marks(struct kb_model *m)
{
	for (size_t i = 0; i < m->nobjects; i++)
		m->objects[i]->skip_judge = m->objects[i]->named = false;
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
