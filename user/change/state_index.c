// SPDX-License-Identifier: Apache-2.0
/*
 * The indexes over the daemon's stored state that a scoped change reads
 * instead of walking every object: objects by key, routes by the Gateways
 * they name and by the Backends they send to, each object's diagnostics,
 * and a few counts. Built once after the state was replaced whole, then
 * kept up to date by each change as it commits; `kbackend verify` compares
 * them with a rebuild.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change/state_index.h"
#include "validate/validate.h"

static const char *ns_of(const struct kb_meta *o)
{
	return o->namespace ? o->namespace : "default";
}

const char *kb_state_ix_key(struct kb_arena *a, const struct kb_meta *o)
{
	return kb_sprintf(a, "%s/%s/%s", kb_meta_kind(o), ns_of(o), o->name ? o->name : "");
}

/*
 * "a/b" or "a/b/c" into buf, or into t when it does not fit: the index is
 * built over every stored object after a whole change, and a printf per key
 * would cost more than the rest of the build.
 */
static const char *join(struct kb_arena *t, char *buf, size_t len, const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = c ? strlen(c) : 0, n = na + 1 + nb + (c ? 1 + nc : 0);
	char *p = n < len ? buf : kb_alloc(t, n + 1);

	memcpy(p, a, na);
	p[na] = '/';
	memcpy(p + na + 1, b, nb);
	if (c) {
		p[na + 1 + nb] = '/';
		memcpy(p + na + 2 + nb, c, nc);
	}
	p[n] = '\0';
	return p;
}

/* Room for n keys in an empty map, so that a build does not rehash as it grows. */
static void reserve(struct kb_smap *m, size_t n)
{
	size_t cap = 64;

	while (cap < 2 * (n + 1))
		cap *= 2;
	m->ents = kb_alloc(m->a, cap * sizeof(*m->ents));
	m->cap = cap;
}

/* ---- lists ---------------------------------------------------------------------- */

static void olist_add(struct kb_arena *a, struct kb_olist *l, struct kb_meta *o)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4;
		struct kb_meta **v = kb_alloc(a, cap * sizeof(*v));

		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = o;
}

static void olist_del(struct kb_olist *l, const struct kb_meta *o)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (l->v[i] == o) {
			l->v[i] = l->v[--l->n];
			return;
		}
}

static void plist_add(struct kb_arena *a, struct kb_plist *l, size_t p)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 2;
		size_t *v = kb_alloc(a, cap * sizeof(*v));

		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = p;
}

/* The list under key in m, made empty when absent and create is set. */
static void *list_at(struct kb_arena *a, struct kb_smap *m, const char *key, size_t size, bool create)
{
	void *l = kb_smap_get(m, key);

	if (!l && create) {
		l = kb_alloc(a, size);
		kb_smap_set(m, key, l);
	}
	return l;
}

/* ---- what a route names ------------------------------------------------------------ */

static const char *gw_key(struct kb_arena *a, char *buf, size_t len, const struct kb_route *r,
			  const struct kb_parent_ref *pr)
{
	return join(a, buf, len, pr->namespace ? pr->namespace : ns_of(&r->meta), pr->name, NULL);
}

static bool names_backend(const struct kb_backend_ref *ref)
{
	return ref->name && ref->kind && strcmp(ref->kind, "Backend") == 0;
}

static const char *be_key(struct kb_arena *a, char *buf, size_t len, const struct kb_route *r,
			  const struct kb_backend_ref *ref)
{
	return join(a, buf, len, ref->namespace ? ref->namespace : ns_of(&r->meta), ref->name, NULL);
}

const char *kb_state_ix_svc_key(struct kb_arena *a, enum kb_kind kind, const char *ns, const char *name)
{
	return kb_sprintf(a, "%s/%s/%s", kb_kind_name(kind), ns, name);
}

const char *kb_state_ix_ref_svc_key(struct kb_arena *a, const struct kb_route *r, const struct kb_backend_ref *ref)
{
	enum kb_ref_kind rk = kb_ref_kind(ref);

	if (!ref->name || (rk != KB_REF_SERVICE && rk != KB_REF_SERVICE_IMPORT))
		return NULL;
	return kb_state_ix_svc_key(a, rk == KB_REF_SERVICE ? KB_KIND_SERVICE : KB_KIND_SERVICE_IMPORT,
				   ref->namespace ? ref->namespace : ns_of(&r->meta), ref->name);
}

