/* SPDX-License-Identifier: Apache-2.0 */
/* The in-memory model of the applied manifests: what manifest fills, validate judges and compile reads. */
#ifndef KB_MODEL_H
#define KB_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Where something came from, for diagnostics. line and col are 1-based; 0 = unknown. */
struct kb_loc {
	const char *file;	/* owned by the model's arena */
	int line;
	int col;
};

enum kb_kind {
	KB_KIND_UNKNOWN = 0,
	KB_KIND_ENVOY_GATEWAY,
	KB_KIND_GATEWAY,
	KB_KIND_HTTPROUTE,
	KB_KIND_GRPCROUTE,
	KB_KIND_TLSROUTE,
	KB_KIND_TCPROUTE,
	KB_KIND_UDPROUTE,
	KB_KIND_BACKEND,
	KB_KIND_BACKEND_TRAFFIC_POLICY,
	KB_KIND_REFERENCE_GRANT,
	/* Known kinds that kbackend stores but does not act on (status says so). */
	KB_KIND_BACKEND_TLS_POLICY,
	KB_KIND_ENVOY_EXTENSION_POLICY,
	KB_KIND_SECURITY_POLICY,
	KB_KIND_ENVOY_PROXY,
	KB_KIND_GATEWAY_CLASS,
	/* Core kinds read for what validate needs of them. */
	KB_KIND_NAMESPACE,	/* labels, for listeners' allowedRoutes selectors */
	KB_KIND_SERVICE,	/* ports, for Service backendRefs steered to EndpointSlices */
	KB_KIND_SERVICE_IMPORT,	/* multicluster.x-k8s.io: ports, for ServiceImport backendRefs */
	KB_KIND_ENDPOINT_SLICE,	/* discovery.k8s.io: a Service's (or ServiceImport's) endpoints and their readiness */
	/*
	 * Any other kind (Secret, Service, Deployment, an Istio Gateway...): read
	 * for its identity and text, kept and stored, never judged beyond
	 * Accepted=Unknown/Ignored. kb_meta.kind_name says which kind it is.
	 */
	KB_KIND_FOREIGN,
	KB_KIND__COUNT,
};

const char *kb_kind_name(enum kb_kind k);
const char *kb_kind_api_version(enum kb_kind k);
enum kb_kind kb_kind_from_name(const char *name);
bool kb_kind_is_route(enum kb_kind k);

/* ---- diagnostics ---------------------------------------------------------- */

enum kb_severity { KB_SEV_ERROR = 0, KB_SEV_WARNING = 1 };

/*
 * One message: "file:line:col: Kind ns/name: field.path: message".
 * object and path may be NULL (e.g. a YAML syntax error has no object).
 */
struct kb_diag {
	enum kb_severity sev;
	struct kb_loc loc;
	char *object;		/* "Backend default/api" */
	char *path;		/* "spec.endpoints[1].ip.address" */
	char *msg;
};

/* ---- status ---------------------------------------------------------------- */

enum kb_cond_status { KB_COND_TRUE, KB_COND_FALSE, KB_COND_UNKNOWN };

struct kb_condition {
	char *type;		/* Accepted, ResolvedRefs, ... */
	enum kb_cond_status status;
	char *reason;		/* Accepted, Invalid, InvalidAddress, ... */
	char *message;
};

/* Route status is per parent, as in Gateway API's RouteParentStatus. */
struct kb_parent_status {
	char *parent;		/* "namespace/name" of the Gateway, plus "/section" when set */
	struct kb_condition *conds;
	size_t nconds;
};

/*
 * A field's location, as manifest records it for every mapping, sequence and
 * scalar it reads. Objects do not keep these: kb_meta_loc re-derives them
 * from kb_meta.src when a message needs one (see kb_meta.fields).
 */
struct kb_field_loc {
	const char *path;	/* "spec.endpoints[0].ip.address" */
	struct kb_loc loc;
};

