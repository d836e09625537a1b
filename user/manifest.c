// SPDX-License-Identifier: Apache-2.0
/* Stage 1: YAML manifests (files, directories, stdin) into the model, with located errors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "manifest.h"

/*
 * Limits. The parser is fed untrusted bytes (and a fuzzer), so every
 * dimension that could grow without bound has a cap. Nothing in a real
 * manifest comes near them.
 */
#define MAX_DEPTH	64		/* nesting of mappings and lists */
#define MAX_NODES	(1u << 20)	/* nodes in one document */
#define MAX_DOCS	100000		/* documents in one stream */
#define MAX_FILE	(64u << 20)	/* bytes in one file */
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
};

/* ---- diagnostics and locations ---------------------------------------------------- */

static void vdiag(struct ctx *c, enum kb_severity sev, const struct ynode *n, const char *path, const char *fmt,
		  va_list ap)
{
	char *msg = kb_vsprintf(&c->m->arena, fmt, ap);
	struct kb_diag *d;

	if (path && !*path)
		path = NULL;
	if (!c->obj) {
		struct kb_loc loc = n ? n->loc : (struct kb_loc){ .file = c->file };

		if (path)
			kb_diag_add_at(c->m, sev, loc, "%s: %s", path, msg);
		else
			kb_diag_add_at(c->m, sev, loc, "%s", msg);
		return;
	}
	if (!n) {
		/* Locate by the recorded field (the key of a block, the value of a scalar). */
		kb_diag_add(c->m, sev, c->obj, path, "%s", msg);
		return;
	}
	/*
	 * The node we hold is more precise than a path lookup (a duplicate key, a
	 * value vs. its key), and skipping the lookup keeps a document with many
	 * errors linear.
	 */
	kb_diag_add_at(c->m, sev, n->loc, "%s", msg);
	d = &c->m->diags[c->m->ndiags - 1];
	d->object = kb_meta_label(c->m, c->obj);
	d->path = kb_strdup(&c->m->arena, path);
}

static void __attribute__((format(printf, 4, 5))) err(struct ctx *c, const struct ynode *n, const char *path,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, KB_SEV_ERROR, n, path, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 4, 5))) warn(struct ctx *c, const struct ynode *n, const char *path,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, KB_SEV_WARNING, n, path, fmt, ap);
	va_end(ap);
}

static void record(struct ctx *c, const char *path, const struct ynode *n)
{
	if (c->obj)
		kb_meta_add_field(c->m, c->obj, path, n->loc);
}

static const char *pjoin(struct ctx *c, const char *base, const char *key)
{
	return *base ? kb_sprintf(&c->tmp, "%s.%s", base, key) : kb_strdup(&c->tmp, key);
}

static const char *pidx(struct ctx *c, const char *base, size_t i)
{
	return kb_sprintf(&c->tmp, "%s[%zu]", base, i);
}

/* What a node is, for "expected X, got Y": a short, printable rendering. */
static const char *desc(struct ctx *c, const struct ynode *n)
{
	char buf[72];
	size_t j = 0;

	if (n->t == YN_MAP)
		return "a mapping";
	if (n->t == YN_SEQ)
		return "a list";
	buf[j++] = '"';
	for (const unsigned char *p = (const unsigned char *)n->s; *p && j < 64; p++)
		buf[j++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
	if (strlen(n->s) > 62)
		j = 62, buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
	buf[j++] = '"';
	buf[j] = '\0';
	return kb_strdup(&c->tmp, buf);
}

/* ---- scalar conversions ---------------------------------------------------------- */

static bool is_null(const struct ynode *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };

	if (!n)
		return true;
	if (n->t != YN_SCALAR || n->quoted)
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (strcmp(n->s, nulls[i]) == 0)
			return true;
	return false;
}

/* Each get_* returns true when it produced a value; null means "absent" (Kubernetes semantics). */
static bool get_str(struct ctx *c, const struct ynode *n, const char *path, const char **out)
{
	if (is_null(n))
		return false;
	if (n->t != YN_SCALAR) {
		err(c, n, path, "expected a string, got %s", desc(c, n));
		return false;
	}
	*out = n->s;
	return true;
}

static bool parse_int(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, lim;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (!*s)
		return false;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (lim - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static bool get_int(struct ctx *c, const struct ynode *n, const char *path, int64_t *out)
{
	if (is_null(n))
		return false;
	if (n->t != YN_SCALAR) {
		err(c, n, path, "expected an integer, got %s", desc(c, n));
		return false;
	}
	if (n->quoted) {
		/* Kubernetes refuses "443" for an int32 field; so do we, with a hint. */
		err(c, n, path, "expected an integer, got the string %s (remove the quotes)", desc(c, n));
		return false;
	}
	if (!parse_int(n->s, out)) {
		err(c, n, path, "expected an integer, got %s", desc(c, n));
		return false;
	}
	return true;
}

static bool get_bool(struct ctx *c, const struct ynode *n, const char *path, bool *out)
{
	/* YAML 1.1 booleans, as sigs.k8s.io/yaml (go-yaml v2) reads them. */
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };

	if (is_null(n))
		return false;
	if (n->t == YN_SCALAR && !n->quoted) {
		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (strcmp(n->s, yes[i]) == 0)
				return *out = true, true;
			if (strcmp(n->s, no[i]) == 0)
				return *out = false, true;
		}
	}
	err(c, n, path, "expected true or false, got %s", desc(c, n));
	return false;
}

static bool get_dur(struct ctx *c, const struct ynode *n, const char *path, int64_t *out)
{
	if (is_null(n))
		return false;
	if (n->t != YN_SCALAR || !kb_parse_duration_ms(n->s, out)) {
		err(c, n, path, "invalid duration %s: expected a Gateway API duration such as \"10s\", \"500ms\" or \"1m\"",
		    desc(c, n));
		return false;
	}
	return true;
}

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
#define F_END			{ .name = NULL }

#define SEQSPEC(T, E, arr, cnt, pth, flds, ini, itm)                                                   \
	{ .elem = sizeof(E), .arr_off = offsetof(T, arr), .cnt_off = offsetof(T, cnt), .path_off = pth, \
	  .fields = flds, .init = ini, .item = itm }
#define PATH_OF(E) (offsetof(E, path) + 1)

static void walk_map(struct ctx *c, const struct ynode *n, const char *path, const struct field *fields, char *t);

/* "a, b, c": one allocation, as a document may hold many unknown fields. */
static const char *join_names(struct ctx *c, const char *const *names, size_t stride, size_t n)
{
	size_t len = 1, at = 0;
	char *s;

	for (size_t i = 0; i < n; i++)
		len += strlen(*(const char *const *)((const char *)names + i * stride)) + 2;
	s = kb_alloc(&c->tmp, len);
	for (size_t i = 0; i < n; i++) {
		const char *nm = *(const char *const *)((const char *)names + i * stride);
		size_t l = strlen(nm);

		if (i) {
			memcpy(s + at, ", ", 2);
			at += 2;
		}
		memcpy(s + at, nm, l);
		at += l;
	}
	s[at] = '\0';
	return s;
}

