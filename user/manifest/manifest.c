// SPDX-License-Identifier: Apache-2.0
/* Stage 1 entry points: YAML files, directories and stdin, through libyaml's events, into objects in the model. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "manifest_int.h"

/*
 * Limits. The parser is fed untrusted bytes (and a fuzzer), so every
 * dimension that could grow without bound has a cap. Nothing in a real
 * manifest comes near them.
 */
#define MAX_DEPTH	64		/* nesting of mappings and lists */
#define MAX_NODES	(1u << 20)	/* nodes in one document */
#define MAX_DOCS	100000		/* documents in one stream */
#define MAX_FILE	(64u << 20)	/* bytes in one file */

/* ---- documents: one object each ----------------------------------------------------------- */

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

/* Does apiVersion s name group g? The core group ("") is written without one: "v1". */
static bool in_group(const char *s, const char *g)
{
	const char *slash = strchr(s, '/');

	if (!g)
		return false;
	if (!*g)
		return !slash;
	return slash && strlen(g) == (size_t)(slash - s) && strncmp(s, g, strlen(g)) == 0;
}

/* The API groups kbackend reads: a known kind name under one of them is a mix-up, not another API's kind. */
static bool kbackend_group(const char *s)
{
	for (int k = 1; k < KB_KIND__COUNT; k++)
		if (in_group(s, mf_kinds[k].group) || in_group(s, mf_kinds[k].alt_group))
			return true;
	return false;
}

/* The apiVersion must name the kind's group; the object is still added when it does not. */
static void check_api_version(struct ctx *c, const struct kind_info *ki, const struct ynode *av, enum kb_kind k)
{
	const char *slash = strchr(av->s, '/');

	if (!in_group(av->s, ki->group) && !in_group(av->s, ki->alt_group)) {
		mf_err(c, av, "apiVersion", "apiVersion %s does not match kind %s (expected %s%s)", mf_desc(c, av),
		       kb_kind_name(k), ki->group, *ki->group ? "/<version>" : "v1");
		return;
	}
	if (!valid_version(slash ? slash + 1 : av->s))
		mf_err(c, av, "apiVersion", "apiVersion %s: the version is not an API version (v1, v1beta1, v1alpha2...)",
		       mf_desc(c, av));
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
	const struct ynode *items = mf_map_get(root, "items", NULL);

	if (!mf_get_list(c, items, "items"))
		return;
	for (size_t i = 0; i < items->nkids; i++)
		process_object(c, items->kids[i], doc_index, depth + 1);
}


/* metadata.labels, kept for label selectors: string keys and values only (the API's rule); anything else is ignored. */
static void set_labels(struct ctx *c, struct kb_meta *obj, const struct ynode *lb)
{
	if (!lb || lb->t != YN_MAP || !lb->nkids)
		return;
	obj->labels = kb_alloc(&c->m->arena, lb->nkids * sizeof(*obj->labels));
	for (size_t i = 0; i + 1 < lb->nkids; i += 2) {
		const struct ynode *k = lb->kids[i], *v = lb->kids[i + 1];

		if (k->t != YN_SCALAR || v->t != YN_SCALAR || mf_is_null(v))
			continue;
		obj->labels[2 * obj->nlabels] = (char *)kb_model_intern(c->m, k->s);
		obj->labels[2 * obj->nlabels + 1] = kb_strdup(&c->m->arena, v->s);
		obj->nlabels++;
	}
}
/* An object whose text can't be re-read for locations keeps them, out of the document's scratch. */
static void keep_fields(struct ctx *c, struct kb_meta *obj)
{
	if (!c->nfields)
		return;
	obj->fields = kb_alloc(&c->m->arena, c->nfields * sizeof(*obj->fields));
	obj->nfields = c->nfields;
	for (size_t i = 0; i < c->nfields; i++)
		obj->fields[i] = (struct kb_field_loc){ .path = kb_strdup(&c->m->arena, c->fields[i].path),
							.loc = c->fields[i].loc };
}

