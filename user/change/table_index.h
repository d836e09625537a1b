/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to change/: the programmed table's index, so that a scoped recompile replaces its frontends in place. */
#ifndef KB_TABLE_INDEX_H
#define KB_TABLE_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "change/state_index.h"
#include "compile/compile.h"

/*
 * Over d->compiled: built when a whole recompile replaced it (ok false),
 * kept by the in-place replacements of scoped changes, which move no
 * frontend. verify compares it with a rebuild (kb_table_ix_check).
 */
struct kb_table_ix {
	bool ok;
	struct kb_arena a;
	struct kb_smap by_gw;	/* "ns/name" of a Gateway -> struct kb_plist: positions of its frontends */
	size_t *named;		/* positions of the frontends that use a DNS name (kb_fe_uses_names) */
	size_t nnamed;
	long *where;		/* per position: its place in named, or -1; nwhere long */
	size_t nwhere;
	size_t nhealth;		/* frontends whose policy has a health check */
};

void kb_table_ix_ensure(struct kb_table_ix *ix, const struct kb_compiled *c);
/* d->compiled was replaced whole: rebuilt before the next scoped use. */
void kb_table_ix_reset(struct kb_table_ix *ix);
void kb_table_ix_free(struct kb_table_ix *ix);

/* Does fe need a DNS name: an FQDN endpoint, or a name not resolved yet? */
bool kb_fe_uses_names(const struct kb_cfrontend *fe);
/* Does fe's policy ask for a health check (active or passive)? */
bool kb_fe_checks_health(const struct kb_cfrontend *fe);

/*
 * Is part (the frontends of the Gateways gws[0..ngw), "ns/name", compiled
 * again) exactly a replacement of their frontends in c: the same keys, each
 * once? Then pos[i] is where part->fes[i] goes, and true. Otherwise (a key
 * came or went) false: the caller merges the whole table.
 */
bool kb_table_ix_plan(struct kb_table_ix *ix, const struct kb_compiled *c, const char *const *gws, size_t ngw,
		      const struct kb_compiled *part, size_t *pos);
/*
 * The same for part made of the frontends at positions at[0..nat) in c
 * compiled again (kb_compile_frontends): the same keys, each once.
 */
bool kb_table_ix_plan_at(const struct kb_compiled *c, const size_t *at, size_t nat, const struct kb_compiled *part,
			 size_t *pos);
/*
 * Put part's frontends at pos[] in c (their memory moves into c's arena; the
 * replaced frontends' stays until a whole rebuild). old[] receives copies of
 * the replaced frontends, for health and names. part is emptied.
 */
void kb_table_ix_replace(struct kb_table_ix *ix, struct kb_compiled *c, const size_t *pos, struct kb_compiled *part,
			 struct kb_cfrontend *old);

/* verify: compare ix with a rebuild from c; diff(ctx, line) per difference; returns how many. */
size_t kb_table_ix_check(struct kb_table_ix *ix, const struct kb_compiled *c, void (*diff)(void *ctx, const char *line),
			 void *ctx);

#endif /* KB_TABLE_INDEX_H */
