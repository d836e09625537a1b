// SPDX-License-Identifier: Apache-2.0
/* The daemon's read side: selectors, an index over the accepted objects and the programmed frontends, and the rendering of one item. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"
#include "daemon/daemon_int.h"
#include "reads/reads.h"
#include "render/render.h"

/* ---- selectors ----------------------------------------------------------------------- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

int kb_selector_parse(const char *s, bool fields, struct kb_selector *sel, char *err, size_t errlen)
{
	char buf[4096], *save = NULL, *tok;

	memset(sel, 0, sizeof(*sel));
	if (!s || !*s)
		return 0;
	if (strlen(s) >= sizeof(buf)) {
		snprintf(err, errlen, "selector too long");
		return -1;
	}
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *t = trim(tok), *op, *val = NULL;
		enum kb_sel_op o;

		if (sel->n == KB_SEL_MAX) {
			snprintf(err, errlen, "more than %d requirements", KB_SEL_MAX);
			return -1;
		}
		if ((op = strstr(t, "!="))) {
			o = KB_SEL_NE;
			*op = '\0';
			val = op + 2;
		} else if ((op = strstr(t, "=="))) {
			o = KB_SEL_EQ;
			*op = '\0';
			val = op + 2;
		} else if ((op = strchr(t, '='))) {
			o = KB_SEL_EQ;
			*op = '\0';
			val = op + 1;
		} else if (strchr(t, '(') || strstr(t, " in ") || strstr(t, " notin ")) {
			snprintf(err, errlen, "\"%s\": set-based requirements (in, notin) are not supported; use "
					      "key=value, key!=value, key or !key", t);
			return -1;
		} else if (t[0] == '!') {
			o = KB_SEL_ABSENT;
			t++;
		} else {
			o = KB_SEL_EXISTS;
		}
		t = trim(t);
		if (val)
			val = trim(val);
		if (!*t || strpbrk(t, " !=") || (val && strpbrk(val, " !="))) {
			snprintf(err, errlen, "\"%s\": expected key=value, key==value or key!=value%s", tok,
				 fields ? "" : ", key or !key");
			return -1;
		}
		if (fields && (o == KB_SEL_EXISTS || o == KB_SEL_ABSENT)) {
			snprintf(err, errlen, "\"%s\": a field selector needs key=value or key!=value", tok);
			return -1;
		}
		if (strlen(t) >= sizeof(sel->req[0].key) || (val && strlen(val) >= sizeof(sel->req[0].val))) {
			snprintf(err, errlen, "\"%s\": key or value too long", tok);
			return -1;
		}
		strcpy(sel->req[sel->n].key, t);
		strcpy(sel->req[sel->n].val, val ? val : "");
		sel->req[sel->n++].op = o;
	}
	return 0;
}

const char *kb_meta_label_value(const struct kb_meta *o, const char *key)
{
	for (size_t i = 0; i < o->nlabels; i++)
		if (!strcmp(o->labels[2 * i], key))
			return o->labels[2 * i + 1];
	return NULL;
}

/* One requirement against a value (NULL: absent). */
static bool req_holds(enum kb_sel_op op, const char *want, const char *have)
{
	switch (op) {
	case KB_SEL_EQ:
		return have && !strcmp(have, want);
	case KB_SEL_NE:
		return !have || strcmp(have, want);	/* as Kubernetes: an absent label is not equal */
	case KB_SEL_EXISTS:
		return have;
	default:
		return !have;
	}
}

bool kb_selector_match_labels(const struct kb_selector *sel, const struct kb_meta *o)
{
	for (size_t i = 0; i < sel->n; i++)
		if (!req_holds(sel->req[i].op, sel->req[i].val, kb_meta_label_value(o, sel->req[i].key)))
			return false;
	return true;
}

/* ---- the index -------------------------------------------------------------------------- */

/*
 * A list of indices under one key. Most keys name one item (an object's
 * name, a frontend's address), so a map's value is that index itself,
 * tagged (i << 1 | 1), and only a second item makes it a struct ilist.
 */
struct ilist {
	size_t *v;
	size_t n;
};

/* Which maps are built: each on the first read that needs it after a change (a whole list needs none). */
enum { IX_OBJS = 1, IX_LABELS = 2, IX_FES = 4 };