static void process_object(struct ctx *c, const struct ynode *root, int doc_index, int depth)
{
	const struct ynode *kind, *av, *md, *name = NULL, *ns = NULL, *kk = NULL, *ak = NULL, *mk = NULL;
	const struct kind_info *ki;
	struct kb_meta *obj;
	bool add = true;
	enum kb_kind k, known;

	c->obj = NULL;
	c->fields = NULL;
	c->nfields = 0;
	if (depth > 4) {
		mf_err(c, root, NULL, "kind: List nested too deeply");
		return;
	}
	if (root->t != YN_MAP) {
		mf_err(c, root, NULL, "a document must be a mapping (a Kubernetes object), got %s", mf_desc(c, root));
		return;
	}
	kind = mf_map_get(root, "kind", &kk);
	av = mf_map_get(root, "apiVersion", &ak);
	/* A quoted "" names no kind either: it must not become a kind kbackend ignores. */
	if (mf_is_null(kind) || (kind->t == YN_SCALAR && !*kind->s)) {
		mf_err(c, kind ? kind : root, NULL, "missing required field \"kind\"");
		return;
	}
	if (kind->t != YN_SCALAR) {
		mf_err(c, kind, "kind", "expected a string, got %s", mf_desc(c, kind));
		return;
	}
	if (av && av->t != YN_SCALAR) {
		mf_err(c, av, "apiVersion", "expected a string, got %s", mf_desc(c, av));
		return;
	}
	if (mf_is_null(av) || !*av->s)
		av = NULL;
	if (strcmp(kind->s, "List") == 0 && (!av || strcmp(av->s, "v1") == 0)) {
		process_list(c, root, doc_index, depth);
		return;
	}
	/*
	 * Real manifests mix in kinds kbackend does not use (Secrets, Services,
	 * Deployments, other APIs' kinds): they are read as KB_KIND_FOREIGN, kept
	 * and stored, never an error. A kind name kbackend reads under another
	 * API's group (Istio's Gateway) is such a kind too, said in a warning.
	 */
	k = kb_kind_from_name(kind->s);
	known = k;
	if (k == KB_KIND_UNKNOWN || (av && !kbackend_group(av->s)))
		k = KB_KIND_FOREIGN;
	ki = &mf_kinds[k];

	obj = kb_alloc(&c->m->arena, ki->size);
	obj->kind = k;
	obj->kind_name = k == KB_KIND_FOREIGN ? kb_strdup(&c->m->arena, kind->s) : kb_kind_name(k);
	obj->loc = root->loc;
	obj->doc_index = doc_index;
	obj->namespace = "default";
	if (ki->init)
		ki->init(c, (char *)obj);

	/* Identity first, so every later message names the object. */
	md = mf_map_get(root, "metadata", &mk);
	if (!mf_is_null(md) && md->t == YN_MAP) {
		name = mf_map_get(md, "name", NULL);
		ns = mf_map_get(md, "namespace", NULL);
		if (name && name->t == YN_SCALAR && !mf_is_null(name))
			obj->name = kb_strdup(&c->m->arena, name->s);
		if (ns && ns->t == YN_SCALAR && !mf_is_null(ns) && *ns->s)
			obj->namespace = (char *)kb_model_intern(c->m, ns->s);
		set_labels(c, obj, mf_map_get(md, "labels", NULL));
	}
	if (k == KB_KIND_ENDPOINT_SLICE)
		mf_slice_owner(obj);
	if (!obj->name && k == KB_KIND_ENVOY_GATEWAY)
		obj->name = "envoy-gateway";
	c->obj = obj;
	mf_record(c, "kind", kind);
	if (av) {
		mf_record(c, "apiVersion", av);
		obj->api_version = (char *)kb_model_intern(c->m, av->s);
		if (k != KB_KIND_FOREIGN)
			check_api_version(c, ki, av, k);
		else if (known != KB_KIND_UNKNOWN)
			mf_warn(c, av, "apiVersion",
				"apiVersion %s is not the %s kbackend reads (%s%s): read as another API's kind and ignored",
				mf_desc(c, av), kb_kind_name(known), mf_kinds[known].group,
				*mf_kinds[known].group ? "/<version>" : "v1");
	} else {
		mf_err(c, ak ? ak : root, "apiVersion", "missing required field \"apiVersion\"");
		add = false;
	}

	if (!mf_is_null(md)) {
		mf_record(c, "metadata", mk);
		if (md->t != YN_MAP) {
			mf_err(c, md, "metadata", "expected a mapping, got %s", mf_desc(c, md));
		} else {
			const char *s;

			mf_walk_map(c, md, "metadata", mf_meta_fields, NULL);
			if (name) {
				mf_record(c, "metadata.name", name);
				mf_get_str(c, name, "metadata.name", &s);
			}
			if (ns) {
				mf_record(c, "metadata.namespace", ns);
				mf_get_str(c, ns, "metadata.namespace", &s);
			}
		}
	}
	/* Without a name the object cannot carry status: report it and leave it out. */
	if (!obj->name) {
		if (mf_is_null(name))
			mf_err(c, name ? name : mk ? mk : root, "metadata.name",
			       "missing required field \"metadata.name\"");
		add = false;
	} else if (!*obj->name) {
		mf_err(c, name, "metadata.name", "must not be empty");
		add = false;
	}

	mf_walk_map(c, root, "", ki->top, (char *)obj);
	set_src(c, obj, root);
	if (!obj->src || c->keep_all || c->keep_doc)
		keep_fields(c, obj);
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
	return (struct kb_loc){ .file = c->file, .line = c->line_base + (int)mk.line + 1, .col = (int)mk.column + 1 };
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
	struct kb_loc l = { .file = c->file, .line = c->line_base + 1, .col = 1 };

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
		c->keep_doc = ev->data.document_start.tag_directives.start != ev->data.document_start.tag_directives.end;
		if (++*ndocs > MAX_DOCS) {
			kb_diag_add_at(c->m, KB_SEV_ERROR, mark_loc(c, ev->start_mark),
				       "too many YAML documents (more than %d)", MAX_DOCS);
			return false;
		}
		break;
	case YAML_DOCUMENT_END_EVENT:
		/* Empty documents (comments only, a trailing ---) are skipped silently. */
		if (!b->bad && b->root && !mf_is_null(b->root))
			process_object(c, b->root, *ndocs - 1, 0);
		kb_arena_reset(&c->tmp);
		c->fields = NULL;
		c->nfields = 0;
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

/* 1 when a syntax error stopped the stream early, else 0 (-1: no parser); *ndocs: the documents seen. */
static int load_buffer(struct kb_model *m, const char *name, const char *buf, size_t len, bool keep_all, int line_base,
		       int *ndocs_out)
{
	struct ctx c = { .m = m, .file = kb_model_intern(m, name ? name : "<input>"), .buf = buf ? buf : "",
			 .len = buf ? len : 0, .keep_all = keep_all, .line_base = line_base };
	struct builder b = { 0 };
	yaml_parser_t p;
	yaml_event_t ev;
	int ndocs = 0, stopped = 0;

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
			stopped = 1;
			break;
		}
		type = ev.type;
		more = on_event(&c, &b, &ev, &ndocs);
		yaml_event_delete(&ev);
		if (!more || type == YAML_STREAM_END_EVENT) {
			stopped = !more;
			break;
		}
	}
	yaml_parser_delete(&p);
	kb_arena_free(&c.tmp);
	if (ndocs_out)
		*ndocs_out = ndocs;
	return stopped;
}

