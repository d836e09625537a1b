/* SPDX-License-Identifier: Apache-2.0 */
/* Stage 2: Envoy Gateway's admission and translator rules, kbackend's SSRF policy and L4 honesty. */
#ifndef KB_VALIDATE_H
#define KB_VALIDATE_H

#include <stdbool.h>

#include "manifest/model.h"

/* Defaults: enable_backend -1 (from EnvoyGateway, else off), cluster domain "cluster.local". */
void kb_policy_init(struct kb_policy *p);

/*
 * Judge every object of m under policy p. Sets conditions on every object
 * (Backend: Accepted; routes: Accepted and ResolvedRefs per parent; others:
 * Accepted, or Accepted=Unknown/Ignored for kinds kbackend does not act on)
 * and adds one error diagnostic for each refusal, located at the offending
 * field. Returns the number of refused objects.
 */
int kb_validate(struct kb_model *m, const struct kb_policy *p);

/*
 * kbackend's SSRF guard on one address, the same code that judges IP
 * endpoints: used for FQDN answers. addr is 4 (AF_INET) or 16 (AF_INET6)
 * bytes in network order; a v4-mapped IPv6 address is judged as IPv4. p's
 * allow_cidrs (--allow-endpoint) win over the refused ranges (loopback,
 * unspecified, link-local incl. 169.254.169.254, multicast, broadcast) and
 * over p's node_addrs. On refusal, why (if not NULL) gets one line such as
 * "127.0.0.1 is loopback (127.0.0.0/8), refused by kbackend's SSRF guard;
 * allow it with --allow-endpoint 127.0.0.1/32". p may be NULL (no allow list).
 */
bool kb_policy_allows_ip(const struct kb_policy *p, int family, const void *addr, char *why, size_t whylen);

/* "auto", "slices" or "dns" (--service-endpoints) into *out; false for anything else. */
bool kb_svc_mode_parse(const char *s, enum kb_svc_mode *out);

/* True when validate refused the object (any condition Accepted/ResolvedRefs False). */
bool kb_object_refused(const struct kb_meta *obj);

/*
 * Does parent ref `pr` of route `r` attach to listener `l` of gateway `g`:
 * sectionName and port select it, its allowedRoutes admit the route's kind
 * and namespace (labels from m's Namespace objects), and they share a hostname?
 */
bool kb_parent_attaches(const struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr,
			const struct kb_gateway *g, const struct kb_listener *l);

/* The status key of a parent ref: "ns/name" or "ns/name/section". Arena-allocated. */
char *kb_parent_key(struct kb_model *m, const struct kb_route *r, const struct kb_parent_ref *pr);
/* The same key into buf (snprintf's contract: the length it needs is returned), for a lookup that keeps nothing. */
int kb_parent_key_buf(char *buf, size_t len, const struct kb_route *r, const struct kb_parent_ref *pr);

/* Is this backendRef a gateway.envoyproxy.io Backend (as opposed to a Service)? */
bool kb_ref_is_backend(const struct kb_backend_ref *ref);

/* What a backendRef names, as Envoy Gateway decides it: a supported group, then the kind alone. */
enum kb_ref_kind { KB_REF_INVALID_GROUP, KB_REF_INVALID_KIND, KB_REF_SERVICE, KB_REF_SERVICE_IMPORT, KB_REF_BACKEND };
enum kb_ref_kind kb_ref_kind(const struct kb_backend_ref *ref);

/* The index of the first of dirs (--unix-dir) that holds the absolute path, and in *len its length in path; -1: none. */
int kb_unix_dir_of(char *const *dirs, size_t ndirs, const char *path, size_t *len);

#endif /* KB_VALIDATE_H */
