// SPDX-License-Identifier: Apache-2.0
/* Walks a document's YAML tree against field tables: typed scalars, unknown and duplicate keys, located errors. */
#include <stdarg.h>
#include <string.h>

#include "manifest_int.h"

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
	/*
	 * The node we hold is more precise than a path lookup (a duplicate key, a
	 * value vs. its key), and skipping the lookup keeps a document with many
	 * errors linear. Without one, the field recorded for path is the place
	 * (the key of a block, the value of a scalar).
	 */
	kb_diag_add_at(c->m, sev, n ? n->loc : kb_field_loc_find(c->fields, c->nfields, c->obj->loc, path), "%s", msg);
	d = &c->m->diags[c->m->ndiags - 1];
	d->object = kb_meta_label(c->m, c->obj);
	d->path = kb_strdup(&c->m->arena, path);
}

void mf_err(struct ctx *c, const struct ynode *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, KB_SEV_ERROR, n, path, fmt, ap);
	va_end(ap);
}

void mf_warn(struct ctx *c, const struct ynode *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, KB_SEV_WARNING, n, path, fmt, ap);
	va_end(ap);
}

void mf_record(struct ctx *c, const char *path, const struct ynode *n)
{
	/* path lives in c->tmp (or is a literal) as long as the document does: no copy. */
	if (c->obj)
		*KB_PUSH(&c->tmp, c->fields, c->nfields) = (struct kb_field_loc){ .path = path, .loc = n->loc };
}

/* Paths are built for every field walked, so without printf: it was a tenth of a 20,000-object parse. */
const char *mf_pjoin(struct ctx *c, const char *base, const char *key)
{
	size_t lb = strlen(base), lk = strlen(key);
	char *p;

	if (!lb)
		return kb_strndup(&c->tmp, key, lk);
	p = kb_alloc(&c->tmp, lb + 1 + lk + 1);
	memcpy(p, base, lb);
	p[lb] = '.';
	memcpy(p + lb + 1, key, lk + 1);
	return p;
}

const char *mf_pidx(struct ctx *c, const char *base, size_t i)
{
	char digits[24];
	size_t lb = strlen(base), nd = 0;
	char *p;

	do
		digits[nd++] = (char)('0' + i % 10);
	while ((i /= 10) && nd < sizeof(digits));
	p = kb_alloc(&c->tmp, lb + nd + 3);
	memcpy(p, base, lb);
	p[lb] = '[';
	for (size_t k = 0; k < nd; k++)
		p[lb + 1 + k] = digits[nd - 1 - k];
	p[lb + 1 + nd] = ']';
	p[lb + 2 + nd] = '\0';
	return p;
}

/* What a node is, for "expected X, got Y": a short, printable rendering. */
const char *mf_desc(struct ctx *c, const struct ynode *n)
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

bool mf_is_null(const struct ynode *n)
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
bool mf_get_str(struct ctx *c, const struct ynode *n, const char *path, const char **out)
{
	if (mf_is_null(n))
		return false;
	if (n->t != YN_SCALAR) {
		mf_err(c, n, path, "expected a string, got %s", mf_desc(c, n));
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
	if (mf_is_null(n))
		return false;
	if (n->t != YN_SCALAR) {
		mf_err(c, n, path, "expected an integer, got %s", mf_desc(c, n));
		return false;
	}
	if (n->quoted) {
		/* Kubernetes refuses "443" for an int32 field; so do we, with a hint. */
		mf_err(c, n, path, "expected an integer, got the string %s (remove the quotes)", mf_desc(c, n));
		return false;
	}
	if (!parse_int(n->s, out)) {
		mf_err(c, n, path, "expected an integer, got %s", mf_desc(c, n));
		return false;
	}
	return true;
}

bool mf_get_int(struct ctx *c, const struct ynode *n, const char *path, int64_t *out)
{
	return get_int(c, n, path, out);
}

bool mf_get_bool(struct ctx *c, const struct ynode *n, const char *path, bool *out)
{
	/* YAML 1.1 booleans, as sigs.k8s.io/yaml (go-yaml v2) reads them. */
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };

	if (mf_is_null(n))
		return false;
	if (n->t == YN_SCALAR && !n->quoted) {
		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (strcmp(n->s, yes[i]) == 0)
				return *out = true, true;
			if (strcmp(n->s, no[i]) == 0)
				return *out = false, true;
		}
	}
	mf_err(c, n, path, "expected true or false, got %s", mf_desc(c, n));
	return false;
}

