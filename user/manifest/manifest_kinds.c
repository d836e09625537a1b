// SPDX-License-Identifier: Apache-2.0
/* The schema of each supported kind: its field tables and the handlers for the fields a table can't describe. */
#include "manifest_int.h"

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

	if (mf_is_null(v))
		return;
	if (v->t == YN_SEQ) {
		mf_err(c, v, path, "expected a mapping or a string, got a list");
		return;
	}
	a->set = true;
	if (v->t == YN_SCALAR) {
		a->scalar = true;
		a->addr = v->s;
		return;
	}
	mf_walk_map(c, v, path, subs[which], (char *)a);
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

	/* The walk copied its strings into the model already (FT_STR): they are used as they are. */
	mf_walk_map(c, v, path, ep_fields, (char *)&s);
	ep->hostname = (char *)s.hostname;
	ep->zone = (char *)s.zone;
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
	/* The seed's scalar points into the document's tree, which goes with the document. */
	ep->address = first->scalar ? kb_strdup(&c->m->arena, first->addr) : (char *)first->addr;
	ep->seed_shape = first->scalar;
	if (first->has_port) {
		ep->port = first->port;
		ep->has_port = true;
	}
	if (s.has_port) {
		const struct ynode *pk = NULL, *pv = mf_map_get(v, "port", &pk);

		if (first->has_port) {
			mf_err(c, pv ? pv : v, mf_pjoin(c, path, "port"), "port is set twice: here and in %s.port",
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

	if (!mf_is_null(v))
		b->has_endpoints = true;
	mf_walk_seq(c, v, path, &backend_eps, t);
}

static void app_protocol_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_backend *b = (struct kb_backend *)t;
	const char *s;

	/* The seed's singular form; validate judges the value like any appProtocols entry. */
	if (mf_get_str(c, v, path, &s))
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

	if (mf_is_null(v))
		return;
	if (v->t == YN_MAP) {
		mf_walk_map(c, v, path, fallback_seed_fields, t);
		return;
	}
	if (v->t == YN_SCALAR && !v->quoted) {
		bool x;

		if (mf_get_bool(c, v, path, &x))
			b->fallback = x;
		return;
	}
	mf_err(c, v, path, "expected true or false (or the seed's {backendRef: ...}), got %s", mf_desc(c, v));
}

static void count_refs_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	if (!mf_get_list(c, v, path))
		return;
	for (size_t i = 0; i < v->nkids; i++) {
		const char *ip = mf_pidx(c, path, i);

		mf_record(c, ip, v->kids[i]);
		mf_walk_map(c, v->kids[i], ip, objref_fields, NULL);
	}
	*(size_t *)(t + f->off) += v->nkids;
}

/* A Backend's certificate references, kept for the CRD's schema checks. */
static const struct field kept_ref_fields[] = {
	F_STR("group", struct kb_objref, group),
	F_STR("kind", struct kb_objref, kind),
	F_STR("name", struct kb_objref, name),
	F_STR("namespace", struct kb_objref, namespace),
	F_END,
};

static const struct seqspec tls_ca_refs = SEQSPEC(struct kb_backend_tls, struct kb_objref, ca_refs, n_ca_refs,
						  PATH_OF(struct kb_objref), kept_ref_fields, NULL, NULL);

static void client_cert_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_backend_tls *tls = (struct kb_backend_tls *)t;

	if (mf_is_null(v))
		return;
	mf_walk_map(c, v, path, kept_ref_fields, (char *)&tls->client_cert);
	tls->client_cert.path = kb_strdup(&c->m->arena, path);
	tls->has_client_cert = true;
}

static const struct field backend_tls_fields[] = {
	F_TRI("insecureSkipVerify", struct kb_backend_tls, insecure_skip_verify),
	F_STR("wellKnownCACertificates", struct kb_backend_tls, well_known_ca),
	F_SEQ("caCertificateRefs", &tls_ca_refs),
	F_STR("sni", struct kb_backend_tls, sni),
	F_BOOL("autoSNIFromEndpointHostname", struct kb_backend_tls, auto_sni),
	F_STR("minVersion", struct kb_backend_tls, min_version),
	F_STR("maxVersion", struct kb_backend_tls, max_version),
	F_STRSN("ciphers", struct kb_backend_tls, n_ciphers),
	F_STRSX("ecdhCurves"),
	F_STRSX("signatureAlgorithms"),
	F_STRSX("alpnProtocols"),
	F_STRS("fingerprints", struct kb_backend_tls, fingerprints, nfingerprints),
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

/* A string-to-string mapping (labels, matchLabels) into a struct kb_label array at f->off, count at f->aux - 1. */
static void labels_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_label **arr = (struct kb_label **)(t + f->off);
	size_t *n = (size_t *)(t + f->aux - 1);

	if (mf_is_null(v))
		return;
	if (v->t != YN_MAP) {
		mf_err(c, v, path, "expected a mapping, got %s", mf_desc(c, v));
		return;
	}
	for (size_t i = 0; i + 1 < v->nkids; i += 2) {
		const char *kp = mf_pjoin(c, path, v->kids[i]->s ? v->kids[i]->s : "");
		const char *val;
		struct kb_label *l;

		mf_record(c, kp, v->kids[i + 1]);
		if (!mf_get_str(c, v->kids[i + 1], kp, &val))
			continue;
		l = KB_PUSH(&c->m->arena, *arr, *n);
		l->key = kb_strdup(&c->m->arena, v->kids[i]->s);
		l->value = kb_strdup(&c->m->arena, val);
	}
}