/* Add (add) or remove o in the list under key of m (a list names an object once: it was added last). */
static void link_under(struct kb_state_ix *ix, struct kb_smap *m, const char *key, struct kb_meta *o, bool add)
{
	struct kb_olist *l = list_at(&ix->a, m, key, sizeof(*l), add);

	if (add) {
		if (!l->n || l->v[l->n - 1] != o)
			olist_add(&ix->a, l, o);
	} else {
		olist_del(l, o);
	}
}

/* Add (add) or remove r under every Gateway and Backend it names. */
static void route_links(struct kb_state_ix *ix, struct kb_route *r, bool add)
{
	struct kb_arena *a = &ix->a, *t = &ix->tmp;
	char buf[256];

	for (size_t i = 0; i < r->nparents; i++) {
		const struct kb_parent_ref *pr = &r->parents[i];
		struct kb_olist *l;

		if (!pr->name || !kb_parent_names_gateway(pr))
			continue;
		l = list_at(a, &ix->gw_routes, gw_key(t, buf, sizeof(buf), r, pr), sizeof(*l), add);
		if (add) {
			/* Named twice by this route (two sections of one Gateway): listed once; it was added last. */
			if (!l->n || l->v[l->n - 1] != &r->meta)
				olist_add(a, l, &r->meta);
		} else {
			olist_del(l, &r->meta);
		}
	}
	for (size_t k = 0; k < r->nrules; k++)
		for (size_t x = 0; x < r->rules[k].nrefs; x++) {
			const struct kb_backend_ref *ref = &r->rules[k].refs[x];
			struct kb_olist *l;

			if (!names_backend(ref)) {
				const char *sk = kb_state_ix_ref_svc_key(t, r, ref);

				if (sk)
					link_under(ix, &ix->svc_routes, sk, &r->meta, add);
				continue;
			}
			l = list_at(a, &ix->be_routes, be_key(t, buf, sizeof(buf), r, ref), sizeof(*l), add);
			if (add) {
				if (!l->n || l->v[l->n - 1] != &r->meta)
					olist_add(a, l, &r->meta);
			} else {
				olist_del(l, &r->meta);
			}
		}
}

/* An object joins (add) or leaves the indexes and counts. */
static void object_links(struct kb_state_ix *ix, struct kb_meta *o, bool add)
{
	char buf[256];
	const char *key = join(&ix->tmp, buf, sizeof(buf), kb_meta_kind(o), ns_of(o), o->name ? o->name : "");

	if (ix->ok)
		kb_smap_set(&ix->objs, key, add ? o : NULL);
	else
		kb_smap_put(&ix->objs, key, o);	/* a build: every key is new (the state's are unique) */
	if (kb_kind_is_route(o->kind))
		route_links(ix, (struct kb_route *)o, add);
	if (o->kind == KB_KIND_ENDPOINT_SLICE && ((struct kb_endpoint_slice *)o)->service) {
		const struct kb_endpoint_slice *s = (const struct kb_endpoint_slice *)o;

		link_under(ix, &ix->svc_slices, kb_state_ix_svc_key(&ix->tmp, s->owner_kind, ns_of(o), s->service), o, add);
	}
	if (o->kind == KB_KIND_BACKEND && ((struct kb_backend *)o)->has_fallback_ref)
		add ? ix->nfallback++ : ix->nfallback--;
	if (o->kind == KB_KIND_BACKEND_TLS_POLICY)
		add ? ix->nbtls++ : ix->nbtls--;
	if (add)
		ix->bytes += o->src_len;
	else
		ix->bytes -= o->src_len;
}

static void diag_link(struct kb_state_ix *ix, const struct kb_model *state, size_t p)
{
	const struct kb_diag *dg = &state->diags[p];

	if (!dg->msg)
		return;	/* dead */
	if (dg->object)
		plist_add(&ix->a, list_at(&ix->a, &ix->diag_pos, dg->object, sizeof(struct kb_plist), true), p);
	else
		kb_smap_put(&ix->global, dg->msg, ix);
}

/* ---- build -------------------------------------------------------------------------- */

