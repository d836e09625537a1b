// SPDX-License-Identifier: Apache-2.0
/* Output for people and machines: statuses as text, JSON (json-c) and YAML (libyaml); the frontend tables are in render_table.c. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "render/render.h"
#include "render/table.h"


bool kb_output_parse(const char *s, enum kb_output *out)
{
	if (strcmp(s, "wide") == 0)
		*out = KB_OUT_WIDE;
	else if (strcmp(s, "json") == 0)
		*out = KB_OUT_JSON;
	else if (strcmp(s, "yaml") == 0)
		*out = KB_OUT_YAML;
	else
		return false;
	return true;
}

static void put_str(struct json_object *o, const char *k, const char *v)
{
	if (v)
		json_object_object_add(o, k, json_object_new_string(v));
}

static struct json_object *render_conds(const struct kb_condition *c, size_t n)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; i < n; i++) {
		struct json_object *jc = json_object_new_object();

		put_str(jc, "type", c[i].type);
		put_str(jc, "status", kb_cond_status_name(c[i].status));
		put_str(jc, "reason", c[i].reason);
		put_str(jc, "message", c[i].message);
		json_object_array_add(arr, jc);
	}
	return arr;
}

struct json_object *kb_render_object(const struct kb_meta *o)
{
	struct json_object *obj = json_object_new_object(), *md = json_object_new_object();
	struct json_object *st = json_object_new_object(), *src = json_object_new_object();

	put_str(obj, "apiVersion", o->api_version ? o->api_version : kb_kind_api_version(o->kind));
	put_str(obj, "kind", kb_meta_kind(o));
	put_str(md, "name", o->name);
	put_str(md, "namespace", o->namespace);
	if (o->nlabels) {
		struct json_object *lb = json_object_new_object();

		for (size_t i = 0; i < o->nlabels; i++)
			put_str(lb, o->labels[2 * i], o->labels[2 * i + 1]);
		json_object_object_add(md, "labels", lb);
	}
	json_object_object_add(obj, "metadata", md);
	/* Where the object came from: kbackend's own addition to the status. */
	put_str(src, "file", o->loc.file);
	json_object_object_add(src, "line", json_object_new_int(o->loc.line));
	json_object_object_add(st, "source", src);
	if (kb_kind_is_route(o->kind)) {
		struct json_object *parents = json_object_new_array();

		for (size_t i = 0; i < o->nparents; i++) {
			struct json_object *p = json_object_new_object();

			put_str(p, "parentRef", o->parents[i].parent);
			json_object_object_add(p, "conditions",
					       render_conds(o->parents[i].conds, o->parents[i].nconds));
			json_object_array_add(parents, p);
		}
		json_object_object_add(st, "parents", parents);
	}
	if (o->nconds || !kb_kind_is_route(o->kind))
		json_object_object_add(st, "conditions", render_conds(o->conds, o->nconds));
	json_object_object_add(obj, "status", st);
	return obj;
}

struct json_object *kb_render_objects(const struct kb_model *m, bool (*filter)(const struct kb_meta *, void *),
				      void *ctx)
{
	struct json_object *list = json_object_new_object(), *items = json_object_new_array();

	put_str(list, "apiVersion", "v1");
	put_str(list, "kind", "List");
	for (size_t i = 0; i < m->nobjects; i++)
		if (!filter || filter(m->objects[i], ctx))
			json_object_array_add(items, kb_render_object(m->objects[i]));
	json_object_object_add(list, "items", items);
	return list;
}

/* Is every condition of o (a route's under each parent too) True? Such an object prints as plainly Accepted. */
static bool plainly_accepted(const struct kb_meta *o, bool *refused)
{
	bool plain = true;

	*refused = false;
	for (size_t i = 0; i < o->nconds; i++) {
		*refused |= o->conds[i].status == KB_COND_FALSE;
		plain &= o->conds[i].status == KB_COND_TRUE;
	}
	for (size_t p = 0; p < o->nparents; p++)
		for (size_t i = 0; i < o->parents[p].nconds; i++) {
			*refused |= o->parents[p].conds[i].status == KB_COND_FALSE;
			plain &= o->parents[p].conds[i].status == KB_COND_TRUE;
		}
	return plain;
}