/* The location recorded for path in f[0..n), or for its longest recorded ancestor; dflt when none. */
struct kb_loc kb_field_loc_find(const struct kb_field_loc *f, size_t n, struct kb_loc dflt, const char *path);

struct kb_meta {
	enum kb_kind kind;
	const char *kind_name;	/* the kind as written (arena); NULL: kb_kind_name(kind) */
	char *api_version;
	char *name;
	char *namespace;	/* "default" when absent */
	struct kb_loc loc;	/* the document's root mapping */
	int doc_index;		/* 0-based document number within its file */
	char **labels;		/* metadata.labels as key, value, key, value... (for `get -l`) */
	size_t nlabels;		/* pairs */
	const char *src;	/* the document's YAML text (arena copy), for the daemon's state store */
	size_t src_len;
	/*
	 * Field locations, kept only for an object whose src cannot be re-read
	 * on its own (no src: UTF-16 input; %TAG directives); NULL otherwise,
	 * and kb_meta_loc re-reads src instead (a few KiB per object saved).
	 */
	struct kb_field_loc *fields;
	size_t nfields;
	/*
	 * Set by the daemon's incremental change for an object it does not
	 * re-judge: validate keeps its status and reads it as context.
	 */
	bool skip_judge;
	/* Set while the daemon builds its next state: the change names this object (apply_scope.c). */
	bool named;
	/* Set while the daemon builds a change's scope: the object is judged again or read as context. */
	bool in_scope;
	/* The daemon's order of arrival: increasing along its state's arrays (change/state_index.c). */
	unsigned long seq;
	/* Status, written by validate. */
	struct kb_condition *conds;
	size_t nconds;
	struct kb_parent_status *parents;	/* routes only */
	size_t nparents;
};

/* ---- Backend ---------------------------------------------------------------- */

enum kb_ep_type { KB_EP_NONE = 0, KB_EP_IP, KB_EP_FQDN, KB_EP_UNIX };

/* Bits of struct kb_endpoint.present: which address fields the document set. */
#define KB_EP_HAS_IP	(1u << 0)
#define KB_EP_HAS_FQDN	(1u << 1)
#define KB_EP_HAS_UNIX	(1u << 2)

struct kb_endpoint {
	unsigned present;	/* KB_EP_HAS_* bits actually written in YAML */
	enum kb_ep_type type;	/* the first of ip/fqdn/unix that is present; NONE if none */
	char *address;		/* ip literal as written / fqdn hostname / unix path */
	int64_t port;		/* raw value, range-checked by validate */
	bool has_port;
	char *hostname;		/* endpoint-level hostname (for autoSNI) */
	char *zone;
	bool seed_shape;	/* written as `ip: 1.2.3.4` + sibling `port:` */
	char *path;		/* field path of this endpoint, e.g. "spec.endpoints[1]" */
};

/* A reference to a Secret or ConfigMap, kept for the CRD's schema checks; NULL: not written. */
struct kb_objref {
	char *group;
	char *kind;
	char *name;
	char *namespace;
	char *path;		/* "spec.tls.caCertificateRefs[0]" */
};

/* Backend spec.tls; kbackend refuses TLS, but checks Envoy Gateway's CEL rules first. */
struct kb_backend_tls {
	bool present;
	int insecure_skip_verify;	/* -1 unset, 0 false, 1 true */
	char *well_known_ca;		/* "System" or NULL */
	struct kb_objref *ca_refs;
	size_t n_ca_refs;
	char *sni;
	bool auto_sni;
	char *min_version;
	char *max_version;
	size_t n_ciphers;
	bool has_client_cert;
	struct kb_objref client_cert;	/* clientCertificateRef; namespace NULL: the Backend's */
	char **fingerprints;
	size_t nfingerprints;
};

