// SPDX-License-Identifier: Apache-2.0
/* Judges a route's backendRefs in Envoy Gateway's order and words, and joins every failure into one ResolvedRefs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate_int.h"

/* Envoy Gateway checks the group (validateBackendRefGroup), then goes by kind alone (validateBackendRefKind). */
enum kb_ref_kind kb_ref_kind(const struct kb_backend_ref *ref)
{
	const char *kind = ref->kind ? ref->kind : "Service";

	if (ref->group && *ref->group && strcmp(ref->group, VX_GROUP_MCS) != 0 && strcmp(ref->group, VX_GROUP_EG) != 0)
		return KB_REF_INVALID_GROUP;
	if (strcmp(kind, "Service") == 0)
		return KB_REF_SERVICE;
	if (strcmp(kind, "ServiceImport") == 0)
		return KB_REF_SERVICE_IMPORT;
	if (strcmp(kind, "Backend") == 0)
		return KB_REF_BACKEND;
	return KB_REF_INVALID_KIND;
}

bool kb_ref_is_backend(const struct kb_backend_ref *ref)
{
	return kb_ref_kind(ref) == KB_REF_BACKEND;
}

/* Unix endpoints of a Backend and of its fallback chain must sit under a --unix-dir. */
static const char *unix_refusal_chain(const struct vx_ctx *c, long bi)
{
	const struct kb_model *m = c->m;

	for (size_t step = 0; bi >= 0 && step <= m->nbackends; step++) {
		const struct kb_backend *b = m->backends[bi];
		const char *ns;

		for (size_t i = 0; i < b->nendpoints; i++) {
			const char *why;

			if (b->endpoints[i].type != KB_EP_UNIX || !b->endpoints[i].address)
				continue;
			why = vx_unix_refusal(c, b->endpoints[i].address);
			if (why)
				return why;
		}
		if (!b->has_fallback_ref || !b->fallback_ref_name)
			break;
		ns = b->fallback_ref_namespace ? b->fallback_ref_namespace : vx_ns(&b->meta);
		bi = vx_backend_index(c, ns, b->fallback_ref_name);
	}
	return NULL;
}