struct json_object *kb_render_objects_brief(const struct kb_model *m, bool (*filter)(const struct kb_meta *, void *),
					    void *ctx, size_t max_rows, struct json_object **summary)
{
	struct json_object *list = json_object_new_object(), *items = json_object_new_array();
	size_t n = 0, accepted = 0, refused = 0;
	bool brief;

	for (size_t i = 0; i < m->nobjects; i++)
		n += !filter || filter(m->objects[i], ctx);
	brief = n > max_rows;
	put_str(list, "apiVersion", "v1");
	put_str(list, "kind", "List");
	for (size_t i = 0; i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];
		bool plain, no;

		if (filter && !filter(o, ctx))
			continue;
		plain = plainly_accepted(o, &no);
		accepted += plain;
		refused += no;
		if (!brief || !plain)
			json_object_array_add(items, kb_render_object(o));
	}
	json_object_object_add(list, "items", items);
	*summary = NULL;
	if (brief) {
		*summary = json_object_new_object();
		json_object_object_add(*summary, "objects", json_object_new_int64((int64_t)n));
		json_object_object_add(*summary, "accepted", json_object_new_int64((int64_t)accepted));
		json_object_object_add(*summary, "refused", json_object_new_int64((int64_t)refused));
		json_object_object_add(*summary, "notListed", json_object_new_int64((int64_t)accepted));
	}
	return list;
}

struct json_object *kb_render_diags(const struct kb_model *m)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; i < m->ndiags; i++) {
		const struct kb_diag *d = &m->diags[i];
		struct json_object *jd = json_object_new_object();
		char line[4096];

		kb_diag_format(d, line, sizeof(line));
		put_str(jd, "severity", d->sev == KB_SEV_ERROR ? "error" : "warning");
		put_str(jd, "file", d->loc.file);
		json_object_object_add(jd, "line", json_object_new_int(d->loc.line));
		json_object_object_add(jd, "column", json_object_new_int(d->loc.col));
		put_str(jd, "object", d->object);
		put_str(jd, "field", d->path);
		put_str(jd, "message", d->msg);
		put_str(jd, "text", line);
		json_object_array_add(arr, jd);
	}
	return arr;
}

const char *kb_lb_name(enum kb_lb lb)
{
	switch (lb) {
	case KB_LB_ROUND_ROBIN:
		return "RoundRobin";
	case KB_LB_LEAST_REQUEST:
		return "LeastRequest";
	case KB_LB_CONSISTENT_HASH:
		return "ConsistentHash";
	default:
		return "Random";
	}
}

const char *kb_proto_name(__u8 proto)
{
	return proto == KB_PROTO_UDP ? "UDP" : "TCP";
}

static const char *ep_type_name(enum kb_ep_type t)
{
	return t == KB_EP_IP ? "IP" : t == KB_EP_FQDN ? "FQDN" : t == KB_EP_UNIX ? "Unix" : "None";
}

double kb_share_pct(double share)
{
	return (double)(long)(share * 10000.0 + 0.5) / 100.0;
}

static struct json_object *pct(double share)
{
	return json_object_new_double(kb_share_pct(share));
}

struct json_object *kb_render_frontends(const struct kb_compiled *c)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; i < c->nfes; i++)
		json_object_array_add(arr, kb_render_frontend(&c->fes[i]));
	return arr;
}