struct kb_backend {
	struct kb_meta meta;
	bool has_spec;			/* a non-null `spec:` (the CRD requires one) */
	char *type;			/* NULL means Endpoints */
	bool has_endpoints;		/* `endpoints:` key present (even if empty) */
	struct kb_endpoint *endpoints;
	size_t nendpoints;
	char **app_protocols;
	size_t napp_protocols;
	bool fallback;			/* real API: `fallback: true` */
	/* seed shape: fallback: {backendRef: {name, namespace, port}} */
	bool has_fallback_ref;
	char *fallback_ref_name;
	char *fallback_ref_namespace;	/* NULL: the Backend's own */
	int64_t fallback_ref_port;
	bool has_fallback_ref_port;
	struct kb_backend_tls tls;
	/* validate's verdict, kept so that routes judged later without this Backend can read it. */
	bool v_refused;
	const char *v_reason, *v_why;
};

/* ---- Gateway ---------------------------------------------------------------- */

struct kb_gw_address {
	char *type;		/* "IPAddress" (default) or "Hostname" / "NamedAddress" */
	char *value;
};

/* A label, or a selector's matchLabels entry. */
struct kb_label {
	char *key, *value;
};

/* A LabelSelector's matchExpressions entry. */
struct kb_label_expr {
	char *key;
	char *op;		/* In NotIn Exists DoesNotExist */
	char **values;
	size_t nvalues;
	char *path;
};

/* A listener's allowedRoutes.kinds entry. */
struct kb_route_group_kind {
	char *group;		/* NULL: gateway.networking.k8s.io */
	char *kind;
};

struct kb_listener {
	char *name;
	int64_t port;
	char *protocol;		/* HTTP HTTPS TLS TCP UDP GRPC ... */
	char *hostname;
	char *tls_mode;		/* tls.mode: NULL (Terminate), Terminate, Passthrough */
	/* allowedRoutes */
	char *ns_from;		/* namespaces.from: NULL (Same), Same, All, Selector */
	bool has_selector;	/* namespaces.selector present */
	struct kb_label *match_labels;
	size_t nmatch_labels;
	struct kb_label_expr *match_exprs;
	size_t nmatch_exprs;
	struct kb_route_group_kind *kinds;	/* allowedRoutes.kinds; none: the protocol's kinds */
	size_t nkinds;
	char *path;		/* "spec.listeners[0]" */
};

struct kb_gateway {
	struct kb_meta meta;
	char *gateway_class;
	struct kb_gw_address *addresses;
	size_t naddresses;
	struct kb_listener *listeners;
	size_t nlisteners;
};

/* ---- Routes ----------------------------------------------------------------- */

struct kb_parent_ref {
	char *group;		/* NULL: gateway.networking.k8s.io */
	char *kind;		/* NULL: Gateway */
	char *name;
	char *namespace;	/* NULL: the route's own */
	char *section_name;
	int64_t port;
	bool has_port;
	char *path;
};

struct kb_backend_ref {
	char *group;		/* NULL or "": core */
	char *kind;		/* NULL: Service */
	char *name;
	char *namespace;	/* NULL: the route's own */
	int64_t port;
	bool has_port;
	int64_t weight;		/* default 1 */
	bool has_weight;
	bool fallback;		/* policy-style `fallback: true` on the ref itself */
	size_t nfilters;	/* backendRef filters: refused at L4 */
	char *path;		/* "spec.rules[0].backendRefs[1]" */
};

struct kb_route_rule {
	size_t nmatches;	/* not enforced at L4; reported */
	size_t nfilters;	/* rule filters: not enforced at L4; reported */
	struct kb_backend_ref *refs;
	size_t nrefs;
	char *path;
};

struct kb_route {
	struct kb_meta meta;
	struct kb_parent_ref *parents;
	size_t nparents;
	char **hostnames;
	size_t nhostnames;
	struct kb_route_rule *rules;
	size_t nrules;
};

/* ---- BackendTrafficPolicy ----------------------------------------------------- */

struct kb_target_ref {
	char *group;
	char *kind;
	char *name;
	char *section_name;
	char *path;
};