static const char *field_names(struct ctx *c, const struct field *fields)
{
	size_t n = 0;

	while (fields[n].name)
		n++;
	return join_names(c, &fields[0].name, sizeof(fields[0]), n);
}

static void set_has(char *t, size_t aux)
{
	if (aux)
		*(bool *)(t + aux - 1) = true;
}

static void walk_seq(struct ctx *c, const struct ynode *v, const char *path, const struct seqspec *sp, char *t)
{
	if (is_null(v))
		return;
	if (v->t != YN_SEQ) {
		err(c, v, path, "expected a list, got %s", desc(c, v));
		return;
	}
	for (size_t i = 0; i < v->nkids; i++) {
		const struct ynode *it = v->kids[i];
		const char *ip = pidx(c, path, i);
		char *e;

		record(c, ip, it);
		if (it->t != YN_MAP) {
			err(c, it, ip, "expected a mapping, got %s", desc(c, it));
			continue;
		}
		e = kb_push(&c->m->arena, (void **)(t + sp->arr_off), (size_t *)(t + sp->cnt_off), sp->elem);
		if (sp->init)
			sp->init(c, e);
		if (sp->path_off)
			*(char **)(e + sp->path_off - 1) = kb_strdup(&c->m->arena, ip);
		if (sp->item)
			sp->item(c, NULL, it, ip, e);
		else
			walk_map(c, it, ip, sp->fields, e);
	}
}

/* A list of scalars; each item is converted with `conv` and stored when arr is set. */
static void walk_scalars(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	if (is_null(v))
		return;
	if (v->t != YN_SEQ) {
		err(c, v, path, "expected a list, got %s", desc(c, v));
		return;
	}
	for (size_t i = 0; i < v->nkids; i++) {
		const struct ynode *it = v->kids[i];
		const char *ip = pidx(c, path, i);
		const char *s;
		int64_t x;

		record(c, ip, it);
		if (f->type == FT_STRS && get_str(c, it, ip, &s)) {
			if (f->off != NOOFF)
				*KB_PUSH(&c->m->arena, *(char ***)(t + f->off), *(size_t *)(t + f->aux - 1)) =
					kb_strdup(&c->m->arena, s);
			else if (f->aux)
				(*(size_t *)(t + f->aux - 1))++;
		} else if (f->type == FT_INTS && get_int(c, it, ip, &x)) {
			*KB_PUSH(&c->m->arena, *(int64_t **)(t + f->off), *(size_t *)(t + f->aux - 1)) = x;
		}
	}
}

static void apply(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	const char *s;
	int64_t x;
	bool b;

	switch (f->type) {
	case FT_STR:
		if (get_str(c, v, path, &s) && f->off != NOOFF)
			*(char **)(t + f->off) = kb_strdup(&c->m->arena, s);
		break;
	case FT_INT:
		if (get_int(c, v, path, &x) && f->off != NOOFF) {
			*(int64_t *)(t + f->off) = x;
			set_has(t, f->aux);
		}
		break;
	case FT_DUR:
		if (get_dur(c, v, path, &x) && f->off != NOOFF)
			*(int64_t *)(t + f->off) = x;
		break;
	case FT_BOOL:
		if (get_bool(c, v, path, &b) && f->off != NOOFF)
			*(bool *)(t + f->off) = b;
		break;
	case FT_TRI:
		if (get_bool(c, v, path, &b))
			*(int *)(t + f->off) = b;
		break;
	case FT_STRS:
	case FT_INTS:
		walk_scalars(c, f, v, path, t);
		break;
	case FT_MAP:
		if (is_null(v))
			break;
		if (v->t != YN_MAP) {
			err(c, v, path, "expected a mapping, got %s", desc(c, v));
			break;
		}
		set_has(t + f->off, f->aux);
		walk_map(c, v, path, f->sub, t + f->off);
		break;
	case FT_SEQ:
		walk_seq(c, v, path, f->seq, t);
		break;
	case FT_COUNT:
		if (is_null(v))
			break;
		if (v->t != YN_SEQ) {
			err(c, v, path, "expected a list, got %s", desc(c, v));
			break;
		}
		for (size_t i = 0; i < v->nkids; i++)
			record(c, pidx(c, path, i), v->kids[i]);
		if (f->off != NOOFF)
			*(size_t *)(t + f->off) = v->nkids;
		break;
	case FT_FN:
		f->fn(c, f, v, path, t);
		break;
	case FT_WARN:
		/* No node: the recorded location (the key, for a block) is the one to show. */
		if (!is_null(v))
			warn(c, NULL, path, "not enforced by kbackend (accepted and ignored)");
		break;
	case FT_ANY:
	case FT_SKIP:
		break;
	}
}

/*
 * Walk one mapping against a field table. Unknown and duplicate keys are
 * errors (Kubernetes strict decoding); each known field's location is
 * recorded: the value's for a scalar, the key's for a mapping or a list.
 */
static void walk_map(struct ctx *c, const struct ynode *n, const char *path, const struct field *fields, char *t)
{
	uint64_t seen = 0;

	if (n->t != YN_MAP) {
		err(c, n, path, "expected a mapping, got %s", desc(c, n));
		return;
	}
	for (size_t i = 0; i + 1 < n->nkids; i += 2) {
		const struct ynode *k = n->kids[i], *v = n->kids[i + 1];
		const struct field *f;
		const char *fp;
		size_t idx;

		if (k->t != YN_SCALAR) {
			err(c, k, path, "mapping keys must be strings, got %s", desc(c, k));
			continue;
		}
		for (f = fields; f->name && strcmp(f->name, k->s) != 0; f++)
			;
		fp = pjoin(c, path, k->s);
		if (!f->name) {
			err(c, k, fp, "unknown field %s (valid: %s)", desc(c, k), field_names(c, fields));
			continue;
		}
		idx = (size_t)(f - fields);
		if (idx < 64 && (seen & (1ull << idx))) {
			err(c, k, fp, "duplicate field \"%s\"", f->name);
			continue;
		}
		if (idx < 64)
			seen |= 1ull << idx;
		if (f->type != FT_SKIP)
			record(c, fp, v->t == YN_SCALAR ? v : k);
		apply(c, f, v, fp, t);
	}
}

static const struct ynode *map_get(const struct ynode *n, const char *key, const struct ynode **keynode)
{
	if (!n || n->t != YN_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < n->nkids; i += 2) {
		if (n->kids[i]->t == YN_SCALAR && strcmp(n->kids[i]->s, key) == 0) {
			if (keynode)
				*keynode = n->kids[i];
			return n->kids[i + 1];
		}
	}
	return NULL;
}

