/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to validate*.c: the shared judging context and helpers that the per-kind files use. */
#ifndef KB_VALIDATE_INT_H
#define KB_VALIDATE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "validate/validate.h"

#define VX_GROUP_GW "gateway.networking.k8s.io"
#define VX_GROUP_EG "gateway.envoyproxy.io"
#define VX_GROUP_MCS "multicluster.x-k8s.io"

/* An address in binary form: IPv4 in b[0..3] (v4-mapped IPv6 is unmapped), or IPv6. */
struct vx_addr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t b[16];
};

struct vx_cidr {
	struct vx_addr net;
	int bits;
};

/* What validate decided about one Backend; routes that reference it inherit it. */
struct vx_bverdict {
	bool refused;
	const char *reason;	/* the reason a referencing route's ResolvedRefs gets */
	const char *why;	/* the refusal, without "The Backend was not accepted: " */
};

struct vx_ctx {
	struct kb_model *m;
	const struct kb_policy *p;
	bool backend_enabled;
	struct vx_bverdict *bv;		/* parallel to m->backends */
	size_t *bsorted;		/* indices of m->backends sorted by namespace/name */
	struct vx_cidr *allow;
	size_t nallow;
	struct vx_cidr *node;
	size_t nnode;
	struct kb_smap services;	/* "S/ns/name" (Service) and "I/ns/name" (ServiceImport), first of each */
};

static inline const char *vx_ns(const struct kb_meta *o)
{
	return o->namespace ? o->namespace : "default";
}

static inline bool vx_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* NULL, "" and "core" all name the core group. */
static inline bool vx_core_group(const char *g)
{
	return !g || !*g || strcmp(g, "core") == 0;
}

bool vx_parse_addr(const char *s, struct vx_addr *a);
bool vx_cidr_contains(const struct vx_cidr *c, const struct vx_addr *a);
/* "a.b.c.d/n", "x::/n" or a bare address (a single host). */
bool vx_parse_cidr(const char *s, struct vx_cidr *c);

/* Index into m->backends of ns/name, or -1. */
long vx_backend_index(const struct vx_ctx *c, const char *ns, const char *name);

/* Does a ReferenceGrant in to_ns let (from_group, from_kind, from_ns) refer to (to_group, to_kind, to_name)? */
bool vx_grant_allows(const struct kb_model *m, const char *from_group, const char *from_kind, const char *from_ns,
		     const char *to_group, const char *to_kind, const char *to_ns, const char *to_name);

/* NULL when a unix socket path is under an allowed --unix-dir, else why not. */
const char *vx_unix_refusal(const struct vx_ctx *c, const char *path);

/* One Backend being judged (validate_backend.c, validate_tls.c). */
struct vx_bjudge {
	struct vx_ctx *c;
	struct kb_backend *b;
	struct vx_bverdict *v;
	int crd_errors;
};

/* Refusal reasons a referencing route inherits (Envoy Gateway's route reasons). */
#define VX_R_INVALID_REF "InvalidBackendRef"
#define VX_R_INVALID_ADDR "InvalidAddress"
#define VX_R_UNSUPPORTED "UnsupportedValue"

/* A CRD/CEL-layer refusal, in kubectl's words ("path: Invalid value: ..."). */
void vx_crd(struct vx_bjudge *j, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A translator-layer refusal: `why` goes into the condition as is; `hint` only into the diagnostic. */
void vx_refuse(struct vx_bjudge *j, const char *reason, const char *path, const char *why, const char *hint);
/* Does s match the POSIX extended regex `pattern` (a constant)? */
bool vx_matches(const char *pattern, const char *s);
/* A string against a CRD property, in the apiserver's order: maxLength, minLength, pattern. */
void vx_crd_string(struct vx_bjudge *j, const char *path, const char *s, size_t minlen, size_t maxlen,
		   const char *pattern);

/* spec.tls (validate_tls.c): the CRD's schema and CEL, Envoy Gateway's translator, kbackend's L4 refusal. */
void vx_tls_crd(struct vx_bjudge *j);
void vx_tls_translate(struct vx_bjudge *j);
void vx_tls_l4(struct vx_bjudge *j);
/* Why a route may not send to Service ns/name: a BackendTLSPolicy asks for TLS to it. NULL: it may. */
const char *vx_btls_service_refusal(const struct vx_ctx *c, const char *ns, const char *name);
/* Conditions of BackendTLSPolicies aimed at applied Backends or used Services; after vx_backends. */
void vx_btls_policies(struct vx_ctx *c);

/* ---- validate_listener.c: which listeners a parentRef attaches to ---- */

/* Outcomes, best first: a parentRef's verdict is the best over its Gateway's listeners. */
enum vx_attach {
	VX_ATTACH_OK,
	VX_ATTACH_NO_HOSTNAME,	/* allowed, but no hostname in common: NoMatchingListenerHostname */
	VX_ATTACH_NOT_ALLOWED,	/* allowedRoutes (kinds, namespaces) refuse it: NotAllowedByListeners */
	VX_ATTACH_NO_PARENT,	/* sectionName/port select no listener: NoMatchingParent */
};

bool vx_parent_is_gateway(const struct kb_parent_ref *pr);
enum vx_attach vx_listener_attach(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
				  const struct kb_gateway *g, const struct kb_listener *l);
enum vx_attach vx_parent_attach(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
				const struct kb_gateway *g);
/* Warnings for what Envoy Gateway puts in listener conditions (kbackend has none). */
void vx_listener_diags(struct vx_ctx *c, const struct kb_gateway *g);

/* ---- validate_refs.c: backendRefs ---- */

/* A route's ResolvedRefs verdict: every failed backendRef, joined as Envoy Gateway joins them. */
struct vx_refs_verdict {
	const char *reason;	/* NULL: all resolved; else the distinct reasons, sorted, comma-joined */
	const char *msg;	/* one line per failed backendRef */
};

struct vx_refs_verdict vx_resolve_refs(const struct vx_ctx *c, const struct kb_route *r);

/* ---- validate_service.c: Services, ServiceImports, EndpointSlices ---- */

/* Judge them (Kubernetes' validation words) and index the Services for vx_service_ref; before routes. */
void vx_services(struct vx_ctx *c);
/*
 * A route's Service or ServiceImport backendRef ns/name under --service-endpoints:
 * NULL when it resolves, else why not (Envoy Gateway's words) and *reason.
 */
const char *vx_service_ref(const struct vx_ctx *c, const struct kb_route *r, const struct kb_backend_ref *ref,
			   enum kb_ref_kind rk, const char *ns, const char *name, const char **reason);
/* The SSRF guard on one endpoint address lit (parsed into a): NULL, or why it is refused. */
const char *vx_ssrf_why(const struct vx_ctx *c, const char *lit, const struct vx_addr *a);

/* The per-kind judges. Backends run before routes: routes read c->bv. */
void vx_backends(struct vx_ctx *c);
void vx_routes(struct vx_ctx *c);

#endif /* KB_VALIDATE_INT_H */
