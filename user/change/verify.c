// SPDX-License-Identifier: Apache-2.0
/*
 * `kbackend verify`: the daemon runs the whole pipeline from scratch on its
 * stored objects (parse their text again, judge, compile) and compares the
 * outcome with what its scoped changes built: every object's status and
 * diagnostics, every compiled frontend, and, when the dataplane can read its
 * maps back, what the kernel holds. Any difference is a defect of the
 * incremental path; the reply lists each one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "change/apply_scope.h"
#include "control/control.h"
#include "daemon/daemon_int.h"
#include "manifest/manifest.h"

#define MAX_DIFFS 50

struct diffs {
	struct json_object *arr;
	size_t n;
};

static void diff(struct diffs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff(struct diffs *d, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (d->n++ >= MAX_DIFFS)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_array_add(d->arr, json_object_new_string(buf));
}

static void compare_conds(struct diffs *df, const char *who, const char *where, const struct kb_condition *a,
			  size_t na, const struct kb_condition *b, size_t nb)
{
	if (na != nb) {
		diff(df, "%s%s: %zu condition(s), from scratch %zu", who, where, na, nb);
		return;
	}
	for (size_t i = 0; i < na; i++)
		if (!kb_str_same(a[i].type, b[i].type) || a[i].status != b[i].status ||
		    !kb_str_same(a[i].reason, b[i].reason) || !kb_str_same(a[i].message, b[i].message))
			diff(df, "%s%s: condition %s is %s/%s \"%s\", from scratch %s %s/%s \"%s\"", who, where, a[i].type,
			     kb_cond_status_name(a[i].status), a[i].reason, a[i].message, b[i].type,
			     kb_cond_status_name(b[i].status), b[i].reason, b[i].message);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every diagnostic as its formatted line, sorted: the incremental state says the same things in another order. */
static char **diag_lines(const struct kb_model *m, struct kb_arena *a, size_t *n)
{
	char **v = kb_alloc(a, (m->ndiags + 1) * sizeof(*v));
	char line[4096];

	*n = 0;
	for (size_t i = 0; i < m->ndiags; i++) {
		if (!m->diags[i].msg)
			continue;	/* said about an object judged again since (state_index.c) */
		kb_diag_format(&m->diags[i], line, sizeof(line));
		v[(*n)++] = kb_strdup(a, line);
	}
	qsort(v, *n, sizeof(*v), cmp_str);
	return v;
}

static void compare_models(struct diffs *df, struct kb_model *have, struct kb_model *want, struct kb_arena *a)
{
	char **x, **y;
	size_t i, j, nx, ny;

	if (have->nobjects != want->nobjects)
		diff(df, "the state holds %zu object(s), parsed from scratch %zu", have->nobjects, want->nobjects);
	for (i = 0; i < have->nobjects && i < want->nobjects; i++) {
		const struct kb_meta *o = have->objects[i], *w = want->objects[i];
		const char *who = kb_meta_label(want, w);

		if (strcmp(kb_scope_key(a, o), kb_scope_key(a, w)) != 0) {
			diff(df, "object %zu is %s, from scratch %s", i, kb_meta_label(want, o), who);
			continue;
		}
		compare_conds(df, who, "", o->conds, o->nconds, w->conds, w->nconds);
		if (o->nparents != w->nparents) {
			diff(df, "%s: status for %zu parent(s), from scratch %zu", who, o->nparents, w->nparents);
			continue;
		}
		for (j = 0; j < o->nparents; j++)
			compare_conds(df, who, kb_sprintf(a, " parent %s", w->parents[j].parent), o->parents[j].conds,
				      o->parents[j].nconds, w->parents[j].conds, w->parents[j].nconds);
	}
	x = diag_lines(have, a, &nx);
	y = diag_lines(want, a, &ny);
	for (i = j = 0; i < nx || j < ny;) {
		int c = i == nx ? 1 : j == ny ? -1 : strcmp(x[i], y[j]);

		if (c < 0)
			diff(df, "diagnostic not said from scratch: %s", x[i++]);
		else if (c > 0)
			diff(df, "diagnostic missing: %s", y[j++]);
		else
			i++, j++;
	}
}

static int fe_cmp(const void *a, const void *b)
{
	const struct kb_cfrontend *x = *(const struct kb_cfrontend *const *)a, *y = *(const struct kb_cfrontend *const *)b;

	return memcmp(&x->key, &y->key, sizeof(x->key));
}

static const struct kb_cfrontend **sorted_fes(const struct kb_compiled *c, struct kb_arena *a)
{
	const struct kb_cfrontend **v = kb_alloc(a, (c->nfes + 1) * sizeof(*v));

	for (size_t i = 0; i < c->nfes; i++)
		v[i] = &c->fes[i];
	qsort(v, c->nfes, sizeof(*v), fe_cmp);
	return v;
}