struct kb_reads_index {
	struct kb_arena a;
	unsigned long gen;
	unsigned built;			/* IX_* */
	struct kb_smap objs;		/* "G/ns/name" -> objects (G: the kind's group letter) */
	struct kb_smap labels;		/* "G/key=value" -> objects */
	struct kb_smap fe_name;		/* "198.19.0.1:10000" -> frontends (one a protocol) */
	struct kb_smap fe_backend;	/* "ns/name" of a Backend or Service -> frontends */
	struct kb_smap fe_route;	/* "ns/name" of the route -> frontends */
	struct kb_smap fe_gateway;	/* "ns/name" of the Gateway -> frontends */
};

/* The group a `get` resource names: backends, gateways, routes, policies; 'o' for any other kind. */
static char kind_group(enum kb_kind k)
{
	if (k == KB_KIND_BACKEND)
		return 'b';
	if (k == KB_KIND_GATEWAY)
		return 'g';
	if (kb_kind_is_route(k))
		return 'r';
	if (k == KB_KIND_BACKEND_TRAFFIC_POLICY)
		return 'p';
	return 'o';
}

/* The groups `what` asks for ("all": every one); NULL for an unknown resource. */
static const char *what_groups(const char *what)
{
	static const struct { const char *name; const char *groups; } t[] = {
		{ "backends", "b" }, { "backend", "b" },   { "gateways", "g" }, { "gateway", "g" },
		{ "routes", "r" },   { "route", "r" },     { "policies", "p" }, { "policy", "p" },
		{ "all", "bgrpo" },
	};

	if (!what)
		return "bgrpo";
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(what, t[i].name))
			return t[i].groups;
	return NULL;
}

static void ilist_add(struct kb_arena *a, struct kb_smap *m, const char *key, size_t i)
{
	void *v = kb_smap_get(m, key);
	struct ilist *l = v;

	if (!v) {
		kb_smap_put(m, key, (void *)(uintptr_t)(i << 1 | 1));
		return;
	}
	if ((uintptr_t)v & 1) {
		/* Two refs of one frontend to one Backend: listed once. */
		if ((uintptr_t)v >> 1 == i)
			return;
		l = kb_alloc(a, sizeof(*l));
		*KB_PUSH(a, l->v, l->n) = (uintptr_t)v >> 1;
		kb_smap_set(m, key, l);
	}
	/* Two refs of one frontend to one Backend: listed once. */
	if (l->v[l->n - 1] == i)
		return;
	*KB_PUSH(a, l->v, l->n) = i;
}

/* The list under key (*one holds a single index); empty when absent. */
static struct ilist ilist_get(const struct kb_smap *m, const char *key, size_t *one)
{
	void *v = kb_smap_get(m, key);

	if (!v)
		return (struct ilist){ NULL, 0 };
	if ((uintptr_t)v & 1) {
		*one = (uintptr_t)v >> 1;
		return (struct ilist){ one, 1 };
	}
	return *(struct ilist *)v;
}

/* "Kind ns/name" -> "ns/name". */
static const char *route_ref(const char *route)
{
	const char *sp = route ? strchr(route, ' ') : NULL;

	return sp ? sp + 1 : route ? route : "";
}

static void fe_name(char *buf, size_t len, const struct kb_cfrontend *fe)
{
	snprintf(buf, len, strchr(fe->address, ':') ? "[%s]:%u" : "%s:%u", fe->address, fe->port);
}

/* The index with the maps in want built (NULL on ENOMEM); every map is dropped when the state changes. */
static struct kb_reads_index *index_get(struct daemon *d, unsigned want)
{
	struct kb_reads_index *x = d->reads;
	char key[1024];

