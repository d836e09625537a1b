// SPDX-License-Identifier: Apache-2.0
/* The programmed table after a change: DNS- and health-driven recompiles, and what follows the table (names, health). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "change/apply_scope.h"
#include "change/change_int.h"
#include "daemon/daemon_int.h"

static void add_name(struct kb_arena *a, struct kb_smap *seen, struct kb_resolver_name **names, size_t *n,
		     const char *host, const struct kb_btp *p)
{
	struct kb_resolver_name *rn;

	if (kb_smap_get(seen, host))
		return;
	kb_smap_put(seen, host, seen);
	rn = KB_PUSH(a, *names, *n);
	rn->host = host;
	rn->family = KB_LOOKUP_V4_PREFERRED;
	if (p && p->lookup_family)
		kb_lookup_family_parse(p->lookup_family, &rn->family);
	rn->refresh_ms = p && p->dns_refresh_ms > 0 ? p->dns_refresh_ms : 0;
	rn->respect_ttl = !p || p->respect_dns_ttl != 0;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Tell the resolver which names the programmed frontends need, with the DNS
 * settings of the BackendTrafficPolicy that applies to each (the first
 * frontend's, in table order). New names are asked at once; their answers
 * arrive as a `changed` and a recompile. Only the frontends that use names
 * are read (the table index lists them).
 */
void kb_daemon_update_names(struct daemon *d)
{
	struct kb_resolver_name *names = NULL;
	struct kb_arena a = { 0 };
	struct kb_smap seen = { .a = &a };
	size_t n = 0, *pos;

	kb_table_ix_ensure(&d->tix, &d->compiled);
	pos = kb_alloc(&a, (d->tix.nnamed + 1) * sizeof(*pos));
	memcpy(pos, d->tix.named, d->tix.nnamed * sizeof(*pos));
	qsort(pos, d->tix.nnamed, sizeof(*pos), cmp_size);
	for (size_t i = 0; i < d->tix.nnamed; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[pos[i]];

		for (size_t e = 0; e < fe->neps; e++)
			if (fe->eps[e].fqdn)
				add_name(&a, &seen, &names, &n, fe->eps[e].fqdn, fe->policy);
		for (size_t l = 0; l < fe->nlocs; l++)
			for (size_t p = 0; p < fe->locs[l].npending; p++)
				add_name(&a, &seen, &names, &n, fe->locs[l].pending[p], fe->policy);
	}
	if (kb_resolver_set_names(d->resolver, names, n))
		kb_err("failed to update the resolver's names: out of memory");
	kb_arena_free(&a);
}

/* Does fe ask for `host`, as an endpoint or as a name still pending? */
static bool fe_asks(const struct kb_cfrontend *fe, const char *host)
{
	for (size_t e = 0; e < fe->neps; e++)
		if (fe->eps[e].fqdn && strcmp(fe->eps[e].fqdn, host) == 0)
			return true;
	for (size_t l = 0; l < fe->nlocs; l++)
		for (size_t p = 0; p < fe->locs[l].npending; p++)
			if (strcmp(fe->locs[l].pending[p], host) == 0)
				return true;
	return false;
}

/* Does b ask the resolver for every name a asks for, with the same settings? */
static bool asks_all_of(const struct kb_cfrontend *a, const struct kb_cfrontend *b)
{
	if (a->policy != b->policy)
		return false;
	for (size_t e = 0; e < a->neps; e++)
		if (a->eps[e].fqdn && !fe_asks(b, a->eps[e].fqdn))
			return false;
	for (size_t l = 0; l < a->nlocs; l++)
		for (size_t p = 0; p < a->locs[l].npending; p++)
			if (!fe_asks(b, a->locs[l].pending[p]))
				return false;
	return true;
}

void kb_daemon_table_changed(struct daemon *d, const struct kb_cfrontend *old, const struct kb_cfrontend *now,
			     size_t n, bool whole)
{
	bool names = whole;

	kb_daemon_reads_changed(d);
	if (whole)
		kb_table_ix_reset(&d->tix);
	/*
	 * The resolver's list changes only when a replaced frontend used a name,
	 * or its successor does, and they do not ask for the same names (a DNS
	 * answer moves addresses, not names: the list is not rebuilt for it).
	 */
	for (size_t i = 0; i < n && !names; i++)
		names = (kb_fe_uses_names(&old[i]) || kb_fe_uses_names(&now[i])) &&
			!(asks_all_of(&old[i], &now[i]) && asks_all_of(&now[i], &old[i]));
	if (names)
		kb_daemon_update_names(d);
	if (whole || kb_health_update(d->health, old, now, n))
		kb_health_sync(d->health, &d->compiled);
}

