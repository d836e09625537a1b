// SPDX-License-Identifier: Apache-2.0
/*
 * The programmed table's index: each Gateway's frontends by position, and
 * the frontends that use DNS names. A scoped change recompiles a few
 * Gateways; their frontends keep their keys, so the new ones take the old
 * ones' places and the rest of the table is not read, copied or compared.
 * A DNS answer finds its frontends among the named ones only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change/state_index.h"
#include "change/table_index.h"

bool kb_fe_uses_names(const struct kb_cfrontend *fe)
{
	for (size_t e = 0; e < fe->neps; e++)
		if (fe->eps[e].fqdn)
			return true;
	for (size_t l = 0; l < fe->nlocs; l++)
		if (fe->locs[l].npending)
			return true;
	return false;
}

bool kb_fe_checks_health(const struct kb_cfrontend *fe)
{
	return fe->policy && (fe->policy->active.present || fe->policy->passive.present);
}

static void named_add(struct kb_table_ix *ix, size_t p)
{
	if (ix->where[p] >= 0)
		return;
	ix->where[p] = (long)ix->nnamed;
	ix->named[ix->nnamed++] = p;
}

static void named_del(struct kb_table_ix *ix, size_t p)
{
	long w = ix->where[p];

	if (w < 0)
		return;
	ix->named[w] = ix->named[--ix->nnamed];
	ix->where[ix->named[w]] = w;
	ix->where[p] = -1;
}

void kb_table_ix_free(struct kb_table_ix *ix)
{
	kb_arena_free(&ix->a);
	free(ix->named);
	free(ix->where);
	memset(ix, 0, sizeof(*ix));
}

void kb_table_ix_reset(struct kb_table_ix *ix)
{
	ix->ok = false;
}

static void build(struct kb_table_ix *ix, const struct kb_compiled *c)
{
	kb_table_ix_free(ix);
	ix->by_gw.a = &ix->a;
	ix->nwhere = c->nfes;
	ix->named = malloc((c->nfes + 1) * sizeof(*ix->named));
	ix->where = malloc((c->nfes + 1) * sizeof(*ix->where));
	if (!ix->named || !ix->where)
		abort();	/* as kb_alloc does: the daemon cannot run without memory */
	for (size_t i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];
		struct kb_plist *l;

		ix->where[i] = -1;
		if (kb_fe_uses_names(fe))
			named_add(ix, i);
		ix->nhealth += kb_fe_checks_health(fe);
		if (!fe->gateway)
			continue;
		l = kb_smap_get(&ix->by_gw, fe->gateway);
		if (!l)
			l = kb_smap_put(&ix->by_gw, fe->gateway, kb_alloc(&ix->a, sizeof(*l)));
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 8, *v = kb_alloc(&ix->a, cap * sizeof(*v));

			if (l->n)
				memcpy(v, l->v, l->n * sizeof(*v));
			l->v = v;
			l->cap = cap;
		}
		l->v[l->n++] = i;
	}
	ix->ok = true;
}

void kb_table_ix_ensure(struct kb_table_ix *ix, const struct kb_compiled *c)
{
	if (!ix->ok)
		build(ix, c);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

bool kb_table_ix_plan(struct kb_table_ix *ix, const struct kb_compiled *c, const char *const *gws, size_t ngw,
		      const struct kb_compiled *part, size_t *pos)
{
	size_t total = 0, *sorted;
	bool ok = true;

	kb_table_ix_ensure(ix, c);
	for (size_t g = 0; g < ngw; g++) {
		const struct kb_plist *l = kb_smap_get(&ix->by_gw, gws[g]);

		total += l ? l->n : 0;
	}
	if (total != part->nfes)
		return false;
	/* A Gateway has a few dozen listeners: its old frontends are searched in place. */
	for (size_t i = 0; i < part->nfes && ok; i++) {
		const struct kb_cfrontend *nf = &part->fes[i];
		const struct kb_plist *l = nf->gateway ? kb_smap_get(&ix->by_gw, nf->gateway) : NULL;

		ok = false;
		for (size_t k = 0; l && k < l->n && !ok; k++)
			if (!memcmp(&c->fes[l->v[k]].key, &nf->key, sizeof(nf->key))) {
				pos[i] = l->v[k];
				ok = true;
			}
	}
	/* As many new as old, each found, none twice: one for one. */
	sorted = ok ? malloc((part->nfes + 1) * sizeof(*sorted)) : NULL;
	if (!sorted)
		return false;
	memcpy(sorted, pos, part->nfes * sizeof(*sorted));
	qsort(sorted, part->nfes, sizeof(*sorted), cmp_size);
	for (size_t i = 1; i < part->nfes && ok; i++)
		ok = sorted[i] != sorted[i - 1];
	free(sorted);
	return ok;
}

/* A programmed frontend's key and place, sorted by key. */
struct keyed {
	struct kb_frontend_key key;
	size_t pos;
	bool taken;
};

static int keyed_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct kb_frontend_key));	/* the key comes first */
}