static void build(struct kb_state_ix *ix, struct kb_model *state)
{
	kb_state_ix_free(ix);
	ix->objs.a = ix->gw_routes.a = ix->be_routes.a = ix->diag_pos.a = ix->global.a = &ix->a;
	ix->svc_routes.a = ix->svc_slices.a = &ix->a;
	reserve(&ix->objs, state->nobjects);
	reserve(&ix->gw_routes, state->ngateways);
	reserve(&ix->be_routes, state->nbackends);
	for (size_t i = 0; i < state->nobjects; i++) {
		state->objects[i]->seq = i;
		object_links(ix, state->objects[i], true);
	}
	ix->next_seq = state->nobjects;
	for (size_t p = 0; p < state->ndiags; p++)
		diag_link(ix, state, p);
	kb_arena_reset(&ix->tmp);
	ix->ok = true;
}

void kb_state_ix_ensure(struct kb_state_ix *ix, struct kb_model *state)
{
	if (!ix->ok)
		build(ix, state);
}

void kb_state_ix_reset(struct kb_state_ix *ix)
{
	ix->ok = false;
}

void kb_state_ix_free(struct kb_state_ix *ix)
{
	kb_arena_free(&ix->a);
	kb_arena_free(&ix->tmp);
	memset(ix, 0, sizeof(*ix));
}

struct kb_meta *kb_state_ix_find(struct kb_state_ix *ix, struct kb_arena *tmp, const struct kb_meta *o)
{
	return kb_smap_get(&ix->objs, kb_state_ix_key(tmp, o));
}

const struct kb_olist *kb_state_ix_gw_routes(struct kb_state_ix *ix, struct kb_arena *tmp, const char *ns,
					    const char *name)
{
	return name ? kb_smap_get(&ix->gw_routes, kb_sprintf(tmp, "%s/%s", ns, name)) : NULL;
}

const struct kb_olist *kb_state_ix_be_routes(struct kb_state_ix *ix, struct kb_arena *tmp, const char *ns,
					    const char *name)
{
	return name ? kb_smap_get(&ix->be_routes, kb_sprintf(tmp, "%s/%s", ns, name)) : NULL;
}

const char *kb_state_ix_whole_reason(const struct kb_state_ix *ix)
{
	if (ix->nfallback)
		return "a Backend fallback reference";
	if (ix->nbtls)
		return "a BackendTLSPolicy";
	return NULL;
}

/* ---- commit --------------------------------------------------------------------------- */

/* Position of o in arr[0..n), which is in increasing seq: a binary search. */
static size_t pos_of(void *arr, size_t n, const struct kb_meta *o)
{
	struct kb_meta **v = arr;
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (v[mid]->seq < o->seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo] == o ? lo : n;
}

/* Remove o from one of state's arrays: the rest keep their order. */
static void array_del(void *arr, size_t *n, const struct kb_meta *o)
{
	struct kb_meta **v = arr;
	size_t p = pos_of(arr, *n, o);

	if (p == *n)
		return;
	memmove(&v[p], &v[p + 1], (*n - p - 1) * sizeof(*v));
	(*n)--;
}

static void state_del(struct kb_model *m, struct kb_meta *o)
{
	array_del(m->objects, &m->nobjects, o);
	switch (o->kind) {
	case KB_KIND_BACKEND:
		array_del(m->backends, &m->nbackends, o);
		break;
	case KB_KIND_GATEWAY:
		array_del(m->gateways, &m->ngateways, o);
		break;
	case KB_KIND_HTTPROUTE:
	case KB_KIND_GRPCROUTE:
	case KB_KIND_TLSROUTE:
	case KB_KIND_TCPROUTE:
	case KB_KIND_UDPROUTE:
		array_del(m->routes, &m->nroutes, o);
		break;
	case KB_KIND_BACKEND_TRAFFIC_POLICY:
		array_del(m->btps, &m->nbtps, o);
		break;
	case KB_KIND_REFERENCE_GRANT:
		array_del(m->grants, &m->ngrants, o);
		break;
	case KB_KIND_ENVOY_GATEWAY:
		array_del(m->envoy_gateways, &m->nenvoy_gateways, o);
		break;
	case KB_KIND_NAMESPACE:
		array_del(m->namespaces, &m->nnamespaces, o);
		break;
	case KB_KIND_SERVICE:
	case KB_KIND_SERVICE_IMPORT:
		array_del(m->services, &m->nservices, o);
		break;
	case KB_KIND_ENDPOINT_SLICE:
		array_del(m->slices, &m->nslices, o);
		break;
	default:
		array_del(m->others, &m->nothers, o);
		break;
	}
}