#define F_LABELS(n, T, a, k) { .name = n, .type = FT_FN, .fn = labels_fn, .off = offsetof(T, a), .aux = offsetof(T, k) + 1 }

static const struct field label_expr_fields[] = {
	F_STR("key", struct kb_label_expr, key),
	F_STR("operator", struct kb_label_expr, op),
	F_STRS("values", struct kb_label_expr, values, nvalues),
	F_END,
};

static const struct seqspec selector_exprs = SEQSPEC(struct kb_listener, struct kb_label_expr, match_exprs,
						     nmatch_exprs, PATH_OF(struct kb_label_expr), label_expr_fields,
						     NULL, NULL);

static const struct field selector_fields[] = {
	F_LABELS("matchLabels", struct kb_listener, match_labels, nmatch_labels),
	F_SEQ("matchExpressions", &selector_exprs),
	F_END,
};

static const struct field allowed_ns_fields[] = {
	F_STR("from", struct kb_listener, ns_from),
	F_MAPH("selector", struct kb_listener, has_selector, selector_fields),
	F_END,
};

static const struct field route_kind_fields[] = {
	F_STR("group", struct kb_route_group_kind, group), F_STR("kind", struct kb_route_group_kind, kind), F_END,
};

static const struct seqspec allowed_kinds = SEQSPEC(struct kb_listener, struct kb_route_group_kind, kinds, nkinds, 0,
						    route_kind_fields, NULL, NULL);

static const struct field allowed_routes_fields[] = {
	F_SUB("namespaces", allowed_ns_fields),
	F_SEQ("kinds", &allowed_kinds),
	F_END,
};

static const struct field listener_tls_fields[] = {
	F_STR("mode", struct kb_listener, tls_mode),
	F_ANY("certificateRefs"),
	F_ANY("frontendValidation"),
	F_ANY("options"),
	F_END,
};

static const struct field listener_fields[] = {
	F_STR("name", struct kb_listener, name),
	F_INT("port", struct kb_listener, port),
	F_STR("protocol", struct kb_listener, protocol),
	F_STR("hostname", struct kb_listener, hostname),
	F_SUB("tls", listener_tls_fields),
	F_SUB("allowedRoutes", allowed_routes_fields),
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

/* A single `targetRef` (older APIs) joins the `targetRefs` list. */
static void push_target_ref(struct ctx *c, const struct ynode *v, const char *path, struct kb_target_ref **list,
			    size_t *n)
{
	struct kb_target_ref *r;

	if (mf_is_null(v))
		return;
	if (v->t != YN_MAP) {
		mf_err(c, v, path, "expected a mapping, got %s", mf_desc(c, v));
		return;
	}
	/* targetRefs, when it came first, left the list at its exact size. */
	mf_seq_grow(&c->m->arena, (void **)list, *n, sizeof(**list));
	r = KB_PUSH(&c->m->arena, *list, *n);
	r->path = kb_strdup(&c->m->arena, path);
	mf_walk_map(c, v, path, target_ref_fields, (char *)r);
}

static void target_ref_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_btp *p = (struct kb_btp *)t;

	push_target_ref(c, v, path, &p->targets, &p->ntargets);
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

/* ---- BackendTLSPolicy ------------------------------------------------------------------------ */

static const struct seqspec btls_targets = SEQSPEC(struct kb_btls, struct kb_target_ref, targets, ntargets,
						   PATH_OF(struct kb_target_ref), target_ref_fields, NULL, NULL);

static const struct field btls_validation_fields[] = {
	F_FNO("caCertificateRefs", count_refs_fn, offsetof(struct kb_btls, n_ca_refs)),
	F_STR("wellKnownCACertificates", struct kb_btls, well_known_ca),
	F_STRX("hostname"),
	F_ANY("subjectAltNames"),
	F_END,
};

static void btls_target_ref_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	struct kb_btls *p = (struct kb_btls *)t;

	push_target_ref(c, v, path, &p->targets, &p->ntargets);
}