struct json_object *kb_render_frontend(const struct kb_cfrontend *fe)
{
	{
		struct json_object *jf = json_object_new_object(), *levels = json_object_new_array();
		struct json_object *eps = json_object_new_array(), *locs = json_object_new_array();

		put_str(jf, "address", fe->address);
		json_object_object_add(jf, "port", json_object_new_int(fe->port));
		put_str(jf, "protocol", kb_proto_name(fe->proto));
		put_str(jf, "gateway", fe->gateway);
		put_str(jf, "listener", fe->listener);
		put_str(jf, "route", fe->route);
		put_str(jf, "loadBalancer", kb_lb_name(fe->lb));
		json_object_object_add(jf, "slots", json_object_new_int64(fe->nslots));
		for (size_t l = 0; l < fe->nlevels; l++) {
			const struct kb_clevel *lv = &fe->levels[l];
			struct json_object *jl = json_object_new_object();

			json_object_object_add(jl, "priority", json_object_new_int(lv->priority));
			json_object_object_add(jl, "loadPercent", pct(lv->load));
			json_object_object_add(jl, "endpoints", json_object_new_int64(lv->nendpoints));
			json_object_object_add(jl, "healthy", json_object_new_int64(lv->nhealthy));
			json_object_object_add(jl, "panic", json_object_new_boolean(lv->panic));
			json_object_array_add(levels, jl);
		}
		for (size_t l = 0; l < fe->nlocs; l++) {
			const struct kb_clocality *lc = &fe->locs[l];
			struct json_object *jl = json_object_new_object(), *pend = json_object_new_array();

			put_str(jl, "backend", lc->backend);
			json_object_object_add(jl, "weight", json_object_new_int64(lc->weight));
			json_object_object_add(jl, "priority", json_object_new_int(lc->priority));
			json_object_object_add(jl, "endpoints", json_object_new_int64(lc->nendpoints));
			for (size_t p = 0; p < lc->npending; p++)
				json_object_array_add(pend, json_object_new_string(lc->pending[p]));
			json_object_object_add(jl, "unresolved", pend);
			json_object_array_add(locs, jl);
		}
		for (size_t e = 0; e < fe->neps; e++) {
			const struct kb_cendpoint *ep = &fe->eps[e];
			struct json_object *je = json_object_new_object();

			put_str(je, "backend", ep->backend);
			put_str(je, "type", ep_type_name(ep->type));
			put_str(je, "address", ep->address);
			put_str(je, "fqdn", ep->fqdn);
			if (ep->type != KB_EP_UNIX)
				json_object_object_add(je, "port", json_object_new_int(ep->port));
			json_object_object_add(je, "priority", json_object_new_int(ep->priority));
			json_object_object_add(je, "weight", json_object_new_int64(fe->locs[ep->locality].weight));
			json_object_object_add(je, "healthy", json_object_new_boolean(ep->healthy));
			json_object_object_add(je, "slots", json_object_new_int64(ep->nslots));
			json_object_object_add(je, "sharePercent", pct(ep->share));
			json_object_array_add(eps, je);
		}
		json_object_object_add(jf, "priorities", levels);
		json_object_object_add(jf, "localities", locs);
		json_object_object_add(jf, "endpoints", eps);
		return jf;
	}
}

int kb_print_json(FILE *f, struct json_object *v)
{
	const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							      JSON_C_TO_STRING_NOSLASHESCAPE);

	return fprintf(f, "%s\n", s) < 0 ? -1 : 0;
}

static int yaml_write(void *data, unsigned char *buf, size_t size)
{
	return fwrite(buf, 1, size, (FILE *)data) == size;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, bool plain_ok)
{
	yaml_event_t ev;

	/* Strings that look like other types are quoted, so the YAML reads back as the same JSON. */
	yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), plain_ok, !plain_ok,
				     plain_ok ? YAML_ANY_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE);
	return yaml_emitter_emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, struct json_object *v)
{
	yaml_event_t ev;

	switch (json_object_get_type(v)) {
	case json_type_object:
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
		if (!yaml_emitter_emit(em, &ev))
			return 0;
		json_object_object_foreach(v, key, val)
		{
			if (!emit_scalar(em, key, true) || !emit_value(em, val))
				return 0;
		}
		yaml_mapping_end_event_initialize(&ev);
		return yaml_emitter_emit(em, &ev);
	case json_type_array:
		yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
		if (!yaml_emitter_emit(em, &ev))
			return 0;
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (!emit_value(em, json_object_array_get_idx(v, i)))
				return 0;
		yaml_sequence_end_event_initialize(&ev);
		return yaml_emitter_emit(em, &ev);
	case json_type_string:
		return emit_scalar(em, json_object_get_string(v), false);
	case json_type_null:
		return emit_scalar(em, "null", true);
	default:
		return emit_scalar(em, json_object_to_json_string(v), true);
	}
}