/* ---- shared pieces -------------------------------------------------------------------- */

/* A LocalObjectReference / SecretObjectReference: checked, not stored. */
static const struct field objref_fields[] = {
	F_STRX("group"), F_STRX("kind"), F_STRX("name"), F_STRX("namespace"), F_END,
};

/* ---- Backend ------------------------------------------------------------------------------ */

struct ep_addr {
	bool set;		/* the key was written with a non-null value */
	bool scalar;		/* seed shape: `ip: 1.2.3.4` */
	const char *addr;
	int64_t port;
	bool has_port;
};

/* One endpoint, before it is folded into struct kb_endpoint. */
struct ep_scratch {
	struct ep_addr a[3];	/* ip, fqdn, unix */
	const char *hostname, *zone;
	int64_t port;		/* seed shape: sibling of the address */
	bool has_port;
};

static const struct field ep_ip_fields[] = {
	F_STR("address", struct ep_addr, addr), F_INTH("port", struct ep_addr, port, has_port), F_END,
};
static const struct field ep_fqdn_fields[] = {
	F_STR("hostname", struct ep_addr, addr), F_INTH("port", struct ep_addr, port, has_port), F_END,
};
static const struct field ep_unix_fields[] = {
	F_STR("path", struct ep_addr, addr), F_END,
};

/* `ip`, `fqdn`, `unix`: the real API's mapping, or the seed's scalar. */
static void ep_addr_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	static const struct field *const subs[] = { ep_ip_fields, ep_fqdn_fields, ep_unix_fields };
	struct ep_scratch *s = (struct ep_scratch *)t;
	size_t which = f->off;
	struct ep_addr *a = &s->a[which];

	if (is_null(v))
		return;
	if (v->t == YN_SEQ) {
		err(c, v, path, "expected a mapping or a string, got a list");
		return;
	}
	a->set = true;
	if (v->t == YN_SCALAR) {
		a->scalar = true;
		a->addr = v->s;
		return;
	}
	walk_map(c, v, path, subs[which], (char *)a);
}

static const struct field ep_fields[] = {
	F_FNO("ip", ep_addr_fn, 0),
	F_FNO("fqdn", ep_addr_fn, 1),
	F_FNO("unix", ep_addr_fn, 2),
	F_STR("hostname", struct ep_scratch, hostname),
	F_STR("zone", struct ep_scratch, zone),
	F_INTH("port", struct ep_scratch, port, has_port),
	F_END,
};

static void ep_item(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	static const enum kb_ep_type types[] = { KB_EP_IP, KB_EP_FQDN, KB_EP_UNIX };
	static const unsigned bits[] = { KB_EP_HAS_IP, KB_EP_HAS_FQDN, KB_EP_HAS_UNIX };
	static const char *const names[] = { "ip", "fqdn", "unix" };
	struct kb_endpoint *ep = (struct kb_endpoint *)t;
	struct ep_scratch s = { 0 };
	struct ep_addr *first = NULL;
	size_t fi = 0;

	walk_map(c, v, path, ep_fields, (char *)&s);
	ep->hostname = kb_strdup(&c->m->arena, s.hostname);
	ep->zone = kb_strdup(&c->m->arena, s.zone);
	for (size_t i = 0; i < 3; i++) {
		if (!s.a[i].set)
			continue;
		ep->present |= bits[i];
		if (!first) {
			first = &s.a[i];
			fi = i;
		}
	}
	if (!first) {
		ep->type = KB_EP_NONE;
		if (s.has_port) {
			ep->port = s.port;
			ep->has_port = true;
		}
		return;
	}
	ep->type = types[fi];
	ep->address = kb_strdup(&c->m->arena, first->addr);
	ep->seed_shape = first->scalar;
	if (first->has_port) {
		ep->port = first->port;
		ep->has_port = true;
	}
	if (s.has_port) {
		const struct ynode *pk = NULL, *pv = map_get(v, "port", &pk);

		if (first->has_port) {
			err(c, pv ? pv : v, pjoin(c, path, "port"), "port is set twice: here and in %s.port",
			    names[fi]);
		} else {
			ep->port = s.port;
			ep->has_port = true;
			ep->seed_shape = true;
		}
	}
}

static const struct seqspec backend_eps = SEQSPEC(struct kb_backend, struct kb_endpoint, endpoints, nendpoints,
						  PATH_OF(struct kb_endpoint), NULL, NULL, ep_item);

static void endpoints_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_backend *b = (struct kb_backend *)t;

	if (!is_null(v))
		b->has_endpoints = true;
	walk_seq(c, v, path, &backend_eps, t);
}

static void app_protocol_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_backend *b = (struct kb_backend *)t;
	const char *s;

	/* The seed's singular form; validate judges the value like any appProtocols entry. */
	if (get_str(c, v, path, &s))
		*KB_PUSH(&c->m->arena, b->app_protocols, b->napp_protocols) = kb_strdup(&c->m->arena, s);
}

static const struct field fallback_ref_fields[] = {
	F_STR("name", struct kb_backend, fallback_ref_name),
	F_STR("namespace", struct kb_backend, fallback_ref_namespace),
	F_INTH("port", struct kb_backend, fallback_ref_port, has_fallback_ref_port),
	F_END,
};

static const struct field fallback_seed_fields[] = {
	F_MAPH("backendRef", struct kb_backend, has_fallback_ref, fallback_ref_fields),
	F_END,
};

/* `fallback: true` (real API) or `fallback: {backendRef: {...}}` (seed). */
static void fallback_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_backend *b = (struct kb_backend *)t;

	if (is_null(v))
		return;
	if (v->t == YN_MAP) {
		walk_map(c, v, path, fallback_seed_fields, t);
		return;
	}
	if (v->t == YN_SCALAR && !v->quoted) {
		bool x;

		if (get_bool(c, v, path, &x))
			b->fallback = x;
		return;
	}
	err(c, v, path, "expected true or false (or the seed's {backendRef: ...}), got %s", desc(c, v));
}

static void count_refs_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	if (is_null(v))
		return;
	if (v->t != YN_SEQ) {
		err(c, v, path, "expected a list, got %s", desc(c, v));
		return;
	}
	for (size_t i = 0; i < v->nkids; i++) {
		const char *ip = pidx(c, path, i);

		record(c, ip, v->kids[i]);
		walk_map(c, v->kids[i], ip, objref_fields, NULL);
	}
	*(size_t *)(t + f->off) += v->nkids;
}

static void client_cert_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	if (is_null(v))
		return;
	walk_map(c, v, path, objref_fields, NULL);
	((struct kb_backend_tls *)t)->has_client_cert = true;
}