	if (!x && !(x = d->reads = calloc(1, sizeof(*x))))
		return NULL;
	if (x->gen != d->reads_gen || !x->objs.a) {
		kb_arena_free(&x->a);
		memset(x, 0, sizeof(*x));
		x->objs.a = x->labels.a = x->fe_name.a = x->fe_backend.a = x->fe_route.a = x->fe_gateway.a = &x->a;
		x->gen = d->reads_gen;
	}
	for (size_t i = 0; (want & ~x->built & (IX_OBJS | IX_LABELS)) && i < d->state.nobjects; i++) {
		const struct kb_meta *o = d->state.objects[i];
		char g = kind_group(o->kind);

		if (want & ~x->built & IX_OBJS) {
			snprintf(key, sizeof(key), "%c/%s/%s", g, o->namespace ? o->namespace : "default", o->name);
			ilist_add(&x->a, &x->objs, key, i);
		}
		for (size_t l = 0; (want & ~x->built & IX_LABELS) && l < o->nlabels; l++) {
			snprintf(key, sizeof(key), "%c/%s=%s", g, o->labels[2 * l], o->labels[2 * l + 1]);
			ilist_add(&x->a, &x->labels, key, i);
		}
	}
	for (size_t i = 0; (want & ~x->built & IX_FES) && i < d->compiled.nfes; i++) {
		const struct kb_cfrontend *fe = &d->compiled.fes[i];

		fe_name(key, sizeof(key), fe);
		ilist_add(&x->a, &x->fe_name, key, i);
		ilist_add(&x->a, &x->fe_route, route_ref(fe->route), i);
		if (fe->gateway)
			ilist_add(&x->a, &x->fe_gateway, fe->gateway, i);
		for (size_t l = 0; l < fe->nlocs; l++)
			if (fe->locs[l].backend)
				ilist_add(&x->a, &x->fe_backend, fe->locs[l].backend, i);
	}
	x->built |= want;
	return x;
}

void kb_daemon_reads_changed(struct daemon *d)
{
	d->reads_gen++;
	/* Every change rebuilds part of the state: what it freed goes back to the system shortly after. */
	kb_daemon_trim_soon(d);
}

void kb_daemon_reads_free(struct daemon *d)
{
	if (d->reads)
		kb_arena_free(&d->reads->a);
	free(d->reads);
	d->reads = NULL;
}

/* ---- resolving a request ----------------------------------------------------------------- */