/* Durations are parsed to milliseconds; -1 means unset (use the default). */
struct kb_active_hc {
	bool present;
	char *type;		/* "TCP" or "HTTP" */
	int64_t timeout_ms, interval_ms;
	int64_t unhealthy_threshold, healthy_threshold;	/* -1 unset */
	char *http_path;
	char *http_method;
	int64_t *expected_statuses;
	size_t nexpected_statuses;
};

struct kb_passive_hc {
	bool present;
	int64_t base_ejection_ms, interval_ms;
	int64_t max_ejection_percent;			/* -1 unset */
	int64_t consecutive_local_origin_failures;	/* -1 unset */
	int64_t consecutive_5xx, consecutive_gateway_errors;	/* -1 unset */
	int split_external_local_origin_errors;		/* -1 unset */
};

struct kb_btp {
	struct kb_meta meta;
	struct kb_target_ref *targets;
	size_t ntargets;
	struct kb_active_hc active;
	struct kb_passive_hc passive;
	bool has_dns;
	int64_t dns_refresh_ms;		/* -1 unset (30 s) */
	int respect_dns_ttl;		/* -1 unset (true) */
	char *lookup_family;		/* NULL: IPv4Preferred */
	char *lb_type;			/* NULL: Random */
	char *consistent_hash_type;	/* "SourceIP" ... */
	int64_t panic_threshold;	/* -1 unset (50) */
};

/* ---- ReferenceGrant ---------------------------------------------------------- */

struct kb_grant_from {
	char *group, *kind, *namespace;
};

struct kb_grant_to {
	char *group, *kind, *name;	/* name NULL: any */
};

struct kb_reference_grant {
	struct kb_meta meta;
	struct kb_grant_from *from;
	size_t nfrom;
	struct kb_grant_to *to;
	size_t nto;
};

/* ---- EnvoyGateway and kinds kbackend only records ---------------------------- */

struct kb_envoy_gateway {
	struct kb_meta meta;
	int enable_backend;	/* -1 unset, 0, 1 */
};

struct kb_other {
	struct kb_meta meta;	/* BackendTLSPolicy, EnvoyExtensionPolicy, ... */
};

/*
 * A BackendTLSPolicy: listed with the others (it starts like a kb_other), and
 * read because one aimed at a Backend asks for TLS origination, as spec.tls does.
 */
struct kb_btls {
	struct kb_meta meta;
	struct kb_target_ref *targets;
	size_t ntargets;
	char *well_known_ca;		/* spec.validation.wellKnownCACertificates */
	size_t n_ca_refs;		/* spec.validation.caCertificateRefs */
};

/* A core Namespace: only its labels matter (allowedRoutes selectors). Cluster-scoped: meta.name is the namespace. */
struct kb_namespace {
	struct kb_meta meta;
	struct kb_label *labels;
	size_t nlabels;
};

/* ---- Service, ServiceImport, EndpointSlice (endpoints.c judges and selects) ---- */

/* spec.ports[] of a Service or ServiceImport. */
struct kb_svc_port {
	char *name;		/* NULL: unnamed (a single-port Service) */
	int64_t port;
	bool has_port;
	char *protocol;		/* NULL: TCP */
	int64_t target_port;	/* Service only; checked, not used: EndpointSlices carry the pods' ports */
	char *target_name;	/* a named targetPort */
	bool has_target;
	char *path;		/* "spec.ports[0]" */
};

/* A Service (v1) or a ServiceImport (multicluster.x-k8s.io); meta.kind says which. */
struct kb_service {
	struct kb_meta meta;
	char *type;		/* Service: NULL (ClusterIP), NodePort, LoadBalancer, ExternalName; ServiceImport: ClusterSetIP, Headless */
	char *cluster_ip;	/* spec.clusterIP ("None": headless) */
	char **cluster_ips;	/* spec.clusterIPs (ServiceImport: spec.ips) */
	size_t ncluster_ips;
	char *external_name;
	struct kb_svc_port *ports;
	size_t nports;
};

