// SPDX-License-Identifier: Apache-2.0
/* The daemon's change pipeline: apply, delete, replace and DNS-driven recompiles, each all or nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "daemon/daemon_int.h"
#include "manifest/manifest.h"
#include "render/render.h"
#include "store/store.h"
#include "change/apply_each.h"
#include "change/apply_same.h"
#include "change/apply_scope.h"

static size_t env_resolve(void *ctx, const char *host, __u8 *family, __u32 (*ip)[4], size_t max)
{
	struct daemon *d = ctx;

	return kb_resolver_lookup(d->resolver, host, family, ip, max);
}

static bool env_healthy(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	struct daemon *d = ctx;

	return kb_health_healthy(d->health, fe, ep);
}

void kb_daemon_read_node_addrs(struct daemon *d)
{
	struct ifaddrs *ifa;
	size_t n = 0;

	/*
	 * DESIGN section 2: an endpoint (or an FQDN answer) that is one of the
	 * node's own addresses is refused unless --allow-endpoint names it, so a
	 * Backend cannot be aimed at the node's own services. Interfaces change,
	 * so this is read again before every validation.
	 */
	kb_arena_free(&d->node_arena);
	d->policy.node_addrs = d->node_addrs;
	d->policy.nnode_addrs = 0;
	if (getifaddrs(&ifa)) {
		kb_err("failed to read the node's addresses: %s; the node-address guard is off", strerror(errno));
		return;
	}
	for (struct ifaddrs *i = ifa; i && n < MAX_NODE_ADDRS; i = i->ifa_next) {
		char buf[INET6_ADDRSTRLEN];
		const void *a;

		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			a = &((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6)
			a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		else
			continue;
		if (inet_ntop(i->ifa_addr->sa_family, a, buf, sizeof(buf)))
			d->node_addrs[n++] = kb_strdup(&d->node_arena, buf);
	}
	freeifaddrs(ifa);
	d->policy.nnode_addrs = n;
}

/* What every compile may ask of the world: the resolver's current answers and endpoint health. */
struct kb_compile_env kb_daemon_compile_env(struct daemon *d)
{
	return (struct kb_compile_env){
		.resolve = env_resolve,
		.healthy = env_healthy,
		.ctx = d,
		.cluster_domain = d->policy.cluster_domain,
		.clusterset_domain = d->policy.clusterset_domain,
		.bridge = d->bridge ? kb_bridge_listener : NULL,
		.bridge_ctx = d->bridge,
	};
}

static void add_name(struct kb_arena *a, struct kb_resolver_name **names, size_t *n, const char *host,
		     const struct kb_btp *p)
{
	struct kb_resolver_name *rn;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i].host, host) == 0)
			return;
	rn = KB_PUSH(a, *names, *n);
	rn->host = host;
	rn->family = KB_LOOKUP_V4_PREFERRED;
	if (p && p->lookup_family)
		kb_lookup_family_parse(p->lookup_family, &rn->family);
	rn->refresh_ms = p && p->dns_refresh_ms > 0 ? p->dns_refresh_ms : 0;
	rn->respect_ttl = !p || p->respect_dns_ttl != 0;
}

/*
 * Tell the resolver which names the programmed frontends need, with the DNS
 * settings of the BackendTrafficPolicy that applies to each. New names are
 * asked at once; their answers arrive as a `changed` and a recompile.
 */
void kb_daemon_update_names(struct daemon *d)
{
	struct kb_resolver_name *names = NULL;
	struct kb_arena a = { 0 };
	size_t n = 0;

	for (size_t i = 0; i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];

		for (size_t e = 0; e < fe->neps; e++)
			if (fe->eps[e].fqdn)
				add_name(&a, &names, &n, fe->eps[e].fqdn, fe->policy);
		for (size_t l = 0; l < fe->nlocs; l++)
			for (size_t p = 0; p < fe->locs[l].npending; p++)
				add_name(&a, &names, &n, fe->locs[l].pending[p], fe->policy);
	}
	if (kb_resolver_set_names(d->resolver, names, n))
		kb_err("failed to update the resolver's names: out of memory");
	kb_arena_free(&a);
}

