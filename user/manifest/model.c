// SPDX-License-Identifier: Apache-2.0
/* The model's bookkeeping: kinds, field locations, diagnostics and conditions. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "manifest/model.h"

static const char *const kind_names[KB_KIND__COUNT] = {
	[KB_KIND_UNKNOWN] = "Unknown",
	[KB_KIND_ENVOY_GATEWAY] = "EnvoyGateway",
	[KB_KIND_GATEWAY] = "Gateway",
	[KB_KIND_HTTPROUTE] = "HTTPRoute",
	[KB_KIND_GRPCROUTE] = "GRPCRoute",
	[KB_KIND_TLSROUTE] = "TLSRoute",
	[KB_KIND_TCPROUTE] = "TCPRoute",
	[KB_KIND_UDPROUTE] = "UDPRoute",
	[KB_KIND_BACKEND] = "Backend",
	[KB_KIND_BACKEND_TRAFFIC_POLICY] = "BackendTrafficPolicy",
	[KB_KIND_REFERENCE_GRANT] = "ReferenceGrant",
	[KB_KIND_BACKEND_TLS_POLICY] = "BackendTLSPolicy",
	[KB_KIND_ENVOY_EXTENSION_POLICY] = "EnvoyExtensionPolicy",
	[KB_KIND_SECURITY_POLICY] = "SecurityPolicy",
	[KB_KIND_ENVOY_PROXY] = "EnvoyProxy",
	[KB_KIND_GATEWAY_CLASS] = "GatewayClass",
	[KB_KIND_NAMESPACE] = "Namespace",
	[KB_KIND_SERVICE] = "Service",
	[KB_KIND_SERVICE_IMPORT] = "ServiceImport",
	[KB_KIND_ENDPOINT_SLICE] = "EndpointSlice",
};

static const char *const api_versions[KB_KIND__COUNT] = {
	[KB_KIND_ENVOY_GATEWAY] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_GATEWAY] = "gateway.networking.k8s.io/v1",
	[KB_KIND_HTTPROUTE] = "gateway.networking.k8s.io/v1",
	[KB_KIND_GRPCROUTE] = "gateway.networking.k8s.io/v1",
	[KB_KIND_TLSROUTE] = "gateway.networking.k8s.io/v1alpha2",
	[KB_KIND_TCPROUTE] = "gateway.networking.k8s.io/v1alpha2",
	[KB_KIND_UDPROUTE] = "gateway.networking.k8s.io/v1alpha2",
	[KB_KIND_BACKEND] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_BACKEND_TRAFFIC_POLICY] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_REFERENCE_GRANT] = "gateway.networking.k8s.io/v1beta1",
	[KB_KIND_BACKEND_TLS_POLICY] = "gateway.networking.k8s.io/v1",
	[KB_KIND_ENVOY_EXTENSION_POLICY] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_SECURITY_POLICY] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_ENVOY_PROXY] = "gateway.envoyproxy.io/v1alpha1",
	[KB_KIND_GATEWAY_CLASS] = "gateway.networking.k8s.io/v1",
	[KB_KIND_NAMESPACE] = "v1",
	[KB_KIND_SERVICE] = "v1",
	[KB_KIND_SERVICE_IMPORT] = "multicluster.x-k8s.io/v1alpha1",
	[KB_KIND_ENDPOINT_SLICE] = "discovery.k8s.io/v1",
};

/* The apiVersion kbackend writes for a kind it renders or synthesizes. */
const char *kb_kind_api_version(enum kb_kind k)
{
	return (k > 0 && k < KB_KIND__COUNT && api_versions[k]) ? api_versions[k] : "v1";
}

const char *kb_kind_name(enum kb_kind k)
{
	return (k > 0 && k < KB_KIND__COUNT && kind_names[k]) ? kind_names[k] : "Unknown";
}

const char *kb_meta_kind(const struct kb_meta *obj)
{
	return obj->kind_name ? obj->kind_name : kb_kind_name(obj->kind);
}

enum kb_kind kb_kind_from_name(const char *name)
{
	for (int k = 1; k < KB_KIND__COUNT; k++)
		if (name && kind_names[k] && strcmp(kind_names[k], name) == 0)
			return (enum kb_kind)k;
	return KB_KIND_UNKNOWN;
}

bool kb_kind_is_route(enum kb_kind k)
{
	return k == KB_KIND_HTTPROUTE || k == KB_KIND_GRPCROUTE || k == KB_KIND_TLSROUTE ||
	       k == KB_KIND_TCPROUTE || k == KB_KIND_UDPROUTE;
}

