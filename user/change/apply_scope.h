/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to apply*.c: the part of the state one change touches, and the merge of its frontends. */
#ifndef KB_APPLY_SCOPE_H
#define KB_APPLY_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "change/state_index.h"
#include "compile/compile.h"
#include "manifest/model.h"

/* A stored object judged again: the status it had, put back if the change is refused. */
struct kb_saved_status {
	struct kb_meta *o;
	struct kb_condition *conds;
	size_t nconds;
	struct kb_parent_status *parents;
	size_t nparents;
	bool v_refused;
	const char *v_reason, *v_why;
};

struct kb_scope {
	struct kb_arena a;
	struct kb_smap gateways;	/* "ns/name" and bare names of the Gateways compiled again */
	const char **gwkeys;		/* their "ns/name", each once */
	size_t ngw;
	struct kb_smap backends;	/* the same for the Backends the request names */
	struct kb_saved_status *saved;	/* stored objects judged again */
	size_t nsaved;
	struct kb_meta **objs;		/* stored objects in the scope, judged again or read as context (in_scope) */
	size_t nobjs;
	struct kb_meta **gone;		/* stored objects the request replaces or deletes (named) */
	size_t ngone;
	struct kb_meta **req;		/* the request's objects (named) */
	size_t nreq;
	size_t njudged;			/* stored objects judged again, and the request's objects */
	size_t named_bytes;		/* the text of gone */
};

/* "Kind/ns/name", the key of the daemon's state index and of the store. */
const char *kb_scope_key(struct kb_arena *a, const struct kb_meta *o);

/*
 * Why this change must take the whole pipeline (a kind whose change reaches
 * far, a replace, a state due for a rebuild after `garbage` superseded
 * objects), or NULL: it can be scoped. ix: the state's index, built.
 */
const char *kb_scope_full_reason(const struct kb_state_ix *ix, const struct kb_model *state, const struct kb_model *in,
				 bool replace, size_t garbage);

/*
 * Build the change's model sm: the stored objects it judges again (the
 * routes that name a Backend the request names, every stored route, Gateway
 * and policy that shares a Gateway with a judged route), the stored objects
 * those read (their Backends, the policies' targets, every policy,
 * Namespace, ReferenceGrant and EnvoyGateway: skip_judge, validate keeps
 * their status), in state order, then in's objects (moved; none when del).
 * Found through the state's index, so a change costs what it touches, not
 * what is stored. Stored objects are shared, not parsed again.
 */
void kb_scope_build(struct kb_scope *s, struct kb_state_ix *ix, struct kb_model *state, struct kb_model *in, bool del,
		    struct kb_model *sm);
/*
 * For a recompile without a change (DNS, health): sm gets what compiling the
 * Gateways in s reads: the Gateways, their routes and those routes' Backends,
 * and every policy and Namespace, in state order. ports (not NULL): only
 * their frontends on these listener ports are compiled, so only the routes
 * that could attach to such a listener are read.
 */
void kb_scope_compile_model(struct kb_scope *s, struct kb_state_ix *ix, struct kb_model *state, const uint16_t *ports,
			    size_t nports, struct kb_model *sm);
/* Add the Gateway "ns/name" (a compiled frontend's gateway) to the Gateways compiled again. */
void kb_scope_add_gateway(struct kb_scope *s, const char *ns_name);
/* The change was refused: put the judged stored objects' status back. */
void kb_scope_restore(struct kb_scope *s);
/* Clear the marks kb_scope_build left (on the scope's stored objects and the request's). */
void kb_scope_clear_marks(struct kb_scope *s);
/*
 * out = old with the frontends of the scoped Gateways replaced by part's
 * (part is consumed). out points into old's memory until
 * kb_scope_adopt_compiled(out, old). Returns how many old frontends went.
 * The whole table's merge, for a change that adds or drops frontend keys.
 */
size_t kb_scope_merge(struct kb_scope *s, const struct kb_compiled *old, struct kb_compiled *part,
		      struct kb_compiled *out);
void kb_scope_adopt_compiled(struct kb_compiled *out, struct kb_compiled *old);
void kb_scope_free(struct kb_scope *s);

#endif /* KB_APPLY_SCOPE_H */
