/* SPDX-License-Identifier: Apache-2.0 */
/* Stage 3: accepted objects into frontends, priority levels and weighted slot tables (no kernel calls). */
#ifndef KB_COMPILE_H
#define KB_COMPILE_H

#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "../include/kbackend.h"
#include "manifest/model.h"

#define KB_MAX_PRIORITIES 8
#define KB_DEFAULT_PANIC_PCT 50
#define KB_OVERPROVISION 1.4

/* One concrete endpoint of a frontend (an FQDN contributes one per resolved address). */
struct kb_cendpoint {
	char *backend;		/* "ns/name" of the Backend, or "ns/name" of the Service */
	unsigned priority;
	unsigned locality;	/* index into kb_cfrontend.locs */
	enum kb_ep_type type;	/* IP, FQDN (resolved address) or UNIX */
	char *address;		/* "198.51.100.1", "2001:db8:1::1", or the unix path */
	char *fqdn;		/* the hostname this address came from, or NULL */
	__u16 port;		/* host order; for unix, the bridge listener's port (0: no bridge) */
	__u8 family;		/* AF_INET / AF_INET6; AF_UNIX for unix */
	__u32 ip[4];		/* network order words, as in struct kb_slot; for unix, the bridge listener's IPv4 */
	bool healthy;
	__u32 nslots;		/* slots this endpoint holds in the table */
	double share;		/* fraction of new connections, 0..1 */
};

/* A locality is one backendRef: a weighted group of equal endpoints. */
struct kb_clocality {
	char *backend;		/* "ns/name" */
	char *ref_path;		/* "spec.rules[0].backendRefs[1]" of the route */
	int64_t weight;
	unsigned priority;
	size_t nendpoints;	/* concrete endpoints (0 for an unresolved FQDN) */
	size_t nhealthy;
	char **pending;		/* FQDNs not resolved yet, for display */
	size_t npending;
};

struct kb_clevel {
	unsigned priority;
	size_t nendpoints, nhealthy;
	double load;		/* share of traffic, 0..1, after spill */
	bool panic;		/* hosts are used regardless of health */
};

struct kb_cfrontend {
	struct kb_frontend_key key;	/* map key, network order */
	char *address;		/* "198.18.0.10" */
	__u16 port;		/* host order */
	__u8 proto;		/* KB_PROTO_TCP / KB_PROTO_UDP */
	enum kb_lb lb;
	const struct kb_btp *policy;	/* the BackendTrafficPolicy that applies (lb, dns, health), or NULL */
	char *gateway;		/* "ns/name" */
	char *listener;		/* listener name */
	char *route;		/* "Kind ns/name" that supplies the refs */
	struct kb_clocality *locs;
	size_t nlocs;
	struct kb_cendpoint *eps;	/* exactly neps (compile_frontend): never KB_PUSHed to after compile */
	size_t neps;
	struct kb_clevel *levels;
	size_t nlevels;
	__u32 *slots;		/* indices into eps[], length nslots */
	__u32 nslots;		/* 0: refuse (no usable endpoint) */
};

struct kb_compiled {
	struct kb_arena arena;	/* what the frontends point to */
	struct kb_arena views;	/* the fes array itself: an incremental change rebuilds it and frees the old one */
	struct kb_cfrontend *fes;
	size_t nfes;
};

/*
 * What the compiler may ask of the world, injected so that the compiler stays
 * pure: resolved FQDN addresses and endpoint health. Either callback may be
 * NULL: FQDNs are then unresolved (their locality holds no endpoint yet) and
 * every endpoint is healthy.
 */
