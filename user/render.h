/* SPDX-License-Identifier: Apache-2.0 */
/* Output for people and machines: statuses and frontend tables as text, JSON (json-c) and YAML (libyaml). */
#ifndef KB_RENDER_H
#define KB_RENDER_H

#include <stdbool.h>
#include <stdio.h>
#include <json-c/json.h>

#include "compile.h"
#include "model.h"

enum kb_output { KB_OUT_TEXT = 0, KB_OUT_WIDE, KB_OUT_JSON, KB_OUT_YAML };

/* Parse "-o" values: wide, json, yaml. false on anything else. */
bool kb_output_parse(const char *s, enum kb_output *out);

/* Kubernetes-shaped object: apiVersion, kind, metadata, status.conditions / status.parents. */
struct json_object *kb_render_object(const struct kb_meta *o);
/* {"kind":"List","items":[...]} of objects that pass `filter` (NULL: all). */
struct json_object *kb_render_objects(const struct kb_model *m, bool (*filter)(const struct kb_meta *));
struct json_object *kb_render_diags(const struct kb_model *m);
struct json_object *kb_render_frontends(const struct kb_compiled *c);

/* Print a JSON value pretty, or as YAML through libyaml's emitter. 0 or -1. */
int kb_print_json(FILE *f, struct json_object *v);
int kb_print_yaml(FILE *f, struct json_object *v);
int kb_print_doc(FILE *f, struct json_object *v, enum kb_output fmt);

/* Tables for people. */
void kb_print_status_table(FILE *f, const struct kb_model *m, bool wide);
void kb_print_frontend_table(FILE *f, const struct kb_compiled *c, bool wide);
/* Every diagnostic as one "file:line:col: ..." line. */
void kb_print_diags(FILE *f, const struct kb_model *m);

#endif /* KB_RENDER_H */
