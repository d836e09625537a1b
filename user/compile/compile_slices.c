// SPDX-License-Identifier: Apache-2.0
/*
 * A Service (or ServiceImport) backendRef's endpoints, taken from its
 * EndpointSlices the way kube-proxy takes them: the Service port the ref
 * names, the slice port of the same name, the endpoints that are ready, and
 * the serving-but-terminating ones only when none is ready.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compile/compile.h"
#include "compile_int.h"
#include "validate/validate.h"

static bool same_name(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_proto(const char *a, const char *b)
{
	return strcmp(a ? a : "TCP", b ? b : "TCP") == 0;
}

/* The slice's port for Service port sp: matched by name (an unnamed single port matches the unnamed slice port). */
static const struct kb_slice_port *slice_port(const struct kb_endpoint_slice *s, const struct kb_svc_port *sp)
{
	for (size_t i = 0; i < s->nports; i++)
		if (same_name(s->ports[i].name, sp->name) && same_proto(s->ports[i].protocol, sp->protocol) &&
		    s->ports[i].has_port && s->ports[i].port > 0 && s->ports[i].port <= 65535)
			return &s->ports[i];
	return NULL;
}

static int pick_cmp(const void *a, const void *b)
{
	const struct kb_slice_pick *x = a, *y = b;
	int d = x->family - y->family;

	if (!d)
		d = memcmp(x->ip, y->ip, sizeof(x->ip));
	return d ? d : x->port - y->port;
}

/* Sort and drop repeats (an address in two slices, as while a slice is split): each endpoint once. */
static size_t unique(struct kb_slice_pick *v, size_t n)
{
	size_t k = 0;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), pick_cmp);
	for (size_t i = 0; i < n; i++)
		if (!k || pick_cmp(&v[k - 1], &v[i]) != 0)
			v[k++] = v[i];
	return k;
}

/* Ready (nil is true), serving (nil is true) and not terminating (nil is false): discovery.k8s.io/v1's defaults. */
static bool is_ready(const struct kb_slice_endpoint *e)
{
	return e->ready != 0 && e->serving != 0 && e->terminating != 1;
}

static bool is_serving_terminating(const struct kb_slice_endpoint *e)
{
	return e->serving != 0 && e->terminating == 1;
}

/*
 * The endpoints of family fam ("IPv4"/"IPv6") into ready[] and term[];
 * returns how many endpoints the slices of that family list at all.
 */
static size_t collect(struct kb_arena *a, const struct kb_svc_port *sp, struct kb_endpoint_slice *const *slices,
		      size_t nslices, const char *fam, struct kb_slice_pick **ready, size_t *nready,
		      struct kb_slice_pick **term, size_t *nterm)
{
	size_t seen = 0;

	for (size_t i = 0; i < nslices; i++) {
		const struct kb_endpoint_slice *s = slices[i];
		const struct kb_slice_port *p;

		if (!s->address_type || strcmp(s->address_type, fam) != 0 || kb_object_refused(&s->meta))
			continue;
		p = slice_port(s, sp);
		if (!p)
			continue;
		for (size_t k = 0; k < s->nendpoints; k++) {
			const struct kb_slice_endpoint *e = &s->endpoints[k];
			struct kb_slice_pick *x;
			unsigned char b[16];
			bool r = is_ready(e);

			/* Addresses are fungible (the API says a consumer may take the first); kube-proxy takes it. */
			if (!e->naddresses || !e->addresses[0] || e->refused)
				continue;
			seen++;
			if (!r && !is_serving_terminating(e))
				continue;
			if (inet_pton(fam[3] == '4' ? AF_INET : AF_INET6, e->addresses[0], b) != 1)
				continue;
			x = r ? KB_PUSH(a, *ready, *nready) : KB_PUSH(a, *term, *nterm);
			memset(x, 0, sizeof(*x));
			x->address = e->addresses[0];
			x->family = fam[3] == '4' ? AF_INET : AF_INET6;
			memcpy(x->ip, b, x->family == AF_INET ? 4 : 16);
			x->port = (__u16)p->port;
		}
	}
	return seen;
}

size_t kb_service_endpoints(struct kb_arena *a, const struct kb_service *svc, struct kb_endpoint_slice *const *slices,
			    size_t nslices, int64_t ref_port, const char *proto, __u8 fe_family,
			    struct kb_slice_pick **out)
{
	/* An IPv4 frontend takes IPv4 slices; an IPv6 one its own family's, else IPv4 (v4-mapped by the kernel). */
	static const char *const fams[2] = { "IPv6", "IPv4" };
	const struct kb_svc_port *sp = NULL;

	*out = NULL;
	for (size_t i = 0; i < svc->nports && !sp; i++)
		if (svc->ports[i].has_port && svc->ports[i].port == ref_port && same_proto(svc->ports[i].protocol, proto))
			sp = &svc->ports[i];
	if (!sp)
		return 0;
	for (size_t f = fe_family == AF_INET6 ? 0 : 1; f < 2; f++) {
		struct kb_slice_pick *ready = NULL, *term = NULL;
		size_t nready = 0, nterm = 0;

		if (!collect(a, sp, slices, nslices, fams[f], &ready, &nready, &term, &nterm))
			continue;
		/* kube-proxy's fallback: terminating endpoints that still serve, only when nothing is ready. */
		*out = nready ? ready : term;
		return unique(*out, nready ? nready : nterm);
	}
	return 0;
}

static const char *ns_of(const struct kb_meta *o)
{
	return o->namespace ? o->namespace : "default";
}

void kb_index_services(struct kb_arena *a, const struct kb_model *m, struct kb_smap *services, struct kb_smap *slices)
{
	for (size_t i = 0; i < m->nservices; i++) {
		const struct kb_meta *o = &m->services[i]->meta;

		if (o->name)
			kb_smap_put(services, kb_sprintf(a, "%s/%s/%s", kb_kind_name(o->kind), ns_of(o), o->name),
				    m->services[i]);
	}
	for (size_t i = 0; i < m->nslices; i++) {
		struct kb_endpoint_slice *s = m->slices[i];
		struct slice_list *l;
		char *key;

		if (!s->service)
			continue;
		key = kb_sprintf(a, "%s/%s/%s", kb_kind_name(s->owner_kind), ns_of(&s->meta), s->service);
		l = kb_smap_get(slices, key);
		if (!l)
			l = kb_smap_put(slices, key, kb_alloc(a, sizeof(*l)));
		*KB_PUSH(a, l->v, l->n) = s;
	}
}