static const struct field backend_tls_fields[] = {
	F_TRI("insecureSkipVerify", struct kb_backend_tls, insecure_skip_verify),
	F_STR("wellKnownCACertificates", struct kb_backend_tls, well_known_ca),
	F_FNO("caCertificateRefs", count_refs_fn, offsetof(struct kb_backend_tls, n_ca_refs)),
	F_STR("sni", struct kb_backend_tls, sni),
	F_BOOL("autoSNIFromEndpointHostname", struct kb_backend_tls, auto_sni),
	F_STR("minVersion", struct kb_backend_tls, min_version),
	F_STR("maxVersion", struct kb_backend_tls, max_version),
	F_STRSN("ciphers", struct kb_backend_tls, n_ciphers),
	F_STRSX("ecdhCurves"),
	F_STRSX("signatureAlgorithms"),
	F_STRSX("alpnProtocols"),
	F_FN("clientCertificateRef", client_cert_fn),
	F_ANY("session"),
	F_END,
};

static const struct field backend_spec[] = {
	F_FN("endpoints", endpoints_fn),
	F_STR("type", struct kb_backend, type),
	F_STRS("appProtocols", struct kb_backend, app_protocols, napp_protocols),
	F_FN("appProtocol", app_protocol_fn),
	F_FN("fallback", fallback_fn),
	F_MAP("tls", struct kb_backend, tls, struct kb_backend_tls, backend_tls_fields),
	F_END,
};

static void backend_init(struct ctx *c, char *t)
{
	((struct kb_backend *)t)->tls.insecure_skip_verify = -1;
}

/* ---- Gateway ------------------------------------------------------------------------------- */

static const struct field gw_address_fields[] = {
	F_STR("type", struct kb_gw_address, type), F_STR("value", struct kb_gw_address, value), F_END,
};

static void gw_address_init(struct ctx *c, char *e)
{
	/* Gateway API's default address type. */
	((struct kb_gw_address *)e)->type = "IPAddress";
}

static const struct field listener_fields[] = {
	F_STR("name", struct kb_listener, name),
	F_INT("port", struct kb_listener, port),
	F_STR("protocol", struct kb_listener, protocol),
	F_STR("hostname", struct kb_listener, hostname),
	F_ANY("tls"),
	F_ANY("allowedRoutes"),
	F_END,
};

static const struct seqspec gw_addresses = SEQSPEC(struct kb_gateway, struct kb_gw_address, addresses, naddresses,
						   0, gw_address_fields, gw_address_init, NULL);
static const struct seqspec gw_listeners = SEQSPEC(struct kb_gateway, struct kb_listener, listeners, nlisteners,
						   PATH_OF(struct kb_listener), listener_fields, NULL, NULL);

static const struct field gateway_spec[] = {
	F_STR("gatewayClassName", struct kb_gateway, gateway_class),
	F_SEQ("addresses", &gw_addresses),
	F_SEQ("listeners", &gw_listeners),
	F_ANY("infrastructure"),
	F_ANY("backendTLS"),
	F_ANY("allowedListeners"),
	F_ANY("defaultScope"),
	F_END,
};

/* ---- routes -------------------------------------------------------------------------------- */

static const struct field parent_ref_fields[] = {
	F_STR("group", struct kb_parent_ref, group),
	F_STR("kind", struct kb_parent_ref, kind),
	F_STR("name", struct kb_parent_ref, name),
	F_STR("namespace", struct kb_parent_ref, namespace),
	F_STR("sectionName", struct kb_parent_ref, section_name),
	F_INTH("port", struct kb_parent_ref, port, has_port),
	F_END,
};

static const struct field backend_ref_fields[] = {
	F_STR("group", struct kb_backend_ref, group),
	F_STR("kind", struct kb_backend_ref, kind),
	F_STR("name", struct kb_backend_ref, name),
	F_STR("namespace", struct kb_backend_ref, namespace),
	F_INTH("port", struct kb_backend_ref, port, has_port),
	F_INTH("weight", struct kb_backend_ref, weight, has_weight),
	F_COUNT("filters", struct kb_backend_ref, nfilters),
	F_BOOL("fallback", struct kb_backend_ref, fallback),
	F_END,
};

static void backend_ref_init(struct ctx *c, char *e)
{
	((struct kb_backend_ref *)e)->weight = 1;
}

static const struct seqspec rule_refs = SEQSPEC(struct kb_route_rule, struct kb_backend_ref, refs, nrefs,
						PATH_OF(struct kb_backend_ref), backend_ref_fields, backend_ref_init,
						NULL);

static const struct field rule_fields[] = {
	F_STRX("name"),
	F_COUNT("matches", struct kb_route_rule, nmatches),
	F_COUNT("filters", struct kb_route_rule, nfilters),
	F_SEQ("backendRefs", &rule_refs),
	F_ANY("timeouts"),
	F_ANY("retry"),
	F_ANY("sessionPersistence"),
	F_END,
};

static const struct seqspec route_parents = SEQSPEC(struct kb_route, struct kb_parent_ref, parents, nparents,
						    PATH_OF(struct kb_parent_ref), parent_ref_fields, NULL, NULL);
static const struct seqspec route_rules = SEQSPEC(struct kb_route, struct kb_route_rule, rules, nrules,
						  PATH_OF(struct kb_route_rule), rule_fields, NULL, NULL);

static const struct field route_spec[] = {
	F_SEQ("parentRefs", &route_parents),
	F_STRS("hostnames", struct kb_route, hostnames, nhostnames),
	F_SEQ("rules", &route_rules),
	F_ANY("useDefaultGateways"),
	F_END,
};

/* ---- BackendTrafficPolicy ------------------------------------------------------------------- */

static const struct field target_ref_fields[] = {
	F_STR("group", struct kb_target_ref, group),
	F_STR("kind", struct kb_target_ref, kind),
	F_STR("name", struct kb_target_ref, name),
	F_STR("sectionName", struct kb_target_ref, section_name),
	F_END,
};

static const struct seqspec btp_targets = SEQSPEC(struct kb_btp, struct kb_target_ref, targets, ntargets,
						  PATH_OF(struct kb_target_ref), target_ref_fields, NULL, NULL);

/* Older Envoy Gateway: a single `targetRef`; it joins the same list. */
static void target_ref_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_btp *p = (struct kb_btp *)t;
	struct kb_target_ref *r;

	if (is_null(v))
		return;
	if (v->t != YN_MAP) {
		err(c, v, path, "expected a mapping, got %s", desc(c, v));
		return;
	}
	r = KB_PUSH(&c->m->arena, p->targets, p->ntargets);
	r->path = kb_strdup(&c->m->arena, path);
	walk_map(c, v, path, target_ref_fields, (char *)r);
}

static const struct field hc_http_fields[] = {
	F_STR("path", struct kb_active_hc, http_path),
	F_STR("method", struct kb_active_hc, http_method),
	F_INTS("expectedStatuses", struct kb_active_hc, expected_statuses, nexpected_statuses),
	F_STRX("hostname"),
	F_WARN("expectedResponse"),
	F_END,
};