/* One backendRef: NULL if it resolves, else why not (and *reason, and *path the field to blame). */
static const char *check_ref(const struct vx_ctx *c, const struct kb_route *r, const struct kb_backend_ref *ref,
			     const char **reason, const char **path)
{
	struct kb_model *m = c->m;
	const char *rns = vx_ns(&r->meta);
	const char *tns = ref->namespace && *ref->namespace ? ref->namespace : rns;
	const char *kind = ref->kind ? ref->kind : "Service";
	const char *name = ref->name ? ref->name : "";
	enum kb_ref_kind rk = kb_ref_kind(ref);
	const char *why;
	long bi;

	*path = ref->path;
	*reason = "UnsupportedValue";
	if (ref->nfilters) {
		*path = kb_sprintf(&m->arena, "%s.filters", ref->path);
		return "kbackend steers connections at L4; backendRef filters are not supported";
	}
	if (ref->has_weight && (ref->weight < 0 || ref->weight > 1000000)) {
		*path = kb_sprintf(&m->arena, "%s.weight", ref->path);
		return kb_sprintf(&m->arena, "Invalid value: %lld: weight must be between 0 and 1000000",
				  (long long)ref->weight);
	}
	if (ref->has_port && (ref->port < 1 || ref->port > 65535)) {
		*path = kb_sprintf(&m->arena, "%s.port", ref->path);
		return kb_sprintf(&m->arena, "Invalid value: %lld: port must be between 1 and 65535", (long long)ref->port);
	}
	/* The route CRD's own rule: the API server refuses this before Envoy Gateway sees it. */
	if (!ref->group || !*ref->group) {
		if (strcmp(kind, "Service") == 0 && !ref->has_port)
			return "Invalid value: \"object\": Must have port for Service reference";
	}
	/* From here on Envoy Gateway's validateBackendRef, in its order and words. */
	*reason = "InvalidKind";
	if (rk == KB_REF_INVALID_GROUP)
		return "Group is invalid, only the core API group (specified by omitting the group field or setting it to an empty string), " VX_GROUP_MCS " and " VX_GROUP_EG " are supported";
	if (rk == KB_REF_INVALID_KIND)
		return "Kind is invalid, only Service, MCS ServiceImport and Envoy Gateway Backend are supported";
	/* The grant must name the group as the ref wrote it (validateBackendNamespace). */
	if (strcmp(tns, rns) != 0 &&
	    !vx_grant_allows(m, VX_GROUP_GW, kb_kind_name(r->meta.kind), rns, ref->group ? ref->group : "", kind, tns, name)) {
		*reason = "RefNotPermitted";
		return kb_sprintf(&m->arena, "Backend ref to %s %s/%s not permitted by any ReferenceGrant.", kind, tns, name);
	}
	if (rk != KB_REF_BACKEND && !ref->has_port) {
		*reason = "PortNotSpecified";
		return "A valid port number corresponding to a port on the Service must be specified";
	}
	/* A BackendTLSPolicy asks for TLS to this Service, which kbackend cannot originate (validate_tls.c). */
	if (rk == KB_REF_SERVICE && (why = vx_btls_service_refusal(c, tns, name))) {
		*reason = "InvalidBackendRef";
		return why;
	}
	/* Through the Service's EndpointSlices, or cluster DNS (--service-endpoints; validate_service.c). */
	if (rk == KB_REF_SERVICE || rk == KB_REF_SERVICE_IMPORT)
		return vx_service_ref(c, r, ref, rk, tns, name, reason);
	*reason = "UnsupportedValue";
	if (!c->backend_enabled)
		return "Backend is disabled in Envoy Gateway configuration";
	bi = vx_backend_index(c, tns, name);
	if (bi < 0) {
		*reason = "BackendNotFound";
		return kb_sprintf(&m->arena, "Backend %s/%s not found", tns, name);
	}
	if (c->bv[bi].refused) {
		*reason = c->bv[bi].reason;
		return c->bv[bi].why ? c->bv[bi].why : "Backend is disabled in Envoy Gateway configuration";
	}
	*reason = "UnsupportedAddressType";
	return unix_refusal_chain(c, bi);
}

/* Envoy Gateway words a ref failure as "Failed to process route rule R backendRef B: <why>." */
static const char *ref_message(struct kb_model *m, size_t ri, size_t bi, const char *why)
{
	size_t n = strlen(why);

	if (n && why[n - 1] == '.')
		n--;
	return kb_sprintf(&m->arena, "Failed to process route rule %zu backendRef %zu: %.*s.", ri, bi, (int)n, why);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Every failed backendRef, in rule and ref order: the messages one per
 * line, the distinct reasons sorted and comma-joined (Envoy Gateway's
 * MultiStatusError, internal/gatewayapi/status/error.go).
 */
struct vx_refs_verdict vx_resolve_refs(const struct vx_ctx *c, const struct kb_route *r)
{
	struct kb_model *m = c->m;
	struct vx_refs_verdict v = { 0 };
	const char **reasons = NULL;
	size_t n = 0, cap = 0;

	for (size_t ri = 0; ri < r->nrules; ri++) {
		for (size_t bi = 0; bi < r->rules[ri].nrefs; bi++) {
			const char *reason, *path, *why;

			why = check_ref(c, r, &r->rules[ri].refs[bi], &reason, &path);
			if (!why)
				continue;
			why = ref_message(m, ri, bi, why);
			kb_diag_add(m, KB_SEV_ERROR, &r->meta, path, "%s", why);
			v.msg = v.msg ? kb_sprintf(&m->arena, "%s\n%s", v.msg, why) : why;
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				reasons = realloc(reasons, cap * sizeof(*reasons));
				if (!reasons)
					abort();
			}
			reasons[n++] = reason;
		}
	}
	if (!n)
		return v;
	qsort(reasons, n, sizeof(*reasons), cmp_str);
	v.reason = reasons[0];
	for (size_t i = 1; i < n; i++)
		if (strcmp(reasons[i], reasons[i - 1]) != 0)
			v.reason = kb_sprintf(&m->arena, "%s,%s", v.reason, reasons[i]);
	free(reasons);
	return v;
}