/*
 * Program a recompiled table c (consumed) in place of d->compiled, or keep
 * the current one and say why. A scoped table shares the old one's memory:
 * it takes it over on success (kb_scope_adopt_compiled).
 */
static bool swap_table(struct daemon *d, struct kb_compiled *c, bool scoped, const char *what)
{
	char why[512];
	int err;

	if (d->dp->ops->fits && d->dp->ops->fits(d->dp, c, why, sizeof(why))) {
		kb_err("failed to program %s: %s; keeping the current selection", what, why);
		kb_compiled_free(c);
		return false;
	}
	err = d->dp->ops->apply(d->dp, c);
	if (err) {
		kb_err("failed to program %s: %s; keeping the current selection", what, strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		kb_compiled_free(c);
		return false;
	}
	if (scoped)
		kb_scope_adopt_compiled(c, &d->compiled);
	else
		kb_compiled_free(&d->compiled);
	d->compiled = *c;
	memset(c, 0, sizeof(*c));
	kb_daemon_table_changed(d, NULL, NULL, 0, true);
	return true;
}

void kb_daemon_recompile(struct daemon *d)
{
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled c = { 0 };

	if (d->nunaccounted) {
		/* Degraded: the stored state does not hold what the pins serve, so it is not programmed over them. */
		kb_log_debug("a DNS or health change while the state is not restored: the pinned tables stay");
		return;
	}
	if (kb_compile(&d->state, &env, &c)) {
		kb_err("failed to recompile after a DNS or health change; keeping the current selection");
		kb_compiled_free(&c);
		return;
	}
	if (swap_table(d, &c, false, "a DNS or health change"))
		kb_log_debug("recompiled after a DNS or health change: %zu frontend(s)", d->compiled.nfes);
}

/*
 * Only some frontends of the scoped Gateways, compiled again: those at
 * positions at[0..nat) in the table (a DNS answer's), or all of theirs (NULL).
 */
struct recompile_only {
	const size_t *at;
	size_t nat;
};

/*
 * Program part (the scoped Gateways' frontends, or only->at's, consumed) in
 * place of their old selves when they keep their keys: only they are
 * compared and written. 1: done; 0: not possible (a key came or went, or the
 * dataplane cannot), part untouched; -1: refused or failed, logged, part freed.
 */
static int program_in_place(struct daemon *d, struct kb_scope *scope, const struct recompile_only *only,
			    struct kb_compiled *part, const char *what)
{
	size_t *pos = kb_alloc(&scope->a, (part->nfes + 1) * sizeof(*pos)), n;
	struct kb_cfrontend *old, *now;
	char why[512];
	int err;

	if (!d->dp->ops->update ||
	    !(only ? kb_table_ix_plan_at(&d->compiled, only->at, only->nat, part, pos)
		   : kb_table_ix_plan(&d->tix, &d->compiled, scope->gwkeys, scope->ngw, part, pos)))
		return 0;
	if (d->dp->ops->fits_update && d->dp->ops->fits_update(d->dp, part->fes, part->nfes, why, sizeof(why))) {
		kb_err("failed to program %s: %s; keeping the current selection", what, why);
		kb_compiled_free(part);
		return -1;
	}
	err = d->dp->ops->update(d->dp, part->fes, part->nfes);
	if (err == -ENOENT)
		return 0;
	if (err) {
		kb_err("failed to program %s: %s; keeping the current selection", what, strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		kb_compiled_free(part);
		return -1;
	}
	old = kb_alloc(&scope->a, (part->nfes + 1) * sizeof(*old));
	n = part->nfes;
	kb_table_ix_replace(&d->tix, &d->compiled, pos, part, old);
	now = kb_alloc(&scope->a, (n + 1) * sizeof(*now));
	for (size_t i = 0; i < n; i++)
		now[i] = d->compiled.fes[pos[i]];
	kb_daemon_table_changed(d, old, now, n, false);
	return 1;
}

/*
 * Recompile only the Gateways in scope (or only->at's frontends of them),
 * from a model of what they read (kb_scope_compile_model), and program their
 * frontends; the rest of the table is kept and not read. 1: done (or
 * refused, logged); 0: only->at's frontends could not be replaced in place
 * (nothing changed): the caller recompiles their Gateways whole.
 */
static int recompile_scoped(struct daemon *d, struct kb_scope *scope, const struct recompile_only *only,
			    const char *what)
{
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled part = { 0 }, c = { 0 };
	struct kb_frontend_key *keys = NULL;
	uint16_t *ports = NULL;
	long long t0 = kb_now_us();
	struct kb_model sm;
	size_t replaced, nfes;
	int done, err;

	if (only) {
		keys = kb_alloc(&scope->a, (only->nat + 1) * sizeof(*keys));
		ports = kb_alloc(&scope->a, (only->nat + 1) * sizeof(*ports));
		for (size_t i = 0; i < only->nat; i++) {
			keys[i] = d->compiled.fes[only->at[i]].key;
			ports[i] = d->compiled.fes[only->at[i]].port;
		}
	}
	kb_state_ix_ensure(&d->six, &d->state);
	kb_scope_compile_model(scope, &d->six, &d->state, ports, only ? only->nat : 0, &sm);
	if (only) {
		/* Into the table's own arena: what one answer recompiles does not hold a chunk of its own. */
		err = kb_compile_frontends(&sm, &env, &scope->gateways, keys, only->nat, &d->compiled.arena, &part);
	} else {
		err = kb_compile_gateways(&sm, &env, &scope->gateways, &part);
	}
	if (err) {
		kb_err("failed to recompile after %s; keeping the current selection", what);
		kb_compiled_free(&part);
		kb_scope_clear_marks(scope);
		kb_model_free(&sm);
		return 1;
	}
	/* A compile's warnings (listeners that lost a frontend key) are said about no object: they join the state's. */
	kb_state_ix_add_global(&d->six, &d->state, sm.diags, sm.ndiags);
	kb_scope_clear_marks(scope);
	kb_model_take_objects(&d->state, &sm);
	nfes = part.nfes;
	d->garbage += 1024 * nfes;
	done = program_in_place(d, scope, only, &part, what);
	if (done < 0)
		return 1;
	if (!done && only) {
		kb_compiled_free(&part);
		return 0;
	}
	if (done) {
		replaced = nfes;
	} else {
		replaced = kb_scope_merge(scope, &d->compiled, &part, &c);
		if (!swap_table(d, &c, true, what))
			return 1;
	}
	d->changes_scoped++;
	kb_log_debug("recompiled %zu Gateway(s), %zu frontend(s) after %s, in %.2f ms", scope->ngw, replaced, what,
		     (kb_now_us() - t0) / 1e3);
	return 1;
}

/*
 * Put the Gateway of every frontend among fes[pos[0..n)] for which uses()
 * holds in scope; with `at`, also list every such frontend's position
 * there (room for n; *nat counts them).
 */
static void scope_frontends(struct daemon *d, struct kb_scope *scope, const size_t *pos, size_t n,
			    bool (*uses)(struct daemon *d, const struct kb_cfrontend *fe, void *ctx), void *ctx,
			    size_t *at, size_t *nat)
{
	for (size_t i = 0; i < n; i++) {
		size_t p = pos ? pos[i] : i;
		const struct kb_cfrontend *fe = &d->compiled.fes[p];
		bool known = fe->gateway && kb_smap_get(&scope->gateways, fe->gateway);

		if (!fe->gateway || (known && !at) || !uses(d, fe, ctx))
			continue;
		if (at)
			at[(*nat)++] = p;
		if (!known)
			kb_scope_add_gateway(scope, fe->gateway);
	}
}

/* Does fe use one of the names in *ctx, as an endpoint or as a name still pending? */
static bool uses_name(struct daemon *d, const struct kb_cfrontend *fe, void *ctx)
{
	const struct kb_smap *names = ctx;

	(void)d;
	for (size_t e = 0; e < fe->neps; e++)
		if (fe->eps[e].fqdn && kb_smap_get(names, fe->eps[e].fqdn))
			return true;
	for (size_t l = 0; l < fe->nlocs; l++)
		for (size_t p = 0; p < fe->locs[l].npending; p++)
			if (kb_smap_get(names, fe->locs[l].pending[p]))
				return true;
	return false;
}

/* Is the health of one of fe's endpoints no longer the one fe was compiled with? */
static bool health_moved(struct daemon *d, const struct kb_cfrontend *fe, void *ctx)
{
	(void)ctx;
	for (size_t e = 0; e < fe->neps; e++)
		if (kb_health_healthy(d->health, fe, &fe->eps[e]) != fe->eps[e].healthy)
			return true;
	return false;
}

/*
 * The DNS answers of `hosts` changed: recompile the frontends that use one of
 * them (found among the named ones), not their Gateways' others. Should they
 * not keep their keys, their Gateways are recompiled whole.
 */
static void recompile_names(struct daemon *d, const char *const *hosts, size_t n)
{
	struct kb_scope scope = { 0 };
	struct kb_smap names = { .a = &scope.a };
	struct recompile_only only = { 0 };
	size_t *at;
	char what[64];

	for (size_t i = 0; i < n; i++)
		kb_smap_put(&names, hosts[i], &names);
	kb_table_ix_ensure(&d->tix, &d->compiled);
	at = kb_alloc(&scope.a, (d->tix.nnamed + 1) * sizeof(*at));
	scope_frontends(d, &scope, d->tix.named, d->tix.nnamed, uses_name, &names, at, &only.nat);
	only.at = at;
	snprintf(what, sizeof(what), "%zu DNS name(s) changed", n);
	if (scope.ngw && !recompile_scoped(d, &scope, &only, what)) {
		struct kb_scope whole = { 0 };

		scope_frontends(d, &whole, d->tix.named, d->tix.nnamed, uses_name, &names, NULL, NULL);
		recompile_scoped(d, &whole, NULL, what);
		kb_scope_free(&whole);
	}
	kb_scope_free(&scope);
}

/* Endpoint health changed: recompile the Gateways with an endpoint whose health moved. */
void kb_daemon_health_changed(struct daemon *d)
{
	struct kb_scope scope = { 0 };

	if (d->nunaccounted)
		return;	/* degraded: the stored state is not programmed over the pins */
	scope_frontends(d, &scope, NULL, d->compiled.nfes, health_moved, NULL, NULL, NULL);
	if (scope.ngw)
		recompile_scoped(d, &scope, NULL, "a health change");
	kb_scope_free(&scope);
}

void kb_daemon_dns_changed(struct daemon *d)
{
	const char *const *hosts;
	bool all;
	size_t n = kb_resolver_take_changed(d->resolver, &hosts, &all);

	if (all || d->nunaccounted)
		kb_daemon_recompile(d);
	else if (n)
		recompile_names(d, hosts, n);
}

/* ---- DNS ------------------------------------------------------------------------ */

static void on_resolver(void *ctx, int fd, uint32_t events)
{
	struct daemon *d = ctx;

	kb_resolver_process(d->resolver);
}

static int dns_due(void *ctx)
{
	struct daemon *d = ctx;

	return kb_resolver_timeout_ms(d->resolver);
}

static void dns_tick(void *ctx)
{
	struct daemon *d = ctx;

	kb_resolver_tick(d->resolver);
	if (d->restore_deadline) {
		/* A restart programs once DNS has answered everything, or once the wait is over. */
		if (kb_resolver_busy(d->resolver) == 0 || kb_now_ms() > d->restore_deadline) {
			const char *const *hosts;
			bool all;

			d->restore_deadline = 0;
			kb_resolver_take_changed(d->resolver, &hosts, &all);
			kb_daemon_recompile(d);
		}
	} else {
		kb_daemon_dns_changed(d);
	}
}

int kb_daemon_dns_start(struct daemon *d)
{
	int err = kb_loop_add(d->loop, kb_resolver_epoll_fd(d->resolver), EPOLLIN, on_resolver, d);

	return err ?: kb_loop_add_timer(d->loop, dns_due, dns_tick, d);
}
