/* SPDX-License-Identifier: Apache-2.0 */
/* Text tables for people: every column as wide as its widest cell, so rows stay aligned whatever they hold. */
#ifndef KB_TABLE_H
#define KB_TABLE_H

#include <stddef.h>
#include <stdio.h>

#include "util.h"

struct kb_table {
	struct kb_arena arena;	/* every cell's copy */
	size_t ncols;
	size_t ncells;
	char **cells;		/* row by row, ncols a row */
};

void kb_table_init(struct kb_table *t, size_t ncols);
/* Append one row of exactly ncols cells (NULL is printed as an empty cell). The first row is the header. */
void kb_table_add(struct kb_table *t, ...);
/*
 * Print every row; each column but the last is padded to its widest cell and
 * followed by two spaces. The last column is never padded or cut, so a long
 * message is always printed whole.
 */
void kb_table_print(FILE *f, const struct kb_table *t);
void kb_table_free(struct kb_table *t);

#endif /* KB_TABLE_H */