static const struct field hc_active_fields[] = {
	F_STR("type", struct kb_active_hc, type),
	F_DUR("timeout", struct kb_active_hc, timeout_ms),
	F_DUR("interval", struct kb_active_hc, interval_ms),
	F_INT("unhealthyThreshold", struct kb_active_hc, unhealthy_threshold),
	F_INT("healthyThreshold", struct kb_active_hc, healthy_threshold),
	F_DURX("initialJitter"),
	F_SUB("http", hc_http_fields),
	F_WARN("tcp"),
	F_WARN("grpc"),
	F_END,
};

static const struct field hc_passive_fields[] = {
	F_DUR("baseEjectionTime", struct kb_passive_hc, base_ejection_ms),
	F_DUR("interval", struct kb_passive_hc, interval_ms),
	F_INT("maxEjectionPercent", struct kb_passive_hc, max_ejection_percent),
	F_INT("consecutive5XxErrors", struct kb_passive_hc, consecutive_5xx),
	F_INT("consecutiveGatewayErrors", struct kb_passive_hc, consecutive_gateway_errors),
	F_INT("consecutiveLocalOriginFailures", struct kb_passive_hc, consecutive_local_origin_failures),
	F_TRI("splitExternalLocalOriginErrors", struct kb_passive_hc, split_external_local_origin_errors),
	F_WARN("failurePercentageThreshold"),
	F_END,
};

static const struct field btp_hc_fields[] = {
	F_MAP("active", struct kb_btp, active, struct kb_active_hc, hc_active_fields),
	F_MAP("passive", struct kb_btp, passive, struct kb_passive_hc, hc_passive_fields),
	F_INT("panicThreshold", struct kb_btp, panic_threshold),
	F_END,
};

static const struct field btp_dns_fields[] = {
	F_DUR("dnsRefreshRate", struct kb_btp, dns_refresh_ms),
	F_TRI("respectDnsTtl", struct kb_btp, respect_dns_ttl),
	F_STR("lookupFamily", struct kb_btp, lookup_family),
	F_END,
};

static const struct field btp_chash_fields[] = {
	F_STR("type", struct kb_btp, consistent_hash_type),
	F_ANY("header"),
	F_ANY("headers"),
	F_ANY("cookie"),
	F_INTX("tableSize"),
	F_END,
};

static const struct field btp_lb_fields[] = {
	F_STR("type", struct kb_btp, lb_type),
	F_SUB("consistentHash", btp_chash_fields),
	F_WARN("slowStart"),
	F_WARN("zoneAware"),
	F_WARN("endpointOverride"),
	F_END,
};

static const struct field btp_spec[] = {
	F_SEQ("targetRefs", &btp_targets),
	F_FN("targetRef", target_ref_fn),
	F_WARN("targetSelectors"),
	F_SUB("healthCheck", btp_hc_fields),
	F_MAPH("dns", struct kb_btp, has_dns, btp_dns_fields),
	F_SUB("loadBalancer", btp_lb_fields),
	F_WARN("mergeType"),
	F_WARN("retry"),
	F_WARN("timeout"),
	F_WARN("circuitBreaker"),
	F_WARN("rateLimit"),
	F_WARN("faultInjection"),
	F_WARN("tcpKeepalive"),
	F_WARN("connection"),
	F_WARN("proxyProtocol"),
	F_WARN("compression"),
	F_WARN("compressor"),
	F_WARN("http2"),
	F_WARN("httpUpgrade"),
	F_WARN("useClientProtocol"),
	F_WARN("responseOverride"),
	F_WARN("telemetry"),
	F_WARN("requestBuffer"),
	F_WARN("routingType"),
	F_END,
};

static void btp_init(struct ctx *c, char *t)
{
	struct kb_btp *p = (struct kb_btp *)t;

	p->active.timeout_ms = p->active.interval_ms = -1;
	p->active.unhealthy_threshold = p->active.healthy_threshold = -1;
	p->passive.base_ejection_ms = p->passive.interval_ms = -1;
	p->passive.max_ejection_percent = -1;
	p->passive.consecutive_local_origin_failures = -1;
	p->passive.consecutive_5xx = p->passive.consecutive_gateway_errors = -1;
	p->passive.split_external_local_origin_errors = -1;
	p->dns_refresh_ms = -1;
	p->respect_dns_ttl = -1;
	p->panic_threshold = -1;
}

/* ---- ReferenceGrant, EnvoyGateway ---------------------------------------------------------------- */

static const struct field grant_from_fields[] = {
	F_STR("group", struct kb_grant_from, group),
	F_STR("kind", struct kb_grant_from, kind),
	F_STR("namespace", struct kb_grant_from, namespace),
	F_END,
};
static const struct field grant_to_fields[] = {
	F_STR("group", struct kb_grant_to, group),
	F_STR("kind", struct kb_grant_to, kind),
	F_STR("name", struct kb_grant_to, name),
	F_END,
};
static const struct seqspec grant_from = SEQSPEC(struct kb_reference_grant, struct kb_grant_from, from, nfrom, 0,
						 grant_from_fields, NULL, NULL);
static const struct seqspec grant_to = SEQSPEC(struct kb_reference_grant, struct kb_grant_to, to, nto, 0,
					       grant_to_fields, NULL, NULL);

static const struct field grant_spec[] = {
	F_SEQ("from", &grant_from), F_SEQ("to", &grant_to), F_END,
};

static const struct field eg_ext_fields[] = {
	F_TRI("enableBackend", struct kb_envoy_gateway, enable_backend),
	F_BOOLX("enableEnvoyPatchPolicy"),
	F_END,
};

static void eg_init(struct ctx *c, char *t)
{
	((struct kb_envoy_gateway *)t)->enable_backend = -1;
}

/* ---- top level ----------------------------------------------------------------------------------- */

#define TOP_COMMON F_SKIP("apiVersion"), F_SKIP("kind"), F_SKIP("metadata")

static const struct field top_backend[] = { TOP_COMMON, F_SUB("spec", backend_spec), F_ANY("status"), F_END };
static const struct field top_gateway[] = { TOP_COMMON, F_SUB("spec", gateway_spec), F_ANY("status"), F_END };
static const struct field top_route[] = { TOP_COMMON, F_SUB("spec", route_spec), F_ANY("status"), F_END };
static const struct field top_btp[] = { TOP_COMMON, F_SUB("spec", btp_spec), F_ANY("status"), F_END };
static const struct field top_grant[] = { TOP_COMMON, F_SUB("spec", grant_spec), F_ANY("status"), F_END };
static const struct field top_other[] = { TOP_COMMON, F_ANY("spec"), F_ANY("status"), F_END };