bool kb_table_ix_plan_at(const struct kb_compiled *c, const size_t *at, size_t nat, const struct kb_compiled *part,
			 size_t *pos)
{
	struct keyed *old = part->nfes == nat ? calloc(nat + 1, sizeof(*old)) : NULL;
	bool ok = old != NULL;

	for (size_t i = 0; i < nat && ok; i++) {
		old[i].key = c->fes[at[i]].key;
		old[i].pos = at[i];
	}
	if (ok)
		qsort(old, nat, sizeof(*old), keyed_cmp);
	for (size_t i = 1; i < nat && ok; i++)
		ok = keyed_cmp(&old[i], &old[i - 1]) != 0;
	/* As many new as old, each an old key, none twice: one for one. */
	for (size_t i = 0; i < nat && ok; i++) {
		struct keyed *k = bsearch(&part->fes[i].key, old, nat, sizeof(*old), keyed_cmp);

		ok = k && !k->taken;
		if (ok) {
			k->taken = true;
			pos[i] = k->pos;
		}
	}
	free(old);
	return ok;
}

void kb_table_ix_replace(struct kb_table_ix *ix, struct kb_compiled *c, const size_t *pos, struct kb_compiled *part,
			 struct kb_cfrontend *old)
{
	for (size_t i = 0; i < part->nfes; i++) {
		struct kb_cfrontend *fe = &c->fes[pos[i]];

		old[i] = *fe;
		ix->nhealth -= kb_fe_checks_health(fe);
		*fe = part->fes[i];
		ix->nhealth += kb_fe_checks_health(fe);
		if (kb_fe_uses_names(fe))
			named_add(ix, pos[i]);
		else
			named_del(ix, pos[i]);
	}
	kb_arena_absorb(&c->arena, &part->arena);
	kb_compiled_free(part);
}

/* ---- verify ---- */

/* Two position lists hold the same positions (sorted copies compared). */
static bool same_positions(const size_t *a, size_t na, const size_t *b, size_t nb)
{
	size_t *x, *y;
	bool same;

	if (na != nb)
		return false;
	x = malloc((na + 1) * sizeof(*x));
	y = malloc((nb + 1) * sizeof(*y));
	if (!x || !y) {
		free(x);
		free(y);
		return false;
	}
	memcpy(x, a, na * sizeof(*x));
	memcpy(y, b, nb * sizeof(*y));
	qsort(x, na, sizeof(*x), cmp_size);
	qsort(y, nb, sizeof(*y), cmp_size);
	same = !memcmp(x, y, na * sizeof(*x));
	free(x);
	free(y);
	return same;
}

size_t kb_table_ix_check(struct kb_table_ix *ix, const struct kb_compiled *c, void (*diff)(void *ctx, const char *line),
			 void *ctx)
{
	struct kb_ix_check k = { .diff = diff, .ctx = ctx };
	struct kb_table_ix want = { 0 };

	if (!ix->ok)
		return 0;	/* rebuilt before the next scoped use */
	build(&want, c);
	if (ix->nwhere != c->nfes)
		kb_ix_say(&k, "the table index covers %zu frontend(s), the table holds %zu", ix->nwhere, c->nfes);
	if (!same_positions(ix->named, ix->nnamed, want.named, want.nnamed))
		kb_ix_say(&k, "the table index lists %zu frontend(s) that use DNS names, a rebuild %zu", ix->nnamed, want.nnamed);
	for (size_t i = 0; i < ix->nnamed && i < ix->nwhere; i++)
		if (ix->named[i] >= ix->nwhere || ix->where[ix->named[i]] != (long)i)
			kb_ix_say(&k, "the table index's place of named frontend %zu is wrong", ix->named[i]);
	if (ix->nhealth != want.nhealth)
		kb_ix_say(&k, "the table index counts %zu frontend(s) with a health check, a rebuild %zu", ix->nhealth,
		    want.nhealth);
	for (int pass = 0; pass < 2; pass++) {
		const struct kb_smap *x = pass ? &want.by_gw : &ix->by_gw, *y = pass ? &ix->by_gw : &want.by_gw;

		for (size_t i = 0; i < x->cap; i++) {
			const struct kb_plist *lx = x->ents[i].key ? x->ents[i].val : NULL, *ly;

			if (!lx || !lx->n)
				continue;
			ly = kb_smap_get(y, x->ents[i].key);
			if (!ly || !same_positions(lx->v, lx->n, ly->v, ly->n))
				kb_ix_say(&k, "the table index places Gateway %s's frontends elsewhere than a rebuild", x->ents[i].key);
		}
	}
	kb_table_ix_free(&want);
	return k.n;
}