const char *kb_req_str(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* Candidates: a sorted, deduplicated copy of the lists found. */
struct cands {
	size_t *v;
	size_t n, cap;
	bool all;	/* no index applied: every item is a candidate */
};

static int cands_add(struct cands *c, struct ilist l)
{
	if (!l.n)
		return 0;
	if (c->n + l.n > c->cap) {
		size_t cap = (c->n + l.n) * 2;
		size_t *v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -1;
		c->v = v;
		c->cap = cap;
	}
	memcpy(c->v + c->n, l.v, l.n * sizeof(*l.v));
	c->n += l.n;
	return 0;
}

static void cands_sort(struct cands *c)
{
	size_t w = 0;

	qsort(c->v, c->n, sizeof(*c->v), cmp_size);
	for (size_t i = 0; i < c->n; i++)
		if (!w || c->v[w - 1] != c->v[i])
			c->v[w++] = c->v[i];
	c->n = w;
}

struct filter {
	const char *groups;	/* objects: the kinds' group letters */
	const char *ns, *name;
	struct kb_selector labels, fields;
};

static const char *const obj_fields[] = { "metadata.name", "metadata.namespace", NULL };
static const char *const fe_fields[] = { "frontend", "address", "port",	   "protocol", "backend",
					 "route",    "gateway", "listener", NULL };

static const char *obj_field(const struct kb_meta *o, const char *key)
{
	return !strcmp(key, "metadata.name") ? o->name : o->namespace ? o->namespace : "default";
}

static bool obj_passes(const struct filter *f, const struct kb_meta *o)
{
	if (!strchr(f->groups, kind_group(o->kind)))
		return false;
	if (f->ns && strcmp(f->ns, o->namespace ? o->namespace : "default"))
		return false;
	if (f->name && strcmp(f->name, o->name))
		return false;
	for (size_t i = 0; i < f->fields.n; i++)
		if (!req_holds(f->fields.req[i].op, f->fields.req[i].val, obj_field(o, f->fields.req[i].key)))
			return false;
	return kb_selector_match_labels(&f->labels, o);
}

/* A Backend (or Service) "ns/name" as an object, for label selectors on frontends. */
static const struct kb_meta *backend_obj(struct daemon *d, const char *ref)
{
	struct kb_reads_index *x = index_get(d, IX_OBJS);
	char key[600];
	struct ilist l;
	size_t one;

	snprintf(key, sizeof(key), "b/%s", ref);
	l = x ? ilist_get(&x->objs, key, &one) : (struct ilist){ NULL, 0 };
	return l.n ? d->state.objects[l.v[0]] : NULL;
}

/* Does one string field of a frontend hold for a requirement; multi-valued (backend): any of them. */
static bool fe_field_holds(const struct kb_cfrontend *fe, enum kb_sel_op op, const char *key, const char *want)
{
	char buf[128];

	if (!strcmp(key, "backend")) {
		bool any = false;

		for (size_t l = 0; l < fe->nlocs && !any; l++)
			any = fe->locs[l].backend && !strcmp(fe->locs[l].backend, want);
		return op == KB_SEL_EQ ? any : !any;
	}
	if (!strcmp(key, "frontend"))
		fe_name(buf, sizeof(buf), fe);
	else if (!strcmp(key, "port"))
		snprintf(buf, sizeof(buf), "%u", fe->port);
	else if (!strcmp(key, "protocol"))
		snprintf(buf, sizeof(buf), "%s", fe->proto == KB_PROTO_UDP ? "UDP" : "TCP");
	if (!strcmp(key, "address"))
		return req_holds(op, want, fe->address);
	if (!strcmp(key, "route"))
		return req_holds(op, want, strchr(want, ' ') ? fe->route : route_ref(fe->route));
	if (!strcmp(key, "gateway"))
		return req_holds(op, want, fe->gateway);
	if (!strcmp(key, "listener"))
		return req_holds(op, want, fe->listener);
	return req_holds(op, want, buf);
}

static bool fe_passes(struct daemon *d, const struct filter *f, const struct kb_cfrontend *fe)
{
	const char *rr = route_ref(fe->route), *slash = strchr(rr, '/');
	char name[128];

	/* A frontend's namespace is its route's: the route is what supplies its endpoints. */
	if (f->ns && (!slash || strlen(f->ns) != (size_t)(slash - rr) || strncmp(f->ns, rr, (size_t)(slash - rr))))
		return false;
	if (f->name) {
		fe_name(name, sizeof(name), fe);
		if (strcmp(f->name, name))
			return false;
	}
	for (size_t i = 0; i < f->fields.n; i++)
		if (!fe_field_holds(fe, f->fields.req[i].op, f->fields.req[i].key, f->fields.req[i].val))
			return false;
	if (f->labels.n) {
		/* Labels are the Backends': a frontend is selected when one of its Backends is. */
		bool any = false;

		for (size_t l = 0; l < fe->nlocs && !any; l++) {
			const struct kb_meta *b = fe->locs[l].backend ? backend_obj(d, fe->locs[l].backend) : NULL;

			any = b && kb_selector_match_labels(&f->labels, b);
		}
		if (!any)
			return false;
	}
	return true;
}

static bool known_field(const char *const *names, const char *key)
{
	for (size_t i = 0; names[i]; i++)
		if (!strcmp(names[i], key))
			return true;
	return false;
}

/* The first equality requirement on key in sel, or NULL. */
static const char *sel_eq(const struct kb_selector *sel, const char *key)
{
	for (size_t i = 0; i < sel->n; i++)
		if (sel->req[i].op == KB_SEL_EQ && (!key || !strcmp(sel->req[i].key, key)))
			return key ? sel->req[i].val : sel->req[i].key;
	return NULL;
}

/* Narrow the frontends through the index when a name or an equality names them. */
static int fe_candidates(struct daemon *d, const struct filter *f, struct cands *c)
{
	static const struct { const char *key; size_t off; } by[] = {
		{ "frontend", offsetof(struct kb_reads_index, fe_name) },
		{ "backend", offsetof(struct kb_reads_index, fe_backend) },
		{ "route", offsetof(struct kb_reads_index, fe_route) },
		{ "gateway", offsetof(struct kb_reads_index, fe_gateway) },
	};
	struct kb_reads_index *x;
	const char *v;
	char key[600];
	size_t one, one2;

	if (f->name)
		return (x = index_get(d, IX_FES)) ? cands_add(c, ilist_get(&x->fe_name, f->name, &one)) : -1;
	for (size_t i = 0; i < sizeof(by) / sizeof(by[0]); i++)
		if ((v = sel_eq(&f->fields, by[i].key)) && !(by[i].key[0] == 'r' && strchr(v, ' '))) {
			if (!(x = index_get(d, IX_FES)))
				return -1;
			return cands_add(c, ilist_get((struct kb_smap *)((char *)x + by[i].off), v, &one));
		}
	for (size_t i = 0; i < f->labels.n; i++) {
		struct ilist bl;

		if (f->labels.req[i].op != KB_SEL_EQ)
			continue;
		if (!(x = index_get(d, IX_LABELS | IX_FES)))
			return -1;
		snprintf(key, sizeof(key), "b/%s=%s", f->labels.req[i].key, f->labels.req[i].val);
		bl = ilist_get(&x->labels, key, &one);
		for (size_t k = 0; k < bl.n; k++) {
			const struct kb_meta *b = d->state.objects[bl.v[k]];

			snprintf(key, sizeof(key), "%s/%s", b->namespace ? b->namespace : "default", b->name);
			if (cands_add(c, ilist_get(&x->fe_backend, key, &one2)))
				return -1;
		}
		return 0;
	}
	c->all = true;
	return 0;
}

static int obj_candidates(struct daemon *d, const struct filter *f, struct cands *c)
{
	const char *name = f->name ? f->name : sel_eq(&f->fields, "metadata.name");
	const char *ns = f->ns ? f->ns : sel_eq(&f->fields, "metadata.namespace");
	const char *lk = sel_eq(&f->labels, NULL);
	struct kb_reads_index *x;
	char key[800];
	size_t one;

	c->all = !(name && ns) && !lk;
	if (c->all)
		return 0;
	if (!(x = index_get(d, name && ns ? IX_OBJS : IX_LABELS)))
		return -1;
	for (const char *g = f->groups; *g; g++) {
		if (name && ns)
			snprintf(key, sizeof(key), "%c/%s/%s", *g, ns, name);
		else
			snprintf(key, sizeof(key), "%c/%s=%s", *g, lk, sel_eq(&f->labels, lk));
		if (cands_add(c, ilist_get(name && ns ? &x->objs : &x->labels, key, &one)))
			return -1;
	}
	return 0;
}

struct json_object *kb_read_resolve(struct daemon *d, struct json_object *req, struct kb_read *r)
{
	const char *what = kb_req_str(req, "what"), *ls = kb_req_str(req, "labelSelector");
	const char *fs = kb_req_str(req, "fieldSelector"), *rows = kb_req_str(req, "rows");
	struct cands c = { 0 };
	struct filter f = { 0 };
	char why[512];
	size_t total;

	memset(r, 0, sizeof(*r));
	r->frontends = what && (!strcmp(what, "frontends") || !strcmp(what, "endpoints"));
	if (rows && r->frontends) {
		static const char *const names[] = { [KB_ROWS_FRONTENDS] = "frontends", [KB_ROWS_ENDPOINTS] = "endpoints",
						     [KB_ROWS_STATS] = "stats" };

		for (int k = KB_ROWS_FRONTENDS; k <= KB_ROWS_STATS; k++)
			if (!strcmp(rows, names[k]))
				r->rows = (enum kb_read_rows)k;
		if (!r->rows)
			return kb_ctl_error("unknown rows \"%s\": expected frontends, endpoints or stats", rows);
	}
	f.groups = r->frontends ? "" : what_groups(what);
	if (!f.groups)
		return kb_ctl_error("unknown resource \"%s\": expected backends, gateways, routes, policies, "
				    "frontends or endpoints", what ? what : "");
	f.ns = kb_req_str(req, "namespace");
	f.name = kb_req_str(req, "name");
	if (kb_selector_parse(ls, false, &f.labels, why, sizeof(why)))
		return kb_ctl_error("bad label selector: %s", why);
	if (kb_selector_parse(fs, true, &f.fields, why, sizeof(why)))
		return kb_ctl_error("bad field selector: %s", why);
	for (size_t i = 0; i < f.fields.n; i++)
		if (!known_field(r->frontends ? fe_fields : obj_fields, f.fields.req[i].key))
			return kb_ctl_error("field selector \"%s\" is not supported for %s: expected %s", f.fields.req[i].key,
					    what, r->frontends ? "frontend, address, port, protocol, backend, route, gateway "
								 "or listener" : "metadata.name or metadata.namespace");
	if (r->frontends ? fe_candidates(d, &f, &c) : obj_candidates(d, &f, &c)) {
		free(c.v);
		return kb_ctl_error("out of memory");
	}
	total = r->frontends ? d->compiled.nfes : d->state.nobjects;
	if (c.all) {
		free(c.v);
		c.v = calloc(total + 1, sizeof(*c.v));
		if (!c.v)
			return kb_ctl_error("out of memory");
		for (size_t i = 0; i < total; i++)
			c.v[i] = i;
		c.n = total;
	} else {
		cands_sort(&c);
	}
	/* Every other condition, on the candidates only. */
	for (size_t i = 0; i < c.n; i++) {
		bool ok = r->frontends ? fe_passes(d, &f, &d->compiled.fes[c.v[i]])
				       : obj_passes(&f, d->state.objects[c.v[i]]);

		if (ok)
			c.v[r->n++] = c.v[i];
	}
	r->idx = c.v;
	r->gen = d->reads_gen;
	return NULL;
}

/* Health's view of one endpoint address, asked once per read; its table cells made once too. */
struct health_ent {
	struct json_object *j;	/* NULL: health does not track the address */
	char hc[64], oc[96];
};

void kb_read_free(struct kb_read *r)
{
	for (size_t i = 0; i < r->health.cap; i++)
		if (r->health.ents && r->health.ents[i].key)
			json_object_put(((struct health_ent *)r->health.ents[i].val)->j);
	kb_arena_free(&r->a);
	free(r->pf_fe);
	free(r->pf_ep);
	free(r->pf_fe_ok);
	free(r->pf_ep_ok);
	free(r->pf_off);
	free(r->idx);
	kb_table_free(&r->rt_fe);
	kb_table_free(&r->rt);
	free(r->rtext);
	memset(r, 0, sizeof(*r));
}

/* ---- one item ---------------------------------------------------------------------------- */

static struct json_object *stats_json(const struct kb_conn_stats *s)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "connects", json_object_new_int64((int64_t)s->connects));
	json_object_object_add(o, "refused", json_object_new_int64((int64_t)s->refused));
	json_object_object_add(o, "established", json_object_new_int64((int64_t)s->established));
	json_object_object_add(o, "failed", json_object_new_int64((int64_t)s->failed));
	return o;
}