struct kb_slice_port {
	char *name;		/* NULL or "": matches an unnamed Service port */
	int64_t port;
	bool has_port;		/* absent: "all ports", which a steered connect cannot use */
	char *protocol;		/* NULL: TCP */
	char *path;
};

struct kb_slice_endpoint {
	char **addresses;
	size_t naddresses;
	int ready, serving, terminating;	/* conditions: -1 unset (ready, serving: true; terminating: false) */
	bool refused;		/* validate: the SSRF guard refuses its address (compile leaves it out) */
	char *path;		/* "endpoints[0]" */
};

struct kb_endpoint_slice {
	struct kb_meta meta;
	char *address_type;	/* IPv4, IPv6 (used), FQDN (ignored) */
	struct kb_slice_endpoint *endpoints;
	size_t nendpoints;
	struct kb_slice_port *ports;
	size_t nports;
	/* The owner: label kubernetes.io/service-name (a Service) or multicluster.kubernetes.io/service-name (a ServiceImport). */
	const char *service;
	enum kb_kind owner_kind;	/* KB_KIND_SERVICE, KB_KIND_SERVICE_IMPORT, or KB_KIND_UNKNOWN: no owner label */
};

/* The EndpointSlice label that names the Service (or ServiceImport) a slice belongs to. */
#define KB_LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define KB_LABEL_MCS_SERVICE_NAME "multicluster.kubernetes.io/service-name"

/* ---- the model ------------------------------------------------------------------- */

/*
 * How Service and ServiceImport backendRefs are steered (--service-endpoints):
 * AUTO, the default: to the ready endpoints of the EndpointSlices of the
 * Service when the Service object is in the state, else through cluster DNS;
 * SLICES: always through EndpointSlices, a Service that is not in the state is
 * BackendNotFound (the Kubernetes source, which sees every Service); DNS: always
 * through cluster DNS, the Service objects only stored.
 */
enum kb_svc_mode { KB_SVC_AUTO = 0, KB_SVC_SLICES, KB_SVC_DNS };

/* Daemon/validation policy flags (DESIGN.md section 2). */
struct kb_policy {
	int enable_backend;		/* -1: take it from an EnvoyGateway object, else false */
	char **unix_dirs;
	size_t nunix_dirs;
	char **allow_cidrs;		/* --allow-endpoint CIDR */
	size_t nallow_cidrs;
	char **node_addrs;		/* the node's own addresses, refused unless allowed */
	size_t nnode_addrs;
	char *cluster_domain;		/* "cluster.local" */
	char *clusterset_domain;	/* ServiceImport refs: "clusterset.local" */
	enum kb_svc_mode service_endpoints;	/* --service-endpoints */
};

struct kb_model {
	struct kb_arena arena;	/* the objects and everything they point to */
	/*
	 * The arrays below (objects, typed views, diagnostics): rebuilt when the
	 * daemon makes its next state out of this one's objects, so they are
	 * freed apart from the objects (kb_model_take_objects).
	 */
	struct kb_arena views;
	/* All objects, in input order (files sorted, then documents). */
	struct kb_meta **objects;
	size_t nobjects;
	/* Typed views; the pointers alias entries of objects[]. */
	struct kb_backend **backends;
	size_t nbackends;
	struct kb_gateway **gateways;
	size_t ngateways;
	struct kb_route **routes;
	size_t nroutes;
	struct kb_btp **btps;
	size_t nbtps;
	struct kb_reference_grant **grants;
	size_t ngrants;
	struct kb_envoy_gateway **envoy_gateways;
	size_t nenvoy_gateways;
	struct kb_other **others;
	size_t nothers;
	struct kb_namespace **namespaces;
	size_t nnamespaces;
	struct kb_service **services;	/* Services and ServiceImports */
	size_t nservices;
	struct kb_endpoint_slice **slices;
	size_t nslices;
	/* Diagnostics from every stage, in order. */
	struct kb_diag *diags;
	size_t ndiags;
	size_t nerrors;
	/* The object kb_diag_add last re-read for a location (a model of its own), so an object's next message reuses it. */
	struct kb_model *loc_cache;
	/*
	 * Strings that objects repeat (field paths, namespaces, apiVersions,
	 * condition reasons and messages), one copy each in arena
	 * (kb_model_intern). The map's table is in strings_a and goes with the
	 * model's arrays; the strings stay with the objects.
	 */
	struct kb_smap strings;
	struct kb_arena strings_a;
};

