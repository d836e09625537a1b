/* SPDX-License-Identifier: Apache-2.0 */
/* Output for people and machines: statuses and frontend tables as text, JSON (json-c) and YAML (libyaml). */
#ifndef KB_RENDER_H
#define KB_RENDER_H

#include <stdbool.h>
#include <stdio.h>
#include <json-c/json.h>

#include "compile/compile.h"
#include "manifest/model.h"
#include "render/table.h"

enum kb_output { KB_OUT_TEXT = 0, KB_OUT_WIDE, KB_OUT_JSON, KB_OUT_YAML };

/* Parse "-o" values: wide, json, yaml. false on anything else. */
bool kb_output_parse(const char *s, enum kb_output *out);

/* Kubernetes-shaped object: apiVersion, kind, metadata, status.conditions / status.parents. */
struct json_object *kb_render_object(const struct kb_meta *o);
/* {"kind":"List","items":[...]} of objects that pass `filter(obj, ctx)` (NULL: all). */
struct json_object *kb_render_objects(const struct kb_model *m, bool (*filter)(const struct kb_meta *, void *),
				      void *ctx);
/*
 * The same list for a change's reply: past max_rows objects, only those not
 * plainly Accepted (every condition True) are listed and *summary (else NULL)
 * counts them all: {"objects", "accepted", "refused", "notListed"}.
 */
struct json_object *kb_render_objects_brief(const struct kb_model *m, bool (*filter)(const struct kb_meta *, void *),
					    void *ctx, size_t max_rows, struct json_object **summary);
struct json_object *kb_render_diags(const struct kb_model *m);
struct json_object *kb_render_frontends(const struct kb_compiled *c);
/* One frontend of kb_render_frontends' array. */
struct json_object *kb_render_frontend(const struct kb_cfrontend *fe);

/* Print a JSON value pretty, or as YAML through libyaml's emitter. 0 or -1. */
int kb_print_json(FILE *f, struct json_object *v);
int kb_print_yaml(FILE *f, struct json_object *v);
int kb_print_doc(FILE *f, struct json_object *v, enum kb_output fmt);
/* A YAML sequence written one item at a time, as kb_print_yaml writes the whole array (list_object: inside a v1 List). */
struct kb_yaml_stream;
struct kb_yaml_stream *kb_yaml_stream_begin(FILE *f, bool list_object);
int kb_yaml_stream_item(struct kb_yaml_stream *y, struct json_object *item);
/* Ends the document and frees y. 0 or -1. */
int kb_yaml_stream_end(struct kb_yaml_stream *y);

/* Tables for people, printed from the same JSON documents that -o json prints. */
void kb_print_objects_table(FILE *f, struct json_object *list, bool refused_only);
/* The line that stands for the objects a brief change reply does not list. */
void kb_print_objects_summary(FILE *f, struct json_object *summary);

enum kb_table_view { KB_TABLE_FRONTENDS, KB_TABLE_ENDPOINTS };
void kb_print_frontends_table(FILE *f, struct json_object *fes, enum kb_table_view view, bool wide);

/* The same tables built one item at a time, so a streamed list needs no whole document: init, add..., print (frees). */
struct kb_obj_table {
	struct kb_table t;
	bool refused_only;
};
void kb_obj_table_init(struct kb_obj_table *ot, bool refused_only);
void kb_obj_table_add(struct kb_obj_table *ot, struct json_object *item);
void kb_obj_table_print(FILE *f, struct kb_obj_table *ot);

struct kb_fe_table {
	struct kb_table t, dns, br;	/* dns, br: -o wide's FQDN and unix-reset tables */
	struct json_object *seen_dns, *seen_br;
	enum kb_table_view view;
	bool wide;
};
void kb_fe_table_init(struct kb_fe_table *ft, enum kb_table_view view, bool wide);
void kb_fe_table_add(struct kb_fe_table *ft, struct json_object *fe);
void kb_fe_table_print(FILE *f, struct kb_fe_table *ft);
void kb_fe_table_free(struct kb_fe_table *ft);

/*
 * The rows those tables hold, one function per kind of row, so that the CLI
 * (from a JSON item, kb_fe_table_add) and the daemon (from its own state, for
 * a client that asked for rows: reads_rows.c) print the same thing.
 * counters: connects and refused, NULL when the kernel's are not readable.
 */
void kb_fe_row(struct kb_table *t, const char *front, const char *proto, const char *lb, const char *route,
	       size_t neps, long long slots, const long long *counters);
struct kb_ep_cells {
	const char *front, *proto;	/* "" on a frontend's second and later rows */
	const char *backend, *where, *health, *open;
	long long prio, weight, slots;
	double share_pct;
	const long long *connects;	/* NULL: no counter */
};
void kb_ep_row(struct kb_table *t, const struct kb_ep_cells *c, bool wide);
/* A frontend with no endpoint. */
void kb_ep_none_row(struct kb_table *t, const char *front, const char *proto);
/* An FQDN with no usable address yet. */
void kb_unresolved_row(struct kb_table *t, const char *backend, long long prio, long long weight, const char *name,
		       bool wide);
/* The HEALTH and OPEN OK/REFUSED/TIMEOUT cells from an endpoint's "health" object (NULL: the compiled verdict). */
void kb_health_cells(struct json_object *health, bool healthy, char *hc, size_t hlen, char *oc, size_t olen);
/* "198.18.0.10:80", "[2001:db8:f::10]:80" or "unix:/path". */
void kb_hostport(char *buf, size_t len, bool unix_path, const char *addr, long long port);
/* A 0..1 share as the percentage JSON carries (two decimals). */
double kb_share_pct(double share);
const char *kb_lb_name(enum kb_lb lb);
const char *kb_proto_name(__u8 proto);

/* Small readers for the JSON documents above: "" / 0 when the key is missing. */
const char *kb_json_str(struct json_object *o, const char *k);
long long kb_json_int(struct json_object *o, const char *k);
/* "198.18.0.10:80", "[2001:db8:f::10]:80" or "unix:/path" from an object with address, port and type. */
void kb_json_hostport(char *buf, size_t len, struct json_object *o);

/* Every diagnostic as one "file:line:col: ..." line. */
void kb_print_diags(FILE *f, const struct kb_model *m);

#endif /* KB_RENDER_H */