/* "proto family ip port" as hex digits, once per endpoint row: made by hand, not by snprintf. */
static void health_key(char key[48], const struct kb_cfrontend *fe, const struct kb_cendpoint *ep)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[20];
	size_t n = 0;

	raw[n++] = fe->proto;
	raw[n++] = ep->family;
	memcpy(raw + n, ep->ip, sizeof(ep->ip));
	n += sizeof(ep->ip);
	raw[n++] = (unsigned char)(ep->port >> 8);
	raw[n++] = (unsigned char)ep->port;
	for (size_t i = 0; i < n; i++) {
		key[2 * i] = hex[raw[i] >> 4];
		key[2 * i + 1] = hex[raw[i] & 15];
	}
	key[2 * n] = '\0';
}

static struct health_ent *health_ent(struct daemon *d, struct kb_read *r, const struct kb_cfrontend *fe,
				     const struct kb_cendpoint *ep)
{
	struct health_ent *h;
	char key[128];

	if (!d->health || ep->type == KB_EP_UNIX)
		return NULL;
	health_key(key, fe, ep);
	if (!r->health.a)
		r->health.a = &r->a;
	h = kb_smap_get(&r->health, key);
	if (!h) {
		h = kb_alloc(&r->a, sizeof(*h));
		h->j = kb_health_endpoint_json(d->health, fe, ep);
		if (h->j)
			kb_health_cells(h->j, true, h->hc, sizeof(h->hc), h->oc, sizeof(h->oc));
		kb_smap_put(&r->health, kb_strdup(&r->a, key), h);
	}
	return h;
}