struct kb_compile_env {
	/* Fill up to max addresses for host (each as AF_INET/AF_INET6 + ip words); return the count. */
	size_t (*resolve)(void *ctx, const char *host, __u8 *family, __u32 (*ip)[4], size_t max);
	bool (*healthy)(void *ctx, const struct kb_cfrontend *fe, const struct kb_cendpoint *ep);
	void *ctx;
	/* Service backendRefs become <name>.<ns>.svc.<cluster_domain>; NULL: "cluster.local". */
	const char *cluster_domain;
	/* ServiceImport backendRefs become <name>.<ns>.svc.<clusterset_domain>; NULL: "clusterset.local". */
	const char *clusterset_domain;
	/*
	 * The bridge listener (IPv4 address words, host-order port) that connects
	 * to the unix sidecar at path go to; 0 or -errno. NULL or a failure: the
	 * endpoint's port stays 0 and the data path refuses it.
	 */
	int (*bridge)(void *ctx, const char *path, __u32 ip[4], __u16 *port);
	void *bridge_ctx;
	/* --service-endpoints: Services steered to their EndpointSlices (AUTO, SLICES) or through DNS. */
	enum kb_svc_mode service_endpoints;
};

/* One endpoint of a Service backendRef, chosen from its EndpointSlices (compile_slices.c). */
struct kb_slice_pick {
	const char *address;	/* as the slice writes it */
	__u8 family;		/* AF_INET / AF_INET6 */
	__u32 ip[4];		/* network order */
	__u16 port;		/* host order: the slice port that the Service port's name matches */
};

/*
 * The endpoints a backendRef to svc with port ref_port over proto ("TCP",
 * "UDP") steers to, from slices (svc's own, any order): the Service port
 * ref_port names, the slice port of that port's name (kube-proxy's rule),
 * endpoints ready, serving and not terminating, or else the serving and
 * terminating ones; of the frontend's family (an IPv6 frontend falls back to
 * IPv4 slices). Refused slices are left out. *out (in a) sorted, each once.
 */
size_t kb_service_endpoints(struct kb_arena *a, const struct kb_service *svc, struct kb_endpoint_slice *const *slices,
			    size_t nslices, int64_t ref_port, const char *proto, __u8 fe_family,
			    struct kb_slice_pick **out);

/* Does the parentRef name a Gateway (compile programs only those; a scoped change follows the same rule)? */
bool kb_parent_names_gateway(const struct kb_parent_ref *pr);

/* Compile the accepted objects of a validated model. Returns 0, or -1 with a diagnostic in m. */
int kb_compile(struct kb_model *m, const struct kb_compile_env *env, struct kb_compiled *out);
/*
 * Compile only the frontends of the Gateways in `gateways`: keys "ns/name"
 * and, so that a lookup can stop at the name, each bare name too (values
 * unused). The rest of the model is read as context. A Gateway's frontends
 * come out as kb_compile() makes them, except that a listener another
 * Gateway also serves is not dropped here: the caller keeps the owner it had.
 */
int kb_compile_gateways(struct kb_model *m, const struct kb_compile_env *env, const struct kb_smap *gateways,
			struct kb_compiled *out);
/*
 * kb_compile_gateways narrowed to the frontends whose key is one of
 * keys[0..nkeys) (a DNS answer recompiles the frontends that use the name,
 * not their Gateways' others). Their memory comes from `into` (the
 * programmed table's arena, which keeps filling its current chunk) when not
 * NULL: out->arena stays empty, so a small recompile does not pin a chunk of
 * its own until the next rebuild.
 */
int kb_compile_frontends(struct kb_model *m, const struct kb_compile_env *env, const struct kb_smap *gateways,
			 const struct kb_frontend_key *keys, size_t nkeys, struct kb_arena *into, struct kb_compiled *out);
void kb_compiled_free(struct kb_compiled *c);

/*
 * Envoy's priority load: given healthy/total per level (level 0 first),
 * fill load[i] (0..1, summing to 1 when any endpoint exists) and panic[i].
 */
void kb_priority_load(const size_t *healthy, const size_t *total, size_t n, unsigned panic_pct, double *load,
		      bool *panic);

/* Largest-remainder apportionment of nslots over weights: each count within one slot of exact. */
void kb_apportion(const double *weights, size_t n, __u32 nslots, __u32 *counts);

/* The slot-table size the compiler picks for n endpoints with load. */
__u32 kb_slot_count(size_t n);

#endif /* KB_COMPILE_H */