/*
 * A DNS answer changed: recompile the stored state with the new answers and
 * swap. Unchanged frontends are not rewritten by the dataplane; a changed one
 * flips to its new selection in one map update.
 */
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
	kb_daemon_reads_changed(d);
	kb_daemon_update_names(d);
	kb_health_sync(d->health, &d->compiled);
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
 * Recompile only the Gateways in scope, merge their frontends into the
 * programmed table, and swap what changed. The rest of the table is kept.
 */
static void recompile_scoped(struct daemon *d, struct kb_scope *scope, size_t ngw, const char *what)
{
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled part = { 0 }, c = { 0 };
	long long t0 = kb_now_us();
	size_t replaced;

	if (kb_compile_gateways(&d->state, &env, &scope->gateways, &part)) {
		kb_err("failed to recompile after %s; keeping the current selection", what);
		kb_compiled_free(&part);
		return;
	}
	replaced = kb_scope_merge(scope, &d->compiled, &part, &c);
	if (!swap_table(d, &c, true, what))
		return;
	d->garbage += 1024 * replaced;
	d->changes_scoped++;
	kb_log_debug("recompiled %zu Gateway(s), %zu frontend(s) after %s, in %.1f ms", ngw, replaced, what,
		     (kb_now_us() - t0) / 1e3);
}

/* Put the Gateway of every frontend for which uses() holds in scope; how many Gateways that made. */
static size_t scope_frontends(struct daemon *d, struct kb_scope *scope,
			      bool (*uses)(struct daemon *d, const struct kb_cfrontend *fe, void *ctx), void *ctx)
{
	size_t ngw = 0;

	for (size_t i = 0; i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];

		if (fe->gateway && !kb_smap_get(&scope->gateways, fe->gateway) && uses(d, fe, ctx)) {
			kb_scope_add_gateway(scope, fe->gateway);
			ngw++;
		}
	}
	return ngw;
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

/* The DNS answers of `hosts` changed: recompile the Gateways whose frontends use one of them. */
static void recompile_names(struct daemon *d, const char *const *hosts, size_t n)
{
	struct kb_scope scope = { 0 };
	struct kb_smap names = { .a = &scope.a };
	size_t ngw;
	char what[64];

	for (size_t i = 0; i < n; i++)
		kb_smap_put(&names, hosts[i], &names);
	ngw = scope_frontends(d, &scope, uses_name, &names);
	snprintf(what, sizeof(what), "%zu DNS name(s) changed", n);
	if (ngw)
		recompile_scoped(d, &scope, ngw, what);
	kb_scope_free(&scope);
}

/* Endpoint health changed: recompile the Gateways with an endpoint whose health moved. */
void kb_daemon_health_changed(struct daemon *d)
{
	struct kb_scope scope = { 0 };
	size_t ngw;

	if (d->nunaccounted)
		return;	/* degraded: the stored state is not programmed over the pins */
	ngw = scope_frontends(d, &scope, health_moved, NULL);
	if (ngw)
		recompile_scoped(d, &scope, ngw, "a health change");
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

/* ---- applying changes ------------------------------------------------------ */

/*
 * Index m's objects by key (the first of equal ones wins), so that a change
 * of 20,000 objects against 20,000 stored ones stays linear. Reports objects
 * that one request defines twice when report is set: kubectl would silently
 * keep the last one.
 */
static void index_objects(struct kb_model *m, struct kb_smap *ix, bool report)
{
	for (size_t i = 0; i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];
		const struct kb_meta *first = kb_smap_put(ix, kb_scope_key(ix->a, o), (void *)o);

		if (report && first != o)
			kb_diag_add(m, KB_SEV_ERROR, o, "metadata.name", "defined twice in one apply (first at %s:%d)",
				    first->loc.file, first->loc.line);
	}
}