struct json_object *kb_read_health(struct daemon *d, struct kb_read *r, const struct kb_cfrontend *fe,
				   const struct kb_cendpoint *ep)
{
	struct health_ent *h = health_ent(d, r, fe, ep);

	return h && h->j ? json_object_get(h->j) : NULL;
}

void kb_read_health_cells(struct daemon *d, struct kb_read *r, const struct kb_cfrontend *fe,
			  const struct kb_cendpoint *ep, char *hc, size_t hlen, char *oc, size_t olen)
{
	struct health_ent *h = health_ent(d, r, fe, ep);

	if (!h || !h->j) {
		kb_health_cells(NULL, ep->healthy, hc, hlen, oc, olen);
		return;
	}
	snprintf(hc, hlen, "%s", h->hc);
	snprintf(oc, olen, "%s", h->oc);
}

#define PREFETCH 128	/* frontends whose counters one batch reads */

/* Read the counters of items [i, i + PREFETCH) in one batch; false when the dataplane cannot. */
static bool prefetch(struct daemon *d, struct kb_read *r, size_t i)
{
	const struct kb_cfrontend *fes[PREFETCH];
	size_t n = r->n - i < PREFETCH ? r->n - i : PREFETCH, nep = 0;

	r->pf_n = 0;
	if (!d->dp->ops->stats_many)
		return false;
	for (size_t k = 0; k < n; k++) {
		fes[k] = &d->compiled.fes[r->idx[i + k]];
		nep += fes[k]->neps;
	}
	free(r->pf_fe);
	free(r->pf_ep);
	free(r->pf_fe_ok);
	free(r->pf_ep_ok);
	free(r->pf_off);
	r->pf_fe = calloc(n, sizeof(*r->pf_fe));
	r->pf_ep = calloc(nep + 1, sizeof(*r->pf_ep));
	r->pf_fe_ok = calloc(n, sizeof(*r->pf_fe_ok));
	r->pf_ep_ok = calloc(nep + 1, sizeof(*r->pf_ep_ok));
	r->pf_off = calloc(n, sizeof(*r->pf_off));
	if (!r->pf_fe || !r->pf_ep || !r->pf_fe_ok || !r->pf_ep_ok || !r->pf_off ||
	    d->dp->ops->stats_many(d->dp, fes, n, r->pf_fe, r->pf_fe_ok, r->pf_ep, r->pf_ep_ok))
		return false;
	for (size_t k = 1; k < n; k++)
		r->pf_off[k] = r->pf_off[k - 1] + fes[k - 1]->neps;
	r->pf_base = i;
	r->pf_n = n;
	return true;
}

