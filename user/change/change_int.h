/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to change/: what the change pipeline (apply.c) and the table's followers (apply_table.c) share. */
#ifndef KB_CHANGE_INT_H
#define KB_CHANGE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "compile/compile.h"

struct daemon;

/*
 * d->compiled changed: reads, the resolver's names and endpoint health
 * follow. whole: replaced whole (every follower re-reads the table, the
 * table index is rebuilt); otherwise old[i] was replaced in place by now[i]
 * (n of them), and only those are read.
 */
void kb_daemon_table_changed(struct daemon *d, const struct kb_cfrontend *old, const struct kb_cfrontend *now,
			     size_t n, bool whole);

#endif /* KB_CHANGE_INT_H */