/*
 * A large stream is read in two halves at once, cut at a "---" line near the
 * middle, where libyaml starts a new document anyway: the parse was the
 * largest stage of a 10,000-Backend apply, and the daemon has the CPUs. Only
 * plain UTF-8 without directives is cut (a %TAG would not reach the second
 * half); the result is what one pass gives: the same objects in the same
 * order, lines and document numbers counted from the file's start, and
 * nothing from after a syntax error.
 */
#define SPLIT_MIN (1u << 20)

struct half {
	struct kb_model m;
	const char *name, *buf;
	size_t len;
	int line_base, ndocs, stopped;
};

static void *half_main(void *arg)
{
	struct half *h = arg;

	h->stopped = load_buffer(&h->m, h->name, h->buf, h->len, false, h->line_base, &h->ndocs);
	return NULL;
}

/* Where a second half may start (a "---" line at the start of a line, at or after the middle), or 0. */
static size_t split_point(const char *buf, size_t len)
{
	const char *p = buf + len / 2, *end = buf + len;

	if (len < SPLIT_MIN || (unsigned char)buf[0] >= 0x80 || buf[0] == '\0' || buf[0] == '%' ||
	    memmem(buf, len, "\n%", 2) || memchr(buf, '\0', len))
		return 0;
	while ((p = memmem(p, (size_t)(end - p), "\n---", 4))) {
		const char *q = p + 4;

		if (q == end || *q == '\n' || *q == ' ' || *q == '\t' || *q == '\r')
			return (size_t)(p + 1 - buf);
		p = q;
	}
	return 0;
}

