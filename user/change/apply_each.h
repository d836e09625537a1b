/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to apply*.c: per-object acceptance, for sources that deliver objects one by one. */
#ifndef KB_APPLY_EACH_H
#define KB_APPLY_EACH_H

#include <json-c/json.h>

#include "manifest/model.h"
#include "validate/validate.h"

/*
 * next was made from the request's files (a replace) and judged: set aside
 * every object it refused (conditions False, or an error diagnostic naming
 * it), appending each to refused as {object, file, line, conditions,
 * diagnostics}, then parse the files again without them and judge again,
 * until nothing is refused. Returns how many objects were set aside, or -1
 * when an error names no object (a YAML syntax error): the caller then
 * refuses the whole request, as the CLI's apply does.
 */
int kb_change_each(struct kb_model *next, struct json_object *files, const struct kb_policy *policy,
		   struct json_object *refused);

/* The request's files ([{name, content}]) parsed into m; -EINVAL when they are not [{name, content}]. */
int kb_change_load_files(struct kb_model *m, struct json_object *files);

#endif
