/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to manifest*.c (not an API): the YAML node tree, the parsing context, the field-table
 * schema machinery that manifest_walk.c runs and manifest_kinds.c fills in, and the helpers they share.
 */
#ifndef KB_MANIFEST_INT_H
#define KB_MANIFEST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest/manifest.h"

#define NOOFF		((size_t)-1)	/* a field that is checked but not stored */

/* ---- a small tree built from libyaml events -------------------------------------- */

enum ynt { YN_SCALAR, YN_MAP, YN_SEQ };

struct ynode {
	enum ynt t;
	struct kb_loc loc;
	const char *s;		/* scalar text, NUL-free (checked when built) */
	bool quoted;		/* quoted, block or !!str: never null, bool or int */
	struct ynode **kids;	/* map: key, value, key, value...; seq: items */
	size_t nkids;
	size_t start, end;	/* span in characters (libyaml's mark.index), for kb_meta.src */
};

struct ctx {
	struct kb_model *m;
	struct kb_arena tmp;	/* the current document's tree and path strings */
	const char *file;	/* arena-owned */
	struct kb_meta *obj;	/* the object being filled, NULL before it exists */
	/* The input, to copy each object's text into kb_meta.src for the state store. */
	const char *buf;
	size_t len;
	bool src_ok;		/* UTF-8 input: character marks can be mapped to bytes */
	size_t cur_chars, cur_bytes, base_bytes;
	/* The current object's field locations (in tmp, paths too): for its own messages, and kept only when asked. */
	struct kb_field_loc *fields;
	size_t nfields;
	bool keep_all;		/* every object keeps them (kb_manifest_reread) */
	bool keep_doc;		/* this document's do: its text would not parse alone (%TAG directives) */
	int line_base;		/* lines of the file before buf (a stream read in halves, kb_manifest_load_buffer) */
};

/* ---- diagnostics, locations and scalars (manifest_walk.c) --------------------------- */