void kb_model_init(struct kb_model *m);
/* s, copied once into m's arena: the same pointer for equal strings. Read-only after. */
const char *kb_model_intern(struct kb_model *m, const char *s);
void kb_model_free(struct kb_model *m);
/* Append src's objects and diagnostics to dst and take over its memory; src ends empty. */
void kb_model_absorb(struct kb_model *dst, struct kb_model *src);
/*
 * dst was built from src's objects (shared pointers): dst takes over the
 * memory of those objects, src's arrays are freed, and src ends empty.
 */
void kb_model_take_objects(struct kb_model *dst, struct kb_model *src);

/*
 * Location of the field at `path` in obj, or of its nearest recorded
 * ancestor (obj->loc when none): from obj->fields when kept, else by parsing
 * obj->src again (manifest.c) and shifting what that finds to obj->loc.
 */
struct kb_loc kb_meta_loc(const struct kb_meta *obj, const char *path);

/* The object's kind as written: kb_kind_name(kind) for the kinds kbackend reads, else its own (Secret, ...). */
const char *kb_meta_kind(const struct kb_meta *obj);

/* "Kind ns/name" (a diagnostic's object) into the model's arena, or into a. */
char *kb_meta_label(struct kb_model *m, const struct kb_meta *obj);
char *kb_meta_label_in(struct kb_arena *a, const struct kb_meta *obj);

/* Add a diagnostic; obj may be NULL. path may be NULL. The location is looked up from obj+path when obj is set. */
void kb_diag_add(struct kb_model *m, enum kb_severity sev, const struct kb_meta *obj, const char *path,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Same, with an explicit location (for syntax errors, before an object exists). */
void kb_diag_add_at(struct kb_model *m, enum kb_severity sev, struct kb_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "file:line:col: Kind ns/name: path: msg" into buf. */
int kb_diag_format(const struct kb_diag *d, char *buf, size_t len);

/* Set (replace by type) a condition on an object, or on one of a route's parents. */
void kb_set_condition(struct kb_model *m, struct kb_meta *obj, const char *type, enum kb_cond_status st,
		      const char *reason, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
struct kb_parent_status *kb_parent_status(struct kb_model *m, struct kb_meta *route, const char *parent);
void kb_set_parent_condition(struct kb_model *m, struct kb_parent_status *ps, const char *type,
			     enum kb_cond_status st, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
const struct kb_condition *kb_get_condition(const struct kb_meta *obj, const char *type);
const char *kb_cond_status_name(enum kb_cond_status st);

/* Append a parsed object; manifest calls this once per document. */
void kb_model_add_object(struct kb_model *m, struct kb_meta *obj);

struct kb_backend *kb_model_find_backend(const struct kb_model *m, const char *ns, const char *name);
struct kb_gateway *kb_model_find_gateway(const struct kb_model *m, const char *ns, const char *name);
/* The Namespace object named name, or NULL (a namespace not in the applied set has no labels). */
const struct kb_namespace *kb_model_find_namespace(const struct kb_model *m, const char *name);
/* Service (kind KB_KIND_SERVICE) or ServiceImport (KB_KIND_SERVICE_IMPORT) ns/name, or NULL. */
struct kb_service *kb_model_find_service(const struct kb_model *m, enum kb_kind kind, const char *ns, const char *name);

#endif /* KB_MODEL_H */