static const struct kb_meta *find_same(struct kb_smap *ix, const struct kb_meta *o)
{
	return kb_smap_get(ix, kb_scope_key(ix->a, o));
}

/* Replies name the request's objects and any refused one: a change of 10 objects among 20,000 stays small. */
static bool worth_reporting(const struct kb_meta *o, void *ctx)
{
	return !ctx || kb_object_refused(o) || find_same(ctx, o);
}

/* The same for a scoped change, whose marks say what the request named (no key built per stored object). */
static bool worth_reporting_scoped(const struct kb_meta *o, void *ctx)
{
	(void)ctx;
	return o->named || (!o->skip_judge && kb_object_refused(o));
}

/* Past this many objects a change's reply is brief (kb_render_objects_brief): 20,000 rows help nobody. */
#define KB_REPLY_ROWS 100

static struct json_object *change_reply(struct daemon *d, struct kb_model *m, struct kb_smap *ix,
					struct kb_compiled *c, bool ok, bool dry_run, const char *error, bool scoped)
{
	struct json_object *r = json_object_new_object(), *objs, *summary;

	json_object_object_add(r, "ok", json_object_new_boolean(ok));
	if (dry_run)
		json_object_object_add(r, "dryRun", json_object_new_boolean(1));
	if (error)
		json_object_object_add(r, "error", json_object_new_string(error));
	/* A large change lists only what is not plainly Accepted, and counts the rest (unless the request asked for all). */
	objs = kb_render_objects_brief(m, scoped ? worth_reporting_scoped : worth_reporting, scoped ? NULL : ix,
				       d->reply_all ? SIZE_MAX : KB_REPLY_ROWS, &summary);
	json_object_object_add(r, "objects", objs);
	if (summary)
		json_object_object_add(r, "summary", summary);
	json_object_object_add(r, "diagnostics", kb_render_diags(m));
	if (c)
		json_object_object_add(r, "frontends", kb_render_frontends(c));
	return r;
}

/* The stored object of o's key, through the state index (built on first use after the state was replaced whole). */
static struct kb_meta *stored(struct daemon *d, struct kb_arena *tmp, const struct kb_meta *o)
{
	kb_daemon_state_index(d, tmp);
	return kb_smap_get(&d->state_ix, kb_scope_key(tmp, o));
}

void kb_daemon_state_index(struct daemon *d, struct kb_arena *tmp)
{
	if (!d->state_ix_ok) {
		kb_arena_free(&d->state_ix_arena);
		d->state_ix = (struct kb_smap){ .a = &d->state_ix_arena };
		for (size_t i = 0; i < d->state.nobjects; i++)
			kb_smap_put(&d->state_ix, kb_scope_key(tmp, d->state.objects[i]), d->state.objects[i]);
		d->state_ix_ok = true;
	}
}

/*
 * Does the request hold exactly the last objects of the state, in their
 * order, each with the same text? Then applying it changes nothing: a
 * re-apply of the file that made the state costs its parsing only.
 */
static bool unchanged_tail(const struct daemon *d, const struct kb_model *in)
{
	size_t n = d->state.nobjects, k = in->nobjects;

	if (!k || k > n || d->nunaccounted || d->store_diverged)
		return false;
	for (size_t i = 0; i < k; i++) {
		const struct kb_meta *a = in->objects[i], *b = d->state.objects[n - k + i];

		if (a->kind != b->kind || !a->src || !b->src || a->src_len != b->src_len ||
		    strcmp(kb_meta_kind(a), kb_meta_kind(b)) != 0 || !kb_str_same(a->name, b->name) ||
		    strcmp(a->namespace ? a->namespace : "default", b->namespace ? b->namespace : "default") != 0 ||
		    memcmp(a->src, b->src, a->src_len) != 0)
			return false;
		/* A unix endpoint's verdict reads the file system (links under --unix-dir): judge it again. */
		if (a->kind == KB_KIND_BACKEND)
			for (size_t e = 0; e < ((const struct kb_backend *)a)->nendpoints; e++)
				if (((const struct kb_backend *)a)->endpoints[e].present & KB_EP_HAS_UNIX)
					return false;
	}
	return true;
}