static bool get_dur(struct ctx *c, const struct ynode *n, const char *path, int64_t *out)
{
	if (mf_is_null(n))
		return false;
	if (n->t != YN_SCALAR || !kb_parse_duration_ms(n->s, out)) {
		mf_err(c, n, path,
		       "invalid duration %s: expected a Gateway API duration such as \"10s\", \"500ms\" or \"1m\"",
		       mf_desc(c, n));
		return false;
	}
	return true;
}



/* "a, b, c" from n strings every `stride` bytes: one allocation, as a document may hold many unknown fields. */
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

bool mf_get_list(struct ctx *c, const struct ynode *v, const char *path)
{
	if (mf_is_null(v))
		return false;
	if (v->t != YN_SEQ) {
		mf_err(c, v, path, "expected a list, got %s", mf_desc(c, v));
		return false;
	}
	return true;
}

static void set_has(char *t, size_t aux)
{
	if (aux)
		*(bool *)(t + aux - 1) = true;
}

void mf_seq_grow(struct kb_arena *a, void **arr, size_t n, size_t elem)
{
	size_t cap = 4;
	void *p;

	if (!n)
		return;
	while (cap < n)
		cap *= 2;
	p = kb_alloc(a, cap * elem);
	memcpy(p, *arr, n * elem);
	*arr = p;
}

void mf_walk_seq(struct ctx *c, const struct ynode *v, const char *path, const struct seqspec *sp, char *t)
{
	void **arr = (void **)(t + sp->arr_off);
	size_t *cnt = (size_t *)(t + sp->cnt_off), want = 0, cap = 0;

	if (!mf_get_list(c, v, path))
		return;
	/*
	 * An empty list gets exactly its room at once: growing by doubling would
	 * leave every smaller copy in the arena, and the room of a power of two
	 * (10 endpoints: 28 elements allocated, or 16, not 10; one rule: 4). So a
	 * list walked here is full: whoever adds to it later re-homes it first
	 * (mf_seq_grow).
	 */
	for (size_t i = 0; !*cnt && i < v->nkids; i++)
		want += v->kids[i]->t == YN_MAP;
	if (!*cnt && want) {
		cap = want;
		*arr = kb_alloc(&c->m->arena, cap * sp->elem);
	}
	for (size_t i = 0; i < v->nkids; i++) {
		const struct ynode *it = v->kids[i];
		const char *ip = mf_pidx(c, path, i);
		char *e;

		mf_record(c, ip, it);
		if (it->t != YN_MAP) {
			mf_err(c, it, ip, "expected a mapping, got %s", mf_desc(c, it));
			continue;
		}
		if (*cnt < cap)
			e = (char *)*arr + (*cnt)++ * sp->elem;	/* within the room made above, zeroed by kb_alloc */
		else
			e = kb_push(&c->m->arena, arr, cnt, sp->elem);
		if (sp->init)
			sp->init(c, e);
		if (sp->path_off)
			*(char **)(e + sp->path_off - 1) = (char *)kb_model_intern(c->m, ip);	/* "spec.endpoints[3]" in every Backend */
		if (sp->item)
			sp->item(c, NULL, it, ip, e);
		else
			mf_walk_map(c, it, ip, sp->fields, e);
	}
}