/* The EnvoyGateway config document has no spec: its fields sit at the top. */
static const struct field top_envoy_gateway[] = {
	TOP_COMMON,
	F_SUB("extensionApis", eg_ext_fields),
	F_ANY("gateway"),
	F_ANY("provider"),
	F_ANY("logging"),
	F_ANY("admin"),
	F_ANY("telemetry"),
	F_ANY("rateLimit"),
	F_ANY("extensionManager"),
	F_ANY("topologyInjector"),
	F_ANY("runtimeFlags"),
	F_ANY("xdsServer"),
	F_END,
};

/* ObjectMeta: name and namespace are read first; the rest is accepted and ignored. */
static const struct field meta_fields[] = {
	F_SKIP("name"), F_SKIP("namespace"),
	F_ANY("labels"), F_ANY("annotations"), F_ANY("uid"), F_ANY("resourceVersion"),
	F_ANY("creationTimestamp"), F_ANY("generation"), F_ANY("managedFields"), F_ANY("generateName"),
	F_ANY("ownerReferences"), F_ANY("finalizers"), F_ANY("deletionTimestamp"),
	F_ANY("deletionGracePeriodSeconds"), F_ANY("selfLink"), F_ANY("clusterName"),
	F_END,
};

struct kind_info {
	const char *group;
	const char *alt_group;	/* an older group also accepted */
	size_t size;
	const struct field *top;
	void (*init)(struct ctx *c, char *t);
};

static const struct kind_info kinds[KB_KIND__COUNT] = {
	[KB_KIND_ENVOY_GATEWAY] = { "gateway.envoyproxy.io", "config.gateway.envoyproxy.io",
				    sizeof(struct kb_envoy_gateway), top_envoy_gateway, eg_init },
	[KB_KIND_GATEWAY] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_gateway), top_gateway, NULL },
	[KB_KIND_HTTPROUTE] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_route), top_route, NULL },
	[KB_KIND_GRPCROUTE] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_route), top_route, NULL },
	[KB_KIND_TLSROUTE] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_route), top_route, NULL },
	[KB_KIND_TCPROUTE] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_route), top_route, NULL },
	[KB_KIND_UDPROUTE] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_route), top_route, NULL },
	[KB_KIND_BACKEND] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_backend), top_backend, backend_init },
	[KB_KIND_BACKEND_TRAFFIC_POLICY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_btp), top_btp, btp_init },
	[KB_KIND_REFERENCE_GRANT] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_reference_grant),
				      top_grant, NULL },
	[KB_KIND_BACKEND_TLS_POLICY] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_other), top_other,
					 NULL },
	[KB_KIND_ENVOY_EXTENSION_POLICY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_SECURITY_POLICY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_ENVOY_PROXY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_GATEWAY_CLASS] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_other), top_other, NULL },
};

static const char *supported_kinds(struct ctx *c)
{
	const char *names[KB_KIND__COUNT];

	for (int k = 1; k < KB_KIND__COUNT; k++)
		names[k - 1] = kb_kind_name((enum kb_kind)k);
	return join_names(c, names, sizeof(names[0]), KB_KIND__COUNT - 1);
}

/* Kubernetes API versions: v1, v1beta1, v1alpha2, ... */
static bool valid_version(const char *v)
{
	if (*v++ != 'v' || *v < '1' || *v > '9')
		return false;
	while (*v >= '0' && *v <= '9')
		v++;
	if (!*v)
		return true;
	if (strncmp(v, "alpha", 5) == 0)
		v += 5;
	else if (strncmp(v, "beta", 4) == 0)
		v += 4;
	else
		return false;
	if (*v < '1' || *v > '9')
		return false;
	while (*v >= '0' && *v <= '9')
		v++;
	return !*v;
}

/* The apiVersion must name the kind's group; the object is still added when it does not. */
static void check_api_version(struct ctx *c, const struct kind_info *ki, const struct ynode *av, enum kb_kind k)
{
	const char *s = av->s, *slash = strchr(s, '/');
	size_t glen = slash ? (size_t)(slash - s) : 0;
	bool group_ok;

	group_ok = slash && ((strlen(ki->group) == glen && strncmp(s, ki->group, glen) == 0) ||
			     (ki->alt_group && strlen(ki->alt_group) == glen && strncmp(s, ki->alt_group, glen) == 0));
	if (!group_ok) {
		err(c, av, "apiVersion", "apiVersion \"%s\" does not match kind %s (expected %s/<version>)", s,
		    kb_kind_name(k), ki->group);
		return;
	}
	if (!valid_version(slash + 1))
		err(c, av, "apiVersion", "apiVersion \"%s\": \"%s\" is not an API version (v1, v1beta1, v1alpha2...)", s,
		    slash + 1);
}

static void process_object(struct ctx *c, const struct ynode *root, int doc_index, int depth);

/* libyaml marks count characters; walk UTF-8 forward to the byte offset (objects come in order). */
static size_t char_to_byte(struct ctx *c, size_t idx)
{
	if (idx < c->cur_chars) {
		c->cur_chars = 0;
		c->cur_bytes = c->base_bytes;
	}
	while (c->cur_chars < idx && c->cur_bytes < c->len) {
		c->cur_bytes++;
		while (c->cur_bytes < c->len && ((unsigned char)c->buf[c->cur_bytes] & 0xC0) == 0x80)
			c->cur_bytes++;
		c->cur_chars++;
	}
	return c->cur_bytes;
}

/*
 * The object's own text, so the daemon can store exactly what was applied.
 * An object that does not start at column 1 (a List item) is re-indented
 * with spaces in place of whatever preceded it on its first line ("- "), so
 * the copy is a valid document on its own.
 */
static void set_src(struct ctx *c, struct kb_meta *obj, const struct ynode *root)
{
	size_t from, to, pad = root->loc.col > 1 ? (size_t)root->loc.col - 1 : 0;
	char *s;

	if (!c->src_ok || root->end < root->start)
		return;
	from = char_to_byte(c, root->start);
	to = char_to_byte(c, root->end);
	if (to < from || to > c->len)
		return;
	s = kb_alloc(&c->m->arena, pad + (to - from) + 1);
	memset(s, ' ', pad);
	memcpy(s + pad, c->buf + from, to - from);
	obj->src = s;
	obj->src_len = pad + (to - from);
}

/* kubectl's `kind: List` (e.g. `kubectl get -o yaml` output): each item is an object. */
static void process_list(struct ctx *c, const struct ynode *root, int doc_index, int depth)
{
	const struct ynode *items = map_get(root, "items", NULL);

	if (is_null(items))
		return;
	if (items->t != YN_SEQ) {
		err(c, items, "items", "expected a list, got %s", desc(c, items));
		return;
	}
	for (size_t i = 0; i < items->nkids; i++)
		process_object(c, items->kids[i], doc_index, depth + 1);
}

