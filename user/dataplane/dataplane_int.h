/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to dataplane*.c: the user-space mirror of the sock_addr maps, and the helpers its files share. */
#ifndef KB_DATAPLANE_INT_H
#define KB_DATAPLANE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <bpf/libbpf.h>

#include "dataplane/dataplane.h"
#include "sock_addr.skel.h"
#include "frontend_write.skel.h"

/*
 * Not part of the dataplane's interface (dataplane.h): these types and
 * functions are shared by dataplane.c (load, attach, pin, stats),
 * dataplane_apply.c (the apply path) and dataplane_state.c (the mirror, its
 * index, the slot-run allocator, the id tables and adoption of pinned state).
 */

/* A small open-addressing index: hash -> element number, rebuilt every apply (an update keeps the keys). */
struct kb_index {
	__u32 *tab;	/* element number + 1; 0 is empty */
	size_t cap;	/* power of two */
};

/* ---- state mirrored from the maps: the shadow an apply compares against instead of the kernel ---- */

/*
 * One endpoint of a programmed frontend, as its slots carry it (an IP
 * endpoint, or a unix one through its bridge listener, told apart by path)
 * and the id of its counters. Counters are per frontend and endpoint.
 */
struct kb_fe_ep {
	__u32 ip[4];
	__u16 port;	/* network order */
	__u8 family;
	__u8 kind;
	__u32 id;	/* endpoint_stats id */
	bool owner;	/* the first of its identity in the frontend: it holds the id */
	char *path;	/* unix: the socket path (owned); NULL otherwise and after adoption */
};

/*
 * A programmed frontend: the value and the run of slots written for it, and
 * its endpoints in the compile's order, so that an apply recognises an
 * unchanged frontend without a system call. After adoption (a restart, a
 * failed apply) it is rebuilt from the maps, so it never claims more than
 * the kernel holds.
 */
struct kb_fe_state {
	struct kb_frontend_key key;	/* first: the index compares it */
	struct kb_frontend val;
	struct kb_slot *slots;		/* copy of the run, val.nslots long */
	struct kb_fe_ep *eps;		/* neps long */
	__u32 neps;
	__u32 nids;			/* owners among eps: the endpoint ids it holds */
};

struct kb_run {
	__u32 base, len;
	__u64 since;	/* retired at (CLOCK_MONOTONIC ns); 0 for free runs */
};

struct kb_runs {
	struct kb_run *v;
	size_t n, cap;
};

struct kb_ids {
	__u32 *free;	/* ids given back, reused LIFO */
	size_t nfree, cap;
	__u32 next;	/* never used so far */
	__u32 max;
};

struct kb_bpf_dataplane {
	struct kb_dataplane dp;
	struct sock_addr_bpf *skel;
	struct frontend_write_bpf *fw;	/* writes live frontends in place (kb_fe_publish) */
	struct bpf_link **links;
	size_t nlinks;
	int ncpus;
	__u32 max_frontends, max_slots, max_endpoints, max_peers, max_udp_senders;
	__u32 resize;	/* limits (1 << KB_LIMIT_*) this start grows: their maps are new, filled from the pins */

	struct kb_fe_state *fes;
	size_t nfes;
	size_t neps;			/* endpoint ids held: the sum of fes[].nids */
	__u64 nslots;			/* slots held: the sum of fes[].val.nslots */
	struct kb_addr_key *addrs;	/* what frontend_addrs holds */
	size_t naddrs;
	struct kb_frontend_key *stale;	/* pinned frontends adoption could not mirror: the next apply deletes them */
	size_t nstale;
	struct kb_runs free_runs, retired_runs;
	struct kb_ids fe_ids, ep_ids;
	struct kb_index feix;		/* over fes, for apply and the stats lookups */
	/* A frontend element was deleted then, and no grace period has passed since (0: none): see kb_fe_publish. */
	__u64 fe_freed_ns;
};

/* dataplane.c: log "failed to <verb> <object>: ..." and return err as a negative errno (-EIO for 0). */

/* dataplane_resize.c: the map sizes, and growing pinned maps at start. */
enum { KB_LIMIT_FRONTENDS, KB_LIMIT_SLOTS, KB_LIMIT_ENDPOINTS, KB_LIMIT_SOCKETS };
/* The size a map gets from the limits and the flag that sets it (*flag when not NULL); 0 for fixed sizes. */
__u32 kb_map_size(const struct kb_bpf_dataplane *d, const struct bpf_map *map, const char **flag);
/* Whether map belongs to a limit this start grows. */
bool kb_map_resized(const struct kb_bpf_dataplane *d, const struct bpf_map *map);
/*
 * Before load: take the pinned sizes, or note the limits a flag grows (a
 * smaller size is refused, with the way out). 0 or a negative errno, logged.
 */
int kb_pinned_sizes(struct kb_bpf_dataplane *d, const struct kb_dataplane_opts *opts, const char *pin);
/* Copy the pinned maps of the grown limits into the new ones: after load, before adopt and the link updates. */
int kb_resize_copy(struct kb_bpf_dataplane *d, const char *pin);
/* Pin the grown maps in place of the old ones. */
int kb_resize_repin(struct kb_bpf_dataplane *d, const char *pin);
/*
 * Walk the map at fd KB_BATCH entries a call (bpf_map_lookup_batch), calling
 * chunk on each batch of keys and values (vsz: per-CPU values included).
 * 0, chunk's error, or the kernel's (-EINVAL etc. when it has no batch calls).
 */
