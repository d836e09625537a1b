// SPDX-License-Identifier: Apache-2.0
/* A re-apply of unchanged text, recognised from the bytes alone: no document is parsed when each equals a stored one. */
#include <string.h>

#include "change/apply_same.h"

/*
 * Cut text into documents at "---" lines. A line that is exactly "---" at
 * column 0 cannot be inside any node of a valid document (YAML 1.2's
 * c-forbidden; libyaml reads it as a document start, or refuses it inside a
 * quoted scalar), but the split is not trusted for that: each piece must
 * equal, byte for byte, the text libyaml itself delimited when the stored
 * object was parsed, and anything else makes the caller parse as usual.
 * Calls on(piece, len) per non-empty piece; false as soon as on() says no.
 */
static bool split_docs(const char *s, size_t len, bool (*on)(const char *, size_t, void *), void *ctx)
{
	size_t from = 0, at = 0;

	while (at <= len) {
		bool sep = len - at >= 4 && memcmp(s + at, "---\n", 4) == 0;
		const char *nl;

		if (sep || at == len) {
			if (at > from && !on(s + from, at - from, ctx))
				return false;
			if (at == len)
				return true;
			from = at + 4;
			at = from;
			continue;
		}
		nl = memchr(s + at, '\n', len - at);
		at = nl ? (size_t)(nl - s) + 1 : len;
	}
	return true;
}

struct walk {
	const struct kb_model *state;
	size_t first;	/* the stored object the next piece must equal */
	size_t n;	/* pieces matched so far */
};

static bool same_as_stored(const char *p, size_t len, void *ctx)
{
	struct walk *w = ctx;
	const struct kb_meta *o;

	if (w->first + w->n >= w->state->nobjects)
		return false;
	o = w->state->objects[w->first + w->n];
	/* A List item's text is re-indented (manifest.c set_src): only whole documents compare. */
	if (!o->src || o->src_len != len || o->src[0] == ' ' || memcmp(o->src, p, len) != 0)
		return false;
	/* A unix endpoint's verdict reads the file system (links under --unix-dir): judge it again. */
	if (o->kind == KB_KIND_BACKEND)
		for (size_t e = 0; e < ((const struct kb_backend *)o)->nendpoints; e++)
			if (((const struct kb_backend *)o)->endpoints[e].present & KB_EP_HAS_UNIX)
				return false;
	w->n++;
	return true;
}

static bool count_piece(const char *p, size_t len, void *ctx)
{
	(void)p, (void)len;
	++*(size_t *)ctx;
	return true;
}

size_t kb_same_text_tail(const struct kb_model *state, struct json_object *files)
{
	size_t nfiles = files ? json_object_array_length(files) : 0, k = 0;
	struct walk w = { .state = state };

	/* First count the pieces: the request must be the last k stored objects. */
	for (size_t i = 0; i < nfiles; i++) {
		struct json_object *jc;

		if (!json_object_object_get_ex(json_object_array_get_idx(files, i), "content", &jc) ||
		    !json_object_is_type(jc, json_type_string))
			return 0;
		split_docs(json_object_get_string(jc), (size_t)json_object_get_string_len(jc), count_piece, &k);
	}
	if (!k || k > state->nobjects)
		return 0;
	w.first = state->nobjects - k;
	for (size_t i = 0; i < nfiles; i++) {
		struct json_object *jc;

		json_object_object_get_ex(json_object_array_get_idx(files, i), "content", &jc);
		if (!split_docs(json_object_get_string(jc), (size_t)json_object_get_string_len(jc), same_as_stored, &w))
			return 0;
	}
	return w.n == k ? k : 0;
}