int kb_print_yaml(FILE *f, struct json_object *v)
{
	yaml_emitter_t em;
	yaml_event_t ev;
	int ok;

	if (!yaml_emitter_initialize(&em))
		return -1;
	yaml_emitter_set_output(&em, yaml_write, f);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	ok = yaml_emitter_emit(&em, &ev);
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	ok = ok && yaml_emitter_emit(&em, &ev);
	ok = ok && emit_value(&em, v);
	yaml_document_end_event_initialize(&ev, 1);
	ok = ok && yaml_emitter_emit(&em, &ev);
	yaml_stream_end_event_initialize(&ev);
	ok = ok && yaml_emitter_emit(&em, &ev);
	ok = ok && yaml_emitter_flush(&em);
	yaml_emitter_delete(&em);
	return ok ? 0 : -1;
}

struct kb_yaml_stream {
	yaml_emitter_t em;
	bool ok, list_object;
};

struct kb_yaml_stream *kb_yaml_stream_begin(FILE *f, bool list_object)
{
	struct kb_yaml_stream *y = calloc(1, sizeof(*y));
	yaml_event_t ev;

	if (!y || !yaml_emitter_initialize(&y->em)) {
		free(y);
		return NULL;
	}
	y->list_object = list_object;
	yaml_emitter_set_output(&y->em, yaml_write, f);
	yaml_emitter_set_unicode(&y->em, 1);
	yaml_emitter_set_width(&y->em, -1);
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	y->ok = yaml_emitter_emit(&y->em, &ev);
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	y->ok = y->ok && yaml_emitter_emit(&y->em, &ev);
	if (list_object) {
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
		y->ok = y->ok && yaml_emitter_emit(&y->em, &ev) && emit_scalar(&y->em, "apiVersion", true) &&
			emit_scalar(&y->em, "v1", false) && emit_scalar(&y->em, "kind", true) &&
			emit_scalar(&y->em, "List", false) && emit_scalar(&y->em, "items", true);
	}
	yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
	y->ok = y->ok && yaml_emitter_emit(&y->em, &ev);
	return y;
}

int kb_yaml_stream_item(struct kb_yaml_stream *y, struct json_object *item)
{
	y->ok = y->ok && emit_value(&y->em, item);
	return y->ok ? 0 : -1;
}

int kb_yaml_stream_end(struct kb_yaml_stream *y)
{
	yaml_event_t ev;
	int ok;

	yaml_sequence_end_event_initialize(&ev);
	y->ok = y->ok && yaml_emitter_emit(&y->em, &ev);
	if (y->list_object) {
		yaml_mapping_end_event_initialize(&ev);
		y->ok = y->ok && yaml_emitter_emit(&y->em, &ev);
	}
	yaml_document_end_event_initialize(&ev, 1);
	y->ok = y->ok && yaml_emitter_emit(&y->em, &ev);
	yaml_stream_end_event_initialize(&ev);
	y->ok = y->ok && yaml_emitter_emit(&y->em, &ev) && yaml_emitter_flush(&y->em);
	ok = y->ok;
	yaml_emitter_delete(&y->em);
	free(y);
	return ok ? 0 : -1;
}

int kb_print_doc(FILE *f, struct json_object *v, enum kb_output fmt)
{
	return fmt == KB_OUT_YAML ? kb_print_yaml(f, v) : kb_print_json(f, v);
}

const char *kb_json_str(struct json_object *o, const char *k)
{
	struct json_object *v;

	const char *s;

	if (!o || !json_object_object_get_ex(o, k, &v) || !v)
		return "";
	s = json_object_get_string(v);
	return s ? s : "";
}

long long kb_json_int(struct json_object *o, const char *k)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? (long long)json_object_get_int64(v) : 0;
}

/* The verdict of one condition list: the first False decides; else Unknown means Ignored. */
static void judge(struct json_object *conds, const char **verdict, const char **reason, const char **msg)
{
	for (size_t c = 0; conds && c < json_object_array_length(conds); c++) {
		struct json_object *jc = json_object_array_get_idx(conds, c);
		const char *st = kb_json_str(jc, "status");

		if (strcmp(st, "False") == 0 && strcmp(*verdict, "Refused") != 0) {
			*verdict = "Refused";
			*reason = kb_json_str(jc, "reason");
			*msg = kb_json_str(jc, "message");
		} else if (!**msg || (strcmp(*verdict, "Accepted") == 0 && strcmp(kb_json_str(jc, "type"), "Accepted") == 0)) {
			if (strcmp(*verdict, "Refused") != 0) {
				*verdict = strcmp(st, "Unknown") == 0 ? "Ignored" : "Accepted";
				*reason = kb_json_str(jc, "reason");
				*msg = kb_json_str(jc, "message");
			}
		}
	}
}

