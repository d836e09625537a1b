// SPDX-License-Identifier: Apache-2.0
/* Judges TLS toward a Backend: spec.tls by Envoy Gateway's CRD and translator, then kbackend's L4 refusal of it and of BackendTLSPolicies. */
#include <stdio.h>
#include <string.h>

#include "validate_int.h"

/* Gateway API's PreciseHostname (sni) and WellKnownCACertificatesType patterns, as the Backend CRD carries them. */
#define SNI_PATTERN "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#define WKCA_PATTERN                                                                                       \
	"^(System|([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?" \
	"[A-Za-z0-9]))$"

#define TLS_L4 "kbackend steers connections at L4 and does not originate TLS"

/*
 * A TLS version's rank in the CRD's minVersion <= maxVersion rule: "Auto" is
 * the lowest minimum and the highest maximum. -1: not a TLSVersion.
 */
static int version_rank(const char *v, bool as_max)
{
	static const char *const versions[] = { "1.0", "1.1", "1.2", "1.3" };

	if (strcmp(v, "Auto") == 0)
		return as_max ? 5 : 0;
	for (int i = 0; i < 4; i++)
		if (strcmp(v, versions[i]) == 0)
			return i + 1;
	return -1;
}

static bool version_enum(struct vx_bjudge *j, const char *path, const char *v)
{
	if (!v || version_rank(v, false) >= 0)
		return true;
	vx_crd(j, path, "Unsupported value: \"%s\": supported values: \"Auto\", \"1.0\", \"1.1\", \"1.2\", \"1.3\"", v);
	return false;
}

/* Gateway API's Group, Kind, ObjectName and Namespace, as the Backend CRD carries them. */
#define GROUP_PATTERN "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#define KIND_PATTERN "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
#define NS_PATTERN "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

/* A LocalObjectReference (all three required) or a SecretObjectReference (name required). */
static void crd_ref(struct vx_bjudge *j, const struct kb_objref *r, bool local)
{
	struct kb_model *m = j->c->m;
	const char *p = r->path;

	if (r->group)
		vx_crd_string(j, kb_sprintf(&m->arena, "%s.group", p), r->group, 0, 253, GROUP_PATTERN);
	else if (local)
		vx_crd(j, kb_sprintf(&m->arena, "%s.group", p), "Required value");
	if (r->kind)
		vx_crd_string(j, kb_sprintf(&m->arena, "%s.kind", p), r->kind, 1, 63, KIND_PATTERN);
	else if (local)
		vx_crd(j, kb_sprintf(&m->arena, "%s.kind", p), "Required value");
	if (r->name)
		vx_crd_string(j, kb_sprintf(&m->arena, "%s.name", p), r->name, 1, 253, NULL);
	else
		vx_crd(j, kb_sprintf(&m->arena, "%s.name", p), "Required value");
	if (r->namespace)
		vx_crd_string(j, kb_sprintf(&m->arena, "%s.namespace", p), r->namespace, 1, 63, NS_PATTERN);
}