/* A hash of the node's addresses: the SSRF guard judged every stored Backend against them. */
static unsigned long node_hash(const struct daemon *d)
{
	unsigned long h = 5381;

	for (size_t i = 0; i < d->policy.nnode_addrs; i++)
		for (const char *p = d->policy.node_addrs[i]; *p; p++)
			h = h * 33 + (unsigned char)*p;
	return h ^ d->policy.nnode_addrs;
}

void kb_daemon_state_reset(struct daemon *d)
{
	d->state_ix_ok = false;
	d->garbage = 0;
	d->node_hash = node_hash(d);
}

/*
 * Write the change to the store as the per-object difference between the
 * stored state and next: deletes of what went, puts of what is new or whose
 * text changed, touches (order only) of what the request named unchanged,
 * so that a restart rebuilds next in next's order. One commit: durable when
 * this returns 0. A store that holds objects the daemon refused at start is
 * rewritten whole.
 */
static int store_change(struct daemon *d, enum kb_change mode, struct kb_model *in, struct kb_model *next, size_t nreq)
{
	struct kb_arena a = { 0 };
	struct kb_smap named = { .a = &a };
	int err;

	/*
	 * A change about as large as the state (a first apply of 20,000 objects)
	 * would be logged and then compacted at once: the snapshot alone is the
	 * commit (temp file, fsync, rename), the state written once.
	 */
	if (!d->store_diverged && mode != KB_CHANGE_DELETE && nreq > 0) {
		uint64_t bytes = 0;

		for (size_t i = next->nobjects - nreq; i < next->nobjects; i++)
			bytes += next->objects[i]->src_len;
		if (kb_store_would_compact(&d->store, bytes))
			return kb_store_compact(&d->store, next);
	}
	if (d->store_diverged) {
		err = kb_store_compact(&d->store, next);
		if (!err)
			d->store_diverged = false;
		return err;
	}
	/* Only objects with their own text are stored (UTF-16 input has none): the store never hears of the others. */
	if (mode == KB_CHANGE_DELETE) {
		for (size_t i = 0; i < in->nobjects; i++) {
			const struct kb_meta *prev = stored(d, &a, in->objects[i]);

			if (prev && prev->src)
				kb_store_delete(&d->store, prev);
		}
	} else {
		if (mode == KB_CHANGE_REPLACE) {
			index_objects(next, &named, false);
			for (size_t i = 0; i < d->state.nobjects; i++)
				if (!find_same(&named, d->state.objects[i]) && d->state.objects[i]->src)
					kb_store_delete(&d->store, d->state.objects[i]);
		}
		for (size_t i = next->nobjects - nreq; i < next->nobjects; i++) {
			const struct kb_meta *o = next->objects[i], *prev = stored(d, &a, o);

			if (!o->src) {
				if (prev && prev->src)
					kb_store_delete(&d->store, prev);
			} else if (prev && prev->src && prev->src_len == o->src_len &&
				   !memcmp(prev->src, o->src, o->src_len)) {
				kb_store_touch(&d->store, o);
			} else {
				kb_store_put(&d->store, o);
			}
		}
	}
	err = kb_store_commit(&d->store);
	kb_arena_free(&a);
	return err;
}

static const char *const change_verb[] = { "apply", "delete", "replace" };
static const char *const change_done[] = { "applied", "deleted", "replaced" };

/*
 * Apply, delete or replace: build the new desired state and judge it, compile
 * it, and only then touch the kernel. Anything refused leaves the maps and
 * the stored state exactly as they were.
 *
 * Most changes are scoped (apply_scope.c): the stored objects stay parsed and
 * judged, only the request's objects and the stored ones that read them are
 * judged again, and only their Gateways' frontends are compiled again. A
 * change that can reach far (a Gateway, a policy, a ReferenceGrant...), a
 * replace, or new node addresses take the whole pipeline: every stored object
 * parsed again from its text, judged and compiled.
 */