#define KB_BATCH 4096
int kb_map_batches(int fd, size_t ksz, size_t vsz, int (*chunk)(void *ctx, void *keys, void *vals, __u32 n),
		   void *ctx);

/* dataplane_apply.c: kb_dataplane_ops.apply and .fits for the BPF dataplane. */
int kb_bpf_apply(struct kb_dataplane *dp, const struct kb_compiled *c);
int kb_bpf_fits(struct kb_dataplane *dp, const struct kb_compiled *c, char *why, size_t len);

/* dataplane_apply.c: what the apply and update paths share. */
/* Endpoint ids taken by this apply, given back if it stops before writing. */
struct kb_fresh {
	__u32 *v;
	size_t n, cap;
};
/* Zero a per-CPU slot before its id names a new frontend or endpoint. */
int kb_zero_percpu(struct bpf_map *map, const __u32 *ids, size_t n, int ncpus);
/*
 * Before an apply's or an update's first write: the changed frontends' new
 * runs (needslots) must fit in the free and retired slots plus what leaves
 * (freeslots), and their fresh endpoint ids' counters are zeroed. 0,
 * -ENOSPC (logged: nothing was written) or -errno.
 */
int kb_before_writes(struct kb_bpf_dataplane *d, __u64 needslots, __u64 freeslots, const __u32 *fresh, size_t nfresh);
int kb_write_slots(struct kb_bpf_dataplane *d, __u32 base, const struct kb_slot *s, __u32 n);
/* The index of key in the mirror, or -1. */
long kb_fe_lookup(const struct kb_bpf_dataplane *d, const struct kb_frontend_key *key);
/* Distinct endpoints of a compiled frontend (the ids it needs). */
size_t kb_distinct_eps(const struct kb_cfrontend *cf);
/* The mirror entry of a changed or new frontend (of: the mirror of its key, or NULL), no kernel writes. */
int kb_fe_build(struct kb_bpf_dataplane *d, const struct kb_cfrontend *cf, const struct kb_fe_state *of,
		struct kb_fe_state *nf, struct kb_fresh *fresh);
/* Give back the ids of of's endpoints that nf (NULL: the frontend goes) no longer has. */
void kb_put_gone_ids(struct kb_bpf_dataplane *d, const struct kb_fe_state *of, const struct kb_fe_state *nf);

/* dataplane_update.c: kb_dataplane_ops.update and .fits_update, the scoped change's path. */
int kb_bpf_update(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n);
int kb_bpf_fits_update(struct kb_dataplane *dp, const struct kb_cfrontend *fes, size_t n, char *why, size_t len);

/* dataplane_verify.c: kb_dataplane_ops.verify, reading the maps back from the kernel. */
int kb_bpf_verify(struct kb_dataplane *dp, const struct kb_compiled *c, kb_verify_diff_fn diff, void *ctx);

/* dataplane_state.c: the index. */
int kb_index_init(struct kb_index *ix, size_t n);
void kb_index_free(struct kb_index *ix);
/* The element number of key, or -1 with *hole set to where it would go. */
long kb_index_find(const struct kb_index *ix, const void *key, size_t ksz, const void *base, size_t stride,
		   size_t *hole);

/* dataplane_state.c: slot runs and ids. */
__u64 kb_now_ns(void);
int kb_runs_push(struct kb_runs *r, __u32 base, __u32 len, __u64 since);
/* First fit over the free runs; may wait for retired runs to age (KB_RUN_GRACE_NS). */
int kb_alloc_run(struct kb_bpf_dataplane *d, __u32 n, __u32 *base);
int kb_id_get(struct kb_ids *ids, __u32 *id);
int kb_id_put(struct kb_ids *ids, __u32 id);

/* dataplane_state.c: the mirror. */
int kb_reindex(struct kb_bpf_dataplane *d);
/* dataplane_state.c: wait for an RCU grace period (membarrier); false when the kernel cannot promise one. */
bool kb_rcu_grace(void);
/* dataplane_apply.c: store a frontend's value: in place when the key is present, else a new element (present: the mirror's guess, tried first). */
int kb_fe_publish(struct kb_bpf_dataplane *d, const struct kb_frontend_key *key, const struct kb_frontend *val,
		  bool present);
/* The endpoint as slots carry it; path borrowed from ep (not owned). */
void kb_fe_ep_of(const struct kb_cendpoint *ep, struct kb_fe_ep *out);
bool kb_fe_ep_eq(const struct kb_fe_ep *a, const struct kb_fe_ep *b);
/* The index in fs->eps of the endpoint equal to e, trying hint first; -1 if none. */
long kb_fe_ep_find(const struct kb_fe_state *fs, const struct kb_fe_ep *e, size_t hint);
/* Whether cf programs exactly what fs holds (value, slots, endpoints and their order): nothing to write. */
bool kb_fe_same(const struct kb_fe_state *fs, const struct kb_cfrontend *cf);
/* Free what fs owns (slots, endpoints, paths). */
void kb_fe_state_free(struct kb_fe_state *fs);
/* Drop the whole mirror (not the maps). */
void kb_mirror_free(struct kb_bpf_dataplane *d);
/* Rebuild the mirror, free runs and free ids from the pinned maps. */
int kb_adopt_state(struct kb_bpf_dataplane *d);

#endif /* KB_DATAPLANE_INT_H */