void kb_model_init(struct kb_model *m)
{
	memset(m, 0, sizeof(*m));
}

const char *kb_model_intern(struct kb_model *m, const char *s)
{
	const char *v;

	if (!s)
		return NULL;
	if (!m->strings.a)
		m->strings.a = &m->strings_a;
	v = kb_smap_get(&m->strings, s);
	if (!v)
		v = kb_smap_put(&m->strings, s, kb_strdup(&m->arena, s));
	return v;
}

void kb_model_free(struct kb_model *m)
{
	bool big = m->nobjects >= 1000;

	if (m->loc_cache) {
		kb_model_free(m->loc_cache);
		free(m->loc_cache);
	}
	kb_arena_free(&m->arena);
	kb_arena_free(&m->views);
	kb_arena_free(&m->strings_a);
	memset(m, 0, sizeof(*m));
	/*
	 * A big model's chunks sit among what outlives it (the next state, the
	 * compiled table), so glibc cannot shrink the heap top on its own: hand
	 * the free pages back, or the daemon at rest keeps its apply's peak.
	 */
	if (big)
		malloc_trim(0);
}

void kb_model_absorb(struct kb_model *dst, struct kb_model *src)
{
	kb_arena_absorb(&dst->arena, &src->arena);
	for (size_t i = 0; i < src->nobjects; i++)
		kb_model_add_object(dst, src->objects[i]);
	for (size_t i = 0; i < src->ndiags; i++)
		*KB_PUSH(&dst->views, dst->diags, dst->ndiags) = src->diags[i];
	dst->nerrors += src->nerrors;
	kb_arena_free(&src->views);
	kb_arena_free(&src->strings_a);
	if (src->loc_cache) {
		kb_model_free(src->loc_cache);
		free(src->loc_cache);
	}
	memset(src, 0, sizeof(*src));
}

void kb_model_take_objects(struct kb_model *dst, struct kb_model *src)
{
	kb_arena_absorb(&dst->arena, &src->arena);
	kb_arena_free(&src->views);
	kb_arena_free(&src->strings_a);
	if (src->loc_cache) {
		kb_model_free(src->loc_cache);
		free(src->loc_cache);
	}
	memset(src, 0, sizeof(*src));
}

struct kb_loc kb_field_loc_find(const struct kb_field_loc *f, size_t n, struct kb_loc dflt, const char *path)
{
	size_t best_len = 0;
	struct kb_loc best = dflt;

	if (!path)
		return best;
	/* Exact match first, else the longest recorded ancestor ("a.b[1]" of "a.b[1].c"). */
	for (size_t i = 0; i < n; i++) {
		const char *p = f[i].path;
		size_t l = strlen(p);

		if (strcmp(p, path) == 0)
			return f[i].loc;
		if (l > best_len && strncmp(p, path, l) == 0 && (path[l] == '.' || path[l] == '[')) {
			best_len = l;
			best = f[i].loc;
		}
	}
	return best;
}

/*
 * Re-read obj's own text into *cache (kept for the next message about the
 * same text) and shift what it finds there to where obj is: the copy starts
 * at its line 1, at the column obj starts at (manifest pads it so).
 */
static struct kb_loc reread_loc(struct kb_model **cache, const struct kb_meta *obj, const char *path)
{
	struct kb_model *s = *cache;
	const struct kb_meta *o = NULL;
	struct kb_loc l;

	if (s && s->nobjects == 1 && s->objects[0]->src_len == obj->src_len &&
	    memcmp(s->objects[0]->src, obj->src, obj->src_len) == 0) {
		o = s->objects[0];
	} else {
		if (!s) {
			s = calloc(1, sizeof(*s));
			if (!s)
				return obj->loc;
			*cache = s;
		}
		kb_model_free(s);
		o = kb_manifest_reread(s, obj);
	}
	if (!o)
		return obj->loc;
	l = kb_field_loc_find(o->fields, o->nfields, o->loc, path);
	return (struct kb_loc){ .file = obj->loc.file, .line = obj->loc.line + (l.line - o->loc.line), .col = l.col };
}

static struct kb_loc model_loc(struct kb_model *m, const struct kb_meta *obj, const char *path)
{
	struct kb_model *scratch = NULL;
	struct kb_loc l;