static void process_object(struct ctx *c, const struct ynode *root, int doc_index, int depth)
{
	const struct ynode *kind, *av, *md, *name = NULL, *ns = NULL, *kk = NULL, *ak = NULL, *mk = NULL;
	const struct kind_info *ki;
	struct kb_meta *obj;
	bool add = true;
	enum kb_kind k;

	c->obj = NULL;
	if (depth > 4) {
		err(c, root, NULL, "kind: List nested too deeply");
		return;
	}
	if (root->t != YN_MAP) {
		err(c, root, NULL, "a document must be a mapping (a Kubernetes object), got %s", desc(c, root));
		return;
	}
	kind = map_get(root, "kind", &kk);
	av = map_get(root, "apiVersion", &ak);
	if (is_null(kind)) {
		err(c, kind ? kind : root, NULL, "missing required field \"kind\"");
		return;
	}
	if (kind->t != YN_SCALAR) {
		err(c, kind, "kind", "expected a string, got %s", desc(c, kind));
		return;
	}
	if (av && av->t != YN_SCALAR) {
		err(c, av, "apiVersion", "expected a string, got %s", desc(c, av));
		return;
	}
	if (is_null(av))
		av = NULL;
	if (strcmp(kind->s, "List") == 0 && (!av || strcmp(av->s, "v1") == 0)) {
		process_list(c, root, doc_index, depth);
		return;
	}
	k = kb_kind_from_name(kind->s);
	if (k == KB_KIND_UNKNOWN) {
		if (av)
			err(c, kind, NULL, "kind \"%s\" (apiVersion \"%s\") is not supported; supported kinds: %s", kind->s,
			    av->s, supported_kinds(c));
		else
			err(c, kind, NULL, "kind \"%s\" is not supported; supported kinds: %s", kind->s,
			    supported_kinds(c));
		return;
	}
	ki = &kinds[k];

	obj = kb_alloc(&c->m->arena, ki->size);
	obj->kind = k;
	obj->loc = root->loc;
	obj->doc_index = doc_index;
	obj->namespace = "default";
	if (ki->init)
		ki->init(c, (char *)obj);

	/* Identity first, so every later message names the object. */
	md = map_get(root, "metadata", &mk);
	if (!is_null(md) && md->t == YN_MAP) {
		name = map_get(md, "name", NULL);
		ns = map_get(md, "namespace", NULL);
		if (name && name->t == YN_SCALAR && !is_null(name))
			obj->name = kb_strdup(&c->m->arena, name->s);
		if (ns && ns->t == YN_SCALAR && !is_null(ns) && *ns->s)
			obj->namespace = kb_strdup(&c->m->arena, ns->s);
	}
	if (!obj->name && k == KB_KIND_ENVOY_GATEWAY)
		obj->name = "envoy-gateway";
	c->obj = obj;
	record(c, "kind", kind);
	if (av) {
		record(c, "apiVersion", av);
		obj->api_version = kb_strdup(&c->m->arena, av->s);
		check_api_version(c, ki, av, k);
	} else {
		err(c, ak ? ak : root, "apiVersion", "missing required field \"apiVersion\"");
		add = false;
	}

	if (!is_null(md)) {
		record(c, "metadata", mk);
		if (md->t != YN_MAP) {
			err(c, md, "metadata", "expected a mapping, got %s", desc(c, md));
		} else {
			const char *s;

			walk_map(c, md, "metadata", meta_fields, NULL);
			if (name) {
				record(c, "metadata.name", name);
				get_str(c, name, "metadata.name", &s);
			}
			if (ns) {
				record(c, "metadata.namespace", ns);
				get_str(c, ns, "metadata.namespace", &s);
			}
		}
	}
	/* Without a name the object cannot carry status: report it and leave it out. */
	if (!obj->name) {
		if (is_null(name))
			err(c, name ? name : mk ? mk : root, "metadata.name", "missing required field \"metadata.name\"");
		add = false;
	} else if (!*obj->name) {
		err(c, name, "metadata.name", "must not be empty");
		add = false;
	}

	walk_map(c, root, "", ki->top, (char *)obj);
	set_src(c, obj, root);
	if (add)
		kb_model_add_object(c->m, obj);
	c->obj = NULL;
}

/* ---- the event loop -------------------------------------------------------------------------- */

struct builder {
	struct ynode *root;
	struct ynode *stack[MAX_DEPTH];
	int depth;
	size_t nnodes;
	bool bad;		/* an alias or NUL was reported: this document is not processed */
};

static struct kb_loc mark_loc(struct ctx *c, yaml_mark_t mk)
{
	return (struct kb_loc){ .file = c->file, .line = (int)mk.line + 1, .col = (int)mk.column + 1 };
}

static struct ynode *node_new(struct ctx *c, struct builder *b, enum ynt t, yaml_mark_t mk)
{
	struct ynode *n = kb_alloc(&c->tmp, sizeof(*n));

	n->t = t;
	n->loc = mark_loc(c, mk);
	n->start = n->end = mk.index;
	if (b->depth == 0) {
		b->root = n;
	} else {
		struct ynode *p = b->stack[b->depth - 1];

		*KB_PUSH(&c->tmp, p->kids, p->nkids) = n;
	}
	b->nnodes++;
	return n;
}

/* Reader errors carry only a byte offset; count lines up to it. */
static struct kb_loc offset_loc(struct ctx *c, const char *buf, size_t len, size_t off)
{
	struct kb_loc l = { .file = c->file, .line = 1, .col = 1 };

	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			l.line++;
			l.col = 1;
		} else {
			l.col++;
		}
	}
	return l;
}

static void syntax_error(struct ctx *c, yaml_parser_t *p, const char *buf, size_t len)
{
	struct kb_loc loc;

	if (p->error == YAML_MEMORY_ERROR) {
		kb_diag_add_at(c->m, KB_SEV_ERROR, (struct kb_loc){ .file = c->file }, "YAML parser: out of memory");
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		loc = offset_loc(c, buf, len, p->problem_offset);
		kb_diag_add_at(c->m, KB_SEV_ERROR, loc, "YAML syntax error: %s", p->problem ? p->problem : "bad input");
		return;
	}
	loc = mark_loc(c, p->problem_mark);
	if (p->context)
		kb_diag_add_at(c->m, KB_SEV_ERROR, loc, "YAML syntax error: %s (%s at line %zu, column %zu)",
			       p->problem ? p->problem : "invalid YAML", p->context, p->context_mark.line + 1,
			       p->context_mark.column + 1);
	else
		kb_diag_add_at(c->m, KB_SEV_ERROR, loc, "YAML syntax error: %s", p->problem ? p->problem : "invalid YAML");
}