/* What was said about o no longer holds: its diagnostics die in place (msg NULL) until a compaction. */
static void kill_diags(struct kb_state_ix *ix, struct kb_model *state, const struct kb_meta *o)
{
	struct kb_plist *l = kb_smap_get(&ix->diag_pos, kb_meta_label_in(&ix->tmp, o));

	for (size_t i = 0; l && i < l->n; i++) {
		state->diags[l->v[i]].msg = NULL;
		state->diags[l->v[i]].object = NULL;
		if (state->diags[l->v[i]].sev == KB_SEV_ERROR)
			state->nerrors--;
		ix->ndead++;
	}
	if (l)
		l->n = 0;
}

/* Dead diagnostics outweigh the live ones: drop them, and point the index at the new places. */
static void compact_diags(struct kb_state_ix *ix, struct kb_model *state)
{
	size_t n = 0;

	for (size_t p = 0; p < state->ndiags; p++)
		if (state->diags[p].msg)
			state->diags[n++] = state->diags[p];
	state->ndiags = n;
	ix->ndead = 0;
	for (size_t i = 0; i < ix->diag_pos.cap; i++)
		if (ix->diag_pos.ents[i].key && ix->diag_pos.ents[i].val)
			((struct kb_plist *)ix->diag_pos.ents[i].val)->n = 0;
	for (size_t p = 0; p < n; p++)
		if (state->diags[p].object)
			diag_link(ix, state, p);
}

void kb_state_ix_compact(struct kb_state_ix *ix, struct kb_model *state)
{
	if (ix->ok && ix->ndead)
		compact_diags(ix, state);
}

static void push_diag(struct kb_state_ix *ix, struct kb_model *state, const struct kb_diag *dg)
{
	*KB_PUSH(&state->views, state->diags, state->ndiags) = *dg;
	state->nerrors += dg->sev == KB_SEV_ERROR;
	diag_link(ix, state, state->ndiags - 1);
}

void kb_state_ix_add_global(struct kb_state_ix *ix, struct kb_model *state, const struct kb_diag *diags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!diags[i].object && diags[i].msg && !kb_smap_get(&ix->global, diags[i].msg))
			push_diag(ix, state, &diags[i]);
}

void kb_state_ix_commit(struct kb_state_ix *ix, struct kb_model *state, struct kb_meta *const *gone, size_t ngone,
			struct kb_meta *const *judged, size_t njudged, struct kb_meta *const *added, size_t nadded,
			const struct kb_diag *diags, size_t ndiags)
{
	for (size_t i = 0; i < ngone; i++) {
		kill_diags(ix, state, gone[i]);
		object_links(ix, gone[i], false);
		state_del(state, gone[i]);
	}
	for (size_t i = 0; i < njudged; i++)
		kill_diags(ix, state, judged[i]);
	for (size_t i = 0; i < nadded; i++) {
		added[i]->seq = ix->next_seq++;
		kb_model_add_object(state, added[i]);
		object_links(ix, added[i], true);
	}
	for (size_t i = 0; i < ndiags; i++)
		if (diags[i].object)
			push_diag(ix, state, &diags[i]);
	kb_state_ix_add_global(ix, state, diags, ndiags);
	if (ix->ndead > 1024 && ix->ndead > state->ndiags / 2)
		compact_diags(ix, state);
	kb_arena_reset(&ix->tmp);
}

/* ---- verify ---------------------------------------------------------------------------- */

void kb_ix_say(struct kb_ix_check *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (c->n++ >= 20)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->diff(c->ctx, line);
}

/* Every list of have equals, as a set, the list of the same key in want (a rebuild), and no other key has one. */
static void compare_lists(struct kb_ix_check *c, const char *items, const char *what, const struct kb_smap *have,
			  const struct kb_smap *want)
{
	for (int pass = 0; pass < 2; pass++) {
		const struct kb_smap *x = pass ? want : have, *y = pass ? have : want;

		for (size_t i = 0; i < x->cap; i++) {
			const struct kb_olist *lx = x->ents[i].key ? x->ents[i].val : NULL, *ly;
			size_t nx = lx ? lx->n : 0, ny, found = 0;

			if (!nx)
				continue;
			ly = kb_smap_get(y, x->ents[i].key);
			ny = ly ? ly->n : 0;
			if (pass && ny)
				continue;	/* compared in the first pass */
			for (size_t k = 0; k < nx; k++)
				for (size_t j = 0; j < ny; j++)
					found += lx->v[k] == ly->v[j];
			if (found != nx || nx != ny)
				kb_ix_say(c, "the index of %s by %s under %s holds %zu, a rebuild %zu (%zu in common)",
				    items, what, x->ents[i].key, pass ? ny : nx, pass ? nx : ny, found);
		}
	}
}