void vx_tls_crd(struct vx_bjudge *j)
{
	const struct kb_backend *b = j->b;
	const struct kb_backend_tls *t = &b->tls;
	bool versions_ok;

	if (!t->present)
		return;
	/* The schema of BackendTLSSettings and its inlined BackendTLSConfig. */
	if (t->n_ca_refs > 8)
		vx_crd(j, "spec.tls.caCertificateRefs", "Too many: %zu: must have at most 8 items", t->n_ca_refs);
	for (size_t i = 0; i < t->n_ca_refs; i++)
		crd_ref(j, &t->ca_refs[i], true);
	if (t->has_client_cert)
		crd_ref(j, &t->client_cert, false);
	for (size_t i = 0; i < t->nfingerprints; i++)
		if (!vx_streq(t->fingerprints[i], "JA3") && !vx_streq(t->fingerprints[i], "JA4"))
			vx_crd(j, kb_sprintf(&j->c->m->arena, "spec.tls.fingerprints[%zu]", i),
			       "Unsupported value: \"%s\": supported values: \"JA3\", \"JA4\"",
			       t->fingerprints[i] ? t->fingerprints[i] : "");
	if (t->well_known_ca)
		vx_crd_string(j, "spec.tls.wellKnownCACertificates", t->well_known_ca, 1, 253, WKCA_PATTERN);
	if (t->sni)
		vx_crd_string(j, "spec.tls.sni", t->sni, 1, 253, SNI_PATTERN);
	versions_ok = version_enum(j, "spec.tls.minVersion", t->min_version);
	versions_ok &= version_enum(j, "spec.tls.maxVersion", t->max_version);
	/* Its CEL rules, in the CRD's order and words. */
	if (t->n_ca_refs && t->well_known_ca && *t->well_known_ca)
		vx_crd(j, "spec.tls",
		       "Invalid value: \"object\": must not contain both CACertificateRefs and WellKnownCACertificates");
	if (t->insecure_skip_verify == 1 && (t->n_ca_refs || (t->well_known_ca && *t->well_known_ca)))
		vx_crd(j, "spec.tls",
		       "Invalid value: \"object\": must not contain either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is enabled");
	if (t->sni && t->auto_sni)
		vx_crd(j, "spec.tls", "Invalid value: \"object\": sni and autoSNIFromEndpointHostname are mutually exclusive");
	if (vx_streq(t->min_version, "1.3") && t->n_ciphers)
		vx_crd(j, "spec.tls",
		       "Invalid value: \"object\": setting ciphers has no effect if the minimum possible TLS version is 1.3");
	/* Without a minVersion the rule takes 1.2 (rank 3), the default minimum. */
	if (versions_ok && t->max_version &&
	    (t->min_version ? version_rank(t->min_version, false) : 3) > version_rank(t->max_version, true))
		vx_crd(j, "spec.tls", "Invalid value: \"object\": minVersion must be smaller or equal to maxVersion");
	/* BackendSpec's rule on autoSNIFromEndpointHostname. */
	if (t->auto_sni) {
		for (size_t i = 0; i < b->nendpoints; i++) {
			const struct kb_endpoint *ep = &b->endpoints[i];

			if ((ep->present & (KB_EP_HAS_IP | KB_EP_HAS_UNIX)) && !ep->hostname) {
				vx_crd(j, "spec",
				       "Invalid value: \"object\": when autoSNIFromEndpointHostname is enabled, IP and Unix endpoints must define a hostname");
				break;
			}
		}
	}
}

static struct kb_btls *btls_at(const struct kb_model *m, size_t i)
{
	return m->others[i]->meta.kind == KB_KIND_BACKEND_TLS_POLICY ? (struct kb_btls *)m->others[i] : NULL;
}

static bool names_backend(const struct kb_target_ref *r, const char *name)
{
	return vx_streq(r->group, VX_GROUP_EG) && vx_streq(r->kind, "Backend") && vx_streq(r->name, name);
}

static bool names_service(const struct kb_target_ref *r, const char *name)
{
	return vx_core_group(r->group) && vx_streq(r->kind, "Service") && vx_streq(r->name, name);
}

/* Does some route in the set send to Service ns/name? */
static bool service_used(const struct kb_model *m, const char *ns, const char *name)
{
	for (size_t i = 0; i < m->nroutes; i++) {
		const struct kb_route *r = m->routes[i];

		for (size_t k = 0; k < r->nrules; k++)
			for (size_t b = 0; b < r->rules[k].nrefs; b++) {
				const struct kb_backend_ref *ref = &r->rules[k].refs[b];

				if (vx_core_group(ref->group) && (!ref->kind || strcmp(ref->kind, "Service") == 0) &&
				    vx_streq(ref->name, name) &&
				    strcmp(ref->namespace ? ref->namespace : vx_ns(&r->meta), ns) == 0)
					return true;
			}
	}
	return false;
}

/*
 * Envoy Gateway's validateBackendTLSSettings: a Backend that verifies its
 * peer needs a trust anchor, from spec.tls or from BackendTLSPolicies, either
 * one without a sectionName that has CA certificates, or one per endpoint
 * port. Like Envoy Gateway, it matches policies by the Backend's name alone.
 */
static bool policies_give_ca(const struct vx_ctx *c, const struct kb_backend *b)
{
	const struct kb_model *m = c->m;
	char ports[256][8];	/* the CRD's MaxItems for endpoints */
	bool covered[256] = { false };
	size_t nports = 0, ncovered = 0;

	for (size_t i = 0; i < b->nendpoints && nports < 256; i++) {
		const struct kb_endpoint *ep = &b->endpoints[i];
		size_t k;

		if (ep->type == KB_EP_UNIX)
			continue;
		snprintf(ports[nports], sizeof(ports[nports]), "%lld", (long long)ep->port);
		for (k = 0; k < nports && strcmp(ports[k], ports[nports]) != 0; k++)
			;
		nports += k == nports;
	}
	for (size_t i = 0; i < m->nothers; i++) {
		const struct kb_btls *p = btls_at(m, i);

		for (size_t t = 0; p && t < p->ntargets; t++) {
			const struct kb_target_ref *r = &p->targets[t];

			if (!names_backend(r, b->meta.name))
				continue;
			if (!r->section_name) {
				if (p->well_known_ca || p->n_ca_refs)
					return true;
				continue;
			}
			/* A port's policy counts whether or not it has certificates, as in Envoy Gateway. */
			for (size_t k = 0; k < nports; k++)
				if (!covered[k] && strcmp(ports[k], r->section_name) == 0) {
					covered[k] = true;
					ncovered++;
				}
		}
	}
	return nports > 0 && ncovered == nports;
}