int kb_manifest_load_buffer(struct kb_model *m, const char *name, const char *buf, size_t len)
{
	size_t cut = buf ? split_point(buf, len) : 0;
	struct half a = { .name = name }, b = { .name = name };
	pthread_t t;

	if (!cut)
		return load_buffer(m, name, buf, len, false, 0, NULL) < 0 ? -1 : 0;
	a.buf = buf;
	a.len = cut;
	b.buf = buf + cut;
	b.len = len - cut;
	for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + cut - p))); p++)
		b.line_base++;
	kb_model_init(&a.m);
	kb_model_init(&b.m);
	if (pthread_create(&t, NULL, half_main, &b)) {
		kb_model_free(&a.m);
		kb_model_free(&b.m);
		return load_buffer(m, name, buf, len, false, 0, NULL) < 0 ? -1 : 0;
	}
	half_main(&a);
	pthread_join(t, NULL);
	if (a.stopped < 0 || b.stopped < 0 || (!a.stopped && a.ndocs + b.ndocs > MAX_DOCS)) {
		/* No parser, or over the document limit: one pass says where it falls. */
		kb_model_free(&a.m);
		kb_model_free(&b.m);
		return load_buffer(m, name, buf, len, false, 0, NULL) < 0 ? -1 : 0;
	}
	kb_model_absorb(m, &a.m);
	if (a.stopped) {
		/* A syntax error in the first half: one pass would not have read on. */
		kb_model_free(&b.m);
		return 0;
	}
	for (size_t i = 0; i < b.m.nobjects; i++)
		b.m.objects[i]->doc_index += a.ndocs;
	kb_model_absorb(m, &b.m);
	return 0;
}

const struct kb_meta *kb_manifest_reread(struct kb_model *m, const struct kb_meta *obj)
{
	load_buffer(m, obj->loc.file, obj->src, obj->src_len, true, 0, NULL);
	return m->nobjects == 1 ? m->objects[0] : NULL;
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

int kb_manifest_list_files(const char *path, struct kb_arena *a, char ***files, size_t *nfiles)
{
	char **out = NULL;
	size_t n = 0;
	const char *sep;
	struct dirent *de;
	struct stat st;
	DIR *d;

	*files = NULL;
	*nfiles = 0;
	if (strcmp(path, "-") != 0 && stat(path, &st) < 0)
		return -errno;
	if (strcmp(path, "-") == 0 || !S_ISDIR(st.st_mode)) {
		*KB_PUSH(a, *files, *nfiles) = kb_strdup(a, path);
		return 0;
	}
	d = opendir(path);
	if (!d)
		return -errno;
	sep = path[strlen(path) - 1] == '/' ? "" : "/";
	while ((de = readdir(d))) {
		char *p;

		if (!yaml_name(de->d_name))
			continue;
		p = kb_sprintf(a, "%s%s%s", path, sep, de->d_name);
		/*
		 * Not recursive: a directory named x.yaml is skipped, as are sockets
		 * and the like. One that can't be stat'ed stays, so reading it says why.
		 */
		if (stat(p, &st) == 0 && !S_ISREG(st.st_mode))
			continue;
		*KB_PUSH(a, out, n) = p;
	}
	closedir(d);
	/* One directory prefix: sorting the paths sorts the names. */
	if (n)
		qsort(out, n, sizeof(*out), cmp_str);
	*files = out;
	*nfiles = n;
	return 0;
}

int kb_manifest_load_path(struct kb_model *m, const char *path)
{
	struct kb_arena tmp = { 0 };
	char **files;
	size_t n;
	int rc = kb_manifest_list_files(path, &tmp, &files, &n);

	if (rc < 0) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = kb_strdup(&m->arena, path) }, "cannot open: %s",
			       strerror(-rc));
		rc = -1;
	} else if (!n) {
		kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ 0 }, "no *.yaml or *.yml files in %s", path);
		rc = -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((strcmp(path, "-") == 0 ? load_fd(m, "<stdin>", STDIN_FILENO) : load_file(m, files[i])) < 0)
			rc = -1;
	kb_arena_free(&tmp);
	return rc;
}