/* A list of scalars; each item is converted with `conv` and stored when arr is set. */
static void walk_scalars(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	if (!mf_get_list(c, v, path))
		return;
	for (size_t i = 0; i < v->nkids; i++) {
		const struct ynode *it = v->kids[i];
		const char *ip = mf_pidx(c, path, i);
		const char *s;
		int64_t x;

		mf_record(c, ip, it);
		if (f->type == FT_STRS && mf_get_str(c, it, ip, &s)) {
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
		if (mf_get_str(c, v, path, &s) && f->off != NOOFF)
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
		if (mf_get_bool(c, v, path, &b) && f->off != NOOFF)
			*(bool *)(t + f->off) = b;
		break;
	case FT_TRI:
		if (mf_get_bool(c, v, path, &b))
			*(int *)(t + f->off) = b;
		break;
	case FT_STRS:
	case FT_INTS:
		walk_scalars(c, f, v, path, t);
		break;
	case FT_MAP:
		if (mf_is_null(v))
			break;
		if (v->t != YN_MAP) {
			mf_err(c, v, path, "expected a mapping, got %s", mf_desc(c, v));
			break;
		}
		set_has(t + f->off, f->aux);
		mf_walk_map(c, v, path, f->sub, t + f->off);
		break;
	case FT_SEQ:
		mf_walk_seq(c, v, path, f->seq, t);
		break;
	case FT_COUNT:
		if (!mf_get_list(c, v, path))
			break;
		for (size_t i = 0; i < v->nkids; i++)
			mf_record(c, mf_pidx(c, path, i), v->kids[i]);
		if (f->off != NOOFF)
			*(size_t *)(t + f->off) = v->nkids;
		break;
	case FT_FN:
		f->fn(c, f, v, path, t);
		break;
	case FT_WARN:
		/* No node: the recorded location (the key, for a block) is the one to show. */
		if (!mf_is_null(v))
			mf_warn(c, NULL, path, "not enforced by kbackend (accepted and ignored)");
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
void mf_walk_map(struct ctx *c, const struct ynode *n, const char *path, const struct field *fields, char *t)
{
	uint64_t seen = 0;

	if (n->t != YN_MAP) {
		mf_err(c, n, path, "expected a mapping, got %s", mf_desc(c, n));
		return;
	}
	for (size_t i = 0; i + 1 < n->nkids; i += 2) {
		const struct ynode *k = n->kids[i], *v = n->kids[i + 1];
		const struct field *f;
		const char *fp;
		size_t idx;

		if (k->t != YN_SCALAR) {
			mf_err(c, k, path, "mapping keys must be strings, got %s", mf_desc(c, k));
			continue;
		}
		/* F_REST ("*", last) takes any key the table does not name. */
		for (f = fields; f->name && strcmp(f->name, k->s) != 0 && strcmp(f->name, "*") != 0; f++)
			;
		fp = mf_pjoin(c, path, k->s);
		if (!f->name) {
			/*
			 * An object from the API server was checked against its schema
			 * there: a field kbackend does not know is a newer API version's,
			 * ignored as client-go's non-strict decoding does.
			 */
			if (!strncmp(c->file, KB_KUBE_FILE_PREFIX, sizeof(KB_KUBE_FILE_PREFIX) - 1))
				mf_warn(c, k, fp, "unknown field %s ignored (valid: %s)", mf_desc(c, k),
					field_names(c, fields));
			else
				mf_err(c, k, fp, "unknown field %s (valid: %s)", mf_desc(c, k), field_names(c, fields));
			continue;
		}
		idx = f->name[0] == '*' ? 64 : (size_t)(f - fields);
		if (idx < 64 && (seen & (1ull << idx))) {
			mf_err(c, k, fp, "duplicate field \"%s\"", f->name);
			continue;
		}
		if (idx < 64)
			seen |= 1ull << idx;
		if (f->type != FT_SKIP)
			mf_record(c, fp, v->t == YN_SCALAR ? v : k);
		apply(c, f, v, fp, t);
	}
}

const struct ynode *mf_map_get(const struct ynode *n, const char *key, const struct ynode **keynode)
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