void vx_tls_translate(struct vx_bjudge *j)
{
	struct kb_model *m = j->c->m;
	const struct kb_backend *b = j->b;
	const struct kb_backend_tls *t = &b->tls;
	const char *ns = vx_ns(&b->meta);

	if (!t->present)
		return;
	if (t->insecure_skip_verify != 1 && !t->well_known_ca && !t->n_ca_refs && !policies_give_ca(j->c, b))
		vx_refuse(j, VX_R_INVALID_REF, "spec.tls",
			  "must specify either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is unset or false",
			  NULL);
	else if (t->has_client_cert && t->client_cert.namespace && strcmp(t->client_cert.namespace, ns) != 0)
		vx_refuse(j, VX_R_INVALID_REF, "spec.tls.clientCertificateRef",
			  kb_sprintf(&m->arena,
				     "clientCertificateRef Secret is not located in the same namespace as Backend. Secret namespace: %s does not match Backend namespace: %s",
				     t->client_cert.namespace, ns),
			  NULL);
}

/* The first BackendTLSPolicy aimed at b (a policy's targets are in its own namespace), or NULL. */
static const struct kb_btls *btls_for(const struct kb_model *m, const struct kb_backend *b)
{
	for (size_t i = 0; i < m->nothers; i++) {
		const struct kb_btls *p = btls_at(m, i);

		if (!p || strcmp(vx_ns(&p->meta), vx_ns(&b->meta)) != 0)
			continue;
		for (size_t t = 0; t < p->ntargets; t++)
			if (names_backend(&p->targets[t], b->meta.name))
				return p;
	}
	return NULL;
}

/*
 * kbackend never originates TLS, so a Backend that asks for it, by spec.tls
 * or by a BackendTLSPolicy, is refused rather than silently given plaintext.
 */
void vx_tls_l4(struct vx_bjudge *j)
{
	struct kb_model *m = j->c->m;
	const struct kb_btls *p;

	if (j->b->tls.present)
		vx_refuse(j, VX_R_INVALID_REF, "spec.tls", TLS_L4 ": spec.tls is not supported", NULL);
	if ((p = btls_for(m, j->b)) != NULL)
		vx_refuse(j, VX_R_INVALID_REF, NULL,
			  kb_sprintf(&m->arena, TLS_L4 ": BackendTLSPolicy %s/%s targets this Backend", vx_ns(&p->meta),
				     p->meta.name),
			  NULL);
}

const char *vx_btls_service_refusal(const struct vx_ctx *c, const char *ns, const char *name)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < m->nothers; i++) {
		const struct kb_btls *p = btls_at(m, i);

		if (!p || strcmp(vx_ns(&p->meta), ns) != 0)
			continue;
		for (size_t t = 0; t < p->ntargets; t++)
			if (names_service(&p->targets[t], name))
				return kb_sprintf(&m->arena, TLS_L4 ": BackendTLSPolicy %s/%s targets Service %s/%s", ns,
						  p->meta.name, ns, name);
	}
	return NULL;
}

void vx_btls_policies(struct vx_ctx *c)
{
	struct kb_model *m = c->m;

	for (size_t i = 0; i < m->nothers; i++) {
		struct kb_btls *p = btls_at(m, i);
		const char *ns, *why = NULL;

		if (!p || p->meta.skip_judge)
			continue;
		ns = vx_ns(&p->meta);
		for (size_t t = 0; t < p->ntargets && !why; t++) {
			const struct kb_target_ref *r = &p->targets[t];

			if (names_backend(r, r->name) && vx_backend_index(c, ns, r->name) >= 0)
				why = kb_sprintf(&m->arena, TLS_L4 ": its target Backend %s/%s is refused", ns, r->name);
			else if (names_service(r, r->name) && service_used(m, ns, r->name))
				why = kb_sprintf(&m->arena, TLS_L4 ": the routes to its target Service %s/%s are refused",
						 ns, r->name);
		}
		/* Aimed only at what no applied object uses: it stays Ignored, as the caller set it. */
		if (!why)
			continue;
		kb_diag_add(m, KB_SEV_ERROR, &p->meta, NULL, "%s", why);
		kb_set_condition(m, &p->meta, "Accepted", KB_COND_FALSE, "Invalid", "%s", why);
	}
}
