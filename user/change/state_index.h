/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to change/: the indexes a scoped change reads instead of walking the whole state, kept across changes. */
#ifndef KB_STATE_INDEX_H
#define KB_STATE_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "compile/compile.h"
#include "manifest/model.h"

/* Stored objects, in no particular order (arena-grown; a removal moves the last one into the hole). */
struct kb_olist {
	struct kb_meta **v;
	size_t n, cap;
};

/* Positions of diagnostics in the state's diags array. */
struct kb_plist {
	size_t *v;
	size_t n, cap;
};

/*
 * Over d->state, built from it when a whole change or a restore replaced it
 * (ok false) and then updated by each scoped change as it commits. verify
 * compares every part with a rebuild (kb_state_ix_check).
 */
struct kb_state_ix {
	bool ok;
	struct kb_arena a;
	struct kb_arena tmp;		/* keys made for lookups, emptied after each commit */
	struct kb_smap objs;		/* "Kind/ns/name" -> stored object (NULL: gone) */
	struct kb_smap gw_routes;	/* "ns/name" of a Gateway -> struct kb_olist: the stored routes whose parentRefs name it */
	struct kb_smap be_routes;	/* "ns/name" of a Backend -> struct kb_olist: the stored routes with a backendRef to it */
	/* "Service/ns/name" or "ServiceImport/ns/name" -> struct kb_olist: the stored routes with a backendRef to it */
	struct kb_smap svc_routes;
	/* the same key -> struct kb_olist: the stored EndpointSlices whose service-name label names it */
	struct kb_smap svc_slices;
	struct kb_smap diag_pos;	/* "Kind ns/name" -> struct kb_plist: that object's live diagnostics in state.diags */
	struct kb_smap global;		/* message of a diagnostic about no object, present in state.diags */
	size_t ndead;			/* diagnostics in state.diags said about objects judged again since (msg NULL) */
	unsigned long next_seq;		/* seq of the next object to arrive */
	size_t nfallback;		/* stored Backends with a seed-shape fallback backendRef */
	size_t nbtls;			/* stored BackendTLSPolicies */
	size_t bytes;			/* stored text, for the periodic rebuild */
};

/* Build ix from state if it is not valid (a whole change or a restore replaced the state); numbers state's objects. */
void kb_state_ix_ensure(struct kb_state_ix *ix, struct kb_model *state);
/* The state was replaced whole: ix is rebuilt before the next scoped change. */
void kb_state_ix_reset(struct kb_state_ix *ix);
void kb_state_ix_free(struct kb_state_ix *ix);
/* "Kind/ns/name", the key of the object index and of the store. */
const char *kb_state_ix_key(struct kb_arena *a, const struct kb_meta *o);
/* The stored object of o's key, or NULL. */
struct kb_meta *kb_state_ix_find(struct kb_state_ix *ix, struct kb_arena *tmp, const struct kb_meta *o);
/* The stored routes that name Gateway ns/name as a parent, or that send to Backend ns/name; NULL when none. */
const struct kb_olist *kb_state_ix_gw_routes(struct kb_state_ix *ix, struct kb_arena *tmp, const char *ns,
					    const char *name);
const struct kb_olist *kb_state_ix_be_routes(struct kb_state_ix *ix, struct kb_arena *tmp, const char *ns,
					    const char *name);
/* The key of svc_routes and svc_slices: "Service/ns/name" or "ServiceImport/ns/name". */
const char *kb_state_ix_svc_key(struct kb_arena *a, enum kb_kind kind, const char *ns, const char *name);
/* The key of the Service or ServiceImport a backendRef names (NULL: a Backend or another kind). */
const char *kb_state_ix_ref_svc_key(struct kb_arena *a, const struct kb_route *r, const struct kb_backend_ref *ref);

/*
 * Commit a scoped change into state: the objects in gone[] (each stored)
 * leave the state's arrays and the indexes, added[] (the request's objects)
 * join them at the end with the next seqs, and what was said about
 * judged[] and gone[] gives way to diags[] (the change's diagnostics). The
 * caller moves the memory of added[] and diags[] into state's arena.
 */
void kb_state_ix_commit(struct kb_state_ix *ix, struct kb_model *state, struct kb_meta *const *gone, size_t ngone,
			struct kb_meta *const *judged, size_t njudged, struct kb_meta *const *added, size_t nadded,
			const struct kb_diag *diags, size_t ndiags);
/* Add diagnostics about no object (a compile's warnings) to state, each once. */
void kb_state_ix_add_global(struct kb_state_ix *ix, struct kb_model *state, const struct kb_diag *diags, size_t n);

/* Drop the diagnostics that no longer hold from state.diags (before it is listed whole). */
void kb_state_ix_compact(struct kb_state_ix *ix, struct kb_model *state);

/* Why the state must be judged whole for a change of these objects (fallback chains, BackendTLSPolicies), or NULL. */
const char *kb_state_ix_whole_reason(const struct kb_state_ix *ix);

/* A verify check's differences: diff(ctx, line) for each of the first 20, n counts them all. */
struct kb_ix_check {
	void (*diff)(void *ctx, const char *line);
	void *ctx;
	size_t n;
};
void kb_ix_say(struct kb_ix_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * verify: compare ix with one built from state now. Calls diff(ctx, line)
 * once per difference (at most a few of each kind); returns how many.
 */
size_t kb_state_ix_check(struct kb_state_ix *ix, struct kb_model *state, void (*diff)(void *ctx, const char *line),
			 void *ctx);

#endif /* KB_STATE_INDEX_H */