struct json_object *kb_daemon_change(struct daemon *d, struct json_object *files, enum kb_change mode, bool dry_run,
				     bool each)
{
	bool del = mode == KB_CHANGE_DELETE, scoped = false;
	struct kb_model in, next;
	struct kb_compiled c = { 0 }, part = { 0 };
	struct kb_scope scope = { 0 };
	struct json_object *reply, *set_aside = NULL;
	double t0 = kb_now_us() / 1e3, t_parse = 0, t_validate = 0, t_compile = 0, t_program = 0, t_store = 0, t;
	size_t nreq, replaced = 0;
	struct kb_arena ixa = { 0 };
	struct kb_smap in_ix = { .a = &ixa };
	const char *whole_why;
	unsigned long nh;
	char why[2048];
	int refused, err;

	kb_model_init(&in);
	kb_model_init(&next);
	kb_daemon_read_node_addrs(d);
	nh = node_hash(d);
	/* Text equal to the stored objects' text: not even parsed (apply_same.c). */
	if (mode == KB_CHANGE_APPLY && !dry_run && nh == d->node_hash && !d->nunaccounted && !d->store_diverged &&
	    (nreq = kb_same_text_tail(&d->state, files)))
		goto unchanged;
	if (kb_change_load_files(&in, files)) {
		reply = kb_ctl_error("malformed request: files must be [{name, content}]");
		goto out;
	}
	index_objects(&in, &in_ix, true);
	each = each && mode == KB_CHANGE_REPLACE;	/* per-object acceptance: a source's whole state (kb_change_each) */
	if (in.nerrors && !each) {
		snprintf(why, sizeof(why), "%zu error(s) in the input; nothing was changed", in.nerrors);
		reply = change_reply(d, &in, NULL, NULL, false, false, why, false);
		goto out_count;
	}
	if (del) {
		for (size_t i = 0; i < in.nobjects; i++)
			if (!stored(d, &ixa, in.objects[i]))
				kb_diag_add(&in, KB_SEV_ERROR, in.objects[i], NULL, "not found: nothing to delete");
		if (in.nerrors) {
			reply = change_reply(d, &in, NULL, NULL, false, false, "delete refused; nothing was changed", false);
			goto out_count;
		}
	}
	nreq = in.nobjects;
	if (mode == KB_CHANGE_APPLY && !dry_run && nh == d->node_hash && unchanged_tail(d, &in)) {
		/* The same objects, the same text, in the order they are stored: the state would come out the same. */
		size_t n;
unchanged:
		n = d->state.nobjects;

		for (size_t i = n - nreq; i < n; i++)
			d->state.objects[i]->named = true;
		reply = change_reply(d, &d->state, NULL, NULL, true, false, NULL, true);
		kb_scope_clear_marks(&d->state);
		d->applies++;
		d->last_apply = time(NULL);
		d->last_error[0] = '\0';
		kb_log_info("applied: %zu object(s) in the request, %zu stored, unchanged%s: nothing judged, compiled or "
			    "programmed (%.1f ms)", nreq, n, in.nobjects ? "" : " text, not parsed", kb_now_us() / 1e3 - t0);
		goto out;
	}
	whole_why = kb_scope_full_reason(&d->state, &in, mode == KB_CHANGE_REPLACE, d->garbage);
	if (!whole_why && nh != d->node_hash)
		whole_why = "the node's addresses changed";
	if (!whole_why && (d->nunaccounted || d->store_diverged))
		whole_why = "the state is not restored";
	scoped = !whole_why;
	if (scoped) {
		kb_daemon_state_index(d, &ixa);	/* before the scope reads it */
		kb_scope_build(&scope, &d->state, &d->state_ix, &in, del, &next);
	} else {
		/* The next state: stored objects not named by the request (none for replace), then the request's. */
		for (size_t i = 0; mode != KB_CHANGE_REPLACE && i < d->state.nobjects; i++) {
			const struct kb_meta *o = d->state.objects[i];

			if (!find_same(&in_ix, o) && o->src)
				kb_manifest_load_buffer(&next, o->loc.file, o->src, o->src_len);
		}
		/* The request was parsed once, into `in`; its objects move over rather than being parsed again. */
		if (!del)
			kb_model_absorb(&next, &in);
	}
	t = kb_now_us() / 1e3;
	t_parse = t - t0;
	refused = kb_validate(&next, &d->policy);
	if ((refused || next.nerrors) && each) {
		int n;

		set_aside = json_object_new_array();
		n = kb_change_each(&next, files, &d->policy, set_aside);
		if (n >= 0) {
			refused = 0;
			nreq = next.nobjects;
		}
	}
	t_validate = kb_now_us() / 1e3 - t;
	if (refused || next.nerrors) {
		snprintf(why, sizeof(why), "%s refused: %d object(s) refused; nothing was changed",
			 change_verb[mode], refused);
		reply = change_reply(d, &next, &in_ix, NULL, false, false, why, scoped);
		goto out_count;
	}
	{
		struct kb_compile_env env = kb_daemon_compile_env(d);

		t = kb_now_us() / 1e3;
		if (scoped) {
			err = kb_compile_gateways(&next, &env, &scope.gateways, &part);
			if (!err)
				replaced = kb_scope_merge(&scope, &d->compiled, &part, &c);
		} else {
			err = kb_compile(&next, &env, &c);
		}
		t_compile = kb_now_us() / 1e3 - t;
	}
	if (err) {
		reply = change_reply(d, &next, &in_ix, NULL, false, false, "compile failed; nothing was changed", scoped);
		goto out_count;
	}
	/* A state that was not restored: a change may not silently unprogram what the pins still serve. */
	if (mode != KB_CHANGE_REPLACE && kb_daemon_would_drop(d, &c, change_verb[mode], why, sizeof(why))) {
		reply = change_reply(d, &next, &in_ix, NULL, false, dry_run, why, scoped);
		goto out_count;
	}
	/* The map sizes (--max-*), checked before anything is written: a set that does not fit changes nothing. */
	if (d->dp->ops->fits && d->dp->ops->fits(d->dp, &c, why, sizeof(why))) {
		size_t n = strlen(why);

		snprintf(why + n, sizeof(why) - n, "; %s refused, nothing was changed", change_verb[mode]);
		reply = change_reply(d, &next, &in_ix, NULL, false, dry_run, why, scoped);
		goto out_count;
	}
	if (dry_run) {
		reply = change_reply(d, &next, &in_ix, &c, true, true, NULL, scoped);
		goto out;
	}
	t = kb_now_us() / 1e3;
	err = d->dp->ops->apply(d->dp, &c);
	t_program = kb_now_us() / 1e3 - t;
	if (err) {
		snprintf(why, sizeof(why), "failed to program the maps: %s; the previous state is kept",
			 strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		reply = change_reply(d, &next, &in_ix, NULL, false, false, why, scoped);
		goto out_count;
	}
	t = kb_now_us() / 1e3;
	err = store_change(d, mode, &in, &next, del ? 0 : nreq);
	t_store = kb_now_us() / 1e3 - t;
	if (err) {
		snprintf(why, sizeof(why), "failed to save state in %s: %s; the previous state is restored",
			 d->state_dir, strerror(-err));
		d->dp->ops->apply(d->dp, &d->compiled);
		reply = change_reply(d, &next, &in_ix, NULL, false, false, why, scoped);
		goto out_count;
	}
	/* The reply is rendered before the marks that say what the request named are cleared. */
	reply = change_reply(d, &next, &in_ix, NULL, true, false, NULL, scoped);
	/* Commit: the new model and table replace the old ones. */
	if (scoped) {
		/* The index follows: the request's objects are in (delete) or the last nreq of next. */
		for (size_t i = 0; del && i < in.nobjects; i++)
			kb_smap_set(&d->state_ix, kb_scope_key(&ixa, in.objects[i]), NULL);
		for (size_t i = next.nobjects - nreq; !del && i < next.nobjects; i++)
			kb_smap_set(&d->state_ix, kb_scope_key(&ixa, next.objects[i]), next.objects[i]);
		kb_scope_clear_marks(&next);
		kb_scope_clear_marks(&in);
		kb_model_take_objects(&next, &d->state);
		kb_scope_adopt_compiled(&c, &d->compiled);
		/* Bytes left behind, roughly: the replaced objects parsed, statuses superseded, frontends replaced. */
		d->garbage += 6 * scope.named_bytes + 512 * scope.nsaved + 1024 * replaced;
		scope.nsaved = 0;	/* committed: nothing to put back */
		d->changes_scoped++;
	} else {
		kb_model_free(&d->state);
		kb_compiled_free(&d->compiled);
		d->changes_whole++;
	}
	d->state = next;
	d->compiled = c;
	if (!scoped)
		kb_daemon_state_reset(d);
	d->last_judged = scoped ? scope.njudged : next.nobjects;
	d->last_compiled = scoped ? part.nfes + replaced : c.nfes;
	d->last_whole_why = whole_why;
	kb_daemon_accounted(d);
	kb_model_init(&next);
	memset(&c, 0, sizeof(c));
	d->applies++;
	d->last_apply = time(NULL);
	d->last_error[0] = '\0';
	kb_log_info("%s: %zu object(s) in the request, %zu stored, %zu frontend(s) programmed in %.1f ms "
		    "(%s: %zu judged, %zu frontend(s) compiled; parse %.1f, validate %.1f, compile %.1f, program %.1f, "
		    "store %.1f)",
		    change_done[mode], nreq, d->state.nobjects, d->compiled.nfes, kb_now_us() / 1e3 - t0,
		    scoped ? "scoped" : whole_why, d->last_judged, d->last_compiled, t_parse, t_validate, t_compile,
		    t_program, t_store);
	if (kb_store_wants_compaction(&d->store)) {
		/* The change is durable in the log already: a failed compaction only postpones it. */
		long t1 = kb_now_ms();

		err = kb_store_compact(&d->store, &d->state);
		if (err)
			kb_err("failed to compact the state in %s: %s; the log keeps growing until it succeeds",
			       d->state_dir, strerror(-err));
		else
			kb_log_debug("compacted the state into %s: %zu object(s) in %ld ms", d->state_path,
				     d->state.nobjects, kb_now_ms() - t1);
	}
	kb_daemon_reads_changed(d);
	kb_daemon_update_names(d);
	kb_health_sync(d->health, &d->compiled);
	goto out;
out_count:
	d->apply_errors++;
	{
		struct json_object *e;

		if (json_object_object_get_ex(reply, "error", &e))
			snprintf(d->last_error, sizeof(d->last_error), "%s", json_object_get_string(e));
		kb_log_info("%s refused: %s", change_verb[mode], d->last_error);
	}
out:
	if (scoped && scope.a.head) {
		/* Refused or a dry run: the stored objects get their status and marks back. */
		kb_scope_restore(&scope);
		kb_scope_clear_marks(&d->state);
		kb_scope_clear_marks(&in);
	}
	kb_scope_free(&scope);
	kb_arena_free(&ixa);
	kb_compiled_free(&part);
	kb_compiled_free(&c);
	kb_model_free(&next);
	kb_model_free(&in);
	if (set_aside) {
		struct json_object *ok;

		if (json_object_array_length(set_aside) && json_object_object_get_ex(reply, "ok", &ok) &&
		    json_object_get_boolean(ok)) {
			json_object_object_add(reply, "refusedObjects", set_aside);
			kb_log_info("%s: %zu object(s) refused and set aside, the others programmed", change_verb[mode],
				    json_object_array_length(set_aside));
		} else {
			json_object_put(set_aside);
		}
	}
	return reply;
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