bool kb_read_stats(struct daemon *d, struct kb_read *r, size_t i, long e, struct kb_conn_stats *s)
{
	const struct kb_cfrontend *fe = &d->compiled.fes[r->idx[i]];

	if (!(i >= r->pf_base && i - r->pf_base < r->pf_n))
		prefetch(d, r, i);
	if (i >= r->pf_base && i - r->pf_base < r->pf_n) {
		size_t k = i - r->pf_base;

		if (e < 0) {
			*s = r->pf_fe[k];
			return r->pf_fe_ok[k];
		}
		*s = r->pf_ep[r->pf_off[k] + (size_t)e];
		return r->pf_ep_ok[r->pf_off[k] + (size_t)e];
	}
	if (e < 0)
		return d->dp->ops->frontend_stats && !d->dp->ops->frontend_stats(d->dp, fe, s);
	return d->dp->ops->endpoint_stats && !d->dp->ops->endpoint_stats(d->dp, fe, (size_t)e, s);
}

/* A frontend as compile rendered it, with the kernel's per-CPU counters, DNS, health and the bridge's resets. */
static struct json_object *frontend_item(struct daemon *d, struct kb_read *r, size_t i)
{
	const struct kb_cfrontend *fe = &d->compiled.fes[r->idx[i]];
	struct json_object *jf = kb_render_frontend(fe), *eps, *locs;
	struct kb_conn_stats s = { 0 };

	kb_daemon_bridge_annotate(d, fe, jf);
	if (kb_read_stats(d, r, i, -1, &s))
		json_object_object_add(jf, "stats", stats_json(&s));
	if (json_object_object_get_ex(jf, "localities", &locs))
		for (size_t l = 0; l < fe->nlocs; l++) {
			struct json_object *dns = json_object_new_object();

			/* Names that have no usable address yet: why, from the resolver. */
			for (size_t p = 0; p < fe->locs[l].npending; p++)
				json_object_object_add(dns, fe->locs[l].pending[p],
						       kb_resolver_name_json(d->resolver, fe->locs[l].pending[p]));
			json_object_object_add(json_object_array_get_idx(locs, l), "dns", dns);
		}
	if (!json_object_object_get_ex(jf, "endpoints", &eps))
		return jf;
	for (size_t e = 0; e < fe->neps; e++) {
		struct json_object *je = json_object_array_get_idx(eps, e), *jh;

		memset(&s, 0, sizeof(s));
		if (kb_read_stats(d, r, i, (long)e, &s))
			json_object_object_add(je, "stats", stats_json(&s));
		if (fe->eps[e].fqdn)
			json_object_object_add(je, "dns", kb_resolver_name_json(d->resolver, fe->eps[e].fqdn));
		jh = kb_read_health(d, r, fe, &fe->eps[e]);
		if (jh)
			json_object_object_add(je, "health", jh);
	}
	return jf;
}

struct json_object *kb_read_item(struct daemon *d, struct kb_read *r, size_t i)
{
	return r->frontends ? frontend_item(d, r, i) : kb_render_object(d->state.objects[r->idx[i]]);
}
