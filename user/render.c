// SPDX-License-Identifier: Apache-2.0
/* Output for people and machines: statuses and frontend tables as text, JSON (json-c) and YAML (libyaml). */
#include <arpa/inet.h>
#include <string.h>
#include <yaml.h>

#include "render.h"


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
	put_str(obj, "kind", kb_kind_name(o->kind));
	put_str(md, "name", o->name);
	put_str(md, "namespace", o->namespace);
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

struct json_object *kb_render_objects(const struct kb_model *m, bool (*filter)(const struct kb_meta *))
{
	struct json_object *list = json_object_new_object(), *items = json_object_new_array();

	put_str(list, "apiVersion", "v1");
	put_str(list, "kind", "List");
	for (size_t i = 0; i < m->nobjects; i++)
		if (!filter || filter(m->objects[i]))
			json_object_array_add(items, kb_render_object(m->objects[i]));
	json_object_object_add(list, "items", items);
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

static const char *lb_name(enum kb_lb lb)
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

static const char *proto_name(__u8 proto)
{
	return proto == KB_PROTO_UDP ? "UDP" : "TCP";
}

static const char *ep_type_name(enum kb_ep_type t)
{
	return t == KB_EP_IP ? "IP" : t == KB_EP_FQDN ? "FQDN" : t == KB_EP_UNIX ? "Unix" : "None";
}

/* Round a 0..1 share to a percentage with two decimals, so JSON stays readable and stable. */
static struct json_object *pct(double share)
{
	return json_object_new_double((double)(long)(share * 10000.0 + 0.5) / 100.0);
}

struct json_object *kb_render_frontends(const struct kb_compiled *c)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];
		struct json_object *jf = json_object_new_object(), *levels = json_object_new_array();
		struct json_object *eps = json_object_new_array(), *locs = json_object_new_array();

		put_str(jf, "address", fe->address);
		json_object_object_add(jf, "port", json_object_new_int(fe->port));
		put_str(jf, "protocol", proto_name(fe->proto));
		put_str(jf, "gateway", fe->gateway);
		put_str(jf, "listener", fe->listener);
		put_str(jf, "route", fe->route);
		put_str(jf, "loadBalancer", lb_name(fe->lb));
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
		json_object_array_add(arr, jf);
	}
	return arr;
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

int kb_print_doc(FILE *f, struct json_object *v, enum kb_output fmt)
{
	return fmt == KB_OUT_YAML ? kb_print_yaml(f, v) : kb_print_json(f, v);
}

static const struct kb_condition *first_false(const struct kb_condition *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (c[i].status == KB_COND_FALSE)
			return &c[i];
	return NULL;
}

static void status_row(FILE *f, const struct kb_meta *o, const char *parent, const struct kb_condition *c,
		       size_t n, bool wide)
{
	const struct kb_condition *bad = first_false(c, n), *show = bad;
	char msg[100];

	if (!show)
		for (size_t i = 0; i < n && !show; i++)
			if (strcmp(c[i].type, "Accepted") == 0)
				show = &c[i];
	if (!show && n)
		show = &c[0];
	snprintf(msg, sizeof(msg), "%s", show && show->message ? show->message : "");
	if (!wide && show && show->message && strlen(show->message) >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	fprintf(f, "%-21s %-12s %-28s %-9s %-22s %s\n", kb_kind_name(o->kind), o->namespace ? o->namespace : "",
		parent ? parent : (o->name ? o->name : ""),
		bad ? "Refused" : (show && show->status == KB_COND_UNKNOWN ? "Ignored" : "Accepted"),
		show && show->reason ? show->reason : "-", wide && show ? show->message : msg);
}

void kb_print_status_table(FILE *f, const struct kb_model *m, bool wide)
{
	fprintf(f, "%-21s %-12s %-28s %-9s %-22s %s\n", "KIND", "NAMESPACE", "NAME", "VERDICT", "REASON", "MESSAGE");
	for (size_t i = 0; i < m->nobjects; i++) {
		const struct kb_meta *o = m->objects[i];

		if (kb_kind_is_route(o->kind) && o->nparents) {
			for (size_t p = 0; p < o->nparents; p++) {
				char name[200];

				snprintf(name, sizeof(name), "%s -> %s", o->name, o->parents[p].parent);
				status_row(f, o, name, o->parents[p].conds, o->parents[p].nconds, wide);
			}
		} else {
			status_row(f, o, NULL, o->conds, o->nconds, wide);
		}
	}
}

void kb_print_frontend_table(FILE *f, const struct kb_compiled *c, bool wide)
{
	fprintf(f, "%-24s %-5s %-8s %-26s %-12s %-4s %-30s %7s %6s\n", "FRONTEND", "PROTO", "LB", "ROUTE",
		"BACKEND", "PRIO", "ENDPOINT", "SHARE%", "SLOTS");
	for (size_t i = 0; i < c->nfes; i++) {
		const struct kb_cfrontend *fe = &c->fes[i];
		char front[64], ep[300];

		snprintf(front, sizeof(front), fe->key.family == AF_INET6 ? "[%s]:%u" : "%s:%u", fe->address,
			 fe->port);
		if (!fe->neps)
			fprintf(f, "%-24s %-5s %-8s %-26s %-12s %-4s %-30s %7s %6u\n", front, proto_name(fe->proto),
				lb_name(fe->lb), fe->route ? fe->route : "-", "-", "-", "(none: refuse)", "-", 0);
		for (size_t e = 0; e < fe->neps; e++) {
			const struct kb_cendpoint *p = &fe->eps[e];
			const char *be = p->backend, *slash = be ? strchr(be, '/') : NULL;

			if (p->type == KB_EP_UNIX)
				snprintf(ep, sizeof(ep), "unix:%s", p->address);
			else if (p->family == AF_INET6)
				snprintf(ep, sizeof(ep), "[%s]:%u%s", p->address, p->port, p->healthy ? "" : " (down)");
			else
				snprintf(ep, sizeof(ep), "%s:%u%s", p->address, p->port, p->healthy ? "" : " (down)");
			fprintf(f, "%-24s %-5s %-8s %-26s %-12s %-4u %-30s %7.2f %6u\n", e ? "" : front,
				e ? "" : proto_name(fe->proto), e ? "" : lb_name(fe->lb),
				e ? "" : (fe->route ? fe->route : "-"), wide || !slash ? be : slash + 1, p->priority,
				ep, p->share * 100.0, p->nslots);
		}
		for (size_t l = 0; l < fe->nlocs; l++)
			for (size_t p = 0; p < fe->locs[l].npending; p++)
				fprintf(f, "%-24s %-5s %-8s %-26s %-12s %-4u %-30s %7s %6s\n", "", "", "", "",
					fe->locs[l].backend, fe->locs[l].priority, fe->locs[l].pending[p],
					"unres.", "0");
	}
}

void kb_print_diags(FILE *f, const struct kb_model *m)
{
	char line[4096];

	for (size_t i = 0; i < m->ndiags; i++) {
		kb_diag_format(&m->diags[i], line, sizeof(line));
		fprintf(f, "%s\n", line);
	}
}