	if (!path || obj->fields || !obj->src)
		return kb_field_loc_find(obj->fields, obj->nfields, obj->loc, path);
	if (m)
		return reread_loc(&m->loc_cache, obj, path);
	l = reread_loc(&scratch, obj, path);
	if (scratch)
		kb_model_free(scratch);
	free(scratch);
	return l;
}

struct kb_loc kb_meta_loc(const struct kb_meta *obj, const char *path)
{
	return model_loc(NULL, obj, path);
}

char *kb_meta_label_in(struct kb_arena *a, const struct kb_meta *obj)
{
	return kb_sprintf(a, "%s %s/%s", kb_meta_kind(obj), obj->namespace ? obj->namespace : "default",
			  obj->name ? obj->name : "<unnamed>");
}

char *kb_meta_label(struct kb_model *m, const struct kb_meta *obj)
{
	return kb_meta_label_in(&m->arena, obj);
}

static struct kb_diag *diag_new(struct kb_model *m, enum kb_severity sev)
{
	struct kb_diag *d = KB_PUSH(&m->views, m->diags, m->ndiags);

	d->sev = sev;
	if (sev == KB_SEV_ERROR)
		m->nerrors++;
	return d;
}

void kb_diag_add(struct kb_model *m, enum kb_severity sev, const struct kb_meta *obj, const char *path,
		 const char *fmt, ...)
{
	struct kb_diag *d = diag_new(m, sev);
	va_list ap;

	if (obj) {
		d->loc = model_loc(m, obj, path);
		d->object = kb_meta_label(m, obj);
	}
	d->path = kb_strdup(&m->arena, path);
	va_start(ap, fmt);
	d->msg = kb_vsprintf(&m->arena, fmt, ap);
	va_end(ap);
}

void kb_diag_add_at(struct kb_model *m, enum kb_severity sev, struct kb_loc loc, const char *fmt, ...)
{
	struct kb_diag *d = diag_new(m, sev);
	va_list ap;

	d->loc = loc;
	va_start(ap, fmt);
	d->msg = kb_vsprintf(&m->arena, fmt, ap);
	va_end(ap);
}

int kb_diag_format(const struct kb_diag *d, char *buf, size_t len)
{
	int n = 0;

	/* Render a location as file:line:col, dropping the parts that are unknown. */
	if (d->loc.file && d->loc.line)
		n = snprintf(buf, len, "%s:%d:%d: ", d->loc.file, d->loc.line, d->loc.col);
	else if (d->loc.file)
		n = snprintf(buf, len, "%s: ", d->loc.file);
	if (n < 0 || (size_t)n >= len)
		return n;
	if (d->sev == KB_SEV_WARNING)
		n += snprintf(buf + n, len - n, "warning: ");
	if ((size_t)n < len && d->object)
		n += snprintf(buf + n, len - n, "%s: ", d->object);
	if ((size_t)n < len && d->path)
		n += snprintf(buf + n, len - n, "%s: ", d->path);
	if ((size_t)n < len)
		n += snprintf(buf + n, len - n, "%s", d->msg ? d->msg : "");
	return n;
}

static void cond_set(struct kb_model *m, struct kb_condition **conds, size_t *nconds, const char *type,
		     enum kb_cond_status st, const char *reason, const char *fmt, va_list ap)
{
	struct kb_condition *c = NULL;

	for (size_t i = 0; i < *nconds; i++)
		if (strcmp((*conds)[i].type, type) == 0)
			c = &(*conds)[i];
	char msg[512];
	va_list aq;
	int n;

	if (!c) {
		c = KB_PUSH(&m->arena, *conds, *nconds);
		c->type = (char *)kb_model_intern(m, type);
	}
	c->status = st;
	/* Thousands of objects carry the same few conditions: one copy of each text (at 10,000 Backends, MiBs). */
	c->reason = (char *)kb_model_intern(m, reason);
	va_copy(aq, ap);
	n = vsnprintf(msg, sizeof(msg), fmt, aq);
	va_end(aq);
	c->message = n >= 0 && (size_t)n < sizeof(msg) ? (char *)kb_model_intern(m, msg) : kb_vsprintf(&m->arena, fmt, ap);
}

void kb_set_condition(struct kb_model *m, struct kb_meta *obj, const char *type, enum kb_cond_status st,
		      const char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cond_set(m, &obj->conds, &obj->nconds, type, st, reason, fmt, ap);
	va_end(ap);
}

struct kb_parent_status *kb_parent_status(struct kb_model *m, struct kb_meta *route, const char *parent)
{
	struct kb_parent_status *ps;