size_t kb_state_ix_check(struct kb_state_ix *ix, struct kb_model *state, void (*diff)(void *ctx, const char *line),
			 void *ctx)
{
	struct kb_ix_check c = { .diff = diff, .ctx = ctx };
	struct kb_state_ix want = { 0 };
	struct kb_arena tmp = { 0 };
	unsigned long seq[1] = { 0 };
	size_t live = 0;

	if (!ix->ok)
		return 0;	/* rebuilt before the next change: nothing kept to compare */
	for (size_t i = 0; i < state->nobjects; i++) {
		if (i && state->objects[i]->seq <= seq[0])
			kb_ix_say(&c, "the state's objects are out of arrival order at %zu", i);
		seq[0] = state->objects[i]->seq;
		if (kb_smap_get(&ix->objs, kb_state_ix_key(&tmp, state->objects[i])) != state->objects[i])
			kb_ix_say(&c, "the state index does not lead to %s", kb_meta_label_in(&tmp, state->objects[i]));
	}
	for (size_t i = 0; i < ix->objs.cap; i++)
		live += ix->objs.ents[i].key && ix->objs.ents[i].val;
	if (live != state->nobjects)
		kb_ix_say(&c, "the state index holds %zu object(s), the state %zu", live, state->nobjects);
	if (ix->next_seq <= seq[0] && state->nobjects)
		kb_ix_say(&c, "the next arrival number %lu is not past the last object's %lu", ix->next_seq, seq[0]);

	/* The rest against a rebuild, which renumbers: keep the numbers. */
	{
		unsigned long *keep = malloc((state->nobjects + 1) * sizeof(*keep));

		if (!keep) {
			kb_ix_say(&c, "the state index could not be checked: out of memory");
			return c.n;
		}
		for (size_t i = 0; i < state->nobjects; i++)
			keep[i] = state->objects[i]->seq;
		build(&want, state);
		for (size_t i = 0; i < state->nobjects; i++)
			state->objects[i]->seq = keep[i];
		free(keep);
	}
	compare_lists(&c, "routes", "Gateway", &ix->gw_routes, &want.gw_routes);
	compare_lists(&c, "routes", "Backend", &ix->be_routes, &want.be_routes);
	compare_lists(&c, "routes", "Service", &ix->svc_routes, &want.svc_routes);
	compare_lists(&c, "EndpointSlices", "Service", &ix->svc_slices, &want.svc_slices);
	if (ix->nfallback != want.nfallback || ix->nbtls != want.nbtls || ix->bytes != want.bytes)
		kb_ix_say(&c, "the state index counts %zu fallback Backend(s), %zu BackendTLSPolicy(ies), %zu byte(s); a rebuild "
			"%zu, %zu, %zu", ix->nfallback, ix->nbtls, ix->bytes, want.nfallback, want.nbtls, want.bytes);
	for (size_t i = 0; i < want.diag_pos.cap; i++) {
		const struct kb_plist *w = want.diag_pos.ents[i].key ? want.diag_pos.ents[i].val : NULL, *h;
		size_t found = 0;

		if (!w || !w->n)
			continue;
		h = kb_smap_get(&ix->diag_pos, want.diag_pos.ents[i].key);
		for (size_t k = 0; h && k < h->n; k++)
			for (size_t j = 0; j < w->n; j++)
				found += h->v[k] == w->v[j];
		if (!h || h->n != w->n || found != w->n)
			kb_ix_say(&c, "the index of diagnostics about %s holds %zu, a rebuild %zu", want.diag_pos.ents[i].key,
			    h ? h->n : 0, w->n);
	}
	for (size_t i = 0; i < ix->diag_pos.cap; i++) {
		const struct kb_plist *h = ix->diag_pos.ents[i].key ? ix->diag_pos.ents[i].val : NULL;

		if (h && h->n && !kb_smap_get(&want.diag_pos, ix->diag_pos.ents[i].key))
			kb_ix_say(&c, "the index holds %zu diagnostic(s) about %s, a rebuild none", h->n, ix->diag_pos.ents[i].key);
	}
	kb_state_ix_free(&want);
	kb_arena_free(&tmp);
	return c.n;
}