/* An error at node n (or, with n NULL, at the field recorded for path); path "" or NULL: none. */
void mf_err(struct ctx *c, const struct ynode *n, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The same, as a warning: the input is still applied. */
void mf_warn(struct ctx *c, const struct ynode *n, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A list mf_walk_seq filled (exactly its size) given the room kb_push expects of n elements, before a kb_push onto it. */
void mf_seq_grow(struct kb_arena *a, void **arr, size_t n, size_t elem);
/* Record where a field of the current object is (a re-read of its text records the same, for later stages). */
void mf_record(struct ctx *c, const char *path, const struct ynode *n);
const char *mf_pjoin(struct ctx *c, const char *base, const char *key);	/* "base.key" */
const char *mf_pidx(struct ctx *c, const char *base, size_t i);		/* "base[i]" */
const char *mf_desc(struct ctx *c, const struct ynode *n);

bool mf_is_null(const struct ynode *n);
bool mf_get_str(struct ctx *c, const struct ynode *n, const char *path, const char **out);
bool mf_get_bool(struct ctx *c, const struct ynode *n, const char *path, bool *out);
/* An integer scalar (unquoted), with Kubernetes' message otherwise. */
bool mf_get_int(struct ctx *c, const struct ynode *n, const char *path, int64_t *out);
/* True when v is a list to read; a null is absent, anything else an error. */
bool mf_get_list(struct ctx *c, const struct ynode *v, const char *path);

/* The value of key in mapping n (and its key node), or NULL. */
const struct ynode *mf_map_get(const struct ynode *n, const char *key, const struct ynode **keynode);

/* ---- schema tables ------------------------------------------------------------------ */

enum ftype {
	FT_STR,		/* char *                                   */
	FT_INT,		/* int64_t, aux = offset+1 of a has_ bool      */
	FT_BOOL,	/* bool                                     */
	FT_TRI,		/* int: -1 unset, 0, 1                      */
	FT_DUR,		/* int64_t milliseconds                     */
	FT_STRS,	/* char **, aux = offset+1 of the size_t count */
	FT_INTS,	/* int64_t *, aux = offset+1 of the count      */
	FT_MAP,		/* nested mapping into target+off; aux = offset+1 (in it) of a present bool */
	FT_SEQ,		/* list of mappings, see struct seqspec    */
	FT_COUNT,	/* list of anything, counted into a size_t  */
	FT_FN,		/* custom handler                           */
	FT_ANY,		/* accepted, content not read               */
	FT_WARN,	/* accepted, not read, warned about          */
	FT_SKIP,	/* handled before the walk                  */
};

struct field;
typedef void (*field_fn)(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t);

struct seqspec {
	size_t elem;		/* element size */
	size_t arr_off;		/* the array pointer, in the parent target */
	size_t cnt_off;		/* its size_t count, in the parent target */
	size_t path_off;	/* offset+1 of the element's `char *path`, or 0 */
	const struct field *fields;
	void (*init)(struct ctx *c, char *e);
	field_fn item;		/* instead of fields: walks one item (a mapping) into e */
};

struct field {
	const char *name;
	enum ftype type;
	size_t off;
	size_t aux;
	const struct field *sub;
	const struct seqspec *seq;
	field_fn fn;
};

#define F_STR(n, T, m)		{ .name = n, .type = FT_STR, .off = offsetof(T, m) }
#define F_STRX(n)		{ .name = n, .type = FT_STR, .off = NOOFF }
#define F_INT(n, T, m)		{ .name = n, .type = FT_INT, .off = offsetof(T, m) }
#define F_INTH(n, T, m, h)	{ .name = n, .type = FT_INT, .off = offsetof(T, m), .aux = offsetof(T, h) + 1 }
#define F_INTX(n)		{ .name = n, .type = FT_INT, .off = NOOFF }
#define F_BOOL(n, T, m)		{ .name = n, .type = FT_BOOL, .off = offsetof(T, m) }
#define F_BOOLX(n)		{ .name = n, .type = FT_BOOL, .off = NOOFF }
#define F_TRI(n, T, m)		{ .name = n, .type = FT_TRI, .off = offsetof(T, m) }
#define F_DUR(n, T, m)		{ .name = n, .type = FT_DUR, .off = offsetof(T, m) }
#define F_DURX(n)		{ .name = n, .type = FT_DUR, .off = NOOFF }
#define F_STRS(n, T, a, k)	{ .name = n, .type = FT_STRS, .off = offsetof(T, a), .aux = offsetof(T, k) + 1 }
#define F_STRSN(n, T, k)	{ .name = n, .type = FT_STRS, .off = NOOFF, .aux = offsetof(T, k) + 1 }
#define F_STRSX(n)		{ .name = n, .type = FT_STRS, .off = NOOFF }
#define F_INTS(n, T, a, k)	{ .name = n, .type = FT_INTS, .off = offsetof(T, a), .aux = offsetof(T, k) + 1 }
#define F_MAP(n, T, m, S, sb)	{ .name = n, .type = FT_MAP, .off = offsetof(T, m), .aux = offsetof(S, present) + 1, \
				  .sub = sb }
#define F_MAPH(n, T, h, sb)	{ .name = n, .type = FT_MAP, .off = 0, .aux = offsetof(T, h) + 1, .sub = sb }
#define F_SUB(n, sb)		{ .name = n, .type = FT_MAP, .off = 0, .sub = sb }
#define F_SEQ(n, spec)		{ .name = n, .type = FT_SEQ, .seq = spec }
#define F_COUNT(n, T, m)	{ .name = n, .type = FT_COUNT, .off = offsetof(T, m) }
#define F_COUNTX(n)		{ .name = n, .type = FT_COUNT, .off = NOOFF }
#define F_FN(n, f)		{ .name = n, .type = FT_FN, .fn = f }
#define F_FNO(n, f, o)		{ .name = n, .type = FT_FN, .fn = f, .off = o }
#define F_ANY(n)		{ .name = n, .type = FT_ANY }
#define F_WARN(n)		{ .name = n, .type = FT_WARN }
#define F_SKIP(n)		{ .name = n, .type = FT_SKIP }
#define F_REST			{ .name = "*", .type = FT_ANY }	/* any other key; last before F_END */
#define F_END			{ .name = NULL }

#define SEQSPEC(T, E, arr, cnt, pth, flds, ini, itm)                                                   \
	{ .elem = sizeof(E), .arr_off = offsetof(T, arr), .cnt_off = offsetof(T, cnt), .path_off = pth, \
	  .fields = flds, .init = ini, .item = itm }
#define PATH_OF(E) (offsetof(E, path) + 1)

void mf_walk_map(struct ctx *c, const struct ynode *n, const char *path, const struct field *fields, char *t);
void mf_walk_seq(struct ctx *c, const struct ynode *v, const char *path, const struct seqspec *sp, char *t);

/* ---- the kinds (manifest_kinds.c) ------------------------------------------------------ */

/* What a kind is read with: its API group, object size, top-level field table and defaults. */
struct kind_info {
	const char *group;
	const char *alt_group;	/* an older group also accepted */
	size_t size;
	const struct field *top;
	void (*init)(struct ctx *c, char *t);
};

extern const struct kind_info mf_kinds[KB_KIND__COUNT];
/* The Kubernetes kinds' top-level tables (manifest_k8s.c). */
extern const struct field mf_top_service[], mf_top_service_import[], mf_top_endpoint_slice[];
/* An EndpointSlice's owner (struct kb_endpoint_slice service, owner_kind) from its labels, once they are read. */
void mf_slice_owner(struct kb_meta *obj);
/* ObjectMeta; name and namespace are F_SKIP: process_object reads them first. */
extern const struct field mf_meta_fields[];

#endif /* KB_MANIFEST_INT_H */