/* v1alpha3 and v1; Gateway API 1.0's v1alpha2 had a single targetRef and `tls` for `validation`. */
static const struct field btls_spec[] = {
	F_SEQ("targetRefs", &btls_targets),
	F_FN("targetRef", btls_target_ref_fn),
	F_SUB("validation", btls_validation_fields),
	F_ANY("tls"),
	F_ANY("options"),
	F_END,
};

/* ---- top level ----------------------------------------------------------------------------------- */

#define TOP_COMMON F_SKIP("apiVersion"), F_SKIP("kind"), F_SKIP("metadata")

static const struct field top_backend[] = {
	TOP_COMMON, F_MAPH("spec", struct kb_backend, has_spec, backend_spec), F_ANY("status"), F_END,
};
static const struct field top_gateway[] = { TOP_COMMON, F_SUB("spec", gateway_spec), F_ANY("status"), F_END };
static const struct field top_route[] = { TOP_COMMON, F_SUB("spec", route_spec), F_ANY("status"), F_END };
static const struct field top_btp[] = { TOP_COMMON, F_SUB("spec", btp_spec), F_ANY("status"), F_END };
static const struct field top_grant[] = { TOP_COMMON, F_SUB("spec", grant_spec), F_ANY("status"), F_END };
static const struct field top_btls[] = { TOP_COMMON, F_SUB("spec", btls_spec), F_ANY("status"), F_END };
static const struct field top_other[] = { TOP_COMMON, F_ANY("spec"), F_ANY("status"), F_END };
/* A kind kbackend does not use: its body (spec, data, rules...) is not read. */
static const struct field top_foreign[] = { TOP_COMMON, F_REST, F_END };

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

/* A Namespace keeps its metadata.labels (ObjectMeta was checked with mf_meta_fields already). */
static void ns_metadata_fn(struct ctx *c, const struct field *f, const struct ynode *v, const char *path, char *t)
{
	static const struct field labels = F_LABELS("labels", struct kb_namespace, labels, nlabels);

	if (!mf_is_null(v) && v->t == YN_MAP)
		labels_fn(c, &labels, mf_map_get(v, "labels", NULL), "metadata.labels", t);
}

static const struct field top_namespace[] = {
	F_SKIP("apiVersion"), F_SKIP("kind"), F_FN("metadata", ns_metadata_fn), F_ANY("spec"), F_ANY("status"), F_END,
};

/* ObjectMeta: name and namespace are read first; the rest is accepted and ignored. */
const struct field mf_meta_fields[] = {
	F_SKIP("name"), F_SKIP("namespace"),
	F_ANY("labels"), F_ANY("annotations"), F_ANY("uid"), F_ANY("resourceVersion"),
	F_ANY("creationTimestamp"), F_ANY("generation"), F_ANY("managedFields"), F_ANY("generateName"),
	F_ANY("ownerReferences"), F_ANY("finalizers"), F_ANY("deletionTimestamp"),
	F_ANY("deletionGracePeriodSeconds"), F_ANY("selfLink"), F_ANY("clusterName"),
	F_END,
};


const struct kind_info mf_kinds[KB_KIND__COUNT] = {
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
	[KB_KIND_BACKEND_TLS_POLICY] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_btls), top_btls, NULL },
	[KB_KIND_ENVOY_EXTENSION_POLICY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_SECURITY_POLICY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_ENVOY_PROXY] = { "gateway.envoyproxy.io", NULL, sizeof(struct kb_other), top_other, NULL },
	[KB_KIND_GATEWAY_CLASS] = { "gateway.networking.k8s.io", NULL, sizeof(struct kb_other), top_other, NULL },
	/* The core group: apiVersion is a bare "v1". */
	[KB_KIND_NAMESPACE] = { "", NULL, sizeof(struct kb_namespace), top_namespace, NULL },
	[KB_KIND_SERVICE] = { "", NULL, sizeof(struct kb_service), mf_top_service, NULL },
	[KB_KIND_SERVICE_IMPORT] = { "multicluster.x-k8s.io", NULL, sizeof(struct kb_service), mf_top_service_import,
				     NULL },
	[KB_KIND_ENDPOINT_SLICE] = { "discovery.k8s.io", NULL, sizeof(struct kb_endpoint_slice),
				     mf_top_endpoint_slice, NULL },
	/* No group: any apiVersion is read as written. */
	[KB_KIND_FOREIGN] = { NULL, NULL, sizeof(struct kb_other), top_foreign, NULL },
};