static void object_row(struct kb_table *t, const char *kind, const char *ns, const char *name, const char *verdict,
		       const char *reason, const char *msg)
{
	kb_table_add(t, kind, ns, name, verdict, *reason ? reason : "-", msg);
}

void kb_obj_table_init(struct kb_obj_table *ot, bool refused_only)
{
	kb_table_init(&ot->t, 6);
	kb_table_add(&ot->t, "KIND", "NAMESPACE", "NAME", "VERDICT", "REASON", "MESSAGE");
	ot->refused_only = refused_only;
}

void kb_obj_table_add(struct kb_obj_table *ot, struct json_object *it)
{
	struct json_object *md = NULL, *st = NULL, *conds = NULL, *parents = NULL;
	const char *kind = kb_json_str(it, "kind");
	const char *verdict = "Accepted", *reason = "", *msg = "";

	json_object_object_get_ex(it, "metadata", &md);
	json_object_object_get_ex(it, "status", &st);
	if (st)
		json_object_object_get_ex(st, "parents", &parents);
	if (st && parents && json_object_array_length(parents)) {
		/* A route has a verdict per parent Gateway. */
		for (size_t p = 0; p < json_object_array_length(parents); p++) {
			struct json_object *jp = json_object_array_get_idx(parents, p), *pc = NULL;
			char name[512];

			verdict = "Accepted", reason = "", msg = "";
			json_object_object_get_ex(jp, "conditions", &pc);
			judge(pc, &verdict, &reason, &msg);
			if (ot->refused_only && strcmp(verdict, "Refused") != 0)
				continue;
			snprintf(name, sizeof(name), "%s -> %s", kb_json_str(md, "name"), kb_json_str(jp, "parentRef"));
			object_row(&ot->t, kind, kb_json_str(md, "namespace"), name, verdict, reason, msg);
		}
		return;
	}
	if (st)
		json_object_object_get_ex(st, "conditions", &conds);
	judge(conds, &verdict, &reason, &msg);
	if (ot->refused_only && strcmp(verdict, "Refused") != 0)
		return;
	object_row(&ot->t, kind, kb_json_str(md, "namespace"), kb_json_str(md, "name"), verdict, reason, msg);
}

void kb_obj_table_print(FILE *f, struct kb_obj_table *ot)
{
	/* Nothing to show (an unreadable file, say): the diagnostics say why; a bare header would not. */
	if (ot->t.ncells > ot->t.ncols)
		kb_table_print(f, &ot->t);
	kb_table_free(&ot->t);
}

/*
 * The message is the last column and is never cut: after a refused apply it
 * is the reason, and its important part is often at the end.
 */
void kb_print_objects_table(FILE *f, struct json_object *list, bool refused_only)
{
	struct json_object *items;
	struct kb_obj_table ot;

	if (!json_object_object_get_ex(list, "items", &items) || !json_object_array_length(items))
		return;
	kb_obj_table_init(&ot, refused_only);
	for (size_t i = 0; i < json_object_array_length(items); i++)
		kb_obj_table_add(&ot, json_object_array_get_idx(items, i));
	kb_obj_table_print(f, &ot);
}

void kb_print_objects_summary(FILE *f, struct json_object *summary)
{
	long long n = kb_json_int(summary, "objects"), ok = kb_json_int(summary, "accepted");
	long long no = kb_json_int(summary, "refused");

	fprintf(f, "%lld object(s): %lld accepted, %lld refused, %lld other; the %lld accepted are not listed "
		"(-o wide lists every object)\n", n, ok, no, n - ok - no, kb_json_int(summary, "notListed"));
}

void kb_print_diags(FILE *f, const struct kb_model *m)
{
	char line[4096];

	for (size_t i = 0; i < m->ndiags; i++) {
		kb_diag_format(&m->diags[i], line, sizeof(line));
		fprintf(f, "%s\n", line);
	}
}