	for (size_t i = 0; i < route->nparents; i++)
		if (strcmp(route->parents[i].parent, parent) == 0)
			return &route->parents[i];
	ps = KB_PUSH(&m->arena, route->parents, route->nparents);
	ps->parent = kb_strdup(&m->arena, parent);
	return ps;
}

void kb_set_parent_condition(struct kb_model *m, struct kb_parent_status *ps, const char *type,
			     enum kb_cond_status st, const char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cond_set(m, &ps->conds, &ps->nconds, type, st, reason, fmt, ap);
	va_end(ap);
}

const struct kb_condition *kb_get_condition(const struct kb_meta *obj, const char *type)
{
	for (size_t i = 0; i < obj->nconds; i++)
		if (strcmp(obj->conds[i].type, type) == 0)
			return &obj->conds[i];
	return NULL;
}

const char *kb_cond_status_name(enum kb_cond_status st)
{
	return st == KB_COND_TRUE ? "True" : st == KB_COND_FALSE ? "False" : "Unknown";
}

void kb_model_add_object(struct kb_model *m, struct kb_meta *obj)
{
	*KB_PUSH(&m->views, m->objects, m->nobjects) = obj;
	switch (obj->kind) {
	case KB_KIND_BACKEND:
		*KB_PUSH(&m->views, m->backends, m->nbackends) = (struct kb_backend *)obj;
		break;
	case KB_KIND_GATEWAY:
		*KB_PUSH(&m->views, m->gateways, m->ngateways) = (struct kb_gateway *)obj;
		break;
	case KB_KIND_HTTPROUTE:
	case KB_KIND_GRPCROUTE:
	case KB_KIND_TLSROUTE:
	case KB_KIND_TCPROUTE:
	case KB_KIND_UDPROUTE:
		*KB_PUSH(&m->views, m->routes, m->nroutes) = (struct kb_route *)obj;
		break;
	case KB_KIND_BACKEND_TRAFFIC_POLICY:
		*KB_PUSH(&m->views, m->btps, m->nbtps) = (struct kb_btp *)obj;
		break;
	case KB_KIND_REFERENCE_GRANT:
		*KB_PUSH(&m->views, m->grants, m->ngrants) = (struct kb_reference_grant *)obj;
		break;
	case KB_KIND_ENVOY_GATEWAY:
		*KB_PUSH(&m->views, m->envoy_gateways, m->nenvoy_gateways) = (struct kb_envoy_gateway *)obj;
		break;
	case KB_KIND_NAMESPACE:
		*KB_PUSH(&m->views, m->namespaces, m->nnamespaces) = (struct kb_namespace *)obj;
		break;
	case KB_KIND_SERVICE:
	case KB_KIND_SERVICE_IMPORT:
		*KB_PUSH(&m->views, m->services, m->nservices) = (struct kb_service *)obj;
		break;
	case KB_KIND_ENDPOINT_SLICE:
		*KB_PUSH(&m->views, m->slices, m->nslices) = (struct kb_endpoint_slice *)obj;
		break;
	default:
		*KB_PUSH(&m->views, m->others, m->nothers) = (struct kb_other *)obj;
		break;
	}
}

static bool meta_is(const struct kb_meta *o, const char *ns, const char *name)
{
	return o->name && strcmp(o->name, name) == 0 && strcmp(o->namespace ? o->namespace : "default", ns) == 0;
}

struct kb_backend *kb_model_find_backend(const struct kb_model *m, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->nbackends; i++)
		if (meta_is(&m->backends[i]->meta, ns, name))
			return m->backends[i];
	return NULL;
}

struct kb_gateway *kb_model_find_gateway(const struct kb_model *m, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->ngateways; i++)
		if (meta_is(&m->gateways[i]->meta, ns, name))
			return m->gateways[i];
	return NULL;
}

const struct kb_namespace *kb_model_find_namespace(const struct kb_model *m, const char *name)
{
	for (size_t i = 0; i < m->nnamespaces; i++)
		if (m->namespaces[i]->meta.name && strcmp(m->namespaces[i]->meta.name, name) == 0)
			return m->namespaces[i];
	return NULL;
}

struct kb_service *kb_model_find_service(const struct kb_model *m, enum kb_kind kind, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->nservices; i++)
		if (m->services[i]->meta.kind == kind && meta_is(&m->services[i]->meta, ns, name))
			return m->services[i];
	return NULL;
}