static void compare_frontend(struct diffs *df, const struct kb_cfrontend *x, const struct kb_cfrontend *y)
{
	const char *p = x->proto == KB_PROTO_UDP ? "udp" : "tcp";

	if (!kb_str_same(x->gateway, y->gateway) || !kb_str_same(x->listener, y->listener) ||
	    !kb_str_same(x->route, y->route) ||
	    x->lb != y->lb || !x->policy != !y->policy ||
	    (x->policy && (!kb_str_same(x->policy->meta.name, y->policy->meta.name) ||
			   !kb_str_same(x->policy->meta.namespace, y->policy->meta.namespace))))
		diff(df, "%s:%u/%s: from %s %s %s, from scratch %s %s %s", x->address, x->port, p, x->gateway,
		     x->listener, x->route ? x->route : "(no route)", y->gateway, y->listener,
		     y->route ? y->route : "(no route)");
	if (x->neps != y->neps || x->nslots != y->nslots || x->nlocs != y->nlocs || x->nlevels != y->nlevels) {
		diff(df, "%s:%u/%s: %zu endpoint(s), %u slot(s), %zu locality(ies), from scratch %zu, %u, %zu", x->address,
		     x->port, p, x->neps, x->nslots, x->nlocs, y->neps, y->nslots, y->nlocs);
		return;
	}
	for (size_t e = 0; e < x->neps; e++) {
		const struct kb_cendpoint *a = &x->eps[e], *b = &y->eps[e];

		if (!kb_str_same(a->address, b->address) || a->port != b->port || a->family != b->family ||
		    memcmp(a->ip, b->ip, sizeof(a->ip)) || a->priority != b->priority || a->locality != b->locality ||
		    a->healthy != b->healthy || a->nslots != b->nslots || !kb_str_same(a->backend, b->backend))
			diff(df, "%s:%u/%s: endpoint %zu is %s:%u (%s, %u slot(s)), from scratch %s:%u (%s, %u slot(s))",
			     x->address, x->port, p, e, a->address, a->port, a->backend, a->nslots, b->address, b->port,
			     b->backend, b->nslots);
	}
	if (x->nslots && memcmp(x->slots, y->slots, x->nslots * sizeof(*x->slots)))
		diff(df, "%s:%u/%s: the slot table differs from scratch", x->address, x->port, p);
}

static void compare_compiled(struct diffs *df, const struct kb_compiled *have, const struct kb_compiled *want,
			     struct kb_arena *a)
{
	const struct kb_cfrontend **x = sorted_fes(have, a), **y = sorted_fes(want, a);
	size_t i = 0, j = 0;

	while (i < have->nfes || j < want->nfes) {
		int c = i == have->nfes ? 1 : j == want->nfes ? -1 : memcmp(&x[i]->key, &y[j]->key, sizeof(x[i]->key));

		if (c < 0) {
			diff(df, "%s:%u: compiled, but not from scratch", x[i]->address, x[i]->port);
			i++;
		} else if (c > 0) {
			diff(df, "%s:%u: compiled from scratch, missing", y[j]->address, y[j]->port);
			j++;
		} else {
			compare_frontend(df, x[i++], y[j++]);
		}
	}
}

/* One difference the dataplane found between the maps and the compile. */
static void kernel_diff(void *ctx, const char *text)
{
	diff(ctx, "maps: %s", text);
}

static void index_diff(void *ctx, const char *line)
{
	diff(ctx, "%s", line);
}

struct json_object *kb_daemon_verify(struct daemon *d)
{
	struct json_object *r = json_object_new_object();
	struct diffs df = { .arr = json_object_new_array() };
	struct kb_compile_env env = kb_daemon_compile_env(d);
	struct kb_compiled c = { 0 };
	struct kb_arena a = { 0 };
	struct kb_model m;
	long t0 = kb_now_ms();

	if (d->nunaccounted) {
		json_object_put(r);
		json_object_put(df.arr);
		return kb_ctl_error("verify: the stored state is not restored, so the pinned maps are not expected to hold it");
	}
	kb_model_init(&m);
	for (size_t i = 0; i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];

		if (o->src)
			kb_manifest_load_buffer(&m, o->loc.file, o->src, o->src_len);
	}
	kb_daemon_read_node_addrs(d);
	kb_validate(&m, &d->policy);
	if (kb_compile(&m, &env, &c))
		diff(&df, "the stored state does not compile from scratch");
	compare_models(&df, &d->state, &m, &a);
	compare_compiled(&df, &d->compiled, &c, &a);
	/* The indexes the scoped changes keep and read, against a rebuild from the state and the table. */
	kb_state_ix_check(&d->six, &d->state, index_diff, &df);
	kb_table_ix_check(&d->tix, &d->compiled, index_diff, &df);
	/* What the kernel holds, read back from the maps (not the dataplane's shadow of them). */
	if (d->dp->ops->verify) {
		int err = d->dp->ops->verify(d->dp, &c, kernel_diff, &df);

		if (err < 0)
			diff(&df, "the maps could not be read back: %s", strerror(-err));
	}
	json_object_object_add(r, "mapsChecked", json_object_new_boolean(d->dp->ops->verify != NULL));
	json_object_object_add(r, "ok", json_object_new_boolean(df.n == 0));
	json_object_object_add(r, "objects", json_object_new_int64((int64_t)d->state.nobjects));
	json_object_object_add(r, "frontends", json_object_new_int64((int64_t)d->compiled.nfes));
	json_object_object_add(r, "differenceCount", json_object_new_int64((int64_t)df.n));
	json_object_object_add(r, "differences", df.arr);
	json_object_object_add(r, "scopedChanges", json_object_new_int64((int64_t)d->changes_scoped));
	json_object_object_add(r, "wholeChanges", json_object_new_int64((int64_t)d->changes_whole));
	json_object_object_add(r, "milliseconds", json_object_new_int64(kb_now_ms() - t0));
	if (df.n)
		json_object_object_add(r, "error", json_object_new_string("the state differs from a from-scratch compile"));
	kb_compiled_free(&c);
	kb_model_free(&m);
	kb_arena_free(&a);
	return r;
}
