/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to apply*.c: recognising a re-apply of the stored text without parsing it. */
#ifndef KB_APPLY_SAME_H
#define KB_APPLY_SAME_H

#include <stddef.h>
#include <json-c/json.h>

#include "manifest/model.h"

/*
 * The request's files ([{name, content}]) cut at "---" lines: when every
 * piece equals the stored text of the last objects of state, in order, how
 * many they are (the request would parse into exactly those objects); else 0.
 */
size_t kb_same_text_tail(const struct kb_model *state, struct json_object *files);

#endif