/* Returns false to stop reading the stream. */
static bool on_event(struct ctx *c, struct builder *b, yaml_event_t *ev, int *ndocs)
{
	struct ynode *n;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		memset(b, 0, sizeof(*b));
		if (++*ndocs > MAX_DOCS) {
			kb_diag_add_at(c->m, KB_SEV_ERROR, mark_loc(c, ev->start_mark),
				       "too many YAML documents (more than %d)", MAX_DOCS);
			return false;
		}
		break;
	case YAML_DOCUMENT_END_EVENT:
		/* Empty documents (comments only, a trailing ---) are skipped silently. */
		if (!b->bad && b->root && !is_null(b->root))
			process_object(c, b->root, *ndocs - 1, 0);
		kb_arena_free(&c->tmp);
		memset(b, 0, sizeof(*b));
		break;
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (b->depth >= MAX_DEPTH) {
			kb_diag_add_at(c->m, KB_SEV_ERROR, mark_loc(c, ev->start_mark),
				       "YAML nesting is deeper than %d levels", MAX_DEPTH);
			return false;
		}
		n = node_new(c, b, ev->type == YAML_MAPPING_START_EVENT ? YN_MAP : YN_SEQ, ev->start_mark);
		b->stack[b->depth++] = n;
		break;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		if (b->depth > 0)
			b->stack[--b->depth]->end = ev->end_mark.index;
		break;
	case YAML_SCALAR_EVENT: {
		const char *v = (const char *)ev->data.scalar.value;
		size_t l = ev->data.scalar.length;
		const char *tag = (const char *)ev->data.scalar.tag;

		n = node_new(c, b, YN_SCALAR, ev->start_mark);
		n->end = ev->end_mark.index;
		if (memchr(v, '\0', l)) {
			kb_diag_add_at(c->m, KB_SEV_ERROR, n->loc, "YAML scalar contains a NUL character");
			b->bad = true;
			n->s = "";
			break;
		}
		n->s = kb_strndup(&c->tmp, v, l);
		n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
			    (tag && strcmp(tag, "tag:yaml.org,2002:str") == 0);
		break;
	}
	case YAML_ALIAS_EVENT:
		/* Aliases would let a small input expand exponentially ("billion laughs"); manifests don't need them. */
		n = node_new(c, b, YN_SCALAR, ev->start_mark);
		n->s = "";
		if (!b->bad)
			kb_diag_add_at(c->m, KB_SEV_ERROR, n->loc, "YAML aliases are not supported (*%s)",
				       (const char *)ev->data.alias.anchor);
		b->bad = true;
		break;
	default:
		break;
	}
	if (b->nnodes > MAX_NODES) {
		kb_diag_add_at(c->m, KB_SEV_ERROR, mark_loc(c, ev->start_mark),
			       "YAML document has too many nodes (more than %u)", MAX_NODES);
		return false;
	}
	return true;
}

int kb_manifest_load_buffer(struct kb_model *m, const char *name, const char *buf, size_t len)
{
	struct ctx c = { .m = m, .file = kb_strdup(&m->arena, name ? name : "<input>"), .buf = buf ? buf : "",
			 .len = buf ? len : 0 };
	struct builder b = { 0 };
	yaml_parser_t p;
	yaml_event_t ev;
	int ndocs = 0;

	if (!yaml_parser_initialize(&p)) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = c.file }, "YAML parser: out of memory");
		return -1;
	}
	/* UTF-16 input (by BOM) is decoded by libyaml; its text can't be sliced by UTF-8 offsets. */
	c.src_ok = !(c.len >= 2 && (((unsigned char)c.buf[0] == 0xFE && (unsigned char)c.buf[1] == 0xFF) ||
				    ((unsigned char)c.buf[0] == 0xFF && (unsigned char)c.buf[1] == 0xFE)));
	if (c.len >= 3 && memcmp(c.buf, "\xEF\xBB\xBF", 3) == 0)
		c.base_bytes = c.cur_bytes = 3;
	yaml_parser_set_input_string(&p, (const unsigned char *)c.buf, c.len);
	for (;;) {
		yaml_event_type_t type;
		bool more;

		if (!yaml_parser_parse(&p, &ev)) {
			/* Stop this file; what earlier documents produced stays in the model. */
			syntax_error(&c, &p, buf, len);
			break;
		}
		type = ev.type;
		more = on_event(&c, &b, &ev, &ndocs);
		yaml_event_delete(&ev);
		if (!more || type == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&p);
	kb_arena_free(&c.tmp);
	return 0;
}

/* ---- files, directories, stdin ------------------------------------------------------------------ */

static int read_fd(int fd, char **out, size_t *outlen)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap), *nb;
	ssize_t r;

	if (!buf)
		return ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap >= MAX_FILE) {
				free(buf);
				return EFBIG;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return ENOMEM;
			}
			buf = nb;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			return e;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

static int load_fd(struct kb_model *m, const char *name, int fd)
{
	char *buf = NULL;
	size_t len = 0;
	int e = read_fd(fd, &buf, &len);

	if (e) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = kb_strdup(&m->arena, name) }, "cannot read: %s",
			       strerror(e));
		return -1;
	}
	kb_manifest_load_buffer(m, name, buf, len);
	free(buf);
	return 0;
}

static int load_file(struct kb_model *m, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = kb_strdup(&m->arena, path) }, "cannot open: %s",
			       strerror(errno));
		return -1;
	}
	rc = load_fd(m, path, fd);
	close(fd);
	return rc;
}

static bool yaml_name(const char *n)
{
	size_t l = strlen(n);

	return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) || (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_dir(struct kb_model *m, const char *dir)
{
	struct kb_arena tmp = { 0 };
	char **names = NULL;
	size_t n = 0, loaded = 0;
	struct dirent *de;
	int rc = 0;
	DIR *d;

	d = opendir(dir);
	if (!d) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = kb_strdup(&m->arena, dir) }, "cannot open: %s",
			       strerror(errno));
		return -1;
	}
	while ((de = readdir(d)))
		if (yaml_name(de->d_name))
			*KB_PUSH(&tmp, names, n) = kb_strdup(&tmp, de->d_name);
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
		char *path = kb_sprintf(&tmp, "%s%s%s", dir, sep, names[i]);
		struct stat st;

		/* Not recursive: a directory named x.yaml is skipped, as are sockets and the like. */
		if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
			continue;
		if (load_file(m, path) < 0)
			rc = -1;
		loaded++;
	}
	if (!loaded) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ 0 }, "no *.yaml or *.yml files in %s", dir);
		rc = -1;
	}
	kb_arena_free(&tmp);
	return rc;
}

int kb_manifest_load_path(struct kb_model *m, const char *path)
{
	struct stat st;

	if (strcmp(path, "-") == 0)
		return load_fd(m, "<stdin>", STDIN_FILENO);
	if (stat(path, &st) < 0) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = kb_strdup(&m->arena, path) }, "cannot open: %s",
			       strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		return load_dir(m, path);
	return load_file(m, path);
}
